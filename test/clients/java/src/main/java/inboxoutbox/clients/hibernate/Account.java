/*
 * An application's table with a ulid key, mapped as a String: Hibernate
 * binds it with setString (varchar), which the server compares with and
 * assigns to a ulid, and reads it with getString, the ULID text.  The key
 * is the server's default, returned by the INSERT; Hibernate takes an
 * entity whose IDENTITY key is already set for a detached one and refuses
 * to persist it.
 */
package inboxoutbox.clients.hibernate;

import jakarta.persistence.Entity;
import jakarta.persistence.GeneratedValue;
import jakarta.persistence.GenerationType;
import jakarta.persistence.Id;
import jakarta.persistence.Table;

// docs: begin hibernate-account-entity
@Entity
@Table(name = "hibernate_accounts")    // id ulid PRIMARY KEY DEFAULT gen_ulid()
public class Account {
    @Id
    @GeneratedValue(strategy = GenerationType.IDENTITY)    // the server's gen_ulid()
    private String id;                                      // "01GV5PA9EQG7D82Q3Y4PKBZSYV"

    private String name;
    // docs: end hibernate-account-entity

    protected Account() {
    }

    public Account(String name) {
        this.name = name;
    }

    public Account(String id, String name) {
        this.id = id;
        this.name = name;
    }

    public String getId() {
        return id;
    }

    public String getName() {
        return name;
    }

    public void setName(String name) {
        this.name = name;
    }
}

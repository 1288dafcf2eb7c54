/*
 * An application's table with a ulid key, mapped as a java.util.UUID.
 * Hibernate's own UUID mapping binds a UUID as uuid, which the server
 * takes for a ulid, but reads one with getObject(UUID.class), which
 * PgJDBC refuses for a type it does not know (ClassCastException); a
 * converter or @ColumnTransformer is not applied to an @Id.  So the
 * column is mapped as varchar through UlidUuidJavaType, which converts
 * between the UUID and the ULID text.  The application assigns the keys.
 */
package inboxoutbox.clients.hibernate;

import java.util.UUID;

import jakarta.persistence.Entity;
import jakarta.persistence.Id;
import jakarta.persistence.Table;

import org.hibernate.annotations.JavaType;
import org.hibernate.annotations.JdbcTypeCode;
import org.hibernate.type.SqlTypes;

// docs: begin hibernate-customer-entity
@Entity
@Table(name = "hibernate_customers")   // id ulid PRIMARY KEY
public class Customer {
    @Id
    @JavaType(UlidUuidJavaType.class)
    @JdbcTypeCode(SqlTypes.VARCHAR)
    private UUID id;                            // 0186cb65-25d7-81da-815c-7e25a6bfe7db

    private String name;
    // docs: end hibernate-customer-entity

    protected Customer() {
    }

    public Customer(UUID id, String name) {
        this.id = id;
        this.name = name;
    }

    public UUID getId() {
        return id;
    }

    public String getName() {
        return name;
    }
}

/*
 * The table of Customer with its ulid key in Hibernate's own UUID mapping,
 * which HibernateClients shows cannot read it: PgJDBC's getObject(UUID.class)
 * does not convert a type it does not know.
 */
package inboxoutbox.clients.hibernate;

import java.util.UUID;

import jakarta.persistence.Entity;
import jakarta.persistence.Id;
import jakarta.persistence.Table;

@Entity
@Table(name = "hibernate_customers")
public class PlainUuidCustomer {
    @Id
    private UUID id;

    private String name;

    protected PlainUuidCustomer() {
    }
}

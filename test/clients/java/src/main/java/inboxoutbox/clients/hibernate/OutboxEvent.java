/*
 * The outbox table, inbox_outbox.outbox, as an entity: persisting one
 * publishes it when the transaction commits.  The server fills id (its
 * default gen_ulid(), returned by the INSERT as IDENTITY columns are) and
 * created_at; the columns the relay keeps for itself are not mapped.
 */
package inboxoutbox.clients.hibernate;

import java.time.OffsetDateTime;
import java.util.Map;

import jakarta.persistence.Column;
import jakarta.persistence.Entity;
import jakarta.persistence.GeneratedValue;
import jakarta.persistence.GenerationType;
import jakarta.persistence.Id;
import jakarta.persistence.Table;

import org.hibernate.annotations.Generated;
import org.hibernate.annotations.JdbcTypeCode;
import org.hibernate.type.SqlTypes;

// docs: begin hibernate-outbox-entity
@Entity
@Table(schema = "inbox_outbox", name = "outbox")
public class OutboxEvent {
    @Id
    @GeneratedValue(strategy = GenerationType.IDENTITY)    // the server's gen_ulid()
    private String id;

    private String topic;
    private String key;
    private byte[] payload;                                 // bytea

    @JdbcTypeCode(SqlTypes.JSON)                            // jsonb, through Jackson
    private Map<String, String> headers;

    @Generated
    @Column(name = "created_at", insertable = false, updatable = false)
    private OffsetDateTime createdAt;
    // docs: end hibernate-outbox-entity

    protected OutboxEvent() {
    }

    public OutboxEvent(String topic, String key, byte[] payload, Map<String, String> headers) {
        this.topic = topic;
        this.key = key;
        this.payload = payload;
        this.headers = headers;
    }

    public String getId() {
        return id;
    }

    public String getKey() {
        return key;
    }

    public OffsetDateTime getCreatedAt() {
        return createdAt;
    }
}

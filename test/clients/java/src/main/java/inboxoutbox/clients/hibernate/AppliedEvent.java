/*
 * The business change of the consumer in test/t/063_clients_orms.pl: one
 * row per event applied, in the table the test creates, keyed by consumer
 * and event id.
 */
package inboxoutbox.clients.hibernate;

import jakarta.persistence.Column;
import jakarta.persistence.Entity;
import jakarta.persistence.Id;
import jakarta.persistence.IdClass;
import jakarta.persistence.Table;

@Entity
@Table(name = "applied_events")
@IdClass(AppliedEvent.Key.class)
public class AppliedEvent {
    public record Key(String consumer, String eventId) {
    }

    @Id
    private String consumer;

    @Id
    @Column(name = "event_id")
    private String eventId;

    protected AppliedEvent() {
    }

    public AppliedEvent(String consumer, String eventId) {
        this.consumer = consumer;
        this.eventId = eventId;
    }
}

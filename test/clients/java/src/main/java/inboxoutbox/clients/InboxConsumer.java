/*
 * A consumer as docs/clients.md shows one: each record of a topic is
 * claimed through the inbox by its event_id header, and the business
 * change (here a row in the Perl test's table applied_events) is made in
 * the same transaction only if the claim is new.  Each record is then
 * handled a second time, as a redelivery would be, and must be absorbed.
 * Reports [event_id, first claim, second claim] per record.
 */
package inboxoutbox.clients;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerRecord;

final class InboxConsumer {
    private final Connection conn;
    private final PreparedStatement claim;
    private final PreparedStatement apply;
    private final String consumer;

    private InboxConsumer(Connection conn, String consumer) throws SQLException {
        this.conn = conn;
        this.consumer = consumer;
        // docs: begin java-claim-statements
        conn.setAutoCommit(false);
        claim = conn.prepareStatement("SELECT inbox_try_claim(?, ?)");
        apply = conn.prepareStatement(
                "INSERT INTO applied_events (consumer, event_id) VALUES (?, ?)");
        // docs: end java-claim-statements
    }

    static String run(String url, String bootstrap, String topic, String consumer)
            throws SQLException {
        List<Object> claims = new ArrayList<>();
        try (Connection conn = DriverManager.getConnection(url)) {
            InboxConsumer c = new InboxConsumer(conn, consumer);
            TopicReader.readAll(bootstrap, topic, Duration.ofSeconds(60), r -> {
                try {
                    String eventId = new String(r.headers().lastHeader("event_id").value(),
                            StandardCharsets.UTF_8);
                    claims.add(List.of(eventId, c.handle(r), c.handle(r)));
                } catch (SQLException e) {
                    throw new IllegalStateException(e);
                }
            });
        }
        return Json.write(Map.of("claims", claims));
    }

    /* Whether this delivery of the record changed anything. */
    private boolean handle(ConsumerRecord<byte[], byte[]> record) throws SQLException {
        // docs: begin java-claim
        String eventId = new String(record.headers().lastHeader("event_id").value(),
                StandardCharsets.UTF_8);
        claim.setString(1, eventId);
        claim.setString(2, consumer);
        boolean first;
        try (ResultSet rs = claim.executeQuery()) {
            rs.next();
            first = rs.getBoolean(1);
        }
        if (first) {
            apply.setString(1, consumer);                   // the business change
            apply.setString(2, eventId);
            apply.executeUpdate();
        }
        conn.commit();                                      // then commit the Kafka offset
        // docs: end java-claim
        return first;
    }
}

/*
 * What one run reports to the Perl test, as python_clients.py does:
 * "checks", [name, got, expected] triples that the test compares with
 * is_deeply, and "published", the events committed, which the test then
 * looks for in Kafka.  Values are kept as JSON-ready Java values (String,
 * Boolean, Long, List, Map), so that got and expected compare exactly.
 */
package inboxoutbox.clients;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class Report {
    private final List<Object> checks = new ArrayList<>();
    private final List<Object> published = new ArrayList<>();

    public void check(String name, Object got, Object expected) {
        checks.add(List.of(name, got, expected));
    }

    /**
     * Remember a committed event with its created_at in microseconds, read
     * by its id bound as a String.
     */
    public void published(Connection conn, String how, String eventId, String key,
            byte[] payload, Map<String, String> headers) throws SQLException {
        long createdUs;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT (extract(epoch FROM created_at) * 1000000)::int8"
                        + " FROM inbox_outbox.outbox WHERE id = ?")) {
            ps.setString(1, eventId);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    throw new IllegalStateException("event " + eventId + " is not in the outbox");
                }
                createdUs = rs.getLong(1);
            }
        }
        Map<String, Object> e = event(how, eventId, key, payload, headers);
        e.put("created_us", createdUs);
        published.add(e);
    }

    /**
     * Remember a committed event without its created_at, which the Perl
     * test then takes from its own copy of the outbox row.
     */
    public void published(String how, String eventId, String key, byte[] payload,
            Map<String, String> headers) {
        published.add(event(how, eventId, key, payload, headers));
    }

    private static Map<String, Object> event(String how, String eventId, String key,
            byte[] payload, Map<String, String> headers) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("how", how);
        e.put("id", eventId);
        e.put("key", key);
        e.put("payload_hex", Json.hex(payload));
        e.put("headers", new LinkedHashMap<String, Object>(headers));
        return e;
    }

    public String toJson() {
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("checks", checks);
        all.put("published", published);
        return Json.write(all);
    }
}

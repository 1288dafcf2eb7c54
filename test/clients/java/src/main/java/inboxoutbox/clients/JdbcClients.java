/*
 * PgJDBC against inbox_outbox with its default settings and no cast in
 * the SQL: setString binds varchar, setObject(UUID) binds uuid, setBytes
 * binds bytea, and the server takes each where a ulid, a payload or JSON
 * headers are expected.  Every check goes into the Report; every event
 * committed goes into it too, for the Perl test to find in Kafka.  The
 * blocks between "docs:" comments appear verbatim in docs/clients.md.
 */
package inboxoutbox.clients;

import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

final class JdbcClients {
    /* The same 128 bits as a ULID's text and as a UUID. */
    private static final String ALICE = "01GV5PA9EQG7D82Q3Y4PKBZSYV";
    private static final UUID ALICE_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7db");
    private static final String BOB = "01GV5PA9EQG7D82Q3Y4PKBZSYW";
    private static final UUID BOB_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7dc");
    private static final String CAROL = "01GV5PA9EQG7D82Q3Y4PKBZSZ0";
    private static final UUID CAROL_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7e0");
    /* ulid_timestamp() of the three, in milliseconds since 1970. */
    private static final long ALICE_MS = 1678449649111L;

    private final String url;
    private final String topic;
    private final Report report = new Report();

    JdbcClients(String url, String topic) {
        this.url = url;
        this.topic = topic;
    }

    String run() throws SQLException {
        try (Connection conn = DriverManager.getConnection(url)) {
            // one transaction each, so that an event's created_at is read
            // before the relay can send and delete it
            conn.setAutoCommit(false);
            publish(conn);
            mapOutbox(conn);
            conn.commit();
            userTable(conn);
            claims(conn);
            conn.commit();
        }
        batchRewritten();
        return report.toJson();
    }

    private void publish(Connection conn) throws SQLException {
        byte[] payload = {0, 1, (byte) 0xfe, (byte) 0xff, 0};
        // docs: begin java-publish
        String eventId;
        try (PreparedStatement ps = conn.prepareStatement("SELECT outbox_publish(?, ?, ?, ?)")) {
            ps.setString(1, topic);
            ps.setString(2, "java-bytes");
            ps.setBytes(3, payload);                        // bytea; setString for text
            ps.setString(4, "{\"trace\": \"t1\"}");         // headers: JSON text
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                eventId = rs.getString(1);                  // the ULID text
            }
        }
        // docs: end java-publish
        report.published(conn, "JDBC setBytes payload, setString headers", eventId, "java-bytes",
                payload, Map.of("trace", "t1"));

        String json = "{\"event\": \"OrderPaid\", \"total\": \"12.50 €\"}";
        try (PreparedStatement ps = conn.prepareStatement("SELECT outbox_publish(?, ?, ?)")) {
            ps.setString(1, topic);
            ps.setString(2, "java-text");
            ps.setString(3, json);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                eventId = rs.getString(1);
            }
        }
        report.published(conn, "JDBC setString payload, no headers", eventId, "java-text",
                json.getBytes(StandardCharsets.UTF_8), Map.of());
    }

    /* The outbox table written as an ORM maps it. */
    private void mapOutbox(Connection conn) throws SQLException {
        byte[] payload = "{\"event\": \"OrderShipped\"}".getBytes(StandardCharsets.UTF_8);
        // docs: begin java-outbox-insert
        String eventId;
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO inbox_outbox.outbox (topic, key, payload, headers)"
                        + " VALUES (?, ?, ?, ?) RETURNING id")) {
            ps.setString(1, topic);
            ps.setString(2, "java-row");
            ps.setBytes(3, payload);
            ps.setObject(4, "{\"via\": \"jdbc\"}", Types.OTHER);  // jsonb takes no varchar
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                eventId = rs.getString(1);
            }
        }
        // docs: end java-outbox-insert
        report.published(conn, "JDBC insert into the outbox, server id", eventId, "java-row",
                payload, Map.of("via", "jdbc"));

        // ids the application chose, as a UUID and as a String
        UUID given = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe900");
        String givenText = "01GV5PA9EQG7D82Q3Y4PKBZT80";
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO inbox_outbox.outbox (id, topic, key, payload) VALUES (?, ?, ?, ?)")) {
            ps.setObject(1, given);
            ps.setString(2, topic);
            ps.setString(3, "java-uuid-id");
            ps.setBytes(4, new byte[] {'u'});
            ps.addBatch();
            ps.setString(1, "01gv5pa9eqg7d82q3y4pkbzt81");
            ps.setString(2, topic);
            ps.setString(3, "java-string-id");
            ps.setBytes(4, new byte[] {'s'});
            ps.addBatch();
            report.check("JDBC: outbox rows with setObject(UUID) and setString ids, batched",
                    toList(ps.executeBatch()), List.of(1, 1));
        }
        report.published(conn, "JDBC outbox id setObject(UUID)", givenText, "java-uuid-id",
                new byte[] {'u'}, Map.of());
        report.published(conn, "JDBC outbox id setString, lower case", "01GV5PA9EQG7D82Q3Y4PKBZT81",
                "java-string-id", new byte[] {'s'}, Map.of());
    }

    /* A table of the application's with a ulid key. */
    private void userTable(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE java_accounts (id ulid PRIMARY KEY, name text NOT NULL)");
        }
        // docs: begin java-batch
        int[] counts;
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO java_accounts (id, name) VALUES (?, ?)")) {
            ps.setString(1, "01GV5PA9EQG7D82Q3Y4PKBZSYV");  // varchar
            ps.setString(2, "alice");
            ps.addBatch();
            ps.setObject(1, BOB_UUID);                      // uuid
            ps.setString(2, "bob");
            ps.addBatch();
            ps.setString(1, "01gv5pa9eqg7d82q3y4pkbzsz0");  // either case
            ps.setString(2, "carol");
            ps.addBatch();
            counts = ps.executeBatch();
        }
        // docs: end java-batch
        report.check("JDBC: batch insert with setString and setObject(UUID)",
                toList(counts), List.of(1, 1, 1));

        // docs: begin java-find
        String id;
        UUID uuid;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT id, id::uuid FROM java_accounts WHERE id = ?")) {
            ps.setObject(1, ALICE_UUID);                    // or setString(1, "01GV…")
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                id = rs.getString(1);                       // "01GV5PA9EQG7D82Q3Y4PKBZSYV"
                uuid = rs.getObject(2, UUID.class);         // 0186cb65-25d7-81da-815c-7e25a6bfe7db
            }
        }
        // docs: end java-find
        report.check("JDBC: WHERE id = setObject(UUID); getString, getObject(UUID.class) of id::uuid",
                List.of(id, uuid.toString()), List.of(ALICE, ALICE_UUID.toString()));
        try (Statement st = conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT id FROM java_accounts LIMIT 1")) {
            rs.next();
            report.check("JDBC: getObject of a ulid is a PGobject",
                    rs.getObject(1).getClass().getName(), "org.postgresql.util.PGobject");
        }

        // past prepareThreshold (5), PgJDBC switches to a named server-side
        // statement with the parameter typed varchar
        List<Object> names = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT name FROM java_accounts WHERE id = ?")) {
            for (String each : List.of(BOB, BOB.toLowerCase(), CAROL, ALICE, BOB, CAROL, ALICE)) {
                ps.setString(1, each);
                try (ResultSet rs = ps.executeQuery()) {
                    names.add(rs.next() ? rs.getString(1) : null);
                }
            }
        }
        report.check("JDBC: WHERE id = setString, seven times (server-prepared)", names,
                List.of("bob", "bob", "carol", "alice", "bob", "carol", "alice"));

        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT count(*) FROM java_accounts WHERE id = ANY (?)")) {
            Array strings = conn.createArrayOf("varchar",
                    new String[] {ALICE, CAROL.toLowerCase(), "00000000000000000000000000"});
            ps.setArray(1, strings);
            report.check("JDBC: WHERE id = ANY (varchar[])", single(ps), 2L);
            Array uuids = conn.createArrayOf("uuid", new UUID[] {ALICE_UUID, BOB_UUID});
            ps.setArray(1, uuids);
            report.check("JDBC: WHERE id = ANY (uuid[])", single(ps), 2L);
        }
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT string_agg(name, ',' ORDER BY id) FROM java_accounts WHERE id > ?")) {
            ps.setString(1, ALICE);
            report.check("JDBC: WHERE id > setString", single(ps), "bob,carol");
            ps.setObject(1, BOB_UUID);
            report.check("JDBC: WHERE id > setObject(UUID)", single(ps), "carol");
        }
        try (PreparedStatement ps = conn.prepareStatement(
                "UPDATE java_accounts SET id = ? WHERE id = ?")) {
            ps.setString(1, "00000000000000000000000009");
            ps.setObject(2, CAROL_UUID);
            report.check("JDBC: UPDATE SET id = setString WHERE id = setObject(UUID)",
                    ps.executeUpdate(), 1);
        }
        try (Statement st = conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT min(id), max(id) FROM java_accounts")) {
            rs.next();
            report.check("JDBC: min(id), max(id) with getString",
                    List.of(rs.getString(1), rs.getString(2)), List.of("00000000000000000000000009", BOB));
        }
        try (PreparedStatement ps = conn.prepareStatement("SELECT ulid_timestamp(?)")) {
            ps.setString(1, ALICE.toLowerCase());
            report.check("JDBC: ulid_timestamp(setString)", epochMillis(ps), ALICE_MS);
            ps.setObject(1, ALICE_UUID);
            report.check("JDBC: ulid_timestamp(setObject(UUID))", epochMillis(ps), ALICE_MS);
        }
    }

    /* One event claimed by its text, then by its UUID: one claim. */
    private void claims(Connection conn) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement("SELECT inbox_try_claim(?, ?)")) {
            ps.setString(1, CAROL);
            ps.setString(2, "jdbc");
            report.check("JDBC: inbox_try_claim(setString) first", single(ps), true);
            ps.setObject(1, CAROL_UUID);
            report.check("JDBC: inbox_try_claim(setObject(UUID)) of the same event", single(ps), false);
        }
    }

    /* The same batch with reWriteBatchedInserts, as Hibernate and Spring users set it. */
    private void batchRewritten() throws SQLException {
        Properties props = new Properties();
        props.setProperty("reWriteBatchedInserts", "true");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            try (PreparedStatement ps = conn.prepareStatement(
                    "INSERT INTO java_accounts (id, name) VALUES (?, ?)")) {
                for (int i = 1; i <= 4; i++) {
                    if (i % 2 == 0) {
                        ps.setObject(1, new UUID(0, i));
                    } else {
                        ps.setString(1, "0000000000000000000000000" + i);
                    }
                    ps.setString(2, "rewritten " + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT string_agg(id::text, ',' ORDER BY id) FROM java_accounts"
                            + " WHERE name LIKE 'rewritten %'")) {
                report.check("JDBC: rewritten batch insert with setString and setObject(UUID)",
                        single(ps), "00000000000000000000000001,00000000000000000000000002,"
                                + "00000000000000000000000003,00000000000000000000000004");
            }
        }
    }

    private static Object single(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getObject(1);
        }
    }

    private static long epochMillis(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getObject(1, OffsetDateTime.class).toInstant().toEpochMilli();
        }
    }

    private static List<Object> toList(int[] counts) {
        return new ArrayList<>(Arrays.stream(counts).boxed().toList());
    }
}

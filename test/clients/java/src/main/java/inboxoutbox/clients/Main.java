/*
 * The Java client of test/t/061_clients_jvm_node_go.pl: PgJDBC and
 * kafka-clients used against inbox_outbox as an application uses them.
 *
 *   publish --jdbc URL --topic T          JDBC checks and published events (JSON)
 *   read --bootstrap B --topic T          every record of T, one JSON line each
 *   claim --jdbc URL --bootstrap B --topic T --consumer NAME
 *                                         claim each record's event_id (JSON)
 *   hibernate-publish --jdbc URL --topic T
 *                                         the same through Hibernate ORM
 *   hibernate-claim --jdbc URL --consumer NAME EVENT_ID...
 *                                         claim the ids through Hibernate (JSON)
 *
 * read prints per record: partition, offset, timestamp (ms),
 * timestamp_type, key_hex, value_hex (null for null) and headers, a list of
 * [name, hex] in order.  Any failure is an exception and a non-zero exit.
 */
package inboxoutbox.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.header.Header;

import inboxoutbox.clients.hibernate.HibernateClients;

public final class Main {
    private Main() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            usage();
        }
        Map<String, String> opts = new HashMap<>();
        List<String> rest = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            if (!args[i].startsWith("--")) {
                rest.add(args[i]);
            } else if (i + 1 < args.length) {
                opts.put(args[i].substring(2), args[++i]);
            } else {
                usage();
            }
        }
        switch (args[0]) {
            case "publish" -> System.out.println(
                    new JdbcClients(need(opts, "jdbc"), need(opts, "topic")).run());
            case "read" -> read(need(opts, "bootstrap"), need(opts, "topic"));
            case "claim" -> System.out.println(InboxConsumer.run(need(opts, "jdbc"),
                    need(opts, "bootstrap"), need(opts, "topic"), need(opts, "consumer")));
            case "hibernate-publish" -> System.out.println(
                    HibernateClients.publish(need(opts, "jdbc"), need(opts, "topic")));
            case "hibernate-claim" -> System.out.println(
                    HibernateClients.claim(need(opts, "jdbc"), need(opts, "consumer"), rest));
            default -> usage();
        }
    }

    private static void read(String bootstrap, String topic) {
        TopicReader.readAll(bootstrap, topic, Duration.ofSeconds(60), r -> {
            List<Object> headers = new ArrayList<>();
            for (Header h : r.headers()) {
                headers.add(Arrays.asList(h.key(), Json.hex(h.value())));
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("partition", r.partition());
            m.put("offset", r.offset());
            m.put("timestamp", r.timestamp());
            m.put("timestamp_type", r.timestampType().name);
            m.put("key_hex", Json.hex(r.key()));
            m.put("value_hex", Json.hex(r.value()));
            m.put("headers", headers);
            System.out.println(Json.write(m));
        });
    }

    private static String need(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            usage();
        }
        return v;
    }

    private static void usage() {
        System.err.println("usage: Main publish --jdbc URL --topic T"
                + " | read --bootstrap B --topic T"
                + " | claim --jdbc URL --bootstrap B --topic T --consumer NAME"
                + " | hibernate-publish --jdbc URL --topic T"
                + " | hibernate-claim --jdbc URL --consumer NAME EVENT_ID...");
        System.exit(2);
    }
}

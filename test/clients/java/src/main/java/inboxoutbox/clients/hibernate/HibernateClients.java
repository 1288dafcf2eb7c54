/*
 * Hibernate ORM 6, and Spring Data JPA on top of it, against inbox_outbox
 * as docs/clients.md shows them: the entities of this package over PgJDBC
 * with its default settings, and no cast in any query but the one
 * AccountRepository explains.  publish() commits business changes with
 * events (through outbox_publish() in a native query, through the
 * OutboxEvent entity, and through a Spring Data repository), then finds
 * and updates ulid keys as Strings and as UUIDs; every check and every
 * event committed goes into the Report.  claim() claims event ids through
 * the inbox as a consumer does.  Spring Data's repository is made by its
 * JpaRepositoryFactory over a Hibernate session, in that session's
 * transaction, where a Spring application would inject it.  The blocks
 * between "docs:" comments appear verbatim in docs/clients.md.
 */
package inboxoutbox.clients.hibernate;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import jakarta.persistence.EntityExistsException;

import org.hibernate.Session;
import org.hibernate.SessionFactory;
import org.hibernate.cfg.AvailableSettings;
import org.hibernate.cfg.Configuration;
import org.springframework.data.jpa.repository.support.JpaRepositoryFactory;

import inboxoutbox.clients.Json;
import inboxoutbox.clients.Report;

public final class HibernateClients {
    /* The same 128 bits as a ULID's text and as a UUID. */
    private static final String ALICE = "01GV5PA9EQG7D82Q3Y4PKBZSYV";
    private static final UUID ALICE_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7db");
    private static final String BOB = "01GV5PA9EQG7D82Q3Y4PKBZSYW";
    private static final UUID BOB_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7dc");
    private static final UUID CAROL_UUID = UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7e0");

    private final SessionFactory sessionFactory;
    private final Report report = new Report();

    private HibernateClients(String url) {
        sessionFactory = new Configuration()
                .addAnnotatedClass(OutboxEvent.class)
                .addAnnotatedClass(Account.class)
                .addAnnotatedClass(Customer.class)
                .addAnnotatedClass(PlainUuidCustomer.class)
                .addAnnotatedClass(AppliedEvent.class)
                .setProperty(AvailableSettings.JAKARTA_JDBC_URL, url)
                .setProperty(AvailableSettings.POOL_SIZE, 1)
                .buildSessionFactory();
    }

    public static String publish(String url, String topic) {
        HibernateClients c = new HibernateClients(url);
        try {
            c.sessionFactory.inTransaction(session -> {
                session.createNativeMutationQuery("CREATE TABLE hibernate_accounts"
                        + " (id ulid PRIMARY KEY DEFAULT gen_ulid(), name text NOT NULL)")
                        .executeUpdate();
                session.createNativeMutationQuery("CREATE TABLE hibernate_customers"
                        + " (id ulid PRIMARY KEY, name text NOT NULL)").executeUpdate();
            });
            Account account = c.publishEvent(topic);
            c.persistOutbox(topic, account);
            c.springData(topic);
            c.rolledBack(topic);
            c.assignedIdentity();
            c.sessionFactory.inTransaction(c::keysAsStrings);
            c.sessionFactory.inTransaction(c::keysAsUuids);
            c.sessionFactory.inTransaction(c::claimTwice);
        } finally {
            c.sessionFactory.close();
        }
        return c.report.toJson();
    }

    public static String claim(String url, String consumer, List<String> eventIds) {
        HibernateClients c = new HibernateClients(url);
        List<Object> claims = new ArrayList<>();
        try {
            for (String eventId : eventIds) {
                boolean first = c.handle(consumer, eventId);
                claims.add(List.of(eventId, first, c.handle(consumer, eventId)));
            }
        } finally {
            c.sessionFactory.close();
        }
        return Json.write(Map.of("claims", claims));
    }

    private Account publishEvent(String topic) {
        byte[] payload = {0, 1, (byte) 0xfe, (byte) 0xff};
        // docs: begin hibernate-publish
        Account account = new Account("alice");
        String eventId = sessionFactory.fromTransaction(session -> {
            session.persist(account);                          // the business change
            return session.createNativeQuery(
                            "SELECT outbox_publish(:topic, :key, :payload, :headers)", String.class)
                    .setParameter("topic", topic)
                    .setParameter("key", "account-" + account.getId())
                    .setParameter("payload", payload)          // byte[]: bytea; a String: text
                    .setParameter("headers", "{\"trace\": \"t1\"}")    // JSON text
                    .getSingleResult();                        // the ULID text
        });
        // docs: end hibernate-publish
        report.published("Hibernate outbox_publish, byte[] payload, headers as JSON text",
                eventId, "account-" + account.getId(), payload, Map.of("trace", "t1"));

        String json = "{\"event\": \"AccountOpened\", \"total\": \"12.50 €\"}";
        eventId = sessionFactory.fromTransaction(session -> session.createNativeQuery(
                        "SELECT outbox_publish(:topic, :key, :payload)", String.class)
                .setParameter("topic", topic)
                .setParameter("key", "hibernate-text")
                .setParameter("payload", json)
                .getSingleResult());
        report.published("Hibernate outbox_publish, String payload", eventId, "hibernate-text",
                json.getBytes(StandardCharsets.UTF_8), Map.of());
        return account;
    }

    private void persistOutbox(String topic, Account account) {
        byte[] payload = "{\"event\": \"AccountRenamed\"}".getBytes(StandardCharsets.UTF_8);
        // docs: begin hibernate-outbox-persist
        OutboxEvent event = new OutboxEvent(topic, "hibernate-row", payload,
                Map.of("via", "hibernate"));
        sessionFactory.inTransaction(session -> {
            Account renamed = session.find(Account.class, account.getId());
            renamed.setName("alice b.");                   // the business change
            session.persist(event);                        // INSERT … RETURNING id, created_at
        });
        // event.getId(): the event id, "01HX…"
        // docs: end hibernate-outbox-persist
        report.check("Hibernate: persisted OutboxEvent has the server's id and created_at",
                List.of(event.getId().length(), event.getCreatedAt() != null), List.of(26, true));
        report.published("Hibernate OutboxEvent entity, server id", event.getId(), "hibernate-row",
                payload, Map.of("via", "hibernate"));
    }

    private void springData(String topic) {
        byte[] payload = "{\"event\": \"AccountOpened\"}".getBytes(StandardCharsets.UTF_8);
        String[] ids = sessionFactory.fromTransaction(session -> {
            AccountRepository accounts =
                    new JpaRepositoryFactory(session).getRepository(AccountRepository.class);
            // docs: begin spring-data-use
            Account account = accounts.save(new Account("dora"));  // the business change
            String eventId = accounts.publish(topic, "account-" + account.getId(), payload,
                    "{\"via\": \"spring-data\"}");
            // docs: end spring-data-use
            report.check("Spring Data: findById of the saved account",
                    accounts.findById(account.getId()).map(Account::getName).orElse(null), "dora");
            return new String[] {eventId, account.getId()};
        });
        report.published("Spring Data repository, native publish", ids[0], "account-" + ids[1],
                payload, Map.of("via", "spring-data"));

        sessionFactory.inTransaction(session -> {
            AccountRepository accounts =
                    new JpaRepositoryFactory(session).getRepository(AccountRepository.class);
            report.check("Spring Data: claim(String) first, then again",
                    List.of(accounts.claim(ids[0], "spring-data"),
                            accounts.claim(ids[0], "spring-data")),
                    List.of(true, false));
            report.check("Spring Data: findAllById (Strings, either case)",
                    accounts.findAllById(List.of(ids[1].toLowerCase())).stream()
                            .map(Account::getName).toList(),
                    List.of("dora"));
            String failure = "no error";
            try {
                new JpaRepositoryFactory(session).getRepository(UncastRepository.class)
                        .publish(topic, "spring-data-uncast", "never sent");
            } catch (ClassCastException e) {
                failure = e.getClass().getName();
            }
            report.check("Spring Data: a ulid result of a native query is no String",
                    failure, "java.lang.ClassCastException");
            session.getTransaction().setRollbackOnly();
        });
    }

    /* An entity whose IDENTITY key is set is taken for a detached one. */
    private void assignedIdentity() {
        String failure = "persisted";
        try {
            sessionFactory.inTransaction(session ->
                    session.persist(new Account("01GV5PA9EQG7D82Q3Y4PKBZT00", "erin")));
        } catch (EntityExistsException e) {
            failure = e.getMessage();
        }
        report.check("Hibernate: persist refuses an Account whose IDENTITY key is set", failure,
                "detached entity passed to persist: " + Account.class.getName());
    }

    /* A transaction that rolls back publishes nothing and changes nothing. */
    private void rolledBack(String topic) {
        String thrown = null;
        try {
            sessionFactory.inTransaction(session -> {
                session.persist(new Account("rolled back"));
                session.createNativeQuery("SELECT outbox_publish(:topic, :key, :payload)",
                                String.class)
                        .setParameter("topic", topic)
                        .setParameter("key", "hibernate-rolled-back")
                        .setParameter("payload", "never sent")
                        .getSingleResult();
                session.persist(new OutboxEvent(topic, "hibernate-rolled-back", new byte[] {'n'},
                        Map.of()));
                throw new IllegalStateException("rolled back on purpose");
            });
        } catch (IllegalStateException e) {
            thrown = e.getMessage();
        }
        List<Long> left = sessionFactory.fromTransaction(session -> List.of(
                session.createSelectionQuery(
                                "select count(*) from Account where name = 'rolled back'",
                                Long.class)
                        .getSingleResult(),
                session.createSelectionQuery(
                                "select count(*) from OutboxEvent"
                                        + " where key = 'hibernate-rolled-back'",
                                Long.class)
                        .getSingleResult()));
        report.check("Hibernate: a rolled-back transaction left no account and no event",
                List.of(thrown, left.get(0), left.get(1)),
                List.of("rolled back on purpose", 0L, 0L));
    }

    /* Account: a ulid key mapped as a String. */
    private void keysAsStrings(Session session) {
        for (String[] row : new String[][] {{ALICE.toLowerCase(), "alice"}, {BOB, "bob"}}) {
            session.createMutationQuery("insert into Account (id, name) values (:id, :name)")
                    .setParameter("id", row[0]).setParameter("name", row[1]).executeUpdate();
        }

        // docs: begin hibernate-find-string
        Account alice = session.find(Account.class, "01GV5PA9EQG7D82Q3Y4PKBZSYV");
        List<Account> some = session.createSelectionQuery(
                        "from Account where id in :ids order by id", Account.class)
                .setParameter("ids", List.of("01gv5pa9eqg7d82q3y4pkbzsyv",  // either case
                        "01GV5PA9EQG7D82Q3Y4PKBZSYW"))
                .getResultList();
        UUID uuid = session.createSelectionQuery(
                        "select cast(id as java.util.UUID) from Account where id = :id", UUID.class)
                .setParameter("id", alice.getId())
                .getSingleResult();                    // 0186cb65-25d7-81da-815c-7e25a6bfe7db
        // docs: end hibernate-find-string
        report.check("Hibernate: find(Account, String) stored lower case",
                List.of(alice.getName(), alice.getId()), List.of("alice", ALICE));
        report.check("Hibernate: Account where id in (Strings), ids read back upper case",
                some.stream().map(Account::getId).toList(), List.of(ALICE, BOB));
        report.check("Hibernate: select cast(id as java.util.UUID)", uuid.toString(),
                ALICE_UUID.toString());
        report.check("Hibernate: Account where id > String",
                session.createSelectionQuery(
                                "select name from Account where id > :id and id <= :bob",
                                String.class)
                        .setParameter("id", ALICE).setParameter("bob", BOB).getResultList(),
                List.of("bob"));
        report.check("Hibernate: Account primary key updated by a mutation query",
                session.createMutationQuery("update Account set id = :to where id = :from")
                        .setParameter("to", "00000000000000000000000007")
                        .setParameter("from", BOB.toLowerCase()).executeUpdate(),
                1);
        session.getTransaction().setRollbackOnly();
    }

    /* Customer: a ulid key mapped as a UUID. */
    private void keysAsUuids(Session session) {
        session.persist(new Customer(ALICE_UUID, "alice"));
        session.persist(new Customer(BOB_UUID, "bob"));
        session.flush();
        session.clear();

        // docs: begin hibernate-find-uuid
        Customer alice = session.find(Customer.class,
                UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7db"));
        List<UUID> ids = session.createSelectionQuery(
                        "select id from Customer where id < :id order by id", UUID.class)
                .setParameter("id", UUID.fromString("0186cb65-25d7-81da-815c-7e25a6bfe7dc"))
                .getResultList();                              // [0186cb65-…-7e25a6bfe7db]
        String text = session.createSelectionQuery(
                        "select cast(id as String) from Customer where id = :id", String.class)
                .setParameter("id", alice.getId())
                .getSingleResult();                            // "01GV5PA9EQG7D82Q3Y4PKBZSYV"
        // docs: end hibernate-find-uuid
        report.check("Hibernate: find(Customer, UUID)", alice.getName(), "alice");
        report.check("Hibernate: select id from Customer where id < UUID, read as UUIDs",
                ids.stream().map(UUID::toString).toList(), List.of(ALICE_UUID.toString()));
        report.check("Hibernate: select cast(id as String) of a UUID-mapped ulid", text, ALICE);
        report.check("Hibernate: Customer read by name has its UUID",
                session.createSelectionQuery("from Customer where name = 'alice'", Customer.class)
                        .getSingleResult().getId().toString(),
                ALICE_UUID.toString());
        report.check("Hibernate: Customer primary key updated by a mutation query",
                session.createMutationQuery("update Customer set id = :to where id = :from")
                        .setParameter("to", CAROL_UUID)
                        .setParameter("from", ALICE_UUID).executeUpdate(),
                1);
        report.check("Hibernate: Customer found by the new UUID",
                session.find(Customer.class, CAROL_UUID).getName(), "alice");
        String failure = "no error";
        try {
            session.createSelectionQuery("select id from PlainUuidCustomer", UUID.class)
                    .getResultList();
        } catch (ClassCastException e) {
            failure = e.getMessage();
        }
        report.check("Hibernate: Hibernate's own UUID mapping cannot read a ulid", failure,
                "Cannot cast org.postgresql.util.PGobject to java.util.UUID");
        session.getTransaction().setRollbackOnly();
    }

    /* One event claimed by its String, then by its UUID: one claim. */
    private void claimTwice(Session session) {
        String sql = "SELECT inbox_try_claim(:eventId, :consumer)";
        report.check("Hibernate: inbox_try_claim(String) first",
                session.createNativeQuery(sql, Boolean.class)
                        .setParameter("eventId", BOB).setParameter("consumer", "hibernate")
                        .getSingleResult(),
                true);
        report.check("Hibernate: inbox_try_claim(UUID) of the same event",
                session.createNativeQuery(sql, Boolean.class)
                        .setParameter("eventId", BOB_UUID).setParameter("consumer", "hibernate")
                        .getSingleResult(),
                false);
    }

    /* Whether this delivery of the event changed anything. */
    private boolean handle(String consumer, String eventId) {
        // docs: begin hibernate-claim
        boolean first = sessionFactory.fromTransaction(session -> {
            boolean claimed = session.createNativeQuery(
                            "SELECT inbox_try_claim(:eventId, :consumer)", Boolean.class)
                    .setParameter("eventId", eventId)
                    .setParameter("consumer", consumer)
                    .getSingleResult();
            if (claimed) {
                session.persist(new AppliedEvent(consumer, eventId));   // the business change
            }
            return claimed;
        });                                                    // committed: now the Kafka offset
        // docs: end hibernate-claim
        return first;
    }
}

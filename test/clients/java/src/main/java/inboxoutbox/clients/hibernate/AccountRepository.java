/*
 * A Spring Data JPA repository of Accounts that also publishes and claims
 * events with native queries.  Spring Data reads a native query's result
 * with getObject, which for a ulid is a PGobject that it cannot make a
 * String of: the event id is cast to text in the query.  The parameters
 * need no cast.
 */
package inboxoutbox.clients.hibernate;

import org.springframework.data.jpa.repository.JpaRepository;
import org.springframework.data.jpa.repository.Query;
import org.springframework.data.repository.query.Param;

// docs: begin spring-data-repository
public interface AccountRepository extends JpaRepository<Account, String> {
    @Query(value = "SELECT CAST(outbox_publish(:topic, :key, :payload, :headers) AS text)",
            nativeQuery = true)
    String publish(@Param("topic") String topic, @Param("key") String key,
            @Param("payload") byte[] payload, @Param("headers") String headers);

    @Query(value = "SELECT inbox_try_claim(:eventId, :consumer)", nativeQuery = true)
    boolean claim(@Param("eventId") String eventId, @Param("consumer") String consumer);
}
// docs: end spring-data-repository

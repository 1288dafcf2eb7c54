/*
 * AccountRepository's publish() without the cast to text, which
 * HibernateClients shows Spring Data cannot return as a String.
 */
package inboxoutbox.clients.hibernate;

import org.springframework.data.jpa.repository.Query;
import org.springframework.data.repository.Repository;
import org.springframework.data.repository.query.Param;

public interface UncastRepository extends Repository<Account, String> {
    @Query(value = "SELECT outbox_publish(:topic, :key, :payload)", nativeQuery = true)
    String publish(@Param("topic") String topic, @Param("key") String key,
            @Param("payload") String payload);
}

# The relay's life: woken at commit, started by CREATE EXTENSION and stopped
# by DROP EXTENSION without a restart, restricted by inbox_outbox.databases,
# one per database, reloads without loss or duplicates, librdkafka only in
# the relay, bounded memory while the broker is down.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $kafka = InboxOutbox::Kafka->new(name => 'life');
$kafka->create_topic('orders', 3);

# A fallback poll of a minute: anything faster is the commit wake-up.
my $node = relay_node('life', $kafka->bootstrap, conf => q{
inbox_outbox.poll_interval = '60s'
});

# 1. Commit wake-up.
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'warm-up', 'x')});
wait_outbox_empty($node, 'postgres', 'warm-up');
$node->safe_psql('postgres', 'SELECT pg_sleep(1)');    # relay back to its idle wait
my $t0 = time();
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'wake', 'x')});
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM inbox_outbox.outbox')
  or die 'event not relayed';
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5,
	sprintf('an event is acknowledged %.3f s after commit, with a 60 s fallback poll', $elapsed));

# A direct INSERT wakes the relay too (statement trigger).
$t0 = time();
$node->safe_psql('postgres',
	q{INSERT INTO inbox_outbox.outbox (topic, key, payload) VALUES ('orders', 'orm', '\x01')});
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM inbox_outbox.outbox')
  or die 'event not relayed';
cmp_ok(time() - $t0, '<', 5, 'a direct INSERT wakes the relay at commit');

# 2. librdkafka lives only in the relay.
my $session = $node->background_psql('postgres');
my $backend = $session->query_safe(
	q{SELECT pg_backend_pid() FROM (SELECT outbox_publish('orders', 'maps', 'x')) s});
my $maps = slurp_file("/proc/$backend/maps");
ok($maps =~ /inbox_outbox\.so/, 'the application backend loaded inbox_outbox.so');
ok($maps !~ /librdkafka/, 'the application backend did not load librdkafka');
$session->quit;
my $relay_maps = slurp_file('/proc/' . relay_pid($node) . '/maps');
ok($relay_maps =~ /librdkafka/, 'the relay did load librdkafka');

# 3. CREATE EXTENSION starts a relay without a restart; DROP stops it.
$node->safe_psql('postgres', 'CREATE DATABASE app2');
$node->safe_psql('app2', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'app2');
$node->safe_psql('app2', q{SELECT outbox_publish('orders', 'app2', 'from app2')});
wait_outbox_empty($node, 'app2');
pass('a relay started in a database created after server start');
$node->poll_query_until('app2', 'SELECT published = 1 FROM inbox_outbox.relay_status')
  or die 'published did not count the event';
my $app2_relay = relay_pid($node, 'app2');
$t0 = time();
$node->safe_psql('app2', 'DROP EXTENSION inbox_outbox');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $app2_relay")
  or die 'relay did not stop';
cmp_ok(time() - $t0, '<', 10, 'DROP EXTENSION stops the relay at once, not at its 60 s poll');
$node->safe_psql('app2', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'app2');
pass('CREATE EXTENSION again starts it again');
is($node->safe_psql('app2', 'SELECT published FROM inbox_outbox.relay_status'), '0',
	'and its counters start over');
$node->safe_psql('app2', q{SELECT outbox_publish('orders', 'app2', 'again')});
wait_outbox_empty($node, 'app2');
$node->poll_query_until('app2', 'SELECT published = 1 FROM inbox_outbox.relay_status')
  or die 'published did not count the new event';
pass('counting what the new extension publishes');

# 4. inbox_outbox.databases restricts the relays.
$node->append_conf('postgresql.conf', "inbox_outbox.databases = 'postgres'");
$node->reload;
$node->poll_query_until('app2', 'SELECT pid IS NULL FROM inbox_outbox.relay_status')
  or die 'relay of app2 still runs';
pass('a database left out of inbox_outbox.databases loses its relay');
$node->safe_psql('app2', q{SELECT outbox_publish('orders', 'app2', 'waits')});
is($node->safe_psql('app2', 'SELECT count(*) FROM inbox_outbox.outbox'), '1',
	'its events wait');
$node->append_conf('postgresql.conf', "inbox_outbox.databases = ''");
$node->reload;
wait_outbox_empty($node, 'app2', 'after the relay came back');
pass('listed again, its relay comes back and publishes what waited');

# 5. One relay per database: a relay holds its database's slot in shared
# memory, out of SQL's reach.  A launcher that restarts (its own state is
# lost) finds the running relay there and starts no second one; and the
# advisory lock the relay used to hold keeps nobody away any more.
my $old = relay_pid($node);
my $launcher = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'inbox_outbox launcher'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
$node->poll_query_until('postgres',
	qq{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE backend_type = 'inbox_outbox launcher' AND pid <> $launcher})
  or die 'the launcher did not come back';
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'after-launcher', 'x')});
wait_outbox_empty($node, 'postgres', 'after the launcher restarted');
is( $node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || (min(pid) = } . $old . q{) FROM pg_stat_activity
		  WHERE backend_type = 'inbox_outbox relay' AND datname = 'postgres'}),
	'1 true',
	'a restarted launcher starts no second relay beside the running one');

my $locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(1768911480, 0)');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
$node->poll_query_until('postgres',
	"SELECT pid IS NOT NULL AND pid <> $old AND state <> 'starting' FROM inbox_outbox.relay_status")
  or die 'no relay came back';
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'unblocked', 'x')});
wait_outbox_empty($node, 'postgres', 'while a session holds the old advisory lock');
pass('a session holding the old advisory lock keeps no relay away');
$locker->quit;

# 6. A reload that changes the producer configuration mid-stream loses and
# duplicates nothing.
$kafka->create_topic('reload', 3);
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET inbox_outbox.batch_size = 20;
	ALTER SYSTEM SET inbox_outbox.kafka_config = 'linger.ms=10';
	SELECT pg_reload_conf();
	SELECT outbox_publish('reload', 'k' || (g % 7), g::text) FROM generate_series(1, 3000) g;
});
for my $cfg ('linger.ms=5', 'linger.ms=15;batch.num.messages=100', 'linger.ms=1')
{
	$node->safe_psql('postgres', qq{
		ALTER SYSTEM SET inbox_outbox.kafka_config = '$cfg';
		SELECT pg_reload_conf();
	});
	$node->safe_psql('postgres', 'SELECT pg_sleep(0.3)');
}
wait_outbox_empty($node, 'postgres', 'reloads');
my $messages = $kafka->consume('reload', min => 3000);
my %count;
$count{ $_->{value} }++ for @$messages;
is(scalar(keys %count), 3000, 'every event arrived across reloads');
is(scalar(grep { $_ != 1 } values %count), 0, 'none arrived twice');
ok($node->log_contains('Kafka configuration changed, reconnecting'),
	'the reloads recreated the producer');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET inbox_outbox.batch_size;
	ALTER SYSTEM RESET inbox_outbox.kafka_config;
	SELECT pg_reload_conf();
});

# 7. Memory stays bounded while the broker is down with 100,000 rows pending.
$kafka->stop;
$node->safe_psql('postgres',
	q{SELECT outbox_publish('orders', 'k' || (g % 100), repeat('x', 200)) FROM generate_series(1, 100000) g});
$node->poll_query_until('postgres', q{SELECT state = 'broker unreachable' FROM inbox_outbox.relay_status})
  or die 'relay did not notice the outage';
my $relay = relay_pid($node);
sub rss_kb
{
	my ($status) = slurp_file("/proc/$relay/status") =~ /VmRSS:\s+(\d+)/;
	return $status;
}
my $rss1 = rss_kb();
$node->safe_psql('postgres', 'SELECT pg_sleep(5)');
$node->safe_psql('postgres',
	q{SELECT outbox_publish('orders', 'k' || (g % 100), repeat('x', 200)) FROM generate_series(1, 100000) g});
$node->safe_psql('postgres', 'SELECT pg_sleep(5)');
my $rss2 = rss_kb();
note("relay RSS: $rss1 kB, then $rss2 kB with 200,000 rows pending");
cmp_ok($rss2, '<', 150_000, 'relay RSS stays under 150 MB');
cmp_ok($rss2 - $rss1, '<', 20_000, 'and does not grow with the backlog');

# A new broker list applies even while the round waits on the dead one.
my $kafka2 = InboxOutbox::Kafka->new(name => 'life2');
$node->safe_psql('postgres', "ALTER SYSTEM SET inbox_outbox.brokers = '" . $kafka2->bootstrap . "'");
$node->reload;
wait_outbox_empty($node, 'postgres', 'after moving to another broker');
pass('a reload moves the relay to another broker while the first is down');
$kafka2->stop;
$kafka->start;
$node->safe_psql('postgres', 'ALTER SYSTEM RESET inbox_outbox.brokers');
$node->reload;

# 8. SIGTERM: the relay stops cleanly.
$node->stop('fast');
ok($node->log_contains(qr/inbox_outbox relay for database "postgres" stopped/),
	'the relay stops cleanly on shutdown');

$kafka->stop;
done_testing();

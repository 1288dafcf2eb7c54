# Database operations while a relay runs in the database: ALTER DATABASE
# ... RENAME TO and SET TABLESPACE, CREATE DATABASE ... TEMPLATE (both
# strategies), DROP DATABASE with and without FORCE, also while no broker
# answers and rows are in flight.
#
# Each of these commands refuses to run while another session uses the
# database, and the relay is one.  The extension's ProcessUtility hook
# (src/database_ops.c) holds the database, so that the launcher starts no
# relay there, tells the relay to leave at once (no wait for
# acknowledgements, even with inbox_outbox.shutdown_timeout at 30 s here),
# runs the command and lets the launcher start the relay again.  Rows in
# flight when the relay left stay in the outbox and are sent by the next
# relay: every event published before and after the commands reaches Kafka.
use strict;
use warnings;

use IPC::Cmd qw(can_run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

my $topic = 'dbops';
my $mc = InboxOutbox::MockCluster->new(brokers => 1, topics => ["$topic:3"]);
my $node = relay_node('dbops', $mc->bootstrap, conf => q{
inbox_outbox.shutdown_timeout = '30s'
});

# The mock cluster does not quit while a client is connected, and the
# modules' END blocks would stop it before the node: stop the node first.
END
{
	local $?;
	$node->teardown_node if $node;
}

# Events that must reach Kafka (event id => 1), and those of databases
# dropped before a broker could take them, which may or may not.
my (%expected, %dropped);

sub publish
{
	my ($db, $n, $tag, $into) = @_;
	my $out = $node->safe_psql($db, qq{
		SELECT outbox_publish('$topic', 'k' || (i % 10), '$tag-' || i)
		FROM generate_series(1, $n) i});
	$into->{$_} = 1 for split /\n/, $out;
	return;
}

# Run a statement in database postgres; return its exit code, stderr and
# how long it took.
sub timed
{
	my ($sql) = @_;
	my $t0 = time();
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	return ($ret, $stderr, time() - $t0);
}

sub database_oid
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT oid FROM pg_database WHERE datname = '$name'");
}

# Wait until a relay other than $old runs in $db.
sub wait_new_relay
{
	my ($db, $old, $what) = @_;
	$node->poll_query_until($db,
		"SELECT pid IS NOT NULL AND pid <> $old AND state <> 'starting' FROM inbox_outbox.relay_status")
	  or die "no new relay in $db ($what)";
	return relay_pid($node, $db);
}

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'app');

# 1. RENAME while events flow: slow acknowledgements keep rows in flight.
$mc->rtt(1, 300);
publish('app', 3000, 'before-rename', \%expected);
my $pending = $node->safe_psql('app', 'SELECT count(*) FROM inbox_outbox.outbox');
my $old = relay_pid($node, 'app');
my ($ret, $err, $took) = timed('ALTER DATABASE app RENAME TO app_renamed');
is($ret, 0, 'ALTER DATABASE ... RENAME TO works while the relay runs') or diag($err);
note(sprintf('rename took %.2f s with %d of 3000 rows still pending before it', $took, $pending));
cmp_ok($took, '<', 5, 'and does not wait for PostgreSQL to give up on the relay');
my $renamed = wait_new_relay('app_renamed', $old, 'after the rename');
pass('the launcher starts a relay in the renamed database');
$mc->rtt(1, 0);
publish('app_renamed', 1000, 'after-rename', \%expected);
wait_outbox_empty($node, 'app_renamed', 'after the rename');

# 2. A command that fails after the relay left: the relay comes back.
($ret, $err) = timed('ALTER DATABASE app_renamed RENAME TO postgres');
isnt($ret, 0, 'a RENAME to an existing name fails');
like($err, qr/already exists/, 'with PostgreSQL\'s own error');
my $after_failure = wait_new_relay('app_renamed', $renamed, 'after a failed rename');
pass('the launcher starts the relay again after the failed command');

# 3. Someone who does not own the database stops no relay: PostgreSQL
# refuses the command, and the relay carries on.
$node->safe_psql('postgres', 'CREATE ROLE regress_other CREATEDB');
($ret, $err) = timed(q{
	SET ROLE regress_other;
	ALTER DATABASE app_renamed RENAME TO app_stolen;
});
like($err, qr/must be owner of database/, 'a non-owner cannot rename the database');
($ret, $err) = timed(q{
	SET ROLE regress_other;
	DROP DATABASE app_renamed WITH (FORCE);
});
like($err, qr/must be owner of database/, 'nor drop it');
is(relay_pid($node, 'app_renamed'), $after_failure,
	'and the relay was not stopped for either');

# 4. CREATE DATABASE ... TEMPLATE, with either strategy; the copies have the
# extension, so they get relays, and a plain DROP DATABASE of a copy works.
for my $strategy ('wal_log', 'file_copy')
{
	my $before = relay_pid($node, 'app_renamed');
	($ret, $err) = timed(
		"CREATE DATABASE copy_$strategy TEMPLATE app_renamed STRATEGY $strategy");
	is($ret, 0, "CREATE DATABASE ... TEMPLATE ... STRATEGY $strategy works while the relay runs")
	  or diag($err);
	wait_new_relay('app_renamed', $before, "after the copy with $strategy");
	wait_relay_running($node, "copy_$strategy");
	my $copy_relay = relay_pid($node, "copy_$strategy");
	($ret, $err, $took) = timed("DROP DATABASE copy_$strategy");
	is($ret, 0, 'DROP DATABASE of the copy works while its relay runs') or diag($err);
	cmp_ok($took, '<', 5, 'without waiting for PostgreSQL to give up on the relay');
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $copy_relay")
	  or die 'the copy\'s relay is still there';
}

# 5. ALTER DATABASE ... SET TABLESPACE.
my $ts = $node->basedir . '/ts';
mkdir $ts or die "mkdir $ts: $!";
$node->safe_psql('postgres', "CREATE TABLESPACE regress_ts LOCATION '$ts'");
$old = relay_pid($node, 'app_renamed');
($ret, $err) = timed('ALTER DATABASE app_renamed SET TABLESPACE regress_ts');
is($ret, 0, 'ALTER DATABASE ... SET TABLESPACE works while the relay runs') or diag($err);
wait_new_relay('app_renamed', $old, 'after the move');
publish('app_renamed', 500, 'after-move', \%expected);
wait_outbox_empty($node, 'app_renamed', 'after the move');
pass('the relay publishes from the moved database');

# 6. While the command waits for a lock, the launcher starts no relay; a
# command whose backend is terminated meanwhile lets the relay come back.
my $dbid = database_oid('app_renamed');
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; COMMENT ON DATABASE app_renamed IS 'locked'");
my $renamer = $node->background_psql('postgres', on_error_stop => 0);
my $renamer_pid = $renamer->query_safe('SELECT pg_backend_pid()');
$old = relay_pid($node, 'app_renamed');
$renamer->query_until(qr/started/,
	"\\echo started\nALTER DATABASE app_renamed RENAME TO app_blocked;\n");
$node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_locks
	 WHERE locktype = 'object' AND objid = $dbid AND pid = $renamer_pid AND NOT granted})
  or die 'the rename does not wait for the lock';
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $old")
  or die 'the relay did not leave';

# The launcher would start a relay 2 s after the old one left; started, it
# would queue for the database's lock behind the rename.  Watch for 4 s.
my $relay_queued = 0;
my $watch_until = time() + 4;
while (time() < $watch_until && !$relay_queued)
{
	$relay_queued = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'object' AND objid = $dbid
		   AND mode = 'RowExclusiveLock' AND NOT granted});
	Time::HiRes::sleep(0.1);
}
is($relay_queued, 0, 'no relay is started while the command waits');

$node->safe_psql('postgres', "SELECT pg_terminate_backend($renamer_pid)");
wait_new_relay('app_renamed', $old, 'after the waiting command was terminated');
pass('a terminated command releases the database: the relay comes back');
$locker->query_safe('COMMIT');
$locker->quit;
eval { $renamer->quit };

# A RENAME in a transaction block holds the database for the statement
# only: the relay started after it waits for the database's lock until the
# transaction ends, and then works under the name the transaction left.
$old = relay_pid($node, 'app_renamed');
my $tx = $node->background_psql('postgres');
$tx->query_safe('BEGIN; ALTER DATABASE app_renamed RENAME TO app_tx');
$node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_locks
	 WHERE locktype = 'object' AND objid = $dbid
	   AND mode = 'RowExclusiveLock' AND NOT granted})
  or die 'no relay queued for the database after the statement';
pass('after a RENAME in a transaction block the launcher starts a relay, which waits');
$tx->query_safe('ROLLBACK');
$tx->quit;
wait_new_relay('app_renamed', $old, 'after the rolled back rename');
pass('and works under the old name after a ROLLBACK');

# 7. All brokers down, rows in flight: RENAME, DROP ... WITH (FORCE) and a
# plain DROP do not wait for acknowledgements that cannot come.
$node->safe_psql('postgres', 'CREATE DATABASE outage');
$node->safe_psql('outage', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'outage');
for my $db (qw(doomed doomed_plain))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION inbox_outbox');
	wait_relay_running($node, $db);
}
$mc->broker_down(1);
publish('outage', 500, 'outage', \%expected);
publish($_, 500, $_, \%dropped) for qw(doomed doomed_plain);
for my $db (qw(outage doomed doomed_plain))
{
	$node->poll_query_until($db,
		q{SELECT state = 'broker unreachable' AND pending > 0 FROM inbox_outbox.relay_status})
	  or die "the relay of $db did not notice the outage";
}

$old = relay_pid($node, 'outage');
($ret, $err, $took) = timed('ALTER DATABASE outage RENAME TO outage_renamed');
is($ret, 0, 'RENAME works while no broker answers') or diag($err);
cmp_ok($took, '<', 10, sprintf('in %.2f s, with shutdown_timeout at 30 s', $took));
wait_new_relay('outage_renamed', $old, 'during the outage');
publish('outage_renamed', 500, 'outage-renamed', \%expected);

my $user_session = $node->background_psql('doomed');
$user_session->query_safe('SELECT 1');
($ret, $err, $took) = timed('DROP DATABASE doomed WITH (FORCE)');
is($ret, 0, 'DROP DATABASE ... WITH (FORCE) works while no broker answers') or diag($err);
cmp_ok($took, '<', 10, sprintf('in %.2f s, with shutdown_timeout at 30 s', $took));
eval { $user_session->quit };

($ret, $err, $took) = timed('DROP DATABASE doomed_plain');
is($ret, 0, 'and so does a plain DROP DATABASE') or diag($err);
cmp_ok($took, '<', 10, sprintf('in %.2f s', $took));

# A database owner who is no superuser may use FORCE: PostgreSQL alone
# would refuse to signal the relay, which runs as the bootstrap superuser.
$node->safe_psql('postgres', 'CREATE ROLE regress_owner CREATEDB');
$node->safe_psql('postgres', 'CREATE DATABASE owned OWNER regress_owner');
$node->safe_psql('owned', 'CREATE EXTENSION inbox_outbox');
wait_relay_running($node, 'owned');
publish('owned', 100, 'owned', \%dropped);
$node->poll_query_until('owned',
	q{SELECT state = 'broker unreachable' AND pending > 0 FROM inbox_outbox.relay_status})
  or die 'the relay of owned did not notice the outage';
($ret, $err, $took) = timed(q{
	SET ROLE regress_owner;
	DROP DATABASE owned WITH (FORCE);
});
is($ret, 0, 'its owner, no superuser, drops a database WITH (FORCE) while its relay runs')
  or diag($err);
cmp_ok($took, '<', 10, sprintf('in %.2f s', $took));

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'inbox_outbox relay'
		   AND datname NOT IN ('postgres', 'app_renamed', 'outage_renamed')}),
	'0', 'no relay is left behind for a dropped database');

# 8. The broker comes back: everything published in the databases that
# remain arrives.
$mc->broker_up(1);
wait_outbox_empty($node, 'outage_renamed', 'after the outage');
wait_outbox_empty($node, 'app_renamed', 'after the outage');
my $messages = InboxOutbox::Kafka::kcat_consume($mc->bootstrap, $topic,
	min => scalar(keys %expected),
	timeout => $PostgreSQL::Test::Utils::timeout_default);
my %seen;
$seen{ $_->{headers}{event_id} // '' }++ for @$messages;
my @missing = grep { !$seen{$_} } keys %expected;
my @unknown = grep { !$expected{$_} && !$dropped{$_} } keys %seen;
is(scalar(@missing), 0,
	sprintf('all %d events published before, between and after the commands arrived',
		scalar(keys %expected)));
is(scalar(@unknown), 0, 'and nothing else');
note(sprintf('%d messages for %d distinct events', scalar(@$messages), scalar(keys %seen)));

$node->stop;
is($mc->stop, 0, 'mock cluster exited cleanly');
done_testing();

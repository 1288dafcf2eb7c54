# Failover-safe mode: with inbox_outbox.standby_slots, the relay sends an
# event only once the standbys of the named physical slots have flushed its
# commit.
#
# Without it, the relay sent a row as soon as its transaction committed, so
# after an asynchronous-replication failover Kafka could hold events that
# the promoted standby never had.  Here a streaming standby is stopped,
# events are published, and none reaches Kafka (the relay says it waits for
# the standby) until the standby is started again; then all of them arrive,
# in order per key.  A slot that does not exist or is logical blocks
# delivery with the reason in relay_status; emptying the setting lets events
# flow; a stop while waiting leaves the rows in the outbox; values that
# cannot be slot names are refused, and one refused in postgresql.conf at
# server start makes the relay wait rather than send unguarded.
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

my $topic = 'orders';
my $partitions = 3;

my $mc = InboxOutbox::MockCluster->new(
	brokers => 1,
	topics => ["$topic:$partitions"]);
my $boot = $mc->bootstrap;

# wal_level logical, so that a logical slot can be named too.
my $primary = relay_node('primary', $boot,
	init => { allows_streaming => 'logical' });
$primary->safe_psql('postgres',
	q{SELECT pg_create_physical_replication_slot('standby1', true)});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', q{primary_slot_name = 'standby1'});
$standby->start;
$primary->wait_for_catchup($standby, 'flush');
is($standby->safe_psql('postgres', 'SELECT state FROM inbox_outbox.relay_status'),
	'in recovery', 'the standby\'s relay_status says it is in recovery');

# A walreceiver stopped with SIGSTOP, to be let go whatever happens.
my $frozen;

# The mock cluster does not quit while a client is connected, and the
# modules' END blocks would stop it before the nodes: stop the nodes first.
END
{
	local $?;
	kill 'CONT', $frozen if $frozen;
	$standby->teardown_node if $standby;
	$primary->teardown_node if $primary;
}

# Every event published: id => [ key, payload ]; the ids of each key in
# publishing order.
my (%events, %by_key);
my $published = 0;

# Publish $n events over four keys, one transaction each; returns their ids.
sub publish
{
	my ($n, $tag) = @_;
	my @ids;
	for my $i (1 .. $n)
	{
		my $seq = $published + $i;
		my $key = 'key' . ($seq % 4);
		my $payload = "$tag-$seq";
		my $id = $primary->safe_psql('postgres',
			"SELECT outbox_publish('$topic', '$key', '$payload'::text)");
		$events{$id} = [ $key, $payload ];
		push @{ $by_key{$key} }, $id;
		push @ids, $id;
	}
	$published += $n;
	return @ids;
}

# The distinct event ids in the topic now.
sub ids_in_kafka
{
	my $messages = InboxOutbox::Kafka::kcat_consume($boot, $topic,
		timeout => $PostgreSQL::Test::Utils::timeout_default);
	my %ids = map { ($_->{headers}{event_id} // '') => 1 } @$messages;
	return \%ids;
}

sub relay_state
{
	return $primary->safe_psql('postgres',
		q{SELECT state || ' | ' || pending || ' | ' || coalesce(last_error, '')
		  FROM inbox_outbox.relay_status});
}

# Wait until the relay waits for a standby, with last_error matching.
sub wait_blocked
{
	my ($error_like, $what) = @_;
	$primary->poll_query_until('postgres',
		qq{SELECT state = 'waiting for standby' AND last_error LIKE '$error_like'
		   FROM inbox_outbox.relay_status})
	  or diag('relay_status: ' . relay_state());
	like(relay_state(), qr/^waiting for standby \| \d+ \| /,
		"$what: relay_status says the relay waits for the standby");
	return;
}

# Whether the standby's slot lacks what was written up to now.
sub slot_behind
{
	my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	return $primary->safe_psql('postgres',
		qq{SELECT restart_lsn < '$lsn' FROM pg_replication_slots
		   WHERE slot_name = 'standby1'}) eq 't';
}

sub set_slots
{
	my ($value) = @_;
	$primary->safe_psql('postgres',
		"ALTER SYSTEM SET inbox_outbox.standby_slots = '$value'; SELECT pg_reload_conf();");
	return;
}

# 1. The default sends without looking at any standby.
$standby->stop;
my @early = publish(3, 'default');
wait_outbox_empty($primary, 'postgres', 'with standby_slots empty');
ok(slot_behind(), 'the stopped standby lacks the events');
my $ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @early), 3,
	'with standby_slots empty, events are sent although the standby lacks them');
$standby->start;
$primary->wait_for_catchup($standby, 'flush');

# 2. With the standby streaming, events flow.
set_slots('standby1');
my @flowing = publish(5, 'streaming');
wait_outbox_empty($primary, 'postgres', 'standby streaming');
$ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @flowing), 5, 'with the standby streaming, events are sent');

# A standby that streams but has not flushed the commits (its walreceiver
# is stopped; the walsender stays connected): the relay waits for the
# flush position, not for a connection, and reports no error meanwhile.
$frozen = $standby->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
kill 'STOP', $frozen;
my @unflushed = publish(3, 'unflushed');
$primary->poll_query_until('postgres',
	q{SELECT state = 'waiting for standby' AND last_error IS NULL AND pending = 3
	  FROM inbox_outbox.relay_status})
  or diag('relay_status: ' . relay_state());
is($primary->safe_psql('postgres',
		q{SELECT active FROM pg_replication_slots WHERE slot_name = 'standby1'}),
	't', 'the slot stays active while its standby does not flush');
ok(slot_behind(), 'the connected standby lacks the events');
$primary->safe_psql('postgres', 'SELECT pg_sleep(1)');
$ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @unflushed), 0,
	'events wait for a connected standby that has not flushed them');
is($primary->safe_psql('postgres', 'SELECT last_error IS NULL FROM inbox_outbox.relay_status'),
	't', 'a standby that is merely behind is no error');
kill 'CONT', $frozen;
$frozen = undef;
wait_outbox_empty($primary, 'postgres', 'standby flushing again');
$ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @unflushed), 3, 'once it flushes, they are sent');

# 3. Stop the standby: nothing reaches Kafka.
$standby->stop;
my @held = publish(40, 'held');
wait_blocked('no standby streams from replication slot "standby1"%', 'standby stopped');
ok(slot_behind(), 'the standby lacks the events');
$primary->safe_psql('postgres', 'SELECT pg_sleep(2)');
$ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @held), 0, 'none of the 40 events reached Kafka');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox'),
	'40', 'all 40 are still in the outbox');
ok($primary->log_contains(
		qr/LOG:  inbox_outbox relay for database "postgres" waits for a standby: no standby streams from replication slot "standby1"/),
	'the log says why the relay waits');

# 4. A stop while the relay waits: it leaves at once, the rows stay.
my $t0 = time();
$primary->stop('fast');
cmp_ok(time() - $t0, '<', 10, 'a fast stop is not held up by the wait');
$primary->start;
wait_blocked('no standby streams from replication slot "standby1"%', 'after a restart');
$ids = ids_in_kafka();
is(scalar(grep { $ids->{$_} } @held), 0, 'after a restart, still none reached Kafka');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox'),
	'40', 'and the 40 are still in the outbox');

# 5. Start the standby: all arrive, in order per key.
my $log_offset = -s $primary->logfile;
$standby->start;
wait_outbox_empty($primary, 'postgres', 'standby back');
my $messages = InboxOutbox::Kafka::kcat_consume($boot, $topic,
	timeout => $PostgreSQL::Test::Utils::timeout_default, min => $published);
my $r = first_arrivals($messages, \%events, $partitions);
is(scalar @{ $r->{unexpected} } + $r->{bad_value}, 0, 'no unexpected message');
is_deeply([ sort keys %{ $r->{seen} } ], [ sort keys %events ],
	"exactly the $published published events are in Kafka");
is(scalar(grep { $r->{seen}{$_} } @held), 40, 'the 40 held events arrived');
my @disordered =
  grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $by_key{$_} }) }
  sort keys %by_key;
is_deeply(\@disordered, [], 'per key, first arrivals are in publishing order');
ok($primary->poll_query_until('postgres',
		q{SELECT state <> 'waiting for standby' AND last_error IS NULL FROM inbox_outbox.relay_status}),
	'relay_status no longer shows the wait or its error');
ok($primary->log_contains(qr/inbox_outbox relay for database "postgres" resumes/, $log_offset),
	'the log says the relay resumes');

# 6. A slot that does not exist, or is logical, blocks delivery.
set_slots('standby1, nosuch');
my @missing = publish(1, 'missing');
wait_blocked('replication slot "nosuch" named by inbox_outbox.standby_slots does not exist',
	'missing slot');
$primary->safe_psql('postgres', 'SELECT pg_sleep(1)');
$ids = ids_in_kafka();
ok(!$ids->{ $missing[0] }, 'with a missing slot named, the event is not sent');

# pgoutput is built into the server; test_decoding is a contrib module that
# a PostgreSQL installation may lack.
$primary->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('logical1', 'pgoutput')});
set_slots('logical1');
wait_blocked('replication slot "logical1" named by inbox_outbox.standby_slots is a logical slot%',
	'logical slot');
$ids = ids_in_kafka();
ok(!$ids->{ $missing[0] }, 'with a logical slot named, the event is not sent');
$primary->safe_psql('postgres', q{SELECT pg_drop_replication_slot('logical1')});

# Emptying the setting lets the events flow.
$primary->safe_psql('postgres',
	'ALTER SYSTEM RESET inbox_outbox.standby_slots; SELECT pg_reload_conf();');
wait_outbox_empty($primary, 'postgres', 'setting emptied');
$ids = ids_in_kafka();
ok($ids->{ $missing[0] }, 'emptied by a reload, the setting lets the event go');

# 7. What cannot be a slot's name is refused.
my ($ret, $stdout, $stderr) = $primary->psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.standby_slots = 'standby1, Bad-Name'});
like($stderr,
	qr/ERROR:  "bad-name" in inbox_outbox.standby_slots is not a valid replication slot name/,
	'a name with a hyphen is refused');
($ret, $stdout, $stderr) = $primary->psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.standby_slots = 'standby1,,x'});
like($stderr, qr/invalid list syntax in parameter "inbox_outbox.standby_slots"/,
	'an empty entry is refused');
($ret, $stdout, $stderr) = $primary->psql('postgres',
	"ALTER SYSTEM SET inbox_outbox.standby_slots = '" . ('s' x 64) . "'");
like($stderr, qr/name 1 in inbox_outbox.standby_slots is too long/,
	'a name longer than 63 bytes is refused');
is($primary->safe_psql('postgres', 'SHOW inbox_outbox.standby_slots'), '',
	'the setting kept its value');

# 8. A value refused in postgresql.conf at server start makes the relay
# wait, not send unguarded.
$primary->append_conf('postgresql.conf', q{inbox_outbox.standby_slots = 'Bad-Name'});
$primary->restart;
my @refused = publish(1, 'refused');
wait_blocked('the value of inbox_outbox.standby_slots in the configuration file was refused%',
	'value refused at start');
$ids = ids_in_kafka();
ok(!$ids->{ $refused[0] }, 'with the value refused at start, the event is not sent');
$primary->append_conf('postgresql.conf', q{inbox_outbox.standby_slots = 'standby1'});
$primary->reload;
wait_outbox_empty($primary, 'postgres', 'value corrected');
$ids = ids_in_kafka();
ok($ids->{ $refused[0] }, 'corrected by a reload, the event goes to Kafka');

$standby->stop;
$primary->stop;
$mc->stop;
done_testing();

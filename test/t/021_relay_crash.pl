# Nothing committed is lost when the relay is killed, the server crashes or
# the broker goes away mid-stream: afterwards every committed event is in
# Kafka at least once, no rolled-back event is, each key's first deliveries
# are in commit order, and the outbox is empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $kafka = InboxOutbox::Kafka->new(name => 'crash');
$kafka->create_topic('orders', 3);

# Small rounds with some linger make the relay slow enough to interrupt.
my $node = relay_node('crash', $kafka->bootstrap, conf => q{
inbox_outbox.batch_size = 50
inbox_outbox.kafka_config = 'linger.ms=20'
restart_after_crash = on
});
$node->safe_psql('postgres', q{
	CREATE TABLE ledger (event_id ulid PRIMARY KEY, key int, seq int);
	CREATE SEQUENCE seq;
});

# Publish $n events over 50 keys in transactions of 10 events; every tenth
# transaction rolls back.  Returns once all have run.
my $round = 0;
sub publish
{
	my ($n) = @_;
	$round++;
	my $sql = '';
	for my $t (1 .. $n / 10)
	{
		my $end = ($t % 10 == 0) ? 'ROLLBACK' : 'COMMIT';
		$sql .= qq{BEGIN;
INSERT INTO ledger
SELECT outbox_publish('orders', 'key-' || k, jsonb_build_object('round', $round, 'k', k)), k, nextval('seq')
FROM (SELECT (random() * 49)::int + 1 AS k FROM generate_series(1, 10)) s;
$end;
};
	}
	$node->safe_psql('postgres', $sql);
}

sub pending
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM inbox_outbox.outbox');
}

# Wait until the relay has published some but not all of the backlog.
sub wait_mid_stream
{
	my ($what) = @_;
	$node->poll_query_until('postgres', q{
		SELECT published > 0 FROM inbox_outbox.relay_status})
	  or die "relay did not start publishing ($what)";
	my $left = pending();
	cmp_ok($left, '>', 0, "$what happens mid-stream ($left rows pending)");
}

# 1. kill -9 of the relay, three times.
publish(6000);
for my $i (1 .. 3)
{
	wait_mid_stream("kill -9 number $i");
	my $pid = relay_pid($node);
	kill 'KILL', $pid;
	my $t0 = time();
	poll_through_restart($node, 'postgres', qq{
		SELECT pid IS NOT NULL AND pid <> $pid AND state <> 'starting'
		FROM inbox_outbox.relay_status})
	  or die 'relay did not come back';
	my $back = time() - $t0;
	cmp_ok($back, '<', 30, sprintf('relay back %.1f s after kill -9 number %d', $back, $i));
}

# 2. immediate shutdown of the server.
publish(3000);
wait_mid_stream('immediate shutdown');
$node->stop('immediate');
$node->start;
wait_relay_running($node);

# 3. the broker stops for 30 s; events published meanwhile wait.
publish(2000);
wait_mid_stream('broker stop');
$kafka->stop;
publish(1000);
$node->poll_query_until('postgres', q{
	SELECT state = 'broker unreachable' FROM inbox_outbox.relay_status})
  or die 'relay did not notice the broker outage';
pass('relay_status reports the broker unreachable');
my $held = pending();
cmp_ok($held, '>', 0, "rows wait in the outbox during the outage ($held)");
sleep(30);    # the outage itself, not a wait for a result
is(pending(), $held, 'nothing is deleted while the broker is down');
$kafka->start;

wait_outbox_empty($node, 'postgres', 'after the broker came back');

my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
my %ledger = map { my ($id, $k, $s) = split /\|/; ($id => [ "key-$k", $s ]) }
  split /\n/, $node->safe_psql('postgres', 'SELECT event_id, key, seq FROM ledger');
my $messages = $kafka->consume('orders', min => $committed, timeout => 120);

my (%seen, @unexpected, %first);
foreach my $m (@$messages)
{
	my $id = $m->{headers}{event_id};
	if (!exists $ledger{$id})
	{
		push @unexpected, $id;
		next;
	}
	push @{ $first{ $m->{key} } }, $ledger{$id}[1] unless $seen{$id}++;
}
is(scalar(@unexpected), 0, 'no rolled-back event reached Kafka');
is(scalar(keys %seen), $committed, "all $committed committed events reached Kafka");
note('duplicates (at least once): ' . (scalar(@$messages) - scalar(keys %seen)));

# Within a key, ledger seq follows commit order (one publisher at a time).
my @disordered = grep {
	my @s = @{ $first{$_} };
	grep { $s[$_] < $s[ $_ - 1 ] } 1 .. $#s;
} keys %first;
is(scalar(@disordered), 0, "each key's events first arrived in commit order");
is(pending(), 0, 'the outbox is empty');

$node->stop;
$kafka->stop;
done_testing();

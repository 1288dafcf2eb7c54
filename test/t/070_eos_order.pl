# Exactly once: committed events reach Kafka once each for a read_committed
# consumer, rolled-back ones never, each key's events in commit order.
#
# 020's workload with inbox_outbox.delivery = 'exactly_once': 8 sessions run
# 20,000 transactions over 200 shared keys; each locks its key's aggregate
# row, bumps its version and publishes an event carrying it; one in ten
# rolls back.  The ledger table, written in the same transactions, is the
# record of what committed.  A read_uncommitted consumer sees at least as
# much (it also sees the records of aborted transactions, if any).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $partitions = 4;
my $kafka = InboxOutbox::Kafka->new(name => 'eos_order');
$kafka->create_topic('orders', $partitions);

my $node = relay_node('eos_order', $kafka->bootstrap, conf => $eos_conf);
$node->poll_query_until('postgres',
	q{SELECT delivery = 'exactly_once' AND state = 'idle' FROM inbox_outbox.relay_status})
  or die 'the relay did not come up in exactly-once mode';
is($node->safe_psql('postgres', 'SELECT transactional_id FROM inbox_outbox.relay_progress'),
	transactional_id($node), 'the relay recorded its transactional id in relay_progress');

$node->safe_psql('postgres', q{
	CREATE TABLE aggregate (key int PRIMARY KEY, version int NOT NULL DEFAULT 0);
	INSERT INTO aggregate SELECT g FROM generate_series(1, 200) g;
	CREATE TABLE ledger (event_id ulid PRIMARY KEY, key int, version int);
});

my $script = "$PostgreSQL::Test::Utils::tmp_check/eos_order.pgb";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set k random(1, 200)
\set roll random(1, 10)
BEGIN;
UPDATE aggregate SET version = version + 1 WHERE key = :k RETURNING version
\gset
INSERT INTO ledger
SELECT outbox_publish('orders', 'key-' || :k,
                      jsonb_build_object('key', :k, 'version', :version),
                      jsonb_build_object('version', :version::text)),
       :k, :version;
\if :roll = 1
ROLLBACK;
\else
COMMIT;
\endif
});

command_ok(
	[
		'pgbench', '-n', '-c', '8', '-j', '2', '-t', '2500', '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'8 sessions ran 20,000 transactions');

my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
cmp_ok($committed, '>', 16000, "most transactions committed ($committed)");
cmp_ok($committed, '<', 20000, 'some transactions rolled back');

wait_outbox_empty($node, 'postgres', 'all committed events delivered');

my (%expected, %order);
foreach my $row (split /\n/,
	$node->safe_psql('postgres', 'SELECT event_id, key, version FROM ledger ORDER BY key, version'))
{
	my ($id, $key, $version) = split /\|/, $row;
	$expected{$id} = [ "key-$key", qq({"key": $key, "version": $version}) ];
	push @{ $order{"key-$key"} }, $id;
}

my $messages = $kafka->consume_raw('orders', min => $committed, timeout => 120);
check_exactly_once($messages, \%expected, \%order, $partitions, 'read_committed');

my $bad_header = grep { ($_->{headers}{version} // '') ne
	  ($expected{ $_->{headers}{event_id} // '' } // [ '', '' ])->[1] =~ s/.*"version": (\d+)}/$1/r }
  @$messages;
is($bad_header, 0, 'each event carries its version header');

my $uncommitted = $kafka->consume_raw('orders',
	isolation => 'read_uncommitted', min => $committed, timeout => 120);
my $seen = count_arrivals($uncommitted);
is(scalar(grep { !$seen->{$_} } keys %expected), 0,
	'read_uncommitted sees every committed event too');
note('read_uncommitted: ' . scalar(@$uncommitted) . " messages for $committed events");

is($node->safe_psql('postgres', 'SELECT published, delivery FROM inbox_outbox.relay_status'),
	"$committed|exactly_once", 'relay_status counts every published event, in exactly-once mode');

$node->stop;
$kafka->stop;
done_testing();

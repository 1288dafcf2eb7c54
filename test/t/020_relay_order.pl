# Committed events reach Kafka, rolled-back ones do not, and each key's events
# arrive in the order their transactions committed.
#
# 8 sessions run 20,000 transactions over 200 shared keys.  Each transaction
# locks its key's aggregate row, as an application locks the aggregate it
# changes, bumps the aggregate's version and publishes an event carrying it;
# one transaction in ten rolls back.  The ledger table, written in the same
# transactions, is the record of what committed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $partitions = 4;
my $kafka = InboxOutbox::Kafka->new(name => 'order');
$kafka->create_topic('orders', $partitions);

my $node = relay_node('order', $kafka->bootstrap);
$node->safe_psql('postgres', q{
	CREATE TABLE aggregate (key int PRIMARY KEY, version int NOT NULL DEFAULT 0);
	INSERT INTO aggregate SELECT g FROM generate_series(1, 200) g;
	CREATE TABLE ledger (event_id ulid PRIMARY KEY, key int, version int);
});

my $script = "$PostgreSQL::Test::Utils::tmp_check/order.pgb";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set k random(1, 200)
\set roll random(1, 10)
BEGIN;
UPDATE aggregate SET version = version + 1 WHERE key = :k RETURNING version
\gset
INSERT INTO ledger
SELECT outbox_publish('orders', 'key-' || :k,
                      jsonb_build_object('key', :k, 'version', :version),
                      jsonb_build_object('source', 'pgbench', 'version', :version::text)),
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

wait_outbox_empty($node, 'postgres', 'all committed events acknowledged');
my $messages = $kafka->consume('orders', min => $committed, timeout => 120);

# What committed, per event id and per key in commit (version) order.
my %ledger;
my %versions;
foreach my $row (split /\n/,
	$node->safe_psql('postgres', 'SELECT event_id, key, version FROM ledger ORDER BY key, version'))
{
	my ($id, $key, $version) = split /\|/, $row;
	$ledger{$id} = { key => "key-$key", version => $version };
	push @{ $versions{"key-$key"} }, $version;
}

my (%seen, @unexpected, @bad_mapping);
my %arrived;
foreach my $m (@$messages)
{
	my $id = $m->{headers}{event_id};
	if (!defined $id || !exists $ledger{$id})
	{
		push @unexpected, $id // '(no event_id)';
		next;
	}
	$seen{$id}++;
	my $l = $ledger{$id};
	push @{ $arrived{ $m->{key} } }, $m->{headers}{version};
	push @bad_mapping, $id
	  unless $m->{key} eq $l->{key}
	  && $m->{value} eq qq({"key": ) . substr($l->{key}, 4) . qq(, "version": $l->{version}})
	  && $m->{headers}{source} eq 'pgbench'
	  && $m->{headers}{version} eq $l->{version}
	  && $m->{partition} == kafka_partition($l->{key}, $partitions)
	  && join(',', map { $_->[0] } @{ $m->{header_list} }) =~ /^(source,version|version,source),event_id$/;
}

is(scalar(@unexpected), 0, 'no rolled-back or unknown event reached Kafka')
  or diag("unexpected: @unexpected[0..9]");
is(scalar(keys %seen), $committed, 'every committed event reached Kafka');
is(scalar(grep { $_ > 1 } values %seen), 0, 'no event arrived twice');
is(scalar(@bad_mapping), 0,
	'key, value, headers and partition (murmur2, as the Java client) are as mapped')
  or diag("first bad: $bad_mapping[0]");

my @out_of_order = grep {
	join(',', @{ $arrived{$_} // [] }) ne join(',', @{ $versions{$_} })
} keys %versions;
is(scalar(@out_of_order), 0, "each key's events arrived in commit order")
  or diag("key $out_of_order[0]: got " . join(',', @{ $arrived{ $out_of_order[0] } }));

# Message timestamps are the rows' created_at.
my $ts_ok = 1;
foreach my $m (@$messages[0 .. 99])
{
	$ts_ok = 0 unless $m->{timestamp} > 1_600_000_000_000 && $m->{timestamp} <= time() * 1000 + 1000;
}
ok($ts_ok, 'message timestamps are the creation times');

is($node->safe_psql('postgres', 'SELECT published FROM inbox_outbox.relay_status'),
	$committed, 'relay_status counts every published event');

$node->stop;
$kafka->stop;
done_testing();

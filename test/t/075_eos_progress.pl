# The progress topic and its records (docs/exactly_once.md, sections 3
# and 4).
#
# On a broker that creates no topic by itself, the relay creates
# inbox_outbox_progress: one partition, compacted.  Every record, keyed by
# the relay's transactional id, decodes (InboxOutbox::Progress) to the ids
# of one round: the records' id lists are disjoint and together hold every
# event published.  With batch_size 100000 and a backlog of 120,000 rows no
# record lists more than 58,761 ids, the bound that keeps it within
# 1,000,000 bytes.  A progress topic made beforehand with
# max.message.bytes=2000 lowers the bound (the relay says so) and still
# everything is delivered once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::ExactlyOnce;
use InboxOutbox::Kafka;
use InboxOutbox::Progress;
use InboxOutbox::Relay;

my $topic = 'progress_events';
my $partitions = 3;
my $bound = 58_761;

my $kafka = InboxOutbox::Kafka->new(name => 'eos_progress',
	config => { 'auto.create.topics.enable' => 'false' });
$kafka->create_topic($topic, $partitions);
is($kafka->partition_count('inbox_outbox_progress'), 0, 'no progress topic at first');

my $node = relay_node('eos_progress', $kafka->bootstrap, conf => $eos_conf . q{
inbox_outbox.batch_size = 100
});
$node->poll_query_until('postgres',
	q{SELECT delivery = 'exactly_once' AND state = 'idle' FROM inbox_outbox.relay_status})
  or die 'the relay did not come up in exactly-once mode';

my $desc = $kafka->describe_topic('inbox_outbox_progress');
is($desc->{partitions}, 1, 'the relay created the progress topic with one partition');
is($desc->{config}{'cleanup.policy'}, 'compact', 'the progress topic is compacted');
is($desc->{config}{'segment.ms'}, '3600000', 'its segments roll every hour');

my $tid = transactional_id($node);
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $dboid = $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'postgres'});

my (%expected, %order);

# Publish $n events over 20 keys in transactions of $per.
sub publish
{
	my ($n, $per, $tag) = @_;
	my $sql = '';
	for (my $first = 1; $first <= $n; $first += $per)
	{
		my $last = $first + $per - 1;
		$last = $n if $last > $n;
		$sql .= qq{
		SELECT outbox_publish('$topic', 'key-' || (i % 20), '$tag-' || i), 'key-' || (i % 20), '$tag-' || i
		FROM generate_series($first, $last) i ORDER BY i;};
	}
	my @ids;
	foreach my $line (split /\n/, $node->safe_psql('postgres', $sql))
	{
		my ($id, $key, $payload) = split /\|/, $line;
		$expected{$id} = [ $key, $payload ];
		push @{ $order{$key} }, $id;
		push @ids, $id;
	}
	return @ids;
}

# The committed records of a progress topic from message $from on, decoded;
# checks that each is this relay's and that their ids are disjoint.
sub records
{
	my ($progress, $name, $from) = @_;
	my @decoded;
	my %owner;
	my $overlap = 0;
	my $foreign = 0;
	my @messages = grep { $_->{offset} >= ($from // 0) }
	  @{ $kafka->consume_raw($progress, timeout => 60) };
	foreach my $m (@messages)
	{
		my $r = decode_progress_record($m->{value});
		$foreign++ unless ($m->{key} // '') eq $tid
		  && "$r->{system_identifier}" eq $sysid
		  && "$r->{database}" eq $dboid;
		my @ids = map { ulid_text($_) } @{ $r->{ids} };
		$overlap += grep { $owner{$_}++ } @ids;
		push @decoded, { %$r, ids => \@ids, offset => $m->{offset}, bytes => length($m->{value}) };
	}
	is($foreign, 0, "$name: every record is keyed by the transactional id and names this database");
	is($overlap, 0, "$name: no id is in two records");
	return \@decoded;
}

# 1. Rounds of at most 100 rows, each with its record.
my @first = publish(1000, 10, 'small');
wait_outbox_empty($node, 'postgres', 'small rounds');
my $recs = records('inbox_outbox_progress', 'small rounds');
my %in_records = map { map { $_ => 1 } @{ $_->{ids} } } @$recs;
is(scalar(grep { !$in_records{$_} } @first), 0, 'every event is in a record');
is(scalar(keys %in_records), scalar @first, 'the records hold no other id');
is(scalar(grep { @{ $_->{ids} } > 100 } @$recs), 0, 'no record holds more than batch_size ids');
my @rounds = map { $_->{round} } grep { $_->{writer} eq $recs->[0]{writer} } @$recs;
is_deeply(\@rounds, [ sort { $a <=> $b } @rounds ], 'one writer\'s rounds are numbered in order');
my $next_offset = 1 + $recs->[-1]{offset};

# 2. The bound: 120,000 rows at batch_size 100000, more than two full records.
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.batch_size = 100000; SELECT pg_reload_conf();});
$node->poll_query_until('postgres', q{SELECT current_setting('inbox_outbox.batch_size') = '100000'})
  or die 'batch_size was not reloaded';
my @big = publish(120_000, 120_000, 'big');
ok(poll_until($node, 'SELECT count(*) FROM inbox_outbox.outbox', '0', 300),
	'the backlog of 120,000 rows drains');
$recs = records('inbox_outbox_progress', 'backlog', $next_offset);
my ($largest) = sort { $b <=> $a } map { scalar @{ $_->{ids} } } @$recs;
cmp_ok($largest, '<=', $bound, "no record lists more than $bound ids (largest: $largest)");
cmp_ok(scalar @$recs, '>=', 3, 'so the backlog took at least three rounds');
my ($heaviest) = sort { $b <=> $a } map { $_->{bytes} } @$recs;
cmp_ok($heaviest, '<=', 1_000_000 - 1024, "every record is within the bound's bytes ($heaviest)");
%in_records = map { map { $_ => 1 } @{ $_->{ids} } } @$recs;
is(scalar(grep { !$in_records{$_} } @big), 0, 'every event of the backlog is in a record');

# 3. A progress topic with max.message.bytes=2000 lowers the bound.
$kafka->create_topic('small_progress', 1,
	'cleanup.policy' => 'compact', 'max.message.bytes' => '2000');
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET inbox_outbox.progress_topic = 'small_progress';
	SELECT pg_reload_conf();});
$node->poll_query_until('postgres',
	q{SELECT topic = 'small_progress' FROM inbox_outbox.relay_progress})
  or die 'the relay did not take the new progress topic';
my @small = publish(500, 500, 'bounded');
wait_outbox_empty($node, 'postgres', 'with the small progress topic');
ok($node->log_contains(qr/LOG:  .*small_progress.*max\.message\.bytes|LOG:  .*max\.message\.bytes.*small_progress/, $offset),
	'the relay logs that the topic\'s max.message.bytes lowers the bound');
$recs = records('small_progress', 'small topic');
my %small_ids = map { map { $_ => 1 } @{ $_->{ids} } } @$recs;
is(scalar(grep { !$small_ids{$_} } @small), 0, 'every event is in a record of the small topic');
cmp_ok(scalar @$recs, '>=', 5, 'in several records (' . scalar(@$recs) . ')');
($heaviest) = sort { $b <=> $a } map { $_->{bytes} } @$recs;
cmp_ok($heaviest, '<', 2000, "each record fits the topic ($heaviest bytes)");

my $messages = $kafka->consume_raw($topic, min => scalar(keys %expected), timeout => 120);
check_exactly_once($messages, \%expected, \%order, $partitions, 'read_committed');

$node->stop;
$kafka->stop;
done_testing();

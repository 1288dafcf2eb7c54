# Java (PgJDBC), Node (node-postgres) and Go (pgx v5) clients as
# docs/clients.md shows them, against a relay and a real broker.  Each
# program binds ids, payloads and headers the way its driver does, with
# no cast in the SQL but those the docs name, reports its checks as JSON,
# and publishes events; once the outbox has drained, kafka-clients'
# KafkaConsumer (read_committed) reads the topic, and every event must be
# there once with its key, payload bytes, headers, event_id and a
# CreateTime timestamp equal to created_at truncated to the millisecond.
# Then each program claims every event through the inbox as a consumer
# would, the Java one straight from Kafka: true the first time, false for
# the redelivery, and the business change made once.  Last, every block
# of the programs marked for docs/clients.md must appear there verbatim.
#
# The programs are built by test/clients/build.sh into a cache outside the
# tree (Java 17 and Maven, Node and npm, Go as scripts/lib.sh installs
# them; INBOX_OUTBOX_GO names the go command).  A missing tool fails the
# test.
use strict;
use warnings;

use Encode qw(encode_utf8);
use File::Find;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::Clients;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $clients = "$ENV{TESTDIR}/test/clients";
my $topic = 'clients';

my $bin = client_programs();

my $kafka = InboxOutbox::Kafka->new(name => 'clients_jvm_node_go');
$kafka->create_topic($topic, 3);
# PgJDBC speaks only TCP.
my $node = relay_node('clients_jvm_node_go', $kafka->bootstrap,
	conf => "listen_addresses = '127.0.0.1'\n");
$node->safe_psql('postgres',
	'CREATE TABLE applied_events (consumer text, event_id ulid, PRIMARY KEY (consumer, event_id))');
my $user = $node->safe_psql('postgres', 'SELECT current_user');
my $port = $node->port;
my $jdbc = "jdbc:postgresql://127.0.0.1:$port/postgres?user=$user";
my $dsn = "postgresql://$user\@127.0.0.1:$port/postgres";

my @java = (
	'java', '-XX:TieredStopAtLevel=1',
	'-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
	'-cp', "$bin/java/clients.jar:$bin/java/lib/*", 'inboxoutbox.clients.Main');
my %program = (
	java => [ @java, 'publish', '--jdbc', $jdbc ],
	node => [ 'node', "$bin/node/clients.js", 'publish', '--dsn', $dsn ],
	go => [ "$bin/go/clients", 'publish', '--dsn', $dsn ],);
# Checks and events each program has: fewer means one went missing.
my %expected = (
	java => { checks => 16, events => 5 },
	node => { checks => 13, events => 5 },
	go => { checks => 17, events => 5 },);
my @languages = qw(java node go);

my @published;
foreach my $lang (@languages)
{
	my ($ok, $out) = run_client("the $lang publish program", 180,
		@{ $program{$lang} }, '--topic', $topic);
	my $report = JSON::PP->new->decode($ok ? $out : '{"checks": [], "published": []}');
	is_deeply($_->[1], $_->[2], $_->[0]) foreach @{ $report->{checks} };
	cmp_ok(scalar @{ $report->{checks} }, '>=', $expected{$lang}{checks},
		"$lang: every check was reported");
	is(scalar @{ $report->{published} }, $expected{$lang}{events},
		"$lang: every event was reported");
	push @published, @{ $report->{published} };
}

wait_outbox_empty($node, 'postgres', 'the clients\' events');

# The topic, as kafka-clients reads it.
my ($read, $lines) = run_client('the KafkaConsumer reader', 120,
	@java, 'read', '--bootstrap', $kafka->bootstrap, '--topic', $topic);
my @records = map { JSON::PP->new->decode($_) } split /\n/, $lines;
is(scalar @records, scalar @published, 'one record per event');
my %by_id;
foreach my $r (@records)
{
	my @ids = grep { $_->[0] eq 'event_id' } @{ $r->{headers} };
	is(scalar @ids, 1,
		"record at partition $r->{partition} offset $r->{offset} has one event_id header");
	$by_id{ pack('H*', $ids[0][1] // '') } = $r if @ids;
}
foreach my $e (@published)
{
	my $r = $by_id{ $e->{id} };
	ok($r, "$e->{how}: in Kafka under its event_id") or next;
	is($r->{key_hex}, unpack('H*', encode_utf8($e->{key})), "$e->{how}: key");
	is($r->{value_hex}, $e->{payload_hex}, "$e->{how}: payload bytes");
	my %headers = map { $_->[0] => pack('H*', $_->[1]) }
	  grep { $_->[0] ne 'event_id' } @{ $r->{headers} };
	is_deeply(\%headers, { map { $_ => encode_utf8($e->{headers}{$_}) } keys %{ $e->{headers} } },
		"$e->{how}: user headers");
	is_deeply([ $r->{timestamp_type}, $r->{timestamp} ],
		[ 'CreateTime', int($e->{created_us} / 1000) ],
		"$e->{how}: timestamp is created_at truncated to the millisecond");
}

# Every event claimed by each consumer: the first delivery claims it and
# applies the change, the redelivery is absorbed.
my @event_ids = map { pack('H*', (grep { $_->[0] eq 'event_id' } @{ $_->{headers} })[0]->[1]) }
  @records;
my %claim = (
	java => [ @java, 'claim', '--jdbc', $jdbc, '--bootstrap', $kafka->bootstrap,
		'--topic', $topic, '--consumer', 'java' ],
	node => [ 'node', "$bin/node/clients.js", 'claim', '--dsn', $dsn,
		'--consumer', 'node', @event_ids ],
	go => [ "$bin/go/clients", 'claim', '--dsn', $dsn, '--consumer', 'go',
		@event_ids ],);
foreach my $lang (@languages)
{
	my ($ok, $out) = run_client("the $lang consumer", 120, @{ $claim{$lang} });
	my $claims = JSON::PP->new->decode($ok ? $out : '{"claims": []}')->{claims};
	is_deeply([ sort map { $_->[0] } @$claims ],
		[ sort map { $_->{id} } @published ], "$lang: every event was claimed");
	is_deeply([ grep { !($_->[1] && !$_->[2]) } @$claims ], [],
		"$lang: each claim was true the first time and false for the redelivery");
}
is( $node->safe_psql('postgres',
		'SELECT consumer, count(*) FROM applied_events GROUP BY consumer ORDER BY consumer'),
	join("\n", map { "$_|" . scalar @published } sort @languages),
	'each consumer applied each event once');

# What docs/clients.md shows of these programs is what they run (the
# Hibernate ones are 063_clients_orms.pl's).
my @sources;
find(
	sub {
		push @sources, $File::Find::name
		  if /\.(java|js|go)$/ && $File::Find::name !~ m{/node_modules/|/hibernate/};
	},
	map { "$clients/$_" } qw(java/src node go));
cmp_ok(docs_show_blocks(@sources), '>=', 15,
	'the programs mark the blocks docs/clients.md shows');

done_testing();

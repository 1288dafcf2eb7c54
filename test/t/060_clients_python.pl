# Python clients as docs/clients.md shows them: psycopg 3 and SQLAlchemy 2
# bind ids as str (untyped or varchar) and uuid.UUID, payloads as str,
# bytes and JSON, headers as JSON text and jsonb, with no cast in the SQL
# (test/clients/python_clients.py).  Bytes sent untyped in binary format,
# as node-postgres sends a Buffer, are published unchanged when they are
# UTF-8 and refused with a hint that names bytea otherwise.  The events they commit reach Kafka
# with their keys, payload bytes, headers and event ids, and a Kafka
# timestamp that is created_at truncated to the millisecond, as Kafka's Java
# consumer reads them.
#
# The interpreter is the one scripts/lib.sh installs
# (INBOX_OUTBOX_PYTHON, default /opt/inbox_outbox-py/bin/python); without
# it the test fails instead of skipping.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Encode qw(encode_utf8);

use InboxOutbox::Clients;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $python = $ENV{INBOX_OUTBOX_PYTHON} // '/opt/inbox_outbox-py/bin/python';
ok(-x $python, "the Python of scripts/lib.sh is at $python")
  or die 'scripts/test.sh installs it (ensure_python_clients in scripts/lib.sh)';

my $kafka = InboxOutbox::Kafka->new(name => 'clients_python');
$kafka->create_topic('clients', 1);
my $node = relay_node('clients_python', $kafka->bootstrap);

my ($stdout, $stderr);
my $ran = IPC::Run::run(
	[
		$python, "$ENV{TESTDIR}/test/clients/python_clients.py",
		'--dsn', 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres'
	],
	'>', \$stdout, '2>', \$stderr,
	IPC::Run::timeout(180));
ok($ran, 'the Python clients ran without an error') or diag($stderr);
my $report = JSON::PP->new->decode($ran ? $stdout : '{"checks": [], "published": []}');

is_deeply($_->[1], $_->[2], $_->[0]) foreach @{ $report->{checks} };
cmp_ok(scalar @{ $report->{checks} }, '>=', 20, 'every check was reported');

# The events in Kafka: one message each, as published.
my @published = @{ $report->{published} };
is(scalar @published, 9, 'nine events were published');
wait_outbox_empty($node, 'postgres', 'the Python clients\' events');

# The topic, as Kafka's Java consumer (read_committed) reads it: the
# reader of test/clients/java.
my $bin = client_programs();
my ($read, $lines) = run_client('the KafkaConsumer reader', 120,
	'java', '-XX:TieredStopAtLevel=1',
	'-cp', "$bin/java/clients.jar:$bin/java/lib/*", 'inboxoutbox.clients.Main',
	'read', '--bootstrap', $kafka->bootstrap, '--topic', 'clients');
my @records = map { JSON::PP->new->decode($_) } split /\n/, $lines;
is(scalar @records, scalar @published, 'one message per event');
my %by_id;
foreach my $r (@records)
{
	my %headers = map { $_->[0] => pack('H*', $_->[1]) } @{ $r->{headers} };
	$r->{header_values} = \%headers;
	$by_id{ $headers{event_id} // '' } = $r;
}
foreach my $e (@published)
{
	my $r = $by_id{ $e->{id} };
	ok($r, "$e->{how}: in Kafka under its event_id") or next;
	is($r->{key_hex}, unpack('H*', encode_utf8($e->{key})), "$e->{how}: key");
	is($r->{value_hex}, $e->{payload_hex}, "$e->{how}: payload bytes");
	my %user_headers = %{ $r->{header_values} };
	delete $user_headers{event_id};
	is_deeply(\%user_headers,
		{ map { $_ => encode_utf8($e->{headers}{$_}) } keys %{ $e->{headers} } },
		"$e->{how}: headers");
	is_deeply([ $r->{timestamp_type}, $r->{timestamp} ],
		[ 'CreateTime', int($e->{created_us} / 1000) ],
		"$e->{how}: timestamp is created_at truncated to the millisecond");
}
my ($late) = grep { $_->{key} eq 'orm-late' } @published;
is($late->{created_us} % 1000, 900, 'one event was created 0.9 ms into its millisecond');

done_testing();

# Python clients as docs/clients.md shows them: psycopg 3 and SQLAlchemy 2
# bind ids as str (untyped or varchar) and uuid.UUID, payloads as str,
# bytes and JSON, headers as JSON text and jsonb, with no cast in the SQL
# (test/clients/python_clients.py).  Bytes sent untyped in binary format,
# as node-postgres sends a Buffer, are published unchanged when they are
# UTF-8 and refused with a hint that names bytea otherwise.  The events they commit reach Kafka
# with their keys, payload bytes, headers and event ids, and a Kafka
# timestamp that is created_at truncated to the millisecond.
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
my $messages = $kafka->consume('clients', min => scalar @published);
is(scalar @$messages, scalar @published, 'one message per event');
my %by_id = map { ($_->{headers}{event_id} // '') => $_ } @$messages;
foreach my $e (@published)
{
	my $m = $by_id{ $e->{id} };
	ok($m, "$e->{how}: in Kafka under its event_id") or next;
	is($m->{key}, $e->{key}, "$e->{how}: key");
	is(unpack('H*', $m->{value}), $e->{payload_hex}, "$e->{how}: payload bytes");
	my %user_headers = %{ $m->{headers} };
	delete $user_headers{event_id};
	is_deeply(\%user_headers, $e->{headers}, "$e->{how}: headers");
	is($m->{timestamp}, int($e->{created_us} / 1000),
		"$e->{how}: timestamp is created_at truncated to the millisecond");
}
my ($late) = grep { $_->{key} eq 'orm-late' } @published;
is($late->{created_us} % 1000, 900, 'one event was created 0.9 ms into its millisecond');

done_testing();

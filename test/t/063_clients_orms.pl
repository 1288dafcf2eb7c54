# ORMs as docs/clients.md shows them, against a relay and a real broker:
# Django 5.2 (test/clients/django), Hibernate ORM 6 with a Spring Data JPA
# repository (test/clients/java, package hibernate) and TypeORM
# (test/clients/typeorm).  Each program maps the outbox table and tables
# of its own with ulid keys, commits events together with business
# changes (through outbox_publish() and by saving an outbox entity),
# finds ulid keys by their text and as UUIDs, and reports its checks as
# JSON; this test compares them, then checks that each business change
# committed with its event and that nothing of a rolled-back one did.
# Once the outbox has drained, every event must be in Kafka once with its
# key, payload bytes, headers and a timestamp equal to its created_at
# truncated to the millisecond (kept by a trigger here, since the relay
# deletes the row).  Then each program claims every event through the
# inbox as a consumer would: true the first time, false for the
# redelivery, and the business change made once.  Last, every block of
# the programs marked for docs/clients.md must appear there verbatim.
#
# The Java and TypeORM programs are built by test/clients/build.sh (as for
# 061_clients_jvm_node_go.pl), Django comes with the Python of
# scripts/lib.sh (INBOX_OUTBOX_PYTHON, default
# /opt/inbox_outbox-py/bin/python).  A missing tool fails the test.
use strict;
use warnings;

use Encode qw(encode_utf8);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::Clients;
use InboxOutbox::Kafka;
use InboxOutbox::Relay;

my $clients = "$ENV{TESTDIR}/test/clients";
my $topic = 'orms';

my $python = $ENV{INBOX_OUTBOX_PYTHON} // '/opt/inbox_outbox-py/bin/python';
ok(-x $python, "the Python of scripts/lib.sh is at $python")
  or die 'scripts/test.sh installs it (ensure_python_clients in scripts/lib.sh)';
my $bin = client_programs();

my $kafka = InboxOutbox::Kafka->new(name => 'clients_orms');
$kafka->create_topic($topic, 3);
# PgJDBC speaks only TCP.
my $node = relay_node('clients_orms', $kafka->bootstrap,
	conf => "listen_addresses = '127.0.0.1'\n");
$node->safe_psql(
	'postgres', q{
CREATE TABLE applied_events (consumer text, event_id ulid, PRIMARY KEY (consumer, event_id));
CREATE TABLE event_times (id ulid PRIMARY KEY, created_at timestamptz NOT NULL);
CREATE FUNCTION keep_event_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.event_times VALUES (NEW.id, NEW.created_at);
	RETURN NULL;
END
$$;
CREATE TRIGGER keep_event_time AFTER INSERT ON inbox_outbox.outbox
	FOR EACH ROW EXECUTE FUNCTION keep_event_time();
});
my $user = $node->safe_psql('postgres', 'SELECT current_user');
my $port = $node->port;
my $jdbc = "jdbc:postgresql://127.0.0.1:$port/postgres?user=$user";
my $dsn = "postgresql://$user\@127.0.0.1:$port/postgres";

# -B: no __pycache__ in the source tree.
my @django = ($python, '-B', "$clients/django/django_clients.py");
my @db = ('--host', '127.0.0.1', '--port', $port);
my @java = (
	'java', '-XX:TieredStopAtLevel=1',
	'-Dorg.jboss.logging.provider=slf4j',
	'-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
	'-cp', "$bin/java/clients.jar:$bin/java/lib/*", 'inboxoutbox.clients.Main');
my @typeorm = ('node', "$bin/typeorm/dist/clients.js");

# Each program run: its name, command, and how many checks and events it
# has (fewer means one went missing).  The second Django run queries with
# psycopg's server-side binding.
my @runs = (
	[ 'Django', [ @django, 'publish', @db, '--topic', $topic ], 17, 4 ],
	[ 'Django, server-side binding', [ @django, 'find', @db, '--server-side-binding' ], 11, 0 ],
	[ 'Hibernate', [ @java, 'hibernate-publish', '--jdbc', $jdbc, '--topic', $topic ], 19, 4 ],
	[ 'TypeORM', [ @typeorm, 'publish', '--dsn', $dsn, '--topic', $topic ], 11, 4 ],);
my @published;
foreach my $run (@runs)
{
	my ($what, $cmd, $checks, $events) = @$run;
	my ($ok, $out) = run_client("the $what program", 180, @$cmd);
	my $report = JSON::PP->new->decode($ok ? $out : '{"checks": [], "published": []}');
	is_deeply($_->[1], $_->[2], $_->[0]) foreach @{ $report->{checks} };
	cmp_ok(scalar @{ $report->{checks} }, '>=', $checks, "$what: every check was reported");
	is(scalar @{ $report->{published} }, $events, "$what: every event was reported");
	push @published, @{ $report->{published} };
}

# The business changes: each account an event names is there, the one
# renamed in the transaction that saved an outbox entity is renamed, and
# nothing of the rolled-back transactions is.
my %accounts = (
	Django => 'shop_account',
	Hibernate => 'hibernate_accounts',
	'Spring Data' => 'hibernate_accounts',
	TypeORM => 'typeorm_accounts',);
foreach my $e (grep { $_->{key} =~ /^account-/ } @published)
{
	my ($orm) = $e->{how} =~ /^(Django|Hibernate|Spring Data|TypeORM) /;
	my $id = substr($e->{key}, length 'account-');
	is($node->safe_psql('postgres', "SELECT count(*) FROM $accounts{$orm} WHERE id = '$id'"),
		1, "$e->{how}: the account of the event committed with it");
}
foreach my $orm (qw(Django Hibernate TypeORM))
{
	is( $node->safe_psql(
			'postgres',
			"SELECT string_agg(name, ',' ORDER BY name) FROM $accounts{$orm}"
			  . " WHERE name IN ('alice b.', 'rolled back')"),
		'alice b.',
		"$orm: the account renamed with the outbox entity is, the rolled-back one is not");
}

wait_outbox_empty($node, 'postgres', 'the ORMs\' events');
my %created_us = split /[|\n]/, $node->safe_psql('postgres',
	'SELECT id, (extract(epoch FROM created_at) * 1000000)::int8 FROM event_times');
is(scalar keys %created_us, scalar @published, 'only the committed events reached the outbox');

# The events in Kafka: one message each, as published.
my $messages = $kafka->consume($topic, min => scalar @published);
is(scalar @$messages, scalar @published, 'one message per event');
my %by_id = map { ($_->{headers}{event_id} // '') => $_ } @$messages;
foreach my $e (@published)
{
	my $m = $by_id{ $e->{id} };
	ok($m, "$e->{how}: in Kafka under its event_id") or next;
	is($m->{key}, encode_utf8($e->{key}), "$e->{how}: key");
	is(unpack('H*', $m->{value}), $e->{payload_hex}, "$e->{how}: payload bytes");
	my %user_headers = %{ $m->{headers} };
	delete $user_headers{event_id};
	is_deeply(\%user_headers, { map { $_ => encode_utf8($e->{headers}{$_}) } keys %{ $e->{headers} } },
		"$e->{how}: headers");
	is($m->{timestamp}, int(($created_us{ $e->{id} } // 0) / 1000),
		"$e->{how}: timestamp is created_at truncated to the millisecond");
}

# Every event claimed by each program as a consumer: the first delivery
# claims it and applies the change, the redelivery is absorbed.
my @event_ids = map { $_->{headers}{event_id} } @$messages;
my %claim = (
	django => [ @django, 'claim', @db, '--consumer', 'django', @event_ids ],
	hibernate => [ @java, 'hibernate-claim', '--jdbc', $jdbc, '--consumer', 'hibernate',
		@event_ids ],
	typeorm => [ @typeorm, 'claim', '--dsn', $dsn, '--consumer', 'typeorm', @event_ids ],);
foreach my $consumer (sort keys %claim)
{
	my ($ok, $out) = run_client("the $consumer consumer", 120, @{ $claim{$consumer} });
	my $claims = JSON::PP->new->decode($ok ? $out : '{"claims": []}')->{claims};
	is_deeply([ sort map { $_->[0] } @$claims ],
		[ sort map { $_->{id} } @published ], "$consumer: every event was claimed");
	is_deeply([ grep { !($_->[1] && !$_->[2]) } @$claims ], [],
		"$consumer: each claim was true the first time and false for the redelivery");
}
is( $node->safe_psql('postgres',
		'SELECT consumer, count(*) FROM applied_events GROUP BY consumer ORDER BY consumer'),
	join("\n", map { "$_|" . scalar @published } sort keys %claim),
	'each consumer applied each event once');

# What docs/clients.md shows of these programs is what they run.
my @sources = (
	glob("$clients/django/*.py $clients/django/shop/*.py"),
	glob("$clients/java/src/main/java/inboxoutbox/clients/hibernate/*.java"),
	glob("$clients/typeorm/src/*.ts"));
cmp_ok(docs_show_blocks(@sources), '>=', 22,
	'the programs mark the blocks docs/clients.md shows');

done_testing();

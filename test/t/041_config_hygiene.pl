# Configuration is validated and inert, and its secrets stay secret:
#  - bad inbox_outbox.brokers, kafka_config and databases values are
#    refused by ALTER SYSTEM and by a reload of postgresql.conf, and the
#    server keeps the value it had;
#  - librdkafka properties that run programs or load code are refused
#    unless inbox_outbox.allow_unsafe_kafka_properties is on, which only
#    postgresql.conf and a restart can turn on;
#  - a non-superuser cannot read kafka_config;
#  - no kafka_config value reaches the server log, with every statement
#    logged, although the messages that would have quoted it are there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use InboxOutbox::MockCluster;
use InboxOutbox::Relay;

my @secrets = qw(StartSecret123 RotatedSecret456 BadSecret789 ConfSecret000
  FileSecret000 DurationSecret111 ContextSecret222);

my $dir = PostgreSQL::Test::Utils::tempdir;
my $kinit_ran = "$dir/kinit_ran";
my $start_config = 'sasl.username=app;sasl.password=StartSecret123';

my $mc = InboxOutbox::MockCluster->new(brokers => 1, topics => ['orders:1']);
my $brokers = $mc->bootstrap;
my $node = relay_node('hygiene', $brokers, conf => qq{
inbox_outbox.kafka_config = '$start_config'
log_statement = 'all'
});

# Run SQL; return psql's stderr, with SQLSTATEs.
sub psql_err
{
	my ($sql, @opts) = @_;
	$node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stderr => \my $err, @opts);
	return $err;
}

sub show
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SHOW $name");
}

# 1. Only superusers read kafka_config.
$node->safe_psql('postgres', 'CREATE ROLE regress_app LOGIN');
my @as_app = (extra_params => [ '-U', 'regress_app' ]);
# (PostgreSQL 16 reworded the message.)
my $denied = qr/ERROR:  42501: (?:must be superuser or have privileges of pg_read_all_settings to|permission denied to) examine "inbox_outbox\.kafka_config"/;
like(psql_err('SHOW inbox_outbox.kafka_config', @as_app),
	$denied, 'SHOW refuses kafka_config to a plain role');
like(psql_err(q{SELECT current_setting('inbox_outbox.kafka_config')}, @as_app),
	$denied, 'current_setting() refuses kafka_config to a plain role');
like(psql_err('SELECT * FROM pg_file_settings', @as_app),
	qr/ERROR:  42501: permission denied for view pg_file_settings/,
	'pg_file_settings is refused to a plain role');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_settings WHERE name = 'inbox_outbox.kafka_config'},
		@as_app),
	'0',
	'pg_settings hides kafka_config from a plain role');
is( $node->safe_psql('postgres',
		q{SELECT setting FROM pg_settings WHERE name = 'inbox_outbox.kafka_config'}),
	$start_config,
	'while a superuser sees it');

# 2. A bad value in postgresql.conf is refused by the reload; the old one
# stays.  Each case appends its line, and then the good line again, so that
# the next reload finds only its own mistake.
my %good = (
	'inbox_outbox.brokers' => $brokers,
	'inbox_outbox.kafka_config' => $start_config,
	'inbox_outbox.databases' => '');

sub refused_on_reload
{
	my ($name, $value, $expected, $what) = @_;
	my $offset = -s $node->logfile;

	$node->append_conf('postgresql.conf', "$name = '$value'");
	$node->reload;
	$node->wait_for_log(qr/configuration file ".*" contains errors; unaffected changes were applied/,
		$offset);
	my $log = slurp_file($node->logfile, $offset);
	like($log, $expected, "reload refuses $what");
	is(show($name), $good{$name}, "and keeps the old $name after $what");
	$node->append_conf('postgresql.conf', "$name = '$good{$name}'");
	return;
}

my $unsafe = "security.protocol=SASL_PLAINTEXT;sasl.mechanisms=GSSAPI;"
  . "sasl.kerberos.kinit.cmd=touch $kinit_ran";

refused_on_reload('inbox_outbox.brokers', 'nohost',
	qr/LOG:  invalid broker "nohost" in inbox_outbox\.brokers\n.*DETAIL:  A broker is written as host:port\./,
	'a broker without a port');
refused_on_reload('inbox_outbox.kafka_config', $unsafe,
	qr/LOG:  librdkafka property "sasl\.kerberos\.kinit\.cmd" is not allowed in inbox_outbox\.kafka_config\n.*DETAIL:  Entry 3 sets/,
	'an unsafe property');
refused_on_reload('inbox_outbox.kafka_config',
	'sasl.password=ConfSecret000;enable.idempotence=false',
	qr/LOG:  librdkafka property "enable\.idempotence" cannot be set in inbox_outbox\.kafka_config\n.*DETAIL:  Entry 2 sets/,
	'a reserved property');
refused_on_reload('inbox_outbox.kafka_config', "$dir/missing.conf",
	qr/LOG:  could not open file ".*missing\.conf" named by inbox_outbox\.kafka_config: No such file or directory/,
	'a missing file');
refused_on_reload('inbox_outbox.databases', 'a,,b',
	qr/LOG:  invalid list syntax in parameter "inbox_outbox\.databases"/,
	'an empty database name');

# 3. ALTER SYSTEM refuses the same, and leaves postgresql.auto.conf alone.
sub alter_refused
{
	my ($name, $value, $expected, $what) = @_;
	like(psql_err("ALTER SYSTEM SET $name = '$value'"), $expected,
		"ALTER SYSTEM refuses $what");
	return;
}

alter_refused('inbox_outbox.brokers', 'nohost',
	qr/ERROR:  22023: invalid broker "nohost" in inbox_outbox\.brokers\nDETAIL:  A broker is written as host:port\./,
	'a broker without a port');
alter_refused('inbox_outbox.brokers', 'h:0',
	qr/ERROR:  22023: invalid broker "h:0" in inbox_outbox\.brokers\nDETAIL:  The port must be a number between 1 and 65535\./,
	'port 0');
alter_refused('inbox_outbox.brokers', '',
	qr/ERROR:  22023: inbox_outbox\.brokers must name at least one broker/,
	'an empty broker list');
alter_refused('inbox_outbox.brokers', 'h:9092,,k:9092',
	qr/ERROR:  22023: entry 2 of inbox_outbox\.brokers is empty/,
	'an empty broker entry');
alter_refused('inbox_outbox.brokers', 'gopher://h:9092',
	qr/ERROR:  22023: invalid broker "gopher:\/\/h:9092" in inbox_outbox\.brokers\nDETAIL:  The security protocol prefix must be/,
	'an unknown protocol');
alter_refused('inbox_outbox.brokers', '999.1.1.1:9092',
	qr/ERROR:  22023: invalid broker "999\.1\.1\.1:9092" in inbox_outbox\.brokers\nDETAIL:  The host must be/,
	'a bad IPv4 address');
alter_refused('inbox_outbox.brokers', '::1:9092',
	qr/ERROR:  22023: invalid broker "::1:9092" in inbox_outbox\.brokers\nDETAIL:  Write an IPv6 address in brackets/,
	'an IPv6 address without brackets');
alter_refused('inbox_outbox.kafka_config', $unsafe,
	qr/ERROR:  22023: librdkafka property "sasl\.kerberos\.kinit\.cmd" is not allowed in inbox_outbox\.kafka_config\nDETAIL:  Entry 3 sets a property that makes librdkafka run a program.*\nHINT:  To allow it, set inbox_outbox\.allow_unsafe_kafka_properties to on in postgresql\.conf and restart the server\./,
	'an unsafe property');
alter_refused('inbox_outbox.kafka_config', 'enable.idempotence=false',
	qr/ERROR:  22023: librdkafka property "enable\.idempotence" cannot be set in inbox_outbox\.kafka_config\nDETAIL:  Entry 1 sets a property that the relay sets itself/,
	'a reserved property');
alter_refused('inbox_outbox.kafka_config', 'debug=broker,conf',
	qr/ERROR:  22023: librdkafka property "debug" has a value that is not allowed in inbox_outbox\.kafka_config\nDETAIL:  Entry 1 asks librdkafka to log its configuration, secrets included\./,
	'a debug context that logs the configuration');
alter_refused('inbox_outbox.kafka_config', 'linger.ms=5; debug = msg +ALL',
	qr/ERROR:  22023: librdkafka property "debug" has a value that is not allowed in inbox_outbox\.kafka_config\nDETAIL:  Entry 2 asks/,
	'the same in upper case, with a "+" and blanks, as librdkafka reads it');
alter_refused('inbox_outbox.kafka_config', "$dir/missing.conf",
	qr/ERROR:  22023: could not open file ".*missing\.conf" named by inbox_outbox\.kafka_config: No such file or directory/,
	'a missing file');

my $unsafe_file = "$dir/unsafe.conf";
append_to_file($unsafe_file, "# a producer\nlinger.ms=5\nplugin.library.paths=$dir/evil.so\n");
alter_refused('inbox_outbox.kafka_config', $unsafe_file,
	qr/ERROR:  22023: librdkafka property "plugin\.library\.paths" is not allowed in file ".*unsafe\.conf" named by inbox_outbox\.kafka_config\nDETAIL:  Entry 2 sets/,
	'a file with an unsafe property');

alter_refused('inbox_outbox.databases', 'a,,b',
	qr/ERROR:  22023: invalid list syntax in parameter "inbox_outbox\.databases"/,
	'an empty database name');
alter_refused('inbox_outbox.databases', '"unterminated',
	qr/ERROR:  22023: invalid list syntax in parameter "inbox_outbox\.databases"/,
	'an unterminated quoted name');
alter_refused('inbox_outbox.databases', 'postgres, ' . ('d' x 64),
	qr/ERROR:  22023: name 2 in inbox_outbox\.databases is too long\nDETAIL:  A database name has at most 63 bytes\./,
	'a database name longer than 63 bytes');
alter_refused('inbox_outbox.relay_role', 'r' x 64,
	qr/ERROR:  22023: inbox_outbox\.relay_role is too long/,
	'a role name longer than 63 bytes');
like(psql_err('ALTER SYSTEM SET inbox_outbox.allow_unsafe_kafka_properties = on'),
	qr/ERROR:  55P02: parameter "inbox_outbox\.allow_unsafe_kafka_properties" cannot be changed/,
	'ALTER SYSTEM cannot allow unsafe properties');
like(psql_err('SET inbox_outbox.allow_unsafe_kafka_properties = on'),
	qr/ERROR:  55P02: parameter "inbox_outbox\.allow_unsafe_kafka_properties" cannot be changed without restarting the server/,
	'nor can SET');
unlike(slurp_file($node->data_dir . '/postgresql.auto.conf'), qr/inbox_outbox/,
	'postgresql.auto.conf holds none of the refused values');

# Good values pass, so the refusals above are not the hooks refusing all.
my $good_file = "$dir/producer.conf";
append_to_file($good_file,
	"# SASL credentials of the relay\nsasl.username = app\nsasl.password=FileSecret000\n\n");
chmod 0600, $good_file;
is( psql_err(qq{
	ALTER SYSTEM SET inbox_outbox.brokers = 'PLAINTEXT://kafka-1.example.com:9092, [::1]:9093 ,SASL_SSL://10.0.0.1:9094';
	ALTER SYSTEM SET inbox_outbox.kafka_config = '$good_file';
	ALTER SYSTEM SET inbox_outbox.databases = 'postgres, "Quoted ""db""", ${\ ('d' x 63)}';
	ALTER SYSTEM SET inbox_outbox.relay_role = 'regress_relay';
	ALTER SYSTEM RESET ALL;
}),
	'',
	'well-formed values of every checked parameter are accepted');

# 4. Secrets stay out of the log: a rotation by ALTER SYSTEM and reload,
# a refused value, the statement's duration, and the context of an error.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET inbox_outbox.kafka_config = 'sasl.username=app;sasl.password=RotatedSecret456';
	ALTER SYSTEM SET inbox_outbox.batch_size = 77;
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', 'SHOW inbox_outbox.kafka_config',
	'sasl.username=app;sasl.password=RotatedSecret456')
  or die 'the rotated kafka_config was not applied';
$node->wait_for_log(qr/LOG:  parameter "inbox_outbox\.kafka_config" changed/, $offset);
unlike(slurp_file($node->logfile, $offset), qr/RotatedSecret456/,
	'a rotated kafka_config is applied, and its change logged without the value');

like(psql_err(q{ALTER SYSTEM SET inbox_outbox.kafka_config = 'sasl.password=BadSecret789;nonsense'}),
	qr/ERROR:  22023: invalid syntax in inbox_outbox\.kafka_config/,
	'ALTER SYSTEM refuses a malformed kafka_config');
like(psql_err(q{DO $$ BEGIN PERFORM set_config('inbox_outbox.kafka_config', 'sasl.password=ContextSecret222', false); END $$}),
	qr/ERROR:  55P02: parameter "inbox_outbox\.kafka_config" cannot be changed now/,
	'set_config() cannot change kafka_config');
$node->reload;
is(show('inbox_outbox.kafka_config'), 'sasl.username=app;sasl.password=RotatedSecret456',
	'the refused value left the rotated one in place');

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET log_statement = 'none';
	ALTER SYSTEM SET log_min_duration_statement = 0;
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', 'SHOW log_min_duration_statement', '0')
  or die 'log_min_duration_statement was not applied';
$offset = -s $node->logfile;
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET inbox_outbox.kafka_config = 'sasl.password=DurationSecret111'});
$node->wait_for_log(qr/duration: [0-9.]+ ms  statement: .*inbox_outbox\.kafka_config/, $offset);
like(slurp_file($node->logfile, $offset),
	qr/duration: [0-9.]+ ms  statement: <text hidden because it mentions inbox_outbox\.kafka_config>\n/,
	'a statement logged for its duration has its text hidden, its duration kept');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET log_statement;
	ALTER SYSTEM RESET log_min_duration_statement;
	ALTER SYSTEM RESET inbox_outbox.kafka_config;
	SELECT pg_reload_conf();
});

# 5. Only postgresql.conf and a restart allow unsafe properties.
$node->append_conf('postgresql.conf', 'inbox_outbox.allow_unsafe_kafka_properties = on');
$node->restart;
is(psql_err(q{ALTER SYSTEM SET inbox_outbox.kafka_config = 'sasl.kerberos.kinit.cmd=true'}),
	'', 'with allow_unsafe_kafka_properties on, an unsafe property is accepted');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET inbox_outbox.kafka_config');

# 6. A bad value in postgresql.conf at server start: PostgreSQL only warns
# and keeps the default, which for these parameters is no safe stand-in
# (every database; a broker at 127.0.0.1:9092).  The launcher starts no
# relay, or the relay waits, each saying why, until a reload fixes it.
$node->append_conf('postgresql.conf', "inbox_outbox.databases = 'a,,b'");
$node->restart;
$node->wait_for_log(qr/inbox_outbox launcher starts no relay: the value of inbox_outbox\.databases in the configuration file was refused when the server started/)
  or die 'the launcher did not report the refused databases';
is($node->safe_psql('postgres', 'SELECT pid IS NULL FROM inbox_outbox.relay_status'),
	't', 'no relay runs while the database list given at start is refused');
$node->append_conf('postgresql.conf', "inbox_outbox.databases = ''");
$node->reload;
wait_relay_running($node);
pass('a reload with a good database list starts the relay');

$node->append_conf('postgresql.conf', "inbox_outbox.brokers = 'no host:9092'");
$node->restart;
$node->poll_query_until('postgres',
	q{SELECT last_error = 'the value of inbox_outbox.brokers in the configuration file was refused when the server started' FROM inbox_outbox.relay_status})
  or die 'the relay did not report the refused brokers';
pass('the relay waits, saying the broker list given at start was refused');
$node->append_conf('postgresql.conf', "inbox_outbox.brokers = '$brokers'");
$node->reload;
$node->safe_psql('postgres', q{SELECT outbox_publish('orders', 'k', 'after the fix'::text)});
wait_outbox_empty($node, 'postgres', 'brokers fixed');
pass('a reload with a good broker list lets the relay deliver');
$node->stop;

# 6. The whole log: none of the secrets, but the messages that would have
# quoted them, and other statements and parameters logged as usual.
my $log = slurp_file($node->logfile);
for my $secret (@secrets)
{
	unlike($log, qr/\Q$secret\E/, "the server log does not contain $secret");
}
like($log, qr/LOG:  parameter "inbox_outbox\.kafka_config" changed\n.*DETAIL:  The new value is not logged because it may hold secrets\./,
	'the log says that kafka_config changed');
like($log, qr/LOG:  statement: <text hidden because it mentions inbox_outbox\.kafka_config>/,
	'the log has the statements that set kafka_config, without their text');
like($log, qr/ERROR:  invalid syntax in inbox_outbox\.kafka_config/,
	'the log has the refusal of the malformed kafka_config');
like($log, qr/LOG:  parameter "inbox_outbox\.batch_size" changed to "77"/,
	'other parameters are logged with their values');
like($log, qr/LOG:  statement: ALTER SYSTEM SET inbox_outbox\.brokers = 'nohost'/,
	'other statements are logged with their text');
ok(!-e $kinit_ran, 'the refused kinit command never ran');

$mc->stop;
done_testing();

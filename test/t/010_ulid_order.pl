# gen_ulid() order across sessions.
#
# Preloaded, ids drawn alternately by two sessions, each after the other's
# commit, must sort in the order they were drawn: this is what lets the relay
# publish one key's events in commit order when its writers run in different
# backends.  Without preloading, the promise is order within one backend.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rounds = 2000;

# Both sessions pin their clock to the same millisecond (test-only module
# test/ulid_clock), so every id is drawn in it and only the generator's
# shared state can order them.
my $clock_lib = "$ENV{TESTDIR}/test/ulid_clock/test_ulid_clock";

sub draw_alternately
{
	my ($node) = @_;
	my @sessions = map { $node->background_psql('postgres') } 1 .. 2;
	my $ms = int(time() * 1000) + 1000;
	$_->query_safe("SELECT pin_clock($ms)") for @sessions;

	for my $i (1 .. $rounds)
	{
		my $s = $sessions[ $i % 2 ];
		$s->query_safe(
			"BEGIN; INSERT INTO drawn VALUES (gen_ulid(), $i, pg_backend_pid()); COMMIT;");
	}
	$_->quit for @sessions;
}

# Preloaded: one order for the whole server.
my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'inbox_outbox'");
$node->start;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION inbox_outbox;
	CREATE TABLE drawn (id ulid, seq int, pid int);
	CREATE FUNCTION pin_clock(bigint) RETURNS void
		AS '$clock_lib', 'test_ulid_pin_clock' LANGUAGE C;
});

draw_alternately($node);

is( $node->safe_psql('postgres', 'SELECT count(DISTINCT pid) FROM drawn'),
	'2', 'ids came from two backends');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (
			SELECT seq, lag(seq) OVER (ORDER BY id) AS prev FROM drawn) s
		WHERE prev IS NOT NULL AND prev <> seq - 1}),
	'0', 'ids drawn alternately by two sessions sort in the order drawn');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT ulid_timestamp(id)) FROM drawn'),
	'1', 'all ids share one millisecond, so only the shared last value ordered them');

# Parallel sessions hammering the generator: all distinct, each session's
# own ids increasing.
$node->safe_psql('postgres', 'TRUNCATE drawn');
my @bg = map { $node->background_psql('postgres') } 1 .. 4;
$_->query_until(qr/started/, q{
	\echo started
	INSERT INTO drawn SELECT gen_ulid(), g, pg_backend_pid() FROM generate_series(1, 50000) g;
}) for @bg;
$_->quit for @bg;
is( $node->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT id) FROM drawn'),
	'200000|200000', 'four concurrent sessions draw 200,000 distinct ids');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (
			SELECT id, lag(id) OVER (PARTITION BY pid ORDER BY seq) AS prev FROM drawn) s
		WHERE prev >= id}),
	'0', 'each session sees its own ids increase');
$node->stop;

# Not preloaded: no shared memory, order within each backend.
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', qq{
	CREATE EXTENSION inbox_outbox;
	CREATE TABLE drawn (id ulid, seq int, pid int);
	CREATE FUNCTION pin_clock(bigint) RETURNS void
		AS '$clock_lib', 'test_ulid_pin_clock' LANGUAGE C;
});
draw_alternately($plain);
is( $plain->safe_psql('postgres', q{
		SELECT count(*) FROM (
			SELECT id, lag(id) OVER (PARTITION BY pid ORDER BY seq) AS prev FROM drawn) s
		WHERE prev >= id}),
	'0', 'without preloading, each backend still issues increasing ids');
is( $plain->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM drawn'),
	$rounds, 'without preloading, ids are distinct');
$plain->stop;

done_testing();

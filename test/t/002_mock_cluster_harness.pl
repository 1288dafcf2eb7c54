# Smoke test of the mock Kafka cluster harness used by the fault-injection
# tests: messages go through it, injected errors reach the client, and
# brokers go down, come back and slow down on command.  kcat is the client,
# so this test says nothing about the extension itself.

use strict;
use warnings;

use IPC::Cmd qw(can_run);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use InboxOutbox::MockCluster;

BAIL_OUT('kcat is required for the mock cluster tests') unless can_run('kcat');

# Produce "key:value" lines with kcat; return (success, stderr).
sub produce
{
	my ($boot, $topic, $lines, @conf) = @_;
	my $in = join('', map { "$_\n" } @$lines);
	my ($out, $err) = ('', '');

	my $ok = IPC::Run::run(
		[
			'kcat', '-P', '-b', $boot, '-t', $topic, '-K:',
			map { ('-X', $_) } @conf
		],
		'<' => \$in,
		'>' => \$out,
		'2>' => \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	note "kcat -P stderr: $err" if $err ne '';
	return ($ok, $err);
}

# Consume a whole topic with kcat; return its "key:value" lines, sorted.
sub consume
{
	my ($boot, $topic) = @_;
	my ($out, $err) = ('', '');

	IPC::Run::run(
		[
			'kcat', '-C', '-b', $boot, '-t', $topic,
			'-e', '-o', 'beginning', '-q', '-f', '%k:%s\n'
		],
		'>' => \$out,
		'2>' => \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or die "kcat -C failed: $err";
	return [ sort split /\n/, $out ];
}

my $mc = InboxOutbox::MockCluster->new(
	brokers => 3,
	topics => [ 'smoke:4', 'single:1' ]);
my $boot = $mc->bootstrap;
like(
	$boot,
	qr/^127\.0\.0\.1:\d+(?:,127\.0\.0\.1:\d+){2}$/,
	'three brokers listen on loopback');

# The mock picks partition leaders at random; pin the one we steer.
ok($mc->command('leader single 0 1'), 'leader of single/0 is broker 1');

# Round trip over four partitions.
my @smoke = map { "k$_:v$_" } 1 .. 100;
my ($ok, $err) = produce($boot, 'smoke', \@smoke);
ok($ok, 'produced 100 messages');
is_deeply(consume($boot, 'smoke'), [ sort @smoke ],
	'consumed exactly the 100 messages');

# Retriable errors.  With retries off, one injected error fails the produce,
# which shows that injected errors reach the client ...
my @single;
$mc->push_errors('Produce', 'NOT_ENOUGH_REPLICAS', 1);
($ok, $err) = produce($boot, 'single', ['lost:1'], 'retries=0');
ok(!$ok, 'an injected retriable error fails a produce without retries');
like($err, qr/Not enough in-sync replicas/, 'kcat reports the injected error');

# ... so when, after five injected errors, a produce with retries succeeds
# and a later one without retries succeeds too, the first produce's retries
# consumed all five errors.
$mc->push_errors('Produce', 'NOT_LEADER_FOR_PARTITION', 5);
my @retried = map { "r$_:v$_" } 1 .. 10;
($ok, $err) = produce($boot, 'single', \@retried);
ok($ok, 'produce succeeds through five NOT_LEADER_FOR_PARTITION errors');
push @single, @retried;
($ok, $err) = produce($boot, 'single', ['after:retries'], 'retries=0');
ok($ok, 'the retries consumed every injected error');
push @single, 'after:retries';

# A non-retriable error fails the produce even with retries on.
$mc->push_errors('Produce', 'TOPIC_AUTHORIZATION_FAILED', 1);
($ok, $err) = produce($boot, 'single', ['denied:1']);
ok(!$ok, 'a non-retriable error fails the produce');
like($err, qr/Topic authorization failed/, 'kcat reports authorization failure');

# clear drops errors not yet consumed.
$mc->push_errors('Produce', 'TOPIC_AUTHORIZATION_FAILED', 3);
ok($mc->command('clear'), 'clear');
($ok, $err) = produce($boot, 'single', ['after:clear'], 'retries=0');
ok($ok, 'no error left after clear');
push @single, 'after:clear';

# A broker that is down refuses connections; leadership does not move, so
# a produce to its partition times out until it is back.
$mc->broker_down(1);
($ok, $err) =
  produce($boot, 'single', ['down:1'], 'message.timeout.ms=2000');
ok(!$ok, 'produce to a partition led by a down broker fails');
like($err, qr/Message timed out/, 'kcat reports a message timeout');
$mc->broker_up(1);
($ok, $err) = produce($boot, 'single', ['up:1']);
ok($ok, 'produce succeeds once the broker is up again');
push @single, 'up:1';

# Added latency shows as a lower bound on a produce's duration.
$mc->rtt(1, 400);
my $start = time;
($ok, $err) = produce($boot, 'single', ['slow:1']);
my $elapsed = time - $start;
ok($ok, 'produce succeeds with 400 ms broker latency');
cmp_ok($elapsed, '>=', 0.4, 'and takes at least 400 ms');
push @single, 'slow:1';
$mc->rtt(1, 0);

# Per-broker errors.  Once broker 2 holds a per-broker error that nothing
# consumes, clear cannot remove it and says so.
ok($mc->command('broker_error 1 Produce NOT_ENOUGH_REPLICAS 0 1'),
	'broker_error on broker 1');
($ok, $err) = produce($boot, 'single', ['lost:2'], 'retries=0');
ok(!$ok, 'a per-broker error fails a produce to that broker');
ok($mc->command('clear'), 'clear with every per-broker error consumed');
ok($mc->command('broker_error 2 Produce NOT_ENOUGH_REPLICAS 0 1'),
	'broker_error on broker 2');
eval { $mc->command('clear') };
like($@, qr/error: unsupported: .*1 broker error/,
	'clear reports a per-broker error it cannot remove');

# Bad commands die with the program's message.
eval { $mc->broker_down(4) };
like($@, qr/error: invalid broker id "4"/, 'unknown broker is refused');
eval { $mc->push_errors('Produce', 'NO_SUCH_ERROR') };
like($@, qr/error: unknown error code "NO_SUCH_ERROR"/,
	'unknown error name is refused');
eval { $mc->command('frobnicate') };
like($@, qr/error: unknown command "frobnicate"/, 'unknown command is refused');

is_deeply(consume($boot, 'single'), [ sort @single ],
	'single holds exactly the messages whose produce succeeded');

my $pid = $mc->pid;
ok($mc->command('quit'), 'quit is acknowledged');
is($mc->stop, 0, 'mock_cluster exits cleanly on quit');
ok(!kill(0, $pid), 'mock_cluster process is gone');

# End of input and SIGTERM end it cleanly too.
my $mc2 = InboxOutbox::MockCluster->new(brokers => 1);
$pid = $mc2->pid;
is($mc2->stop, 0, 'mock_cluster exits cleanly at end of input');
ok(!kill(0, $pid), 'that process is gone');

my $mc3 = InboxOutbox::MockCluster->new(brokers => 1);
$pid = $mc3->pid;
ok(kill('TERM', $pid), 'sent SIGTERM');
is($mc3->stop, 0, 'mock_cluster exits cleanly on SIGTERM');
ok(!kill(0, $pid), 'terminated process is gone');

done_testing();

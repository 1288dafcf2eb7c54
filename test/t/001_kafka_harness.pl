# Checks the Kafka test harness itself: a broker starts, keeps its settings,
# round-trips keys (null and empty apart), values and headers exactly, and
# comes back on the same address with its data after a restart.

use strict;
use warnings;

use InboxOutbox::Kafka;
use PostgreSQL::Test::Utils;
use Test::More;

my $kafka = InboxOutbox::Kafka->new(
	name => 'harness',
	config => { 'auto.create.topics.enable' => 'false' });
my $address = $kafka->bootstrap;
like($address, qr/^127\.0\.0\.1:\d+$/, 'broker listens on loopback');
ok($kafka->is_running, 'broker runs');

is($kafka->partition_count('harness_missing'),
	0, 'auto.create.topics.enable=false: asking for a topic does not create it');
$kafka->create_topic('harness_events', 3);
is($kafka->partition_count('harness_events'), 3, 'topic has 3 partitions');

my $started_ms = int(time() * 1000);
$kafka->produce(
	'harness_events',
	[
		[ 'k1', 'first', { 'trace-id' => 'abc', empty => '', nothing => undef } ],
		[ undef, 'null key' ],
		[ '', 'empty key' ],
		[ 'k1', "second\nline" ],
	],
	partition => 0);
$kafka->produce(
	'harness_events',
	[
		[ 'k2', undef, [ dup => 'a', dup => 'b' ] ],
		[ '', undef ],
		[ undef, undef ],
		[ 'k3', '' ],
	],
	partition => 2);

my @expected = (
	[ 0, 0, 'k1', 'first', [ [ empty => '' ], [ nothing => undef ], [ 'trace-id' => 'abc' ] ] ],
	[ 0, 1, undef, 'null key', [] ],
	[ 0, 2, '', 'empty key', [] ],
	[ 0, 3, 'k1', "second\nline", [] ],
	[ 2, 0, 'k2', undef, [ [ dup => 'a' ], [ dup => 'b' ] ] ],
	[ 2, 1, '', undef, [] ],
	[ 2, 2, undef, undef, [] ],
	[ 2, 3, 'k3', '', [] ],
);

# Compares everything but the timestamps, which are checked to be recent.
sub check_messages
{
	my ($messages, $name) = @_;
	my @times = map { delete $_->{timestamp} } @$messages;
	is(scalar(grep { $_ >= $started_ms - 1000 && $_ <= time() * 1000 + 1000 } @times),
		scalar(@expected), "$name: timestamps are the produce times");
	is_deeply(
		$messages,
		[
			map {
				{
					partition => $_->[0],
					offset => $_->[1],
					key => $_->[2],
					value => $_->[3],
					header_list => $_->[4],
					headers => { map { @$_ } @{ $_->[4] } },
				}
			} @expected
		],
		"$name: messages, keys, values and headers are exact");
	return;
}

check_messages($kafka->consume('harness_events', min => scalar(@expected)),
	'read_committed');
check_messages(
	$kafka->consume(
		'harness_events',
		isolation => 'read_uncommitted',
		min => scalar(@expected)),
	'read_uncommitted');

is_deeply($kafka->consume('harness_events', partition => 1),
	[], 'an empty partition reads as no messages');

$kafka->stop;
ok(!$kafka->is_running, 'broker stopped');
ok( system("kcat -L -b $address -m 2 >/dev/null 2>&1") != 0,
	'nothing answers on the address while the broker is stopped');
$kafka->stop;
pass('stopping a stopped broker is fine');

$kafka->start;
is($kafka->bootstrap, $address, 'restarted broker has the same address');
check_messages($kafka->consume('harness_events', min => scalar(@expected)),
	'after restart');

$kafka->produce('harness_events', [ [ 'k4', 'after restart' ] ],
	partition => 1);
my $after = $kafka->consume('harness_events', partition => 1, min => 1);
is_deeply(
	[ map { [ $_->{offset}, $_->{key}, $_->{value} ] } @$after ],
	[ [ 0, 'k4', 'after restart' ] ],
	'producing after restart works');

$kafka->stop;
ok(-s "$PostgreSQL::Test::Utils::log_path/kafka_harness.log",
	'broker log copied to the test log directory');

done_testing();

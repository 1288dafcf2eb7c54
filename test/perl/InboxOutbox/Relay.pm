# Helpers shared by the relay's TAP tests: a preloaded PostgreSQL node
# pointed at a broker, and waits on the relay's progress.
package InboxOutbox::Relay;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(relay_node wait_relay_running wait_outbox_empty relay_pid
  poll_through_restart
  first_arrivals kafka_partition);

# A started node with the library preloaded, the extension created and
# the relay connected to $brokers.  Extra postgresql.conf lines in
# %opts{conf}; options of PostgreSQL::Test::Cluster's init in %opts{init}
# (allows_streaming => 1 for a primary).
sub relay_node
{
	my ($name, $brokers, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'inbox_outbox'
max_worker_processes = 16
inbox_outbox.brokers = '$brokers'
inbox_outbox.poll_interval = '1s'
inbox_outbox.retry_backoff = '200ms'
log_min_messages = info
} . ($opts{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION inbox_outbox')
	  unless $opts{no_extension};
	wait_relay_running($node) unless $opts{no_extension};
	return $node;
}

# poll_query_until across the restart of every backend that a SIGKILLed
# relay causes: a psql started just then can exit before it reads its
# query, and IPC::Run dies writing it ("Broken pipe").  That is retried
# until $timeout seconds (default 180) have passed.
sub poll_through_restart
{
	my ($node, $db, $query, $timeout) = @_;
	my $deadline = time() + ($timeout // 180);
	while (time() < $deadline)
	{
		my $done = eval { $node->poll_query_until($db, $query) };
		return 1 if $done;
		die $@ if $@ && $@ !~ /Broken pipe/;
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

sub relay_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		'SELECT pid FROM inbox_outbox.relay_status');
}

# Wait until the relay of the database runs and reports a state.
sub wait_relay_running
{
	my ($node, $db) = @_;
	$node->poll_query_until($db // 'postgres',
		"SELECT pid IS NOT NULL AND state <> 'starting' FROM inbox_outbox.relay_status")
	  or die 'relay did not start';
}

sub wait_outbox_empty
{
	my ($node, $db, $what) = @_;
	$node->poll_query_until($db // 'postgres',
		'SELECT count(*) = 0 FROM inbox_outbox.outbox')
	  or die 'outbox did not drain' . ($what ? " ($what)" : '');
}

# Consumed messages (as InboxOutbox::Kafka::consume returns them) against
# the events expected, { event_id => [ key, value ] }, for a topic of
# $partitions partitions.  Returns a hash:
#   first      { key => [ event ids in the order they first arrived ] }
#   seen       { event_id => how many times it arrived }
#   duplicates messages that repeat an event already seen
#   unexpected [ messages whose event id is unknown or whose key differs ]
#   bad_value  messages of a known event with another value
#   misplaced  messages not in their key's murmur2 partition
sub first_arrivals
{
	my ($messages, $expected, $partitions) = @_;
	my %r = (first => {}, seen => {}, duplicates => 0, unexpected => [],
		bad_value => 0, misplaced => 0);

	for my $m (sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} }
		@$messages)
	{
		my $id = $m->{headers}{event_id} // '';
		my $key = $m->{key} // '';
		my $e = $expected->{$id};

		if (!$e || $e->[0] ne $key)
		{
			push @{ $r{unexpected} }, $m;
			next;
		}
		$r{bad_value}++ if ($m->{value} // '') ne $e->[1];
		$r{misplaced}++ if $m->{partition} != kafka_partition($key, $partitions);
		if ($r{seen}{$id}++)
		{
			$r{duplicates}++;
			next;
		}
		push @{ $r{first}{$key} }, $id;
	}
	return \%r;
}

# 32-bit multiply without losing bits to floating point.
sub _mul32
{
	my ($a, $b) = @_;
	return (($a * ($b & 0xffff)) + ((($a * ($b >> 16)) & 0xffff) << 16)) & 0xffffffff;
}

# The partition the Java client's default partitioner picks for a key:
# murmur2 of the key bytes, made positive, modulo the partition count.
sub kafka_partition
{
	my ($key, $partitions) = @_;
	my @b = unpack('C*', $key);
	my $len = scalar @b;
	my $m = 0x5bd1e995;
	my $h = (0x9747b28c ^ $len) & 0xffffffff;
	my $i = 0;
	for (; $i + 4 <= $len; $i += 4)
	{
		my $k = $b[$i] | ($b[ $i + 1 ] << 8) | ($b[ $i + 2 ] << 16) | ($b[ $i + 3 ] << 24);
		$k = _mul32($k, $m);
		$k ^= $k >> 24;
		$k = _mul32($k, $m);
		$h = _mul32($h, $m);
		$h ^= $k;
	}
	my $rest = $len - $i;
	$h ^= $b[ $i + 2 ] << 16 if $rest >= 3;
	$h ^= $b[ $i + 1 ] << 8 if $rest >= 2;
	if ($rest >= 1)
	{
		$h ^= $b[$i];
		$h = _mul32($h, $m);
	}
	$h ^= $h >> 13;
	$h = _mul32($h, $m);
	$h ^= $h >> 15;
	return ($h & 0x7fffffff) % $partitions;
}

1;

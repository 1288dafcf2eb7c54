# Helpers of the exactly-once tests (test/t/07*): the node's settings, the
# relay's identity, and the check that a topic read with read_committed
# holds each committed event exactly once, in order per key.
package InboxOutbox::ExactlyOnce;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::Relay;

our @EXPORT = qw($eos_conf check_exactly_once count_arrivals transactional_id
  poll_until recovered_lines ulid_text);

# postgresql.conf lines of a node whose relay delivers exactly once.
our $eos_conf = qq{
inbox_outbox.delivery = 'exactly_once'
};

# The relay's transactional id, which is also the key of its progress
# records: inbox_outbox-<system identifier>-<database OID>.
sub transactional_id
{
	my ($node, $db) = @_;
	$db //= 'postgres';
	return $node->safe_psql($db, q{
		SELECT 'inbox_outbox-' || (SELECT system_identifier FROM pg_catalog.pg_control_system())
			   || '-' || (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())});
}

# poll_query_until with a bound of its own, in seconds, for waits longer
# than $PostgreSQL::Test::Utils::timeout_default (a large backlog).
sub poll_until
{
	my ($node, $query, $expected, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		my ($stdout, $stderr);
		$node->psql('postgres', $query, stdout => \$stdout, stderr => \$stderr,
			on_error_die => 0);
		return 1 if defined $stdout && $stdout eq $expected;
		sleep(0.5);
	}
	return 0;
}

# The "recovered" lines of the log from byte $offset: [ [ N, O ], ... ].
sub recovered_lines
{
	my ($node, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset // 0);
	my @lines;
	push @lines, [ $1, $2 ]
	  while $log =~
	  /LOG:  inbox_outbox relay: recovered (\d+) events from the progress record \(offset (\d+)\)/g;
	return \@lines;
}

# How many times each event id arrived: { event_id => n }.
sub count_arrivals
{
	my ($messages) = @_;
	my %n;
	$n{ $_->{headers}{event_id} // '' }++ for @$messages;
	return \%n;
}

# The messages against the committed events: $expected is
# { event_id => [ key, value ] }, $order { key => [ event ids in commit
# order ] }; $partitions the topic's partition count.  Asserts that no
# other event arrived, that every committed one arrived exactly once, with
# its value, in its key's murmur2 partition, and each key's events in
# commit order.
sub check_exactly_once
{
	my ($messages, $expected, $order, $partitions, $name) = @_;
	my $r = first_arrivals($messages, $expected, $partitions);
	my @missing = grep { !$r->{seen}{$_} } keys %$expected;

	is(scalar @{ $r->{unexpected} }, 0, "$name: no event that did not commit, and no unknown message")
	  or diag("first unexpected: event_id "
		  . ($r->{unexpected}[0]{headers}{event_id} // '(none)'));
	is(scalar @missing, 0, "$name: every committed event arrived")
	  or diag(scalar(@missing) . " missing, e.g. $missing[0]");
	is($r->{duplicates}, 0, "$name: no event arrived twice");
	is($r->{bad_value} + $r->{misplaced}, 0,
		"$name: values as published, each key in its murmur2 partition");
	my @disordered =
	  grep { join(',', @{ $r->{first}{$_} // [] }) ne join(',', @{ $order->{$_} }) }
	  sort keys %$order;
	is(scalar @disordered, 0, "$name: each key's events in commit order")
	  or diag("first key out of order: $disordered[0]");
	return $r;
}

# A ULID as text, whether the progress record decoder gives the 26
# characters or the 16 bytes.
my @crockford = split //, '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

sub ulid_text
{
	my ($id) = @_;
	return $id if length($id) == 26;
	die 'an id is neither 26 characters nor 16 bytes' unless length($id) == 16;
	my $bits = '00' . unpack('B128', $id);
	return join '', map { $crockford[ oct('0b' . substr($bits, $_ * 5, 5)) ] } 0 .. 25;
}

1;

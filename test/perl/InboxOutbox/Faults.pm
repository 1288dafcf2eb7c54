=pod

=head1 NAME

InboxOutbox::Faults - the relay's fault points (test/relay_faults) in TAP tests

=head1 SYNOPSIS

  use InboxOutbox::Faults;

  my $node = fault_node('eos', $kafka->bootstrap, conf => "...");
  set_fault($node, at => 'eos_after_commit', action => 'stall', skip => 2);
  my $offset = wait_fault($node, 'stall', 'eos_after_commit');
  fire_stalled($node, 'crash');        # crash where it stands, once
  clear_fault($node);

=head1 DESCRIPTION

A node made by fault_node() preloads the test-only module
test/relay_faults from the build tree (it is never installed), which acts at
the point test_relay_faults.at names: crash (SIGKILL of the relay),
immediate (SIGQUIT to the postmaster) or stall (wait until .at changes); see
test/relay_faults/test_relay_faults.c.  Settings go through ALTER SYSTEM, so
that they survive a restart of the server, and a reload.

Each relay process counts hits of the point from zero, so a crash at a
point the next relay reaches again would repeat after every restart.  The
helpers avoid that two ways: fire_stalled() turns a stall into a crash or an
immediate shutdown in the same reload that sets test_relay_faults.skip out
of reach, and kill_stalled() kills a stalled relay after writing the next
fault to postgresql.auto.conf, then has the postmaster reload before it
starts the next relay.

=cut

package InboxOutbox::Faults;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

use InboxOutbox::Relay;

our @EXPORT = qw(fault_node set_fault clear_fault wait_fault fire_stalled
  kill_stalled wait_server_gone postmaster_pid wait_new_relay);

# A skip no relay process reaches.
my $out_of_reach = 2147483647;

=pod

=over

=item fault_node(NAME, BROKERS, %opts)

relay_node() (InboxOutbox::Relay) with test/relay_faults preloaded after
inbox_outbox and restart_after_crash on; %opts as relay_node takes them.

=cut

sub fault_node
{
	my ($name, $brokers, %opts) = @_;
	my $lib = "$ENV{TESTDIR}/test/relay_faults/test_relay_faults";
	die "$lib.so is not built (make test-helpers)" unless -f "$lib.so";
	$opts{conf} = qq{
shared_preload_libraries = 'inbox_outbox, $lib'
restart_after_crash = on
} . ($opts{conf} // '');
	return relay_node($name, $brokers, %opts);
}

=pod

=item set_fault(NODE, at => POINT, action => ACTION, skip => N, reload => BOOL)

ALTER SYSTEM SET the given settings (any subset), then reload and wait
until new sessions see them, unless reload is false.

=cut

sub set_fault
{
	my ($node, %f) = @_;
	my $reload = delete $f{reload} // 1;
	my $sql = '';
	foreach my $name (sort keys %f)
	{
		die "unknown fault setting $name" unless $name =~ /^(at|action|skip)$/;
		$sql .= "ALTER SYSTEM SET test_relay_faults.$name = '$f{$name}';\n";
	}
	$node->safe_psql('postgres', $sql);
	_reload($node, %f) if $reload;
	return;
}

=pod

=item clear_fault(NODE)

Reset every fault setting and reload: no point is armed.

=cut

sub clear_fault
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
ALTER SYSTEM RESET test_relay_faults.at;
ALTER SYSTEM RESET test_relay_faults.action;
ALTER SYSTEM RESET test_relay_faults.skip;
});
	_reload($node, at => '');
	return;
}

# Reload, and wait until the postmaster has the values (it signals the
# relay right after it has read them).
sub _reload
{
	my ($node, %f) = @_;
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	foreach my $name (sort keys %f)
	{
		$node->poll_query_until('postgres',
			"SELECT setting FROM pg_settings WHERE name = 'test_relay_faults.$name'",
			$f{$name})
		  or die "test_relay_faults.$name = '$f{$name}' was not reloaded";
	}
	return;
}

=pod

=item wait_fault(NODE, ACTION, POINT, OFFSET)

Wait (bounded) until the log, from byte OFFSET, says that the relay took
ACTION at POINT; returns the log offset after that line and the hit number.

=cut

sub wait_fault
{
	my ($node, $action, $point, $offset) = @_;
	my $re = qr/test_relay_faults: \Q$action\E at \Q$point\E \(hit (\d+)\)/;
	my $end = $node->wait_for_log($re, $offset // 0);
	my $log = slurp_file($node->logfile, $offset // 0);
	my ($hit) = $log =~ $re;
	return wantarray ? ($end, $hit) : $end;
}

=pod

=item fire_stalled(NODE, ACTION)

The relay stalls at a point: have it take ACTION (crash or immediate) where
it stands, with test_relay_faults.skip out of reach for the relays that
follow.  With immediate, waits until the server is gone.

=cut

sub fire_stalled
{
	my ($node, $action) = @_;
	die "fire_stalled takes crash or immediate" unless $action =~ /^(crash|immediate)$/;
	$node->safe_psql('postgres', qq{
ALTER SYSTEM SET test_relay_faults.skip = $out_of_reach;
ALTER SYSTEM SET test_relay_faults.action = '$action';
SELECT pg_reload_conf();
});
	wait_server_gone($node) if $action eq 'immediate';
	return;
}

=pod

=item kill_stalled(NODE, %next)

The relay stalls at a point: write the next fault's settings (as
set_fault takes them; none: skip out of reach) without a reload, SIGKILL the
relay, and at once SIGHUP the postmaster, which reads them before it starts
the relay that follows (not before the crash restart is over).  Returns the
killed relay's pid.

=cut

sub kill_stalled
{
	my ($node, %next) = @_;
	%next = (skip => $out_of_reach) unless %next;
	set_fault($node, %next, reload => 0);
	my $pid = relay_pid($node);
	die 'no relay to kill' unless $pid;
	kill 'KILL', $pid or die "could not kill relay $pid: $!";
	kill 'HUP', postmaster_pid($node) or die "could not signal the postmaster: $!";
	return $pid;
}

=pod

=item wait_new_relay(NODE, OLD_PID)

Wait (bounded) through the restart of every backend until a relay other
than OLD_PID runs; returns its pid.

=cut

sub wait_new_relay
{
	my ($node, $old) = @_;
	poll_through_restart($node, 'postgres', qq{
		SELECT pid IS NOT NULL AND pid <> $old AND state <> 'starting'
		FROM inbox_outbox.relay_status})
	  or die "no relay replaced $old";
	return relay_pid($node);
}

=pod

=item postmaster_pid(NODE)

The postmaster's pid, from postmaster.pid.

=cut

sub postmaster_pid
{
	my ($node) = @_;
	my ($pid) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
	return $pid;
}

=pod

=item wait_server_gone(NODE)

Wait (bounded) until a server that shuts itself down (SIGQUIT from the
relay) is gone, and tell PostgreSQL::Test::Cluster, so that start() works.

=cut

sub wait_server_gone
{
	my ($node) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	sleep(0.1) while -e $node->data_dir . '/postmaster.pid' && time() < $deadline;
	die 'the server did not shut down' if -e $node->data_dir . '/postmaster.pid';
	# pg_ctl finds no server; the node then knows it has none
	$node->stop('immediate', fail_ok => 1);
	return;
}

=pod

=back

=cut

1;

=pod

=head1 NAME

InboxOutbox::MockCluster - a librdkafka mock Kafka cluster for TAP tests

=head1 SYNOPSIS

  use InboxOutbox::MockCluster;

  my $mc = InboxOutbox::MockCluster->new(brokers => 3, topics => ['t1:4']);
  $node->append_conf('postgresql.conf',
	  "inbox_outbox.bootstrap_servers = '" . $mc->bootstrap . "'");

  $mc->command('leader t1 0 1');
  $mc->push_errors('Produce', 'NOT_LEADER_FOR_PARTITION', 5);
  $mc->broker_down(1);
  $mc->broker_up(1);
  $mc->rtt(1, 200);

  is($mc->stop, 0, 'mock cluster exited cleanly');

=head1 DESCRIPTION

Runs test/mock_cluster/mock_cluster (building it with make if it is missing
or older than its source) and talks to it over pipes: one command line in,
one reply line ("ok" or "error: ...") out.  See mock_cluster.c for the
commands and for what the mock cannot do (read_committed visibility,
deduplication of idempotent retries).  The program's stderr goes to a file
in $PostgreSQL::Test::Utils::log_path.

Every wait is bounded by $PostgreSQL::Test::Utils::timeout_default.  The
process is stopped by stop(), when the object is destroyed, or at the end of
the test script, whichever comes first.

=cut

package InboxOutbox::MockCluster;

use strict;
use warnings;

use Carp;
use File::Basename qw(basename dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Scalar::Util qw(refaddr weaken);

my $instance_count = 0;

# Running instances, weakly held, so that END can stop any left over.
my %running;

=pod

=head1 METHODS

=over

=item InboxOutbox::MockCluster->new(brokers => N, topics => ['NAME:PARTITIONS', ...])

Start a mock cluster with N brokers (default 3) and the given topics, and
wait for its bootstrap list.  Dies if the program cannot be built or started.

=cut

sub new
{
	my ($class, %args) = @_;
	my $brokers = $args{brokers} // 3;
	my @topics = @{ $args{topics} // [] };
	my $dir = File::Spec->rel2abs(
		File::Spec->catdir(dirname(__FILE__), '..', '..', 'mock_cluster'));
	my $program = "$dir/mock_cluster";

	_build($dir, $program);

	$instance_count++;
	my $test_name = basename($0);
	$test_name =~ s/\.[^.]+$//;
	my $log =
	  "$PostgreSQL::Test::Utils::log_path/${test_name}_mock_cluster_$instance_count.log";

	my $self = bless {
		in => '',
		out => '',
		log => $log,
		timeout => IPC::Run::timeout(
			$PostgreSQL::Test::Utils::timeout_default,
			exception => 'mock_cluster did not answer in time'),
	}, $class;

	my @cmd = ($program, '--brokers', $brokers, map { ('--topic', $_) } @topics);
	$self->{handle} = IPC::Run::start(
		\@cmd,
		'<' => \$self->{in},
		'>' => \$self->{out},
		'2>>' => $log,
		$self->{timeout});
	$self->{pid} = $self->{handle}{KIDS}[0]{PID};
	$running{ refaddr($self) } = $self;
	weaken($running{ refaddr($self) });

	my $line = $self->_read_line('its bootstrap list');
	if ($line !~ /^bootstrap=(\S+)$/)
	{
		$self->stop;
		croak "mock_cluster printed \"$line\" instead of its bootstrap list";
	}
	$self->{bootstrap} = $1;
	return $self;
}

# Run make unless the program exists and is newer than its source.
sub _build
{
	my ($dir, $program) = @_;

	return if -x $program && -M $program <= -M "$program.c";

	my $output = '';
	IPC::Run::run([ 'make', '-C', $dir ], '>&', \$output)
	  or croak "could not build $program:\n$output";
	return;
}

# Wait for one line on the program's stdout and return it without newline.
sub _read_line
{
	my ($self, $what) = @_;
	my $h = $self->{handle};

	$self->{timeout}->start($PostgreSQL::Test::Utils::timeout_default);
	my $ok = eval {
		while ($self->{out} !~ /\n/)
		{
			die "mock_cluster exited\n" unless $h->pumpable;
			$h->pump;
		}
		1;
	};
	if (!$ok)
	{
		my $err = $@;
		chomp $err;
		$self->_kill;
		my $log = -e $self->{log} ? slurp_file($self->{log}) : '';
		croak "waiting for $what: $err; log $self->{log}:\n$log";
	}
	$self->{out} =~ s/^([^\n]*)\n//;
	return $1;
}

sub _kill
{
	my ($self) = @_;
	my $h = delete $self->{handle} or return;

	delete $running{ refaddr($self) };
	$h->kill_kill;
	return;
}

=pod

=item $mc->bootstrap

The bootstrap list, "127.0.0.1:PORT,...", one entry per broker; broker ids
are 1 to N in that order.

=cut

sub bootstrap
{
	my ($self) = @_;
	return $self->{bootstrap};
}

=pod

=item $mc->pid

The process id of mock_cluster, for checking that it is gone after stop().

=cut

sub pid
{
	my ($self) = @_;
	return $self->{pid};
}

=pod

=item $mc->command($line)

Send one command (see mock_cluster.c).  Returns 1 on "ok"; dies with the
program's "error: ..." message otherwise.

=cut

sub command
{
	my ($self, $line) = @_;

	croak "mock_cluster is not running" unless $self->{handle};
	croak "a mock_cluster command is one line" if $line =~ /[\r\n]/;

	$self->{in} .= "$line\n";
	my $reply = $self->_read_line("the reply to \"$line\"");
	return 1 if $reply eq 'ok';
	croak "mock_cluster command \"$line\" failed: $reply"
	  if $reply =~ /^error: /;
	croak "mock_cluster answered \"$reply\" to \"$line\"";
}

=pod

=item $mc->push_errors($api_key, $error_code, $count)

Make the next $count (default 1) requests of that API key, to any broker,
fail with that error.  Names as mock_cluster.c accepts them, e.g.
push_errors('Produce', 'NOT_LEADER_FOR_PARTITION', 5).

=cut

sub push_errors
{
	my ($self, $api_key, $error_code, $count) = @_;
	return $self->command(join ' ', 'error', $api_key, $error_code,
		$count // 1);
}

=pod

=item $mc->broker_down($id), $mc->broker_up($id)

Close the broker's connections and refuse new ones, or accept them again.
Leadership does not move; use command('leader ...') for that.

=cut

sub broker_down
{
	my ($self, $id) = @_;
	return $self->command("down $id");
}

sub broker_up
{
	my ($self, $id) = @_;
	return $self->command("up $id");
}

=pod

=item $mc->rtt($id, $ms)

Delay every response of the broker by $ms milliseconds (0 to stop).

=cut

sub rtt
{
	my ($self, $id, $ms) = @_;
	return $self->command("rtt $id $ms");
}

=pod

=item $mc->stop

Close the program's input, which makes it quit, and wait for it (bounded).
Returns its wait status, 0 for a clean exit; a process that had to be killed
gives -1.  Calling it again returns the same value.

=cut

sub stop
{
	my ($self) = @_;
	my $h = $self->{handle};

	return $self->{wait_status} unless $h;

	# End of input means quit.  Unlike writing "quit", closing the pipe
	# cannot fail if the program has already gone, e.g. after a signal.
	$self->{timeout}->start($PostgreSQL::Test::Utils::timeout_default);
	if (eval { $h->finish; 1 })
	{
		$self->{wait_status} = $h->full_result(0);
		delete $self->{handle};
		delete $running{ refaddr($self) };
	}
	else
	{
		carp "stopping mock_cluster: $@";
		$self->_kill;
		$self->{wait_status} = -1;
	}
	return $self->{wait_status};
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $!, $?);

	$self->stop if $self->{handle};
	return;
}

END
{
	local ($@, $!, $?);

	$_->stop for grep { defined } values %running;
}

=pod

=back

=cut

1;

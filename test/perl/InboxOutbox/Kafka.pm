=pod

=head1 NAME

InboxOutbox::Kafka - a real Apache Kafka broker for TAP tests

=head1 SYNOPSIS

  use InboxOutbox::Kafka;

  my $kafka = InboxOutbox::Kafka->new(name => 'k1',
	  config => { 'auto.create.topics.enable' => 'false' });
  $kafka->create_topic('events', 3);
  $kafka->produce('events', [ [ 'key', 'value', { h => 'v' } ], [ undef, 'v2' ] ]);
  my $msgs = $kafka->consume('events', min => 2);
  $kafka->stop;
  $kafka->start;    # same address as before

=head1 DESCRIPTION

Each object is one single-node broker started by test/kafka/kafka.sh in
$PostgreSQL::Test::Utils::tmp_check/kafka_NAME.  Producing and consuming go
through kcat, the same librdkafka the extension uses.  The broker's log is
copied to $PostgreSQL::Test::Utils::log_path/kafka_NAME.log whenever it
stops, and an END block stops every broker still running, so that no JVM
outlives the test; should the test be killed outright, kafka.sh's watchdog
stops the broker.

Keys, values and header values are byte strings; undef stands for null.

=cut

package InboxOutbox::Kafka;

use strict;
use warnings;

use Carp;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(rmtree);
use File::Spec;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my $kafka_sh = File::Spec->rel2abs(dirname(__FILE__) . '/../../kafka/kafka.sh');

# Brokers started and not yet stopped: directory => name.
my %running;

# Delimiters for kcat -P: one between records, one between key and value.
# Their bytes are all different, so neither can match across a boundary.
my $record_delim = "\x1d\x1e\x1f";
my $key_delim    = "\x1f\x1e\x1d";

=pod

=head1 METHODS

=over

=item InboxOutbox::Kafka->new(name => NAME, config => { key => value, ... })

Start a new broker; any previous one in the same directory is stopped and
removed first.  config overrides kafka.sh's broker defaults.  Dies with the
tail of the broker's log if it cannot start.

=cut

sub new
{
	my ($class, %args) = @_;
	my $name = $args{name} // 'kafka';
	croak "broker name \"$name\" is not a word" unless $name =~ /^\w+$/;

	my $self = bless {
		name => $name,
		dir => File::Spec->rel2abs(
			"$PostgreSQL::Test::Utils::tmp_check/kafka_$name"),
		config => $args{config} // {},
		started => 0,
	}, $class;

	_run_kafka_sh(60, 'stop', $self->{dir});
	rmtree($self->{dir});
	$self->start;
	return $self;
}

=pod

=item $kafka->start()

Start the broker, or start it again after stop() on the same address with
its data.

=cut

sub start
{
	my ($self) = @_;
	my @settings;

	local %ENV = %ENV;
	$ENV{KAFKA_OWNER_PID} = $$;
	if (!$self->{started})
	{
		# Take the ports from PostgreSQL's allocator, so that no node of the
		# test is given one of them.
		$ENV{KAFKA_PORT} = PostgreSQL::Test::Cluster::get_free_port();
		$ENV{KAFKA_CONTROLLER_PORT} =
		  PostgreSQL::Test::Cluster::get_free_port();
		@settings = map { "$_=$self->{config}{$_}" }
		  sort keys %{ $self->{config} };
	}

	$running{ $self->{dir} } = $self->{name};
	my ($ok, $out, $err) =
	  _run_kafka_sh(300, 'start', $self->{dir}, @settings);
	if (!$ok)
	{
		diag("Kafka broker $self->{name} did not start:\n$err");
		_stop_broker($self->{dir}, $self->{name});
		die "Kafka broker $self->{name} did not start";
	}
	chomp $out;
	die "kafka.sh start printed \"$out\", not a bootstrap address"
	  unless $out =~ /^127\.0\.0\.1:\d+$/;
	$self->{bootstrap} = $out;
	$self->{started} = 1;
	note("Kafka broker $self->{name} runs at $out");
	return;
}

=pod

=item $kafka->stop()

Stop the broker (SIGTERM, then SIGKILL if it lingers) and copy its log to
log_path.  Stopping a stopped broker does nothing.

=cut

sub stop
{
	my ($self) = @_;
	_stop_broker($self->{dir}, $self->{name});
	return;
}

=pod

=item $kafka->is_running()

True if the broker process runs.

=cut

sub is_running
{
	my ($self) = @_;
	my ($ok) = _run_kafka_sh(30, 'status', $self->{dir});
	return $ok;
}

=pod

=item $kafka->bootstrap()

The broker's address, C<127.0.0.1:PORT>; it stays the same across restarts.

=cut

sub bootstrap
{
	my ($self) = @_;
	return $self->{bootstrap};
}

=pod

=item $kafka->dir()

The directory holding the broker's configuration, data and logs.

=cut

sub dir
{
	my ($self) = @_;
	return $self->{dir};
}

=pod

=item $kafka->create_topic(TOPIC, PARTITIONS, key => value, ...)

Create a topic with Kafka's own TopicCommand, with optional topic
configuration, and wait until the broker leads all its partitions.

=cut

sub create_topic
{
	my ($self, $topic, $partitions, %config) = @_;
	my ($ok, $out, $err) = _run_kafka_sh(120, 'create-topic', $self->{dir},
		$topic, $partitions, map { "$_=$config{$_}" } sort keys %config);
	die "could not create topic $topic:\n$err" unless $ok;
	return;
}

=pod

=item $kafka->describe_topic(TOPIC)

The topic as Kafka's TopicCommand describes it: a hash of partitions (the
count) and config (the configuration overrides, name => value).  Dies if
there is no such topic.

=cut

sub describe_topic
{
	my ($self, $topic) = @_;
	my ($ok, $out, $err) = _run_kafka_sh(120, 'describe-topic', $self->{dir}, $topic);
	die "could not describe topic $topic:\n$err" unless $ok;
	my ($partitions) = $out =~ /PartitionCount: (\d+)/;
	my ($configs) = $out =~ /Configs: ?(\S*)/;
	my %config = map { split /=/, $_, 2 } grep { $_ ne '' } split /,/, $configs // '';
	return { partitions => $partitions, config => \%config };
}

=pod

=item $kafka->partition_count(TOPIC)

The number of partitions the broker reports for TOPIC; 0 if it has no such
topic.

=cut

sub partition_count
{
	my ($self, $topic) = @_;
	my ($ok, $out, $err) = _run(30,
		[ 'kcat', '-L', '-b', $self->{bootstrap}, '-t', $topic, '-m', '5' ]);
	die "kcat -L failed:\n$err" unless $ok;
	my @partitions = $out =~ /^ +partition \d+,/mg;
	return scalar @partitions;
}

=pod

=item $kafka->produce(TOPIC, [ [ KEY, VALUE, HEADERS ], ... ], partition => N)

Produce the messages in order with kcat, and wait until the broker has
acknowledged all of them.  HEADERS is a hash (sent in name order) or an
array of name => value pairs; undef keys, values and header values are sent
as null.  Without partition, librdkafka's default partitioner picks one.
kcat cannot send a null key with an empty value: that dies.

=cut

sub produce
{
	my ($self, $topic, $messages, %opts) = @_;
	my @base = (
		'kcat', '-P', '-b', $self->{bootstrap}, '-t', $topic,
		'-K', $key_delim, '-D', $record_delim,
		'-X', 'enable.idempotence=true',
		'-X', 'message.timeout.ms=60000');
	push @base, '-p', $opts{partition} if defined $opts{partition};

	# Consecutive messages that need the same kcat options go in one run.
	my (@records, $batch_opts);
	my $flush = sub {
		return unless @records;
		my ($ok, $out, $err) = _run(120, [ @base, @$batch_opts ],
			join($record_delim, @records));
		die "kcat could not produce to $topic:\n$err" unless $ok;
		@records = ();
	};
	foreach my $m (@$messages)
	{
		my ($key, $value, $headers) = @$m;
		my @opts;

		# -Z makes an empty key or value null; -k '' brings an empty key
		# back.
		if (!defined $key || !defined $value)
		{
			croak "kcat cannot produce a null key with an empty value"
			  if defined $value && $value eq '';
			push @opts, '-Z';
			push @opts, '-k', '' if defined $key && $key eq '';
		}
		my @h =
			ref $headers eq 'HASH'
		  ? map { $_ => $headers->{$_} } sort keys %$headers
		  : @{ $headers // [] };
		while (my ($name, $hv) = splice(@h, 0, 2))
		{
			croak "header name \"$name\" contains \"=\"" if $name =~ /=/;
			push @opts, '-H', defined $hv ? "$name=$hv" : $name;
		}
		my $record = ($key // '') . $key_delim . ($value // '');
		croak "key or value contains kcat's delimiters"
		  if index($key // '', $key_delim) >= 0
		  || index($record, $record_delim) >= 0;
		croak "keys, values and headers must be byte strings"
		  if join('', $record, @opts) =~ /[^\x00-\xff]/;

		$flush->()
		  if @records && join("\0", @opts) ne join("\0", @$batch_opts);
		push @records, $record;
		$batch_opts = \@opts;
	}
	$flush->();
	return;
}

=pod

=item $kafka->consume(TOPIC, isolation => LEVEL, min => N, timeout => SECONDS, partition => N)

Read TOPIC from the beginning to the end of every partition and return an
array reference of messages sorted by partition and offset, each a hash:
partition, offset, key, value, headers (name => value; the last one wins
for a repeated name), header_list ([name, value] in order) and timestamp (ms).

isolation is 'read_committed' (the default, as in librdkafka) or
'read_uncommitted'.  With min, read again until at least N messages are
there or timeout (default 60) seconds have passed, then return what there
is.

=item InboxOutbox::Kafka::kcat_consume(BOOTSTRAP, TOPIC, ...)

The same for any cluster, given its bootstrap list (a mock cluster's, say).

=cut

sub consume
{
	my ($self, @args) = @_;
	return kcat_consume($self->{bootstrap}, @args);
}

sub kcat_consume
{
	my ($bootstrap, $topic, %opts) = @_;
	my $isolation = $opts{isolation} // 'read_committed';
	my $min = $opts{min} // 0;
	my $deadline = time() + ($opts{timeout} // 60);
	my @cmd = (
		'kcat', '-C', '-b', $bootstrap, '-t', $topic,
		'-o', 'beginning', '-e', '-J', '-q', '-m', '5',
		'-X', "isolation.level=$isolation");
	push @cmd, '-p', $opts{partition} if defined $opts{partition};

	# The JSON is decoded without utf8 so that strings stay the bytes
	# that were sent.
	my $json = JSON::PP->new;
	my ($messages, $err);
	while (1)
	{
		my ($ok, $out);
		($ok, $out, $err) = _run(60, \@cmd);
		$messages = [];
		if ($ok)
		{
			foreach my $line (split /\n/, $out)
			{
				my $m = $json->decode($line);
				my @h = @{ $m->{headers} // [] };
				my @pairs;
				push @pairs, [ splice(@h, 0, 2) ] while @h;
				push @$messages,
				  {
					partition => $m->{partition},
					offset => $m->{offset},
					key => $m->{key},
					value => $m->{payload},
					headers => { map { @$_ } @pairs },
					header_list => \@pairs,
					timestamp => $m->{ts},
				  };
			}
		}
		last if ($ok && @$messages >= $min) || time() >= $deadline;
		sleep(0.2);
	}
	note("consume $topic: kcat failed: $err") if $err ne '';
	return [ sort {
			$a->{partition} <=> $b->{partition}
			  || $a->{offset} <=> $b->{offset}
	} @$messages ];
}

=pod

=item $kafka->consume_raw(TOPIC, isolation => LEVEL, min => N, timeout => SECONDS, partition => N)

Like consume(), for keys and values that are any bytes (a progress record,
say) and for large topics: kcat prints each message with the lengths of its
key and value ahead of them (-f) instead of as JSON, which is exact for
binary data and much faster to read.  Each message is a hash: partition,
offset, timestamp, key, value (undef for null) and headers (name => value,
read from kcat's "n=v,..." list, so header values must hold neither a comma
nor a newline; the event_id header never does).

=item InboxOutbox::Kafka::kcat_consume_raw(BOOTSTRAP, TOPIC, ...)

The same for any cluster.

=cut

sub consume_raw
{
	my ($self, @args) = @_;
	return kcat_consume_raw($self->{bootstrap}, @args);
}

sub kcat_consume_raw
{
	my ($bootstrap, $topic, %opts) = @_;
	my $isolation = $opts{isolation} // 'read_committed';
	my $min = $opts{min} // 0;
	my $timeout = $opts{timeout} // 60;
	my $deadline = time() + $timeout;
	my @cmd = (
		'kcat', '-C', '-b', $bootstrap, '-t', $topic,
		'-o', 'beginning', '-e', '-q', '-m', '5',
		'-X', "isolation.level=$isolation",
		'-f', '%p %o %T %K %S\n%k%s\n%h\n');
	push @cmd, '-p', $opts{partition} if defined $opts{partition};

	my ($messages, $err);
	while (1)
	{
		my ($ok, $out);
		($ok, $out, $err) = _run($timeout + 60, \@cmd);
		$messages = $ok ? _parse_raw($out) : [];
		last if ($ok && @$messages >= $min) || time() >= $deadline;
		sleep(0.2);
	}
	note("consume $topic: kcat failed: $err") if $err ne '';
	return [ sort {
			$a->{partition} <=> $b->{partition}
			  || $a->{offset} <=> $b->{offset}
	} @$messages ];
}

# Messages as kcat prints them with consume_raw()'s format.
sub _parse_raw
{
	my ($out) = @_;
	my @messages;
	my $pos = 0;
	while ($pos < length($out))
	{
		my $eol = index($out, "\n", $pos);
		die "kcat output ends inside a message" if $eol < 0;
		my ($partition, $offset, $ts, $klen, $vlen) =
		  split / /, substr($out, $pos, $eol - $pos);
		die "unexpected kcat output at byte $pos" unless defined $vlen;
		$pos = $eol + 1;
		my $key = $klen >= 0 ? substr($out, $pos, $klen) : undef;
		$pos += $klen if $klen > 0;
		my $value = $vlen >= 0 ? substr($out, $pos, $vlen) : undef;
		$pos += $vlen if $vlen > 0;
		die "unexpected kcat output at byte $pos" unless substr($out, $pos, 1) eq "\n";
		$eol = index($out, "\n", $pos + 1);
		die "kcat output ends inside a message" if $eol < 0;
		my %headers = map { my ($n, $v) = split /=/, $_, 2; ($n => $v) }
		  split /,/, substr($out, $pos + 1, $eol - $pos - 1);
		$pos = $eol + 1;
		push @messages,
		  {
			partition => $partition,
			offset => $offset,
			timestamp => $ts,
			key => $key,
			value => $value,
			headers => \%headers,
		  };
	}
	return \@messages;
}

=pod

=item $kafka->log_tail(LINES)

The last LINES (default 50) lines of the broker's server.log and
stdout.log.

=cut

sub log_tail
{
	my ($self, $lines) = @_;
	$lines //= 50;
	my $tail = '';
	foreach my $f ('server.log', 'stdout.log')
	{
		my $path = "$self->{dir}/$f";
		next unless -s $path;
		my @all = split /^/m, slurp_file($path);
		splice(@all, 0, @all - $lines) if @all > $lines;
		$tail .= "--- last lines of $path\n" . join('', @all);
	}
	return $tail;
}

=pod

=back

=cut

# Runs a command with a time limit; returns (exit status was 0, stdout,
# stderr).
sub _run
{
	my ($timeout, $cmd, $stdin) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run($cmd, '<', \$stdin, '>', \$out, '2>', \$err,
			IPC::Run::timeout($timeout));
	};
	if ($@)
	{
		$err .= "\n$cmd->[0] failed: $@";
		$ok = 0;
	}
	return ($ok, $out, $err);
}

# kafka.sh's messages go to the test's log as well.
sub _run_kafka_sh
{
	my ($timeout, @args) = @_;
	my ($ok, $out, $err) = _run($timeout, [ $kafka_sh, @args ]);
	print STDERR $err;
	return ($ok, $out, $err);
}

sub _stop_broker
{
	my ($dir, $name) = @_;
	return unless exists $running{$dir};
	my ($ok, $out, $err) = _run_kafka_sh(120, 'stop', $dir);
	diag("could not stop the Kafka broker in $dir:\n$err") unless $ok;
	foreach my $f ([ 'server.log', '' ], [ 'stdout.log', '_stdout' ])
	{
		copy("$dir/$f->[0]",
			"$PostgreSQL::Test::Utils::log_path/kafka_$name$f->[1].log")
		  if -s "$dir/$f->[0]";
	}
	delete $running{$dir};
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($?, $@, $!);
	eval { _stop_broker($self->{dir}, $self->{name}) };
	return;
}

END
{
	local ($?, $@, $!);
	foreach my $dir (keys %running)
	{
		eval { _stop_broker($dir, $running{$dir}) };
	}
}

1;

# Helpers shared by the TAP tests of the client programs in test/clients
# (061_clients_jvm_node_go.pl, 063_clients_orms.pl): building them, running
# one with a time limit, and checking that what docs/clients.md shows of
# them is what they run.
package InboxOutbox::Clients;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(client_programs run_client docs_show_blocks);

# Runs a command with a time limit: (exit status was 0, stdout), and one
# test that it succeeded.  Its stderr goes to the test's diagnostics when
# it fails.
sub run_client
{
	my ($what, $timeout, @cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($timeout));
	};
	$err .= $@ if $@;
	ok($ok, "$what ran without an error") or diag($err);
	return ($ok, $out);
}

# The directory of the programs test/clients/build.sh built (or found
# built); dies if it could not, so that a missing tool fails the test.
sub client_programs
{
	my ($built, $dir) = run_client('test/clients/build.sh', 900, 'bash',
		"$ENV{TESTDIR}/test/clients/build.sh");
	chomp $dir;
	die 'the client programs could not be built' unless $built && -d $dir;
	return $dir;
}

# Every block of the given source files between "docs: begin NAME" and
# "docs: end NAME" comments (// or #) must appear in docs/clients.md
# character for character, less the indentation the block shares.  One
# test per block; returns how many blocks there were.
sub docs_show_blocks
{
	my (@files) = @_;
	my $docs = slurp_file("$ENV{TESTDIR}/docs/clients.md");
	my $blocks = 0;
	foreach my $file (sort @files)
	{
		my $text = slurp_file($file);
		while ($text =~
			m{^[ \t]*(?://|\#) docs: begin (\S+)\n(.*?)^[ \t]*(?://|\#) docs: end \1\n}msg)
		{
			my ($name, $block) = ($1, $2);
			my ($indent) = sort { length $a <=> length $b } $block =~ /^([ \t]*)\S/mg;
			$block =~ s/^\Q$indent\E//mg;
			ok(index($docs, $block) >= 0, "docs/clients.md shows $name as the test runs it")
			  or diag("not found in docs/clients.md:\n$block");
			$blocks++;
		}
	}
	return $blocks;
}

1;

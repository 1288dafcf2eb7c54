# The boundary between the two libraries, as the dynamic linker sees it.
# Both are built with hidden symbols on every PostgreSQL version, so that
# inbox_outbox_relay.so can only reach inbox_outbox.so through the table of
# src/relay_api.h: a direct call would build and then fail when the relay
# loads (undefined symbol), so this says which call it is.  And each
# library exports exactly what PostgreSQL looks up by name.

use strict;
use warnings;

use IPC::Cmd qw(can_run);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

BAIL_OUT('nm (binutils) is required to read the libraries') unless can_run('nm');

my $node = PostgreSQL::Test::Cluster->new('symbols');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION inbox_outbox');

my $libdir = $node->config_data('--pkglibdir');
my $main = "$libdir/inbox_outbox.so";
my $relay = "$libdir/inbox_outbox_relay.so";

# Symbols nm lists with the given options, in %{ name => type }.
sub symbols
{
	my ($file, @options) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'nm', @options, $file ], '>', \$stdout, '2>', \$stderr)
	  or die "nm @options $file failed: $stderr";
	my %symbols;
	for (split /\n/, $stdout)
	{
		# "address type name", or "type name" for an undefined one
		my @f = split ' ';
		$symbols{ $f[-1] } = $f[-2] if @f >= 2;
	}
	return \%symbols;
}

# 1. Nothing crosses from the relay library into the main library: no
# symbol the relay library leaves undefined is one the main library
# defines, hidden or not.
my $relay_undefined = symbols($relay, '-D', '--undefined-only');
my $main_defined = symbols($main, '--defined-only');
my @crossing = sort grep { exists $main_defined->{$_} } keys %$relay_undefined;
is_deeply(\@crossing, [], 'inbox_outbox_relay.so takes no symbol from inbox_outbox.so')
  or diag('reach these through src/relay_api.h: ' . join(', ', @crossing));
ok(exists $main_defined->{relay_api_publish} && exists $main_defined->{relay_slot_find},
	'the main library still has its symbols to compare with (not stripped)');

# 2. The main library exports the magic block, _PG_init, the launcher's
# entry point and each C function of the SQL scripts with its info
# function, and nothing else.
my @c_functions = split /\n/, $node->safe_psql('postgres', q{
	SELECT DISTINCT prosrc FROM pg_catalog.pg_proc
	WHERE probin = '$libdir/inbox_outbox' ORDER BY 1});
cmp_ok(scalar(@c_functions), '>=', 10, 'the SQL scripts name C functions');
my @expected = sort('Pg_magic_func', '_PG_init', 'inbox_outbox_launcher_main',
	@c_functions, map { "pg_finfo_$_" } @c_functions);
my @exported = sort keys %{ symbols($main, '-D', '--defined-only') };
is_deeply(\@exported, \@expected,
	'inbox_outbox.so exports exactly what PostgreSQL looks up');

# 3. The relay library exports its magic block and the entry points of the
# relay and of the ingestion worker only.
@exported = sort keys %{ symbols($relay, '-D', '--defined-only') };
is_deeply(\@exported, [ 'Pg_magic_func', 'inbox_outbox_ingest_main', 'inbox_outbox_relay_main' ],
	'inbox_outbox_relay.so exports its magic block and entry points only');

$node->stop;
done_testing();

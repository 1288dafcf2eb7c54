# Every update path ends where a fresh CREATE EXTENSION does.  For each
# version installed beside the default one that ALTER EXTENSION ... UPDATE
# can take to the default, one database creates the extension at that
# version and updates it, another creates the default version, and the two
# must agree on the extension's configuration tables and on the schema
# pg_dump writes for its objects: types, functions, operators and their
# families, casts, tables, indexes, triggers, views, comments, privileges.
#
# pg_dump leaves out the members of an extension, so both databases first
# forget which objects are members (pg_depend's 'e' rows; the databases
# are thrown away).  A comparison that could not tell two schemas apart
# would pass every path, so the test also changes one comment and checks
# that the dumps then differ.
#
# Version 1.0 is the first, so no path exists yet; the next version's
# upgrade script is tested here without a change to this file.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade_paths');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'inbox_outbox'");
$node->start;

my $default = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'inbox_outbox'});
isnt($default, '', "the default version is $default");

my @paths = split /\n/, $node->safe_psql('postgres', qq{
	SELECT source FROM pg_extension_update_paths('inbox_outbox')
	WHERE target = '$default' AND path IS NOT NULL ORDER BY source});
note('versions with a path to ' . $default . ': ' . (@paths ? "@paths" : 'none'));

my $n = 0;

# Create the extension in a new database, at VERSION and then updated to
# the default if VERSION is given; return the configuration tables and the
# dump of its objects.
sub install_and_dump
{
	my ($version, $alter) = @_;
	my $db = 'db' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	if (defined $version)
	{
		$node->safe_psql($db, "CREATE EXTENSION inbox_outbox VERSION '$version'");
		$node->safe_psql($db, "ALTER EXTENSION inbox_outbox UPDATE TO '$default'");
	}
	else
	{
		$node->safe_psql($db, 'CREATE EXTENSION inbox_outbox');
	}
	$node->safe_psql($db, $alter) if defined $alter;

	my $config = $node->safe_psql($db, q{
		SELECT extversion, extconfig::regclass[]::text, extcondition
		FROM pg_extension WHERE extname = 'inbox_outbox'});
	$node->safe_psql($db, q{
		DELETE FROM pg_depend
		WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'inbox_outbox')});
	my ($dump, $stderr);
	IPC::Run::run(
		[ $node->installed_command('pg_dump'), '--schema-only',
		  '-d', $node->connstr($db) ],
		'>', \$dump, '2>', \$stderr)
	  or die "pg_dump of $db failed: $stderr";
	# pg_dump 15.14 and later bracket the script with a random key
	$dump =~ s/^\\(?:un)?restrict \S+$//mg;
	$node->safe_psql('postgres', "DROP DATABASE $db");
	return ($config, $dump);
}

my ($fresh_config, $fresh_dump) = install_and_dump(undef);
like($fresh_dump, qr/CREATE TYPE public\.ulid/, 'the dump holds the extension\'s objects');
like($fresh_dump, qr/CREATE TABLE inbox_outbox\.outbox /, 'and its tables');

foreach my $from (@paths)
{
	my ($config, $dump) = install_and_dump($from);
	is($config, $fresh_config, "from $from: the same configuration tables as a fresh $default");
	ok($dump eq $fresh_dump, "from $from: the same objects as a fresh $default")
	  or diag(first_difference($dump, $fresh_dump));
}

# The comparison tells a difference.
my (undef, $changed) = install_and_dump(undef,
	q{COMMENT ON FUNCTION inbox_try_claim(text, text) IS 'changed'});
ok($changed ne $fresh_dump, 'a changed comment makes the dumps differ');
my (undef, $again) = install_and_dump(undef);
ok($again eq $fresh_dump, 'and two fresh installs dump the same');

# The first line where A and B differ, for the diagnostics.
sub first_difference
{
	my ($a, $b) = @_;
	my @a = split /\n/, $a;
	my @b = split /\n/, $b;
	for my $i (0 .. ($#a > $#b ? $#a : $#b))
	{
		my ($x, $y) = ($a[$i] // '(end)', $b[$i] // '(end)');
		return "line " . ($i + 1) . ":\n  updated: $x\n  fresh:   $y" if $x ne $y;
	}
	return 'no line differs';
}

$node->stop;
done_testing();

# Copies of a database do not publish its pending events again.
#
# A database's outbox records the server (system identifier) and the
# database (OID) it publishes for.  50 events wait in "shop" while its relay
# is kept away; then, with every relay running and the same Kafka for all:
#
# 1. pg_restore of a custom dump into "shop2" (and, in one transaction,
#    "shop3") on the same server, and psql of a plain dump into "shop" on
#    a second server: the copies' relays pause, saying so in relay_status
#    and once in the log, while the original delivers its 50.  The
#    relays run during the restores and start at each copy's CREATE
#    EXTENSION, before the events are loaded.
# 2. CREATE DATABASE ... TEMPLATE: the copy pauses.
# 3. The copies of 1 are adopted: with discard_pending, the copied events
#    are deleted unsent; without, they are published.  Each event id is
#    counted in Kafka.
# 4. Logical replication: a publication of the application's schema leaves
#    the outbox alone, and the subscriber publishes nothing of the
#    publisher's; a FOR ALL TABLES publication replicates the outbox, and
#    the subscriber's relay pauses for as long as the subscription lists
#    it, and refuses to be adopted meanwhile.
# 5. pg_upgrade keeps the database's OID and gives the cluster a new
#    system identifier: the relay pauses until adopted.
use strict;
use warnings;

use InboxOutbox::Kafka;
use InboxOutbox::MockCluster;
use InboxOutbox::Relay;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $paused = 'paused: copy of another database';
my $mc = InboxOutbox::MockCluster->new(brokers => 1,
	topics => [ 'copies:2', 'tmpl:1', 'repl:2' ]);
my $boot = $mc->bootstrap;

# How many times each event id is in a topic, once at least $min messages
# are there (or a minute has passed).
sub arrivals
{
	my ($topic, $min) = @_;
	my %n;
	$n{ $_->{headers}{event_id} // '(none)' }++
	  for @{ InboxOutbox::Kafka::kcat_consume($boot, $topic, min => $min // 0) };
	return \%n;
}

sub wait_state
{
	my ($node, $db, $state) = @_;
	$node->poll_query_until($db,
		"SELECT state = '$state' FROM inbox_outbox.relay_status")
	  or die "relay of $db did not reach state \"$state\": "
	  . $node->safe_psql($db, 'SELECT state, last_error FROM inbox_outbox.relay_status');
}

sub set_databases
{
	my ($node, $list) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET inbox_outbox.databases = '$list'; SELECT pg_reload_conf();");
}

sub status
{
	my ($node, $db) = @_;
	return $node->safe_psql($db,
		'SELECT pending, published FROM inbox_outbox.relay_status');
}

sub last_error
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, 'SELECT last_error FROM inbox_outbox.relay_status');
}

# The original: 50 events wait in shop, whose relay is kept away.
my $orig = relay_node('orig', $boot, no_extension => 1, conf => q{
wal_level = logical
max_wal_senders = 4
max_replication_slots = 4
inbox_outbox.databases = 'postgres'
});
$orig->safe_psql('postgres', 'CREATE DATABASE shop');
$orig->safe_psql('shop', q{
	CREATE EXTENSION inbox_outbox;
	CREATE TABLE ev (id ulid PRIMARY KEY, n int);
	INSERT INTO ev SELECT outbox_publish('copies', 'k' || g % 5, 'event ' || g), g
	FROM generate_series(1, 50) g;
});
my @ids = split /\n/, $orig->safe_psql('shop', 'SELECT id FROM ev ORDER BY n');
is(scalar(@ids), 50, '50 events wait in shop');

my $dump = "$PostgreSQL::Test::Utils::tmp_check/shop.dump";
my $plain = "$PostgreSQL::Test::Utils::tmp_check/shop.sql";
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $orig->connstr('shop') ],
	'custom dump of shop');
command_ok([ 'pg_dump', '-f', $plain, '-d', $orig->connstr('shop') ],
	'plain dump of shop');

# 1. Restores, with every relay running: each copy's relay starts at its
# CREATE EXTENSION, before the events are loaded.
set_databases($orig, '');
$orig->safe_psql('postgres', 'CREATE DATABASE shop2');
command_ok([ 'pg_restore', '-d', $orig->connstr('shop2'), $dump ],
	'pg_restore into shop2 on the same server');
$orig->safe_psql('postgres', 'CREATE DATABASE shop3');
command_ok([ 'pg_restore', '--single-transaction', '-d', $orig->connstr('shop3'), $dump ],
	'pg_restore --single-transaction into shop3');

my $other = relay_node('other', $boot, no_extension => 1, conf => q{
max_replication_slots = 4
});
$other->safe_psql('postgres', 'CREATE DATABASE shop');
command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $other->connstr('shop'), '-f', $plain ],
	'plain dump restored into shop on another server');

wait_outbox_empty($orig, 'shop', 'the original delivers');
wait_state($orig, 'shop2', $paused);
wait_state($orig, 'shop3', $paused);
wait_state($other, 'shop', $paused);
is(status($orig, 'shop2'), '50|0', 'the copy on the same server keeps its 50 events unsent');
is(status($orig, 'shop3'), '50|0', 'so does the one restored in a single transaction');
is(status($other, 'shop'), '50|0', 'the copy on another server keeps its 50 events unsent');
like(last_error($orig, 'shop2'), qr/^its outbox was copied from database "shop" \(OID \d+\)$/,
	'relay_status names the database it was copied from');
like(last_error($other, 'shop'),
	qr/^its outbox was recorded by another server \(system identifier \d+, database OID \d+\)/,
	'and, for the other server, the server it was recorded by');
is_deeply(arrivals('copies', 50), { map { $_ => 1 } @ids },
	'Kafka has each of the 50 events once: from the original only');
my $shop2_relay = relay_pid($orig, 'shop2');

# 2. CREATE DATABASE ... TEMPLATE, from a database whose relay is kept
# away (a connected relay keeps CREATE DATABASE from copying it).  The
# launcher finds the new database at its next rescan.
set_databases($orig, 'postgres, shop, shop2, shop3, tcopy');
$orig->safe_psql('postgres', 'CREATE DATABASE tsrc');
$orig->safe_psql('tsrc', q{
	CREATE EXTENSION inbox_outbox;
	SELECT outbox_publish('tmpl', 'k', 'template ' || g) FROM generate_series(1, 10) g;
});
$orig->safe_psql('postgres', 'CREATE DATABASE tcopy TEMPLATE tsrc');
wait_state($orig, 'tcopy', $paused);
like(last_error($orig, 'tcopy'), qr/^its outbox was copied from database "tsrc" \(OID \d+\)$/,
	'a template copy pauses, naming its template');
is(status($orig, 'tcopy'), '10|0', "and keeps the template's 10 events unsent");
is_deeply(arrivals('tmpl'), {}, 'nothing of the template reached Kafka');

# shop2 has been paused since section 1, through several poll intervals and
# a rescan of the launcher: the same relay, and one LOG line.
is(relay_pid($orig, 'shop2'), $shop2_relay, 'the paused relay did not restart');
my @said = slurp_file($orig->logfile) =~
  /(LOG:  inbox_outbox relay for database "shop2" cannot work: its outbox was copied from database "shop".*\n.*HINT:  To publish the copied events from this database, call SELECT inbox_outbox\.adopt_outbox\(\); to delete them unsent, call SELECT inbox_outbox\.adopt_outbox\(discard_pending => true\)\.)/g;
is(scalar(@said), 1, 'the pause is logged once, with what to call');

# 3. Adopt with discard_pending in one copy: its events are gone, unsent.
is($orig->safe_psql('shop2', 'SELECT * FROM inbox_outbox.adopt_outbox(discard_pending => true)'),
	'0|50', 'adopt_outbox(discard_pending => true) discards the 50 copied events');
wait_state($orig, 'shop2', 'idle');
is(status($orig, 'shop2'), '0|0', 'the adopted copy published none of them');

# Adopt without in the other: it publishes them.
is($other->safe_psql('shop', 'SELECT * FROM inbox_outbox.adopt_outbox()'),
	'50|0', 'adopt_outbox() keeps the 50 copied events');
wait_outbox_empty($other, 'shop', 'the adopted copy publishes');
is(status($other, 'shop'), '0|50', 'the adopted copy published them');

# An adopted copy publishes its own events as any database does.
my $own = $orig->safe_psql('shop2', q{SELECT outbox_publish('copies', 'k', 'own'::text)});
wait_outbox_empty($orig, 'shop2', 'an adopted copy publishes its own event');
is_deeply(arrivals('copies', 101), { (map { $_ => 2 } @ids), $own => 1 },
	'Kafka: each copied event twice (original, adopted copy), none from the discarded copy');

# An identity table emptied by hand: the relay records this database again
# and goes on.
$orig->safe_psql('shop', 'DELETE FROM inbox_outbox.database_identity');
my $after = $orig->safe_psql('shop', q{SELECT outbox_publish('copies', 'k', 'after delete'::text)});
wait_outbox_empty($orig, 'shop', 'an emptied identity table');
is( $orig->safe_psql('shop', q{
		SELECT count(*), bool_and(i.database_oid = d.oid AND i.system_identifier = c.system_identifier)
		FROM inbox_outbox.database_identity i, pg_database d, pg_control_system() c
		WHERE d.datname = current_database()}),
	'1|t', 'an emptied identity table gets this database again, and events flow');

# An identity table altered by hand (a NOT NULL dropped) checks nothing:
# the relay pauses, naming the column, and goes on once it is restored.
$orig->safe_psql('shop',
	'ALTER TABLE inbox_outbox.database_identity ALTER COLUMN database_oid DROP NOT NULL');
my $altered = $orig->safe_psql('shop', q{SELECT outbox_publish('copies', 'k', 'altered'::text)});
wait_state($orig, 'shop', $paused);
is( last_error($orig, 'shop'),
	'column "database_oid" of table inbox_outbox.database_identity is missing, nullable or not of type oid',
	'an identity table altered by hand pauses the relay, naming the column');
is($orig->safe_psql('shop', 'SELECT pending FROM inbox_outbox.relay_status'), '1',
	'and its event waits');
$orig->safe_psql('shop',
	'ALTER TABLE inbox_outbox.database_identity ALTER COLUMN database_oid SET NOT NULL');
wait_outbox_empty($orig, 'shop', 'the identity table restored');

# 4. Logical replication, from pubdb on the first server (its relay held
# back, as a slow relay would be) to the second.
$orig->safe_psql('postgres', 'CREATE DATABASE pubdb');
$orig->safe_psql('pubdb', q{
	CREATE EXTENSION inbox_outbox;
	CREATE TABLE ev (id ulid PRIMARY KEY, n int);
	CREATE PUBLICATION app FOR TABLES IN SCHEMA public;
	CREATE PUBLICATION everything FOR ALL TABLES;
});
my $pubconn = 'host=' . $orig->host . ' port=' . $orig->port . ' dbname=pubdb';
foreach my $sub ([ 'sub_app', 'app' ], [ 'sub_all', 'everything' ])
{
	my ($db, $publication) = @$sub;
	$other->safe_psql('postgres', "CREATE DATABASE $db");
	$other->safe_psql($db, qq{
		CREATE EXTENSION inbox_outbox;
		CREATE TABLE ev (id ulid PRIMARY KEY, n int);
		CREATE SUBSCRIPTION $db CONNECTION '$pubconn' PUBLICATION $publication;
	});
}
wait_state($other, 'sub_all', $paused);
is(last_error($other, 'sub_all'),
	'subscription "sub_all" replicates inbox_outbox.outbox into this database',
	'FOR ALL TABLES: the subscriber pauses, naming the subscription');

$orig->safe_psql('pubdb', q{
	INSERT INTO ev SELECT outbox_publish('repl', 'k' || g % 3, 'replicated ' || g), g
	FROM generate_series(1, 20) g;
});
my @repl = split /\n/, $orig->safe_psql('pubdb', 'SELECT id FROM ev ORDER BY n');
foreach my $db ('sub_app', 'sub_all')
{
	$other->poll_query_until($db, 'SELECT count(*) = 20 FROM ev')
	  or die "the application's rows did not reach $db";
}
pass("the application's rows replicate to both subscribers");
$other->poll_query_until('sub_all', 'SELECT count(*) = 20 FROM inbox_outbox.outbox')
  or die 'the outbox did not replicate';
is(status($other, 'sub_all'), '20|0',
	"FOR ALL TABLES replicates the publisher's pending events; the paused subscriber sends none");
is($other->safe_psql('sub_app', 'SELECT state, pending, published FROM inbox_outbox.relay_status'),
	'idle|0|0', 'a publication of the application schema leaves the outbox out');

my ($ret, $out, $err) = $other->psql('sub_all', 'SELECT * FROM inbox_outbox.adopt_outbox()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: cannot adopt the outbox while subscription "sub_all" replicates it/,
	'adopting a subscribed outbox is refused');

# The publisher's relay delivers; its deletes replicate.
set_databases($orig, 'postgres, shop, shop2, shop3, tcopy, pubdb');
wait_outbox_empty($orig, 'pubdb', 'the publisher delivers');
$other->poll_query_until('sub_all', 'SELECT count(*) = 0 FROM inbox_outbox.outbox')
  or die 'the deletes did not replicate';
is_deeply(arrivals('repl', 20), { map { $_ => 1 } @repl },
	'Kafka has each replicated event once: from the publisher only');
is(status($other, 'sub_all'), '0|0', 'the subscriber published nothing');

# database_identity has a replica identity, so the publisher can adopt
# (delete its rows) while FOR ALL TABLES publishes the table.
is($orig->safe_psql('pubdb', 'SELECT * FROM inbox_outbox.adopt_outbox()'), '0|0',
	'a publisher of FOR ALL TABLES can adopt its outbox');

# Without the subscription, what stays is a copy of the publisher's
# identity: the reason changes, and the former subscriber can be adopted.
$other->safe_psql('sub_all', 'DROP SUBSCRIPTION sub_all');
$other->poll_query_until('sub_all',
	q{SELECT last_error LIKE 'its outbox was recorded by another server%' FROM inbox_outbox.relay_status})
  or die 'the reason did not change';
is($other->safe_psql('sub_all', 'SELECT state FROM inbox_outbox.relay_status'), $paused,
	'once the subscription is dropped, the copied identity still pauses the relay');
is($other->safe_psql('sub_all', 'SELECT * FROM inbox_outbox.adopt_outbox()'), '0|0',
	'and the former subscriber can be adopted');
wait_state($other, 'sub_all', 'idle');

$other->safe_psql('sub_app', 'DROP SUBSCRIPTION sub_app');

# 5. pg_upgrade of the second server, with 5 events waiting in its shop.
set_databases($other, 'postgres');
$other->poll_query_until('shop', 'SELECT pid IS NULL FROM inbox_outbox.relay_status')
  or die 'the relay of shop did not stop';
my @kept = split /\n/, $other->safe_psql('shop',
	q{SELECT outbox_publish('copies', 'k', 'upgrade ' || g) FROM generate_series(1, 5) g});
my $shop_oid = $other->safe_psql('shop', 'SELECT oid FROM pg_database WHERE datname = current_database()');
$other->stop;

my $upgraded = PostgreSQL::Test::Cluster->new('upgraded');
$upgraded->init;
$upgraded->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'inbox_outbox'
max_worker_processes = 16
inbox_outbox.brokers = '$boot'
inbox_outbox.poll_interval = '1s'
});
my $bindir = $other->config_data('--bindir');
chdir $PostgreSQL::Test::Utils::tmp_check;    # pg_upgrade writes a script here
command_ok(
	[
		'pg_upgrade', '--no-sync', '-b', $bindir, '-B', $bindir,
		'-d', $other->data_dir, '-D', $upgraded->data_dir,
		'-p', $other->port, '-P', $upgraded->port, '-s', $upgraded->host
	],
	'pg_upgrade of the second server');
$upgraded->start;
wait_state($upgraded, 'shop', $paused);
like(last_error($upgraded, 'shop'),
	qr/^its outbox was recorded by another server \(system identifier \d+, database OID $shop_oid\): a restore from elsewhere, or pg_upgrade$/,
	'after pg_upgrade the relay pauses: same database OID, new system identifier');
is(status($upgraded, 'shop'), '5|0', 'and keeps the 5 events unsent');
is($upgraded->safe_psql('shop', 'SELECT * FROM inbox_outbox.adopt_outbox()'), '5|0',
	'adopt_outbox() after pg_upgrade');
wait_outbox_empty($upgraded, 'shop', 'adopted after pg_upgrade');
is_deeply(arrivals('copies', 108),
	{ (map { $_ => 2 } @ids), (map { $_ => 1 } $own, $after, $altered, @kept) },
	'Kafka, in the end: every event of the original once, the 50 copied ones once more from the adopted copy, the 5 upgraded ones once');

$upgraded->stop;
$orig->stop;
$mc->stop;
done_testing();

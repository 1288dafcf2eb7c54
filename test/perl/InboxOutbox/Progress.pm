# The progress record of exactly-once mode, decoded for the TAP tests: the
# format of docs/exactly_once.md, section 3, read independently of
# src/progress_record.c, with the same checks, so that a test can say which
# ids a committed round listed.  Ids come out as the ulid type prints them
# (src/ulid_text.c): 26 upper-case Crockford base32 digits, the first
# carrying the top three bits.
package InboxOutbox::Progress;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(decode_progress_record);

my $header_len = 4 + 1 + 1 + 8 + 4 + 8 + 8 + 4;
my @digits = split //, '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

# The text of a 16-byte id: its 128 bits, two zero bits in front, read
# five at a time.
sub ulid_text
{
	my ($bytes) = @_;
	my $bits = '00' . unpack('B128', $bytes);
	return join '', map { $digits[ oct('0b' . $_) ] } unpack('(A5)26', $bits);
}

# A hashref {system_identifier, database, writer, round, ids => [text]};
# dies, saying why, on anything the relay's decoder refuses.  The 64-bit
# fields are unsigned decimal numbers (this needs a Perl with 64-bit
# integers, as Debian's is).
sub decode_progress_record
{
	my ($record) = @_;
	die "progress record: undefined\n" unless defined $record;
	die "progress record: not a byte string\n" if utf8::is_utf8($record);

	my $len = length $record;
	die "progress record: $len bytes, shorter than its header\n"
	  if $len < $header_len;
	my ($magic, $version, $flags, $sysid, $database, $writer, $round, $n) =
	  unpack('a4 C C Q> N Q> Q> N', $record);
	die "progress record: does not start with \"IOXP\"\n"
	  unless $magic eq 'IOXP';
	die "progress record: unknown format version $version\n"
	  unless $version == 1;
	die "progress record: unknown flag bits $flags\n" unless $flags == 0;

	my @ids;
	my $prev;
	my $pos = $header_len;
	for my $i (0 .. $n - 1)
	{
		die "progress record: ends inside id $i\n" if $pos >= $len;
		my $s = ord substr($record, $pos++, 1);
		die "progress record: shared-prefix length $s above 15 at id $i\n"
		  if $s > 15;
		die "progress record: first id has shared-prefix length $s\n"
		  if $i == 0 && $s != 0;
		die "progress record: ends inside id $i\n"
		  if $pos + 16 - $s > $len;
		my $id = ($s ? substr($prev, 0, $s) : '')
		  . substr($record, $pos, 16 - $s);
		$pos += 16 - $s;
		if ($i > 0)
		{
			my $cmp = substr($id, $s, 1) cmp substr($prev, $s, 1);
			die "progress record: id $i shares more than $s leading bytes "
			  . "with the one before it\n"
			  if $cmp == 0;
			die "progress record: ids not in ascending order at id $i\n"
			  if $cmp < 0;
		}
		push @ids, ulid_text($id);
		$prev = $id;
	}
	die "progress record: " . ($len - $pos) . " bytes after the last id\n"
	  if $pos != $len;

	return {
		system_identifier => $sysid,
		database => $database,
		writer => $writer,
		round => $round,
		ids => \@ids,
	};
}

1;

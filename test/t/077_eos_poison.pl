# Poison rows inside Kafka transactions: 022_relay_poison.pl again, with
# inbox_outbox.delivery = 'exactly_once'.  Oversize, unsendable and
# broker-refused rows end in the dead-letter table as in at-least-once
# mode, the other keys are not held back, and what arrives arrives once.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;

# Loaded here, at compile time: their INIT blocks (the test's temporary
# directory, the port lock directory) do not run for modules that 022
# would load at run time.
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

$ENV{INBOX_OUTBOX_TEST_DELIVERY} = 'exactly_once';
# do() of a relative path searches @INC, which holds no '.'
my $file = File::Spec->rel2abs(dirname(__FILE__) . '/022_relay_poison.pl');
my $done = do $file;
die "$file: $@" if $@;
die "$file: $!" unless defined $done;

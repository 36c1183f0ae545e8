# Exactly once across a crash-restart of the whole server: as
# t/052_orders_exactly_once.pl (same parameters), but the kill is a kill -9
# of a client backend in the middle of the run: the postmaster restarts
# every process, the sender included, and runs crash recovery.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use OrderTest;

OrderTest::exactly_once_test(kill => 'backend', kills => 1);

done_testing();

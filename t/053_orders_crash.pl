# Exactly once across a crash-restart of the whole server: as
# t/052_orders_exactly_once.pl, but the kills are kill -9 of a client
# backend in the middle of the run (the postmaster then restarts every
# process, the sender included, and runs crash recovery).  Same parameters
# (TRADING_ORDERS_N, default 200; TRADING_ORDERS_KILLS, default 1 here).
use strict;
use warnings;
use FindBin;

$ENV{TRADING_ORDERS_KILL} = 'backend';
$ENV{TRADING_ORDERS_KILLS} //= 1;
do "$FindBin::RealBin/052_orders_exactly_once.pl" or die($@ || $!);

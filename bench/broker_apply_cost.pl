# What one polled response costs the database: 1.0's mapping (a temporary
# table created, filled, merged and dropped per response) against 1.1's
# (validated, merged straight from jsonb).  The same orders response (N
# orders, unchanged after the first apply: the steady state of polling) is
# applied R times, one transaction each, in a 1.0 install and in a 1.1
# install (two servers of the same build); printed per response: WAL bytes, catalog
# rows inserted and deleted (pg_class, pg_attribute, pg_type, pg_depend),
# and time, with the ratios 1.0 / 1.1.  A benchmark: it only fails if it
# cannot measure.
#
#   DEV_DIR=/var/tmp/dev-x scripts/dev-check.sh tapcheck \
#       PROVE_TESTS=bench/broker_apply_cost.pl PROVE_FLAGS="-I t/lib -v"
#   (APPLY_ORDERS=N orders per response, default 50; APPLY_ROUNDS=R, default 300)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use JSON::PP;
use Time::HiRes qw(time);
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $n = $ENV{APPLY_ORDERS} // 50;
my $rounds = $ENV{APPLY_ROUNDS} // 300;
my @orders = map {
	{ order_id => "10000000$_", status => 'OPEN', exchange => 'NSE', tradingsymbol => "SYM$_",
	  instrument_token => 1000 + $_, order_type => 'LIMIT', transaction_type => 'BUY',
	  validity => 'DAY', product => 'CNC', quantity => 10, price => 100.5, average_price => 0,
	  filled_quantity => 0, pending_quantity => 10, cancelled_quantity => 0, tag => 'bench',
	  tags => ['bench'], order_timestamp => '2026-11-27 09:15:00', exchange_timestamp => '2026-11-27 09:15:01',
	  placed_by => 'AB1234', meta => {} }
} 1 .. $n;
my $body = JSON::PP->new->canonical->encode({ status => 'success', data => \@orders });
(my $lit = $body) =~ s/'/''/g;

my %r;
for my $v ('1.0', '1.1')
{
	my $db = 'postgres';
	(my $name = "applycost$v") =~ s/\.//;
	my $node = TradingTest::node($name, create_extension => 0);
	$node->safe_psql($db, "CREATE EXTENSION trading VERSION '$v'");
	my $call = "SELECT count(*) FROM trading._apply_response('orders', '$lit');\n";
	$node->safe_psql($db, $call);    # first apply: inserts; then unchanged
	my $stats = q{SELECT pg_stat_force_next_flush();
		SELECT coalesce(sum(n_tup_ins), 0) || ' ' || coalesce(sum(n_tup_del), 0)
		FROM pg_stat_sys_tables WHERE relname IN ('pg_class', 'pg_attribute', 'pg_type', 'pg_depend')};
	my ($ins0, $del0) = split / /, (split /\n/, $node->safe_psql($db, $stats))[-1];
	my $lsn0 = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
	my $t0 = time;
	$node->safe_psql($db, $call x $rounds);    # one transaction per statement
	my $secs = time - $t0;
	my $lsn1 = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
	sleep 1;
	my ($ins1, $del1) = split / /, (split /\n/, $node->safe_psql($db, $stats))[-1];
	my $wal = $node->safe_psql($db, "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')");
	$r{$v} = { wal => $wal / $rounds, ins => ($ins1 - $ins0) / $rounds,
		del => ($del1 - $del0) / $rounds, ms => 1000 * $secs / $rounds };
	diag(sprintf("%s: per response of %d unchanged orders: %.0f WAL bytes, %.1f catalog rows inserted, %.1f deleted, %.2f ms",
		$v, $n, @{ $r{$v} }{qw(wal ins del ms)}));
	$node->stop;
}
diag(sprintf("ratio 1.0/1.1: WAL %.1fx, catalog rows %s, time %.2fx",
	$r{'1.0'}{wal} / ($r{'1.1'}{wal} || 1),
	($r{'1.1'}{ins} + $r{'1.1'}{del}) ? sprintf('%.1fx', ($r{'1.0'}{ins} + $r{'1.0'}{del}) / ($r{'1.1'}{ins} + $r{'1.1'}{del})) : 'all (1.1 writes none)',
	$r{'1.0'}{ms} / $r{'1.1'}{ms}));
ok($r{'1.0'}{ms} > 0 && $r{'1.1'}{ms} > 0, 'measured');
done_testing();

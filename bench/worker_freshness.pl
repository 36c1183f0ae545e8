# Freshness of trading.orders: how long after a fill at the paper broker the
# order is committed in the table, against the target "its poll interval
# plus 100 ms".  Orders are placed at random points of the poll cycle; the
# time seen is the commit timestamp of the row (track_commit_timestamp),
# the fill time is when the broker answered the placement (a MARKET order
# fills while it is placed).  Prints the distribution; it is a benchmark,
# not a test: it only fails if it cannot measure.
#
#   DEV_DIR=/var/tmp/dev-x scripts/dev-check.sh tapcheck \
#       PROVE_TESTS=bench/worker_freshness.pl PROVE_FLAGS="-I t/lib -v"
#   (FRESHNESS_ORDERS=N orders per interval, default 40)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $n = $ENV{FRESHNESS_ORDERS} // 40;
my $pb = PaperBroker->start(args => [ '--cash', 1e9 ]);
my $node = WorkerTest::node('fresh', $pb, conf => "track_commit_timestamp = on\n");
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1000);

for my $interval (1000, 300)
{
	$node->safe_psql('postgres', "UPDATE trading.poll_intervals SET interval_ms = $interval WHERE endpoint = 'orders'");
	sleep 2;
	my @lat;
	my %placed;
	for my $i (1 .. $n)
	{
		sleep(rand($interval / 1000));
		my $id = $pb->place(tradingsymbol => 'INFY', transaction_type => ($i % 2 ? 'BUY' : 'SELL'), quantity => 1);
		$placed{$id} = time();
	}
	my $ids = join(',', map { "'$_'" } keys %placed);
	$node->poll_query_until('postgres', "SELECT count(*) = $n FROM trading.orders WHERE order_id IN ($ids)")
	  or die "orders did not arrive";
	for my $row (split /\n/, $node->safe_psql('postgres',
			"SELECT order_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM trading.orders
			  WHERE order_id IN ($ids) AND status = 'COMPLETE'"))
	{
		my ($id, $seen) = split /\|/, $row;
		push @lat, ($seen - $placed{$id}) * 1000;
	}
	@lat = sort { $a <=> $b } @lat;
	my $within = grep { $_ <= $interval + 100 } @lat;
	my $p = sub { $lat[ int($_[0] * $#lat) ] };
	diag(sprintf("orders every %d ms: %d orders; fill -> committed in trading.orders (ms): min %.1f p50 %.1f p90 %.1f p99 %.1f max %.1f; within interval + 100 ms: %d/%d",
		$interval, scalar(@lat), $lat[0], $p->(0.5), $p->(0.9), $p->(0.99), $lat[-1], $within, scalar(@lat)));
	ok(@lat == $n, "measured $n orders at $interval ms");
}

$node->stop;
$pb->stop;
done_testing();

# A burst of queued placements drains at exactly the allowed rate with zero
# 429s from the broker, and polling goes on meanwhile (docs/ORDERS.md):
# the paper broker enforces the same limits as trading.rate_limits, one
# statement queues the whole burst, and the sender's sent_at times give
# the drain rate.
#
# Parameters: TRADING_BURST_STRICT=1 (also check the drain rate is at
# least 95% of the limit), TRADING_BURST_N (orders, default 240), TRADING_BURST_PER_S
# (kite.orders per second, default 20), TRADING_BURST_PER_MIN (per minute,
# default 0 = no minute window).  The acceptance run is N=1000 with Kite's
# own 10/s and 200/min (about five minutes).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my $n = $ENV{TRADING_BURST_N} // 240;
my $per_s = $ENV{TRADING_BURST_PER_S} // 20;
my $per_min = $ENV{TRADING_BURST_PER_MIN} // 0;

my ($node, $b) = OrderTest::setup('burst', ratelimit => 1,
	broker_args => [ '--rate-orders', $per_s, '--rate-orders-min', ($per_min || 100000),
		'--rate-orders-day', 100000 ],
	conf => "trading.order_market_validity = '1h'\n");
$node->safe_psql('postgres', qq{
	DELETE FROM trading.rate_limits WHERE endpoint = 'kite.orders';
	INSERT INTO trading.rate_limits (endpoint, requests, per) VALUES ('kite.orders', $per_s, interval '1 second');
} . ($per_min ? "INSERT INTO trading.rate_limits (endpoint, requests, per) VALUES ('kite.orders', $per_min, interval '1 minute');" : ''));
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status WHERE endpoint IN ('orders', 'positions')"),
	'the broker worker polls');

my $start = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres', qq{
	SET ROLE regress_trader;
	INSERT INTO trading.order_requests (exchange, tradingsymbol, transaction_type, quantity, strategy)
	SELECT 'NSE', 'INFY', CASE WHEN i % 2 = 0 THEN 'BUY' ELSE 'SELL' END, 1, 'burst'
	  FROM generate_series(1, $n) i;
});
# halfway: polling still happens
$node->poll_query_until('postgres', "SELECT count(*) >= $n / 2 FROM trading.order_requests WHERE state = 'placed'");
my $mid = $node->safe_psql('postgres', 'SELECT now()');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success > '$mid') FROM trading.worker_status WHERE endpoint IN ('orders', 'positions')"),
	'orders and positions are polled during the burst');
ok(OrderTest::wait_final($node, 10 + 3 * $n / $per_s + ($per_min ? 60 * $n / $per_min : 0)), 'the burst drained');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT state, ',') FROM trading.order_requests WHERE strategy = 'burst'"),
	'placed', 'every order placed');
is($node->safe_psql('postgres', "SELECT max(attempts) FROM trading.order_requests WHERE strategy = 'burst'"),
	'1', 'each in one attempt');
my $st = $b->stats;
is($st->{rate_limited}{order} // 0, 0, 'the broker refused no placement (zero 429s)');
is($st->{rate_limited}{other} // 0, 0, 'nor any other request');

# the drain rate over the steady part (the first window holds a burst of
# per_s, or per_min, grants, as a sliding window allows)
my $skip = $per_min || $per_s;
my ($span, $cnt) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT extract(epoch FROM max(sent_at) - min(sent_at)), count(*) - 1
	  FROM (SELECT sent_at FROM trading.order_requests WHERE strategy = 'burst'
	         ORDER BY sent_at OFFSET $skip) s});
my $rate = $cnt / $span;
my $allowed = $per_min ? ($per_min / 60 < $per_s ? $per_min / 60 : $per_s) : $per_s;
note(sprintf("%d orders after the first %d drained at %.2f/s; the limit allows %.2f/s", $cnt + 1, $skip, $rate, $allowed));
cmp_ok($rate, '<=', $allowed * 1.05, 'the drain rate never exceeds the limit (by more than the 5% of measuring)');
# how close to the limit it drains depends on the machine: the sender
# widens its margin by how late requests leave after their grant, so a
# loaded machine drains more slowly rather than ever causing a 429.  The
# acceptance run checks the lower bound (TRADING_BURST_STRICT=1).
if ($ENV{TRADING_BURST_STRICT})
{
	cmp_ok($rate, '>=', $allowed * 0.95, 'the drain rate is within 5% of the limit');
}
is(join("\n", OrderTest::audit($node, $b)), '', 'requests and broker agree');

done_testing();

# An order placed through the outbox (trading.place_order, the order
# sender) is seen filled in trading.orders through the ticker's order
# updates, before the broker worker polls GET /orders again (its interval
# is a minute here: the test checks that no poll happened in between).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TickerTest;
use Time::HiRes qw(time);

my $b = TickerTest::broker(ws => [ '--cash', 1e12 ]);
my $node = TickerTest::node('outbox', $b);
$node->safe_psql('postgres', q{
	CREATE ROLE regress_trader LOGIN IN ROLE trading_trader;
	UPDATE trading.poll_intervals SET enabled = true, interval_ms = 60000 WHERE endpoint = 'orders';
});
TickerTest::watch($node, 'NSE:INFY' => 'ltp');
ok(TickerTest::wait_for($node, q{SELECT state = 'connected' FROM trading.ticker_status
	WHERE connection = 1}, 30), 'the ticker is connected');
# the broker worker's first poll of the orders, then a minute until the next
ok(TickerTest::wait_for($node, q{SELECT last_success IS NOT NULL FROM trading.worker_status
	WHERE endpoint = 'orders'}, 30), 'orders polled once');
my $polls = $node->safe_psql('postgres',
	q{SELECT requests_total FROM trading.worker_status WHERE endpoint = 'orders'});

my $t0 = time;
my $id = $node->safe_psql('postgres', q{SELECT trading.place_order('NSE', 'INFY', 'BUY', 7)},
	extra_params => [ '-U', 'regress_trader' ]);
ok(TickerTest::wait_for($node, qq{
	SELECT coalesce(bool_and(o.status = 'COMPLETE' AND o.filled_quantity = 7), false)
	FROM trading.order_requests r JOIN trading.orders o USING (order_id) WHERE r.id = $id}, 30),
	'the order placed through the outbox is COMPLETE in trading.orders');
my $seen = time - $t0;
is($node->safe_psql('postgres',
		q{SELECT requests_total FROM trading.worker_status WHERE endpoint = 'orders'}),
	$polls, 'seen through the stream: GET /orders was not polled meanwhile');
note(sprintf('place_order to COMPLETE in trading.orders: %.2f s (next poll due after 60 s)', $seen));
is($node->safe_psql('postgres', qq{SELECT broker_status FROM trading.order_book WHERE id = $id}),
	'COMPLETE', 'order_book shows the fill');
cmp_ok($node->safe_psql('postgres', 'SELECT order_updates FROM trading.ticker_stats'), '>', 0,
	'the update came from the ticker');

$node->stop;
$b->stop;
done_testing();

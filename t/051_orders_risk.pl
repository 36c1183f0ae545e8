# Pre-trade risk (docs/ORDERS.md, "Risk checks"): each limit, each
# instrument and Kite rule refused with its SQLSTATE and a hint in the
# caller's transaction, and nothing reaches the broker; the check again
# before sending; the kill switch in both modes with and without
# cancel_open; the daily-loss trip; the dead man's switch; a standby
# refusing with 25006 and the primary hint.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my ($node, $b) = OrderTest::setup('risk', conf => "trading.primary_hint = 'rw.example:5000'\n",
	init => { allows_streaming => 1 });
my $T = "SET ROLE regress_trader;";
my $A = "SET ROLE regress_admin;";

sub sq { return $node->safe_psql('postgres', $_[0]); }

# the SQLSTATE and hint of a statement that must fail
sub refused
{
	my ($sql, $state, $name) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$T $sql");
	like($err, qr/ERROR:  $state:/, "$name: $state");
	like($err, qr/HINT:/, "$name: with a hint") if $state =~ /^TR/;
	return $err;
}

my $before = scalar keys %{ OrderTest::broker_tags($b) };

# ---- instrument and Kite rules ----
sq("INSERT INTO trading.instruments (instrument_token, tradingsymbol, exchange, tick_size, lot_size, segment)
    VALUES (1001, 'NIFTY26JANFUT', 'NFO', 0.1, 75, 'NFO-FUT')");
sq("INSERT INTO trading.freeze_quantities VALUES ('NFO', 'NIFTY26JANFUT', 1800)");
my $err = refused("SELECT trading.place_order('NSE', 'NOSUCH', 'BUY', 1)", 'TR609', 'unknown instrument');
like($err, qr/trading\.instruments/, 'the hint names trading.instruments');
refused("SELECT trading.place_order('NFO', 'NIFTY26JANFUT', 'BUY', 100)", 'TR610', 'lot size');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, 'LIMIT', price => 1500.03)", 'TR611', 'tick size');
refused("SELECT trading.place_order('NFO', 'NIFTY26JANFUT', 'BUY', 1875, product => 'NRML')", 'TR612',
	'freeze quantity');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, 'LIMIT')", 'TR614', 'LIMIT without a price');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, 'SL', price => 1500)", 'TR614',
	'SL without a trigger');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, 'SL-M')", 'TR614', 'SL-M without a trigger');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, market_protection => 0)", 'TR614',
	'market_protection 0');
refused("SELECT trading.place_order('NSE', 'INFY', 'HOLD', 1)", '23514', 'bad transaction_type');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', NULL)", '22004', 'missing quantity');
refused("SELECT trading.cancel_order('999')", 'TR615', 'cancel of an unknown order');

# ---- Kite: at most 25 modifications per order; a closed order cannot change ----
my $rest0 = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, 'LIMIT', price => 1.00)");
OrderTest::wait_final($node, 30);
my $rest0_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $rest0");
sq("$T SELECT trading.modify_order('$rest0_oid', price => " . (1 + $_ * 0.05) . ")") for 1 .. 25;
refused("SELECT trading.modify_order('$rest0_oid', price => 3.00)", 'TR613', 'the 26th modification');
OrderTest::wait_final($node, 60);
is(sq("SELECT count(*) FROM trading.order_requests WHERE kind = 'modify' AND order_id = '$rest0_oid' AND state = 'placed'"),
	'25', 'the 25 modifications were carried out');
sq("$T SELECT trading.cancel_order('$rest0_oid')");
OrderTest::wait_final($node, 30);
ok($node->poll_query_until('postgres', "SELECT status = 'CANCELLED' FROM trading.orders WHERE order_id = '$rest0_oid'"),
	'cancelled at the broker, seen by the broker worker');
refused("SELECT trading.cancel_order('$rest0_oid')", 'TR616', 'a cancelled order cannot be cancelled again');

# ---- limits ----
sq("$A INSERT INTO trading.risk_limits (scope, key, max_order_quantity) VALUES ('global', '', 100)");
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 101)", 'TR603', 'global max quantity');
sq("$A UPDATE trading.risk_limits SET max_order_quantity = NULL, max_order_value = 10000 WHERE scope = 'global'");
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 10, 'LIMIT', price => 1500)", 'TR604', 'max order value');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)", 'TR605', 'market order without a fresh price');
sq("INSERT INTO trading.watchlist (instrument) VALUES ('NSE:INFY')");
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
ok($node->poll_query_until('postgres',
	"SELECT last_price = 1500 FROM trading.quotes WHERE instrument = 'NSE:INFY'"), 'INFY quoted');
refused("SELECT trading.place_order('NSE', 'INFY', 'BUY', 7)", 'TR604', 'market order valued at the last price');
my $ok = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 6)");
ok($ok, 'within the value limit: accepted');
sq("$A DELETE FROM trading.risk_limits");

sq("$A INSERT INTO trading.risk_limits (scope, key, max_position) VALUES ('instrument', 'NSE:SBIN', 10)");
my $rest = sq("$T SELECT trading.place_order('NSE', 'SBIN', 'BUY', 6, 'LIMIT', price => 1.00)");
refused("SELECT trading.place_order('NSE', 'SBIN', 'BUY', 5)", 'TR606', 'max position counts queued and open orders');
OrderTest::wait_final($node, 30);
my $rest_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $rest");
sq("$T SELECT trading.cancel_order('$rest_oid')");
OrderTest::wait_final($node, 30);
ok($node->poll_query_until('postgres', "SELECT status = 'CANCELLED' FROM trading.orders WHERE order_id = '$rest_oid'"),
	'cancelled');
sq("$T SELECT trading.place_order('NSE', 'SBIN', 'BUY', 6)");
OrderTest::wait_final($node, 30);
ok($node->poll_query_until('postgres',
	"SELECT sum(quantity) = 6 FROM trading.positions WHERE kind = 'net' AND tradingsymbol = 'SBIN'"),
	'the position is polled');
refused("SELECT trading.place_order('NSE', 'SBIN', 'BUY', 5)", 'TR606', 'max position counts the position');
refused("SELECT trading.place_order('NSE', 'SBIN', 'SELL', 17)", 'TR606', 'max position on the short side');
sq("$A UPDATE trading.risk_limits SET max_position = 3");
ok(sq("$T SELECT trading.place_order('NSE', 'SBIN', 'SELL', 2)"),
	'above the limit, an order that reduces the exposure passes');
sq("$A DELETE FROM trading.risk_limits");
OrderTest::wait_final($node, 30);

sq("$A INSERT INTO trading.risk_limits (scope, key, max_orders_per_minute) VALUES ('strategy', 'fast', 3)");
sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, strategy => 'fast') FROM generate_series(1, 3)");
refused("SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, strategy => 'fast')", 'TR607', 'orders per minute');
ok(sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, strategy => 'slow')"), 'another strategy passes');
sq("$A DELETE FROM trading.risk_limits");
OrderTest::wait_final($node, 30);

# the check runs again before sending: a limit added after the commit
my $late = sq(qq{
	BEGIN;
	SET LOCAL ROLE regress_trader;
	SELECT trading.place_order('NSE', 'TCS', 'BUY', 50);
	RESET ROLE;
	INSERT INTO trading.risk_limits (scope, key, max_order_quantity) VALUES ('instrument', 'NSE:TCS', 10);
	COMMIT;
});
$late = (split /\n/, $late)[0];
OrderTest::wait_final($node, 30);
is(sq("SELECT state || ' ' || error_type FROM trading.order_requests WHERE id = $late"), 'risk_rejected TR603',
	'the sender checks again before sending: risk_rejected');
sq("$A DELETE FROM trading.risk_limits");

is(scalar(grep { !/^TR/ } keys %{ OrderTest::broker_tags($b) }) + 0, 0, 'only tagged orders at the broker');
is(join("\n", OrderTest::audit($node, $b)), '', 'no refused request reached the broker');

# ---- kill switch: halt ----
my $open = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, 'LIMIT', price => 1.00)");
OrderTest::wait_final($node, 30);
my $open_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $open");
ok($node->poll_query_until('postgres', "SELECT status = 'OPEN' FROM trading.orders WHERE order_id = '$open_oid'"),
	'an open order');
my $queued = sq(qq{
	BEGIN;
	SET LOCAL ROLE regress_trader;
	SELECT trading.place_order('NSE', 'TCS', 'BUY', 1);
	SELECT trading.halt('runaway strategy');
	COMMIT;
});
$queued = (split /\n/, $queued)[0];
is(sq("SELECT state FROM trading.order_requests WHERE id = $queued"), 'halted', 'halt halts the queued requests');
is(sq("SELECT mode || ' ' || reason FROM trading.trading_state"), 'halt runaway strategy', 'trading_state says so');
refused("SELECT trading.place_order('NSE', 'TCS', 'BUY', 1)", 'TR601', 'halted: new orders refused');
is($b->order($open_oid)->{status}, 'OPEN', 'halt without cancel_open leaves open orders');
my $c = sq("$T SELECT trading.cancel_order('$open_oid')");
OrderTest::wait_final($node, 30);
is(sq("SELECT state FROM trading.order_requests WHERE id = $c"), 'placed', 'cancellations pass while halted');
($ok, my $o2, $err) = $node->psql('postgres', "$T SELECT trading.resume()");
like($err, qr/permission denied/, 'resume is for admins only');
sq("$A SELECT trading.resume()");
is(sq("SELECT mode FROM trading.trading_state"), 'active', 'resumed');

# halt with cancel_open
$open = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, 'LIMIT', price => 1.00)");
OrderTest::wait_final($node, 30);
$open_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $open");
$node->poll_query_until('postgres', "SELECT status = 'OPEN' FROM trading.orders WHERE order_id = '$open_oid'");
sq("$T SELECT trading.halt('flatten', cancel_open => true)");
OrderTest::wait_final($node, 30);
is($b->order($open_oid)->{status}, 'CANCELLED', 'halt with cancel_open cancels open orders at the broker');
sq("$A SELECT trading.resume()");

# reduce_only, with and without cancel_open
$open = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, 'LIMIT', price => 1.00)");
OrderTest::wait_final($node, 30);
$open_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $open");
$node->poll_query_until('postgres', "SELECT status = 'OPEN' FROM trading.orders WHERE order_id = '$open_oid'");
sq("$T SELECT trading.halt('reduce', 'reduce_only')");
is($b->order($open_oid)->{status}, 'OPEN', 'reduce_only without cancel_open leaves open orders');
refused("SELECT trading.place_order('NSE', 'SBIN', 'BUY', 1)", 'TR602', 'reduce_only: increasing refused');
my $sbin = sq("SELECT sum(quantity) FROM trading.positions WHERE kind = 'net' AND tradingsymbol = 'SBIN'");
my $red = sq("$T SELECT trading.place_order('NSE', 'SBIN', '" . ($sbin > 0 ? 'SELL' : 'BUY') . "', 1)");
OrderTest::wait_final($node, 30);
is(sq("SELECT state FROM trading.order_requests WHERE id = $red"), 'placed', 'reduce_only: a reducing order passes');
sq("$T SELECT trading.halt('reduce', 'reduce_only', cancel_open => true)");
OrderTest::wait_final($node, 30);
is($b->order($open_oid)->{status}, 'CANCELLED', 'reduce_only with cancel_open cancels open orders');
sq("$A SELECT trading.resume()");

# ---- daily loss trips the switch ----
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
my $big = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 100)");
OrderTest::wait_final($node, 30);
sq("$A INSERT INTO trading.risk_limits (scope, key, max_daily_loss) VALUES ('global', '', 20000)");
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1200);
ok($node->poll_query_until('postgres', "SELECT mode = 'halt' AND tripped_by_daily_loss FROM trading.trading_state"),
	'a loss beyond max_daily_loss trips the kill switch by itself');
refused("SELECT trading.place_order('NSE', 'TCS', 'BUY', 1)", 'TR601', 'then new orders are refused');
sq("$A DELETE FROM trading.risk_limits; SELECT trading.resume()");

# ---- dead man's switch ----
sq("$T SELECT trading.heartbeat('bot', '5 seconds')");
$open = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, 'LIMIT', price => 1.00, strategy => 'bot')");
OrderTest::wait_final($node, 30);
$open_oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $open");
$node->poll_query_until('postgres', "SELECT status = 'OPEN' FROM trading.orders WHERE order_id = '$open_oid'");
ok($node->poll_query_until('postgres', "SELECT 'bot' = ANY (lapsed_strategies) FROM trading.trading_state"),
	'the heartbeat lapses');
OrderTest::wait_final($node, 30);
is($b->order($open_oid)->{status}, 'CANCELLED', 'its open orders are cancelled');
refused("SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, strategy => 'bot')", 'TR620',
	'its new orders are refused');
sq("$T SELECT trading.heartbeat('bot', '1 hour')");
ok(sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1, strategy => 'bot')"), 'a new heartbeat re-arms it');
OrderTest::wait_final($node, 30);

is(join("\n", OrderTest::audit($node, $b)), '', 'requests and broker agree');

# ---- a standby refuses with 25006 and the primary hint ----
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
for my $f ("trading.place_order('NSE', 'TCS', 'BUY', 1)", "trading.cancel_order('1')",
	"trading.modify_order('1', price => 1)", "trading.halt('x')", "trading.resume()",
	"trading.heartbeat('bot', '1 minute')", "trading.retry_order(1)")
{
	my ($r, $out, $e) = $standby->psql('postgres', "\\set VERBOSITY verbose\nSELECT $f");
	like($e, qr/25006.*rw\.example:5000/s, "standby: $f refused with 25006 and the hint");
}
$standby->stop;

done_testing();

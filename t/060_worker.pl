# Broker worker against the paper broker: lifecycle, session, the tables
# matching what the broker reports after orders, fills and price moves,
# NOTIFY, status views, token expiry and renewal (set_broker_session and
# broker_login), SIGHUP and poll-interval changes, and the token never
# appearing in the server log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $b = PaperBroker->start(args => [ '--cash', 1000000 ]);
my $node = WorkerTest::node('worker', $b);

# ---- no session yet: the worker waits, quietly ----
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'no_session') FROM trading.worker_status"),
	'without a session the worker waits in state no_session');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.worker_status WHERE session_state = 'none'"),
	'6', 'one status row per endpoint, session none');
is($node->safe_psql('postgres', "SELECT requests_total FROM trading.worker_http"),
	'0', 'no request without a session');

# ---- the session is stored encrypted, and the worker starts polling ----
$node->safe_psql('postgres', qq{
	SET ROLE regress_admin;
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
	RESET ROLE;
	INSERT INTO trading.watchlist (instrument, mode) VALUES
		('NSE:INFY', 'full'), ('NSE:SBIN', 'ltp'), ('NSE:TCS', 'ohlc');
});
is($node->safe_psql('postgres',
	"SELECT position('$PaperBroker::TOKEN' in encode(credentials, 'escape')) = 0 FROM trading.broker_session"),
	't', 'the stored credentials do not contain the token in clear');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status"),
	'every endpoint polled successfully');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT worker_state || '/' || session_state, ',') FROM trading.worker_status"),
	'polling/active', 'state polling, session active');
ok($node->poll_query_until('postgres', "SELECT count(*) = 3 FROM trading.quotes"),
	'a quote per watchlist instrument (three batches: one per mode)');
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument || '=' || mode, ',' ORDER BY instrument) FROM trading.quotes"),
	'NSE:INFY=full,NSE:SBIN=ltp,NSE:TCS=ohlc', 'quotes in their watchlist mode');
# an index, whose symbol has a space, is quoted like any instrument
$node->safe_psql('postgres', "INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:NIFTY 50', 'ltp')");
ok($node->poll_query_until('postgres',
	"SELECT last_price > 0 FROM trading.quotes WHERE instrument = 'NSE:NIFTY 50'"),
	'an index with a space in its symbol (NSE:NIFTY 50) is quoted');
$node->safe_psql('postgres', "DELETE FROM trading.watchlist WHERE instrument = 'NSE:NIFTY 50'");
is($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.margins WHERE segment IN ('equity','commodity')"),
	'2', 'margins of both segments');

# ---- orders, fills and price moves: the tables follow the broker ----
my $listen = WorkerTest::listen($node, 'trading_orders', 8);

$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
my $buy = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 10);
my $limit = $b->place(tradingsymbol => 'SBIN', transaction_type => 'BUY', quantity => 5,
	order_type => 'LIMIT', price => 100);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM trading.orders WHERE order_id IN ('$buy', '$limit')"),
	'placed orders appear in trading.orders');
ok($node->poll_query_until('postgres',
	"SELECT status = 'COMPLETE' FROM trading.orders WHERE order_id = '$buy'"),
	'the market order is COMPLETE');
is($node->safe_psql('postgres', "SELECT status FROM trading.orders WHERE order_id = '$limit'"),
	'OPEN', 'the limit order is OPEN');

# the limit order fills when the price drops: its status change is visible
$b->admin(POST => '/admin/price', instrument => 'NSE:SBIN', price => 99);
ok($node->poll_query_until('postgres',
	"SELECT status = 'COMPLETE' AND previous_status = 'OPEN' AND status_changed_at IS NOT NULL
	   FROM trading.orders WHERE order_id = '$limit'"),
	'a fill shows as a status change OPEN -> COMPLETE');
my $notified = WorkerTest::listen_output($listen);
like($notified, qr/"trading_orders" with payload "\{"table": "orders"\}"/,
	'a NOTIFY on trading_orders names the table');
unlike($notified, qr/$limit|COMPLETE|"inserted"/,
	'the NOTIFY carries no order id, status or count (any role can LISTEN)');

# orders that reached a final status are counted in the metrics
is($node->safe_psql('postgres',
	"SELECT string_agg(side || ' ' || status || ' ' || total, ',' ORDER BY side, status)
	   FROM trading.metrics_trades WHERE total > 0"),
	'BUY COMPLETE 2', 'metrics_trades: the two filled buys, counted once each');

# compare every order and trade field with the broker's own answer
sub compare_orders
{
	my $orders = $b->api(GET => '/orders')->{json}{data};
	my $mismatch = 0;
	for my $o (@$orders)
	{
		my $row = $node->safe_psql('postgres', qq{
			SELECT concat_ws('|', status, tradingsymbol, exchange, transaction_type,
				quantity, filled_quantity, pending_quantity, average_price::float8,
				price::float8, order_type, product,
				to_char(order_timestamp AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'),
				raw->>'order_id')
			  FROM trading.orders WHERE order_id = '$o->{order_id}'});
		my $want = join('|', $o->{status}, $o->{tradingsymbol}, $o->{exchange},
			$o->{transaction_type}, $o->{quantity}, $o->{filled_quantity},
			$o->{pending_quantity}, $o->{average_price} + 0, $o->{price} + 0,
			$o->{order_type}, $o->{product}, $o->{order_timestamp}, $o->{order_id});
		if ($row ne $want)
		{
			diag("order $o->{order_id}: table '$row' broker '$want'");
			$mismatch++;
		}
	}
	return $mismatch;
}
is(compare_orders(), 0, 'every order matches the broker field by field');

my $trades = $b->api(GET => '/trades')->{json}{data};
ok($node->poll_query_until('postgres',
	"SELECT count(*) = " . scalar(@$trades) . " FROM trading.trades"),
	'every fill is in trading.trades');
my $tmis = 0;
for my $t (@$trades)
{
	my $row = $node->safe_psql('postgres', qq{
		SELECT concat_ws('|', order_id, quantity, average_price::float8, transaction_type,
			to_char(fill_timestamp AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'))
		  FROM trading.trades WHERE trade_id = '$t->{trade_id}'});
	my $want = join('|', $t->{order_id}, $t->{quantity}, $t->{average_price} + 0,
		$t->{transaction_type}, $t->{fill_timestamp});
	$tmis++, diag("trade: '$row' vs '$want'") if $row ne $want;
}
is($tmis, 0, 'every trade matches the broker');

# positions follow a price move (unrealised P&L)
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1510);
ok($node->poll_query_until('postgres',
	"SELECT unrealised = 100 AND quantity = 10 FROM trading.positions
	  WHERE kind = 'net' AND tradingsymbol = 'INFY' AND product = 'MIS'"),
	'net position of INFY: quantity 10, unrealised 100 after the price move');
ok($node->poll_query_until('postgres',
	"SELECT last_price = 1510 FROM trading.quotes WHERE instrument = 'NSE:INFY'"),
	'the quote follows the price move');
my $pos = $b->api(GET => '/portfolio/positions')->{json}{data};
my $pmis = 0;
for my $kind ('net', 'day')
{
	for my $p (@{ $pos->{$kind} })
	{
		my $row = $node->safe_psql('postgres', qq{
			SELECT concat_ws('|', quantity, average_price::float8, pnl::float8, m2m::float8,
				realised::float8, unrealised::float8, buy_quantity, sell_quantity)
			  FROM trading.positions WHERE kind = '$kind' AND exchange = '$p->{exchange}'
			   AND tradingsymbol = '$p->{tradingsymbol}' AND product = '$p->{product}'});
		my $want = join('|', map { $_ + 0 } @$p{qw(quantity average_price pnl m2m realised unrealised buy_quantity sell_quantity)});
		$pmis++, diag("position $kind $p->{tradingsymbol}: '$row' vs '$want'") if $row ne $want;
	}
}
is($pmis, 0, 'every position (net and day) matches the broker');
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.positions"),
	scalar(@{ $pos->{net} }) + scalar(@{ $pos->{day} }), 'no extra position rows');

my $margins = $b->api(GET => '/user/margins')->{json}{data};
ok($node->poll_query_until('postgres',
	"SELECT net::float8 = $margins->{equity}{net} FROM trading.margins WHERE segment = 'equity'"),
	'equity margin net matches the broker');

# ---- status and error views ----
is($node->safe_psql('postgres',
	"SELECT bool_and(consecutive_failures = 0 AND requests_total > 0 AND next_poll IS NOT NULL)
	   FROM trading.worker_status"),
	't', 'worker_status: requests counted, next poll set, no failures');
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.worker_errors"), '0',
	'worker_errors: none');
is($node->safe_psql('postgres',
	"SELECT requests_total > 0 AND connections_opened_total BETWEEN 1 AND 8 FROM trading.worker_http"),
	't', 'worker_http: connections are reused');

# ---- correlation: a root per poll cycle, a child per request ----
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM trading.operations c JOIN trading.operations r ON r.id = c.parent_id
	 WHERE c.operation = 'broker.request' AND r.operation = 'broker.poll_cycle'
	   AND c.status = 'ok' AND r.status = 'ok' AND c.attributes->>'endpoint' = 'orders'}),
	'correlation: each request is a child of its poll cycle, both ended ok');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM trading.operations
	 WHERE operation = 'broker.request' AND parent_id IS NULL}),
	'0', 'correlation: no request without its cycle');

# ---- a reader sees the views but not the session ----
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE regress_reader; SELECT * FROM trading.broker_session");
like($err, qr/permission denied/, 'a reader cannot read the stored session');
is($node->safe_psql('postgres',
	"SET ROLE regress_reader; SELECT state FROM trading.broker_session_status"),
	'active', 'a reader sees the session state');

# ---- poll intervals: trading_admin changes them while the worker runs ----
sub requests_in
{
	my ($ep, $secs) = @_;
	my $r0 = $node->safe_psql('postgres',
		"SELECT requests_total FROM trading.worker_status WHERE endpoint = '$ep'");
	sleep($secs);
	return $node->safe_psql('postgres',
		"SELECT requests_total FROM trading.worker_status WHERE endpoint = '$ep'") - $r0;
}
$node->safe_psql('postgres',
	"SET ROLE regress_admin; UPDATE trading.poll_intervals SET interval_ms = 5000 WHERE endpoint = 'holdings'");
my $slow = requests_in('holdings', 3);
$node->safe_psql('postgres',
	"SET ROLE regress_admin; UPDATE trading.poll_intervals SET interval_ms = 200 WHERE endpoint = 'holdings'");
my $fast = requests_in('holdings', 3);
cmp_ok($slow, '<=', 2, "holdings every 5 s: $slow requests in 3 s");
cmp_ok($fast, '>=', 8, "holdings every 200 ms: $fast requests in 3 s");
$node->safe_psql('postgres',
	"SET ROLE regress_admin; UPDATE trading.poll_intervals SET enabled = false WHERE endpoint = 'holdings'");
is(requests_in('holdings', 2), 0, 'a disabled endpoint is not polled');
is($node->safe_psql('postgres',
	"SELECT next_poll IS NULL FROM trading.worker_status WHERE endpoint = 'holdings'"),
	't', 'a disabled endpoint has no next poll');
$node->safe_psql('postgres',
	"UPDATE trading.poll_intervals SET enabled = true WHERE endpoint = 'holdings'");

# ---- SIGHUP: settings and poll intervals are re-read ----
$node->append_conf('postgresql.conf', "trading.broker_poll_enabled = off\n");
$node->reload;
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'paused') FROM trading.worker_status"),
	'SIGHUP with broker_poll_enabled = off pauses the worker');
is(requests_in('orders', 2), 0, 'a paused worker sends nothing');
$node->append_conf('postgresql.conf', "trading.broker_poll_enabled = on\n");
# an interval changed behind the trigger's back is picked up by SIGHUP
$node->safe_psql('postgres', q{
	ALTER TABLE trading.poll_intervals DISABLE TRIGGER poll_intervals_changed;
	UPDATE trading.poll_intervals SET interval_ms = 250 WHERE endpoint = 'margins';
	ALTER TABLE trading.poll_intervals ENABLE TRIGGER poll_intervals_changed;
});
$node->reload;
ok($node->poll_query_until('postgres',
	"SELECT interval_ms = 250 AND worker_state = 'polling' FROM trading.worker_status WHERE endpoint = 'margins'"),
	'after SIGHUP the worker polls again with the new interval');
cmp_ok(requests_in('margins', 2), '>=', 4, 'margins polled about every 250 ms after SIGHUP');

# ---- token expiry: polling stops, the session is marked expired ----
my $expire_listen = WorkerTest::listen($node, 'trading_session', 4);
$b->admin(POST => '/admin/token', expire => 1);
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'session_expired' AND session_state = 'expired') FROM trading.worker_status"),
	'a TokenException marks the session expired');
is($node->safe_psql('postgres', "SELECT state FROM trading.broker_session_status"),
	'expired', 'broker_session_status says expired');
like(WorkerTest::listen_output($expire_listen), qr/"trading_session" with payload .*expired/,
	'a NOTIFY on trading_session says expired');
my $after = $node->safe_psql('postgres', "SELECT requests_total FROM trading.worker_http");
sleep 2;
is($node->safe_psql('postgres', "SELECT requests_total FROM trading.worker_http"),
	$after, 'no polling while the session is expired');
ok($node->safe_psql('postgres',
	"SELECT errors_total FROM trading.worker_errors WHERE error_type = 'token'") > 0,
	'the TokenException is counted');

# ---- renewal through the login helper ----
my $rt = $b->admin(POST => '/admin/request_token')->{json}{data}{request_token};
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSET ROLE regress_admin; SELECT * FROM trading.broker_login('$PaperBroker::API_KEY', '$rt', 'wrong_secret')");
like($err, qr/TR302/, 'a wrong api secret: TR302 from the broker');
$rt = $b->admin(POST => '/admin/request_token')->{json}{data}{request_token};
is($node->safe_psql('postgres',
	"SET ROLE regress_admin; SELECT user_id IS NOT NULL FROM trading.broker_login('$PaperBroker::API_KEY', '$rt', '$PaperBroker::API_SECRET')"),
	't', 'broker_login exchanges the request_token');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'polling' AND session_state = 'active') FROM trading.worker_status"),
	'polling resumes with the new session');
my $before = $node->safe_psql('postgres', "SELECT requests_total FROM trading.worker_http");
ok($node->poll_query_until('postgres',
	"SELECT requests_total > $before + 5 FROM trading.worker_http"),
	'requests flow again');

# ---- renewal through set_broker_session after another expiry ----
$b->admin(POST => '/admin/token', expire => 1);
ok($node->poll_query_until('postgres',
	"SELECT bool_and(session_state = 'expired') FROM trading.worker_status"),
	'expired again');
$b->admin(POST => '/admin/token', access_token => 'renewed_token_42');
$node->safe_psql('postgres',
	"SET ROLE regress_admin; SELECT trading.set_broker_session('$PaperBroker::API_KEY', 'renewed_token_42')");
ok($node->poll_query_until('postgres',
	"SELECT bool_and(session_state = 'active' AND worker_state = 'polling') FROM trading.worker_status"),
	'set_broker_session renews the session');

# ---- SIGTERM stops the worker promptly, the postmaster restarts it ----
my $pid = $node->safe_psql('postgres', "SELECT worker_pid FROM trading.worker_http");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM trading.worker_http"),
	'after SIGTERM the postmaster starts a new worker');

# ---- secrets never reach the log ----
# (the test cluster logs every statement, the test's own calls included:
# leave those out, they are the client's text, not the extension's output)
my $log = join("\n", grep { !/LOG:  statement: / } split(/\n/, slurp_file($node->logfile)));
unlike($log, qr/$PaperBroker::TOKEN|renewed_token_42|$PaperBroker::API_SECRET/,
	'no token or secret in the server log (besides the logged statements)');
like($log, qr/trading broker worker started/, 'the worker logged its start');

$node->stop;
$b->stop;
done_testing();

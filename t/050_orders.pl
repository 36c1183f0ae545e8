# Orders from SQL against the paper broker: placing, modifying and
# cancelling through trading.order_requests; nothing before COMMIT (a
# rolled-back transaction or savepoint never reaches the broker); the
# worker-owned columns; each reply class (placed, rejected, unknown then
# reconciled by tag, retried after a 429 or a refused connection); retry_order;
# adoption of a tag no request knows.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

# the broker's instruments plus one whose tradingsymbol needs escaping
my $csv = PostgreSQL::Test::Utils::tempdir() . '/instruments.csv';
PostgreSQL::Test::Utils::append_to_file($csv,
	slurp_file("$FindBin::RealBin/../broker/data/instruments.csv")
	  . "519937,2031,M&M,MAHINDRA & MAHINDRA,0.0,,0.0,0.05,1,EQ,NSE,NSE\n");
my ($node, $b) = OrderTest::setup('orders', broker_args => [ '--instruments', $csv ]);
my $T = "SET ROLE regress_trader;";

sub sq { return $node->safe_psql('postgres', $_[0]); }

# ---- one order, placed once ----
my $id = $node->safe_psql('postgres', "SELECT trading.place_order('NSE', 'INFY', 'BUY', 5)",
	extra_params => [ '-U', 'regress_trader' ]);
ok(OrderTest::wait_final($node, 30), 'the request reaches a final state');
is(sq("SELECT state || ' ' || tag || ' ' || attempts FROM trading.order_requests WHERE id = $id"),
	"placed TR$id 1", 'placed after one attempt, tag derived from the id');
my $oid = sq("SELECT order_id FROM trading.order_requests WHERE id = $id");
my $tags = OrderTest::broker_tags($b);
is_deeply($tags->{"TR$id"}, [$oid], 'the broker holds exactly one order with that tag and id');
my $bo = $b->order($oid);
is($bo->{market_protection}, -1, 'a MARKET order carries market_protection -1 (automatic)');
is(sq("SELECT requested_by FROM trading.order_requests WHERE id = $id"), 'regress_trader',
	'requested_by is the session user');
ok($node->poll_query_until('postgres',
	"SELECT broker_status = 'COMPLETE' AND filled_quantity = 5 FROM trading.order_book WHERE id = $id"),
	'order_book shows the broker state of the order (polled by the broker worker)');

# ---- the request's correlation chain, its fills included ----
my $chain = "trading.operation_chain((SELECT correlation_id FROM trading.order_requests WHERE id = $id))";
# (the correlation writer stores events asynchronously: polled)
ok($node->poll_query_until('postgres',
	"SELECT coalesce(sum((attributes->>'quantity')::int), 0) = 5 FROM $chain WHERE operation = 'order.fill'"),
	'the fills of the order (trades the broker worker recorded) are in the chain, 5 in all');
like(sq("SELECT string_agg(operation || ':' || status, ',' ORDER BY depth, started_at) FROM $chain"),
	qr/^order\.request:ok,order\.risk_check:ok,order\.risk_check:ok,order\.http_attempt:ok(,order\.fill:ok)+$/,
	'the chain: the request, its check in the caller\'s transaction and before sending, the HTTP attempt, the fills');
is(sq("SELECT count(*) FROM $chain c JOIN trading.trades t ON t.trade_id = c.attributes->>'trade_id'
         WHERE c.operation = 'order.fill' AND t.order_id = (SELECT order_id FROM trading.order_requests WHERE id = $id)"),
	sq("SELECT count(*) FROM trading.trades WHERE order_id = (SELECT order_id FROM trading.order_requests WHERE id = $id)"),
	'one fill operation per trade of the order');

# ---- nothing before COMMIT ----
my $rb = (split /\n/, sq(qq{
	$T
	BEGIN;
	SELECT trading.place_order('NSE', 'SBIN', 'BUY', 1);
	SELECT pg_sleep(0.5);
	ROLLBACK;
	RESET ROLE;
	SELECT last_value FROM trading.order_requests_id_seq;
}))[-1];
my $sp = sq(qq{
	$T
	BEGIN;
	SAVEPOINT a;
	SELECT trading.place_order('NSE', 'SBIN', 'BUY', 2);
	ROLLBACK TO SAVEPOINT a;
	SELECT trading.place_order('NSE', 'SBIN', 'BUY', 3);
	COMMIT;
});
ok(OrderTest::wait_final($node, 30), 'the committed order of the savepoint test is final');
$tags = OrderTest::broker_tags($b);
ok(!exists $tags->{"TR$rb"}, 'a rolled-back transaction never reached the broker');
ok(!exists $tags->{ 'TR' . ($rb + 1) }, 'a rolled-back savepoint never reached the broker');
is(scalar @{ $tags->{ 'TR' . ($rb + 2) } // [] }, 1, 'the order after the savepoint did, once');
is(sq("SELECT count(*) FROM trading.order_requests WHERE id IN ($rb, $rb + 1)"), '0',
	'no trace of the rolled-back requests');

# ---- a basket from a SELECT is one statement; plain INSERT works ----
sq(qq{$T INSERT INTO trading.order_requests (exchange, tradingsymbol, transaction_type, quantity, strategy)
      SELECT 'NSE', s, 'BUY', 1, 'basket' FROM unnest(ARRAY['INFY', 'SBIN', 'TCS']) s});
ok(OrderTest::wait_final($node, 30), 'basket final');
is(sq("SELECT string_agg(state, ',') FROM trading.order_requests WHERE strategy = 'basket'"),
	'placed,placed,placed', 'a basket of three, all placed');

# ---- the worker's columns are not the trader's ----
my ($ret, $out, $err) = $node->psql('postgres',
	"$T INSERT INTO trading.order_requests (exchange, tradingsymbol, transaction_type, quantity, state) VALUES ('NSE','INFY','BUY',1,'placed')");
like($err, qr/permission denied/, 'a trader cannot write state');
($ret, $out, $err) = $node->psql('postgres', "$T UPDATE trading.order_requests SET state = 'failed'");
like($err, qr/permission denied/, 'nor update requests');
($ret, $out, $err) = $node->psql('postgres',
	"SET ROLE regress_analyst; SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)");
like($err, qr/permission denied/, 'an analyst cannot place orders');

# ---- modify and cancel ----
my $lim = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 2, 'LIMIT', price => 1.00)");
OrderTest::wait_final($node, 30);
my $loid = sq("SELECT order_id FROM trading.order_requests WHERE id = $lim");
is($b->order($loid)->{status}, 'OPEN', 'a LIMIT far below the market rests OPEN');
my $mod = sq("$T SELECT trading.modify_order('$loid', price => 2.00)");
OrderTest::wait_final($node, 30);
is(sq("SELECT state FROM trading.order_requests WHERE id = $mod"), 'placed', 'modification done');
is($b->order($loid)->{price}, 2, 'the broker has the new price');
my $can = sq("$T SELECT trading.cancel_order('$loid')");
OrderTest::wait_final($node, 30);
is(sq("SELECT state FROM trading.order_requests WHERE id = $can"), 'placed', 'cancellation done');
is($b->order($loid)->{status}, 'CANCELLED', 'the broker cancelled it');

# ---- rejections are final and keep the message ----
$b->admin(POST => '/admin/faults', margin_exception => 1);
my $rich = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 2000000000, 'LIMIT', 'CNC', price => 1000)");
OrderTest::wait_final($node, 30);
is(sq("SELECT state || ' ' || error_type FROM trading.order_requests WHERE id = $rich"),
	'rejected MarginException', 'beyond the margin: rejected, MarginException');
like(sq("SELECT state_reason FROM trading.order_requests WHERE id = $rich"), qr/margin/i,
	'the broker message is kept');
$b->admin(POST => '/admin/freeze', instrument => 'NSE:SBIN', quantity => 10);
my $frz = sq("$T SELECT trading.place_order('NSE', 'SBIN', 'BUY', 11)");
OrderTest::wait_final($node, 30);
is(sq("SELECT state || ' ' || error_type FROM trading.order_requests WHERE id = $frz"),
	'rejected OrderException', 'above the broker freeze quantity: OrderException');
$b->admin(POST => '/admin/faults', reset => 1);

# ---- ambiguity: accepted then dropped, answered too late ----
for my $fault ([ 'accept_drop_rate', 'accepted then dropped' ],
	[ 'accept_late_rate', 'answered after the timeout' ])
{
	$b->admin(POST => '/admin/faults', reset => 1, $fault->[0] => 1,
		accept_late_ms => 1500, classes => 'order_write');
	my $u = sq("$T SELECT trading.place_order('NSE', 'TCS', 'BUY', 1)");
	ok($node->poll_query_until('postgres',
		"SELECT state IN ('unknown', 'placed') AND attempts = 1 FROM trading.order_requests WHERE id = $u"),
		"$fault->[1]: unknown, not re-sent");
	$b->admin(POST => '/admin/faults', reset => 1);
	ok(OrderTest::wait_final($node, 30), "$fault->[1]: reconciled");
	is(sq("SELECT state || ' ' || attempts FROM trading.order_requests WHERE id = $u"), 'placed 1',
		"$fault->[1]: found by its tag, placed, one attempt");
	is(scalar @{ OrderTest::broker_tags($b)->{"TR$u"} // [] }, 1, "$fault->[1]: one order at the broker");
	sq('SELECT trading.correlation_flush()');
	like(sq("SELECT string_agg(operation || ':' || status, ',' ORDER BY depth, started_at)
	           FROM trading.operation_chain((SELECT correlation_id FROM trading.order_requests WHERE id = $u))"),
		qr/^order\.request:ok,.*order\.http_attempt:error.*order\.reconcile:ok/,
		"$fault->[1]: the chain shows the failed attempt and the reconciliation");
}

# dropped before the broker acted: absent after settling, failed; retry_order sends it again
$b->admin(POST => '/admin/faults', reset => 1, drop_rate => 1, classes => 'order_write');
my $gone = sq("$T SELECT trading.place_order('NSE', 'TCS', 'SELL', 1)");
ok(OrderTest::wait_final($node, 30), 'dropped before acting: settles');
is(sq("SELECT state || ' ' || attempts FROM trading.order_requests WHERE id = $gone"), 'failed 1',
	'absent from the order book after the settling time: failed, never re-sent');
$b->admin(POST => '/admin/faults', reset => 1);
sq("$T SELECT trading.retry_order($gone)");
ok(OrderTest::wait_final($node, 30), 'retried');
is(sq("SELECT state || ' ' || tag FROM trading.order_requests WHERE id = $gone"), "placed TR${gone}R1",
	'retry_order: placed under a new tag');
($ret, $out, $err) = $node->psql('postgres', "$T SELECT trading.retry_order($id)");
like($err, qr/TR617|not failed/, 'retry_order refuses a request that is not failed');

# ---- errors that prove the request never reached the broker are retried ----
$b->admin(POST => '/admin/faults', reset => 1, rate429 => 1, classes => 'order_write');
my $r429 = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)");
ok($node->poll_query_until('postgres',
	"SELECT attempts >= 2 AND state = 'pending' FROM trading.order_requests WHERE id = $r429"),
	'a 429 from the broker: pending again, retried');
$b->admin(POST => '/admin/faults', reset => 1);
OrderTest::wait_final($node, 30);
is(sq("SELECT state FROM trading.order_requests WHERE id = $r429"), 'placed', 'then placed');
is(scalar @{ OrderTest::broker_tags($b)->{"TR$r429"} // [] }, 1, 'once');

# ---- a broker order with our tag that no request knows is adopted ----
my $alien = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 1, tag => 'TR999999');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM trading.adopted_orders WHERE tag = 'TR999999' AND order_id = '$alien'"),
	'adopted');
is(sq("SELECT state FROM trading.order_book WHERE tag = 'TR999999'"), 'adopted', 'visible in the order book');

# ---- the form body: tradingsymbols with '&' and '-' reach the broker intact ----
sq("INSERT INTO trading.instruments (instrument_token, tradingsymbol, exchange, tick_size, lot_size, segment)
	VALUES (519937, 'M&M', 'NSE', 0.05, 1, 'NSE'), (3813889, 'CENTRALBK-BE', 'NSE', 0.05, 1, 'NSE')");
my $mm = sq("$T SELECT trading.place_order('NSE', 'M&M', 'BUY', 2)");
my $ba = sq("$T SELECT trading.place_order('NSE', 'CENTRALBK-BE', 'SELL', 1, 'LIMIT', price => 9000.05)");
OrderTest::wait_final($node, 30);
is(sq("SELECT string_agg(state, ',' ORDER BY id) FROM trading.order_requests WHERE id IN ($mm, $ba)"),
	'placed,placed', 'orders for M&M and CENTRALBK-BE placed');
my $mmo = $b->order(sq("SELECT order_id FROM trading.order_requests WHERE id = $mm"));
my $bao = $b->order(sq("SELECT order_id FROM trading.order_requests WHERE id = $ba"));
is("$mmo->{tradingsymbol} $mmo->{quantity} $mmo->{tag}", "M&M 2 TR$mm", 'the broker got M&M, its quantity and tag');
is("$bao->{tradingsymbol} $bao->{price} $bao->{order_type}", 'CENTRALBK-BE 9000.05 LIMIT',
	'the broker got CENTRALBK-BE at its limit price');

# ---- not sent before valid_until: expired, never sent later ----
sq('SELECT trading.clear_broker_session()');
my $ex = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, valid_until => clock_timestamp() + interval '1 second')");
ok($node->poll_query_until('postgres', "SELECT state = 'expired' FROM trading.order_requests WHERE id = $ex"),
	'a request not sent before its valid_until expires');
like(sq("SELECT state_reason FROM trading.order_requests WHERE id = $ex"), qr/not sent before valid_until/,
	'with its reason');
sq("SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN')");
my $after = sq("$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)");
ok($node->poll_query_until('postgres', "SELECT state = 'placed' FROM trading.order_requests WHERE id = $after"),
	'the sender sends again once it has a session');
is(scalar @{ OrderTest::broker_tags($b)->{"TR$ex"} // [] }, 0, 'the expired request never reached the broker');

# ---- the whole book agrees ----
is_deeply([ OrderTest::audit($node, $b) ], [], 'requests and the broker order book agree one to one');
unlike(slurp_file($node->logfile), qr/trading order sender: [a-z ]+ failed:/, 'no unit of work of the sender failed');

done_testing();

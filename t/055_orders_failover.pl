# A placement the old leader sent but whose 'sending' never reached the
# standby promoted since (asynchronous replication) is found at the broker
# by its tag and adopted, never sent again (docs/HA.md, docs/ORDERS.md
# "verifying").
#
# A primary and a streaming standby share one paper broker.  Three
# placements are queued on the primary while it has no broker session
# (nothing leaves) and replicate to the standby as 'pending'.  The standby
# is then cut off, and only then does the primary send the first (A): its
# 'sending' and 'placed' never reach the standby.  The primary dies; the
# standby is promoted.  Its sender must not send A again: A, B and C are
# 'verifying', and nothing is sent while trading.order_settle has not
# passed since the start (a request of the dead leader may still be on its
# way: C reaches the broker meanwhile, as the dead leader's late request
# would).  Once it has passed, A and C are adopted as placed (found by
# their tags) and B, absent, is sent once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my ($old, $b) = OrderTest::setup('old_leader', init => { allows_streaming => 1 });
my $T = 'SET ROLE regress_trader;';

$old->backup('b');
my $new = PostgreSQL::Test::Cluster->new('new_leader');
$new->init_from_backup($old, 'b', has_streaming => 1);
# the settling time stays 10 minutes until the test has put C at the broker
$new->append_conf('postgresql.conf', "trading.order_settle = '10min'\n");
$new->start;

# ---- three placements queued with nothing sent; they replicate ----
$old->safe_psql('postgres', 'SELECT trading.clear_broker_session()');
my ($a, $bb, $c) = map {
	$old->safe_psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', $_)")
} (1, 2, 3);
$old->wait_for_catchup($new);
is($new->safe_psql('postgres',
	"SELECT string_agg(state, ',' ORDER BY id) FROM trading.order_requests WHERE id IN ($a, $bb, $c)"),
	'pending,pending,pending', 'the standby holds the three requests as pending');
my $ret = $new->psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)",
	stderr => \my $err);
like($err, qr/standby|recovery|read-only/i, 'the standby refuses place_order');

# ---- cut the standby off; the old leader sends A only ----
$new->safe_psql('postgres', "ALTER SYSTEM SET primary_conninfo = ''; SELECT pg_reload_conf()");
ok($new->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_wal_receiver'),
	'the standby no longer receives WAL');
$old->safe_psql('postgres', "UPDATE trading.order_requests SET state = 'halted' WHERE id IN ($bb, $c)");
$old->safe_psql('postgres',
	"SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN')");
ok($old->poll_query_until('postgres', "SELECT state = 'placed' FROM trading.order_requests WHERE id = $a"),
	'the old leader placed A');
is(scalar @{ OrderTest::broker_tags($b)->{"TR$a"} // [] }, 1, 'the broker holds A once');
$old->stop('immediate');

# ---- promotion: nothing pending is sent before it is looked up ----
$new->promote;
ok($new->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading order sender'"),
	'the new leader runs the order sender');
ok($new->poll_query_until('postgres',
	"SELECT string_agg(state, ',' ORDER BY id) = 'verifying,verifying,verifying' FROM trading.order_requests WHERE id IN ($a, $bb, $c)"),
	'A, B and C are verifying');
$new->safe_psql('postgres',
	"SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN')");
# the dead leader's request for C arrives late
my $c_oid = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 3, tag => "TR$c");
# the new leader's sender has its session: a new request goes out, the
# verifying ones wait for their settling time
my $d = $new->safe_psql('postgres', "$T SELECT trading.place_order('NSE', 'INFY', 'BUY', 4)");
ok($new->poll_query_until('postgres', "SELECT state = 'placed' FROM trading.order_requests WHERE id = $d"),
	'a request made on the new leader is sent at once');
my $tags = OrderTest::broker_tags($b);
is(scalar @{ $tags->{"TR$bb"} // [] }, 0, 'B is not sent while its settling time runs');
is($new->safe_psql('postgres',
	"SELECT string_agg(state, ',' ORDER BY id) FROM trading.order_requests WHERE id IN ($a, $bb, $c)"),
	'verifying,verifying,verifying', 'A, B and C still verifying');
is($new->safe_psql('postgres', 'SELECT verifying FROM trading.trading_state'), '3',
	'trading_state counts them');
is($new->safe_psql('postgres', 'SELECT verifying FROM trading.metrics_order_state'), '3',
	'and the metric trading_orders_verifying');
# halting does not touch a request that may be live at the broker
$new->safe_psql('postgres', "SELECT trading.halt('test'); SELECT trading.resume()");
is($new->safe_psql('postgres',
	"SELECT count(*) FROM trading.order_requests WHERE id IN ($a, $bb, $c) AND state = 'verifying'"),
	'3', 'the kill switch leaves verifying requests alone');

# ---- the settling time passes ----
$new->safe_psql('postgres', "ALTER SYSTEM SET trading.order_settle = '300ms'; SELECT pg_reload_conf()");
ok(OrderTest::wait_final($new, 60)
	  && $new->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM trading.order_requests WHERE state = 'verifying'"),
	'every request is final');
is($new->safe_psql('postgres',
	"SELECT string_agg(id || ':' || state || ':' || adopted || ':' || attempts, ' ' ORDER BY id) FROM trading.order_requests WHERE id IN ($a, $bb, $c)"),
	"$a:placed:true:0 $bb:placed:false:1 $c:placed:true:0",
	'A and C adopted as placed (never sent by the new leader), B sent once');
is($new->safe_psql('postgres', "SELECT order_id FROM trading.order_requests WHERE id = $c"), $c_oid,
	"C carries the broker's order id");
like($new->safe_psql('postgres', "SELECT state_reason FROM trading.order_requests WHERE id = $a"),
	qr/found at the broker by its tag/, 'the reason says how A was settled');
$tags = OrderTest::broker_tags($b);
is(join(' ', map { scalar @{ $tags->{"TR$_"} // [] } } ($a, $bb, $c, $d)), '1 1 1 1',
	'the broker holds exactly one order per request');
is_deeply([ OrderTest::audit($new, $b) ], [], 'requests and the broker order book agree one to one');
is($new->safe_psql('postgres', 'SELECT count(*) FROM trading.adopted_orders'), '0',
	'no broker order is left without its request');
is($new->safe_psql('postgres', 'SELECT adopted_requests FROM trading.trading_state'), '2',
	'trading_state counts the adopted requests');
is($new->safe_psql('postgres', "SELECT verifying || ' ' || adopted_requests FROM trading.metrics_order_state"),
	'0 2', 'the metrics: none verifying, two adopted requests');
like(slurp_file($new->logfile), qr/3 pending placement\(s\) are verifying/, 'the sender logged the verification');
unlike(slurp_file($new->logfile), qr/trading order sender: [a-z ]+ failed:/, 'no unit of work of the sender failed');

done_testing();

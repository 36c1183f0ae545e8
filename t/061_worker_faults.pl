# Every fault switch of the paper broker in turn: while the fault is on
# (on every request), the tables stay exactly as they were even though the
# broker's data changed, the error is counted under its type for every
# endpoint, the endpoint backs off, and the worker keeps running (same
# pid); once the fault is off, the tables catch up with the broker.  Then
# all faults at once at 20% while orders are placed, and a token expiry
# through the expire_token_after switch.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $pb = PaperBroker->start(args => [ '--cash', 10000000 ]);
my $node = WorkerTest::node('faults', $pb);
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
	INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'full'), ('NSE:SBIN', 'ltp');
});
$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1000);
$pb->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 3);
$pb->place(tradingsymbol => 'SBIN', transaction_type => 'BUY', quantity => 7,
	order_type => 'LIMIT', price => 1);

sub sq { return $node->safe_psql('postgres', $_[0]); }

my $all_tables = join(' || ', map {
	"(SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') FROM trading.$_ t)"
} qw(orders trades positions holdings margins quotes));
sub snapshot { return sq("SELECT md5($all_tables)"); }

# the tables agree with what the broker reports now
sub in_sync
{
	my ($price) = @_;
	my @orders = @{ $pb->api(GET => '/orders')->{json}{data} };
	my $want = join(',', map { "$_->{order_id}=$_->{status}=$_->{filled_quantity}" }
		  sort { $a->{order_id} cmp $b->{order_id} } @orders);
	my $pos = $pb->api(GET => '/portfolio/positions')->{json}{data}{net};
	my $pwant = join(',', map { "$_->{tradingsymbol}=$_->{quantity}=" . ($_->{unrealised} + 0) }
		  sort { $a->{tradingsymbol} cmp $b->{tradingsymbol} } @$pos);
	return $node->poll_query_until('postgres', qq{
		SELECT (SELECT string_agg(order_id || '=' || status || '=' || filled_quantity, ',' ORDER BY order_id)
		          FROM trading.orders) = '$want'
		   AND (SELECT string_agg(tradingsymbol || '=' || quantity || '=' || unrealised::float8, ',' ORDER BY tradingsymbol)
		          FROM trading.positions WHERE kind = 'net') = '$pwant'
		   AND (SELECT last_price = $price FROM trading.quotes WHERE instrument = 'NSE:INFY')
		   AND (SELECT bool_and(consecutive_failures = 0) FROM trading.worker_status)});
}

ok(in_sync(1000), 'start: the tables match the broker');
my $pid = sq("SELECT worker_pid FROM trading.worker_http");
my $price = 1000;

my @faults = (
	[ 'drop_rate=1', { drop_rate => 1 }, 'connection' ],
	[ 'rate429=1', { rate429 => 1 }, 'http_429' ],
	[ 'fail_rate=1 (500, 502, 503, 504)', { fail_rate => 1, fail_codes => '500,502,503,504' }, 'http_5xx' ],
	[ 'html_rate=1 (502 page)', { html_rate => 1 }, 'http_5xx' ],
	[ 'html_rate=1 with HTTP 200', { html_rate => 1, html_status => 200 }, 'not_json' ],
	[ 'error200_rate=1', { error200_rate => 1 }, 'broker_error' ],
	[ 'truncate_rate=1', { truncate_rate => 1 }, 'malformed' ],
	[ 'malformed_rate=1', { malformed_rate => 1 }, 'malformed' ],
	[ 'latency_ms=2500 (timeout 2 s)', { latency_ms => 2500 }, 'timeout' ]);

for my $f (@faults)
{
	my ($name, $params, $etype) = @$f;
	my %e0 = split /[|\n]/, sq("SELECT endpoint || '|' || coalesce((SELECT errors_total FROM trading.worker_errors e
		WHERE e.endpoint = s.endpoint AND e.error_type = '$etype'), 0) FROM trading.worker_status s");
	my $before = snapshot();
	$pb->admin(POST => '/admin/faults', reset => 1, %$params);
	# wait for every request started before the switch to be done
	sleep 1;
	$before = snapshot();
	# the broker's data changes meanwhile: none of it may reach the tables
	$price += 10;
	$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => $price);
	my $cond = join(' AND ', map { "coalesce((SELECT errors_total FROM trading.worker_errors
		WHERE endpoint = '$_' AND error_type = '$etype'), 0) >= $e0{$_} + 2" } sort keys %e0);
	ok($node->poll_query_until('postgres', "SELECT $cond"),
		"$name: every endpoint counts it as $etype, twice in a row");
	is(snapshot(), $before, "$name: the tables are unchanged");
	is(sq("SELECT bool_and(consecutive_failures >= 2 AND last_error_type = '$etype') FROM trading.worker_status"),
		't', "$name: worker_status shows consecutive failures and the error type");
	# exponential backoff: orders (every 300 ms) is tried far less often
	my $r0 = sq("SELECT requests_total FROM trading.worker_status WHERE endpoint = 'orders'");
	sleep 3;
	my $n = sq("SELECT requests_total FROM trading.worker_status WHERE endpoint = 'orders'") - $r0;
	cmp_ok($n, '<=', 4, "$name: backoff ($n tries of orders in 3 s instead of 10)");

	$pb->admin(POST => '/admin/faults', reset => 1);
	ok(in_sync($price), "$name: once the fault is off, the tables catch up with the broker");
	is(sq("SELECT worker_pid FROM trading.worker_http"), $pid, "$name: the worker kept running");
}

# ---- all faults together, at 20%, while orders are placed and filled ----
$pb->admin(POST => '/admin/faults', reset => 1, drop_rate => 0.2, rate429 => 0.2,
	fail_rate => 0.2, html_rate => 0.2, error200_rate => 0.2, truncate_rate => 0.2,
	malformed_rate => 0.2, latency_jitter_ms => 300, classes => 'portfolio,orders,quote,user');
for my $i (1 .. 6)
{
	$pb->place(tradingsymbol => 'INFY', transaction_type => ($i % 2 ? 'BUY' : 'SELL'), quantity => $i);
	$price += 5;
	$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => $price);
	sleep 1;
}
$pb->admin(POST => '/admin/price', instrument => 'NSE:SBIN', price => 0.5);
sleep 4;
ok(sq("SELECT count(DISTINCT error_type) FROM trading.worker_errors") >= 5,
	'mixed faults: several error types seen');
$pb->admin(POST => '/admin/faults', reset => 1);
ok(in_sync($price), 'mixed faults: afterwards the tables match the broker exactly');
my $trades = scalar @{ $pb->api(GET => '/trades')->{json}{data} };
ok($node->poll_query_until('postgres', "SELECT count(*) = $trades FROM trading.trades"),
	"mixed faults: all $trades fills recorded once");
is(sq("SELECT worker_pid FROM trading.worker_http"), $pid, 'mixed faults: the worker kept running');

# ---- expire_token_after: the token dies after N requests ----
$pb->admin(POST => '/admin/faults', expire_token_after => 5);
ok($node->poll_query_until('postgres',
	"SELECT bool_and(session_state = 'expired' AND worker_state = 'session_expired') FROM trading.worker_status"),
	'expire_token_after: the session is marked expired');
my $snap = snapshot();
$price += 10;
$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => $price);
sleep 2;
is(snapshot(), $snap, 'expire_token_after: nothing changes while expired');
$pb->admin(POST => '/admin/faults', reset => 1);
$pb->admin(POST => '/admin/token', access_token => 'second_token');
$pb->{token} = 'second_token';		# the test's own reads use it too
sq("SELECT trading.set_broker_session('$PaperBroker::API_KEY', 'second_token')");
ok(in_sync($price), 'after renewal the tables catch up');
is(sq("SELECT worker_pid FROM trading.worker_http"), $pid, 'the worker never restarted (until now)');

# ---- SIGTERM mid-request: the worker does not wait for the broker ----
$node->append_conf('postgresql.conf', "trading.broker_timeout = '60s'\n");
$node->reload;
sleep 1;
$pb->admin(POST => '/admin/faults', latency_ms => 20000);
sleep 2;		# every endpoint now has a request hanging at the broker
my $t0 = time;
sq("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'SIGTERM while requests hang: the worker exits');
cmp_ok(time - $t0, '<', 10, 'without waiting for the 20 s answers (' . (time - $t0) . ' s)');
$pb->admin(POST => '/admin/faults', reset => 1);

my $log = slurp_file($node->logfile);
unlike($log, qr/(PANIC|TRAP|terminated by signal)/, 'no crash in the server log');
unlike(join("\n", grep { !/statement: / } split /\n/, $log), qr/$PaperBroker::TOKEN|second_token/,
	'no token in the log');

$node->stop;
$pb->stop;
done_testing();

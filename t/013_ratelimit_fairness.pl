# Fairness between the workers and SQL callers (issue 13 item 8): two
# analysts looping rate_limit_acquire('kite.api', 10) do not stop the
# broker worker's order and position polling, and an acquire that waits
# for a nearly spent daily window does not hold up other order grants.
# See docs/RATE_LIMITER.md, "Fairness".
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $b = PaperBroker->start(args => [ '--cash', 1000000 ]);
my $node = WorkerTest::node('rl_fair', $b);
$node->safe_psql('postgres', qq{
	CREATE ROLE regress_analyst LOGIN IN ROLE trading_analyst;
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status WHERE endpoint <> 'quotes'"),
	'the worker polls the paper broker');

sub polls
{
	return split /\|/, $node->safe_psql('postgres',
		"SELECT string_agg(requests_total::text, '|' ORDER BY endpoint)
		   FROM trading.worker_status WHERE endpoint IN ('orders', 'positions')");
}

# ---- two analysts loop acquire('kite.api', 10) for 10 s ----
my $secs = 10;
my @analysts;
for my $i (1, 2)
{
	my ($in, $out, $err) = ('', '', '');
	push @analysts, [ IPC::Run::start(
		[ 'psql', '-X', '-qAt', '-U', 'regress_analyst', '-d', $node->connstr('postgres'), '-c', qq{
DO \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
    granted int := 0;
    timeouts int := 0;
BEGIN
    WHILE clock_timestamp() < t0 + interval '$secs s' LOOP
        BEGIN
            PERFORM trading.rate_limit_acquire('kite.api', 10);
            granted := granted + 1;
        EXCEPTION WHEN SQLSTATE 'TR001' THEN
            timeouts := timeouts + 1;
        END;
    END LOOP;
    RAISE NOTICE 'granted % timeouts %', granted, timeouts;
END \$\$;} ],
		\$in, \$out, \$err, IPC::Run::timeout(120)), \$err ];
}
my ($orders0, $positions0) = polls();
my $t0 = time;
sleep 1 while time - $t0 < $secs - 1;
my ($orders1, $positions1) = polls();
my $elapsed = time - $t0;
$_->[0]->finish for @analysts;
note("analyst: " . ${ $_->[1] }) for @analysts;
like(${ $analysts[0][1] }, qr/granted \d+ timeouts \d+/, 'the analysts looped');

# orders are polled every 300 ms and positions every second; starved, they
# would not be polled at all.  A third of the nominal count leaves room for
# a loaded machine.
my $orders = $orders1 - $orders0;
my $positions = $positions1 - $positions0;
cmp_ok($orders, '>=', int($elapsed / 0.3 / 3),
	"orders kept polling while analysts waited ($orders polls in ${elapsed} s)");
cmp_ok($positions, '>=', int($elapsed / 1 / 3),
	"positions kept polling ($positions polls in ${elapsed} s)");

# ---- an acquire for a nearly spent day does not hold up other grants ----
$node->safe_psql('postgres', q{
	SELECT trading.rate_limit_set('kite.orders', 20, '1 day');
	SELECT trading.rate_limit_set('kite.orders', 100, '1 second');
	SELECT count(*) FROM generate_series(1, 15) WHERE trading.rate_limit_try('kite.orders');
});
is($node->safe_psql('postgres',
	"SELECT used FROM trading.rate_limit_status WHERE endpoint = 'kite.orders' AND per = '1 day'"),
	'15', 'fifteen of twenty orders of the day used');
my ($win, $wout, $werr) = ('', '', '');
my $waiter = IPC::Run::start(
	[ 'psql', '-X', '-qAt', '-U', 'regress_analyst', '-d', $node->connstr('postgres'), '-c',
	  "SET application_name = 'rl_day_waiter'; SELECT trading.rate_limit_acquire('kite.orders', 10, '1 day')" ],
	\$win, \$wout, \$werr, IPC::Run::timeout(120));
ok($node->poll_query_until('postgres',
	"SELECT waiting = 1 FROM trading.rate_limit_status WHERE endpoint = 'kite.orders' AND per = '1 day'"),
	'acquire(kite.orders, 10, 1 day) waits for the day window');
is($node->safe_psql('postgres', "SET ROLE regress_analyst; SELECT trading.rate_limit_try('kite.orders')"),
	't', 'another order grant passes it');
is($node->safe_psql('postgres',
	"SET ROLE regress_analyst; SELECT trading.rate_limit_acquire('kite.orders', 2, '5 s') < interval '1 s'"),
	't', 'and so does a later acquire that fits');
is($node->safe_psql('postgres',
	"SELECT used || '/' || waiting FROM trading.rate_limit_status WHERE endpoint = 'kite.orders' AND per = '1 day'"),
	'18/1', 'the long waiter is still queued');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'rl_day_waiter'");
eval { $waiter->finish; };
like($werr, qr/canceling statement due to user request/, 'the long waiter is cancelled');

# ---- a short queue still serves in arrival order and holds later callers ----
$node->safe_psql('postgres', "SELECT trading.rate_limit_set('t.fifo', 1, '2 seconds'); SELECT trading.rate_limit_try('t.fifo')");
my ($fin, $fout, $ferr) = ('', '', '');
my $fifo = IPC::Run::start(
	[ 'psql', '-X', '-qAt', '-d', $node->connstr('postgres'), '-c',
	  "SELECT trading.rate_limit_acquire('t.fifo', 1, '10 s') IS NOT NULL" ],
	\$fin, \$fout, \$ferr, IPC::Run::timeout(60));
ok($node->poll_query_until('postgres',
	"SELECT waiting = 1 FROM trading.rate_limit_status WHERE endpoint = 't.fifo'"),
	'a waiter for a short window is queued');
is($node->safe_psql('postgres', "SELECT trading.rate_limit_try('t.fifo')"),
	'f', 'a later rate_limit_try does not overtake it');
$fifo->finish;
is($fout, "t\n", 'the waiter is served');

$node->stop;
$b->stop;
done_testing();

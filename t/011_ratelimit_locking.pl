# The rate limiter never holds its locks across SQL (issue 13 item 4), and a
# failing synchronisation of the limits is a worker state of its own that
# stops only the endpoints it affects (item 15).
#
# A session that truncates trading.rate_limits and stays open holds the
# table's lock.  Another session's rate_limit_try then waits for that lock
# to re-read the table, interruptibly: statement_timeout and
# pg_cancel_backend end it.  The broker worker never waits for the table:
# it keeps polling the paper broker under the limits last applied.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use TradingTest;
use PaperBroker;
use WorkerTest;

my $b = PaperBroker->start(args => [ '--cash', 1000000 ]);
my $node = WorkerTest::node('rl_locking', $b);
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FILTER (WHERE endpoint IN ('orders', 'positions'))
	   FROM trading.worker_status"),
	'the worker polls the paper broker');

sub requests
{
	return $node->safe_psql('postgres', 'SELECT requests_total FROM trading.worker_http');
}

# ---- a transaction holds trading.rate_limits ----
my ($in, $out, $err) = ('', '', '');
my $holder = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	\$in, \$out, \$err, IPC::Run::timeout(300));
$in .= q{
BEGIN;
TRUNCATE trading.rate_limits;
SAVEPOINT s;
SELECT trading.rate_limit_set('kite.api', 10, '1 second');
ROLLBACK TO s;
SELECT 'holding';
};
$holder->pump until $out =~ /holding/ || $err ne '';
is($err, '', 'the holding transaction is open');

# statement_timeout ends a rate_limit_try that waits for the table
my $t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '2s'; SELECT trading.rate_limit_try('kite.api')",
	timeout => 60);
like($stderr, qr/canceling statement due to statement timeout/,
	'rate_limit_try behind the open transaction ends with the statement timeout');
cmp_ok(time - $t0, '<', 50, 'and does not wait for the other transaction');

# pg_cancel_backend ends one too
my ($cin, $cout, $cerr) = ('', '', '');
my $blocked = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  "SET application_name = 'rl_blocked'; SELECT trading.rate_limit_try('kite.api')" ],
	\$cin, \$cout, \$cerr, IPC::Run::timeout(60));
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'rl_blocked' AND wait_event_type = 'Lock'"),
	'a second rate_limit_try waits for the table lock (a heavyweight lock, not the LWLock)');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'rl_blocked'");
eval { $blocked->finish; };
like($cerr, qr/canceling statement due to user request/,
	'pg_cancel_backend ends it');

# the worker keeps polling meanwhile (it re-reads its configuration every
# 5 s at the latest: watch it after that)
sleep 6;
my $before = requests();
sleep 4;
my $after = requests();
cmp_ok($after, '>', $before + 5, "the worker kept polling ($before -> $after requests)");
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT worker_state, ',') FROM trading.worker_status"),
	'polling', 'worker state polling');

# once the transaction ends, everyone re-reads the table
$in .= "ROLLBACK;\nSELECT 'released';\n";
$holder->pump until $out =~ /released/ || $err ne '';
$in .= "\\q\n";
$holder->finish;
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT endpoint, ',' ORDER BY endpoint) FROM trading.rate_limit_status"),
	'kite.api,kite.historical,kite.orders,kite.quote',
	'after the rollback every limit is back');
is($node->safe_psql('postgres', "SELECT trading.rate_limit_try('kite.historical')"),
	't', 'rate_limit_try works again');

# ---- item 15: a synchronisation that fails is a state of its own ----
# 1024 slots hold kite.api, kite.historical and kite.quote (14 slots), not
# kite.orders (3210): the worker applies what fits and keeps polling the
# endpoints whose limits are loaded.
$node->stop;
$node->append_conf('postgresql.conf', "trading.rate_limit_slots = 1024\n");
my $log_offset = -s $node->logfile;
$node->start;
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'rate_limit_error') FROM trading.worker_status"),
	'a failing synchronisation shows as worker_state rate_limit_error');
my $r0 = requests();
ok($node->poll_query_until('postgres',
	"SELECT requests_total > $r0 + 5 FROM trading.worker_http"),
	'endpoints whose limits are loaded keep polling');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success > now() - interval '5 s') FILTER (WHERE endpoint IN ('orders', 'positions'))
	   FROM trading.worker_status"),
	'orders and positions are polled recently');
sleep 3;						# several retries
my $log = slurp_file($node->logfile, $log_offset);
my @lines = ($log =~ /could not synchronise the rate limits: rate limits need more slots/g);
is(scalar(@lines), 1, 'the failure is logged once');
($ret, $stdout, $stderr) = $node->psql('postgres', "SELECT trading.rate_limit_try('kite.orders')");
like($stderr, qr/rate limits need more slots than trading.rate_limit_slots provides/,
	'an SQL caller gets the bound error');

# fixed (the functions refuse while the table does not fit; DML works):
# back to polling
$node->safe_psql('postgres',
	"UPDATE trading.rate_limits SET requests = 100 WHERE endpoint = 'kite.orders' AND per = '1 day'");
ok($node->poll_query_until('postgres',
	"SELECT bool_and(worker_state = 'polling') FROM trading.worker_status"),
	'once the table fits, the worker is back to polling');
like(slurp_file($node->logfile, $log_offset), qr/synchronised the rate limits again/,
	'and says so once');

$node->stop;
$b->stop;
done_testing();

# Rate limiter under contention, with several limits, and waiters in order.
#
# Grant times are known only within [b, a]: b is read just before
# rate_limit_try and a just after it returned true.  A window of length P
# certainly held more than N grants if more than N grants have their whole
# [b, a] inside [b_i, b_i + P) for some i; that is what is checked, so a
# busy machine cannot make the test fail while a limiter that lets too many
# through still does.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use TradingTest;

my $node = TradingTest::node('ratelimit', conf => "restart_after_crash = on\n");
my $tmp = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', q{
CREATE TABLE grants (ep text, client int, b timestamptz, a timestamptz);
CREATE FUNCTION probe(ep text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    IF trading.rate_limit_try(ep) THEN
        INSERT INTO grants VALUES (ep, pg_backend_pid(), t0, clock_timestamp());
    END IF;
END $$;
-- the most grants certainly inside one window of length p
CREATE FUNCTION max_certain(e text, p interval) RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(max(cnt), 0) FROM (
        SELECT count(*) AS cnt
        FROM grants g1 JOIN grants g2
          ON g2.ep = g1.ep AND g2.b >= g1.b AND g2.a < g1.b + p
        WHERE g1.ep = e
        GROUP BY g1.ctid) s $$;
-- the same with the after-timestamps alone (informational)
CREATE FUNCTION max_naive(e text, p interval) RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(max(cnt), 0) FROM (
        SELECT count(*) AS cnt
        FROM grants g1 JOIN grants g2
          ON g2.ep = g1.ep AND g2.a >= g1.a AND g2.a < g1.a + p
        WHERE g1.ep = e
        GROUP BY g1.ctid) s $$;
});

sub hammer
{
	my ($ep, $seconds) = @_;
	my $script = "$tmp/$ep.sql";
	open my $fh, '>', $script or die;
	print $fh "SELECT probe('$ep');\n";
	close $fh;
	$node->command_ok(
		[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', $seconds, '-f', $script, 'postgres' ],
		"8 clients hammer $ep for $seconds s");
}

# --- one limit: 50 per 2 s, 8 clients, 10 s
$node->safe_psql('postgres', q{SELECT trading.rate_limit_set('t.contended', 50, '2 seconds')});
hammer('t.contended', 10);

my ($total, $clients, $certain, $naive) = split /\|/, $node->safe_psql('postgres', q{
    SELECT count(*), count(DISTINCT client),
           max_certain('t.contended', '2 seconds'), max_naive('t.contended', '2 seconds')
    FROM grants WHERE ep = 't.contended'});
note "grants: $total from $clients clients; most in a 2 s window: certain $certain, naive $naive";
cmp_ok($certain, '<=', 50, 'no 2-second window holds more than 50 grants');
# In 10 s a 50-per-2-s limit allows 250 grants (5 full windows).
cmp_ok($total, '>=', 225, 'at least 90% of the 250 grants the limit allows were granted');
cmp_ok($clients, '>', 1, 'grants went to several clients');

my ($granted, $refused) = split /\|/, $node->safe_psql('postgres', q{
    SELECT granted_total, refused_total FROM trading.rate_limit_status WHERE endpoint = 't.contended'});
is($granted, $total, 'granted_total counts exactly the grants');
cmp_ok($refused, '>', 0, 'refusals were counted');

# --- several limits: 5 per second and 12 per 3 seconds
$node->safe_psql('postgres', q{
    SELECT trading.rate_limit_set('t.multi', 5, '1 second');
    SELECT trading.rate_limit_set('t.multi', 12, '3 seconds');});
hammer('t.multi', 7);
my ($mtotal, $m1, $m3) = split /\|/, $node->safe_psql('postgres', q{
    SELECT count(*), max_certain('t.multi', '1 second'), max_certain('t.multi', '3 seconds')
    FROM grants WHERE ep = 't.multi'});
note "multi: $mtotal grants; most certain in 1 s: $m1, in 3 s: $m3";
cmp_ok($m1, '<=', 5, 'multi-limit endpoint: never more than 5 in a second');
cmp_ok($m3, '<=', 12, 'multi-limit endpoint: never more than 12 in 3 seconds');
cmp_ok($mtotal, '>=', 24, 'multi-limit endpoint: the 3-second limit was reached repeatedly');

# --- waiters are served in arrival order
$node->safe_psql('postgres', q{
    CREATE TABLE fifo_log (client int, granted_at timestamptz DEFAULT clock_timestamp());
    SELECT trading.rate_limit_set('t.fifo', 2, '1 hour');
    SELECT trading.rate_limit_try('t.fifo', 2);});

my %h;
sub start_waiter
{
	my ($client, $extra, $cost) = @_;
	my ($out, $err) = ('', '');
	$cost //= 1;
	my $sql = ($extra // '')
	  . "SELECT /* waiter $client */ trading.rate_limit_acquire('t.fifo', $cost, '60 seconds');"
	  . "INSERT INTO fifo_log (client) VALUES ($client);";
	$h{$client} = {
		out => \$out, err => \$err,
		run => IPC::Run::start(
			[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
			'>', \$out, '2>', \$err)
	};
}

sub waiting
{
	return $node->safe_psql('postgres',
		q{SELECT waiting FROM trading.rate_limit_status WHERE endpoint = 't.fifo'});
}

for my $c (1 .. 5)
{
	start_waiter($c);
	$node->poll_query_until('postgres',
		qq{SELECT waiting = $c FROM trading.rate_limit_status WHERE endpoint = 't.fifo'})
	  or die "waiter $c did not queue";
}
is(waiting(), 5, 'five waiters queued');

# a waiter that hits statement_timeout leaves the queue
start_waiter(6, "SET statement_timeout = '300ms';");
my $ok = 1;
$h{6}{run}->finish;
like(${ $h{6}{err} }, qr/canceling statement due to statement timeout/,
	'statement_timeout interrupts rate_limit_acquire');
is(waiting(), 5, 'the timed-out waiter left the queue');

# cancel waiter 3 and terminate waiter 4: both leave the queue
$node->safe_psql('postgres', q{
    SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%waiter 3 %' AND pid <> pg_backend_pid()});
$h{3}{run}->finish;
like(${ $h{3}{err} }, qr/canceling statement due to user request/, 'pg_cancel_backend interrupts a waiter');
$node->safe_psql('postgres', q{
    SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE query LIKE '%waiter 4 %' AND pid <> pg_backend_pid()});
$h{4}{run}->finish;
$node->poll_query_until('postgres',
	q{SELECT waiting = 3 FROM trading.rate_limit_status WHERE endpoint = 't.fifo'})
  or die 'cancelled waiters did not leave';
is(waiting(), 3, 'cancelled and terminated waiters left the queue');

# a waiter for 2 units, behind the others; the limit will drop to 1 per window
start_waiter(7, '', 2);
$node->poll_query_until('postgres',
	q{SELECT waiting = 4 FROM trading.rate_limit_status WHERE endpoint = 't.fifo'})
  or die 'waiter 7 did not queue';

# open the gate: one grant per 300 ms from now on
$node->safe_psql('postgres', q{
    SELECT trading.rate_limit_set('t.fifo', 1, '300 milliseconds');
    SELECT trading.rate_limit_drop('t.fifo', '1 hour');});
$h{$_}{run}->finish for (1, 2, 5, 7);
is(${ $h{$_}{err} }, '', "waiter $_ succeeded") for (1, 2, 5);
like(${ $h{7}{err} }, qr/cost 2 exceeds what endpoint "t.fifo" allows/,
	'a waiter whose cost no longer fits any window gets a clear error');

my $order = $node->safe_psql('postgres',
	q{SELECT string_agg(client::text, ',' ORDER BY granted_at) FROM fifo_log});
is($order, '1,2,5', 'waiters were granted in arrival order');
my $spread = $node->safe_psql('postgres',
	q{SELECT max(granted_at) - min(granted_at) >= interval '0.5 seconds' FROM fifo_log});
is($spread, 't', 'grants to waiters were spread out, not all at once');
is(waiting(), 0, 'queue is empty');

# --- windows survive a clean restart: a daily budget is not reset
$node->safe_psql('postgres', q{
    SELECT trading.rate_limit_set('t.daily', 5, '1 day');
    SELECT trading.rate_limit_try('t.daily') FROM generate_series(1, 3);});

# --- limits survive a restart (they live in the table)
$node->restart;
is($node->safe_psql('postgres', q{
    SELECT used || '/' || requests FROM trading.rate_limit_status WHERE endpoint = 't.daily'}),
	'3/5', 'grants of the last day are still counted after a clean restart');
is($node->safe_psql('postgres',
		q{SELECT string_agg(trading.rate_limit_try('t.daily')::text, ',') FROM generate_series(1, 3)}),
	'true,true,false', 'only the rest of the daily budget is granted');
ok(-e $node->data_dir . '/pg_stat/trading_ratelimit.state' ? 0 : 1,
	'the state file is removed once read');
$node->safe_psql('postgres', q{SELECT trading.rate_limit_drop('t.daily')});
is($node->safe_psql('postgres',
		q{SELECT string_agg(endpoint || ':' || requests || '/' || per, ' ' ORDER BY endpoint, per)
		  FROM trading.rate_limit_status WHERE endpoint LIKE 't.%'}),
	't.contended:50/00:00:02 t.fifo:1/00:00:00.3 t.multi:5/00:00:01 t.multi:12/00:00:03',
	'limits are back in shared memory after a restart');

# --- an immediate shutdown keeps the windows too (shared memory is intact)
$node->safe_psql('postgres', q{
    SELECT trading.rate_limit_set('t.crash', 2, '1 day');
    SELECT trading.rate_limit_try('t.crash') FROM generate_series(1, 2);});
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{
    SELECT used FROM trading.rate_limit_status WHERE endpoint = 't.crash'}),
	'2', 'an immediate shutdown keeps the windows');

# --- a backend crash re-creates shared memory: windows start empty, no
# stale state file is resurrected, and the limits come back from the table
my ($sout, $serr) = ('', '');
my $sleeper = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'SELECT pg_sleep(60) /* victim */' ],
	'>', \$sout, '2>', \$serr);
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%victim%' AND pid <> pg_backend_pid()})
  or die 'victim did not start';
my $victim = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%victim%' AND pid <> pg_backend_pid()});
kill 'KILL', $victim;
$sleeper->finish;
$node->poll_query_until('postgres', 'SELECT 1', '1') or die 'server did not come back';
is($node->safe_psql('postgres', q{
    SELECT used || '/' || requests FROM trading.rate_limit_status WHERE endpoint = 't.crash'}),
	'0/2', 'after a crash-restart the windows start empty and the limits are back');

$node->stop;
done_testing();

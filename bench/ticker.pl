# Ticker ingest: 3 connections x 3000 instruments in full mode at one tick
# per second each (9000 ticks/s) from the paper broker, for BENCH_SECONDS
# (default 120), while the broker worker keeps polling orders, trades,
# positions, holdings and margins.  Then a ramp of the offered rate to find
# the highest sustained ingest, and the baseline: psql \copy of the same
# rows into a table of the same shape, in the same run.
#
# Reports: ticks offered, stored, dropped (must be 0); tick-to-row latency
# p50/p99/max (commit timestamp of the row minus received_at; goal p99 <
# 100 ms); ingest rates against psql COPY (goal: at least 0.5x).  A
# benchmark, not a test: it fails only if it cannot measure or loses ticks.
#
#   DEV_DIR=/var/tmp/dev-x scripts/dev-check.sh tapcheck \
#       PROVE_TESTS=bench/ticker.pl PROVE_FLAGS="-I t/lib -v"
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TickerTest;
use Time::HiRes qw(time sleep);

my $secs = $ENV{BENCH_SECONDS} // 120;
my $flush_ms = $ENV{BENCH_FLUSH_MS} // 25;    # trading.ticker_flush_interval (its default)
my $n = 9000;
my $pb = TickerTest::broker(tick => 1000, synthetic => $n,
	ws => [ '--ws-tick-ms', 1000, '--ws-heartbeat-ms', 1000 ]);
my $node = TickerTest::node('bench', $pb, conf => qq{
track_commit_timestamp = on
shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = on
trading.ticker_flush_interval = '${flush_ms}ms'
trading.ticker_ping_interval = '2500ms'
trading.ticker_pong_timeout = '5s'
trading.ticker_data_timeout = '10s'
});
# the worker keeps polling (not quotes: the watchlist is streamed)
$node->safe_psql('postgres', q{
	UPDATE trading.poll_intervals SET enabled = true WHERE endpoint <> 'quotes';
	UPDATE trading.poll_intervals SET interval_ms = 1000 WHERE endpoint = 'orders';
	INSERT INTO trading.watchlist (instrument, mode)
	SELECT 'NSE:SYN' || i, 'full' FROM generate_series(1, 9000) i;
});
ok(TickerTest::wait_for($node, q{SELECT string_agg(state || ':' || subscriptions, ',' ORDER BY connection)
	= 'connected:3000,connected:3000,connected:3000' FROM trading.ticker_status}, 60),
	'three connections of 3000 instruments')
  or diag($node->safe_psql('postgres', 'SELECT * FROM trading.ticker_status'));
sleep 5;    # let the first snapshot ticks settle

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub ws { return TickerTest::ws($pb); }

# ---- the first ticks after subscribing: 9000 instruments within 50 ms ----
diag('first ticks after subscribing (a burst of every instrument at once): ' . q1(q{
	SELECT count(*) || ' ticks, tick-to-row p50 '
	    || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY l))::numeric, 1) || ' p99 '
	    || round((percentile_cont(0.99) WITHIN GROUP (ORDER BY l))::numeric, 1) || ' max '
	    || round(max(l)::numeric, 1) || ' ms'
	FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at) * 1000 AS l
	      FROM trading.ticks WHERE received_at < (SELECT min(received_at) FROM trading.ticks)
	                                            + interval '0.5 s') s}));

# ---- the main run: 9000 ticks/s for $secs seconds ----
my $polls0 = q1("SELECT sum(requests_total) FROM trading.worker_status");
my $sent0 = ws()->{packets_total};
my $t0 = q1('SELECT now()');
my $w0 = time;
sleep $secs;
my $t1 = q1('SELECT now()');
my $w1 = time;
my $sent1 = ws()->{packets_total};
my $polls1 = q1("SELECT sum(requests_total) FROM trading.worker_status");
my $stored = q1("SELECT count(*) FROM trading.ticks WHERE received_at >= '$t0' AND received_at < '$t1'");
my $offered = ($sent1 - $sent0) / ($w1 - $w0);
my $rate = $stored / ($w1 - $w0);
my ($p50, $p99, $max) = split /\|/, q1(qq{
	SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 1),
	       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1),
	       round(max(l)::numeric, 1)
	FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at) * 1000 AS l
	      FROM trading.ticks WHERE received_at >= '$t0' AND received_at < '$t1') s});
diag(sprintf('main run: %d s, broker sent %.0f ticks/s, stored %.0f ticks/s (%d rows); '
	  . 'tick-to-row latency ms: p50 %s p99 %s max %s; polls during the run: %d',
	$w1 - $w0, $offered, $rate, $stored, $p50, $p99, $max, $polls1 - $polls0));
cmp_ok($polls1 - $polls0, '>', $secs, 'the broker worker kept polling');
diag('worker time in the run: ' . q1(q{SELECT 'COPY of ticks ' || round(copy_seconds::numeric, 1)
	|| ' s, quote upserts ' || round(quotes_seconds::numeric, 1) || ' s, flushes ' || flushes
	FROM trading.ticker_stats}));

# ---- nothing dropped at 9000/s: stop the stream, let the worker drain ----
TickerTest::ws_set($pb, tick_ms => 1000000000);    # stops the stream
my ($prev, $same) = (-1, 0);
for (1 .. 300)
{
	sleep 1;
	my $c = q1('SELECT count(*) FROM trading.ticks');
	$same = $c == $prev ? $same + 1 : 0;
	last if $same >= 5;
	$prev = $c;
}
my $total_sent = ws()->{packets_total};
my ($total_rows, $dropped, $errors, $malformed) = split /\|/, q1(q{
	SELECT (SELECT count(*) FROM trading.ticks), ticks_dropped, flush_errors,
	       (SELECT sum(malformed_frames_total) FROM trading.ticker_status)
	FROM trading.ticker_stats});
diag("main run: broker sent $total_sent ticks in all, stored $total_rows, dropped $dropped, "
	  . "failed flushes $errors, malformed frames $malformed, slow readers dropped by the broker "
	  . ws()->{dropped_slow_total});
is($total_rows, $total_sent, 'every tick the broker sent is stored');
is($dropped, 0, 'nothing dropped');

# ---- ramp: offered rate doubled until the worker no longer keeps up ----
my $best = $rate;
my @ramp = ($ENV{BENCH_RAMP} // 1) ? (500, 250, 125) : ();
for my $tick_ms (@ramp)
{
	TickerTest::ws_set($pb, tick_ms => $tick_ms);
	sleep 3;
	my $s0 = ws()->{packets_total};
	my $a = q1('SELECT now()');
	my $wa = time;
	sleep 15;
	my $wb = time;
	my $bb = q1('SELECT now()');
	my $s1 = ws()->{packets_total};
	my $got = q1("SELECT count(*) FROM trading.ticks WHERE received_at >= '$a' AND received_at < '$bb'");
	my $lag = q1(qq{SELECT round((percentile_cont(0.99) WITHIN GROUP (ORDER BY l))::numeric, 1) FROM
		(SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at) * 1000 AS l
		 FROM trading.ticks WHERE received_at >= '$a' AND received_at < '$bb') s});
	my $off = ($s1 - $s0) / ($wb - $wa);
	my $st = $got / ($wb - $wa);
	diag(sprintf('ramp: ticks every %d ms per instrument: broker sent %.0f/s, stored %.0f/s, p99 %s ms',
		$tick_ms, $off, $st, $lag));
	$best = $st if $st > $best;
}
diag('ramp: the broker drops a reader that falls 4 MB behind, the worker drops the oldest ticks of a '
	  . 'full buffer; losses are expected past the worker\'s capacity: slow readers dropped by the broker '
	  . ws()->{dropped_slow_total} . ', ticks dropped by the worker '
	  . q1('SELECT ticks_dropped FROM trading.ticker_stats'))
  if @ramp;

# ---- baseline: psql \copy of the same rows ----
my $dir = $node->basedir;
q1(qq{COPY (SELECT * FROM trading.ticks WHERE received_at >= '$t0' AND received_at < '$t1')
	TO '$dir/ticks.copy'});
q1(q{CREATE TABLE copy_target (LIKE trading.ticks INCLUDING ALL) PARTITION BY RANGE (received_at);
	CREATE TABLE copy_target_p PARTITION OF copy_target DEFAULT});
my $c0 = time;
my ($ret, $out, $err) = $node->psql('postgres', "\\copy copy_target FROM '$dir/ticks.copy'");
my $c1 = time;
is($ret, 0, 'psql \copy of the same rows') or diag($err);
my $copy_rate = $stored / ($c1 - $c0);
diag(sprintf('psql \copy: %d rows in %.2f s = %.0f rows/s; worker sustained %.0f/s at 9000 offered '
	  . '(%.2fx of COPY), highest stored %.0f/s (%.2fx of COPY)',
	$stored, $c1 - $c0, $copy_rate, $rate, $rate / $copy_rate, $best, $best / $copy_rate));

$node->stop;
$pb->stop;
done_testing();

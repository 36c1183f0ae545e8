# Historical candles: the paper broker's endpoint (deterministic walk,
# Kite's range limits, oi, continuous), the fixtures historical_minute.json
# and historical_oi.json applied exactly (timestamps included), a one-year
# minute backfill of 3 instruments under kite.historical with zero 429s at
# >= 95% of the budget, the same after a SIGKILL of the worker mid-way (no
# duplicate rows, no gaps), cancel, and fetch_candles' errors.
#
# The sizes are the real ones: Kite's 3 requests/s on both sides
# (kite.historical and the paper broker's --rate-historical) and Kite's
# range limits (a minute request covers at most 60 days), so a year of 3
# instruments is 21 requests, 7 s of budget.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use TradingTest;
use PaperBroker;
use WorkerTest;

my $RATE = 3;
my $MARGIN_MS = 40;
my $MAX_DAYS = 'minute=60,3minute=100,5minute=100,10minute=100,15minute=200,30minute=200,60minute=400,day=2000';
my $mocks = TradingTest::shared_dir() . '/kite-mocks';

my $b = PaperBroker->start(ratelimit => 1,
	args => [ '--rate-historical', $RATE, '--historical-max-days', $MAX_DAYS,
			  '--synthetic-instruments', 8, '--seed', 11 ]);

# ---- the paper broker's endpoint ----
my $path = '/instruments/historical/408065/minute';
my $r1 = $b->api(GET => $path, query => { from => '2025-03-03 09:15:00', to => '2025-03-04 15:29:00' });
is($r1->{status}, 200, 'historical: 200');
my $c1 = $r1->{json}{data}{candles};
is(scalar(@$c1), 750, 'two trading days of minute candles (375 each)');
is($c1->[0][0], '2025-03-03T09:15:00+0530', 'Kite timestamp format, from 09:15 IST');
is($c1->[-1][0], '2025-03-04T15:29:00+0530', 'to is inclusive');
is(scalar(@{ $c1->[0] }), 6, 'six fields without oi');
sleep 1;
my $r2 = $b->api(GET => $path, query => { from => '2025-03-04 09:15:00', to => '2025-03-04 15:29:00' });
is_deeply($r2->{json}{data}{candles}, [ @$c1[375 .. 749] ], 'the walk does not depend on the range asked');
my $b2 = PaperBroker->start(args => [ '--seed', 11 ]);
is_deeply($b2->api(GET => $path, query => { from => '2025-03-03 09:15:00', to => '2025-03-04 15:29:00' })->{json}{data}{candles},
	$c1, 'the same seed gives the same candles');
my $b3 = PaperBroker->start(args => [ '--seed', 12 ]);
isnt(encode_json($b3->api(GET => $path, query => { from => '2025-03-03 09:15:00', to => '2025-03-03 09:20:00' })->{json}{data}{candles}),
	encode_json([ @$c1[0 .. 5] ]), 'another seed gives other candles');
my $five = $b2->api(GET => '/instruments/historical/408065/5minute',
	query => { from => '2025-03-03 09:15:00', to => '2025-03-03 09:15:00', oi => 1 })->{json}{data}{candles};
is_deeply($five->[0][0], '2025-03-03T09:15:00+0530', '5minute candle');
is($five->[0][1], $c1->[0][1], '5minute open = first minute open');
is($five->[0][4], $c1->[4][4], '5minute close = fifth minute close');
is($five->[0][5], $c1->[0][5] + $c1->[1][5] + $c1->[2][5] + $c1->[3][5] + $c1->[4][5], '5minute volume = sum');
is(scalar(@{ $five->[0] }), 7, 'oi=1 adds a seventh field');
sleep 1;
my $over = $b->api(GET => $path, query => { from => '2025-03-01 00:00:00', to => '2025-04-30 00:00:01' });
is($over->{status} . ' ' . $over->{json}{error_type}, '400 InputException', 'beyond the range limit: InputException');
like($over->{json}{message}, qr/60 days/, 'the message names the limit');
my $cont = $b2->api(GET => $path, query => { from => '2025-03-03 09:15:00', to => '2025-03-03 09:20:00', continuous => 1 });
is($cont->{status}, 400, 'continuous for an equity: InputException');
my $fut = '/instruments/historical/90000004/day';
sleep 1;
my $f1 = $b->api(GET => $fut, query => { from => '2025-01-01', to => '2025-01-31' });
is($f1->{status} . ':' . scalar(@{ $f1->{json}{data}{candles} }), '200:0',
	'a future (expiry 2030) outside its trading window has no candles');
my $f2 = $b->api(GET => $fut, query => { from => '2025-01-01', to => '2025-01-31', continuous => 1 });
is($f2->{status} . ':' . scalar(@{ $f2->{json}{data}{candles} }), '200:23',
	'continuous=1 gives the stitched series (23 trading days)');
$b2->stop;
$b3->stop;
sleep 1;
my $burst = 0;
$burst += $b->api(GET => $path, query => { from => '2025-03-03 09:15:00', to => '2025-03-03 09:16:00' })->{status} == 429
  for 1 .. $RATE + 2;
is($burst, 2, "the broker enforces $RATE historical requests/s");

# ---- the node ----
# a SIGKILLed worker makes the postmaster reinitialise, as in production
my $node = WorkerTest::node('candles', $b, conf => qq{
trading.market_worker = on
trading.historical_max_days = '$MAX_DAYS'
trading.market_rate_margin = '${MARGIN_MS}ms'
restart_after_crash = on
});
$node->safe_psql('postgres', qq{
	SELECT trading.rate_limit_set('kite.historical', $RATE, '1 second');
	CREATE ROLE regress_analyst IN ROLE trading_analyst;
});
ok($node->poll_query_until('postgres', 'SELECT count(*) > 100 FROM trading.instruments'),
	'the worker loaded the paper broker\'s instruments');

# ---- conformance: the fixtures through _backfill_apply, exactly ----
for my $fx ([ 'historical_minute.json', 'minute', 'false' ], [ 'historical_oi.json', 'minute', 'true' ])
{
	my ($file, $interval, $oi) = @$fx;
	my $json = slurp_file("$mocks/$file");
	my $candles = decode_json($json)->{data}{candles};
	# a job the worker cannot run (no session yet): applied by hand
	my $day = substr($candles->[0][0], 0, 10);
	my $job = $node->safe_psql('postgres', qq{
		INSERT INTO trading.backfill_queue (instrument, instrument_token, "interval", from_ts, to_ts, oi,
		                                    state, chunk_days, requests_total)
		VALUES ('fixture', 1, '$interval', '$day 00:00+05:30', '$day 23:59:59+05:30', $oi, 'running', 60, 1) RETURNING id});
	$json =~ s/'/''/g;
	is($node->safe_psql('postgres', "SELECT trading._backfill_apply($job, 0, '$json')"),
		scalar(@$candles), "$file: every candle upserted");
	my $want = join("\n", map { join(',', @$_[0 .. 5], $oi eq 'true' ? $_->[6] : '') } @$candles);
	my $got = $node->safe_psql('postgres', qq{
		SELECT string_agg(concat_ws(',', to_char(ts AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD"T"HH24:MI:SS"+0530"'),
		                            open, high, low, close, volume, coalesce(oi::text, '')), E'\\n' ORDER BY ts)
		  FROM trading.candles WHERE instrument_token = 1});
	is($got, $want, "$file: timestamps and values exactly as sent");
	is($node->safe_psql('postgres', qq{SELECT state || ':' || rows FROM trading.backfill_jobs WHERE id = $job}),
		'done:' . scalar(@$candles), "$file: the job is done with its row count");
	$node->safe_psql('postgres', 'DELETE FROM trading.candles WHERE instrument_token = 1');
}
is($node->safe_psql('postgres', q{
	SELECT extract(epoch FROM ts) FROM trading.candles WHERE false
	UNION ALL SELECT extract(epoch FROM '2017-12-15T09:15:00+0530'::timestamptz)::bigint}),
	'1513309500', 'a Kite timestamp is the exact instant');

# bad replies fail the job with a clear message (not applied)
for my $bad ([ '{"status":"success","data":{"candles":[["2017-12-15 09:15:00",1,1,1,1,1]]}}', 'malformed' ],
	[ '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",1,2,3,1,1]]}}', 'malformed' ],
	[ '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530","1",1,1,1,1]]}}', 'malformed' ],
	[ 'not json', 'not JSON' ])
{
	my $job = $node->safe_psql('postgres', q{
		INSERT INTO trading.backfill_queue (instrument, instrument_token, "interval", from_ts, to_ts,
		                                    state, chunk_days, requests_total)
		VALUES ('fixture', 2, 'minute', '2000-01-01', '2000-01-02', 'running', 60, 1) RETURNING id});
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT trading._backfill_apply($job, 0, '$bad->[0]')");
	like($err, qr/TR502.*$bad->[1]/, "a bad candle reply is refused: $bad->[1]");
	$node->safe_psql('postgres', "DELETE FROM trading.backfill_queue WHERE id = $job");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.candles WHERE instrument_token = 2'), '0',
	'nothing of a refused reply is kept');

# the apply's semantics: a repeated fetch is an upsert; oi is kept when the
# new reply has none; two candles of one instant, a Kite error envelope
sub apply_reply
{
	my ($token, $oi, $reply) = @_;
	my $job = $node->safe_psql('postgres', qq{
		INSERT INTO trading.backfill_queue (instrument, instrument_token, "interval", from_ts, to_ts, oi,
		                                    state, chunk_days, requests_total)
		VALUES ('fixture', $token, 'minute', '2017-12-15 00:00+05:30', '2017-12-15 23:59:59+05:30', $oi,
		        'running', 60, 1) RETURNING id});
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT trading._backfill_apply($job, 0, '$reply')");
	return $ret == 0 ? $out : ($err =~ /ERROR:\s+(\w{5}): (.*)/ ? "$1: $2" : $err);
}
is(apply_reply(4, 'true', '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",10,12,9,11,100,5000],'
	. '["2017-12-15T09:16:00+0530",11,13,10,12,200,5100]]}}'), '2', 'first apply: 2 candles with oi');
is(apply_reply(4, 'false', '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",10,12,9,11.5,150],'
	. '["2017-12-15T09:17:00+0530",12,13,11,12.5,300]]}}'), '2', 'a second reply over the same range: upserted');
is($node->safe_psql('postgres', q{
	SELECT string_agg(concat_ws(',', to_char(ts AT TIME ZONE 'Asia/Kolkata', 'HH24:MI'), close, volume, coalesce(oi::text, '-')),
	                  ' ' ORDER BY ts)
	  FROM trading.candles WHERE instrument_token = 4}),
	'09:15,11.5,150,5000 09:16,12,200,5100 09:17,12.5,300,-',
	'the repeated candle is updated with its oi kept, the others untouched or added');
like(apply_reply(5, 'false', '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",10,12,9,11,100],'
	. '["2017-12-15T09:15:00+0530",10,12,9,11,100]]}}'), qr/^TR502: .*malformed candle/,
	'two candles of one instant: TR502');
like(apply_reply(5, 'false', '{"status":"error","message":"Gateway timed out","error_type":"NetworkException","data":null}'),
	qr/^TR504: the broker could not serve the request \(NetworkException\): Gateway timed out/,
	'a NetworkException: TR504 (retried)');
like(apply_reply(5, 'false', '{"status":"error","message":"invalid token","error_type":"InputException","data":null}'),
	qr/^TR502: the broker refused the request \(InputException\): invalid token/,
	'an InputException: TR502 (the job fails)');
like(apply_reply(5, 'false', '{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",1e999999,1,1,1,1]]}}'),
	qr/^TR502: /, 'a number beyond numeric: TR502');
like(apply_reply(5, 'false', '{"status":"success","data":{"candles":[["2017-02-30T09:15:00+0530",1,1,1,1,1]]}}'),
	qr/^TR502: .*1 malformed/, 'a date that does not exist: TR502');
is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.candles WHERE instrument_token = 5'), '0',
	'nothing of those replies is kept');
$node->safe_psql('postgres', q{
	DELETE FROM trading.candles WHERE instrument_token IN (4, 5);
	DELETE FROM trading.backfill_queue WHERE instrument = 'fixture'});

# ---- fetch_candles: argument errors ----
sub sqlstate_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $err =~ /ERROR:\s+([0-9A-Z]{5})/ ? $1 : "no error ($out)";
}
is(sqlstate_of("SELECT trading.fetch_candles('NSE:NOSUCH', 'minute', '2025-01-01', '2025-01-02')"),
	'TR503', 'an unknown instrument: TR503');
is(sqlstate_of("SELECT trading.fetch_candles('NSE:INFY', 'week', '2025-01-01', '2025-01-02')"),
	'22023', 'an unknown interval: 22023');
is(sqlstate_of("SELECT trading.fetch_candles('NSE:INFY', 'minute', '2025-01-02', '2025-01-01')"),
	'22023', 'from after to: 22023');
is(sqlstate_of("SELECT trading.fetch_candles('NSE:INFY', 'minute', NULL, '2025-01-01')"),
	'22004', 'NULL: 22004');
is(sqlstate_of("SET ROLE regress_reader; SELECT trading.fetch_candles('NSE:INFY', 'minute', '2025-01-01', '2025-01-02')"),
	'42501', 'a reader may not queue a backfill');
is(sqlstate_of('SELECT trading.cancel_backfill(999999)'), '42704', 'cancel of an unknown job: 42704');

# ---- a year of minute candles for 3 instruments at the full budget ----
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
my $rl0 = $b->stats->{rate_limited}{historical};
my $served0 = $b->stats->{historical}{served};
my @jobs = split /\n/, $node->safe_psql('postgres', q{
	SET ROLE regress_analyst;
	SELECT trading.fetch_candles(s, 'minute', '2025-01-01 00:00+05:30', '2025-12-31 23:59:59+05:30')
	  FROM unnest(ARRAY['NSE:INFY', 'NSE:SBIN', '2953217']) s});
is(scalar(@jobs), 3, 'three jobs queued by an analyst');
ok($node->poll_query_until('postgres',
	"SELECT state = 'running' AND percent > 0 AND eta IS NOT NULL FROM trading.backfill_jobs WHERE id = $jobs[0]"),
	'backfill_jobs shows progress and an ETA while running');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(state = 'done') FROM trading.backfill_jobs WHERE id IN (" . join(',', @jobs) . ')'),
	'the three backfills complete');
my $st = $b->stats;
my $n = $st->{historical}{served} - $served0;
is($node->safe_psql('postgres',
	"SELECT sum(requests_total) || ':' || sum(requests_done) || ':' || sum(errors) FROM trading.backfill_jobs WHERE id IN (" . join(',', @jobs) . ')'),
	"21:21:0", '21 requests of at most 60 days, none failed');
is($n, 21, 'the broker served exactly those requests');
is($st->{rate_limited}{historical} - $rl0, 0, 'zero 429s');
# A sliding window of $RATE/s allows n requests in floor((n-1)/RATE)
# seconds at best; the worker keeps trading.market_rate_margin beyond each
# window (a safety setting against the broker counting a request late), so
# the budget it is configured to use is RATE per (1 s + margin).  The span
# runs from the jobs' start (before the first request) to the broker's
# arrival of the last one.  The worker sends the next requests while it
# applies a reply (at most 3 ahead), so the pace is the budget's unless
# the machine is too loaded to apply 3 replies of ~16,000 candles a second.
my $windows = int(($n - 1) / $RATE);
my $span = $st->{historical}{last_served} - $node->safe_psql('postgres',
	"SELECT extract(epoch FROM min(started_at)) FROM trading.backfill_jobs WHERE id IN (" . join(',', @jobs) . ')');
my $util = $windows * (1 + $MARGIN_MS / 1000) / $span;
diag(sprintf('%d requests in %.2f s: %.1f%% of the %d/s budget with a %d ms margin, %.1f%% of the bare 3/s',
	$n, $span, 100 * $util, $RATE, $MARGIN_MS, 100 * $windows / $span));
ok($util >= 0.95, sprintf('the pace follows the budget (%.1f%% of it used)', 100 * $util));

# the worker's status and counters (since the server started)
is($node->safe_psql('postgres', q{
	SET ROLE regress_reader;
	SELECT concat_ws('|', running, backfill_requests >= 21, candles_written >= 3 * 97875,
	                 rate_limit_waits > 0, backfill_retries, backfill_failures,
	                 instruments_rows > 100, instruments_loaded_at IS NOT NULL,
	                 instruments_load_seconds >= 0, instruments_last_load_failed)
	  FROM trading.market_worker_status}),
	't|t|t|t|0|0|t|t|t|f',
	'market_worker_status: running, requests, candles written, rate-limit waits, no retries or failures, the last load');
is($node->safe_psql('postgres', q{
	SET ROLE regress_reader;
	SELECT concat_ws('|', worker_up, backfill_requests_total >= 21, instruments_age_seconds < 3600,
	                 instruments_load_failed, backfill_jobs_failed_1d)
	  FROM trading.metrics_market}),
	'1|t|t|0|0', 'metrics_market: the same as metrics');

my $gaps = q{
SELECT count(*) FROM (
    SELECT ts, lead(ts) OVER w AS next_ts
      FROM trading.candles
     WHERE instrument_token = %s AND "interval" = 'minute'
    WINDOW w AS (ORDER BY ts)) s
 WHERE next_ts - ts <> interval '1 minute'
   AND (next_ts AT TIME ZONE 'Asia/Kolkata')::date = (ts AT TIME ZONE 'Asia/Kolkata')::date};
for my $tok (408065, 779521, 2953217)
{
	is($node->safe_psql('postgres', qq{
		SELECT count(*) || ':' || count(DISTINCT ts) || ':' || count(DISTINCT (ts AT TIME ZONE 'Asia/Kolkata')::date)
		  FROM trading.candles WHERE instrument_token = $tok AND "interval" = 'minute'}),
		'97875:97875:261', "$tok: 261 trading days x 375 minutes, no duplicates");
	is($node->safe_psql('postgres', sprintf($gaps, $tok)), '0', "$tok: no gap within a day");
}

# ---- SIGKILL of the worker in the middle (a year of 3 other instruments,
# 21 requests): resumes, no duplicates, no gaps ----
@jobs = split /\n/, $node->safe_psql('postgres', q{
	SELECT trading.fetch_candles(s, 'minute', '2024-01-01 00:00+05:30', '2024-12-31 23:59:59+05:30')
	  FROM unnest(ARRAY['NSE:INFY', 'NSE:RELIANCE', 'NSE:HDFCBANK']) s});
ok($node->poll_query_until('postgres',
	"SELECT sum(requests_done) >= 8 FROM trading.backfill_queue WHERE id IN (" . join(',', @jobs) . ')'),
	'the second backfill is under way');
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'trading market data'");
my $done_before = $node->safe_psql('postgres',
	"SELECT sum(requests_done) FROM trading.backfill_queue WHERE id IN (" . join(',', @jobs) . ')');
ok(kill('KILL', $pid), "SIGKILL to the market data worker ($pid) after $done_before requests");
ok($node->poll_query_until('postgres',
	"SELECT bool_and(state = 'done') FROM trading.backfill_jobs WHERE id IN (" . join(',', @jobs) . ')'),
	'the backfills resume and complete');
for my $tok (408065, 738561, 341249)
{
	is($node->safe_psql('postgres', qq{
		SELECT count(*) || ':' || count(DISTINCT ts) || ':' || count(DISTINCT (ts AT TIME ZONE 'Asia/Kolkata')::date)
		  FROM trading.candles WHERE instrument_token = $tok AND "interval" = 'minute'
		   AND ts >= '2024-01-01 00:00+05:30' AND ts < '2025-01-01 00:00+05:30'}),
		'98250:98250:262', "$tok: after the kill, 262 trading days x 375 minutes, no duplicates");
	is($node->safe_psql('postgres', sprintf($gaps, $tok)), '0', "$tok: no gap within a day");
}

# ---- cancel ----
my $long = $node->safe_psql('postgres',
	"SELECT trading.fetch_candles('NSE:INFY', 'minute', '2015-01-01', '2023-12-31')");
ok($node->poll_query_until('postgres', "SELECT requests_done >= 2 FROM trading.backfill_queue WHERE id = $long"),
	'a long backfill runs');
is($node->safe_psql('postgres', "SET ROLE regress_analyst; SELECT trading.cancel_backfill($long)"), 't',
	'cancel_backfill returns true');
my $after = $node->safe_psql('postgres', "SELECT requests_done FROM trading.backfill_queue WHERE id = $long");
my $served = $b->stats->{historical}{served};
sleep 2;
is($node->safe_psql('postgres', "SELECT state || ':' || requests_done FROM trading.backfill_jobs WHERE id = $long"),
	"cancelled:$after", 'the job stays cancelled and makes no progress');
# the worker has at most 3 requests out ahead of the one it applies, and
# may send one more into a freed slot before it sees the cancel
ok($b->stats->{historical}{served} - $served <= 4, 'no further requests (those sent ahead at most)');
is($node->safe_psql('postgres', "SELECT trading.cancel_backfill($long)"), 'f', 'cancelling again: false');

# ---- a broker refusal fails the job with its message ----
my $cjob = $node->safe_psql('postgres',
	"SELECT trading.fetch_candles('NSE:INFY', 'day', '2025-01-01', '2025-02-01', continuous => true)");
ok($node->poll_query_until('postgres', "SELECT state = 'failed' FROM trading.backfill_jobs WHERE id = $cjob"),
	'an InputException fails the job');
like($node->safe_psql('postgres', "SELECT last_error FROM trading.backfill_jobs WHERE id = $cjob"),
	qr/continuous/, 'with the broker\'s message');
is($node->safe_psql('postgres', q{
	SELECT backfill_failures >= 1 AND backfill_jobs_failed_1d >= 1 FROM trading.market_worker_status}),
	't', 'the failed job is counted (backfill_failures, backfill_jobs_failed_1d)');
my $fjob = $node->safe_psql('postgres',
	"SELECT trading.fetch_candles('NFO:SYN000004FUT', 'day', '2025-01-01 00:00+05:30', '2025-01-31 23:59:59+05:30', continuous => true, oi => true)");
ok($node->poll_query_until('postgres', "SELECT state = 'done' FROM trading.backfill_jobs WHERE id = $fjob"),
	'a continuous future backfill completes');
is($node->safe_psql('postgres',
	"SELECT count(*) || ':' || count(oi) FROM trading.candles WHERE instrument_token = 90000004 AND \"interval\" = 'day'"),
	'23:23', 'continuous day candles with oi');

# a failed instrument load shows in the status (the worker records its
# failures in trading.instrument_loads; one is recorded here by hand)
$node->safe_psql('postgres', q{
	INSERT INTO trading.instrument_loads (trigger, started_at, finished_at, error)
	VALUES ('daily', now(), now(), 'HTTP 500 from the broker')});
is($node->safe_psql('postgres', q{
	SELECT concat_ws('|', instruments_last_load_failed, instruments_error, instruments_failed_at IS NOT NULL,
	                 instruments_loaded_at IS NOT NULL, m.instruments_load_failed)
	  FROM trading.market_worker_status, trading.metrics_market m}),
	't|HTTP 500 from the broker|t|t|1', 'a failed load: flagged, with its error; the last good load still shown');

my $log = slurp_file($node->logfile);
unlike($log, qr/server process .* terminated by signal (?!9)/, 'nothing crashed but the killed worker');

$b->stop;
$node->stop;
done_testing();

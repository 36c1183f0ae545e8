# The ticker cannot die silently: every fault of the paper broker's
# WebSocket ticker (silent stall with and without pongs, abrupt close,
# malformed packet, truncated frame, slow-reading client, refused handshake)
# leads to a reconnect for the right reason, with every subscription and
# mode restored and no tick stored twice; a 403 marks the session expired
# and a new session reconnects.  Also: quote polling pauses for streamed
# instruments, and the 3000-per-connection spread.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TickerTest;
use Time::HiRes qw(usleep);

my $broker = TickerTest::broker(ws => [ '--ws-tick-ms', 100 ], synthetic => 3010);
my $node = TickerTest::node('faults', $broker);
TickerTest::watch($node, 'NSE:INFY' => 'full', 'NSE:SBIN' => 'quote', 'NSE:RELIANCE' => 'ltp');

sub status
{
	return $node->safe_psql('postgres', q{
		SELECT state || '|' || reconnects_total || '|' || coalesce(last_reconnect_reason, '')
		FROM trading.ticker_status WHERE connection = 1});
}

sub reconnects
{
	return $node->safe_psql('postgres',
		'SELECT reconnects_total FROM trading.ticker_status WHERE connection = 1');
}

# streaming, three subscriptions at the broker, fresh ticks of each mode
sub restored
{
	my ($since) = @_;
	my $ws = TickerTest::ws($broker);
	return 0 unless @{ $ws->{connections} } == 1 && $ws->{connections}[0]{subscriptions} == 3;
	return $node->safe_psql('postgres', qq{
		SELECT count(DISTINCT (instrument_token, mode)) = 3
		  AND bool_and((instrument_token, mode) IN ((408065, 'full'), (779521, 'quote'), (738561, 'ltp')))
		FROM trading.ticks WHERE received_at > '$since'}) eq 't';
}

sub wait_restored
{
	my ($since, $secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		return 1 if restored($since);
		usleep(100_000);
	}
	return 0;
}

sub settings
{
	my (%s) = @_;
	$node->safe_psql('postgres',
		join('', map { "ALTER SYSTEM SET trading.$_ = '$s{$_}';" } sort keys %s)
		  . 'SELECT pg_reload_conf();');
	sleep 1;
}

ok(TickerTest::wait_for($node, q{SELECT state = 'connected' FROM trading.ticker_status
	WHERE connection = 1}, 20), 'connected') or diag(status());
ok(wait_restored('-infinity', 20), 'streaming three instruments in three modes');

# each case: broker settings to arm, the reason expected, ticker settings
my @cases = (
	[ 'silent stall, pongs continue: the data watchdog',
		{ stall => 1, stall_pongs => 1 }, qr/^data timeout$/,
		{ ticker_pong_timeout => '30s', ticker_data_timeout => '1500ms' } ],
	[ 'silent stall, no pongs: the pong deadline',
		{ stall => 1, stall_pongs => 0 }, qr/^pong timeout$/,
		{ ticker_pong_timeout => '1500ms', ticker_data_timeout => '30s' } ],
	[ 'abrupt close', { close => 1, stall_pongs => 1 }, qr/closed|connection/,
		{ ticker_pong_timeout => '1500ms', ticker_data_timeout => '1500ms' } ],
	[ 'malformed packet', { malformed => 1 }, qr/^malformed frame \(packet of unknown length\)$/ ],
	[ 'truncated frame', { truncate => 1 }, qr/^malformed frame \((frame ends inside a packet|packet count larger than the frame)\)$/ ],
	[ 'slow-reading client', { slow => 1, max_queue_kb => 1 }, qr/closed|connection/ ],
);
for my $c (@cases)
{
	my ($what, $arm, $reason, $conf) = @$c;
	settings(%$conf) if $conf;
	my $before = reconnects();
	my $malformed_before = $node->safe_psql('postgres',
		'SELECT malformed_frames_total FROM trading.ticker_status WHERE connection = 1');
	my $t0 = TickerTest::now();
	TickerTest::ws_set($broker, %$arm);
	ok(TickerTest::wait_for($node, qq{SELECT reconnects_total > $before
		FROM trading.ticker_status WHERE connection = 1}, 30), "$what: reconnected")
	  or diag(status());
	my $since = $node->safe_psql('postgres', 'SELECT now()');
	note(sprintf('%s: reconnect after %.2f s', $what, TickerTest::now() - $t0));
	like((split /\|/, status(), 3)[2], $reason, "$what: the reason");
	ok(wait_restored($since, 30), "$what: subscriptions and modes restored, ticks again")
	  or diag(status(), explain(TickerTest::ws($broker)));
	if ($what =~ /malformed|truncated/)
	{
		cmp_ok($node->safe_psql('postgres',
				'SELECT malformed_frames_total FROM trading.ticker_status WHERE connection = 1'),
			'>', $malformed_before, "$what: counted as a malformed frame");
	}
	TickerTest::ws_set($broker, max_queue_kb => 4096) if $arm->{max_queue_kb};
}
is(TickerTest::ws($broker)->{dropped_slow_total}, 1, 'the broker dropped the slow reader once');

# ---------------------------------------------------------------------
# TokenException: a refused handshake (403) marks the session expired
# ---------------------------------------------------------------------
TickerTest::ws_set($broker, refuse => 1, close => 1);
ok(TickerTest::wait_for($node, q{SELECT worker_state = 'session_expired'
	FROM trading.ticker_status WHERE connection = 1}, 30), '403 on the handshake: session expired')
  or diag(status());
like((split /\|/, status(), 3)[2], qr/HTTP 403/, 'the reason names the 403');
is($node->safe_psql('postgres', 'SELECT state FROM trading.broker_session_status'),
	'expired', 'the stored session is marked expired, like the poller does');
my $conns = TickerTest::ws($broker)->{connections_total};
sleep 2;
is(TickerTest::ws($broker)->{connections_total}, $conns, 'no reconnect attempts with an expired session');
my $since = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres',
	q{SELECT trading.set_broker_session('paper_api_key', 'paper_access_token')});
ok(wait_restored($since, 30), 'a new session reconnects, subscriptions restored')
  or diag(status());

# ---------------------------------------------------------------------
# no tick stored twice, nothing dropped
# ---------------------------------------------------------------------
is($node->safe_psql('postgres', q{SELECT count(*) FROM (
	SELECT instrument_token, received_at FROM trading.ticks GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'no tick stored twice across the reconnects');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM trading.ticks'), '<=',
	TickerTest::ws($broker)->{packets_total}, 'no more ticks stored than the broker sent');
is($node->safe_psql('postgres', 'SELECT ticks_dropped FROM trading.ticker_stats'), '0',
	'no tick dropped by the worker');

# ---------------------------------------------------------------------
# quote polling pauses for streamed instruments, resumes without them
# ---------------------------------------------------------------------
$node->safe_psql('postgres', q{
	INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:EMMBI-BL', 'ltp');
	UPDATE trading.poll_intervals SET enabled = true, interval_ms = 500 WHERE endpoint = 'quotes'});
ok(TickerTest::wait_for($node, q{SELECT last_tick_at IS NOT NULL FROM trading.ticker_instruments
	WHERE instrument = 'NSE:EMMBI-BL'}, 20), 'the added instrument streams');
sleep 1;
my $log_from = length($broker->log_text);
sleep 2;
my $log = substr($broker->log_text, $log_from);
my $full_polls = () = $log =~ m{ GET /quote \d}g;
my $ltp_polls = () = $log =~ m{ GET /quote/ltp }g;
is($full_polls + $ltp_polls, 0, 'streamed instruments (full and ltp) are not polled');
settings(ticker_enabled => 'off');
$log_from = length($broker->log_text);
sleep 3;
$log = substr($broker->log_text, $log_from);
$full_polls = () = $log =~ m{ GET /quote \d}g;
$ltp_polls = () = $log =~ m{ GET /quote/ltp }g;
cmp_ok($full_polls, '>', 0, 'with the ticker off, polling covers them again (full)');
cmp_ok($ltp_polls, '>', 0, 'and ltp');
is($node->safe_psql('postgres', 'SELECT DISTINCT worker_state FROM trading.ticker_status'),
	'disabled', 'ticker_status: disabled');
$node->safe_psql('postgres', q{
	UPDATE trading.poll_intervals SET enabled = false WHERE endpoint = 'quotes';
	DELETE FROM trading.watchlist WHERE instrument = 'NSE:EMMBI-BL'});
settings(ticker_enabled => 'on');

# ---------------------------------------------------------------------
# the broker's 3000-per-connection limit (lowered to 2 here): the
# subscription beyond it is refused with an error text frame
# ---------------------------------------------------------------------
my $errors = TickerTest::ws($broker)->{errors_total};
my $before = reconnects();
TickerTest::ws_set($broker, max_tokens => 2, close => 1);
ok(TickerTest::wait_for($node, qq{SELECT reconnects_total > $before
	FROM trading.ticker_status WHERE connection = 1}, 30), 'reconnected to a broker allowing 2 tokens');
ok(TickerTest::wait_for($node, q{SELECT state = 'connected' FROM trading.ticker_status
	WHERE connection = 1}, 30), 'connected again');
sleep 1;
is(TickerTest::ws($broker)->{connections}[0]{subscriptions}, 2, 'the broker kept 2 subscriptions');
cmp_ok(TickerTest::ws($broker)->{errors_total}, '>', $errors, 'and answered the third with an error');
like(slurp_file($node->logfile), qr/the server reports an error: .*Subscription limit exceeded/,
	'the worker logs the broker\'s error');
TickerTest::ws_set($broker, max_tokens => 3000, close => 1);

# ---------------------------------------------------------------------
# at most 3000 instruments per connection: 3010 + 3 spread over two
# ---------------------------------------------------------------------
TickerTest::ws_set($broker, tick_ms => 20000);
$node->safe_psql('postgres', q{
	INSERT INTO trading.watchlist (instrument, mode)
	SELECT 'NSE:SYN' || i, 'ltp' FROM generate_series(1, 3010) i});
ok(TickerTest::wait_for($node, q{SELECT string_agg(state || ':' || subscriptions, ',' ORDER BY connection)
	= 'connected:3000,connected:13,unused:0' FROM trading.ticker_status}, 30),
	'3013 instruments: 3000 on the first connection, 13 on a second')
  or diag($node->safe_psql('postgres', 'SELECT * FROM trading.ticker_status'));
my $subs;
for (1 .. 100)
{
	$subs = join(',', sort { $a <=> $b } map { $_->{subscriptions} }
		  @{ TickerTest::ws($broker)->{connections} });
	last if $subs eq '13,3000';
	usleep(100_000);
}
is($subs, '13,3000', 'the broker sees 3000 and 13 subscriptions');

# the broker's connection limit (lowered to 1): the second is refused (429)
TickerTest::ws_set($broker, max_connections => 1, close => 2);
ok(TickerTest::wait_for($node, q{SELECT count(*) > 0 FROM trading.ticker_status
	WHERE last_reconnect_reason = 'handshake refused: HTTP 429'}, 30),
	'a connection beyond the broker\'s limit is refused with HTTP 429')
  or diag($node->safe_psql('postgres', 'SELECT * FROM trading.ticker_status'));
cmp_ok(TickerTest::ws($broker)->{refused_total}, '>', 0, 'the broker counts refused handshakes');
is($node->safe_psql('postgres', 'SELECT state FROM trading.broker_session_status'),
	'active', 'a 429 does not expire the session');

# ---------------------------------------------------------------------
# faults armed by flag at start-up: a broker started with --ws-malformed 1
# --ws-truncate 1; the worker, pointed at it, reconnects past both
# ---------------------------------------------------------------------
my $b2 = TickerTest::broker(ws => [ '--ws-tick-ms', 100, '--ws-malformed', 1, '--ws-truncate', 1 ]);
my $armed = TickerTest::ws($b2);
is("$armed->{malformed} $armed->{truncate}", '1 1', 'flags arm the faults at start-up');
$node->safe_psql('postgres', q{DELETE FROM trading.watchlist WHERE instrument LIKE 'NSE:SYN%'});
my $m0 = $node->safe_psql('postgres', 'SELECT sum(malformed_frames_total) FROM trading.ticker_status');
settings(ticker_url => "ws://127.0.0.1:$b2->{ws_port}/");
ok(TickerTest::wait_for($node, qq{SELECT sum(malformed_frames_total) >= $m0 + 2
	FROM trading.ticker_status}, 30), 'both flag-armed faults reached the worker');
my $since2 = $node->safe_psql('postgres', 'SELECT now()');
ok(TickerTest::wait_for($node, qq{SELECT count(DISTINCT instrument_token) >= 3 FROM trading.ticks
	WHERE received_at > '$since2'}, 30), 'and it streams from the new broker afterwards');
is(TickerTest::ws($b2)->{faults_total}, 2, 'the broker consumed both');
$b2->stop;

ok(!grep({ /PANIC|TRAP|server process .* was terminated/ } split /\n/, slurp_file($node->logfile)),
	'no crash in the log');
$node->stop;
$broker->stop;
done_testing();

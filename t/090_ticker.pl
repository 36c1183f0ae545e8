# The ticker: decoding conformance (the Kite fixtures through
# trading.ticker_decode, every length check, and the paper broker's ticks in
# every mode, index and tradable, CDS and BCD divisors, compared with its
# REST quotes), ticks landing in trading.ticks and trading.quotes, live
# watchlist changes without reconnecting, the tick-storage opt-out, order
# updates through the stream, and no ticker on a standby.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TickerTest;
use TradingTest;

my $json = JSON::PP->new->canonical;

sub fixture
{
	my ($name) = @_;
	my $f = TradingTest::shared_dir() . "/kite-mocks/$name";
	open(my $fh, '<', $f) or die "$f: $!";
	local $/;
	return JSON::PP->new->decode(<$fh>);
}

my $b = TickerTest::broker();
my $node = TickerTest::node('ticker', $b);

# ---------------------------------------------------------------------
# 1. the fixtures, encoded as Kite does, decoded by trading.ticker_decode
# ---------------------------------------------------------------------
sub p32 { return pack('N', $_[0]); }
sub paise { return p32(int($_[0] * 100 + 0.5)); }
sub epoch_of
{
	my ($ts) = @_;
	return $node->safe_psql('postgres',
		"SELECT extract(epoch FROM '$ts'::timestamptz)::bigint");
}

sub frame
{
	my @packets = @_;
	return pack('n', scalar @packets) . join('', map { pack('n', length $_) . $_ } @packets);
}

sub decode_frame
{
	my ($bytes) = @_;
	my $hex = unpack('H*', $bytes);
	my $out = $node->safe_psql('postgres',
		"SELECT j FROM trading.ticker_decode('\\x$hex'::bytea) j");
	return [ map { JSON::PP->new->decode($_) } split /\n/, $out ];
}

my $ltp = fixture('ticker_ltp.json');
my $quote = fixture('ticker_quote.json');
my $full = fixture('ticker_full.json');

my $ltp_pkt = p32($ltp->{instrument_token}) . paise($ltp->{last_price});
my $quote_pkt = p32($quote->{instrument_token}) . paise($quote->{last_price})
  . p32($quote->{last_quantity}) . paise($quote->{average_price})
  . p32($quote->{volume}) . p32($quote->{buy_quantity}) . p32($quote->{sell_quantity})
  . join('', map { paise($quote->{ohlc}{$_}) } qw(open high low close));
my $full_pkt = p32($full->{instrument_token}) . paise($full->{last_price})
  . p32($full->{last_quantity}) . paise($full->{average_price})
  . p32($full->{volume}) . p32($full->{buy_quantity}) . p32($full->{sell_quantity})
  . join('', map { paise($full->{ohlc}{$_}) } qw(open high low close))
  . p32(epoch_of($full->{last_trade_time})) . p32($full->{oi})
  . p32($full->{oi_day_high}) . p32($full->{oi_day_low})
  . p32(epoch_of($full->{timestamp}))
  . join('', map { p32($_->{quantity}) . paise($_->{price}) . pack('n', $_->{orders}) . "\0\0" }
	  @{ $full->{depth}{buy} }, @{ $full->{depth}{sell} });
is(length $ltp_pkt, 8, 'ltp packet is 8 bytes');
is(length $quote_pkt, 44, 'quote packet is 44 bytes');
is(length $full_pkt, 184, 'full packet is 184 bytes');

my $d = decode_frame(frame($ltp_pkt, $quote_pkt, $full_pkt));
is(scalar @$d, 3, 'three packets decoded from one frame');
is_deeply($d->[0], $ltp, 'ltp packet decodes to ticker_ltp.json');

for my $case ([ $d->[1], $quote, 'quote' ], [ $d->[2], $full, 'full' ])
{
	my ($got, $want, $what) = @$case;
	for my $k (qw(mode tradable instrument_token last_price last_quantity average_price
		volume buy_quantity sell_quantity ohlc))
	{
		is_deeply($got->{$k}, $want->{$k}, "$what: $k as in ticker_$what.json");
	}
	# the fixtures' change is last_price - close (ticker_quote.json carries the
	# full fixture's, 5.9, with another last_price: compare the definition)
	ok(abs($got->{change} - ($want->{last_price} - $want->{ohlc}{close})) < 1e-9,
		"$what: change is last_price - close");
}
for my $k (qw(oi oi_day_high oi_day_low depth))
{
	is_deeply($d->[2]{$k}, $full->{$k}, "full: $k as in ticker_full.json");
}
for my $k (qw(last_trade_time timestamp))
{
	is($node->safe_psql('postgres',
			"SELECT '$d->[2]{$k}'::timestamptz = '$full->{$k}'::timestamptz"),
		't', "full: $k as in ticker_full.json");
}

# index packets (segment 9): 28 (quote) and 32 (full) bytes
my $idx = p32(256265) . p32(2245030) . p32(2250000) . p32(2240000) . p32(2241000)
  . p32(2239000) . pack('N', 6030);
my $di = decode_frame(frame(p32(256265) . p32(2245030), $idx, $idx . p32(1625461887)));
is_deeply($di->[0], { mode => 'ltp', tradable => JSON::PP::false, instrument_token => 256265,
		last_price => 22450.3 }, 'index ltp packet');
is_deeply($di->[1], { mode => 'quote', tradable => JSON::PP::false, instrument_token => 256265,
		last_price => 22450.3, change => 60.3,
		ohlc => { open => 22410, high => 22500, low => 22400, close => 22390 } },
	'index quote packet (28 bytes)');
is($di->[2]{mode}, 'full', 'index full packet (32 bytes)');
is($node->safe_psql('postgres',
		"SELECT '$di->[2]{timestamp}'::timestamptz = to_timestamp(1625461887)"),
	't', 'index full packet: exchange timestamp');

# segment divisors: CDS (token & 0xff = 3) / 1e7, BCD (6) / 1e4
is(decode_frame(frame(p32(412675) . p32(831225000)))->[0]{last_price}, 83.1225,
	'CDS price divided by 1e7');
is(decode_frame(frame(p32(1048582) . p32(904475)))->[0]{last_price}, 90.4475,
	'BCD price divided by 1e4');
is(scalar @{ decode_frame("\x00") }, 0, 'a 1-byte frame is a heartbeat');

# every length is checked
my %bad = (
	'empty frame' => '',
	'count larger than the frame' => pack('n', 2) . pack('n', 8) . $ltp_pkt,
	'truncated packet' => pack('n', 1) . pack('n', 44) . substr($quote_pkt, 0, 30),
	'unknown packet length' => pack('n', 1) . pack('n', 12) . $ltp_pkt . "\0\0\0\0",
	'bytes after the last packet' => frame($ltp_pkt) . "\0",
	'index layout for a tradable token' => frame(p32(408065) . substr($idx, 4)),
	'tradable layout for an index token' => frame(p32(256265) . substr($quote_pkt, 4)),
	'length field cut' => pack('n', 1) . "\0",
	'token 0' => frame(p32(0) . p32(100)),
);
for my $what (sort keys %bad)
{
	my $hex = unpack('H*', $bad{$what});
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT * FROM trading.ticker_decode('\\x$hex'::bytea)",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/TR701/, "malformed frame rejected with TR701: $what");
}

# ---------------------------------------------------------------------
# 2. the paper broker's ticks, every mode, stored and compared with REST
# ---------------------------------------------------------------------
TickerTest::watch($node,
	'NSE:INFY' => 'full', 'NSE:SBIN' => 'quote', 'NSE:RELIANCE' => 'ltp',
	'NSE:NIFTYBANK' => 'full', 'BSE:SENSEX' => 'quote',
	'CDS:USDINR26DECFUT' => 'full', 'BCD:EURINR26DECFUT' => 'quote');

ok(TickerTest::wait_for($node, q{
	SELECT count(DISTINCT (instrument_token, mode)) = 7 FROM trading.ticks}, 30),
	'ticks of all seven instruments in their modes')
  or diag($node->safe_psql('postgres',
	"SELECT * FROM trading.ticker_status; SELECT instrument_token, mode, count(*) FROM trading.ticks GROUP BY 1, 2"));

my $rest = $b->api(GET => '/quote', query => [ map { (i => $_) }
		'NSE:INFY', 'NSE:SBIN', 'NSE:RELIANCE', 'NSE:NIFTYBANK', 'BSE:SENSEX',
		'CDS:USDINR26DECFUT', 'BCD:EURINR26DECFUT' ])->{json}{data};

sub last_tick
{
	my ($token) = @_;
	my $r = $node->safe_psql('postgres', qq{
		SELECT row_to_json(t) FROM trading.ticks t WHERE instrument_token = $token
		ORDER BY received_at DESC LIMIT 1});
	return JSON::PP->new->decode($r);
}

my $infy = last_tick(408065);
my $q = $rest->{'NSE:INFY'};
is($infy->{mode}, 'full', 'INFY streamed in full mode');
ok($infy->{tradable}, 'INFY is tradable');
for my $k (qw(last_price average_price volume))
{
	cmp_ok($infy->{$k}, '==', $q->{$k}, "INFY $k equals the REST quote");
}
cmp_ok($infy->{last_quantity}, '==', $q->{last_quantity}, 'INFY last_quantity equals REST');
cmp_ok($infy->{buy_quantity}, '==', $q->{buy_quantity}, 'INFY buy_quantity equals REST');
cmp_ok($infy->{sell_quantity}, '==', $q->{sell_quantity}, 'INFY sell_quantity equals REST');
for my $k (qw(open high low close))
{
	cmp_ok($infy->{$k}, '==', $q->{ohlc}{$k}, "INFY $k equals REST");
}
is_deeply([ map { $_ + 0 } @{ $infy->{depth_buy_price} } ],
	[ map { $_->{price} + 0 } @{ $q->{depth}{buy} } ], 'INFY buy depth prices equal REST');
is_deeply($infy->{depth_sell_quantity},
	[ map { $_->{quantity} } @{ $q->{depth}{sell} } ], 'INFY sell depth quantities equal REST');
is_deeply($infy->{depth_buy_orders},
	[ map { $_->{orders} } @{ $q->{depth}{buy} } ], 'INFY buy depth orders equal REST');
ok(defined $infy->{exchange_timestamp}, 'full mode has the exchange timestamp');

my $sbin = last_tick(779521);
is($sbin->{mode}, 'quote', 'SBIN streamed in quote mode');
cmp_ok($sbin->{last_price}, '==', $rest->{'NSE:SBIN'}{last_price}, 'SBIN last_price equals REST');
ok(!defined $sbin->{depth_buy_price}, 'quote mode has no depth');

my $rel = last_tick(738561);
is($rel->{mode}, 'ltp', 'RELIANCE streamed in ltp mode');
ok(!defined $rel->{open}, 'ltp mode has no ohlc');

my $nifty = last_tick(260105);
ok(!$nifty->{tradable}, 'NIFTYBANK is an index (not tradable)');
is($nifty->{mode}, 'full', 'index in full mode (32-byte packets)');
cmp_ok($nifty->{last_price}, '==', $rest->{'NSE:NIFTYBANK'}{last_price}, 'index last_price equals REST');
cmp_ok($nifty->{close}, '==', $rest->{'NSE:NIFTYBANK'}{ohlc}{close}, 'index close equals REST');
is(last_tick(265)->{mode}, 'quote', 'index in quote mode (28-byte packets)');

my $cds = last_tick(412675);
is($node->safe_psql('postgres', q{SELECT last_price::text FROM trading.ticks
	WHERE instrument_token = 412675 ORDER BY received_at DESC LIMIT 1}),
	'83.1225000', 'CDS last price exact, 7 decimals (divided by 1e7)');
cmp_ok($cds->{last_price}, '==', $rest->{'CDS:USDINR26DECFUT'}{last_price}, 'CDS equals REST');
is($node->safe_psql('postgres', q{SELECT last_price::text FROM trading.ticks
	WHERE instrument_token = 1048582 ORDER BY received_at DESC LIMIT 1}),
	'90.4475', 'BCD last price exact, 4 decimals (divided by 1e4)');

# every stored tick: prices with their segment's decimals, change exact
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM trading.ticks
	WHERE change IS DISTINCT FROM last_price - close
	   OR scale(last_price) <> CASE instrument_token & 255 WHEN 3 THEN 7 WHEN 6 THEN 4 ELSE 2 END
	   OR (depth_buy_price IS NOT NULL AND (cardinality(depth_buy_price) <> 5
	       OR scale(depth_sell_price[5]) <> scale(last_price)))}),
	'0', 'every stored tick: exact prices with the segment\'s decimals, change = last_price - close');
is($node->safe_psql('postgres', q{
	SELECT count(*) > 0 FROM trading.ticks WHERE change < 0 OR change > 0}),
	't', 'stored ticks with a change other than 0');

# quotes: the latest tick per instrument, marked as streamed
ok(TickerTest::wait_for($node, q{
	SELECT count(*) = 7 FROM trading.quotes WHERE raw->>'source' = 'ticker'}, 10),
	'trading.quotes holds the streamed instruments');
is($node->safe_psql('postgres',
		q{SELECT last_price = (SELECT last_price FROM trading.ticks WHERE instrument_token = 408065
			ORDER BY received_at DESC LIMIT 1) FROM trading.quotes WHERE instrument = 'NSE:INFY'}),
	't', 'quote of INFY is its last tick');
ok(TickerTest::wait_for($node, q{
	SELECT bool_and(last_tick_age < interval '5 seconds') FROM trading.ticker_instruments}, 10),
	'ticker_instruments shows the age of each last tick');

# a price change at the broker reaches the tables
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
ok(TickerTest::wait_for($node, q{
	SELECT last_price = 1500 FROM trading.quotes WHERE instrument = 'NSE:INFY'}, 10),
	'a new price at the broker reaches trading.quotes');

# ---------------------------------------------------------------------
# 3. watchlist changes applied live, without reconnecting
# ---------------------------------------------------------------------
my $reconnects = $node->safe_psql('postgres',
	'SELECT sum(reconnects_total) FROM trading.ticker_status');
my $conns_before = TickerTest::ws($b)->{connections_total};

$node->safe_psql('postgres',
	q{INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:BANKBEES', 'ltp')});
my $t0 = TickerTest::now();
ok(TickerTest::wait_for($node, q{
	SELECT count(*) > 0 FROM trading.ticks WHERE instrument_token = 2928385}, 10),
	'an instrument added to the watchlist streams');
note(sprintf('added instrument streaming after %.2f s', TickerTest::now() - $t0));

$node->safe_psql('postgres',
	q{UPDATE trading.watchlist SET mode = 'full' WHERE instrument = 'NSE:RELIANCE'});
ok(TickerTest::wait_for($node, q{
	SELECT count(*) > 0 FROM trading.ticks WHERE instrument_token = 738561 AND mode = 'full'
	  AND received_at > now() - interval '1 second'}, 10),
	'a mode change applies to the live connection');

$node->safe_psql('postgres', q{DELETE FROM trading.watchlist WHERE instrument = 'NSE:SBIN'});
ok(TickerTest::wait_for($node, q{
	SELECT coalesce(max(received_at) < now() - interval '1 second', false)
	FROM trading.ticks WHERE instrument_token = 779521}, 10),
	'a removed instrument stops streaming');
is(TickerTest::ws($b)->{connections}[0]{subscriptions}, 7,
	'the broker sees seven subscriptions after +1 -1');
is($node->safe_psql('postgres', 'SELECT sum(reconnects_total) FROM trading.ticker_status'),
	$reconnects, 'no reconnect for watchlist changes');
is(TickerTest::ws($b)->{connections_total}, $conns_before, 'no new connection at the broker');

# opt-out of tick storage: quotes stay current, no ticks stored
$node->safe_psql('postgres',
	q{UPDATE trading.watchlist SET store_ticks = false WHERE instrument = 'NSE:BANKBEES'});
sleep 1;
my $n_bees = $node->safe_psql('postgres',
	'SELECT count(*) FROM trading.ticks WHERE instrument_token = 2928385');
$b->admin(POST => '/admin/price', instrument => 'NSE:BANKBEES', price => 444.44);
ok(TickerTest::wait_for($node, q{
	SELECT last_price = 444.44 FROM trading.quotes WHERE instrument = 'NSE:BANKBEES'}, 10),
	'opted-out instrument: its quote stays current');
is($node->safe_psql('postgres',
		'SELECT count(*) FROM trading.ticks WHERE instrument_token = 2928385'),
	$n_bees, 'opted-out instrument: no ticks stored');
ok($node->safe_psql('postgres', 'SELECT ticks_not_stored > 0 FROM trading.ticker_stats') eq 't',
	'ticker_stats counts the ticks not stored');

# trading.ticker_quote_interval: the ticks an instrument gets meanwhile
# make one quote update (5 ticks a second, at most one quote a second)
$node->append_conf('postgresql.conf', "trading.ticker_quote_interval = '1s'");
$node->reload;
sleep 2;
my $stats_sql = q{SELECT ticks_stored + ticks_not_stored, quotes_written FROM trading.ticker_stats};
my ($ticks0, $quotes0) = split /\|/, $node->safe_psql('postgres', $stats_sql);
sleep 4;
my ($ticks1, $quotes1) = split /\|/, $node->safe_psql('postgres', $stats_sql);
note("quote interval 1 s: " . ($ticks1 - $ticks0) . " ticks, " . ($quotes1 - $quotes0) . " quote updates");
cmp_ok($ticks1 - $ticks0, '>', 0, 'ticks keep coming with a quote interval of 1 s');
cmp_ok(($quotes1 - $quotes0) * 2, '<', $ticks1 - $ticks0,
	'a quote row is rewritten at most once per quote interval, not once per tick');
$node->append_conf('postgresql.conf', "trading.ticker_quote_interval = '100ms'");
$node->reload;

# a failing quote write holds up no tick, is retried a second later, and
# the quotes catch up once writes succeed again
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.refuse_quote() RETURNS trigger LANGUAGE plpgsql
	AS $$ BEGIN RAISE EXCEPTION 'quotes refused by the test'; END $$;
	CREATE TRIGGER refuse_quote BEFORE INSERT OR UPDATE ON trading.quotes
	FOR EACH ROW EXECUTE FUNCTION public.refuse_quote();
});
my $err_sql = q{SELECT ticks_stored, flush_errors FROM trading.ticker_stats};
my ($stored0, $errors0) = split /\|/, $node->safe_psql('postgres', $err_sql);
sleep 3;
my ($stored1, $errors1) = split /\|/, $node->safe_psql('postgres', $err_sql);
note("while quote writes fail: " . ($stored1 - $stored0) . " ticks stored, "
	  . ($errors1 - $errors0) . " failed writes");
cmp_ok($errors1 - $errors0, '>', 0, 'quote writes fail (counted in flush_errors)');
cmp_ok($errors1 - $errors0, '<=', 5, 'a failed quote write is retried after a second, not at once');
cmp_ok($stored1 - $stored0, '>', 0, 'ticks are stored while quote writes fail');
$node->safe_psql('postgres', q{DROP TRIGGER refuse_quote ON trading.quotes;
	DROP FUNCTION public.refuse_quote()});
# (a write still failing now is retried within a second)
sleep 2;
my $refused_writes = $node->safe_psql('postgres', 'SELECT flush_errors FROM trading.ticker_stats');
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1555.55);
ok(TickerTest::wait_for($node, q{
	SELECT last_price = 1555.55 FROM trading.quotes WHERE instrument = 'NSE:INFY'}, 10),
	'quotes catch up once writes succeed again');

# status
my $st = $node->safe_psql('postgres', q{
	SELECT worker_state, state, subscriptions, ticks_per_second > 0, pings_total > 0,
	       heartbeats_total >= 0, last_pong_at > now() - interval '5 seconds'
	FROM trading.ticker_status WHERE connection = 1});
is($st, 'streaming|connected|7|t|t|t|t', 'ticker_status of the live connection');
is($node->safe_psql('postgres', q{SELECT state FROM trading.ticker_status WHERE connection = 2}),
	'unused', 'one connection is enough for seven instruments');

# ---------------------------------------------------------------------
# 4. order updates from the stream update trading.orders at once (the
#    worker's order polling is disabled in this test)
# ---------------------------------------------------------------------
my $oid = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 3,
	market_protection => -1);
ok(TickerTest::wait_for($node, qq{
	SELECT status = 'COMPLETE' AND filled_quantity = 3 FROM trading.orders WHERE order_id = '$oid'
	UNION ALL SELECT false LIMIT 1}, 10),
	'an order filled at the broker reaches trading.orders through the stream');
is($node->safe_psql('postgres', q{SELECT order_updates > 0 FROM trading.ticker_stats}),
	't', 'ticker_stats counts order updates');
is($node->safe_psql('postgres', q{SELECT requests_total FROM trading.worker_status
	WHERE endpoint = 'orders'}), '0', 'orders were never polled');

# a bad order update is rejected by the apply path and changes nothing
is($node->safe_psql('postgres', q{
	SELECT kind || ' ' || name FROM trading._ticker_apply_order('{"type":"order","data":{"status":"COMPLETE"}}');
	SELECT count(*) FROM trading.orders WHERE order_id IS NULL OR order_id = ''}),
	"rejected orders.order_id\n0", 'an order update without order_id is rejected by the apply path');
my ($ret, $out, $err);
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT trading._ticker_apply_order('{"type":"message","data":"x"}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/TR702/, 'a text frame that is not an order update is refused (TR702)');

# ---------------------------------------------------------------------
# 5. privileges, partitions, no duplicates
# ---------------------------------------------------------------------
is($node->safe_psql('postgres', q{SET ROLE regress_reader;
	SELECT count(*) > 0 FROM trading.ticks, trading.ticker_status LIMIT 1}),
	't', 'trading_reader reads ticks and the status');
($ret, $out, $err) = $node->psql('postgres',
	q{SET ROLE regress_reader; SELECT trading.ticks_drop_expired(1)});
like($err, qr/permission denied/, 'trading_reader cannot drop tick partitions');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_inherits WHERE inhparent = 'trading.ticks'::regclass}),
	'1', 'one partition (today, IST)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM (
	SELECT instrument_token, received_at FROM trading.ticks GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'no tick stored twice');

# retention: partitions that ended more than N days ago are dropped
is($node->safe_psql('postgres', q{SELECT trading._ticks_partition('2020-01-01 10:00+05:30')}),
	'ticks_20200101', 'a partition per IST day, named after it');
is($node->safe_psql('postgres', q{SELECT trading.ticks_drop_expired(30)}), '1',
	'ticks_drop_expired drops the partition older than the retention');
is($node->safe_psql('postgres', q{
	SELECT string_agg(c.relname, ',') = 'ticks_' || to_char(now() AT TIME ZONE 'Asia/Kolkata', 'YYYYMMDD')
	FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
	WHERE h.inhparent = 'trading.ticks'::regclass}), 't', 'today\'s partition is kept');
($ret, $out, $err) = $node->psql('postgres', 'SELECT trading.ticks_drop_expired(0)',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22023/, 'a retention below one day is refused (22023)');
is($node->safe_psql('postgres', q{SELECT ticks_dropped || ' ' || flush_errors FROM trading.ticker_stats}),
	"0 $refused_writes", 'nothing dropped, no failed flush but the refused quote writes');

# ---------------------------------------------------------------------
# 6. standby: no ticker, no connection
# ---------------------------------------------------------------------
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
my $conns = TickerTest::ws($b)->{connections_total};
$standby->start;
sleep 2;
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trading ticker'}),
	'0', 'no ticker on the standby');
is($standby->safe_psql('postgres', 'SELECT DISTINCT worker_state FROM trading.ticker_status'),
	'not_running', 'ticker_status on the standby: not running');
is(TickerTest::ws($b)->{connections_total}, $conns, 'the standby opened no connection');
$standby->stop;

# (the test's own statements are logged with log_statement = all)
unlike(join('', grep { !/statement: / } split /^/m, slurp_file($node->logfile)),
	qr/paper_access_token/, 'the access token is never logged');
$node->stop;
$b->stop;
done_testing();

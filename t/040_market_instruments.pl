# The instrument master: the market data worker's first load of an empty
# table, trading.refresh_instruments() with the fixtures (every row and
# typed column compared with the CSV), bad dumps rejected with the old
# list kept, a 100k-row synthetic dump from the paper broker, a concurrent
# reader that only ever sees the old or the new list, the watchlist
# checked against the list (an unknown instrument is marked and never
# quoted), and the daily refresh firing at its configured time under a
# controlled clock (trading.market_clock_offset).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $mocks = TradingTest::shared_dir() . '/kite-mocks';
my $csv_all = slurp_file("$mocks/instruments_all.csv");
my $csv_nse = slurp_file("$mocks/instruments_nse.csv");

my $fx = WorkerTest::FixtureServer->start;
$fx->serve('/instruments', $csv_all, ctype => 'text/csv');

my $node = WorkerTest::node('market', undef, url => $fx->url,
	conf => "trading.market_worker = on\ntrading.instruments_refresh_time = '08:45'\n");

# the table as CSV lines (Kite's column order, NULL as empty), sorted
sub table_csv
{
	return $node->safe_psql('postgres', q{
SELECT string_agg(line, E'\n' ORDER BY line COLLATE "C")
FROM (SELECT concat_ws(',', instrument_token, coalesce(exchange_token::text, ''),
    tradingsymbol, coalesce(name, ''), coalesce(last_price::text, ''), coalesce(expiry::text, ''),
    coalesce(strike::text, ''), coalesce(tick_size::text, ''), coalesce(lot_size::text, ''),
    coalesce(instrument_type, ''), coalesce(segment, ''), exchange) AS line
      FROM trading.instruments) i});
}

sub csv_rows
{
	my ($csv) = @_;
	my @l = grep { length } split /\r?\n/, $csv;
	shift @l;
	return join("\n", sort @l);
}

sub sqlstate_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $err =~ /ERROR:\s+([0-9A-Z]{5})/ ? $1 : "no error ($out)";
}

# ---- the worker loads an empty table by itself ----
ok($node->poll_query_until('postgres', 'SELECT count(*) = 99 FROM trading.instruments'),
	'the worker loads the empty instrument master (99 rows of instruments_all.csv)');
is($node->safe_psql('postgres',
	"SELECT trigger || ':' || rows || ':' || (error IS NULL) FROM trading.instrument_loads WHERE rows IS NOT NULL"),
	'empty:99:true', 'the load is recorded with its trigger and row count');
is(table_csv(), csv_rows($csv_all), 'instruments_all.csv: every row and column as in the CSV');
is($node->safe_psql('postgres',
	"SELECT pg_typeof(expiry)::text || pg_typeof(lot_size)::text || pg_typeof(tick_size)::text
	   FROM trading.instruments LIMIT 1"), 'dateintegernumeric', 'typed columns');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.instruments WHERE expiry IS NULL AND instrument_type = 'EQ'"),
	'74', 'an empty expiry is NULL (equities)');

# ---- refresh_instruments() replaces the list ----
$fx->serve('/instruments', $csv_nse, ctype => 'text/csv');
is($node->safe_psql('postgres', 'SELECT trading.refresh_instruments()'), '99',
	'refresh_instruments() returns the rows loaded');
is(table_csv(), csv_rows($csv_nse), 'instruments_nse.csv: the table now holds exactly that list');
my $nse_digest = table_csv();
is(sqlstate_of('SET ROLE regress_reader; SELECT trading.refresh_instruments()'), '42501',
	'a reader may not refresh the instruments');

# ---- bad dumps: a clear error, the old list kept ----
my ($header, @lines) = split /\n/, $csv_nse;
my %bad = (
	'a wrong header' => [ ($header =~ s/exchange_token,tradingsymbol/tradingsymbol,exchange_token/r) . "\n" . join("\n", @lines) . "\n", 'TR502' ],
	'a non-numeric token' => [ "$header\nabc,1,X,Y,0,,0,0.05,1,EQ,NSE,NSE\n", 'TR502' ],
	'a negative lot size' => [ "$header\n1,1,X,Y,0,,0,0.05,-5,EQ,NSE,NSE\n", 'TR502' ],
	'an invalid date' => [ "$header\n1,1,X,Y,0,2024-02-30,0,0.05,1,EQ,NSE,NSE\n", 'TR502' ],
	'a duplicate symbol' => [ "$header\n1,1,X,Y,0,,0,0.05,1,EQ,NSE,NSE\n2,2,X,Y,0,,0,0.05,1,EQ,NSE,NSE\n", 'TR502' ],
	'invalid UTF-8' => [ "$header\n1,1,X,Y\xff\xfe,0,,0,0.05,1,EQ,NSE,NSE\n", 'TR502' ],
	'a header only' => [ "$header\n", 'TR502' ],
	'an empty body' => [ '', 'TR502' ],
);
for my $case (sort keys %bad)
{
	my ($body, $state) = @{ $bad{$case} };
	$fx->serve('/instruments', $body, ctype => 'text/csv');
	is(sqlstate_of('SELECT trading.refresh_instruments()'), $state, "$case: $state");
	is(table_csv(), $nse_digest, "$case: the old list is kept");
}
$fx->serve('/instruments', '{"status":"error","message":"down","error_type":"GeneralException","data":null}',
	status => 503);
is(sqlstate_of('SELECT trading.refresh_instruments()'), 'TR501', 'a JSON error reply: TR501');
is(table_csv(), $nse_digest, 'a JSON error reply: the old list is kept');

# ---- a 100k-row synthetic dump from the paper broker ----
my $b = PaperBroker->start(args => [ '--synthetic-instruments', 100000 ]);
my $big = HTTP::Tiny->new(timeout => 60)->get($b->url . '/instruments')->{content};
my @big_lines = grep { length } split /\r?\n/, $big;
my $big_rows = @big_lines - 1;
ok($big_rows > 100000, "the paper broker serves $big_rows instruments");
$fx->serve('/instruments', $big, ctype => 'text/csv');
is($node->safe_psql('postgres', 'SELECT trading.refresh_instruments()'), $big_rows,
	'the 100k-row dump loads');
is($node->safe_psql('postgres',
	"SELECT count(*) || ':' || sum(lot_size) FROM trading.instruments WHERE tradingsymbol LIKE 'SYN%'"),
	'100000:' . (75000 + 25000 * 50), 'synthetic rows typed as generated');
is($node->safe_psql('postgres',
	"SELECT trigger || ':' || rows || ':' || (finished_at > started_at) FROM trading.instrument_loads ORDER BY id DESC LIMIT 1"),
	"manual:$big_rows:true", 'the load is recorded from the start of its download to its commit');

# ---- a concurrent reader sees the old or the new list, never a mix ----
my %sig;
for my $body ([ 'nse', $csv_nse ], [ 'big', $big ])
{
	$fx->serve('/instruments', $body->[1], ctype => 'text/csv');
	$node->safe_psql('postgres', 'SELECT trading.refresh_instruments()');
	$sig{ $node->safe_psql('postgres',
		"SELECT count(*) || ':' || sum(instrument_token) FROM trading.instruments") } = $body->[0];
}
$node->safe_psql('postgres', q{
	CREATE TABLE public.seen (n text);
	CREATE TABLE public.stop_reading (x int);
});
my ($rin, $rout, $rerr) = ('', '', '');
my $reader = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
DO $$
BEGIN
    FOR i IN 1 .. 100000 LOOP
        INSERT INTO public.seen
            SELECT count(*) || ':' || sum(instrument_token) FROM trading.instruments;
        EXIT WHEN EXISTS (SELECT 1 FROM public.stop_reading);
    END LOOP;
END $$} ], \$rin, \$rout, \$rerr);
for my $round (1 .. 3)
{
	for my $body ($csv_nse, $big)
	{
		$fx->serve('/instruments', $body, ctype => 'text/csv');
		$node->safe_psql('postgres', 'SELECT trading.refresh_instruments()');
	}
}
$node->safe_psql('postgres', 'INSERT INTO public.stop_reading VALUES (1)');
$reader->finish;
is($rerr, '', 'the reader ran without error');
my @seen = split /\n/, $node->safe_psql('postgres', 'SELECT DISTINCT n FROM public.seen');
my @mixed = grep { !exists $sig{$_} } @seen;
is(join(',', @mixed), '', 'every read saw exactly the old or the new list');
is(scalar(@seen), 2, 'the reader saw both lists while they were replaced six times');
ok($node->safe_psql('postgres', 'SELECT count(*) FROM public.seen') > 10, 'the reader read throughout');

# ---- the watchlist checked against the list; unknown ones are not quoted ----
$node->safe_psql('postgres', q{
	INSERT INTO trading.watchlist (instrument, mode) VALUES
		('NSE:INFY', 'ltp'), ('NSE:NOPE1', 'ltp'), ('NSE:SYN000001', 'ltp');
});
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument || '=' || coalesce(instrument_token::text, '-') || '/' || (unknown_since IS NOT NULL), ',' ORDER BY instrument) FROM trading.watchlist"),
	'NSE:INFY=408065/false,NSE:NOPE1=-/false,NSE:SYN000001=90000001/false',
	'an added instrument gets its token at once; an unknown one is marked only by a load');
$fx->serve('/instruments', $csv_nse, ctype => 'text/csv');
$node->safe_psql('postgres', 'SELECT trading.refresh_instruments()');
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument, ',' ORDER BY instrument) FROM trading.watchlist WHERE unknown_since IS NOT NULL"),
	'NSE:INFY,NSE:NOPE1,NSE:SYN000001', 'a load that no longer lists an instrument marks it');
is($node->safe_psql('postgres',
	'SELECT unknown_watchlist FROM trading.instrument_loads ORDER BY id DESC LIMIT 1'),
	'3', 'the load records how many watchlist instruments are unknown');
$fx->serve('/instruments', $big, ctype => 'text/csv');
$node->safe_psql('postgres', 'SELECT trading.refresh_instruments()');
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument, ',' ORDER BY instrument) FROM trading.watchlist WHERE unknown_since IS NOT NULL"),
	'NSE:NOPE1', 'listed again: unmarked');

# the broker worker quotes the known ones only
$node->safe_psql('postgres', "ALTER SYSTEM SET trading.broker_url = '" . $b->url . "'");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT current_setting('trading.broker_url') = '" . $b->url . "'"),
	'the worker now talks to the paper broker');
$node->safe_psql('postgres',
	"SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN')");
ok($node->poll_query_until('postgres', "SELECT count(*) = 2 FROM trading.quotes"),
	'the known watchlist instruments are quoted');
my @quote_lines = grep { m{GET /quote} } split /\n/, $b->log_text;
ok(scalar(@quote_lines) > 0, 'quote requests were made');
is(join("\n", grep { /NOPE1/ } @quote_lines), '', 'the unknown instrument is never asked for');
is($node->safe_psql('postgres', "SELECT string_agg(instrument, ',' ORDER BY instrument) FROM trading.quotes"),
	'NSE:INFY,NSE:SYN000001', 'no quote row for the unknown instrument');

# ---- the daily refresh fires at its configured time (controlled clock) ----
$fx->serve('/instruments', $csv_all, ctype => 'text/csv');
$node->safe_psql('postgres', "ALTER SYSTEM SET trading.broker_url = '" . $fx->url . "'");
# the worker's clock: today 08:44:56 IST, so 08:45 comes in about 4 s
my $offset = $node->safe_psql('postgres', q{
SELECT round(extract(epoch FROM ((date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') + time '08:44:56')
                                 AT TIME ZONE 'Asia/Kolkata') - now()))::int});
$node->safe_psql('postgres', "ALTER SYSTEM SET trading.market_clock_offset = $offset");
$node->reload;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM trading.instrument_loads WHERE trigger = 'daily' AND error IS NULL"),
	'the daily refresh fires');
is($node->safe_psql('postgres', qq{
SELECT ((started_at + make_interval(secs => $offset)) AT TIME ZONE 'Asia/Kolkata')::time >= '08:45'
   AND ((started_at + make_interval(secs => $offset)) AT TIME ZONE 'Asia/Kolkata')::time < '08:50'
  FROM trading.instrument_loads WHERE trigger = 'daily'}),
	't', 'at 08:45 IST on the worker\'s clock, not before');
is(table_csv(), csv_rows($csv_all), 'the daily refresh loaded the new list');
sleep 3;
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.instrument_loads WHERE trigger = 'daily'"),
	'1', 'once a day');
is(sqlstate_of("ALTER SYSTEM SET trading.instruments_refresh_time = '25:00'"), '22023',
	'a bad refresh time is refused');

my $log = slurp_file($node->logfile);
unlike($log, qr/server process .* terminated by signal/, 'no backend crashed');

$b->stop;
$fx->stop;
$node->stop;
done_testing();

# TickerTest: helpers shared by the ticker's TAP tests (t/09x_*.pl).
#
#   my $b = TickerTest::broker(ws => ['--ws-tick-ms', 200]);  a PaperBroker
#       with its WebSocket ticker on a free port ($b->{ws_port}), the test
#       instruments (with a CDS and a BCD instrument), prices fixed
#   my $node = TickerTest::node('n', $b, conf => '...');   a node whose
#       ticker streams from $b with short deadlines, with the broker's
#       instruments loaded and the session set
#   TickerTest::watch($node, 'NSE:INFY' => 'full', ...)  replace the watchlist
#   TickerTest::wait_for($node, $sql, $secs)   poll until $sql returns 't'
#   TickerTest::ws($b)                         the broker's /admin/ws data
package TickerTest;

use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib "$FindBin::RealBin/lib";
use PaperBroker;
use TradingTest;

our $KEY_COMMAND = "echo 1:" . ('5a' x 32);

# extra instruments: a currency future (CDS, token & 0xff = 3, prices / 1e7)
# and a BSE currency derivative (BCD, token & 0xff = 6, prices / 1e4)
# and an index without a space in its symbol (segment 9)
our @EXTRA = (
	"260105,1016,NIFTYBANK,NIFTY BANK,48210.55,,0.0,0.0,0,EQ,INDICES,NSE",
	"412675,1612,USDINR26DECFUT,USDINR,83.1225,2026-12-29,0.0,0.0025,1,FUT,CDS-FUT,CDS",
	"1048582,4096,EURINR26DECFUT,EURINR,90.4475,2026-12-29,0.0,0.0025,1,FUT,BCD-FUT,BCD",
);

sub instruments_csv
{
	my ($dir, %o) = @_;
	my $src = "$FindBin::RealBin/../broker/data/instruments.csv";
	open(my $in, '<', $src) or die "$src: $!";
	my @lines = <$in>;
	close $in;
	s/\r?\n\z// for @lines;
	push @lines, @EXTRA;
	# synthetic instruments for load tests: tokens 100001*256+1 ...
	for my $i (1 .. ($o{synthetic} // 0))
	{
		my $tok = (100000 + $i) * 256 + 1;
		push @lines, "$tok,$i,SYN$i,SYNTHETIC $i,100.0,,0.0,0.05,1,EQ,NSE,NSE";
	}
	my $f = "$dir/instruments.csv";
	open(my $out, '>', $f) or die;
	print $out join("\n", @lines), "\n";
	close $out;
	return $f;
}

sub broker
{
	my (%o) = @_;
	my $dir = tempdir('ticker-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $csv = instruments_csv($dir, synthetic => $o{synthetic});
	my $b = PaperBroker->start(
		tick => $o{tick} // 0,
		args => [
			'--instruments', $csv,
			'--ws-port', 0, '--ws-port-file', "$dir/ws_port",
			'--ws-tick-ms', 200, '--ws-heartbeat-ms', 300,
			@{ $o{ws} // [] } ]);
	for (1 .. 100)
	{
		last if -s "$dir/ws_port";
		usleep(50_000);
	}
	chomp($b->{ws_port} = PaperBroker::slurp("$dir/ws_port"));
	die "no WebSocket port" unless $b->{ws_port};
	$b->{csv} = $csv;
	return $b;
}

sub ws { return $_[0]->admin(GET => '/admin/ws')->{json}{data}; }

sub ws_set { my ($b, %p) = @_; return $b->admin(POST => '/admin/ws', %p)->{json}{data}; }

sub node
{
	my ($name, $b, %o) = @_;
	my $node = TradingTest::node($name, init => { allows_streaming => 1 }, %o, conf => qq{
trading.key_command = '$KEY_COMMAND'
trading.broker_url = '} . $b->url . qq{'
trading.ticker_url = 'ws://127.0.0.1:$b->{ws_port}/'
trading.ticker_ping_interval = '300ms'
trading.ticker_pong_timeout = '1500ms'
trading.ticker_data_timeout = '1500ms'
trading.ticker_market_hours = 'always'
trading.ticker_reconnect_min = '100ms'
trading.ticker_reconnect_max = '400ms'
trading.ticker_flush_interval = '20ms'
} . ($o{conf} // ''));
	return $node if $o{no_start};
	load_instruments($node, $b);
	$node->safe_psql('postgres', q{
		CREATE ROLE regress_reader IN ROLE trading_reader;
		CREATE ROLE regress_admin IN ROLE trading_admin;
		UPDATE trading.poll_intervals SET enabled = false;
		SELECT trading.set_broker_session('paper_api_key', 'paper_access_token');
	});
	return $node;
}

sub load_instruments
{
	my ($node, $b) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TEMP TABLE _i (instrument_token bigint, exchange_token bigint,
			tradingsymbol text, name text, last_price numeric, expiry date,
			strike numeric, tick_size numeric, lot_size integer,
			instrument_type text, segment text, exchange text);
		COPY _i FROM '$b->{csv}' (FORMAT csv, HEADER true);
		INSERT INTO trading.instruments (instrument_token, exchange_token,
			tradingsymbol, name, last_price, expiry, strike, tick_size, lot_size,
			instrument_type, segment, exchange)
		SELECT * FROM _i ON CONFLICT DO NOTHING;
	});
}

sub watch
{
	my ($node, @pairs) = @_;
	my @values;
	while (my ($inst, $mode) = splice(@pairs, 0, 2))
	{
		push @values, "('$inst', '$mode')";
	}
	$node->safe_psql('postgres', 'DELETE FROM trading.watchlist;'
		  . (@values ? 'INSERT INTO trading.watchlist (instrument, mode) VALUES '
			  . join(', ', @values) : ''));
}

# poll until $sql returns 't' (at most $secs seconds); true when it did
sub wait_for
{
	my ($node, $sql, $secs) = @_;
	my $deadline = time + ($secs // 30);
	while (time < $deadline)
	{
		my $r = $node->safe_psql('postgres', $sql);
		return 1 if $r eq 't';
		usleep(100_000);
	}
	return 0;
}

# seconds since the epoch, fractional
sub now { return Time::HiRes::time(); }

1;

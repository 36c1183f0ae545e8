# Load: a 200-instrument watchlist and every endpoint polled at its fastest
# (100 ms) for 2 minutes (WORKER_LOAD_SECONDS) against a paper broker that
# enforces Kite's rate limits.  The broker must count zero 429s (the worker
# stays within the limits, with the rate limiter shared with SQL callers),
# more than 99% of the requests must reuse a connection, and the tables
# must hold what the broker reports.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $secs = $ENV{WORKER_LOAD_SECONDS} // 120;

# 210 instruments: the paper broker's own list plus synthetic ones
my $dir = tempdir('worker-load-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open(my $in, '<', 'broker/data/instruments.csv') or die "instruments.csv: $!";
my @lines = <$in>;
close $in;
open(my $out, '>', "$dir/instruments.csv") or die;
print $out @lines;
for my $i (1 .. 210)
{
	printf $out "%d,%d,LOADTEST%03d,LOAD TEST %d,%.2f,,0.0,0.05,1,EQ,NSE,NSE\n",
		90000000 + $i, 900000 + $i, $i, $i, 100 + $i;
}
close $out;

my $b = PaperBroker->start(ratelimit => 1, tick => 200,
	args => [ '--instruments', "$dir/instruments.csv" ]);
my $node = WorkerTest::node('load', $b);
$node->safe_psql('postgres', qq{
	INSERT INTO trading.watchlist (instrument, mode)
		SELECT format('NSE:LOADTEST%s', lpad(i::text, 3, '0')), 'ltp' FROM generate_series(1, 200) i;
	UPDATE trading.poll_intervals SET interval_ms = 100;
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});

ok($node->poll_query_until('postgres', "SELECT count(*) = 200 FROM trading.quotes"),
	'all 200 watchlist instruments are quoted (one batch)');
my $s0 = $b->stats;
diag("running for $secs s with every endpoint at 100 ms");
sleep $secs;
my $s = $b->stats;
my $requests = $s->{requests} - $s0->{requests};
my %by_class = %{ $s->{by_class} };

is($s->{http_429}{total}, 0, "the broker counted no 429 ($requests requests in $secs s)");
is($s->{rate_limited}{total}, 0, 'the broker refused nothing for its rate limits');
my $share = $s->{connections}{reused_share};
cmp_ok($share, '>', 0.99,
	"more than 99% of the requests reused a connection: $share ($s->{connections}{opened} connections for $s->{connections}{requests} requests)");
my ($opened, $wreq) = split /\|/, $node->safe_psql('postgres',
	"SELECT connections_opened_total, requests_total FROM trading.worker_http");
cmp_ok(1 - $opened / $wreq, '>', 0.99,
	"the worker's own count agrees: $opened connections for $wreq requests");
cmp_ok($requests / $secs, '>', 9, sprintf('the worker used its budget: %.1f requests/s', $requests / $secs));
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.worker_errors"), '0',
	'no error of any kind');
is($node->safe_psql('postgres',
	"SELECT bool_and(last_success > now() - interval '10 s') FROM trading.worker_status"),
	't', 'every endpoint, quotes included, is still being served (no starvation)');
diag(sprintf("requests per endpoint: %s", $node->safe_psql('postgres',
	"SELECT string_agg(endpoint || '=' || requests_total, ' ' ORDER BY endpoint) FROM trading.worker_status")));

# the quotes are the broker's instruments (prices keep walking, so compare
# the instrument tokens, known from the instruments file written above)
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument || '=' || instrument_token, ',' ORDER BY instrument) FROM trading.quotes"),
	join(',', map { sprintf('NSE:LOADTEST%03d=%d', $_, 90000000 + $_) } 1 .. 200),
	'quotes: every instrument with the broker\'s instrument token');

$node->stop;
$b->stop;
done_testing();

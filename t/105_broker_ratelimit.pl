# Paper broker rate limits: requests past Kite's limits get 429
# NetworkException "Too many requests", and /admin/stats counts them by
# class, apart from injected 429s, so a test can assert that a client never
# exceeded a limit.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use Test::More;
use Time::HiRes qw(time);
use PaperBroker;

# --- order limits that no delay can escape: per day and per minute ---
my $b = PaperBroker->start(ratelimit => 1, args => [ '--rate-orders-day', 3, '--rate-other', 0 ]);
my %form = (tradingsymbol => 'INFY', exchange => 'NSE', transaction_type => 'BUY',
	order_type => 'MARKET', quantity => 1, product => 'MIS');
my @codes = map { $b->api(POST => '/orders/regular', form => \%form)->{status} } 1 .. 5;
is_deeply(\@codes, [ 200, 200, 200, 429, 429 ], '3 orders a day: the 4th and 5th are refused');
my $r = $b->api(POST => '/orders/regular', form => \%form);
is($r->{json}{status}, 'error', '429 body: error envelope');
is($r->{json}{error_type}, 'NetworkException', '429 body: NetworkException');
is($r->{json}{message}, 'Too many requests', '429 body: message');
is($r->{json}{data}, undef, '429 body: data null');
is(scalar @{ $b->api(GET => '/orders')->{json}{data} }, 3, 'refused orders were not placed');
my $s = $b->stats;
is($s->{rate_limited}{order}, 3, 'stats: 3 order refusals');
is($s->{rate_limited}{total}, 3, 'stats: 3 refusals in all');
is($s->{http_429}{rate_limit}, 3, 'stats: http_429.rate_limit');
is($s->{http_429}{injected}, 0, 'stats: none injected');
like($b->log_text, qr{POST /orders/regular 429 .*order/day}, 'the log names the limit');
$b->admin(POST => '/admin/reset');
is($b->api(POST => '/orders/regular', form => \%form)->{status}, 200, 'reset clears the windows');
is($b->stats->{rate_limited}{total}, 0, 'reset clears the counters');
$b->stop;

$b = PaperBroker->start(ratelimit => 1, args => [ '--rate-orders-min', 2, '--rate-other', 0 ]);
@codes = map { $b->api(POST => '/orders/regular', form => \%form)->{status} } 1 .. 4;
is_deeply(\@codes, [ 200, 200, 429, 429 ], '2 orders a minute: then 429');
$b->stop;

# --- per-second limits: quote 1/s, other 10/s (defaults) ---
$b = PaperBroker->start(ratelimit => 1);
my $t0 = time;
my @q = map { $b->api(GET => '/quote/ltp', query => { i => 'NSE:INFY' })->{status} } 1 .. 5;
my $took = time - $t0;
is($q[0], 200, 'first quote passes');
my $refused = grep { $_ == 429 } @q;
SKIP: {
	skip "5 quotes took $took s: the machine is too slow to test 1/s", 1 if $took >= 1;
	ok($refused >= 4, "quote 1/s: $refused of 5 quick quotes refused");
}
is($b->stats->{rate_limited}{quote}, $refused, 'stats count every quote refusal');

$t0 = time;
my @o = map { $b->api(GET => '/portfolio/positions')->{status} } 1 .. 15;
$took = time - $t0;
is_deeply([ @o[ 0 .. 9 ] ], [ (200) x 10 ], 'other 10/s: the first 10 pass');
$refused = grep { $_ == 429 } @o;
SKIP: {
	skip "15 requests took $took s", 1 if $took >= 1;
	ok($refused >= 5, "other 10/s: $refused of the last 5 refused");
}
$s = $b->stats;
is($s->{rate_limited}{other}, $refused, 'stats count the other refusals');
is($s->{rate_limited}{order}, 0, 'no order refusals');
$b->stop;

# --- no limits: nothing refused ---
$b = PaperBroker->start;
my $n429 = grep { $b->api(GET => '/quote/ltp', query => { i => 'NSE:INFY' })->{status} == 429 } 1 .. 30;
is($n429, 0, '--no-rate-limit: no 429');
is($b->stats->{http_429}{total}, 0, '--no-rate-limit: none counted');
$b->stop;

done_testing();

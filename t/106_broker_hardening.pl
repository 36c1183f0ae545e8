# Paper broker hardening (issue 13, low items): an optional admin token,
# unguessable minted access tokens unless --seed asks for reproducible
# ones, bounded request bodies, a bound on /admin/tick?n=.  (The order id
# is copied before the lock is released in the place handler: a race, not
# testable by behaviour; see broker/orders.c.)
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use FindBin;
use lib "$FindBin::RealBin/lib";
use HTTP::Tiny;
use Test::More;
use PaperBroker;

# --- the admin token ---
my $b = PaperBroker->start(admin_token => 's3cret-admin');
my $admin = 'http://127.0.0.1:' . $b->admin_port;
my $ua = HTTP::Tiny->new(timeout => 30);
is($ua->get("$admin/admin/stats")->{status}, 403, 'admin without X-Admin-Token: 403');
is($ua->get("$admin/admin/stats", { headers => { 'X-Admin-Token' => 's3cret-admin!' } })->{status},
	403, 'admin with a wrong token: 403');
is($ua->post_form("$admin/admin/price", { instrument => 'NSE:INFY', price => 1 })->{status},
	403, 'no price change without the token');
is($ua->get("$admin/admin/stats", { headers => { 'X-Admin-Token' => 's3cret-admin' } })->{status},
	200, 'admin with the token: 200');
is($ua->get("$admin/admin/health")->{status}, 200, 'health needs no token');
is($b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500)->{status}, 200,
	'PaperBroker sends the token it was started with');
$b->stop;

# --- minted access tokens ---
sub minted
{
	my (@args) = @_;
	my $pb = PaperBroker->start(args => \@args);
	my $rt = $pb->admin(POST => '/admin/request_token')->{json}{data}{request_token};
	my $r = $pb->api(POST => '/session/token', auth => 0, form => {
		api_key => 'paper_api_key', request_token => $rt,
		checksum => sha256_hex('paper_api_key' . $rt . 'paper_api_secret') });
	$pb->stop;
	return ($rt, $r->{json}{data}{access_token});
}
my @a = minted();
my @b = minted();
ok(defined $a[1] && length $a[1] >= 16, 'a login mints an access token');
isnt($a[0], $b[0], 'without --seed, request tokens differ between runs');
isnt($a[1], $b[1], 'without --seed, access tokens differ between runs');
my @c = minted('--seed', 7);
my @d = minted('--seed', 7);
is($c[1], $d[1], 'with --seed, access tokens are reproducible');

# --- bounded request bodies ---
$b = PaperBroker->start;
my $big = $b->api(POST => '/orders/regular',
	form => { tradingsymbol => 'INFY', exchange => 'NSE', transaction_type => 'BUY',
		order_type => 'MARKET', quantity => 1, product => 'MIS', tag => 'x' x (70 * 1024) });
is($big->{status}, 413, 'a 70 kB form body: 413');
is($big->{json}{error_type}, 'InputException', '413 with a Kite error body');
my $small = $b->api(POST => '/orders/regular',
	form => { tradingsymbol => 'INFY', exchange => 'NSE', transaction_type => 'BUY',
		order_type => 'MARKET', quantity => 1, product => 'MIS', tag => 'ok1' });
is($small->{status}, 200, 'the broker still places orders');
is($b->admin(POST => '/admin/faults', _may_fail => 1, x => 'y' x (70 * 1024))->{status}, 413,
	'the admin server bounds bodies too');

# --- /admin/tick?n= ---
is($b->admin(POST => '/admin/tick', n => 10001, _may_fail => 1)->{status}, 400,
	'/admin/tick: n above 10000 refused');
is($b->admin(POST => '/admin/tick', n => 10000)->{status}, 200, '/admin/tick: n = 10000 runs');
$b->stop;

done_testing();

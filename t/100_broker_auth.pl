# Paper broker authentication: the Authorization header, checksum login,
# single-use request tokens, logout, token expiry (fixed time, TTL, admin,
# after N requests) and the X-Kite-Version check.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use FindBin;
use lib "$FindBin::RealBin/lib";
use Test::More;
use PaperBroker;

my $b = PaperBroker->start(args => [ '--api-key', 'k3y', '--api-secret', 's3cret',
	'--access-token', 'tok0', '--request-token', 'fixed_rt' ]);
$b->{key} = 'k3y';
$b->{token} = 'tok0';

# --- the header ---
is($b->api(GET => '/user/profile')->{status}, 200, 'pre-seeded token works');
for my $case ([ 'missing', 0 ], [ 'wrong token', 'token k3y:nope' ], [ 'wrong key', 'token other:tok0' ],
	[ 'wrong scheme', 'Bearer k3y:tok0' ])
{
	my $r = $b->api(GET => '/user/profile', auth => $case->[1]);
	is($r->{status}, 403, "$case->[0] header: 403");
	is($r->{json}{error_type}, 'TokenException', "$case->[0] header: TokenException");
}
is($b->stats->{auth_failures}, 4, 'stats count the auth failures');
is($b->api(GET => '/instruments', auth => 0)->{status}, 200, '/instruments needs no token');

# --- checksum login ---
sub login
{
	my ($rt, $secret, $key) = @_;
	$key //= 'k3y';
	return $b->api(POST => '/session/token', auth => 0, form => {
		api_key => $key, request_token => $rt, checksum => sha256_hex($key . $rt . $secret) });
}
my $rt = $b->admin(POST => '/admin/request_token')->{json}{data}{request_token};
ok(length $rt >= 16, 'admin mints a request_token');
my $bad = login($rt, 'wrong-secret');
is($bad->{status}, 403, 'wrong checksum: 403');
is($bad->{json}{error_type}, 'TokenException', 'wrong checksum: TokenException');
is(login($rt, 's3cret', 'other')->{status}, 400, 'wrong api_key: 400');
is($b->api(POST => '/session/token', auth => 0, form => { api_key => 'k3y' })->{status}, 400,
	'missing fields: 400');
my $ok = login($rt, 's3cret');
is($ok->{status}, 200, 'right checksum: 200');
my $tok = $ok->{json}{data}{access_token};
ok($tok && $tok ne 'tok0', 'a new access_token');
like($ok->{json}{data}{login_time}, qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'login_time format');
is(login($rt, 's3cret')->{status}, 403, 'a minted request_token is single-use');
is(login('never-issued', 's3cret')->{status}, 403, 'an unknown request_token is refused');
is(login('fixed_rt', 's3cret')->{status}, 200, 'the fixed --request-token works');
is(login('fixed_rt', 's3cret')->{status}, 200, '... and is reusable');
is($b->api(GET => '/user/profile', auth => "token k3y:$tok")->{status}, 200, 'the new token works');

# --- logout ---
my $out = $b->api(DELETE => '/session/token', auth => 0, query => { api_key => 'k3y', access_token => $tok });
is($out->{status}, 200, 'logout: 200');
is($out->{json}{data}, JSON::PP::true, 'logout: data true');
is($b->api(GET => '/user/profile', auth => "token k3y:$tok")->{status}, 403, 'logged-out token: 403');

# --- expiry by admin ---
$b->admin(POST => '/admin/token', expire => 1);
my $exp = $b->api(GET => '/user/profile');
is($exp->{status}, 403, 'expired token: 403');
is($exp->{json}{error_type}, 'TokenException', 'expired token: TokenException');
like($exp->{json}{message}, qr/expired/i, 'message says expired');
$b->admin(POST => '/admin/token', access_token => 'tok1');
$b->{token} = 'tok1';
is($b->api(GET => '/user/profile')->{status}, 200, 'admin can install a fresh token');

# --- expiry at a given time ---
$b->admin(POST => '/admin/token', expires_at => '2001-02-03 04:05:06');
is($b->api(GET => '/user/profile')->{status}, 403, 'expires_at in the past: 403');
$b->admin(POST => '/admin/token', expires_at => '2999-01-01 00:00:00');
is($b->api(GET => '/user/profile')->{status}, 200, 'expires_at in the future: 200');
my $sess = $b->admin(GET => '/admin/token')->{json}{data}{sessions};
is($sess->[-1]{expires_at}, '2999-01-01 00:00:00', 'admin shows the expiry (IST)');
$b->admin(POST => '/admin/token', ttl => 1);
sleep 2;
is($b->api(GET => '/user/profile')->{status}, 403, 'ttl passed: 403');

# --- a token expiring mid-run, after N authenticated requests ---
$b->admin(POST => '/admin/token', access_token => 'tok2', expires_at => '2999-01-01 00:00:00');
$b->{token} = 'tok2';
$b->admin(POST => '/admin/faults', expire_token_after => 3);
is($b->api(GET => '/user/profile')->{status}, 200, "request $_ before expiry: 200") for 1 .. 3;
is($b->api(GET => '/user/profile')->{status}, 403, 'request 4: the token has expired');
is($b->stop, 0, 'clean exit');

# --- command-line expiry ---
my $old = PaperBroker->start(args => [ '--token-expires-at', '2000-01-01 00:00:00' ]);
is($old->api(GET => '/user/profile')->{status}, 403, '--token-expires-at in the past: 403');
$old->stop;
my $ttl = PaperBroker->start(args => [ '--expire-token-after', 2 ]);
is($ttl->api(GET => '/portfolio/positions')->{status}, 200, '--expire-token-after 2: first ok');
is($ttl->api(GET => '/portfolio/positions')->{status}, 200, '--expire-token-after 2: second ok');
is($ttl->api(GET => '/portfolio/positions')->{status}, 403, '--expire-token-after 2: third refused');
is($ttl->api(GET => '/user/profile', version => 0)->{status}, 403, 'still refused without version header');
is($ttl->stats->{missing_version_header}, 1, 'requests without X-Kite-Version are counted');
$ttl->stop;

# --- X-Kite-Version ---
my $strict = PaperBroker->start(args => ['--require-version']);
is($strict->api(GET => '/user/profile', version => 0)->{status}, 400, '--require-version: missing header 400');
is($strict->api(GET => '/user/profile')->{status}, 200, '--require-version: with header 200');
$strict->stop;

done_testing();

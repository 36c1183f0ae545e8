# Paper broker transport: keep-alive and per-connection request counts,
# the request log, HTTPS with a self-signed certificate, 404/405, port
# files, --help, and a clean shutdown on SIGTERM and SIGINT.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use PaperBroker;

my $b = PaperBroker->start;

# --- keep-alive: one client, one connection ---
$b->api(GET => '/user/profile') for 1 .. 5;
my $c = $b->stats->{connections};
is($c->{opened}, 1, 'HTTP::Tiny reuses one connection');
is($c->{max_requests_per_connection}, 5, '5 requests on it');
is($c->{reused_requests}, 4, '4 reused requests');
is($c->{reused_share}, 0.8, 'reused share 0.8');
is_deeply([ map { $_->{requests} } @{ $c->{open} } ], [5], 'per-connection count of the open connection');

# --- no keep-alive: a connection per request ---
for (1 .. 3)
{
	my $fresh = HTTP::Tiny->new(keep_alive => 0);
	$fresh->get($b->url . '/user/profile',
		{ headers => { Authorization => "token $PaperBroker::API_KEY:$PaperBroker::TOKEN" } });
}
$c = $b->stats->{connections};
is($c->{opened}, 4, 'three more connections');
is($c->{reused_requests}, 4, 'none of them reused');
# (the server may not have seen the closes yet: look at open and closed ones)
ok((grep { $_->{requests} == 1 } @{ $c->{recent_closed} }, @{ $c->{open} }) >= 3,
	'those connections had one request each');

# --- 404 / 405 ---
my $r = $b->api(GET => '/no/such/path');
is($r->{status}, 404, 'unknown path: 404');
is($r->{json}{status}, 'error', '404: error envelope');
$r = $b->api(PATCH => '/orders');
is($r->{status}, 405, 'wrong method: 405');

# --- the request log: method, path, status, latency, connection ---
my $log = $b->log_text;
like($log, qr{conn=1 req=5 GET /user/profile 200 [\d.]+ms}, 'log line: connection, request number, method, path, status, latency');
like($log, qr{GET /no/such/path 404}, '404 logged');
my $stats = $b->stats;
is($stats->{by_route}{'GET /user/profile'}, 8, 'stats by route');
is($stats->{by_status}{404}, 1, 'stats by status');
is($stats->{by_class}{user}, 8, 'stats by class');

# --- SIGINT ---
kill 'INT', $b->{pid};
waitpid($b->{pid}, 0);
is($?, 0, 'SIGINT: clean exit');
$b->{pid} = undef;

# --- HTTPS with a self-signed certificate ---
SKIP: {
	my $dir = tempdir(CLEANUP => 1);
	open(my $saved, '>&', \*STDERR) or die;
	open(STDERR, '>', '/dev/null') or die;
	my $made = system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-subj', '/CN=127.0.0.1', '-keyout', "$dir/key.pem", '-out', "$dir/cert.pem") == 0;
	open(STDERR, '>&', $saved) or die;
	skip 'openssl cannot make a certificate', 6 unless $made;
	my $t = PaperBroker->start(tls => 1, args => [ '--tls-cert', "$dir/cert.pem", '--tls-key', "$dir/key.pem" ]);
	my $url = $t->url;
	like($url, qr/^https:/, 'https URL');
	my @cmd = ('curl', '-sk', '--cacert', "$dir/cert.pem", '-H', 'X-Kite-Version: 3',
		'-H', "Authorization: token $PaperBroker::API_KEY:$PaperBroker::TOKEN",
		'-w', '\n%{http_code}\n', "$url/user/profile", "$url/quote/ltp?i=NSE:INFY", "$url/orders");
	open(my $fh, '-|', @cmd) or die;
	my @out = <$fh>;
	close $fh;
	my @codes = grep { /^\d{3}$/ } map { chomp; $_ } @out;
	is_deeply(\@codes, [ 200, 200, 200 ], 'three HTTPS requests answered');
	my ($json) = grep { /^\{/ } @out;
	is(eval { decode_json($json)->{status} }, 'success', 'a JSON body over TLS');
	my $tc = $t->stats->{connections};
	is($tc->{opened}, 1, 'curl kept the TLS connection alive');
	is($tc->{max_requests_per_connection}, 3, '3 requests on it');
	is($t->stop, 0, 'TLS broker: clean exit');
}

# --- misc ---
my $h = `${\ PaperBroker::binary()} --help`;
is($?, 0, '--help exits 0');
like($h, qr/--fail-rate/, '--help lists the flags');
my $bad = PaperBroker->start(args => ['--no-such-flag'], may_fail => 1);
ok($bad->{exit}, 'an unknown flag stops start-up');
$bad = PaperBroker->start(args => [ '--instruments', '/nonexistent.csv' ], may_fail => 1);
like($bad->{start_error}, qr/instruments/, 'a missing instruments file is reported');

done_testing();

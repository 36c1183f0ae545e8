# The worker over HTTPS: with trading.broker_ca_file naming the paper
# broker's (self-signed) certificate it polls, reusing its TLS connections;
# without it the certificate is refused (never polled insecurely) and the
# failure is counted as a connection error.
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

my $dir = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
	  . "-addext subjectAltName=IP:127.0.0.1 -keyout $dir/key.pem -out $dir/cert.pem 2>/dev/null") == 0
  or die 'openssl could not make a certificate';
chmod 0644, "$dir/cert.pem";
chmod 0755, $dir;
my $pb = PaperBroker->start(tls => 1,
	args => [ '--tls-cert', "$dir/cert.pem", '--tls-key', "$dir/key.pem" ]);
like($pb->url, qr/^https:/, 'the paper broker serves HTTPS');

# no CA file: the system CAs do not know the certificate
my $node = WorkerTest::node('tls', $pb);
$node->safe_psql('postgres',
	"SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN')");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 5 FROM trading.worker_errors WHERE error_type = 'connection'"),
	'an unknown certificate is refused: a connection error on every endpoint');
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.orders"), '0', 'nothing applied');

# with the CA file (SIGHUP): polling works, connections are reused
$node->append_conf('postgresql.conf', "trading.broker_ca_file = '$dir/cert.pem'\n");
$node->reload;
# (HTTP::Tiny has no TLS here: place the order with curl)
my $placed = `curl -s --cacert $dir/cert.pem -H 'X-Kite-Version: 3' -H 'Authorization: token $PaperBroker::API_KEY:$PaperBroker::TOKEN' --data 'tradingsymbol=INFY&exchange=NSE&transaction_type=BUY&order_type=MARKET&quantity=1&product=MIS' ${\ $pb->url}/orders/regular`;
my ($id) = $placed =~ /"order_id":\s*"(\d+)"/ or die "place failed: $placed";
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM trading.orders WHERE order_id = '$id' AND status = 'COMPLETE'"),
	'with trading.broker_ca_file the worker polls over HTTPS');
ok($node->poll_query_until('postgres',
	"SELECT bool_and(consecutive_failures = 0) FROM trading.worker_status WHERE endpoint <> 'quotes'"),
	'every endpoint recovered');
sleep 3;		# the pool grows to the number of concurrent requests, then stays
my $r0 = $node->safe_psql('postgres', "SELECT requests_total FROM trading.worker_http");
my $c0 = $node->safe_psql('postgres', "SELECT connections_opened_total FROM trading.worker_http");
sleep 4;
my ($c1, $r1) = split /\|/, $node->safe_psql('postgres',
	"SELECT connections_opened_total, requests_total FROM trading.worker_http");
cmp_ok($r1 - $r0, '>', 10, 'requests keep flowing: ' . ($r1 - $r0) . ' in 4 s');
cmp_ok($c1 - $c0, '<=', 1, 'over kept-alive TLS connections (' . ($c1 - $c0) . ' new in 4 s)');

$node->stop;
$pb->stop;
done_testing();

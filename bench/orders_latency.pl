# Orders from SQL: the time from COMMIT of a place_order to its 'placed'
# state, against a direct HTTP POST of the same order to the paper broker
# over a kept-alive connection, in the same run (docs/ORDERS.md, "Bench").
#
# SQL path: BEGIN; SELECT trading.place_order(...); COMMIT in one kept
# session; the latency is the commit timestamp of the sender's transaction
# that recorded 'placed' minus the commit timestamp of the caller's
# transaction (track_commit_timestamp: one clock, the server's).
# Direct path: HTTP::Tiny keep-alive POST /orders/regular, timed around the
# request by the client.  The two alternate, one order at a time, paced so
# that the rate limiter never delays either (its budget is raised: this
# measures our overhead, not Kite's limits).  It is a benchmark, not a
# test: it only fails if it cannot measure.
#
#   PG_CONFIG=... DEV_DIR=/var/tmp/dev-x scripts/dev-check.sh tapcheck \
#       PROVE_TESTS=bench/orders_latency.pl PROVE_FLAGS="-I t/lib -v"
#   (ORDERS_BENCH_N orders per path, default 300)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my $n = $ENV{ORDERS_BENCH_N} // 300;
my ($node, $pb) = OrderTest::setup('bench', conf => "track_commit_timestamp = on\nlog_statement = none\n");
OrderTest::fast_limits($node, 1000);
$node->safe_psql('postgres', "UPDATE trading.poll_intervals SET interval_ms = 1000");
$pb->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1000);

# the direct path: one kept-alive connection, each request in one write
# with TCP_NODELAY (as libcurl sends), the reply read by Content-Length
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $pb->port, Proto => 'tcp')
  or die "connect: $!";
setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
sub direct_post
{
	my ($form) = @_;
	my $req = "POST /orders/regular HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Kite-Version: 3\r\n"
	  . "Authorization: token $PaperBroker::API_KEY:$PaperBroker::TOKEN\r\n"
	  . "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " . length($form)
	  . "\r\n\r\n$form";
	syswrite($sock, $req) == length($req) or die "write: $!";
	my $buf = '';
	while ($buf !~ /\r\n\r\n/) { sysread($sock, $buf, 65536, length $buf) or die "read: $!"; }
	my ($status) = $buf =~ m{^HTTP/1\.1 (\d+)};
	my ($len) = $buf =~ /Content-Length: (\d+)/i;
	my $hdr = index($buf, "\r\n\r\n") + 4;
	while (length($buf) - $hdr < $len) { sysread($sock, $buf, 65536, length $buf) or die "read: $!"; }
	return $status;
}

my $bg = $node->background_psql('postgres');
my (@sql, @direct, @phase);
# warm up both paths (connections, plans)
for (1 .. 20)
{
	direct_post('tradingsymbol=INFY&exchange=NSE&transaction_type=BUY&order_type=MARKET&quantity=1&product=MIS');
	$bg->query_safe("SELECT trading.place_order('NSE', 'INFY', 'BUY', 1)");
}
OrderTest::wait_final($node, 60);

for my $i (1 .. $n)
{
	my $side = $i % 2 ? 'BUY' : 'SELL';
	my $t0 = time;
	my $st = direct_post("tradingsymbol=INFY&exchange=NSE&transaction_type=$side&order_type=MARKET"
		  . "&quantity=1&product=MIS&validity=DAY&market_protection=-1&tag=D$i");
	push @direct, (time - $t0) * 1000;
	die "direct POST failed: $st" unless $st == 200;

	my $out = $bg->query_safe("BEGIN; SELECT trading.place_order('NSE', 'INFY', '$side', 1), "
		  . "xid(pg_current_xact_id()); COMMIT;");
	my ($id, $xid) = split /\|/, (split /\n/, $out)[0];
	my $lat;
	for (1 .. 20000)
	{
		$lat = $bg->query_safe(
			"SELECT 1000 * extract(epoch FROM pg_xact_commit_timestamp(xmin) - pg_xact_commit_timestamp('$xid'::xid)),
			        1000 * extract(epoch FROM sent_at - pg_xact_commit_timestamp('$xid'::xid)),
			        1000 * extract(epoch FROM acked_at - sent_at),
			        1000 * extract(epoch FROM pg_xact_commit_timestamp(xmin) - acked_at)
			   FROM trading.order_requests WHERE id = $id AND state = 'placed'");
		last if $lat ne '';
		sleep 0.0005;
	}
	die "request $id not placed" if $lat eq '';
	my @parts = split /\|/, $lat;
	push @sql, $parts[0];
	push @{ $phase[$_] }, $parts[ $_ + 1 ] for 0 .. 2;
	sleep 0.02;
}
$bg->quit;

sub pct
{
	my ($v, $p) = @_;
	my @s = sort { $a <=> $b } @$v;
	return $s[ int($p * $#s + 0.5) ];
}
my ($d50, $d99, $s50, $s99) = (pct(\@direct, 0.5), pct(\@direct, 0.99), pct(\@sql, 0.5), pct(\@sql, 0.99));
my $load = `cat /proc/loadavg`;
diag(sprintf("%d orders each (load average %s). direct kept-alive POST (ms): p50 %.3f p99 %.3f",
	$n, (split / /, $load)[0], $d50, $d99));
diag(sprintf("COMMIT of place_order -> 'placed' committed (ms): p50 %.3f p99 %.3f", $s50, $s99));
diag(sprintf("overhead over the direct path (ms): p50 %+.3f (target <= 2), p99 %+.3f (target <= 10); ratio p50 %.2fx p99 %.2fx",
	$s50 - $d50, $s99 - $d99, $s50 / $d50, $s99 / $d99));
diag(sprintf("where the time goes, p50 (ms): COMMIT -> claim starts %.3f; claim + checks + HTTP + reply -> recorded %.3f; recorded -> committed %.3f",
	pct($phase[0], 0.5), pct($phase[1], 0.5), pct($phase[2], 0.5)));
ok(@sql == $n && @direct == $n, "measured $n orders on each path");

done_testing();

# Exactly once under faults and kills (docs/ORDERS.md, "Exactly once"):
# 8 clients place orders while the paper broker drops 20% of the
# placements after carrying them out and answers another 10% after the
# client's timeout, and the order sender is killed with SIGKILL three
# times (each a crash-restart of the server).  Afterwards every request is
# final, the broker holds exactly one order per placed tag and none for any
# other request, and the two books agree one to one.
#
# Sizes are parameters: TRADING_ORDERS_N (orders, default 200 here; the
# acceptance size is 1000), TRADING_ORDERS_CLIENTS (8), TRADING_ORDERS_KILLS
# (3), TRADING_ORDERS_TIMEOUT (seconds to settle, 180).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../broker/test";
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

my $n = $ENV{TRADING_ORDERS_N} // 200;
my $clients = $ENV{TRADING_ORDERS_CLIENTS} // 8;
my $kills = $ENV{TRADING_ORDERS_KILLS} // 3;
my $timeout = $ENV{TRADING_ORDERS_TIMEOUT} // 180;
my $kill = $ENV{TRADING_ORDERS_KILL} // 'sender';

my ($node, $b) = OrderTest::setup('exactly_once',
	conf => "restart_after_crash = on\ntrading.order_market_validity = '10min'\n");
OrderTest::fast_limits($node, 100);

my $t0 = time;
my $total = OrderTest::exactly_once_run($node, $b, orders => $n, clients => $clients,
	drop => 0.2, late => 0.1, kills => $kills, kill => $kill);
note("$total requests from $clients clients with $kills kills of the $kill in " . (time - $t0) . " s");
cmp_ok($total, '>=', $n - $clients * $kills, 'the clients placed (nearly) all their orders');
ok(OrderTest::wait_final($node, $timeout), 'every request reached a final state');
note($node->safe_psql('postgres',
	"SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM trading.order_requests GROUP BY 1 ORDER BY 1) s"));
my $stats = $b->stats;
note("broker: accept_drop $stats->{injected}{accept_drop}, accept_late $stats->{injected}{accept_late}")
  if $stats->{injected};
cmp_ok($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.order_requests WHERE state_reason LIKE 'found at the broker by its tag%'"),
	'>', 0, 'some requests were settled by their tag after an ambiguous reply');
like(slurp_file($node->logfile), qr/left in flight by a previous run are now unknown|terminated by signal 9/,
	'the kills happened');
is(join("\n", OrderTest::audit($node, $b)), '',
	'the broker holds exactly one order per placed tag, none for any other request');
is($node->safe_psql('postgres', "SELECT max(attempts) FROM trading.order_requests WHERE state IN ('placed','unknown','failed')"),
	'1', 'no request that may have reached the broker was sent twice');
is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.adopted_orders'), '0', 'nothing to adopt');

done_testing();

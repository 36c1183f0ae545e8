# Trade history at rest: orders, trades and correlation operations older
# than trading.history_retention move into encrypted archives, one batch
# per transaction, and read back through trading.history_rows(); open
# orders, open operations and recent rows stay live.  A SIGKILL of the
# correlation writer in the middle of a move loses no row and duplicates
# none.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $node = TradingTest::node('history', no_start => 1);
$node->append_conf('postgresql.conf', qq{
trading.key_command = '$bindir/trading-getkey-file $tmp/server.key'
trading.broker_worker = off
trading.history_retention = '1d'
trading.history_interval = '1s'
trading.history_batch_rows = 20
trading.correlation_writer_delay = 50
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
-- the writer must not move anything before the rows are in place
ALTER SYSTEM SET trading.history_retention = 0;
SELECT pg_reload_conf();
CREATE EXTENSION trading;
});

# ---- the desk's history: old and recent, final and open ----
$node->safe_psql('postgres', q{
INSERT INTO trading.orders (order_id, status, tradingsymbol, quantity, order_timestamp, raw)
SELECT 'old' || g, CASE WHEN g % 3 = 0 THEN 'CANCELLED' ELSE 'COMPLETE' END, 'HISTSYM', g,
       now() - interval '40 days' + g * interval '1 minute', jsonb_build_object('order_id', 'old' || g)
FROM generate_series(1, 100) g;
INSERT INTO trading.orders (order_id, status, tradingsymbol, quantity, order_timestamp, raw)
SELECT 'open' || g, 'OPEN', 'HISTSYM', g, now() - interval '40 days', '{}'
FROM generate_series(1, 5) g;
INSERT INTO trading.orders (order_id, status, tradingsymbol, quantity, order_timestamp, raw)
SELECT 'new' || g, 'COMPLETE', 'HISTSYM', g, now() - interval '1 hour', '{}'
FROM generate_series(1, 20) g;
INSERT INTO trading.trades (trade_id, order_id, tradingsymbol, quantity, fill_timestamp, raw)
SELECT 'T' || g, 'old' || (g % 100 + 1), 'HISTSYM', g,
       CASE WHEN g <= 30000 THEN now() - interval '35 days' ELSE now() END, '{}'
FROM generate_series(1, 30100) g;
});
# 25 operations ended long ago, 5 still open (begun long ago)
$node->safe_psql('postgres', q{
INSERT INTO trading.operations (id, operation, status, started_at, ended_at)
SELECT gen_random_uuid(), 'history.op.' || g, CASE WHEN g <= 25 THEN 'ok' ELSE 'open' END,
       now() - interval '50 days', CASE WHEN g <= 25 THEN now() - interval '50 days' END
FROM generate_series(1, 30) g;
});

sub digest
{
	my ($sql) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) || ':' || md5(string_agg(r::text, '|' ORDER BY r::text)) FROM ($sql) s(r)");
}
my $old_orders = digest(q{SELECT to_jsonb(o) FROM trading.orders o WHERE order_id LIKE 'old%'});
my $old_trades = digest(q{SELECT to_jsonb(t) FROM trading.trades t WHERE fill_timestamp < now() - interval '1 day'});
my $old_ops = digest(q{SELECT to_jsonb(p) FROM trading.operations p WHERE operation LIKE 'history.op.%' AND ended_at IS NOT NULL});
like($old_trades, qr/^30000:/, '30000 old trades to move');
like($old_ops, qr/^25:/, '25 old ended operations to move');

# ---- the move starts; kill the writer in the middle of it ----
$node->safe_psql('postgres', q{ALTER SYSTEM RESET trading.history_retention; SELECT pg_reload_conf();});
$node->poll_query_until('postgres', q{
SELECT count(*) > 0 FROM trading.archives WHERE name LIKE 'history.trades.%'})
  or die 'the move did not start';
my $writer = $node->safe_psql('postgres', q{
SELECT pid FROM pg_stat_activity WHERE backend_type = 'trading correlation writer'});
my $archived_at_kill = $node->safe_psql('postgres',
	q{SELECT coalesce(sum(row_count), 0) FROM trading.archives WHERE name LIKE 'history.trades.%'});
ok($archived_at_kill < 30000, "the writer is killed in the middle of the move ($archived_at_kill of 30000 trades archived)");
kill 'KILL', $writer;
# the postmaster restarts every process after a worker's crash: wait for it
for my $i (1 .. 60)
{
	my ($r) = $node->psql('postgres', 'SELECT 1');
	last if defined $r && $r == 0;
	sleep 1;
}
$node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM trading.trades WHERE fill_timestamp < now() - interval '1 day'})
  or die 'the move did not finish after the kill';
$node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM trading.operations WHERE operation LIKE 'history.op.%' AND ended_at < now() - interval '1 day'})
  or die 'operations were not moved';
$node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM trading.orders WHERE order_id LIKE 'old%'})
  or die 'orders were not moved';

# ---- nothing lost, nothing twice ----
is(digest(q{SELECT data FROM trading.history_rows('orders')}), $old_orders, 'every old final order is in the archives, once, as it was');
is(digest(q{SELECT data FROM trading.history_rows('trades')}), $old_trades, 'every old trade is in the archives, once, as it was');
is(digest(q{SELECT data FROM trading.history_rows('operations')}), $old_ops, 'every old ended operation is in the archives, once, as it was');
is($node->safe_psql('postgres', q{
SELECT string_agg(n::text, ' ') FROM (
  SELECT count(*) FILTER (WHERE order_id LIKE 'open%') FROM trading.orders
  UNION ALL SELECT count(*) FILTER (WHERE order_id LIKE 'new%') FROM trading.orders
  UNION ALL SELECT count(*) FROM trading.trades
  UNION ALL SELECT count(*) FROM trading.operations WHERE operation LIKE 'history.op.%') s(n)}),
	'5 20 100 5', 'open orders, recent orders, recent trades and open operations stay live (the crash closed the open ones just now)');
ok($node->safe_psql('postgres', q{SELECT max(row_count) FROM trading.archives WHERE name LIKE 'history.%'}) <= 20,
	'one archive per batch of at most trading.history_batch_rows');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM trading.archives WHERE name LIKE 'history.%'
  AND (position('HISTSYM'::bytea IN data) > 0 OR position('history.op.'::bytea IN data) > 0)}),
	'0', 'the archived history is stored encrypted');
is($node->safe_psql('postgres', q{
SELECT bool_and(trading.archive_verify(name)) FROM trading.archives WHERE name LIKE 'history.%'}),
	't', 'every history archive verifies');

# ---- by hand, and bad input ----
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT trading.archive_history_batch('positions', '1 day')});
like($err, qr/unknown history kind "positions"/, 'an unknown kind is refused (22023)');
($ret, $out, $err) = $node->psql('postgres', q{SELECT trading.archive_history_batch('orders', '-1 day')});
like($err, qr/must not be negative/, 'a negative age is refused');
is($node->safe_psql('postgres', q{SELECT trading.archive_history_batch('orders', '1 day')}), '0',
	'nothing left to move by hand');

# ---- without a server key the rows stay live, and the log says why ----
$node->append_conf('postgresql.conf', "trading.key_command = ''\n");
my $from = -s $node->logfile;
$node->restart;
# inserted after the restart: with the key still loaded it would be moved
$node->safe_psql('postgres', q{
INSERT INTO trading.orders (order_id, status, quantity, order_timestamp, raw)
VALUES ('nokey', 'COMPLETE', 1, now() - interval '40 days', '{}')});
my $logged = 0;
for my $i (1 .. 60)
{
	$logged = substr(slurp_file($node->logfile), $from) =~ /moving old history into archives failed/;
	last if $logged;
	sleep 1;
}
ok($logged, 'without a server key the move fails, and the log says so');
is($node->safe_psql('postgres', q{SELECT count(*) FROM trading.orders WHERE order_id = 'nokey'}), '1',
	'and the order stays live');

$node->stop;
done_testing();

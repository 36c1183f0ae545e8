# Backups hold the desk: pg_dump -Fc of the database, restored into a fresh
# cluster with the same server key, gives back every row of every table the
# extension registers for dumping; envelopes, archives and the broker
# session decrypt there.  A restore into a cluster with another key fails
# clearly (TR102), not silently.  Every table of the extension is either
# registered for dumping or named here as derived data, so a new table
# cannot be forgotten.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run);
use TradingTest;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $getkey = "$bindir/trading-getkey-file";

# Tables whose rows are not dumped, and why.
my %derived = (
);

sub keyed_node
{
	my ($name, $keyfile) = @_;
	my $node = TradingTest::node($name, no_start => 1);
	$node->append_conf('postgresql.conf', qq{
trading.key_command = '$getkey $keyfile'
# the rows compared must not change under the test: no polling
trading.broker_worker = off
});
	$node->start;
	return $node;
}

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $keyfile = "$tmp/same.key";
my $src = keyed_node("src", $keyfile);
$src->safe_psql('postgres', 'CREATE EXTENSION trading');

# ---- every table is registered for dumping, or named as derived ----
my $unregistered = $src->safe_psql('postgres', q{
SELECT string_agg(c.relname, ' ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'trading'
WHERE n.nspname = 'trading' AND c.relkind IN ('r', 'p')
  AND NOT c.oid = ANY (coalesce(e.extconfig, '{}'))});
my @missing = grep { !exists $derived{$_} } split / /, $unregistered;
is(join(' ', @missing), '', 'every table of the extension is in pg_dump\'s output (pg_extension_config_dump)');
my $unregistered_seq = $src->safe_psql('postgres', q{
SELECT coalesce(string_agg(c.relname, ' ' ORDER BY c.relname), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'trading'
WHERE n.nspname = 'trading' AND c.relkind = 'S'
  AND NOT c.oid = ANY (coalesce(e.extconfig, '{}'))
  -- a sequence owned by a registered table's column comes with it
  AND NOT EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid
                  AND o.deptype IN ('a', 'i') AND o.refobjid = ANY (coalesce(e.extconfig, '{}')))});
is($unregistered_seq, '', 'every sequence of the extension is dumped');

# ---- fill the desk ----
$src->safe_psql('postgres', q{
SELECT trading.rate_limit_set('strategy.momentum', 5, '1 second');
UPDATE trading.rate_limits SET requests = 400 WHERE endpoint = 'kite.orders' AND per = '1 minute';
UPDATE trading.poll_intervals SET interval_ms = 2500 WHERE endpoint = 'orders';
CREATE TABLE public.envelopes AS
    SELECT 'server'::text AS kind, trading.encrypt('server secret'::bytea) AS e
    UNION ALL
    SELECT 'passphrase', trading.encrypt('pass secret'::bytea, 'backup passphrase'::text);
SELECT trading.archive_create('backup', $$SELECT g AS n FROM generate_series(1, 100) g$$);
SELECT trading.set_broker_session('backup_key', 'backup_token');
INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'ltp'), ('NSE:TCS', 'full');
INSERT INTO trading.orders (order_id, status, tradingsymbol, quantity, raw)
    VALUES ('200', 'COMPLETE', 'INFY', 5, '{"order_id": "200"}'), ('201', 'OPEN', 'TCS', 1, '{}');
INSERT INTO trading.trades (trade_id, order_id, tradingsymbol, quantity, raw)
    VALUES ('T9', '200', 'INFY', 5, '{"trade_id": "T9"}');
INSERT INTO trading.positions (kind, exchange, tradingsymbol, product, quantity, pnl, raw)
    VALUES ('net', 'NSE', 'INFY', 'MIS', 5, 12.5, '{}');
INSERT INTO trading.holdings (exchange, tradingsymbol, quantity, raw) VALUES ('NSE', 'TCS', 3, '{}');
INSERT INTO trading.margins (segment, net, raw) VALUES ('equity', 1000.5, '{}');
INSERT INTO trading.quotes (instrument, mode, last_price, raw) VALUES ('NSE:INFY', 'ltp', 1500.25, '{}');
});
$src->safe_psql('postgres', q{
BEGIN;
SELECT trading.correlation_begin('backup.parent');
SELECT trading.correlation_end();
COMMIT;
SELECT trading.correlation_flush();
});

my @tables = split / /, $src->safe_psql('postgres', q{
SELECT string_agg(c.relname, ' ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'trading' AND c.relkind IN ('r', 'p')});

sub table_digest
{
	my ($node, $t) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM trading.$t x");
}
my %before = map { $_ => table_digest($src, $_) } @tables;
for my $t (qw(rate_limits poll_intervals key_versions archives operations broker_session watchlist orders trades positions holdings margins quotes))
{
	unlike($before{$t}, qr/^0:/, "trading.$t has rows to dump");
}

# ---- pg_dump -Fc ----
my $dump = $src->basedir . '/desk.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-d', $src->connstr('postgres'), '-f', $dump ], 'pg_dump -Fc');
my ($out, $err);
run [ 'pg_restore', '-l', $dump ], '>', \$out, '2>', \$err;
for my $t (qw(rate_limits poll_intervals key_versions archives operations broker_session watchlist orders trades))
{
	like($out, qr/TABLE DATA trading $t /, "the dump holds the rows of trading.$t");
}

# ---- restore with the same key ----
my $same = keyed_node('same', $keyfile);
run [ 'pg_restore', '--exit-on-error', '-d', $same->connstr('postgres'), $dump ], '>', \$out, '2>', \$err;
is($err, '', 'pg_restore into a cluster with the same key: no error');
for my $t (@tables)
{
	is(table_digest($same, $t), $before{$t}, "trading.$t restored row for row");
}
is($same->safe_psql('postgres', q{
SELECT string_agg(kind || '=' || convert_from(
           CASE kind WHEN 'server' THEN trading.decrypt(e) ELSE trading.decrypt(e, 'backup passphrase'::text) END,
           'UTF8'), ',' ORDER BY kind) FROM public.envelopes}),
	'passphrase=pass secret,server=server secret', 'envelopes decrypt after the restore');
is($same->safe_psql('postgres', q{SELECT trading.archive_verify('backup')}), 't', 'the archive verifies after the restore');
like($same->safe_psql('postgres',
		q{SELECT convert_from(trading.decrypt(credentials, 'trading.broker_session'::bytea), 'UTF8') FROM trading.broker_session}),
	qr/backup_token/, 'the broker session decrypts after the restore');
is($same->safe_psql('postgres', q{
SELECT string_agg(endpoint || ' ' || requests || '/' || per, ', ' ORDER BY endpoint, per)
FROM trading.rate_limits WHERE endpoint IN ('kite.orders', 'strategy.momentum')}),
	'kite.orders 10/00:00:01, kite.orders 400/00:01:00, kite.orders 3000/1 day, strategy.momentum 5/00:00:01',
	'a changed default limit and a new one survive; the rest are the defaults');
is($same->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE trading.rate_limit_try('strategy.momentum')) FROM generate_series(1, 8)}),
	'5', 'the restored limits are enforced');
is($same->safe_psql('postgres', q{SELECT interval_ms FROM trading.poll_intervals WHERE endpoint = 'orders'}),
	'2500', 'a changed poll interval survives');

# ---- restore with another key: refused clearly ----
my $other = keyed_node('other', $src->basedir . '/other.key');
run [ 'pg_restore', '-d', $other->connstr('postgres'), $dump ], '>', \$out, '2>', \$err;
like($err, qr/server key version 1 of this cluster is not the key the rows were encrypted under/,
	'pg_restore into a cluster with another key names the mismatch');
like($err, qr/TR102|key_versions/, 'at the key check values');
is($other->safe_psql('postgres', q{SELECT count(*) FROM trading.key_versions}), '0',
	'no wrong key check value is stored');
my ($ret, $o, $e) = $other->psql('postgres', q{\set VERBOSITY verbose
SELECT trading.decrypt(e) FROM public.envelopes WHERE kind = 'server'});
isnt($ret, 0, 'an envelope of the other key does not decrypt');
like($e, qr/TR1\d\d/, 'it fails with an error of the extension, not silently: ' . ((split /\n/, $e)[0] // ''));

$_->stop for ($src, $same, $other);
done_testing();

# Upgrading an installed 1.0 to the current version, as a DBA does it:
# install the new binaries, restart, ALTER EXTENSION trading UPDATE.
#
# (Model: pg_stat_statements' old-versions test.)  A 1.0 install is filled
# with data: limits, operations, an archive, a broker session, envelopes,
# a watchlist and worker tables.  The new library then serves it before
# the update: its workers must leave alone what 1.0 lacks, so the server
# log shows no error.  After the update the schema must equal a fresh
# install of the current version (objects, definitions, comments, owners,
# privileges, dump configuration) and every row must still be there and
# usable: an envelope written by 1.0 decrypts, the archive verifies, the
# broker session reads back.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $getkey = "$bindir/trading-getkey-file";

my $control = slurp_file(`pg_config --sharedir` =~ s/\s+$//r . '/extension/trading.control');
my ($current) = $control =~ /^default_version = '([^']+)'/m;
ok($current && $current ne '1.0', "the current version is $current");

# Both clusters share one server key, so envelopes compare across them.
my $old = TradingTest::node('old', no_start => 1);
my $keyfile = $old->basedir . '/server.key';
$old->append_conf('postgresql.conf', "trading.key_command = '$getkey $keyfile'\n"
	. "trading.market_worker = on  # it must wait while 1.0 is installed\n");
$old->start;

$old->safe_psql('postgres', "CREATE EXTENSION trading VERSION '1.0'");
is($old->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'trading'"),
	'1.0', '1.0 installs as released');

# ---- fill 1.0 with data ----
$old->safe_psql('postgres', q{
SELECT trading.rate_limit_set('upgrade.test', 7, '1 second');
SELECT trading.rate_limit_set('upgrade.test', 100, '1 minute');
CREATE TABLE public.upg_envelopes AS
    SELECT 'server'::text AS kind, trading.encrypt('server secret'::bytea) AS e
    UNION ALL
    SELECT 'server-aad', trading.encrypt('aad secret'::bytea, 'acct:1'::bytea)
    UNION ALL
    SELECT 'passphrase', trading.encrypt('pass secret'::bytea, 'upgrade passphrase'::text);
SELECT trading.archive_create('upgrade', $$SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 50) g$$);
SELECT trading.set_broker_session('upgrade_key', 'upgrade_token');
INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'ltp'), ('NSE:TCS', 'full');
INSERT INTO trading.orders (order_id, status, tradingsymbol, quantity, raw)
    VALUES ('100', 'COMPLETE', 'INFY', 5, '{"order_id": "100"}');
INSERT INTO trading.trades (trade_id, order_id, tradingsymbol, quantity, raw)
    VALUES ('T1', '100', 'INFY', 5, '{"trade_id": "T1"}');
});
my $op = $old->safe_psql('postgres', q{
BEGIN;
SELECT trading.correlation_begin('upgrade.parent');
SELECT trading.correlation_begin('upgrade.child');
SELECT trading.correlation_end();
SELECT trading.correlation_end();
ROLLBACK;
});
my ($parent) = split /\n/, $op;
$old->safe_psql('postgres', 'SELECT trading.correlation_flush()');

# Everything the extension owns, counted row by row (tables of 1.0 only).
my $tables_1_0 = $old->safe_psql('postgres', q{
SELECT string_agg(c.relname, ' ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'trading' AND c.relkind IN ('r', 'p')});
my @tables = split / /, $tables_1_0;

# operations grows while the workers run: compare this test's own rows
my %rows_of = (operations => "WHERE operation LIKE 'upgrade.%'");

# the columns 1.0 had (1.1 may add columns to a 1.0 table)
my %cols_of = map {
	my $t = $_;
	($t => $old->safe_psql('postgres', qq{
		SELECT string_agg('x.' || quote_ident(attname), ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'trading.$t'::regclass
		AND attnum > 0 AND NOT attisdropped}))
} @tables;

sub table_digest
{
	my ($node, $t) = @_;
	my $where = $rows_of{$t} // '';
	my $row = "ROW($cols_of{$t})::text";
	return $node->safe_psql('postgres',
		"SELECT count(*) || ':' || coalesce(md5(string_agg($row, '|' ORDER BY $row)), '') FROM trading.$t x $where");
}
my %before = map { $_ => table_digest($old, $_) } @tables;
ok(scalar(@tables) >= 10, 'the 1.0 tables were found: ' . scalar(@tables));

# ---- the new library serves 1.0: a restart, then some seconds of work ----
$old->restart;
my $log_from = -s $old->logfile;
sleep 3;
$old->safe_psql('postgres', 'SELECT trading.correlation_flush()');
is($old->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'trading'"),
	'1.0', 'still 1.0 after the restart');
is($old->safe_psql('postgres', q{SELECT trading.decrypt(e) FROM public.upg_envelopes WHERE kind = 'server'}),
	'\x' . unpack('H*', 'server secret'), '1.0 objects work under the new library');
# C functions renamed in 1.1 keep their 1.0 symbols (extension/compat_1_0.c)
is($old->safe_psql('postgres', q{
	BEGIN;
	SELECT trading.correlation_begin('compat.check') = trading.current_correlation_id();
	COMMIT;}),
	't', 'a 1.0 function whose C symbol 1.1 renamed works under the new library');
# every C function of the 1.0 install finds its symbol in the new library
# (the C language's validator loads it; a missing symbol is an ERROR)
is($old->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(pg_catalog.fmgr_c_validator(p.oid) IS NULL)
	  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	 WHERE l.lanname = 'c' AND p.pronamespace = 'trading'::regnamespace}),
	'47 47', 'each of the 47 C functions of 1.0 resolves in the new library');
my $log_1_0 = substr(slurp_file($old->logfile), $log_from);
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log_1_0;
is(join("\n", @errors), '', 'no error in the server log while the new library serves 1.0');

# ---- ALTER EXTENSION trading UPDATE ----
$old->safe_psql('postgres', 'ALTER EXTENSION trading UPDATE');
is($old->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'trading'"),
	$current, "updated to $current");

# ---- a fresh install of the current version ----
my $new = TradingTest::node('new', no_start => 1);
$new->append_conf('postgresql.conf', "trading.key_command = '$getkey $keyfile'\n");
$new->start;
$new->safe_psql('postgres', 'CREATE EXTENSION trading');

# The schema as pg_dump sees it.  --binary-upgrade makes pg_dump write the
# extension's member objects (as pg_upgrade needs them); the lines that
# preserve OIDs differ between any two clusters and are dropped.
sub schema_dump
{
	my ($node) = @_;
	my $out = $node->basedir . '/schema.sql';
	$node->command_ok([ 'pg_dump', '--binary-upgrade', '--schema-only', '--no-tablespaces',
		'--exclude-table=public.upg_envelopes',
		'-d', $node->connstr('postgres'), '-f', $out ], 'pg_dump --binary-upgrade of ' . $node->name);
	my @lines;
	for (split /\n/, slurp_file($out))
	{
		next if /binary_upgrade_|pg_catalog\.setval|^-- (Dumped|Name:|TOC entry|For binary upgrade)|^SET |^SELECT pg_catalog\.set_config/;
		next if /^\\(un)?restrict |^--$/;
		next if /^UPDATE pg_catalog\.pg_class$|relfrozenxid|^WHERE oid = /;
		push @lines, $_;
	}
	my $text = join("\n", @lines);
	$text =~ s/\n{2,}/\n\n/g;
	return $text;
}

sub catalog_facts
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
-- owners and ACLs of everything in the schema
SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner) || ' ' || coalesce(c.relacl::text, '-')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'trading'
UNION ALL
SELECT 'fn ' || p.oid::regprocedure::text || ' ' || pg_get_userbyid(p.proowner) || ' ' || coalesce(p.proacl::text, '-')
       || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'trading'
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || coalesce(a.attacl::text, '-') || ' ' || coalesce(col_description(c.oid, a.attnum), '-')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'trading' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'nsp ' || n.nspname || ' ' || pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '-')
FROM pg_namespace n WHERE n.nspname = 'trading'
UNION ALL
-- what pg_dump will dump: extconfig by name, with its filter
SELECT 'config ' || c.relname || ' ' || coalesce(e.extcondition[i], '')
FROM pg_extension e, generate_subscripts(e.extconfig, 1) i, pg_class c
WHERE e.extname = 'trading' AND c.oid = e.extconfig[i]
UNION ALL
-- the members of the extension
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'trading' AND d.deptype = 'e'
UNION ALL
-- the roles and how they include each other
SELECT 'role ' || r.rolname || ' login=' || r.rolcanlogin || ' in ' ||
       coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname)
                 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid), '-')
FROM pg_roles r WHERE r.rolname LIKE 'trading\_%'
ORDER BY 1});
}

sub dx_plus
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', '\dx+ trading');
	return $out;
}

my $dump_old = schema_dump($old);
my $dump_new = schema_dump($new);
ok(length($dump_new) > 10000, 'the dump of a fresh install holds the extension\'s objects');
is($dump_old, $dump_new, 'pg_dump --schema-only: the updated 1.0 equals a fresh install');
if ($dump_old ne $dump_new)
{
	my $a = $old->basedir . '/schema.cmp';
	my $b = $new->basedir . '/schema.cmp';
	open my $fa, '>', $a or die; print $fa $dump_old; close $fa;
	open my $fb, '>', $b or die; print $fb $dump_new; close $fb;
	diag(`diff -u $a $b | head -80`);
}
is(catalog_facts($old), catalog_facts($new), 'owners, privileges, comments, members, roles and dump configuration agree');
is(dx_plus($old), dx_plus($new), '\dx+ trading agrees');

# ---- every row is still there and usable ----
for my $t (@tables)
{
	is(table_digest($old, $t), $before{$t}, "trading.$t: every row kept");
}
is($old->safe_psql('postgres', q{
SELECT string_agg(kind || '=' || convert_from(
           CASE kind WHEN 'server' THEN trading.decrypt(e)
                     WHEN 'server-aad' THEN trading.decrypt(e, 'acct:1'::bytea)
                     ELSE trading.decrypt(e, 'upgrade passphrase'::text) END, 'UTF8'), ',' ORDER BY kind)
FROM public.upg_envelopes}),
	'passphrase=pass secret,server=server secret,server-aad=aad secret',
	'envelopes written by 1.0 decrypt after the update');
is($old->safe_psql('postgres', q{SELECT trading.archive_verify('upgrade')}), 't', 'the 1.0 archive verifies');
is($old->safe_psql('postgres', q{SELECT count(*) FROM trading.archive_rows('upgrade')}), '50', 'and reads back');
like($old->safe_psql('postgres',
		q{SELECT convert_from(trading.decrypt(credentials, 'trading.broker_session'::bytea), 'UTF8') FROM trading.broker_session}),
	qr/upgrade_key.*upgrade_token|upgrade_token.*upgrade_key/s, 'the broker session decrypts');
is($old->safe_psql('postgres', qq{SELECT count(*) FROM trading.operation_chain('$parent')}),
	'2', 'the 1.0 operation chain reads back');
is($old->safe_psql('postgres', q{
SELECT string_agg(requests || '/' || extract(epoch FROM per)::int, ' ' ORDER BY per)
FROM trading.rate_limits WHERE endpoint = 'upgrade.test'}),
	'7/1 100/60', 'the limits kept');
is($old->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE trading.rate_limit_try('upgrade.test')) FROM generate_series(1, 10)}),
	'7', 'and the limiter enforces them');

# The update also works with the server restarted after it.
$old->restart;
is($old->safe_psql('postgres', q{SELECT trading.archive_verify('upgrade')}), 't', 'after a restart too');
my $log_after = substr(slurp_file($old->logfile), $log_from);
@errors = grep { /\b(PANIC|FATAL):/ && !/terminating (connection|autovacuum process|background worker .*) due to administrator command/ } split /\n/, $log_after;
is(join("\n", @errors), '', 'no FATAL or PANIC in the log');

$old->stop;
$new->stop;
done_testing();

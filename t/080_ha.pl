# The production layout of docs/LOAD_BALANCER_SETUP.md on loopback, built
# from the shipped files in deploy/: a primary and a streaming replica
# (postgresql.common.conf), a PgBouncer in front of each (pgbouncer.ini,
# auth_query through pgbouncer_auth.sql, SCRAM), HAProxy in front of both
# (haproxy.cfg, HTTP checks answered by pg-status-http on each node).  Only
# addresses, ports and paths differ.
#
#  1. pgbench through HAProxy's read-write and read-only ports with the
#     extension's functions; reads land on the replica.
#  2. The replica's PgBouncer is killed while pgbench runs on the
#     read-only port: the read-only traffic continues through the
#     primary's PgBouncer.
#  3. On the replica, reads work and writes fail with 25006 naming the
#     read-write frontend; the broker worker does not run there.
#  4. The primary is stopped and the replica promoted: the worker starts
#     there, HAProxy's read-write port follows it, and rate limits and
#     correlation tracking work through it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Time::HiRes qw(usleep time);
use TradingTest;

my $deploy = "$ENV{PWD}/deploy";
$deploy = '../deploy' unless -d $deploy;
die "deploy/ not found" unless -f "$deploy/pgbouncer.ini";
my $tmp = PostgreSQL::Test::Utils::tempdir_short;
my $password = 'ha-test-' . int(rand(1e9));
my $rw_port = PostgreSQL::Test::Cluster::get_free_port();
my $ro_port = PostgreSQL::Test::Cluster::get_free_port();
my $stats_port = PostgreSQL::Test::Cluster::get_free_port();

# keep the logs of PgBouncer, HAProxy and the checks beside the test's log
END
{
	for my $f (glob("$tmp/*.log $tmp/*.out $tmp/*.ini"))
	{
		(my $base = $f) =~ s{.*/}{};
		system('cp', $f, "$PostgreSQL::Test::Utils::log_path/080_ha_$base");
	}
}

sub slurp_file_ { local (@ARGV, $/) = @_; return <> }

sub write_file
{
	my ($path, $text, $mode) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod($mode, $path) if defined $mode;
}

# ---- the primary: deploy/postgresql.common.conf with site values ----------
my $common = slurp_file_("$deploy/postgresql.common.conf");
$common =~ s/^trading\.database = .*$/trading.database = 'postgres'/m;
$common =~ s/^trading\.key_command = .*$/trading.key_command = 'trading-getkey-file server.key'/m;
$common =~ s/^trading\.primary_hint = .*$/trading.primary_hint = 'the read-write frontend at 127.0.0.1:$rw_port'/m;
$common =~ s/^listen_addresses = .*$/listen_addresses = '127.0.0.1'/m;
$common =~ s/^port = .*$//m;    # the test framework's port
like($common, qr/^shared_preload_libraries = 'trading'$/m, 'the shipped fragment preloads trading');

my $primary = TradingTest::node('primary', init => { allows_streaming => 1 },
	conf => $common, no_start => 1);
# SCRAM for TCP (PgBouncer and HAProxy's checks); the framework's own
# connections use the Unix socket.
my $hba = slurp_file_($primary->data_dir . '/pg_hba.conf');
write_file($primary->data_dir . '/pg_hba.conf',
	"host all all 127.0.0.1/32 scram-sha-256\n" . $hba);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION trading');
$primary->safe_psql('postgres', slurp_file_("$deploy/pgbouncer_auth.sql"));
$primary->safe_psql('postgres', qq{
ALTER ROLE pgbouncer_auth PASSWORD '$password';
CREATE ROLE trading_health LOGIN PASSWORD '$password';
CREATE ROLE desk_analyst LOGIN PASSWORD '$password' IN ROLE trading_analyst;
CREATE ROLE desk_admin LOGIN PASSWORD '$password' IN ROLE trading_admin;
CREATE ROLE trading_exporter LOGIN PASSWORD '$password' IN ROLE trading_reader, pg_monitor;
SELECT trading.rate_limit_set('bench.rw', 100000, '1 second');
});

# ---- the replica ------------------------------------------------------------
$primary->backup('base');
my $replica = PostgreSQL::Test::Cluster->new('replica');
$replica->init_from_backup($primary, 'base', has_streaming => 1);
# the copy of the backup loses the key file's mode; the key command refuses
# a key file others can read (a copy with scp -p or pg_basebackup keeps it)
chmod 0600, $replica->data_dir . '/server.key';
$replica->start;
$primary->wait_for_catchup($replica);
is($replica->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the replica is a hot standby');

# ---- a PgBouncer in front of each node: deploy/pgbouncer.ini ---------------
my $userlist = "$tmp/userlist.txt";
write_file($userlist, qq{"pgbouncer_auth" "$password"\n}, 0600);

my %bouncer;
sub start_bouncer
{
	my ($name, $node) = @_;
	my $b = $bouncer{$name} //= { port => PostgreSQL::Test::Cluster::get_free_port() };
	my $ini = slurp_file_("$deploy/pgbouncer.ini");
	my $port = $node->port;
	$ini =~ s/^\* = host=.*$/* = host=127.0.0.1 port=$port/m;
	$ini =~ s/^listen_addr = .*$/listen_addr = 127.0.0.1/m;
	$ini =~ s/^listen_port = .*$/listen_port = $b->{port}/m;
	$ini =~ s/^unix_socket_dir = .*$/unix_socket_dir = $tmp/m;
	$ini =~ s/^logfile = .*$/logfile = $tmp\/pgbouncer_$name.log/m;
	$ini =~ s/^pidfile = .*$/pidfile = $tmp\/pgbouncer_$name.pid/m;
	$ini =~ s/^auth_file = .*$/auth_file = $userlist/m;
	write_file("$tmp/pgbouncer_$name.ini", $ini);
	$b->{h} = IPC::Run::start(['pgbouncer', "$tmp/pgbouncer_$name.ini"],
		'>', "$tmp/pgbouncer_$name.out", '2>&1');
	return $b;
}
start_bouncer('node1', $primary);
start_bouncer('node2', $replica);

write_file("$tmp/pgpass", "127.0.0.1:*:*:*:$password\n", 0600);
$ENV{PGPASSFILE} = "$tmp/pgpass";

# psql over TCP: through a PgBouncer or HAProxy; each statement is one -c
# (one transaction)
sub tcp_psql
{
	my ($port, $user, @sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(['psql', '-X', '-A', '-t', '-w', '-h', '127.0.0.1', '-p', $port,
		'-U', $user, '-d', 'postgres', '-v', 'VERBOSITY=verbose', map { ('-c', $_) } @sql],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	chomp $out;
	return wantarray ? ($?, $out, $err) : $out;
}

sub wait_for
{
	my ($what, $cond, $secs) = @_;
	my $deadline = time + ($secs // 60);
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(200_000);
	}
	diag("timed out waiting for $what");
	return 0;
}

for my $n (qw(node1 node2))
{
	ok(wait_for("PgBouncer $n", sub {
		(tcp_psql($bouncer{$n}{port}, 'desk_analyst', 'SELECT 1'))[1] eq '1' }),
		"PgBouncer $n authenticates desk_analyst through auth_query (SCRAM)");
}
my (undef, undef, $err) = tcp_psql($bouncer{node1}{port}, 'postgres', 'SELECT 1');
like($err, qr/password authentication failed|SASL authentication failed|no such user|not allowed/,
	'a superuser cannot log in through the pooler (get_auth refuses superusers)');

# ---- each node's status endpoint: deploy/pg-status-http -----------------------
my %status;
for my $n (qw(node1 node2))
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	write_file("$tmp/pg-status-http_$n.env", <<"EOF");
PGSTATUS_LISTEN=127.0.0.1:$port
PGCHECK_HOST=127.0.0.1
PGCHECK_PORT=$bouncer{$n}{port}
PGCHECK_USER=trading_health
PGCHECK_DB=postgres
PGPASSFILE=$tmp/pgpass
PGCHECK_TIMEOUT=2
EOF
	$status{$n} = { port => $port, h => IPC::Run::start(['perl', "$deploy/pg-status-http",
		"$tmp/pg-status-http_$n.env"], '>', "$tmp/pg-status-http_$n.log", '2>&1') };
}

# GET a path of a status endpoint: "<code> <body>"
sub status_get
{
	my ($n, $path) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$status{$n}{port}", Timeout => 5)
	  or return 'no connection';
	print $sock "GET $path HTTP/1.0\r\n\r\n";
	local $/;
	my $resp = <$sock> // '';
	my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
	my ($body) = $resp =~ /\r\n\r\n(.*)\n/s;
	return ($code // '?') . ' ' . ($body // '');
}
ok(wait_for('the status endpoints', sub { status_get('node1', '/primary') eq '200 primary' }),
	'status endpoint: node1 is the primary');
is(status_get('node1', '/standby'), '503 primary', 'status endpoint: node1 is not a standby');
is(status_get('node2', '/standby'), '200 standby', 'status endpoint: node2 is a standby');
is(status_get('node2', '/primary'), '503 standby', 'status endpoint: node2 is not the primary');
is(status_get('node2', '/any'), '200 standby', 'status endpoint: /any');
like(status_get('node2', '/nope'), qr/^404/, 'status endpoint: unknown path');

# ---- HAProxy: deploy/haproxy.cfg unchanged, addresses from the environment ---
my $admin_socket = "$tmp/haproxy.sock";
my %hap_env = (
	TRADING_NODE1 => "127.0.0.1:$bouncer{node1}{port}",
	TRADING_NODE2 => "127.0.0.1:$bouncer{node2}{port}",
	TRADING_NODE1_STATUS_PORT => $status{node1}{port},
	TRADING_NODE2_STATUS_PORT => $status{node2}{port},
	TRADING_RW_BIND => "127.0.0.1:$rw_port",
	TRADING_RO_BIND => "127.0.0.1:$ro_port",
	TRADING_STATS_BIND => "127.0.0.1:$stats_port",
	TRADING_ADMIN_SOCKET => $admin_socket);
my $haproxy;
{
	local @ENV{ keys %hap_env } = values %hap_env;
	$haproxy = IPC::Run::start(['haproxy', '-db', '-f', "$deploy/haproxy.cfg"],
		'>', "$tmp/haproxy.log", '2>&1');
}

# server name => status (UP, DOWN, ...) and total sessions, from the admin socket
sub hap_stat
{
	my $sock = IO::Socket::UNIX->new(Peer => $admin_socket) or return {};
	print $sock "show stat\n";
	my %s;
	while (my $line = <$sock>)
	{
		my @f = split /,/, $line;
		next if @f < 18 || $f[0] =~ /^#/;
		$s{"$f[0]/$f[1]"} = { status => $f[17], stot => $f[7] };
	}
	return \%s;
}
sub hap_status { my $s = hap_stat()->{ $_[0] }; return $s ? $s->{status} : 'none' }
sub hap_sessions { my $s = hap_stat()->{ $_[0] }; return $s ? $s->{stot} : 0 }

ok(wait_for('HAProxy health checks', sub {
	hap_status('trading_rw/node1_primary') eq 'UP'
	  && hap_status('trading_ro/node2_standby') eq 'UP'
	  && hap_status('trading_ro/node1_any') eq 'UP' }), 'HAProxy: checks pass');
is(hap_status('trading_rw/node2_primary'), 'DOWN', 'the replica is not a read-write server');
is(hap_status('trading_ro/node1_standby'), 'DOWN', 'the primary is not a read-only server');

# ---- 1. pgbench through both ports -----------------------------------------
write_file("$tmp/rw.sql", <<'EOF');
SELECT trading.rate_limit_try('bench.rw');
BEGIN;
SELECT trading.correlation_begin('bench.rw', attributes => '{"via": "haproxy"}');
SELECT trading.correlation_end();
COMMIT;
SELECT trading.record_api_request('bench.rw', 0.001, 200);
EOF
write_file("$tmp/ro.sql", <<'EOF');
SELECT count(*) FROM trading.rate_limit_status;
SELECT count(*) FROM trading.worker_status;
SELECT count(*) FROM trading.operations WHERE operation = 'bench.rw';
SELECT count(*) FROM trading.metrics;
SELECT count(*) FROM trading.correlation_stats;
EOF

sub pgbench
{
	my ($port, $script, $secs, @extra) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(['pgbench', '-n', '-C', '-c', '4', '-j', '2', '-T', $secs, '-f', $script,
		'-h', '127.0.0.1', '-p', $port, '-U', 'desk_analyst', @extra, 'postgres'],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return pgbench_result($?, $out, $err);
}

# pgbench's figures; clients aborted while connecting are counted apart
sub pgbench_result
{
	my ($rc, $out, $err) = @_;
	my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	my $all = () = $err =~ /client \d+ aborted/g;
	my $conn = () = $err =~ /client \d+ aborted while establishing connection/g;
	return { rc => $rc, n => $n // 0, failed => $failed // 0, conn_aborts => $conn,
		other_aborts => $all - $conn, out => $out, err => $err };
}

# a run that worked: transactions done, none failed, no client lost
sub pgbench_ok
{
	my ($r, $name) = @_;
	my $ok = ok($r->{n} > 0 && $r->{failed} == 0 && $r->{other_aborts} == 0 && $r->{conn_aborts} == 0,
		"$name: $r->{n} transactions, $r->{failed} failed, "
		  . ($r->{other_aborts} + $r->{conn_aborts}) . ' clients aborted');
	diag($r->{err}) unless $ok;
	return $ok;
}

my $rw = pgbench($rw_port, "$tmp/rw.sql", 3);
pgbench_ok($rw, 'pgbench -C through the read-write port');
$primary->safe_psql('postgres', 'SELECT trading.correlation_flush()');
my $ops = $primary->safe_psql('postgres',
	"SELECT count(*) FROM trading.operations WHERE operation = 'bench.rw' AND status = 'ok'");
cmp_ok($ops, '>=', $rw->{n}, 'every read-write transaction left its operation in trading.operations');
my $granted = $primary->safe_psql('postgres',
	"SELECT granted_total FROM trading.rate_limit_status WHERE endpoint = 'bench.rw'");
cmp_ok($granted, '>=', $rw->{n}, 'and was granted by the primary\'s rate limiter');

my $standby_before = hap_sessions('trading_ro/node2_standby');
my $ro = pgbench($ro_port, "$tmp/ro.sql", 2);
pgbench_ok($ro, 'pgbench -C through the read-only port');
cmp_ok(hap_sessions('trading_ro/node2_standby') - $standby_before, '>=', $ro->{n},
	'the read-only traffic went to the replica');
is(hap_sessions('trading_ro/node1_any'), 0, 'and none to the primary');

# ---- 2. the replica's PgBouncer dies during a read-only run ------------------
my @runs;
my $any_before = hap_sessions('trading_ro/node1_any');
for my $i (1 .. 6)
{
	my $t0 = time;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(['pgbench', '-n', '-C', '-c', '4', '-j', '2', '-T', '1',
		'-f', "$tmp/ro.sql", '-h', '127.0.0.1', '-p', $ro_port, '-U', 'desk_analyst', 'postgres'],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	if ($i == 3)
	{
		usleep(400_000);
		$bouncer{node2}{h}->signal('KILL');
		$bouncer{node2}{h}->finish;
		note('killed the replica\'s PgBouncer during run 3');
	}
	$h->finish;
	push @runs, pgbench_result($h->result(0), $out, $err);
	note(sprintf('read-only run %d: %d transactions, %d clients aborted while connecting, %d after',
		$i, $runs[-1]{n}, $runs[-1]{conn_aborts}, $runs[-1]{other_aborts}));
}
pgbench_ok($runs[$_], 'read-only run ' . ($_ + 1) . ' before the stop') for 0 .. 1;
note("the run during which PgBouncer died lost " . ($runs[2]{other_aborts} + $runs[2]{conn_aborts}) . " of its 4 clients");
pgbench_ok($runs[$_], 'read-only run ' . ($_ + 1) . ' after the stop') for 3 .. 5;
cmp_ok(hap_sessions('trading_ro/node1_any') - $any_before, '>=', $runs[3]{n} + $runs[4]{n} + $runs[5]{n},
	'they went through the primary\'s PgBouncer');
is(hap_status('trading_ro/node2_standby'), 'DOWN', 'HAProxy marked the dead PgBouncer down');

start_bouncer('node2', $replica);
ok(wait_for('the replica back in the read-only pool',
	sub { hap_status('trading_ro/node2_standby') eq 'UP' }), 'restarted PgBouncer: the replica serves reads again');

# ---- 3. the replica: reads work, writes name the primary --------------------
my ($rc, $out);
# things to read back on the replica, made on the primary through :5000
($rc, $out, $err) = tcp_psql($rw_port, 'desk_admin',
	"SELECT trading.archive_create('ha.archive', 'SELECT g FROM generate_series(1, 5) g') > 0");
is($out, 't', 'an archive made through the read-write port') or diag($err);
$primary->safe_psql('postgres', q{
CREATE TABLE ha_secret AS SELECT trading.encrypt_text('ha secret') AS v;
GRANT SELECT ON ha_secret TO desk_admin;
});
my $some_op = $primary->safe_psql('postgres',
	"SELECT id FROM trading.operations WHERE operation = 'bench.rw' LIMIT 1");
$primary->wait_for_catchup($replica);
for my $read (
	["SELECT trading.decrypt_text(v) FROM ha_secret", 'ha secret'],
	["SELECT trading.archive_verify('ha.archive')", 't'],
	["SELECT count(*) FROM trading.archive_rows('ha.archive')", '5'],
	["SELECT count(*) FROM trading.archive_list WHERE name = 'ha.archive'", '1'],
	["SELECT count(*) FROM trading.operation_chain('$some_op')", '1'],
	["SELECT count(*) > 0 FROM trading.metrics_catalog", 't'],
	["SELECT count(*) = 6 FROM trading.worker_status", 't'],
	["SELECT count(*) > 0 FROM trading.validate_config()", 't'])
{
	my ($sql, $want) = @$read;
	($rc, $out, $err) = tcp_psql($ro_port, 'desk_admin', $sql);
	is($out, $want, "replica via the read-only port: $sql") or diag($err);
}
for my $view (qw(rate_limit_status worker_status operations correlation_stats metrics
	broker_session_status orders positions))
{
	my ($rc, $out, $e) = tcp_psql($ro_port, 'desk_analyst', "SELECT count(*) >= 0 FROM trading.$view");
	is($out, 't', "replica via the read-only port: trading.$view reads") or diag($e);
}
($rc, $out, $err) = tcp_psql($ro_port, 'desk_admin', "SELECT trading.rate_limit_set('bench.rw', 5, '1 second')");
like($err, qr/25006/, 'replica: rate_limit_set fails with 25006');
like($err, qr/HINT:.*the read-write frontend at 127\.0\.0\.1:$rw_port/, 'and the hint names the read-write frontend');
($rc, $out, $err) = tcp_psql($ro_port, 'desk_admin', "SELECT trading.rate_limit_drop('bench.rw')");
like($err, qr/25006/, 'replica: rate_limit_drop fails with 25006');
like($err, qr/HINT:.*127\.0\.0\.1:$rw_port/, 'naming the read-write frontend too');

# Every function that writes refuses on a standby with 25006 and a hint
# that names the read-write frontend; broker_login refuses before the
# single-use request token reaches the broker.
for my $call (
	["correlation_begin", "desk_analyst", "SELECT trading.correlation_begin('on.replica')"],
	["correlation_end", "desk_analyst", "SELECT trading.correlation_end('00000000-0000-4000-8000-000000000000')"],
	["correlation_flush", "desk_analyst", "SELECT trading.correlation_flush('1 second')"],
	["archive_create", "desk_admin", "SELECT trading.archive_create('on.replica', 'SELECT 1')"],
	["set_broker_session", "desk_admin", "SELECT trading.set_broker_session('key', 'token')"],
	["clear_broker_session", "desk_admin", "SELECT trading.clear_broker_session()"],
	["broker_login", "desk_admin", "SELECT trading.broker_login('key', 'request-token', 'secret')"])
{
	my ($name, $user, $sql) = @$call;
	($rc, $out, $err) = tcp_psql($ro_port, $user, $sql);
	like($err, qr/ERROR:\s+25006/, "replica: $name fails with 25006");
	like($err, qr/HINT:.*127\.0\.0\.1:$rw_port/, "replica: $name names the read-write frontend");
}
# reads and computations still work there
for my $call (
	["encrypt", "desk_admin", "SELECT trading.encrypt('x'::bytea) IS NOT NULL", 't'],
	["rate_limit_try", "desk_analyst", "SELECT trading.rate_limit_try('kite.api') IS NOT NULL", 't'],
	["current_correlation_id", "desk_analyst", "SELECT trading.current_correlation_id() IS NULL", 't'])
{
	my ($name, $user, $sql, $want) = @$call;
	($rc, $out, $err) = tcp_psql($ro_port, $user, $sql);
	is($out, $want, "replica: $name works") or diag($err);
}
is($replica->safe_psql('postgres', 'SELECT 1'), '1', 'the replica is still up');

is($replica->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trading broker worker'"),
	'0', 'the broker worker does not run on the replica');
is($replica->safe_psql('postgres', 'SELECT DISTINCT worker_state FROM trading.worker_status'),
	'not_running', 'worker_status says not_running there');

my $checks = $replica->safe_psql('postgres',
	"SELECT string_agg(check_name || '=' || ok, ' ' ORDER BY check_name) FROM trading.validate_config()
	 WHERE check_name IN ('worker_running', 'worker_fresh', 'primary_hint', 'preloaded', 'key_loaded')");
is($checks, 'key_loaded=true preloaded=true primary_hint=true worker_fresh=true worker_running=true',
	'validate_config on the replica: standby-aware worker checks, key and hint');

# validate_config through the pooler on the primary, and the key file check
($rc, $out, $err) = tcp_psql($rw_port, 'desk_admin',
	"SELECT string_agg(check_name || '=' || ok, ' ' ORDER BY check_name) FROM trading.validate_config()
	 WHERE check_name IN ('pgbouncer_safe_settings', 'exporter_grants', 'key_command_permissions', 'pbkdf2_iterations', 'rate_limits')");
is($out, 'exporter_grants=true key_command_permissions=true pbkdf2_iterations=true pgbouncer_safe_settings=true rate_limits=true',
	'validate_config through HAProxy and PgBouncer: the shipped settings pass') or diag($err);
chmod 0644, $primary->data_dir . '/server.key';
$out = $primary->safe_psql('postgres',
	"SELECT ok || ' ' || detail FROM trading.validate_config() WHERE check_name = 'key_command_permissions'");
like($out, qr/^false .*argument 1 .*mode 0644/, 'a key file readable by others is reported');
unlike($out, qr/server\.key/, 'without naming the file');
chmod 0600, $primary->data_dir . '/server.key';

# ---- 4. failover: the primary stops, the replica is promoted ----------------
my $ops_before = $primary->safe_psql('postgres', 'SELECT count(*) FROM trading.operations');
$primary->wait_for_catchup($replica);
$primary->stop('immediate');
ok(wait_for('the read-write server going down',
	sub { hap_status('trading_rw/node1_primary') ne 'UP' }), 'HAProxy: the old primary is down');
($rc, $out, $err) = tcp_psql($rw_port, 'desk_analyst', 'SELECT 1');
isnt($rc, 0, 'no read-write server while there is no primary');

$replica->promote;
ok($replica->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading broker worker'"),
	'the broker worker starts on the promoted replica');
ok($replica->poll_query_until('postgres',
	"SELECT worker_state NOT IN ('not_running', 'starting') FROM trading.worker_status LIMIT 1"),
	'and reports its state');
ok(wait_for('the new primary in the read-write pool',
	sub { hap_status('trading_rw/node2_primary') eq 'UP' }), 'HAProxy routes read-write to the promoted replica');

($rc, $out, $err) = tcp_psql($rw_port, 'desk_admin',
	"SELECT trading.rate_limit_set('after.failover', 2, '1 hour')", "SELECT trading.rate_limit_try('after.failover')");
is($out, "\nt", 'rate limits can be set and used through the read-write port after failover') or diag($err);
($rc, $out, $err) = tcp_psql($rw_port, 'desk_analyst',
	"SELECT trading.rate_limit_try('after.failover')", "SELECT trading.rate_limit_try('after.failover')");
is($out, "t\nf", 'the promoted node enforces them (2 per hour)') or diag($err);
is($replica->safe_psql('postgres', "SELECT count(*) FROM trading.rate_limits WHERE endpoint = 'bench.rw'"),
	'1', 'the limits set on the old primary are there');

($rc, $out, $err) = tcp_psql($rw_port, 'desk_analyst',
	"BEGIN; SELECT trading.correlation_begin('after.failover') IS NOT NULL; SELECT trading.correlation_end() >= interval '0'; COMMIT;",
	"SELECT trading.correlation_flush()");
is($rc, 0, 'correlation through the read-write port after failover') or diag($err);
is($replica->safe_psql('postgres',
	"SELECT status FROM trading.operations WHERE operation = 'after.failover'"),
	'ok', 'the correlation writer stores operations on the promoted node');
cmp_ok($replica->safe_psql('postgres', 'SELECT count(*) FROM trading.operations'), '>', $ops_before,
	'operations of the old primary are kept');

$rw = pgbench($rw_port, "$tmp/rw.sql", 2);
pgbench_ok($rw, 'pgbench through the read-write port on the new primary');
$ro = pgbench($ro_port, "$tmp/ro.sql", 1);
pgbench_ok($ro, 'pgbench through the read-only port after failover (no standby left: the backup server)');

$haproxy->signal('TERM');
$haproxy->finish;
for my $b (values %bouncer, values %status)
{
	$b->{h}->signal('TERM');
	$b->{h}->finish;
}
done_testing();

# Security hardening that needs a real server (docs/SECURITY.md):
#  - issue 13 item 10: a hanging key command does not block server start
#    (trading.key_command_timeout), and the key page is read-only in the
#    postmaster and in every backend (/proc/<pid>/smaps);
#  - item 5: a login with the stored api secret puts the secret in no
#    statement: not in the server log (log_statement = all,
#    log_min_duration_statement = 0, failing logins), not in
#    pg_stat_activity while a login waits for the broker, not in
#    pg_stat_statements;
#  - validate_config() warns about cleartext http:// to a remote broker;
#  - issue 18: key rotation re-wraps the extension's own server-key columns
#    (rewrap_server_key_columns), so the broker session, the stored api
#    secret and archives still decrypt after the old version is removed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;

my $key1 = '3c' x 32;
my $key2 = 'd7' x 32;

# ---- a hanging key command: the server starts without the key ----
my $node = TradingTest::node('keycmd', no_start => 1);
my $dir = $node->basedir;
$node->append_conf('postgresql.conf', qq{
trading.key_command = 'echo \$\$ > $dir/keycmd.pid; exec sleep 600'
trading.key_command_timeout = '2s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION trading');
like(slurp_file($node->logfile),
	qr/WARNING:  trading: could not load the server key\n.*DETAIL:  trading.key_command did not finish within 2 s \(trading.key_command_timeout\) and was killed/,
	'a hanging key command is killed after trading.key_command_timeout, with a WARNING');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT trading.encrypt('\\x01'::bytea)");
like($err, qr/the server key is not loaded.*\n.*did not finish within 2 s/,
	'functions that need the key say why it is missing (TR101)');
my $kcpid = slurp_file("$dir/keycmd.pid");
chomp $kcpid;
ok($kcpid =~ /^\d+$/ && !kill(0, $kcpid), "the key command (pid $kcpid) is gone");

# ---- the key page is read-only, in the postmaster and in backends ----
$node->append_conf('postgresql.conf', "trading.key_command = 'echo 1:$key1'\n");
$node->restart;
my ($pmpid) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');

# mappings of a smaps text: [range, perms, flags]
sub mappings
{
	my ($smaps) = @_;
	my (@maps, $cur);
	for my $line (split /\n/, $smaps)
	{
		if ($line =~ /^([0-9a-f]+-[0-9a-f]+) (\S{4}) /)
		{
			$cur = [ $1, $2, '' ];
			push @maps, $cur;
		}
		elsif ($line =~ /^VmFlags:\s*(.*)$/ && $cur)
		{
			$cur->[2] = " $1 ";
		}
	}
	return @maps;
}
my @key_pages = grep { $_->[2] =~ / lo / && $_->[2] =~ / sh / }
  mappings(slurp_file("/proc/$pmpid/smaps"));
is(scalar @key_pages, 1, 'the postmaster has one locked shared mapping: the key page');
my ($range, $perms, $flags) = @{ $key_pages[0] // [ '', '', '' ] };
is($perms, 'r--s', 'the key page is read-only in the postmaster');
like($flags, qr/ dd /, 'the key page is excluded from core dumps');
my $backend_smaps = $node->safe_psql('postgres', "SELECT pg_read_file('/proc/self/smaps')");
my ($in_backend) = grep { $_->[0] eq $range } mappings($backend_smaps);
ok($in_backend, 'a backend has the key page mapped');
is($in_backend && $in_backend->[1], 'r--s', 'the key page is read-only in a backend');
unlike($in_backend && $in_backend->[2], qr/ wr /, 'a backend cannot write to the key page');
is($node->safe_psql('postgres',
	"SELECT trading.decrypt(trading.encrypt('\\x0102'::bytea)) = '\\x0102'::bytea"),
	't', 'the key still works from the read-only page');
$node->stop;

# ---- the api secret in no statement, log or statistics ----
my $secret = 'apiSecret-Vw93kq';
my $b = PaperBroker->start(args => [ '--api-secret', $secret ]);
$node = TradingTest::node('login', no_start => 1);
$dir = $node->basedir;
my $keyfile = "$dir/server.keys";
append_to_file($keyfile, "1:$key1\n");
chmod 0600, $keyfile;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'trading,pg_stat_statements'
pg_stat_statements.track = all
trading.key_command = 'cat $keyfile'
trading.broker_url = '${\ $b->url}'
trading.broker_timeout = '3s'
trading.broker_connect_timeout = '1s'
log_statement = 'all'
log_min_duration_statement = 0
log_min_error_statement = 'error'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION trading;
	CREATE EXTENSION pg_stat_statements;
	CREATE ROLE tap_admin LOGIN IN ROLE trading_admin;
	ALTER ROLE tap_admin SET log_parameter_max_length = 0;
});

# the secret is stored once, through a bind parameter (pgbench -M extended
# sends the script's variables as parameters)
my $pgbench_script = "$dir/store_secret.sql";
append_to_file($pgbench_script,
	"SELECT trading.set_broker_api_secret(:api_key, :api_secret);\n");
$node->command_ok(
	[ 'pgbench', '-n', '-M', 'extended', '-t', '1', '-f', $pgbench_script,
	  '-D', "api_key=$PaperBroker::API_KEY", '-D', "api_secret=$secret",
	  '-U', 'tap_admin', '-h', $node->host, '-p', $node->port, 'postgres' ],
	'set_broker_api_secret through a bind parameter');

sub as_admin
{
	my ($sql) = @_;
	return $node->psql('postgres', $sql, extra_params => [ '-U', 'tap_admin' ]);
}

# a login that waits for a broker that never answers, then fails: look at
# pg_stat_activity meanwhile
my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
$node->safe_psql('postgres',
	"ALTER SYSTEM SET trading.broker_url = 'http://127.0.0.1:" . $silent->sockport . "'; SELECT pg_reload_conf()");
sleep 1;
my ($bin, $bout, $berr) = ('', '', '');
my $bg = IPC::Run::start(
	[ 'psql', '-X', '-U', 'tap_admin', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
	  '-c', "SELECT * FROM trading.broker_login('$PaperBroker::API_KEY', 'waiting-request-token')" ],
	'<', \$bin, '>', \$bout, '2>', \$berr);
my $activity = '';
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%broker_login%waiting-request-token%' AND state = 'active' AND pid <> pg_backend_pid()"),
	'a login is waiting for the broker');
$activity = $node->safe_psql('postgres', "SELECT string_agg(coalesce(query, ''), E'\\n') FROM pg_stat_activity");
like($activity, qr/broker_login/, 'pg_stat_activity shows the waiting login');
unlike($activity, qr/\Q$secret\E/, 'pg_stat_activity does not show the api secret during a login');
$bg->finish;
like($berr, qr/could not reach the broker|ERROR/, 'that login fails');
close $silent;

# back to the paper broker: a failing login (a made-up request token) and
# a successful one, both without the secret
$node->safe_psql('postgres', "ALTER SYSTEM RESET trading.broker_url; SELECT pg_reload_conf()");
sleep 1;
($ret, $out, $err) = as_admin(
	"SELECT * FROM trading.broker_login('$PaperBroker::API_KEY', 'not-a-request-token')");
like($err, qr/the broker refused the login/, 'a login with a bad request token fails (TR302)');
my $rt = $b->admin(POST => '/admin/request_token')->{json}{data}{request_token};
($ret, $out, $err) = as_admin(
	"SELECT user_id IS NOT NULL FROM trading.broker_login('$PaperBroker::API_KEY', '$rt')");
is($out, 't', 'broker_login(api_key, request_token) logs in with the stored secret');

my $statements = $node->safe_psql('postgres',
	"SELECT string_agg(query, E'\\n') FROM pg_stat_statements");
like($statements, qr/set_broker_api_secret/, 'pg_stat_statements saw the statements');
unlike($statements, qr/\Q$secret\E/, 'pg_stat_statements does not hold the api secret');
$activity = $node->safe_psql('postgres', "SELECT string_agg(coalesce(query, ''), E'\\n') FROM pg_stat_activity");
unlike($activity, qr/\Q$secret\E/, 'pg_stat_activity does not show the api secret afterwards');

# ---- validate_config: cleartext http:// to a remote broker ----
$node->safe_psql('postgres',
	"ALTER SYSTEM SET trading.broker_url = 'http://10.20.30.40:8080'; SELECT pg_reload_conf()");
sleep 1;
is($node->safe_psql('postgres',
	"SELECT ok FROM trading.validate_config() WHERE check_name = 'broker_url_cleartext'"),
	'f', 'validate_config warns about http:// to a host that is not loopback');
$node->safe_psql('postgres', "ALTER SYSTEM RESET trading.broker_url; SELECT pg_reload_conf()");
sleep 1;
is($node->safe_psql('postgres',
	"SELECT ok FROM trading.validate_config() WHERE check_name = 'broker_url_cleartext'"),
	't', 'http:// to loopback passes');

# ---- key rotation: the extension's own columns are re-wrapped ----
$node->safe_psql('postgres', qq{
	SET ROLE tap_admin;
	SELECT trading.archive_create('rot-1', 'SELECT g FROM generate_series(1, 10) g');
});
is($node->safe_psql('postgres', q{
	SELECT (trading.envelope_info(credentials)).key_version FROM trading.broker_session
	UNION ALL SELECT (trading.envelope_info(secret)).key_version FROM trading.broker_api_secret
	UNION ALL SELECT key_version FROM trading.archives}),
	"1\n1\n1", 'session, api secret and archive are under version 1');
append_to_file($keyfile, "2:$key2\n");
$node->restart;
is($node->safe_psql('postgres', 'SELECT version FROM trading.key_status WHERE is_current'),
	'2', 'version 2 is current after the restart');
is($node->safe_psql('postgres',
	"SET ROLE tap_admin; SELECT string_agg(table_name || '=' || rewrapped || '/' || remaining, ' ') FROM trading.rewrap_server_key_columns(1)"),
	'broker_session=1/0 broker_api_secret=1/0 archives=1/0',
	'rewrap_server_key_columns re-wraps the extension\'s columns');
is($node->safe_psql('postgres',
	"SET ROLE tap_admin; SELECT sum(rewrapped) FROM trading.rewrap_server_key_columns()"),
	'0', 'a second call finds nothing left');
# retire version 1
open my $fh, '>', $keyfile or die;
print $fh "2:$key2\n";
close $fh;
$node->restart;
is($node->safe_psql('postgres', 'SELECT string_agg(version::text, \',\') FROM trading.key_status WHERE loaded'),
	'2', 'only version 2 is loaded');
is($node->safe_psql('postgres',
	"SELECT convert_from(trading.decrypt(credentials, convert_to('trading.broker_session', 'UTF8')), 'UTF8') LIKE '$PaperBroker::API_KEY:%' FROM trading.broker_session"),
	't', 'the broker session decrypts without version 1');
$rt = $b->admin(POST => '/admin/request_token')->{json}{data}{request_token};
($ret, $out, $err) = as_admin(
	"SELECT user_id IS NOT NULL FROM trading.broker_login('$PaperBroker::API_KEY', '$rt')");
is($out, 't', 'the stored api secret still logs in without version 1');
is($node->safe_psql('postgres', "SET ROLE tap_admin; SELECT trading.archive_verify('rot-1')"),
	't', 'the archive still verifies without version 1');

# ---- the whole log: no api secret, no key ----
my $log = slurp_file($node->logfile);
like($log, qr/broker_login/, 'the log holds the login statements');
like($log, qr/could not reach the broker|broker refused the login/, 'the log holds the failing logins');
unlike($log, qr/\Q$secret\E/, 'the server log never shows the api secret');
unlike($log, qr/$key1|$key2/i, 'the server log never shows a key');
$node->stop;
$b->stop;

done_testing();

# Encryption at rest across server restarts: the key command at start, a
# wrong key (detected by the key check value; the server still starts), a
# failing and a malformed key command, key rotation with two versions, the
# offline tool on an exported archive, and a server log that never shows a
# key or a passphrase.
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
my $tool = "$bindir/trading-crypt";
ok(-x $getkey && -x $tool, 'trading-getkey-file and trading-crypt are installed');

my $node = TradingTest::node('crypto', no_start => 1);
my $dir = $node->basedir;
my $keyfile = "$dir/server.key";
my $wrongfile = "$dir/wrong.key";
my @passphrases = ('tap-pass-Q7x', 'tap-wrong-Z9y');

sub set_key_command
{
	my ($cmd) = @_;
	$node->append_conf('postgresql.conf', "trading.key_command = '$cmd'\n");
}

sub key_hexes
{
	my @hex;
	for my $f (@_)
	{
		next unless -e $f;
		push @hex, map { /^\d+:([0-9a-f]{64})$/ ? $1 : () } split /\n/, slurp_file($f);
	}
	return @hex;
}

# psql that returns (ret, stdout, stderr) without dying on errors
sub try_sql
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return ($ret, $out, $err);
}

# ---- start with the example key command: it creates the key file ----
set_key_command("$getkey $keyfile");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION trading');
ok(-e $keyfile, 'the key file was created on first use');
is(sprintf('%o', (stat $keyfile)[2] & 07777), '600', 'the key file is readable by the server user only');
like(slurp_file($node->logfile), qr/loaded 1 server key version\(s\), current version 1/, 'the key was loaded at start');

# the key page is locked in memory
my ($pmpid) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
my ($vmlck) = slurp_file("/proc/$pmpid/status") =~ /VmLck:\s+(\d+)/;
cmp_ok($vmlck, '>=', 4, "the postmaster holds locked memory ($vmlck kB)");

# the key command is visible to superusers only, as a command
my ($r, $out, $err) = try_sql("CREATE ROLE tap_admin LOGIN IN ROLE trading_admin;
    SET ROLE tap_admin; SHOW trading.key_command");
like($err, qr/must be superuser or have privileges of pg_read_all_settings/,
	'trading.key_command is hidden from non-superusers');

$node->safe_psql('postgres', q{
    CREATE TABLE secrets (id int PRIMARY KEY, v bytea);
    INSERT INTO secrets SELECT i, trading.encrypt(convert_to('secret ' || i, 'UTF8'), int4send(i))
    FROM generate_series(1, 200) i;
});
my $one = $node->safe_psql('postgres', "SELECT trading.encrypt('\\x0102'::bytea)");
is($node->safe_psql('postgres', "SELECT version, is_current, key_matches FROM trading.key_status"),
	'1|t|t', 'version 1 is registered and matches');

# Passphrase work, failures included, as a role whose statements stay out
# of the log, as docs/ENCRYPTION.md advises (the test cluster itself runs
# with log_statement = all).
$node->safe_psql('postgres', q{
    CREATE ROLE tap_analyst LOGIN IN ROLE trading_analyst;
    ALTER ROLE tap_analyst SET log_statement = 'none';
    ALTER ROLE tap_analyst SET log_min_error_statement = 'panic';
    ALTER ROLE tap_analyst SET trading.pbkdf2_iterations = 100000;
});
sub as_analyst
{
	my ($sql) = @_;
	my ($ret, $o, $e) = $node->psql('postgres', $sql, extra_params => [ '-U', 'tap_analyst' ]);
	return wantarray ? ($ret, $o, $e) : $o;
}
my $penv = as_analyst("SELECT trading.encrypt('pass data'::bytea, '$passphrases[0]')");
($r, $out, $err) = as_analyst("SELECT trading.decrypt('$penv'::bytea, '$passphrases[1]')");
like($err, qr/authentication failed/, 'a wrong passphrase fails');
is(scalar as_analyst("SELECT convert_from(trading.decrypt('$penv'::bytea, '$passphrases[0]'), 'UTF8')"),
	'pass data', 'the right passphrase decrypts');

# ---- offline tool: an exported archive, decrypted without the database ----
$node->safe_psql('postgres', qq{
    SELECT trading.archive_create('secrets-2026', 'SELECT id, convert_from(trading.decrypt(v, int4send(id)), ''UTF8'') AS s FROM secrets ORDER BY id');
    SELECT trading.archive_export('secrets-2026', '$dir/secrets.trde');
});
my ($stdout, $stderr) = ('', '');
ok(run([ $tool, 'decrypt', '--key-command', "$getkey $keyfile", '--archive', 'secrets-2026', "$dir/secrets.trde" ],
		'>', \$stdout, '2>', \$stderr), 'trading-crypt decrypts the exported archive');
my @lines = split /\n/, $stdout;
is(scalar @lines, 200, 'all 200 rows are in the file');
is($lines[0], '{"id":1,"s":"secret 1"}', 'rows are JSON lines');
ok(!run([ $tool, 'decrypt', '--key-command', "$getkey $keyfile", '--archive', 'other', "$dir/secrets.trde" ],
		'>', \$stdout, '2>', \$stderr), 'the archive is bound to its name');
is($? >> 8, 2, 'exit status 2 for a failed authentication');

# a tampered file yields an error and no output at all
my $data = slurp_file("$dir/secrets.trde");
substr($data, 200, 1) = chr(ord(substr($data, 200, 1)) ^ 1);
open my $fh, '>', "$dir/tampered.trde" or die;
binmode $fh;
print $fh $data;
close $fh;
$stdout = '';
ok(!run([ $tool, 'decrypt', '--key-command', "$getkey $keyfile", '--archive', 'secrets-2026', "$dir/tampered.trde" ],
		'>', \$stdout, '2>', \$stderr), 'a tampered file does not decrypt');
is($stdout, '', 'no partial plaintext');
like($stderr, qr/authentication failed/, 'the tool says why');

# passphrase files interoperate both ways
open $fh, '>', "$dir/pass.txt" or die;
print $fh "$passphrases[0]\n";
close $fh;
open $fh, '>', "$dir/plain.txt" or die;
print $fh "from the tool";
close $fh;
ok(run([ $tool, 'encrypt', '--passphrase-file', "$dir/pass.txt", '--iterations', '100000', '-o', "$dir/plain.trde", "$dir/plain.txt" ]),
	'trading-crypt encrypts with a passphrase');
my $hex = unpack('H*', slurp_file("$dir/plain.trde"));
is(scalar as_analyst("SELECT convert_from(trading.decrypt('\\x$hex'::bytea, '$passphrases[0]'), 'UTF8')"),
	'from the tool', 'the database decrypts what the tool encrypted');
$penv =~ s/^\\x//;
open $fh, '>', "$dir/penv.bin" or die;
binmode $fh;
print $fh pack('H*', $penv);
close $fh;
run([ $tool, 'decrypt', '--passphrase-file', "$dir/pass.txt", "$dir/penv.bin" ], '>', \$stdout);
is($stdout, 'pass data', 'the tool decrypts what the database encrypted');

# ---- a wrong key: the server starts, the key check value catches it ----
$node->restart;
ok($node->wait_for_log(qr/server key verified: 1 version\(s\) match their key check values/),
	'at start, the key check worker verifies the key');
$node->stop;
run([ $getkey, $wrongfile ], '>', \$stdout, '2>', \$stderr);
set_key_command("$getkey $wrongfile");
my $logpos = -s $node->logfile;
$node->start;
ok(1, 'the server starts with a wrong key');
ok($node->wait_for_log(qr/WARNING:  trading: server key version 1 does not match its key check value/, $logpos),
	'the wrong key is reported at start');
($r, $out, $err) = try_sql("SELECT trading.decrypt('$one'::bytea)");
like($err, qr/TR102|server key version 1 does not match its key check value/, 'decrypt reports the wrong key');
($r, $out, $err) = try_sql("SELECT trading.encrypt('x'::bytea)");
like($err, qr/does not match its key check value/, 'encrypt refuses the wrong key too');
is($node->safe_psql('postgres', "SELECT version, loaded, key_matches FROM trading.key_status"),
	'1|t|f', 'key_status shows the mismatch');
is(scalar as_analyst("SELECT convert_from(trading.decrypt('\\x$hex'::bytea, '$passphrases[0]'), 'UTF8')"),
	'from the tool', 'passphrase mode does not need the server key');

# ---- a failing and a malformed key command ----
$node->stop;
set_key_command('exit 3');
$node->start;
like(slurp_file($node->logfile), qr/could not load the server key.*\n.*exited with status 3/,
	'a failing key command is reported at start');
($r, $out, $err) = try_sql("\\set VERBOSITY verbose\nSELECT trading.encrypt('x'::bytea)");
like($err, qr/TR101: the server key is not loaded/, 'encrypt raises TR101');
like($err, qr/exited with status 3/, 'and says why');

$node->stop;
set_key_command('echo 1:0123456789abcdef');
$node->start;
like(slurp_file($node->logfile), qr/Line 1 of the output of trading.key_command: a key must be exactly 64 hexadecimal digits/,
	'a malformed key is reported without its content');
($r, $out, $err) = try_sql("SELECT trading.decrypt('$one'::bytea)");
like($err, qr/the server key is not loaded/, 'decrypt raises TR101');

# ---- rotation: a second key version, old values still decrypt ----
$node->stop;
run([ $getkey, '--new-version', $keyfile ], '>', \$stdout, '2>', \$stderr);
like($stderr, qr/added key version 2/, 'a second key version was added to the key file');
set_key_command("$getkey $keyfile");
$node->start;
is($node->safe_psql('postgres', "SELECT count(*) FROM secrets WHERE convert_from(trading.decrypt(v, int4send(id)), 'UTF8') = 'secret ' || id"),
	'200', 'values under version 1 still decrypt');
is($node->safe_psql('postgres', "SELECT (trading.envelope_info(trading.encrypt('x'::bytea))).key_version"),
	'2', 'new values use version 2');
is($node->safe_psql('postgres', "SELECT string_agg(format('%s:%s:%s', version, is_current, key_matches), ',') FROM trading.key_status"),
	'1:f:t,2:t:t', 'version 2 is current and registered, version 1 still loaded');
# the online procedure: re-wrap in batches until nothing is left under old versions
for my $batch (1 .. 10)
{
	$node->safe_psql('postgres', q{
        UPDATE secrets SET v = trading.reencrypt(v, int4send(id))
        WHERE id IN (SELECT id FROM secrets
                     WHERE (trading.envelope_info(v)).key_version
                           < (SELECT version FROM trading.key_status WHERE is_current)
                     LIMIT 50)});
}
is($node->safe_psql('postgres', "SELECT count(*) FROM secrets WHERE (trading.envelope_info(v)).key_version < 2"),
	'0', 'the table was rotated to version 2');
# the offline tool picks the version from the envelope
my $v2 = $node->safe_psql('postgres', "SELECT v FROM secrets WHERE id = 7");
$v2 =~ s/^\\x//;
open $fh, '>', "$dir/v2.bin" or die;
binmode $fh;
print $fh pack('H*', $v2);
close $fh;
run([ $tool, 'decrypt', '--key-command', "$getkey $keyfile", '--aad-hex', '00000007', "$dir/v2.bin" ], '>', \$stdout);
is($stdout, 'secret 7', 'the tool decrypts a version 2 value');

# retire version 1: keep only the version 2 line
my @keep = grep { /^2:/ } split /\n/, slurp_file($keyfile);
my @all_hex = key_hexes($keyfile, $wrongfile);
open $fh, '>', $keyfile or die;
print $fh "$keep[0]\n";
close $fh;
$node->restart;
is($node->safe_psql('postgres', "SELECT count(*) FROM secrets WHERE convert_from(trading.decrypt(v, int4send(id)), 'UTF8') = 'secret ' || id"),
	'200', 'the rotated table decrypts without version 1');
($r, $out, $err) = try_sql("SELECT trading.decrypt('$one'::bytea)");
like($err, qr/server key version 1 is not loaded/, 'a value left under version 1 raises TR103');

# ---- the whole server log: no key, no passphrase ----
$node->stop;
my $log = slurp_file($node->logfile);
is(scalar(@all_hex), 3, 'three keys were used (v1, v2, the wrong one)');
for my $secret (@all_hex, @passphrases)
{
	ok(index($log, $secret) < 0, 'the server log does not contain ' . substr($secret, 0, 4) . '...');
}
# nor in upper case
for my $secret (@all_hex)
{
	ok(index($log, uc $secret) < 0, 'nor in upper case');
}

done_testing();

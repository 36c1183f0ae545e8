# The README's "Installing into an existing cluster", followed as written on
# a cluster that already has a life of its own: pg_stat_statements
# preloaded, its own max_connections and work_mem.  The SQL of the guide is
# taken from README.md itself (between the install-guide markers), so the
# guide cannot drift from what is tested; the shell steps (createdb, the
# key directory, the restart) are done here the way the guide says.
# Afterwards the cluster keeps its own settings and library, and trading
# works on the first try: the extension, the key command, the workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $keydir = PostgreSQL::Test::Utils::tempdir() . '/etc-trading';
mkdir $keydir, 0700 or die;

# ---- the guide, from README.md ----
my $readme = slurp_file('README.md');
my ($guide) = $readme =~ /<!-- install-guide:begin -->(.*?)<!-- install-guide:end -->/s;
ok($guide, 'README.md has the install guide between its markers');
my @sql = map { s/^ {3}//mgr } ($guide =~ /```sql[^\n]*\n(.*?)\n\s*```/sg);
is(scalar(@sql), 2, 'the guide has two SQL steps: preloading, then the extension');
my ($settings, $create) = @sql;
like($guide, qr{cp deploy/trading\.conf /etc/postgresql/15/main/conf\.d/}, 'the guide copies deploy/trading.conf into conf.d');
my $conf = slurp_file('deploy/trading.conf');
like($conf, qr{^trading\.key_command = '/usr/lib/postgresql/15/bin/trading-getkey-file /etc/trading/server\.key'}m,
	'deploy/trading.conf sets a key command');
unlike($conf, qr/^\s*(shared_preload_libraries|port|listen_addresses|max_connections)\b/m,
	'deploy/trading.conf leaves the cluster\'s own settings alone');
# the test's paths for the guide's /usr/lib/postgresql/15/bin and /etc/trading
$conf =~ s{/usr/lib/postgresql/15/bin/}{$bindir/}g;
$conf =~ s{/etc/trading/}{$keydir/}g;

# ---- an existing cluster with settings of its own ----
my $node = PostgreSQL::Test::Cluster->new('existing');
$node->init;
mkdir $node->data_dir . '/conf.d' or die;
$node->append_conf('postgresql.conf', q{
include_dir = 'conf.d'		# as Debian's postgresql.conf has it
shared_preload_libraries = 'pg_stat_statements'
max_connections = 55
work_mem = '8MB'
log_line_prefix = '%m [%p] %q%a '
# tests never reach the real broker
trading.broker_url = 'http://127.0.0.1:9'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');

# step 2: the database
$node->command_ok([ 'createdb', '-h', $node->host, '-p', $node->port, 'trading' ], 'createdb trading');
# step 3: the settings file, then the preloaded libraries as a superuser
PostgreSQL::Test::Utils::append_to_file($node->data_dir . '/conf.d/trading.conf', $conf);
$node->safe_psql('postgres', $settings);
# running the step again does not list trading twice
$node->safe_psql('postgres', $settings);
# step 4: restart
$node->restart;
# step 5: the extension, for a login role of the DBA's
$node->safe_psql('trading', 'CREATE ROLE alice LOGIN');
$node->safe_psql('trading', $create);

# ---- the cluster kept its life ----
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'pg_stat_statements, trading',
	'trading was added to the preloaded libraries, which kept pg_stat_statements');
is($node->safe_psql('postgres', q{SELECT current_setting('max_connections') || ' ' || current_setting('work_mem')}),
	'55 8MB', 'the cluster\'s own settings are untouched');
is($node->safe_psql('postgres', q{SELECT count(*) > 0 FROM pg_stat_statements}), 't',
	'pg_stat_statements still works');

# ---- and trading works on the first try ----
is($node->safe_psql('trading', q{SELECT extversion FROM pg_extension WHERE extname = 'trading'}),
	$node->safe_psql('trading', q{SELECT default_version FROM pg_available_extensions WHERE name = 'trading'}),
	'the extension is installed in the database trading');
is($node->safe_psql('trading', q{SELECT pg_has_role('alice', 'trading_analyst', 'MEMBER')}), 't',
	'alice is an analyst');
$node->safe_psql('trading', q{SELECT trading.set_broker_session('guide_key', 'guide_token')});
ok(-s "$keydir/server.key", 'the key command created the server key in the key directory');
is($node->safe_psql('trading', q{SELECT state FROM trading.broker_session_status}), 'active',
	'a broker session is stored (the key command works)');
is($node->safe_psql('trading', q{SELECT convert_from(trading.decrypt(trading.encrypt('x'::bytea)), 'UTF8')}),
	'x', 'server-key encryption works');
$node->poll_query_until('trading', q{
SELECT count(*) >= 2 FROM pg_stat_activity
WHERE backend_type IN ('trading broker worker', 'trading correlation writer')})
  or die 'the workers did not start';
pass('the broker worker and the correlation writer run');
my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION trading');
like($err, qr/trading must be installed in database "trading"/, 'and only in the database trading');
my $failed = $node->safe_psql('trading', q{
SELECT coalesce(string_agg(check_name || ': ' || coalesce(detail, ''), '; '), '')
FROM trading.validate_config() WHERE ok IS FALSE
  AND check_name IN ('preloaded', 'database', 'server_key', 'key_command')});
is($failed, '', 'validate_config() finds nothing wrong with the install');

# deploy/trading.conf names every setting of the extension
my @settings = split /\n/, $node->safe_psql('trading',
	q{SELECT name FROM pg_settings WHERE name LIKE 'trading.%' ORDER BY name});
ok(@settings > 20, 'the extension has its settings: ' . scalar(@settings));
my @unlisted = grep { $conf !~ /^#?\Q$_\E = /m } (@settings, 'trading.key_command');
is(join(' ', @unlisted), '', 'deploy/trading.conf lists every trading.* setting');

$node->stop;
done_testing();

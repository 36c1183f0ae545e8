# Docs that cannot drift: every SQL example in README.md and docs/*.md runs
# here against a real cluster, so a changed signature or message fails CI
# instead of misleading a reader.
#
# A fenced block tagged ```sql runs as written (as a superuser, with the
# extension freshly created for each file; blocks of one file run in order
# and share their state).  Words after "sql" change that:
#   norun          the block is shown, not run (shell-dependent, destructive,
#                  or needs a real broker)
#   expect=CODE    the block must fail with that SQLSTATE
#   as=ROLE        run as that role (alice is a trading_analyst, tina a
#                  trading_trader, ada a trading_admin, rita a trading_reader)
# A block in any other language, or without one, that reads as SQL is an
# error: tag it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $tmp = PostgreSQL::Test::Utils::tempdir();

my @files = ('README.md', sort glob('docs/*.md'));

# ---- collect the blocks ----
my @blocks;    # [file, line, lang, attrs, body]
my @untagged;
for my $file (@files)
{
	open my $fh, '<', $file or die "$file: $!";
	my ($in, $lang, $attrs, $start, $indent, $body) = (0);
	while (my $line = <$fh>)
	{
		if (!$in && $line =~ /^(\s*)```\s*([\w-]*)\s*(.*?)\s*$/)
		{
			($in, $indent, $lang, $attrs, $start, $body) = (1, $1, $2, $3, $., '');
			next;
		}
		if ($in && $line =~ /^\s*```\s*$/)
		{
			$in = 0;
			if ($lang eq 'sql')
			{
				push @blocks, [ $file, $start, $lang, $attrs, $body ];
			}
			elsif ($lang =~ /^(|text|psql|pgsql|postgresql)$/
				&& $body =~ /\A\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|GRANT|BEGIN|CALL|WITH)\b/i
				&& $body =~ /;\s*(--.*)?$/m
				&& $body !~ /^\s*(\$|#|sudo |psql )/m)
			{
				push @untagged, "$file:$start";
			}
			next;
		}
		$body .= ($line =~ s/^\Q$indent\E//r) if $in;
	}
	close $fh;
}
is(join(', ', @untagged), '', 'every SQL example is tagged ```sql');
ok(scalar(grep { $_->[3] !~ /\bnorun\b/ } @blocks) >= 5, 'there are SQL examples to run: ' . scalar(@blocks));

# ---- a cluster as the docs assume it ----
my $node = TradingTest::node('docs', no_start => 1, conf => qq{
trading.key_command = '$bindir/trading-getkey-file $tmp/server.key'
shared_preload_libraries = 'trading, pg_stat_statements'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE ROLE rita LOGIN;
CREATE ROLE alice LOGIN;
CREATE ROLE tina LOGIN;
CREATE ROLE ada LOGIN;
CREATE ROLE bob LOGIN;
});
my %member = (rita => 'trading_reader', alice => 'trading_analyst', tina => 'trading_trader', ada => 'trading_admin');

my $current = '';
for my $b (@blocks)
{
	my ($file, $line, $lang, $attrs, $body) = @$b;
	next if $attrs =~ /\bnorun\b/;
	if ($file ne $current)
	{
		# each file starts from a fresh install
		$node->safe_psql('postgres', q{
DROP EXTENSION IF EXISTS trading CASCADE;
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public;
GRANT CREATE, USAGE ON SCHEMA public TO PUBLIC;
CREATE EXTENSION trading;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
});
		$node->safe_psql('postgres', join('', map { "GRANT $member{$_} TO $_;\n" } sort keys %member));
		$current = $file;
	}
	my ($expect) = $attrs =~ /\bexpect=(\w{5})\b/;
	my ($as) = $attrs =~ /\bas=(\w+)\b/;
	my $sql = "\\set VERBOSITY verbose\n" . ($as ? "SET ROLE $as;\n" : '') . $body;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	my $what = "$file:$line" . ($attrs ? " ($attrs)" : '');
	if ($expect)
	{
		like($err, qr/ERROR:\s+$expect:/, "$what fails with $expect")
		  or diag($err);
	}
	else
	{
		ok($ret == 0 && $err !~ /ERROR:/, "$what runs")
		  or diag("stderr: $err\nblock:\n$body");
	}
}

$node->stop;
done_testing();

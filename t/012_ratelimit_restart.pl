# The rate limiter across restarts: the state file (checksum, layout
# version, bounds, no endpoint twice; a bad file is ignored with one
# WARNING and the windows start empty), and the order budget rebuilt from
# trading.order_requests on a node that starts as primary without state
# (as a new primary after a failover does).
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $node = TradingTest::node('rl_restart');
my $state = $node->data_dir . '/pg_stat/trading_ratelimit.state';

sub psql1 { return $node->safe_psql('postgres', $_[0]); }

sub grants
{
	my ($ep, $n) = @_;
	return psql1("SELECT count(*) FILTER (WHERE trading.rate_limit_try('$ep'))
	                FROM generate_series(1, $n)");
}

# CRC-32C (Castagnoli), as PostgreSQL's pg_crc32c computes it
sub crc32c
{
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	for my $byte (unpack('C*', $data))
	{
		$crc ^= $byte;
		for (1 .. 8)
		{
			$crc = ($crc & 1) ? (($crc >> 1) ^ 0x82F63B78) : ($crc >> 1);
		}
	}
	return $crc ^ 0xFFFFFFFF;
}

sub slurp_bin
{
	open(my $fh, '<:raw', $_[0]) or die "$_[0]: $!";
	local $/;
	return scalar <$fh>;
}

sub spew_bin
{
	open(my $fh, '>:raw', $_[0]) or die "$_[0]: $!";
	print $fh $_[1];
	close $fh;
}

# a state file of the current layout: [name, [per_us, n, [ages]], ...], ...
sub state_file
{
	my (@eps) = @_;
	my $wall = int((time() - 946684800) * 1_000_000);
	my $body = pack('L L l l q', 0x54524C32, 2, scalar(@eps), 0, $wall);
	for my $ep (@eps)
	{
		my ($name, @limits) = @$ep;
		$body .= pack('a64 l', $name, scalar(@limits));
		for my $l (@limits)
		{
			my ($per, $n, $ages) = @$l;
			$body .= pack('q l l', $per, $n, scalar(@$ages)) . pack('q*', @$ages);
		}
	}
	return $body . pack('L', crc32c($body));
}

# start the node with $bytes as its state file; returns the new log text
sub start_with_state
{
	my ($bytes) = @_;
	$node->stop;
	spew_bin($state, $bytes) if defined $bytes;
	my $offset = -s $node->logfile;
	$node->start;
	return slurp_file($node->logfile, $offset);
}

psql1("SELECT trading.rate_limit_set('t.day', 5, '1 day')");
is(grants('t.day', 3), '3', 'three grants of five per day');

# ---- a clean restart keeps the windows; the file carries a valid checksum ----
$node->stop;
ok(-f $state, 'a clean shutdown writes the state file');
my $file = slurp_bin($state);
is(unpack('L', substr($file, -4)), crc32c(substr($file, 0, -4)),
	'the file ends with the CRC-32C of its contents');
is(unpack('L', substr($file, 4, 4)), 2, 'and names its layout version');
my $log = start_with_state(undef);
like($log, qr/restored the windows of \d+ rate-limited endpoints/, 'restored at start');
is(grants('t.day', 5), '2', 'after the restart, only the two left of the day are granted');

# ---- bad files: the server starts, windows start empty, one WARNING ----
my $day = 86_400_000_000;
my %bad = (
	'checksum does not match' => sub {
		my $f = state_file([ 't.day', [ $day, 5, [ 1000, 500 ] ] ]);
		substr($f, 30, 1) = chr(ord(substr($f, 30, 1)) ^ 0xFF);
		return $f;
	},
	'it is truncated' => sub { return substr(state_file([ 't.day', [ $day, 5, [1000] ] ]), 0, 10); },
	'layout version' => sub {
		# a later layout than this server knows
		my $f = state_file([ 't.day', [ $day, 5, [1000] ] ]);
		substr($f, 4, 4) = pack('L', 3);
		return $f;
	},
	'an endpoint appears twice' => sub {
		return state_file([ 't.day', [ $day, 5, [1000] ] ], [ 't.day', [ $day, 5, [1000] ] ]);
	},
	'a window or count is out of range' => sub {
		return state_file([ 't.day', [ 40 * $day, 5, [1000] ] ]);
	},
	'a timestamp is out of range or out of order' => sub {
		return state_file([ 't.day', [ $day, 5, [ 1000, 2000 ] ] ]);
	},
	'the same window twice' => sub {
		return state_file([ 't.day', [ $day, 5, [1000] ], [ $day, 5, [1000] ] ]);
	},
	'not terminated or empty' => sub {
		return state_file([ '', [ $day, 5, [1000] ] ]);
	},
);
for my $what (sort keys %bad)
{
	$log = start_with_state($bad{$what}->());
	my @warnings = ($log =~ /WARNING:  ignoring rate limiter state file .*/g);
	is(scalar(@warnings), 1, "$what: one WARNING");
	like($warnings[0] // '', qr/\Q$what\E/, "$what: the WARNING says so");
	is(grants('t.day', 6), '5', "$what: the windows start empty");
	ok(!-f $state, "$what: the file is removed");
}

# a file of 1.0's layout (no version, no checksum) is read once, at the
# restart that upgrades the binaries
my $wall = int((time() - 946684800) * 1_000_000);
$log = start_with_state(pack('L l q', 0x54524C31, 1, $wall) . pack('a64 l', 't.day', 1)
	  . pack('q l l q q q', $day, 5, 3, 7_200_000_000, 3_600_000_000, 1_000_000));
unlike($log, qr/WARNING/, "a file of 1.0's layout: no warning");
is(grants('t.day', 5), '2', 'its three grants count');

# a valid hand-made file is read (so the checks above test the checks)
$log = start_with_state(state_file([ 't.day', [ $day, 5, [ 3_600_000_000, 1_000_000 ] ] ]));
unlike($log, qr/WARNING/, 'a valid file of the current layout: no warning');
is(grants('t.day', 5), '3', 'its two grants count');

# ---- the order budget rebuilt from trading.order_requests ----
# (t/005_upgrade.pl runs the library against a 1.0 install, which has no
# trading.order_requests: no ERROR there)
unlike(slurp_file($node->logfile), qr/could not rebuild|rebuilt the windows/,
	'with no placement recorded the rebuild does nothing, quietly');
# rows as the order sender leaves them (its triggers, which check new
# requests, are not what is tested here)
psql1(q{
SET session_replication_role = replica;
INSERT INTO trading.order_requests
    (kind, sent_at, state, order_id, exchange, tradingsymbol, transaction_type, quantity)
SELECT 'place', now() - interval '2 hours' + i * interval '1 second', 'placed', 'P' || i,
       'NSE', 'INFY', 'BUY', 1 FROM generate_series(1, 5) i
UNION ALL SELECT 'place', now() - interval '20 seconds', 'rejected', NULL, 'NSE', 'INFY', 'BUY', 1
    FROM generate_series(1, 2)
UNION ALL SELECT 'modify', now() - interval '10 seconds', 'placed', 'P1', NULL, NULL, NULL, NULL
UNION ALL SELECT 'cancel', now() - interval '10 seconds', 'placed', 'P2', NULL, NULL, NULL, NULL
UNION ALL SELECT 'place', now() - interval '2 days', 'placed', 'P0', 'NSE', 'INFY', 'BUY', 1
UNION ALL SELECT 'place', NULL, 'expired', NULL, 'NSE', 'INFY', 'BUY', 1;
RESET session_replication_role;
SELECT trading.rate_limit_set('kite.orders', 10, '1 day');
});
# a fresh node: no state file
$node->stop;
unlink $state;
my $offset = -s $node->logfile;
$node->start;
ok($node->poll_query_until('postgres',
	"SELECT pg_read_file('" . $node->logfile . "', $offset, 100000) ~ 'rebuilt the windows'"),
	'the node rebuilds the order windows when it starts as primary');
like(slurp_file($node->logfile, $offset),
	qr/rebuilt the windows of rate limit "kite.orders" from 7 placements recorded in trading.order_requests/,
	'from the seven placements of the last day (not modify, cancel, older or unsent)');
is(psql1("SELECT string_agg(per || '=' || used, ',' ORDER BY per) FROM trading.rate_limit_status WHERE endpoint = 'kite.orders'"),
	'00:00:01=0,00:01:00=2,1 day=7', 'minute and day windows continue; the second window restarts');
is(grants('kite.orders', 10), '3', 'rate_limit_try grants exactly the three left of the day');

# a clean restart with both the state file and the record: counted once
$log = start_with_state(undef);
ok($node->poll_query_until('postgres',
	"SELECT used = 10 FROM trading.rate_limit_status WHERE endpoint = 'kite.orders' AND per = '1 day'"),
	'state file and record of the same sends are not added up');
is(grants('kite.orders', 2), '0', 'the day stays spent');

$node->stop;
done_testing();

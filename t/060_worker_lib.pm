# WorkerTest: helpers shared by the broker worker's TAP tests
# (t/06*_worker*.pl), loaded with
#   use lib $FindBin::RealBin; require '060_worker_lib.pm';
#
#   WorkerTest::node($name, $broker, conf => "...")   a node whose worker
#       polls $broker (a PaperBroker) with short intervals, and the roles
#       regress_reader / regress_admin
#   WorkerTest::listen($node, $channel, $seconds)     start a psql that
#       LISTENs for $seconds; listen_output($h) waits and returns what it saw
package WorkerTest;

use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use TradingTest;

# a fixed test key: version 1, 64 hex digits
our $KEY_COMMAND = "echo 1:" . ('5a' x 32);

sub node
{
	my ($name, $broker, %o) = @_;
	my $url = $broker ? $broker->url : 'http://127.0.0.1:9';
	my $node = TradingTest::node($name, %o, conf => qq{
trading.key_command = '$KEY_COMMAND'
trading.broker_url = '$url'
trading.broker_timeout = '2s'
trading.broker_connect_timeout = '1s'
trading.broker_max_backoff = '2s'
} . ($o{conf} // ''));
	return $node if $o{no_start} || (defined $o{create_extension} && !$o{create_extension});
	setup_roles($node);
	return $node;
}

sub setup_roles
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE ROLE regress_reader IN ROLE trading_reader;
		CREATE ROLE regress_admin IN ROLE trading_admin;
		UPDATE trading.poll_intervals SET interval_ms = CASE endpoint
			WHEN 'orders' THEN 300 WHEN 'quotes' THEN 1000
			WHEN 'holdings' THEN 2000 WHEN 'margins' THEN 2000 ELSE 1000 END;
	});
}

sub listen
{
	my ($node, $channel, $secs) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
		  "LISTEN $channel", '-c', "SELECT pg_sleep($secs)", '-c', 'SELECT 1' ],
		\$in, \$out, \$err);
	# let LISTEN take effect before the caller triggers anything
	sleep 1;
	return { h => $h, out => \$out, err => \$err };
}

sub listen_output
{
	my ($l) = @_;
	$l->{h}->finish;
	return ${ $l->{out} } . ${ $l->{err} };
}

1;

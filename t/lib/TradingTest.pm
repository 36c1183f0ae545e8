# TradingTest: shared set-up for the TAP tests.
#
#   use TradingTest;
#   my $node = TradingTest::node('primary', conf => "trading.x = 1\n");
#
# node() creates and starts a PostgreSQL::Test::Cluster with trading
# preloaded, trading.database = 'postgres', and the extension created
# (unless create_extension => 0).  shared_dir() is ../shared (the Kite
# fixtures), as set by scripts/test.sh through TRADING_SHARED.
package TradingTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';
our @EXPORT_OK = qw(node shared_dir);

sub shared_dir
{
	return $ENV{TRADING_SHARED} // '../shared';
}

sub node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'trading'
trading.database = 'postgres'
max_connections = 40
log_line_prefix = '%m [%p] %q%a '
# tests never reach the real broker: a dead loopback port unless a test
# points the worker at its paper broker (a later line wins)
trading.broker_url = 'http://127.0.0.1:9'
# the market data worker replaces trading.instruments from the broker:
# only the tests that want it (t/04x) turn it on
trading.market_worker = off
});
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	return $node if $opts{no_start};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION trading')
	  unless defined $opts{create_extension} && !$opts{create_extension};
	return $node;
}

1;

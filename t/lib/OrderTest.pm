# OrderTest: helpers shared by the order outbox's TAP tests (t/05*_orders*.pl).
#
#   my ($node, $broker) = OrderTest::setup('name', broker_args => [...], conf => '...');
#       a paper broker and a node whose broker worker and order sender use
#       it, with a session, instruments, and the role regress_trader
#   OrderTest::wait_final($node, $timeout)   until no request is pending,
#       sending or unknown
#   OrderTest::broker_tags($broker)          { tag => [order ids] } of GET /orders
package OrderTest;

use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;

sub setup
{
	my ($name, %o) = @_;
	my $b = PaperBroker->start(args => [ '--cash', 1e12, @{ $o{broker_args} // [] } ],
		ratelimit => $o{ratelimit});
	my $url = $b->url;
	my $node = TradingTest::node($name, conf => qq{
trading.key_command = 'echo 1:} . ('5a' x 32) . qq{'
trading.broker_url = '$url'
trading.broker_timeout = '2s'
trading.broker_connect_timeout = '1s'
trading.broker_max_backoff = '2s'
trading.order_timeout = '1s'
trading.order_settle = '300ms'
} . ($o{conf} // ''));
	$node->safe_psql('postgres', qq{
		CREATE ROLE regress_trader LOGIN IN ROLE trading_trader;
		CREATE ROLE regress_analyst LOGIN IN ROLE trading_analyst;
		CREATE ROLE regress_admin LOGIN IN ROLE trading_admin;
		SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
		INSERT INTO trading.instruments (instrument_token, tradingsymbol, exchange, tick_size, lot_size, segment)
		VALUES (408065, 'INFY', 'NSE', 0.05, 1, 'NSE'), (779521, 'SBIN', 'NSE', 0.05, 1, 'NSE'),
		       (2953217, 'TCS', 'NSE', 0.05, 1, 'NSE'), (256265, 'NIFTY 50', 'NSE', 0.05, 1, 'INDICES');
		UPDATE trading.poll_intervals SET interval_ms = 300;
	});
	return ($node, $b);
}

sub wait_final
{
	my ($node, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 60;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM trading.order_requests WHERE state IN ('pending','sending','unknown')");
}

sub broker_tags
{
	my ($b) = @_;
	my $r = $b->api(GET => '/orders');
	die "GET /orders: $r->{status}" unless $r->{status} == 200;
	my %t;
	push @{ $t{ $_->{tag} // '' } }, $_->{order_id} for @{ $r->{json}{data} };
	return \%t;
}

# every request and the broker's book agree one to one: returns a list of
# problems (empty when they agree)
sub audit
{
	my ($node, $b) = @_;
	my $tags = broker_tags($b);
	my @bad;
	my %req;
	for my $line (split /\n/, $node->safe_psql('postgres',
		"SELECT tag, state, coalesce(order_id, '') FROM trading.order_requests WHERE kind = 'place'"))
	{
		my ($tag, $state, $oid) = split /\|/, $line;
		$req{$tag} = 1;
		my $n = scalar @{ $tags->{$tag} // [] };
		if ($state eq 'placed')
		{
			push @bad, "$tag placed but the broker holds $n orders" unless $n == 1;
			push @bad, "$tag: order_id $oid is not the broker's"
			  if $n == 1 && $tags->{$tag}[0] ne $oid;
		}
		else
		{
			push @bad, "$tag is $state but the broker holds $n orders" if $n;
		}
	}
	my %adopted = map { $_ => 1 } split /\n/,
	  $node->safe_psql('postgres', 'SELECT tag FROM trading.adopted_orders');
	for my $tag (keys %$tags)
	{
		next unless $tag =~ /^TR/ && !$adopted{$tag};
		push @bad, "the broker holds $tag that no request knows" unless $req{$tag};
	}
	return @bad;
}

1;

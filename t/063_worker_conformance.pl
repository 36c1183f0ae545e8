# Parsing conformance: a fixture server answers each endpoint with the Kite
# mocks of ../shared/kite-mocks verbatim, and every field of every table row
# must match the fixture: each typed column against the JSON field it comes
# from (timestamps as IST, numbers by value, ids as text), and raw against
# the whole object.  Every column of the tables must have been checked.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use WorkerTest;

my $mocks = TradingTest::shared_dir() . '/kite-mocks';
my $srv = WorkerTest::FixtureServer->start;
sub fixture { return PaperBrokerFixture::slurp("$mocks/$_[0]"); }

package PaperBrokerFixture;
sub slurp { open(my $fh, '<', $_[0]) or die "$_[0]: $!"; local $/; return <$fh>; }
package main;

my %files = (
	'/orders' => 'orders.json',
	'/trades' => 'trades.json',
	'/portfolio/positions' => 'positions.json',
	'/portfolio/holdings' => 'holdings.json',
	'/user/margins' => 'margins.json',
	'/quote' => 'quote.json',
	'/quote/ltp' => 'ltp.json',
	'/quote/ohlc' => 'ohlc.json');
$srv->serve($_, fixture($files{$_})) for keys %files;

# (a trailing slash in trading.broker_url is not doubled in the requests)
my $node = WorkerTest::node('conformance', $srv, url => $srv->url . '/');
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('fixture_key', 'fixture_token');
	INSERT INTO trading.watchlist VALUES ('NSE:INFY', 'full');
});
ok($node->poll_query_until('postgres',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status"),
	'every endpoint applied its fixture');

my $json = JSON::PP->new->canonical;

# columns a row gets from elsewhere than its JSON object
my %derived = map { $_ => 1 } qw(raw updated_at previous_status status_changed_at);

# a fixture value as the table's JSON shows it (session in IST)
sub expected
{
	my ($col, $v, $type) = @_;
	return undef if !defined $v;
	if ($type eq 'timestamp with time zone')
	{
		return undef if $v eq '';
		$v =~ s/ /T/;
		return "$v+05:30";
	}
	return $v;
}

sub same
{
	my ($got, $want, $type) = @_;
	return !defined $got && !defined $want if !defined $got || !defined $want;
	if ($type =~ /^(numeric|bigint|integer)$/)
	{
		return $got == $want;
	}
	if (ref $want eq 'ARRAY')
	{
		return $json->encode($got) eq $json->encode($want);
	}
	if (JSON::PP::is_bool($want) || JSON::PP::is_bool($got))
	{
		return (!!$got) == (!!$want);
	}
	return "$got" eq "$want";
}

# compare rows of $table (key columns => values) with fixture objects
sub check_table
{
	my ($table, $rows, $name_map) = @_;
	my %types = split /[|\n]/, $node->safe_psql('postgres', qq{
		SELECT attname || '|' || format_type(atttypid, atttypmod)
		  FROM pg_attribute WHERE attrelid = 'trading.$table'::regclass
		   AND attnum > 0 AND NOT attisdropped});
	my %checked;
	my $bad = 0;
	for my $r (@$rows)
	{
		my ($where, $obj, $extra, $file, $path) = @$r;
		my $row_json = $node->safe_psql('postgres',
			"SET TimeZone = 'Asia/Kolkata'; SELECT to_jsonb(t) FROM trading.$table t WHERE $where");
		if ($row_json eq '')
		{
			diag("$table: no row where $where");
			$bad++;
			next;
		}
		my $row = decode_json($row_json);
		for my $col (sort keys %types)
		{
			next if $derived{$col};
			my ($present, $want);
			if (exists $extra->{$col})
			{
				($present, $want) = (1, $extra->{$col});
			}
			elsif ($name_map && $name_map->{$col})
			{
				my @path = @{ $name_map->{$col} };
				my $v = $obj;
				$v = ref $v eq 'HASH' ? $v->{$_} : undef for @path;
				($present, $want) = (1, $v);
			}
			elsif (exists $obj->{$col})
			{
				($present, $want) = (1, $obj->{$col});
			}
			next unless $present;
			$checked{$col} = 1;
			my $exp = expected($col, $want, $types{$col});
			if (!same($row->{$col}, $exp, $types{$col}))
			{
				diag("$table $where: $col is " . ($json->encode([$row->{$col}]))
					  . ", fixture " . $json->encode([$exp]));
				$bad++;
			}
		}
		# raw against the fixture's own text (Perl would round its numbers)
		my $text = fixture($file);
		if ($node->safe_psql('postgres',
				"SELECT raw = (\$J\$$text\$J\$::jsonb #> '{data,$path}') FROM trading.$table WHERE $where") ne 't')
		{
			diag("$table $where: raw differs from the fixture object");
			$bad++;
		}
	}
	my @unchecked = grep { !$derived{$_} && !$checked{$_} } sort keys %types;
	is($bad, 0, "$table: every field of " . scalar(@$rows) . " rows matches the fixture");
	is("@unchecked", '', "$table: every column was compared with a fixture field");
}

my $orders = decode_json(fixture('orders.json'))->{data};
is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.orders'), scalar(@$orders),
	'one row per fixture order');
check_table('orders', [ map { [ "order_id = '$orders->[$_]{order_id}'", $orders->[$_], {}, 'orders.json', $_ ] } 0 .. $#$orders ]);

my $trades = decode_json(fixture('trades.json'))->{data};
check_table('trades', [ map { [ "trade_id = '$trades->[$_]{trade_id}' AND order_id = '$trades->[$_]{order_id}'", $trades->[$_], {}, 'trades.json', $_ ] } 0 .. $#$trades ]);

my $positions = decode_json(fixture('positions.json'))->{data};
my @prows;
for my $kind ('net', 'day')
{
	my $list = $positions->{$kind};
	push @prows, [ "kind = '$kind' AND exchange = '$list->[$_]{exchange}' AND tradingsymbol = '$list->[$_]{tradingsymbol}' AND product = '$list->[$_]{product}'",
		$list->[$_], { kind => $kind }, 'positions.json', "$kind,$_" ] for 0 .. $#$list;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.positions'), scalar(@prows),
	'one row per fixture position (net and day)');
check_table('positions', \@prows);

my $holdings = decode_json(fixture('holdings.json'))->{data};
check_table('holdings', [ map { [ "exchange = '$holdings->[$_]{exchange}' AND tradingsymbol = '$holdings->[$_]{tradingsymbol}'", $holdings->[$_], {}, 'holdings.json', $_ ] } 0 .. $#$holdings ]);

my $margins = decode_json(fixture('margins.json'))->{data};
my %mmap = (
	available_cash => [qw(available cash)],
	available_live_balance => [qw(available live_balance)],
	available_collateral => [qw(available collateral)],
	utilised_debits => [qw(utilised debits)],
	utilised_exposure => [qw(utilised exposure)],
	utilised_span => [qw(utilised span)],
	utilised_m2m_realised => [qw(utilised m2m_realised)],
	utilised_m2m_unrealised => [qw(utilised m2m_unrealised)]);
check_table('margins', [ map { [ "segment = '$_'", $margins->{$_}, { segment => $_ }, 'margins.json', $_ ] } sort keys %$margins ], \%mmap);

my %qmap = (
	open => [qw(ohlc open)], high => [qw(ohlc high)], low => [qw(ohlc low)],
	close => [qw(ohlc close)], quote_timestamp => ['timestamp']);
for my $mode ('full', 'ltp', 'ohlc')
{
	my $file = { full => 'quote.json', ltp => 'ltp.json', ohlc => 'ohlc.json' }->{$mode};
	$node->safe_psql('postgres', "UPDATE trading.watchlist SET mode = '$mode'");
	my $q = decode_json(fixture($file))->{data};
	my $lp = $q->{'NSE:INFY'}{last_price};
	ok($node->poll_query_until('postgres',
		"SELECT mode = '$mode' AND last_price = $lp FROM trading.quotes WHERE instrument = 'NSE:INFY'"),
		"quotes in mode $mode applied");
	# fields the mode does not carry must be null: compare them too
	my %extra = (instrument => 'NSE:INFY', mode => $mode);
	for my $col (qw(last_quantity average_price volume buy_quantity sell_quantity net_change oi
		lower_circuit_limit upper_circuit_limit last_trade_time))
	{
		$extra{$col} = $q->{'NSE:INFY'}{$col};
	}
	check_table('quotes', [ [ "instrument = 'NSE:INFY'", $q->{'NSE:INFY'}, \%extra, $file, 'NSE:INFY' ] ], \%qmap);
}

is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.worker_errors'), '0',
	'no endpoint failed on a fixture');

$node->stop;
$srv->stop;
done_testing();

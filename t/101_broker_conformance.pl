# Conformance of the paper broker with the official Kite Connect v3 mocks:
# for every fixture in kite-mocks that maps to an endpoint the broker serves,
# the broker's response has the same envelope, the same field names and the
# same JSON types (values differ).  Arrays in a fixture are merged element by
# element: a field present in every element is required, a field present in
# some is allowed, and each field's type must be one the fixture shows.
use strict;
use warnings;
use B ();
use FindBin;
use lib "$FindBin::RealBin/lib";
use JSON::PP;
use Test::More;
use PaperBroker;

my $mocks = PaperBroker::mocks();
plan skip_all => "no fixtures at $mocks" unless -d $mocks;

sub jtype
{
	my ($v) = @_;
	return 'null' unless defined $v;
	return 'bool' if JSON::PP::is_bool($v);
	return 'object' if ref $v eq 'HASH';
	return 'array' if ref $v eq 'ARRAY';
	my $f = B::svref_2object(\$v)->FLAGS;
	return 'number' if ($f & (B::SVp_IOK | B::SVp_NOK)) && !($f & B::SVp_POK);
	return 'string';
}

# schema: {types => {t => 1}, keys => {k => schema}, required => {k => 1}, elem => schema}
sub merge
{
	my ($s, $v) = @_;
	$s //= { types => {} };
	my $t = jtype($v);
	$s->{types}{$t} = 1;
	if ($t eq 'object')
	{
		my %seen = map { $_ => 1 } keys %$v;
		if (!$s->{keys}) { $s->{required} = {%seen}; $s->{keys} = {}; }
		else { delete $s->{required}{$_} for grep { !$seen{$_} } keys %{ $s->{required} }; }
		$s->{keys}{$_} = merge($s->{keys}{$_}, $v->{$_}) for keys %$v;
	}
	elsif ($t eq 'array')
	{
		$s->{elem} = merge($s->{elem}, $_) for @$v;
	}
	return $s;
}

# returns a list of differences between value $v and schema $s at $path
sub check
{
	my ($s, $v, $path) = @_;
	my $t = jtype($v);
	return ("$path: type $t, fixture has " . join('|', sort keys %{ $s->{types} }))
	  unless $s->{types}{$t};
	my @err;
	if ($t eq 'object' && $s->{keys})
	{
		push @err, "$path: missing field '$_'" for grep { !exists $v->{$_} } sort keys %{ $s->{required} };
		for my $k (sort keys %$v)
		{
			if (!$s->{keys}{$k}) { push @err, "$path: extra field '$k'"; next; }
			push @err, check($s->{keys}{$k}, $v->{$k}, "$path.$k");
		}
	}
	elsif ($t eq 'array' && $s->{elem})
	{
		# top-level lists must not be empty, or nothing would be compared
		push @err, "$path: empty array, fixture has elements" unless @$v || $path =~ /\[/;
		push @err, check($s->{elem}, $v->[$_], "$path\[$_]") for 0 .. $#$v;
	}
	return @err;
}

sub fixture
{
	my ($name) = @_;
	open(my $fh, '<', "$mocks/$name") or die "$mocks/$name: $!";
	local $/;
	return JSON::PP->new->decode(<$fh>);
}

sub conforms
{
	my ($name, $res) = @_;
	my $fx = fixture($name);
	subtest "$name" => sub {
		is($res->{status}, 200, 'HTTP 200') or diag $res->{content};
		like($res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type');
		ok($res->{json}, 'body is JSON') or return;
		is_deeply([ sort keys %{ $res->{json} } ], [ sort keys %$fx ], 'same envelope');
		is($res->{json}{status}, 'success', 'status success');
		my @err = check(merge(undef, $fx->{data}), $res->{json}{data}, 'data');
		is(scalar(@err), 0, 'same field names and JSON types') or diag join("\n", @err);
	};
}

my $b = PaperBroker->start(args => [ '--holding', 'NSE:INFY:5:1400', '--request-token', 'fixed_rt' ]);

# a day's activity, so every list has elements of each kind
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
my $done = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 3, product => 'CNC');
my $open = $b->place(tradingsymbol => 'SBIN', transaction_type => 'BUY', quantity => 1,
	order_type => 'LIMIT', price => 1, tag => 'conf1');
$b->place(tradingsymbol => 'IOC', transaction_type => 'SELL', quantity => 2);
$b->place(tradingsymbol => 'IOC', transaction_type => 'BUY', quantity => 1);

conforms('orders.json', $b->api(GET => '/orders'));
conforms('order_info.json', $b->api(GET => "/orders/$done"));	# tag null, as in the fixture
conforms('order_trades.json', $b->api(GET => "/orders/$done/trades"));
conforms('trades.json', $b->api(GET => '/trades'));
conforms('positions.json', $b->api(GET => '/portfolio/positions'));
conforms('holdings.json', $b->api(GET => '/portfolio/holdings'));
conforms('margins.json', $b->api(GET => '/user/margins'));
conforms('margins_equity.json', $b->api(GET => '/user/margins/equity'));
conforms('margin_commodity.json', $b->api(GET => '/user/margins/commodity'));
conforms('quote.json', $b->api(GET => '/quote', query => [ i => 'NSE:INFY' ]));
conforms('ltp.json', $b->api(GET => '/quote/ltp', query => [ i => 'NSE:INFY' ]));
conforms('ohlc.json', $b->api(GET => '/quote/ohlc', query => [ i => 'NSE:INFY' ]));
conforms('profile.json', $b->api(GET => '/user/profile'));
conforms('order_modify.json', $b->api(PUT => "/orders/regular/$open", form => { price => 2 }));
conforms('order_cancel.json', $b->api(DELETE => "/orders/regular/$open"));
conforms('order_response.json', $b->api(POST => '/orders/regular', form => {
	tradingsymbol => 'INFY', exchange => 'NSE', transaction_type => 'SELL',
	order_type => 'MARKET', quantity => 1, product => 'CNC' }));

require Digest::SHA;
my $session = $b->api(POST => '/session/token', auth => 0, form => {
	api_key => $PaperBroker::API_KEY, request_token => 'fixed_rt',
	checksum => Digest::SHA::sha256_hex($PaperBroker::API_KEY . 'fixed_rt' . $PaperBroker::API_SECRET) });
conforms('generate_session.json', $session);
conforms('session_logout.json', $b->api(DELETE => '/session/token', auth => 0, query => {
	api_key => $PaperBroker::API_KEY, access_token => $session->{json}{data}{access_token} }));

# quote maps: keys EXCHANGE:SYMBOL, unknown instruments absent
my $q = $b->api(GET => '/quote/ltp', query => [ i => 'NSE:INFY', i => 'BSE:SENSEX', i => 'NSE:NO_SUCH' ]);
is_deeply([ sort keys %{ $q->{json}{data} } ], [ 'BSE:SENSEX', 'NSE:INFY' ], 'quote keys; unknown absent');

# order ids are 19-digit strings, trade ids strings, /trades order_timestamp is HH:MM:SS
like($done, qr/^\d{19}$/, 'order id has 19 digits');
my $trades = $b->api(GET => '/trades')->{json}{data};
like($trades->[0]{order_timestamp}, qr/^\d\d:\d\d:\d\d$/, '/trades order_timestamp is HH:MM:SS');
like($trades->[0]{fill_timestamp}, qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'fill_timestamp format');
is(jtype($trades->[0]{trade_id}), 'string', 'trade_id is a string');

# the error envelope
my $err = $b->api(GET => '/user/profile', auth => 0);
is($err->{status}, 403, 'no token: 403');
is_deeply([ sort keys %{ $err->{json} } ], [qw(data error_type message status)], 'error envelope fields');
is($err->{json}{data}, undef, 'error data is null');
like($err->{headers}{'content-type'}, qr{^application/json}, 'error is JSON');

# instruments CSV: the columns of instruments_nse.csv
open(my $fh, '<', "$mocks/instruments_nse.csv") or die;
my $want = <$fh>;
$want =~ s/\r?\n$//;
close $fh;
for my $path ('/instruments', '/instruments/NSE')
{
	my $csv = $b->api(GET => $path);
	is($csv->{status}, 200, "$path: 200");
	like($csv->{headers}{'content-type'}, qr{^text/csv}, "$path: CSV");
	like($csv->{content}, qr/\A[^\n]*\r\n/, "$path: CRLF lines, like Kite's dump");
	my ($head, @rows) = split /\r?\n/, $csv->{content};
	is($head, $want, "$path: same columns as instruments_nse.csv");
	ok(@rows >= 99, "$path: has the instruments");
}
my @bse = split /\r?\n/, $b->api(GET => '/instruments/BSE')->{content};
ok(@bse >= 2 && !grep({ /,NSE$/ } @bse[ 1 .. $#bse ]), '/instruments/BSE has only BSE rows');

is($b->stop, 0, 'clean exit on SIGTERM');
done_testing();

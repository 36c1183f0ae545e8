# Paper broker orders: fills, positions (realised/unrealised/m2m), trades,
# order history, modify/cancel, SL triggers, IOC, margin rejection,
# holdings and margins, and a reproducible random walk.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use Test::More;
use PaperBroker;

my $b = PaperBroker->start(args => [ '--cash', 100000 ]);
sub price { $b->admin(POST => '/admin/price', instrument => $_[0], price => $_[1]); }
sub positions { return $b->api(GET => '/portfolio/positions')->{json}{data}; }
sub position_of
{
	my ($sym, $product) = @_;
	my ($p) = grep { $_->{tradingsymbol} eq $sym && $_->{product} eq ($product // 'MIS') } @{ positions()->{net} };
	return $p;
}

# --- buy, then sell higher: realised P&L ---
price('NSE:INFY', 1000);
my $buy = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 10);
like($buy, qr/^\d{19}$/, '19-digit order id');
my $o = $b->order($buy);
is($o->{status}, 'COMPLETE', 'market buy: COMPLETE');
is($o->{average_price}, 1000, 'market buy filled at the last price');
is($o->{filled_quantity}, 10, 'filled_quantity');
is($o->{pending_quantity}, 0, 'pending_quantity');
my $p = position_of('INFY');
is($p->{quantity}, 10, 'position: quantity 10');
is($p->{average_price}, 1000, 'position: average price');
price('NSE:INFY', 1020);
$p = position_of('INFY');
is($p->{unrealised}, 200, 'position: unrealised follows the price');
is($p->{pnl}, 200, 'position: pnl');
is($p->{m2m}, 200, 'position: m2m');

price('NSE:INFY', 1100);
my $sell = $b->place(tradingsymbol => 'INFY', transaction_type => 'SELL', quantity => 10);
is($b->order($sell)->{average_price}, 1100, 'market sell filled at 1100');
$p = position_of('INFY');
is($p->{quantity}, 0, 'flat after the sell');
is($p->{realised}, 1000, 'realised P&L = 10 x (1100 - 1000)');
is($p->{unrealised}, 0, 'no unrealised when flat');
is($p->{pnl}, 1000, 'pnl = realised');
is($p->{buy_value}, 10000, 'buy_value');
is($p->{sell_value}, 11000, 'sell_value');
is($p->{value}, 1000, 'value = sell_value - buy_value');
is_deeply(positions()->{day}, positions()->{net}, 'day positions equal net (no overnight)');

my $trades = $b->api(GET => '/trades')->{json}{data};
is(scalar @$trades, 2, 'two trades');
is_deeply([ map { $_->{order_id} } @$trades ], [ $buy, $sell ], 'trades name their orders');
my $ot = $b->api(GET => "/orders/$sell/trades")->{json}{data};
is(scalar @$ot, 1, '/orders/{id}/trades: one fill');
is($ot->[0]{average_price}, 1100, '... at 1100');
is($ot->[0]{transaction_type}, 'SELL', '... a SELL');

my $hist = $b->api(GET => "/orders/$buy")->{json}{data};
is_deeply([ map { $_->{status} } @$hist ],
	[ 'PUT ORDER REQ RECEIVED', 'VALIDATION PENDING', 'OPEN PENDING', 'OPEN', 'COMPLETE' ],
	'order history');
is($b->api(GET => '/orders/1234567890123456789')->{status}, 404, 'unknown order: 404');

my $m = $b->api(GET => '/user/margins/equity')->{json}{data};
is($m->{utilised}{m2m_realised}, 1000, 'margins: realised');
is($m->{net}, 101000, 'margins: net = cash + realised when flat');

# --- a short: sell first, buy back lower ---
price('NSE:SBIN', 500);
$b->place(tradingsymbol => 'SBIN', transaction_type => 'SELL', quantity => 4);
price('NSE:SBIN', 450);
is(position_of('SBIN')->{unrealised}, 200, 'short: unrealised gain when the price falls');
$b->place(tradingsymbol => 'SBIN', transaction_type => 'BUY', quantity => 4);
is(position_of('SBIN')->{realised}, 200, 'short: realised 4 x (500 - 450)');

# --- limit orders rest, then fill at their price when crossed ---
price('NSE:TCS', 3000);
my $lim = $b->place(tradingsymbol => 'TCS', transaction_type => 'BUY', quantity => 2,
	order_type => 'LIMIT', price => 2950);
is($b->order($lim)->{status}, 'OPEN', 'limit below the market: OPEN');
price('NSE:TCS', 2960);
is($b->order($lim)->{status}, 'OPEN', 'not crossed yet: OPEN');
price('NSE:TCS', 2940);
$o = $b->order($lim);
is($o->{status}, 'COMPLETE', 'crossed: COMPLETE');
is($o->{average_price}, 2950, 'a resting limit fills at its limit price');
my $mkt = $b->place(tradingsymbol => 'TCS', transaction_type => 'SELL', quantity => 2,
	order_type => 'LIMIT', price => 2900);
is($b->order($mkt)->{average_price}, 2940, 'a marketable limit fills at the last price');

# --- stop orders ---
price('NSE:RELIANCE', 2000);
my $slm = $b->place(tradingsymbol => 'RELIANCE', transaction_type => 'SELL', quantity => 1,
	order_type => 'SL-M', trigger_price => 1950);
is($b->order($slm)->{status}, 'TRIGGER PENDING', 'SL-M: TRIGGER PENDING');
price('NSE:RELIANCE', 1940);
$o = $b->order($slm);
is($o->{status}, 'COMPLETE', 'SL-M triggered: COMPLETE');
is($o->{average_price}, 1940, 'SL-M fills at the last price');
my $sl = $b->place(tradingsymbol => 'RELIANCE', transaction_type => 'BUY', quantity => 1,
	order_type => 'SL', trigger_price => 2000, price => 2010);
is($b->order($sl)->{status}, 'TRIGGER PENDING', 'SL: TRIGGER PENDING');
price('NSE:RELIANCE', 2005);
is($b->order($sl)->{status}, 'COMPLETE', 'SL triggered and filled');

# --- modify and cancel ---
price('NSE:HDFCBANK', 1600);
my $mod = $b->place(tradingsymbol => 'HDFCBANK', transaction_type => 'BUY', quantity => 1,
	order_type => 'LIMIT', price => 1500, tag => 'modtest1');
my $res = $b->api(PUT => "/orders/regular/$mod", form => { price => 1550, quantity => 3 });
is($res->{json}{data}{order_id}, $mod, 'modify returns the order id');
$o = $b->order($mod);
is($o->{price}, 1550, 'modified price');
is($o->{quantity}, 3, 'modified quantity');
is($o->{modified}, JSON::PP::true, 'modified flag');
is($o->{tag}, 'modtest1', 'tag kept');
is_deeply($o->{tags}, ['modtest1'], 'tags');
$b->api(PUT => "/orders/regular/$mod", form => { price => 1610 });
is($b->order($mod)->{status}, 'COMPLETE', 'modified into the market: filled');
is($b->api(PUT => "/orders/regular/$mod", form => { price => 1 })->{status}, 400, 'cannot modify a COMPLETE order');
my $can = $b->place(tradingsymbol => 'HDFCBANK', transaction_type => 'BUY', quantity => 7,
	order_type => 'LIMIT', price => 1000);
is($b->api(DELETE => "/orders/regular/$can")->{json}{data}{order_id}, $can, 'cancel returns the id');
$o = $b->order($can);
is($o->{status}, 'CANCELLED', 'cancelled');
is($o->{cancelled_quantity}, 7, 'cancelled_quantity');
is($o->{pending_quantity}, 0, 'nothing pending');
is($b->api(DELETE => "/orders/regular/$can")->{status}, 400, 'cannot cancel twice');

# --- IOC, rejections, validation ---
my $ioc = $b->place(tradingsymbol => 'HDFCBANK', transaction_type => 'BUY', quantity => 1,
	order_type => 'LIMIT', price => 1000, validity => 'IOC');
is($b->order($ioc)->{status}, 'CANCELLED', 'IOC that cannot fill: CANCELLED');
my $big = $b->place(tradingsymbol => 'HDFCBANK', transaction_type => 'BUY', quantity => 100000, product => 'CNC');
$o = $b->order($big);
is($o->{status}, 'REJECTED', 'beyond the margin: REJECTED');
like($o->{status_message}, qr/Margin/, 'rejection says why');
is($o->{exchange_order_id}, undef, 'a rejected order never reached the exchange');
for my $bad ([ 'bad variety', 'nope', {} ], [ 'unknown symbol', 'regular', { tradingsymbol => 'NOSUCH' } ],
	[ 'zero quantity', 'regular', { quantity => 0 } ], [ 'limit without price', 'regular', { order_type => 'LIMIT' } ],
	[ 'long tag', 'regular', { tag => 'x' x 21 } ], [ 'an index', 'regular', { tradingsymbol => 'NIFTY 50' } ],
	# Kite's tags are alphanumeric: no punctuation, no raw bytes echoed back
	[ 'tag with a hyphen', 'regular', { tag => 'mod-test' } ],
	[ 'tag with invalid UTF-8', 'regular', { tag => "\xff\xfe" } ])
{
	my %f = (tradingsymbol => 'INFY', exchange => 'NSE', transaction_type => 'BUY',
		order_type => 'MARKET', quantity => 1, product => 'MIS', %{ $bad->[2] });
	my $rr = $b->api(POST => "/orders/$bad->[1]", form => \%f);
	is($rr->{status}, 400, "$bad->[0]: 400");
	is($rr->{json}{error_type}, 'InputException', "$bad->[0]: InputException");
}

# --- holdings from CNC buys and --holding ---
price('NSE:ICICIBANK', 1200);
$b->place(tradingsymbol => 'ICICIBANK', transaction_type => 'BUY', quantity => 5, product => 'CNC');
my ($h) = grep { $_->{tradingsymbol} eq 'ICICIBANK' } @{ $b->api(GET => '/portfolio/holdings')->{json}{data} };
is($h->{t1_quantity}, 5, 'CNC buy shows as t1_quantity');
is($h->{average_price}, 1200, 'holding average price');
my $eq = $b->api(GET => '/user/margins/equity')->{json}{data};
is($eq->{utilised}{delivery}, 6000, 'CNC blocks the full value');

# --- reset ---
$b->admin(POST => '/admin/reset');
is(scalar @{ $b->api(GET => '/orders')->{json}{data} }, 0, 'reset: no orders');
is(scalar @{ positions()->{net} }, 0, 'reset: no positions');
is($b->stop, 0, 'clean exit');

my $hb = PaperBroker->start(args => [ '--holding', 'NSE:INFY:10:1400' ]);
my $hs = $hb->api(GET => '/portfolio/holdings')->{json}{data};
is($hs->[0]{tradingsymbol}, 'INFY', '--holding: listed');
is($hs->[0]{quantity}, 10, '--holding: quantity');
$hb->place(tradingsymbol => 'INFY', transaction_type => 'SELL', quantity => 4, product => 'CNC');
is($hb->api(GET => '/portfolio/holdings')->{json}{data}[0]{used_quantity}, 4, 'selling holdings: used_quantity');
$hb->stop;

# --- the walk is reproducible with a seed ---
sub walk
{
	my ($seed) = @_;
	my $w = PaperBroker->start(args => [ '--seed', $seed ]);
	$w->admin(POST => '/admin/tick', n => 200);
	my $q = $w->api(GET => '/quote/ohlc', query => [ map { (i => "NSE:$_") } qw(INFY SBIN TCS CDSL) ])->{json}{data};
	$w->stop;
	return { map { $_ => [ $q->{$_}{last_price}, $q->{$_}{ohlc} ] } keys %$q };
}
my $w1 = walk(42);
is_deeply(walk(42), $w1, 'same seed, same ticks: same prices');
isnt(JSON::PP->new->canonical->encode(walk(43)), JSON::PP->new->canonical->encode($w1), 'another seed: other prices');
ok((grep { $w1->{$_}[0] != $w1->{$_}[1]{open} } keys %$w1) > 0, 'prices moved');

# --- the timer moves prices too ---
my $t = PaperBroker->start(tick => 20);
sleep 1;
ok($t->stats->{market}{ticks} > 0, 'the ticker advances the walk');
$t->stop;

done_testing();

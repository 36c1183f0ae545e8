# The adversarial broker: a hostile HTTP server on loopback (HTTP::Daemon)
# answers every endpoint with one fixed round of hostile responses (invalid
# UTF-8, NUL bytes and \u0000 escapes, deep nesting, numbers out of range,
# a wrong JSON type for every mapped field, duplicate keys, a success
# envelope with HTTP 5xx, HTML, a huge body, a slow body, log injection),
# between good answers.  Afterwards the worker is the same process, every
# table holds only the good rows (well typed, valid UTF-8), and every
# rejection is counted in trading.worker_errors, by type, exactly.
# Then a request in flight across a session change: its TokenException
# does not expire the new session (issue 13, item 6).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use HTTP::Daemon;
use HTTP::Response;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep);
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use WorkerTest;

my $json = JSON::PP->new->canonical;
sub enc { return $json->encode($_[0]); }
sub ok_env { return enc({ status => 'success', data => $_[0] }); }

# ---- the node first: the mapped fields come from trading._broker_fields ----
my $node = WorkerTest::node('adversarial', undef, url => 'http://127.0.0.1:1',
	conf => qq{
trading.broker_timeout = '3s'
trading.broker_max_backoff = '1s'
trading.broker_max_response = '64kB'
trading.metrics_max_labels = 24
});
my %fields;
for my $t (qw(orders trades positions holdings margins quotes))
{
	my ($ret, $out) = $node->psql('postgres', "SELECT trading._broker_fields('$t')");
	# (a 1.0 install has no _broker_fields: its columns stand in, so that
	# this test shows what 1.0 did with the same responses)
	($ret, $out) = $node->psql('postgres', qq{
		SELECT json_agg(json_build_object('col', column_name, 'path', ARRAY[column_name], 'kind', data_type))
		  FROM information_schema.columns WHERE table_schema = 'trading' AND table_name = '$t'
		   AND column_name NOT IN ('raw', 'updated_at', 'previous_status', 'status_changed_at',
		                           'kind', 'segment', 'instrument', 'mode')}) if $ret != 0;
	$fields{$t} = decode_json($out);
}

# an element with one field set to a value of the wrong JSON type
sub with_field
{
	my ($base, $path, $v) = @_;
	my %e = %{ $json->decode(enc($base)) };
	my $h = \%e;
	for my $i (0 .. $#$path - 1)
	{
		$h->{ $path->[$i] } //= {};
		$h = $h->{ $path->[$i] };
	}
	$h->{ $path->[-1] } = $v;
	return \%e;
}

# for every mapped field: the base element with that field wrong
sub every_field_wrong
{
	my ($t, $base) = @_;
	my @out;
	for my $f (@{ $fields{$t} })
	{
		my $k = $f->{kind};
		# a value no kind accepts for this field: objects are never mapped
		push @out, with_field($base, $f->{path}, { x => 1 });
	}
	return @out;
}

# ---- good data (served before and after the hostile round) ----
my @good_orders = (
	{ order_id => '1001', status => 'OPEN', tradingsymbol => 'INFY', exchange => 'NSE',
	  transaction_type => 'BUY', quantity => 1, price => 10.5,
	  order_timestamp => '2026-11-27 09:15:00', tags => ['a'] },
	{ order_id => '1002', status => 'COMPLETE', tradingsymbol => 'SBIN', exchange => 'NSE',
	  transaction_type => 'SELL', quantity => 2, average_price => 500 });
my @good_trades = ({ trade_id => 't1', order_id => '1002', quantity => 2,
	fill_timestamp => '2026-11-27 09:16:00', order_timestamp => '09:16:00' });
my %pos = (exchange => 'NSE', tradingsymbol => 'INFY', product => 'MIS', quantity => 1, pnl => 1.5);
my $good_positions = { net => [ \%pos ], day => [ \%pos ] };
my @good_holdings = ({ exchange => 'NSE', tradingsymbol => 'INFY', quantity => 3, isin => 'INE009A01021' });
my $good_margins = { equity => { enabled => JSON::PP::true, net => 100,
	available => { cash => 100 }, utilised => { debits => 0 } } };
my $good_quotes = { 'NSE:INFY' => { instrument_token => 408065, last_price => 1500.5 } };

my %good = (
	'/orders' => ok_env(\@good_orders),
	'/trades' => ok_env(\@good_trades),
	'/portfolio/positions' => ok_env($good_positions),
	'/portfolio/holdings' => ok_env(\@good_holdings),
	'/user/margins' => ok_env($good_margins),
	'/quote/ltp' => ok_env($good_quotes));

# ---- the hostile round: [status, content type, body, expected type => n] ----
my $J = 'application/json';
my $html = "<html><body>502 Bad Gateway</body></html>";
my $deep = '{"status": "success", "data": ' . ('[' x 20000) . (']' x 20000) . '}';
my $huge = ok_env([ map { { order_id => "h$_", status => 'OPEN', tag => 'x' x 100 } } 1 .. 1000 ]);
my $inject = "x\n2026-01-01 00:00:00 UTC [1] LOG:  INJECTED-LINE\r\e[31m";

sub common_hostile
{
	my ($empty) = @_;
	return (
		[ 200, $J, qq({"status": "success", "data": [{"order_id": "666", "status": "OPEN", "tag": "\xff\xfe"}]}), encoding => 1 ],
		[ 200, $J, qq({"status": "success", "data": [{"order_id": "667", "status": "OPEN", "tag": "a\\u0000b"}]}), encoding => 1 ],
		[ 200, $J, qq({"status": "success", "data": [{"order_id": "668", "status": "OPEN"\x00}]}), encoding => 1 ],
		[ 200, $J, $deep, malformed => 1 ],
		[ 200, $J, '{"status": "success", "data": [', malformed => 1 ],
		[ 503, $J, ok_env($empty), http_5xx => 1 ],
		[ 500, $J, enc({ status => 'success', data => $empty }), http_5xx => 1 ],
		[ 502, 'text/html', $html, http_5xx => 1 ],
		[ 200, 'text/html', $html, not_json => 1 ],
		[ 200, $J, $huge, too_large => 1 ],
		[ 200, $J, 'SLOW', timeout => 1 ],
		# a good answer first, so that the next failure is logged
		[ 200, $J, 'GOOD' ],
		[ 400, $J, enc({ status => 'error', error_type => "Input\nException", message => $inject }), broker_error => 1 ],
		[ 400, $J, qq({"status": "error", "error_type": "InputException", "message": "bad \xc3\x28 bytes"}), encoding => 1 ],
		[ 200, $J, '{"status": "success", "data": "all of it"}', schema => 1 ],
		[ 200, $J, '[1, 2, 3]', malformed => 1 ]);
}

my $obase = { order_id => '2001', status => 'OPEN' };
my @o_wrong = every_field_wrong('orders', $obase);
my @t_wrong = every_field_wrong('trades', { trade_id => 't9', order_id => '2001' });
my $pbase = { exchange => 'NSE', tradingsymbol => 'BAD', product => 'MIS' };
my @p_wrong = every_field_wrong('positions', $pbase);
my @h_wrong = every_field_wrong('holdings', { exchange => 'NSE', tradingsymbol => 'BAD' });
my @m_wrong = every_field_wrong('margins', {});
my @q_wrong = every_field_wrong('quotes', {});

my %hostile = (
	'/orders' => [
		common_hostile([]),
		# every mapped field with a wrong type, next to a good order: 27
		# elements rejected, the good one applied
		[ 200, $J, ok_env([ @o_wrong, @good_orders ]), schema => scalar(@o_wrong) ],
		[ 200, $J, ok_env([ with_field($obase, ['quantity'], '1e400'),
			{ order_id => '2002', status => 'OPEN', quantity => 9223372036854775807 * 10 } ]), schema => 2 ],
		# a duplicated key (the last one wins, and is wrong); a duplicated order
		[ 200, $J, '{"status": "success", "data": [{"order_id": "2003", "status": "OPEN", "quantity": 1, "quantity": "one"}]}', schema => 1 ],
		[ 200, $J, ok_env([ @good_orders, $good_orders[0] ]), schema => 1 ],
	],
	'/trades' => [ common_hostile([]),
		[ 200, $J, ok_env([ @t_wrong, @good_trades ]), schema => scalar(@t_wrong) ] ],
	'/portfolio/positions' => [ common_hostile({ net => [], day => [] }),
		[ 200, $J, ok_env({ net => [ @p_wrong, \%pos ], day => [ \%pos ] }), schema => scalar(@p_wrong) ],
		[ 200, $J, ok_env({ net => [] }), schema => 1 ] ],
	'/portfolio/holdings' => [ common_hostile([]),
		[ 200, $J, ok_env([ @h_wrong, @good_holdings ]), schema => scalar(@h_wrong) ] ],
	'/user/margins' => [ common_hostile({}),
		[ 200, $J, ok_env({ equity => $m_wrong[0], commodity => $m_wrong[1] }), schema => 2 ],
		[ 200, $J, ok_env({ crypto => {} }), schema => 1 ] ],
	'/quote/ltp' => [ common_hostile({}),
		map { [ 200, $J, ok_env({ 'NSE:INFY' => $_ }), schema => 1 ] } @q_wrong ],
);
# positions, holdings and margins: "data" shaped as the endpoint's; the
# common "not an array" case is a schema error for them too, and trades'
# deep and huge bodies are the same.  The schema-typed wrong-shape body:
# for object endpoints an array is the wrong shape.
for my $p ('/portfolio/positions', '/user/margins', '/quote/ltp')
{
	$_->[2] =~ s/"data": "all of it"/"data": ["all of it"]/ for @{ $hostile{$p} };
}

# expected counts per endpoint and type
my %endpoint_of = ('/orders' => 'orders', '/trades' => 'trades',
	'/portfolio/positions' => 'positions', '/portfolio/holdings' => 'holdings',
	'/user/margins' => 'margins', '/quote/ltp' => 'quotes');
my %expected;
for my $p (keys %hostile)
{
	for my $s (@{ $hostile{$p} })
	{
		my %c = @{$s}[ 3 .. $#$s ];
		$expected{ $endpoint_of{$p} }{$_} += $c{$_} for keys %c;
	}
}

# ---- the server ----
my $dir = tempdir('hostile-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $d = HTTP::Daemon->new(LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1, Listen => 64)
  or die "listen: $!";
my $url = 'http://127.0.0.1:' . $d->sockport;

# next answer number for a path (shared by the forked connection handlers)
sub next_number
{
	my ($path) = @_;
	(my $f = $path) =~ s/[^A-Za-z0-9]/_/g;
	open(my $fh, '+>>', "$dir/$f") or die "$dir/$f: $!";
	flock($fh, LOCK_EX);
	seek($fh, 0, 0);
	my $n = <$fh> // 0;
	chomp $n;
	seek($fh, 0, 0);
	truncate($fh, 0);
	print $fh ($n + 1), "\n";
	close $fh;
	return $n;
}

sub served { my ($path) = @_; (my $f = $path) =~ s/[^A-Za-z0-9]/_/g;
	open(my $fh, '<', "$dir/$f") or return 0; my $n = <$fh> // 0; chomp $n; return $n; }

my $mode_file = "$dir/mode";
sub set_mode { open(my $fh, '>', "$mode_file.tmp") or die; print $fh $_[0]; close $fh;
	rename("$mode_file.tmp", $mode_file) or die; }
sub mode { open(my $fh, '<', $mode_file) or return 'good'; local $/; return <$fh>; }
set_mode('good');

sub answer
{
	my ($c, $r) = @_;
	my $path = $r->uri->path;
	my $auth = $r->header('Authorization') // '';
	my $m = mode();
	if ($m eq 'token' && $path eq '/orders' && $auth =~ /old_token/)
	{
		# in flight across the session change, then refused
		next_number('token-old');
		sleep 2;    # within trading.broker_timeout (3 s)
		$c->send_response(HTTP::Response->new(403, 'Forbidden', [ 'Content-Type' => $J ],
			enc({ status => 'error', error_type => 'TokenException', message => 'expired' })));
		return;
	}
	if ($path eq '/session/token')
	{
		# a login answer with bytes that are not UTF-8 in user_id
		$c->send_response(HTTP::Response->new(200, 'OK', [ 'Content-Type' => $J ],
			qq({"status": "success", "data": {"user_id": "AB\xff\xfe", "access_token": "fresh_token", "login_time": "2026-11-27 09:00:00"}})));
		return;
	}
	if ($m eq 'refuse' && $path eq '/quote/ltp')
	{
		# a broker that refuses any batch holding NSE:BAD
		my @i = $r->uri->query_form;
		my @inst = map { $i[ 2 * $_ + 1 ] } grep { $i[ 2 * $_ ] eq 'i' } 0 .. $#i / 2;
		if (grep { $_ eq 'NSE:BAD' } @inst)
		{
			next_number('refused-batches');
			$c->send_response(HTTP::Response->new(400, 'Bad Request', [ 'Content-Type' => $J ],
				enc({ status => 'error', error_type => 'InputException', message => 'Invalid instrument' })));
			return;
		}
		my $n = next_number('quoted-batches');
		$c->send_response(HTTP::Response->new(200, 'OK', [ 'Content-Type' => $J ],
			ok_env({ map { $_ => { instrument_token => 1, last_price => 100 + $n } } @inst })));
		return;
	}
	my $body = $good{$path};
	if (!defined $body)
	{
		$c->send_error(404);
		return;
	}
	my ($st, $ct) = (200, $J);
	if ($m eq 'hostile' && $hostile{$path})
	{
		my $n = next_number($path);
		my $list = $hostile{$path};
		if ($n < @$list)
		{
			($st, $ct, $body) = @{ $list->[$n] }[ 0 .. 2 ];
			$body = $good{$path} if $body eq 'GOOD';
			if ($body eq 'SLOW')
			{
				# headers, then a trickle that outlasts the worker's timeout
				$c->send_status_line(200);
				print $c "Content-Type: $J\r\nContent-Length: 100000\r\n\r\n";
				for (1 .. 12) { print $c ' ' or return; sleep 1; }
				return;
			}
		}
	}
	$c->send_response(HTTP::Response->new($st, 'X', [ 'Content-Type' => $ct ], $body));
}

my $server = fork();
die "fork: $!" unless defined $server;
if ($server == 0)
{
	$SIG{CHLD} = 'IGNORE';
	$SIG{PIPE} = 'IGNORE';
	while (my $c = $d->accept)
	{
		my $kid = fork();
		next if !defined $kid;
		if ($kid == 0)
		{
			while (my $r = $c->get_request)
			{
				answer($c, $r);
			}
			POSIX::_exit(0);
		}
		$c->close;
	}
	POSIX::_exit(0);
}
$d->close;
# the server goes with the test, also when the test dies (it holds the
# test's output open)
END { if ($server) { kill 'TERM', $server; waitpid($server, 0); } }

# ---- SQL callers fill every exception label they may take first ----
my $sql_kinds = 0;
for my $i (1 .. 24)
{
	my ($ret) = $node->psql('postgres', "SELECT trading.record_exception('sql.kind.$i')");
	last if $ret != 0;
	$sql_kinds++;
}
cmp_ok($sql_kinds, '<', 24, "SQL callers took $sql_kinds of 24 exception labels, not all");

# ---- point the worker at it ----
$node->safe_psql('postgres', qq{
	ALTER SYSTEM SET trading.broker_url = '$url';
	SELECT pg_reload_conf();
	UPDATE trading.poll_intervals SET interval_ms = 200;
	INSERT INTO trading.watchlist VALUES ('NSE:INFY', 'ltp');
	SELECT trading.set_broker_session('k', 'token');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM trading.orders WHERE order_id = '1002'
	   AND (SELECT count(*) FROM trading.quotes) = 1
	   AND (SELECT count(*) FROM trading.positions) = 2
	   AND (SELECT count(*) FROM trading.margins) = 1
	   AND (SELECT count(*) FROM trading.trades) = 1
	   AND (SELECT count(*) FROM trading.holdings) = 1}),
	'the good data is applied first');
my $pid = $node->safe_psql('postgres', 'SELECT worker_pid FROM trading.worker_http');
my $errors_before = $node->safe_psql('postgres', 'SELECT count(*) FROM trading.worker_errors');
is($errors_before, '0', 'no error while the broker behaves');

# ---- the hostile round ----
my $log_from = -s $node->logfile;
set_mode('hostile');
my $total = 0;
$total += @{ $hostile{$_} } for keys %hostile;
my $deadline = time + 240;
sleep 1 while time < $deadline
  && grep { served($_) < @{ $hostile{$_} } + 1 } keys %hostile;
is(scalar(grep { served($_) < @{ $hostile{$_} } + 1 } keys %hostile), 0,
	"the whole hostile round was served ($total hostile responses), then good ones");
# every endpoint has succeeded again since (its last answer was good)
ok($node->poll_query_until('postgres',
	"SELECT bool_and(consecutive_failures = 0) FROM trading.worker_status"),
	'every endpoint is back to good answers');

is($node->safe_psql('postgres', 'SELECT worker_pid FROM trading.worker_http'), $pid,
	'the worker is the same process');

# every rejection counted, by type, exactly (timeouts: at least, a loaded
# machine may add one)
my %got;
for my $row (split /\n/, $node->safe_psql('postgres',
	"SELECT endpoint, error_type, errors_total FROM trading.worker_errors"))
{
	my ($e, $t, $n) = split /\|/, $row;
	$got{$e}{$t} = $n;
}
for my $e (sort keys %expected)
{
	for my $t (sort keys %{ $expected{$e} })
	{
		if ($t eq 'timeout')
		{
			cmp_ok($got{$e}{$t} // 0, '>=', $expected{$e}{$t}, "$e: $t counted");
		}
		else
		{
			is($got{$e}{$t} // 0, $expected{$e}{$t}, "$e: every $t counted");
		}
	}
	my @extra = grep { !exists $expected{$e}{$_} && $_ ne 'timeout' } keys %{ $got{$e} };
	is("@extra", '', "$e: no error of another type");
}
is(($node->psql('postgres',
	"SELECT last_field FROM trading.worker_errors WHERE endpoint = 'margins' AND error_type = 'schema'"))[1],
	'margins.segment', 'worker_errors names the field of the last schema error');

# the worker's own kinds have their own labels despite the SQL callers
is($node->safe_psql('postgres', q{
	SELECT string_agg(kind, ',' ORDER BY kind) FROM trading.metrics_exceptions
	 WHERE kind IN ('schema', 'encoding', 'malformed', 'http_5xx', 'too_large', 'not_json', 'broker_error')
	   AND total > 0}),
	'broker_error,encoding,http_5xx,malformed,not_json,schema,too_large',
	'the worker\'s exception kinds are counted under their own labels');
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(total), 0) FROM trading.metrics_exceptions WHERE kind = '_overflow'}),
	'0', 'nothing of the worker\'s went to _overflow');

# ---- the tables hold the good rows only, well typed and valid ----
is($node->safe_psql('postgres', 'SELECT string_agg(order_id, \',\' ORDER BY order_id) FROM trading.orders'),
	'1001,1002', 'orders: only the good orders');
is($node->safe_psql('postgres', q{SELECT string_agg(trade_id, ',') FROM trading.trades}),
	't1', 'trades: only the good trade');
is($node->safe_psql('postgres', q{SELECT string_agg(kind || ':' || tradingsymbol || ':' || quantity, ',' ORDER BY kind) FROM trading.positions}),
	'day:INFY:1,net:INFY:1', 'positions: kept through the 5xx success with an empty list');
is($node->safe_psql('postgres', q{SELECT string_agg(tradingsymbol || ':' || quantity, ',') FROM trading.holdings}),
	'INFY:3', 'holdings: the good holding only');
is($node->safe_psql('postgres', q{SELECT string_agg(segment || ':' || net, ',') FROM trading.margins}),
	'equity:100', 'margins: the good segment only');
is($node->safe_psql('postgres', q{SELECT string_agg(instrument || ':' || last_price, ',') FROM trading.quotes}),
	'NSE:INFY:1500.5', 'quotes: the good quote only');
# every row converts to UTF-8 (a dump restores)
is($node->safe_psql('postgres', q{
	SELECT sum(octet_length(convert_to(x::text, 'UTF8')) * 0) FROM (
	  SELECT o::text AS x FROM trading.orders o UNION ALL SELECT t::text FROM trading.trades t
	  UNION ALL SELECT p::text FROM trading.positions p UNION ALL SELECT h::text FROM trading.holdings h
	  UNION ALL SELECT m::text FROM trading.margins m UNION ALL SELECT q::text FROM trading.quotes q) s}),
	'0', 'every row converts to UTF-8');

# ---- no injected log line, no control character from the broker ----
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_from);
my @injected = grep { /INJECTED-LINE/ && !/^\d{4}-\d\d-\d\d \d/ } split /\n/, $log;
is(scalar(@injected), 0, 'the broker\'s message never starts a log line of its own');
like($log, qr/INJECTED-LINE/, 'the broker\'s message was logged (on the worker\'s line)');
unlike($log, qr/\e|\r/, 'no escape or carriage return from the broker reaches the log');
unlike($log, qr/\xff|\xfe/, 'no invalid byte from the broker reaches the log');

# ---- a request in flight across a session change ----
set_mode('token');
$node->safe_psql('postgres', q{
	SELECT trading.set_broker_session('k', 'old_token');
	UPDATE trading.poll_intervals SET interval_ms = 100 WHERE endpoint = 'orders';
});
# the old session's /orders request is now held by the broker ...
my $wait = time + 20;
sleep 0.1 while served('token-old') < 1 && time < $wait;
$node->safe_psql('postgres', q{SELECT trading.set_broker_session('k', 'new_token')});
sleep 5;    # ... and has been answered 403 TokenException
cmp_ok(served('token-old'), '>=', 1, 'a request with the old token was in flight');
is($node->safe_psql('postgres', 'SELECT state FROM trading.broker_session_status'),
	'active', 'the old token\'s TokenException does not expire the new session');
is($node->safe_psql('postgres',
	"SELECT DISTINCT session_state || ':' || worker_state FROM trading.worker_status"),
	'active:polling', 'the worker keeps polling with the new session');
is($node->safe_psql('postgres',
	"SELECT coalesce(sum(errors_total), 0) FROM trading.worker_errors WHERE error_type = 'token'"),
	'0', 'the stale response is not counted as the new session\'s error');

# ---- a watchlist instrument the broker refuses (issue 13, item 7) ----
$node->safe_psql('postgres', q{
	INSERT INTO trading.watchlist (instrument, mode)
	SELECT 'NSE:A' || i, 'ltp' FROM generate_series(1, 6) i;
	INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:BAD', 'ltp');
	UPDATE trading.poll_intervals SET interval_ms = 500 WHERE endpoint = 'quotes';
});
set_mode('refuse');
ok($node->poll_query_until('postgres',
	"SELECT refused_at IS NOT NULL FROM trading.watchlist WHERE instrument = 'NSE:BAD'"),
	'the instrument the broker refuses is isolated and marked');
cmp_ok(served('refused-batches'), '>=', 2, 'the broker refused batches holding it');
is($node->safe_psql('postgres',
	"SELECT string_agg(instrument, ',') FROM trading.watchlist WHERE refused_at IS NOT NULL"),
	'NSE:BAD', 'no other instrument is marked');
like($node->safe_psql('postgres',
	"SELECT refused_reason FROM trading.watchlist WHERE instrument = 'NSE:BAD'"),
	qr/InputException/, 'the broker\'s reason is kept');
my $mark = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 7 FROM trading.quotes
	 WHERE instrument IN ('NSE:INFY', 'NSE:A1', 'NSE:A2', 'NSE:A3', 'NSE:A4', 'NSE:A5', 'NSE:A6')
	   AND updated_at > '$mark'}),
	'the rest keep being quoted');
my $refused_then = served('refused-batches');
sleep 2;
is(served('refused-batches'), $refused_then, 'the refused instrument is no longer sent');
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.quotes WHERE instrument = 'NSE:BAD'"),
	'0', 'it has no quote');
is($node->safe_psql('postgres', 'SELECT worker_pid FROM trading.worker_http'), $pid,
	'still the same worker process');

# ---- the login answer is verified like every body (issue 13, item 2) ----
my $user_before = $node->safe_psql('postgres',
	"SELECT coalesce(user_id, '-') || ':' || set_at FROM trading.broker_session_status");
my ($lret, $lout, $lerr) = $node->psql('postgres',
	"SELECT * FROM trading.broker_login('k', 'request_token_1', 'secret')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($lerr, qr/TR306/, 'a login answer that is not valid UTF-8: TR306');
is($node->safe_psql('postgres',
	"SELECT coalesce(user_id, '-') || ':' || set_at FROM trading.broker_session_status"),
	$user_before, 'and the stored session is unchanged');

kill 'TERM', $server;
waitpid($server, 0);
$server = undef;
$node->stop;
done_testing();

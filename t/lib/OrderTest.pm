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
use WorkerTest;
use IPC::Run;
use Time::HiRes ();

sub setup
{
	my ($name, %o) = @_;
	my $b = PaperBroker->start(args => [ '--cash', 1e12, @{ $o{broker_args} // [] } ],
		ratelimit => $o{ratelimit});
	my $url = $b->url;
	my $node = TradingTest::node($name, init => $o{init}, conf => WorkerTest::broker_conf($url) . qq{
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
	my $r;
	for (1 .. 50)				# the broker's own limits may refuse us
	{
		$r = $b->api(GET => '/orders');
		last unless $r->{status} == 429;
		Time::HiRes::sleep(0.2);
	}
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

# Budgets for tests that place many orders: kite.orders at $per_s a
# second, no minute or day window; kite.api at 50 a second.
sub fast_limits
{
	my ($node, $per_s) = @_;
	$node->safe_psql('postgres', qq{
		DELETE FROM trading.rate_limits WHERE endpoint IN ('kite.orders', 'kite.api');
		INSERT INTO trading.rate_limits (endpoint, requests, per) VALUES
			('kite.orders', $per_s, interval '1 second'), ('kite.api', 50, interval '1 second');
	});
}

sub sender_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'trading order sender'");
}

# The exactly-once acceptance run.  $o{orders} placed by $o{clients}
# clients (one psql per order, so a crash costs a client only the order in
# flight), while the broker drops $o{drop} of the placements after
# accepting them and answers $o{late} of them after the client's timeout;
# meanwhile $o{kills} times, kill -9 of the sender ('sender') or of a
# client backend ('backend').  Returns the number of requests.
sub exactly_once_run
{
	my ($node, $b, %o) = @_;
	my $per_client = int($o{orders} / $o{clients});
	my $connstr = $node->connstr('postgres');
	# faults_decide rolls accept_drop first, then accept_late of the rest
	my $late = $o{late} / (1 - $o{drop});
	$b->admin(POST => '/admin/faults', accept_drop_rate => $o{drop},
		accept_late_rate => $late, accept_late_ms => 1500, classes => 'order_write');
	my @h;
	for my $c (1 .. $o{clients})
	{
		my $script = qq{
			for i in \$(seq 1 $per_client); do
				until psql -X -q -A -t -d "$connstr" -c "SELECT 1" >/dev/null 2>&1; do sleep 0.1; done
				psql -X -q -A -t -d "$connstr" -U regress_trader \\
					-c "SELECT trading.place_order('NSE', 'INFY', 'BUY', 1, strategy => 'c$c')" \\
					>/dev/null 2>>$PostgreSQL::Test::Utils::tmp_check/clients.err || sleep 0.2
			done};
		push @h, IPC::Run::start([ 'bash', '-c', $script ]);
	}
	my $expected = $per_client * $o{clients};
	for my $k (1 .. $o{kills})
	{
		# spread the kills over the run
		my $at = int($expected * $k / ($o{kills} + 1));
		$node->poll_query_until('postgres',
			"SELECT count(*) >= $at FROM trading.order_requests WHERE strategy LIKE 'c%'")
		  or diag("kill $k: only fewer than $at requests so far");
		my $pid;
		if ($o{kill} eq 'sender')
		{
			$pid = sender_pid($node);
		}
		else
		{
			# a client backend that is sure to be alive when the signal
			# arrives (the order clients' backends come and go in
			# milliseconds): a session of our own, asleep
			my $sleeper = IPC::Run::start([ 'psql', '-X', '-q', '-d', $connstr,
				'-c', "SELECT pg_sleep(600) /* crash $k */" ],
				'>', '/dev/null', '2>', '/dev/null');
			$node->poll_query_until('postgres',
				"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600) /* crash $k */%'")
			  or diag("kill $k: the sleeping session did not start");
			$pid = $node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600) /* crash $k */%'");
			push @h, $sleeper;
		}
		if ($pid)
		{
			my $hit = kill 'KILL', $pid;
			note("kill $k: SIGKILL to $o{kill} $pid" . ($hit ? '' : ' (already gone)'));
		}
		# the postmaster restarts everything; wait for the sender again
		$node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading order sender'"
			. ($pid ? " AND pid <> $pid" : ''));
	}
	$_->finish for @h;
	$b->admin(POST => '/admin/faults', reset => 1);
	return $node->safe_psql('postgres', "SELECT count(*) FROM trading.order_requests WHERE strategy LIKE 'c%'");
}

# The acceptance test of t/052 and t/053 (see there); %o: kill => 'sender'
# or 'backend', kills => default number of kills.
sub exactly_once_test
{
	my (%o) = @_;
	my $n = $ENV{TRADING_ORDERS_N} // 200;
	my $clients = $ENV{TRADING_ORDERS_CLIENTS} // 8;
	my $kills = $ENV{TRADING_ORDERS_KILLS} // $o{kills};
	my $timeout = $ENV{TRADING_ORDERS_TIMEOUT} // 180;
	my $kill = $o{kill};

	my ($node, $b) = setup('exactly_once',
		conf => "restart_after_crash = on\ntrading.order_market_validity = '10min'\n");
	fast_limits($node, 100);

	my $t0 = time;
	my $total = exactly_once_run($node, $b, orders => $n, clients => $clients,
		drop => 0.2, late => 0.1, kills => $kills, kill => $kill);
	note("$total requests from $clients clients with $kills kills of the $kill in " . (time - $t0) . " s");
	cmp_ok($total, '>=', $n - $clients * $kills, 'the clients placed (nearly) all their orders');
	ok(wait_final($node, $timeout), 'every request reached a final state');
	note($node->safe_psql('postgres',
		"SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM trading.order_requests GROUP BY 1 ORDER BY 1) s"));
	my $stats = $b->stats;
	note("broker: accept_drop $stats->{injected}{accept_drop}, accept_late $stats->{injected}{accept_late}")
	  if $stats->{injected};
	cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM trading.order_requests WHERE state_reason LIKE 'found at the broker by its tag%'"),
		'>', 0, 'some requests were settled by their tag after an ambiguous reply');
	like(slurp_file($node->logfile), qr/left in flight by a previous run are now unknown|terminated by signal 9/,
		'the kills happened');
	is(join("\n", audit($node, $b)), '',
		'the broker holds exactly one order per placed tag, none for any other request');
	is($node->safe_psql('postgres', "SELECT max(attempts) FROM trading.order_requests WHERE state IN ('placed','unknown','failed')"),
		'1', 'no request that may have reached the broker was sent twice');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM trading.adopted_orders'), '0', 'nothing to adopt');
}

1;

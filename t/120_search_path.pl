# The workers' SQL is immune to search_path (issue 13, item 1).  A hostile
# role plants trap functions and operators in public with the signatures
# the C code's SQL would resolve (array_to_string, unnest, make_interval,
# now, pg_stat_get_activity, "*", "=", "<", ...), and the database's
# default search_path is set to public, pg_catalog.  Then the broker worker
# polls the paper broker, the correlation writer stores events and does its
# maintenance, the rate limits are synchronised and the key check runs: no
# trap is ever called by a worker.  A control shows that the traps do fire
# for a session that resolves names through that search_path.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $b = PaperBroker->start(args => [ '--cash', 1000000 ]);
# retention deletes old operations (history archiving would move them)
my $node = WorkerTest::node('search_path', $b, conf => "trading.history_retention = 0\n");

# our own sessions pin their path (a client option ranks above the
# database's setting), so that only the code under test can reach a trap
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,pg_temp';

sub sq
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# a session that uses the database's default search_path
sub hostile_psql
{
	my ($sql) = @_;
	local $ENV{PGOPTIONS} = '';
	return $node->safe_psql('postgres', $sql);
}

sub hits
{
	my ($who) = @_;
	return sq("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.trap_${who}_hits");
}

# a session key, so the key check worker has a registered version to check
sq(qq{SET ROLE regress_admin;
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
	RESET ROLE;
	INSERT INTO trading.watchlist (instrument, mode) VALUES
		('NSE:INFY', 'full'), ('NSE:SBIN', 'ltp');});

# ---- the traps --------------------------------------------------------------
sq(q{CREATE ROLE regress_hostile LOGIN;
	GRANT CREATE ON SCHEMA public TO regress_hostile;});
my @traps = (
	# name, arguments, result, body returning the real thing
	[ 'array_to_string', 'text[], text', 'text', 'pg_catalog.array_to_string($1, $2)' ],
	[ 'make_interval', 'secs integer', 'interval', 'pg_catalog.make_interval(secs => $1)' ],
	[ 'now', '', 'timestamptz', 'pg_catalog.now()' ],
	[ 'clock_timestamp', '', 'timestamptz', 'pg_catalog.clock_timestamp()' ],
	[ 'to_regclass', 'text', 'regclass', 'pg_catalog.to_regclass($1)' ],
);
my @ops = (
	# operator, left, right, result
	[ '=', 'integer', 'integer', 'boolean' ],
	[ '<>', 'integer', 'integer', 'boolean' ],
	[ '=', 'text', 'text', 'boolean' ],
	[ '=', 'uuid', 'uuid', 'boolean' ],
	[ '<', 'timestamptz', 'timestamptz', 'boolean' ],
	[ '>=', 'timestamptz', 'timestamptz', 'boolean' ],
	[ '-', 'timestamptz', 'interval', 'timestamptz' ],
	[ '*', 'numeric', 'integer', 'numeric' ],
	[ '*', 'bigint', 'bigint', 'bigint' ],
	[ '||', 'text', 'text', 'text' ],
);
my $ddl = q{
SET ROLE regress_hostile;
CREATE SEQUENCE public.trap_worker_hits;
CREATE SEQUENCE public.trap_client_hits;
CREATE FUNCTION public._trap(what text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	who text := (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid());
BEGIN
	IF who = 'client backend' THEN
		PERFORM nextval('public.trap_client_hits');
	ELSE
		PERFORM nextval('public.trap_worker_hits');
	END IF;
	RAISE WARNING 'TRAP % called by %', what, who;
END $$;
GRANT USAGE ON SEQUENCE public.trap_worker_hits, public.trap_client_hits TO PUBLIC;
CREATE FUNCTION public.unnest(anyarray) RETURNS SETOF anyelement
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public._trap('unnest');
	RETURN QUERY SELECT * FROM pg_catalog.unnest($1);
END $$;
CREATE FUNCTION public.pg_stat_get_activity(integer) RETURNS TABLE (pid integer)
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public._trap('pg_stat_get_activity');
	RETURN QUERY SELECT a.pid FROM pg_catalog.pg_stat_get_activity($1) a;
END $$;
};
for my $t (@traps)
{
	my ($name, $args, $res, $body) = @$t;
	$ddl .= qq{CREATE FUNCTION public.$name($args) RETURNS $res LANGUAGE plpgsql AS \$\$
BEGIN PERFORM public._trap('$name'); RETURN $body; END \$\$;
};
}
my $i = 0;
for my $o (@ops)
{
	my ($op, $l, $r, $res) = @$o;
	$i++;
	$ddl .= qq{CREATE FUNCTION public.trap_op_$i($l, $r) RETURNS $res LANGUAGE plpgsql AS \$\$
BEGIN PERFORM public._trap('$op($l, $r)'); RETURN \$1 OPERATOR(pg_catalog.$op) \$2; END \$\$;
CREATE OPERATOR public.$op (LEFTARG = $l, RIGHTARG = $r, FUNCTION = public.trap_op_$i);
};
}
$ddl .= "RESET ROLE;\nALTER DATABASE postgres SET search_path = public, pg_catalog;\n";
sq($ddl);

# control: a session that resolves names through the database's default
# search_path calls the traps
my $before = hits('client');
is(hostile_psql(
	q{SELECT array_to_string(ARRAY['a', 'b'], ',') || now()::text IS NOT NULL}),
	't', 'control: an unqualified query still gets its answer');
cmp_ok(hits('client'), '>=', $before + 3,
	'control: ... through the traps (array_to_string, ||, now)');
is(hits('worker'), 0, 'no worker has called a trap yet');

# ---- every worker starts under the hostile defaults ------------------------
# (the key check, the writer's first transactions and the broker worker's
# first rate limit sync all run at start)
my $logpos = -s $node->logfile;
$node->restart;
ok($node->wait_for_log(qr/server key verified: 1 version\(s\) match/, $logpos),
	'the key check worker ran');

# the broker worker polls: an order placed at the broker reaches the table
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1500);
my $buy = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 3);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM trading.orders WHERE order_id = '$buy'"),
	'the broker worker stored an order it polled');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM trading.quotes"),
	'and the quotes of the watchlist');

# the writer stores events (batched upserts)
my $op = sq(q{SELECT trading.correlation_begin('search_path.test')});
sq(qq{SELECT trading.correlation_end('$op'); SELECT trading.correlation_flush()});
is(sq(qq{SELECT status FROM trading.operations WHERE id = '$op'}), 'ok',
	'the correlation writer stored an operation');

# the writer's maintenance: an orphan (backend gone) is closed and an
# operation older than the retention is deleted; a reload runs it now
sq(q{INSERT INTO trading.operations (id, operation, started_at, backend_pid, username)
	VALUES ('00000000-0000-4000-8000-000000000001', 'orphan', now(), 2147483000, 'x'),
	       ('00000000-0000-4000-8000-000000000002', 'old', now() - interval '30 days', 1, 'x')});
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT (SELECT status FROM trading.operations WHERE operation = 'orphan') = 'abandoned'
	   AND NOT EXISTS (SELECT FROM trading.operations WHERE operation = 'old')}),
	'the correlation writer closed the orphan and applied the retention');

# a rate limit change: the worker synchronises its shared state
sq(q{SELECT trading.rate_limit_set('kite.quote', 2, '1 second')});
ok($node->poll_query_until('postgres', q{SELECT granted_total > 0 FROM trading.rate_limit_status
	WHERE endpoint = 'kite.quote' AND requests = 2}),
	'the worker polls under the new limit');
my $polled = sq(q{SELECT sum(requests_total) FROM trading.worker_status});
ok($node->poll_query_until('postgres', qq{SELECT sum(requests_total) > $polled + 5 FROM trading.worker_status}),
	'the worker keeps polling');

is(hits('worker'), 0, 'no worker called a trap');
unlike(slurp_file($node->logfile), qr/WARNING:  TRAP .* called by (?!client backend)/,
	'no trap call by a worker in the log');

# ---- SQL the C code runs in a session is qualified too --------------------
$before = hits('client');
hostile_psql(qq{
	SELECT trading.correlation_end(trading.correlation_begin('search_path.client'));
	SELECT trading.correlation_flush();
	SELECT trading.archive_create('search_path', 'SELECT 1');
	SELECT trading.archive_verify('search_path');
});
is(hits('client'), $before,
	'correlation and archive functions resolve nothing through the session search_path');
$before = hits('client');
hostile_psql(q{SELECT trading.rate_limit_set('kite.quote', 1, '1 second')});
is(hits('client'), $before, 'rate_limit_set resolves nothing through the session search_path');

$node->stop;
$b->stop;
done_testing();

# Broker worker and the server's life: kill -9 of the worker and of another
# child of the postmaster (crash restart), an immediate shutdown, then
# recovery with the tables consistent and polling resumed; a database that
# does not exist yet (the worker waits quietly); and on a streaming standby
# the worker does not poll (its broker sees no request) until promotion,
# after which it does.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;
use PaperBroker;
use WorkerTest;

my $b = PaperBroker->start;
my $node = WorkerTest::node('primary', $b, conf => "wal_level = replica\nmax_wal_senders = 4\nrestart_after_crash = on\n");
$node->safe_psql('postgres', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
	INSERT INTO trading.watchlist VALUES ('NSE:INFY', 'ltp');
});
$b->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 1000);

sub worker_pid
{
	my ($n) = @_;
	return $n->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'trading broker worker'");
}

sub order_seen
{
	my ($n, $oid, $status) = @_;
	return $n->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM trading.orders WHERE order_id = '$oid' AND status = '$status'");
}

my $id = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 1);
ok(order_seen($node, $id, 'COMPLETE'), 'polling: the order is in the table');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trading broker worker'"),
	'1', 'one worker, with its own backend type');

# ---- kill -9 of the worker: crash restart, then polling resumes ----
my $pid = worker_pid($node);
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading broker worker' AND pid <> $pid"),
	'after kill -9 of the worker the postmaster restarts it');
$id = $b->place(tradingsymbol => 'INFY', transaction_type => 'SELL', quantity => 1);
ok(order_seen($node, $id, 'COMPLETE'), 'after the crash restart the worker polls again with the stored session');
like(slurp_file($node->logfile), qr/trading broker worker.*was terminated by signal 9/,
	'the crash was the worker\'s');

# ---- kill -9 of another child of the postmaster ----
my $victim = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
$pid = worker_pid($node);
kill 'KILL', $victim;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading broker worker' AND pid <> $pid"),
	'after kill -9 of the checkpointer the worker is restarted with everything else');
$id = $b->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 2);
ok(order_seen($node, $id, 'COMPLETE'), 'and polls again');

# ---- immediate shutdown and start ----
$node->stop('immediate');
$id = $b->place(tradingsymbol => 'INFY', transaction_type => 'SELL', quantity => 2);
$node->start;
ok(order_seen($node, $id, 'COMPLETE'), 'after an immediate shutdown and crash recovery it polls again');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM trading.orders WHERE status = 'COMPLETE'"),
	scalar(@{ $b->api(GET => '/orders')->{json}{data} }), 'no order lost or duplicated');

# ---- streaming standby: no polling until promotion ----
my $b2 = PaperBroker->start(args => [ '--seed', 2 ]);
$node->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'bk', has_streaming => 1);
$standby->append_conf('postgresql.conf', "trading.broker_url = '" . $b2->url . "'\n");
$standby->start;
$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
sleep 3;
is($standby->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trading broker worker'"),
	'0', 'no worker on the standby');
is($standby->safe_psql('postgres',
	"SELECT string_agg(DISTINCT worker_state, ',') FROM trading.worker_status"),
	'not_running', 'the standby\'s worker_status says not_running');
is($b2->stats->{requests}, 0, 'the standby\'s broker received no request');
my $seen = $standby->safe_psql('postgres', "SELECT count(*) FROM trading.orders");
is($seen, $node->safe_psql('postgres', "SELECT count(*) FROM trading.orders"),
	'the standby has the replicated orders');

$node->stop;
$standby->promote;
ok($standby->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading broker worker'"),
	'after promotion the worker starts');
$b2->admin(POST => '/admin/price', instrument => 'NSE:INFY', price => 2000);
my $id2 = $b2->place(tradingsymbol => 'INFY', transaction_type => 'BUY', quantity => 5);
ok(order_seen($standby, $id2, 'COMPLETE'), 'the promoted server polls its broker');
ok($b2->stats->{requests} > 0, 'the broker now sees requests');
$standby->stop;

# ---- the database does not exist yet: the worker waits quietly ----
my $late = TradingTest::node('late', create_extension => 0,
	conf => "trading.database = 'desk'\ntrading.key_command = '" . WorkerTest::key_command() . "'\n"
	  . "trading.broker_url = '" . $b->url . "'\n");
sleep 6;
my $log = slurp_file($late->logfile);
my $fatals = () = $log =~ /background worker "trading broker worker" \(PID \d+\) exited with exit code 1/g;
is($fatals, 1, 'a missing database costs the worker one failed connection, no crash loop');
like($log, qr/waiting for database "desk" to be created/, 'and one log line saying it waits');
my $cfatals = () = $log =~ /background worker "trading correlation writer" \(PID \d+\) exited with exit code 1/g;
is($cfatals, 1, 'the correlation writer too: one failed connection, no crash loop');
my $cwaits = () = $log =~ /trading correlation writer waiting for database "desk" to be created/g;
is($cwaits, 1, 'and one log line saying it waits');
$late->safe_psql('postgres', 'CREATE DATABASE desk');
ok($late->poll_query_until('desk',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading broker worker' AND datname = 'desk'"),
	'once the database exists the worker connects to it');
ok($late->poll_query_until('desk',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading correlation writer' AND datname = 'desk'"),
	'and so does the correlation writer');
$log = slurp_file($late->logfile);
like($log, qr/waiting for CREATE EXTENSION trading in database "desk"/,
	'then waits for the extension, saying so once');
$late->safe_psql('desk', 'CREATE EXTENSION trading');
$late->safe_psql('desk', qq{
	SELECT trading.set_broker_session('$PaperBroker::API_KEY', '$PaperBroker::TOKEN');
});
ok($late->poll_query_until('desk',
	"SELECT bool_and(last_success IS NOT NULL) FROM trading.worker_status WHERE endpoint <> 'quotes'"),
	'and polls once the extension and a session exist');
$log = slurp_file($late->logfile);
my $waits = () = $log =~ /waiting for CREATE EXTENSION/g;
is($waits, 1, 'the wait for the extension was logged once');
$late->stop;

$b->stop;
$b2->stop;
done_testing();

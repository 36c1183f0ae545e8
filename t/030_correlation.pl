# Correlation tracking against a real server: ids in the server log,
# backends that exit or are SIGKILLed mid-operation, the writer's restart
# and its wait for the extension, 8 concurrent clients (every event stored
# exactly once; with a tiny queue, dropped == missing), retention, the end
# of a stored operation while the writer is held back, and a hot standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TradingTest;

my $node = TradingTest::node('corr', create_extension => 0,
	init => { allows_streaming => 1 }, conf => qq{
restart_after_crash = on
trading.correlation_writer_delay = 50ms
# without history archives, old operations are deleted (t/111_history.pl
# covers the archives)
trading.history_retention = 0
});

# ---- the writer waits quietly until the extension exists ----------------
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading correlation writer'")
  or die 'writer did not start';
sleep 1;
$node->safe_psql('postgres', 'CREATE EXTENSION trading');
my $log = slurp_file($node->logfile);
my $waits = () = $log =~ /correlation writer is waiting for extension "trading"/g;
is($waits, 1, 'the writer logs its wait for the extension once');
$node->safe_psql('postgres', 'SELECT trading.correlation_end(trading.correlation_begin(\'first\'))');
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
is($node->safe_psql('postgres', "SELECT status FROM trading.operations WHERE operation = 'first'"),
	'ok', 'the writer stores events once the extension exists');

# ---- every server log line carries the innermost open id -----------------
my $id = $node->safe_psql('postgres', q{
BEGIN;
SELECT trading.correlation_begin('logged_op');
DO $$BEGIN RAISE LOG 'corr-marker-on'; END$$;
SET LOCAL trading.correlation_log_ids = off;
DO $$BEGIN RAISE LOG 'corr-marker-off'; END$$;
COMMIT;
DO $$BEGIN RAISE LOG 'corr-marker-after'; END$$;
});
like($id, qr/^[0-9a-f-]{36}$/, 'begin returned an id');
$log = slurp_file($node->logfile);
like($log, qr/LOG:  corr-marker-on \(correlation_id=\Q$id\E\)/, 'a log message carries the open id');
like($log, qr/statement: DO \$\$BEGIN RAISE LOG 'corr-marker-on'.*\(correlation_id=\Q$id\E\)/,
	'so does the statement log line');
like($log, qr/LOG:  corr-marker-off\n/, 'trading.correlation_log_ids = off leaves messages alone');
like($log, qr/LOG:  corr-marker-after\n/, 'no id once the transaction ended');

# ---- a backend terminated normally mid-operation -------------------------
my $bg = $node->background_psql('postgres');
my $out = $bg->query_safe(q{
BEGIN;
SELECT trading.correlation_begin('terminated_op') || ' ' || pg_backend_pid();
SELECT trading.correlation_flush();
});
my ($term_id, $term_pid) = split ' ', (split /\n/, $out)[0];
$node->safe_psql('postgres', "SELECT pg_terminate_backend($term_pid)");
$bg->{run}->kill_kill;
$node->poll_query_until('postgres',
	"SELECT status = 'abandoned' FROM trading.operations WHERE id = '$term_id'")
  or die 'terminated backend not closed';
is($node->safe_psql('postgres', "SELECT error FROM trading.operations WHERE id = '$term_id'"),
	'the backend exited while the operation was open',
	'a terminated backend closes its open operations as abandoned');

# ---- a backend killed with SIGKILL mid-operation (crash-restart) ---------
$bg = $node->background_psql('postgres', on_error_stop => 0);
$out = $bg->query_safe(q{
BEGIN;
SELECT trading.correlation_begin('killed_op') || ' ' || pg_backend_pid();
SELECT trading.correlation_flush();
});
my ($kill_id, $kill_pid) = split ' ', (split /\n/, $out)[0];
is($node->safe_psql('postgres', "SELECT status FROM trading.operations WHERE id = '$kill_id'"),
	'open', 'the operation is recorded as open before the kill');
kill 'KILL', $kill_pid;
$bg->{run}->kill_kill;
$node->poll_query_until('postgres', "SELECT pg_is_in_recovery() = false", 't')
  or die 'no restart';
$node->poll_query_until('postgres',
	"SELECT status = 'abandoned' FROM trading.operations WHERE id = '$kill_id'")
  or die 'killed backend not closed';
is($node->safe_psql('postgres', "SELECT error FROM trading.operations WHERE id = '$kill_id'"),
	'the server restarted while the operation was open',
	'after a crash-restart the writer closes what the dead backend left open');

# ---- the writer restarts after it is terminated ---------------------------
my $wpid = $node->safe_psql('postgres', 'SELECT writer_pid FROM trading.correlation_stats');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
$node->poll_query_until('postgres',
	"SELECT writer_pid IS NOT NULL AND writer_pid <> $wpid FROM trading.correlation_stats")
  or die 'writer did not come back';
$node->safe_psql('postgres', q{SELECT trading.correlation_end(trading.correlation_begin('after_writer_restart'))});
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.operations WHERE operation = 'after_writer_restart'"),
	'1', 'a restarted writer stores events');

# ---- 8 concurrent clients, a third of them rolled back --------------------
my $dir = PostgreSQL::Test::Utils::tempdir;
my $commit_script = "$dir/commit.sql";
my $rollback_script = "$dir/rollback.sql";
sub write_scripts
{
	my ($tag) = @_;
	open my $fh, '>', $commit_script or die $!;
	print $fh "BEGIN;\nSELECT trading.correlation_begin('${tag}_commit', attributes => '{\"client\": :client_id}');\nSELECT trading.correlation_end();\nCOMMIT;\n";
	close $fh;
	open $fh, '>', $rollback_script or die $!;
	print $fh "BEGIN;\nSELECT trading.correlation_begin('${tag}_rollback');\nSELECT trading.correlation_end(status => 'undone');\nROLLBACK;\n";
	close $fh;
}

my $per_client = 300;
write_scripts('pgb');
my $s0 = $node->safe_psql('postgres',
	'SELECT enqueued_total, dropped_total FROM trading.correlation_stats');
$node->command_ok([ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', $per_client,
	'-f', "$commit_script\@2", '-f', "$rollback_script\@1", 'postgres' ], 'pgbench, 8 clients');
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
my $ops = 8 * $per_client;
my $row = $node->safe_psql('postgres', q{
SELECT count(*), count(DISTINCT id), count(begin_seq), count(end_seq),
       count(*) FILTER (WHERE operation = 'pgb_rollback' AND status = 'undone'),
       count(*) FILTER (WHERE operation = 'pgb_commit' AND status = 'ok')
FROM trading.operations WHERE operation LIKE 'pgb\_%'});
my ($n, $distinct, $begins, $ends, $rolled, $committed) = split /\|/, $row;
is($n, $ops, 'one row per operation, none missing, none twice');
is($begins, $ops, 'every begin event stored');
is($ends, $ops, 'every end event stored');
ok($rolled > $ops / 5 && $committed > $ops / 2,
	"rolled-back ($rolled) and committed ($committed) operations are both recorded");
is($rolled + $committed, $ops, 'with the status each was ended with');
my $s1 = $node->safe_psql('postgres',
	'SELECT enqueued_total, dropped_total FROM trading.correlation_stats');
my ($e0, $d0) = split /\|/, $s0;
my ($e1, $d1) = split /\|/, $s1;
is($d1 - $d0, 0, 'nothing dropped with a large queue');
is($e1 - $e0, 2 * $ops, 'two events per operation were enqueued');

# ---- a tiny queue: dropped events are exactly the missing ones ------------
$node->append_conf('postgresql.conf', "trading.correlation_queue_size = 32kB\n");
$node->restart;
is($node->safe_psql('postgres', 'SELECT queue_capacity FROM trading.correlation_stats'),
	'32768', 'the queue has the configured size');
$s0 = $node->safe_psql('postgres', 'SELECT dropped_total FROM trading.correlation_stats');
# hold the writer back so the queue overflows
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE trading.operations IN EXCLUSIVE MODE;');
write_scripts('tiny');
$per_client = 100;
$node->command_ok([ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', $per_client,
	'-f', "$commit_script\@2", '-f', "$rollback_script\@1", 'postgres' ], 'pgbench against a full queue');
$locker->query_safe('COMMIT;');
$locker->quit;
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
$ops = 8 * $per_client;
$row = $node->safe_psql('postgres', q{
SELECT count(begin_seq) + count(end_seq), count(*) - count(DISTINCT id)
FROM trading.operations WHERE operation LIKE 'tiny\_%'});
my ($stored, $dups) = split /\|/, $row;
my $dropped = $node->safe_psql('postgres', 'SELECT dropped_total FROM trading.correlation_stats') - $s0;
ok($dropped > 0, "the tiny queue dropped events ($dropped)");
is($dropped, 2 * $ops - $stored, 'dropped count equals the events missing from the table');
is($dups, '0', 'no duplicates');

# ---- retention -------------------------------------------------------------
$node->safe_psql('postgres', q{
INSERT INTO trading.operations (id, operation, status, started_at, ended_at)
VALUES (gen_random_uuid(), 'ancient', 'ok', now() - interval '8 days', now() - interval '8 days'),
       (gen_random_uuid(), 'recent', 'ok', now() - interval '6 days', now() - interval '6 days')});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM trading.operations WHERE operation = 'ancient'")
  or die 'retention did not delete';
is($node->safe_psql('postgres', "SELECT count(*) FROM trading.operations WHERE operation = 'recent'"),
	'1', 'rows older than the 7-day retention are deleted, newer ones kept');

# ---- ending a stored operation does not wait for a held-back writer -------
# (issue 13: correlation_end of another transaction's id flushed first and
# so waited up to 30 s for a slow writer; now it flushes only when the row
# is not stored yet)
my $stored_id = $node->safe_psql('postgres', "SELECT trading.correlation_begin('stored_before')");
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; LOCK TABLE trading.operations IN EXCLUSIVE MODE;');
$node->safe_psql('postgres',
	"SELECT trading.correlation_end(trading.correlation_begin('queued_behind_lock'))");
my ($eret, $eout, $eerr) = $node->psql('postgres',
	"SET statement_timeout = '20s'; SELECT trading.correlation_end('$stored_id', 'late') IS NOT NULL");
is($eout, 't', 'correlation_end of a stored operation returns while the writer is held back');
$holder->query_safe('COMMIT;');
$holder->quit;
$node->safe_psql('postgres', 'SELECT trading.correlation_flush()');
is($node->safe_psql('postgres', "SELECT status FROM trading.operations WHERE id = '$stored_id'"),
	'late', 'and its end is stored once the writer goes on');

# ---- a hot standby: the writer waits for promotion -------------------------
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('corr_standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$standby->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'trading correlation writer'")
  or die 'no writer on the standby';
ok($standby->wait_for_log(qr/correlation writer is waiting for the end of recovery/),
	'on a standby the writer waits for promotion');
my ($ret, $sout, $serr) = $standby->psql('postgres', 'SELECT trading.correlation_flush()');
like($serr, qr/correlation tracking is not possible on a standby server/, 'flush on a standby is a clear error');
($ret, $sout, $serr) = $standby->psql('postgres', "SELECT trading.correlation_begin('on_standby')");
like($serr, qr/correlation tracking is not possible on a standby server/,
	'so is begin: nothing is queued where it could not be stored');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
$standby->safe_psql('postgres', q{SELECT trading.correlation_end(trading.correlation_begin('after_promotion'))});
$standby->safe_psql('postgres', 'SELECT trading.correlation_flush()');
is($standby->safe_psql('postgres', "SELECT status FROM trading.operations WHERE operation = 'after_promotion'"),
	'ok', 'after promotion the writer stores events');
$standby->stop;

$node->stop;
done_testing();

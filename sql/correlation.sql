-- Correlation tracking: chains, rollback survival, transaction scope,
-- ending elsewhere, bad input, bad events, privileges.  Ids are random, so
-- they are kept in psql variables (\gset) and never printed.
\set VERBOSITY terse
SET trading.correlation_log_ids = off;
SELECT current_user AS superuser \gset

-- A chain three levels deep with errors; parents default to the innermost
-- open operation.
BEGIN;
SELECT trading.correlation_begin('place_order', attributes => '{"symbol": "INFY", "qty": 10}') AS root \gset
SELECT trading.current_correlation_id() = :'root' AS root_is_current;
SELECT trading.correlation_begin('risk_check') AS child \gset
SELECT trading.correlation_begin('kite_call', attributes => '{"endpoint": "orders"}') AS grandchild \gset
SELECT trading.current_correlation_id() = :'grandchild' AS grandchild_is_current;
SELECT trading.correlation_end(status => 'error', error => 'HTTP 429: too many requests') >= interval '0' AS ended;
SELECT trading.current_correlation_id() = :'child' AS child_is_current;
SELECT trading.correlation_end() >= interval '0' AS ended;
SELECT trading.correlation_end(:'root', 'rejected', 'margin check failed') >= interval '0' AS ended;
SELECT trading.current_correlation_id() IS NULL AS nothing_open;
COMMIT;
SELECT trading.correlation_flush();
SELECT depth, operation, status, error, attributes,
       backend_pid = pg_backend_pid() AS my_pid, username = current_user AS my_user,
       duration >= interval '0' AS has_duration, parent_id IS NULL AS is_root
FROM trading.operation_chain(:'grandchild');
-- Any member of the tree gives the whole tree.
SELECT count(*) FROM trading.operation_chain(:'root');
SELECT (SELECT parent_id FROM trading.operations WHERE id = :'grandchild') = :'child' AS grandchild_parent,
       (SELECT parent_id FROM trading.operations WHERE id = :'child') = :'root' AS child_parent;
-- Events are numbered in the order they happened.
SELECT array_agg(operation || ':' || kind ORDER BY seq) AS event_order
FROM (SELECT operation, 'begin' AS kind, begin_seq AS seq FROM trading.operations WHERE id IN (:'root', :'child', :'grandchild')
      UNION ALL
      SELECT operation, 'end', end_seq FROM trading.operations WHERE id IN (:'root', :'child', :'grandchild')) e;

-- An explicit parent from an earlier transaction joins that tree.
SELECT trading.correlation_end(trading.correlation_begin('amend_order', :'root')) >= interval '0' AS ended;
SELECT trading.correlation_flush();
SELECT depth, operation FROM trading.operation_chain(:'root');

-- Operations of a rolled-back transaction are recorded: the ended one with
-- its status, the one still open as "aborted".
BEGIN;
SELECT trading.correlation_begin('doomed_but_ended') AS rb1 \gset
SELECT trading.correlation_end(status => 'ok') >= interval '0' AS ended;
SELECT trading.correlation_begin('doomed_open') AS rb2 \gset
SELECT 1 / 0;  -- the transaction fails
ROLLBACK;
SELECT trading.current_correlation_id() IS NULL AS nothing_leaks;
SELECT trading.correlation_flush();
SELECT operation, status, error, auto_ended, ended_at IS NOT NULL AS ended
FROM trading.operations WHERE id IN (:'rb1', :'rb2') ORDER BY operation;

-- Open at commit: ended as "abandoned"; the next transaction starts clean.
BEGIN;
SELECT trading.correlation_begin('forgotten') AS forgotten \gset
COMMIT;
SELECT trading.current_correlation_id() IS NULL AS nothing_leaks;
SELECT trading.correlation_flush();
SELECT operation, status, error, auto_ended FROM trading.operations WHERE id = :'forgotten';

-- Savepoints: what a rolled-back savepoint began is "aborted"; what a
-- released one began stays open in the parent.
BEGIN;
SELECT trading.correlation_begin('outer') AS outer_id \gset
SAVEPOINT s1;
SELECT trading.correlation_begin('inside_rolled_back') AS inner1 \gset
ROLLBACK TO SAVEPOINT s1;
SELECT trading.current_correlation_id() = :'outer_id' AS outer_is_current;
SAVEPOINT s2;
SELECT trading.correlation_begin('inside_released') AS inner2 \gset
RELEASE SAVEPOINT s2;
SELECT trading.current_correlation_id() = :'inner2' AS released_is_current;
SELECT trading.correlation_end() >= interval '0' AS ended;
SELECT trading.correlation_end() >= interval '0' AS ended;
COMMIT;
SELECT trading.correlation_flush();
SELECT depth, operation, status FROM trading.operation_chain(:'outer_id');

-- Ending an operation begun in another transaction (or session, as
-- through PgBouncer): the user's end replaces the automatic one.  Only the
-- role that began it (or trading_admin) may end it: another analyst's end
-- (regress_trading_analyst2, from 00_setup) is refused and leaves the
-- owner's end to count.
\c - regress_trading_analyst
SELECT trading.correlation_begin('pooled_request') AS pooled \gset
SELECT trading.correlation_begin('ended_by_admin') AS by_admin \gset
SELECT trading.correlation_flush();
\c - regress_trading_analyst2
SET trading.correlation_log_ids = off;
\set VERBOSITY sqlstate
SELECT trading.correlation_end(:'pooled', 'hijacked');
SELECT trading.correlation_end(:'by_admin', 'hijacked');
\c - regress_trading_admin
SET trading.correlation_log_ids = off;
SELECT trading.correlation_end(:'by_admin', 'closed_by_admin') >= interval '0' AS admin_may_end;
\c - regress_trading_analyst
SET trading.correlation_log_ids = off;
\set VERBOSITY terse
SELECT trading.correlation_end(:'pooled', 'filled') >= interval '0' AS ended_elsewhere;
SELECT trading.correlation_flush();
-- (through PgBouncer both sessions of one role may share a server
-- connection, so the backends are not compared here)
SELECT operation, status, error, auto_ended
FROM trading.operations WHERE id IN (:'pooled', :'by_admin') ORDER BY operation;
-- Once ended by a user it cannot be ended again (the message names the id).
\set VERBOSITY sqlstate
SELECT trading.correlation_end(:'pooled');
\set VERBOSITY terse
-- An unknown id is an error.
SELECT trading.correlation_end('00000000-0000-4000-8000-000000000000');
-- Nothing open here.
SELECT trading.correlation_end();
\c - :superuser
SET trading.correlation_log_ids = off;
\set VERBOSITY terse

-- Bad input: NULLs, empty and oversized values, each with its SQLSTATE.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT q AS call, pg_temp.err('SELECT trading.' || q) AS result FROM (VALUES
    ($q$correlation_begin(NULL)$q$),
    ($q$correlation_begin('')$q$),
    ($q$correlation_begin(repeat('x', 201))$q$),
    ($q$correlation_begin('x', attributes => NULL)$q$),
    ($q$correlation_begin('x', attributes => '[1, 2]')$q$),
    ($q$correlation_begin('x', attributes => '"scalar"')$q$),
    ($q$correlation_begin('x', attributes => jsonb_build_object('k', repeat('v', 9000)))$q$),
    ($q$correlation_end(status => NULL)$q$),
    ($q$correlation_end(status => '')$q$),
    ($q$correlation_end(status => repeat('s', 65))$q$),
    ($q$correlation_end(error => repeat('e', 2001))$q$),
    ($q$correlation_end(error => '')$q$),
    ($q$correlation_end()$q$),
    ($q$correlation_end('00000000-0000-4000-8000-000000000000')$q$),
    ($q$correlation_flush(NULL)$q$),
    ($q$correlation_flush('-1 second')$q$),
    ($q$correlation_flush('2 days')$q$),
    ($q$operation_chain(NULL)$q$)) AS v(q);
SELECT count(*) FROM trading.operation_chain('00000000-0000-4000-8000-000000000000');
-- The bounds themselves are accepted (multibyte text counts bytes).
BEGIN;
SELECT trading.correlation_begin(repeat('é', 100), attributes => jsonb_build_object('k', repeat('v', 8000))) AS big \gset
SELECT trading.correlation_end(status => repeat('s', 64), error => repeat('e', 2000)) >= interval '0' AS ended;
COMMIT;
SELECT trading.correlation_flush();
SELECT length(operation), length(status), length(error), length(attributes->>'k')
FROM trading.operations WHERE id = :'big';
-- A bad end leaves the open operation to be closed by the rollback.
BEGIN;
SELECT trading.correlation_begin('survives_bad_end') AS sbe \gset
SELECT trading.correlation_end(status => NULL);
ROLLBACK;
SELECT trading.correlation_flush();
SELECT operation, status FROM trading.operations WHERE id = :'sbe';

-- Nesting is bounded.
BEGIN;
SELECT count(trading.correlation_begin('nested')) FROM generate_series(1, 1000);
SELECT trading.correlation_begin('one too many');
ROLLBACK;

-- Bad events (through the detached C API) are discarded and counted; the
-- writer carries on.  An end whose begin never arrived still makes a row.
SELECT discarded_total AS discarded0 FROM trading.correlation_stats \gset
SELECT trading._correlation_emit_begin('11111111-1111-4111-8111-111111111111', NULL, 'bad_json', '{not json');
SELECT trading._correlation_emit_begin('22222222-2222-4222-8222-222222222222', NULL, 'worker_op', '{"n": 1}');
SELECT trading._correlation_emit_end('22222222-2222-4222-8222-222222222222', 'ok', NULL);
SELECT trading._correlation_emit_end('33333333-3333-4333-8333-333333333333', 'error', 'begin was lost');
SELECT trading.correlation_flush();
SELECT discarded_total - :discarded0 AS discarded FROM trading.correlation_stats;
SELECT id, operation, status, error, started_at IS NULL AS no_start, duration IS NOT NULL AS has_duration
FROM trading.operations
WHERE id IN ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222',
             '33333333-3333-4333-8333-333333333333') ORDER BY id;

-- The statistics view.
SELECT queue_depth, queue_bytes, queue_capacity, dropped_total,
       enqueued_total = written_total + discarded_total AS all_consumed,
       writer_pid IS NOT NULL AS writer_running
FROM trading.correlation_stats;

-- Privileges: analysts track, readers read, others get nothing.
SET ROLE regress_trading_reader;
SELECT queue_depth FROM trading.correlation_stats;
SELECT count(*) > 0 AS can_read FROM trading.operations;
SELECT trading.correlation_begin('not allowed');
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT trading.correlation_begin('not allowed');
SELECT count(*) FROM trading.operations;
SELECT * FROM trading.correlation_stats;
SELECT trading._correlation_emit_begin(gen_random_uuid(), NULL, 'x', '{}');
RESET ROLE;
SET ROLE regress_trading_analyst;
SELECT trading._correlation_emit_begin(gen_random_uuid(), NULL, 'x', '{}');
BEGIN;
SELECT trading.correlation_begin('analyst_op') IS NOT NULL AS began;
SELECT trading.correlation_end() >= interval '0' AS ended;
COMMIT;
RESET ROLE;

-- Correlation tracking: every operation gets an id and a parent, and is
-- recorded even when the transaction that began it rolls back.  Begin and
-- end only enqueue events in shared memory; the "trading correlation
-- writer" background worker stores them here in its own transactions
-- (docs/CORRELATION.md).

CREATE TABLE @extschema@.operations (
    id              uuid        PRIMARY KEY,
    parent_id       uuid,
    operation       text,       -- NULL only when the begin event was lost
    status          text        NOT NULL DEFAULT 'open',
    started_at      timestamptz,
    ended_at        timestamptz,
    duration        interval    GENERATED ALWAYS AS (ended_at - started_at) STORED,
    error           text,
    attributes      jsonb       NOT NULL DEFAULT '{}',
    backend_pid     integer,    -- the process that began the operation
    username        text,       -- the role that began it
    end_backend_pid integer,    -- the process that ended it
    auto_ended      boolean     NOT NULL DEFAULT false,
    begin_seq       bigint,     -- queue sequence number of the stored begin event
    end_seq         bigint      -- ... and of the stored end event
);
-- Cheap to maintain on the writer's hot path: children only, a BRIN for
-- the time-ordered retention delete, and the (small) set of open rows.
CREATE INDEX operations_parent_idx ON @extschema@.operations (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX operations_started_idx ON @extschema@.operations USING brin (started_at);
CREATE INDEX operations_open_idx ON @extschema@.operations (started_at) WHERE ended_at IS NULL;
COMMENT ON TABLE @extschema@.operations IS
    'One row per tracked operation, written by the correlation writer; rows older than trading.correlation_retention are deleted';
COMMENT ON COLUMN @extschema@.operations.status IS
    'open while running; the status passed to correlation_end; abandoned or aborted when the extension closed it';
COMMENT ON COLUMN @extschema@.operations.auto_ended IS
    'the end was made by the extension (transaction end, backend exit, server restart), not by correlation_end';

CREATE FUNCTION @extschema@.correlation_begin(operation text, parent uuid DEFAULT NULL,
                                              attributes jsonb DEFAULT '{}')
    RETURNS uuid LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_begin';
COMMENT ON FUNCTION @extschema@.correlation_begin(text, uuid, jsonb) IS
    'Begin an operation (child of parent, or of the innermost open operation of this transaction); returns its id';

CREATE FUNCTION @extschema@.correlation_end(id uuid DEFAULT NULL, status text DEFAULT 'ok',
                                            error text DEFAULT NULL)
    RETURNS interval LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_end';
COMMENT ON FUNCTION @extschema@.correlation_end(uuid, text, text) IS
    'End operation id (default: the innermost open one); returns its duration';

CREATE FUNCTION @extschema@.current_correlation_id()
    RETURNS uuid LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_current_id';
COMMENT ON FUNCTION @extschema@.current_correlation_id() IS
    'The innermost open operation of this transaction, or NULL';

CREATE FUNCTION @extschema@.correlation_flush(timeout interval DEFAULT interval '30 seconds')
    RETURNS void LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_flush';
COMMENT ON FUNCTION @extschema@.correlation_flush(interval) IS
    'Wait until every correlation event queued so far is in trading.operations; SQLSTATE TR201 after timeout';

CREATE FUNCTION @extschema@.operation_chain(id uuid)
    RETURNS TABLE (depth integer, operation_id uuid, parent_id uuid, operation text, status text,
                   started_at timestamptz, ended_at timestamptz, duration interval,
                   error text, attributes jsonb, backend_pid integer, username text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    root uuid;
BEGIN
    IF operation_chain.id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = '22004';
    END IF;
    -- walk up to the root (bounded, in case parents form a cycle)
    WITH RECURSIVE up(id, parent_id, n) AS (
        SELECT o.id, o.parent_id, 0 FROM @extschema@.operations o
        WHERE o.id = operation_chain.id
      UNION ALL
        SELECT o.id, o.parent_id, up.n + 1
        FROM up JOIN @extschema@.operations o ON o.id = up.parent_id
        WHERE up.n < 1000
    )
    SELECT up.id INTO root FROM up ORDER BY up.n DESC LIMIT 1;
    IF root IS NULL THEN
        RETURN;
    END IF;
    -- and down the whole tree, depth-first, siblings in start order
    RETURN QUERY
    WITH RECURSIVE down AS (
        SELECT o.*, 0 AS d,
               ARRAY[coalesce(to_char(o.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'), '')
                     || o.id::text] AS path
        FROM @extschema@.operations o WHERE o.id = root
      UNION ALL
        SELECT o.*, down.d + 1,
               down.path || (coalesce(to_char(o.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'), '')
                             || o.id::text)
        FROM down JOIN @extschema@.operations o ON o.parent_id = down.id
        WHERE down.d < 1000 AND o.id <> root
    ) CYCLE id SET is_cycle USING cycle_path
    SELECT down.d, down.id, down.parent_id, down.operation, down.status,
           down.started_at, down.ended_at, down.duration, down.error,
           down.attributes, down.backend_pid, down.username
    FROM down WHERE NOT down.is_cycle
    ORDER BY down.path;
END
$fn$;
COMMENT ON FUNCTION @extschema@.operation_chain(uuid) IS
    'The whole tree of operations that contains id, root first (depth-first, siblings by start time)';

CREATE FUNCTION @extschema@._correlation_stats(
    OUT queue_depth bigint, OUT queue_bytes bigint, OUT queue_capacity bigint,
    OUT enqueued_total bigint, OUT dropped_total bigint, OUT written_total bigint,
    OUT discarded_total bigint, OUT writer_pid integer, OUT since timestamptz)
    RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_stats';

CREATE VIEW @extschema@.correlation_stats AS
    SELECT * FROM @extschema@._correlation_stats();
COMMENT ON VIEW @extschema@.correlation_stats IS
    'Correlation event queue: events waiting (queue_depth), bytes used of queue_capacity, and counters since "since" (server start or crash-restart)';

-- The detached C API (correlation.h), for superusers' tests and tools:
-- events are not validated beyond their size; the writer discards what it
-- cannot store.  Not granted to any role.
CREATE FUNCTION @extschema@._correlation_emit_begin(id uuid, parent uuid, operation text, attributes text)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_emit_begin_sql';
CREATE FUNCTION @extschema@._correlation_emit_end(id uuid, status text, error text)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_emit_end_sql';

GRANT SELECT ON @extschema@.operations TO trading_reader;
GRANT DELETE ON @extschema@.operations TO trading_admin;
GRANT SELECT ON @extschema@.correlation_stats TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._correlation_stats() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_begin(text, uuid, jsonb) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_end(uuid, text, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.current_correlation_id() TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_flush(interval) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.operation_chain(uuid) TO trading_analyst;

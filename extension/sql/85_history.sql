-- 1.1: trade history at rest (docs/ENCRYPTION.md, docs/OPERATIONS.md).
-- Orders, trades and correlation operations older than
-- trading.history_retention move from the live tables into encrypted
-- archives (trading.archives, server key), one batch per transaction: the
-- rows are locked, written into one archive and deleted in the same
-- transaction, so a batch is either archived whole or not at all.  The
-- correlation writer runs the batches on a schedule; an admin may run one
-- by hand.  trading.archive_rows(name) reads an archive back.

CREATE FUNCTION @extschema@.archive_history_batch(kind text, older_than interval,
                                                  batch_rows integer DEFAULT 5000)
    RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz;
    rows tid[];
    archive text;
    archived bigint;
    deleted bigint;
BEGIN
    IF kind IS NULL OR older_than IS NULL OR batch_rows IS NULL THEN
        RAISE EXCEPTION 'kind, older_than and batch_rows must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF kind NOT IN ('orders', 'trades', 'operations') THEN
        RAISE EXCEPTION 'unknown history kind "%"', kind
            USING ERRCODE = '22023',
                  HINT = 'The kinds are orders, trades and operations.';
    END IF;
    IF older_than < interval '0' OR batch_rows NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'older_than must not be negative and batch_rows must be between 1 and 100000'
            USING ERRCODE = '22023';
    END IF;
    cutoff := now() - older_than;

    -- The oldest rows past the cutoff, locked; rows a poll or the
    -- correlation writer holds are left for the next batch.  Orders only
    -- in a final state, operations only once ended.
    IF kind = 'orders' THEN
        SELECT array_agg(ctid) INTO rows FROM (
            SELECT o.ctid FROM @extschema@.orders o
            WHERE o.status IN ('COMPLETE', 'CANCELLED', 'REJECTED')
              AND coalesce(o.order_timestamp, o.updated_at) < cutoff
            ORDER BY coalesce(o.order_timestamp, o.updated_at)
            LIMIT batch_rows FOR UPDATE SKIP LOCKED) s;
    ELSIF kind = 'trades' THEN
        SELECT array_agg(ctid) INTO rows FROM (
            SELECT t.ctid FROM @extschema@.trades t
            WHERE coalesce(t.fill_timestamp, t.updated_at) < cutoff
            ORDER BY coalesce(t.fill_timestamp, t.updated_at)
            LIMIT batch_rows FOR UPDATE SKIP LOCKED) s;
    ELSE
        SELECT array_agg(ctid) INTO rows FROM (
            SELECT p.ctid FROM @extschema@.operations p
            WHERE p.ended_at < cutoff
            ORDER BY p.ended_at
            LIMIT batch_rows FOR UPDATE SKIP LOCKED) s;
    END IF;
    IF rows IS NULL THEN
        RETURN 0;
    END IF;

    archive := format('history.%s.%s.%s', kind,
                      to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"'),
                      pg_current_xact_id());
    archived := @extschema@.archive_create(archive,
        format('SELECT * FROM @extschema@.%I WHERE ctid = ANY (%L::tid[])', kind, rows));
    EXECUTE format('DELETE FROM @extschema@.%I WHERE ctid = ANY ($1)', kind) USING rows;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    IF deleted <> archived THEN
        RAISE EXCEPTION 'history batch of % archived % rows but deleted %', kind, archived, deleted
            USING ERRCODE = 'TR120',
                  DETAIL = 'The batch is rolled back: no row was moved.';
    END IF;
    RETURN archived;
END
$$;
COMMENT ON FUNCTION @extschema@.archive_history_batch(text, interval, integer) IS
    'Move up to batch_rows rows of orders, trades or operations older than older_than into one encrypted archive (history.<kind>.*); returns how many';

-- The archived history, read back (admin: needs the server key).
CREATE FUNCTION @extschema@.history_rows(kind text, OUT archive text, OUT data jsonb)
    RETURNS SETOF record LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.name, r
    FROM @extschema@.archives a, @extschema@.archive_rows(a.name) r
    WHERE a.name LIKE 'history.' || kind || '.%'
    ORDER BY a.name
$$;
COMMENT ON FUNCTION @extschema@.history_rows(text) IS
    'Every row moved into the history archives of kind (orders, trades, operations), decrypted';

GRANT EXECUTE ON FUNCTION @extschema@.archive_history_batch(text, interval, integer) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.history_rows(text) TO trading_admin;

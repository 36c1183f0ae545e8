-- 1.1: the WebSocket ticker (worker/ticker*.c).  The worker "trading ticker"
-- streams Kite's ticker for the instruments of the watchlist: every tick
-- into trading.ticks (partitioned by IST day), the latest per instrument into
-- trading.quotes (the table polling fills; polling pauses for streamed
-- instruments), and order updates into trading.orders through the poller's
-- apply path.  The same statements run in a fresh install and in the upgrade
-- from 1.0 (this file is linked into extension/versions/1.0--1.1/).

-- ---------------------------------------------------------------------
-- The watchlist: a 'quote' mode (the ticker's; polled as full), and a
-- per-instrument opt-out of tick storage (quotes are still kept current).
-- ---------------------------------------------------------------------
ALTER TABLE @extschema@.watchlist DROP CONSTRAINT watchlist_mode_check;
ALTER TABLE @extschema@.watchlist ADD CONSTRAINT watchlist_mode_check
    CHECK (mode IN ('ltp', 'ohlc', 'quote', 'full'));
ALTER TABLE @extschema@.watchlist
    ADD COLUMN store_ticks boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN @extschema@.watchlist.store_ticks IS
    'Store every tick of this instrument in trading.ticks (false: only its latest quote)';

-- trading.quotes: the ticker updates each streamed row about once a second;
-- room on each page lets those updates stay HOT (no index entry per update).
ALTER TABLE @extschema@.quotes SET (fillfactor = 50);

-- The watchlist as the ticker streams it: instruments with a token in
-- trading.instruments, in the ticker's modes (ohlc is carried by quote).
CREATE VIEW @extschema@.ticker_watchlist AS
    SELECT w.instrument, i.instrument_token,
           CASE w.mode WHEN 'ohlc' THEN 'quote' ELSE w.mode END AS ticker_mode,
           w.store_ticks, w.added_at
    FROM @extschema@.watchlist w
    JOIN @extschema@.instruments i
      ON i.exchange = split_part(w.instrument, ':', 1)
     AND i.tradingsymbol = substr(w.instrument, strpos(w.instrument, ':') + 1)
    WHERE i.instrument_token BETWEEN 1 AND 4294967295;
COMMENT ON VIEW @extschema@.ticker_watchlist IS
    'Watchlist instruments the ticker streams, with their instrument tokens';

CREATE FUNCTION @extschema@._ticker_config_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ticker_config_changed';
CREATE TRIGGER watchlist_ticker_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.watchlist
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._ticker_config_changed();
CREATE TRIGGER instruments_ticker_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.instruments
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._ticker_config_changed();

-- ---------------------------------------------------------------------
-- Every tick.  Prices are exact decimals (the packet's integers divided by
-- the segment's divisor); columns a mode does not carry are NULL.  One
-- partition per IST day, created by the worker before it writes a day's
-- first tick, dropped after trading.ticker_retention days.
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.ticks (
    instrument_token    bigint NOT NULL,
    received_at         timestamptz NOT NULL,
    exchange_timestamp  timestamptz,
    mode                text NOT NULL CHECK (mode IN ('ltp', 'quote', 'full')),
    tradable            boolean NOT NULL,
    last_price          numeric NOT NULL,
    last_quantity       bigint,
    average_price       numeric,
    volume              bigint,
    buy_quantity        bigint,
    sell_quantity       bigint,
    open                numeric,
    high                numeric,
    low                 numeric,
    close               numeric,
    change              numeric,
    last_trade_time     timestamptz,
    oi                  bigint,
    oi_day_high         bigint,
    oi_day_low          bigint,
    depth_buy_price     numeric[],
    depth_buy_quantity  bigint[],
    depth_buy_orders    integer[],
    depth_sell_price    numeric[],
    depth_sell_quantity bigint[],
    depth_sell_orders   integer[]
) PARTITION BY RANGE (received_at);
CREATE INDEX ticks_token_received_idx ON @extschema@.ticks (instrument_token, received_at);
COMMENT ON TABLE @extschema@.ticks IS
    'Every tick the ticker received (one partition per IST day, kept trading.ticker_retention days)';

-- The partition holding ts (its IST day), created if missing; its name.
CREATE FUNCTION @extschema@._ticks_partition(ts timestamptz) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    day date := (ts AT TIME ZONE 'Asia/Kolkata')::date;
    name text := 'ticks_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass('@extschema@.' || name) IS NULL THEN
        EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.ticks'
                       ' FOR VALUES FROM (%L) TO (%L)', name,
                       day::timestamp AT TIME ZONE 'Asia/Kolkata',
                       (day + 1)::timestamp AT TIME ZONE 'Asia/Kolkata');
    END IF;
    RETURN name;
END
$$;

-- Drop the partitions of trading.ticks that ended more than retention_days
-- ago; returns how many.  The worker calls it hourly.
CREATE FUNCTION @extschema@.ticks_drop_expired(retention_days integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    n integer := 0;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be at least 1' USING ERRCODE = '22023';
    END IF;
    FOR part IN
        SELECT c.oid::regclass AS rel
        FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
        WHERE h.inhparent = '@extschema@.ticks'::regclass
          AND c.relname ~ '^ticks_[0-9]{8}$'
          AND to_date(substr(c.relname, 7), 'YYYYMMDD') + 1
              < (now() AT TIME ZONE 'Asia/Kolkata')::date - retention_days
    LOOP
        EXECUTE format('DROP TABLE %s', part.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------
-- Order updates ({"type":"order","data":{...}} text frames): validated and
-- applied by the poller's path (_apply_orders, 61_broker_response.sql), one
-- order at a time.  Returns _apply_orders' rows (final_order, rejected).
-- TR702 for a frame that is not an order update.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._ticker_apply_order(msg text)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb;
BEGIN
    BEGIN
        doc := msg::jsonb;
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RAISE EXCEPTION 'ticker order update is not JSON' USING ERRCODE = 'TR702';
    END;
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR doc->>'type' IS DISTINCT FROM 'order'
       OR jsonb_typeof(doc->'data') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'ticker text frame is not an order update' USING ERRCODE = 'TR702';
    END IF;
    RETURN QUERY SELECT * FROM @extschema@._apply_orders(doc->'data');
END
$$;

-- ---------------------------------------------------------------------
-- Status: per connection, the worker's counters, per instrument.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._ticker_status(
    OUT connection integer, OUT worker_state text, OUT state text,
    OUT subscriptions integer, OUT connected_at timestamptz,
    OUT last_packet_at timestamptz, OUT last_pong_at timestamptz,
    OUT ticks_per_second double precision, OUT ticks_total bigint,
    OUT frames_total bigint, OUT heartbeats_total bigint,
    OUT malformed_frames_total bigint, OUT reconnects_total bigint,
    OUT last_reconnect_at timestamptz, OUT last_reconnect_reason text,
    OUT next_attempt_at timestamptz, OUT pings_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ticker_status';
CREATE VIEW @extschema@.ticker_status AS
    SELECT * FROM @extschema@._ticker_status();
COMMENT ON VIEW @extschema@.ticker_status IS
    'The ticker''s WebSocket connections: state, subscriptions, last packet, ticks per second, reconnects and why';

CREATE FUNCTION @extschema@._ticker_stats(
    OUT worker_state text, OUT streaming boolean, OUT ticks_stored bigint,
    OUT ticks_not_stored bigint, OUT ticks_dropped bigint,
    OUT quotes_written bigint, OUT flushes bigint, OUT flush_errors bigint,
    OUT order_updates bigint, OUT order_update_errors bigint,
    OUT instruments_over_limit bigint, OUT latency_buckets bigint[],
    OUT latency_count bigint, OUT latency_sum_seconds double precision,
    OUT copy_seconds double precision, OUT quotes_seconds double precision)
    RETURNS record LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ticker_stats';
CREATE VIEW @extschema@.ticker_stats AS
    SELECT * FROM @extschema@._ticker_stats();
COMMENT ON VIEW @extschema@.ticker_stats IS
    'The ticker''s counters: ticks stored, dropped, order updates, tick-to-row latency histogram';

-- Per watched instrument: its connection's view of it and the age of its
-- last tick (the ticker writes quotes with raw->>'source' = 'ticker').
CREATE VIEW @extschema@.ticker_instruments AS
    SELECT t.instrument, t.instrument_token, t.ticker_mode AS mode, t.store_ticks,
           q.updated_at AS last_tick_at,
           now() - q.updated_at AS last_tick_age
    FROM @extschema@.ticker_watchlist t
    LEFT JOIN @extschema@.quotes q
      ON q.instrument = t.instrument AND q.raw->>'source' = 'ticker';
COMMENT ON VIEW @extschema@.ticker_instruments IS
    'Streamed instruments and the age of their last tick';

-- trading.ticker_decode(frame): a binary ticker frame decoded as the worker
-- decodes it, one jsonb per packet (TR701 when malformed).
CREATE FUNCTION @extschema@.ticker_decode(frame bytea) RETURNS SETOF jsonb
    LANGUAGE c STRICT IMMUTABLE
    AS 'MODULE_PATHNAME', 'ticker_decode';
COMMENT ON FUNCTION @extschema@.ticker_decode(bytea) IS
    'Decode a Kite ticker frame as the ticker worker does (one jsonb per packet)';

-- Ticks are the desk's own record of the market at tick granularity (the
-- historical API only has candles), so they are kept by pg_dump: the
-- partitions are ordinary tables the worker creates (not members of the
-- extension) and are dumped with their rows; the parent is registered for
-- completeness (a partitioned table holds no rows itself).  Exclude them
-- from a dump with --exclude-table-data='trading.ticks_*'.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ticks', '');

GRANT SELECT ON @extschema@.ticks, @extschema@.ticker_watchlist,
    @extschema@.ticker_status, @extschema@.ticker_stats,
    @extschema@.ticker_instruments TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._ticker_status(), @extschema@._ticker_stats(),
    @extschema@.ticker_decode(bytea) TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.ticks_drop_expired(integer) TO trading_admin;

-- Broker worker (worker/broker_*.c).  The worker polls Kite and applies each
-- response in one transaction through the _apply_* functions below, which
-- map the broker's JSON to the tables of 50_broker_tables.sql with jsonb.

-- ---------------------------------------------------------------------
-- Configuration: how often each endpoint is polled.  Changes take effect
-- at once (a statement trigger wakes the worker after commit).
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.poll_intervals (
    endpoint    text PRIMARY KEY CHECK (endpoint IN ('orders', 'trades', 'positions',
                                                     'holdings', 'margins', 'quotes')),
    interval_ms integer NOT NULL CHECK (interval_ms BETWEEN 100 AND 86400000),
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE @extschema@.poll_intervals IS
    'How often the broker worker polls each endpoint (milliseconds); changes apply at once';

INSERT INTO @extschema@.poll_intervals (endpoint, interval_ms) VALUES
    ('orders',    2000),
    ('trades',    5000),
    ('positions', 3000),
    ('holdings',  60000),
    ('margins',   10000),
    ('quotes',    1000);

CREATE FUNCTION @extschema@._worker_config_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'broker_worker_config_changed';
CREATE TRIGGER poll_intervals_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.poll_intervals
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._worker_config_changed();
CREATE TRIGGER watchlist_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.watchlist
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._worker_config_changed();

-- ---------------------------------------------------------------------
-- The broker session.  Credentials are one envelope encrypted with the
-- server key (AAD "trading.broker_session"); nobody but the owner can read
-- the table, the status view shows everything but the secret.
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.broker_session (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    credentials bytea NOT NULL,
    user_id     text,
    login_time  timestamptz,
    set_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'expired')),
    expired_at  timestamptz
);
COMMENT ON TABLE @extschema@.broker_session IS
    'The Kite session the worker uses (encrypted with the server key)';

CREATE VIEW @extschema@.broker_session_status AS
    SELECT user_id, login_time, set_at, state, expired_at
    FROM @extschema@.broker_session;
COMMENT ON VIEW @extschema@.broker_session_status IS
    'The broker session without its secret: who, since when, active or expired';

CREATE FUNCTION @extschema@.set_broker_session(api_key text, access_token text)
    RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'set_broker_session';
COMMENT ON FUNCTION @extschema@.set_broker_session(text, text) IS
    'Store the Kite api_key and access_token (encrypted with the server key); the worker resumes polling with them';

CREATE FUNCTION @extschema@.broker_login(api_key text, request_token text, api_secret text,
                                         OUT user_id text, OUT login_time timestamptz)
    RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_login';
COMMENT ON FUNCTION @extschema@.broker_login(text, text, text) IS
    'Exchange a request_token for an access token (POST /session/token with the checksum) and store the session';

CREATE FUNCTION @extschema@.clear_broker_session() RETURNS boolean
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'clear_broker_session';
COMMENT ON FUNCTION @extschema@.clear_broker_session() IS
    'Forget the stored session; the worker stops authenticated polling';

-- ---------------------------------------------------------------------
-- Worker status, from the worker's shared memory.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._worker_status(
    OUT endpoint text, OUT worker_state text, OUT session_state text,
    OUT interval_ms integer, OUT enabled boolean,
    OUT last_success timestamptz, OUT last_error timestamptz,
    OUT last_error_type text, OUT next_poll timestamptz,
    OUT consecutive_failures integer, OUT requests_total bigint,
    OUT errors_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_status';

CREATE VIEW @extschema@.worker_status AS
    SELECT endpoint, worker_state, session_state, last_success, last_error,
           last_error_type, next_poll, consecutive_failures, requests_total,
           errors_total, interval_ms, enabled
    FROM @extschema@._worker_status();
COMMENT ON VIEW @extschema@.worker_status IS
    'The broker worker: its state, the session state and, per polled endpoint, last success, last error, next poll and counters';

CREATE FUNCTION @extschema@._worker_errors(OUT endpoint text, OUT error_type text,
                                           OUT errors_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_errors';

CREATE VIEW @extschema@.worker_errors AS
    SELECT * FROM @extschema@._worker_errors();
COMMENT ON VIEW @extschema@.worker_errors IS
    'Errors of the broker worker since server start, by endpoint and error type';

CREATE FUNCTION @extschema@._worker_http(OUT connections_opened_total bigint,
                                         OUT requests_total bigint,
                                         OUT cycles_total bigint,
                                         OUT worker_pid integer,
                                         OUT started_at timestamptz)
    RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_http';

CREATE VIEW @extschema@.worker_http AS
    SELECT * FROM @extschema@._worker_http();
COMMENT ON VIEW @extschema@.worker_http IS
    'HTTP counters of the broker worker: connections opened and requests sent since server start';

-- ---------------------------------------------------------------------
-- Mapping of Kite responses to the tables (called by the worker, one
-- transaction per response).  Each returns the number of rows changed
-- and sends a NOTIFY on trading_<table> when something changed.
-- ---------------------------------------------------------------------

-- Kite timestamps are 'yyyy-mm-dd hh:mm:ss' in IST.
CREATE FUNCTION @extschema@._ist(ts text) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN ts IS NULL OR ts = '' THEN NULL
                ELSE (ts::timestamp) AT TIME ZONE 'Asia/Kolkata' END;

CREATE FUNCTION @extschema@._notify_change(tbl text, inserted bigint, updated bigint,
                                           deleted bigint, detail jsonb DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    payload text;
BEGIN
    IF inserted + updated + deleted = 0 THEN
        RETURN;
    END IF;
    payload := jsonb_build_object('table', tbl, 'inserted', inserted,
                                  'updated', updated, 'deleted', deleted)::text;
    IF detail IS NOT NULL AND length(payload) + length(detail::text) < 7900 THEN
        payload := (payload::jsonb || jsonb_build_object('changed', detail))::text;
    END IF;
    PERFORM pg_notify('trading_' || tbl, payload);
END
$$;

-- TR304 unless data is a JSON value of the given type ('array', 'object').
CREATE FUNCTION @extschema@._require(data jsonb, type text, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> type THEN
        RAISE EXCEPTION 'broker response for % has no data %', what, type
            USING ERRCODE = 'TR304';
    END IF;
END
$$;

-- Returns 'SIDE|STATUS' for each order first seen in, or changed to, a
-- final status (COMPLETE, CANCELLED, REJECTED): the worker counts them in
-- trading_trades_total.
CREATE FUNCTION @extschema@._apply_orders(data jsonb) RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_ins bigint;
    n_upd bigint;
    changed jsonb;
    finals text[];
BEGIN
    PERFORM @extschema@._require(data, 'array', 'orders');
    CREATE TEMP TABLE IF NOT EXISTS _orders_in (LIKE @extschema@.orders) ON COMMIT DROP;
    INSERT INTO _orders_in
    SELECT o->>'order_id', o->>'exchange_order_id', o->>'parent_order_id',
           o->>'status', o->>'status_message', NULL, NULL,
           o->>'variety', o->>'exchange', o->>'tradingsymbol',
           (o->>'instrument_token')::bigint, o->>'order_type', o->>'transaction_type',
           o->>'validity', o->>'product', (o->>'quantity')::bigint,
           (o->>'disclosed_quantity')::bigint, (o->>'price')::numeric,
           (o->>'trigger_price')::numeric, (o->>'average_price')::numeric,
           (o->>'filled_quantity')::bigint, (o->>'pending_quantity')::bigint,
           (o->>'cancelled_quantity')::bigint, o->>'tag',
           CASE WHEN jsonb_typeof(o->'tags') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(o->'tags')) END,
           o->>'placed_by',
           @extschema@._ist(o->>'order_timestamp'),
           @extschema@._ist(o->>'exchange_timestamp'),
           @extschema@._ist(o->>'exchange_update_timestamp'),
           o, now()
    FROM jsonb_array_elements(data) o;
    IF EXISTS (SELECT 1 FROM _orders_in WHERE order_id IS NULL OR status IS NULL) THEN
        RAISE EXCEPTION 'broker order without order_id or status' USING ERRCODE = 'TR304';
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_object('order_id', i.order_id, 'status', i.status,
                                                 'previous_status', o.status)), '[]')
      INTO changed
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id)
     WHERE o.order_id IS NULL OR o.status IS DISTINCT FROM i.status;

    SELECT coalesce(array_agg(coalesce(i.transaction_type, 'unknown') || '|' || i.status
                              ORDER BY i.order_id), '{}')
      INTO finals
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id)
     WHERE i.status IN ('COMPLETE', 'CANCELLED', 'REJECTED')
       AND (o.order_id IS NULL OR o.status IS DISTINCT FROM i.status);

    SELECT count(*) FILTER (WHERE o.order_id IS NULL),
           count(*) FILTER (WHERE o.order_id IS NOT NULL AND o.raw IS DISTINCT FROM i.raw)
      INTO n_ins, n_upd
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id);

    INSERT INTO @extschema@.orders AS t
    SELECT * FROM _orders_in
    ON CONFLICT (order_id) DO UPDATE SET
        exchange_order_id = EXCLUDED.exchange_order_id,
        parent_order_id = EXCLUDED.parent_order_id,
        previous_status = CASE WHEN t.status IS DISTINCT FROM EXCLUDED.status
                               THEN t.status ELSE t.previous_status END,
        status_changed_at = CASE WHEN t.status IS DISTINCT FROM EXCLUDED.status
                                 THEN now() ELSE t.status_changed_at END,
        status = EXCLUDED.status,
        status_message = EXCLUDED.status_message,
        variety = EXCLUDED.variety, exchange = EXCLUDED.exchange,
        tradingsymbol = EXCLUDED.tradingsymbol,
        instrument_token = EXCLUDED.instrument_token,
        order_type = EXCLUDED.order_type, transaction_type = EXCLUDED.transaction_type,
        validity = EXCLUDED.validity, product = EXCLUDED.product,
        quantity = EXCLUDED.quantity, disclosed_quantity = EXCLUDED.disclosed_quantity,
        price = EXCLUDED.price, trigger_price = EXCLUDED.trigger_price,
        average_price = EXCLUDED.average_price,
        filled_quantity = EXCLUDED.filled_quantity,
        pending_quantity = EXCLUDED.pending_quantity,
        cancelled_quantity = EXCLUDED.cancelled_quantity,
        tag = EXCLUDED.tag, tags = EXCLUDED.tags, placed_by = EXCLUDED.placed_by,
        order_timestamp = EXCLUDED.order_timestamp,
        exchange_timestamp = EXCLUDED.exchange_timestamp,
        exchange_update_timestamp = EXCLUDED.exchange_update_timestamp,
        raw = EXCLUDED.raw, updated_at = now()
    WHERE t.raw IS DISTINCT FROM EXCLUDED.raw;

    -- new orders get status_changed_at = when first seen
    UPDATE @extschema@.orders o SET status_changed_at = now()
      FROM _orders_in i
     WHERE o.order_id = i.order_id AND o.status_changed_at IS NULL;

    PERFORM @extschema@._notify_change('orders', n_ins, n_upd, 0,
                                       CASE WHEN jsonb_array_length(changed) > 0
                                            THEN changed END);
    DROP TABLE _orders_in;
    RETURN finals;
END
$$;

-- Merge the staged rows of the temporary table _<tbl>_in into
-- @extschema@.<tbl> on its key: insert new rows, update those whose raw
-- changed (every non-key column), and, when replace_all, delete the rows
-- the broker no longer reports.  Sends the NOTIFY (counting already_deleted
-- rows the caller removed) and drops the stage.
CREATE FUNCTION @extschema@._merge_staged(tbl text, keycols text[], replace_all boolean,
                                          already_deleted bigint,
                                          OUT inserted bigint, OUT updated bigint,
                                          OUT deleted bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stage text := '_' || tbl || '_in';
    keylist text;
    joined text;
    setlist text;
BEGIN
    SELECT string_agg(quote_ident(k), ', '),
           string_agg(format('x.%1$I = i.%1$I', k), ' AND ')
      INTO keylist, joined
      FROM unnest(keycols) k;
    SELECT string_agg(format('%1$I = EXCLUDED.%1$I', a.attname), ', ' ORDER BY a.attnum)
      INTO setlist
      FROM pg_attribute a
     WHERE a.attrelid = format('@extschema@.%I', tbl)::regclass
       AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> ALL (keycols);

    EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                           count(*) FILTER (WHERE x.%1$I IS NOT NULL AND x.raw IS DISTINCT FROM i.raw)
                      FROM %2$I i LEFT JOIN @extschema@.%3$I x ON %4$s',
                   keycols[1], stage, tbl, joined)
      INTO inserted, updated;
    deleted := already_deleted;
    IF replace_all THEN
        EXECUTE format('DELETE FROM @extschema@.%1$I x WHERE NOT EXISTS (SELECT 1 FROM %2$I i WHERE %3$s)',
                       tbl, stage, joined);
        GET DIAGNOSTICS deleted = ROW_COUNT;
        deleted := deleted + already_deleted;
    END IF;
    EXECUTE format('INSERT INTO @extschema@.%1$I AS x SELECT * FROM %2$I
                    ON CONFLICT (%3$s) DO UPDATE SET %4$s
                    WHERE x.raw IS DISTINCT FROM EXCLUDED.raw',
                   tbl, stage, keylist, setlist);
    EXECUTE format('DROP TABLE %I', stage);
    PERFORM @extschema@._notify_change(tbl, inserted, updated, deleted);
END
$$;

CREATE FUNCTION @extschema@._apply_trades(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'trades');
    CREATE TEMP TABLE _trades_in (LIKE @extschema@.trades) ON COMMIT DROP;
    INSERT INTO _trades_in
    SELECT t->>'trade_id', t->>'order_id', t->>'exchange', t->>'tradingsymbol',
           (t->>'instrument_token')::bigint, t->>'product', t->>'transaction_type',
           (t->>'quantity')::bigint, (t->>'average_price')::numeric,
           t->>'exchange_order_id',
           @extschema@._ist(t->>'fill_timestamp'),
           nullif(t->>'order_timestamp', '')::time,
           @extschema@._ist(t->>'exchange_timestamp'),
           t, now()
    FROM jsonb_array_elements(data) t;
    PERFORM @extschema@._merge_staged('trades', '{order_id,trade_id}', false, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_positions(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'positions');
    PERFORM @extschema@._require(data->'net', 'array', 'positions.net');
    PERFORM @extschema@._require(data->'day', 'array', 'positions.day');
    CREATE TEMP TABLE _positions_in (LIKE @extschema@.positions) ON COMMIT DROP;
    INSERT INTO _positions_in
    SELECT k.kind, p->>'exchange', p->>'tradingsymbol', p->>'product',
           (p->>'instrument_token')::bigint, (p->>'quantity')::bigint,
           (p->>'overnight_quantity')::bigint, (p->>'multiplier')::numeric,
           (p->>'average_price')::numeric, (p->>'close_price')::numeric,
           (p->>'last_price')::numeric, (p->>'value')::numeric,
           (p->>'pnl')::numeric, (p->>'m2m')::numeric,
           (p->>'unrealised')::numeric, (p->>'realised')::numeric,
           (p->>'buy_quantity')::bigint, (p->>'buy_price')::numeric,
           (p->>'buy_value')::numeric, (p->>'sell_quantity')::bigint,
           (p->>'sell_price')::numeric, (p->>'sell_value')::numeric,
           (p->>'day_buy_quantity')::bigint, (p->>'day_buy_price')::numeric,
           (p->>'day_buy_value')::numeric, (p->>'day_sell_quantity')::bigint,
           (p->>'day_sell_price')::numeric, (p->>'day_sell_value')::numeric,
           p, now()
    FROM (VALUES ('net'), ('day')) k(kind),
         jsonb_array_elements(data->k.kind) p;
    PERFORM @extschema@._merge_staged('positions', '{kind,exchange,tradingsymbol,product}', true, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_holdings(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'holdings');
    CREATE TEMP TABLE _holdings_in (LIKE @extschema@.holdings) ON COMMIT DROP;
    INSERT INTO _holdings_in
    SELECT h->>'exchange', h->>'tradingsymbol', h->>'isin',
           (h->>'instrument_token')::bigint, h->>'product',
           (h->>'quantity')::bigint, (h->>'t1_quantity')::bigint,
           (h->>'realised_quantity')::bigint, (h->>'used_quantity')::bigint,
           (h->>'collateral_quantity')::bigint, (h->>'average_price')::numeric,
           (h->>'last_price')::numeric, (h->>'close_price')::numeric,
           (h->>'pnl')::numeric, (h->>'day_change')::numeric,
           (h->>'day_change_percentage')::numeric, h, now()
    FROM jsonb_array_elements(data) h;
    PERFORM @extschema@._merge_staged('holdings', '{exchange,tradingsymbol}', true, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_margins(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'margins');
    IF EXISTS (SELECT 1 FROM jsonb_each(data) e
               WHERE e.key NOT IN ('equity', 'commodity') OR jsonb_typeof(e.value) <> 'object') THEN
        RAISE EXCEPTION 'broker margins have an unknown segment or a segment that is not an object'
            USING ERRCODE = 'TR304';
    END IF;
    CREATE TEMP TABLE _margins_in (LIKE @extschema@.margins) ON COMMIT DROP;
    INSERT INTO _margins_in
    SELECT e.key, (m->>'enabled')::boolean, (m->>'net')::numeric,
           (m->'available'->>'cash')::numeric,
           (m->'available'->>'live_balance')::numeric,
           (m->'available'->>'collateral')::numeric,
           (m->'utilised'->>'debits')::numeric,
           (m->'utilised'->>'exposure')::numeric,
           (m->'utilised'->>'span')::numeric,
           (m->'utilised'->>'m2m_realised')::numeric,
           (m->'utilised'->>'m2m_unrealised')::numeric,
           m, now()
    FROM jsonb_each(data) e, LATERAL (SELECT e.value AS m) v;
    PERFORM @extschema@._merge_staged('margins', '{segment}', true, 0);
END
$$;

-- Quotes of one batch (mode 'ltp', 'ohlc' or 'full').  An instrument the
-- broker left out keeps its last quote; instruments no longer on the
-- watchlist are removed (and not added, if they left it while the request
-- was in flight).
CREATE FUNCTION @extschema@._apply_quotes(data jsonb, mode text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_del bigint;
BEGIN
    PERFORM @extschema@._require(data, 'object', 'quotes');
    IF EXISTS (SELECT 1 FROM jsonb_each(data) e WHERE jsonb_typeof(e.value) <> 'object') THEN
        RAISE EXCEPTION 'broker quote that is not an object' USING ERRCODE = 'TR304';
    END IF;
    DELETE FROM @extschema@.quotes x
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = x.instrument);
    GET DIAGNOSTICS n_del = ROW_COUNT;
    CREATE TEMP TABLE _quotes_in (LIKE @extschema@.quotes) ON COMMIT DROP;
    INSERT INTO _quotes_in
    SELECT e.key, (q->>'instrument_token')::bigint, mode,
           (q->>'last_price')::numeric, (q->>'last_quantity')::bigint,
           (q->>'average_price')::numeric, (q->>'volume')::bigint,
           (q->>'buy_quantity')::bigint, (q->>'sell_quantity')::bigint,
           (q->'ohlc'->>'open')::numeric, (q->'ohlc'->>'high')::numeric,
           (q->'ohlc'->>'low')::numeric, (q->'ohlc'->>'close')::numeric,
           (q->>'net_change')::numeric, (q->>'oi')::bigint,
           (q->>'lower_circuit_limit')::numeric, (q->>'upper_circuit_limit')::numeric,
           @extschema@._ist(q->>'last_trade_time'),
           @extschema@._ist(q->>'timestamp'),
           q, now()
    FROM jsonb_each(data) e, LATERAL (SELECT e.value AS q) v
    WHERE EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = e.key);
    PERFORM @extschema@._merge_staged('quotes', '{instrument}', false, n_del);
END
$$;

-- One response: the Kite envelope, then the endpoint's mapping.  Returns
-- a NULL error_type when applied (final_orders: see _apply_orders), or the
-- broker's error (status "error") without touching any table.  Anything else (not JSON, wrong shape, bad values)
-- raises an error and the worker rolls back.
CREATE FUNCTION @extschema@._apply_response(endpoint text, body text,
                                            OUT error_type text, OUT message text,
                                            OUT final_orders text[])
    RETURNS record LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb := body::jsonb;
BEGIN
    IF jsonb_typeof(doc) <> 'object' OR jsonb_typeof(doc->'status') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'broker response is not a Kite envelope' USING ERRCODE = 'TR304';
    END IF;
    IF doc->>'status' = 'error' THEN
        error_type := coalesce(doc->>'error_type', 'GeneralException');
        message := left(coalesce(doc->>'message', ''), 200);
        RETURN;
    END IF;
    IF doc->>'status' <> 'success' THEN
        RAISE EXCEPTION 'broker response has status "%"', left(doc->>'status', 40)
            USING ERRCODE = 'TR304';
    END IF;
    CASE endpoint
        WHEN 'orders' THEN final_orders := @extschema@._apply_orders(doc->'data');
        WHEN 'trades' THEN PERFORM @extschema@._apply_trades(doc->'data');
        WHEN 'positions' THEN PERFORM @extschema@._apply_positions(doc->'data');
        WHEN 'holdings' THEN PERFORM @extschema@._apply_holdings(doc->'data');
        WHEN 'margins' THEN PERFORM @extschema@._apply_margins(doc->'data');
        WHEN 'quotes:ltp' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'ltp');
        WHEN 'quotes:ohlc' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'ohlc');
        WHEN 'quotes:full' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'full');
        ELSE RAISE EXCEPTION 'unknown endpoint "%"', endpoint USING ERRCODE = '22023';
    END CASE;
END
$$;

-- The worker marks the session expired after a TokenException, unless a
-- new session was set meanwhile (set_at differs).
CREATE FUNCTION @extschema@._expire_session(loaded_set_at timestamptz) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@.broker_session SET state = 'expired', expired_at = now()
     WHERE state = 'active' AND set_at = loaded_set_at;
    IF FOUND THEN
        PERFORM pg_notify('trading_session', '{"state": "expired"}');
    END IF;
    RETURN FOUND;
END
$$;

GRANT SELECT ON @extschema@.poll_intervals TO trading_reader;
GRANT UPDATE (interval_ms, enabled) ON @extschema@.poll_intervals TO trading_admin;
GRANT SELECT ON @extschema@.broker_session_status TO trading_reader;
GRANT SELECT ON @extschema@.worker_status, @extschema@.worker_errors,
    @extschema@.worker_http TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._worker_status(), @extschema@._worker_errors(),
    @extschema@._worker_http() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.set_broker_session(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.broker_login(text, text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.clear_broker_session() TO trading_admin;

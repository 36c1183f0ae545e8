-- The broker worker's response path (1.1): every response the worker
-- applies, and every order object another module applies (the ticker's
-- streamed order updates), goes through these functions.  They replace
-- the 1.0 mapping of 60_worker.sql: each field mapped into a typed column
-- is checked for its JSON type and range before a table sees it; a bad
-- element is rejected on its own (named in trading.worker_errors), the
-- rest of the response is applied; rows are merged straight from jsonb
-- (no temporary table); NOTIFY payloads name the table only.
-- This file runs in both the install script and the 1.0 -> 1.1 upgrade.

DROP FUNCTION IF EXISTS @extschema@._apply_response(text, text);
DROP FUNCTION IF EXISTS @extschema@._apply_orders(jsonb);
DROP FUNCTION IF EXISTS @extschema@._apply_trades(jsonb);
DROP FUNCTION IF EXISTS @extschema@._apply_positions(jsonb);
DROP FUNCTION IF EXISTS @extschema@._apply_holdings(jsonb);
DROP FUNCTION IF EXISTS @extschema@._apply_margins(jsonb);
DROP FUNCTION IF EXISTS @extschema@._apply_quotes(jsonb, text);
DROP FUNCTION IF EXISTS @extschema@._merge_staged(text, text[], boolean, bigint);
DROP FUNCTION IF EXISTS @extschema@._require(jsonb, text, text);
DROP FUNCTION IF EXISTS @extschema@._notify_change(text, bigint, bigint, bigint, jsonb);

-- ---------------------------------------------------------------------
-- The fields mapped into typed columns, per table: column, JSON path in
-- the broker's object, and kind:
--   key      a string of 1..128 bytes (required)
--   text     a string of at most 4096 bytes, or null
--   bigint   an integral number in bigint's range, or null
--   numeric  a number with |x| < 1e18 and at most 20 decimals, or null
--   ist      'yyyy-mm-dd hh:mm:ss' (IST, a valid date), '' or null
--   time     'hh:mm:ss', '' or null
--   bool     true, false or null
--   text[]   an array of at most 64 strings of at most 256 bytes, or null
-- Columns not listed are derived (raw, updated_at, the key parts that come
-- from the response's structure, previous_status, status_changed_at).
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._broker_fields(tbl text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT jsonb_agg(jsonb_build_object('col', f.col, 'path', f.path::text[], 'kind', f.kind)
                             ORDER BY f.n)
              FROM (VALUES
        ('orders', 1, 'order_id', '{order_id}', 'key'),
        ('orders', 2, 'exchange_order_id', '{exchange_order_id}', 'text'),
        ('orders', 3, 'parent_order_id', '{parent_order_id}', 'text'),
        ('orders', 4, 'status', '{status}', 'key'),
        ('orders', 5, 'status_message', '{status_message}', 'text'),
        ('orders', 6, 'variety', '{variety}', 'text'),
        ('orders', 7, 'exchange', '{exchange}', 'text'),
        ('orders', 8, 'tradingsymbol', '{tradingsymbol}', 'text'),
        ('orders', 9, 'instrument_token', '{instrument_token}', 'bigint'),
        ('orders', 10, 'order_type', '{order_type}', 'text'),
        ('orders', 11, 'transaction_type', '{transaction_type}', 'text'),
        ('orders', 12, 'validity', '{validity}', 'text'),
        ('orders', 13, 'product', '{product}', 'text'),
        ('orders', 14, 'quantity', '{quantity}', 'bigint'),
        ('orders', 15, 'disclosed_quantity', '{disclosed_quantity}', 'bigint'),
        ('orders', 16, 'price', '{price}', 'numeric'),
        ('orders', 17, 'trigger_price', '{trigger_price}', 'numeric'),
        ('orders', 18, 'average_price', '{average_price}', 'numeric'),
        ('orders', 19, 'filled_quantity', '{filled_quantity}', 'bigint'),
        ('orders', 20, 'pending_quantity', '{pending_quantity}', 'bigint'),
        ('orders', 21, 'cancelled_quantity', '{cancelled_quantity}', 'bigint'),
        ('orders', 22, 'tag', '{tag}', 'text'),
        ('orders', 23, 'tags', '{tags}', 'text[]'),
        ('orders', 24, 'placed_by', '{placed_by}', 'text'),
        ('orders', 25, 'order_timestamp', '{order_timestamp}', 'ist'),
        ('orders', 26, 'exchange_timestamp', '{exchange_timestamp}', 'ist'),
        ('orders', 27, 'exchange_update_timestamp', '{exchange_update_timestamp}', 'ist'),
        ('trades', 1, 'trade_id', '{trade_id}', 'key'),
        ('trades', 2, 'order_id', '{order_id}', 'key'),
        ('trades', 3, 'exchange', '{exchange}', 'text'),
        ('trades', 4, 'tradingsymbol', '{tradingsymbol}', 'text'),
        ('trades', 5, 'instrument_token', '{instrument_token}', 'bigint'),
        ('trades', 6, 'product', '{product}', 'text'),
        ('trades', 7, 'transaction_type', '{transaction_type}', 'text'),
        ('trades', 8, 'quantity', '{quantity}', 'bigint'),
        ('trades', 9, 'average_price', '{average_price}', 'numeric'),
        ('trades', 10, 'exchange_order_id', '{exchange_order_id}', 'text'),
        ('trades', 11, 'fill_timestamp', '{fill_timestamp}', 'ist'),
        ('trades', 12, 'order_timestamp', '{order_timestamp}', 'time'),
        ('trades', 13, 'exchange_timestamp', '{exchange_timestamp}', 'ist'),
        ('positions', 1, 'exchange', '{exchange}', 'key'),
        ('positions', 2, 'tradingsymbol', '{tradingsymbol}', 'key'),
        ('positions', 3, 'product', '{product}', 'key'),
        ('positions', 4, 'instrument_token', '{instrument_token}', 'bigint'),
        ('positions', 5, 'quantity', '{quantity}', 'bigint'),
        ('positions', 6, 'overnight_quantity', '{overnight_quantity}', 'bigint'),
        ('positions', 7, 'multiplier', '{multiplier}', 'numeric'),
        ('positions', 8, 'average_price', '{average_price}', 'numeric'),
        ('positions', 9, 'close_price', '{close_price}', 'numeric'),
        ('positions', 10, 'last_price', '{last_price}', 'numeric'),
        ('positions', 11, 'value', '{value}', 'numeric'),
        ('positions', 12, 'pnl', '{pnl}', 'numeric'),
        ('positions', 13, 'm2m', '{m2m}', 'numeric'),
        ('positions', 14, 'unrealised', '{unrealised}', 'numeric'),
        ('positions', 15, 'realised', '{realised}', 'numeric'),
        ('positions', 16, 'buy_quantity', '{buy_quantity}', 'bigint'),
        ('positions', 17, 'buy_price', '{buy_price}', 'numeric'),
        ('positions', 18, 'buy_value', '{buy_value}', 'numeric'),
        ('positions', 19, 'sell_quantity', '{sell_quantity}', 'bigint'),
        ('positions', 20, 'sell_price', '{sell_price}', 'numeric'),
        ('positions', 21, 'sell_value', '{sell_value}', 'numeric'),
        ('positions', 22, 'day_buy_quantity', '{day_buy_quantity}', 'bigint'),
        ('positions', 23, 'day_buy_price', '{day_buy_price}', 'numeric'),
        ('positions', 24, 'day_buy_value', '{day_buy_value}', 'numeric'),
        ('positions', 25, 'day_sell_quantity', '{day_sell_quantity}', 'bigint'),
        ('positions', 26, 'day_sell_price', '{day_sell_price}', 'numeric'),
        ('positions', 27, 'day_sell_value', '{day_sell_value}', 'numeric'),
        ('holdings', 1, 'exchange', '{exchange}', 'key'),
        ('holdings', 2, 'tradingsymbol', '{tradingsymbol}', 'key'),
        ('holdings', 3, 'isin', '{isin}', 'text'),
        ('holdings', 4, 'instrument_token', '{instrument_token}', 'bigint'),
        ('holdings', 5, 'product', '{product}', 'text'),
        ('holdings', 6, 'quantity', '{quantity}', 'bigint'),
        ('holdings', 7, 't1_quantity', '{t1_quantity}', 'bigint'),
        ('holdings', 8, 'realised_quantity', '{realised_quantity}', 'bigint'),
        ('holdings', 9, 'used_quantity', '{used_quantity}', 'bigint'),
        ('holdings', 10, 'collateral_quantity', '{collateral_quantity}', 'bigint'),
        ('holdings', 11, 'average_price', '{average_price}', 'numeric'),
        ('holdings', 12, 'last_price', '{last_price}', 'numeric'),
        ('holdings', 13, 'close_price', '{close_price}', 'numeric'),
        ('holdings', 14, 'pnl', '{pnl}', 'numeric'),
        ('holdings', 15, 'day_change', '{day_change}', 'numeric'),
        ('holdings', 16, 'day_change_percentage', '{day_change_percentage}', 'numeric'),
        ('margins', 1, 'enabled', '{enabled}', 'bool'),
        ('margins', 2, 'net', '{net}', 'numeric'),
        ('margins', 3, 'available_cash', '{available,cash}', 'numeric'),
        ('margins', 4, 'available_live_balance', '{available,live_balance}', 'numeric'),
        ('margins', 5, 'available_collateral', '{available,collateral}', 'numeric'),
        ('margins', 6, 'utilised_debits', '{utilised,debits}', 'numeric'),
        ('margins', 7, 'utilised_exposure', '{utilised,exposure}', 'numeric'),
        ('margins', 8, 'utilised_span', '{utilised,span}', 'numeric'),
        ('margins', 9, 'utilised_m2m_realised', '{utilised,m2m_realised}', 'numeric'),
        ('margins', 10, 'utilised_m2m_unrealised', '{utilised,m2m_unrealised}', 'numeric'),
        ('quotes', 1, 'instrument_token', '{instrument_token}', 'bigint'),
        ('quotes', 2, 'last_price', '{last_price}', 'numeric'),
        ('quotes', 3, 'last_quantity', '{last_quantity}', 'bigint'),
        ('quotes', 4, 'average_price', '{average_price}', 'numeric'),
        ('quotes', 5, 'volume', '{volume}', 'bigint'),
        ('quotes', 6, 'buy_quantity', '{buy_quantity}', 'bigint'),
        ('quotes', 7, 'sell_quantity', '{sell_quantity}', 'bigint'),
        ('quotes', 8, 'open', '{ohlc,open}', 'numeric'),
        ('quotes', 9, 'high', '{ohlc,high}', 'numeric'),
        ('quotes', 10, 'low', '{ohlc,low}', 'numeric'),
        ('quotes', 11, 'close', '{ohlc,close}', 'numeric'),
        ('quotes', 12, 'net_change', '{net_change}', 'numeric'),
        ('quotes', 13, 'oi', '{oi}', 'bigint'),
        ('quotes', 14, 'lower_circuit_limit', '{lower_circuit_limit}', 'numeric'),
        ('quotes', 15, 'upper_circuit_limit', '{upper_circuit_limit}', 'numeric'),
        ('quotes', 16, 'last_trade_time', '{last_trade_time}', 'ist'),
        ('quotes', 17, 'quote_timestamp', '{timestamp}', 'ist')
      ) AS f(tbl, n, col, path, kind)
     WHERE f.tbl = $1);
COMMENT ON FUNCTION @extschema@._broker_fields(text) IS
    'The broker fields mapped into typed columns of a table: column, JSON path and the kind checked before a table sees it';

-- NOTIFY trading_<tbl> at commit.  The payload names the table and nothing
-- else: any role that can connect can LISTEN, so order ids, statuses and
-- row counts stay in the tables, behind their privileges.
CREATE FUNCTION @extschema@._notify_change(tbl text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN pg_notify('trading_' || tbl, jsonb_build_object('table', tbl)::text);

-- ---------------------------------------------------------------------
-- Validate and merge one batch of broker objects into tbl.
--
-- items: a JSON array of {"e": the broker's object, "x": derived columns
-- (e.g. {"kind": "net"}), "bad": optional reason to reject it}.  Each
-- element is checked against _broker_fields(tbl); an element that fails
-- (or repeats an earlier element's key: the last one wins) is rejected
-- and not applied.  The others are upserted on keycols (only when raw
-- changed); with replace_all, rows the broker no longer reports are
-- deleted, but only when no element was rejected (a rejected element
-- may be a row the broker still reports).  Returns outcome rows:
--   ('final_order', transaction_type, status)  orders that reached a
--       final status (the worker counts them once committed)
--   ('rejected', '<tbl>.<field>', n)  n elements rejected; the first's field
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._apply_items(tbl text, keycols text[], replace_all boolean,
                                         items jsonb, already_deleted bigint DEFAULT 0)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    spec jsonb := @extschema@._broker_fields(tbl);
    cols text[];
    good jsonb;
    n_rej bigint;
    first_bad text;
    n_ins bigint;
    n_upd bigint;
    n_del bigint := already_deleted;
    n bigint;
    joined text;
    setlist text;
    collist text;
BEGIN
    IF spec IS NULL THEN
        RAISE EXCEPTION 'unknown broker table "%"', tbl USING ERRCODE = '22023';
    END IF;
    WITH it AS (
        SELECT t.o AS ord, t.i->'e' AS e, coalesce(t.i->'x', '{}') AS x, t.i->>'bad' AS preset
          FROM jsonb_array_elements(items) WITH ORDINALITY t(i, o)
    ), f AS (
        SELECT f.n, f.col, f.path, f.kind
          FROM ROWS FROM (jsonb_to_recordset(spec) AS (col text, path text[], kind text))
               WITH ORDINALITY f(col, path, kind, n)
    ), cell AS MATERIALIZED (
        -- one row per element and mapped field: is its value acceptable?
        -- (materialized: ok is computed once per cell)
        SELECT it.ord, f.n, f.col, f.path, f.kind, c.v,
               CASE
                 WHEN f.kind = 'key' THEN
                     coalesce(jsonb_typeof(c.v) = 'string'
                              AND octet_length(c.v #>> '{}') BETWEEN 1 AND 128, false)
                 WHEN c.v IS NULL OR jsonb_typeof(c.v) = 'null' THEN true
                 WHEN f.kind = 'text' THEN
                     jsonb_typeof(c.v) = 'string' AND octet_length(c.v #>> '{}') <= 4096
                 WHEN f.kind = 'bigint' THEN
                     CASE WHEN jsonb_typeof(c.v) <> 'number' THEN false
                          ELSE c.v::numeric = trunc(c.v::numeric)
                               AND c.v::numeric BETWEEN -9223372036854775808
                                                    AND 9223372036854775807 END
                 WHEN f.kind = 'numeric' THEN
                     CASE WHEN jsonb_typeof(c.v) <> 'number' THEN false
                          ELSE abs(c.v::numeric) < 1e18 AND scale(c.v::numeric) <= 20 END
                 WHEN f.kind = 'bool' THEN jsonb_typeof(c.v) = 'boolean'
                 WHEN f.kind = 'ist' THEN
                     CASE WHEN jsonb_typeof(c.v) <> 'string' THEN false
                          WHEN c.v #>> '{}' = '' THEN true
                          WHEN (c.v #>> '{}') !~ '^(19|2[01])\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$' THEN false
                          ELSE substr(c.v #>> '{}', 9, 2)::int <=
                               extract(day FROM make_date(substr(c.v #>> '{}', 1, 4)::int,
                                                          substr(c.v #>> '{}', 6, 2)::int, 1)
                                                + interval '1 month - 1 day') END
                 WHEN f.kind = 'time' THEN
                     jsonb_typeof(c.v) = 'string'
                     AND (c.v #>> '{}') ~ '^(([01]\d|2[0-3]):[0-5]\d:[0-5]\d)?$'
                 WHEN f.kind = 'text[]' THEN
                     CASE WHEN jsonb_typeof(c.v) <> 'array' THEN false
                          ELSE jsonb_array_length(c.v) <= 64
                               AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.v) a
                                                WHERE jsonb_typeof(a) <> 'string'
                                                   OR octet_length(a #>> '{}') > 256) END
                 ELSE false END AS ok
          FROM it CROSS JOIN f, LATERAL (SELECT it.e #> f.path AS v) c
         WHERE jsonb_typeof(it.e) = 'object' AND it.preset IS NULL
    ), row_of AS (
        -- per element: the first refused field, or the typed row
        SELECT cell.ord,
               (array_agg(tbl || '.' || array_to_string(cell.path, '.') ORDER BY cell.n)
                    FILTER (WHERE NOT cell.ok))[1] AS bad,
               jsonb_object_agg(cell.col,
                   CASE WHEN NOT cell.ok OR cell.v IS NULL OR jsonb_typeof(cell.v) = 'null' THEN 'null'::jsonb
                        WHEN cell.kind = 'bigint' THEN to_jsonb(cell.v::numeric::bigint)
                        WHEN cell.kind = 'ist' THEN
                            CASE WHEN cell.v #>> '{}' = '' THEN 'null'::jsonb
                                 ELSE to_jsonb((cell.v #>> '{}') || '+05:30') END
                        WHEN cell.kind = 'time' AND cell.v #>> '{}' = '' THEN 'null'::jsonb
                        ELSE cell.v END) AS r
          FROM cell
         GROUP BY cell.ord
    ), conv AS (
        SELECT it.ord,
               coalesce(it.preset, ro.bad,
                        CASE WHEN ro.ord IS NULL THEN tbl || ': not an object' END) AS bad,
               ro.r || it.x || jsonb_build_object('raw', it.e, 'updated_at', now(),
                                                  'status_changed_at', now()) AS r
          FROM it LEFT JOIN row_of ro ON ro.ord = it.ord
    ), keyed AS (
        SELECT conv.ord, conv.bad, conv.r,
               row_number() OVER (PARTITION BY CASE WHEN conv.bad IS NULL
                                                    THEN (SELECT jsonb_agg(conv.r -> k) FROM unnest(keycols) k) END
                                  ORDER BY conv.ord DESC) AS rn
          FROM conv
    )
    SELECT coalesce(jsonb_agg(keyed.r ORDER BY keyed.ord)
                        FILTER (WHERE keyed.bad IS NULL AND keyed.rn = 1), '[]'),
           count(*) FILTER (WHERE keyed.bad IS NOT NULL OR keyed.rn > 1),
           (array_agg(coalesce(keyed.bad, tbl || ': duplicate key') ORDER BY keyed.ord)
                FILTER (WHERE keyed.bad IS NOT NULL OR keyed.rn > 1))[1]
      INTO good, n_rej, first_bad
      FROM keyed;

    -- the columns written: the mapped fields, the derived ones, raw and
    -- updated_at (columns other modules add to the table are left alone)
    SELECT array_agg(a.attname::text ORDER BY a.attnum)
      INTO cols
      FROM pg_attribute a
     WHERE a.attrelid = format('@extschema@.%I', tbl)::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
       AND (a.attname IN (SELECT f->>'col' FROM jsonb_array_elements(spec) f)
            OR a.attname = ANY (keycols)
            OR a.attname IN ('raw', 'updated_at', 'previous_status', 'status_changed_at', 'mode'));
    SELECT string_agg(quote_ident(c), ', ') INTO collist FROM unnest(cols) c;
    SELECT string_agg(format('x.%1$I = i.%1$I', k), ' AND ')
      INTO joined FROM unnest(keycols) k;
    SELECT string_agg(CASE c
               WHEN 'previous_status' THEN 'previous_status = CASE WHEN x.status IS DISTINCT FROM EXCLUDED.status THEN x.status ELSE x.previous_status END'
               WHEN 'status_changed_at' THEN 'status_changed_at = CASE WHEN x.status IS DISTINCT FROM EXCLUDED.status THEN EXCLUDED.status_changed_at ELSE x.status_changed_at END'
               ELSE format('%1$I = EXCLUDED.%1$I', c) END, ', ')
      INTO setlist FROM unnest(cols) c WHERE c <> ALL (keycols);

    IF tbl = 'orders' THEN
        RETURN QUERY
        SELECT 'final_order'::text, coalesce(i.transaction_type, 'unknown'), i.status
          FROM jsonb_populate_recordset(NULL::@extschema@.orders, good) i
          LEFT JOIN @extschema@.orders o ON o.order_id = i.order_id
         WHERE i.status IN ('COMPLETE', 'CANCELLED', 'REJECTED')
           AND (o.order_id IS NULL OR o.status IS DISTINCT FROM i.status)
         ORDER BY i.order_id;
    END IF;

    EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                           count(*) FILTER (WHERE x.%1$I IS NOT NULL AND x.raw IS DISTINCT FROM i.raw)
                      FROM jsonb_populate_recordset(NULL::@extschema@.%2$I, $1) i
                      LEFT JOIN @extschema@.%2$I x ON %3$s',
                   keycols[1], tbl, joined)
      INTO n_ins, n_upd USING good;
    IF replace_all AND n_rej = 0 THEN
        EXECUTE format('DELETE FROM @extschema@.%1$I x WHERE NOT EXISTS
                          (SELECT 1 FROM jsonb_populate_recordset(NULL::@extschema@.%1$I, $1) i
                            WHERE %2$s)', tbl, joined) USING good;
        GET DIAGNOSTICS n = ROW_COUNT;
        n_del := n_del + n;
    END IF;
    EXECUTE format('INSERT INTO @extschema@.%1$I AS x (%2$s)
                    SELECT %2$s FROM jsonb_populate_recordset(NULL::@extschema@.%1$I, $1)
                    ON CONFLICT (%3$s) DO UPDATE SET %4$s
                    WHERE x.raw IS DISTINCT FROM EXCLUDED.raw',
                   tbl, collist, array_to_string(ARRAY(SELECT quote_ident(k) FROM unnest(keycols) k), ', '),
                   setlist) USING good;
    IF n_ins + n_upd + n_del > 0 THEN
        PERFORM @extschema@._notify_change(tbl);
    END IF;
    IF n_rej > 0 THEN
        RETURN QUERY SELECT 'rejected'::text, first_bad, n_rej::text;
    END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Per endpoint: the shape of "data", then _apply_items.  A wrong shape of
-- data itself rejects the whole response (TR305, the field named in the
-- error's COLUMN).
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._require(data jsonb, type text, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> type THEN
        RAISE EXCEPTION 'broker response: % is not an %', what, type
            USING ERRCODE = 'TR305', COLUMN = what;
    END IF;
END
$$;

-- The entry point for orders: one Kite order object or an array of them
-- (the data of GET /orders, or a streamed order update), validated and
-- merged into trading.orders.  Orders are never deleted; a status change
-- sets previous_status and status_changed_at.
CREATE FUNCTION @extschema@._apply_orders(data jsonb)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(data) = 'object' THEN
        data := jsonb_build_array(data);
    END IF;
    PERFORM @extschema@._require(data, 'array', 'orders.data');
    RETURN QUERY SELECT * FROM @extschema@._apply_items('orders', '{order_id}', false,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', o)), '[]')
           FROM jsonb_array_elements(data) o));
END
$$;
COMMENT ON FUNCTION @extschema@._apply_orders(jsonb) IS
    'Validate and apply Kite order objects (one object or an array) to trading.orders';

CREATE FUNCTION @extschema@._apply_trades(data jsonb)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'trades.data');
    RETURN QUERY SELECT * FROM @extschema@._apply_items('trades', '{order_id,trade_id}', false,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', t)), '[]')
           FROM jsonb_array_elements(data) t));
END
$$;

CREATE FUNCTION @extschema@._apply_positions(data jsonb)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'positions.data');
    PERFORM @extschema@._require(data->'net', 'array', 'positions.net');
    PERFORM @extschema@._require(data->'day', 'array', 'positions.day');
    RETURN QUERY SELECT * FROM @extschema@._apply_items('positions',
        '{kind,exchange,tradingsymbol,product}', true,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', p, 'x', jsonb_build_object('kind', k.kind))), '[]')
           FROM (VALUES ('net'), ('day')) k(kind), jsonb_array_elements(data->k.kind) p));
END
$$;

CREATE FUNCTION @extschema@._apply_holdings(data jsonb)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'holdings.data');
    RETURN QUERY SELECT * FROM @extschema@._apply_items('holdings', '{exchange,tradingsymbol}', true,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', h)), '[]')
           FROM jsonb_array_elements(data) h));
END
$$;

CREATE FUNCTION @extschema@._apply_margins(data jsonb)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'margins.data');
    RETURN QUERY SELECT * FROM @extschema@._apply_items('margins', '{segment}', true,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', e.value, 'x',
                    jsonb_build_object('segment', e.key),
                    'bad', CASE WHEN e.key NOT IN ('equity', 'commodity') THEN 'margins.segment' END)), '[]')
           FROM jsonb_each(data) e));
END
$$;

-- Quotes of one batch (mode 'ltp', 'ohlc' or 'full').  An instrument the
-- broker left out keeps its last quote; instruments no longer on the
-- watchlist are removed (and not added, if they left it while the request
-- was in flight).
CREATE FUNCTION @extschema@._apply_quotes(data jsonb, mode text)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_del bigint;
BEGIN
    PERFORM @extschema@._require(data, 'object', 'quotes.data');
    DELETE FROM @extschema@.quotes x
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = x.instrument);
    GET DIAGNOSTICS n_del = ROW_COUNT;
    RETURN QUERY SELECT * FROM @extschema@._apply_items('quotes', '{instrument}', false,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('e', e.value, 'x',
                    jsonb_build_object('instrument', e.key, 'mode', _apply_quotes.mode))), '[]')
           FROM jsonb_each(data) e
          WHERE EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = e.key)),
        n_del);
END
$$;

-- ---------------------------------------------------------------------
-- One response: the Kite envelope, then the endpoint's mapping.  Returns
-- rows (kind, name, detail):
--   ('broker_error', Kite error_type, message)  status "error": no table
--       touched (error_type is a word of at most 40 letters or
--       GeneralException; the message is cut to 200 characters without
--       control characters)
--   ('not_applied', http_status, reason)  a success envelope on a status
--       other than 2xx: no table touched
--   and the rows of _apply_items when applied.
-- A body that is not JSON raises 22P02 (malformed), not a Kite envelope
-- TR304, a wrong shape of data TR305; the caller rolls back.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._apply_response(endpoint text, body text,
                                            http_status integer DEFAULT 200)
    RETURNS TABLE (kind text, name text, detail text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb := body::jsonb;
    etype text;
BEGIN
    IF jsonb_typeof(doc) <> 'object' OR jsonb_typeof(doc->'status') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'broker response is not a Kite envelope' USING ERRCODE = 'TR304';
    END IF;
    IF doc->>'status' = 'error' THEN
        etype := CASE WHEN jsonb_typeof(doc->'error_type') = 'string'
                           AND doc->>'error_type' ~ '^[A-Za-z]{1,40}$'
                      THEN doc->>'error_type' ELSE 'GeneralException' END;
        RETURN QUERY SELECT 'broker_error'::text, etype,
            CASE WHEN jsonb_typeof(doc->'message') = 'string'
                 THEN left(regexp_replace(doc->>'message', '[[:cntrl:]]+', ' ', 'g'), 200)
                 ELSE '' END;
        RETURN;
    END IF;
    IF doc->>'status' <> 'success' THEN
        RAISE EXCEPTION 'broker response has an unknown status' USING ERRCODE = 'TR304';
    END IF;
    IF http_status IS NULL OR http_status NOT BETWEEN 200 AND 299 THEN
        RETURN QUERY SELECT 'not_applied'::text, http_status::text,
            'a success envelope with HTTP status ' || coalesce(http_status::text, 'unknown');
        RETURN;
    END IF;
    CASE endpoint
        WHEN 'orders' THEN
            PERFORM @extschema@._require(doc->'data', 'array', 'orders.data');
            RETURN QUERY SELECT * FROM @extschema@._apply_orders(doc->'data');
        WHEN 'trades' THEN RETURN QUERY SELECT * FROM @extschema@._apply_trades(doc->'data');
        WHEN 'positions' THEN RETURN QUERY SELECT * FROM @extschema@._apply_positions(doc->'data');
        WHEN 'holdings' THEN RETURN QUERY SELECT * FROM @extschema@._apply_holdings(doc->'data');
        WHEN 'margins' THEN RETURN QUERY SELECT * FROM @extschema@._apply_margins(doc->'data');
        WHEN 'quotes:ltp' THEN RETURN QUERY SELECT * FROM @extschema@._apply_quotes(doc->'data', 'ltp');
        WHEN 'quotes:ohlc' THEN RETURN QUERY SELECT * FROM @extschema@._apply_quotes(doc->'data', 'ohlc');
        WHEN 'quotes:full' THEN RETURN QUERY SELECT * FROM @extschema@._apply_quotes(doc->'data', 'full');
        ELSE RAISE EXCEPTION 'unknown endpoint "%"', endpoint USING ERRCODE = '22023';
    END CASE;
END
$$;
COMMENT ON FUNCTION @extschema@._apply_response(text, text, integer) IS
    'Validate and apply one broker response (the worker calls it, one transaction per response)';

-- ---------------------------------------------------------------------
-- worker_errors names the field of the last schema error.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._worker_errors_detail(OUT endpoint text, OUT error_type text,
                                                  OUT errors_total bigint, OUT last_field text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_errors';
CREATE OR REPLACE VIEW @extschema@.worker_errors AS
    SELECT endpoint, error_type, errors_total, last_field
      FROM @extschema@._worker_errors_detail();
DROP FUNCTION @extschema@._worker_errors();
GRANT EXECUTE ON FUNCTION @extschema@._worker_errors_detail() TO trading_reader;

-- ---------------------------------------------------------------------
-- The watchlist: EXCHANGE:TRADINGSYMBOL in printable ASCII, at most 64
-- bytes; single spaces inside the symbol are allowed (indices: 'NSE:NIFTY
-- 50'; 1.0 refused them), none at either end.  An instrument the broker
-- refuses is marked and skipped.
-- ---------------------------------------------------------------------
ALTER TABLE @extschema@.watchlist
    DROP CONSTRAINT watchlist_instrument_check,
    ADD CONSTRAINT watchlist_instrument_length CHECK (octet_length(instrument) <= 64
                                                       AND instrument ~ '^[A-Z]{1,16}:[!-~]([ -~]{0,45}[!-~])?$'
                                                       AND instrument !~ '  '),
    ADD COLUMN refused_at timestamptz,
    ADD COLUMN refused_reason text;
COMMENT ON COLUMN @extschema@.watchlist.refused_at IS
    'When the broker refused this instrument (the worker skips it until refused_at is set back to NULL)';

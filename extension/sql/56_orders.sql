-- 1.1: orders from SQL (docs/ORDERS.md).  An exactly-once outbox: a
-- trader inserts a request (place, modify, cancel) in its own transaction,
-- the pre-trade risk checks run at once, and the "trading order sender"
-- background worker, woken by the commit, sends it to the broker and
-- records the outcome.  A request whose fate is ambiguous ("unknown") is
-- reconciled against the broker's order book by its tag, never re-sent.
--
-- Columns the worker owns (state, attempts, sent_at, ...) are not granted
-- to traders; the BEFORE INSERT trigger fills the rest and checks risk.

CREATE SEQUENCE @extschema@.order_requests_id_seq;
CREATE TABLE @extschema@.order_requests (
    id                 bigint PRIMARY KEY DEFAULT nextval('@extschema@.order_requests_id_seq'),
    kind               text NOT NULL DEFAULT 'place'
                       CHECK (kind IN ('place', 'modify', 'cancel')),
    tag                text UNIQUE CHECK (tag ~ '^[A-Za-z0-9]{1,20}$'),
    variety            text NOT NULL DEFAULT 'regular'
                       CHECK (variety IN ('regular', 'amo', 'co', 'iceberg', 'auction')),
    exchange           text,
    tradingsymbol      text,
    transaction_type   text CHECK (transaction_type IN ('BUY', 'SELL')),
    order_type         text CHECK (order_type IN ('MARKET', 'LIMIT', 'SL', 'SL-M')),
    quantity           integer CHECK (quantity > 0),
    product            text CHECK (product IN ('CNC', 'NRML', 'MIS', 'MTF')),
    price              numeric CHECK (price >= 0),
    trigger_price      numeric CHECK (trigger_price >= 0),
    validity           text CHECK (validity IN ('DAY', 'IOC', 'TTL')),
    disclosed_quantity integer CHECK (disclosed_quantity >= 0),
    market_protection  numeric CHECK (market_protection = -1 OR market_protection BETWEEN 0 AND 100),
    order_id           text,
    strategy           text,
    state              text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'risk_rejected', 'halted', 'expired',
                                        'sending', 'placed', 'rejected', 'unknown', 'failed',
                                        'verifying')),
    state_reason       text,
    error_type         text,
    attempts           integer NOT NULL DEFAULT 0,
    correlation_id     uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    acked_at           timestamptz,
    valid_until        timestamptz,
    requested_by       text NOT NULL DEFAULT session_user,
    -- owned by the worker
    retry_at           timestamptz,     -- a retry after an error that proves the request never left
    unknown_since      timestamptz,     -- when the ambiguity arose ('unknown', 'verifying')
    generation         integer NOT NULL DEFAULT 0,   -- retry_order(): a new tag each time
    adopted            boolean NOT NULL DEFAULT false,   -- 'verifying' found at the broker: sent by a previous run
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'place' OR order_id IS NOT NULL)
);
CREATE INDEX order_requests_open_idx ON @extschema@.order_requests (id)
    WHERE state IN ('pending', 'sending', 'unknown', 'verifying');
CREATE INDEX order_requests_order_id_idx ON @extschema@.order_requests (order_id);
CREATE INDEX order_requests_strategy_idx ON @extschema@.order_requests (strategy, created_at);
COMMENT ON TABLE @extschema@.order_requests IS
    'One row per order request (place, modify, cancel), sent exactly once by the trading order sender';

-- Limits: scope 'global' (key ''), 'strategy' (key = strategy) or
-- 'instrument' (key = EXCHANGE:TRADINGSYMBOL).  NULL = no limit.
CREATE TABLE @extschema@.risk_limits (
    scope                 text NOT NULL CHECK (scope IN ('global', 'strategy', 'instrument')),
    key                   text NOT NULL DEFAULT '',
    max_order_quantity    integer CHECK (max_order_quantity > 0),
    max_order_value       numeric CHECK (max_order_value > 0),
    max_position          bigint CHECK (max_position >= 0),
    max_orders_per_minute integer CHECK (max_orders_per_minute > 0),
    max_daily_loss        numeric CHECK (max_daily_loss > 0),
    PRIMARY KEY (scope, key),
    CHECK ((scope = 'global') = (key = ''))
);
COMMENT ON TABLE @extschema@.risk_limits IS
    'Pre-trade risk limits, global, per strategy and per instrument (docs/ORDERS.md)';

-- Exchange freeze quantities: the most one order may carry.
CREATE TABLE @extschema@.freeze_quantities (
    exchange        text NOT NULL,
    tradingsymbol   text NOT NULL,
    freeze_quantity integer NOT NULL CHECK (freeze_quantity > 0),
    PRIMARY KEY (exchange, tradingsymbol)
);

-- The kill switch: no row, or mode 'active', means trading is allowed.
CREATE TABLE @extschema@.trading_switch (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    mode       text NOT NULL CHECK (mode IN ('active', 'halt', 'reduce_only')),
    reason     text,
    changed_by text NOT NULL DEFAULT session_user,
    changed_at timestamptz NOT NULL DEFAULT now(),
    tripped    boolean NOT NULL DEFAULT false   -- set by the daily-loss trip
);

-- The dead man's switch.
CREATE TABLE @extschema@.strategy_heartbeats (
    strategy  text PRIMARY KEY,
    beat_at   timestamptz NOT NULL,
    ttl       interval NOT NULL CHECK (ttl > interval '0'),
    lapsed_at timestamptz
);

-- Broker orders carrying a tag of ours that no request knows.
CREATE TABLE @extschema@.adopted_orders (
    order_id   text PRIMARY KEY,
    tag        text NOT NULL,
    status     text,
    adopted_at timestamptz NOT NULL DEFAULT now(),
    raw        jsonb NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_requests', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_requests_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.risk_limits', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.freeze_quantities', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.trading_switch', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.strategy_heartbeats', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.adopted_orders', '');

-- ---------------------------------------------------------------------
-- C entry points (extension/order_sql.c)
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._order_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'order_requests_wake';
COMMENT ON FUNCTION @extschema@._order_wake() IS
    'Wake the order sender when the inserting transaction commits (never on rollback)';
CREATE FUNCTION @extschema@._order_require_primary(action text) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'order_require_primary';

-- ---------------------------------------------------------------------
-- Risk checks
-- ---------------------------------------------------------------------

-- Signed net position of an instrument (positions + open orders + requests
-- not yet visible as broker orders).
CREATE FUNCTION @extschema@._order_exposure(p_exchange text, p_symbol text, p_exclude bigint)
    RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT sum(quantity) FROM @extschema@.positions
                      WHERE kind = 'net' AND exchange = p_exchange AND tradingsymbol = p_symbol), 0)
         + coalesce((SELECT sum(CASE WHEN transaction_type = 'BUY' THEN 1 ELSE -1 END
                                * coalesce(pending_quantity, 0))
                       FROM @extschema@.orders
                      WHERE exchange = p_exchange AND tradingsymbol = p_symbol
                        AND status NOT IN ('COMPLETE', 'CANCELLED', 'REJECTED')), 0)
         + coalesce((SELECT sum(CASE WHEN r.transaction_type = 'BUY' THEN 1 ELSE -1 END * r.quantity)
                       FROM @extschema@.order_requests r
                      WHERE r.kind = 'place' AND r.exchange = p_exchange AND r.tradingsymbol = p_symbol
                        AND r.id <> p_exclude
                        AND (r.state IN ('pending', 'sending', 'unknown', 'verifying')
                             OR (r.state = 'placed' AND NOT EXISTS
                                 (SELECT FROM @extschema@.orders o WHERE o.order_id = r.order_id)))), 0)
$$;

CREATE FUNCTION @extschema@._order_fail(code text, msg text, hint text)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = msg, HINT = hint;
END
$$;

-- Every pre-trade check of one request; raises the first refusal.
CREATE FUNCTION @extschema@._order_check(r @extschema@.order_requests)
    RETURNS void LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sw      @extschema@.trading_switch;
    inst    @extschema@.instruments;
    frz     integer;
    pos     bigint;
    exposure bigint;
    signed  bigint;
    px      numeric;
    lim     record;
    nmin    bigint;
    loss    numeric;
    nmod    bigint;
    ikey    text := r.exchange || ':' || r.tradingsymbol;
BEGIN
    SELECT * INTO sw FROM @extschema@.trading_switch;
    IF r.kind = 'cancel' THEN
        RETURN;                 -- a cancellation only ever reduces risk
    END IF;
    IF sw.mode = 'halt' THEN
        PERFORM @extschema@._order_fail('TR601', 'trading is halted: ' || coalesce(sw.reason, 'no reason given'),
            'An admin lifts the kill switch with trading.resume(); cancellations still pass.');
    END IF;
    IF r.strategy IS NOT NULL AND EXISTS (SELECT FROM @extschema@.strategy_heartbeats h
            WHERE h.strategy = r.strategy AND h.lapsed_at IS NOT NULL) THEN
        PERFORM @extschema@._order_fail('TR620', format('the heartbeat of strategy "%s" has lapsed', r.strategy),
            'Call trading.heartbeat() again to re-arm the strategy.');
    END IF;

    IF r.kind = 'modify' THEN
        IF sw.mode = 'reduce_only' THEN
            PERFORM @extschema@._order_fail('TR602', 'trading is reduce-only: modifications are refused',
                'Cancel the order instead, or ask an admin to call trading.resume().');
        END IF;
        SELECT count(*) INTO nmod FROM @extschema@.order_requests m
         WHERE m.kind = 'modify' AND m.order_id = r.order_id AND m.id <> r.id
           AND m.state NOT IN ('risk_rejected', 'halted', 'expired', 'rejected', 'failed');
        IF nmod >= 25 THEN
            PERFORM @extschema@._order_fail('TR613', format('order %s has been modified 25 times', r.order_id),
                'Kite allows at most 25 modifications per order: cancel it and place a new one.');
        END IF;
        RETURN;
    END IF;

    -- place: Kite's rules
    IF r.order_type IN ('LIMIT', 'SL') AND coalesce(r.price, 0) <= 0 THEN
        PERFORM @extschema@._order_fail('TR614', format('a %s order needs a price', r.order_type),
            'Pass price => ... (or use a MARKET order).');
    END IF;
    IF r.order_type IN ('SL', 'SL-M') AND coalesce(r.trigger_price, 0) <= 0 THEN
        PERFORM @extschema@._order_fail('TR614', format('a %s order needs a trigger_price', r.order_type),
            'Pass trigger_price => ... .');
    END IF;
    IF r.order_type IN ('MARKET', 'SL-M') AND r.market_protection = 0 THEN
        PERFORM @extschema@._order_fail('TR614', 'market_protection 0 is refused by the broker',
            'Use -1 (automatic) or a percentage from 1 to 100.');
    END IF;

    -- instrument rules
    SELECT * INTO inst FROM @extschema@.instruments i
     WHERE i.exchange = r.exchange AND i.tradingsymbol = r.tradingsymbol;
    IF NOT FOUND THEN
        PERFORM @extschema@._order_fail('TR609', format('unknown instrument %s', ikey),
            'Check the exchange and tradingsymbol against trading.instruments (loaded from the broker''s instrument master).');
    END IF;
    IF coalesce(inst.lot_size, 1) > 1 AND r.quantity % inst.lot_size <> 0 THEN
        PERFORM @extschema@._order_fail('TR610',
            format('quantity %s of %s is not a multiple of its lot size %s', r.quantity, ikey, inst.lot_size),
            'Round the quantity to whole lots.');
    END IF;
    IF coalesce(inst.tick_size, 0) > 0 THEN
        IF (coalesce(r.price, 0) % inst.tick_size) <> 0 OR (coalesce(r.trigger_price, 0) % inst.tick_size) <> 0 THEN
            PERFORM @extschema@._order_fail('TR611',
                format('price of %s is not a multiple of its tick size %s', ikey, inst.tick_size),
                'Round price and trigger_price to the tick size.');
        END IF;
    END IF;
    SELECT f.freeze_quantity INTO frz FROM @extschema@.freeze_quantities f
     WHERE f.exchange = r.exchange AND f.tradingsymbol = r.tradingsymbol;
    IF frz IS NOT NULL AND r.quantity > frz THEN
        PERFORM @extschema@._order_fail('TR612',
            format('quantity %s of %s is above the exchange freeze quantity %s', r.quantity, ikey, frz),
            'Slice the order into several of at most the freeze quantity.');
    END IF;

    signed := CASE WHEN r.transaction_type = 'BUY' THEN r.quantity ELSE -r.quantity END;
    IF sw.mode = 'reduce_only' THEN
        SELECT coalesce(sum(quantity), 0) INTO pos FROM @extschema@.positions
         WHERE kind = 'net' AND exchange = r.exchange AND tradingsymbol = r.tradingsymbol;
        IF NOT (pos <> 0 AND sign(pos) <> sign(signed) AND abs(signed) <= abs(pos)) THEN
            PERFORM @extschema@._order_fail('TR602',
                format('trading is reduce-only and this order does not reduce the position in %s (%s)', ikey, pos),
                'Only orders that reduce an open position pass until an admin calls trading.resume().');
        END IF;
    END IF;

    -- limits: every row that applies (global, the strategy's, the instrument's)
    FOR lim IN SELECT * FROM @extschema@.risk_limits l
                WHERE l.scope = 'global'
                   OR (l.scope = 'strategy' AND l.key = r.strategy)
                   OR (l.scope = 'instrument' AND l.key = ikey)
    LOOP
        IF lim.max_order_quantity IS NOT NULL AND r.quantity > lim.max_order_quantity THEN
            PERFORM @extschema@._order_fail('TR603',
                format('quantity %s is above the %s limit of %s per order', r.quantity,
                       lim.scope, lim.max_order_quantity), 'See trading.risk_limits.');
        END IF;
        IF lim.max_order_value IS NOT NULL THEN
            IF px IS NULL THEN
                px := coalesce(nullif(r.price, 0), nullif(r.trigger_price, 0),
                               (SELECT q.last_price FROM @extschema@.quotes q
                                 WHERE q.instrument = ikey
                                   AND q.updated_at > now() - interval '1 minute'));
            END IF;
            IF px IS NULL THEN
                PERFORM @extschema@._order_fail('TR605',
                    format('no fresh price is known for %s to check the order value', ikey),
                    'Add the instrument to trading.watchlist (the worker quotes it), or give a price.');
            END IF;
            IF r.quantity * px > lim.max_order_value THEN
                PERFORM @extschema@._order_fail('TR604',
                    format('order value %s is above the %s limit of %s', r.quantity * px,
                           lim.scope, lim.max_order_value), 'See trading.risk_limits.');
            END IF;
        END IF;
        IF lim.max_position IS NOT NULL THEN
            exposure := @extschema@._order_exposure(r.exchange, r.tradingsymbol, coalesce(r.id, -1));
            IF abs(exposure + signed) > lim.max_position AND abs(exposure + signed) > abs(exposure) THEN
                PERFORM @extschema@._order_fail('TR606',
                    format('the net position in %s would reach %s, above the %s limit of %s',
                           ikey, exposure + signed, lim.scope, lim.max_position),
                    'Position, open orders and queued requests count; see trading.risk_limits.');
            END IF;
        END IF;
        IF lim.max_orders_per_minute IS NOT NULL AND lim.scope = 'strategy' THEN
            SELECT count(*) INTO nmin FROM @extschema@.order_requests o
             WHERE o.strategy = r.strategy AND o.kind = 'place' AND o.id <> coalesce(r.id, -1)
               AND o.created_at > now() - interval '1 minute'
               AND o.state NOT IN ('risk_rejected');
            IF nmin >= lim.max_orders_per_minute THEN
                PERFORM @extschema@._order_fail('TR607',
                    format('strategy "%s" placed %s orders in the last minute, its limit', r.strategy, nmin),
                    'Wait, or raise max_orders_per_minute in trading.risk_limits.');
            END IF;
        END IF;
        IF lim.max_daily_loss IS NOT NULL AND lim.scope = 'global' THEN
            SELECT -coalesce(sum(coalesce(p.pnl, coalesce(p.realised, 0) + coalesce(p.unrealised, 0))), 0)
              INTO loss FROM @extschema@.positions p WHERE p.kind = 'net';
            IF loss >= lim.max_daily_loss THEN
                PERFORM @extschema@._order_fail('TR608',
                    format('the daily loss %s has reached its limit %s', loss, lim.max_daily_loss),
                    'The kill switch trips; an admin calls trading.resume() after review.');
            END IF;
        END IF;
    END LOOP;
END
$$;

-- _order_check as a child operation "order.risk_check" of the request; a
-- refusal also ends the request's operation (the caller's transaction
-- rolls back, the events stay).
CREATE FUNCTION @extschema@._order_checked(r @extschema@.order_requests)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op uuid := gen_random_uuid();
BEGIN
    PERFORM @extschema@._correlation_emit_begin(op, r.correlation_id, 'order.risk_check', '{}');
    BEGIN
        PERFORM @extschema@._order_check(r);
    EXCEPTION WHEN OTHERS THEN
        PERFORM @extschema@._correlation_emit_end(op, 'error', SQLSTATE || ': ' || left(SQLERRM, 200));
        RAISE;
    END;
    PERFORM @extschema@._correlation_emit_end(op, 'ok', NULL);
END
$$;

-- BEFORE INSERT: defaults the trader does not set, the tag, the checks.
CREATE FUNCTION @extschema@._order_before_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o @extschema@.orders;
    id_floor bigint;
BEGIN
    PERFORM @extschema@._order_require_primary('placing an order');
    -- Ids, and so tags, never repeat across a failover: each timeline
    -- numbers its requests from (timeline - 1) * 10^9.  A sequence is
    -- WAL-logged 32 values ahead; with asynchronous replication the record
    -- of a later batch can be lost with the old leader, which may already
    -- have sent requests with those ids.  The first insert on a new
    -- timeline moves the sequence past its floor (an advisory lock keeps
    -- two such inserts from taking the same id).
    id_floor := ((('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint) - 1)
                * 1000000000;
    IF NEW.id <= id_floor THEN
        PERFORM pg_advisory_xact_lock(pg_catalog.hashtext('trading.order_requests_id_seq'));
        NEW.id := nextval('@extschema@.order_requests_id_seq');
        IF NEW.id <= id_floor THEN
            PERFORM setval('@extschema@.order_requests_id_seq', id_floor + 1);
            NEW.id := id_floor + 1;
        END IF;
    END IF;
    NEW.state := 'pending';
    NEW.attempts := 0;
    NEW.generation := 0;
    NEW.adopted := false;
    NEW.sent_at := NULL;
    NEW.acked_at := NULL;
    NEW.retry_at := NULL;
    NEW.unknown_since := NULL;
    NEW.state_reason := NULL;
    NEW.error_type := NULL;
    NEW.created_at := now();
    NEW.updated_at := now();
    NEW.requested_by := session_user;
    NEW.tag := 'TR' || NEW.id;
    -- the request is an operation of its own (child of the caller's, if
    -- any): the sender's attempts, the checks and the reconciliation are
    -- its children; it ends when the request reaches a final state
    NEW.correlation_id := gen_random_uuid();
    IF NEW.kind = 'place' THEN
        NEW.order_id := NULL;
        IF NEW.exchange IS NULL OR NEW.tradingsymbol IS NULL OR NEW.transaction_type IS NULL
           OR NEW.quantity IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22004',
                MESSAGE = 'exchange, tradingsymbol, transaction_type and quantity are required';
        END IF;
        NEW.order_type := coalesce(NEW.order_type, 'MARKET');
        NEW.product := coalesce(NEW.product, 'MIS');
        NEW.validity := coalesce(NEW.validity, 'DAY');
        IF NEW.order_type IN ('MARKET', 'SL-M') THEN
            NEW.market_protection := coalesce(NEW.market_protection, -1);
        END IF;
        IF NEW.order_type IN ('MARKET', 'SL-M') THEN NEW.price := NULL; END IF;
        IF NEW.order_type IN ('MARKET', 'LIMIT') THEN NEW.trigger_price := NULL; END IF;
    ELSE
        SELECT * INTO o FROM @extschema@.orders WHERE order_id = NEW.order_id;
        IF NOT FOUND AND NOT EXISTS (SELECT FROM @extschema@.order_requests
                                      WHERE order_id = NEW.order_id AND kind = 'place') THEN
            RAISE EXCEPTION USING ERRCODE = 'TR615',
                MESSAGE = format('unknown order %s', NEW.order_id),
                HINT = 'Give the broker''s order_id of an order placed today (trading.order_book).';
        END IF;
        IF FOUND AND o.status IN ('COMPLETE', 'CANCELLED', 'REJECTED') THEN
            RAISE EXCEPTION USING ERRCODE = 'TR616',
                MESSAGE = format('order %s is %s and can no longer change', NEW.order_id, o.status),
                HINT = 'Only open orders can be modified or cancelled.';
        END IF;
        NEW.variety := coalesce(o.variety, NEW.variety);
        IF NEW.kind = 'cancel' THEN
            NEW.quantity := NULL; NEW.price := NULL; NEW.trigger_price := NULL;
        END IF;
    END IF;
    IF NEW.valid_until IS NULL AND (NEW.kind <> 'place' OR NEW.order_type = 'MARKET') THEN
        NEW.valid_until := now() + pg_catalog.current_setting('trading.order_market_validity')::interval;
    ELSIF NEW.valid_until IS NULL THEN
        NEW.valid_until := now() + pg_catalog.current_setting('trading.order_validity')::interval;
    END IF;
    PERFORM @extschema@._correlation_emit_begin(NEW.correlation_id, @extschema@.current_correlation_id(),
        'order.request', jsonb_build_object('id', NEW.id, 'kind', NEW.kind, 'tag', NEW.tag)::text);
    PERFORM @extschema@._order_checked(NEW);
    RETURN NEW;
END
$$;

CREATE FUNCTION @extschema@._order_final() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.correlation_id IS NOT NULL THEN
        PERFORM @extschema@._correlation_emit_end(NEW.correlation_id,
            CASE WHEN NEW.state = 'placed' THEN 'ok' ELSE 'error' END,
            CASE WHEN NEW.state = 'placed' THEN NULL
                 ELSE NEW.state || coalesce(': ' || left(NEW.state_reason, 200), '') END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER order_requests_before_insert BEFORE INSERT ON @extschema@.order_requests
    FOR EACH ROW EXECUTE FUNCTION @extschema@._order_before_insert();
CREATE TRIGGER order_requests_wake AFTER INSERT OR UPDATE OF state ON @extschema@.order_requests
    FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION @extschema@._order_wake();
CREATE TRIGGER order_requests_final AFTER UPDATE OF state ON @extschema@.order_requests
    FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state
                       AND NEW.state IN ('risk_rejected', 'halted', 'expired', 'placed', 'rejected', 'failed'))
    EXECUTE FUNCTION @extschema@._order_final();

-- Each fill (a trade the broker worker records for the order) is a child
-- operation "order.fill" of the request that placed the order, so the
-- chain reads request, checks, HTTP attempt(s), reconciliation, fills.
CREATE FUNCTION @extschema@._order_fill() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent uuid;
    op uuid;
BEGIN
    SELECT r.correlation_id INTO parent FROM @extschema@.order_requests r
     WHERE r.order_id = NEW.order_id AND r.kind = 'place' AND r.correlation_id IS NOT NULL
     ORDER BY r.id LIMIT 1;
    IF parent IS NOT NULL THEN
        op := gen_random_uuid();
        PERFORM @extschema@._correlation_emit_begin(op, parent, 'order.fill',
            jsonb_build_object('trade_id', NEW.trade_id, 'quantity', NEW.quantity,
                               'average_price', NEW.average_price)::text);
        PERFORM @extschema@._correlation_emit_end(op, 'ok', NULL);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER order_fills AFTER INSERT ON @extschema@.trades
    FOR EACH ROW EXECUTE FUNCTION @extschema@._order_fill();

-- ---------------------------------------------------------------------
-- The trader's functions
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@.place_order(
    exchange text, tradingsymbol text, transaction_type text, quantity integer,
    order_type text DEFAULT 'MARKET', product text DEFAULT 'MIS',
    price numeric DEFAULT NULL, trigger_price numeric DEFAULT NULL,
    variety text DEFAULT 'regular', validity text DEFAULT 'DAY',
    strategy text DEFAULT NULL, disclosed_quantity integer DEFAULT NULL,
    market_protection numeric DEFAULT NULL, valid_until timestamptz DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    PERFORM @extschema@._order_require_primary('placing an order');
    INSERT INTO @extschema@.order_requests AS r (kind, exchange, tradingsymbol, transaction_type, quantity,
        order_type, product, price, trigger_price, variety, validity, strategy,
        disclosed_quantity, market_protection, valid_until)
    VALUES ('place', upper(place_order.exchange), place_order.tradingsymbol,
        upper(place_order.transaction_type), place_order.quantity, upper(place_order.order_type),
        upper(place_order.product), place_order.price, place_order.trigger_price,
        place_order.variety, upper(place_order.validity), place_order.strategy,
        place_order.disclosed_quantity, place_order.market_protection, place_order.valid_until)
    RETURNING r.id INTO rid;
    RETURN rid;
END
$$;
COMMENT ON FUNCTION @extschema@.place_order(text, text, text, integer, text, text, numeric, numeric,
    text, text, text, integer, numeric, timestamptz) IS
    'Queue an order for placement (sent after COMMIT, exactly once); returns the request id';

CREATE FUNCTION @extschema@.modify_order(
    order_id text, quantity integer DEFAULT NULL, price numeric DEFAULT NULL,
    order_type text DEFAULT NULL, trigger_price numeric DEFAULT NULL,
    validity text DEFAULT NULL, disclosed_quantity integer DEFAULT NULL,
    strategy text DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    PERFORM @extschema@._order_require_primary('modifying an order');
    INSERT INTO @extschema@.order_requests AS r (kind, order_id, quantity, price, order_type,
        trigger_price, validity, disclosed_quantity, strategy)
    VALUES ('modify', modify_order.order_id, modify_order.quantity, modify_order.price,
        upper(modify_order.order_type), modify_order.trigger_price, upper(modify_order.validity),
        modify_order.disclosed_quantity, modify_order.strategy)
    RETURNING r.id INTO rid;
    RETURN rid;
END
$$;

CREATE FUNCTION @extschema@.cancel_order(order_id text)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rid bigint;
BEGIN
    PERFORM @extschema@._order_require_primary('cancelling an order');
    INSERT INTO @extschema@.order_requests AS r (kind, order_id)
    VALUES ('cancel', cancel_order.order_id)
    RETURNING r.id INTO rid;
    RETURN rid;
END
$$;

CREATE FUNCTION @extschema@.retry_order(id bigint)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r @extschema@.order_requests;
BEGIN
    PERFORM @extschema@._order_require_primary('retrying an order');
    SELECT * INTO r FROM @extschema@.order_requests o WHERE o.id = retry_order.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'TR615', MESSAGE = format('no order request %s', retry_order.id);
    END IF;
    IF r.state <> 'failed' THEN
        RAISE EXCEPTION USING ERRCODE = 'TR617',
            MESSAGE = format('request %s is %s, not failed', r.id, r.state),
            HINT = 'Only a failed request (proven absent at the broker) can be sent again.';
    END IF;
    r.generation := r.generation + 1;
    r.tag := 'TR' || r.id || 'R' || r.generation;
    r.valid_until := now() + pg_catalog.current_setting(CASE WHEN r.kind = 'place' AND r.order_type <> 'MARKET'
        THEN 'trading.order_validity' ELSE 'trading.order_market_validity' END)::interval;
    PERFORM @extschema@._order_check(r);
    UPDATE @extschema@.order_requests o
       SET state = 'pending', tag = r.tag, generation = r.generation, valid_until = r.valid_until,
           state_reason = 'retried by ' || session_user, error_type = NULL, retry_at = NULL,
           unknown_since = NULL, updated_at = now()
     WHERE o.id = r.id;
    RETURN r.id;
END
$$;

-- ---------------------------------------------------------------------
-- Kill switch and dead man's switch
-- ---------------------------------------------------------------------

-- cancel requests for every open order (of one strategy, or all)
CREATE FUNCTION @extschema@._order_cancel_open(p_strategy text)
    RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO @extschema@.order_requests (kind, order_id, variety, strategy)
    SELECT 'cancel', o.order_id, o.variety, p_strategy
      FROM @extschema@.orders o
     WHERE o.status NOT IN ('COMPLETE', 'CANCELLED', 'REJECTED')
       AND (p_strategy IS NULL OR EXISTS (SELECT FROM @extschema@.order_requests r
                WHERE r.order_id = o.order_id AND r.kind = 'place' AND r.strategy = p_strategy))
       AND NOT EXISTS (SELECT FROM @extschema@.order_requests c
                WHERE c.order_id = o.order_id AND c.kind = 'cancel'
                  AND c.state IN ('pending', 'sending', 'unknown', 'verifying'));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION @extschema@.halt(reason text, mode text DEFAULT 'halt', cancel_open boolean DEFAULT false)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._order_require_primary('halting trading');
    IF halt.mode NOT IN ('halt', 'reduce_only') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('unknown halt mode "%s"', halt.mode),
            HINT = 'Use ''halt'' or ''reduce_only''.';
    END IF;
    INSERT INTO @extschema@.trading_switch (mode, reason, changed_by, changed_at, tripped)
    VALUES (halt.mode, halt.reason, session_user, now(), false)
    ON CONFLICT (id) DO UPDATE SET mode = EXCLUDED.mode, reason = EXCLUDED.reason,
        changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at, tripped = false;
    IF halt.mode = 'halt' THEN
        UPDATE @extschema@.order_requests
           SET state = 'halted', state_reason = 'kill switch: ' || coalesce(halt.reason, ''), updated_at = now()
         WHERE state = 'pending' AND kind <> 'cancel';
    END IF;
    IF halt.cancel_open THEN
        PERFORM @extschema@._order_cancel_open(NULL);
    END IF;
    PERFORM pg_catalog.pg_notify('trading_halt', halt.mode || ': ' || coalesce(halt.reason, ''));
END
$$;

CREATE FUNCTION @extschema@.resume()
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._order_require_primary('resuming trading');
    UPDATE @extschema@.trading_switch
       SET mode = 'active', reason = NULL, changed_by = session_user, changed_at = now(), tripped = false;
    PERFORM pg_catalog.pg_notify('trading_halt', 'active');
END
$$;

CREATE FUNCTION @extschema@.heartbeat(strategy text, ttl interval)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._order_require_primary('a heartbeat');
    IF heartbeat.strategy IS NULL OR heartbeat.ttl IS NULL OR heartbeat.ttl <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'heartbeat needs a strategy and a positive ttl';
    END IF;
    INSERT INTO @extschema@.strategy_heartbeats AS h (strategy, beat_at, ttl, lapsed_at)
    VALUES (heartbeat.strategy, clock_timestamp(), heartbeat.ttl, NULL)
    ON CONFLICT ON CONSTRAINT strategy_heartbeats_pkey
    DO UPDATE SET beat_at = EXCLUDED.beat_at, ttl = EXCLUDED.ttl, lapsed_at = NULL;
END
$$;

-- Run by the worker about once a second: expiry, lapsed heartbeats, the
-- daily-loss trip.  Returns the number of strategies that lapsed now.
CREATE FUNCTION @extschema@._order_watchdog()
    RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    n integer := 0;
    k integer;
    lim numeric;
    loss numeric;
BEGIN
    PERFORM @extschema@._order_expire();
    FOR s IN UPDATE @extschema@.strategy_heartbeats SET lapsed_at = clock_timestamp()
              WHERE lapsed_at IS NULL AND beat_at + ttl < clock_timestamp()
              RETURNING strategy
    LOOP
        n := n + 1;
        UPDATE @extschema@.order_requests
           SET state = 'halted', state_reason = 'dead man''s switch: heartbeat lapsed', updated_at = now()
         WHERE state = 'pending' AND kind <> 'cancel' AND strategy = s.strategy;
        PERFORM @extschema@._order_cancel_open(s.strategy);
        PERFORM pg_catalog.pg_notify('trading_deadman', s.strategy);
    END LOOP;

    -- broker orders with a tag of ours that no request knows
    INSERT INTO @extschema@.adopted_orders (order_id, tag, status, raw)
    SELECT o.order_id, o.tag, o.status, o.raw FROM @extschema@.orders o
     WHERE o.tag ~ '^TR[0-9]+(R[0-9]+)?$'
       AND NOT EXISTS (SELECT FROM @extschema@.order_requests r WHERE r.tag = o.tag)
       AND NOT EXISTS (SELECT FROM @extschema@.adopted_orders a WHERE a.order_id = o.order_id);
    GET DIAGNOSTICS k = ROW_COUNT;
    IF k > 0 THEN
        PERFORM pg_catalog.pg_notify('trading_adopted', k::text);
    END IF;

    SELECT max_daily_loss INTO lim FROM @extschema@.risk_limits WHERE scope = 'global';
    IF lim IS NOT NULL AND coalesce((SELECT mode FROM @extschema@.trading_switch), 'active') <> 'halt' THEN
        SELECT -coalesce(sum(coalesce(p.pnl, coalesce(p.realised, 0) + coalesce(p.unrealised, 0))), 0)
          INTO loss FROM @extschema@.positions p WHERE p.kind = 'net';
        IF loss >= lim THEN
            INSERT INTO @extschema@.trading_switch (mode, reason, changed_by, tripped)
            VALUES ('halt', format('daily loss %s reached the limit %s', loss, lim), current_user, true)
            ON CONFLICT (id) DO UPDATE SET mode = 'halt', reason = EXCLUDED.reason,
                changed_by = EXCLUDED.changed_by, changed_at = now(), tripped = true;
            UPDATE @extschema@.order_requests
               SET state = 'halted', state_reason = 'kill switch: daily loss limit', updated_at = now()
             WHERE state = 'pending' AND kind <> 'cancel';
            PERFORM pg_catalog.pg_notify('trading_halt', 'halt: daily loss limit');
        END IF;
    END IF;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------
-- The worker's side
-- ---------------------------------------------------------------------

-- At start: whatever a previous worker left in flight may have reached
-- the broker ('sending' -> 'unknown').  And every placement still
-- 'pending' may have been sent too, by a previous run whose 'sending' was
-- lost: a leader that claimed it, sent it and died before its commit
-- reached the standby promoted since (asynchronous replication), or a
-- commit lost with synchronous_commit off.  Those are 'verifying': looked
-- up at the broker by their tag before anything is sent (_order_reconcile),
-- adopted as placed when found, pending again when the broker's book,
-- fetched at least trading.order_settle after now, lacks the tag.
CREATE FUNCTION @extschema@._order_recover(OUT unknown integer, OUT verifying integer)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.order_requests
       SET state = 'unknown', unknown_since = now(), updated_at = now(),
           state_reason = 'the sender stopped while the request was in flight'
     WHERE state = 'sending';
    GET DIAGNOSTICS unknown = ROW_COUNT;
    UPDATE @extschema@.order_requests
       SET state = 'verifying', unknown_since = now(), updated_at = now(),
           state_reason = 'pending when the sender started: a previous run may have sent it; '
                          'looked up at the broker by its tag before sending'
     WHERE state = 'pending' AND kind = 'place';
    GET DIAGNOSTICS verifying = ROW_COUNT;
END
$$;

-- Requests past valid_until that were not sent are expired: by the
-- watchdog (once a second) and by the claim (none is sent after it).
-- The worker picks its candidates with one kept query of its own (the
-- oldest pending requests whose retry time has come).
CREATE FUNCTION @extschema@._order_expire()
    RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE @extschema@.order_requests r
       SET state = 'expired', updated_at = now(),
           state_reason = coalesce(r.state_reason || '; ', '') || 'not sent before valid_until'
     WHERE r.state = 'pending' AND r.valid_until < now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Check again and mark 'sending' the requests whose budget the worker
-- holds; returns what to send: form is the body's fields as name/value
-- pairs in order (a NULL value: not sent), which the worker encodes
-- (libcurl's escaping).  Runs in the worker's transaction, which commits
-- before any of them leaves.
CREATE FUNCTION @extschema@._order_claim(ids bigint[])
    RETURNS TABLE (id bigint, kind text, tag text, variety text, order_id text, form text[],
                   correlation_id uuid)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r @extschema@.order_requests;
    f text[];
BEGIN
    FOR r IN SELECT * FROM @extschema@.order_requests o
              WHERE o.id = ANY (ids) AND o.state = 'pending' ORDER BY o.id FOR UPDATE
    LOOP
        IF r.valid_until < now() THEN
            UPDATE @extschema@.order_requests o
               SET state = 'expired', updated_at = now(),
                   state_reason = coalesce(r.state_reason || '; ', '') || 'not sent before valid_until'
             WHERE o.id = r.id;
            CONTINUE;
        END IF;
        BEGIN
            PERFORM @extschema@._order_checked(r);
        EXCEPTION WHEN OTHERS THEN
            UPDATE @extschema@.order_requests o
               SET state = CASE WHEN SQLSTATE IN ('TR601', 'TR602', 'TR608', 'TR620') THEN 'halted'
                                ELSE 'risk_rejected' END,
                   state_reason = SQLERRM, error_type = SQLSTATE, updated_at = now()
             WHERE o.id = r.id;
            CONTINUE;
        END;
        IF r.kind = 'place' THEN
            f := ARRAY['tradingsymbol', r.tradingsymbol, 'exchange', r.exchange,
                       'transaction_type', r.transaction_type, 'order_type', r.order_type,
                       'quantity', r.quantity::text, 'product', r.product, 'price', r.price::text,
                       'trigger_price', r.trigger_price::text, 'validity', r.validity,
                       'disclosed_quantity', r.disclosed_quantity::text,
                       'market_protection', r.market_protection::text, 'tag', r.tag];
        ELSIF r.kind = 'modify' THEN
            f := ARRAY['order_type', r.order_type, 'quantity', r.quantity::text, 'price', r.price::text,
                       'trigger_price', r.trigger_price::text, 'validity', r.validity,
                       'disclosed_quantity', r.disclosed_quantity::text];
        ELSE
            f := NULL;
        END IF;
        UPDATE @extschema@.order_requests o
           SET state = 'sending', attempts = o.attempts + 1, sent_at = now(), updated_at = now()
         WHERE o.id = r.id;
        id := r.id; kind := r.kind; tag := r.tag; variety := r.variety;
        order_id := r.order_id; form := f; correlation_id := r.correlation_id;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The outcome of one HTTP attempt.  outcome: placed, rejected, unknown,
-- retry (it never reached the broker).
CREATE FUNCTION @extschema@._order_result(p_id bigint, outcome text, p_order_id text,
                                          p_error_type text, p_message text, p_retry_after interval)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF outcome = 'placed' THEN
        UPDATE @extschema@.order_requests r
           SET state = 'placed', order_id = coalesce(p_order_id, r.order_id), acked_at = clock_timestamp(),
               error_type = NULL, state_reason = NULL, updated_at = now()
         WHERE r.id = p_id AND r.state = 'sending';
    ELSIF outcome = 'rejected' THEN
        UPDATE @extschema@.order_requests r
           SET state = 'rejected', acked_at = clock_timestamp(), error_type = p_error_type,
               state_reason = left(p_message, 500), updated_at = now()
         WHERE r.id = p_id AND r.state = 'sending';
    ELSIF outcome = 'unknown' THEN
        UPDATE @extschema@.order_requests r
           SET state = 'unknown', unknown_since = clock_timestamp(), error_type = p_error_type,
               state_reason = left(p_message, 500), updated_at = now()
         WHERE r.id = p_id AND r.state = 'sending';
    ELSE
        UPDATE @extschema@.order_requests r
           SET state = CASE WHEN r.valid_until < now() + p_retry_after THEN 'expired' ELSE 'pending' END,
               retry_at = now() + p_retry_after, error_type = p_error_type,
               state_reason = left(p_message, 500), updated_at = now()
         WHERE r.id = p_id AND r.state = 'sending';
    END IF;
END
$$;

-- Classify the reply to one attempt (the worker passes what it received)
-- and record it.  reached = false: the request provably never left (no
-- connection).  Broker data is untrusted: the body is checked for
-- encoding, JSON and the envelope's types before anything is kept.
CREATE FUNCTION @extschema@._order_response(p_id bigint, reached boolean, http_status integer,
                                            body bytea, transport_error text)
    RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j jsonb;
    backoff interval := least(interval '100 milliseconds' * (2 ^ least(
        (SELECT r.attempts FROM @extschema@.order_requests r WHERE r.id = p_id), 10)), interval '5 seconds');
    oid text;
    et text;
BEGIN
    IF NOT reached THEN
        PERFORM @extschema@._order_result(p_id, 'retry', NULL, 'connection', transport_error, backoff);
        RETURN 'retry';
    END IF;
    IF transport_error IS NOT NULL THEN
        PERFORM @extschema@._order_result(p_id, 'unknown', NULL, 'transport', transport_error, NULL);
        RETURN 'unknown';
    END IF;
    IF http_status = 429 THEN
        PERFORM @extschema@._order_result(p_id, 'retry', NULL, 'http_429', 'HTTP 429 from the broker', backoff);
        RETURN 'retry';
    END IF;
    BEGIN
        j := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        j := NULL;
    END;
    IF j IS NULL OR jsonb_typeof(j) <> 'object' OR jsonb_typeof(j->'status') <> 'string' THEN
        PERFORM @extschema@._order_result(p_id, 'unknown', NULL, 'not_kite',
            format('HTTP %s with a body that is not a Kite envelope', http_status), NULL);
        RETURN 'unknown';
    END IF;
    IF j->>'status' = 'success' AND http_status = 200 THEN
        oid := j->'data'->>'order_id';
        IF jsonb_typeof(j->'data') = 'object' AND jsonb_typeof(j->'data'->'order_id') IN ('string', 'number')
           AND oid ~ '^[A-Za-z0-9]{1,40}$' THEN
            PERFORM @extschema@._order_result(p_id, 'placed', oid, NULL, NULL, NULL);
            RETURN 'placed';
        END IF;
        PERFORM @extschema@._order_result(p_id, 'unknown', NULL, 'malformed',
            'a success reply without a valid order_id', NULL);
        RETURN 'unknown';
    END IF;
    et := CASE WHEN jsonb_typeof(j->'error_type') = 'string' THEN left(j->>'error_type', 40) END;
    IF j->>'status' = 'error' AND http_status BETWEEN 400 AND 499
       AND et IN ('InputException', 'OrderException', 'MarginException', 'TokenException',
                  'UserException', 'PermissionException', 'HoldingException') THEN
        PERFORM @extschema@._order_result(p_id, 'rejected', NULL, et,
            CASE WHEN jsonb_typeof(j->'message') = 'string' THEN j->>'message' END, NULL);
        RETURN 'rejected';
    END IF;
    PERFORM @extschema@._order_result(p_id, 'unknown', NULL, coalesce(et, 'http_' || http_status),
        format('HTTP %s: %s', http_status,
               CASE WHEN jsonb_typeof(j->'message') = 'string' THEN left(j->>'message', 200) ELSE '?' END), NULL);
    RETURN 'unknown';
END
$$;

-- Reconcile 'unknown' and 'verifying' requests against an order book
-- fetched at fetched_at: by exact tag only.  A request whose ambiguity
-- arose at least settle before the fetch and whose tag is absent has
-- failed ('unknown') or was never sent ('verifying': pending again, sent
-- now).  Tags of ours that no request knows are adopted.  Returns the
-- number of requests settled.
CREATE FUNCTION @extschema@._order_reconcile(book jsonb, fetched_at timestamptz, settle interval)
    RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    k integer;
    rec record;
    op uuid;
BEGIN
    IF jsonb_typeof(book) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'TR618', MESSAGE = 'the order book is not an array';
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS _order_book (order_id text, tag text, status text, raw jsonb)
        ON COMMIT DROP;
    TRUNCATE _order_book;
    INSERT INTO _order_book
    SELECT e->>'order_id', e->>'tag', e->>'status', e
      FROM jsonb_array_elements(book) e
     WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e->'order_id') = 'string'
       AND jsonb_typeof(e->'tag') = 'string';

    -- a child operation "order.reconcile" of each request this book settles
    FOR rec IN SELECT r.correlation_id, r.tag,
                      EXISTS (SELECT FROM _order_book b WHERE b.tag = r.tag) AS found
                 FROM @extschema@.order_requests r
                WHERE r.state IN ('unknown', 'verifying') AND r.correlation_id IS NOT NULL
                  AND (r.unknown_since + settle <= fetched_at
                       OR EXISTS (SELECT FROM _order_book b WHERE b.tag = r.tag))
    LOOP
        op := gen_random_uuid();
        PERFORM @extschema@._correlation_emit_begin(op, rec.correlation_id, 'order.reconcile',
            jsonb_build_object('tag', rec.tag, 'found', rec.found)::text);
        PERFORM @extschema@._correlation_emit_end(op, 'ok', NULL);
    END LOOP;

    -- placements: found by tag
    UPDATE @extschema@.order_requests r
       SET state = 'placed', order_id = b.order_id, acked_at = clock_timestamp(),
           state_reason = 'found at the broker by its tag after: ' || coalesce(r.state_reason, '?'),
           updated_at = now()
      FROM _order_book b
     WHERE r.state = 'unknown' AND r.kind = 'place' AND b.tag = r.tag;
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    -- placements a previous run may have sent: found by tag, adopted
    UPDATE @extschema@.order_requests r
       SET state = 'placed', order_id = b.order_id, acked_at = clock_timestamp(), adopted = true,
           state_reason = 'found at the broker by its tag: sent by a previous run whose record was lost',
           updated_at = now()
      FROM _order_book b
     WHERE r.state = 'verifying' AND b.tag = r.tag;
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    -- ... or absent after settling: never sent, sent now (the wake trigger)
    UPDATE @extschema@.order_requests r
       SET state = 'pending', unknown_since = NULL, updated_at = now(),
           state_reason = 'verified absent from the broker''s order book'
     WHERE r.state = 'verifying' AND r.unknown_since + settle <= fetched_at;
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    -- cancellations: the order's state answers
    UPDATE @extschema@.order_requests r
       SET state = CASE WHEN b.status = 'CANCELLED' THEN 'placed' ELSE 'failed' END,
           acked_at = clock_timestamp(), updated_at = now(),
           state_reason = 'the order is ' || b.status || ' after: ' || coalesce(r.state_reason, '?')
      FROM _order_book b
     WHERE r.state = 'unknown' AND r.kind = 'cancel' AND b.order_id = r.order_id
       AND r.unknown_since + settle <= fetched_at;
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    -- the rest: absent after settling
    UPDATE @extschema@.order_requests r
       SET state = 'failed', updated_at = now(),
           state_reason = CASE WHEN r.kind = 'place'
                THEN 'absent from the broker''s order book after: '
                ELSE 'the broker''s order book cannot confirm it after: ' END
                || coalesce(r.state_reason, '?')
     WHERE r.state = 'unknown' AND r.unknown_since + settle <= fetched_at;
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;

    INSERT INTO @extschema@.adopted_orders (order_id, tag, status, raw)
    SELECT b.order_id, b.tag, b.status, b.raw FROM _order_book b
     WHERE b.tag ~ '^TR[0-9]+(R[0-9]+)?$'
       AND NOT EXISTS (SELECT FROM @extschema@.order_requests r WHERE r.tag = b.tag)
    ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, raw = EXCLUDED.raw;
    GET DIAGNOSTICS k = ROW_COUNT;
    IF k > 0 THEN
        PERFORM pg_catalog.pg_notify('trading_adopted', k::text);
    END IF;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------
CREATE VIEW @extschema@.order_book AS
SELECT r.id, r.kind, r.tag, r.state, r.state_reason, r.error_type, r.strategy,
       r.exchange, r.tradingsymbol, r.transaction_type, r.order_type, r.quantity, r.price,
       r.order_id, o.status AS broker_status, o.filled_quantity, o.average_price,
       r.attempts, r.created_at, r.sent_at, r.acked_at, r.requested_by, r.correlation_id
  FROM @extschema@.order_requests r
  LEFT JOIN @extschema@.orders o ON o.order_id = r.order_id
UNION ALL
SELECT NULL, 'adopted', a.tag, 'adopted', 'a broker order with our tag that no request knows', NULL, NULL,
       a.raw->>'exchange', a.raw->>'tradingsymbol', a.raw->>'transaction_type', a.raw->>'order_type',
       (a.raw->>'quantity')::integer, NULL, a.order_id, coalesce(o.status, a.status), o.filled_quantity,
       o.average_price, NULL, a.adopted_at, NULL, NULL, NULL, NULL
  FROM @extschema@.adopted_orders a
  LEFT JOIN @extschema@.orders o ON o.order_id = a.order_id;

CREATE VIEW @extschema@.trading_state AS
SELECT coalesce(s.mode, 'active') AS mode, s.reason, s.changed_by, s.changed_at,
       coalesce(s.tripped, false) AS tripped_by_daily_loss,
       (SELECT count(*) FROM @extschema@.order_requests WHERE state = 'pending') AS pending,
       (SELECT count(*) FROM @extschema@.order_requests WHERE state = 'sending') AS sending,
       (SELECT count(*) FROM @extschema@.order_requests WHERE state = 'unknown') AS unknown,
       (SELECT count(*) FROM @extschema@.adopted_orders) AS adopted,
       (SELECT array_agg(strategy ORDER BY strategy) FROM @extschema@.strategy_heartbeats
         WHERE lapsed_at IS NOT NULL) AS lapsed_strategies,
       (SELECT count(*) FROM @extschema@.order_requests WHERE state = 'verifying') AS verifying,
       (SELECT count(*) FROM @extschema@.order_requests WHERE adopted) AS adopted_requests
  FROM (SELECT 1) one
  LEFT JOIN @extschema@.trading_switch s ON true;

-- ---------------------------------------------------------------------
-- Metrics (monitoring/queries.yaml exports them; alerts in
-- monitoring/alerts.yml; their rows of trading.metrics_catalog are
-- metrics_catalog_orders, which 72_ticker_metrics.sql adds)
-- ---------------------------------------------------------------------

-- trading_order_requests_in_state{kind,state,error_type}: every kind and state
-- has a series (0 when no request is in it, error_type '')
CREATE VIEW @extschema@.metrics_order_requests AS
    WITH c AS (
        SELECT kind, state, coalesce(error_type, '') AS error_type, count(*)::float8 AS total
          FROM @extschema@.order_requests GROUP BY 1, 2, 3)
    SELECT k.kind, s.state, coalesce(c.error_type, '') AS error_type, coalesce(c.total, 0) AS in_state
      FROM (VALUES ('place'), ('modify'), ('cancel')) k(kind)
     CROSS JOIN (VALUES ('pending'), ('verifying'), ('sending'), ('unknown'), ('placed'), ('rejected'),
                        ('failed'), ('risk_rejected'), ('halted'), ('expired')) s(state)
      LEFT JOIN c ON c.kind = k.kind AND c.state = s.state;

-- trading_order_latency_seconds{phase}: commit_to_ack (request created ->
-- the broker's reply recorded) and ack_to_fill (-> the broker worker saw
-- the order COMPLETE), as a Prometheus histogram
CREATE VIEW @extschema@.metrics_order_latency AS
    WITH obs AS (
        SELECT 'commit_to_ack' AS phase, extract(epoch FROM r.acked_at - r.created_at)::float8 AS v
          FROM @extschema@.order_requests r
         WHERE r.kind = 'place' AND r.acked_at IS NOT NULL AND r.state = 'placed'
        UNION ALL
        SELECT 'ack_to_fill', greatest(extract(epoch FROM o.status_changed_at - r.acked_at), 0)::float8
          FROM @extschema@.order_requests r
          JOIN @extschema@.orders o ON o.order_id = r.order_id
         WHERE r.kind = 'place' AND r.state = 'placed' AND o.status = 'COMPLETE'
           AND o.status_changed_at IS NOT NULL),
    bounds AS (SELECT ARRAY[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]::float8[] AS le)
    SELECT p.phase,
           b.le AS latency_seconds,
           ARRAY(SELECT (SELECT count(*) FROM obs WHERE obs.phase = p.phase AND obs.v <= x)
                   FROM unnest(b.le) x) AS latency_seconds_bucket,
           (SELECT coalesce(sum(obs.v), 0) FROM obs WHERE obs.phase = p.phase)::float8 AS latency_seconds_sum,
           (SELECT count(*) FROM obs WHERE obs.phase = p.phase) AS latency_seconds_count
      FROM (VALUES ('commit_to_ack'), ('ack_to_fill')) p(phase)
      CROSS JOIN bounds b;

-- trading_orders_{halted,reduce_only,tripped,adopted,unknown_over_1m,
-- daily_loss,max_daily_loss,sender_up,verifying,adopted_requests}
CREATE VIEW @extschema@.metrics_order_state AS
    SELECT (s.mode = 'halt')::int::float8 AS halted,
           (s.mode = 'reduce_only')::int::float8 AS reduce_only,
           s.tripped_by_daily_loss::int::float8 AS tripped,
           s.adopted::float8 AS adopted,
           (SELECT count(*) FROM @extschema@.order_requests
             WHERE state = 'unknown' AND unknown_since < now() - interval '1 minute')::float8 AS unknown_over_1m,
           (SELECT -coalesce(sum(coalesce(p.pnl, coalesce(p.realised, 0) + coalesce(p.unrealised, 0))), 0)
              FROM @extschema@.positions p WHERE p.kind = 'net')::float8 AS daily_loss,
           coalesce((SELECT max_daily_loss FROM @extschema@.risk_limits WHERE scope = 'global'), 0)::float8
               AS max_daily_loss,
           coalesce(array_length(s.lapsed_strategies, 1), 0)::float8 AS lapsed_strategies,
           (SELECT count(*) FROM pg_catalog.pg_stat_activity
             WHERE backend_type = 'trading order sender')::float8 AS sender_up,
           s.verifying::float8 AS verifying,
           s.adopted_requests::float8 AS adopted_requests
      FROM @extschema@.trading_state s;

CREATE VIEW @extschema@.metrics_catalog_orders (name, type, labels, help) AS VALUES
    ('trading_order_requests_in_state', 'gauge', '{kind,state,error_type}'::text[], 'Order requests by kind, state and error type.'),
    ('trading_order_latency_seconds', 'histogram', '{phase}', 'Order latency in seconds, by phase.'),
    ('trading_orders_halted', 'gauge', '{}', '1 while the kill switch is in mode halt.'),
    ('trading_orders_reduce_only', 'gauge', '{}', '1 while the kill switch is in mode reduce_only.'),
    ('trading_orders_tripped', 'gauge', '{}', '1 when the daily-loss limit tripped the kill switch.'),
    ('trading_orders_adopted', 'gauge', '{}', 'Broker orders with one of our tags that no request knows.'),
    ('trading_orders_unknown_over_1m', 'gauge', '{}', 'Requests unknown for more than a minute.'),
    ('trading_orders_daily_loss', 'gauge', '{}', 'Realised plus unrealised loss of the net positions (negative: a gain).'),
    ('trading_orders_max_daily_loss', 'gauge', '{}', 'The global max_daily_loss limit, 0 when none.'),
    ('trading_orders_lapsed_strategies', 'gauge', '{}', 'Strategies whose heartbeat lapsed.'),
    ('trading_orders_sender_up', 'gauge', '{}', '1 while the order sender runs.'),
    ('trading_orders_verifying', 'gauge', '{}', 'Placements being looked up at the broker by their tag before sending (after a sender start).'),
    ('trading_orders_adopted_requests', 'gauge', '{}', 'Requests found at the broker that a previous sender had sent (adopted, never sent again).');
COMMENT ON VIEW @extschema@.metrics_catalog_orders IS
    'The order outbox''s metrics (part of trading.metrics_catalog)';

GRANT SELECT ON @extschema@.metrics_order_requests, @extschema@.metrics_order_latency,
    @extschema@.metrics_order_state, @extschema@.metrics_catalog_orders TO trading_reader;

-- ---------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------
GRANT SELECT ON @extschema@.order_requests, @extschema@.risk_limits, @extschema@.freeze_quantities,
    @extschema@.trading_switch, @extschema@.strategy_heartbeats, @extschema@.adopted_orders,
    @extschema@.order_book, @extschema@.trading_state TO trading_reader;
GRANT INSERT (kind, variety, exchange, tradingsymbol, transaction_type, order_type, quantity,
    product, price, trigger_price, validity, disclosed_quantity, market_protection, order_id,
    strategy, valid_until) ON @extschema@.order_requests TO trading_trader;
GRANT USAGE ON SEQUENCE @extschema@.order_requests_id_seq TO trading_trader;
GRANT INSERT, UPDATE, DELETE ON @extschema@.risk_limits, @extschema@.freeze_quantities TO trading_admin;
GRANT EXECUTE ON FUNCTION
    @extschema@.place_order(text, text, text, integer, text, text, numeric, numeric, text, text, text,
                            integer, numeric, timestamptz),
    @extschema@.modify_order(text, integer, numeric, text, numeric, text, integer, text),
    @extschema@.cancel_order(text),
    @extschema@.retry_order(bigint),
    @extschema@.halt(text, text, boolean),
    @extschema@.heartbeat(text, interval),
    @extschema@._order_require_primary(text)
    TO trading_trader;
GRANT EXECUTE ON FUNCTION @extschema@.resume() TO trading_admin;

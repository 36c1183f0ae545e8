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
    AS 'MODULE_PATHNAME', 'broker_sql_set_session';
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
    AS 'MODULE_PATHNAME', 'broker_sql_clear_session';
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

-- The mapping functions (_apply_response, _apply_orders, ...) are in
-- 61_broker_response.sql.

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

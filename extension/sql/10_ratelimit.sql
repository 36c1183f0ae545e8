-- Rate limiter.  The table is the configuration; shared memory follows it
-- (a statement trigger applies each change at once, and every backend
-- re-reads the table after a change commits or aborts).

CREATE TABLE @extschema@.rate_limits (
    endpoint    text     NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 63),
    requests    integer  NOT NULL CHECK (requests >= 1),
    per         interval NOT NULL CHECK (per > interval '0'
                                         AND per <= interval '31 days'
                                         AND extract(month FROM per) = 0
                                         AND extract(year FROM per) = 0),
    PRIMARY KEY (endpoint, per)
);
COMMENT ON TABLE @extschema@.rate_limits IS
    'Rate limits: at most "requests" in any sliding window of length "per", per endpoint';

CREATE FUNCTION @extschema@._rate_limits_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'rate_limits_changed';
CREATE TRIGGER rate_limits_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._rate_limits_changed();

-- Kite Connect v3 limits per API key (../shared/KITE_API.md).
INSERT INTO @extschema@.rate_limits (endpoint, requests, per) VALUES
    ('kite.quote',      1,    interval '1 second'),
    ('kite.historical', 3,    interval '1 second'),
    ('kite.orders',     10,   interval '1 second'),
    ('kite.orders',     200,  interval '1 minute'),
    ('kite.orders',     3000, interval '1 day'),
    ('kite.api',        10,   interval '1 second');

CREATE FUNCTION @extschema@.rate_limit_set(endpoint text, requests integer, per interval)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_set';
COMMENT ON FUNCTION @extschema@.rate_limit_set(text, integer, interval) IS
    'Add or replace the limit of endpoint for window per: at most requests in any window of that length';

CREATE FUNCTION @extschema@.rate_limit_drop(endpoint text, per interval DEFAULT NULL)
    RETURNS integer LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_drop';
COMMENT ON FUNCTION @extschema@.rate_limit_drop(text, interval) IS
    'Drop one limit of endpoint (per given) or all of them; returns how many were dropped';

CREATE FUNCTION @extschema@.rate_limit_try(endpoint text, cost integer DEFAULT 1)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_try';
COMMENT ON FUNCTION @extschema@.rate_limit_try(text, integer) IS
    'Take cost requests from endpoint if every limit allows it now; never waits';

CREATE FUNCTION @extschema@.rate_limit_acquire(endpoint text, cost integer DEFAULT 1,
                                               timeout interval DEFAULT interval '10 seconds')
    RETURNS interval LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_acquire';
COMMENT ON FUNCTION @extschema@.rate_limit_acquire(text, integer, interval) IS
    'Wait (in arrival order) until endpoint grants cost requests; returns the time waited; SQLSTATE TR001 after timeout';

CREATE FUNCTION @extschema@._rate_limit_status(
    OUT endpoint text, OUT requests integer, OUT per interval, OUT used integer,
    OUT remaining integer, OUT retry_after interval, OUT granted_total bigint,
    OUT refused_total bigint, OUT waited_seconds_total double precision,
    OUT waiting integer, OUT timeouts_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_status';

CREATE VIEW @extschema@.rate_limit_status AS
    SELECT * FROM @extschema@._rate_limit_status() ORDER BY endpoint, per;
COMMENT ON VIEW @extschema@.rate_limit_status IS
    'Each limit of each endpoint: use in the current window and counters since start';

GRANT SELECT ON @extschema@.rate_limits TO trading_reader;
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON @extschema@.rate_limits TO trading_admin;
GRANT SELECT ON @extschema@.rate_limit_status TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._rate_limit_status() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_try(text, integer) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_acquire(text, integer, interval) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_set(text, integer, interval) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_drop(text, interval) TO trading_admin;

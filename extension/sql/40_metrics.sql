-- Metrics: counters and latency histograms kept in shared memory (see
-- extension/metrics.c), the SQL recording functions for strategies that run
-- outside the worker, and the views that prometheus-postgres-exporter reads
-- through monitoring/queries.yaml.  Business figures (read from the broker
-- tables), worker and correlation metrics, the trading.metrics view and
-- trading.metrics_prometheus() are in 70_metrics_business.sql.

-- ---- recording -----------------------------------------------------------

CREATE FUNCTION @extschema@.record_trade(side text, status text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_trade';
COMMENT ON FUNCTION @extschema@.record_trade(text, text) IS
    'Count one trade in trading_trades_total{side,status}; side is BUY or SELL';

CREATE FUNCTION @extschema@.record_api_request(endpoint text, duration_seconds double precision,
                                               status integer DEFAULT 200)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_api_request';
COMMENT ON FUNCTION @extschema@.record_api_request(text, double precision, integer) IS
    'Observe one broker API request in trading_api_request_duration_seconds{endpoint} and trading_api_requests_total{endpoint,code}; status 0 means no response';

CREATE FUNCTION @extschema@.record_exception(kind text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_exception';
COMMENT ON FUNCTION @extschema@.record_exception(text) IS
    'Count one exception in trading_exceptions_total{kind}';

-- ---- reading shared memory -------------------------------------------------

CREATE FUNCTION @extschema@._metrics_histograms(
    OUT endpoint text, OUT le double precision[], OUT buckets bigint[],
    OUT sum double precision, OUT count bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_histograms';

CREATE FUNCTION @extschema@._metrics_counters(
    OUT metric text, OUT label1 text, OUT label2 text, OUT value bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_counters';

-- ---- exporter-facing views (one per query of monitoring/queries.yaml) ------
-- Column names are what the exporter appends to the query's namespace.

-- trading_api_request_duration_seconds{endpoint}: cumulative buckets
-- without +Inf (the exporter adds it from _count), sum in seconds.
CREATE VIEW @extschema@.metrics_api_request_duration AS
    SELECT endpoint,
           le      AS request_duration_seconds,
           buckets AS request_duration_seconds_bucket,
           sum     AS request_duration_seconds_sum,
           count   AS request_duration_seconds_count
    FROM @extschema@._metrics_histograms();
COMMENT ON VIEW @extschema@.metrics_api_request_duration IS
    'Latency histogram of broker API requests per endpoint (bucket bounds 0.005 .. 10 s), for postgres_exporter';

-- trading_api_requests_total{endpoint,code}
CREATE VIEW @extschema@.metrics_api_requests AS
    SELECT label1 AS endpoint, label2 AS code, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'api_requests';
COMMENT ON VIEW @extschema@.metrics_api_requests IS
    'Broker API requests per endpoint and HTTP status class (1xx..5xx, no_response)';

-- trading_exceptions_total{kind}
CREATE VIEW @extschema@.metrics_exceptions AS
    SELECT label1 AS kind, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'exceptions';
COMMENT ON VIEW @extschema@.metrics_exceptions IS 'Exceptions per kind';

-- trading_trades_total{side,status}
CREATE VIEW @extschema@.metrics_trades AS
    SELECT label1 AS side, label2 AS status, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'trades';
COMMENT ON VIEW @extschema@.metrics_trades IS 'Trades recorded per side and status';

-- trading_metrics_label_overflow_total{metric}
CREATE VIEW @extschema@.metrics_label_overflow AS
    SELECT label1 AS metric, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'label_overflow';
COMMENT ON VIEW @extschema@.metrics_label_overflow IS
    'Recordings whose label set did not fit under trading.metrics_max_labels (worker: counted under "_overflow"; SQL: refused)';

-- trading_rate_limit_*{endpoint}: the totals are per endpoint (repeated on
-- each limit row of rate_limit_status), so take one row per endpoint.
CREATE VIEW @extschema@.metrics_rate_limit AS
    SELECT DISTINCT ON (endpoint)
           endpoint,
           granted_total,
           refused_total,
           waited_seconds_total AS wait_seconds_total,
           timeouts_total,
           waiting
    FROM @extschema@.rate_limit_status
    ORDER BY endpoint;
COMMENT ON VIEW @extschema@.metrics_rate_limit IS
    'Rate limiter grants, refusals, wait time and waiters per endpoint';

GRANT EXECUTE ON FUNCTION @extschema@._metrics_histograms() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._metrics_counters() TO trading_reader;
GRANT SELECT ON @extschema@.metrics_api_request_duration, @extschema@.metrics_api_requests,
    @extschema@.metrics_exceptions, @extschema@.metrics_trades,
    @extschema@.metrics_label_overflow, @extschema@.metrics_rate_limit TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.record_trade(text, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.record_api_request(text, double precision, integer) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.record_exception(text) TO trading_analyst;

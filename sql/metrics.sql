-- Metrics: recording functions, their validation, the views read by
-- postgres_exporter, trading.metrics and its Prometheus exposition.
-- Counters live in shared memory for the whole instance, so this test uses
-- label values of its own ("regress.*") and looks only at those.
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- ---- recording ----------------------------------------------------------
SET ROLE regress_trading_analyst;
SELECT trading.record_api_request('regress.orders', 0.004);
SELECT trading.record_api_request('regress.orders', 0.005);       -- on a bound: le="0.005"
SELECT trading.record_api_request('regress.orders', 0.0051);
SELECT trading.record_api_request('regress.orders', 0.3, 200);
SELECT trading.record_api_request('regress.orders', 9.5, 503);
SELECT trading.record_api_request('regress.orders', 42, 0);       -- no response, past 10 s
SELECT trading.record_api_request('regress.quote', 0, 429);
SELECT trading.record_exception('regress.TokenException');
SELECT trading.record_exception('regress.TokenException');
SELECT trading.record_exception('regress.NetworkException');
SELECT trading.record_trade('BUY', 'regress.COMPLETE');
SELECT trading.record_trade('SELL', 'regress.COMPLETE');
SELECT trading.record_trade('SELL', 'regress.COMPLETE');
SELECT trading.record_trade('BUY', 'regress.REJECTED');
-- labels are kept as given, up to 63 bytes, any printable character
SELECT trading.record_exception(repeat('é', 31) || 'x');
RESET ROLE;

-- The histogram: bounds, cumulative buckets (without +Inf), sum, count.
SELECT endpoint, request_duration_seconds, request_duration_seconds_bucket,
       round(request_duration_seconds_sum::numeric, 4) AS sum,
       request_duration_seconds_count AS count
FROM trading.metrics_api_request_duration WHERE endpoint LIKE 'regress.%' ORDER BY 1;

SELECT * FROM trading.metrics_api_requests
WHERE endpoint LIKE 'regress.%' AND total > 0 ORDER BY 1, 2;
SELECT count(*) AS classes_per_endpoint FROM trading.metrics_api_requests
WHERE endpoint = 'regress.quote';
SELECT * FROM trading.metrics_exceptions WHERE kind LIKE 'regress.%' ORDER BY 1;
SELECT length(kind), total FROM trading.metrics_exceptions WHERE kind LIKE 'ééé%';
SELECT * FROM trading.metrics_trades WHERE status LIKE 'regress.%' ORDER BY 1, 2;
SELECT * FROM trading.metrics_label_overflow ORDER BY 1;

-- ---- bad input: a clear error, nothing recorded --------------------------
SELECT trading.record_api_request(NULL, 0.1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 0.1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('', 0.1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request(repeat('x', 64), 0.1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request(repeat('x', 100000), 0.1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request(E'regress.bad\n', 0.1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', -0.001);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 'NaN');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 'Infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 86400.5);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 0.1, 99);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 0.1, 600);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_api_request('regress.bad', 0.1, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_exception(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_exception('');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_exception(E'regress\tbad');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade(NULL, 'regress.COMPLETE');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade('BUY', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade('buy', 'regress.COMPLETE');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade('HOLD', 'regress.COMPLETE');
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade('SELL', '');
\echo :LAST_ERROR_SQLSTATE
-- none of those left a trace
SELECT count(*) AS bad_labels FROM trading.metrics
WHERE labels::text LIKE '%regress.bad%' OR labels::text LIKE '%xxxxxxxxxx%'
   OR labels @> '{"side": "HOLD"}' OR labels @> '{"side": "buy"}';
SELECT sum(request_duration_seconds_count) AS still_7
FROM trading.metrics_api_request_duration WHERE endpoint LIKE 'regress.%';

-- ---- privileges -------------------------------------------------------------
SET ROLE regress_trading_reader;
SELECT count(*) > 0 AS reader_sees_metrics FROM trading.metrics;
SELECT count(*) = 1 AS reader_sees_business FROM trading.metrics_business;
SELECT trading.record_exception('regress.reader');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT count(*) FROM trading.metrics;
\echo :LAST_ERROR_SQLSTATE
SELECT trading.metrics_prometheus();
\echo :LAST_ERROR_SQLSTATE
SELECT trading.record_trade('BUY', 'regress.nobody');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- ---- trading.metrics ----------------------------------------------------------
-- Every sample has a name, labels, a value, a type and help from the catalogue.
SELECT count(*) FILTER (WHERE name IS NULL OR labels IS NULL OR type IS NULL
                               OR help IS NULL OR help = '') AS incomplete
FROM trading.metrics;
SELECT name, labels, value, type FROM trading.metrics
WHERE labels->>'endpoint' = 'regress.orders'
   OR labels->>'kind' LIKE 'regress.%' OR labels->>'status' LIKE 'regress.%'
ORDER BY name, labels->>'code', labels->>'kind', labels->>'side', labels->>'status',
         (labels->>'le')::float8;
-- each catalogue entry names its labels; samples carry exactly those
-- (histogram buckets add le)
SELECT m.name, m.labels FROM trading.metrics m
JOIN trading.metrics_catalog c ON m.name LIKE c.name || '%'
     AND (m.name = c.name OR c.type = 'histogram')
WHERE ARRAY(SELECT jsonb_object_keys(m.labels) EXCEPT SELECT 'le' ORDER BY 1)
      <> ARRAY(SELECT unnest(c.labels) ORDER BY 1);
SELECT count(*) AS catalogue_entries, count(DISTINCT name) AS distinct_names,
       count(*) FILTER (WHERE name !~ '^trading_[a-z0-9_]+$') AS badly_named,
       count(*) FILTER (WHERE type = 'counter' AND name !~ '_total$') AS counters_without_total,
       count(*) FILTER (WHERE type <> 'counter' AND name ~ '_total$') AS non_counters_with_total
FROM trading.metrics_catalog;

-- The Prometheus exposition: HELP and TYPE once per family, then its samples.
SELECT line FROM regexp_split_to_table(trading.metrics_prometheus(), E'\n') AS line
WHERE line LIKE '%regress.orders%' OR line LIKE '%trading_api_request_duration_seconds %'
   OR line LIKE '%regress.TokenException%' OR line LIKE '%trading_trades_total %'
   OR line LIKE '# % trading_total_pnl %';
SELECT count(*) AS total_pnl_samples FROM regexp_split_to_table(trading.metrics_prometheus(), E'\n') AS line
WHERE line ~ '^trading_total_pnl (-?[0-9.e+]+|NaN)$';
SELECT right(trading.metrics_prometheus(), 1) = E'\n' AS ends_with_newline;

-- ---- business figures, derived from the broker tables -----------------------
BEGIN;
DELETE FROM trading.positions;
DELETE FROM trading.orders;
SELECT * FROM trading.metrics_business;   -- nothing closed yet: win rate NaN
INSERT INTO trading.positions (kind, exchange, tradingsymbol, product, quantity, pnl, m2m, raw, updated_at) VALUES
    ('net', 'NSE', 'INFY',     'CNC', 10,  150.5, 20,   '{}', now()),
    ('net', 'NSE', 'TCS',      'MIS', 0,   300,   300,  '{}', now()),
    ('net', 'NSE', 'SBIN',     'MIS', 0,   -120,  -120, '{}', now()),
    ('net', 'NSE', 'RELIANCE', 'CNC', 0,   80,    5,    '{}', now() - interval '3 days'),
    ('net', 'NFO', 'NIFTY',    'NRML', -50, -40,  -40,  '{}', now()),
    ('day', 'NSE', 'TCS',      'MIS', 0,   300,   300,  '{}', now());
SELECT * FROM trading.metrics_business;
INSERT INTO trading.orders (order_id, status, transaction_type, raw) VALUES
    ('1', 'COMPLETE', 'BUY', '{}'), ('2', 'COMPLETE', 'BUY', '{}'),
    ('3', 'REJECTED', 'SELL', '{}'), ('4', 'OPEN', 'SELL', '{}'), ('5', 'OPEN', NULL, '{}');
SELECT * FROM trading.metrics_orders ORDER BY 1, 2;
SELECT name, labels, value FROM trading.metrics
WHERE name IN ('trading_total_pnl', 'trading_daily_pnl', 'trading_win_rate_percent',
               'trading_win_rate_ratio', 'trading_active_positions', 'trading_broker_orders')
ORDER BY name, labels::text;
ROLLBACK;

-- ---- views over other modules: present, with the documented columns ----------
SELECT c.relname, string_agg(a.attname, ', ' ORDER BY a.attnum) AS columns
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
WHERE c.relnamespace = 'trading'::regnamespace
  AND c.relname IN ('metrics_worker', 'metrics_worker_state', 'metrics_worker_errors',
                    'metrics_http', 'metrics_correlation', 'metrics_rate_limit')
GROUP BY 1 ORDER BY 1;
-- each is built on its source when the source exists
SELECT v.name, to_regclass('trading.' || v.source) IS NOT NULL AS source_exists,
       obj_description(('trading.' || v.name)::regclass) LIKE 'Empty:%' AS empty_stand_in
FROM (VALUES ('metrics_worker', 'worker_status'), ('metrics_worker_state', 'worker_status'),
             ('metrics_worker_errors', 'worker_errors'), ('metrics_http', 'worker_http'),
             ('metrics_correlation', 'correlation_stats')) AS v(name, source)
WHERE (to_regclass('trading.' || v.source) IS NOT NULL)
      = (obj_description(('trading.' || v.name)::regclass) LIKE 'Empty:%');

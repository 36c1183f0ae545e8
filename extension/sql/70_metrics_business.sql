-- Metrics, part 2 (after the broker tables): business figures derived from
-- the worker's tables, the exporter-facing views over the worker's and the
-- correlation module's status views, the catalogue of every metric, the
-- trading.metrics view and trading.metrics_prometheus().

-- ---- business figures ------------------------------------------------------
-- Net positions are the desk's positions (day positions are their intraday
-- part).  A position is closed when its net quantity is zero; it is a win
-- when its pnl (then all realised) is positive.  The daily figure is the
-- mark-to-market (m2m: against yesterday's close) of the net positions the
-- worker refreshed today, the day being the calendar day in Asia/Kolkata.

CREATE VIEW @extschema@.metrics_business AS
    SELECT coalesce(sum(pnl), 0)::float8 AS total_pnl,
           coalesce(sum(m2m) FILTER (
               WHERE updated_at >= date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata')
                                   AT TIME ZONE 'Asia/Kolkata'), 0)::float8 AS daily_pnl,
           CASE WHEN count(*) FILTER (WHERE quantity = 0) = 0 THEN 'NaN'::float8
                ELSE 100.0 * count(*) FILTER (WHERE quantity = 0 AND pnl > 0)
                     / count(*) FILTER (WHERE quantity = 0) END::float8 AS win_rate_percent,
           CASE WHEN count(*) FILTER (WHERE quantity = 0) = 0 THEN 'NaN'::float8
                ELSE count(*) FILTER (WHERE quantity = 0 AND pnl > 0)::float8
                     / count(*) FILTER (WHERE quantity = 0) END AS win_rate_ratio,
           count(*) FILTER (WHERE quantity <> 0) AS active_positions,
           count(*) FILTER (WHERE quantity = 0) AS closed_positions,
           count(*) FILTER (WHERE quantity = 0 AND pnl > 0) AS winning_positions,
           current_setting('trading.daily_loss_alert_threshold')::float8 AS daily_loss_alert_threshold
    FROM @extschema@.positions
    WHERE kind = 'net';
COMMENT ON VIEW @extschema@.metrics_business IS
    'PnL, win rate and position counts derived from trading.positions (one row)';

-- trading_broker_orders{side,status}
CREATE VIEW @extschema@.metrics_orders AS
    SELECT coalesce(transaction_type, 'unknown') AS side,
           coalesce(status, 'unknown') AS status,
           count(*) AS orders
    FROM @extschema@.orders
    GROUP BY 1, 2;
COMMENT ON VIEW @extschema@.metrics_orders IS
    'Orders in trading.orders by side (transaction_type) and status';

GRANT SELECT ON @extschema@.metrics_business, @extschema@.metrics_orders TO trading_reader;

-- ---- views over the worker and correlation modules --------------------------
-- Those modules define trading.worker_status, worker_errors, worker_http and
-- correlation_stats.  Each view below is built on its source when the source
-- exists at this point of the install script, and is an empty view with the
-- same columns otherwise (so the exporter's queries never fail); a source
-- without the expected columns gives a WARNING and the empty view.
DO $do$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM (VALUES
        ('metrics_worker', 'worker_status',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(extract(epoch FROM last_success), 0)::float8 AS last_success_timestamp_seconds,
                   CASE WHEN last_success IS NULL THEN 'Infinity'::float8
                        ELSE greatest(extract(epoch FROM now() - last_success), 0)::float8
                   END AS last_success_age_seconds,
                   coalesce(consecutive_failures, 0)::float8 AS consecutive_failures,
                   coalesce(requests_total, 0)::float8 AS requests_total,
                   CASE WHEN next_poll IS NULL THEN 0::float8
                        ELSE greatest(extract(epoch FROM now() - next_poll), 0)::float8
                   END AS poll_overdue_seconds,
                   (coalesce(session_state, '') IN ('expired', 'unreadable'))::int::float8 AS session_expired
            FROM @extschema@.worker_status$q$,
         $q$SELECT NULL::text AS endpoint, NULL::float8 AS last_success_timestamp_seconds,
                   NULL::float8 AS last_success_age_seconds, NULL::float8 AS consecutive_failures,
                   NULL::float8 AS requests_total, NULL::float8 AS poll_overdue_seconds,
                   NULL::float8 AS session_expired
            WHERE false$q$),
        ('metrics_worker_state', 'worker_status',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(worker_state::text, 'unknown') AS worker_state,
                   coalesce(session_state::text, 'unknown') AS session_state,
                   1::float8 AS info
            FROM @extschema@.worker_status$q$,
         $q$SELECT NULL::text AS endpoint, NULL::text AS worker_state,
                   NULL::text AS session_state, NULL::float8 AS info
            WHERE false$q$),
        ('metrics_worker_errors', 'worker_errors',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(error_type::text, 'unknown') AS error_type,
                   errors_total::float8 AS total
            FROM @extschema@.worker_errors$q$,
         $q$SELECT NULL::text AS endpoint, NULL::text AS error_type, NULL::float8 AS total
            WHERE false$q$),
        ('metrics_http', 'worker_http',
         $q$SELECT connections_opened_total::float8 AS connections_opened_total,
                   requests_total::float8 AS requests_total
            FROM @extschema@.worker_http$q$,
         $q$SELECT NULL::float8 AS connections_opened_total, NULL::float8 AS requests_total
            WHERE false$q$),
        ('metrics_correlation', 'correlation_stats',
         $q$SELECT queue_depth::float8 AS queue_depth,
                   queue_capacity::float8 AS queue_capacity,
                   enqueued_total::float8 AS enqueued_total,
                   dropped_total::float8 AS dropped_total,
                   written_total::float8 AS written_total
            FROM @extschema@.correlation_stats$q$,
         $q$SELECT NULL::float8 AS queue_depth, NULL::float8 AS queue_capacity,
                   NULL::float8 AS enqueued_total, NULL::float8 AS dropped_total,
                   NULL::float8 AS written_total
            WHERE false$q$)
    ) AS t(name, source, real_query, empty_query)
    LOOP
        IF to_regclass('@extschema@.' || v.source) IS NOT NULL THEN
            BEGIN
                EXECUTE format('CREATE VIEW @extschema@.%I AS %s', v.name, v.real_query);
                EXECUTE format('COMMENT ON VIEW @extschema@.%I IS %L', v.name,
                               'Metrics from trading.' || v.source || ', for postgres_exporter');
            EXCEPTION WHEN undefined_column OR undefined_function OR datatype_mismatch
                           OR cannot_coerce OR invalid_text_representation THEN
                RAISE WARNING 'metrics view trading.% left empty: trading.% does not have the expected columns', v.name, v.source
                    USING DETAIL = SQLERRM,
                          HINT = 'See docs/MONITORING.md for the columns the metrics expect.';
            END;
        END IF;
        IF to_regclass('@extschema@.' || v.name) IS NULL THEN
            EXECUTE format('CREATE VIEW @extschema@.%I AS %s', v.name, v.empty_query);
            EXECUTE format('COMMENT ON VIEW @extschema@.%I IS %L', v.name,
                           'Empty: trading.' || v.source || ' did not exist when the extension was installed');
        END IF;
        EXECUTE format('GRANT SELECT ON @extschema@.%I TO trading_reader', v.name);
    END LOOP;
END
$do$;

-- ---- the catalogue of metrics ----------------------------------------------
-- Every metric the desk exposes, as named by postgres_exporter with
-- monitoring/queries.yaml (whose descriptions are these help texts).

CREATE VIEW @extschema@.metrics_catalog (name, type, labels, help) AS VALUES
    ('trading_api_request_duration_seconds', 'histogram', '{endpoint}'::text[], 'Duration of broker API requests in seconds.'),
    ('trading_api_requests_total', 'counter', '{endpoint,code}', 'Broker API requests by HTTP status class (no_response: no HTTP response).'),
    ('trading_exceptions_total', 'counter', '{kind}', 'Exceptions raised while trading, by kind.'),
    ('trading_trades_total', 'counter', '{side,status}', 'Trades recorded, by side and status.'),
    ('trading_metrics_label_overflow_total', 'counter', '{metric}', 'Recordings whose label set did not fit under trading.metrics_max_labels.'),
    ('trading_rate_limit_granted_total', 'counter', '{endpoint}', 'Requests granted by the rate limiter.'),
    ('trading_rate_limit_refused_total', 'counter', '{endpoint}', 'Requests refused by the rate limiter, timeouts included.'),
    ('trading_rate_limit_wait_seconds_total', 'counter', '{endpoint}', 'Time spent waiting for the rate limiter in seconds.'),
    ('trading_rate_limit_timeouts_total', 'counter', '{endpoint}', 'Waits for the rate limiter that timed out.'),
    ('trading_rate_limit_waiting', 'gauge', '{endpoint}', 'Sessions waiting for the rate limiter now.'),
    ('trading_total_pnl', 'gauge', '{}', 'Total profit and loss of the net positions in rupees.'),
    ('trading_daily_pnl', 'gauge', '{}', 'Profit and loss of today (Asia/Kolkata) in rupees: mark-to-market of the net positions refreshed today.'),
    ('trading_win_rate_percent', 'gauge', '{}', 'Closed positions with a profit in percent of closed positions (NaN while none is closed).'),
    ('trading_win_rate_ratio', 'gauge', '{}', 'Closed positions with a profit as a ratio of closed positions (NaN while none is closed).'),
    ('trading_daily_loss_alert_threshold', 'gauge', '{}', 'Daily loss in rupees beyond which TradingDailyLossLimit fires (0: never), from trading.daily_loss_alert_threshold.'),
    ('trading_active_positions', 'gauge', '{}', 'Net positions with a non-zero quantity.'),
    ('trading_closed_positions', 'gauge', '{}', 'Net positions with a zero quantity.'),
    ('trading_winning_positions', 'gauge', '{}', 'Closed net positions with a profit.'),
    ('trading_broker_orders', 'gauge', '{side,status}', 'Orders in trading.orders by side and status.'),
    ('trading_worker_last_success_timestamp_seconds', 'gauge', '{endpoint}', 'Unix time of the last successful poll of the endpoint (0: never).'),
    ('trading_worker_last_success_age_seconds', 'gauge', '{endpoint}', 'Seconds since the last successful poll of the endpoint (+Inf: never).'),
    ('trading_worker_consecutive_failures', 'gauge', '{endpoint}', 'Failed polls of the endpoint since its last success.'),
    ('trading_worker_requests_total', 'counter', '{endpoint}', 'Requests made by the broker worker.'),
    ('trading_worker_poll_overdue_seconds', 'gauge', '{endpoint}', 'Seconds by which the next poll of the endpoint is overdue (0: on time).'),
    ('trading_worker_session_expired', 'gauge', '{endpoint}', '1 when the broker session is expired or unreadable, else 0.'),
    ('trading_worker_state_info', 'gauge', '{endpoint,worker_state,session_state}', 'State of the worker and of the broker session per endpoint (always 1).'),
    ('trading_worker_errors_total', 'counter', '{endpoint,error_type}', 'Errors of the broker worker by endpoint and error type.'),
    ('trading_correlation_queue_depth', 'gauge', '{}', 'Events waiting in the correlation queue.'),
    ('trading_correlation_queue_capacity', 'gauge', '{}', 'Capacity of the correlation queue.'),
    ('trading_correlation_enqueued_total', 'counter', '{}', 'Events put in the correlation queue.'),
    ('trading_correlation_dropped_total', 'counter', '{}', 'Events dropped because the correlation queue was full.'),
    ('trading_correlation_written_total', 'counter', '{}', 'Events written from the correlation queue to the database.'),
    ('trading_http_connections_opened_total', 'counter', '{}', 'HTTP connections opened by the broker worker.'),
    ('trading_http_requests_total', 'counter', '{}', 'HTTP requests sent by the broker worker.');
COMMENT ON VIEW @extschema@.metrics_catalog IS
    'Every metric: name, Prometheus type, label names and help text';

-- ---- trading.metrics: every sample, for people who read metrics from SQL ----

CREATE VIEW @extschema@.metrics AS
WITH h AS MATERIALIZED (
    SELECT * FROM @extschema@._metrics_histograms()
), samples (family, name, labels, value) AS (
    -- histogram: cumulative buckets, +Inf, sum, count (one snapshot)
    SELECT 'trading_api_request_duration_seconds', 'trading_api_request_duration_seconds_bucket',
           jsonb_build_object('endpoint', h.endpoint,
                              'le', CASE WHEN b.le = 'Infinity' THEN '+Inf' ELSE b.le::text END),
           b.n::float8
    FROM h,
         unnest(h.le || 'Infinity'::float8, h.buckets || h.count) AS b(le, n)
    UNION ALL
    SELECT 'trading_api_request_duration_seconds', 'trading_api_request_duration_seconds_' || s.suffix,
           jsonb_build_object('endpoint', h.endpoint), s.v
    FROM h,
         LATERAL (VALUES ('sum', h.sum), ('count', h.count::float8)) AS s(suffix, v)
    UNION ALL
    SELECT n, n, l, v FROM (
        SELECT CASE c.metric
                   WHEN 'api_requests' THEN 'trading_api_requests_total'
                   WHEN 'exceptions' THEN 'trading_exceptions_total'
                   WHEN 'trades' THEN 'trading_trades_total'
                   ELSE 'trading_metrics_label_overflow_total' END,
               CASE c.metric
                   WHEN 'api_requests' THEN jsonb_build_object('endpoint', c.label1, 'code', c.label2)
                   WHEN 'exceptions' THEN jsonb_build_object('kind', c.label1)
                   WHEN 'trades' THEN jsonb_build_object('side', c.label1, 'status', c.label2)
                   ELSE jsonb_build_object('metric', c.label1) END,
               c.value::float8
        FROM @extschema@._metrics_counters() c) AS x(n, l, v)
    UNION ALL
    SELECT 'trading_rate_limit_' || m.k, 'trading_rate_limit_' || m.k,
           jsonb_build_object('endpoint', r.endpoint), m.v
    FROM @extschema@.metrics_rate_limit r,
         LATERAL (VALUES ('granted_total', r.granted_total::float8),
                         ('refused_total', r.refused_total::float8),
                         ('wait_seconds_total', r.wait_seconds_total),
                         ('timeouts_total', r.timeouts_total::float8),
                         ('waiting', r.waiting::float8)) AS m(k, v)
    UNION ALL
    SELECT 'trading_' || m.k, 'trading_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_business b,
         LATERAL (VALUES ('total_pnl', b.total_pnl), ('daily_pnl', b.daily_pnl),
                         ('win_rate_percent', b.win_rate_percent),
                         ('win_rate_ratio', b.win_rate_ratio),
                         ('active_positions', b.active_positions::float8),
                         ('closed_positions', b.closed_positions::float8),
                         ('winning_positions', b.winning_positions::float8),
                         ('daily_loss_alert_threshold', b.daily_loss_alert_threshold)) AS m(k, v)
    UNION ALL
    SELECT 'trading_broker_orders', 'trading_broker_orders',
           jsonb_build_object('side', o.side, 'status', o.status), o.orders::float8
    FROM @extschema@.metrics_orders o
    UNION ALL
    SELECT 'trading_worker_' || m.k, 'trading_worker_' || m.k,
           jsonb_build_object('endpoint', w.endpoint), m.v
    FROM @extschema@.metrics_worker w,
         LATERAL (VALUES ('last_success_timestamp_seconds', w.last_success_timestamp_seconds),
                         ('last_success_age_seconds', w.last_success_age_seconds),
                         ('consecutive_failures', w.consecutive_failures),
                         ('requests_total', w.requests_total),
                         ('poll_overdue_seconds', w.poll_overdue_seconds),
                         ('session_expired', w.session_expired)) AS m(k, v)
    UNION ALL
    SELECT 'trading_worker_state_info', 'trading_worker_state_info',
           jsonb_build_object('endpoint', s.endpoint, 'worker_state', s.worker_state,
                              'session_state', s.session_state), s.info
    FROM @extschema@.metrics_worker_state s
    UNION ALL
    SELECT 'trading_worker_errors_total', 'trading_worker_errors_total',
           jsonb_build_object('endpoint', e.endpoint, 'error_type', e.error_type), e.total
    FROM @extschema@.metrics_worker_errors e
    UNION ALL
    SELECT 'trading_correlation_' || m.k, 'trading_correlation_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_correlation c,
         LATERAL (VALUES ('queue_depth', c.queue_depth), ('queue_capacity', c.queue_capacity),
                         ('enqueued_total', c.enqueued_total), ('dropped_total', c.dropped_total),
                         ('written_total', c.written_total)) AS m(k, v)
    UNION ALL
    SELECT 'trading_http_' || m.k, 'trading_http_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_http h,
         LATERAL (VALUES ('connections_opened_total', h.connections_opened_total),
                         ('requests_total', h.requests_total)) AS m(k, v)
)
SELECT s.name, s.labels, s.value, c.type, c.help
FROM samples s JOIN @extschema@.metrics_catalog c ON c.name = s.family;
COMMENT ON VIEW @extschema@.metrics IS
    'Every metric sample: name, labels, value, Prometheus type and help (histograms as _bucket/_sum/_count samples)';

-- The Prometheus text exposition (version 0.0.4) of trading.metrics.
CREATE FUNCTION @extschema@.metrics_prometheus() RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH m AS MATERIALIZED (
        SELECT CASE WHEN type = 'histogram'
                    THEN regexp_replace(name, '_(bucket|sum|count)$', '') ELSE name END AS family,
               name, labels, value, type, help
        FROM @extschema@.metrics
    ), lines AS (
        SELECT family,
               name || coalesce('{' || (SELECT string_agg(format('%s="%s"', key,
                                                 replace(replace(replace(value, E'\\', E'\\\\'),
                                                                 '"', E'\\"'), E'\n', E'\\n')),
                                                 ',' ORDER BY key = 'le', key)
                                        FROM jsonb_each_text(labels)) || '}', '')
               || ' ' ||
               CASE WHEN value = 'Infinity' THEN '+Inf'
                    WHEN value = '-Infinity' THEN '-Inf'
                    WHEN value = 'NaN' THEN 'NaN'
                    ELSE value::text END AS line,
               (labels - 'le')::text AS series,
               CASE WHEN name LIKE '%\_bucket' THEN 0 WHEN name LIKE '%\_sum' THEN 1 ELSE 2 END AS part,
               (labels ->> 'le')::float8 AS le
        FROM m
    ), families AS (
        SELECT DISTINCT family, type, help FROM m
    )
    SELECT coalesce(string_agg(
               format(E'# HELP %s %s\n# TYPE %s %s\n', f.family,
                      replace(replace(f.help, E'\\', E'\\\\'), E'\n', E'\\n'), f.family, f.type)
               || (SELECT string_agg(l.line || E'\n', '' ORDER BY l.series, l.part, l.le)
                   FROM lines l WHERE l.family = f.family),
               '' ORDER BY f.family), '')
    FROM families f
$fn$;
COMMENT ON FUNCTION @extschema@.metrics_prometheus() IS
    'Every metric of trading.metrics in the Prometheus text exposition format';

GRANT SELECT ON @extschema@.metrics_catalog, @extschema@.metrics TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.metrics_prometheus() TO trading_reader;

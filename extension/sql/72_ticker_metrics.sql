-- 1.1: the ticker's metrics (worker/ticker*.c, 58_ticker.sql), exported by
-- monitoring/queries.yaml from the two views below.  The metric catalogue
-- of 70_metrics_business.sql gains their rows: the catalogue as 1.0 made it
-- is kept under another name and the new catalogue adds to it, so this
-- file needs no copy of the 1.0 rows (trading.metrics keeps reading the
-- 1.0 catalogue, which lists the samples it computes).

-- trading_ticker_*{connection}
CREATE VIEW @extschema@.metrics_ticker AS
    SELECT connection::text AS connection,
           (state = 'connected')::int AS connected,
           subscriptions,
           CASE WHEN subscriptions = 0 THEN 0
                WHEN last_packet_at IS NULL THEN 'Infinity'::float8
                ELSE extract(epoch FROM clock_timestamp() - last_packet_at)::float8 END
               AS last_packet_age_seconds,
           ticks_total, reconnects_total, malformed_frames_total
    FROM @extschema@.ticker_status;
COMMENT ON VIEW @extschema@.metrics_ticker IS
    'Ticker metrics per connection (monitoring/queries.yaml: trading_ticker_*)';

-- trading_ticker_worker_*
CREATE VIEW @extschema@.metrics_ticker_worker AS
    SELECT streaming::int AS streaming, ticks_stored AS ticks_stored_total,
           ticks_dropped AS ticks_dropped_total, flush_errors AS flush_errors_total,
           order_updates AS order_updates_total
    FROM @extschema@.ticker_stats;
COMMENT ON VIEW @extschema@.metrics_ticker_worker IS
    'Ticker worker metrics (monitoring/queries.yaml: trading_ticker_worker_*)';

ALTER VIEW @extschema@.metrics_catalog RENAME TO metrics_catalog_1_0;
COMMENT ON VIEW @extschema@.metrics_catalog_1_0 IS
    'The metrics of version 1.0 (part of trading.metrics_catalog)';
CREATE VIEW @extschema@.metrics_catalog (name, type, labels, help) AS
    SELECT name, type, labels, help FROM @extschema@.metrics_catalog_1_0
    UNION ALL SELECT name, type, labels, help FROM @extschema@.metrics_catalog_orders
    UNION ALL SELECT name, type, labels, help FROM @extschema@.metrics_catalog_market
    UNION ALL VALUES
    ('trading_ticker_connected', 'gauge', '{connection}'::text[], '1 when the ticker connection is up, else 0.'),
    ('trading_ticker_subscriptions', 'gauge', '{connection}', 'Instruments subscribed on the ticker connection.'),
    ('trading_ticker_last_packet_age_seconds', 'gauge', '{connection}', 'Seconds since the ticker connection last received a frame (0 without subscriptions, +Inf: never).'),
    ('trading_ticker_ticks_total', 'counter', '{connection}', 'Ticks received on the ticker connection.'),
    ('trading_ticker_reconnects_total', 'counter', '{connection}', 'Reconnects of the ticker connection.'),
    ('trading_ticker_malformed_frames_total', 'counter', '{connection}', 'Malformed frames dropped on the ticker connection.'),
    ('trading_ticker_worker_streaming', 'gauge', '{}', '1 while every needed ticker connection is up, else 0.'),
    ('trading_ticker_worker_ticks_stored_total', 'counter', '{}', 'Ticks written to trading.ticks.'),
    ('trading_ticker_worker_ticks_dropped_total', 'counter', '{}', 'Ticks lost because the ticker buffer was full.'),
    ('trading_ticker_worker_flush_errors_total', 'counter', '{}', 'Failed writes of ticker batches (retried).'),
    ('trading_ticker_worker_order_updates_total', 'counter', '{}', 'Order updates applied from the ticker stream.');
COMMENT ON VIEW @extschema@.metrics_catalog IS
    'Every metric: name, Prometheus type, label names and help text';

GRANT SELECT ON @extschema@.metrics_ticker, @extschema@.metrics_ticker_worker,
    @extschema@.metrics_catalog TO trading_reader;

-- Demo (broker worker): the tables the worker keeps, its status, metrics.
\pset footer off
\echo
\echo '== trading.orders (status changes are kept: previous_status)'
SELECT order_id, tradingsymbol, transaction_type AS side, order_type, quantity,
       filled_quantity AS filled, average_price, status, previous_status
FROM trading.orders ORDER BY order_timestamp, order_id;

\echo
\echo '== trading.trades'
SELECT trade_id, order_id, tradingsymbol, transaction_type AS side, quantity, average_price,
       fill_timestamp
FROM trading.trades ORDER BY fill_timestamp, trade_id;

\echo
\echo '== trading.positions (net)'
SELECT tradingsymbol, product, quantity, average_price, last_price, pnl, realised, unrealised
FROM trading.positions WHERE kind = 'net' ORDER BY tradingsymbol;

\echo
\echo '== trading.quotes (latest per watchlist instrument)'
SELECT instrument, mode, last_price, open, high, low, close, updated_at::time(0) AS at
FROM trading.quotes ORDER BY instrument;

\echo
\echo '== trading.margins'
SELECT segment, enabled, net, available_cash, utilised_debits FROM trading.margins ORDER BY segment;

\echo
\echo '== trading.worker_status'
SELECT endpoint, worker_state, session_state, interval_ms, last_success::time(3) AS last_success,
       next_poll::time(3) AS next_poll, consecutive_failures AS failures, requests_total, errors_total
FROM trading.worker_status;

\echo
\echo '== trading.worker_http: connections are reused across requests and endpoints'
SELECT connections_opened_total, requests_total,
       round(100 * (1 - connections_opened_total::numeric / nullif(requests_total, 0)), 1) AS reused_pct
FROM trading.worker_http;

\echo
\echo '== metrics: broker API requests by endpoint and status class'
SELECT endpoint, code, total FROM trading.metrics_api_requests WHERE total > 0 ORDER BY endpoint, code;

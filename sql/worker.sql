-- Broker worker: configuration, session functions, privileges, status
-- views, and the JSON -> table mapping of _apply_response (the worker's
-- own behaviour against a broker is tested by t/06*_worker*.pl).
\set VERBOSITY terse

-- ---- poll intervals ----
SELECT endpoint, interval_ms, enabled FROM trading.poll_intervals ORDER BY endpoint;
UPDATE trading.poll_intervals SET interval_ms = 99 WHERE endpoint = 'orders';
UPDATE trading.poll_intervals SET interval_ms = NULL WHERE endpoint = 'orders';
INSERT INTO trading.poll_intervals VALUES ('instruments', 1000);

-- ---- privileges ----
SET ROLE regress_trading_reader;
SELECT count(*) AS endpoints FROM trading.worker_status;
SELECT count(*) >= 0 AS readable FROM trading.worker_errors;
SELECT count(*) AS one_row FROM trading.worker_http;
SELECT count(*) AS no_session FROM trading.broker_session_status;
UPDATE trading.poll_intervals SET interval_ms = 1000 WHERE endpoint = 'orders';
SELECT trading.set_broker_session('k', 't');
SELECT * FROM trading.broker_login('k', 'r', 's');
SELECT trading.clear_broker_session();
SELECT * FROM trading.broker_session;
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT count(*) FROM trading.worker_status;
RESET ROLE;
SET ROLE regress_trading_admin;
UPDATE trading.poll_intervals SET interval_ms = 1500 WHERE endpoint = 'orders';
UPDATE trading.poll_intervals SET endpoint = 'x' WHERE endpoint = 'orders';
SELECT * FROM trading.broker_session;
SELECT trading._apply_response('orders', '{}');

-- ---- bad arguments: clear errors, nothing stored ----
SELECT trading.set_broker_session(NULL, 'tok');
SELECT trading.set_broker_session('key', NULL);
SELECT trading.set_broker_session('', 'tok');
SELECT trading.set_broker_session('key', '');
SELECT trading.set_broker_session(repeat('k', 129), 'tok');
SELECT trading.set_broker_session('key', repeat('t', 1025));
SELECT trading.set_broker_session('k:ey', 'tok');
SELECT trading.set_broker_session('key', E'tok\r\nX-Evil: 1');
SELECT trading.set_broker_session('key', 'tok en');
SELECT trading.set_broker_session('key', 'tøk');
SELECT * FROM trading.broker_login(NULL, 'req', 'secret');
SELECT * FROM trading.broker_login('key', NULL, 'secret');
SELECT * FROM trading.broker_login('key', 'req', NULL);
SELECT * FROM trading.broker_login('key', 'req', '');
-- the broker is unreachable here (test/regress.conf): TR301, no secret shown
SELECT * FROM trading.broker_login('key', 'req', 'the_secret');
\set VERBOSITY sqlstate
SELECT * FROM trading.broker_login('key', 'req', 'the_secret');
\set VERBOSITY terse
SELECT count(*) AS nothing_stored FROM trading.broker_session_status;

-- ---- a session: stored encrypted, visible without its secret ----
SELECT trading.set_broker_session('regress_key', 'regress_token_123');
SELECT user_id, state, expired_at, set_at IS NOT NULL AS has_set_at
  FROM trading.broker_session_status;
RESET ROLE;
SELECT position('regress_token_123' in encode(credentials, 'escape')) = 0 AS token_not_in_clear,
       position('regress_key' in encode(credentials, 'escape')) = 0 AS key_not_in_clear
  FROM trading.broker_session;
-- replacing it keeps one row
SET ROLE regress_trading_admin;
SELECT trading.set_broker_session('regress_key', 'regress_token_456');
SELECT count(*) FROM trading.broker_session_status;
SELECT trading.clear_broker_session() AS cleared, trading.clear_broker_session() AS again;
RESET ROLE;

-- ---- status views: their columns ----
SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
  FROM information_schema.columns
 WHERE table_schema = 'trading' AND table_name IN ('worker_status', 'worker_errors', 'worker_http')
 GROUP BY table_name ORDER BY table_name;
SELECT endpoint FROM trading.worker_status ORDER BY endpoint;

-- ---- mapping: orders ----
SELECT * FROM trading._apply_response('orders', $${"status": "success", "data": [
  {"order_id": "1953341975595868160", "exchange_order_id": null, "status": "OPEN",
   "order_timestamp": "2025-08-07 11:56:33", "exchange_timestamp": "",
   "exchange": "NSE", "tradingsymbol": "TATASTEEL", "instrument_token": 895745,
   "transaction_type": "BUY", "quantity": 10, "filled_quantity": 0,
   "pending_quantity": 10, "price": 159.82, "average_price": 0,
   "tags": ["a", "b"], "tag": "a", "meta": {}}]}$$);
SELECT order_id, status, previous_status, status_changed_at IS NOT NULL AS seen,
       order_timestamp = '2025-08-07 06:26:33+00' AS ist_converted,
       exchange_timestamp, quantity, price, tags, raw->'meta' AS meta
  FROM trading.orders;
-- the same order filled: the status change is kept
SELECT * FROM trading._apply_response('orders', $${"status": "success", "data": [
  {"order_id": "1953341975595868160", "status": "COMPLETE", "quantity": 10,
   "filled_quantity": 10, "pending_quantity": 0, "average_price": 159.5}]}$$);
SELECT order_id, status, previous_status, filled_quantity, average_price FROM trading.orders;

-- ---- a Kite error changes nothing and is returned ----
SELECT * FROM trading._apply_response('orders',
  '{"status": "error", "message": "Incorrect `api_key` or `access_token`.", "error_type": "TokenException", "data": null}');
SELECT * FROM trading._apply_response('orders', '{"status": "error"}');

-- ---- malformed answers raise errors; the tables stay as they were ----
\set VERBOSITY sqlstate
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [');
SELECT * FROM trading._apply_response('orders', '<html>502 Bad Gateway</html>');
SELECT * FROM trading._apply_response('orders', '');
SELECT * FROM trading._apply_response('orders', '[]');
SELECT * FROM trading._apply_response('orders', '{"status": "ok", "data": []}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": {}}');
SELECT * FROM trading._apply_response('orders', '{"status": "success"}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [{"status": "OPEN"}]}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [{"order_id": "1", "status": "OPEN", "quantity": "ten"}]}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [{"order_id": "1", "status": "OPEN", "order_timestamp": "yesterday-ish"}]}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [{"order_id": "1", "status": "OPEN", "quantity": 1e30}]}');
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [1, 2]}');
SELECT * FROM trading._apply_response('positions', '{"status": "success", "data": {"net": []}}');
SELECT * FROM trading._apply_response('margins', '{"status": "success", "data": {"crypto": {}}}');
SELECT * FROM trading._apply_response('quotes:ltp', '{"status": "success", "data": {"NSE:INFY": 5}}');
SELECT * FROM trading._apply_response('nothing', '{"status": "success", "data": []}');
\set VERBOSITY terse
SELECT count(*) AS orders, min(status) AS status FROM trading.orders;

-- ---- trades, positions, holdings, margins ----
SELECT * FROM trading._apply_response('trades', $${"status": "success", "data": [
  {"trade_id": "10000000", "order_id": "200000000000000", "exchange": "NSE",
   "tradingsymbol": "SBIN", "quantity": 1, "average_price": 420.65,
   "transaction_type": "BUY", "fill_timestamp": "2021-05-31 09:16:39",
   "order_timestamp": "09:16:39", "exchange_timestamp": "2021-05-31 09:16:39"}]}$$);
SELECT trade_id, order_id, order_timestamp, fill_timestamp = '2021-05-31 03:46:39+00' AS ist
  FROM trading.trades;
SELECT * FROM trading._apply_response('positions', $${"status": "success", "data": {
  "net": [{"exchange": "NSE", "tradingsymbol": "INFY", "product": "MIS", "quantity": 10,
           "pnl": 100, "m2m": 100, "unrealised": 100, "realised": 0}],
  "day": [{"exchange": "NSE", "tradingsymbol": "INFY", "product": "MIS", "quantity": 10,
           "pnl": 100, "m2m": 100, "unrealised": 100, "realised": 0}]}}$$);
SELECT kind, tradingsymbol, quantity, pnl FROM trading.positions ORDER BY kind;
-- a position the broker no longer reports is gone
SELECT * FROM trading._apply_response('positions', '{"status": "success", "data": {"net": [], "day": []}}');
SELECT count(*) AS positions FROM trading.positions;
SELECT * FROM trading._apply_response('holdings', $${"status": "success", "data": [
  {"exchange": "NSE", "tradingsymbol": "AARON", "isin": "INE721Z01010", "quantity": 1,
   "average_price": 161, "last_price": 352.95, "pnl": 191.95}]}$$);
SELECT exchange, tradingsymbol, isin, quantity, pnl FROM trading.holdings;
SELECT * FROM trading._apply_response('margins', $${"status": "success", "data": {
  "equity": {"enabled": true, "net": 99725.05,
             "available": {"cash": 245431.6, "live_balance": 99725.05, "collateral": 0},
             "utilised": {"debits": 145706.55, "span": 101989}}}}$$);
SELECT segment, enabled, net, available_cash, utilised_span FROM trading.margins;

-- ---- quotes: only watchlist instruments, in their mode ----
INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'ltp');
INSERT INTO trading.watchlist (instrument) VALUES ('infy');
SELECT * FROM trading._apply_response('quotes:ltp', $${"status": "success", "data": {
  "NSE:INFY": {"instrument_token": 408065, "last_price": 1074.35},
  "NSE:NOTWATCHED": {"instrument_token": 1, "last_price": 1}}}$$);
SELECT instrument, mode, instrument_token, last_price, open FROM trading.quotes;
DELETE FROM trading.watchlist;
SELECT * FROM trading._apply_response('quotes:ltp', '{"status": "success", "data": {}}');
SELECT count(*) AS quotes FROM trading.quotes;

-- clean up what the mapping tests wrote
TRUNCATE trading.orders, trading.trades, trading.positions, trading.holdings,
    trading.margins, trading.quotes;

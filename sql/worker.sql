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

-- ---- validation (1.1): every mapped field, checked for type and range ----
TRUNCATE trading.orders, trading.trades, trading.positions, trading.holdings,
    trading.margins, trading.quotes;
INSERT INTO trading.watchlist (instrument, mode) VALUES ('NSE:INFY', 'full');
-- a minimal valid element per table, and the endpoint that maps it
CREATE TEMP TABLE minimal (tbl text, endpoint text, elem jsonb, wrap text);
INSERT INTO minimal VALUES
  ('orders', 'orders', '{"order_id": "1", "status": "OPEN"}', 'array'),
  ('trades', 'trades', '{"order_id": "1", "trade_id": "2"}', 'array'),
  ('positions', 'positions', '{"exchange": "NSE", "tradingsymbol": "X", "product": "MIS"}', 'positions'),
  ('holdings', 'holdings', '{"exchange": "NSE", "tradingsymbol": "X"}', 'array'),
  ('margins', 'margins', '{}', 'margins'),
  ('quotes', 'quotes:full', '{}', 'quotes');
CREATE TEMP TABLE wrong (name text, v jsonb);
INSERT INTO wrong VALUES ('object', '{"x": 1}'), ('array', '["OPEN"]'),
  ('string', '"12"'), ('number', '12.5'), ('huge', '1e30'), ('bool', 'true'),
  ('empty', '""'), ('long', to_jsonb(repeat('x', 5000)));
-- every (field, wrong value) pair whose value the field's kind refuses is
-- rejected with exactly that field named, and nothing is written
CREATE TEMP TABLE verdicts AS
SELECT m.tbl, f->>'col' AS col, f->>'kind' AS kind, w.name AS wrong,
       (SELECT r.name FROM trading._apply_response(m.endpoint,
            jsonb_build_object('status', 'success', 'data',
              CASE m.wrap WHEN 'array' THEN jsonb_build_array(jsonb_set(m.elem, (SELECT array_agg(p) FROM jsonb_array_elements_text(f->'path') p), w.v, true))
                          WHEN 'positions' THEN jsonb_build_object('net', jsonb_build_array(jsonb_set(m.elem, (SELECT array_agg(p) FROM jsonb_array_elements_text(f->'path') p), w.v, true)), 'day', '[]'::jsonb)
                          WHEN 'margins' THEN jsonb_build_object('equity', jsonb_set(jsonb_build_object('available', '{}'::jsonb, 'utilised', '{}'::jsonb), (SELECT array_agg(p) FROM jsonb_array_elements_text(f->'path') p), w.v, true))
                          ELSE jsonb_build_object('NSE:INFY', jsonb_set(jsonb_build_object('ohlc', '{}'::jsonb), (SELECT array_agg(p) FROM jsonb_array_elements_text(f->'path') p), w.v, true)) END)::text) r
         WHERE r.kind = 'rejected') AS rejected_as
  FROM minimal m, jsonb_array_elements(trading._broker_fields(m.tbl)) f, wrong w;
-- refused: a named field for each kind and wrong value it must not accept
SELECT kind, wrong, count(*) AS fields, bool_and(rejected_as = tbl || '.' || (SELECT string_agg(p, '.') FROM jsonb_array_elements_text(trading._broker_fields(tbl) -> 0 -> 'path') p) OR rejected_as LIKE tbl || '.%') AS named
  FROM verdicts WHERE rejected_as IS NOT NULL GROUP BY kind, wrong ORDER BY kind, wrong;
-- accepted: only values of the field's own kind
SELECT kind, string_agg(DISTINCT wrong, ',' ORDER BY wrong) AS accepted
  FROM verdicts WHERE rejected_as IS NULL GROUP BY kind ORDER BY kind;
-- each rejection names the field that was wrong
SELECT count(*) AS misnamed FROM verdicts v
 WHERE v.rejected_as IS NOT NULL
   AND v.rejected_as <> v.tbl || '.' || (SELECT string_agg(p, '.')
        FROM jsonb_array_elements(trading._broker_fields(v.tbl)) f, jsonb_array_elements_text(f->'path') p
        WHERE f->>'col' = v.col);
SELECT (SELECT count(*) FROM trading.orders) + (SELECT count(*) FROM trading.trades)
     + (SELECT count(*) FROM trading.positions) + (SELECT count(*) FROM trading.holdings)
     + (SELECT count(*) FROM trading.quotes) AS rows_from_valid_minimal_elements;
TRUNCATE trading.orders, trading.trades, trading.positions, trading.holdings,
    trading.margins, trading.quotes;
-- ranges: bigint bounds, integral, numeric scale, real calendar dates
SELECT v, (SELECT r.name FROM trading._apply_response('orders',
            format('{"status": "success", "data": [{"order_id": "9", "status": "OPEN", %s}]}', v)) r) AS rejected
  FROM (VALUES ('"quantity": 9223372036854775807'), ('"quantity": 9223372036854775808'),
               ('"quantity": -9223372036854775809'), ('"quantity": 1.5'), ('"quantity": 2.0'),
               ('"price": 999999999999999999'), ('"price": 1e18'), ('"price": 0.000000000000000000001'),
               ('"order_timestamp": "2024-02-29 09:15:00"'), ('"order_timestamp": "2023-02-29 09:15:00"'),
               ('"order_timestamp": "2024-04-31 09:15:00"'), ('"order_timestamp": "2024-01-01 24:00:00"'),
               ('"order_timestamp": "2024-01-01 09:15:00\n"'), ('"tags": ["a", 1]'),
               ('"order_id": ""'), ('"status": null')) t(v);
SELECT order_id, quantity FROM trading.orders ORDER BY 1;
TRUNCATE trading.orders;
-- one bad element does not stop the others; duplicate keys: the last wins
SELECT * FROM trading._apply_response('orders', $${"status": "success", "data": [
  {"order_id": "1", "status": "OPEN"},
  {"order_id": "2", "status": "OPEN", "instrument_token": "not a number"},
  {"order_id": "3", "status": "OPEN", "quantity": 1},
  {"order_id": "3", "status": "OPEN", "quantity": 2}]}$$);
SELECT order_id, quantity FROM trading.orders ORDER BY 1;
-- a duplicated JSON key keeps the last value, in the column and in raw alike
SELECT * FROM trading._apply_response('orders', '{"status": "success", "data": [{"order_id": "4", "status": "OPEN", "quantity": 1, "quantity": 5}]}');
SELECT quantity, raw->'quantity' AS raw_quantity FROM trading.orders WHERE order_id = '4';
-- replace endpoints: a rejected element suspends deletions for that response
SELECT * FROM trading._apply_response('holdings', $${"status": "success", "data": [
  {"exchange": "NSE", "tradingsymbol": "A", "quantity": 1},
  {"exchange": "NSE", "tradingsymbol": "B", "quantity": 1}]}$$);
SELECT * FROM trading._apply_response('holdings', $${"status": "success", "data": [
  {"exchange": "NSE", "tradingsymbol": "A", "quantity": 2},
  {"exchange": "NSE", "tradingsymbol": ["B"], "quantity": 1}]}$$);
SELECT tradingsymbol, quantity FROM trading.holdings ORDER BY 1;
SELECT * FROM trading._apply_response('holdings', $${"status": "success", "data": [
  {"exchange": "NSE", "tradingsymbol": "A", "quantity": 2}]}$$);
SELECT tradingsymbol, quantity FROM trading.holdings ORDER BY 1;
-- only a 2xx success envelope is applied: an empty list from a failing
-- proxy does not wipe the table
SELECT * FROM trading._apply_response('holdings', '{"status": "success", "data": []}', 503);
SELECT * FROM trading._apply_response('holdings', '{"status": "success", "data": []}', 302);
SELECT count(*) AS holdings_kept FROM trading.holdings;
-- the broker's error_type and message: a word, and no control characters
SELECT * FROM trading._apply_response('orders', E'{"status": "error", "error_type": "Token\\nException", "message": "line1\\nFAKE LOG LINE\\r\\u001b[31m"}', 403);
SELECT length(detail) AS cut_to FROM trading._apply_response('orders', format('{"status": "error", "message": "%s"}', repeat('m', 5000)), 400);
-- the order entry point takes one order object too (streamed updates)
SELECT * FROM trading._apply_orders('{"order_id": "5", "status": "COMPLETE", "transaction_type": "SELL"}');
SELECT * FROM trading._apply_orders('"5"');
SELECT order_id, status FROM trading.orders WHERE order_id = '5';
-- the endpoint lists agree: the worker's (C), poll_intervals, the mapping
SELECT s.endpoint AS worker, p.endpoint AS poll_intervals
  FROM trading._worker_status() s FULL JOIN trading.poll_intervals p USING (endpoint)
 WHERE s.endpoint IS NULL OR p.endpoint IS NULL;
SELECT e, (SELECT count(*) FROM trading._apply_response(e, '{"status": "error"}')) AS mapped
  FROM (SELECT CASE endpoint WHEN 'quotes' THEN 'quotes:' || m ELSE endpoint END AS e
          FROM trading.poll_intervals LEFT JOIN unnest('{ltp,ohlc,full}'::text[]) m ON endpoint = 'quotes') x
 ORDER BY e;
-- the watchlist: instruments bounded and printable
INSERT INTO trading.watchlist (instrument) VALUES ('NSE:' || repeat('A', 61));
INSERT INTO trading.watchlist (instrument) VALUES (E'NSE:AB\u00e9');
INSERT INTO trading.watchlist (instrument) VALUES ('NSE:' || repeat('A', 47));
-- indices have spaces in their symbol; none at the ends, never two
INSERT INTO trading.watchlist (instrument) VALUES ('NSE:NIFTY 50'), ('NSE:NIFTY BANK');
INSERT INTO trading.watchlist (instrument) VALUES ('NSE:NIFTY 50 ');
INSERT INTO trading.watchlist (instrument) VALUES ('NSE: NIFTY');
INSERT INTO trading.watchlist (instrument) VALUES ('NSE:NIFTY  50');
INSERT INTO trading.watchlist (instrument) VALUES (E'NSE:NIFTY\t50');
SELECT instrument, refused_at, refused_reason FROM trading.watchlist ORDER BY 1;
DELETE FROM trading.watchlist;

-- the largest response the worker accepts stays allocatable (256 MB)
ALTER SYSTEM SET trading.broker_max_response = '512MB';
ALTER SYSTEM SET trading.broker_max_response = '256MB';
ALTER SYSTEM RESET trading.broker_max_response;

-- clean up what the mapping tests wrote
TRUNCATE trading.orders, trading.trades, trading.positions, trading.holdings,
    trading.margins, trading.quotes;

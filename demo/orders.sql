-- Demo (orders from SQL): place orders as a trader, a risk refusal, the
-- kill switch, the order book (docs/ORDERS.md).
\pset footer off
\set ON_ERROR_STOP 0
\set SHOW_CONTEXT never
\echo
\echo '== the instruments the desk trades (normally loaded from the broker''s master)'
INSERT INTO trading.instruments (instrument_token, tradingsymbol, exchange, tick_size, lot_size, segment)
VALUES (408065, 'INFY', 'NSE', 0.05, 1, 'NSE'), (779521, 'SBIN', 'NSE', 0.05, 1, 'NSE'),
       (738561, 'RELIANCE', 'NSE', 0.05, 1, 'NSE')
ON CONFLICT DO NOTHING;
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_trader') THEN
        CREATE ROLE demo_trader IN ROLE trading_trader;
    END IF;
END $$;
SET ROLE demo_trader;

\echo
\echo '== placing orders through SQL: sent after COMMIT, exactly once'
SELECT trading.place_order('NSE', 'INFY', 'BUY', 10) AS request;
SELECT trading.place_order('NSE', 'SBIN', 'BUY', 25, strategy => 'demo') AS request;
SELECT trading.place_order('NSE', 'RELIANCE', 'BUY', 5, 'LIMIT', price => 1.00) AS request;
SELECT trading.place_order('NSE', 'INFY', 'SELL', 4) AS request;

\echo
\echo '== a rolled-back order never reaches the broker'
BEGIN;
SELECT trading.place_order('NSE', 'SBIN', 'BUY', 1000) AS rolled_back;
ROLLBACK;

\echo
\echo '== a risk refusal: at most 100 shares per order (SQLSTATE TR603)'
RESET ROLE;
INSERT INTO trading.risk_limits (scope, key, max_order_quantity) VALUES ('global', '', 100)
ON CONFLICT (scope, key) DO UPDATE SET max_order_quantity = 100;
SET ROLE demo_trader;
SELECT trading.place_order('NSE', 'INFY', 'BUY', 500);
SELECT pg_sleep(2);

\echo
\echo '== the order book: each request beside the broker''s state of its order'
SELECT id, kind, tag, state, tradingsymbol, transaction_type AS side, quantity, order_id,
       broker_status, filled_quantity, average_price
  FROM trading.order_book ORDER BY id;

\echo
\echo '== the kill switch: halt, cancelling every open order'
SELECT trading.halt('demo: end of day', cancel_open => true);
SELECT mode, reason, changed_by FROM trading.trading_state;
SELECT trading.place_order('NSE', 'INFY', 'BUY', 1);
SELECT pg_sleep(2);
SELECT id, kind, state, order_id, broker_status FROM trading.order_book WHERE kind = 'cancel';
RESET ROLE;
SELECT trading.resume();
SELECT mode FROM trading.trading_state;
DELETE FROM trading.risk_limits WHERE scope = 'global';

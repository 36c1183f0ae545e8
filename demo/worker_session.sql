-- Demo (broker worker): a session, a watchlist, quick polling.
\pset footer off
\echo
\echo '== the worker waits for a session'
SELECT DISTINCT worker_state, session_state FROM trading.worker_status;

\echo
\echo '== poll faster for the demo (trading_admin may change this while it runs)'
UPDATE trading.poll_intervals SET interval_ms = CASE endpoint
    WHEN 'orders' THEN 500 WHEN 'trades' THEN 1000 WHEN 'positions' THEN 1000
    WHEN 'quotes' THEN 1000 ELSE 2000 END;
SELECT endpoint, interval_ms, enabled FROM trading.poll_intervals ORDER BY endpoint;

\echo
\echo '== set_broker_session: stored encrypted with the server key, never shown'
SELECT trading.set_broker_session('paper_api_key', 'paper_access_token') \gset
SELECT user_id, state, set_at IS NOT NULL AS set FROM trading.broker_session_status;

\echo
\echo '== a watchlist: the worker quotes it in batches, at most 1 quote call per second'
INSERT INTO trading.watchlist (instrument, mode) VALUES
    ('NSE:INFY', 'full'), ('NSE:SBIN', 'ltp'), ('NSE:RELIANCE', 'ltp'),
    ('NSE:TCS', 'ohlc'), ('NSE:HDFCBANK', 'ltp');
DO $$ BEGIN PERFORM pg_sleep(3); END $$;

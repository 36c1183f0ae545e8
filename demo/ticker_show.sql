-- Demo (ticker): live ticks in trading.quotes and trading.ticks.
\pset footer off
\echo
\echo '== instruments and a watchlist: the ticker streams what has a token'
INSERT INTO trading.instruments (instrument_token, exchange_token, tradingsymbol, name, exchange, segment)
VALUES (408065, 1594, 'INFY', 'INFOSYS', 'NSE', 'NSE'),
       (779521, 3045, 'SBIN', 'STATE BANK OF INDIA', 'NSE', 'NSE'),
       (738561, 2885, 'RELIANCE', 'RELIANCE INDUSTRIES', 'NSE', 'NSE'),
       (265, 1, 'SENSEX', 'SENSEX', 'BSE', 'INDICES')
ON CONFLICT DO NOTHING;
INSERT INTO trading.watchlist (instrument, mode) VALUES
    ('NSE:INFY', 'full'), ('NSE:SBIN', 'quote'), ('NSE:RELIANCE', 'ltp'), ('BSE:SENSEX', 'quote');
SELECT instrument, instrument_token, ticker_mode FROM trading.ticker_watchlist ORDER BY instrument;
SELECT trading.set_broker_session('paper_api_key', 'paper_access_token') \gset
DO $$ BEGIN PERFORM pg_sleep(3); END $$;

\echo
\echo '== trading.ticker_status: one connection, four subscriptions'
SELECT connection, worker_state, state, subscriptions, last_packet_at::time(3) AS last_packet,
       round(ticks_per_second::numeric, 1) AS ticks_per_s, reconnects_total
FROM trading.ticker_status;

\echo
\echo '== trading.quotes, twice a second apart: the prices move with the stream'
SELECT instrument, mode, last_price, volume, updated_at::time(3) AS at
FROM trading.quotes WHERE raw->>'source' = 'ticker' ORDER BY instrument;
DO $$ BEGIN PERFORM pg_sleep(1); END $$;
SELECT instrument, mode, last_price, volume, updated_at::time(3) AS at
FROM trading.quotes WHERE raw->>'source' = 'ticker' ORDER BY instrument;

\echo
\echo '== trading.ticks: every tick, by instrument and mode'
SELECT instrument_token, mode, tradable, count(*) AS ticks,
       min(received_at)::time(3) AS first, max(received_at)::time(3) AS last
FROM trading.ticks GROUP BY 1, 2, 3 ORDER BY 1;

\echo
\echo '== the last full tick of INFY, depth included'
SELECT received_at::time(3), last_price, volume, open, high, low, close,
       depth_buy_price, depth_sell_price
FROM trading.ticks WHERE instrument_token = 408065 ORDER BY received_at DESC LIMIT 1;

\echo
\echo '== a mode change applies to the live connection (no reconnect)'
UPDATE trading.watchlist SET mode = 'ltp' WHERE instrument = 'NSE:INFY';
DO $$ BEGIN PERFORM pg_sleep(1.5); END $$;
SELECT mode, count(*) FROM trading.ticks
WHERE instrument_token = 408065 AND received_at > now() - interval '1 second' GROUP BY mode;
SELECT sum(reconnects_total) AS reconnects FROM trading.ticker_status;

\echo
\echo '== trading.ticker_stats'
SELECT worker_state, ticks_stored, ticks_dropped, quotes_written, flushes, order_updates
FROM trading.ticker_stats;

\echo
\echo '== clean up for the next demo part: watchlist and session as they were'
DELETE FROM trading.watchlist;
DELETE FROM trading.quotes;
SELECT trading.clear_broker_session() \gset

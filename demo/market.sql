-- Demo (market data): the instrument master and a candle backfill.
\pset footer off
\echo
\echo '== refresh_instruments(): GET /instruments (CSV) parsed by COPY, replaced in one transaction'
SELECT trading.refresh_instruments() AS instruments_loaded;
SELECT trigger, rows, bytes, finished_at - started_at AS took
  FROM trading.instrument_loads WHERE error IS NULL ORDER BY id DESC LIMIT 1;

\echo
\echo '== an instrument search: lot size, tick size and token in SQL'
SELECT instrument_token, exchange, tradingsymbol, name, lot_size, tick_size
  FROM trading.instruments
 WHERE name ILIKE '%infosys%' OR tradingsymbol LIKE 'INF%'
 ORDER BY exchange, tradingsymbol LIMIT 5;

\echo
\echo '== a candle backfill: a year of minute candles for NSE:INFY'
SELECT trading.set_broker_session('paper_api_key', 'paper_access_token') \gset
SELECT trading.fetch_candles('NSE:INFY', 'minute',
                             date_trunc('day', now()) - interval '1 year', now()) AS job;

-- Demo: the cluster-wide rate limiter (README command 1).
\pset footer off
\echo
\echo '== Kite Connect limits installed with the extension (per API key)'
SELECT endpoint, requests, per FROM trading.rate_limit_status;

\echo
\echo '== 14 order placements in a burst: kite.orders allows 10 per second'
SELECT attempt, CASE WHEN trading.rate_limit_try('kite.orders') THEN 'granted' ELSE 'refused' END AS result
FROM generate_series(1, 14) AS attempt;

\echo
\echo '== a refused request consumed nothing; the window frees up after a second'
SELECT per, used, remaining, retry_after FROM trading.rate_limit_status WHERE endpoint = 'kite.orders';
DO $$ BEGIN PERFORM pg_sleep(1.05); END $$;
SELECT trading.rate_limit_try('kite.orders') AS granted_after_one_second;

\echo
\echo '== rate_limit_acquire waits its turn instead of refusing: 4 quotes at 1 per second'
SELECT request, trading.rate_limit_acquire('kite.quote') AS waited
FROM generate_series(1, 4) AS request;

\echo
\echo '== a strategy endpoint of your own: 3 requests per 2 seconds'
DO $$ BEGIN PERFORM trading.rate_limit_set('strategy.momentum', 3, '2 seconds'); END $$;
SELECT attempt, trading.rate_limit_try('strategy.momentum') AS granted FROM generate_series(1, 5) AS attempt;

\echo
\echo '== counters since the server started'
SELECT endpoint, requests, per, granted_total, refused_total,
       round(waited_seconds_total::numeric, 2) AS waited_seconds
FROM trading.rate_limit_status;

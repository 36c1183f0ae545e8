-- Messages a reader sees (issue "Operating it"): singular and plural.
\set VERBOSITY default
-- kite.quote allows 1 request a second: a cost of 2 can never be granted
SELECT trading.rate_limit_try('kite.quote', 2);
SELECT trading.rate_limit_try('kite.orders', 11);

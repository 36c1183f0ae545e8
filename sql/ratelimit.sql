-- Rate limiter: configuration, grants, refusals, errors, privileges.
-- Windows are long (minutes to hours) so that no result depends on timing.

-- The Kite defaults are installed with the extension.
SELECT endpoint, requests, per FROM trading.rate_limits ORDER BY endpoint, per;
SELECT endpoint, requests, per, used, remaining, waiting
FROM trading.rate_limit_status ORDER BY endpoint, per;

-- Three per hour: three grants, then refusals; a refusal consumes nothing.
SELECT trading.rate_limit_set('test.hourly', 3, '1 hour');
SELECT trading.rate_limit_try('test.hourly') FROM generate_series(1, 5);
SELECT used, remaining, retry_after > '59 minutes' AS retry_in_an_hour,
       granted_total, refused_total
FROM trading.rate_limit_status WHERE endpoint = 'test.hourly';

-- Cost counts against the limit; a cost that does not fit is refused whole.
SELECT trading.rate_limit_set('test.cost', 10, '1 hour');
SELECT trading.rate_limit_try('test.cost', 4);
SELECT trading.rate_limit_try('test.cost', 4);
SELECT trading.rate_limit_try('test.cost', 4);   -- 8 used, 4 more do not fit
SELECT trading.rate_limit_try('test.cost', 2);
SELECT used FROM trading.rate_limit_status WHERE endpoint = 'test.cost';

-- Several limits on one endpoint: every one must allow the request.
SELECT trading.rate_limit_set('test.multi', 5, '1 hour');
SELECT trading.rate_limit_set('test.multi', 2, '1 minute');
SELECT trading.rate_limit_try('test.multi') FROM generate_series(1, 3);
SELECT per, used, remaining FROM trading.rate_limit_status
WHERE endpoint = 'test.multi' ORDER BY per;

-- Lowering a limit takes effect at once, counting what was already granted.
SELECT trading.rate_limit_set('test.hourly', 2, '1 hour');
SELECT used, remaining FROM trading.rate_limit_status WHERE endpoint = 'test.hourly';
SELECT trading.rate_limit_try('test.hourly');
-- Raising it frees room at once.
SELECT trading.rate_limit_set('test.hourly', 4, '1 hour');
SELECT trading.rate_limit_try('test.hourly') FROM generate_series(1, 2);

-- acquire: immediate grant returns a zero wait; a full endpoint times out
-- with SQLSTATE TR001 and consumes nothing.
SELECT trading.rate_limit_set('test.acquire', 2, '1 hour');
SELECT trading.rate_limit_acquire('test.acquire', 2);
DO $$
DECLARE st text; msg text; det text; hint text;
BEGIN
    PERFORM trading.rate_limit_acquire('test.acquire', 1, '200 milliseconds');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'sqlstate %: %', st, msg;
    RAISE NOTICE 'detail matches: %', det ~ '^Waited [0-9.]+ s for 1 request\(s\); nothing was consumed\.$';
    RAISE NOTICE 'hint: %', hint;
END $$;
DO $$ BEGIN PERFORM trading.rate_limit_acquire('test.acquire', 1, '0');
EXCEPTION WHEN SQLSTATE 'TR001' THEN RAISE NOTICE 'caught TR001'; END $$;
SELECT used, waiting, granted_total, refused_total, timeouts_total, waited_seconds_total >= 0.2 AS waited
FROM trading.rate_limit_status WHERE endpoint = 'test.acquire';

-- A rolled-back change is undone in shared memory too.
BEGIN;
SELECT trading.rate_limit_set('test.rollback', 1, '1 hour');
SELECT trading.rate_limit_try('test.rollback');
ROLLBACK;
SELECT trading.rate_limit_try('test.rollback');
SELECT count(*) FROM trading.rate_limit_status WHERE endpoint = 'test.rollback';

-- A change inside a rolled-back savepoint is undone as well.
BEGIN;
SAVEPOINT s;
SELECT trading.rate_limit_drop('test.multi');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS multi_limits FROM trading.rate_limit_status WHERE endpoint = 'test.multi';

-- Editing the table directly is the same as calling the functions.
INSERT INTO trading.rate_limits VALUES ('test.direct', 1, '1 hour');
SELECT trading.rate_limit_try('test.direct'), trading.rate_limit_try('test.direct');
DELETE FROM trading.rate_limits WHERE endpoint = 'test.direct';

-- Dropping one limit, then the endpoint.
SELECT trading.rate_limit_drop('test.multi', '1 minute');
SELECT endpoint, requests, per FROM trading.rate_limit_status WHERE endpoint = 'test.multi';
SELECT trading.rate_limit_drop('test.multi');
SELECT count(*) FROM trading.rate_limit_status WHERE endpoint = 'test.multi';

-- Bad input: clear errors with documented SQLSTATEs (22004, 22023, 42704, 54000).
\set VERBOSITY sqlstate
SELECT trading.rate_limit_try(NULL);
SELECT trading.rate_limit_try('');
SELECT trading.rate_limit_try(repeat('x', 64));
SELECT trading.rate_limit_try(repeat('x', 100000));
SELECT trading.rate_limit_try('test.nope');
SELECT trading.rate_limit_try('test.cost', 0);
SELECT trading.rate_limit_try('test.cost', -5);
SELECT trading.rate_limit_try('test.cost', NULL);
SELECT trading.rate_limit_try('test.cost', 11);
SELECT trading.rate_limit_acquire('test.cost', 11);
SELECT trading.rate_limit_acquire('test.cost', 1, NULL);
SELECT trading.rate_limit_acquire('test.cost', 1, '-1 second');
SELECT trading.rate_limit_acquire('test.nope');
SELECT trading.rate_limit_set(NULL, 1, '1 second');
SELECT trading.rate_limit_set('test.bad', NULL, '1 second');
SELECT trading.rate_limit_set('test.bad', 1, NULL);
SELECT trading.rate_limit_set('test.bad', 0, '1 second');
SELECT trading.rate_limit_set('test.bad', -1, '1 second');
SELECT trading.rate_limit_set('test.bad', 1, '0');
SELECT trading.rate_limit_set('test.bad', 1, '-1 second');
SELECT trading.rate_limit_set('test.bad', 1, '1 month');
SELECT trading.rate_limit_set('test.bad', 1, '32 days');
SELECT trading.rate_limit_set('test.bad', 2147483647, '1 second');
SELECT trading.rate_limit_drop('test.nope');
SELECT trading.rate_limit_drop('test.cost', '1 minute');
SELECT trading.rate_limit_drop(NULL);
-- more than 8 limits on one endpoint
SELECT trading.rate_limit_set('test.many', 100, make_interval(mins => g)) FROM generate_series(1, 9) g;
\set VERBOSITY terse
SELECT count(*) FROM trading.rate_limits WHERE endpoint = 'test.many';
-- the endpoint bound (trading.rate_limit_max_endpoints = 64)
SELECT trading.rate_limit_set('test.bound.' || g, 1, '1 hour') FROM generate_series(1, 100) g;
SELECT count(*) FROM trading.rate_limits WHERE endpoint LIKE 'test.bound.%';
-- nothing was lost: the earlier endpoints still work
SELECT trading.rate_limit_try('test.hourly');

-- Privileges: readers see the status, analysts take grants, admins configure.
SET ROLE regress_trading_reader;
SELECT count(*) > 0 AS reader_sees_status FROM trading.rate_limit_status;
SELECT trading.rate_limit_try('test.cost');
SET ROLE regress_trading_analyst;
SELECT trading.rate_limit_try('test.hourly');
SELECT trading.rate_limit_set('test.analyst', 1, '1 second');
SET ROLE regress_trading_admin;
SELECT trading.rate_limit_set('test.admin', 1, '1 second');
SELECT trading.rate_limit_drop('test.admin');
SET ROLE regress_trading_nobody;
SELECT trading.rate_limit_try('test.hourly');
SELECT * FROM trading.rate_limit_status;
RESET ROLE;

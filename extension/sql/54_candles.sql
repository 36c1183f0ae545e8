-- 1.1: historical candles (GET /instruments/historical/{token}/{interval})
-- and their backfill jobs.  trading.fetch_candles() queues a job; the
-- market data worker (worker/market_worker.c, market_candles.c) splits it
-- into the broker's largest allowed requests, fetches them under
-- kite.historical and upserts each one, with the job's progress, in one
-- transaction (so a killed worker resumes exactly where it stopped).
-- docs/MARKET_DATA.md.

CREATE TABLE @extschema@.candles (
    instrument_token bigint NOT NULL,
    "interval"       text NOT NULL CHECK ("interval" IN ('minute', '3minute', '5minute',
                        '10minute', '15minute', '30minute', '60minute', 'day')),
    ts               timestamptz NOT NULL,
    open             numeric NOT NULL,
    high             numeric NOT NULL,
    low              numeric NOT NULL,
    close            numeric NOT NULL,
    volume           bigint NOT NULL,
    oi               bigint,
    PRIMARY KEY (instrument_token, "interval", ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE @extschema@.candles IS
    'Historical candles, one row per instrument, interval and start time; monthly partitions (candles_pYYYYMM, UTC months) created as needed';
GRANT SELECT ON @extschema@.candles TO trading_reader;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.candles', '');

CREATE TABLE @extschema@.backfill_queue (
    id               bigserial PRIMARY KEY,
    instrument       text NOT NULL,
    instrument_token bigint NOT NULL,
    "interval"       text NOT NULL CHECK ("interval" IN ('minute', '3minute', '5minute',
                        '10minute', '15minute', '30minute', '60minute', 'day')),
    from_ts          timestamptz NOT NULL,
    to_ts            timestamptz NOT NULL CHECK (to_ts >= from_ts),
    continuous       boolean NOT NULL DEFAULT false,
    oi               boolean NOT NULL DEFAULT false,
    state            text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    chunk_days       integer CHECK (chunk_days > 0),
    requests_total   integer,
    requests_done    integer NOT NULL DEFAULT 0,
    rows             bigint NOT NULL DEFAULT 0,
    errors           integer NOT NULL DEFAULT 0,
    last_error       text,
    requested_by     name NOT NULL DEFAULT current_user,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz
);
COMMENT ON TABLE @extschema@.backfill_queue IS
    'Candle backfill jobs and their progress (trading.backfill_jobs shows them with percent and ETA)';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.backfill_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.backfill_queue_id_seq', '');

CREATE VIEW @extschema@.backfill_jobs AS
    SELECT q.id, q.instrument, q.instrument_token, q."interval", q.from_ts, q.to_ts,
           q.continuous, q.oi, q.state, q.requests_done, q.requests_total,
           round(100.0 * q.requests_done / nullif(q.requests_total, 0), 1) AS percent,
           q.rows, q.errors, q.last_error,
           CASE WHEN q.state = 'running' AND q.requests_done > 0
                THEN now() + (now() - q.started_at) / q.requests_done
                             * (q.requests_total - q.requests_done) END AS eta,
           q.requested_by, q.created_at, q.started_at, q.finished_at
      FROM @extschema@.backfill_queue q;
COMMENT ON VIEW @extschema@.backfill_jobs IS
    'Candle backfills: state, requests done of total, percent, rows, errors, estimated completion';
GRANT SELECT ON @extschema@.backfill_jobs TO trading_reader;

-- Queue a backfill; returns the job's id.  instrument is EXCHANGE:SYMBOL
-- or an instrument_token, as trading.instruments lists it.
CREATE FUNCTION @extschema@.fetch_candles(instrument text, "interval" text,
        "from" timestamptz, "to" timestamptz,
        continuous boolean DEFAULT false, oi boolean DEFAULT false)
    RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    token bigint;
    job bigint;
BEGIN
    IF instrument IS NULL OR "interval" IS NULL OR "from" IS NULL OR "to" IS NULL
       OR continuous IS NULL OR oi IS NULL THEN
        RAISE EXCEPTION 'fetch_candles: no argument may be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF "interval" NOT IN ('minute', '3minute', '5minute', '10minute', '15minute',
                          '30minute', '60minute', 'day') THEN
        RAISE EXCEPTION 'unknown candle interval "%"', "interval"
            USING ERRCODE = '22023',
                  HINT = 'Use minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute or day.';
    END IF;
    IF "from" > "to" OR "from" = '-infinity' OR "to" = 'infinity' THEN
        RAISE EXCEPTION 'the range from % to % is empty or unbounded', "from", "to"
            USING ERRCODE = '22023';
    END IF;
    IF instrument ~ '^[0-9]{1,18}$' THEN
        SELECT i.instrument_token INTO token FROM @extschema@.instruments i
         WHERE i.instrument_token = instrument::bigint;
    ELSE
        SELECT i.instrument_token INTO token FROM @extschema@.instruments i
         WHERE i.exchange = split_part(instrument, ':', 1)
           AND i.tradingsymbol = substr(instrument, strpos(instrument, ':') + 1);
    END IF;
    IF token IS NULL THEN
        RAISE EXCEPTION 'unknown instrument "%"', instrument
            USING ERRCODE = 'TR503',
                  DETAIL = 'trading.instruments does not list it.',
                  HINT = 'Give EXCHANGE:TRADINGSYMBOL or an instrument_token; load the instrument master with trading.refresh_instruments().';
    END IF;
    INSERT INTO @extschema@.backfill_queue (instrument, instrument_token, "interval",
                                            from_ts, to_ts, continuous, oi, requested_by)
    VALUES (instrument, token, "interval", "from", "to", continuous, oi, session_user)
    RETURNING id INTO job;
    RETURN job;
END $$;
COMMENT ON FUNCTION @extschema@.fetch_candles(text, text, timestamptz, timestamptz, boolean, boolean) IS
    'Queue a backfill of historical candles; returns the job id (trading.backfill_jobs)';

-- Stop a queued or running job; false if it had already ended.
CREATE FUNCTION @extschema@.cancel_backfill(id bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    st text;
BEGIN
    SELECT q.state INTO st FROM @extschema@.backfill_queue q WHERE q.id = cancel_backfill.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no backfill job %', cancel_backfill.id USING ERRCODE = '42704';
    END IF;
    IF st NOT IN ('queued', 'running') THEN
        RETURN false;
    END IF;
    UPDATE @extschema@.backfill_queue q
       SET state = 'cancelled', finished_at = now(), updated_at = now()
     WHERE q.id = cancel_backfill.id;
    RETURN true;
END $$;
COMMENT ON FUNCTION @extschema@.cancel_backfill(bigint) IS
    'Cancel a queued or running candle backfill; false if it had already ended';

-- ---------------------------------------------------------------------
-- The worker's side (not granted to anyone).
-- ---------------------------------------------------------------------

-- The path of request chunk of job q: [from + chunk*days, from +
-- (chunk+1)*days - 1 s], the last one ending at to_ts, in IST as Kite
-- wants it.
CREATE FUNCTION @extschema@._backfill_path(q @extschema@.backfill_queue, chunk integer)
    RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lo timestamptz := q.from_ts + make_interval(days => q.chunk_days * chunk);
    hi timestamptz := least(lo + make_interval(days => q.chunk_days) - interval '1 second', q.to_ts);
BEGIN
    RETURN format('/instruments/historical/%s/%s?from=%s&to=%s%s%s',
                  q.instrument_token, q."interval",
                  replace(to_char(lo AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'), ' ', '+'),
                  replace(to_char(hi AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'), ' ', '+'),
                  CASE WHEN q.continuous THEN '&continuous=1' ELSE '' END,
                  CASE WHEN q.oi THEN '&oi=1' ELSE '' END);
END $$;

-- The chunking of a job from max_days ('minute=60,...'): days per request.
CREATE FUNCTION @extschema@._backfill_days(q @extschema@.backfill_queue, max_days text)
    RETURNS integer LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    days integer;
BEGIN
    IF q.chunk_days IS NOT NULL THEN
        RETURN q.chunk_days;
    END IF;
    SELECT split_part(kv, '=', 2)::integer INTO days
      FROM unnest(string_to_array(replace(max_days, ' ', ''), ',')) kv
     WHERE split_part(kv, '=', 1) = q."interval";
    IF days IS NULL OR days < 1 THEN
        RAISE EXCEPTION 'trading.historical_max_days has no limit for interval %', q."interval";
    END IF;
    RETURN days;
END $$;

-- The next request of the oldest runnable job: starts a queued job
-- (fixing its chunking from max_days), and returns the chunk to fetch with
-- its path, and the following requests (at most 3, of this job and the
-- next ones: the worker sends them while it applies this one) as arrays
-- of job, chunk and path.
CREATE FUNCTION @extschema@._backfill_next(max_days text,
        OUT id bigint, OUT chunk integer, OUT path text,
        OUT next_jobs bigint[], OUT next_chunks integer[], OUT next_paths text[])
    RETURNS record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q @extschema@.backfill_queue;
    f @extschema@.backfill_queue;
    c integer;
BEGIN
    SELECT * INTO q FROM @extschema@.backfill_queue b
     WHERE b.state IN ('queued', 'running')
     ORDER BY b.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF q.state = 'queued' OR q.chunk_days IS NULL THEN
        q.chunk_days := @extschema@._backfill_days(q, max_days);
        q.requests_total := floor(extract(epoch FROM q.to_ts - q.from_ts) / (q.chunk_days * 86400.0))::integer + 1;
        UPDATE @extschema@.backfill_queue b
           SET state = 'running', chunk_days = q.chunk_days, requests_total = q.requests_total,
               started_at = coalesce(b.started_at, now()), updated_at = now()
         WHERE b.id = q.id;
    END IF;
    id := q.id;
    chunk := q.requests_done;
    path := @extschema@._backfill_path(q, q.requests_done);
    next_jobs := '{}';
    next_chunks := '{}';
    next_paths := '{}';
    c := q.requests_done + 1;
    f := q;
    LOOP
        WHILE c < f.requests_total AND cardinality(next_jobs) < 3 LOOP
            next_jobs := next_jobs || f.id;
            next_chunks := next_chunks || c;
            next_paths := next_paths || @extschema@._backfill_path(f, c);
            c := c + 1;
        END LOOP;
        EXIT WHEN cardinality(next_jobs) >= 3;
        -- the following job, as it will be split when it starts
        SELECT * INTO f FROM @extschema@.backfill_queue b
         WHERE b.state IN ('queued', 'running') AND b.id > f.id
         ORDER BY b.id LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF f.chunk_days IS NULL THEN
            f.chunk_days := @extschema@._backfill_days(f, max_days);
            f.requests_total := floor(extract(epoch FROM f.to_ts - f.from_ts) / (f.chunk_days * 86400.0))::integer + 1;
        END IF;
        c := f.requests_done;
    END LOOP;
END $$;

-- Monthly partitions (UTC) covering [lo, hi].
CREATE FUNCTION @extschema@._candles_partitions(lo timestamptz, hi timestamptz)
    RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m timestamp := date_trunc('month', lo AT TIME ZONE 'UTC');
BEGIN
    WHILE m <= hi AT TIME ZONE 'UTC' LOOP
        IF to_regclass(format('@extschema@.candles_p%s', to_char(m, 'YYYYMM'))) IS NULL THEN
            EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.candles '
                           'FOR VALUES FROM (%L) TO (%L)',
                           'candles_p' || to_char(m, 'YYYYMM'),
                           (m AT TIME ZONE 'UTC')::text,
                           ((m + interval '1 month') AT TIME ZONE 'UTC')::text);
        END IF;
        m := m + interval '1 month';
    END LOOP;
END $$;

-- Apply one fetched chunk: validate the Kite reply, upsert its candles and
-- advance the job, all in the caller's transaction.  A reply for a job
-- that was cancelled (or a chunk already applied) changes nothing.
-- Returns the candles upserted.  In C (worker/market_apply.c): the reply
-- is parsed by PostgreSQL's JSON parser into column arrays and upserted in
-- one INSERT ... SELECT FROM unnest(...) ON CONFLICT.
CREATE FUNCTION @extschema@._backfill_apply(job bigint, chunk integer, body text)
    RETURNS bigint LANGUAGE c STRICT VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'market_backfill_apply';

-- A failed request: counted; a fatal one ends the job.
CREATE FUNCTION @extschema@._backfill_error(job bigint, message text, fatal boolean)
    RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@.backfill_queue b
       SET errors = b.errors + 1, last_error = left(message, 1000), updated_at = now(),
           state = CASE WHEN fatal THEN 'failed' ELSE b.state END,
           finished_at = CASE WHEN fatal THEN now() END
     WHERE b.id = job AND b.state = 'running';
$$;

GRANT EXECUTE ON FUNCTION
    @extschema@.fetch_candles(text, text, timestamptz, timestamptz, boolean, boolean),
    @extschema@.cancel_backfill(bigint) TO trading_analyst;

-- ---------------------------------------------------------------------
-- Status and metrics of the market data worker (monitoring/queries.yaml
-- exports metrics_market; alerts in monitoring/alerts.yml; its rows of
-- trading.metrics_catalog are metrics_catalog_market, which
-- 72_ticker_metrics.sql adds)
-- ---------------------------------------------------------------------

-- The worker's pid (NULL when it is not running) and its backfill counters
-- since the server started (worker/market_worker.c).
CREATE FUNCTION @extschema@._market_stats(
    OUT pid integer, OUT requests bigint, OUT retries bigint, OUT failures bigint,
    OUT candles bigint, OUT rate_waits bigint)
    RETURNS record LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'market_worker_stats';

CREATE VIEW @extschema@.market_worker_status AS
    SELECT s.pid, s.pid IS NOT NULL AS running,
           ok.started_at AS instruments_loaded_at,
           ok.rows AS instruments_rows,
           extract(epoch FROM ok.finished_at - ok.started_at)::float8 AS instruments_load_seconds,
           last.error IS NOT NULL AS instruments_last_load_failed,
           CASE WHEN last.error IS NOT NULL THEN last.started_at END AS instruments_failed_at,
           last.error AS instruments_error,
           (SELECT count(*) FROM @extschema@.backfill_queue q WHERE q.state = 'queued') AS backfill_jobs_queued,
           (SELECT count(*) FROM @extschema@.backfill_queue q WHERE q.state = 'running') AS backfill_jobs_running,
           (SELECT count(*) FROM @extschema@.backfill_queue q
             WHERE q.state = 'failed' AND q.finished_at > now() - interval '1 day') AS backfill_jobs_failed_1d,
           s.requests AS backfill_requests, s.retries AS backfill_retries,
           s.failures AS backfill_failures, s.candles AS candles_written,
           s.rate_waits AS rate_limit_waits
      FROM @extschema@._market_stats() s
      LEFT JOIN LATERAL (SELECT * FROM @extschema@.instrument_loads l
                          WHERE l.error IS NULL ORDER BY l.id DESC LIMIT 1) ok ON true
      LEFT JOIN LATERAL (SELECT * FROM @extschema@.instrument_loads l
                          ORDER BY l.id DESC LIMIT 1) last ON true;
COMMENT ON VIEW @extschema@.market_worker_status IS
    'The market data worker: its last good instrument load (time, rows, duration), the last load''s error, backfill jobs, and its counters since the server started (requests, retries, failures, candles written, rate-limit waits)';

-- trading_market_*
CREATE VIEW @extschema@.metrics_market AS
    SELECT running::int::float8 AS worker_up,
           CASE WHEN instruments_loaded_at IS NULL THEN 'Infinity'::float8
                ELSE extract(epoch FROM clock_timestamp() - instruments_loaded_at)::float8 END
               AS instruments_age_seconds,
           coalesce(instruments_rows, 0)::float8 AS instruments_rows,
           coalesce(instruments_load_seconds, 0) AS instruments_load_seconds,
           instruments_last_load_failed::int::float8 AS instruments_load_failed,
           backfill_jobs_queued::float8 AS backfill_jobs_queued,
           backfill_jobs_running::float8 AS backfill_jobs_running,
           backfill_jobs_failed_1d::float8 AS backfill_jobs_failed_1d,
           backfill_requests::float8 AS backfill_requests_total,
           backfill_retries::float8 AS backfill_retries_total,
           backfill_failures::float8 AS backfill_failures_total,
           candles_written::float8 AS candles_written_total,
           rate_limit_waits::float8 AS rate_limit_waits_total
      FROM @extschema@.market_worker_status;
COMMENT ON VIEW @extschema@.metrics_market IS
    'Market data worker metrics (monitoring/queries.yaml: trading_market_*)';

CREATE VIEW @extschema@.metrics_catalog_market (name, type, labels, help) AS VALUES
    ('trading_market_worker_up', 'gauge', '{}'::text[], '1 while the market data worker runs.'),
    ('trading_market_instruments_age_seconds', 'gauge', '{}', 'Seconds since the last successful instrument master load started (+Inf: never).'),
    ('trading_market_instruments_rows', 'gauge', '{}', 'Instruments of the last successful load.'),
    ('trading_market_instruments_load_seconds', 'gauge', '{}', 'Duration of the last successful instrument load.'),
    ('trading_market_instruments_load_failed', 'gauge', '{}', '1 when the latest instrument load failed (the previous list is kept).'),
    ('trading_market_backfill_jobs_queued', 'gauge', '{}', 'Candle backfill jobs waiting to start.'),
    ('trading_market_backfill_jobs_running', 'gauge', '{}', 'Candle backfill jobs running.'),
    ('trading_market_backfill_jobs_failed_1d', 'gauge', '{}', 'Candle backfill jobs that failed in the last day.'),
    ('trading_market_backfill_requests_total', 'counter', '{}', 'Historical replies applied by the worker.'),
    ('trading_market_backfill_retries_total', 'counter', '{}', 'Historical requests that failed and are retried (connection, 429, 5xx, transient Kite errors).'),
    ('trading_market_backfill_failures_total', 'counter', '{}', 'Historical requests that failed their job (InputException, malformed reply).'),
    ('trading_market_candles_written_total', 'counter', '{}', 'Candles written to trading.candles.'),
    ('trading_market_rate_limit_waits_total', 'counter', '{}', 'Historical requests that waited for the kite.historical budget.');
COMMENT ON VIEW @extschema@.metrics_catalog_market IS
    'The market data worker''s metrics (part of trading.metrics_catalog)';

GRANT SELECT ON @extschema@.market_worker_status, @extschema@.metrics_market,
    @extschema@.metrics_catalog_market TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._market_stats() TO trading_reader;

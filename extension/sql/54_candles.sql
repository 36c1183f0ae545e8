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

-- The next request of the oldest runnable job: starts a queued job
-- (fixing its chunking from max_days, 'minute=60,...'), and returns the
-- chunk to fetch with its from/to in IST as Kite wants them.
CREATE FUNCTION @extschema@._backfill_next(max_days text,
        OUT id bigint, OUT chunk integer, OUT path text)
    RETURNS record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q @extschema@.backfill_queue;
    days integer;
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT * INTO q FROM @extschema@.backfill_queue b
     WHERE b.state IN ('queued', 'running')
     ORDER BY b.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF q.state = 'queued' OR q.chunk_days IS NULL THEN
        SELECT split_part(kv, '=', 2)::integer INTO days
          FROM unnest(string_to_array(replace(max_days, ' ', ''), ',')) kv
         WHERE split_part(kv, '=', 1) = q."interval";
        IF days IS NULL OR days < 1 THEN
            RAISE EXCEPTION 'trading.historical_max_days has no limit for interval %', q."interval";
        END IF;
        q.chunk_days := days;
        q.requests_total := floor(extract(epoch FROM q.to_ts - q.from_ts) / (days * 86400.0))::integer + 1;
        UPDATE @extschema@.backfill_queue b
           SET state = 'running', chunk_days = q.chunk_days, requests_total = q.requests_total,
               started_at = coalesce(b.started_at, now()), updated_at = now()
         WHERE b.id = q.id;
    END IF;
    lo := q.from_ts + make_interval(days => q.chunk_days * q.requests_done);
    hi := least(lo + make_interval(days => q.chunk_days) - interval '1 second', q.to_ts);
    id := q.id;
    chunk := q.requests_done;
    path := format('/instruments/historical/%s/%s?from=%s&to=%s%s%s',
                   q.instrument_token, q."interval",
                   replace(to_char(lo AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'), ' ', '+'),
                   replace(to_char(hi AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS'), ' ', '+'),
                   CASE WHEN q.continuous THEN '&continuous=1' ELSE '' END,
                   CASE WHEN q.oi THEN '&oi=1' ELSE '' END);
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
-- Returns the candles upserted.
CREATE FUNCTION @extschema@._backfill_apply(job bigint, chunk integer, body text)
    RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q @extschema@.backfill_queue;
    doc jsonb;
    candles jsonb;
    total integer;
    n bigint;
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT * INTO q FROM @extschema@.backfill_queue b WHERE b.id = job FOR UPDATE;
    IF NOT FOUND OR q.state <> 'running' OR q.requests_done <> chunk THEN
        RETURN 0;
    END IF;
    BEGIN
        doc := body::jsonb;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'the historical reply is not JSON' USING ERRCODE = 'TR502';
    END;
    IF jsonb_typeof(doc) = 'object' AND doc->>'status' = 'error' THEN
        IF doc->>'error_type' IN ('NetworkException', 'GeneralException', 'DataException') THEN
            RAISE EXCEPTION 'the broker could not serve the request (%): %',
                doc->>'error_type', left(doc->>'message', 200) USING ERRCODE = 'TR504';
        END IF;
        RAISE EXCEPTION 'the broker refused the request (%): %',
            doc->>'error_type', left(doc->>'message', 200) USING ERRCODE = 'TR502';
    END IF;
    IF jsonb_typeof(doc) <> 'object' OR doc->>'status' IS DISTINCT FROM 'success'
       OR jsonb_typeof(doc->'data') <> 'object'
       OR jsonb_typeof(doc->'data'->'candles') <> 'array' THEN
        RAISE EXCEPTION 'the historical reply is not a Kite success envelope with data.candles'
            USING ERRCODE = 'TR502';
    END IF;
    candles := doc->'data'->'candles';
    total := jsonb_array_length(candles);
    -- the partitions of the requested range and of the first and last
    -- candles (Kite sends them in order; one outside both is refused)
    lo := q.from_ts + make_interval(days => q.chunk_days * chunk);
    hi := least(lo + make_interval(days => q.chunk_days) - interval '1 second', q.to_ts);
    IF total > 0 AND (candles->0->>0) ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$' THEN
        lo := least(lo, (candles->0->>0)::timestamptz);
    END IF;
    IF total > 0 AND (candles->-1->>0) ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$' THEN
        hi := greatest(hi, (candles->-1->>0)::timestamptz);
    END IF;
    PERFORM @extschema@._candles_partitions(lo, hi);
    -- one pass: every candle must be [timestamp, open, high, low, close,
    -- volume(, oi)], the timestamp exactly yyyy-mm-ddThh:mm:ss+hhmm, prices
    -- > 0 with low <= high, volume and oi non-negative integers; a candle
    -- that is not is left out, and then the whole reply is refused
    BEGIN
        INSERT INTO @extschema@.candles AS k
               (instrument_token, "interval", ts, open, high, low, close, volume, oi)
        SELECT q.instrument_token, q."interval", (c->>0)::timestamptz,
               (c->>1)::numeric, (c->>2)::numeric, (c->>3)::numeric, (c->>4)::numeric,
               (c->>5)::bigint, (c->>6)::bigint
          FROM jsonb_array_elements(candles) c
         WHERE jsonb_typeof(c) = 'array'
           AND jsonb_array_length(c) IN (6, 7)
           AND jsonb_typeof(c->0) = 'string'
           AND (c->>0) ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$'
           AND jsonb_typeof(c->1) = 'number' AND jsonb_typeof(c->2) = 'number'
           AND jsonb_typeof(c->3) = 'number' AND jsonb_typeof(c->4) = 'number'
           AND jsonb_typeof(c->5) = 'number'
           AND (jsonb_array_length(c) = 6 OR jsonb_typeof(c->6) IN ('number', 'null'))
           AND (c->>1)::numeric > 0 AND (c->>4)::numeric > 0
           AND (c->>3)::numeric > 0 AND (c->>3)::numeric <= (c->>2)::numeric
           AND (c->>5)::numeric >= 0
           AND coalesce((c->>6)::numeric, 0) >= 0
        ON CONFLICT (instrument_token, "interval", ts) DO UPDATE
           SET open = excluded.open, high = excluded.high, low = excluded.low,
               close = excluded.close, volume = excluded.volume,
               oi = coalesce(excluded.oi, k.oi);
        GET DIAGNOSTICS n = ROW_COUNT;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation OR cardinality_violation THEN
        RAISE EXCEPTION 'the historical reply has a malformed candle: %', SQLERRM
            USING ERRCODE = 'TR502';
    END;
    IF n <> total THEN
        RAISE EXCEPTION 'the historical reply has % malformed candle(s)', total - n
            USING ERRCODE = 'TR502';
    END IF;
    UPDATE @extschema@.backfill_queue b
       SET requests_done = b.requests_done + 1, rows = b.rows + n, updated_at = now(),
           state = CASE WHEN b.requests_done + 1 >= b.requests_total THEN 'done' ELSE b.state END,
           finished_at = CASE WHEN b.requests_done + 1 >= b.requests_total THEN now() END
     WHERE b.id = job;
    RETURN n;
END $$;

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

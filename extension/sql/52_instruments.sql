-- 1.1: the broker's instrument master (GET /instruments, CSV), replaced
-- whole once a day by the market data worker and on demand.  The order
-- outbox reads lot_size and tick_size from here; the ticker and the
-- historical API identify instruments by instrument_token.
-- Code: worker/market_instruments.c (the load), worker/market_worker.c
-- (the schedule); docs/MARKET_DATA.md.

CREATE TABLE @extschema@.instruments (
    instrument_token bigint PRIMARY KEY,
    exchange_token   bigint,
    tradingsymbol    text NOT NULL,
    name             text,
    last_price       numeric,
    expiry           date,
    strike           numeric,
    tick_size        numeric,
    lot_size         integer,
    instrument_type  text,
    segment          text,
    exchange         text NOT NULL,
    UNIQUE (exchange, tradingsymbol),
    CONSTRAINT instruments_sane CHECK (instrument_token > 0 AND exchange_token >= 0
        AND tick_size >= 0 AND lot_size >= 0 AND strike >= 0 AND last_price >= 0
        AND tradingsymbol <> '' AND exchange ~ '^[A-Z][A-Z0-9_]*$')
);
COMMENT ON TABLE @extschema@.instruments IS
    'The broker''s instrument master, replaced whole once a day (trading.refresh_instruments() on demand)';

GRANT SELECT ON @extschema@.instruments TO trading_reader;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.instruments', '');

-- One row per load attempt (the worker's and refresh_instruments()).
CREATE TABLE @extschema@.instrument_loads (
    id            bigserial PRIMARY KEY,
    trigger       text NOT NULL CHECK (trigger IN ('empty', 'daily', 'manual')),
    started_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at   timestamptz,
    rows          bigint,
    bytes         bigint,
    unknown_watchlist integer,
    error         text
);
COMMENT ON TABLE @extschema@.instrument_loads IS
    'Instrument master loads: when, what started them, rows loaded or the error (the old list is then kept)';
GRANT SELECT ON @extschema@.instrument_loads TO trading_reader;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.instrument_loads', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.instrument_loads_id_seq', '');

-- The watchlist checked against the master: an instrument the last load
-- did not list is marked (unknown_since) and the broker worker does not
-- quote it; a known one gets its instrument_token.
ALTER TABLE @extschema@.watchlist
    ADD COLUMN instrument_token bigint,
    ADD COLUMN unknown_since timestamptz;
COMMENT ON COLUMN @extschema@.watchlist.unknown_since IS
    'Set when the instrument master does not list this instrument: it is not quoted';

-- Mark the watchlist against the instruments; returns the number of
-- unknown instruments.  Runs in the load's transaction.
CREATE FUNCTION @extschema@._instruments_check_watchlist() RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown integer;
BEGIN
    UPDATE @extschema@.watchlist w
       SET instrument_token = i.instrument_token, unknown_since = NULL
      FROM @extschema@.instruments i
     WHERE i.exchange = split_part(w.instrument, ':', 1)
       AND i.tradingsymbol = substr(w.instrument, strpos(w.instrument, ':') + 1)
       AND (w.instrument_token IS DISTINCT FROM i.instrument_token OR w.unknown_since IS NOT NULL);
    UPDATE @extschema@.watchlist w
       SET instrument_token = NULL, unknown_since = now()
     WHERE w.unknown_since IS NULL
       AND NOT EXISTS (SELECT 1 FROM @extschema@.instruments i
                        WHERE i.exchange = split_part(w.instrument, ':', 1)
                          AND i.tradingsymbol = substr(w.instrument, strpos(w.instrument, ':') + 1));
    SELECT count(*) INTO unknown FROM @extschema@.watchlist WHERE unknown_since IS NOT NULL;
    RETURN unknown;
END $$;

-- An instrument added to the watchlist gets its token at once when the
-- master lists it; it is marked unknown only by a load (the issue's rule:
-- checked when the instruments are loaded), so a row added meanwhile is
-- quoted until the next load says otherwise.
CREATE FUNCTION @extschema@._watchlist_check_instrument() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT i.instrument_token INTO NEW.instrument_token
      FROM @extschema@.instruments i
     WHERE i.exchange = split_part(NEW.instrument, ':', 1)
       AND i.tradingsymbol = substr(NEW.instrument, strpos(NEW.instrument, ':') + 1);
    IF NEW.instrument_token IS NOT NULL THEN
        NEW.unknown_since := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER watchlist_check_instrument
    BEFORE INSERT OR UPDATE OF instrument ON @extschema@.watchlist
    FOR EACH ROW EXECUTE FUNCTION @extschema@._watchlist_check_instrument();

-- Load the instrument master now (GET {trading.broker_url}/instruments),
-- replacing the table in this transaction; returns the rows loaded.
CREATE FUNCTION @extschema@.refresh_instruments() RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'market_refresh_instruments';
COMMENT ON FUNCTION @extschema@.refresh_instruments() IS
    'Load the broker''s instrument master now, replacing trading.instruments in one transaction; returns the rows loaded';
GRANT EXECUTE ON FUNCTION @extschema@.refresh_instruments() TO trading_admin;

-- 1.1: the broker's instrument master (GET /instruments, CSV), replaced
-- whole once a day by the market data worker and on demand.  The order
-- outbox reads lot_size and tick_size from here; the ticker and the
-- historical API identify instruments by instrument_token.

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
    UNIQUE (exchange, tradingsymbol)
);
COMMENT ON TABLE @extschema@.instruments IS
    'The broker''s instrument master, replaced whole once a day (trading.refresh_instruments() on demand)';

GRANT SELECT ON @extschema@.instruments TO trading_reader;

-- The desk's view of the broker, kept current by the broker worker (one
-- transaction per endpoint response).  Typed columns for what queries and
-- metrics use, plus the broker's JSON as received in "raw".  Ids are text
-- (order ids reach 19 digits); broker timestamps are IST and stored as
-- timestamptz; quantities are bigint, money numeric.

CREATE TABLE @extschema@.orders (
    order_id                  text PRIMARY KEY,
    exchange_order_id         text,
    parent_order_id           text,
    status                    text NOT NULL,
    status_message            text,
    previous_status           text,          -- status before the last change seen
    status_changed_at         timestamptz,   -- when the worker saw the last change
    variety                   text,
    exchange                  text,
    tradingsymbol             text,
    instrument_token          bigint,
    order_type                text,
    transaction_type          text,
    validity                  text,
    product                   text,
    quantity                  bigint,
    disclosed_quantity        bigint,
    price                     numeric,
    trigger_price             numeric,
    average_price             numeric,
    filled_quantity           bigint,
    pending_quantity          bigint,
    cancelled_quantity        bigint,
    tag                       text,
    tags                      text[],
    placed_by                 text,
    order_timestamp           timestamptz,
    exchange_timestamp        timestamptz,
    exchange_update_timestamp timestamptz,
    raw                       jsonb NOT NULL,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_status_idx ON @extschema@.orders (status);

CREATE TABLE @extschema@.trades (
    trade_id           text NOT NULL,
    order_id           text NOT NULL,
    exchange           text,
    tradingsymbol      text,
    instrument_token   bigint,
    product            text,
    transaction_type   text,
    quantity           bigint,
    average_price      numeric,
    exchange_order_id  text,
    fill_timestamp     timestamptz,
    order_timestamp    time,                 -- the broker sends HH:MM:SS only
    exchange_timestamp timestamptz,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, trade_id)
);

CREATE TABLE @extschema@.positions (
    kind               text NOT NULL CHECK (kind IN ('net', 'day')),
    exchange           text NOT NULL,
    tradingsymbol      text NOT NULL,
    product            text NOT NULL,
    instrument_token   bigint,
    quantity           bigint,
    overnight_quantity bigint,
    multiplier         numeric,
    average_price      numeric,
    close_price        numeric,
    last_price         numeric,
    value              numeric,
    pnl                numeric,
    m2m                numeric,
    unrealised         numeric,
    realised           numeric,
    buy_quantity       bigint,
    buy_price          numeric,
    buy_value          numeric,
    sell_quantity      bigint,
    sell_price         numeric,
    sell_value         numeric,
    day_buy_quantity   bigint,
    day_buy_price      numeric,
    day_buy_value      numeric,
    day_sell_quantity  bigint,
    day_sell_price     numeric,
    day_sell_value     numeric,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, exchange, tradingsymbol, product)
);

CREATE TABLE @extschema@.holdings (
    exchange              text NOT NULL,
    tradingsymbol         text NOT NULL,
    isin                  text,
    instrument_token      bigint,
    product               text,
    quantity              bigint,
    t1_quantity           bigint,
    realised_quantity     bigint,
    used_quantity         bigint,
    collateral_quantity   bigint,
    average_price         numeric,
    last_price            numeric,
    close_price           numeric,
    pnl                   numeric,
    day_change            numeric,
    day_change_percentage numeric,
    raw                   jsonb NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, tradingsymbol)
);

CREATE TABLE @extschema@.margins (
    segment            text PRIMARY KEY CHECK (segment IN ('equity', 'commodity')),
    enabled            boolean,
    net                numeric,
    available_cash     numeric,
    available_live_balance numeric,
    available_collateral   numeric,
    utilised_debits    numeric,
    utilised_exposure  numeric,
    utilised_span      numeric,
    utilised_m2m_realised   numeric,
    utilised_m2m_unrealised numeric,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Instruments the worker quotes, as EXCHANGE:TRADINGSYMBOL.
CREATE TABLE @extschema@.watchlist (
    instrument text PRIMARY KEY CHECK (instrument ~ '^[A-Z]+:[^ ]+$'),
    mode       text NOT NULL DEFAULT 'ltp' CHECK (mode IN ('ltp', 'ohlc', 'full')),
    added_at   timestamptz NOT NULL DEFAULT now()
);

-- Latest quote per instrument.
CREATE TABLE @extschema@.quotes (
    instrument          text PRIMARY KEY,    -- EXCHANGE:TRADINGSYMBOL
    instrument_token    bigint,
    mode                text NOT NULL,
    last_price          numeric,
    last_quantity       bigint,
    average_price       numeric,
    volume              bigint,
    buy_quantity        bigint,
    sell_quantity       bigint,
    open                numeric,
    high                numeric,
    low                 numeric,
    close               numeric,
    net_change          numeric,
    oi                  bigint,
    lower_circuit_limit numeric,
    upper_circuit_limit numeric,
    last_trade_time     timestamptz,
    quote_timestamp     timestamptz,
    raw                 jsonb NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT ON @extschema@.orders, @extschema@.trades, @extschema@.positions,
    @extschema@.holdings, @extschema@.margins, @extschema@.watchlist,
    @extschema@.quotes TO trading_reader;
GRANT INSERT, UPDATE, DELETE ON @extschema@.watchlist TO trading_analyst;

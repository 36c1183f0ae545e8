-- trading: core.  The install script of the current version is the
-- concatenation of extension/sql/*.sql in name order (see Makefile).  Every
-- change here ships with its upgrade in extension/versions/.

\echo Use "CREATE EXTENSION trading" to load this file. \quit

-- The shared state (shared memory, background workers) belongs to one
-- database per cluster: refuse to install anywhere else.
DO $$
BEGIN
    IF current_database() <> current_setting('trading.database') THEN
        RAISE EXCEPTION 'trading must be installed in database "%"', current_setting('trading.database')
            USING ERRCODE = 'TR009',
                  DETAIL = format('The current database is "%s".', current_database()),
                  HINT = 'Connect to that database, or set trading.database in postgresql.conf and restart.';
    END IF;
END
$$;

-- Roles.  Cluster-wide, so they may already exist (another install, a
-- restore): create only what is missing.  Each role includes the one below.
--   trading_reader   views and metrics
--   trading_analyst  + the functions an analyst calls (rate limiting,
--                    correlation, passphrase encryption)
--   trading_trader   + placing, modifying and cancelling orders
--   trading_admin    + keys, credentials and configuration
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_reader') THEN
        CREATE ROLE trading_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_analyst') THEN
        CREATE ROLE trading_analyst NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_trader') THEN
        CREATE ROLE trading_trader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_admin') THEN
        CREATE ROLE trading_admin NOLOGIN;
    END IF;
END
$$;
GRANT trading_reader TO trading_analyst;
GRANT trading_analyst TO trading_trader;
GRANT trading_trader TO trading_admin;

GRANT USAGE ON SCHEMA @extschema@ TO trading_reader;

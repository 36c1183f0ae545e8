-- 1.1: the trader role, between analyst and admin (see 00_core.sql).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_trader') THEN
        CREATE ROLE trading_trader NOLOGIN;
    END IF;
END
$$;
GRANT trading_analyst TO trading_trader;
GRANT trading_trader TO trading_admin;
REVOKE trading_analyst FROM trading_admin;

-- trading.validate_config(): one row per check of the deployment (ok,
-- detail, hint), for DBAs to run after every change (docs/LOAD_BALANCER_SETUP.md).
-- A check whose capability is not installed reports ok = false with
-- "not available" rather than failing; nothing here shows a secret (the
-- key command's value and paths stay in extension/validate.c).  Works on a
-- standby: it only reads.

CREATE FUNCTION @extschema@._validate_server(OUT check_name text, OUT ok boolean,
                                                 OUT detail text, OUT hint text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'validate_sql_server';

GRANT EXECUTE ON FUNCTION @extschema@._validate_server() TO trading_admin;

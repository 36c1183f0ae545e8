-- trading.validate_config(): one row per check, never an error, no secrets.
\set VERBOSITY sqlstate

-- Every check, in a fixed order; the ones that do not depend on timing or
-- on the other tests show their verdict.
SELECT check_name,
       CASE WHEN check_name IN ('preloaded', 'trading_database', 'key_loaded',
                                'key_command_permissions', 'pbkdf2_iterations',
                                'pgbouncer_safe_settings', 'primary_hint')
            THEN ok::text ELSE '(varies)' END AS ok,
       detail IS NOT NULL AS has_detail,
       (hint IS NULL) = coalesce(ok, false) AS hint_iff_not_ok
FROM trading.validate_config();

-- The settings of this test instance that matter behind PgBouncer, and the
-- details of the stable checks.
SELECT check_name, detail, hint FROM trading.validate_config()
WHERE check_name IN ('preloaded', 'trading_database', 'key_loaded',
                     'key_command_permissions', 'pbkdf2_iterations',
                     'pgbouncer_safe_settings', 'primary_hint')
ORDER BY check_name;

-- The key command's value (superuser-only) never appears.
SELECT bool_and(detail NOT LIKE '%trading_regress%' AND detail NOT LIKE '%getkey%'
                AND coalesce(hint, '') NOT LIKE '%trading_regress%') AS no_key_command_shown
FROM trading.validate_config();

-- The server's setting counts, not a session's SET.
SET trading.pbkdf2_iterations = 100000;
SELECT ok FROM trading.validate_config() WHERE check_name = 'pbkdf2_iterations';
RESET trading.pbkdf2_iterations;

-- A setting fixed in the session is seen: idle_in_transaction_session_timeout.
SET idle_in_transaction_session_timeout = '1min';
SELECT ok, detail FROM trading.validate_config() WHERE check_name = 'pgbouncer_safe_settings';
RESET idle_in_transaction_session_timeout;

-- rate_limits: ok once a limit exists.
SELECT trading.rate_limit_set('ha_validate.test', 5, '1 second');
SELECT ok FROM trading.validate_config() WHERE check_name = 'rate_limits';
SELECT trading.rate_limit_drop('ha_validate.test');

-- An auth_query function that PUBLIC may call is reported.
CREATE SCHEMA pgbouncer;
CREATE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE (usename name, passwd text)
    LANGUAGE sql AS $$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = p_usename $$;
SELECT ok, detail FROM trading.validate_config() WHERE check_name = 'pgbouncer_safe_settings';
-- ... and locked down, it passes.
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE (usename name, passwd text)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = p_usename $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
SET idle_in_transaction_session_timeout = '1min';
SELECT ok, detail FROM trading.validate_config() WHERE check_name = 'pgbouncer_safe_settings';
RESET idle_in_transaction_session_timeout;
DROP SCHEMA pgbouncer CASCADE;

-- exporter_grants: a login member of trading_reader exists (regress_trading_reader).
SELECT ok FROM trading.validate_config() WHERE check_name = 'exporter_grants';
-- ... and a metrics view the reader cannot read is named.
REVOKE SELECT ON trading.metrics_trades FROM trading_reader;
SELECT ok, detail FROM trading.validate_config() WHERE check_name = 'exporter_grants';
GRANT SELECT ON trading.metrics_trades TO trading_reader;
SELECT ok FROM trading.validate_config() WHERE check_name = 'exporter_grants';

-- Privileges: trading_admin only.
SET ROLE regress_trading_admin;
SELECT count(*) > 10 AS admin_can_validate FROM trading.validate_config();
RESET ROLE;
SET ROLE regress_trading_analyst;
SELECT count(*) FROM trading.validate_config();
SELECT count(*) FROM trading._validate_server();
RESET ROLE;
SET ROLE regress_trading_reader;
SELECT count(*) FROM trading.validate_config();
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT count(*) FROM trading.validate_config();
RESET ROLE;

-- Arguments: none; a wrong call is a plain "function does not exist".
SELECT * FROM trading.validate_config(NULL);

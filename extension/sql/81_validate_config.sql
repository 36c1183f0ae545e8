-- trading.validate_config(), the deployment checks in SQL.  CREATE OR REPLACE:
-- both the install script and the upgrade from 1.0 run this file (1.1
-- changed the body: pgbouncer_safe_settings and exporter_grants say "does
-- not apply" (ok NULL) where they do not, and exporter_grants counts
-- reader-only logins, not analysts).  The C checks are in 80_validate.sql.

CREATE OR REPLACE FUNCTION @extschema@.validate_config(OUT check_name text, OUT ok boolean,
                                            OUT detail text, OUT hint text)
    RETURNS SETOF record LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    standby   boolean := pg_is_in_recovery();
    s         text;
    n         bigint;
    m         bigint;
    iters     integer;
    wstate    text;
    sstate    text;
    stale     text;
    missing   text;
BEGIN
    -- preloaded, key_loaded, key_command_permissions (C: they read what SQL may not show)
    RETURN QUERY SELECT * FROM @extschema@._validate_server();

    -- the database that owns the shared state
    check_name := 'trading_database';
    ok := current_setting('trading.database', true) IS NOT DISTINCT FROM current_database();
    detail := format('trading.database is %s; this is database %s',
                     coalesce(quote_ident(current_setting('trading.database', true)), 'not set'),
                     quote_ident(current_database()));
    hint := CASE WHEN ok THEN NULL
                 ELSE 'Set trading.database to the database that has the extension, and restart.' END;
    RETURN NEXT;


    -- PBKDF2 iterations of the server's configuration (not this session's SET)
    check_name := 'pbkdf2_iterations';
    SELECT reset_val::integer INTO iters FROM pg_settings WHERE name = 'trading.pbkdf2_iterations';
    IF iters IS NULL THEN
        ok := false;
        detail := 'trading.pbkdf2_iterations is not available';
        hint := 'Install the crypto module of the extension.';
    ELSE
        ok := iters >= 600000;
        detail := format('trading.pbkdf2_iterations is %s (at least 600000 recommended for PBKDF2-HMAC-SHA256)', iters);
        hint := CASE WHEN ok THEN NULL
                     ELSE 'Raise trading.pbkdf2_iterations to 600000 or more in postgresql.conf; existing envelopes keep their own count.' END;
    END IF;
    RETURN NEXT;

    -- the broker worker: running, and every enabled endpoint polled recently
    IF to_regclass('@extschema@.worker_status') IS NULL THEN
        check_name := 'worker_running'; ok := false;
        detail := 'the broker worker is not available'; hint := 'Install the broker worker module.';
        RETURN NEXT;
        check_name := 'worker_fresh';
        RETURN NEXT;
        check_name := 'broker_session';
        RETURN NEXT;
    ELSE
        EXECUTE 'SELECT worker_state, session_state FROM @extschema@.worker_status LIMIT 1'
            INTO wstate, sstate;
        check_name := 'worker_running';
        IF standby THEN
            ok := true;
            detail := format('this server is a standby: the worker starts when it is promoted (state %s)', wstate);
            hint := NULL;
        ELSE
            ok := wstate IS NOT NULL AND wstate NOT IN ('not_running', 'starting');
            detail := format('the broker worker is %s', coalesce(wstate, 'unknown'));
            hint := CASE WHEN ok THEN NULL
                         ELSE 'Check trading.broker_worker = on and the server log for "trading broker worker".' END;
        END IF;
        RETURN NEXT;

        check_name := 'worker_fresh';
        IF standby THEN
            ok := true;
            detail := 'this server is a standby: the primary''s worker fills the tables, replication brings them here';
            hint := NULL;
        ELSE
            EXECUTE $q$
                SELECT count(*),
                       string_agg(endpoint, ', ' ORDER BY endpoint)
                         FILTER (WHERE last_success IS NULL
                                 OR last_success < now() - greatest(3 * interval_ms, 30000) * interval '1 ms')
                FROM @extschema@.worker_status WHERE enabled$q$
                INTO n, stale;
            ok := wstate = 'polling' AND stale IS NULL;
            detail := CASE
                WHEN wstate IS DISTINCT FROM 'polling' THEN format('the worker is not polling (state %s)', coalesce(wstate, 'unknown'))
                WHEN stale IS NULL THEN format('all %s enabled endpoints succeeded within 3 poll intervals (at least 30 s)', n)
                ELSE format('no recent success for: %s', stale) END;
            hint := CASE WHEN ok THEN NULL
                         ELSE 'See trading.worker_status and trading.worker_errors; check trading.broker_url and the broker session.' END;
        END IF;
        RETURN NEXT;

        check_name := 'broker_session';
        EXECUTE 'SELECT state FROM @extschema@.broker_session_status' INTO s;
        ok := s = 'active' AND sstate IS DISTINCT FROM 'expired' AND sstate IS DISTINCT FROM 'unreadable';
        detail := CASE
            WHEN s IS NULL THEN 'no broker session is stored'
            WHEN sstate IN ('expired', 'unreadable') THEN format('the stored session is %s, the worker finds it %s', s, sstate)
            ELSE format('the stored session is %s', s) END;
        hint := CASE WHEN ok THEN NULL
                     ELSE 'Log in again: SELECT trading.broker_login(...) or trading.set_broker_session(...) on the primary.' END;
        RETURN NEXT;
    END IF;

    -- rate limits
    check_name := 'rate_limits';
    SELECT count(DISTINCT endpoint), count(*) INTO n, m FROM @extschema@.rate_limits;
    ok := n > 0;
    detail := format('%s limit%s on %s endpoint%s', m, CASE WHEN m = 1 THEN '' ELSE 's' END,
                     n, CASE WHEN n = 1 THEN '' ELSE 's' END);
    hint := CASE WHEN ok THEN NULL
                 ELSE 'Set the broker''s limits, e.g. SELECT trading.rate_limit_set(''kite.quote'', 1, ''1 second'') (docs/RATE_LIMITER.md).' END;
    RETURN NEXT;

    -- settings that matter behind PgBouncer in transaction pooling mode; the
    -- check applies where PgBouncer's auth function (deploy/pgbouncer_auth.sql)
    -- says clients come through PgBouncer
    check_name := 'pgbouncer_safe_settings';
    IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
                   WHERE ns.nspname = 'pgbouncer' AND p.proname = 'get_auth') THEN
        ok := NULL;
        detail := 'does not apply: no PgBouncer auth function (pgbouncer.get_auth) in this database, so clients are taken to connect directly';
        hint := 'Behind PgBouncer in transaction pooling mode, apply deploy/postgresql.common.conf and deploy/pgbouncer_auth.sql; this check then applies (docs/LOAD_BALANCER_SETUP.md).';
    ELSE
        missing := concat_ws('; ',
            CASE WHEN current_setting('idle_in_transaction_session_timeout')::interval = '0'
                 THEN 'idle_in_transaction_session_timeout is off: a client that leaves a transaction open holds a pooled server connection for ever' END,
            CASE WHEN current_setting('password_encryption') <> 'scram-sha-256'
                 THEN 'password_encryption is not scram-sha-256 (PgBouncer''s auth_query needs SCRAM secrets)' END,
            CASE WHEN current_setting('max_prepared_transactions')::int > 0
                 THEN 'max_prepared_transactions is above 0: prepared transactions outlive the pooled session that made them' END,
            CASE WHEN EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
                              WHERE ns.nspname = 'pgbouncer' AND p.proname = 'get_auth'
                                AND (NOT p.prosecdef
                                     OR has_function_privilege('public', p.oid, 'EXECUTE')
                                     OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                                                    WHERE c LIKE 'search\_path=%')))
                 THEN 'pgbouncer.get_auth(text) is executable by PUBLIC, not SECURITY DEFINER, or has no pinned search_path' END);
        ok := missing = '';
        detail := CASE WHEN ok THEN format('idle_in_transaction_session_timeout = %s, SCRAM passwords, no prepared transactions, auth function pgbouncer.get_auth is locked down',
                                           current_setting('idle_in_transaction_session_timeout'))
                       ELSE missing END;
        hint := CASE WHEN ok THEN NULL
                     ELSE 'Apply deploy/postgresql.common.conf and deploy/pgbouncer_auth.sql (docs/LOAD_BALANCER_SETUP.md).' END;
    END IF;
    RETURN NEXT;

    -- the exporter's role: a login role that is a reader and nothing more
    -- (an analyst or an admin could read the views too, but is not an
    -- exporter's role); the check applies once such a role exists
    check_name := 'exporter_grants';
    SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO missing
      FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE ns.nspname = '@extschema@' AND c.relkind = 'v' AND c.relname LIKE 'metrics%'
       AND NOT has_table_privilege('trading_reader', c.oid, 'SELECT');
    SELECT count(*), count(*) FILTER (WHERE pg_has_role(r.oid, 'pg_monitor', 'MEMBER')) INTO n, iters
      FROM pg_roles r
     WHERE r.rolcanlogin AND NOT r.rolsuper
       AND pg_has_role(r.oid, 'trading_reader', 'MEMBER')
       AND NOT pg_has_role(r.oid, 'trading_analyst', 'MEMBER')
       AND has_database_privilege(r.oid, current_database(), 'CONNECT');
    SELECT count(*) INTO m FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE ns.nspname = '@extschema@' AND c.relkind = 'v' AND c.relname LIKE 'metrics%';
    ok := CASE WHEN m = 0 OR missing IS NOT NULL THEN false
               WHEN n = 0 THEN NULL
               ELSE true END;
    detail := CASE
        WHEN m = 0 THEN 'the metrics views are not available'
        WHEN missing IS NOT NULL THEN format('trading_reader cannot read: %s', missing)
        WHEN n = 0 THEN 'does not apply: no login role is a member of trading_reader without being an analyst (the exporter''s role)'
        ELSE format('%s reader login role%s (%s of them in pg_monitor) can read all %s metrics views', n,
                    CASE WHEN n = 1 THEN '' ELSE 's' END, iters, m) END;
    hint := CASE WHEN ok THEN NULL
                 ELSE 'CREATE ROLE trading_exporter LOGIN IN ROLE trading_reader, pg_monitor; and run the exporter as that role (docs/MONITORING.md).' END;
    RETURN NEXT;

    -- high availability: on a standby, the refused writes must say where the primary is
    check_name := 'primary_hint';
    s := coalesce(current_setting('trading.primary_hint', true), '');
    ok := s <> '' OR NOT standby;
    detail := CASE
        WHEN s <> '' THEN format('this server is a %s; refused writes point to: %s',
                                 CASE WHEN standby THEN 'standby' ELSE 'primary' END, s)
        WHEN standby THEN 'this server is a standby and trading.primary_hint is empty: refused writes cannot say where the primary is'
        ELSE 'this server is a primary; trading.primary_hint is empty (set it before it becomes a standby)' END;
    hint := CASE WHEN ok THEN NULL
                 ELSE 'Set trading.primary_hint, e.g. ''the read-write frontend at haproxy:5000'', and reload.' END;
    RETURN NEXT;
END
$fn$;
COMMENT ON FUNCTION @extschema@.validate_config() IS
    'One row per deployment check (ok, detail, hint); run after every configuration change';

GRANT EXECUTE ON FUNCTION @extschema@.validate_config() TO trading_admin;

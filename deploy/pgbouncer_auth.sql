-- trading: the role and function PgBouncer's auth_query uses (run once, as a
-- superuser, in the trading database; a replica gets it by replication).
--
--   psql -d trading -f deploy/pgbouncer_auth.sql
--   psql -d trading -c "\password pgbouncer_auth"
--
-- then put pgbouncer_auth's password, in clear, as the only line of
-- PgBouncer's userlist (owned by the pgbouncer user, mode 0600):
--   "pgbouncer_auth" "the password"
-- PgBouncer logs in as pgbouncer_auth on its own, before any client, so it
-- needs the password itself (a SCRAM secret only lets it check a client's
-- password, not log in with it).  pgbouncer_auth can do nothing but run
-- pgbouncer.get_auth.
--
-- get_auth returns the SCRAM secret of a login role so that PgBouncer can
-- check the client's password.  It is SECURITY DEFINER with a pinned
-- search_path, executable by pgbouncer_auth only, and never answers for
-- superusers (they connect to PostgreSQL directly, not through the pool)
-- or for roles whose password has expired.  trading.validate_config()
-- checks these properties.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbouncer_auth') THEN
        CREATE ROLE pgbouncer_auth LOGIN;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS pgbouncer AUTHORIZATION CURRENT_USER;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;

-- PL/pgSQL rather than SQL: PgBouncer runs auth_query on every client login,
-- and a SECURITY DEFINER SQL function is neither inlined nor cached, so its
-- body would be parsed and planned each time; PL/pgSQL keeps the plan for
-- the life of PgBouncer's server connection (bench/pgbouncer.sh: about 7%
-- more connections per second through PgBouncer).
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text)
    RETURNS TABLE (usename name, passwd text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT a.rolname, a.rolpassword
    FROM pg_authid a
    WHERE a.rolname = p_usename
      AND a.rolcanlogin
      AND NOT a.rolsuper
      AND NOT a.rolreplication
      AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > now());
END
$$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth;

-- 1.1: what pg_dump keeps (docs/OPERATIONS.md).  Every table that holds
-- the desk's data or configuration is registered with
-- pg_extension_config_dump, so that a dump of the database carries its
-- rows and a restore (CREATE EXTENSION, then the rows) rebuilds the desk.
-- Capabilities added in 1.1 register their own tables in their own files.
--
-- Two tables are seeded by this script (the Kite rate limits and the poll
-- intervals): their dumps leave out the rows still equal to a seed, and a
-- row restored over a seed that is still unchanged replaces it, so that a
-- changed default (kite.orders at 400 a minute) survives the round trip.
-- A seed that was deleted comes back after a restore (the safer side for
-- a rate limit); docs/OPERATIONS.md says so.

CREATE FUNCTION @extschema@._rate_limit_defaults(OUT endpoint text, OUT requests integer, OUT per interval)
    RETURNS SETOF record LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('kite.quote'::text,      1,    interval '1 second'),
           ('kite.historical',       3,    interval '1 second'),
           ('kite.orders',           10,   interval '1 second'),
           ('kite.orders',           200,  interval '1 minute'),
           ('kite.orders',           3000, interval '1 day'),
           ('kite.api',              10,   interval '1 second')
$$;
COMMENT ON FUNCTION @extschema@._rate_limit_defaults() IS
    'The Kite limits the extension installs (left out of dumps while unchanged)';

CREATE FUNCTION @extschema@._poll_interval_defaults(OUT endpoint text, OUT interval_ms integer, OUT enabled boolean)
    RETURNS SETOF record LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('orders'::text, 2000, true), ('trades', 5000, true), ('positions', 3000, true),
           ('holdings', 60000, true), ('margins', 10000, true), ('quotes', 1000, true)
$$;
COMMENT ON FUNCTION @extschema@._poll_interval_defaults() IS
    'The poll intervals the extension installs (left out of dumps while unchanged)';

-- A row inserted over a seed that is still unchanged replaces it (restore).
CREATE FUNCTION @extschema@._replace_unchanged_seed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'rate_limits' THEN
        DELETE FROM @extschema@.rate_limits r
        WHERE r.endpoint OPERATOR(pg_catalog.=) NEW.endpoint
          AND r.per OPERATOR(pg_catalog.=) NEW.per
          AND (r.endpoint, r.requests, r.per) IN (SELECT * FROM @extschema@._rate_limit_defaults());
    ELSIF TG_TABLE_NAME = 'poll_intervals' THEN
        DELETE FROM @extschema@.poll_intervals p
        WHERE p.endpoint OPERATOR(pg_catalog.=) NEW.endpoint
          AND (p.endpoint, p.interval_ms, p.enabled) IN (SELECT * FROM @extschema@._poll_interval_defaults());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER replace_unchanged_seed
    BEFORE INSERT ON @extschema@.rate_limits
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_unchanged_seed();
CREATE TRIGGER replace_unchanged_seed
    BEFORE INSERT ON @extschema@.poll_intervals
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_unchanged_seed();

-- A key check value restored into a cluster whose server key prints another
-- key for that version is refused (TR102): the rows encrypted under it
-- could never be read there.  The same value registered again is skipped.
-- Without any server key the rows are kept, with a warning.
CREATE FUNCTION @extschema@._key_versions_restore() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loaded bytea;
    known bytea;
BEGIN
    BEGIN
        SELECT k.kcv INTO loaded FROM @extschema@._key_versions() k
        WHERE k.version OPERATOR(pg_catalog.=) NEW.version;
    EXCEPTION WHEN SQLSTATE 'TR101' THEN
        RAISE WARNING 'no server key is loaded: values encrypted under server key version % cannot be decrypted here', NEW.version
            USING HINT = 'Set trading.key_command to the keys of the cluster the rows came from and restart (docs/OPERATIONS.md).';
    END;
    IF loaded IS NOT NULL AND loaded OPERATOR(pg_catalog.<>) NEW.kcv THEN
        RAISE EXCEPTION 'server key version % of this cluster is not the key the rows were encrypted under', NEW.version
            USING ERRCODE = 'TR102',
                  DETAIL = 'The key check value being stored differs from the one of the key that trading.key_command printed for that version.',
                  HINT = 'Restore into a cluster whose trading.key_command prints the keys of the cluster the dump came from (docs/OPERATIONS.md).';
    END IF;
    SELECT kcv INTO known FROM @extschema@.key_versions WHERE version OPERATOR(pg_catalog.=) NEW.version;
    IF FOUND AND known OPERATOR(pg_catalog.=) NEW.kcv THEN
        -- registered here already: keep the first registration's time
        UPDATE @extschema@.key_versions
           SET registered_at = LEAST(registered_at, NEW.registered_at)
         WHERE version OPERATOR(pg_catalog.=) NEW.version;
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER key_versions_restore
    BEFORE INSERT ON @extschema@.key_versions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._key_versions_restore();

SELECT pg_catalog.pg_extension_config_dump('@extschema@.rate_limits',
    'WHERE (endpoint, requests, per) NOT IN (SELECT * FROM @extschema@._rate_limit_defaults())');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.poll_intervals',
    'WHERE (endpoint, interval_ms, enabled) NOT IN (SELECT * FROM @extschema@._poll_interval_defaults())');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.key_versions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.archives', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.operations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.broker_session', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.watchlist', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.orders', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.trades', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.positions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.holdings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.margins', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.quotes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.instruments', '');

GRANT EXECUTE ON FUNCTION @extschema@._rate_limit_defaults() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._poll_interval_defaults() TO trading_reader;

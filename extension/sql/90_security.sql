-- 1.1 security hardening (docs/SECURITY.md, issue 13 items 5, 11, 12 and
-- the low items of encryption; issue 18 key rotation).  The same file runs
-- in a fresh install and in the 1.0 -> 1.1 upgrade (a symbolic link in
-- extension/versions/1.0--1.1/), after every object it changes exists.

-- ---------------------------------------------------------------------
-- Passphrase functions with names of their own.  encrypt(data, text) read
-- like encrypt(data, aad): an untyped literal meant as associated data
-- silently became a passphrase.  The 1.0 overloads stay (same C entry
-- points, which now raise a deprecation WARNING) until 2.0 removes them.
-- iterations: NULL = trading.pbkdf2_iterations (a superuser setting).
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@.encrypt_with_passphrase(data bytea, passphrase text,
                                                    aad bytea DEFAULT '\x'::bytea,
                                                    iterations integer DEFAULT NULL)
    RETURNS bytea LANGUAGE c VOLATILE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_with_passphrase';
CREATE FUNCTION @extschema@.decrypt_with_passphrase(data bytea, passphrase text,
                                                    aad bytea DEFAULT '\x'::bytea)
    RETURNS bytea LANGUAGE c VOLATILE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_with_passphrase';
COMMENT ON FUNCTION @extschema@.encrypt_with_passphrase(bytea, text, bytea, integer) IS
    'AES-256-GCM envelope of data under PBKDF2-HMAC-SHA256(passphrase, random salt, iterations or trading.pbkdf2_iterations), bound to aad';
COMMENT ON FUNCTION @extschema@.decrypt_with_passphrase(bytea, text, bytea) IS
    'Plaintext of a passphrase envelope (iterations come from the envelope, bounded 100000..10000000)';
COMMENT ON FUNCTION @extschema@.encrypt(bytea, text) IS
    'Deprecated (removed in 2.0): use encrypt_with_passphrase; the second argument is a passphrase, not associated data';
COMMENT ON FUNCTION @extschema@.encrypt(bytea, text, bytea) IS
    'Deprecated (removed in 2.0): use encrypt_with_passphrase';
COMMENT ON FUNCTION @extschema@.decrypt(bytea, text) IS
    'Deprecated (removed in 2.0): use decrypt_with_passphrase';
COMMENT ON FUNCTION @extschema@.decrypt(bytea, text, bytea) IS
    'Deprecated (removed in 2.0): use decrypt_with_passphrase';
GRANT EXECUTE ON FUNCTION @extschema@.encrypt_with_passphrase(bytea, text, bytea, integer) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt_with_passphrase(bytea, text, bytea) TO trading_analyst;

-- ---------------------------------------------------------------------
-- Archives: import from the client, so that no server-file role (which
-- can read the key file as well) is needed; the digest of admin plaintext
-- shown to admins only.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@.archive_import(name text, data bytea) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_import_data';
COMMENT ON FUNCTION @extschema@.archive_import(text, bytea) IS
    'Store an exported archive (its bytes sent by the client) under its name, after authenticating it; needs no server-file role';
COMMENT ON FUNCTION @extschema@.archive_import(text, text) IS
    'Read an exported archive from a server file back under its name (needs pg_read_server_files; prefer archive_import(name, data bytea))';
GRANT EXECUTE ON FUNCTION @extschema@.archive_import(text, bytea) TO trading_admin;

CREATE OR REPLACE VIEW @extschema@.archive_list AS
    SELECT name, row_count, plaintext_bytes, stored_bytes,
           CASE WHEN pg_catalog.pg_has_role('trading_admin', 'USAGE') THEN sha256 END AS sha256,
           key_version, created_by, created_at
    FROM @extschema@.archives ORDER BY name;
COMMENT ON VIEW @extschema@.archive_list IS
    'Archives with their row count, sizes, key version and creation; the plaintext digest (sha256) only for trading_admin';

-- ---------------------------------------------------------------------
-- The Kite api secret, stored once so that a login carries no secret in
-- its statement.  Readable by the table owner only; set with
-- set_broker_api_secret (pass the secret as a bind parameter).
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.broker_api_secret (
    api_key text PRIMARY KEY CHECK (length(api_key) BETWEEN 1 AND 128),
    secret  bytea NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE @extschema@.broker_api_secret IS
    'The Kite api secret per api_key, encrypted with the server key (AAD trading.broker_api_secret:<api_key>)';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.broker_api_secret', '');

CREATE FUNCTION @extschema@.set_broker_api_secret(api_key text, api_secret text)
    RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_sql_set_api_secret';
COMMENT ON FUNCTION @extschema@.set_broker_api_secret(text, text) IS
    'Store the Kite api secret of api_key encrypted with the server key, for broker_login(api_key, request_token); pass it as a bind parameter';

CREATE FUNCTION @extschema@.broker_login(api_key text, request_token text,
                                         OUT user_id text, OUT login_time timestamptz)
    RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_login';
COMMENT ON FUNCTION @extschema@.broker_login(text, text) IS
    'Exchange a request_token for an access token with the api secret stored by set_broker_api_secret, and store the session';
COMMENT ON FUNCTION @extschema@.broker_login(text, text, text) IS
    'Exchange a request_token for an access token (POST /session/token with the checksum) and store the session; the api secret is in the statement: prefer broker_login(api_key, request_token)';

GRANT EXECUTE ON FUNCTION @extschema@.set_broker_api_secret(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.broker_login(text, text) TO trading_admin;

-- ---------------------------------------------------------------------
-- Key rotation of the extension's own server-key columns: after a new key
-- version is current, re-wrap at most batch_size values of each column
-- still under an older version.  Call until every rewrapped is 0.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@.rewrap_server_key_columns(batch_size integer DEFAULT 100,
    OUT table_name text, OUT rewrapped bigint, OUT remaining bigint)
    RETURNS SETOF record LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur integer;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000'
            USING ERRCODE = '22023';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot re-wrap during recovery'
            USING ERRCODE = '25006', HINT = 'Run it on the primary.';
    END IF;
    SELECT version INTO cur FROM @extschema@.key_status WHERE is_current;
    IF cur IS NULL THEN
        RAISE EXCEPTION 'the server key is not loaded'
            USING ERRCODE = 'TR101',
                  HINT = 'Set trading.key_command (docs/ENCRYPTION.md) and restart the server.';
    END IF;

    table_name := 'broker_session';
    UPDATE @extschema@.broker_session
       SET credentials = @extschema@.reencrypt(credentials, convert_to('trading.broker_session', 'UTF8'))
     WHERE (@extschema@.envelope_info(credentials)).key_version < cur;
    GET DIAGNOSTICS rewrapped = ROW_COUNT;
    remaining := 0;
    RETURN NEXT;

    table_name := 'broker_api_secret';
    WITH todo AS (
        SELECT s.api_key FROM @extschema@.broker_api_secret s
        WHERE (@extschema@.envelope_info(s.secret)).key_version < cur
        ORDER BY s.api_key LIMIT batch_size FOR UPDATE)
    UPDATE @extschema@.broker_api_secret s
       SET secret = @extschema@.reencrypt(s.secret,
                        convert_to('trading.broker_api_secret:' || s.api_key, 'UTF8'))
      FROM todo WHERE s.api_key = todo.api_key;
    GET DIAGNOSTICS rewrapped = ROW_COUNT;
    SELECT count(*) INTO remaining FROM @extschema@.broker_api_secret s
     WHERE (@extschema@.envelope_info(s.secret)).key_version < cur;
    RETURN NEXT;

    table_name := 'archives';
    WITH todo AS (
        SELECT a.name FROM @extschema@.archives a
        WHERE a.key_version < cur
        ORDER BY a.name LIMIT batch_size FOR UPDATE)
    UPDATE @extschema@.archives a
       SET data = @extschema@.reencrypt(a.data, convert_to('trading.archive:' || a.name, 'UTF8')),
           key_version = cur
      FROM todo WHERE a.name = todo.name;
    GET DIAGNOSTICS rewrapped = ROW_COUNT;
    SELECT count(*) INTO remaining FROM @extschema@.archives a WHERE a.key_version < cur;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION @extschema@.rewrap_server_key_columns(integer) IS
    'Key rotation: re-wrap the extension''s own server-key columns (broker_session, broker_api_secret, archives) under the current key version, batch_size values per table; repeat until rewrapped is 0 everywhere';
GRANT EXECUTE ON FUNCTION @extschema@.rewrap_server_key_columns(integer) TO trading_admin;

-- Encryption at rest (docs/ENCRYPTION.md).  AES-256-GCM envelopes under the
-- server key (trading.key_command, loaded at server start; HKDF subkeys) or
-- a passphrase (PBKDF2-HMAC-SHA256).  Who may do what:
--   trading_analyst  passphrase mode, envelope_info
--   trading_admin    server key: encrypt, decrypt, reencrypt, archives,
--                    key_status (file export also needs pg_write_server_files)

-- Key check values of the server key versions ever used in this database:
-- a 16-byte HKDF output of each key, never the key.  A backend compares the
-- key it got from trading.key_command with this before using a version.
CREATE TABLE @extschema@.key_versions (
    version       integer PRIMARY KEY CHECK (version BETWEEN 1 AND 999999),
    kcv           bytea   NOT NULL CHECK (length(kcv) = 16),
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.key_versions IS
    'Key check value of each server key version used here (never the key)';

-- Register (when allowed and missing) and compare one key check value.
-- NULL: not registered and the transaction cannot register it.
CREATE FUNCTION @extschema@._key_version_check(p_version integer, p_kcv bytea,
                                               p_may_register boolean)
    RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known bytea;
BEGIN
    SELECT kcv INTO known FROM @extschema@.key_versions WHERE version = p_version;
    IF NOT FOUND AND p_may_register THEN
        INSERT INTO @extschema@.key_versions (version, kcv) VALUES (p_version, p_kcv)
            ON CONFLICT (version) DO NOTHING;
        SELECT kcv INTO known FROM @extschema@.key_versions WHERE version = p_version;
    END IF;
    IF known IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN known = p_kcv;
END
$$;

-- Server key.
CREATE FUNCTION @extschema@.encrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server';
CREATE FUNCTION @extschema@.encrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server';
CREATE FUNCTION @extschema@.decrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server';
CREATE FUNCTION @extschema@.decrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server';
CREATE FUNCTION @extschema@.encrypt_text(data text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server_text';
CREATE FUNCTION @extschema@.encrypt_text(data text, aad text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server_text';
CREATE FUNCTION @extschema@.decrypt_text(data bytea) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server_text';
CREATE FUNCTION @extschema@.decrypt_text(data bytea, aad text) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server_text';
CREATE FUNCTION @extschema@.reencrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_reencrypt';
CREATE FUNCTION @extschema@.reencrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_reencrypt';
COMMENT ON FUNCTION @extschema@.encrypt(bytea) IS
    'AES-256-GCM envelope of data under the current server key version';
COMMENT ON FUNCTION @extschema@.encrypt(bytea, bytea) IS
    'AES-256-GCM envelope of data under the server key, bound to aad (pass it typed bytea)';
COMMENT ON FUNCTION @extschema@.decrypt(bytea) IS
    'Plaintext of a server-key envelope; TR110 when it does not authenticate';
COMMENT ON FUNCTION @extschema@.decrypt(bytea, bytea) IS
    'Plaintext of a server-key envelope bound to aad';
COMMENT ON FUNCTION @extschema@.reencrypt(bytea) IS
    'The same plaintext re-wrapped under the current server key version (key rotation)';
COMMENT ON FUNCTION @extschema@.reencrypt(bytea, bytea) IS
    'The same plaintext, bound to aad, re-wrapped under the current server key version';

-- Passphrase.
CREATE FUNCTION @extschema@.encrypt(data bytea, passphrase text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_passphrase';
CREATE FUNCTION @extschema@.encrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_passphrase';
CREATE FUNCTION @extschema@.decrypt(data bytea, passphrase text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_passphrase';
CREATE FUNCTION @extschema@.decrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_passphrase';
COMMENT ON FUNCTION @extschema@.encrypt(bytea, text) IS
    'AES-256-GCM envelope of data under PBKDF2-HMAC-SHA256(passphrase, random salt, trading.pbkdf2_iterations)';
COMMENT ON FUNCTION @extschema@.decrypt(bytea, text) IS
    'Plaintext of a passphrase envelope (iterations come from the envelope)';

CREATE FUNCTION @extschema@.envelope_info(data bytea,
    OUT format_version integer, OUT mode text, OUT key_version integer,
    OUT iterations integer, OUT aad_bound boolean, OUT plaintext_bytes bigint)
    RETURNS record LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_envelope_info';
COMMENT ON FUNCTION @extschema@.envelope_info(bytea) IS
    'Header of an envelope (no key needed): mode, key version or iterations, aad binding, size';

CREATE FUNCTION @extschema@._key_versions(OUT version integer, OUT is_current boolean, OUT kcv bytea)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'crypto_sql_key_versions';
CREATE VIEW @extschema@.key_status AS
    SELECT coalesce(l.version, r.version) AS version,
           coalesce(l.is_current, false) AS is_current,
           l.version IS NOT NULL AS loaded,
           r.registered_at,
           CASE WHEN l.version IS NULL OR r.version IS NULL THEN NULL
                ELSE l.kcv = r.kcv END AS key_matches
    FROM @extschema@._key_versions() l
    FULL JOIN @extschema@.key_versions r ON r.version = l.version
    ORDER BY 1;
COMMENT ON VIEW @extschema@.key_status IS
    'Server key versions loaded at start and/or registered here; key_matches false means a wrong key';

GRANT SELECT ON @extschema@.key_versions TO trading_admin;
GRANT SELECT ON @extschema@.key_status TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@._key_versions() TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@._key_version_check(integer, bytea, boolean) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt(bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt(bytea, bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt(bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt(bytea, bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt_text(text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt_text(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt_text(bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt_text(bytea, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(bytea, bytea) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt(bytea, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.encrypt(bytea, text, bytea) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt(bytea, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.decrypt(bytea, text, bytea) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.envelope_info(bytea) TO trading_analyst;

-- Secure archives (archive.c).  data is the envelope (server key, fresh
-- salt, bound to 'trading.archive:' || name); sha256 is the digest of the
-- plaintext JSON lines.  Random bytes do not compress: store them as is.
CREATE TABLE @extschema@.archives (
    name            text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    row_count       bigint NOT NULL CHECK (row_count >= 0),
    plaintext_bytes bigint NOT NULL CHECK (plaintext_bytes >= 0),
    stored_bytes    bigint NOT NULL CHECK (stored_bytes >= 0),
    sha256          bytea  NOT NULL CHECK (length(sha256) = 32),
    key_version     integer NOT NULL,
    created_by      name   NOT NULL DEFAULT current_user,
    created_at      timestamptz NOT NULL DEFAULT now(),
    data            bytea  NOT NULL
);
ALTER TABLE @extschema@.archives ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.archives IS
    'Encrypted archives of query results (trading.archive_create)';

CREATE VIEW @extschema@.archive_list AS
    SELECT name, row_count, plaintext_bytes, stored_bytes, sha256, key_version,
           created_by, created_at
    FROM @extschema@.archives ORDER BY name;
COMMENT ON VIEW @extschema@.archive_list IS
    'Archives with their row count, sizes, plaintext digest, key version and creation';

CREATE FUNCTION @extschema@.archive_create(name text, query text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_create';
CREATE FUNCTION @extschema@.archive_rows(name text) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_rows';
CREATE FUNCTION @extschema@.archive_verify(name text) RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_verify';
CREATE FUNCTION @extschema@.archive_export(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_export';
CREATE FUNCTION @extschema@.archive_import(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_import';
COMMENT ON FUNCTION @extschema@.archive_create(text, text) IS
    'Run query as the caller and store its rows encrypted under the server key; returns the row count';
COMMENT ON FUNCTION @extschema@.archive_rows(text) IS
    'The rows of an archive, one jsonb object each, after authenticating it';
COMMENT ON FUNCTION @extschema@.archive_verify(text) IS
    'Authenticate an archive and check its digest and row count; true or an error (TR110, TR120)';
COMMENT ON FUNCTION @extschema@.archive_export(text, text) IS
    'Write the encrypted archive to a new server file (needs pg_write_server_files); tools/trading-crypt reads it';
COMMENT ON FUNCTION @extschema@.archive_import(text, text) IS
    'Read an exported archive back under its name (needs pg_read_server_files)';

GRANT SELECT ON @extschema@.archive_list TO trading_analyst;
GRANT SELECT, INSERT, DELETE ON @extschema@.archives TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.archive_create(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.archive_rows(text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.archive_verify(text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.archive_export(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.archive_import(text, text) TO trading_admin;

-- 1.1 names the C functions of the encryption, archive, validation and
-- broker-session SQL functions with their module's prefix (crypto_sql_,
-- archive_sql_, validate_sql_, broker_sql_).  The 1.0 symbols stay in the
-- library as aliases (extension/compat_1_0.c) for 1.0 installs that have
-- not been updated yet; this points the 1.0 objects at the new names.
-- Definitions as in extension/sql/ (t/005_upgrade.pl compares them).

CREATE OR REPLACE FUNCTION @extschema@.encrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server';
CREATE OR REPLACE FUNCTION @extschema@.encrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server';
CREATE OR REPLACE FUNCTION @extschema@.decrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server';
CREATE OR REPLACE FUNCTION @extschema@.decrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server';
CREATE OR REPLACE FUNCTION @extschema@.encrypt_text(data text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server_text';
CREATE OR REPLACE FUNCTION @extschema@.encrypt_text(data text, aad text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_server_text';
CREATE OR REPLACE FUNCTION @extschema@.decrypt_text(data bytea) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server_text';
CREATE OR REPLACE FUNCTION @extschema@.decrypt_text(data bytea, aad text) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_server_text';
CREATE OR REPLACE FUNCTION @extschema@.reencrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_reencrypt';
CREATE OR REPLACE FUNCTION @extschema@.reencrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'crypto_sql_reencrypt';
CREATE OR REPLACE FUNCTION @extschema@.encrypt(data bytea, passphrase text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_passphrase';
CREATE OR REPLACE FUNCTION @extschema@.encrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_encrypt_passphrase';
CREATE OR REPLACE FUNCTION @extschema@.decrypt(data bytea, passphrase text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_passphrase';
CREATE OR REPLACE FUNCTION @extschema@.decrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_decrypt_passphrase';
CREATE OR REPLACE FUNCTION @extschema@.envelope_info(data bytea,
    OUT format_version integer, OUT mode text, OUT key_version integer,
    OUT iterations integer, OUT aad_bound boolean, OUT plaintext_bytes bigint)
    RETURNS record LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'crypto_sql_envelope_info';
CREATE OR REPLACE FUNCTION @extschema@._key_versions(OUT version integer, OUT is_current boolean, OUT kcv bytea)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'crypto_sql_key_versions';
CREATE OR REPLACE FUNCTION @extschema@.archive_create(name text, query text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_create';
CREATE OR REPLACE FUNCTION @extschema@.archive_rows(name text) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_rows';
CREATE OR REPLACE FUNCTION @extschema@.archive_verify(name text) RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_verify';
CREATE OR REPLACE FUNCTION @extschema@.archive_export(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_export';
CREATE OR REPLACE FUNCTION @extschema@.archive_import(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'archive_sql_import';
CREATE OR REPLACE FUNCTION @extschema@.set_broker_session(api_key text, access_token text)
    RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_sql_set_session';
CREATE OR REPLACE FUNCTION @extschema@.clear_broker_session() RETURNS boolean
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_sql_clear_session';
CREATE OR REPLACE FUNCTION @extschema@._validate_server(OUT check_name text, OUT ok boolean,
                                                 OUT detail text, OUT hint text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'validate_sql_server';

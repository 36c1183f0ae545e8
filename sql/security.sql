-- Security hardening (docs/SECURITY.md): issue 13 items 5, 11, 12, 13 and
-- the low items of encryption, checked through SQL.  Server-side behaviour
-- (key command timeout, read-only key page, secrets in the log and in
-- pg_stat_statements, key rotation) is in t/021_security.pl.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || ' | ' || coalesce(det, '(no detail)');
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

-- ---- TR111: the detail is a sentence of its own, not the message again ----
SELECT pg_temp.err($$SELECT trading.envelope_info('\x00'::bytea)$$) AS not_envelope;
SELECT pg_temp.err($$SELECT trading.envelope_info('\x54524445'::bytea)$$) AS truncated;
SELECT pg_temp.err($$SELECT trading.decrypt(set_byte(trading.encrypt('x'::bytea), 4, 9))$$) AS bad_version;
SELECT pg_temp.err($$SELECT trading.decrypt(set_byte(trading.encrypt('x'::bytea), 5, 7))$$) AS bad_mode;
SELECT pg_temp.err($$SELECT trading.decrypt(set_byte(trading.encrypt('x'::bytea), 6, 1))$$) AS bad_flags;
-- an iteration count above the bound is refused before any PBKDF2 work
SELECT pg_temp.err(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)',
       overlay(trading.encrypt_with_passphrase('x'::bytea, 'regress-sec-P1', iterations => 100000)
               placing int4send(10000001) from 9 for 4), 'regress-sec-P1')) AS iterations_bound;

-- ---- decrypt_text of invalid text: no plaintext byte in the error ----
SELECT pg_temp.err(format('SELECT trading.decrypt_text(%L::bytea)',
       trading.encrypt('\x41ff42fe43'::bytea))) AS invalid_text;
SELECT position('0xff' in pg_temp.err(format('SELECT trading.decrypt_text(%L::bytea)',
       trading.encrypt('\x41ff42fe43'::bytea)))) = 0 AS no_bytes_shown;

-- ---- item 12: passphrase functions have names of their own ----
SET ROLE regress_trading_analyst;
SELECT trading.decrypt_with_passphrase(
         trading.encrypt_with_passphrase('memo'::bytea, 'regress-sec-P1', 'acct:7'::bytea, 100000),
         'regress-sec-P1', 'acct:7'::bytea) = 'memo'::bytea AS named_round_trip;
-- per-call iterations are bounded
SELECT pg_temp.err($$SELECT trading.encrypt_with_passphrase('x'::bytea, 'regress-sec-P1', iterations => 99999)$$) AS too_few;
SELECT pg_temp.err($$SELECT trading.encrypt_with_passphrase('x'::bytea, 'regress-sec-P1', iterations => 10000001)$$) AS too_many;
-- the setting is no longer the analyst's to change
SELECT pg_temp.err($$SET trading.pbkdf2_iterations = 10000000$$) AS analyst_sets_iterations;
-- the ambiguous 1.0 overload still works for 1.0 callers, with a WARNING
SELECT length(trading.encrypt('x'::bytea, 'acct:7')) = 57 AS deprecated_still_works;
-- the server-key form stays trading_admin's; PostgreSQL's own permission
-- error gets a hint saying so (added when the error is reported)
SELECT pg_temp.err($$SELECT trading.encrypt('x'::bytea)$$) AS analyst_server_key;
\set VERBOSITY default
SELECT trading.encrypt('x'::bytea);
SELECT trading.decrypt('\x00'::bytea);
-- other permission errors keep theirs (none)
SELECT trading.encrypt_text('x');
\set VERBOSITY terse
RESET ROLE;

-- ---- trading.key_command: hidden from pg_read_all_settings too ----
CREATE ROLE regress_settings_reader IN ROLE pg_read_all_settings;
SET ROLE regress_settings_reader;
SHOW trading.key_command;
SELECT current_setting('trading.key_command') AS via_current_setting;
SELECT count(*) AS in_pg_settings FROM pg_settings WHERE name = 'trading.key_command';
RESET ROLE;
SELECT current_setting('trading.key_command') LIKE 'trading-getkey-file %' AS superuser_sees_it;
SELECT context, source FROM pg_settings WHERE name = 'trading.pbkdf2_iterations';

-- ---- item 11: archives imported without a server-file role ----
SET ROLE regress_trading_admin;
SELECT trading.archive_create('sec-a', 'SELECT g AS n FROM generate_series(1, 3) g') AS rows;
SELECT data AS sec_a_data FROM trading.archives WHERE name = 'sec-a' \gset
DELETE FROM trading.archives WHERE name = 'sec-a';
SELECT pg_has_role('pg_read_server_files', 'USAGE') AS admin_reads_server_files;
SELECT trading.archive_import('sec-a', :'sec_a_data'::bytea) AS imported_rows;
SELECT trading.archive_verify('sec-a') AS verified;
SELECT pg_temp.err(format('SELECT trading.archive_import(%L, %L::bytea)', 'sec-b', :'sec_a_data')) AS wrong_name;
SELECT pg_temp.err($$SELECT trading.archive_import('sec-b', NULL::bytea)$$) AS null_data;
SELECT pg_temp.err(format('SELECT trading.archive_import(%L, %L::bytea)', 'sec-a', :'sec_a_data')) AS name_taken;
SELECT count(*) AS archives_named_sec_b FROM trading.archives WHERE name = 'sec-b';
-- the plaintext digest is for admins only
SELECT sha256 IS NOT NULL AS admin_sees_digest FROM trading.archive_list WHERE name = 'sec-a';
RESET ROLE;
SET ROLE regress_trading_analyst;
SELECT name, row_count, sha256 IS NULL AS analyst_digest_hidden FROM trading.archive_list WHERE name = 'sec-a';
SELECT pg_temp.err(format('SELECT trading.archive_import(%L, %L::bytea)', 'sec-c', :'sec_a_data')) AS analyst_import;
RESET ROLE;

-- validate_config names the roles that can reach the key
SELECT ok, detail LIKE '%regress_file_reader%' AS names_it FROM trading.validate_config()
WHERE check_name = 'key_readers';
CREATE ROLE regress_file_reader IN ROLE pg_read_server_files;
SELECT ok, detail LIKE '%regress_file_reader (pg_read_server_files)%' AS names_it,
       hint LIKE '%archive_import(name, data bytea)%' AS hints_import
FROM trading.validate_config() WHERE check_name = 'key_readers';
DROP ROLE regress_file_reader;
-- the regression server's broker URL is http:// on loopback
SELECT ok, detail FROM trading.validate_config() WHERE check_name = 'broker_url_cleartext';

-- ---- item 5: the api secret stored once, logins without it ----
SET ROLE regress_trading_admin;
-- no secret stored yet: the two-argument login says how to store one
\set VERBOSITY sqlstate
SELECT * FROM trading.broker_login('regresskey', 'regress-request-token');
\set VERBOSITY terse
SELECT trading.set_broker_api_secret('regresskey', 'regress-api-secret-S9');
SELECT pg_temp.err($$SELECT trading.set_broker_api_secret('regress key', 'x')$$) AS bad_key;
SELECT pg_temp.err($$SELECT trading.set_broker_api_secret('regresskey', NULL)$$) AS null_secret;
SELECT pg_temp.err($$SELECT * FROM trading.broker_api_secret$$) AS admin_reads_secret_table;
-- with the stored secret the login goes to the broker (none listens here)
\set VERBOSITY sqlstate
SELECT * FROM trading.broker_login('regresskey', 'regress-request-token');
\set VERBOSITY terse
RESET ROLE;
SELECT api_key, (trading.envelope_info(secret)).mode, (trading.envelope_info(secret)).aad_bound,
       convert_from(trading.decrypt(secret, convert_to('trading.broker_api_secret:' || api_key, 'UTF8')), 'UTF8') = 'regress-api-secret-S9' AS stored_encrypted
FROM trading.broker_api_secret;
SET ROLE regress_trading_analyst;
SELECT pg_temp.err($$SELECT trading.set_broker_api_secret('k', 's')$$) AS analyst_sets_secret;
RESET ROLE;

-- ---- issue 18: the extension re-wraps its own server-key columns ----
SET ROLE regress_trading_admin;
SELECT * FROM trading.rewrap_server_key_columns();
SELECT pg_temp.err($$SELECT * FROM trading.rewrap_server_key_columns(0)$$) AS bad_batch;
RESET ROLE;
SET ROLE regress_trading_analyst;
SELECT pg_temp.err($$SELECT * FROM trading.rewrap_server_key_columns()$$) AS analyst_rewrap;
RESET ROLE;
DELETE FROM trading.broker_api_secret;
DELETE FROM trading.archives WHERE name = 'sec-a';
DROP ROLE regress_settings_reader;

-- Encryption at rest: server key and passphrase round trips, associated
-- data, every failure case with its SQLSTATE, re-encryption, privileges.
-- Ciphertexts are random, so the test shows booleans, sizes and SQLSTATEs.
-- Failing calls go through pg_temp.try(), which catches the error: a caught
-- error is not logged, so no test passphrase reaches the server log.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- Settings: the iteration default follows OWASP and has a floor.
SHOW trading.pbkdf2_iterations;
SELECT pg_temp.try($$SET trading.pbkdf2_iterations = 99999$$);
SET trading.pbkdf2_iterations = 100000;    -- keep the test fast
-- The key command is visible to superusers only, and is not the key.
SELECT current_setting('trading.key_command') = 'trading-getkey-file trading_regress.key' AS key_command_set;

-- ---- server key ----
SET ROLE regress_trading_admin;
SELECT trading.decrypt(trading.encrypt('\x'::bytea)) = '\x'::bytea AS empty_round_trip;
SELECT trading.decrypt(trading.encrypt('hello'::bytea)) = 'hello'::bytea AS round_trip;
SELECT trading.decrypt(trading.encrypt(v)) = v AS round_trip_3mb,
       length(trading.encrypt(v)) - length(v) AS overhead
FROM (SELECT convert_to(repeat('trade,', 500000), 'UTF8') AS v) s;
-- every envelope is different (random nonce), and says what it is
SELECT trading.encrypt('same'::bytea) <> trading.encrypt('same'::bytea) AS nonces_differ;
SELECT substr(trading.encrypt('x'::bytea), 1, 4) = 'TRDE'::bytea AS magic;
SELECT * FROM trading.envelope_info(trading.encrypt('12345'::bytea));
SELECT * FROM trading.envelope_info(trading.encrypt('12345'::bytea, 'ctx'::bytea));
-- the key version was registered on first use, and matches
SELECT version, is_current, loaded, key_matches FROM trading.key_status;
SELECT count(*) AS registered, bool_and(length(kcv) = 16) AS kcv_16_bytes FROM trading.key_versions;
-- text forms
SELECT trading.decrypt_text(trading.encrypt_text('api_secret: s3cr3t')) AS text_round_trip;
SELECT trading.decrypt_text(trading.encrypt_text('x', 'users:1'), 'users:1') AS text_aad;
SELECT pg_temp.try($$SELECT trading.decrypt_text(trading.encrypt('\xff'::bytea))$$);

-- ---- associated data binds a ciphertext to its row ----
CREATE TABLE pg_temp.creds (id int PRIMARY KEY, secret bytea);
INSERT INTO pg_temp.creds
SELECT i, trading.encrypt(convert_to('secret-' || i, 'UTF8'),
                          convert_to('creds.secret:' || i, 'UTF8'))
FROM generate_series(1, 3) i;
SELECT id, convert_from(trading.decrypt(secret, convert_to('creds.secret:' || id, 'UTF8')), 'UTF8')
FROM pg_temp.creds ORDER BY id;
-- copy row 1's ciphertext into row 2: it no longer decrypts there
UPDATE pg_temp.creds SET secret = (SELECT secret FROM pg_temp.creds WHERE id = 1) WHERE id = 2;
SELECT id, pg_temp.try(format('SELECT trading.decrypt(%L::bytea, %L::bytea)',
                              secret, convert_to('creds.secret:' || id, 'UTF8')))
FROM pg_temp.creds ORDER BY id;
SELECT trading.encrypt('bound'::bytea, 'ctx'::bytea) AS env_aad,
       trading.encrypt('free'::bytea) AS env_plain \gset
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_aad')) AS aad_missing;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea, %L::bytea)', :'env_aad', 'CTX')) AS aad_wrong;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea, %L::bytea)', :'env_plain', 'ctx')) AS aad_unexpected;
-- an empty aad is no aad
SELECT trading.decrypt(:'env_plain'::bytea, ''::bytea) = 'free'::bytea AS empty_aad_is_none;

-- ---- failure cases: clear errors, never partial plaintext ----
SELECT pg_temp.try($$SELECT trading.encrypt(NULL::bytea)$$) AS null_data;
SELECT pg_temp.try($$SELECT trading.encrypt('x'::bytea, NULL::bytea)$$) AS null_aad;
SELECT pg_temp.try($$SELECT trading.decrypt(NULL::bytea)$$) AS null_envelope;
SELECT pg_temp.try($$SELECT trading.decrypt(NULL::bytea, 'x'::bytea)$$) AS null_envelope_aad;
SELECT pg_temp.try($$SELECT trading.decrypt_text(NULL)$$) AS null_text;
SELECT pg_temp.try($$SELECT trading.reencrypt(NULL)$$) AS null_reencrypt;
SELECT pg_temp.try($$SELECT trading.envelope_info(NULL)$$) AS null_info;
SELECT pg_temp.try($$SELECT trading.decrypt(''::bytea)$$) AS empty;
SELECT pg_temp.try($$SELECT trading.decrypt('hello world'::bytea)$$) AS foreign_value;
SELECT pg_temp.try($$SELECT trading.decrypt('\xc30d04090302'::bytea)$$) AS pgp_value;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', substr(:'env_plain'::bytea, 1, 30))) AS truncated_header;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)',
       substr(:'env_plain'::bytea, 1, length(:'env_plain'::bytea) - 1))) AS truncated_tag;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_plain'::bytea || '\x00'::bytea)) AS extended;
-- one flipped bit anywhere: format version, mode, flags, key version,
-- salt, nonce, ciphertext, tag
SELECT pos, pg_temp.try(format('SELECT trading.decrypt(%L::bytea)',
            set_byte(e, pos, get_byte(e, pos) # 1))) AS flipped
FROM (SELECT :'env_plain'::bytea AS e) s,
     unnest(ARRAY[4, 5, 6, 7, 11, 12, 30, 40, 43, 44, 59]) pos;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)',
       overlay(:'env_plain'::bytea placing '\x00000007'::bytea from 9 for 4))) AS unknown_version;
-- the value is still there and intact after all that
SELECT trading.decrypt(:'env_plain'::bytea) = 'free'::bytea AS intact;

-- ---- re-encryption under the current key version ----
SELECT trading.reencrypt(:'env_plain'::bytea) <> :'env_plain'::bytea AS rewrapped,
       trading.decrypt(trading.reencrypt(:'env_plain'::bytea)) = 'free'::bytea AS same_plaintext,
       (trading.envelope_info(trading.reencrypt(:'env_plain'::bytea))).key_version AS key_version;
SELECT trading.decrypt(trading.reencrypt(:'env_aad'::bytea, 'ctx'::bytea), 'ctx'::bytea) = 'bound'::bytea AS rewrapped_aad;
SELECT pg_temp.try(format('SELECT trading.reencrypt(%L::bytea)', :'env_aad')) AS rewrap_needs_aad;
-- the online rotation statement of docs/ENCRYPTION.md, on a table
CREATE TABLE pg_temp.secrets (id int PRIMARY KEY, v bytea);
INSERT INTO pg_temp.secrets SELECT i, trading.encrypt(int4send(i), int4send(i)) FROM generate_series(1, 100) i;
UPDATE pg_temp.secrets SET v = trading.reencrypt(v, int4send(id))
WHERE id IN (SELECT id FROM pg_temp.secrets
             WHERE (trading.envelope_info(v)).key_version <= (SELECT max(version) FROM trading.key_status WHERE is_current)
             ORDER BY id LIMIT 1000);
SELECT count(*) FILTER (WHERE trading.decrypt(v, int4send(id)) = int4send(id)) AS all_decrypt FROM pg_temp.secrets;

-- ---- passphrase mode ----
SELECT convert_from(trading.decrypt_with_passphrase(trading.encrypt_with_passphrase('pnl report'::bytea, 'regress-pass-A1'), 'regress-pass-A1'), 'UTF8') AS pass_round_trip;
SELECT trading.encrypt_with_passphrase('pnl'::bytea, 'regress-pass-A1') AS env_pass \gset
SELECT mode, key_version, iterations, aad_bound FROM trading.envelope_info(:'env_pass');
-- iterations are read from the envelope: changing the setting does not matter
SELECT trading.encrypt_with_passphrase('pnl'::bytea, 'regress-pass-A1', iterations => 120000) AS env_120k \gset
SELECT trading.decrypt_with_passphrase(:'env_120k'::bytea, 'regress-pass-A1') = 'pnl'::bytea AS older_iterations_decrypt;
SELECT iterations FROM trading.envelope_info(:'env_120k');
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)', :'env_pass', 'regress-wrong-B2')) AS wrong_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)', :'env_pass', '')) AS empty_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)', :'env_pass', repeat('p', 1025))) AS long_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, NULL::text)', :'env_pass')) AS null_passphrase;
SELECT pg_temp.try($$SELECT trading.encrypt_with_passphrase(NULL::bytea, 'regress-pass-A1')$$) AS null_data_pass;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_pass')) AS passphrase_value_to_server_key;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)', :'env_plain', 'regress-pass-A1')) AS server_value_to_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L)',
       set_byte(:'env_pass'::bytea, 45, get_byte(:'env_pass'::bytea, 45) # 128), 'regress-pass-A1')) AS tampered_pass;
-- The 1.0 forms still work, with a deprecation WARNING: their second
-- argument reads like associated data but is a passphrase.
SELECT trading.decrypt(trading.encrypt('old'::bytea, 'regress-pass-A1'), 'regress-pass-A1') = 'old'::bytea AS deprecated_forms_work;
-- passphrase with associated data
SELECT trading.decrypt_with_passphrase(trading.encrypt_with_passphrase('q'::bytea, 'regress-pass-A1', 'r1'::bytea), 'regress-pass-A1', 'r1'::bytea) = 'q'::bytea AS pass_aad;
SELECT pg_temp.try(format('SELECT trading.decrypt_with_passphrase(%L::bytea, %L, %L::bytea)',
       trading.encrypt_with_passphrase('q'::bytea, 'regress-pass-A1', 'r1'::bytea), 'regress-pass-A1', 'r2')) AS pass_wrong_aad;
RESET ROLE;

-- ---- privileges ----
-- analyst: passphrase mode and envelope_info; not the server key
SET ROLE regress_trading_analyst;
SELECT trading.decrypt_with_passphrase(trading.encrypt_with_passphrase('a'::bytea, 'regress-pass-A1'), 'regress-pass-A1') = 'a'::bytea AS analyst_passphrase;
SELECT (trading.envelope_info(:'env_plain'::bytea)).mode AS analyst_info;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_plain')) AS analyst_server_decrypt;
SELECT pg_temp.try($$SELECT trading.encrypt('a'::bytea)$$) AS analyst_server_encrypt;
SELECT pg_temp.try($$SELECT * FROM trading.key_status$$) AS analyst_key_status;
SELECT pg_temp.try($$SELECT * FROM trading.key_versions$$) AS analyst_kcv;
RESET ROLE;
-- reader and PUBLIC: neither mode
SET ROLE regress_trading_reader;
SELECT pg_temp.try($$SELECT trading.encrypt_with_passphrase('a'::bytea, 'regress-pass-A1')$$) AS reader_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_plain')) AS reader_server_decrypt;
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT pg_temp.try($$SELECT trading.encrypt_with_passphrase('a'::bytea, 'regress-pass-A1')$$) AS public_passphrase;
SELECT pg_temp.try(format('SELECT trading.decrypt(%L::bytea)', :'env_plain')) AS public_server_decrypt;
RESET ROLE;
-- nothing crypto is executable by PUBLIC, and only trading_admin holds the server key functions
SELECT p.oid::regprocedure AS server_key_function,
       has_function_privilege('trading_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('trading_analyst', p.oid, 'EXECUTE') AS analyst,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'trading' AND p.prosrc LIKE 'crypto\_sql\_%crypt%'
ORDER BY p.oid::regprocedure::text;

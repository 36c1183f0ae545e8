-- Property test: thousands of random and mutated envelopes fed to decrypt
-- (server key and passphrase) must each fail with a clean, documented
-- error: never a result, never an internal error, never a crash.  The
-- mutations are deterministic (setseed); the envelopes themselves are
-- random, which does not change which error each mutation produces.
\set VERBOSITY terse
SET trading.pbkdf2_iterations = 100000;
SELECT setseed(0.42);

CREATE FUNCTION pg_temp.rand_bytes(n int) RETURNS bytea LANGUAGE sql AS $$
    SELECT coalesce(string_agg(set_byte('\x00'::bytea, 0, (random() * 255)::int), ''::bytea), ''::bytea)
    FROM generate_series(1, n)
$$;

-- One mutation of e: flip bits of 1-3 bytes, truncate, extend, or splice
-- random bytes over a range.  Never returns e unchanged.
CREATE FUNCTION pg_temp.mutate(e bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    kind int := (random() * 5)::int;
    pos int;
    r bytea;
BEGIN
    IF kind <= 1 THEN
        r := e;
        FOR k IN 1 .. 1 + (random() * 2)::int LOOP
            pos := (random() * (length(e) - 1))::int;
            r := set_byte(r, pos, get_byte(r, pos) # (1 + (random() * 254)::int));
        END LOOP;
    ELSIF kind = 2 THEN
        r := substr(e, 1, (random() * (length(e) - 1))::int);
    ELSIF kind = 3 THEN
        r := e || pg_temp.rand_bytes(1 + (random() * 20)::int);
    ELSIF kind = 4 THEN
        pos := (random() * (length(e) - 1))::int;
        r := overlay(e placing pg_temp.rand_bytes(4) from pos + 1 for 4);
    ELSE
        pos := (random() * 39)::int;          -- a header byte
        r := set_byte(e, pos, get_byte(e, pos) # (1 + (random() * 254)::int));
    END IF;
    IF r = e THEN
        r := e || '\x00'::bytea;
    END IF;
    RETURN r;
END
$$;

CREATE TEMP TABLE outcome (family text, sqlstate text);

-- Each case runs in its own subtransaction; the error is caught and counted.
CREATE FUNCTION pg_temp.feed(family text, v bytea, pass text, aad bytea) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    out bytea;
BEGIN
    BEGIN
        IF pass IS NOT NULL THEN
            out := trading.decrypt_with_passphrase(v, pass);
        ELSIF aad IS NOT NULL THEN
            out := trading.decrypt(v, aad);
        ELSE
            out := trading.decrypt(v);
        END IF;
        state := 'DECRYPTED';
    EXCEPTION WHEN OTHERS THEN
        state := SQLSTATE;
    END;
    INSERT INTO outcome VALUES (family, state);
END
$$;

-- 2000 random byte strings, half of them behind a valid magic, version and
-- mode (so the header checks and the tag check are both exercised)
SELECT count(pg_temp.feed('random', pg_temp.rand_bytes((random() * 120)::int), NULL, NULL))
FROM generate_series(1, 1000);
SELECT count(pg_temp.feed('random_magic', '\x5452444501'::bytea || set_byte('\x00'::bytea, 0, 1 + (random() * 1)::int) || pg_temp.rand_bytes((random() * 120)::int), NULL, NULL))
FROM generate_series(1, 1000);

-- 4000 mutations of server-key envelopes (with and without aad)
CREATE TEMP TABLE seeds AS
SELECT i, trading.encrypt(pg_temp.rand_bytes((random() * 300)::int)) AS plain_env,
       trading.encrypt(pg_temp.rand_bytes((random() * 300)::int), int4send(i)) AS aad_env
FROM generate_series(1, 50) i;
SELECT count(pg_temp.feed('server_key', pg_temp.mutate(plain_env), NULL, NULL))
FROM seeds, generate_series(1, 40);
SELECT count(pg_temp.feed('server_key_aad', pg_temp.mutate(aad_env), NULL, int4send(i)))
FROM seeds, generate_series(1, 40);

-- 150 mutations of passphrase envelopes (each costs a full PBKDF2)
CREATE TEMP TABLE pseeds AS
SELECT i, trading.encrypt_with_passphrase(pg_temp.rand_bytes((random() * 100)::int), 'fuzz-passphrase-C3') AS env
FROM generate_series(1, 3) i;
SELECT count(pg_temp.feed('passphrase', pg_temp.mutate(env), 'fuzz-passphrase-C3', NULL))
FROM pseeds, generate_series(1, 50);

-- The unmutated seeds do decrypt (so the harness can tell success apart).
SELECT bool_and(trading.decrypt(plain_env) IS NOT NULL AND trading.decrypt(aad_env, int4send(i)) IS NOT NULL) AS seeds_decrypt
FROM seeds;

-- Every case failed, each with a documented SQLSTATE.
SELECT count(*) AS cases,
       count(*) FILTER (WHERE sqlstate = 'DECRYPTED') AS decrypted,
       count(*) FILTER (WHERE sqlstate NOT IN ('TR103', 'TR110', 'TR111', 'TR112')) AS other_errors
FROM outcome;
SELECT family, sqlstate, count(*) > 0 AS seen FROM outcome GROUP BY 1, 2 ORDER BY 1, 2;

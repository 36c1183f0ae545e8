-- Secure archives: create from a query (run as the caller), list, read
-- back, verify, tampering, errors, privileges, export/import of files,
-- and an archive of tens of MB.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE TABLE public.crypto_fills (id int PRIMARY KEY, symbol text, qty bigint,
                                  price numeric, at timestamptz, note text);
INSERT INTO public.crypto_fills
SELECT i, (ARRAY['INFY','TCS','SBIN'])[1 + i % 3], i * 10, 1500.25 + i,
       timestamptz '2026-01-05 09:15:00+05:30' + i * interval '1 minute',
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'line "' || i || E'"\nnext' END
FROM generate_series(1, 500) i;
GRANT SELECT ON public.crypto_fills TO trading_admin;
CREATE TABLE public.crypto_private (x int);
REVOKE ALL ON public.crypto_private FROM PUBLIC;

SET ROLE regress_trading_admin;
SELECT trading.archive_create('fills-2026-01', 'SELECT * FROM public.crypto_fills ORDER BY id') AS rows;
SELECT name, row_count, plaintext_bytes > 0 AS has_plaintext,
       stored_bytes = plaintext_bytes + 56 AS envelope_size, length(sha256) AS digest_bytes,
       key_version, created_by, created_at <= now() AS created
FROM trading.archive_list;
-- the rows come back exactly, NULLs, quotes and newlines included
SELECT count(*) AS rows_back FROM trading.archive_rows('fills-2026-01');
SELECT count(*) AS differences
FROM (SELECT to_jsonb(f) AS j FROM public.crypto_fills f) a
FULL JOIN trading.archive_rows('fills-2026-01') b(j) ON a.j = b.j
WHERE a.j IS NULL OR b.j IS NULL;
SELECT r.* FROM trading.archive_rows('fills-2026-01') j,
               jsonb_populate_record(NULL::public.crypto_fills, j) r
WHERE r.id IN (1, 4) ORDER BY r.id;
SELECT trading.archive_verify('fills-2026-01') AS verified;
-- the stored digest is the SHA-256 of the JSON lines (row_to_json, one per line)
SELECT a.sha256 = (SELECT sha256(convert_to(string_agg(row_to_json(f)::text, E'\n' ORDER BY id) || E'\n', 'UTF8'))
                   FROM public.crypto_fills f) AS digest_matches
FROM trading.archive_list a WHERE a.name = 'fills-2026-01';
-- the data column is ciphertext: the plaintext symbol does not occur in it
SELECT position('INFY'::bytea IN data) = 0 AS no_plaintext FROM trading.archives;
-- an empty result is a valid archive
SELECT trading.archive_create('empty', 'SELECT * FROM public.crypto_fills WHERE false') AS rows;
SELECT count(*) FROM trading.archive_rows('empty');
SELECT trading.archive_verify('empty');

-- errors
SELECT pg_temp.try($$SELECT trading.archive_create('fills-2026-01', 'SELECT 1')$$) AS duplicate;
SELECT pg_temp.try($$SELECT trading.archive_create(NULL, 'SELECT 1')$$) AS null_name;
SELECT pg_temp.try($$SELECT trading.archive_create('x', NULL)$$) AS null_query;
SELECT pg_temp.try($$SELECT trading.archive_create('', 'SELECT 1')$$) AS empty_name;
SELECT pg_temp.try($$SELECT trading.archive_create(repeat('n', 201), 'SELECT 1')$$) AS long_name;
SELECT pg_temp.try($$SELECT trading.archive_create('x', 'SELEC 1')$$) AS bad_query;
SELECT pg_temp.try($$SELECT trading.archive_create('x', 'INSERT INTO public.crypto_fills (id) VALUES (0)')$$) AS not_a_select;
SELECT pg_temp.try($$SELECT trading.archive_create('x', 'SELECT 1; SELECT 2')$$) AS two_statements;
-- the query runs as the caller, who cannot read this table
SELECT pg_temp.try($$SELECT trading.archive_create('x', 'SELECT * FROM public.crypto_private')$$) AS caller_privileges;
SELECT pg_temp.try($$SELECT trading.archive_rows('nope')$$) AS missing_rows;
SELECT pg_temp.try($$SELECT trading.archive_verify('nope')$$) AS missing_verify;
SELECT pg_temp.try($$SELECT trading.archive_verify(NULL)$$) AS null_verify;
SELECT count(*) AS nothing_half_made FROM trading.archive_list WHERE name = 'x';
-- files need pg_write_server_files / pg_read_server_files besides trading_admin
SELECT pg_temp.try($$SELECT trading.archive_export('empty', '/tmp/crypto_regress_denied')$$) AS export_denied;
SELECT pg_temp.try($$SELECT trading.archive_import('y', '/tmp/crypto_regress_denied')$$) AS import_denied;
RESET ROLE;

-- tampering, by someone who can write the table directly
CREATE TABLE pg_temp.saved AS SELECT name, data, row_count, sha256 FROM trading.archives;
UPDATE trading.archives SET data = set_byte(data, 100, get_byte(data, 100) # 1) WHERE name = 'fills-2026-01';
SET ROLE regress_trading_admin;
SELECT pg_temp.try($$SELECT trading.archive_verify('fills-2026-01')$$) AS tampered_verify;
SELECT pg_temp.try($$SELECT count(*) FROM trading.archive_rows('fills-2026-01')$$) AS tampered_rows;
RESET ROLE;
-- swapping two archives' data: bound to the name, so it fails
UPDATE trading.archives a SET data = s.data FROM pg_temp.saved s WHERE a.name = 'fills-2026-01' AND s.name = 'empty';
SET ROLE regress_trading_admin;
SELECT pg_temp.try($$SELECT trading.archive_verify('fills-2026-01')$$) AS swapped_verify;
RESET ROLE;
-- metadata changed: the data authenticates but no longer matches
UPDATE trading.archives a SET data = s.data FROM pg_temp.saved s WHERE a.name = s.name;
UPDATE trading.archives SET row_count = 499 WHERE name = 'fills-2026-01';
SET ROLE regress_trading_admin;
SELECT pg_temp.try($$SELECT trading.archive_verify('fills-2026-01')$$) AS row_count_changed;
RESET ROLE;
UPDATE trading.archives a SET row_count = s.row_count, sha256 = sha256('x'::bytea) FROM pg_temp.saved s WHERE a.name = s.name AND a.name = 'fills-2026-01';
SET ROLE regress_trading_admin;
SELECT pg_temp.try($$SELECT trading.archive_verify('fills-2026-01')$$) AS digest_changed;
RESET ROLE;
UPDATE trading.archives a SET sha256 = s.sha256 FROM pg_temp.saved s WHERE a.name = s.name;
SET ROLE regress_trading_admin;
SELECT trading.archive_verify('fills-2026-01') AS restored;
RESET ROLE;

-- export to a server file and import it back (superuser has the file roles)
SELECT current_setting('data_directory') || '/crypto_regress_fills.trde' AS export_path \gset
SELECT trading.archive_export('fills-2026-01', :'export_path') = stored_bytes AS exported
FROM trading.archive_list WHERE name = 'fills-2026-01';
SELECT left(pg_temp.try(format('SELECT trading.archive_export(%L, %L)', 'fills-2026-01', :'export_path')), 5) AS no_overwrite;
SELECT pg_temp.try($$SELECT trading.archive_export('fills-2026-01', 'relative.trde')$$) AS relative_path;
-- imported under another name it does not authenticate (the name is bound)
SELECT pg_temp.try(format('SELECT trading.archive_import(%L, %L)', 'other', :'export_path')) AS import_renamed;
DELETE FROM trading.archives WHERE name = 'fills-2026-01';
SELECT trading.archive_import('fills-2026-01', :'export_path') AS imported_rows;
SELECT trading.archive_verify('fills-2026-01') AS imported_verified;
SELECT pg_temp.try(format('SELECT trading.archive_import(%L, %L)', 'y', '/nonexistent/file')) AS import_missing_file;

-- tens of MB: 200000 rows of about 150 bytes
SET ROLE regress_trading_admin;
SELECT trading.archive_create('big', $$SELECT i AS id, md5(i::text) AS a, md5((i * 7)::text) AS b, repeat('z', 40) AS pad FROM generate_series(1, 200000) i$$) AS rows;
SELECT plaintext_bytes > 20000000 AS over_20mb, stored_bytes = plaintext_bytes + 56 AS envelope_size
FROM trading.archive_list WHERE name = 'big';
SELECT trading.archive_verify('big');
SELECT count(*), sum((j->>'id')::bigint) FROM trading.archive_rows('big') j;
RESET ROLE;

-- privileges: analysts see the list, not the contents
SET ROLE regress_trading_analyst;
SELECT count(*) AS analyst_sees_list FROM trading.archive_list;
SELECT pg_temp.try($$SELECT trading.archive_rows('empty')$$) AS analyst_rows;
SELECT pg_temp.try($$SELECT trading.archive_create('z', 'SELECT 1')$$) AS analyst_create;
SELECT pg_temp.try($$SELECT data FROM trading.archives$$) AS analyst_data;
RESET ROLE;
SET ROLE regress_trading_nobody;
SELECT pg_temp.try($$SELECT * FROM trading.archive_list$$) AS public_list;
RESET ROLE;

DELETE FROM trading.archives;
DROP TABLE public.crypto_fills, public.crypto_private;

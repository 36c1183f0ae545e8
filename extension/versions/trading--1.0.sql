-- trading 1.0: core.  The install script trading--1.0.sql is the
-- concatenation of extension/sql/*.sql in name order (see Makefile).

\echo Use "CREATE EXTENSION trading" to load this file. \quit

-- The shared state (shared memory, background workers) belongs to one
-- database per cluster: refuse to install anywhere else.
DO $$
BEGIN
    IF current_database() <> current_setting('trading.database') THEN
        RAISE EXCEPTION 'trading must be installed in database "%"', current_setting('trading.database')
            USING ERRCODE = 'TR009',
                  DETAIL = format('The current database is "%s".', current_database()),
                  HINT = 'Connect to that database, or set trading.database in postgresql.conf and restart.';
    END IF;
END
$$;

-- Roles.  Cluster-wide, so they may already exist (another install, a
-- restore): create only what is missing.  Each role includes the one below.
--   trading_reader   views and metrics
--   trading_analyst  + the functions an analyst calls (rate limiting,
--                    correlation, passphrase encryption)
--   trading_admin    + keys, credentials and configuration
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_reader') THEN
        CREATE ROLE trading_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_analyst') THEN
        CREATE ROLE trading_analyst NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trading_admin') THEN
        CREATE ROLE trading_admin NOLOGIN;
    END IF;
END
$$;
GRANT trading_reader TO trading_analyst;
GRANT trading_analyst TO trading_admin;

GRANT USAGE ON SCHEMA @extschema@ TO trading_reader;
-- Rate limiter.  The table is the configuration; shared memory follows it
-- (a statement trigger applies each change at once, and every backend
-- re-reads the table after a change commits or aborts).

CREATE TABLE @extschema@.rate_limits (
    endpoint    text     NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 63),
    requests    integer  NOT NULL CHECK (requests >= 1),
    per         interval NOT NULL CHECK (per > interval '0'
                                         AND per <= interval '31 days'
                                         AND extract(month FROM per) = 0
                                         AND extract(year FROM per) = 0),
    PRIMARY KEY (endpoint, per)
);
COMMENT ON TABLE @extschema@.rate_limits IS
    'Rate limits: at most "requests" in any sliding window of length "per", per endpoint';

CREATE FUNCTION @extschema@._rate_limits_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'rate_limits_changed';
CREATE TRIGGER rate_limits_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._rate_limits_changed();

-- Kite Connect v3 limits per API key (../shared/KITE_API.md).
INSERT INTO @extschema@.rate_limits (endpoint, requests, per) VALUES
    ('kite.quote',      1,    interval '1 second'),
    ('kite.historical', 3,    interval '1 second'),
    ('kite.orders',     10,   interval '1 second'),
    ('kite.orders',     200,  interval '1 minute'),
    ('kite.orders',     3000, interval '1 day'),
    ('kite.api',        10,   interval '1 second');

CREATE FUNCTION @extschema@.rate_limit_set(endpoint text, requests integer, per interval)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_set';
COMMENT ON FUNCTION @extschema@.rate_limit_set(text, integer, interval) IS
    'Add or replace the limit of endpoint for window per: at most requests in any window of that length';

CREATE FUNCTION @extschema@.rate_limit_drop(endpoint text, per interval DEFAULT NULL)
    RETURNS integer LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_drop';
COMMENT ON FUNCTION @extschema@.rate_limit_drop(text, interval) IS
    'Drop one limit of endpoint (per given) or all of them; returns how many were dropped';

CREATE FUNCTION @extschema@.rate_limit_try(endpoint text, cost integer DEFAULT 1)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_try';
COMMENT ON FUNCTION @extschema@.rate_limit_try(text, integer) IS
    'Take cost requests from endpoint if every limit allows it now; never waits';

CREATE FUNCTION @extschema@.rate_limit_acquire(endpoint text, cost integer DEFAULT 1,
                                               timeout interval DEFAULT interval '10 seconds')
    RETURNS interval LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_acquire';
COMMENT ON FUNCTION @extschema@.rate_limit_acquire(text, integer, interval) IS
    'Wait (in arrival order) until endpoint grants cost requests; returns the time waited; SQLSTATE TR001 after timeout';

CREATE FUNCTION @extschema@._rate_limit_status(
    OUT endpoint text, OUT requests integer, OUT per interval, OUT used integer,
    OUT remaining integer, OUT retry_after interval, OUT granted_total bigint,
    OUT refused_total bigint, OUT waited_seconds_total double precision,
    OUT waiting integer, OUT timeouts_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'rate_limit_status';

CREATE VIEW @extschema@.rate_limit_status AS
    SELECT * FROM @extschema@._rate_limit_status() ORDER BY endpoint, per;
COMMENT ON VIEW @extschema@.rate_limit_status IS
    'Each limit of each endpoint: use in the current window and counters since start';

GRANT SELECT ON @extschema@.rate_limits TO trading_reader;
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON @extschema@.rate_limits TO trading_admin;
GRANT SELECT ON @extschema@.rate_limit_status TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._rate_limit_status() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_try(text, integer) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_acquire(text, integer, interval) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_set(text, integer, interval) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.rate_limit_drop(text, interval) TO trading_admin;
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
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_encrypt_server';
CREATE FUNCTION @extschema@.encrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_encrypt_server';
CREATE FUNCTION @extschema@.decrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_decrypt_server';
CREATE FUNCTION @extschema@.decrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_decrypt_server';
CREATE FUNCTION @extschema@.encrypt_text(data text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_encrypt_server_text';
CREATE FUNCTION @extschema@.encrypt_text(data text, aad text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_encrypt_server_text';
CREATE FUNCTION @extschema@.decrypt_text(data bytea) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_decrypt_server_text';
CREATE FUNCTION @extschema@.decrypt_text(data bytea, aad text) RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_decrypt_server_text';
CREATE FUNCTION @extschema@.reencrypt(data bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_reencrypt';
CREATE FUNCTION @extschema@.reencrypt(data bytea, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'trading_reencrypt';
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
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'trading_encrypt_passphrase';
CREATE FUNCTION @extschema@.encrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'trading_encrypt_passphrase';
CREATE FUNCTION @extschema@.decrypt(data bytea, passphrase text) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'trading_decrypt_passphrase';
CREATE FUNCTION @extschema@.decrypt(data bytea, passphrase text, aad bytea) RETURNS bytea
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'trading_decrypt_passphrase';
COMMENT ON FUNCTION @extschema@.encrypt(bytea, text) IS
    'AES-256-GCM envelope of data under PBKDF2-HMAC-SHA256(passphrase, random salt, trading.pbkdf2_iterations)';
COMMENT ON FUNCTION @extschema@.decrypt(bytea, text) IS
    'Plaintext of a passphrase envelope (iterations come from the envelope)';

CREATE FUNCTION @extschema@.envelope_info(data bytea,
    OUT format_version integer, OUT mode text, OUT key_version integer,
    OUT iterations integer, OUT aad_bound boolean, OUT plaintext_bytes bigint)
    RETURNS record LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'trading_envelope_info';
COMMENT ON FUNCTION @extschema@.envelope_info(bytea) IS
    'Header of an envelope (no key needed): mode, key version or iterations, aad binding, size';

CREATE FUNCTION @extschema@._key_versions(OUT version integer, OUT is_current boolean, OUT kcv bytea)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_key_versions';
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
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_archive_create';
CREATE FUNCTION @extschema@.archive_rows(name text) RETURNS SETOF jsonb
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_archive_rows';
CREATE FUNCTION @extschema@.archive_verify(name text) RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_archive_verify';
CREATE FUNCTION @extschema@.archive_export(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_archive_export';
CREATE FUNCTION @extschema@.archive_import(name text, path text) RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_archive_import';
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
-- Correlation tracking: every operation gets an id and a parent, and is
-- recorded even when the transaction that began it rolls back.  Begin and
-- end only enqueue events in shared memory; the "trading correlation
-- writer" background worker stores them here in its own transactions
-- (docs/CORRELATION.md).

CREATE TABLE @extschema@.operations (
    id              uuid        PRIMARY KEY,
    parent_id       uuid,
    operation       text,       -- NULL only when the begin event was lost
    status          text        NOT NULL DEFAULT 'open',
    started_at      timestamptz,
    ended_at        timestamptz,
    duration        interval    GENERATED ALWAYS AS (ended_at - started_at) STORED,
    error           text,
    attributes      jsonb       NOT NULL DEFAULT '{}',
    backend_pid     integer,    -- the process that began the operation
    username        text,       -- the role that began it
    end_backend_pid integer,    -- the process that ended it
    auto_ended      boolean     NOT NULL DEFAULT false,
    begin_seq       bigint,     -- queue sequence number of the stored begin event
    end_seq         bigint      -- ... and of the stored end event
);
-- Cheap to maintain on the writer's hot path: children only, a BRIN for
-- the time-ordered retention delete, and the (small) set of open rows.
CREATE INDEX operations_parent_idx ON @extschema@.operations (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX operations_started_idx ON @extschema@.operations USING brin (started_at);
CREATE INDEX operations_open_idx ON @extschema@.operations (started_at) WHERE ended_at IS NULL;
COMMENT ON TABLE @extschema@.operations IS
    'One row per tracked operation, written by the correlation writer; rows older than trading.correlation_retention are deleted';
COMMENT ON COLUMN @extschema@.operations.status IS
    'open while running; the status passed to correlation_end; abandoned or aborted when the extension closed it';
COMMENT ON COLUMN @extschema@.operations.auto_ended IS
    'the end was made by the extension (transaction end, backend exit, server restart), not by correlation_end';

CREATE FUNCTION @extschema@.correlation_begin(operation text, parent uuid DEFAULT NULL,
                                              attributes jsonb DEFAULT '{}')
    RETURNS uuid LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_begin';
COMMENT ON FUNCTION @extschema@.correlation_begin(text, uuid, jsonb) IS
    'Begin an operation (child of parent, or of the innermost open operation of this transaction); returns its id';

CREATE FUNCTION @extschema@.correlation_end(id uuid DEFAULT NULL, status text DEFAULT 'ok',
                                            error text DEFAULT NULL)
    RETURNS interval LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_end';
COMMENT ON FUNCTION @extschema@.correlation_end(uuid, text, text) IS
    'End operation id (default: the innermost open one); returns its duration';

CREATE FUNCTION @extschema@.current_correlation_id()
    RETURNS uuid LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'current_correlation_id';
COMMENT ON FUNCTION @extschema@.current_correlation_id() IS
    'The innermost open operation of this transaction, or NULL';

CREATE FUNCTION @extschema@.correlation_flush(timeout interval DEFAULT interval '30 seconds')
    RETURNS void LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_flush';
COMMENT ON FUNCTION @extschema@.correlation_flush(interval) IS
    'Wait until every correlation event queued so far is in trading.operations; SQLSTATE TR201 after timeout';

CREATE FUNCTION @extschema@.operation_chain(id uuid)
    RETURNS TABLE (depth integer, operation_id uuid, parent_id uuid, operation text, status text,
                   started_at timestamptz, ended_at timestamptz, duration interval,
                   error text, attributes jsonb, backend_pid integer, username text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    root uuid;
BEGIN
    IF operation_chain.id IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = '22004';
    END IF;
    -- walk up to the root (bounded, in case parents form a cycle)
    WITH RECURSIVE up(id, parent_id, n) AS (
        SELECT o.id, o.parent_id, 0 FROM @extschema@.operations o
        WHERE o.id = operation_chain.id
      UNION ALL
        SELECT o.id, o.parent_id, up.n + 1
        FROM up JOIN @extschema@.operations o ON o.id = up.parent_id
        WHERE up.n < 1000
    )
    SELECT up.id INTO root FROM up ORDER BY up.n DESC LIMIT 1;
    IF root IS NULL THEN
        RETURN;
    END IF;
    -- and down the whole tree, depth-first, siblings in start order
    RETURN QUERY
    WITH RECURSIVE down AS (
        SELECT o.*, 0 AS d,
               ARRAY[coalesce(to_char(o.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'), '')
                     || o.id::text] AS path
        FROM @extschema@.operations o WHERE o.id = root
      UNION ALL
        SELECT o.*, down.d + 1,
               down.path || (coalesce(to_char(o.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'), '')
                             || o.id::text)
        FROM down JOIN @extschema@.operations o ON o.parent_id = down.id
        WHERE down.d < 1000 AND o.id <> root
    ) CYCLE id SET is_cycle USING cycle_path
    SELECT down.d, down.id, down.parent_id, down.operation, down.status,
           down.started_at, down.ended_at, down.duration, down.error,
           down.attributes, down.backend_pid, down.username
    FROM down WHERE NOT down.is_cycle
    ORDER BY down.path;
END
$fn$;
COMMENT ON FUNCTION @extschema@.operation_chain(uuid) IS
    'The whole tree of operations that contains id, root first (depth-first, siblings by start time)';

CREATE FUNCTION @extschema@._correlation_stats(
    OUT queue_depth bigint, OUT queue_bytes bigint, OUT queue_capacity bigint,
    OUT enqueued_total bigint, OUT dropped_total bigint, OUT written_total bigint,
    OUT discarded_total bigint, OUT writer_pid integer, OUT since timestamptz)
    RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_stats';

CREATE VIEW @extschema@.correlation_stats AS
    SELECT * FROM @extschema@._correlation_stats();
COMMENT ON VIEW @extschema@.correlation_stats IS
    'Correlation event queue: events waiting (queue_depth), bytes used of queue_capacity, and counters since "since" (server start or crash-restart)';

-- The detached C API (correlation.h), for superusers' tests and tools:
-- events are not validated beyond their size; the writer discards what it
-- cannot store.  Not granted to any role.
CREATE FUNCTION @extschema@._correlation_emit_begin(id uuid, parent uuid, operation text, attributes text)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_emit_begin_sql';
CREATE FUNCTION @extschema@._correlation_emit_end(id uuid, status text, error text)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'correlation_emit_end_sql';

GRANT SELECT ON @extschema@.operations TO trading_reader;
GRANT DELETE ON @extschema@.operations TO trading_admin;
GRANT SELECT ON @extschema@.correlation_stats TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._correlation_stats() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_begin(text, uuid, jsonb) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_end(uuid, text, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.current_correlation_id() TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.correlation_flush(interval) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.operation_chain(uuid) TO trading_analyst;
-- Metrics: counters and latency histograms kept in shared memory (see
-- extension/metrics.c), the SQL recording functions for strategies that run
-- outside the worker, and the views that prometheus-postgres-exporter reads
-- through monitoring/queries.yaml.  Business figures (read from the broker
-- tables), worker and correlation metrics, the trading.metrics view and
-- trading.metrics_prometheus() are in 70_metrics_business.sql.

-- ---- recording -----------------------------------------------------------

CREATE FUNCTION @extschema@.record_trade(side text, status text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_trade';
COMMENT ON FUNCTION @extschema@.record_trade(text, text) IS
    'Count one trade in trading_trades_total{side,status}; side is BUY or SELL';

CREATE FUNCTION @extschema@.record_api_request(endpoint text, duration_seconds double precision,
                                               status integer DEFAULT 200)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_api_request';
COMMENT ON FUNCTION @extschema@.record_api_request(text, double precision, integer) IS
    'Observe one broker API request in trading_api_request_duration_seconds{endpoint} and trading_api_requests_total{endpoint,code}; status 0 means no response';

CREATE FUNCTION @extschema@.record_exception(kind text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_record_exception';
COMMENT ON FUNCTION @extschema@.record_exception(text) IS
    'Count one exception in trading_exceptions_total{kind}';

-- ---- reading shared memory -------------------------------------------------

CREATE FUNCTION @extschema@._metrics_histograms(
    OUT endpoint text, OUT le double precision[], OUT buckets bigint[],
    OUT sum double precision, OUT count bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_histograms';

CREATE FUNCTION @extschema@._metrics_counters(
    OUT metric text, OUT label1 text, OUT label2 text, OUT value bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'metrics_counters';

-- ---- exporter-facing views (one per query of monitoring/queries.yaml) ------
-- Column names are what the exporter appends to the query's namespace.

-- trading_api_request_duration_seconds{endpoint}: cumulative buckets
-- without +Inf (the exporter adds it from _count), sum in seconds.
CREATE VIEW @extschema@.metrics_api_request_duration AS
    SELECT endpoint,
           le      AS request_duration_seconds,
           buckets AS request_duration_seconds_bucket,
           sum     AS request_duration_seconds_sum,
           count   AS request_duration_seconds_count
    FROM @extschema@._metrics_histograms();
COMMENT ON VIEW @extschema@.metrics_api_request_duration IS
    'Latency histogram of broker API requests per endpoint (bucket bounds 0.005 .. 10 s), for postgres_exporter';

-- trading_api_requests_total{endpoint,code}
CREATE VIEW @extschema@.metrics_api_requests AS
    SELECT label1 AS endpoint, label2 AS code, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'api_requests';
COMMENT ON VIEW @extschema@.metrics_api_requests IS
    'Broker API requests per endpoint and HTTP status class (1xx..5xx, no_response)';

-- trading_exceptions_total{kind}
CREATE VIEW @extschema@.metrics_exceptions AS
    SELECT label1 AS kind, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'exceptions';
COMMENT ON VIEW @extschema@.metrics_exceptions IS 'Exceptions per kind';

-- trading_trades_total{side,status}
CREATE VIEW @extschema@.metrics_trades AS
    SELECT label1 AS side, label2 AS status, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'trades';
COMMENT ON VIEW @extschema@.metrics_trades IS 'Trades recorded per side and status';

-- trading_metrics_label_overflow_total{metric}
CREATE VIEW @extschema@.metrics_label_overflow AS
    SELECT label1 AS metric, value AS total
    FROM @extschema@._metrics_counters() WHERE metric = 'label_overflow';
COMMENT ON VIEW @extschema@.metrics_label_overflow IS
    'Recordings whose label set did not fit under trading.metrics_max_labels (worker: counted under "_overflow"; SQL: refused)';

-- trading_rate_limit_*{endpoint}: the totals are per endpoint (repeated on
-- each limit row of rate_limit_status), so take one row per endpoint.
CREATE VIEW @extschema@.metrics_rate_limit AS
    SELECT DISTINCT ON (endpoint)
           endpoint,
           granted_total,
           refused_total,
           waited_seconds_total AS wait_seconds_total,
           timeouts_total,
           waiting
    FROM @extschema@.rate_limit_status
    ORDER BY endpoint;
COMMENT ON VIEW @extschema@.metrics_rate_limit IS
    'Rate limiter grants, refusals, wait time and waiters per endpoint';

GRANT EXECUTE ON FUNCTION @extschema@._metrics_histograms() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._metrics_counters() TO trading_reader;
GRANT SELECT ON @extschema@.metrics_api_request_duration, @extschema@.metrics_api_requests,
    @extschema@.metrics_exceptions, @extschema@.metrics_trades,
    @extschema@.metrics_label_overflow, @extschema@.metrics_rate_limit TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.record_trade(text, text) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.record_api_request(text, double precision, integer) TO trading_analyst;
GRANT EXECUTE ON FUNCTION @extschema@.record_exception(text) TO trading_analyst;
-- The desk's view of the broker, kept current by the broker worker (one
-- transaction per endpoint response).  Typed columns for what queries and
-- metrics use, plus the broker's JSON as received in "raw".  Ids are text
-- (order ids reach 19 digits); broker timestamps are IST and stored as
-- timestamptz; quantities are bigint, money numeric.

CREATE TABLE @extschema@.orders (
    order_id                  text PRIMARY KEY,
    exchange_order_id         text,
    parent_order_id           text,
    status                    text NOT NULL,
    status_message            text,
    previous_status           text,          -- status before the last change seen
    status_changed_at         timestamptz,   -- when the worker saw the last change
    variety                   text,
    exchange                  text,
    tradingsymbol             text,
    instrument_token          bigint,
    order_type                text,
    transaction_type          text,
    validity                  text,
    product                   text,
    quantity                  bigint,
    disclosed_quantity        bigint,
    price                     numeric,
    trigger_price             numeric,
    average_price             numeric,
    filled_quantity           bigint,
    pending_quantity          bigint,
    cancelled_quantity        bigint,
    tag                       text,
    tags                      text[],
    placed_by                 text,
    order_timestamp           timestamptz,
    exchange_timestamp        timestamptz,
    exchange_update_timestamp timestamptz,
    raw                       jsonb NOT NULL,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_status_idx ON @extschema@.orders (status);

CREATE TABLE @extschema@.trades (
    trade_id           text NOT NULL,
    order_id           text NOT NULL,
    exchange           text,
    tradingsymbol      text,
    instrument_token   bigint,
    product            text,
    transaction_type   text,
    quantity           bigint,
    average_price      numeric,
    exchange_order_id  text,
    fill_timestamp     timestamptz,
    order_timestamp    time,                 -- the broker sends HH:MM:SS only
    exchange_timestamp timestamptz,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, trade_id)
);

CREATE TABLE @extschema@.positions (
    kind               text NOT NULL CHECK (kind IN ('net', 'day')),
    exchange           text NOT NULL,
    tradingsymbol      text NOT NULL,
    product            text NOT NULL,
    instrument_token   bigint,
    quantity           bigint,
    overnight_quantity bigint,
    multiplier         numeric,
    average_price      numeric,
    close_price        numeric,
    last_price         numeric,
    value              numeric,
    pnl                numeric,
    m2m                numeric,
    unrealised         numeric,
    realised           numeric,
    buy_quantity       bigint,
    buy_price          numeric,
    buy_value          numeric,
    sell_quantity      bigint,
    sell_price         numeric,
    sell_value         numeric,
    day_buy_quantity   bigint,
    day_buy_price      numeric,
    day_buy_value      numeric,
    day_sell_quantity  bigint,
    day_sell_price     numeric,
    day_sell_value     numeric,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, exchange, tradingsymbol, product)
);

CREATE TABLE @extschema@.holdings (
    exchange              text NOT NULL,
    tradingsymbol         text NOT NULL,
    isin                  text,
    instrument_token      bigint,
    product               text,
    quantity              bigint,
    t1_quantity           bigint,
    realised_quantity     bigint,
    used_quantity         bigint,
    collateral_quantity   bigint,
    average_price         numeric,
    last_price            numeric,
    close_price           numeric,
    pnl                   numeric,
    day_change            numeric,
    day_change_percentage numeric,
    raw                   jsonb NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, tradingsymbol)
);

CREATE TABLE @extschema@.margins (
    segment            text PRIMARY KEY CHECK (segment IN ('equity', 'commodity')),
    enabled            boolean,
    net                numeric,
    available_cash     numeric,
    available_live_balance numeric,
    available_collateral   numeric,
    utilised_debits    numeric,
    utilised_exposure  numeric,
    utilised_span      numeric,
    utilised_m2m_realised   numeric,
    utilised_m2m_unrealised numeric,
    raw                jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Instruments the worker quotes, as EXCHANGE:TRADINGSYMBOL.
CREATE TABLE @extschema@.watchlist (
    instrument text PRIMARY KEY CHECK (instrument ~ '^[A-Z]+:[^ ]+$'),
    mode       text NOT NULL DEFAULT 'ltp' CHECK (mode IN ('ltp', 'ohlc', 'full')),
    added_at   timestamptz NOT NULL DEFAULT now()
);

-- Latest quote per instrument.
CREATE TABLE @extschema@.quotes (
    instrument          text PRIMARY KEY,    -- EXCHANGE:TRADINGSYMBOL
    instrument_token    bigint,
    mode                text NOT NULL,
    last_price          numeric,
    last_quantity       bigint,
    average_price       numeric,
    volume              bigint,
    buy_quantity        bigint,
    sell_quantity       bigint,
    open                numeric,
    high                numeric,
    low                 numeric,
    close               numeric,
    net_change          numeric,
    oi                  bigint,
    lower_circuit_limit numeric,
    upper_circuit_limit numeric,
    last_trade_time     timestamptz,
    quote_timestamp     timestamptz,
    raw                 jsonb NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT ON @extschema@.orders, @extschema@.trades, @extschema@.positions,
    @extschema@.holdings, @extschema@.margins, @extschema@.watchlist,
    @extschema@.quotes TO trading_reader;
GRANT INSERT, UPDATE, DELETE ON @extschema@.watchlist TO trading_analyst;
-- Broker worker (worker/broker_*.c).  The worker polls Kite and applies each
-- response in one transaction through the _apply_* functions below, which
-- map the broker's JSON to the tables of 50_broker_tables.sql with jsonb.

-- ---------------------------------------------------------------------
-- Configuration: how often each endpoint is polled.  Changes take effect
-- at once (a statement trigger wakes the worker after commit).
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.poll_intervals (
    endpoint    text PRIMARY KEY CHECK (endpoint IN ('orders', 'trades', 'positions',
                                                     'holdings', 'margins', 'quotes')),
    interval_ms integer NOT NULL CHECK (interval_ms BETWEEN 100 AND 86400000),
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE @extschema@.poll_intervals IS
    'How often the broker worker polls each endpoint (milliseconds); changes apply at once';

INSERT INTO @extschema@.poll_intervals (endpoint, interval_ms) VALUES
    ('orders',    2000),
    ('trades',    5000),
    ('positions', 3000),
    ('holdings',  60000),
    ('margins',   10000),
    ('quotes',    1000);

CREATE FUNCTION @extschema@._worker_config_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'broker_worker_config_changed';
CREATE TRIGGER poll_intervals_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.poll_intervals
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._worker_config_changed();
CREATE TRIGGER watchlist_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.watchlist
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._worker_config_changed();

-- ---------------------------------------------------------------------
-- The broker session.  Credentials are one envelope encrypted with the
-- server key (AAD "trading.broker_session"); nobody but the owner can read
-- the table, the status view shows everything but the secret.
-- ---------------------------------------------------------------------
CREATE TABLE @extschema@.broker_session (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    credentials bytea NOT NULL,
    user_id     text,
    login_time  timestamptz,
    set_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'expired')),
    expired_at  timestamptz
);
COMMENT ON TABLE @extschema@.broker_session IS
    'The Kite session the worker uses (encrypted with the server key)';

CREATE VIEW @extschema@.broker_session_status AS
    SELECT user_id, login_time, set_at, state, expired_at
    FROM @extschema@.broker_session;
COMMENT ON VIEW @extschema@.broker_session_status IS
    'The broker session without its secret: who, since when, active or expired';

CREATE FUNCTION @extschema@.set_broker_session(api_key text, access_token text)
    RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'set_broker_session';
COMMENT ON FUNCTION @extschema@.set_broker_session(text, text) IS
    'Store the Kite api_key and access_token (encrypted with the server key); the worker resumes polling with them';

CREATE FUNCTION @extschema@.broker_login(api_key text, request_token text, api_secret text,
                                         OUT user_id text, OUT login_time timestamptz)
    RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'broker_login';
COMMENT ON FUNCTION @extschema@.broker_login(text, text, text) IS
    'Exchange a request_token for an access token (POST /session/token with the checksum) and store the session';

CREATE FUNCTION @extschema@.clear_broker_session() RETURNS boolean
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'clear_broker_session';
COMMENT ON FUNCTION @extschema@.clear_broker_session() IS
    'Forget the stored session; the worker stops authenticated polling';

-- ---------------------------------------------------------------------
-- Worker status, from the worker's shared memory.
-- ---------------------------------------------------------------------
CREATE FUNCTION @extschema@._worker_status(
    OUT endpoint text, OUT worker_state text, OUT session_state text,
    OUT interval_ms integer, OUT enabled boolean,
    OUT last_success timestamptz, OUT last_error timestamptz,
    OUT last_error_type text, OUT next_poll timestamptz,
    OUT consecutive_failures integer, OUT requests_total bigint,
    OUT errors_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_status';

CREATE VIEW @extschema@.worker_status AS
    SELECT endpoint, worker_state, session_state, last_success, last_error,
           last_error_type, next_poll, consecutive_failures, requests_total,
           errors_total, interval_ms, enabled
    FROM @extschema@._worker_status();
COMMENT ON VIEW @extschema@.worker_status IS
    'The broker worker: its state, the session state and, per polled endpoint, last success, last error, next poll and counters';

CREATE FUNCTION @extschema@._worker_errors(OUT endpoint text, OUT error_type text,
                                           OUT errors_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_errors';

CREATE VIEW @extschema@.worker_errors AS
    SELECT * FROM @extschema@._worker_errors();
COMMENT ON VIEW @extschema@.worker_errors IS
    'Errors of the broker worker since server start, by endpoint and error type';

CREATE FUNCTION @extschema@._worker_http(OUT connections_opened_total bigint,
                                         OUT requests_total bigint,
                                         OUT cycles_total bigint,
                                         OUT worker_pid integer,
                                         OUT started_at timestamptz)
    RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'broker_worker_http';

CREATE VIEW @extschema@.worker_http AS
    SELECT * FROM @extschema@._worker_http();
COMMENT ON VIEW @extschema@.worker_http IS
    'HTTP counters of the broker worker: connections opened and requests sent since server start';

-- ---------------------------------------------------------------------
-- Mapping of Kite responses to the tables (called by the worker, one
-- transaction per response).  Each returns the number of rows changed
-- and sends a NOTIFY on trading_<table> when something changed.
-- ---------------------------------------------------------------------

-- Kite timestamps are 'yyyy-mm-dd hh:mm:ss' in IST.
CREATE FUNCTION @extschema@._ist(ts text) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN ts IS NULL OR ts = '' THEN NULL
                ELSE (ts::timestamp) AT TIME ZONE 'Asia/Kolkata' END;

CREATE FUNCTION @extschema@._notify_change(tbl text, inserted bigint, updated bigint,
                                           deleted bigint, detail jsonb DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    payload text;
BEGIN
    IF inserted + updated + deleted = 0 THEN
        RETURN;
    END IF;
    payload := jsonb_build_object('table', tbl, 'inserted', inserted,
                                  'updated', updated, 'deleted', deleted)::text;
    IF detail IS NOT NULL AND length(payload) + length(detail::text) < 7900 THEN
        payload := (payload::jsonb || jsonb_build_object('changed', detail))::text;
    END IF;
    PERFORM pg_notify('trading_' || tbl, payload);
END
$$;

-- TR304 unless data is a JSON value of the given type ('array', 'object').
CREATE FUNCTION @extschema@._require(data jsonb, type text, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF data IS NULL OR jsonb_typeof(data) <> type THEN
        RAISE EXCEPTION 'broker response for % has no data %', what, type
            USING ERRCODE = 'TR304';
    END IF;
END
$$;

-- Returns 'SIDE|STATUS' for each order first seen in, or changed to, a
-- final status (COMPLETE, CANCELLED, REJECTED): the worker counts them in
-- trading_trades_total.
CREATE FUNCTION @extschema@._apply_orders(data jsonb) RETURNS text[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_ins bigint;
    n_upd bigint;
    changed jsonb;
    finals text[];
BEGIN
    PERFORM @extschema@._require(data, 'array', 'orders');
    CREATE TEMP TABLE IF NOT EXISTS _orders_in (LIKE @extschema@.orders) ON COMMIT DROP;
    INSERT INTO _orders_in
    SELECT o->>'order_id', o->>'exchange_order_id', o->>'parent_order_id',
           o->>'status', o->>'status_message', NULL, NULL,
           o->>'variety', o->>'exchange', o->>'tradingsymbol',
           (o->>'instrument_token')::bigint, o->>'order_type', o->>'transaction_type',
           o->>'validity', o->>'product', (o->>'quantity')::bigint,
           (o->>'disclosed_quantity')::bigint, (o->>'price')::numeric,
           (o->>'trigger_price')::numeric, (o->>'average_price')::numeric,
           (o->>'filled_quantity')::bigint, (o->>'pending_quantity')::bigint,
           (o->>'cancelled_quantity')::bigint, o->>'tag',
           CASE WHEN jsonb_typeof(o->'tags') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(o->'tags')) END,
           o->>'placed_by',
           @extschema@._ist(o->>'order_timestamp'),
           @extschema@._ist(o->>'exchange_timestamp'),
           @extschema@._ist(o->>'exchange_update_timestamp'),
           o, now()
    FROM jsonb_array_elements(data) o;
    IF EXISTS (SELECT 1 FROM _orders_in WHERE order_id IS NULL OR status IS NULL) THEN
        RAISE EXCEPTION 'broker order without order_id or status' USING ERRCODE = 'TR304';
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_object('order_id', i.order_id, 'status', i.status,
                                                 'previous_status', o.status)), '[]')
      INTO changed
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id)
     WHERE o.order_id IS NULL OR o.status IS DISTINCT FROM i.status;

    SELECT coalesce(array_agg(coalesce(i.transaction_type, 'unknown') || '|' || i.status
                              ORDER BY i.order_id), '{}')
      INTO finals
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id)
     WHERE i.status IN ('COMPLETE', 'CANCELLED', 'REJECTED')
       AND (o.order_id IS NULL OR o.status IS DISTINCT FROM i.status);

    SELECT count(*) FILTER (WHERE o.order_id IS NULL),
           count(*) FILTER (WHERE o.order_id IS NOT NULL AND o.raw IS DISTINCT FROM i.raw)
      INTO n_ins, n_upd
      FROM _orders_in i LEFT JOIN @extschema@.orders o USING (order_id);

    INSERT INTO @extschema@.orders AS t
    SELECT * FROM _orders_in
    ON CONFLICT (order_id) DO UPDATE SET
        exchange_order_id = EXCLUDED.exchange_order_id,
        parent_order_id = EXCLUDED.parent_order_id,
        previous_status = CASE WHEN t.status IS DISTINCT FROM EXCLUDED.status
                               THEN t.status ELSE t.previous_status END,
        status_changed_at = CASE WHEN t.status IS DISTINCT FROM EXCLUDED.status
                                 THEN now() ELSE t.status_changed_at END,
        status = EXCLUDED.status,
        status_message = EXCLUDED.status_message,
        variety = EXCLUDED.variety, exchange = EXCLUDED.exchange,
        tradingsymbol = EXCLUDED.tradingsymbol,
        instrument_token = EXCLUDED.instrument_token,
        order_type = EXCLUDED.order_type, transaction_type = EXCLUDED.transaction_type,
        validity = EXCLUDED.validity, product = EXCLUDED.product,
        quantity = EXCLUDED.quantity, disclosed_quantity = EXCLUDED.disclosed_quantity,
        price = EXCLUDED.price, trigger_price = EXCLUDED.trigger_price,
        average_price = EXCLUDED.average_price,
        filled_quantity = EXCLUDED.filled_quantity,
        pending_quantity = EXCLUDED.pending_quantity,
        cancelled_quantity = EXCLUDED.cancelled_quantity,
        tag = EXCLUDED.tag, tags = EXCLUDED.tags, placed_by = EXCLUDED.placed_by,
        order_timestamp = EXCLUDED.order_timestamp,
        exchange_timestamp = EXCLUDED.exchange_timestamp,
        exchange_update_timestamp = EXCLUDED.exchange_update_timestamp,
        raw = EXCLUDED.raw, updated_at = now()
    WHERE t.raw IS DISTINCT FROM EXCLUDED.raw;

    -- new orders get status_changed_at = when first seen
    UPDATE @extschema@.orders o SET status_changed_at = now()
      FROM _orders_in i
     WHERE o.order_id = i.order_id AND o.status_changed_at IS NULL;

    PERFORM @extschema@._notify_change('orders', n_ins, n_upd, 0,
                                       CASE WHEN jsonb_array_length(changed) > 0
                                            THEN changed END);
    DROP TABLE _orders_in;
    RETURN finals;
END
$$;

-- Merge the staged rows of the temporary table _<tbl>_in into
-- @extschema@.<tbl> on its key: insert new rows, update those whose raw
-- changed (every non-key column), and, when replace_all, delete the rows
-- the broker no longer reports.  Sends the NOTIFY (counting already_deleted
-- rows the caller removed) and drops the stage.
CREATE FUNCTION @extschema@._merge_staged(tbl text, keycols text[], replace_all boolean,
                                          already_deleted bigint,
                                          OUT inserted bigint, OUT updated bigint,
                                          OUT deleted bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stage text := '_' || tbl || '_in';
    keylist text;
    joined text;
    setlist text;
BEGIN
    SELECT string_agg(quote_ident(k), ', '),
           string_agg(format('x.%1$I = i.%1$I', k), ' AND ')
      INTO keylist, joined
      FROM unnest(keycols) k;
    SELECT string_agg(format('%1$I = EXCLUDED.%1$I', a.attname), ', ' ORDER BY a.attnum)
      INTO setlist
      FROM pg_attribute a
     WHERE a.attrelid = format('@extschema@.%I', tbl)::regclass
       AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> ALL (keycols);

    EXECUTE format('SELECT count(*) FILTER (WHERE x.%1$I IS NULL),
                           count(*) FILTER (WHERE x.%1$I IS NOT NULL AND x.raw IS DISTINCT FROM i.raw)
                      FROM %2$I i LEFT JOIN @extschema@.%3$I x ON %4$s',
                   keycols[1], stage, tbl, joined)
      INTO inserted, updated;
    deleted := already_deleted;
    IF replace_all THEN
        EXECUTE format('DELETE FROM @extschema@.%1$I x WHERE NOT EXISTS (SELECT 1 FROM %2$I i WHERE %3$s)',
                       tbl, stage, joined);
        GET DIAGNOSTICS deleted = ROW_COUNT;
        deleted := deleted + already_deleted;
    END IF;
    EXECUTE format('INSERT INTO @extschema@.%1$I AS x SELECT * FROM %2$I
                    ON CONFLICT (%3$s) DO UPDATE SET %4$s
                    WHERE x.raw IS DISTINCT FROM EXCLUDED.raw',
                   tbl, stage, keylist, setlist);
    EXECUTE format('DROP TABLE %I', stage);
    PERFORM @extschema@._notify_change(tbl, inserted, updated, deleted);
END
$$;

CREATE FUNCTION @extschema@._apply_trades(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'trades');
    CREATE TEMP TABLE _trades_in (LIKE @extschema@.trades) ON COMMIT DROP;
    INSERT INTO _trades_in
    SELECT t->>'trade_id', t->>'order_id', t->>'exchange', t->>'tradingsymbol',
           (t->>'instrument_token')::bigint, t->>'product', t->>'transaction_type',
           (t->>'quantity')::bigint, (t->>'average_price')::numeric,
           t->>'exchange_order_id',
           @extschema@._ist(t->>'fill_timestamp'),
           nullif(t->>'order_timestamp', '')::time,
           @extschema@._ist(t->>'exchange_timestamp'),
           t, now()
    FROM jsonb_array_elements(data) t;
    PERFORM @extschema@._merge_staged('trades', '{order_id,trade_id}', false, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_positions(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'positions');
    PERFORM @extschema@._require(data->'net', 'array', 'positions.net');
    PERFORM @extschema@._require(data->'day', 'array', 'positions.day');
    CREATE TEMP TABLE _positions_in (LIKE @extschema@.positions) ON COMMIT DROP;
    INSERT INTO _positions_in
    SELECT k.kind, p->>'exchange', p->>'tradingsymbol', p->>'product',
           (p->>'instrument_token')::bigint, (p->>'quantity')::bigint,
           (p->>'overnight_quantity')::bigint, (p->>'multiplier')::numeric,
           (p->>'average_price')::numeric, (p->>'close_price')::numeric,
           (p->>'last_price')::numeric, (p->>'value')::numeric,
           (p->>'pnl')::numeric, (p->>'m2m')::numeric,
           (p->>'unrealised')::numeric, (p->>'realised')::numeric,
           (p->>'buy_quantity')::bigint, (p->>'buy_price')::numeric,
           (p->>'buy_value')::numeric, (p->>'sell_quantity')::bigint,
           (p->>'sell_price')::numeric, (p->>'sell_value')::numeric,
           (p->>'day_buy_quantity')::bigint, (p->>'day_buy_price')::numeric,
           (p->>'day_buy_value')::numeric, (p->>'day_sell_quantity')::bigint,
           (p->>'day_sell_price')::numeric, (p->>'day_sell_value')::numeric,
           p, now()
    FROM (VALUES ('net'), ('day')) k(kind),
         jsonb_array_elements(data->k.kind) p;
    PERFORM @extschema@._merge_staged('positions', '{kind,exchange,tradingsymbol,product}', true, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_holdings(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'array', 'holdings');
    CREATE TEMP TABLE _holdings_in (LIKE @extschema@.holdings) ON COMMIT DROP;
    INSERT INTO _holdings_in
    SELECT h->>'exchange', h->>'tradingsymbol', h->>'isin',
           (h->>'instrument_token')::bigint, h->>'product',
           (h->>'quantity')::bigint, (h->>'t1_quantity')::bigint,
           (h->>'realised_quantity')::bigint, (h->>'used_quantity')::bigint,
           (h->>'collateral_quantity')::bigint, (h->>'average_price')::numeric,
           (h->>'last_price')::numeric, (h->>'close_price')::numeric,
           (h->>'pnl')::numeric, (h->>'day_change')::numeric,
           (h->>'day_change_percentage')::numeric, h, now()
    FROM jsonb_array_elements(data) h;
    PERFORM @extschema@._merge_staged('holdings', '{exchange,tradingsymbol}', true, 0);
END
$$;

CREATE FUNCTION @extschema@._apply_margins(data jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._require(data, 'object', 'margins');
    IF EXISTS (SELECT 1 FROM jsonb_each(data) e
               WHERE e.key NOT IN ('equity', 'commodity') OR jsonb_typeof(e.value) <> 'object') THEN
        RAISE EXCEPTION 'broker margins have an unknown segment or a segment that is not an object'
            USING ERRCODE = 'TR304';
    END IF;
    CREATE TEMP TABLE _margins_in (LIKE @extschema@.margins) ON COMMIT DROP;
    INSERT INTO _margins_in
    SELECT e.key, (m->>'enabled')::boolean, (m->>'net')::numeric,
           (m->'available'->>'cash')::numeric,
           (m->'available'->>'live_balance')::numeric,
           (m->'available'->>'collateral')::numeric,
           (m->'utilised'->>'debits')::numeric,
           (m->'utilised'->>'exposure')::numeric,
           (m->'utilised'->>'span')::numeric,
           (m->'utilised'->>'m2m_realised')::numeric,
           (m->'utilised'->>'m2m_unrealised')::numeric,
           m, now()
    FROM jsonb_each(data) e, LATERAL (SELECT e.value AS m) v;
    PERFORM @extschema@._merge_staged('margins', '{segment}', true, 0);
END
$$;

-- Quotes of one batch (mode 'ltp', 'ohlc' or 'full').  An instrument the
-- broker left out keeps its last quote; instruments no longer on the
-- watchlist are removed (and not added, if they left it while the request
-- was in flight).
CREATE FUNCTION @extschema@._apply_quotes(data jsonb, mode text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_del bigint;
BEGIN
    PERFORM @extschema@._require(data, 'object', 'quotes');
    IF EXISTS (SELECT 1 FROM jsonb_each(data) e WHERE jsonb_typeof(e.value) <> 'object') THEN
        RAISE EXCEPTION 'broker quote that is not an object' USING ERRCODE = 'TR304';
    END IF;
    DELETE FROM @extschema@.quotes x
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = x.instrument);
    GET DIAGNOSTICS n_del = ROW_COUNT;
    CREATE TEMP TABLE _quotes_in (LIKE @extschema@.quotes) ON COMMIT DROP;
    INSERT INTO _quotes_in
    SELECT e.key, (q->>'instrument_token')::bigint, mode,
           (q->>'last_price')::numeric, (q->>'last_quantity')::bigint,
           (q->>'average_price')::numeric, (q->>'volume')::bigint,
           (q->>'buy_quantity')::bigint, (q->>'sell_quantity')::bigint,
           (q->'ohlc'->>'open')::numeric, (q->'ohlc'->>'high')::numeric,
           (q->'ohlc'->>'low')::numeric, (q->'ohlc'->>'close')::numeric,
           (q->>'net_change')::numeric, (q->>'oi')::bigint,
           (q->>'lower_circuit_limit')::numeric, (q->>'upper_circuit_limit')::numeric,
           @extschema@._ist(q->>'last_trade_time'),
           @extschema@._ist(q->>'timestamp'),
           q, now()
    FROM jsonb_each(data) e, LATERAL (SELECT e.value AS q) v
    WHERE EXISTS (SELECT 1 FROM @extschema@.watchlist w WHERE w.instrument = e.key);
    PERFORM @extschema@._merge_staged('quotes', '{instrument}', false, n_del);
END
$$;

-- One response: the Kite envelope, then the endpoint's mapping.  Returns
-- a NULL error_type when applied (final_orders: see _apply_orders), or the
-- broker's error (status "error") without touching any table.  Anything else (not JSON, wrong shape, bad values)
-- raises an error and the worker rolls back.
CREATE FUNCTION @extschema@._apply_response(endpoint text, body text,
                                            OUT error_type text, OUT message text,
                                            OUT final_orders text[])
    RETURNS record LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb := body::jsonb;
BEGIN
    IF jsonb_typeof(doc) <> 'object' OR jsonb_typeof(doc->'status') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'broker response is not a Kite envelope' USING ERRCODE = 'TR304';
    END IF;
    IF doc->>'status' = 'error' THEN
        error_type := coalesce(doc->>'error_type', 'GeneralException');
        message := left(coalesce(doc->>'message', ''), 200);
        RETURN;
    END IF;
    IF doc->>'status' <> 'success' THEN
        RAISE EXCEPTION 'broker response has status "%"', left(doc->>'status', 40)
            USING ERRCODE = 'TR304';
    END IF;
    CASE endpoint
        WHEN 'orders' THEN final_orders := @extschema@._apply_orders(doc->'data');
        WHEN 'trades' THEN PERFORM @extschema@._apply_trades(doc->'data');
        WHEN 'positions' THEN PERFORM @extschema@._apply_positions(doc->'data');
        WHEN 'holdings' THEN PERFORM @extschema@._apply_holdings(doc->'data');
        WHEN 'margins' THEN PERFORM @extschema@._apply_margins(doc->'data');
        WHEN 'quotes:ltp' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'ltp');
        WHEN 'quotes:ohlc' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'ohlc');
        WHEN 'quotes:full' THEN PERFORM @extschema@._apply_quotes(doc->'data', 'full');
        ELSE RAISE EXCEPTION 'unknown endpoint "%"', endpoint USING ERRCODE = '22023';
    END CASE;
END
$$;

-- The worker marks the session expired after a TokenException, unless a
-- new session was set meanwhile (set_at differs).
CREATE FUNCTION @extschema@._expire_session(loaded_set_at timestamptz) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@.broker_session SET state = 'expired', expired_at = now()
     WHERE state = 'active' AND set_at = loaded_set_at;
    IF FOUND THEN
        PERFORM pg_notify('trading_session', '{"state": "expired"}');
    END IF;
    RETURN FOUND;
END
$$;

GRANT SELECT ON @extschema@.poll_intervals TO trading_reader;
GRANT UPDATE (interval_ms, enabled) ON @extschema@.poll_intervals TO trading_admin;
GRANT SELECT ON @extschema@.broker_session_status TO trading_reader;
GRANT SELECT ON @extschema@.worker_status, @extschema@.worker_errors,
    @extschema@.worker_http TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@._worker_status(), @extschema@._worker_errors(),
    @extschema@._worker_http() TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.set_broker_session(text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.broker_login(text, text, text) TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.clear_broker_session() TO trading_admin;
-- Metrics, part 2 (after the broker tables): business figures derived from
-- the worker's tables, the exporter-facing views over the worker's and the
-- correlation module's status views, the catalogue of every metric, the
-- trading.metrics view and trading.metrics_prometheus().

-- ---- business figures ------------------------------------------------------
-- Net positions are the desk's positions (day positions are their intraday
-- part).  A position is closed when its net quantity is zero; it is a win
-- when its pnl (then all realised) is positive.  The daily figure is the
-- mark-to-market (m2m: against yesterday's close) of the net positions the
-- worker refreshed today, the day being the calendar day in Asia/Kolkata.

CREATE VIEW @extschema@.metrics_business AS
    SELECT coalesce(sum(pnl), 0)::float8 AS total_pnl,
           coalesce(sum(m2m) FILTER (
               WHERE updated_at >= date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata')
                                   AT TIME ZONE 'Asia/Kolkata'), 0)::float8 AS daily_pnl,
           CASE WHEN count(*) FILTER (WHERE quantity = 0) = 0 THEN 'NaN'::float8
                ELSE 100.0 * count(*) FILTER (WHERE quantity = 0 AND pnl > 0)
                     / count(*) FILTER (WHERE quantity = 0) END::float8 AS win_rate_percent,
           CASE WHEN count(*) FILTER (WHERE quantity = 0) = 0 THEN 'NaN'::float8
                ELSE count(*) FILTER (WHERE quantity = 0 AND pnl > 0)::float8
                     / count(*) FILTER (WHERE quantity = 0) END AS win_rate_ratio,
           count(*) FILTER (WHERE quantity <> 0) AS active_positions,
           count(*) FILTER (WHERE quantity = 0) AS closed_positions,
           count(*) FILTER (WHERE quantity = 0 AND pnl > 0) AS winning_positions,
           current_setting('trading.daily_loss_alert_threshold')::float8 AS daily_loss_alert_threshold
    FROM @extschema@.positions
    WHERE kind = 'net';
COMMENT ON VIEW @extschema@.metrics_business IS
    'PnL, win rate and position counts derived from trading.positions (one row)';

-- trading_broker_orders{side,status}
CREATE VIEW @extschema@.metrics_orders AS
    SELECT coalesce(transaction_type, 'unknown') AS side,
           coalesce(status, 'unknown') AS status,
           count(*) AS orders
    FROM @extschema@.orders
    GROUP BY 1, 2;
COMMENT ON VIEW @extschema@.metrics_orders IS
    'Orders in trading.orders by side (transaction_type) and status';

GRANT SELECT ON @extschema@.metrics_business, @extschema@.metrics_orders TO trading_reader;

-- ---- views over the worker and correlation modules --------------------------
-- Those modules define trading.worker_status, worker_errors, worker_http and
-- correlation_stats.  Each view below is built on its source when the source
-- exists at this point of the install script, and is an empty view with the
-- same columns otherwise (so the exporter's queries never fail); a source
-- without the expected columns gives a WARNING and the empty view.
DO $do$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM (VALUES
        ('metrics_worker', 'worker_status',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(extract(epoch FROM last_success), 0)::float8 AS last_success_timestamp_seconds,
                   CASE WHEN last_success IS NULL THEN 'Infinity'::float8
                        ELSE greatest(extract(epoch FROM now() - last_success), 0)::float8
                   END AS last_success_age_seconds,
                   coalesce(consecutive_failures, 0)::float8 AS consecutive_failures,
                   coalesce(requests_total, 0)::float8 AS requests_total,
                   CASE WHEN next_poll IS NULL THEN 0::float8
                        ELSE greatest(extract(epoch FROM now() - next_poll), 0)::float8
                   END AS poll_overdue_seconds,
                   (coalesce(session_state, '') IN ('expired', 'unreadable'))::int::float8 AS session_expired
            FROM @extschema@.worker_status$q$,
         $q$SELECT NULL::text AS endpoint, NULL::float8 AS last_success_timestamp_seconds,
                   NULL::float8 AS last_success_age_seconds, NULL::float8 AS consecutive_failures,
                   NULL::float8 AS requests_total, NULL::float8 AS poll_overdue_seconds,
                   NULL::float8 AS session_expired
            WHERE false$q$),
        ('metrics_worker_state', 'worker_status',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(worker_state::text, 'unknown') AS worker_state,
                   coalesce(session_state::text, 'unknown') AS session_state,
                   1::float8 AS info
            FROM @extschema@.worker_status$q$,
         $q$SELECT NULL::text AS endpoint, NULL::text AS worker_state,
                   NULL::text AS session_state, NULL::float8 AS info
            WHERE false$q$),
        ('metrics_worker_errors', 'worker_errors',
         $q$SELECT endpoint::text AS endpoint,
                   coalesce(error_type::text, 'unknown') AS error_type,
                   errors_total::float8 AS total
            FROM @extschema@.worker_errors$q$,
         $q$SELECT NULL::text AS endpoint, NULL::text AS error_type, NULL::float8 AS total
            WHERE false$q$),
        ('metrics_http', 'worker_http',
         $q$SELECT connections_opened_total::float8 AS connections_opened_total,
                   requests_total::float8 AS requests_total
            FROM @extschema@.worker_http$q$,
         $q$SELECT NULL::float8 AS connections_opened_total, NULL::float8 AS requests_total
            WHERE false$q$),
        ('metrics_correlation', 'correlation_stats',
         $q$SELECT queue_depth::float8 AS queue_depth,
                   queue_capacity::float8 AS queue_capacity,
                   enqueued_total::float8 AS enqueued_total,
                   dropped_total::float8 AS dropped_total,
                   written_total::float8 AS written_total
            FROM @extschema@.correlation_stats$q$,
         $q$SELECT NULL::float8 AS queue_depth, NULL::float8 AS queue_capacity,
                   NULL::float8 AS enqueued_total, NULL::float8 AS dropped_total,
                   NULL::float8 AS written_total
            WHERE false$q$)
    ) AS t(name, source, real_query, empty_query)
    LOOP
        IF to_regclass('@extschema@.' || v.source) IS NOT NULL THEN
            BEGIN
                EXECUTE format('CREATE VIEW @extschema@.%I AS %s', v.name, v.real_query);
                EXECUTE format('COMMENT ON VIEW @extschema@.%I IS %L', v.name,
                               'Metrics from trading.' || v.source || ', for postgres_exporter');
            EXCEPTION WHEN undefined_column OR undefined_function OR datatype_mismatch
                           OR cannot_coerce OR invalid_text_representation THEN
                RAISE WARNING 'metrics view trading.% left empty: trading.% does not have the expected columns', v.name, v.source
                    USING DETAIL = SQLERRM,
                          HINT = 'See docs/MONITORING.md for the columns the metrics expect.';
            END;
        END IF;
        IF to_regclass('@extschema@.' || v.name) IS NULL THEN
            EXECUTE format('CREATE VIEW @extschema@.%I AS %s', v.name, v.empty_query);
            EXECUTE format('COMMENT ON VIEW @extschema@.%I IS %L', v.name,
                           'Empty: trading.' || v.source || ' did not exist when the extension was installed');
        END IF;
        EXECUTE format('GRANT SELECT ON @extschema@.%I TO trading_reader', v.name);
    END LOOP;
END
$do$;

-- ---- the catalogue of metrics ----------------------------------------------
-- Every metric the desk exposes, as named by postgres_exporter with
-- monitoring/queries.yaml (whose descriptions are these help texts).

CREATE VIEW @extschema@.metrics_catalog (name, type, labels, help) AS VALUES
    ('trading_api_request_duration_seconds', 'histogram', '{endpoint}'::text[], 'Duration of broker API requests in seconds.'),
    ('trading_api_requests_total', 'counter', '{endpoint,code}', 'Broker API requests by HTTP status class (no_response: no HTTP response).'),
    ('trading_exceptions_total', 'counter', '{kind}', 'Exceptions raised while trading, by kind.'),
    ('trading_trades_total', 'counter', '{side,status}', 'Trades recorded, by side and status.'),
    ('trading_metrics_label_overflow_total', 'counter', '{metric}', 'Recordings whose label set did not fit under trading.metrics_max_labels.'),
    ('trading_rate_limit_granted_total', 'counter', '{endpoint}', 'Requests granted by the rate limiter.'),
    ('trading_rate_limit_refused_total', 'counter', '{endpoint}', 'Requests refused by the rate limiter, timeouts included.'),
    ('trading_rate_limit_wait_seconds_total', 'counter', '{endpoint}', 'Time spent waiting for the rate limiter in seconds.'),
    ('trading_rate_limit_timeouts_total', 'counter', '{endpoint}', 'Waits for the rate limiter that timed out.'),
    ('trading_rate_limit_waiting', 'gauge', '{endpoint}', 'Sessions waiting for the rate limiter now.'),
    ('trading_total_pnl', 'gauge', '{}', 'Total profit and loss of the net positions in rupees.'),
    ('trading_daily_pnl', 'gauge', '{}', 'Profit and loss of today (Asia/Kolkata) in rupees: mark-to-market of the net positions refreshed today.'),
    ('trading_win_rate_percent', 'gauge', '{}', 'Closed positions with a profit in percent of closed positions (NaN while none is closed).'),
    ('trading_win_rate_ratio', 'gauge', '{}', 'Closed positions with a profit as a ratio of closed positions (NaN while none is closed).'),
    ('trading_daily_loss_alert_threshold', 'gauge', '{}', 'Daily loss in rupees beyond which TradingDailyLossLimit fires (0: never), from trading.daily_loss_alert_threshold.'),
    ('trading_active_positions', 'gauge', '{}', 'Net positions with a non-zero quantity.'),
    ('trading_closed_positions', 'gauge', '{}', 'Net positions with a zero quantity.'),
    ('trading_winning_positions', 'gauge', '{}', 'Closed net positions with a profit.'),
    ('trading_broker_orders', 'gauge', '{side,status}', 'Orders in trading.orders by side and status.'),
    ('trading_worker_last_success_timestamp_seconds', 'gauge', '{endpoint}', 'Unix time of the last successful poll of the endpoint (0: never).'),
    ('trading_worker_last_success_age_seconds', 'gauge', '{endpoint}', 'Seconds since the last successful poll of the endpoint (+Inf: never).'),
    ('trading_worker_consecutive_failures', 'gauge', '{endpoint}', 'Failed polls of the endpoint since its last success.'),
    ('trading_worker_requests_total', 'counter', '{endpoint}', 'Requests made by the broker worker.'),
    ('trading_worker_poll_overdue_seconds', 'gauge', '{endpoint}', 'Seconds by which the next poll of the endpoint is overdue (0: on time).'),
    ('trading_worker_session_expired', 'gauge', '{endpoint}', '1 when the broker session is expired or unreadable, else 0.'),
    ('trading_worker_state_info', 'gauge', '{endpoint,worker_state,session_state}', 'State of the worker and of the broker session per endpoint (always 1).'),
    ('trading_worker_errors_total', 'counter', '{endpoint,error_type}', 'Errors of the broker worker by endpoint and error type.'),
    ('trading_correlation_queue_depth', 'gauge', '{}', 'Events waiting in the correlation queue.'),
    ('trading_correlation_queue_capacity', 'gauge', '{}', 'Capacity of the correlation queue.'),
    ('trading_correlation_enqueued_total', 'counter', '{}', 'Events put in the correlation queue.'),
    ('trading_correlation_dropped_total', 'counter', '{}', 'Events dropped because the correlation queue was full.'),
    ('trading_correlation_written_total', 'counter', '{}', 'Events written from the correlation queue to the database.'),
    ('trading_http_connections_opened_total', 'counter', '{}', 'HTTP connections opened by the broker worker.'),
    ('trading_http_requests_total', 'counter', '{}', 'HTTP requests sent by the broker worker.');
COMMENT ON VIEW @extschema@.metrics_catalog IS
    'Every metric: name, Prometheus type, label names and help text';

-- ---- trading.metrics: every sample, for people who read metrics from SQL ----

CREATE VIEW @extschema@.metrics AS
WITH h AS MATERIALIZED (
    SELECT * FROM @extschema@._metrics_histograms()
), samples (family, name, labels, value) AS (
    -- histogram: cumulative buckets, +Inf, sum, count (one snapshot)
    SELECT 'trading_api_request_duration_seconds', 'trading_api_request_duration_seconds_bucket',
           jsonb_build_object('endpoint', h.endpoint,
                              'le', CASE WHEN b.le = 'Infinity' THEN '+Inf' ELSE b.le::text END),
           b.n::float8
    FROM h,
         unnest(h.le || 'Infinity'::float8, h.buckets || h.count) AS b(le, n)
    UNION ALL
    SELECT 'trading_api_request_duration_seconds', 'trading_api_request_duration_seconds_' || s.suffix,
           jsonb_build_object('endpoint', h.endpoint), s.v
    FROM h,
         LATERAL (VALUES ('sum', h.sum), ('count', h.count::float8)) AS s(suffix, v)
    UNION ALL
    SELECT n, n, l, v FROM (
        SELECT CASE c.metric
                   WHEN 'api_requests' THEN 'trading_api_requests_total'
                   WHEN 'exceptions' THEN 'trading_exceptions_total'
                   WHEN 'trades' THEN 'trading_trades_total'
                   ELSE 'trading_metrics_label_overflow_total' END,
               CASE c.metric
                   WHEN 'api_requests' THEN jsonb_build_object('endpoint', c.label1, 'code', c.label2)
                   WHEN 'exceptions' THEN jsonb_build_object('kind', c.label1)
                   WHEN 'trades' THEN jsonb_build_object('side', c.label1, 'status', c.label2)
                   ELSE jsonb_build_object('metric', c.label1) END,
               c.value::float8
        FROM @extschema@._metrics_counters() c) AS x(n, l, v)
    UNION ALL
    SELECT 'trading_rate_limit_' || m.k, 'trading_rate_limit_' || m.k,
           jsonb_build_object('endpoint', r.endpoint), m.v
    FROM @extschema@.metrics_rate_limit r,
         LATERAL (VALUES ('granted_total', r.granted_total::float8),
                         ('refused_total', r.refused_total::float8),
                         ('wait_seconds_total', r.wait_seconds_total),
                         ('timeouts_total', r.timeouts_total::float8),
                         ('waiting', r.waiting::float8)) AS m(k, v)
    UNION ALL
    SELECT 'trading_' || m.k, 'trading_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_business b,
         LATERAL (VALUES ('total_pnl', b.total_pnl), ('daily_pnl', b.daily_pnl),
                         ('win_rate_percent', b.win_rate_percent),
                         ('win_rate_ratio', b.win_rate_ratio),
                         ('active_positions', b.active_positions::float8),
                         ('closed_positions', b.closed_positions::float8),
                         ('winning_positions', b.winning_positions::float8),
                         ('daily_loss_alert_threshold', b.daily_loss_alert_threshold)) AS m(k, v)
    UNION ALL
    SELECT 'trading_broker_orders', 'trading_broker_orders',
           jsonb_build_object('side', o.side, 'status', o.status), o.orders::float8
    FROM @extschema@.metrics_orders o
    UNION ALL
    SELECT 'trading_worker_' || m.k, 'trading_worker_' || m.k,
           jsonb_build_object('endpoint', w.endpoint), m.v
    FROM @extschema@.metrics_worker w,
         LATERAL (VALUES ('last_success_timestamp_seconds', w.last_success_timestamp_seconds),
                         ('last_success_age_seconds', w.last_success_age_seconds),
                         ('consecutive_failures', w.consecutive_failures),
                         ('requests_total', w.requests_total),
                         ('poll_overdue_seconds', w.poll_overdue_seconds),
                         ('session_expired', w.session_expired)) AS m(k, v)
    UNION ALL
    SELECT 'trading_worker_state_info', 'trading_worker_state_info',
           jsonb_build_object('endpoint', s.endpoint, 'worker_state', s.worker_state,
                              'session_state', s.session_state), s.info
    FROM @extschema@.metrics_worker_state s
    UNION ALL
    SELECT 'trading_worker_errors_total', 'trading_worker_errors_total',
           jsonb_build_object('endpoint', e.endpoint, 'error_type', e.error_type), e.total
    FROM @extschema@.metrics_worker_errors e
    UNION ALL
    SELECT 'trading_correlation_' || m.k, 'trading_correlation_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_correlation c,
         LATERAL (VALUES ('queue_depth', c.queue_depth), ('queue_capacity', c.queue_capacity),
                         ('enqueued_total', c.enqueued_total), ('dropped_total', c.dropped_total),
                         ('written_total', c.written_total)) AS m(k, v)
    UNION ALL
    SELECT 'trading_http_' || m.k, 'trading_http_' || m.k, '{}'::jsonb, m.v
    FROM @extschema@.metrics_http h,
         LATERAL (VALUES ('connections_opened_total', h.connections_opened_total),
                         ('requests_total', h.requests_total)) AS m(k, v)
)
SELECT s.name, s.labels, s.value, c.type, c.help
FROM samples s JOIN @extschema@.metrics_catalog c ON c.name = s.family;
COMMENT ON VIEW @extschema@.metrics IS
    'Every metric sample: name, labels, value, Prometheus type and help (histograms as _bucket/_sum/_count samples)';

-- The Prometheus text exposition (version 0.0.4) of trading.metrics.
CREATE FUNCTION @extschema@.metrics_prometheus() RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH m AS MATERIALIZED (
        SELECT CASE WHEN type = 'histogram'
                    THEN regexp_replace(name, '_(bucket|sum|count)$', '') ELSE name END AS family,
               name, labels, value, type, help
        FROM @extschema@.metrics
    ), lines AS (
        SELECT family,
               name || coalesce('{' || (SELECT string_agg(format('%s="%s"', key,
                                                 replace(replace(replace(value, E'\\', E'\\\\'),
                                                                 '"', E'\\"'), E'\n', E'\\n')),
                                                 ',' ORDER BY key = 'le', key)
                                        FROM jsonb_each_text(labels)) || '}', '')
               || ' ' ||
               CASE WHEN value = 'Infinity' THEN '+Inf'
                    WHEN value = '-Infinity' THEN '-Inf'
                    WHEN value = 'NaN' THEN 'NaN'
                    ELSE value::text END AS line,
               (labels - 'le')::text AS series,
               CASE WHEN name LIKE '%\_bucket' THEN 0 WHEN name LIKE '%\_sum' THEN 1 ELSE 2 END AS part,
               (labels ->> 'le')::float8 AS le
        FROM m
    ), families AS (
        SELECT DISTINCT family, type, help FROM m
    )
    SELECT coalesce(string_agg(
               format(E'# HELP %s %s\n# TYPE %s %s\n', f.family,
                      replace(replace(f.help, E'\\', E'\\\\'), E'\n', E'\\n'), f.family, f.type)
               || (SELECT string_agg(l.line || E'\n', '' ORDER BY l.series, l.part, l.le)
                   FROM lines l WHERE l.family = f.family),
               '' ORDER BY f.family), '')
    FROM families f
$fn$;
COMMENT ON FUNCTION @extschema@.metrics_prometheus() IS
    'Every metric of trading.metrics in the Prometheus text exposition format';

GRANT SELECT ON @extschema@.metrics_catalog, @extschema@.metrics TO trading_reader;
GRANT EXECUTE ON FUNCTION @extschema@.metrics_prometheus() TO trading_reader;
-- trading.validate_config(): one row per check of the deployment (ok,
-- detail, hint), for DBAs to run after every change (docs/LOAD_BALANCER_SETUP.md).
-- A check whose capability is not installed reports ok = false with
-- "not available" rather than failing; nothing here shows a secret (the
-- key command's value and paths stay in extension/validate.c).  Works on a
-- standby: it only reads.

CREATE FUNCTION @extschema@._validate_server(OUT check_name text, OUT ok boolean,
                                                 OUT detail text, OUT hint text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'trading_validate_server';

CREATE FUNCTION @extschema@.validate_config(OUT check_name text, OUT ok boolean,
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

    -- settings that matter behind PgBouncer in transaction pooling mode
    check_name := 'pgbouncer_safe_settings';
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
    detail := CASE WHEN ok THEN format('idle_in_transaction_session_timeout = %s, SCRAM passwords, no prepared transactions%s',
                                       current_setting('idle_in_transaction_session_timeout'),
                                       CASE WHEN EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
                                                         WHERE ns.nspname = 'pgbouncer' AND p.proname = 'get_auth')
                                            THEN ', auth function pgbouncer.get_auth is locked down' ELSE '' END)
                   ELSE missing END;
    hint := CASE WHEN ok THEN NULL
                 ELSE 'Apply deploy/postgresql.common.conf and deploy/pgbouncer_auth.sql (docs/LOAD_BALANCER_SETUP.md).' END;
    RETURN NEXT;

    -- the exporter's role: a login member of trading_reader that can read every exporter view
    check_name := 'exporter_grants';
    SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO missing
      FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE ns.nspname = '@extschema@' AND c.relkind = 'v' AND c.relname LIKE 'metrics%'
       AND NOT has_table_privilege('trading_reader', c.oid, 'SELECT');
    SELECT count(*) INTO n FROM pg_roles r
     WHERE r.rolcanlogin AND NOT r.rolsuper
       AND pg_has_role(r.oid, 'trading_reader', 'MEMBER')
       AND NOT pg_has_role(r.oid, 'trading_admin', 'MEMBER')
       AND has_database_privilege(r.oid, current_database(), 'CONNECT');
    SELECT count(*) INTO m FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE ns.nspname = '@extschema@' AND c.relkind = 'v' AND c.relname LIKE 'metrics%';
    ok := missing IS NULL AND n > 0 AND m > 0;
    detail := CASE
        WHEN m = 0 THEN 'the metrics views are not available'
        WHEN missing IS NOT NULL THEN format('trading_reader cannot read: %s', missing)
        WHEN n = 0 THEN 'no login role (other than superusers and trading_admin members) is a member of trading_reader'
        ELSE format('%s login role%s can read all %s metrics views through trading_reader', n,
                    CASE WHEN n = 1 THEN '' ELSE 's' END, m) END;
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

GRANT EXECUTE ON FUNCTION @extschema@._validate_server() TO trading_admin;
GRANT EXECUTE ON FUNCTION @extschema@.validate_config() TO trading_admin;
-- Nothing in the extension is executable by PUBLIC: every function was
-- granted explicitly to the role that needs it in its module's file.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;

-- Rate limiter, 1.1: the SQL functions call the C symbols of the limiter's
-- one spelling (ratelimit_sql_*).  The 1.0 symbols stay in the library
-- (extension/compat_1_0.c) for 1.0 installs that have not been updated yet
-- (docs/DEVELOPING.md).  Run by
-- both the install script and the upgrade from 1.0.

CREATE OR REPLACE FUNCTION @extschema@._rate_limits_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ratelimit_sql_changed';

CREATE OR REPLACE FUNCTION @extschema@.rate_limit_set(endpoint text, requests integer, per interval)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ratelimit_sql_set';

CREATE OR REPLACE FUNCTION @extschema@.rate_limit_drop(endpoint text, per interval DEFAULT NULL)
    RETURNS integer LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ratelimit_sql_drop';

CREATE OR REPLACE FUNCTION @extschema@.rate_limit_try(endpoint text, cost integer DEFAULT 1)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ratelimit_sql_try';

CREATE OR REPLACE FUNCTION @extschema@.rate_limit_acquire(endpoint text, cost integer DEFAULT 1,
                                                          timeout interval DEFAULT interval '10 seconds')
    RETURNS interval LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ratelimit_sql_acquire';

CREATE OR REPLACE FUNCTION @extschema@._rate_limit_status(
    OUT endpoint text, OUT requests integer, OUT per interval, OUT used integer,
    OUT remaining integer, OUT retry_after interval, OUT granted_total bigint,
    OUT refused_total bigint, OUT waited_seconds_total double precision,
    OUT waiting integer, OUT timeouts_total bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ratelimit_sql_status';

-- 1.1 names the C function of current_correlation_id() with its module's
-- prefix (the old symbol stays for 1.0: extension/compat_1_0.c).
CREATE OR REPLACE FUNCTION @extschema@.current_correlation_id()
    RETURNS uuid LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'correlation_current_id';

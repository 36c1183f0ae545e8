-- Installation, roles and privileges.
CREATE EXTENSION trading;

SELECT extname, extversion, extrelocatable, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'trading';

-- The four roles exist, cannot log in, and include each other.
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'trading\_%' ORDER BY 1;
SELECT pg_has_role('trading_admin', 'trading_trader', 'MEMBER') AS admin_is_trader,
       pg_has_role('trading_trader', 'trading_analyst', 'MEMBER') AS trader_is_analyst,
       pg_has_role('trading_analyst', 'trading_trader', 'MEMBER') AS analyst_is_trader,
       pg_has_role('trading_admin', 'trading_analyst', 'MEMBER') AS admin_is_analyst,
       pg_has_role('trading_analyst', 'trading_reader', 'MEMBER') AS analyst_is_reader,
       pg_has_role('trading_reader', 'trading_analyst', 'MEMBER') AS reader_is_analyst;

-- Nothing in the schema is executable by PUBLIC.
SELECT p.proname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'trading'
  AND has_function_privilege('public', p.oid, 'EXECUTE')
  AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
              WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');

-- Nor readable by PUBLIC.
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'trading'
  AND EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
              WHERE a.grantee = 0);

-- A SECURITY DEFINER function must pin its search_path.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'trading' AND p.prosecdef
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');

-- The GUC prefix is reserved: a misspelt setting is refused.
SET trading.no_such_setting = 1;

-- Test roles used by the other tests.
CREATE ROLE regress_trading_reader LOGIN IN ROLE trading_reader;
CREATE ROLE regress_trading_analyst LOGIN IN ROLE trading_analyst;
CREATE ROLE regress_trading_admin LOGIN IN ROLE trading_admin;
CREATE ROLE regress_trading_nobody LOGIN;
-- a second analyst: one analyst may not end another's operation
CREATE ROLE regress_trading_analyst2 LOGIN IN ROLE trading_analyst;

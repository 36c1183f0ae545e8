/*-------------------------------------------------------------------------
 *
 * compat_1_0.c
 *	  C entry points under the names version 1.0's SQL objects use.
 *
 * Version 1.1 renamed some SQL-callable C functions so that each carries
 * its module's prefix.  An installed 1.0 (before ALTER EXTENSION trading
 * UPDATE) still calls the old symbols, so each old name stays here as an
 * alias of the new function; the update points the SQL objects at the new
 * names (extension/versions/1.0--1.1/NN_<module>_symbols.sql).  Remove in
 * 2.0.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

/* correlation: current_correlation_id() */
extern PGDLLEXPORT Datum correlation_current_id(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(current_correlation_id);

Datum
current_correlation_id(PG_FUNCTION_ARGS)
{
	return correlation_current_id(fcinfo);
}

/* rate limiter: rate_limit_set, _drop, _try, _acquire, _rate_limit_status(), _rate_limits_changed() */
extern PGDLLEXPORT Datum ratelimit_sql_set(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum ratelimit_sql_drop(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum ratelimit_sql_try(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum ratelimit_sql_acquire(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum ratelimit_sql_status(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum ratelimit_sql_changed(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(rate_limit_set);
PG_FUNCTION_INFO_V1(rate_limit_drop);
PG_FUNCTION_INFO_V1(rate_limit_try);
PG_FUNCTION_INFO_V1(rate_limit_acquire);
PG_FUNCTION_INFO_V1(rate_limit_status);
PG_FUNCTION_INFO_V1(rate_limits_changed);

Datum
rate_limit_set(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_set(fcinfo);
}

Datum
rate_limit_drop(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_drop(fcinfo);
}

Datum
rate_limit_try(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_try(fcinfo);
}

Datum
rate_limit_acquire(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_acquire(fcinfo);
}

Datum
rate_limit_status(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_status(fcinfo);
}

Datum
rate_limits_changed(PG_FUNCTION_ARGS)
{
	return ratelimit_sql_changed(fcinfo);
}

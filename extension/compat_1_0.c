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

/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Settings that belong to the extension as a whole rather than to one
 *	  capability.  Module-specific settings are defined by the module's own
 *	  X_init(); all share the reserved prefix "trading." (see trading.c).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "utils/guc.h"

/*
 * The database that holds the extension's tables.  Shared state (rate
 * limits, correlation events, broker data) is cluster-wide, so exactly one
 * database owns it; the background workers connect there.
 */
char	   *trading_database = NULL;

/*
 * Where writes should go when this server is a standby, e.g. "the
 * read-write frontend at haproxy.example:5000"; quoted in the error hint.
 */
char	   *trading_primary_hint = NULL;

void
trading_guc_init(void)
{
	DefineCustomStringVariable("trading.database",
							   "Database that holds the trading extension's tables.",
							   "Shared state and background workers belong to this one database; "
							   "CREATE EXTENSION trading is refused elsewhere.",
							   &trading_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("trading.primary_hint",
							   "How clients reach the primary, quoted when a write is refused on a standby.",
							   NULL,
							   &trading_primary_hint,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}

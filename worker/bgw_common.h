/*-------------------------------------------------------------------------
 *
 * bgw_common.h
 *	  Start-up shared by the extension's background workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_BGW_COMMON_H
#define TRADING_BGW_COMMON_H

#include "port/atomics.h"
#include "utils/elog.h"

/*
 * The installed version of the extension in trading.database as a number
 * (1.0 -> 100, 1.1 -> 110), or 0 when it is not installed.  Runs its own
 * transaction.  A worker whose tables arrived in version V waits (naps and
 * checks again) while this is below V: after the binaries are upgraded
 * and before ALTER EXTENSION trading UPDATE, the new library serves a 1.0
 * install and must leave alone what 1.0 lacks.
 */
extern int	trading_bgw_extension_version(void);

/*
 * Run body(arg) as one unit of work: its own transaction with SPI and a
 * snapshot (activity shown in pg_stat_activity).  On error, roll back and
 * return the error, copied into the caller's memory context, instead of
 * raising it; NULL on success.  Never call it inside a transaction.
 */
extern ErrorData *trading_bgw_run_xact(const char *activity,
									   void (*body) (void *arg), void *arg);

/*
 * Connect to trading.database.  database_seen is a flag in the caller's
 * shared memory, initialised to 1.  If the database does not exist, the
 * connection attempt is FATAL and the postmaster restarts the worker; the
 * flag is then 0, so the restarted worker waits without a connection
 * (one log line, a catalog scan a second) until the database appears, then
 * exits to be restarted and connect.  No crash loop, no log flood.
 */
extern void trading_bgw_connect(pg_atomic_uint32 *database_seen,
								const char *worker_name);

/*
 * One unit of work in its own transaction, with SPI and a snapshot:
 * trading_bgw_begin_xact(activity) ... trading_bgw_commit_xact().  The
 * activity is what pg_stat_activity shows meanwhile.
 */
extern void trading_bgw_begin_xact(const char *activity);
extern void trading_bgw_commit_xact(void);

/*
 * Sleep up to ms on the process latch (woken early by SetLatch), exiting
 * if the postmaster dies; then handle interrupts and a pending SIGHUP.
 */
extern void trading_bgw_nap(long ms);

#endif

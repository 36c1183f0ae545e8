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

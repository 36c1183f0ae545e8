/*-------------------------------------------------------------------------
 *
 * bgw_common.h
 *	  The lifecycle kit of the extension's background workers: one way
 *	  each to connect, check the installed version, run a guarded unit of
 *	  work, nap with reload, and clean up at exit.
 *
 * A worker's main function reads top to bottom through it:
 *
 *	  trading_bgw_on_exit(clear_my_shared_state);
 *	  trading_bgw_connect(&shared->database_seen, "trading foo worker");
 *	  for (;;)
 *	  {
 *		  if (trading_bgw_nap(nap_ms))
 *			  ... apply this worker's reload side effects ...
 *		  if (trading_bgw_extension_version() < 110)
 *			  { nap_ms = 5000; continue; }	   (log the wait once)
 *		  err = trading_bgw_run_xact("doing foo", do_foo, &state);
 *		  ...
 *	  }
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_BGW_COMMON_H
#define TRADING_BGW_COMMON_H

#include "port/atomics.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

/* the search_path every worker session runs with (see trading_bgw_connect) */
#define TRADING_BGW_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * Set up the signals (SIGTERM: die, SIGHUP: reload at the next nap), unblock
 * them, connect to trading.database, and show worker_name as the
 * application name.  The session's search_path is pinned to
 * TRADING_BGW_SEARCH_PATH at a priority above ALTER DATABASE / ALTER ROLE
 * settings and the configuration file, so no one can make a worker's SQL
 * resolve a name in a schema they can write to.
 *
 * database_seen is a flag in the caller's shared memory, initialised to 1,
 * or NULL for a worker that is never restarted (then a missing database is
 * simply FATAL).  If the database does not exist, the connection attempt is
 * FATAL and the postmaster restarts the worker; the flag is then 0, so the
 * restarted worker waits without a connection (one log line, a catalog
 * scan a second) until the database appears, then exits to be restarted and
 * connect.  No crash loop, no log flood.
 */
extern void trading_bgw_connect(pg_atomic_uint32 *database_seen,
								const char *worker_name);

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
 * One unit of work in its own transaction, with SPI and a snapshot:
 * trading_bgw_begin_xact(activity) ... trading_bgw_commit_xact(), or
 * trading_bgw_abort_xact() to roll it back (also after an error was caught).
 * The activity is what pg_stat_activity shows meanwhile.
 */
extern void trading_bgw_begin_xact(const char *activity);
extern void trading_bgw_commit_xact(void);
extern void trading_bgw_abort_xact(void);

/*
 * Run body(arg) as one unit of work (begin ... commit).  On error, roll
 * back and return the error, copied into the caller's memory context,
 * instead of raising it; NULL on success.  Never call it inside a
 * transaction.
 */
extern ErrorData *trading_bgw_run_xact(const char *activity,
									   void (*body) (void *arg), void *arg);

/*
 * Inside a unit of work: run body(arg) in a subtransaction.  On error, roll
 * the subtransaction back and return the error (copied into the caller's
 * memory context); the unit of work goes on.  NULL on success.
 */
extern ErrorData *trading_bgw_run_subxact(void (*body) (void *arg), void *arg);

/* Is this error about the data (classes 21, 22, 23) rather than the system? */
extern bool trading_bgw_data_error(const ErrorData *edata);

/*
 * Sleep up to ms on the process latch (woken early by SetLatch; ms <= 0:
 * do not sleep), exiting if the postmaster dies; then handle interrupts and
 * a pending SIGHUP.  Returns true when the configuration was reloaded, so
 * the worker can apply its own side effects of a reload.
 */
extern bool trading_bgw_nap(long ms);

/*
 * For a worker that waits on sockets of its own instead of napping: handle
 * a pending SIGHUP now.  Returns true when the configuration was reloaded.
 */
extern bool trading_bgw_reload(void);

/* When this worker process started. */
extern TimestampTz trading_bgw_start_time(void);

/*
 * Call hook() when the worker exits (normally, by error or by SIGTERM),
 * while shared memory is still attached: the place to clear the worker's
 * pid and latch from its module's shared state.  One hook per worker.
 */
extern void trading_bgw_on_exit(void (*hook) (void));

#endif

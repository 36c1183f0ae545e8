/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  The public C interface of the cluster-wide rate limiter, for the
 *	  extension's background workers (broker polling, the order outbox,
 *	  market data) and anything else in C that talks to the broker.
 *
 * What a limit means, how SQL callers wait, and the fairness policy
 * between workers and SQL callers are described in docs/RATE_LIMITER.md.
 * The shared structures and the limiter's internals are private
 * (ratelimit_int.h); nothing outside extension/ratelimit*.c takes the
 * limiter's locks.
 *
 * Callers of this interface are "workers": their grants have priority over
 * SQL callers (rate_limit_try / rate_limit_acquire).  A refused worker
 * request reserves the endpoint's next free units for a moment, so SQL
 * callers cannot starve the workers (docs/RATE_LIMITER.md, "Fairness").
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_RATELIMIT_H
#define TRADING_RATELIMIT_H

#include "datatype/timestamp.h"

/* Longest endpoint name in bytes (without the NUL). */
#define RATELIMIT_MAX_NAME		63

/* Outcome of a grant attempt. */
typedef enum RateLimitResult
{
	RATELIMIT_GRANTED,
	RATELIMIT_REFUSED,
	RATELIMIT_UNKNOWN_ENDPOINT,
	RATELIMIT_BAD_COST			/* cost < 1 or above some limit's n */
} RateLimitResult;

/*
 * Take cost units of endpoint now, as a worker (priority over SQL callers).
 *
 * margin_us >= 0 keeps a margin against jitter: the request is granted only
 * if it would also have been granted margin_us ago, so a broker that sees
 * requests a little later and unevenly never counts more than the limit in
 * its window.  Pass 0 for no margin.
 *
 * On RATELIMIT_REFUSED, *retry_after_us (if not NULL) is how long to wait
 * before trying again (at least 1 ms); on RATELIMIT_BAD_COST it is the
 * smallest n of the endpoint.  Never raises an error, never waits, needs
 * no transaction and takes one spinlock for a few instructions: call it
 * from an event loop.  It uses the configuration as last synchronised
 * (ratelimit_sync).
 */
extern RateLimitResult ratelimit_try(const char *endpoint, int cost,
									 int64 margin_us, int64 *retry_after_us);

/* How ratelimit_sync treats a trading.rate_limits locked by another transaction. */
typedef enum RateLimitSyncMode
{
	RATELIMIT_SYNC_WAIT,		/* wait for the table (interruptibly) */
	RATELIMIT_SYNC_NOWAIT,		/* give up at once; the old limits stay */
	RATELIMIT_SYNC_FORCE		/* re-read even if nothing changed; waits */
} RateLimitSyncMode;

/*
 * Bring shared memory in line with trading.rate_limits if the table changed
 * since the last synchronisation.  Needs a transaction.  Raises an error if
 * the table's contents exceed the configured bounds (nothing is applied
 * then; the limits last applied stay in force).  Returns false only in
 * NOWAIT mode, when the table was locked and nothing was done: try again
 * later.  Workers use NOWAIT, so that a transaction holding the table
 * cannot stop them; no limiter lock is held while the table is read.
 */
extern bool ratelimit_sync(RateLimitSyncMode mode);

/* True if the table changed since the last synchronisation (cheap). */
extern bool ratelimit_sync_needed(void);

/*
 * Record n past grants of one unit each, sent at the given wall-clock
 * times, in every limit of endpoint, as if they had been granted then
 * (converted to the limiter's monotonic time base).  Times outside a
 * limit's window, or in the future, are skipped; grants already recorded
 * are kept, and only the newest n of each limit survive.  For rebuilding
 * budgets on a node that has no state (a new primary).  Needs no
 * transaction; allocates, so call it outside any limiter lock (it takes
 * none of the caller's).  Returns false if the endpoint is unknown.
 */
extern bool ratelimit_seed_grants(const char *endpoint,
								  const TimestampTz *sent, int n);

/*
 * Called once by a worker when it first runs as primary (after start-up or
 * promotion), inside a transaction: rebuilds the day and minute windows of
 * kite.orders from trading.order_requests (placements sent within the last
 * day), unless this node's windows already hold state (restored at start).
 * Does nothing when that table does not exist (installed version < 1.1).
 * Returns the number of grants seeded.
 */
extern int	ratelimit_rebuild_order_windows(void);

#endif							/* TRADING_RATELIMIT_H */

/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  The cluster-wide rate limiter: shared structures (ratelimit.c) and
 *	  the C interface used by the SQL functions (ratelimit_sql.c) and by
 *	  the broker worker.
 *
 * Semantics: a limit is "at most N requests in any sliding window of
 * length P".  An endpoint carries up to RL_MAX_LIMITS limits; a request of
 * cost c is granted only if every limit allows c more, and a refused request
 * consumes nothing.  The state is exact: each limit keeps the timestamps of
 * its last N granted units in a ring, so "allowed" means the c-th oldest of
 * those N timestamps has left the window.
 *
 * See ratelimit.c for the locking rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_RATELIMIT_H
#define TRADING_RATELIMIT_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#define RL_MAX_LIMITS		8		/* limits per endpoint */
#define RL_NAME_LEN			64		/* endpoint name, including the NUL */
#define RL_MAX_PER_US		((int64) 31 * 24 * 3600 * 1000000)	/* 31 days */

/* One limit: a ring of the timestamps (us) of the last n granted units. */
typedef struct RateLimit
{
	int64		per_us;			/* window length */
	int32		n;				/* at most n units per window */
	int32		count;			/* timestamps recorded so far (<= n) */
	int32		next;			/* ring index of the next write */
	int64		offset;			/* ring start in RateLimiterShared.slots */
} RateLimit;

typedef struct RateEndpoint
{
	/* the hot path touches only this first cache line and the rings */
	slock_t		mutex;			/* protects everything below */
	bool		in_use;
	bool		reconfiguring;	/* limits being rebuilt: refuse, don't count */
	int			nlimits;
	uint32		generation;		/* bumped whenever the slot is (re)used */
	int			queue_len;		/* procs waiting in rate_limit_acquire */
	int64		newest;			/* newest timestamp recorded in any ring */
	uint64		granted_total;	/* statistics since the endpoint was */
	uint64		refused_total;	/* created or the server started */
	RateLimit	limits[RL_MAX_LIMITS];

	/* FIFO of procs waiting in rate_limit_acquire (pgprocno, -1 = none) */
	int			queue_head;
	int			queue_tail;
	uint64		timeouts_total;
	int64		waited_us_total;
	char		name[RL_NAME_LEN];
} RateEndpoint;

typedef struct RateLimiterShared
{
	LWLock	   *lock;			/* serialises configuration changes */
	pg_atomic_uint64 config_gen;	/* bumped when the limits table changed */
	pg_atomic_uint64 applied_gen;	/* config_gen that shared memory reflects */
	int			max_endpoints;
	int			nprocs;
	int64		nslots;			/* size of slots[] */
	int64		slots_used;		/* bump pointer; guarded by lock */
	int64	   *slots;			/* ring storage */
	int		   *wait_next;		/* per pgprocno: next waiter in its queue */
	RateEndpoint endpoints[FLEXIBLE_ARRAY_MEMBER];
} RateLimiterShared;

extern RateLimiterShared *rl_shared;

/* Outcome of a grant attempt; never raises an error. */
typedef enum RateLimitResult
{
	RL_GRANTED,
	RL_REFUSED,
	RL_UNKNOWN_ENDPOINT,
	RL_BAD_COST					/* cost < 1 or above some limit's n */
} RateLimitResult;

/*
 * Try to take cost units from endpoint now.  On RL_REFUSED, *retry_after_us
 * (if not NULL) is the time until the request could be granted, ignoring
 * other callers; on RL_BAD_COST it is the smallest n of the endpoint.  Does
 * not error and does not need a transaction, so the worker can call it from
 * its event loop; it uses the configuration as last synchronised.
 */
extern RateLimitResult ratelimit_try(const char *endpoint, int cost,
									 int64 *retry_after_us);

extern RateLimitResult ratelimit_try_ext(const char *endpoint, int cost,
										 int64 *retry_after_us,
										 bool count_refusal);

/*
 * Bring shared memory in line with trading.rate_limits if the table changed
 * since the last synchronisation (or always, when force).  Needs a
 * transaction; raises an error if the table's contents exceed the
 * configured bounds.
 */
extern void ratelimit_sync(bool force);

/* Same as ratelimit_sync(false), but cheap when nothing changed. */
static inline void
ratelimit_ensure_synced(void)
{
	if (pg_atomic_read_u64(&rl_shared->config_gen) !=
		pg_atomic_read_u64(&rl_shared->applied_gen))
		ratelimit_sync(false);
}

/* ratelimit_persist.c: restore saved windows, save them at shutdown */
extern void ratelimit_persist_startup(void);

/* Internal helpers shared by ratelimit.c and ratelimit_sql.c. */
extern int	rl_lookup(const char *name, uint32 *generation);
extern void rl_forget(const char *name);
extern int64 rl_clamp_now(RateEndpoint *ep, int64 now);
extern bool rl_allowed(RateEndpoint *ep, int cost, int64 now,
					   int64 *retry_after_us);
extern void rl_record(RateEndpoint *ep, int cost, int64 now);
extern int	rl_min_n(RateEndpoint *ep);
extern int32 rl_used(RateLimit *lim, int64 now, int64 *oldest_in_window);
extern void rl_mark_changed(void);
extern void rl_wake(int procno);

#endif							/* TRADING_RATELIMIT_H */

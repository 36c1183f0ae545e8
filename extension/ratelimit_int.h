/*-------------------------------------------------------------------------
 *
 * ratelimit_int.h
 *	  Internals of the rate limiter shared by ratelimit.c (shared memory,
 *	  the window check, grants, synchronisation with trading.rate_limits),
 *	  ratelimit_sql.c (the SQL functions and the wait queue),
 *	  ratelimit_seed.c (rebuilding windows from recorded sends) and
 *	  ratelimit_persist.c (the restart state file).  Nothing else may
 *	  include it: other modules use ratelimit.h.
 *
 * Locking rules: see ratelimit.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_RATELIMIT_INT_H
#define TRADING_RATELIMIT_INT_H

#include "ratelimit.h"

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#define RATELIMIT_MAX_LIMITS	8	/* limits per endpoint */
#define RATELIMIT_NAME_LEN		(RATELIMIT_MAX_NAME + 1)	/* with the NUL */
#define RATELIMIT_MAX_PER_US	((int64) 31 * 24 * 3600 * 1000000)	/* 31 days */

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
	bool		queue_holds;	/* the head of the queue holds later SQL
								 * callers */
	int			nlimits;
	uint32		generation;		/* bumped whenever the slot is (re)used */
	int			queue_len;		/* procs waiting in rate_limit_acquire */
	int64		newest;			/* newest timestamp recorded in any ring */
	int64		worker_until;	/* SQL callers yield to workers until then */
	uint64		granted_total;	/* statistics since the endpoint was */
	uint64		refused_total;	/* created or the server started */
	RateLimit	limits[RATELIMIT_MAX_LIMITS];

	/* FIFO of procs waiting in rate_limit_acquire (pgprocno, -1 = none) */
	int			queue_head;
	int			queue_tail;
	uint64		timeouts_total;
	int64		waited_us_total;
	char		name[RATELIMIT_NAME_LEN];
} RateEndpoint;

typedef struct RateLimiterShared
{
	LWLock	   *lock;			/* serialises configuration changes */
	pg_atomic_uint64 config_gen;	/* bumped when the limits table changed */
	pg_atomic_uint64 applied_gen;	/* config_gen that shared memory reflects */
	pg_atomic_uint32 orders_rebuilt;	/* kite.orders rebuilt from the record */
	int			max_endpoints;
	int			nprocs;
	int64		nslots;			/* size of slots[] */
	int64		slots_used;		/* bump pointer; guarded by lock */
	int64	   *slots;			/* ring storage */
	int		   *wait_next;		/* per pgprocno: next waiter in its queue */
	RateEndpoint endpoints[FLEXIBLE_ARRAY_MEMBER];
} RateLimiterShared;

extern RateLimiterShared *ratelimit_shared;

/* ratelimit_grant() flags */
#define RATELIMIT_COUNT_REFUSAL	0x01	/* a refusal counts in refused_total */
#define RATELIMIT_WORKER		0x02	/* a worker: priority over SQL callers */

/*
 * How long SQL callers yield to a refused worker request beyond the time
 * it was told to retry after (it comes back a little late).
 */
#define RATELIMIT_WORKER_SLACK_US	100000

extern RateLimitResult ratelimit_grant(const char *endpoint, int cost,
									   int64 margin_us, int flags,
									   int64 *retry_after_us);

/* Lookup through the backend-local cache; see ratelimit.c. */
extern int	ratelimit_lookup(const char *name, uint32 *generation);
extern void ratelimit_forget(const char *name);

/* The window check; all of these run under the endpoint mutex. */
extern int64 ratelimit_clamp_now(RateEndpoint *ep, int64 now);
extern bool ratelimit_allowed(RateEndpoint *ep, int cost, int64 now,
							  int64 *retry_after_us);
extern void ratelimit_record(RateEndpoint *ep, int cost, int64 now);
extern int	ratelimit_min_n(RateEndpoint *ep);
extern int64 ratelimit_min_per(RateEndpoint *ep);
extern int32 ratelimit_used(RateLimit *lim, int64 now, int64 *oldest_in_window);

extern void ratelimit_mark_changed(void);
extern void ratelimit_wake(int procno);

/* ratelimit_persist.c: restore saved windows, save them at shutdown */
extern void ratelimit_persist_startup(void);

#endif							/* TRADING_RATELIMIT_INT_H */

/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  The cluster-wide rate limiter's shared state: layout, the exact
 *	  sliding-window check, the endpoint lookup cache, and synchronisation
 *	  of shared memory with the trading.rate_limits table.
 *
 * Shared memory ("trading.ratelimit") holds a fixed array of endpoints
 * (trading.rate_limit_max_endpoints), a pool of int64 timestamp slots
 * (trading.rate_limit_slots) from which each limit takes a ring of n slots,
 * and one wait-queue link per PGPROC.
 *
 * Locking rules
 * -------------
 * - No LWLock or spinlock of the limiter is ever held across SPI, catalog
 *   access, memory allocation, I/O, or anything else that can wait or raise
 *   an error.  Work that can fail happens before a lock is taken; what runs
 *   under a lock cannot fail, so no flag (reconfiguring) is ever left set.
 * - The hot path (a grant attempt) takes exactly one spinlock: the mutex of
 *   its endpoint.  Under it, it checks every limit (one ring lookup each)
 *   and writes c timestamps per limit.  Endpoints never share a lock.
 * - RateEndpoint fields, and the rings its limits point to, are read and
 *   written only under that endpoint's mutex.  The exceptions are in_use,
 *   nlimits and each limit's n, per_us and offset: they change only while
 *   the LWLock is held exclusively *and* the mutex is held, so a holder of
 *   either may read them.  wait_next[p] is protected by the mutex of the
 *   endpoint whose queue p is in.
 * - Configuration changes (ratelimit_sync) read trading.rate_limits into
 *   local memory first, with no lock of the limiter held (the read may wait
 *   for a table lock, interruptibly), then take ratelimit_shared->lock
 *   exclusively to apply the result, which serialises them against each
 *   other; they modify an endpoint under its mutex as well, so the hot path
 *   never needs the LWLock.  The slot pool (slots_used, compaction) is only
 *   touched under the LWLock; compaction moves one ring at a time while
 *   holding that ring's endpoint mutex.
 * - Backends find an endpoint through a backend-local cache of (name ->
 *   index, generation); the generation, checked under the mutex, detects a
 *   slot that was dropped or reused since the cache entry was made.  The
 *   slow path scans the array under the LWLock in shared mode.
 * - config_gen / applied_gen are atomics: a transaction that modified
 *   trading.rate_limits bumps config_gen at commit or abort, and the next
 *   caller that sees the two differ re-reads the table (ratelimit_sync).
 *
 * Time is CLOCK_MONOTONIC in microseconds.  The hot path reads it just
 * before taking the mutex and, under the mutex, raises it to the newest
 * recorded timestamp if another backend got in between
 * (ratelimit_clamp_now), so the timestamps of each ring are non-decreasing and check and record use
 * one consistent time.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit_int.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

RateLimiterShared *ratelimit_shared = NULL;

static int	ratelimit_max_endpoints = 64;
static int	ratelimit_nslots = 262144;

/* backend-local cache: endpoint name -> array index and generation */
typedef struct RateLimitCacheEntry
{
	char		name[RATELIMIT_NAME_LEN];
	int			index;
	uint32		generation;
} RateLimitCacheEntry;

static HTAB *ratelimit_cache = NULL;
static RateLimitCacheEntry *ratelimit_last = NULL;	/* the entry found last */

/* this transaction modified trading.rate_limits */
static bool ratelimit_xact_dirty = false;
static bool ratelimit_callbacks_registered = false;

static Size
ratelimit_shmem_size(void)
{
	Size		size;

	size = offsetof(RateLimiterShared, endpoints);
	size = add_size(size, mul_size(ratelimit_max_endpoints, sizeof(RateEndpoint)));
	size = MAXALIGN(size);
	size = add_size(size, mul_size(ratelimit_nslots, sizeof(int64)));
	size = add_size(size, mul_size(MaxBackends + NUM_AUXILIARY_PROCS, sizeof(int)));
	return size;
}

void
ratelimit_init(void)
{
	DefineCustomIntVariable("trading.rate_limit_max_endpoints",
							"Maximum number of rate-limited endpoints.",
							NULL,
							&ratelimit_max_endpoints,
							64, 1, 10000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.rate_limit_slots",
							"Timestamp slots shared by all rate limits (8 bytes each).",
							"A limit of N requests per window uses N slots.",
							&ratelimit_nslots,
							262144, 1024, 134217728,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
}

void
ratelimit_shmem_request(void)
{
	RequestAddinShmemSpace(ratelimit_shmem_size());
	RequestNamedLWLockTranche("trading.ratelimit", 1);
}

void
ratelimit_shmem_startup(void)
{
	bool		found;
	char	   *base;

	ratelimit_shared = ShmemInitStruct("trading.ratelimit", ratelimit_shmem_size(),
									   &found);
	if (found)
		return;

	memset(ratelimit_shared, 0, offsetof(RateLimiterShared, endpoints));
	ratelimit_shared->lock = &(GetNamedLWLockTranche("trading.ratelimit"))->lock;
	pg_atomic_init_u64(&ratelimit_shared->config_gen, 1);
	pg_atomic_init_u64(&ratelimit_shared->applied_gen, 0);
	ratelimit_shared->max_endpoints = ratelimit_max_endpoints;
	ratelimit_shared->nprocs = MaxBackends + NUM_AUXILIARY_PROCS;
	ratelimit_shared->nslots = ratelimit_nslots;
	ratelimit_shared->slots_used = 0;

	base = (char *) ratelimit_shared;
	base += MAXALIGN(offsetof(RateLimiterShared, endpoints) +
					 ratelimit_max_endpoints * sizeof(RateEndpoint));
	ratelimit_shared->slots = (int64 *) base;
	base += ratelimit_nslots * sizeof(int64);
	ratelimit_shared->wait_next = (int *) base;

	for (int i = 0; i < ratelimit_max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];

		memset(ep, 0, sizeof(RateEndpoint));
		SpinLockInit(&ep->mutex);
		ep->queue_head = ep->queue_tail = -1;
	}
	for (int i = 0; i < ratelimit_shared->nprocs; i++)
		ratelimit_shared->wait_next[i] = -1;

	/* windows saved at the last clean shutdown (ratelimit_persist.c) */
	ratelimit_persist_startup();
}

/* ---------------------------------------------------------------------
 * The sliding-window check.  All of these run under the endpoint mutex.
 * ---------------------------------------------------------------------
 */

/* Timestamp of the k-th oldest (1-based) of the recorded units. */
static inline int64
ratelimit_kth_oldest(RateLimit *lim, int k)
{
	int64	   *ring = ratelimit_shared->slots + lim->offset;
	int			oldest = (lim->next - lim->count + lim->n) % lim->n;

	return ring[(oldest + k - 1) % lim->n];
}

/*
 * A time read before the mutex was taken may be older than the newest
 * timestamp already recorded: use the newer one, so rings stay ordered.
 */
int64
ratelimit_clamp_now(RateEndpoint *ep, int64 now)
{
	return Max(now, ep->newest);
}

/*
 * Can cost more units be granted at time now?  With the last n units' times
 * e_1 <= ... <= e_n, the window (now - per, now] may hold at most n - cost
 * of them, i.e. the k-th oldest, k = count + cost - n, must lie outside.
 */
bool
ratelimit_allowed(RateEndpoint *ep, int cost, int64 now, int64 *retry_after_us)
{
	bool		ok = true;
	int64		wait = 0;

	for (int i = 0; i < ep->nlimits; i++)
	{
		RateLimit  *lim = &ep->limits[i];
		int			k = lim->count + cost - lim->n;
		int64		t;

		if (k <= 0)
			continue;
		t = ratelimit_kth_oldest(lim, k);
		if (t > now - lim->per_us)
		{
			ok = false;
			wait = Max(wait, t + lim->per_us - now);
		}
	}
	if (retry_after_us)
		*retry_after_us = wait;
	return ok;
}

void
ratelimit_record(RateEndpoint *ep, int cost, int64 now)
{
	for (int i = 0; i < ep->nlimits; i++)
	{
		RateLimit  *lim = &ep->limits[i];
		int64	   *ring = ratelimit_shared->slots + lim->offset;

		for (int c = 0; c < cost; c++)
		{
			ring[lim->next] = now;
			if (++lim->next == lim->n)
				lim->next = 0;
		}
		lim->count = Min(lim->count + cost, lim->n);
	}
	ep->newest = now;
}

int64
ratelimit_min_per(RateEndpoint *ep)
{
	int64		m = PG_INT64_MAX;

	for (int i = 0; i < ep->nlimits; i++)
		m = Min(m, ep->limits[i].per_us);
	return m;
}

int
ratelimit_min_n(RateEndpoint *ep)
{
	int			m = INT_MAX;

	for (int i = 0; i < ep->nlimits; i++)
		m = Min(m, ep->limits[i].n);
	return m;
}

/*
 * Units granted in the window (now - per, now]; binary search over the ring,
 * whose timestamps are non-decreasing from oldest to newest.  Also returns
 * the oldest timestamp inside the window (or 0).
 */
int32
ratelimit_used(RateLimit *lim, int64 now, int64 *oldest_in_window)
{
	int			lo = 1,
				hi = lim->count + 1;

	/* find the first k (1-based) whose timestamp is inside the window */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (ratelimit_kth_oldest(lim, mid) > now - lim->per_us)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (oldest_in_window)
		*oldest_in_window = (lo <= lim->count) ? ratelimit_kth_oldest(lim, lo) : 0;
	return lim->count - lo + 1;
}

void
ratelimit_wake(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* ---------------------------------------------------------------------
 * Lookup.
 * ---------------------------------------------------------------------
 */

static void
ratelimit_cache_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = RATELIMIT_NAME_LEN;
	ctl.entrysize = sizeof(RateLimitCacheEntry);
	ctl.hcxt = TopMemoryContext;
	ratelimit_cache = hash_create("trading rate limit cache", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Index of the endpoint called name, or -1.  *generation is the slot's
 * generation when found; the caller re-checks it under the mutex and calls
 * ratelimit_forget() and retries once if it changed.
 */
int
ratelimit_lookup(const char *name, uint32 *generation)
{
	RateLimitCacheEntry *ce;
	int			found = -1;
	bool		hit;

	if (strlen(name) >= RATELIMIT_NAME_LEN)
		return -1;
	/* most callers use one endpoint over and over */
	if (ratelimit_last && strcmp(ratelimit_last->name, name) == 0)
	{
		*generation = ratelimit_last->generation;
		return ratelimit_last->index;
	}
	if (ratelimit_cache == NULL)
		ratelimit_cache_init();

	ce = hash_search(ratelimit_cache, name, HASH_FIND, NULL);
	if (ce)
	{
		ratelimit_last = ce;
		*generation = ce->generation;
		return ce->index;
	}

	LWLockAcquire(ratelimit_shared->lock, LW_SHARED);
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];

		SpinLockAcquire(&ep->mutex);
		if (ep->in_use && strcmp(ep->name, name) == 0)
		{
			found = i;
			*generation = ep->generation;
		}
		SpinLockRelease(&ep->mutex);
		if (found >= 0)
			break;
	}
	LWLockRelease(ratelimit_shared->lock);

	if (found >= 0)
	{
		ce = hash_search(ratelimit_cache, name, HASH_ENTER, &hit);
		ce->index = found;
		ce->generation = *generation;
		ratelimit_last = ce;
	}
	return found;
}

void
ratelimit_forget(const char *name)
{
	ratelimit_last = NULL;
	if (ratelimit_cache && strlen(name) < RATELIMIT_NAME_LEN)
		hash_search(ratelimit_cache, name, HASH_REMOVE, NULL);
}

/*
 * The public try: a worker's request (priority over SQL callers, see
 * ratelimit_grant), counted as a refusal when refused.
 */
RateLimitResult
ratelimit_try(const char *endpoint, int cost, int64 margin_us,
			  int64 *retry_after_us)
{
	RateLimitResult r;
	int64		wait = 0;

	r = ratelimit_grant(endpoint, cost, Max(margin_us, 0),
						RATELIMIT_WORKER | RATELIMIT_COUNT_REFUSAL, &wait);
	if (r == RATELIMIT_REFUSED && wait <= 0)
		wait = 1000;
	if (retry_after_us)
		*retry_after_us = wait;
	return r;
}

/*
 * One grant attempt under the endpoint's mutex.  flags: RATELIMIT_WORKER
 * for a worker, whose request passes SQL waiters and, when refused,
 * reserves the next free units (worker_until) so that SQL callers cannot
 * take them first; RATELIMIT_COUNT_REFUSAL to count a refusal (not for
 * rate_limit_acquire's first attempt, which goes on to wait).  An SQL
 * caller is refused while a worker's reservation runs or while the head of
 * the acquire queue holds the queue (queue_holds).  The request must also
 * have been allowed margin_us ago.
 */
RateLimitResult
ratelimit_grant(const char *endpoint, int cost, int64 margin_us, int flags,
				int64 *retry_after_us)
{
	bool		worker = (flags & RATELIMIT_WORKER) != 0;
	int			count_refusal = (flags & RATELIMIT_COUNT_REFUSAL) ? 1 : 0;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		uint32		gen;
		int			idx = ratelimit_lookup(endpoint, &gen);
		RateEndpoint *ep;
		RateLimitResult result;
		int64		wait = 0;
		int64		now;

		if (idx < 0)
			return RATELIMIT_UNKNOWN_ENDPOINT;
		ep = &ratelimit_shared->endpoints[idx];

		/*
		 * Read the clock before taking the lock, to keep the lock short.
		 * Another backend may have recorded a later time meanwhile; using the
		 * later of the two keeps every ring ordered (ratelimit_clamp_now).
		 */
		now = trading_monotonic_us();
		SpinLockAcquire(&ep->mutex);
		if (!ep->in_use || ep->generation != gen)
		{
			SpinLockRelease(&ep->mutex);
			ratelimit_forget(endpoint);
			continue;
		}
		now = ratelimit_clamp_now(ep, now);
		if (cost < 1 || cost > ratelimit_min_n(ep))
		{
			wait = ratelimit_min_n(ep);
			result = RATELIMIT_BAD_COST;
		}
		else if (ep->reconfiguring)
		{
			/* limits are being replaced; fail closed for a moment */
			wait = 1000;
			ep->refused_total += count_refusal;
			result = RATELIMIT_REFUSED;
		}
		else if (!worker && ep->worker_until > now)
		{
			/* a refused worker request comes first */
			ratelimit_allowed(ep, cost, now, &wait);
			wait = Max(wait, ep->worker_until - now);
			ep->refused_total += count_refusal;
			result = RATELIMIT_REFUSED;
		}
		else if (!worker && ep->queue_len > 0 && ep->queue_holds)
		{
			/* waiters arrived first: they are served in order */
			ratelimit_allowed(ep, cost, now, &wait);
			ep->refused_total += count_refusal;
			result = RATELIMIT_REFUSED;
		}
		else if (ratelimit_allowed(ep, cost, now - margin_us, &wait))
		{
			ratelimit_record(ep, cost, now);
			ep->granted_total++;
			result = RATELIMIT_GRANTED;
		}
		else
		{
			if (worker)
				ep->worker_until = Max(ep->worker_until,
									   now + wait + RATELIMIT_WORKER_SLACK_US);
			ep->refused_total += count_refusal;
			result = RATELIMIT_REFUSED;
		}
		SpinLockRelease(&ep->mutex);

		if (retry_after_us)
			*retry_after_us = wait;
		return result;
	}
	return RATELIMIT_UNKNOWN_ENDPOINT;
}

/* ---------------------------------------------------------------------
 * Synchronisation with trading.rate_limits.
 * ---------------------------------------------------------------------
 */

typedef struct RateLimitConfLimit
{
	int64		per_us;
	int32		n;
} RateLimitConfLimit;

typedef struct RateLimitConfEndpoint
{
	char		name[RATELIMIT_NAME_LEN];
	int			nlimits;
	RateLimitConfLimit limits[RATELIMIT_MAX_LIMITS];
	int			index;			/* slot in shared memory, -1 if new */
	int64		delta;			/* slots after minus slots before */
	bool		unchanged;
	int64	   *seed[RATELIMIT_MAX_LIMITS]; /* n slots per limit, for the
											 * apply */
} RateLimitConfEndpoint;

static void
ratelimit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (ratelimit_xact_dirty)
			{
				pg_atomic_fetch_add_u64(&ratelimit_shared->config_gen, 1);
				ratelimit_xact_dirty = false;
			}
			break;
		default:
			break;
	}
}

static void
ratelimit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	/* a rolled-back savepoint may have undone a change: re-read later */
	if (event == SUBXACT_EVENT_ABORT_SUB && ratelimit_xact_dirty)
		pg_atomic_fetch_add_u64(&ratelimit_shared->config_gen, 1);
}

/*
 * Called (via the table's statement trigger) when this transaction changed
 * trading.rate_limits: whatever happens to the transaction, other backends
 * must re-read the table when it ends.
 */
void
ratelimit_mark_changed(void)
{
	if (!ratelimit_callbacks_registered)
	{
		RegisterXactCallback(ratelimit_xact_callback, NULL);
		RegisterSubXactCallback(ratelimit_subxact_callback, NULL);
		ratelimit_callbacks_registered = true;
	}
	ratelimit_xact_dirty = true;
}

/*
 * Read the table with the latest snapshot (this transaction's own changes
 * included), so that a repeatable-read caller does not resurrect old
 * limits, into a list of RateLimitConfEndpoint in the caller's context.
 * No limiter lock is held: this may wait for a lock on the table, and
 * errors.  With nowait, returns false at once (and *conf untouched) when
 * another transaction holds a lock on the table that a read would wait
 * for.
 */
static bool
ratelimit_read_table(bool nowait, List **conf)
{
	List	   *result = NIL;
	SPIPlanPtr	plan;
	MemoryContext outer = CurrentMemoryContext;
	RateLimitConfEndpoint *cur = NULL;
	int			ret;

	if (nowait)
	{
		Oid			nsp = get_namespace_oid("trading", true);
		Oid			rel = OidIsValid(nsp) ? get_relname_relid("rate_limits", nsp) : InvalidOid;

		/* held to the end of the transaction; the query below reuses it */
		if (OidIsValid(rel) && !ConditionalLockRelationOid(rel, AccessShareLock))
			return false;
	}

	SPI_connect();
	plan = SPI_prepare("SELECT endpoint, requests, "
					   "  pg_catalog.int8(pg_catalog.date_part('epoch', per) OPERATOR(pg_catalog.*) 1000000) "
					   "FROM trading.rate_limits ORDER BY endpoint, per",
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the rate limits query: %s",
			 SPI_result_code_string(SPI_result));
	ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, false, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.rate_limits: %s",
			 SPI_result_code_string(ret));

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		int32		n = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		int64		per = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		MemoryContext spi = MemoryContextSwitchTo(outer);

		if (cur == NULL || strcmp(cur->name, name) != 0)
		{
			if (strlen(name) >= RATELIMIT_NAME_LEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("rate limit endpoint name is too long"),
						 errdetail("Endpoint names have at most %d bytes.",
								   RATELIMIT_NAME_LEN - 1)));
			cur = palloc0(sizeof(RateLimitConfEndpoint));
			strlcpy(cur->name, name, RATELIMIT_NAME_LEN);
			cur->index = -1;
			result = lappend(result, cur);
		}
		if (cur->nlimits >= RATELIMIT_MAX_LIMITS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("endpoint \"%s\" has more than %d rate limits",
							cur->name, RATELIMIT_MAX_LIMITS),
					 errhint("Drop a limit with trading.rate_limit_drop() first.")));
		cur->limits[cur->nlimits].n = n;
		cur->limits[cur->nlimits].per_us = per;
		cur->nlimits++;
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	*conf = result;
	return true;
}

/*
 * Move every live ring to the bottom of the pool, one ring at a time under
 * its endpoint's mutex.  Caller holds the LWLock exclusively.
 */
static void
ratelimit_compact(void)
{
	int64		target = 0;

	for (;;)
	{
		/* find the live ring with the lowest offset >= target */
		int			best_ep = -1,
					best_lim = -1;
		int64		best_off = PG_INT64_MAX;

		for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &ratelimit_shared->endpoints[i];

			if (!ep->in_use)
				continue;
			for (int l = 0; l < ep->nlimits; l++)
			{
				if (ep->limits[l].offset >= target &&
					ep->limits[l].offset < best_off)
				{
					best_off = ep->limits[l].offset;
					best_ep = i;
					best_lim = l;
				}
			}
		}
		if (best_ep < 0)
			break;
		else
		{
			RateEndpoint *ep = &ratelimit_shared->endpoints[best_ep];
			RateLimit  *lim = &ep->limits[best_lim];

			if (lim->offset != target)
			{
				SpinLockAcquire(&ep->mutex);
				memmove(ratelimit_shared->slots + target,
						ratelimit_shared->slots + lim->offset,
						lim->n * sizeof(int64));
				lim->offset = target;
				SpinLockRelease(&ep->mutex);
			}
			target += lim->n;
		}
	}
	ratelimit_shared->slots_used = target;
}

/* n slots from the pool, compacting it if needed; -1 if they do not fit. */
static int64
ratelimit_alloc(int64 n)
{
	int64		off;

	if (ratelimit_shared->nslots - ratelimit_shared->slots_used < n)
		ratelimit_compact();
	if (ratelimit_shared->nslots - ratelimit_shared->slots_used < n)
		return -1;
	off = ratelimit_shared->slots_used;
	ratelimit_shared->slots_used += n;
	return off;
}

static int64
ratelimit_conf_slots(RateLimitConfEndpoint *conf)
{
	int64		s = 0;

	for (int i = 0; i < conf->nlimits; i++)
		s += conf->limits[i].n;
	return s;
}

/* Copy the last k timestamps of lim, oldest first, into out. */
static int
ratelimit_history(RateLimit *lim, int k, int64 *out)
{
	k = Min(k, lim->count);
	for (int i = 0; i < k; i++)
		out[i] = ratelimit_kth_oldest(lim, lim->count - k + 1 + i);
	return k;
}

/*
 * Rebuild one endpoint's limits from conf, under the LWLock; conf->seed
 * was allocated by the caller (n slots per limit), as nothing here may
 * allocate or fail.  Each new ring is seeded with the most recent history
 * of the same window (if it existed) or of the endpoint's longest ring, so
 * that a kept limit loses nothing and lowering a limit or adding one takes
 * effect at once.  Grants are refused (not counted against anything) for
 * the few microseconds this takes.  Returns false, with the endpoint
 * dropped, if the pool has no room (the caller checked that it has).
 */
static bool
ratelimit_apply_endpoint(RateLimitConfEndpoint *conf)
{
	RateEndpoint *ep = &ratelimit_shared->endpoints[conf->index];
	RateLimit	old[RATELIMIT_MAX_LIMITS];
	int			nold;
	int			nseed[RATELIMIT_MAX_LIMITS];
	RateLimit	newlims[RATELIMIT_MAX_LIMITS];
	int64		off;
	int			wake = -1;
	bool		ok;

	/* stop grants, take the history, and release the old rings */
	SpinLockAcquire(&ep->mutex);
	ep->reconfiguring = true;
	nold = ep->nlimits;
	memcpy(old, ep->limits, sizeof(old));
	SpinLockRelease(&ep->mutex);

	for (int i = 0; i < conf->nlimits; i++)
	{
		RateLimit  *src = NULL;
		int64	   *seed = conf->seed[i];

		for (int j = 0; j < nold; j++)
		{
			if (old[j].per_us == conf->limits[i].per_us)
				src = &old[j];
		}
		if (src == NULL)
		{
			for (int j = 0; j < nold; j++)
			{
				if (src == NULL || old[j].n > src->n)
					src = &old[j];
			}
		}
		/* history is read under the mutex although grants are stopped */
		SpinLockAcquire(&ep->mutex);
		nseed[i] = src ? ratelimit_history(src, conf->limits[i].n, seed) : 0;
		SpinLockRelease(&ep->mutex);

		/* drop seed entries that already left the new window */
		if (src && src->per_us != conf->limits[i].per_us)
		{
			int64		now = trading_monotonic_us();
			int			skip = 0;

			while (skip < nseed[i] &&
				   seed[skip] <= now - conf->limits[i].per_us)
				skip++;
			memmove(seed, seed + skip, (nseed[i] - skip) * sizeof(int64));
			nseed[i] -= skip;
		}
	}

	SpinLockAcquire(&ep->mutex);
	ep->nlimits = 0;			/* old rings are garbage from here on */
	SpinLockRelease(&ep->mutex);

	/*
	 * One allocation for all of the endpoint's rings: a ring allocated but
	 * not yet installed would look like garbage to a compaction.
	 */
	off = ratelimit_alloc(ratelimit_conf_slots(conf));
	ok = (off >= 0);
	for (int i = 0; ok && i < conf->nlimits; i++)
	{
		RateLimit  *lim = &newlims[i];

		lim->per_us = conf->limits[i].per_us;
		lim->n = conf->limits[i].n;
		lim->offset = off;
		off += lim->n;
		memcpy(ratelimit_shared->slots + lim->offset, conf->seed[i],
			   nseed[i] * sizeof(int64));
		lim->count = nseed[i];
		lim->next = nseed[i] % lim->n;
	}

	SpinLockAcquire(&ep->mutex);
	if (ok)
	{
		memcpy(ep->limits, newlims, sizeof(RateLimit) * conf->nlimits);
		ep->nlimits = conf->nlimits;
	}
	else
	{
		/* unreachable: an unknown endpoint is better than a stuck one */
		ep->in_use = false;
		ep->generation++;
	}
	ep->reconfiguring = false;
	/* the head of the queue may now be grantable: wake it */
	wake = ep->queue_head;
	SpinLockRelease(&ep->mutex);

	ratelimit_wake(wake);
	return ok;
}

static bool
ratelimit_same_limits(RateEndpoint *ep, RateLimitConfEndpoint *conf)
{
	if (ep->nlimits != conf->nlimits)
		return false;
	for (int i = 0; i < conf->nlimits; i++)
	{
		bool		match = false;

		for (int j = 0; j < ep->nlimits; j++)
			if (ep->limits[j].per_us == conf->limits[i].per_us &&
				ep->limits[j].n == conf->limits[i].n)
				match = true;
		if (!match)
			return false;
	}
	return true;
}

/*
 * Drop an endpoint and wake its waiters (who then report the drop).  wake
 * is a caller-allocated array of nprocs entries: nothing here allocates.
 */
static void
ratelimit_drop_endpoint(RateEndpoint *ep, int *wake)
{
	int			nwake = 0;

	SpinLockAcquire(&ep->mutex);
	ep->in_use = false;
	ep->nlimits = 0;
	ep->generation++;
	for (int p = ep->queue_head; p >= 0 && nwake < ratelimit_shared->nprocs;
		 p = ratelimit_shared->wait_next[p])
		wake[nwake++] = p;
	for (int k = 0; k < nwake; k++)
		ratelimit_shared->wait_next[wake[k]] = -1;
	ep->queue_head = ep->queue_tail = -1;
	ep->queue_len = 0;
	SpinLockRelease(&ep->mutex);

	for (int k = 0; k < nwake; k++)
		ratelimit_wake(wake[k]);
}

static int
ratelimit_delta_cmp(const ListCell *a, const ListCell *b)
{
	RateLimitConfEndpoint *x = lfirst(a);
	RateLimitConfEndpoint *y = lfirst(b);

	return (x->delta > y->delta) - (x->delta < y->delta);
}

/* The table does not fit trading.rate_limit_max_endpoints or _slots. */
static void
ratelimit_bounds_error(int nendpoints, int64 total)
{
	if (nendpoints > ratelimit_shared->max_endpoints)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many rate-limited endpoints"),
				 errdetail("trading.rate_limits names %d endpoints; trading.rate_limit_max_endpoints is %d.",
						   nendpoints, ratelimit_shared->max_endpoints),
				 errhint("Drop unused endpoints, or raise trading.rate_limit_max_endpoints and restart.")));
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("rate limits need more slots than trading.rate_limit_slots provides"),
			 errdetail("The limits add up to " INT64_FORMAT " requests per window; trading.rate_limit_slots is " INT64_FORMAT ".",
					   total, ratelimit_shared->nslots),
			 errhint("Lower the limits, or raise trading.rate_limit_slots and restart.")));
}

/*
 * Keep the endpoints of *conf (in name order) that fit the bounds, skipping
 * each one that would not; the others are then dropped from shared memory.
 */
static void
ratelimit_keep_what_fits(List **conf)
{
	List	   *kept = NIL;
	ListCell   *lc;
	int64		used = 0;

	foreach(lc, *conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);
		int64		need = ratelimit_conf_slots(c);

		if (list_length(kept) < ratelimit_shared->max_endpoints &&
			used + need <= ratelimit_shared->nslots)
		{
			kept = lappend(kept, c);
			used += need;
		}
	}
	*conf = kept;
}

bool
ratelimit_sync_needed(void)
{
	return pg_atomic_read_u64(&ratelimit_shared->config_gen) !=
		pg_atomic_read_u64(&ratelimit_shared->applied_gen);
}

/*
 * The order of work keeps every lock short and every failure before it:
 * (1) read the table into local memory, check it against the bounds and
 * allocate everything the apply needs, without any limiter lock; (2) under
 * the LWLock, match the table with shared memory and (3) apply it, with
 * nothing that can fail or allocate.  In NOWAIT mode (the workers) a table
 * that exceeds the bounds is applied as far as it fits, in name order, and
 * the bound error raised afterwards: the endpoints that fit keep working.
 */
bool
ratelimit_sync(RateLimitSyncMode mode)
{
	List	   *conf = NIL;
	ListCell   *lc;
	uint64		target;
	int			nendpoints;
	int64		total = 0;
	int		   *wake;
	bool		ok = true;
	bool		partial = false;

	target = pg_atomic_read_u64(&ratelimit_shared->config_gen);
	if (mode != RATELIMIT_SYNC_FORCE &&
		pg_atomic_read_u64(&ratelimit_shared->applied_gen) == target)
		return true;

	/* 1. read, check the bounds and allocate, holding nothing */
	if (!ratelimit_read_table(mode == RATELIMIT_SYNC_NOWAIT, &conf))
		return false;
	foreach(lc, conf)
		total += ratelimit_conf_slots(lfirst(lc));
	nendpoints = list_length(conf);
	if (nendpoints > ratelimit_shared->max_endpoints ||
		total > ratelimit_shared->nslots)
	{
		if (mode != RATELIMIT_SYNC_NOWAIT)
			ratelimit_bounds_error(nendpoints, total);
		/* a worker applies what fits, in name order, and reports the rest */
		ratelimit_keep_what_fits(&conf);
		partial = true;
	}
	foreach(lc, conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);

		for (int l = 0; l < c->nlimits; l++)
			c->seed[l] = MemoryContextAllocHuge(CurrentMemoryContext,
												sizeof(int64) * c->limits[l].n);
	}
	wake = palloc(sizeof(int) * ratelimit_shared->nprocs);

	/* 2. match table endpoints with slots */
	LWLockAcquire(ratelimit_shared->lock, LW_EXCLUSIVE);
	if (mode != RATELIMIT_SYNC_FORCE && !partial &&
		pg_atomic_read_u64(&ratelimit_shared->applied_gen) >= target)
	{
		/* someone applied this or a later table meanwhile */
		LWLockRelease(ratelimit_shared->lock);
		return true;
	}
	foreach(lc, conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);
		int64		before = 0;

		for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &ratelimit_shared->endpoints[i];

			if (ep->in_use && strcmp(ep->name, c->name) == 0)
			{
				c->index = i;
				c->unchanged = ratelimit_same_limits(ep, c);
				for (int l = 0; l < ep->nlimits; l++)
					before += ep->limits[l].n;
			}
		}
		c->delta = ratelimit_conf_slots(c) - before;
	}

	/* 3a. drop endpoints that left the table */
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];
		bool		listed = false;

		if (!ep->in_use)
			continue;
		foreach(lc, conf)
		{
			if (((RateLimitConfEndpoint *) lfirst(lc))->index == i)
				listed = true;
		}
		if (!listed)
			ratelimit_drop_endpoint(ep, wake);
	}

	/* 3b. create the new ones (empty), then rebuild shrinking ones first */
	foreach(lc, conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);

		if (c->index >= 0)
			continue;
		for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &ratelimit_shared->endpoints[i];

			if (ep->in_use)
				continue;
			SpinLockAcquire(&ep->mutex);
			ep->in_use = true;
			ep->reconfiguring = true;
			ep->generation++;
			strlcpy(ep->name, c->name, RATELIMIT_NAME_LEN);
			ep->nlimits = 0;
			ep->newest = 0;
			ep->worker_until = 0;
			ep->queue_holds = false;
			ep->granted_total = ep->refused_total = ep->timeouts_total = 0;
			ep->waited_us_total = 0;
			SpinLockRelease(&ep->mutex);
			c->index = i;
			break;
		}
	}
	list_sort(conf, ratelimit_delta_cmp);
	foreach(lc, conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);

		if (!c->unchanged && !ratelimit_apply_endpoint(c))
			ok = false;
	}

	if (ok && !partial &&
		pg_atomic_read_u64(&ratelimit_shared->applied_gen) < target)
		pg_atomic_write_u64(&ratelimit_shared->applied_gen, target);
	LWLockRelease(ratelimit_shared->lock);

	/* cached indexes of dropped endpoints fail their generation check */
	pfree(wake);
	foreach(lc, conf)
	{
		RateLimitConfEndpoint *c = lfirst(lc);

		for (int l = 0; l < c->nlimits; l++)
			pfree(c->seed[l]);
	}
	list_free_deep(conf);
	if (!ok)
		elog(ERROR, "rate limiter slot pool unexpectedly exhausted");
	if (partial)
		ratelimit_bounds_error(nendpoints, total);
	return true;
}

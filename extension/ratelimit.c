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
 * - The hot path (a grant attempt) takes exactly one spinlock: the mutex of
 *   its endpoint.  Under it, it reads the clock, checks every limit (one ring
 *   lookup each) and writes c timestamps per limit.  Nothing that can error
 *   or allocate happens under a spinlock.  Endpoints never share a lock.
 * - RateEndpoint fields, and the rings its limits point to, are read and
 *   written only under that endpoint's mutex.  The exceptions are in_use,
 *   nlimits and each limit's n, per_us and offset: they change only while
 *   the LWLock is held exclusively *and* the mutex is held, so a holder of
 *   either may read them.  wait_next[p] is protected by
 *   the mutex of the endpoint whose queue p is in.
 * - Configuration changes (ratelimit_sync) hold rl_shared->lock exclusively,
 *   which serialises them against each other; they modify an endpoint under
 *   its mutex as well, so the hot path never needs the LWLock.  The slot pool
 *   (slots_used, compaction) is only touched under the LWLock; compaction
 *   moves one ring at a time while holding that ring's endpoint mutex.
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
 * recorded timestamp if another backend got in between (rl_clamp_now), so
 * the timestamps of each ring are non-decreasing and check and record use
 * one consistent time.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

RateLimiterShared *rl_shared = NULL;

static int	rl_max_endpoints = 64;
static int	rl_nslots = 262144;

/* backend-local cache: endpoint name -> array index and generation */
typedef struct RlCacheEntry
{
	char		name[RL_NAME_LEN];
	int			index;
	uint32		generation;
} RlCacheEntry;

static HTAB *rl_cache = NULL;
static RlCacheEntry *rl_last = NULL;	/* the entry found last */

/* this transaction modified trading.rate_limits */
static bool rl_xact_dirty = false;
static bool rl_callbacks_registered = false;

static Size
ratelimit_shmem_size(void)
{
	Size		size;

	size = offsetof(RateLimiterShared, endpoints);
	size = add_size(size, mul_size(rl_max_endpoints, sizeof(RateEndpoint)));
	size = MAXALIGN(size);
	size = add_size(size, mul_size(rl_nslots, sizeof(int64)));
	size = add_size(size, mul_size(MaxBackends + NUM_AUXILIARY_PROCS, sizeof(int)));
	return size;
}

void
ratelimit_init(void)
{
	DefineCustomIntVariable("trading.rate_limit_max_endpoints",
							"Maximum number of rate-limited endpoints.",
							NULL,
							&rl_max_endpoints,
							64, 1, 10000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.rate_limit_slots",
							"Timestamp slots shared by all rate limits (8 bytes each).",
							"A limit of N requests per window uses N slots.",
							&rl_nslots,
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

	rl_shared = ShmemInitStruct("trading.ratelimit", ratelimit_shmem_size(),
								&found);
	if (found)
		return;

	memset(rl_shared, 0, offsetof(RateLimiterShared, endpoints));
	rl_shared->lock = &(GetNamedLWLockTranche("trading.ratelimit"))->lock;
	pg_atomic_init_u64(&rl_shared->config_gen, 1);
	pg_atomic_init_u64(&rl_shared->applied_gen, 0);
	rl_shared->max_endpoints = rl_max_endpoints;
	rl_shared->nprocs = MaxBackends + NUM_AUXILIARY_PROCS;
	rl_shared->nslots = rl_nslots;
	rl_shared->slots_used = 0;

	base = (char *) rl_shared;
	base += MAXALIGN(offsetof(RateLimiterShared, endpoints) +
					 rl_max_endpoints * sizeof(RateEndpoint));
	rl_shared->slots = (int64 *) base;
	base += rl_nslots * sizeof(int64);
	rl_shared->wait_next = (int *) base;

	for (int i = 0; i < rl_max_endpoints; i++)
	{
		RateEndpoint *ep = &rl_shared->endpoints[i];

		memset(ep, 0, sizeof(RateEndpoint));
		SpinLockInit(&ep->mutex);
		ep->queue_head = ep->queue_tail = -1;
	}
	for (int i = 0; i < rl_shared->nprocs; i++)
		rl_shared->wait_next[i] = -1;

	/* windows saved at the last clean shutdown (ratelimit_persist.c) */
	ratelimit_persist_startup();
}

/* ---------------------------------------------------------------------
 * The sliding-window check.  All of these run under the endpoint mutex.
 * ---------------------------------------------------------------------
 */

/* Timestamp of the k-th oldest (1-based) of the recorded units. */
static inline int64
rl_kth_oldest(RateLimit *lim, int k)
{
	int64	   *ring = rl_shared->slots + lim->offset;
	int			oldest = (lim->next - lim->count + lim->n) % lim->n;

	return ring[(oldest + k - 1) % lim->n];
}

/*
 * A time read before the mutex was taken may be older than the newest
 * timestamp already recorded: use the newer one, so rings stay ordered.
 */
int64
rl_clamp_now(RateEndpoint *ep, int64 now)
{
	return Max(now, ep->newest);
}

/*
 * Can cost more units be granted at time now?  With the last n units' times
 * e_1 <= ... <= e_n, the window (now - per, now] may hold at most n - cost
 * of them, i.e. the k-th oldest, k = count + cost - n, must lie outside.
 */
bool
rl_allowed(RateEndpoint *ep, int cost, int64 now, int64 *retry_after_us)
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
		t = rl_kth_oldest(lim, k);
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
rl_record(RateEndpoint *ep, int cost, int64 now)
{
	for (int i = 0; i < ep->nlimits; i++)
	{
		RateLimit  *lim = &ep->limits[i];
		int64	   *ring = rl_shared->slots + lim->offset;

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

int
rl_min_n(RateEndpoint *ep)
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
rl_used(RateLimit *lim, int64 now, int64 *oldest_in_window)
{
	int			lo = 1,
				hi = lim->count + 1;

	/* find the first k (1-based) whose timestamp is inside the window */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (rl_kth_oldest(lim, mid) > now - lim->per_us)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (oldest_in_window)
		*oldest_in_window = (lo <= lim->count) ? rl_kth_oldest(lim, lo) : 0;
	return lim->count - lo + 1;
}

void
rl_wake(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* ---------------------------------------------------------------------
 * Lookup.
 * ---------------------------------------------------------------------
 */

static void
rl_cache_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = RL_NAME_LEN;
	ctl.entrysize = sizeof(RlCacheEntry);
	ctl.hcxt = TopMemoryContext;
	rl_cache = hash_create("trading rate limit cache", 64, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Index of the endpoint called name, or -1.  *generation is the slot's
 * generation when found; the caller re-checks it under the mutex and calls
 * rl_forget() and retries once if it changed.
 */
int
rl_lookup(const char *name, uint32 *generation)
{
	RlCacheEntry *ce;
	int			found = -1;
	bool		hit;

	if (strlen(name) >= RL_NAME_LEN)
		return -1;
	/* most callers use one endpoint over and over */
	if (rl_last && strcmp(rl_last->name, name) == 0)
	{
		*generation = rl_last->generation;
		return rl_last->index;
	}
	if (rl_cache == NULL)
		rl_cache_init();

	ce = hash_search(rl_cache, name, HASH_FIND, NULL);
	if (ce)
	{
		rl_last = ce;
		*generation = ce->generation;
		return ce->index;
	}

	LWLockAcquire(rl_shared->lock, LW_SHARED);
	for (int i = 0; i < rl_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &rl_shared->endpoints[i];

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
	LWLockRelease(rl_shared->lock);

	if (found >= 0)
	{
		ce = hash_search(rl_cache, name, HASH_ENTER, &hit);
		ce->index = found;
		ce->generation = *generation;
		rl_last = ce;
	}
	return found;
}

void
rl_forget(const char *name)
{
	rl_last = NULL;
	if (rl_cache && strlen(name) < RL_NAME_LEN)
		hash_search(rl_cache, name, HASH_REMOVE, NULL);
}

RateLimitResult
ratelimit_try(const char *endpoint, int cost, int64 *retry_after_us)
{
	return ratelimit_try_ext(endpoint, cost, retry_after_us, true);
}

/*
 * As ratelimit_try; count_refusal = false is for rate_limit_acquire, whose
 * first attempt is not a refusal when it goes on to wait.
 */
RateLimitResult
ratelimit_try_ext(const char *endpoint, int cost, int64 *retry_after_us,
				  bool count_refusal)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		uint32		gen;
		int			idx = rl_lookup(endpoint, &gen);
		RateEndpoint *ep;
		RateLimitResult result;
		int64		wait = 0;
		int64		now;

		if (idx < 0)
			return RL_UNKNOWN_ENDPOINT;
		ep = &rl_shared->endpoints[idx];

		/*
		 * Read the clock before taking the lock, to keep the lock short.
		 * Another backend may have recorded a later time meanwhile; using the
		 * later of the two keeps every ring ordered (rl_clamp_now).
		 */
		now = trading_monotonic_us();
		SpinLockAcquire(&ep->mutex);
		if (!ep->in_use || ep->generation != gen)
		{
			SpinLockRelease(&ep->mutex);
			rl_forget(endpoint);
			continue;
		}
		if (cost < 1 || cost > rl_min_n(ep))
		{
			wait = rl_min_n(ep);
			result = RL_BAD_COST;
		}
		else if (ep->reconfiguring)
		{
			/* limits are being replaced; fail closed for a moment */
			wait = 1000;
			ep->refused_total += count_refusal;
			result = RL_REFUSED;
		}
		else if (ep->queue_len > 0)
		{
			/* waiters arrived first: they are served in order */
			rl_allowed(ep, cost, rl_clamp_now(ep, now), &wait);
			ep->refused_total += count_refusal;
			result = RL_REFUSED;
		}
		else
		{
			now = rl_clamp_now(ep, now);
			if (rl_allowed(ep, cost, now, &wait))
			{
				rl_record(ep, cost, now);
				ep->granted_total++;
				result = RL_GRANTED;
			}
			else
			{
				ep->refused_total += count_refusal;
				result = RL_REFUSED;
			}
		}
		SpinLockRelease(&ep->mutex);

		if (retry_after_us)
			*retry_after_us = wait;
		return result;
	}
	return RL_UNKNOWN_ENDPOINT;
}

/* ---------------------------------------------------------------------
 * Synchronisation with trading.rate_limits.
 * ---------------------------------------------------------------------
 */

typedef struct RlConfLimit
{
	int64		per_us;
	int32		n;
} RlConfLimit;

typedef struct RlConfEndpoint
{
	char		name[RL_NAME_LEN];
	int			nlimits;
	RlConfLimit limits[RL_MAX_LIMITS];
	int			index;			/* slot in shared memory, -1 if new */
	int64		delta;			/* slots after minus slots before */
	bool		unchanged;
} RlConfEndpoint;

static void
rl_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (rl_xact_dirty)
			{
				pg_atomic_fetch_add_u64(&rl_shared->config_gen, 1);
				rl_xact_dirty = false;
			}
			break;
		default:
			break;
	}
}

static void
rl_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	/* a rolled-back savepoint may have undone a change: re-read later */
	if (event == SUBXACT_EVENT_ABORT_SUB && rl_xact_dirty)
		pg_atomic_fetch_add_u64(&rl_shared->config_gen, 1);
}

/*
 * Called (via the table's statement trigger) when this transaction changed
 * trading.rate_limits: whatever happens to the transaction, other backends
 * must re-read the table when it ends.
 */
void
rl_mark_changed(void)
{
	if (!rl_callbacks_registered)
	{
		RegisterXactCallback(rl_xact_callback, NULL);
		RegisterSubXactCallback(rl_subxact_callback, NULL);
		rl_callbacks_registered = true;
	}
	rl_xact_dirty = true;
}

/* Read the table with the latest snapshot (this transaction's own changes
 * included), so that a repeatable-read caller does not resurrect old limits. */
static List *
rl_read_table(void)
{
	List	   *result = NIL;
	SPIPlanPtr	plan;
	MemoryContext outer = CurrentMemoryContext;
	RlConfEndpoint *cur = NULL;
	int			ret;

	SPI_connect();
	plan = SPI_prepare("SELECT endpoint, requests, "
					   "  (extract(epoch FROM per) * 1000000)::int8 "
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
			if (strlen(name) >= RL_NAME_LEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("rate limit endpoint name is too long"),
						 errdetail("Endpoint names have at most %d bytes.",
								   RL_NAME_LEN - 1)));
			cur = palloc0(sizeof(RlConfEndpoint));
			strlcpy(cur->name, name, RL_NAME_LEN);
			cur->index = -1;
			result = lappend(result, cur);
		}
		if (cur->nlimits >= RL_MAX_LIMITS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("endpoint \"%s\" has more than %d rate limits",
							cur->name, RL_MAX_LIMITS),
					 errhint("Drop a limit with trading.rate_limit_drop() first.")));
		cur->limits[cur->nlimits].n = n;
		cur->limits[cur->nlimits].per_us = per;
		cur->nlimits++;
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return result;
}

/*
 * Move every live ring to the bottom of the pool, one ring at a time under
 * its endpoint's mutex.  Caller holds the LWLock exclusively.
 */
static void
rl_compact(void)
{
	int64		target = 0;

	for (;;)
	{
		/* find the live ring with the lowest offset >= target */
		int			best_ep = -1,
					best_lim = -1;
		int64		best_off = PG_INT64_MAX;

		for (int i = 0; i < rl_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &rl_shared->endpoints[i];

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
			RateEndpoint *ep = &rl_shared->endpoints[best_ep];
			RateLimit  *lim = &ep->limits[best_lim];

			if (lim->offset != target)
			{
				SpinLockAcquire(&ep->mutex);
				memmove(rl_shared->slots + target,
						rl_shared->slots + lim->offset,
						lim->n * sizeof(int64));
				lim->offset = target;
				SpinLockRelease(&ep->mutex);
			}
			target += lim->n;
		}
	}
	rl_shared->slots_used = target;
}

static int64
rl_alloc(int64 n)
{
	int64		off;

	if (rl_shared->nslots - rl_shared->slots_used < n)
		rl_compact();
	if (rl_shared->nslots - rl_shared->slots_used < n)
		elog(ERROR, "rate limiter slot pool unexpectedly exhausted");
	off = rl_shared->slots_used;
	rl_shared->slots_used += n;
	return off;
}

static int64
rl_slots_of(int nlimits, const int32 *ns)
{
	int64		s = 0;

	for (int i = 0; i < nlimits; i++)
		s += ns[i];
	return s;
}

/* Copy the last k timestamps of lim, oldest first, into out. */
static int
rl_history(RateLimit *lim, int k, int64 *out)
{
	k = Min(k, lim->count);
	for (int i = 0; i < k; i++)
		out[i] = rl_kth_oldest(lim, lim->count - k + 1 + i);
	return k;
}

/*
 * Rebuild one endpoint's limits from conf.  Each new ring is seeded with the
 * most recent history of the same window (if it existed) or of the
 * endpoint's longest ring, so that a kept limit loses nothing and lowering a
 * limit or adding one takes effect at once.  Grants are refused (not
 * counted against anything) for the few microseconds this takes.
 */
static void
rl_apply_endpoint(RlConfEndpoint *conf)
{
	RateEndpoint *ep = &rl_shared->endpoints[conf->index];
	RateLimit	old[RL_MAX_LIMITS];
	int			nold;
	int64	   *seed[RL_MAX_LIMITS];
	int			nseed[RL_MAX_LIMITS];
	RateLimit	newlims[RL_MAX_LIMITS];
	int64		need = 0;
	int64		off;
	List	   *wake = NIL;
	ListCell   *lc;

	/* stop grants, take the history, and release the old rings */
	SpinLockAcquire(&ep->mutex);
	ep->reconfiguring = true;
	nold = ep->nlimits;
	memcpy(old, ep->limits, sizeof(old));
	SpinLockRelease(&ep->mutex);

	for (int i = 0; i < conf->nlimits; i++)
	{
		RateLimit  *src = NULL;

		seed[i] = palloc(sizeof(int64) * conf->limits[i].n);
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
		nseed[i] = src ? rl_history(src, conf->limits[i].n, seed[i]) : 0;
		SpinLockRelease(&ep->mutex);

		/* drop seed entries that already left the new window */
		if (src && src->per_us != conf->limits[i].per_us)
		{
			int64		now = trading_monotonic_us();
			int			skip = 0;

			while (skip < nseed[i] &&
				   seed[i][skip] <= now - conf->limits[i].per_us)
				skip++;
			memmove(seed[i], seed[i] + skip, (nseed[i] - skip) * sizeof(int64));
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
	for (int i = 0; i < conf->nlimits; i++)
		need += conf->limits[i].n;
	off = rl_alloc(need);
	for (int i = 0; i < conf->nlimits; i++)
	{
		RateLimit  *lim = &newlims[i];

		lim->per_us = conf->limits[i].per_us;
		lim->n = conf->limits[i].n;
		lim->offset = off;
		off += lim->n;
		memcpy(rl_shared->slots + lim->offset, seed[i], nseed[i] * sizeof(int64));
		lim->count = nseed[i];
		lim->next = nseed[i] % lim->n;
		pfree(seed[i]);
	}

	SpinLockAcquire(&ep->mutex);
	memcpy(ep->limits, newlims, sizeof(RateLimit) * conf->nlimits);
	ep->nlimits = conf->nlimits;
	ep->reconfiguring = false;
	/* the head of the queue may now be grantable: wake it */
	if (ep->queue_head >= 0)
		wake = lappend_int(wake, ep->queue_head);
	SpinLockRelease(&ep->mutex);

	foreach(lc, wake)
		rl_wake(lfirst_int(lc));
}

static bool
rl_same_limits(RateEndpoint *ep, RlConfEndpoint *conf)
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

static void
rl_drop_endpoint(RateEndpoint *ep)
{
	int			p;
	List	   *wake = NIL;
	ListCell   *lc;

	SpinLockAcquire(&ep->mutex);
	ep->in_use = false;
	ep->nlimits = 0;
	ep->generation++;
	for (p = ep->queue_head; p >= 0; p = rl_shared->wait_next[p])
		wake = lappend_int(wake, p);
	for (lc = list_head(wake); lc; lc = lnext(wake, lc))
		rl_shared->wait_next[lfirst_int(lc)] = -1;
	ep->queue_head = ep->queue_tail = -1;
	ep->queue_len = 0;
	SpinLockRelease(&ep->mutex);

	foreach(lc, wake)
		rl_wake(lfirst_int(lc));
}

static int
rl_delta_cmp(const ListCell *a, const ListCell *b)
{
	RlConfEndpoint *x = lfirst(a);
	RlConfEndpoint *y = lfirst(b);

	return (x->delta > y->delta) - (x->delta < y->delta);
}

void
ratelimit_sync(bool force)
{
	List	   *conf;
	ListCell   *lc;
	uint64		target;
	int			nnew = 0,
				nfree = 0;
	int64		total = 0;

	LWLockAcquire(rl_shared->lock, LW_EXCLUSIVE);
	target = pg_atomic_read_u64(&rl_shared->config_gen);
	if (!force && pg_atomic_read_u64(&rl_shared->applied_gen) == target)
	{
		LWLockRelease(rl_shared->lock);
		return;
	}

	conf = rl_read_table();

	/* match table endpoints with slots, and check the bounds first */
	foreach(lc, conf)
	{
		RlConfEndpoint *c = lfirst(lc);
		int32		ns[RL_MAX_LIMITS];
		int64		before = 0;

		for (int l = 0; l < c->nlimits; l++)
			ns[l] = c->limits[l].n;
		total += rl_slots_of(c->nlimits, ns);

		for (int i = 0; i < rl_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &rl_shared->endpoints[i];

			if (ep->in_use && strcmp(ep->name, c->name) == 0)
			{
				c->index = i;
				c->unchanged = rl_same_limits(ep, c);
				for (int l = 0; l < ep->nlimits; l++)
					before += ep->limits[l].n;
			}
		}
		c->delta = rl_slots_of(c->nlimits, ns) - before;
		if (c->index < 0)
			nnew++;
	}
	for (int i = 0; i < rl_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &rl_shared->endpoints[i];
		bool		listed = false;

		if (!ep->in_use)
		{
			nfree++;
			continue;
		}
		foreach(lc, conf)
			if (((RlConfEndpoint *) lfirst(lc))->index == i)
				listed = true;
		if (!listed)
			nfree++;
	}
	if (nnew > nfree)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many rate-limited endpoints"),
				 errdetail("trading.rate_limits names %d endpoints; trading.rate_limit_max_endpoints is %d.",
						   list_length(conf), rl_shared->max_endpoints),
				 errhint("Drop unused endpoints, or raise trading.rate_limit_max_endpoints and restart.")));
	if (total > rl_shared->nslots)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("rate limits need more slots than trading.rate_limit_slots provides"),
				 errdetail("The limits add up to " INT64_FORMAT " requests per window; trading.rate_limit_slots is " INT64_FORMAT ".",
						   total, rl_shared->nslots),
				 errhint("Lower the limits, or raise trading.rate_limit_slots and restart.")));

	/* 1. drop endpoints that left the table */
	for (int i = 0; i < rl_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &rl_shared->endpoints[i];
		bool		listed = false;

		if (!ep->in_use)
			continue;
		foreach(lc, conf)
			if (((RlConfEndpoint *) lfirst(lc))->index == i)
				listed = true;
		if (!listed)
			rl_drop_endpoint(ep);
	}

	/* 2. create the new ones (empty), then rebuild shrinking ones first */
	foreach(lc, conf)
	{
		RlConfEndpoint *c = lfirst(lc);

		if (c->index >= 0)
			continue;
		for (int i = 0; i < rl_shared->max_endpoints; i++)
		{
			RateEndpoint *ep = &rl_shared->endpoints[i];

			if (ep->in_use)
				continue;
			SpinLockAcquire(&ep->mutex);
			ep->in_use = true;
			ep->reconfiguring = true;
			ep->generation++;
			strlcpy(ep->name, c->name, RL_NAME_LEN);
			ep->nlimits = 0;
			ep->newest = 0;
			ep->granted_total = ep->refused_total = ep->timeouts_total = 0;
			ep->waited_us_total = 0;
			SpinLockRelease(&ep->mutex);
			c->index = i;
			break;
		}
	}
	list_sort(conf, rl_delta_cmp);
	foreach(lc, conf)
	{
		RlConfEndpoint *c = lfirst(lc);

		if (!c->unchanged)
			rl_apply_endpoint(c);
	}

	pg_atomic_write_u64(&rl_shared->applied_gen, target);
	LWLockRelease(rl_shared->lock);

	/* cached indexes of dropped endpoints fail their generation check */
	list_free_deep(conf);
}

/*-------------------------------------------------------------------------
 *
 * ratelimit_seed.c
 *	  Rebuilding the rate limiter's windows from a record of what was sent,
 *	  so that a new primary (after a failover, or a node started without a
 *	  state file) continues the order budget of the old one instead of
 *	  starting from empty windows.
 *
 * The replicated record is trading.order_requests (kind, sent_at, state):
 * every placement sent within the last day counts against kite.orders.
 * Its times are wall-clock; the limiter's are CLOCK_MONOTONIC, so each is
 * converted by its age: mono = now_mono - (now_wall - sent_at).  The
 * record's granularity is the commit of sent_at: a send whose sent_at had
 * not committed (or not replicated) when the old primary died is missing,
 * so windows shorter than that margin may restart (docs/RATE_LIMITER.md).
 *
 * Seeding never double counts: per limit, the ring keeps whichever of the
 * two histories (what it holds, what was seeded) has more units inside the
 * window, so a restored state file and the record of the same sends, or a
 * rebuild run twice, count once.
 *
 * Locking: the sort and every allocation happen before the endpoint's
 * mutex is taken; under it, only the ring of each limit is rewritten.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit_int.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

#define ORDERS_ENDPOINT		"kite.orders"

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Replace lim's ring by the last k of times[0..n) (ascending); under the mutex. */
static void
ratelimit_ring_replace(RateLimit *lim, const int64 *times, int n)
{
	int64	   *ring = ratelimit_shared->slots + lim->offset;
	int			k = Min(n, lim->n);

	memcpy(ring, times + (n - k), k * sizeof(int64));
	lim->count = k;
	lim->next = k % lim->n;
}

bool
ratelimit_seed_grants(const char *endpoint, const TimestampTz *sent, int n)
{
	int64		now_mono = trading_monotonic_us();
	TimestampTz now_wall = GetCurrentTimestamp();
	int64	   *mono;
	uint32		gen;
	int			idx;
	RateEndpoint *ep;
	bool		found = false;

	idx = ratelimit_lookup(endpoint, &gen);
	if (idx < 0)
		return false;

	mono = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		int64		age = now_wall - sent[i];

		/* a time in the future (clock skew between nodes) counts as now */
		mono[i] = now_mono - Max(age, 0);
	}
	qsort(mono, n, sizeof(int64), int64_cmp);

	ep = &ratelimit_shared->endpoints[idx];
	SpinLockAcquire(&ep->mutex);
	if (ep->in_use && ep->generation == gen && !ep->reconfiguring)
	{
		int64		now = ratelimit_clamp_now(ep, now_mono);

		found = true;
		for (int l = 0; l < ep->nlimits; l++)
		{
			RateLimit  *lim = &ep->limits[l];
			int			first = n;

			/* the seeds inside this limit's window: mono[first..n) */
			while (first > 0 && mono[first - 1] > now - lim->per_us)
				first--;
			if (n - first > ratelimit_used(lim, now, NULL))
				ratelimit_ring_replace(lim, mono + first, n - first);
		}
		if (n > 0)
			ep->newest = Max(ep->newest, mono[n - 1]);
	}
	SpinLockRelease(&ep->mutex);
	pfree(mono);
	if (!found)
		ratelimit_forget(endpoint);
	return found;
}

int
ratelimit_rebuild_order_windows(void)
{
	int			ret;
	bool		isnull;
	TimestampTz *sent;
	int			n;
	MemoryContext outer = CurrentMemoryContext;

	if (pg_atomic_read_u32(&ratelimit_shared->orders_rebuilt) != 0)
		return 0;
	/* the endpoint must be loaded; a locked table means "later" */
	if (!ratelimit_sync(RATELIMIT_SYNC_NOWAIT))
		return -1;

	SPI_connect();
	ret = SPI_execute("SELECT pg_catalog.to_regclass('trading.order_requests') IS NOT NULL",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for trading.order_requests");
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		/* installed version < 1.1: nothing recorded, nothing to rebuild */
		SPI_finish();
		pg_atomic_write_u32(&ratelimit_shared->orders_rebuilt, 1);
		return 0;
	}
	ret = SPI_execute("SELECT sent_at FROM trading.order_requests "
					  "WHERE kind OPERATOR(pg_catalog.=) 'place' "
					  "  AND sent_at OPERATOR(pg_catalog.>) "
					  "      (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.interval '1 day')",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.order_requests: %s",
			 SPI_result_code_string(ret));
	n = (int) SPI_processed;
	sent = MemoryContextAlloc(outer, sizeof(TimestampTz) * Max(n, 1));
	for (int i = 0; i < n; i++)
		sent[i] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	if (!ratelimit_seed_grants(ORDERS_ENDPOINT, sent, n))
		n = 0;					/* no limit configured for orders */
	pfree(sent);
	pg_atomic_write_u32(&ratelimit_shared->orders_rebuilt, 1);
	if (n > 0)
		ereport(LOG,
				(errmsg("rebuilt the windows of rate limit \"%s\" from %d placements recorded in trading.order_requests",
						ORDERS_ENDPOINT, n)));
	return n;
}

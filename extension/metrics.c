/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters and latency histograms in shared memory: layout, label
 *	  registration, the lock-free recording path used by the broker worker
 *	  (metrics_observe_request, metrics_count_exception,
 *	  metrics_count_trade) and by the SQL recording functions
 *	  (metrics_sql.c), and lock-free snapshots for the views.
 *
 * Shared memory ("trading.metrics") holds, for each metric family
 * (API requests, exceptions, trades), trading.metrics_max_labels label
 * slots plus one overflow slot.  A slot is a label set (one or two values)
 * and METRICS_NVALUES 64-bit atomic values: for API requests the histogram
 * buckets (not cumulative; the last is +Inf), the sum in nanoseconds and
 * one counter per HTTP status class; for counters only values[0].  Values
 * only grow: they are monotonic until the server restarts.
 *
 * Locking rules
 * -------------
 * - Recording an observation takes no lock: it adds to the slot's values
 *   with pg_atomic_fetch_add_u64.  Readers may therefore see an
 *   observation's bucket before its sum; the count of a histogram is the
 *   sum of its buckets, so buckets and count always agree.
 * - A slot's labels are written once, before the slot is published, and
 *   never change until restart.  Publishing is pg_atomic_write_u32 of the
 *   family's nused after a write barrier; readers read nused, then a read
 *   barrier, then may read the labels of every slot below nused without a
 *   lock.
 * - Registering a new label set (rare: once per label set per cluster)
 *   holds metrics_shared->lock exclusively, which serialises registrations;
 *   it rechecks the slots published meanwhile, so a label set never gets
 *   two slots.
 * - Each backend caches (family, labels) -> slot in a local open-addressing
 *   table of (hash, slot pointer) compared against the slot's labels;
 *   slots are never freed or reused, so an entry never goes stale.  The
 *   table is allocated once without raising an error; without it (out of
 *   memory) or when it is full, lookups scan the published slots.
 * - The overflow slot of a family is labelled at startup; recordings from
 *   the C API whose label set does not fit go there, and every recording
 *   that did not fit (C API or SQL) adds one to the family's overflow
 *   counter.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "metrics.h"

#include <math.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "common/hashfn.h"
#include "utils/memutils.h"

/* Histogram bucket upper bounds in seconds (Prometheus' default set). */
const double metrics_bounds[METRICS_NBOUNDS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

/* Label values of the status classes, indexed by status / 100 (0: none). */
const char *const metrics_code_labels[METRICS_NCODES] = {
	"no_response", "1xx", "2xx", "3xx", "4xx", "5xx"
};

const char *const metrics_family_names[MF_NFAMILIES] = {
	"api_requests", "exceptions", "trades"
};

typedef struct MetricsSlot
{
	char		labels[2][METRICS_LABEL_LEN];
	pg_atomic_uint64 values[METRICS_NVALUES];
} MetricsSlot;

typedef struct MetricsFamilyState
{
	pg_atomic_uint32 nused;		/* published slots */
	pg_atomic_uint64 overflow;	/* recordings that did not fit */
} MetricsFamilyState;

typedef struct MetricsShared
{
	LWLock	   *lock;			/* serialises label registration */
	int			max_labels;		/* slots per family, without the overflow */
	MetricsFamilyState families[MF_NFAMILIES];
	MetricsSlot slots[FLEXIBLE_ARRAY_MEMBER];	/* family-major */
} MetricsShared;

static MetricsShared *metrics_shared = NULL;
static int	metrics_max_labels_guc = 200;
static double metrics_daily_loss_alert_threshold = 0;

/*
 * Backend-local lookup cache: open addressing over (hash, slot); an entry
 * is compared with the slot's labels in shared memory, which never change
 * once published, so the cache holds no copy of them.  Allocated on first
 * use without raising an error (no cache: every lookup scans); at most
 * METRICS_CACHE_MAX entries, filled to 3/4 at most (then lookups past that
 * scan the published slots, which is correct, only slower).
 */
#define METRICS_CACHE_MAX	65536

typedef struct MetricsCacheEntry
{
	uint32		hash;
	int32		family;
	MetricsSlot *slot;			/* NULL: free */
} MetricsCacheEntry;

static MetricsCacheEntry *metrics_cache = NULL;
static uint32 metrics_cache_mask = 0;
static uint32 metrics_cache_used = 0;
static bool metrics_cache_failed = false;

static Size
metrics_shmem_size(void)
{
	Size		size = offsetof(MetricsShared, slots);

	return add_size(size, mul_size(mul_size(MF_NFAMILIES,
											metrics_max_labels_guc + 1),
								   sizeof(MetricsSlot)));
}

void
metrics_init(void)
{
	DefineCustomIntVariable("trading.metrics_max_labels",
							"Maximum number of distinct label sets per metric.",
							"Bounds the cardinality of trading_api_request_duration_seconds (endpoints), "
							"trading_exceptions_total (kinds) and trading_trades_total (side, status). "
							"Past it the worker's recordings go to the label \"" METRICS_OVERFLOW_LABEL "\" "
							"and the SQL recording functions raise an error.",
							&metrics_max_labels_guc,
							200, 4, 100000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("trading.daily_loss_alert_threshold",
							 "Daily loss in rupees beyond which the TradingDailyLossLimit alert fires (0: never).",
							 "Exported as trading_daily_loss_alert_threshold; it triggers an alert only, "
							 "it does not stop trading.",
							 &metrics_daily_loss_alert_threshold,
							 0, 0, 1e15,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
}

void
metrics_shmem_request(void)
{
	RequestAddinShmemSpace(metrics_shmem_size());
	RequestNamedLWLockTranche("trading.metrics", 1);
}

void
metrics_shmem_startup(void)
{
	bool		found;
	int			nslots;

	metrics_shared = ShmemInitStruct("trading.metrics", metrics_shmem_size(),
									 &found);
	if (found)
		return;

	metrics_shared->lock = &(GetNamedLWLockTranche("trading.metrics"))->lock;
	metrics_shared->max_labels = metrics_max_labels_guc;
	for (int f = 0; f < MF_NFAMILIES; f++)
	{
		pg_atomic_init_u32(&metrics_shared->families[f].nused, 0);
		pg_atomic_init_u64(&metrics_shared->families[f].overflow, 0);
	}

	nslots = MF_NFAMILIES * (metrics_max_labels_guc + 1);
	for (int i = 0; i < nslots; i++)
	{
		MetricsSlot *slot = &metrics_shared->slots[i];

		memset(slot->labels, 0, sizeof(slot->labels));
		for (int v = 0; v < METRICS_NVALUES; v++)
			pg_atomic_init_u64(&slot->values[v], 0);
	}

	/* the overflow slot of each family is the one after its last slot */
	for (int f = 0; f < MF_NFAMILIES; f++)
	{
		MetricsSlot *slot = &metrics_shared->slots[f * (metrics_max_labels_guc + 1) +
												   metrics_max_labels_guc];

		strlcpy(slot->labels[0], METRICS_OVERFLOW_LABEL, METRICS_LABEL_LEN);
		if (f == MF_TRADES)
			strlcpy(slot->labels[1], METRICS_OVERFLOW_LABEL, METRICS_LABEL_LEN);
	}
}

int
metrics_max_labels(void)
{
	return metrics_shared ? metrics_shared->max_labels : metrics_max_labels_guc;
}

static inline MetricsSlot *
family_slot(int family, int i)
{
	return &metrics_shared->slots[family * (metrics_shared->max_labels + 1) + i];
}

/*
 * Normalise a label given to the C API: NULL or empty becomes "unknown"; a
 * long value is cut to METRICS_LABEL_LEN - 1 bytes without splitting a UTF-8
 * sequence; control characters become '?' (then in buf).
 */
static MetricsLabel
metrics_c_label(const char *src, char *buf)
{
	MetricsLabel l;
	size_t		len;
	bool		control = false;

	if (src == NULL || src[0] == '\0')
		src = METRICS_UNKNOWN_LABEL;
	len = strnlen(src, METRICS_LABEL_LEN);
	if (len >= METRICS_LABEL_LEN)
	{
		len = METRICS_LABEL_LEN - 1;
		while (len > 0 && (((unsigned char) src[len]) & 0xC0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++)
		control |= ((unsigned char) src[i] < 0x20 || src[i] == 0x7f);
	if (control)
	{
		for (size_t i = 0; i < len; i++)
			buf[i] = ((unsigned char) src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
		src = buf;
	}
	l.data = src;
	l.len = (int) len;
	return l;
}

static inline bool
label_equals(const char *stored, MetricsLabel l)
{
	return memcmp(stored, l.data, l.len) == 0 && stored[l.len] == '\0';
}

static inline bool
slot_matches(MetricsSlot *slot, MetricsLabel l1, MetricsLabel l2)
{
	return label_equals(slot->labels[0], l1) && label_equals(slot->labels[1], l2);
}

static MetricsSlot *
scan_published(int family, MetricsLabel l1, MetricsLabel l2, int from, int to)
{
	for (int i = from; i < to; i++)
	{
		MetricsSlot *slot = family_slot(family, i);

		if (slot_matches(slot, l1, l2))
			return slot;
	}
	return NULL;
}

static void
metrics_cache_create(void)
{
	uint32		want = 4 * (uint32) (metrics_shared->max_labels + 1) * MF_NFAMILIES;
	uint32		size = 64;

	metrics_cache_failed = true;	/* unless the allocation succeeds */
	while (size < want && size < METRICS_CACHE_MAX)
		size <<= 1;
	metrics_cache = MemoryContextAllocExtended(TopMemoryContext,
											   size * sizeof(MetricsCacheEntry),
											   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
	if (metrics_cache == NULL)
		return;
	metrics_cache_mask = size - 1;
	metrics_cache_failed = false;
}

/*
 * How many of the broker worker's own label sets (broker_worker.c,
 * broker_worker_metric_labels) are not registered yet among the first
 * nused slots.  The SQL recording functions may not take the slots these
 * need, so that arbitrary SQL labels never push the worker's into
 * "_overflow".  Called under metrics_shared->lock; no allocation.
 */
static int
worker_labels_pending(MetricsFamily family, int nused)
{
	int			pending = 0;
	const char *s1;
	const char *s2;
	MetricsLabel none = {"", 0};

	for (int i = 0; broker_worker_metric_labels(family, i, &s1, &s2); i++)
	{
		char		buf1[METRICS_LABEL_LEN];
		char		buf2[METRICS_LABEL_LEN];

		if (scan_published(family, metrics_c_label(s1, buf1),
						   s2 ? metrics_c_label(s2, buf2) : none, 0, nused) == NULL)
			pending++;
	}
	return pending;
}

/*
 * Find or register the slot of a label set (l2 is empty but for trades).
 * Returns NULL when the family is full (the caller decides between the
 * overflow slot and an error): for a SQL caller (for_sql), full means
 * that only the slots the worker's unregistered label sets need are left.
 * Never raises an error.
 */
static MetricsSlot *
metrics_lookup(MetricsFamily family, MetricsLabel l1, MetricsLabel l2, bool for_sql)
{
	MetricsSlot *slot;
	MetricsFamilyState *fs = &metrics_shared->families[family];
	uint32		hash;
	uint32		i = 0;
	int			n;

	hash = hash_bytes((const unsigned char *) l1.data, l1.len);
	if (l2.len > 0)
		hash = hash_combine(hash, hash_bytes((const unsigned char *) l2.data, l2.len));
	hash = hash_combine(hash, (uint32) family);

	if (metrics_cache == NULL && !metrics_cache_failed)
		metrics_cache_create();
	if (metrics_cache)
	{
		for (i = hash & metrics_cache_mask; metrics_cache[i].slot != NULL;
			 i = (i + 1) & metrics_cache_mask)
		{
			MetricsCacheEntry *e = &metrics_cache[i];

			if (e->hash == hash && e->family == family &&
				slot_matches(e->slot, l1, l2))
				return e->slot;
		}
	}

	/* published by another process? */
	n = pg_atomic_read_u32(&fs->nused);
	pg_read_barrier();
	slot = scan_published(family, l1, l2, 0, n);

	if (slot == NULL)
	{
		if (n >= metrics_shared->max_labels)
			return NULL;

		LWLockAcquire(metrics_shared->lock, LW_EXCLUSIVE);
		{
			int			now_used = pg_atomic_read_u32(&fs->nused);

			slot = scan_published(family, l1, l2, n, now_used);
			if (slot == NULL && now_used < metrics_shared->max_labels &&
				(!for_sql || now_used + worker_labels_pending(family, now_used) <
				 metrics_shared->max_labels))
			{
				slot = family_slot(family, now_used);
				memcpy(slot->labels[0], l1.data, l1.len);
				slot->labels[0][l1.len] = '\0';
				memcpy(slot->labels[1], l2.data, l2.len);
				slot->labels[1][l2.len] = '\0';
				pg_write_barrier();
				pg_atomic_write_u32(&fs->nused, now_used + 1);
			}
		}
		LWLockRelease(metrics_shared->lock);
		if (slot == NULL)
			return NULL;
	}

	/* i is the free entry where the search ended */
	if (metrics_cache && (metrics_cache_used + 1) * 4 <= (metrics_cache_mask + 1) * 3)
	{
		metrics_cache[i].hash = hash;
		metrics_cache[i].family = family;
		metrics_cache[i].slot = slot;
		metrics_cache_used++;
	}
	return slot;
}

/* The slot for the C API: the overflow slot when the family is full. */
static MetricsSlot *
metrics_lookup_or_overflow(MetricsFamily family, const char *l1,
						   const char *l2)
{
	char		buf1[METRICS_LABEL_LEN];
	char		buf2[METRICS_LABEL_LEN];
	MetricsLabel none = {"", 0};
	MetricsSlot *slot;

	slot = metrics_lookup(family, metrics_c_label(l1, buf1),
						  family == MF_TRADES ? metrics_c_label(l2, buf2) : none, false);
	if (slot == NULL)
	{
		pg_atomic_fetch_add_u64(&metrics_shared->families[family].overflow, 1);
		slot = family_slot(family, metrics_shared->max_labels);
	}
	return slot;
}

static inline void
slot_observe(MetricsSlot *slot, double seconds, int http_status)
{
	int			b = 0;
	int			code;

	if (!(seconds >= 0.0))		/* also NaN */
		seconds = 0.0;
	if (seconds > METRICS_MAX_SECONDS)
		seconds = METRICS_MAX_SECONDS;
	while (b < METRICS_NBOUNDS && seconds > metrics_bounds[b])
		b++;
	code = (http_status >= 100 && http_status <= 599) ? http_status / 100 : 0;

	pg_atomic_fetch_add_u64(&slot->values[MV_BUCKET0 + b], 1);
	pg_atomic_fetch_add_u64(&slot->values[MV_SUM_NS],
							(uint64) llround(seconds * 1e9));
	pg_atomic_fetch_add_u64(&slot->values[MV_CODE0 + code], 1);
}

/* ---------------------------------------------------------------------
 * The C API (never errors).
 * ---------------------------------------------------------------------
 */

void
metrics_observe_request(const char *endpoint, double seconds, int http_status)
{
	if (metrics_shared == NULL)
		return;
	slot_observe(metrics_lookup_or_overflow(MF_API_REQUESTS, endpoint, NULL),
				 seconds, http_status);
}

void
metrics_count_exception(const char *kind)
{
	if (metrics_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&metrics_lookup_or_overflow(MF_EXCEPTIONS, kind, NULL)->values[MV_COUNTER], 1);
}

void
metrics_count_trade(const char *side, const char *status)
{
	if (metrics_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&metrics_lookup_or_overflow(MF_TRADES, side, status)->values[MV_COUNTER], 1);
}

/* ---------------------------------------------------------------------
 * For the SQL functions (labels already validated by the caller).
 * ---------------------------------------------------------------------
 */

MetricsLookup
metrics_sql_observe_request(MetricsLabel endpoint, double seconds,
							int http_status)
{
	MetricsLabel none = {"", 0};
	MetricsSlot *slot = metrics_lookup(MF_API_REQUESTS, endpoint, none, true);

	if (slot == NULL)
	{
		pg_atomic_fetch_add_u64(&metrics_shared->families[MF_API_REQUESTS].overflow, 1);
		return ML_FULL;
	}
	slot_observe(slot, seconds, http_status);
	return ML_FOUND;
}

MetricsLookup
metrics_sql_count(MetricsFamily family, MetricsLabel l1, MetricsLabel l2)
{
	MetricsSlot *slot = metrics_lookup(family, l1, l2, true);

	if (slot == NULL)
	{
		pg_atomic_fetch_add_u64(&metrics_shared->families[family].overflow, 1);
		return ML_FULL;
	}
	pg_atomic_fetch_add_u64(&slot->values[MV_COUNTER], 1);
	return ML_FOUND;
}

/* ---------------------------------------------------------------------
 * Snapshots for the views.
 * ---------------------------------------------------------------------
 */

static bool
slot_snapshot(MetricsSlot *slot, MetricsSnapshot *snap)
{
	bool		nonzero = false;

	memcpy(snap->labels, slot->labels, sizeof(snap->labels));
	for (int v = 0; v < METRICS_NVALUES; v++)
	{
		snap->values[v] = pg_atomic_read_u64(&slot->values[v]);
		nonzero |= (snap->values[v] != 0);
	}
	return nonzero;
}

int
metrics_snapshot(MetricsFamily family, MetricsSnapshot **out)
{
	int			n = pg_atomic_read_u32(&metrics_shared->families[family].nused);
	int			count = 0;
	MetricsSnapshot *snaps;

	pg_read_barrier();
	snaps = palloc((n + 1) * sizeof(MetricsSnapshot));
	for (int i = 0; i < n; i++)
		(void) slot_snapshot(family_slot(family, i), &snaps[count++]);
	/* the overflow label only once something went there */
	if (slot_snapshot(family_slot(family, metrics_shared->max_labels),
					  &snaps[count]))
		count++;
	*out = snaps;
	return count;
}

uint64
metrics_overflow_total(MetricsFamily family)
{
	return pg_atomic_read_u64(&metrics_shared->families[family].overflow);
}

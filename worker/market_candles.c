/*-------------------------------------------------------------------------
 *
 * market_candles.c
 *	  One step of the candle backfill: take the next request of the oldest
 *	  runnable job (trading._backfill_next), wait for kite.historical,
 *	  fetch it, and apply it (trading._backfill_apply: the candles and the
 *	  job's progress in one transaction).  A worker killed at any point
 *	  resumes at the first request whose transaction did not commit; the
 *	  upsert makes a request fetched twice harmless.
 *
 * So that the budget stays busy while a reply is applied, up to
 * MARKET_AHEAD following requests (of this job and the next ones, as
 * _backfill_next lists them) are out at the broker at any time, each sent
 * as soon as kite.historical grants it (market_http_start); a later step
 * receives the one it needs (market_http_finish).  What was sent ahead for
 * a request that is no longer next (a cancelled job, a reply that failed
 * and will be fetched again) is dropped.  The counters of
 * trading.market_worker_status are kept here (MarketShared, market.h).
 *
 * Errors: a connection failure, HTTP 429 or 5xx, or a Kite
 * NetworkException/GeneralException/DataException (TR504 from the apply)
 * is retried with exponential backoff (1 s .. 60 s) and counted in the
 * job; an InputException or a malformed reply fails the job with its
 * message.  Without a usable broker session the jobs wait.
 *
 * The session comes from broker_load_session() (the broker worker's
 * decrypted token, reloaded when set_broker_session bumps session_gen).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "broker_worker.h"
#include "market.h"
#include "ratelimit.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define RATE_CLASS		"kite.historical"
#define NO_SESSION_MS	1000
#define MAX_BACKOFF_MS	60000
#define AHEAD_MAX_WAIT_MS 1000	/* longest wait for the grant of a request
								 * sent ahead, none in flight */
#define AHEAD_SHORT_WAIT_MS 150 /* the same, others in flight */

static BrokerSession session;
static MemoryContext SessionContext = NULL;
static uint64 seen_session_gen = PG_UINT64_MAX;
static int	failures = 0;

static void read_limits(void);
static TimestampTz not_before = 0;

typedef struct NextArgs
{
	MemoryContext cxt;
	bool		found;
	int64		job;
	int32		chunk;
	char	   *path;
	int			nnext;			/* the following requests */
	int64		next_job[MARKET_AHEAD];
	int32		next_chunk[MARKET_AHEAD];
	char	   *next_path[MARKET_AHEAD];
} NextArgs;

/* the requests sent ahead (market_http_start), by slot */
typedef struct Ahead
{
	bool		pending;
	int64		job;
	int32		chunk;
	char		path[256];
	MarketResponse resp;
} Ahead;

static Ahead ahead[MARKET_AHEAD];

static bool
ahead_is(Ahead *a, int64 job, int32 chunk, const char *path)
{
	return a->pending && a->job == job && a->chunk == chunk && strcmp(a->path, path) == 0;
}

/* drop the requests sent ahead that are no longer among the next ones */
static void
drop_ahead(NextArgs *next)
{
	for (int i = 0; i < MARKET_AHEAD; i++)
	{
		bool		keep = false;

		if (!ahead[i].pending)
			continue;
		if (next && next->found)
		{
			keep = ahead_is(&ahead[i], next->job, next->chunk, next->path);
			for (int k = 0; k < next->nnext && !keep; k++)
				keep = ahead_is(&ahead[i], next->next_job[k], next->next_chunk[k], next->next_path[k]);
		}
		if (!keep)
		{
			market_http_abandon(i);
			ahead[i].pending = false;
		}
	}
}

static int
find_ahead(int64 job, int32 chunk, const char *path)
{
	for (int i = 0; i < MARKET_AHEAD; i++)
		if (ahead_is(&ahead[i], job, chunk, path))
			return i;
	return -1;
}

static void
next_body(void *arg)
{
	NextArgs   *a = (NextArgs *) arg;
	Datum		args[1];
	Oid			types[1] = {TEXTOID};
	bool		isnull;

	SPI_execute("SET LOCAL search_path = pg_catalog, pg_temp", false, 0);
	if (ratelimit_sync_needed())
		(void) ratelimit_sync(RATELIMIT_SYNC_NOWAIT);
	read_limits();
	args[0] = CStringGetTextDatum(market_historical_max_days);
	if (SPI_execute_with_args("SELECT n.id, n.chunk, n.path, x.job, x.chunk, x.path "
							  "FROM trading._backfill_next($1) n "
							  "LEFT JOIN LATERAL ROWS FROM (pg_catalog.unnest(n.next_jobs), pg_catalog.unnest(n.next_chunks), "
							  "     pg_catalog.unnest(n.next_paths)) WITH ORDINALITY AS x(job, chunk, path, i) ON true "
							  "ORDER BY x.i",
							  1, types, args, NULL, false, 1 + MARKET_AHEAD) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.backfill_queue");
	a->job = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	a->found = !isnull;
	if (!a->found)
		return;
	a->chunk = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	a->path = MemoryContextStrdup(a->cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
	for (a->nnext = 0; a->nnext < Min(SPI_processed, MARKET_AHEAD); a->nnext++)
	{
		HeapTuple	t = SPI_tuptable->vals[a->nnext];

		(void) SPI_getbinval(t, SPI_tuptable->tupdesc, 4, &isnull);
		if (isnull)
			break;
		a->next_job[a->nnext] = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 4, &isnull));
		a->next_chunk[a->nnext] = DatumGetInt32(SPI_getbinval(t, SPI_tuptable->tupdesc, 5, &isnull));
		a->next_path[a->nnext] = MemoryContextStrdup(a->cxt, SPI_getvalue(t, SPI_tuptable->tupdesc, 6));
	}
}

typedef struct ApplyArgs
{
	int64		job;
	int32		chunk;
	const char *body;
	int64		candles;		/* out */
} ApplyArgs;

static void
apply_body(void *arg)
{
	ApplyArgs  *a = (ApplyArgs *) arg;
	Datum		args[3];
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};

	SPI_execute("SET LOCAL search_path = pg_catalog, pg_temp", false, 0);
	args[0] = Int64GetDatum(a->job);
	args[1] = Int32GetDatum(a->chunk);
	args[2] = CStringGetTextDatum(a->body);
	if (SPI_execute_with_args("SELECT trading._backfill_apply($1, $2, $3)",
							  3, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not apply the historical reply");
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		a->candles = isnull ? 0 : DatumGetInt64(d);
	}
}

typedef struct ErrorArgs
{
	int64		job;
	const char *message;
	bool		fatal;
} ErrorArgs;

static void
error_body(void *arg)
{
	ErrorArgs  *a = (ErrorArgs *) arg;
	Datum		args[3];
	Oid			types[3] = {INT8OID, TEXTOID, BOOLOID};

	args[0] = Int64GetDatum(a->job);
	args[1] = CStringGetTextDatum(a->message);
	args[2] = BoolGetDatum(a->fatal);
	SPI_execute_with_args("SELECT trading._backfill_error($1, $2, $3)",
						  3, types, args, NULL, false, 1);
}

/* record a failed request; transient ones back off */
static void
job_error(int64 job, const char *message, bool fatal, long *wait_ms)
{
	ErrorArgs	ea = {job, message, fatal};
	ErrorData  *e;

	e = trading_bgw_run_xact("trading market data: recording a backfill error", error_body, &ea);
	if (e)
		ereport(LOG, (errmsg("trading market data could not record a backfill error: %s", e->message)));
	market_count(fatal ? &market_shared->failures : &market_shared->retries, 1);
	if (fatal)
	{
		ereport(LOG, (errmsg("trading market data: backfill job %lld failed: %s",
							 (long long) job, message)));
		failures = 0;
		*wait_ms = 0;
		return;
	}
	failures++;
	*wait_ms = Min((long) 1000 << Min(failures - 1, 6), MAX_BACKOFF_MS);
	not_before = GetCurrentTimestamp() + (TimestampTz) *wait_ms * 1000;
}

/*
 * Pacing.  The broker counts a request when it arrives.  Each request is
 * stamped with the moment it left (libcurl's pretransfer time: the request
 * is written right after it), and a new request is sent only when, for
 * every limit (n per window) of kite.historical, the n-th most recent
 * stamp has left the window by trading.market_rate_margin: the broker
 * then never counts more than n in a window as long as a request reaches
 * it, and is counted, within the margin of the one n before it.  The
 * shared limiter (ratelimit_try, as a worker, with the same margin) is
 * asked too, so other users of kite.historical are accounted for.
 *
 * (The first version stamped the reply's first byte instead, which bounds
 * the arrival whatever the delays, but costs the broker's whole time to
 * answer once per window: 130 ms for a 60-day minute reply of the paper
 * broker, 6 windows out of 7 s for the year of 3 instruments, and
 * the budget could not be used to 95%.)
 */
#define STAMP_RING	256
#define MAX_LIMITS	8

static int64 stamps[STAMP_RING];	/* monotonic us, ring */
static int	nstamps = 0;
static int	stamp_next = 0;
static int	nlimits = 0;
static int	limit_n[MAX_LIMITS];
static int64 limit_per_us[MAX_LIMITS];

static void
read_limits(void)
{
	nlimits = 0;
	if (SPI_execute("SELECT requests, (extract(epoch FROM per) * 1000000)::int8 "
					"FROM trading.rate_limits WHERE endpoint = '" RATE_CLASS "' "
					"ORDER BY per", true, MAX_LIMITS) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.rate_limits");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		limit_n[nlimits] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		limit_per_us[nlimits] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		nlimits++;
	}
}

/* microseconds until the stamps allow one more request (0 = now) */
static int64
stamps_wait(int64 now)
{
	int64		wait = 0;

	for (int l = 0; l < nlimits; l++)
	{
		int			n = limit_n[l];
		int64		nth;

		if (n > STAMP_RING || nstamps < n)
			continue;			/* too large to track here: the limiter alone */
		nth = stamps[(stamp_next - n + STAMP_RING) % STAMP_RING];
		wait = Max(wait, nth + limit_per_us[l] + (int64) market_rate_margin_ms * 1000 - now);
	}
	return wait;
}

static void
stamp(int64 t)
{
	stamps[stamp_next] = t;
	stamp_next = (stamp_next + 1) % STAMP_RING;
	if (nstamps < STAMP_RING)
		nstamps++;
}

static bool
rate_grant(long *wait_ms)
{
	static bool waiting = false;	/* counted in rate_waits already */
	int64		retry_us = 0;
	int64		wait = stamps_wait(trading_monotonic_us());
	RateLimitResult r;

	if (wait > 0)
	{
		*wait_ms = Max(1, (long) ((wait + 999) / 1000));
		if (!waiting)
			market_count(&market_shared->rate_waits, 1);
		waiting = true;
		return false;
	}
	r = ratelimit_try(RATE_CLASS, 1, (int64) market_rate_margin_ms * 1000, &retry_us);
	if (r == RATELIMIT_GRANTED)
	{
		waiting = false;
		return true;
	}
	if (!waiting)
		market_count(&market_shared->rate_waits, 1);
	waiting = true;
	if (r == RATELIMIT_UNKNOWN_ENDPOINT || r == RATELIMIT_BAD_COST)
	{
		static bool warned = false;

		if (!warned)
			ereport(WARNING,
					(errmsg("rate limit endpoint \"%s\" is not configured; candle backfills wait",
							RATE_CLASS),
					 errhint("Add it to trading.rate_limits.")));
		warned = true;
		*wait_ms = 5000;
		return false;
	}
	*wait_ms = Max(1, (long) ((retry_us + 999) / 1000));
	return false;
}

/*
 * Send a granted request in a free slot; the slot, or -1 if none is free
 * (or libcurl refused the transfer).
 */
static int
start_ahead(int64 job, int32 chunk, const char *path)
{
	int			slot = -1;
	Ahead	   *a;

	for (int k = 0; k < MARKET_AHEAD && slot < 0; k++)
		if (!ahead[k].pending)
			slot = k;
	if (slot < 0 || strlen(path) >= sizeof(ahead[0].path))
		return -1;
	a = &ahead[slot];
	a->pending = market_http_start(slot, broker_make_url(path, NULL), session.auth_header,
								   broker_timeout_ms, &a->resp);
	stamp(a->resp.sent_us ? a->resp.sent_us : trading_monotonic_us());
	a->job = job;
	a->chunk = chunk;
	strlcpy(a->path, path, sizeof(a->path));
	return a->pending ? slot : -1;
}

/*
 * Send the following requests now, as many as their grants allow, while
 * this one is applied: the broker prepares their replies meanwhile.  A
 * grant due within AHEAD_SHORT_WAIT_MS is waited for (the requests of a
 * window then go out together at its start); with none in flight, the
 * first one waits for its grant up to one window: it could not go out
 * earlier on the other path either, which would apply first, then wait,
 * then send.
 */
static void
send_ahead(NextArgs *next)
{
	for (int i = 0; i < next->nnext; i++)
	{
		int			slot = -1;
		bool		in_flight = false;
		bool		granted;
		long		w = 0;
		int64		give_up;

		if (find_ahead(next->next_job[i], next->next_chunk[i], next->next_path[i]) >= 0)
			continue;
		for (int k = 0; k < MARKET_AHEAD; k++)
		{
			in_flight |= ahead[k].pending;
			if (!ahead[k].pending && slot < 0)
				slot = k;
		}
		if (slot < 0 || strlen(next->next_path[i]) >= sizeof(ahead[0].path))
			return;
		give_up = trading_monotonic_us() +
			(in_flight ? AHEAD_SHORT_WAIT_MS : AHEAD_MAX_WAIT_MS) * 1000;
		for (;;)
		{
			granted = rate_grant(&w);
			if (granted || trading_monotonic_us() + (int64) w * 1000 > give_up)
				break;
			(void) trading_bgw_nap(w);
		}
		if (!granted)
			return;
		(void) start_ahead(next->next_job[i], next->next_chunk[i], next->next_path[i]);
	}
}

/* a short, valid-UTF-8 excerpt of an untrusted body for last_error */
static char *
excerpt(const char *body, Size len)
{
	int			n = (int) Min(len, 300);

	if (!pg_verifymbstr(body, n, true))
		return pstrdup("(reply not valid UTF-8)");
	return pnstrdup(body, pg_mbcliplen(body, n, n));
}

bool
market_backfill_step(long *wait_ms)
{
	NextArgs	next = {CurrentMemoryContext, false, 0, 0, NULL};
	ErrorData  *e;
	MarketResponse resp;
	char	   *url;
	uint64		gen;
	int			slot;
	ApplyArgs	aa;

	if (GetCurrentTimestamp() < not_before)
	{
		*wait_ms = Max(1, (long) ((not_before - GetCurrentTimestamp()) / 1000));
		return false;
	}

	/*
	 * The broker worker's session, reloaded when a new one is set
	 * (set_broker_session bumps session_gen) or the broker refused it.
	 * Without one, the jobs wait untouched.
	 */
	gen = pg_atomic_read_u64(&bw_shared->session_gen);
	if (gen != seen_session_gen)
	{
		if (SessionContext == NULL)
			SessionContext = AllocSetContextCreate(TopMemoryContext, "trading market session",
												   ALLOCSET_SMALL_SIZES);
		broker_load_session(&session, SessionContext);
		seen_session_gen = gen;
	}
	if (!session.present || !session.readable || session.expired || !session.auth_header)
	{
		*wait_ms = NO_SESSION_MS;
		return false;
	}

	e = trading_bgw_run_xact("trading market data: next backfill request", next_body, &next);
	if (e)
	{
		ereport(LOG, (errmsg("trading market data could not read the backfill queue: %s", e->message)));
		*wait_ms = 5000;
		return false;
	}
	if (!next.found)
	{
		drop_ahead(NULL);
		*wait_ms = 1000;
		return false;
	}

	/* a job was cancelled, or a reply failed: what was sent ahead is stale */
	drop_ahead(&next);
	slot = find_ahead(next.job, next.chunk, next.path);
	if (slot < 0)
	{
		if (!rate_grant(wait_ms))
			return false;
		/* in a slot of its own, so that the following ones go out with it */
		slot = start_ahead(next.job, next.chunk, next.path);
		if (slot >= 0)
			send_ahead(&next);
	}
	if (slot >= 0)
	{
		/* sent ahead (maybe while an earlier reply was applied): receive it */
		market_http_finish(slot, &ahead[slot].resp);
		ahead[slot].pending = false;
		resp = ahead[slot].resp;
		resp.body = palloc(resp.len + 1);
		memcpy(resp.body, ahead[slot].resp.body, resp.len + 1);
	}
	else
	{
		/* no slot free (cannot happen: those in flight follow this one) */
		url = broker_make_url(next.path, NULL);
		market_http_get(url, session.auth_header, broker_timeout_ms, &resp);
		stamp(resp.sent_us ? resp.sent_us : trading_monotonic_us());
	}

	if (resp.curl_code != 0)
	{
		job_error(next.job, psprintf("request failed: %s", resp.too_large ? "reply too large" : resp.errbuf),
				  resp.too_large, wait_ms);
		return false;
	}
	if (resp.http_status == 429 || resp.http_status >= 500 || resp.http_status == 403)
	{
		job_error(next.job, psprintf("HTTP %ld: %s", resp.http_status, excerpt(resp.body, resp.len)),
				  false, wait_ms);
		if (resp.http_status == 403)
			seen_session_gen = PG_UINT64_MAX;
		return false;
	}
	if (resp.http_status != 200)
	{
		job_error(next.job, psprintf("HTTP %ld: %s", resp.http_status, excerpt(resp.body, resp.len)),
				  true, wait_ms);
		return true;
	}
	if (!pg_verifymbstr(resp.body, (int) resp.len, true))
	{
		job_error(next.job, "the historical reply is not valid UTF-8", true, wait_ms);
		return true;
	}

	send_ahead(&next);

	aa.job = next.job;
	aa.chunk = next.chunk;
	aa.body = resp.body;
	aa.candles = 0;
	e = trading_bgw_run_xact("trading market data: applying candles", apply_body, &aa);
	if (e)
	{
		bool		transient = e->sqlerrcode == ERRCODE_TRADING_MARKET_RETRY;

		job_error(next.job, e->message, !transient, wait_ms);
		return !transient;
	}
	market_count(&market_shared->requests, 1);
	market_count(&market_shared->candles, (uint64) aa.candles);
	failures = 0;
	return true;
}

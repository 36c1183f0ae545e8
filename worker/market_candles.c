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
} NextArgs;

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
	if (SPI_execute_with_args("SELECT id, chunk, path FROM trading._backfill_next($1)",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.backfill_queue");
	a->job = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	a->found = !isnull;
	if (!a->found)
		return;
	a->chunk = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	a->path = MemoryContextStrdup(a->cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
}

typedef struct ApplyArgs
{
	int64		job;
	int32		chunk;
	const char *body;
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
 * Pacing.  The broker counts a request when it arrives, and arrivals are
 * later than our sends by a delay that varies (network, the broker's
 * scheduling): pacing by send times alone, a request sent exactly one
 * window after an earlier one can arrive inside that earlier one's window
 * and get a 429.  So each request is stamped with the moment its reply's
 * first byte arrived (send + time to first byte): the broker cannot answer
 * before the request reached it, so that stamp is never earlier than the
 * broker's own count of it.  A new request is sent only when, for every
 * limit (n per window) of kite.historical, the n-th most recent stamp has
 * left the window: the broker then never counts more than n, whatever the
 * delays.  The cost is one time-to-first-byte per window.  On top of this
 * the shared limiter (ratelimit_try, as a worker) is asked, so other users
 * of kite.historical are accounted for, with trading.market_rate_margin.
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
		wait = Max(wait, nth + limit_per_us[l] - now);
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
	int64		retry_us = 0;
	int64		wait = stamps_wait(trading_monotonic_us());
	RateLimitResult r;

	if (wait > 0)
	{
		*wait_ms = Max(1, (long) ((wait + 999) / 1000));
		return false;
	}
	r = ratelimit_try(RATE_CLASS, 1, (int64) market_rate_margin_ms * 1000, &retry_us);
	if (r == RATELIMIT_GRANTED)
		return true;
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
	int64		sent;

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
		*wait_ms = 1000;
		return false;
	}

	if (!rate_grant(wait_ms))
		return false;

	url = broker_make_url(next.path, NULL);
	sent = trading_monotonic_us();
	market_http_get(url, session.auth_header, broker_timeout_ms, &resp);
	/* the reply's first byte, or now if none came: see "Pacing" above */
	stamp(resp.ttfb_us > 0 ? Min(sent + resp.ttfb_us, trading_monotonic_us())
		  : trading_monotonic_us());

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

	{
		ApplyArgs	aa = {next.job, next.chunk, resp.body};

		e = trading_bgw_run_xact("trading market data: applying candles", apply_body, &aa);
	}
	if (e)
	{
		bool		transient = e->sqlerrcode == ERRCODE_TRADING_MARKET_RETRY;

		job_error(next.job, e->message, !transient, wait_ms);
		return !transient;
	}
	failures = 0;
	return true;
}

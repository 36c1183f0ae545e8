/*-------------------------------------------------------------------------
 *
 * broker_worker.c
 *	  The broker worker: a background worker that polls Kite (orders,
 *	  trades, positions, holdings, margins, quotes of the watchlist) and
 *	  keeps the desk's tables current.  This file holds the module entry
 *	  points (GUCs, registration, shared memory) and the worker's main loop
 *	  and scheduler; HTTP is in broker_http.c, transactions in
 *	  broker_apply.c, SQL functions in broker_sql.c.
 *
 * Lifecycle, settings, errors and backoff as users see them: docs/WORKER.md.
 * The lifecycle runs on the kit (bgw_common.h): broker_worker_main()
 * connects, waits for the extension, then loops once per wake-up: reload
 * what changed, start the requests that are due and allowed, then wait on
 * the requests in flight (broker_http_poll) or nap.
 *
 * Scheduling: each endpoint has a due time and a not-before time (rate
 * limiter refusal or error backoff).  A due endpoint with no request in
 * flight asks the rate limiter of its class; a refusal only postpones it
 * ("not yet").  Due endpoints are served oldest first, so a shared class
 * (kite.api) is shared fairly.  The next poll is due one interval after the
 * previous one started, so an order filled at the broker appears within
 * the interval plus one request.  Errors back off exponentially with
 * jitter, per endpoint; a TokenException stops all polling until a new
 * session is set.
 *
 * Shared memory and its locking rules: see broker_worker.h.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include <math.h>

#include "bgw_common.h"
#include "broker_worker.h"
#include "correlation.h"
#include "metrics.h"
#include "ratelimit.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "utils/snapmgr.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void broker_worker_main(Datum main_arg);

BrokerWorkerShared *bw_shared = NULL;

const BrokerEndpointInfo broker_endpoints[BEP_COUNT] = {
	{"orders", "/orders", "kite.api", NULL},
	{"trades", "/trades", "kite.api", NULL},
	{"positions", "/portfolio/positions", "kite.api", NULL},
	{"holdings", "/portfolio/holdings", "kite.api", NULL},
	{"margins", "/user/margins", "kite.api", NULL},
	{"quotes", "/quote", "kite.quote", NULL},
};

const char *const broker_error_names[BERR_COUNT] = {
	"timeout", "connection", "http_429", "http_4xx", "http_5xx", "not_json",
	"malformed", "broker_error", "token", "too_large", "apply", "schema",
	"encoding"
};

/* the trades the worker counts: side x final status */
static const char *const final_sides[] = {"BUY", "SELL"};
static const char *const final_statuses[] = {"COMPLETE", "CANCELLED", "REJECTED"};

bool
broker_worker_metric_labels(MetricsFamily family, int i,
							const char **l1, const char **l2)
{
	*l2 = NULL;
	switch (family)
	{
		case MF_API_REQUESTS:
			if (i >= BEP_COUNT)
				return false;
			*l1 = broker_endpoints[i].name;
			return true;
		case MF_EXCEPTIONS:
			if (i >= BERR_COUNT)
				return false;
			*l1 = broker_error_names[i];
			return true;
		case MF_TRADES:
			if (i >= lengthof(final_sides) * lengthof(final_statuses))
				return false;
			*l1 = final_sides[i / lengthof(final_statuses)];
			*l2 = final_statuses[i % lengthof(final_statuses)];
			return true;
		default:
			return false;
	}
}

const char *const broker_state_names[] = {
	"not_running", "starting", "waiting_for_database", "waiting_for_extension",
	"paused", "no_session", "polling", "session_expired", "rate_limit_error"
};

const char *const broker_session_names[] = {
	"unknown", "none", "active", "expired", "unreadable"
};

/* GUCs */
static bool broker_worker_enabled = true;
char	   *broker_url = NULL;
char	   *broker_ca_file = NULL;
int			broker_connect_timeout_ms = 3000;
int			broker_timeout_ms = 7000;
int			broker_max_connections = 8;
int			broker_rate_margin_ms = 50;
int			broker_max_backoff_ms = 60000;
int			broker_max_response_kb = 65536;
bool		broker_poll_enabled = true;

#define POLL_STEP_MS		50	/* longest curl_multi_poll between checks */
#define IDLE_STEP_MS		1000	/* longest sleep without requests */
#define RELOAD_EVERY_US		(5 * 1000000)	/* configuration safety net */

/* ---------------------------------------------------------------------
 * Module entry points
 * ---------------------------------------------------------------------
 */
void
broker_worker_init(void)
{
	DefineCustomBoolVariable("trading.broker_worker",
							 "Start the broker worker.",
							 "When off, the postmaster does not start the worker that polls the broker.",
							 &broker_worker_enabled, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("trading.broker_url",
							   "Base URL of the Kite Connect API.",
							   NULL, &broker_url, "https://api.kite.trade",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("trading.broker_ca_file",
							   "CA bundle to verify the broker's TLS certificate (empty: the system's).",
							   NULL, &broker_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_connect_timeout",
							"Timeout to connect to the broker.",
							NULL, &broker_connect_timeout_ms, 3000, 100, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_timeout",
							"Total timeout of one request to the broker.",
							NULL, &broker_timeout_ms, 7000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_max_connections",
							"Most connections the worker keeps open to the broker.",
							NULL, &broker_max_connections, 8, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_rate_margin",
							"Extra spacing the worker keeps beyond the rate limits, against network jitter.",
							NULL, &broker_rate_margin_ms, 50, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_max_backoff",
							"Longest wait before retrying an endpoint that keeps failing.",
							NULL, &broker_max_backoff_ms, 60000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.broker_max_response",
							"Largest broker response the worker accepts.",
							NULL, &broker_max_response_kb, 65536, 64, 262144,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomBoolVariable("trading.broker_poll_enabled",
							 "Poll the broker (off pauses the worker).",
							 NULL, &broker_poll_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	if (!broker_worker_enabled)
		return;

	trading_register_worker("broker_worker_main", "trading broker worker",
							BgWorkerStart_RecoveryFinished, 5);
}

void
broker_worker_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(BrokerWorkerShared)));
}

void
broker_worker_shmem_startup(void)
{
	bool		found;

	bw_shared = ShmemInitStruct("trading.broker_worker",
								sizeof(BrokerWorkerShared), &found);
	if (found)
		return;
	memset(bw_shared, 0, sizeof(BrokerWorkerShared));
	SpinLockInit(&bw_shared->mutex);
	bw_shared->state = BWS_NOT_RUNNING;
	bw_shared->session_state = BSS_UNKNOWN;
	bw_shared->procno = -1;
	pg_atomic_init_u32(&bw_shared->database_seen, 1);	/* until a connection
														 * fails */
	pg_atomic_init_u64(&bw_shared->session_gen, 0);
	pg_atomic_init_u64(&bw_shared->config_gen, 0);
	pg_atomic_init_u64(&bw_shared->connections_opened, 0);
	pg_atomic_init_u64(&bw_shared->requests_total, 0);
	pg_atomic_init_u64(&bw_shared->cycles_total, 0);
	for (int i = 0; i < BEP_COUNT; i++)
	{
		BrokerEndpointShared *e = &bw_shared->ep[i];

		e->last_error_type = -1;
		pg_atomic_init_u64(&e->requests_total, 0);
		pg_atomic_init_u64(&e->errors_total, 0);
		for (int k = 0; k < BERR_COUNT; k++)
			pg_atomic_init_u64(&e->errors[k], 0);
	}
}

/* Set the worker's latch, if it runs (from any backend). */
void
broker_worker_wake(void)
{
	int			procno;

	SpinLockAcquire(&bw_shared->mutex);
	procno = bw_shared->procno;
	SpinLockRelease(&bw_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

void
broker_set_session_state(BrokerSessionState s)
{
	SpinLockAcquire(&bw_shared->mutex);
	bw_shared->session_state = s;
	SpinLockRelease(&bw_shared->mutex);
}

static void
set_state(BrokerWorkerState s)
{
	SpinLockAcquire(&bw_shared->mutex);
	bw_shared->state = s;
	SpinLockRelease(&bw_shared->mutex);
}

/* ---------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------
 */

/* scheduler state of one endpoint (worker-local) */
typedef struct EpSched
{
	int64		due_us;			/* monotonic time the next poll is due */
	int64		not_before_us;	/* rate limiter or backoff wait */
	int64		started_us;		/* the request in flight started */
	int64		cycle_start_us; /* quotes: first batch of this round */
	int			failures;
	int			batch;			/* quotes: next batch */
	char		mode[8];		/* quotes: mode of the request in flight */
	bool		in_flight;
	uint64		session_epoch;	/* the session the request was sent with */
	int			cycle;			/* index into cycles[] */
	pg_uuid_t	op;				/* correlation id of the request */
} EpSched;

/* one poll cycle: a correlation root and the requests it started */
typedef struct PollCycle
{
	bool		used;
	int			pending;
	bool		failed;
	pg_uuid_t	op;
} PollCycle;

static EpSched sched[BEP_COUNT];
static PollCycle cycles[BEP_COUNT + 1];
static BrokerConfig cfg;
static BrokerSession session;
static MemoryContext ConfigContext;
static MemoryContext SessionContext;
static MemoryContext LoopContext;
static uint64 seen_session_gen;
static uint64 seen_config_gen;
static int64 last_reload_us;
static bool reload_wanted = true;
static bool session_wanted = true;
static bool logged_session_wait = false;
static uint64 session_epoch = 0;	/* bumped by each session (re)load */

/* the last synchronisation of the rate limits failed (logged once) */
static bool rate_sync_failed = false;
static int64 last_rate_sync_us;

/* kite.orders windows rebuilt from trading.order_requests on this primary */
static bool order_windows_rebuilt = false;

#define RATE_SYNC_RETRY_US	(1000000)	/* retry a failed or locked sync */

/* exit hook: the worker no longer runs */
static void
worker_exit(void)
{
	SpinLockAcquire(&bw_shared->mutex);
	bw_shared->state = BWS_NOT_RUNNING;
	bw_shared->pid = 0;
	bw_shared->procno = -1;
	SpinLockRelease(&bw_shared->mutex);
}

/* Nap until the extension is installed, saying so once. */
static void
wait_for_extension(void)
{
	bool		logged = false;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (trading_bgw_extension_version() > 0)
			return;
		set_state(BWS_WAITING_EXTENSION);
		if (!logged)
			ereport(LOG,
					(errmsg("trading broker worker waiting for CREATE EXTENSION trading in database \"%s\"",
							trading_database)));
		logged = true;
		trading_bgw_nap(1000L);
	}
}

/* wall-clock time of a monotonic instant */
static TimestampTz
mono_to_ts(int64 mono_us, int64 now_us, TimestampTz now_ts)
{
	return now_ts + (mono_us - now_us);
}

static void
publish_schedule(bool polling)
{
	int64		now = trading_monotonic_us();
	TimestampTz now_ts = GetCurrentTimestamp();

	SpinLockAcquire(&bw_shared->mutex);
	for (int i = 0; i < BEP_COUNT; i++)
	{
		BrokerEndpointShared *e = &bw_shared->ep[i];

		e->interval_ms = cfg.interval_ms[i];
		e->enabled = cfg.enabled[i];
		if (polling && cfg.enabled[i] && !(i == BEP_QUOTES && cfg.nbatches == 0))
			e->next_poll = mono_to_ts(Max(sched[i].due_us, sched[i].not_before_us),
									  now, now_ts);
		else
			e->next_poll = 0;
	}
	SpinLockRelease(&bw_shared->mutex);
}

static void
rate_sync_body(void *arg)
{
	(void) ratelimit_sync(RATELIMIT_SYNC_NOWAIT);
}

static void
rebuild_order_windows_body(void *arg)
{
	*(int *) arg = ratelimit_rebuild_order_windows();
}

/*
 * Bring the rate limiter in line with trading.rate_limits in a unit of work
 * of its own, never waiting for a lock on the table (a transaction holding
 * it must not stop polling).  A failure is logged once and shown as state
 * rate_limit_error; meanwhile every endpoint whose rate class the limiter
 * knows keeps polling under the limits last applied, and one whose class
 * is unknown waits.  Also rebuilds the order windows once, on the first
 * run as primary.
 */
static void
sync_rate_limits(void)
{
	ErrorData  *e;

	last_rate_sync_us = trading_monotonic_us();
	if (!cfg.extension_present)
		return;
	if (rate_sync_failed || ratelimit_sync_needed())
	{
		e = trading_bgw_run_xact("trading broker worker: synchronising rate limits",
								 rate_sync_body, NULL);
		if (e)
		{
			if (!rate_sync_failed)
				ereport(LOG,
						(errmsg("trading broker worker could not synchronise the rate limits: %s",
								e->message),
						 errdetail("Endpoints whose rate class is loaded keep polling under the limits last applied; the others wait."),
						 errhint("Fix trading.rate_limits; the worker retries every second.")));
			FreeErrorData(e);
			rate_sync_failed = true;
			return;
		}
		if (rate_sync_failed)
			ereport(LOG,
					(errmsg("trading broker worker synchronised the rate limits again")));
		rate_sync_failed = false;
	}
	if (!order_windows_rebuilt)
	{
		int			seeded = -1;

		e = trading_bgw_run_xact("trading broker worker: rebuilding order rate windows",
								 rebuild_order_windows_body, &seeded);
		if (e)
		{
			ereport(LOG,
					(errmsg("trading broker worker could not rebuild the order rate windows: %s",
							e->message)));
			FreeErrorData(e);
		}
		order_windows_rebuilt = (seeded >= 0);
	}
}

static void
reload_config(void)
{
	MemoryContextReset(ConfigContext);
	seen_config_gen = pg_atomic_read_u64(&bw_shared->config_gen);
	broker_load_config(&cfg, ConfigContext);
	last_reload_us = trading_monotonic_us();
	reload_wanted = false;
	if (sched[BEP_QUOTES].batch >= cfg.nbatches)
		sched[BEP_QUOTES].batch = 0;
	/* an interval made shorter takes effect now, not after the old one */
	for (int i = 0; i < BEP_COUNT; i++)
	{
		int64		limit = sched[i].started_us + (int64) cfg.interval_ms[i] * 1000;

		if (sched[i].due_us > limit && sched[i].failures == 0)
			sched[i].due_us = limit;
	}
}

static void
reload_session(void)
{
	seen_session_gen = pg_atomic_read_u64(&bw_shared->session_gen);
	broker_load_session(&session, SessionContext);
	session_epoch++;
	session_wanted = false;
	if (!session.present)
		broker_set_session_state(BSS_NONE);
	else if (session.expired)
		broker_set_session_state(BSS_EXPIRED);
	else if (!session.readable)
		broker_set_session_state(BSS_UNREADABLE);
	else
	{
		broker_set_session_state(BSS_ACTIVE);
		/* a fresh session: poll everything now */
		for (int i = 0; i < BEP_COUNT; i++)
		{
			sched[i].due_us = 0;
			sched[i].not_before_us = 0;
			sched[i].failures = 0;
		}
		logged_session_wait = false;
	}
}

/*
 * Ask the rate limiter for one request of class, keeping the margin
 * against jitter: the request must also have been allowed margin ago, so
 * the broker, which sees requests a little later and unevenly, never
 * counts more than the limit in its window.  *wait_us is how long to wait
 * when refused.
 */
static bool
rate_grant(const char *rate_class, int64 *wait_us)
{
	RateLimitResult r;
	static bool warned_unknown = false;

	*wait_us = 0;
	r = ratelimit_try(rate_class, 1, (int64) broker_rate_margin_ms * 1000, wait_us);
	switch (r)
	{
		case RATELIMIT_GRANTED:
			return true;
		case RATELIMIT_REFUSED:
			if (*wait_us <= 0)
				*wait_us = 1000;
			return false;
		case RATELIMIT_UNKNOWN_ENDPOINT:
			if (rate_sync_failed)
			{
				/* its limits may be what failed to load: do not poll blind */
				*wait_us = RATE_SYNC_RETRY_US;
				return false;
			}
			if (!warned_unknown)
				ereport(WARNING,
						(errmsg("rate limit class \"%s\" is not configured; the broker worker polls without it",
								rate_class),
						 errhint("Add a limit with trading.rate_limit_set().")));
			warned_unknown = true;
			return true;
		case RATELIMIT_BAD_COST:
			*wait_us = 1000000;
			return false;
	}
	return false;
}

static int
cycle_open(void)
{
	for (int i = 0; i < lengthof(cycles); i++)
		if (!cycles[i].used)
		{
			cycles[i].used = true;
			cycles[i].pending = 0;
			cycles[i].failed = false;
			correlation_new_id(&cycles[i].op);
			correlation_emit_begin(&cycles[i].op, NULL, "broker.poll_cycle", NULL);
			pg_atomic_fetch_add_u64(&bw_shared->cycles_total, 1);
			return i;
		}
	return -1;
}

static void
cycle_release(int c)
{
	if (c < 0 || !cycles[c].used)
		return;
	if (--cycles[c].pending <= 0)
	{
		correlation_emit_end(&cycles[c].op, cycles[c].failed ? "error" : "ok", NULL);
		cycles[c].used = false;
	}
}

/* start every due request that the rate limiter allows now */
static void
schedule_requests(void)
{
	int64		now = trading_monotonic_us();
	int			order[BEP_COUNT];
	int			n = 0;
	int			cycle = -1;

	for (int i = 0; i < BEP_COUNT; i++)
	{
		if (!cfg.enabled[i] || sched[i].in_flight)
			continue;
		if (i == BEP_QUOTES && cfg.nbatches == 0)
			continue;
		if (sched[i].due_us > now || sched[i].not_before_us > now)
			continue;
		order[n++] = i;
	}
	/* oldest due first (insertion sort of at most six) */
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && sched[order[b]].due_us < sched[order[b - 1]].due_us; b--)
		{
			int			t = order[b];

			order[b] = order[b - 1];
			order[b - 1] = t;
		}

	for (int k = 0; k < n; k++)
	{
		int			i = order[k];
		EpSched    *s = &sched[i];
		int64		wait;
		char	   *url;
		char		attrs[128];
		const char *path = broker_endpoints[i].path;

		if (!rate_grant(broker_endpoints[i].rate_class, &wait))
		{
			s->not_before_us = now + wait;
			continue;
		}
		if (i == BEP_QUOTES)
		{
			const char *mode = cfg.batch_path[s->batch];

			if (strcmp(mode, "ltp") == 0)
				path = "/quote/ltp";
			else if (strcmp(mode, "ohlc") == 0)
				path = "/quote/ohlc";
			if (s->batch == 0)
				s->cycle_start_us = now;
			strlcpy(s->mode, mode, sizeof(s->mode));
			url = broker_make_url(path, cfg.batch_query[s->batch]);
		}
		else
			url = broker_make_url(path, NULL);

		if (!broker_http_start(i, url, session.auth_header))
		{
			s->not_before_us = now + 1000000;
			continue;
		}
		if (cycle < 0)
			cycle = cycle_open();
		s->cycle = cycle;
		if (cycle >= 0)
			cycles[cycle].pending++;
		correlation_new_id(&s->op);
		snprintf(attrs, sizeof(attrs), "{\"endpoint\": \"%s\", \"path\": \"%s\"}",
				 broker_endpoints[i].name, path);
		correlation_emit_begin(&s->op, cycle >= 0 ? &cycles[cycle].op : NULL,
							   "broker.request", attrs);
		s->in_flight = true;
		s->session_epoch = session_epoch;
		s->started_us = now;
		pg_atomic_fetch_add_u64(&bw_shared->requests_total, 1);
		pg_atomic_fetch_add_u64(&bw_shared->ep[i].requests_total, 1);
	}
}

static int64
backoff_us(int ep, int failures)
{
	double		base = Max(cfg.interval_ms[ep], 500);
	double		delay = base * pow(2.0, Min(failures - 1, 20));

	delay = Min(delay, (double) broker_max_backoff_ms);
	/* "equal jitter": half fixed, half random */
	delay = delay / 2 + pg_prng_double(&pg_global_prng_state) * delay / 2;
	return (int64) (delay * 1000);
}

/*
 * An applied response whose mapping rejected elements: each is counted as
 * a schema error (the field of the first named), logged once per run of
 * responses with rejections; the endpoint does not back off, since the
 * rest was applied.
 */
static void
count_rejected(BrokerEndpoint ep, BrokerApplyResult *res)
{
	BrokerEndpointShared *e = &bw_shared->ep[ep];
	static bool logged[BEP_COUNT];

	if (res->rejected <= 0)
	{
		logged[ep] = false;
		return;
	}
	pg_atomic_fetch_add_u64(&e->errors_total, (uint64) res->rejected);
	pg_atomic_fetch_add_u64(&e->errors[BERR_SCHEMA], (uint64) res->rejected);
	for (int i = 0; i < res->rejected && i < 1000; i++)
		metrics_count_exception(broker_error_names[BERR_SCHEMA]);
	SpinLockAcquire(&bw_shared->mutex);
	e->last_error = GetCurrentTimestamp();
	e->last_error_type = BERR_SCHEMA;
	strlcpy(e->last_field, res->field, sizeof(e->last_field));
	SpinLockRelease(&bw_shared->mutex);
	if (!logged[ep])
		ereport(LOG,
				(errmsg("trading broker worker: %s: %d element(s) rejected (schema), first at field %s; the rest was applied",
						broker_endpoints[ep].name, res->rejected, res->field)));
	logged[ep] = true;
}

/* a request finished: apply it and update the schedule and counters */
static void
request_done(int slot, BrokerResponse *resp)
{
	BrokerEndpoint ep = (BrokerEndpoint) slot;
	EpSched    *s = &sched[ep];
	BrokerEndpointShared *e = &bw_shared->ep[ep];
	BrokerApplyResult res;
	int64		now;
	const char *mode = NULL;
	int			failures;

	s->in_flight = false;
	if (resp->new_connections > 0)
		pg_atomic_fetch_add_u64(&bw_shared->connections_opened,
								(uint64) resp->new_connections);
	if (ep == BEP_QUOTES)
		mode = s->mode;			/* the watchlist may have changed meanwhile */

	/*
	 * A response is judged against the session it was sent with: one sent
	 * with a session that has been replaced meanwhile is dropped (its
	 * TokenException says nothing about the new session; its data may be
	 * another account's) and the endpoint is polled again at once.
	 */
	if (s->session_epoch != session_epoch)
	{
		s->due_us = 0;
		s->not_before_us = 0;
		correlation_emit_end(&s->op, "error", "session changed");
		if (s->cycle >= 0)
			cycles[s->cycle].failed = true;
		cycle_release(s->cycle);
		s->cycle = -1;
		return;
	}

	broker_apply_response(ep, mode, resp, &res);
	metrics_observe_request(broker_endpoints[ep].name, resp->seconds,
							(int) resp->http_status);
	now = trading_monotonic_us();

	if (res.error < 0)
	{
		if (s->failures > 0)
			ereport(LOG,
					(errmsg("trading broker worker: %s recovered after %d failed requests",
							broker_endpoints[ep].name, s->failures)));
		s->failures = 0;
		s->not_before_us = 0;
		if (ep == BEP_QUOTES && broker_quote_batch_ok(&cfg, s->batch))
		{
			/*
			 * a suspect group was innocent: the batches are rebuilt, and the
			 * batch after it takes its index
			 */
			reload_wanted = true;
			s->due_us = now;
		}
		else if (ep == BEP_QUOTES && s->batch + 1 < cfg.nbatches)
		{
			s->batch++;
			s->due_us = now;	/* the next batch, as the limiter allows */
		}
		else
		{
			int64		start = (ep == BEP_QUOTES) ? s->cycle_start_us : s->started_us;

			s->batch = 0;
			s->due_us = Max(start + (int64) cfg.interval_ms[ep] * 1000, now);
		}
		count_rejected(ep, &res);
		SpinLockAcquire(&bw_shared->mutex);
		e->last_success = GetCurrentTimestamp();
		e->consecutive_failures = 0;
		SpinLockRelease(&bw_shared->mutex);
		correlation_emit_end(&s->op, "ok", NULL);
	}
	else
	{
		failures = ++s->failures;
		s->not_before_us = 0;
		s->due_us = now + backoff_us(ep, failures);
		if (ep == BEP_QUOTES && res.error == BERR_BROKER_ERROR &&
			strncmp(res.message, "InputException:", 15) == 0 &&
			broker_quote_batch_refused(&cfg, s->batch, res.message))
		{
			/*
			 * isolating the refused instrument: no backoff, as the rate
			 * limiter allows; the first batches are the suspects
			 */
			reload_wanted = true;
			s->batch = 0;
			s->due_us = now;
		}
		pg_atomic_fetch_add_u64(&e->errors_total, 1);
		pg_atomic_fetch_add_u64(&e->errors[res.error], 1);
		metrics_count_exception(broker_error_names[res.error]);
		SpinLockAcquire(&bw_shared->mutex);
		e->last_error = GetCurrentTimestamp();
		e->last_error_type = res.error;
		e->consecutive_failures = failures;
		if (res.error == BERR_SCHEMA)
			strlcpy(e->last_field, res.field, sizeof(e->last_field));
		SpinLockRelease(&bw_shared->mutex);
		if (failures == 1 && res.error != BERR_TOKEN)
			ereport(LOG,
					(errmsg("trading broker worker: %s failed (%s): %s; backing off",
							broker_endpoints[ep].name,
							broker_error_names[res.error], res.message)));
		correlation_emit_end(&s->op, "error", broker_error_names[res.error]);
		if (s->cycle >= 0)
			cycles[s->cycle].failed = true;

		if (res.error == BERR_TOKEN && session.readable && !session.expired)
		{
			ereport(LOG,
					(errmsg("trading broker worker: the broker session expired (TokenException); polling stops until a new session is set")));
			session.expired = true;
			broker_set_session_state(BSS_EXPIRED);
			broker_mark_session_expired();
		}
	}
	cycle_release(s->cycle);
	s->cycle = -1;
}

static BrokerWorkerState
current_state(void)
{
	if (!cfg.extension_present)
		return BWS_WAITING_EXTENSION;
	if (!broker_poll_enabled)
		return BWS_PAUSED;
	if (!session.present || !session.readable)
		return BWS_NO_SESSION;
	if (session.expired)
		return BWS_SESSION_EXPIRED;
	return rate_sync_failed ? BWS_RATE_LIMIT_ERROR : BWS_POLLING;
}

/* milliseconds until the next scheduled event, bounded */
static long
next_wakeup_ms(bool polling)
{
	int64		now = trading_monotonic_us();
	int64		next = now + (int64) IDLE_STEP_MS * 1000;

	if (polling)
		for (int i = 0; i < BEP_COUNT; i++)
		{
			if (!cfg.enabled[i] || sched[i].in_flight)
				continue;
			if (i == BEP_QUOTES && cfg.nbatches == 0)
				continue;
			next = Min(next, Max(sched[i].due_us, sched[i].not_before_us));
		}
	next = Min(next, last_reload_us + RELOAD_EVERY_US);
	return (long) Max((next - now + 999) / 1000, 0);
}

/* the connection settings the HTTP client was set up with */
static char *http_url;
static char *http_ca_file;
static int	http_max_connections;

static void
remember_http_settings(void)
{
	if (http_url)
		pfree(http_url);
	if (http_ca_file)
		pfree(http_ca_file);
	http_url = MemoryContextStrdup(TopMemoryContext, broker_url);
	http_ca_file = MemoryContextStrdup(TopMemoryContext, broker_ca_file);
	http_max_connections = broker_max_connections;
}

/*
 * After a reload: new connection settings restart the HTTP client; the
 * configuration tables are read again in any case.
 */
static void
apply_reload(void)
{
	if (strcmp(http_url, broker_url) != 0 || strcmp(http_ca_file, broker_ca_file) != 0 ||
		http_max_connections != broker_max_connections)
	{
		/* abandon requests in flight; their endpoints are polled again */
		for (int i = 0; i < BEP_COUNT; i++)
			if (sched[i].in_flight)
			{
				sched[i].in_flight = false;
				sched[i].due_us = 0;
				correlation_emit_end(&sched[i].op, "error", "settings changed");
				cycle_release(sched[i].cycle);
				sched[i].cycle = -1;
			}
		broker_http_reset();
		remember_http_settings();
	}
	reload_wanted = true;
}

void
broker_worker_main(Datum main_arg)
{
	long		nap_ms;

	SpinLockAcquire(&bw_shared->mutex);
	bw_shared->pid = MyProcPid;
	bw_shared->procno = MyProc->pgprocno;
	bw_shared->state = BWS_STARTING;
	bw_shared->session_state = BSS_UNKNOWN;
	bw_shared->started_at = trading_bgw_start_time();
	SpinLockRelease(&bw_shared->mutex);
	trading_bgw_on_exit(worker_exit);

	if (pg_atomic_read_u32(&bw_shared->database_seen) == 0)
		set_state(BWS_WAITING_DATABASE);
	trading_bgw_connect(&bw_shared->database_seen, "trading broker worker");

	ConfigContext = AllocSetContextCreate(TopMemoryContext, "trading broker config",
										  ALLOCSET_DEFAULT_SIZES);
	SessionContext = AllocSetContextCreate(TopMemoryContext, "trading broker session",
										   ALLOCSET_SMALL_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext, "trading broker loop",
										ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < BEP_COUNT; i++)
		sched[i].cycle = -1;

	wait_for_extension();
	broker_http_init();
	remember_http_settings();
	ereport(LOG,
			(errmsg("trading broker worker started, polling %s", broker_url)));

	for (;;)
	{
		BrokerWorkerState state;
		bool		polling;

		MemoryContextReset(LoopContext);
		MemoryContextSwitchTo(LoopContext);

		if (pg_atomic_read_u64(&bw_shared->config_gen) != seen_config_gen ||
			trading_monotonic_us() - last_reload_us >= RELOAD_EVERY_US)
			reload_wanted = true;
		if (reload_wanted)
		{
			bool		was_present = cfg.extension_present;

			reload_config();
			if (was_present && !cfg.extension_present)
				session_wanted = true;
			sync_rate_limits();
		}
		else if ((rate_sync_failed || ratelimit_sync_needed()) &&
				 trading_monotonic_us() - last_rate_sync_us >= RATE_SYNC_RETRY_US)
			sync_rate_limits();
		if (pg_atomic_read_u64(&bw_shared->session_gen) != seen_session_gen)
			session_wanted = true;
		if (session_wanted && cfg.extension_present)
			reload_session();

		state = current_state();
		set_state(state);
		if (state == BWS_NO_SESSION && !logged_session_wait)
		{
			ereport(LOG,
					(errmsg("trading broker worker has no broker session"),
					 errhint("Call trading.set_broker_session() or trading.broker_login().")));
			logged_session_wait = true;
		}
		polling = (state == BWS_POLLING || state == BWS_RATE_LIMIT_ERROR);
		if (polling)
			schedule_requests();
		publish_schedule(polling);

		/* requests in flight: wait on them instead of the latch */
		nap_ms = next_wakeup_ms(polling);
		if (rate_sync_failed || ratelimit_sync_needed())
			nap_ms = Min(nap_ms, RATE_SYNC_RETRY_US / 1000);
		if (broker_http_in_flight() > 0)
		{
			broker_http_poll((int) Min(nap_ms, POLL_STEP_MS), request_done);
			nap_ms = 0;
		}
		if (trading_bgw_nap(nap_ms))
			apply_reload();
	}
}

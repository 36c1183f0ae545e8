/*-------------------------------------------------------------------------
 *
 * order_sender.c
 *	  The "trading order sender": a background worker that sends the rows
 *	  of trading.order_requests to the broker exactly once
 *	  (docs/ORDERS.md has the state machine and the argument).
 *
 * Lifecycle: started on the primary only (BgWorkerStart_RecoveryFinished),
 * restarted 1 s after it dies.  It waits while the installed extension is
 * older than 1.1.  At start every request left in 'sending' by a previous
 * incarnation (kill -9, crash, failover) becomes 'unknown': it may have
 * reached the broker.  Every placement still 'pending' becomes 'verifying':
 * a previous incarnation may have sent it and lost its 'sending' (a leader
 * whose last commits never reached the standby promoted since); it is
 * looked up by its tag in an order book fetched trading.order_settle later
 * and adopted as placed if found, sent only if absent.
 *
 * One iteration of the loop:
 *	 1. dispatch: in one transaction, take the oldest due requests, ask
 *		the rate limiter for each (placements:
 *		kite.orders, the rest kite.api; a refusal leaves it pending and
 *		sets a timer), check each again (_order_claim) and mark it
 *		'sending' (or 'expired' past valid_until).  Commit.  Only then start
 *		the HTTP requests.
 *	 2. reconcile: when a request has been 'unknown' or 'verifying' for the
 *		settling time, fetch GET /orders (kite.api) and settle it by its tag.
 *	 3. watchdog, once a second: expiry, heartbeats, the daily-loss trip,
 *		adoption.
 *	 4. wait for the latch (a commit queued a request), a socket, or the
 *		next timer; record the finished requests in one transaction.
 * No timer scans order_requests for new rows: the commit wakes us.
 *
 * Shared memory and its locking rules: see order_sender.h.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "bgw_common.h"
#include "broker_worker.h"
#include "correlation.h"
#include "order_sender.h"
#include "ratelimit.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PGDLLEXPORT void order_sender_main(Datum main_arg);

#define WATCHDOG_US			1000000
#define SESSION_RETRY_US	2000000
#define SAFETY_SCAN_US		5000000 /* prepared transactions, lost wake-ups */

typedef struct InFlight
{
	bool		used;
	int64		id;				/* request id; 0 = the order book fetch */
	int			attempts;
	char		kind[8];
	pg_uuid_t	op;				/* correlation: this HTTP attempt */
	TimestampTz started;
	/* between the claim and the start (InFlightContext) */
	char	   *url;
	const char *method;
	char	   *form;			/* NULL: no body */
} InFlight;

static InFlight *inflight;
static int	nslots;				/* order_max_in_flight + 1 (the fetch) */
static int	recon_slot;
static BrokerSession session;
static MemoryContext SessionContext;
static MemoryContext LoopContext;
static MemoryContext InFlightContext;
static uint64 seen_session_gen = UINT64_MAX;
static int64 session_checked_us;
static bool dispatch_wanted = true;
static int64 dispatch_at_us;	/* limiter or retry timer */
static int64 watchdog_at_us;
static int64 reconcile_at_us = PG_INT64_MAX;

static void
sender_exit(void)
{
	SpinLockAcquire(&os_shared->mutex);
	os_shared->pid = 0;
	os_shared->procno = -1;
	SpinLockRelease(&os_shared->mutex);
}

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

/* run one SQL statement that returns nothing of interest */
static void
exec_simple(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "order sender: could not run %s", sql);
}

/*
 * The statements run for every request, planned once and kept (the plan
 * cache replans them if the functions they call change).
 */
static SPIPlanPtr
kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare %s", sql);
		*plan = p;
	}
	return *plan;
}

/*
 * Every statement of the sender resolves names in pg_catalog first: the
 * session's search_path is pinned by trading_bgw_connect (PGC_S_OVERRIDE).
 */
static void
unit_of_work(const char *activity, void (*body) (void *), void *arg)
{
	ErrorData  *e = trading_bgw_run_xact(activity, body, arg);

	if (e)
	{
		ereport(LOG,
				(errmsg("%s failed: %s", activity, e->message)));
		FreeErrorData(e);
	}
}

/*
 * How late requests leave after their grant (the claim transaction runs in
 * between): the most seen in the last LAG_MEMORY_US.  The broker sees a
 * request that much later, so the margin against jitter must cover it: a
 * request granted at t and sent at t + lag lands in the broker's window
 * together with requests granted up to lag later, and the window that
 * matters may be a minute long (200 placements a minute).
 */
#define LAG_MEMORY_US		(120 * (int64) 1000000)
static int64 send_lag_us = 0;
static int64 send_lag_at_us = 0;

/*
 * One grant of class as a worker, keeping trading.order_rate_margin
 * against jitter (docs/RATE_LIMITER.md); *wait_us when refused.
 */
static bool
order_rate_grant(const char *rate_class, int64 *wait_us)
{
	static bool warned = false;

	*wait_us = 0;
	switch (ratelimit_try(rate_class, 1,
						  Max((int64) order_rate_margin_ms * 1000, send_lag_us), wait_us))
	{
		case RATELIMIT_GRANTED:
			return true;
		case RATELIMIT_UNKNOWN_ENDPOINT:
			if (!warned)
				ereport(WARNING,
						(errmsg("rate limit class \"%s\" is not configured; the order sender sends without it",
								rate_class)));
			warned = true;
			return true;
		case RATELIMIT_REFUSED:
		case RATELIMIT_BAD_COST:
			break;
	}
	if (*wait_us <= 0)
		*wait_us = 1000;
	return false;
}

/* kite.orders windows rebuilt from trading.order_requests (docs/RATE_LIMITER.md) */
static bool order_windows_rebuilt = false;

static void
rate_sync_body(void *arg)
{
	(void) ratelimit_sync(RATELIMIT_SYNC_NOWAIT);
	/* before the first send as primary: continue the old primary's budget */
	if (!order_windows_rebuilt)
		order_windows_rebuilt = (ratelimit_rebuild_order_windows() >= 0);
}

static void
recover_body(void *arg)
{
	int			n,
				v;

	if (SPI_execute("SELECT unknown, verifying FROM trading._order_recover()",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not recover");
	n = atoi(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	v = atoi(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	if (n > 0)
		ereport(LOG,
				(errmsg("trading order sender: %d request(s) left in flight by a previous run are now unknown and will be reconciled by their tag",
						n)));
	if (v > 0)
		ereport(LOG,
				(errmsg("trading order sender: %d pending placement(s) are verifying: a previous run may have sent them; each is looked up at the broker by its tag before it is sent",
						v)));
	*(bool *) arg = true;
}

/* ---------------------------------------------------------------------
 * Dispatch
 * ---------------------------------------------------------------------
 */
typedef struct DispatchArgs
{
	int			free;
	int			claimed;
	int			slots[64];
	int64		wait_us;
	bool		more;
} DispatchArgs;

/*
 * application/x-www-form-urlencoded body from _order_claim's name/value
 * pairs (names are plain; values escaped by libcurl: tradingsymbols hold
 * '&' and '-').  In the current memory context.
 */
static char *
form_encode(ArrayType *pairs)
{
	StringInfoData buf;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	initStringInfo(&buf);
	if (pairs == NULL)
		return buf.data;
	deconstruct_array(pairs, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i + 1 < n; i += 2)
	{
		char	   *v;

		if (nulls[i] || nulls[i + 1])
			continue;
		v = broker_http_escape(TextDatumGetCString(elems[i + 1]));
		appendStringInfo(&buf, "%s%s=%s", buf.len > 0 ? "&" : "",
						 TextDatumGetCString(elems[i]), v);
		pfree(v);
	}
	return buf.data;
}

static int
free_slot(void)
{
	for (int i = 0; i < recon_slot; i++)
		if (!inflight[i].used)
			return i;
	return -1;
}

static void
dispatch_body(void *arg)
{
	DispatchArgs *a = (DispatchArgs *) arg;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int64	   *ids;
	int			nids = 0;
	int			ndue;
	bool		blocked_orders = false;
	bool		blocked_api = false;
	ArrayType  *arr;
	Datum	   *elems;

	static SPIPlanPtr due_plan = NULL;
	static SPIPlanPtr claim_plan = NULL;

	values[0] = Int32GetDatum(a->free * 2);
	if (SPI_execute_plan(kept_plan(&due_plan,
								   "SELECT id, kind FROM trading.order_requests "
								   "WHERE state OPERATOR(pg_catalog.=) 'pending' "
								   "AND (retry_at IS NULL OR retry_at OPERATOR(pg_catalog.<=) pg_catalog.now()) "
								   "ORDER BY id LIMIT $1",
								   1, argtypes),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the due requests");
	ndue = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(ndue, 1));
	for (int i = 0; i < ndue && nids < a->free; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));
		char	   *kind = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		bool		place = strcmp(kind, "place") == 0;
		int64		wait;

		if (place ? blocked_orders : blocked_api)
			continue;
		if (!order_rate_grant(place ? "kite.orders" : "kite.api", &wait))
		{
			if (place)
				blocked_orders = true;
			else
				blocked_api = true;
			pg_atomic_fetch_add_u64(&os_shared->limiter_waits, 1);
			a->wait_us = a->wait_us > 0 ? Min(a->wait_us, wait) : wait;
			continue;
		}
		ids[nids++] = id;
	}
	a->more = ndue > nids;
	if (nids == 0)
		return;

	elems = palloc(sizeof(Datum) * nids);
	for (int i = 0; i < nids; i++)
		elems[i] = Int64GetDatum(ids[i]);
	arr = construct_array(elems, nids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	{
		Oid			t[1] = {INT8ARRAYOID};
		Datum		v[1] = {PointerGetDatum(arr)};

		if (SPI_execute_plan(kept_plan(&claim_plan,
									   "SELECT id, kind, tag, variety, order_id, form, correlation_id "
									   "FROM trading._order_claim($1)", 1, t),
							 v, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not claim the requests");
	}

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		int			slot = free_slot();
		InFlight   *f;
		char	   *kind,
				   *variety,
				   *order_id,
				   *path;
		Datum		form;
		bool		form_null;
		char	   *body;
		const char *method;
		Datum		corr;
		MemoryContext old;

		Assert(slot >= 0);
		f = &inflight[slot];
		f->id = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
		kind = SPI_getvalue(tup, td, 2);
		variety = SPI_getvalue(tup, td, 4);
		order_id = SPI_getvalue(tup, td, 5);
		form = SPI_getbinval(tup, td, 6, &form_null);
		corr = SPI_getbinval(tup, td, 7, &isnull);
		strlcpy(f->kind, kind, sizeof(f->kind));
		/* encoded in the transaction's memory, kept until the start */
		body = strcmp(kind, "cancel") == 0 ? NULL :
			form_encode(form_null ? NULL : DatumGetArrayTypeP(form));
		old = MemoryContextSwitchTo(InFlightContext);
		if (strcmp(kind, "place") == 0)
		{
			path = psprintf("/orders/%s", variety);
			method = "POST";
		}
		else
		{
			path = psprintf("/orders/%s/%s", variety, order_id);
			method = strcmp(kind, "modify") == 0 ? "PUT" : "DELETE";
		}
		f->url = broker_make_url(path, NULL);
		f->method = method;
		f->form = body ? pstrdup(body) : NULL;
		pfree(path);
		MemoryContextSwitchTo(old);
		f->used = true;
		f->started = 0;
		correlation_new_id(&f->op);
		correlation_emit_begin(&f->op, isnull ? NULL : DatumGetUUIDP(corr),
							   "order.http_attempt", NULL);
		a->slots[a->claimed++] = slot;
	}
}

/* start the HTTP requests of the slots just claimed (after COMMIT) */
static void handle_replies(OrderReply *r, int n);

static void
start_claimed(DispatchArgs *a)
{
	OrderReply *refused = palloc0(sizeof(OrderReply) * Max(a->claimed, 1));
	int			nrefused = 0;

	for (int k = 0; k < a->claimed; k++)
	{
		InFlight   *f = &inflight[a->slots[k]];

		f->started = GetCurrentTimestamp();
		pg_atomic_fetch_add_u64(&os_shared->attempts, 1);
		if (!order_http_start(a->slots[k], f->method, f->url, f->form,
							  session.auth_header))
		{
			/*
			 * libcurl refused before anything left: report it as a failed
			 * connection, which the request retries with backoff.
			 */
			OrderReply *r = &refused[nrefused++];

			ereport(LOG,
					(errmsg("trading order sender: libcurl refused to start request %lld",
							(long long) f->id)));
			r->slot = a->slots[k];
			r->reached = false;
			strlcpy(r->transport_error, "libcurl refused to start the request",
					sizeof(r->transport_error));
			r->body = "";
		}
		pfree(f->url);
		if (f->form)
			pfree(f->form);
		f->url = f->form = NULL;
	}
	if (a->claimed > nrefused)
		order_http_kick();
	if (nrefused > 0)
		handle_replies(refused, nrefused);
}

static void
dispatch(void)
{
	DispatchArgs a;
	int			nfree = 0;
	int64		granted_at;

	for (int i = 0; i < recon_slot; i++)
		nfree += inflight[i].used ? 0 : 1;
	dispatch_wanted = false;
	if (nfree == 0)
	{
		dispatch_wanted = true; /* when a slot frees */
		return;
	}
	/* the limits last applied stay in force if the table cannot be read */
	if (ratelimit_sync_needed() || !order_windows_rebuilt)
		unit_of_work("trading order sender: rate limits", rate_sync_body, NULL);
	memset(&a, 0, sizeof(a));
	a.free = nfree;
	granted_at = trading_monotonic_us();
	unit_of_work("trading order sender: claiming requests", dispatch_body, &a);
	if (a.claimed > 0)
	{
		int64		lag = trading_monotonic_us() - granted_at;

		int64		now = trading_monotonic_us();

		lag += 2000;
		if (lag >= send_lag_us || now - send_lag_at_us > LAG_MEMORY_US)
		{
			send_lag_us = lag;
			send_lag_at_us = now;
		}
	}
	start_claimed(&a);
	if (a.wait_us > 0)
		dispatch_at_us = trading_monotonic_us() + a.wait_us;
	else
		dispatch_at_us = trading_monotonic_us() + SAFETY_SCAN_US;
	if (a.more && a.wait_us == 0)
		dispatch_wanted = true;
}

/* ---------------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------------
 */
typedef struct RepliesArgs
{
	OrderReply *r;
	int			n;
} RepliesArgs;

static void
record_reply(OrderReply *r)
{
	InFlight   *f = &inflight[r->slot];
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {INT8OID, BOOLOID, INT4OID, BYTEAOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bytea	   *body = palloc(VARHDRSZ + r->len);
	char	   *outcome;

	SET_VARSIZE(body, VARHDRSZ + r->len);
	memcpy(VARDATA(body), r->body, r->len);
	values[0] = Int64GetDatum(f->id);
	values[1] = BoolGetDatum(r->reached);
	values[2] = Int32GetDatum((int32) r->http_status);
	values[3] = PointerGetDatum(body);
	values[4] = r->transport_error[0] ? CStringGetTextDatum(r->transport_error) : (Datum) 0;
	if (!r->transport_error[0])
		nulls[4] = 'n';
	if (SPI_execute_plan(kept_plan(&plan, "SELECT trading._order_response($1, $2, $3, $4, $5)",
								   5, argtypes),
						 values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not record the reply to request %lld", (long long) f->id);
	outcome = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(outcome, "placed") == 0)
		pg_atomic_fetch_add_u64(&os_shared->placed, 1);
	else if (strcmp(outcome, "rejected") == 0)
		pg_atomic_fetch_add_u64(&os_shared->rejected, 1);
	else if (strcmp(outcome, "unknown") == 0)
	{
		pg_atomic_fetch_add_u64(&os_shared->unknown, 1);
		reconcile_at_us = Min(reconcile_at_us,
							  trading_monotonic_us() + (int64) order_settle_ms * 1000);
		ereport(LOG,
				(errmsg("trading order sender: request %lld is unknown (%s); it will be reconciled by its tag, never re-sent",
						(long long) f->id,
						r->transport_error[0] ? r->transport_error : "an ambiguous reply")));
	}
	else
	{
		pg_atomic_fetch_add_u64(&os_shared->retried, 1);
		dispatch_at_us = Min(dispatch_at_us, trading_monotonic_us() + 100000);
	}
	correlation_emit_end(&f->op, strcmp(outcome, "placed") == 0 ? "ok" : "error",
						 strcmp(outcome, "placed") == 0 ? NULL : outcome);
}

static void
replies_body(void *arg)
{
	RepliesArgs *a = (RepliesArgs *) arg;

	/*
	 * The outcome need not wait for the disk: if a crash loses it, the
	 * request is still 'sending', becomes 'unknown' at start and is settled
	 * by its tag.  ('sending' itself is committed synchronously.)
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	for (int i = 0; i < a->n; i++)
		record_reply(&a->r[i]);
}

/* ---------------------------------------------------------------------
 * Reconciliation and watchdog
 * ---------------------------------------------------------------------
 */
static void
reconcile_body(void *arg)
{
	OrderReply *r = (OrderReply *) arg;
	InFlight   *f = &inflight[recon_slot];
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(r->body);
	values[1] = TimestampTzGetDatum(f->started);
	/* untrusted: the SQL checks the envelope and the types of every field */
	if (SPI_execute_with_args("SELECT trading._order_reconcile(b->'data', $2, "
							  "pg_catalog.current_setting('trading.order_settle')::interval) "
							  "FROM (SELECT $1::jsonb AS b) s "
							  "WHERE b->>'status' OPERATOR(pg_catalog.=) 'success'",
							  2, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not reconcile");
	if (SPI_processed == 0)
		elog(ERROR, "the order book reply is not a success envelope");
}

static void
reconciled(OrderReply *r)
{
	if (r->transport_error[0] || r->http_status != 200 || memchr(r->body, '\0', r->len))
		ereport(LOG,
				(errmsg("trading order sender: fetching the order book failed (HTTP %ld %s); trying again",
						r->http_status, r->transport_error)));
	else
		unit_of_work("trading order sender: reconciling", reconcile_body, r);
	correlation_emit_end(&inflight[recon_slot].op, "ok", NULL);
	inflight[recon_slot].used = false;
	reconcile_at_us = trading_monotonic_us() + 500000;	/* checked by the
														 * watchdog */
}

typedef struct WatchdogArgs
{
	int64		unknown_wait_us;	/* -1: none unknown or verifying */
	bool		ok;
} WatchdogArgs;

static void
watchdog_body(void *arg)
{
	WatchdogArgs *a = (WatchdogArgs *) arg;
	bool		isnull;
	Datum		d;

	exec_simple("SELECT trading._order_watchdog()");
	if (SPI_execute("SELECT pg_catalog.date_part('epoch', pg_catalog.min(unknown_since) "
					"OPERATOR(pg_catalog.+) pg_catalog.current_setting('trading.order_settle')::interval "
					"OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) "
					"FROM trading.order_requests "
					"WHERE state OPERATOR(pg_catalog.=) ANY ('{unknown,verifying}'::pg_catalog.text[])",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the unknown requests");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	a->unknown_wait_us = isnull ? -1 : (int64) Max(DatumGetFloat8(d) * 1e6, 0);
	a->ok = true;
}

static void
watchdog(void)
{
	WatchdogArgs a = {-1, false};
	int64		now;

	unit_of_work("trading order sender: watchdog", watchdog_body, &a);
	now = trading_monotonic_us();
	watchdog_at_us = now + WATCHDOG_US;
	if (!a.ok)
		reconcile_at_us = Min(reconcile_at_us, now + WATCHDOG_US);
	else if (a.unknown_wait_us >= 0)
		reconcile_at_us = Min(reconcile_at_us, now + a.unknown_wait_us);
	else
		reconcile_at_us = PG_INT64_MAX;
}

static void
start_reconcile(void)
{
	InFlight   *f = &inflight[recon_slot];
	int64		wait;
	char	   *url;

	if (f->used)
		return;
	if (!order_rate_grant("kite.api", &wait))
	{
		reconcile_at_us = trading_monotonic_us() + wait;
		return;
	}
	url = broker_make_url("/orders", NULL);
	f->id = 0;
	f->started = GetCurrentTimestamp();
	if (!order_http_start(recon_slot, "GET", url, NULL, session.auth_header))
	{
		reconcile_at_us = trading_monotonic_us() + 1000000;
		return;
	}
	f->used = true;
	correlation_new_id(&f->op);
	correlation_emit_begin(&f->op, NULL, "order.reconcile", NULL);
	pg_atomic_fetch_add_u64(&os_shared->reconciliations, 1);
	reconcile_at_us = PG_INT64_MAX;
}

/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */
static void
wait_for_version(void)
{
	bool		logged = false;

	for (;;)
	{
		int			v;

		CHECK_FOR_INTERRUPTS();
		v = trading_bgw_extension_version();
		if (v >= 110)
			return;
		if (!logged)
			ereport(LOG,
					(errmsg("trading order sender waiting for extension trading 1.1 in database \"%s\"",
							trading_database)));
		logged = true;
		trading_bgw_nap(1000L);
	}
}

static void
maybe_reload_session(void)
{
	uint64		gen = pg_atomic_read_u64(&bw_shared->session_gen);
	int64		now = trading_monotonic_us();

	if (gen == seen_session_gen &&
		(session.readable || now - session_checked_us < SESSION_RETRY_US))
		return;
	seen_session_gen = gen;
	session_checked_us = now;
	broker_load_session(&session, SessionContext);
	if (session.readable && !session.expired)
		dispatch_wanted = true;
}

static void
handle_replies(OrderReply *r, int n)
{
	RepliesArgs a;
	int			k = 0;

	a.r = palloc(sizeof(OrderReply) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (r[i].slot == recon_slot)
			reconciled(&r[i]);
		else
			a.r[k++] = r[i];
	}
	a.n = k;
	if (k > 0)
	{
		unit_of_work("trading order sender: recording replies", replies_body, &a);
		for (int i = 0; i < k; i++)
			inflight[a.r[i].slot].used = false;
		dispatch_wanted = true;
	}
}

void
order_sender_main(Datum main_arg)
{
	trading_bgw_connect(&os_shared->database_seen, "trading order sender");
	pgstat_report_appname("trading order sender");
	SessionContext = AllocSetContextCreate(TopMemoryContext, "trading order session",
										   ALLOCSET_SMALL_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext, "trading order loop",
										ALLOCSET_DEFAULT_SIZES);
	InFlightContext = AllocSetContextCreate(TopMemoryContext, "trading order in flight",
											ALLOCSET_DEFAULT_SIZES);
	wait_for_version();

	nslots = order_max_in_flight + 1;
	recon_slot = order_max_in_flight;
	inflight = MemoryContextAllocZero(TopMemoryContext, sizeof(InFlight) * nslots);
	order_http_init(nslots);

	/* wake-ups from now on reach us; then settle what a previous run left */
	SpinLockAcquire(&os_shared->mutex);
	os_shared->pid = MyProcPid;
	os_shared->procno = MyProc->pgprocno;
	SpinLockRelease(&os_shared->mutex);
	trading_bgw_on_exit(sender_exit);
	/* nothing is sent before the recovery has committed */
	for (;;)
	{
		bool		recovered = false;

		unit_of_work("trading order sender: recovering", recover_body, &recovered);
		if (recovered)
			break;
		trading_bgw_nap(1000L);
	}
	ereport(LOG, (errmsg("trading order sender started, sending to %s", broker_url)));

	for (;;)
	{
		int64		now;
		int64		next;
		OrderReply *replies;
		int			nreplies;
		bool		latch_set;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(LoopContext);
		MemoryContextSwitchTo(LoopContext);
		(void) trading_bgw_reload();
		maybe_reload_session();

		now = trading_monotonic_us();
		if (session.readable && !session.expired &&
			(dispatch_wanted || now >= dispatch_at_us))
			dispatch();
		if (now >= watchdog_at_us)
			watchdog();
		if (session.readable && !session.expired && now >= reconcile_at_us)
			start_reconcile();

		now = trading_monotonic_us();
		next = Min(Min(dispatch_at_us, watchdog_at_us), reconcile_at_us);
		if (dispatch_wanted && session.readable)
			next = now;
		replies = order_http_wait((long) Max(Min((next - now + 999) / 1000, 1000), 0),
								  &nreplies, &latch_set);
		if (latch_set)
		{
			/* a commit queued a request (or SIGHUP, SIGTERM): look for work */
			ResetLatch(MyLatch);
			dispatch_wanted = true;
		}
		if (nreplies > 0)
			handle_replies(replies, nreplies);
	}
}

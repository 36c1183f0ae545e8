/*-------------------------------------------------------------------------
 *
 * ratelimit_sql.c
 *	  SQL interface of the rate limiter: the configuration functions (they
 *	  write trading.rate_limits, whose statement trigger applies a change
 *	  at once), rate_limit_try, rate_limit_acquire and its wait queue, and
 *	  the status function behind trading.rate_limit_status.  What each does,
 *	  and the fairness policy, are in docs/RATE_LIMITER.md.
 *
 * The wait queue of an endpoint is a list of pgprocnos linked through
 * ratelimit_shared->wait_next, under the endpoint's mutex.  A waiter sleeps
 * on its latch; whoever changes who may be served (a grant that unlinks the
 * head, a dequeue, a reconfiguration) sets the latch of the new head after
 * releasing the mutex.  Leaving the queue on error, cancel or backend exit
 * is done by PG_ENSURE_ERROR_CLEANUP.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit_int.h"

#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(ratelimit_sql_set);
PG_FUNCTION_INFO_V1(ratelimit_sql_drop);
PG_FUNCTION_INFO_V1(ratelimit_sql_try);
PG_FUNCTION_INFO_V1(ratelimit_sql_acquire);
PG_FUNCTION_INFO_V1(ratelimit_sql_status);
PG_FUNCTION_INFO_V1(ratelimit_sql_changed);

/* Every SQL entry point starts here. */
static void
ratelimit_prepare(void)
{
	trading_check_database();
	if (ratelimit_sync_needed())
		(void) ratelimit_sync(RATELIMIT_SYNC_WAIT);
}

static char *
ratelimit_endpoint_arg(FunctionCallInfo fcinfo, int argno)
{
	return trading_text_arg(fcinfo, argno, "endpoint", RATELIMIT_NAME_LEN - 1);
}

static int64
interval_arg_us(FunctionCallInfo fcinfo, int argno, const char *name,
				bool allow_zero, int64 max_us)
{
	Interval   *iv;
	int64		us;

	trading_require_arg(fcinfo, argno, name);
	iv = PG_GETARG_INTERVAL_P(argno);
	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be given in months or years", name),
				 errhint("Use days, e.g. interval '30 days'.")));
	if (iv->day < 0 || iv->day > 366 ||
		(us = iv->time + (int64) iv->day * USECS_PER_DAY) < 0 ||
		(us == 0 && !allow_zero))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be %s", name,
						allow_zero ? "zero or positive" : "positive")));
	if (us > max_us)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", name),
				 errdetail("At most %d days are allowed.",
						   (int) (max_us / USECS_PER_DAY))));
	return us;
}

static int
cost_arg(FunctionCallInfo fcinfo, int argno)
{
	int			cost;

	trading_require_arg(fcinfo, argno, "cost");
	cost = PG_GETARG_INT32(argno);
	if (cost < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must be at least 1")));
	return cost;
}

static Interval *
us_to_interval(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->day = us / USECS_PER_DAY;
	iv->time = us % USECS_PER_DAY;
	return iv;
}

static void
report_try_failure(RateLimitResult r, const char *endpoint, int cost,
				   int64 extra)
{
	if (r == RATELIMIT_UNKNOWN_ENDPOINT)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rate limit endpoint \"%s\" does not exist", endpoint),
				 errhint("Define it with trading.rate_limit_set(); trading.rate_limit_status lists the endpoints.")));
	if (r == RATELIMIT_BAD_COST)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost %d exceeds what endpoint \"%s\" allows in one window",
						cost, endpoint),
				 errdetail_plural("The smallest limit of the endpoint is " INT64_FORMAT " request; a larger request could never be granted.",
								  "The smallest limit of the endpoint is " INT64_FORMAT " requests; a larger request could never be granted.",
								  (unsigned long) extra, extra)));
}

/* ---------------------------------------------------------------------
 * Configuration.
 * ---------------------------------------------------------------------
 */

Datum
ratelimit_sql_set(PG_FUNCTION_ARGS)
{
	char	   *endpoint = ratelimit_endpoint_arg(fcinfo, 0);
	int32		requests;
	Datum		values[3];
	Oid			types[3] = {TEXTOID, INT4OID, INTERVALOID};
	int			ret;

	trading_require_arg(fcinfo, 1, "requests");
	requests = PG_GETARG_INT32(1);
	if (requests < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("requests must be at least 1")));
	(void) interval_arg_us(fcinfo, 2, "per", false, RATELIMIT_MAX_PER_US);
	trading_require_primary("changing rate limits");
	ratelimit_prepare();

	values[0] = CStringGetTextDatum(endpoint);
	values[1] = Int32GetDatum(requests);
	values[2] = PG_GETARG_DATUM(2);

	SPI_connect();
	ret = SPI_execute_with_args("INSERT INTO trading.rate_limits AS r (endpoint, requests, per) "
								"VALUES ($1, $2, $3) "
								"ON CONFLICT (endpoint, per) DO UPDATE SET requests = EXCLUDED.requests",
								3, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store rate limit: %s", SPI_result_code_string(ret));
	SPI_finish();

	PG_RETURN_VOID();
}

Datum
ratelimit_sql_drop(PG_FUNCTION_ARGS)
{
	char	   *endpoint = ratelimit_endpoint_arg(fcinfo, 0);
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Oid			types[2] = {TEXTOID, INTERVALOID};
	int			ret;
	uint64		dropped;

	if (!PG_ARGISNULL(1))
		(void) interval_arg_us(fcinfo, 1, "per", false, RATELIMIT_MAX_PER_US);
	trading_require_primary("changing rate limits");
	ratelimit_prepare();

	values[0] = CStringGetTextDatum(endpoint);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';

	SPI_connect();
	ret = SPI_execute_with_args("DELETE FROM trading.rate_limits "
								"WHERE endpoint = $1 AND ($2::interval IS NULL OR per = $2)",
								2, types, values, nulls, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not drop rate limit: %s", SPI_result_code_string(ret));
	dropped = SPI_processed;
	SPI_finish();

	if (dropped == 0)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("rate limit endpoint \"%s\" does not exist", endpoint)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("endpoint \"%s\" has no limit with that window", endpoint),
					 errhint("trading.rate_limit_status lists the limits of each endpoint.")));
	}
	PG_RETURN_INT32((int32) dropped);
}

/* Statement trigger on trading.rate_limits: apply the change now, and make
 * every backend re-read the table when this transaction ends. */
Datum
ratelimit_sql_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_rate_limits_changed() may only be called as a trigger")));
	trading_check_database();
	ratelimit_mark_changed();
	(void) ratelimit_sync(RATELIMIT_SYNC_FORCE);
	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------------------
 * Grants.
 * ---------------------------------------------------------------------
 */

Datum
ratelimit_sql_try(PG_FUNCTION_ARGS)
{
	char		endpoint[RATELIMIT_NAME_LEN];
	int			cost;
	int64		extra;
	RateLimitResult r;

	/* hot path: copy the name to the stack instead of palloc'ing it */
	text	   *t = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);

	if (t && VARSIZE_ANY_EXHDR(t) > 0 && VARSIZE_ANY_EXHDR(t) < RATELIMIT_NAME_LEN)
	{
		memcpy(endpoint, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		endpoint[VARSIZE_ANY_EXHDR(t)] = '\0';
	}
	else
		strlcpy(endpoint, ratelimit_endpoint_arg(fcinfo, 0), RATELIMIT_NAME_LEN);	/* errors */
	cost = cost_arg(fcinfo, 1);

	ratelimit_prepare();
	r = ratelimit_grant(endpoint, cost, 0, RATELIMIT_COUNT_REFUSAL, &extra);
	if (r == RATELIMIT_GRANTED)
		PG_RETURN_BOOL(true);
	if (r == RATELIMIT_REFUSED)
		PG_RETURN_BOOL(false);
	report_try_failure(r, endpoint, cost, extra);
	PG_RETURN_NULL();			/* not reached */
}

typedef struct RateLimitWaiter
{
	int			index;			/* endpoint slot */
	uint32		generation;
	bool		queued;
} RateLimitWaiter;

/*
 * Unlink proc me from ep's queue, under ep's mutex.  Returns the new head
 * if me was the head (to be woken after the mutex is released), else -1.
 * A new head holds the queue until it has looked at its own wait.
 */
static int
ratelimit_unlink_locked(RateEndpoint *ep, int me)
{
	int			prev = -1;
	int			wake = -1;

	for (int p = ep->queue_head; p >= 0; prev = p, p = ratelimit_shared->wait_next[p])
	{
		if (p != me)
			continue;
		if (prev < 0)
		{
			ep->queue_head = ratelimit_shared->wait_next[p];
			wake = ep->queue_head;
			ep->queue_holds = (wake >= 0);
		}
		else
			ratelimit_shared->wait_next[prev] = ratelimit_shared->wait_next[p];
		if (ep->queue_tail == me)
			ep->queue_tail = prev;
		ratelimit_shared->wait_next[me] = -1;
		ep->queue_len--;
		break;
	}
	return wake;
}

/*
 * Remove MyProc from the endpoint's queue (if it is still there) and wake
 * the new head.  Used on timeout, error and backend exit.
 */
static void
ratelimit_dequeue(RateLimitWaiter *w)
{
	RateEndpoint *ep = &ratelimit_shared->endpoints[w->index];
	int			wake = -1;

	if (!w->queued)
		return;
	SpinLockAcquire(&ep->mutex);
	if (ep->in_use && ep->generation == w->generation)
		wake = ratelimit_unlink_locked(ep, MyProc->pgprocno);
	SpinLockRelease(&ep->mutex);
	w->queued = false;
	ratelimit_wake(wake);
}

static void
ratelimit_dequeue_callback(int code, Datum arg)
{
	ratelimit_dequeue((RateLimitWaiter *) DatumGetPointer(arg));
}

/*
 * Fairness (docs/RATE_LIMITER.md): waiters are served in arrival order
 * while the head's own wait is within the endpoint's shortest window
 * (queue_holds); a head that must wait longer lets later callers pass.
 * Workers' grants (ratelimit_try) pass the queue, and while a refused
 * worker request's reservation runs (worker_until) no waiter is served.
 * A waiter whose request cannot fit before its deadline never holds the
 * queue: it waits out its timeout while later callers pass.
 */
Datum
ratelimit_sql_acquire(PG_FUNCTION_ARGS)
{
	char	   *endpoint = ratelimit_endpoint_arg(fcinfo, 0);
	int			cost = cost_arg(fcinfo, 1);
	int64		timeout_us = interval_arg_us(fcinfo, 2, "timeout", true,
											 (int64) 1 * USECS_PER_DAY);
	int64		start = trading_monotonic_us();
	int64		deadline = start + timeout_us;
	RateLimitWaiter w;
	RateEndpoint *ep;
	RateLimitResult r;
	int64		extra;
	int			me = MyProc->pgprocno;
	int64		granted_at = 0;
	bool		dropped = false;

	ratelimit_prepare();

	/* fast path: nobody holding the queue and the request fits */
	r = ratelimit_grant(endpoint, cost, 0, 0, &extra);
	if (r == RATELIMIT_GRANTED)
		PG_RETURN_INTERVAL_P(us_to_interval(0));
	if (r != RATELIMIT_REFUSED)
		report_try_failure(r, endpoint, cost, extra);

	w.index = ratelimit_lookup(endpoint, &w.generation);
	if (w.index < 0)
		report_try_failure(RATELIMIT_UNKNOWN_ENDPOINT, endpoint, cost, 0);
	w.queued = false;
	ep = &ratelimit_shared->endpoints[w.index];

	/* join the queue */
	SpinLockAcquire(&ep->mutex);
	if (ep->in_use && ep->generation == w.generation)
	{
		ratelimit_shared->wait_next[me] = -1;
		if (ep->queue_tail >= 0)
			ratelimit_shared->wait_next[ep->queue_tail] = me;
		else
		{
			ep->queue_head = me;
			ep->queue_holds = true;
		}
		ep->queue_tail = me;
		ep->queue_len++;
		w.queued = true;
	}
	SpinLockRelease(&ep->mutex);
	if (!w.queued)
		report_try_failure(RATELIMIT_UNKNOWN_ENDPOINT, endpoint, cost, 0);

	PG_ENSURE_ERROR_CLEANUP(ratelimit_dequeue_callback, PointerGetDatum(&w));
	{
		for (;;)
		{
			int64		now;
			int64		sleep_us = 0;
			int			next = -1;
			int			too_costly = 0;

			ResetLatch(MyLatch);

			SpinLockAcquire(&ep->mutex);
			now = trading_monotonic_us();
			if (!ep->in_use || ep->generation != w.generation)
			{
				dropped = true;
				w.queued = false;	/* the drop emptied the queue */
			}
			else if (ep->reconfiguring)
				sleep_us = 1000;
			else if (cost > ratelimit_min_n(ep))
				too_costly = ratelimit_min_n(ep);	/* a limit was lowered
													 * meanwhile */
			else
			{
				bool		head = (ep->queue_head == me);
				bool		fits;

				now = ratelimit_clamp_now(ep, now);
				fits = ratelimit_allowed(ep, cost, now, &sleep_us);
				if (fits && (head || !ep->queue_holds) && ep->worker_until <= now)
				{
					ratelimit_record(ep, cost, now);
					ep->granted_total++;
					ep->waited_us_total += now - start;
					granted_at = now;
					next = ratelimit_unlink_locked(ep, me);
					w.queued = false;
				}
				else
				{
					/* hold later callers only if served soon, and in time */
					if (head)
						ep->queue_holds = (sleep_us <= ratelimit_min_per(ep) &&
										   now + sleep_us <= deadline);
					if (ep->worker_until > now)
						sleep_us = Max(sleep_us, ep->worker_until - now);
					if (!head && ep->queue_holds)
						sleep_us = deadline - now;	/* woken when we become
													 * head */
				}
			}

			if (!dropped && granted_at == 0 && too_costly == 0 &&
				now >= deadline)
			{
				ep->timeouts_total++;
				ep->refused_total++;
				ep->waited_us_total += now - start;
			}
			SpinLockRelease(&ep->mutex);

			if (granted_at != 0)
			{
				ratelimit_wake(next);
				break;
			}
			if (too_costly > 0)
			{
				ratelimit_dequeue(&w);
				report_try_failure(RATELIMIT_BAD_COST, endpoint, cost, too_costly);
			}
			if (dropped)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("rate limit endpoint \"%s\" was dropped while waiting",
								endpoint)));
			if (now >= deadline)
			{
				ratelimit_dequeue(&w);
				ereport(ERROR,
						(errcode(ERRCODE_TRADING_RATE_LIMIT_TIMEOUT),
						 errmsg("rate limit of endpoint \"%s\" not granted within the timeout",
								endpoint),
						 errdetail("Waited %.3f s for %d request(s); nothing was consumed.",
								   (now - start) / 1000000.0, cost),
						 errhint("Retry later, or pass a longer timeout to trading.rate_limit_acquire().")));
			}

			/* cap the sleep so a configuration change is noticed promptly */
			sleep_us = Min(sleep_us, deadline - now);
			sleep_us = Min(sleep_us, (int64) 1000000);
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) ((sleep_us + 999) / 1000),
							 PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(ratelimit_dequeue_callback, PointerGetDatum(&w));

	PG_RETURN_INTERVAL_P(us_to_interval(granted_at - start));
}

/* ---------------------------------------------------------------------
 * Status.
 * ---------------------------------------------------------------------
 */

Datum
ratelimit_sql_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	ratelimit_prepare();
	InitMaterializedSRF(fcinfo, 0);

	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];
		RateEndpoint snap;
		int32		used[RATELIMIT_MAX_LIMITS];
		int64		oldest[RATELIMIT_MAX_LIMITS];
		int64		now;

		SpinLockAcquire(&ep->mutex);
		if (!ep->in_use)
		{
			SpinLockRelease(&ep->mutex);
			continue;
		}
		now = trading_monotonic_us();
		snap = *ep;
		for (int l = 0; l < ep->nlimits; l++)
			used[l] = ratelimit_used(&ep->limits[l], now, &oldest[l]);
		SpinLockRelease(&ep->mutex);

		for (int l = 0; l < snap.nlimits; l++)
		{
			RateLimit  *lim = &snap.limits[l];
			Datum		values[11];
			bool		nulls[11] = {0};
			int64		retry = 0;

			if (used[l] >= lim->n)
			{
				/* a cost-1 request fits once the oldest unit leaves */
				int64		k_oldest = oldest[l];

				retry = Max(0, k_oldest + lim->per_us - now);
			}
			values[0] = CStringGetTextDatum(snap.name);
			values[1] = Int32GetDatum(lim->n);
			values[2] = IntervalPGetDatum(us_to_interval(lim->per_us));
			values[3] = Int32GetDatum(used[l]);
			values[4] = Int32GetDatum(Max(0, lim->n - used[l]));
			values[5] = IntervalPGetDatum(us_to_interval(retry));
			values[6] = Int64GetDatum((int64) snap.granted_total);
			values[7] = Int64GetDatum((int64) snap.refused_total);
			values[8] = Float8GetDatum(snap.waited_us_total / 1000000.0);
			values[9] = Int32GetDatum(snap.queue_len);
			values[10] = Int64GetDatum((int64) snap.timeouts_total);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
		}
	}
	return (Datum) 0;
}

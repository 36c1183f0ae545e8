/*-------------------------------------------------------------------------
 *
 * market_worker.c
 *	  The background worker "trading market data": loads the instrument
 *	  master when trading.instruments is empty and then daily at
 *	  trading.instruments_refresh_time (IST), and runs the candle backfill
 *	  jobs of trading.backfill_queue.  It is separate from the broker
 *	  worker so that a 100k-row load or a long backfill never delays the
 *	  polling of orders and positions.  This file holds the GUCs, the
 *	  registration, shared memory and the main loop; market_instruments.c
 *	  and market_candles.c do the work.
 *
 * Lifecycle: started once recovery has finished (primary only; after a
 * promotion, yes), restarted 5 s after a crash.  Connects with the kit of
 * bgw_common.h, then naps while the installed extension is older than 1.1
 * (its tables arrive in 1.1).  SIGHUP re-reads the settings; SIGTERM stops
 * it at the next interrupt check (a download in progress is aborted by
 * the libcurl progress callback).
 *
 * The schedule's clock is the wall clock plus trading.market_clock_offset
 * (seconds; 0 in production), so that a test can move the worker's "now"
 * next to the configured refresh time.
 *
 * Shared memory and its locking rules: see market.h.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "broker_worker.h"
#include "market.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void market_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(market_worker_stats);

MarketShared *market_shared = NULL;

static TimestampTz worker_started_at;

/* GUCs */
static bool market_worker_enabled = true;
char	   *market_refresh_time = NULL;
int			market_clock_offset_s = 0;
int			market_rate_margin_ms = 20;
char	   *market_historical_max_days = NULL;

#define IDLE_NAP_MS			1000	/* nothing to do: look again after */
#define LOAD_RETRY_MS		60000	/* a failed instrument load */

static bool
check_refresh_time(char **newval, void **extra, GucSource source)
{
	int			h,
				m;
	char		tail;

	if (sscanf(*newval, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
	{
		GUC_check_errdetail("Expected HH:MM (IST), for example 08:45.");
		return false;
	}
	return true;
}

static bool
check_max_days(char **newval, void **extra, GucSource source)
{
	static const char *const names[] = {
		"minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day"
	};
	bool		seen[lengthof(names)] = {false};
	char	   *copy = pstrdup(*newval);
	char	   *save = NULL;
	bool		ok = true;

	for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *eq = strchr(tok, '=');
		int			i,
					days = 0;
		char		tail;

		ok = false;
		if (!eq)
			break;
		*eq = '\0';
		if (sscanf(eq + 1, "%d%c", &days, &tail) != 1 || days < 1 || days > 100000)
			break;
		for (i = 0; i < lengthof(names); i++)
			if (strcmp(tok, names[i]) == 0)
				break;
		if (i == lengthof(names))
			break;
		seen[i] = ok = true;
	}
	for (int i = 0; ok && i < lengthof(names); i++)
		ok = seen[i];
	pfree(copy);
	if (!ok)
		GUC_check_errdetail("Expected interval=days for each of minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute and day.");
	return ok;
}

void
market_worker_init(void)
{
	DefineCustomBoolVariable("trading.market_worker",
							 "Start the market data worker (instrument master, candle backfills).",
							 NULL, &market_worker_enabled, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("trading.instruments_refresh_time",
							   "Time of day (HH:MM, IST) the instrument master is reloaded.",
							   NULL, &market_refresh_time, "08:45",
							   PGC_SIGHUP, 0, check_refresh_time, NULL, NULL);
	DefineCustomIntVariable("trading.market_clock_offset",
							"Seconds added to the clock the market data worker schedules by (tests only).",
							NULL, &market_clock_offset_s, 0, -400000000, 400000000,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.market_rate_margin",
							"Extra spacing the market data worker keeps beyond kite.historical.",
							NULL, &market_rate_margin_ms, 20, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("trading.historical_max_days",
							   "Largest range of one historical candle request, in days, per interval.",
							   NULL, &market_historical_max_days,
							   "minute=60,3minute=100,5minute=100,10minute=100,15minute=200,30minute=200,60minute=400,day=2000",
							   PGC_SIGHUP, 0, check_max_days, NULL, NULL);

	if (!market_worker_enabled)
		return;
	trading_register_worker("market_worker_main", "trading market data",
							BgWorkerStart_RecoveryFinished, 5);
}

void
market_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MarketShared)));
}

void
market_shmem_startup(void)
{
	bool		found;

	market_shared = ShmemInitStruct("trading.market", sizeof(MarketShared), &found);
	if (found)
		return;
	SpinLockInit(&market_shared->mutex);
	market_shared->pid = 0;
	market_shared->procno = -1;
	pg_atomic_init_u32(&market_shared->database_seen, 1);
	pg_atomic_init_u64(&market_shared->requests, 0);
	pg_atomic_init_u64(&market_shared->retries, 0);
	pg_atomic_init_u64(&market_shared->failures, 0);
	pg_atomic_init_u64(&market_shared->candles, 0);
	pg_atomic_init_u64(&market_shared->rate_waits, 0);
}

/*
 * trading._market_stats(OUT pid integer, OUT requests bigint, OUT retries
 * bigint, OUT failures bigint, OUT candles bigint, OUT rate_waits bigint):
 * the worker's pid (NULL when it is not running) and its backfill counters
 * since the server started.
 */
Datum
market_worker_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false};
	int			pid;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	SpinLockAcquire(&market_shared->mutex);
	pid = market_shared->pid;
	SpinLockRelease(&market_shared->mutex);
	values[0] = Int32GetDatum(pid);
	nulls[0] = pid == 0;
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&market_shared->requests));
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&market_shared->retries));
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&market_shared->failures));
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&market_shared->candles));
	values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&market_shared->rate_waits));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

static void
worker_exit(void)
{
	SpinLockAcquire(&market_shared->mutex);
	market_shared->pid = 0;
	market_shared->procno = -1;
	SpinLockRelease(&market_shared->mutex);
}

/* ---------------------------------------------------------------------
 * The instrument schedule
 * ---------------------------------------------------------------------
 */
typedef struct DueArgs
{
	const char *trigger;		/* out: NULL = nothing due */
} DueArgs;

static void
due_body(void *arg)
{
	DueArgs    *a = (DueArgs *) arg;
	Datum		args[3];
	Oid			types[3] = {TEXTOID, INT4OID, TIMESTAMPTZOID};
	bool		isnull;

	SPI_execute("SET LOCAL search_path = pg_catalog, pg_temp", false, 0);
	args[0] = CStringGetTextDatum(market_refresh_time);
	args[1] = Int32GetDatum(market_clock_offset_s);
	args[2] = TimestampTzGetDatum(worker_started_at);

	/*
	 * The latest occurrence of the refresh time (IST) at the worker's clock
	 * is due when no successful load started after it (same clock); a list
	 * that was never loaded here (rows inserted by hand) counts as loaded
	 * when the worker started, so it is replaced at the next occurrence.
	 */
	if (SPI_execute_with_args(
							  "WITH c AS (SELECT (clock_timestamp() + make_interval(secs => $2)) AT TIME ZONE 'Asia/Kolkata' AS now_ist), "
							  "o AS (SELECT CASE WHEN date_trunc('day', now_ist) + $1::time <= now_ist "
							  "             THEN date_trunc('day', now_ist) + $1::time "
							  "             ELSE date_trunc('day', now_ist) - interval '1 day' + $1::time END AS occ_ist FROM c) "
							  "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM trading.instruments) THEN 'empty' "
							  "            WHEN (o.occ_ist AT TIME ZONE 'Asia/Kolkata') > "
							  "                 coalesce((SELECT max(l.started_at) FROM trading.instrument_loads l WHERE l.error IS NULL), $3) "
							  "                 + make_interval(secs => $2) THEN 'daily' END FROM o",
							  3, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the instrument schedule");
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (isnull)
			a->trigger = NULL;
		else if (strcmp(TextDatumGetCString(d), "empty") == 0)
			a->trigger = "empty";
		else
			a->trigger = "daily";
	}
}

typedef struct LoadArgs
{
	const char *trigger;
	MarketResponse *resp;
	TimestampTz started;
	int64		rows;
} LoadArgs;

static void
load_body(void *arg)
{
	LoadArgs   *a = (LoadArgs *) arg;

	SPI_execute("SET LOCAL search_path = pg_catalog, pg_temp", false, 0);
	a->rows = market_load_instruments(a->trigger, a->resp, a->started);
}

typedef struct FailArgs
{
	const char *trigger;
	const char *message;
	TimestampTz started;
} FailArgs;

static void
fail_body(void *arg)
{
	FailArgs   *a = (FailArgs *) arg;
	Datum		args[3];
	Oid			types[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};

	args[0] = CStringGetTextDatum(a->trigger);
	args[1] = CStringGetTextDatum(a->message);
	args[2] = TimestampTzGetDatum(a->started);
	SPI_execute_with_args("INSERT INTO trading.instrument_loads (trigger, started_at, finished_at, error) "
						  "VALUES ($1, $3, pg_catalog.clock_timestamp(), $2)",
						  3, types, args, NULL, false, 0);
}

/* Load the instrument master if due; returns ms until the next check. */
static long
instruments_tick(MemoryContext cxt)
{
	DueArgs		due = {NULL};
	ErrorData  *e;
	MarketResponse resp;
	LoadArgs	la;

	e = trading_bgw_run_xact("trading market data: instrument schedule", due_body, &due);
	if (e)
	{
		ereport(LOG, (errmsg("trading market data could not read the instrument schedule: %s",
							 e->message)));
		return LOAD_RETRY_MS;
	}
	if (!due.trigger)
		return IDLE_NAP_MS;

	la.started = GetCurrentTimestamp();
	market_fetch_instruments(&resp);
	la.trigger = due.trigger;
	la.resp = &resp;
	la.rows = 0;
	e = trading_bgw_run_xact("trading market data: loading the instrument master", load_body, &la);
	pfree(resp.body);
	if (e)
	{
		FailArgs	fa = {due.trigger, e->message, la.started};

		ereport(LOG,
				(errmsg("trading market data could not load the instrument master: %s", e->message),
				 e->detail ? errdetail_internal("%s", e->detail) : 0));
		(void) trading_bgw_run_xact("trading market data: recording a failed load", fail_body, &fa);
		return LOAD_RETRY_MS;
	}
	ereport(LOG,
			(errmsg("trading market data loaded %lld instruments (%s)",
					(long long) la.rows, due.trigger)));
	return IDLE_NAP_MS;
}

/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */
void
market_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	bool		logged = false;
	TimestampTz next_instruments = 0;
	TimestampTz next_version_check = 0;

	SpinLockAcquire(&market_shared->mutex);
	market_shared->pid = MyProcPid;
	market_shared->procno = MyProc->pgprocno;
	SpinLockRelease(&market_shared->mutex);
	trading_bgw_on_exit(worker_exit);
	worker_started_at = trading_bgw_start_time();

	trading_bgw_connect(&market_shared->database_seen, "trading market data");
	pgstat_report_appname("trading market data");

	/* the tables arrive in 1.1: wait while the installed extension is older */
	while (trading_bgw_extension_version() < 110)
	{
		if (!logged)
			ereport(LOG,
					(errmsg("trading market data waiting for the trading extension 1.1 in database \"%s\"",
							trading_database)));
		logged = true;
		trading_bgw_nap(5000L);
	}
	if (logged)
		ereport(LOG, (errmsg("trading market data started")));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "trading market data loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		nap = IDLE_NAP_MS;
		TimestampTz now = GetCurrentTimestamp();
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(loop_cxt);
		old = MemoryContextSwitchTo(loop_cxt);

		/* the extension may have been dropped meanwhile (checked every 5 s) */
		if (now >= next_version_check)
		{
			if (trading_bgw_extension_version() < 110)
			{
				MemoryContextSwitchTo(old);
				trading_bgw_nap(5000L);
				continue;
			}
			next_version_check = now + 5 * USECS_PER_SEC;
		}
		if (now >= next_instruments)
		{
			long		ms = instruments_tick(loop_cxt);

			next_instruments = GetCurrentTimestamp() + ms * 1000;
		}
		{
			long		wait_ms = IDLE_NAP_MS;

			if (market_backfill_step(&wait_ms))
				nap = 0;
			else
				nap = Min(nap, wait_ms);
		}
		MemoryContextSwitchTo(old);
		if (nap > 0)
			trading_bgw_nap(nap);
		else
		{
			CHECK_FOR_INTERRUPTS();
			(void) trading_bgw_reload();
		}
	}
}

/*-------------------------------------------------------------------------
 *
 * bgw_common.c
 *	  The lifecycle kit of the extension's background workers (see
 *	  bgw_common.h): signals and connection, the installed version, guarded
 *	  units of work and subtransactions, the nap with reload, the exit hook.
 *
 * A background worker can initialise its database connection only once, so
 * a worker that must wait for the database waits unconnected (reading the
 * shared catalog pg_database by a sequential scan, as the autovacuum
 * launcher does) and exits when the database appears; the postmaster then
 * restarts it and it connects.  The flag that remembers "the last attempt
 * failed" lives in the calling module's shared memory (an atomic; no lock).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "access/stratnum.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "tcop/tcopprot.h"

static void (*exit_hook) (void) = NULL;

/* Is there a database of this name?  A heap scan of the shared catalog. */
static bool
database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		found = strcmp(NameStr(db->datname), name) == 0;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/* Unconnected: nap until the database exists, then exit to be restarted. */
static void
wait_for_database(pg_atomic_uint32 *database_seen, const char *worker_name)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	ereport(LOG,
			(errmsg("%s waiting for database \"%s\" to be created",
					worker_name, trading_database),
			 errhint("Create the database, or set trading.database in postgresql.conf and restart.")));
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (database_exists(trading_database))
		{
			pg_atomic_write_u32(database_seen, 1);
			proc_exit(1);		/* restarted by the postmaster, connects */
		}
		trading_bgw_nap(1000L);
	}
}

void
trading_bgw_connect(pg_atomic_uint32 *database_seen, const char *worker_name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (database_seen == NULL)
		BackgroundWorkerInitializeConnection(trading_database, NULL, 0);
	else
	{
		if (pg_atomic_read_u32(database_seen) == 0)
			wait_for_database(database_seen, worker_name);

		/* if this attempt is FATAL, the next start waits for the database */
		pg_atomic_write_u32(database_seen, 0);
		BackgroundWorkerInitializeConnection(trading_database, NULL, 0);
		pg_atomic_write_u32(database_seen, 1);
	}

	/*
	 * PGC_S_OVERRIDE ranks above the settings of ALTER DATABASE / ALTER ROLE
	 * (applied while connecting, overridden here) and of the configuration
	 * file (on reload), but below SET, so functions declared with SET
	 * search_path still get theirs.
	 */
	SetConfigOption("search_path", TRADING_BGW_SEARCH_PATH,
					PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname(worker_name);
}

void
trading_bgw_begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
trading_bgw_commit_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Abort releases SPI's connection and the active snapshot itself, so this
 * is also right after an error was caught in the middle of the work.
 */
void
trading_bgw_abort_xact(void)
{
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
}

int
trading_bgw_extension_version(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	int			version = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("trading"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		int			major = 0,
					minor = 0;

		if (!isnull &&
			sscanf(TextDatumGetCString(d), "%d.%d", &major, &minor) == 2)
			version = major * 100 + minor * 10;
		else
			version = 1;		/* installed, version unreadable */
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return version;
}

ErrorData *
trading_bgw_run_xact(const char *activity, void (*body) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		trading_bgw_begin_xact(activity);
		body(arg);
		trading_bgw_commit_xact();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		trading_bgw_abort_xact();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return edata;
}

ErrorData *
trading_bgw_run_subxact(void (*body) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		body(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

bool
trading_bgw_data_error(const ErrorData *edata)
{
	int			class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);

	return class == ERRCODE_CARDINALITY_VIOLATION ||
		class == ERRCODE_DATA_EXCEPTION ||
		class == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
}

bool
trading_bgw_nap(long ms)
{
	if (ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	else if (!PostmasterIsAlive())
		proc_exit(1);

	CHECK_FOR_INTERRUPTS();
	return trading_bgw_reload();
}

bool
trading_bgw_reload(void)
{
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

TimestampTz
trading_bgw_start_time(void)
{
	return MyStartTimestamp;
}

/* before_shmem_exit callback: run the worker's hook */
static void
run_exit_hook(int code, Datum arg)
{
	if (exit_hook)
		exit_hook();
}

void
trading_bgw_on_exit(void (*hook) (void))
{
	Assert(exit_hook == NULL);
	exit_hook = hook;
	before_shmem_exit(run_exit_hook, (Datum) 0);
}

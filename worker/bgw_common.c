/*-------------------------------------------------------------------------
 *
 * bgw_common.c
 *	  Start-up shared by the extension's background workers: connecting to
 *	  trading.database without crash-looping while it does not exist, and
 *	  the begin/commit of one unit of work.
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
#include "utils/guc.h"
#include "utils/snapmgr.h"

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

void
trading_bgw_nap(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

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
	if (pg_atomic_read_u32(database_seen) == 0)
		wait_for_database(database_seen, worker_name);

	/* if this attempt is FATAL, the next start waits for the database */
	pg_atomic_write_u32(database_seen, 0);
	BackgroundWorkerInitializeConnection(trading_database, NULL, 0);
	pg_atomic_write_u32(database_seen, 1);
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
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return edata;
}

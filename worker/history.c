/*-------------------------------------------------------------------------
 *
 * history.c
 *	  Trade history at rest: moves orders, trades and correlation operations
 *	  older than trading.history_retention into encrypted archives, on a
 *	  schedule run by the correlation writer (docs/OPERATIONS.md).
 *
 * The move itself is SQL (trading.archive_history_batch, 85_history.sql):
 * one batch per transaction, archived and deleted together.  This file
 * holds its settings and the loop that runs batches until none is left,
 * each through the worker kit's guarded unit of work, so an error (no
 * server key, a lock) rolls back that batch, is logged, and the rows stay
 * live until the next run.  No shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "history.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* GUCs */
int			history_retention_s = 30 * 24 * 3600;
static int	history_interval_s = 3600;
static int	history_batch_rows = 5000;

/* a run moves at most this many batches per kind, then yields */
#define HISTORY_MAX_BATCHES		100

static TimestampTz last_run = 0;
static char *last_error = NULL;

void
history_init(void)
{
	DefineCustomIntVariable("trading.history_retention",
							"Age after which orders, trades and correlation operations move into encrypted archives; 0 keeps them live.",
							NULL,
							&history_retention_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.history_interval",
							"How often the correlation writer moves old history into archives.",
							NULL,
							&history_interval_s,
							3600, 1, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.history_batch_rows",
							"Rows per history archive (one transaction each).",
							NULL,
							&history_batch_rows,
							5000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

typedef struct HistoryBatch
{
	const char *kind;
	int64		moved;
} HistoryBatch;

/* Move one batch of one kind (a unit of work of the kit). */
static void
history_batch(void *arg)
{
	HistoryBatch *b = (HistoryBatch *) arg;
	Datum		values[3];
	Oid			types[3] = {TEXTOID, INTERVALOID, INT4OID};
	bool		isnull;

	values[0] = CStringGetTextDatum(b->kind);
	values[1] = DirectFunctionCall7(make_interval,
									Int32GetDatum(0), Int32GetDatum(0), Int32GetDatum(0),
									Int32GetDatum(0), Int32GetDatum(0), Int32GetDatum(0),
									Float8GetDatum((double) history_retention_s));
	values[2] = Int32GetDatum(history_batch_rows);
	if (SPI_execute_with_args("SELECT trading.archive_history_batch($1, $2, $3)",
							  3, types, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not run trading.archive_history_batch");
	b->moved = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
}

/* Log an error once, and again only when it changes. */
static void
history_report(ErrorData *e)
{
	if (last_error && strcmp(last_error, e->message) == 0)
		return;
	if (last_error)
		pfree(last_error);
	last_error = MemoryContextStrdup(TopMemoryContext, e->message);
	ereport(WARNING,
			(errmsg("moving old history into archives failed: %s", e->message),
			 errdetail("The rows stay in the live tables and the move is tried again in %d seconds.",
					   history_interval_s),
			 e->hint ? errhint("%s", e->hint) : 0));
}

void
history_maybe_run(void)
{
	static const char *const kinds[] = {"orders", "trades", "operations"};
	TimestampTz now = GetCurrentTimestamp();

	if (history_retention_s <= 0 ||
		!TimestampDifferenceExceeds(last_run, now, history_interval_s * 1000))
		return;
	last_run = now;
	if (trading_bgw_extension_version() < 110)
		return;

	for (int k = 0; k < lengthof(kinds); k++)
	{
		for (int i = 0; i < HISTORY_MAX_BATCHES; i++)
		{
			HistoryBatch b = {kinds[k], 0};
			ErrorData  *e;

			e = trading_bgw_run_xact("trading correlation writer: moving old history into archives",
									 history_batch, &b);
			if (e)
			{
				history_report(e);
				FreeErrorData(e);
				return;
			}
			if (last_error)
			{
				pfree(last_error);
				last_error = NULL;
				ereport(LOG, (errmsg("moving old history into archives works again")));
			}
			if (b.moved > 0)
				ereport(DEBUG1,
						(errmsg("moved %lld %s into an archive", (long long) b.moved, b.kind)));
			if (b.moved < history_batch_rows)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
}

/*-------------------------------------------------------------------------
 *
 * correlation_writer.c
 *	  The "trading correlation writer" background worker: drains the
 *	  correlation event queue (extension/correlation.c) into
 *	  trading.operations in batches, one transaction per batch, and keeps
 *	  the table tidy (closes operations whose backend is gone, applies the
 *	  retention setting).
 *
 * One row per operation.  A BEGIN event inserts the row; an END event
 * upserts the end columns (INSERT ... ON CONFLICT (id) DO UPDATE), so an
 * end whose begin was dropped still makes a row (with the begin's fields
 * carried by the end when the ending backend knew them).  begin_seq and
 * end_seq record the sequence numbers of the events stored, and both
 * upserts are no-ops when replayed, so a batch that is re-read after the
 * writer died mid-batch cannot duplicate anything.  An automatic end
 * ("abandoned"/"aborted") never replaces an existing end; a user's end
 * replaces an automatic one.
 *
 * Errors: a batch is one unit of work (trading_bgw_run_xact) whose events
 * are stored in one subtransaction; after a data error each event gets a
 * subtransaction of its own and those that still fail are discarded (the
 * behaviour users see is in docs/CORRELATION.md).  Any other error rolls
 * the unit back, the events stay queued, and the main loop naps and
 * retries.  Locking of the queue: see correlation.c.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "history.h"
#include "correlation_int.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
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
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PGDLLEXPORT void correlation_writer_main(Datum main_arg);

#define MAINTENANCE_INTERVAL_MS		60000
#define RETRY_PAUSE_MS				1000
#define WAIT_EXTENSION_MS			5000
#define RETENTION_DELETE_LIMIT		10000

static MemoryContext batch_cxt = NULL;
static SPIPlanPtr begin_plan = NULL;
static SPIPlanPtr end_plan = NULL;

static const char *begin_sql =
"INSERT INTO trading.operations AS o "
"  (id, parent_id, operation, started_at, attributes, backend_pid, username, begin_seq, "
"   ended_at, status, error, auto_ended, end_backend_pid, end_seq) "
"SELECT t.i, t.p, t.o, t.s, t.a::pg_catalog.jsonb, t.b, t.u, t.q, "
"       t.e, coalesce(t.st, 'open'), t.er, coalesce(t.au, false), t.eb, t.eq "
"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
"            pg_catalog.unnest($3), pg_catalog.unnest($4), "
"            pg_catalog.unnest($5), pg_catalog.unnest($6), "
"            pg_catalog.unnest($7), pg_catalog.unnest($8), "
"            pg_catalog.unnest($9), pg_catalog.unnest($10), "
"            pg_catalog.unnest($11), pg_catalog.unnest($12), "
"            pg_catalog.unnest($13), pg_catalog.unnest($14)) "
"     AS t(i, p, o, s, a, b, u, q, e, st, er, au, eb, eq) "
"ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, "
"  operation = excluded.operation, started_at = excluded.started_at, "
"  attributes = excluded.attributes, backend_pid = excluded.backend_pid, "
"  username = excluded.username, begin_seq = excluded.begin_seq "
"WHERE o.begin_seq IS NULL";

static const char *end_sql =
"INSERT INTO trading.operations AS o "
"  (id, parent_id, operation, started_at, backend_pid, username, "
"   ended_at, status, error, auto_ended, end_backend_pid, end_seq) "
"SELECT t.i, t.p, t.o, t.s, t.b, t.u, t.e, t.st, t.er, t.au, t.eb, t.q "
"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
"            pg_catalog.unnest($3), pg_catalog.unnest($4), "
"            pg_catalog.unnest($5), pg_catalog.unnest($6), "
"            pg_catalog.unnest($7), pg_catalog.unnest($8), "
"            pg_catalog.unnest($9), pg_catalog.unnest($10), "
"            pg_catalog.unnest($11), pg_catalog.unnest($12)) "
"     AS t(i, p, o, s, b, u, e, st, er, au, eb, q) "
"ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, "
"  status = excluded.status, error = excluded.error, "
"  auto_ended = excluded.auto_ended, end_backend_pid = excluded.end_backend_pid, "
"  end_seq = excluded.end_seq "
"WHERE o.ended_at IS NULL OR (o.auto_ended AND NOT excluded.auto_ended)";

/* ---------------------------------------------------------------------
 * Registration and process state.
 * ---------------------------------------------------------------------
 */

void
correlation_writer_register(void)
{
	trading_register_worker("correlation_writer_main", "trading correlation writer",
							BgWorkerStart_ConsistentState, 1);
}

/* exit hook: the writer can no longer be woken */
static void
writer_exit(void)
{
	pg_atomic_write_u32(&correlation_shared->writer_procno, (uint32) -1);
	pg_atomic_write_u32(&correlation_shared->writer_pid, 0);
}

/* ---------------------------------------------------------------------
 * Storing events.
 * ---------------------------------------------------------------------
 */

typedef struct Col
{
	Oid			type;
	int			n;
	Datum	   *v;
	bool	   *isnull;
} Col;

/* A column of a batch, to be passed as one array parameter. */
static void
col_init(Col *c, Oid type, int cap)
{
	c->type = type;
	c->n = 0;
	c->v = palloc(sizeof(Datum) * Max(cap, 1));
	c->isnull = palloc(sizeof(bool) * Max(cap, 1));
}

static void
col_add(Col *c, Datum d, bool isnull)
{
	c->v[c->n] = d;
	c->isnull[c->n] = isnull;
	c->n++;
}

/* Append a text value; an empty string is stored as NULL. */
static void
col_text(Col *c, const char *s, int len)
{
	if (len <= 0)
		col_add(c, (Datum) 0, true);
	else
		col_add(c, PointerGetDatum(cstring_to_text_with_len(s, len)), false);
}

/* The column as an array Datum of its element type. */
static Datum
col_array(Col *c)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {c->n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(c->type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(c->v, c->isnull, 1, dims, lbs,
											  c->type, typlen, typbyval,
											  typalign));
}

/* A uuid Datum of a copy of *u (the ring may be reused). */
static Datum
uuid_datum(const pg_uuid_t *u)
{
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	*copy = *u;
	return UUIDPGetDatum(copy);
}

/* Pointers into an event's strings. */
#define EV_OP(e)		((e)->data)
#define EV_USER(e)		(EV_OP(e) + (e)->op_len)
#define EV_ATTRS(e)		(EV_USER(e) + (e)->user_len)
#define EV_STATUS(e)	(EV_ATTRS(e) + (e)->attr_len)
#define EV_ERROR(e)		(EV_STATUS(e) + (e)->status_len)

typedef struct Batch
{
	CorrelationEvent **evs;
	int		   *kinds;
	int			n;
} Batch;

/* Run an INSERT, preparing and keeping its plan on first use. */
static void
exec_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types,
		  Datum *values)
{
	int			ret;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	ret = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "storing correlation events failed: %s",
			 SPI_result_code_string(ret));
}

typedef struct EndSlot
{
	pg_uuid_t	id;
	int			index;			/* in Ends.evs */
} EndSlot;

/* The ends of a batch, one per id; merged[i]: stored with its begin. */
typedef struct Ends
{
	CorrelationEvent **evs;
	bool	   *merged;
	int			n;
	HTAB	   *byid;
} Ends;

/*
 * One end per id and statement (ON CONFLICT DO UPDATE cannot touch a row
 * twice): the first user end wins, else the first automatic one, which is
 * what applying them one by one would give.
 */
static void
choose_ends(Batch *b, Ends *ends)
{
	HASHCTL		ctl;

	ends->evs = palloc(sizeof(CorrelationEvent *) * Max(b->n, 1));
	ends->merged = palloc0(sizeof(bool) * Max(b->n, 1));
	ends->n = 0;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(EndSlot);
	ctl.hcxt = CurrentMemoryContext;
	ends->byid = hash_create("correlation ends", Max(b->n, 16), &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < b->n; i++)
	{
		CorrelationEvent *e = b->evs[i];
		EndSlot    *slot;
		bool		found;

		if (b->kinds[i] != CORRELATION_REC_END)
			continue;
		slot = hash_search(ends->byid, &e->id, HASH_ENTER, &found);
		if (!found)
		{
			slot->index = ends->n;
			ends->evs[ends->n++] = e;
		}
		else if ((ends->evs[slot->index]->flags & CORRELATION_F_AUTO) &&
				 !(e->flags & CORRELATION_F_AUTO))
			ends->evs[slot->index] = e;
	}
}

/*
 * Begins, each with its end when the same batch has it (the usual case: one
 * row version instead of an insert and an update).
 */
static void
apply_begins(Batch *b, Ends *ends)
{
	Col			c[14];
	Oid			types[14] = {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID, INT4ARRAYOID,
	INT8ARRAYOID};
	Datum		values[14];
	Oid			elem[14] = {UUIDOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
		INT4OID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, BOOLOID,
	INT4OID, INT8OID};

	for (int i = 0; i < 14; i++)
		col_init(&c[i], elem[i], b->n);
	for (int i = 0; i < b->n; i++)
	{
		CorrelationEvent *e = b->evs[i];
		CorrelationEvent *end = NULL;
		EndSlot    *slot;

		if (b->kinds[i] != CORRELATION_REC_BEGIN)
			continue;
		slot = hash_search(ends->byid, &e->id, HASH_FIND, NULL);
		if (slot && !ends->merged[slot->index] &&
			ends->evs[slot->index]->seq > e->seq)
		{
			end = ends->evs[slot->index];
			ends->merged[slot->index] = true;
		}
		col_add(&c[0], uuid_datum(&e->id), false);
		col_add(&c[1], (e->flags & CORRELATION_F_PARENT) ? uuid_datum(&e->parent) : 0,
				!(e->flags & CORRELATION_F_PARENT));
		col_text(&c[2], EV_OP(e), e->op_len);
		col_add(&c[3], TimestampTzGetDatum(e->ts), false);
		if (e->attr_len > 0)
			col_text(&c[4], EV_ATTRS(e), e->attr_len);
		else
			col_add(&c[4], PointerGetDatum(cstring_to_text("{}")), false);
		col_add(&c[5], Int32GetDatum(e->pid), false);
		col_text(&c[6], EV_USER(e), e->user_len);
		col_add(&c[7], Int64GetDatum((int64) e->seq), false);
		if (end)
		{
			col_add(&c[8], TimestampTzGetDatum(end->ts), false);
			if (end->status_len > 0)
				col_text(&c[9], EV_STATUS(end), end->status_len);
			else
				col_add(&c[9], PointerGetDatum(cstring_to_text("ok")), false);
			col_text(&c[10], EV_ERROR(end), end->err_len);
			col_add(&c[11], BoolGetDatum((end->flags & CORRELATION_F_AUTO) != 0), false);
			col_add(&c[12], Int32GetDatum(end->pid), false);
			col_add(&c[13], Int64GetDatum((int64) end->seq), false);
		}
		else
			for (int k = 8; k < 14; k++)
				col_add(&c[k], (Datum) 0, true);
	}
	if (c[0].n == 0)
		return;
	for (int i = 0; i < 14; i++)
		values[i] = col_array(&c[i]);
	exec_plan(&begin_plan, begin_sql, 14, types, values);
}

/* Ends whose begin was in an earlier batch (or never arrived). */
static void
apply_ends(Ends *ends)
{
	Col			c[12];
	Oid			types[12] = {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
	Oid			elem[12] = {UUIDOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, INT4OID,
	TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, BOOLOID, INT4OID, INT8OID};
	Datum		values[12];

	for (int i = 0; i < 12; i++)
		col_init(&c[i], elem[i], ends->n);
	for (int i = 0; i < ends->n; i++)
	{
		CorrelationEvent *e = ends->evs[i];
		bool		info = (e->flags & CORRELATION_F_BEGIN_INFO) != 0;

		if (ends->merged[i])
			continue;
		col_add(&c[0], uuid_datum(&e->id), false);
		col_add(&c[1], (info && (e->flags & CORRELATION_F_PARENT)) ? uuid_datum(&e->parent) : 0,
				!(info && (e->flags & CORRELATION_F_PARENT)));
		col_text(&c[2], EV_OP(e), info ? e->op_len : 0);
		col_add(&c[3], TimestampTzGetDatum(e->started_at), !info);
		col_add(&c[4], Int32GetDatum(e->pid), !info);
		col_text(&c[5], EV_USER(e), info ? e->user_len : 0);
		col_add(&c[6], TimestampTzGetDatum(e->ts), false);
		if (e->status_len > 0)
			col_text(&c[7], EV_STATUS(e), e->status_len);
		else
			col_add(&c[7], PointerGetDatum(cstring_to_text("ok")), false);
		col_text(&c[8], EV_ERROR(e), e->err_len);
		col_add(&c[9], BoolGetDatum((e->flags & CORRELATION_F_AUTO) != 0), false);
		col_add(&c[10], Int32GetDatum(e->pid), false);
		col_add(&c[11], Int64GetDatum((int64) e->seq), false);
	}
	if (c[0].n == 0)
		return;
	for (int i = 0; i < 12; i++)
		values[i] = col_array(&c[i]);
	exec_plan(&end_plan, end_sql, 12, types, values);
}

/* Store a batch of events: the two upserts (runs in a subtransaction). */
static void
apply_batch(void *arg)
{
	Batch	   *b = (Batch *) arg;
	Ends		ends;

	choose_ends(b, &ends);
	apply_begins(b, &ends);
	apply_ends(&ends);
}

/* Can the event be stored at all?  Checks lengths and encodings. */
static bool
event_valid(CorrelationEvent *e, uint32 reclen, const char **why)
{
	uint64		need = sizeof(CorrelationRecHeader) + offsetof(CorrelationEvent, data) +
	(uint64) e->op_len + e->user_len + e->attr_len + e->status_len + e->err_len;

	if (need > reclen)
	{
		*why = "field lengths exceed the record";
		return false;
	}
	if (!pg_verifymbstr(EV_OP(e), e->op_len, true) ||
		!pg_verifymbstr(EV_USER(e), e->user_len, true) ||
		!pg_verifymbstr(EV_ATTRS(e), e->attr_len, true) ||
		!pg_verifymbstr(EV_STATUS(e), e->status_len, true) ||
		!pg_verifymbstr(EV_ERROR(e), e->err_len, true))
	{
		*why = "a text field is not valid in the database encoding";
		return false;
	}
	return true;
}

static char *
uuid_string(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* Say that an event was discarded, and why. */
static void
discard_warning(CorrelationEvent *e, const char *why)
{
	ereport(WARNING,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("correlation writer discarded event " UINT64_FORMAT " of operation %s",
					e->seq, uuid_string(&e->id)),
			 errdetail("%s", why)));
}

/* Release ring bytes [tail, upto) after their events are stored. */
static void
release(uint64 upto, uint64 last_seq, uint64 nwritten, uint64 ndiscarded)
{
	CorrelationShared *cs = correlation_shared;
	uint64		pos = pg_atomic_read_u64(&cs->tail);

	while (pos < upto)
	{
		uint64		off = pos % cs->size;
		uint64		chunk = Min(upto - pos, cs->size - off);

		memset(cs->ring + off, 0, chunk);
		pos += chunk;
	}
	pg_write_barrier();
	pg_atomic_write_u64(&cs->tail, upto);
	if (nwritten)
		pg_atomic_fetch_add_u64(&cs->written_total, nwritten);
	if (ndiscarded)
		pg_atomic_fetch_add_u64(&cs->discarded_total, ndiscarded);
	if (last_seq > pg_atomic_read_u64(&cs->consumed_seq))
		pg_atomic_write_u64(&cs->consumed_seq, last_seq);
	ConditionVariableBroadcast(&cs->flushed_cv);
}

static TimestampTz last_transient_log = 0;

/* A batch to store, and what became of its events. */
typedef struct StoreBatch
{
	Batch	   *batch;
	uint64		nwritten;
	uint64		ndiscarded;
} StoreBatch;

/*
 * The unit of work that stores a batch: all its events in one
 * subtransaction; after a data error, each event in its own, discarding
 * (with a WARNING) those that still fail.  Any other error is raised, so
 * the unit of work rolls back and the events stay queued.
 */
static void
store_batch(void *arg)
{
	StoreBatch *sb = (StoreBatch *) arg;
	Batch	   *b = sb->batch;
	ErrorData  *edata = trading_bgw_run_subxact(apply_batch, b);

	if (edata == NULL)
	{
		sb->nwritten = b->n;
		return;
	}
	if (!trading_bgw_data_error(edata))
		ReThrowError(edata);
	FreeErrorData(edata);

	/* find the culprits: one event per subtransaction */
	for (int i = 0; i < b->n; i++)
	{
		Batch		one = {&b->evs[i], &b->kinds[i], 1};

		edata = trading_bgw_run_subxact(apply_batch, &one);
		if (edata == NULL)
			sb->nwritten++;
		else if (trading_bgw_data_error(edata))
		{
			discard_warning(b->evs[i], edata->message ? edata->message : "?");
			sb->ndiscarded++;
			FreeErrorData(edata);
		}
		else
			ReThrowError(edata);
	}
}

/*
 * Store the next batch.  Returns the number of records consumed (0: queue
 * empty), or -1 after a transient failure (nothing consumed).
 */
static int
write_batch(bool *full_batch)
{
	CorrelationShared *cs = correlation_shared;
	uint64		tail = pg_atomic_read_u64(&cs->tail);
	uint64		pos = tail;
	uint64		last_seq = 0;
	uint64		nwritten = 0;
	uint64		ndiscarded = 0;
	int			nrec = 0;
	Batch		b;
	CorrelationEvent **bad;
	const char **bad_why;
	int			nbad = 0;
	MemoryContext oldcxt;

	*full_batch = false;
	SpinLockAcquire(&cs->mutex);
	cs->wake_pending = false;
	SpinLockRelease(&cs->mutex);

	MemoryContextReset(batch_cxt);
	oldcxt = MemoryContextSwitchTo(batch_cxt);
	b.evs = palloc(sizeof(CorrelationEvent *) * correlation_batch_events);
	b.kinds = palloc(sizeof(int) * correlation_batch_events);
	b.n = 0;
	bad = palloc(sizeof(CorrelationEvent *) * correlation_batch_events);
	bad_why = palloc(sizeof(char *) * correlation_batch_events);

	while (b.n + nbad < correlation_batch_events)
	{
		uint64		off = pos % cs->size;
		CorrelationRecHeader *hdr = (CorrelationRecHeader *) (cs->ring + off);
		uint32		len;

		if (pg_atomic_read_u32(&hdr->ready) == 0)
			break;
		pg_read_barrier();
		len = hdr->len;
		if (len < sizeof(CorrelationRecHeader) || len % 16 != 0 || off + len > cs->size)
		{
			/* a bug, not bad input: stop consuming rather than guess */
			static bool reported = false;

			if (!reported)
				ereport(WARNING,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("correlation queue is corrupt at position " UINT64_FORMAT, pos),
						 errdetail("New events are dropped and counted until the server restarts.")));
			reported = true;
			break;
		}
		pos += len;
		nrec++;
		if (hdr->kind == CORRELATION_REC_PAD)
			continue;
		else
		{
			CorrelationEvent *e = (CorrelationEvent *) (hdr + 1);
			const char *why = "unknown record kind";

			last_seq = Max(last_seq, e->seq);
			if ((hdr->kind == CORRELATION_REC_BEGIN || hdr->kind == CORRELATION_REC_END) &&
				event_valid(e, len, &why))
			{
				b.evs[b.n] = e;
				b.kinds[b.n] = hdr->kind;
				b.n++;
			}
			else
			{
				bad[nbad] = e;
				bad_why[nbad] = why;
				nbad++;
			}
		}
	}
	*full_batch = (b.n + nbad >= correlation_batch_events);

	if (nrec == 0)
	{
		MemoryContextSwitchTo(oldcxt);
		return 0;
	}

	MemoryContextSwitchTo(oldcxt);
	if (b.n > 0)
	{
		StoreBatch	sb = {&b, 0, 0};
		ErrorData  *edata = trading_bgw_run_xact("storing correlation events",
												 store_batch, &sb);

		if (edata)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (TimestampDifferenceExceeds(last_transient_log, now, MAINTENANCE_INTERVAL_MS))
			{
				ereport(WARNING,
						(errmsg("correlation writer could not store events, will retry: %s",
								edata->message ? edata->message : "?")));
				last_transient_log = now;
			}
			FreeErrorData(edata);
			return -1;
		}
		nwritten = sb.nwritten;
		ndiscarded = sb.ndiscarded;
	}
	MemoryContextSwitchTo(batch_cxt);
	for (int i = 0; i < nbad; i++)
		discard_warning(bad[i], bad_why[i]);
	MemoryContextSwitchTo(oldcxt);
	ndiscarded += nbad;

	release(pos, last_seq, nwritten, ndiscarded);
	return nrec;
}

/* ---------------------------------------------------------------------
 * Maintenance.
 * ---------------------------------------------------------------------
 */

static void
run_sql(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, NULL,
											false, 0);

	if (ret < 0)
		elog(ERROR, "correlation maintenance failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * Operations still open from before shared memory was (re)initialised
 * lost their backend in a crash or shutdown: close them as abandoned at
 * that time.
 */
static void
close_previous_epoch(void *arg)
{
	Oid			type = TIMESTAMPTZOID;
	Datum		value = TimestampTzGetDatum(correlation_shared->epoch);

	run_sql("UPDATE trading.operations SET ended_at = $1, status = 'abandoned', "
			"auto_ended = true, error = 'the server restarted while the operation was open' "
			"WHERE ended_at IS NULL AND started_at OPERATOR(pg_catalog.<) $1",
			1, &type, &value);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("correlation writer closed %llu operations left open by the previous server run",
						(unsigned long long) SPI_processed)));
}

/*
 * Operations whose backend is gone without its end (the exit event was
 * dropped because the queue was full).  Only run when the queue was empty,
 * so the events of exited backends have been stored; a user's end arriving
 * later still replaces this automatic one.
 */
static void
close_orphans(void *arg)
{
	Oid			type = TIMESTAMPTZOID;
	Datum		value = TimestampTzGetDatum(correlation_shared->epoch);

	run_sql("UPDATE trading.operations SET ended_at = pg_catalog.now(), status = 'abandoned', "
			"auto_ended = true, error = 'the backend exited while the operation was open' "
			"WHERE ended_at IS NULL AND backend_pid IS NOT NULL "
			"AND started_at OPERATOR(pg_catalog.>=) $1 "
			"AND backend_pid OPERATOR(pg_catalog.<>) ALL "
			"    (SELECT a.pid FROM pg_catalog.pg_stat_get_activity(NULL) a "
			"     WHERE a.pid IS NOT NULL)",
			1, &type, &value);
}

static uint64 retention_deleted;

/*
 * Delete up to RETENTION_DELETE_LIMIT operations older than
 * trading.correlation_retention (retention_deleted: how many).
 */
static void
apply_retention(void *arg)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(correlation_retention_s),
	Int32GetDatum(RETENTION_DELETE_LIMIT)};

	run_sql("DELETE FROM trading.operations WHERE id OPERATOR(pg_catalog.=) ANY ("
			" SELECT id FROM trading.operations"
			" WHERE started_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
			"       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))"
			"    OR (started_at IS NULL AND ended_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
			"       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)))"
			" LIMIT $2)",
			2, types, values);
	retention_deleted = SPI_processed;
}

/* Run fn as a unit of work; false on error (logged, not raised). */
static bool
maintenance_step(void (*fn) (void *arg), const char *activity)
{
	ErrorData  *edata = trading_bgw_run_xact(activity, fn, NULL);

	if (edata == NULL)
		return true;
	ereport(WARNING,
			(errmsg("correlation writer: %s failed: %s", activity,
					edata->message ? edata->message : "?")));
	FreeErrorData(edata);
	return false;
}

/* Close orphans, then apply the retention in bounded rounds. */
static void
maintenance(void)
{
	int			rounds = 0;

	(void) maintenance_step(close_orphans, "closing orphaned operations");
	/* with history archiving on, old operations move to archives instead */
	if (correlation_retention_s <= 0 || history_retention_s > 0)
		return;
	do
	{
		retention_deleted = 0;
		if (!maintenance_step(apply_retention, "deleting old operations"))
			break;
		CHECK_FOR_INTERRUPTS();
	} while (retention_deleted >= RETENTION_DELETE_LIMIT && ++rounds < 100);
}

/* ---------------------------------------------------------------------
 * Main loop.
 * ---------------------------------------------------------------------
 */

void
correlation_writer_main(Datum main_arg)
{
	bool		said_recovery = false;
	bool		said_waiting = false;
	bool		ready = false;
	bool		epoch_closed = false;
	TimestampTz last_maintenance = 0;
	long		nap_ms = 0;

	trading_bgw_on_exit(writer_exit);
	trading_bgw_connect(&correlation_shared->database_seen, "trading correlation writer");

	batch_cxt = AllocSetContextCreate(TopMemoryContext,
									  "correlation writer batch",
									  ALLOCSET_DEFAULT_SIZES);
	pg_atomic_write_u32(&correlation_shared->writer_pid, (uint32) MyProcPid);
	pg_atomic_write_u32(&correlation_shared->writer_procno, (uint32) MyProc->pgprocno);

	for (;;)
	{
		bool		full = false;
		int			n;

		if (trading_bgw_nap(nap_ms))
			last_maintenance = 0;	/* apply a new retention at once */
		nap_ms = 0;

		if (RecoveryInProgress())
		{
			if (!said_recovery)
				ereport(LOG,
						(errmsg("correlation writer is waiting for the end of recovery")));
			said_recovery = true;
			nap_ms = 1000;
			continue;
		}

		if (!ready)
		{
			ready = trading_bgw_extension_version() > 0;
			if (!ready)
			{
				if (!said_waiting)
					ereport(LOG,
							(errmsg("correlation writer is waiting for extension \"trading\" in database \"%s\"",
									trading_database)));
				said_waiting = true;
				nap_ms = WAIT_EXTENSION_MS;
				continue;
			}
		}

		if (!epoch_closed)
		{
			if (!maintenance_step(close_previous_epoch, "closing operations of the previous run"))
			{
				ready = false;
				nap_ms = RETRY_PAUSE_MS;
				continue;
			}
			epoch_closed = true;
		}

		n = write_batch(&full);
		if (n < 0)
		{
			ready = false;		/* re-check the extension after a failure */
			nap_ms = RETRY_PAUSE_MS;
			continue;
		}
		if (full)
			continue;

		if (n == 0 &&
			TimestampDifferenceExceeds(last_maintenance, GetCurrentTimestamp(),
									   MAINTENANCE_INTERVAL_MS))
		{
			maintenance();
			last_maintenance = GetCurrentTimestamp();
		}

		if (n == 0)
		{
			history_maybe_run();
			nap_ms = correlation_writer_delay_ms;
		}
	}
}

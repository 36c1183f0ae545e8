/*-------------------------------------------------------------------------
 *
 * correlation.c
 *	  Correlation tracking: the bounded event queue in shared memory, the
 *	  module's settings, the "detached" C API for background workers
 *	  (correlation.h) and the statistics behind trading.correlation_stats.
 *
 * The queue ("trading.correlation") is a byte ring of variable-length
 * records (CorrelationRecHeader + CorrelationEvent + strings, 16-byte aligned).  Byte
 * positions (head, tail) grow forever; a position's offset in the ring is
 * position % size.  A record never wraps: when it does not fit before the
 * end of the ring, a PAD record fills the rest and the event starts at
 * offset 0.
 *
 * Producers are any backend or worker; the consumer is the one writer
 * (worker/correlation_writer.c).
 *
 * Locking rules
 * -------------
 * - A producer takes correlation_shared->mutex (a spinlock) for a few instructions:
 *   it checks the free space against tail, advances head, takes the next
 *   sequence number and releases it.  It then copies the event into the
 *   reserved bytes without any lock and finally sets the record's ready
 *   flag (after a write barrier).  Nothing between reservation and ready can
 *   error, allocate or process interrupts, so a reserved record is always
 *   completed (a SIGKILL resets shared memory anyway).
 * - When the ring is full the producer counts a drop under the same spinlock
 *   and returns; it never waits.
 * - The writer reads records from tail up to the first one whose ready flag
 *   is not set (read barrier after the flag), in sequence order.  Only after
 *   the transaction that stored them has committed does it zero those bytes
 *   and advance tail (atomic write, barrier first), so a writer that dies
 *   mid-batch re-reads the same events; the table's upserts make a replay
 *   harmless.  Zeroing keeps stale bytes from looking like a ready flag.
 * - consumed_seq, written_total and discarded_total are written only by the
 *   writer (atomics); flushing backends wait on flushed_cv for consumed_seq.
 * - writer_procno / writer_pid are set by the writer at start and cleared at
 *   exit (atomics); a producer that finds the ring filling up sets the
 *   writer's latch at most once per batch (wake_pending, under the mutex).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "correlation.h"
#include "correlation_int.h"

#include "access/xact.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

CorrelationShared *correlation_shared = NULL;

int			correlation_queue_size_kb = 8192;
int			correlation_writer_delay_ms = 200;
int			correlation_batch_events = 5000;
int			correlation_retention_s = 7 * 24 * 3600;
bool		correlation_log_ids = true;

PG_FUNCTION_INFO_V1(correlation_stats);

static Size
correlation_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(CorrelationShared)),
					(Size) correlation_queue_size_kb * 1024);
}

void
correlation_init(void)
{
	DefineCustomIntVariable("trading.correlation_queue_size",
							"Size of the shared-memory queue of correlation events.",
							"When it is full, new events are dropped and counted in trading.correlation_stats.",
							&correlation_queue_size_kb,
							8192, 32, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.correlation_writer_delay",
							"Longest time a correlation event waits in the queue before the writer stores it.",
							NULL,
							&correlation_writer_delay_ms,
							200, 10, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.correlation_batch_size",
							"Most correlation events the writer stores in one transaction.",
							NULL,
							&correlation_batch_events,
							5000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.correlation_retention",
							"With trading.history_retention = 0: age after which rows of trading.operations are deleted; 0 keeps them forever.",
							NULL,
							&correlation_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("trading.correlation_log_ids",
							 "Append the id of the innermost open operation to every server log message.",
							 NULL,
							 &correlation_log_ids,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	correlation_sql_init();
	correlation_writer_register();
}

void
correlation_shmem_request(void)
{
	RequestAddinShmemSpace(correlation_shmem_size());
}

void
correlation_shmem_startup(void)
{
	bool		found;

	correlation_shared = ShmemInitStruct("trading.correlation",
										 correlation_shmem_size(), &found);
	if (found)
		return;

	memset(correlation_shared, 0, sizeof(CorrelationShared));
	SpinLockInit(&correlation_shared->mutex);
	correlation_shared->head = 0;
	correlation_shared->next_seq = 1;
	correlation_shared->dropped_total = 0;
	correlation_shared->wake_pending = false;
	pg_atomic_init_u64(&correlation_shared->tail, 0);
	pg_atomic_init_u64(&correlation_shared->consumed_seq, 0);
	pg_atomic_init_u64(&correlation_shared->written_total, 0);
	pg_atomic_init_u64(&correlation_shared->discarded_total, 0);
	pg_atomic_init_u32(&correlation_shared->writer_procno, (uint32) -1);
	pg_atomic_init_u32(&correlation_shared->writer_pid, 0);
	pg_atomic_init_u32(&correlation_shared->database_seen, 1);
	correlation_shared->epoch = GetCurrentTimestamp();
	correlation_shared->size = (uint64) correlation_queue_size_kb * 1024;
	correlation_shared->wake_bytes = correlation_shared->size / 4;
	ConditionVariableInit(&correlation_shared->flushed_cv);
	correlation_shared->ring = (char *) correlation_shared + MAXALIGN(sizeof(CorrelationShared));
	memset(correlation_shared->ring, 0, correlation_shared->size);
}

/* ---------------------------------------------------------------------
 * The queue.
 * ---------------------------------------------------------------------
 */

void
correlation_wake_writer(void)
{
	uint32		procno;

	if (correlation_shared == NULL)
		return;
	procno = pg_atomic_read_u32(&correlation_shared->writer_procno);
	if (procno != (uint32) -1 && procno < ProcGlobal->allProcCount)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

static inline char *
put(char *dst, const char *src, int len)
{
	if (len > 0)
		memcpy(dst, src, len);
	return dst + len;
}

bool
correlation_enqueue(const CorrelationEventArgs *ev)
{
	CorrelationShared *cs = correlation_shared;
	int			op_len = Min(Max(ev->op_len, 0), CORRELATION_MAX_OPERATION);
	int			user_len = Min(Max(ev->user_len, 0), CORRELATION_MAX_USER);
	int			attr_len = Min(Max(ev->attr_len, 0), CORRELATION_MAX_ATTRIBUTES);
	int			status_len = Min(Max(ev->status_len, 0), CORRELATION_MAX_STATUS);
	int			err_len = Min(Max(ev->err_len, 0), CORRELATION_MAX_ERROR);
	uint32		len;
	uint64		pos;
	uint64		tail;
	uint64		offset;
	uint64		pad = 0;
	uint64		seq = 0;
	bool		ok = false;
	bool		wake = false;
	CorrelationRecHeader *hdr;
	CorrelationEvent *e;
	char	   *p;

	if (cs == NULL)
		return false;

	len = CORRELATION_REC_ALIGN(sizeof(CorrelationRecHeader) + offsetof(CorrelationEvent, data) +
								op_len + user_len + attr_len + status_len + err_len);

	SpinLockAcquire(&cs->mutex);
	pos = cs->head;
	tail = pg_atomic_read_u64(&cs->tail);
	offset = pos % cs->size;
	if (offset + len > cs->size)
		pad = cs->size - offset;
	if (pos + pad + len - tail <= cs->size)
	{
		cs->head = pos + pad + len;
		seq = cs->next_seq++;
		ok = true;
		if (!cs->wake_pending && cs->head - tail >= cs->wake_bytes)
			cs->wake_pending = wake = true;
	}
	else
		cs->dropped_total++;
	SpinLockRelease(&cs->mutex);

	if (!ok)
		return false;

	if (pad > 0)
	{
		hdr = (CorrelationRecHeader *) (cs->ring + offset);
		hdr->len = (uint32) pad;
		hdr->kind = CORRELATION_REC_PAD;
		pg_write_barrier();
		pg_atomic_write_u32(&hdr->ready, 1);
		offset = 0;
	}

	hdr = (CorrelationRecHeader *) (cs->ring + offset);
	hdr->len = len;
	hdr->kind = ev->kind;
	e = (CorrelationEvent *) (hdr + 1);
	e->seq = seq;
	e->ts = ev->ts;
	e->started_at = ev->started_at;
	e->id = *ev->id;
	if (ev->parent)
		e->parent = *ev->parent;
	else
		memset(&e->parent, 0, sizeof(pg_uuid_t));
	e->pid = ev->pid;
	e->flags = (uint16) ((ev->flags & ~CORRELATION_F_PARENT) |
						 (ev->parent ? CORRELATION_F_PARENT : 0));
	e->op_len = op_len;
	e->user_len = user_len;
	e->attr_len = attr_len;
	e->status_len = status_len;
	e->err_len = err_len;
	p = e->data;
	p = put(p, ev->op, op_len);
	p = put(p, ev->user, user_len);
	p = put(p, ev->attrs, attr_len);
	p = put(p, ev->status, status_len);
	put(p, ev->error, err_len);
	pg_write_barrier();
	pg_atomic_write_u32(&hdr->ready, 1);

	if (wake)
		correlation_wake_writer();
	return true;
}

/* ---------------------------------------------------------------------
 * Detached C API (correlation.h): for workers, not tied to a transaction.
 * ---------------------------------------------------------------------
 */

void
correlation_new_id(pg_uuid_t *out)
{
	if (!pg_strong_random(out->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random correlation id")));
	out->data[6] = (out->data[6] & 0x0f) | 0x40;	/* version 4 */
	out->data[8] = (out->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/* Length of s clipped to at most max bytes on a character boundary. */
static int
clip(const char *s, int max)
{
	int			len;

	if (s == NULL)
		return 0;
	len = strlen(s);
	if (len <= max)
		return len;
	return pg_mbcliplen(s, len, max);
}

static void
current_user_name(const char **name, int *len)
{
	/* only when a role is set up and we may look it up */
	if (OidIsValid(GetUserId()) && IsTransactionState())
	{
		char	   *n = GetUserNameFromId(GetUserId(), true);

		if (n)
		{
			*name = n;
			*len = strlen(n);
			return;
		}
	}
	*name = NULL;
	*len = 0;
}

void
correlation_emit_begin(const pg_uuid_t *id, const pg_uuid_t *parent,
					   const char *operation, const char *attributes_json)
{
	CorrelationEventArgs ev = {0};

	if (id == NULL)
		return;
	ev.kind = CORRELATION_REC_BEGIN;
	ev.id = id;
	ev.parent = parent;
	ev.ts = GetCurrentTimestamp();
	ev.pid = MyProcPid;
	ev.op = operation ? operation : "?";
	ev.op_len = clip(ev.op, CORRELATION_MAX_OPERATION);
	current_user_name(&ev.user, &ev.user_len);
	if (attributes_json == NULL ||
		(int) strlen(attributes_json) > CORRELATION_MAX_ATTRIBUTES)
		attributes_json = attributes_json ? "{\"truncated\": true}" : "{}";
	ev.attrs = attributes_json;
	ev.attr_len = strlen(attributes_json);
	(void) correlation_enqueue(&ev);
}

void
correlation_emit_end(const pg_uuid_t *id, const char *status,
					 const char *error)
{
	CorrelationEventArgs ev = {0};

	if (id == NULL)
		return;
	ev.kind = CORRELATION_REC_END;
	ev.id = id;
	ev.ts = GetCurrentTimestamp();
	ev.pid = MyProcPid;
	ev.status = (status && *status) ? status : "ok";
	ev.status_len = clip(ev.status, CORRELATION_MAX_STATUS);
	ev.error = error;
	ev.err_len = clip(error, CORRELATION_MAX_ERROR);
	(void) correlation_enqueue(&ev);
}

/* ---------------------------------------------------------------------
 * trading.correlation_stats
 * ---------------------------------------------------------------------
 */

Datum
correlation_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9] = {0};
	uint64		head,
				next_seq,
				dropped,
				tail,
				consumed,
				written,
				discarded;
	uint32		pid;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (correlation_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("correlation queue is not available"),
				 errhint("Add trading to shared_preload_libraries and restart the server.")));

	SpinLockAcquire(&correlation_shared->mutex);
	head = correlation_shared->head;
	next_seq = correlation_shared->next_seq;
	dropped = correlation_shared->dropped_total;
	SpinLockRelease(&correlation_shared->mutex);
	tail = pg_atomic_read_u64(&correlation_shared->tail);
	consumed = pg_atomic_read_u64(&correlation_shared->consumed_seq);
	written = pg_atomic_read_u64(&correlation_shared->written_total);
	discarded = pg_atomic_read_u64(&correlation_shared->discarded_total);
	pid = pg_atomic_read_u32(&correlation_shared->writer_pid);

	values[0] = Int64GetDatum((int64) (next_seq - 1 - Min(consumed, next_seq - 1)));
	values[1] = Int64GetDatum((int64) (head - Min(tail, head)));
	values[2] = Int64GetDatum((int64) correlation_shared->size);
	values[3] = Int64GetDatum((int64) (next_seq - 1));
	values[4] = Int64GetDatum((int64) dropped);
	values[5] = Int64GetDatum((int64) written);
	values[6] = Int64GetDatum((int64) discarded);
	values[7] = Int32GetDatum((int32) pid);
	nulls[7] = (pid == 0);
	values[8] = TimestampTzGetDatum(correlation_shared->epoch);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

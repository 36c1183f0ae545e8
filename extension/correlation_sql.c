/*-------------------------------------------------------------------------
 *
 * correlation_sql.c
 *	  SQL interface of correlation tracking and the backend's context of
 *	  open operations:
 *
 *	  correlation_begin / correlation_end / current_correlation_id /
 *	  correlation_flush, the transaction and subtransaction callbacks that
 *	  end what a transaction left open (status "abandoned" at commit,
 *	  "aborted" at abort or savepoint rollback), the backend-exit callback
 *	  (status "abandoned"), and the emit_log_hook that appends the innermost
 *	  open id to every server log message.
 *
 * The context is a stack in TopMemoryContext, private to the backend; it
 * is empty between transactions, so nothing leaks to the next client of a
 * pooled connection.  Every begin and end only enqueues an event in shared
 * memory (correlation.c); the caller's transaction writes nothing.
 *
 * Ending an id that is not open in this transaction (begun in another
 * session or an earlier transaction) looks the row up in
 * trading.operations; only when it is not there yet does it wait until
 * the queue is written (correlation_flush) and look again, so a slow
 * writer delays only ends of operations whose begin is still queued.  An
 * unknown id is an error, an id already ended by a user is an error, and
 * an id that the extension closed automatically ("abandoned"/"aborted")
 * gets the caller's end, which replaces the automatic one.  Only the role
 * that began an operation, or a member of trading_admin, may end it.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "correlation.h"
#include "correlation_int.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(correlation_begin);
PG_FUNCTION_INFO_V1(correlation_end);
PG_FUNCTION_INFO_V1(correlation_current_id);
PG_FUNCTION_INFO_V1(correlation_flush);
PG_FUNCTION_INFO_V1(correlation_emit_begin_sql);
PG_FUNCTION_INFO_V1(correlation_emit_end_sql);

/* One open operation of this backend's current transaction. */
typedef struct CorrelationOpen
{
	pg_uuid_t	id;
	pg_uuid_t	parent;
	bool		has_parent;
	int			nest_level;		/* subtransaction level that owns it */
	TimestampTz started_at;
	int			op_len;
	char		op[CORRELATION_MAX_OPERATION];
	int			user_len;
	char		user[NAMEDATALEN];
} CorrelationOpen;

static CorrelationOpen *correlation_stack = NULL;
static int	correlation_depth = 0;
static int	correlation_capacity = 0;

static bool correlation_exit_registered = false;
static Oid	correlation_cached_userid = InvalidOid;
static char correlation_cached_user[NAMEDATALEN];

static emit_log_hook_type prev_emit_log_hook = NULL;

#define CORRELATION_DEFAULT_FLUSH_TIMEOUT_MS	30000

/* ---------------------------------------------------------------------
 * Ending open operations.
 * ---------------------------------------------------------------------
 */

static void
correlation_enqueue_end(const CorrelationOpen *o, TimestampTz now, const char *status,
						const char *error, bool automatic)
{
	CorrelationEventArgs ev = {0};

	ev.kind = CORRELATION_REC_END;
	ev.flags = CORRELATION_F_BEGIN_INFO | (automatic ? CORRELATION_F_AUTO : 0);
	ev.id = &o->id;
	ev.parent = o->has_parent ? &o->parent : NULL;
	ev.ts = now;
	ev.started_at = o->started_at;
	ev.pid = MyProcPid;
	ev.op = o->op;
	ev.op_len = o->op_len;
	ev.user = o->user;
	ev.user_len = o->user_len;
	ev.status = status;
	ev.status_len = strlen(status);
	ev.error = error;
	ev.err_len = error ? strlen(error) : 0;
	(void) correlation_enqueue(&ev);
}

/*
 * End, innermost first, every open operation whose nest level is at least
 * min_level, and remove it from the stack.  Runs in commit/abort/exit
 * paths: must not error (enqueueing never does).
 */
static void
correlation_end_open(int min_level, const char *status, const char *error)
{
	TimestampTz now;
	int			keep = 0;

	if (correlation_depth == 0)
		return;
	now = GetCurrentTimestamp();
	for (int i = correlation_depth - 1; i >= 0; i--)
		if (correlation_stack[i].nest_level >= min_level)
			correlation_enqueue_end(&correlation_stack[i], now, status, error, true);
	for (int i = 0; i < correlation_depth; i++)
		if (correlation_stack[i].nest_level < min_level)
			correlation_stack[keep++] = correlation_stack[i];
	correlation_depth = keep;
}

static void
correlation_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			correlation_end_open(0, "abandoned",
								 "the transaction ended while the operation was open");
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			correlation_end_open(0, "aborted",
								 "the transaction was rolled back while the operation was open");
			break;
		default:
			break;
	}
}

static void
correlation_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	int			level;

	if (correlation_depth == 0)
		return;
	level = GetCurrentTransactionNestLevel();
	if (event == SUBXACT_EVENT_ABORT_SUB)
		correlation_end_open(level, "aborted",
							 "the savepoint was rolled back while the operation was open");
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the parent now owns what the subtransaction left open */
		for (int i = 0; i < correlation_depth; i++)
			if (correlation_stack[i].nest_level >= level)
				correlation_stack[i].nest_level = level - 1;
	}
}

static void
correlation_exit_callback(int code, Datum arg)
{
	correlation_end_open(0, "abandoned",
						 "the backend exited while the operation was open");
}

/*
 * Append the innermost open id to every message that goes to the server
 * log.  The hook cannot change log_line_prefix, so the id goes at the end
 * of the message (which a client receiving the same ERROR sees as well).
 */
static void
correlation_emit_log_hook(ErrorData *edata)
{
	if (correlation_log_ids && correlation_depth > 0 && edata->message != NULL &&
		edata->output_to_server)
	{
		char		buf[UUID_LEN * 2 + 5];
		const unsigned char *d = correlation_stack[correlation_depth - 1].id.data;

		snprintf(buf, sizeof(buf),
				 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
				 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
				 d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]);
		edata->message = psprintf("%s (correlation_id=%s)", edata->message, buf);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
correlation_sql_init(void)
{
	RegisterXactCallback(correlation_xact_callback, NULL);
	RegisterSubXactCallback(correlation_subxact_callback, NULL);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = correlation_emit_log_hook;
}

/* ---------------------------------------------------------------------
 * Helpers.
 * ---------------------------------------------------------------------
 */

static void
correlation_prepare(void)
{
	trading_check_database();
	if (correlation_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("correlation queue is not available"),
				 errhint("Add trading to shared_preload_libraries and restart the server.")));
}

static char *
correlation_user_name(void)
{
	Oid			userid = GetUserId();

	if (userid != correlation_cached_userid)
	{
		char	   *name = GetUserNameFromId(userid, false);

		strlcpy(correlation_cached_user, name, NAMEDATALEN);
		correlation_cached_userid = userid;
	}
	return correlation_cached_user;
}

/* Wait until every event enqueued so far is stored; error after timeout. */
static void
correlation_flush_wait(int64 timeout_ms)
{
	uint64		target;
	TimestampTz deadline;
	bool		sleeping = false;
	int			rounds = 0;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_CORRELATION_FLUSH_TIMEOUT),
				 errmsg("correlation events cannot be written during recovery"),
				 errdetail("The correlation writer stores events only on a primary; they stay queued until promotion.")));

	SpinLockAcquire(&correlation_shared->mutex);
	target = correlation_shared->next_seq - 1;
	SpinLockRelease(&correlation_shared->mutex);

	if (pg_atomic_read_u64(&correlation_shared->consumed_seq) >= target)
		return;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	correlation_wake_writer();
	for (;;)
	{
		long		remaining;

		if (pg_atomic_read_u64(&correlation_shared->consumed_seq) >= target)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
		{
			uint64		consumed = pg_atomic_read_u64(&correlation_shared->consumed_seq);
			uint32		pid = pg_atomic_read_u32(&correlation_shared->writer_pid);

			if (sleeping)
				ConditionVariableCancelSleep();
			if (pid == 0)
				ereport(ERROR,
						(errcode(ERRCODE_TRADING_CORRELATION_FLUSH_TIMEOUT),
						 errmsg("correlation events were not written within %d ms",
								(int) timeout_ms),
						 errdetail("The correlation writer is not running; " UINT64_FORMAT " events are still queued.",
								   target - Min(consumed, target)),
						 errhint("Check the server log for the \"trading correlation writer\" background worker.")));
			ereport(ERROR,
					(errcode(ERRCODE_TRADING_CORRELATION_FLUSH_TIMEOUT),
					 errmsg("correlation events were not written within %d ms",
							(int) timeout_ms),
					 errdetail("The correlation writer (pid %u) has " UINT64_FORMAT " of the events still to write.",
							   pid, target - Min(consumed, target)),
					 errhint("The writer may be blocked by a lock on trading.operations or behind a large queue.")));
		}
		if (!sleeping)
		{
			ConditionVariablePrepareToSleep(&correlation_shared->flushed_cv);
			sleeping = true;
			continue;
		}
		/* nudge the writer again now and then: it may have restarted */
		if (++rounds % 10 == 0)
			correlation_wake_writer();
		(void) ConditionVariableTimedSleep(&correlation_shared->flushed_cv,
										   Min(remaining, 100),
										   PG_WAIT_EXTENSION);
	}
	if (sleeping)
		ConditionVariableCancelSleep();
}

static Datum
correlation_duration(TimestampTz start, TimestampTz end)
{
	return DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(end),
							   TimestampTzGetDatum(start));
}

/* ---------------------------------------------------------------------
 * SQL functions.
 * ---------------------------------------------------------------------
 */

/* correlation_begin(operation text, parent uuid, attributes jsonb) -> uuid */
Datum
correlation_begin(PG_FUNCTION_ARGS)
{
	char	   *op;
	Jsonb	   *attrs;
	char	   *attrs_text;
	int			attrs_len;
	CorrelationOpen *o;
	pg_uuid_t  *id;
	char	   *user;
	CorrelationEventArgs ev = {0};

	correlation_prepare();
	trading_require_primary("correlation tracking");
	op = trading_text_arg(fcinfo, 0, "operation", CORRELATION_MAX_OPERATION);
	trading_require_arg(fcinfo, 2, "attributes");
	attrs = PG_GETARG_JSONB_P(2);
	if (!JB_ROOT_IS_OBJECT(attrs) || JB_ROOT_IS_SCALAR(attrs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attributes must be a JSON object"),
				 errhint("Pass key/value pairs, e.g. '{\"symbol\": \"INFY\"}'::jsonb.")));
	attrs_text = JsonbToCString(NULL, &attrs->root, VARSIZE(attrs));
	attrs_len = strlen(attrs_text);
	if (attrs_len > CORRELATION_MAX_ATTRIBUTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attributes is too long"),
				 errdetail("The attributes have %d bytes as JSON text; at most %d are allowed.",
						   attrs_len, CORRELATION_MAX_ATTRIBUTES)));
	if (correlation_depth >= CORRELATION_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many open operations"),
				 errdetail("At most %d operations can be open at once in a transaction.",
						   CORRELATION_MAX_DEPTH),
				 errhint("End operations with trading.correlation_end().")));
	user = correlation_user_name();

	if (correlation_depth >= correlation_capacity)
	{
		int			newcap = correlation_capacity ? correlation_capacity * 2 : 8;

		if (correlation_stack == NULL)
			correlation_stack = MemoryContextAlloc(TopMemoryContext,
												   newcap * sizeof(CorrelationOpen));
		else
			correlation_stack = repalloc(correlation_stack, newcap * sizeof(CorrelationOpen));
		correlation_capacity = newcap;
	}
	if (!correlation_exit_registered)
	{
		before_shmem_exit(correlation_exit_callback, (Datum) 0);
		correlation_exit_registered = true;
	}

	id = palloc(sizeof(pg_uuid_t));
	correlation_new_id(id);

	o = &correlation_stack[correlation_depth];
	o->id = *id;
	if (!PG_ARGISNULL(1))
	{
		o->parent = *PG_GETARG_UUID_P(1);
		o->has_parent = true;
	}
	else if (correlation_depth > 0)
	{
		o->parent = correlation_stack[correlation_depth - 1].id;
		o->has_parent = true;
	}
	else
		o->has_parent = false;
	o->nest_level = GetCurrentTransactionNestLevel();
	o->started_at = GetCurrentTimestamp();
	o->op_len = strlen(op);
	memcpy(o->op, op, o->op_len);
	o->user_len = strlen(user);
	memcpy(o->user, user, o->user_len);
	correlation_depth++;

	ev.kind = CORRELATION_REC_BEGIN;
	ev.id = &o->id;
	ev.parent = o->has_parent ? &o->parent : NULL;
	ev.ts = o->started_at;
	ev.pid = MyProcPid;
	ev.op = o->op;
	ev.op_len = o->op_len;
	ev.user = o->user;
	ev.user_len = o->user_len;
	ev.attrs = attrs_text;
	ev.attr_len = attrs_len;
	(void) correlation_enqueue(&ev);

	PG_RETURN_UUID_P(id);
}

/*
 * May the current role end an operation begun by "owner"?  The role that
 * began it, trading_admin members and superusers may.
 */
static void
correlation_check_owner(const char *owner, const char *idstr)
{
	Oid			admin;

	if (owner == NULL || strcmp(owner, correlation_user_name()) == 0 || superuser())
		return;
	admin = get_role_oid("trading_admin", true);
	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to end operation %s", idstr),
			 errdetail("The operation was begun by role \"%s\"; only that role or a member of trading_admin may end it.",
					   owner)));
}

/* SELECT started_at, ended, auto_ended, username of id, with the latest
 * snapshot (the writer committed after this statement's snapshot was
 * taken); false when there is no row. */
static bool
correlation_lookup(Datum arg, const char *idstr)
{
	Oid			argtype = UUIDOID;
	SPIPlanPtr	plan;

	plan = SPI_prepare("SELECT started_at, ended_at IS NOT NULL, auto_ended, username "
					   "FROM trading.operations WHERE id OPERATOR(pg_catalog.=) $1",
					   1, &argtype);
	if (plan == NULL ||
		SPI_execute_snapshot(plan, &arg, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up correlation id %s", idstr);
	return SPI_processed > 0;
}

/* End an operation that is not open here: look it up in the table. */
static bool
correlation_end_elsewhere(pg_uuid_t *id, const char *status, const char *error,
						  Datum *duration)
{
	Datum		arg = UUIDPGetDatum(id);
	TimestampTz started_at = 0;
	bool		started_null = true;
	bool		ended;
	bool		automatic;
	char	   *owner = NULL;
	TimestampTz now;
	CorrelationEventArgs ev = {0};
	char	   *idstr = DatumGetCString(DirectFunctionCall1(uuid_out, arg));
	MemoryContext caller = CurrentMemoryContext;
	bool		found;

	/*
	 * Look first: an operation whose begin is stored needs no wait for the
	 * writer.  Only an id not stored yet may still be in the queue.
	 */
	SPI_connect();
	found = correlation_lookup(arg, idstr);
	if (!found)
	{
		SPI_finish();
		correlation_flush_wait(CORRELATION_DEFAULT_FLUSH_TIMEOUT_MS);
		SPI_connect();
		found = correlation_lookup(arg, idstr);
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("operation %s does not exist", idstr),
				 errdetail("It is neither open in this transaction nor recorded in trading.operations."),
				 errhint("If trading.correlation_stats shows dropped events, its begin may have been lost because the queue was full.")));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tup, desc, 1, &started_null);
		if (!started_null)
			started_at = DatumGetTimestampTz(d);
		ended = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		automatic = !isnull && DatumGetBool(d);
		owner = SPI_getvalue(tup, desc, 4);
		if (owner)
			owner = MemoryContextStrdup(caller, owner);
	}
	SPI_finish();

	correlation_check_owner(owner, idstr);

	if (ended && !automatic)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_CORRELATION_ALREADY_ENDED),
				 errmsg("operation %s has already ended", idstr),
				 errhint("trading.operation_chain() shows its status.")));

	now = GetCurrentTimestamp();
	ev.kind = CORRELATION_REC_END;
	ev.id = id;
	ev.ts = now;
	ev.pid = MyProcPid;
	ev.status = status;
	ev.status_len = strlen(status);
	ev.error = error;
	ev.err_len = error ? strlen(error) : 0;
	(void) correlation_enqueue(&ev);

	if (started_null)
		return false;			/* its begin was lost: duration unknown */
	*duration = correlation_duration(started_at, now);
	return true;
}

/* correlation_end(id uuid, status text, error text) -> interval */
Datum
correlation_end(PG_FUNCTION_ARGS)
{
	char	   *status;
	char	   *error = NULL;
	int			idx = -1;
	CorrelationOpen o;
	TimestampTz now;

	correlation_prepare();
	trading_require_primary("correlation tracking");
	status = trading_text_arg(fcinfo, 1, "status", CORRELATION_MAX_STATUS);
	if (!PG_ARGISNULL(2))
		error = trading_text_arg(fcinfo, 2, "error", CORRELATION_MAX_ERROR);

	if (PG_ARGISNULL(0))
	{
		if (correlation_depth == 0)
			ereport(ERROR,
					(errcode(ERRCODE_TRADING_CORRELATION_NONE_OPEN),
					 errmsg("no operation is open in this transaction"),
					 errhint("Pass the id returned by trading.correlation_begin() to end an operation begun in another transaction.")));
		idx = correlation_depth - 1;
	}
	else
	{
		pg_uuid_t  *id = PG_GETARG_UUID_P(0);

		for (int i = correlation_depth - 1; i >= 0; i--)
			if (memcmp(correlation_stack[i].id.data, id->data, UUID_LEN) == 0)
			{
				idx = i;
				break;
			}
		if (idx < 0)
		{
			Datum		d;

			if (!correlation_end_elsewhere(id, status, error, &d))
				PG_RETURN_NULL();
			PG_RETURN_DATUM(d);
		}
	}

	o = correlation_stack[idx];
	{
		char		owner[NAMEDATALEN];

		memcpy(owner, o.user, o.user_len);
		owner[o.user_len] = '\0';
		correlation_check_owner(owner, DatumGetCString(DirectFunctionCall1(uuid_out,
																		   UUIDPGetDatum(&o.id))));
	}
	memmove(&correlation_stack[idx], &correlation_stack[idx + 1],
			(correlation_depth - idx - 1) * sizeof(CorrelationOpen));
	correlation_depth--;

	now = GetCurrentTimestamp();
	correlation_enqueue_end(&o, now, status, error, false);
	PG_RETURN_DATUM(correlation_duration(o.started_at, now));
}

Datum
correlation_current_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;

	if (correlation_depth == 0)
		PG_RETURN_NULL();
	id = palloc(sizeof(pg_uuid_t));
	*id = correlation_stack[correlation_depth - 1].id;
	PG_RETURN_UUID_P(id);
}

/* correlation_flush(timeout interval) */
Datum
correlation_flush(PG_FUNCTION_ARGS)
{
	Interval   *iv;
	int64		ms;

	correlation_prepare();
	trading_require_primary("correlation tracking");
	trading_require_arg(fcinfo, 0, "timeout");
	iv = PG_GETARG_INTERVAL_P(0);
	if (iv->month != 0 || iv->day != 0 || iv->time < 0 ||
		iv->time > (int64) 3600 * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be between 0 and 1 hour")));
	ms = iv->time / 1000;
	correlation_flush_wait(ms);
	PG_RETURN_VOID();
}

/*
 * _correlation_emit_begin(id, parent, operation, attributes text) and
 * _correlation_emit_end(id, status, error): the detached C API, callable
 * by superusers for tests and tools.  Attributes are not validated here
 * (the writer discards an event it cannot store).
 */
Datum
correlation_emit_begin_sql(PG_FUNCTION_ARGS)
{
	CorrelationEventArgs ev = {0};
	char	   *op;
	char	   *attrs;

	correlation_prepare();
	trading_require_arg(fcinfo, 0, "id");
	op = trading_text_arg(fcinfo, 2, "operation", CORRELATION_MAX_OPERATION);
	attrs = trading_text_arg(fcinfo, 3, "attributes", CORRELATION_MAX_ATTRIBUTES);
	ev.kind = CORRELATION_REC_BEGIN;
	ev.id = PG_GETARG_UUID_P(0);
	ev.parent = PG_ARGISNULL(1) ? NULL : PG_GETARG_UUID_P(1);
	ev.ts = GetCurrentTimestamp();
	ev.pid = MyProcPid;
	ev.op = op;
	ev.op_len = strlen(op);
	ev.user = correlation_user_name();
	ev.user_len = strlen(ev.user);
	ev.attrs = attrs;
	ev.attr_len = strlen(attrs);
	PG_RETURN_BOOL(correlation_enqueue(&ev));
}

Datum
correlation_emit_end_sql(PG_FUNCTION_ARGS)
{
	CorrelationEventArgs ev = {0};
	char	   *status;
	char	   *error = NULL;

	correlation_prepare();
	trading_require_arg(fcinfo, 0, "id");
	status = trading_text_arg(fcinfo, 1, "status", CORRELATION_MAX_STATUS);
	if (!PG_ARGISNULL(2))
		error = trading_text_arg(fcinfo, 2, "error", CORRELATION_MAX_ERROR);
	ev.kind = CORRELATION_REC_END;
	ev.id = PG_GETARG_UUID_P(0);
	ev.ts = GetCurrentTimestamp();
	ev.pid = MyProcPid;
	ev.status = status;
	ev.status_len = strlen(status);
	ev.error = error;
	ev.err_len = error ? strlen(error) : 0;
	PG_RETURN_BOOL(correlation_enqueue(&ev));
}

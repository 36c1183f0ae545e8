/*-------------------------------------------------------------------------
 *
 * correlation_int.h
 *	  Internals of correlation tracking shared by correlation.c (the queue
 *	  in shared memory, GUCs, the detached C API), correlation_sql.c (the
 *	  SQL functions and the per-transaction context) and
 *	  worker/correlation_writer.c (the background worker that drains the
 *	  queue into trading.operations).
 *
 * The queue is a byte ring of variable-length records; see correlation.c
 * for its layout and locking rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_CORRELATION_INT_H
#define TRADING_CORRELATION_INT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"
#include "utils/uuid.h"

/* Bounds of the variable-length fields (bytes, without a terminator). */
#define CORRELATION_MAX_OPERATION		200
#define CORRELATION_MAX_STATUS			64
#define CORRELATION_MAX_ERROR			2000
#define CORRELATION_MAX_ATTRIBUTES		8192	/* attributes as JSON text */
#define CORRELATION_MAX_USER			(NAMEDATALEN - 1)
#define CORRELATION_MAX_DEPTH			1000	/* nested open operations per
												 * backend */

/* Record kinds in the ring. */
#define CORRELATION_REC_PAD			1	/* filler up to the end of the ring */
#define CORRELATION_REC_BEGIN			2
#define CORRELATION_REC_END			3

/* Event flags. */
#define CORRELATION_F_PARENT			0x01	/* parent is set */
#define CORRELATION_F_AUTO				0x02	/* end made by the extension,
												 * not the user */
#define CORRELATION_F_BEGIN_INFO		0x04	/* end carries the begin's
												 * fields */

/* Every record starts 16-byte aligned with this header. */
typedef struct CorrelationRecHeader
{
	pg_atomic_uint32 ready;		/* 1 once the record is completely written */
	uint32		len;			/* whole record, header included, aligned */
	uint32		kind;			/* CORRELATION_REC_* */
	uint32		pad;
} CorrelationRecHeader;

#define CORRELATION_REC_ALIGN(len)		TYPEALIGN(16, (len))

/* Body of BEGIN and END records, followed by the strings (no terminators). */
typedef struct CorrelationEvent
{
	uint64		seq;			/* 1, 2, ... in reservation order */
	TimestampTz ts;				/* begin: start time; end: end time */
	TimestampTz started_at;		/* end with CORRELATION_F_BEGIN_INFO: start
								 * time */
	pg_uuid_t	id;
	pg_uuid_t	parent;
	int32		pid;			/* backend that began the operation */
	uint16		flags;
	uint16		op_len;			/* operation name */
	uint16		user_len;		/* role name */
	uint16		status_len;		/* end only */
	uint32		attr_len;		/* begin only: attributes JSON text */
	uint32		err_len;		/* end only */
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* op, user, attrs, status,
												 * error */
} CorrelationEvent;

#define CORRELATION_MAX_RECORD \
	CORRELATION_REC_ALIGN(sizeof(CorrelationRecHeader) + offsetof(CorrelationEvent, data) + \
				   CORRELATION_MAX_OPERATION + CORRELATION_MAX_USER + CORRELATION_MAX_ATTRIBUTES + \
				   CORRELATION_MAX_STATUS + CORRELATION_MAX_ERROR)

typedef struct CorrelationShared
{
	slock_t		mutex;			/* protects head, next_seq, dropped_total,
								 * wake_pending */
	uint64		head;			/* byte position of the next reservation */
	uint64		next_seq;		/* sequence number of the next event */
	uint64		dropped_total;	/* events refused because the ring was full */
	bool		wake_pending;	/* a producer has already set the writer's
								 * latch */

	pg_atomic_uint64 tail;		/* first byte not yet released by the writer */
	pg_atomic_uint64 consumed_seq;	/* every seq <= this is written or
									 * discarded */
	pg_atomic_uint64 written_total;
	pg_atomic_uint64 discarded_total;	/* bad events the writer skipped */
	pg_atomic_uint32 writer_procno; /* pgprocno of the writer, or -1 */
	pg_atomic_uint32 writer_pid;
	pg_atomic_uint32 database_seen; /* 0 after a failed connection
									 * (bgw_common.c) */

	TimestampTz epoch;			/* when shared memory was (re)initialised */
	uint64		size;			/* bytes in ring[] (a multiple of 16) */
	uint64		wake_bytes;		/* wake the writer once this much is queued */
	ConditionVariable flushed_cv;	/* broadcast when consumed_seq advances */
	char	   *ring;
} CorrelationShared;

extern CorrelationShared *correlation_shared;

/* GUCs */
extern int	correlation_queue_size_kb;
extern int	correlation_writer_delay_ms;
extern int	correlation_batch_events;
extern int	correlation_retention_s;
extern bool correlation_log_ids;

/* One event to enqueue; strings need not be NUL-terminated. */
typedef struct CorrelationEventArgs
{
	int			kind;			/* CORRELATION_REC_BEGIN or
								 * CORRELATION_REC_END */
	int			flags;
	const pg_uuid_t *id;
	const pg_uuid_t *parent;
	TimestampTz ts;
	TimestampTz started_at;
	int32		pid;
	const char *op;
	int			op_len;
	const char *user;
	int			user_len;
	const char *attrs;
	int			attr_len;
	const char *status;
	int			status_len;
	const char *error;
	int			err_len;
} CorrelationEventArgs;

/*
 * Put one event in the ring.  Never blocks, never errors, never allocates:
 * returns false (and counts a drop) when the ring is full or shared memory
 * is not attached.  Fields longer than their bound are clipped.
 */
extern bool correlation_enqueue(const CorrelationEventArgs *ev);

/* Set the writer's latch, if it is running. */
extern void correlation_wake_writer(void);

/* correlation_sql.c */
extern void correlation_sql_init(void);

/* worker/correlation_writer.c */
extern void correlation_writer_register(void);

#endif							/* TRADING_CORRELATION_INT_H */

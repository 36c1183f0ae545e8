/*-------------------------------------------------------------------------
 *
 * correlation.h
 *	  Correlation events for background workers: "detached" begin/end that
 *	  are not tied to the calling transaction's context.  They only enqueue
 *	  events in shared memory (never block, never error on a full queue).
 *	  Implemented in correlation.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_CORRELATION_H
#define TRADING_CORRELATION_H

#include "postgres.h"
#include "utils/uuid.h"

/* a new random operation id */
extern void correlation_new_id(pg_uuid_t *out);

/* parent may be NULL (a root); attributes_json may be NULL ('{}') */
extern void correlation_emit_begin(const pg_uuid_t *id, const pg_uuid_t *parent,
								   const char *operation,
								   const char *attributes_json);

/* status e.g. "ok" / "error"; error may be NULL */
extern void correlation_emit_end(const pg_uuid_t *id, const char *status,
								 const char *error);

#endif

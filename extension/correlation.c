/*-------------------------------------------------------------------------
 *
 * correlation.c
 *	  Placeholder for the correlation capability: its module entry points exist so
 *	  that trading.c and shmem.c already list it; the capability replaces
 *	  this file.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "correlation.h"

void
correlation_init(void)
{
}

void
correlation_shmem_request(void)
{
}

void
correlation_shmem_startup(void)
{
}

void
correlation_new_id(pg_uuid_t *out)
{
	memset(out, 0, sizeof(pg_uuid_t));
}

void
correlation_emit_begin(const pg_uuid_t *id, const pg_uuid_t *parent,
					   const char *operation, const char *attributes_json)
{
}

void
correlation_emit_end(const pg_uuid_t *id, const char *status,
					 const char *error)
{
}

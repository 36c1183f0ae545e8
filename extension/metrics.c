/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Placeholder for the metrics capability: its module entry points exist so
 *	  that trading.c and shmem.c already list it; the capability replaces
 *	  this file.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

void
metrics_init(void)
{
}

void
metrics_shmem_request(void)
{
}

void
metrics_shmem_startup(void)
{
}

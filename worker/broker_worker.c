/*-------------------------------------------------------------------------
 *
 * broker_worker.c
 *	  Placeholder for the broker worker: its module entry points exist so
 *	  that trading.c and shmem.c already list it; the worker replaces this
 *	  file.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

void
broker_worker_init(void)
{
}

void
broker_worker_shmem_request(void)
{
}

void
broker_worker_shmem_startup(void)
{
}

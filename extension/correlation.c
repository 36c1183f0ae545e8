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

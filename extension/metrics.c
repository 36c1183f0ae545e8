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
#include "metrics.h"

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

void
metrics_observe_request(const char *endpoint, double seconds, int http_status)
{
}

void
metrics_count_exception(const char *kind)
{
}

void
metrics_count_trade(const char *side, const char *status)
{
}

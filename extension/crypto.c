/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  Placeholder for the crypto capability: its module entry points exist so
 *	  that trading.c and shmem.c already list it; the capability replaces
 *	  this file.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

void
crypto_init(void)
{
}

void
crypto_shmem_request(void)
{
}

void
crypto_shmem_startup(void)
{
}

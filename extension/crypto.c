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
#include "crypto.h"

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

bool
crypto_server_key_available(void)
{
	return false;
}

bytea *
crypto_encrypt_with_server_key(const char *data, Size len,
							   const char *aad, Size aadlen)
{
	elog(ERROR, "server-key encryption is not built yet");
	return NULL;
}

char *
crypto_decrypt_with_server_key(const bytea *envelope, const char *aad,
							   Size aadlen, Size *len)
{
	elog(ERROR, "server-key encryption is not built yet");
	return NULL;
}

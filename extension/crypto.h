/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  Server-key encryption for other modules (the worker stores broker
 *	  credentials with it).  Implemented in crypto.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_CRYPTO_H
#define TRADING_CRYPTO_H

#include "postgres.h"

/* true when trading.key_command produced a valid key at server start */
extern bool crypto_server_key_available(void);

/* Envelope of data under the current server key version, bound to aad
 * (may be NULL/0).  Raises an error if no key is loaded. */
extern bytea *crypto_encrypt_with_server_key(const char *data, Size len,
											 const char *aad, Size aadlen);

/* Plaintext of an envelope made by the above (palloc'd, *len set);
 * raises a clear error on a wrong key, tampering or malformed input. */
extern char *crypto_decrypt_with_server_key(const bytea *envelope,
											const char *aad, Size aadlen,
											Size *len);

#endif

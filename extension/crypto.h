/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  Encryption at rest (docs/ENCRYPTION.md).  The first three functions
 *	  are the API other modules call (the worker stores broker credentials
 *	  with them); the rest are shared by crypto.c, crypto_sql.c and
 *	  archive.c.
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

/* ---- shared by the crypto modules ---- */

/* trading.pbkdf2_iterations */
extern int	crypto_pbkdf2_iterations;

/*
 * As crypto_encrypt_with_server_key, but with a subkey derived from a
 * fresh random salt (archives and files); the plain form reuses one
 * backend-local salt for up to a million values to keep rows cheap.
 */
extern bytea *crypto_encrypt_server_fresh(const char *data, Size len,
										  const char *aad, Size aadlen);

/* Passphrase mode (PBKDF2 with the given iteration count). */
extern bytea *crypto_encrypt_passphrase(const char *data, Size len,
										const char *pass, Size passlen,
										const char *aad, Size aadlen,
										int iterations);
extern bytea *crypto_decrypt_passphrase(const bytea *envelope,
										const char *pass, Size passlen,
										const char *aad, Size aadlen);

/* crypto_decrypt_with_server_key, returning the plaintext as a bytea */
extern bytea *crypto_decrypt_server_bytea(const bytea *envelope,
										  const char *aad, Size aadlen);

/* Current key version; raises TR101 when no key is loaded. */
extern uint32 crypto_current_key_version(void);

/* Loaded key versions for the key_status view: fills versions/kcvs
 * (16 bytes each) up to max entries and returns the count. */
extern int	crypto_loaded_keys(uint32 *versions, unsigned char (*kcvs)[16],
							   int max, int *current_index);

/* worker/crypto_keycheck.c: the key check worker, registered by crypto_init */
extern void crypto_keycheck_register(void);

/* crypto_sql.c: the hint on "permission denied for function encrypt" */
extern void crypto_sql_init(void);

/* Why no key is loaded ("" when one is). */
extern const char *crypto_key_load_error(void);

#endif

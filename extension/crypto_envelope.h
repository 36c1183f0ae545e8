/*-------------------------------------------------------------------------
 *
 * crypto_envelope.h
 *	  The trading encryption envelope: one versioned byte format for every
 *	  ciphertext the extension and the offline tool (tools/trading-crypt)
 *	  produce.  This header and crypto_envelope.c depend on OpenSSL and the
 *	  C library only (no PostgreSQL backend code), so both programs compile
 *	  the very same file.  docs/ENCRYPTION.md describes the bytes.
 *
 *	  offset  size  field
 *	  0       4     magic "TRDE"
 *	  4       1     format version (1)
 *	  5       1     mode: 1 = server key (HKDF subkey), 2 = passphrase (PBKDF2)
 *	  6       2     flags, big endian: bit 0 = associated data was supplied
 *	  8       4     mode 1: key version; mode 2: PBKDF2 iterations (big endian)
 *	  12      16    salt (HKDF salt or PBKDF2 salt)
 *	  28      12    AES-GCM nonce
 *	  40      n     ciphertext (n = plaintext length)
 *	  40+n    16    GCM tag
 *
 *	  The 40 header bytes followed by the caller's associated data are the
 *	  GCM additional authenticated data, so no header bit can be changed.
 *
 *	  Not thread-safe: the cipher context is cached per process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_CRYPTO_ENVELOPE_H
#define TRADING_CRYPTO_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TENV_MAGIC				"TRDE"
#define TENV_FORMAT_VERSION		1
#define TENV_MODE_SERVER_KEY	1
#define TENV_MODE_PASSPHRASE	2
#define TENV_FLAG_AAD			0x0001

#define TENV_KEY_LEN			32	/* AES-256 */
#define TENV_SALT_LEN			16	/* 128-bit salt */
#define TENV_NONCE_LEN			12	/* 96-bit GCM nonce */
#define TENV_TAG_LEN			16	/* 128-bit GCM tag */
#define TENV_HEADER_LEN			40
#define TENV_OVERHEAD			(TENV_HEADER_LEN + TENV_TAG_LEN)
#define TENV_KCV_LEN			16

#define TENV_MIN_ITERATIONS		100000
#define TENV_MAX_ITERATIONS		10000000
#define TENV_DEFAULT_ITERATIONS 600000

/* key versions accepted in key command output and envelopes */
#define TENV_MAX_KEY_VERSION	999999
#define TENV_MAX_KEYS			16

/* the largest plaintext sealed in one envelope (GCM allows 2^36 - 32) */
#define TENV_MAX_PLAINTEXT		((size_t) 1 << 36)

typedef enum TenvStatus
{
	TENV_OK = 0,
	TENV_ERR_TRUNCATED,			/* shorter than header + tag */
	TENV_ERR_MAGIC,				/* not an envelope */
	TENV_ERR_VERSION,			/* unknown format version */
	TENV_ERR_MODE,				/* unknown mode byte */
	TENV_ERR_FLAGS,				/* unknown flag bits */
	TENV_ERR_PARAM,				/* key version / iterations out of range */
	TENV_ERR_AUTH,				/* tag mismatch: wrong key, AAD or tampering */
	TENV_ERR_TOO_LARGE,			/* plaintext beyond TENV_MAX_PLAINTEXT */
	TENV_ERR_CRYPTO				/* OpenSSL failed (out of memory etc.) */
} TenvStatus;

typedef struct TenvHeader
{
	int			format_version;
	int			mode;
	unsigned	flags;
	uint32_t	param;			/* key version or iterations */
	const unsigned char *salt;	/* points into the envelope */
	const unsigned char *nonce;
	size_t		ciphertext_len;
} TenvHeader;

/* One key version as printed by a key command ("N:hex" or "hex"). */
typedef struct TenvKey
{
	uint32_t	version;
	unsigned char key[TENV_KEY_LEN];
} TenvKey;

extern const char *tenv_strerror(TenvStatus st);

/* A sentence for an error detail ("The value ... ."), capitalised. */
extern const char *tenv_detail(TenvStatus st);

/* Validate the fixed part of an envelope; fills *h on success. */
extern TenvStatus tenv_parse(const unsigned char *env, size_t len,
							 TenvHeader *h);

/*
 * Write the 40-byte header into out with a fresh random nonce.  salt is
 * copied when given, otherwise a random salt is drawn.
 */
extern TenvStatus tenv_write_header(unsigned char *out, int mode,
									uint32_t param, bool has_aad,
									const unsigned char *salt);

/*
 * Encrypt len bytes of pt under key into env, whose first TENV_HEADER_LEN
 * bytes are a header made by tenv_write_header and which has room for
 * len + TENV_OVERHEAD bytes.
 */
extern TenvStatus tenv_seal(const unsigned char *key, unsigned char *env,
							const unsigned char *pt, size_t len,
							const unsigned char *aad, size_t aadlen);

/*
 * Decrypt a parsed envelope into out (room for h->ciphertext_len bytes).
 * On any failure out is wiped: no partial plaintext ever escapes.
 */
extern TenvStatus tenv_open(const unsigned char *key, const unsigned char *env,
							const TenvHeader *h,
							const unsigned char *aad, size_t aadlen,
							unsigned char *out);

/* HKDF-SHA256(master, salt, info "trading envelope v1 server key") */
extern TenvStatus tenv_derive_subkey(const unsigned char *master,
									 const unsigned char *salt,
									 unsigned char *out);

/* PBKDF2-HMAC-SHA256(passphrase, salt, iterations) */
extern TenvStatus tenv_derive_passphrase(const char *pass, size_t passlen,
										 const unsigned char *salt,
										 uint32_t iterations,
										 unsigned char *out);

/* Key check value: HKDF-SHA256(master, no salt, info "trading key check value") */
extern TenvStatus tenv_key_check_value(const unsigned char *master,
									   unsigned char *out);

/*
 * Parse the output of a key command: one key per line, either 64 hex
 * digits (version 1) or "version:64 hex digits".  Blank lines and lines
 * starting with '#' are skipped; trailing white space is ignored.  Returns
 * the number of keys (>= 1) or -1 with *errline (1-based, 0 = whole
 * output) and *errmsg set.  Error messages never quote the input.
 */
extern int	tenv_parse_keys(const char *text, size_t len, TenvKey *keys,
							int maxkeys, int *errline, const char **errmsg);

/* Decode hexlen (even) hex digits into out; false on a non-hex digit. */
extern bool tenv_hex_decode(const char *hex, size_t hexlen, unsigned char *out);

/* Index of the key with the highest version (the current one). */
extern int	tenv_current_key(const TenvKey *keys, int nkeys);

/* OPENSSL_cleanse */
extern void tenv_wipe(void *p, size_t len);

/* Random bytes from OpenSSL's CSPRNG; false on failure. */
extern bool tenv_random(unsigned char *buf, size_t len);

#endif

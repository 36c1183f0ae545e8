/*-------------------------------------------------------------------------
 *
 * crypto_envelope.c
 *	  Seal and open trading envelopes with OpenSSL EVP (AES-256-GCM, HKDF,
 *	  PBKDF2).  No PostgreSQL backend dependencies: compiled into trading.so
 *	  and into tools/trading-crypt.  See crypto_envelope.h for the format.
 *
 * The AES-256-GCM cipher and the HKDF implementation are fetched once per
 * process and one cipher context is reused, because fetching costs more
 * than encrypting a short row.  The context holds a caller's key schedule
 * only for the duration of one call: every seal and open ends by re-keying
 * it with an all-zero key, which overwrites the key schedule and the GCM
 * hash key in place (EVP_CIPHER_CTX_reset() if that fails), so no expanded
 * key stays in OpenSSL's (unlocked, dumpable) heap between calls, at the
 * cost of one AES key expansion instead of an allocation per call.
 * Callers keep keys in memory of their own (locked pages in the server).
 * Not thread-safe (neither program uses threads).
 *
 *-------------------------------------------------------------------------
 */
#include "crypto_envelope.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define HKDF_INFO_SUBKEY	"trading envelope v1 server key"
#define HKDF_INFO_KCV		"trading key check value"

static EVP_CIPHER *gcm_cipher = NULL;
static EVP_CIPHER_CTX *gcm_ctx = NULL;
static bool gcm_bound = false;	/* gcm_ctx initialised with gcm_cipher */
static EVP_KDF *hkdf = NULL;

static bool
tenv_setup(void)
{
	if (gcm_cipher == NULL)
		gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (gcm_ctx == NULL)
		gcm_ctx = EVP_CIPHER_CTX_new();
	if (hkdf == NULL)
		hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	return gcm_cipher != NULL && gcm_ctx != NULL && hkdf != NULL;
}

const char *
tenv_strerror(TenvStatus st)
{
	switch (st)
	{
		case TENV_OK:
			return "success";
		case TENV_ERR_TRUNCATED:
			return "the value is too short to be an encrypted envelope";
		case TENV_ERR_MAGIC:
			return "the value is not a trading encrypted envelope";
		case TENV_ERR_VERSION:
			return "the envelope has an unsupported format version";
		case TENV_ERR_MODE:
			return "the envelope has an unknown key mode";
		case TENV_ERR_FLAGS:
			return "the envelope has unknown flags";
		case TENV_ERR_PARAM:
			return "the envelope's key version or iteration count is out of range";
		case TENV_ERR_AUTH:
			return "authentication failed: wrong key or passphrase, wrong associated data, or the value was modified";
		case TENV_ERR_TOO_LARGE:
			return "the value is too large to encrypt";
		case TENV_ERR_CRYPTO:
			return "the cryptographic library failed";
	}
	return "unknown error";
}

const char *
tenv_detail(TenvStatus st)
{
	switch (st)
	{
		case TENV_ERR_TRUNCATED:
			return "The value is shorter than the 56 bytes of an envelope's header and tag.";
		case TENV_ERR_MAGIC:
			return "The value does not begin with the envelope magic \"TRDE\": it was not made by trading.encrypt or trading-crypt.";
		case TENV_ERR_VERSION:
			return "Byte 4 names an envelope format version this server does not know (it knows version 1).";
		case TENV_ERR_MODE:
			return "Byte 5 names neither the server key (1) nor a passphrase (2).";
		case TENV_ERR_FLAGS:
			return "Bytes 6-7 set flag bits other than bit 0 (associated data).";
		case TENV_ERR_PARAM:
			return "Bytes 8-11 hold a key version outside 1..999999 or an iteration count outside 100000..10000000.";
		default:
			return "The value cannot be parsed as an envelope.";
	}
}

static uint32_t
get_be32(const unsigned char *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char) (v >> 24);
	p[1] = (unsigned char) (v >> 16);
	p[2] = (unsigned char) (v >> 8);
	p[3] = (unsigned char) v;
}

TenvStatus
tenv_parse(const unsigned char *env, size_t len, TenvHeader *h)
{
	/* identify the format before complaining about its length */
	if (len >= 4 && memcmp(env, TENV_MAGIC, 4) != 0)
		return TENV_ERR_MAGIC;
	if (len < TENV_OVERHEAD)
		return len < 4 ? TENV_ERR_MAGIC : TENV_ERR_TRUNCATED;
	if (env[4] != TENV_FORMAT_VERSION)
		return TENV_ERR_VERSION;
	if (env[5] != TENV_MODE_SERVER_KEY && env[5] != TENV_MODE_PASSPHRASE)
		return TENV_ERR_MODE;
	h->format_version = env[4];
	h->mode = env[5];
	h->flags = ((unsigned) env[6] << 8) | env[7];
	if ((h->flags & ~TENV_FLAG_AAD) != 0)
		return TENV_ERR_FLAGS;
	h->param = get_be32(env + 8);
	if (h->mode == TENV_MODE_SERVER_KEY
		? (h->param < 1 || h->param > TENV_MAX_KEY_VERSION)
		: (h->param < TENV_MIN_ITERATIONS || h->param > TENV_MAX_ITERATIONS))
		return TENV_ERR_PARAM;
	h->salt = env + 12;
	h->nonce = env + 12 + TENV_SALT_LEN;
	h->ciphertext_len = len - TENV_OVERHEAD;
	return TENV_OK;
}

bool
tenv_random(unsigned char *buf, size_t len)
{
	return RAND_bytes(buf, (int) len) == 1;
}

TenvStatus
tenv_write_header(unsigned char *out, int mode, uint32_t param, bool has_aad,
				  const unsigned char *salt)
{
	memcpy(out, TENV_MAGIC, 4);
	out[4] = TENV_FORMAT_VERSION;
	out[5] = (unsigned char) mode;
	out[6] = 0;
	out[7] = has_aad ? TENV_FLAG_AAD : 0;
	put_be32(out + 8, param);
	if (salt)
		memcpy(out + 12, salt, TENV_SALT_LEN);
	else if (!tenv_random(out + 12, TENV_SALT_LEN))
		return TENV_ERR_CRYPTO;
	if (!tenv_random(out + 12 + TENV_SALT_LEN, TENV_NONCE_LEN))
		return TENV_ERR_CRYPTO;
	return TENV_OK;
}

/* Feed header + caller AAD to GCM as additional authenticated data. */
static bool
gcm_aad(EVP_CIPHER_CTX *ctx, const unsigned char *header,
		const unsigned char *aad, size_t aadlen)
{
	int			outl;

	if (EVP_CipherUpdate(ctx, NULL, &outl, header, TENV_HEADER_LEN) != 1)
		return false;
	while (aadlen > 0)
	{
		int			n = aadlen > (1 << 30) ? (1 << 30) : (int) aadlen;

		if (EVP_CipherUpdate(ctx, NULL, &outl, aad, n) != 1)
			return false;
		aad += n;
		aadlen -= n;
	}
	return true;
}

/* Run the cipher over len bytes in chunks that fit an int. */
static bool
gcm_update(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
		   size_t len)
{
	while (len > 0)
	{
		int			n = len > (1 << 30) ? (1 << 30) : (int) len;
		int			outl;

		if (EVP_CipherUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
			return false;
		in += n;
		out += n;
		len -= n;
	}
	return true;
}

static TenvStatus
seal_with(EVP_CIPHER_CTX *c, unsigned char *env,
		  const unsigned char *pt, size_t len,
		  const unsigned char *aad, size_t aadlen)
{
	unsigned char *ct = env + TENV_HEADER_LEN;
	int			outl;

	if (len > TENV_MAX_PLAINTEXT)
		return TENV_ERR_TOO_LARGE;
	if (EVP_EncryptInit_ex2(c, NULL, NULL, env + 12 + TENV_SALT_LEN, NULL) != 1 ||
		!gcm_aad(c, env, aad, aadlen) ||
		!gcm_update(c, ct, pt, len) ||
		EVP_EncryptFinal_ex(c, ct + len, &outl) != 1 ||
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TENV_TAG_LEN,
							ct + len) != 1)
	{
		OPENSSL_cleanse(ct, len);
		return TENV_ERR_CRYPTO;
	}
	return TENV_OK;
}

static TenvStatus
open_with(EVP_CIPHER_CTX *c, const unsigned char *env, const TenvHeader *h,
		  const unsigned char *aad, size_t aadlen, unsigned char *out)
{
	const unsigned char *ct = env + TENV_HEADER_LEN;
	size_t		len = h->ciphertext_len;
	unsigned char tag[TENV_TAG_LEN];
	int			outl;

	memcpy(tag, ct + len, TENV_TAG_LEN);
	if (EVP_DecryptInit_ex2(c, NULL, NULL, h->nonce, NULL) != 1 ||
		!gcm_aad(c, env, aad, aadlen) ||
		!gcm_update(c, out, ct, len) ||
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TENV_TAG_LEN, tag) != 1)
	{
		OPENSSL_cleanse(out, len);
		return TENV_ERR_CRYPTO;
	}
	if (EVP_DecryptFinal_ex(c, out + len, &outl) != 1)
	{
		OPENSSL_cleanse(out, len);
		return TENV_ERR_AUTH;
	}
	return TENV_OK;
}

/* Key the process's context with key, for encryption or decryption. */
static bool
gcm_key(const unsigned char *key, bool encrypt)
{
	const EVP_CIPHER *c;

	if (!tenv_setup())
		return false;
	c = gcm_bound ? NULL : gcm_cipher;
	gcm_bound = (encrypt ? EVP_EncryptInit_ex2(gcm_ctx, c, key, NULL, NULL)
				 : EVP_DecryptInit_ex2(gcm_ctx, c, key, NULL, NULL)) == 1;
	return gcm_bound;
}

/* Overwrite the caller's key schedule in the context (see the header). */
static void
gcm_wipe(void)
{
	static const unsigned char zero_key[TENV_KEY_LEN];

	if (gcm_ctx == NULL)
		return;
	if (!gcm_bound || EVP_EncryptInit_ex2(gcm_ctx, NULL, zero_key, NULL, NULL) != 1)
	{
		EVP_CIPHER_CTX_reset(gcm_ctx);
		gcm_bound = false;
	}
}

/* The process's context, keyed for this call only (wiped before return). */
TenvStatus
tenv_seal(const unsigned char *key, unsigned char *env,
		  const unsigned char *pt, size_t len,
		  const unsigned char *aad, size_t aadlen)
{
	TenvStatus	st = TENV_ERR_CRYPTO;

	if (gcm_key(key, true))
		st = seal_with(gcm_ctx, env, pt, len, aad, aadlen);
	gcm_wipe();
	return st;
}

TenvStatus
tenv_open(const unsigned char *key, const unsigned char *env,
		  const TenvHeader *h, const unsigned char *aad, size_t aadlen,
		  unsigned char *out)
{
	TenvStatus	st = TENV_ERR_CRYPTO;

	if (gcm_key(key, false))
		st = open_with(gcm_ctx, env, h, aad, aadlen, out);
	gcm_wipe();
	return st;
}

static TenvStatus
hkdf_sha256(const unsigned char *ikm, const unsigned char *salt,
			size_t saltlen, const char *info, unsigned char *out)
{
	EVP_KDF_CTX *kctx;
	OSSL_PARAM	params[5];
	OSSL_PARAM *p = params;
	int			ok;

	if (!tenv_setup() || (kctx = EVP_KDF_CTX_new(hkdf)) == NULL)
		return TENV_ERR_CRYPTO;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
											(char *) "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
											 (void *) ikm, TENV_KEY_LEN);
	if (saltlen > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
												 (void *) salt, saltlen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
											 (void *) info, strlen(info));
	*p = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, out, TENV_KEY_LEN, params);
	EVP_KDF_CTX_free(kctx);
	return ok == 1 ? TENV_OK : TENV_ERR_CRYPTO;
}

TenvStatus
tenv_derive_subkey(const unsigned char *master, const unsigned char *salt,
				   unsigned char *out)
{
	return hkdf_sha256(master, salt, TENV_SALT_LEN, HKDF_INFO_SUBKEY, out);
}

TenvStatus
tenv_key_check_value(const unsigned char *master, unsigned char *out)
{
	unsigned char full[TENV_KEY_LEN];
	TenvStatus	st = hkdf_sha256(master, NULL, 0, HKDF_INFO_KCV, full);

	memcpy(out, full, TENV_KCV_LEN);
	OPENSSL_cleanse(full, sizeof(full));
	return st;
}

TenvStatus
tenv_derive_passphrase(const char *pass, size_t passlen,
					   const unsigned char *salt, uint32_t iterations,
					   unsigned char *out)
{
	if (iterations < TENV_MIN_ITERATIONS || iterations > TENV_MAX_ITERATIONS)
		return TENV_ERR_PARAM;
	if (PKCS5_PBKDF2_HMAC(pass, (int) passlen, salt, TENV_SALT_LEN,
						  (int) iterations, EVP_sha256(),
						  TENV_KEY_LEN, out) != 1)
		return TENV_ERR_CRYPTO;
	return TENV_OK;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
tenv_hex_decode(const char *hex, size_t hexlen, unsigned char *out)
{
	for (size_t i = 0; i + 1 < hexlen; i += 2)
	{
		int			hi = hexval(hex[i]);
		int			lo = hexval(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (unsigned char) (hi << 4 | lo);
	}
	return hexlen % 2 == 0;
}

int
tenv_parse_keys(const char *text, size_t len, TenvKey *keys, int maxkeys,
				int *errline, const char **errmsg)
{
	size_t		pos = 0;
	int			line = 0;
	int			n = 0;

	*errline = 0;
	while (pos < len)
	{
		size_t		start = pos,
					end;
		size_t		hexstart;
		uint32_t	version = 1;

		while (pos < len && text[pos] != '\n')
			pos++;
		end = pos;
		if (pos < len)
			pos++;				/* skip the newline */
		line++;
		while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\t' ||
							   text[end - 1] == '\r'))
			end--;
		if (end == start || text[start] == '#')
			continue;

		hexstart = start;
		for (size_t i = start; i < end; i++)
		{
			if (text[i] == ':')
			{
				uint64_t	v = 0;

				if (i == start || i - start > 6)
					goto bad_version;
				for (size_t j = start; j < i; j++)
				{
					if (text[j] < '0' || text[j] > '9')
						goto bad_version;
					v = v * 10 + (text[j] - '0');
				}
				if (v < 1 || v > TENV_MAX_KEY_VERSION)
					goto bad_version;
				version = (uint32_t) v;
				hexstart = i + 1;
				break;
			}
		}
		if (end - hexstart != 2 * TENV_KEY_LEN)
		{
			*errline = line;
			*errmsg = "a key must be exactly 64 hexadecimal digits (256 bits)";
			return -1;
		}
		if (n >= maxkeys)
		{
			*errline = line;
			*errmsg = "too many key versions";
			return -1;
		}
		for (int i = 0; i < n; i++)
			if (keys[i].version == version)
			{
				*errline = line;
				*errmsg = "the same key version appears twice";
				return -1;
			}
		if (!tenv_hex_decode(text +hexstart, 2 * TENV_KEY_LEN, keys[n].key))
		{
			OPENSSL_cleanse(keys[n].key, sizeof(keys[n].key));
			*errline = line;
			*errmsg = "a key must consist of hexadecimal digits only";
			return -1;
		}
		keys[n].version = version;
		n++;
		continue;

bad_version:
		*errline = line;
		*errmsg = "a key version must be a number between 1 and 999999 before the colon";
		return -1;
	}
	if (n == 0)
	{
		*errmsg = "the output contains no key";
		return -1;
	}
	return n;
}

int
tenv_current_key(const TenvKey *keys, int nkeys)
{
	int			best = 0;

	for (int i = 1; i < nkeys; i++)
		if (keys[i].version > keys[best].version)
			best = i;
	return best;
}

void
tenv_wipe(void *p, size_t len)
{
	OPENSSL_cleanse(p, len);
}

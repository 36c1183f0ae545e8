/*
 * crypto_alloc.c: where the time of AES-256-GCM over one 50 MB value goes,
 * outside PostgreSQL, with the same OpenSSL.  Each line is the median of 15
 * rounds, interleaved:
 *   warm           output buffer already faulted in (the cipher alone)
 *   fresh          a new malloc()ed (mmap()ed) output buffer per call
 *   fresh_thp      the same with MADV_HUGEPAGE, as trading.encrypt does
 *   fresh_thp_Nk   the same, fed to the cipher N kB at a time
 *   populate_thp   MADV_HUGEPAGE, then MADV_POPULATE_WRITE before encrypting
 *   copy_fresh_thp no cipher: memcpy() the value into a fresh buffer with
 *                  MADV_HUGEPAGE, the floor for any function that returns
 *                  a new 50 MB value on this machine
 * Run by bench/crypto_alloc.sh; results in docs/ENCRYPTION_BENCH.md.
 */
#define _GNU_SOURCE
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define N		((size_t) 50 << 20)
#define ROUNDS	15
#define HUGE	((uintptr_t) 2 << 20)

static EVP_CIPHER_CTX *ctx;
static unsigned char key[32],
			iv[12],
			tag[16];

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void
gcm_seal(unsigned char *out, const unsigned char *in, size_t chunk)
{
	int			l;

	EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv);
	for (size_t o = 0; o < N; o += chunk)
		EVP_EncryptUpdate(ctx, out + o, &l, in + o, (int) (N - o < chunk ? N - o : chunk));
	EVP_EncryptFinal_ex(ctx, out + N, &l);
	EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag);
}

static void
advise(unsigned char *p, int advice)
{
	uintptr_t	s = ((uintptr_t) p + HUGE - 1) & ~(HUGE - 1);
	uintptr_t	e = ((uintptr_t) p + N) & ~(HUGE - 1);

	madvise((void *) s, e - s, advice);
}

static int
cmp(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(void)
{
	static const char *names[] = {"warm", "fresh", "fresh_thp", "fresh_thp_16k",
	"fresh_thp_256k", "fresh_thp_4096k", "populate_thp", "copy_fresh_thp"};
	static const size_t chunks[] = {N, N, N, 16 << 10, 256 << 10, 4096 << 10, N, N};
	enum
	{
	NMODES = 8};
	volatile unsigned char sink = 0;
	double		t[NMODES][ROUNDS];
	unsigned char *in = malloc(N),
			   *warm = malloc(N + 16);

	ctx = EVP_CIPHER_CTX_new();
	if (!in || !warm || !ctx)
		return 1;
	for (size_t i = 0; i < N; i++)
		in[i] = (unsigned char) rand();
	memset(warm, 1, N + 16);
	for (int r = 0; r < ROUNDS; r++)
		for (int m = 0; m < NMODES; m++)
		{
			double		t0 = now_ms();
			unsigned char *out = warm;

			if (m > 0 && (out = malloc(N + 16)) == NULL)
				return 1;
			if (m >= 2)
				advise(out, MADV_HUGEPAGE);
			if (m == 6)
				advise(out, MADV_POPULATE_WRITE);
			if (m == 7)
				memcpy(out, in, N);
			else
				gcm_seal(out, in, chunks[m]);
			sink ^= out[N / 2];
			if (m > 0)
				free(out);
			t[m][r] = now_ms() - t0;
		}
	for (int m = 0; m < NMODES; m++)
	{
		qsort(t[m], ROUNDS, sizeof(double), cmp);
		printf("%-16s %6.2f ms (min %.2f)\n", names[m], t[m][ROUNDS / 2], t[m][0]);
	}
	return 0;
}

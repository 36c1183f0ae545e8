/*
 * util.c - small helpers of the paper broker: IST time formatting, a
 * seedable PRNG (splitmix64), number parsing, file reading, SHA-256.
 *
 * Kite reports every timestamp in IST (UTC+05:30, no DST), so times are
 * formatted from UTC plus a fixed offset and never depend on TZ.
 */
#include "broker.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define IST_OFFSET 19800		/* +05:30 */

double
now_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
ist_tm(double t, struct tm *tm)
{
	time_t		s = (time_t) floor(t) + IST_OFFSET;

	gmtime_r(&s, tm);
}

void
fmt_ist(double t, char *out, size_t n)
{
	struct tm	tm;

	ist_tm(t, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

void
fmt_ist_time(double t, char *out, size_t n)
{
	struct tm	tm;

	ist_tm(t, &tm);
	strftime(out, n, "%H:%M:%S", &tm);
}

void
fmt_ist_date(double t, char *out, size_t n)
{
	struct tm	tm;

	ist_tm(t, &tm);
	strftime(out, n, "%Y-%m-%d", &tm);
}

/* "yyyy-mm-dd hh:mm:ss" (IST) or seconds since the epoch */
bool
parse_ist(const char *s, double *out)
{
	struct tm	tm;
	int			Y,
				M,
				D,
				h = 0,
				m = 0,
				sec = 0;
	char		tail;

	if (!s || !*s)
		return false;
	if (sscanf(s, "%d-%d-%d %d:%d:%d%c", &Y, &M, &D, &h, &m, &sec, &tail) >= 3
		&& strchr(s, '-'))
	{
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = Y - 1900;
		tm.tm_mon = M - 1;
		tm.tm_mday = D;
		tm.tm_hour = h;
		tm.tm_min = m;
		tm.tm_sec = sec;
		*out = (double) timegm(&tm) - IST_OFFSET;
		return true;
	}
	return parse_double(s, out);
}

/* 06:00 IST after t: when Kite access tokens expire */
double
next_ist_0600(double t)
{
	double		local = floor(t) + IST_OFFSET;
	double		day = floor(local / 86400) * 86400;
	double		six = day + 6 * 3600;

	if (six <= local)
		six += 86400;
	return six - IST_OFFSET;
}

uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void
rng_seed(rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t
rng_next(rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

double
rng_uniform(rng *r)
{
	return (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double
rng_gauss(rng *r)
{
	double		u1 = rng_uniform(r),
				u2 = rng_uniform(r);

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

bool
parse_double(const char *s, double *out)
{
	char	   *end;
	double		v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

bool
parse_long(const char *s, long *out)
{
	char	   *end;
	long		v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0,
				n = 0,
				got;

	if (!f)
		return NULL;
	for (;;)
	{
		if (n + 65536 + 1 > cap)
		{
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

void
sha256_hex(const char *s, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
	{
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

void
random_token(rng *r, char *out, size_t len)
{
	static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	for (size_t i = 0; i + 1 < len; i++)
		out[i] = al[rng_next(r) % (sizeof(al) - 1)];
	out[len - 1] = '\0';
}

void *
grow_array(void *arr, int n, int *cap, size_t elem, int initial)
{
	if (n < *cap)
		return arr;
	*cap = *cap ? *cap * 2 : initial;
	arr = realloc(arr, elem * (size_t) *cap);
	if (!arr)
		abort();
	return arr;
}

/*
 * json.c - a small streaming JSON writer for the paper broker.
 *
 * Builds JSON text into a growable buffer, inserting commas automatically
 * and escaping strings per RFC 8259.  Numbers are printed the way Kite does:
 * integral values without a fraction ("72"), others with up to 15
 * significant digits.  There is deliberately no parser: requests arrive as
 * query strings or form bodies, which libmicrohttpd decodes.
 */
#include "broker.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void
jb_init(jbuf *j)
{
	memset(j, 0, sizeof(*j));
	j->cap = 1024;
	j->buf = malloc(j->cap);
	if (!j->buf)
		abort();
	j->buf[0] = '\0';
	j->first[0] = true;
}

void
jb_free(jbuf *j)
{
	free(j->buf);
	j->buf = NULL;
	j->len = j->cap = 0;
}

char *
jb_steal(jbuf *j, size_t *len)
{
	char	   *b = j->buf;

	if (len)
		*len = j->len;
	j->buf = NULL;
	j->len = j->cap = 0;
	return b;
}

static void
jb_reserve(jbuf *j, size_t extra)
{
	if (j->len + extra + 1 <= j->cap)
		return;
	while (j->len + extra + 1 > j->cap)
		j->cap *= 2;
	j->buf = realloc(j->buf, j->cap);
	if (!j->buf)
		abort();
}

void
jb_raw(jbuf *j, const char *s, size_t n)
{
	jb_reserve(j, n);
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

void
jb_printf(jbuf *j, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	jb_reserve(j, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(j->buf + j->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	j->len += (size_t) n;
}

/* called before every value or key: writes the separating comma */
static void
j_sep(jbuf *j)
{
	if (j->after_key)
	{
		j->after_key = false;
		return;
	}
	if (!j->first[j->depth])
		jb_raw(j, ",", 1);
	j->first[j->depth] = false;
}

static void
j_open(jbuf *j, char c)
{
	j_sep(j);
	jb_raw(j, &c, 1);
	if (j->depth + 1 < JSON_MAX_DEPTH)
		j->depth++;
	j->first[j->depth] = true;
}

static void
j_close(jbuf *j, char c)
{
	jb_raw(j, &c, 1);
	if (j->depth > 0)
		j->depth--;
}

void
j_obj(jbuf *j)
{
	j_open(j, '{');
}
void
j_end_obj(jbuf *j)
{
	j_close(j, '}');
}
void
j_arr(jbuf *j)
{
	j_open(j, '[');
}
void
j_end_arr(jbuf *j)
{
	j_close(j, ']');
}

static void
j_escaped(jbuf *j, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	jb_raw(j, "\"", 1);
	for (; *p; p++)
	{
		const char *run = (const char *) p;
		size_t		n = 0;

		while (p[n] >= 0x20 && p[n] != '"' && p[n] != '\\')
			n++;
		if (n)
		{
			jb_raw(j, run, n);
			p += n;
			if (!*p)
				break;
		}
		switch (*p)
		{
			case '"':
				jb_raw(j, "\\\"", 2);
				break;
			case '\\':
				jb_raw(j, "\\\\", 2);
				break;
			case '\n':
				jb_raw(j, "\\n", 2);
				break;
			case '\r':
				jb_raw(j, "\\r", 2);
				break;
			case '\t':
				jb_raw(j, "\\t", 2);
				break;
			case '\b':
				jb_raw(j, "\\b", 2);
				break;
			case '\f':
				jb_raw(j, "\\f", 2);
				break;
			default:
				jb_printf(j, "\\u%04x", *p);
				break;
		}
	}
	jb_raw(j, "\"", 1);
}

void
j_key(jbuf *j, const char *k)
{
	j_sep(j);
	j_escaped(j, k);
	jb_raw(j, ":", 1);
	j->after_key = true;
}

void
j_str(jbuf *j, const char *s)
{
	j_sep(j);
	j_escaped(j, s ? s : "");
}

void
j_num(jbuf *j, double v)
{
	j_sep(j);
	if (!isfinite(v))
		v = 0;
	v = round(v * 1e6) / 1e6;
	if (v == 0)
		v = 0;					/* no "-0" */
	if (fabs(v) < 1e15 && v == floor(v))
		jb_printf(j, "%.0f", v);
	else
		jb_printf(j, "%.15g", v);
}

void
j_int(jbuf *j, long long v)
{
	j_sep(j);
	jb_printf(j, "%lld", v);
}

void
j_bool(jbuf *j, bool b)
{
	j_sep(j);
	if (b)
		jb_raw(j, "true", 4);
	else
		jb_raw(j, "false", 5);
}

void
j_null(jbuf *j)
{
	j_sep(j);
	jb_raw(j, "null", 4);
}

void
j_kstr(jbuf *j, const char *k, const char *s)
{
	j_key(j, k);
	j_str(j, s);
}
void
j_knum(jbuf *j, const char *k, double v)
{
	j_key(j, k);
	j_num(j, v);
}
void
j_kint(jbuf *j, const char *k, long long v)
{
	j_key(j, k);
	j_int(j, v);
}
void
j_kbool(jbuf *j, const char *k, bool b)
{
	j_key(j, k);
	j_bool(j, b);
}
void
j_knull(jbuf *j, const char *k)
{
	j_key(j, k);
	j_null(j);
}
void
j_kobj(jbuf *j, const char *k)
{
	j_key(j, k);
	j_obj(j);
}
void
j_karr(jbuf *j, const char *k)
{
	j_key(j, k);
	j_arr(j);
}
void
j_empty_obj(jbuf *j, const char *k)
{
	j_key(j, k);
	j_obj(j);
	j_end_obj(j);
}

void
j_kstrn(jbuf *j, const char *k, const char *s)
{
	j_key(j, k);
	if (s && *s)
		j_str(j, s);
	else
		j_null(j);
}

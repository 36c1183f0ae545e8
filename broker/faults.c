/*
 * faults.c - deliberate misbehaviour of the paper broker.
 *
 * Every Kite request rolls a PRNG (seeded from --seed) against the live
 * fault settings: dropped connection, added latency (fixed + uniform
 * jitter), injected 429, a 5xx from --fail-codes, an HTML error page, or a
 * `status: error` body with HTTP 200; a normal reply can then be truncated
 * or made malformed.  Settings come from the command line and can be
 * changed at run time through POST /admin/faults; --fault-classes limits
 * them to some endpoint classes.
 *
 * Two faults act after the request was carried out, for the order
 * outbox's exactly-once tests: accept_drop_rate (the order exists, the
 * connection closes without a reply) and accept_late_rate (the reply comes
 * accept_late_ms late, after the client gave up).  margin_exception makes
 * an order beyond the margin a MarginException instead of a REJECTED
 * order; require_market_protection refuses MARKET and SL-M orders without
 * a market_protection (or with 0), as Kite does since April 2026.
 */
#include "broker.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

const char *const fault_param_names[] = {
	"latency_ms", "latency_jitter_ms", "fail_rate", "fail_codes", "rate429",
	"error200_rate", "html_rate", "html_status", "truncate_rate",
	"malformed_rate", "drop_rate", "expire_token_after", "classes",
	"accept_drop_rate", "accept_late_rate", "accept_late_ms", "margin_exception",
	"require_market_protection", NULL
};

static rng	fault_rng;
static bool fault_rng_seeded;

/* the next roll starts the seeded sequence again (used by /admin/reset) */
void
faults_reset(void)
{
	fault_rng_seeded = false;
}

static int
set_rate(double *dst, const char *v, char *err, size_t errlen)
{
	double		d;

	if (!parse_double(v, &d) || d < 0 || d > 1)
	{
		snprintf(err, errlen, "rate must be a number in [0,1], not '%s'", v);
		return -1;
	}
	*dst = d;
	return 0;
}

static int
set_ms(long *dst, const char *v, char *err, size_t errlen)
{
	long		n;

	if (!parse_long(v, &n) || n < 0)
	{
		snprintf(err, errlen, "expected a non-negative integer, not '%s'", v);
		return -1;
	}
	*dst = n;
	return 0;
}

static int
set_codes(faults *f, const char *v, char *err, size_t errlen)
{
	char	   *copy = strdup(v),
			   *save = NULL,
			   *tok;
	int			n = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		long		c;

		if (!parse_long(tok, &c) || c < 400 || c > 599 || n >= 8)
		{
			snprintf(err, errlen, "bad HTTP status list '%s'", v);
			free(copy);
			return -1;
		}
		f->fail_codes[n++] = (int) c;
	}
	free(copy);
	if (n == 0)
	{
		snprintf(err, errlen, "empty status list");
		return -1;
	}
	f->nfail_codes = n;
	return 0;
}

static int
set_classes(faults *f, const char *v, char *err, size_t errlen)
{
	char	   *copy = strdup(v),
			   *save = NULL,
			   *tok;
	unsigned	mask = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		int			i;

		if (strcmp(tok, "all") == 0)
		{
			mask = ~0u;
			continue;
		}
		for (i = 0; i < EP_NCLASSES; i++)
			if (strcmp(tok, ep_class_names[i]) == 0)
				break;
		if (i == EP_NCLASSES)
		{
			snprintf(err, errlen, "unknown endpoint class '%s'", tok);
			free(copy);
			return -1;
		}
		mask |= 1u << i;
	}
	free(copy);
	f->class_mask = mask;
	return 0;
}

/* set one fault by name ('-' and '_' are interchangeable); 0 or -1 */
int
faults_set(faults *f, const char *name, const char *value, char *err, size_t errlen)
{
	char		n[64];
	long		l;

	snprintf(n, sizeof(n), "%s", name);
	for (char *p = n; *p; p++)
		if (*p == '-')
			*p = '_';
	if (strcmp(n, "latency_ms") == 0)
		return set_ms(&f->latency_ms, value, err, errlen);
	if (strcmp(n, "latency_jitter_ms") == 0)
		return set_ms(&f->latency_jitter_ms, value, err, errlen);
	if (strcmp(n, "fail_rate") == 0)
		return set_rate(&f->fail_rate, value, err, errlen);
	if (strcmp(n, "fail_codes") == 0)
		return set_codes(f, value, err, errlen);
	if (strcmp(n, "rate429") == 0)
		return set_rate(&f->rate429, value, err, errlen);
	if (strcmp(n, "error200_rate") == 0)
		return set_rate(&f->error200_rate, value, err, errlen);
	if (strcmp(n, "html_rate") == 0)
		return set_rate(&f->html_rate, value, err, errlen);
	if (strcmp(n, "truncate_rate") == 0)
		return set_rate(&f->truncate_rate, value, err, errlen);
	if (strcmp(n, "malformed_rate") == 0)
		return set_rate(&f->malformed_rate, value, err, errlen);
	if (strcmp(n, "drop_rate") == 0)
		return set_rate(&f->drop_rate, value, err, errlen);
	if (strcmp(n, "accept_drop_rate") == 0)
		return set_rate(&f->accept_drop_rate, value, err, errlen);
	if (strcmp(n, "accept_late_rate") == 0)
		return set_rate(&f->accept_late_rate, value, err, errlen);
	if (strcmp(n, "accept_late_ms") == 0)
		return set_ms(&f->accept_late_ms, value, err, errlen);
	if (strcmp(n, "margin_exception") == 0 || strcmp(n, "require_market_protection") == 0)
	{
		bool	   *b = n[0] == 'm' ? &f->margin_exception : &f->require_market_protection;

		if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "on") == 0)
			*b = true;
		else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "off") == 0)
			*b = false;
		else
		{
			snprintf(err, errlen, "expected a boolean, not '%s'", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(n, "classes") == 0 || strcmp(n, "fault_classes") == 0)
		return set_classes(f, value, err, errlen);
	if (strcmp(n, "html_status") == 0)
	{
		if (!parse_long(value, &l) || l < 200 || l > 599)
		{
			snprintf(err, errlen, "bad html_status '%s'", value);
			return -1;
		}
		f->html_status = (int) l;
		return 0;
	}
	if (strcmp(n, "expire_token_after") == 0)
	{
		if (set_ms(&l, value, err, errlen) != 0)
			return -1;
		if (f == &g_faults)
			auth_arm_expiry(l);
		else
			f->expire_token_after = l;
		return 0;
	}
	snprintf(err, errlen, "unknown fault '%s'", name);
	return -1;
}

static bool
roll(double rate)
{
	return rate > 0 && rng_uniform(&fault_rng) < rate;
}

void
faults_decide(enum ep_class c, fault_decision *d)
{
	const faults *f = &g_faults;

	memset(d, 0, sizeof(*d));
	if (!fault_rng_seeded)
	{
		rng_seed(&fault_rng, mix64(g_cfg.seed ^ 0xfa175eedULL));
		fault_rng_seeded = true;
	}
	if (!(f->class_mask & (1u << c)))
		return;
	if (f->latency_ms || f->latency_jitter_ms)
		d->delay_ms = f->latency_ms
			+ (f->latency_jitter_ms ? (long) (rng_next(&fault_rng) % (uint64_t) (f->latency_jitter_ms + 1)) : 0);
	if (roll(f->drop_rate))
		d->drop = true;
	else if (roll(f->rate429))
		d->rate429 = true;
	else if (f->nfail_codes && roll(f->fail_rate))
		d->fail_code = f->fail_codes[rng_next(&fault_rng) % (uint64_t) f->nfail_codes];
	else if (roll(f->html_rate))
		d->html = true;
	else if (roll(f->error200_rate))
		d->error200 = true;
	else if (roll(f->accept_drop_rate))
		d->accept_drop = true;
	else if (roll(f->accept_late_rate))
		d->accept_late_ms = f->accept_late_ms;
	else
	{
		d->truncate = roll(f->truncate_rate);
		d->malformed = !d->truncate && roll(f->malformed_rate);
	}
}

void
reply_fault(reply *rp, const fault_decision *d)
{
	if (d->rate429)
		reply_error(rp, 429, "NetworkException", "Too many requests");
	else if (d->fail_code)
	{
		switch (d->fail_code)
		{
			case 502:
				reply_error(rp, 502, "DataException",
							"Couldn't parse the JSON response received from the exchange.");
				break;
			case 503:
				reply_error(rp, 503, "NetworkException", "Service unavailable.");
				break;
			case 504:
				reply_error(rp, 504, "NetworkException", "Gateway timeout.");
				break;
			default:
				reply_error(rp, d->fail_code, "GeneralException", "Internal server error.");
				break;
		}
	}
	else if (d->html)
	{
		int			code = g_faults.html_status ? g_faults.html_status : 502;
		const char *reason = MHD_get_reason_phrase_for((unsigned) code);
		char		page[512];
		int			n = snprintf(page, sizeof(page),
								 "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
								 "<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n"
								 "</body>\r\n</html>\r\n", code, reason, code, reason);

		reply_text(rp, code, "text/html", page, (size_t) n);
	}
	else if (d->error200)
		reply_error(rp, 200, "NetworkException", "Too many requests");
}

void
faults_apply_body(reply *rp, const fault_decision *d)
{
	if (d->truncate && rp->len > 1)
	{
		rp->len /= 2;
		rp->body[rp->len] = '\0';
	}
	else if (d->malformed && rp->len > 0)
	{
		char	   *colon = memchr(rp->body, ':', rp->len);

		if (colon)
			*colon = ' ';		/* {"status" "success",...}: no parser accepts
								 * it */
		else
			rp->body[0] = '<';
	}
}

void
faults_json(jbuf *j)
{
	const faults *f = &g_faults;

	j_obj(j);
	j_kint(j, "latency_ms", f->latency_ms);
	j_kint(j, "latency_jitter_ms", f->latency_jitter_ms);
	j_knum(j, "fail_rate", f->fail_rate);
	j_karr(j, "fail_codes");
	for (int i = 0; i < f->nfail_codes; i++)
		j_int(j, f->fail_codes[i]);
	j_end_arr(j);
	j_knum(j, "rate429", f->rate429);
	j_knum(j, "error200_rate", f->error200_rate);
	j_knum(j, "html_rate", f->html_rate);
	j_kint(j, "html_status", f->html_status);
	j_knum(j, "truncate_rate", f->truncate_rate);
	j_knum(j, "malformed_rate", f->malformed_rate);
	j_knum(j, "drop_rate", f->drop_rate);
	j_kint(j, "expire_token_after", f->expire_token_after);
	j_knum(j, "accept_drop_rate", f->accept_drop_rate);
	j_knum(j, "accept_late_rate", f->accept_late_rate);
	j_kint(j, "accept_late_ms", f->accept_late_ms);
	j_kbool(j, "margin_exception", f->margin_exception);
	j_kbool(j, "require_market_protection", f->require_market_protection);
	j_karr(j, "classes");
	for (int i = 0; i < EP_NCLASSES; i++)
		if (f->class_mask & (1u << i))
			j_str(j, ep_class_names[i]);
	j_end_arr(j);
	j_end_obj(j);
}

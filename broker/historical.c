/*
 * historical.c - GET /instruments/historical/{instrument_token}/{interval}:
 * historical candles from a deterministic random walk.
 *
 * The walk is a pure function of (--seed, instrument_token, day, minute),
 * so the same seed gives the same candles whatever range a request asks
 * for, and a range fetched in pieces equals the range fetched at once.
 * Each trading day (Monday to Friday, 09:15-15:30 IST, 375 minutes) moves
 * the log price by a day step; the day's minutes are a random walk bridged
 * so that the day's close is the next day's open.  Candles of 3..60
 * minutes and days aggregate the minute candles (first open, highest high,
 * lowest low, last close, summed volume, last oi).  Prices are rounded to
 * the instrument's tick size.  Days before 2000-01-01 and after now have
 * no candles.
 *
 * Kite's rules: `from` and `to` (yyyy-mm-dd hh:mm:ss IST, or yyyy-mm-dd)
 * are inclusive; a range longer than the interval's limit (minute 60 days,
 * 3/5/10 minute 100, 15/30 minute 200, 60 minute 400, day 2000;
 * --historical-max-days changes them) is an InputException; `oi=1` adds
 * open interest as a seventh element; `continuous=1` is for futures only:
 * without it a future has candles only in the 90 days up to its expiry,
 * with it the whole stitched series.  The rate class is `historical`
 * (3/s, --rate-historical).
 *
 * Every request reads only immutable instrument fields, so candles are
 * computed without g_lock; the statistics take it.
 */
#include "broker.h"
#include "http.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IST_OFFSET		19800
#define EPOCH_DAY		10957	/* 2000-01-01, days since 1970-01-01 */
#define SESSION_START	(9 * 60 + 15)	/* 09:15 IST, minutes */
#define SESSION_MINUTES	375		/* to 15:30 */
#define FUTURE_WINDOW	90		/* days a contract trades before expiry */

typedef struct interval_def
{
	const char *name;
	int			minutes;		/* 0 = day */
	long		max_days;
} interval_def;

static interval_def intervals[] = {
	{"minute", 1, 60}, {"3minute", 3, 100}, {"5minute", 5, 100},
	{"10minute", 10, 100}, {"15minute", 15, 200}, {"30minute", 30, 200},
	{"60minute", 60, 400}, {"day", 0, 2000},
};
#define NINTERVALS ((int) (sizeof(intervals) / sizeof(intervals[0])))

/* statistics of served requests (g_lock) */
static unsigned long served;
static double first_served,
			last_served;

int
historical_set_max_days(const char *spec, char *err, size_t errlen)
{
	char	   *copy = strdup(spec),
			   *tok,
			   *save = NULL;
	int			rc = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *eq = strchr(tok, '=');
		long		n;
		int			i;

		if (!eq || !parse_long(eq + 1, &n) || n < 1)
		{
			snprintf(err, errlen, "expected interval=days, got '%s'", tok);
			rc = -1;
			break;
		}
		*eq = '\0';
		for (i = 0; i < NINTERVALS; i++)
			if (strcmp(intervals[i].name, tok) == 0)
				break;
		if (i == NINTERVALS)
		{
			snprintf(err, errlen, "unknown interval '%s'", tok);
			rc = -1;
			break;
		}
		intervals[i].max_days = n;
	}
	free(copy);
	return rc;
}

void
historical_stats_json(jbuf *j)
{
	j_kobj(j, "historical");
	j_kint(j, "served", (long long) served);
	j_knum(j, "first_served", first_served);
	j_knum(j, "last_served", last_served);
	j_end_obj(j);
}

/* a standard normal from a hash of the key */
static double
hgauss(uint64_t key)
{
	uint64_t	a = mix64(key),
				b = mix64(a ^ 0x9e3779b97f4a7c15ULL);
	double		u = ((a >> 11) + 0.5) / 9007199254740992.0;
	double		v = (b >> 11) / 9007199254740992.0;

	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static uint64_t
key4(uint64_t seed, long token, long day, long k)
{
	return mix64(mix64(mix64(mix64(seed ^ 0x5bd1e995ULL) ^ (uint64_t) token) ^ (uint64_t) day) ^ (uint64_t) k);
}

static bool
trading_day(long day)
{
	int			wd = (int) ((day + 4) % 7); /* 1970-01-01 was a Thursday */

	return wd != 0 && wd != 6;
}

static double
day_step(long token, long day)
{
	return trading_day(day) ? 0.015 * hgauss(key4(g_cfg.seed, token, day, -1)) : 0;
}

typedef struct candle
{
	double		t;				/* epoch of the candle's start */
	double		o,
				h,
				l,
				c;
	long		v,
				oi;
} candle;

/* the 375 minute candles of a trading day whose open is exp(log_open) */
static void
day_minutes(const instrument *in, long day, double log_open, candle *m)
{
	double		x[SESSION_MINUTES + 1];
	double		step = day_step(in->token, day);
	double		p0 = exp(log_open);
	uint64_t	oi_base = mix64(g_cfg.seed ^ (uint64_t) in->token) % 9000000 + 1000000;

	x[0] = 0;
	for (int i = 1; i <= SESSION_MINUTES; i++)
		x[i] = x[i - 1] + 0.0008 * hgauss(key4(g_cfg.seed, in->token, day, i));
	for (int i = 0; i < SESSION_MINUTES; i++)
	{
		double		y0 = x[i] - (double) i / SESSION_MINUTES * (x[SESSION_MINUTES] - step);
		double		y1 = x[i + 1] - (double) (i + 1) / SESSION_MINUTES * (x[SESSION_MINUTES] - step);
		uint64_t	h = key4(g_cfg.seed, in->token, day, 1000 + i);
		double		o = market_round_tick(in, p0 * exp(y0));
		double		c = market_round_tick(in, p0 * exp(y1));
		double		wick = 0.0003 * fabs(hgauss(h));

		m[i].t = (double) day * 86400 - IST_OFFSET + (SESSION_START + i) * 60.0;
		m[i].o = o > 0 ? o : in->tick;
		m[i].c = c > 0 ? c : in->tick;
		m[i].h = market_round_tick(in, fmax(m[i].o, m[i].c) * (1 + wick));
		m[i].l = market_round_tick(in, fmin(m[i].o, m[i].c) * (1 - wick));
		if (m[i].l <= 0)
			m[i].l = fmin(m[i].o, m[i].c);
		m[i].v = 100 + (long) ((h >> 16) % 5000);
		m[i].oi = (long) oi_base + (long) ((day - EPOCH_DAY) % 1000) * 150 + i * 3;
	}
}

static void
emit(jbuf *j, const candle *c, bool day, bool oi)
{
	char		ts[40];
	char		d[16];

	fmt_ist_date(c->t, d, sizeof(d));
	if (day)
		snprintf(ts, sizeof(ts), "%sT00:00:00+0530", d);
	else
	{
		char		hm[16];

		fmt_ist_time(c->t, hm, sizeof(hm));
		snprintf(ts, sizeof(ts), "%sT%s+0530", d, hm);
	}
	j_arr(j);
	j_str(j, ts);
	j_num(j, c->o);
	j_num(j, c->h);
	j_num(j, c->l);
	j_num(j, c->c);
	j_int(j, c->v);
	if (oi)
		j_int(j, c->oi);
	j_end_arr(j);
}

static bool
flag_param(struct req *r, const char *name, bool *out, reply *rp)
{
	const char *v = req_param(r, name);

	*out = false;
	if (!v || !*v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		return true;
	if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
	{
		*out = true;
		return true;
	}
	reply_error(rp, 400, "InputException", "invalid value for a boolean parameter");
	return false;
}

void
h_historical(struct req *r, char **args, reply *rp)
{
	const interval_def *iv = NULL;
	const instrument *in;
	const char *tok = args[0];
	double		from,
				to,
				now = now_epoch();
	bool		oi,
				continuous;
	long		d0,
				d1;
	double		log_open;
	candle		m[SESSION_MINUTES];
	jbuf		b;
	char		msg[96];

	for (const char *p = tok; *p; p++)
		if (*p < '0' || *p > '9')
			tok = NULL;
	LOCK		();

	in = tok && *tok ? market_get(market_find(tok)) : NULL;
	UNLOCK();
	if (!in)
	{
		reply_error(rp, 400, "InputException", "invalid token");
		return;
	}
	for (int i = 0; i < NINTERVALS; i++)
		if (strcmp(intervals[i].name, args[1]) == 0)
			iv = &intervals[i];
	if (!iv)
	{
		reply_error(rp, 400, "InputException", "invalid interval");
		return;
	}
	if (!parse_ist(req_param(r, "from"), &from) || !parse_ist(req_param(r, "to"), &to)
		|| !strchr(req_param(r, "from"), '-') || !strchr(req_param(r, "to"), '-'))
	{
		reply_error(rp, 400, "InputException", "invalid from or to date (expected yyyy-mm-dd hh:mm:ss)");
		return;
	}
	if (!flag_param(r, "oi", &oi, rp) || !flag_param(r, "continuous", &continuous, rp))
		return;
	if (to < from)
	{
		reply_error(rp, 400, "InputException", "from date is after to date");
		return;
	}
	if (to - from > iv->max_days * 86400.0)
	{
		snprintf(msg, sizeof(msg), "interval exceeds max limit: %ld days", iv->max_days);
		reply_error(rp, 400, "InputException", msg);
		return;
	}
	if (continuous && strcmp(in->instrument_type, "FUT") != 0)
	{
		reply_error(rp, 400, "InputException", "continuous data is only available for futures");
		return;
	}

	d0 = (long) floor((from + IST_OFFSET) / 86400);
	d1 = (long) floor((fmin(to, now) + IST_OFFSET) / 86400);
	if (d0 < EPOCH_DAY)
		d0 = EPOCH_DAY;
	log_open = log(in->csv_price > 0 ? in->csv_price
				   : 50 + (double) (mix64(g_cfg.seed ^ mix64((uint64_t) in->token)) % 495000) / 100.0);
	for (long d = EPOCH_DAY; d < d0; d++)
		log_open += day_step(in->token, d);

	jb_init(&b);
	j_obj(&b);
	j_karr(&b, "candles");
	for (long d = d0; d <= d1; log_open += day_step(in->token, d), d++)
	{
		int			per = iv->minutes ? iv->minutes : SESSION_MINUTES;

		if (!trading_day(d))
			continue;
		if (strcmp(in->instrument_type, "FUT") == 0 && in->expiry > 0 && !continuous)
		{
			long		ed = (long) floor((in->expiry + IST_OFFSET) / 86400);

			if (d > ed || d < ed - FUTURE_WINDOW)
				continue;
		}
		day_minutes(in, d, log_open, m);
		for (int s = 0; s < SESSION_MINUTES; s += per)
		{
			candle		c = m[s];
			int			e = s + per < SESSION_MINUTES ? s + per : SESSION_MINUTES;
			double		t = iv->minutes ? m[s].t : (double) d * 86400 - IST_OFFSET;

			for (int k = s + 1; k < e; k++)
			{
				c.h = fmax(c.h, m[k].h);
				c.l = fmin(c.l, m[k].l);
				c.v += m[k].v;
			}
			c.c = m[e - 1].c;
			c.oi = m[e - 1].oi;
			c.t = t;
			if (t < from || t > to || t > now)
				continue;
			emit(&b, &c, iv->minutes == 0, oi);
		}
	}
	j_end_arr(&b);
	j_end_obj(&b);
	reply_success(rp, &b);

	LOCK		();

	if (served++ == 0)
		first_served = now;
	last_served = now;
	UNLOCK();
}

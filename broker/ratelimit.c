/*
 * ratelimit.c - Kite's per-API-key rate limits, enforced exactly.
 *
 * Each limit is a sliding window kept as a ring of the timestamps of the
 * requests it admitted: a request passes when every window of its class
 * has admitted fewer than `limit` requests in the last `span` seconds.
 * Classes and defaults (all configurable, 0 = unlimited): quote 1/s; order
 * placement 10/s, 200/min and 3000/day; historical candles 3/s; everything
 * else 10/s together.
 * Refused requests are not counted against the window; the caller answers
 * them with 429 NetworkException "Too many requests" and counts them.
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>

typedef struct window
{
	const char *name;
	long		limit;
	double		span;
	double	   *ts;				/* ring of admitted request times */
	long		head,
				count;
} window;

enum
{
	W_QUOTE_S, W_OTHER_S, W_ORDER_S, W_ORDER_MIN, W_ORDER_DAY, W_HIST_S, W_N
};

static window windows[W_N];

static void
window_init(window *w, const char *name, long limit, double span)
{
	free(w->ts);
	memset(w, 0, sizeof(*w));
	w->name = name;
	w->limit = limit > 0 ? limit : 0;
	w->span = span;
	if (w->limit)
		w->ts = calloc((size_t) w->limit, sizeof(double));
}

void
ratelimit_init(void)
{
	window_init(&windows[W_QUOTE_S], "quote/s", g_cfg.rl_quote_per_s, 1);
	window_init(&windows[W_OTHER_S], "other/s", g_cfg.rl_other_per_s, 1);
	window_init(&windows[W_ORDER_S], "order/s", g_cfg.rl_order_per_s, 1);
	window_init(&windows[W_ORDER_MIN], "order/min", g_cfg.rl_order_per_min, 60);
	window_init(&windows[W_ORDER_DAY], "order/day", g_cfg.rl_order_per_day, 86400);
	window_init(&windows[W_HIST_S], "historical/s", g_cfg.rl_historical_per_s, 1);
}

void
ratelimit_reset(void)
{
	ratelimit_init();
}

void
ratelimit_free(void)
{
	for (int i = 0; i < W_N; i++)
	{
		free(windows[i].ts);
		windows[i].ts = NULL;
	}
}

/* true when w has room now (drops expired entries first) */
static bool
window_room(window *w, double now)
{
	if (!w->limit)
		return true;
	while (w->count > 0 && w->ts[w->head] <= now - w->span)
	{
		w->head = (w->head + 1) % w->limit;
		w->count--;
	}
	return w->count < w->limit;
}

static void
window_add(window *w, double now)
{
	if (!w->limit)
		return;
	w->ts[(w->head + w->count) % w->limit] = now;
	w->count++;
}

bool
ratelimit_allow(enum rl_class c, const char **which)
{
	int			set[3],
				n = 0;
	double		now = now_epoch();

	switch (c)
	{
		case RL_QUOTE:
			set[n++] = W_QUOTE_S;
			break;
		case RL_ORDER:
			set[n++] = W_ORDER_S;
			set[n++] = W_ORDER_MIN;
			set[n++] = W_ORDER_DAY;
			break;
		case RL_HISTORICAL:
			set[n++] = W_HIST_S;
			break;
		default:
			set[n++] = W_OTHER_S;
			break;
	}
	for (int i = 0; i < n; i++)
		if (!window_room(&windows[set[i]], now))
		{
			*which = windows[set[i]].name;
			return false;
		}
	for (int i = 0; i < n; i++)
		window_add(&windows[set[i]], now);
	return true;
}

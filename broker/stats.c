/*
 * stats.c - counters behind GET /admin/stats.
 *
 * Counts Kite requests by endpoint class, route and HTTP status; 429s from
 * the rate limiter (per limit class) separately from injected ones; every
 * injected fault; authentication failures; requests without X-Kite-Version;
 * and connections: how many were opened and closed, requests per
 * connection, and the share of requests that reused a connection, so a
 * test can see whether a client keeps connections alive.  All functions
 * need g_lock.
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32
#define MAX_STATUS 600
#define RECENT_CLOSED 64

typedef struct route_count
{
	const char *route;
	unsigned long n;
} route_count;

static struct
{
	double		started;
	unsigned long requests;
	unsigned long by_ep[EP_NCLASSES];
	route_count routes[MAX_ROUTES];
	int			nroutes;
	unsigned long by_status[MAX_STATUS];
	unsigned long ratelimited[RL_NCLASSES];
	unsigned long inj_rate429,
				inj_fail,
				inj_html,
				inj_error200,
				inj_truncate,
				inj_malformed,
				inj_drop,
				inj_latency,
				inj_accept_drop,
				inj_accept_late;
	unsigned long auth_failures,
				missing_version;
	unsigned long conn_opened,
				conn_closed,
				conn_seq,
				reused,
				max_per_conn;
	struct conn recent[RECENT_CLOSED];
	int			nrecent,
				recent_head;
}			S;

static struct conn *live;		/* open connections (not reset) */

void
stats_reset(void)
{
	unsigned long seq = S.conn_seq;

	memset(&S, 0, sizeof(S));
	S.conn_seq = seq;
	S.started = now_epoch();
	for (struct conn *c = live; c; c = c->next)
		c->requests = 0;
}

void
stats_free(void)
{
	live = NULL;
}

void
stats_conn_open(struct conn *c)
{
	c->id = ++S.conn_seq;
	c->next = live;
	c->prev = NULL;
	if (live)
		live->prev = c;
	live = c;
	S.conn_opened++;
}

void
stats_conn_close(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (live == c)
		live = c->next;
	if (c->next)
		c->next->prev = c->prev;
	S.conn_closed++;
	S.recent[S.recent_head] = *c;
	S.recent_head = (S.recent_head + 1) % RECENT_CLOSED;
	if (S.nrecent < RECENT_CLOSED)
		S.nrecent++;
}

void
stats_request(struct conn *c, enum ep_class ep, const char *route)
{
	S.requests++;
	S.by_ep[ep]++;
	if (route)
	{
		int			i;

		for (i = 0; i < S.nroutes; i++)
			if (S.routes[i].route == route)
				break;
		if (i == S.nroutes && S.nroutes < MAX_ROUTES)
			S.routes[S.nroutes++].route = route;

		if (i < MAX_ROUTES)
			S.routes[i].n++;
	}
	if (c)
	{
		c->requests++;
		if (c->requests > 1)
			S.reused++;
		if (c->requests > S.max_per_conn)
			S.max_per_conn = c->requests;
	}
}

void
stats_status(int status)
{
	if (status >= 0 && status < MAX_STATUS)
		S.by_status[status]++;
}

void
stats_ratelimited(enum rl_class c)
{
	S.ratelimited[c]++;
}

void
stats_injected(const fault_decision *d)
{
	S.inj_rate429 += d->rate429;
	S.inj_fail += d->fail_code != 0;
	S.inj_html += d->html;
	S.inj_error200 += d->error200;
	S.inj_truncate += d->truncate;
	S.inj_malformed += d->malformed;
	S.inj_drop += d->drop;
	S.inj_accept_drop += d->accept_drop;
	S.inj_accept_late += d->accept_late_ms > 0;
	S.inj_latency += d->delay_ms > 0;
}

void
stats_auth_failure(void)
{
	S.auth_failures++;
}

void
stats_missing_version(void)
{
	S.missing_version++;
}

static void
conn_obj(jbuf *j, const struct conn *c)
{
	j_obj(j);
	j_kint(j, "id", (long long) c->id);
	j_kint(j, "requests", (long long) c->requests);
	j_end_obj(j);
}

void
stats_json(jbuf *j)
{
	unsigned long rl_total = 0;
	unsigned long active = 0;
	char		code[8];

	for (int i = 0; i < RL_NCLASSES; i++)
		rl_total += S.ratelimited[i];
	j_obj(j);
	j_knum(j, "uptime_s", now_epoch() - S.started);
	j_kint(j, "requests", (long long) S.requests);
	j_kobj(j, "by_class");
	for (int i = 0; i < EP_NCLASSES; i++)
		j_kint(j, ep_class_names[i], (long long) S.by_ep[i]);
	j_end_obj(j);
	j_kobj(j, "by_route");
	for (int i = 0; i < S.nroutes; i++)
		j_kint(j, S.routes[i].route, (long long) S.routes[i].n);
	j_end_obj(j);
	j_kobj(j, "by_status");
	for (int i = 0; i < MAX_STATUS; i++)
		if (S.by_status[i])
		{
			snprintf(code, sizeof(code), "%d", i);
			j_kint(j, code, (long long) S.by_status[i]);
		}
	j_end_obj(j);
	j_kobj(j, "rate_limited");
	j_kint(j, "total", (long long) rl_total);
	for (int i = 0; i < RL_NCLASSES; i++)
		j_kint(j, rl_class_names[i], (long long) S.ratelimited[i]);
	j_end_obj(j);
	historical_stats_json(j);
	j_kobj(j, "http_429");
	j_kint(j, "total", (long long) (rl_total + S.inj_rate429));
	j_kint(j, "rate_limit", (long long) rl_total);
	j_kint(j, "injected", (long long) S.inj_rate429);
	j_end_obj(j);
	j_kobj(j, "injected");
	j_kint(j, "rate429", (long long) S.inj_rate429);
	j_kint(j, "fail", (long long) S.inj_fail);
	j_kint(j, "html", (long long) S.inj_html);
	j_kint(j, "error200", (long long) S.inj_error200);
	j_kint(j, "truncate", (long long) S.inj_truncate);
	j_kint(j, "malformed", (long long) S.inj_malformed);
	j_kint(j, "drop", (long long) S.inj_drop);
	j_kint(j, "accept_drop", (long long) S.inj_accept_drop);
	j_kint(j, "accept_late", (long long) S.inj_accept_late);
	j_kint(j, "latency", (long long) S.inj_latency);
	j_end_obj(j);
	j_kint(j, "auth_failures", (long long) S.auth_failures);
	j_kint(j, "missing_version_header", (long long) S.missing_version);

	for (struct conn *c = live; c; c = c->next)
		active++;
	j_kobj(j, "connections");
	j_kint(j, "opened", (long long) S.conn_opened);
	j_kint(j, "closed", (long long) S.conn_closed);
	j_kint(j, "active", (long long) active);
	j_kint(j, "requests", (long long) S.requests);
	j_kint(j, "reused_requests", (long long) S.reused);
	j_knum(j, "reused_share", S.requests ? (double) S.reused / S.requests : 0);
	j_kint(j, "max_requests_per_connection", (long long) S.max_per_conn);
	j_karr(j, "open");
	for (struct conn *c = live; c; c = c->next)
		conn_obj(j, c);
	j_end_arr(j);
	j_karr(j, "recent_closed");
	for (int k = 0; k < S.nrecent; k++)
		conn_obj(j, &S.recent[(S.recent_head - 1 - k + RECENT_CLOSED) % RECENT_CLOSED]);
	j_end_arr(j);
	j_end_obj(j);

	j_kobj(j, "market");
	j_kint(j, "ticks", market_ticks());
	j_kint(j, "instruments", market_count());
	j_end_obj(j);
	j_kint(j, "orders", orders_count());
	j_end_obj(j);
}

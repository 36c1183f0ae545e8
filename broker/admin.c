/*
 * admin.c - the admin endpoint, on its own (loopback) port.
 *
 * Lets tests and demos observe and steer the broker:
 *   GET  /admin/stats          counters (stats.c)
 *   GET  /admin/faults         current fault settings
 *   POST /admin/faults         change them (form or query; reset=1 restores
 *                              the command-line settings first)
 *   POST /admin/token          expire=1 | expires_at=T | ttl=S |
 *                              access_token=X | expire_after=N
 *   POST /admin/request_token  mint a single-use request_token for login
 *   POST /admin/price          instrument=NSE:INFY (or token) & price=P:
 *                              set the last price and match orders
 *   POST /admin/tick           n=N: advance the random walk N steps
 *   POST /admin/freeze         instrument=NSE:NIFTY & quantity=N: the
 *                              exchange freeze quantity (0 = none); above
 *                              it an order is refused (OrderException)
 *   POST /admin/reset          everything back to the start-up state
 *   GET  /admin/health         liveness
 *   GET/POST /admin/ws         the WebSocket ticker: settings, faults, counters (ws.c)
 * Replies use the Kite envelope {"status":"success","data":...}.
 */
#include "broker.h"
#include "http.h"

#include <stdlib.h>
#include <string.h>

extern const char *const fault_param_names[];

static struct server *admin_srv;

#define MAX_ADMIN_TICKS 10000

static bool
is(struct req *r, const char *path)
{
	size_t		n = strlen(path);

	return strncmp(r->url, path, n) == 0 && (r->url[n] == '\0' || strcmp(r->url + n, "/") == 0);
}

static bool
writing(struct req *r)
{
	return strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0;
}

static void
admin_faults(struct req *r, reply *rp)
{
	jbuf		j;
	char		err[160];
	const char *v;
	faults		f;

	if (writing(r))
	{
		LOCK		();

		f = g_faults;
		if ((v = req_param(r, "reset")) && strcmp(v, "0") != 0)
			f = g_cfg.faults;
		for (int i = 0; fault_param_names[i]; i++)
		{
			if (strcmp(fault_param_names[i], "expire_token_after") == 0)
				continue;		/* applied last, to the live settings */
			if ((v = req_param(r, fault_param_names[i]))
				&& faults_set(&f, fault_param_names[i], v, err, sizeof(err)) != 0)
			{
				UNLOCK();
				reply_error(rp, 400, "InputException", err);
				return;
			}
		}
		g_faults = f;
		if ((v = req_param(r, "expire_token_after"))
			&& faults_set(&g_faults, "expire_token_after", v, err, sizeof(err)) != 0)
		{
			UNLOCK();
			reply_error(rp, 400, "InputException", err);
			return;
		}
		UNLOCK();
	}
	jb_init(&j);
	LOCK		();

	faults_json(&j);
	UNLOCK();
	reply_success(rp, &j);
}

static void
admin_price(struct req *r, reply *rp)
{
	const char *key = req_param(r, "instrument");
	const char *pv = req_param(r, "price");
	double		price;
	int			idx;
	jbuf		j;
	instrument *in;

	if (!key || !pv || !parse_double(pv, &price) || price <= 0)
	{
		reply_error(rp, 400, "InputException", "need instrument=EXCHANGE:SYMBOL and price>0");
		return;
	}
	LOCK		();

	idx = market_find(key);
	if (idx < 0)
	{
		UNLOCK();
		reply_error(rp, 400, "InputException", "unknown instrument");
		return;
	}
	market_set_price(idx, price);
	orders_match_all();
	in = market_get(idx);
	jb_init(&j);
	j_obj(&j);
	j_kstr(&j, "instrument", in->key);
	j_kint(&j, "instrument_token", in->token);
	j_knum(&j, "last_price", in->last);
	j_end_obj(&j);
	UNLOCK();
	reply_success(rp, &j);
}

static void
admin_tick(struct req *r, reply *rp)
{
	const char *v = req_param(r, "n");
	long		n = 1;
	jbuf		j;

	/*
	 * each step runs under the broker's lock: bounded, so that one call
	 * cannot stall every other request for long
	 */
	if (v && (!parse_long(v, &n) || n < 0 || n > MAX_ADMIN_TICKS))
	{
		reply_error(rp, 400, "InputException", "n must be 0..10000");
		return;
	}
	LOCK		();

	for (long i = 0; i < n; i++)
	{
		market_step();
		orders_match_all();
	}
	jb_init(&j);
	j_obj(&j);
	j_kint(&j, "ticks", market_ticks());
	j_end_obj(&j);
	UNLOCK();
	reply_success(rp, &j);
}

/* constant-time comparison with --admin-token */
static bool
admin_token_ok(const char *given)
{
	size_t		n = strlen(g_cfg.admin_token);
	unsigned char diff = 0;

	if (given == NULL || strlen(given) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) (given[i] ^ g_cfg.admin_token[i]);
	return diff == 0;
}

static enum MHD_Result
admin_dispatch(struct req *r)
{
	reply		rp = {0};
	jbuf		j;

	if (g_cfg.admin_token && *g_cfg.admin_token && !is(r, "/admin/health") &&
		!admin_token_ok(req_header(r, "X-Admin-Token")))
	{
		reply_error(&rp, 403, "PermissionException", "Missing or wrong X-Admin-Token.");
		return server_send(r, &rp);
	}
	if (is(r, "/admin/stats") || is(r, "/admin/health"))
	{
		jb_init(&j);
		LOCK		();

		if (is(r, "/admin/stats"))
			stats_json(&j);
		else
			j_str(&j, "ok");
		UNLOCK();
		reply_success(&rp, &j);
	}
	else if (is(r, "/admin/faults"))
		admin_faults(r, &rp);
	else if (is(r, "/admin/ws"))
		ws_admin(r, &rp);
	else if (!writing(r) && !is(r, "/admin/token"))
		reply_error(&rp, 405, "InputException", "use POST");
	else if (is(r, "/admin/token"))
	{
		jb_init(&j);
		LOCK		();

		auth_admin_token(r, &j);
		UNLOCK();
		reply_success(&rp, &j);
	}
	else if (is(r, "/admin/request_token"))
	{
		char	   *t;

		LOCK		();

		t = auth_mint_request_token();
		UNLOCK();
		jb_init(&j);
		j_obj(&j);
		j_kstr(&j, "request_token", t);
		j_end_obj(&j);
		free(t);
		reply_success(&rp, &j);
	}
	else if (is(r, "/admin/price"))
		admin_price(r, &rp);
	else if (is(r, "/admin/tick"))
		admin_tick(r, &rp);
	else if (is(r, "/admin/freeze"))
	{
		const char *inst = req_param(r, "instrument");
		const char *q = req_param(r, "quantity");
		long		n;
		int			rc = -1;

		if (inst && q && parse_long(q, &n) && n >= 0)
		{
			LOCK		();

			rc = orders_set_freeze(inst, n);
			UNLOCK();
		}
		if (rc != 0)
			reply_error(&rp, 400, "InputException", "Give instrument=EXCHANGE:SYMBOL and quantity=N >= 0.");
		else
		{
			jb_init(&j);
			j_bool(&j, true);
			reply_success(&rp, &j);
		}
	}
	else if (is(r, "/admin/reset"))
	{
		LOCK		();

		broker_reset_all();
		UNLOCK();
		jb_init(&j);
		j_bool(&j, true);
		reply_success(&rp, &j);
	}
	else
		reply_error(&rp, 404, "GeneralException", "Route not found");
	return server_send(r, &rp);
}

int
admin_start(void)
{
	struct server_opts o = {
		.host = g_cfg.admin_bind,.port = g_cfg.admin_port,.tls_cert = NULL,
		.tls_key = NULL,.threads = 1,.idle_timeout = 30,.admin = true,
		.dispatch = admin_dispatch
	};

	return server_start(&o, &admin_srv);
}

void
admin_stop(void)
{
	server_stop(admin_srv);
	admin_srv = NULL;
}

unsigned
admin_port(void)
{
	return server_port(admin_srv);
}

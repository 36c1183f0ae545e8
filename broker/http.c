/*
 * http.c - the HTTP(S) server of the paper broker, built on libmicrohttpd.
 *
 * Owns the request lifecycle shared by the Kite API daemon and the admin
 * daemon (form/query parameters, per-connection accounting, request log,
 * reply helpers), the Kite route table, and the order in which a Kite
 * request meets the simulated world: connection drop, latency, injected
 * errors, routing (404/405), rate limits (429), authentication (403), the
 * endpoint handler, then body corruption faults.
 *
 * The API daemon runs one thread per connection (or a thread pool with
 * --threads N) so that injected latency delays only its own connection.
 */
#include "broker.h"
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const ep_class_names[EP_NCLASSES] = {
	"session", "user", "portfolio", "orders", "order_write", "quote", "instruments", "unknown",
	"historical"
};
const char *const rl_class_names[RL_NCLASSES] = {"quote", "order", "other", "historical"};

typedef void (*handler_fn) (struct req *r, char **args, reply *rp);

typedef struct route
{
	const char *method;
	const char *pattern;		/* "{}" matches one path segment */
	const char *name;			/* "METHOD pattern", for stats */
	enum ep_class ep;
	enum rl_class rl;
	bool		auth;
	handler_fn	fn;
} route;

static const route routes[] = {
	{"POST", "/session/token", "POST /session/token", EP_SESSION, RL_OTHER, false, h_login},
	{"DELETE", "/session/token", "DELETE /session/token", EP_SESSION, RL_OTHER, false, h_logout},
	{"GET", "/user/profile", "GET /user/profile", EP_USER, RL_OTHER, true, h_profile},
	{"GET", "/user/margins", "GET /user/margins", EP_USER, RL_OTHER, true, h_margins},
	{"GET", "/user/margins/{}", "GET /user/margins/{}", EP_USER, RL_OTHER, true, h_margins_segment},
	{"GET", "/portfolio/positions", "GET /portfolio/positions", EP_PORTFOLIO, RL_OTHER, true, h_positions},
	{"GET", "/portfolio/holdings", "GET /portfolio/holdings", EP_PORTFOLIO, RL_OTHER, true, h_holdings},
	{"GET", "/orders", "GET /orders", EP_ORDERS, RL_OTHER, true, h_orders},
	{"GET", "/orders/{}", "GET /orders/{}", EP_ORDERS, RL_OTHER, true, h_order_history},
	{"GET", "/orders/{}/trades", "GET /orders/{}/trades", EP_ORDERS, RL_OTHER, true, h_order_trades},
	{"GET", "/trades", "GET /trades", EP_ORDERS, RL_OTHER, true, h_trades},
	{"POST", "/orders/{}", "POST /orders/{}", EP_ORDER_WRITE, RL_ORDER, true, h_place},
	{"PUT", "/orders/{}/{}", "PUT /orders/{}/{}", EP_ORDER_WRITE, RL_OTHER, true, h_modify},
	{"DELETE", "/orders/{}/{}", "DELETE /orders/{}/{}", EP_ORDER_WRITE, RL_OTHER, true, h_cancel},
	{"GET", "/quote", "GET /quote", EP_QUOTE, RL_QUOTE, true, h_quote},
	{"GET", "/quote/ltp", "GET /quote/ltp", EP_QUOTE, RL_QUOTE, true, h_quote_ltp},
	{"GET", "/quote/ohlc", "GET /quote/ohlc", EP_QUOTE, RL_QUOTE, true, h_quote_ohlc},
	{"GET", "/instruments", "GET /instruments", EP_INSTRUMENTS, RL_OTHER, false, h_instruments},
	{"GET", "/instruments/{}", "GET /instruments/{}", EP_INSTRUMENTS, RL_OTHER, false, h_instruments},
	{"GET", "/instruments/historical/{}/{}", "GET /instruments/historical/{}/{}", EP_HISTORICAL, RL_HISTORICAL, true, h_historical},
};

struct server
{
	struct MHD_Daemon *d;
	bool		admin;
	server_dispatch dispatch;
	unsigned	port;
	char	   *cert,
			   *key;
};

static struct server *api_srv;

/* ------------------------------------------------------------------ */
/* reply helpers                                                        */

void
reply_json(reply *rp, int status, jbuf *j)
{
	rp->status = status;
	rp->body = jb_steal(j, &rp->len);
	rp->ctype = "application/json";
	rp->is_json = true;
}

void
reply_success(reply *rp, jbuf *data)
{
	jbuf		j;

	jb_init(&j);
	jb_printf(&j, "{\"status\":\"success\",\"data\":");
	jb_raw(&j, data->buf, data->len);
	jb_raw(&j, "}", 1);
	jb_free(data);
	reply_json(rp, 200, &j);
}

void
reply_error(reply *rp, int status, const char *type, const char *msg)
{
	jbuf		j;

	jb_init(&j);
	j_obj(&j);
	j_kstr(&j, "status", "error");
	j_kstr(&j, "message", msg);
	j_kstr(&j, "error_type", type);
	j_knull(&j, "data");
	j_end_obj(&j);
	free(rp->body);
	reply_json(rp, status, &j);
}

void
reply_text(reply *rp, int status, const char *ctype, const char *text, size_t len)
{
	free(rp->body);
	rp->status = status;
	rp->body = malloc(len + 1);
	if (!rp->body)
		abort();
	memcpy(rp->body, text, len);
	rp->body[len] = '\0';
	rp->len = len;
	rp->ctype = ctype;
	rp->is_json = false;
}

/* ------------------------------------------------------------------ */
/* parameters                                                           */

const char *
req_param(struct req *r, const char *key)
{
	for (int i = 0; i < r->nform; i++)
		if (strcmp(r->form[i].k, key) == 0)
			return r->form[i].v;
	return MHD_lookup_connection_value(r->mc, MHD_GET_ARGUMENT_KIND, key);
}

const char *
req_header(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, name);
}

struct collect
{
	const char *key;
	const char **out;
	int			n,
				max;
};

static enum MHD_Result
collect_it(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
	struct collect *c = cls;

	(void) kind;
	if (v && strcmp(k, c->key) == 0 && c->n < c->max)
		c->out[c->n++] = v;
	return MHD_YES;
}

int
req_param_all(struct req *r, const char *key, const char **out, int max)
{
	struct collect c = {key, out, 0, max};

	for (int i = 0; i < r->nform && c.n < max; i++)
		if (strcmp(r->form[i].k, key) == 0)
			out[c.n++] = r->form[i].v;
	MHD_get_connection_values(r->mc, MHD_GET_ARGUMENT_KIND, collect_it, &c);
	return c.n;
}

static enum MHD_Result
post_it(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
		const char *ctype, const char *enc, const char *data, uint64_t off, size_t size)
{
	struct req *r = cls;
	struct kv  *last;

	(void) kind;
	(void) filename;
	(void) ctype;
	(void) enc;
	if (!key)
		return MHD_YES;
	last = r->nform ? &r->form[r->nform - 1] : NULL;
	if (off > 0 && last && strcmp(last->k, key) == 0)
	{
		size_t		old = strlen(last->v);

		last->v = realloc(last->v, old + size + 1);
		if (!last->v)
			abort();
		memcpy(last->v + old, data, size);
		last->v[old + size] = '\0';
		return MHD_YES;
	}
	r->form = grow_array(r->form, r->nform, &r->capform, sizeof(struct kv), 8);
	r->form[r->nform].k = strdup(key);
	r->form[r->nform].v = malloc(size + 1);
	if (!r->form[r->nform].k || !r->form[r->nform].v)
		abort();
	memcpy(r->form[r->nform].v, data, size);
	r->form[r->nform].v[size] = '\0';
	r->nform++;
	return MHD_YES;
}

static void
req_free(struct req *r)
{
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	for (int i = 0; i < r->nform; i++)
	{
		free(r->form[i].k);
		free(r->form[i].v);
	}
	free(r->form);
	free(r->url);
	free(r);
}

/* ------------------------------------------------------------------ */
/* routing                                                              */

/* match path against pattern; copies "{}" segments into args (max 3) */
static bool
path_match(const char *pattern, const char *path, char args[][128], int *nargs)
{
	const char *p = pattern,
			   *s = path;

	*nargs = 0;
	while (*p && *s)
	{
		if (p[0] == '{' && p[1] == '}')
		{
			size_t		n = strcspn(s, "/");

			if (n == 0 || n >= 128 || *nargs >= 3)
				return false;
			memcpy(args[*nargs], s, n);
			args[*nargs][n] = '\0';
			(*nargs)++;
			s += n;
			p += 2;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *p == '\0' && *s == '\0';
}

static const route *
route_find(const char *method, const char *path, char args[][128], bool *path_known)
{
	int			n;

	*path_known = false;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
	{
		if (!path_match(routes[i].pattern, path, args, &n))
			continue;
		*path_known = true;
		if (strcmp(routes[i].method, method) == 0)
			return &routes[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the Kite API request pipeline                                        */

static enum MHD_Result
api_dispatch(struct req *r)
{
	char		argbuf[3][128];
	char	   *args[3] = {argbuf[0], argbuf[1], argbuf[2]};
	char		path[512];
	bool		known;
	const route *rt;
	fault_decision fd;
	reply		rp = {0};
	const char *ver = req_header(r, "X-Kite-Version");
	enum ep_class ep;

	snprintf(path, sizeof(path), "%s", r->url);
	for (size_t n = strlen(path); n > 1 && path[n - 1] == '/'; n--)
		path[n - 1] = '\0';
	rt = route_find(r->method, path, argbuf, &known);
	ep = rt ? rt->ep : EP_UNKNOWN;
	r->route = rt ? rt->pattern : (known ? "(method)" : "(none)");

	LOCK		();

	stats_request(r->conn, ep, rt ? rt->name : NULL);
	if (!ver)
		stats_missing_version();
	faults_decide(ep, &fd);
	stats_injected(&fd);
	UNLOCK();

	if (fd.drop)
	{
		r->status = 0;
		r->note = "dropped";
		return MHD_NO;			/* MHD closes the socket without a reply */
	}
	if (fd.delay_ms > 0)
		usleep((useconds_t) fd.delay_ms * 1000);

	if (fd.rate429 || fd.fail_code || fd.html || fd.error200)
	{
		reply_fault(&rp, &fd);
		r->note = "injected";
	}
	else if (!rt && known)
		reply_error(&rp, 405, "InputException", "Method not allowed");
	else if (!rt)
		reply_error(&rp, 404, "GeneralException", "Route not found");
	else if (g_cfg.require_version && (!ver || strcmp(ver, "3") != 0))
		reply_error(&rp, 400, "InputException", "Missing or invalid X-Kite-Version header");
	else
	{
		const char *which = NULL;
		bool		ok;

		LOCK		();

		ok = ratelimit_allow(rt->rl, &which);
		if (!ok)
			stats_ratelimited(rt->rl);
		UNLOCK();
		if (!ok)
		{
			reply_error(&rp, 429, "NetworkException", "Too many requests");
			r->note = which;
		}
		else if (!rt->auth || auth_check(r, &rp))
			rt->fn(r, args, &rp);
		else
			r->note = "auth";
	}
	if (!rp.body)
		reply_error(&rp, 500, "GeneralException", "Internal error");
	if (fd.accept_drop)
	{
		free(rp.body);
		r->status = 0;
		r->note = "accepted, dropped";
		return MHD_NO;
	}
	if (fd.accept_late_ms > 0)
	{
		r->note = "accepted, late";
		usleep((useconds_t) fd.accept_late_ms * 1000);
	}
	faults_apply_body(&rp, &fd);
	return server_send(r, &rp);
}

enum MHD_Result
server_send(struct req *r, reply *rp)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	r->status = rp->status;
	LOCK		();

	if (!r->admin)
		stats_status(rp->status);
	UNLOCK();
	resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
	{
		free(rp->body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rp->ctype);
	ret = MHD_queue_response(r->mc, (unsigned) rp->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ------------------------------------------------------------------ */
/* MHD callbacks                                                        */

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
		  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct server *srv = cls;
	struct req *r = *con_cls;

	(void) version;
	if (!r)
	{
		const union MHD_ConnectionInfo *ci;

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->mc = mc;
		r->admin = srv->admin;
		r->t0 = now_epoch();
		r->url = strdup(url);
		snprintf(r->method, sizeof(r->method), "%s", method);
		ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->conn = ci ? ci->socket_context : NULL;
		if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
			|| strcmp(method, "DELETE") == 0)
			r->pp = MHD_create_post_processor(mc, 16384, post_it, r);
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size)
	{
		r->body_bytes += *upload_size;
		if (r->body_bytes > MAX_REQUEST_BODY)
			r->body_too_large = true;	/* the rest is read and dropped */
		else if (r->pp)
			MHD_post_process(r->pp, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->body_too_large)
	{
		reply		rp = {0};

		reply_error(&rp, 413, "InputException", "Request body too large.");
		return server_send(r, &rp);
	}
	return srv->dispatch(r);
}

static void
on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;

	(void) cls;
	(void) mc;
	if (!r)
		return;
	if (!g_cfg.quiet && g_log)
	{
		char		ts[32];
		double		t = now_epoch();
		struct conn *c = r->conn;

		fmt_ist(t, ts, sizeof(ts));
		log_line("%s %s conn=%lu req=%lu %s %s %d %.3fms%s%s%s\n",
				 ts, r->admin ? "admin" : "api",
				 c ? c->id : 0, c ? c->requests : 0,
				 r->method, r->url, r->status, (t - r->t0) * 1000.0,
				 r->note ? " (" : "", r->note ? r->note : "", r->note ? ")" : "");
		if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status)
			log_line("%s conn=%lu request terminated early (code %d)\n",
					 ts, c ? c->id : 0, (int) toe);
	}
	req_free(r);
	*con_cls = NULL;
}

static void
on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct server *srv = cls;
	struct conn *c;

	(void) mc;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		c = calloc(1, sizeof(*c));
		if (!c)
			return;
		c->opened = now_epoch();
		LOCK		();

		if (!srv->admin)
			stats_conn_open(c);
		UNLOCK();
		*socket_context = c;
	}
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
	{
		c = *socket_context;
		if (!c)
			return;
		LOCK		();

		if (!srv->admin)
			stats_conn_close(c);
		UNLOCK();
		free(c);
		*socket_context = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* daemon start/stop                                                    */

static bool
make_addr(const char *host, long port, struct sockaddr_storage *ss, bool *v6)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':'))
	{
		struct sockaddr_in6 *a = (struct sockaddr_in6 *) ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t) port);
		*v6 = true;
		return inet_pton(AF_INET6, host, &a->sin6_addr) == 1;
	}
	else
	{
		struct sockaddr_in *a = (struct sockaddr_in *) ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t) port);
		*v6 = false;
		if (strcmp(host, "localhost") == 0)
			host = "127.0.0.1";
		return inet_pton(AF_INET, host, &a->sin_addr) == 1;
	}
}

int
server_start(struct server_opts *o, struct server **out)
{
	struct sockaddr_storage ss;
	bool		v6;
	unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
	struct server *srv = calloc(1, sizeof(*srv));
	const union MHD_DaemonInfo *di;
	struct MHD_OptionItem opts[16];
	int			n = 0;

	if (!srv)
		return -1;
	if (!make_addr(o->host, o->port, &ss, &v6))
	{
		fprintf(stderr, "paper-broker: bad bind address '%s'\n", o->host);
		goto fail;
	}
	srv->admin = o->admin;
	srv->dispatch = o->dispatch ? o->dispatch : api_dispatch;
	if (v6)
		flags |= MHD_USE_IPv6;
	if (o->threads <= 0)
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	else
	{
		flags |= MHD_USE_EPOLL;
		if (o->threads > 1)
			opts[n++] = (struct MHD_OptionItem)
		{
			MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL
		};
	}
	if (o->tls_cert)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		{
			fprintf(stderr, "paper-broker: this libmicrohttpd has no TLS support\n");
			goto fail;
		}
		srv->cert = read_file(o->tls_cert, NULL);
		srv->key = read_file(o->tls_key, NULL);
		if (!srv->cert || !srv->key)
		{
			fprintf(stderr, "paper-broker: cannot read --tls-cert/--tls-key\n");
			goto fail;
		}
		flags |= MHD_USE_TLS;
		opts[n++] = (struct MHD_OptionItem)
		{
			MHD_OPTION_HTTPS_MEM_CERT, 0, srv->cert
		};
		opts[n++] = (struct MHD_OptionItem)
		{
			MHD_OPTION_HTTPS_MEM_KEY, 0, srv->key
		};
	}
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_SOCK_ADDR, 0, &ss
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout, NULL
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_CONNECTION_LIMIT, 1000, NULL
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) on_completed, NULL
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) on_connection, srv
	};
	opts[n++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_END, 0, NULL
	};

	srv->d = MHD_start_daemon(flags, (uint16_t) o->port, NULL, NULL, on_access, srv,
							  MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!srv->d)
	{
		fprintf(stderr, "paper-broker: cannot listen on %s:%ld\n", o->host, o->port);
		goto fail;
	}
	di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : (unsigned) o->port;
	*out = srv;
	return 0;
fail:
	free(srv->cert);
	free(srv->key);
	free(srv);
	return -1;
}

unsigned
server_port(struct server *srv)
{
	return srv ? srv->port : 0;
}

void
server_stop(struct server *srv)
{
	if (!srv)
		return;
	if (srv->d)
		MHD_stop_daemon(srv->d);
	srv->d = NULL;
	free(srv->cert);
	free(srv->key);
	free(srv);
}

int
http_start(void)
{
	struct server_opts o = {
		.host = g_cfg.bind,.port = g_cfg.port,.tls_cert = g_cfg.tls_cert,
		.tls_key = g_cfg.tls_key,.threads = g_cfg.threads,
		.idle_timeout = g_cfg.idle_timeout,.admin = false,.dispatch = NULL
	};

	return server_start(&o, &api_srv);
}

void
http_stop(void)
{
	server_stop(api_srv);
	api_srv = NULL;
}

unsigned
http_port(void)
{
	return server_port(api_srv);
}

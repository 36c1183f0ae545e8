/*
 * broker.h - shared declarations of the paper broker.
 *
 * The paper broker is a standalone HTTP(S) server that imitates Zerodha's
 * Kite Connect v3 REST API: it simulates a market, keeps orders, trades,
 * positions and margins, enforces Kite's rate limits and can inject faults.
 * Every module includes this header; all mutable simulation state is guarded
 * by the single global mutex g_lock (see main.c).
 */
#ifndef PAPER_BROKER_H
#define PAPER_BROKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define PB_VERSION "1.0"

/* ---- json.c: a small JSON writer with correct string escaping ---- */
#define JSON_MAX_DEPTH 32
typedef struct jbuf
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	int			depth;
	bool		first[JSON_MAX_DEPTH];	/* no element written yet at depth */
	bool		after_key;
} jbuf;

void		jb_init(jbuf *j);
void		jb_free(jbuf *j);
char	   *jb_steal(jbuf *j, size_t *len);
void		jb_raw(jbuf *j, const char *s, size_t n);
void		jb_printf(jbuf *j, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		j_obj(jbuf *j);
void		j_end_obj(jbuf *j);
void		j_arr(jbuf *j);
void		j_end_arr(jbuf *j);
void		j_key(jbuf *j, const char *k);
void		j_str(jbuf *j, const char *s);
void		j_num(jbuf *j, double v);
void		j_int(jbuf *j, long long v);
void		j_bool(jbuf *j, bool b);
void		j_null(jbuf *j);
void		j_kstr(jbuf *j, const char *k, const char *s);
void		j_kstrn(jbuf *j, const char *k, const char *s); /* NULL or "" -> null */
void		j_knum(jbuf *j, const char *k, double v);
void		j_kint(jbuf *j, const char *k, long long v);
void		j_kbool(jbuf *j, const char *k, bool b);
void		j_knull(jbuf *j, const char *k);
void		j_kobj(jbuf *j, const char *k);
void		j_karr(jbuf *j, const char *k);
void		j_empty_obj(jbuf *j, const char *k);

/* ---- util.c ---- */
double		now_epoch(void);
void		fmt_ist(double t, char *out, size_t n); /* yyyy-mm-dd hh:mm:ss */
void		fmt_ist_time(double t, char *out, size_t n);	/* hh:mm:ss */
void		fmt_ist_date(double t, char *out, size_t n);	/* yyyy-mm-dd */
bool		parse_ist(const char *s, double *out);	/* IST text or epoch */
double		next_ist_0600(double t);
uint64_t	mix64(uint64_t x);
typedef struct rng
{
	uint64_t	s;
} rng;
void		rng_seed(rng *r, uint64_t seed);
uint64_t	rng_next(rng *r);
double		rng_uniform(rng *r);	/* [0,1) */
double		rng_gauss(rng *r);
bool		parse_double(const char *s, double *out);

/* Room for element n of a growable array of elem-size items: doubles *cap
 * (starting at initial) when n == *cap; aborts when out of memory. */
void	   *grow_array(void *arr, int n, int *cap, size_t elem, int initial);
bool		parse_long(const char *s, long *out);
char	   *read_file(const char *path, size_t *len);
void		sha256_hex(const char *s, char out[65]);
void		random_token(rng *r, char *out, size_t len);

/* ---- request / reply plumbing (http.c) ---- */
enum rl_class
{
	RL_QUOTE = 0,
	RL_ORDER,
	RL_OTHER,
	RL_HISTORICAL,
	RL_NCLASSES
};

enum ep_class					/* endpoint class, for stats and fault scoping */
{
	EP_SESSION = 0,
	EP_USER,
	EP_PORTFOLIO,
	EP_ORDERS,					/* order reads: /orders, /trades */
	EP_ORDER_WRITE,				/* place, modify, cancel */
	EP_QUOTE,
	EP_INSTRUMENTS,
	EP_UNKNOWN,
	EP_HISTORICAL,
	EP_NCLASSES
};
extern const char *const ep_class_names[EP_NCLASSES];
extern const char *const rl_class_names[RL_NCLASSES];

struct conn;
struct req;

typedef struct reply
{
	int			status;
	char	   *body;
	size_t		len;
	const char *ctype;			/* static string */
	bool		is_json;
} reply;

void		reply_json(reply *rp, int status, jbuf *j); /* takes j's buffer */
void		reply_success(reply *rp, jbuf *data);	/* wraps data in envelope */
void		reply_error(reply *rp, int status, const char *type, const char *msg);
void		reply_text(reply *rp, int status, const char *ctype, const char *text, size_t len);

const char *req_param(struct req *r, const char *key);
int			req_param_all(struct req *r, const char *key, const char **out, int max);
const char *req_header(struct req *r, const char *name);

int			http_start(void);
void		http_stop(void);
unsigned	http_port(void);

/* ---- auth.c ---- */
void		auth_init(void);
void		auth_reset(void);
void		auth_free(void);
bool		auth_check(struct req *r, reply *rp);	/* false: rp holds the 403 */
void		h_login(struct req *r, char **args, reply *rp);
void		h_logout(struct req *r, char **args, reply *rp);
void		h_profile(struct req *r, char **args, reply *rp);
char	   *auth_mint_request_token(void);	/* caller frees; needs g_lock */
void		auth_admin_token(struct req *r, jbuf *out); /* needs g_lock */
void		auth_arm_expiry(long n);	/* needs g_lock */
bool		auth_token_ok(const char *api_key, const char *access_token);	/* needs g_lock */

/* ---- market.c ---- */
typedef struct instrument
{
	long		token;
	char		exchange[16];
	char		segment[24];
	char		tradingsymbol[64];
	char		key[88];		/* EXCHANGE:TRADINGSYMBOL */
	double		tick;
	double		csv_price;		/* last_price column, 0 = derive from seed */
	double		last,
				open,
				high,
				low,
				close;
	double		avg_traded;
	long		volume;
	long		last_qty;
	double		last_trade_time;
	bool		tradable;
	long		freeze_qty;		/* exchange freeze quantity, 0 = none */
	char		instrument_type[8]; /* EQ, FUT, CE, PE, ... ('' if absent) */
	double		expiry;			/* epoch of the expiry date, 0 = none */
	char	   *csv_line;		/* original CSV row */
} instrument;

int			market_load(const char *path, char *err, size_t errlen);
void		market_reset(void);
void		market_free(void);
int			market_find(const char *key);	/* EXCHANGE:SYMBOL or token; -1 */
int			market_find_token(long token);	/* -1 when unknown */
int			market_find2(const char *exchange, const char *symbol);
instrument *market_get(int idx);
int			market_count(void);
void		market_step(void);	/* one random-walk tick; needs g_lock */
void		market_set_price(int idx, double price);	/* needs g_lock */
double		market_round_tick(const instrument *in, double p);

/* level k (0-4) of the synthetic depth; sign -1 = buy, 1 = sell; needs g_lock */
void		market_depth_level(const instrument *in, int sign, int k, double *price,
							   long *qty, int *orders);
int			market_start_ticker(void);
void		market_stop_ticker(void);
long		market_ticks(void);
void		h_quote(struct req *r, char **args, reply *rp);
void		h_quote_ltp(struct req *r, char **args, reply *rp);
void		h_quote_ohlc(struct req *r, char **args, reply *rp);
void		h_instruments(struct req *r, char **args, reply *rp);

/* ---- historical.c ---- */
int			historical_set_max_days(const char *spec, char *err, size_t errlen);
void		h_historical(struct req *r, char **args, reply *rp);
void		historical_stats_json(jbuf *j); /* needs g_lock */

/* ---- orders.c ---- */
void		orders_reset(void);
void		orders_match_all(void); /* after a price change; needs g_lock */
void		h_orders(struct req *r, char **args, reply *rp);
void		h_order_history(struct req *r, char **args, reply *rp);
void		h_order_trades(struct req *r, char **args, reply *rp);
void		h_trades(struct req *r, char **args, reply *rp);
void		h_place(struct req *r, char **args, reply *rp);
void		h_modify(struct req *r, char **args, reply *rp);
void		h_cancel(struct req *r, char **args, reply *rp);
int			orders_count(void);
int			orders_set_freeze(const char *key, long qty);	/* needs g_lock */

/* ---- portfolio.c ---- */
typedef struct position
{
	int			inst;
	char		product[8];
	long		buy_qty,
				sell_qty;
	double		buy_value,
				sell_value;
	long		net_qty;
	double		avg_cost;
	double		realised;
} position;

void		portfolio_reset(void);
void		portfolio_free(void);
void		portfolio_fill(int inst, const char *product, bool buy, long qty, double price);
bool		portfolio_margin_ok(int inst, const char *product, bool buy, long qty,
								double price, char *msg, size_t msglen);
void		portfolio_add_holding(int inst, long qty, double avg);
void		h_positions(struct req *r, char **args, reply *rp);
void		h_holdings(struct req *r, char **args, reply *rp);
void		h_margins(struct req *r, char **args, reply *rp);
void		h_margins_segment(struct req *r, char **args, reply *rp);

/* ---- ratelimit.c ---- */
void		ratelimit_init(void);
void		ratelimit_reset(void);
void		ratelimit_free(void);
bool		ratelimit_allow(enum rl_class c, const char **which);	/* needs g_lock */

/* ---- faults.c ---- */
typedef struct faults
{
	long		latency_ms;
	long		latency_jitter_ms;
	double		fail_rate;
	int			fail_codes[8];
	int			nfail_codes;
	double		rate429;
	double		error200_rate;
	double		html_rate;
	int			html_status;
	double		truncate_rate;
	double		malformed_rate;
	double		drop_rate;
	long		expire_token_after; /* authenticated requests; 0 = off */
	unsigned	class_mask;		/* bit per ep_class; faults apply there */
	/* faults after the request was carried out (orders: it exists) */
	double		accept_drop_rate;	/* then close without answering */
	double		accept_late_rate;	/* then answer after accept_late_ms */
	long		accept_late_ms;
	bool		margin_exception;	/* beyond the margin: MarginException */
	bool		require_market_protection;	/* MARKET/SL-M need it (not 0) */
} faults;

typedef struct fault_decision
{
	long		delay_ms;
	int			fail_code;
	bool		rate429,
				error200,
				html,
				truncate,
				malformed,
				drop;
	bool		accept_drop;	/* carry it out, then drop the connection */
	long		accept_late_ms; /* carry it out, then answer this late */
} fault_decision;

int			faults_set(faults *f, const char *name, const char *value, char *err, size_t errlen);
void		faults_decide(enum ep_class c, fault_decision *d);	/* needs g_lock */
void		faults_json(jbuf *j);
void		faults_reset(void); /* needs g_lock */
void		faults_apply_body(reply *rp, const fault_decision *d);
void		reply_fault(reply *rp, const fault_decision *d);

/* ---- stats.c ---- */
void		stats_reset(void);
void		stats_conn_open(struct conn *c);
void		stats_conn_close(struct conn *c);
void		stats_request(struct conn *c, enum ep_class ep, const char *route);
void		stats_status(int status);
void		stats_ratelimited(enum rl_class c);
void		stats_injected(const fault_decision *d);
void		stats_auth_failure(void);
void		stats_missing_version(void);
void		stats_json(jbuf *j);
void		stats_free(void);

struct conn
{
	unsigned long id;
	unsigned long requests;
	double		opened;
	struct conn *next,
			   *prev;
};

/* ---- ws.c: the WebSocket ticker (Kite streaming protocol) ---- */
int			ws_start(void);		/* no-op unless --ws-port was given */
void		ws_stop(void);
int			ws_port(void);		/* -1 when off */
int			ws_option(const char *name, const char *value, char *err, size_t errlen);
void		ws_order_update(const char *json, size_t len);	/* any thread */
void		ws_admin(struct req *r, reply *rp);

/* ---- admin.c ---- */
int			admin_start(void);
void		admin_stop(void);
unsigned	admin_port(void);

/* ---- main.c: configuration and global state ---- */
typedef struct config
{
	char	   *bind;
	long		port;
	char	   *admin_bind;
	long		admin_port;
	char	   *port_file;
	char	   *admin_port_file;
	char	   *api_key;
	char	   *api_secret;
	char	   *access_token;	/* pre-seeded valid token */
	char	   *request_token;	/* fixed, reusable request token */
	char	   *user_id;
	double		token_expires_at;	/* 0 = none */
	long		token_ttl;		/* seconds, 0 = none */
	long		expire_token_after; /* requests; 0 = never */
	uint64_t	seed;
	bool		seed_given;		/* --seed: access tokens reproducible */
	char	   *admin_token;	/* --admin-token: required in X-Admin-Token */
	char	   *instruments;
	long		tick_ms;
	double		volatility;
	double		cash;
	double		commodity_cash;
	double		mis_margin;		/* fraction of value blocked for MIS */
	char	   *tls_cert;
	char	   *tls_key;
	long		rl_quote_per_s;
	long		rl_other_per_s;
	long		rl_order_per_s;
	long		rl_order_per_min;
	long		rl_order_per_day;
	long		rl_historical_per_s;
	long		synthetic_instruments;	/* extra generated instrument rows */
	long		max_modifications;
	faults faults;
	char	   *log_path;
	bool		quiet;
	long		threads;		/* 0 = thread per connection */
	long		idle_timeout;
	bool		require_version;
} config;

extern config g_cfg;
extern faults g_faults;			/* live fault settings (admin may change) */
extern pthread_mutex_t g_lock;
extern FILE *g_log;
extern pthread_mutex_t g_log_lock;

void		broker_reset_all(void); /* needs g_lock */
void		log_line(const char *fmt,...) __attribute__((format(printf, 1, 2)));

#define LOCK()   pthread_mutex_lock(&g_lock)
#define UNLOCK() pthread_mutex_unlock(&g_lock)

#endif

/*
 * market.c - the simulated market: instruments, the seeded random walk and
 * the quote endpoints.
 *
 * Instruments come from a Kite instruments CSV (the /instruments dump
 * format).  Each instrument starts at its CSV last_price or, when that is
 * 0, at a price derived from the seed and its token; every tick (a timer
 * thread, --tick-ms, or /admin/tick) moves each price by a log-normal step
 * drawn from one PRNG seeded with --seed, so the same seed and the same
 * number of ticks give the same prices.  Prices are rounded to tick_size
 * and kept inside +-20% circuit limits around the previous close.  After
 * every tick resting orders are matched (orders.c).
 */
#include "broker.h"
#include "http.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static instrument *insts;
static int	ninst;
static char *csv_header;
static int *by_key,
		   *by_token;			/* open addressing, idx+1 */
static size_t hsize;
static rng	walk_rng;
static long tick_count;

static pthread_t ticker;
static bool ticker_running;
static bool ticker_stop;
static pthread_cond_t ticker_cond = PTHREAD_COND_INITIALIZER;

/* ------------------------------------------------------------------ */
/* index                                                                */

static uint64_t
str_hash(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

static void
index_build(void)
{
	free(by_key);
	free(by_token);
	hsize = 64;
	while (hsize < (size_t) ninst * 2)
		hsize *= 2;
	by_key = calloc(hsize, sizeof(int));
	by_token = calloc(hsize, sizeof(int));
	if (!by_key || !by_token)
		abort();
	for (int i = 0; i < ninst; i++)
	{
		size_t		h = str_hash(insts[i].key) & (hsize - 1);

		while (by_key[h])
			h = (h + 1) & (hsize - 1);
		by_key[h] = i + 1;
		h = mix64((uint64_t) insts[i].token) & (hsize - 1);
		while (by_token[h])
			h = (h + 1) & (hsize - 1);
		by_token[h] = i + 1;
	}
}

int
market_find(const char *key)
{
	size_t		h;
	const char *p = key;

	if (!key || !*key || !hsize)
		return -1;
	while (isdigit((unsigned char) *p))
		p++;
	if (*p == '\0')
	{
		long		tok = atol(key);

		for (h = mix64((uint64_t) tok) & (hsize - 1); by_token[h]; h = (h + 1) & (hsize - 1))
			if (insts[by_token[h] - 1].token == tok)
				return by_token[h] - 1;
		return -1;
	}
	for (h = str_hash(key) & (hsize - 1); by_key[h]; h = (h + 1) & (hsize - 1))
		if (strcmp(insts[by_key[h] - 1].key, key) == 0)
			return by_key[h] - 1;
	return -1;
}

int
market_find_token(long token)
{
	char		buf[24];

	snprintf(buf, sizeof(buf), "%ld", token);
	return market_find(buf);
}

int
market_find2(const char *exchange, const char *symbol)
{
	char		key[160];

	if (!exchange || !symbol)
		return -1;
	snprintf(key, sizeof(key), "%s:%s", exchange, symbol);
	return market_find(key);
}

instrument *
market_get(int idx)
{
	return (idx >= 0 && idx < ninst) ? &insts[idx] : NULL;
}

int
market_count(void)
{
	return ninst;
}

double
market_round_tick(const instrument *in, double p)
{
	double		t = in->tick > 0 ? in->tick : 0.05;
	double		r = round(p / t) * t;

	return round(r * 10000) / 10000;
}

/* ------------------------------------------------------------------ */
/* loading and initial state                                            */

/* split one CSV line in place (quotes allowed); returns field count */
static int
csv_split(char *line, char **f, int max)
{
	int			n = 0;
	char	   *p = line;

	while (n < max)
	{
		if (*p == '"')
		{
			char	   *w = ++p;

			f[n++] = w;
			while (*p && !(*p == '"' && p[1] != '"'))
			{
				if (*p == '"')
					p++;
				*w++ = *p++;
			}
			if (*p == '"')
				p++;
			*w = '\0';
			if (*p == ',')
				p++;
			else
				break;
			continue;
		}
		f[n++] = p;
		p += strcspn(p, ",");
		if (*p == ',')
			*p++ = '\0';
		else
			break;
	}
	return n;
}

static void
instrument_init(instrument *in, double csv_price)
{
	uint64_t	h = mix64(g_cfg.seed ^ mix64((uint64_t) in->token));
	double		p = csv_price;

	if (p <= 0)
		p = 50 + (double) (h % 495000) / 100.0;
	in->last = market_round_tick(in, p);
	if (in->last <= 0)
		in->last = in->tick > 0 ? in->tick : 0.05;
	in->close = market_round_tick(in, in->last * (1 + ((double) ((h >> 20) % 4001) - 2000) / 100000.0));
	in->open = in->high = in->low = in->avg_traded = in->last;
	in->volume = (long) ((h >> 32) % 5000000);
	in->last_qty = 1 + (long) ((h >> 8) % 50);
	in->last_trade_time = now_epoch();
}

/* optional columns: instrument_type, expiry (-1 when absent) */
static int	col_type = -1,
			col_expiry = -1;

/* add one CSV data row (modified in place); cols are the six needed ones */
static void
add_line(char *line, const int *col)
{
	char	   *f[32];
	char	   *copy;
	instrument *in;
	int			nf;
	static int	cap = 0;

	if (!insts)
		cap = 0;
	line[strcspn(line, "\r")] = '\0';
	if (!*line)
		return;
	copy = strdup(line);
	nf = csv_split(line, f, 32);
	for (int c = 0; c < 6; c++)
		if (nf <= col[c])
		{
			free(copy);
			return;
		}
	insts = grow_array(insts, ninst, &cap, sizeof(instrument), 256);
	in = &insts[ninst];
	memset(in, 0, sizeof(*in));
	in->csv_line = copy;
	in->token = atol(f[col[0]]);
	snprintf(in->tradingsymbol, sizeof(in->tradingsymbol), "%s", f[col[1]]);
	snprintf(in->exchange, sizeof(in->exchange), "%s", f[col[2]]);
	snprintf(in->segment, sizeof(in->segment), "%s", f[col[3]]);
	snprintf(in->key, sizeof(in->key), "%s:%s", in->exchange, in->tradingsymbol);
	in->tick = atof(f[col[5]]);
	if (in->tick <= 0)
		in->tick = 0.05;
	in->tradable = strcmp(in->segment, "INDICES") != 0;
	in->csv_price = atof(f[col[4]]);
	if (col_type >= 0 && nf > col_type)
		snprintf(in->instrument_type, sizeof(in->instrument_type), "%s", f[col_type]);
	if (col_expiry >= 0 && nf > col_expiry && f[col_expiry][0])
		parse_ist(f[col_expiry], &in->expiry);
	ninst++;
}

/*
 * --synthetic-instruments N: N generated rows in the dump's format (NSE
 * equities SYN000001.., and every fourth a future with an expiry), for
 * load tests of a 100k-row instrument master.
 */
static void
add_synthetic(const int *col, int nf_header, char **names_in_order)
{
	char		line[512];

	for (long i = 1; i <= g_cfg.synthetic_instruments; i++)
	{
		bool		fut = i % 4 == 0;
		char	   *out = line;
		size_t		room = sizeof(line);

		/* fields in the header's order */
		for (int c = 0; c < nf_header; c++)
		{
			const char *n = names_in_order[c];
			int			w;

			if (strcmp(n, "instrument_token") == 0)
				w = snprintf(out, room, "%ld", 90000000L + i);
			else if (strcmp(n, "exchange_token") == 0)
				w = snprintf(out, room, "%ld", 350000L + i);
			else if (strcmp(n, "tradingsymbol") == 0)
				w = snprintf(out, room, fut ? "SYN%06ldFUT" : "SYN%06ld", i);
			else if (strcmp(n, "name") == 0)
				w = snprintf(out, room, "\"SYNTHETIC, %ld\"", i);
			else if (strcmp(n, "last_price") == 0 || strcmp(n, "strike") == 0)
				w = snprintf(out, room, "0.0");
			else if (strcmp(n, "expiry") == 0)
				w = snprintf(out, room, "%s", fut ? "2030-12-26" : "");
			else if (strcmp(n, "tick_size") == 0)
				w = snprintf(out, room, "0.05");
			else if (strcmp(n, "lot_size") == 0)
				w = snprintf(out, room, "%d", fut ? 50 : 1);
			else if (strcmp(n, "instrument_type") == 0)
				w = snprintf(out, room, "%s", fut ? "FUT" : "EQ");
			else if (strcmp(n, "segment") == 0)
				w = snprintf(out, room, "%s", fut ? "NFO-FUT" : "NSE");
			else if (strcmp(n, "exchange") == 0)
				w = snprintf(out, room, "%s", fut ? "NFO" : "NSE");
			else
				w = 0;
			out += w;
			room -= w;
			if (c + 1 < nf_header)
			{
				*out++ = ',';
				room--;
			}
		}
		*out = '\0';
		add_line(line, col);
	}
}

int
market_load(const char *path, char *err, size_t errlen)
{
	size_t		len;
	char	   *data = read_file(path, &len);
	char	   *line,
			   *save = NULL;
	char	   *f[32];
	char	   *header_copy;
	int			col[6],
				nf;
	static const char *const names[] = {
		"instrument_token", "tradingsymbol", "exchange", "segment", "last_price", "tick_size"
	};

	if (!data)
	{
		snprintf(err, errlen, "cannot read instruments file %s", path);
		return -1;
	}
	line = strtok_r(data, "\n", &save);
	if (!line)
	{
		snprintf(err, errlen, "empty instruments file %s", path);
		free(data);
		return -1;
	}
	line[strcspn(line, "\r")] = '\0';
	csv_header = strdup(line);
	header_copy = strdup(line);
	nf = csv_split(header_copy, f, 32);
	col_type = col_expiry = -1;
	for (int i = 0; i < nf; i++)
	{
		if (strcmp(f[i], "instrument_type") == 0)
			col_type = i;
		if (strcmp(f[i], "expiry") == 0)
			col_expiry = i;
	}
	for (int c = 0; c < 6; c++)
	{
		col[c] = -1;
		for (int i = 0; i < nf; i++)
			if (strcmp(f[i], names[c]) == 0)
				col[c] = i;
		if (col[c] < 0)
		{
			snprintf(err, errlen, "instruments file lacks column %s", names[c]);
			free(header_copy);
			free(data);
			return -1;
		}
	}
	while ((line = strtok_r(NULL, "\n", &save)))
		add_line(line, col);
	add_synthetic(col, nf, f);
	free(header_copy);
	free(data);
	for (int i = 0; i < ninst; i++)
		instrument_init(&insts[i], insts[i].csv_price);
	index_build();
	rng_seed(&walk_rng, g_cfg.seed);
	tick_count = 0;
	return ninst > 0 ? 0 : (snprintf(err, errlen, "no instruments in %s", path), -1);
}

/* back to the state right after loading; needs g_lock */
void
market_reset(void)
{
	/* the initial price is a function of the seed and the CSV only */
	for (int i = 0; i < ninst; i++)
		instrument_init(&insts[i], insts[i].csv_price);
	rng_seed(&walk_rng, g_cfg.seed);
	tick_count = 0;
}

void
market_free(void)
{
	for (int i = 0; i < ninst; i++)
		free(insts[i].csv_line);
	free(insts);
	free(csv_header);
	free(by_key);
	free(by_token);
	insts = NULL;
	by_key = by_token = NULL;
	csv_header = NULL;
	ninst = 0;
	hsize = 0;
}

/* ------------------------------------------------------------------ */
/* the walk                                                             */

static void
touch(instrument *in, double p, long qty)
{
	in->last = p;
	if (p > in->high)
		in->high = p;
	if (p < in->low)
		in->low = p;
	in->last_qty = qty;
	in->volume += qty;
	in->last_trade_time = now_epoch();
	in->avg_traded = market_round_tick(in, (in->avg_traded * 19 + p) / 20);
}

void
market_step(void)
{
	for (int i = 0; i < ninst; i++)
	{
		instrument *in = &insts[i];
		double		z = rng_gauss(&walk_rng);
		long		qty = 1 + (long) (rng_next(&walk_rng) % 200);
		double		p = market_round_tick(in, in->last * exp(g_cfg.volatility * z));
		double		lo = market_round_tick(in, in->close * 0.8);
		double		hi = market_round_tick(in, in->close * 1.2);

		if (p < lo)
			p = lo;
		if (p > hi)
			p = hi;
		if (p < in->tick)
			p = in->tick;
		touch(in, p, qty);
	}
	tick_count++;
}

void
market_set_price(int idx, double price)
{
	instrument *in = market_get(idx);

	if (in)
		touch(in, market_round_tick(in, price), 1);
}

static void *
ticker_main(void *arg)
{
	struct timespec deadline;

	(void) arg;
	clock_gettime(CLOCK_REALTIME, &deadline);
	LOCK		();

	while (!ticker_stop)
	{
		deadline.tv_nsec += (g_cfg.tick_ms % 1000) * 1000000L;
		deadline.tv_sec += g_cfg.tick_ms / 1000 + deadline.tv_nsec / 1000000000L;
		deadline.tv_nsec %= 1000000000L;
		while (!ticker_stop && pthread_cond_timedwait(&ticker_cond, &g_lock, &deadline) == 0)
			;
		if (ticker_stop)
			break;
		market_step();
		orders_match_all();
	}
	UNLOCK();
	return NULL;
}

int
market_start_ticker(void)
{
	if (g_cfg.tick_ms <= 0)
		return 0;
	ticker_stop = false;
	if (pthread_create(&ticker, NULL, ticker_main, NULL) != 0)
		return -1;
	ticker_running = true;
	return 0;
}

void
market_stop_ticker(void)
{
	if (!ticker_running)
		return;
	LOCK		();

	ticker_stop = true;
	pthread_cond_broadcast(&ticker_cond);
	UNLOCK();
	pthread_join(ticker, NULL);
	ticker_running = false;
}

long
market_ticks(void)
{
	return tick_count;
}

/* ------------------------------------------------------------------ */
/* quote endpoints                                                      */

enum quote_mode
{
	Q_FULL, Q_OHLC, Q_LTP
};

static void
ohlc_obj(jbuf *j, const instrument *in)
{
	j_kobj(j, "ohlc");
	j_knum(j, "open", in->open);
	j_knum(j, "high", in->high);
	j_knum(j, "low", in->low);
	j_knum(j, "close", in->close);
	j_end_obj(j);
}

void
market_depth_level(const instrument *in, int sign, int k, double *price, long *qty,
				   int *orders)
{
	uint64_t	h = mix64((uint64_t) in->token * 31 + (uint64_t) tick_count * 7 + (uint64_t) (k + 1) * (sign > 0 ? 3 : 5));

	*qty = 1 + (long) (h % 2000);
	*price = market_round_tick(in, in->last + sign * (k + (sign > 0 ? 1 : 0)) * in->tick);
	*orders = 1 + (int) ((h >> 16) % 20);
}

static void
depth_side(jbuf *j, const instrument *in, const char *side, int sign, long *total)
{
	j_karr(j, side);
	for (int k = 0; k < 5; k++)
	{
		double		p;
		long		q;
		int			n;

		market_depth_level(in, sign, k, &p, &q, &n);
		j_obj(j);
		j_knum(j, "price", p);
		j_kint(j, "quantity", q);
		j_kint(j, "orders", n);
		j_end_obj(j);
		*total += q * 10;
	}
	j_end_arr(j);
}

static void
quote_one(jbuf *j, const instrument *in, enum quote_mode mode)
{
	char		ts[32];
	long		bq = 0,
				sq = 0;

	j_obj(j);
	j_kint(j, "instrument_token", in->token);
	if (mode == Q_FULL)
	{
		fmt_ist(now_epoch(), ts, sizeof(ts));
		j_kstr(j, "timestamp", ts);
		fmt_ist(in->last_trade_time, ts, sizeof(ts));
		j_kstr(j, "last_trade_time", ts);
	}
	j_knum(j, "last_price", in->last);
	if (mode == Q_FULL)
	{
		jbuf		depth;

		/* depth first, into its own buffer, to learn the totals */
		jb_init(&depth);
		depth.after_key = true;
		j_obj(&depth);
		depth_side(&depth, in, "buy", -1, &bq);
		depth_side(&depth, in, "sell", 1, &sq);
		j_end_obj(&depth);

		j_kint(j, "last_quantity", in->last_qty);
		j_kint(j, "buy_quantity", bq);
		j_kint(j, "sell_quantity", sq);
		j_kint(j, "volume", in->volume);
		j_knum(j, "average_price", in->avg_traded);
		j_kint(j, "oi", 0);
		j_kint(j, "oi_day_high", 0);
		j_kint(j, "oi_day_low", 0);
		j_knum(j, "net_change", in->last - in->close);
		j_knum(j, "lower_circuit_limit", market_round_tick(in, in->close * 0.8));
		j_knum(j, "upper_circuit_limit", market_round_tick(in, in->close * 1.2));
		ohlc_obj(j, in);
		j_key(j, "depth");
		jb_raw(j, depth.buf, depth.len);
		j->after_key = false;
		jb_free(&depth);
	}
	else if (mode == Q_OHLC)
		ohlc_obj(j, in);
	j_end_obj(j);
}

static void
quote_common(struct req *r, reply *rp, enum quote_mode mode)
{
	int			max = mode == Q_FULL ? 500 : 1000;
	const char **keys = malloc(sizeof(char *) * (max + 1));
	int			n = req_param_all(r, "i", keys, max + 1);
	jbuf		j;

	if (n == 0)
	{
		free(keys);
		reply_error(rp, 400, "InputException", "No instruments specified.");
		return;
	}
	if (n > max)
	{
		free(keys);
		reply_error(rp, 400, "InputException", "Too many instruments.");
		return;
	}
	jb_init(&j);
	j_obj(&j);
	LOCK		();

	for (int i = 0; i < n; i++)
	{
		int			idx = market_find(keys[i]);
		bool		dup = false;

		for (int k = 0; k < i && !dup; k++)
			dup = strcmp(keys[k], keys[i]) == 0;
		if (idx < 0 || dup)
			continue;
		j_key(&j, keys[i]);
		quote_one(&j, &insts[idx], mode);
	}
	UNLOCK();
	j_end_obj(&j);
	free(keys);
	reply_success(rp, &j);
}

void
h_quote(struct req *r, char **args, reply *rp)
{
	(void) args;
	quote_common(r, rp, Q_FULL);
}

void
h_quote_ltp(struct req *r, char **args, reply *rp)
{
	(void) args;
	quote_common(r, rp, Q_LTP);
}

void
h_quote_ohlc(struct req *r, char **args, reply *rp)
{
	(void) args;
	quote_common(r, rp, Q_OHLC);
}

/* /instruments and /instruments/{exchange}: the CSV rows as loaded, CRLF */
void
h_instruments(struct req *r, char **args, reply *rp)
{
	const char *exch = strcmp(r->route, "/instruments/{}") == 0 ? args[0] : NULL;
	jbuf		b;

	jb_init(&b);
	jb_raw(&b, csv_header, strlen(csv_header));
	jb_raw(&b, "\r\n", 2);
	for (int i = 0; i < ninst; i++)
	{
		if (exch && strcmp(insts[i].exchange, exch) != 0)
			continue;
		jb_raw(&b, insts[i].csv_line, strlen(insts[i].csv_line));
		jb_raw(&b, "\r\n", 2);
	}
	rp->status = 200;
	rp->body = jb_steal(&b, &rp->len);
	rp->ctype = "text/csv";
	rp->is_json = false;
}

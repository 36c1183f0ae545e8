/*
 * orders.c - the order book of the paper broker: placement, modification,
 * cancellation, matching against the simulated price, trades, and the
 * /orders, /orders/{id}, /orders/{id}/trades and /trades endpoints.
 *
 * Matching rules: a MARKET order fills at once at the last price.  A LIMIT
 * order that is marketable on arrival (BUY at or above the last price, SELL
 * at or below) fills at the last price; otherwise it rests (OPEN) and fills
 * at its limit price once the last price crosses it.  SL and SL-M orders
 * wait in TRIGGER PENDING until the last price reaches the trigger (BUY: at
 * or above, SELL: at or below); SL-M then fills at the last price, SL
 * becomes a LIMIT order (filled at the last price if marketable).  IOC
 * orders that cannot fill at once are
 * cancelled.  Fills are whole (no partial fills).  Every state change is
 * kept, so /orders/{id} returns the order's history like Kite does.
 */
#include "broker.h"
#include "http.h"

#include <stdlib.h>
#include <string.h>

typedef struct ostate
{
	char		status[28];
	char		msg[160];
	char		order_type[8];
	char		validity[8];
	double		price,
				trigger,
				avg;
	long		qty,
				filled,
				pending,
				cancelled,
				disclosed;
	double		ts;
	bool		exch;			/* reached the exchange: has exchange ids */
	bool		modified;
} ostate;

typedef struct order
{
	char		id[24];
	char		exch_id[24];
	char		variety[16];
	char		product[8];
	char		tag[24];
	int			inst;
	bool		buy;
	long		validity_ttl;
	double		market_protection;
	double		placed;
	double		exch_ts;
	int			nmod;
	ostate		cur;
	ostate	   *hist;
	int			nhist,
				caphist;
} order;

typedef struct trade
{
	char		trade_id[16];
	int order;
	double		price;
	long		qty;
	double		ts;
} trade;

static order **orders;
static int	norders,
			caporders;
static trade *trades;
static int	ntrades,
			captrades;
static unsigned long order_seq,
			trade_seq;

int
orders_count(void)
{
	return norders;
}

int
orders_set_freeze(const char *key, long qty)
{
	instrument *in = market_get(market_find(key));

	if (!in)
		return -1;
	in->freeze_qty = qty;
	return 0;
}

void
orders_reset(void)
{
	for (int i = 0; i < norders; i++)
	{
		free(orders[i]->hist);
		free(orders[i]);
	}
	free(orders);
	free(trades);
	orders = NULL;
	trades = NULL;
	norders = caporders = ntrades = captrades = 0;
	/* ids keep increasing across resets so a client never sees one twice */
}

static order *
order_find(const char *id)
{
	for (int i = norders - 1; i >= 0; i--)
		if (strcmp(orders[i]->id, id) == 0)
			return orders[i];
	return NULL;
}

static int
order_index(const order *o)
{
	for (int i = norders - 1; i >= 0; i--)
		if (orders[i] == o)
			return i;
	return -1;
}

static void emit_order(jbuf *j, const order *o, const ostate *st, bool full);

/* push the order's new state to the WebSocket ticker's clients */
static void
order_stream(const order *o)
{
	jbuf		j;

	jb_init(&j);
	j_obj(&j);
	j_kstr(&j, "type", "order");
	j_key(&j, "data");
	emit_order(&j, o, &o->cur, true);
	j_end_obj(&j);
	ws_order_update(j.buf, j.len);
	jb_free(&j);
}

/* record the current state as a new history entry */
static void
push_state(order *o, const char *status, const char *msg)
{
	snprintf(o->cur.status, sizeof(o->cur.status), "%s", status);
	snprintf(o->cur.msg, sizeof(o->cur.msg), "%s", msg ? msg : "");
	o->cur.ts = now_epoch();
	o->hist = grow_array(o->hist, o->nhist, &o->caphist, sizeof(ostate), 8);
	o->hist[o->nhist++] = o->cur;
	order_stream(o);
}

static void
fill(order *o, double price)
{
	instrument *in = market_get(o->inst);
	trade	   *t;

	o->cur.filled = o->cur.qty;
	o->cur.pending = 0;
	o->cur.avg = price;
	trades = grow_array(trades, ntrades, &captrades, sizeof(trade), 64);
	t = &trades[ntrades++];
	snprintf(t->trade_id, sizeof(t->trade_id), "%08lu", 10000000UL + ++trade_seq);
	t->order = order_index(o);
	t->price = price;
	t->qty = o->cur.qty;
	t->ts = now_epoch();
	if (in)
		in->volume += o->cur.qty;
	portfolio_fill(o->inst, o->product, o->buy, o->cur.qty, price);
	push_state(o, "COMPLETE", NULL);
}

/* try to fill or trigger o at the current price; arriving: just placed or modified */
static void
try_match(order *o, bool arriving)
{
	instrument *in = market_get(o->inst);
	double		ltp = in->last;
	bool		is_open = strcmp(o->cur.status, "OPEN") == 0;

	if (strcmp(o->cur.status, "TRIGGER PENDING") == 0)
	{
		bool		hit = o->buy ? ltp >= o->cur.trigger : ltp <= o->cur.trigger;

		if (!hit)
			return;
		if (strcmp(o->cur.order_type, "SL-M") == 0)
		{
			fill(o, ltp);
			return;
		}
		push_state(o, "OPEN", NULL);
		is_open = true;
		arriving = true;		/* a triggered SL is a new limit order */
	}
	if (!is_open)
		return;
	if (strcmp(o->cur.order_type, "MARKET") == 0)
		fill(o, ltp);
	else if (o->buy ? ltp <= o->cur.price : ltp >= o->cur.price)
		fill(o, arriving ? ltp : o->cur.price);
}

void
orders_match_all(void)
{
	for (int i = 0; i < norders; i++)
	{
		order	   *o = orders[i];

		if (strcmp(o->cur.status, "OPEN") == 0 || strcmp(o->cur.status, "TRIGGER PENDING") == 0)
			try_match(o, false);
	}
}

static void
make_ids(order *o)
{
	char		day[16];
	double		now = now_epoch();
	long		sod;

	fmt_ist_date(now, day, sizeof(day));
	sod = ((long) now + 19800) % 86400;
	order_seq++;
	/* yymmdd + seconds-of-day at start-up + counter: 19 digits */
	snprintf(o->id, sizeof(o->id), "%c%c%c%c%c%c%05ld%08lu",
			 day[2], day[3], day[5], day[6], day[8], day[9], sod, order_seq % 100000000UL);
	snprintf(o->exch_id, sizeof(o->exch_id), "13%06ld%08lu", sod, order_seq % 100000000UL);
}

/* ------------------------------------------------------------------ */
/* output                                                               */

static void
emit_order(jbuf *j, const order *o, const ostate *st, bool full)
{
	instrument *in = market_get(o->inst);
	char		ts[32],
				ets[32];

	fmt_ist(st->ts, ts, sizeof(ts));
	fmt_ist(o->exch_ts, ets, sizeof(ets));
	j_obj(j);
	if (full)
		j_kstr(j, "account_id", g_cfg.user_id);
	j_kstr(j, "placed_by", g_cfg.user_id);
	j_kstr(j, "order_id", o->id);
	j_kstrn(j, "exchange_order_id", st->exch ? o->exch_id : NULL);
	j_knull(j, "parent_order_id");
	j_kstr(j, "status", st->status);
	j_kstrn(j, "status_message", st->msg);
	if (full)
		j_kstrn(j, "status_message_raw", st->msg);
	j_kstr(j, "order_timestamp", ts);
	if (full)
		j_kstrn(j, "exchange_update_timestamp", st->exch ? ts : NULL);
	j_kstrn(j, "exchange_timestamp", st->exch ? ets : NULL);
	j_kstr(j, "variety", o->variety);
	j_kbool(j, "modified", st->modified);
	j_kstr(j, "exchange", in->exchange);
	j_kstr(j, "tradingsymbol", in->tradingsymbol);
	j_kint(j, "instrument_token", in->token);
	j_kstr(j, "order_type", st->order_type);
	j_kstr(j, "transaction_type", o->buy ? "BUY" : "SELL");
	j_kstr(j, "validity", st->validity);
	if (full)
		j_kint(j, "validity_ttl", o->validity_ttl);
	j_kstr(j, "product", o->product);
	j_kint(j, "quantity", st->qty);
	j_kint(j, "disclosed_quantity", st->disclosed);
	j_knum(j, "price", st->price);
	j_knum(j, "trigger_price", st->trigger);
	j_knum(j, "average_price", st->avg);
	j_kint(j, "filled_quantity", st->filled);
	j_kint(j, "pending_quantity", st->pending);
	j_kint(j, "cancelled_quantity", st->cancelled);
	if (full)
	{
		j_knum(j, "market_protection", o->market_protection);
		j_empty_obj(j, "meta");
	}
	j_kstrn(j, "tag", o->tag);
	if (full)
	{
		j_karr(j, "tags");
		if (o->tag[0])
			j_str(j, o->tag);
		j_end_arr(j);
		j_knull(j, "guid");
	}
	j_end_obj(j);
}

static void
emit_trade(jbuf *j, const trade *t)
{
	const order *o = orders[t->order];
	instrument *in = market_get(o->inst);
	char		ts[32],
				hms[16];

	fmt_ist(t->ts, ts, sizeof(ts));
	fmt_ist_time(t->ts, hms, sizeof(hms));
	j_obj(j);
	j_kstr(j, "trade_id", t->trade_id);
	j_kstr(j, "order_id", o->id);
	j_kstr(j, "exchange", in->exchange);
	j_kstr(j, "tradingsymbol", in->tradingsymbol);
	j_kint(j, "instrument_token", in->token);
	j_kstr(j, "product", o->product);
	j_knum(j, "average_price", t->price);
	j_kint(j, "quantity", t->qty);
	j_kstr(j, "exchange_order_id", o->exch_id);
	j_kstr(j, "transaction_type", o->buy ? "BUY" : "SELL");
	j_kstr(j, "fill_timestamp", ts);
	j_kstr(j, "order_timestamp", hms);
	j_kstr(j, "exchange_timestamp", ts);
	j_end_obj(j);
}

void
h_orders(struct req *r, char **args, reply *rp)
{
	jbuf		j;

	(void) r;
	(void) args;
	jb_init(&j);
	j_arr(&j);
	LOCK		();

	for (int i = 0; i < norders; i++)
		emit_order(&j, orders[i], &orders[i]->cur, true);
	UNLOCK();
	j_end_arr(&j);
	reply_success(rp, &j);
}

static void
not_found(reply *rp)
{
	reply_error(rp, 404, "GeneralException", "Couldn't find that `order_id`.");
}

void
h_order_history(struct req *r, char **args, reply *rp)
{
	jbuf		j;
	order	   *o;

	(void) r;
	LOCK		();

	if (!(o = order_find(args[0])))
	{
		UNLOCK();
		not_found(rp);
		return;
	}
	jb_init(&j);
	j_arr(&j);
	for (int i = 0; i < o->nhist; i++)
		emit_order(&j, o, &o->hist[i], false);
	j_end_arr(&j);
	UNLOCK();
	reply_success(rp, &j);
}

static void
trades_reply(reply *rp, const char *order_id)
{
	jbuf		j;
	int			idx = -1;

	LOCK		();

	if (order_id)
	{
		order	   *o = order_find(order_id);

		if (!o)
		{
			UNLOCK();
			not_found(rp);
			return;
		}
		idx = order_index(o);
	}
	jb_init(&j);
	j_arr(&j);
	for (int i = 0; i < ntrades; i++)
		if (idx < 0 || trades[i].order == idx)
			emit_trade(&j, &trades[i]);
	j_end_arr(&j);
	UNLOCK();
	reply_success(rp, &j);
}

void
h_order_trades(struct req *r, char **args, reply *rp)
{
	(void) r;
	trades_reply(rp, args[0]);
}

void
h_trades(struct req *r, char **args, reply *rp)
{
	(void) r;
	(void) args;
	trades_reply(rp, NULL);
}

static void
reply_order_id(reply *rp, const char *id)
{
	jbuf		j;

	jb_init(&j);
	j_obj(&j);
	j_kstr(&j, "order_id", id);
	j_end_obj(&j);
	reply_success(rp, &j);
}

/* ------------------------------------------------------------------ */
/* place / modify / cancel                                              */

static bool
one_of(const char *v, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(v, *set) == 0)
			return true;
	return false;
}

static const char *const VARIETIES[] = {"regular", "amo", "co", "iceberg", "auction", NULL};
static const char *const ORDER_TYPES[] = {"MARKET", "LIMIT", "SL", "SL-M", NULL};
static const char *const PRODUCTS[] = {"CNC", "NRML", "MIS", "MTF", "CO", "BO", NULL};
static const char *const VALIDITIES[] = {"DAY", "IOC", "TTL", NULL};

/* validate price fields of a (new or modified) state; NULL if fine */
static const char *
check_prices(const ostate *st)
{
	bool		limit = strcmp(st->order_type, "LIMIT") == 0 || strcmp(st->order_type, "SL") == 0;
	bool		stop = strcmp(st->order_type, "SL") == 0 || strcmp(st->order_type, "SL-M") == 0;

	if (st->qty <= 0)
		return "Invalid `quantity`.";
	if (limit && st->price <= 0)
		return "Invalid `price`.";
	if (stop && st->trigger <= 0)
		return "Invalid `trigger_price`.";
	return NULL;
}

static bool
get_num(struct req *r, const char *name, double *out)
{
	const char *v = req_param(r, name);

	return v && *v && parse_double(v, out);
}

/* Kite's tag: ASCII letters and digits only (never raw bytes echoed back) */
static bool
tag_alnum(const char *tag)
{
	for (const unsigned char *p = (const unsigned char *) tag; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
			return false;
	return true;
}

void
h_place(struct req *r, char **args, reply *rp)
{
	const char *variety = args[0];
	const char *sym = req_param(r, "tradingsymbol");
	const char *exch = req_param(r, "exchange");
	const char *tt = req_param(r, "transaction_type");
	const char *otype = req_param(r, "order_type");
	const char *product = req_param(r, "product");
	const char *validity = req_param(r, "validity");
	const char *tag = req_param(r, "tag");
	const char *bad = NULL;
	double		d;
	int			idx;
	order	   *o;
	char		msg[160];
	char		id[sizeof(((order *) 0)->id)];
	instrument *in;

	if (!validity || !*validity)
		validity = "DAY";
	if (!one_of(variety, VARIETIES))
		bad = "Invalid `variety`.";
	else if (!sym || !*sym || !exch || !*exch)
		bad = "Missing `tradingsymbol` or `exchange`.";
	else if (!tt || (strcmp(tt, "BUY") != 0 && strcmp(tt, "SELL") != 0))
		bad = "Invalid `transaction_type`.";
	else if (!otype || !one_of(otype, ORDER_TYPES))
		bad = "Invalid `order_type`.";
	else if (!product || !one_of(product, PRODUCTS))
		bad = "Invalid `product`.";
	else if (!one_of(validity, VALIDITIES))
		bad = "Invalid `validity`.";
	else if (tag && strlen(tag) > 20)
		bad = "Tag length cannot be greater than 20.";
	else if (tag && !tag_alnum(tag))
		bad = "Tag should be alphanumeric.";
	if (bad)
	{
		reply_error(rp, 400, "InputException", bad);
		return;
	}

	o = calloc(1, sizeof(*o));
	if (!o)
		abort();
	snprintf(o->variety, sizeof(o->variety), "%s", variety);
	snprintf(o->product, sizeof(o->product), "%s", product);
	snprintf(o->tag, sizeof(o->tag), "%s", tag ? tag : "");
	snprintf(o->cur.order_type, sizeof(o->cur.order_type), "%s", otype);
	snprintf(o->cur.validity, sizeof(o->cur.validity), "%s", validity);
	o->buy = strcmp(tt, "BUY") == 0;
	o->cur.qty = get_num(r, "quantity", &d) ? (long) d : 0;
	o->cur.price = get_num(r, "price", &d) ? d : 0;
	o->cur.trigger = get_num(r, "trigger_price", &d) ? d : 0;
	o->cur.disclosed = get_num(r, "disclosed_quantity", &d) ? (long) d : 0;
	o->validity_ttl = get_num(r, "validity_ttl", &d) ? (long) d : 0;
	o->market_protection = get_num(r, "market_protection", &d) ? d : 0;
	if (req_param(r, "market_protection") &&
		(!get_num(r, "market_protection", &d) || (d != -1 && (d < 0 || d > 100))))
		bad = "Invalid `market_protection`: -1 (automatic) or 0 to 100.";
	else if (g_faults.require_market_protection &&
			 (strcmp(otype, "MARKET") == 0 || strcmp(otype, "SL-M") == 0) &&
			 o->market_protection == 0)
		bad = "Market orders need a `market_protection` (-1 for automatic).";
	if (bad)
	{
		free(o);
		reply_error(rp, 400, "InputException", bad);
		return;
	}
	o->cur.pending = o->cur.qty;
	if (strcmp(otype, "MARKET") == 0 || strcmp(otype, "SL-M") == 0)
		o->cur.price = 0;
	if (strcmp(otype, "MARKET") == 0 || strcmp(otype, "LIMIT") == 0)
		o->cur.trigger = 0;
	if ((bad = check_prices(&o->cur)))
	{
		free(o);
		reply_error(rp, 400, "InputException", bad);
		return;
	}

	LOCK		();

	idx = market_find2(exch, sym);
	in = market_get(idx);
	if (!in || !in->tradable)
	{
		UNLOCK();
		free(o);
		reply_error(rp, 400, "InputException",
					in ? "Instrument is not tradable." : "Invalid `tradingsymbol` or `exchange`.");
		return;
	}
	if (in->freeze_qty > 0 && o->cur.qty > in->freeze_qty)
	{
		UNLOCK();
		free(o);
		snprintf(msg, sizeof(msg), "Quantity exceeds the freeze limit of %ld for %s.",
				 in->freeze_qty, in->key);
		reply_error(rp, 400, "OrderException", msg);
		return;
	}
	o->inst = idx;
	o->cur.price = o->cur.price ? market_round_tick(in, o->cur.price) : 0;
	o->cur.trigger = o->cur.trigger ? market_round_tick(in, o->cur.trigger) : 0;
	if (g_faults.margin_exception &&
		!portfolio_margin_ok(idx, o->product, o->buy, o->cur.qty,
							 o->cur.price > 0 ? o->cur.price : (o->cur.trigger > 0 ? o->cur.trigger : in->last),
							 msg, sizeof(msg)))
	{
		UNLOCK();
		free(o);
		reply_error(rp, 400, "MarginException", msg);
		return;
	}
	o->placed = now_epoch();
	make_ids(o);
	orders = grow_array(orders, norders, &caporders, sizeof(order *), 64);
	orders[norders++] = o;

	push_state(o, "PUT ORDER REQ RECEIVED", NULL);
	push_state(o, "VALIDATION PENDING", NULL);
	if (!portfolio_margin_ok(idx, o->product, o->buy, o->cur.qty,
							 o->cur.price > 0 ? o->cur.price : (o->cur.trigger > 0 ? o->cur.trigger : in->last),
							 msg, sizeof(msg)))
	{
		o->cur.cancelled = 0;
		push_state(o, "REJECTED", msg);
	}
	else
	{
		push_state(o, "OPEN PENDING", NULL);
		o->cur.exch = true;
		o->exch_ts = now_epoch();
		if (strcmp(otype, "SL") == 0 || strcmp(otype, "SL-M") == 0)
			push_state(o, "TRIGGER PENDING", NULL);
		else
			push_state(o, "OPEN", NULL);
		try_match(o, true);
		if (strcmp(validity, "IOC") == 0 && strcmp(o->cur.status, "COMPLETE") != 0)
		{
			o->cur.cancelled = o->cur.pending;
			o->cur.pending = 0;
			push_state(o, "CANCELLED", "IOC order could not be filled.");
		}
	}
	snprintf(id, sizeof(id), "%s", o->id);	/* o may change once unlocked */
	UNLOCK();
	reply_order_id(rp, id);
}

/* the order named by args[1] if it can still change; else an error reply */
static order *
changeable(char **args, reply *rp, const char *what)
{
	order	   *o = order_find(args[1]);
	char		msg[160];

	if (!o)
	{
		reply_error(rp, 400, "InputException", "Invalid `order_id`.");
		return NULL;
	}
	if (strcmp(o->cur.status, "OPEN") != 0 && strcmp(o->cur.status, "TRIGGER PENDING") != 0)
	{
		snprintf(msg, sizeof(msg), "Order cannot be %s as it is %s.", what, o->cur.status);
		reply_error(rp, 400, "InputException", msg);
		return NULL;
	}
	return o;
}

void
h_modify(struct req *r, char **args, reply *rp)
{
	order	   *o;
	ostate		st;
	double		d;
	const char *v,
			   *bad;
	bool		was_open;

	LOCK		();

	if (!(o = changeable(args, rp, "modified")))
	{
		UNLOCK();
		return;
	}
	if (o->nmod >= g_cfg.max_modifications)
	{
		UNLOCK();
		reply_error(rp, 400, "InputException", "Maximum allowed order modifications exceeded.");
		return;
	}
	was_open = strcmp(o->cur.status, "OPEN") == 0 && strcmp(o->cur.order_type, "SL") == 0;
	st = o->cur;
	if (get_num(r, "quantity", &d))
		st.qty = (long) d;
	if (get_num(r, "price", &d))
		st.price = market_round_tick(market_get(o->inst), d);
	if (get_num(r, "trigger_price", &d))
		st.trigger = market_round_tick(market_get(o->inst), d);
	if (get_num(r, "disclosed_quantity", &d))
		st.disclosed = (long) d;
	if ((v = req_param(r, "order_type")) && *v)
	{
		if (!one_of(v, ORDER_TYPES))
		{
			UNLOCK();
			reply_error(rp, 400, "InputException", "Invalid `order_type`.");
			return;
		}
		snprintf(st.order_type, sizeof(st.order_type), "%s", v);
	}
	if ((v = req_param(r, "validity")) && *v && one_of(v, VALIDITIES))
		snprintf(st.validity, sizeof(st.validity), "%s", v);
	if ((bad = check_prices(&st)))
	{
		UNLOCK();
		reply_error(rp, 400, "InputException", bad);
		return;
	}
	st.pending = st.qty;
	st.modified = true;
	o->cur = st;
	o->nmod++;
	push_state(o, "MODIFY PENDING", NULL);
	/* an SL that already triggered keeps resting as a limit order */
	if ((strcmp(st.order_type, "SL") == 0 && !was_open) || strcmp(st.order_type, "SL-M") == 0)
		push_state(o, "TRIGGER PENDING", NULL);
	else
		push_state(o, "OPEN", NULL);
	try_match(o, true);
	UNLOCK();
	reply_order_id(rp, args[1]);
}

void
h_cancel(struct req *r, char **args, reply *rp)
{
	order	   *o;

	(void) r;
	LOCK		();

	if (!(o = changeable(args, rp, "cancelled")))
	{
		UNLOCK();
		return;
	}
	push_state(o, "CANCEL PENDING", NULL);
	o->cur.cancelled = o->cur.pending;
	o->cur.pending = 0;
	push_state(o, "CANCELLED", NULL);
	UNLOCK();
	reply_order_id(rp, args[1]);
}

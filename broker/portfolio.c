/*
 * portfolio.c - what follows from fills: positions, holdings and margins,
 * and the /portfolio/positions, /portfolio/holdings and /user/margins
 * endpoints.
 *
 * Positions are keyed by (instrument, product).  Realised P&L uses the
 * average-cost method: closing quantity times (exit price - average entry
 * price); unrealised is the open quantity times (last price - average
 * price); pnl = realised + unrealised = (sell value - buy value) + quantity
 * x last price, as Kite reports it.  All positions are intraday (the
 * simulation starts flat), so "day" equals "net" and m2m equals pnl.
 * Holdings are the opening holdings (--holding) plus today's CNC buys as
 * t1_quantity.  Margins: each segment starts with its cash; an open
 * position blocks |quantity| x average price (x --mis-margin for MIS);
 * net = cash - blocked + realised; an order that would open more exposure
 * than net allows is REJECTED like Kite's RMS does.
 */
#include "broker.h"
#include "http.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct holding
{
	int			inst;
	long		qty;
	double		avg;
} holding;

static position *positions;
static int	npositions,
			cappositions;
static holding *holdings;
static int	nholdings,
			capholdings;
static int	nopening;			/* holdings[0..nopening) come from --holding */

void
portfolio_reset(void)
{
	free(positions);
	positions = NULL;
	npositions = cappositions = 0;
	nholdings = nopening;
}

void
portfolio_free(void)
{
	portfolio_reset();
	free(holdings);
	holdings = NULL;
	nholdings = nopening = capholdings = 0;
}

void
portfolio_add_holding(int inst, long qty, double avg)
{
	holdings = grow_array(holdings, nholdings, &capholdings, sizeof(holding), 8);
	holdings[nholdings++] = (holding)
	{
		inst, qty, avg
	};
	nopening = nholdings;
}

static position *
pos_find(int inst, const char *product, bool create)
{
	position   *p;

	for (int i = 0; i < npositions; i++)
		if (positions[i].inst == inst && strcmp(positions[i].product, product) == 0)
			return &positions[i];
	if (!create)
		return NULL;
	positions = grow_array(positions, npositions, &cappositions, sizeof(position), 16);
	p = &positions[npositions++];
	memset(p, 0, sizeof(*p));
	p->inst = inst;
	snprintf(p->product, sizeof(p->product), "%s", product);
	return p;
}

void
portfolio_fill(int inst, const char *product, bool buy, long qty, double price)
{
	position   *p = pos_find(inst, product, true);
	long		q = buy ? qty : -qty;

	if (buy)
	{
		p->buy_qty += qty;
		p->buy_value += qty * price;
	}
	else
	{
		p->sell_qty += qty;
		p->sell_value += qty * price;
	}
	if (p->net_qty == 0 || (p->net_qty > 0) == (q > 0))
	{
		long		held = labs(p->net_qty);

		p->avg_cost = (held * p->avg_cost + qty * price) / (double) (held + qty);
		p->net_qty += q;
		return;
	}
	{
		long		closing = qty < labs(p->net_qty) ? qty : labs(p->net_qty);

		p->realised += closing * (price - p->avg_cost) * (p->net_qty > 0 ? 1 : -1);
		p->net_qty += q;
		if (p->net_qty == 0)
			p->avg_cost = 0;
		else if (qty > closing)
			p->avg_cost = price;	/* flipped side: the rest opened at price */
	}
}

static bool
is_commodity(const instrument *in)
{
	return strcmp(in->exchange, "MCX") == 0 || strcmp(in->exchange, "NCO") == 0;
}

static double
margin_factor(const char *product)
{
	return strcmp(product, "MIS") == 0 ? g_cfg.mis_margin : 1.0;
}

typedef struct seg_totals
{
	double		cash,
				blocked,
				delivery,
				realised,
				unrealised;
} seg_totals;

static void
segment_totals(bool commodity, seg_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->cash = commodity ? g_cfg.commodity_cash : g_cfg.cash;
	for (int i = 0; i < npositions; i++)
	{
		const position *p = &positions[i];
		const instrument *in = market_get(p->inst);
		double		b;

		if (is_commodity(in) != commodity)
			continue;
		b = labs(p->net_qty) * p->avg_cost * margin_factor(p->product);
		t->blocked += b;
		if (strcmp(p->product, "CNC") == 0)
			t->delivery += b;
		t->realised += p->realised;
		t->unrealised += p->net_qty * (in->last - p->avg_cost);
	}
}

bool
portfolio_margin_ok(int inst, const char *product, bool buy, long qty, double price,
					char *msg, size_t msglen)
{
	const instrument *in = market_get(inst);
	position   *p = pos_find(inst, product, false);
	seg_totals	t;
	double		need,
				avail;

	if (p && p->net_qty != 0 && (p->net_qty > 0) != buy && qty <= labs(p->net_qty))
		return true;			/* reduces an open position */
	segment_totals(is_commodity(in), &t);
	need = qty * price * margin_factor(product);
	avail = t.cash - t.blocked + t.realised;
	if (need <= avail)
		return true;
	snprintf(msg, msglen,
			 "RMS:Margin Exceeds,Required:%.2f, Available:%.2f for entity account-%s across exchange across segment across product",
			 need, avail, g_cfg.user_id);
	return false;
}

/* ------------------------------------------------------------------ */
/* output                                                               */

static void
emit_position(jbuf *j, const position *p)
{
	const instrument *in = market_get(p->inst);
	double		value = p->sell_value - p->buy_value;
	double		unreal = p->net_qty * (in->last - p->avg_cost);
	double		bp = p->buy_qty ? p->buy_value / p->buy_qty : 0;
	double		sp = p->sell_qty ? p->sell_value / p->sell_qty : 0;

	j_obj(j);
	j_kstr(j, "tradingsymbol", in->tradingsymbol);
	j_kstr(j, "exchange", in->exchange);
	j_kint(j, "instrument_token", in->token);
	j_kstr(j, "product", p->product);
	j_kint(j, "quantity", p->net_qty);
	j_kint(j, "overnight_quantity", 0);
	j_kint(j, "multiplier", 1);
	j_knum(j, "average_price", p->avg_cost);
	j_knum(j, "close_price", in->close);
	j_knum(j, "last_price", in->last);
	j_knum(j, "value", value);
	j_knum(j, "pnl", p->realised + unreal);
	j_knum(j, "m2m", p->realised + unreal);
	j_knum(j, "unrealised", unreal);
	j_knum(j, "realised", p->realised);
	j_kint(j, "buy_quantity", p->buy_qty);
	j_knum(j, "buy_price", bp);
	j_knum(j, "buy_value", p->buy_value);
	j_knum(j, "buy_m2m", p->buy_value);
	j_kint(j, "sell_quantity", p->sell_qty);
	j_knum(j, "sell_price", sp);
	j_knum(j, "sell_value", p->sell_value);
	j_knum(j, "sell_m2m", p->sell_value);
	j_kint(j, "day_buy_quantity", p->buy_qty);
	j_knum(j, "day_buy_price", bp);
	j_knum(j, "day_buy_value", p->buy_value);
	j_kint(j, "day_sell_quantity", p->sell_qty);
	j_knum(j, "day_sell_price", sp);
	j_knum(j, "day_sell_value", p->sell_value);
	j_end_obj(j);
}

void
h_positions(struct req *r, char **args, reply *rp)
{
	jbuf		j;

	(void) r;
	(void) args;
	jb_init(&j);
	j_obj(&j);
	LOCK		();

	for (int side = 0; side < 2; side++)
	{
		j_karr(&j, side == 0 ? "net" : "day");
		for (int i = 0; i < npositions; i++)
			emit_position(&j, &positions[i]);
		j_end_arr(&j);
	}
	UNLOCK();
	j_end_obj(&j);
	reply_success(rp, &j);
}

static void
emit_holding(jbuf *j, const instrument *in, long qty, long t1, long used, double avg)
{
	char		isin[16],
				date[16],
				adate[32];
	long		held = qty + t1 - used;

	snprintf(isin, sizeof(isin), "INE%07ld01", in->token % 10000000L);
	fmt_ist_date(now_epoch(), date, sizeof(date));
	snprintf(adate, sizeof(adate), "%s 00:00:00", date);
	j_obj(j);
	j_kstr(j, "tradingsymbol", in->tradingsymbol);
	j_kstr(j, "exchange", in->exchange);
	j_kint(j, "instrument_token", in->token);
	j_kstr(j, "isin", isin);
	j_kstr(j, "product", "CNC");
	j_kint(j, "price", 0);
	j_kint(j, "quantity", qty);
	j_kint(j, "used_quantity", used);
	j_kint(j, "t1_quantity", t1);
	j_kint(j, "realised_quantity", qty);
	j_kint(j, "authorised_quantity", 0);
	j_kstr(j, "authorised_date", adate);
	j_empty_obj(j, "authorisation");
	j_kint(j, "opening_quantity", qty);
	j_kint(j, "short_quantity", 0);
	j_kint(j, "collateral_quantity", 0);
	j_kstr(j, "collateral_type", "");
	j_kbool(j, "discrepancy", false);
	j_knum(j, "average_price", avg);
	j_knum(j, "last_price", in->last);
	j_knum(j, "close_price", in->close);
	j_knum(j, "pnl", held * (in->last - avg));
	j_knum(j, "day_change", in->last - in->close);
	j_knum(j, "day_change_percentage", in->close ? (in->last - in->close) * 100.0 / in->close : 0);
	j_kobj(j, "mtf");
	j_kint(j, "quantity", 0);
	j_kint(j, "used_quantity", 0);
	j_kint(j, "average_price", 0);
	j_kint(j, "value", 0);
	j_kint(j, "initial_margin", 0);
	j_end_obj(j);
	j_end_obj(j);
}

void
h_holdings(struct req *r, char **args, reply *rp)
{
	jbuf		j;

	(void) r;
	(void) args;
	jb_init(&j);
	j_arr(&j);
	LOCK		();

	/* opening holdings, adjusted by today's CNC trades */
	for (int i = 0; i < nopening; i++)
	{
		const holding *h = &holdings[i];
		position   *p = pos_find(h->inst, "CNC", false);
		long		t1 = 0,
					used = 0;
		double		avg = h->avg;

		if (p && p->net_qty > 0)
		{
			t1 = p->net_qty;
			avg = (h->qty * h->avg + t1 * p->avg_cost) / (double) (h->qty + t1);
		}
		else if (p && p->net_qty < 0)
			used = -p->net_qty < h->qty ? -p->net_qty : h->qty;
		emit_holding(&j, market_get(h->inst), h->qty, t1, used, avg);
	}
	/* CNC buys in instruments without opening holdings */
	for (int i = 0; i < npositions; i++)
	{
		const position *p = &positions[i];
		bool		seen = false;

		if (strcmp(p->product, "CNC") != 0 || p->net_qty <= 0)
			continue;
		for (int k = 0; k < nopening && !seen; k++)
			seen = holdings[k].inst == p->inst;
		if (!seen)
			emit_holding(&j, market_get(p->inst), 0, p->net_qty, 0, p->avg_cost);
	}
	UNLOCK();
	j_end_arr(&j);
	reply_success(rp, &j);
}

static void
emit_segment(jbuf *j, bool commodity)
{
	seg_totals	t;
	double		net;

	segment_totals(commodity, &t);
	net = t.cash - t.blocked + t.realised;
	j_obj(j);
	j_kbool(j, "enabled", true);
	j_knum(j, "net", net);
	j_kobj(j, "available");
	j_kint(j, "adhoc_margin", 0);
	j_knum(j, "cash", t.cash);
	j_knum(j, "opening_balance", t.cash);
	j_knum(j, "live_balance", net);
	j_kint(j, "collateral", 0);
	j_kint(j, "intraday_payin", 0);
	j_end_obj(j);
	j_kobj(j, "utilised");
	j_knum(j, "debits", t.blocked);
	j_kint(j, "exposure", 0);
	j_knum(j, "m2m_realised", t.realised);
	j_knum(j, "m2m_unrealised", t.unrealised);
	j_kint(j, "option_premium", 0);
	j_kint(j, "payout", 0);
	j_knum(j, "span", t.blocked - t.delivery);
	j_kint(j, "holding_sales", 0);
	j_kint(j, "turnover", 0);
	j_kint(j, "liquid_collateral", 0);
	j_kint(j, "stock_collateral", 0);
	j_knum(j, "delivery", t.delivery);
	j_end_obj(j);
	j_end_obj(j);
}

void
h_margins(struct req *r, char **args, reply *rp)
{
	jbuf		j;

	(void) r;
	(void) args;
	jb_init(&j);
	j_obj(&j);
	LOCK		();

	j_key(&j, "equity");
	emit_segment(&j, false);
	j_key(&j, "commodity");
	emit_segment(&j, true);
	UNLOCK();
	j_end_obj(&j);
	reply_success(rp, &j);
}

void
h_margins_segment(struct req *r, char **args, reply *rp)
{
	jbuf		j;
	bool		commodity = strcmp(args[0], "commodity") == 0;

	(void) r;
	if (!commodity && strcmp(args[0], "equity") != 0)
	{
		reply_error(rp, 400, "InputException", "Invalid segment.");
		return;
	}
	jb_init(&j);
	LOCK		();

	emit_segment(&j, commodity);
	UNLOCK();
	reply_success(rp, &j);
}

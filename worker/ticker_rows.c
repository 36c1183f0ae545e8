/*-------------------------------------------------------------------------
 *
 * ticker_rows.c
 *	  How a decoded tick becomes rows, without a detour through text:
 *
 *	  - ticker_copy_row() appends one row of trading.ticks in COPY's binary
 *	    format (the server's COPY FROM then only copies integers; no
 *	    numeric, array or timestamp text is parsed);
 *	  - ticker_quote_add() adds one instrument's latest tick to typed
 *	    column arrays (numeric, bigint, timestamptz and text Datums) that
 *	    ticker_quote_params() turns into the array parameters of the quote
 *	    statements of ticker_store.c.
 *
 *	  Prices stay the packet's scaled integers until here and become exact
 *	  numerics with the segment's decimals (dscale 2, 4 or 7), so
 *	  83.1225000 is stored exactly as the exchange sent it.  Columns a mode
 *	  does not carry are NULL (see docs/STREAMING.md).
 *
 *	  No locks, no shared memory; memory comes from the current context.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ticker.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/* ---------------------------------------------------------------------
 * Binary COPY rows of trading.ticks
 * ---------------------------------------------------------------------
 */
#define TICKS_COLUMNS		26
#define NUMERIC_POS_SIGN	0x0000
#define NUMERIC_NEG_SIGN	0x4000

static const uint64 pow10_u64[] = {1, 10, 100, 1000, 10000, 100000, 1000000,
10000000, 100000000};

void
ticker_copy_header(StringInfo s)
{
	static const char sig[11] = "PGCOPY\n\377\r\n\0";

	appendBinaryStringInfo(s, sig, 11);
	pq_sendint32(s, 0);			/* flags */
	pq_sendint32(s, 0);			/* header extension */
}

void
ticker_copy_trailer(StringInfo s)
{
	pq_sendint16(s, (uint16) -1);
}

static void
put_null(StringInfo s)
{
	pq_sendint32(s, (uint32) -1);
}

static void
put_int8(StringInfo s, int64 v)
{
	pq_sendint32(s, 8);
	pq_sendint64(s, v);
}

static void
put_ts(StringInfo s, TimestampTz ts)
{
	put_int8(s, ts);
}

/* an epoch time in seconds (0: none) as timestamptz */
static void
put_epoch(StringInfo s, uint32 epoch)
{
	if (epoch == 0)
		put_null(s);
	else
		put_ts(s, time_t_to_timestamptz((pg_time_t) epoch));
}

/*
 * The send format of numeric (numeric_send) of v / 10^decimals with dscale
 * decimals: base-10000 digits, most significant first.
 */
static void
numeric_bytes(StringInfo s, int64 v, int decimals)
{
	int			fd = (decimals + 3) / 4 * 4;	/* fraction digits, whole
												 * groups */
	uint64		u = (uint64) (v < 0 ? -v : v) * pow10_u64[fd - decimals];
	uint16		dig[8];
	int			n = 0,
				low = 0;

	while (u > 0)
	{
		dig[n++] = (uint16) (u % 10000);	/* least significant first */
		u /= 10000;
	}
	while (low < n && dig[low] == 0)
		low++;					/* trailing zero groups */
	pq_sendint16(s, (uint16) (n - low));
	pq_sendint16(s, (uint16) (n == 0 ? 0 : n - fd / 4 - 1));	/* weight */
	pq_sendint16(s, v < 0 ? NUMERIC_NEG_SIGN : NUMERIC_POS_SIGN);
	pq_sendint16(s, (uint16) decimals);
	for (int i = n - 1; i >= low; i--)
		pq_sendint16(s, dig[i]);
}

/* a field of unknown length: its position, for field_end() */
static int
field_start(StringInfo s)
{
	int			pos = s->len;

	pq_sendint32(s, 0);
	return pos;
}

static void
field_end(StringInfo s, int pos)
{
	uint32		len = pg_hton32((uint32) (s->len - pos - 4));

	memcpy(s->data + pos, &len, 4);
}

static void
put_numeric(StringInfo s, int64 v, int decimals)
{
	int			pos = field_start(s);

	numeric_bytes(s, v, decimals);
	field_end(s, pos);
}

/* the send format of a one-dimensional array of five, without nulls */
static int
array_start(StringInfo s, Oid elemtype)
{
	int			pos = field_start(s);

	pq_sendint32(s, 1);			/* dimensions */
	pq_sendint32(s, 0);			/* no nulls */
	pq_sendint32(s, elemtype);
	pq_sendint32(s, 5);			/* dimension */
	pq_sendint32(s, 1);			/* lower bound */
	return pos;
}

static void
put_depth(StringInfo s, const TickerDepth *d, int decimals)
{
	int			pos;

	pos = array_start(s, NUMERICOID);
	for (int k = 0; k < 5; k++)
		put_numeric(s, d[k].price, decimals);
	field_end(s, pos);
	pos = array_start(s, INT8OID);
	for (int k = 0; k < 5; k++)
		put_int8(s, d[k].quantity);
	field_end(s, pos);
	pos = array_start(s, INT4OID);
	for (int k = 0; k < 5; k++)
	{
		pq_sendint32(s, 4);
		pq_sendint32(s, d[k].orders);
	}
	field_end(s, pos);
}

/* one row of trading.ticks, its columns in the table's order */
void
ticker_copy_row(StringInfo s, const TickerTick *t)
{
	bool		q = t->mode != TM_LTP;
	bool		tq = q && t->tradable;
	bool		full = t->mode == TM_FULL;
	const char *mode = ticker_mode_names[t->mode];

	pq_sendint16(s, TICKS_COLUMNS);
	put_int8(s, t->token);		/* instrument_token */
	put_ts(s, t->received_us);	/* received_at */
	put_epoch(s, full ? t->exchange_time : 0);	/* exchange_timestamp */
	pq_sendint32(s, strlen(mode));	/* mode */
	appendBinaryStringInfo(s, mode, strlen(mode));
	pq_sendint32(s, 1);			/* tradable */
	pq_sendbyte(s, t->tradable ? 1 : 0);
	put_numeric(s, t->last_price, t->decimals);
	if (tq)
	{
		put_int8(s, t->last_quantity);
		put_numeric(s, t->average_price, t->decimals);
		put_int8(s, t->volume);
		put_int8(s, t->buy_quantity);
		put_int8(s, t->sell_quantity);
	}
	else
		for (int i = 0; i < 5; i++)
			put_null(s);
	if (q)
	{
		put_numeric(s, t->open, t->decimals);
		put_numeric(s, t->high, t->decimals);
		put_numeric(s, t->low, t->decimals);
		put_numeric(s, t->close, t->decimals);
		put_numeric(s, (int64) t->last_price - (int64) t->close, t->decimals);	/* change */
	}
	else
		for (int i = 0; i < 5; i++)
			put_null(s);
	if (full && t->tradable)
	{
		put_epoch(s, t->last_trade_time);
		put_int8(s, t->oi);
		put_int8(s, t->oi_day_high);
		put_int8(s, t->oi_day_low);
		put_depth(s, &t->depth[0], t->decimals);
		put_depth(s, &t->depth[5], t->decimals);
	}
	else
		for (int i = 0; i < 10; i++)
			put_null(s);
}

/* ---------------------------------------------------------------------
 * Typed column arrays for the quote statements
 * ---------------------------------------------------------------------
 */

/* element type of each column, in the statements' parameter order */
static const Oid quote_elem[TICKER_QUOTE_COLS] = {
	TEXTOID,					/* instrument */
	INT8OID,					/* instrument_token */
	TEXTOID,					/* mode */
	NUMERICOID,					/* last_price */
	INT8OID,					/* last_quantity */
	NUMERICOID,					/* average_price */
	INT8OID, INT8OID, INT8OID,	/* volume, buy_quantity, sell_quantity */
	NUMERICOID, NUMERICOID, NUMERICOID, NUMERICOID, /* open, high, low, close */
	INT8OID,					/* oi */
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID	/* last_trade_time,
													 * quote_timestamp,
													 * updated_at */
};

void
ticker_quote_init(TickerQuoteCols *c, int cap)
{
	c->n = 0;
	c->cap = Max(cap, 1);
	for (int i = 0; i < TICKER_QUOTE_COLS; i++)
	{
		c->vals[i] = palloc(sizeof(Datum) * c->cap);
		c->nulls[i] = palloc(sizeof(bool) * c->cap);
	}
}

static void
set(TickerQuoteCols *c, int col, Datum v)
{
	c->vals[col][c->n] = v;
	c->nulls[col][c->n] = false;
}

static void
set_null(TickerQuoteCols *c, int col)
{
	c->vals[col][c->n] = (Datum) 0;
	c->nulls[col][c->n] = true;
}

static Datum
price(uint32 v, int decimals)
{
	return NumericGetDatum(int64_div_fast_to_numeric((int64) v, decimals));
}

/* one instrument's latest tick (cap must leave room) */
void
ticker_quote_add(TickerQuoteCols *c, const char *instrument, const TickerTick *t)
{
	bool		q = t->mode != TM_LTP;
	bool		tq = q && t->tradable;
	bool		full = t->mode == TM_FULL;

	Assert(c->n < c->cap);
	set(c, 0, CStringGetTextDatum(instrument));
	set(c, 1, Int64GetDatum((int64) t->token));
	set(c, 2, CStringGetTextDatum(ticker_mode_names[t->mode]));
	set(c, 3, price(t->last_price, t->decimals));
	if (tq)
	{
		set(c, 4, Int64GetDatum((int64) t->last_quantity));
		set(c, 5, price(t->average_price, t->decimals));
		set(c, 6, Int64GetDatum((int64) t->volume));
		set(c, 7, Int64GetDatum((int64) t->buy_quantity));
		set(c, 8, Int64GetDatum((int64) t->sell_quantity));
	}
	else
		for (int i = 4; i <= 8; i++)
			set_null(c, i);
	if (q)
	{
		set(c, 9, price(t->open, t->decimals));
		set(c, 10, price(t->high, t->decimals));
		set(c, 11, price(t->low, t->decimals));
		set(c, 12, price(t->close, t->decimals));
	}
	else
		for (int i = 9; i <= 12; i++)
			set_null(c, i);
	if (full && t->tradable)
		set(c, 13, Int64GetDatum((int64) t->oi));
	else
		set_null(c, 13);
	if (full && t->tradable && t->last_trade_time)
		set(c, 14, TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) t->last_trade_time)));
	else
		set_null(c, 14);
	if (full && t->exchange_time)
		set(c, 15, TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) t->exchange_time)));
	else
		set_null(c, 15);
	set(c, 16, TimestampTzGetDatum(t->received_us));
	c->n++;
}

/* the columns as array parameters: argtypes[] and values[] */
void
ticker_quote_params(TickerQuoteCols *c, Oid *argtypes, Datum *values)
{
	for (int i = 0; i < TICKER_QUOTE_COLS; i++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {c->n};
		int			lbs[1] = {1};

		get_typlenbyvalalign(quote_elem[i], &typlen, &typbyval, &typalign);
		argtypes[i] = get_array_type(quote_elem[i]);
		values[i] = PointerGetDatum(construct_md_array(c->vals[i], c->nulls[i], 1,
													   dims, lbs, quote_elem[i],
													   typlen, typbyval, typalign));
	}
}

/*-------------------------------------------------------------------------
 *
 * ticker_decode.c
 *	  Decoding of Kite's binary ticker frames (../shared/KITE_API.md,
 *	  "Streaming").  A frame is a big-endian uint16 packet count, then per
 *	  packet a uint16 length and the packet; a 1-byte frame is a heartbeat.
 *	  Packet layouts by length:
 *
 *	    8    ltp            token, last_price
 *	    28   index quote    + high, low, open, close, change
 *	    32   index full     + exchange timestamp
 *	    44   quote          token, last_price, last_quantity, average_price,
 *	                        volume, buy_quantity, sell_quantity, open, high,
 *	                        low, close
 *	    184  full           + last_trade_time, oi, oi_day_high, oi_day_low,
 *	                        exchange timestamp, 10 depth entries of 12 bytes
 *
 *	  Every length is checked before a byte is read: the count against the
 *	  room for packets, each packet's length against what is left and
 *	  against the five known lengths, index layouts (28, 32) against the
 *	  token's segment (9), and the frame must end exactly after its last
 *	  packet.  Anything else makes the whole frame malformed: it is counted
 *	  and dropped by the caller, never partly used.
 *
 *	  Prices stay integers here, with the number of decimals of the
 *	  token's segment (CDS, segment 3: 7; BCD, 6: 4; others 2), so that the
 *	  decimal text written to the tables is exact.
 *
 *	  No allocation, no ereport: pure functions, also used by the
 *	  SQL-callable trading.ticker_decode() for conformance tests.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ticker.h"

const char *const ticker_mode_names[3] = {"ltp", "quote", "full"};

static inline uint32
be32(const uint8 *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static inline uint16
be16(const uint8 *p)
{
	return (uint16) (((uint16) p[0] << 8) | p[1]);
}

int
ticker_decimals(uint32 token)
{
	switch (token & 0xff)
	{
		case 3:					/* CDS: currency derivatives */
			return 7;
		case 6:					/* BCD: BSE currency derivatives */
			return 4;
		default:
			return 2;
	}
}

/* v / 10^decimals as exact decimal text */
char *
ticker_price_text(uint32 v, int decimals, char *buf)
{
	static const uint32 pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};
	uint32		div = pow10[decimals];

	snprintf(buf, 24, "%u.%0*u", v / div, decimals, v % div);
	return buf;
}

static bool
decode_packet(const uint8 *p, uint16 len, int64 received_us, TickerTick *t,
			  const char **why)
{
	bool		index;

	memset(t, 0, sizeof(*t));
	if (len != 8 && len != 28 && len != 32 && len != 44 && len != 184)
	{
		*why = "packet of unknown length";
		return false;
	}
	t->token = be32(p);
	if (t->token == 0)
	{
		*why = "packet with instrument token 0";
		return false;
	}
	index = (t->token & 0xff) == 9;
	t->tradable = !index;
	t->decimals = (uint8) ticker_decimals(t->token);
	t->received_us = received_us;
	t->last_price = be32(p + 4);
	switch (len)
	{
		case 8:
			t->mode = TM_LTP;
			return true;
		case 28:
		case 32:
			if (!index)
			{
				*why = "index packet for a tradable instrument";
				return false;
			}
			t->mode = len == 28 ? TM_QUOTE : TM_FULL;
			t->high = be32(p + 8);
			t->low = be32(p + 12);
			t->open = be32(p + 16);
			t->close = be32(p + 20);
			/* bytes 24-28: change; recomputed from last and close */
			if (len == 32)
				t->exchange_time = be32(p + 28);
			return true;
		case 44:
		case 184:
			if (index)
			{
				*why = "tradable packet for an index";
				return false;
			}
			t->mode = len == 44 ? TM_QUOTE : TM_FULL;
			t->last_quantity = be32(p + 8);
			t->average_price = be32(p + 12);
			t->volume = be32(p + 16);
			t->buy_quantity = be32(p + 20);
			t->sell_quantity = be32(p + 24);
			t->open = be32(p + 28);
			t->high = be32(p + 32);
			t->low = be32(p + 36);
			t->close = be32(p + 40);
			if (len == 184)
			{
				t->last_trade_time = be32(p + 44);
				t->oi = be32(p + 48);
				t->oi_day_high = be32(p + 52);
				t->oi_day_low = be32(p + 56);
				t->exchange_time = be32(p + 60);
				for (int k = 0; k < 10; k++)
				{
					const uint8 *e = p + 64 + k * 12;

					t->depth[k].quantity = be32(e);
					t->depth[k].price = be32(e + 4);
					t->depth[k].orders = be16(e + 8);
				}
			}
			return true;
		default:
			*why = "packet of unknown length";
			return false;
	}
}

TickerFrameResult
ticker_decode_frame(const uint8 *buf, size_t len, int64 received_us,
					TickerTick *out, int max, int *n, const char **why)
{
	size_t		off;
	uint16		count;

	*n = 0;
	*why = NULL;
	if (len == 1)
		return TFR_HEARTBEAT;
	if (len < 2)
	{
		*why = "empty frame";
		return TFR_MALFORMED;
	}
	count = be16(buf);
	/* each packet needs at least 2 + 8 bytes */
	if ((size_t) count * 10 > len - 2)
	{
		*why = "packet count larger than the frame";
		return TFR_MALFORMED;
	}
	if (count > max)
	{
		*why = "more packets than the decoder has room for";
		return TFR_MALFORMED;
	}
	off = 2;
	for (int i = 0; i < count; i++)
	{
		uint16		plen;

		if (len - off < 2)
		{
			*why = "frame ends before a packet length";
			return TFR_MALFORMED;
		}
		plen = be16(buf + off);
		off += 2;
		if (plen > len - off)
		{
			*why = "frame ends inside a packet";
			return TFR_MALFORMED;
		}
		if (!decode_packet(buf + off, plen, received_us, &out[i], why))
			return TFR_MALFORMED;
		off += plen;
	}
	if (off != len)
	{
		*why = "bytes after the last packet";
		return TFR_MALFORMED;
	}
	*n = count;
	return TFR_OK;
}

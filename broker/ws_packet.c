/*
 * ws_packet.c - encoding of one instrument's state as a Kite ticker packet
 * (docs in ../shared/KITE_API.md, "Streaming"): big-endian, prices as
 * integers scaled by the segment's divisor (100; CDS, token & 0xff == 3:
 * 1e7; BCD, 6: 1e4).  Indices (segment 9) get the 8/28/32-byte forms,
 * tradable instruments the 8/44/184-byte forms.  Needs g_lock (reads the
 * instrument and the synthetic depth).
 */
#include "broker.h"

#include <math.h>
#include <string.h>

enum
{
	MODE_LTP = 0, MODE_QUOTE, MODE_FULL
};

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (v >> 24) & 0xff;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static uint32_t
scaled(double price, double divisor)
{
	double		v = llround(price * divisor);

	if (v < 0)
		return 0;
	if (v > 4294967295.0)
		return 0xffffffffu;
	return (uint32_t) v;
}

static uint32_t
clamp32(long v)
{
	if (v < 0)
		return 0;
	if (v > 0xffffffffL)
		return 0xffffffffu;
	return (uint32_t) v;
}

double		ws_divisor(long token);

double
ws_divisor(long token)
{
	switch (token & 0xff)
	{
		case 3:
			return 1e7;
		case 6:
			return 1e4;
		default:
			return 100.0;
	}
}

void		ws_encode_packet(const instrument *in, int mode, unsigned char *out, int *len);

void
ws_encode_packet(const instrument *in, int mode, unsigned char *out, int *len)
{
	double		d = ws_divisor(in->token);
	bool		index = (in->token & 0xff) == 9;
	uint32_t	now = (uint32_t) now_epoch();

	put32(out, (uint32_t) in->token);
	put32(out + 4, scaled(in->last, d));
	if (mode == MODE_LTP)
	{
		*len = 8;
		return;
	}
	if (index)
	{
		put32(out + 8, scaled(in->high, d));
		put32(out + 12, scaled(in->low, d));
		put32(out + 16, scaled(in->open, d));
		put32(out + 20, scaled(in->close, d));
		/* change: last - close, as a signed integer, like Kite */
		put32(out + 24, (uint32_t) (int32_t) llround((in->last - in->close) * d));
		if (mode == MODE_FULL)
		{
			put32(out + 28, now);
			*len = 32;
		}
		else
			*len = 28;
		return;
	}
	{
		long		bq = 0,
					sq = 0;
		double		bp[5],
					sp[5];
		long		bqty[5],
					sqty[5];
		int			bo[5],
					so[5];

		for (int k = 0; k < 5; k++)
		{
			market_depth_level(in, -1, k, &bp[k], &bqty[k], &bo[k]);
			market_depth_level(in, 1, k, &sp[k], &sqty[k], &so[k]);
			bq += bqty[k] * 10;
			sq += sqty[k] * 10;
		}
		put32(out + 8, clamp32(in->last_qty));
		put32(out + 12, scaled(in->avg_traded, d));
		put32(out + 16, clamp32(in->volume));
		put32(out + 20, clamp32(bq));
		put32(out + 24, clamp32(sq));
		put32(out + 28, scaled(in->open, d));
		put32(out + 32, scaled(in->high, d));
		put32(out + 36, scaled(in->low, d));
		put32(out + 40, scaled(in->close, d));
		if (mode != MODE_FULL)
		{
			*len = 44;
			return;
		}
		put32(out + 44, (uint32_t) in->last_trade_time);
		put32(out + 48, 0);		/* oi */
		put32(out + 52, 0);		/* oi day high */
		put32(out + 56, 0);		/* oi day low */
		put32(out + 60, now);
		for (int k = 0; k < 10; k++)
		{
			unsigned char *e = out + 64 + k * 12;
			bool		buy = k < 5;
			int			i = buy ? k : k - 5;

			put32(e, clamp32(buy ? bqty[i] : sqty[i]));
			put32(e + 4, scaled(buy ? bp[i] : sp[i], d));
			e[8] = ((buy ? bo[i] : so[i]) >> 8) & 0xff;
			e[9] = (buy ? bo[i] : so[i]) & 0xff;
			e[10] = e[11] = 0;
		}
		*len = 184;
	}
}

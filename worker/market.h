/*-------------------------------------------------------------------------
 *
 * market.h
 *	  The market data capability: the instrument master and historical
 *	  candles (docs/MARKET_DATA.md).  market_worker.c is the background
 *	  worker "trading market data" (schedule, backfill loop, GUCs, shared
 *	  memory), market_instruments.c loads GET /instruments with COPY,
 *	  market_candles.c runs backfill requests, market_http.c is its small
 *	  blocking libcurl helper.
 *
 * Shared memory (MarketShared): pid and procno of the worker under the
 * spinlock mutex, held for a few instructions only; database_seen and the
 * backfill counters are atomics, written by the worker alone (plain
 * pg_atomic_write after a read: one writer) and read by anyone
 * (trading.market_worker_status); they start at 0 with the server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_MARKET_H
#define TRADING_MARKET_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/spin.h"

/* SQLSTATEs of the market data capability (TR5xx), see docs/SQLSTATES.md */
#define ERRCODE_TRADING_MARKET_UNREACHABLE	MAKE_SQLSTATE('T','R','5','0','1')
#define ERRCODE_TRADING_MARKET_BAD_DUMP		MAKE_SQLSTATE('T','R','5','0','2')
#define ERRCODE_TRADING_MARKET_UNKNOWN_INSTRUMENT MAKE_SQLSTATE('T','R','5','0','3')
#define ERRCODE_TRADING_MARKET_RETRY		MAKE_SQLSTATE('T','R','5','0','4')

typedef struct MarketShared
{
	slock_t		mutex;
	int			pid;
	int			procno;			/* -1 when not running */
	pg_atomic_uint32 database_seen;
	pg_atomic_uint64 requests;	/* backfill replies applied */
	pg_atomic_uint64 retries;	/* failed requests that are retried */
	pg_atomic_uint64 failures;	/* failed requests that failed their job */
	pg_atomic_uint64 candles;	/* candles written */
	pg_atomic_uint64 rate_waits;	/* requests that waited for
									 * kite.historical */
} MarketShared;

/* count n more in one of MarketShared's counters (the worker only) */
static inline void
market_count(pg_atomic_uint64 *counter, uint64 n)
{
	pg_atomic_write_u64(counter, pg_atomic_read_u64(counter) + n);
}

extern MarketShared *market_shared;

/* GUCs (market_worker.c) */
extern char *market_refresh_time;
extern int	market_clock_offset_s;
extern int	market_rate_margin_ms;
extern char *market_historical_max_days;

/*
 * market_http.c: one blocking GET; never raises inside libcurl.  auth_header
 * is the whole header line ("Authorization: token ...") or NULL.
 */
typedef struct MarketResponse
{
	int			curl_code;		/* 0 = a reply arrived */
	long		http_status;
	bool		is_json;
	bool		too_large;
	char	   *body;			/* NUL-terminated, palloc'd in the caller's
								 * context */
	Size		len;
	int64		ttfb_us;		/* time to the reply's first byte; 0 = none */
	int64		sent_us;		/* trading_monotonic_us() when the request
								 * left; 0 = unknown */
	char		errbuf[256];
} MarketResponse;

extern void market_http_get(const char *url, const char *auth_header,
							long timeout_ms, MarketResponse *resp);
#define MARKET_AHEAD 3			/* requests sent ahead at most */
extern bool market_http_start(int slot, const char *url, const char *auth_header,
							  long timeout_ms, MarketResponse *resp);
extern void market_http_finish(int slot, MarketResponse *resp);
extern void market_http_abandon(int slot);

/* market_instruments.c */
extern int64 market_load_instruments(const char *trigger, MarketResponse *resp,
									 TimestampTz started);
extern void market_fetch_instruments(MarketResponse *resp);

/* market_candles.c: the backfill loop's unit of work */
extern bool market_backfill_step(long *wait_ms);

#endif							/* TRADING_MARKET_H */

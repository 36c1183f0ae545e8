/*-------------------------------------------------------------------------
 *
 * ticker.h
 *	  Declarations shared by the files of the ticker, the background worker
 *	  "trading ticker" that streams Kite's WebSocket ticker into SQL:
 *
 *	  ticker.c			module entry points (GUCs, registration, shared
 *						memory), the main loop, subscriptions, deadlines
 *	  ticker_ws.c		libwebsockets: the client context, up to three
 *						connections, pings, sending and receiving
 *	  ticker_decode.c	the binary protocol: frames and packets, every
 *						length checked
 *	  ticker_store.c	transactions: the watchlist, batched writes of
 *						ticks (COPY) and quotes, order updates
 *	  ticker_sql.c		SQL-callable functions: status, decode, trigger
 *
 * Shared memory ("trading.ticker") holds the worker's live state so that
 * trading.ticker_status works from any backend.
 *
 * Locking rules
 * -------------
 * - Counters are pg_atomic_uint64, written by the worker only (config_gen:
 *   by the watchlist trigger too), read by anyone without a lock.
 * - Everything else (states, times, reasons, pid) is guarded by the one
 *   spinlock "mutex", held only to copy a few fields; nothing that can
 *   error or allocate happens under it.  The worker is the only writer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_TICKER_H
#define TRADING_TICKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/hsearch.h"

#define TICKER_MAX_CONNS		3
#define TICKER_MAX_PER_CONN		3000
#define TICKER_REASON_LEN		96

/* worker states (trading.ticker_status.worker_state) */
typedef enum TickerWorkerState
{
	TWS_NOT_RUNNING = 0,
	TWS_STARTING,
	TWS_WAITING_DATABASE,
	TWS_WAITING_EXTENSION,
	TWS_DISABLED,				/* trading.ticker_enabled = off */
	TWS_NO_SESSION,
	TWS_SESSION_EXPIRED,
	TWS_IDLE,					/* nothing to subscribe */
	TWS_STREAMING
} TickerWorkerState;

/* connection states */
typedef enum TickerConnState
{
	TCS_UNUSED = 0,				/* not needed */
	TCS_WAITING,				/* waiting to reconnect (backoff) */
	TCS_CONNECTING,
	TCS_CONNECTED,
	TCS_CLOSING
} TickerConnState;

typedef struct TickerConnShared
{
	/* under mutex */
	int			state;			/* TickerConnState */
	int			subscriptions;
	TimestampTz connected_at;
	TimestampTz last_packet_at;
	TimestampTz last_pong_at;
	TimestampTz last_reconnect_at;
	TimestampTz next_attempt_at;
	char		last_reason[TICKER_REASON_LEN];
	double		ticks_per_second;
	/* atomics */
	pg_atomic_uint64 ticks_total;
	pg_atomic_uint64 frames_total;
	pg_atomic_uint64 heartbeats_total;
	pg_atomic_uint64 malformed_total;
	pg_atomic_uint64 reconnects_total;
	pg_atomic_uint64 pings_total;
	pg_atomic_uint64 pongs_total;
} TickerConnShared;

#define TICKER_LAT_BUCKETS 12
extern const double ticker_latency_bounds[TICKER_LAT_BUCKETS];

typedef struct TickerShared
{
	slock_t		mutex;
	int			state;			/* TickerWorkerState */
	pid_t		pid;
	int			procno;			/* -1 when not running */
	bool		streaming;		/* every needed connection is up */
	TimestampTz started_at;
	pg_atomic_uint32 database_seen;
	pg_atomic_uint64 config_gen;	/* bumped by the watchlist trigger */
	pg_atomic_uint64 ticks_stored;	/* rows written to trading.ticks */
	pg_atomic_uint64 ticks_not_stored;	/* opted out */
	pg_atomic_uint64 quotes_written;
	pg_atomic_uint64 ticks_dropped; /* lost: buffer overflow */
	pg_atomic_uint64 flushes;
	pg_atomic_uint64 flush_errors;
	pg_atomic_uint64 copy_us;	/* time spent in the COPY of ticks */
	pg_atomic_uint64 quotes_us; /* time spent upserting quotes */
	pg_atomic_uint64 order_updates;
	pg_atomic_uint64 order_update_errors;
	pg_atomic_uint64 unsubscribed_over_limit;	/* watchlist beyond 3 x 3000 */
	/* tick-to-row latency histogram (cumulative at publication) */
	pg_atomic_uint64 latency_bucket[TICKER_LAT_BUCKETS];
	pg_atomic_uint64 latency_count;
	pg_atomic_uint64 latency_sum_us;
	TickerConnShared conn[TICKER_MAX_CONNS];
} TickerShared;

extern TickerShared *tk_shared;

/* ---- GUCs (ticker.c) ---- */
extern char *ticker_url;
extern int	ticker_flush_interval_ms;
extern int	ticker_quote_interval_ms;
extern int	ticker_retention_days;

/* ---- ticker_decode.c ---- */
typedef enum TickerMode
{
	TM_LTP = 0,
	TM_QUOTE,
	TM_FULL
} TickerMode;

extern const char *const ticker_mode_names[3];

typedef struct TickerDepth
{
	uint32		quantity;
	uint32		price;			/* scaled by the divisor */
	uint16		orders;
} TickerDepth;

typedef struct TickerTick
{
	uint32		token;
	uint8		mode;			/* TickerMode */
	bool		tradable;
	uint8		decimals;		/* 2, 4 or 7 */
	int64		received_us;	/* TimestampTz of the frame */
	uint32		last_price;
	uint32		last_quantity;
	uint32		average_price;
	uint32		volume;
	uint32		buy_quantity;
	uint32		sell_quantity;
	uint32		open,
				high,
				low,
				close;
	uint32		last_trade_time;	/* epoch seconds, 0 = none */
	uint32		oi,
				oi_day_high,
				oi_day_low;
	uint32		exchange_time;	/* epoch seconds, 0 = none */
	TickerDepth depth[10];		/* 5 buy, then 5 sell */
} TickerTick;

typedef enum TickerFrameResult
{
	TFR_OK = 0,
	TFR_HEARTBEAT,
	TFR_MALFORMED
} TickerFrameResult;

/*
 * Decode one binary frame into out[] (room for max packets); *n is the
 * number decoded.  On TFR_MALFORMED, why says what was wrong and nothing
 * of the frame may be used.
 */
extern TickerFrameResult ticker_decode_frame(const uint8 *buf, size_t len,
											 int64 received_us,
											 TickerTick *out, int max, int *n,
											 const char **why);

/* the price as exact decimal text ("1573.70"); buf of 24 bytes */
extern char *ticker_price_text(uint32 v, int decimals, char *buf);
extern int	ticker_decimals(uint32 token);

/* ---- ticker_rows.c ---- */
extern void ticker_copy_header(StringInfo s);
extern void ticker_copy_row(StringInfo s, const TickerTick *t);
extern void ticker_copy_trailer(StringInfo s);

#define TICKER_QUOTE_COLS	17

/* the quote statements' parameters, column by column */
typedef struct TickerQuoteCols
{
	int			n;				/* rows added */
	int			cap;
	Datum	   *vals[TICKER_QUOTE_COLS];
	bool	   *nulls[TICKER_QUOTE_COLS];
} TickerQuoteCols;

extern void ticker_quote_init(TickerQuoteCols *c, int cap);
extern void ticker_quote_add(TickerQuoteCols *c, const char *instrument,
							 const TickerTick *t);
extern void ticker_quote_params(TickerQuoteCols *c, Oid *argtypes, Datum *values);

/* ---- ticker_store.c ---- */

/* one watched instrument (the worker's subscription table) */
typedef struct TickerEntry
{
	uint32		token;			/* hash key */
	char		instrument[64]; /* EXCHANGE:SYMBOL */
	uint8		mode;			/* wanted */
	bool		store;			/* store ticks (watchlist.store_ticks) */
	bool		seen;			/* in the last load */
	bool		quoted;			/* its trading.quotes row exists */
	int8		conn;			/* assigned connection, -1 = none */
	int8		sent_mode;		/* mode the connection has, -1 = not
								 * subscribed */
	bool		quote_dirty;	/* latest is not yet in trading.quotes */
	TickerTick	latest;			/* its latest written tick */
} TickerEntry;

/* ticks per transaction (a slice), quotes per transaction */
#define TICKER_FLUSH_SLICE		2000
#define TICKER_QUOTE_SLICE		1000

extern void ticker_store_init(void);
extern bool ticker_load_watchlist(HTAB *entries, int *count);
extern void ticker_buffer_ticks(const TickerTick *ticks, int n);
extern int	ticker_buffered(void);
extern int64 ticker_oldest_buffered_us(void);
extern void ticker_flush(HTAB *entries);
extern bool ticker_quotes_due(void);
extern void ticker_write_quotes(HTAB *entries);
extern void ticker_apply_order_update(const char *msg, size_t len);
extern void ticker_maintain_partitions(void);

/* ---- ticker_ws.c ---- */
extern void ticker_ws_init(void);
extern void ticker_ws_shutdown(void);
extern void ticker_ws_service(bool wait);
extern bool ticker_ws_connect(int k, const char *url_base, const char *api_key,
							  const char *access_token);
extern void ticker_ws_close(int k, const char *reason);
extern bool ticker_ws_send_text(int k, const char *text, size_t len);
extern void ticker_ws_want_ping(int k);
extern bool ticker_ws_busy(int k);	/* messages still queued */

/* events from ticker_ws.c to ticker.c */
extern void ticker_on_established(int k);
extern void ticker_on_closed(int k, const char *reason, int http_status);
extern void ticker_on_binary(int k, const uint8 *buf, size_t len);
extern void ticker_on_text(int k, const char *buf, size_t len);
extern void ticker_on_pong(int k);

/* ---- ticker.c, for the broker worker and ticker_sql.c ---- */
extern bool ticker_streaming(void);
extern void ticker_config_changed_signal(void);
extern const char *ticker_worker_state_name(int s);
extern const char *ticker_conn_state_name(int s);

#endif							/* TRADING_TICKER_H */

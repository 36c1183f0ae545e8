/*-------------------------------------------------------------------------
 *
 * ticker.c
 *	  The ticker: a background worker ("trading ticker") that streams
 *	  Kite's WebSocket ticker into trading.ticks and trading.quotes and
 *	  applies the order updates it pushes.  This file holds the module
 *	  entry points (GUCs, registration, shared memory), the main loop, the
 *	  subscriptions and the deadlines; WebSocket is in ticker_ws.c,
 *	  decoding in ticker_decode.c, transactions in ticker_store.c.
 *
 * Lifecycle: started once recovery has finished (never on a standby),
 * restarted 5 s after an error exit.  It waits (naps) while the installed
 * extension is older than 1.1, while trading.ticker_enabled is off, and
 * while there is no usable session (trading.broker_session, shared with
 * the broker worker; a new session wakes it through the broker worker's
 * session generation).
 *
 * Subscriptions: the watchlist (trading.ticker_watchlist) is loaded when
 * its trigger bumps config_gen and sets this worker's latch (the loop sees
 * it within one 10 ms service round), and every 5 s as a safety net.  Each
 * token stays on the connection it was given; a new token goes to the
 * least loaded connection with room (at most 3000 each, at most 3
 * connections).  Differences are sent to the live connections as
 * subscribe, unsubscribe and mode messages, never by reconnecting.  After
 * a reconnect every subscription and mode of that connection is sent again.
 *
 * It cannot die silently: a ping every trading.ticker_ping_interval, and
 * a reconnect when no pong came for trading.ticker_pong_timeout, when no
 * frame (ticks or heartbeats) came for trading.ticker_data_timeout while
 * subscribed during trading.ticker_market_hours, when a malformed frame
 * arrives, or when the server closes.  Reconnects back off exponentially
 * (trading.ticker_reconnect_min .. _max) with equal jitter.  A handshake
 * refused with HTTP 403 (TokenException) marks the session expired, like
 * the poller does, and waits for a new one.
 *
 * Shared memory and its locking rules: see ticker.h.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include <math.h>

#include "bgw_common.h"
#include "broker_worker.h"
#include "ticker.h"

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ticker_worker_main(Datum main_arg);

TickerShared *tk_shared = NULL;

const double ticker_latency_bounds[TICKER_LAT_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 1e30
};

static const char *const worker_state_names[] = {
	"not_running", "starting", "waiting_for_database", "waiting_for_extension",
	"disabled", "no_session", "session_expired", "idle", "streaming"
};
static const char *const conn_state_names[] = {
	"unused", "waiting", "connecting", "connected", "closing"
};

/* GUCs */
static bool ticker_worker_enabled = true;
static bool ticker_enabled = true;
char	   *ticker_url = NULL;
int			ticker_flush_interval_ms = 25;
int			ticker_quote_interval_ms = 100;
int			ticker_retention_days = 30;
static int	ticker_ping_interval_ms = 2500;
static int	ticker_pong_timeout_ms = 5000;
static int	ticker_data_timeout_ms = 10000;
static char *ticker_market_hours = NULL;
static int	ticker_reconnect_min_ms = 2000;
static int	ticker_reconnect_max_ms = 60000;

#define RELOAD_EVERY_US		(5 * 1000000)
#define RETENTION_EVERY_US	((int64) 3600 * 1000000)
#define READ_DRAIN_US		5000

/* ---------------------------------------------------------------------
 * Module entry points
 * ---------------------------------------------------------------------
 */
void
ticker_init(void)
{
	DefineCustomBoolVariable("trading.ticker_worker",
							 "Start the ticker worker.",
							 "When off, the postmaster does not start the worker that streams the WebSocket ticker.",
							 &ticker_worker_enabled, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("trading.ticker_enabled",
							 "Stream the ticker (off closes the connections).",
							 NULL, &ticker_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("trading.ticker_url",
							   "URL of the Kite WebSocket ticker.",
							   NULL, &ticker_url, "wss://ws.kite.trade",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_flush_interval",
							"Longest time a tick waits in the ticker's buffer before it is written.",
							NULL, &ticker_flush_interval_ms, 25, 1, 10000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_quote_interval",
							"Time the latest ticks gather before they are written to trading.quotes.",
							"An instrument's quote row is rewritten at most once per interval, with its latest tick; ticks are written first.",
							&ticker_quote_interval_ms, 100, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_retention",
							"Days of ticks kept in trading.ticks (0 keeps all).",
							NULL, &ticker_retention_days, 30, 0, 36500,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_ping_interval",
							"Time between the ticker's WebSocket pings.",
							NULL, &ticker_ping_interval_ms, 2500, 100, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_pong_timeout",
							"Reconnect when no pong arrived for this long.",
							NULL, &ticker_pong_timeout_ms, 5000, 200, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_data_timeout",
							"Reconnect when a subscribed connection received nothing for this long during market hours.",
							NULL, &ticker_data_timeout_ms, 10000, 200, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("trading.ticker_market_hours",
							   "When the data watchdog applies: HH:MM-HH:MM IST on weekdays, or 'always'.",
							   NULL, &ticker_market_hours, "09:15-15:30",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_reconnect_min",
							"First reconnect delay of the ticker (doubles up to trading.ticker_reconnect_max).",
							NULL, &ticker_reconnect_min_ms, 2000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.ticker_reconnect_max",
							"Longest reconnect delay of the ticker.",
							NULL, &ticker_reconnect_max_ms, 60000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!ticker_worker_enabled)
		return;
	trading_register_worker("ticker_worker_main", "trading ticker",
							BgWorkerStart_RecoveryFinished, 5);
}

void
ticker_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(TickerShared)));
}

void
ticker_shmem_startup(void)
{
	bool		found;

	tk_shared = ShmemInitStruct("trading.ticker", sizeof(TickerShared), &found);
	if (found)
		return;
	memset(tk_shared, 0, sizeof(TickerShared));
	SpinLockInit(&tk_shared->mutex);
	tk_shared->procno = -1;
	pg_atomic_init_u32(&tk_shared->database_seen, 1);
	pg_atomic_init_u64(&tk_shared->config_gen, 0);
	pg_atomic_init_u64(&tk_shared->ticks_stored, 0);
	pg_atomic_init_u64(&tk_shared->ticks_not_stored, 0);
	pg_atomic_init_u64(&tk_shared->quotes_written, 0);
	pg_atomic_init_u64(&tk_shared->ticks_dropped, 0);
	pg_atomic_init_u64(&tk_shared->flushes, 0);
	pg_atomic_init_u64(&tk_shared->flush_errors, 0);
	pg_atomic_init_u64(&tk_shared->copy_us, 0);
	pg_atomic_init_u64(&tk_shared->quotes_us, 0);
	pg_atomic_init_u64(&tk_shared->order_updates, 0);
	pg_atomic_init_u64(&tk_shared->order_update_errors, 0);
	pg_atomic_init_u64(&tk_shared->unsubscribed_over_limit, 0);
	pg_atomic_init_u64(&tk_shared->latency_count, 0);
	pg_atomic_init_u64(&tk_shared->latency_sum_us, 0);
	for (int b = 0; b < TICKER_LAT_BUCKETS; b++)
		pg_atomic_init_u64(&tk_shared->latency_bucket[b], 0);
	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		TickerConnShared *c = &tk_shared->conn[k];

		pg_atomic_init_u64(&c->ticks_total, 0);
		pg_atomic_init_u64(&c->frames_total, 0);
		pg_atomic_init_u64(&c->heartbeats_total, 0);
		pg_atomic_init_u64(&c->malformed_total, 0);
		pg_atomic_init_u64(&c->reconnects_total, 0);
		pg_atomic_init_u64(&c->pings_total, 0);
		pg_atomic_init_u64(&c->pongs_total, 0);
	}
}

/* the watchlist changed: make the worker reload (any backend) */
void
ticker_config_changed_signal(void)
{
	int			procno;

	if (tk_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&tk_shared->config_gen, 1);
	SpinLockAcquire(&tk_shared->mutex);
	procno = tk_shared->procno;
	SpinLockRelease(&tk_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* polling of quotes pauses for streamed instruments while this is true */
bool
ticker_streaming(void)
{
	bool		s;

	if (tk_shared == NULL)
		return false;
	SpinLockAcquire(&tk_shared->mutex);
	s = tk_shared->streaming;
	SpinLockRelease(&tk_shared->mutex);
	return s;
}

/* ---------------------------------------------------------------------
 * The worker's state
 * ---------------------------------------------------------------------
 */
typedef struct Conn
{
	TickerConnState state;
	int			assigned;		/* tokens assigned to it */
	int			failures;		/* consecutive, for the backoff */
	int64		next_attempt_us;
	int64		connected_us;
	int64		last_frame_us;
	int64		last_ping_us;
	int64		last_pong_us;
	bool		dirty;			/* subscriptions to send */
	bool		got_data;		/* a frame since connecting */
	uint64		ticks_at_rate;	/* for ticks per second */
	int64		rate_at_us;
	List	   *unsub;			/* tokens to unsubscribe (uint32 as int) */
} Conn;

static Conn conns[TICKER_MAX_CONNS];
static HTAB *entries;
static int	nentries;
static MemoryContext LoopContext;
static MemoryContext KeepContext;
static BrokerSession session;
static MemoryContext SessionContext;
static char *api_key;
static char *access_token;
static uint64 seen_config_gen;
static uint64 seen_session_gen;
static int64 last_reload_us;
static int64 last_retention_us;
static bool reload_wanted = true;
static bool session_wanted = true;
static bool session_expired = false;
static List *pending_orders;	/* text frames of type order, in KeepContext */
static TickerTick *decode_buf;
static uint64 received_events;	/* frames and pongs, for the read loop */

static void
set_worker_state(TickerWorkerState s)
{
	SpinLockAcquire(&tk_shared->mutex);
	tk_shared->state = s;
	SpinLockRelease(&tk_shared->mutex);
}

static void
publish_conn(int k)
{
	Conn	   *c = &conns[k];
	TickerConnShared *sc = &tk_shared->conn[k];
	int64		now = trading_monotonic_us();
	TimestampTz now_ts = GetCurrentTimestamp();
	uint64		ticks = pg_atomic_read_u64(&sc->ticks_total);
	double		rate = -1;

	if (c->state == TCS_CONNECTED && now - c->rate_at_us >= 1000000)
	{
		rate = (double) (ticks - c->ticks_at_rate) * 1e6 / (double) (now - c->rate_at_us);
		c->ticks_at_rate = ticks;
		c->rate_at_us = now;
	}
	SpinLockAcquire(&tk_shared->mutex);
	sc->state = c->state;
	sc->subscriptions = c->state == TCS_UNUSED ? 0 : c->assigned;
	sc->next_attempt_at = c->state == TCS_WAITING ?
		now_ts + (c->next_attempt_us - now) : 0;
	if (rate >= 0)
		sc->ticks_per_second = rate;
	if (c->state != TCS_CONNECTED)
		sc->ticks_per_second = 0;
	SpinLockRelease(&tk_shared->mutex);
}

static void
set_streaming(bool on)
{
	bool		was;

	SpinLockAcquire(&tk_shared->mutex);
	was = tk_shared->streaming;
	tk_shared->streaming = on;
	SpinLockRelease(&tk_shared->mutex);
	if (was != on)
	{
		/* the broker worker re-reads which quotes it polls */
		pg_atomic_fetch_add_u64(&bw_shared->config_gen, 1);
		broker_worker_wake();
	}
}

static void
worker_exit(void)
{
	SpinLockAcquire(&tk_shared->mutex);
	tk_shared->state = TWS_NOT_RUNNING;
	tk_shared->pid = 0;
	tk_shared->procno = -1;
	tk_shared->streaming = false;
	for (int k = 0; k < TICKER_MAX_CONNS; k++)
		tk_shared->conn[k].state = TCS_UNUSED;
	SpinLockRelease(&tk_shared->mutex);
	ticker_ws_shutdown();
}

static int64
backoff_us(int failures)
{
	double		delay = (double) ticker_reconnect_min_ms * pow(2.0, Min(failures - 1, 20));

	delay = Min(delay, (double) ticker_reconnect_max_ms);
	delay = delay / 2 + pg_prng_double(&pg_global_prng_state) * delay / 2;
	return (int64) (delay * 1000);
}

/* ---------------------------------------------------------------------
 * Events from ticker_ws.c (inside the library's callbacks: no ERROR)
 * ---------------------------------------------------------------------
 */
void
ticker_on_established(int k)
{
	Conn	   *c = &conns[k];
	HASH_SEQ_STATUS seq;
	TickerEntry *e;
	int64		now = trading_monotonic_us();

	c->state = TCS_CONNECTED;
	c->connected_us = c->last_frame_us = c->last_pong_us = c->last_ping_us = now;
	c->rate_at_us = now;
	c->ticks_at_rate = pg_atomic_read_u64(&tk_shared->conn[k].ticks_total);
	c->got_data = false;
	c->dirty = true;
	list_free(c->unsub);
	c->unsub = NIL;
	/* a new connection has no subscriptions: restore them all */
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->conn == k)
			e->sent_mode = -1;
	SpinLockAcquire(&tk_shared->mutex);
	tk_shared->conn[k].connected_at = GetCurrentTimestamp();
	tk_shared->conn[k].last_pong_at = tk_shared->conn[k].connected_at;
	SpinLockRelease(&tk_shared->mutex);
	ereport(LOG,
			(errmsg("trading ticker connection %d established", k + 1)));
}

void
ticker_on_closed(int k, const char *reason, int http_status)
{
	Conn	   *c = &conns[k];
	bool		was_connected = c->state == TCS_CONNECTED || c->state == TCS_CLOSING;

	if (c->got_data)
		c->failures = 0;
	c->failures++;
	c->state = TCS_WAITING;
	c->next_attempt_us = trading_monotonic_us() + backoff_us(c->failures);
	pg_atomic_fetch_add_u64(&tk_shared->conn[k].reconnects_total, 1);
	SpinLockAcquire(&tk_shared->mutex);
	strlcpy(tk_shared->conn[k].last_reason, reason, TICKER_REASON_LEN);
	tk_shared->conn[k].last_reconnect_at = GetCurrentTimestamp();
	SpinLockRelease(&tk_shared->mutex);
	if (http_status == 403)
		session_expired = true;
	if (c->failures == 1 || was_connected)
		ereport(LOG,
				(errmsg("trading ticker connection %d: %s; reconnecting", k + 1, reason)));
}

void
ticker_on_binary(int k, const uint8 *buf, size_t len)
{
	Conn	   *c = &conns[k];
	TickerConnShared *sc = &tk_shared->conn[k];
	int			n = 0;
	const char *why = "message larger than the ticker accepts";
	TickerFrameResult r = TFR_MALFORMED;
	int64		now = trading_monotonic_us();

	received_events++;
	if (buf != NULL)
		r = ticker_decode_frame(buf, len, GetCurrentTimestamp(), decode_buf,
								65535, &n, &why);
	c->last_frame_us = now;
	c->got_data = true;
	pg_atomic_fetch_add_u64(&sc->frames_total, 1);
	if (r == TFR_MALFORMED)
	{
		char		reason[TICKER_REASON_LEN];

		pg_atomic_fetch_add_u64(&sc->malformed_total, 1);
		snprintf(reason, sizeof(reason), "malformed frame (%s)", why);
		ticker_ws_close(k, reason);
		return;
	}
	SpinLockAcquire(&tk_shared->mutex);
	sc->last_packet_at = GetCurrentTimestamp();
	SpinLockRelease(&tk_shared->mutex);
	if (r == TFR_HEARTBEAT)
	{
		pg_atomic_fetch_add_u64(&sc->heartbeats_total, 1);
		return;
	}
	pg_atomic_fetch_add_u64(&sc->ticks_total, (uint64) n);
	ticker_buffer_ticks(decode_buf, n);
}

void
ticker_on_text(int k, const char *buf, size_t len)
{
	MemoryContext old;

	conns[k].last_frame_us = trading_monotonic_us();
	received_events++;
	/* only order updates matter; errors and notices are logged */
	if (strstr(buf, "\"order\"") != NULL)
	{
		old = MemoryContextSwitchTo(KeepContext);
		pending_orders = lappend(pending_orders, pnstrdup(buf, len));
		MemoryContextSwitchTo(old);
	}
	else if (strstr(buf, "\"error\"") != NULL)
		ereport(LOG,
				(errmsg("trading ticker connection %d: the server reports an error: %.200s",
						k + 1, buf)));
}

void
ticker_on_pong(int k)
{
	conns[k].last_pong_us = trading_monotonic_us();
	received_events++;
	pg_atomic_fetch_add_u64(&tk_shared->conn[k].pongs_total, 1);
	SpinLockAcquire(&tk_shared->mutex);
	tk_shared->conn[k].last_pong_at = GetCurrentTimestamp();
	SpinLockRelease(&tk_shared->mutex);
}

/* ---------------------------------------------------------------------
 * Configuration and session
 * ---------------------------------------------------------------------
 */
static void
reload_watchlist(void)
{
	HASH_SEQ_STATUS seq;
	TickerEntry *e;
	int			count;

	seen_config_gen = pg_atomic_read_u64(&tk_shared->config_gen);
	last_reload_us = trading_monotonic_us();
	reload_wanted = false;
	if (!ticker_load_watchlist(entries, &count))
		return;

	/* gone from the watchlist: unsubscribe and forget */
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->seen)
			continue;
		if (e->conn >= 0)
		{
			Conn	   *c = &conns[e->conn];

			if (e->sent_mode >= 0)
			{
				MemoryContext old = MemoryContextSwitchTo(KeepContext);

				c->unsub = lappend_int(c->unsub, (int) e->token);
				MemoryContextSwitchTo(old);
				c->dirty = true;
			}
			c->assigned--;
		}
		(void) hash_search(entries, &e->token, HASH_REMOVE, NULL);
	}
	/* new: to the least loaded connection with room */
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->conn < 0)
		{
			int			best = -1;

			for (int k = 0; k < TICKER_MAX_CONNS; k++)
				if (conns[k].assigned < TICKER_MAX_PER_CONN &&
					(best < 0 || conns[k].assigned < conns[best].assigned))
					best = k;
			if (best < 0)
				continue;		/* cannot happen: the load caps the count */
			/* prefer filling connections already in use */
			for (int k = 0; k < TICKER_MAX_CONNS; k++)
				if (conns[k].assigned > 0 && conns[k].assigned < TICKER_MAX_PER_CONN)
				{
					best = k;
					break;
				}
			e->conn = (int8) best;
			conns[best].assigned++;
		}
		if (e->sent_mode != e->mode)
			conns[e->conn].dirty = true;
	}
	nentries = count;
}

static void
reload_session(void)
{
	char	   *colon;
	const char *p;

	seen_session_gen = pg_atomic_read_u64(&bw_shared->session_gen);
	session_wanted = false;
	broker_load_session(&session, SessionContext);
	api_key = access_token = NULL;
	session_expired = session.present && session.expired;
	if (!session.present || !session.readable || session.expired)
		return;
	/* "Authorization: token KEY:TOKEN" */
	p = strstr(session.auth_header, "token ");
	if (p == NULL || (colon = strchr(p + 6, ':')) == NULL)
	{
		session.readable = false;
		return;
	}
	api_key = MemoryContextStrdup(SessionContext, p + 6);
	api_key[colon - (p + 6)] = '\0';
	access_token = MemoryContextStrdup(SessionContext, colon + 1);
	/* a new session: reconnect now, not after the backoff */
	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		conns[k].failures = 0;
		conns[k].next_attempt_us = 0;
	}
}

/* is the market open now (for the data watchdog)? */
static bool
market_open(void)
{
	int			h1,
				m1,
				h2,
				m2;
	pg_time_t	now;
	struct pg_tm *tm;
	int			minute;

	if (ticker_market_hours == NULL || strcmp(ticker_market_hours, "always") == 0)
		return true;
	if (sscanf(ticker_market_hours, "%d:%d-%d:%d", &h1, &m1, &h2, &m2) != 4)
		return true;
	now = (pg_time_t) time(NULL) + 19800;	/* IST, no DST */
	tm = pg_gmtime(&now);
	if (tm->tm_wday == 0 || tm->tm_wday == 6)
		return false;
	minute = tm->tm_hour * 60 + tm->tm_min;
	return minute >= h1 * 60 + m1 && minute < h2 * 60 + m2;
}

/* ---------------------------------------------------------------------
 * Subscriptions
 * ---------------------------------------------------------------------
 */
static void
send_tokens(int k, const char *action, const char *mode, List *tokens)
{
	StringInfoData s;
	ListCell   *lc;
	bool		first = true;

	if (tokens == NIL)
		return;
	initStringInfo(&s);
	if (mode)
		appendStringInfo(&s, "{\"a\":\"%s\",\"v\":[\"%s\",[", action, mode);
	else
		appendStringInfo(&s, "{\"a\":\"%s\",\"v\":[", action);
	foreach(lc, tokens)
	{
		appendStringInfo(&s, "%s%u", first ? "" : ",", (uint32) lfirst_int(lc));
		first = false;
	}
	appendStringInfoString(&s, mode ? "]]}" : "]}");
	(void) ticker_ws_send_text(k, s.data, s.len);
	pfree(s.data);
}

static void
sync_subscriptions(int k)
{
	Conn	   *c = &conns[k];
	HASH_SEQ_STATUS seq;
	TickerEntry *e;
	List	   *subs = NIL;
	List	   *bymode[3] = {NIL, NIL, NIL};

	if (!c->dirty || c->state != TCS_CONNECTED)
		return;
	c->dirty = false;
	send_tokens(k, "unsubscribe", NULL, c->unsub);
	list_free(c->unsub);
	c->unsub = NIL;
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->conn != k || e->sent_mode == e->mode)
			continue;
		if (e->sent_mode < 0)
			subs = lappend_int(subs, (int) e->token);
		bymode[e->mode] = lappend_int(bymode[e->mode], (int) e->token);
		e->sent_mode = (int8) e->mode;
	}
	send_tokens(k, "subscribe", NULL, subs);
	for (int m = 0; m < 3; m++)
		send_tokens(k, "mode", ticker_mode_names[m], bymode[m]);
}

/* ---------------------------------------------------------------------
 * Connections and deadlines
 * ---------------------------------------------------------------------
 */
static void
manage_connections(bool may_connect)
{
	int64		now = trading_monotonic_us();
	bool		all_up = true;
	int			needed = 0;

	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		Conn	   *c = &conns[k];
		bool		wanted = may_connect && c->assigned > 0;

		if (wanted)
			needed++;
		switch (c->state)
		{
			case TCS_UNUSED:
			case TCS_WAITING:
				if (wanted && now >= c->next_attempt_us)
				{
					c->state = TCS_CONNECTING;
					(void) ticker_ws_connect(k, ticker_url, api_key, access_token);
				}
				else if (!wanted && c->state == TCS_WAITING && c->assigned == 0)
					c->state = TCS_UNUSED;
				break;
			case TCS_CONNECTING:
				break;
			case TCS_CONNECTED:
				if (!wanted)
				{
					c->state = TCS_CLOSING;
					ticker_ws_close(k, may_connect ? "no subscriptions" : "stopped");
					break;
				}
				if (now - c->last_ping_us >= (int64) ticker_ping_interval_ms * 1000)
				{
					c->last_ping_us = now;
					pg_atomic_fetch_add_u64(&tk_shared->conn[k].pings_total, 1);
					ticker_ws_want_ping(k);
				}
				sync_subscriptions(k);
				break;
			case TCS_CLOSING:
				break;
		}
		if (wanted && c->state != TCS_CONNECTED)
			all_up = false;
		publish_conn(k);
	}
	set_streaming(needed > 0 && all_up);
}

/*
 * The deadlines, judged right after the library has read what arrived (a
 * long flush must not look like a silent server).  Any frame after the
 * last ping is a sign of life as good as a pong: a pong stuck behind
 * unread ticks does not make a busy connection look dead.
 */
static void
check_deadlines(void)
{
	int64		now = trading_monotonic_us();
	bool		watch = market_open();

	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		Conn	   *c = &conns[k];
		int64		alive = Max(c->last_pong_us, c->last_frame_us);

		if (c->state != TCS_CONNECTED)
			continue;
		if (now - alive > (int64) ticker_pong_timeout_ms * 1000 &&
			now - c->connected_us > (int64) ticker_pong_timeout_ms * 1000)
		{
			c->state = TCS_CLOSING;
			ticker_ws_close(k, "pong timeout");
		}
		else if (watch && c->assigned > 0 &&
				 now - c->last_frame_us > (int64) ticker_data_timeout_ms * 1000)
		{
			c->state = TCS_CLOSING;
			ticker_ws_close(k, "data timeout");
		}
	}
}

static void
apply_pending_orders(void)
{
	ListCell   *lc;
	List	   *list = pending_orders;

	pending_orders = NIL;
	foreach(lc, list)
	{
		char	   *msg = (char *) lfirst(lc);

		ticker_apply_order_update(msg, strlen(msg));
		pfree(msg);
	}
	list_free(list);
}

static void
process_reload_signal(void)
{
	char	   *old_url = pstrdup(ticker_url);

	(void) trading_bgw_reload();
	if (strcmp(old_url, ticker_url) != 0)
		for (int k = 0; k < TICKER_MAX_CONNS; k++)
			if (conns[k].state == TCS_CONNECTED)
			{
				conns[k].state = TCS_CLOSING;
				ticker_ws_close(k, "trading.ticker_url changed");
				conns[k].failures = 0;
			}
	pfree(old_url);
	reload_wanted = true;
}

/* a slice of ticks is waiting, or the oldest tick waited the interval */
static bool
flush_due(void)
{
	int			n = ticker_buffered();

	return n >= TICKER_FLUSH_SLICE ||
		(n > 0 && GetCurrentTimestamp() - ticker_oldest_buffered_us() >=
		 (int64) ticker_flush_interval_ms * 1000);
}

static void
wait_for_extension(void)
{
	bool		logged = false;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (trading_bgw_extension_version() >= 110)
			return;
		set_worker_state(TWS_WAITING_EXTENSION);
		if (!logged)
			ereport(LOG,
					(errmsg("trading ticker waiting for version 1.1 of the extension in database \"%s\"",
							trading_database)));
		logged = true;
		trading_bgw_nap(1000L);
	}
}

void
ticker_worker_main(Datum main_arg)
{
	HASHCTL		ctl;
	bool		logged_no_session = false;

	SpinLockAcquire(&tk_shared->mutex);
	tk_shared->pid = MyProcPid;
	tk_shared->procno = MyProc->pgprocno;
	tk_shared->state = TWS_STARTING;
	tk_shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&tk_shared->mutex);
	trading_bgw_on_exit(worker_exit);

	if (pg_atomic_read_u32(&tk_shared->database_seen) == 0)
		set_worker_state(TWS_WAITING_DATABASE);
	trading_bgw_connect(&tk_shared->database_seen, "trading ticker");
	pgstat_report_appname("trading ticker");

	KeepContext = AllocSetContextCreate(TopMemoryContext, "trading ticker",
										ALLOCSET_DEFAULT_SIZES);
	SessionContext = AllocSetContextCreate(TopMemoryContext, "trading ticker session",
										   ALLOCSET_SMALL_SIZES);
	LoopContext = AllocSetContextCreate(TopMemoryContext, "trading ticker loop",
										ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(TickerEntry);
	ctl.hcxt = KeepContext;
	entries = hash_create("trading ticker subscriptions", 1024, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	decode_buf = MemoryContextAllocHuge(KeepContext, sizeof(TickerTick) * 65535);
	ticker_store_init();

	wait_for_extension();
	ticker_ws_init();
	ereport(LOG, (errmsg("trading ticker started, streaming from %s", ticker_url)));

	for (;;)
	{
		int64		now;
		bool		may_connect;
		TickerWorkerState state;

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		MemoryContextReset(LoopContext);
		MemoryContextSwitchTo(LoopContext);
		ResetLatch(MyLatch);

		if (ConfigReloadPending)
			process_reload_signal();
		now = trading_monotonic_us();
		if (pg_atomic_read_u64(&tk_shared->config_gen) != seen_config_gen ||
			now - last_reload_us >= RELOAD_EVERY_US)
			reload_wanted = true;
		if (reload_wanted)
			reload_watchlist();
		if (pg_atomic_read_u64(&bw_shared->session_gen) != seen_session_gen)
			session_wanted = true;
		if (session_wanted)
			reload_session();
		if (session_expired && api_key != NULL)
		{
			ereport(LOG,
					(errmsg("trading ticker: the broker refused the session (TokenException); streaming stops until a new session is set")));
			broker_set_session_state(BSS_EXPIRED);
			broker_mark_session_expired();
			api_key = access_token = NULL;
		}

		if (!ticker_enabled)
			state = TWS_DISABLED;
		else if (session_expired)
			state = TWS_SESSION_EXPIRED;
		else if (api_key == NULL)
			state = TWS_NO_SESSION;
		else if (nentries == 0)
			state = TWS_IDLE;
		else
			state = TWS_STREAMING;
		set_worker_state(state);
		if (state == TWS_NO_SESSION && !logged_no_session)
			ereport(LOG,
					(errmsg("trading ticker has no broker session"),
					 errhint("Call trading.set_broker_session() or trading.broker_login().")));
		logged_no_session = state == TWS_NO_SESSION;

		may_connect = state == TWS_STREAMING;
		manage_connections(may_connect);

		/*
		 * The library's loop: returns within 10 ms; then, while frames keep
		 * coming, more rounds without waiting until a flush is due (a full
		 * slice, or the oldest tick waited the flush interval), so that a
		 * backlog is read in large batches.  Whatever has arrived is read
		 * before each slice is written (for at most READ_DRAIN_US), so that
		 * the broker sees a reader that keeps up even while the database
		 * lags.
		 */
		{
			int64		start = trading_monotonic_us();
			uint64		before = received_events;

			ticker_ws_service(true);	/* waits up to 10 ms */
			while (received_events != before &&
				   trading_monotonic_us() - start <
				   (flush_due() ? READ_DRAIN_US :
					(int64) ticker_flush_interval_ms * 1000))
			{
				before = received_events;
				ticker_ws_service(false);
			}
		}
		check_deadlines();

		if (pending_orders != NIL)
			apply_pending_orders();
		now = trading_monotonic_us();

		/*
		 * One slice of ticks, then one slice of quotes, then back to reading:
		 * the sockets are read between slices, so that a backlog in the
		 * database (up to the worker's capacity) does not make the broker see
		 * a slow reader, and ticks go before quotes without starving them.
		 */
		if (flush_due())
			ticker_flush(entries);
		if (ticker_quotes_due())
			ticker_write_quotes(entries);
		if (now - last_retention_us >= RETENTION_EVERY_US &&
			pg_atomic_read_u64(&tk_shared->ticks_stored) > 0)
		{
			last_retention_us = now;
			ticker_maintain_partitions();
		}
	}
}

/* ---------------------------------------------------------------------
 * Status (for ticker_sql.c)
 * ---------------------------------------------------------------------
 */
const char *
ticker_worker_state_name(int s)
{
	return (s >= 0 && s < lengthof(worker_state_names)) ? worker_state_names[s] : "unknown";
}

const char *
ticker_conn_state_name(int s)
{
	return (s >= 0 && s < lengthof(conn_state_names)) ? conn_state_names[s] : "unknown";
}

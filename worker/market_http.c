/*-------------------------------------------------------------------------
 *
 * market_http.c
 *	  The market data worker's HTTP: a blocking GET through a libcurl easy
 *	  handle kept for the life of the process, so that consecutive requests
 *	  (a backfill's chunks) reuse the connection; refresh_instruments()
 *	  uses it from a backend the same way.  And one request "ahead": sent
 *	  (market_http_start) before the worker applies the previous reply, and
 *	  received after it (market_http_finish), so that the broker prepares
 *	  the next reply while the worker writes the last one.
 *
 * It is deliberately small and separate from broker_http.c (the broker
 * worker's multi-handle event loop): the market worker has at most one
 * blocking and one ahead request under kite.historical.  The
 * callbacks never raise an error (a longjmp through libcurl would corrupt
 * it): the write callback allocates with MCXT_ALLOC_NO_OOM and the
 * progress callback only aborts the transfer when an interrupt is pending;
 * the caller then runs CHECK_FOR_INTERRUPTS().
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "broker_worker.h"
#include "market.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/memutils.h"

static CURL * easy = NULL;

typedef struct Sink
{
	MemoryContext cxt;
	char	   *buf;
	Size		len;
	Size		cap;
	Size		limit;
	bool		too_large;
	bool		oom;
} Sink;

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	Sink	   *s = (Sink *) arg;
	Size		n = size * nmemb;

	if (s->len + n + 1 > s->limit)
	{
		s->too_large = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap)
	{
		Size		cap = Max(s->cap * 2, s->len + n + 1);
		char	   *nb;

		cap = Max(cap, 65536);
		nb = MemoryContextAllocExtended(s->cxt, cap, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (nb == NULL)
		{
			s->oom = true;
			return 0;
		}
		if (s->buf)
		{
			memcpy(nb, s->buf, s->len);
			pfree(s->buf);
		}
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	return n;
}

static int
progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	return (InterruptPending && (ProcDiePending || QueryCancelPending)) ? 1 : 0;
}

static void
init_curl(void)
{
	static bool global_done = false;

	if (!global_done)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise libcurl")));
		global_done = true;
	}
}

static CURL *
new_handle(void)
{
	CURL	   *h;

	init_curl();
	if ((h = curl_easy_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl handle")));
	return h;
}

/* one transfer: its handle's options, its reply, its header list */
typedef struct Transfer
{
	CURL	   *h;
	Sink		sink;
	struct curl_slist *hdr;
	MarketResponse *resp;
} Transfer;

static void
setup(Transfer *t, const char *url, const char *auth_header, long timeout_ms,
	  MarketResponse *resp)
{
	CURL	   *h = t->h;

	memset(resp, 0, sizeof(*resp));
	memset(&t->sink, 0, sizeof(t->sink));
	t->sink.cxt = CurrentMemoryContext;
	t->sink.limit = (Size) broker_max_response_kb * 1024;
	t->resp = resp;
	t->hdr = NULL;

	curl_easy_reset(h);			/* keeps the connection cache */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &t->sink);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp->errbuf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) broker_connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "trading-market-data/1.1");
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (broker_ca_file && broker_ca_file[0] != '\0')
		curl_easy_setopt(h, CURLOPT_CAINFO, broker_ca_file);
	t->hdr = curl_slist_append(t->hdr, "X-Kite-Version: 3");
	if (auth_header)
		t->hdr = curl_slist_append(t->hdr, auth_header);	/* "Authorization: token
															 * ..." */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->hdr);
}

/* the transfer ended with code: fill in its response */
static void
collect(Transfer *t, CURLcode code)
{
	MarketResponse *resp = t->resp;
	char	   *ctype = NULL;
	curl_off_t	ttfb = 0;

	curl_easy_setopt(t->h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(t->hdr);
	t->hdr = NULL;
	CHECK_FOR_INTERRUPTS();
	if (t->sink.oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	resp->curl_code = (int) code;
	resp->too_large = t->sink.too_large;
	curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &resp->http_status);
	if (curl_easy_getinfo(t->h, CURLINFO_STARTTRANSFER_TIME_T, &ttfb) == CURLE_OK)
		resp->ttfb_us = (int64) ttfb;
	if (curl_easy_getinfo(t->h, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype)
		resp->is_json = strstr(ctype, "json") != NULL;
	if (code != CURLE_OK && resp->errbuf[0] == '\0')
		strlcpy(resp->errbuf, curl_easy_strerror(code), sizeof(resp->errbuf));
	if (t->sink.buf == NULL)
		t->sink.buf = palloc(1);
	t->sink.buf[t->sink.len] = '\0';
	resp->body = t->sink.buf;
	resp->len = t->sink.len;
}

/* monotonic time the request left, from the transfer's pretransfer time */
static int64
sent_at(CURL * h, int64 started)
{
	curl_off_t	pre = 0;

	if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK || pre <= 0)
		return 0;
	return started + (int64) pre;
}

void
market_http_get(const char *url, const char *auth_header, long timeout_ms,
				MarketResponse *resp)
{
	Transfer	t;
	CURLcode	code;
	int64		started;

	if (easy == NULL)
		easy = new_handle();
	t.h = easy;
	setup(&t, url, auth_header, timeout_ms, resp);
	started = trading_monotonic_us();
	code = curl_easy_perform(easy);
	resp->sent_us = sent_at(easy, started);
	collect(&t, code);
}

/* ---------------------------------------------------------------------
 * Requests sent ahead: market_http_start() sends one and returns, the
 * caller does other work (applies an earlier reply) while the broker
 * prepares this one, market_http_finish() receives it.  At most
 * MARKET_AHEAD at a time, each in a slot with a handle (and connection)
 * of its own, driven by one multi handle.
 * ---------------------------------------------------------------------
 */
typedef struct AheadSlot
{
	CURL	   *h;
	Transfer	t;
	bool		busy;			/* added to the multi handle */
	bool		ended;			/* its DONE message was read */
	CURLcode	code;
	int64		started;
	MemoryContext cxt;			/* the reply: kept across the caller's loop
								 * iterations, until the slot is reused */
} AheadSlot;

static CURLM * multi = NULL;
static AheadSlot slots[MARKET_AHEAD];

#define AHEAD_SEND_WAIT_MS	200

/* pump the multi handle once (waiting at most wait_ms for activity) */
static void
pump(int wait_ms)
{
	int			running = 0;
	int			left;
	CURLMsg    *m;

	curl_multi_perform(multi, &running);
	while ((m = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (m->msg != CURLMSG_DONE)
			continue;
		for (int i = 0; i < MARKET_AHEAD; i++)
			if (slots[i].busy && slots[i].h == m->easy_handle)
			{
				slots[i].ended = true;
				slots[i].code = m->data.result;
			}
	}
	if (running > 0 && wait_ms > 0)
		curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
}

/* the slot's transfer ended: take it off the multi handle, fill its reply */
static void
slot_end(AheadSlot *s)
{
	curl_multi_remove_handle(multi, s->h);
	s->busy = false;
	collect(&s->t, s->code);
	s->t.resp = NULL;
}

/*
 * Send a GET in slot (0 .. MARKET_AHEAD-1, free) and return once it has
 * left (at most AHEAD_SEND_WAIT_MS).  resp must stay valid until
 * market_http_finish() or _abandon() of the slot; its body lives until the
 * slot is used again.  False if libcurl could not take the transfer.
 */
bool
market_http_start(int slot, const char *url, const char *auth_header, long timeout_ms,
				  MarketResponse *resp)
{
	AheadSlot  *s = &slots[slot];
	int64		deadline;

	Assert(slot >= 0 && slot < MARKET_AHEAD && !s->busy);
	if (multi == NULL)
	{
		init_curl();
		if ((multi = curl_multi_init()) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not create a libcurl multi handle")));
	}
	if (s->h == NULL)
		s->h = new_handle();
	if (s->cxt == NULL)
		s->cxt = AllocSetContextCreate(TopMemoryContext, "trading market request ahead",
									   ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(s->cxt);
	s->t.h = s->h;
	setup(&s->t, url, auth_header, timeout_ms, resp);
	s->t.sink.cxt = s->cxt;
	s->started = trading_monotonic_us();
	s->ended = false;
	if (curl_multi_add_handle(multi, s->h) != CURLM_OK)
	{
		curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(s->t.hdr);
		s->t.hdr = NULL;
		return false;
	}
	s->busy = true;

	/*
	 * Until the request has left (pretransfer time known), then one more
	 * turn, which writes it out; or until the transfer ended already.
	 */
	deadline = s->started + AHEAD_SEND_WAIT_MS * 1000;
	for (bool last = false;;)
	{
		pump(last ? 0 : 5);
		resp->sent_us = sent_at(s->h, s->started);
		if (s->ended || last || trading_monotonic_us() >= deadline)
			break;
		last = resp->sent_us != 0;
	}
	return true;
}

/* receive the reply of the request market_http_start() sent in slot */
void
market_http_finish(int slot, MarketResponse *resp)
{
	AheadSlot  *s = &slots[slot];
	int64		sent = resp->sent_us;

	if (!s->busy)
		return;
	while (!s->ended)
	{
		pump(100);
		CHECK_FOR_INTERRUPTS();
	}
	slot_end(s);
	if (!resp->sent_us)
		resp->sent_us = sent ? sent : sent_at(s->h, s->started);
}

/* drop the request of slot (its connection is closed if unfinished) */
void
market_http_abandon(int slot)
{
	AheadSlot  *s = &slots[slot];

	if (!s->busy)
		return;
	curl_multi_remove_handle(multi, s->h);
	curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(s->t.hdr);
	s->t.hdr = NULL;
	s->t.resp = NULL;
	s->busy = false;
}

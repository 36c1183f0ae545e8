/*-------------------------------------------------------------------------
 *
 * market_http.c
 *	  The market data worker's HTTP: one blocking GET at a time through a
 *	  libcurl easy handle kept for the life of the process, so that
 *	  consecutive requests (a backfill's chunks) reuse the connection.
 *	  refresh_instruments() uses it from a backend the same way.
 *
 * It is deliberately small and separate from broker_http.c (the broker
 * worker's multi-handle event loop): the market worker sends one request
 * at a time under kite.historical and never shares its connection.  The
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

void
market_http_get(const char *url, const char *auth_header, long timeout_ms,
				MarketResponse *resp)
{
	static bool global_done = false;
	struct curl_slist *hdr = NULL;
	char	   *ctype = NULL;
	Sink		sink;
	CURLcode	code;

	memset(resp, 0, sizeof(*resp));
	memset(&sink, 0, sizeof(sink));
	sink.cxt = CurrentMemoryContext;
	sink.limit = (Size) broker_max_response_kb * 1024;

	if (!global_done)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise libcurl")));
		global_done = true;
	}
	if (easy == NULL && (easy = curl_easy_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl handle")));

	curl_easy_reset(easy);		/* keeps the connection cache */
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->errbuf);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) broker_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "trading-market-data/1.1");
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	if (broker_ca_file && broker_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, broker_ca_file);
	hdr = curl_slist_append(hdr, "X-Kite-Version: 3");
	if (auth_header)
		hdr = curl_slist_append(hdr, auth_header);	/* "Authorization: token
													 * ..." */
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdr);

	code = curl_easy_perform(easy);

	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	CHECK_FOR_INTERRUPTS();
	if (sink.oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	resp->curl_code = (int) code;
	resp->too_large = sink.too_large;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->http_status);
	{
		curl_off_t	ttfb = 0;

		if (curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &ttfb) == CURLE_OK)
			resp->ttfb_us = (int64) ttfb;
	}
	if (curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype)
		resp->is_json = strstr(ctype, "json") != NULL;
	if (code != CURLE_OK && resp->errbuf[0] == '\0')
		strlcpy(resp->errbuf, curl_easy_strerror(code), sizeof(resp->errbuf));
	if (sink.buf == NULL)
		sink.buf = palloc(1);
	sink.buf[sink.len] = '\0';
	resp->body = sink.buf;
	resp->len = sink.len;
}

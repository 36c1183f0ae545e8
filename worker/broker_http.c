/*-------------------------------------------------------------------------
 *
 * broker_http.c
 *	  HTTP for the broker worker, with libcurl.
 *
 * The worker keeps one multi handle and one easy handle per slot (a slot
 * is a polled endpoint; at most one request per endpoint is in flight), so
 * requests to different endpoints run concurrently and one slow endpoint
 * never delays another.  Connections live in the multi handle's cache and
 * are reused across requests and endpoints (HTTP/1.1 keep-alive); a share
 * handle keeps DNS answers and TLS sessions, so a reconnect resumes its TLS
 * session instead of a full handshake.  broker_http_poll() drives the
 * transfers for at most the given time (curl_multi_poll) and returns, so
 * the caller checks its latch and interrupts between calls: a SIGTERM
 * stops the worker within that time even mid-request.
 *
 * Secrets: the Authorization header is passed in by the caller for each
 * request and only lives in libcurl's header list until the request ends;
 * verbose output is off and error messages come from curl's error buffer,
 * which never holds request headers.
 *
 * Memory: response bodies grow in the slot's buffer, allocated in
 * BrokerHttpContext with MCXT_ALLOC_NO_OOM from inside curl's write
 * callback (an ereport there would longjmp through libcurl); a body over
 * trading.broker_max_response_kb aborts the transfer.  Nothing in a
 * callback can raise an error: the buffer never grows past the limit plus
 * one byte, and the setting's maximum (256 MB) keeps that, and the text
 * and jsonb copies the response path makes, under MaxAllocSize.  A
 * finished body is handed to the caller without a copy.
 *
 * Classification: broker_http_classify() turns a finished request into
 * an error class (timeout, connection, too_large, HTTP 429, 4xx/5xx
 * without JSON, not JSON) or hands its JSON body on; this is the only
 * place that reads libcurl's result codes.
 *
 * This file is also used by backends (broker_http_post_form, for the login
 * helper): a blocking request whose progress callback aborts it on a query
 * cancel or termination request.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "broker_worker.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#define BROKER_SLOTS	BEP_COUNT

typedef struct HttpSlot
{
	CURL	   *easy;
	struct curl_slist *headers;
	bool		busy;
	bool		too_large;
	bool		no_memory;		/* the buffer could not grow */
	char	   *buf;
	Size		len;
	Size		cap;
	char		errbuf[CURL_ERROR_SIZE];
} HttpSlot;

static CURLM * multi = NULL;
static CURLSH * share = NULL;
static HttpSlot slots[BROKER_SLOTS];
static MemoryContext BrokerHttpContext = NULL;
static bool curl_global_done = false;

static void
broker_curl_global_init(void)
{
	if (!curl_global_done)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_global_done = true;
	}
}

/* append to a buffer without ever raising an error */
static bool
buf_append(HttpSlot *s, const char *data, Size n)
{
	Size		limit = (Size) broker_max_response_kb * 1024;

	if (s->len + n > limit)
	{
		s->too_large = true;
		return false;
	}
	if (s->len + n + 1 > s->cap)
	{
		Size		newcap = Max(s->cap * 2, s->len + n + 1);
		char	   *nb;

		newcap = Max(newcap, 8192);
		newcap = Min(newcap, limit + 1);	/* <= 256 MB + 1 < MaxAllocSize */
		nb = MemoryContextAllocExtended(BrokerHttpContext, newcap,
										MCXT_ALLOC_NO_OOM);
		if (nb == NULL)
		{
			s->no_memory = true;
			return false;
		}
		if (s->buf)
		{
			memcpy(nb, s->buf, s->len);
			pfree(s->buf);
		}
		s->buf = nb;
		s->cap = newcap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return true;
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpSlot   *s = (HttpSlot *) userdata;
	size_t		n = size * nmemb;

	if (!buf_append(s, ptr, n))
		return 0;				/* aborts the transfer (CURLE_WRITE_ERROR) */
	return n;
}

/* abort a blocking transfer when the backend is asked to stop */
static int
progress_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/* options every request shares */
static void
set_common_options(CURL * h, HttpSlot *s)
{
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) broker_connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) broker_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "trading-broker-worker/1.0");
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (broker_ca_file && broker_ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, broker_ca_file);
	if (share)
		curl_easy_setopt(h, CURLOPT_SHARE, share);
}

static void
slot_reset_buffer(HttpSlot *s)
{
	s->len = 0;
	s->too_large = false;
	s->no_memory = false;
	s->errbuf[0] = '\0';
	if (s->buf)
		s->buf[0] = '\0';
}

void
broker_http_init(void)
{
	broker_curl_global_init();
	if (BrokerHttpContext == NULL)
		BrokerHttpContext = AllocSetContextCreate(TopMemoryContext,
												  "trading broker http",
												  ALLOCSET_DEFAULT_SIZES);
	if (multi != NULL)
		return;

	share = curl_share_init();
	if (share)
	{
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	}
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
					  (long) broker_max_connections);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
					  (long) broker_max_connections);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING);

	for (int i = 0; i < BROKER_SLOTS; i++)
	{
		HttpSlot   *s = &slots[i];

		memset(s, 0, sizeof(*s));
		s->easy = curl_easy_init();
		if (s->easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not create a libcurl handle")));
	}
}

/*
 * Drop every connection and handle (after the broker settings changed);
 * the next request starts afresh.  Requests in flight are abandoned.
 */
void
broker_http_reset(void)
{
	if (multi == NULL)
		return;
	for (int i = 0; i < BROKER_SLOTS; i++)
	{
		HttpSlot   *s = &slots[i];

		if (s->busy)
			curl_multi_remove_handle(multi, s->easy);
		curl_easy_cleanup(s->easy);
		if (s->headers)
			curl_slist_free_all(s->headers);
		if (s->buf)
			pfree(s->buf);
		memset(s, 0, sizeof(*s));
	}
	curl_multi_cleanup(multi);
	multi = NULL;
	if (share)
		curl_share_cleanup(share);
	share = NULL;
	broker_http_init();
}

bool
broker_http_busy(int slot)
{
	return slots[slot].busy;
}

int
broker_http_in_flight(void)
{
	int			n = 0;

	for (int i = 0; i < BROKER_SLOTS; i++)
		n += slots[i].busy ? 1 : 0;
	return n;
}

/*
 * Start a GET of url on slot.  auth_header is the full header line
 * ("Authorization: token ..."); libcurl copies it into its own list, which
 * is freed when the request ends.  Returns false if libcurl refused.
 */
bool
broker_http_start(int slot, const char *url, const char *auth_header)
{
	HttpSlot   *s = &slots[slot];
	struct curl_slist *h = NULL;

	Assert(!s->busy);
	slot_reset_buffer(s);
	curl_easy_reset(s->easy);
	set_common_options(s->easy, s);
	curl_easy_setopt(s->easy, CURLOPT_URL, url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (void *) (intptr_t) slot);

	h = curl_slist_append(h, "X-Kite-Version: 3");
	if (h && auth_header)
		h = curl_slist_append(h, auth_header);
	if (h == NULL)
		return false;
	s->headers = h;
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, h);

	if (curl_multi_add_handle(multi, s->easy) != CURLM_OK)
	{
		curl_slist_free_all(s->headers);
		s->headers = NULL;
		return false;
	}
	s->busy = true;
	return true;
}

/* fill resp from a finished easy handle (body copied into the caller's
 * memory context) */
static void
collect(HttpSlot *s, CURLcode code, BrokerResponse *resp)
{
	char	   *ctype = NULL;
	long		connects = 0;
	double		total = 0;

	memset(resp, 0, sizeof(*resp));
	resp->curl_code = (int) code;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &resp->http_status);
	curl_easy_getinfo(s->easy, CURLINFO_CONTENT_TYPE, &ctype);
	curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &connects);
	curl_easy_getinfo(s->easy, CURLINFO_TOTAL_TIME, &total);
	resp->is_json = ctype != NULL &&
		pg_strncasecmp(ctype, "application/json", 16) == 0;
	resp->too_large = s->too_large || s->no_memory;
	resp->seconds = total;
	resp->new_connections = connects;
	resp->len = s->len;
	if (s->buf != NULL && !resp->too_large)
	{
		/* hand the body over (allocated in BrokerHttpContext) */
		resp->body = s->buf;
		s->buf = NULL;
		s->cap = 0;
	}
	else
		resp->body = MemoryContextAllocZero(BrokerHttpContext, 1);
	resp->body[resp->too_large ? 0 : s->len] = '\0';
	if (resp->too_large)
		resp->len = 0;
	if (code != CURLE_OK)
		broker_clean_message(resp->errbuf, sizeof(resp->errbuf),
							 s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
	s->len = 0;
}

int
broker_http_classify(const BrokerResponse *resp, char *msg, Size msglen)
{
	long		st = resp->http_status;

	msg[0] = '\0';
	if (resp->too_large)
	{
		snprintf(msg, msglen, "response larger than %d kB, or no memory for it",
				 broker_max_response_kb);
		return BERR_TOO_LARGE;
	}
	if (resp->curl_code != CURLE_OK)
	{
		strlcpy(msg, resp->errbuf, msglen);
		return resp->curl_code == CURLE_OPERATION_TIMEDOUT ? BERR_TIMEOUT :
			BERR_CONNECTION;
	}
	if (st == 429)
	{
		snprintf(msg, msglen, "HTTP %ld", st);
		return BERR_HTTP_429;
	}
	if (!resp->is_json)
	{
		if (st >= 200 && st < 300)
			snprintf(msg, msglen, "HTTP %ld with a body that is not JSON", st);
		else
			snprintf(msg, msglen, "HTTP %ld without a JSON body", st);
		return st >= 500 ? BERR_HTTP_5XX :
			(st >= 300 || st < 200) ? BERR_HTTP_4XX : BERR_NOT_JSON;
	}
	return -1;
}

/*
 * Drive the transfers for up to timeout_ms and hand every finished one to
 * done(), in the caller's memory context.  Returns early when a socket has
 * activity, so the caller's loop stays responsive.
 */
void
broker_http_poll(int timeout_ms, BrokerDoneCallback done)
{
	int			running = 0;
	int			queued;
	CURLMsg    *msg;

	if (multi == NULL)
		return;
	curl_multi_perform(multi, &running);
	if (running > 0 && timeout_ms > 0)
	{
		curl_multi_poll(multi, NULL, 0, timeout_ms, NULL);
		curl_multi_perform(multi, &running);
	}

	while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		intptr_t	slot = 0;
		HttpSlot   *s;
		BrokerResponse resp;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
		s = &slots[slot];
		collect(s, msg->data.result, &resp);
		curl_multi_remove_handle(multi, s->easy);
		/* the header list held the token: drop it now */
		curl_slist_free_all(s->headers);
		s->headers = NULL;
		s->busy = false;
		done((int) slot, &resp);
		pfree(resp.body);
	}
}

/*
 * Blocking POST of an application/x-www-form-urlencoded body, for a backend
 * (the login helper).  The caller checks for interrupts afterwards: the
 * progress callback aborts the transfer on a cancel request.
 */
BrokerResponse *
broker_http_post_form(const char *url, const char *form)
{
	BrokerResponse *resp = palloc0(sizeof(BrokerResponse));
	HttpSlot	s;
	CURL	   *h;
	CURLcode	code;
	struct curl_slist *hdr = NULL;

	broker_curl_global_init();
	if (BrokerHttpContext == NULL)
		BrokerHttpContext = AllocSetContextCreate(TopMemoryContext,
												  "trading broker http",
												  ALLOCSET_DEFAULT_SIZES);
	memset(&s, 0, sizeof(s));
	s.easy = h = curl_easy_init();
	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl handle")));
	set_common_options(h, &s);
	curl_easy_setopt(h, CURLOPT_SHARE, NULL);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
	hdr = curl_slist_append(hdr, "X-Kite-Version: 3");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);

	code = curl_easy_perform(h);
	collect(&s, code, resp);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	if (s.buf)
		pfree(s.buf);
	/* the body into the caller's context */
	{
		char	   *b = palloc(resp->len + 1);

		memcpy(b, resp->body, resp->len + 1);
		explicit_bzero(resp->body, resp->len);
		pfree(resp->body);
		resp->body = b;
	}
	return resp;
}

/* broker_url + path, without doubling a trailing slash (palloc'd) */
char *
broker_make_url(const char *path, const char *query)
{
	int			len = (int) strlen(broker_url);

	while (len > 0 && broker_url[len - 1] == '/')
		len--;
	if (query)
		return psprintf("%.*s%s?%s", len, broker_url, path, query);
	return psprintf("%.*s%s", len, broker_url, path);
}

/* URL-escape s (palloc'd) */
char *
broker_http_escape(const char *s)
{
	char	   *e;
	char	   *out;

	broker_curl_global_init();
	e = curl_easy_escape(NULL, s, 0);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	out = pstrdup(e);
	curl_free(e);
	return out;
}

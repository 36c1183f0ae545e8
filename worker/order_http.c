/*-------------------------------------------------------------------------
 *
 * order_http.c
 *	  HTTP for the order sender, with libcurl's multi interface: one easy
 *	  handle per slot (a request in flight), connections kept alive in the
 *	  multi handle's cache and reused, several requests at once.
 *
 * Waiting: the sender must react within microseconds both to its latch (a
 * commit queued a request) and to its sockets (a reply arrived), so each
 * wait is one WaitEventSet holding the latch, postmaster death and every
 * socket libcurl asked for (curl_multi_fdset), bounded by curl's timer.
 *
 * Never twice: libcurl silently re-sends a request whose reused connection
 * died before any byte of the reply arrived ("Connection died, retrying a
 * fresh connect").  For an order that is exactly the ambiguous case: the
 * broker may have accepted it.  So the body is supplied by a read callback
 * that cannot rewind (CURLOPT_SEEKFUNCTION fails): once the body has left,
 * libcurl cannot send it again and reports CURLE_SEND_FAIL_REWIND, which
 * the sender treats as "unknown".  Cancellations (DELETE, no body) use a
 * fresh connection, which libcurl never retries.
 *
 * "Never reached the broker" is decided from libcurl's own account: a
 * failure to resolve or connect, or a timeout before the request started
 * to go out (CURLINFO_PRETRANSFER_TIME is zero).  Everything else after a
 * connection is ambiguous.
 *
 * Memory: bodies grow in OrderHttpContext with MCXT_ALLOC_NO_OOM from
 * inside curl's callbacks (an ereport there would longjmp through libcurl).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "order_sender.h"
#include "broker_worker.h"

#include <curl/curl.h>
#include <sys/select.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#define ORDER_MAX_BODY		(1024 * 1024)

typedef struct OrderSlot
{
	CURL	   *easy;
	struct curl_slist *headers;
	bool		busy;
	const char *send;			/* request body (palloc'd copy) */
	Size		send_len;
	Size		send_off;
	char	   *buf;			/* reply body */
	Size		len;
	Size		cap;
	bool		too_large;
	char		errbuf[CURL_ERROR_SIZE];
} OrderSlot;

static CURLM * multi = NULL;
static OrderSlot *slots = NULL;
static int	nslots = 0;
static MemoryContext OrderHttpContext = NULL;

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	OrderSlot  *s = (OrderSlot *) userdata;
	size_t		n = size * nmemb;

	if (s->len + n > ORDER_MAX_BODY)
	{
		s->too_large = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap)
	{
		Size		newcap = Max(Max(s->cap * 2, s->len + n + 1), 4096);
		char	   *nb = MemoryContextAllocExtended(OrderHttpContext, newcap,
													MCXT_ALLOC_NO_OOM);

		if (nb == NULL)
			return 0;
		if (s->buf)
		{
			memcpy(nb, s->buf, s->len);
			pfree(s->buf);
		}
		s->buf = nb;
		s->cap = newcap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static size_t
read_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	OrderSlot  *s = (OrderSlot *) userdata;
	size_t		n = Min(size * nitems, s->send_len - s->send_off);

	memcpy(buffer, s->send + s->send_off, n);
	s->send_off += n;
	return n;
}

/* refusing to rewind is what keeps libcurl from re-sending an order */
static int
seek_cb(void *userdata, curl_off_t offset, int origin)
{
	OrderSlot  *s = (OrderSlot *) userdata;

	if (offset == 0 && origin == SEEK_SET && s->send_off == 0)
		return CURL_SEEKFUNC_OK;	/* nothing sent yet */
	return CURL_SEEKFUNC_FAIL;
}

void
order_http_init(int n)
{
	if (multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialise libcurl")));
	OrderHttpContext = AllocSetContextCreate(TopMemoryContext,
											 "trading order http",
											 ALLOCSET_DEFAULT_SIZES);
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) n);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) n);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING);
	nslots = n;
	slots = MemoryContextAllocZero(OrderHttpContext, sizeof(OrderSlot) * n);
	for (int i = 0; i < n; i++)
	{
		slots[i].easy = curl_easy_init();
		if (slots[i].easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not create a libcurl handle")));
	}
}

bool
order_http_busy(int slot)
{
	return slots[slot].busy;
}

int
order_http_in_flight(void)
{
	int			n = 0;

	for (int i = 0; i < nslots; i++)
		n += slots[i].busy ? 1 : 0;
	return n;
}

/*
 * Start method url on slot with a form body (NULL: none).  auth_header is
 * the full "Authorization: ..." line; libcurl keeps it in the slot's
 * header list, freed when the request ends.
 */
bool
order_http_start(int slot, const char *method, const char *url,
				 const char *body, const char *auth_header)
{
	OrderSlot  *s = &slots[slot];
	CURL	   *h = s->easy;
	struct curl_slist *hl = NULL;

	Assert(!s->busy);
	curl_easy_reset(h);
	s->len = 0;
	s->too_large = false;
	s->errbuf[0] = '\0';
	if (s->send)
		pfree((void *) s->send);
	s->send = MemoryContextStrdup(OrderHttpContext, body ? body : "");
	s->send_len = strlen(s->send);
	s->send_off = 0;

	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) order_timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(order_timeout_ms, 3000));
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "trading-order-sender/1.1");
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PRIVATE, (void *) (intptr_t) slot);
	if (broker_ca_file && broker_ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, broker_ca_file);

	if (body)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, s);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, s);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) s->send_len);
		hl = curl_slist_append(hl, "Content-Type: application/x-www-form-urlencoded");
		hl = hl ? curl_slist_append(hl, "Expect:") : NULL;
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	else
	{
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (strcmp(method, "GET") != 0)
			curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
	}
	hl = hl || !body ? curl_slist_append(hl, "X-Kite-Version: 3") : NULL;
	if (hl && auth_header)
		hl = curl_slist_append(hl, auth_header);
	if (hl == NULL)
		return false;
	s->headers = hl;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (curl_multi_add_handle(multi, h) != CURLM_OK)
	{
		curl_slist_free_all(s->headers);
		s->headers = NULL;
		return false;
	}
	s->busy = true;
	return true;
}

static bool
never_left(CURLcode code, CURL * h)
{
	curl_off_t	pretransfer = 0;

	switch (code)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return true;
		case CURLE_OPERATION_TIMEDOUT:
			curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
			return pretransfer == 0;
		default:
			return false;
	}
}

static void
collect(int slot, CURLcode code, OrderReply *r)
{
	OrderSlot  *s = &slots[slot];

	memset(r, 0, sizeof(*r));
	r->slot = slot;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &r->http_status);
	r->reached = !never_left(code, s->easy);
	if (code != CURLE_OK)
		snprintf(r->transport_error, sizeof(r->transport_error), "%s (curl %d)",
				 s->errbuf[0] ? s->errbuf : curl_easy_strerror(code), (int) code);
	else if (s->too_large)
		snprintf(r->transport_error, sizeof(r->transport_error), "reply too large");
	r->len = s->len;
	r->body = palloc(s->len + 1);
	if (s->len > 0)
		memcpy(r->body, s->buf, s->len);
	r->body[s->len] = '\0';
	s->len = 0;
}

/*
 * Let libcurl send what was just started, before anything else the loop
 * does (the watchdog's transaction must not sit between a claim and its
 * request leaving).
 */
void
order_http_kick(void)
{
	int			running = 0;

	curl_multi_perform(multi, &running);
}

/* the finished transfers, appended to out[*n] */
static void
collect_done(OrderReply *out, int *n)
{
	CURLMsg    *msg;
	int			queued;

	while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		intptr_t	slot = 0;
		OrderSlot  *s;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
		s = &slots[slot];
		collect((int) slot, msg->data.result, &out[(*n)++]);
		curl_multi_remove_handle(multi, s->easy);
		curl_slist_free_all(s->headers);	/* it held the token */
		s->headers = NULL;
		s->busy = false;
	}
}

OrderReply *
order_http_wait(long timeout_ms, int *n, bool *latch_set)
{
	int			running = 0;
	OrderReply *out = palloc(sizeof(OrderReply) * Max(nslots, 1));
	fd_set		rfd,
				wfd,
				efd;
	int			maxfd = -1;
	long		curl_to = -1;
	WaitEventSet *set;
	WaitEvent	ev;

	*n = 0;
	curl_multi_perform(multi, &running);
	/* a transfer may finish right here (order_http_kick sent it): no wait */
	collect_done(out, n);
	if (*n > 0)
		timeout_ms = 0;

	FD_ZERO(&rfd);
	FD_ZERO(&wfd);
	FD_ZERO(&efd);
	if (running > 0)
	{
		curl_multi_fdset(multi, &rfd, &wfd, &efd, &maxfd);
		curl_multi_timeout(multi, &curl_to);
		if (curl_to >= 0)
			timeout_ms = Min(timeout_ms, curl_to);
		if (maxfd < 0)
			timeout_ms = Min(timeout_ms, 5);	/* curl wants to be called
												 * soon */
	}

	set = CreateWaitEventSet(CurrentMemoryContext, 3 + Max(maxfd + 1, 0));
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int fd = 0; fd <= maxfd; fd++)
	{
		uint32		events = 0;

		if (FD_ISSET(fd, &rfd) || FD_ISSET(fd, &efd))
			events |= WL_SOCKET_READABLE;
		if (FD_ISSET(fd, &wfd))
			events |= WL_SOCKET_WRITEABLE;
		if (events)
			AddWaitEventToSet(set, events, fd, NULL, NULL);
	}
	if (timeout_ms > 0)
		(void) WaitEventSetWait(set, timeout_ms, &ev, 1, PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	*latch_set = MyLatch->is_set;
	if (running > 0)
		curl_multi_perform(multi, &running);
	collect_done(out, n);
	return out;
}

/*-------------------------------------------------------------------------
 *
 * ticker_ws.c
 *	  The ticker's WebSocket client, over libwebsockets: one client context
 *	  (TLS through OpenSSL for wss://) and up to TICKER_MAX_CONNS
 *	  connections.  WebSocket framing, masking, fragmentation, close
 *	  frames, ping and pong are the library's; this file only moves whole
 *	  messages between the library and ticker.c:
 *
 *	  - ticker_ws_service() runs the library's event loop once; a timer
 *	    every 10 ms makes it return, so the worker's loop keeps its
 *	    deadlines, latch and interrupts;
 *	  - outgoing text messages and pings wait in a per-connection queue
 *	    until the socket is writable (one write per writable callback);
 *	  - incoming messages are reassembled from fragments (bounded by
 *	    MAX_MESSAGE) and handed to ticker.c whole;
 *	  - a connection is closed from the worker's loop with
 *	    lws_set_timeout(LWS_TO_KILL_ASYNC), which works even when the
 *	    peer no longer reads (a close frame could never be written).
 *
 *	  libwebsockets allocates with malloc: the buffers here do too, and
 *	  nothing in this file raises an error while the library is inside a
 *	  callback (ticker.c's handlers never ereport(ERROR) either).  The
 *	  library's own log is silenced: its lines could contain the URL, and
 *	  with it the access token.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ticker.h"
#include "broker_worker.h"

#include <libwebsockets.h>

#define MAX_MESSAGE		(8 * 1024 * 1024)
#define TIMER_US		(10 * LWS_US_PER_MS)

typedef struct OutMsg
{
	struct OutMsg *next;
	size_t		len;
	unsigned char buf[FLEXIBLE_ARRAY_MEMBER];	/* LWS_PRE, then text */
} OutMsg;

typedef struct WsConn
{
	int			k;
	struct lws *wsi;
	bool		active;			/* between connect and its closed event */
	bool		established;
	bool		ping_wanted;
	bool		killing;
	OutMsg	   *head,
			   *tail;
	unsigned char *rx;			/* message being reassembled */
	size_t		rx_len,
				rx_cap;
	bool		rx_binary;
	bool		rx_too_large;
	char		reason[TICKER_REASON_LEN];
} WsConn;

static struct lws_context *ctx;
static WsConn wconn[TICKER_MAX_CONNS];
static lws_sorted_usec_list_t timer;

static void
free_queue(WsConn *c)
{
	while (c->head)
	{
		OutMsg	   *n = c->head->next;

		free(c->head);
		c->head = n;
	}
	c->tail = NULL;
}

static void
reset_conn(WsConn *c)
{
	free_queue(c);
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	c->rx_too_large = false;
	c->wsi = NULL;
	c->active = false;
	c->established = false;
	c->ping_wanted = false;
	c->killing = false;
}

static void
timer_cb(lws_sorted_usec_list_t *sul)
{
	lws_sul_schedule(ctx, 0, &timer, timer_cb, TIMER_US);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		 void *in, size_t len)
{
	WsConn	   *c = (WsConn *) user;

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			if (!c)
				return -1;
			c->established = true;
			c->reason[0] = '\0';
			ticker_on_established(c->k);
			lws_callback_on_writable(wsi);
			break;

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			if (c && c->active)
			{
				int			status = (int) lws_http_client_http_response(wsi);
				char		why[TICKER_REASON_LEN];

				if (c->reason[0])
					strlcpy(why, c->reason, sizeof(why));
				else if (status > 0)
					snprintf(why, sizeof(why), "handshake refused: HTTP %d", status);
				else
					snprintf(why, sizeof(why), "connection failed: %.60s",
							 in ? (const char *) in : "unknown");
				reset_conn(c);
				ticker_on_closed(c->k, why, status);
			}
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
			if (c && c->active)
			{
				char		why[TICKER_REASON_LEN];

				strlcpy(why, c->reason[0] ? c->reason : "closed by the server",
						sizeof(why));
				reset_conn(c);
				ticker_on_closed(c->k, why, 0);
			}
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			if (!c || c->killing)
				break;
			if (lws_is_first_fragment(wsi))
			{
				c->rx_len = 0;
				c->rx_too_large = false;
				c->rx_binary = lws_frame_is_binary(wsi);
			}
			if (!c->rx_too_large)
			{
				if (c->rx_len + len > MAX_MESSAGE)
					c->rx_too_large = true;
				else
				{
					if (c->rx_len + len + 1 > c->rx_cap)
					{
						size_t		cap = Max(c->rx_cap * 2, c->rx_len + len + 1);
						unsigned char *nb = realloc(c->rx, Max(cap, 4096));

						if (!nb)
						{
							c->rx_too_large = true;
							break;
						}
						c->rx = nb;
						c->rx_cap = Max(cap, 4096);
					}
					memcpy(c->rx + c->rx_len, in, len);
					c->rx_len += len;
				}
			}
			if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
			{
				if (c->rx_too_large)
					ticker_on_binary(c->k, NULL, 0);	/* counted malformed */
				else if (c->rx_binary)
					ticker_on_binary(c->k, c->rx, c->rx_len);
				else
				{
					c->rx[c->rx_len] = '\0';
					ticker_on_text(c->k, (const char *) c->rx, c->rx_len);
				}
				c->rx_len = 0;
			}
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
			if (c)
				ticker_on_pong(c->k);
			break;

		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (!c || c->killing)
				break;
			if (c->ping_wanted)
			{
				unsigned char pbuf[LWS_PRE + 4];

				c->ping_wanted = false;
				if (lws_write(wsi, pbuf + LWS_PRE, 0, LWS_WRITE_PING) < 0)
					return -1;
			}
			else if (c->head)
			{
				OutMsg	   *m = c->head;

				if (lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int) m->len)
					return -1;
				c->head = m->next;
				if (!c->head)
					c->tail = NULL;
				free(m);
			}
			if (c->head || c->ping_wanted)
				lws_callback_on_writable(wsi);
			break;

		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"trading-ticker", callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

void
ticker_ws_init(void)
{
	struct lws_context_creation_info info;

	lws_set_log_level(0, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/* read up to 64 kB per connection per round (the default is 4 kB) */
	info.pt_serv_buf_size = 65536;
	if (broker_ca_file && broker_ca_file[0])
		info.client_ssl_ca_filepath = broker_ca_file;
	ctx = lws_create_context(&info);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create the ticker's WebSocket context")));
	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		memset(&wconn[k], 0, sizeof(WsConn));
		wconn[k].k = k;
	}
	lws_sul_schedule(ctx, 0, &timer, timer_cb, TIMER_US);
}

void
ticker_ws_shutdown(void)
{
	if (ctx)
		lws_context_destroy(ctx);
	ctx = NULL;
}

/* one round of the library's loop; wait: up to the next timer (10 ms) */
void
ticker_ws_service(bool wait)
{
	if (ctx)
		(void) lws_service(ctx, wait ? 0 : -1);
}

/*
 * Open connection k to url_base ("wss://ws.kite.trade" or
 * "ws://127.0.0.1:PORT/path") with the session in the query string.
 * Returns false when the attempt could not even start (reported through
 * ticker_on_closed() as well).
 */
bool
ticker_ws_connect(int k, const char *url_base, const char *api_key,
				  const char *access_token)
{
	WsConn	   *c = &wconn[k];
	struct lws_client_connect_info ci;
	char		url[1024];
	char		path[1600];
	const char *prot,
			   *addr,
			   *p;
	int			port;
	bool		tls;

	reset_conn(c);
	c->reason[0] = '\0';
	strlcpy(url, url_base, sizeof(url));
	if (lws_parse_uri(url, &prot, &addr, &port, &p) != 0 ||
		(strcmp(prot, "ws") != 0 && strcmp(prot, "wss") != 0))
	{
		ticker_on_closed(k, "trading.ticker_url is not a ws:// or wss:// URL", 0);
		return false;
	}
	tls = strcmp(prot, "wss") == 0;
	if (port == 80 && tls)
		port = 443;
	/* lws_parse_uri drops the leading '/' of the path */
	snprintf(path, sizeof(path), "/%s%sapi_key=%s&access_token=%s", p,
			 strchr(p, '?') ? "&" : "?", api_key, access_token);

	memset(&ci, 0, sizeof(ci));
	ci.context = ctx;
	ci.address = addr;
	ci.port = port;
	ci.path = path;
	ci.host = addr;
	ci.origin = addr;
	ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
	ci.protocol = NULL;
	ci.local_protocol_name = "trading-ticker";
	ci.userdata = c;
	ci.pwsi = &c->wsi;
	c->active = true;
	c->wsi = lws_client_connect_via_info(&ci);
	explicit_bzero(path, sizeof(path));
	if (c->wsi == NULL && c->active)
	{
		c->active = false;
		ticker_on_closed(k, "connection failed to start", 0);
		return false;
	}
	return true;
}

/* close connection k now (asynchronously: the closed event follows) */
void
ticker_ws_close(int k, const char *reason)
{
	WsConn	   *c = &wconn[k];

	if (!c->active || !c->wsi || c->killing)
		return;
	strlcpy(c->reason, reason, sizeof(c->reason));
	c->killing = true;
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

bool
ticker_ws_send_text(int k, const char *text, size_t len)
{
	WsConn	   *c = &wconn[k];
	OutMsg	   *m;

	if (!c->wsi || !c->established || c->killing)
		return false;
	m = malloc(offsetof(OutMsg, buf) + LWS_PRE + len);
	if (!m)
		return false;
	m->next = NULL;
	m->len = len;
	memcpy(m->buf + LWS_PRE, text, len);
	if (c->tail)
		c->tail->next = m;
	else
		c->head = m;
	c->tail = m;
	lws_callback_on_writable(c->wsi);
	return true;
}

void
ticker_ws_want_ping(int k)
{
	WsConn	   *c = &wconn[k];

	if (!c->wsi || !c->established || c->killing)
		return;
	c->ping_wanted = true;
	lws_callback_on_writable(c->wsi);
}

bool
ticker_ws_busy(int k)
{
	return wconn[k].head != NULL;
}

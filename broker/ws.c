/*
 * ws.c - the paper broker's WebSocket ticker: Kite's streaming protocol
 * over libwebsockets, on its own port (--ws-port; off unless given).
 *
 *   ws://HOST:PORT/?api_key=K&access_token=T   (403 unless a live session)
 *   client text  {"a":"subscribe","v":[tokens]}    new tokens in quote mode
 *                {"a":"unsubscribe","v":[tokens]}
 *                {"a":"mode","v":["ltp"|"quote"|"full",[tokens]]}
 *   server binary  uint16 packet count, then per packet uint16 length and
 *                  the packet (ws_packet.c); a 1-byte frame is a heartbeat
 *   server text    {"type":"order","data":{...}} when an order changes,
 *                  {"type":"error","data":"..."} for a refused request
 *
 * Each subscribed instrument gets a tick every --ws-tick-ms (default 1000)
 * with its current state from the random walk (market.c); a connection
 * with nothing to send for --ws-heartbeat-ms gets a heartbeat.  Limits:
 * --ws-max-connections (3) per API key, --ws-max-tokens (3000) per
 * connection, and --ws-max-queue-kb of unsent data per connection (a
 * client that reads too slowly is dropped, like Kite drops lagging ones).
 *
 * Faults (flags --ws-NAME N at start-up, or POST /admin/ws NAME=N at run
 * time) are armed counters, each consumed by the next event it applies to:
 *   stall      the next N connections about to be sent a frame go silent:
 *              nothing more is sent; pongs continue when stall_pongs=1
 *              (the default), else the connection is no longer read
 *              (so pings get no pong either)
 *   close      the next N frames are replaced by an abrupt close (TCP
 *              shutdown, no close frame)
 *   malformed  the next N frames carry a packet of an unknown length
 *   truncate   the next N frames end in the middle of a packet
 *   refuse     the next N handshakes get HTTP 403 (TokenException)
 *   slow       the next N connections are treated as reading too slowly:
 *              the broker stops writing to them, queues, and drops them
 *              once the queue passes the limit
 *
 * Threads: one service thread owns every connection (lws is single
 * threaded).  Other threads only append order updates to a queue under
 * ws_lock and wake the service thread (lws_cancel_service).  Instrument
 * state is read under g_lock, briefly; fault counters and settings live
 * under ws_lock.
 */
#include "broker.h"
#include "http.h"

#include <libwebsockets.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define WS_MAX_CONNS_HARD	16	/* connections tracked at once */
#define WS_MAX_FRAME_PACKETS 2000	/* packets per binary frame */
#define WS_SERVICE_MS		20	/* tick scheduler period */

enum
{
	MODE_LTP = 0, MODE_QUOTE, MODE_FULL
};
static const char *const mode_names[] = {"ltp", "quote", "full"};

typedef struct wsub
{
	long		token;
	int			inst;			/* market index, -1 = unknown token */
	int			mode;
	double		next_due;		/* epoch seconds */
	bool		first;			/* its first tick is still to be sent */
} wsub;

typedef struct wmsg
{
	struct wmsg *next;
	bool		binary;
	size_t		len;
	unsigned char buf[];		/* LWS_PRE bytes, then the payload */
} wmsg;

typedef struct wsconn
{
	struct lws *wsi;
	unsigned long id;
	wsub	   *subs;
	int			nsubs,
				capsubs;
	wmsg	   *head,
			   *tail;
	size_t		queued;
	double		last_sent;
	bool		stalled;
	bool		slow;
	bool		closing;
	unsigned long frames,
				packets;
	char	   *rx;				/* client message being reassembled */
	size_t		rx_len,
				rx_cap;
} wsconn;

typedef struct wsettings
{
	long		tick_ms;
	long		heartbeat_ms;
	long		max_conns;
	long		max_tokens;
	long		max_queue_kb;
	long		stall,
				close,
				malformed,
				truncate,
				refuse,
				slow;
	bool		stall_pongs;
} wsettings;

static const char *const ws_names[] = {
	"tick_ms", "heartbeat_ms", "max_connections", "max_tokens", "max_queue_kb",
	"stall", "close", "malformed", "truncate", "refuse", "slow", "stall_pongs", NULL
};

static wsettings ws_boot = {1000, 1000, 3, 3000, 4096, 0, 0, 0, 0, 0, 0, true};
static wsettings ws_set;
static long ws_listen_port = -1;	/* from --ws-port */
static char *ws_port_file;

static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lws_context *ws_ctx;
static pthread_t ws_thread;
static volatile bool ws_stopping;
static int	ws_bound_port = -1;
static wsconn *conns[WS_MAX_CONNS_HARD];
static unsigned long conn_seq;
static lws_sorted_usec_list_t tick_sul;

/* what /admin/ws shows of each connection, refreshed by the service thread (ws_lock) */
typedef struct wsnap
{
	unsigned long id;
	int			nsubs;
	unsigned long frames,
				packets;
	bool		stalled,
				slow;
} wsnap;
static wsnap snaps[WS_MAX_CONNS_HARD];
static int	nsnaps;

/* order updates waiting for the service thread (under ws_lock) */
static wmsg *pending_head,
		   *pending_tail;

/* counters (under ws_lock) */
static unsigned long st_connections,
			st_refused,
			st_frames,
			st_packets,
			st_heartbeats,
			st_orders,
			st_dropped_slow,
			st_faults,
			st_errors;

void		ws_encode_packet(const instrument *in, int mode, unsigned char *out, int *len);

/* ------------------------------------------------------------------ */
/* options                                                              */

static int
set_value(wsettings *s, const char *name, const char *value, char *err, size_t errlen)
{
	long		v;

	if (!parse_long(value, &v) || v < 0)
	{
		snprintf(err, errlen, "%s: expected an integer >= 0", name);
		return -1;
	}
	if (strcmp(name, "tick_ms") == 0)
		s->tick_ms = v < 1 ? 1 : v;
	else if (strcmp(name, "heartbeat_ms") == 0)
		s->heartbeat_ms = v;
	else if (strcmp(name, "max_connections") == 0)
		s->max_conns = v > WS_MAX_CONNS_HARD ? WS_MAX_CONNS_HARD : v;
	else if (strcmp(name, "max_tokens") == 0)
		s->max_tokens = v;
	else if (strcmp(name, "max_queue_kb") == 0)
		s->max_queue_kb = v;
	else if (strcmp(name, "stall") == 0)
		s->stall = v;
	else if (strcmp(name, "close") == 0)
		s->close = v;
	else if (strcmp(name, "malformed") == 0)
		s->malformed = v;
	else if (strcmp(name, "truncate") == 0)
		s->truncate = v;
	else if (strcmp(name, "refuse") == 0)
		s->refuse = v;
	else if (strcmp(name, "slow") == 0)
		s->slow = v;
	else if (strcmp(name, "stall_pongs") == 0)
		s->stall_pongs = v != 0;
	else
	{
		snprintf(err, errlen, "unknown WebSocket option %s", name);
		return -1;
	}
	return 0;
}

/*
 * A command-line option: "port", "port-file" or a setting (dashes for
 * underscores).  Called before ws_start().
 */
int
ws_option(const char *name, const char *value, char *err, size_t errlen)
{
	char		key[64];

	if (strcmp(name, "port") == 0)
	{
		if (!parse_long(value, &ws_listen_port) || ws_listen_port < 0 || ws_listen_port > 65535)
		{
			snprintf(err, errlen, "expected a port number");
			return -1;
		}
		return 0;
	}
	if (strcmp(name, "port-file") == 0)
	{
		ws_port_file = strdup(value);
		return 0;
	}
	snprintf(key, sizeof(key), "%s", name);
	for (char *p = key; *p; p++)
		if (*p == '-')
			*p = '_';
	return set_value(&ws_boot, key, value, err, errlen);
}

/* consume one armed fault; needs ws_lock */
static bool
take(long *counter)
{
	if (*counter <= 0)
		return false;
	(*counter)--;
	st_faults++;
	return true;
}

/* ------------------------------------------------------------------ */
/* output queue                                                         */

static wmsg *
msg_new(bool binary, const void *data, size_t len)
{
	wmsg	   *m = malloc(sizeof(wmsg) + LWS_PRE + len);

	if (!m)
		abort();
	m->next = NULL;
	m->binary = binary;
	m->len = len;
	memcpy(m->buf + LWS_PRE, data, len);
	return m;
}

static void
conn_push(wsconn *c, wmsg *m)
{
	if (c->tail)
		c->tail->next = m;
	else
		c->head = m;
	c->tail = m;
	c->queued += m->len;
	if (!c->slow)
		lws_callback_on_writable(c->wsi);
}

static void
conn_free_queue(wsconn *c)
{
	while (c->head)
	{
		wmsg	   *n = c->head->next;

		free(c->head);
		c->head = n;
	}
	c->tail = NULL;
	c->queued = 0;
}

static void
send_error(wsconn *c, const char *text)
{
	jbuf		j;

	jb_init(&j);
	j_obj(&j);
	j_kstr(&j, "type", "error");
	j_kstr(&j, "data", text);
	j_end_obj(&j);
	conn_push(c, msg_new(false, j.buf, j.len));
	jb_free(&j);
	pthread_mutex_lock(&ws_lock);
	st_errors++;
	pthread_mutex_unlock(&ws_lock);
}

/* abrupt close: no close frame, the TCP connection just ends */
static void
conn_kill(wsconn *c)
{
	c->closing = true;
	shutdown(lws_get_socket_fd(c->wsi), SHUT_RDWR);
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* ------------------------------------------------------------------ */
/* client messages                                                      */

static wsub *
sub_find(wsconn *c, long token)
{
	for (int i = 0; i < c->nsubs; i++)
		if (c->subs[i].token == token)
			return &c->subs[i];
	return NULL;
}

/* parse a JSON array of integers starting at p (after '['); returns count */
static int
parse_tokens(const char *p, long *out, int max, const char **end)
{
	int			n = 0;

	while (*p)
	{
		char	   *e;
		long		v;

		while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t')
			p++;
		if (*p == ']')
		{
			*end = p + 1;
			return n;
		}
		v = strtol(p, &e, 10);
		if (e == p || v <= 0 || v > 0xffffffffL)
			return -1;
		if (n < max)
			out[n] = v;
		n++;
		p = e;
	}
	return -1;
}

static void
handle_text(wsconn *c, const char *msg)
{
	const char *a = strstr(msg, "\"a\"");
	const char *v = strstr(msg, "\"v\"");
	const char *p,
			   *end;
	char		action[16] = "";
	int			mode = -1;
	long	   *toks;
	int			n;
	long		max_tokens;

	if (!a || !v)
		return send_error(c, "invalid message");
	a = strchr(a + 3, '"');
	if (!a || sscanf(a + 1, "%15[a-z]", action) != 1)
		return send_error(c, "invalid message");
	p = strchr(v + 3, '[');
	if (!p)
		return send_error(c, "invalid message");
	p++;
	if (strcmp(action, "mode") == 0)
	{
		while (*p == ' ')
			p++;
		for (int m = 0; m < 3; m++)
			if (strncmp(p, "\"", 1) == 0 && strncmp(p + 1, mode_names[m], strlen(mode_names[m])) == 0
				&& p[1 + strlen(mode_names[m])] == '"')
				mode = m;
		if (mode < 0)
			return send_error(c, "invalid mode");
		p = strchr(p + 1, '[');
		if (!p)
			return send_error(c, "invalid message");
		p++;
	}
	toks = malloc(sizeof(long) * 65536);
	n = parse_tokens(p, toks, 65536, &end);
	if (n < 0 || n > 65536)
	{
		free(toks);
		return send_error(c, "invalid token list");
	}
	pthread_mutex_lock(&ws_lock);
	max_tokens = ws_set.max_tokens;
	pthread_mutex_unlock(&ws_lock);

	if (strcmp(action, "subscribe") == 0)
	{
		bool		over = false;
		double		now = now_epoch();

		LOCK		();

		for (int i = 0; i < n; i++)
		{
			wsub	   *s;

			if (sub_find(c, toks[i]))
				continue;
			if (c->nsubs >= max_tokens)
			{
				over = true;
				continue;
			}
			c->subs = grow_array(c->subs, c->nsubs, &c->capsubs, sizeof(wsub), 64);
			s = &c->subs[c->nsubs++];
			s->token = toks[i];
			s->inst = market_find_token(toks[i]);
			s->mode = MODE_QUOTE;
			/* first ticks at once (within 50 ms), spread a little */
			s->next_due = now + (double) (mix64((uint64_t) toks[i] ^ c->id) % 1000) / 1000.0 * 0.05;
			s->first = true;
		}
		UNLOCK();
		if (over)
			send_error(c, "Subscription limit exceeded: at most 3000 instruments per connection");
	}
	else if (strcmp(action, "unsubscribe") == 0)
	{
		for (int i = 0; i < n; i++)
		{
			wsub	   *s = sub_find(c, toks[i]);

			if (s)
				*s = c->subs[--c->nsubs];
		}
	}
	else if (strcmp(action, "mode") == 0)
	{
		for (int i = 0; i < n; i++)
		{
			wsub	   *s = sub_find(c, toks[i]);

			if (s)
				s->mode = mode;
		}
	}
	else
		send_error(c, "invalid action");
	free(toks);
}

/* ------------------------------------------------------------------ */
/* ticks                                                                */

/* an instrument's phase within the tick period, in (0, 1] */
static double
tick_phase(long token)
{
	return (double) (mix64((uint64_t) token) % 1000 + 1) / 1000.0;
}

static void
put16(unsigned char *p, unsigned v)
{
	p[0] = (v >> 8) & 0xff;
	p[1] = v & 0xff;
}

/* one binary frame of the due packets of c (or nothing) */
static void
conn_ticks(wsconn *c, double now, const wsettings *s, bool *malformed, bool *truncate)
{
	unsigned char *buf;
	size_t		len = 2;
	int			count = 0;

	if (c->nsubs == 0)
		return;
	buf = malloc(2 + (size_t) WS_MAX_FRAME_PACKETS * 186 + 64);
	LOCK		();

	for (int i = 0; i < c->nsubs && count < WS_MAX_FRAME_PACKETS; i++)
	{
		wsub	   *sb = &c->subs[i];
		int			plen;

		if (sb->next_due > now || sb->inst < 0)
			continue;
		if (sb->first)
		{
			/*
			 * After the first tick each instrument keeps a phase of its own
			 * within the period, so that N instruments at one tick per period
			 * arrive as a steady N per period (as an exchange's ticks do),
			 * not as one burst of N.
			 */
			sb->first = false;
			sb->next_due = now + tick_phase(sb->token) * s->tick_ms / 1000.0;
		}
		else
		{
			sb->next_due += s->tick_ms / 1000.0;
			if (sb->next_due < now)
				sb->next_due = now + s->tick_ms / 1000.0;
		}
		ws_encode_packet(market_get(sb->inst), sb->mode, buf + len + 2, &plen);
		put16(buf + len, (unsigned) plen);
		len += 2 + plen;
		count++;
	}
	UNLOCK();
	if (count > 0 && *malformed)
	{
		/* a packet of a length no mode has */
		put16(buf + len, 30);
		memset(buf + len + 2, 0xab, 30);
		len += 32;
		count++;
		*malformed = false;
	}
	if (count > 0 && *truncate)
	{
		/* the last packet promises more bytes than the frame holds */
		len -= 2;
		*truncate = false;
	}
	if (count > 0)
	{
		put16(buf, (unsigned) count);
		conn_push(c, msg_new(true, buf, len));
		c->frames++;
		c->packets += count;
		c->last_sent = now;
		pthread_mutex_lock(&ws_lock);
		st_frames++;
		st_packets += count;
		pthread_mutex_unlock(&ws_lock);
	}
	free(buf);
}

static void
tick_cb(lws_sorted_usec_list_t *sul)
{
	static long last_tick_ms = -1;
	double		now = now_epoch();
	wsettings	s;

	(void) sul;
	pthread_mutex_lock(&ws_lock);
	s = ws_set;
	pthread_mutex_unlock(&ws_lock);

	/* a new rate applies at once, not after the next tick of the old one */
	if (last_tick_ms >= 0 && s.tick_ms != last_tick_ms)
		for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
			for (int k = 0; conns[i] && k < conns[i]->nsubs; k++)
				conns[i]->subs[k].next_due = now +
					tick_phase(conns[i]->subs[k].token) * s.tick_ms / 1000.0;
	last_tick_ms = s.tick_ms;

	for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
	{
		wsconn	   *c = conns[i];
		bool		due = false,
					malformed = false,
					truncate = false;

		if (!c || c->closing)
			continue;
		if (c->slow)
		{
			/* a slow reader: everything queues until the limit */
			if (c->queued > (size_t) s.max_queue_kb * 1024)
			{
				pthread_mutex_lock(&ws_lock);
				st_dropped_slow++;
				pthread_mutex_unlock(&ws_lock);
				log_line("ws: connection %lu dropped: reads too slowly (%zu bytes queued)\n",
						 c->id, c->queued);
				conn_kill(c);
				continue;
			}
		}
		if (c->stalled)
		{
			/*
			 * A connection no longer read sees no close from its peer: look
			 * at the socket, so that it does not linger forever.
			 */
			struct pollfd pfd = {lws_get_socket_fd(c->wsi), POLLRDHUP, 0};

			if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			{
				log_line("ws: stalled connection %lu closed by its peer\n", c->id);
				conn_kill(c);
			}
			continue;
		}
		for (int k = 0; k < c->nsubs && !due; k++)
			due = c->subs[k].next_due <= now && c->subs[k].inst >= 0;
		if (due || now - c->last_sent >= s.heartbeat_ms / 1000.0)
		{
			bool		stall,
						kill;

			pthread_mutex_lock(&ws_lock);
			stall = take(&ws_set.stall);
			kill = !stall && take(&ws_set.close);
			if (!stall && !kill && due)
			{
				malformed = take(&ws_set.malformed);
				truncate = !malformed && take(&ws_set.truncate);
			}
			if (!stall && !kill && take(&ws_set.slow))
				c->slow = true;
			pthread_mutex_unlock(&ws_lock);
			if (stall)
			{
				log_line("ws: connection %lu stalls (pongs %s)\n", c->id,
						 s.stall_pongs ? "continue" : "stop");
				c->stalled = true;
				if (!s.stall_pongs)
					lws_rx_flow_control(c->wsi, 0);
				continue;
			}
			if (kill)
			{
				log_line("ws: connection %lu closed abruptly (fault)\n", c->id);
				conn_kill(c);
				continue;
			}
		}
		if (due)
			conn_ticks(c, now, &s, &malformed, &truncate);
		if (!c->closing && now - c->last_sent >= s.heartbeat_ms / 1000.0 && s.heartbeat_ms > 0)
		{
			unsigned char hb = 0;

			conn_push(c, msg_new(true, &hb, 1));
			c->last_sent = now;
			pthread_mutex_lock(&ws_lock);
			st_heartbeats++;
			pthread_mutex_unlock(&ws_lock);
		}
		if (!c->slow && c->queued > (size_t) s.max_queue_kb * 1024)
		{
			pthread_mutex_lock(&ws_lock);
			st_dropped_slow++;
			pthread_mutex_unlock(&ws_lock);
			log_line("ws: connection %lu dropped: reads too slowly (%zu bytes queued)\n",
					 c->id, c->queued);
			conn_kill(c);
		}
	}
	pthread_mutex_lock(&ws_lock);
	nsnaps = 0;
	for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
		if (conns[i] && !conns[i]->closing)
		{
			wsnap	   *n = &snaps[nsnaps++];

			n->id = conns[i]->id;
			n->nsubs = conns[i]->nsubs;
			n->frames = conns[i]->frames;
			n->packets = conns[i]->packets;
			n->stalled = conns[i]->stalled;
			n->slow = conns[i]->slow;
		}
	pthread_mutex_unlock(&ws_lock);
	if (!ws_stopping)
		lws_sul_schedule(ws_ctx, 0, &tick_sul, tick_cb, WS_SERVICE_MS * LWS_US_PER_MS);
}

/* deliver queued order updates to every connection (service thread) */
static void
deliver_orders(void)
{
	wmsg	   *list;

	pthread_mutex_lock(&ws_lock);
	list = pending_head;
	pending_head = pending_tail = NULL;
	pthread_mutex_unlock(&ws_lock);
	while (list)
	{
		wmsg	   *next = list->next;

		for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
			if (conns[i] && !conns[i]->closing && !conns[i]->stalled)
				conn_push(conns[i], msg_new(false, list->buf + LWS_PRE, list->len));
		free(list);
		list = next;
	}
}

void
ws_order_update(const char *json, size_t len)
{
	wmsg	   *m;

	if (!ws_ctx)
		return;
	m = msg_new(false, json, len);
	pthread_mutex_lock(&ws_lock);
	if (pending_tail)
		pending_tail->next = m;
	else
		pending_head = m;
	pending_tail = m;
	st_orders++;
	pthread_mutex_unlock(&ws_lock);
	lws_cancel_service(ws_ctx);
}

/* ------------------------------------------------------------------ */
/* the protocol callback                                                */

static int
count_conns(void)
{
	int			n = 0;

	for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
		if (conns[i] && !conns[i]->closing)
			n++;
	return n;
}

static int
refuse(struct lws *wsi, unsigned status, const char *type, const char *msg)
{
	char		body[256];

	snprintf(body, sizeof(body),
			 "{\"status\":\"error\",\"message\":\"%s\",\"error_type\":\"%s\",\"data\":null}",
			 msg, type);
	pthread_mutex_lock(&ws_lock);
	st_refused++;
	pthread_mutex_unlock(&ws_lock);
	log_line("ws: handshake refused: %u %s\n", status, type);
	lws_return_http_status(wsi, status, body);
	return 1;
}

static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			void *in, size_t len)
{
	wsconn	   *c = (wsconn *) user;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			{
				char		kb[128],
							tb[128];
				const char *key = lws_get_urlarg_by_name(wsi, "api_key=", kb, sizeof(kb));
				const char *tok = lws_get_urlarg_by_name(wsi, "access_token=", tb, sizeof(tb));
				bool		forced,
							ok;
				long		maxc;

				pthread_mutex_lock(&ws_lock);
				forced = take(&ws_set.refuse);
				maxc = ws_set.max_conns;
				pthread_mutex_unlock(&ws_lock);
				LOCK		();

				ok = auth_token_ok(key, tok);
				UNLOCK();
				if (forced || !ok)
					return refuse(wsi, 403, "TokenException",
								  "Token is invalid or has expired.");
				if (count_conns() >= maxc)
					return refuse(wsi, 429, "NetworkException",
								  "Too many connections: at most 3 per API key");
				return 0;
			}
		case LWS_CALLBACK_ESTABLISHED:
			{
				int			slot = -1;

				for (int i = 0; i < WS_MAX_CONNS_HARD && slot < 0; i++)
					if (!conns[i])
						slot = i;
				if (slot < 0)
					return -1;
				memset(c, 0, sizeof(*c));
				c->wsi = wsi;
				c->id = ++conn_seq;
				c->last_sent = now_epoch();
				conns[slot] = c;
				pthread_mutex_lock(&ws_lock);
				st_connections++;
				pthread_mutex_unlock(&ws_lock);
				log_line("ws: connection %lu open\n", c->id);
				break;
			}
		case LWS_CALLBACK_RECEIVE:
			{
				if (!c || !c->wsi || lws_frame_is_binary(wsi))
					break;
				/* a message may come in pieces: reassemble it (at most 1 MB) */
				if (lws_is_first_fragment(wsi))
					c->rx_len = 0;
				if (c->rx_len + len + 1 > (size_t) 1024 * 1024)
				{
					send_error(c, "message too large");
					c->rx_len = 0;
					break;
				}
				if (c->rx_len + len + 1 > c->rx_cap)
				{
					c->rx_cap = (c->rx_len + len + 1) * 2;
					c->rx = realloc(c->rx, c->rx_cap);
					if (!c->rx)
						abort();
				}
				memcpy(c->rx + c->rx_len, in, len);
				c->rx_len += len;
				if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
				{
					c->rx[c->rx_len] = '\0';
					handle_text(c, c->rx);
					c->rx_len = 0;
				}
				break;
			}
		case LWS_CALLBACK_SERVER_WRITEABLE:
			{
				wmsg	   *m;

				if (!c || c->closing || c->slow || !c->head)
					break;
				m = c->head;
				if (lws_write(wsi, m->buf + LWS_PRE, m->len,
							  m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int) m->len)
					return -1;
				c->head = m->next;
				if (!c->head)
					c->tail = NULL;
				c->queued -= m->len;
				free(m);
				if (c->head)
					lws_callback_on_writable(wsi);
				break;
			}
		case LWS_CALLBACK_CLOSED:
			if (c && c->wsi)
			{
				for (int i = 0; i < WS_MAX_CONNS_HARD; i++)
					if (conns[i] == c)
						conns[i] = NULL;
				log_line("ws: connection %lu closed (%lu frames, %lu packets)\n",
						 c->id, c->frames, c->packets);
				conn_free_queue(c);
				free(c->rx);
				c->rx = NULL;
				free(c->subs);
				c->subs = NULL;
				c->wsi = NULL;
			}
			break;
		case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
			deliver_orders();
			break;
		default:
			break;
	}
	return 0;
}

static struct lws_protocols protocols[] = {
	{"kite", ws_callback, sizeof(wsconn), 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* ------------------------------------------------------------------ */
/* start, stop, admin                                                   */

static void *
ws_main(void *arg)
{
	(void) arg;
	while (!ws_stopping)
		if (lws_service(ws_ctx, 0) < 0)
			break;
	return NULL;
}

int
ws_start(void)
{
	struct lws_context_creation_info info;
	struct lws_vhost *vh;

	ws_set = ws_boot;
	if (ws_listen_port < 0)
		return 0;
	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = (int) ws_listen_port;
	info.iface = g_cfg.bind;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	ws_ctx = lws_create_context(&info);
	if (!ws_ctx)
		return -1;
	vh = lws_create_vhost(ws_ctx, &info);
	if (!vh)
	{
		lws_context_destroy(ws_ctx);
		ws_ctx = NULL;
		return -1;
	}
	ws_bound_port = lws_get_vhost_listen_port(vh);
	lws_sul_schedule(ws_ctx, 0, &tick_sul, tick_cb, WS_SERVICE_MS * LWS_US_PER_MS);
	if (pthread_create(&ws_thread, NULL, ws_main, NULL) != 0)
		return -1;
	if (ws_port_file)
	{
		char	   *tmp = malloc(strlen(ws_port_file) + 8);
		FILE	   *f;

		sprintf(tmp, "%s.tmp", ws_port_file);
		f = fopen(tmp, "w");
		if (!f)
			return -1;
		fprintf(f, "%d\n", ws_bound_port);
		fclose(f);
		if (rename(tmp, ws_port_file) != 0)
			return -1;
		free(tmp);
	}
	return 0;
}

void
ws_stop(void)
{
	if (!ws_ctx)
		return;
	ws_stopping = true;
	lws_cancel_service(ws_ctx);
	pthread_join(ws_thread, NULL);
	lws_context_destroy(ws_ctx);
	ws_ctx = NULL;
	while (pending_head)
	{
		wmsg	   *n = pending_head->next;

		free(pending_head);
		pending_head = n;
	}
}

int
ws_port(void)
{
	return ws_bound_port;
}

/*
 * GET /admin/ws: settings, armed faults and counters.  POST changes
 * settings and arms faults (the names of the flags, with underscores);
 * reset=1 restores the command-line settings first.
 */
void
ws_admin(struct req *r, reply *rp)
{
	jbuf		j;
	char		err[160];
	const char *v;
	wsettings	s;

	if (strcmp(r->method, "POST") == 0)
	{
		pthread_mutex_lock(&ws_lock);
		s = ws_set;
		if ((v = req_param(r, "reset")) && strcmp(v, "0") != 0)
			s = ws_boot;
		for (int i = 0; ws_names[i]; i++)
			if ((v = req_param(r, ws_names[i])) && set_value(&s, ws_names[i], v, err, sizeof(err)) != 0)
			{
				pthread_mutex_unlock(&ws_lock);
				reply_error(rp, 400, "InputException", err);
				return;
			}
		ws_set = s;
		pthread_mutex_unlock(&ws_lock);
	}
	pthread_mutex_lock(&ws_lock);
	s = ws_set;
	jb_init(&j);
	j_obj(&j);
	j_kint(&j, "port", ws_bound_port);
	j_kint(&j, "tick_ms", s.tick_ms);
	j_kint(&j, "heartbeat_ms", s.heartbeat_ms);
	j_kint(&j, "max_connections", s.max_conns);
	j_kint(&j, "max_tokens", s.max_tokens);
	j_kint(&j, "max_queue_kb", s.max_queue_kb);
	j_kint(&j, "stall", s.stall);
	j_kbool(&j, "stall_pongs", s.stall_pongs);
	j_kint(&j, "close", s.close);
	j_kint(&j, "malformed", s.malformed);
	j_kint(&j, "truncate", s.truncate);
	j_kint(&j, "refuse", s.refuse);
	j_kint(&j, "slow", s.slow);
	j_kint(&j, "connections_total", (long long) st_connections);
	j_kint(&j, "refused_total", (long long) st_refused);
	j_kint(&j, "frames_total", (long long) st_frames);
	j_kint(&j, "packets_total", (long long) st_packets);
	j_kint(&j, "heartbeats_total", (long long) st_heartbeats);
	j_kint(&j, "order_updates_total", (long long) st_orders);
	j_kint(&j, "dropped_slow_total", (long long) st_dropped_slow);
	j_kint(&j, "faults_total", (long long) st_faults);
	j_kint(&j, "errors_total", (long long) st_errors);
	j_karr(&j, "connections");
	for (int i = 0; i < nsnaps; i++)
	{
		j_obj(&j);
		j_kint(&j, "id", (long long) snaps[i].id);
		j_kint(&j, "subscriptions", snaps[i].nsubs);
		j_kint(&j, "frames", (long long) snaps[i].frames);
		j_kint(&j, "packets", (long long) snaps[i].packets);
		j_kbool(&j, "stalled", snaps[i].stalled);
		j_kbool(&j, "slow", snaps[i].slow);
		j_end_obj(&j);
	}
	pthread_mutex_unlock(&ws_lock);
	j_end_arr(&j);
	j_end_obj(&j);
	reply_success(rp, &j);
}

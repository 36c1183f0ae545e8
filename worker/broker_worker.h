/*-------------------------------------------------------------------------
 *
 * broker_worker.h
 *	  Declarations shared by the files of the broker worker:
 *
 *	  broker_worker.c	module entry points (GUCs, registration, shared
 *						memory) and the worker's main loop and scheduler
 *	  broker_http.c		libcurl: the multi handle the worker polls with,
 *						and a blocking request for the login helper
 *	  broker_apply.c	transactions: applying a response through the SQL
 *						functions of 60_worker.sql, loading configuration
 *						and the session
 *	  broker_sql.c		SQL-callable functions: session, login, status
 *
 * Shared memory ("trading.broker_worker") holds the worker's live state so
 * that the status views work from any backend.
 *
 * Locking rules
 * -------------
 * - Counters (requests, errors by type, connections) are pg_atomic_uint64:
 *   written by the worker only, read by anyone without a lock.
 * - The per-endpoint times, last error type and consecutive failure count,
 *   and the worker's state, session state and pid are guarded by the one
 *   spinlock "mutex", held only to copy a few fields; nothing that can
 *   error or allocate happens under it.  The worker is the only writer of
 *   these fields except session_state, which set_broker_session() also
 *   writes (after its transaction committed the new session).
 * - session_gen and config_gen are atomics that SQL bumps (new session;
 *   poll intervals, watchlist or rate limits changed) before setting the
 *   worker's latch; the worker compares them with the values it last
 *   loaded.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_BROKER_WORKER_H
#define TRADING_BROKER_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/spin.h"

/* the polled endpoints; order = rows of trading.worker_status */
typedef enum BrokerEndpoint
{
	BEP_ORDERS = 0,
	BEP_TRADES,
	BEP_POSITIONS,
	BEP_HOLDINGS,
	BEP_MARGINS,
	BEP_QUOTES,
	BEP_COUNT
} BrokerEndpoint;

/* error classes counted per endpoint (trading.worker_errors.error_type) */
typedef enum BrokerErrorType
{
	BERR_TIMEOUT = 0,			/* connect or total timeout */
	BERR_CONNECTION,			/* refused, reset, dropped, TLS failure */
	BERR_HTTP_429,				/* HTTP 429, whatever the body */
	BERR_HTTP_4XX,				/* other 4xx without a Kite error body */
	BERR_HTTP_5XX,				/* 5xx without a Kite error body */
	BERR_NOT_JSON,				/* body is not JSON (an HTML page, ...) */
	BERR_MALFORMED,				/* JSON that does not parse or has the wrong
								 * shape */
	BERR_BROKER_ERROR,			/* {"status":"error"} other than a token */
	BERR_TOKEN,					/* TokenException: the session is over */
	BERR_TOO_LARGE,				/* body above trading.broker_max_response_kb */
	BERR_APPLY,					/* the database refused the data */
	BERR_SCHEMA,				/* a mapped field of the wrong JSON type or
								 * range, or data of the wrong shape */
	BERR_ENCODING,				/* a body not valid in the server encoding */
	BERR_COUNT
} BrokerErrorType;

/* worker states (trading.worker_status.worker_state) */
typedef enum BrokerWorkerState
{
	BWS_NOT_RUNNING = 0,
	BWS_STARTING,
	BWS_WAITING_DATABASE,
	BWS_WAITING_EXTENSION,
	BWS_PAUSED,					/* trading.broker_poll_enabled = off */
	BWS_NO_SESSION,
	BWS_POLLING,
	BWS_SESSION_EXPIRED,
	BWS_RATE_LIMIT_ERROR		/* polling, but the limits could not be synced */
} BrokerWorkerState;

/* session states (trading.worker_status.session_state) */
typedef enum BrokerSessionState
{
	BSS_UNKNOWN = 0,			/* not loaded yet */
	BSS_NONE,					/* no session set */
	BSS_ACTIVE,
	BSS_EXPIRED,				/* the broker answered TokenException */
	BSS_UNREADABLE				/* stored, but cannot be decrypted */
} BrokerSessionState;

typedef struct BrokerEndpointShared
{
	/* under mutex */
	TimestampTz last_success;	/* 0 = never */
	TimestampTz last_error;
	TimestampTz next_poll;
	int			last_error_type;	/* BrokerErrorType, -1 = none */
	int			consecutive_failures;
	int			interval_ms;
	bool		enabled;
	char		last_field[64]; /* the field of the last schema error */
	/* atomics */
	pg_atomic_uint64 requests_total;
	pg_atomic_uint64 errors_total;
	pg_atomic_uint64 errors[BERR_COUNT];
} BrokerEndpointShared;

typedef struct BrokerWorkerShared
{
	slock_t		mutex;
	int			state;			/* BrokerWorkerState */
	int			session_state;	/* BrokerSessionState */
	pid_t		pid;			/* 0 when not running */
	int			procno;			/* pgprocno of the worker, -1 */
	pg_atomic_uint32 database_seen; /* 0 after a failed connection
									 * (bgw_common.c) */
	TimestampTz started_at;
	pg_atomic_uint64 session_gen;	/* bumped by set_broker_session */
	pg_atomic_uint64 config_gen;	/* bumped when configuration changed */
	pg_atomic_uint64 connections_opened;
	pg_atomic_uint64 requests_total;
	pg_atomic_uint64 cycles_total;
	BrokerEndpointShared ep[BEP_COUNT];
} BrokerWorkerShared;

extern BrokerWorkerShared *bw_shared;

/* static description of each endpoint */
typedef struct BrokerEndpointInfo
{
	const char *name;			/* poll_intervals.endpoint */
	const char *path;			/* URL path (quotes: chosen per mode) */
	const char *rate_class;		/* trading.rate_limits endpoint */
	const char *apply_sql;		/* SQL applying a success body ($1 jsonb) */
} BrokerEndpointInfo;

extern const BrokerEndpointInfo broker_endpoints[BEP_COUNT];
extern const char *const broker_error_names[BERR_COUNT];
extern const char *const broker_state_names[];
extern const char *const broker_session_names[];

/* ---- GUCs (broker_worker.c) ---- */
extern char *broker_url;
extern char *broker_ca_file;
extern int	broker_connect_timeout_ms;
extern int	broker_timeout_ms;
extern int	broker_max_connections;
extern int	broker_rate_margin_ms;
extern int	broker_max_backoff_ms;
extern int	broker_max_response_kb;
extern bool broker_poll_enabled;

/* ---- broker_worker.c ---- */
extern void broker_worker_wake(void);
extern void broker_set_session_state(BrokerSessionState s);

/* ---- broker_http.c ---- */

/* One finished request, as the worker sees it. */
typedef struct BrokerResponse
{
	int			curl_code;		/* CURLcode; 0 = a reply was received */
	long		http_status;
	bool		is_json;		/* Content-Type application/json */
	bool		too_large;
	char	   *body;			/* NUL-terminated (palloc'd, the caller's to
								 * free) */
	Size		len;
	double		seconds;		/* total time */
	long		new_connections;	/* connections this request opened */
	char		errbuf[256];	/* curl's message, never holding secrets */
} BrokerResponse;

typedef void (*BrokerDoneCallback) (int slot, BrokerResponse *resp);

/*
 * The error class of a finished request (BrokerErrorType), with a message
 * for the log in msg, or -1 when it carries a JSON body to hand to the
 * response path (which still judges the envelope and the HTTP status).
 */
extern int	broker_http_classify(const BrokerResponse *resp, char *msg, Size msglen);
extern void broker_http_init(void);
extern void broker_http_reset(void);
extern bool broker_http_start(int slot, const char *url, const char *auth_header);
extern bool broker_http_busy(int slot);
extern void broker_http_poll(int timeout_ms, BrokerDoneCallback done);
extern int	broker_http_in_flight(void);

/* blocking POST for the login helper (form body); returns palloc'd resp */
extern BrokerResponse *broker_http_post_form(const char *url, const char *form);
extern char *broker_http_escape(const char *s);
extern char *broker_make_url(const char *path, const char *query);

/* ---- broker_apply.c ---- */

/* outcome of applying one response */
typedef struct BrokerApplyResult
{
	int			error;			/* BrokerErrorType, -1 = applied */
	char		message[256];	/* for the log: never the token; cut, no
								 * control characters */
	int			rejected;		/* elements rejected (schema) in an applied
								 * response */
	char		field[64];		/* the field of a schema error */
} BrokerApplyResult;

typedef struct BrokerConfig
{
	int			interval_ms[BEP_COUNT];
	bool		enabled[BEP_COUNT];
	/* watchlist batches for quotes: "i=EX:SYM&i=..." query strings */
	int			nbatches;
	char	  **batch_query;
	char	  **batch_path;
	int		   *batch_group;	/* 0, or the suspect group it quotes */
	char	 ***batch_insts;	/* its instruments */
	int		   *batch_ninst;
	bool		extension_present;
} BrokerConfig;

typedef struct BrokerSession
{
	bool		present;
	bool		expired;
	bool		readable;
	char	   *auth_header;	/* "token key:access" (in a private context) */
} BrokerSession;

extern void broker_load_config(BrokerConfig *cfg, MemoryContext cxt);
extern void broker_load_session(BrokerSession *sess, MemoryContext cxt);
extern void broker_mark_session_expired(void);

/*
 * Quote batches the broker refuses (InputException): the batch is split in
 * two groups quoted on their own, again and again, until the refused
 * instrument is alone; it is then marked refused in trading.watchlist
 * (refused_at, refused_reason) and skipped, while the rest are quoted as
 * before.  Both return true when the batches must be rebuilt
 * (broker_load_config).  1.1 installs only.
 */
extern bool broker_quote_batch_refused(BrokerConfig *cfg, int batch, const char *reason);
extern bool broker_quote_batch_ok(BrokerConfig *cfg, int batch);
extern void broker_apply_response(BrokerEndpoint ep, const char *quote_mode,
								  BrokerResponse *resp,
								  BrokerApplyResult *result);

/*
 * The response path's entry points for other modules (1.1 installs only):
 * broker_apply_body validates body (server encoding, no NUL byte) and
 * applies it with trading._apply_response(endpoint, body, http_status) in
 * its own transaction; broker_apply_orders_json does the same for a Kite
 * order object or array of them (a streamed order update) through
 * trading._apply_orders.  Neither raises: the outcome is in result (error
 * -1 = applied, rejected = elements refused with result->field named);
 * orders that reached a final status are counted in the metrics after
 * commit.  Never call them inside a transaction.
 */
extern void broker_apply_body(const char *endpoint, const char *body, Size len,
							  long http_status, BrokerApplyResult *result);
extern void broker_apply_orders_json(const char *json, Size len,
									 BrokerApplyResult *result);

/*
 * The same for a body handed to sql, a query of one text parameter
 * returning rows (kind, name, detail) as _apply_orders does (e.g.
 * "SELECT r.kind, r.name, r.detail FROM trading._ticker_apply_order($1) r").
 */
extern void broker_apply_text(const char *sql, const char *text, Size len,
							  BrokerApplyResult *result);

/* copy src into dst (size dstlen): cut at a character boundary, control
 * characters replaced by spaces (for log lines and status fields) */
extern void broker_clean_message(char *dst, Size dstlen, const char *src);

/* the installed version the response path talks to (broker_load_config) */
extern int	broker_apply_ext_version;

#endif							/* TRADING_BROKER_WORKER_H */

/*-------------------------------------------------------------------------
 *
 * broker_apply.c
 *	  The broker worker's transactions: each function here starts and ends
 *	  its own transaction, so one response is applied atomically or not at
 *	  all, and an error (a malformed payload, a constraint) is caught,
 *	  rolled back and reported to the caller instead of stopping the worker.
 *
 *	  broker_load_config		poll intervals and watchlist batches
 *	  broker_load_session		decrypt the stored session
 *	  broker_mark_session_expired
 *	  broker_apply_response		classify a finished request and apply it
 *								with trading._apply_response()
 *
 * The mapping from JSON to rows is SQL (60_worker.sql), done with jsonb.
 * Nothing here logs a body or a header: the session's token is only ever
 * in the decrypted BrokerSession, kept in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "broker_worker.h"
#include "crypto.h"
#include "metrics.h"
#include "ticker.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define SESSION_AAD "trading.broker_session"

/* Kite's per-call instrument limits, and a bound on the URL's length */
#define QUOTE_MAX_FULL		500
#define QUOTE_MAX_LTP		1000
#define QUOTE_MAX_QUERY		8000

/* set_at of the session loaded last, to expire exactly that one */
static TimestampTz loaded_session_set_at = 0;

/* ---------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------
 */
typedef struct LoadConfigArgs
{
	BrokerConfig *cfg;
	MemoryContext cxt;
} LoadConfigArgs;

static void
add_batch(BrokerConfig *cfg, MemoryContext cxt, const char *mode,
		  StringInfo q, int *cap)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (cfg->nbatches == *cap)
	{
		*cap = *cap ? *cap * 2 : 4;
		if (cfg->batch_query)
		{
			cfg->batch_query = repalloc(cfg->batch_query, sizeof(char *) * *cap);
			cfg->batch_path = repalloc(cfg->batch_path, sizeof(char *) * *cap);
		}
		else
		{
			cfg->batch_query = palloc(sizeof(char *) * *cap);
			cfg->batch_path = palloc(sizeof(char *) * *cap);
		}
	}
	cfg->batch_query[cfg->nbatches] = pstrdup(q->data);
	cfg->batch_path[cfg->nbatches] = pstrdup(mode);
	cfg->nbatches++;
	MemoryContextSwitchTo(old);
	resetStringInfo(q);
}

static void
load_config_body(void *arg)
{
	LoadConfigArgs *a = (LoadConfigArgs *) arg;
	BrokerConfig *cfg = a->cfg;
	StringInfoData q;
	char		cur_mode[8] = "";
	int			in_batch = 0;
	int			cap = 0;

	if (SPI_execute("SELECT endpoint, interval_ms, enabled FROM trading.poll_intervals",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.poll_intervals");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *iv = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *en = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		for (int e = 0; e < BEP_COUNT; e++)
			if (name && strcmp(name, broker_endpoints[e].name) == 0)
			{
				cfg->interval_ms[e] = atoi(iv);
				cfg->enabled[e] = en && en[0] == 't';
			}
	}

	/*
	 * watchlist: batches per mode, within the per-call and URL limits.
	 * While the ticker streams, the instruments it streams are not polled
	 * (ticker.c); its 'quote' mode is polled as full.
	 */
	if (SPI_execute(ticker_streaming() ?
					"SELECT w.instrument, CASE w.mode WHEN 'quote' THEN 'full' ELSE w.mode END AS m "
					"FROM trading.watchlist w WHERE NOT EXISTS (SELECT 1 FROM trading.ticker_watchlist t "
					"WHERE t.instrument OPERATOR(pg_catalog.=) w.instrument) ORDER BY m, w.instrument" :
					"SELECT instrument, CASE mode WHEN 'quote' THEN 'full' ELSE mode END AS m "
					"FROM trading.watchlist ORDER BY m, instrument",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.watchlist");
	initStringInfo(&q);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *inst = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *mode = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *esc = broker_http_escape(inst);
		int			max = strcmp(mode, "full") == 0 ? QUOTE_MAX_FULL : QUOTE_MAX_LTP;

		if (in_batch > 0 &&
			(strcmp(cur_mode, mode) != 0 || in_batch >= max ||
			 q.len + strlen(esc) + 3 > QUOTE_MAX_QUERY))
		{
			add_batch(cfg, a->cxt, cur_mode, &q, &cap);
			in_batch = 0;
		}
		strlcpy(cur_mode, mode, sizeof(cur_mode));
		appendStringInfo(&q, "%si=%s", in_batch ? "&" : "", esc);
		in_batch++;
	}
	if (in_batch > 0)
		add_batch(cfg, a->cxt, cur_mode, &q, &cap);
}

/*
 * Read poll intervals and the watchlist into cfg (allocated in cxt).  On
 * an error (the extension was dropped meanwhile, ...), cfg says the
 * extension is absent and the error is logged once by the caller.
 */
void
broker_load_config(BrokerConfig *cfg, MemoryContext cxt)
{
	LoadConfigArgs a = {cfg, cxt};
	ErrorData  *e;

	memset(cfg, 0, sizeof(*cfg));
	if (trading_bgw_extension_version() == 0)
		return;
	e = trading_bgw_run_xact("trading broker worker: loading configuration",
				 load_config_body, &a);
	if (e)
	{
		ereport(LOG,
				(errmsg("trading broker worker could not load its configuration: %s",
						e->message)));
		FreeErrorData(e);
		cfg->nbatches = 0;
		return;
	}
	cfg->extension_present = true;
}

/* ---------------------------------------------------------------------
 * Session
 * ---------------------------------------------------------------------
 */
typedef struct LoadSessionArgs
{
	BrokerSession *sess;
	MemoryContext cxt;
} LoadSessionArgs;

static void
load_session_body(void *arg)
{
	LoadSessionArgs *a = (LoadSessionArgs *) arg;
	bool		isnull;
	Datum		d;
	bytea	   *env;
	char	   *plain;
	Size		len;

	if (SPI_execute("SELECT credentials, state, set_at FROM trading.broker_session",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.broker_session");
	if (SPI_processed == 0)
		return;
	a->sess->present = true;
	a->sess->expired = strcmp(SPI_getvalue(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2), "expired") == 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	loaded_session_set_at = isnull ? 0 : DatumGetTimestampTz(d);
	if (a->sess->expired)
		return;

	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	env = DatumGetByteaPP(d);
	plain = crypto_decrypt_with_server_key(env, SESSION_AAD, strlen(SESSION_AAD), &len);
	a->sess->auth_header = MemoryContextAlloc(a->cxt, len + 32);
	snprintf(a->sess->auth_header, len + 32, "Authorization: token %.*s",
			 (int) len, plain);
	explicit_bzero(plain, len);
	a->sess->readable = true;
}

void
broker_load_session(BrokerSession *sess, MemoryContext cxt)
{
	LoadSessionArgs a = {sess, cxt};
	ErrorData  *e;

	if (sess->auth_header)
	{
		explicit_bzero(sess->auth_header, strlen(sess->auth_header));
		pfree(sess->auth_header);
	}
	memset(sess, 0, sizeof(*sess));
	e = trading_bgw_run_xact("trading broker worker: loading the session",
				 load_session_body, &a);
	if (e)
	{
		/* the crypto module's messages never contain the plaintext */
		ereport(LOG,
				(errmsg("trading broker worker cannot use the stored broker session: %s",
						e->message)));
		FreeErrorData(e);
		sess->present = true;
		sess->readable = false;
		sess->auth_header = NULL;
	}
}

static void
expire_body(void *arg)
{
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(loaded_session_set_at)};

	SPI_execute_with_args("SELECT trading._expire_session($1)", 1, argtypes,
						  values, NULL, false, 1);
}

void
broker_mark_session_expired(void)
{
	ErrorData  *e = trading_bgw_run_xact("trading broker worker: session expired",
							 expire_body, NULL);

	if (e)
	{
		ereport(LOG,
				(errmsg("trading broker worker could not record the session expiry: %s",
						e->message)));
		FreeErrorData(e);
	}
}

/* ---------------------------------------------------------------------
 * Applying a response
 * ---------------------------------------------------------------------
 */
typedef struct ApplyArgs
{
	const char *endpoint;
	BrokerResponse *resp;
	BrokerApplyResult *result;
	MemoryContext cxt;			/* the caller's */
	char	   *finals;			/* "BUY|COMPLETE,SELL|REJECTED" or NULL */
} ApplyArgs;

/* count the orders that reached a final status, once committed */
static void
count_final_orders(char *list)
{
	char	   *save = NULL;

	for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *bar = strchr(item, '|');

		if (bar == NULL)
			continue;
		*bar = '\0';
		metrics_count_trade(item, bar + 1);
	}
}

static void
apply_body(void *arg)
{
	ApplyArgs  *a = (ApplyArgs *) arg;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *etype;
	char	   *msg;
	char	   *finals;

	values[0] = CStringGetTextDatum(a->endpoint);
	values[1] = PointerGetDatum(cstring_to_text_with_len(a->resp->body, a->resp->len));
	if (SPI_execute_with_args("SELECT error_type, message, array_to_string(final_orders, ',') "
							  "FROM trading._apply_response($1, $2)",
							  2, argtypes, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "trading._apply_response returned no row");
	etype = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	msg = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	finals = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (finals && finals[0])
		a->finals = MemoryContextStrdup(a->cxt, finals);
	if (etype != NULL)
	{
		a->result->error = strcmp(etype, "TokenException") == 0 ? BERR_TOKEN :
			BERR_BROKER_ERROR;
		snprintf(a->result->message, sizeof(a->result->message), "%s: %s",
				 etype, msg ? msg : "");
	}
}

static void
set_result(BrokerApplyResult *r, BrokerErrorType e, const char *fmt, long arg)
{
	r->error = e;
	snprintf(r->message, sizeof(r->message), fmt, arg);
}

/*
 * Classify a finished request and, if it is a Kite success, apply it in
 * one transaction.  result->error is -1 when the tables were updated.
 * endpoint is the name passed to _apply_response ("orders", "quotes:ltp").
 */
void
broker_apply_response(BrokerEndpoint ep, const char *quote_mode,
					  BrokerResponse *resp, BrokerApplyResult *result)
{
	const char *name = broker_endpoints[ep].name;
	char		qname[32];
	ApplyArgs	a;
	ErrorData  *e;

	result->error = -1;
	result->message[0] = '\0';

	if (resp->too_large)
		return set_result(result, BERR_TOO_LARGE, "response larger than %ld kB",
						  (long) broker_max_response_kb);
	if (resp->curl_code != 0)
	{
		result->error = (resp->curl_code == 28) ? BERR_TIMEOUT : BERR_CONNECTION;	/* CURLE_OPERATION_TIMEDOUT */
		strlcpy(result->message, resp->errbuf, sizeof(result->message));
		return;
	}
	if (resp->http_status == 429)
		return set_result(result, BERR_HTTP_429, "HTTP %ld", resp->http_status);
	if (!resp->is_json)
	{
		if (resp->http_status >= 500)
			return set_result(result, BERR_HTTP_5XX, "HTTP %ld without a JSON body",
							  resp->http_status);
		if (resp->http_status >= 400)
			return set_result(result, BERR_HTTP_4XX, "HTTP %ld without a JSON body",
							  resp->http_status);
		return set_result(result, BERR_NOT_JSON, "HTTP %ld with a body that is not JSON",
						  resp->http_status);
	}
	if (memchr(resp->body, '\0', resp->len) != NULL)
		return set_result(result, BERR_MALFORMED, "body has a NUL byte at HTTP %ld",
						  resp->http_status);

	if (ep == BEP_QUOTES)
	{
		snprintf(qname, sizeof(qname), "quotes:%s", quote_mode);
		name = qname;
	}
	a.endpoint = name;
	a.resp = resp;
	a.result = result;
	a.cxt = CurrentMemoryContext;
	a.finals = NULL;
	e = trading_bgw_run_xact("trading broker worker: applying a response", apply_body, &a);
	if (e == NULL && a.finals)
		count_final_orders(a.finals);
	if (e)
	{
		int			cls = ERRCODE_TO_CATEGORY(e->sqlerrcode);

		if (cls == ERRCODE_DATA_EXCEPTION ||
			cls == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
			e->sqlerrcode == ERRCODE_TRADING_WORKER_MALFORMED ||
			e->sqlerrcode == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE)
			result->error = BERR_MALFORMED;
		else
			result->error = BERR_APPLY;
		strlcpy(result->message, e->message, sizeof(result->message));
		FreeErrorData(e);
		return;
	}
	if (result->error < 0 && resp->http_status != 200)
	{
		/* a success envelope with an error status: applied, but say so */
		ereport(DEBUG1,
				(errmsg("trading broker worker: %s answered HTTP %ld with status success",
						broker_endpoints[ep].name, resp->http_status)));
	}
	else if (result->error == BERR_BROKER_ERROR && resp->http_status >= 500)
		result->error = BERR_HTTP_5XX;	/* a Kite error body on a 5xx */
}

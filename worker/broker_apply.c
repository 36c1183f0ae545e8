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
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
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

/*
 * Groups of instruments under suspicion after a refused quote batch (see
 * broker_quote_batch_refused), kept across configuration reloads in
 * TopMemoryContext.  Each is quoted as a batch of its own, before the
 * others.
 */
typedef struct SuspectGroup
{
	int			id;				/* > 0 */
	char		mode[8];
	int			n;
	char	  **insts;
} SuspectGroup;

static SuspectGroup *suspects = NULL;
static int	nsuspects = 0;
static int	capsuspects = 0;
static int	next_group_id = 1;

static int
suspect_group_of(const char *inst)
{
	for (int g = 0; g < nsuspects; g++)
		for (int k = 0; k < suspects[g].n; k++)
			if (strcmp(suspects[g].insts[k], inst) == 0)
				return g;
	return -1;
}

static void
suspect_add(const char *mode, char **insts, int n)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	SuspectGroup *g;

	if (nsuspects == capsuspects)
	{
		capsuspects = capsuspects ? capsuspects * 2 : 8;
		suspects = suspects ? repalloc(suspects, sizeof(SuspectGroup) * capsuspects) :
			palloc(sizeof(SuspectGroup) * capsuspects);
	}
	g = &suspects[nsuspects++];
	g->id = next_group_id++;
	strlcpy(g->mode, mode, sizeof(g->mode));
	g->n = n;
	g->insts = palloc(sizeof(char *) * n);
	for (int k = 0; k < n; k++)
		g->insts[k] = pstrdup(insts[k]);
	MemoryContextSwitchTo(old);
}

static void
suspect_remove(int id)
{
	for (int g = 0; g < nsuspects; g++)
		if (suspects[g].id == id)
		{
			for (int k = 0; k < suspects[g].n; k++)
				pfree(suspects[g].insts[k]);
			pfree(suspects[g].insts);
			suspects[g] = suspects[--nsuspects];
			return;
		}
}

/* batch building: the query string so far and its instruments */
typedef struct BatchBuild
{
	StringInfoData q;
	char	   *insts[QUOTE_MAX_LTP];
	int			n;
	int			cap;			/* of cfg's arrays */
} BatchBuild;

static void
add_batch(BrokerConfig *cfg, MemoryContext cxt, const char *mode,
		  BatchBuild *b, int group)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int			i = cfg->nbatches;

	if (i == b->cap)
	{
		b->cap = b->cap ? b->cap * 2 : 4;
		cfg->batch_query = i ? repalloc(cfg->batch_query, sizeof(char *) * b->cap) :
			palloc(sizeof(char *) * b->cap);
		cfg->batch_path = i ? repalloc(cfg->batch_path, sizeof(char *) * b->cap) :
			palloc(sizeof(char *) * b->cap);
		cfg->batch_group = i ? repalloc(cfg->batch_group, sizeof(int) * b->cap) :
			palloc(sizeof(int) * b->cap);
		cfg->batch_insts = i ? repalloc(cfg->batch_insts, sizeof(char **) * b->cap) :
			palloc(sizeof(char **) * b->cap);
		cfg->batch_ninst = i ? repalloc(cfg->batch_ninst, sizeof(int) * b->cap) :
			palloc(sizeof(int) * b->cap);
	}
	cfg->batch_query[i] = pstrdup(b->q.data);
	cfg->batch_path[i] = pstrdup(mode);
	cfg->batch_group[i] = group;
	cfg->batch_insts[i] = palloc(sizeof(char *) * Max(b->n, 1));
	for (int k = 0; k < b->n; k++)
		cfg->batch_insts[i][k] = pstrdup(b->insts[k]);
	cfg->batch_ninst[i] = b->n;
	cfg->nbatches++;
	MemoryContextSwitchTo(old);
	resetStringInfo(&b->q);
	b->n = 0;
}

static void
batch_append(BatchBuild *b, char *inst)
{
	appendStringInfo(&b->q, "%si=%s", b->n ? "&" : "", broker_http_escape(inst));
	b->insts[b->n++] = inst;
}

static void
load_config_body(void *arg)
{
	LoadConfigArgs *a = (LoadConfigArgs *) arg;
	BrokerConfig *cfg = a->cfg;
	BatchBuild	b;
	char		cur_mode[8] = "";

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
	 * watchlist: batches per mode, within the per-call and URL limits. While
	 * the ticker streams, the instruments it streams are not polled
	 * (ticker.c); its 'quote' mode is polled as full.  Instruments the broker
	 * refused (1.1: refused_at) are skipped, and so are those the instrument
	 * master does not list (1.1: unknown_since, see 52_instruments.sql).
	 */
	if (SPI_execute(ticker_streaming() ?
					"SELECT w.instrument, CASE w.mode WHEN 'quote' THEN 'full' ELSE w.mode END AS m "
					"FROM trading.watchlist w WHERE w.refused_at IS NULL AND w.unknown_since IS NULL "
					"AND NOT EXISTS (SELECT 1 FROM trading.ticker_watchlist t "
					"WHERE t.instrument OPERATOR(pg_catalog.=) w.instrument) ORDER BY m, w.instrument" :
					broker_apply_ext_version >= 110 ?
					"SELECT instrument, CASE mode WHEN 'quote' THEN 'full' ELSE mode END AS m "
					"FROM trading.watchlist WHERE refused_at IS NULL AND unknown_since IS NULL "
					"ORDER BY m, instrument" :
					"SELECT instrument, CASE mode WHEN 'quote' THEN 'full' ELSE mode END AS m "
					"FROM trading.watchlist ORDER BY m, instrument",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.watchlist");
	initStringInfo(&b.q);
	b.n = 0;
	b.cap = 0;

	/* suspect groups first, each a batch of its own (still watched only) */
	for (int g = 0; g < nsuspects; g++)
	{
		for (int k = 0; k < suspects[g].n; k++)
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				char	   *inst = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

				if (strcmp(inst, suspects[g].insts[k]) == 0)
				{
					batch_append(&b, inst);
					break;
				}
			}
		if (b.n > 0)
			add_batch(cfg, a->cxt, suspects[g].mode, &b, suspects[g].id);
		else
			suspect_remove(suspects[g--].id);	/* left the watchlist */
	}

	/* the others: batches per mode, within the per-call and URL limits */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *inst = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *mode = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		int			max = strcmp(mode, "full") == 0 ? QUOTE_MAX_FULL : QUOTE_MAX_LTP;

		if (nsuspects > 0 && suspect_group_of(inst) >= 0)
			continue;
		if (b.n > 0 &&
			(strcmp(cur_mode, mode) != 0 || b.n >= max ||
			 b.q.len + strlen(inst) * 3 + 3 > QUOTE_MAX_QUERY))
			add_batch(cfg, a->cxt, cur_mode, &b, 0);
		strlcpy(cur_mode, mode, sizeof(cur_mode));
		batch_append(&b, inst);
	}
	if (b.n > 0)
		add_batch(cfg, a->cxt, cur_mode, &b, 0);
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
	broker_apply_ext_version = trading_bgw_extension_version();
	if (broker_apply_ext_version == 0)
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
 * Quote batches the broker refuses
 * ---------------------------------------------------------------------
 */
typedef struct RefuseArgs
{
	const char *instrument;
	const char *reason;
} RefuseArgs;

static void
refuse_body(void *arg)
{
	RefuseArgs *r = (RefuseArgs *) arg;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(r->instrument),
	CStringGetTextDatum(r->reason)};

	if (SPI_execute_with_args("UPDATE trading.watchlist "
							  "SET refused_at = pg_catalog.now(), refused_reason = $2 "
							  "WHERE instrument OPERATOR(pg_catalog.=) $1 AND refused_at IS NULL",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not mark an instrument refused");
}

bool
broker_quote_batch_refused(BrokerConfig *cfg, int batch, const char *reason)
{
	int			n;
	char	  **insts;

	if (broker_apply_ext_version < 110 || batch < 0 || batch >= cfg->nbatches)
		return false;
	n = cfg->batch_ninst[batch];
	insts = cfg->batch_insts[batch];
	if (cfg->batch_group[batch] > 0)
		suspect_remove(cfg->batch_group[batch]);
	if (n == 1)
	{
		RefuseArgs	r = {insts[0], reason};
		ErrorData  *e = trading_bgw_run_xact("trading broker worker: marking a refused instrument",
											 refuse_body, &r);

		if (e)
		{
			ereport(LOG,
					(errmsg("trading broker worker could not mark instrument %s refused: %s",
							insts[0], e->message)));
			FreeErrorData(e);
		}
		else
			ereport(LOG,
					(errmsg("trading broker worker: the broker refuses instrument %s; it is skipped",
							insts[0]),
					 errhint("Correct or delete the watchlist entry, or set its refused_at to NULL to quote it again.")));
	}
	else if (n > 1)
	{
		/* the two halves are quoted on their own, before the others */
		suspect_add(cfg->batch_path[batch], insts, n / 2);
		suspect_add(cfg->batch_path[batch], insts + n / 2, n - n / 2);
	}
	return true;
}

bool
broker_quote_batch_ok(BrokerConfig *cfg, int batch)
{
	if (batch < 0 || batch >= cfg->nbatches || cfg->batch_group[batch] <= 0)
		return false;
	/* innocent: back into the ordinary batches */
	suspect_remove(cfg->batch_group[batch]);
	return true;
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
 *
 * The SQL returns rows (kind, name, detail), see 61_broker_response.sql:
 * broker_error, not_applied, final_order, rejected.  A 1.0 install (the
 * new library before ALTER EXTENSION UPDATE) has the 1.0 function, whose
 * result is turned into the same rows by the query.
 * ---------------------------------------------------------------------
 */
int			broker_apply_ext_version = 0;

typedef struct FinalOrder
{
	char	   *side;
	char	   *status;
} FinalOrder;

typedef struct ApplyArgs
{
	const char *sql;
	int			nargs;
	Oid			argtypes[3];
	Datum		values[3];
	bool		legacy;			/* a 1.0 install: roll back a non-2xx success */
	const char *body;			/* the broker's bytes: made into
								 * values[body_arg] inside the transaction (as
								 * jsonb when body_jsonb), where an error is
								 * caught */
	Size		body_len;
	int			body_arg;
	bool		body_jsonb;
	long		http_status;
	BrokerApplyResult *result;
	MemoryContext cxt;			/* the caller's */
	FinalOrder *finals;			/* in cxt */
	int			nfinals;
} ApplyArgs;

void
broker_clean_message(char *dst, Size dstlen, const char *src)
{
	int			len = (int) strlen(src);

	if (dstlen == 0)
		return;
	if ((Size) len >= dstlen)
		len = pg_mbcliplen(src, len, (int) dstlen - 1);
	memmove(dst, src, len);		/* dst may be src */
	dst[len] = '\0';
	for (char *p = dst; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = ' ';
}

static const char LEGACY_APPLY_SQL[] =
"SELECT x.kind, x.name, x.detail FROM trading._apply_response($1, $2) r, "
"LATERAL (SELECT 'broker_error', r.error_type, r.message WHERE r.error_type IS NOT NULL "
"UNION ALL SELECT 'final_order', pg_catalog.split_part(f, '|', 1), "
"pg_catalog.split_part(f, '|', 2) FROM pg_catalog.unnest(r.final_orders) f) "
"x(kind, name, detail)";

static void
apply_body(void *arg)
{
	ApplyArgs  *a = (ApplyArgs *) arg;
	BrokerApplyResult *res = a->result;
	bool		broker_error = false;

	/* the body's datum is made here: allocation and parsing can fail */
	if (a->body_jsonb)
		a->values[a->body_arg] = DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(pnstrdup(a->body, a->body_len)));
	else
		a->values[a->body_arg] = PointerGetDatum(cstring_to_text_with_len(a->body,
																		  (int) a->body_len));
	if (SPI_execute_with_args(a->sql, a->nargs, a->argtypes, a->values, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "the broker response path returned no result");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		char	   *kind = SPI_getvalue(tup, td, 1);
		char	   *name = SPI_getvalue(tup, td, 2);
		char	   *detail = SPI_getvalue(tup, td, 3);
		char		clean[200];

		if (kind == NULL)
			continue;
		broker_clean_message(clean, sizeof(clean), detail ? detail : "");
		if (strcmp(kind, "broker_error") == 0)
		{
			broker_error = true;
			res->error = (name && strcmp(name, "TokenException") == 0) ? BERR_TOKEN :
				a->http_status >= 500 ? BERR_HTTP_5XX : BERR_BROKER_ERROR;
			snprintf(res->message, sizeof(res->message), "%s: %s",
					 name ? name : "", clean);
			broker_clean_message(res->message, sizeof(res->message), res->message);
		}
		else if (strcmp(kind, "not_applied") == 0)
		{
			res->error = a->http_status >= 500 ? BERR_HTTP_5XX : BERR_HTTP_4XX;
			strlcpy(res->message, clean, sizeof(res->message));
		}
		else if (strcmp(kind, "rejected") == 0)
		{
			res->rejected = detail ? atoi(detail) : 1;
			broker_clean_message(res->field, sizeof(res->field), name ? name : "");
		}
		else if (strcmp(kind, "final_order") == 0 && name && detail)
		{
			MemoryContext old = MemoryContextSwitchTo(a->cxt);

			if (a->finals == NULL)
				a->finals = palloc(sizeof(FinalOrder) * SPI_processed);
			a->finals[a->nfinals].side = pstrdup(name);
			a->finals[a->nfinals].status = pstrdup(detail);
			a->nfinals++;
			MemoryContextSwitchTo(old);
		}
	}
	/* 1.0's function applied a success envelope whatever the status */
	if (a->legacy && !broker_error && (a->http_status < 200 || a->http_status > 299))
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_WORKER_SCHEMA),
				 errmsg("a success envelope with HTTP status %ld", a->http_status)));
}

/* run the SQL of a; classify a caught error; count finals after commit */
static void
run_apply(ApplyArgs *a)
{
	BrokerApplyResult *result = a->result;
	ErrorData  *e;

	a->cxt = CurrentMemoryContext;
	a->finals = NULL;
	a->nfinals = 0;
	e = trading_bgw_run_xact("trading broker worker: applying a response",
							 apply_body, a);
	if (e)
	{
		int			cls = ERRCODE_TO_CATEGORY(e->sqlerrcode);

		result->rejected = 0;
		if (e->sqlerrcode == ERRCODE_TRADING_WORKER_SCHEMA)
		{
			result->error = a->legacy && e->column_name == NULL ?
				(a->http_status >= 500 ? BERR_HTTP_5XX : BERR_HTTP_4XX) : BERR_SCHEMA;
			broker_clean_message(result->field, sizeof(result->field),
								 e->column_name ? e->column_name : "");
		}
		else if (e->sqlerrcode == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE ||
				 e->sqlerrcode == ERRCODE_UNTRANSLATABLE_CHARACTER)
			result->error = BERR_ENCODING;
		else if (cls == ERRCODE_DATA_EXCEPTION ||
				 cls == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
				 e->sqlerrcode == ERRCODE_TRADING_WORKER_MALFORMED ||
				 e->sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX)
			result->error = BERR_MALFORMED;
		else
			result->error = BERR_APPLY;
		broker_clean_message(result->message, sizeof(result->message), e->message);
		FreeErrorData(e);
		return;
	}
	for (int i = 0; i < a->nfinals; i++)
		metrics_count_trade(a->finals[i].side, a->finals[i].status);
}

static void
result_init(BrokerApplyResult *result)
{
	result->error = -1;
	result->message[0] = '\0';
	result->rejected = 0;
	result->field[0] = '\0';
}

/* a body the database may see: no NUL byte, valid in the server encoding */
static bool
body_acceptable(const char *body, Size len, BrokerApplyResult *result)
{
	if (memchr(body, '\0', len) != NULL)
	{
		result->error = BERR_ENCODING;
		strlcpy(result->message, "body has a NUL byte", sizeof(result->message));
		return false;
	}
	if (!pg_verifymbstr(body, (int) len, true))
	{
		result->error = BERR_ENCODING;
		snprintf(result->message, sizeof(result->message),
				 "body is not valid %s", GetDatabaseEncodingName());
		return false;
	}
	return true;
}

void
broker_apply_body(const char *endpoint, const char *body, Size len,
				  long http_status, BrokerApplyResult *result)
{
	ApplyArgs	a;

	result_init(result);
	if (!body_acceptable(body, len, result))
		return;
	memset(&a, 0, sizeof(a));
	a.result = result;
	a.http_status = http_status;
	a.legacy = broker_apply_ext_version < 110;
	a.sql = a.legacy ? LEGACY_APPLY_SQL :
		"SELECT r.kind, r.name, r.detail FROM trading._apply_response($1, $2, $3) r";
	a.nargs = a.legacy ? 2 : 3;
	a.argtypes[0] = TEXTOID;
	a.argtypes[1] = TEXTOID;
	a.argtypes[2] = INT4OID;
	a.values[0] = CStringGetTextDatum(endpoint);
	a.body = body;
	a.body_len = len;
	a.body_arg = 1;
	a.values[2] = Int32GetDatum((int32) http_status);
	run_apply(&a);
}

void
broker_apply_text(const char *sql, const char *text, Size len,
				  BrokerApplyResult *result)
{
	ApplyArgs	a;

	result_init(result);
	if (!body_acceptable(text, len, result))
		return;
	memset(&a, 0, sizeof(a));
	a.result = result;
	a.http_status = 200;
	a.sql = sql;
	a.nargs = 1;
	a.argtypes[0] = TEXTOID;
	a.body = text;

	a.body_len = len;
	run_apply(&a);
}

void
broker_apply_orders_json(const char *json, Size len, BrokerApplyResult *result)
{
	ApplyArgs	a;

	result_init(result);
	if (!body_acceptable(json, len, result))
		return;
	memset(&a, 0, sizeof(a));
	a.body = json;
	a.body_len = len;
	a.body_jsonb = true;
	a.result = result;
	a.http_status = 200;
	a.sql = "SELECT r.kind, r.name, r.detail FROM trading._apply_orders($1) r";
	a.nargs = 1;
	a.argtypes[0] = JSONBOID;
	run_apply(&a);
}

/*
 * Classify a finished request (broker_http_classify) and, if it carries a
 * JSON body, hand it to the response path.  result->error is -1 when the
 * tables were updated.
 */
void
broker_apply_response(BrokerEndpoint ep, const char *quote_mode,
					  BrokerResponse *resp, BrokerApplyResult *result)
{
	char		name[32];
	int			err;

	result_init(result);
	err = broker_http_classify(resp, result->message, sizeof(result->message));
	if (err >= 0)
	{
		result->error = err;
		return;
	}
	if (ep == BEP_QUOTES)
		snprintf(name, sizeof(name), "quotes:%s", quote_mode);
	else
		strlcpy(name, broker_endpoints[ep].name, sizeof(name));
	broker_apply_body(name, resp->body, resp->len, resp->http_status, result);
}

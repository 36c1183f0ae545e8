/*-------------------------------------------------------------------------
 *
 * broker_sql.c
 *	  SQL-callable functions of the broker worker module:
 *
 *	  set_broker_session(api_key, access_token)	 store the session
 *	  broker_login(api_key, request_token [, api_secret])
 *		the Kite login exchange (POST /session/token with the SHA-256
 *		checksum), then store the session it returns; without api_secret
 *		the secret stored by set_broker_api_secret is used, so the secret
 *		is in no statement, log line or pg_stat_activity row of a login
 *	  set_broker_api_secret(api_key, api_secret)
 *		store the api secret once, encrypted with the server key (AAD
 *		"trading.broker_api_secret:" || api_key); pass it as a bind
 *		parameter (docs/SECURITY.md)
 *	  clear_broker_session()
 *	  _worker_config_changed()	statement trigger on poll_intervals and
 *								watchlist: wakes the worker after commit
 *	  _worker_status(), _worker_errors(), _worker_http(): the status views,
 *								read from the worker's shared memory
 *
 * Secrets: the access token and the api secret are never put in an error,
 * a log line or a notification; the session is stored as one envelope
 * encrypted with the server key (crypto.h), AAD "trading.broker_session".
 * Arguments are checked for characters that could break the HTTP header
 * they end up in.  The functions writing the session are SECURITY DEFINER
 * (the table is readable by its owner only) and wake the worker only once
 * their transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "broker_worker.h"
#include "crypto.h"
#include "ratelimit.h"

#include <openssl/evp.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#define SESSION_AAD "trading.broker_session"
#define API_SECRET_AAD "trading.broker_api_secret:"
#define LOGIN_RATE_WAIT_MS	10000

PG_FUNCTION_INFO_V1(broker_sql_set_session);
PG_FUNCTION_INFO_V1(broker_login);
PG_FUNCTION_INFO_V1(broker_sql_set_api_secret);
PG_FUNCTION_INFO_V1(broker_sql_clear_session);
PG_FUNCTION_INFO_V1(broker_worker_config_changed);
PG_FUNCTION_INFO_V1(broker_worker_status);
PG_FUNCTION_INFO_V1(broker_worker_errors);
PG_FUNCTION_INFO_V1(broker_worker_http);

/* ---------------------------------------------------------------------
 * Waking the worker after commit
 * ---------------------------------------------------------------------
 */
/* at commit: the worker reloads the session, or its configuration */
static void
session_changed(void)
{
	pg_atomic_fetch_add_u64(&bw_shared->session_gen, 1);
	broker_worker_wake();
}

static void
config_changed(void)
{
	pg_atomic_fetch_add_u64(&bw_shared->config_gen, 1);
	broker_worker_wake();
}

Datum
broker_worker_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_worker_config_changed() must be called as a trigger")));
	trading_at_commit(config_changed);
	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------------------
 * Session
 * ---------------------------------------------------------------------
 */

/*
 * Credentials go into "Authorization: token key:token" and a form body:
 * only printable ASCII without spaces; no ':' in the api_key (it
 * separates the pair).  The message names the argument, never its value.
 */
static void
check_credential(const char *name, const char *value, bool colon_ok)
{
	for (const char *p = value; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= 0x20 || c >= 0x7f || (!colon_ok && c == ':'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s contains a character that is not allowed", name),
					 errdetail("Kite credentials are printable ASCII without spaces%s.",
							   colon_ok ? "" : " or colons")));
	}
}

static void
require_server_key(void)
{
	if (!crypto_server_key_available())
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_NO_SERVER_KEY),
				 errmsg("no server key is loaded, so the broker session cannot be stored"),
				 errdetail("The session is stored encrypted with the server key."),
				 errhint("Configure trading.key_command (see docs/ENCRYPTION.md) and restart the server.")));
}

/* encrypt and store; wakes the worker after commit */
static void
store_session(const char *api_key, const char *access_token,
			  const char *user_id, Datum login_time, bool login_time_null)
{
	char	   *plain = psprintf("%s:%s", api_key, access_token);
	Size		plen = strlen(plain);
	bytea	   *env;
	Oid			argtypes[3] = {BYTEAOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	env = crypto_encrypt_with_server_key(plain, plen, SESSION_AAD, strlen(SESSION_AAD));
	explicit_bzero(plain, plen);
	pfree(plain);

	values[0] = PointerGetDatum(env);
	if (user_id)
		values[1] = CStringGetTextDatum(user_id);
	else
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	values[2] = login_time;
	if (login_time_null)
		nulls[2] = 'n';

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO trading.broker_session AS s "
							  "(singleton, credentials, user_id, login_time, set_at, state, expired_at) "
							  "VALUES (true, $1, $2, $3, clock_timestamp(), 'active', NULL) "
							  "ON CONFLICT (singleton) DO UPDATE SET "
							  "credentials = EXCLUDED.credentials, user_id = EXCLUDED.user_id, "
							  "login_time = EXCLUDED.login_time, set_at = EXCLUDED.set_at, "
							  "state = 'active', expired_at = NULL",
							  3, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the broker session");
	SPI_execute("SELECT pg_catalog.pg_notify('trading_session', '{\"state\": \"active\"}')",
				false, 0);
	SPI_finish();
	trading_at_commit(session_changed);
}

Datum
broker_sql_set_session(PG_FUNCTION_ARGS)
{
	char	   *api_key = trading_text_arg(fcinfo, 0, "api_key", 128);
	char	   *access_token = trading_text_arg(fcinfo, 1, "access_token", 1024);

	trading_check_database();
	trading_require_primary("setting the broker session");
	check_credential("api_key", api_key, false);
	check_credential("access_token", access_token, true);
	require_server_key();
	store_session(api_key, access_token, NULL, (Datum) 0, true);
	explicit_bzero(access_token, strlen(access_token));
	PG_RETURN_VOID();
}

Datum
broker_sql_clear_session(PG_FUNCTION_ARGS)
{
	bool		found;

	trading_check_database();
	trading_require_primary("clearing the broker session");
	SPI_connect();
	SPI_execute("DELETE FROM trading.broker_session", false, 0);
	found = SPI_processed > 0;
	if (found)
		SPI_execute("SELECT pg_catalog.pg_notify('trading_session', '{\"state\": \"none\"}')",
					false, 0);
	SPI_finish();
	trading_at_commit(session_changed);
	PG_RETURN_BOOL(found);
}

/* lower-case hex SHA-256 of the concatenation of three strings */
static void
sha256_hex3(const char *a, const char *b, const char *c, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		EVP_DigestUpdate(ctx, a, strlen(a)) == 1 &&
		EVP_DigestUpdate(ctx, b, strlen(b)) == 1 &&
		EVP_DigestUpdate(ctx, c, strlen(c)) == 1 &&
		EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok || mdlen != 32)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not compute the login checksum")));
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	explicit_bzero(md, sizeof(md));
}

/* wait (up to LOGIN_RATE_WAIT_MS) until kite.api grants one request */
static void
login_rate_wait(void)
{
	int64		deadline = trading_monotonic_us() + (int64) LOGIN_RATE_WAIT_MS * 1000;

	for (;;)
	{
		int64		wait = 0;
		RateLimitResult r = ratelimit_try("kite.api", 1, 0, &wait);

		if (r != RATELIMIT_REFUSED)
			return;				/* granted, or no limit configured */
		if (trading_monotonic_us() + wait > deadline)
			ereport(ERROR,
					(errcode(ERRCODE_TRADING_RATE_LIMIT_TIMEOUT),
					 errmsg("rate limit \"kite.api\" did not allow the login request within %d ms",
							LOGIN_RATE_WAIT_MS)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait / 1000, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Parse body as jsonb in a subtransaction, so that a malformed body gives
 * our own error (the json parser's error context would quote the body,
 * which may hold the token).  NULL when it does not parse.
 */
static Jsonb *
parse_jsonb_quietly(const char *body)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *volatile jb = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		jb = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return jb;
}

/* string value of key in an object container, or NULL */
static char *
json_child_string(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (c == NULL || !JsonContainerIsObject(c))
		return NULL;
	if (!getKeyJsonValueFromContainer(c, key, strlen(key), &v) ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

static JsonbContainer *
json_child_object(JsonbContainer *c, const char *key)
{
	JsonbValue	v;

	if (c == NULL || !JsonContainerIsObject(c))
		return NULL;
	if (!getKeyJsonValueFromContainer(c, key, strlen(key), &v) ||
		v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		return NULL;
	return v.val.binary.data;
}

static char *
api_secret_aad(const char *api_key)
{
	return psprintf(API_SECRET_AAD "%s", api_key);
}

/*
 * The api secret stored for api_key, decrypted (palloc'd; the caller
 * wipes it).  42704 when none is stored.
 */
static char *
stored_api_secret(const char *api_key)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(api_key)};
	bytea	   *env = NULL;
	char	   *aad = api_secret_aad(api_key);
	char	   *secret;
	Size		len;

	SPI_connect();
	if (SPI_execute_with_args("SELECT secret FROM trading.broker_api_secret "
							  "WHERE api_key OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.broker_api_secret");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		env = DatumGetByteaPCopy(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	if (env == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no api secret is stored for this api_key"),
				 errdetail("broker_login(api_key, request_token) uses the secret stored by trading.set_broker_api_secret()."),
				 errhint("Store it once with trading.set_broker_api_secret(api_key, api_secret), passing the secret as a bind parameter.")));
	secret = crypto_decrypt_with_server_key(env, aad, strlen(aad), &len);
	if (strlen(secret) != len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the stored api secret is not a string")));
	return secret;
}

/* set_broker_api_secret(api_key text, api_secret text) */
Datum
broker_sql_set_api_secret(PG_FUNCTION_ARGS)
{
	char	   *api_key = trading_text_arg(fcinfo, 0, "api_key", 128);
	char	   *api_secret = trading_text_arg(fcinfo, 1, "api_secret", 256);
	char	   *aad = api_secret_aad(api_key);
	Oid			argtypes[2] = {TEXTOID, BYTEAOID};
	Datum		values[2];

	trading_check_database();
	trading_require_primary("storing the broker api secret");
	check_credential("api_key", api_key, false);
	check_credential("api_secret", api_secret, true);
	require_server_key();
	values[0] = CStringGetTextDatum(api_key);
	values[1] = PointerGetDatum(crypto_encrypt_with_server_key(api_secret,
															   strlen(api_secret),
															   aad, strlen(aad)));
	explicit_bzero(api_secret, strlen(api_secret));
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO trading.broker_api_secret AS s (api_key, secret, set_at) "
							  "VALUES ($1, $2, pg_catalog.clock_timestamp()) "
							  "ON CONFLICT (api_key) DO UPDATE SET "
							  "secret = EXCLUDED.secret, set_at = EXCLUDED.set_at",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the broker api secret");
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
broker_login(PG_FUNCTION_ARGS)
{
	char	   *api_key = trading_text_arg(fcinfo, 0, "api_key", 128);
	char	   *request_token = trading_text_arg(fcinfo, 1, "request_token", 256);
	char	   *api_secret = PG_NARGS() > 2
	? trading_text_arg(fcinfo, 2, "api_secret", 256) : NULL;
	char		checksum[65];
	char	   *form;
	char	   *url;
	BrokerResponse *resp;
	Jsonb	   *jb;
	JsonbContainer *data;
	char	   *status;
	char	   *access_token;
	char	   *user_id;
	char	   *login_time;
	Datum		login_ts = (Datum) 0;
	bool		login_ts_null = true;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	trading_check_database();
	/* before the broker sees the single-use request token */
	trading_require_primary("logging in to the broker");
	check_credential("api_key", api_key, false);
	check_credential("request_token", request_token, true);
	if (api_secret)
		check_credential("api_secret", api_secret, true);
	require_server_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "broker_login must return a record");
	if (api_secret == NULL)
		api_secret = stored_api_secret(api_key);

	sha256_hex3(api_key, request_token, api_secret, checksum);
	explicit_bzero(api_secret, strlen(api_secret));
	form = psprintf("api_key=%s&request_token=%s&checksum=%s",
					broker_http_escape(api_key), broker_http_escape(request_token),
					checksum);
	url = broker_make_url("/session/token", NULL);

	login_rate_wait();
	resp = broker_http_post_form(url, form);
	explicit_bzero(form, strlen(form));
	CHECK_FOR_INTERRUPTS();

	if (resp->curl_code != 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BROKER_UNREACHABLE),
				 errmsg("could not reach the broker at %s", broker_url),
				 errdetail("%s", resp->errbuf)));
	if (memchr(resp->body, '\0', resp->len) != NULL ||
		!pg_verifymbstr(resp->body, (int) resp->len, true))
	{
		explicit_bzero(resp->body, resp->len);
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BROKER_ENCODING),
				 errmsg("the broker's login answer is not valid %s", GetDatabaseEncodingName()),
				 errdetail("Nothing was stored.")));
	}
	jb = resp->is_json ? parse_jsonb_quietly(resp->body) : NULL;
	explicit_bzero(resp->body, resp->len);
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BROKER_UNREACHABLE),
				 errmsg("the broker answered the login with HTTP %ld and no Kite JSON body",
						resp->http_status)));
	status = json_child_string(&jb->root, "status");
	if (status == NULL || strcmp(status, "success") != 0)
	{
		char	   *etype = json_child_string(&jb->root, "error_type");
		char	   *msg = json_child_string(&jb->root, "message");

		/* the broker's words reach the log: cut, no control characters */
		if (msg)
			broker_clean_message(msg, Min(strlen(msg) + 1, 201), msg);
		if (etype)
			broker_clean_message(etype, Min(strlen(etype) + 1, 41), etype);
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BROKER_REFUSED),
				 errmsg("the broker refused the login: %s", msg ? msg : "no message"),
				 errdetail("HTTP %ld, error_type %s.", resp->http_status,
						   etype ? etype : "none"),
				 errhint("A request_token is valid once and for a few minutes; log in again to get a new one.")));
	}
	data = json_child_object(&jb->root, "data");
	access_token = json_child_string(data, "access_token");
	if (access_token == NULL || access_token[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BROKER_REFUSED),
				 errmsg("the broker's login answer has no access_token")));
	check_credential("the broker's access_token", access_token, true);
	user_id = json_child_string(data, "user_id");
	login_time = json_child_string(data, "login_time");

	if (login_time && login_time[0])
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(login_time)};

		SPI_connect();
		if (SPI_execute_with_args("SELECT trading._ist($1)", 1, argtypes, args,
								  NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			login_ts = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 1, &login_ts_null);
			/* timestamptz is pass-by-value: survives SPI_finish */
		}
		SPI_finish();
	}

	store_session(api_key, access_token, user_id, login_ts, login_ts_null);
	explicit_bzero(access_token, strlen(access_token));
	/* the token also sits in the parsed document */
	explicit_bzero(jb, VARSIZE(jb));

	values[0] = user_id ? CStringGetTextDatum(user_id) : (Datum) 0;
	nulls[0] = user_id == NULL;
	values[1] = login_ts;
	nulls[1] = login_ts_null;
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------
 * Status views
 * ---------------------------------------------------------------------
 */
Datum
broker_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BrokerEndpointShared copy[BEP_COUNT];
	int			state;
	int			sstate;
	pid_t		pid;

	InitMaterializedSRF(fcinfo, 0);

	SpinLockAcquire(&bw_shared->mutex);
	state = bw_shared->state;
	sstate = bw_shared->session_state;
	pid = bw_shared->pid;
	for (int i = 0; i < BEP_COUNT; i++)
	{
		BrokerEndpointShared *e = &bw_shared->ep[i];

		copy[i].last_success = e->last_success;
		copy[i].last_error = e->last_error;
		copy[i].next_poll = e->next_poll;
		copy[i].last_error_type = e->last_error_type;
		copy[i].consecutive_failures = e->consecutive_failures;
		copy[i].interval_ms = e->interval_ms;
		copy[i].enabled = e->enabled;
	}
	SpinLockRelease(&bw_shared->mutex);
	if (pid == 0)
		state = BWS_NOT_RUNNING;

	for (int i = 0; i < BEP_COUNT; i++)
	{
		Datum		values[12];
		bool		nulls[12] = {0};
		BrokerEndpointShared *e = &bw_shared->ep[i];

		values[0] = CStringGetTextDatum(broker_endpoints[i].name);
		values[1] = CStringGetTextDatum(broker_state_names[state]);
		values[2] = CStringGetTextDatum(broker_session_names[sstate]);
		values[3] = Int32GetDatum(copy[i].interval_ms);
		nulls[3] = (copy[i].interval_ms == 0);
		values[4] = BoolGetDatum(copy[i].enabled);
		nulls[4] = (copy[i].interval_ms == 0);
		values[5] = trading_timestamptz_or_null(copy[i].last_success, &nulls[5]);
		values[6] = trading_timestamptz_or_null(copy[i].last_error, &nulls[6]);
		if (copy[i].last_error_type >= 0 && copy[i].last_error_type < BERR_COUNT)
			values[7] = CStringGetTextDatum(broker_error_names[copy[i].last_error_type]);
		else
			nulls[7] = true;
		values[8] = trading_timestamptz_or_null(state == BWS_POLLING ? copy[i].next_poll : 0, &nulls[8]);
		values[9] = Int32GetDatum(copy[i].consecutive_failures);
		values[10] = Int64GetDatum((int64) pg_atomic_read_u64(&e->requests_total));
		values[11] = Int64GetDatum((int64) pg_atomic_read_u64(&e->errors_total));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
broker_worker_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char		fields[BEP_COUNT][64];

	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&bw_shared->mutex);
	for (int i = 0; i < BEP_COUNT; i++)
		memcpy(fields[i], bw_shared->ep[i].last_field, sizeof(fields[i]));
	SpinLockRelease(&bw_shared->mutex);
	for (int i = 0; i < BEP_COUNT; i++)
		for (int k = 0; k < BERR_COUNT; k++)
		{
			uint64		n = pg_atomic_read_u64(&bw_shared->ep[i].errors[k]);
			Datum		values[4];
			bool		nulls[4] = {0};

			if (n == 0)
				continue;
			values[0] = CStringGetTextDatum(broker_endpoints[i].name);
			values[1] = CStringGetTextDatum(broker_error_names[k]);
			values[2] = Int64GetDatum((int64) n);
			/* 1.1's _worker_errors_detail() has last_field; 1.0's does not */
			fields[i][sizeof(fields[i]) - 1] = '\0';
			values[3] = CStringGetTextDatum(fields[i]);
			nulls[3] = (k != BERR_SCHEMA || fields[i][0] == '\0');
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	return (Datum) 0;
}

Datum
broker_worker_http(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	pid_t		pid;
	TimestampTz started;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_worker_http must return a record");
	SpinLockAcquire(&bw_shared->mutex);
	pid = bw_shared->pid;
	started = bw_shared->started_at;
	SpinLockRelease(&bw_shared->mutex);

	values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&bw_shared->connections_opened));
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&bw_shared->requests_total));
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&bw_shared->cycles_total));
	values[3] = Int32GetDatum((int32) pid);
	nulls[3] = (pid == 0);
	values[4] = trading_timestamptz_or_null(pid == 0 ? 0 : started, &nulls[4]);
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

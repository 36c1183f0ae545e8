/*-------------------------------------------------------------------------
 *
 * crypto_sql.c
 *	  SQL interface of encryption at rest: trading.encrypt / decrypt in
 *	  server-key mode (with optional associated data) and passphrase mode
 *	  (encrypt_with_passphrase / decrypt_with_passphrase; the 1.0 overloads
 *	  encrypt(data, passphrase) and decrypt(data, passphrase) still work
 *	  with a deprecation WARNING), the text convenience forms, trading.reencrypt (key rotation),
 *	  trading.envelope_info, and the function behind trading.key_status.
 *	  No shared state: see crypto.c for the key and its rules.
 *
 * Every function is non-strict: a NULL argument is a clear error (22004),
 * not a silent NULL result, so a missing value never goes unnoticed.
 *
 * PostgreSQL's own "permission denied for function encrypt" (an analyst
 * who left out the passphrase reached the server-key form) is raised by the
 * executor's privilege check, before any code of ours runs; an
 * emit_log_hook adds the hint to that report when it has none.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "crypto.h"
#include "crypto_envelope.h"

#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(crypto_sql_encrypt_server);
PG_FUNCTION_INFO_V1(crypto_sql_decrypt_server);
PG_FUNCTION_INFO_V1(crypto_sql_encrypt_server_text);
PG_FUNCTION_INFO_V1(crypto_sql_decrypt_server_text);
PG_FUNCTION_INFO_V1(crypto_sql_encrypt_passphrase);
PG_FUNCTION_INFO_V1(crypto_sql_decrypt_passphrase);
PG_FUNCTION_INFO_V1(crypto_sql_encrypt_with_passphrase);
PG_FUNCTION_INFO_V1(crypto_sql_decrypt_with_passphrase);
PG_FUNCTION_INFO_V1(crypto_sql_reencrypt);
PG_FUNCTION_INFO_V1(crypto_sql_envelope_info);
PG_FUNCTION_INFO_V1(crypto_sql_key_versions);

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Does msg hold name as a word of its own (after a space, before the end
 * or a space)?  Another hook may have appended to the message. */
static bool
message_names(const char *msg, const char *name)
{
	size_t		n = strlen(name);

	for (const char *p = strstr(msg, name); p != NULL; p = strstr(p + 1, name))
		if (p > msg && p[-1] == ' ' && (p[n] == '\0' || p[n] == ' '))
			return true;
	return false;
}

/* "permission denied for function encrypt|decrypt": say which role and
 * which function a passphrase needs */
static void
crypto_emit_log_hook(ErrorData *edata)
{
	if (edata->elevel >= ERROR && edata->hint == NULL &&
		edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE &&
		edata->message_id != NULL && edata->message != NULL &&
		strcmp(edata->message_id, "permission denied for function %s") == 0)
	{
		if (message_names(edata->message, "encrypt"))
			edata->hint = pstrdup("The server-key form trading.encrypt(data [, aad]) needs trading_admin; "
								  "with a passphrase, call trading.encrypt_with_passphrase(data, passphrase).");
		else if (message_names(edata->message, "decrypt"))
			edata->hint = pstrdup("The server-key form trading.decrypt(data [, aad]) needs trading_admin; "
								  "with a passphrase, call trading.decrypt_with_passphrase(data, passphrase).");
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
crypto_sql_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = crypto_emit_log_hook;
}

/* longest passphrase accepted, in bytes */
#define PASSPHRASE_MAX	1024

/* Argument argno (bytea or text) as pointer and length; NULL is an error. */
static const char *
varlena_arg(FunctionCallInfo fcinfo, int argno, const char *name, Size *len)
{
	struct varlena *v;

	trading_require_arg(fcinfo, argno, name);
	v = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(argno));
	*len = VARSIZE_ANY_EXHDR(v);
	return VARDATA_ANY(v);
}

/* Optional associated data at argno (absent when the function has fewer
 * arguments); an explicit NULL is an error, an empty value means none. */
static const char *
aad_arg(FunctionCallInfo fcinfo, int argno, Size *len)
{
	*len = 0;
	if (PG_NARGS() <= argno)
		return NULL;
	return varlena_arg(fcinfo, argno, "aad", len);
}

static const char *
passphrase_arg(FunctionCallInfo fcinfo, int argno, Size *len)
{
	const char *p = varlena_arg(fcinfo, argno, "passphrase", len);

	if (*len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("passphrase must not be empty")));
	if (*len > PASSPHRASE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("passphrase is too long"),
				 errdetail("At most %d bytes are allowed.", PASSPHRASE_MAX)));
	return p;
}

/* trading.encrypt(data bytea [, aad bytea]) */
Datum
crypto_sql_encrypt_server(PG_FUNCTION_ARGS)
{
	Size		len,
				aadlen;
	const char *data = varlena_arg(fcinfo, 0, "data", &len);
	const char *aad = aad_arg(fcinfo, 1, &aadlen);

	PG_RETURN_BYTEA_P(crypto_encrypt_with_server_key(data, len, aad, aadlen));
}

/* trading.decrypt(data bytea [, aad bytea]) */
Datum
crypto_sql_decrypt_server(PG_FUNCTION_ARGS)
{
	Size		aadlen;
	bytea	   *env;
	const char *aad;

	trading_require_arg(fcinfo, 0, "data");
	env = PG_GETARG_BYTEA_PP(0);
	aad = aad_arg(fcinfo, 1, &aadlen);
	PG_RETURN_BYTEA_P(crypto_decrypt_server_bytea(env, aad, aadlen));
}

/* trading.encrypt_text(data text [, aad text]) */
Datum
crypto_sql_encrypt_server_text(PG_FUNCTION_ARGS)
{
	return crypto_sql_encrypt_server(fcinfo);
}

/* trading.decrypt_text(data bytea [, aad text]): plaintext must be valid
 * in the database encoding */
Datum
crypto_sql_decrypt_server_text(PG_FUNCTION_ARGS)
{
	Size		aadlen,
				len;
	bytea	   *env;
	const char *aad;
	char	   *pt;

	trading_require_arg(fcinfo, 0, "data");
	env = PG_GETARG_BYTEA_PP(0);
	aad = aad_arg(fcinfo, 1, &aadlen);
	pt = (char *) crypto_decrypt_server_bytea(env, aad, aadlen);
	len = VARSIZE(pt) - VARHDRSZ;
	/* never pg_verify_mbstr's own error: it quotes the offending bytes */
	if (!pg_verify_mbstr(GetDatabaseEncoding(), VARDATA(pt), (int) len, true))
	{
		explicit_bzero(VARDATA(pt), len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("decrypted value is not valid text in encoding \"%s\"",
						GetDatabaseEncodingName()),
				 errdetail("The plaintext authenticated but is not a valid string in the database encoding; its bytes are not shown."),
				 errhint("Use trading.decrypt() to get the plaintext as bytea.")));
	}
	PG_RETURN_TEXT_P((text *) pt);
}

/*
 * The 1.0 passphrase overloads encrypt(data, text) and decrypt(data, text)
 * read like encrypt(data, aad): an untyped literal meant as associated data
 * silently became a passphrase.  They keep working for 1.0 callers, with
 * this WARNING, until 2.0 removes them.
 */
static void
warn_deprecated_passphrase(const char *fn)
{
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("trading.%s(data, passphrase) is deprecated and will be removed in trading 2.0", fn),
			 errdetail("The second argument of this form is a passphrase, not associated data."),
			 errhint("Use trading.%s_with_passphrase(data, passphrase [, aad]); for associated data with the server key pass it typed bytea.", fn)));
}

/* iterations at argno: absent or NULL = trading.pbkdf2_iterations */
static int
iterations_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		n;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return crypto_pbkdf2_iterations;
	n = PG_GETARG_INT32(argno);
	if (n < TENV_MIN_ITERATIONS || n > TENV_MAX_ITERATIONS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("iterations must be between %d and %d",
						TENV_MIN_ITERATIONS, TENV_MAX_ITERATIONS),
				 errdetail("%d iterations were asked for.", n)));
	return n;
}

static Datum
encrypt_passphrase(FunctionCallInfo fcinfo)
{
	Size		len,
				passlen,
				aadlen;
	const char *data = varlena_arg(fcinfo, 0, "data", &len);
	const char *pass = passphrase_arg(fcinfo, 1, &passlen);
	const char *aad = aad_arg(fcinfo, 2, &aadlen);
	int			iterations = iterations_arg(fcinfo, 3);

	PG_RETURN_BYTEA_P(crypto_encrypt_passphrase(data, len, pass, passlen,
												aad, aadlen, iterations));
}

static Datum
decrypt_passphrase(FunctionCallInfo fcinfo)
{
	Size		passlen,
				aadlen;
	bytea	   *env;
	const char *pass;
	const char *aad;

	trading_require_arg(fcinfo, 0, "data");
	env = PG_GETARG_BYTEA_PP(0);
	pass = passphrase_arg(fcinfo, 1, &passlen);
	aad = aad_arg(fcinfo, 2, &aadlen);
	PG_RETURN_BYTEA_P(crypto_decrypt_passphrase(env, pass, passlen, aad, aadlen));
}

/* trading.encrypt(data bytea, passphrase text [, aad bytea]): 1.0, deprecated */
Datum
crypto_sql_encrypt_passphrase(PG_FUNCTION_ARGS)
{
	warn_deprecated_passphrase("encrypt");
	return encrypt_passphrase(fcinfo);
}

/* trading.decrypt(data bytea, passphrase text [, aad bytea]): 1.0, deprecated */
Datum
crypto_sql_decrypt_passphrase(PG_FUNCTION_ARGS)
{
	warn_deprecated_passphrase("decrypt");
	return decrypt_passphrase(fcinfo);
}

/* trading.encrypt_with_passphrase(data bytea, passphrase text,
 *		aad bytea DEFAULT '', iterations integer DEFAULT NULL) */
Datum
crypto_sql_encrypt_with_passphrase(PG_FUNCTION_ARGS)
{
	return encrypt_passphrase(fcinfo);
}

/* trading.decrypt_with_passphrase(data bytea, passphrase text, aad bytea DEFAULT '') */
Datum
crypto_sql_decrypt_with_passphrase(PG_FUNCTION_ARGS)
{
	return decrypt_passphrase(fcinfo);
}

/* trading.reencrypt(data bytea [, aad bytea]): the same plaintext under
 * the current key version, with a new salt and nonce */
Datum
crypto_sql_reencrypt(PG_FUNCTION_ARGS)
{
	Size		aadlen,
				len;
	bytea	   *env;
	const char *aad;
	char	   *pt;
	bytea	   *out;

	trading_require_arg(fcinfo, 0, "data");
	env = PG_GETARG_BYTEA_PP(0);
	aad = aad_arg(fcinfo, 1, &aadlen);
	pt = crypto_decrypt_with_server_key(env, aad, aadlen, &len);
	out = crypto_encrypt_with_server_key(pt, len, aad, aadlen);
	memset(pt, 0, len);
	PG_RETURN_BYTEA_P(out);
}

/* trading.envelope_info(data bytea): the header, without any key */
Datum
crypto_sql_envelope_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	bytea	   *env;
	TenvHeader	h;
	TenvStatus	st;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	trading_require_arg(fcinfo, 0, "data");
	env = PG_GETARG_BYTEA_PP(0);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	st = tenv_parse((const unsigned char *) VARDATA_ANY(env),
					VARSIZE_ANY_EXHDR(env), &h);
	if (st != TENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_BAD_ENVELOPE),
				 errmsg("value is not a valid encrypted envelope"),
				 errdetail_internal("%s", tenv_detail(st))));
	values[0] = Int32GetDatum(h.format_version);
	values[1] = CStringGetTextDatum(h.mode == TENV_MODE_SERVER_KEY
									? "server_key" : "passphrase");
	values[2] = Int32GetDatum((int32) h.param);
	nulls[2] = h.mode != TENV_MODE_SERVER_KEY;
	values[3] = Int32GetDatum((int32) h.param);
	nulls[3] = h.mode != TENV_MODE_PASSPHRASE;
	values[4] = BoolGetDatum((h.flags & TENV_FLAG_AAD) != 0);
	values[5] = Int64GetDatum((int64) h.ciphertext_len);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* Loaded key versions (never the key): version, is_current, kcv */
Datum
crypto_sql_key_versions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint32		versions[TENV_MAX_KEYS];
	unsigned char kcvs[TENV_MAX_KEYS][16];
	int			current;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = crypto_loaded_keys(versions, kcvs, TENV_MAX_KEYS, &current);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		bytea	   *kcv = palloc(VARHDRSZ + TENV_KCV_LEN);

		SET_VARSIZE(kcv, VARHDRSZ + TENV_KCV_LEN);
		memcpy(VARDATA(kcv), kcvs[i], TENV_KCV_LEN);
		values[0] = Int32GetDatum((int32) versions[i]);
		values[1] = BoolGetDatum(i == current);
		values[2] = PointerGetDatum(kcv);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*-------------------------------------------------------------------------
 *
 * market_apply.c
 *	  trading._backfill_apply(job, chunk, body): applies one historical
 *	  reply (GET /instruments/historical/...) to trading.candles and
 *	  advances its backfill job, in the caller's transaction.
 *
 * The reply is untrusted.  It is parsed by PostgreSQL's JSON parser
 * (common/jsonapi.h, pg_parse_json with semantic callbacks: no jsonb is
 * built) straight into column arrays, and every candle is checked as it
 * arrives: [timestamp, open, high, low, close, volume(, oi)], the
 * timestamp exactly yyyy-mm-ddThh:mm:ss+hhmm (converted by the server's
 * own calendar arithmetic, tm2timestamp, with the reply's offset: the
 * session's TimeZone plays no role), prices JSON numbers > 0 with low <=
 * high (numeric, exact), volume and oi non-negative integers (oi may be
 * null).  One bad candle refuses the whole reply (TR502) and nothing of it
 * is kept.  A Kite error envelope is TR504 for the transient error types
 * (NetworkException, GeneralException, DataException: the worker retries)
 * and TR502 otherwise.
 *
 * The candles then go into trading.candles in one set-based statement,
 * INSERT ... SELECT FROM unnest(the arrays) ON CONFLICT DO UPDATE: a
 * repeated fetch is an upsert (oi kept when the new reply has none), and a
 * candle that did not change is not rewritten.  The job's progress is
 * updated in the same transaction, so a killed worker resumes exactly at
 * the first reply whose transaction did not commit.
 *
 * This replaced a PL/pgSQL version (jsonb_array_elements and per-candle
 * casts) that ingested about 45,000 candles/s: a 60-day minute reply took
 * longer than the third of a second kite.historical allows per request.
 * bench/market_candles.sh, docs/MARKET_DATA.md.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "market.h"

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(market_backfill_apply);

/* where the parser is in the reply */
typedef enum ReplyPlace
{
	IN_NOTHING,					/* somewhere we ignore */
	IN_TOP,						/* the envelope object */
	IN_DATA,					/* data: {...} */
	IN_CANDLES,					/* data.candles: [...] */
	IN_CANDLE					/* one candle: [...] */
} ReplyPlace;

#define MAX_DEPTH	64

typedef struct Reply
{
	int			depth;
	ReplyPlace	place[MAX_DEPTH];
	const char *field;			/* the field whose value comes next, at the
								 * envelope or data level */
	bool		top_is_object;
	char	   *status;
	char	   *error_type;
	char	   *message;
	bool		data_is_object;
	bool		have_candles;

	/* the candle being read */
	int			elem;			/* index within the candle */
	bool		bad;			/* this candle is malformed */
	TimestampTz c_ts;
	Datum		c_num[4];
	int64		c_volume;
	int64		c_oi;
	bool		c_oi_null;

	/* the candles read (column arrays) */
	int			n;
	int			cap;
	int			malformed;
	Datum	   *ts;
	Datum	   *open;
	Datum	   *high;
	Datum	   *low;
	Datum	   *close;
	Datum	   *volume;
	Datum	   *oi;
	bool	   *oi_null;
	TimestampTz min_ts;
	TimestampTz max_ts;
	bool		ascending;		/* every candle later than the one before */
} Reply;

static Datum numeric_zero;

static inline ReplyPlace
place(Reply *r)
{
	return r->place[r->depth];
}

/* entering an object or array: its place follows from where it is */
static void
push(Reply *r, bool is_array)
{
	ReplyPlace	outer = place(r);
	ReplyPlace	inner = IN_NOTHING;

	if (r->depth == 0)
	{
		if (!is_array)
		{
			r->top_is_object = true;
			inner = IN_TOP;
		}
	}
	else if (outer == IN_TOP && r->field && strcmp(r->field, "data") == 0)
	{
		/* a repeated key: the last one counts, as in jsonb */
		r->data_is_object = !is_array;
		r->have_candles = false;
		r->n = r->malformed = 0;
		if (!is_array)
			inner = IN_DATA;
	}
	else if (outer == IN_DATA && r->field && strcmp(r->field, "candles") == 0)
	{
		r->have_candles = is_array;
		r->n = r->malformed = 0;
		if (is_array)
			inner = IN_CANDLES;
	}
	else if (outer == IN_CANDLES)
	{
		if (is_array)
		{
			inner = IN_CANDLE;
			r->elem = 0;
			r->bad = false;
			r->c_oi_null = true;
		}
		else
			r->malformed++;		/* a candle that is an object */
	}
	else if (outer == IN_CANDLE)
		r->bad = true;			/* a nested value inside a candle */

	if (outer == IN_CANDLE)
		r->elem++;
	r->field = NULL;
	if (r->depth + 1 >= MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the historical reply is nested too deeply")));
	r->place[++r->depth] = inner;
}

static void
grow(Reply *r)
{
	int			cap = r->cap ? r->cap * 2 : 4096;

#define GROW(a, t) (a) = r->cap ? repalloc_huge((a), sizeof(t) * cap) : palloc_extended(sizeof(t) * cap, MCXT_ALLOC_HUGE)
	GROW(r->ts, Datum);
	GROW(r->open, Datum);
	GROW(r->high, Datum);
	GROW(r->low, Datum);
	GROW(r->close, Datum);
	GROW(r->volume, Datum);
	GROW(r->oi, Datum);
	GROW(r->oi_null, bool);
#undef GROW
	r->cap = cap;
}

/* the end of one candle: keep it if it is whole and sane */
static void
candle_end(Reply *r)
{
	Datum		open = r->c_num[0],
				high = r->c_num[1],
				low = r->c_num[2],
				close = r->c_num[3];

	if (r->bad || r->elem < 6 || r->elem > 7 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, open, numeric_zero)) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, close, numeric_zero)) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, low, numeric_zero)) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, low, high)) > 0)
	{
		r->malformed++;
		return;
	}
	if (r->n == r->cap)
		grow(r);
	r->ts[r->n] = TimestampTzGetDatum(r->c_ts);
	r->open[r->n] = open;
	r->high[r->n] = high;
	r->low[r->n] = low;
	r->close[r->n] = close;
	r->volume[r->n] = Int64GetDatum(r->c_volume);
	r->oi[r->n] = Int64GetDatum(r->c_oi);
	r->oi_null[r->n] = r->c_oi_null;
	if (r->n == 0)
		r->ascending = true;
	else if (r->c_ts <= r->max_ts)
		r->ascending = false;
	if (r->n == 0 || r->c_ts < r->min_ts)
		r->min_ts = r->c_ts;
	if (r->n == 0 || r->c_ts > r->max_ts)
		r->max_ts = r->c_ts;
	r->n++;
}

static void
pop(Reply *r)
{
	if (place(r) == IN_CANDLE)
		candle_end(r);
	r->depth--;
}

static void
on_object_start(void *state)
{
	push((Reply *) state, false);
}

static void
on_array_start(void *state)
{
	push((Reply *) state, true);
}

static void
on_end(void *state)
{
	pop((Reply *) state);
}

static void
on_field(void *state, char *fname, bool isnull)
{
	Reply	   *r = (Reply *) state;

	r->field = (place(r) == IN_TOP || place(r) == IN_DATA) ? fname : NULL;
}

/* exactly yyyy-mm-ddThh:mm:ss+hhmm (Kite's format), converted exactly */
static bool
parse_kite_ts(const char *s, TimestampTz *out)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd+dddd";
	struct pg_tm tm;
	int			tz;
	int			tzh,
				tzm;
	Timestamp	ts;

	if (strlen(s) != sizeof(pattern) - 1)
		return false;
	for (int i = 0; pattern[i]; i++)
	{
		if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9')
			: pattern[i] == '+' ? (s[i] != '+' && s[i] != '-')
			: s[i] != pattern[i])
			return false;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	tm.tm_mon = (s[5] - '0') * 10 + (s[6] - '0');
	tm.tm_mday = (s[8] - '0') * 10 + (s[9] - '0');
	tm.tm_hour = (s[11] - '0') * 10 + (s[12] - '0');
	tm.tm_min = (s[14] - '0') * 10 + (s[15] - '0');
	tm.tm_sec = (s[17] - '0') * 10 + (s[18] - '0');
	tzh = (s[20] - '0') * 10 + (s[21] - '0');
	tzm = (s[22] - '0') * 10 + (s[23] - '0');
	/* the ranges timestamptz input accepts */
	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > MONTHS_PER_YEAR ||
		tm.tm_mday < 1 || tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour > HOURS_PER_DAY || tm.tm_min >= MINS_PER_HOUR ||
		tm.tm_sec > SECS_PER_MINUTE ||
		(tm.tm_hour == HOURS_PER_DAY && (tm.tm_min > 0 || tm.tm_sec > 0)) ||
		tzh > MAX_TZDISP_HOUR || tzm >= MINS_PER_HOUR)
		return false;
	/* PostgreSQL's sign convention: seconds west of Greenwich */
	tz = (tzh * MINS_PER_HOUR + tzm) * SECS_PER_MINUTE;
	if (s[19] == '+')
		tz = -tz;
	if (tm2timestamp(&tm, 0, &tz, &ts) != 0 || !IS_VALID_TIMESTAMP(ts))
		return false;
	*out = ts;
	return true;
}

/* a JSON number that is an integer (what ::bigint accepts), >= 0 */
static bool
parse_count(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (strpbrk(s, ".eE") != NULL)
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return false;
	*out = (int64) v;
	return true;
}

static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	Reply	   *r = (Reply *) state;

	switch (place(r))
	{
		case IN_TOP:
			if (r->field == NULL)
				break;
			/* as jsonb's ->> gives them: strings unquoted, others as text */
			if (strcmp(r->field, "status") == 0)
				r->status = type == JSON_TOKEN_NULL ? NULL : token;
			else if (strcmp(r->field, "error_type") == 0)
				r->error_type = type == JSON_TOKEN_NULL ? NULL : token;
			else if (strcmp(r->field, "message") == 0)
				r->message = type == JSON_TOKEN_NULL ? NULL : token;
			else if (strcmp(r->field, "data") == 0)
				r->data_is_object = r->have_candles = false;
			break;
		case IN_DATA:
			if (r->field && strcmp(r->field, "candles") == 0)
				r->have_candles = false;
			break;
		case IN_CANDLES:
			r->malformed++;		/* a candle that is a scalar */
			break;
		case IN_CANDLE:
			if (r->bad)
				;
			else if (r->elem == 0)
				r->bad = type != JSON_TOKEN_STRING || !parse_kite_ts(token, &r->c_ts);
			else if (r->elem <= 4)
			{
				if (type != JSON_TOKEN_NUMBER)
					r->bad = true;
				else
					r->c_num[r->elem - 1] = DirectFunctionCall3(numeric_in, CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1));
			}
			else if (r->elem == 5)
				r->bad = type != JSON_TOKEN_NUMBER || !parse_count(token, &r->c_volume);
			else if (r->elem == 6 && type == JSON_TOKEN_NULL)
				r->c_oi_null = true;
			else if (r->elem == 6)
			{
				r->bad = type != JSON_TOKEN_NUMBER || !parse_count(token, &r->c_oi);
				r->c_oi_null = false;
			}
			r->elem++;
			break;
		case IN_NOTHING:
			break;
	}
	if (place(r) == IN_CANDLE)
		pfree(token);			/* numeric_in copied what it needed */
	else
		r->field = NULL;
}

/* an error caught about a candle's value (e, copied) refuses the reply */
static void
pg_attribute_noreturn()
refuse_candle(ErrorData *e)
{
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
			 errmsg("the historical reply has a malformed candle: %s", e->message)));
}

/*
 * Parse body into r.  Raises TR502 when it is not JSON; an error inside a
 * candle's value (a number beyond numeric's range) is TR502 too.
 */
static void
parse_reply(char *body, Size len, Reply *r)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;
	MemoryContext cxt = CurrentMemoryContext;

	memset(r, 0, sizeof(*r));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = r;
	sem.object_start = on_object_start;
	sem.object_end = on_end;
	sem.array_start = on_array_start;
	sem.array_end = on_end;
	sem.object_field_start = on_field;
	sem.scalar = on_scalar;
	numeric_zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));

	lex = makeJsonLexContextCstringLen(body, (int) len, GetDatabaseEncoding(), true);
	PG_TRY();
	{
		err = pg_parse_json(lex, &sem);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		refuse_candle(e);
	}
	PG_END_TRY();
	if (err != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the historical reply is not JSON")));
}

static int
ts_cmp(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* two candles of one instant? (Kite sends them in order: checked cheaply) */
static bool
has_duplicate(Reply *r)
{
	TimestampTz *ts;
	bool		dup = false;

	if (r->ascending)
		return false;
	ts = palloc_extended(sizeof(TimestampTz) * r->n, MCXT_ALLOC_HUGE);
	for (int i = 0; i < r->n; i++)
		ts[i] = DatumGetTimestampTz(r->ts[i]);
	qsort(ts, r->n, sizeof(TimestampTz), ts_cmp);
	for (int i = 1; i < r->n && !dup; i++)
		dup = ts[i] == ts[i - 1];
	pfree(ts);
	return dup;
}

/* the first n characters of s, cut on a character boundary */
static char *
clip(const char *s, int n)
{
	int			len;

	if (s == NULL)
		return "";
	len = strlen(s);
	return pnstrdup(s, pg_mbcliplen(s, len, Min(len, n)));
}

static Datum
make_array(Datum *elems, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

#define CANDLES_INSERT \
	"INSERT INTO trading.candles AS k " \
	"       (instrument_token, \"interval\", ts, open, high, low, close, volume, oi) " \
	"SELECT $1, $2, u.* FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), " \
	"       pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), " \
	"       pg_catalog.unnest($8), pg_catalog.unnest($9)) " \
	"       AS u(ts, open, high, low, close, volume, oi) "

static const char insert_sql[] = CANDLES_INSERT;
static const char upsert_sql[] = CANDLES_INSERT
"ON CONFLICT (instrument_token, \"interval\", ts) DO UPDATE "
"   SET open = excluded.open, high = excluded.high, low = excluded.low, "
"       close = excluded.close, volume = excluded.volume, "
"       oi = COALESCE(excluded.oi, k.oi) "
" WHERE (k.open, k.high, k.low, k.close, k.volume, k.oi) IS DISTINCT FROM "
"       (excluded.open, excluded.high, excluded.low, excluded.close, "
"        excluded.volume, COALESCE(excluded.oi, k.oi))";

/*
 * trading._backfill_apply(job bigint, chunk integer, body text) RETURNS bigint
 * The candles applied; 0 when the job is no longer running or the chunk
 * was applied already (a reply for a cancelled job changes nothing).
 */
Datum
market_backfill_apply(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	int32		chunk = PG_GETARG_INT32(1);
	text	   *body = PG_GETARG_TEXT_PP(2);
	Reply		r;
	Datum		args[9];
	bool		nulls_any = false;
	bool		upsert;
	Oid			exists_types[4] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			job_types[2] = {INT8OID, INT4OID};
	Oid			range_types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			progress_types[2] = {INT8OID, INT8OID};
	Oid			types[9] = {INT8OID, TEXTOID, TIMESTAMPTZARRAYOID, NUMERICARRAYOID,
	NUMERICARRAYOID, NUMERICARRAYOID, NUMERICARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	MemoryContext cxt = CurrentMemoryContext;
	Datum		token;
	Datum		interval;
	TimestampTz lo,
				hi;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	/* search_path is pinned by the function's SET clause */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the job, locked; the bounds of the chunk's requested range */
	args[0] = Int64GetDatum(job);
	args[1] = Int32GetDatum(chunk);
	if (SPI_execute_with_args(
							  "SELECT b.instrument_token, b.\"interval\", "
							  "       b.from_ts OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => b.chunk_days * $2), "
							  "       LEAST(b.from_ts OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => b.chunk_days * ($2 + 1)) "
							  "                        OPERATOR(pg_catalog.-) interval '1 second', b.to_ts) "
							  "  FROM trading.backfill_queue b "
							  " WHERE b.id OPERATOR(pg_catalog.=) $1 AND b.state OPERATOR(pg_catalog.=) 'running' "
							  "   AND b.requests_done OPERATOR(pg_catalog.=) $2 FOR UPDATE",
							  2, job_types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.backfill_queue");
	if (SPI_processed == 0)
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	token = SPI_getbinval(tup, desc, 1, &isnull);
	interval = SPI_datumTransfer(SPI_getbinval(tup, desc, 2, &isnull), false, -1);
	lo = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
	hi = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));

	parse_reply(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &r);

	if (r.top_is_object && r.status && strcmp(r.status, "error") == 0)
	{
		bool		transient = r.error_type &&
		(strcmp(r.error_type, "NetworkException") == 0 ||
		 strcmp(r.error_type, "GeneralException") == 0 ||
		 strcmp(r.error_type, "DataException") == 0);

		if (transient)
			ereport(ERROR,
					(errcode(ERRCODE_TRADING_MARKET_RETRY),
					 errmsg("the broker could not serve the request (%s): %s",
							clip(r.error_type, 100), clip(r.message, 200))));
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the broker refused the request (%s): %s",
						clip(r.error_type, 100), clip(r.message, 200))));
	}
	if (!r.top_is_object || !r.status || strcmp(r.status, "success") != 0 ||
		!r.data_is_object || !r.have_candles)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the historical reply is not a Kite success envelope with data.candles")));
	if (r.malformed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the historical reply has %d malformed candle(s)", r.malformed),
				 errdetail("Each candle must be [timestamp, open, high, low, close, volume] or [..., oi]: "
						   "the timestamp as yyyy-mm-ddThh:mm:ss+hhmm, prices above zero with low <= high, "
						   "volume and oi non-negative integers.")));
	if (has_duplicate(&r))
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the historical reply has a malformed candle: two candles of the same instant")));

	if (r.n > 0)
	{
		/* the partitions of the requested range and of every candle */
		args[0] = TimestampTzGetDatum(Min(lo, r.min_ts));
		args[1] = TimestampTzGetDatum(Max(hi, r.max_ts));
		if (SPI_execute_with_args("SELECT trading._candles_partitions($1, $2)", 2,
								  range_types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not create the candle partitions");

		for (int i = 0; i < r.n; i++)
			nulls_any |= r.oi_null[i];
		args[0] = token;
		args[1] = interval;

		/*
		 * The common case, a range fetched for the first time, is a plain
		 * insert (an upsert costs about half as much again); a range that
		 * already holds candles is upserted.  A concurrent writer of the same
		 * candles makes the plain insert fail with a unique violation: TR504,
		 * the worker retries and the retry upserts.
		 */
		args[2] = TimestampTzGetDatum(r.min_ts);
		args[3] = TimestampTzGetDatum(r.max_ts);
		if (SPI_execute_with_args(
								  "SELECT 1 FROM trading.candles c "
								  " WHERE c.instrument_token OPERATOR(pg_catalog.=) $1 "
								  "   AND c.\"interval\" OPERATOR(pg_catalog.=) $2 "
								  "   AND c.ts OPERATOR(pg_catalog.>=) $3 AND c.ts OPERATOR(pg_catalog.<=) $4 LIMIT 1",
								  4, exists_types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read trading.candles");
		upsert = SPI_processed > 0;

		args[2] = make_array(r.ts, NULL, r.n, TIMESTAMPTZOID);
		args[3] = make_array(r.open, NULL, r.n, NUMERICOID);
		args[4] = make_array(r.high, NULL, r.n, NUMERICOID);
		args[5] = make_array(r.low, NULL, r.n, NUMERICOID);
		args[6] = make_array(r.close, NULL, r.n, NUMERICOID);
		args[7] = make_array(r.volume, NULL, r.n, INT8OID);
		args[8] = make_array(r.oi, nulls_any ? r.oi_null : NULL, r.n, INT8OID);
		PG_TRY();
		{
			if (SPI_execute_with_args(upsert ? upsert_sql : insert_sql,
									  9, types, args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not insert the candles");
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();

			if (e->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && !upsert)
			{
				FlushErrorState();
				ereport(ERROR,
						(errcode(ERRCODE_TRADING_MARKET_RETRY),
						 errmsg("candles of this range were written concurrently"),
						 errdetail("The request is retried as an upsert.")));
			}
			/* two candles of the same instant; a value the table refuses */
			if (!trading_bgw_data_error(e))
				PG_RE_THROW();
			refuse_candle(e);
		}
		PG_END_TRY();
	}

	args[0] = Int64GetDatum(job);
	args[1] = Int64GetDatum((int64) r.n);
	if (SPI_execute_with_args(
							  "UPDATE trading.backfill_queue b "
							  "   SET requests_done = b.requests_done OPERATOR(pg_catalog.+) 1, "
							  "       rows = b.rows OPERATOR(pg_catalog.+) $2, updated_at = pg_catalog.now(), "
							  "       state = CASE WHEN b.requests_done OPERATOR(pg_catalog.+) 1 "
							  "                         OPERATOR(pg_catalog.>=) b.requests_total "
							  "                    THEN 'done' ELSE b.state END, "
							  "       finished_at = CASE WHEN b.requests_done OPERATOR(pg_catalog.+) 1 "
							  "                              OPERATOR(pg_catalog.>=) b.requests_total "
							  "                         THEN pg_catalog.now() END "
							  " WHERE b.id OPERATOR(pg_catalog.=) $1",
							  2, progress_types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update the backfill job");
	SPI_finish();
	PG_RETURN_INT64((int64) r.n);
}

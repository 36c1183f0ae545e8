/*-------------------------------------------------------------------------
 *
 * metrics_sql.c
 *	  SQL interface of the metrics: the recording functions for strategies
 *	  that run outside the worker (record_trade, record_api_request,
 *	  record_exception), which validate their arguments and refuse a label
 *	  set past trading.metrics_max_labels, and the set-returning functions
 *	  behind the metrics views (_metrics_histograms, _metrics_counters).
 *
 * No locks are taken here; see metrics.c for the rules of the shared
 * state.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "metrics.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(metrics_record_trade);
PG_FUNCTION_INFO_V1(metrics_record_api_request);
PG_FUNCTION_INFO_V1(metrics_record_exception);
PG_FUNCTION_INFO_V1(metrics_histograms);
PG_FUNCTION_INFO_V1(metrics_counters);
PG_FUNCTION_INFO_V1(metrics_noop);


static void
metrics_prepare(void)
{
	trading_check_database();
}

/*
 * A label argument: not NULL (22004), not empty, at most
 * METRICS_LABEL_LEN - 1 bytes, no control characters (22023).  Points into
 * the argument (no copy: this is the recording path).
 */
static MetricsLabel
metrics_label_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	text	   *t;
	MetricsLabel l;

	trading_require_arg(fcinfo, argno, name);
	t = PG_GETARG_TEXT_PP(argno);
	l.data = VARDATA_ANY(t);
	l.len = VARSIZE_ANY_EXHDR(t);
	if (l.len == 0 || l.len > METRICS_LABEL_LEN - 1)
		(void) trading_text_arg(fcinfo, argno, name, METRICS_LABEL_LEN - 1);	/* raises the error */
	for (int i = 0; i < l.len; i++)
	{
		if ((unsigned char) l.data[i] < 0x20 || l.data[i] == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain control characters", name)));
	}
	return l;
}

static inline bool
label_is(MetricsLabel l, const char *s)
{
	return l.len == strlen(s) && memcmp(l.data, s, l.len) == 0;
}

static void
report_label_limit(MetricsFamily family, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("too many distinct %s for metric %s", what,
					metrics_family_names[family]),
			 errdetail("At most %d label sets are kept per metric; nothing was recorded.",
					   metrics_max_labels()),
			 errhint("Use a bounded set of label values, or raise trading.metrics_max_labels and restart the server.")));
}

Datum
metrics_record_trade(PG_FUNCTION_ARGS)
{
	MetricsLabel side = metrics_label_arg(fcinfo, 0, "side");
	MetricsLabel status = metrics_label_arg(fcinfo, 1, "status");

	if (!label_is(side, "BUY") && !label_is(side, "SELL"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("side must be BUY or SELL"),
				 errdetail("The value was \"%.*s\".", side.len, side.data),
				 errhint("Use the Kite transaction_type of the order.")));
	metrics_prepare();
	if (metrics_sql_count(MF_TRADES, side, status) == ML_FULL)
		report_label_limit(MF_TRADES, "(side, status) pairs");
	PG_RETURN_VOID();
}

Datum
metrics_record_api_request(PG_FUNCTION_ARGS)
{
	MetricsLabel endpoint = metrics_label_arg(fcinfo, 0, "endpoint");
	double		seconds;
	int32		status;

	trading_require_arg(fcinfo, 1, "duration_seconds");
	seconds = PG_GETARG_FLOAT8(1);
	if (isnan(seconds) || seconds < 0.0 || seconds > METRICS_MAX_SECONDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("duration_seconds must be between 0 and %g",
						METRICS_MAX_SECONDS)));
	trading_require_arg(fcinfo, 2, "status");
	status = PG_GETARG_INT32(2);
	if (status != 0 && (status < 100 || status > 599))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("status must be an HTTP status between 100 and 599, or 0 for no response"),
				 errdetail("The value was %d.", status)));
	metrics_prepare();
	if (metrics_sql_observe_request(endpoint, seconds, status) == ML_FULL)
		report_label_limit(MF_API_REQUESTS, "endpoints");
	PG_RETURN_VOID();
}

Datum
metrics_record_exception(PG_FUNCTION_ARGS)
{
	MetricsLabel kind = metrics_label_arg(fcinfo, 0, "kind");
	MetricsLabel none = {"", 0};

	metrics_prepare();
	if (metrics_sql_count(MF_EXCEPTIONS, kind, none) == ML_FULL)
		report_label_limit(MF_EXCEPTIONS, "kinds");
	PG_RETURN_VOID();
}

/*
 * One row per endpoint: bucket bounds, cumulative bucket counts (without
 * +Inf), sum in seconds and count, the shape postgres_exporter's HISTOGRAM
 * usage reads.
 */
Datum
metrics_histograms(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MetricsSnapshot *snaps;
	Datum		bounds[METRICS_NBOUNDS];
	ArrayType  *bounds_array;
	int			n;

	metrics_prepare();
	InitMaterializedSRF(fcinfo, 0);

	for (int b = 0; b < METRICS_NBOUNDS; b++)
		bounds[b] = Float8GetDatum(metrics_bounds[b]);
	bounds_array = construct_array(bounds, METRICS_NBOUNDS, FLOAT8OID,
								   sizeof(float8), FLOAT8PASSBYVAL,
								   TYPALIGN_DOUBLE);

	n = metrics_snapshot(MF_API_REQUESTS, &snaps);
	for (int i = 0; i < n; i++)
	{
		Datum		buckets[METRICS_NBOUNDS];
		Datum		values[5];
		bool		nulls[5] = {0};
		uint64		cumulative = 0;

		for (int b = 0; b < METRICS_NBOUNDS; b++)
		{
			cumulative += snaps[i].values[MV_BUCKET0 + b];
			buckets[b] = Int64GetDatum((int64) cumulative);
		}
		cumulative += snaps[i].values[MV_BUCKET0 + METRICS_NBOUNDS];

		values[0] = CStringGetTextDatum(snaps[i].labels[0]);
		values[1] = PointerGetDatum(bounds_array);
		values[2] = PointerGetDatum(construct_array(buckets, METRICS_NBOUNDS,
													INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
		values[3] = Float8GetDatum(snaps[i].values[MV_SUM_NS] / 1e9);
		values[4] = Int64GetDatum((int64) cumulative);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static void
put_counter(ReturnSetInfo *rsinfo, const char *metric, const char *l1,
			const char *l2, uint64 value)
{
	Datum		values[4];
	bool		nulls[4] = {0};

	values[0] = CStringGetTextDatum(metric);
	values[1] = CStringGetTextDatum(l1);
	if (l2)
		values[2] = CStringGetTextDatum(l2);
	else
		nulls[2] = true;
	values[3] = Int64GetDatum((int64) value);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Every counter as (metric, label1, label2, value):
 *	 api_requests	endpoint, code class (one row per class, zeros included)
 *	 exceptions		kind
 *	 trades			side, status
 *	 label_overflow	metric family (always one row per family)
 */
Datum
metrics_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MetricsSnapshot *snaps;
	int			n;

	metrics_prepare();
	InitMaterializedSRF(fcinfo, 0);

	n = metrics_snapshot(MF_API_REQUESTS, &snaps);
	for (int i = 0; i < n; i++)
		for (int c = 0; c < METRICS_NCODES; c++)
			put_counter(rsinfo, metrics_family_names[MF_API_REQUESTS],
						snaps[i].labels[0], metrics_code_labels[c],
						snaps[i].values[MV_CODE0 + c]);

	n = metrics_snapshot(MF_EXCEPTIONS, &snaps);
	for (int i = 0; i < n; i++)
		put_counter(rsinfo, metrics_family_names[MF_EXCEPTIONS],
					snaps[i].labels[0], NULL, snaps[i].values[MV_COUNTER]);

	n = metrics_snapshot(MF_TRADES, &snaps);
	for (int i = 0; i < n; i++)
		put_counter(rsinfo, metrics_family_names[MF_TRADES],
					snaps[i].labels[0], snaps[i].labels[1],
					snaps[i].values[MV_COUNTER]);

	for (int f = 0; f < MF_NFAMILIES; f++)
		put_counter(rsinfo, "label_overflow", metrics_family_names[f], NULL,
					metrics_overflow_total(f));
	return (Datum) 0;
}

/*
 * Does nothing: the baseline of bench/metrics_observe.sh, which binds it
 * with the signature of record_api_request.  Not part of the extension's
 * SQL interface.
 */
Datum
metrics_noop(PG_FUNCTION_ARGS)
{
	PG_RETURN_VOID();
}

/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Recording of counters and latency histograms in shared memory, for
 *	  the worker and the SQL recording functions.  Lock-free on the hot
 *	  path; never raises an error (a label past the cardinality bound is
 *	  counted under an overflow label).  Implemented in metrics.c; the SQL
 *	  interface is in metrics_sql.c, the views in sql/40_metrics.sql and
 *	  sql/70_metrics_business.sql.  docs/MONITORING.md lists every metric.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_METRICS_H
#define TRADING_METRICS_H

#include "postgres.h"

/*
 * The C API used by the broker worker.  None of these raises an error or
 * allocates outside the backend-local lookup cache; a NULL or empty label is
 * recorded as "unknown", a label longer than METRICS_LABEL_LEN - 1 bytes is
 * cut at a character boundary, control characters become '?', seconds outside [0, METRICS_MAX_SECONDS] (or
 * NaN) are clamped, and an http_status outside 100..599 counts as
 * code "no_response".
 */
extern void metrics_observe_request(const char *endpoint, double seconds,
									int http_status);
extern void metrics_count_exception(const char *kind);
extern void metrics_count_trade(const char *side, const char *status);

/* ---- internals shared by metrics.c and metrics_sql.c ---- */

#define METRICS_LABEL_LEN		64	/* label value, including the NUL */
#define METRICS_MAX_SECONDS		86400.0
#define METRICS_NBOUNDS			11	/* finite bucket bounds; +Inf is extra */
#define METRICS_NCODES			6	/* no_response, 1xx .. 5xx */
#define METRICS_OVERFLOW_LABEL	"_overflow"
#define METRICS_UNKNOWN_LABEL	"unknown"

/* per slot values: buckets (not cumulative), sum in ns, status classes */
#define MV_BUCKET0		0		/* METRICS_NBOUNDS + 1 buckets, last = +Inf */
#define MV_SUM_NS		(METRICS_NBOUNDS + 1)
#define MV_CODE0		(MV_SUM_NS + 1)
#define METRICS_NVALUES (MV_CODE0 + METRICS_NCODES)
#define MV_COUNTER		0		/* counters use values[0] only */

typedef enum MetricsFamily
{
	MF_API_REQUESTS,			/* histogram + status classes, label endpoint */
	MF_EXCEPTIONS,				/* counter, label kind */
	MF_TRADES,					/* counter, labels side, status */
	MF_NFAMILIES
} MetricsFamily;

extern const double metrics_bounds[METRICS_NBOUNDS];
extern const char *const metrics_code_labels[METRICS_NCODES];
extern const char *const metrics_family_names[MF_NFAMILIES];

/* A snapshot of one label set, as read by the status functions. */
typedef struct MetricsSnapshot
{
	char		labels[2][METRICS_LABEL_LEN];
	uint64		values[METRICS_NVALUES];
} MetricsSnapshot;

/* A label value: not NUL-terminated, at most METRICS_LABEL_LEN - 1 bytes. */
typedef struct MetricsLabel
{
	const char *data;
	int			len;
} MetricsLabel;

/* Outcome of a lookup for the SQL functions. */
typedef enum MetricsLookup
{
	ML_FOUND,
	ML_FULL						/* the family's label bound is reached */
} MetricsLookup;

/* Record through the SQL functions: refuses (ML_FULL) instead of folding. */
extern MetricsLookup metrics_sql_observe_request(MetricsLabel endpoint,
												 double seconds,
												 int http_status);
extern MetricsLookup metrics_sql_count(MetricsFamily family, MetricsLabel l1,
									   MetricsLabel l2);

/*
 * Copy the label sets of a family (including the overflow label when it
 * was used) into a palloc'd array; returns how many.  Lock-free.
 */
extern int	metrics_snapshot(MetricsFamily family, MetricsSnapshot **out);
extern uint64 metrics_overflow_total(MetricsFamily family);
extern int	metrics_max_labels(void);

/*
 * The label sets the broker worker records in family: the i-th in *l1 and
 * *l2 (NULL but for trades); false past the last.  The SQL recording
 * functions leave room for them (worker/broker_worker.c).
 */
extern bool broker_worker_metric_labels(MetricsFamily family, int i,
										const char **l1, const char **l2);

#endif

/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Recording of counters and latency histograms in shared memory, for
 *	  the worker and the SQL recording functions.  Lock-free on the hot
 *	  path; never raises an error (a label past the cardinality bound is
 *	  counted under an overflow label).  Implemented in metrics.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_METRICS_H
#define TRADING_METRICS_H

#include "postgres.h"

extern void metrics_observe_request(const char *endpoint, double seconds,
									int http_status);
extern void metrics_count_exception(const char *kind);
extern void metrics_count_trade(const char *side, const char *status);

#endif

/*-------------------------------------------------------------------------
 *
 * trading.h
 *	  Declarations shared by every part of the trading extension: the
 *	  module interface (GUCs, shared memory, workers), the extension's own
 *	  SQLSTATEs, and small argument-checking helpers for SQL functions.
 *
 * Each capability lives in its own module (rate limiter, crypto,
 * correlation, metrics, broker worker).  A module exposes up to four entry
 * points, all called from one place (trading.c / shmem.c), so that shared
 * memory is laid out in a single table and nothing is initialised twice:
 *
 *	  X_init()			  from _PG_init: define GUCs, register workers
 *	  X_shmem_request()	  from shmem_request_hook: RequestAddinShmemSpace,
 *						  RequestNamedLWLockTranche
 *	  X_shmem_startup()	  from shmem_startup_hook (AddinShmemInitLock held):
 *						  ShmemInitStruct and first-time initialisation
 *
 * SQLSTATEs: the extension uses standard codes where one fits (22004 for
 * NULL arguments, 22023 for bad values, 42704 for unknown objects, 54000 for
 * configured bounds) and class "TR" for conditions specific to it.  Every
 * code is listed in docs/SQLSTATES.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_H
#define TRADING_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/elog.h"
#include "datatype/timestamp.h"

/* ---- extension-specific SQLSTATEs (class TR), see docs/SQLSTATES.md ---- */

/* rate limiter */
#define ERRCODE_TRADING_RATE_LIMIT_TIMEOUT		MAKE_SQLSTATE('T','R','0','0','1')
#define ERRCODE_TRADING_RATE_LIMIT_NOT_LOADED	MAKE_SQLSTATE('T','R','0','0','2')
/* wrong database: the extension's shared state belongs to trading.database */
#define ERRCODE_TRADING_WRONG_DATABASE			MAKE_SQLSTATE('T','R','0','0','9')

/* crypto (TR1xx) */
#define ERRCODE_TRADING_NO_SERVER_KEY			MAKE_SQLSTATE('T','R','1','0','1')
#define ERRCODE_TRADING_WRONG_SERVER_KEY		MAKE_SQLSTATE('T','R','1','0','2')
#define ERRCODE_TRADING_UNKNOWN_KEY_VERSION		MAKE_SQLSTATE('T','R','1','0','3')
#define ERRCODE_TRADING_DECRYPT_FAILED			MAKE_SQLSTATE('T','R','1','1','0')
#define ERRCODE_TRADING_BAD_ENVELOPE			MAKE_SQLSTATE('T','R','1','1','1')
#define ERRCODE_TRADING_WRONG_KEY_MODE			MAKE_SQLSTATE('T','R','1','1','2')
#define ERRCODE_TRADING_CRYPTO_FAILURE			MAKE_SQLSTATE('T','R','1','1','9')
#define ERRCODE_TRADING_ARCHIVE_MISMATCH		MAKE_SQLSTATE('T','R','1','2','0')

/* correlation (TR2xx) */
#define ERRCODE_TRADING_CORRELATION_FLUSH_TIMEOUT	MAKE_SQLSTATE('T','R','2','0','1')
#define ERRCODE_TRADING_CORRELATION_ALREADY_ENDED	MAKE_SQLSTATE('T','R','2','0','2')
#define ERRCODE_TRADING_CORRELATION_NONE_OPEN		MAKE_SQLSTATE('T','R','2','0','3')

/* broker worker (TR3xx) */
#define ERRCODE_TRADING_BROKER_UNREACHABLE		MAKE_SQLSTATE('T','R','3','0','1')
#define ERRCODE_TRADING_BROKER_REFUSED			MAKE_SQLSTATE('T','R','3','0','2')
#define ERRCODE_TRADING_WORKER_MALFORMED		MAKE_SQLSTATE('T','R','3','0','4')
#define ERRCODE_TRADING_WORKER_SCHEMA			MAKE_SQLSTATE('T','R','3','0','5')
#define ERRCODE_TRADING_BROKER_ENCODING			MAKE_SQLSTATE('T','R','3','0','6')

/* ticker (TR7xx) */
#define ERRCODE_TRADING_TICKER_MALFORMED		MAKE_SQLSTATE('T','R','7','0','1')
#define ERRCODE_TRADING_TICKER_ORDER_UPDATE		MAKE_SQLSTATE('T','R','7','0','2')

/* each capability's range is in docs/DEVELOPING.md; add its codes here */

/* ---- GUCs owned by the core (guc.c) ---- */
extern char *trading_database;
extern char *trading_primary_hint;

/* ---- module entry points ---- */
extern void trading_guc_init(void);

extern void ratelimit_init(void);
extern void ratelimit_shmem_request(void);
extern void ratelimit_shmem_startup(void);

extern void crypto_init(void);
extern void crypto_shmem_request(void);
extern void crypto_shmem_startup(void);

extern void correlation_init(void);
extern void correlation_shmem_request(void);
extern void correlation_shmem_startup(void);

extern void metrics_init(void);
extern void metrics_shmem_request(void);
extern void metrics_shmem_startup(void);

extern void broker_worker_init(void);
extern void broker_worker_shmem_request(void);
extern void broker_worker_shmem_startup(void);

extern void ticker_init(void);
extern void ticker_shmem_request(void);
extern void ticker_shmem_startup(void);
extern void order_sender_init(void);
extern void order_sender_shmem_request(void);
extern void order_sender_shmem_startup(void);
extern void history_init(void);
extern void market_worker_init(void);
extern void market_shmem_request(void);
extern void market_shmem_startup(void);

/* shmem.c */
extern void trading_shmem_install_hooks(void);

/* ---- helpers for SQL-callable functions (util.c) ---- */

/*
 * Raise 22004 when argument argno is NULL.  name is the SQL parameter name
 * as documented, so the message tells the caller exactly what to fix.
 */
extern void trading_require_arg(FunctionCallInfo fcinfo, int argno,
								const char *name);

/*
 * Fetch a text argument as a C string, rejecting NULL (22004), empty
 * strings (22023) and strings longer than maxlen bytes (22023).
 */
extern char *trading_text_arg(FunctionCallInfo fcinfo, int argno,
							  const char *name, int maxlen);

/*
 * Error out (TR009) unless the current database is trading.database.  Only
 * the first call in a backend looks at the catalog; later calls are free.
 */
extern void trading_check_database(void);

/*
 * A timestamptz column of a status view: 0 (never) is NULL.
 */
extern Datum trading_timestamptz_or_null(TimestampTz t, bool *isnull);

/* ---- at_commit.c ---- */

/*
 * Run action once after the current transaction commits (not if it, or
 * the savepoint that asked, is rolled back).  It must not fail or wait.
 */
typedef void (*trading_commit_action) (void);
extern void trading_at_commit(trading_commit_action action);

/*
 * Error out (25006 read_only_sql_transaction) on a hot standby, naming the
 * primary's frontend from trading.primary_hint.  action is what was
 * refused, e.g. "changing rate limits".  Every function that writes calls it.
 */
extern void trading_require_primary(const char *action);

/* Microseconds of CLOCK_MONOTONIC: the time base of all shared state. */
extern int64 trading_monotonic_us(void);

/*
 * Register one of the extension's background workers (from _PG_init): it
 * attaches shared memory and connects to a database, runs function_name
 * of this library, and shows as name in pg_stat_activity.  start_time is a
 * BgWorkerStartTime; restart_secs is BGW_NEVER_RESTART or seconds.
 */
extern void trading_register_worker(const char *function_name, const char *name,
									int start_time, int restart_secs);

#endif							/* TRADING_H */

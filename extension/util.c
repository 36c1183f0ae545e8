/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers shared by the SQL-callable functions of every module:
 *	  argument checks with the documented SQLSTATEs, the database check,
 *	  the monotonic clock used by shared state, and background worker
 *	  registration.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include <time.h>

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

void
trading_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

char *
trading_text_arg(FunctionCallInfo fcinfo, int argno, const char *name,
				 int maxlen)
{
	text	   *t;
	int			len;

	trading_require_arg(fcinfo, argno, name);
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if (len > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", name),
				 errdetail("The value has %d bytes; at most %d are allowed.",
						   len, maxlen)));
	return text_to_cstring(t);
}

void
trading_check_database(void)
{
	/* a backend's database never changes: check (a catalog lookup) once */
	static bool checked = false;
	const char *dbname;

	if (checked)
		return;
	dbname = get_database_name(MyDatabaseId);

	if (dbname == NULL || strcmp(dbname, trading_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_WRONG_DATABASE),
				 errmsg("trading's shared state belongs to database \"%s\"",
						trading_database),
				 errdetail("The current database is \"%s\".",
						   dbname ? dbname : "?"),
				 errhint("Use the extension in database \"%s\", or set trading.database in postgresql.conf and restart.",
						 trading_database)));
	checked = true;
}

int64
trading_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
trading_require_primary(const char *action)
{
	if (!RecoveryInProgress())
		return;
	if (trading_primary_hint && trading_primary_hint[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s is not possible on a standby server", action),
				 errdetail("This server is a read-only replica; writes go to the primary."),
				 errhint("Connect to the primary: %s.", trading_primary_hint)));
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("%s is not possible on a standby server", action),
			 errdetail("This server is a read-only replica; writes go to the primary."),
			 errhint("Connect to the primary (set trading.primary_hint to name its address in this message).")));
}

void
trading_register_worker(const char *function_name, const char *name,
						int start_time, int restart_secs)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = (BgWorkerStartTime) start_time;
	bgw.bgw_restart_time = restart_secs;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "trading");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "%s", function_name);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&bgw);
}

Datum
trading_timestamptz_or_null(TimestampTz t, bool *isnull)
{
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

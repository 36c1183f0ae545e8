/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  The C part of trading.validate_config(): the checks that need the
 *	  server's own view of things SQL cannot see, without revealing them.
 *
 *	  trading._validate_server()  five rows (check, ok, detail, hint):
 *		preloaded				is trading in shared_preload_libraries (a
 *								setting only superusers may read in SQL)
 *		key_loaded				did trading.key_command give a key at start
 *		key_command_permissions	are the program trading.key_command runs
 *								and the files it names safe: owned by the
 *								server's user (or root for the program),
 *								not writable by others, key files not
 *								readable by others
 *		key_readers				which roles can reach the server key: the
 *								superusers, and every role with privileges
 *								of pg_read_server_files (reads the key file,
 *								/proc/<pid>/mem), pg_execute_server_program
 *								(runs the key command) or
 *								pg_write_server_files (rewrites what the
 *								server runs); ok when only superusers can
 *		broker_url_cleartext	trading.broker_url is not http:// to a host
 *								other than loopback (the access token would
 *								cross the network in clear text)
 *
 * trading.key_command is a superuser-only setting: it names where the key
 * comes from.  Nothing here ever returns or logs its value, a path from it,
 * or anything the command printed; the details say "the program" or
 * "argument 2" instead.  The rest of validate_config() is SQL
 * (extension/sql/80_validate.sql).
 *
 * No shared memory, no locks.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "crypto.h"

#include <sys/stat.h>
#include <unistd.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/varlena.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(validate_sql_server);

#define KEYCMD_MAX_WORDS	32

typedef struct CheckResult
{
	bool		ok;
	StringInfoData detail;
	const char *hint;
} CheckResult;

/*
 * Split the command into words at white space, removing one level of
 * single or double quotes.  Returns false when the command uses shell
 * syntax this check cannot follow (pipes, variables, redirections).
 */
static bool
split_command(const char *cmd, char **words, int *nwords)
{
	StringInfoData cur;
	bool		in_word = false;
	char		quote = 0;

	*nwords = 0;
	initStringInfo(&cur);
	for (const char *p = cmd;; p++)
	{
		char		c = *p;

		if (c == '\0' || (!quote && isspace((unsigned char) c)))
		{
			if (quote && c == '\0')
				return false;
			if (in_word)
			{
				if (*nwords >= KEYCMD_MAX_WORDS)
					return false;
				words[(*nwords)++] = pstrdup(cur.data);
				resetStringInfo(&cur);
				in_word = false;
			}
			if (c == '\0')
				break;
			continue;
		}
		if (quote)
		{
			if (c == quote)
				quote = 0;
			else
				appendStringInfoChar(&cur, c);
			continue;
		}
		if (c == '\'' || c == '"')
		{
			quote = c;
			in_word = true;
			continue;
		}
		if (strchr("|&;<>$`()\\*?{}", c) != NULL)
			return false;
		appendStringInfoChar(&cur, c);
		in_word = true;
	}
	return *nwords > 0;
}

/* The file the shell would run for program (PATH lookup), or NULL. */
static char *
resolve_program(const char *program)
{
	const char *path;
	char	   *copy;
	char	   *dir;
	char	   *saveptr = NULL;

	if (strchr(program, '/') != NULL)
		return pstrdup(program);	/* relative ones: to the data directory */
	path = getenv("PATH");
	if (path == NULL)
		return NULL;
	copy = pstrdup(path);
	for (dir = strtok_r(copy, ":", &saveptr); dir != NULL;
		 dir = strtok_r(NULL, ":", &saveptr))
	{
		char	   *candidate = psprintf("%s/%s", dir[0] ? dir : ".", program);

		if (access(candidate, X_OK) == 0)
			return candidate;
		pfree(candidate);
	}
	return NULL;
}

static void
			fail(CheckResult *r, const char *hint, const char *fmt,...) pg_attribute_printf(3, 4);

static void
fail(CheckResult *r, const char *hint, const char *fmt,...)
{
	va_list		args;

	if (!r->ok)
		appendStringInfoString(&r->detail, "; ");
	else
		resetStringInfo(&r->detail);
	r->ok = false;
	r->hint = hint;
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&r->detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&r->detail, needed);
	}
}

static const char *const HINT_PROGRAM =
"Make the program and its directory owned by root (or the server's user) and writable by the owner only, e.g. chmod 755 and chown root.";
static const char *const HINT_KEYFILE =
"Make key files owned by the server's user with mode 0600 (chmod 600), and keep them outside directories others can write.";

/* The program: owned by root or us, not writable by group or others. */
static void
check_program(CheckResult *r, const char *file)
{
	struct stat st;
	char	   *dir;
	char	   *slash;

	if (stat(file, &st) != 0)
	{
		fail(r, "Install the key command's program, or fix trading.key_command.",
			 "the program of trading.key_command cannot be examined (%m)");
		return;
	}
	if (!S_ISREG(st.st_mode))
		fail(r, HINT_PROGRAM, "the program of trading.key_command is not a regular file");
	if (st.st_uid != 0 && st.st_uid != geteuid())
		fail(r, HINT_PROGRAM,
			 "the program of trading.key_command is owned by another user (uid %d)",
			 (int) st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		fail(r, HINT_PROGRAM,
			 "the program of trading.key_command is writable by other users (mode %04o)",
			 (int) (st.st_mode & 07777));

	dir = pstrdup(file);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return;
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
		fail(r, HINT_PROGRAM,
			 "the directory of the program of trading.key_command is writable by every user (mode %04o)",
			 (int) (st.st_mode & 07777));
}

/*
 * An argument that names an existing regular file is taken for a key file:
 * it must belong to the server's user and be private to it.
 */
static int
check_argument(CheckResult *r, const char *arg, int argno)
{
	struct stat st;

	if (arg[0] == '-' || stat(arg, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	if (st.st_uid != geteuid())
		fail(r, HINT_KEYFILE,
			 "argument %d of trading.key_command names a file owned by another user (uid %d)",
			 argno, (int) st.st_uid);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		fail(r, HINT_KEYFILE,
			 "argument %d of trading.key_command names a file other users can access (mode %04o)",
			 argno, (int) (st.st_mode & 07777));
	return 1;
}

static void
check_key_command(CheckResult *r)
{
	const char *cmd = GetConfigOption("trading.key_command", true, false);
	char	   *words[KEYCMD_MAX_WORDS];
	int			nwords;
	char	   *program;
	int			files = 0;

	r->ok = true;
	r->hint = NULL;
	initStringInfo(&r->detail);
	if (cmd == NULL)
	{
		fail(r, "Install the crypto module of the extension.",
			 "trading.key_command is not available");
		return;
	}
	if (cmd[0] == '\0')
	{
		fail(r, "Set trading.key_command in postgresql.conf and restart (docs/ENCRYPTION.md).",
			 "trading.key_command is not set");
		return;
	}
	if (!split_command(cmd, words, &nwords))
	{
		fail(r, "Point trading.key_command at a script and keep the shell syntax inside the script, so that it can be checked.",
			 "trading.key_command uses shell syntax (quotes, pipes, variables or redirections) that this check cannot follow");
		return;
	}
	program = resolve_program(words[0]);
	if (program == NULL)
	{
		fail(r, "Install the key command's program in the server's PATH, or give its absolute path.",
			 "the program of trading.key_command is not found in the server's PATH");
		return;
	}
	check_program(r, program);
	for (int i = 1; i < nwords; i++)
		files += check_argument(r, words[i], i);
	if (r->ok)
		appendStringInfo(&r->detail,
						 "the program is owned by root or the server's user and not writable by others; %d key file%s private to the server's user",
						 files, files == 1 ? " is" : "s are");
}

/* Is trading one of the libraries the postmaster preloaded? */
static bool
trading_preloaded(void)
{
	const char *value = GetConfigOption("shared_preload_libraries", true, false);
	char	   *copy;
	List	   *libs = NIL;
	ListCell   *lc;

	if (value == NULL)
		return false;
	copy = pstrdup(value);
	if (!SplitDirectoriesString(copy, ',', &libs))
		return false;
	foreach(lc, libs)
	{
		const char *lib = (const char *) lfirst(lc);
		const char *base = strrchr(lib, '/');

		base = base ? base + 1 : lib;
		if (strcmp(base, "trading") == 0 || strcmp(base, "trading.so") == 0)
			return true;
	}
	return false;
}

/* One row of the result; hint is NULL when the check passed. */
static void
put_check(ReturnSetInfo *rsinfo, const char *name, bool ok,
		  const char *detail, const char *hint)
{
	Datum		values[4];
	bool		nulls[4] = {0};

	values[0] = CStringGetTextDatum(name);
	values[1] = BoolGetDatum(ok);
	values[2] = CStringGetTextDatum(detail);
	if (hint)
		values[3] = CStringGetTextDatum(hint);
	else
		nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Roles that can reach the key.  Names only: the caller may read pg_roles
 * anyway.
 */
static void
check_key_readers(ReturnSetInfo *rsinfo)
{
	bool		ok = true;
	StringInfoData supers,
				others;

	initStringInfo(&supers);
	initStringInfo(&others);
	SPI_connect();
	if (SPI_execute("SELECT r.rolname::pg_catalog.text, r.rolsuper, "
					"pg_catalog.array_to_string(ARRAY["
					" CASE WHEN pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE') THEN 'pg_read_server_files' END,"
					" CASE WHEN pg_catalog.pg_has_role(r.oid, 'pg_execute_server_program', 'USAGE') THEN 'pg_execute_server_program' END,"
					" CASE WHEN pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'USAGE') THEN 'pg_write_server_files' END"
					"], ', ') "
					"FROM pg_catalog.pg_roles r "
					"WHERE r.rolname OPERATOR(pg_catalog.!~) '^pg_' AND (r.rolsuper"
					" OR pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE')"
					" OR pg_catalog.pg_has_role(r.oid, 'pg_execute_server_program', 'USAGE')"
					" OR pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'USAGE')) "
					"ORDER BY 1", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_roles");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		bool		super = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));

		if (super)
			appendStringInfo(&supers, "%s%s", supers.len ? ", " : "", name);
		else
		{
			appendStringInfo(&others, "%s%s (%s)", others.len ? ", " : "",
							 name, SPI_getvalue(tup, desc, 3));
			ok = false;
		}
	}
	SPI_finish();
	put_check(rsinfo, "key_readers", ok,
			  psprintf("superusers can reach the server key: %s; other roles that can (server files or programs): %s",
					   supers.len ? supers.data : "none",
					   others.len ? others.data : "none"),
			  ok ? NULL : "Revoke pg_read_server_files, pg_execute_server_program and pg_write_server_files from roles that must not reach the key; import archives with trading.archive_import(name, data bytea), which needs none of them.");
}

/* Is host (up to len bytes) a loopback name or address? */
static bool
loopback_host(const char *host, int len)
{
	return (len == 9 && pg_strncasecmp(host, "localhost", 9) == 0) ||
		(len >= 4 && strncmp(host, "127.", 4) == 0) ||
		(len == 5 && strncmp(host, "[::1]", 5) == 0);
}

static void
check_broker_url(ReturnSetInfo *rsinfo)
{
	const char *url = GetConfigOption("trading.broker_url", true, false);
	const char *host;
	int			len;

	if (url == NULL)
	{
		put_check(rsinfo, "broker_url_cleartext", true,
				  "trading.broker_url is not defined (the broker worker is not loaded)", NULL);
		return;
	}
	if (pg_strncasecmp(url, "http://", 7) != 0)
	{
		put_check(rsinfo, "broker_url_cleartext", true,
				  "trading.broker_url does not use cleartext http://", NULL);
		return;
	}
	host = url + 7;
	if (host[0] == '[')
		len = strcspn(host, "]") + 1;
	else
		len = strcspn(host, ":/?#");
	if (loopback_host(host, len))
		put_check(rsinfo, "broker_url_cleartext", true,
				  "trading.broker_url uses http:// to a loopback address only", NULL);
	else
		put_check(rsinfo, "broker_url_cleartext", false,
				  "trading.broker_url uses cleartext http:// to a host that is not loopback: the access token and orders cross the network unencrypted",
				  "Use https:// (Kite's API is https://api.kite.trade), or a TLS proxy on loopback.");
}

Datum
validate_sql_server(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CheckResult r;
	bool		preloaded = trading_preloaded();
	bool		loaded = crypto_server_key_available();

	InitMaterializedSRF(fcinfo, 0);

	if (preloaded)
		put_check(rsinfo, "preloaded", true,
				  "trading is in shared_preload_libraries", NULL);
	else
		put_check(rsinfo, "preloaded", false,
				  "trading is not in shared_preload_libraries",
				  "Add trading to shared_preload_libraries in postgresql.conf and restart the server.");

	if (loaded)
		put_check(rsinfo, "key_loaded", true,
				  "trading.key_command gave the server key at server start", NULL);
	else
		put_check(rsinfo, "key_loaded", false,
				  "no server key is loaded; the server log of the last start says why",
				  "Fix trading.key_command and restart the server (docs/ENCRYPTION.md); encryption, archives and the broker session need the key.");

	check_key_command(&r);
	put_check(rsinfo, "key_command_permissions", r.ok, r.detail.data,
			  r.ok ? NULL : r.hint);
	check_key_readers(rsinfo);
	check_broker_url(rsinfo);

	return (Datum) 0;
}

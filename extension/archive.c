/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  Secure archives: trading.archive_create runs a query as the caller,
 *	  serialises its rows as JSON lines (one row_to_json object per line),
 *	  encrypts them under the server key with a fresh salt, bound to the
 *	  archive's name ("trading.archive:" || name as associated data), and
 *	  stores the envelope with its row count, sizes and the SHA-256 of the
 *	  plaintext in trading.archives.  archive_rows returns the rows as jsonb,
 *	  archive_verify authenticates without returning anything, and
 *	  archive_export / archive_import move the envelope to and from a
 *	  server file (tools/trading-crypt decrypts it without a database);
 *	  archive_import(name, data bytea) takes the envelope from the client,
 *	  so importing needs no server-file role (a role that can read server
 *	  files can read the key file too).
 *
 * No shared state and no locks beyond the table's own (the primary key
 * serialises two archives of the same name).
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "crypto.h"
#include "crypto_envelope.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(archive_sql_create);
PG_FUNCTION_INFO_V1(archive_sql_rows);
PG_FUNCTION_INFO_V1(archive_sql_verify);
PG_FUNCTION_INFO_V1(archive_sql_export);
PG_FUNCTION_INFO_V1(archive_sql_import);
PG_FUNCTION_INFO_V1(archive_sql_import_data);

#define ARCHIVE_NAME_MAX	200
#define ARCHIVE_QUERY_MAX	(1024 * 1024)
#define ARCHIVE_PATH_MAX	1024
#define ARCHIVE_FETCH		1000
#define ARCHIVE_AAD_PREFIX	"trading.archive:"

/* the largest plaintext: the envelope must still fit in a bytea */
#define ARCHIVE_MAX_PLAINTEXT	(MaxAllocSize - VARHDRSZ - TENV_OVERHEAD - 1)

typedef struct ArchiveRow
{
	bytea	   *data;
	int64		row_count;
	bytea	   *sha256;
} ArchiveRow;

static char *
archive_aad(const char *name, Size *len)
{
	char	   *aad = psprintf(ARCHIVE_AAD_PREFIX "%s", name);

	*len = strlen(aad);
	return aad;
}

static void
sha256(const char *data, Size len, unsigned char *out)
{
	if (EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_CRYPTO_FAILURE),
				 errmsg("could not compute the SHA-256 digest")));
}

static bytea *
digest_bytea(const char *data, Size len)
{
	bytea	   *d = palloc(VARHDRSZ + 32);

	SET_VARSIZE(d, VARHDRSZ + 32);
	sha256(data, len, (unsigned char *) VARDATA(d));
	return d;
}

/* JSON lines of plaintext: one row per '\n'-terminated line */
static int64
count_lines(const char *pt, Size len)
{
	int64		n = 0;

	for (const char *p = pt; (p = memchr(p, '\n', len - (p - pt))) != NULL; p++)
		n++;
	return n;
}

/* Load an archive's envelope and metadata (copied into the caller's
 * memory context); 42704 when it does not exist. */
static ArchiveRow
archive_load(const char *name)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	ArchiveRow	row;
	bool		isnull;
	int			ret;

	values[0] = CStringGetTextDatum(name);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT data, row_count, sha256 FROM trading.archives WHERE name OPERATOR(pg_catalog.=) $1",
								1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read archive: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("archive \"%s\" does not exist", name),
				 errhint("trading.archive_list lists the archives.")));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(caller);

		row.data = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 1, &isnull));
		row.row_count = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		row.sha256 = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 3, &isnull));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return row;
}

/* Decrypt an archive envelope; the plaintext is authenticated. */
static char *
archive_open(const char *name, const bytea *data, Size *len)
{
	Size		aadlen;
	char	   *aad = archive_aad(name, &aadlen);

	return crypto_decrypt_with_server_key(data, aad, aadlen, len);
}

/* Compare plaintext with the stored metadata (TR120 on a mismatch). */
static void
archive_check(const char *name, const char *pt, Size len, int64 row_count,
			  const bytea *digest)
{
	unsigned char d[32];

	sha256(pt, len, d);
	if (VARSIZE_ANY_EXHDR(digest) != 32 ||
		memcmp(VARDATA_ANY(digest), d, 32) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_ARCHIVE_MISMATCH),
				 errmsg("archive \"%s\" does not match its recorded digest", name),
				 errdetail("The encrypted data authenticates, but the sha256 column of trading.archives was changed.")));
	if (count_lines(pt, len) != row_count)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_ARCHIVE_MISMATCH),
				 errmsg("archive \"%s\" does not match its recorded row count", name),
				 errdetail("The archive holds " INT64_FORMAT " rows; trading.archives records " INT64_FORMAT ".",
						   count_lines(pt, len), row_count)));
}

/* Insert an archive: env is its envelope, pt/len the plaintext. */
static void
archive_store(const char *name, const char *pt, Size len, int64 nrows,
			  bytea *env)
{
	Oid			types[6] = {TEXTOID, INT8OID, INT8OID, INT8OID, BYTEAOID, BYTEAOID};
	Datum		values[6];
	int			ret;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(nrows);
	values[2] = Int64GetDatum((int64) len);
	values[3] = Int64GetDatum((int64) VARSIZE(env) - VARHDRSZ);
	values[4] = PointerGetDatum(digest_bytea(pt, len));
	values[5] = PointerGetDatum(env);

	SPI_connect();
	ret = SPI_execute_with_args("INSERT INTO trading.archives "
								"(name, row_count, plaintext_bytes, stored_bytes, sha256, key_version, data) "
								"VALUES ($1, $2, $3, $4, $5, (trading.envelope_info($6)).key_version, $6) "
								"ON CONFLICT (name) DO NOTHING",
								6, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store archive: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("archive \"%s\" already exists", name),
				 errhint("Choose another name, or delete the old archive from trading.archives first.")));
	SPI_finish();
}

static void
check_name_free(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(name);
	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM trading.archives WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.archives");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("archive \"%s\" already exists", name),
				 errhint("Choose another name, or delete the old archive from trading.archives first.")));
	SPI_finish();
}

/* trading.archive_create(name text, query text) returns bigint (rows) */
Datum
archive_sql_create(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	char	   *query = trading_text_arg(fcinfo, 1, "query", ARCHIVE_QUERY_MAX);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext rowcxt;
	StringInfoData buf;
	SPIPlanPtr	plan;
	Portal		portal;
	int64		nrows = 0;

	trading_require_primary("creating an archive");
	/* fail before running the query when no key is loaded or name taken */
	(void) crypto_current_key_version();
	check_name_free(name);

	initStringInfo(&buf);
	rowcxt = AllocSetContextCreate(caller, "archive rows", ALLOCSET_DEFAULT_SIZES);

	SPI_connect();
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the archive query: %s",
			 SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a single statement that returns rows"),
				 errhint("Use SELECT, TABLE or VALUES.")));
	/* runs as the caller: SPI checks the caller's privileges */
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		TupleDesc	desc;

		SPI_cursor_fetch(portal, true, ARCHIVE_FETCH);
		if (SPI_processed == 0)
			break;
		desc = BlessTupleDesc(SPI_tuptable->tupdesc);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);
			Datum		rec = heap_copy_tuple_as_datum(SPI_tuptable->vals[i], desc);
			text	   *json = DatumGetTextPP(DirectFunctionCall1(row_to_json, rec));
			Size		len = VARSIZE_ANY_EXHDR(json);

			if ((Size) buf.len + len + 1 > ARCHIVE_MAX_PLAINTEXT)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("archive is too large"),
						 errdetail("The rows of an archive must stay below 1 GB as JSON.")));
			MemoryContextSwitchTo(caller);
			appendBinaryStringInfo(&buf, VARDATA_ANY(json), len);
			appendStringInfoChar(&buf, '\n');
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
			nrows++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();

	{
		Size		aadlen;
		char	   *aad = archive_aad(name, &aadlen);

		archive_store(name, buf.data, buf.len, nrows,
					  crypto_encrypt_server_fresh(buf.data, buf.len, aad, aadlen));
	}
	memset(buf.data, 0, buf.len);
	pfree(buf.data);
	PG_RETURN_INT64(nrows);
}

/* trading.archive_rows(name text) returns setof jsonb */
Datum
archive_sql_rows(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArchiveRow	row;
	Size		len;
	char	   *pt;
	char	   *p,
			   *end;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	row = archive_load(name);
	pt = archive_open(name, row.data, &len);
	end = pt + len;
	for (p = pt; p < end;)
	{
		char	   *nl = memchr(p, '\n', end - p);
		Datum		value;
		bool		isnull = false;

		if (nl == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_TRADING_ARCHIVE_MISMATCH),
					 errmsg("archive \"%s\" is not in JSON lines form", name)));
		CHECK_FOR_INTERRUPTS();
		*nl = '\0';
		value = DirectFunctionCall1(jsonb_in, CStringGetDatum(p));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		p = nl + 1;
	}
	memset(pt, 0, len);
	return (Datum) 0;
}

/* trading.archive_verify(name text) returns boolean: true, or an error */
Datum
archive_sql_verify(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	ArchiveRow	row = archive_load(name);
	Size		len;
	char	   *pt = archive_open(name, row.data, &len);

	archive_check(name, pt, len, row.row_count, row.sha256);
	memset(pt, 0, len);
	pfree(pt);
	PG_RETURN_BOOL(true);
}

static char *
path_arg(FunctionCallInfo fcinfo, int argno, Oid role, const char *action)
{
	char	   *path = trading_text_arg(fcinfo, argno, "path", ARCHIVE_PATH_MAX);

	if (!superuser() && !has_privs_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s server files", action),
				 errdetail("Only roles with privileges of %s may %s server files.",
						   role == ROLE_PG_WRITE_SERVER_FILES
						   ? "pg_write_server_files" : "pg_read_server_files",
						   action)));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path must be absolute")));
	return path;
}

/* trading.archive_export(name text, path text) returns bigint (bytes):
 * the encrypted envelope, written to a new server file */
Datum
archive_sql_export(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	char	   *path = path_arg(fcinfo, 1, ROLE_PG_WRITE_SERVER_FILES, "write");
	ArchiveRow	row = archive_load(name);
	const char *p = VARDATA_ANY(row.data);
	Size		left = VARSIZE_ANY_EXHDR(row.data);
	int			fd;

	fd = OpenTransientFile(path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path),
				 errhint("The file must not exist yet.")));
	while (left > 0)
	{
		ssize_t		w = write(fd, p, left);

		if (w <= 0)
		{
			int			save = errno;

			CloseTransientFile(fd);
			unlink(path);
			errno = save ? save : ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", path)));
		}
		p += w;
		left -= w;
	}
	if (pg_fsync(fd) != 0 || CloseTransientFile(fd) != 0)
	{
		unlink(path);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", path)));
	}
	PG_RETURN_INT64((int64) VARSIZE_ANY_EXHDR(row.data));
}

/* Authenticate env under name, then store it; returns the row count. */
static int64
import_envelope(const char *name, bytea *env)
{
	Size		len;
	char	   *pt = archive_open(name, env, &len);
	int64		nrows = count_lines(pt, len);

	archive_store(name, pt, len, nrows, env);
	memset(pt, 0, len);
	return nrows;
}

/* trading.archive_import(name text, path text) returns bigint (rows):
 * an exported archive back into trading.archives under its own name */
Datum
archive_sql_import(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	char	   *path = path_arg(fcinfo, 1, ROLE_PG_READ_SERVER_FILES, "read");
	struct stat st;
	bytea	   *env;
	int			fd;
	Size		got = 0;

	trading_require_primary("importing an archive");
	(void) crypto_current_key_version();
	check_name_free(name);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a regular file", path)));
	if ((Size) st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large for an archive", path)));
	env = palloc(VARHDRSZ + st.st_size);
	while (got < (Size) st.st_size)
	{
		ssize_t		r = read(fd, VARDATA(env) + got, st.st_size - got);

		if (r < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		if (r == 0)
			break;
		got += r;
	}
	CloseTransientFile(fd);
	SET_VARSIZE(env, VARHDRSZ + got);
	PG_RETURN_INT64(import_envelope(name, env));
}

/* trading.archive_import(name text, data bytea) returns bigint (rows):
 * an exported archive sent by the client (no server file involved) */
Datum
archive_sql_import_data(PG_FUNCTION_ARGS)
{
	char	   *name = trading_text_arg(fcinfo, 0, "name", ARCHIVE_NAME_MAX);
	bytea	   *env;

	trading_require_arg(fcinfo, 1, "data");
	trading_require_primary("importing an archive");
	(void) crypto_current_key_version();
	check_name_free(name);
	env = PG_GETARG_BYTEA_P(1);
	PG_RETURN_INT64(import_envelope(name, env));
}

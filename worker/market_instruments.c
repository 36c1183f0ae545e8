/*-------------------------------------------------------------------------
 *
 * market_instruments.c
 *	  Loading the broker's instrument master (GET /instruments, CSV) into
 *	  trading.instruments, and trading.refresh_instruments().
 *
 * The CSV is parsed by PostgreSQL's own COPY machinery: BeginCopyFrom()
 * with a data source callback that hands COPY the downloaded body, format
 * csv, HEADER MATCH (the header must name the twelve columns in Kite's
 * order) and ENCODING 'UTF8' (COPY validates the bytes).  The table's
 * types and CHECK constraints validate every field; any bad row rejects
 * the whole dump (TR502) and the old list stays.
 *
 * One transaction replaces the table: LOCK ... IN SHARE ROW EXCLUSIVE MODE
 * (loads are serialised, readers are not blocked), DELETE, COPY, then the
 * watchlist is checked against the new list.  A concurrent reader's
 * snapshot sees either the old list or the new one, never a mix.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "broker_worker.h"
#include "market.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "storage/lmgr.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(market_refresh_instruments);

/* longest an instrument dump may take to download */
#define INSTRUMENTS_TIMEOUT_MS	120000

/* the body COPY reads from (the callback has no argument) */
static const char *copy_src;
static Size copy_len;
static Size copy_pos;

static int
copy_source(void *outbuf, int minread, int maxread)
{
	Size		n = Min((Size) maxread, copy_len - copy_pos);

	memcpy(outbuf, copy_src + copy_pos, n);
	copy_pos += n;
	return (int) n;
}

/* GET {broker_url}/instruments into resp (no session needed) */
void
market_fetch_instruments(MarketResponse *resp)
{
	char	   *url = broker_make_url("/instruments", NULL);

	market_http_get(url, NULL, Max(INSTRUMENTS_TIMEOUT_MS, broker_timeout_ms), resp);
	pfree(url);
}

/* raise TR501/TR502 unless resp is a CSV dump */
static void
check_response(MarketResponse *resp)
{
	if (resp->curl_code != 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_UNREACHABLE),
				 errmsg("could not download the instrument master"),
				 errdetail("%s", resp->too_large
						   ? "The dump exceeds trading.broker_max_response."
						   : resp->errbuf)));
	if (resp->http_status != 200 || resp->is_json)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_UNREACHABLE),
				 errmsg("the broker refused the instrument master request (HTTP %ld)",
						resp->http_status),
				 errdetail("The reply was %s, not the CSV dump.",
						   resp->is_json ? "JSON" : "not CSV")));
	if (resp->len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the instrument master is empty"),
				 errdetail("The broker sent no data; the current list is kept.")));
}

static uint64
copy_dump(Relation rel, MarketResponse *resp)
{
	static const char *const cols[] = {
		"instrument_token", "exchange_token", "tradingsymbol", "name",
		"last_price", "expiry", "strike", "tick_size", "lot_size",
		"instrument_type", "segment", "exchange"
	};
	List	   *attnames = NIL;
	List	   *options;
	ParseState *pstate = make_parsestate(NULL);
	CopyFromState cstate;
	uint64		rows = 0;
	MemoryContext cxt = CurrentMemoryContext;

	for (int i = 0; i < lengthof(cols); i++)
		attnames = lappend(attnames, makeString(pstrdup(cols[i])));
	options = list_make3(makeDefElem("format", (Node *) makeString("csv"), -1),
						 makeDefElem("header", (Node *) makeString("match"), -1),
						 makeDefElem("encoding", (Node *) makeString("UTF8"), -1));

	/* COPY's executor needs the relation in the range table, as DoCopy does */
	{
		ParseNamespaceItem *nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
																   NULL, false, false);

		nsitem->p_rte->requiredPerms = ACL_INSERT;
	}
	copy_src = resp->body;
	copy_len = resp->len;
	copy_pos = 0;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source,
							   attnames, options);
		rows = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (e->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			e->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			e->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
			PG_RE_THROW();
		FlushErrorState();
		copy_src = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the instrument master was rejected: %s", e->message),
				 errdetail("%s%sThe current list is kept.",
						   e->context ? e->context : "",
						   e->context ? ". " : "")));
	}
	PG_END_TRY();
	copy_src = NULL;
	return rows;
}

/*
 * Replace trading.instruments with the dump in resp, check the watchlist
 * and record the load (started is when its download began).  Needs a transaction with SPI connected and a
 * snapshot.  Returns the rows loaded.
 */
int64
market_load_instruments(const char *trigger, MarketResponse *resp,
						TimestampTz started)
{
	Oid			nsp = get_namespace_oid("trading", false);
	Oid			relid = get_relname_relid("instruments", nsp);
	Relation	rel;
	uint64		rows;
	int			unknown;
	Datum		args[5];
	Oid			types[5] = {TEXTOID, INT8OID, INT8OID, INT4OID, TIMESTAMPTZOID};
	bool		isnull;

	check_response(resp);
	if (!OidIsValid(relid))
		elog(ERROR, "trading.instruments does not exist");

	/* loads are serialised; readers (ACCESS SHARE) are not blocked */
	rel = table_open(relid, ShareRowExclusiveLock);
	if (SPI_execute("DELETE FROM trading.instruments", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not empty trading.instruments");
	rows = copy_dump(rel, resp);
	table_close(rel, NoLock);
	if (rows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_MARKET_BAD_DUMP),
				 errmsg("the instrument master has no rows"),
				 errdetail("The broker sent only a header; the current list is kept.")));

	if (SPI_execute("SELECT trading._instruments_check_watchlist()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the watchlist");
	unknown = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));

	args[0] = CStringGetTextDatum(trigger);
	args[1] = Int64GetDatum((int64) rows);
	args[2] = Int64GetDatum((int64) resp->len);
	args[3] = Int32GetDatum(unknown);
	args[4] = TimestampTzGetDatum(started);
	if (SPI_execute_with_args("INSERT INTO trading.instrument_loads "
							  "(trigger, rows, bytes, unknown_watchlist, started_at, finished_at) "
							  "VALUES ($1, $2, $3, $4, $5, pg_catalog.clock_timestamp())",
							  5, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the instrument load");
	return (int64) rows;
}

/* trading.refresh_instruments(): load now, in the caller's transaction */
Datum
market_refresh_instruments(PG_FUNCTION_ARGS)
{
	MarketResponse resp;
	int64		rows;
	TimestampTz started = GetCurrentTimestamp();

	trading_check_database();
	trading_require_primary("loading the instrument master");
	market_fetch_instruments(&resp);
	SPI_connect();
	rows = market_load_instruments("manual", &resp, started);
	SPI_finish();
	pfree(resp.body);
	PG_RETURN_INT64(rows);
}

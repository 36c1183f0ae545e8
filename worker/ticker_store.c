/*-------------------------------------------------------------------------
 *
 * ticker_store.c
 *	  The ticker's transactions.  Each function runs its own unit of work
 *	  through trading_bgw_run_xact(), so an error is rolled back and
 *	  reported instead of stopping the worker, under
 *	  SET LOCAL search_path = pg_catalog, pg_temp (extension objects are
 *	  schema-qualified):
 *
 *	  ticker_load_watchlist		trading.ticker_watchlist into the worker's
 *								subscription table
 *	  ticker_flush				the oldest buffered ticks, a slice of at
 *								most TICKER_FLUSH_SLICE: every tick into
 *								trading.ticks (one in-process COPY, the
 *								partitions of its days created first)
 *	  ticker_write_quotes		the latest written tick of the instruments
 *								waiting longest (at most
 *								TICKER_QUOTE_SLICE) into trading.quotes
 *								(one multi-row UPDATE, an upsert for new
 *								rows)
 *	  ticker_apply_order_update	an order text frame through the poller's
 *								validation and apply path
 *	  ticker_maintain_partitions retention of trading.ticks
 *
 *	  The tick buffer is allocated once (TICK_BUFFER ticks); decoding
 *	  appends to it from inside the WebSocket callbacks without allocating.
 *	  A flush that fails keeps the buffer and is retried a second later;
 *	  only when the buffer is full are the oldest ticks dropped (counted).
 *	  A quote write that fails is retried a second later too, and holds up
 *	  no tick.  A written
 *	  tick becomes its instrument's latest (TickerEntry.latest) and the
 *	  instrument joins the queue of quotes to write, once however many
 *	  ticks it gets before its quote is written: ticks never wait for
 *	  quotes, and a quote row is rewritten at most once per
 *	  trading.ticker_quote_interval.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "broker_worker.h"
#include "metrics.h"
#include "ticker.h"

#include <time.h>

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#define TICK_BUFFER		60000
#define SAFE_PATH		"SET LOCAL search_path = pg_catalog, pg_temp"

static TickerTick *tick_buf;
static int	head;				/* first tick not yet written */
static int	nticks;				/* end of the buffered ticks */

/*
 * Instruments whose latest tick is not yet in trading.quotes, oldest first
 * (a token may be listed twice after a watchlist change: its entry's
 * quote_dirty flag decides).
 */
typedef struct DirtyQuote
{
	uint32		token;
	int64		since_us;		/* monotonic, when it became dirty */
} DirtyQuote;
static DirtyQuote *dirty;
static int	dirty_head,
			dirty_tail,
			dirty_cap;

/* after a failed write, the next attempt of its kind waits (monotonic) */
#define RETRY_DELAY_US	1000000
static int64 ticks_retry_at;
static int64 quotes_retry_at;
static int64 known_days[4];		/* IST days whose partition exists */
static int	nknown_days;

/* the COPY data of one flush, read by copy_source() */
static StringInfoData copy_data;
static int	copy_pos;

void
ticker_store_init(void)
{
	tick_buf = MemoryContextAllocHuge(TopMemoryContext,
									  sizeof(TickerTick) * TICK_BUFFER);
	head = nticks = 0;
	dirty_cap = TICKER_MAX_CONNS * TICKER_MAX_PER_CONN;
	dirty = MemoryContextAlloc(TopMemoryContext, sizeof(DirtyQuote) * dirty_cap);
	dirty_head = dirty_tail = 0;
	initStringInfo(&copy_data);
}

static void
safe_path(void)
{
	if (SPI_execute(SAFE_PATH, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not set search_path");
}

/* ---------------------------------------------------------------------
 * Watchlist
 * ---------------------------------------------------------------------
 */
typedef struct LoadArgs
{
	HTAB	   *entries;
	int			count;
	int64		over_limit;
} LoadArgs;

static void
load_body(void *arg)
{
	LoadArgs   *a = (LoadArgs *) arg;
	HASH_SEQ_STATUS seq;
	TickerEntry *e;

	safe_path();
	if (SPI_execute("SELECT instrument, instrument_token, ticker_mode, store_ticks "
					"FROM trading.ticker_watchlist ORDER BY added_at, instrument",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read trading.ticker_watchlist");

	hash_seq_init(&seq, a->entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->seen = false;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		token = DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull));
		char	   *inst = SPI_getvalue(tup, td, 1);
		char	   *mode = SPI_getvalue(tup, td, 3);
		bool		store = DatumGetBool(SPI_getbinval(tup, td, 4, &isnull));
		uint32		key;
		bool		found;

		if (token <= 0 || token > PG_UINT32_MAX || inst == NULL || mode == NULL)
			continue;
		if (a->count >= TICKER_MAX_CONNS * TICKER_MAX_PER_CONN)
		{
			a->over_limit++;
			continue;
		}
		key = (uint32) token;
		e = hash_search(a->entries, &key, HASH_ENTER, &found);
		if (!found)
		{
			e->conn = -1;
			e->sent_mode = -1;
			e->quoted = false;
			e->quote_dirty = false;
		}
		else if (e->seen)
			continue;			/* two watchlist rows for one token */
		strlcpy(e->instrument, inst, sizeof(e->instrument));
		e->mode = strcmp(mode, "ltp") == 0 ? TM_LTP :
			strcmp(mode, "full") == 0 ? TM_FULL : TM_QUOTE;
		e->store = store;
		e->seen = true;
		a->count++;
	}
}

/*
 * Load the watchlist into entries: entries no longer watched stay with
 * seen = false (the caller unsubscribes and removes them).  False (and
 * nothing changed) when it could not be read.
 */
bool
ticker_load_watchlist(HTAB *entries, int *count)
{
	LoadArgs	a = {entries, 0, 0};
	ErrorData  *e;

	e = trading_bgw_run_xact("trading ticker: loading the watchlist", load_body, &a);
	if (e)
	{
		ereport(LOG,
				(errmsg("trading ticker could not load the watchlist: %s", e->message)));
		FreeErrorData(e);
		return false;
	}
	pg_atomic_write_u64(&tk_shared->unsubscribed_over_limit, (uint64) a.over_limit);
	*count = a.count;
	return true;
}

/* ---------------------------------------------------------------------
 * The tick buffer
 * ---------------------------------------------------------------------
 */
void
ticker_buffer_ticks(const TickerTick *ticks, int n)
{
	if (n > TICK_BUFFER)
	{
		pg_atomic_fetch_add_u64(&tk_shared->ticks_dropped, (uint64) (n - TICK_BUFFER));
		ticks += n - TICK_BUFFER;
		n = TICK_BUFFER;
	}
	if (nticks + n > TICK_BUFFER && head > 0)
	{
		/* make room: move the unwritten ticks to the front */
		memmove(tick_buf, tick_buf + head, sizeof(TickerTick) * (nticks - head));
		nticks -= head;
		head = 0;
	}
	if (nticks + n > TICK_BUFFER)
	{
		/* the database has not kept up for long: drop the oldest */
		int			drop = nticks + n - TICK_BUFFER;

		memmove(tick_buf, tick_buf + drop, sizeof(TickerTick) * (nticks - drop));
		nticks -= drop;
		pg_atomic_fetch_add_u64(&tk_shared->ticks_dropped, (uint64) drop);
	}
	memcpy(tick_buf + nticks, ticks, sizeof(TickerTick) * n);
	nticks += n;
}

int
ticker_buffered(void)
{
	return nticks - head;
}

int64
ticker_oldest_buffered_us(void)
{
	return nticks > head ? tick_buf[head].received_us : 0;
}

/* ---------------------------------------------------------------------
 * Flushing
 * ---------------------------------------------------------------------
 */

static int
copy_source(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_data.len - copy_pos);

	if (n <= 0)
		return 0;
	memcpy(outbuf, copy_data.data + copy_pos, n);
	copy_pos += n;
	return n;
}

/* IST day number of a TimestampTz */
static int64
ist_day(TimestampTz ts)
{
	int64		v = ts + (int64) 19800 * USECS_PER_SEC;

	return v >= 0 ? v / USECS_PER_DAY : (v - USECS_PER_DAY + 1) / USECS_PER_DAY;
}

static void
ensure_partition(TimestampTz ts)
{
	int64		day = ist_day(ts);
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(ts)};

	for (int i = 0; i < nknown_days; i++)
		if (known_days[i] == day)
			return;
	if (SPI_execute_with_args("SELECT trading._ticks_partition($1)", 1, argtypes,
							  values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not create the partition of trading.ticks");
	if (nknown_days == lengthof(known_days))
	{
		memmove(known_days, known_days + 1, sizeof(int64) * (nknown_days - 1));
		nknown_days--;
	}
	known_days[nknown_days++] = day;
}

/* COPY copy_data (binary format) into trading.ticks, in this process */
static uint64
copy_ticks(void)
{
	Oid			nsp = get_namespace_oid("trading", false);
	Oid			relid = get_relname_relid("ticks", nsp);
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	uint64		n;

	if (!OidIsValid(relid))
		elog(ERROR, "relation trading.ticks does not exist");
	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										 false, false);
	copy_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source, NIL,
						   list_make1(makeDefElem("format",
												  (Node *) makeString("binary"), -1)));
	n = CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	return n;
}

#define QUOTE_FROM \
"FROM unnest($1::text[], $2::bigint[], $3::text[], $4::numeric[], $5::bigint[]," \
"  $6::numeric[], $7::bigint[], $8::bigint[], $9::bigint[], $10::numeric[]," \
"  $11::numeric[], $12::numeric[], $13::numeric[], $14::bigint[]," \
"  $15::timestamptz[], $16::timestamptz[], $17::timestamptz[])" \
"  AS u(i, t, m, lp, lq, ap, v, bq, sq, o, h, l, c, oi, ltt, et, ra) "

/* instruments whose quote row exists: a plain UPDATE (no tuple lock) */
static const char *const quote_update_sql =
"UPDATE trading.quotes q SET instrument_token = u.t, mode = u.m, last_price = u.lp,"
"  last_quantity = u.lq, average_price = u.ap, volume = u.v, buy_quantity = u.bq,"
"  sell_quantity = u.sq, open = u.o, high = u.h, low = u.l, close = u.c,"
"  net_change = u.lp - u.c, oi = u.oi, lower_circuit_limit = NULL,"
"  upper_circuit_limit = NULL, last_trade_time = u.ltt, quote_timestamp = u.et,"
"  raw = '{\"source\": \"ticker\"}'::jsonb, updated_at = u.ra "
QUOTE_FROM
"WHERE q.instrument = u.i";

/* the others (first quote, or a row removed meanwhile): an upsert */
static const char *const quote_sql =
"INSERT INTO trading.quotes AS q (instrument, instrument_token, mode, last_price,"
"  last_quantity, average_price, volume, buy_quantity, sell_quantity, open, high,"
"  low, close, net_change, oi, last_trade_time, quote_timestamp, raw, updated_at) "
"SELECT u.i, u.t, u.m, u.lp, u.lq, u.ap, u.v, u.bq, u.sq, u.o, u.h, u.l, u.c,"
"  u.lp - u.c, u.oi, u.ltt, u.et, '{\"source\": \"ticker\"}'::jsonb, u.ra "
QUOTE_FROM
"WHERE EXISTS (SELECT 1 FROM trading.watchlist w WHERE w.instrument = u.i) "
"ON CONFLICT (instrument) DO UPDATE SET instrument_token = EXCLUDED.instrument_token,"
"  mode = EXCLUDED.mode, last_price = EXCLUDED.last_price,"
"  last_quantity = EXCLUDED.last_quantity, average_price = EXCLUDED.average_price,"
"  volume = EXCLUDED.volume, buy_quantity = EXCLUDED.buy_quantity,"
"  sell_quantity = EXCLUDED.sell_quantity, open = EXCLUDED.open, high = EXCLUDED.high,"
"  low = EXCLUDED.low, close = EXCLUDED.close, net_change = EXCLUDED.net_change,"
"  oi = EXCLUDED.oi, lower_circuit_limit = NULL, upper_circuit_limit = NULL,"
"  last_trade_time = EXCLUDED.last_trade_time,"
"  quote_timestamp = EXCLUDED.quote_timestamp, raw = EXCLUDED.raw,"
"  updated_at = EXCLUDED.updated_at";

static SPIPlanPtr quote_plan = NULL;
static SPIPlanPtr quote_update_plan = NULL;

/* run one of the quote statements over the typed arrays of cols */
static uint64
run_quotes(const char *sql, SPIPlanPtr *plan, TickerQuoteCols *cols, int expect)
{
	Oid			argtypes[TICKER_QUOTE_COLS];
	Datum		values[TICKER_QUOTE_COLS];
	int			rc;

	ticker_quote_params(cols, argtypes, values);
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, TICKER_QUOTE_COLS, argtypes);

		if (p == NULL)
			elog(ERROR, "could not prepare the ticker's quote statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (rc != expect)
		elog(ERROR, "the ticker's quote statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

typedef struct FlushArgs
{
	HTAB	   *entries;
	int			from,
				to;				/* the slice tick_buf[from..to) */
	uint64		stored;
	uint64		not_stored;
	int64		copy_us;
} FlushArgs;

/*
 * Ticks are committed asynchronously, and so are quotes: a crash may lose
 * the last few hundred milliseconds of them (never half a slice), and the
 * stream goes on after a restart anyway; waiting for a WAL flush per batch
 * would cap ingest at the disk's fsync rate.
 */
static void
async_commit(void)
{
	if (SPI_execute("SET LOCAL synchronous_commit = off", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not set synchronous_commit");
}

static void
flush_body(void *arg)
{
	FlushArgs  *a = (FlushArgs *) arg;
	int			rows = 0;

	safe_path();
	async_commit();

	/* ticks: the partitions of their days, then one binary COPY */
	resetStringInfo(&copy_data);
	ticker_copy_header(&copy_data);
	for (int i = a->from; i < a->to; i++)
	{
		const TickerTick *t = &tick_buf[i];
		TickerEntry *e = hash_search(a->entries, &t->token, HASH_FIND, NULL);

		if (e == NULL)
			continue;			/* unsubscribed meanwhile */
		if (!e->store)
		{
			a->not_stored++;
			continue;
		}
		ensure_partition(t->received_us);	/* a cache lookup, mostly */
		ticker_copy_row(&copy_data, t);
		rows++;
	}
	ticker_copy_trailer(&copy_data);
	if (rows > 0)
	{
		int64		t0 = trading_monotonic_us();

		a->stored = copy_ticks();
		a->copy_us = trading_monotonic_us() - t0;
	}
}

static void
record_latency(int from, int to)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = from; i < to; i++)
	{
		double		sec = (double) (now - tick_buf[i].received_us) / 1e6;
		int			b = 0;

		while (b < TICKER_LAT_BUCKETS - 1 && sec > ticker_latency_bounds[b])
			b++;
		pg_atomic_fetch_add_u64(&tk_shared->latency_bucket[b], 1);
		pg_atomic_fetch_add_u64(&tk_shared->latency_sum_us,
								(uint64) Max(now - tick_buf[i].received_us, 0));
	}
	pg_atomic_fetch_add_u64(&tk_shared->latency_count, (uint64) (to - from));
}

/* the ticks of a written slice become their instruments' latest quotes */
static void
mark_quotes(HTAB *entries, int from, int to)
{
	int64		now = trading_monotonic_us();

	for (int i = from; i < to; i++)
	{
		const TickerTick *t = &tick_buf[i];
		TickerEntry *e = hash_search(entries, &t->token, HASH_FIND, NULL);

		if (e == NULL)
			continue;
		e->latest = *t;
		if (e->quote_dirty)
			continue;
		e->quote_dirty = true;
		if (dirty_tail == dirty_cap)
		{
			if (dirty_head > 0)
			{
				memmove(dirty, dirty + dirty_head,
						sizeof(DirtyQuote) * (dirty_tail - dirty_head));
				dirty_tail -= dirty_head;
				dirty_head = 0;
			}
			else
			{
				dirty_cap *= 2;
				dirty = repalloc(dirty, sizeof(DirtyQuote) * dirty_cap);
			}
		}
		dirty[dirty_tail].token = t->token;
		dirty[dirty_tail].since_us = now;
		dirty_tail++;
	}
}

/* run one write; false (logged, counted in flush_errors) when it failed */
static bool
run_write(const char *activity, void (*body) (void *), void *arg, int n,
		  const char *what)
{
	ErrorData  *e = trading_bgw_run_xact(activity, body, arg);

	if (e == NULL)
		return true;
	pg_atomic_fetch_add_u64(&tk_shared->flush_errors, 1);
	ereport(LOG,
			(errmsg("trading ticker could not write %d %s: %s", n, what, e->message)));
	FreeErrorData(e);
	return false;
}

/*
 * Write the oldest buffered ticks, at most TICKER_FLUSH_SLICE of them, in
 * one transaction (see the file header); their instruments' quotes are
 * written later by ticker_write_quotes().  On failure the buffer is kept
 * for the next attempt.
 */
void
ticker_flush(HTAB *entries)
{
	FlushArgs	a = {entries, head, Min(nticks, head + TICKER_FLUSH_SLICE), 0, 0, 0};

	if (nticks == head || trading_monotonic_us() < ticks_retry_at)
		return;
	pg_atomic_fetch_add_u64(&tk_shared->flushes, 1);
	if (!run_write("trading ticker: writing ticks", flush_body, &a,
				   a.to - a.from, "ticks"))
	{
		nknown_days = 0;		/* a partition may have been dropped */
		ticks_retry_at = trading_monotonic_us() + RETRY_DELAY_US;
		return;
	}
	record_latency(a.from, a.to);
	mark_quotes(entries, a.from, a.to);
	pg_atomic_fetch_add_u64(&tk_shared->ticks_stored, a.stored);
	pg_atomic_fetch_add_u64(&tk_shared->ticks_not_stored, a.not_stored);
	pg_atomic_fetch_add_u64(&tk_shared->copy_us, (uint64) a.copy_us);
	head = a.to;
	if (head == nticks)
		head = nticks = 0;
}

/* ---------------------------------------------------------------------
 * Quotes
 * ---------------------------------------------------------------------
 */
typedef struct QuoteArgs
{
	HTAB	   *entries;
	int			from,
				to;				/* the slice dirty[from..to) */
	uint64		quotes;
	int64		quotes_us;
} QuoteArgs;

static void
quotes_body(void *arg)
{
	QuoteArgs  *a = (QuoteArgs *) arg;
	TickerQuoteCols cols;		/* known quote rows */
	TickerQuoteCols newcols;	/* first quotes */
	int64		t0;

	safe_path();
	async_commit();
	ticker_quote_init(&cols, a->to - a->from);
	ticker_quote_init(&newcols, a->to - a->from);
	for (int i = a->from; i < a->to; i++)
	{
		TickerEntry *e = hash_search(a->entries, &dirty[i].token, HASH_FIND, NULL);

		if (e == NULL || !e->quote_dirty)
			continue;			/* unwatched meanwhile, or listed twice */
		ticker_quote_add(e->quoted ? &cols : &newcols, e->instrument, &e->latest);
	}
	t0 = trading_monotonic_us();
	if (cols.n > 0)
	{
		uint64		n = run_quotes(quote_update_sql, &quote_update_plan, &cols,
								   SPI_OK_UPDATE);

		a->quotes += n;
		/* a row went away meanwhile (DELETE, the poller): upsert them all */
		if (n < (uint64) cols.n)
			(void) run_quotes(quote_sql, &quote_plan, &cols, SPI_OK_INSERT);
	}
	if (newcols.n > 0)
		a->quotes += run_quotes(quote_sql, &quote_plan, &newcols, SPI_OK_INSERT);
	a->quotes_us = trading_monotonic_us() - t0;
}

/*
 * Are quotes due: has an instrument's latest tick waited
 * trading.ticker_quote_interval since its tick was written?
 */
bool
ticker_quotes_due(void)
{
	return dirty_head < dirty_tail && trading_monotonic_us() >= quotes_retry_at &&
		trading_monotonic_us() - dirty[dirty_head].since_us >=
		(int64) ticker_quote_interval_ms * 1000;
}

/*
 * Write the latest ticks of the instruments longest waiting, at most
 * TICKER_QUOTE_SLICE of them, into trading.quotes in one transaction.  All
 * the ticks of an instrument that arrived meanwhile make one row update.
 * On failure they stay waiting.
 */
void
ticker_write_quotes(HTAB *entries)
{
	QuoteArgs	a = {entries, dirty_head,
	Min(dirty_tail, dirty_head + TICKER_QUOTE_SLICE), 0, 0};

	if (dirty_head == dirty_tail)
		return;
	if (!run_write("trading ticker: writing quotes", quotes_body, &a,
				   a.to - a.from, "quotes"))
	{
		quotes_retry_at = trading_monotonic_us() + RETRY_DELAY_US;
		if (quote_plan)
		{
			SPI_freeplan(quote_plan);
			quote_plan = NULL;
		}
		if (quote_update_plan)
		{
			SPI_freeplan(quote_update_plan);
			quote_update_plan = NULL;
		}
		return;
	}
	for (int i = a.from; i < a.to; i++)
	{
		TickerEntry *te = hash_search(entries, &dirty[i].token, HASH_FIND, NULL);

		if (te != NULL)
		{
			te->quote_dirty = false;
			te->quoted = true;
		}
	}
	pg_atomic_fetch_add_u64(&tk_shared->quotes_written, a.quotes);
	pg_atomic_fetch_add_u64(&tk_shared->quotes_us, (uint64) a.quotes_us);
	dirty_head = a.to;
	if (dirty_head == dirty_tail)
		dirty_head = dirty_tail = 0;
}

/* ---------------------------------------------------------------------
 * Order updates
 * ---------------------------------------------------------------------
 */
/*
 * An order text frame ({"type":"order","data":{...}}): validated and
 * applied like a polled order (the broker worker's response path,
 * broker_apply_text() and trading._apply_orders), in its own transaction,
 * at once; orders reaching a final status are counted there.
 */
void
ticker_apply_order_update(const char *msg, size_t len)
{
	BrokerApplyResult res;

	broker_apply_text("SELECT r.kind, r.name, r.detail FROM trading._ticker_apply_order($1) r",
					  msg, (Size) len, &res);
	if (res.error >= 0 || res.rejected > 0)
	{
		pg_atomic_fetch_add_u64(&tk_shared->order_update_errors, 1);
		ereport(LOG,
				(errmsg("trading ticker dropped an order update: %s",
						res.error >= 0 ? res.message : res.field)));
		return;
	}
	pg_atomic_fetch_add_u64(&tk_shared->order_updates, 1);
}

/* ---------------------------------------------------------------------
 * Retention
 * ---------------------------------------------------------------------
 */
static void
retention_body(void *arg)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(ticker_retention_days)};

	safe_path();
	if (SPI_execute_with_args("SELECT trading.ticks_drop_expired($1)", 1, argtypes,
							  values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not apply the retention of trading.ticks");
}

void
ticker_maintain_partitions(void)
{
	ErrorData  *e;

	if (ticker_retention_days <= 0)
		return;
	e = trading_bgw_run_xact("trading ticker: tick retention", retention_body, NULL);
	if (e)
	{
		ereport(LOG,
				(errmsg("trading ticker could not apply the tick retention: %s", e->message)));
		FreeErrorData(e);
	}
	nknown_days = 0;
}

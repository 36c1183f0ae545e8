/*-------------------------------------------------------------------------
 *
 * ticker_sql.c
 *	  SQL-callable functions of the ticker (58_ticker.sql):
 *
 *	  _ticker_config_changed()	statement trigger on watchlist and
 *								instruments: wakes the worker after commit
 *	  _ticker_status()			per connection, from shared memory
 *	  _ticker_stats()			the worker's counters and the tick-to-row
 *								latency histogram
 *	  ticker_decode(bytea)		a binary frame decoded as the worker does,
 *								one jsonb per packet in the form of Kite's
 *								clients (conformance tests, debugging)
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ticker.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ticker_config_changed);
PG_FUNCTION_INFO_V1(ticker_status);
PG_FUNCTION_INFO_V1(ticker_stats);
PG_FUNCTION_INFO_V1(ticker_decode);

Datum
ticker_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_ticker_config_changed() must be called as a trigger")));
	trading_at_commit(ticker_config_changed_signal);
	return PointerGetDatum(NULL);
}

Datum
ticker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TickerConnShared copy[TICKER_MAX_CONNS];
	int			state;
	pid_t		pid;

	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&tk_shared->mutex);
	state = tk_shared->state;
	pid = tk_shared->pid;
	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		TickerConnShared *c = &tk_shared->conn[k];

		copy[k].state = c->state;
		copy[k].subscriptions = c->subscriptions;
		copy[k].connected_at = c->connected_at;
		copy[k].last_packet_at = c->last_packet_at;
		copy[k].last_pong_at = c->last_pong_at;
		copy[k].last_reconnect_at = c->last_reconnect_at;
		copy[k].next_attempt_at = c->next_attempt_at;
		copy[k].ticks_per_second = c->ticks_per_second;
		memcpy(copy[k].last_reason, c->last_reason, TICKER_REASON_LEN);
	}
	SpinLockRelease(&tk_shared->mutex);
	if (pid == 0)
		state = TWS_NOT_RUNNING;

	for (int k = 0; k < TICKER_MAX_CONNS; k++)
	{
		Datum		values[17];
		bool		nulls[17] = {0};
		TickerConnShared *c = &tk_shared->conn[k];
		bool		live = copy[k].state == TCS_CONNECTED;

		values[0] = Int32GetDatum(k + 1);
		values[1] = CStringGetTextDatum(ticker_worker_state_name(state));
		values[2] = CStringGetTextDatum(ticker_conn_state_name(pid ? copy[k].state : TCS_UNUSED));
		values[3] = Int32GetDatum(copy[k].subscriptions);
		values[4] = trading_timestamptz_or_null(live ? copy[k].connected_at : 0, &nulls[4]);
		values[5] = trading_timestamptz_or_null(copy[k].last_packet_at, &nulls[5]);
		values[6] = trading_timestamptz_or_null(copy[k].last_pong_at, &nulls[6]);
		values[7] = Float8GetDatum(copy[k].ticks_per_second);
		values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&c->ticks_total));
		values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&c->frames_total));
		values[10] = Int64GetDatum((int64) pg_atomic_read_u64(&c->heartbeats_total));
		values[11] = Int64GetDatum((int64) pg_atomic_read_u64(&c->malformed_total));
		values[12] = Int64GetDatum((int64) pg_atomic_read_u64(&c->reconnects_total));
		values[13] = trading_timestamptz_or_null(copy[k].last_reconnect_at, &nulls[13]);
		if (copy[k].last_reason[0])
			values[14] = CStringGetTextDatum(copy[k].last_reason);
		else
			nulls[14] = true;
		values[15] = trading_timestamptz_or_null(copy[k].next_attempt_at, &nulls[15]);
		values[16] = Int64GetDatum((int64) pg_atomic_read_u64(&c->pings_total));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
ticker_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[16];
	bool		nulls[16] = {0};
	Datum		buckets[TICKER_LAT_BUCKETS];
	int			state;
	bool		streaming;
	pid_t		pid;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	SpinLockAcquire(&tk_shared->mutex);
	state = tk_shared->state;
	streaming = tk_shared->streaming;
	pid = tk_shared->pid;
	SpinLockRelease(&tk_shared->mutex);
	if (pid == 0)
		state = TWS_NOT_RUNNING;
	values[0] = CStringGetTextDatum(ticker_worker_state_name(state));
	values[1] = BoolGetDatum(streaming);
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->ticks_stored));
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->ticks_not_stored));
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->ticks_dropped));
	values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->quotes_written));
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->flushes));
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->flush_errors));
	values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->order_updates));
	values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->order_update_errors));
	values[10] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->unsubscribed_over_limit));
	for (int b = 0; b < TICKER_LAT_BUCKETS; b++)
		buckets[b] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->latency_bucket[b]));
	values[11] = PointerGetDatum(construct_array(buckets, TICKER_LAT_BUCKETS, INT8OID,
												 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[12] = Int64GetDatum((int64) pg_atomic_read_u64(&tk_shared->latency_count));
	values[13] = Float8GetDatum((double) pg_atomic_read_u64(&tk_shared->latency_sum_us) / 1e6);
	values[14] = Float8GetDatum((double) pg_atomic_read_u64(&tk_shared->copy_us) / 1e6);
	values[15] = Float8GetDatum((double) pg_atomic_read_u64(&tk_shared->quotes_us) / 1e6);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

static void
kv_price(StringInfo s, const char *key, uint32 v, int decimals)
{
	char		buf[24];

	appendStringInfo(s, ", \"%s\": %s", key, ticker_price_text(v, decimals, buf));
}

static void
kv_time(StringInfo s, const char *key, uint32 epoch)
{
	char	   *t;

	t = DatumGetCString(DirectFunctionCall1(timestamptz_out,
											TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) epoch))));
	appendStringInfo(s, ", \"%s\": \"%s\"", key, t);
}

/* one packet in the form of Kite's clients (the ticker_*.json fixtures) */
static char *
tick_json(const TickerTick *t)
{
	StringInfoData s;
	int			d = t->decimals;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"mode\": \"%s\", \"tradable\": %s, \"instrument_token\": %u",
					 ticker_mode_names[t->mode], t->tradable ? "true" : "false", t->token);
	kv_price(&s, "last_price", t->last_price, d);
	if (t->mode != TM_LTP)
	{
		if (t->tradable)
		{
			appendStringInfo(&s, ", \"last_quantity\": %u", t->last_quantity);
			kv_price(&s, "average_price", t->average_price, d);
			appendStringInfo(&s, ", \"volume\": %u, \"buy_quantity\": %u, \"sell_quantity\": %u",
							 t->volume, t->buy_quantity, t->sell_quantity);
		}
		{
			char		b1[24],
						b2[24],
						b3[24],
						b4[24];

			appendStringInfo(&s, ", \"ohlc\": {\"open\": %s, \"high\": %s, \"low\": %s, \"close\": %s}",
							 ticker_price_text(t->open, d, b1),
							 ticker_price_text(t->high, d, b2),
							 ticker_price_text(t->low, d, b3),
							 ticker_price_text(t->close, d, b4));
		}
		{
			int64		diff = (int64) t->last_price - (int64) t->close;
			char		b[24];

			appendStringInfo(&s, ", \"change\": %s%s", diff < 0 ? "-" : "",
							 ticker_price_text((uint32) (diff < 0 ? -diff : diff), d, b));
		}
	}
	if (t->mode == TM_FULL)
	{
		if (t->tradable)
		{
			if (t->last_trade_time)
				kv_time(&s, "last_trade_time", t->last_trade_time);
			appendStringInfo(&s, ", \"oi\": %u, \"oi_day_high\": %u, \"oi_day_low\": %u",
							 t->oi, t->oi_day_high, t->oi_day_low);
		}
		if (t->exchange_time)
			kv_time(&s, "timestamp", t->exchange_time);
		if (t->tradable)
		{
			appendStringInfoString(&s, ", \"depth\": {");
			for (int side = 0; side < 2; side++)
			{
				appendStringInfo(&s, "%s\"%s\": [", side ? ", " : "", side ? "sell" : "buy");
				for (int k = 0; k < 5; k++)
				{
					const TickerDepth *e = &t->depth[side * 5 + k];
					char		b[24];

					appendStringInfo(&s, "%s{\"price\": %s, \"quantity\": %u, \"orders\": %u}",
									 k ? ", " : "", ticker_price_text(e->price, d, b),
									 e->quantity, (unsigned) e->orders);
				}
				appendStringInfoChar(&s, ']');
			}
			appendStringInfoChar(&s, '}');
		}
	}
	appendStringInfoChar(&s, '}');
	return s.data;
}

/*
 * trading.ticker_decode(frame bytea) RETURNS SETOF jsonb: TR701 when the
 * frame is malformed (the reason in the detail); no rows for a heartbeat.
 */
Datum
ticker_decode(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *frame;
	TickerTick *ticks;
	int			n;
	const char *why;
	TickerFrameResult r;

	trading_require_arg(fcinfo, 0, "frame");
	frame = PG_GETARG_BYTEA_PP(0);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ticks = palloc(sizeof(TickerTick) * 65535);
	r = ticker_decode_frame((const uint8 *) VARDATA_ANY(frame), VARSIZE_ANY_EXHDR(frame),
							GetCurrentTimestamp(), ticks, 65535, &n, &why);
	if (r == TFR_MALFORMED)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_TICKER_MALFORMED),
				 errmsg("malformed ticker frame"),
				 errdetail("The frame is %d bytes long: %s.",
						   (int) VARSIZE_ANY_EXHDR(frame), why)));
	for (int i = 0; i < n; i++)
	{
		Datum		values[1];
		bool		nulls[1] = {false};

		values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(tick_json(&ticks[i])));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

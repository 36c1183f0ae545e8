/*-------------------------------------------------------------------------
 *
 * order_sql.c
 *	  The order outbox's module entry points (GUCs, registration of the
 *	  "trading order sender", shared memory) and what backends run: the
 *	  wake trigger on trading.order_requests and the standby check.
 *
 * Woken by the commit itself: the AFTER INSERT/UPDATE trigger only notes
 * that this transaction queued a request; a transaction callback sets the
 * sender's latch on XACT_EVENT_COMMIT, after the rows are visible.  A
 * rolled-back transaction wakes nothing; a rolled-back savepoint forgets
 * the wake-up its own rows asked for (subtransaction callback).  Nothing
 * here ever sends: the sender reads only committed rows.
 *
 * Shared memory and its locking rules: see worker/order_sender.h.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "../worker/order_sender.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/guc.h"

OrderSenderShared *os_shared = NULL;

bool		order_sender_enabled = true;
int			order_max_in_flight = 16;
int			order_timeout_ms = 7000;
int			order_settle_ms = 2000;
int			order_rate_margin_ms = 50;
static int	order_market_validity_s = 30;
static int	order_validity_s = 600;

PG_FUNCTION_INFO_V1(order_requests_wake);
PG_FUNCTION_INFO_V1(order_require_primary);

void
order_sender_init(void)
{
	DefineCustomBoolVariable("trading.order_sender",
							 "Start the order sender.",
							 "When off, the postmaster does not start the worker that sends order requests.",
							 &order_sender_enabled, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_max_in_flight",
							"Most order requests the sender has in flight at once.",
							NULL, &order_max_in_flight, 16, 1, 64,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_timeout",
							"Total timeout of one order request to the broker.",
							"Past it the request is unknown and reconciled by its tag.",
							&order_timeout_ms, 7000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_settle",
							"How long after an ambiguous reply an order book must be fetched to prove a request absent.",
							NULL, &order_settle_ms, 2000, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_rate_margin",
							"Extra spacing the sender keeps beyond the rate limits, against network jitter.",
							NULL, &order_rate_margin_ms, 50, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_market_validity",
							"Default valid_until of MARKET orders, modifications and cancellations, from their creation.",
							NULL, &order_market_validity_s, 30, 1, 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("trading.order_validity",
							"Default valid_until of the other orders, from their creation.",
							NULL, &order_validity_s, 600, 1, 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);

	if (!order_sender_enabled)
		return;
	trading_register_worker("order_sender_main", "trading order sender",
							BgWorkerStart_RecoveryFinished, 1);
}

void
order_sender_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(OrderSenderShared)));
}

void
order_sender_shmem_startup(void)
{
	bool		found;

	os_shared = ShmemInitStruct("trading.orders", sizeof(OrderSenderShared), &found);
	if (found)
		return;
	memset(os_shared, 0, sizeof(OrderSenderShared));
	SpinLockInit(&os_shared->mutex);
	os_shared->procno = -1;
	pg_atomic_init_u32(&os_shared->database_seen, 1);
	pg_atomic_init_u64(&os_shared->wakeups, 0);
	pg_atomic_init_u64(&os_shared->attempts, 0);
	pg_atomic_init_u64(&os_shared->placed, 0);
	pg_atomic_init_u64(&os_shared->rejected, 0);
	pg_atomic_init_u64(&os_shared->unknown, 0);
	pg_atomic_init_u64(&os_shared->retried, 0);
	pg_atomic_init_u64(&os_shared->reconciliations, 0);
	pg_atomic_init_u64(&os_shared->limiter_waits, 0);
}

void
order_sender_wake(void)
{
	int			procno;

	SpinLockAcquire(&os_shared->mutex);
	procno = os_shared->procno;
	SpinLockRelease(&os_shared->mutex);
	if (procno >= 0)
	{
		pg_atomic_fetch_add_u64(&os_shared->wakeups, 1);
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	}
}

/* ---------------------------------------------------------------------
 * Wake on commit
 * ---------------------------------------------------------------------
 */
Datum
order_requests_wake(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trading._order_wake() must be called as a trigger")));
	/* not for a rolled-back savepoint; a PREPAREd one is found by the scan */
	trading_at_commit(order_sender_wake);
	return PointerGetDatum(td->tg_trigtuple);
}

Datum
order_require_primary(PG_FUNCTION_ARGS)
{
	char	   *action = text_to_cstring(PG_GETARG_TEXT_PP(0));

	trading_require_primary(action);
	PG_RETURN_VOID();
}

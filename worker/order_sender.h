/*-------------------------------------------------------------------------
 *
 * order_sender.h
 *	  Declarations shared by the files of the order outbox (docs/ORDERS.md):
 *
 *	  extension/order_sql.c		the wake trigger on trading.order_requests
 *								(sets the sender's latch when the inserting
 *								transaction commits), module entry points,
 *								GUCs and shared memory
 *	  worker/order_sender.c		the "trading order sender" background worker
 *	  worker/order_http.c		its libcurl multi handle: concurrent sends
 *								over kept-alive connections
 *
 * Shared memory ("trading.orders") and its locking rules
 * ------------------------------------------------------
 * - procno and pid are written by the sender at start and exit under the
 *   spinlock "mutex", held only to copy them; backends read procno under it
 *   to set the sender's latch.
 * - The counters are pg_atomic_uint64, written by the sender only and read
 *   by anyone without a lock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_ORDER_SENDER_H
#define TRADING_ORDER_SENDER_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/spin.h"

typedef struct OrderSenderShared
{
	slock_t		mutex;
	int			procno;			/* pgprocno of the sender, -1 */
	pid_t		pid;
	pg_atomic_uint32 database_seen; /* see bgw_common.h */
	pg_atomic_uint64 wakeups;	/* commits that woke the sender */
	pg_atomic_uint64 attempts;	/* HTTP attempts started */
	pg_atomic_uint64 placed;
	pg_atomic_uint64 rejected;
	pg_atomic_uint64 unknown;
	pg_atomic_uint64 retried;
	pg_atomic_uint64 reconciliations;	/* order book fetches for unknown */
	pg_atomic_uint64 limiter_waits; /* sends postponed by our limiter */
} OrderSenderShared;

extern OrderSenderShared *os_shared;

/* GUCs (order_sql.c) */
extern bool order_sender_enabled;
extern int	order_max_in_flight;
extern int	order_timeout_ms;
extern int	order_settle_ms;
extern int	order_rate_margin_ms;

/* order_sql.c */
extern void order_sender_wake(void);

/* order_http.c: one slot per request in flight */
typedef struct OrderReply
{
	int			slot;
	bool		reached;		/* false: the request provably never left */
	char		transport_error[256];	/* NUL: a complete reply arrived */
	long		http_status;
	char	   *body;			/* palloc'd, may hold NULs */
	Size		len;
} OrderReply;

extern void order_http_init(int nslots);
extern bool order_http_start(int slot, const char *method, const char *url,
							 const char *body, const char *auth_header);
extern bool order_http_busy(int slot);
extern void order_http_kick(void);
extern int	order_http_in_flight(void);

/*
 * Wait up to timeout_ms for the latch or for socket activity, drive the
 * transfers, and return the finished ones (palloc'd array in the current
 * context, *n of them); *latch_set tells whether the latch is set.
 */
extern OrderReply *order_http_wait(long timeout_ms, int *n, bool *latch_set);

#endif							/* TRADING_ORDER_SENDER_H */

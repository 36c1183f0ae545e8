/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The one place where the extension's shared memory is laid out.
 *
 * Each module owns one named segment ("trading.<module>") that it requests
 * in X_shmem_request() and attaches in X_shmem_startup().  Adding a
 * capability means adding one line to each table below.  The postmaster
 * runs both hooks once at start (and again after a crash-restart, when
 * shared memory is re-created); backends forked from it inherit the
 * pointers set in X_shmem_startup(), and under EXEC_BACKEND each backend
 * re-runs the startup hook, which must therefore tolerate found == true.
 *
 * Locking: there is no extension-wide lock.  Each module documents its own
 * rules in the header comment of its file; AddinShmemInitLock is held only
 * while the segments are attached.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

typedef struct TradingShmemModule
{
	const char *name;
	void		(*request) (void);
	void		(*startup) (void);
} TradingShmemModule;

static const TradingShmemModule shmem_modules[] = {
	{"ratelimit", ratelimit_shmem_request, ratelimit_shmem_startup},
	{"crypto", crypto_shmem_request, crypto_shmem_startup},
	{"correlation", correlation_shmem_request, correlation_shmem_startup},
	{"metrics", metrics_shmem_request, metrics_shmem_startup},
	{"broker_worker", broker_worker_shmem_request, broker_worker_shmem_startup},
	{"ticker", ticker_shmem_request, ticker_shmem_startup},
	{"orders", order_sender_shmem_request, order_sender_shmem_startup},
	{"market", market_shmem_request, market_shmem_startup},
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
trading_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	for (int i = 0; i < lengthof(shmem_modules); i++)
		shmem_modules[i].request();
}

static void
trading_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < lengthof(shmem_modules); i++)
		shmem_modules[i].startup();
	LWLockRelease(AddinShmemInitLock);
}

void
trading_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = trading_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = trading_shmem_startup;
}

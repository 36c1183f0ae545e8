/*-------------------------------------------------------------------------
 *
 * trading.c
 *	  Entry point of trading.so: _PG_init checks that the library is loaded
 *	  through shared_preload_libraries, defines the GUCs of every module,
 *	  registers the background workers, and installs the shared memory
 *	  hooks (shmem.c).  Nothing else happens here.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * Every capability keeps state in shared memory or runs a background
	 * worker, and both only exist when the postmaster loads the library.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trading must be loaded via shared_preload_libraries"),
				 errdetail("The extension keeps its rate limiter, key and queues in shared memory, which is only set up when the server starts."),
				 errhint("Add trading to shared_preload_libraries in postgresql.conf and restart the server.")));

	trading_guc_init();
	ratelimit_init();
	crypto_init();
	correlation_init();
	metrics_init();
	broker_worker_init();
	ticker_init();
	order_sender_init();
	history_init();
	market_worker_init();

	MarkGUCPrefixReserved("trading");

	trading_shmem_install_hooks();
}

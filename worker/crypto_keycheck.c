/*-------------------------------------------------------------------------
 *
 * crypto_keycheck.c
 *	  The key check at server start: a short-lived background worker that
 *	  compares each server key version loaded by trading.key_command with
 *	  the key check value registered in trading.key_versions and reports
 *	  the result in the server log, so that a wrong key is reported when the
 *	  server starts rather than when the first value fails to decrypt.  The
 *	  server starts either way; backends make the same check before their
 *	  first use of a version (crypto.c) and refuse a mismatching key with
 *	  TR102.
 *
 * The worker is registered only when a key was loaded, runs once after
 * recovery (or on a standby once it is consistent), never restarts, and
 * registers nothing: versions not yet in the table are registered by their
 * first use.  It reads no shared state of its own (no locks); the key page
 * is read-only after the postmaster loaded it.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "bgw_common.h"
#include "crypto.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void crypto_keycheck_main(Datum arg);

void
crypto_keycheck_register(void)
{
	trading_register_worker("crypto_keycheck_main", "trading key check",
							BgWorkerStart_ConsistentState, BGW_NEVER_RESTART);
}

void
crypto_keycheck_main(Datum arg)
{
	uint32		versions[16];
	unsigned char kcvs[16][16];
	int			current;
	int			n;
	int			ok = 0,
				unregistered = 0,
				bad = 0;

	trading_bgw_connect(NULL, "trading key check");

	n = crypto_loaded_keys(versions, kcvs, 16, &current);
	/* extension not created yet: the first use registers the key */
	if (trading_bgw_extension_version() == 0)
		n = 0;

	trading_bgw_begin_xact("checking the server key");
	for (int i = 0; i < n; i++)
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum((int32) versions[i])};
		bool		isnull;
		bytea	   *kcv;

		if (SPI_execute_with_args("SELECT kcv FROM trading.key_versions WHERE version OPERATOR(pg_catalog.=) $1",
								  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read trading.key_versions");
		if (SPI_processed == 0)
		{
			unregistered++;
			continue;
		}
		kcv = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
		if (!isnull && VARSIZE_ANY_EXHDR(kcv) == 16 &&
			memcmp(VARDATA_ANY(kcv), kcvs[i], 16) == 0)
			ok++;
		else
		{
			bad++;
			ereport(WARNING,
					(errcode(ERRCODE_TRADING_WRONG_SERVER_KEY),
					 errmsg("trading: server key version %u does not match its key check value", versions[i]),
					 errdetail("trading.key_command printed a different key for version %u than the one registered in trading.key_versions; values encrypted under it cannot be decrypted, and functions that need it raise TR102.",
							   versions[i]),
					 errhint("Restore the right key in the key command's source and restart the server.")));
		}
	}
	trading_bgw_commit_xact();

	if (n > 0 && bad == 0)
		ereport(LOG,
				(errmsg("trading: server key verified: %d version(s) match their key check values, %d not registered yet",
						ok, unregistered)));
	proc_exit(0);
}

/*-------------------------------------------------------------------------
 *
 * ratelimit_persist.c
 *	  Keep the rate limiter's windows across a clean server restart.
 *
 * The limits themselves live in trading.rate_limits; what a restart would
 * lose is the timestamps of recent grants, which matters for long windows
 * (kite.orders allows 3000 per day).  As pg_stat_statements does with its
 * statistics, the postmaster writes every ring to a file when it shuts down
 * cleanly, and reads it back when it creates shared memory; the file is
 * removed once read, so a crash never brings back stale windows (after a
 * crash-restart the windows start empty, as documented).
 *
 * Timestamps are CLOCK_MONOTONIC, which does not survive a reboot, so the
 * file stores each timestamp as its age at shutdown, with the wall-clock
 * time of the shutdown; at load, the time the server was down (by the wall
 * clock) is added to each age.  Entries older than their window are dropped.
 *
 * Runs only in the postmaster, before any backend exists or after all have
 * exited, so no lock is taken.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit_int.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#define RATELIMIT_STATE_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/trading_ratelimit.state"
#define RATELIMIT_STATE_TMP	RATELIMIT_STATE_FILE ".tmp"
#define RATELIMIT_STATE_MAGIC	0x54524C31	/* "TRL1" */

typedef struct RateLimitStateHeader
{
	uint32		magic;
	int32		nendpoints;
	int64		wall_us;		/* GetCurrentTimestamp() at shutdown */
} RateLimitStateHeader;

typedef struct RateLimitStateLimit
{
	int64		per_us;
	int32		n;
	int32		count;			/* followed by count ages (us), oldest first */
} RateLimitStateLimit;

static void
ratelimit_persist_save(int code, Datum arg)
{
	FILE	   *f;
	RateLimitStateHeader hdr;
	int64		now = trading_monotonic_us();
	bool		ok = true;

	/* a crash (code != 0) leaves no trustworthy state */
	if (code != 0 || ratelimit_shared == NULL)
		return;

	f = AllocateFile(RATELIMIT_STATE_TMP, PG_BINARY_W);
	if (f == NULL)
		goto error;

	hdr.magic = RATELIMIT_STATE_MAGIC;
	hdr.nendpoints = 0;
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
		if (ratelimit_shared->endpoints[i].in_use)
			hdr.nendpoints++;
	hdr.wall_us = GetCurrentTimestamp();
	ok = fwrite(&hdr, sizeof(hdr), 1, f) == 1;

	for (int i = 0; ok && i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];

		if (!ep->in_use)
			continue;
		ok = fwrite(ep->name, RATELIMIT_NAME_LEN, 1, f) == 1 &&
			fwrite(&ep->nlimits, sizeof(int), 1, f) == 1;
		for (int l = 0; ok && l < ep->nlimits; l++)
		{
			RateLimit  *lim = &ep->limits[l];
			RateLimitStateLimit sl = {lim->per_us, lim->n, lim->count};
			int64	   *ring = ratelimit_shared->slots + lim->offset;
			int			oldest = (lim->next - lim->count + lim->n) % lim->n;

			ok = fwrite(&sl, sizeof(sl), 1, f) == 1;
			for (int k = 0; ok && k < lim->count; k++)
			{
				int64		age = now - ring[(oldest + k) % lim->n];

				ok = fwrite(&age, sizeof(age), 1, f) == 1;
			}
		}
	}
	if (!ok)
		goto error;
	if (FreeFile(f) != 0)
	{
		f = NULL;
		goto error;
	}
	(void) durable_rename(RATELIMIT_STATE_TMP, RATELIMIT_STATE_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write rate limiter state file \"%s\": %m",
					RATELIMIT_STATE_TMP)));
	if (f)
		FreeFile(f);
	unlink(RATELIMIT_STATE_TMP);
}

/*
 * Rebuild endpoints and rings from the file.  Called from the shmem startup
 * hook in the postmaster, on freshly initialised shared memory.  The first
 * synchronisation with the table then keeps the rings of limits that did not
 * change and drops endpoints that are gone.
 */
static void
ratelimit_persist_load(void)
{
	FILE	   *f;
	RateLimitStateHeader hdr;
	int64		now = trading_monotonic_us();
	int64		down_us;
	int			loaded = 0;

	f = AllocateFile(RATELIMIT_STATE_FILE, PG_BINARY_R);
	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read rate limiter state file \"%s\": %m",
							RATELIMIT_STATE_FILE)));
		return;
	}
	if (fread(&hdr, sizeof(hdr), 1, f) != 1 || hdr.magic != RATELIMIT_STATE_MAGIC ||
		hdr.nendpoints < 0)
		goto bad;
	down_us = Max(0, GetCurrentTimestamp() - hdr.wall_us);

	for (int e = 0; e < hdr.nendpoints; e++)
	{
		char		name[RATELIMIT_NAME_LEN];
		int			nlimits;
		RateEndpoint *ep = NULL;

		if (fread(name, RATELIMIT_NAME_LEN, 1, f) != 1 ||
			fread(&nlimits, sizeof(int), 1, f) != 1 ||
			nlimits < 0 || nlimits > RATELIMIT_MAX_LIMITS)
			goto bad;
		name[RATELIMIT_NAME_LEN - 1] = '\0';
		if (e < ratelimit_shared->max_endpoints)
		{
			ep = &ratelimit_shared->endpoints[e];
			ep->in_use = true;
			ep->generation++;
			strlcpy(ep->name, name, RATELIMIT_NAME_LEN);
		}
		for (int l = 0; l < nlimits; l++)
		{
			RateLimitStateLimit sl;
			RateLimit  *lim = NULL;

			if (fread(&sl, sizeof(sl), 1, f) != 1 || sl.n < 1 ||
				sl.count < 0 || sl.count > sl.n || sl.per_us <= 0)
				goto bad;
			if (ep && ratelimit_shared->slots_used + sl.n <= ratelimit_shared->nslots)
			{
				lim = &ep->limits[ep->nlimits++];
				lim->per_us = sl.per_us;
				lim->n = sl.n;
				lim->offset = ratelimit_shared->slots_used;
				lim->count = 0;
				lim->next = 0;
				ratelimit_shared->slots_used += sl.n;
			}
			for (int k = 0; k < sl.count; k++)
			{
				int64		age;

				if (fread(&age, sizeof(age), 1, f) != 1)
					goto bad;
				age += down_us;
				/* keep what is still inside the window (entries are oldest first) */
				if (lim && age >= 0 && age < lim->per_us)
				{
					ratelimit_shared->slots[lim->offset + lim->next] = now - age;
					ep->newest = Max(ep->newest, now - age);
					lim->next = (lim->next + 1) % lim->n;
					lim->count++;
				}
			}
		}
		if (ep)
			loaded++;
	}
	FreeFile(f);
	unlink(RATELIMIT_STATE_FILE);
	if (loaded > 0)
		ereport(LOG,
				(errmsg("restored the windows of %d rate-limited endpoints", loaded)));
	return;

bad:
	ereport(LOG,
			(errmsg("ignoring corrupt rate limiter state file \"%s\"",
					RATELIMIT_STATE_FILE)));
	FreeFile(f);
	unlink(RATELIMIT_STATE_FILE);
	/* start from empty shared memory */
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		ratelimit_shared->endpoints[i].in_use = false;
		ratelimit_shared->endpoints[i].nlimits = 0;
	}
	ratelimit_shared->slots_used = 0;
}

/* From ratelimit_shmem_startup(), when shared memory was just created. */
void
ratelimit_persist_startup(void)
{
	if (IsUnderPostmaster)
		return;					/* EXEC_BACKEND child: nothing to do */
	ratelimit_persist_load();
	on_shmem_exit(ratelimit_persist_save, (Datum) 0);
}

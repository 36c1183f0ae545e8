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
 * Layout (native byte order; the file never leaves its server):
 *	  header: magic "TRL2", layout version, endpoint count, shutdown time
 *	  per endpoint: name (RATELIMIT_NAME_LEN bytes, NUL-padded), limit count
 *	  per limit: window (us), n, count, then count ages (us), oldest first
 *	  trailer: CRC-32C of everything before it
 * The whole file is read and its checksum verified before anything is
 * used (a file of 1.0's layout, "TRL1" without version or checksum, is
 * read once, at the restart that upgrades the binaries); then every field is checked against its bounds (windows within 31
 * days, counts within n, ages not negative and ordered, names terminated,
 * no endpoint or window twice).  A file that fails any check is ignored
 * with one WARNING, and the windows start empty.
 *
 * Runs only in the postmaster, before any backend exists or after all have
 * exited, so no lock is taken.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "ratelimit_int.h"

#include <unistd.h>
#include <sys/stat.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#define RATELIMIT_STATE_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/trading_ratelimit.state"
#define RATELIMIT_STATE_TMP		RATELIMIT_STATE_FILE ".tmp"
#define RATELIMIT_STATE_MAGIC	0x54524C32	/* "TRL2" */
#define RATELIMIT_STATE_VERSION	2
#define RATELIMIT_STATE_MAGIC_1	0x54524C31	/* "TRL1": version 1.0's layout */

typedef struct RateLimitStateHeader
{
	uint32		magic;
	uint32		version;
	int32		nendpoints;
	int32		pad;
	int64		wall_us;		/* GetCurrentTimestamp() at shutdown */
} RateLimitStateHeader;

/* 1.0's header: no version, no checksum; the body is the same */
typedef struct RateLimitStateHeader1
{
	uint32		magic;
	int32		nendpoints;
	int64		wall_us;
} RateLimitStateHeader1;

typedef struct RateLimitStateLimit
{
	int64		per_us;
	int32		n;
	int32		count;			/* followed by count ages (us), oldest first */
} RateLimitStateLimit;

static void
ratelimit_persist_save(int code, Datum arg)
{
	StringInfoData buf;
	RateLimitStateHeader hdr = {0};
	int64		now = trading_monotonic_us();
	pg_crc32c	crc;
	FILE	   *f;

	/* a crash (code != 0) leaves no trustworthy state */
	if (code != 0 || ratelimit_shared == NULL)
		return;

	initStringInfo(&buf);
	hdr.magic = RATELIMIT_STATE_MAGIC;
	hdr.version = RATELIMIT_STATE_VERSION;
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
		if (ratelimit_shared->endpoints[i].in_use)
			hdr.nendpoints++;
	hdr.wall_us = GetCurrentTimestamp();
	appendBinaryStringInfo(&buf, (char *) &hdr, sizeof(hdr));

	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];
		char		name[RATELIMIT_NAME_LEN] = {0};
		int32		nlimits = ep->nlimits;

		if (!ep->in_use)
			continue;
		strlcpy(name, ep->name, RATELIMIT_NAME_LEN);
		appendBinaryStringInfo(&buf, name, RATELIMIT_NAME_LEN);
		appendBinaryStringInfo(&buf, (char *) &nlimits, sizeof(nlimits));
		for (int l = 0; l < ep->nlimits; l++)
		{
			RateLimit  *lim = &ep->limits[l];
			RateLimitStateLimit sl = {lim->per_us, lim->n, lim->count};
			int64	   *ring = ratelimit_shared->slots + lim->offset;
			int			oldest = (lim->next - lim->count + lim->n) % lim->n;

			appendBinaryStringInfo(&buf, (char *) &sl, sizeof(sl));
			for (int k = 0; k < lim->count; k++)
			{
				int64		age = Max(0, now - ring[(oldest + k) % lim->n]);

				appendBinaryStringInfo(&buf, (char *) &age, sizeof(age));
			}
		}
	}
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf.data, buf.len);
	FIN_CRC32C(crc);
	appendBinaryStringInfo(&buf, (char *) &crc, sizeof(crc));

	f = AllocateFile(RATELIMIT_STATE_TMP, PG_BINARY_W);
	if (f == NULL || fwrite(buf.data, buf.len, 1, f) != 1 || FreeFile(f) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write rate limiter state file \"%s\": %m",
						RATELIMIT_STATE_TMP)));
		if (f)
			FreeFile(f);
		unlink(RATELIMIT_STATE_TMP);
	}
	else
		(void) durable_rename(RATELIMIT_STATE_TMP, RATELIMIT_STATE_FILE, LOG);
	pfree(buf.data);
}

/* A cursor over the file's bytes. */
typedef struct StateReader
{
	const char *data;
	Size		len;
	Size		pos;
} StateReader;

static bool
state_read(StateReader *r, void *out, Size n)
{
	if (r->len - r->pos < n)
		return false;
	memcpy(out, r->data + r->pos, n);
	r->pos += n;
	return true;
}

/* Start from empty shared memory. */
static void
ratelimit_persist_reset(void)
{
	for (int i = 0; i < ratelimit_shared->max_endpoints; i++)
	{
		RateEndpoint *ep = &ratelimit_shared->endpoints[i];

		ep->in_use = false;
		ep->nlimits = 0;
		ep->newest = 0;
		ep->name[0] = '\0';
	}
	ratelimit_shared->slots_used = 0;
}

/*
 * Rebuild endpoints and rings from the verified bytes after the header;
 * returns NULL, or what is wrong with them (shared memory is then reset by
 * the caller).
 */
static const char *
ratelimit_persist_parse(StateReader *r, int32 nendpoints, int64 wall_us,
						int *loaded)
{
	int64		now = trading_monotonic_us();
	int64		down_us;

	if (nendpoints < 0 || wall_us <= 0)
		return "its header is out of range";
	/* a shutdown in the future (the clock was set back): no downtime */
	down_us = Max(0, GetCurrentTimestamp() - wall_us);

	for (int e = 0; e < nendpoints; e++)
	{
		char		name[RATELIMIT_NAME_LEN];
		int32		nlimits;
		RateEndpoint *ep = NULL;

		if (!state_read(r, name, RATELIMIT_NAME_LEN) ||
			!state_read(r, &nlimits, sizeof(nlimits)))
			return "it is truncated";
		if (memchr(name, '\0', RATELIMIT_NAME_LEN) == NULL || name[0] == '\0')
			return "an endpoint name is not terminated or empty";
		if (nlimits < 0 || nlimits > RATELIMIT_MAX_LIMITS)
			return "an endpoint has too many limits";
		for (int i = 0; i < e && i < ratelimit_shared->max_endpoints; i++)
			if (strcmp(ratelimit_shared->endpoints[i].name, name) == 0)
				return "an endpoint appears twice";
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
			int64		prev_age = PG_INT64_MAX;

			if (!state_read(r, &sl, sizeof(sl)))
				return "it is truncated";
			if (sl.n < 1 || sl.count < 0 || sl.count > sl.n ||
				sl.per_us <= 0 || sl.per_us > RATELIMIT_MAX_PER_US)
				return "a window or count is out of range";
			if (ep)
				for (int j = 0; j < ep->nlimits; j++)
					if (ep->limits[j].per_us == sl.per_us)
						return "an endpoint has the same window twice";
			if (r->len - r->pos < (Size) sl.count * sizeof(int64))
				return "it is truncated";
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
				int64		age = 0;

				(void) state_read(r, &age, sizeof(age));
				if (age < 0 || age > prev_age)
					return "a timestamp is out of range or out of order";
				prev_age = age;
				/* keep what is still inside the window */
				if (lim && age <= sl.per_us && down_us < sl.per_us - age)
				{
					int64		t = now - (age + down_us);

					ratelimit_shared->slots[lim->offset + lim->next] = t;
					ep->newest = Max(ep->newest, t);
					lim->next = (lim->next + 1) % lim->n;
					lim->count++;
				}
			}
		}
		if (ep)
			(*loaded)++;
	}
	if (r->pos != r->len)
		return "it has trailing bytes";
	return NULL;
}

/*
 * Read the file whole, verify its checksum, then rebuild endpoints and
 * rings from it.  Called from the shmem startup hook in the postmaster, on
 * freshly initialised shared memory.  The first synchronisation with the
 * table then keeps the rings of limits that did not change and drops
 * endpoints that are gone.
 */
static void
ratelimit_persist_load(void)
{
	int			fd;
	struct stat st;
	char	   *data = NULL;
	const char *problem = NULL;
	int			loaded = 0;
	Size		max_size;

	fd = OpenTransientFile(RATELIMIT_STATE_FILE, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read rate limiter state file \"%s\": %m",
							RATELIMIT_STATE_FILE)));
		return;
	}

	/* no valid file is larger than every endpoint, limit and slot at once */
	max_size = sizeof(RateLimitStateHeader) + sizeof(pg_crc32c) +
		(Size) ratelimit_shared->max_endpoints *
		(RATELIMIT_NAME_LEN + sizeof(int32) +
		 RATELIMIT_MAX_LIMITS * sizeof(RateLimitStateLimit)) +
		(Size) ratelimit_shared->nslots * sizeof(int64);
	if (fstat(fd, &st) != 0)
		problem = "it cannot be examined";
	else if (st.st_size < (off_t) sizeof(RateLimitStateHeader1))
		problem = "it is truncated";
	else if ((Size) st.st_size > max_size)
		problem = "it is larger than any state of this server";
	else
	{
		data = palloc(st.st_size);
		if (read(fd, data, st.st_size) != st.st_size)
			problem = "it cannot be read whole";
	}
	CloseTransientFile(fd);

	if (problem == NULL)
	{
		RateLimitStateHeader hdr = {0};
		RateLimitStateHeader1 hdr1;

		/* the layout first: an older layout has no checksum to verify */
		memcpy(&hdr1, data, sizeof(hdr1));
		if (st.st_size >= (off_t) sizeof(hdr))
			memcpy(&hdr, data, sizeof(hdr));
		if (hdr1.magic == RATELIMIT_STATE_MAGIC_1)
		{
			/* written by 1.0 before the upgrade restart: read it once */
			StateReader r = {data, st.st_size, sizeof(hdr1)};

			problem = ratelimit_persist_parse(&r, hdr1.nendpoints, hdr1.wall_us,
											  &loaded);
		}
		else if (hdr.magic != RATELIMIT_STATE_MAGIC ||
				 hdr.version != RATELIMIT_STATE_VERSION)
			problem = "its layout version is not one this server reads";
		else if (st.st_size < (off_t) (sizeof(hdr) + sizeof(pg_crc32c)))
			problem = "it is truncated";
		else
		{
			Size		body = st.st_size - sizeof(pg_crc32c);
			StateReader r = {data, body, sizeof(hdr)};
			pg_crc32c	stored;
			pg_crc32c	crc;

			memcpy(&stored, data + body, sizeof(stored));
			INIT_CRC32C(crc);
			COMP_CRC32C(crc, data, body);
			FIN_CRC32C(crc);
			if (!EQ_CRC32C(crc, stored))
				problem = "its checksum does not match";
			else
				problem = ratelimit_persist_parse(&r, hdr.nendpoints, hdr.wall_us,
												  &loaded);
		}
	}
	if (data)
		pfree(data);
	unlink(RATELIMIT_STATE_FILE);

	if (problem)
	{
		ratelimit_persist_reset();
		ereport(WARNING,
				(errmsg("ignoring rate limiter state file \"%s\": %s",
						RATELIMIT_STATE_FILE, problem),
				 errdetail("The rate limits' windows start empty.")));
		return;
	}
	if (loaded > 0)
		ereport(LOG,
				(errmsg("restored the windows of %d rate-limited endpoints", loaded)));
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

/*-------------------------------------------------------------------------
 *
 * at_commit.c
 *	  Run an action once, after the current transaction commits: how SQL
 *	  wakes a background worker (a trigger on a configuration table, a new
 *	  order request, a new broker session) without the worker ever seeing
 *	  a change that was rolled back.
 *
 *	  trading_at_commit(action) may be called many times in a transaction;
 *	  each distinct action runs once at COMMIT.  A savepoint rolled back
 *	  forgets the actions asked for only inside it; a savepoint released
 *	  hands its actions to its parent.  Nothing runs on ABORT or PREPARE
 *	  (the workers' periodic scans find prepared work when it commits).
 *
 *	  Actions run in the commit callback, after the commit record: they
 *	  must not raise an error, allocate or wait (an atomic increment and
 *	  SetLatch are what they do).  Backend-local state only; no locks.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

#include "access/xact.h"

#define MAX_ACTIONS 8

typedef struct PendingAction
{
	trading_commit_action action;
	int			level;			/* outermost nest level that asked */
} PendingAction;

static PendingAction pending[MAX_ACTIONS];
static int	npending = 0;
static bool callbacks_registered = false;

static void
at_commit_xact_callback(XactEvent event, void *arg)
{
	int			n = npending;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			npending = 0;
			for (int i = 0; i < n; i++)
				pending[i].action();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			npending = 0;
			break;
		default:
			break;
	}
}

static void
at_commit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			kept = 0;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* keep what an enclosing level asked for */
		for (int i = 0; i < npending; i++)
			if (pending[i].level < level)
				pending[kept++] = pending[i];
		npending = kept;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the savepoint's requests now belong to its parent */
		for (int i = 0; i < npending; i++)
			if (pending[i].level >= level)
				pending[i].level = level - 1;
	}
}

void
trading_at_commit(trading_commit_action action)
{
	int			level = GetCurrentTransactionNestLevel();

	if (!callbacks_registered)
	{
		RegisterXactCallback(at_commit_xact_callback, NULL);
		RegisterSubXactCallback(at_commit_subxact_callback, NULL);
		callbacks_registered = true;
	}
	for (int i = 0; i < npending; i++)
	{
		if (pending[i].action == action)
		{
			pending[i].level = Min(pending[i].level, level);
			return;
		}
	}
	if (npending >= MAX_ACTIONS)
		elog(ERROR, "too many distinct actions to run at commit");
	pending[npending].action = action;
	pending[npending].level = level;
	npending++;
}

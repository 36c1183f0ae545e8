/*-------------------------------------------------------------------------
 *
 * history.h
 *	  Trade history at rest: the schedule that moves old orders, trades and
 *	  operations into encrypted archives (history.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TRADING_HISTORY_H
#define TRADING_HISTORY_H

/* trading.history_retention in seconds; 0 keeps history live */
extern int	history_retention_s;

/* Define the settings (from _PG_init). */
extern void history_init(void);

/*
 * From a worker's loop, outside any transaction: when the interval has
 * passed, move every batch of old history, each in its own transaction.
 */
extern void history_maybe_run(void);

#endif

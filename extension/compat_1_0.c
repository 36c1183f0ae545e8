/*-------------------------------------------------------------------------
 *
 * compat_1_0.c
 *	  C entry points under the names version 1.0's SQL objects use.
 *
 * Version 1.1 renamed the SQL-callable C functions so that each carries
 * its module's prefix.  An installed 1.0 (before ALTER EXTENSION trading
 * UPDATE) still calls the old symbols, so each old name stays here as an
 * alias of the new function; the update points the SQL objects at the new
 * names (extension/versions/1.0--1.1/NN_*_symbols.sql).  Remove in 2.0.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"

/*
 * COMPAT_ALIAS(old, new): the V1 function old, calling new with the same
 * call frame (set-returning functions included: the frame's fn_extra is
 * the one the new function uses).
 */
#define COMPAT_ALIAS(oldname, newname) \
	extern PGDLLEXPORT Datum newname(PG_FUNCTION_ARGS); \
	PG_FUNCTION_INFO_V1(oldname); \
	Datum \
	oldname(PG_FUNCTION_ARGS) \
	{ \
		return newname(fcinfo); \
	}

/* correlation: current_correlation_id() */
COMPAT_ALIAS(current_correlation_id, correlation_current_id)

/* rate limiter: rate_limit_set, _drop, _try, _acquire, _rate_limit_status(), _rate_limits_changed() */
COMPAT_ALIAS(rate_limit_set, ratelimit_sql_set)
COMPAT_ALIAS(rate_limit_drop, ratelimit_sql_drop)
COMPAT_ALIAS(rate_limit_try, ratelimit_sql_try)
COMPAT_ALIAS(rate_limit_acquire, ratelimit_sql_acquire)
COMPAT_ALIAS(rate_limit_status, ratelimit_sql_status)
COMPAT_ALIAS(rate_limits_changed, ratelimit_sql_changed)

/* encryption: encrypt, decrypt, encrypt_text, decrypt_text, reencrypt, envelope_info, _key_versions */
COMPAT_ALIAS(trading_encrypt_server, crypto_sql_encrypt_server)
COMPAT_ALIAS(trading_decrypt_server, crypto_sql_decrypt_server)
COMPAT_ALIAS(trading_encrypt_server_text, crypto_sql_encrypt_server_text)
COMPAT_ALIAS(trading_decrypt_server_text, crypto_sql_decrypt_server_text)
COMPAT_ALIAS(trading_encrypt_passphrase, crypto_sql_encrypt_passphrase)
COMPAT_ALIAS(trading_decrypt_passphrase, crypto_sql_decrypt_passphrase)
COMPAT_ALIAS(trading_reencrypt, crypto_sql_reencrypt)
COMPAT_ALIAS(trading_envelope_info, crypto_sql_envelope_info)
COMPAT_ALIAS(trading_key_versions, crypto_sql_key_versions)

/* archives: archive_create, _rows, _verify, _export, _import */
COMPAT_ALIAS(trading_archive_create, archive_sql_create)
COMPAT_ALIAS(trading_archive_rows, archive_sql_rows)
COMPAT_ALIAS(trading_archive_verify, archive_sql_verify)
COMPAT_ALIAS(trading_archive_export, archive_sql_export)
COMPAT_ALIAS(trading_archive_import, archive_sql_import)

/* validate_config()'s server checks */
COMPAT_ALIAS(trading_validate_server, validate_sql_server)

/* the broker session: set_broker_session, clear_broker_session */
COMPAT_ALIAS(set_broker_session, broker_sql_set_session)
COMPAT_ALIAS(clear_broker_session, broker_sql_clear_session)

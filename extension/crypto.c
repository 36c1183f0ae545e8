/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  The server key and the C API of encryption at rest: GUCs, loading the
 *	  master key(s) with trading.key_command at server start, the key check
 *	  values, per-backend HKDF subkeys, and sealing/opening envelopes in
 *	  server-key and passphrase mode.  The SQL functions are in
 *	  crypto_sql.c, archives in archive.c, the byte format in
 *	  crypto_envelope.c.
 *
 * Key memory
 * ----------
 * The postmaster runs trading.key_command once, in _PG_init, and keeps the
 * key versions in a page of its own: an anonymous MAP_SHARED mapping that
 * is mlock()ed (kept out of swap; the postmaster's lock keeps the page
 * resident for every child sharing it), excluded from core dumps, and
 * wiped by the postmaster at exit.  The command's output is read with
 * read(2) straight into that page (no stdio buffer ever holds a key line),
 * within trading.key_command_timeout: a command that hangs is killed and
 * the server starts without a key.  Once loaded, the postmaster makes the
 * page read-only (mprotect) before any child exists, so every backend
 * inherits a read-only mapping; only the postmaster's exit callback makes
 * it writable again, to wipe it.  The key never enters a GUC, a table, a
 * log line or an error message; errors about the key command describe the
 * line and the problem, never the content.
 *
 * Each backend derives subkeys from the master key with HKDF-SHA256 and a
 * random salt stored in the envelope.  For rows it reuses one salt (and so
 * one subkey) for up to CRYPTO_SUBKEY_MAX_USES values, which keeps a row at
 * the cost of one AES-GCM call while every subkey stays far below the
 * 2^32 random-nonce limit; archives and files get a fresh salt.  Subkeys
 * needed for decryption are cached (CRYPTO_DEC_CACHE entries, keyed by
 * version and salt).  Subkeys and passphrase-derived keys live in another
 * locked, non-dumpable page that the backend wipes when it exits.  No
 * OpenSSL context keeps a key schedule between calls: crypto_envelope.c
 * keys its one context for each seal or open and cleanses it afterwards.
 *
 * Key check values: a 16-byte HKDF output of each key version is
 * registered in trading.key_versions the first time the version is used,
 * and compared there by every backend before its first use of that
 * version, so a wrong key is reported as such (TR102) rather than as
 * thousands of failed decryptions.  At server start the key check worker
 * (worker/crypto_keycheck.c) makes the same comparison and logs the result.
 *
 * Locking: none is needed.  The key page is written by the postmaster
 * before any child exists and is read-only afterwards; the subkey page is
 * private to its backend.
 *
 *-------------------------------------------------------------------------
 */
#include "trading.h"
#include "crypto.h"
#include "crypto_envelope.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* largest key command output read */
#define KEY_OUTPUT_MAX			4096

/* values sealed with one per-backend subkey before a new salt is drawn */
#define CRYPTO_SUBKEY_MAX_USES	(1U << 20)

/* decryption subkeys cached per backend */
#define CRYPTO_DEC_CACHE		16

/* ---- the postmaster's key page (shared with every child, read-only) ---- */
typedef struct CryptoKeyring
{
	bool		loaded;
	int			nkeys;
	int			current;		/* index of the highest version */
	char		load_error[256];	/* why nothing is loaded; no key data */
	TenvKey		keys[TENV_MAX_KEYS];
	unsigned char kcv[TENV_MAX_KEYS][TENV_KCV_LEN];
	char		output[KEY_OUTPUT_MAX + 1]; /* raw key command output */
} CryptoKeyring;

static CryptoKeyring *keyring = NULL;
static Size keyring_size = 0;
static pid_t keyring_owner = 0;

/* ---- this backend's subkeys (private locked page) ---- */
typedef struct CryptoSubkey
{
	bool		valid;
	uint32		version;
	unsigned char salt[TENV_SALT_LEN];
	unsigned char key[TENV_KEY_LEN];
} CryptoSubkey;

typedef struct CryptoBackendKeys
{
	CryptoSubkey enc;			/* the salt/subkey rows are sealed with */
	uint32		enc_uses;
	CryptoSubkey dec[CRYPTO_DEC_CACHE];
	int			dec_next;		/* round-robin replacement */
	unsigned char scratch[TENV_KEY_LEN];	/* fresh-salt and passphrase keys */
	int8		kcv_state[TENV_MAX_KEYS];	/* 0 unchecked, 1 ok, -1 mismatch */
} CryptoBackendKeys;

static CryptoBackendKeys *bkeys = NULL;
static Size bkeys_size = 0;

/* GUCs */
static char *crypto_key_command = NULL;
static int	crypto_key_command_timeout = 30;
int			crypto_pbkdf2_iterations = TENV_DEFAULT_ITERATIONS;

static void load_server_key(void);

/* ---------------------------------------------------------------------
 * Locked pages.
 * ---------------------------------------------------------------------
 */

static void *
locked_page(Size size, bool shared, const char *what)
{
	void	   *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
						 (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
						 -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mlock(p, size) != 0)
		ereport(WARNING,
				(errmsg("trading: could not lock the memory of the %s: %m", what),
				 errdetail("The keys may be written to swap."),
				 errhint("Raise the server user's RLIMIT_MEMLOCK (ulimit -l).")));
#ifdef MADV_DONTDUMP
	(void) madvise(p, size, MADV_DONTDUMP);
#endif
	memset(p, 0, size);
	return p;
}

static void
wipe_keyring(int code, Datum arg)
{
	/* children inherit on_proc_exit entries in some paths: owner only */
	if (keyring == NULL || getpid() != keyring_owner)
		return;
	(void) mprotect(keyring, keyring_size, PROT_READ | PROT_WRITE);
	tenv_wipe(keyring, keyring_size);
	munlock(keyring, keyring_size);
}

static void
wipe_backend_keys(int code, Datum arg)
{
	if (bkeys == NULL)
		return;
	tenv_wipe(bkeys, bkeys_size);
	munlock(bkeys, bkeys_size);
	munmap(bkeys, bkeys_size);
	bkeys = NULL;
}

static CryptoBackendKeys *
backend_keys(void)
{
	if (bkeys == NULL)
	{
		bkeys_size = TYPEALIGN(getpagesize(), sizeof(CryptoBackendKeys));
		bkeys = locked_page(bkeys_size, false, "backend's subkeys");
		if (bkeys == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate memory for encryption keys: %m")));
		on_proc_exit(wipe_backend_keys, (Datum) 0);
	}
	return bkeys;
}

/* ---------------------------------------------------------------------
 * Module entry points.
 * ---------------------------------------------------------------------
 */

/*
 * trading.key_command may name a key file or carry a KMS client's options:
 * SHOW and current_setting() give its value to superusers only, not to
 * pg_read_all_settings (which GUC_SUPERUSER_ONLY alone would let through),
 * and GUC_NO_SHOW_ALL keeps it out of pg_settings and SHOW ALL.
 */
static const char *
show_key_command(void)
{
	if (IsTransactionState() && OidIsValid(GetUserId()) && superuser())
		return crypto_key_command ? crypto_key_command : "";
	return "(hidden: superuser only)";
}

void
crypto_init(void)
{
	DefineCustomStringVariable("trading.key_command",
							   "Program that prints the server's master key(s) at server start.",
							   "It must print one key per line: 64 hexadecimal digits, optionally "
							   "preceded by \"version:\"; the highest version encrypts.  "
							   "Runs with the data directory as working directory.",
							   &crypto_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, show_key_command);
	DefineCustomIntVariable("trading.key_command_timeout",
							"Longest time trading.key_command may run at server start.",
							"A command still running then is killed and the server starts "
							"without the server key.",
							&crypto_key_command_timeout,
							30, 1, 3600,
							PGC_POSTMASTER,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("trading.pbkdf2_iterations",
							"PBKDF2-HMAC-SHA256 iterations of passphrase encryption.",
							"Stored in each envelope, so values encrypted with another "
							"setting still decrypt.  Only superusers may change it; "
							"trading.encrypt_with_passphrase takes a per-call count.",
							&crypto_pbkdf2_iterations,
							TENV_DEFAULT_ITERATIONS,
							TENV_MIN_ITERATIONS, TENV_MAX_ITERATIONS,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	crypto_sql_init();
	load_server_key();
	if (crypto_server_key_available())
		crypto_keycheck_register();
}

void
crypto_shmem_request(void)
{
}

void
crypto_shmem_startup(void)
{
}

/* ---------------------------------------------------------------------
 * Loading the key (postmaster, once).
 * ---------------------------------------------------------------------
 */

static void
key_load_failed(void)
{
	ereport(WARNING,
			(errmsg("trading: could not load the server key"),
			 errdetail_internal("%s", keyring->load_error),
			 errhint("Functions that need the server key will fail until trading.key_command is fixed and the server restarted.")));
}

/*
 * Run the key command through /bin/sh in a process group of its own and
 * read its standard output with read(2) straight into keyring->output (a
 * locked, non-dumpable page), for at most trading.key_command_timeout.
 * Returns the number of bytes read (KEY_OUTPUT_MAX + 1 when there were
 * more), or -1 with keyring->load_error set.
 */
static ssize_t
run_key_command(void)
{
	int			fds[2];
	pid_t		pid;
	ssize_t		got = 0;
	int			status;
	bool		timed_out = false;
	TimestampTz deadline;

	if (pipe(fds) != 0)
	{
		snprintf(keyring->load_error, sizeof(keyring->load_error),
				 "trading.key_command could not be started: %m.");
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		close(fds[0]);
		close(fds[1]);
		snprintf(keyring->load_error, sizeof(keyring->load_error),
				 "trading.key_command could not be started: %m.");
		return -1;
	}
	if (pid == 0)
	{
		sigset_t	none;

		/* the child: its own process group, default signals, stdout = pipe */
		(void) setpgid(0, 0);
		sigemptyset(&none);
		(void) sigprocmask(SIG_SETMASK, &none, NULL);
		(void) signal(SIGPIPE, SIG_DFL);
		close(fds[0]);
		if (fds[1] != STDOUT_FILENO)
		{
			(void) dup2(fds[1], STDOUT_FILENO);
			close(fds[1]);
		}
		execl("/bin/sh", "sh", "-c", crypto_key_command, (char *) NULL);
		_exit(127);
	}
	(void) setpgid(pid, pid);
	close(fds[1]);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   crypto_key_command_timeout * 1000);
	for (;;)
	{
		struct pollfd pfd = {.fd = fds[0],.events = POLLIN};
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														   deadline);
		ssize_t		r;
		int			rc;

		if (left <= 0)
		{
			timed_out = true;
			break;
		}
		rc = poll(&pfd, 1, (int) Min(left, 1000));
		if (rc < 0 && errno != EINTR)
			break;
		if (rc <= 0)
			continue;
		r = read(fds[0], keyring->output + got, KEY_OUTPUT_MAX + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;				/* end of output (or a read error) */
		got += r;
		if (got > KEY_OUTPUT_MAX)
			break;				/* too long: the check below says so */
	}
	close(fds[0]);

	/* wait for it, but not beyond the deadline */
	for (bool killed = false;;)
	{
		pid_t		w;

		if (!killed && (timed_out || got > KEY_OUTPUT_MAX ||
						TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														deadline) <= 0))
		{
			timed_out = got <= KEY_OUTPUT_MAX;
			(void) kill(-pid, SIGKILL);
			(void) kill(pid, SIGKILL);
			killed = true;
		}
		w = waitpid(pid, &status, killed ? 0 : WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
		{
			status = -1;
			break;
		}
		if (w == 0)
			pg_usleep(10000L);
	}
	if (timed_out)
	{
		tenv_wipe(keyring->output, sizeof(keyring->output));
		snprintf(keyring->load_error, sizeof(keyring->load_error),
				 "trading.key_command did not finish within %d s (trading.key_command_timeout) and was killed.",
				 crypto_key_command_timeout);
		return -1;
	}
	if (got > KEY_OUTPUT_MAX)
		return got;
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
	{
		tenv_wipe(keyring->output, sizeof(keyring->output));
		if (status != -1 && WIFEXITED(status))
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "trading.key_command exited with status %d.",
					 WEXITSTATUS(status));
		else if (status != -1 && WIFSIGNALED(status))
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "trading.key_command was terminated by signal %d.",
					 WTERMSIG(status));
		else
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "trading.key_command could not be waited for: %m.");
		return -1;
	}
	return got;
}

/* Load the key versions into the key page (postmaster, once). */
static void
load_keys_into_page(void)
{
	ssize_t		got;
	int			errline;
	const char *errmsg_text;
	int			n;

	if (crypto_key_command == NULL || crypto_key_command[0] == '\0')
	{
		snprintf(keyring->load_error, sizeof(keyring->load_error),
				 "trading.key_command is not set.");
		return;
	}

	got = run_key_command();
	if (got < 0)
	{
		key_load_failed();
		return;
	}
	if (got > KEY_OUTPUT_MAX)
	{
		tenv_wipe(keyring->output, sizeof(keyring->output));
		snprintf(keyring->load_error, sizeof(keyring->load_error),
				 "The output of trading.key_command is longer than %d bytes.",
				 KEY_OUTPUT_MAX);
		key_load_failed();
		return;
	}

	n = tenv_parse_keys(keyring->output, got, keyring->keys, TENV_MAX_KEYS,
						&errline, &errmsg_text);
	tenv_wipe(keyring->output, sizeof(keyring->output));
	if (n < 0)
	{
		tenv_wipe(keyring->keys, sizeof(keyring->keys));
		if (errline > 0)
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "Line %d of the output of trading.key_command: %s.",
					 errline, errmsg_text);
		else
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "The output of trading.key_command is not usable: %s.",
					 errmsg_text);
		key_load_failed();
		return;
	}
	for (int i = 0; i < n; i++)
	{
		if (tenv_key_check_value(keyring->keys[i].key, keyring->kcv[i]) != TENV_OK)
		{
			tenv_wipe(keyring->keys, sizeof(keyring->keys));
			snprintf(keyring->load_error, sizeof(keyring->load_error),
					 "The key check value could not be computed.");
			key_load_failed();
			return;
		}
	}
	keyring->nkeys = n;
	keyring->current = tenv_current_key(keyring->keys, n);
	keyring->loaded = true;
	ereport(LOG,
			(errmsg("trading: loaded %d server key version(s), current version %u",
					n, keyring->keys[keyring->current].version)));
}

static void
load_server_key(void)
{
	keyring_size = TYPEALIGN(getpagesize(), sizeof(CryptoKeyring));
	keyring = locked_page(keyring_size, true, "server key");
	if (keyring == NULL)
	{
		ereport(WARNING,
				(errmsg("trading: could not allocate memory for the server key: %m")));
		return;
	}
	keyring_owner = getpid();
	on_proc_exit(wipe_keyring, (Datum) 0);

	load_keys_into_page();

	/* read-only from now on, for the postmaster and every child it forks */
	if (mprotect(keyring, keyring_size, PROT_READ) != 0)
		ereport(WARNING,
				(errmsg("trading: could not make the server key's memory read-only: %m")));
}

/* ---------------------------------------------------------------------
 * Reporting.
 * ---------------------------------------------------------------------
 */

bool
crypto_server_key_available(void)
{
	return keyring != NULL && keyring->loaded;
}

const char *
crypto_key_load_error(void)
{
	if (keyring == NULL)
		return "The server key memory could not be allocated.";
	return keyring->loaded ? "" : keyring->load_error;
}

static void
report_envelope_error(TenvStatus st)
{
	if (st == TENV_ERR_AUTH)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_DECRYPT_FAILED),
				 errmsg("could not decrypt the value: authentication failed"),
				 errdetail("The key or passphrase is wrong, the associated data differs, or the value was modified or truncated.")));
	if (st == TENV_ERR_TOO_LARGE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt")));
	if (st == TENV_ERR_CRYPTO)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_CRYPTO_FAILURE),
				 errmsg("the cryptographic library failed")));
	ereport(ERROR,
			(errcode(ERRCODE_TRADING_BAD_ENVELOPE),
			 errmsg("value is not a valid encrypted envelope"),
			 errdetail_internal("%s", tenv_detail(st))));
}

static void
require_key(void)
{
	if (!crypto_server_key_available())
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_NO_SERVER_KEY),
				 errmsg("the server key is not loaded"),
				 errdetail("%s", crypto_key_load_error()),
				 errhint("Set trading.key_command to a program that prints the key (see docs/ENCRYPTION.md) and restart the server; the server log shows why loading failed.")));
	trading_check_database();
}

/*
 * Compare the key check value of keyring->keys[i] with the one registered
 * in trading.key_versions (registering it on first use).  Once per
 * backend and version.
 */
static void
check_key_version(int i)
{
	CryptoBackendKeys *bk = backend_keys();
	uint32		version = keyring->keys[i].version;

	if (bk->kcv_state[i] == 0)
	{
		Oid			types[3] = {INT4OID, BYTEAOID, BOOLOID};
		Datum		values[3];
		bytea	   *kcv = palloc(VARHDRSZ + TENV_KCV_LEN);
		bool		isnull;
		Datum		d;
		int			ret;

		SET_VARSIZE(kcv, VARHDRSZ + TENV_KCV_LEN);
		memcpy(VARDATA(kcv), keyring->kcv[i], TENV_KCV_LEN);
		values[0] = Int32GetDatum((int32) version);
		values[1] = PointerGetDatum(kcv);
		values[2] = BoolGetDatum(!RecoveryInProgress() && !XactReadOnly);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute_with_args("SELECT trading._key_version_check($1, $2, $3)",
									3, types, values, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not check the server key: %s",
				 SPI_result_code_string(ret));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
		/* NULL: not registered and cannot register now (read-only) */
		bk->kcv_state[i] = isnull ? 0 : (DatumGetBool(d) ? 1 : -1);
		SPI_finish();
		if (isnull)
			return;
	}
	if (bk->kcv_state[i] < 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_WRONG_SERVER_KEY),
				 errmsg("server key version %u does not match its key check value", version),
				 errdetail("trading.key_command printed a different key for version %u than the one registered in trading.key_versions; values encrypted under that version cannot be decrypted with it.",
						   version),
				 errhint("Restore the right key in the key command's source and restart the server.")));
}

static int
key_index(uint32 version)
{
	for (int i = 0; i < keyring->nkeys; i++)
		if (keyring->keys[i].version == version)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_TRADING_UNKNOWN_KEY_VERSION),
			 errmsg("server key version %u is not loaded", version),
			 errdetail("The value was encrypted under key version %u; the key command printed %d other version(s).",
					   version, keyring->nkeys),
			 errhint("The key command must print every key version still in use, one \"version:hex\" line each.")));
	return -1;					/* not reached */
}

uint32
crypto_current_key_version(void)
{
	require_key();
	return keyring->keys[keyring->current].version;
}

int
crypto_loaded_keys(uint32 *versions, unsigned char (*kcvs)[16], int max,
				   int *current_index)
{
	int			n = 0;

	*current_index = -1;
	if (!crypto_server_key_available())
		return 0;
	for (int i = 0; i < keyring->nkeys && n < max; i++, n++)
	{
		versions[n] = keyring->keys[i].version;
		memcpy(kcvs[n], keyring->kcv[i], TENV_KCV_LEN);
		if (i == keyring->current)
			*current_index = n;
	}
	return n;
}

/* ---------------------------------------------------------------------
 * Sealing and opening.
 * ---------------------------------------------------------------------
 */

/*
 * palloc for values that may be large.  A fresh multi-megabyte chunk is
 * new mmap()ed memory whose first write faults once per 4 kB page, which
 * costs more than AES-GCM itself; asking for transparent huge pages on its
 * interior (THP "madvise" mode) makes that one fault per 2 MB.  Advisory:
 * failures are ignored.
 */
#define CRYPTO_HUGE_THRESHOLD	(4 * 1024 * 1024)
#define CRYPTO_HUGE_PAGE		(2 * 1024 * 1024)

static void *
alloc_value(Size size)
{
	char	   *p = palloc(size);

#ifdef MADV_HUGEPAGE
	if (size >= CRYPTO_HUGE_THRESHOLD)
	{
		uintptr_t	start = TYPEALIGN(CRYPTO_HUGE_PAGE, (uintptr_t) p);
		uintptr_t	end = TYPEALIGN_DOWN(CRYPTO_HUGE_PAGE, (uintptr_t) p + size);

		if (end > start)
			(void) madvise((void *) start, end - start, MADV_HUGEPAGE);
	}
#endif
	return p;
}

static bytea *
alloc_envelope(Size len)
{
	bytea	   *out;

	if (len > MaxAllocSize - VARHDRSZ - TENV_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt"),
				 errdetail("The value has %zu bytes; an encrypted value must stay below 1 GB.",
						   (size_t) len)));
	out = alloc_value(VARHDRSZ + len + TENV_OVERHEAD);
	SET_VARSIZE(out, VARHDRSZ + len + TENV_OVERHEAD);
	return out;
}

/* Derive sk's subkey from key version ki and salt. */
static void
set_subkey(CryptoSubkey *sk, int ki, const unsigned char *salt)
{
	sk->valid = false;
	memcpy(sk->salt, salt, TENV_SALT_LEN);
	if (tenv_derive_subkey(keyring->keys[ki].key, sk->salt, sk->key) != TENV_OK)
		report_envelope_error(TENV_ERR_CRYPTO);
	sk->version = keyring->keys[ki].version;
	sk->valid = true;
}

static bytea *
server_seal(const char *data, Size len, const char *aad, Size aadlen,
			bool fresh)
{
	CryptoBackendKeys *bk;
	const TenvKey *k;
	CryptoSubkey *sk;
	bytea	   *out;
	unsigned char *env;
	TenvStatus	st;

	require_key();
	k = &keyring->keys[keyring->current];
	check_key_version(keyring->current);
	bk = backend_keys();
	out = alloc_envelope(len);
	env = (unsigned char *) VARDATA(out);

	if (fresh)
	{
		st = tenv_write_header(env, TENV_MODE_SERVER_KEY, k->version,
							   aadlen > 0, NULL);
		if (st == TENV_OK)
			st = tenv_derive_subkey(k->key, env + 12, bk->scratch);
		if (st == TENV_OK)
			st = tenv_seal(bk->scratch, env, (const unsigned char *) data, len,
						   (const unsigned char *) aad, aadlen);
		tenv_wipe(bk->scratch, sizeof(bk->scratch));
	}
	else
	{
		sk = &bk->enc;
		if (!sk->valid || sk->version != k->version ||
			bk->enc_uses >= CRYPTO_SUBKEY_MAX_USES)
		{
			unsigned char salt[TENV_SALT_LEN];

			if (!tenv_random(salt, TENV_SALT_LEN))
				report_envelope_error(TENV_ERR_CRYPTO);
			set_subkey(sk, keyring->current, salt);
			bk->enc_uses = 0;
		}
		bk->enc_uses++;
		st = tenv_write_header(env, TENV_MODE_SERVER_KEY, k->version,
							   aadlen > 0, sk->salt);
		if (st == TENV_OK)
			st = tenv_seal(sk->key, env, (const unsigned char *) data,
						   len, (const unsigned char *) aad, aadlen);
	}
	if (st != TENV_OK)
		report_envelope_error(st);
	return out;
}

bytea *
crypto_encrypt_with_server_key(const char *data, Size len,
							   const char *aad, Size aadlen)
{
	return server_seal(data, len, aad, aadlen, false);
}

bytea *
crypto_encrypt_server_fresh(const char *data, Size len,
							const char *aad, Size aadlen)
{
	return server_seal(data, len, aad, aadlen, true);
}

/* Parse an envelope and check that it suits mode and the aad given. */
static void
parse_for(const bytea *envelope, int mode, Size aadlen, TenvHeader *h)
{
	TenvStatus	st = tenv_parse((const unsigned char *) VARDATA_ANY(envelope),
								VARSIZE_ANY_EXHDR(envelope), h);

	if (st != TENV_OK)
		report_envelope_error(st);
	if (h->mode != mode)
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_WRONG_KEY_MODE),
				 errmsg(h->mode == TENV_MODE_PASSPHRASE
						? "value was encrypted with a passphrase, not the server key"
						: "value was encrypted with the server key, not a passphrase"),
				 errhint(h->mode == TENV_MODE_PASSPHRASE
						 ? "Use trading.decrypt(data, passphrase)."
						 : "Use trading.decrypt(data) or trading.decrypt(data, aad); only trading_admin may.")));
	if (((h->flags & TENV_FLAG_AAD) != 0) != (aadlen > 0))
		ereport(ERROR,
				(errcode(ERRCODE_TRADING_DECRYPT_FAILED),
				 errmsg("could not decrypt the value: authentication failed"),
				 errdetail(aadlen > 0
						   ? "The value was encrypted without associated data, but associated data was given."
						   : "The value is bound to associated data, which must be given to decrypt it.")));
}

/*
 * Open with key.  The result is a NUL-terminated palloc'd plaintext, or
 * with as_bytea a bytea (the SQL functions return it without another copy).
 */
static char *
open_with(const unsigned char *key, const bytea *envelope, const TenvHeader *h,
		  const char *aad, Size aadlen, Size *len, bool as_bytea)
{
	Size		hdr = as_bytea ? VARHDRSZ : 0;
	char	   *chunk = alloc_value(hdr + h->ciphertext_len + 1);
	char	   *out = chunk + hdr;
	const unsigned char *env = (const unsigned char *) VARDATA_ANY(envelope);
	TenvStatus	st;

	st = tenv_open(key, env, h, (const unsigned char *) aad, aadlen,
				   (unsigned char *) out);
	if (st != TENV_OK)
	{
		pfree(chunk);
		report_envelope_error(st);
	}
	out[h->ciphertext_len] = '\0';
	*len = h->ciphertext_len;
	if (as_bytea)
		SET_VARSIZE(chunk, VARHDRSZ + h->ciphertext_len);
	return chunk;
}

static char *
server_open(const bytea *envelope, const char *aad, Size aadlen, Size *len,
			bool as_bytea)
{
	TenvHeader	h;
	CryptoBackendKeys *bk;
	CryptoSubkey *sk = NULL;
	int			ki;

	if (envelope == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be null")));
	parse_for(envelope, TENV_MODE_SERVER_KEY, aadlen, &h);
	require_key();
	ki = key_index(h.param);
	check_key_version(ki);
	bk = backend_keys();

	if (bk->enc.valid && bk->enc.version == h.param &&
		memcmp(bk->enc.salt, h.salt, TENV_SALT_LEN) == 0)
		sk = &bk->enc;
	for (int i = 0; sk == NULL && i < CRYPTO_DEC_CACHE; i++)
		if (bk->dec[i].valid && bk->dec[i].version == h.param &&
			memcmp(bk->dec[i].salt, h.salt, TENV_SALT_LEN) == 0)
			sk = &bk->dec[i];
	if (sk == NULL)
	{
		sk = &bk->dec[bk->dec_next];
		bk->dec_next = (bk->dec_next + 1) % CRYPTO_DEC_CACHE;
		set_subkey(sk, ki, h.salt);
	}
	return open_with(sk->key, envelope, &h, aad, aadlen, len, as_bytea);
}

char *
crypto_decrypt_with_server_key(const bytea *envelope, const char *aad,
							   Size aadlen, Size *len)
{
	return server_open(envelope, aad, aadlen, len, false);
}

bytea *
crypto_decrypt_server_bytea(const bytea *envelope, const char *aad,
							Size aadlen)
{
	Size		len;

	return (bytea *) server_open(envelope, aad, aadlen, &len, true);
}

bytea *
crypto_encrypt_passphrase(const char *data, Size len,
						  const char *pass, Size passlen,
						  const char *aad, Size aadlen, int iterations)
{
	CryptoBackendKeys *bk = backend_keys();
	bytea	   *out = alloc_envelope(len);
	unsigned char *env = (unsigned char *) VARDATA(out);
	TenvStatus	st;

	st = tenv_write_header(env, TENV_MODE_PASSPHRASE,
						   (uint32) iterations, aadlen > 0, NULL);
	if (st == TENV_OK)
		st = tenv_derive_passphrase(pass, passlen, env + 12,
									(uint32) iterations, bk->scratch);
	if (st == TENV_OK)
		st = tenv_seal(bk->scratch, env, (const unsigned char *) data, len,
					   (const unsigned char *) aad, aadlen);
	tenv_wipe(bk->scratch, sizeof(bk->scratch));
	if (st != TENV_OK)
		report_envelope_error(st);
	return out;
}

bytea *
crypto_decrypt_passphrase(const bytea *envelope, const char *pass,
						  Size passlen, const char *aad, Size aadlen)
{
	Size		len;
	CryptoBackendKeys *bk = backend_keys();
	TenvHeader	h;
	TenvStatus	st;
	char	   *out;

	parse_for(envelope, TENV_MODE_PASSPHRASE, aadlen, &h);
	st = tenv_derive_passphrase(pass, passlen, h.salt, h.param, bk->scratch);
	if (st != TENV_OK)
	{
		tenv_wipe(bk->scratch, sizeof(bk->scratch));
		report_envelope_error(st);
	}
	PG_TRY();
	{
		out = open_with(bk->scratch, envelope, &h, aad, aadlen, &len, true);
	}
	PG_FINALLY();
	{
		tenv_wipe(bk->scratch, sizeof(bk->scratch));
	}
	PG_END_TRY();
	return (bytea *) out;
}

/*
 * trading-crypt: encrypt and decrypt trading envelopes without a database,
 * e.g. an archive written by trading.archive_export after the database is
 * gone.  Same format and same code as the extension
 * (../extension/crypto_envelope.c); docs/ENCRYPTION.md describes both.
 *
 *   trading-crypt decrypt (--key-command CMD | --passphrase-file FILE |
 *                          --passphrase-env VAR)
 *                         [--aad TEXT | --aad-hex HEX | --archive NAME]
 *                         [-o OUTPUT] [INPUT]
 *   trading-crypt encrypt (same key options) [--iterations N] [...]
 *   trading-crypt info [INPUT]
 *
 * INPUT defaults to standard input, OUTPUT to standard output.  Decryption
 * authenticates the whole input before writing a single byte, so a
 * truncated or modified file never yields partial plaintext.  Passphrases
 * are never taken from the command line (other users can read it with ps).
 * Exit status: 0 success, 1 usage, 2 cannot decrypt (wrong key or
 * passphrase, tampered or malformed input), 3 I/O or key command failure.
 */
#include "crypto_envelope.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_USAGE	1
#define EXIT_CRYPT	2
#define EXIT_IO		3

static const char *progname = "trading-crypt";

typedef struct Secrets
{
	TenvKey		keys[TENV_MAX_KEYS];
	int			nkeys;
	char		pass[1025];
	size_t		passlen;
	unsigned char derived[TENV_KEY_LEN];
	char		output[4097];
} Secrets;

static Secrets *secrets;

static void
wipe_secrets(void)
{
	if (secrets)
		tenv_wipe(secrets, sizeof(*secrets));
}

static void
fail(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", progname);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	wipe_secrets();
	exit(code);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: %s decrypt|encrypt KEY [--aad TEXT | --aad-hex HEX | --archive NAME]\n"
			"                    [--iterations N] [-o OUTPUT] [INPUT]\n"
			"       %s info [INPUT]\n"
			"KEY is one of:\n"
			"  --key-command CMD       run CMD (e.g. trading-getkey-file FILE) for the server key(s)\n"
			"  --passphrase-file FILE  the first line of FILE is the passphrase\n"
			"  --passphrase-env VAR    the environment variable VAR holds the passphrase\n"
			"--archive NAME decrypts a file written by trading.archive_export(NAME, ...).\n",
			progname, progname);
	exit(EXIT_USAGE);
}

/* Read all of fp into a malloc'd buffer. */
static unsigned char *
read_all(FILE *fp, size_t *len)
{
	size_t		cap = 1 << 16,
				n = 0;
	unsigned char *buf = malloc(cap);

	if (buf == NULL)
		fail(EXIT_IO, "%s", "out of memory");
	for (;;)
	{
		size_t		r;

		if (n == cap)
		{
			unsigned char *nb;

			cap *= 2;
			nb = realloc(buf, cap);
			if (nb == NULL)
				fail(EXIT_IO, "%s", "out of memory");
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, fp);
		if (r == 0)
			break;
		n += r;
	}
	if (ferror(fp))
		fail(EXIT_IO, "could not read input: %s", strerror(errno));
	*len = n;
	return buf;
}

/* Read fd into secrets->output (at most its size - 1 bytes) with read(2). */
static size_t
read_secret(int fd)
{
	size_t		got = 0;

	while (got < sizeof(secrets->output) - 1)
	{
		ssize_t		r = read(fd, secrets->output + got,
							 sizeof(secrets->output) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t) r;
	}
	return got;
}

static void
load_key_command(const char *cmd)
{
	FILE	   *fp = popen(cmd, "r");
	size_t		got = 0;
	int			status,
				errline;
	const char *msg;

	if (fp == NULL)
		fail(EXIT_IO, "could not run the key command: %s", strerror(errno));
	/* read(2), not fread: no stdio buffer may keep a key line */
	got = read_secret(fileno(fp));
	status = pclose(fp);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail(EXIT_IO, "%s", "the key command failed");
	secrets->nkeys = tenv_parse_keys(secrets->output, got, secrets->keys,
									 TENV_MAX_KEYS, &errline, &msg);
	tenv_wipe(secrets->output, sizeof(secrets->output));
	if (secrets->nkeys < 0)
	{
		fprintf(stderr, "%s: line %d of the key command's output: %s\n",
				progname, errline, msg);
		wipe_secrets();
		exit(EXIT_IO);
	}
}

static void
set_passphrase(const char *p, size_t len)
{
	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	if (len == 0)
		fail(EXIT_USAGE, "%s", "the passphrase is empty");
	if (len >= sizeof(secrets->pass))
		fail(EXIT_USAGE, "%s", "the passphrase is longer than 1024 bytes");
	memcpy(secrets->pass, p, len);
	secrets->passlen = len;
}

static void
load_passphrase_file(const char *path)
{
	int			fd = open(path, O_RDONLY);
	size_t		got;
	size_t		len;

	if (fd < 0)
		fail(EXIT_IO, "could not open the passphrase file: %s", strerror(errno));
	/* read(2) into the secrets page, not through a stdio buffer */
	got = read_secret(fd);
	close(fd);
	secrets->output[got] = '\0';
	if (got == 0)
		fail(EXIT_USAGE, "%s", "the passphrase file is empty");
	len = strcspn(secrets->output, "\n");
	set_passphrase(secrets->output, len);
	tenv_wipe(secrets->output, sizeof(secrets->output));
}

static unsigned char *
parse_hex(const char *hex, size_t *len)
{
	size_t		n = strlen(hex);
	unsigned char *out = malloc(n / 2 + 1);

	if (out == NULL)
		fail(EXIT_IO, "%s", "out of memory");
	if (!tenv_hex_decode(hex, n, out))
		fail(EXIT_USAGE, "%s", "--aad-hex needs an even number of hexadecimal digits");
	*len = n / 2;
	return out;
}

static void
write_output(const char *path, const unsigned char *data, size_t len)
{
	FILE	   *fp = stdout;

	if (path)
	{
		int			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || (fp = fdopen(fd, "w")) == NULL)
			fail(EXIT_IO, "could not create the output file: %s", strerror(errno));
	}
	if (len > 0 && fwrite(data, 1, len, fp) != len)
		fail(EXIT_IO, "could not write the output: %s", strerror(errno));
	if (fflush(fp) != 0 || (path && fclose(fp) != 0))
		fail(EXIT_IO, "could not write the output: %s", strerror(errno));
}

static const TenvKey *
find_key(uint32_t version)
{
	for (int i = 0; i < secrets->nkeys; i++)
		if (secrets->keys[i].version == version)
			return &secrets->keys[i];
	fprintf(stderr, "%s: the input was encrypted under server key version %u, which the key command did not print\n",
			progname, version);
	wipe_secrets();
	exit(EXIT_CRYPT);
}

static void
crypt_error(TenvStatus st)
{
	fail(st == TENV_ERR_CRYPTO || st == TENV_ERR_TOO_LARGE ? EXIT_IO : EXIT_CRYPT,
		 "%s", tenv_strerror(st));
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"key-command", required_argument, NULL, 'k'},
		{"passphrase-file", required_argument, NULL, 'f'},
		{"passphrase-env", required_argument, NULL, 'e'},
		{"aad", required_argument, NULL, 'a'},
		{"aad-hex", required_argument, NULL, 'x'},
		{"archive", required_argument, NULL, 'A'},
		{"iterations", required_argument, NULL, 'i'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *cmd;
	const char *output = NULL;
	const char *keycmd = NULL;
	unsigned char *aad = NULL;
	size_t		aadlen = 0;
	long		iterations = TENV_DEFAULT_ITERATIONS;
	int			keysources = 0;
	int			c;
	FILE	   *in = stdin;
	unsigned char *data;
	size_t		len;
	TenvHeader	h;
	TenvStatus	st;

	if (argc < 2)
		usage();
	cmd = argv[1];
	if (strcmp(cmd, "encrypt") != 0 && strcmp(cmd, "decrypt") != 0 &&
		strcmp(cmd, "info") != 0)
		usage();

	secrets = mmap(NULL, sizeof(Secrets), PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (secrets == MAP_FAILED)
		fail(EXIT_IO, "%s", "out of memory");
	(void) mlock(secrets, sizeof(Secrets));
	memset(secrets, 0, sizeof(Secrets));

	optind = 2;
	while ((c = getopt_long(argc, argv, "k:o:h", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'k':
				keycmd = optarg;
				keysources++;
				break;
			case 'f':
				load_passphrase_file(optarg);
				keysources++;
				break;
			case 'e':
				{
					const char *v = getenv(optarg);

					if (v == NULL)
						fail(EXIT_USAGE, "environment variable %s is not set", optarg);
					set_passphrase(v, strlen(v));
					keysources++;
					break;
				}
			case 'a':
				aad = (unsigned char *) strdup(optarg);
				aadlen = strlen(optarg);
				break;
			case 'x':
				aad = parse_hex(optarg, &aadlen);
				break;
			case 'A':
				{
					size_t		n = strlen("trading.archive:") + strlen(optarg);

					aad = malloc(n + 1);
					if (aad == NULL)
						fail(EXIT_IO, "%s", "out of memory");
					snprintf((char *) aad, n + 1, "trading.archive:%s", optarg);
					aadlen = n;
					break;
				}
			case 'i':
				iterations = strtol(optarg, NULL, 10);
				if (iterations < TENV_MIN_ITERATIONS || iterations > TENV_MAX_ITERATIONS)
					fail(EXIT_USAGE, "%s", "--iterations must be between 100000 and 10000000");
				break;
			case 'o':
				output = optarg;
				break;
			default:
				usage();
		}
	}
	if (optind < argc - 1)
		usage();
	if (optind == argc - 1 && (in = fopen(argv[optind], "rb")) == NULL)
		fail(EXIT_IO, "could not open the input: %s", strerror(errno));
	if (strcmp(cmd, "info") != 0 && keysources != 1)
		fail(EXIT_USAGE, "%s", "give exactly one of --key-command, --passphrase-file, --passphrase-env");
	if (keycmd)
		load_key_command(keycmd);

	data = read_all(in, &len);

	if (strcmp(cmd, "info") == 0)
	{
		if ((st = tenv_parse(data, len, &h)) != TENV_OK)
			crypt_error(st);
		printf("format_version: %d\nmode: %s\n%s: %u\naad_bound: %s\nplaintext_bytes: %zu\n",
			   h.format_version,
			   h.mode == TENV_MODE_SERVER_KEY ? "server_key" : "passphrase",
			   h.mode == TENV_MODE_SERVER_KEY ? "key_version" : "iterations",
			   h.param, (h.flags & TENV_FLAG_AAD) ? "yes" : "no",
			   h.ciphertext_len);
		return 0;
	}

	if (strcmp(cmd, "decrypt") == 0)
	{
		unsigned char *out;

		if ((st = tenv_parse(data, len, &h)) != TENV_OK)
			crypt_error(st);
		if ((h.mode == TENV_MODE_SERVER_KEY) != (keycmd != NULL))
			fail(EXIT_CRYPT, "the input was encrypted with %s",
				 h.mode == TENV_MODE_SERVER_KEY ? "the server key: use --key-command"
				 : "a passphrase: use --passphrase-file or --passphrase-env");
		if (((h.flags & TENV_FLAG_AAD) != 0) != (aadlen > 0))
			fail(EXIT_CRYPT, "%s", (h.flags & TENV_FLAG_AAD)
				 ? "the input is bound to associated data: give --aad, --aad-hex or --archive"
				 : "the input has no associated data, but some was given");
		if (keycmd)
			st = tenv_derive_subkey(find_key(h.param)->key, h.salt, secrets->derived);
		else
			st = tenv_derive_passphrase(secrets->pass, secrets->passlen, h.salt,
										h.param, secrets->derived);
		if (st != TENV_OK)
			crypt_error(st);
		out = malloc(h.ciphertext_len + 1);
		if (out == NULL)
			fail(EXIT_IO, "%s", "out of memory");
		st = tenv_open(secrets->derived, data, &h, aad, aadlen, out);
		wipe_secrets();
		if (st != TENV_OK)
			crypt_error(st);
		write_output(output, out, h.ciphertext_len);
		tenv_wipe(out, h.ciphertext_len);
		return 0;
	}

	/* encrypt */
	{
		unsigned char *env = malloc(len + TENV_OVERHEAD);
		int			mode = keycmd ? TENV_MODE_SERVER_KEY : TENV_MODE_PASSPHRASE;
		const TenvKey *k = keycmd ? &secrets->keys[tenv_current_key(secrets->keys, secrets->nkeys)] : NULL;

		if (env == NULL)
			fail(EXIT_IO, "%s", "out of memory");
		st = tenv_write_header(env, mode, k ? k->version : (uint32_t) iterations,
							   aadlen > 0, NULL);
		if (st == TENV_OK)
			st = k ? tenv_derive_subkey(k->key, env + 12, secrets->derived)
				: tenv_derive_passphrase(secrets->pass, secrets->passlen, env + 12,
										 (uint32_t) iterations, secrets->derived);
		if (st == TENV_OK)
			st = tenv_seal(secrets->derived, env, data, len, aad, aadlen);
		wipe_secrets();
		tenv_wipe(data, len);
		if (st != TENV_OK)
			crypt_error(st);
		write_output(output, env, len + TENV_OVERHEAD);
	}
	return 0;
}

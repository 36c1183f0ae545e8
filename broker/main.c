/*
 * main.c - entry point of the paper broker: command-line configuration,
 * global state, start-up (instruments, HTTP and admin daemons, price
 * ticker) and clean shutdown on SIGTERM/SIGINT.
 *
 * Run `paper-broker --help` for the options; docs/PAPER_BROKER.md has the
 * full description.
 */
#include "broker.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PB_SHAREDIR
#define PB_SHAREDIR "/usr/local/share"
#endif

config		g_cfg;
faults		g_faults;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
FILE	   *g_log;
pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_line(const char *fmt,...)
{
	va_list		ap;

	if (!g_log)
		return;
	pthread_mutex_lock(&g_log_lock);
	va_start(ap, fmt);
	vfprintf(g_log, fmt, ap);
	va_end(ap);
	fflush(g_log);
	pthread_mutex_unlock(&g_log_lock);
}

void
broker_reset_all(void)
{
	orders_reset();
	portfolio_reset();
	market_reset();
	auth_reset();
	ratelimit_reset();
	stats_reset();
	g_faults = g_cfg.faults;
	faults_reset();
}

enum
{
	O_BIND = 1000, O_PORT, O_ADMIN_BIND, O_ADMIN_PORT, O_PORT_FILE, O_ADMIN_PORT_FILE,
	O_API_KEY, O_API_SECRET, O_ACCESS_TOKEN, O_REQUEST_TOKEN, O_USER_ID,
	O_TOKEN_EXPIRES_AT, O_TOKEN_TTL, O_SEED, O_INSTRUMENTS, O_TICK_MS, O_VOLATILITY,
	O_CASH, O_COMMODITY_CASH, O_MIS_MARGIN, O_HOLDING, O_TLS_CERT, O_TLS_KEY,
	O_RATE_QUOTE, O_RATE_OTHER, O_RATE_ORDERS, O_RATE_ORDERS_MIN, O_RATE_ORDERS_DAY,
	O_RATE_HISTORICAL, O_HIST_MAX_DAYS, O_SYNTHETIC,
	O_NO_RATE_LIMIT, O_MAX_MODS, O_FAULT, O_LOG, O_QUIET, O_THREADS, O_IDLE_TIMEOUT,
	O_REQUIRE_VERSION, O_HELP, O_VERSION, O_WS, O_ADMIN_TOKEN
};

/* fault flags are handed to faults_set() under their own name */
static const struct option long_opts[] = {
	{"bind", required_argument, NULL, O_BIND},
	{"port", required_argument, NULL, O_PORT},
	{"admin-bind", required_argument, NULL, O_ADMIN_BIND},
	{"admin-port", required_argument, NULL, O_ADMIN_PORT},
	{"port-file", required_argument, NULL, O_PORT_FILE},
	{"admin-port-file", required_argument, NULL, O_ADMIN_PORT_FILE},
	{"api-key", required_argument, NULL, O_API_KEY},
	{"api-secret", required_argument, NULL, O_API_SECRET},
	{"access-token", required_argument, NULL, O_ACCESS_TOKEN},
	{"request-token", required_argument, NULL, O_REQUEST_TOKEN},
	{"user-id", required_argument, NULL, O_USER_ID},
	{"token-expires-at", required_argument, NULL, O_TOKEN_EXPIRES_AT},
	{"token-ttl", required_argument, NULL, O_TOKEN_TTL},
	{"seed", required_argument, NULL, O_SEED},
	{"admin-token", required_argument, NULL, O_ADMIN_TOKEN},
	{"instruments", required_argument, NULL, O_INSTRUMENTS},
	{"tick-ms", required_argument, NULL, O_TICK_MS},
	{"volatility", required_argument, NULL, O_VOLATILITY},
	{"cash", required_argument, NULL, O_CASH},
	{"commodity-cash", required_argument, NULL, O_COMMODITY_CASH},
	{"mis-margin", required_argument, NULL, O_MIS_MARGIN},
	{"holding", required_argument, NULL, O_HOLDING},
	{"tls-cert", required_argument, NULL, O_TLS_CERT},
	{"tls-key", required_argument, NULL, O_TLS_KEY},
	{"rate-quote", required_argument, NULL, O_RATE_QUOTE},
	{"rate-other", required_argument, NULL, O_RATE_OTHER},
	{"rate-orders", required_argument, NULL, O_RATE_ORDERS},
	{"rate-orders-min", required_argument, NULL, O_RATE_ORDERS_MIN},
	{"rate-orders-day", required_argument, NULL, O_RATE_ORDERS_DAY},
	{"rate-historical", required_argument, NULL, O_RATE_HISTORICAL},
	{"historical-max-days", required_argument, NULL, O_HIST_MAX_DAYS},
	{"synthetic-instruments", required_argument, NULL, O_SYNTHETIC},
	{"no-rate-limit", no_argument, NULL, O_NO_RATE_LIMIT},
	{"max-modifications", required_argument, NULL, O_MAX_MODS},
	{"latency-ms", required_argument, NULL, O_FAULT},
	{"latency-jitter-ms", required_argument, NULL, O_FAULT},
	{"fail-rate", required_argument, NULL, O_FAULT},
	{"fail-codes", required_argument, NULL, O_FAULT},
	{"rate429", required_argument, NULL, O_FAULT},
	{"error200-rate", required_argument, NULL, O_FAULT},
	{"html-rate", required_argument, NULL, O_FAULT},
	{"html-status", required_argument, NULL, O_FAULT},
	{"truncate-rate", required_argument, NULL, O_FAULT},
	{"malformed-rate", required_argument, NULL, O_FAULT},
	{"drop-rate", required_argument, NULL, O_FAULT},
	{"expire-token-after", required_argument, NULL, O_FAULT},
	{"fault-classes", required_argument, NULL, O_FAULT},
	{"accept-drop-rate", required_argument, NULL, O_FAULT},
	{"accept-late-rate", required_argument, NULL, O_FAULT},
	{"accept-late-ms", required_argument, NULL, O_FAULT},
	{"margin-exception", required_argument, NULL, O_FAULT},
	{"require-market-protection", required_argument, NULL, O_FAULT},
	{"log", required_argument, NULL, O_LOG},
	{"quiet", no_argument, NULL, O_QUIET},
	{"threads", required_argument, NULL, O_THREADS},
	{"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
	{"require-version", no_argument, NULL, O_REQUIRE_VERSION},
	{"ws-port", required_argument, NULL, O_WS},
	{"ws-port-file", required_argument, NULL, O_WS},
	{"ws-tick-ms", required_argument, NULL, O_WS},
	{"ws-heartbeat-ms", required_argument, NULL, O_WS},
	{"ws-max-connections", required_argument, NULL, O_WS},
	{"ws-max-tokens", required_argument, NULL, O_WS},
	{"ws-max-queue-kb", required_argument, NULL, O_WS},
	{"ws-stall", required_argument, NULL, O_WS},
	{"ws-stall-pongs", required_argument, NULL, O_WS},
	{"ws-close", required_argument, NULL, O_WS},
	{"ws-malformed", required_argument, NULL, O_WS},
	{"ws-truncate", required_argument, NULL, O_WS},
	{"ws-refuse", required_argument, NULL, O_WS},
	{"ws-slow", required_argument, NULL, O_WS},
	{"help", no_argument, NULL, O_HELP},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0}
};

static void
usage(FILE *f)
{
	fprintf(f,
			"paper-broker: a Kite Connect v3 paper-trading broker\n"
			"\n"
			"Network:\n"
			"  --bind ADDR              API address (127.0.0.1)\n"
			"  --port N                 API port (8765; 0 = pick a free one)\n"
			"  --admin-bind ADDR        admin address (127.0.0.1)\n"
			"  --admin-port N           admin port (8766; 0 = pick; -1 = no admin)\n"
			"  --port-file F            write the API port to F once listening\n"
			"  --admin-port-file F      write the admin port to F\n"
			"  --tls-cert F --tls-key F serve HTTPS with this PEM certificate/key\n"
			"  --threads N              0 = a thread per connection (default), N = pool\n"
			"  --idle-timeout S         close idle keep-alive connections after S s (60)\n"
			"Session:\n"
			"  --api-key K              (paper_api_key)\n"
			"  --api-secret S           checksum secret (paper_api_secret)\n"
			"  --access-token T         pre-seeded valid token (paper_access_token; '' = none)\n"
			"  --request-token R        a fixed, reusable request_token for login\n"
			"  --user-id U              (PB0001)\n"
			"  --token-expires-at T     tokens expire at T ('yyyy-mm-dd hh:mm:ss' IST or epoch)\n"
			"  --token-ttl S            tokens expire S seconds after issue\n"
			"  --require-version        reject requests without X-Kite-Version: 3\n"
			"  --admin-token T          admin requests must send X-Admin-Token: T\n"
			"Market:\n"
			"  --instruments F          instruments CSV (tree or installed copy)\n"
			"  --seed N                 random-walk seed (1); also makes minted access\n"
			"                           tokens reproducible (else they are random)\n"
			"  --tick-ms N              price tick period (250; 0 = only /admin/tick)\n"
			"  --volatility F           std-dev of the log price step per tick (0.0005)\n"
			"  --cash F                 equity cash (1000000)\n"
			"  --commodity-cash F       commodity cash (100000)\n"
			"  --mis-margin F           fraction blocked for MIS (0.2)\n"
			"  --holding EX:SYM:QTY:AVG opening holding (repeatable)\n"
			"  --max-modifications N    per order (25)\n"
			"Rate limits (0 = unlimited):\n"
			"  --rate-quote N (1/s)  --rate-other N (10/s)  --rate-orders N (10/s)\n"
			"  --rate-orders-min N (200)  --rate-orders-day N (3000)  --no-rate-limit\n"
			"  --rate-historical N (3/s)\n"
			"  --historical-max-days minute=60,3minute=100,...  largest range per request\n"
			"  --synthetic-instruments N  add N generated instruments (load tests)\n"
			"Faults (rates are probabilities in [0,1]):\n"
			"  --latency-ms N  --latency-jitter-ms N  --fail-rate R  --fail-codes 500,502,503,504\n"
			"  --rate429 R  --error200-rate R  --html-rate R  --html-status N (502)\n"
			"  --truncate-rate R  --malformed-rate R  --drop-rate R\n"
			"  --expire-token-after N   tokens expire after N authenticated requests\n"
			"  --accept-drop-rate R     carry the request out, then drop the connection\n"
			"  --accept-late-rate R --accept-late-ms N   carry it out, answer N ms late\n"
			"  --margin-exception 0|1   an order beyond the margin: MarginException (400)\n"
			"  --require-market-protection 0|1   MARKET/SL-M need market_protection != 0\n"
			"  --fault-classes LIST     session,user,portfolio,orders,order_write,quote,\n"
			"                           instruments,unknown or all (all)\n"
			"WebSocket ticker (off unless --ws-port is given):\n"
			"  --ws-port N              ticker port (0 = pick a free one)\n"
			"  --ws-port-file F         write the ticker port to F once listening\n"
			"  --ws-tick-ms N           ticks per instrument every N ms (1000)\n"
			"  --ws-heartbeat-ms N      heartbeat after N ms without a frame (1000)\n"
			"  --ws-max-connections N (3)  --ws-max-tokens N (3000)  --ws-max-queue-kb N (4096)\n"
			"  faults, each armed N times: --ws-stall N  --ws-close N  --ws-malformed N\n"
			"  --ws-truncate N  --ws-refuse N  --ws-slow N  --ws-stall-pongs 0|1 (1)\n"
			"Logging:\n"
			"  --log F                  request log (stderr; '-' = stdout)  --quiet\n");
}

static char *
exe_dir_file(const char *rel)
{
	char		buf[PATH_MAX];
	ssize_t		n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	char	   *slash,
			   *out;

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	out = malloc(strlen(buf) + strlen(rel) + 2);
	sprintf(out, "%s/%s", buf, rel);
	return out;
}

static char *
default_instruments(void)
{
	char	   *p = exe_dir_file("data/instruments.csv");

	if (p && access(p, R_OK) == 0)
		return p;
	free(p);
	return strdup(PB_SHAREDIR "/trading/instruments.csv");
}

static void
defaults(void)
{
	memset(&g_cfg, 0, sizeof(g_cfg));
	g_cfg.bind = "127.0.0.1";
	g_cfg.port = 8765;
	g_cfg.admin_bind = "127.0.0.1";
	g_cfg.admin_port = 8766;
	g_cfg.api_key = "paper_api_key";
	g_cfg.api_secret = "paper_api_secret";
	g_cfg.access_token = "paper_access_token";
	g_cfg.user_id = "PB0001";
	g_cfg.seed = 1;
	g_cfg.tick_ms = 250;
	g_cfg.volatility = 0.0005;
	g_cfg.cash = 1000000;
	g_cfg.commodity_cash = 100000;
	g_cfg.mis_margin = 0.2;
	g_cfg.rl_quote_per_s = 1;
	g_cfg.rl_other_per_s = 10;
	g_cfg.rl_order_per_s = 10;
	g_cfg.rl_order_per_min = 200;
	g_cfg.rl_order_per_day = 3000;
	g_cfg.rl_historical_per_s = 3;
	g_cfg.max_modifications = 25;
	g_cfg.idle_timeout = 60;
	g_cfg.faults.fail_codes[0] = 500;
	g_cfg.faults.fail_codes[1] = 502;
	g_cfg.faults.fail_codes[2] = 503;
	g_cfg.faults.fail_codes[3] = 504;
	g_cfg.faults.nfail_codes = 4;
	g_cfg.faults.html_status = 502;
	g_cfg.faults.class_mask = ~0u;
}

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "paper-broker: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static long
num_arg(const char *name, const char *v, long min)
{
	long		n;

	if (!parse_long(v, &n) || n < min)
		die("--%s: expected an integer >= %ld, got '%s'", name, min, v);
	return n;
}

static double
real_arg(const char *name, const char *v)
{
	double		d;

	if (!parse_double(v, &d) || d < 0)
		die("--%s: expected a non-negative number, got '%s'", name, v);
	return d;
}

#define MAX_HOLDINGS 64

static void
parse_args(int argc, char **argv, char **holdings, int *nholdings)
{
	int			c,
				idx;
	char		err[200];

	while ((c = getopt_long(argc, argv, "h", long_opts, &idx)) != -1)
	{
		const char *name = c >= O_BIND ? long_opts[idx].name : "";

		switch (c)
		{
			case O_BIND:
				g_cfg.bind = optarg;
				break;
			case O_PORT:
				g_cfg.port = num_arg(name, optarg, 0);
				break;
			case O_ADMIN_BIND:
				g_cfg.admin_bind = optarg;
				break;
			case O_ADMIN_PORT:
				g_cfg.admin_port = num_arg(name, optarg, -1);
				break;
			case O_PORT_FILE:
				g_cfg.port_file = optarg;
				break;
			case O_ADMIN_PORT_FILE:
				g_cfg.admin_port_file = optarg;
				break;
			case O_API_KEY:
				g_cfg.api_key = optarg;
				break;
			case O_API_SECRET:
				g_cfg.api_secret = optarg;
				break;
			case O_ACCESS_TOKEN:
				g_cfg.access_token = optarg;
				break;
			case O_REQUEST_TOKEN:
				g_cfg.request_token = optarg;
				break;
			case O_USER_ID:
				g_cfg.user_id = optarg;
				break;
			case O_TOKEN_EXPIRES_AT:
				if (!parse_ist(optarg, &g_cfg.token_expires_at))
					die("--token-expires-at: expected 'yyyy-mm-dd hh:mm:ss' or epoch");
				break;
			case O_TOKEN_TTL:
				g_cfg.token_ttl = num_arg(name, optarg, 1);
				break;
			case O_SEED:
				g_cfg.seed = (uint64_t) strtoull(optarg, NULL, 10);
				g_cfg.seed_given = true;
				break;
			case O_ADMIN_TOKEN:
				g_cfg.admin_token = optarg;
				break;
			case O_INSTRUMENTS:
				g_cfg.instruments = strdup(optarg);
				break;
			case O_TICK_MS:
				g_cfg.tick_ms = num_arg(name, optarg, 0);
				break;
			case O_VOLATILITY:
				g_cfg.volatility = real_arg(name, optarg);
				break;
			case O_CASH:
				g_cfg.cash = real_arg(name, optarg);
				break;
			case O_COMMODITY_CASH:
				g_cfg.commodity_cash = real_arg(name, optarg);
				break;
			case O_MIS_MARGIN:
				g_cfg.mis_margin = real_arg(name, optarg);
				break;
			case O_HOLDING:
				if (*nholdings >= MAX_HOLDINGS)
					die("too many --holding");
				holdings[(*nholdings)++] = optarg;
				break;
			case O_TLS_CERT:
				g_cfg.tls_cert = optarg;
				break;
			case O_TLS_KEY:
				g_cfg.tls_key = optarg;
				break;
			case O_RATE_QUOTE:
				g_cfg.rl_quote_per_s = num_arg(name, optarg, 0);
				break;
			case O_RATE_OTHER:
				g_cfg.rl_other_per_s = num_arg(name, optarg, 0);
				break;
			case O_RATE_ORDERS:
				g_cfg.rl_order_per_s = num_arg(name, optarg, 0);
				break;
			case O_RATE_ORDERS_MIN:
				g_cfg.rl_order_per_min = num_arg(name, optarg, 0);
				break;
			case O_RATE_ORDERS_DAY:
				g_cfg.rl_order_per_day = num_arg(name, optarg, 0);
				break;
			case O_RATE_HISTORICAL:
				g_cfg.rl_historical_per_s = num_arg(name, optarg, 0);
				break;
			case O_HIST_MAX_DAYS:
				if (historical_set_max_days(optarg, err, sizeof(err)) != 0)
					die("--%s: %s", name, err);
				break;
			case O_SYNTHETIC:
				g_cfg.synthetic_instruments = num_arg(name, optarg, 0);
				break;
			case O_NO_RATE_LIMIT:
				g_cfg.rl_historical_per_s = 0;
				g_cfg.rl_quote_per_s = g_cfg.rl_other_per_s = g_cfg.rl_order_per_s = 0;
				g_cfg.rl_order_per_min = g_cfg.rl_order_per_day = 0;
				break;
			case O_MAX_MODS:
				g_cfg.max_modifications = num_arg(name, optarg, 0);
				break;
			case O_FAULT:
				if (faults_set(&g_cfg.faults, name, optarg, err, sizeof(err)) != 0)
					die("--%s: %s", name, err);
				break;
			case O_WS:
				if (ws_option(name + 3, optarg, err, sizeof(err)) != 0)
					die("--%s: %s", name, err);
				break;
			case O_LOG:
				g_cfg.log_path = optarg;
				break;
			case O_QUIET:
				g_cfg.quiet = true;
				break;
			case O_THREADS:
				g_cfg.threads = num_arg(name, optarg, 0);
				break;
			case O_IDLE_TIMEOUT:
				g_cfg.idle_timeout = num_arg(name, optarg, 0);
				break;
			case O_REQUIRE_VERSION:
				g_cfg.require_version = true;
				break;
			case O_VERSION:
				printf("paper-broker %s\n", PB_VERSION);
				exit(0);
			case 'h':
			case O_HELP:
				usage(stdout);
				exit(0);
			default:
				usage(stderr);
				exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
	if ((g_cfg.tls_cert == NULL) != (g_cfg.tls_key == NULL))
		die("--tls-cert and --tls-key go together");
}

static void
add_holdings(char **holdings, int n)
{
	for (int i = 0; i < n; i++)
	{
		char	   *spec = strdup(holdings[i]);
		char	   *avg = strrchr(spec, ':'),
				   *qty;
		double		a,
					q;
		int			idx;

		if (!avg)
			die("--holding %s: expected EXCHANGE:SYMBOL:QTY:AVG", holdings[i]);
		*avg++ = '\0';
		qty = strrchr(spec, ':');
		if (!qty)
			die("--holding %s: expected EXCHANGE:SYMBOL:QTY:AVG", holdings[i]);
		*qty++ = '\0';
		idx = market_find(spec);
		if (idx < 0 || !parse_double(qty, &q) || q <= 0 || !parse_double(avg, &a) || a <= 0)
			die("--holding %s: unknown instrument or bad numbers", holdings[i]);
		portfolio_add_holding(idx, (long) q, a);
		free(spec);
	}
}

static void
write_port_file(const char *path, unsigned port)
{
	char	   *tmp;
	FILE	   *f;

	if (!path)
		return;
	tmp = malloc(strlen(path) + 8);
	sprintf(tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		die("cannot write %s", tmp);
	fprintf(f, "%u\n", port);
	fclose(f);
	if (rename(tmp, path) != 0)
		die("cannot rename %s", tmp);
	free(tmp);
}

int
main(int argc, char **argv)
{
	char	   *holdings[MAX_HOLDINGS];
	int			nholdings = 0,
				sig;
	char		err[512];
	sigset_t	set;

	defaults();
	parse_args(argc, argv, holdings, &nholdings);
	if (!g_cfg.instruments)
		g_cfg.instruments = default_instruments();
	g_faults = g_cfg.faults;

	if (g_cfg.quiet)
		g_log = NULL;
	else if (!g_cfg.log_path)
		g_log = stderr;
	else if (strcmp(g_cfg.log_path, "-") == 0)
		g_log = stdout;
	else if (!(g_log = fopen(g_cfg.log_path, "a")))
		die("cannot open log %s", g_cfg.log_path);

	if (market_load(g_cfg.instruments, err, sizeof(err)) != 0)
		die("%s", err);
	add_holdings(holdings, nholdings);
	auth_init();
	ratelimit_init();
	stats_reset();

	/* every thread inherits this mask; main collects the signals */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (http_start() != 0)
		return 1;
	if (g_cfg.admin_port >= 0 && admin_start() != 0)
	{
		http_stop();
		return 1;
	}
	if (market_start_ticker() != 0)
		die("cannot start the price ticker");
	if (ws_start() != 0)
		die("cannot start the WebSocket ticker");
	write_port_file(g_cfg.port_file, http_port());
	if (g_cfg.admin_port >= 0)
		write_port_file(g_cfg.admin_port_file, admin_port());
	if (ws_port() >= 0)
		printf("paper-broker WebSocket ticker on ws://%s:%d\n", g_cfg.bind, ws_port());
	printf("paper-broker %s listening on %s://%s:%u (admin http://%s:%u), %d instruments, seed %llu\n",
		   PB_VERSION, g_cfg.tls_cert ? "https" : "http", g_cfg.bind, http_port(),
		   g_cfg.admin_bind, g_cfg.admin_port >= 0 ? admin_port() : 0, market_count(),
		   (unsigned long long) g_cfg.seed);
	fflush(stdout);

	while (sigwait(&set, &sig) == 0 && sig != SIGINT && sig != SIGTERM)
		;
	log_line("paper-broker: signal %d, shutting down\n", sig);

	ws_stop();
	market_stop_ticker();
	admin_stop();
	http_stop();
	LOCK		();

	orders_reset();
	portfolio_free();
	ratelimit_free();
	auth_free();
	stats_free();
	UNLOCK();
	market_free();
	free(g_cfg.instruments);
	if (g_log && g_log != stderr && g_log != stdout)
		fclose(g_log);
	return 0;
}

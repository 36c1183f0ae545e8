/*
 * worker_http_bench.c - requests per second to the broker with the broker
 * worker's connection handling against a new connection per request, in
 * one run (bench/worker_http_bench.sh builds and runs it).
 *
 * "reuse" is configured exactly like worker/broker_http.c: one multi handle
 * (CURLMOPT_MAX_HOST_CONNECTIONS = 8), persistent easy handles, HTTP/1.1
 * keep-alive, a share handle for DNS and TLS sessions.  "new" gives every
 * request a fresh easy handle with CURLOPT_FRESH_CONNECT and
 * CURLOPT_FORBID_REUSE and no share handle: a TCP connect and a full TLS
 * handshake per request, which is what a client without reuse pays.  Both
 * keep the same number of requests in flight.  The modes alternate in
 * rounds so that machine noise hits both alike; the ratio of the totals is
 * printed at the end.
 *
 *   worker_http_bench URL CAFILE [seconds-per-round] [rounds] [in-flight]
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *url;
static const char *cafile;
static struct curl_slist *headers;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t
discard(char *p, size_t s, size_t n, void *u)
{
	return s * n;
}

static void
setup(CURL * h, CURLSH * share, int fresh)
{
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 7000L);
	if (cafile && *cafile)
		curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
	if (share)
		curl_easy_setopt(h, CURLOPT_SHARE, share);
	if (fresh)
	{
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	}
}

/* run one round; returns successful requests, sets *conns */
static long
round_run(int fresh, double secs, int inflight, long *conns, long *errors)
{
	CURLM	   *m = curl_multi_init();
	CURLSH	   *share = NULL;
	CURL	  **h = calloc(inflight, sizeof(CURL *));
	long		ok = 0;
	double		end = now_s() + secs;
	int			running = 0;

	*conns = 0;
	*errors = 0;
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 8L);
	if (!fresh)
	{
		share = curl_share_init();
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	}
	for (int i = 0; i < inflight; i++)
	{
		h[i] = curl_easy_init();
		setup(h[i], share, fresh);
		curl_multi_add_handle(m, h[i]);
	}
	for (;;)
	{
		CURLMsg    *msg;
		int			q;

		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &q)) != NULL)
		{
			CURL	   *e = msg->easy_handle;
			long		code = 0,
						nc = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
			curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc);
			*conns += nc;
			if (msg->data.result == CURLE_OK && code == 200)
				ok++;
			else
				(*errors)++;
			curl_multi_remove_handle(m, e);
			if (now_s() < end)
			{
				if (fresh)
				{
					/* a brand-new handle: nothing carried over */
					for (int i = 0; i < inflight; i++)
						if (h[i] == e)
						{
							curl_easy_cleanup(e);
							h[i] = e = curl_easy_init();
							break;
						}
				}
				setup(e, share, fresh);
				curl_multi_add_handle(m, e);
			}
		}
		if (now_s() >= end && running == 0)
			break;
		curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	for (int i = 0; i < inflight; i++)
		curl_easy_cleanup(h[i]);
	free(h);
	curl_multi_cleanup(m);
	if (share)
		curl_share_cleanup(share);
	return ok;
}

int
main(int argc, char **argv)
{
	double		secs;
	int			rounds,
				inflight;
	long		total[2] = {0, 0},
				conns[2] = {0, 0},
				errs[2] = {0, 0};
	double		time_total[2] = {0, 0};
	const char *auth = getenv("BENCH_AUTH");

	if (argc < 3)
	{
		fprintf(stderr, "usage: %s URL CAFILE [seconds-per-round] [rounds] [in-flight]\n", argv[0]);
		return 2;
	}
	url = argv[1];
	cafile = argv[2];
	secs = argc > 3 ? atof(argv[3]) : 3;
	rounds = argc > 4 ? atoi(argv[4]) : 4;
	inflight = argc > 5 ? atoi(argv[5]) : 6;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	headers = curl_slist_append(NULL, "X-Kite-Version: 3");
	if (auth)
		headers = curl_slist_append(headers, auth);

	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < 2; k++)
		{
			int			fresh = (r % 2 == 0) ? k : 1 - k;	/* alternate who goes
															 * first */
			long		c,
						e;
			double		t0 = now_s();
			long		n = round_run(fresh, secs, inflight, &c, &e);
			double		t = now_s() - t0;

			total[fresh] += n;
			conns[fresh] += c;
			errs[fresh] += e;
			time_total[fresh] += t;
			printf("round %d %-5s %8.1f req/s  (%ld requests, %ld connections, %ld errors)\n",
				   r + 1, fresh ? "new" : "reuse", n / t, n, c, e);
			fflush(stdout);
		}
	printf("reuse: %.1f req/s, %ld connections for %ld requests\n",
		   total[0] / time_total[0], conns[0], total[0]);
	printf("new:   %.1f req/s, %ld connections for %ld requests\n",
		   total[1] / time_total[1], conns[1], total[1]);
	printf("ratio reuse/new: %.2f\n",
		   (total[0] / time_total[0]) / (total[1] / time_total[1]));
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return 0;
}

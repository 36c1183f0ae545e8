/*
 * auth.c - Kite login, sessions and the Authorization header check.
 *
 * POST /session/token exchanges a request_token (minted by the admin
 * endpoint, or the fixed --request-token) for an access_token when the
 * checksum sha256(api_key || request_token || api_secret) is right.
 * DELETE /session/token logs a token out.  Every authenticated endpoint
 * requires "Authorization: token api_key:access_token"; a missing, unknown
 * or expired token gets 403 TokenException.  Tokens expire at a configured
 * time, after a TTL, at 06:00 IST (Kite's rule, for tokens issued by login),
 * on admin request, or after N authenticated requests (fault injection).
 */
#include "broker.h"
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MAX_SESSIONS 256
#define MAX_REQ_TOKENS 256
#define REQ_TOKEN_LIFETIME 600.0

typedef struct session
{
	char		access_token[33];
	char		public_token[33];
	double		login_time;
	double		expires_at;		/* 0 = never */
} session;

typedef struct req_token
{
	char		token[33];
	double		minted;
} req_token;

static session sessions[MAX_SESSIONS];
static int	nsessions;
static req_token req_tokens[MAX_REQ_TOKENS];
static int	nreq_tokens;
static rng	tok_rng;
static long token_uses;			/* authenticated requests since armed */

static session *
session_add(const char *access_token, double expires_at)
{
	session    *s;

	if (nsessions == MAX_SESSIONS)
	{
		memmove(&sessions[0], &sessions[1], sizeof(session) * (MAX_SESSIONS - 1));
		nsessions--;
	}
	s = &sessions[nsessions++];
	memset(s, 0, sizeof(*s));
	if (access_token)
		snprintf(s->access_token, sizeof(s->access_token), "%s", access_token);
	else
		random_token(&tok_rng, s->access_token, sizeof(s->access_token));
	random_token(&tok_rng, s->public_token, sizeof(s->public_token));
	s->login_time = now_epoch();
	s->expires_at = expires_at;
	return s;
}

static double
configured_expiry(double now, double fallback)
{
	if (g_cfg.token_expires_at > 0)
		return g_cfg.token_expires_at;
	if (g_cfg.token_ttl > 0)
		return now + g_cfg.token_ttl;
	return fallback;
}

void
auth_init(void)
{
	uint64_t	seed = g_cfg.seed;

	/* minted tokens are unguessable unless --seed asks for reproducible ones */
	if (!g_cfg.seed_given && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
	{
		fprintf(stderr, "paper-broker: could not read random bytes for access tokens\n");
		exit(1);
	}
	rng_seed(&tok_rng, mix64(seed ^ 0x5eed70c3ULL));
	auth_reset();
}

void
auth_reset(void)
{
	nsessions = 0;
	nreq_tokens = 0;
	token_uses = 0;
	if (g_cfg.access_token && *g_cfg.access_token)
		session_add(g_cfg.access_token, configured_expiry(now_epoch(), 0));
}

void
auth_free(void)
{
	nsessions = 0;
	nreq_tokens = 0;
}

static session *
session_find(const char *token)
{
	for (int i = nsessions - 1; i >= 0; i--)
		if (strcmp(sessions[i].access_token, token) == 0)
			return &sessions[i];
	return NULL;
}

static void
session_remove(session *s)
{
	int			i = (int) (s - sessions);

	memmove(&sessions[i], &sessions[i + 1], sizeof(session) * (nsessions - i - 1));
	nsessions--;
}

static bool
session_live(const session *s, double now)
{
	return s->expires_at == 0 || now < s->expires_at;
}

bool
auth_check(struct req *r, reply *rp)
{
	const char *h = req_header(r, "Authorization");
	const char *msg = "Incorrect `api_key` or `access_token`.";
	size_t		klen = strlen(g_cfg.api_key);
	bool		ok = false;

	LOCK		();

	if (h && strncmp(h, "token ", 6) == 0 && strncmp(h + 6, g_cfg.api_key, klen) == 0
		&& h[6 + klen] == ':')
	{
		session    *s = session_find(h + 7 + klen);
		double		now = now_epoch();

		if (s && session_live(s, now))
		{
			ok = true;
			if (g_faults.expire_token_after > 0
				&& ++token_uses >= g_faults.expire_token_after)
			{
				/* the token dies right after this request (one shot) */
				for (int i = 0; i < nsessions; i++)
					sessions[i].expires_at = now;
				g_faults.expire_token_after = 0;
				token_uses = 0;
			}
		}
		else if (s)
			msg = "Token is invalid or has expired.";
	}
	if (!ok)
		stats_auth_failure();
	UNLOCK();
	if (!ok)
		reply_error(rp, 403, "TokenException", msg);
	return ok;
}

/*
 * The WebSocket ticker's handshake check (ws.c): api_key and access_token
 * from the query string name a live session.  Needs g_lock.
 */
bool
auth_token_ok(const char *api_key, const char *access_token)
{
	session    *s;

	if (!api_key || !access_token || strcmp(api_key, g_cfg.api_key) != 0)
		return false;
	s = session_find(access_token);
	return s != NULL && session_live(s, now_epoch());
}

void
auth_arm_expiry(long n)
{
	g_faults.expire_token_after = n;
	token_uses = 0;
}

/* user fields shared by /user/profile and /session/token */
static void
user_fields(jbuf *j, bool session)
{
	static const char *const exchanges[] = {"NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"};
	static const char *const products[] = {"CNC", "NRML", "MIS", "BO", "CO"};
	static const char *const otypes[] = {"MARKET", "LIMIT", "SL", "SL-M"};

	if (!session)
		j_kstr(j, "user_id", g_cfg.user_id);
	j_kstr(j, "user_type", "individual");
	j_kstr(j, "email", "paper@example.invalid");
	j_kstr(j, "user_name", "Paper Trader");
	j_kstr(j, "user_shortname", "Paper");
	j_kstr(j, "broker", "ZERODHA");
	j_karr(j, "exchanges");
	for (size_t i = 0; i < sizeof(exchanges) / sizeof(*exchanges); i++)
		j_str(j, exchanges[i]);
	j_end_arr(j);
	j_karr(j, "products");
	for (size_t i = 0; i < sizeof(products) / sizeof(*products); i++)
		j_str(j, products[i]);
	j_end_arr(j);
	j_karr(j, "order_types");
	for (size_t i = 0; i < sizeof(otypes) / sizeof(*otypes); i++)
		j_str(j, otypes[i]);
	j_end_arr(j);
	if (session)
		j_kstr(j, "avatar_url", "");
	else
		j_knull(j, "avatar_url");
}

static void
meta_field(jbuf *j)
{
	j_kobj(j, "meta");
	j_kstr(j, "demat_consent", "physical");
	j_end_obj(j);
}

void
h_profile(struct req *r, char **args, reply *rp)
{
	jbuf		j;

	(void) r;
	(void) args;
	jb_init(&j);
	j_obj(&j);
	user_fields(&j, false);
	meta_field(&j);
	j_end_obj(&j);
	reply_success(rp, &j);
}

static bool
take_request_token(const char *tok, double now)
{
	if (g_cfg.request_token && strcmp(tok, g_cfg.request_token) == 0)
		return true;
	for (int i = 0; i < nreq_tokens; i++)
	{
		if (strcmp(req_tokens[i].token, tok) != 0)
			continue;
		bool		fresh = now - req_tokens[i].minted < REQ_TOKEN_LIFETIME;

		memmove(&req_tokens[i], &req_tokens[i + 1], sizeof(req_token) * (nreq_tokens - i - 1));
		nreq_tokens--;
		return fresh;
	}
	return false;
}

void
h_login(struct req *r, char **args, reply *rp)
{
	const char *api_key = req_param(r, "api_key");
	const char *rtok = req_param(r, "request_token");
	const char *checksum = req_param(r, "checksum");
	char	   *material;
	char		want[65];
	double		now = now_epoch();
	session    *s;
	jbuf		j;
	char		ts[32];

	(void) args;
	if (!api_key || !*api_key || !rtok || !*rtok || !checksum || !*checksum)
	{
		reply_error(rp, 400, "InputException",
					"Missing `api_key`, `request_token` or `checksum`.");
		return;
	}
	if (strcmp(api_key, g_cfg.api_key) != 0)
	{
		reply_error(rp, 400, "InputException", "Invalid `api_key`.");
		return;
	}
	material = malloc(strlen(api_key) + strlen(rtok) + strlen(g_cfg.api_secret) + 1);
	if (!material)
		abort();
	strcpy(material, api_key);
	strcat(material, rtok);
	strcat(material, g_cfg.api_secret);
	sha256_hex(material, want);
	free(material);
	if (strcasecmp(want, checksum) != 0)
	{
		reply_error(rp, 403, "TokenException", "Invalid `checksum`.");
		return;
	}
	LOCK		();

	if (!take_request_token(rtok, now))
	{
		UNLOCK();
		reply_error(rp, 403, "TokenException", "Token is invalid or has expired.");
		return;
	}
	s = session_add(NULL, configured_expiry(now, next_ist_0600(now)));
	jb_init(&j);
	j_obj(&j);
	user_fields(&j, true);
	j_kstr(&j, "user_id", g_cfg.user_id);
	j_kstr(&j, "api_key", g_cfg.api_key);
	j_kstr(&j, "access_token", s->access_token);
	j_kstr(&j, "public_token", s->public_token);
	j_kstr(&j, "enctoken", s->public_token);
	j_kstr(&j, "refresh_token", "");
	j_kstr(&j, "silo", "");
	fmt_ist(s->login_time, ts, sizeof(ts));
	j_kstr(&j, "login_time", ts);
	meta_field(&j);
	j_end_obj(&j);
	UNLOCK();
	reply_success(rp, &j);
}

void
h_logout(struct req *r, char **args, reply *rp)
{
	const char *api_key = req_param(r, "api_key");
	const char *tok = req_param(r, "access_token");
	session    *s;
	jbuf		j;

	(void) args;
	if (!api_key || strcmp(api_key, g_cfg.api_key) != 0)
	{
		reply_error(rp, 400, "InputException", "Invalid `api_key`.");
		return;
	}
	LOCK		();

	s = tok ? session_find(tok) : NULL;
	if (s)
		session_remove(s);
	UNLOCK();
	if (!s)
	{
		reply_error(rp, 403, "TokenException", "Invalid `access_token`.");
		return;
	}
	jb_init(&j);
	j_bool(&j, true);
	reply_success(rp, &j);
}

char *
auth_mint_request_token(void)
{
	req_token  *t;

	if (nreq_tokens == MAX_REQ_TOKENS)
	{
		memmove(&req_tokens[0], &req_tokens[1], sizeof(req_token) * (MAX_REQ_TOKENS - 1));
		nreq_tokens--;
	}
	t = &req_tokens[nreq_tokens++];
	random_token(&tok_rng, t->token, sizeof(t->token));
	t->minted = now_epoch();
	return strdup(t->token);
}

/* /admin/token: expire=1, expires_at=T, ttl=S, access_token=X, expire_after=N */
void
auth_admin_token(struct req *r, jbuf *j)
{
	const char *v;
	double		now = now_epoch(),
				t;
	long		n;
	char		ts[32];

	if ((v = req_param(r, "access_token")) && *v && !session_find(v))
		session_add(v, configured_expiry(now, 0));
	if ((v = req_param(r, "expires_at")) && parse_ist(v, &t))
		for (int i = 0; i < nsessions; i++)
			sessions[i].expires_at = t;
	if ((v = req_param(r, "ttl")) && parse_long(v, &n))
		for (int i = 0; i < nsessions; i++)
			sessions[i].expires_at = now + n;
	if ((v = req_param(r, "expire")) && strcmp(v, "0") != 0)
		for (int i = 0; i < nsessions; i++)
			sessions[i].expires_at = now;
	if ((v = req_param(r, "expire_after")) && parse_long(v, &n))
		auth_arm_expiry(n);

	j_obj(j);
	j_kint(j, "expire_after", g_faults.expire_token_after);
	j_kint(j, "uses_since_armed", token_uses);
	j_karr(j, "sessions");
	for (int i = 0; i < nsessions; i++)
	{
		j_obj(j);
		j_kstr(j, "access_token", sessions[i].access_token);
		j_kbool(j, "valid", session_live(&sessions[i], now));
		if (sessions[i].expires_at > 0)
		{
			fmt_ist(sessions[i].expires_at, ts, sizeof(ts));
			j_kstr(j, "expires_at", ts);
		}
		else
			j_knull(j, "expires_at");
		j_end_obj(j);
	}
	j_end_arr(j);
	j_end_obj(j);
}

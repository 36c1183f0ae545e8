/*
 * http.h - request plumbing shared by http.c (Kite API daemon) and admin.c
 * (admin daemon): the per-request state and the generic server wrapper.
 */
#ifndef PAPER_BROKER_HTTP_H
#define PAPER_BROKER_HTTP_H

#include <microhttpd.h>

#include "broker.h"

struct kv
{
	char	   *k;
	char	   *v;
};

struct req
{
	struct MHD_Connection *mc;
	struct conn *conn;
	bool		admin;
	char		method[16];
	char	   *url;
	struct kv  *form;			/* decoded form body */
	int			nform,
				capform;
	struct MHD_PostProcessor *pp;
	size_t		body_bytes;		/* request body received so far */
	bool		body_too_large; /* over MAX_REQUEST_BODY: answered 413 */
	double		t0;
	int			status;			/* 0 = connection dropped */
	const char *route;
	const char *note;			/* static text for the request log */
};

/* the largest request body either server reads (forms are tiny) */
#define MAX_REQUEST_BODY	(64 * 1024)

typedef enum MHD_Result (*server_dispatch) (struct req *r);

struct server_opts
{
	const char *host;
	long		port;
	const char *tls_cert;
	const char *tls_key;
	long		threads;
	long		idle_timeout;
	bool		admin;
	server_dispatch dispatch;
};

struct server;
int			server_start(struct server_opts *o, struct server **out);
void		server_stop(struct server *srv);
unsigned	server_port(struct server *srv);
enum MHD_Result server_send(struct req *r, reply *rp);

#endif

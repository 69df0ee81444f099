/*
 * loadgen.c — sl-loadgen: an open-loop, constant-rate HTTP/1.1 load
 * generator for bench/compare.sh.
 *
 *   sl-loadgen --url http://127.0.0.1:8080/path --rate 20000 --duration 10
 *              --connections 64 [--threads 1] [--header 'X-User-Id: u{n}']
 *              [--users 1000] [--json]
 *
 * Request i is due at t0 + i / rate; its latency runs from then to the last
 * byte of its response and goes into sluice's own histogram
 * (analysis/histogram.h, 0.39% resolution), so a server that stalls is
 * charged for every request that should have gone out meanwhile
 * (no coordinated omission; see loadgen.h). "{n}" in a --header becomes a
 * user number, i modulo --users, so that sticky proxies see many users.
 *
 * This file owns the command line (one table drives parsing, bounds and
 * --help, through tests/tool/cliopt.c), the URL, the request template, the
 * threads and the report. The engine is loadgen_conn.c.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <netdb.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench/loadgen.h"
#include "tests/tool/cliopt.h"

#define MAX_HEADERS 64
#define MAX_THREADS 64

static const char *header_args[MAX_HEADERS];

/* The command line, before validation. */
static struct {
	const char *url;
	double rate;
	double duration;
	double warmup;
	double timeout;
	double grace;
	uint64_t conns;
	uint64_t threads;
	uint64_t users;
	bool json;
	struct cli_list headers;
} cl = {
    .duration = 10,
    .timeout = 10,
    .grace = 2,
    .conns = 64,
    .threads = 1,
    .users = 1000,
    .headers = {header_args, 0, MAX_HEADERS},
};

static const struct cli_opt opt_table[] = {
    {"url", CLI_STR, &cl.url, 0, 0, "URL",
        "http://HOST:PORT/PATH to request (required)"},
    {"rate", CLI_DOUBLE, &cl.rate, 0.001, 1e7, "R",
        "requests per second, fixed schedule (required)"},
    {"duration", CLI_DOUBLE, &cl.duration, 0.001, 86400, "S",
        "measured seconds (10)"},
    {"warmup", CLI_DOUBLE, &cl.warmup, 0, 3600, "S",
        "seconds run first at the same rate, not measured (0)"},
    {"connections", CLI_UINT, &cl.conns, 1, 1000000, "C",
        "most connections open at once, all threads (64)"},
    {"threads", CLI_UINT, &cl.threads, 1, MAX_THREADS, "T",
        "threads, each with 1/T of the rate and connections (1)"},
    {"header", CLI_LIST, &cl.headers, 0, 0, "'NAME: VALUE'",
        "add a header; {n} becomes the user number (repeatable)"},
    {"users", CLI_UINT, &cl.users, 1, 1e15, "N",
        "{n} cycles over 0..N-1, one step per request (1000)"},
    {"timeout", CLI_DOUBLE, &cl.timeout, 0.001, 3600, "S",
        "a response not complete S after its send is an error (10)"},
    {"grace", CLI_DOUBLE, &cl.grace, 0, 3600, "S",
        "wait this long after the schedule for late responses (2)"},
    {"json", CLI_FLAG, &cl.json, 1, 0, NULL,
        "print one JSON object instead of the text report"},
    {"help", CLI_FLAG, NULL, 0, 0, NULL, "show this help"},
};
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

/* Reports a run-time error and exits with status 1. */
static void __attribute__((noreturn, format(printf, 1, 2)))
fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sl-loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Parses the command line into cl. */
static void
opts_parse(int argc, char **argv)
{
	static const struct cli cli = {
	    .prog = "sl-loadgen",
	    .synopsis = "sl-loadgen --url URL --rate R [options]",
	    .epilogue =
	        "Request i is due at start + i/R; latency runs from then to "
	        "the last byte\nof its response (no coordinated omission). A "
	        "request due while every\nconnection is busy waits for one, "
	        "and its latency grows meanwhile.\n",
	    .opts = opt_table,
	    .nopts = NOPTS,
	};

	size_t i;

	cli_parse(&cli, argc, argv);
	for (i = 0; i < cl.headers.n; i++) {
		const char *h = cl.headers.v[i];

		if (strchr(h, ':') == NULL || *h == ':' ||
		    strpbrk(h, "\r\n") != NULL)
			cli_bad_usage("--header: '%s' is not 'NAME: VALUE'", h);
	}
	if (cl.url == NULL)
		cli_bad_usage("--url is required");
	if (cl.rate == 0)
		cli_bad_usage("--rate is required");
	if (cl.conns < cl.threads)
		cli_bad_usage("--connections must be at least --threads");
}

/* Appends n bytes of s to the template's current piece. */
static void
piece_add(struct lg_request *req, const char *s, size_t n)
{
	size_t k = req->npieces - 1;
	char *p = realloc(req->piece[k], req->piece_len[k] + n + 1);

	if (p == NULL)
		fatal("out of memory");
	memcpy(p + req->piece_len[k], s, n);
	req->piece_len[k] += n;
	p[req->piece_len[k]] = '\0';
	req->piece[k] = p;
	req->max_len += n;
}

/* Starts a new template piece: a user number goes before it. */
static void
piece_new(struct lg_request *req)
{
	size_t k = req->npieces++;

	req->piece = realloc(req->piece, req->npieces * sizeof(*req->piece));
	req->piece_len =
	    realloc(req->piece_len, req->npieces * sizeof(*req->piece_len));
	if (req->piece == NULL || req->piece_len == NULL)
		fatal("out of memory");
	req->piece[k] = NULL;
	req->piece_len[k] = 0;
	if (k > 0)
		req->max_len += 20; /* digits of a uint64_t */
	piece_add(req, "", 0);
}

/* Appends a string, cutting it into pieces at every "{n}". */
static void
template_add(struct lg_request *req, const char *s)
{
	const char *m;

	while ((m = strstr(s, "{n}")) != NULL) {
		piece_add(req, s, (size_t)(m - s));
		piece_new(req);
		s = m + 3;
	}
	piece_add(req, s, strlen(s));
}

/*
 * Splits cl.url (http://HOST[:PORT][/PATH]) and resolves HOST, filling
 * o->addr; builds the request template into o->request.
 */
static void
url_and_request(struct lg_opts *o)
{
	const char *u = cl.url, *hp, *slash, *colon;
	char host[256], port[16] = "80", line[LG_MAX_REQUEST];
	struct addrinfo hints, *ai;
	size_t hplen, hlen;
	bool has_host = false;
	unsigned i;
	int err;

	if (strncmp(u, "http://", 7) != 0)
		cli_bad_usage("--url: '%s' does not start with http://", u);
	hp = u + 7;
	slash = strchr(hp, '/');
	hplen = slash != NULL ? (size_t)(slash - hp) : strlen(hp);
	if (hplen == 0 || hplen >= sizeof(host))
		cli_bad_usage("--url: no host in '%s'", u);
	if (*hp == '[') {
		colon = memchr(hp, ']', hplen);
		if (colon == NULL)
			cli_bad_usage("--url: bad IPv6 host in '%s'", u);
		hlen = (size_t)(colon - hp - 1);
		memcpy(host, hp + 1, hlen);
		colon = colon + 1 < hp + hplen && colon[1] == ':' ? colon + 1
		                                                  : NULL;
	} else {
		colon = memchr(hp, ':', hplen);
		hlen = colon != NULL ? (size_t)(colon - hp) : hplen;
		memcpy(host, hp, hlen);
	}
	host[hlen] = '\0';
	if (colon != NULL) {
		size_t plen = (size_t)(hp + hplen - colon - 1);

		if (plen == 0 || plen >= sizeof(port))
			cli_bad_usage("--url: bad port in '%s'", u);
		memcpy(port, colon + 1, plen);
		port[plen] = '\0';
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	err = getaddrinfo(host, port, &hints, &ai);
	if (err != 0)
		fatal(
		    "cannot resolve %s:%s: %s", host, port, gai_strerror(err));
	memcpy(&o->addr, ai->ai_addr, ai->ai_addrlen);
	o->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);

	piece_new(&o->request);
	snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\n",
	    slash != NULL ? slash : "/");
	template_add(&o->request, line);
	for (i = 0; i < cl.headers.n; i++) {
		if (strncasecmp(cl.headers.v[i], "host:", 5) == 0)
			has_host = true;
	}
	if (!has_host) {
		snprintf(line, sizeof(line), "Host: %.*s\r\n", (int)hplen, hp);
		template_add(&o->request, line);
	}
	for (i = 0; i < cl.headers.n; i++) {
		template_add(&o->request, cl.headers.v[i]);
		template_add(&o->request, "\r\n");
	}
	template_add(&o->request, "\r\n");
	if (o->request.max_len > LG_MAX_REQUEST)
		cli_bad_usage(
		    "the request head would exceed %d bytes", LG_MAX_REQUEST);
}

struct thread_arg {
	const struct lg_opts *o;
	unsigned id;
	struct lg_result res;
	int rc;
};

/* pthread entry: runs one engine thread. */
static void *
thread_main(void *arg)
{
	struct thread_arg *ta = arg;

	ta->rc = lg_thread_run(ta->o, ta->id, &ta->res);
	return NULL;
}

/* µs to ms for the report. */
static double
ms(double usec)
{
	return usec / 1000.0;
}

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999};
static const char *const qnames[] = {"p50", "p90", "p99", "p99.9"};

/* Prints the report as text. */
static void
report_text(const struct lg_opts *o, const struct lg_result *r, double rate)
{
	uint64_t errors = r->s1xx + r->s3xx + r->s4xx + r->s5xx +
	    r->connect_err + r->io_err + r->timeout + r->unfinished;
	size_t i;

	printf("sl-loadgen %s: %.0f req/s for %.1f s (warm-up %.1f s), "
	       "%u connections, %u thread%s\n",
	    cl.url, o->rate, o->duration, o->warmup, o->conns, o->threads,
	    o->threads == 1 ? "" : "s");
	printf("  scheduled   %llu\n", (unsigned long long)r->scheduled);
	printf("  sent        %llu\n", (unsigned long long)r->sent);
	printf("  completed   %llu (1xx %llu, 2xx %llu, 3xx %llu, 4xx %llu, "
	       "5xx %llu)\n",
	    (unsigned long long)r->completed, (unsigned long long)r->s1xx,
	    (unsigned long long)r->s2xx, (unsigned long long)r->s3xx,
	    (unsigned long long)r->s4xx, (unsigned long long)r->s5xx);
	printf("  errors      %llu (non-2xx %llu, connect %llu, i/o %llu, "
	       "timeout %llu, unfinished %llu)\n",
	    (unsigned long long)errors,
	    (unsigned long long)(r->completed - r->s2xx),
	    (unsigned long long)r->connect_err, (unsigned long long)r->io_err,
	    (unsigned long long)r->timeout, (unsigned long long)r->unfinished);
	printf("  rate        %.1f req/s completed (target %.1f)\n", rate,
	    o->rate);
	printf("  connections %llu opened, at most %u open\n",
	    (unsigned long long)r->opened, r->max_open);
	printf("  latency ms ");
	for (i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++)
		printf(" %s %.3f ", qnames[i],
		    ms(sl_hist_quantile(&r->latency, quantiles[i])));
	printf(" max %.3f  mean %.3f\n", ms((double)sl_hist_max(&r->latency)),
	    ms(sl_hist_mean(&r->latency)));
	printf("  send lag ms  p50 %.3f  p99 %.3f  max %.3f  (due -> on a "
	       "connection)\n",
	    ms(sl_hist_quantile(&r->lag, 0.5)),
	    ms(sl_hist_quantile(&r->lag, 0.99)),
	    ms((double)sl_hist_max(&r->lag)));
}

/* Prints the report as one JSON object. */
static void
report_json(const struct lg_opts *o, const struct lg_result *r, double rate)
{
	uint64_t errors = r->s1xx + r->s3xx + r->s4xx + r->s5xx +
	    r->connect_err + r->io_err + r->timeout + r->unfinished;
	size_t i;

	printf("{\"target_rate\":%.3f,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
	       "\"connections\":%u,\"threads\":%u,",
	    o->rate, o->duration, o->warmup, o->conns, o->threads);
#define X(name) printf("\"%s\":%llu,", #name, (unsigned long long)r->name);
	LG_COUNTERS(X)
#undef X
	printf("\"errors\":%llu,\"non_2xx\":%llu,\"max_open\":%u,"
	       "\"rate\":%.3f,\"latency_ms\":{",
	    (unsigned long long)errors,
	    (unsigned long long)(r->completed - r->s2xx), r->max_open, rate);
	for (i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++)
		printf("\"%s\":%.4f,", qnames[i],
		    ms(sl_hist_quantile(&r->latency, quantiles[i])));
	printf("\"max\":%.4f,\"mean\":%.4f},\"send_lag_ms\":{\"p50\":%.4f,"
	       "\"p99\":%.4f,\"max\":%.4f}}\n",
	    ms((double)sl_hist_max(&r->latency)), ms(sl_hist_mean(&r->latency)),
	    ms(sl_hist_quantile(&r->lag, 0.5)),
	    ms(sl_hist_quantile(&r->lag, 0.99)),
	    ms((double)sl_hist_max(&r->lag)));
}

int
main(int argc, char **argv)
{
	struct lg_opts o;
	struct thread_arg *ta;
	struct lg_result *total;
	pthread_t *tids;
	uint64_t start_ns;
	double span, rate;
	unsigned i;

	opts_parse(argc, argv);
	memset(&o, 0, sizeof(o));
	url_and_request(&o);
	o.rate = cl.rate;
	o.duration = cl.duration;
	o.warmup = cl.warmup;
	o.timeout = cl.timeout;
	o.grace = cl.grace;
	o.users = cl.users;
	o.conns = (unsigned)cl.conns;
	o.threads = (unsigned)cl.threads;
	o.warm_n = (uint64_t)llround(o.warmup * o.rate);
	o.total = o.warm_n + (uint64_t)llround(o.duration * o.rate);
	if (o.total == o.warm_n)
		cli_bad_usage("--rate x --duration is less than one request");

	ta = calloc(o.threads, sizeof(*ta));
	tids = calloc(o.threads, sizeof(*tids));
	total = calloc(1, sizeof(*total));
	if (ta == NULL || tids == NULL || total == NULL)
		fatal("out of memory");
	/* Every thread starts on the same clock, a little in the future. */
	o.t0_ns = lg_now_ns() + 20 * 1000000u;
	for (i = 0; i < o.threads; i++) {
		ta[i].o = &o;
		ta[i].id = i;
		if (pthread_create(&tids[i], NULL, thread_main, &ta[i]) != 0)
			fatal("cannot start thread %u", i);
	}
	for (i = 0; i < o.threads; i++) {
		pthread_join(tids[i], NULL);
		if (ta[i].rc != 0)
			fatal("thread %u failed", i);
		lg_result_merge(total, &ta[i].res);
	}

	/* Completed per second over the measured window, or until the last
	 * response if that came later. */
	start_ns = o.t0_ns + (uint64_t)(o.warmup * 1e9);
	span = o.duration;
	if (total->last_done_ns > start_ns &&
	    (double)(total->last_done_ns - start_ns) / 1e9 > span)
		span = (double)(total->last_done_ns - start_ns) / 1e9;
	rate = (double)total->completed / span;

	if (cl.json)
		report_json(&o, total, rate);
	else
		report_text(&o, total, rate);
	for (i = 0; i < o.request.npieces; i++)
		free(o.request.piece[i]);
	free(o.request.piece);
	free(o.request.piece_len);
	free(ta);
	free(tids);
	free(total);
	return 0;
}

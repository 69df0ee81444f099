/*
 * fuzz_request.c — libFuzzer target: what a client sends, through the same
 * calls the client side of proxy/conn.c makes.
 *
 * Input: three control bytes, then the bytes of the connection.
 *   byte 0  bits 0-1: the stream arrives in 1 + (bits % 3) reads;
 *           bit 2: forward bodies dechunked; bits 3-4: client address
 *   byte 1  where the first read ends (fraction of the stream, /256)
 *   byte 2  where the second read ends (fraction of the rest, /256)
 * Each read is appended as its own evbuffer chain (a reference to an
 * exact-size copy of the input, so ASan sees any read past it). Heads are
 * found with sl_http_find_head_end, resumed after every read as conn.c
 * does, parsed with sl_http_parse_head (100 headers), routed against a
 * fixed table (header, cookie and query keys, pins, override), and bodies
 * go through sl_http_forward_body; up to 8 pipelined requests per input.
 *
 * Invariants (abort() on violation, so libFuzzer reports them): the
 * incremental head scan agrees with a one-shot reference scan; a refused
 * head has status 400, 417, 431, 501 or 505 and a reason; an accepted head
 * has every offset inside the head, token header names, no control bytes
 * in values, one Host (required on 1.1), at most one Content-Length (all
 * digits), a Transfer-Encoding only as exactly "chunked" and never with a
 * Content-Length; its path with dot-segments resolved is no longer, keeps
 * its query, has no dot-segment left and resolves to itself again;
 * forwarding moves exactly the bytes it consumed (a chunked body: the
 * same data, framed anew in plain hex sizes) and a Content-Length body is
 * exactly that long.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "proxy/http1.h"
#include "tests/fuzz/reframed.h"
#include "proxy/route.h"

#define MAX_HDRS     100
#define MAX_HEAD     (64 * 1024) /* above max_header_size's ceiling */
#define MAX_MESSAGES 8

/* An invariant: report the line and abort so the fuzzer keeps the input. */
#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
			    __FILE__, __LINE__, #cond);                        \
			abort();                                               \
		}                                                              \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sticky keys, pins and overrides: the routing code that reads headers. */
static const char route_ini[] =
    "[listener:main]\n"
    "bind = 127.0.0.1:18080\n"
    "[service:shop]\n"
    "hosts = shop.example, www.shop.example\n"
    "sticky = header:X-User-Id cookie:uid query:uid\n"
    "sticky_cookie = sl_b\n"
    "stable = blue\n"
    "override_secret = s3cret\n"
    "override_networks = 10.20.0.0/16 fd00::/8\n"
    "[version:shop/blue]\n"
    "servers = 127.0.0.1:18081\n"
    "weight = 70\n"
    "[version:shop/green]\n"
    "servers = 127.0.0.1:18082\n"
    "weight = 20\n"
    "[version:shop/red]\n"
    "servers = 127.0.0.1:18083\n"
    "weight = 10\n"
    "[pin:shop/staff]\n"
    "match = header:X-Employee=yes\n"
    "version = green\n"
    "[pin:shop/beta]\n"
    "match = cookie:beta^=on\n"
    "version = red\n"
    "[service:api]\n"
    "path_prefix = /api\n"
    "sticky = query:key cookie:sid\n"
    "stable = v1\n"
    "[version:api/v1]\n"
    "servers = 127.0.0.1:18084\n";

static struct sl_route_table *table;
static struct sl_http_head *head;

/* Build the routing table and the scratch head once. */
static void
setup(void)
{
	struct sl_config *conf;
	char *err = NULL;

	sl_log_set_level(SL_LOG_ERROR);
	conf = sl_conf_load_string("fuzz-request.ini", route_ini, &err);
	if (conf == NULL) {
		fprintf(stderr, "fuzz_request: %s\n", err);
		abort();
	}
	table = sl_route_build(conf, &err);
	head = sl_http_head_new(MAX_HDRS);
	if (table == NULL || head == NULL)
		abort();
}

/*
 * The reference head scan over flat bytes: the first LF followed by LF,
 * or by CR and one more byte. 0 when not complete.
 */
static size_t
ref_head_end(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 >= n)
			return 0;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r')
			return i + 2 < n ? i + 3 : 0;
	}
	return 0;
}

/* Does [S, S+N) equal W ignoring case? */
static bool
word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* Every structural promise a parsed request head makes. */
static void
check_head(const char *b, size_t len, const struct sl_http_head *h)
{
	uint32_t i, j, nhost = 0, ncl = 0, nte = 0;
	uint64_t cl_value = 0;

	CHECK(!h->response);
	CHECK(h->head_len == len);
	CHECK(h->major == 1);
	CHECK(h->method != HTTP_CONNECT);
	CHECK(h->target_len > 0);
	CHECK((uint64_t)h->target_off + h->target_len <= len);
	for (i = 0; i < h->target_len; i++) {
		unsigned char c = (unsigned char)b[h->target_off + i];

		CHECK(c > 0x20 && c != 0x7f && c != '#');
	}
	CHECK(h->nhdrs <= MAX_HDRS);
	for (i = 0; i < h->nhdrs; i++) {
		const struct sl_http_hdr *x = &h->hdrs[i];

		CHECK(x->name_len > 0);
		CHECK((uint64_t)x->name_off + x->name_len <= len);
		CHECK((uint64_t)x->value_off + x->value_len <= len);
		for (j = 0; j < x->name_len; j++)
			CHECK(sl_http_is_tchar(
			    (unsigned char)b[x->name_off + j]));
		for (j = 0; j < x->value_len; j++) {
			unsigned char c = (unsigned char)b[x->value_off + j];

			CHECK(c >= 0x20 || c == '\t');
			CHECK(c != 0x7f);
		}
		if (x->value_len > 0) {
			char last = b[x->value_off + x->value_len - 1];

			CHECK(last != ' ' && last != '\t');
		}
		switch (h->kinds[i]) {
		case SL_HDR_HOST:
			nhost++;
			CHECK(h->host_idx == (int)i);
			break;
		case SL_HDR_CONTENT_LENGTH:
			ncl++;
			CHECK(x->value_len > 0);
			cl_value = 0;
			for (j = 0; j < x->value_len; j++) {
				char c = b[x->value_off + j];
				uint64_t d = (uint64_t)(c - '0');

				CHECK(c >= '0' && c <= '9');
				/* An accepted length fits in 64 bits; the
				 * largest one, 2^64 - 1, is valid too (an
				 * earlier bound here stopped one digit short
				 * of it: regress/request/crash-fa59...). */
				CHECK(cl_value <= (UINT64_MAX - d) / 10);
				cl_value = cl_value * 10 + d;
			}
			break;
		case SL_HDR_TRANSFER_ENCODING:
			nte++;
			CHECK(
			    word_is(b + x->value_off, x->value_len, "chunked"));
			break;
		default:
			break;
		}
	}
	CHECK(nhost <= 1);
	CHECK(h->host_idx < 0 || nhost == 1);
	CHECK(h->minor == 0 || nhost == 1);
	CHECK(ncl <= 1);
	CHECK(nte <= 1);
	/* The smuggling rule: one framing, never both. */
	CHECK(!(nte > 0 && ncl > 0));
	CHECK(!((h->flags & F_CHUNKED) && (h->flags & F_CONTENT_LENGTH)));
	/* sluice's view of the framing is llhttp's: a header it took for
	 * Transfer-Encoding: chunked frames the body as chunked, and the
	 * Content-Length llhttp uses is the one header sluice saw. */
	CHECK(nte == 0 || (h->flags & F_CHUNKED));
	CHECK(!(h->flags & F_CHUNKED) || nte == 1);
	CHECK(!(h->flags & F_CONTENT_LENGTH) || ncl == 1);
	CHECK(ncl == 0 || (h->flags & F_CONTENT_LENGTH));
	CHECK(ncl == 0 || h->content_length == cl_value);
	CHECK(nte == 0 || h->minor >= 1);
	CHECK(!h->has_body || (h->flags & (F_CHUNKED | F_CONTENT_LENGTH)));
	/* No bare CR or LF in an accepted head. */
	for (i = 0; i < len; i++) {
		if (b[i] == '\n')
			CHECK(i > 0 && b[i - 1] == '\r');
		if (b[i] == '\r')
			CHECK(i + 1 < len && b[i + 1] == '\n');
	}
}

/* Is P inside [B, B+LEN]? */
static bool
inside(const char *p, size_t plen, const char *b, size_t len)
{
	return p >= b && p + plen <= b + len;
}

/*
 * Resolve PATH's dot-segments as conn.c does (normalize_path = yes), and
 * check the result: no longer, still a path, the query as it was, no
 * dot-segment left, and the same when resolved again.
 */
static size_t
normalized(char *path, size_t len)
{
	char *again, *q = memchr(path, '?', len);
	size_t qlen = q != NULL ? len - (size_t)(q - path) : 0, n, i, seg;
	char *query = malloc(qlen + 1);

	if (query == NULL)
		abort();
	memcpy(query, path + len - qlen, qlen);
	n = sl_http_normalize_path(path, len);
	CHECK(n <= len && n > qlen && path[0] == '/');
	CHECK(memcmp(path + n - qlen, query, qlen) == 0);
	for (i = 0, seg = 0; i <= n - qlen; i++) {
		if (i == n - qlen || path[i] == '/') {
			bool dot1 = i - seg == 2 && path[seg + 1] == '.';
			bool dot2 = i - seg == 3 && path[seg + 1] == '.' &&
			    path[seg + 2] == '.';

			CHECK(!dot1 && !dot2);
			seg = i;
		}
	}
	again = malloc(n);
	if (again == NULL)
		abort();
	memcpy(again, path, n);
	CHECK(sl_http_normalize_path(again, n) == n);
	CHECK(memcmp(again, path, n) == 0);
	free(again);
	free(query);
	return n;
}

/* Route the request as conn.c would: service, then version. */
static void
route(const char *b, size_t len, const struct sl_http_head *h, int which)
{
	static const char *ips[] = {"10.20.1.2", "192.0.2.1", "fd00::1", ""};
	struct sockaddr_storage ss;
	struct sl_route_request rr;
	const struct sl_route_service *svc;
	struct sl_route_pick pick;
	const char *t = b + h->target_off, *host = NULL, *path = t, *key;
	size_t tlen = h->target_len, host_len = 0, path_len = tlen, klen;
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	const char *p;
	char *norm = NULL;

	memset(&ss, 0, sizeof ss);
	if (which == 2) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ips[which], &s6->sin6_addr);
	} else if (which < 2) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ips[which], &s4->sin_addr);
	}
	/* absolute-form: the authority is the host, the rest the path */
	if (t[0] != '/' && t[0] != '*') {
		p = memchr(t, ':', tlen);
		if (p != NULL && (size_t)(t + tlen - p) >= 3 && p[1] == '/' &&
		    p[2] == '/') {
			host = p + 3;
			path = memchr(host, '/', (size_t)(t + tlen - host));
			if (path == NULL)
				path = t + tlen;
			host_len = (size_t)(path - host);
			path_len = (size_t)(t + tlen - path);
		}
	}
	if (host == NULL && h->host_idx >= 0) {
		host = b + h->hdrs[h->host_idx].value_off;
		host_len = h->hdrs[h->host_idx].value_len;
	}
	if (host != NULL && host_len > 0 && host[0] != '[') {
		p = memchr(host, ':', host_len);
		if (p != NULL)
			host_len = (size_t)(p - host);
	}
	if (path_len > 0 && path[0] == '/') {
		norm = malloc(path_len);
		if (norm == NULL)
			abort();
		memcpy(norm, path, path_len);
		path_len = normalized(norm, path_len);
		path = norm;
	}
	svc = sl_route_match(table, host, host_len, path, path_len);
	if (svc == NULL) {
		free(norm);
		return;
	}
	memset(&rr, 0, sizeof rr);
	rr.host = host;
	rr.host_len = host_len;
	rr.path = path;
	rr.path_len = path_len;
	rr.client_ip = ips[which];
	rr.client_ip_len = strlen(ips[which]);
	rr.client_addr = which < 3 ? (const struct sockaddr *)&ss : NULL;
	rr.head = h;
	rr.head_base = b;
	sl_route_pick_version(svc, &rr, &rng, &pick);
	CHECK(pick.svc == svc);
	CHECK(pick.version < svc->nversions);
	CHECK(pick.bucket < SL_BUCKETS);
	if (sl_route_user_key(svc->conf, &rr, &key, &klen))
		CHECK(inside(key, klen, b, len) ||
		    inside(key, klen, path, path_len) ||
		    inside(key, klen, rr.client_ip, rr.client_ip_len));
	if (sl_route_cookie(&rr, "uid", 3, &key, &klen))
		CHECK(klen > 0 && inside(key, klen, b, len));
	if (sl_route_query(path, path_len, "uid", 3, &key, &klen))
		CHECK(inside(key, klen, path, path_len));
	CHECK(sl_http_find_hdr(h, b, "host", 4) == h->host_idx);
	free(norm);
}

/* The evbuffer's bytes, flattened (for the reference scan). */
static unsigned char *
flatten(struct evbuffer *in, size_t *n)
{
	unsigned char *p;

	*n = evbuffer_get_length(in);
	p = malloc(*n ? *n : 1);
	if (p == NULL)
		abort();
	CHECK(evbuffer_copyout(in, p, *n) == (ev_ssize_t)*n);
	return p;
}

/* The connection's reads: an input copy cut in up to three pieces. */
struct reads {
	struct evbuffer *in;
	const unsigned char *bytes;
	size_t cut[4];
	int next;
};

/* The next read: append its bytes as their own chain; false at EOF. */
static bool
feed(struct reads *rd)
{
	size_t lo, hi;

	if (rd->next >= 3)
		return false;
	lo = rd->cut[rd->next];
	hi = rd->cut[rd->next + 1];
	rd->next++;
	if (hi > lo &&
	    evbuffer_add_reference(
	        rd->in, rd->bytes + lo, hi - lo, NULL, NULL) != 0)
		abort();
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reads rd;
	struct evbuffer *in, *out, *raw, *framed;
	uint32_t ext;
	bool reframe;
	unsigned char *copy, *flat;
	size_t n, nflat;
	int nreads, msgs, ip;
	bool dechunk;
	llhttp_t parser;

	if (table == NULL)
		setup();
	if (size < 3)
		return 0;
	nreads = 1 + (data[0] & 3) % 3;
	dechunk = (data[0] & 4) != 0;
	ip = (data[0] >> 3) & 3;
	n = size - 3;
	copy = malloc(n ? n : 1);
	in = evbuffer_new();
	out = evbuffer_new();
	raw = evbuffer_new();
	framed = evbuffer_new();
	if (copy == NULL || in == NULL || out == NULL || raw == NULL ||
	    framed == NULL)
		abort();
	memcpy(copy, data + 3, n);
	memset(&rd, 0, sizeof rd);
	rd.in = in;
	rd.bytes = copy;
	rd.cut[1] = nreads > 1 ? n * data[1] / 256 : n;
	rd.cut[2] =
	    nreads > 2 ? rd.cut[1] + (n - rd.cut[1]) * data[2] / 256 : n;
	rd.cut[3] = n;
	sl_http_parser_init(&parser, false);

	feed(&rd);
	for (msgs = 0; msgs < MAX_MESSAGES; msgs++) {
		struct sl_http_error err;
		size_t scan = 0, end, ref;
		uint64_t body = 0;
		char *hb;
		int r;

		/* Head: scan, resuming after each read. */
		for (;;) {
			end = sl_http_find_head_end(in, &scan);
			flat = flatten(in, &nflat);
			ref = ref_head_end(flat, nflat);
			free(flat);
			CHECK(end == ref);
			CHECK(end > 0 || scan <= nflat);
			if (end > 0 || !feed(&rd))
				break;
		}
		if (end == 0 || end > MAX_HEAD)
			break;
		/* An exact-size copy: any read past the head is an error. */
		hb = malloc(end);
		if (hb == NULL)
			abort();
		CHECK(evbuffer_copyout(in, hb, end) == (ev_ssize_t)end);
		if (sl_http_parse_head(&parser, hb, end, -1, head, &err) != 0) {
			CHECK(err.status == 400 || err.status == 417 ||
			    err.status == 431 || err.status == 501 ||
			    err.status == 505);
			CHECK(err.reason != NULL && err.reason[0] != '\0');
			free(hb);
			break;
		}
		check_head(hb, end, head);
		route(hb, end, head, ip);
		free(hb);
		evbuffer_drain(in, end);
		if (head->upgrade)
			break; /* a tunnel: no more HTTP on this connection */
		if (!head->has_body)
			continue;

		/* Body: forward what has arrived, read more, until done. */
		reframe = (head->flags & F_CHUNKED) && !dechunk;
		ext = 0;
		evbuffer_drain(raw, evbuffer_get_length(raw));
		evbuffer_drain(framed, evbuffer_get_length(framed));
		for (;;) {
			size_t before_in = evbuffer_get_length(in);
			size_t before_out = evbuffer_get_length(out);
			size_t moved, consumed;
			const char *why = NULL;
			char *snap = malloc(before_in + 1);

			if (snap == NULL)
				abort();
			evbuffer_copyout(in, snap, before_in);
			r = sl_http_forward_body(
			    &parser, in, out, dechunk, &ext, &why);
			consumed = before_in - evbuffer_get_length(in);
			moved = evbuffer_get_length(out) - before_out;
			evbuffer_add(raw, snap, consumed);
			free(snap);
			if (r < 0) {
				CHECK(why != NULL);
				break;
			}
			CHECK(r == 0 || r == 1);
			if (dechunk)
				CHECK(moved <= consumed);
			else if (!reframe)
				CHECK(moved == consumed);
			body += moved;
			evbuffer_remove_buffer(out, framed, moved);
			if (r == 1)
				break;
			/* Not done: everything that was there was consumed. */
			CHECK(evbuffer_get_length(in) == 0);
			if (!feed(&rd))
				break;
		}
		if (r != 1)
			break;
		if (head->flags & F_CONTENT_LENGTH)
			CHECK(body == head->content_length);
		if (reframe)
			CHECK(reframed_same(raw, framed));
	}
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(raw);
	evbuffer_free(framed);
	free(copy);
	return 0;
}

/*
 * reframed.h — an invariant of both HTTP fuzz targets: a chunked body that
 * sl_http_forward_body framed anew carries exactly the data of the one
 * that came, and is itself one whole chunked body in sluice's framing
 * (plain hex sizes, no extensions). Included by fuzz_request.c and
 * fuzz_response.c, which define CHECK.
 */
#ifndef SL_FUZZ_REFRAMED_H
#define SL_FUZZ_REFRAMED_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/http1.h"

/* The data of the chunked body SRC (emptied) into DATA: false unless SRC
 * holds exactly one whole chunked body. */
static bool
reframed_decode(struct evbuffer *src, struct evbuffer *data)
{
	static const char head[] = "HTTP/1.1 200 OK\r\n"
	                           "Transfer-Encoding: chunked\r\n\r\n";
	struct sl_http_head *h = sl_http_head_new(4);
	struct sl_http_error err;
	const char *why = NULL;
	uint32_t ext = 0;
	llhttp_t p;
	int r;

	if (h == NULL)
		abort();
	sl_http_parser_init(&p, true);
	if (sl_http_parse_head(&p, head, sizeof head - 1, HTTP_GET, h, &err))
		abort();
	r = sl_http_forward_body(&p, src, data, true, &ext, &why);
	sl_http_head_free(h);
	return r == 1 && evbuffer_get_length(src) == 0;
}

/* Is every chunk-size line of FRAMED (a whole chunked body) plain hex
 * without a leading zero or an extension? */
static bool
reframed_plain(struct evbuffer *framed)
{
	size_t n = evbuffer_get_length(framed), at = 0;
	char *b = malloc(n + 1);
	bool ok = true;

	if (b == NULL)
		abort();
	evbuffer_copyout(framed, b, n);
	b[n] = '\0';
	for (;;) {
		size_t len = strspn(b + at, "0123456789abcdef");
		unsigned long size;

		if (len == 0 || (len > 1 && b[at] == '0') ||
		    strncmp(b + at + len, "\r\n", 2) != 0) {
			ok = false;
			break;
		}
		size = strtoul(b + at, NULL, 16);
		at += len + 2;
		if (size == 0)
			break; /* the trailer section follows */
		at += size + 2;
		if (at > n) {
			ok = false;
			break;
		}
	}
	free(b);
	return ok;
}

/* FRAMED went out for RAW, both whole chunked bodies: the same data. */
static bool
reframed_same(struct evbuffer *raw, struct evbuffer *framed)
{
	struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
	bool plain = reframed_plain(framed), same;

	if (a == NULL || b == NULL)
		abort();
	same = plain && reframed_decode(raw, a) && reframed_decode(framed, b) &&
	    evbuffer_get_length(a) == evbuffer_get_length(b);
	if (same && evbuffer_get_length(a) > 0)
		same = memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1),
		           evbuffer_get_length(a)) == 0;
	evbuffer_free(a);
	evbuffer_free(b);
	return same;
}

#endif

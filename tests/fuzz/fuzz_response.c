/*
 * fuzz_response.c — libFuzzer target: what an origin sends back, through
 * the same calls the upstream side of proxy/conn.c makes.
 *
 * Input: three control bytes, then the bytes of the upstream connection.
 *   byte 0  bits 0-1: the stream arrives in 1 + (bits % 3) reads;
 *           bit 2: forward bodies dechunked (an HTTP/1.0 client);
 *           bit 3: the request was HEAD (else GET)
 *   byte 1  where the first read ends (fraction of the stream, /256)
 *   byte 2  where the second read ends (fraction of the rest, /256)
 * Reads are appended as separate evbuffer chains; heads are found with
 * sl_http_find_head_end and parsed with sl_http_parse_head; 1xx heads are
 * followed by the final one, and up to 8 responses are read in a row as on
 * a reused upstream connection. A close-delimited body ends with
 * sl_http_finish_body when the input runs out.
 *
 * Invariants (abort() on violation): the incremental head scan agrees with
 * a one-shot scan; a refused head has status 502 and a reason; an accepted
 * one has a status in 100..599, offsets inside the head, no body for HEAD,
 * 1xx, 204 and 304; forwarding moves exactly what it consumed (a length),
 * the same data framed anew in plain hex sizes (chunked) or no more
 * (dechunked); a Content-Length body is exactly that long; the end of
 * the input completes a close-delimited body and cuts short any other.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "proxy/http1.h"
#include "tests/fuzz/reframed.h"

#define MAX_HDRS     100
#define MAX_HEAD     (64 * 1024)
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

static struct sl_http_head *head;

/* The reference head scan over flat bytes (see fuzz_request.c). */
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

/* The upstream's reads: an input copy cut in up to three pieces. */
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

/* Is every read delivered? */
static bool
at_eof(const struct reads *rd)
{
	return rd->next >= 3;
}

/* Head end by the reference scan of IN's bytes. */
static size_t
ref_scan(struct evbuffer *in)
{
	size_t n = evbuffer_get_length(in), end;
	unsigned char *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	CHECK(evbuffer_copyout(in, p, n) == (ev_ssize_t)n);
	end = ref_head_end(p, n);
	free(p);
	return end;
}

/* Does a Transfer-Encoding value end with the coding "chunked"? */
static bool
ends_with_chunked(const char *v, size_t n)
{
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n < 7 || strncasecmp(v + n - 7, "chunked", 7) != 0)
		return false;
	n -= 7;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n == 0 || v[n - 1] == ',';
}

/* Structural promises of an accepted response head. */
static void
check_head(const char *b, size_t len, const struct sl_http_head *h, int method)
{
	uint32_t i;
	int last_te = -1;

	CHECK(h->response);
	CHECK(h->head_len > 0 && h->head_len <= len);
	CHECK(h->status >= 100 && h->status <= 599);
	CHECK((uint64_t)h->target_off + h->target_len <= len);
	CHECK(h->nhdrs <= MAX_HDRS);
	for (i = 0; i < h->nhdrs; i++) {
		const struct sl_http_hdr *x = &h->hdrs[i];

		CHECK(x->name_len > 0);
		CHECK((uint64_t)x->name_off + x->name_len <= h->head_len);
		CHECK((uint64_t)x->value_off + x->value_len <= h->head_len);
		if (h->kinds[i] == SL_HDR_TRANSFER_ENCODING)
			last_te = (int)i;
	}
	/* The head is forwarded with values as parsed (trailing whitespace
	 * trimmed): if the client will read the last coding as chunked, the
	 * body must have been framed as chunked here. */
	if (last_te >= 0 && h->has_body &&
	    ends_with_chunked(
	        b + h->hdrs[last_te].value_off, h->hdrs[last_te].value_len))
		CHECK(h->flags & F_CHUNKED);
	if (method == HTTP_HEAD || h->status == 204 || h->status == 304 ||
	    h->status < 200)
		CHECK(!h->has_body);
	if (h->has_body && (h->flags & F_CONTENT_LENGTH) &&
	    !(h->flags & F_CHUNKED))
		CHECK(h->content_length > 0);
	CHECK(h->upgrade == (h->status == 101));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reads rd;
	struct evbuffer *in, *out, *raw, *framed;
	uint32_t ext;
	bool reframe;
	unsigned char *copy;
	size_t n;
	int nreads, msgs, method;
	bool dechunk;
	llhttp_t parser;

	if (head == NULL && (head = sl_http_head_new(MAX_HDRS)) == NULL)
		abort();
	if (size < 3)
		return 0;
	nreads = 1 + (data[0] & 3) % 3;
	dechunk = (data[0] & 4) != 0;
	method = (data[0] & 8) ? HTTP_HEAD : HTTP_GET;
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
	sl_http_parser_init(&parser, true);

	feed(&rd);
	for (msgs = 0; msgs < MAX_MESSAGES; msgs++) {
		struct sl_http_error err;
		size_t scan = 0, end;
		uint64_t body = 0;
		bool eof_body;
		char *hb;
		int r = 0;

		for (;;) {
			end = sl_http_find_head_end(in, &scan);
			CHECK(end == ref_scan(in));
			if (end > 0 || !feed(&rd))
				break;
		}
		if (end == 0 || end > MAX_HEAD)
			break;
		hb = malloc(end);
		if (hb == NULL)
			abort();
		CHECK(evbuffer_copyout(in, hb, end) == (ev_ssize_t)end);
		if (sl_http_parse_head(&parser, hb, end, method, head, &err) !=
		    0) {
			CHECK(err.status == 502);
			CHECK(err.reason != NULL && err.reason[0] != '\0');
			free(hb);
			break;
		}
		check_head(hb, end, head, method);
		free(hb);
		evbuffer_drain(in, end);
		if (head->status == 101)
			break; /* a tunnel from here on */
		if (!head->has_body)
			continue; /* 1xx, or a response without a body */

		eof_body = !(head->flags & (F_CHUNKED | F_CONTENT_LENGTH));
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
			CHECK(evbuffer_get_length(in) == 0);
			if (!feed(&rd))
				break;
		}
		if (r == 0 && at_eof(&rd)) {
			/* The origin closed: only a close-delimited body may
			 * end that way. */
			r = sl_http_finish_body(&parser);
			CHECK(r == (eof_body ? 1 : -1));
			break;
		}
		if (r != 1)
			break;
		CHECK(!eof_body);
		if (reframe)
			CHECK(reframed_same(raw, framed));
		if ((head->flags & F_CONTENT_LENGTH) &&
		    !(head->flags & F_CHUNKED))
			CHECK(body == head->content_length);
	}
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(raw);
	evbuffer_free(framed);
	free(copy);
	return 0;
}

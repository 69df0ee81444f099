/*
 * http1.c — HTTP/1.1 heads and bodies on top of llhttp.
 *
 * llhttp (strict mode, no lenient flags) does the grammar; sluice adds the
 * checks where llhttp is lenient or where a proxy must be stricter than an
 * origin (RFC 9112 §11 "request smuggling"): header names must be tokens
 * (this refuses "Host : x"), values may hold no control characters (this
 * refuses obs-fold and NUL), exactly one Host on HTTP/1.1, a request's
 * Transfer-Encoding must be exactly "chunked" in one header, and only
 * HTTP/1.x is spoken.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "proxy/http1.h"

/* What the llhttp callbacks are filling in. */
struct parse_ctx {
	bool head_mode;
	const char *base;
	struct sl_http_head *head;
	struct sl_http_error *err;
	int req_method;
	bool headers_done;
	bool message_done;
	/* the header being parsed */
	uint32_t name_off, name_len, value_off, value_len;
	bool have_value;
	bool overflow;
	bool chunked; /* a response's Transfer-Encoding had "chunked" */
	bool te;      /* a Transfer-Encoding field, empty or not */
	/* body mode: a chunked body's data goes to OUT, decoded or, with
	 * RECHUNK, framed anew (NULL: the caller moves the bytes as they
	 * are) */
	struct evbuffer *out;
	bool rechunk;
	bool trailer_value; /* a trailer field's ": " has gone out */
	uint32_t ext_len;   /* the current chunk's extension bytes so far */
};

/* A body parser's context: the head's, and where its bytes are. */
struct body_ctx {
	struct parse_ctx p;     /* first: the callbacks get it */
	const char *exec_start; /* the bytes llhttp_execute was given */
	bool lf_before; /* bytes before them ended a line, then SP/HTAB */
};

static const char tchar_table[256] = {
    ['!'] = 1,
    ['#'] = 1,
    ['$'] = 1,
    ['%'] = 1,
    ['&'] = 1,
    ['\''] = 1,
    ['*'] = 1,
    ['+'] = 1,
    ['-'] = 1,
    ['.'] = 1,
    ['^'] = 1,
    ['_'] = 1,
    ['`'] = 1,
    ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1,
    ['1'] = 1,
    ['2'] = 1,
    ['3'] = 1,
    ['4'] = 1,
    ['5'] = 1,
    ['6'] = 1,
    ['7'] = 1,
    ['8'] = 1,
    ['9'] = 1,
    ['A'] = 1,
    ['B'] = 1,
    ['C'] = 1,
    ['D'] = 1,
    ['E'] = 1,
    ['F'] = 1,
    ['G'] = 1,
    ['H'] = 1,
    ['I'] = 1,
    ['J'] = 1,
    ['K'] = 1,
    ['L'] = 1,
    ['M'] = 1,
    ['N'] = 1,
    ['O'] = 1,
    ['P'] = 1,
    ['Q'] = 1,
    ['R'] = 1,
    ['S'] = 1,
    ['T'] = 1,
    ['U'] = 1,
    ['V'] = 1,
    ['W'] = 1,
    ['X'] = 1,
    ['Y'] = 1,
    ['Z'] = 1,
    ['a'] = 1,
    ['b'] = 1,
    ['c'] = 1,
    ['d'] = 1,
    ['e'] = 1,
    ['f'] = 1,
    ['g'] = 1,
    ['h'] = 1,
    ['i'] = 1,
    ['j'] = 1,
    ['k'] = 1,
    ['l'] = 1,
    ['m'] = 1,
    ['n'] = 1,
    ['o'] = 1,
    ['p'] = 1,
    ['q'] = 1,
    ['r'] = 1,
    ['s'] = 1,
    ['t'] = 1,
    ['u'] = 1,
    ['v'] = 1,
    ['w'] = 1,
    ['x'] = 1,
    ['y'] = 1,
    ['z'] = 1,
};

/* Is C an RFC 9110 tchar? */
bool
sl_http_is_tchar(unsigned char c)
{
	return tchar_table[c] != 0;
}

/* Record a refusal and stop the parser. */
static int
refuse(struct parse_ctx *ctx, int status, const char *reason)
{
	if (ctx->err != NULL && ctx->err->status == 0) {
		/* A bad response head is the origin's fault: 502. */
		ctx->err->status = ctx->head->response ? 502 : status;
		ctx->err->reason = reason;
	}
	return HPE_USER;
}

/*
 * The request target, or a response's reason phrase: both are kept in
 * target_* (a head is one or the other).
 */
static int
on_target_cb(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;

	if (!ctx->head_mode)
		return 0;
	if (ctx->head->target_len == 0)
		ctx->head->target_off = (uint32_t)(at - ctx->base);
	ctx->head->target_len += (uint32_t)len;
	return 0;
}

static int
on_header_field_cb(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;

	if (!ctx->head_mode) {
		/* A trailer field. sluice does not check trailers the way
		 * it checks heads (framing fields, the names it sets), so a
		 * request with any is refused: clients practically never
		 * send them. A response's are passed on. */
		if (p->type == HTTP_REQUEST) {
			llhttp_set_error_reason(
			    p, "trailer fields in a request are not accepted");
			return HPE_USER;
		}
		if (ctx->rechunk && evbuffer_add(ctx->out, at, len) != 0)
			return HPE_USER;
		return 0;
	}
	if (ctx->name_len == 0)
		ctx->name_off = (uint32_t)(at - ctx->base);
	ctx->name_len += (uint32_t)len;
	return 0;
}

/*
 * A response's trailer field's value, passed on. llhttp takes an obs-fold
 * (CRLF, then whitespace) as more of the value: a span of a value never
 * follows a line's end but in one, and a proxy must not forward it (RFC
 * 9112 5.2). The head is gone: the response is cut. An empty value comes
 * as an empty span behind its line's end: no fold. (Apart from
 * on_header_value_cb, whose heads are every request's.)
 */
static __attribute__((noinline)) int
trailer_value(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;
	const struct body_ctx *bc = (const struct body_ctx *)ctx;
	const char *q = at;

	if (len == 0)
		return 0;
	while (q > bc->exec_start && (q[-1] == ' ' || q[-1] == '\t'))
		q--;
	if (q > bc->exec_start ? q[-1] == '\n' : bc->lf_before) {
		llhttp_set_error_reason(p, "obs-fold in a trailer field");
		return HPE_USER;
	}
	if (!ctx->rechunk)
		return 0;
	if (!ctx->trailer_value) {
		ctx->trailer_value = true;
		if (evbuffer_add(ctx->out, ": ", 2) != 0)
			return HPE_USER;
	}
	if (evbuffer_add(ctx->out, at, len) != 0)
		return HPE_USER;
	return 0;
}

static int
on_header_value_cb(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;

	if (!ctx->head_mode)
		return trailer_value(p, at, len);
	if (!ctx->have_value) {
		ctx->value_off = (uint32_t)(at - ctx->base);
		ctx->have_value = true;
	}
	ctx->value_len = (uint32_t)(at + len - ctx->base) - ctx->value_off;
	return 0;
}

/* Is NAME (LEN bytes of tchar) the lower-case name LC, ignoring case?
 * Or-ing 0x20 lower-cases letters and maps no other tchar onto a letter
 * or '-' (only CR would alias '-', and no name holds one). */
static inline bool
name_is(const char *name, const char *lc, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if ((name[i] | 0x20) != lc[i])
			return false;
	}
	return true;
}

/* name_is, with '_' taken for any '-': for the names sluice sets, which
 * CGI-style origins (WSGI, Rack, PHP) read from one variable for both
 * spellings — a client's X_Forwarded_Proto would pass for sluice's. */
static inline bool
name_is_cgi(const char *name, const char *lc, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (lc[i] == '-' ? name[i] != '-' && name[i] != '_'
		                 : (name[i] | 0x20) != lc[i])
			return false;
	}
	return true;
}

/* Does NAME start with "x-client-cert-", in any case and spelling? */
static inline bool
cert_prefix(const char *name, size_t len)
{
	return len >= 14 && (name[0] | 0x20) == 'x' &&
	    name_is_cgi(name, "x-client-cert-", 14);
}

/* Classify a header name into one of the kinds sluice acts on. Any name
 * in sluice's X-Client-Cert- namespace first; then the length picks at
 * most two candidates, so most names (User-Agent, Accept) are known not
 * to matter without a comparison. */
static enum sl_hdr_kind
classify(const char *name, size_t len)
{
#define IS(lc) name_is(name, lc, sizeof(lc) - 1)
	if (cert_prefix(name, len))
		return SL_HDR_X_CLIENT_CERT;
	switch (len) {
	case 2:
		return IS("te") ? SL_HDR_TE : SL_HDR_OTHER;
	case 3:
		return IS("via") ? SL_HDR_VIA : SL_HDR_OTHER;
	case 4:
		return IS("host") ? SL_HDR_HOST
		    : IS("date")  ? SL_HDR_DATE
		                  : SL_HDR_OTHER;
	case 6:
		return IS("cookie") ? SL_HDR_COOKIE
		    : IS("expect")  ? SL_HDR_EXPECT
		                    : SL_HDR_OTHER;
	case 7:
		return IS("trailer") ? SL_HDR_TRAILER
		    : IS("upgrade")  ? SL_HDR_UPGRADE
		                     : SL_HDR_OTHER;
	case 10:
		return IS("connection") ? SL_HDR_CONNECTION
		    : IS("keep-alive")  ? SL_HDR_KEEP_ALIVE
		                        : SL_HDR_OTHER;
	case 14:
		return IS("content-length") ? SL_HDR_CONTENT_LENGTH
		    : name_is_cgi(name, "content-length", 14)
		    ? SL_HDR_FRAMING_ALIKE
		    : SL_HDR_OTHER;
	case 15:
		return name_is_cgi(name, "x-forwarded-for", 15)
		    ? SL_HDR_X_FORWARDED_FOR
		    : SL_HDR_OTHER;
	case 16:
		return IS("proxy-connection") ? SL_HDR_PROXY_CONNECTION
		    : IS("x-sluice-version")  ? SL_HDR_X_SLUICE_VERSION
		                              : SL_HDR_OTHER;
	case 17:
		return IS("transfer-encoding") ? SL_HDR_TRANSFER_ENCODING
		    : name_is_cgi(name, "transfer-encoding", 17)
		    ? SL_HDR_FRAMING_ALIKE
		    : name_is_cgi(name, "x-forwarded-proto", 17)
		    ? SL_HDR_X_FORWARDED_PROTO
		    : SL_HDR_OTHER;
	default:
		return SL_HDR_OTHER;
	}
#undef IS
}

/* Does [S, S+LEN) equal the lower-case word W, ignoring case? */
static bool
word_is(const char *s, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

/* The next element of the comma-separated list [V, V+LEN) from *I, white
 * space trimmed, as [*START, *END) (empty when the list is done or the
 * element is); false when the list is done. */
static bool
list_next(const char *v, size_t len, size_t *i, size_t *start, size_t *end)
{
	while (*i < len && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ','))
		(*i)++;
	if (*i >= len)
		return false;
	*start = *i;
	while (*i < len && v[*i] != ',')
		(*i)++;
	*end = *i;
	while (*end > *start && (v[*end - 1] == ' ' || v[*end - 1] == '\t'))
		(*end)--;
	return true;
}

/* How many of the comma-separated codings in [V, V+LEN) are chunked (0, 1
 * or 2: more counts as 2)? */
static uint32_t
chunked_codings(const char *v, size_t len)
{
	size_t i = 0, start, end;
	uint32_t n = 0;

	while (n < 2 && list_next(v, len, &i, &start, &end))
		n += word_is(v + start, end - start, "chunked");
	return n;
}

/* Is the last coding of the Transfer-Encoding list [V, V+LEN) chunked,
 * with parameters or not? Empty elements are no codings (RFC 9110 5.6.1:
 * "chunked," is chunked), though llhttp does not frame such a body. */
static bool
last_coding_chunked(const char *v, size_t len)
{
	size_t i = 0, start, end, last_start = 0, last_end = 0, semi;

	while (list_next(v, len, &i, &start, &end)) {
		if (end > start) {
			last_start = start;
			last_end = end;
		}
	}
	for (semi = last_start; semi < last_end && v[semi] != ';'; semi++)
		;
	while (semi > last_start && (v[semi - 1] == ' ' || v[semi - 1] == '\t'))
		semi--;
	return word_is(v + last_start, semi - last_start, "chunked");
}

/* Parse the comma-separated tokens of a Connection header; UINT32_MAX
 * when one names a field every recipient needs (the framing or Host):
 * dropping it as hop-by-hop would let the next hop read the message
 * another way (RFC 9110 7.6.1). Or, in a REQUEST, Expect: sluice waits
 * on the 100 the client asked for, which an origin that never saw the
 * expectation would not send (the 504 at response_timeout would count
 * against it). */
static uint32_t
connection_tokens(const char *v, size_t len, bool request)
{
	uint32_t tokens = 0;
	size_t i = 0, start, end;

	while (list_next(v, len, &i, &start, &end)) {
		if (end == start)
			continue;
		if (word_is(v + start, end - start, "close"))
			tokens |= SL_CONN_CLOSE;
		else if (word_is(v + start, end - start, "keep-alive"))
			tokens |= SL_CONN_KEEP_ALIVE;
		else if (word_is(v + start, end - start, "upgrade"))
			tokens |= SL_CONN_UPGRADE;
		else if (word_is(v + start, end - start, "content-length") ||
		    word_is(v + start, end - start, "transfer-encoding") ||
		    word_is(v + start, end - start, "host") ||
		    (request && word_is(v + start, end - start, "expect")))
			return UINT32_MAX;
		else
			tokens |= SL_CONN_OTHER;
	}
	return tokens;
}

/* Finish one header: validate it and append it to the head. */
static int
on_header_value_complete_cb(llhttp_t *p)
{
	struct parse_ctx *ctx = p->data;
	struct sl_http_head *head = ctx->head;
	const unsigned char *v;
	const char *name;
	struct sl_http_hdr *h;
	uint32_t i, vlen;
	enum sl_hdr_kind kind;

	if (!ctx->head_mode) {
		/* A trailer field's end (its value may be empty). */
		if (!ctx->rechunk)
			return 0;
		if ((!ctx->trailer_value &&
		        evbuffer_add(ctx->out, ":", 1) != 0) ||
		    evbuffer_add(ctx->out, "\r\n", 2) != 0)
			return HPE_USER;
		ctx->trailer_value = false;
		return 0;
	}
	name = ctx->base + ctx->name_off;
	/* llhttp refuses every other non-tchar in a name itself (the unit
	 * test test_refuse_header_name_bytes holds it to that). */
	if (memchr(name, ' ', ctx->name_len) != NULL)
		return refuse(ctx, 400, "invalid character in header name");
	if (ctx->name_len == 0)
		return refuse(ctx, 400, "empty header name");
	/* llhttp refuses controls but HTAB, and DEL, in a value itself
	 * (test_refuse_header_value_bytes holds it to that), but takes an
	 * obs-fold (CRLF and whitespace) into the value: refuse that. */
	vlen = ctx->have_value ? ctx->value_len : 0;
	v = (const unsigned char *)ctx->base + ctx->value_off;
	if (memchr(v, '\n', vlen) != NULL)
		return refuse(ctx, 400, "obs-fold in header");
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (head->nhdrs >= head->max_hdrs) {
		ctx->overflow = true;
		return refuse(ctx, 431, "too many header fields");
	}
	kind = classify(name, ctx->name_len);
	h = &head->hdrs[head->nhdrs];
	h->name_off = ctx->name_off;
	h->name_len = ctx->name_len;
	h->value_off = ctx->have_value ? ctx->value_off : ctx->name_off;
	h->value_len = vlen;
	head->kinds[head->nhdrs] = (uint8_t)kind;

	switch (kind) {
	case SL_HDR_HOST:
		if (head->host_idx >= 0)
			return refuse(ctx, 400, "more than one Host header");
		head->host_idx = (int)head->nhdrs;
		break;
	case SL_HDR_CONNECTION:
		if ((i = connection_tokens(
		         (const char *)v, vlen, !head->response)) == UINT32_MAX)
			return refuse(ctx, 400,
			    "Connection names Content-Length, "
			    "Transfer-Encoding, Host or Expect");
		head->conn_tokens |= i;
		break;
	case SL_HDR_FRAMING_ALIKE:
		/* Content_Length, Transfer_Encoding: a server that reads
		 * '_' as '-' (CGI-style) would frame the message by it. */
		return refuse(ctx, head->response ? 502 : 400,
		    "a framing header's name with '_' for '-'");
	case SL_HDR_TRANSFER_ENCODING:
		ctx->te = true;
		if (!head->response) {
			for (i = 0; i < head->nhdrs; i++) {
				if (head->kinds[i] == SL_HDR_TRANSFER_ENCODING)
					return refuse(ctx, 400,
					    "repeated Transfer-Encoding");
			}
			if (!word_is((const char *)v, vlen, "chunked"))
				return refuse(
				    ctx, 501, "unsupported transfer coding");
		} else {
			/* RFC 9112 6.1: chunked is applied once, last. */
			i = chunked_codings((const char *)v, vlen);
			if (i > 1 || (i == 1 && ctx->chunked))
				return refuse(ctx, 502,
				    "Transfer-Encoding applies chunked twice");
			ctx->chunked |= i == 1;
		}
		break;
	default:
		break;
	}
	head->nhdrs++;
	ctx->name_len = 0;
	ctx->value_len = 0;
	ctx->have_value = false;
	return 0;
}

/* Headers done: pause so the caller can act, or skip a body it can't have. */
static int
on_headers_complete_cb(llhttp_t *p)
{
	struct parse_ctx *ctx = p->data;
	int status;

	if (!ctx->head_mode)
		return 0; /* trailers */
	ctx->headers_done = true;
	if (p->type == HTTP_RESPONSE) {
		status = p->status_code;
		if (ctx->req_method == HTTP_HEAD || status == 204 ||
		    status == 304 || (status >= 100 && status < 200))
			return 1; /* no body; on_message_complete pauses */
	}
	return HPE_PAUSED;
}

static int
on_message_complete_cb(llhttp_t *p)
{
	struct parse_ctx *ctx = p->data;

	ctx->message_done = true;
	/* The empty line after the trailer section. */
	if (ctx->rechunk && evbuffer_add(ctx->out, "\r\n", 2) != 0)
		return HPE_USER;
	return HPE_PAUSED;
}

/* A chunk-size line for LEN bytes: lower-case hex, no leading zero, no
 * extension. */
static int
add_chunk_size(struct evbuffer *out, size_t len)
{
	char line[2 * sizeof len + 2];
	char *q = line + sizeof line;

	*--q = '\n';
	*--q = '\r';
	do {
		*--q = "0123456789abcdef"[len & 15];
		len >>= 4;
	} while (len != 0);
	return evbuffer_add(out, q, (size_t)(line + sizeof line - q));
}

/*
 * A chunked body's data. Decoded, it goes out as it is. Framed anew, each
 * span llhttp hands over is a chunk of its own, so what the next hop
 * parses is sluice's framing, never the sender's: no leading zeros, no
 * extensions, one spelling of every size (an origin that reads a size
 * line differently from llhttp cannot be shown another body than the
 * one sluice checked).
 */
static __attribute__((noinline)) int
body_out(struct parse_ctx *ctx, const char *at, size_t len)
{
	if (len == 0)
		return 0;
	if ((ctx->rechunk && add_chunk_size(ctx->out, len) != 0) ||
	    evbuffer_add(ctx->out, at, len) != 0 ||
	    (ctx->rechunk && evbuffer_add(ctx->out, "\r\n", 2) != 0))
		return HPE_USER;
	return 0;
}

static int
on_body_cb(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;

	/* A body with a length is moved by the caller, bytes as they are. */
	return ctx->out != NULL ? body_out(ctx, at, len) : 0;
}

/* Chunk extensions are not passed on, but still bounded: llhttp reads
 * them all, and a chunk with megabytes of them is no honest sender's. */
static int
on_chunk_ext_cb(llhttp_t *p, const char *at, size_t len)
{
	struct parse_ctx *ctx = p->data;

	(void)at;
	if (len > SL_HTTP_CHUNK_EXT_MAX - ctx->ext_len) {
		llhttp_set_error_reason(p, "chunk extensions too long");
		return HPE_USER;
	}
	ctx->ext_len += (uint32_t)len;
	return 0;
}

/* A chunk's size line is whole: the next one's extensions count anew.
 * The last chunk's line goes out before the trailer section. */
static int
on_chunk_header_cb(llhttp_t *p)
{
	struct parse_ctx *ctx = p->data;

	ctx->ext_len = 0;
	if (ctx->rechunk && p->content_length == 0 &&
	    evbuffer_add(ctx->out, "0\r\n", 3) != 0)
		return HPE_USER;
	return 0;
}

static llhttp_settings_t parser_settings = {
    .on_url = on_target_cb,
    .on_status = on_target_cb,
    .on_header_field = on_header_field_cb,
    .on_header_value = on_header_value_cb,
    .on_header_value_complete = on_header_value_complete_cb,
    .on_headers_complete = on_headers_complete_cb,
    .on_message_complete = on_message_complete_cb,
    .on_body = on_body_cb,
    .on_chunk_extension_name = on_chunk_ext_cb,
    .on_chunk_extension_value = on_chunk_ext_cb,
    .on_chunk_header = on_chunk_header_cb,
};

/* Initialise a strict parser for requests or responses. */
void
sl_http_parser_init(llhttp_t *parser, bool response)
{
	llhttp_init(
	    parser, response ? HTTP_RESPONSE : HTTP_REQUEST, &parser_settings);
}

/* sl_http_find_head_end over LEN contiguous bytes at P: memchr instead of
 * evbuffer searches (the usual case, a head that arrived in one read). */
static size_t
find_head_end_flat(const char *p, size_t len, size_t *scan)
{
	const char *lf;
	size_t at = *scan;

	while ((lf = memchr(p + at, '\n', len - at)) != NULL) {
		at = (size_t)(lf - p);
		/* Same rules as below: LF LF, or LF CR and one more byte. */
		if (at + 1 >= len || (p[at + 1] == '\r' && at + 2 >= len)) {
			*scan = at;
			return 0;
		}
		if (p[at + 1] == '\n')
			return at + 2;
		if (p[at + 1] == '\r')
			return at + 3;
		at++;
	}
	*scan = len;
	return 0;
}

/* Find the end of a head in BUF, resuming the scan at *SCAN. */
size_t
sl_http_find_head_end(struct evbuffer *buf, size_t *scan)
{
	struct evbuffer_ptr pos;
	struct evbuffer_iovec first;
	char next[2];
	size_t len = evbuffer_get_length(buf);
	ev_ssize_t got;

	/* Leading empty lines before a request are allowed (RFC 9112 2.2):
	 * llhttp skips them, so the search starts at the first LF anyway. */
	if (*scan >= len)
		return 0;
	if (evbuffer_peek(buf, -1, NULL, &first, 1) == 1 &&
	    first.iov_len == len)
		return find_head_end_flat(first.iov_base, len, scan);
	if (evbuffer_ptr_set(buf, &pos, *scan, EVBUFFER_PTR_SET) != 0)
		return 0;
	for (;;) {
		pos = evbuffer_search(buf, "\n", 1, &pos);
		if (pos.pos < 0) {
			*scan = len;
			return 0;
		}
		got = evbuffer_copyout_from(buf, &pos, next, sizeof next);
		/* next[0] is the LF itself; look at what follows it. */
		if (got < 2) {
			*scan = (size_t)pos.pos;
			return 0;
		}
		if (next[1] == '\n')
			return (size_t)pos.pos + 2;
		if (next[1] == '\r') {
			char three[3];

			got = evbuffer_copyout_from(buf, &pos, three, 3);
			if (got < 3) {
				*scan = (size_t)pos.pos;
				return 0;
			}
			/* LF CR LF ends the head; LF CR anything-else is a
			 * bare CR, which the parser refuses: end there. */
			return (size_t)pos.pos + 3;
		}
		if (evbuffer_ptr_set(buf, &pos, 1, EVBUFFER_PTR_ADD) != 0)
			return 0;
	}
}

/* The request line, past any leading empty lines (RFC 9112 2.2). */
static const char *
first_line(const char *base)
{
	while (base[0] == '\r' && base[1] == '\n')
		base += 2;
	return base;
}

/* The request line's major version digit if its version is exactly
 * "HTTP/" DIGIT "." DIGIT, else 0. */
static char
version_major(const char *line)
{
	const char *eol, *v;

	line = first_line(line);
	eol = strchr(line, '\r');
	if (eol == NULL)
		return 0;
	for (v = eol; v > line && v[-1] != ' '; v--)
		;
	if (eol - v == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' &&
	    v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9')
		return v[5];
	return 0;
}

/*
 * The request line must be exactly method SP target SP version CRLF
 * (RFC 9112 3): llhttp tolerates runs of spaces.
 */
static bool
request_line_ok(const char *line)
{
	const char *p;
	int spaces = 0;

	line = first_line(line);
	for (p = line; *p != '\r'; p++) {
		if (*p == ' ') {
			if (p == line || p[-1] == ' ' || p[1] == '\r')
				return false;
			spaces++;
		}
	}
	return spaces == 2;
}

/* Does the request line (past any empty lines) start with "PRI "? The
 * head may be nothing but empty lines: LEN bounds the look. */
static bool
is_pri(const char *base, size_t len)
{
	size_t i = 0;

	while (i + 1 < len && base[i] == '\r' && base[i + 1] == '\n')
		i += 2;
	return len - i >= 4 && memcmp(base + i, "PRI ", 4) == 0;
}

/*
 * A request line llhttp refused for its version: a well-formed version we
 * don't speak is 505, anything else a malformed request line (400). But
 * llhttp takes the method PRI only as HTTP/2's preface: in an HTTP/1.x
 * request, it is the method that is not implemented (501).
 */
static void
version_error(const char *base, struct sl_http_error *err)
{
	char major = version_major(base);

	if (major == '1' && strncmp(first_line(base), "PRI ", 4) == 0) {
		err->status = 501;
		err->reason = "method not implemented";
	} else if (major != 0) {
		err->status = 505;
		err->reason = "HTTP version not supported";
	} else {
		err->status = 400;
		err->reason = "malformed HTTP version";
	}
}

/* Map an llhttp error on a request to a status. */
static void
request_error(llhttp_t *parser, llhttp_errno_t e, const char *base,
    struct sl_http_error *err)
{
	size_t i;

	switch (e) {
	case HPE_INVALID_METHOD:
		/* A well-formed token we don't know is 501; junk is 400. */
		for (i = 0; tchar_table[(unsigned char)base[i]]; i++)
			;
		if (i > 0 && base[i] == ' ') {
			err->status = 501;
			err->reason = "method not implemented";
		} else {
			err->status = 400;
			err->reason = "invalid method";
		}
		return;
	case HPE_INVALID_VERSION:
		version_error(base, err);
		return;
	case HPE_UNEXPECTED_CONTENT_LENGTH:
		err->status = 400;
		err->reason = "more than one Content-Length, or Content-Length "
		              "with Transfer-Encoding";
		return;
	case HPE_INVALID_CONTENT_LENGTH:
		err->status = 400;
		err->reason = "invalid Content-Length";
		return;
	case HPE_INVALID_TRANSFER_ENCODING:
		err->status = 400;
		err->reason = "invalid Transfer-Encoding";
		return;
	default:
		err->status = 400;
		err->reason = llhttp_get_error_reason(parser);
		if (err->reason == NULL)
			err->reason = "malformed request";
		return;
	}
}

/* Bytes of a host name: RFC 3986's reg-name without "(),;=" ('%' apart). */
static const char host_table[256] = {
    ['a' ... 'z'] = 1,
    ['A' ... 'Z'] = 1,
    ['0' ... '9'] = 1,
    ['-'] = 1,
    ['.'] = 1,
    ['_'] = 1,
    ['~'] = 1,
    ['!'] = 1,
    ['$'] = 1,
    ['&'] = 1,
    ['\''] = 1,
    ['*'] = 1,
    ['+'] = 1,
};

/* Is S[I] the '%' of a %HH escape within S's N bytes? */
static bool
pct_escape_at(const char *s, size_t n, size_t i)
{
	return s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
	    isxdigit((unsigned char)s[i + 2]);
}

/* Is S (N bytes) an IP-literal's inside: an IPv6 address, or IPvFuture
 * ("v" HEXDIG+ "." then unreserved, sub-delims or ":"; RFC 3986 3.2.2)? */
static bool
ip_literal_ok(const char *s, size_t n)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;
	size_t i;

	if (n > 0 && (s[0] == 'v' || s[0] == 'V')) {
		for (i = 1; i < n && isxdigit((unsigned char)s[i]); i++)
			;
		if (i == 1 || i + 1 >= n || s[i] != '.')
			return false;
		for (i++; i < n; i++) {
			if (!isalnum((unsigned char)s[i]) &&
			    strchr("-._~!$&'()*+,;=:", s[i]) == NULL)
				return false;
		}
		return true;
	}
	/* An IPv6 zone (RFC 6874): "%25" then unreserved or %HH. */
	for (i = 0; i + 2 < n; i++) {
		if (s[i] == '%' && s[i + 1] == '2' && s[i + 2] == '5')
			break;
	}
	if (i + 2 < n) {
		size_t z = i + 3;

		if (z == n)
			return false;
		for (; z < n; z++) {
			unsigned char c = (unsigned char)s[z];

			if (pct_escape_at(s, n, z))
				z += 2;
			else if (!isalnum(c) && strchr("-._~", c) == NULL)
				return false;
		}
		n = i;
	}
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/*
 * Is S (N bytes) a Host value: uri-host [":" port] (RFC 9110 7.2)? The host
 * is an IP-literal in brackets, or a name (or IPv4 address) of letters,
 * digits, "-._~!$&'*+" and %HH escapes: RFC 3986's reg-name without the
 * list-like "(),;=", and never userinfo or a path. The port is digits.
 * Empty is allowed (RFC 9112 3.2). A Host that two parsers could split
 * two ways (first or last colon, unbalanced brackets) is refused.
 */
static bool
host_chars_ok(const char *s, uint32_t n)
{
	uint32_t i = 0;

	if (n > 0 && s[0] == '[') {
		const char *end = memchr(s, ']', n);

		if (end == NULL || !ip_literal_ok(s + 1, (size_t)(end - s) - 1))
			return false;
		i = (uint32_t)(end - s) + 1;
	} else {
		for (; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (host_table[c])
				continue;
			if (c != '%')
				break;
			if (!pct_escape_at(s, n, i))
				return false;
			i += 2;
		}
	}
	if (i == n)
		return true;
	if (s[i] != ':')
		return false;
	for (i++; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/* Checks on a request head that need the whole head. */
static int
check_request(llhttp_t *parser, const char *base, struct sl_http_head *head,
    struct sl_http_error *err)
{
	const char *t = base + head->target_off;
	uint32_t i, n;

	if (!request_line_ok(base)) {
		err->status = 400;
		err->reason = "malformed request line";
		return -1;
	}
	if (head->major != 1) {
		err->status = 505;
		err->reason = "HTTP version not supported";
		return -1;
	}
	if (head->method == HTTP_CONNECT) {
		err->status = 501;
		err->reason = "CONNECT not supported";
		return -1;
	}
	if (head->target_len == 0) {
		err->status = 400;
		err->reason = "empty request target";
		return -1;
	}
	if (t[0] == '*') {
		if (head->target_len != 1 || head->method != HTTP_OPTIONS) {
			err->status = 400;
			err->reason = "invalid asterisk-form target";
			return -1;
		}
	} else if (t[0] != '/') {
		if (!(head->target_len > 7 &&
		        (strncasecmp(t, "http://", 7) == 0 ||
		            strncasecmp(t, "https://", 8) == 0))) {
			err->status = 400;
			err->reason = "invalid request target";
			return -1;
		}
		/* The authority is held to the rules of a Host header:
		 * never empty, no userinfo (RFC 9110 4.2.1, 4.2.4). */
		i = t[4] == ':' ? 7 : 8;
		for (n = i; n < head->target_len && t[n] != '/' && t[n] != '?';)
			n++;
		if (n == i || !host_chars_ok(t + i, n - i)) {
			err->status = 400;
			err->reason = n == i ? "empty host in request target"
			                     : "invalid host in request target";
			return -1;
		}
	}
	for (i = 0; i < head->target_len; i++) {
		unsigned char c = (unsigned char)t[i];

		if (c <= 0x20 || c == 0x7f || c == '#') {
			err->status = 400;
			err->reason = "invalid character in request target";
			return -1;
		}
	}
	if (head->minor >= 1 && head->host_idx < 0) {
		err->status = 400;
		err->reason = "missing Host header";
		return -1;
	}
	if (head->host_idx >= 0 &&
	    !host_chars_ok(base + head->hdrs[head->host_idx].value_off,
	        head->hdrs[head->host_idx].value_len)) {
		err->status = 400;
		err->reason = "invalid Host header";
		return -1;
	}
	if ((head->flags & F_TRANSFER_ENCODING) && head->minor == 0) {
		err->status = 400;
		err->reason = "Transfer-Encoding in an HTTP/1.0 request";
		return -1;
	}
	head->expect_continue = false;
	for (i = 0; i < head->nhdrs; i++) {
		if (head->kinds[i] != SL_HDR_EXPECT)
			continue;
		if (!word_is(base + head->hdrs[i].value_off,
		        head->hdrs[i].value_len, "100-continue")) {
			err->status = 417;
			err->reason = "unsupported expectation";
			return -1;
		}
		head->expect_continue = true;
	}
	(void)parser;
	return 0;
}

/*
 * Line-level checks llhttp 8 does not make in its default mode: every LF
 * must follow a CR, every CR must precede an LF, and no line after the
 * first may start with whitespace (obs-fold, or whitespace between the
 * request line and the first field). Leading empty lines are allowed.
 */
static const char *
check_lines(const char *p, size_t len)
{
	const char *end = p + len, *s = p, *lf, *cr;

	while (end - s >= 2 && s[0] == '\r' && s[1] == '\n')
		s += 2;
	/* A line at a time, by memchr: a byte loop was ~5 instructions
	 * per byte of every request head. */
	while (s < end) {
		lf = memchr(s, '\n', (size_t)(end - s));
		cr = memchr(s, '\r', (size_t)((lf != NULL ? lf : end) - s));
		/* The line's first CR must be the one right before its LF. */
		if (cr != NULL && (lf == NULL || cr != lf - 1))
			return "bare CR in request head";
		if (lf == NULL)
			break;
		if (cr == NULL)
			return "bare LF in request head";
		if (end - lf > 1 && (lf[1] == ' ' || lf[1] == '\t'))
			return "obs-fold (line starting with whitespace)";
		s = lf + 1;
	}
	return NULL;
}

/*
 * Does a Transfer-Encoding header, as sluice reads it (whitespace
 * trimmed), end in "chunked" while llhttp did not frame the message as
 * chunked? For requests any Transfer-Encoding without chunked framing is
 * refused (only exactly "chunked" is accepted).
 */
static bool
te_mismatch(const struct sl_http_head *head, const char *base, uint16_t flags)
{
	uint32_t i;

	if (flags & F_CHUNKED)
		return false;
	for (i = 0; i < head->nhdrs; i++) {
		const char *v;
		uint32_t n;

		if (head->kinds[i] != SL_HDR_TRANSFER_ENCODING)
			continue;
		if (!head->response)
			return true;
		v = base + head->hdrs[i].value_off;
		n = head->hdrs[i].value_len;
		if (last_coding_chunked(v, n))
			return true;
	}
	return false;
}

/* Is the status code of the status line at BASE three digits (RFC 9112
 * 4)? llhttp takes "0200" for 200. */
static bool
three_digits(const char *base, size_t len)
{
	const char *sp = memchr(base, ' ', len < 32 ? len : 32);
	size_t at = sp != NULL ? (size_t)(sp - base) + 1 : len;

	return len >= at + 4 && isdigit((unsigned char)base[at]) &&
	    isdigit((unsigned char)base[at + 1]) &&
	    isdigit((unsigned char)base[at + 2]) &&
	    (base[at + 3] == ' ' || base[at + 3] == '\r');
}

/* Parse one head (request or response) that is complete in BASE. */
int
sl_http_parse_head(llhttp_t *parser, const char *base, size_t len,
    int req_method, struct sl_http_head *head, struct sl_http_error *err)
{
	struct parse_ctx ctx;
	llhttp_errno_t e;
	const char *pos;

	if (parser->type == HTTP_REQUEST &&
	    (err->reason = check_lines(base, len)) != NULL) {
		err->status = 400;
		return -1;
	}
	memset(&ctx, 0, sizeof ctx);
	ctx.head_mode = true;
	ctx.base = base;
	ctx.head = head;
	ctx.err = err;
	ctx.req_method = req_method;
	err->status = 0;
	err->reason = NULL;

	head->response = parser->type == HTTP_RESPONSE;
	head->nhdrs = 0;
	head->host_idx = -1;
	head->target_off = head->target_len = 0;
	head->conn_tokens = 0;
	head->upgrade = false;

	llhttp_reset(parser);
	parser->data = &ctx;
	e = llhttp_execute(parser, base, len);
	parser->data = NULL;
	if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		if (err->status == 0) {
			if (head->response) {
				err->status = 502;
				err->reason = "malformed response from origin";
			} else if (is_pri(base, len)) {
				/* llhttp reads PRI only as HTTP/2's preface
				 * (RFC 9113 3.4) and stops after its line. */
				version_error(base, err);
			} else if (e == HPE_OK) {
				err->status = 400;
				err->reason = "incomplete request head";
			} else {
				request_error(parser, e, base, err);
			}
		}
		return -1;
	}
	pos = llhttp_get_error_pos(parser);
	head->head_len = (uint32_t)(pos - base);
	head->method = parser->method;
	head->major = parser->http_major;
	head->minor = parser->http_minor;
	head->status = parser->status_code;
	head->flags = parser->flags;
	head->content_length = parser->content_length;
	/* "close" wins over "keep-alive" in one message, whatever its
	 * version (RFC 9112 9.3); llhttp lets an HTTP/1.0 keep-alive win. */
	head->keep_alive = llhttp_should_keep_alive(parser) != 0 &&
	    !(head->conn_tokens & SL_CONN_CLOSE);
	if (head->response && ctx.te) {
		/* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding
		 * has faulty framing: close after it. 6.3: with
		 * Content-Length too (even an empty Transfer-Encoding), the
		 * two framings disagree: an error. */
		if (head->minor == 0)
			head->keep_alive = false;
		if (parser->flags & F_CONTENT_LENGTH) {
			err->status = 502;
			err->reason = "Transfer-Encoding and Content-Length";
			return -1;
		}
	}
	if (te_mismatch(head, base, parser->flags)) {
		/* Our trimmed view of Transfer-Encoding says chunked but
		 * llhttp will not frame the body as chunked (e.g. a tab after
		 * the value): two readings of one message. Refuse it. */
		err->status = head->response ? 502 : 400;
		err->reason = "ambiguous Transfer-Encoding";
		return -1;
	}
	if (head->response) {
		head->upgrade = head->status == 101;
		/* Paused at the end of the head, llhttp has not yet decided
		 * that "Content-Length: 0" means no body. */
		head->has_body = !ctx.message_done &&
		    !((parser->flags & F_CONTENT_LENGTH) &&
		        !(parser->flags & F_CHUNKED) &&
		        parser->content_length == 0);
		if (head->status < 100 || head->status > 599 ||
		    !three_digits(base, len)) {
			err->status = 502;
			err->reason = "invalid status code from origin";
			return -1;
		}
		if (head->major != 1) {
			err->status = 502;
			err->reason = "origin answered in another HTTP version";
			return -1;
		}
		/* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ): it is
		 * passed on to the client, so nothing else may be in it. */
		for (uint32_t i = 0; i < head->target_len; i++) {
			unsigned char c =
			    (unsigned char)base[head->target_off + i];

			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				err->status = 502;
				err->reason =
				    "control character in reason phrase";
				return -1;
			}
		}
	} else {
		/* RFC 9110 7.8: a server ignores Upgrade in HTTP/1.0; and
		 * sluice ignores an offer of h2c alone (see upgrade_h2c). */
		head->upgrade = (parser->flags & F_UPGRADE) != 0 &&
		    (head->conn_tokens & SL_CONN_UPGRADE) != 0 &&
		    parser->http_minor > 0 &&
		    sl_http_upgrade_h2c(head, base) != SL_H2C_ONLY;
		head->has_body = (parser->flags & F_CHUNKED) != 0 ||
		    ((parser->flags & F_CONTENT_LENGTH) != 0 &&
		        parser->content_length > 0);
		if (check_request(parser, base, head, err) != 0)
			return -1;
	}
	if (head->head_len != len && !(head->response && ctx.message_done)) {
		/* The head ended before the terminator we found: impossible
		 * with a strict parser, so refuse rather than guess. */
		err->status = head->response ? 502 : 400;
		err->reason = "inconsistent head framing";
		return -1;
	}
	if (e == HPE_PAUSED)
		llhttp_resume(parser);
	return 0;
}

/*
 * Between calls a body parser's data pointer (NULL while no callback can
 * run) says whether the last byte it took was a CR, so that a CRLF split
 * across two reads still reads as one; or whether its last bytes were an
 * LF and white space, so that an obs-fold split so is found.
 */
static char cr_taken, lf_taken;
#define CR_TAG ((void *)&cr_taken)
#define LF_TAG ((void *)&lf_taken)

/* Do the LEN bytes at B end a line and then white space (*LF when they
 * are white space only: it stays what the bytes before them said)? */
static void
tail_lf(const char *b, size_t len, bool *lf)
{
	while (len > 0 && (b[len - 1] == ' ' || b[len - 1] == '\t'))
		len--;
	if (len > 0)
		*lf = b[len - 1] == '\n';
}

/* SRC's byte at POS (which must be there). */
static char
byte_at(struct evbuffer *src, size_t pos)
{
	struct evbuffer_ptr ptr;
	char c = 0;

	if (evbuffer_ptr_set(src, &ptr, pos, EVBUFFER_PTR_SET) == 0)
		(void)evbuffer_copyout_from(src, &ptr, &c, 1);
	return c;
}

/* Do the two bytes before offset POS of SRC read CRLF? PREV_CR: the
 * byte before SRC's first was a CR. */
static bool
ends_crlf(struct evbuffer *src, size_t pos, bool prev_cr)
{
	if (pos == 0 || byte_at(src, pos - 1) != '\n')
		return false;
	return pos >= 2 ? byte_at(src, pos - 2) == '\r' : prev_cr;
}

/*
 * Run PARSER over SRC's bytes from offset FROM on without taking them:
 * *USED gets how many belong to the current message. Returns 1 when the
 * message ended, 0 when SRC ran out first, -1 on a framing error (*WHY).
 */
static int
run_body(llhttp_t *parser, struct evbuffer *src, size_t from,
    struct body_ctx *ctx, size_t *used, const char **why)
{
	struct evbuffer_iovec vec[16];
	size_t consumed = from;
	int n, i, done = 0;
	llhttp_errno_t e;
	bool prev_cr = parser->data == CR_TAG;

	ctx->lf_before = parser->data == LF_TAG;

	while (!done && consumed < evbuffer_get_length(src)) {
		struct evbuffer_ptr ptr;

		evbuffer_ptr_set(src, &ptr, consumed, EVBUFFER_PTR_SET);
		n = evbuffer_peek(src, -1, &ptr, vec, 16);
		if (n > 16)
			n = 16;
		for (i = 0; i < n; i++) {
			const char *b = vec[i].iov_base;

			parser->data = &ctx->p;
			ctx->exec_start = b;
			e = llhttp_execute(parser, b, vec[i].iov_len);
			parser->data = NULL;
			if (e == HPE_OK) {
				consumed += vec[i].iov_len;
				if (parser->flags &
				    F_TRAILING) /* in trailers */
					tail_lf(
					    b, vec[i].iov_len, &ctx->lf_before);
				continue;
			}
			if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
				consumed +=
				    (size_t)(llhttp_get_error_pos(parser) - b);
				done = 1;
				break;
			}
			*why = llhttp_get_error_reason(parser);
			if (*why == NULL)
				*why = llhttp_errno_name(e);
			return -1;
		}
	}
	/* llhttp takes a bare LF for the empty line that ends a chunked
	 * body's trailer section, even in strict mode: a next hop that does
	 * not would read on into the next message. */
	if (done && (parser->flags & F_CHUNKED) &&
	    !ends_crlf(src, consumed, prev_cr)) {
		*why = "chunked body not ended by CRLF";
		return -1;
	}
	if (consumed > from)
		parser->data = byte_at(src, consumed - 1) == '\r' ? CR_TAG
		    : ctx->lf_before                              ? LF_TAG
		                                                  : NULL;
	else if (prev_cr || ctx->lf_before)
		parser->data = prev_cr ? CR_TAG : LF_TAG;
	*used = consumed - from;
	return done;
}

/* Body bytes up to this are copied in behind what the destination holds
 * (a head, usually) rather than moved as a chain of their own: a small
 * response then leaves in one send() instead of a two-part sendmsg(). */
#define BODY_COPY_MAX 2048

/* Move N bytes from SRC to DST. */
static void
move_body(struct evbuffer *src, struct evbuffer *dst, size_t n)
{
	struct evbuffer_iovec v;

	/* One extent: the first chain holds all N bytes. */
	if (n <= BODY_COPY_MAX &&
	    evbuffer_peek(src, (ev_ssize_t)n, NULL, &v, 1) == 1 &&
	    evbuffer_add(dst, v.iov_base, n) == 0) {
		evbuffer_drain(src, n);
		return;
	}
	evbuffer_remove_buffer(src, dst, n);
}

/* Carried in *EXT between calls, beside the extension bytes: a trailer
 * field's value has begun (its ": " has gone out); the body is chunked
 * (known once the first call has looked: BODY_KNOWN). llhttp clears
 * F_CHUNKED while it reads a Transfer-Encoding field, also one in the
 * trailers, so the flags tell the framing only at the body's start. */
#define TRAILER_VALUE (1u << 31)
#define BODY_CHUNKED  (1u << 30)
#define BODY_KNOWN    (1u << 29)
#define EXT_BYTES     (BODY_KNOWN - 1)

/* Feed body bytes through the parser and move them on. */
int
sl_http_forward_body(llhttp_t *parser, struct evbuffer *src,
    struct evbuffer *dst, bool dechunk, uint32_t *ext, const char **why)
{
	uint32_t state = ext != NULL ? *ext : 0;
	struct body_ctx ctx;
	size_t consumed = 0;
	int done;

	memset(&ctx, 0, sizeof ctx);
	if (!(state & BODY_KNOWN))
		state |= BODY_KNOWN |
		    ((parser->flags & F_CHUNKED) ? BODY_CHUNKED : 0);
	if (state & BODY_CHUNKED) {
		ctx.p.out = dst;
		ctx.p.rechunk = !dechunk;
	}
	ctx.p.ext_len = state & EXT_BYTES;
	ctx.p.trailer_value = (state & TRAILER_VALUE) != 0;
	done = run_body(parser, src, 0, &ctx, &consumed, why);
	if (ext != NULL)
		*ext = (state & (BODY_KNOWN | BODY_CHUNKED)) | ctx.p.ext_len |
		    (ctx.p.trailer_value ? TRAILER_VALUE : 0);
	if (done < 0)
		return -1;
	if (ctx.p.out != NULL)
		evbuffer_drain(src, consumed);
	else if (consumed > 0)
		move_body(src, dst, consumed);
	return done;
}

/* Would forwarding SRC from FROM on end the message? A copy of the parser
 * runs, so PARSER and SRC stay as they are. */
bool
sl_http_body_buffered(const llhttp_t *parser, struct evbuffer *src, size_t from)
{
	llhttp_t copy = *parser;
	struct body_ctx ctx;
	const char *why = NULL;
	size_t used;

	memset(&ctx, 0, sizeof ctx);
	return run_body(&copy, src, from, &ctx, &used, &why) != 0;
}

/* The peer closed: does that end a close-delimited body cleanly? */
int
sl_http_finish_body(llhttp_t *parser)
{
	static const char none[1];
	struct body_ctx ctx;
	llhttp_errno_t e;

	memset(&ctx, 0, sizeof ctx);
	ctx.exec_start = none;
	parser->data = &ctx.p;
	/* A parser paused right after the head has not entered the body
	 * state yet (no body byte was fed): let it, or finish would call an
	 * empty close-delimited body an error. */
	llhttp_execute(parser, none, 0);
	e = llhttp_finish(parser);
	parser->data = NULL;
	if ((e == HPE_OK || e == HPE_PAUSED) && ctx.p.message_done)
		return 1;
	return -1;
}

/* Does header I's name equal NAME, ignoring case? */
bool
sl_http_hdr_is(const struct sl_http_head *head, const char *base, uint32_t i,
    const char *name, size_t name_len)
{
	return head->hdrs[i].name_len == name_len &&
	    strncasecmp(base + head->hdrs[i].name_off, name, name_len) == 0;
}

/* Index of the first header called NAME, or -1. */
int
sl_http_find_hdr(const struct sl_http_head *head, const char *base,
    const char *name, size_t name_len)
{
	uint32_t i;

	for (i = 0; i < head->nhdrs; i++) {
		if (sl_http_hdr_is(head, base, i, name, name_len))
			return (int)i;
	}
	return -1;
}

void
sl_http_date(char buf[SL_HTTP_DATE_LEN], time_t t)
{
	static const char days[7][4] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, SL_HTTP_DATE_LEN, "%s, %02d %s %04d %02d:%02d:%02d GMT",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Reason phrases for the statuses sluice itself sends. */
const char *
sl_http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* Allocate a head with room for MAX_HDRS headers. */
struct sl_http_head *
sl_http_head_new(uint32_t max_hdrs)
{
	struct sl_http_head *head = calloc(1, sizeof *head);

	if (head == NULL)
		return NULL;
	head->max_hdrs = max_hdrs;
	head->hdrs = calloc(max_hdrs ? max_hdrs : 1, sizeof *head->hdrs);
	head->kinds = calloc(max_hdrs ? max_hdrs : 1, 1);
	if (head->hdrs == NULL || head->kinds == NULL) {
		sl_http_head_free(head);
		return NULL;
	}
	return head;
}

void
sl_http_head_free(struct sl_http_head *head)
{
	if (head == NULL)
		return;
	free(head->hdrs);
	free(head->kinds);
	free(head);
}

uint32_t
sl_http_upgrade_protocols(const struct sl_http_head *head, const char *base)
{
	uint32_t mask = 0, i;

	for (i = 0; i < head->nhdrs; i++) {
		const char *v = base + head->hdrs[i].value_off;
		size_t len = head->hdrs[i].value_len, at = 0, start, end, k;

		if (head->kinds[i] != SL_HDR_UPGRADE)
			continue;
		while (list_next(v, len, &at, &start, &end)) {
			uint32_t h = 2166136261u; /* FNV-1a of the name */

			for (k = start; k < end && v[k] != '/'; k++)
				h = (h ^ (unsigned char)(v[k] | 0x20)) *
				    16777619u;
			if (k > start)
				mask |= 1u << (h % 32);
		}
	}
	return mask;
}

enum sl_h2c
sl_http_upgrade_h2c(const struct sl_http_head *head, const char *base)
{
	size_t h2c = 0, other = 0;
	uint32_t i;

	for (i = 0; i < head->nhdrs; i++) {
		const char *v = base + head->hdrs[i].value_off;
		size_t len = head->hdrs[i].value_len, at = 0, start, end;

		if (head->kinds[i] != SL_HDR_UPGRADE)
			continue;
		while (list_next(v, len, &at, &start, &end)) {
			if (word_is(v + start, end - start, "h2c"))
				h2c++;
			else
				other++;
		}
	}
	return h2c == 0 ? SL_H2C_NONE : other == 0 ? SL_H2C_ONLY : SL_H2C_TOO;
}

/* 1 for a "." segment, 2 for "..", else 0; a dot may be spelled %2e. */
static int
dot_segment(const char *s, size_t n)
{
	int dots = 0;

	while (n > 0) {
		if (s[0] == '.') {
			s++;
			n--;
		} else if (n >= 3 && s[0] == '%' && s[1] == '2' &&
		    (s[2] | 0x20) == 'e') {
			s += 3;
			n -= 3;
		} else {
			return 0;
		}
		if (++dots > 2)
			return 0;
	}
	return dots;
}

/* Does any byte of W equal '.' or '%'? Wrong at most that way. */
static inline bool
word_has_dot_or_pct(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL;
	uint64_t dot = w ^ (ones * '.'), pct = w ^ (ones * '%');

	return ((((dot - ones) & ~dot) | ((pct - ones) & ~pct)) & ones << 7) !=
	    0;
}

/*
 * May the target T have a segment that starts with '.' or '%'? Most have
 * no '.' or '%' at all, so they are looked for eight bytes at a time (the
 * last word overlapping the one before it), and only a target that has
 * one is looked at byte by byte. The query is looked at too: it costs
 * less than finding where it starts.
 */
static bool
may_have_dot_segment(const char *t, size_t n)
{
	uint64_t w;
	size_t i;

	if (n >= 8) {
		for (i = 0; i + 8 < n; i += 8) {
			memcpy(&w, t + i, 8);
			if (word_has_dot_or_pct(w))
				goto bytes;
		}
		memcpy(&w, t + n - 8, 8);
		if (!word_has_dot_or_pct(w))
			return false;
	}
bytes:
	for (i = 1; i < n; i++) {
		if ((t[i] == '.' || t[i] == '%') && t[i - 1] == '/')
			return true;
	}
	return false;
}

size_t
sl_http_normalize_path(char *path, size_t len)
{
	const char *q;
	size_t plen, in = 0, out = 0;

	if (path[0] != '/' || !may_have_dot_segment(path, len))
		return len;
	q = memchr(path, '?', len);
	plen = q != NULL ? (size_t)(q - path) : len;
	/* The output is a run of "/segment"s, never longer than the input
	 * read so far, so it is written over the input. */
	while (in < plen) {
		size_t end = in + 1;
		int dots;

		while (end < plen && path[end] != '/')
			end++;
		dots = dot_segment(path + in + 1, end - in - 1);
		if (dots == 0) {
			memmove(path + out, path + in, end - in);
			out += end - in;
		} else {
			if (dots == 2 && out > 0) {
				do
					out--;
				while (path[out] != '/');
			}
			/* A dot-segment at the end leaves a directory. */
			if (end == plen)
				path[out++] = '/';
		}
		in = end;
	}
	memmove(path + out, path + plen, len - plen);
	return out + len - plen;
}

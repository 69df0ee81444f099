/*
 * tests/origin/origin_conn.c: one client connection of sl-origin.
 *
 * A connection is a small state machine driven by its bufferevent (see
 * enum conn_state). The request head is copied raw while it is parsed (for
 * echo and /__origin/last), the body is consumed as it arrives (counted,
 * kept up to 1 MiB in echo mode), then the answer is queued, possibly after
 * a delay, possibly as a generated body produced only as the output drains.
 *
 * Pipelining: llhttp pauses at the end of each message and is resumed only
 * once that answer is fully queued, so answers leave in request order and
 * a client that does not read stops us parsing (output above OUT_HIGH)
 * and then reading (input above IN_HIGH).
 *
 * Nothing here allocates per request on the plain keep-alive path: the head
 * buffer and echo buffer live as long as the connection, small answers are
 * built on the stack and added with one copy, large generated bodies are
 * references into one static pattern block.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <llhttp.h>

#include "tests/origin/origin.h"

#define ECHO_MAX     (1024 * 1024) /* request body bytes kept for echo */
#define OUT_LOW      (64 * 1024)   /* refill or resume below this */
#define OUT_HIGH     (256 * 1024)  /* stop queueing above this */
#define IN_HIGH      (1024 * 1024) /* stop reading above this */
#define IO_MAX       (256 * 1024)  /* largest single read or write */
#define PATTERN_LEN  (64 * 1024)   /* generated bodies repeat this block */
#define SMALL_BODY   4096          /* bodies copied along with the head */
#define HDR_MAX      2048          /* room for a response head */
#define UPGRADE_MAX  512           /* longest Upgrade value echoed back */
#define PARTIAL_LEN  10            /* body bytes sent by partial=1 */
#define PARTIAL_CL   "1000"        /* Content-Length announced by partial=1 */
#define LINGER_SECS  2             /* wait for the client's FIN at most this */
#define DELAY_MAX_MS 3600000       /* delay= bound (one hour) */

enum conn_state {
	ST_READ_HEAD, /* parsing a request head */
	ST_READ_BODY, /* consuming a request body */
	ST_WAIT,      /* request complete, answer delayed by the timer */
	ST_STREAM,    /* answer head queued, generating the body */
	ST_HANG,      /* hang=1: never answer, discard input */
	ST_TUNNEL,    /* after 101: echo every byte back */
	ST_FLUSH,     /* last answer queued, waiting for the output to drain */
	ST_LINGER,    /* write side shut, waiting for the client's FIN */
	ST_DEAD       /* closed; freed from the timer callback */
};

/* Paths under /__origin/: answered, never counted as requests. */
enum special { SP_NONE, SP_STATS, SP_RESET, SP_LAST, SP_UNKNOWN };

/* How a response body is delimited. */
enum frame {
	FRAME_LENGTH,  /* Content-Length */
	FRAME_CHUNKED, /* Transfer-Encoding: chunked */
	FRAME_EOF,     /* neither: closing the connection ends it */
	FRAME_PARTIAL, /* Content-Length: 1000 but 10 bytes, then close */
	FRAME_NONE     /* no body at all (1xx, 204, 304) */
};

/* What one request asks for: parsed head plus query overrides. */
struct req {
	uint8_t method;
	uint8_t major;
	uint8_t minor;
	bool keepalive;
	bool upgrade;
	bool body_expected;
	enum special special;
	const char *target; /* points into conn->head */
	size_t target_len;
	const char *upgrade_val; /* points into conn->head */
	size_t upgrade_len;

	bool bad_query;
	int status; /* 0: not overridden */
	bool has_delay;
	uint64_t delay_ms;
	bool has_size;
	uint64_t size;
	bool chunked;
	bool close;
	bool hang;
	bool reset;
	bool partial;
	bool eof;
	bool echo;
};

/* One client connection; owned by its worker's list. */
struct sl_origin_conn {
	struct sl_origin_worker *w;
	struct bufferevent *bev;
	struct event *timer; /* delay, linger timeout and deferred free */
	llhttp_t parser;
	enum conn_state state;
	struct sl_origin_conn *prev;
	struct sl_origin_conn *next;

	char *head; /* raw bytes of the current request head */
	size_t head_len;
	size_t head_cap;
	struct req req;
	bool msg_done;           /* parser reached the end of the message */
	uint64_t n;              /* X-Origin-Request of the current answer */
	uint64_t body_bytes;     /* request body bytes received */
	struct evbuffer *echo;   /* echoed body, or /__origin/last copy */
	unsigned long nrequests; /* requests seen on this connection */

	uint64_t gen_left; /* generated body bytes still to queue */
	size_t gen_off;    /* offset in the pattern block */
	bool gen_chunked;
	bool resp_close;   /* close once the answer is flushed */
	bool resp_upgrade; /* tunnel once the 101 is queued */
	bool rst;          /* close with RST instead of FIN */
	bool peer_eof;     /* client shut its write side */
	bool out_blocked;  /* stopped parsing on a full output */
	bool read_paused;  /* tunnel: reading off on a full output */
};

/* A response to queue: body = mem, then buf, then gen pattern bytes. */
struct resp {
	int status;
	const char *ctype;
	const char *mem;
	size_t mem_len;
	struct evbuffer *buf; /* moved into the output; may be NULL */
	uint64_t gen;
	enum frame frame;
	bool close;
};

/* A bounded output cursor for building a response head on the stack. */
struct sbuf {
	char *p;
	char *end;
};

/* Status codes with their reason phrases. */
static const struct {
	int code;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {413, "Content Too Large"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

static char pattern[PATTERN_LEN]; /* generated body bytes */
static char name_body[80];        /* default body "NAME\n" */
static size_t name_body_len;
static char origin_hdr[128]; /* "X-Origin: NAME\r\n..." */
static size_t origin_hdr_len;
static llhttp_settings_t parser_settings; /* read-only after init */

static void conn_process(struct sl_origin_conn *);
static void conn_finish(struct sl_origin_conn *);
static void conn_close(struct sl_origin_conn *);

/* Returns the reason phrase of status, or "Unknown". */
static const char *
status_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		if (reasons[i].code == status)
			return reasons[i].reason;
	}
	return "Unknown";
}

/* Appends n bytes to b, truncating at its end (callers size b). */
static void
sb_put(struct sbuf *b, const void *s, size_t n)
{
	if (n > (size_t)(b->end - b->p))
		n = b->end - b->p;
	if (n == 0)
		return;
	memcpy(b->p, s, n);
	b->p += n;
}

/* Appends a C string to b. */
static void
sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* Appends v in decimal to b. */
static void
sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	char *p = tmp + sizeof(tmp);

	do {
		*--p = '0' + v % 10;
		v /= 10;
	} while (v != 0);
	sb_put(b, p, tmp + sizeof(tmp) - p);
}

/* Appends v in hexadecimal to b (chunk sizes). */
static void
sb_hex(struct sbuf *b, uint64_t v)
{
	char tmp[20];
	char *p = tmp + sizeof(tmp);

	do {
		*--p = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v != 0);
	sb_put(b, p, tmp + sizeof(tmp) - p);
}

/* Queues a chunk-size line for len bytes. */
static void
chunk_head(struct evbuffer *out, uint64_t len)
{
	char tmp[24];
	struct sbuf b = {tmp, tmp + sizeof(tmp)};

	sb_hex(&b, len);
	sb_put(&b, "\r\n", 2);
	evbuffer_add(out, tmp, b.p - tmp);
}

/* Case-insensitive comparison of a byte range with a C string. */
static bool
eq_ci(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* Parses an unsigned decimal range into *v; false if not a number. */
static bool
parse_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t r = 0;
	size_t i;

	if (len == 0 || len > 19)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		r = r * 10 + (s[i] - '0');
	}
	*v = r;
	return true;
}

/* Parses a boolean query value ("", 1, true, yes / 0, false, no). */
static bool
parse_flag(const char *s, size_t len, bool *v)
{
	if (len == 0 || eq_ci(s, len, "1") || eq_ci(s, len, "true") ||
	    eq_ci(s, len, "yes"))
		*v = true;
	else if (eq_ci(s, len, "0") || eq_ci(s, len, "false") ||
	    eq_ci(s, len, "no"))
		*v = false;
	else
		return false;
	return true;
}

/* Applies one query parameter k=v to q; unknown keys are ignored. */
static void
query_param(
    struct req *q, const char *k, size_t klen, const char *v, size_t vlen)
{
	static const struct {
		const char *key;
		size_t flag; /* offset of a bool in struct req, or 0 */
	} flags[] = {
	    {"chunked", offsetof(struct req, chunked)},
	    {"close", offsetof(struct req, close)},
	    {"hang", offsetof(struct req, hang)},
	    {"reset", offsetof(struct req, reset)},
	    {"partial", offsetof(struct req, partial)},
	    {"eof", offsetof(struct req, eof)},
	    {"echo", offsetof(struct req, echo)},
	};
	uint64_t u;
	size_t i;

	if (eq_ci(k, klen, "status")) {
		if (!parse_u64(v, vlen, &u) || u < 200 || u > 599)
			q->bad_query = true;
		else
			q->status = (int)u;
		return;
	}
	if (eq_ci(k, klen, "delay")) {
		if (!parse_u64(v, vlen, &u) || u > DELAY_MAX_MS)
			q->bad_query = true;
		else {
			q->has_delay = true;
			q->delay_ms = u;
		}
		return;
	}
	if (eq_ci(k, klen, "size")) {
		if (!parse_u64(v, vlen, &u))
			q->bad_query = true;
		else {
			q->has_size = true;
			q->size = u;
		}
		return;
	}
	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (eq_ci(k, klen, flags[i].key)) {
			if (!parse_flag(
			        v, vlen, (bool *)((char *)q + flags[i].flag)))
				q->bad_query = true;
			return;
		}
	}
}

/* Splits the query string s into parameters and applies them to q. */
static void
query_parse(struct req *q, const char *s, size_t len)
{
	const char *end = s + len, *amp, *eq;

	while (s < end) {
		amp = memchr(s, '&', end - s);
		if (amp == NULL)
			amp = end;
		eq = memchr(s, '=', amp - s);
		if (eq == NULL)
			query_param(q, s, amp - s, "", 0);
		else
			query_param(q, s, eq - s, eq + 1, amp - eq - 1);
		s = amp + 1;
	}
}

/* Classifies the request target: its path, and its query overrides. */
static void
target_parse(struct req *q)
{
	const char *s = q->target, *end = q->target + q->target_len;
	const char *qm, *slash;
	size_t plen;

	/* absolute-form: skip scheme and authority */
	if (q->target_len > 7 && strncasecmp(s, "http", 4) == 0) {
		slash = memchr(s, ':', end - s);
		if (slash != NULL && end - slash > 3 && slash[1] == '/' &&
		    slash[2] == '/') {
			s = slash + 3;
			while (s < end && *s != '/' && *s != '?')
				s++;
		}
	}
	qm = memchr(s, '?', end - s);
	plen = (qm != NULL ? qm : end) - s;
	if (plen >= 10 && memcmp(s, "/__origin/", 10) == 0) {
		if (plen == 15 && memcmp(s + 10, "stats", 5) == 0)
			q->special = SP_STATS;
		else if (plen == 15 && memcmp(s + 10, "reset", 5) == 0)
			q->special = SP_RESET;
		else if (plen == 14 && memcmp(s + 10, "last", 4) == 0)
			q->special = SP_LAST;
		else
			q->special = SP_UNKNOWN;
		return;
	}
	if (qm != NULL)
		query_parse(q, qm + 1, end - qm - 1);
}

/*
 * Reads what the parser does not give us from the raw head (already
 * validated by llhttp): the target, Expect and Upgrade. Returns whether
 * the client asked for 100-continue.
 */
static bool
head_scan(struct sl_origin_conn *c)
{
	struct req *q = &c->req;
	const char *p = c->head, *end = c->head + c->head_len;
	const char *line, *eol, *colon, *v, *ve;
	bool expect = false;

	/* request line: METHOD SP target SP version */
	line = memchr(p, ' ', end - p);
	if (line != NULL) {
		v = line + 1;
		ve = memchr(v, ' ', end - v);
		if (ve != NULL) {
			q->target = v;
			q->target_len = ve - v;
		}
	}
	eol = memchr(p, '\n', end - p);
	while (eol != NULL && eol + 1 < end) {
		line = eol + 1;
		eol = memchr(line, '\n', end - line);
		if (eol == NULL)
			break;
		colon = memchr(line, ':', eol - line);
		if (colon == NULL)
			continue;
		v = colon + 1;
		ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v &&
		    (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (eq_ci(line, colon - line, "expect"))
			expect = eq_ci(v, ve - v, "100-continue");
		else if (eq_ci(line, colon - line, "upgrade")) {
			q->upgrade_val = v;
			q->upgrade_len = ve - v;
		}
	}
	if (q->target != NULL)
		target_parse(q);
	return expect;
}

/* Appends len bytes of head to c->head; -1 if the head grows too long. */
static int
head_append(struct sl_origin_conn *c, const char *p, size_t len)
{
	size_t cap;
	char *nh;

	if (c->head_len + len > SL_ORIGIN_MAX_HEAD)
		return -1;
	if (c->head_len + len > c->head_cap) {
		cap = c->head_cap * 2;
		while (cap < c->head_len + len)
			cap *= 2;
		if (cap > SL_ORIGIN_MAX_HEAD)
			cap = SL_ORIGIN_MAX_HEAD;
		nh = realloc(c->head, cap);
		if (nh == NULL)
			return -1;
		c->head = nh;
		c->head_cap = cap;
	}
	memcpy(c->head + c->head_len, p, len);
	c->head_len += len;
	return 0;
}

/* Parser: end of head; pause so the caller knows where the head ends. */
static int
parser_headers_cb(llhttp_t *p)
{
	return HPE_PAUSED;
}

/* Parser: body bytes; counted, kept for echo up to ECHO_MAX. */
static int
parser_body_cb(llhttp_t *p, const char *at, size_t len)
{
	struct sl_origin_conn *c = p->data;
	size_t have;

	c->body_bytes += len;
	if (c->req.echo) {
		have = evbuffer_get_length(c->echo);
		if (have < ECHO_MAX)
			evbuffer_add(c->echo, at,
			    len < ECHO_MAX - have ? len : ECHO_MAX - have);
	}
	return 0;
}

/* Parser: end of message; pause so the next one waits for our answer. */
static int
parser_message_cb(llhttp_t *p)
{
	struct sl_origin_conn *c = p->data;

	c->msg_done = true;
	return HPE_PAUSED;
}

/* Prepares for the next request on c. */
static void
request_reset(struct sl_origin_conn *c)
{
	c->state = ST_READ_HEAD;
	c->head_len = 0;
	memset(&c->req, 0, sizeof(c->req));
	c->msg_done = false;
	c->body_bytes = 0;
	if (c->echo != NULL)
		evbuffer_drain(c->echo, evbuffer_get_length(c->echo));
}

/*
 * The head is complete: record what the parser knows, scan the rest,
 * answer Expect: 100-continue. Returns -1 (with *status) to reject it.
 */
static int
head_complete(struct sl_origin_conn *c, int *status)
{
	struct req *q = &c->req;
	llhttp_t *p = &c->parser;
	bool expect;

	q->method = p->method;
	q->major = p->http_major;
	q->minor = p->http_minor;
	q->keepalive = llhttp_should_keep_alive(p);
	q->upgrade = p->upgrade;
	q->body_expected = (p->flags & F_CHUNKED) ||
	    ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
	expect = head_scan(c);
	if (q->upgrade && q->upgrade_len > UPGRADE_MAX) {
		*status = 400;
		return -1;
	}
	if (q->special == SP_NONE && sl_origin_opts.echo)
		q->echo = true;
	if (q->echo && c->echo == NULL && (c->echo = evbuffer_new()) == NULL) {
		*status = 500;
		return -1;
	}
	if (expect && q->body_expected && q->major == 1 && q->minor >= 1)
		evbuffer_add(bufferevent_get_output(c->bev),
		    "HTTP/1.1 100 Continue\r\n\r\n", 25);
	return 0;
}

/*
 * Feeds buffered input to the parser until it pauses at the end of the
 * message or the input runs out. Returns 1 when a message is complete, 0
 * when more input is needed, -1 with *status on a request to reject.
 */
static int
parse_input(struct sl_origin_conn *c, int *status)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	const char *p;
	size_t len, used;
	llhttp_errno_t err;
	bool kick = false;

	for (;;) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
			p = v.iov_base;
			len = v.iov_len;
		} else if (kick) {
			/* head just ended: a bodiless message ends now */
			p = "";
			len = 0;
		} else
			return 0;
		kick = false;

		err = llhttp_execute(&c->parser, p, len);
		if (err == HPE_OK)
			used = len;
		else
			used = llhttp_get_error_pos(&c->parser) - p;
		if (c->state == ST_READ_HEAD && used > 0 &&
		    head_append(c, p, used) == -1) {
			*status = 431;
			return -1;
		}
		evbuffer_drain(in, used);
		if (err == HPE_OK)
			continue;
		if (err == HPE_PAUSED_UPGRADE)
			return 1;
		if (err != HPE_PAUSED) {
			*status = 400;
			return -1;
		}
		llhttp_resume(&c->parser);
		if (c->msg_done)
			return 1;
		c->state = ST_READ_BODY;
		if (head_complete(c, status) == -1)
			return -1;
		kick = true;
	}
}

/* Queues generated body bytes up to OUT_HIGH; true once all are queued. */
static bool
stream_fill(struct sl_origin_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t n;

	while (c->gen_left > 0 && evbuffer_get_length(out) < OUT_HIGH) {
		n = PATTERN_LEN - c->gen_off;
		if (n > c->gen_left)
			n = c->gen_left;
		if (c->gen_chunked)
			chunk_head(out, n);
		evbuffer_add_reference(
		    out, pattern + c->gen_off, n, NULL, NULL);
		if (c->gen_chunked)
			evbuffer_add_reference(out, "\r\n", 2, NULL, NULL);
		c->gen_off = (c->gen_off + n) % PATTERN_LEN;
		c->gen_left -= n;
	}
	if (c->gen_left > 0)
		return false;
	if (c->gen_chunked)
		evbuffer_add_reference(out, "0\r\n\r\n", 5, NULL, NULL);
	return true;
}

/* Moves tunnel input to the output; stops reading while it is full. */
static void
tunnel_pump(struct sl_origin_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_buffer(out, bufferevent_get_input(c->bev));
	if (!c->read_paused && evbuffer_get_length(out) > OUT_HIGH) {
		bufferevent_disable(c->bev, EV_READ);
		c->read_paused = true;
	}
	if (c->peer_eof)
		conn_finish(c);
}

/* The answer is fully queued: close, tunnel or wait for the next request. */
static void
response_done(struct sl_origin_conn *c)
{
	if (c->resp_close) {
		conn_finish(c);
		return;
	}
	if (c->resp_upgrade) {
		c->state = ST_TUNNEL;
		tunnel_pump(c);
		return;
	}
	request_reset(c);
}

/*
 * Queues response r on c: head, then body per its framing (generated
 * bytes streamed as the output drains). r->buf's content is moved.
 */
static void
response_send(struct sl_origin_conn *c, struct resp *r)
{
	char hdr[HDR_MAX + SMALL_BODY];
	struct sbuf b = {hdr, hdr + sizeof(hdr)};
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct req *q = &c->req;
	size_t buf_len = r->buf != NULL ? evbuffer_get_length(r->buf) : 0;
	uint64_t total = r->mem_len + buf_len + r->gen;
	bool http10 = q->major == 0 || (q->major == 1 && q->minor == 0);
	bool upgrade = r->status == 101;
	bool head_only, mem_done = false;

	if (r->status < 200 || r->status == 204 || r->status == 304)
		r->frame = FRAME_NONE;
	if (r->frame == FRAME_CHUNKED && http10)
		r->frame = FRAME_LENGTH;
	if (r->frame == FRAME_EOF || r->frame == FRAME_PARTIAL || !q->keepalive)
		r->close = true;
	if (upgrade)
		r->close = false;
	head_only = r->frame == FRAME_NONE || q->method == HTTP_HEAD;

	sb_put(&b, "HTTP/1.1 ", 9);
	sb_u64(&b, r->status);
	sb_put(&b, " ", 1);
	sb_str(&b, status_reason(r->status));
	sb_put(&b, "\r\n", 2);
	sb_put(&b, origin_hdr, origin_hdr_len);
	sb_u64(&b, c->n);
	sb_put(&b, "\r\nX-Received-Bytes: ", 20);
	sb_u64(&b, c->body_bytes);
	sb_put(&b, "\r\n", 2);
	if (upgrade) {
		sb_put(&b, "Upgrade: ", 9);
		sb_put(&b, q->upgrade_val, q->upgrade_len);
		sb_str(&b, "\r\nConnection: Upgrade\r\n");
	} else {
		if (r->frame == FRAME_LENGTH) {
			sb_put(&b, "Content-Length: ", 16);
			sb_u64(&b, total);
			sb_put(&b, "\r\n", 2);
		} else if (r->frame == FRAME_PARTIAL)
			sb_str(&b, "Content-Length: " PARTIAL_CL "\r\n");
		else if (r->frame == FRAME_CHUNKED)
			sb_str(&b, "Transfer-Encoding: chunked\r\n");
		if (r->frame != FRAME_NONE) {
			sb_str(&b, "Content-Type: ");
			sb_str(&b, r->ctype);
			sb_put(&b, "\r\n", 2);
		}
		if (r->close)
			sb_str(&b, "Connection: close\r\n");
		else if (http10)
			sb_str(&b, "Connection: keep-alive\r\n");
	}
	sb_put(&b, "\r\n", 2);
	if (!head_only && r->mem_len <= SMALL_BODY &&
	    (r->frame == FRAME_LENGTH || r->frame == FRAME_EOF)) {
		sb_put(&b, r->mem, r->mem_len);
		mem_done = true;
	}
	evbuffer_add(out, hdr, b.p - hdr);

	c->resp_close = r->close;
	c->resp_upgrade = upgrade;
	if (head_only || upgrade) {
		response_done(c);
		return;
	}
	if (r->frame == FRAME_PARTIAL) {
		evbuffer_add(out, pattern, PARTIAL_LEN);
		response_done(c);
		return;
	}
	if (r->frame == FRAME_CHUNKED && r->mem_len + buf_len > 0) {
		chunk_head(out, r->mem_len + buf_len);
		if (r->mem_len > 0)
			evbuffer_add(out, r->mem, r->mem_len);
		if (r->buf != NULL)
			evbuffer_add_buffer(out, r->buf);
		evbuffer_add(out, "\r\n", 2);
	} else if (r->frame != FRAME_CHUNKED) {
		if (!mem_done && r->mem_len > 0)
			evbuffer_add(out, r->mem, r->mem_len);
		if (r->buf != NULL)
			evbuffer_add_buffer(out, r->buf);
	}
	c->gen_left = r->gen;
	c->gen_off = 0;
	c->gen_chunked = r->frame == FRAME_CHUNKED;
	if (!stream_fill(c)) {
		c->state = ST_STREAM;
		return;
	}
	response_done(c);
}

/* Answers a request that cannot be served and closes the connection. */
static void
respond_bad(struct sl_origin_conn *c, int status)
{
	struct resp r = {0};
	char body[64];

	c->n = atomic_load_explicit(
	    &sl_origin_stats.requests, memory_order_relaxed);
	r.status = status;
	r.ctype = "text/plain";
	r.mem = body;
	r.mem_len = snprintf(
	    body, sizeof(body), "%d %s\n", status, status_reason(status));
	r.frame = FRAME_LENGTH;
	r.close = true;
	response_send(c, &r);
}

/* Copies the most recent request head of any worker into buf. */
static void
last_copy(struct evbuffer *buf)
{
	struct sl_origin_worker *w, *best = NULL;
	uint64_t best_seq = 0, seq;
	unsigned i;

	for (i = 0; i < sl_origin_nworkers; i++) {
		w = &sl_origin_workers[i];
		pthread_mutex_lock(&w->last_lock);
		seq = w->last_seq;
		pthread_mutex_unlock(&w->last_lock);
		if (seq > best_seq) {
			best_seq = seq;
			best = w;
		}
	}
	if (best == NULL)
		return;
	pthread_mutex_lock(&best->last_lock);
	evbuffer_add(buf, best->last_head, best->last_len);
	pthread_mutex_unlock(&best->last_lock);
}

/* Records c's request head as its worker's latest one. */
static void
last_record(struct sl_origin_conn *c)
{
	struct sl_origin_worker *w = c->w;

	pthread_mutex_lock(&w->last_lock);
	memcpy(w->last_head, c->head, c->head_len);
	w->last_len = c->head_len;
	w->last_seq = c->n;
	pthread_mutex_unlock(&w->last_lock);
}

/* Zeroes the counters and forgets the latest heads (/__origin/reset). */
static void
stats_reset(void)
{
	struct sl_origin_worker *w;
	unsigned i;

#define STAT_ZERO(f)                                                           \
	atomic_store_explicit(&sl_origin_stats.f, 0, memory_order_relaxed);
	SL_ORIGIN_STATS(STAT_ZERO)
#undef STAT_ZERO
	for (i = 0; i < sl_origin_nworkers; i++) {
		w = &sl_origin_workers[i];
		pthread_mutex_lock(&w->last_lock);
		w->last_seq = 0;
		w->last_len = 0;
		pthread_mutex_unlock(&w->last_lock);
	}
}

/* Answers a /__origin/ path; not counted as a request. */
static void
special_respond(struct sl_origin_conn *c)
{
	struct resp r = {0};
	char body[512];
	int len;

	r.status = 200;
	r.ctype = "application/json";
	r.frame = FRAME_LENGTH;
	r.mem = body;
	switch (c->req.special) {
	case SP_STATS:
		len = snprintf(body, sizeof(body), "{\"name\":\"%s\"",
		    sl_origin_opts.name);
#define STAT_JSON(f)                                                           \
	len += snprintf(body + len, sizeof(body) - len, ",\"" #f "\":%llu",    \
	    (unsigned long long)atomic_load_explicit(                          \
	        &sl_origin_stats.f, memory_order_relaxed));
		SL_ORIGIN_STATS(STAT_JSON)
#undef STAT_JSON
		len += snprintf(body + len, sizeof(body) - len, "}\n");
		r.mem_len = len;
		break;
	case SP_RESET:
		stats_reset();
		r.mem = "{\"ok\":true}\n";
		r.mem_len = strlen(r.mem);
		break;
	case SP_LAST:
		if (c->echo == NULL && (c->echo = evbuffer_new()) == NULL) {
			respond_bad(c, 500);
			return;
		}
		last_copy(c->echo);
		r.ctype = "text/plain";
		r.mem = "";
		r.buf = c->echo;
		break;
	default:
		r.status = 404;
		r.mem = "{\"error\":\"unknown /__origin/ path\"}\n";
		r.mem_len = strlen(r.mem);
		break;
	}
	c->n = atomic_load_explicit(
	    &sl_origin_stats.requests, memory_order_relaxed);
	response_send(c, &r);
}

/* Whether this request gets --error-status (--error-every/--error-rate). */
static bool
inject_error(struct sl_origin_conn *c)
{
	uint64_t every = sl_origin_opts.error_every;
	double rate = sl_origin_opts.error_rate;

	if (every > 0 && c->n % every == 0)
		return true;
	if (rate > 0 && (double)(sl_origin_rand(c->w) >> 11) * 0x1.0p-53 < rate)
		return true;
	return false;
}

/* Answers an ordinary request, now (after any delay). */
static void
request_respond(struct sl_origin_conn *c)
{
	struct req *q = &c->req;
	struct resp r = {0};
	uint64_t size = 0;
	bool sized = false, injected = false;

	r.ctype = "text/plain";
	r.frame = FRAME_LENGTH;
	r.close = q->close;
	if (q->bad_query) {
		r.status = 400;
		r.mem = "bad query parameter\n";
		r.mem_len = strlen(r.mem);
	} else if (q->upgrade && q->method == HTTP_CONNECT) {
		r.status = 405;
		r.mem = "CONNECT not supported\n";
		r.mem_len = strlen(r.mem);
		r.close = true;
	} else if (q->upgrade) {
		r.status = 101;
	} else {
		if (q->status != 0)
			r.status = q->status;
		else if (inject_error(c)) {
			r.status = (int)sl_origin_opts.error_status;
			injected = true;
		} else
			r.status = 200;
		if (injected || r.status >= 500)
			atomic_fetch_add_explicit(
			    &sl_origin_stats.errors, 1, memory_order_relaxed);
		if (q->has_size) {
			sized = true;
			size = q->size;
		} else if (sl_origin_opts.has_size) {
			sized = true;
			size = sl_origin_opts.size;
		}
		if (q->echo) {
			r.mem = c->head;
			r.mem_len = c->head_len;
			r.buf = c->echo;
		} else if (sized && size <= SMALL_BODY) {
			r.mem = pattern;
			r.mem_len = size;
		} else if (sized) {
			r.gen = size;
		} else {
			r.mem = name_body;
			r.mem_len = name_body_len;
		}
		if (q->partial)
			r.frame = FRAME_PARTIAL;
		else if (q->eof)
			r.frame = FRAME_EOF;
		else if (q->chunked || sl_origin_opts.chunked)
			r.frame = FRAME_CHUNKED;
	}
	if (sl_origin_opts.verbose)
		fprintf(stderr,
		    "sl-origin %s: #%llu %s %.*s -> %d (%llu body bytes in)\n",
		    sl_origin_opts.name, (unsigned long long)c->n,
		    llhttp_method_name(q->method), (int)q->target_len,
		    q->target != NULL ? q->target : "", r.status,
		    (unsigned long long)c->body_bytes);
	response_send(c, &r);
}

/*
 * True while the process is "warming up": --cold ms since its first
 * request. The first request starts the clock (any worker's).
 */
static bool
still_cold(void)
{
	static _Atomic uint64_t first_ms;
	struct timespec ts;
	uint64_t now, zero = 0;

	if (sl_origin_opts.cold_ms <= 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
	if (atomic_compare_exchange_strong(&first_ms, &zero, now))
		return true;
	/* zero is the first request's time; another worker's may be later
	 * than this one's now. */
	return now < zero || (double)(now - zero) < sl_origin_opts.cold_ms;
}

/* A message is complete: count it, then answer, delay, hang or reset. */
static void
request_dispatch(struct sl_origin_conn *c)
{
	struct req *q = &c->req;
	struct timeval tv;
	double ms;

	if (q->special != SP_NONE) {
		c->nrequests++;
		special_respond(c);
		return;
	}
	c->n = atomic_fetch_add_explicit(
	           &sl_origin_stats.requests, 1, memory_order_relaxed) +
	    1;
	if (c->nrequests++ == 0)
		atomic_fetch_add_explicit(
		    &sl_origin_stats.connections, 1, memory_order_relaxed);
	if (c->body_bytes > 0)
		atomic_fetch_add_explicit(&sl_origin_stats.bytes_received,
		    c->body_bytes, memory_order_relaxed);
	last_record(c);

	if (q->reset) {
		c->rst = true;
		conn_finish(c);
		return;
	}
	if (q->hang) {
		c->state = ST_HANG;
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
		return;
	}
	if (q->has_delay)
		ms = (double)q->delay_ms;
	else {
		ms = sl_origin_opts.latency_ms;
		if (sl_origin_opts.jitter_ms > 0)
			ms += sl_origin_opts.jitter_ms *
			    ((double)(sl_origin_rand(c->w) >> 11) * 0x1.0p-53);
		if (still_cold())
			ms += sl_origin_opts.cold_latency_ms;
	}
	if (ms > 0) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)((ms - tv.tv_sec * 1000.0) * 1000);
		c->state = ST_WAIT;
		evtimer_add(c->timer, &tv);
		return;
	}
	request_respond(c);
}

/*
 * Parses and answers buffered requests one at a time while the connection
 * is reading requests and the output has room.
 */
static void
conn_process(struct sl_origin_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int r, status = 400;

	while (c->state == ST_READ_HEAD || c->state == ST_READ_BODY) {
		if (evbuffer_get_length(out) > OUT_HIGH) {
			c->out_blocked = true;
			return;
		}
		r = parse_input(c, &status);
		if (r == -1) {
			respond_bad(c, status);
			return;
		}
		if (r == 1) {
			request_dispatch(c);
			continue;
		}
		if (c->peer_eof && evbuffer_get_length(in) == 0) {
			/* client is done: idle means a clean end */
			if (c->state == ST_READ_HEAD && c->head_len == 0)
				conn_finish(c);
			else
				conn_close(c);
		}
		return;
	}
}

/* Closes c now (RST if c->rst); the free is deferred to the timer. */
static void
conn_close(struct sl_origin_conn *c)
{
	struct linger lg = {1, 0};

	if (c->state == ST_DEAD)
		return;
	if (c->rst)
		setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER,
		    &lg, sizeof(lg));
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	c->state = ST_DEAD;
	evtimer_del(c->timer);
	event_active(c->timer, EV_TIMEOUT, 1);
}

/* The output is flushed: shut our side, wait briefly for the client's. */
static void
linger_start(struct sl_origin_conn *c)
{
	struct timeval tv = {LINGER_SECS, 0};

	if (c->rst || c->peer_eof) {
		conn_close(c);
		return;
	}
	/* a FIN, not an RST from unread input, so the client reads it all */
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->state = ST_LINGER;
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	if (c->read_paused)
		bufferevent_enable(c->bev, EV_READ);
	evtimer_add(c->timer, &tv);
}

/* Closes c once everything queued has been written. */
static void
conn_finish(struct sl_origin_conn *c)
{
	c->state = ST_FLUSH;
	evtimer_del(c->timer);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		linger_start(c);
}

/* Unlinks and frees c; never from c's own bufferevent callbacks. */
static void
conn_free(struct sl_origin_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		c->w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	event_free(c->timer);
	if (c->echo != NULL)
		evbuffer_free(c->echo);
	free(c->head);
	free(c);
}

/* Timer: a delayed answer is due, a linger expired, or a free is due. */
static void
conn_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct sl_origin_conn *c = arg;

	switch (c->state) {
	case ST_WAIT:
		request_respond(c);
		conn_process(c);
		break;
	case ST_LINGER:
		conn_close(c);
		break;
	case ST_DEAD:
		conn_free(c);
		break;
	default:
		break;
	}
}

/* Input arrived. */
static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct sl_origin_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	switch (c->state) {
	case ST_READ_HEAD:
	case ST_READ_BODY:
		conn_process(c);
		break;
	case ST_TUNNEL:
		tunnel_pump(c);
		break;
	case ST_HANG:
	case ST_FLUSH:
	case ST_LINGER:
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	default:
		/* ST_WAIT, ST_STREAM: keep it for later (IN_HIGH bounds it) */
		break;
	}
}

/* The output drained to its low watermark. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct sl_origin_conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(bev);

	switch (c->state) {
	case ST_STREAM:
		if (stream_fill(c)) {
			response_done(c);
			conn_process(c);
		}
		break;
	case ST_FLUSH:
		if (evbuffer_get_length(out) == 0)
			linger_start(c);
		break;
	case ST_TUNNEL:
		if (c->read_paused && evbuffer_get_length(out) <= OUT_LOW) {
			c->read_paused = false;
			bufferevent_enable(bev, EV_READ);
			tunnel_pump(c);
		}
		break;
	case ST_READ_HEAD:
	case ST_READ_BODY:
		if (c->out_blocked) {
			c->out_blocked = false;
			conn_process(c);
		}
		break;
	default:
		break;
	}
}

/* End of file or an error on the socket. */
static void
conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct sl_origin_conn *c = arg;

	if (events & BEV_EVENT_ERROR) {
		conn_close(c);
		return;
	}
	if (!(events & BEV_EVENT_EOF))
		return;
	c->peer_eof = true;
	switch (c->state) {
	case ST_READ_HEAD:
	case ST_READ_BODY:
		conn_process(c);
		break;
	case ST_HANG:
	case ST_LINGER:
		conn_close(c);
		break;
	case ST_TUNNEL:
		tunnel_pump(c);
		break;
	default:
		/* ST_WAIT, ST_STREAM, ST_FLUSH: finish the answer first */
		break;
	}
}

/* Builds the pattern block, the fixed header and the parser settings. */
void
sl_origin_conn_init(void)
{
	size_t i;

	for (i = 0; i < PATTERN_LEN; i++)
		pattern[i] = "0123456789abcdef"[i & 15];
	name_body_len =
	    snprintf(name_body, sizeof(name_body), "%s\n", sl_origin_opts.name);
	origin_hdr_len = snprintf(origin_hdr, sizeof(origin_hdr),
	    "X-Origin: %s\r\nX-Origin-Request: ", sl_origin_opts.name);
	llhttp_settings_init(&parser_settings);
	parser_settings.on_headers_complete = parser_headers_cb;
	parser_settings.on_body = parser_body_cb;
	parser_settings.on_message_complete = parser_message_cb;
}

/* Sets up a connection for fd on worker w (see origin.h). */
void
sl_origin_conn_accept(struct sl_origin_worker *w, evutil_socket_t fd)
{
	struct sl_origin_conn *c;
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto fail;
	c->w = w;
	c->head_cap = 1024;
	c->head = malloc(c->head_cap);
	c->timer = evtimer_new(w->base, conn_timer_cb, c);
	c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->head == NULL || c->timer == NULL || c->bev == NULL)
		goto fail;
	bufferevent_set_max_single_read(c->bev, IO_MAX);
	bufferevent_set_max_single_write(c->bev, IO_MAX);
	bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(
	    c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
	c->parser.data = c;
	request_reset(c);
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return;

fail:
	fprintf(stderr, "sl-origin: connection setup failed: %s\n",
	    strerror(errno));
	if (c != NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c->head);
		free(c);
	} else
		evutil_closesocket(fd);
}

/* Frees every connection of w at shutdown. */
void
sl_origin_conn_free_all(struct sl_origin_worker *w)
{
	while (w->conns != NULL)
		conn_free(w->conns);
}

/*
 * alog.c — the access log: formatting a request's JSON line into its
 * worker's buffer, and writing the buffer out. See alog.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/xmalloc.h"
#include "proxy/alog.h"

#define TARGET_MAX 4096 /* bytes of a request-target logged */
#define HOST_MAX   1024 /* and of a Host */
#define TS_LEN     (sizeof "2026-11-24T23:00:00" - 1)

int sl_alog_fd = -1;
static char *alog_path;

static int
open_log(const char *path)
{
	/* Never writable by others whatever the umask, as the event log.
	 * Non-blocking: a pipe or FIFO whose reader stalls loses lines
	 * (counted), it never stops a worker. */
	return open(
	    path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
}

int
sl_alog_open(const char *path, char **errp)
{
	int fd = open_log(path);

	if (fd < 0) {
		*errp =
		    sl_xasprintf("access_log %s: %s", path, strerror(errno));
		return -1;
	}
	sl_alog_fd = fd;
	alog_path = sl_xstrdup(path);
	return 0;
}

int
sl_alog_reopen(void)
{
	int fd, e;

	if (sl_alog_fd < 0)
		return 0;
	fd = open_log(alog_path);
	if (fd < 0)
		return -1;
	/* The workers' descriptor now writes to the new file. */
	if (dup3(fd, sl_alog_fd, O_CLOEXEC) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

const char *
sl_alog_path(void)
{
	return alog_path;
}

void
sl_alog_close(void)
{
	if (sl_alog_fd >= 0)
		close(sl_alog_fd);
	sl_alog_fd = -1;
	free(alog_path);
	alog_path = NULL;
}

/* Bytes a JSON string cannot hold as they are: '"', '\\', and all but
 * printable ASCII (written as \u00XX, as Latin-1: a valid line whatever
 * came). */
static const unsigned char needs_escape[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x7f ... 0xff] = 1,
};

/* S (LEN bytes) as the inside of a JSON string at DST, which has room
 * for 6 * LEN bytes; returns the bytes written. */
static size_t
escape(char *dst, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *d = dst;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!needs_escape[ch]) {
			*d++ = (char)ch;
		} else if (ch == '"' || ch == '\\') {
			*d++ = '\\';
			*d++ = (char)ch;
		} else {
			memcpy(d, "\\u00", 4);
			d[4] = hex[ch >> 4];
			d[5] = hex[ch & 15];
			d += 6;
		}
	}
	return (size_t)(d - dst);
}

/* Literal S at P; the end. (No printf on the request path: formatting
 * through it cost 8,600 instructions a line, callgrind.) */
#define PUT(p, s) (memcpy(p, s, sizeof(s) - 1), (p) + sizeof(s) - 1)

/* V in decimal at P, at least MIN digits; the end. */
static char *
put_uint(char *p, uint64_t v, int min)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 || n < min);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

struct sl_alog_req *
sl_alog_req_new(const char *method, const char *host, size_t host_len,
    const char *target, size_t target_len)
{
	size_t mlen = strlen(method), cut = target_len > TARGET_MAX;
	size_t tlen = cut ? TARGET_MAX : target_len;
	size_t hcut = host_len > HOST_MAX, hlen = hcut ? HOST_MAX : host_len;
	size_t room = 56 + 6 * (mlen + hlen + tlen);
	struct sl_alog_req *r;
	char *p;

	if (room > UINT16_MAX || (r = malloc(sizeof *r + room)) == NULL)
		return NULL;
	p = PUT(r->text, "\"method\":\"");
	p += escape(p, method, mlen);
	if (host != NULL) {
		p = PUT(p, "\",\"host\":\"");
		p += escape(p, host, hlen);
		if (hcut)
			p = PUT(p, "...");
		p = PUT(p, "\",\"target\":\"");
	} else
		p = PUT(p, "\",\"host\":null,\"target\":\"");
	p += escape(p, target, tlen);
	if (cut)
		p = PUT(p, "...");
	*p++ = '"';
	r->status = 0;
	r->fail = 0;
	r->len = (uint16_t)(p - r->text);
	return r;
}

/* Append ',"NAME":' and S (a JSON string, or null) at P; the end. NAME
 * comes with its quotes and colon ("\"name\":"). */
static char *
put_str(char *p, const char *name, size_t name_len, const char *s)
{
	*p++ = ',';
	memcpy(p, name, name_len);
	p += name_len;
	if (s == NULL)
		return PUT(p, "null");
	*p++ = '"';
	p += escape(p, s, strlen(s));
	*p++ = '"';
	return p;
}

#define PUT_STR(p, name, s) put_str(p, "\"" name "\":", sizeof(name) + 2, s)

int
sl_alog_add(struct sl_alog_buf *b, const struct sl_alog_entry *e,
    const struct timespec *now)
{
	const char *strs[] = {e->client, e->service, e->version, e->server,
	    e->rule, e->outcome, e->error};
	size_t room = 256 + (e->req != NULL ? e->req->len : 64), i;
	uint64_t start_ns;
	time_t sec;
	struct tm tm;
	char *p;

	for (i = 0; i < sizeof strs / sizeof strs[0]; i++)
		room += 6 * (strs[i] != NULL ? strlen(strs[i]) : 4) + 16;
	if (b->len + room > b->cap) {
		size_t cap = b->cap ? b->cap : 2 * SL_ALOG_FLUSH_AT;

		while (cap < b->len + room)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	/* When the request began: now, back by its duration. */
	start_ns = (uint64_t)now->tv_sec * 1000000000u +
	    (uint64_t)now->tv_nsec - e->duration_us * 1000u;
	sec = (time_t)(start_ns / 1000000000u);
	if (sec != b->sec) {
		gmtime_r(&sec, &tm);
		strftime(b->ts, sizeof b->ts, "%Y-%m-%dT%H:%M:%S", &tm);
		b->sec = sec;
	}
	p = PUT(b->p + b->len, "{\"time\":\"");
	memcpy(p, b->ts, TS_LEN);
	p += TS_LEN;
	*p++ = '.';
	p = put_uint(p, start_ns / 1000000u % 1000u, 3);
	p = PUT(p, "Z\"");
	p = PUT_STR(p, "client", e->client);
	*p++ = ',';
	if (e->req != NULL) {
		memcpy(p, e->req->text, e->req->len);
		p += e->req->len;
	} else
		p = PUT(p, "\"method\":null,\"host\":null,\"target\":null");
	p = PUT(p, ",\"status\":");
	if (e->status > 0)
		p = put_uint(p, (uint64_t)e->status, 1);
	else
		p = PUT(p, "null");
	p = PUT_STR(p, "service", e->service);
	p = PUT_STR(p, "version", e->version);
	p = PUT_STR(p, "rule", e->rule);
	p = PUT_STR(p, "server", e->server);
	p = PUT(p, ",\"attempts\":");
	p = put_uint(p, e->attempts, 1);
	p = PUT(p, ",\"duration_ms\":");
	p = put_uint(p, e->duration_us / 1000, 1);
	*p++ = '.';
	p = put_uint(p, e->duration_us % 1000, 3);
	p = PUT_STR(p, "outcome", e->outcome);
	p = PUT_STR(p, "error", e->error);
	p = PUT(p, "}\n");
	b->len = (size_t)(p - b->p);
	b->lines++;
	return 0;
}

/* Write LEN bytes at P; how many went out. */
static size_t
write_all(const char *p, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = write(sl_alog_fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return off;
}

uint32_t
sl_alog_flush(struct sl_alog_buf *b)
{
	size_t off = 0, i;
	uint32_t lost = 0;

	/* The file ends in part of a line (the disk filled mid-batch): end
	 * it, so that this batch's first line is a line of its own. */
	if (sl_alog_fd >= 0 && b->torn && write_all("\n", 1) == 1)
		b->torn = false;
	if (sl_alog_fd >= 0 && !b->torn)
		off = write_all(b->p, b->len);
	/* The lines not wholly written are lost: those after the last
	 * newline that went out. */
	for (i = off; i < b->len; i++)
		lost += b->p[i] == '\n';
	if (off > 0 && off < b->len && b->p[off - 1] != '\n')
		b->torn = true;
	b->len = 0;
	b->lines = 0;
	return lost;
}

void
sl_alog_buf_free(struct sl_alog_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

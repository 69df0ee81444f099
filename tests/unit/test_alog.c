/*
 * test_alog.c — proxy/alog.c, the access log's lines: every line is one
 * valid JSON object with the same keys whatever bytes the request held,
 * a long target is cut, the time is the request's start, and a batch the
 * disk will not take is counted as lost lines.
 */
#include "config.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "proxy/alog.h"

static const char *const keys[] = {"time", "client", "method", "host", "target",
    "status", "service", "version", "rule", "server", "attempts", "duration_ms",
    "outcome", "error"};

/* The buffer's single line, parsed (its keys checked). */
static json_t *
only_line(const struct sl_alog_buf *b)
{
	json_error_t err;
	const char *k;
	json_t *o, *v;
	size_t i = 0;

	assert_true(b->len > 0 && b->p[b->len - 1] == '\n');
	assert_null(memchr(b->p, '\n', b->len - 1));
	o = json_loadb(b->p, b->len, 0, &err);
	if (o == NULL)
		fail_msg("not JSON (%s): %.*s", err.text, (int)b->len, b->p);
	json_object_foreach(o, k, v)
	{
		assert_true(i < sizeof keys / sizeof keys[0]);
		assert_string_equal(k, keys[i]);
		i++;
	}
	assert_int_equal(i, sizeof keys / sizeof keys[0]);
	return o;
}

static void
test_line_fields(void **state)
{
	static const char target[] = "/a\"b\\c\x01\x7f\xe9?q=1";
	struct sl_alog_req *r =
	    sl_alog_req_new("GET", "h\"x", 3, target, sizeof target - 1);
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {.client = "::1",
	    .req = r,
	    .status = 502,
	    .service = "shop",
	    .version = "green",
	    .server = "10.0.0.1:80",
	    .rule = "split",
	    .outcome = "answered",
	    .error = "reset",
	    .attempts = 2,
	    .duration_us = 1234567};
	/* 2026-11-24T23:00:01.500Z */
	struct timespec now = {.tv_sec = 1795561201, .tv_nsec = 500000000};
	json_t *o;

	(void)state;
	assert_non_null(r);
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	o = only_line(&b);
	/* 1.234567 s before now. */
	assert_string_equal(json_string_value(json_object_get(o, "time")),
	    "2026-11-24T23:00:00.265Z");
	assert_string_equal(json_string_value(json_object_get(o, "target")),
	    "/a\"b\\c\x01\x7f"
	    "\xc3\xa9?q=1");
	assert_string_equal(
	    json_string_value(json_object_get(o, "host")), "h\"x");
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 502);
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
	assert_true(
	    json_real_value(json_object_get(o, "duration_ms")) == 1234.567);
	assert_string_equal(
	    json_string_value(json_object_get(o, "error")), "reset");
	json_decref(o);
	free(r);
	sl_alog_buf_free(&b);
}

/* Refused unread, unanswered: nulls where sluice knows nothing. */
static void
test_line_nulls(void **state)
{
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {
	    .client = "127.0.0.1", .outcome = "unanswered"};
	struct timespec now = {.tv_sec = 1795561201};
	json_t *o;
	size_t i;

	(void)state;
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	o = only_line(&b);
	for (i = 2; i < 10; i++)
		assert_true(json_is_null(json_object_get(o, keys[i])));
	assert_true(json_is_null(json_object_get(o, "error")));
	json_decref(o);
	sl_alog_buf_free(&b);
}

/* A target over 4 KiB is cut, and says so. */
static void
test_long_target(void **state)
{
	static char target[20000];
	struct sl_alog_req *r;
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {.client = "127.0.0.1", .outcome = "answered"};
	struct timespec now = {.tv_sec = 1795561201};
	const char *t;
	json_t *o;

	(void)state;
	memset(target, '\x01', sizeof target); /* 6 bytes each, escaped */
	target[0] = '/';
	r = sl_alog_req_new("POST", NULL, 0, target, sizeof target);
	assert_non_null(r);
	e.req = r;
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	o = only_line(&b);
	t = json_string_value(json_object_get(o, "target"));
	assert_int_equal(strlen(t), 4096 + 3);
	assert_string_equal(t + 4096, "...");
	assert_true(json_is_null(json_object_get(o, "host")));
	json_decref(o);
	free(r);
	sl_alog_buf_free(&b);
}

/* Thousands of lines grow the buffer; a disk that takes none of them
 * (/dev/full) loses them all, counted, and the buffer starts afresh. */
static void
test_flush_counts_lost(void **state)
{
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {.client = "127.0.0.1", .outcome = "answered"};
	struct timespec now = {.tv_sec = 1795561201};
	int fd = open("/dev/full", O_WRONLY), i;

	(void)state;
	if (fd < 0)
		skip();
	for (i = 0; i < 5000; i++)
		assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	assert_int_equal(b.lines, 5000);
	sl_alog_fd = fd;
	assert_int_equal(sl_alog_flush(&b), 5000);
	assert_int_equal(b.len, 0);
	sl_alog_fd = open("/dev/null", O_WRONLY);
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	assert_int_equal(sl_alog_flush(&b), 0);
	close(sl_alog_fd);
	sl_alog_fd = -1;
	close(fd);
	sl_alog_buf_free(&b);
}

/* A long Host is cut like a long target, not a lost line (helper-73:
 * 11,000 bytes of Host made the line's request fields null). */
static void
test_long_host(void **state)
{
	static char host[11000];
	struct sl_alog_req *r;
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {.client = "127.0.0.1", .outcome = "answered"};
	struct timespec now = {.tv_sec = 1795561201};
	const char *h;
	json_t *o;

	(void)state;
	memset(host, 'h', sizeof host);
	r = sl_alog_req_new("GET", host, sizeof host, "/", 1);
	assert_non_null(r);
	e.req = r;
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	o = only_line(&b);
	h = json_string_value(json_object_get(o, "host"));
	assert_int_equal(strlen(h), 1024 + 3);
	assert_string_equal(h + 1024, "...");
	json_decref(o);
	free(r);
	sl_alog_buf_free(&b);
}

/* A batch the pipe takes only part of (its reader is slow): the line cut
 * short is lost, and the next batch begins with a newline, so the file
 * never holds two lines run together (helper-73). A full pipe never
 * blocks the worker: the log is non-blocking. */
static void
test_torn_batch(void **state)
{
	struct sl_alog_buf b = {0};
	struct sl_alog_entry e = {.client = "127.0.0.1", .outcome = "answered"};
	struct timespec now = {.tv_sec = 1795561201};
	static char got[1 << 16];
	uint32_t lost;
	ssize_t n, total = 0;
	int fds[2], i, lines = 0;

	(void)state;
	assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
	(void)fcntl(fds[1], F_SETPIPE_SZ, 4096);
	for (i = 0; i < 100; i++)
		assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	sl_alog_fd = fds[1];
	lost = sl_alog_flush(&b);
	assert_true(lost > 0 && lost < 100);
	while ((n = read(fds[0], got + total, sizeof got - (size_t)total)) > 0)
		total += n;
	for (i = 0; i < total; i++)
		lines += got[i] == '\n';
	assert_int_equal(lines + (int)lost, 100);
	assert_true(b.torn);
	assert_int_equal(sl_alog_add(&b, &e, &now), 0);
	assert_int_equal(sl_alog_flush(&b), 0);
	n = read(fds[0], got, sizeof got);
	assert_true(
	    n > 2 && got[0] == '\n' && got[1] == '{' && got[n - 1] == '\n');
	assert_false(b.torn);
	sl_alog_fd = -1;
	close(fds[0]);
	close(fds[1]);
	sl_alog_buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_line_fields),
	    cmocka_unit_test(test_line_nulls),
	    cmocka_unit_test(test_long_target),
	    cmocka_unit_test(test_flush_counts_lost),
	    cmocka_unit_test(test_long_host),
	    cmocka_unit_test(test_torn_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

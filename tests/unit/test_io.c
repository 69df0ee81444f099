/*
 * test_io.c — proxy/io.c's streams: their timeouts (deadlines on
 * per-duration queues) and their edge-triggered events (no data, EOF or
 * write left behind without an edge to wake it). Real sockets (TCP on
 * loopback) and a real event loop; timing is only ever checked from
 * below (a timeout never fires early) and loosely from above.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "proxy/io.h"
#include "proxy/mem.h"

#define NIO 8

/* One stream under test and what happened to it. */
struct probe {
	struct sl_io io;
	int peer; /* the other end of the socketpair */
	/* io.c read the clock for the timeout at or after started_ms and at
	 * or before armed_ms: its deadline is from then, not from started_ms
	 * when a preemption came in between. */
	int64_t started_ms, armed_ms;
	int64_t fired_ms;
	short what; /* the event callback's flags; 0: not called */
	int reads;
	size_t bytes; /* read by read_cb */
	int order;    /* 1 for the first stream to time out, 2 next, ... */
};

struct fixture {
	struct event_base *base;
	struct sl_io_loop loop;
	struct probe p[NIO];
	int nfired;
	int live; /* probes whose timeout is still expected */
};

static struct fixture *fx;

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
read_cb(struct sl_io *io, void *arg)
{
	struct probe *p = arg;
	struct evbuffer *in = sl_io_input(io);

	p->reads++;
	p->bytes += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
event_cb(struct sl_io *io, short what, void *arg)
{
	struct probe *p = arg;

	(void)io;
	p->what = what;
	p->fired_ms = mono_ms();
	p->order = ++fx->nfired;
	if (--fx->live == 0)
		event_base_loopbreak(fx->base);
}

/* A connected TCP pair on loopback, both ends non-blocking: what the
 * proxy's sockets are (a socketpair wakes a writer on every read, TCP
 * only when a write found the socket full). */
static void
tcp_pair(int sv[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof a), 0);
	sv[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(sv[0] >= 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	close(l);
}

/* Probe I on a fresh TCP pair, callbacks set, nothing enabled. */
static struct probe *
probe_new(int i)
{
	struct probe *p = &fx->p[i];
	int sv[2];

	memset(p, 0, sizeof *p);
	tcp_pair(sv);
	assert_int_equal(sl_io_init_socket(&p->io, &fx->loop, sv[0]), 0);
	p->peer = sv[1];
	sl_io_setcb(&p->io, read_cb, NULL, event_cb, p);
	return p;
}

/* Start P's read timeout of MS. The clock is read before as well as
 * after: "never early" is only sure from a time before io.c's reading. */
static void
start_read(struct probe *p, uint32_t ms)
{
	p->started_ms = mono_ms();
	sl_io_set_timeouts(&p->io, ms, 0);
	sl_io_enable_read(&p->io);
	p->armed_ms = mono_ms();
	fx->live++;
}

static void
probe_free(struct probe *p)
{
	sl_io_free(&p->io);
	if (p->peer >= 0)
		close(p->peer);
	p->peer = -1;
}

/* Run the loop until every expected timeout fired (10 s at most). */
static void
run(void)
{
	struct timeval limit = {10, 0};

	event_base_loopexit(fx->base, &limit);
	event_base_dispatch(fx->base);
	assert_int_equal(fx->live, 0);
}

static int
setup(void **state)
{
	struct event_config *cfg = event_config_new();

	(void)state;
	fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	fx->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	assert_non_null(fx->base);
	assert_int_equal(sl_io_loop_init(&fx->loop, fx->base), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	sl_io_loop_free(&fx->loop);
	event_base_free(fx->base);
	free(fx);
	fx = NULL;
	return 0;
}

/* Start P's read timeout of MS, run, and check it fired in time. */
static void
expect_read_timeout(struct probe *p, uint32_t ms)
{
	start_read(p, ms);
	run();
	assert_int_equal(p->what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
	assert_true(p->fired_ms - p->started_ms >= (int64_t)ms);
	assert_true(p->fired_ms - p->started_ms < 2000);
	probe_free(p);
}

/* A read timeout fires once, never before its time. */
static void
test_read_timeout(void **state)
{
	(void)state;
	expect_read_timeout(probe_new(0), 60);
}

/* Each read restarts the timeout: a byte every 20 ms for 20 reads keeps
 * a 400 ms timeout away (the whole drip takes as long as the timeout);
 * it fires 400 ms after the last byte. The timeout is many times the gap
 * between bytes: a loop stalled (a loaded machine) for longer than the
 * timeout less 20 ms would see it fire between two bytes. */
static void
drip(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	static int sent;

	(void)fd;
	(void)what;
	if (sent++ < 20) {
		assert_int_equal(write(p->peer, "x", 1), 1);
		p->started_ms = mono_ms(); /* the timeout restarts from here */
	}
}

static void
test_read_timeout_restarts(void **state)
{
	struct probe *p = probe_new(0);
	struct timeval every = {0, 20000};
	struct event *t = event_new(fx->base, -1, EV_PERSIST, drip, p);

	(void)state;
	event_add(t, &every);
	start_read(p, 400);
	run();
	event_free(t);
	assert_int_equal(p->reads, 20);
	assert_int_equal(p->what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
	assert_true(p->fired_ms - p->started_ms >= 400);
	probe_free(p);
}

/*
 * Streams with different timeouts (their own queues) and equal ones (one
 * queue) fire in the order of their deadlines, none early.
 *
 * The order is checked from the real deadlines, not the timeouts: a
 * preemption while the streams start (a loaded machine) pushes the later
 * ones' deadlines back by its length, and can put a 30 ms one after a 40
 * ms one started before it. A deadline is known within its start_read()
 * window, and libevent's timers to about a millisecond, so a pair is
 * checked only when its deadlines are surely ORDER_GAP_MS apart. For the
 * later stream that is from the earliest deadline on its queue: a loop
 * woken late, past several deadlines, fires a queue's head and the streams
 * due behind it in one go, before another queue whose deadline came
 * between.
 */
#define ORDER_GAP_MS 5

static void
test_queues_in_order(void **state)
{
	static const uint32_t ms[] = {90, 20, 70, 40, 110, 40, 30};
	int64_t first;
	int i, j, k;

	(void)state;
	/* Sockets first: the timeouts then start within microseconds of each
	 * other, so pairs are seldom too close to check. */
	for (i = 0; i < 7; i++)
		probe_new(i);
	for (i = 0; i < 7; i++)
		start_read(&fx->p[i], ms[i]);
	run();
	for (i = 0; i < 7; i++) {
		struct probe *p = &fx->p[i];

		assert_int_equal(
		    p->what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
		assert_true(p->fired_ms - p->started_ms >= (int64_t)ms[i]);
		for (j = 0; j < 7; j++) {
			/* The earliest deadline of J's queue up to J. */
			for (k = 0; ms[k] != ms[j]; k++)
				;
			first = fx->p[k].started_ms + ms[k];
			if (first >= p->armed_ms + ms[i] + ORDER_GAP_MS)
				assert_true(fx->p[j].order > p->order);
		}
	}
	for (i = 0; i < 7; i++)
		probe_free(&fx->p[i]);
}

/*
 * A queue left empty with its timer still pending far ahead (a stream
 * with a 5 s timeout, freed) is taken over by a new duration: the new,
 * earlier deadline must not wait for the old timer.
 */
static void
test_queue_taken_over(void **state)
{
	struct probe *p = probe_new(0);

	(void)state;
	sl_io_set_timeouts(&p->io, 5000, 0);
	sl_io_enable_read(&p->io);
	probe_free(p);
	expect_read_timeout(probe_new(1), 50);
}

/* A 30 ms read timeout made void by DISARM (reading turned off, or the
 * timeout set to 0) stays quiet while another stream's 150 ms one fires. */
static void
check_no_timeout(void (*disarm)(struct sl_io *io))
{
	struct probe *p = probe_new(0), *q = probe_new(1);

	sl_io_set_timeouts(&p->io, 30, 0);
	sl_io_enable_read(&p->io);
	disarm(&p->io);
	start_read(q, 150);
	run();
	assert_int_equal(p->what, 0);
	assert_int_equal(q->what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
	probe_free(p);
	probe_free(q);
}

static void
set_zero(struct sl_io *io)
{
	sl_io_set_timeouts(io, 0, 0);
}

/* Reading off: no read timeout. */
static void
test_disabled_read_no_timeout(void **state)
{
	(void)state;
	check_no_timeout(sl_io_disable_read);
}

/* A timeout of 0 is none, also when set while reading. */
static void
test_zero_is_none(void **state)
{
	(void)state;
	check_no_timeout(set_zero);
}

/* Output the peer never reads: the write timeout fires once the socket
 * is full and no progress is made for its duration. */
static void
test_write_timeout(void **state)
{
	struct probe *p = probe_new(0);
	static char chunk[65536];

	(void)state;
	sl_io_set_timeouts(&p->io, 0, 60);
	memset(chunk, 'y', sizeof chunk);
	for (int i = 0; i < 64; i++)
		evbuffer_add(sl_io_output(&p->io), chunk, sizeof chunk);
	p->started_ms = mono_ms();
	fx->live++;
	run();
	assert_int_equal(p->what, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
	assert_true(p->fired_ms - p->started_ms >= 60);
	assert_true(sl_io_unsent(&p->io) > 0);
	probe_free(p);
}

/* ---- edge-triggered events: nothing is left behind ---- */

/* Fill P's socket from the peer's side as far as it takes, then close
 * the peer's sending side. Returns the bytes written. */
static size_t
fill_and_shut(struct probe *p)
{
	static char chunk[16384];
	size_t total = 0;
	ssize_t n;

	memset(chunk, 'z', sizeof chunk);
	while ((n = write(p->peer, chunk, sizeof chunk)) > 0)
		total += (size_t)n;
	assert_int_equal(shutdown(p->peer, SHUT_WR), 0);
	return total;
}

/* One wake-up reads 64 KiB at most: a socket holding more (and no new
 * data to make another edge) is read on to its end and its EOF. */
static void
test_reads_past_one_wakeup(void **state)
{
	struct probe *p = probe_new(0);
	size_t sent = fill_and_shut(p);

	(void)state;
	assert_true(sent > 4 * 16384); /* more than one wake-up reads */
	start_read(p, 0);
	run();
	assert_int_equal(p->bytes, sent);
	assert_int_equal(p->what, BEV_EVENT_READING | BEV_EVENT_EOF);
	probe_free(p);
}

/* A stream that reads bulk (its reads fill the 16 KiB scratch) takes a
 * 16 KiB body with its head, 16,512 bytes as the bench's origin sends
 * them, in one recv: the callback finds them in one extent, which then
 * leaves in one piece (a full 16 KiB read and a second recv for the 176
 * bytes left made two, and one syscall more per response). */
static int bulk_extents;
static size_t bulk_want;

static void
bulk_read_cb(struct sl_io *io, void *arg)
{
	struct probe *p = arg;
	struct evbuffer *in = sl_io_input(io);

	bulk_extents = evbuffer_peek(in, -1, NULL, NULL, 0);
	read_cb(io, arg);
	if (p->bytes >= bulk_want)
		event_base_loopbreak(fx->base);
}

static void
bulk_message(struct probe *p, size_t len)
{
	static char msg[20000];
	struct timeval limit = {10, 0};

	memset(msg, 'b', sizeof msg);
	assert_true(len <= sizeof msg);
	/* One write: loopback delivers it as one segment, before the read. */
	assert_int_equal(write(p->peer, msg, len), (ssize_t)len);
	bulk_want = p->bytes + len;
	event_base_loopexit(fx->base, &limit);
	event_base_dispatch(fx->base);
	assert_int_equal(p->bytes, bulk_want);
}

static void
test_bulk_read_in_one_piece(void **state)
{
	struct probe *p = probe_new(0);

	(void)state;
	sl_io_setcb(&p->io, bulk_read_cb, NULL, event_cb, p);
	sl_io_enable_read(&p->io);
	bulk_message(p, 20000); /* fills the scratch: the stream goes bulk */
	bulk_message(p, 16512);
	assert_int_equal(bulk_extents, 1);
	probe_free(p);
}

/* Part of a message and a reset, both in the socket before the read: epoll
 * reports ERR and HUP, which libevent passes on without EV_CLOSED, so no
 * edge is left for the reset once the data is read. A read callback that
 * finds its message incomplete asks io.c to look (sl_io_check_end): the
 * reset is reported at once, not at the read timeout. */
static void
check_end_read_cb(struct sl_io *io, void *arg)
{
	read_cb(io, arg);
	sl_io_check_end(io);
}

static void
test_reset_with_data_found(void **state)
{
	struct probe *p = probe_new(0);
	struct linger lg = {1, 0};

	(void)state;
	sl_io_setcb(&p->io, check_end_read_cb, NULL, event_cb, p);
	assert_int_equal(write(p->peer, "GET / H", 7), 7);
	assert_int_equal(
	    setsockopt(p->peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(p->peer);
	p->peer = -1; /* loopback: data and reset are in before close returns */
	start_read(p, 0); /* no read timeout: only the reset can end it */
	run();
	assert_int_equal(p->bytes, 7);
	assert_int_equal(p->what, BEV_EVENT_READING | BEV_EVENT_ERROR);
	probe_free(p);
}

/* The first of two streams ready in the same wake-up turns the other's
 * reading off and on again before the other's callback ran: libevent
 * drops the other's event from its active queue and the off/on cancels
 * out before reaching epoll, so no edge is left to report its data. */
static struct probe *toggled;

static void
toggle_read_cb(struct sl_io *io, void *arg)
{
	struct probe *p = arg;

	if (toggled == NULL) {
		toggled = p == &fx->p[0] ? &fx->p[1] : &fx->p[0];
		sl_io_disable_read(&toggled->io);
		sl_io_enable_read(&toggled->io);
	}
	read_cb(io, arg);
}

static void
test_reading_resumed_in_same_wakeup(void **state)
{
	struct probe *p[2] = {probe_new(0), probe_new(1)};
	int i;

	(void)state;
	toggled = NULL;
	for (i = 0; i < 2; i++) {
		sl_io_setcb(&p[i]->io, toggle_read_cb, NULL, event_cb, p[i]);
		assert_int_equal(write(p[i]->peer, "hello", 5), 5);
		assert_int_equal(shutdown(p[i]->peer, SHUT_WR), 0);
		start_read(p[i], 0);
	}
	run();
	assert_non_null(toggled);
	for (i = 0; i < 2; i++) {
		assert_int_equal(p[i]->bytes, 5);
		assert_int_equal(p[i]->what, BEV_EVENT_READING | BEV_EVENT_EOF);
		probe_free(p[i]);
	}
}

/* Reading turned off while data and the EOF arrive is found again when
 * it is turned back on from outside any io callback (a timer). */
static void
resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sl_io_enable_read(&((struct probe *)arg)->io);
}

static void
pause_read_cb(struct sl_io *io, void *arg)
{
	struct probe *p = arg;

	read_cb(io, arg);
	if (p->reads == 1) {
		sl_io_disable_read(io);
		assert_int_equal(write(p->peer, "more", 4), 4);
		assert_int_equal(shutdown(p->peer, SHUT_WR), 0);
	}
}

static void
test_reading_resumed_later(void **state)
{
	struct probe *p = probe_new(0);
	struct timeval later = {0, 20000};

	(void)state;
	sl_io_setcb(&p->io, pause_read_cb, NULL, event_cb, p);
	assert_int_equal(write(p->peer, "first", 5), 5);
	start_read(p, 0);
	assert_int_equal(
	    event_base_once(fx->base, -1, EV_TIMEOUT, resume, p, &later), 0);
	run();
	assert_int_equal(p->bytes, 9);
	assert_int_equal(p->what, BEV_EVENT_READING | BEV_EVENT_EOF);
	probe_free(p);
}

/* Output in more pieces than one wake-up sends (16 per send, 4 sends)
 * to a socket that takes it all: the rest must go without an edge. */
static size_t peer_got;

static void
peer_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096];
	ssize_t n;

	(void)what;
	(void)arg;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		peer_got += (size_t)n;
	if (n == 0) {
		fx->live--;
		event_base_loopbreak(fx->base);
	}
}

static void
flushed_cb(struct sl_io *io, void *arg)
{
	(void)arg;
	/* Sent: the peer sees the end. */
	assert_int_equal(shutdown(io->fd, SHUT_WR), 0);
}

static void
test_write_in_many_pieces(void **state)
{
	static const char piece[10] = "0123456789";
	struct probe *p = probe_new(0);
	struct event *ev;
	int i;

	(void)state;
	peer_got = 0;
	sl_io_setcb(&p->io, read_cb, flushed_cb, event_cb, p);
	for (i = 0; i < 300; i++)
		assert_int_equal(evbuffer_add_reference(sl_io_output(&p->io),
		                     piece, sizeof piece, NULL, NULL),
		    0);
	ev = event_new(fx->base, p->peer, EV_READ | EV_PERSIST, peer_read, p);
	event_add(ev, NULL);
	fx->live++;
	run();
	event_free(ev);
	assert_int_equal(peer_got, 300 * sizeof piece);
	assert_int_equal(sl_io_unsent(&p->io), 0);
	probe_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_read_timeout_restarts, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_queues_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_queue_taken_over, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_disabled_read_no_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zero_is_none, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_write_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_reads_past_one_wakeup, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_bulk_read_in_one_piece, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_reset_with_data_found, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_reading_resumed_in_same_wakeup, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_reading_resumed_later, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_write_in_many_pieces, setup, teardown),
	};

	/* As the daemon runs: buffers from the per-thread cache. */
	(void)sl_mem_install();
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * io.c — sockets of the request path on plain events: speculative writes
 * batched per loop iteration, persistent read interest, recv into
 * reserved buffer space. See io.h for why and for the semantics.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "proxy/io.h"

/* flags */
#define IO_READING    0x01 /* read interest registered */
#define IO_WR_ARMED   0x02 /* waiting for the socket to take output */
#define IO_CONNECTING 0x04 /* connect in progress */
#define IO_DIRTY      0x08 /* on the loop's dirty list */
#define IO_FAILED     0x10 /* connect failed at once: report from the loop */

/* Read this much per recv: a 16 KiB chain with libevent's chain header
 * (chains are allocated in powers of two including the header). */
#define IO_READ_CHUNK (16384 - 128)
#define IO_READ_MAX   (4 * IO_READ_CHUNK) /* per wake-up */

#define IO_WRITE_IOVS 16 /* chains per send */

static void write_now(struct sl_io *io);
static void write_ev_cb(evutil_socket_t fd, short what, void *arg);

/*
 * recv() and send() rather than readv()/writev(): the socket calls skip
 * the VFS layer (file position lock, fsnotify), which perf showed at 8%
 * of the worker's time at 1000 connections. Two extents only when the
 * reserved space spans chains.
 */
static ssize_t
sock_read(evutil_socket_t fd, struct evbuffer_iovec *vec, int nvec)
{
	struct msghdr msg;

	if (nvec == 1)
		return recv(fd, vec[0].iov_base, vec[0].iov_len, 0);
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = (struct iovec *)vec;
	msg.msg_iovlen = (size_t)nvec;
	return recvmsg(fd, &msg, 0);
}

/* Send what OUT holds (up to IO_WRITE_IOVS chains) and drain what went.
 * Returns the bytes sent, or -1 with errno. */
static int
sock_write(struct evbuffer *out, evutil_socket_t fd)
{
	struct evbuffer_iovec vec[IO_WRITE_IOVS];
	struct msghdr msg;
	ssize_t n;
	int nvec;

	nvec = evbuffer_peek(out, -1, NULL, vec, IO_WRITE_IOVS);
	if (nvec > IO_WRITE_IOVS)
		nvec = IO_WRITE_IOVS;
	if (nvec <= 0)
		return 0;
	if (nvec == 1)
		n = send(fd, vec[0].iov_base, vec[0].iov_len, MSG_NOSIGNAL);
	else {
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = (struct iovec *)vec;
		msg.msg_iovlen = (size_t)nvec;
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	}
	if (n > 0)
		evbuffer_drain(out, (size_t)n);
	return (int)n;
}

/* A timeval for MS: a common timeout of the loop when there is room. */
static const struct timeval *
timeout_tv(struct sl_io_loop *loop, uint32_t ms, struct timeval *tmp)
{
	const struct timeval *tv;
	unsigned i;

	for (i = 0; i < loop->ntimeouts; i++) {
		if (loop->timeouts[i].ms == ms)
			return loop->timeouts[i].tv;
	}
	tmp->tv_sec = ms / 1000;
	tmp->tv_usec = (ms % 1000) * 1000;
	if (loop->ntimeouts == SL_IO_TIMEOUTS)
		return tmp;
	tv = event_base_init_common_timeout(loop->base, tmp);
	if (tv == NULL)
		return tmp;
	loop->timeouts[loop->ntimeouts].ms = ms;
	loop->timeouts[loop->ntimeouts].tv = tv;
	loop->ntimeouts++;
	return tv;
}

/* Register EV with the timeout MS (0: none). */
static void
add_with_timeout(struct sl_io *io, struct event *ev, uint32_t ms)
{
	struct timeval tmp;

	if (ms != 0) {
		(void)event_add(ev, timeout_tv(io->loop, ms, &tmp));
		return;
	}
	/* No timeout. libevent keeps a persistent event's last timeout
	 * through event_del and event_add(NULL) and would re-arm it on the
	 * next activation; event_remove_timer forgets it, but only while a
	 * timer is pending, so make one pending first. */
	if (!event_pending(ev, EV_TIMEOUT, NULL)) {
		tmp.tv_sec = 3600;
		tmp.tv_usec = 0;
		(void)event_add(ev, &tmp);
	}
	(void)event_remove_timer(ev);
}

/* Run a callback that may free IO; returns false when it did. Nests: a
 * guard further out learns of the free too. */
#define IO_CALL(io, call)                                                      \
	({                                                                     \
		bool alive_ = true, *outer_ = (io)->alive;                     \
		(io)->alive = &alive_;                                         \
		call;                                                          \
		if (alive_)                                                    \
			(io)->alive = outer_;                                  \
		else if (outer_ != NULL)                                       \
			*outer_ = false;                                       \
		alive_;                                                        \
	})

static void
stop_reading(struct sl_io *io)
{
	if (io->flags & IO_READING) {
		io->flags &= ~IO_READING;
		(void)event_del(&io->rd);
	}
}

/* Report WHAT (an EOF, error or timeout) and stop reading. */
static void
fail(struct sl_io *io, short what)
{
	stop_reading(io);
	if (io->event_cb != NULL)
		io->event_cb(io, what, io->arg);
}

static short
do_read(struct sl_io *io, evutil_socket_t fd, short what)
{
	struct evbuffer_iovec vec[2];
	size_t total = 0, room, got, take;
	short end = 0; /* EOF or ERROR seen after data */
	ssize_t n;
	int nvec, i;

	if (what & EV_TIMEOUT) {
		fail(io, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
		return 0;
	}
	for (;;) {
		nvec = evbuffer_reserve_space(io->in, IO_READ_CHUNK, vec, 2);
		if (nvec <= 0) {
			fail(io, BEV_EVENT_READING | BEV_EVENT_ERROR);
			return 0;
		}
		n = sock_read(fd, vec, nvec);
		if (n == 0)
			end = BEV_EVENT_EOF;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)
			end = BEV_EVENT_ERROR;
		if (n <= 0)
			break;
		total += (size_t)n;
		room = 0;
		got = (size_t)n;
		for (i = 0; i < nvec; i++) {
			room += vec[i].iov_len;
			take = got < vec[i].iov_len ? got : vec[i].iov_len;
			vec[i].iov_len = take;
			got -= take;
		}
		evbuffer_commit_space(io->in, vec, nvec);
		/* A short read emptied the socket; a full one may not have. */
		if ((size_t)n < room || total >= IO_READ_MAX)
			break;
	}
	if (total == 0) {
		if (end != 0)
			fail(io, BEV_EVENT_READING | end);
		return 0;
	}
	/* No timer work here: libevent restarts a persistent event's
	 * timeout each time the event fires (event_persist_closure). */
	if (io->read_cb != NULL && !IO_CALL(io, io->read_cb(io, io->arg)))
		return 0;
	/* The data came with an EOF or error: the caller reports it after
	 * the data (and what it produced) went out. */
	return end;
}

/* The connect finished (or failed, or timed out). */
static void
connect_done(struct sl_io *io, short what)
{
	int err = 0;
	socklen_t len = sizeof err;

	io->flags &= ~IO_CONNECTING;
	if (what & EV_TIMEOUT) {
		(void)event_del(io->wr);
		io->flags &= ~IO_WR_ARMED;
		fail(io, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
		return;
	}
	if (io->flags & IO_FAILED)
		err = ECONNREFUSED;
	else if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		(void)event_del(io->wr);
		io->flags &= ~IO_WR_ARMED;
		errno = err;
		fail(io, BEV_EVENT_ERROR);
		return;
	}
	if (io->event_cb != NULL &&
	    !IO_CALL(io, io->event_cb(io, BEV_EVENT_CONNECTED, io->arg)))
		return;
	write_now(io);
}

static void
do_write(struct sl_io *io, short what)
{

	if (io->flags & IO_CONNECTING) {
		connect_done(io, what);
		return;
	}
	if (what & EV_TIMEOUT) {
		(void)event_del(io->wr);
		io->flags &= ~IO_WR_ARMED;
		fail(io, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
		return;
	}
	write_now(io);
}

/* Wait for the socket to take output: the write event, with its timeout. */
static int
arm_write(struct sl_io *io)
{
	if (io->wr == NULL) {
		io->wr = event_new(io->loop->base, io->fd,
		    EV_WRITE | EV_PERSIST, write_ev_cb, io);
		if (io->wr == NULL)
			return -1;
	}
	/* Re-adding restarts the timeout: the socket made progress. */
	add_with_timeout(io, io->wr, io->wtimeout_ms);
	io->flags |= IO_WR_ARMED;
	return 0;
}

/*
 * Write the output. Stops at EAGAIN (and arms the write event) or when the
 * output is empty (and runs the write callback if it is at most the
 * low-water mark, as bufferevents do after a write).
 */
static void
write_now(struct sl_io *io)
{
	size_t before = evbuffer_get_length(io->out), left;
	int n, tries = 0;

	if (before == 0) {
		if (io->flags & IO_WR_ARMED) {
			(void)event_del(io->wr);
			io->flags &= ~IO_WR_ARMED;
		}
		return;
	}
	do {
		n = sock_write(io->out, io->fd);
		left = evbuffer_get_length(io->out);
	} while (n > 0 && left > 0 && ++tries < 4);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR) {
		if (io->flags & IO_WR_ARMED) {
			(void)event_del(io->wr);
			io->flags &= ~IO_WR_ARMED;
		}
		fail(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
		return;
	}
	if (left > 0) {
		/* The socket is full; a progress re-arm restarts the
		 * timeout, a no-progress wake-up keeps it running. */
		if ((!(io->flags & IO_WR_ARMED) || left < before) &&
		    arm_write(io) != 0) {
			fail(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
			return;
		}
	} else if (io->flags & IO_WR_ARMED) {
		(void)event_del(io->wr);
		io->flags &= ~IO_WR_ARMED;
	}
	if (left < before && left <= io->wlow && io->write_cb != NULL)
		io->write_cb(io, io->arg);
}

/*
 * Write every io that got output. Runs when the outermost io callback
 * returns, so a request read from a client is on its way to the origin
 * before the next ready socket is looked at (one epoll_wait can return
 * dozens); output added outside io callbacks (timers, TLS connections'
 * bufferevents) waits for the flush event, later in the same iteration.
 */
static void
flush(struct sl_io_loop *loop)
{
	struct sl_io *io;

	loop->depth++;
	while ((io = TAILQ_FIRST(&loop->dirty)) != NULL) {
		TAILQ_REMOVE(&loop->dirty, io, dirty_link);
		io->flags &= ~IO_DIRTY;
		if (!(io->flags & (IO_WR_ARMED | IO_CONNECTING)))
			write_now(io);
	}
	loop->depth--;
}

static void
read_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_io *io = arg;
	struct sl_io_loop *loop = io->loop; /* IO may be freed below */
	bool alive = true;
	short end;

	io->alive = &alive;
	loop->depth++;
	end = do_read(io, fd, what);
	if (--loop->depth == 0 && !TAILQ_EMPTY(&loop->dirty))
		flush(loop);
	if (!alive)
		return;
	io->alive = NULL;
	/* An EOF or error that came with data is reported once the data and
	 * what it produced have been sent (a handler closing the other side
	 * would drop them otherwise), as a bufferevent would on its next
	 * read. Unless the callback stopped reading (backpressure): the next
	 * enable finds it. */
	if (end != 0 && (io->flags & IO_READING)) {
		loop->depth++;
		fail(io, BEV_EVENT_READING | end);
		if (--loop->depth == 0 && !TAILQ_EMPTY(&loop->dirty))
			flush(loop);
	}
}

static void
write_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_io *io = arg;
	struct sl_io_loop *loop = io->loop;

	loop->depth++;
	do_write(io, what);
	if (--loop->depth == 0 && !TAILQ_EMPTY(&loop->dirty))
		flush(loop);
}

/* The flush event: output added outside io callbacks. */
static void
flush_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

/* Output was added: write it at the end of this loop iteration. */
static void
out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct sl_io *io = arg;

	if (info->n_added == 0 ||
	    (io->flags & (IO_DIRTY | IO_WR_ARMED | IO_CONNECTING)))
		return;
	/* Inside an io callback the flush follows when it returns. */
	if (io->loop->depth == 0 && TAILQ_EMPTY(&io->loop->dirty))
		event_active(io->loop->flush_ev, EV_TIMEOUT, 0);
	TAILQ_INSERT_TAIL(&io->loop->dirty, io, dirty_link);
	io->flags |= IO_DIRTY;
}

int
sl_io_loop_init(struct sl_io_loop *loop, struct event_base *base)
{
	memset(loop, 0, sizeof *loop);
	loop->base = base;
	TAILQ_INIT(&loop->dirty);
	loop->flush_ev = event_new(base, -1, 0, flush_ev_cb, loop);
	return loop->flush_ev != NULL ? 0 : -1;
}

void
sl_io_loop_free(struct sl_io_loop *loop)
{
	if (loop->flush_ev != NULL)
		event_free(loop->flush_ev);
	loop->flush_ev = NULL;
}

int
sl_io_init_socket(struct sl_io *io, struct sl_io_loop *loop, evutil_socket_t fd)
{
	memset(io, 0, sizeof *io);
	io->loop = loop;
	io->fd = fd;
	io->in = evbuffer_new();
	io->out = evbuffer_new();
	if (io->in == NULL || io->out == NULL ||
	    evbuffer_add_cb(io->out, out_cb, io) == NULL)
		goto fail;
	if (fd >= 0)
		event_assign(&io->rd, loop->base, fd, EV_READ | EV_PERSIST,
		    read_ev_cb, io);
	return 0;
fail:
	if (io->in != NULL)
		evbuffer_free(io->in);
	if (io->out != NULL)
		evbuffer_free(io->out);
	io->in = io->out = NULL;
	return -1;
}

static void
bev_read_cb(struct bufferevent *bev, void *arg)
{
	struct sl_io *io = arg;

	if (io->read_cb != NULL)
		io->read_cb(io, io->arg);
}

static void
bev_write_cb(struct bufferevent *bev, void *arg)
{
	struct sl_io *io = arg;

	if (io->write_cb != NULL)
		io->write_cb(io, io->arg);
}

static void
bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sl_io *io = arg;

	if (io->event_cb != NULL)
		io->event_cb(io, what, io->arg);
}

int
sl_io_init_bev(
    struct sl_io *io, struct sl_io_loop *loop, struct bufferevent *bev)
{
	memset(io, 0, sizeof *io);
	io->loop = loop;
	io->fd = -1;
	io->bev = bev;
	io->in = bufferevent_get_input(bev);
	io->out = bufferevent_get_output(bev);
	bufferevent_setcb(bev, bev_read_cb, bev_write_cb, bev_event_cb, io);
	return 0;
}

int
sl_io_connect(struct sl_io *io, const struct sockaddr *addr, int len)
{
	int one = 1;

	if (io->bev != NULL) {
		if (bufferevent_socket_connect(io->bev, addr, len) != 0)
			return -1;
		(void)setsockopt(bufferevent_getfd(io->bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof one);
		return 0;
	}
	io->fd = socket(
	    addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (io->fd < 0)
		return -1;
	(void)setsockopt(io->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	event_assign(&io->rd, io->loop->base, io->fd, EV_READ | EV_PERSIST,
	    read_ev_cb, io);
	io->flags |= IO_CONNECTING;
	if (connect(io->fd, addr, (socklen_t)len) != 0 &&
	    errno != EINPROGRESS) {
		if (errno == EAGAIN || errno == EADDRNOTAVAIL ||
		    errno == ENOBUFS || errno == ENOMEM || errno == EMFILE ||
		    errno == ENFILE) {
			/* Out of local resources: the caller answers. */
			close(io->fd);
			io->fd = -1;
			io->flags &= ~IO_CONNECTING;
			return -1;
		}
		/* Refused at once (loopback): report it from the loop. */
		io->flags |= IO_FAILED;
		if (arm_write(io) != 0)
			return -1;
		event_active(io->wr, EV_WRITE, 0);
		return 0;
	}
	return arm_write(io);
}

void
sl_io_try_write(struct sl_io *io)
{
	if (io->bev != NULL || io->fd < 0 ||
	    (io->flags & (IO_CONNECTING | IO_FAILED)))
		return;
	while (
	    evbuffer_get_length(io->out) > 0 && sock_write(io->out, io->fd) > 0)
		;
}

void
sl_io_free(struct sl_io *io)
{
	if (io->alive != NULL) {
		*io->alive = false;
		io->alive = NULL;
	}
	if (io->bev != NULL) {
		bufferevent_free(io->bev);
		io->bev = NULL;
		io->in = io->out = NULL;
		return;
	}
	if (io->flags & IO_DIRTY)
		TAILQ_REMOVE(&io->loop->dirty, io, dirty_link);
	if (io->fd >= 0) {
		(void)event_del(&io->rd);
		if (io->wr != NULL)
			event_free(io->wr);
		close(io->fd);
	}
	io->wr = NULL;
	io->fd = -1;
	io->flags = 0;
	if (io->in != NULL)
		evbuffer_free(io->in);
	if (io->out != NULL)
		evbuffer_free(io->out);
	io->in = io->out = NULL;
}

void
sl_io_setcb(struct sl_io *io, sl_io_data_cb read_cb, sl_io_data_cb write_cb,
    sl_io_event_cb event_cb, void *arg)
{
	io->read_cb = read_cb;
	io->write_cb = write_cb;
	io->event_cb = event_cb;
	io->arg = arg;
}

void
sl_io_enable_read(struct sl_io *io)
{
	if (io->bev != NULL) {
		bufferevent_enable(io->bev, EV_READ);
		return;
	}
	if (io->fd < 0)
		return;
	io->flags |= IO_READING;
	add_with_timeout(io, &io->rd, io->rtimeout_ms);
}

void
sl_io_disable_read(struct sl_io *io)
{
	if (io->bev != NULL) {
		bufferevent_disable(io->bev, EV_READ);
		return;
	}
	stop_reading(io);
}

void
sl_io_set_timeouts(struct sl_io *io, uint32_t read_ms, uint32_t write_ms)
{
	struct timeval r, w;

	if (io->bev != NULL) {
		r.tv_sec = read_ms / 1000;
		r.tv_usec = (read_ms % 1000) * 1000;
		w.tv_sec = write_ms / 1000;
		w.tv_usec = (write_ms % 1000) * 1000;
		bufferevent_set_timeouts(
		    io->bev, read_ms ? &r : NULL, write_ms ? &w : NULL);
		return;
	}
	if (read_ms != io->rtimeout_ms) {
		io->rtimeout_ms = read_ms;
		if (io->flags & IO_READING)
			add_with_timeout(io, &io->rd, read_ms);
	}
	if (write_ms != io->wtimeout_ms) {
		io->wtimeout_ms = write_ms;
		if (io->flags & IO_WR_ARMED)
			add_with_timeout(io, io->wr, write_ms);
	}
}

void
sl_io_set_write_low(struct sl_io *io, uint32_t low)
{
	if (io->bev != NULL)
		bufferevent_setwatermark(io->bev, EV_WRITE, low, 0);
	else
		io->wlow = low;
}

evutil_socket_t
sl_io_fd(const struct sl_io *io)
{
	return io->bev != NULL ? bufferevent_getfd(io->bev) : io->fd;
}

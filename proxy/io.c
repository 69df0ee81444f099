/*
 * io.c — sockets of the request path on plain events: speculative writes
 * batched per loop iteration, persistent read interest, recv into
 * reserved buffer space. See io.h for why and for the semantics.
 *
 * TLS runs over the same socket code: the SSL's BIO reads ciphertext from
 * raw_in (what recv got) and writes to raw_out (what send takes), so a
 * TLS request costs the system calls of a plain one. The BIO never blocks;
 * SSL_read decrypts into the input, the flush encrypts the output.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <pthread.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conf/xmalloc.h"
#include "proxy/io.h"

/* flags */
#define IO_READING    0x01 /* read interest registered */
#define IO_WR_ARMED   0x02 /* waiting for the socket to take output */
#define IO_CONNECTING 0x04 /* connect in progress */
#define IO_DIRTY      0x08 /* on the loop's dirty list */
#define IO_FAILED     0x10 /* connect failed at once: report from the loop */
#define IO_BULK       0x20 /* reads fill chunks: recv into reserved space */
#define IO_MORE       0x40 /* on the loop's more list */
#define IO_CHECK_END  0x80 /* read on after the read callback */

/* Read this much per recv: a 16 KiB chain with libevent's chain header
 * (chains are allocated in powers of two including the header). */
#define IO_READ_CHUNK (16384 - 128)
/* A stream in bulk mode reads 32 KiB chains: a 16 KiB body and its head
 * come in one recv, not a full 16 KiB read and a second one for the
 * rest (the same two 16 KiB blocks of memory, one syscall fewer). */
#define IO_READ_BULK (32768 - 128)
#define IO_READ_MAX  (2 * IO_READ_BULK) /* per wake-up */

#define IO_WRITE_IOVS 16 /* chains per send */

#define TLS_RECORD   16384       /* most plaintext in one TLS record */
#define TLS_WIRE_MAX (64 * 1024) /* encrypt ahead of the socket this far */

/* A TLS stream's state (TLS mode). */
struct sl_io_tls {
	SSL *ssl;
	struct evbuffer *raw_in;  /* ciphertext received, not yet decrypted */
	struct evbuffer *raw_out; /* ciphertext to send */
	unsigned long err;        /* newest OpenSSL error of a failure */
	bool plaintext;           /* ... which was plain HTTP, not TLS */
	bool eof;                 /* the peer's FIN came: BIO reads end */
	bool ragged;              /* ... and no close_notify came before it */
	bool handshaking;
	int64_t hs_deadline; /* ms: an origin handshake's end (0: none) */
};

static void write_now(struct sl_io *io);
static void disarm_write(struct sl_io *io);
static void flush(struct sl_io_loop *loop);
static void write_ev_cb(evutil_socket_t fd, short what, void *arg);

/*
 * The socket calls of the request path, made with syscall(2) rather than
 * through glibc's recv/send wrappers: those are cancellation points, and
 * in a multi-threaded process each call turns the thread's asynchronous
 * cancellation on and off around the system call, two atomic
 * read-modify-writes (perf: ~0.13 us of a keep-alive request's four
 * calls). Workers are never cancelled. Same results, errno included.
 */
static inline ssize_t
sys_recv(int fd, void *buf, size_t len)
{
	return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

static inline ssize_t
sys_recvmsg(int fd, struct msghdr *msg)
{
	return syscall(SYS_recvmsg, fd, msg, 0);
}

static inline ssize_t
sys_send(int fd, const void *buf, size_t len)
{
	return syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0);
}

static inline ssize_t
sys_sendmsg(int fd, const struct msghdr *msg)
{
	return syscall(SYS_sendmsg, fd, msg, MSG_NOSIGNAL);
}

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
		return sys_recv(fd, vec[0].iov_base, vec[0].iov_len);
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = (struct iovec *)vec;
	msg.msg_iovlen = (size_t)nvec;
	return sys_recvmsg(fd, &msg);
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
		n = sys_send(fd, vec[0].iov_base, vec[0].iov_len);
	else {
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = (struct iovec *)vec;
		msg.msg_iovlen = (size_t)nvec;
		n = sys_sendmsg(fd, &msg);
	}
	if (n > 0)
		evbuffer_drain(out, (size_t)n);
	return (int)n;
}

/* Send BUF until it is empty or the socket is full; no callbacks. */
static void
send_what_fits(struct evbuffer *buf, evutil_socket_t fd)
{
	while (evbuffer_get_length(buf) > 0 && sock_write(buf, fd) > 0)
		;
}

/* ---- timeouts ----
 *
 * A read or write timeout is a deadline, now + the timeout, on the loop's
 * queue for that duration and kind. Every deadline of a queue was set to
 * "now + the same duration", so appending keeps the queue sorted and a
 * restart (each read, each write that made progress) is an unlink and an
 * append: no libevent timer work on the request path, where re-adding a
 * timed event cost ~15% of a request's instructions. Each queue has one
 * libevent timer, pending while the queue is not empty, for a time no
 * later than its head's deadline; a head that moves on is not chased: the
 * timer fires, finds nothing due and waits for the new head.
 */
struct sl_io_tq {
	struct sl_io_tq *next;
	struct event ev;
	TAILQ_HEAD(sl_io_deadline_q, sl_io_deadline) q;
	int64_t fire_at; /* when the timer is due; 0: not pending */
	uint32_t ms;
	bool write; /* write timeouts (and connects), else read timeouts */
};

static void tq_fire(evutil_socket_t fd, short what, void *arg);

static int64_t
clock_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
clock_ms(void)
{
	return clock_us() / 1000;
}

/*
 * Now, for deadlines and the connections' timestamps: read at most once
 * per outermost io callback, when first needed (a read costs ~23 ns in the
 * bench VM; a request restarts deadlines and takes timestamps in several
 * callbacks). A read callback restarts its deadline before it reads, so
 * the time is when the socket was found ready. Not
 * CLOCK_MONOTONIC_COARSE: it lagged the precise clock by up to 6 ms with
 * its 4 ms tick, and a deadline set from it fired early.
 */
static inline uint64_t
loop_now_us(struct sl_io_loop *loop)
{
	if (loop->depth == 0)
		return (uint64_t)clock_us();
	if (loop->now_us == 0)
		loop->now_us = clock_us();
	return (uint64_t)loop->now_us;
}

uint64_t
sl_io_now_us(struct sl_io_loop *loop)
{
	return loop_now_us(loop);
}

/* The same, in ms. (io.c's own callers inline it: a call per deadline
 * restart costs ~25 instructions per request.) */
static inline int64_t
now_ms(struct sl_io_loop *loop)
{
	return (int64_t)(loop_now_us(loop) / 1000);
}

/* Enter an io callback: the clock is read again when a deadline next
 * needs it. */
static void
loop_enter(struct sl_io_loop *loop)
{
	if (loop->depth++ == 0)
		loop->now_us = 0;
}

/* Leave an io callback; the outermost sends what the callbacks wrote. */
static void
loop_leave(struct sl_io_loop *loop)
{
	if (--loop->depth == 0 && !TAILQ_EMPTY(&loop->dirty))
		flush(loop);
}

/* The queue for MS of one kind: an existing one, an empty one taken over,
 * or a new one (a few per process: one per timeout value in the config,
 * and the values of past configs while connections still use them). */
static struct sl_io_tq *
tq_get(struct sl_io_loop *loop, uint32_t ms, bool write)
{
	struct sl_io_tq *tq, *spare = NULL;

	for (tq = loop->tqs; tq != NULL; tq = tq->next) {
		if (tq->ms == ms && tq->write == write)
			return tq;
		if (spare == NULL && TAILQ_EMPTY(&tq->q))
			spare = tq;
	}
	if ((tq = spare) == NULL) {
		tq = sl_xcalloc(1, sizeof *tq);
		TAILQ_INIT(&tq->q);
		evtimer_assign(&tq->ev, loop->base, tq_fire, tq);
		tq->next = loop->tqs;
		loop->tqs = tq;
	}
	tq->ms = ms;
	tq->write = write;
	return tq;
}

/* Make TQ's timer due at AT. */
static void
tq_arm(struct sl_io_tq *tq, int64_t at)
{
	int64_t now = clock_ms();
	int64_t ms = at > now ? at - now : 0;
	struct timeval tv = {
	    (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	(void)evtimer_add(&tq->ev, &tv);
	tq->fire_at = at;
}

static void
deadline_stop(struct sl_io_deadline *dl)
{
	if (dl->tq != NULL) {
		TAILQ_REMOVE(&dl->tq->q, dl, link);
		dl->tq = NULL;
	}
}

/* (Re)start IO's deadline DL (its rdl or wdl) to MS from now (0: stop
 * it). */
static void
deadline_start(struct sl_io *io, struct sl_io_deadline *dl, uint32_t ms)
{
	struct sl_io_deadline *last;
	struct sl_io_tq *tq;
	int64_t at;

	if (ms == 0) {
		deadline_stop(dl);
		return;
	}
	/* + 1: a reading taken earlier in this callback must not make the
	 * timeout short. */
	at = now_ms(io->loop) + ms + 1;
	tq = dl->tq;
	/* Restarted again within the same millisecond (a request restarts a
	 * deadline several times per wake-up): it is where it would go. */
	if (tq != NULL && tq->ms == ms && dl->at == at)
		return;
	if (tq != NULL)
		TAILQ_REMOVE(&tq->q, dl, link);
	if (tq == NULL || tq->ms != ms)
		tq = dl->tq = tq_get(io->loop, ms, dl == &io->wdl);
	/* The clock never goes back, so appending keeps the queue sorted;
	 * the guard keeps the order whatever the clock does. */
	dl->at = at;
	last = TAILQ_LAST(&tq->q, sl_io_deadline_q);
	if (last != NULL && last->at > dl->at)
		dl->at = last->at;
	TAILQ_INSERT_TAIL(&tq->q, dl, link);
	if (last == NULL && (tq->fire_at == 0 || tq->fire_at > dl->at))
		tq_arm(tq, dl->at);
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

/*
 * Start reading, or restart the read timeout.
 *
 * The events are edge-triggered (EV_ET): epoll reports a socket when data
 * arrives, not again on every wait while it stays readable, which saves
 * the kernel a poll of each socket after each wake-up. The rules that
 * keep an edge from being lost:
 *   - a read callback reads until recv comes up short (the socket is
 *     empty: later data makes a new edge) or reports EOF or an error; one
 *     that stops at IO_READ_MAX reads on in the next iteration (read_on);
 *   - a FIN behind the data makes no edge of its own: the event asks for
 *     EV_CLOSED (EPOLLRDHUP), and a wake-up that has it reads on past a
 *     short read to EAGAIN or the EOF (do_read);
 *   - reading that stops and resumes needs nothing more: an edge that
 *     came while reading was off, or that the stop dropped from libevent's
 *     active queue, is found again because every stop and start reaches
 *     epoll (libevent's changelist turns a stop and a start in one loop
 *     iteration into EPOLL_CTL_MOD, not into nothing), and epoll_ctl
 *     reports a socket that is ready when it is added or modified
 *     (tests/unit/test_io.c holds libevent to this);
 *   - a write that stops before EAGAIN with output left (the tries ran
 *     out) runs again at once (event_active); one that hit EAGAIN gets an
 *     edge when the socket drains (for TCP, only then: an ACK wakes a
 *     writer that found the socket full).
 */
static void
start_reading(struct sl_io *io)
{
	if (!(io->flags & IO_READING)) {
		(void)event_add(&io->rd, NULL);
		io->flags |= IO_READING;
	}
	deadline_start(io, &io->rdl, io->rtimeout_ms);
}

static void
stop_reading(struct sl_io *io)
{
	if (io->flags & IO_READING) {
		io->flags &= ~IO_READING;
		(void)event_del(&io->rd);
		deadline_stop(&io->rdl);
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

/* recv's outcome N: sets *END for an EOF or a failure; true when N > 0. */
static bool
recv_ok(ssize_t n, short *end)
{
	if (n == 0)
		*end = BEV_EVENT_EOF;
	else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR)
		*end = BEV_EVENT_ERROR;
	return n > 0;
}

/*
 * recv into IO's BUF, up to IO_READ_MAX. Returns the
 * bytes read; *END is BEV_EVENT_EOF or BEV_EVENT_ERROR when the socket
 * ended (after those bytes), -1 when no buffer space could be had.
 *
 * A stream of small messages (requests, short responses) reads into the
 * loop's scratch and copies what came: a right-sized chain from malloc's
 * per-thread cache, instead of a fresh 16 KiB chain (malloc's slow path)
 * per message. A read that fills the scratch switches the stream to bulk
 * mode, recv straight into 32 KiB of reserved buffer space, until a
 * wake-up reads less than one scratch-full again.
 */
static ssize_t
recv_into(
    struct sl_io *io, struct evbuffer *buf, evutil_socket_t fd, short *end)
{
	struct evbuffer_iovec vec[2];
	size_t total = 0, room, got, take;
	ssize_t n;
	int nvec, i;

	*end = 0;
	if (!(io->flags & IO_BULK)) {
		char *scratch = io->loop->rbuf;

		n = sys_recv(fd, scratch, IO_READ_CHUNK);
		if (!recv_ok(n, end))
			return 0;
		if (evbuffer_add(buf, scratch, (size_t)n) != 0)
			return -1;
		if ((size_t)n < IO_READ_CHUNK)
			return n; /* a short read emptied the socket */
		io->flags |= IO_BULK;
		total = (size_t)n;
	}
	for (;;) {
		nvec = evbuffer_reserve_space(buf, IO_READ_BULK, vec, 2);
		if (nvec <= 0)
			return -1;
		n = sock_read(fd, vec, nvec);
		if (!recv_ok(n, end))
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
		evbuffer_commit_space(buf, vec, nvec);
		/* A short read emptied the socket; a full one may not have. */
		if ((size_t)n < room || total >= IO_READ_MAX)
			break;
	}
	if (total < IO_READ_CHUNK)
		io->flags &= ~IO_BULK;
	return (ssize_t)total;
}

/*
 * IO stopped reading at IO_READ_MAX: the socket may hold more, and no
 * edge will say so. It reads on in the next loop iteration, after the
 * sockets that became ready meanwhile and the timers (more_ev is a timer
 * due at once), as a level-triggered event would have had it.
 */
static void
read_on(struct sl_io *io)
{
	static const struct timeval at_once = {0, 0};
	struct sl_io_loop *loop = io->loop;

	if (io->flags & IO_MORE)
		return;
	if (TAILQ_EMPTY(&loop->more))
		(void)event_add(loop->more_ev, &at_once);
	TAILQ_INSERT_TAIL(&loop->more, io, more_link);
	io->flags |= IO_MORE;
}

/* The more_ev timer: the ios still reading read on (read_ev_cb), to EAGAIN
 * or EOF. Activated, not called: a read may free others on the list. */
static void
more_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_io_loop *loop = arg;
	struct sl_io *io;

	(void)fd;
	(void)what;
	while ((io = TAILQ_FIRST(&loop->more)) != NULL) {
		TAILQ_REMOVE(&loop->more, io, more_link);
		io->flags &= ~IO_MORE;
		if (io->flags & IO_READING)
			event_active(&io->rd, EV_READ | EV_CLOSED, 0);
	}
}

/* Queue IO for the flush (output to send, or TLS records to send). */
static void
mark_dirty(struct sl_io *io)
{
	if (io->flags & (IO_DIRTY | IO_WR_ARMED | IO_CONNECTING))
		return;
	/* Inside an io callback the flush follows when it returns. */
	if (io->loop->depth == 0 && TAILQ_EMPTY(&io->loop->dirty))
		event_active(io->loop->flush_ev, EV_TIMEOUT, 0);
	TAILQ_INSERT_TAIL(&io->loop->dirty, io, dirty_link);
	io->flags |= IO_DIRTY;
}

/* ---- TLS mode ---- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* The SSL's ciphertext goes to raw_out; it never has to wait. */
static int
bio_write(BIO *b, const char *data, int len)
{
	struct sl_io_tls *t = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	return evbuffer_add(t->raw_out, data, (size_t)len) == 0 ? len : -1;
}

/* The SSL reads what recv got; "retry" when that is used up. */
static int
bio_read(BIO *b, char *data, int len)
{
	struct sl_io_tls *t = BIO_get_data(b);
	int n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	n = evbuffer_remove(t->raw_in, data, (size_t)len);
	if (n > 0)
		return n;
	if (t->eof)
		return 0;
	BIO_set_retry_read(b);
	return -1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct sl_io_tls *t = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)evbuffer_get_length(t->raw_in);
	case BIO_CTRL_WPENDING:
		return (long)evbuffer_get_length(t->raw_out);
	case BIO_CTRL_EOF:
		return t->eof && evbuffer_get_length(t->raw_in) == 0;
	default:
		return 0;
	}
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void
bio_method_init(void)
{
	BIO_METHOD *m =
	    BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sl_io");

	if (m == NULL)
		return;
	if (BIO_meth_set_write(m, bio_write) != 1 ||
	    BIO_meth_set_read(m, bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
	    BIO_meth_set_create(m, bio_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* Keep why the SSL failed (the thread's error queue is emptied). */
static void
tls_record_error(struct sl_io_tls *t)
{
	unsigned long e;

	while ((e = ERR_get_error()) != 0) {
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST ||
		        ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST))
			t->plaintext = true;
		t->err = e;
	}
}

/* An SSL call failed with ERR (SSL_get_error): the peer's end of the
 * stream (EOF), a failure (ERROR), or 0 when it only wants more input. */
static short
tls_outcome(struct sl_io_tls *t, int err)
{
	unsigned long e;

	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return t->eof && evbuffer_get_length(t->raw_in) == 0
		    ? BEV_EVENT_EOF
		    : 0;
	case SSL_ERROR_ZERO_RETURN:
		return BEV_EVENT_EOF; /* close_notify */
	case SSL_ERROR_SYSCALL:
		if (t->eof && ERR_peek_error() == 0) {
			t->ragged = true;
			return BEV_EVENT_EOF;
		}
		/* fall through */
	case SSL_ERROR_SSL:
		/* Without SSL_OP_IGNORE_UNEXPECTED_EOF (origins), a FIN
		 * without close_notify: an end, but a ragged one. */
		e = ERR_peek_last_error();
		if (t->eof && ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			t->ragged = true;
			return BEV_EVENT_EOF;
		}
		/* fall through */
	default:
		tls_record_error(t);
		return BEV_EVENT_ERROR;
	}
}

/* Give up on a TLS stream: what the SSL queued (an alert) goes out first,
 * best effort, then WHAT is reported. */
static void
tls_fail(struct sl_io *io, short what)
{
	send_what_fits(io->tls->raw_out, io->fd);
	ERR_clear_error();
	fail(io, what);
}

/*
 * Run the handshake on what has arrived. Returns 1 when it completed
 * (BEV_EVENT_CONNECTED was reported), 0 when it waits for more, -1 when
 * it failed (reported) or a callback freed IO: IO is then not touched.
 */
static int
tls_handshake(struct sl_io *io)
{
	struct sl_io_tls *t = io->tls;
	short what;
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->handshaking = false;
		if (io->event_cb != NULL &&
		    !IO_CALL(
		        io, io->event_cb(io, BEV_EVENT_CONNECTED, io->arg)))
			return -1;
		/* Output queued during the handshake can go now. */
		if (evbuffer_get_length(io->out) > 0)
			mark_dirty(io);
		return 1;
	}
	what = tls_outcome(t, SSL_get_error(t->ssl, r));
	if (what == 0) {
		if (evbuffer_get_length(t->raw_out) > 0)
			mark_dirty(io); /* our next flight */
		return 0;
	}
	tls_fail(io, BEV_EVENT_READING | what);
	return -1;
}

/* Decrypt all of raw_in into the input. Returns 0, or BEV_EVENT_EOF or
 * BEV_EVENT_ERROR for how the stream ended. */
static short
tls_decrypt(struct sl_io *io)
{
	struct sl_io_tls *t = io->tls;
	struct evbuffer_iovec vec;
	size_t n;

	for (;;) {
		if (evbuffer_reserve_space(io->in, IO_READ_CHUNK, &vec, 1) != 1)
			return BEV_EVENT_ERROR;
		ERR_clear_error();
		if (SSL_read_ex(t->ssl, vec.iov_base, vec.iov_len, &n) != 1)
			return tls_outcome(t, SSL_get_error(t->ssl, 0));
		vec.iov_len = n;
		evbuffer_commit_space(io->in, &vec, 1);
	}
}

/* Encrypt output into raw_out, TLS_WIRE_MAX ahead of the socket at most,
 * once the handshake is done. Returns 0 or -1 (a failed SSL_write). */
static int
tls_encrypt(struct sl_io *io)
{
	struct sl_io_tls *t = io->tls;
	struct evbuffer_iovec vec;
	size_t len, n;

	if (t->handshaking)
		return 0;
	while ((len = evbuffer_get_length(io->out)) > 0 &&
	    evbuffer_get_length(t->raw_out) < TLS_WIRE_MAX) {
		/* A small response (head and body added apart) goes out as
		 * one record; larger output one chain per record. */
		if (len <= TLS_RECORD &&
		    evbuffer_pullup(io->out, (ev_ssize_t)len) == NULL)
			return -1;
		if (evbuffer_peek(io->out, -1, NULL, &vec, 1) < 1)
			return -1;
		if (vec.iov_len > TLS_RECORD)
			vec.iov_len = TLS_RECORD;
		ERR_clear_error();
		if (SSL_write_ex(t->ssl, vec.iov_base, vec.iov_len, &n) != 1) {
			tls_record_error(t);
			return -1;
		}
		evbuffer_drain(io->out, n);
	}
	return 0;
}

/*
 * After a read that left the stream waiting (part of a record, records
 * with no application data in them, or a message the callback found
 * incomplete) with no end seen: an EOF or a reset right behind those
 * bytes made no edge of its own (see do_read), so look once. TOOK: the
 * records read were all taken (session tickets, a KeyUpdate, handshake
 * messages), and no callback ran that could have asked. Returns the bytes
 * read (*END set as recv_into does), or -1 when that read failed.
 */
static ssize_t
tls_look_for_end(struct sl_io *io, bool grew, bool took, short *end)
{
	struct sl_io_tls *t = io->tls;
	bool waiting = grew ? (io->flags & IO_CHECK_END) != 0
	                    : took || evbuffer_get_length(t->raw_in) > 0 ||
	        SSL_has_pending(t->ssl);
	ssize_t n;

	io->flags &= ~IO_CHECK_END;
	if (!waiting || !(io->flags & IO_READING))
		return 0;
	n = recv_into(io, t->raw_in, io->fd, end);
	if (n >= IO_READ_MAX && *end == 0)
		read_on(io);
	return n;
}

/* TLS data arrived in raw_in (END: the socket ended after it). */
static short
tls_read(struct sl_io *io, short end)
{
	struct sl_io_tls *t = io->tls;
	bool looked = false, grew;
	size_t before, raw_before;
	ssize_t more;
	short what;

again:
	if (end == BEV_EVENT_EOF)
		t->eof = true;
	before = evbuffer_get_length(io->in);
	raw_before = evbuffer_get_length(t->raw_in);
	if (t->handshaking) {
		int r;

		if (t->hs_deadline != 0 && now_ms(io->loop) >= t->hs_deadline) {
			tls_fail(io, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
			return 0;
		}
		r = tls_handshake(io);
		if (r < 0)
			return 0; /* failed (reported) or freed */
	}
	if (t->handshaking) {
		what = 0; /* it waits for more */
		grew = false;
	} else {
		what = tls_decrypt(io);
		if (evbuffer_get_length(t->raw_out) > 0)
			mark_dirty(io); /* e.g. a KeyUpdate answer */
		if (what == BEV_EVENT_ERROR) {
			/* Bad records: nothing more can be trusted. */
			tls_fail(io, BEV_EVENT_READING | BEV_EVENT_ERROR);
			return 0;
		}
		grew = evbuffer_get_length(io->in) > before;
		if (grew && io->read_cb != NULL &&
		    !IO_CALL(io, io->read_cb(io, io->arg)))
			return 0;
	}
	if (end == 0 && what == 0 && !looked) {
		looked = true;
		more = tls_look_for_end(io, grew,
		    raw_before > evbuffer_get_length(t->raw_in), &end);
		if (more < 0) {
			tls_fail(io, BEV_EVENT_READING | BEV_EVENT_ERROR);
			return 0;
		}
		if (more > 0 || end != 0)
			goto again;
	}
	return end == BEV_EVENT_ERROR ? end : what;
}

static short
do_read(struct sl_io *io, evutil_socket_t fd, short what)
{
	struct evbuffer *buf;
	short end;
	ssize_t total, more;

	if (what & EV_TIMEOUT) {
		fail(io, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
		return 0;
	}
	if (io->flags & IO_READING) /* the read timeout restarts */
		deadline_start(io, &io->rdl, io->rtimeout_ms);
	io->flags &= ~IO_CHECK_END; /* asked for by this read's callback */
	buf = io->tls != NULL ? io->tls->raw_in : io->in;
	total = recv_into(io, buf, fd, &end);
	/* A short read emptied the socket, but a FIN that came with the
	 * data makes no edge of its own: with EV_CLOSED (epoll saw the FIN,
	 * or the wake-up is ours and cannot tell) read on to EAGAIN or EOF. */
	while ((what & EV_CLOSED) && end == 0 && total > 0 &&
	    total < IO_READ_MAX) {
		more = recv_into(io, buf, fd, &end);
		if (more <= 0) {
			total = more < 0 ? more : total;
			break;
		}
		total += more;
	}
	if (total >= IO_READ_MAX && end == 0)
		read_on(io);
	if (total < 0) {
		fail(io, BEV_EVENT_READING | BEV_EVENT_ERROR);
		return 0;
	}
	if (io->tls != NULL)
		return tls_read(io, end);
	if (total == 0) {
		if (end != 0)
			fail(io, BEV_EVENT_READING | end);
		return 0;
	}
	if (io->read_cb != NULL && !IO_CALL(io, io->read_cb(io, io->arg)))
		return 0;
	/* The callback found a message incomplete (sl_io_check_end): an EOF
	 * or a reset that came with the data made no edge, so look now. */
	while ((io->flags & IO_CHECK_END) && end == 0 && total < IO_READ_MAX) {
		io->flags &= ~IO_CHECK_END;
		more = recv_into(io, buf, fd, &end);
		if (more < 0) {
			fail(io, BEV_EVENT_READING | BEV_EVENT_ERROR);
			return 0;
		}
		if (more == 0)
			break;
		total += more;
		if (io->read_cb != NULL &&
		    !IO_CALL(io, io->read_cb(io, io->arg)))
			return 0;
	}
	/* The data came with an EOF or error: the caller reports it after
	 * the data (and what it produced) went out. */
	return end;
}

void
sl_io_check_end(struct sl_io *io)
{
	io->flags |= IO_CHECK_END;
}

/* The connect finished (or failed, or timed out). */
static void
connect_done(struct sl_io *io, short what)
{
	int err = 0;
	socklen_t len = sizeof err;

	io->flags &= ~IO_CONNECTING;
	if (what & EV_TIMEOUT) {
		disarm_write(io);
		fail(io, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
		return;
	}
	if (io->flags & IO_FAILED)
		err = ECONNREFUSED;
	else if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		disarm_write(io);
		errno = err;
		fail(io, BEV_EVENT_ERROR);
		return;
	}
	if (io->tls != NULL) {
		/* TCP is up; CONNECTED comes when the handshake ends. It
		 * waits for the server, so it reads whether or not the user
		 * does yet. */
		if (!(io->flags & IO_READING))
			start_reading(io);
		/* The handshake gets the read timeout once, as a whole: a
		 * server trickling bytes would restart it with each, so
		 * tls_read cuts it off at the first byte past it. */
		if (io->rtimeout_ms > 0)
			io->tls->hs_deadline =
			    now_ms(io->loop) + io->rtimeout_ms;
		if (tls_handshake(io) < 0)
			return;
	} else if (io->event_cb != NULL &&
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
		disarm_write(io);
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
		    EV_WRITE | EV_PERSIST | EV_ET, write_ev_cb, io);
		if (io->wr == NULL)
			return -1;
	}
	if (!(io->flags & IO_WR_ARMED)) {
		if (event_add(io->wr, NULL) != 0)
			return -1;
		io->flags |= IO_WR_ARMED;
	}
	/* (Re)starts the timeout: the socket made progress. */
	deadline_start(io, &io->wdl, io->wtimeout_ms);
	return 0;
}

/* Bytes not yet handed to the kernel: output, and TLS records. */
size_t
sl_io_unsent(const struct sl_io *io)
{
	size_t n = evbuffer_get_length(io->out);

	if (io->tls != NULL)
		n += evbuffer_get_length(io->tls->raw_out);
	return n;
}

static void
disarm_write(struct sl_io *io)
{
	if (io->flags & IO_WR_ARMED) {
		(void)event_del(io->wr);
		io->flags &= ~IO_WR_ARMED;
		deadline_stop(&io->wdl);
	}
}

/*
 * Write the output (TLS: encrypt it, then send the records). Stops at
 * EAGAIN (and arms the write event) or when the output is empty (and runs
 * the write callback if it is at most the low-water mark, as bufferevents
 * do after a write).
 */
static void
write_now(struct sl_io *io)
{
	struct evbuffer *wire = io->tls != NULL ? io->tls->raw_out : io->out;
	size_t before = sl_io_unsent(io), left;
	bool sent = false;
	int n, tries = 0;

	if (before == 0) {
		disarm_write(io);
		return;
	}
	do {
		if (io->tls != NULL && tls_encrypt(io) != 0) {
			disarm_write(io);
			tls_fail(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
			return;
		}
		n = sock_write(wire, io->fd);
		sent = sent || n > 0;
		left = sl_io_unsent(io);
	} while (n > 0 && left > 0 && ++tries < 4);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR) {
		disarm_write(io);
		fail(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
		return;
	}
	/* TLS output not yet encrypted (TLS_WIRE_MAX, or the tries ran
	 * out) goes on when the socket is writable, as plain output does. */
	if (evbuffer_get_length(wire) > 0 ||
	    (io->tls != NULL && !io->tls->handshaking &&
	        evbuffer_get_length(io->out) > 0)) {
		/* The socket is full; a progress re-arm restarts the
		 * timeout, a no-progress wake-up keeps it running. */
		if ((!(io->flags & IO_WR_ARMED) || sent) &&
		    arm_write(io) != 0) {
			fail(io, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
			return;
		}
		/* The tries ran out before EAGAIN: no edge will come. */
		if (n > 0)
			event_active(io->wr, EV_WRITE, 0);
	} else
		disarm_write(io); /* TLS: output may wait for the handshake */
	if (left < before && left <= io->wlow && io->write_cb != NULL)
		io->write_cb(io, io->arg);
}

/*
 * Write every io that got output. Runs when the outermost io callback
 * returns, so a request read from a client is on its way to the origin
 * before the next ready socket is looked at (one epoll_wait can return
 * dozens); output added outside io callbacks (timers) waits for the flush
 * event, later in the same iteration.
 */
static void
flush(struct sl_io_loop *loop)
{
	struct sl_io *io;

	loop_enter(loop);
	while ((io = TAILQ_FIRST(&loop->dirty)) != NULL) {
		TAILQ_REMOVE(&loop->dirty, io, dirty_link);
		io->flags &= ~IO_DIRTY;
		if (!(io->flags & (IO_WR_ARMED | IO_CONNECTING)))
			write_now(io);
	}
	loop->depth--;
}

/* Data arrived (EV_READ), or the read timeout expired (EV_TIMEOUT). */
static void
read_event(struct sl_io *io, short what)
{
	struct sl_io_loop *loop = io->loop; /* IO may be freed below */
	bool alive = true;
	short end;

	io->alive = &alive;
	loop_enter(loop);
	end = do_read(io, io->fd, what);
	loop_leave(loop);
	if (!alive)
		return;
	io->alive = NULL;
	/* An EOF or error that came with data is reported once the data and
	 * what it produced have been sent (a handler closing the other side
	 * would drop them otherwise), as a bufferevent would on its next
	 * read. Unless the callback stopped reading (backpressure): the next
	 * enable finds it. */
	if (end != 0 && (io->flags & IO_READING)) {
		loop_enter(loop);
		fail(io, BEV_EVENT_READING | end);
		loop_leave(loop);
	}
}

/* The read event: EV_READ, with EV_CLOSED when epoll saw a FIN or when
 * more_ev_cb cannot tell. (Read timeouts are deadlines: tq_fire.) */
static void
read_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	read_event(arg, what & (EV_READ | EV_CLOSED));
}

static void
write_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_io *io = arg;
	struct sl_io_loop *loop = io->loop;

	loop_enter(loop);
	do_write(io, what);
	loop_leave(loop);
}

/* A queue's timer: time out the ios whose deadlines have passed, then wait
 * for the next. */
static void
tq_fire(evutil_socket_t fd, short what, void *arg)
{
	struct sl_io_tq *tq = arg;
	struct sl_io_deadline *dl;
	struct sl_io *io;
	int64_t now = clock_ms();

	(void)fd;
	(void)what;
	tq->fire_at = 0;
	/* A timeout may free other ios or start deadlines on this queue:
	 * take the head afresh each time. */
	while ((dl = TAILQ_FIRST(&tq->q)) != NULL && dl->at <= now) {
		deadline_stop(dl);
		if (tq->write) {
			io = (struct sl_io *)((char *)dl -
			    offsetof(struct sl_io, wdl));
			write_ev_cb(io->fd, EV_TIMEOUT, io);
		} else {
			io = (struct sl_io *)((char *)dl -
			    offsetof(struct sl_io, rdl));
			read_event(io, EV_TIMEOUT);
		}
	}
	if (dl != NULL && (tq->fire_at == 0 || tq->fire_at > dl->at))
		tq_arm(tq, dl->at);
}

/* The flush event: output added outside io callbacks. */
static void
flush_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

/* The output, to add to: IO joins the flush now (no evbuffer callback,
 * which libevent would run on every add and every drain, ~100
 * instructions each, five times per request). */
struct evbuffer *
sl_io_output(struct sl_io *io)
{
	mark_dirty(io);
	return io->out;
}

int
sl_io_loop_init(struct sl_io_loop *loop, struct event_base *base)
{
	memset(loop, 0, sizeof *loop);
	loop->base = base;
	TAILQ_INIT(&loop->dirty);
	TAILQ_INIT(&loop->more);
	loop->flush_ev = event_new(base, -1, 0, flush_ev_cb, loop);
	loop->more_ev = event_new(base, -1, 0, more_ev_cb, loop);
	loop->rbuf = malloc(IO_READ_CHUNK);
	return loop->flush_ev != NULL && loop->more_ev != NULL &&
	        loop->rbuf != NULL
	    ? 0
	    : -1;
}

void
sl_io_loop_free(struct sl_io_loop *loop)
{
	struct sl_io_tq *tq;

	if (loop->flush_ev != NULL)
		event_free(loop->flush_ev);
	loop->flush_ev = NULL;
	if (loop->more_ev != NULL)
		event_free(loop->more_ev);
	loop->more_ev = NULL;
	free(loop->rbuf);
	loop->rbuf = NULL;
	while ((tq = loop->tqs) != NULL) {
		loop->tqs = tq->next;
		(void)event_del(&tq->ev);
		free(tq);
	}
}

/* IO's read event, for its socket (added when reading starts). */
static void
assign_read(struct sl_io *io)
{
	event_assign(&io->rd, io->loop->base, io->fd,
	    EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, read_ev_cb, io);
}

int
sl_io_init_socket(struct sl_io *io, struct sl_io_loop *loop, evutil_socket_t fd)
{
	memset(io, 0, sizeof *io);
	io->loop = loop;
	io->fd = fd;
	io->in = evbuffer_new();
	io->out = evbuffer_new();
	if (io->in == NULL || io->out == NULL)
		goto fail;
	if (fd >= 0)
		assign_read(io);
	return 0;
fail:
	if (io->in != NULL)
		evbuffer_free(io->in);
	if (io->out != NULL)
		evbuffer_free(io->out);
	io->in = io->out = NULL;
	return -1;
}

int
sl_io_start_tls(struct sl_io *io, SSL *ssl, bool accept)
{
	struct sl_io_tls *t;
	BIO *bio;

	if (ssl == NULL)
		return -1;
	(void)pthread_once(&bio_once, bio_method_init);
	if (bio_method == NULL || (t = calloc(1, sizeof *t)) == NULL) {
		SSL_free(ssl);
		return -1;
	}
	t->raw_in = evbuffer_new();
	t->raw_out = evbuffer_new();
	bio = BIO_new(bio_method);
	if (t->raw_in == NULL || t->raw_out == NULL || bio == NULL) {
		BIO_free(bio);
		if (t->raw_in != NULL)
			evbuffer_free(t->raw_in);
		if (t->raw_out != NULL)
			evbuffer_free(t->raw_out);
		free(t);
		SSL_free(ssl);
		return -1;
	}
	BIO_set_data(bio, t);
	SSL_set_bio(ssl, bio, bio); /* one BIO both ways: one reference */
	if (accept)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	t->ssl = ssl;
	t->handshaking = true;
	io->tls = t;
	return 0;
}

SSL *
sl_io_ssl(const struct sl_io *io)
{
	return io->tls != NULL ? io->tls->ssl : NULL;
}

unsigned long
sl_io_tls_error(const struct sl_io *io, bool *plaintext)
{
	*plaintext = io->tls != NULL && io->tls->plaintext;
	return io->tls != NULL ? io->tls->err : 0;
}

bool
sl_io_tls_ragged(const struct sl_io *io)
{
	return io->tls != NULL && io->tls->ragged;
}

void
sl_io_tls_close_notify(struct sl_io *io)
{
	struct sl_io_tls *t = io->tls;

	if (t == NULL || t->handshaking || io->fd < 0 ||
	    (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
		return;
	/* After the records already made, never after more plaintext. */
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
	send_what_fits(t->raw_out, io->fd);
}

int
sl_io_connect(struct sl_io *io, const struct sockaddr *addr, int len)
{
	int one = 1;

	io->fd = socket(
	    addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (io->fd < 0)
		return -1;
	(void)setsockopt(io->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	assign_read(io);
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
	struct evbuffer *wire = io->tls != NULL ? io->tls->raw_out : io->out;

	if (io->fd < 0 || (io->flags & (IO_CONNECTING | IO_FAILED)))
		return;
	while (sl_io_unsent(io) > 0) {
		if (io->tls != NULL && tls_encrypt(io) != 0)
			break;
		if (sock_write(wire, io->fd) <= 0)
			break;
	}
	ERR_clear_error();
}

void
sl_io_free(struct sl_io *io)
{
	if (io->alive != NULL) {
		*io->alive = false;
		io->alive = NULL;
	}
	if (io->tls != NULL) {
		SSL_free(io->tls->ssl); /* and its BIO */
		evbuffer_free(io->tls->raw_in);
		evbuffer_free(io->tls->raw_out);
		free(io->tls);
		io->tls = NULL;
	}
	if (io->flags & IO_DIRTY)
		TAILQ_REMOVE(&io->loop->dirty, io, dirty_link);
	if (io->flags & IO_MORE)
		TAILQ_REMOVE(&io->loop->more, io, more_link);
	deadline_stop(&io->rdl);
	deadline_stop(&io->wdl);
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
	if (io->fd < 0)
		return;
	start_reading(io);
	/* An EOF seen while reading was off is found again by the next read
	 * (a FIN stays readable); a close_notify was consumed into the SSL,
	 * so look again without waiting for the socket. */
	if (io->tls != NULL &&
	    (SSL_get_shutdown(io->tls->ssl) & SSL_RECEIVED_SHUTDOWN))
		event_active(&io->rd, EV_READ | EV_CLOSED, 0);
}

void
sl_io_disable_read(struct sl_io *io)
{
	stop_reading(io);
}

void
sl_io_set_timeouts(struct sl_io *io, uint32_t read_ms, uint32_t write_ms)
{
	if (read_ms != io->rtimeout_ms) {
		io->rtimeout_ms = read_ms;
		if (io->flags & IO_READING)
			deadline_start(io, &io->rdl, read_ms);
	}
	if (write_ms != io->wtimeout_ms) {
		io->wtimeout_ms = write_ms;
		if (io->flags & IO_WR_ARMED)
			deadline_start(io, &io->wdl, write_ms);
	}
}

void
sl_io_set_write_low(struct sl_io *io, uint32_t low)
{
	io->wlow = low;
}

evutil_socket_t
sl_io_fd(const struct sl_io *io)
{
	return io->fd;
}

bool
sl_io_idle_open(const struct sl_io *io)
{
	char b;

	return syscall(SYS_recvfrom, io->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT,
	           NULL, NULL) < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK);
}

/*
 * io.h — the byte streams of the request path: a client or origin socket
 * with an input and an output evbuffer and bufferevent-style callbacks.
 *
 * Why not bufferevents: a socket bufferevent arms and disarms its write
 * event around every write (two epoll_ctl and an extra epoll_wait per
 * response) and asks FIONREAD before every read. An sl_io instead
 *   - writes speculatively: output added while handling an event goes out
 *     in one send when the outermost io callback returns, and the write
 *     event is armed only when the kernel says EAGAIN;
 *   - keeps its read interest registered for as long as it wants to read
 *     (no epoll_ctl per request), edge-triggered (epoll does not poll a
 *     socket again after each wake-up; io.c's start_reading says how no
 *     data is left behind); small messages are read into the loop's
 *     scratch and copied into a right-sized chain, a stream whose reads
 *     fill the 16 KiB scratch reads straight into 32 KiB of space reserved
 *     in the input buffer (a 16 KiB body and its head in one recv), up to
 *     64 KiB per wake-up;
 *   - keeps its timeouts as deadlines on the loop's own queues, one per
 *     duration: a restart moves the deadline to the tail of its queue
 *     (no libevent timer work per read), one timer per queue fires;
 *   - allocates its write event only the first time it needs one, so an
 *     idle keep-alive connection costs one event and two buffers.
 * TLS is a mode of the same stream (sl_io_start_tls): recv and send move
 * ciphertext through two buffers that the SSL reads and writes (a BIO of
 * our own, never blocking), SSL_read decrypts into the input after each
 * read, the flush encrypts the output. So a TLS stream makes the system
 * calls of a plain one, and conn.c has one API for both.
 *
 * Semantics follow bufferevents so that conn.c reads the same: the read
 * callback runs after data arrived; the write callback runs after a write
 * that left at most the low-water mark unsent (sl_io_unsent: the output
 * and, over TLS, the records made from it); the event callback
 * gets BEV_EVENT_{READING,WRITING} | BEV_EVENT_{EOF,ERROR,TIMEOUT} or
 * BEV_EVENT_CONNECTED. EOF, errors and timeouts stop reading; an EOF or
 * error that arrives together with data is reported after the read
 * callback and after the output it produced was flushed (so a handler that
 * closes the other side loses nothing). Callbacks may free the sl_io.
 */
#ifndef SL_IO_H
#define SL_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <event2/util.h>

struct evbuffer;
struct ssl_st;
struct sl_io_tls;
struct event_base;
struct sl_io;

typedef void (*sl_io_data_cb)(struct sl_io *io, void *arg);
typedef void (*sl_io_event_cb)(struct sl_io *io, short what, void *arg);

struct sl_io_tq; /* a queue of deadlines of one duration (io.c) */

/* When an io's read or write timeout expires. */
struct sl_io_deadline {
	TAILQ_ENTRY(sl_io_deadline) link;
	struct sl_io_tq *tq; /* the queue it waits on; NULL: not running */
	int64_t at;          /* ms, CLOCK_MONOTONIC */
};

/* One per event base: the ios with output to flush, and timeouts. */
struct sl_io_loop {
	struct event_base *base;
	struct event *flush_ev;
	TAILQ_HEAD(, sl_io) dirty;
	struct event *more_ev; /* next iteration: read on (io.c do_read) */
	TAILQ_HEAD(, sl_io) more;
	struct sl_io_tq *tqs; /* deadline queues, one per duration and kind */
	int64_t now_us;       /* read once per outermost callback (io.c) */
	unsigned depth;       /* io callbacks running (nested) */
	char *rbuf; /* reads of small messages land here first (io.c) */
};

struct sl_io {
	struct evbuffer *in, *out;
	struct sl_io_tls *tls; /* TLS mode: the SSL and its ciphertext */
	struct sl_io_loop *loop;
	struct event rd;  /* read interest */
	struct event *wr; /* allocated on the first EAGAIN or connect */
	struct sl_io_deadline rdl, wdl; /* read and write timeouts */
	TAILQ_ENTRY(sl_io) dirty_link;
	TAILQ_ENTRY(sl_io) more_link;
	sl_io_data_cb read_cb, write_cb;
	sl_io_event_cb event_cb;
	void *arg;
	bool *alive; /* set while a callback runs that may free the io */
	uint32_t rtimeout_ms, wtimeout_ms;
	uint32_t wlow; /* write callback when the output drains to this */
	evutil_socket_t fd;
	uint8_t flags;
};

/* Set up LOOP on BASE. Returns 0 or -1. */
int sl_io_loop_init(struct sl_io_loop *loop, struct event_base *base);
void sl_io_loop_free(struct sl_io_loop *loop);

/*
 * CLOCK_MONOTONIC in microseconds, read once per outermost io callback
 * (when first needed: a read callback's socket was just found ready) and
 * afresh outside callbacks. One clock read serves every timestamp and
 * deadline of a wake-up.
 */
uint64_t sl_io_now_us(struct sl_io_loop *loop);

/*
 * Make IO a plain stream on connected non-blocking socket FD (taking
 * ownership of it; accept4 with SOCK_NONBLOCK, as the listeners do), or on
 * no socket yet (FD -1: call sl_io_connect). Reading is off until
 * sl_io_enable. Returns 0, or -1 (FD is then not closed).
 */
int sl_io_init_socket(
    struct sl_io *io, struct sl_io_loop *loop, evutil_socket_t fd);

/*
 * Make IO (fresh from sl_io_init_socket) a TLS stream over SSL, taking
 * SSL: the server side of an accepted socket (ACCEPT), or the client side
 * once sl_io_connect succeeds. The handshake runs as bytes arrive (a
 * client reads for it even before sl_io_enable_read); output waits for
 * it. Its end is BEV_EVENT_CONNECTED; a failure is BEV_EVENT_ERROR
 * (sl_io_tls_error says why) or EOF. Takes SSL (freed on failure; NULL
 * is a failure). Returns 0 or -1.
 */
int sl_io_start_tls(struct sl_io *io, struct ssl_st *ssl, bool accept);

/* The SSL of a TLS stream, else NULL. */
struct ssl_st *sl_io_ssl(const struct sl_io *io);

/* The newest OpenSSL error code of a TLS failure (0: none); *PLAINTEXT
 * when the peer spoke plain HTTP. */
unsigned long sl_io_tls_error(const struct sl_io *io, bool *plaintext);

/* Did a TLS stream's EOF come without close_notify (a TCP FIN alone)?
 * RFC 9112 section 9.8: a close-delimited body is complete only with one.
 * (A listener's SSL ignores the difference; an origin's reports it.) */
bool sl_io_tls_ragged(const struct sl_io *io);

/* Send close_notify after the records already made, without callbacks,
 * before a graceful close (TLS streams past their handshake; else no-op). */
void sl_io_tls_close_notify(struct sl_io *io);

/* Connect to ADDR (an io made with FD -1). The outcome comes as
 * BEV_EVENT_CONNECTED (TLS: after the handshake), or ERROR or TIMEOUT
 * (write timeout; with reading enabled also the read timeout) from the
 * loop, never from inside this call. Returns 0, or -1 when no socket
 * could be made. */
int sl_io_connect(struct sl_io *io, const struct sockaddr *addr, int len);

/* Send what the output holds now, as far as the socket takes it, without
 * callbacks: before a close. */
void sl_io_try_write(struct sl_io *io);

/* Close the socket and free the buffers; pending output is dropped. The
 * struct itself belongs to the caller. Safe inside IO's callbacks. */
void sl_io_free(struct sl_io *io);

void sl_io_setcb(struct sl_io *io, sl_io_data_cb read_cb,
    sl_io_data_cb write_cb, sl_io_event_cb event_cb, void *arg);

/* Start (or restart the timeout of) reading; stop reading. */
void sl_io_enable_read(struct sl_io *io);
void sl_io_disable_read(struct sl_io *io);

/*
 * For IO's read callback, when what came leaves a message incomplete (a
 * head without its end): once the callback returns, IO reads on until
 * the socket is empty, and reports an EOF or a reset found there. Those
 * make no edge of their own when they come with the data (libevent
 * reports epoll's HUP and ERR without EV_CLOSED), so the stream would
 * otherwise wait for its read timeout. One recv more, EAGAIN when the
 * peer is only slow; messages that arrive whole never pay it. A TLS
 * stream does the same on its own after part of a record (or of a
 * handshake message), which decrypts to nothing the callback could see.
 */
void sl_io_check_end(struct sl_io *io);

/* Read and write timeouts in ms; 0 is none. The read timeout runs while
 * reading is on and restarts with every read; the write timeout runs while
 * output waits for the socket (and during a connect). */
void sl_io_set_timeouts(struct sl_io *io, uint32_t read_ms, uint32_t write_ms);

/* The write callback runs when a write leaves at most LOW bytes unsent. */
void sl_io_set_write_low(struct sl_io *io, uint32_t low);

static inline struct evbuffer *
sl_io_input(const struct sl_io *io)
{
	return io->in;
}

/* The output, to add to: whatever is added by the time the outermost io
 * callback returns goes out then (added outside io callbacks: later in
 * this loop iteration). Output reaches the flush only through this call:
 * never keep the buffer past the callback that took it. */
struct evbuffer *sl_io_output(struct sl_io *io);

/* Bytes in the output (not counting TLS records made from it). */
static inline size_t
sl_io_output_length(const struct sl_io *io)
{
	return evbuffer_get_length(io->out);
}

/* Bytes not yet handed to the kernel: the output and, over TLS, records
 * already encrypted from it. "All sent" (e.g. before closing after a last
 * response) is sl_io_unsent() == 0, not an empty output. */
size_t sl_io_unsent(const struct sl_io *io);
evutil_socket_t sl_io_fd(const struct sl_io *io);

/* Is IO, an idle connection (nothing expected to read), still open? One
 * non-blocking peek: nothing to read is the only answer of a live one;
 * an EOF, a reset or stray bytes are not. */
bool sl_io_idle_open(const struct sl_io *io);

#endif

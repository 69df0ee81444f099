/*
 * loadgen_conn.c — the engine of sl-loadgen: one event_base per thread,
 * keep-alive connections, the schedule and the response parser.
 *
 * Each thread owns the requests whose number is congruent to its id modulo
 * the thread count, and a fixed array of connection slots (its share of
 * --connections). A timer fires when the next request is due; every
 * request that is due joins the thread's queue, which is just
 * the range [next_unsent, next_due) of its request numbers, and goes out on
 * an idle connection, or on a new one while fewer than the thread's share
 * are open. When none can be had, the request waits in the queue and its
 * latency keeps growing from its scheduled time. A finished response hands
 * its connection straight to the oldest queued request.
 *
 * Sockets are plain non-blocking fds with one persistent read event each; a
 * request is written with one send() (a write event only for connects and
 * the rare short write), so the generator costs about one send, one recv
 * and a share of an epoll_wait per request, and leaves the CPU to the
 * server under test.
 *
 * The schedule is a periodic timerfd per thread (absolute start, interval
 * threads / rate): it never needs re-arming, where libevent's precise timers
 * call timerfd_settime() on every loop iteration, which cost a fifth of the
 * generator's CPU on a virtual machine. Missed expiries coalesce: each
 * wake-up sends whatever is due. A thread's request j of its class is due at
 * t0 + offset + j * period exactly, so timer and latency clock agree. Responses
 * are parsed with llhttp only to find their end: Content-Length, chunked or
 * close-delimited. One request at a time per connection, no pipelining.
 *
 * Slots are never freed during a run, so callbacks may close a connection
 * and reuse its slot without any deferred freeing.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <llhttp.h>

#include "bench/loadgen.h"

#define RBUF_SIZE (64 * 1024)
#define SWEEP_MS  50 /* how often timeouts are checked */

enum sock_state { SOCK_FREE, SOCK_CONNECTING, SOCK_OPEN };

/* One connection slot of a thread. */
struct conn {
	struct lg_thread *th;
	enum sock_state state;
	int fd;
	struct event *rev; /* persistent EV_READ */
	struct event *wev; /* EV_WRITE: connect, short writes */
	llhttp_t parser;

	bool busy;        /* a request is assigned */
	bool complete;    /* its whole response has arrived */
	bool keep_alive;  /* the response allows another request */
	uint64_t index;   /* request number */
	uint64_t sent_ns; /* handed to the socket (timeouts run from here) */

	char *wbuf; /* the request head, opts->request.max_len bytes */
	size_t wlen, woff;
	unsigned idle_pos; /* position in th->idle while idle */
};

/* One thread's state; lives on that thread's stack. */
struct lg_thread {
	const struct lg_opts *o;
	unsigned id;
	struct lg_result *res;
	struct event_base *base;
	int tfd;                /* periodic timerfd: the schedule */
	struct event *sched_ev; /* tfd is readable: requests are due */
	struct event *sweep_ev; /* periodic timeout check */
	struct event *end_ev;   /* the grace period is over */

	uint64_t next_due;    /* first request number not yet due */
	uint64_t next_unsent; /* first request number due but not sent */
	uint64_t end;         /* first request number past the schedule */
	uint64_t inflight;
	uint64_t offset; /* request id is due at t0 + offset */
	uint64_t period; /* ns between this thread's requests */

	struct conn *conns;
	unsigned nconns; /* slots */
	unsigned open;   /* slots not SOCK_FREE */
	struct conn **idle;
	unsigned nidle;
	struct conn **free_slots;
	unsigned nfree;

	bool in_dispatch, again;
	bool sched_over; /* every request is due; the timer is stopped */
	char rbuf[RBUF_SIZE];
};

static void dispatch(struct lg_thread *);

uint64_t
lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* When request number i (one of th's) is due. */
static uint64_t
sched_ns(const struct lg_thread *th, uint64_t i)
{
	return th->o->t0_ns + th->offset + i / th->o->threads * th->period;
}

/* True when request i is counted (past the warm-up). */
static bool
measured(const struct lg_thread *th, uint64_t i)
{
	return i >= th->o->warm_n;
}

size_t
lg_request_build(const struct lg_request *req, uint64_t user, char *buf)
{
	size_t i, len = 0;

	for (i = 0; i < req->npieces; i++) {
		if (i > 0)
			len += (size_t)sprintf(
			    buf + len, "%llu", (unsigned long long)user);
		memcpy(buf + len, req->piece[i], req->piece_len[i]);
		len += req->piece_len[i];
	}
	return len;
}

void
lg_result_merge(struct lg_result *dst, const struct lg_result *src)
{
#define X(name) dst->name += src->name;
	LG_COUNTERS(X)
#undef X
	dst->max_open += src->max_open; /* threads' connections are disjoint */
	if (src->last_done_ns > dst->last_done_ns)
		dst->last_done_ns = src->last_done_ns;
	sl_hist_merge(&dst->latency, &src->latency);
	sl_hist_merge(&dst->lag, &src->lag);
}

/* Takes c off the idle stack. */
static void
idle_remove(struct conn *c)
{
	struct lg_thread *th = c->th;
	struct conn *last = th->idle[--th->nidle];

	th->idle[c->idle_pos] = last;
	last->idle_pos = c->idle_pos;
}

/* Puts an open connection without a request on the idle stack. */
static void
idle_push(struct conn *c)
{
	c->idle_pos = c->th->nidle;
	c->th->idle[c->th->nidle++] = c;
}

/* Closes c's socket (if any) and returns the slot to the free list. */
static void
conn_close(struct conn *c)
{
	struct lg_thread *th = c->th;

	if (c->state == SOCK_FREE)
		return;
	if (c->state == SOCK_OPEN && !c->busy)
		idle_remove(c);
	event_free(c->rev);
	event_free(c->wev);
	c->rev = c->wev = NULL;
	close(c->fd);
	c->fd = -1;
	c->state = SOCK_FREE;
	th->open--;
	th->free_slots[th->nfree++] = c;
}

/* Ends c's request as failed (counter points into th->res), closes c. */
static void
request_fail(struct conn *c, uint64_t *counter)
{
	struct lg_thread *th = c->th;

	conn_close(c); /* before busy goes: a busy c is not on the idle stack */
	if (c->busy) {
		if (measured(th, c->index))
			(*counter)++;
		c->busy = false;
		th->inflight--;
	}
	dispatch(th);
}

/* Records c's finished response, then reuses or closes the connection. */
static void
request_done(struct conn *c)
{
	struct lg_thread *th = c->th;
	struct lg_result *r = th->res;
	uint64_t now = lg_now_ns(), due = sched_ns(th, c->index);
	unsigned status = c->parser.status_code;

	if (measured(th, c->index)) {
		sl_hist_record(&r->latency, now > due ? (now - due) / 1000 : 0);
		r->completed++;
		switch (status / 100) {
		case 1:
			r->s1xx++;
			break;
		case 2:
			r->s2xx++;
			break;
		case 3:
			r->s3xx++;
			break;
		case 4:
			r->s4xx++;
			break;
		default:
			r->s5xx++;
			break;
		}
		r->last_done_ns = now;
	}
	c->complete = false;
	th->inflight--;
	if (c->keep_alive && c->state == SOCK_OPEN) {
		c->busy = false;
		idle_push(c);
	} else {
		conn_close(c); /* still busy: not on the idle stack */
		c->busy = false;
	}
	dispatch(th);
}

/* Writes what is left of c's request; false if c failed (and is closed). */
static bool
conn_write(struct conn *c)
{
	ssize_t n;

	while (c->woff < c->wlen) {
		n = send(
		    c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (n > 0) {
			c->woff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->wev, NULL);
			return true;
		}
		request_fail(c, &c->th->res->io_err);
		return false;
	}
	return true;
}

/* llhttp: a whole response is in; stop parsing there. */
static int
on_message_complete(llhttp_t *p)
{
	struct conn *c = p->data;

	c->complete = true;
	c->keep_alive = llhttp_should_keep_alive(p) != 0;
	return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_complete = on_message_complete,
};

/* Readable: feed the response parser, or notice an idle close. */
static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct lg_thread *th = c->th;
	llhttp_errno_t err;
	ssize_t n;

	n = recv(fd, th->rbuf, sizeof(th->rbuf), 0);
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		request_fail(c,
		    c->state == SOCK_CONNECTING ? &th->res->connect_err
		                                : &th->res->io_err);
		return;
	}
	if (!c->busy) {
		/* The server closed an idle connection, or sent garbage. */
		conn_close(c);
		dispatch(th);
		return;
	}
	if (n == 0) {
		err = llhttp_finish(&c->parser);
		if (c->complete) {
			c->keep_alive = false;
			request_done(c);
		} else {
			(void)err;
			request_fail(c, &th->res->io_err);
		}
		return;
	}
	err = llhttp_execute(&c->parser, th->rbuf, (size_t)n);
	if (err == HPE_PAUSED) {
		llhttp_resume(&c->parser);
		/* Bytes past the response (none expected) are dropped. */
		request_done(c);
	} else if (err != HPE_OK) {
		request_fail(c, &th->res->io_err);
	}
}

/* Writable: a connect finished, or a short write can go on. */
static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (c->state == SOCK_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1 ||
		    soerr != 0) {
			request_fail(c, &c->th->res->connect_err);
			return;
		}
		c->state = SOCK_OPEN;
		c->th->res->opened++;
		if (!c->busy) {
			idle_push(c);
			dispatch(c->th);
			return;
		}
	}
	conn_write(c);
}

/* Starts a connection in a free slot; NULL if none or if it failed. */
static struct conn *
conn_open(struct lg_thread *th)
{
	struct conn *c;
	int fd, one = 1;

	if (th->nfree == 0)
		return NULL;
	fd = socket(th->o->addr.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&th->o->addr,
	        th->o->addrlen) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		return NULL;
	}
	c = th->free_slots[--th->nfree];
	c->fd = fd;
	c->state = SOCK_CONNECTING;
	c->busy = c->complete = false;
	c->rev = event_new(th->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wev = event_new(th->base, fd, EV_WRITE, conn_write_cb, c);
	if (c->rev == NULL || c->wev == NULL) {
		if (c->rev != NULL)
			event_free(c->rev);
		if (c->wev != NULL)
			event_free(c->wev);
		close(fd);
		c->state = SOCK_FREE;
		th->free_slots[th->nfree++] = c;
		return NULL;
	}
	event_add(c->rev, NULL);
	event_add(c->wev, NULL);
	llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
	c->parser.data = c;
	th->open++;
	if (th->open > th->res->max_open)
		th->res->max_open = th->open;
	return c;
}

/* Hands request i to c (idle or connecting) and writes it if it can. */
static void
conn_assign(struct conn *c, uint64_t i, uint64_t now)
{
	struct lg_thread *th = c->th;
	uint64_t due = sched_ns(th, i);

	c->busy = true;
	c->complete = false;
	c->index = i;
	c->sent_ns = now;
	c->wlen = lg_request_build(&th->o->request, i % th->o->users, c->wbuf);
	c->woff = 0;
	th->inflight++;
	if (measured(th, i)) {
		th->res->sent++;
		sl_hist_record(
		    &th->res->lag, now > due ? (now - due) / 1000 : 0);
	}
	if (c->state == SOCK_OPEN)
		conn_write(c);
}

/*
 * Moves every request that is due into the queue, sends queued requests on
 * idle or new connections, and arms the timer for the next one. Safe to
 * call from anywhere: a nested call (a send failing inside) just asks the
 * running one to go round again.
 */
static void
dispatch(struct lg_thread *th)
{
	const struct lg_opts *o = th->o;
	struct itimerspec off;
	struct conn *c;
	uint64_t now;

	if (th->in_dispatch) {
		th->again = true;
		return;
	}
	th->in_dispatch = true;
	do {
		th->again = false;
		now = lg_now_ns();
		while (
		    th->next_due < th->end && sched_ns(th, th->next_due) <= now)
			th->next_due += o->threads;
		while (th->next_unsent < th->next_due) {
			if (th->nidle > 0) {
				c = th->idle[th->nidle - 1];
				idle_remove(c);
			} else if (th->open < th->nconns) {
				c = conn_open(th);
				if (c == NULL) {
					if (measured(th, th->next_unsent))
						th->res->connect_err++;
					th->next_unsent += o->threads;
					continue;
				}
			} else {
				break;
			}
			conn_assign(c, th->next_unsent, now);
			th->next_unsent += o->threads;
		}
	} while (th->again);
	th->in_dispatch = false;

	if (th->next_due >= th->end && !th->sched_over) {
		/* The schedule is over: stop the timer. */
		memset(&off, 0, sizeof(off));
		timerfd_settime(th->tfd, 0, &off, NULL);
		event_del(th->sched_ev);
		th->sched_over = true;
	}
	if (th->next_due >= th->end && th->next_unsent == th->end &&
	    th->inflight == 0)
		event_base_loopbreak(th->base);
}

/* The timer expired (once or more): send what is due. */
static void
sched_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg_thread *th = arg;
	uint64_t expirations;

	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		return;
	dispatch(th);
}

/* Every SWEEP_MS: fails requests sent more than --timeout ago. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg_thread *th = arg;
	uint64_t now = lg_now_ns();
	uint64_t limit = (uint64_t)(th->o->timeout * 1e9);
	unsigned i;

	for (i = 0; i < th->nconns; i++) {
		struct conn *c = &th->conns[i];

		if (c->state != SOCK_FREE && c->busy &&
		    now - c->sent_ns > limit)
			request_fail(c, &th->res->timeout);
	}
}

/* The grace period after the schedule is over: stop waiting. */
static void
end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lg_thread *th = arg;

	event_base_loopbreak(th->base);
}

/* Number of thread th's requests in [from, to), counting measured ones. */
static uint64_t
count_measured(const struct lg_thread *th, uint64_t from, uint64_t to)
{
	uint64_t n = 0, i;

	for (i = from; i < to; i += th->o->threads)
		n += measured(th, i);
	return n;
}

int
lg_thread_run(const struct lg_opts *o, unsigned id, struct lg_result *res)
{
	struct lg_thread *th;
	struct event_config *cfg;
	struct itimerspec its;
	struct timeval tv;
	uint64_t now, until;
	unsigned i;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	th = calloc(1, sizeof(*th));
	if (th == NULL)
		return -1;
	th->o = o;
	th->id = id;
	th->res = res;
	th->tfd = -1;
	th->period = (uint64_t)llround(o->threads * 1e9 / o->rate);
	th->offset = (uint64_t)llround(id * 1e9 / o->rate);
	th->next_due = th->next_unsent = id;
	/* The first number >= total in this thread's class. */
	th->end = id;
	if (o->total > id)
		th->end +=
		    (o->total - id + o->threads - 1) / o->threads * o->threads;
	th->nconns = o->conns / o->threads + (id < o->conns % o->threads);

	cfg = event_config_new();
	if (cfg == NULL)
		goto out;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	th->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (th->base == NULL) {
		fprintf(stderr, "sl-loadgen: cannot create an event base\n");
		goto out;
	}
	th->conns = calloc(th->nconns, sizeof(*th->conns));
	th->idle = calloc(th->nconns, sizeof(*th->idle));
	th->free_slots = calloc(th->nconns, sizeof(*th->free_slots));
	if (th->conns == NULL || th->idle == NULL || th->free_slots == NULL)
		goto out;
	for (i = 0; i < th->nconns; i++) {
		struct conn *c = &th->conns[th->nconns - 1 - i];

		c->th = th;
		c->fd = -1;
		c->wbuf = malloc(o->request.max_len);
		if (c->wbuf == NULL)
			goto out;
		th->free_slots[th->nfree++] = c;
	}

	th->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (th->tfd == -1) {
		fprintf(stderr, "sl-loadgen: timerfd_create: %s\n",
		    strerror(errno));
		goto out;
	}
	its.it_value.tv_sec = (time_t)((o->t0_ns + th->offset) / 1000000000u);
	its.it_value.tv_nsec = (long)((o->t0_ns + th->offset) % 1000000000u);
	its.it_interval.tv_sec = (time_t)(th->period / 1000000000u);
	its.it_interval.tv_nsec = (long)(th->period % 1000000000u);
	if (timerfd_settime(th->tfd, TFD_TIMER_ABSTIME, &its, NULL) == -1) {
		fprintf(stderr, "sl-loadgen: timerfd_settime: %s\n",
		    strerror(errno));
		goto out;
	}
	th->sched_ev =
	    event_new(th->base, th->tfd, EV_READ | EV_PERSIST, sched_cb, th);
	th->sweep_ev = event_new(th->base, -1, EV_PERSIST, sweep_cb, th);
	th->end_ev = evtimer_new(th->base, end_cb, th);
	if (th->sched_ev == NULL || th->sweep_ev == NULL || th->end_ev == NULL)
		goto out;
	event_add(th->sched_ev, NULL);
	tv.tv_sec = 0;
	tv.tv_usec = SWEEP_MS * 1000;
	event_add(th->sweep_ev, &tv);
	now = lg_now_ns();
	until =
	    o->t0_ns + (uint64_t)((o->warmup + o->duration + o->grace) * 1e9);
	until = until > now ? until - now : 0;
	tv.tv_sec = (time_t)(until / 1000000000u);
	tv.tv_usec = (suseconds_t)(until % 1000000000u / 1000);
	event_add(th->end_ev, &tv);

	dispatch(th);
	if (th->next_due < th->end || th->inflight > 0)
		event_base_dispatch(th->base);

	/* Whatever was never answered. */
	res->scheduled = count_measured(th, id, th->end);
	res->unfinished = count_measured(th, th->next_unsent, th->end);
	for (i = 0; i < th->nconns; i++) {
		struct conn *c = &th->conns[i];

		if (c->state != SOCK_FREE && c->busy && measured(th, c->index))
			res->unfinished++;
	}
	rc = 0;
out:
	if (th->conns != NULL) {
		for (i = 0; i < th->nconns; i++) {
			conn_close(&th->conns[i]);
			free(th->conns[i].wbuf);
		}
	}
	if (th->sched_ev != NULL)
		event_free(th->sched_ev);
	if (th->sweep_ev != NULL)
		event_free(th->sweep_ev);
	if (th->end_ev != NULL)
		event_free(th->end_ev);
	if (th->tfd != -1)
		close(th->tfd);
	if (th->base != NULL)
		event_base_free(th->base);
	free(th->conns);
	free(th->idle);
	free(th->free_slots);
	free(th);
	return rc;
}

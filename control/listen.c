/*
 * listen.c — the control thread's listeners (admin HTTP, control
 * sockets) when accept fails for want of descriptors or memory.
 *
 * The connection then stays in the kernel's backlog and the listener
 * wakes again at once: a spin, one libevent warning per try. Instead the
 * listener pauses for 100 ms (a closing connection frees a descriptor
 * meanwhile), and the failure is logged at most once in 10 s
 * (sl_log_limited).
 */
#include "config.h"


#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "conf/log.h"
#include "control/ctl.h"

#define PAUSE_MS 100

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_accept_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->listener);
}

static void
error_cb(struct evconnlistener *l, void *arg)
{
	struct sl_accept_guard *g = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval pause = {0, PAUSE_MS * 1000};

	if (!sl_accept_starved(err)) {
		sl_log(SL_LOG_WARN, err, "%s: accept failed", g->what);
		return;
	}
	sl_log_limited(&g->log_limit, err,
	    "%s: accept failed; accepting pauses for %d ms each time", g->what,
	    PAUSE_MS);
	evconnlistener_disable(l);
	event_add(g->resume, &pause);
}

int
sl_accept_guard_init(struct sl_accept_guard *g, struct event_base *base,
    struct evconnlistener *l, const char *what)
{
	g->listener = l;
	g->what = what;
	g->log_limit = (struct sl_log_limit){0};
	g->resume = evtimer_new(base, resume_cb, g);
	if (g->resume == NULL)
		return -1;
	/* The callback gets the listener's argument: G is its first
	 * member (SL_ACCEPT_GUARD_FIRST). */
	evconnlistener_set_error_cb(l, error_cb);
	return 0;
}

void
sl_accept_guard_free(struct sl_accept_guard *g)
{
	if (g->resume != NULL)
		event_free(g->resume);
	g->resume = NULL;
}

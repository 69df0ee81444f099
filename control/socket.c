/*
 * socket.c — the control sockets: Unix stream sockets speaking one command
 * per line and one JSON reply per line (control/PROTOCOL.md).
 *
 * Everything runs on the control thread's event loop, so a slow or silent
 * client costs one idle connection, never a blocked thread: reads and
 * writes are event driven, and a line longer than SL_CTL_LINE_MAX closes
 * the connection. The peer's uid and pid (SO_PEERCRED) go into every
 * event it causes.
 *
 * Client slots are few (SL_CTL_MAX_CLIENTS), so a client that holds one
 * without using it is closed (arm_timer): one that has not sent a whole
 * line within control_line_timeout (of connecting, or of the first byte
 * of a line), or sends nothing for control_idle_timeout once its replies
 * are out. Nothing on this socket waits on the server's side (rollout
 * wait and watch poll), so a client with replies still going out is
 * watched by the write timeout instead, and the one connection that
 * legitimately waits, the takeover handshake's, is never timed out.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

#define SL_CTL_LINE_MAX (64 * 1024)
/* Clients at once; also the listen backlog, so that a burst of that many
 * connects is not refused by the kernel. */
#define SL_CTL_MAX_CLIENTS 256
/* Clients over the limit being told so; more are closed at once. */
#define SL_CTL_MAX_REJECTING 32
#define SL_CTL_REJECT_S      2  /* how long a refused client may linger */
#define SL_CTL_WRITE_S       30 /* replies waiting, nothing read: close */
/* One user (uid) holds at most this many of a socket's clients, so one
 * local user cannot lock the others out; root is not limited. */
#define SL_CTL_MAX_PER_UID 64
/* A client that does not read its replies: no more of its commands are
 * answered while this much is waiting for it, until it is down to
 * SL_CTL_OUT_LOW (and it is dropped when nothing moves for 30 s). */
#define SL_CTL_OUT_HIGH (256 * 1024)
#define SL_CTL_OUT_LOW  (64 * 1024)

struct ctl_client;
TAILQ_HEAD(ctl_client_list, ctl_client);

struct sl_ctl_socket {
	struct sl_accept_guard guard; /* first: see ctl.h */
	struct sl_ctl *ctl;
	struct ctl_client_list clients;
	struct evconnlistener *listener;
	char *path;
	/* --takeover: bound at path + ".new" and renamed over the running
	 * sluice's socket once this one is up (sl_ctl_sockets_commit), so
	 * that a start that fails leaves the running one reachable. */
	char *pending;
	dev_t dev; /* of the socket file we created */
	ino_t ino;
	bool read_only;
	unsigned nclients;   /* served */
	unsigned nrejecting; /* over the limit, being told so */
	/* Warnings about clients (refused, timed out), per enum log_kind:
	 * a client that connects in a loop must not flood the log. */
	struct sl_log_limit log_limit[3];
};

SL_ACCEPT_GUARD_FIRST(struct sl_ctl_socket, guard);

/* What a client's timer waits for. */
enum client_wait {
	WAIT_NONE, /* nothing: replies are going out, or it never idles */
	WAIT_LINE, /* the end of a line (or the first line) */
	WAIT_IDLE, /* the next command */
};

/* The kinds of rate-limited warnings. */
enum log_kind { LOG_FULL, LOG_UID, LOG_TIMEOUT };

struct ctl_client {
	struct sl_ctl_socket *sock;
	struct bufferevent *bev;
	struct sl_who who;
	char default_owner[64];
	bool closing;
	bool rejecting; /* over the limit: the error line, then close */
	bool blocked;   /* replies waiting above SL_CTL_OUT_HIGH */
	bool at_eof;    /* the client closed its side */
	bool spoke;     /* has sent a whole line */
	enum client_wait wait;
	struct event *timer; /* closes it when it holds its slot idle */
	TAILQ_ENTRY(ctl_client) link;
};

static void
client_free(struct ctl_client *cc)
{
	sl_ctl_takeover_gone(cc->sock->ctl, cc);
	if (cc->timer != NULL)
		event_free(cc->timer);
	if (cc->rejecting)
		cc->sock->nrejecting--;
	else
		cc->sock->nclients--;
	TAILQ_REMOVE(&cc->sock->clients, cc, link);
	bufferevent_free(cc->bev);
	free(cc);
}

/* Send one reply line. */
static void
send_reply(struct ctl_client *cc, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(15));
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	if (text != NULL) {
		evbuffer_add(out, text, strlen(text));
		free(text);
	} else {
		evbuffer_add_printf(
		    out, "{\"ok\":false,\"error\":\"out of memory\"}");
	}
	evbuffer_add(out, "\n", 1);
	json_decref(reply);
}

/* Answer every complete line CC has sent; AT_EOF: and the rest, which
 * the client ended by closing its side. */
static void
answer_lines(struct ctl_client *cc, bool at_eof)
{
	struct evbuffer *in = bufferevent_get_input(cc->bev);
	size_t n;
	char *line;
	json_t *reply;

	while (!cc->closing) {
		if (evbuffer_get_length(bufferevent_get_output(cc->bev)) >
		    SL_CTL_OUT_HIGH) {
			cc->blocked = true;
			bufferevent_disable(cc->bev, EV_READ);
			bufferevent_setwatermark(
			    cc->bev, EV_WRITE, SL_CTL_OUT_LOW, 0);
			return;
		}
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		/* At the end of the stream, what is left is the last line. */
		if (line == NULL && at_eof &&
		    (n = evbuffer_get_length(in)) > 0 && n <= SL_CTL_LINE_MAX) {
			line = sl_xmalloc(n + 1);
			evbuffer_remove(in, line, n);
			line[n] = '\0';
		}
		if (line == NULL)
			break;
		/* A whole line: the next one gets a deadline of its own. */
		cc->spoke = true;
		cc->wait = WAIT_NONE;
		evtimer_del(cc->timer); /* rearmed once the reply is out */
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		/* Each line starts as the connection's default owner. */
		memcpy(cc->who.owner, cc->default_owner, sizeof cc->who.owner);
		if (n > SL_CTL_LINE_MAX) {
			reply = json_pack("{s:b,s:s}", "ok", 0, "error",
			    "command line too long");
			cc->closing = true;
		} else if (strcmp(line, "takeover begin") == 0 ||
		    strcmp(line, "takeover health") == 0 ||
		    strcmp(line, "takeover done") == 0) {
			struct sl_ctl *ctl = cc->sock->ctl;

			reply = sl_ctl_takeover_cmd(
			    ctl, cc, &cc->who, cc->sock->read_only, line + 9);
			/* The new sluice may take its time to start: its
			 * connection never idles out. */
			if (ctl->handover_client == cc)
				bufferevent_set_timeouts(cc->bev, NULL, NULL);
		} else {
			reply = sl_ctl_dispatch(cc->sock->ctl, &cc->who,
			    cc->sock->read_only, line, n);
		}
		free(line);
		send_reply(cc, reply);
	}
	if (!cc->closing && evbuffer_get_length(in) > SL_CTL_LINE_MAX) {
		/* A line this long with no end in sight: give up on it. */
		send_reply(cc,
		    json_pack("{s:b,s:s}", "ok", 0, "error",
		        "command line too long; closing"));
		cc->closing = true;
	}
}

/* A duration in ms as seconds for a message: "10" or "0.5". */
static double
secs(uint32_t ms)
{
	return ms / 1000.0;
}

/* CC held its slot without using it (arm_timer): close it. No line is
 * sent first: a client between commands would read it as the reply to
 * its next one. */
static void
client_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_client *cc = arg;
	struct sl_ctl_socket *sock = cc->sock;
	const struct sl_global_conf *g = &sl_route_current()->conf->global;
	char why[120];

	(void)fd;
	(void)what;
	if (cc->wait == WAIT_IDLE)
		snprintf(why, sizeof why,
		    "sent nothing for %g s after its last reply "
		    "(control_idle_timeout)",
		    secs(g->control_idle_timeout_ms));
	else if (evbuffer_get_length(bufferevent_get_input(cc->bev)) > 0)
		snprintf(why, sizeof why,
		    "sent part of a line and not its end within %g s "
		    "(control_line_timeout)",
		    secs(g->control_line_timeout_ms));
	else
		snprintf(why, sizeof why,
		    "sent no command within %g s of connecting "
		    "(control_line_timeout)",
		    secs(g->control_line_timeout_ms));
	sock->ctl->ctl_timeouts++;
	sl_log_limited(&sock->log_limit[LOG_TIMEOUT], 0,
	    "control socket %s: closed a client (uid %ld, pid %ld) that %s",
	    sock->path, cc->who.uid, cc->who.pid, why);
	client_free(cc);
}

/*
 * Set CC's timer for what it waits for now: the end of a line (the first
 * one, or one it has begun) within control_line_timeout, counted from
 * when that wait began, so that a line sent a byte at a time does not
 * hold the slot; or its next command within control_idle_timeout once
 * its replies are out. None while replies are going out (the write
 * timeout watches those), while it closes, or for the takeover
 * handshake's connection, which waits for the new sluice to start.
 * Called after every read and every drained write.
 */
static void
arm_timer(struct ctl_client *cc)
{
	const struct sl_global_conf *g = &sl_route_current()->conf->global;
	enum client_wait want;
	uint32_t ms;
	struct timeval tv;

	if (cc->closing || cc->rejecting || cc->blocked ||
	    cc->sock->ctl->handover_client == cc ||
	    evbuffer_get_length(bufferevent_get_output(cc->bev)) > 0)
		want = WAIT_NONE;
	else if (!cc->spoke ||
	    evbuffer_get_length(bufferevent_get_input(cc->bev)) > 0)
		want = WAIT_LINE;
	else
		want = WAIT_IDLE;
	if (want == WAIT_LINE && cc->wait == WAIT_LINE)
		return; /* more of the same line: its deadline stands */
	cc->wait = want;
	if (want == WAIT_NONE) {
		evtimer_del(cc->timer);
		return;
	}
	ms = want == WAIT_LINE ? g->control_line_timeout_ms
	                       : g->control_idle_timeout_ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(cc->timer, &tv);
}

/* CC reads no more, and goes once its replies are out. */
static void
close_when_sent(struct ctl_client *cc)
{
	struct evbuffer *in = bufferevent_get_input(cc->bev);

	cc->closing = true;
	bufferevent_disable(cc->bev, EV_READ);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (evbuffer_get_length(bufferevent_get_output(cc->bev)) == 0)
		client_free(cc);
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cc = arg;

	if (cc->rejecting) {
		struct evbuffer *in = bufferevent_get_input(bev);

		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	answer_lines(cc, false);
	if (cc->closing)
		close_when_sent(cc); /* may free it */
	else
		arm_timer(cc);
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cc = arg;

	/* The error line is out: EOF tells the client so, and what it
	 * still sends is read and dropped until it closes (or times out),
	 * since closing with unread input would reset the connection and
	 * lose the line. */
	if (cc->rejecting) {
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		return;
	}
	if (cc->blocked) {
		/* Down to SL_CTL_OUT_LOW: answer the commands waiting. */
		cc->blocked = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (!cc->at_eof)
			bufferevent_enable(bev, EV_READ);
		answer_lines(cc, cc->at_eof);
		if (cc->closing || (cc->at_eof && !cc->blocked))
			close_when_sent(cc);
		else
			arm_timer(cc);
		return;
	}
	if (cc->closing)
		client_free(cc);
	else
		arm_timer(cc); /* its replies are out: it may idle now */
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client *cc = arg;

	if (cc->rejecting) { /* its EOF, a timeout or an error */
		client_free(cc);
		return;
	}
	/* The client is done sending (echo CMD | socat ...): its last line
	 * counts even without a newline, and every reply goes out before
	 * the connection closes. An error or a timeout closes at once. */
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    !cc->closing) {
		cc->at_eof = true;
		answer_lines(cc, true);
		if (!cc->blocked)
			close_when_sent(cc);
		return;
	}
	client_free(cc);
}

static const char too_many[] =
    "{\"ok\":false,\"error\":\"too many control clients\"}\n";
static const char too_many_uid[] =
    "{\"ok\":false,\"error\":\"too many control clients of this "
    "user\"}\n";

/* Clients of SOCK served for UID. */
static unsigned
uid_clients(const struct sl_ctl_socket *sock, long uid)
{
	const struct ctl_client *c;
	unsigned n = 0;

	TAILQ_FOREACH(c, &sock->clients, link)
	n += !c->rejecting && c->who.uid == uid;
	return n;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct sl_ctl_socket *sock = arg;
	struct ctl_client *cc;
	struct ucred cred;
	socklen_t len = sizeof cred;
	struct timeval wr = {SL_CTL_WRITE_S, 0};
	long uid = -1, pid = -1;
	bool full, over_uid;
	const char *refusal;
	size_t refusal_len;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		uid = (long)cred.uid;
		pid = (long)cred.pid;
	}
	full = sock->nclients >= SL_CTL_MAX_CLIENTS;
	over_uid =
	    !full && uid != 0 && uid_clients(sock, uid) >= SL_CTL_MAX_PER_UID;
	refusal = full ? too_many : too_many_uid;
	refusal_len = full ? sizeof too_many - 1 : sizeof too_many_uid - 1;
	/* Refused clients linger to read their error line, but only so
	 * many: past that, the line and close at once. */
	if ((full || over_uid) && sock->nrejecting >= SL_CTL_MAX_REJECTING) {
		sock->ctl->ctl_refused++;
		(void)!write(fd, refusal, refusal_len);
		evutil_closesocket(fd);
		return;
	}
	cc = calloc(1, sizeof *cc);
	if (cc == NULL) {
		evutil_closesocket(fd);
		return;
	}
	cc->sock = sock;
	cc->who.uid = uid;
	cc->who.pid = pid;
	snprintf(cc->default_owner, sizeof cc->default_owner, "uid:%ld",
	    cc->who.uid);
	cc->bev =
	    bufferevent_socket_new(sock->ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (cc->bev == NULL) {
		evutil_closesocket(fd);
		free(cc);
		return;
	}
	cc->timer = evtimer_new(sock->ctl->base, client_timeout_cb, cc);
	if (cc->timer == NULL) {
		bufferevent_free(cc->bev);
		free(cc);
		return;
	}
	TAILQ_INSERT_TAIL(&sock->clients, cc, link);
	bufferevent_setcb(
	    cc->bev, client_read_cb, client_write_cb, client_event_cb, cc);
	if (full || over_uid) {
		struct timeval brief = {SL_CTL_REJECT_S, 0};

		cc->rejecting = true;
		sock->nrejecting++;
		sock->ctl->ctl_refused++;
		if (full)
			sl_log_limited(&sock->log_limit[LOG_FULL], 0,
			    "control socket %s: %u clients, the most "
			    "served: refusing one (uid %ld, pid %ld)",
			    sock->path, sock->nclients, uid, pid);
		else
			sl_log_limited(&sock->log_limit[LOG_UID], 0,
			    "control socket %s: uid %ld has %u "
			    "clients, the most one user may have: "
			    "refusing one (pid %ld)",
			    sock->path, uid, SL_CTL_MAX_PER_UID, pid);
		bufferevent_write(cc->bev, refusal, refusal_len);
		bufferevent_set_timeouts(cc->bev, &brief, &brief);
		bufferevent_enable(cc->bev, EV_READ);
		return;
	}
	sock->nclients++;
	bufferevent_set_timeouts(cc->bev, NULL, &wr);
	bufferevent_enable(cc->bev, EV_READ);
	arm_timer(cc); /* its first line, within control_line_timeout */
}

void
sl_ctl_make_dirs(const char *path)
{
	char *dir = sl_xstrdup(path), *p;

	for (p = strchr(dir + 1, '/'); p != NULL; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			sl_log(SL_LOG_WARN, errno, "cannot create %s", dir);
			break;
		}
		*p = '/';
	}
	free(dir);
}

/* Is the socket file ST one CTL bound already (PATH spelt another way)?
 * Then *ERRP says so and true is returned. */
static bool
bound_here(const struct sl_ctl *ctl, const struct stat *st, const char *path,
    char **errp)
{
	for (size_t i = 0; i < ctl->nsocks; i++) {
		if (ctl->socks[i]->ino == st->st_ino &&
		    ctl->socks[i]->dev == st->st_dev) {
			*errp = sl_xasprintf("control socket %s: is the "
			                     "socket %s already (each control "
			                     "socket needs a path of its own)",
			    path, ctl->socks[i]->path);
			return true;
		}
	}
	return false;
}

/*
 * Remove a stale socket file; refuse one another process listens on,
 * unless TAKEOVER (a zero-downtime upgrade): then *LIVE says so, and the
 * path is left to the running sluice until this one is up. Anything at
 * PATH that is not a socket (a mistyped path naming the config file, say)
 * is refused and left alone, and so is the socket CTL opened a moment ago.
 */
static int
clear_stale(struct sl_ctl *ctl, const char *path, bool *live, char **errp)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	*live = false;
	if (lstat(path, &st) != 0)
		return 0; /* nothing there (or bind says why not) */
	if (!S_ISSOCK(st.st_mode)) {
		*errp = sl_xasprintf("control socket %s: exists and is not a "
		                     "socket; not removing it (set "
		                     "control_socket to another path)",
		    path);
		return -1;
	}
	if (bound_here(ctl, &st, path, errp))
		return -1;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
	close(fd);
	if (rc == 0 && !ctl->takeover) {
		*errp = sl_xasprintf("control socket %s is in use by another "
		                     "process (to replace a running sluice, "
		                     "start with --takeover)",
		    path);
		return -1;
	}
	if (rc == 0) {
		*live = true;
		return 0;
	}
	unlink(path);
	return 0;
}

/* Create, bind and listen on one control socket. */
static int
open_socket(struct sl_ctl *ctl, const char *path, bool read_only,
    const struct sl_global_conf *g, char **errp)
{
	struct sl_ctl_socket *sock;
	struct sockaddr_un sun;
	char *pending = NULL;
	const char *at = path; /* where it is bound */
	struct stat st;
	bool live;
	mode_t old;
	int fd;

	if (clear_stale(ctl, path, &live, errp) != 0)
		return -1;
	if (live) {
		pending = sl_xasprintf("%s.new", path);
		if (strlen(pending) >= sizeof sun.sun_path) {
			/* No room for the suffix: the path goes now. */
			free(pending);
			pending = NULL;
			unlink(path);
		} else {
			/* One a failed takeover left behind goes; one this
			 * sluice bound a moment ago (the same path spelt
			 * another way) is an error. */
			if (lstat(pending, &st) == 0 && S_ISSOCK(st.st_mode)) {
				if (bound_here(ctl, &st, path, errp)) {
					free(pending);
					return -1;
				}
				unlink(pending);
			}
			at = pending;
		}
	}
	sl_ctl_make_dirs(path);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", at);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*errp = sl_xasprintf(
		    "control socket %s: %s", path, strerror(errno));
		free(pending);
		return -1;
	}
	/* No window where the socket exists with a looser mode. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		int e = errno;

		umask(old);
		close(fd);
		free(pending);
		*errp = sl_xasprintf("control socket %s: cannot bind: %s%s",
		    path, strerror(e),
		    e == ENOENT ? " (does its directory exist?)" : "");
		return -1;
	}
	umask(old);
	if (g->control_group != NULL) {
		struct group *gr = getgrnam(g->control_group);

		if (gr == NULL || chown(at, (uid_t)-1, gr->gr_gid) != 0) {
			*errp = sl_xasprintf("control socket %s: cannot give "
			                     "it to group '%s'",
			    path, g->control_group);
			close(fd);
			unlink(at);
			free(pending);
			return -1;
		}
	}
	if (chmod(at,
	        read_only ? (g->control_mode | 0066) & 0666
	                  : g->control_mode) != 0 ||
	    listen(fd, SL_CTL_MAX_CLIENTS) != 0) {
		*errp = sl_xasprintf(
		    "control socket %s: %s", path, strerror(errno));
		close(fd);
		unlink(at);
		free(pending);
		return -1;
	}
	sock = sl_xcalloc(1, sizeof *sock);
	if (stat(at, &st) == 0) {
		sock->dev = st.st_dev;
		sock->ino = st.st_ino;
	}
	sock->pending = pending;
	sock->ctl = ctl;
	TAILQ_INIT(&sock->clients);
	sock->path = sl_xstrdup(path);
	sock->read_only = read_only;
	sock->listener = evconnlistener_new(
	    ctl->base, accept_cb, sock, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (sock->listener != NULL &&
	    sl_accept_guard_init(&sock->guard, ctl->base, sock->listener,
	        read_only ? "control socket (read-only)" : "control socket") !=
	        0) {
		evconnlistener_free(sock->listener); /* closes FD */
		fd = -1;
		sock->listener = NULL;
	}
	if (sock->listener == NULL) {
		*errp = sl_xasprintf("control socket %s: cannot listen", path);
		if (fd >= 0)
			close(fd);
		unlink(at);
		free(sock->pending);
		free(sock->path);
		free(sock);
		return -1;
	}
	ctl->socks[ctl->nsocks++] = sock;
	return 0;
}

/* Release OWNER's lock on SVC if its time (*EXPIRES) is up, with an
 * event; HOW says which lock it was. True when it was released. */
static bool
expire_lock(struct sl_ctl *ctl, const char *svc, char *owner, int64_t *expires,
    int64_t now, const char *how)
{
	char cmd[256];

	if (owner[0] == '\0' || *expires > now)
		return false;
	snprintf(cmd, sizeof cmd, "lock expired: %s (held by %s%s)", svc, owner,
	    how);
	sl_event(
	    ctl, NULL, cmd, json_pack("{s:s}", "owner", owner), json_null());
	owner[0] = '\0';
	*expires = 0;
	return true;
}

/* Release locks whose time is up, with an event for each. */
static void
lock_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_ctl *ctl = arg;
	int64_t now = (int64_t)time(NULL);
	bool changed = false;
	char *err = NULL;
	size_t i;

	if (ctl->passive) /* the sluice taking over expires them */
		return;
	for (i = 0; i < ctl->nrt; i++) {
		struct sl_svc_rt *rt = ctl->rt[i];

		/* The starter's lock a rollout set aside ends on time too. */
		changed |= expire_lock(ctl, rt->name, rt->held_owner,
		    &rt->held_expires, now, ", set aside by the rollout");
		/* A live rollout's own lock is renewed: it still runs. */
		if (rt->lock_owner[0] != '\0' && rt->lock_expires <= now &&
		    sl_ctl_rollout_hold(rt))
			changed = true;
		changed |= expire_lock(
		    ctl, rt->name, rt->lock_owner, &rt->lock_expires, now, "");
	}
	if (changed && sl_state_save(ctl, sl_route_current(), &err) != 0) {
		sl_log_error("%s", err);
		free(err);
	}
}

/* Open the configured control sockets. */
int
sl_ctl_sockets_start(
    struct sl_ctl *ctl, const struct sl_config *conf, char **errp)
{
	struct timeval one = {1, 0};

	if (open_socket(ctl, conf->global.control_socket, false, &conf->global,
	        errp) != 0)
		return -1;
	if (conf->global.control_socket_ro != NULL &&
	    open_socket(ctl, conf->global.control_socket_ro, true,
	        &conf->global, errp) != 0)
		return -1;
	ctl->lock_ev = event_new(ctl->base, -1, EV_PERSIST, lock_tick_cb, ctl);
	if (ctl->lock_ev == NULL || event_add(ctl->lock_ev, &one) != 0) {
		*errp = sl_xstrdup("cannot start the lock timer");
		return -1;
	}
	return 0;
}

/* --takeover, once this sluice is up: its control sockets take their
 * paths over from the running one's (an atomic rename; clients connected
 * to the old one stay connected to it). */
void
sl_ctl_sockets_commit(struct sl_ctl *ctl)
{
	size_t i;

	for (i = 0; i < ctl->nsocks; i++) {
		struct sl_ctl_socket *sock = ctl->socks[i];

		if (sock->pending == NULL)
			continue;
		if (rename(sock->pending, sock->path) != 0)
			sl_log(SL_LOG_ERROR, errno,
			    "control socket %s: cannot take the path over "
			    "from the running sluice; it answers on %s",
			    sock->path, sock->pending);
		else {
			free(sock->pending);
			sock->pending = NULL;
		}
	}
}

/* Close the control sockets and remove their files. */
void
sl_ctl_sockets_stop(struct sl_ctl *ctl)
{
	size_t i;

	ctl->handover_client = NULL; /* stopping: nothing to decide again */
	for (i = 0; i < ctl->nsocks; i++) {
		struct ctl_client *cc;
		struct stat st;
		const char *path;

		while ((cc = TAILQ_FIRST(&ctl->socks[i]->clients)) != NULL)
			client_free(cc);
		evconnlistener_free(ctl->socks[i]->listener);
		sl_accept_guard_free(&ctl->socks[i]->guard);
		/* After a takeover the path belongs to the new sluice. */
		path = ctl->socks[i]->pending != NULL ? ctl->socks[i]->pending
		                                      : ctl->socks[i]->path;
		if (stat(path, &st) == 0 && st.st_ino == ctl->socks[i]->ino &&
		    st.st_dev == ctl->socks[i]->dev)
			unlink(path);
		free(ctl->socks[i]->pending);
		free(ctl->socks[i]->path);
		free(ctl->socks[i]);
	}
	ctl->nsocks = 0;
	if (ctl->lock_ev != NULL)
		event_free(ctl->lock_ev);
	ctl->lock_ev = NULL;
}

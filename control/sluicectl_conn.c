/*
 * sluicectl_conn.c — sluicectl's one connection to the control socket.
 *
 * The protocol is a line out and a line in (control/PROTOCOL.md). The
 * socket is non-blocking and every wait goes through ppoll() with a
 * deadline, so a daemon that hangs costs at most --timeout, a reply of any
 * length is read whole, partial writes are resumed, and a signal is either
 * retried (EINTR) or, once sl_cli_stop is set, ends the wait.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf/xmalloc.h"
#include "control/sluicectl.h"

struct sl_cli_conn {
	int fd;
	dev_t dev; /* the socket file connected to (ino 0: unknown) */
	ino_t ino;
	char *buf;  /* bytes read and not yet returned */
	size_t len; /* bytes in buf */
	size_t cap; /* size of buf */
};

volatile sig_atomic_t sl_cli_stop;
volatile sig_atomic_t sl_cli_winch;

static const sigset_t *waitmask;
static void (*warn_hook)(void);

/* Print a message to stderr after whatever stdout holds. */
void
sl_cli_warn(const char *fmt, ...)
{
	va_list ap;

	if (warn_hook != NULL)
		warn_hook();
	fflush(stdout);
	fputs("sluicectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Set the function called before each message. */
void
sl_cli_set_warn_hook(void (*fn)(void))
{
	warn_hook = fn;
}

/* Set the signal mask used while waiting (NULL: the current one). */
void
sl_cli_set_waitmask(const sigset_t *sigmask)
{
	waitmask = sigmask;
}

/* Seconds on the monotonic clock. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The deadline for a wait of TIMEOUT seconds (0: none, as INFINITY). */
static double
deadline_in(double timeout)
{
	return timeout > 0 ? now() + timeout : INFINITY;
}

/*
 * Wait until FD has EVENTS (POLLIN or POLLOUT) or the peer hung up.
 * Returns 0, or -1 with errno ETIMEDOUT at DEADLINE or EINTR once
 * sl_cli_stop is set. Other signals just resume the wait.
 */
static int
wait_fd(int fd, short events, double deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	struct timespec ts, *tsp;
	double left;

	for (;;) {
		if (sl_cli_stop) {
			errno = EINTR;
			return -1;
		}
		tsp = NULL;
		if (deadline != INFINITY) {
			left = deadline - now();
			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			ts.tv_sec = (time_t)left;
			ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
			tsp = &ts;
		}
		switch (ppoll(&pfd, 1, tsp, waitmask)) {
		case -1:
			if (errno != EINTR && errno != EAGAIN)
				return -1;
			break;
		case 0:
			break;
		default:
			return 0;
		}
	}
}

/* Connect to PATH; see sluicectl.h. */
struct sl_cli_conn *
sl_cli_conn_open(const char *path, double timeout, char **errp)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct sl_cli_conn *conn;
	double deadline = deadline_in(timeout);
	struct timespec pause = {0, 10 * 1000 * 1000};
	struct stat st;
	int fd, err;
	socklen_t errlen = sizeof err;

	if (strlen(path) >= sizeof sun.sun_path) {
		*errp = sl_xstrdup("socket path too long");
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/*
	 * Which file the path names, taken before connecting: if another
	 * sluice takes the path over in between, sl_cli_conn_replaced() says
	 * so once too often, never once too few.
	 */
	if (stat(path, &st) != 0)
		st.st_ino = 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*errp = sl_xstrdup(strerror(errno));
		return NULL;
	}
	/*
	 * A Unix socket connects at once or fails; EAGAIN means the daemon's
	 * backlog is full, which is worth retrying until the deadline.
	 */
	while (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		if (errno == EISCONN)
			break;
		if (errno == EINPROGRESS || errno == EALREADY) {
			if (wait_fd(fd, POLLOUT, deadline) == -1)
				goto fail;
			if (getsockopt(
			        fd, SOL_SOCKET, SO_ERROR, &err, &errlen) == -1)
				goto fail;
			if (err != 0) {
				errno = err;
				goto fail;
			}
			break;
		}
		if (errno == EAGAIN) {
			if (now() >= deadline) {
				errno = ETIMEDOUT;
				goto fail;
			}
			nanosleep(&pause, NULL);
			continue;
		}
		if (errno != EINTR)
			goto fail;
	}
	conn = sl_xcalloc(1, sizeof *conn);
	conn->fd = fd;
	conn->dev = st.st_dev;
	conn->ino = st.st_ino;
	return conn;

fail:
	err = errno;
	close(fd);
	*errp = sl_xstrdup(strerror(err));
	errno = err;
	return NULL;
}

/* Does PATH now name another socket file than the one CONN reached? */
bool
sl_cli_conn_replaced(const struct sl_cli_conn *conn, const char *path)
{
	struct stat st;

	if (conn->ino == 0 || stat(path, &st) != 0)
		return false;
	return st.st_ino != conn->ino || st.st_dev != conn->dev;
}

/* Close CONN and free it. */
void
sl_cli_conn_free(struct sl_cli_conn *conn)
{
	if (conn == NULL)
		return;
	close(conn->fd);
	free(conn->buf);
	free(conn);
}

/* Write all N bytes of P before DEADLINE. Returns 0 or -1 (errno set). */
static int
write_all(struct sl_cli_conn *conn, const char *p, size_t n, double deadline)
{
	ssize_t w;

	while (n > 0) {
		w = send(conn->fd, p, n, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (wait_fd(conn->fd, POLLOUT, deadline) == -1)
				return -1;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Read until the buffer holds a newline, before DEADLINE. Returns the
 * offset of the first newline in conn->buf, or -1 with errno set;
 * ECONNRESET stands for a connection closed before a whole line.
 */
static ssize_t
read_line(struct sl_cli_conn *conn, double deadline)
{
	char *nl;
	ssize_t r;

	for (;;) {
		nl = conn->len ? memchr(conn->buf, '\n', conn->len) : NULL;
		if (nl != NULL)
			return nl - conn->buf;
		if (conn->cap - conn->len < 4096) {
			conn->cap = conn->cap ? conn->cap * 2 : 8192;
			conn->buf = sl_xrealloc(conn->buf, conn->cap);
		}
		r = recv(
		    conn->fd, conn->buf + conn->len, conn->cap - conn->len, 0);
		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (wait_fd(conn->fd, POLLIN, deadline) == -1)
				return -1;
			continue;
		}
		conn->len += (size_t)r;
	}
}

/* Send one line and read one line back; see sluicectl.h. */
int
sl_cli_conn_exchange(struct sl_cli_conn *conn, const char *line, double timeout,
    char **replyp, char **errp)
{
	double deadline = deadline_in(timeout);
	size_t n = strlen(line);
	char *out;
	ssize_t len;
	int rc, err;

	out = sl_xmalloc(n + 1);
	memcpy(out, line, n);
	out[n] = '\n';
	rc = write_all(conn, out, n + 1, deadline);
	err = errno;
	free(out);
	/*
	 * A daemon over its client limit answers before it reads and may
	 * close at once: the command then cannot be sent, but the refusal
	 * is there to read, and says more than "connection closed".
	 */
	if (rc == -1 && (err == EPIPE || err == ECONNRESET) &&
	    read_line(conn, deadline) >= 0)
		rc = 0;
	if (rc == -1 || (len = read_line(conn, deadline)) == -1) {
		if (rc != -1)
			err = errno;
		if (err == ETIMEDOUT)
			*errp = timeout == (int)timeout
			    ? sl_xasprintf("no reply within %d s", (int)timeout)
			    : sl_xasprintf("no reply within %g s", timeout);
		else if (err == ECONNRESET || err == EPIPE)
			*errp = sl_xstrdup(conn->len
			        ? "connection closed in the middle of a reply"
			        : "connection closed without a reply");
		else if (err == EINTR)
			*errp = sl_xstrdup("interrupted");
		else
			*errp = sl_xstrdup(strerror(err));
		errno = err;
		return -1;
	}
	*replyp = sl_xstrndup(conn->buf,
	    len > 0 && conn->buf[len - 1] == '\r' ? (size_t)len - 1
	                                          : (size_t)len);
	conn->len -= (size_t)len + 1;
	memmove(conn->buf, conn->buf + len + 1, conn->len);
	return 0;
}

/* True if the reply says "ok":true. */
bool
sl_cli_reply_ok(const json_t *reply)
{
	return json_is_true(json_object_get(reply, "ok"));
}

/* The reason of a refusal, for "sluicectl: REASON". */
const char *
sl_cli_reply_error(const json_t *reply)
{
	const char *e = json_string_value(json_object_get(reply, "error"));

	return e != NULL && *e != '\0' ? e : "the daemon refused the command";
}

/* Up to 80 bytes of a bad reply, for an error message. Heap. */
static char *
excerpt(const char *raw)
{
	size_t n = strlen(raw);

	if (n <= 80)
		return sl_xstrdup(raw);
	return sl_xasprintf("%.77s...", raw);
}

/* Send one command (connecting on first use) and parse the reply. */
int
sl_cli_try(struct sl_cli *cli, const char *command, json_t **replyp,
    char **rawp, char **errp, enum sl_cli_fail *failp)
{
	char *line, *raw = NULL, *err = NULL, *ex;
	json_error_t jerr;
	json_t *reply;
	bool lost, fresh = cli->conn == NULL;
	const char *e;
	int rc;

	if (cli->conn == NULL) {
		cli->conn = sl_cli_conn_open(cli->socket, cli->timeout, &err);
		if (cli->conn == NULL) {
			*errp = sl_xasprintf("cannot connect to %s: %s (is "
			                     "sluice running? set -s or "
			                     "SLUICE_SOCKET)",
			    cli->socket, err);
			*failp = SL_CLI_FAIL_CONNECT;
			free(err);
			return -1;
		}
	}
	if (cli->owner != NULL)
		line = sl_xasprintf("as %s %s", cli->owner, command);
	else
		line = sl_xstrdup(command);
	rc = sl_cli_conn_exchange(cli->conn, line, cli->timeout, &raw, &err);
	lost = rc == -1 && (errno == ECONNRESET || errno == EPIPE);
	free(line);
	if (rc == -1) {
		*failp = lost ? SL_CLI_FAIL_LOST : SL_CLI_FAIL_OTHER;
		*errp = sl_xasprintf("%s: %s", cli->socket, err);
		free(err);
		/* What the connection still holds is not a whole reply. */
		sl_cli_conn_free(cli->conn);
		cli->conn = NULL;
		return -1;
	}
	reply = json_loads(raw, JSON_REJECT_DUPLICATES, &jerr);
	if (reply == NULL || !json_is_object(reply) ||
	    !json_is_boolean(json_object_get(reply, "ok"))) {
		ex = excerpt(raw);
		if (reply == NULL)
			*errp = sl_xasprintf("bad reply from %s: not JSON "
			                     "(%s): %s",
			    cli->socket, jerr.text, ex);
		else
			*errp = sl_xasprintf("bad reply from %s: not an "
			                     "object with \"ok\": %s",
			    cli->socket, ex);
		*failp = SL_CLI_FAIL_OTHER;
		free(ex);
		json_decref(reply);
		free(raw);
		return -1;
	}
	/*
	 * The daemon refuses a client over its limits with this line as soon
	 * as it connects, before it reads a command, and closes: the
	 * command did not run, and the daemon could not be talked to. (Only
	 * a new connection's first reply can be that refusal.)
	 */
	e = json_string_value(json_object_get(reply, "error"));
	if (fresh && !sl_cli_reply_ok(reply) && e != NULL &&
	    strncmp(e, "too many control clients", 24) == 0) {
		*errp = sl_xasprintf("%s: %s (every client slot of the "
		                     "socket is taken; try again later)",
		    cli->socket, e);
		*failp = SL_CLI_FAIL_BUSY;
		json_decref(reply);
		free(raw);
		sl_cli_conn_free(cli->conn);
		cli->conn = NULL;
		return -1;
	}
	*replyp = reply;
	if (rawp != NULL)
		*rawp = raw;
	else
		free(raw);
	return 0;
}

/* sl_cli_try(), printing the reason of a failure. */
int
sl_cli_call(
    struct sl_cli *cli, const char *command, json_t **replyp, char **rawp)
{
	enum sl_cli_fail fail;
	char *err;

	if (sl_cli_try(cli, command, replyp, rawp, &err, &fail) == 0)
		return 0;
	/* An exchange cut short by a stop signal is not a failure to report. */
	if (fail == SL_CLI_FAIL_CONNECT || !sl_cli_stop)
		sl_cli_warn("%s", err);
	free(err);
	return -1;
}

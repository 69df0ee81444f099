/*
 * takeover.c — the handshake of a zero-downtime upgrade (--takeover), both
 * sides of it.
 *
 * Between the start of a new sluice and the end of the old one, both
 * accept connections (SO_REUSEPORT). Only one may decide: two analyzers
 * judging one rollout, or two processes writing one state file, undo each
 * other (an operator's abort sent to the new one, promoted by the old
 * one's analyzer, and restored as promoted by the next start). So the new
 * process, before it reads the state file, connects to the old one's
 * control socket and sends "takeover begin": from then on the old one is
 * passive (no analyzer verdicts, no guard, no lock expiry, no state file,
 * no mutating command) and serves with the routing it has. Once the new
 * one is up it sends "takeover done" and closes. If that connection goes
 * before "done", the new one failed to start, and the old one decides
 * again, as if nothing had happened.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

#define TAKEOVER_WAIT_S    10 /* for the old sluice's answer */
#define TAKEOVER_REPLY_MAX (16u << 20)

/* ---- the running (old) sluice's side ---- */

json_t *
sl_ctl_takeover_cmd(struct sl_ctl *ctl, void *client, const struct sl_who *who,
    bool read_only, const char *verb)
{
	char msg[200];

	if (read_only)
		return sl_ctl_error_reply("'takeover' changes state: use the "
		                          "read-write control socket");
	/* The new sluice runs as the old one's user (or root). */
	if (who->uid != 0 && who->uid != (long)getuid())
		return sl_ctl_error_reply(
		    "takeover: only root or sluice's own user may take over");
	if (strcmp(verb, "begin") == 0) {
		char *err = NULL;

		if (ctl->passive) {
			snprintf(msg, sizeof msg,
			    "takeover: pid %ld is already taking over",
			    ctl->handover_pid);
			return sl_ctl_error_reply(msg);
		}
		/* What runs but could not be saved (a revert while the disk
		 * was full) must be in the file the new sluice reads. */
		if (ctl->state_unsaved &&
		    sl_state_save(ctl, sl_route_current(), &err) != 0) {
			snprintf(msg, sizeof msg,
			    "takeover: what this sluice routes is not in its "
			    "state file yet (%s); the new one would start "
			    "from an older one",
			    err);
			free(err);
			return sl_ctl_error_reply(msg);
		}
		ctl->passive = true;
		ctl->handover_client = client;
		ctl->handover_pid = who->pid;
		snprintf(msg, sizeof msg,
		    "takeover begin: pid %ld is taking over; this sluice "
		    "makes no more decisions and writes no state",
		    who->pid);
		sl_event(ctl, who, msg, NULL, NULL);
		return json_pack(
		    "{s:b,s:I}", "ok", 1, "pid", (json_int_t)getpid());
	}
	/* Asked apart from "begin", whose reply a sluice from before this
	 * one reads into 1 KiB: it can still take over (a downgrade). */
	if (strcmp(verb, "health") == 0) {
		if (client == NULL || client != ctl->handover_client)
			return sl_ctl_error_reply("takeover health: no "
			                          "takeover begun on this "
			                          "connection");
		return json_pack(
		    "{s:b,s:o}", "ok", 1, "health", sl_health_export(ctl));
	}
	if (client == NULL || client != ctl->handover_client)
		return sl_ctl_error_reply(
		    "takeover done: no takeover begun on this connection");
	ctl->handover_client = NULL; /* done: its going changes nothing */
	/* Two processes answering the admin port by turns would show
	 * scrapers two sets of counters, each drop read as a reset. */
	sl_admin_close(ctl);
	snprintf(msg, sizeof msg,
	    "takeover done: pid %ld has taken over; stop this sluice "
	    "(SIGTERM)",
	    ctl->handover_pid);
	sl_event(ctl, who, msg, NULL, NULL);
	return json_pack("{s:b,s:I}", "ok", 1, "pid", (json_int_t)getpid());
}

void
sl_ctl_takeover_gone(struct sl_ctl *ctl, void *client)
{
	char msg[160];

	if (client == NULL || client != ctl->handover_client)
		return;
	ctl->handover_client = NULL;
	ctl->passive = false;
	snprintf(msg, sizeof msg,
	    "takeover abandoned: pid %ld went before it was up; this sluice "
	    "decides again",
	    ctl->handover_pid);
	sl_event(ctl, NULL, msg, NULL, NULL);
}

/* ---- the new sluice's side ---- */

/* Send LINE on FD and read one reply line into a JSON object. GONE (may
 * be NULL) tells a connection the other side closed or reset, with no
 * answer, from other failures. */
static json_t *
exchange(int fd, const char *line, char **errp, bool *gone)
{
	/* A reply carries every checked server's health: no fixed size. */
	size_t cap = 4096, len = 0;
	char *buf = sl_xmalloc(cap);
	ssize_t n;
	json_t *r;

	if (gone != NULL)
		*gone = false;
	/* A signal (a SIGHUP, caught from the start) interrupts a socket
	 * call that has a timeout even with SA_RESTART: it is tried again. */
	do
		n = send(fd, line, strlen(line), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)strlen(line)) {
		if (gone != NULL)
			*gone = errno == EPIPE || errno == ECONNRESET;
		*errp = sl_xasprintf("cannot send: %s", strerror(errno));
		free(buf);
		return NULL;
	}
	for (;;) {
		if (len == cap - 1) {
			if (cap >= TAKEOVER_REPLY_MAX)
				break;
			cap *= 2;
			buf = sl_xrealloc(buf, cap);
		}
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (gone != NULL)
				*gone = n == 0 || errno == ECONNRESET;
			*errp = sl_xasprintf("no answer: %s",
			    n == 0 ? "connection closed" : strerror(errno));
			free(buf);
			return NULL;
		}
		if (memchr(buf + len, '\n', (size_t)n) != NULL) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	r = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	free(buf);
	if (!json_is_object(r)) {
		json_decref(r);
		*errp = sl_xstrdup("not a control socket reply");
		return NULL;
	}
	return r;
}

/* A connection to control socket PATH, or -1 (errno). */
static int
dial(const char *path)
{
	struct sockaddr_un sun;
	struct timeval wait = {TAKEOVER_WAIT_S, 0};
	int fd, e;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		/* EINTR: the connect goes on in the background; this
		 * one is given up and the caller dials again. */
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
sl_takeover_begin(const char *path, long *pid, json_t **health, char **errp)
{
	struct sockaddr_un sun;
	struct timespec pause = {0, 200 * 1000 * 1000};
	struct timespec blink = {0, 20 * 1000 * 1000};
	const char *e;
	json_t *r;
	int fd, tries = 0;
	bool gone;

	*errp = NULL;
	*health = NULL;
	if (path == NULL || strlen(path) >= sizeof sun.sun_path)
		return -1;
again:
	fd = dial(path);
	if (fd < 0 && (errno == EINTR || errno == EAGAIN) &&
	    ++tries < 5 * TAKEOVER_WAIT_S) {
		/* A signal, or its backlog is full: it is there. */
		nanosleep(&blink, NULL);
		goto again;
	}
	if (fd < 0 && (errno == ENOENT || errno == ECONNREFUSED)) {
		sl_log_info("--takeover: no sluice answers on %s (%s); "
		            "starting on its own",
		    path, strerror(errno));
		return -1;
	}
	if (fd < 0) {
		/* Something may run there: starting on its own could make
		 * two sluices decide. */
		*errp = sl_xasprintf(
		    "cannot reach the sluice on %s: %s", path, strerror(errno));
		return -1;
	}
	r = exchange(fd, "takeover begin\n", errp, &gone);
	if (r == NULL && gone && ++tries < 5 * TAKEOVER_WAIT_S) {
		/* Closed unanswered: it is stopping (a SIGTERM sent right
		 * after starting this one) and makes no more decisions.
		 * Once its socket is gone this one starts on its own. */
		free(*errp);
		*errp = NULL;
		close(fd);
		nanosleep(&blink, NULL);
		goto again;
	}
	if (r == NULL) {
		char *m = sl_xasprintf("the sluice on %s: %s", path, *errp);

		free(*errp);
		*errp = m;
		close(fd);
		return -1;
	}
	if (!json_is_true(json_object_get(r, "ok"))) {
		e = json_string_value(json_object_get(r, "error"));
		/* Its client slots are full (many rollout waits, say): they
		 * come and go, so ask again for a while. */
		if (e != NULL &&
		    strncmp(e, "too many control clients", 24) == 0 &&
		    ++tries < 5 * TAKEOVER_WAIT_S) {
			json_decref(r);
			close(fd);
			nanosleep(&pause, NULL);
			goto again;
		}
		if (e != NULL && strncmp(e, "unknown command", 15) == 0) {
			/* A sluice from before the handshake: both decide
			 * until it stops. */
			sl_log_warn("--takeover: the sluice on %s does not "
			            "know the takeover handshake; stop it "
			            "soon, until then both make decisions",
			    path);
		} else {
			*errp = sl_xasprintf("the sluice on %s refused: %s",
			    path, e != NULL ? e : "no reason given");
		}
		json_decref(r);
		close(fd);
		return -1;
	}
	*pid = (long)json_integer_value(json_object_get(r, "pid"));
	json_decref(r);
	/* What it knows of its servers' health (a sluice from before this
	 * question answers "unknown command": its servers start afresh). */
	r = exchange(fd, "takeover health\n", errp, NULL);
	if (r != NULL && json_is_true(json_object_get(r, "ok")) &&
	    json_is_array(json_object_get(r, "health")))
		*health = json_incref(json_object_get(r, "health"));
	json_decref(r);
	free(*errp);
	*errp = NULL;
	sl_log_info("--takeover: pid %ld on %s hands over: it makes no more "
	            "decisions",
	    *pid, path);
	return fd;
}

void
sl_takeover_done(int fd, long pid)
{
	char *err = NULL;
	json_t *r = exchange(fd, "takeover done\n", &err, NULL);
	const char *why = err;

	if (r != NULL && !json_is_true(json_object_get(r, "ok")))
		why = json_string_value(json_object_get(r, "error"));
	if (r == NULL || !json_is_true(json_object_get(r, "ok"))) {
		sl_log_warn("--takeover: pid %ld did not confirm the end of "
		            "the takeover (%s); stop it now",
		    pid, why != NULL ? why : "no reason given");
	} else {
		sl_log_info("--takeover: took over from pid %ld; stop it "
		            "(SIGTERM) once this one answers",
		    pid);
	}
	free(err);
	json_decref(r);
	close(fd);
}

/*
 * events.c — the record of every change: who, what, before and after.
 *
 * The last SL_EVENTS_MAX events stay in memory for "show events"; with
 * event_log = PATH each one is also appended to PATH as one JSON line.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"

/* ISO 8601 UTC time for SEC (static buffer, control thread). */
const char *
sl_ctl_isotime(int64_t sec)
{
	static char buf[32];
	time_t t = (time_t)sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

uint64_t
sl_ctl_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Now, with milliseconds. */
static json_t *
now_json(void)
{
	struct timespec ts;
	struct tm tm;
	char buf[40];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return json_string(buf);
}

/* PATH for appending, created never writable by others whatever the
 * umask (it is the audit trail); NULL and errno on failure. */
static FILE *
open_append(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	FILE *f;
	int e;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "a");
	if (f == NULL) {
		e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

/* Open the JSON-lines event log for appending. */
int
sl_events_open(struct sl_ctl *ctl, const char *path, char **errp)
{
	if (path == NULL)
		return 0;
	sl_ctl_make_dirs(path); /* as for the control socket and state */
	ctl->event_log = open_append(path);
	if (ctl->event_log == NULL) {
		*errp = sl_xasprintf("event_log %s: %s", path, strerror(errno));
		return -1;
	}
	ctl->event_log_path = sl_xstrdup(path);
	return 0;
}

void
sl_events_reopen(struct sl_ctl *ctl)
{
	FILE *f;

	if (ctl->event_log_path == NULL) {
		sl_log_info("SIGUSR1: no event_log to reopen");
		return;
	}
	f = open_append(ctl->event_log_path);
	if (f == NULL) {
		sl_log(SL_LOG_ERROR, errno,
		    "SIGUSR1: cannot reopen the event log %s, still writing "
		    "to the one open",
		    ctl->event_log_path);
		return;
	}
	fclose(ctl->event_log);
	ctl->event_log = f;
	sl_log_info("SIGUSR1: event log %s reopened", ctl->event_log_path);
}

void
sl_events_close(struct sl_ctl *ctl)
{
	size_t i;

	if (ctl->event_log != NULL)
		fclose(ctl->event_log);
	ctl->event_log = NULL;
	free(ctl->event_log_path);
	ctl->event_log_path = NULL;
	for (i = 0; i < SL_EVENTS_MAX; i++) {
		json_decref(ctl->events[i]);
		ctl->events[i] = NULL;
	}
}

json_t *
sl_json_text(const char *s)
{
	json_t *j = json_string(s);
	char *esc, *o;

	if (j != NULL || s == NULL)
		return j;
	/* Not UTF-8 (jansson refuses it): every byte above ASCII as \xNN,
	 * so that the text still says what it was. */
	esc = o = malloc(strlen(s) * 4 + 1);
	if (esc == NULL)
		return json_string("?");
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x80)
			*o++ = *s;
		else
			o += sprintf(o, "\\x%02x", (unsigned char)*s);
	}
	*o = '\0';
	j = json_string(esc);
	free(esc);
	return j;
}

/* Record an event (steals BEFORE and AFTER). */
void
sl_event(struct sl_ctl *ctl, const struct sl_who *who, const char *command,
    json_t *before, json_t *after)
{
	json_t *ev = json_object(), *w = json_object();

	json_object_set_new(ev, "time", now_json());
	if (who != NULL) {
		if (who->uid >= 0)
			json_object_set_new(w, "uid", json_integer(who->uid));
		if (who->pid >= 0)
			json_object_set_new(w, "pid", json_integer(who->pid));
		json_object_set_new(w, "owner", json_string(who->owner));
	} else
		json_object_set_new(w, "owner", json_string("sluice"));
	json_object_set_new(ev, "who", w);
	json_object_set_new(ev, "command", sl_json_text(command));
	json_object_set_new(ev, "before", before ? before : json_null());
	json_object_set_new(ev, "after", after ? after : json_null());

	json_decref(ctl->events[ctl->events_next]);
	ctl->events[ctl->events_next] = ev;
	ctl->events_next = (ctl->events_next + 1) % SL_EVENTS_MAX;
	if (ctl->nevents < SL_EVENTS_MAX)
		ctl->nevents++;

	sl_log_info("event: %s", command);
	if (ctl->event_log != NULL) {
		char *line =
		    json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(15));

		if (line != NULL) {
			if (fprintf(ctl->event_log, "%s\n", line) < 0 ||
			    fflush(ctl->event_log) != 0) {
				sl_log_limited(&ctl->event_log_fail, errno,
				    "cannot write the event log %s",
				    ctl->event_log_path);
				clearerr(ctl->event_log);
			}
			free(line);
		}
	}
}

/* The last N events, oldest first. */
json_t *
sl_events_recent(struct sl_ctl *ctl, size_t n)
{
	json_t *a = json_array();
	size_t i, start;

	if (n > ctl->nevents)
		n = ctl->nevents;
	start = (ctl->events_next + SL_EVENTS_MAX - n) % SL_EVENTS_MAX;
	for (i = 0; i < n; i++)
		json_array_append(a, ctl->events[(start + i) % SL_EVENTS_MAX]);
	return a;
}

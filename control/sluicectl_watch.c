/*
 * sluicectl_watch.c — sluicectl's client-side commands, built from the
 * daemon's read commands over one persistent connection:
 *
 *   watch SVC [--interval S] [--count N]
 *	a live view of a service: weights as bars, rps, errors, latency,
 *	the rollout's state. On a terminal it redraws in place with ANSI
 *	escapes (no curses) and follows SIGWINCH; otherwise it prints one
 *	plain frame per interval, so scripts and tests can read it.
 *
 *   rollout wait SVC [--timeout S]
 *	polls `show rollout SVC` until the rollout is final; the exit code
 *	says how it ended (0 promoted, 1 reverted or aborted, 2 timed out).
 *	It reconnects when sluice restarts or is replaced meanwhile, and
 *	tries again while every client slot is taken.
 *
 * Signals for watch are blocked except inside ppoll(), so SIGINT, SIGTERM
 * and SIGWINCH are seen at once and never lost between a check and a wait.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "conf/xmalloc.h"
#include "control/sluicectl.h"

#define WATCH_WINDOW       10   /* seconds of stats each frame shows */
#define WATCH_BAR_MIN      10   /* narrowest weight bar */
#define WAIT_POLL_INTERVAL 0.5  /* seconds between `show rollout`s */
#define WAIT_RETRY_FIRST   0.05 /* first pause before connecting again */
#define WAIT_RETRY_MAX     1.0  /* longest pause between reconnections */
#define WATCH_BUSY_MAX     30.0 /* how long watch waits for a client slot */

/* ANSI escapes. */
#define ESC_HOME        "\033[H"
#define ESC_CLEAR       "\033[2J"
#define ESC_CLEAR_EOL   "\033[K"
#define ESC_CLEAR_BELOW "\033[J"
#define ESC_HIDE_CURSOR "\033[?25l"
#define ESC_SHOW_CURSOR "\033[?25h"

/* One watch: its settings and the latest replies. */
struct watch {
	struct sl_cli *cli;
	const char *svc;
	double interval;
	long count; /* frames to print; 0: until stopped */
	bool tty;
	const sigset_t *mask; /* the signal mask to wait with */
	json_t *service;      /* latest "show service" reply */
	json_t *stats;        /* latest "show stats" reply */
	json_t *rollout;      /* latest "show rollout" reply, NULL if refused */
};

/* The terminal is in watch mode (cursor hidden) while this is true. */
static bool tty_active;

/* Seconds on the monotonic clock. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Put the terminal back: cursor shown, on a fresh line. */
static void
tty_restore(void)
{
	if (!tty_active)
		return;
	tty_active = false;
	fputs(ESC_SHOW_CURSOR "\n", stdout);
	fflush(stdout);
}

/* SIGINT and SIGTERM: stop watching. */
static void
stop_cb(int sig)
{
	(void)sig;
	sl_cli_stop = 1;
}

/* SIGWINCH: redraw at the new size. */
static void
winch_cb(int sig)
{
	(void)sig;
	sl_cli_winch = 1;
}

/* Parse a number of seconds >= 0. Returns 0 or -1. */
static int
parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 ||
	    v > 1e9)
		return -1;
	*out = v;
	return 0;
}

/*
 * If ARGS[*I] is option NAME ("--name V" or "--name=V"), point *VALUE at
 * its value, step *I past it and return 1; return 0 if it is not NAME; -1
 * if the value is missing (nothing printed).
 */
static int
option(char **args, int nargs, int *i, const char *name, const char **value)
{
	size_t n = strlen(name);

	if (strncmp(args[*i], name, n) != 0)
		return 0;
	if (args[*i][n] == '=') {
		*value = args[*i] + n + 1;
		return 1;
	}
	if (args[*i][n] != '\0')
		return 0;
	if (*i + 1 >= nargs)
		return -1;
	*value = args[++*i];
	return 1;
}

/* The terminal's columns and rows, or (80 or $COLUMNS, 0) off a tty. */
static void
term_size(bool tty, int *cols, int *rows)
{
	struct winsize ws;
	const char *env;

	*cols = 80;
	*rows = 0;
	if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
	    ws.ws_col > 0) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	} else if (!tty && (env = getenv("COLUMNS")) != NULL &&
	    atoi(env) > 20) {
		*cols = atoi(env);
	}
}

/*
 * Write the last verdict of ROLLOUT: "last verdict " and its summary, or
 * its decision and the checks that did not pass.
 */
static void
put_last_verdict(FILE *f, const json_t *rollout)
{
	json_t *verdicts = json_object_get(rollout, "verdicts");
	json_t *v = json_array_get(verdicts, json_array_size(verdicts) - 1);
	json_t *checks = json_object_get(v, "checks"), *c;
	const char *summary = sl_cli_str(v, "summary", NULL), *d;
	bool first = true;
	size_t i;

	if (!json_is_object(v))
		return;
	if (summary != NULL) {
		fprintf(f, "last verdict %s", summary);
		return;
	}
	fprintf(f, "last verdict %s", sl_cli_str(v, "decision", "?"));
	json_array_foreach(checks, i, c)
	{
		d = sl_cli_str(c, "decision", "?");
		if (strcmp(d, "pass") == 0)
			continue;
		fprintf(f, "%s%s %s", first ? " (" : ", ",
		    sl_cli_str(c, "name", "?"), d);
		first = false;
	}
	if (!first)
		fputc(')', f);
}

/* Write the text of one frame to F, COLS wide. */
static void
render_frame(struct watch *w, FILE *f, int cols)
{
	json_t *svc = json_object_get(w->service, "service");
	json_t *versions = json_object_get(svc, "versions"), *v;
	json_t *vstats = json_object_get(w->stats, "versions"), *st, *lat;
	json_t *lock = json_object_get(svc, "lock");
	json_t *r = w->rollout ? json_object_get(w->rollout, "rollout") : NULL;
	char *rps, *p50, *p99, *step, err[32], clock[16];
	int nw = (int)strlen("VERSION"), barw, fill;
	double weight, rate;
	time_t t = time(NULL);
	size_t i;

	json_array_foreach(versions, i, v)
	{
		if ((int)strlen(sl_cli_str(v, "name", "?")) > nw)
			nw = (int)strlen(sl_cli_str(v, "name", "?"));
	}
	/*
	 * A row: name, "  [", bar, "] ", weight (7), four columns (38), and
	 * the last column left empty so a full line never wraps.
	 */
	barw = cols - 1 - (nw + 2 + 2 + 1 + 7 + 38);
	if (barw < WATCH_BAR_MIN)
		barw = WATCH_BAR_MIN;

	fprintf(f, "%s  stable: %s  lock: %s", w->svc,
	    sl_cli_str(svc, "stable", "-"),
	    json_is_object(lock) ? sl_cli_str(lock, "owner", "?") : "-");
	if (json_is_object(r)) {
		step = sl_cli_rollout_step(r);
		fprintf(f, "  rollout: %s %s %s", sl_cli_str(r, "canary", "?"),
		    sl_cli_str(r, "state", "?"), step);
		free(step);
	} else {
		fputs("  rollout: -", f);
	}
	strftime(clock, sizeof clock, "%H:%M:%S", localtime(&t));
	fprintf(f, "\nlast %d s, every %g s, %s%s\n\n", WATCH_WINDOW,
	    w->interval, clock, w->tty ? "  (Ctrl-C to quit)" : "");
	fprintf(f, "%-*s  %-*s  %8s  %6s  %8s  %8s\n", nw, "VERSION",
	    barw + 2 + 1 + 7, "WEIGHT", "RPS", "ERR%", "P50", "P99");
	json_array_foreach(versions, i, v)
	{
		weight = json_number_value(json_object_get(v, "weight"));
		fill = (int)lround(weight / 100 * barw);
		fill = fill < 0 ? 0 : fill > barw ? barw : fill;
		st = json_object_get(vstats, sl_cli_str(v, "name", ""));
		lat = json_object_get(st, "latency_ms");
		rps = sl_cli_fmt_num(json_object_get(st, "rps"), 1, "");
		p50 = sl_cli_fmt_num(json_object_get(lat, "p50"), 1, "ms");
		p99 = sl_cli_fmt_num(json_object_get(lat, "p99"), 1, "ms");
		rate = json_number_value(json_object_get(st, "error_rate"));
		if (json_is_number(json_object_get(st, "error_rate")))
			snprintf(err, sizeof err, "%.2f%%", 100 * rate);
		else
			snprintf(err, sizeof err, "-");
		fprintf(f, "%-*s  [", nw, sl_cli_str(v, "name", "?"));
		for (int b = 0; b < barw; b++)
			fputc(b < fill ? '#' : '-', f);
		fprintf(f, "] %6.2f%%  %8s  %6s  %8s  %8s\n", weight, rps, err,
		    p50, p99);
		free(rps);
		free(p50);
		free(p99);
	}
	if (json_is_object(r) &&
	    json_array_size(json_object_get(r, "verdicts")) > 0) {
		fputc('\n', f);
		put_last_verdict(f, r);
		fputc('\n', f);
	}
}

/* Draw the latest frame: in place on a tty, else plain. */
static void
draw(struct watch *w)
{
	char *buf = NULL, *line, *nl;
	size_t n = 0, len;
	int cols, rows, row;
	FILE *f;

	sl_cli_winch = 0;
	term_size(w->tty, &cols, &rows);
	f = open_memstream(&buf, &n);
	if (f == NULL)
		abort();
	render_frame(w, f, cols);
	fclose(f);
	if (!w->tty) {
		fwrite(buf, 1, n, stdout);
		putchar('\n');
		fflush(stdout);
		free(buf);
		return;
	}
	/*
	 * Cut lines short of the width and the frame at the height: a wrapped
	 * line or a newline on the last row would scroll the screen, and
	 * erasing to the end of a full line would erase its last character.
	 */
	fputs(ESC_HOME, stdout);
	for (line = buf, row = 0; *line != '\0' && (rows == 0 || row < rows);
	     row++) {
		nl = strchr(line, '\n');
		len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		if (row > 0)
			putchar('\n');
		if (len > (size_t)cols - 1)
			len = (size_t)cols - 1;
		fwrite(line, 1, len, stdout);
		fputs(ESC_CLEAR_EOL, stdout);
		line = nl != NULL ? nl + 1 : line + strlen(line);
	}
	fputs(ESC_CLEAR_BELOW, stdout);
	fflush(stdout);
	free(buf);
}

static int pause_until(struct watch *w, double deadline, const sigset_t *mask);

/*
 * Send COMMAND and keep its reply in *slot. Returns 0; SL_CLI_REFUSED if
 * the daemon refused (message printed) and REQUIRED; SL_CLI_TROUBLE if the
 * daemon is gone, or SL_CLI_OK with sl_cli_stop set if interrupted.
 *
 * A connection that served earlier frames and is found closed (the
 * daemon closes one silent for control_idle_timeout, which a long
 * --interval may exceed, or it restarted) is opened again at once, once.
 * While every client slot is taken ("too many control clients"), it tries
 * again with a growing pause, for up to WATCH_BUSY_MAX seconds.
 */
static int
fetch(struct watch *w, const char *command, json_t **slot, bool required)
{
	enum sl_cli_fail fail;
	double pause = WAIT_RETRY_FIRST, give_up = 0;
	bool used, retried = false, warned = false;
	json_t *reply;
	char *err;

	for (;;) {
		used = w->cli->conn != NULL;
		if (sl_cli_try(w->cli, command, &reply, NULL, &err, &fail) == 0)
			break;
		if (sl_cli_stop) {
			free(err);
			return SL_CLI_OK;
		}
		if (fail == SL_CLI_FAIL_LOST && used && !retried) {
			retried = true;
			free(err);
			continue;
		}
		if (fail == SL_CLI_FAIL_BUSY) {
			if (give_up == 0)
				give_up = now() + WATCH_BUSY_MAX;
			if (now() < give_up) {
				if (!warned)
					sl_cli_warn("%s; trying again for up "
					            "to %g s",
					    err, WATCH_BUSY_MAX);
				warned = true;
				free(err);
				if (pause_until(w, now() + pause, w->mask) ==
				    -1)
					return SL_CLI_OK;
				pause = pause * 2 < WAIT_RETRY_MAX
				    ? pause * 2
				    : WAIT_RETRY_MAX;
				continue;
			}
		}
		sl_cli_warn("%s", err);
		free(err);
		return SL_CLI_TROUBLE;
	}
	json_decref(*slot);
	*slot = NULL;
	if (!sl_cli_reply_ok(reply)) {
		if (required) {
			sl_cli_warn("%s", sl_cli_reply_error(reply));
			json_decref(reply);
			return SL_CLI_REFUSED;
		}
		json_decref(reply);
		return 0;
	}
	*slot = reply;
	return 0;
}

/* Fetch one frame's data. Returns 0 or an exit code (see fetch()). */
static int
refresh(struct watch *w)
{
	char *cmd;
	int rc;

	cmd = sl_xasprintf("show service %s", w->svc);
	rc = fetch(w, cmd, &w->service, true);
	free(cmd);
	if (rc != 0 || sl_cli_stop)
		return rc;
	cmd = sl_xasprintf("show stats %s %d", w->svc, WATCH_WINDOW);
	rc = fetch(w, cmd, &w->stats, true);
	free(cmd);
	if (rc != 0 || sl_cli_stop)
		return rc;
	cmd = sl_xasprintf("show rollout %s", w->svc);
	rc = fetch(w, cmd, &w->rollout, false);
	free(cmd);
	return rc;
}

/*
 * Sleep until DEADLINE, redrawing on SIGWINCH. Returns -1 at once when
 * stopped.
 */
static int
pause_until(struct watch *w, double deadline, const sigset_t *mask)
{
	struct timespec ts;
	double left;

	for (;;) {
		if (sl_cli_stop)
			return -1;
		if (sl_cli_winch && w->tty)
			draw(w);
		left = deadline - now();
		if (left <= 0)
			return 0;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		ppoll(NULL, 0, &ts, mask);
	}
}

/* `watch SVC`: parse its options, then draw frames until done. */
int
sl_cli_watch(struct sl_cli *cli, char **args, int nargs)
{
	struct watch w = {.cli = cli, .interval = 1.0};
	struct sigaction sa = {.sa_handler = stop_cb}, old_int, old_term,
	                 old_winch;
	sigset_t block, oldmask;
	const char *value;
	char *end;
	long frames = 0;
	int rc = SL_CLI_OK, o;
	double next;

	for (int i = 0; i < nargs; i++) {
		if ((o = option(args, nargs, &i, "--interval", &value)) == 1) {
			if (parse_seconds(value, &w.interval) == -1 ||
			    w.interval < 0.1) {
				sl_cli_warn("bad --interval: %s (seconds, at "
				            "least 0.1)",
				    value);
				return SL_CLI_USAGE;
			}
		} else if (o == 0 &&
		    (o = option(args, nargs, &i, "--count", &value)) == 1) {
			errno = 0;
			w.count = strtol(value, &end, 10);
			if (errno != 0 || end == value || *end != '\0' ||
			    w.count < 1) {
				sl_cli_warn("bad --count: %s", value);
				return SL_CLI_USAGE;
			}
		} else if (o == -1) {
			sl_cli_warn("%s needs a value", args[i]);
			return SL_CLI_USAGE;
		} else if (args[i][0] == '-' || w.svc != NULL) {
			sl_cli_warn("watch: unexpected argument: %s", args[i]);
			return SL_CLI_USAGE;
		} else {
			w.svc = args[i];
		}
	}
	if (w.svc == NULL) {
		sl_cli_warn("usage: sluicectl watch SVC [--interval S] "
		            "[--count N]");
		return SL_CLI_USAGE;
	}
	if (cli->json) {
		sl_cli_warn("watch has no --json output; use "
		            "`sluicectl --json show stats %s 10`",
		    w.svc);
		return SL_CLI_USAGE;
	}
	w.tty = isatty(STDOUT_FILENO);

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGWINCH);
	sigprocmask(SIG_BLOCK, &block, &oldmask);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sa.sa_handler = winch_cb;
	sigaction(SIGWINCH, &sa, &old_winch);
	sl_cli_set_waitmask(&oldmask);
	sl_cli_set_warn_hook(tty_restore);
	w.mask = &oldmask;

	if (w.tty) {
		fputs(ESC_HIDE_CURSOR ESC_CLEAR, stdout);
		tty_active = true;
	}
	for (;;) {
		next = now() + w.interval;
		rc = refresh(&w);
		if (rc != SL_CLI_OK || sl_cli_stop)
			break;
		draw(&w);
		if (w.count > 0 && ++frames >= w.count)
			break;
		if (pause_until(&w, next, &oldmask) == -1)
			break;
	}
	tty_restore();

	sl_cli_set_warn_hook(NULL);
	sl_cli_set_waitmask(NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGWINCH, &old_winch, NULL);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	json_decref(w.service);
	json_decref(w.stats);
	json_decref(w.rollout);
	return rc;
}

/* Print "SVC: step 3/5 at 25.00%: running, last verdict pass (...)". */
static void
print_progress(const char *svc, const json_t *r)
{
	char *step = sl_cli_rollout_step(r);

	printf("%s: %s: %s", svc, step, sl_cli_str(r, "state", "?"));
	free(step);
	if (json_is_true(json_object_get(r, "warming_up")))
		fputs(", warming up", stdout);
	if (json_array_size(json_object_get(r, "verdicts")) > 0) {
		fputs(", ", stdout);
		put_last_verdict(stdout, r);
	}
	putchar('\n');
	fflush(stdout);
}

/* One `rollout wait`: what it waits for and what it last saw. */
struct wait {
	struct sl_cli *cli;
	const char *svc; /* NULL until parsed */
	json_t *last;    /* the rollout object last seen, or NULL */
};

/* S as a JSON string; one that is not UTF-8 (jansson refuses it) as "?". */
static json_t *
json_text(const char *s)
{
	json_t *j = json_string(s);

	return j != NULL ? j : json_string("?");
}

/*
 * End a wait that saw no final state: print "sluicectl: MESSAGE" and,
 * with --json, the one line {"ok":false,"error":"PREFIX MESSAGE",
 * "service":SVC,"rollout":ROLLOUT} on stdout, ROLLOUT being the last one
 * seen (null if none). Returns RC.
 */
static int wait_fail(struct wait *w, int rc, const char *prefix,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
wait_fail(struct wait *w, int rc, const char *prefix, const char *fmt, ...)
{
	json_t *o;
	va_list ap;
	char *msg, *err, *line;

	va_start(ap, fmt);
	msg = sl_xvasprintf(fmt, ap);
	va_end(ap);
	sl_cli_warn("%s", msg);
	if (w->cli->json) {
		err = sl_xasprintf("%s%s", prefix, msg);
		o = json_pack("{s:b,s:o,s:o,s:O}", "ok", 0, "error",
		    json_text(err), "service",
		    w->svc != NULL ? json_text(w->svc) : json_null(), "rollout",
		    w->last != NULL ? w->last : json_null());
		line = o != NULL
		    ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15))
		    : NULL;
		if (line == NULL)
			abort(); /* out of memory */
		puts(line);
		fflush(stdout);
		free(line);
		json_decref(o);
		free(err);
	}
	free(msg);
	return rc;
}

/* Sleep SECONDS (> 0), whatever signals come. */
static void
sleep_for(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * `rollout wait SVC`: poll until the rollout is final.
 *
 * A restart or a `--takeover` upgrade of sluice resumes the rollout, so
 * the wait outlives the daemon: when the connection closes, the socket is
 * missing or refuses (sluice is restarting), every client slot is taken
 * ("too many control clients": never a verdict), or the path now leads
 * to another sluice (a takeover), it connects again, with a growing
 * pause, until the rollout's end or the --timeout (then exit 3). Only a
 * socket that answered once is waited for: one that never did is a wrong
 * path, said at once.
 */
int
sl_cli_rollout_wait(struct sl_cli *cli, char **args, int nargs)
{
	struct wait w = {.cli = cli};
	const char *value, *state, *last_state = NULL;
	json_int_t step, last_step = -1;
	bool warming, last_warming = false, answered = false, lost = false;
	double timeout = 0 /* none */, deadline, left, pause = WAIT_RETRY_FIRST;
	enum sl_cli_fail fail;
	json_t *reply = NULL, *r;
	char *cmd, *raw = NULL, *last = NULL, *err;
	int rc, o;

	for (int i = 0; i < nargs; i++) {
		if ((o = option(args, nargs, &i, "--timeout", &value)) == 1) {
			if (parse_seconds(value, &timeout) == -1)
				return wait_fail(&w, SL_CLI_USAGE, "",
				    "bad --timeout: %s (seconds, 0 for no "
				    "limit)",
				    value);
		} else if (o == -1) {
			return wait_fail(
			    &w, SL_CLI_USAGE, "", "--timeout needs a value");
		} else if (args[i][0] == '-' || w.svc != NULL) {
			return wait_fail(&w, SL_CLI_USAGE, "",
			    "rollout wait: unexpected argument: %s", args[i]);
		} else {
			w.svc = args[i];
		}
	}
	if (w.svc == NULL)
		return wait_fail(&w, SL_CLI_USAGE, "",
		    "usage: sluicectl rollout wait SVC [--timeout S]");
	deadline = timeout > 0 ? now() + timeout : INFINITY;
	cmd = sl_xasprintf("show rollout %s", w.svc);
	for (;;) {
		json_decref(reply);
		free(raw);
		reply = NULL;
		raw = NULL;
		if (sl_cli_try(cli, cmd, &reply, &raw, &err, &fail) == -1) {
			if (fail == SL_CLI_FAIL_OTHER ||
			    (fail == SL_CLI_FAIL_CONNECT && !answered)) {
				rc = wait_fail(
				    &w, SL_CLI_TROUBLE, "", "%s", err);
				free(err);
				break;
			}
			/* Every client slot taken: a sluice is there, and
			 * slots come free (idle clients are closed). */
			if (fail == SL_CLI_FAIL_BUSY)
				answered = true;
			if (!lost)
				sl_cli_warn("%s; %s", err,
				    fail == SL_CLI_FAIL_BUSY ? "trying again"
				                             : "reconnecting");
			lost = true;
			left = deadline - now();
			if (left <= 0) {
				rc = wait_fail(&w, SL_CLI_TROUBLE, "",
				    "%s: no answer from sluice within the "
				    "--timeout of %g s: %s",
				    w.svc, timeout, err);
				free(err);
				break;
			}
			free(err);
			sleep_for(pause < left ? pause : left);
			pause = pause * 2 < WAIT_RETRY_MAX ? pause * 2
			                                   : WAIT_RETRY_MAX;
			continue;
		}
		answered = true;
		/*
		 * The old sluice answers on its connection until it is told
		 * to stop; what it says is no longer what the one at the
		 * path (the one operators talk to) does.
		 */
		if (sl_cli_conn_replaced(cli->conn, cli->socket)) {
			sl_cli_warn("%s now leads to another sluice (a "
			            "takeover): reconnecting",
			    cli->socket);
			sl_cli_conn_free(cli->conn);
			cli->conn = NULL;
			lost = true;
			pause = WAIT_RETRY_FIRST;
			continue;
		}
		if (lost) {
			sl_cli_warn("reconnected to %s", cli->socket);
			lost = false;
			pause = WAIT_RETRY_FIRST;
		}
		if (!sl_cli_reply_ok(reply)) {
			if (cli->json)
				puts(raw);
			sl_cli_warn("%s", sl_cli_reply_error(reply));
			rc = SL_CLI_REFUSED;
			break;
		}
		r = json_object_get(reply, "rollout");
		if (json_is_null(r)) {
			rc = wait_fail(&w, SL_CLI_REFUSED, "",
			    "%s: no rollout has run", w.svc);
			break;
		}
		state = sl_cli_str(r, "state", NULL);
		if (!json_is_object(r) || state == NULL) {
			rc = wait_fail(&w, SL_CLI_TROUBLE, "",
			    "bad reply from %s: no rollout state", cli->socket);
			break;
		}
		json_decref(w.last);
		w.last = json_incref(r);
		step = json_integer_value(json_object_get(r, "step"));
		warming = json_is_true(json_object_get(r, "warming_up"));
		if (!cli->json &&
		    (last_state == NULL || strcmp(state, last_state) != 0 ||
		        step != last_step || warming != last_warming))
			print_progress(w.svc, r);
		free(last);
		last = sl_xstrdup(state);
		last_state = last;
		last_step = step;
		last_warming = warming;
		if (sl_cli_rollout_over(state)) {
			if (cli->json)
				puts(raw);
			if (strcmp(state, "promoted") == 0) {
				rc = SL_CLI_OK;
			} else {
				sl_cli_warn("%s: rollout %s: %s", w.svc, state,
				    sl_cli_str(r, "reason", "no reason given"));
				rc = SL_CLI_REFUSED;
			}
			break;
		}
		left = deadline - now();
		if (left <= 0) {
			rc = wait_fail(&w, SL_CLI_USAGE,
			    "timeout: ", "%s: still %s after %g s; giving up",
			    w.svc, state, timeout);
			break;
		}
		sleep_for(
		    left < WAIT_POLL_INTERVAL ? left : WAIT_POLL_INTERVAL);
	}
	json_decref(reply);
	json_decref(w.last);
	free(raw);
	free(last);
	free(cmd);
	return rc;
}

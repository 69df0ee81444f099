/*
 * fuzz_control.c — libFuzzer target: control socket command lines through
 * sl_ctl_dispatch (control/commands.c), with the state a running daemon
 * has behind them.
 *
 * Set up once, as proxy/main.c does: a routing table from a fixed config
 * (two services, one with three versions, servers and a rollout section
 * with a blue/green guard),
 * one worker that is created but never started (it needs no listening
 * socket, so its listeners are hidden while it is created), counters and a
 * harvested time series, an event_base for the rollout timers (never run),
 * and a state file in a fresh directory under $TMPDIR (default /tmp),
 * removed at exit.
 *
 * Input: command lines separated by LF (a CR before it is dropped, as the
 * socket does), at most 32; a leading '!' sends them to the read-only
 * socket. Each line starts as owner "uid:1000". Every reply must be a JSON
 * object with a boolean "ok"; a refusal must carry a non-empty "error";
 * the read-only socket must refuse every command "help" lists as write.
 *
 * An input that starts with "#state\n" is a state file instead
 * (control/state.c), loaded as at start-up: it either loads, or fails with
 * an error naming the file; once loaded and its rollouts and guards
 * restored, what sluice writes back loads again to the same file, but
 * for the analysis windows a restart adds (the last word of rollout and
 * guard lines), for the expiry of a running rollout's lock (renewed to a
 * week from now by each restore, so it moves when the two loads fall in
 * different seconds) and unless a guard's end is so near that it could
 * pass between the two loads.
 *
 * Nothing carries over from one input to the next: afterwards the
 * rollouts, guards, runtime records and events are dropped and a fresh copy
 * of the original table is published (the old ones are reclaimed at once,
 * since the worker holds none).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "control/ctl.h"
#include "proxy/route.h"
#include "proxy/worker.h"

#define MAX_LINES 32

/* An invariant: report the line and abort so the fuzzer keeps the input. */
#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
			    __FILE__, __LINE__, #cond);                        \
			abort();                                               \
		}                                                              \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ctl_ini[] = "[sluice]\n"
                              "workers = 1\n"
                              "[listener:main]\n"
                              "bind = 127.0.0.1:18080\n"
                              "[service:shop]\n"
                              "hosts = shop.example\n"
                              "sticky = header:X-User-Id cookie:uid ip\n"
                              "stable = blue\n"
                              "[version:shop/blue]\n"
                              "servers = 127.0.0.1:18081 127.0.0.1:18082=5\n"
                              "weight = 90\n"
                              "[version:shop/green]\n"
                              "servers = 127.0.0.1:18083\n"
                              "weight = 10\n"
                              "[version:shop/red]\n"
                              "servers = [::1]:18084\n"
                              "weight = 0\n"
                              "[rollout:shop]\n"
                              "steps = 10 50 100\n"
                              "step_time = 10s\n"
                              "interval = 2s\n"
                              "guard = 5m\n"
                              "[service:api]\n"
                              "path_prefix = /api\n"
                              "stable = v1\n"
                              "[version:api/v1]\n"
                              "servers = 127.0.0.1:18085\n";

static struct sl_ctl ctl; /* large: series pointers per version id */
static struct sl_route_table *pristine; /* never published, cloned */
static char state_dir[256], state_path[300];
static char **write_cmds; /* "words" of the write commands, from help */
static size_t nwrite_cmds;

/* Remove the state file and its directory. */
static void
cleanup(void)
{
	char tmp[400];

	unlink(state_path);
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", state_path, (int)getpid());
	unlink(tmp);
	rmdir(state_dir);
}

/* Publish a fresh copy of the original table; free the old ones. */
static void
publish_pristine(void)
{
	sl_ctl_publish(&ctl, sl_route_clone(pristine));
	sl_route_reclaim(sl_workers_min_epoch(ctl.workers, ctl.nworkers));
}

/* Remember which commands write, from "help" (the command table). */
static void
learn_write_commands(void)
{
	struct sl_who who = {.uid = 1000, .pid = 42, .owner = "uid:1000"};
	json_t *reply, *cmds, *c;
	size_t i;

	reply = sl_ctl_dispatch(&ctl, &who, false, "help", 4);
	cmds = json_object_get(reply, "commands");
	CHECK(json_is_array(cmds));
	write_cmds = calloc(json_array_size(cmds) + 1, sizeof *write_cmds);
	CHECK(write_cmds != NULL);
	json_array_foreach(cmds, i, c)
	{
		const char *usage =
		    json_string_value(json_object_get(c, "usage"));
		const char *access =
		    json_string_value(json_object_get(c, "access"));
		size_t n = 0;

		CHECK(usage != NULL && access != NULL);
		if (strcmp(access, "write") != 0)
			continue;
		/* The words are the usage up to the first upper-case
		 * argument ("set weights SVC ..."). */
		while (usage[n] != '\0' &&
		    !(usage[n] == ' ' && usage[n + 1] >= 'A' &&
		        usage[n + 1] <= 'Z'))
			n++;
		write_cmds[nwrite_cmds] = strndup(usage, n);
		CHECK(write_cmds[nwrite_cmds] != NULL);
		nwrite_cmds++;
	}
	json_decref(reply);
}

/* Set up the daemon's state once. */
static void
setup(void)
{
	struct sl_config *conf;
	const char *tmpdir = getenv("TMPDIR");
	size_t nl;
	char *err = NULL;

	sl_log_set_level(SL_LOG_ERROR);
	snprintf(state_dir, sizeof state_dir, "%s/sl-fuzz-control.XXXXXX",
	    tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
	if (mkdtemp(state_dir) == NULL) {
		perror("fuzz_control: mkdtemp");
		abort();
	}
	snprintf(state_path, sizeof state_path, "%s/state.ini", state_dir);
	atexit(cleanup);

	conf = sl_conf_load_string("fuzz-control.ini", ctl_ini, &err);
	if (conf == NULL) {
		fprintf(stderr, "fuzz_control: %s\n", err);
		abort();
	}
	/* The worker never runs: it needs no listening socket. */
	nl = conf->nlisteners;
	conf->nlisteners = 0;
	ctl.nworkers = 1;
	ctl.workers = sl_workers_create(conf, ctl.nworkers, &err);
	conf->nlisteners = nl;
	if (ctl.workers == NULL) {
		fprintf(stderr, "fuzz_control: %s\n", err);
		abort();
	}
	pristine = sl_route_build(conf, &err);
	if (pristine == NULL)
		abort();
	ctl.base = event_base_new();
	if (ctl.base == NULL)
		abort();
	ctl.config_path = "fuzz-control.ini";
	ctl.state_path = strdup(state_path); /* sl_state_load replaces it */
	ctl.started = (int64_t)time(NULL);
	publish_pristine();
	sl_ctl_harvest(&ctl);
	learn_write_commands();
}

/* Is LINE (LEN bytes) one of the write commands, after any "as OWNER"? */
static bool
is_write_command(const char *line, size_t len)
{
	char *copy = strndup(line, len), *words[4], *p, *save;
	int n = 0, i = 0;
	bool w = false;
	size_t k;

	CHECK(copy != NULL);
	for (p = strtok_r(copy, " \t", &save); p != NULL && n < 4;
	     p = strtok_r(NULL, " \t", &save))
		words[n++] = p;
	if (n >= 2 && strcmp(words[0], "as") == 0)
		i = 2;
	for (k = 0; k < nwrite_cmds && !w; k++) {
		const char *c = write_cmds[k], *sp = strchr(c, ' ');

		if (sp == NULL)
			w = i < n && strcmp(words[i], c) == 0;
		else
			w = i + 1 < n &&
			    strncmp(words[i], c, (size_t)(sp - c)) == 0 &&
			    words[i][sp - c] == '\0' &&
			    strcmp(words[i + 1], sp + 1) == 0;
	}
	free(copy);
	return w;
}

/* Drop everything the commands changed. */
static void
reset(void)
{
	size_t i;

	sl_ctl_rollouts_stop(&ctl);
	for (i = 0; i < ctl.nrt; i++) {
		free(ctl.rt[i]->pending_guard);
		free(ctl.rt[i]);
	}
	free(ctl.rt);
	ctl.rt = NULL;
	ctl.nrt = 0;
	sl_events_close(&ctl);
	ctl.events_next = ctl.nevents = 0;
	publish_pristine();
}

/* Run one command line and check its reply. */
static void
run_line(const char *line, size_t len, bool read_only)
{
	struct sl_who who = {.uid = 1000, .pid = 42, .owner = "uid:1000"};
	json_t *reply, *ok, *error;
	char *exact, *text;

	/* An exact-size copy: any read past the line is an error. */
	exact = malloc(len ? len : 1);
	if (exact == NULL)
		abort();
	memcpy(exact, line, len);
	reply = sl_ctl_dispatch(&ctl, &who, read_only, exact, len);
	CHECK(json_is_object(reply));
	ok = json_object_get(reply, "ok");
	CHECK(json_is_boolean(ok));
	if (!json_is_true(ok)) {
		error = json_object_get(reply, "error");
		CHECK(json_is_string(error));
		CHECK(json_string_length(error) > 0);
	} else if (read_only) {
		CHECK(!is_write_command(exact, len));
	}
	/* The socket sends the reply as one line of JSON. */
	text = json_dumps(reply, JSON_COMPACT);
	CHECK(text != NULL);
	CHECK(strchr(text, '\n') == NULL);
	free(text);
	json_decref(reply);
	free(exact);
}

/* The state file as sluice wrote it, with the last word of its rollout
 * and guard lines (the windows begun, which every restart moves) and of
 * the rollout's lock line (its expiry, renewed by every restore) cut.
 * *NEAR tells whether a guard in it ends within a minute. Heap. */
static char *
saved_state(bool *near)
{
	FILE *f = fopen(state_path, "r");
	char line[4096], *out = NULL;
	size_t len = 0;
	FILE *o = open_memstream(&out, &len);

	CHECK(f != NULL && o != NULL);
	while (fgets(line, sizeof line, f) != NULL) {
		size_t n = strlen(line);

		long long started, until;

		CHECK(n > 0 && line[n - 1] == '\n');
		if (sscanf(line, "guard = %*s %*s %lld %lld", &started,
		        &until) == 2 &&
		    until < (long long)time(NULL) + 60)
			*near = true;
		if (strncmp(line, "rollout = ", 10) == 0 ||
		    strncmp(line, "guard = ", 8) == 0 ||
		    strncmp(line, "lock = rollout ", 15) == 0)
			strcpy(strrchr(line, ' '), "\n");
		fputs(line, o);
	}
	fclose(f);
	fclose(o);
	return out;
}

/* Load the state file TEXT as at start-up; false if it was refused. */
static bool
load_state(const char *text, size_t len)
{
	struct sl_route_table *t = sl_route_clone(pristine);
	FILE *f = fopen(state_path, "w");
	char *err = NULL;

	CHECK(t != NULL && f != NULL);
	CHECK(fwrite(text, 1, len, f) == len);
	CHECK(fclose(f) == 0);
	if (sl_state_load(&ctl, state_path, t, &err) != 0) {
		CHECK(err != NULL && strncmp(err, "state file ", 11) == 0);
		free(err);
		sl_route_free(t);
		return false;
	}
	sl_ctl_publish(&ctl, t);
	sl_route_reclaim(sl_workers_min_epoch(ctl.workers, ctl.nworkers));
	sl_state_restore_runs(&ctl);
	CHECK(sl_state_save(&ctl, sl_route_current(), &err) == 0);
	return true;
}

/* A state file: loaded, written back, loaded again to the same. */
static void
run_state(const char *text, size_t len)
{
	char *first, *second;
	bool near = false;
	size_t n;

	if (!load_state(text, len))
		return;
	first = saved_state(&near);
	reset();
	{
		FILE *f = fopen(state_path, "r");
		char *copy;

		CHECK(f != NULL && fseek(f, 0, SEEK_END) == 0);
		n = (size_t)ftell(f);
		rewind(f);
		copy = malloc(n + 1);
		CHECK(copy != NULL && fread(copy, 1, n, f) == n);
		fclose(f);
		CHECK(load_state(copy, n));
		free(copy);
	}
	second = saved_state(&near);
	if (!near && strcmp(first, second) != 0) {
		fprintf(stderr, "first:\n%s\nsecond:\n%s\n", first, second);
		CHECK(strcmp(first, second) == 0);
	}
	free(first);
	free(second);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	bool read_only = false;
	int lines = 0;

	if (pristine == NULL)
		setup();
	if (size >= 7 && memcmp(p, "#state\n", 7) == 0) {
		run_state(p + 7, size - 7);
		reset();
		return 0;
	}
	if (p < end && *p == '!') {
		read_only = true;
		p++;
	}
	while (p < end && lines++ < MAX_LINES) {
		size_t len;

		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		run_line(p, len, read_only);
		p = nl != NULL ? nl + 1 : end;
	}
	reset();
	return 0;
}

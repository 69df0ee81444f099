/*
 * sluicectl_print.c — readable output for the control socket's replies.
 *
 * One printer per reply shape (control/PROTOCOL.md "Objects"); the command
 * table in sluicectl.c says which printer reads which command's reply. A
 * printer that finds a reply it does not understand returns -1 before
 * printing anything, and the caller falls back to indented JSON, so a
 * newer daemon never makes sluicectl print nonsense.
 *
 * Tables are plain text: columns padded with spaces, numbers right-aligned,
 * "-" for a missing value.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/xmalloc.h"
#include "control/sluicectl.h"

#define TABLE_MAX_COLS 16

/* A text table being built: cells row by row, then printed aligned. */
struct table {
	int ncols;
	unsigned right; /* bit i set: column i is right-aligned */
	char **cells;   /* heap strings, ncells of them */
	size_t ncells;
	size_t cap;
};

/* Start a table with the NCOLS names in HEADER (NULL-terminated). */
static void
table_init(struct table *t, unsigned right, const char *const *header)
{
	memset(t, 0, sizeof *t);
	t->right = right;
	while (header[t->ncols] != NULL)
		t->ncols++;
	for (int i = 0; i < t->ncols; i++) {
		if (t->ncells == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 32;
			t->cells = sl_xreallocarray(
			    t->cells, t->cap, sizeof *t->cells);
		}
		t->cells[t->ncells++] = sl_xstrdup(header[i]);
	}
}

/* Append the next cell, taking ownership of heap string S. */
static void
table_take(struct table *t, char *s)
{
	if (t->ncells == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->cells = sl_xreallocarray(t->cells, t->cap, sizeof *t->cells);
	}
	t->cells[t->ncells++] = s;
}

/* Append the next cell, formatted. */
static void __attribute__((format(printf, 2, 3)))
table_cell(struct table *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	table_take(t, sl_xvasprintf(fmt, ap));
	va_end(ap);
}

/* Print the table with INDENT spaces before each row, then free it. */
static void
table_flush(struct table *t, int indent)
{
	size_t width[TABLE_MAX_COLS] = {0}, n;
	int c;

	for (size_t i = 0; i < t->ncells; i++) {
		n = strlen(t->cells[i]);
		c = (int)(i % (size_t)t->ncols);
		if (n > width[c])
			width[c] = n;
	}
	for (size_t i = 0; i < t->ncells; i++) {
		c = (int)(i % (size_t)t->ncols);
		if (c == 0)
			printf("%*s", indent, "");
		else
			fputs("  ", stdout);
		if (t->right & (1u << c))
			printf("%*s", (int)width[c], t->cells[i]);
		else if (c == t->ncols - 1)
			fputs(t->cells[i], stdout);
		else
			printf("%-*s", (int)width[c], t->cells[i]);
		if (c == t->ncols - 1)
			putchar('\n');
		free(t->cells[i]);
	}
	free(t->cells);
	memset(t, 0, sizeof *t);
}

/* A number with fixed decimals and a suffix, or "-". */
char *
sl_cli_fmt_num(const json_t *v, int decimals, const char *suffix)
{
	if (!json_is_number(v))
		return sl_xstrdup("-");
	if (decimals < 0)
		return sl_xasprintf("%g%s", json_number_value(v), suffix);
	return sl_xasprintf("%.*f%s", decimals, json_number_value(v), suffix);
}

/* A string field, or DEF when missing or not a string. */
const char *
sl_cli_str(const json_t *o, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : def;
}

/* Write scalar V to F: strings bare, reals with two decimals, null "-". */
static void
put_scalar(FILE *f, const json_t *v)
{
	char *s;

	switch (json_typeof(v)) {
	case JSON_STRING:
		fputs(json_string_value(v), f);
		break;
	case JSON_INTEGER:
		fprintf(f, "%lld", (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(f, "%.2f", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	case JSON_NULL:
		fputc('-', f);
		break;
	default:
		s = json_dumps(v,
		    JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
		fputs(s != NULL ? s : "?", f);
		free(s);
		break;
	}
}

/* True if V is an array of scalars. */
static bool
scalar_array(const json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return false;
	json_array_foreach(v, i, e)
	{
		if (json_is_object(e) || json_is_array(e))
			return false;
	}
	return true;
}

/* Write V: a scalar, an array of scalars as "a,b,c", else compact JSON. */
static void
put_value(FILE *f, const json_t *v)
{
	size_t i;
	json_t *e;

	if (!scalar_array(v)) {
		put_scalar(f, v);
		return;
	}
	json_array_foreach(v, i, e)
	{
		if (i > 0)
			fputc(',', f);
		put_scalar(f, e);
	}
	if (i == 0)
		fputc('-', f);
}

/* True if V reads well on one line: no objects below its first level. */
static bool
flat_value(const json_t *v)
{
	const char *k;
	json_t *e;

	if (json_is_array(v))
		return scalar_array(v);
	if (!json_is_object(v))
		return true;
	json_object_foreach((json_t *)v, k, e)
	{
		if (json_is_object(e) || (json_is_array(e) && !scalar_array(e)))
			return false;
	}
	return true;
}

/*
 * Write the fields of object O to F on one line, skipping SKIP (may be
 * NULL): "stable=green, weights blue=90.00 green=10.00, hosts=a,b". A
 * field nested deeper is written as "key=..." if ELIDE, else as compact
 * JSON. Returns false if there was such a field.
 */
static bool
put_compact(FILE *f, const json_t *o, const char *skip, bool elide)
{
	const char *key, *k;
	json_t *v, *e;
	bool first = true, flat = true, ifirst;

	json_object_foreach((json_t *)o, key, v)
	{
		if (skip != NULL && strcmp(key, skip) == 0)
			continue;
		if (strcmp(key, "ok") == 0)
			continue;
		fputs(first ? "" : ", ", f);
		first = false;
		if (!flat_value(v)) {
			flat = false;
			if (elide) {
				fprintf(f, "%s=...", key);
				continue;
			}
		}
		if (json_is_object(v)) {
			fputs(key, f);
			ifirst = true;
			json_object_foreach(v, k, e)
			{
				fprintf(f, " %s=", k);
				put_value(f, e);
				ifirst = false;
			}
			if (ifirst)
				fputs("=-", f);
		} else {
			fprintf(f, "%s=", key);
			put_value(f, v);
		}
	}
	return flat;
}

/* put_compact() into a new string; *flatp (may be NULL) gets its result. */
static char *
compact(const json_t *o, const char *skip, bool elide, bool *flatp)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	bool flat;

	if (f == NULL)
		abort();
	flat = put_compact(f, o, skip, elide);
	fclose(f);
	if (flatp != NULL)
		*flatp = flat;
	return s;
}

/* The fallback printer: indented JSON. */
void
sl_cli_print_json(const json_t *reply)
{
	char *s = json_dumps(
	    reply, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));

	if (s != NULL)
		puts(s);
	free(s);
}

bool
sl_cli_rollout_over(const char *state)
{
	return state != NULL &&
	    (strcmp(state, "promoted") == 0 || strcmp(state, "reverted") == 0 ||
	        strcmp(state, "aborted") == 0);
}

/*
 * "step 3/5 at 25.00%"; once the rollout is over, "at 100.00% after step
 * 4/5" (its weight is no longer a step's). The daemon counts steps from
 * one and says how many there are in "nsteps" (else the length of
 * "steps").
 */
char *
sl_cli_rollout_step(const json_t *rollout)
{
	json_t *step = json_object_get(rollout, "step");
	json_t *steps = json_object_get(rollout, "steps");
	json_t *nsteps = json_object_get(rollout, "nsteps");
	double weight = json_number_value(json_object_get(rollout, "weight"));
	char of[32] = "";

	if (!json_is_integer(step))
		return sl_xasprintf("at %.2f%%", weight);
	if (json_is_integer(nsteps))
		snprintf(of, sizeof of, "/%lld",
		    (long long)json_integer_value(nsteps));
	else if (json_is_array(steps))
		snprintf(of, sizeof of, "/%zu", json_array_size(steps));
	if (sl_cli_rollout_over(
	        json_string_value(json_object_get(rollout, "state"))))
		return sl_xasprintf("at %.2f%% after step %lld%s", weight,
		    (long long)json_integer_value(step), of);
	return sl_xasprintf("step %lld%s at %.2f%%",
	    (long long)json_integer_value(step), of, weight);
}

/* "deploy-42 (118 s)" for a lock object, "-" for none. Heap. */
static char *
lock_text(const json_t *lock)
{
	json_t *in = json_object_get(lock, "expires_in");

	if (!json_is_object(lock))
		return sl_xstrdup("-");
	if (json_is_number(in))
		return sl_xasprintf("%s (%.0f s)",
		    sl_cli_str(lock, "owner", "?"), json_number_value(in));
	return sl_xstrdup(sl_cli_str(lock, "owner", "?"));
}

/* "running step 3/5 at 25.00%" for a rollout, "-" for none. Heap. */
static char *
rollout_text(const json_t *rollout)
{
	char *step, *s;

	if (json_is_string(rollout))
		return sl_xstrdup(json_string_value(rollout));
	if (!json_is_object(rollout))
		return sl_xstrdup("-");
	step = sl_cli_rollout_step(rollout);
	s = sl_xasprintf("%s %s %s", sl_cli_str(rollout, "canary", "?"),
	    sl_cli_str(rollout, "state", "?"), step);
	free(step);
	return s;
}

/* "teal watching since blue, until 2026-...: <last verdict>" for a guard,
 * "-" for none. Heap. */
static char *
guard_text(const json_t *guard)
{
	if (!json_is_object(guard))
		return sl_xstrdup("-");
	return sl_xasprintf("%s %s (switched from %s; until %s): %s",
	    sl_cli_str(guard, "version", "?"), sl_cli_str(guard, "state", "?"),
	    sl_cli_str(guard, "previous", "?"), sl_cli_str(guard, "until", "?"),
	    json_is_true(json_object_get(guard, "warming_up"))
	        ? "warming up, not judged yet"
	        : sl_cli_str(guard, "last_verdict", "no verdict yet"));
}

/* Why a server is out of rotation: "ejected 29.9 s (resets)", its last
 * health-check failure when down, "-" otherwise. Heap. */
static char *
server_note(const json_t *srv)
{
	json_t *ej = json_object_get(srv, "ejected_for");

	if (json_is_number(ej))
		return sl_xasprintf("ejected %.1f s (%s)",
		    json_number_value(ej),
		    sl_cli_str(srv, "ejected_because", "?"));
	if (strcmp(sl_cli_str(srv, "health", ""), "down") == 0)
		return sl_xasprintf("%s",
		    sl_cli_str(
		        srv, "health_last_failure", "health check failed"));
	return sl_xstrdup("-");
}

/* "blue 90.00% green 10.00%" for a versions array. Heap. */
static char *
weights_text(const json_t *versions)
{
	char *s = NULL;
	size_t n = 0, i;
	FILE *f = open_memstream(&s, &n);
	json_t *v;

	if (f == NULL)
		abort();
	json_array_foreach(versions, i, v)
	{
		fprintf(f, "%s%s %.2f%%", i ? " " : "",
		    sl_cli_str(v, "name", "?"),
		    json_number_value(json_object_get(v, "weight")));
	}
	if (i == 0)
		fputc('-', f);
	fclose(f);
	return s;
}

/* Print "key:" padded, then the value. */
static void
kv(const char *key, const char *value)
{
	if (*value == '\0')
		puts(key);
	else
		printf("%-*s %s\n", 17, key, value);
}

/* kv() taking ownership of a heap VALUE. */
static void
kv_take(const char *key, char *value)
{
	kv(key, value);
	free(value);
}

/* A string array joined by spaces, "-" when empty or missing. Heap. */
static char *
join_strings(const json_t *a)
{
	char *s = NULL;
	size_t n = 0, i;
	FILE *f = open_memstream(&s, &n);
	json_t *e;

	if (f == NULL)
		abort();
	json_array_foreach(a, i, e)
	{
		if (i > 0)
			fputc(' ', f);
		put_scalar(f, e);
	}
	if (!json_is_array(a) || json_array_size(a) == 0)
		fputc('-', f);
	fclose(f);
	return s;
}

/* The daemon's `help`: usage, access and help per command. */
int
sl_cli_print_help(json_t *reply, char **words, int nwords)
{
	static const char *const header[] = {"COMMAND", "ACCESS", "HELP", NULL};
	json_t *cmds = json_object_get(reply, "commands"), *c;
	struct table t;
	size_t i;

	(void)words;
	(void)nwords;
	if (!json_is_array(cmds))
		return -1;
	table_init(&t, 0, header);
	json_array_foreach(cmds, i, c)
	{
		table_cell(&t, "%s", sl_cli_str(c, "usage", "?"));
		table_cell(&t, "%s", sl_cli_str(c, "access", "-"));
		table_cell(&t, "%s", sl_cli_str(c, "help", ""));
	}
	table_flush(&t, 0);
	return 0;
}

/* `show services`: one row per service. */
int
sl_cli_print_services(json_t *reply, char **words, int nwords)
{
	static const char *const header[] = {
	    "NAME", "STABLE", "WEIGHTS", "LOCK", "ROLLOUT", NULL};
	json_t *services = json_object_get(reply, "services"), *s;
	struct table t;
	size_t i;

	(void)words;
	(void)nwords;
	if (!json_is_array(services))
		return -1;
	if (json_array_size(services) == 0) {
		puts("no services");
		return 0;
	}
	table_init(&t, 0, header);
	json_array_foreach(services, i, s)
	{
		table_cell(&t, "%s", sl_cli_str(s, "name", "?"));
		table_cell(&t, "%s", sl_cli_str(s, "stable", "-"));
		table_take(&t, weights_text(json_object_get(s, "versions")));
		table_take(&t, lock_text(json_object_get(s, "lock")));
		table_take(&t, rollout_text(json_object_get(s, "rollout")));
	}
	table_flush(&t, 0);
	return 0;
}

/* `show service`: key: value lines, then versions and servers. */
int
sl_cli_print_service(json_t *reply, char **words, int nwords)
{
	static const char *const header[] = {"VERSION", "WEIGHT", "STABLE",
	    "SERVER", "SERVER-WEIGHT", "STATE", "HEALTH", "NOTE", NULL};
	json_t *svc = json_object_get(reply, "service");
	json_t *versions = json_object_get(svc, "versions"), *v, *servers, *srv;
	struct table t;
	size_t i, j;

	(void)words;
	(void)nwords;
	if (!json_is_object(svc) || !json_is_array(versions))
		return -1;
	kv("name:", sl_cli_str(svc, "name", "?"));
	kv("stable:", sl_cli_str(svc, "stable", "-"));
	kv("previous stable:", sl_cli_str(svc, "previous_stable", "-"));
	kv_take("hosts:", join_strings(json_object_get(svc, "hosts")));
	kv("path prefix:", sl_cli_str(svc, "path_prefix", "-"));
	kv_take("sticky:", join_strings(json_object_get(svc, "sticky")));
	kv_take("weights:", weights_text(versions));
	kv_take("lock:", lock_text(json_object_get(svc, "lock")));
	kv_take("rollout:", rollout_text(json_object_get(svc, "rollout")));
	kv_take("guard:", guard_text(json_object_get(svc, "guard")));
	putchar('\n');
	table_init(&t, 1u << 1 | 1u << 4, header);
	json_array_foreach(versions, i, v)
	{
		servers = json_object_get(v, "servers");
		for (j = 0; j == 0 || j < json_array_size(servers); j++) {
			srv = json_array_get(servers, j);
			if (j == 0) {
				table_cell(
				    &t, "%s", sl_cli_str(v, "name", "?"));
				table_cell(&t, "%.2f%%",
				    json_number_value(
				        json_object_get(v, "weight")));
				table_cell(&t, "%s",
				    json_is_true(json_object_get(v, "stable"))
				        ? "yes"
				        : "");
			} else {
				table_cell(&t, "%s", "");
				table_cell(&t, "%s", "");
				table_cell(&t, "%s", "");
			}
			table_cell(&t, "%s", sl_cli_str(srv, "address", "-"));
			table_take(&t,
			    sl_cli_fmt_num(
			        json_object_get(srv, "weight"), 0, ""));
			table_cell(&t, "%s", sl_cli_str(srv, "state", "-"));
			table_cell(&t, "%s", sl_cli_str(srv, "health", "-"));
			table_take(&t, server_note(srv));
		}
	}
	table_flush(&t, 0);
	return 0;
}

/* `show stats`: one row per version. */
int
sl_cli_print_stats(json_t *reply, char **words, int nwords)
{
	static const char *const header[] = {"VERSION", "WEIGHT", "REQ", "RPS",
	    "ERR%", "P50", "P90", "P99", "MAX", NULL};
	static const char *const quantiles[] = {"p50", "p90", "p99", "max"};
	json_t *versions = json_object_get(reply, "versions"), *v, *lat;
	json_t *window = json_object_get(reply, "window_seconds");
	const char *name;
	struct table t;

	if (!json_is_object(versions))
		return -1;
	printf("%s: ",
	    sl_cli_str(reply, "service", nwords > 2 ? words[2] : "service"));
	if (json_is_number(window)) /* the seconds covered, to 0.1 s */
		printf("last %g s", round(json_number_value(window) * 10) / 10);
	else
		printf("since start");
	printf(", latency in ms\n");
	table_init(&t, ~1u, header);
	json_object_foreach(versions, name, v)
	{
		lat = json_object_get(v, "latency_ms");
		table_cell(&t, "%s", name);
		table_take(
		    &t, sl_cli_fmt_num(json_object_get(v, "weight"), 2, "%"));
		table_take(
		    &t, sl_cli_fmt_num(json_object_get(v, "requests"), 0, ""));
		table_take(
		    &t, sl_cli_fmt_num(json_object_get(v, "rps"), 1, ""));
		if (json_is_number(json_object_get(v, "error_rate")))
			table_cell(&t, "%.2f",
			    100 *
			        json_number_value(
			            json_object_get(v, "error_rate")));
		else
			table_cell(&t, "-");
		for (size_t q = 0; q < sizeof quantiles / sizeof *quantiles;
		     q++)
			table_take(&t,
			    sl_cli_fmt_num(
			        json_object_get(lat, quantiles[q]), 1, ""));
	}
	table_flush(&t, 0);
	return 0;
}

/*
 * One side of an event's change, short: a rollout as its state and step,
 * anything else as fields on one line with deeper parts elided. Heap.
 */
static char *
event_side(const json_t *v)
{
	char *r, *s;

	if (!json_is_object(v))
		return sl_xstrdup("-");
	if (json_is_string(json_object_get(v, "state")) &&
	    json_is_string(json_object_get(v, "canary"))) {
		r = rollout_text(v);
		s = sl_xasprintf("rollout %s", r);
		free(r);
		return s;
	}
	return compact(v, NULL, true, NULL);
}

/* `show events`: time, who, command, before -> after. */
int
sl_cli_print_events(json_t *reply, char **words, int nwords)
{
	json_t *events = json_object_get(reply, "events"), *e, *who, *before,
	       *after, *uid;
	char *b, *a;
	size_t i;

	(void)words;
	(void)nwords;
	if (!json_is_array(events))
		return -1;
	if (json_array_size(events) == 0)
		puts("no events");
	json_array_foreach(events, i, e)
	{
		who = json_object_get(e, "who");
		uid = json_object_get(who, "uid");
		printf("%s  %s", sl_cli_str(e, "time", "-"),
		    sl_cli_str(who, "owner", "-"));
		if (json_is_integer(uid))
			printf(" (uid %lld pid %lld)",
			    (long long)json_integer_value(uid),
			    (long long)json_integer_value(
			        json_object_get(who, "pid")));
		printf("  %s", sl_cli_str(e, "command", "-"));
		before = json_object_get(e, "before");
		after = json_object_get(e, "after");
		if (json_is_object(before) || json_is_object(after)) {
			b = event_side(before);
			a = event_side(after);
			printf("  %s \u2192 %s", b, a);
			free(b);
			free(a);
		}
		putchar('\n');
	}
	return 0;
}

/*
 * A check's measured value in its unit: a fraction as a percentage,
 * microseconds as milliseconds, anything else as it is. Heap.
 */
static char *
check_value(const json_t *v, const char *unit)
{
	if (!json_is_number(v))
		return sl_xstrdup("-");
	if (strcmp(unit, "fraction") == 0)
		return sl_xasprintf("%.2f%%", 100 * json_number_value(v));
	if (strcmp(unit, "us") == 0)
		return sl_xasprintf("%.2fms", json_number_value(v) / 1000);
	return sl_xasprintf("%.4g", json_number_value(v));
}

/* The optional columns of a check, shown when some check has them. */
static const struct {
	const char *key;
	const char *header;
	bool in_unit;   /* formatted with check_value() */
	bool above_one; /* shown only when some check's is above 1 */
} check_cols[] = {
    {"n", "N", false, false},
    {"canary", "CANARY", true, false},
    {"stable", "STABLE", true, false},
    {"threshold", "THRESHOLD", true, false},
    {"statistic", "STATISTIC", false, false},
    {"bound", "BOUND", false, false},
    {"p_value", "P", false, false},
    /* A sticky split's users weighed (README "Users, not requests"). */
    {"deff", "DEFF", false, true},
};
#define NCHECK_COLS (sizeof check_cols / sizeof *check_cols)

/* Print one verdict and a table of its checks, indented. */
static void
print_verdict(const json_t *verdict)
{
	const char *header[NCHECK_COLS + 4];
	bool shown[NCHECK_COLS] = {false};
	json_t *step = json_object_get(verdict, "step");
	json_t *checks = json_object_get(verdict, "checks"), *c, *v, *left;
	const char *summary = sl_cli_str(verdict, "summary", NULL);
	json_int_t ca, st;
	struct table t;
	size_t i, k, n = 0;

	printf("  %s", sl_cli_str(verdict, "time", "-"));
	if (json_is_integer(step))
		printf("  step %lld", (long long)json_integer_value(step));
	printf("  %s\n",
	    summary != NULL ? summary : sl_cli_str(verdict, "decision", "?"));
	left = json_object_get(verdict, "unjudged");
	ca = json_integer_value(json_object_get(left, "canary"));
	st = json_integer_value(json_object_get(left, "stable"));
	if (ca > 0 || st > 0) /* (a sluice before session 22 sends none) */
		printf("    not judged: %lld canary and %lld stable requests "
		       "an override or a pin routed\n",
		    (long long)ca, (long long)st);
	if (!json_is_array(checks) || json_array_size(checks) == 0)
		return;
	header[n++] = "CHECK";
	header[n++] = "DECISION";
	for (k = 0; k < NCHECK_COLS; k++) {
		json_array_foreach(checks, i, c)
		{
			v = json_object_get(c, check_cols[k].key);
			if (v != NULL &&
			    (!check_cols[k].above_one ||
			        json_number_value(v) > 1))
				shown[k] = true;
		}
		if (shown[k])
			header[n++] = check_cols[k].header;
	}
	header[n++] = "WHY";
	header[n] = NULL;
	table_init(&t, 0, header);
	json_array_foreach(checks, i, c)
	{
		table_cell(&t, "%s", sl_cli_str(c, "name", "?"));
		table_cell(&t, "%s", sl_cli_str(c, "decision", "-"));
		for (k = 0; k < NCHECK_COLS; k++) {
			if (!shown[k])
				continue;
			v = json_object_get(c, check_cols[k].key);
			if (check_cols[k].in_unit)
				table_take(&t,
				    check_value(v, sl_cli_str(c, "unit", "")));
			else if (json_is_integer(v))
				table_take(&t, sl_cli_fmt_num(v, 0, ""));
			else
				table_take(&t, check_value(v, ""));
		}
		table_cell(&t, "%s", sl_cli_str(c, "why", ""));
	}
	table_flush(&t, 4);
}

/* A rollout's steps as "1% 5% 25% 50% 100%". Heap. */
static char *
steps_text(const json_t *steps)
{
	char *s = NULL;
	size_t n = 0, i;
	FILE *f = open_memstream(&s, &n);
	json_t *e;

	if (f == NULL)
		abort();
	json_array_foreach(steps, i, e)
	{
		fprintf(f, "%s%g%%", i ? " " : "", json_number_value(e));
	}
	if (!json_is_array(steps) || json_array_size(steps) == 0)
		fputc('-', f);
	fclose(f);
	return s;
}

#define VERDICTS_SHOWN 5

/* `show rollout`: state, step and the last verdicts. */
int
sl_cli_print_rollout(json_t *reply, char **words, int nwords)
{
	json_t *r = json_object_get(reply, "rollout");
	json_t *verdicts = json_object_get(r, "verdicts");
	json_t *elapsed = json_object_get(r, "step_elapsed"), *tol, *lock;
	char *step;
	size_t n, i;

	if (json_is_null(r)) {
		printf("%s: no rollout has run\n", nwords > 2 ? words[2] : "");
		return 0;
	}
	if (!json_is_object(r))
		return -1;
	printf("%s: rollout of %s (baseline %s)\n",
	    sl_cli_str(r, "service", "?"), sl_cli_str(r, "canary", "?"),
	    sl_cli_str(r, "baseline", "?"));
	kv("state:", sl_cli_str(r, "state", "?"));
	step = sl_cli_rollout_step(r);
	if (json_is_number(elapsed))
		kv_take("step:",
		    sl_xasprintf("%s, %s%.0f s at this step", step,
		        json_is_string(json_object_get(r, "ended"))
		            ? "ended after "
		            : "",
		        json_number_value(elapsed)));
	else
		kv("step:", step);
	free(step);
	kv_take("steps:", steps_text(json_object_get(r, "steps")));
	if (json_number_value(json_object_get(r, "warmup")) > 0)
		kv_take("warmup:",
		    sl_xasprintf("%g s at the start of each step, not judged%s",
		        json_number_value(json_object_get(r, "warmup")),
		        json_is_true(json_object_get(r, "warming_up"))
		            ? " (warming up now)"
		            : ""));
	tol = json_object_get(r, "latency_tolerance_ms");
	if (json_is_number(tol) && json_number_value(tol) > 0)
		kv_take("tolerance:",
		    sl_xasprintf("%g ms (latencies no further apart are "
		                 "ties)",
		        json_number_value(tol)));
	else if (json_is_number(tol))
		kv("tolerance:", "none (every latency difference counts)");
	kv("started:", sl_cli_str(r, "started", "-"));
	kv("ended:", sl_cli_str(r, "ended", "-"));
	kv("reason:", sl_cli_str(r, "reason", "-"));
	lock = json_object_get(reply, "lock");
	if (lock != NULL) { /* a sluice before session 20 sends none */
		char *held = lock_text(lock);
		json_t *aside = json_object_get(lock, "set_aside");

		if (json_is_object(aside)) {
			char *starter = lock_text(aside);

			kv_take("lock:",
			    sl_xasprintf("%s; set aside: %s, given back "
			                 "when the rollout ends",
			        held, starter));
			free(starter);
			free(held);
		} else
			kv_take("lock:", held);
	}
	n = json_array_size(verdicts);
	if (n == 0) {
		kv("verdicts:", "none yet");
		return 0;
	}
	if (n > VERDICTS_SHOWN)
		kv_take("verdicts:",
		    sl_xasprintf("last %d of the %zu kept", VERDICTS_SHOWN, n));
	else
		kv("verdicts:", "");
	for (i = n > VERDICTS_SHOWN ? n - VERDICTS_SHOWN : 0; i < n; i++)
		print_verdict(json_array_get(verdicts, i));
	return 0;
}

/* `set weights`: "shop: weights blue=90.00 green=10.00". */
int
sl_cli_print_weights(json_t *reply, char **words, int nwords)
{
	json_t *weights = json_object_get(reply, "weights"), *w;
	const char *name;

	(void)words;
	(void)nwords;
	if (!json_is_object(weights))
		return -1;
	printf("%s: weights", sl_cli_str(reply, "service", "?"));
	json_object_foreach(weights, name, w)
	{
		printf(" %s=%.2f", name, json_number_value(w));
	}
	putchar('\n');
	return 0;
}

/* `switch`: the new and the previous stable version. */
int
sl_cli_print_switch(json_t *reply, char **words, int nwords)
{
	const char *stable = sl_cli_str(reply, "stable", "?");
	json_t *was = json_object_get(reply, "was");
	json_t *weights = json_object_get(was, "weights");
	const char *name, *sep = "";
	json_t *w;

	(void)words;
	(void)nwords;
	if (!json_is_string(json_object_get(reply, "stable")))
		return -1;
	if (json_is_false(json_object_get(reply, "changed"))) {
		printf("%s: stable %s at 100%% (it was already)\n",
		    sl_cli_str(reply, "service", "?"), stable);
		return 0;
	}
	if (json_is_object(weights) &&
	    strcmp(sl_cli_str(was, "stable", ""), stable) == 0) {
		/* The stable version stayed: say what was cut. */
		printf("%s: stable %s at 100%% (was",
		    sl_cli_str(reply, "service", "?"), stable);
		json_object_foreach(weights, name, w)
		{
			if (json_number_value(w) == 0)
				continue;
			printf("%s %s=%.2f", sep, name, json_number_value(w));
			sep = ",";
		}
		puts(")");
		return 0;
	}
	printf("%s: stable %s at 100%% (was %s)\n",
	    sl_cli_str(reply, "service", "?"), stable,
	    sl_cli_str(reply, "previous_stable", "-"));
	return 0;
}

/* `set server`: the server and its new state. */
int
sl_cli_print_server(json_t *reply, char **words, int nwords)
{
	(void)words;
	(void)nwords;
	if (!json_is_string(json_object_get(reply, "state")))
		return -1;
	printf("%s: %s %s %s\n", sl_cli_str(reply, "service", "?"),
	    sl_cli_str(reply, "version", "?"), sl_cli_str(reply, "server", "?"),
	    sl_cli_str(reply, "state", "?"));
	return 0;
}

/* `rollout start|pause|...`: the rollout's state and step. */
int
sl_cli_print_rollout_change(json_t *reply, char **words, int nwords)
{
	json_t *r = json_object_get(reply, "rollout");
	char *step;

	(void)words;
	(void)nwords;
	if (!json_is_object(r))
		return -1;
	step = sl_cli_rollout_step(r);
	printf("%s: rollout of %s %s, %s\n", sl_cli_str(r, "service", "?"),
	    sl_cli_str(r, "canary", "?"), sl_cli_str(r, "state", "?"), step);
	free(step);
	return 0;
}

/* `lock` and `unlock`: who holds the lock until when. */
int
sl_cli_print_lock(json_t *reply, char **words, int nwords)
{
	json_t *lock = json_object_get(reply, "lock");
	json_t *in = json_object_get(lock, "expires_in");

	(void)words;
	(void)nwords;
	if (json_is_null(lock)) {
		printf("%s: unlocked\n", sl_cli_str(reply, "service", "?"));
		return 0;
	}
	if (!json_is_object(lock))
		return -1;
	printf("%s: locked by %s until %s", sl_cli_str(reply, "service", "?"),
	    sl_cli_str(lock, "owner", "?"), sl_cli_str(lock, "expires", "?"));
	if (json_is_number(in))
		printf(" (%.0f s)", json_number_value(in));
	putchar('\n');
	return 0;
}

/* `reset`: the service as the config has it again. */
int
sl_cli_print_reset(json_t *reply, char **words, int nwords)
{
	json_t *state = json_object_get(reply, "service_state");
	char *w;

	(void)words;
	(void)nwords;
	if (!json_is_object(state))
		return -1;
	w = weights_text(json_object_get(state, "versions"));
	printf("%s: back to the config: stable %s, weights %s\n",
	    sl_cli_str(reply, "service", "?"), sl_cli_str(state, "stable", "?"),
	    w);
	free(w);
	return 0;
}

/*
 * Any other reply: "SERVICE: field=value, ..." on one line when it reads
 * well that way, -1 (indented JSON) when it is nested deeper.
 */
int
sl_cli_print_generic(json_t *reply, char **words, int nwords)
{
	const char *service = sl_cli_str(reply, "service", NULL);
	bool flat;
	char *s;

	(void)words;
	(void)nwords;
	s = compact(reply, service != NULL ? "service" : NULL, false, &flat);
	if (!flat) {
		free(s);
		return -1;
	}
	if (service != NULL)
		printf("%s: %s\n", service, *s ? s : "ok");
	else
		printf("%s\n", *s ? s : "ok");
	free(s);
	return 0;
}

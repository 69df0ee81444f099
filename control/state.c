/*
 * state.c — runtime state that survives restarts and reloads.
 *
 * An operator's decisions (weights, the stable version, server states,
 * locks, the previous stable version, rollout progress) are kept in the
 * state file, written atomically (temp file, fsync, rename, fsync of the
 * directory) after every change. Only services changed at runtime are
 * written; for those the state file wins over the config, so a restart or
 * a reload never silently undoes a decision.
 *
 * The file is INI, one [service:NAME] section per service:
 *
 *   stable = green
 *   previous_stable = blue
 *   weight = blue 0.00          (one line per version)
 *   server = blue 10.0.0.1:8080 drain
 *   lock = deploy-42 1763830800 (owner, expiry in Unix seconds)
 *   rollout = green blue running 2 1763830000 0 3
 *             (canary, baseline, state, step, started, ended, and the
 *             analysis windows begun before: steps, resumes, restarts)
 *   guard = green blue 1763830800 1763831100 0
 *   guard_baseline = 5321 12 106420000 1830 91200 0
 *   guard_latency = 1203:5 1210:17 ...
 *
 * A watching blue/green guard is VERSION PREVIOUS STARTED UNTIL and the
 * windows it began before (restarts: each spent a share of its budget);
 * then its baseline's answered requests and errors and its latencies'
 * sum, smallest, largest and clamped count (µs), and its requests left
 * unanswered when there were any (a seventh number), and the latency
 * histogram's buckets as BUCKET:COUNT pairs over as many guard_latency
 * lines as it takes: the baseline comes back exactly. inih reads lines of
 * at most 200 bytes; a longer one (a server with a long host name)
 * reaches it as a placeholder, its key and value kept by state_reader.
 *
 * Loading and carrying over on reload share one representation (struct
 * saved), applied by apply_saved().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "analysis/rollout.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

struct saved_weight {
	char *version;
	uint32_t weight;
};

struct saved_server {
	char *version;
	char *addr;
	enum sl_server_state state;
};

struct saved_svc {
	char *name;
	char *stable;
	char *previous_stable;
	struct saved_weight *weights;
	size_t nweights;
	struct saved_server *servers;
	size_t nservers;
	char *lock_owner;
	int64_t lock_expires;
	char *held_owner; /* lock_held: the rollout starter's lock */
	int64_t held_expires;
	char *rollout; /* "CANARY BASELINE STATE STEP STARTED ENDED" */
	struct sl_guard_saved *guard; /* heap; NULL: none */
	bool guard_baseline;          /* its guard_baseline line was read */
	/* Its latencies' sum, min, max and clamped count: set once the
	 * buckets are in (recording them moves these). */
	uint64_t guard_lat[4];
	bool touched;
	int weight_line;   /* where its first weight line is (0: none) */
	int guard_line;    /* where its guard line is (0: none) */
	int baseline_line; /* where its guard_baseline line is */
	unsigned seen;     /* keys of once[] already read */
	unsigned section;  /* the section its keys are in (0: none yet) */
};

struct saved {
	struct saved_svc *svcs;
	size_t n;
	char *err;    /* first error a key had */
	int err_line; /* its line */
	/* Reading: inih does not tell the handler the line number, so the
	 * reader counts physical lines. A line too long for inih's buffer
	 * (INI_MAX_LINE, 200 bytes: a long server address) reaches inih as
	 * the placeholder "\001=\001"; its key and value wait here. */
	FILE *f;
	int line;
	char *buf;
	size_t cap;
	char *long_key, *long_value;
	unsigned sections; /* section headers read so far */
};

static const char *state_names[] = {"ready", "drain", "maint"};

/* Keys a service's section holds at most once (bits of saved_svc.seen);
 * not guard_latency, whose buckets take as many lines as they need. */
static const char *const once[] = {"stable", "previous_stable", "lock",
    "lock_held", "rollout", "guard", "guard_baseline"};

/* Has S a server line for ADDR of VERSION already? */
static bool
saved_server_of(
    const struct saved_svc *s, const char *version, const char *addr)
{
	for (size_t i = 0; i < s->nservers; i++) {
		if (strcmp(s->servers[i].version, version) == 0 &&
		    strcmp(s->servers[i].addr, addr) == 0)
			return true;
	}
	return false;
}

/* The saved weight of VERSION in S, or NULL. */
static const struct saved_weight *
saved_weight_of(const struct saved_svc *s, const char *version)
{
	for (size_t i = 0; i < s->nweights; i++) {
		if (strcmp(s->weights[i].version, version) == 0)
			return &s->weights[i];
	}
	return NULL;
}

/* The runtime record of a service, created when absent. */
struct sl_svc_rt *
sl_ctl_rt(struct sl_ctl *ctl, const char *name)
{
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		if (strcmp(ctl->rt[i]->name, name) == 0)
			return ctl->rt[i];
	}
	/* Records are allocated one by one: callers keep pointers to them
	 * across calls that add records. */
	ctl->rt = sl_xreallocarray(ctl->rt, ctl->nrt + 1, sizeof *ctl->rt);
	ctl->rt[ctl->nrt] = sl_xcalloc(1, sizeof **ctl->rt);
	snprintf(ctl->rt[ctl->nrt]->name, sizeof ctl->rt[ctl->nrt]->name, "%s",
	    name);
	return ctl->rt[ctl->nrt++];
}

static void
saved_free(struct saved *sv)
{
	size_t i, j;

	for (i = 0; i < sv->n; i++) {
		struct saved_svc *s = &sv->svcs[i];

		free(s->name);
		free(s->stable);
		free(s->previous_stable);
		for (j = 0; j < s->nweights; j++)
			free(s->weights[j].version);
		free(s->weights);
		for (j = 0; j < s->nservers; j++) {
			free(s->servers[j].version);
			free(s->servers[j].addr);
		}
		free(s->servers);
		free(s->lock_owner);
		free(s->held_owner);
		free(s->rollout);
		free(s->guard);
	}
	free(sv->svcs);
	free(sv->err);
	free(sv->buf);
	free(sv->long_key);
	free(sv->long_value);
}

/* The saved record for section NAME (added when absent). */
static struct saved_svc *
saved_svc(struct saved *sv, const char *name)
{
	size_t i;

	for (i = 0; i < sv->n; i++) {
		if (strcmp(sv->svcs[i].name, name) == 0)
			return &sv->svcs[i];
	}
	sv->svcs = sl_xreallocarray(sv->svcs, sv->n + 1, sizeof *sv->svcs);
	memset(&sv->svcs[sv->n], 0, sizeof *sv->svcs);
	sv->svcs[sv->n].name = sl_xstrdup(name);
	return &sv->svcs[sv->n++];
}

/* Split "WORD REST" at the first space; returns REST or NULL. */
static char *
split_word(char *s)
{
	char *sp = strchr(s, ' ');

	if (sp == NULL)
		return NULL;
	*sp++ = '\0';
	while (*sp == ' ')
		sp++;
	return sp;
}

/* A copy of S[0..N) without white space at either end. */
static char *
dup_trimmed(const char *s, size_t n)
{
	while (n > 0 && strchr(" \t\r\n", *s) != NULL) {
		s++;
		n--;
	}
	while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL)
		n--;
	return sl_xstrndup(s, n);
}

/* inih's reader: the next line, counted; one too long for inih's NUM
 * bytes becomes the placeholder "\001=\001" (see struct saved). */
static char *
state_reader(char *str, int num, void *arg)
{
	struct saved *sv = arg;
	ssize_t n = getline(&sv->buf, &sv->cap, sv->f);
	char *eq;

	free(sv->long_key);
	free(sv->long_value);
	sv->long_key = sv->long_value = NULL;
	if (n < 0)
		return NULL;
	sv->line++;
	if (sv->buf[strspn(sv->buf, " \t")] == '[')
		sv->sections++; /* inih tells the keys only */
	if (n + 2 <= num) {
		memcpy(str, sv->buf, (size_t)n + 1);
		return str;
	}
	eq = memchr(sv->buf, '=', (size_t)n);
	if (eq == NULL) {
		snprintf(str, (size_t)num, "\001\n"); /* a syntax error */
		return str;
	}
	sv->long_key = dup_trimmed(sv->buf, (size_t)(eq - sv->buf));
	sv->long_value = dup_trimmed(eq + 1, (size_t)(n - (eq + 1 - sv->buf)));
	snprintf(str, (size_t)num, "\001=\001\n");
	return str;
}

/* Record the first error a key had, with its line; returns 0 for inih. */
static int __attribute__((format(printf, 2, 3)))
key_error(struct saved *sv, const char *fmt, ...)
{
	va_list ap;

	if (sv->err == NULL) {
		va_start(ap, fmt);
		sv->err = sl_xvasprintf(fmt, ap);
		va_end(ap);
		sv->err_line = sv->line;
	}
	return 0;
}

/*
 * The next unsigned decimal of *P (digits only: no sign, no space), at
 * most MAX; advances *P past it. -1 when there is none or it is larger.
 */
static int
take_uint(const char **p, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*out = n;
	*p = s;
	return 0;
}

/* Wall-clock seconds a state file may name: up to the year 9999. */
#define STATE_TIME_MAX UINT64_C(253402300799)

/* N space-separated unsigned decimals of VALUE, each at most its MAX,
 * and nothing else. */
static int
take_uints(const char *value, size_t n, const uint64_t *max, uint64_t *out)
{
	const char *p = value;
	size_t i;

	for (i = 0; i < n; i++) {
		if (take_uint(&p, max[i], &out[i]) != 0 ||
		    *p != (i + 1 < n ? ' ' : '\0'))
			return -1;
		if (i + 1 < n)
			p++;
	}
	return 0;
}

/* "guard = VERSION PREVIOUS STARTED UNTIL SEGMENT". */
static int
parse_guard(struct saved *sv, struct saved_svc *s, const char *value)
{
	static const uint64_t max[3] = {
	    STATE_TIME_MAX, STATE_TIME_MAX, UINT32_MAX};
	struct sl_guard_saved g;
	uint64_t n[3];
	int end = 0;

	memset(&g, 0, sizeof g);
	/* A guard lasts at most warmup + guard: two days. */
	if (sscanf(value, "%63s %63s %n", g.version, g.previous, &end) != 2 ||
	    end == 0 || strcmp(g.version, g.previous) == 0 ||
	    take_uints(value + end, 3, max, n) != 0 || n[0] == 0 ||
	    n[1] < n[0] || n[1] - n[0] > 2 * 86400 + 1)
		return key_error(sv, "bad guard '%s'", value);
	if (s->guard != NULL)
		return key_error(sv, "a second guard line");
	s->guard = sl_xmalloc(sizeof *s->guard);
	*s->guard = g;
	s->guard->started = (int64_t)n[0];
	s->guard->until = (int64_t)n[1];
	s->guard->segment = (uint32_t)n[2];
	return 1;
}

/* "guard_baseline = REQUESTS ERRORS SUM MIN MAX CLAMPED [UNANSWERED]",
 * after the guard line. */
static int
parse_guard_baseline(struct saved *sv, struct saved_svc *s, const char *value)
{
	static const uint64_t max[7] = {UINT64_MAX, UINT64_MAX, UINT64_MAX,
	    SL_HIST_MAX_VALUE, SL_HIST_MAX_VALUE, UINT64_MAX, UINT64_MAX};
	uint64_t n[7] = {0};

	if (s->guard == NULL)
		return key_error(sv, "guard_baseline before its guard line");
	if ((take_uints(value, 6, max, n) != 0 &&
	        take_uints(value, 7, max, n) != 0) ||
	    n[1] > n[0] || n[3] > n[4])
		return key_error(sv, "bad guard_baseline '%s'", value);
	s->guard->requests = n[0];
	s->guard->errors = n[1];
	s->guard->unanswered = n[6];
	memcpy(s->guard_lat, n + 2, sizeof s->guard_lat);
	s->guard_baseline = true;
	return 1;
}

/* "guard_latency = BUCKET:COUNT ...", after the guard line. */
static int
parse_guard_latency(struct saved *sv, struct saved_svc *s, const char *value)
{
	const char *p = value;
	uint64_t idx, n;

	if (s->guard == NULL)
		return key_error(sv, "guard_latency before its guard line");
	while (*p != '\0') {
		if (take_uint(&p, SL_HIST_NBUCKETS - 1, &idx) != 0 ||
		    *p++ != ':' || take_uint(&p, UINT64_MAX, &n) != 0 ||
		    n == 0 || (*p != ' ' && *p != '\0'))
			return key_error(sv, "bad guard_latency '%s'", value);
		if (s->guard->latency.count + n < n)
			return key_error(sv, "guard_latency counts overflow");
		sl_hist_record_n(
		    &s->guard->latency, sl_hist_bucket_lo((size_t)idx), n);
		while (*p == ' ')
			p++;
	}
	return 1;
}

/* "CANARY BASELINE STATE STEP STARTED ENDED [WINDOWS [REASON]]", the
 * numbers digits only (WINDOWS came in session 11; REASON, the rest of
 * the line, in session 13, for an ended rollout). */
static bool
rollout_line_ok(const char *v)
{
	static const uint64_t max[4] = {
	    UINT32_MAX, STATE_TIME_MAX, STATE_TIME_MAX, UINT32_MAX};
	char c[64], b[64], st[16];
	uint64_t n[4];
	const char *p;
	int end = 0;
	enum sl_rollout_state state;

	if (sscanf(v, "%63s %63s %15s %n", c, b, st, &end) != 3 || end == 0)
		return false;
	/* A rollout of a version against itself, or in a state sluice
	 * never writes, is no rollout sluice saved. */
	state = sl_rollout_state_by_name(st);
	if (strcmp(c, b) == 0 || state == 0)
		return false;
	if (take_uints(v + end, 3, max, n) == 0 ||
	    take_uints(v + end, 4, max, n) == 0)
		return true;
	if (state == SL_RO_RUNNING || state == SL_RO_PAUSED)
		return false;
	p = v + end;
	for (size_t i = 0; i < 4; i++) {
		if (take_uint(&p, max[i], &n[i]) != 0 || *p++ != ' ')
			return false;
	}
	return *p != '\0' && *p != ' ';
}

/* A live rollout of S's stable version is no rollout sluice saved (the
 * canary grows against the stable one): 0 then, with the error, once both
 * lines are in, whichever came first. */
static int
rollout_vs_stable(struct saved *sv, const struct saved_svc *s)
{
	char c[64], st[16];
	enum sl_rollout_state state;

	if (s->rollout == NULL || s->stable == NULL ||
	    sscanf(s->rollout, "%63s %*63s %15s", c, st) != 2)
		return 1;
	state = sl_rollout_state_by_name(st);
	if ((state == SL_RO_RUNNING || state == SL_RO_PAUSED) &&
	    strcmp(c, s->stable) == 0)
		return key_error(sv,
		    "the %s rollout's canary '%s' is the stable version", st,
		    c);
	return 1;
}

/* inih handler: one key of the state file. */
static int
state_key_cb(
    void *arg, const char *section, const char *name, const char *value)
{
	struct saved *sv = arg;
	struct saved_svc *s;
	char *v, *rest, *rest2;
	const char *why;
	int ok = 1;

	if (sv->long_key != NULL && strcmp(name, "\001") == 0) {
		name = sv->long_key;
		value = sv->long_value;
	}
	if (strncmp(section, "service:", 8) != 0 || section[8] == '\0')
		return key_error(sv, "unknown section [%s]", section);
	s = saved_svc(sv, section + 8);
	/* One section a service: a second one is a file edited by hand,
	 * as a second line of a once[] key would be. */
	if (s->section != 0 && s->section != sv->sections)
		return key_error(sv, "a second [service:%s] section", s->name);
	s->section = sv->sections;
	/* sluice writes each of these once per service: a second one is a
	 * file edited by hand or corrupt, and which one wins would be a
	 * guess. */
	for (size_t k = 0; k < sizeof once / sizeof once[0]; k++) {
		if (strcmp(name, once[k]) != 0)
			continue;
		if (s->seen & (1u << k))
			return key_error(sv,
			    "a second '%s' line in "
			    "[service:%s]",
			    name, s->name);
		s->seen |= 1u << k;
	}
	v = sl_xstrdup(value);
	if (strcmp(name, "stable") == 0) {
		free(s->stable);
		s->stable = sl_xstrdup(v);
		s->touched = true;
		ok = rollout_vs_stable(sv, s);
	} else if (strcmp(name, "previous_stable") == 0) {
		free(s->previous_stable);
		s->previous_stable = sl_xstrdup(v);
	} else if (strcmp(name, "weight") == 0) {
		uint32_t w;

		rest = split_word(v);
		if (rest == NULL || sl_conf_parse_weight(rest, &w, &why) != 0) {
			ok = key_error(sv, "bad weight '%s'", value);
		} else if (saved_weight_of(s, v) != NULL) {
			ok = key_error(sv, "a second weight for '%s'", v);
		} else {
			if (s->nweights == 0)
				s->weight_line = sv->line;
			s->weights = sl_xreallocarray(
			    s->weights, s->nweights + 1, sizeof *s->weights);
			s->weights[s->nweights].version = sl_xstrdup(v);
			s->weights[s->nweights++].weight = w;
			s->touched = true;
		}
	} else if (strcmp(name, "server") == 0) {
		size_t k;

		rest = split_word(v);
		rest2 = rest ? split_word(rest) : NULL;
		for (k = 0; rest2 != NULL && k < 3; k++) {
			if (strcmp(rest2, state_names[k]) == 0)
				break;
		}
		if (rest2 == NULL || k == 3) {
			ok = key_error(sv, "bad server line '%s'", value);
		} else if (saved_server_of(s, v, rest)) {
			ok = key_error(
			    sv, "a second server line for %s %s", v, rest);
		} else {
			s->servers = sl_xreallocarray(
			    s->servers, s->nservers + 1, sizeof *s->servers);
			s->servers[s->nservers].version = sl_xstrdup(v);
			s->servers[s->nservers].addr = sl_xstrdup(rest);
			s->servers[s->nservers++].state =
			    (enum sl_server_state)k;
			s->touched = true;
		}
	} else if (strcmp(name, "lock") == 0 ||
	    strcmp(name, "lock_held") == 0) {
		bool held = strcmp(name, "lock_held") == 0;
		const char *p;
		uint64_t exp = 0;

		/* An owner as a command would take it: anything else (a
		 * ';' reads as a comment) would not read back the same. */
		rest = split_word(v);
		p = rest;
		if (rest == NULL || !sl_conf_valid_owner(v) ||
		    take_uint(&p, STATE_TIME_MAX, &exp) != 0 || *p != '\0' ||
		    exp == 0) {
			ok = key_error(sv, "bad %s '%s'", name, value);
		} else if (held) {
			free(s->held_owner);
			s->held_owner = sl_xstrdup(v);
			s->held_expires = (int64_t)exp;
		} else {
			free(s->lock_owner);
			s->lock_owner = sl_xstrdup(v);
			s->lock_expires = (int64_t)exp;
		}
	} else if (strcmp(name, "rollout") == 0) {
		if (!rollout_line_ok(v)) {
			ok = key_error(sv, "bad rollout '%s'", value);
		} else {
			free(s->rollout);
			s->rollout = sl_xstrdup(v);
			ok = rollout_vs_stable(sv, s);
		}
	} else if (strcmp(name, "guard") == 0) {
		s->guard_line = sv->line;
		ok = parse_guard(sv, s, value);
	} else if (strcmp(name, "guard_baseline") == 0) {
		s->baseline_line = sv->line;
		ok = parse_guard_baseline(sv, s, value);
	} else if (strcmp(name, "guard_latency") == 0) {
		ok = parse_guard_latency(sv, s, value);
	} else {
		ok = key_error(sv, "unknown key '%s'", name);
	}
	free(v);
	return ok;
}

/* Do the guard baseline's smallest and largest latencies lie in its
 * lowest and highest buckets (both 0 when it has none)? */
static bool
latency_stats_fit(const struct saved_svc *s)
{
	const struct sl_hist *h = &s->guard->latency;
	uint64_t min = s->guard_lat[1], max = s->guard_lat[2];

	if (h->count == 0)
		return min == 0 && max == 0;
	return min >= sl_hist_bucket_lo(sl_hist_index(sl_hist_min(h))) &&
	    min <= sl_hist_bucket_hi(sl_hist_index(sl_hist_min(h))) &&
	    max >= sl_hist_bucket_lo(sl_hist_index(sl_hist_max(h))) &&
	    max <= sl_hist_bucket_hi(sl_hist_index(sl_hist_max(h)));
}

/* A service a reload removed: its record goes (weights, server states,
 * lock, guard), so that it starts afresh if a later reload brings it
 * back, as the config has it. Its rollout, live or ended, goes in
 * sl_ctl_rollouts_check, right after the new table is published: a live
 * one is aborted there first, with its event. */
static void
forget_service(struct sl_ctl *ctl, const char *name)
{
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, name);

	rt->touched = false;
	rt->previous_stable[0] = '\0';
	rt->lock_owner[0] = '\0';
	rt->lock_expires = 0;
	rt->held_owner[0] = '\0';
	rt->held_expires = 0;
	sl_ctl_guard_end(ctl, name);
}

/* Apply the saved records to T (unpublished) and CTL's runtime records;
 * *DROPPED counts what could not be: a service's weights and stable
 * version (one of them names a version that is gone, and had weight:
 * then the config's weights and stable apply, together), a previous
 * stable version, a server state. A saved weight of 0% for a removed
 * version is no such loss. A service that lost some stays a changed
 * one: the rest of its record still holds, and the next save records
 * the weights it now has. What runs on the runtime records (rollouts,
 * guards) is checked against T afterwards: sl_ctl_rollouts_check,
 * sl_ctl_guards_check. */
static int
apply_saved(struct sl_ctl *ctl, struct saved *sv, struct sl_route_table *t,
    const char *origin, bool at_start, unsigned *dropped, char **errp)
{
	size_t i, j;

	for (i = 0; i < sv->n; i++) {
		struct saved_svc *s = &sv->svcs[i];
		struct sl_route_service *svc =
		    sl_route_service_by_name(t, s->name);
		struct sl_svc_rt *rt;
		uint32_t sum = 0;
		bool weights_ok = true;
		int idx, stable;

		if (svc == NULL) {
			sl_log_warn("%s: service '%s' is no longer configured; "
			            "its runtime state is dropped",
			    origin, s->name);
			if (!at_start)
				forget_service(ctl, s->name);
			(*dropped)++;
			continue;
		}
		rt = sl_ctl_rt(ctl, s->name);
		rt->touched = s->touched;
		/* What 'switch back' would return to: only a version the
		 * service still has. */
		if (s->previous_stable != NULL &&
		    sl_route_version_index(svc, s->previous_stable) < 0) {
			sl_log_warn("%s: [service:%s]: saved previous_stable "
			            "version '%s' is no longer configured",
			    origin, s->name, s->previous_stable);
			rt->previous_stable[0] = '\0';
			(*dropped)++;
		} else if (s->previous_stable != NULL)
			snprintf(rt->previous_stable,
			    sizeof rt->previous_stable, "%s",
			    s->previous_stable);
		if (s->lock_owner != NULL) {
			snprintf(rt->lock_owner, sizeof rt->lock_owner, "%s",
			    s->lock_owner);
			rt->lock_expires = s->lock_expires;
		}
		if (s->held_owner != NULL) {
			snprintf(rt->held_owner, sizeof rt->held_owner, "%s",
			    s->held_owner);
			rt->held_expires = s->held_expires;
		}
		if (at_start && s->rollout != NULL)
			snprintf(rt->pending_rollout,
			    sizeof rt->pending_rollout, "%s", s->rollout);
		if (s->guard != NULL && !s->guard_baseline) {
			*errp = sl_xasprintf("%s:%d: [service:%s]: a guard "
			                     "line without its guard_baseline",
			    origin, s->guard_line, s->name);
			return -1;
		}
		if (s->guard != NULL && !latency_stats_fit(s)) {
			*errp = sl_xasprintf("%s:%d: [service:%s]: "
			                     "guard_baseline's smallest or "
			                     "largest latency is outside its "
			                     "guard_latency buckets",
			    origin, s->baseline_line, s->name);
			return -1;
		}
		if (at_start && s->guard != NULL) {
			struct sl_hist *h = &s->guard->latency;

			h->sum = s->guard_lat[0];
			h->min_inv = h->count > 0 ? ~s->guard_lat[1] : 0;
			h->max = h->count > 0 ? s->guard_lat[2] : 0;
			h->clamped = s->guard_lat[3];
			free(rt->pending_guard);
			rt->pending_guard = s->guard;
			s->guard = NULL;
		}
		/* A version the config removed is no loss at 0%: the other
		 * weights still sum to 100 and route as they did. One that
		 * carried weight (or a saved stable version that is gone)
		 * leaves no faithful way to keep them. */
		for (j = 0; j < s->nweights; j++) {
			sum += s->weights[j].weight;
			if (s->weights[j].weight > 0 &&
			    sl_route_version_index(svc, s->weights[j].version) <
			        0)
				weights_ok = false;
		}
		if (s->nweights > 0 && sum != SL_WEIGHT_TOTAL) {
			char at[16] = "";

			if (s->weight_line > 0)
				snprintf(at, sizeof at, ":%d", s->weight_line);
			*errp = sl_xasprintf("%s%s: [service:%s]: weights sum "
			                     "to %u.%02u, must be 100.00",
			    origin, at, s->name, sum / 100, sum % 100);
			return -1;
		}
		stable = s->stable == NULL
		    ? -1
		    : sl_route_version_index(svc, s->stable);
		/* Weights and stable version go together: the stable one
		 * shown must be one routed as the weights say. */
		if (s->stable != NULL && stable < 0) {
			sl_log_warn("%s: [service:%s]: saved stable version "
			            "'%s' is no longer configured; using the "
			            "config's stable version and weights",
			    origin, s->name, s->stable);
			(*dropped)++;
		} else if (s->nweights > 0 && !weights_ok) {
			sl_log_warn(
			    "%s: [service:%s]: a version that had "
			    "weight in the saved weights is no longer "
			    "configured; using the config's weights and "
			    "stable version",
			    origin, s->name);
			(*dropped)++;
		} else {
			if (s->nweights > 0) {
				for (j = 0; j < svc->nversions; j++)
					svc->versions[j].weight = 0;
			}
			for (j = 0; j < s->nweights; j++) {
				idx = sl_route_version_index(
				    svc, s->weights[j].version);
				if (idx >= 0)
					svc->versions[idx].weight =
					    s->weights[j].weight;
			}
			if (stable >= 0)
				svc->stable = (size_t)stable;
		}
		for (j = 0; j < s->nservers; j++) {
			struct sl_route_version *v;
			size_t k;
			bool found = false;

			idx =
			    sl_route_version_index(svc, s->servers[j].version);
			v = idx < 0 ? NULL : &svc->versions[idx];
			for (k = 0; v != NULL && k < v->nservers; k++) {
				if (strcmp(v->servers[k].addr.text,
				        s->servers[j].addr) == 0) {
					v->servers[k].state =
					    s->servers[j].state;
					found = true;
				}
			}
			/* A server the config dropped starts afresh (ready)
			 * if it comes back: the file must not keep its old
			 * state for the next restart to bring back. */
			if (!found && s->servers[j].state != SL_SERVER_READY) {
				sl_log_warn("%s: [service:%s]: server %s of "
				            "'%s' is no longer configured; its "
				            "state '%s' is dropped",
				    origin, s->name, s->servers[j].addr,
				    s->servers[j].version,
				    state_names[s->servers[j].state]);
				(*dropped)++;
			}
		}
		sl_route_layout(svc);
	}
	return 0;
}

/*
 * Before the first load: the state file's directory exists (made if
 * missing) and can be written, or the operator learns now, not at the
 * first refused change; a directory in the file's place is an error.
 * "Can be written" is tried, not asked: access(W_OK) says yes to root on
 * a read-only file system, and to a regular file standing where the
 * directory should be. Saves write PATH.tmp.PID and rename it, so a file
 * made and removed next to PATH is the real test.
 */
int
sl_state_check_path(const char *path, char **errp)
{
	char *copy = sl_xstrdup(path), *probe;
	const char *dir;
	struct stat st;
	int fd, err = 0;

	sl_ctl_make_dirs(path);
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		*errp = sl_xasprintf("state file %s: is a directory; set "
		                     "state_file to a file's path",
		    path);
		free(copy);
		return -1;
	}
	dir = dirname(copy);
	if (stat(dir, &st) != 0)
		err = errno;
	else if (!S_ISDIR(st.st_mode))
		err = ENOTDIR;
	else {
		probe = sl_xasprintf("%s.check.XXXXXX", path);
		fd = mkostemp(probe, O_CLOEXEC);
		if (fd < 0)
			err = errno;
		else {
			close(fd);
			unlink(probe);
		}
		free(probe);
	}
	if (err == ENOTDIR)
		sl_log_warn("state file %s: its directory %s is not a "
		            "directory (a file stands there or above it): "
		            "runtime changes will be refused until it is one",
		    path, dir);
	else if (err != 0)
		sl_log(SL_LOG_WARN, err,
		    "state file %s: its directory %s cannot be written: "
		    "runtime changes will be refused until it can",
		    path, dir);
	free(copy);
	return 0;
}

/* Load PATH and apply it to T. */
int
sl_state_load(
    struct sl_ctl *ctl, const char *path, struct sl_route_table *t, char **errp)
{
	struct saved sv;
	FILE *f;
	int line, rc;
	unsigned dropped = 0;

	memset(&sv, 0, sizeof sv);
	free(ctl->state_path);
	ctl->state_path = sl_xstrdup(path);
	if (sl_state_check_path(path, errp) != 0)
		return -1;
	f = fopen(path, "r");
	if (f == NULL) {
		/* No file, or none can be there (a file stands where a
		 * directory should: warned about above): no state. */
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		*errp = sl_xasprintf("state file %s: cannot read: %s; fix it, "
		                     "or start with --ignore-state to start "
		                     "from the config alone",
		    path, strerror(errno));
		return -1;
	}
	sv.f = f;
	line = ini_parse_stream(state_reader, &sv, state_key_cb, &sv);
	fclose(f);
	if (line != 0) {
		/* inih reports its first error's line: a key's (ours) or a
		 * syntax error (no handler call) before it. */
		bool ours = sv.err != NULL && sv.err_line == line;

		*errp = sl_xasprintf("state file %s:%d: %s; fix or remove it, "
		                     "or start with --ignore-state to start "
		                     "from the config alone",
		    path, line, ours ? sv.err : "syntax error");
		saved_free(&sv);
		return -1;
	}
	rc = apply_saved(ctl, &sv, t, path, true, &dropped, errp);
	ctl->state_dropped = dropped;
	if (rc != 0) {
		char *e = sl_xasprintf("state file %s; start with "
		                       "--ignore-state to start from the "
		                       "config alone",
		    *errp);

		free(*errp);
		*errp = e;
	} else if (sv.n > 0) {
		sl_log_info("state file %s: restored the runtime state of %zu "
		            "service(s)",
		    path, sv.n);
	}
	saved_free(&sv);
	return rc;
}

/* Capture the runtime state of the current table. */
static void
capture(struct sl_ctl *ctl, const struct sl_route_table *cur, struct saved *sv)
{
	size_t i, j, k;

	memset(sv, 0, sizeof *sv);
	for (i = 0; i < cur->nservices; i++) {
		const struct sl_route_service *svc = &cur->services[i];
		struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc->name);
		struct saved_svc *s;

		if (!rt->touched && rt->lock_owner[0] == '\0' &&
		    rt->previous_stable[0] == '\0' && rt->run == NULL &&
		    rt->guard == NULL)
			continue;
		s = saved_svc(sv, svc->name);
		s->touched = rt->touched;
		if (rt->previous_stable[0] != '\0')
			s->previous_stable = sl_xstrdup(rt->previous_stable);
		if (rt->lock_owner[0] != '\0') {
			s->lock_owner = sl_xstrdup(rt->lock_owner);
			s->lock_expires = rt->lock_expires;
		}
		if (rt->held_owner[0] != '\0') {
			s->held_owner = sl_xstrdup(rt->held_owner);
			s->held_expires = rt->held_expires;
		}
		if (rt->run != NULL)
			s->rollout = sl_xstrdup(
			    sl_ctl_rollout_state_line(ctl, svc->name));
		s->guard = sl_xmalloc(sizeof *s->guard);
		s->guard_baseline = true;
		if (!sl_ctl_guard_capture(ctl, svc->name, s->guard)) {
			free(s->guard);
			s->guard = NULL;
		}
		if (!rt->touched)
			continue;
		s->stable = sl_xstrdup(svc->versions[svc->stable].name);
		s->weights = sl_xcalloc(svc->nversions, sizeof *s->weights);
		for (j = 0; j < svc->nversions; j++) {
			const struct sl_route_version *v = &svc->versions[j];

			s->weights[s->nweights].version = sl_xstrdup(v->name);
			s->weights[s->nweights++].weight = v->weight;
			for (k = 0; k < v->nservers; k++) {
				if (v->servers[k].state == SL_SERVER_READY)
					continue;
				s->servers = sl_xreallocarray(s->servers,
				    s->nservers + 1, sizeof *s->servers);
				s->servers[s->nservers].version =
				    sl_xstrdup(v->name);
				s->servers[s->nservers].addr =
				    sl_xstrdup(v->servers[k].addr.text);
				s->servers[s->nservers++].state =
				    v->servers[k].state;
			}
		}
	}
}

/* Resume the rollouts and guards read from the state file. */
void
sl_state_restore_runs(struct sl_ctl *ctl)
{
	unsigned changed = 0;
	char *err = NULL;
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		struct sl_svc_rt *rt = ctl->rt[i];
		char c[64], b[64], st[16];
		unsigned step, windows;
		long long started, ended;
		int end;

		if (rt->pending_guard != NULL) {
			sl_ctl_guard_restore(ctl, rt->name, rt->pending_guard);
			free(rt->pending_guard);
			rt->pending_guard = NULL;
			changed++;
		}
		if (rt->pending_rollout[0] == '\0')
			continue;
		windows = 0;
		end = 0;
		if (sscanf(rt->pending_rollout,
		        "%63s %63s %15s %u %lld %lld %u%n", c, b, st, &step,
		        &started, &ended, &windows, &end) >= 6)
			sl_ctl_rollout_restore(ctl, rt->name, c, b, st, step,
			    started, ended, windows,
			    end > 0 && rt->pending_rollout[end] == ' '
			        ? rt->pending_rollout + end + 1
			        : "");
		rt->pending_rollout[0] = '\0';
		changed++;
	}
	/* A rollout that could not come back (its version is gone) must
	 * not stay in the file, nor its lock on the service; nor a guard
	 * that ended; and one that did has begun a window more, which the
	 * next restart must not reuse; nor what the config no longer has
	 * (state_dropped): the file says what runs. */
	if ((changed > 0 || ctl->state_dropped > 0) &&
	    sl_state_save(ctl, sl_route_current(), &err) != 0) {
		sl_log_error("%s", err);
		free(err);
	}
}

/* Carry the runtime state of the current table over to T (reload). */
unsigned
sl_state_carry(struct sl_ctl *ctl, struct sl_route_table *t)
{
	struct saved sv;
	char *err = NULL;
	unsigned dropped = 0;

	capture(ctl, sl_route_current(), &sv);
	if (apply_saved(ctl, &sv, t, "reload", false, &dropped, &err) != 0) {
		sl_log_error("%s", err);
		free(err);
	}
	saved_free(&sv);
	return dropped;
}

/* fsync the directory holding PATH, so the rename is durable. */
static int
sync_dir(const char *path)
{
	char *copy = sl_xstrdup(path);
	int fd, rc = 0;

	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* The guard lines of G, each well under inih's 200 bytes. */
static void
write_guard(FILE *f, const struct sl_guard_saved *g)
{
	size_t i, len = 0;

	fprintf(f, "guard = %s %s %lld %lld %u\n", g->version, g->previous,
	    (long long)g->started, (long long)g->until, g->segment);
	fprintf(f, "guard_baseline = %llu %llu %llu %llu %llu %llu",
	    (unsigned long long)g->requests, (unsigned long long)g->errors,
	    (unsigned long long)sl_hist_sum(&g->latency),
	    (unsigned long long)sl_hist_min(&g->latency),
	    (unsigned long long)sl_hist_max(&g->latency),
	    (unsigned long long)sl_hist_clamped(&g->latency));
	/* Only when there are any: a sluice from before it reads the line
	 * it knows. */
	if (g->unanswered > 0)
		fprintf(f, " %llu", (unsigned long long)g->unanswered);
	fputc('\n', f);
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		if (g->latency.counts[i] == 0)
			continue;
		if (len == 0)
			len = (size_t)fprintf(f, "guard_latency =");
		len += (size_t)fprintf(f, " %zu:%llu", i,
		    (unsigned long long)g->latency.counts[i]);
		if (len > 150) {
			fputc('\n', f);
			len = 0;
		}
	}
	if (len > 0)
		fputc('\n', f);
}

/* Write the runtime state of T atomically. */
int
sl_state_save(struct sl_ctl *ctl, const struct sl_route_table *t, char **errp)
{
	struct saved sv;
	char *tmp;
	FILE *f;
	size_t i, j;
	int err = 0, fd;

	if (ctl->state_path == NULL)
		return 0;
	if (ctl->passive) {
		*errp = sl_xasprintf("state file %s not written: pid %ld has "
		                     "taken over from this sluice (--takeover)",
		    ctl->state_path, ctl->handover_pid);
		return -1;
	}
	capture(ctl, t, &sv);
	tmp = sl_xasprintf("%s.tmp.%d", ctl->state_path, (int)getpid());
	/* Never writable by others, whatever the umask: whoever can write
	 * it routes the traffic after the next restart. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL && fd >= 0) {
		err = errno; /* what fdopen said, not close */
		close(fd);
		errno = err;
		err = 0;
	}
	if (f == NULL) {
		*errp = sl_xasprintf(
		    "cannot write state file %s: %s", tmp, strerror(errno));
		free(tmp);
		saved_free(&sv);
		return -1;
	}
	fprintf(f,
	    "; sluice runtime state, rewritten on every change.\n"
	    "; Services listed here use these values instead of the "
	    "config's.\n; Start sluice with --ignore-state to ignore "
	    "this file.\n");
	for (i = 0; i < sv.n; i++) {
		struct saved_svc *s = &sv.svcs[i];

		fprintf(f, "\n[service:%s]\n", s->name);
		if (s->stable != NULL)
			fprintf(f, "stable = %s\n", s->stable);
		if (s->previous_stable != NULL)
			fprintf(
			    f, "previous_stable = %s\n", s->previous_stable);
		for (j = 0; j < s->nweights; j++)
			fprintf(f, "weight = %s %u.%02u\n",
			    s->weights[j].version, s->weights[j].weight / 100,
			    s->weights[j].weight % 100);
		for (j = 0; j < s->nservers; j++)
			fprintf(f, "server = %s %s %s\n", s->servers[j].version,
			    s->servers[j].addr,
			    state_names[s->servers[j].state]);
		if (s->lock_owner != NULL)
			fprintf(f, "lock = %s %lld\n", s->lock_owner,
			    (long long)s->lock_expires);
		if (s->held_owner != NULL)
			fprintf(f, "lock_held = %s %lld\n", s->held_owner,
			    (long long)s->held_expires);
		if (s->rollout != NULL)
			fprintf(f, "rollout = %s\n", s->rollout);
		if (s->guard != NULL)
			write_guard(f, s->guard);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		err = errno;
	if (fclose(f) != 0 && err == 0)
		err = errno;
	if (err == 0 && rename(tmp, ctl->state_path) != 0)
		err = errno;
	if (err != 0) {
		*errp = sl_xasprintf("cannot write state file %s: %s",
		    ctl->state_path, strerror(err));
		unlink(tmp);
		free(tmp);
		saved_free(&sv);
		return -1;
	}
	if (sync_dir(ctl->state_path) != 0)
		sl_log(SL_LOG_WARN, errno,
		    "state file %s: cannot sync its "
		    "directory",
		    ctl->state_path);
	if (ctl->state_unsaved)
		sl_log_info("state file %s: written again, with what runs",
		    ctl->state_path);
	ctl->state_unsaved = false;
	free(tmp);
	saved_free(&sv);
	return 0;
}

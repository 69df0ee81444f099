/*
 * commands.c — the control commands (control/PROTOCOL.md).
 *
 * One table lists every command: its words, argument usage and count, its
 * access level and its handler; "help", usage errors and the read-only
 * socket's refusals are all generated from it (HAProxy's cli keywords are
 * the model). A handler returns the reply's fields as a JSON object, or
 * NULL with *errp set; it changes nothing when it fails.
 *
 * A change builds a new routing table (sl_route_clone), writes the state
 * file, then publishes the table: when the reply is sent every worker's
 * next request uses it. If the state file cannot be written the change is
 * not made.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"
#include "proxy/upstream.h"

#define MAX_ARGS 64

struct cmd_ctx {
	struct sl_ctl *ctl;
	struct sl_who *who;
	const char *text; /* the command, without any "as OWNER" prefix */
};

typedef json_t *(*cmd_fn)(struct cmd_ctx *, int, char **, char **);

struct cmd {
	const char *words;
	const char *args;
	int min_args, max_args;
	bool write;
	cmd_fn fn;
	const char *help;
};

static const struct cmd commands[];

static const char *server_states[] = {"ready", "drain", "maint"};

/* Weight in hundredths as a JSON percentage. */
static json_t *
pct(uint32_t w)
{
	return json_real(w / 100.0);
}

/* The lock of RT as JSON (null when none or expired). */
static json_t *
lock_json(const struct sl_svc_rt *rt)
{
	int64_t now = (int64_t)time(NULL);
	json_t *o;

	if (rt == NULL || rt->lock_owner[0] == '\0' || rt->lock_expires <= now)
		return json_null();
	o = json_pack("{s:s,s:s,s:I}", "owner", rt->lock_owner, "expires",
	    sl_ctl_isotime(rt->lock_expires), "expires_in",
	    (json_int_t)(rt->lock_expires - now));
	/* A rollout holds it: the lock its starter had, set aside until the
	 * rollout ends, still decides who may steer the rollout. */
	if (rt->held_owner[0] != '\0' && rt->held_expires > now)
		json_object_set_new(o, "set_aside",
		    json_pack("{s:s,s:s,s:I}", "owner", rt->held_owner,
		        "expires", sl_ctl_isotime(rt->held_expires),
		        "expires_in", (json_int_t)(rt->held_expires - now)));
	return o;
}

void
sl_ctl_server_ejection(const struct sl_ctl *ctl, uint32_t id, uint64_t *until,
    uint8_t *reason, uint64_t *total)
{
	unsigned i;

	*until = 0;
	*reason = 0;
	*total = 0;
	for (i = 0; i < ctl->nworkers; i++) {
		const struct sl_pool *p;
		uint64_t u;

		if (id >= SL_MAX_SERVER_IDS ||
		    (p = ctl->workers[i]->pools[id]) == NULL)
			continue;
		*total += __atomic_load_n(&p->ejected_total, __ATOMIC_RELAXED);
		/* Acquire: the reason stored before it is the one read. */
		u = __atomic_load_n(&p->ejected_until, __ATOMIC_ACQUIRE);
		if (u > *until) {
			*until = u;
			*reason =
			    __atomic_load_n(&p->eject_reason, __ATOMIC_RELAXED);
		}
	}
}

/* Passive ejection of server ID, as JSON fields (into O) while it lasts. */
static void
server_ejection_json(struct sl_ctl *ctl, uint32_t id, json_t *o)
{
	uint64_t until, total, now_mono;
	uint8_t reason;

	sl_ctl_server_ejection(ctl, id, &until, &reason, &total);
	now_mono = sl_ctl_mono_ms();
	if (until > now_mono) {
		json_object_set_new(
		    o, "ejected_for", json_real((until - now_mono) / 1000.0));
		json_object_set_new(o, "ejected_until",
		    json_string(sl_ctl_isotime((int64_t)time(NULL) +
		        (int64_t)((until - now_mono) / 1000))));
		json_object_set_new(o, "ejected_because",
		    json_string(sl_eject_reason_names[reason]));
	}
}

/* A service as JSON: summary, or detail with hosts, sticky and servers. */
json_t *
sl_ctl_service_json(
    struct sl_ctl *ctl, const struct sl_route_service *svc, bool detail)
{
	const struct sl_service_conf *sc = svc->conf;
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc->name);
	json_t *o = json_object(), *vs = json_array();
	size_t i, j;

	json_object_set_new(o, "name", json_string(svc->name));
	json_object_set_new(
	    o, "stable", json_string(svc->versions[svc->stable].name));
	json_object_set_new(o, "previous_stable",
	    rt->previous_stable[0] ? json_string(rt->previous_stable)
	                           : json_null());
	for (i = 0; i < svc->nversions; i++) {
		const struct sl_route_version *v = &svc->versions[i];
		json_t *vo = json_pack(
		    "{s:s,s:o}", "name", v->name, "weight", pct(v->weight));

		if (detail) {
			json_t *ss = json_array();

			json_object_set_new(
			    vo, "stable", json_boolean(i == svc->stable));
			for (j = 0; j < v->nservers; j++) {
				json_t *so =
				    json_pack("{s:s,s:i,s:s}", "address",
				        v->servers[j].addr.text, "weight",
				        (int)v->servers[j].weight, "state",
				        server_states[v->servers[j].state]);

				sl_health_json(
				    ctl, svc->name, v->servers[j].id, so);
				server_ejection_json(ctl, v->servers[j].id, so);
				json_array_append_new(ss, so);
			}
			json_object_set_new(vo, "servers", ss);
		}
		json_array_append_new(vs, vo);
	}
	json_object_set_new(o, "versions", vs);
	json_object_set_new(o, "lock", lock_json(rt));
	json_object_set_new(
	    o, "rollout", sl_ctl_rollout_json(ctl, svc->name, false));
	json_object_set_new(o, "runtime_changes", json_boolean(rt->touched));
	json_object_set_new(o, "guard", sl_ctl_guard_json(ctl, svc->name));
	if (detail) {
		json_t *hosts = json_array(), *keys = json_array();

		for (i = 0; i < sc->nhosts; i++)
			json_array_append_new(hosts, json_string(sc->hosts[i]));
		for (i = 0; i < sc->nkeys; i++) {
			static const char *src[] = {
			    "header", "cookie", "query", "ip"};

			if (sc->keys[i].source == SL_KEY_IP)
				json_array_append_new(keys, json_string("ip"));
			else
				json_array_append_new(keys,
				    json_sprintf("%s:%s",
				        src[sc->keys[i].source],
				        sc->keys[i].name));
		}
		json_object_set_new(o, "hosts", hosts);
		json_object_set_new(
		    o, "path_prefix", json_string(sc->path_prefix));
		json_object_set_new(o, "sticky", keys);
		json_object_set_new(o, "seed", json_string(sc->seed));
	}
	return o;
}

/* The service named NAME in the current table, or an error. */
static struct sl_route_service *
find_service(const char *name, char **errp)
{
	struct sl_route_service *svc =
	    sl_route_service_by_name(sl_route_current(), name);

	if (svc == NULL)
		*errp = sl_xasprintf("unknown service '%s'", name);
	return svc;
}

/* The refusal for touching SVC while its rollout holds it (heap). */
static char *
held_by_rollout(const char *svc)
{
	return sl_xasprintf("service '%s' is locked by 'rollout', its running "
	                    "rollout; use rollout pause, abort or promote %s",
	    svc, svc);
}

/* Refuse when SVC is locked by someone other than the caller. */
static int
check_lock(struct cmd_ctx *cx, const char *svc, char **errp)
{
	struct sl_svc_rt *rt = sl_ctl_rt(cx->ctl, svc);
	int64_t now = (int64_t)time(NULL);

	if (rt->lock_owner[0] == '\0' || rt->lock_expires <= now ||
	    strcmp(rt->lock_owner, cx->who->owner) == 0)
		return 0;
	if (strcmp(rt->lock_owner, SL_ROLLOUT_OWNER) == 0 &&
	    sl_ctl_rollout_running(rt)) {
		*errp = held_by_rollout(svc);
		return -1;
	}
	*errp = sl_ctl_locked_error(svc, rt->lock_owner, rt->lock_expires, now);
	return -1;
}

char *
sl_ctl_locked_error(
    const char *svc, const char *owner, int64_t until, int64_t now)
{
	return sl_xasprintf("service '%s' is locked by '%s' until %s (%lld s "
	                    "left); act as that owner or wait",
	    svc, owner, sl_ctl_isotime(until), (long long)(until - now));
}

/* Make a change: save the state, publish T, record the event (none when
 * BEFORE and AFTER say nothing changed, unless ALWAYS: they tell all a
 * command changes). */
static int
commit_as(struct cmd_ctx *cx, struct sl_route_table *t, const char *svc,
    json_t *before, json_t *after, bool always, char **errp)
{
	struct sl_svc_rt *rt = sl_ctl_rt(cx->ctl, svc);
	bool was = rt->touched;

	rt->touched = true;
	if (sl_state_save(cx->ctl, t, errp) != 0) {
		rt->touched = was;
		sl_route_free(t);
		json_decref(before);
		json_decref(after);
		return -1;
	}
	sl_ctl_publish(cx->ctl, t);
	if (!always && json_equal(before, after)) {
		json_decref(before);
		json_decref(after);
		return 0;
	}
	sl_event(cx->ctl, cx->who, cx->text, before, after);
	return 0;
}

static int
commit(struct cmd_ctx *cx, struct sl_route_table *t, const char *svc,
    json_t *before, json_t *after, char **errp)
{
	return commit_as(cx, t, svc, before, after, false, errp);
}

/* {"weights": {...}, "stable": ...} of a service. */
static json_t *
weights_json(const struct sl_route_service *svc)
{
	json_t *w = json_object();
	size_t i;

	for (i = 0; i < svc->nversions; i++)
		json_object_set_new(
		    w, svc->versions[i].name, pct(svc->versions[i].weight));
	return json_pack("{s:o,s:s}", "weights", w, "stable",
	    svc->versions[svc->stable].name);
}

/* Publish the current table to every worker. */
void
sl_ctl_publish(struct sl_ctl *ctl, struct sl_route_table *t)
{
	sl_workers_prepare_table(ctl->workers, ctl->nworkers, t);
	sl_route_publish(t);
}

/* Do the words of command C start with ARGV[0..ARGC)? */
static bool
words_start_with(const struct cmd *c, int argc, char **argv)
{
	const char *p = c->words;
	size_t n;
	int i;

	for (i = 0; i < argc; i++) {
		n = strcspn(p, " ");
		if (n == 0 || strlen(argv[i]) != n ||
		    strncmp(p, argv[i], n) != 0)
			return false;
		p += n;
		p += *p == ' ';
	}
	return true;
}

/* `help [COMMAND]`: every command, or those whose words start with
 * COMMAND's ("help rollout", "help set weights"). */
static json_t *
cmd_help(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	json_t *list = json_array();
	const struct cmd *c;
	char *usage;

	for (c = commands; c->words != NULL; c++) {
		if (!words_start_with(c, argc, argv))
			continue;
		usage = sl_xasprintf(
		    "%s%s%s", c->words, c->args[0] ? " " : "", c->args);
		json_array_append_new(list,
		    json_pack("{s:s,s:s,s:s}", "usage", usage, "help", c->help,
		        "access", c->write ? "write" : "read"));
		free(usage);
	}
	if (json_array_size(list) == 0) {
		char *words = sl_xstrdup(argv[0]), *more;
		int i;

		for (i = 1; i < argc; i++) {
			more = sl_xasprintf("%s %s", words, argv[i]);
			free(words);
			words = more;
		}
		*errp = sl_xasprintf(
		    "no command starts with '%s'; try 'help'", words);
		free(words);
		json_decref(list);
		return NULL;
	}
	return json_pack("{s:o}", "commands", list);
}

static json_t *
cmd_show_services(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	const struct sl_route_table *t = sl_route_current();
	json_t *list = json_array();
	size_t i;

	for (i = 0; i < t->nservices; i++)
		json_array_append_new(
		    list, sl_ctl_service_json(cx->ctl, &t->services[i], false));
	/* The pid says which sluice answers: after a takeover, the new one
	 * once its control socket has replaced the old one's. */
	return json_pack(
	    "{s:I,s:o}", "pid", (json_int_t)getpid(), "services", list);
}

static json_t *
cmd_show_service(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);

	if (svc == NULL)
		return NULL;
	return json_pack(
	    "{s:o}", "service", sl_ctl_service_json(cx->ctl, svc, true));
}

/* Parse a positive integer argument within [1, MAX]. */
static int
parse_count(const char *s, long max, long *out, const char *what, char **errp)
{
	char *end;
	long v;

	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > max) {
		*errp = sl_xasprintf("%s must be an integer from 1 to %ld, "
		                     "not '%s'",
		    what, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static json_t *
cmd_show_stats(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	json_t *doc, *svc, *out;
	long seconds = 0;

	if (argc > 1 &&
	    parse_count(argv[1], SL_WINDOW_SLOTS, &seconds, "SECONDS", errp) !=
	        0)
		return NULL;
	doc = sl_ctl_stats_json(cx->ctl, argv[0], (uint32_t)seconds, errp);
	if (doc == NULL)
		return NULL;
	svc = json_object_get(json_object_get(doc, "services"), argv[0]);
	out = json_pack("{s:s,s:O,s:O,s:O}", "service", argv[0],
	    "window_seconds", json_object_get(doc, "window_seconds"),
	    "uptime_seconds", json_object_get(doc, "uptime_seconds"),
	    "versions", json_object_get(svc, "versions"));
	json_decref(doc);
	return out;
}

static json_t *
cmd_show_events(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	long n = 20;

	if (argc > 0 && parse_count(argv[0], SL_EVENTS_MAX, &n, "N", errp) != 0)
		return NULL;
	return json_pack(
	    "{s:o}", "events", sl_events_recent(cx->ctl, (size_t)n));
}

static json_t *
cmd_set_weights(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	uint32_t weights[256], sum = 0;
	bool seen[256] = {false};
	struct sl_route_table *t;
	json_t *before;
	size_t i;
	int k;

	if (svc == NULL || check_lock(cx, svc->name, errp) != 0)
		return NULL;
	if (svc->nversions > 256) {
		*errp = sl_xstrdup("too many versions");
		return NULL;
	}
	memset(weights, 0, sizeof weights);
	for (k = 1; k < argc; k++) {
		char *eq = strchr(argv[k], '=');
		const char *why;
		int idx;

		if (eq == NULL) {
			*errp =
			    sl_xasprintf("'%s' is not VERSION=PCT", argv[k]);
			return NULL;
		}
		*eq = '\0';
		idx = sl_route_version_index(svc, argv[k]);
		if (idx < 0) {
			*errp = sl_xasprintf("service '%s' has no version '%s'",
			    svc->name, argv[k]);
			return NULL;
		}
		if (seen[idx]) {
			*errp =
			    sl_xasprintf("version '%s' given twice", argv[k]);
			return NULL;
		}
		if (sl_conf_parse_weight(eq + 1, &weights[idx], &why) != 0) {
			*errp = sl_xasprintf(
			    "weight '%s' for '%s': %s", eq + 1, argv[k], why);
			return NULL;
		}
		seen[idx] = true;
		sum += weights[idx];
	}
	if (sum != SL_WEIGHT_TOTAL) {
		*errp = sl_xasprintf("weights sum to %u.%02u, must be 100.00",
		    sum / 100, sum % 100);
		return NULL;
	}
	before = weights_json(svc);
	t = sl_route_with_weights(sl_route_current(),
	    (size_t)(svc - sl_route_current()->services), weights, svc->stable,
	    errp);
	if (t == NULL) {
		json_decref(before);
		return NULL;
	}
	svc = sl_route_service_by_name(t, argv[0]);
	if (commit(cx, t, svc->name, before, weights_json(svc), errp) != 0)
		return NULL;
	svc = sl_route_service_by_name(sl_route_current(), argv[0]);
	{
		json_t *w = json_object();

		for (i = 0; i < svc->nversions; i++)
			json_object_set_new(w, svc->versions[i].name,
			    pct(svc->versions[i].weight));
		return json_pack(
		    "{s:s,s:o}", "service", svc->name, "weights", w);
	}
}

static json_t *
cmd_switch(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	struct sl_svc_rt *rt;
	uint32_t weights[256];
	struct sl_route_table *t;
	char prev[64];
	json_t *before, *after, *was;
	bool changed;
	int idx;

	if (svc == NULL || check_lock(cx, svc->name, errp) != 0)
		return NULL;
	rt = sl_ctl_rt(cx->ctl, svc->name);
	idx = sl_route_version_index(svc, argv[1]);
	if (idx < 0 && strcmp(argv[1], "previous") == 0) {
		if (rt->previous_stable[0] == '\0') {
			*errp = sl_xasprintf("service '%s' has no previous "
			                     "stable version yet",
			    svc->name);
			return NULL;
		}
		idx = sl_route_version_index(svc, rt->previous_stable);
	}
	if (idx < 0) {
		*errp = sl_xasprintf(
		    "service '%s' has no version '%s'", svc->name, argv[1]);
		return NULL;
	}
	if (svc->nversions > 256) {
		*errp = sl_xstrdup("too many versions");
		return NULL;
	}
	memset(weights, 0, sizeof weights);
	weights[idx] = SL_WEIGHT_TOTAL;
	snprintf(prev, sizeof prev, "%s", svc->versions[svc->stable].name);
	before = weights_json(svc);
	t = sl_route_with_weights(sl_route_current(),
	    (size_t)(svc - sl_route_current()->services), weights, (size_t)idx,
	    errp);
	if (t == NULL) {
		json_decref(before);
		return NULL;
	}
	/* What it cut, for the reply: switching back to the stable version
	 * takes a canary's share too. */
	was = json_deep_copy(before);
	after = weights_json(sl_route_service_by_name(t, argv[0]));
	changed = !json_equal(before, after);
	if ((size_t)idx != svc->stable) {
		char keep[64];

		memcpy(keep, rt->previous_stable, sizeof keep);
		memcpy(rt->previous_stable, prev, sizeof prev);
		if (commit(cx, t, argv[0], before, after, errp) != 0) {
			memcpy(rt->previous_stable, keep, sizeof keep);
			json_decref(was);
			return NULL;
		}
	} else if (commit(cx, t, argv[0], before, after, errp) != 0) {
		json_decref(was);
		return NULL;
	}
	svc = sl_route_service_by_name(sl_route_current(), argv[0]);
	if (strcmp(prev, svc->versions[svc->stable].name) != 0)
		sl_ctl_guard_start(
		    cx->ctl, svc, prev, svc->versions[svc->stable].name);
	return json_pack("{s:s,s:s,s:o,s:b,s:o}", "service", svc->name,
	    "stable", svc->versions[svc->stable].name, "previous_stable",
	    rt->previous_stable[0] ? json_string(rt->previous_stable)
	                           : json_null(),
	    "changed", changed, "was", was);
}

static json_t *
cmd_set_server(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	struct sl_route_version *v;
	struct sl_route_table *t;
	size_t k, si;
	int idx, state = -1;

	if (svc == NULL || check_lock(cx, svc->name, errp) != 0)
		return NULL;
	idx = sl_route_version_index(svc, argv[1]);
	if (idx < 0) {
		*errp = sl_xasprintf(
		    "service '%s' has no version '%s'", svc->name, argv[1]);
		return NULL;
	}
	for (k = 0; k < 3; k++) {
		if (strcmp(argv[3], server_states[k]) == 0)
			state = (int)k;
	}
	if (state < 0) {
		*errp = sl_xasprintf("state must be ready, drain or maint, not "
		                     "'%s'",
		    argv[3]);
		return NULL;
	}
	v = &svc->versions[idx];
	for (si = 0; si < v->nservers; si++) {
		if (strcmp(v->servers[si].addr.text, argv[2]) == 0)
			break;
	}
	if (si == v->nservers) {
		*errp =
		    sl_xasprintf("version '%s/%s' has no server '%s' (servers "
		                 "are named as in the config)",
		        svc->name, v->name, argv[2]);
		return NULL;
	}
	t = sl_route_clone(sl_route_current());
	svc = sl_route_service_by_name(t, argv[0]);
	svc->versions[idx].servers[si].state = (enum sl_server_state)state;
	if (commit(cx, t, argv[0],
	        json_pack(
	            "{s:s}", "state", server_states[v->servers[si].state]),
	        json_pack("{s:s}", "state", server_states[state]), errp) != 0)
		return NULL;
	return json_pack("{s:s,s:s,s:s,s:s}", "service", argv[0], "version",
	    argv[1], "server", argv[2], "state", server_states[state]);
}

/* Save the state after a lock change; undo RT on failure. */
static int
save_lock(struct cmd_ctx *cx, struct sl_svc_rt *rt,
    const struct sl_svc_rt *undo, char **errp)
{
	if (sl_state_save(cx->ctl, sl_route_current(), errp) != 0) {
		*rt = *undo;
		return -1;
	}
	return 0;
}

static json_t *
cmd_lock(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	struct sl_svc_rt *rt, undo;
	long ttl;

	if (svc == NULL)
		return NULL;
	if (!sl_conf_valid_owner(argv[1])) {
		*errp = sl_xasprintf("invalid owner '%s' (1-63 of "
		                     "A-Za-z0-9_.@:-)",
		    argv[1]);
		return NULL;
	}
	if (strcmp(argv[1], SL_ROLLOUT_OWNER) == 0) {
		*errp = sl_xstrdup("owner 'rollout' is sluice's own (a running "
		                   "rollout's); lock under another name");
		return NULL;
	}
	if (parse_count(argv[2], 7 * 24 * 3600, &ttl, "TTL_SECONDS", errp) != 0)
		return NULL;
	rt = sl_ctl_rt(cx->ctl, svc->name);
	if (rt->lock_owner[0] != '\0' && rt->lock_expires > time(NULL) &&
	    strcmp(rt->lock_owner, argv[1]) != 0) {
		*errp = sl_xasprintf("service '%s' is already locked by '%s' "
		                     "until %s",
		    svc->name, rt->lock_owner,
		    sl_ctl_isotime(rt->lock_expires));
		return NULL;
	}
	undo = *rt;
	snprintf(rt->lock_owner, sizeof rt->lock_owner, "%s", argv[1]);
	rt->lock_expires = (int64_t)time(NULL) + ttl;
	if (save_lock(cx, rt, &undo, errp) != 0)
		return NULL;
	sl_event(cx->ctl, cx->who, cx->text, lock_json(&undo), lock_json(rt));
	return json_pack(
	    "{s:s,s:o}", "service", svc->name, "lock", lock_json(rt));
}

static json_t *
cmd_unlock(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	struct sl_svc_rt *rt, undo;

	if (svc == NULL)
		return NULL;
	rt = sl_ctl_rt(cx->ctl, svc->name);
	if (rt->lock_owner[0] == '\0' || rt->lock_expires <= time(NULL)) {
		*errp = sl_xasprintf("service '%s' is not locked", svc->name);
		return NULL;
	}
	/* A lock a rollout set aside is released like any other: naming
	 * its owner (it would come back when the rollout ends). */
	if (strcmp(rt->lock_owner, argv[1]) != 0 && rt->held_owner[0] != '\0' &&
	    rt->held_expires > time(NULL) &&
	    strcmp(rt->held_owner, argv[1]) == 0) {
		undo = *rt;
		rt->held_owner[0] = '\0';
		rt->held_expires = 0;
		if (save_lock(cx, rt, &undo, errp) != 0)
			return NULL;
		sl_event(cx->ctl, cx->who, cx->text, lock_json(&undo),
		    lock_json(rt));
		return json_pack(
		    "{s:s,s:o}", "service", svc->name, "lock", lock_json(rt));
	}
	if (strcmp(rt->lock_owner, argv[1]) != 0) {
		*errp = sl_xasprintf("service '%s' is locked by '%s', not '%s'",
		    svc->name, rt->lock_owner, argv[1]);
		return NULL;
	}
	/* The rollout's lock goes with the rollout (a stale one, left by a
	 * rollout that is over, may be removed). */
	if (strcmp(argv[1], SL_ROLLOUT_OWNER) == 0 &&
	    sl_ctl_rollout_running(rt)) {
		*errp = held_by_rollout(svc->name);
		return NULL;
	}
	undo = *rt;
	rt->lock_owner[0] = '\0';
	rt->lock_expires = 0;
	if (save_lock(cx, rt, &undo, errp) != 0)
		return NULL;
	sl_event(cx->ctl, cx->who, cx->text, lock_json(&undo), json_null());
	return json_pack("{s:s,s:n}", "service", svc->name, "lock");
}

static json_t *
cmd_reset(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	struct sl_route_service *svc = find_service(argv[0], errp);
	const struct sl_service_conf *sc;
	struct sl_route_table *t;
	struct sl_svc_rt *rt;
	json_t *before;
	size_t i, j;

	if (svc == NULL || check_lock(cx, svc->name, errp) != 0)
		return NULL;
	rt = sl_ctl_rt(cx->ctl, svc->name);
	/* Nothing to drop: answered, but no event (as a set weights that
	 * changes nothing). */
	if (!rt->touched && rt->previous_stable[0] == '\0')
		return json_pack("{s:s,s:o}", "service", svc->name,
		    "service_state", sl_ctl_service_json(cx->ctl, svc, false));
	sc = svc->conf;
	before = weights_json(svc);
	t = sl_route_clone(sl_route_current());
	svc = sl_route_service_by_name(t, argv[0]);
	for (i = 0; i < svc->nversions; i++) {
		svc->versions[i].weight = sc->versions[i].weight;
		for (j = 0; j < svc->versions[i].nservers; j++)
			svc->versions[i].servers[j].state = SL_SERVER_READY;
		if (strcmp(sc->versions[i].name, sc->stable) == 0)
			svc->stable = i;
	}
	sl_route_layout(svc);
	/* Server states and the previous stable version go too: an event,
	 * even with the weights as they were. */
	if (commit_as(
	        cx, t, svc->name, before, weights_json(svc), true, errp) != 0)
		return NULL;
	rt->touched = false;
	rt->previous_stable[0] = '\0';
	if (sl_state_save(cx->ctl, sl_route_current(), errp) != 0)
		return NULL;
	return json_pack("{s:s,s:o}", "service", argv[0], "service_state",
	    sl_ctl_service_json(cx->ctl,
	        sl_route_service_by_name(sl_route_current(), argv[0]), false));
}

/* The rollout commands: "rollout VERB SVC [VERSION]" and "show rollout". */
static json_t *
rollout_cmd(
    struct cmd_ctx *cx, const char *verb, int argc, char **argv, char **errp)
{
	return sl_ctl_rollout_cmd(cx->ctl, cx->who, cx->text, verb, argv[0],
	    argc > 1 ? argv[1] : NULL, errp);
}

static json_t *
cmd_rollout_start(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	return rollout_cmd(cx, "start", argc, argv, errp);
}

static json_t *
cmd_rollout_pause(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	return rollout_cmd(cx, "pause", argc, argv, errp);
}

static json_t *
cmd_rollout_resume(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	return rollout_cmd(cx, "resume", argc, argv, errp);
}

static json_t *
cmd_rollout_abort(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	return rollout_cmd(cx, "abort", argc, argv, errp);
}

static json_t *
cmd_rollout_promote(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	return rollout_cmd(cx, "promote", argc, argv, errp);
}

/* With the service's lock: who may steer the rollout (its own, and the
 * starter's set aside under it). */
static json_t *
cmd_show_rollout(struct cmd_ctx *cx, int argc, char **argv, char **errp)
{
	json_t *r = rollout_cmd(cx, "show", argc, argv, errp);

	if (r != NULL)
		json_object_set_new(
		    r, "lock", lock_json(sl_ctl_rt(cx->ctl, argv[0])));
	return r;
}

static const struct cmd commands[] = {
    {"help", "[COMMAND]", 0, MAX_ARGS - 1, false, cmd_help,
        "list the commands (those whose words start with COMMAND's)"},
    {"show services", "", 0, 0, false, cmd_show_services,
        "every service with its versions, weights, lock and rollout"},
    {"show service", "SVC", 1, 1, false, cmd_show_service,
        "one service in detail, with servers and their states"},
    {"show stats", "SVC [SECONDS]", 1, 2, false, cmd_show_stats,
        "per-version numbers since start, or over the last SECONDS (1-600)"},
    {"show events", "[N]", 0, 1, false, cmd_show_events,
        "the last N changes (default 20, at most 1000)"},
    {"set weights", "SVC VERSION=PCT [VERSION=PCT ...]", 2, MAX_ARGS - 3, true,
        cmd_set_weights,
        "set version weights (sum 100; versions not named get 0)"},
    {"switch", "SVC VERSION", 2, 2, true, cmd_switch,
        "blue/green cut-over: VERSION gets 100% and becomes stable "
        "('previous' names the previous stable)"},
    {"set server", "SVC VERSION HOST:PORT ready|drain|maint", 4, 4, true,
        cmd_set_server, "take a server in or out of rotation"},
    {"rollout start", "SVC VERSION", 2, 2, true, cmd_rollout_start,
        "start growing VERSION as a canary through [rollout:SVC]'s steps, "
        "judged by the analyzer"},
    {"rollout pause", "SVC", 1, 1, true, cmd_rollout_pause,
        "hold the rollout at its step (no verdicts, no moves)"},
    {"rollout resume", "SVC", 1, 1, true, cmd_rollout_resume,
        "continue a paused rollout with a fresh analysis window"},
    {"rollout abort", "SVC", 1, 1, true, cmd_rollout_abort,
        "stop the rollout: the canary goes back to 0%"},
    {"rollout promote", "SVC", 1, 1, true, cmd_rollout_promote,
        "end the rollout now: the canary becomes stable at 100%"},
    {"show rollout", "SVC", 1, 1, false, cmd_show_rollout,
        "the rollout's state, step and recent verdicts with evidence"},
    {"lock", "SVC OWNER TTL_SECONDS", 3, 3, true, cmd_lock,
        "lock a service: only OWNER may change it until the TTL ends"},
    {"unlock", "SVC OWNER", 2, 2, true, cmd_unlock, "release OWNER's lock"},
    {"reset", "SVC", 1, 1, true, cmd_reset,
        "drop runtime changes: back to the config's weights, stable and "
        "servers"},
    {NULL, NULL, 0, 0, false, NULL, NULL},
};

json_t *
sl_ctl_error_reply(const char *msg)
{
	json_t *r = json_pack("{s:b,s:s}", "ok", 0, "error", msg);

	if (r == NULL)
		r = json_pack("{s:b,s:s}", "ok", 0, "error",
		    "invalid characters in the command");
	return r;
}

/* Does the line hold only printable characters and tabs? */
static const char *
check_chars(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == 0)
			return "NUL byte in command";
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "control character in command";
		if (c >= 0x80)
			return "non-ASCII byte in command (names are ASCII)";
	}
	return NULL;
}

/* Parse and run one command line. */
json_t *
sl_ctl_dispatch(struct sl_ctl *ctl, struct sl_who *who, bool read_only,
    const char *line, size_t len)
{
	const struct cmd *c, *best = NULL;
	char *copy, *argv[MAX_ARGS], *p, *err = NULL, *text;
	const char *bad;
	struct cmd_ctx cx;
	json_t *reply;
	int argc = 0, nwords, best_words = 0, i;

	if ((bad = check_chars(line, len)) != NULL)
		return sl_ctl_error_reply(bad);
	copy = sl_xstrndup(line, len);
	for (p = strtok(copy, " \t"); p != NULL; p = strtok(NULL, " \t")) {
		if (argc == MAX_ARGS) {
			free(copy);
			return sl_ctl_error_reply("too many words in command");
		}
		argv[argc++] = p;
	}
	if (argc == 0) {
		free(copy);
		return sl_ctl_error_reply("empty command; try 'help'");
	}
	i = 0;
	if (strcmp(argv[0], "as") == 0) {
		if (argc < 3 || !sl_conf_valid_owner(argv[1])) {
			free(copy);
			return sl_ctl_error_reply(
			    "usage: as OWNER COMMAND... (OWNER: "
			    "1-63 of A-Za-z0-9_.@:-)");
		}
		if (strcmp(argv[1], SL_ROLLOUT_OWNER) == 0) {
			free(copy);
			return sl_ctl_error_reply(
			    "owner 'rollout' is sluice's own: a "
			    "running rollout holds its service "
			    "with it; use rollout pause, abort or "
			    "promote");
		}
		snprintf(who->owner, sizeof who->owner, "%s", argv[1]);
		i = 2;
	}
	/* The longest command whose words start the line. */
	for (c = commands; c->words != NULL; c++) {
		char words[64], *w, *save;
		int k = i;

		snprintf(words, sizeof words, "%s", c->words);
		nwords = 0;
		for (w = strtok_r(words, " ", &save); w != NULL;
		     w = strtok_r(NULL, " ", &save), k++, nwords++) {
			if (k >= argc || strcmp(argv[k], w) != 0)
				break;
		}
		if (w == NULL && nwords > best_words) {
			best = c;
			best_words = nwords;
		}
	}
	if (best == NULL) {
		/* "show nothing": name what follows "show". */
		char next[256] = "", *msg;
		size_t wlen = strlen(argv[i]), off = 0;

		for (c = commands; c->words != NULL; c++) {
			const char *rest;

			if (strncmp(c->words, argv[i], wlen) != 0 ||
			    c->words[wlen] != ' ')
				continue;
			rest = c->words + wlen + 1;
			if (off + strlen(rest) + 3 >= sizeof next)
				continue;
			off += (size_t)snprintf(next + off, sizeof next - off,
			    "%s%s", off ? ", " : "", rest);
		}
		if (off > 0 && i + 1 < argc)
			msg = sl_xasprintf(
			    "unknown command '%s %s': '%s' is "
			    "followed by one of: %s; try 'help %s'",
			    argv[i], argv[i + 1], argv[i], next, argv[i]);
		else if (off > 0)
			msg =
			    sl_xasprintf("'%s' is followed by one of: %s; try "
			                 "'help %s'",
			        argv[i], next, argv[i]);
		else
			msg = sl_xasprintf(
			    "unknown command '%s'; try 'help'", argv[i]);
		reply = sl_ctl_error_reply(msg);
		free(msg);
		free(copy);
		return reply;
	}
	i += best_words;
	if (argc - i < best->min_args || argc - i > best->max_args) {
		char *msg = sl_xasprintf("usage: %s%s%s", best->words,
		    best->args[0] ? " " : "", best->args);

		reply = sl_ctl_error_reply(msg);
		free(msg);
		free(copy);
		return reply;
	}
	if (best->write && ctl->passive) {
		char *msg = sl_xasprintf("'%s' refused: pid %ld is taking "
		                         "over from this sluice (--takeover); "
		                         "send commands to it",
		    best->words, ctl->handover_pid);

		reply = sl_ctl_error_reply(msg);
		free(msg);
		free(copy);
		return reply;
	}
	if (best->write && read_only) {
		char *msg = sl_xasprintf("'%s' changes state: use the "
		                         "read-write control socket",
		    best->words);

		reply = sl_ctl_error_reply(msg);
		free(msg);
		free(copy);
		return reply;
	}
	/* The command text for events: without the "as OWNER" prefix. */
	text = sl_xstrndup(line, len);
	if (strncmp(text, "as ", 3) == 0) {
		p = text + 3;
		while (*p == ' ' || *p == '\t')
			p++;
		p += strcspn(p, " \t");
		while (*p == ' ' || *p == '\t')
			p++;
		memmove(text, p, strlen(p) + 1);
	}
	cx.ctl = ctl;
	cx.who = who;
	cx.text = text;
	reply = best->fn(&cx, argc - i, argv + i, &err);
	if (reply == NULL) {
		reply = sl_ctl_error_reply(err ? err : "command failed");
		free(err);
	} else {
		json_t *fields = reply;

		reply = json_pack("{s:b}", "ok", 1);
		json_object_update(reply, fields);
		json_decref(fields);
	}
	free(text);
	free(copy);
	return reply;
}

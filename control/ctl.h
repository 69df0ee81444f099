/*
 * ctl.h — the control thread's state: everything slow or shared lives here
 * (DESIGN.md "Architecture"). It runs on its own event_base in the main
 * thread: signals, reload, per-second harvesting of the workers' counters
 * into time windows, the admin HTTP endpoint and, later, the control
 * socket and the analyzer.
 */
#ifndef SL_CTL_H
#define SL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "analysis/stats.h"
#include "analysis/window.h"
#include "conf/log.h"
#include "proxy/worker.h"

struct event;
struct evconnlistener;
struct event_base;
struct evbuffer;
struct sl_admin;
struct sl_route_table;
struct sl_route_service;
struct sl_config;
struct sockaddr;
struct sl_rollout;
struct sl_rollout_run;
struct sl_health;
struct sl_guard;

#define SL_EVENTS_MAX 1000

/* Who issued a command: the peer's credentials and the claimed owner. */
struct sl_who {
	long uid, pid; /* -1 when not from a socket peer */
	char owner[64];
};

/*
 * What sluice keeps about a service besides its routing table: whether an
 * operator changed it at runtime (then the state file holds its weights,
 * stable version and server states, and they win over the config), the
 * previous stable version (for "switch SVC PREVIOUS"), and its lock.
 */
struct sl_svc_rt {
	char name[64];
	bool touched;
	char previous_stable[64];
	char lock_owner[64];  /* "" = unlocked */
	int64_t lock_expires; /* wall-clock seconds */
	/* The lock its starter held when a rollout took the service's lock:
	 * given back when the rollout ends, if it has not expired. */
	char held_owner[64];
	int64_t held_expires;
	struct sl_rollout_run *run; /* the latest rollout, live or ended */
	char pending_rollout[512];  /* from the state file, until restored */
	struct sl_guard_saved *pending_guard; /* the same, for the guard */
	struct sl_guard *guard;      /* blue/green guard after a switch */
	uint64_t guard_switch_backs; /* by the guard, since start */
};

struct sl_ctl_socket;

/* The owner a running rollout holds its service's lock as: sluice's own,
 * never taken by "as OWNER". */
#define SL_ROLLOUT_OWNER "rollout"

/* Is a rollout of RT's service running (or paused)? */
bool sl_ctl_rollout_running(const struct sl_svc_rt *rt);

/* A running (or paused) rollout holds its service's lock for as long as
 * it lives: this takes it back (setting aside a lock someone else holds,
 * as a start does) and renews it. False when RT has no such rollout. */
bool sl_ctl_rollout_hold(struct sl_svc_rt *rt);

struct sl_ctl {
	struct event_base *base;
	const char *config_path;
	struct sl_worker **workers;
	unsigned nworkers;
	int64_t started; /* wall-clock seconds */

	/* Time series per (service, version) id, harvested every second. */
	struct sl_series *series[SL_MAX_VERSION_IDS];
	struct event *harvest_ev;
	/* The last harvest: a window ends there and the current partial
	 * second runs from it. */
	int64_t harvest_sec; /* wall-clock seconds */
	uint64_t harvest_ms; /* sl_ctl_mono_ms() */
	/* Per server id, what the harvest last saw of passive ejection (to
	 * record each ejection and its end as an event): the ejections
	 * summed over workers, and whether one was under way. */
	uint64_t *eject_seen;
	bool *eject_out;

	struct sl_admin *admin;

	/* Runtime state per service, persisted to state_path. */
	struct sl_svc_rt **rt; /* each allocated alone: pointers stay valid */
	size_t nrt;
	char *state_path;       /* owned: configs come and go with reloads */
	unsigned state_dropped; /* saved state the config had no room for */
	/* What runs was published without being saved (a revert or a
	 * switch-back while the file could not be written): saving is tried
	 * again every second until it works. */
	bool state_unsaved;

	/* Recent events, oldest first from events_next. */
	json_t *events[SL_EVENTS_MAX];
	size_t events_next, nevents;
	FILE *event_log;
	char *event_log_path;               /* NULL: none */
	struct sl_log_limit event_log_fail; /* its write errors, logged */

	/* Control sockets (read-write and read-only). */
	bool takeover; /* --takeover: replace a running sluice's socket */
	/* A new sluice started with --takeover is taking over from this one
	 * ("takeover begin" on the control socket, from handover_client):
	 * meanwhile this one is passive, making no decisions (analyzer,
	 * guard, lock expiry) and writing no state file, so that one process
	 * alone decides. If that client goes before "takeover done", the new
	 * sluice failed to start and this one decides again; after it, the
	 * client is forgotten (NULL) and this one stays passive. */
	bool passive;
	long handover_pid;
	void *handover_client;
	struct sl_ctl_socket *socks[2];
	size_t nsocks;
	/* Control clients closed for holding a slot idle (control_line_
	 * timeout, control_idle_timeout), and refused for want of one. */
	uint64_t ctl_timeouts, ctl_refused;
	struct event *lock_ev; /* expires locks */

	/* Active health checkers, one per checked server. */
	struct sl_health **health;
	size_t nhealth;
	/* --takeover: what the old sluice knew of its servers' health
	 * (sl_health_export's array), for the first sync; then NULL. */
	json_t *health_seed;
};

/* Start the per-second harvest on CTL's base (after workers exist). */
int sl_ctl_metrics_start(struct sl_ctl *ctl);
void sl_ctl_metrics_stop(struct sl_ctl *ctl);

/* Harvest every version's totals into its series (also run by the timer). */
void sl_ctl_harvest(struct sl_ctl *ctl);

/* Forget the version ids no table, rollout or guard uses any more: their
 * counters in every worker, their series, their names (once a second,
 * after the retired tables are reclaimed). */
void sl_ctl_reclaim_versions(struct sl_ctl *ctl);

/* Mark in USED the version ids RUN reads (rollouts.c, guard.c). */
void sl_ctl_rollout_mark_ids(const struct sl_rollout_run *run, uint8_t *used);
void sl_guard_mark_id(const struct sl_guard *g, uint8_t *used);

/* Live cumulative totals of version ID, summed over the workers. */
void sl_ctl_version_total(
    const struct sl_ctl *ctl, uint32_t id, struct sl_vstats *out);

/* Live worker counters, summed. */
void sl_ctl_worker_total(const struct sl_ctl *ctl, struct sl_wstats *out);

/*
 * The /stats document for SERVICE (NULL: all services) over the last
 * SECONDS seconds (0: since start). Returns a new JSON object, or NULL with
 * *errp set (unknown service, bad window).
 */
json_t *sl_ctl_stats_json(
    struct sl_ctl *ctl, const char *service, uint32_t seconds, char **errp);

/* JSON for one version's numbers (used by /stats and the control socket). */
json_t *sl_ctl_version_json(
    const struct sl_vstats *v, double seconds, double weight_pct);

/* Append the Prometheus text exposition to OUT. */
void sl_ctl_metrics_text(struct sl_ctl *ctl, struct evbuffer *out);

/*
 * A control-thread listener that pauses 100 ms when accept fails for want
 * of descriptors (control/listen.c), instead of spinning. It must be the
 * first member of the struct the listener's callbacks get as argument.
 */
struct sl_accept_guard {
	struct evconnlistener *listener;
	struct event *resume;
	const char *what; /* for the log: "admin", "control socket" */
	struct sl_log_limit log_limit;
};
#define SL_ACCEPT_GUARD_FIRST(type, member)                                    \
	_Static_assert(offsetof(type, member) == 0,                            \
	    #member " must come first: the listener's argument")
int sl_accept_guard_init(struct sl_accept_guard *g, struct event_base *base,
    struct evconnlistener *l, const char *what);
void sl_accept_guard_free(struct sl_accept_guard *g);

/* Admin HTTP endpoint (/metrics /stats /healthz): start and stop. */
int sl_admin_start(
    struct sl_ctl *ctl, const struct sockaddr *addr, int addrlen, char **errp);
void sl_admin_stop(struct sl_ctl *ctl);
/* Stop taking admin connections (those open are answered): a sluice
 * taken over leaves the port to the new one, whose counters scrapers
 * follow. */
void sl_admin_close(struct sl_ctl *ctl);
/* Admin connections closed for the next one (too many open) and for a
 * head not whole in time, since start. */
void sl_admin_counts(
    const struct sl_ctl *ctl, uint64_t *evicted, uint64_t *slow);

/* --- runtime state (control/state.c) --- */

/* The runtime record of service NAME, created when absent. */
struct sl_svc_rt *sl_ctl_rt(struct sl_ctl *ctl, const char *name);

/*
 * Load the state file at PATH and apply it to T (a table not yet
 * published). A missing file is an empty state. Returns 0, or -1 with
 * *errp naming the file, the line and the problem (unreadable or corrupt
 * file: sluice must not start and silently undo an operator's decisions).
 * What could not be applied (unknown service or version) is logged.
 */
int sl_state_load(struct sl_ctl *ctl, const char *path,
    struct sl_route_table *t, char **errp);

/* Make the state file's directories; warn when they cannot be written;
 * -1 with *ERRP when a directory stands where the file goes. */
int sl_state_check_path(const char *path, char **errp);

/* Resume the rollouts and guards the state file held (after the first
 * publish). */
void sl_state_restore_runs(struct sl_ctl *ctl);

/* Create the directories PATH lives in (/run/sluice, /var/lib/sluice),
 * as mkdir -p does; a failure is logged (what then fails says why). */
void sl_ctl_make_dirs(const char *path);

/* Re-apply the runtime state of the current table to T (reload).
 * Returns how many services fell back to the config's weights or stable
 * version because theirs is gone (the state file must then be rewritten
 * once T is published, or a restart would bring them back). */
unsigned sl_state_carry(struct sl_ctl *ctl, struct sl_route_table *t);

/*
 * Write the runtime state of T to the state file: temp file, fsync,
 * rename, fsync of the directory. Returns 0 or -1 with *errp.
 */
int sl_state_save(
    struct sl_ctl *ctl, const struct sl_route_table *t, char **errp);

/* --- events (control/events.c) --- */

/* Open the event log (NULL: none). */
int sl_events_open(struct sl_ctl *ctl, const char *path, char **errp);
void sl_events_close(struct sl_ctl *ctl);
/* Open the event log's path again (SIGUSR1, after logrotate moved it);
 * on failure the old file is kept and the error logged. */
void sl_events_reopen(struct sl_ctl *ctl);

/* The refusal of a command on SVC, locked by OWNER until UNTIL (heap). */
char *sl_ctl_locked_error(
    const char *svc, const char *owner, int64_t until, int64_t now);

/* {"ok":false,"error":MSG} (never NULL: a message jansson refuses is
 * replaced). */
json_t *sl_ctl_error_reply(const char *msg);

/* The control socket's takeover handshake ("takeover begin|health|done"), for
 * client CLIENT: the reply. */
json_t *sl_ctl_takeover_cmd(struct sl_ctl *ctl, void *client,
    const struct sl_who *who, bool read_only, const char *verb);

/* CLIENT is gone: if it was taking over and had not finished, this
 * sluice decides again. */
void sl_ctl_takeover_gone(struct sl_ctl *ctl, void *client);

/* --takeover, the new sluice's side, before it reads the state file:
 * "takeover begin" to the sluice on control socket PATH. Returns the
 * connection to keep until sl_takeover_done, with the old sluice's *PID
 * and what it knew of its servers' health (*HEALTH, for health_seed; NULL
 * from a sluice that does not tell); -1 when nothing listens there or it
 * predates the handshake (*errp NULL: start anyway), or when it refused, did
 * not answer within 10 s, or had no client slot free for 10 s (*errp says why:
 * do not start). */
int sl_takeover_begin(
    const char *path, long *pid, json_t **health, char **errp);

/* Up and serving: "takeover done" on FD, then close it. */
void sl_takeover_done(int fd, long pid);

/* S as a JSON string, bytes of it that are not UTF-8 (a file name's, say)
 * written as \xNN. */
json_t *sl_json_text(const char *s);

/* Record an event; steals the references to BEFORE and AFTER (may be
 * NULL). WHO NULL means sluice itself. */
void sl_event(struct sl_ctl *ctl, const struct sl_who *who, const char *command,
    json_t *before, json_t *after);

/* The last N events, oldest first (new reference). */
json_t *sl_events_recent(struct sl_ctl *ctl, size_t n);

/* --- commands and sockets (control/commands.c, control/socket.c) --- */

/*
 * Run one command line from WHO; READ_ONLY refuses mutating commands.
 * Returns the reply object (new reference, with "ok").
 */
json_t *sl_ctl_dispatch(struct sl_ctl *ctl, struct sl_who *who, bool read_only,
    const char *line, size_t len);

/* Open the control sockets configured in CONF. */
int sl_ctl_sockets_start(
    struct sl_ctl *ctl, const struct sl_config *conf, char **errp);
void sl_ctl_sockets_stop(struct sl_ctl *ctl);

/* --takeover, once up: the control sockets, bound beside the running
 * sluice's, take over their paths. */
void sl_ctl_sockets_commit(struct sl_ctl *ctl);

/* Publish T (built by a command) and make it current for every worker. */
void sl_ctl_publish(struct sl_ctl *ctl, struct sl_route_table *t);

/*
 * Passive ejection of server ID as the workers see it (relaxed loads):
 * the latest "ejected until" over the workers (monotonic ms, 0 for never)
 * with its enum sl_eject_reason, and the ejections ever, summed.
 */
void sl_ctl_server_ejection(const struct sl_ctl *ctl, uint32_t id,
    uint64_t *until, uint8_t *reason, uint64_t *total);

/* JSON for a service (summary, or with hosts/servers when DETAIL). */
json_t *sl_ctl_service_json(
    struct sl_ctl *ctl, const struct sl_route_service *svc, bool detail);

/* --- active health checks (control/health.c) --- */

/* Start, keep or drop checkers to match T's services and servers. */
void sl_health_sync(struct sl_ctl *ctl, const struct sl_route_table *t);

/* Copy what the checkers know into T's servers (unpublished table). */
void sl_health_apply(struct sl_ctl *ctl, struct sl_route_table *t);

void sl_health_stop(struct sl_ctl *ctl);

/* What the checkers know, for a sluice taking over ("takeover begin"):
 * [{"service","version","server","health":"up"|"down","why"}], servers
 * checked at least once only. */
json_t *sl_health_export(struct sl_ctl *ctl);

/* Record passive ejections (and their ends) of T's servers as events. */
void sl_health_watch_ejections(
    struct sl_ctl *ctl, const struct sl_route_table *t);

/* "health" (up, down, unchecked) and the last failure of server ID, as
 * SERVICE's checks see it. */
void sl_health_json(
    struct sl_ctl *ctl, const char *service, uint32_t id, json_t *o);

/* --- blue/green guard (control/guard.c) --- */

/* After a switch of SVC from PREVIOUS to VERSION: watch it for the
 * service's guard period (no-op when guard is off). */
void sl_ctl_guard_start(struct sl_ctl *ctl, const struct sl_route_service *svc,
    const char *previous, const char *version);
void sl_ctl_guard_end(struct sl_ctl *ctl, const char *svc);
json_t *sl_ctl_guard_json(struct sl_ctl *ctl, const char *svc);

/* The guard metric families (sluice_guard_state, sluice_guard_switch_backs
 * _total) in Prometheus text format. */
void sl_ctl_guard_metrics(struct sl_ctl *ctl, struct evbuffer *out);

/* A watching guard as the state file keeps it (about 20 KiB). */
struct sl_guard_saved {
	char version[64];       /* the new stable */
	char previous[64];      /* the one switched away from */
	int64_t started, until; /* wall-clock seconds */
	/* The baseline: the previous stable before the switch. */
	uint64_t requests, errors;
	uint64_t unanswered; /* 0 in a file from before session 20 */
	struct sl_hist latency;
	/* Windows begun before (each spent a share of the budget). */
	uint32_t segment;
};

/* Fill OUT from SVC's guard; false unless one is watching. */
bool sl_ctl_guard_capture(
    struct sl_ctl *ctl, const char *svc, struct sl_guard_saved *out);

/* Resume SVC's guard from SAVED (after the first publish): until the
 * same end, against the same baseline, with a fresh window for the new
 * version. Not when the period is over, the guard is off in the config,
 * a version is gone, or the guarded version is not the stable one or is
 * routed at 0% (logged). */
void sl_ctl_guard_restore(
    struct sl_ctl *ctl, const char *svc, const struct sl_guard_saved *saved);

/* After a reload: end the watching guards that can no longer watch (as
 * a restart would not resume them), each with an event; returns how many
 * ended (the state file must then be saved). */
unsigned sl_ctl_guards_check(struct sl_ctl *ctl);

/* --- rollouts (control/rollouts.c) --- */

/* "rollout start|pause|resume|abort|promote" and "show rollout". */
json_t *sl_ctl_rollout_cmd(struct sl_ctl *ctl, const struct sl_who *who,
    const char *text, const char *verb, const char *svc, const char *version,
    char **errp);

/* The rollout of a service as JSON (null when none). */
json_t *sl_ctl_rollout_json(struct sl_ctl *ctl, const char *svc, bool full);

/* Restore a rollout saved in the state file (start-up); WINDOWS: the
 * analysis windows it had begun (0 when the file predates them); REASON:
 * why an ended one ended ("" when the file predates it). */
void sl_ctl_rollout_restore(struct sl_ctl *ctl, const char *svc,
    const char *canary, const char *baseline, const char *state, uint32_t step,
    int64_t started, int64_t ended, uint32_t windows, const char *reason);

/* After a reload: abort rollouts whose versions are gone, or that are no
 * longer routed at their step's weight against their baseline as stable
 * (as a restart does), and drop the rollout records of removed services;
 * returns how many it aborted (the state file must then be saved). */
unsigned sl_ctl_rollouts_check(struct sl_ctl *ctl);

/* Stop every rollout timer and free the rollouts (shutdown). */
void sl_ctl_rollouts_stop(struct sl_ctl *ctl);

/* Append the rollout metric families to OUT. */
void sl_ctl_rollout_metrics(struct sl_ctl *ctl, struct evbuffer *out);

/* State-file line of a rollout ("" when none); static buffer. */
const char *sl_ctl_rollout_state_line(struct sl_ctl *ctl, const char *svc);

/* ISO 8601 UTC time for wall-clock seconds (static buffer). */
const char *sl_ctl_isotime(int64_t sec);

/* CLOCK_MONOTONIC in milliseconds (rollout steps, warm-ups, ejections). */
uint64_t sl_ctl_mono_ms(void);

#endif

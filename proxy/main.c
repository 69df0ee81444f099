/*
 * main.c — the sluice daemon: command line, config, workers, signals.
 *
 * The main thread is the control thread: it owns its own event_base, the
 * signal handlers, table reclamation and (in later parts) the control
 * socket, admin endpoint and analyzer. Workers serve traffic.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/alog.h"
#include "proxy/climit.h"
#include "proxy/mem.h"
#include "proxy/route.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

#define SL_DEFAULT_CONFIG "/etc/sluice/sluice.ini"
#define SL_DRAIN_MS       10000

/* Session ticket key rotation (control thread). */
static struct event *ev_tickets;
static uint32_t ticket_rotation_ms;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sluice [-t] [-c FILE] [-d] [-V] [--ignore-state] "
	    "[--takeover]\n"
	    "  -c FILE  configuration file (default " SL_DEFAULT_CONFIG ")\n"
	    "  -t       check the configuration and exit (0 ok, 1 errors)\n"
	    "  -d       debug logging\n"
	    "  -V       print the version and exit\n"
	    "  -h       this help\n"
	    "  --ignore-state  start from the config alone, ignoring the "
	    "state file\n"
	    "                  (it is overwritten at the next change)\n"
	    "  --takeover      zero-downtime upgrade: start beside a running "
	    "sluice,\n"
	    "                  sharing its ports, and take over its control "
	    "socket\n");
}

/* Number of workers: configured, else one per online core. */
static unsigned
worker_count(const struct sl_config *conf)
{
	long n;

	if (conf->global.workers > 0)
		return (unsigned)conf->global.workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* SIGTERM/SIGINT: leave the control loop; main() drains the workers. */
static void
stop_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct sl_ctl *d = arg;

	sl_log_info("signal %d: stopping (draining up to %u ms)", (int)sig,
	    sl_route_current()->conf->global.drain_timeout_ms);
	event_base_loopbreak(d->base);
}

/* Rotate the session ticket keys every tls_ticket_rotation. */
static void
tickets_cb(evutil_socket_t fd, short what, void *arg)
{
	sl_tls_rotate_ticket_keys();
	sl_log_debug("TLS: session ticket keys rotated");
}

/* (Re)arm the ticket rotation timer for MS, if it changed. */
static void
tickets_schedule(uint32_t ms)
{
	struct timeval tv;

	if (ms == ticket_rotation_ms)
		return;
	ticket_rotation_ms = ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_del(ev_tickets);
	event_add(ev_tickets, &tv);
}

/* Did a SIGTERM or SIGINT come while sluice started? What came is
 * handled now (a SIGHUP too: a reload), without waiting. */
static bool
stopped_while_starting(struct sl_ctl *d)
{
	int i;

	/* A signal's callback may run a turn after its wake-up. */
	for (i = 0; i < 2; i++) {
		event_base_loop(d->base, EVLOOP_NONBLOCK);
		if (event_base_got_break(d->base))
			return true;
	}
	return false;
}

/* SIGUSR1 (logrotate's postrotate, as for nginx): reopen the event log
 * and the access log. sluice's own log is stderr, which whoever started
 * it owns. */
static void
reopen_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	sl_events_reopen(arg);
	if (sl_alog_fd < 0)
		return;
	if (sl_alog_reopen() != 0)
		sl_log(SL_LOG_ERROR, errno,
		    "SIGUSR1: cannot reopen the access log %s, still writing "
		    "to the one open",
		    sl_alog_path());
	else
		sl_log_info("SIGUSR1: access log %s reopened", sl_alog_path());
}

/* A refused reload: logged, and recorded as an event with the reason. */
static void
reload_refused(struct sl_ctl *d, const char *err)
{
	const char *p = err, *nl;

	/* One log line per error, each complete (log lines are events). */
	for (;;) {
		nl = strchr(p, '\n');
		sl_log_error("reload refused, keeping the running config and "
		             "certificates: %.*s",
		    (int)(nl != NULL ? nl - p : (ptrdiff_t)strlen(p)), p);
		if (nl == NULL || nl[1] == '\0')
			break;
		p = nl + 1;
	}
	sl_event(d, NULL, "reload refused", NULL,
	    json_pack("{s:o,s:o}", "config", sl_json_text(d->config_path),
	        "error", sl_json_text(err)));
}

/* The [sluice] keys a reload does not apply, as the process started with
 * them (what runs, whatever reloads said since). */
static struct sl_global_conf started;

static char *
dup_or_null(const char *s)
{
	return s != NULL ? sl_xstrdup(s) : NULL;
}

/* Copies: the config they come from is freed after a reload. */
static void
keep_started(const struct sl_global_conf *g)
{
	started.workers = g->workers;
	started.control_mode = g->control_mode;
	started.control_socket = dup_or_null(g->control_socket);
	started.control_socket_ro = dup_or_null(g->control_socket_ro);
	started.control_group = dup_or_null(g->control_group);
	started.event_log = dup_or_null(g->event_log);
	started.access_log = dup_or_null(g->access_log);
	started.admin_text = dup_or_null(g->admin_text);
}

static void
free_started(void)
{
	free(started.control_socket);
	free(started.control_socket_ro);
	free(started.control_group);
	free(started.event_log);
	free(started.access_log);
	free(started.admin_text);
	memset(&started, 0, sizeof started);
}

/* Keys of [sluice] a reload does not apply: say so, not nothing. */
static void
warn_restart_only(
    const struct sl_global_conf *old, const struct sl_global_conf *new)
{
	const struct {
		const char *key, *was, *now;
	} keys[] = {
	    {"control_socket", old->control_socket, new->control_socket},
	    {"control_socket_ro", old->control_socket_ro,
	        new->control_socket_ro},
	    {"control_group", old->control_group, new->control_group},
	    {"event_log", old->event_log, new->event_log},
	    {"access_log", old->access_log, new->access_log},
	    {"admin", old->admin_text, new->admin_text},
	};
	size_t i;

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = keys[i].was ? keys[i].was : "";
		const char *b = keys[i].now ? keys[i].now : "";

		if (strcmp(a, b) != 0)
			sl_log_warn("reload: %s changed to '%s'; it takes "
			            "effect when sluice restarts ('%s' until "
			            "then)",
			    keys[i].key, b, a);
	}
	if (old->control_mode != new->control_mode)
		sl_log_warn("reload: control_mode changed to %04o; it takes "
		            "effect when sluice restarts (%04o until then)",
		    (unsigned)new->control_mode, (unsigned)old->control_mode);
	if (old->workers != new->workers) {
		char a[16] = "auto", b[16] = "auto";

		if (old->workers > 0)
			snprintf(a, sizeof a, "%d", old->workers);
		if (new->workers > 0)
			snprintf(b, sizeof b, "%d", new->workers);
		sl_log_warn("reload: workers changed to %s; it takes effect "
		            "when sluice restarts (%s until then)",
		    b, a);
	}
}

/* An override secret a client could guess lets it pick its version:
 * warned of at start and at each reload (a config error would break
 * configs that load today). */
static void
warn_weak_secrets(const struct sl_config *conf)
{
	for (size_t i = 0; i < conf->nservices; i++) {
		const char *secret = conf->services[i].override_secret;

		if (secret != NULL && strlen(secret) < 16)
			sl_log_warn(
			    "[service:%s] override_secret is %zu "
			    "characters: a client that guesses it picks "
			    "its version; use 16 or more random ones",
			    conf->services[i].name, strlen(secret));
	}
}

/*
 * SIGHUP: load the config again (certificates and keys too) and publish a
 * new routing table. Listener changes need a restart; an invalid file or
 * a bad certificate keeps the running config and certificates.
 */
static void
reload_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct sl_ctl *d = arg;
	struct sl_route_table *t;
	struct sl_config *conf;
	char *err = NULL;
	unsigned dropped, ended;

	conf = sl_conf_load(d->config_path, &err);
	if (conf == NULL) {
		reload_refused(d, err);
		free(err);
		return;
	}
	if (sl_tls_prepare(conf, &err) != 0 ||
	    sl_workers_check_tls(d->workers, d->nworkers, conf, &err) != 0) {
		reload_refused(d, err);
		free(err);
		sl_conf_free(conf);
		return;
	}
	t = sl_route_build(conf, &err);
	if (t == NULL) {
		reload_refused(d, err);
		free(err);
		sl_conf_free(conf);
		return;
	}
	if (d->state_path != NULL &&
	    strcmp(conf->global.state_file, d->state_path) != 0)
		sl_log_warn("reload: state_file changed to %s; sluice keeps "
		            "using %s until it restarts",
		    conf->global.state_file, d->state_path);
	warn_restart_only(&started, &conf->global);
	warn_weak_secrets(conf);
	sl_workers_warn_listeners(d->workers, d->nworkers, conf);
	/* Runtime decisions (weights, stable, server states) survive, and
	 * so does what the health checks know. */
	dropped = sl_state_carry(d, t);
	sl_health_sync(d, t);
	sl_health_apply(d, t);
	sl_ctl_publish(d, t);
	/* What the config took away (saved weights, a rollout's version)
	 * goes from the state file too, or a restart would bring it back;
	 * and what runs must agree with what is routed now: a rollout or a
	 * guard that no longer can ends, as a restart would not resume it. */
	ended = 0;
	if (!d->passive) {
		/* A sluice being taken over judges nothing (the new one
		 * does, from the state file). */
		ended = sl_ctl_rollouts_check(d);
		ended += sl_ctl_guards_check(d);
	}
	if ((ended > 0 || dropped > 0) &&
	    sl_state_save(d, sl_route_current(), &err) != 0) {
		sl_log_error("reload: %s", err);
		free(err);
		err = NULL;
	}
	tickets_schedule(conf->global.tls_ticket_rotation_ms);
	sl_event(d, NULL, "reload", NULL,
	    json_pack("{s:o,s:i,s:i}", "config", sl_json_text(d->config_path),
	        "tls_certificates", (int)sl_tls_count_certs(conf),
	        "runtime_state_dropped", (int)dropped));
	/* Listener changes, which wait for a restart, were each warned of
	 * above (sl_workers_warn_listeners). */
	sl_log_info("reloaded %s: %zu services, %zu TLS certificates",
	    d->config_path, conf->nservices, sl_tls_count_certs(conf));
}

/* Where sluice answers, a line each: what an operator checks first. */
static void
log_addresses(const struct sl_config *conf)
{
	const struct sl_global_conf *g = &conf->global;

	for (size_t i = 0; i < conf->nlisteners; i++)
		sl_log_info("listening on %s (%s)%s",
		    conf->listeners[i].bind.text, conf->listeners[i].name,
		    conf->listeners[i].tls_cert != NULL ? ", TLS" : "");
	if (g->has_admin)
		sl_log_info("admin endpoint (/metrics, /stats, /healthz) on %s",
		    g->admin.text);
	sl_log_info("control socket %s%s%s", g->control_socket,
	    g->control_socket_ro != NULL ? ", read-only " : "",
	    g->control_socket_ro != NULL ? g->control_socket_ro : "");
}

/* Every second: free routing tables no worker holds any more, and write
 * the state file if what runs could not be saved. */
static void
reclaim_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_ctl *d = arg;

	sl_route_reclaim(sl_workers_min_epoch(d->workers, d->nworkers));
	sl_ctl_reclaim_versions(d);
	/* A revert published while the file could not be written: the file
	 * catches up as soon as it can be (a restart must not bring the
	 * failing version back). */
	if (d->state_unsaved && !d->passive) {
		char *err = NULL;

		if (sl_state_save(d, sl_route_current(), &err) != 0)
			free(err);
	}
}

/*
 * Raise the soft limit on file descriptors to the hard one (the soft one
 * is often 1024), and warn when max_connections client connections cannot
 * fit even before their origin connections (a request in flight holds
 * two): running out makes accepts fail (each pausing accepting for
 * 100 ms) and requests get 503.
 */
static void
fit_descriptors(const struct sl_global_conf *g)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)g->max_connections + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		sl_log_warn(
		    "max_connections = %u needs at least %llu file "
		    "descriptors (more with requests in flight: a "
		    "client's and an origin's each) but the limit is "
		    "%llu (ulimit -n; LimitNOFILE= for systemd): "
		    "accepts will fail and pause before max_connections "
		    "is reached",
		    g->max_connections, (unsigned long long)need,
		    (unsigned long long)rl.rlim_cur);
}

int
main(int argc, char **argv)
{
	static struct sl_ctl d; /* large: series pointers per version id */
	struct sl_config *conf;
	struct sl_route_table *table;
	struct event *ev_term, *ev_int, *ev_hup, *ev_usr1, *ev_reclaim;
	struct timeval one_second = {1, 0};
	bool check_only = false, ignore_state = false;
	int handover_fd = -1;
	long handover_pid = 0;
	static const struct option longopts[] = {
	    {"ignore-state", no_argument, NULL, 'I'},
	    {"takeover", no_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *err = NULL;
	int ch;

	/* Before anything allocates through libevent. */
	(void)sl_mem_install();
	d.config_path = SL_DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:tdVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			d.config_path = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'd':
			sl_log_set_level(SL_LOG_DEBUG);
			break;
		case 'I':
			ignore_state = true;
			break;
		case 'T':
			d.takeover = true;
			break;
		case 'V':
			printf("sluice %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	if (sl_tls_init() != 0) {
		fprintf(stderr, "sluice: cannot initialise OpenSSL\n");
		return 1;
	}
	conf = sl_conf_load(d.config_path, &err);
	if (conf == NULL || sl_tls_prepare(conf, &err) != 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		sl_conf_free(conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration ok\n", d.config_path);
		sl_conf_free(conf);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	sl_log_nonblocking();
	fit_descriptors(&conf->global);
	/* Buffers come and go with every request (16 KiB read chains). With
	 * glibc's default 128 KiB trim threshold a worker's heap shrinks
	 * after a burst and grows back on the next: sysmalloc and a page
	 * fault per page, 15% of the CPU under load (perf, bench/RESULTS.md).
	 * Keep up to 32 MiB of free heap instead. */
	(void)mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
	/* SIGHUP is caught before anything is bound or written: a client
	 * can connect as soon as a listener is bound, and a SIGHUP sent then
	 * (by a deploy script that waited for the port) killed sluice. One
	 * that comes while sluice starts is a reload once the loop runs.
	 * SIGTERM and SIGINT are caught from before the control socket
	 * answers (below); a --takeover told to stop while it starts does
	 * not take the control socket over, and the running sluice decides
	 * again. */
	d.base = event_base_new();
	if (d.base == NULL)
		sl_fatal(0, "cannot create the control event loop");
	ev_term = evsignal_new(d.base, SIGTERM, stop_signal_cb, &d);
	ev_int = evsignal_new(d.base, SIGINT, stop_signal_cb, &d);
	ev_hup = evsignal_new(d.base, SIGHUP, reload_signal_cb, &d);
	ev_usr1 = evsignal_new(d.base, SIGUSR1, reopen_signal_cb, &d);
	ev_reclaim = event_new(d.base, -1, EV_PERSIST, reclaim_cb, &d);
	ev_tickets = event_new(d.base, -1, EV_PERSIST, tickets_cb, NULL);
	if (ev_term == NULL || ev_int == NULL || ev_hup == NULL ||
	    ev_usr1 == NULL || ev_reclaim == NULL || ev_tickets == NULL)
		sl_fatal(0, "cannot set up signal handling");
	tickets_schedule(conf->global.tls_ticket_rotation_ms);
	event_add(ev_hup, NULL);
	event_add(ev_usr1, NULL);
	event_add(ev_reclaim, &one_second);

	d.nworkers = worker_count(conf);
	table = sl_route_build(conf, &err);
	if (table == NULL)
		sl_fatal(0, "%s", err);
	keep_started(&conf->global);
	warn_weak_secrets(conf);
	/* Before anything is written (state file, sockets). */
	if (!d.takeover && sl_workers_check_binds(conf, &err) != 0)
		sl_fatal(0, "%s", err);
	/* --takeover: the running sluice stops deciding before this one
	 * reads the state file, so what it reads is final. */
	if (d.takeover) {
		handover_fd = sl_takeover_begin(conf->global.control_socket,
		    &handover_pid, &d.health_seed, &err);
		if (handover_fd < 0 && err != NULL)
			sl_fatal(0, "--takeover: %s", err);
	}
	if (ignore_state) {
		if (sl_state_check_path(conf->global.state_file, &err) != 0)
			sl_fatal(0, "%s", err);
		d.state_path = sl_xstrdup(conf->global.state_file);
		sl_log_warn(
		    "--ignore-state: starting from %s alone; state file "
		    "%s will be overwritten at the next change",
		    d.config_path, d.state_path);
	} else if (sl_state_load(&d, conf->global.state_file, table, &err) !=
	    0) {
		sl_fatal(0, "%s", err);
	}
	d.workers = sl_workers_create(conf, d.nworkers, &err);
	if (d.workers == NULL)
		sl_fatal(0, "%s", err);
	sl_workers_prepare_table(d.workers, d.nworkers, table);
	/* What the old sluice knew of its servers' health holds from the
	 * first request on. */
	sl_health_sync(&d, table);
	sl_health_apply(&d, table);
	json_decref(d.health_seed);
	d.health_seed = NULL;
	sl_route_publish(table);

	if (sl_ctl_metrics_start(&d) != 0)
		sl_fatal(0, "cannot start the metrics harvest");
	if (conf->global.has_admin &&
	    sl_admin_start(&d, (const struct sockaddr *)&conf->global.admin.ss,
	        (int)conf->global.admin.len, &err) != 0)
		sl_fatal(0, "%s: admin %s: %s", d.config_path,
		    conf->global.admin.text, err);
	if (sl_events_open(&d, conf->global.event_log, &err) != 0)
		sl_fatal(0, "%s", err);
	if (conf->global.access_log != NULL) {
		sl_ctl_make_dirs(conf->global.access_log);
		if (sl_alog_open(conf->global.access_log, &err) != 0)
			sl_fatal(0, "%s", err);
	}
	/* Caught from before the control socket answers (what tells a
	 * script sluice is up): a SIGTERM after that drains and exits 0. */
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	if (sl_ctl_sockets_start(&d, conf, &err) != 0)
		sl_fatal(0, "%s", err);
	if (sl_workers_start(d.workers, d.nworkers) != 0)
		sl_fatal(errno, "cannot start worker threads");
	sl_event(&d, NULL, "start", NULL,
	    json_pack("{s:o,s:i,s:i}", "config", sl_json_text(d.config_path),
	        "workers", (int)d.nworkers, "runtime_state_dropped",
	        (int)d.state_dropped));
	sl_state_restore_runs(&d);
	if (d.takeover && stopped_while_starting(&d)) {
		/* Told to stop before it took over: the control socket
		 * stays the running sluice's, which decides again once the
		 * handshake's connection closes unfinished. */
		sl_log_warn("--takeover: stopped before taking over; the "
		            "running sluice goes on deciding");
		if (handover_fd >= 0)
			close(handover_fd);
	} else {
		if (d.takeover)
			sl_ctl_sockets_commit(&d);
		if (handover_fd >= 0)
			sl_takeover_done(handover_fd, handover_pid);
		sl_log_info("sluice %s: %u workers, %zu listeners, %zu "
		            "services, %zu TLS certificates, config %s",
		    PACKAGE_VERSION, d.nworkers, conf->nlisteners,
		    conf->nservices, sl_tls_count_certs(conf), d.config_path);
		log_addresses(conf);
		event_base_dispatch(d.base);
	}

	sl_ctl_sockets_stop(&d);
	sl_ctl_rollouts_stop(&d);
	sl_health_stop(&d);
	sl_admin_stop(&d);
	sl_workers_stop(d.workers, d.nworkers,
	    sl_route_current()->conf->global.drain_timeout_ms);
	sl_ctl_metrics_stop(&d);
	sl_events_close(&d);
	for (size_t i = 0; i < d.nrt; i++) {
		free(d.rt[i]->pending_guard);
		free(d.rt[i]);
	}
	free(d.rt);
	free(d.state_path);
	free_started();
	sl_workers_free(d.workers, d.nworkers); /* writes their last lines */
	sl_alog_close();
	sl_climit_free();
	sl_route_reclaim(UINT64_MAX);
	table = sl_route_current();
	sl_conf_free(table->conf);
	sl_route_free(table);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(ev_usr1);
	event_free(ev_reclaim);
	event_free(ev_tickets);
	event_base_free(d.base);
	sl_mem_thread_end();
	sl_log_info("stopped");
	return 0;
}

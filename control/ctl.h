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
#include <stdint.h>

#include <jansson.h>

#include "analysis/stats.h"
#include "analysis/window.h"
#include "proxy/worker.h"

struct event;
struct event_base;
struct evbuffer;
struct sl_admin;
struct sl_route_table;

struct sl_ctl {
	struct event_base *base;
	const char *config_path;
	struct sl_worker **workers;
	unsigned nworkers;
	int64_t started; /* wall-clock seconds */

	/* Time series per (service, version) id, harvested every second. */
	struct sl_series *series[SL_MAX_VERSION_IDS];
	struct event *harvest_ev;

	struct sl_admin *admin;
};

/* Start the per-second harvest on CTL's base (after workers exist). */
int sl_ctl_metrics_start(struct sl_ctl *ctl);
void sl_ctl_metrics_stop(struct sl_ctl *ctl);

/* Harvest every version's totals into its series (also run by the timer). */
void sl_ctl_harvest(struct sl_ctl *ctl);

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

/* Admin HTTP endpoint (/metrics /stats /healthz): start and stop. */
int sl_admin_start(
    struct sl_ctl *ctl, const struct sockaddr *addr, int addrlen, char **errp);
void sl_admin_stop(struct sl_ctl *ctl);

#endif

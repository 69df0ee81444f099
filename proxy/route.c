/*
 * route.c — routing tables: building them from a config, publishing them to
 * the workers, and the per-request decisions (service, version, bucket).
 *
 * Ids: every distinct server address and every (service, version) pair gets
 * a process-wide id the first time a table names it. Ids never change or get
 * reused, so a worker's upstream pools and stats, indexed by id, survive
 * table swaps and reloads.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "conf/log.h"
#include "conf/strmap.h"
#include "conf/xmalloc.h"
#include "proxy/http1.h"
#include "proxy/route.h"

/*
 * Process-wide id registries (control thread only): the names by id, and
 * an index of them, so that a reload of thousands of servers finds each
 * one's id at once (a scan of every name for each was 18 million
 * comparisons at 6000 servers).
 */
struct registry {
	char **names; /* by id; NULL: forgotten, taken by the next new name */
	uint32_t n;
	uint32_t nfree;         /* NULL names below n */
	struct sl_strmap index; /* names to ids */
	bool stale; /* a name went: index them again before a lookup */
};
static struct registry servers, versions;

static _Atomic(struct sl_route_table *) current_table;
static struct sl_route_table *retired; /* newest first */
static uint64_t next_epoch = 1;

/* Find or add NAME in a registry; returns its id. A new name takes the
 * first id forgotten (NULL: sl_route_forget_version), else a new one. */
static uint32_t
registry_id(struct registry *r, const char *name)
{
	uint32_t id;

	if (r->stale) {
		sl_strmap_clear(&r->index);
		for (id = 0; id < r->n; id++) {
			if (r->names[id] != NULL)
				sl_strmap_put(&r->index, r->names[id], id);
		}
		r->stale = false;
	}
	if (sl_strmap_get(&r->index, name, &id))
		return id;
	for (id = 0; r->nfree > 0 && id < r->n; id++) {
		if (r->names[id] == NULL) {
			r->nfree--;
			r->names[id] = sl_xstrdup(name);
			return sl_strmap_put(&r->index, r->names[id], id);
		}
	}
	r->names = sl_xreallocarray(r->names, r->n + 1, sizeof *r->names);
	r->names[r->n] = sl_xstrdup(name);
	sl_strmap_put(&r->index, r->names[r->n], r->n);
	return r->n++;
}

/* Forget name ID of R. */
static void
registry_forget(struct registry *r, uint32_t id)
{
	free(r->names[id]);
	r->names[id] = NULL;
	r->nfree++;
	r->stale = true;
}

/* Seed of a service: XXH3 of its seed string. */
uint64_t
sl_route_seed(const char *seed)
{
	return XXH3_64bits(seed, strlen(seed));
}

/* Bucket of a key: XXH3 with the service seed, modulo 10000. */
uint32_t
sl_route_bucket(uint64_t seed, const void *key, size_t len)
{
	return (uint32_t)(XXH3_64bits_withSeed(key, len, seed) % SL_BUCKETS);
}

/*
 * Lay out bucket ranges: non-stable versions from 0 upwards in config
 * order, stable on top with the rest.
 */
static void
layout_buckets(struct sl_route_service *svc)
{
	uint32_t lo = 0;
	size_t i;

	for (i = 0; i < svc->nversions; i++) {
		if (i == svc->stable)
			continue;
		svc->versions[i].bucket_lo = lo;
		lo += svc->versions[i].weight;
		svc->versions[i].bucket_hi = lo;
	}
	svc->versions[svc->stable].bucket_lo = lo;
	svc->versions[svc->stable].bucket_hi = SL_BUCKETS;
}

/* Fill one service of a table from its config. */
static void
build_service(struct sl_route_service *svc, const struct sl_service_conf *sc)
{
	size_t i, j;

	svc->conf = sc;
	svc->name = sc->name;
	svc->prefix_len = strlen(sc->path_prefix);
	svc->seed = sl_route_seed(sc->seed);
	svc->nversions = sc->nversions;
	svc->versions = sl_xcalloc(sc->nversions, sizeof *svc->versions);
	svc->stable = 0;
	for (i = 0; i < sc->nversions; i++) {
		const struct sl_version_conf *vc = &sc->versions[i];
		struct sl_route_version *v = &svc->versions[i];
		char *id_name = sl_xasprintf("%s/%s", sc->name, vc->name);

		v->name = vc->name;
		v->id = registry_id(&versions, id_name);
		free(id_name);
		v->weight = vc->weight;
		v->may_eject_all = sc->eject_max_pct >= 100;
		v->nservers = vc->nservers;
		v->servers = sl_xcalloc(vc->nservers, sizeof *v->servers);
		for (j = 0; j < vc->nservers; j++) {
			v->servers[j].addr = vc->servers[j].addr;
			v->servers[j].weight = vc->servers[j].weight;
			v->servers[j].state = SL_SERVER_READY;
			v->servers[j].healthy = true;
			v->servers[j].id =
			    registry_id(&servers, vc->servers[j].addr.text);
			v->total_server_weight += vc->servers[j].weight;
		}
		if (strcmp(vc->name, sc->stable) == 0)
			svc->stable = i;
	}
	layout_buckets(svc);
	svc->npins = sc->npins;
	svc->pins = sl_xcalloc(sc->npins ? sc->npins : 1, sizeof *svc->pins);
	for (i = 0; i < sc->npins; i++) {
		const struct sl_pin_conf *pc = &sc->pins[i];
		struct sl_route_pin *pin = &svc->pins[i];

		pin->source = pc->source;
		pin->field = pc->field;
		pin->field_len = strlen(pc->field);
		pin->op = pc->op;
		pin->value = pc->value;
		pin->value_len = strlen(pc->value);
		for (j = 0; j < sc->nversions; j++) {
			if (strcmp(sc->versions[j].name, pc->version) == 0)
				pin->version = j;
		}
	}
}

static void free_services(struct sl_route_table *t);
static void index_build(struct sl_route_table *t);
static void index_free(struct sl_route_index *ix);

/* Forget the names a refused build added past TO. */
static void
registry_truncate(struct registry *r, uint32_t to)
{
	while (r->n > to) {
		r->n--;
		if (r->names[r->n] == NULL)
			r->nfree--;
		free(r->names[r->n]);
	}
	r->stale = true;
}

/* Build a table that owns CONF. */
struct sl_route_table *
sl_route_build(struct sl_config *conf, char **errp)
{
	uint32_t nservers_before = servers.n;
	uint32_t nversions_before = versions.n;
	struct sl_route_table *t;
	size_t i;

	if (conf->nservices == 0) {
		*errp = sl_xstrdup("no services configured");
		return NULL;
	}
	t = sl_xcalloc(1, sizeof *t);
	t->conf = conf;
	t->nservices = conf->nservices;
	t->services = sl_xcalloc(conf->nservices, sizeof *t->services);
	for (i = 0; i < conf->nservices; i++)
		build_service(&t->services[i], &conf->services[i]);
	index_build(t);
	t->nserver_ids = servers.n;
	t->nversion_ids = versions.n;
	/* Past the limits a reload is refused, and the names it brought
	 * are forgotten, so that the next one without them goes through.
	 * Version ids come back once no table routes to them
	 * (sl_route_forget_version); server ids stay with their addresses
	 * (each worker's pool of connections to it) until a restart or a
	 * --takeover. */
	if (servers.n > SL_MAX_SERVER_IDS || versions.n > SL_MAX_VERSION_IDS) {
		*errp = servers.n > SL_MAX_SERVER_IDS
		    ? sl_xasprintf("more than %d distinct server addresses "
		                   "since sluice started (%u); restart it "
		                   "(or --takeover) to start afresh",
		          SL_MAX_SERVER_IDS, servers.n)
		    : sl_xasprintf("more than %d service/version names at "
		                   "once, in this config and in the tables "
		                   "still serving requests (%u)",
		          SL_MAX_VERSION_IDS, versions.n);
		registry_truncate(&servers, nservers_before);
		registry_truncate(&versions, nversions_before);
		free_services(t);
		free(t);
		return NULL;
	}
	return t;
}

/* Free the per-service arrays of a table. */
static void
free_services(struct sl_route_table *t)
{
	size_t i;

	for (i = 0; i < t->nservices; i++) {
		size_t j;

		for (j = 0; j < t->services[i].nversions; j++)
			free(t->services[i].versions[j].servers);
		free(t->services[i].versions);
		free(t->services[i].pins);
	}
	free(t->services);
	index_free(t->index);
}

/* A deep copy of OLD sharing its config, to be changed and published. */
struct sl_route_table *
sl_route_clone(const struct sl_route_table *old)
{
	struct sl_route_table *t = sl_xcalloc(1, sizeof *t);
	size_t i, j;

	t->conf = old->conf;
	t->nservices = old->nservices;
	t->services = sl_xcalloc(old->nservices, sizeof *t->services);
	for (i = 0; i < old->nservices; i++) {
		const struct sl_route_service *os = &old->services[i];
		struct sl_route_service *ns = &t->services[i];

		*ns = *os;
		ns->versions = sl_xcalloc(os->nversions, sizeof *ns->versions);
		for (j = 0; j < os->nversions; j++) {
			ns->versions[j] = os->versions[j];
			ns->versions[j].servers =
			    sl_xcalloc(os->versions[j].nservers,
			        sizeof(struct sl_route_server));
			memcpy(ns->versions[j].servers, os->versions[j].servers,
			    os->versions[j].nservers *
			        sizeof(struct sl_route_server));
		}
		ns->pins =
		    sl_xcalloc(os->npins ? os->npins : 1, sizeof *ns->pins);
		memcpy(ns->pins, os->pins, os->npins * sizeof *ns->pins);
	}
	index_build(t);
	t->nserver_ids = old->nserver_ids;
	t->nversion_ids = old->nversion_ids;
	return t;
}

/* Find a service by name. */
struct sl_route_service *
sl_route_service_by_name(struct sl_route_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nservices; i++) {
		if (strcmp(t->services[i].name, name) == 0)
			return &t->services[i];
	}
	return NULL;
}

/* Index of version NAME in SVC, or -1. */
int
sl_route_version_index(const struct sl_route_service *svc, const char *name)
{
	size_t i;

	for (i = 0; i < svc->nversions; i++) {
		if (strcmp(svc->versions[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* Lay out a service's buckets again after its weights or stable changed. */
void
sl_route_layout(struct sl_route_service *svc)
{
	layout_buckets(svc);
}

/* Copy a table with one service's weights and stable version changed. */
struct sl_route_table *
sl_route_with_weights(const struct sl_route_table *old, size_t svc,
    const uint32_t *weights, size_t stable, char **errp)
{
	struct sl_route_table *t;
	uint32_t sum = 0;
	size_t i;

	if (svc >= old->nservices) {
		*errp = sl_xstrdup("no such service");
		return NULL;
	}
	if (stable >= old->services[svc].nversions) {
		*errp = sl_xstrdup("no such stable version");
		return NULL;
	}
	for (i = 0; i < old->services[svc].nversions; i++)
		sum += weights[i];
	if (sum != SL_WEIGHT_TOTAL) {
		*errp = sl_xasprintf("weights sum to %u.%02u, must be 100.00",
		    sum / 100, sum % 100);
		return NULL;
	}
	t = sl_route_clone(old);
	for (i = 0; i < t->services[svc].nversions; i++)
		t->services[svc].versions[i].weight = weights[i];
	t->services[svc].stable = stable;
	layout_buckets(&t->services[svc]);
	return t;
}

/* Free a table's own memory. Its config is shared with the tables derived
 * from it (sl_route_clone) and is freed by sl_route_reclaim when no table
 * refers to it any more. */
void
sl_route_free(struct sl_route_table *t)
{
	if (t == NULL)
		return;
	free_services(t);
	free(t);
}

/* The current table. */
struct sl_route_table *
sl_route_current(void)
{
	return atomic_load_explicit(&current_table, memory_order_acquire);
}

/* Publish a new table; retire the old one. */
void
sl_route_publish(struct sl_route_table *table)
{
	struct sl_route_table *old;

	table->epoch = next_epoch++;
	old = atomic_exchange_explicit(
	    &current_table, table, memory_order_acq_rel);
	if (old != NULL) {
		old->retired_next = retired;
		retired = old;
	}
}

size_t
sl_route_retired_count(void)
{
	const struct sl_route_table *t;
	size_t n = 0;

	for (t = retired; t != NULL; t = t->retired_next)
		n++;
	return n;
}

/* Mark in USED the version ids TABLE routes to. */
static void
mark_versions(const struct sl_route_table *t, uint8_t *used)
{
	size_t i, j;

	for (i = 0; i < t->nservices; i++) {
		for (j = 0; j < t->services[i].nversions; j++)
			used[t->services[i].versions[j].id] = 1;
	}
}

uint32_t
sl_route_versions_in_use(uint8_t used[SL_MAX_VERSION_IDS])
{
	const struct sl_route_table *t;

	memset(used, 0, SL_MAX_VERSION_IDS);
	if (sl_route_current() != NULL)
		mark_versions(sl_route_current(), used);
	for (t = retired; t != NULL; t = t->retired_next)
		mark_versions(t, used);
	return versions.n;
}

bool
sl_route_version_known(uint32_t id)
{
	return id < versions.n && versions.names[id] != NULL;
}

void
sl_route_forget_version(uint32_t id)
{
	if (!sl_route_version_known(id))
		return;
	registry_forget(&versions, id);
}

/* Free retired tables no worker holds any more. */
void
sl_route_reclaim(uint64_t min_epoch_in_use)
{
	struct sl_route_table **pp = &retired, *t;
	struct sl_route_table *cur = sl_route_current();

	while ((t = *pp) != NULL) {
		if (t->epoch < min_epoch_in_use) {
			*pp = t->retired_next;
			/* Configs outlive derived tables: only free a config
			 * when no live table refers to it. */
			if (t->conf != cur->conf) {
				struct sl_route_table *o;
				bool used = false;

				for (o = retired; o != NULL;
				     o = o->retired_next)
					used |= o->conf == t->conf;
				if (!used)
					sl_conf_free(t->conf);
			}
			sl_route_free(t);
		} else
			pp = &t->retired_next;
	}
}

/*
 * The index of a table of many services: every (host, path prefix) a
 * service routes, a host NULL for "any host", in a hash table whose
 * entry names the first service in the table's order with that key; and
 * the distinct prefix lengths, longest first. A request looks up its own
 * host and then any host with its path cut at each length in turn: the
 * first found is what the scan would choose (the longest prefix; at one
 * length a service naming the host before one taking any; then the
 * table's order), in a few lookups however many services there are. The
 * scan took 5-7 µs a request at 1000 services.
 */
#define INDEX_MIN_SERVICES 16 /* fewer: the scan is as quick */
#define INDEX_MAX_LENS     64 /* more distinct prefix lengths: the scan */

struct route_key {
	uint64_t hash;    /* 0: an empty slot */
	const char *host; /* NULL: any host */
	size_t host_len;
	size_t svc; /* into the table's services */
};

struct sl_route_index {
	struct route_key *slots;
	size_t mask;
	size_t lens[INDEX_MAX_LENS]; /* longest first */
	size_t nlens;
};

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME  UINT64_C(0x100000001b3)
#define ANY_HOST   UINT64_C(0x9e3779b97f4a7c15)

/* A host's hash, in any case (FNV-1a over its lower-cased bytes). */
static uint64_t
host_hash(const char *h, size_t n)
{
	uint64_t x = FNV_OFFSET;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		x = (x ^ (c >= 'A' && c <= 'Z' ? c + 32 : c)) * FNV_PRIME;
	}
	return x;
}

/* The hash of a key from its host's hash (ANY_HOST) and its prefix's
 * FNV-1a state; never 0. */
static uint64_t
key_hash(uint64_t host, uint64_t prefix)
{
	uint64_t x = host ^ (prefix * UINT64_C(0xbf58476d1ce4e5b9));

	x ^= x >> 31;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 29;
	return x | 1;
}

/* The path's prefix state of its first N bytes, from X after AT bytes. */
static uint64_t
prefix_state(uint64_t x, const char *path, size_t at, size_t n)
{
	for (; at < n; at++)
		x = (x ^ (unsigned char)path[at]) * FNV_PRIME;
	return x;
}

/* The service of key (HOST, the first PLEN bytes of PATH), HASH its
 * hash, or NULL. */
static const struct sl_route_service *
index_get(const struct sl_route_table *t, uint64_t hash, const char *host,
    size_t host_len, const char *path, size_t plen)
{
	const struct sl_route_index *ix = t->index;
	size_t i;

	for (i = hash & ix->mask; ix->slots[i].hash != 0;
	     i = (i + 1) & ix->mask) {
		const struct route_key *k = &ix->slots[i];
		const struct sl_route_service *s = &t->services[k->svc];

		if (k->hash == hash && s->prefix_len == plen &&
		    memcmp(s->conf->path_prefix, path, plen) == 0 &&
		    (k->host == NULL
		            ? host == NULL
		            : host != NULL && k->host_len == host_len &&
		                strncasecmp(k->host, host, host_len) == 0))
			return s;
	}
	return NULL;
}

/* Add the key (HOST, service SVC's prefix), unless an earlier service
 * has it. */
static void
index_put(struct sl_route_table *t, const char *host, size_t svc)
{
	struct sl_route_index *ix = t->index;
	const struct sl_route_service *s = &t->services[svc];
	size_t hl = host != NULL ? strlen(host) : 0, i;
	uint64_t hash = key_hash(host != NULL ? host_hash(host, hl) : ANY_HOST,
	    prefix_state(FNV_OFFSET, s->conf->path_prefix, 0, s->prefix_len));

	if (index_get(t, hash, host, hl, s->conf->path_prefix, s->prefix_len))
		return;
	for (i = hash & ix->mask; ix->slots[i].hash != 0;
	     i = (i + 1) & ix->mask)
		;
	ix->slots[i].hash = hash;
	ix->slots[i].host = host;
	ix->slots[i].host_len = hl;
	ix->slots[i].svc = svc;
}

/* Build T's index, if it is worth one (aborts on allocation failure:
 * control thread). */
static void
index_build(struct sl_route_table *t)
{
	struct sl_route_index *ix;
	size_t nkeys = 0, cap = 16, i, j, k;

	if (t->nservices < INDEX_MIN_SERVICES)
		return;
	ix = sl_xcalloc(1, sizeof *ix);
	for (i = 0; i < t->nservices; i++) {
		size_t len = t->services[i].prefix_len;

		for (j = 0; j < ix->nlens && ix->lens[j] > len; j++)
			;
		if (j < ix->nlens && ix->lens[j] == len)
			continue;
		if (ix->nlens == INDEX_MAX_LENS) {
			free(ix);
			return;
		}
		memmove(&ix->lens[j + 1], &ix->lens[j],
		    (ix->nlens - j) * sizeof ix->lens[0]);
		ix->lens[j] = len;
		ix->nlens++;
	}
	for (i = 0; i < t->nservices; i++)
		nkeys += t->services[i].conf->nhosts
		    ? t->services[i].conf->nhosts
		    : 1;
	while (cap < nkeys * 2)
		cap *= 2;
	ix->slots = sl_xcalloc(cap, sizeof *ix->slots);
	ix->mask = cap - 1;
	t->index = ix;
	for (i = 0; i < t->nservices; i++) {
		const struct sl_service_conf *sc = t->services[i].conf;

		if (sc->nhosts == 0)
			index_put(t, NULL, i);
		for (k = 0; k < sc->nhosts; k++)
			index_put(t, sc->hosts[k], i);
	}
}

static void
index_free(struct sl_route_index *ix)
{
	if (ix != NULL)
		free(ix->slots);
	free(ix);
}

/* sl_route_match by the index. */
static const struct sl_route_service *
index_match(const struct sl_route_table *t, const char *host, size_t host_len,
    const char *path, size_t path_len)
{
	const struct sl_route_index *ix = t->index;
	const struct sl_route_service *s;
	uint64_t st[INDEX_MAX_LENS], x = FNV_OFFSET;
	uint64_t hh = host != NULL ? host_hash(host, host_len) : 0;
	size_t j = ix->nlens, at = 0, first;

	/* The path's prefix states at every length it reaches, shortest
	 * first, in one pass. */
	while (j > 0 && ix->lens[j - 1] <= path_len) {
		j--;
		x = prefix_state(x, path, at, ix->lens[j]);
		at = ix->lens[j];
		st[j] = x;
	}
	for (first = j; first < ix->nlens; first++) {
		size_t len = ix->lens[first];

		if (host != NULL &&
		    (s = index_get(t, key_hash(hh, st[first]), host, host_len,
		         path, len)) != NULL)
			return s;
		if ((s = index_get(t, key_hash(ANY_HOST, st[first]), NULL, 0,
		         path, len)) != NULL)
			return s;
	}
	return NULL;
}

/* Does the request host equal one of the service's hosts? */
static bool
host_matches(
    const struct sl_service_conf *sc, const char *host, size_t host_len)
{
	size_t i;

	if (sc->nhosts == 0)
		return true;
	if (host == NULL)
		return false;
	for (i = 0; i < sc->nhosts; i++) {
		if (strlen(sc->hosts[i]) == host_len &&
		    strncasecmp(sc->hosts[i], host, host_len) == 0)
			return true;
	}
	return false;
}

/* Service for a request: longest prefix; a host match beats a wildcard. */
const struct sl_route_service *
sl_route_match(const struct sl_route_table *t, const char *host,
    size_t host_len, const char *path, size_t path_len)
{
	const struct sl_route_service *best = NULL;
	bool best_has_host = false;
	size_t i;

	if (t->index != NULL)
		return index_match(t, host, host_len, path, path_len);
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *s = &t->services[i];
		bool has_host = s->conf->nhosts > 0;

		if (s->prefix_len > path_len ||
		    memcmp(s->conf->path_prefix, path, s->prefix_len) != 0)
			continue;
		if (!host_matches(s->conf, host, host_len))
			continue;
		if (best == NULL || s->prefix_len > best->prefix_len ||
		    (s->prefix_len == best->prefix_len && has_host &&
		        !best_has_host)) {
			best = s;
			best_has_host = has_host;
		}
	}
	return best;
}

/* The version whose bucket range holds BUCKET. */
size_t
sl_route_version_for_bucket(const struct sl_route_service *svc, uint32_t bucket)
{
	size_t i;

	for (i = 0; i < svc->nversions; i++) {
		const struct sl_route_version *v = &svc->versions[i];

		if (bucket >= v->bucket_lo && bucket < v->bucket_hi)
			return i;
	}
	return svc->stable;
}

/* Value of the first header NAME with a non-empty value. */
static bool
header_value(const struct sl_route_request *req, const char *name,
    size_t name_len, const char **val, size_t *vlen)
{
	const struct sl_http_head *h = req->head;
	uint32_t i;

	for (i = 0; i < h->nhdrs; i++) {
		if (sl_http_hdr_is(h, req->head_base, i, name, name_len) &&
		    h->hdrs[i].value_len > 0) {
			*val = req->head_base + h->hdrs[i].value_off;
			*vlen = h->hdrs[i].value_len;
			return true;
		}
	}
	return false;
}

/* Find cookie NAME in the Cookie headers ("a=1; b=2"). */
bool
sl_route_cookie(const struct sl_route_request *req, const char *name,
    size_t name_len, const char **val, size_t *vlen)
{
	const struct sl_http_head *h = req->head;
	uint32_t i;

	for (i = 0; i < h->nhdrs; i++) {
		const char *v, *end, *eq, *semi;

		if (h->kinds[i] != SL_HDR_COOKIE)
			continue;
		v = req->head_base + h->hdrs[i].value_off;
		end = v + h->hdrs[i].value_len;
		while (v < end) {
			while (v < end && (*v == ' ' || *v == ';'))
				v++;
			semi = memchr(v, ';', (size_t)(end - v));
			if (semi == NULL)
				semi = end;
			eq = memchr(v, '=', (size_t)(semi - v));
			if (eq != NULL && (size_t)(eq - v) == name_len &&
			    memcmp(v, name, name_len) == 0 && semi > eq + 1) {
				*val = eq + 1;
				*vlen = (size_t)(semi - eq - 1);
				if (*vlen >= 2 && **val == '"' &&
				    (*val)[*vlen - 1] == '"') {
					(*val)++;
					*vlen -= 2;
				}
				if (*vlen > 0)
					return true;
			}
			v = semi;
		}
	}
	return false;
}

/* Find query parameter NAME in PATH. */
bool
sl_route_query(const char *path, size_t path_len, const char *name,
    size_t name_len, const char **val, size_t *vlen)
{
	const char *q = memchr(path, '?', path_len), *end = path + path_len;

	if (q == NULL)
		return false;
	q++;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *eq;

		if (amp == NULL)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		if (eq != NULL && (size_t)(eq - q) == name_len &&
		    memcmp(q, name, name_len) == 0 && amp > eq + 1) {
			*val = eq + 1;
			*vlen = (size_t)(amp - eq - 1);
			return true;
		}
		q = amp + 1;
	}
	return false;
}

/* The user key from the first configured source present. */
bool
sl_route_user_key(const struct sl_service_conf *conf,
    const struct sl_route_request *req, const char **key, size_t *len)
{
	size_t i;

	for (i = 0; i < conf->nkeys; i++) {
		const struct sl_key_conf *k = &conf->keys[i];

		switch (k->source) {
		case SL_KEY_HEADER:
			if (header_value(
			        req, k->name, strlen(k->name), key, len))
				return true;
			break;
		case SL_KEY_COOKIE:
			if (sl_route_cookie(
			        req, k->name, strlen(k->name), key, len))
				return true;
			break;
		case SL_KEY_QUERY:
			if (sl_route_query(req->path, req->path_len, k->name,
			        strlen(k->name), key, len))
				return true;
			break;
		case SL_KEY_IP:
			if (req->client_ip_len > 0) {
				*key = req->client_ip;
				*len = req->client_ip_len;
				return true;
			}
			break;
		}
	}
	return false;
}

/* Constant-time comparison of a presented secret. */
static bool
secret_equals(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b), i;
	unsigned char diff = alen != blen;

	for (i = 0; i < alen && i < blen; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

/* An override header naming a version, honoured only with a proof; why
 * one present was not followed goes to *IGNORED. */
static bool
pick_override(const struct sl_route_service *svc,
    const struct sl_route_request *req, size_t *version, uint8_t *ignored)
{
	const struct sl_service_conf *sc = svc->conf;
	const char *v, *s;
	size_t vlen, slen, i;
	bool proven = false;

	if (sc->override_secret == NULL && sc->noverride_networks == 0)
		return false;
	if (!header_value(req, sc->override_header, strlen(sc->override_header),
	        &v, &vlen))
		return false;
	if (sc->override_secret != NULL &&
	    header_value(req, sc->override_secret_header,
	        strlen(sc->override_secret_header), &s, &slen))
		proven = secret_equals(s, slen, sc->override_secret);
	for (i = 0; !proven && i < sc->noverride_networks; i++) {
		if (req->client_addr != NULL &&
		    sl_cidr_match(&sc->override_networks[i], req->client_addr))
			proven = true;
	}
	if (!proven) {
		*ignored = SL_OVERRIDE_UNPROVEN;
		return false;
	}
	for (i = 0; i < svc->nversions; i++) {
		if (strlen(svc->versions[i].name) == vlen &&
		    memcmp(svc->versions[i].name, v, vlen) == 0) {
			*version = i;
			return true;
		}
	}
	*ignored = SL_OVERRIDE_NO_VERSION;
	return false;
}

/* The first pin rule that matches the request. */
static bool
pick_pin(const struct sl_route_service *svc, const struct sl_route_request *req,
    size_t *version)
{
	size_t i;

	for (i = 0; i < svc->npins; i++) {
		const struct sl_route_pin *pin = &svc->pins[i];
		const char *v;
		size_t vlen;
		bool found;

		if (pin->source == SL_KEY_COOKIE)
			found = sl_route_cookie(
			    req, pin->field, pin->field_len, &v, &vlen);
		else
			found = header_value(
			    req, pin->field, pin->field_len, &v, &vlen);
		if (!found)
			continue;
		if (pin->op == SL_MATCH_EQUALS ? vlen == pin->value_len &&
		            memcmp(v, pin->value, vlen) == 0
		                               : vlen >= pin->value_len &&
		            memcmp(v, pin->value, pin->value_len) == 0) {
			*version = pin->version;
			return true;
		}
	}
	return false;
}

/* Parse a sticky-cookie bucket: decimal 0..9999. */
static bool
parse_bucket(const char *v, size_t len, uint32_t *bucket)
{
	uint32_t b = 0;
	size_t i;

	if (len == 0 || len > 4)
		return false;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		b = b * 10 + (uint32_t)(v[i] - '0');
	}
	*bucket = b;
	return b < SL_BUCKETS;
}

/* Choose the version for a request. The bucket is the weights' even
 * when an override or a pin decides: it is also the request's user group
 * for the analyzer (struct sl_groups). */
void
sl_route_pick_version(const struct sl_route_service *svc,
    const struct sl_route_request *req, uint64_t *rng,
    struct sl_route_pick *pick)
{
	const struct sl_service_conf *sc = svc->conf;
	const char *key;
	size_t len;

	pick->svc = svc;
	pick->set_cookie = false;
	pick->override_ignored = SL_OVERRIDE_FOLLOWED;
	if (sl_route_user_key(sc, req, &key, &len)) {
		pick->bucket = sl_route_bucket(svc->seed, key, len);
		pick->reason = SL_PICK_KEY;
	} else if (sc->sticky_cookie != NULL &&
	    sl_route_cookie(req, sc->sticky_cookie, strlen(sc->sticky_cookie),
	        &key, &len) &&
	    parse_bucket(key, len, &pick->bucket)) {
		pick->reason = SL_PICK_COOKIE;
	} else {
		pick->bucket = (uint32_t)(sl_rand64(rng) % SL_BUCKETS);
		pick->reason = SL_PICK_RANDOM;
		pick->set_cookie = sc->sticky_cookie != NULL;
	}
	if (pick_override(svc, req, &pick->version, &pick->override_ignored))
		pick->reason = SL_PICK_OVERRIDE;
	else if (svc->npins > 0 && pick_pin(svc, req, &pick->version))
		pick->reason = SL_PICK_PIN;
	else {
		pick->version = sl_route_version_for_bucket(svc, pick->bucket);
		return;
	}
	pick->set_cookie = false; /* a rule's choice is not the user's */
}

/*
 * route.h — the routing table: an immutable snapshot of services, versions,
 * weights, servers and override rules, built by the control thread and
 * published to the workers with one atomic pointer swap.
 *
 * A worker reads the current table at the start of each request and keeps
 * using that table for the whole request, so a change is atomic for every
 * request. Old tables are freed once no worker holds them (see
 * sl_route_reclaim).
 *
 * Bucket layout (DESIGN.md "Routing model"): a user's bucket is
 * XXH3_64bits_withSeed(key, len, seed) % 10000 with seed =
 * XXH3_64bits(service seed string). Non-stable versions own contiguous
 * bucket ranges from 0 upwards, in config order; the stable version owns the
 * rest, at the top. Growing a canary from w to w' therefore only takes
 * buckets [w, w') from stable: nobody on the canary ever moves back.
 */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

#define SL_BUCKETS         10000
#define SL_MAX_SERVER_IDS  16384 /* distinct server addresses ever seen */
#define SL_MAX_VERSION_IDS 4096  /* (service, version) pairs ever seen */

struct sl_http_head;

enum sl_server_state {
	SL_SERVER_READY = 0,
	SL_SERVER_DRAIN, /* no new requests; existing ones finish */
	SL_SERVER_MAINT, /* out of rotation */
};

struct sl_route_server {
	uint32_t id;     /* process-wide server id, stable across tables */
	uint32_t weight; /* 1..1000 */
	enum sl_server_state state;
	bool healthy;        /* active health checks (true without them) */
	struct sl_addr addr; /* text shared with the config; not owned */
};

struct sl_route_version {
	const char *name;
	uint32_t id;     /* process-wide (service, version) id, for stats */
	uint32_t weight; /* hundredths of a percent */
	uint32_t bucket_lo, bucket_hi; /* [lo, hi) */
	struct sl_route_server *servers;
	size_t nservers;
	uint32_t total_server_weight;
	/* eject_max is 100%: ejection may leave no server (else a version
	 * whose servers were all ejected by others' failures uses them). */
	bool may_eject_all;
};

struct sl_route_pin {
	enum sl_key_source source;
	const char *field;
	size_t field_len;
	enum sl_match_op op;
	const char *value;
	size_t value_len;
	size_t version; /* index into the service's versions */
};

struct sl_route_service {
	const struct sl_service_conf *conf; /* names, keys, override settings */
	const char *name;
	size_t prefix_len;
	uint64_t seed;
	struct sl_route_version *versions;
	size_t nversions;
	size_t stable; /* index into versions */
	struct sl_route_pin *pins;
	size_t npins;
};

struct sl_route_index;

struct sl_route_table {
	uint64_t epoch;
	struct sl_config *conf; /* owned: freed with the last table using it */
	struct sl_route_service *services;
	size_t nservices;
	/* Services by (host, path prefix): a table of many services finds
	 * a request's without looking at each (NULL for a few: the scan is
	 * as quick). */
	struct sl_route_index *index;
	uint32_t nserver_ids;                /* server ids are < this */
	uint32_t nversion_ids;               /* version ids are < this */
	struct sl_route_table *retired_next; /* control thread's list */
};

/* How a version was chosen, for logs and tests. The weights' reasons
 * come first: the analyzer judges only those (conn.c weights_routed). */
enum sl_pick_reason {
	SL_PICK_KEY = 0, /* a sticky key source (header/cookie/query/ip) */
	SL_PICK_COOKIE,  /* the sticky_cookie bucket */
	SL_PICK_RANDOM,  /* no key: random bucket */
	SL_PICK_OVERRIDE,
	SL_PICK_PIN,
};

/* Why an override header was not followed (for the counters). */
enum sl_override_ignored {
	SL_OVERRIDE_FOLLOWED = 0, /* followed, or no header at all */
	SL_OVERRIDE_UNPROVEN,   /* no secret, a wrong one, no trusted address */
	SL_OVERRIDE_NO_VERSION, /* proven, but names no version of the service
	                         */
};

/* The request facts routing needs; strings are not NUL-terminated. */
struct sl_route_request {
	const char *host; /* lower-case, port stripped; may be NULL */
	size_t host_len;
	const char *path; /* origin-form target (path and query) */
	size_t path_len;
	const char *client_ip; /* text form, as in X-Forwarded-For */
	size_t client_ip_len;
	const struct sockaddr *client_addr;
	const struct sl_http_head *head; /* for headers and cookies */
	const char *head_base;           /* bytes the head's offsets index */
};

struct sl_route_pick {
	const struct sl_route_service *svc;
	size_t version; /* index into svc->versions */
	uint32_t bucket;
	enum sl_pick_reason reason;
	bool set_cookie;          /* send Set-Cookie: sticky_cookie=bucket */
	uint8_t override_ignored; /* enum sl_override_ignored */
};

/*
 * Build a table from CONF (the table takes ownership of CONF). Assigns
 * process-wide server and version ids through the registry. Start-up and
 * control thread only; returns NULL with *errp set on failure.
 */
struct sl_route_table *sl_route_build(struct sl_config *conf, char **errp);

/*
 * Build a copy of OLD with one service's version weights replaced and its
 * stable version changed (weights in hundredths, indexed like the service's
 * versions). Used by the control socket. Returns the new table (sharing
 * OLD's config) or NULL with *errp set.
 */
struct sl_route_table *sl_route_with_weights(const struct sl_route_table *old,
    size_t svc, const uint32_t *weights, size_t stable, char **errp);

/*
 * A deep copy of OLD that shares its config (control thread): change it,
 * call sl_route_layout on changed services, then publish it.
 */
struct sl_route_table *sl_route_clone(const struct sl_route_table *old);

/* Lay out a service's bucket ranges from its weights and stable version. */
void sl_route_layout(struct sl_route_service *svc);

/* Find a service of T by name; NULL when absent. */
struct sl_route_service *sl_route_service_by_name(
    struct sl_route_table *t, const char *name);

/* Find a version of SVC by name; -1 when absent. */
int sl_route_version_index(
    const struct sl_route_service *svc, const char *name);

/* Free a table that no worker can see any more. */
void sl_route_free(struct sl_route_table *table);

/* The current table (acquire load), for workers and the control thread. */
struct sl_route_table *sl_route_current(void);

/*
 * Publish TABLE as current; the previous one is put on the retired list and
 * freed by sl_route_reclaim once every worker has moved past it.
 */
void sl_route_publish(struct sl_route_table *table);

/* Tables replaced but not freed yet (control thread). */
size_t sl_route_retired_count(void);

/*
 * Free retired tables older than MIN_EPOCH_IN_USE (the lowest epoch any
 * worker still holds). Control thread only.
 */
void sl_route_reclaim(uint64_t min_epoch_in_use);

/*
 * Version ids (control thread). A (service, version) name keeps its id,
 * and its counters, while a table routes to it; once none does (the
 * tables a reload replaced all reclaimed), the id may be forgotten and
 * given to a new name: a pipeline naming every release anew does not
 * grow sluice. sl_route_versions_in_use marks the ids the current and
 * the retired tables route to and returns the number of ids there are;
 * sl_route_version_known says whether an id has a name;
 * sl_route_forget_version frees its name for another.
 */
uint32_t sl_route_versions_in_use(uint8_t used[SL_MAX_VERSION_IDS]);
bool sl_route_version_known(uint32_t id);
void sl_route_forget_version(uint32_t id);

/* Find the service for a request: Host, then longest path_prefix. */
const struct sl_route_service *sl_route_match(const struct sl_route_table *t,
    const char *host, size_t host_len, const char *path, size_t path_len);

/* Bucket of a user key under a service's seed: XXH3 % 10000. */
uint32_t sl_route_bucket(uint64_t seed, const void *key, size_t len);

/* Seed of a service: XXH3_64bits(seed string). */
uint64_t sl_route_seed(const char *seed);

/* The version (index) owning BUCKET. */
size_t sl_route_version_for_bucket(
    const struct sl_route_service *svc, uint32_t bucket);

/*
 * Choose the version for a request: override (with proof), pins, sticky
 * key sources in order, the sticky cookie, else a random bucket (RNG is the
 * worker's state). Fills PICK.
 */
void sl_route_pick_version(const struct sl_route_service *svc,
    const struct sl_route_request *req, uint64_t *rng,
    struct sl_route_pick *pick);

/*
 * Extract the user key from the configured sources into *KEY and *LEN (pointing
 * into the request). Returns false when no source is present.
 */
bool sl_route_user_key(const struct sl_service_conf *conf,
    const struct sl_route_request *req, const char **key, size_t *len);

/*
 * Find cookie NAME in the request's Cookie headers. Returns true and
 * points *VAL and *VLEN into the head when found.
 */
bool sl_route_cookie(const struct sl_route_request *req, const char *name,
    size_t name_len, const char **val, size_t *vlen);

/* Find query parameter NAME in PATH (raw, not percent-decoded). */
bool sl_route_query(const char *path, size_t path_len, const char *name,
    size_t name_len, const char **val, size_t *vlen);

/* xorshift64* step on a worker's RNG state. */
static inline uint64_t
sl_rand64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

#endif

/*
 * fuzz_config.c — libFuzzer target: the config loader (conf/load.c) on
 * arbitrary text, as sluice -t would read a file.
 *
 * The input, cut at its first NUL, is loaded with sl_conf_load_string.
 * Exactly one of (config, errors) must come back; errors are non-empty
 * "name:line: message" lines; a config that loads must satisfy every rule
 * the loader promises (conf.h, conf/sluice.ini): at least one listener and
 * one service, valid names, a stable version that exists, version weights
 * summing to 100%, servers with weights 1..1000, pins naming versions of
 * their service, strictly increasing rollout steps, no two services
 * claiming the same requests, limits within their documented bounds.
 *
 * Host names in addresses are resolved when a file is loaded; here
 * getaddrinfo() is replaced by one that accepts numeric addresses and
 * "localhost" only, so the fuzzer never waits on DNS and every run is
 * reproducible.
 */
#include "config.h"

#include <dlfcn.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/log.h"

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
int getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);

typedef int (*gai_fn)(
    const char *, const char *, const struct addrinfo *, struct addrinfo **);

/* Resolve without DNS: numeric hosts and "localhost" only. */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static gai_fn real;
	struct addrinfo h;

	if (real == NULL) {
		real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
		if (real == NULL)
			abort();
	}
	memset(&h, 0, sizeof h);
	if (hints != NULL)
		h = *hints;
	if (node != NULL && strcmp(node, "localhost") != 0)
		h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

/* 1 to 63 of A-Z a-z 0-9 _ . - (conf/sluice.ini, "names"). */
static bool
valid_name(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return false;
	n = strlen(s);
	if (n == 0 || n > SL_MAX_NAME)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		        c == '-'))
			return false;
	}
	return true;
}

/* Do two services share a path prefix and a host (or both any host)? */
static bool
same_route(const struct sl_service_conf *a, const struct sl_service_conf *b)
{
	size_t i, j;

	if (strcmp(a->path_prefix, b->path_prefix) != 0)
		return false;
	if (a->nhosts == 0 || b->nhosts == 0)
		return a->nhosts == 0 && b->nhosts == 0;
	for (i = 0; i < a->nhosts; i++) {
		for (j = 0; j < b->nhosts; j++) {
			if (strcmp(a->hosts[i], b->hosts[j]) == 0)
				return true;
		}
	}
	return false;
}

/* The rules of one loaded service. */
static void
check_service(const struct sl_service_conf *s)
{
	const struct sl_rollout_conf *r = &s->rollout;
	uint32_t sum = 0;
	size_t i, j;

	CHECK(valid_name(s->name));
	CHECK(s->path_prefix != NULL && s->path_prefix[0] == '/');
	CHECK(s->seed != NULL);
	CHECK(s->override_header != NULL);
	CHECK(s->override_secret_header != NULL);
	for (i = 0; i < s->nhosts; i++)
		CHECK(s->hosts[i] != NULL && s->hosts[i][0] != '\0');
	for (i = 0; i < s->nkeys; i++) {
		CHECK(s->keys[i].source <= SL_KEY_IP);
		if (s->keys[i].source == SL_KEY_IP)
			CHECK(i == s->nkeys - 1); /* "ip" is always present */
		else
			CHECK(s->keys[i].name != NULL &&
			    s->keys[i].name[0] != '\0');
	}
	CHECK(s->nversions >= 1);
	CHECK(s->stable != NULL && sl_conf_version(s, s->stable) != NULL);
	for (i = 0; i < s->nversions; i++) {
		const struct sl_version_conf *v = &s->versions[i];

		CHECK(valid_name(v->name));
		CHECK(sl_conf_version(s, v->name) == v); /* unique */
		CHECK(v->weight <= SL_WEIGHT_TOTAL);
		sum += v->weight;
		CHECK(v->nservers >= 1);
		for (j = 0; j < v->nservers; j++) {
			CHECK(v->servers[j].weight >= 1 &&
			    v->servers[j].weight <= 1000);
			CHECK(v->servers[j].addr.text != NULL);
			CHECK(v->servers[j].addr.len > 0);
		}
	}
	CHECK(sum == SL_WEIGHT_TOTAL);
	for (i = 0; i < s->npins; i++) {
		const struct sl_pin_conf *p = &s->pins[i];

		CHECK(p->source == SL_KEY_HEADER || p->source == SL_KEY_COOKIE);
		CHECK(p->field != NULL && p->field[0] != '\0');
		CHECK(p->value != NULL);
		CHECK(p->version != NULL &&
		    sl_conf_version(s, p->version) != NULL);
	}
	CHECK(r->nsteps >= 1);
	for (i = 0; i < r->nsteps; i++) {
		CHECK(r->steps[i] > 0 && r->steps[i] <= SL_WEIGHT_TOTAL);
		CHECK(i == 0 || r->steps[i] > r->steps[i - 1]);
	}
	CHECK(r->interval_ms > 0 && r->interval_ms <= r->step_time_ms);
	CHECK(r->max_error_rate > 0 && r->max_error_rate <= 1);
	CHECK(r->max_latency_ratio > 1);
	CHECK(r->latency_quantile > 0 && r->latency_quantile < 1);
	CHECK(r->min_requests >= 1);
}

/* Every promise a loaded config makes. */
static void
check_config(const struct sl_config *c)
{
	const struct sl_global_conf *g = &c->global;
	size_t i, j;

	CHECK(c->path != NULL);
	CHECK(c->nlisteners >= 1);
	CHECK(c->nservices >= 1);
	CHECK(g->max_headers >= 1 && g->max_headers <= 1000);
	CHECK(g->max_header_size >= 1024 && g->max_header_size <= 1048576);
	CHECK(g->max_connections >= 1);
	CHECK(g->max_conns_per_client <= 1000000);
	CHECK(g->workers >= 0 && g->workers <= 256);
	CHECK(g->has_admin == (g->admin.text != NULL));
	for (i = 0; i < c->nlisteners; i++) {
		const struct sl_listener_conf *l = &c->listeners[i];

		CHECK(valid_name(l->name));
		CHECK(l->bind.text != NULL && l->bind.len > 0);
		CHECK((l->tls_cert == NULL) == (l->tls_key == NULL));
		for (j = 0; j < i; j++)
			CHECK(strcmp(c->listeners[j].name, l->name) != 0);
	}
	for (i = 0; i < c->nservices; i++) {
		check_service(&c->services[i]);
		for (j = 0; j < i; j++) {
			CHECK(strcmp(c->services[j].name,
			          c->services[i].name) != 0);
			CHECK(!same_route(&c->services[j], &c->services[i]));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct sl_config *conf;
	char *text, *err = NULL;

	if (!quiet) {
		sl_log_set_level(SL_LOG_ERROR);
		quiet = true;
	}
	text = malloc(size + 1);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	conf = sl_conf_load_string("fuzz.ini", text, &err);
	CHECK((conf == NULL) != (err == NULL));
	if (conf != NULL) {
		check_config(conf);
		sl_conf_free(conf);
	} else {
		CHECK(err[0] != '\0');
		CHECK(strncmp(err, "fuzz.ini:", 9) == 0);
		free(err);
	}
	free(text);
	return 0;
}

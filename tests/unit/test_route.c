/*
 * test_route.c — unit tests for proxy/route.c: the bucket formula, split
 * accuracy, bucket layout, monotonic canary growth, service matching, user
 * key extraction (header, cookie, query, ip), version picking (overrides,
 * pins, the sticky cookie) and weight changes.
 *
 * Tables are built from small INI strings with the real config loader;
 * requests are real heads parsed by proxy/http1.c.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <xxhash.h>

#include "conf/conf.h"
#include "proxy/http1.h"
#include "proxy/route.h"

#define LISTENER "[listener:main]\nbind = 127.0.0.1:1\n"

/* Service s: blue stable 90%, green 10%, all four key sources. */
#define SPLIT_CONF                                                             \
	LISTENER "[service:s]\n"                                               \
	         "stable = blue\n"                                             \
	         "seed = s1\n"                                                 \
	         "sticky = header:X-User-Id cookie:uid query:uid ip\n"         \
	         "[version:s/blue]\n"                                          \
	         "servers = 127.0.0.1:2\n"                                     \
	         "weight = 90\n"                                               \
	         "[version:s/green]\n"                                         \
	         "servers = 127.0.0.1:3\n"                                     \
	         "weight = 10\n"

/* Build a table from INI text, which must be valid. */
static struct sl_route_table *
table_new(const char *ini)
{
	char *err = NULL;
	struct sl_config *conf = sl_conf_load_string("t.ini", ini, &err);
	struct sl_route_table *t;

	if (conf == NULL) {
		print_error("config errors:\n%s\n", err ? err : "(none)");
		free(err);
		fail();
	}
	t = sl_route_build(conf, &err);
	if (t == NULL) {
		print_error("build error: %s\n", err ? err : "(none)");
		free(err);
		sl_conf_free(conf);
		fail();
	}
	return t;
}

/* Free a table from sl_route_build and the config it owns. */
static void
table_free(struct sl_route_table *t)
{
	struct sl_config *conf = t->conf;

	sl_route_free(t);
	sl_conf_free(conf);
}

/* Index of version NAME in SVC. */
static size_t
version_index(const struct sl_route_service *svc, const char *name)
{
	size_t i;

	for (i = 0; i < svc->nversions; i++) {
		if (strcmp(svc->versions[i].name, name) == 0)
			return i;
	}
	fail_msg("no version %s", name);
	return 0;
}

/* A parsed request; RAW owns the bytes the head indexes. */
struct fake_req {
	char *raw;
	struct sl_http_head *head;
	struct sockaddr_storage ss;
	struct sl_route_request req;
};

/*
 * Parse request head RAW_TEXT and fill the routing facts; CLIENT_IP may be
 * NULL (no address at all).
 */
static void
fake_req_init(struct fake_req *f, const char *raw_text, const char *client_ip)
{
	struct sl_http_error err;
	llhttp_t parser;

	memset(f, 0, sizeof *f);
	f->raw = strdup(raw_text);
	assert_non_null(f->raw);
	f->head = sl_http_head_new(100);
	assert_non_null(f->head);
	sl_http_parser_init(&parser, false);
	if (sl_http_parse_head(
	        &parser, f->raw, strlen(f->raw), 0, f->head, &err) != 0)
		fail_msg("request refused: %d %s", err.status, err.reason);
	f->req.head = f->head;
	f->req.head_base = f->raw;
	f->req.path = f->raw + f->head->target_off;
	f->req.path_len = f->head->target_len;
	if (client_ip != NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&f->ss;

		sin->sin_family = AF_INET;
		assert_int_equal(
		    inet_pton(AF_INET, client_ip, &sin->sin_addr), 1);
		f->req.client_ip = client_ip;
		f->req.client_ip_len = strlen(client_ip);
		f->req.client_addr = (const struct sockaddr *)&f->ss;
	}
}

static void
fake_req_free(struct fake_req *f)
{
	sl_http_head_free(f->head);
	free(f->raw);
}

/* ---- bucket math ---- */

static void
test_bucket_formula(void **state)
{
	uint64_t seed = sl_route_seed("s1");
	char key[32];
	int i;

	(void)state;
	assert_true(seed == XXH3_64bits("s1", 2));
	assert_int_equal(sl_route_bucket(seed, "abc", 3),
	    XXH3_64bits_withSeed("abc", 3, XXH3_64bits("s1", 2)) % 10000);
	for (i = 0; i < 10000; i++) {
		int n = snprintf(key, sizeof key, "user-%d", i);
		uint32_t b = sl_route_bucket(seed, key, (size_t)n);

		assert_true(b < SL_BUCKETS);
		assert_int_equal(b, sl_route_bucket(seed, key, (size_t)n));
		assert_int_equal(
		    b, XXH3_64bits_withSeed(key, (size_t)n, seed) % 10000);
	}
	/* The seed matters. */
	assert_true(sl_route_seed("s1") != sl_route_seed("s2"));
}

/* ---- split accuracy ---- */

/* Share of 100000 distinct keys on version CANARY of T's first service,
 * in keys. */
static unsigned
count_on(const struct sl_route_table *t, const char *canary)
{
	const struct sl_route_service *svc = &t->services[0];
	size_t c = version_index(svc, canary);
	unsigned n = 0;
	char key[32];
	int i;

	for (i = 0; i < 100000; i++) {
		int len = snprintf(key, sizeof key, "user-%d", i);
		uint32_t b = sl_route_bucket(svc->seed, key, (size_t)len);

		if (sl_route_version_for_bucket(svc, b) == c)
			n++;
	}
	return n;
}

/* A two-version service with weights BLUE and GREEN (INI text). */
static struct sl_route_table *
two_versions(const char *stable, const char *blue, const char *green)
{
	char ini[1024];

	snprintf(ini, sizeof ini,
	    LISTENER "[service:s]\nstable = %s\nseed = s1\n"
	             "[version:s/blue]\nservers = 127.0.0.1:2\nweight = %s\n"
	             "[version:s/green]\nservers = 127.0.0.1:3\nweight = %s\n",
	    stable, blue, green);
	return table_new(ini);
}

static void
test_split_accuracy(void **state)
{
	struct sl_route_table *t;
	unsigned n;

	(void)state;
	/* 10% within +-0.3% of 100000 keys. */
	t = table_new(SPLIT_CONF);
	n = count_on(t, "green");
	assert_in_range(n, 10000 - 300, 10000 + 300);
	assert_int_equal(count_on(t, "blue"), 100000 - n);
	table_free(t);

	/* 0.01%: one bucket; a handful of users, never more than 0.3%. */
	t = two_versions("blue", "99.99", "0.01");
	assert_int_equal(t->services[0].versions[1].weight, 1);
	n = count_on(t, "green");
	assert_in_range(n, 1, 300);
	table_free(t);

	/* 0/100 with the stable at 0: everyone on the canary. */
	t = two_versions("blue", "0", "100");
	assert_int_equal(count_on(t, "green"), 100000);
	assert_int_equal(count_on(t, "blue"), 0);
	table_free(t);

	/* 100/0: nobody on the canary. */
	t = two_versions("blue", "100", "0");
	assert_int_equal(count_on(t, "green"), 0);
	table_free(t);
}

/* ---- bucket layout ---- */

/* Check that SVC's ranges are contiguous, disjoint and cover every bucket,
 * and that sl_route_version_for_bucket agrees with them. */
static void
assert_layout_covers(const struct sl_route_service *svc)
{
	uint32_t b, total = 0;
	size_t i;

	for (i = 0; i < svc->nversions; i++) {
		const struct sl_route_version *v = &svc->versions[i];

		assert_true(v->bucket_lo <= v->bucket_hi);
		assert_int_equal(v->bucket_hi - v->bucket_lo, v->weight);
		total += v->bucket_hi - v->bucket_lo;
	}
	assert_int_equal(total, SL_BUCKETS);
	for (b = 0; b < SL_BUCKETS; b++) {
		size_t owners = 0, owner = 0;

		for (i = 0; i < svc->nversions; i++) {
			if (b >= svc->versions[i].bucket_lo &&
			    b < svc->versions[i].bucket_hi) {
				owners++;
				owner = i;
			}
		}
		if (owners != 1)
			fail_msg("bucket %u has %zu owners", b, owners);
		assert_int_equal(sl_route_version_for_bucket(svc, b), owner);
	}
}

static void
test_bucket_layout(void **state)
{
	struct sl_route_table *t;
	const struct sl_route_service *svc;
	size_t blue, green, red;

	(void)state;
	t = table_new(SPLIT_CONF);
	svc = &t->services[0];
	blue = version_index(svc, "blue");
	green = version_index(svc, "green");
	assert_int_equal(svc->stable, blue);
	/* Canary owns [0, w), stable [w, 10000). */
	assert_int_equal(svc->versions[green].bucket_lo, 0);
	assert_int_equal(svc->versions[green].bucket_hi, 1000);
	assert_int_equal(svc->versions[blue].bucket_lo, 1000);
	assert_int_equal(svc->versions[blue].bucket_hi, 10000);
	assert_int_equal(sl_route_version_for_bucket(svc, 0), green);
	assert_int_equal(sl_route_version_for_bucket(svc, 999), green);
	assert_int_equal(sl_route_version_for_bucket(svc, 1000), blue);
	assert_int_equal(sl_route_version_for_bucket(svc, 9999), blue);
	assert_layout_covers(svc);
	table_free(t);

	/* Stable listed between two canaries: canaries from 0 in config
	 * order, stable on top. */
	t = table_new(LISTENER "[service:s]\nstable = blue\n"
	                       "[version:s/green]\nservers = 127.0.0.1:3\n"
	                       "weight = 12.34\n"
	                       "[version:s/blue]\nservers = 127.0.0.1:2\n"
	                       "weight = 80\n"
	                       "[version:s/red]\nservers = 127.0.0.1:4\n"
	                       "weight = 7.66\n");
	svc = &t->services[0];
	blue = version_index(svc, "blue");
	green = version_index(svc, "green");
	red = version_index(svc, "red");
	assert_int_equal(svc->stable, blue);
	assert_int_equal(svc->versions[green].bucket_lo, 0);
	assert_int_equal(svc->versions[green].bucket_hi, 1234);
	assert_int_equal(svc->versions[red].bucket_lo, 1234);
	assert_int_equal(svc->versions[red].bucket_hi, 2000);
	assert_int_equal(svc->versions[blue].bucket_lo, 2000);
	assert_int_equal(svc->versions[blue].bucket_hi, 10000);
	assert_layout_covers(svc);
	table_free(t);
}

/* ---- monotonic canary ---- */

static void
test_monotonic_growth(void **state)
{
	static const uint32_t steps[] = {100, 500, 2500, 5000, 10000};
	enum { NKEYS = 20000, NSTEPS = sizeof steps / sizeof steps[0] };
	struct sl_route_table *base, *t[NSTEPS];
	static bool on_canary[NSTEPS][NKEYS];
	uint32_t buckets[NKEYS];
	size_t blue, green, k;
	char key[32];
	int i;

	(void)state;
	base = two_versions("blue", "100", "0");
	blue = version_index(&base->services[0], "blue");
	green = version_index(&base->services[0], "green");
	for (i = 0; i < NKEYS; i++) {
		int len = snprintf(key, sizeof key, "k%d", i);

		buckets[i] =
		    sl_route_bucket(base->services[0].seed, key, (size_t)len);
	}
	for (k = 0; k < NSTEPS; k++) {
		uint32_t w[2];
		char *err = NULL;
		unsigned n = 0;

		w[green] = steps[k];
		w[blue] = SL_WEIGHT_TOTAL - steps[k];
		t[k] = sl_route_with_weights(base, 0, w, blue, &err);
		assert_non_null(t[k]);
		assert_null(err);
		for (i = 0; i < NKEYS; i++) {
			on_canary[k][i] =
			    sl_route_version_for_bucket(
			        &t[k]->services[0], buckets[i]) == green;
			n += on_canary[k][i];
		}
		/* Roughly the step's share (+-1% of the keys). */
		assert_in_range(n,
		    (unsigned)((uint64_t)steps[k] * NKEYS / 10000) -
		        (k + 1 < NSTEPS ? 200 : 0),
		    (unsigned)((uint64_t)steps[k] * NKEYS / 10000) + 200);
	}
	for (k = 0; k + 1 < NSTEPS; k++) {
		for (i = 0; i < NKEYS; i++) {
			if (on_canary[k][i] && !on_canary[k + 1][i])
				fail_msg("key k%d left the canary going from "
				         "%u to %u",
				    i, steps[k], steps[k + 1]);
		}
	}
	for (i = 0; i < NKEYS; i++)
		assert_true(on_canary[NSTEPS - 1][i]);
	for (k = 0; k < NSTEPS; k++)
		sl_route_free(t[k]); /* derived: the config is base's */
	table_free(base);
}

/* ---- service matching ---- */

/* sl_route_match with NUL-terminated HOST (may be NULL) and PATH. */
static const struct sl_route_service *
match(const struct sl_route_table *t, const char *host, const char *path)
{
	return sl_route_match(
	    t, host, host != NULL ? strlen(host) : 0, path, strlen(path));
}

static void
test_match(void **state)
{
	struct sl_route_table *t;
	const struct sl_route_service *s;

	(void)state;
	t = table_new(
	    LISTENER "[service:root]\nstable = v\n"
	             "[version:root/v]\nservers = 127.0.0.1:2\n"
	             "[service:api]\nstable = v\npath_prefix = /api\n"
	             "[version:api/v]\nservers = 127.0.0.1:2\n"
	             "[service:apiv2]\nstable = v\npath_prefix = /api/v2\n"
	             "[version:apiv2/v]\nservers = 127.0.0.1:2\n"
	             "[service:shopapi]\nstable = v\npath_prefix = /api\n"
	             "hosts = Shop.Example.com\n"
	             "[version:shopapi/v]\nservers = 127.0.0.1:2\n");
#define MATCH(host, path) match(t, (host), (path))
	s = MATCH(NULL, "/");
	assert_non_null(s);
	assert_string_equal(s->name, "root");
	assert_string_equal(MATCH(NULL, "/other")->name, "root");
	assert_string_equal(MATCH(NULL, "/api/x")->name, "api");
	assert_string_equal(MATCH(NULL, "/api/v2/x")->name, "apiv2");
	assert_string_equal(MATCH("other.com", "/api/x")->name, "api");
	/* A host-specific service beats a host-less one, same prefix. */
	assert_string_equal(
	    MATCH("shop.example.com", "/api/x")->name, "shopapi");
	assert_string_equal(
	    MATCH("SHOP.example.COM", "/api/x")->name, "shopapi");
	/* ... but not a longer prefix. */
	assert_string_equal(
	    MATCH("shop.example.com", "/api/v2/x")->name, "apiv2");
	assert_string_equal(MATCH("shop.example.com", "/")->name, "root");
	table_free(t);

	/* No catch-all: nothing matches. */
	t = table_new(
	    LISTENER "[service:only]\nstable = v\npath_prefix = /app\n"
	             "hosts = a.com\n"
	             "[version:only/v]\nservers = 127.0.0.1:2\n");
	assert_string_equal(MATCH("a.com", "/app/1")->name, "only");
	assert_null(MATCH("b.com", "/app/1"));
	assert_null(MATCH("a.com", "/other"));
	assert_null(MATCH("a.com", "/ap"));
	assert_null(MATCH(NULL, "/app/1"));
	table_free(t);
#undef MATCH
}

/*
 * A table of many services finds a request's service by its index; the
 * index must choose what the scan of every service chooses (the longest
 * prefix, then a service naming the host, then the table's order). Random
 * tables of 16 to 70 services, hosts in any case, requests of every kind.
 */
static void
test_match_index(void **state)
{
	static const char *const prefixes[] = {"/", "/a", "/ab", "/abc", "/b",
	    "/api", "/api/v1", "/api/v1/x", "/zz/top"};
	static const char *const hosts[] = {
	    "a.example", "B.example", "c.example", "d.example", "e.example"};
	static const char *const asked_hosts[] = {"a.example", "A.EXAMPLE",
	    "b.example", "c.example", "D.Example", "e.example", "x.example", "",
	    NULL};
	static const char *const tails[] = {"", "/", "x", "/q?y=1", "c/d"};
	unsigned seed = 7;
	size_t round, checked = 0;

	(void)state;
	for (round = 0; round < 60; round++) {
		char ini[32768];
		size_t n = 0, nsvc = 0, p, h, q;
		struct sl_route_table *t;
		struct sl_route_index *ix;

		n += (size_t)snprintf(ini + n, sizeof ini - n, "%s", LISTENER);
		for (p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
			/* Hosts split among this prefix's services, and
			 * maybe one for any host. */
			int owner[5];

			for (h = 0; h < 5; h++)
				owner[h] = rand_r(&seed) % 4 - 1; /* -1: none */
			for (q = 0; q < 4; q++) {
				bool any = q == 3, some = false;

				if (any && rand_r(&seed) % 3 == 0)
					continue;
				for (h = 0; h < 5 && !any; h++)
					some |= owner[h] == (int)q;
				if (!any && !some)
					continue;
				n += (size_t)snprintf(ini + n, sizeof ini - n,
				    "[service:s%zu]\nstable = v\n"
				    "path_prefix = %s\n",
				    nsvc, prefixes[p]);
				if (!any) {
					n += (size_t)snprintf(
					    ini + n, sizeof ini - n, "hosts =");
					for (h = 0; h < 5; h++) {
						if (owner[h] == (int)q)
							n += (size_t)snprintf(
							    ini + n,
							    sizeof ini - n,
							    " %s", hosts[h]);
					}
					n += (size_t)snprintf(
					    ini + n, sizeof ini - n, "\n");
				}
				n += (size_t)snprintf(ini + n, sizeof ini - n,
				    "[version:s%zu/v]\nservers = "
				    "127.0.0.1:2\n",
				    nsvc);
				nsvc++;
			}
		}
		if (nsvc < 16)
			continue;
		t = table_new(ini);
		assert_non_null(t->index);
		ix = t->index;
		for (p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
			for (h = 0;
			     h < sizeof asked_hosts / sizeof *asked_hosts;
			     h++) {
				for (q = 0; q < sizeof tails / sizeof *tails;
				     q++) {
					char path[64];
					const struct sl_route_service *a, *b;

					snprintf(path, sizeof path, "%s%s",
					    prefixes[p], tails[q]);
					a = match(t, asked_hosts[h], path);
					t->index = NULL; /* the scan */
					b = match(t, asked_hosts[h], path);
					t->index = ix;
					if (a != b)
						fail_msg("round %zu, host %s, "
						         "path %s: index %s, "
						         "scan %s",
						    round,
						    asked_hosts[h]
						        ? asked_hosts[h]
						        : "(none)",
						    path, a ? a->name : "none",
						    b ? b->name : "none");
					checked++;
				}
			}
		}
		/* A derived table has its own index, the same choices. */
		{
			struct sl_route_table *c = sl_route_clone(t);
			const struct sl_route_service *a =
			    match(t, "a.example", "/api/v1/x");

			assert_non_null(c->index);
			if (a == NULL)
				assert_null(match(c, "a.example", "/api/v1/x"));
			else
				assert_ptr_equal(
				    match(c, "a.example", "/api/v1/x"),
				    &c->services[a - t->services]);
			sl_route_free(c);
		}
		table_free(t);
	}
	assert_true(checked > 10000);
}

/* ---- user keys ---- */

/* The user key of request RAW under service 0 of T, or NULL. */
static char *
user_key(const struct sl_route_table *t, const char *raw, const char *ip)
{
	struct fake_req f;
	const char *key;
	size_t len;
	char *out = NULL;

	fake_req_init(&f, raw, ip);
	if (sl_route_user_key(t->services[0].conf, &f.req, &key, &len))
		out = strndup(key, len);
	fake_req_free(&f);
	return out;
}

/* Does user_key() give EXPECTED (NULL: no key)? */
#define ASSERT_KEY(raw, ip, expected)                                          \
	do {                                                                   \
		char *k_ = user_key(t, (raw), (ip));                           \
		if ((expected) == NULL)                                        \
			assert_null(k_);                                       \
		else {                                                         \
			assert_non_null(k_);                                   \
			assert_string_equal(k_, (expected));                   \
		}                                                              \
		free(k_);                                                      \
	} while (0)

static void
test_user_key_order(void **state)
{
	struct sl_route_table *t = table_new(SPLIT_CONF);

	(void)state;
	ASSERT_KEY("GET /?uid=q1 HTTP/1.1\r\nHost: x\r\nCookie: uid=c1\r\n"
	           "X-User-Id: h1\r\n\r\n",
	    "10.0.0.1", "h1");
	/* An empty header is skipped. */
	ASSERT_KEY("GET /?uid=q1 HTTP/1.1\r\nHost: x\r\nX-User-Id:\r\n"
	           "Cookie: uid=c1\r\n\r\n",
	    "10.0.0.1", "c1");
	ASSERT_KEY("GET /?uid=q1 HTTP/1.1\r\nHost: x\r\nX-User-Id: \r\n"
	           "x-user-id: h2\r\n\r\n",
	    "10.0.0.1", "h2");
	ASSERT_KEY("GET /?uid=q1 HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n",
	    "10.0.0.1", "q1");
	ASSERT_KEY("GET /p HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n",
	    "10.0.0.1", "10.0.0.1");
	ASSERT_KEY("GET /p HTTP/1.1\r\nHost: x\r\n\r\n", NULL, NULL);
	table_free(t);
}

static void
test_user_key_cookie(void **state)
{
	struct sl_route_table *t =
	    table_new(LISTENER "[service:s]\nstable = v\nsticky = cookie:uid\n"
	                       "[version:s/v]\nservers = 127.0.0.1:2\n");

	(void)state;
#define COOKIE(v, expected)                                                    \
	ASSERT_KEY("GET / HTTP/1.1\r\nHost: x\r\nCookie: " v "\r\n\r\n", NULL, \
	    (expected))
	COOKIE("a=1; uid=u7; b=2", "u7");
	COOKIE("uid=u7", "u7");
	COOKIE("a=1;uid=u7", "u7");
	COOKIE("uid=\"q7\"; b=2", "q7");
	COOKIE("uid=a=b", "a=b");
	COOKIE("xuid=1", NULL);
	COOKIE("xuid=1; uid=2", "2");
	COOKIE("uidx=1", NULL);
	COOKIE("UID=1", NULL);
	COOKIE("uid=", NULL);
	COOKIE("a=1; uid=; b=2", NULL);
	COOKIE("a=uid=3", NULL);
#undef COOKIE
	/* Several Cookie headers. */
	ASSERT_KEY("GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n"
	           "Cookie: uid=u8\r\n\r\n",
	    NULL, "u8");
	table_free(t);
}

static void
test_user_key_query(void **state)
{
	struct sl_route_table *t =
	    table_new(LISTENER "[service:s]\nstable = v\nsticky = query:uid\n"
	                       "[version:s/v]\nservers = 127.0.0.1:2\n");
	const char *v;
	size_t len;

	(void)state;
#define QUERY(q, expected)                                                     \
	ASSERT_KEY("GET " q " HTTP/1.1\r\nHost: x\r\n\r\n", NULL, (expected))
	QUERY("/?a=1&uid=u9", "u9");
	QUERY("/p?uid=u9&a=1", "u9");
	QUERY("/?uid=", NULL);
	QUERY("/?xuid=1&uid=2", "2");
	QUERY("/?xuid=1", NULL);
	QUERY("/?a=1&&uid=3", "3");
	QUERY("/uid=4", NULL);
	QUERY("/?uid", NULL);
#undef QUERY
	/* Direct call: the path need not be NUL-terminated. */
	assert_true(sl_route_query("/?uid=12345", 9, "uid", 3, &v, &len));
	assert_int_equal(len, 3);
	assert_memory_equal(v, "123", 3);
	table_free(t);
}

/* ---- version picking ---- */

#define PICK_CONF                                                              \
	LISTENER "[service:s]\n"                                               \
	         "stable = blue\n"                                             \
	         "sticky = header:X-User-Id\n"                                 \
	         "sticky_cookie = sl_b\n"                                      \
	         "override_secret = s3cret\n"                                  \
	         "override_networks = 10.0.0.0/8\n"                            \
	         "[version:s/blue]\nservers = 127.0.0.1:2\nweight = 50\n"      \
	         "[version:s/green]\nservers = 127.0.0.1:3\nweight = 50\n"     \
	         "[version:s/red]\nservers = 127.0.0.1:4\nweight = 0\n"        \
	         "[pin:s/staff]\nmatch = header:X-Employee=yes\n"              \
	         "version = red\n"                                             \
	         "[pin:s/qa]\nmatch = header:X-Team^=qa-\nversion = red\n"     \
	         "[pin:s/beta]\nmatch = cookie:beta^=tester\nversion = red\n"  \
	         "[pin:s/grp]\nmatch = cookie:grp=internal\nversion = red\n"

/* Pick a version for request RAW from IP under service 0 of T. */
static void
pick(const struct sl_route_table *t, const char *raw, const char *ip,
    struct sl_route_pick *p)
{
	struct fake_req f;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;

	fake_req_init(&f, raw, ip);
	memset(p, 0xff, sizeof *p);
	sl_route_pick_version(&t->services[0], &f.req, &rng, p);
	fake_req_free(&f);
	assert_ptr_equal(p->svc, &t->services[0]);
	assert_true(p->version < t->services[0].nversions);
}

#define REQ(hdrs) "GET / HTTP/1.1\r\nHost: x\r\n" hdrs "\r\n"

static void
test_pick_override(void **state)
{
	struct sl_route_table *t = table_new(PICK_CONF);
	size_t red = version_index(&t->services[0], "red");
	struct sl_route_pick p;

	(void)state;
	/* Secret right: forced, from any address. */
	pick(t, REQ("X-Sluice-Version: red\r\nX-Sluice-Secret: s3cret\r\n"),
	    "192.168.1.1", &p);
	assert_int_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_equal(p.version, red);
	assert_int_equal(p.override_ignored, SL_OVERRIDE_FOLLOWED);
	/* Secret wrong, a prefix of it, longer, or missing: not forced. */
	pick(t, REQ("X-Sluice-Version: red\r\nX-Sluice-Secret: wrong!\r\n"),
	    "192.168.1.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_not_equal(p.version, red);
	assert_int_equal(p.override_ignored, SL_OVERRIDE_UNPROVEN);
	pick(t, REQ("X-Sluice-Version: red\r\nX-Sluice-Secret: s3cre\r\n"),
	    "192.168.1.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	pick(t, REQ("X-Sluice-Version: red\r\nX-Sluice-Secret: s3crett\r\n"),
	    "192.168.1.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	pick(t, REQ("X-Sluice-Version: red\r\n"), "192.168.1.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_not_equal(p.version, red);
	/* From a trusted network: forced without a secret. */
	pick(t, REQ("X-Sluice-Version: red\r\n"), "10.20.30.40", &p);
	assert_int_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_equal(p.version, red);
	/* No address at all: not forced. */
	pick(t, REQ("X-Sluice-Version: red\r\n"), NULL, &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	/* An unknown version is never forced. */
	pick(t, REQ("X-Sluice-Version: purple\r\nX-Sluice-Secret: s3cret\r\n"),
	    "10.0.0.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_equal(p.override_ignored, SL_OVERRIDE_NO_VERSION);
	/* No override header: nothing ignored. */
	pick(t, REQ("X-Sluice-Secret: s3cret\r\n"), "192.168.1.1", &p);
	assert_int_equal(p.override_ignored, SL_OVERRIDE_FOLLOWED);
	table_free(t);

	/* Without a secret or networks the header is ignored. */
	t = table_new(LISTENER "[service:s]\nstable = blue\n"
	                       "[version:s/blue]\nservers = 127.0.0.1:2\n"
	                       "weight = 100\n"
	                       "[version:s/red]\nservers = 127.0.0.1:4\n"
	                       "weight = 0\n");
	pick(t, REQ("X-Sluice-Version: red\r\n"), "10.0.0.1", &p);
	assert_int_not_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_equal(p.version, version_index(&t->services[0], "blue"));
	table_free(t);
}

static void
test_pick_pins(void **state)
{
	struct sl_route_table *t = table_new(PICK_CONF);
	size_t red = version_index(&t->services[0], "red");
	struct sl_route_pick p;
	static const char *const pinned[] = {
	    REQ("X-User-Id: u1\r\nX-Employee: yes\r\n"),
	    REQ("X-User-Id: u1\r\nX-Team: qa-berlin\r\n"),
	    REQ("X-User-Id: u1\r\nX-Team: qa-\r\n"),
	    REQ("X-User-Id: u1\r\nCookie: beta=tester42\r\n"),
	    REQ("X-User-Id: u1\r\nCookie: a=1; grp=internal\r\n"),
	};
	static const char *const not_pinned[] = {
	    REQ("X-User-Id: u1\r\nX-Employee: yesno\r\n"),
	    REQ("X-User-Id: u1\r\nX-Employee: ye\r\n"),
	    REQ("X-User-Id: u1\r\nX-Team: qa\r\n"),
	    REQ("X-User-Id: u1\r\nX-Team: xqa-1\r\n"),
	    REQ("X-User-Id: u1\r\nCookie: beta=xtester\r\n"),
	    REQ("X-User-Id: u1\r\nCookie: grp=internal2\r\n"),
	    REQ("X-User-Id: u1\r\nX-Beta: tester\r\n"),
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
		pick(t, pinned[i], "192.168.1.1", &p);
		if (p.reason != SL_PICK_PIN || p.version != red)
			fail_msg("pinned case %zu: reason %d version %zu", i,
			    p.reason, p.version);
	}
	for (i = 0; i < sizeof not_pinned / sizeof not_pinned[0]; i++) {
		pick(t, not_pinned[i], "192.168.1.1", &p);
		if (p.reason != SL_PICK_KEY || p.version == red)
			fail_msg("unpinned case %zu: reason %d version %zu", i,
			    p.reason, p.version);
		assert_int_equal(
		    p.bucket, sl_route_bucket(t->services[0].seed, "u1", 2));
		assert_false(p.set_cookie);
	}
	/* A proven override still beats a pin. */
	pick(t, REQ("X-Employee: yes\r\nX-Sluice-Version: green\r\n"),
	    "10.0.0.1", &p);
	assert_int_equal(p.reason, SL_PICK_OVERRIDE);
	assert_int_equal(p.version, version_index(&t->services[0], "green"));
	table_free(t);
}

static void
test_pick_sticky_cookie(void **state)
{
	struct sl_route_table *t = table_new(PICK_CONF);
	const struct sl_route_service *svc = &t->services[0];
	struct sl_route_pick p;
	static const char *const garbage[] = {
	    REQ("Cookie: sl_b=abc\r\n"),
	    REQ("Cookie: sl_b=99999\r\n"),
	    REQ("Cookie: sl_b=-1\r\n"),
	    REQ("Cookie: sl_b=\r\n"),
	    REQ("Cookie: other=1234\r\n"),
	    REQ(""),
	};
	size_t i;

	(void)state;
	pick(t, REQ("Cookie: sl_b=1234\r\n"), "192.168.1.1", &p);
	assert_int_equal(p.reason, SL_PICK_COOKIE);
	assert_int_equal(p.bucket, 1234);
	assert_false(p.set_cookie);
	assert_int_equal(p.version, version_index(svc, "green"));
	assert_int_equal(p.version, sl_route_version_for_bucket(svc, 1234));
	pick(t, REQ("Cookie: sl_b=9999\r\n"), "192.168.1.1", &p);
	assert_int_equal(p.reason, SL_PICK_COOKIE);
	assert_int_equal(p.version, version_index(svc, "blue"));
	pick(t, REQ("Cookie: sl_b=0\r\n"), "192.168.1.1", &p);
	assert_int_equal(p.reason, SL_PICK_COOKIE);
	assert_int_equal(p.bucket, 0);

	/* A key source present wins over the cookie. */
	pick(t, REQ("X-User-Id: u1\r\nCookie: sl_b=1234\r\n"), "1.2.3.4", &p);
	assert_int_equal(p.reason, SL_PICK_KEY);
	assert_false(p.set_cookie);

	for (i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
		pick(t, garbage[i], "192.168.1.1", &p);
		if (p.reason != SL_PICK_RANDOM || !p.set_cookie ||
		    p.bucket >= SL_BUCKETS)
			fail_msg("garbage case %zu: reason %d set_cookie %d "
			         "bucket %u",
			    i, p.reason, p.set_cookie, p.bucket);
		assert_int_equal(
		    p.version, sl_route_version_for_bucket(svc, p.bucket));
	}
	table_free(t);

	/* Without sticky_cookie: random, and no cookie to set. */
	t = table_new(LISTENER "[service:s]\nstable = blue\n"
	                       "sticky = header:X-User-Id\n"
	                       "[version:s/blue]\nservers = 127.0.0.1:2\n");
	pick(t, REQ("Cookie: sl_b=1234\r\n"), "192.168.1.1", &p);
	assert_int_equal(p.reason, SL_PICK_RANDOM);
	assert_false(p.set_cookie);
	table_free(t);
}

static void
test_pick_random_spread(void **state)
{
	struct sl_route_table *t = table_new(PICK_CONF);
	const struct sl_route_service *svc = &t->services[0];
	size_t green = version_index(svc, "green");
	struct fake_req f;
	uint64_t rng = 42;
	unsigned n = 0;
	int i;

	(void)state;
	fake_req_init(&f, REQ(""), "192.168.1.1");
	for (i = 0; i < 10000; i++) {
		struct sl_route_pick p;

		sl_route_pick_version(svc, &f.req, &rng, &p);
		assert_int_equal(p.reason, SL_PICK_RANDOM);
		assert_true(p.bucket < SL_BUCKETS);
		n += p.version == green;
	}
	/* 50% of random picks land on green, give or take 3%. */
	assert_in_range(n, 4700, 5300);
	fake_req_free(&f);
	table_free(t);
}

/* ---- weight changes ---- */

static void
test_with_weights_errors(void **state)
{
	struct sl_route_table *t = table_new(SPLIT_CONF);
	uint32_t w[2] = {5000, 4000};
	char *err = NULL;

	(void)state;
	assert_null(sl_route_with_weights(t, 0, w, 0, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "90.00"));
	free(err);
	err = NULL;
	w[1] = 5001;
	assert_null(sl_route_with_weights(t, 0, w, 0, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "100.01"));
	free(err);
	err = NULL;
	w[1] = 5000;
	assert_null(sl_route_with_weights(t, 1, w, 0, &err));
	assert_non_null(err);
	free(err);
	table_free(t);
}

static void
test_with_weights_relayout(void **state)
{
	struct sl_route_table *t = table_new(SPLIT_CONF), *n;
	const struct sl_route_service *os = &t->services[0], *ns;
	size_t blue = version_index(os, "blue");
	size_t green = version_index(os, "green");
	uint32_t w[2];
	char *err = NULL;

	(void)state;
	/* Promote green to stable at 90%, blue keeps 10% as the canary. */
	w[blue] = 1000;
	w[green] = 9000;
	n = sl_route_with_weights(t, 0, w, green, &err);
	assert_non_null(n);
	assert_null(err);
	ns = &n->services[0];
	assert_ptr_equal(n->conf, t->conf);
	assert_int_equal(ns->stable, green);
	assert_int_equal(ns->versions[blue].weight, 1000);
	assert_int_equal(ns->versions[blue].bucket_lo, 0);
	assert_int_equal(ns->versions[blue].bucket_hi, 1000);
	assert_int_equal(ns->versions[green].bucket_lo, 1000);
	assert_int_equal(ns->versions[green].bucket_hi, 10000);
	assert_int_equal(sl_route_version_for_bucket(ns, 500), blue);
	assert_int_equal(sl_route_version_for_bucket(ns, 5000), green);
	assert_layout_covers(ns);
	/* Server lists are copied, ids kept. */
	assert_ptr_not_equal(
	    ns->versions[blue].servers, os->versions[blue].servers);
	assert_int_equal(
	    ns->versions[blue].servers[0].id, os->versions[blue].servers[0].id);
	assert_int_equal(ns->versions[blue].id, os->versions[blue].id);
	/* The old table is untouched. */
	assert_int_equal(os->stable, blue);
	assert_int_equal(os->versions[green].bucket_lo, 0);
	assert_int_equal(os->versions[green].bucket_hi, 1000);
	assert_int_equal(os->versions[blue].weight, 9000);
	/* Same weights, same stable: same layout. */
	{
		struct sl_route_table *same;

		w[blue] = 9000;
		w[green] = 1000;
		same = sl_route_with_weights(t, 0, w, blue, &err);
		assert_non_null(same);
		assert_int_equal(
		    same->services[0].versions[green].bucket_hi, 1000);
		assert_int_equal(
		    same->services[0].versions[blue].bucket_lo, 1000);
		sl_route_free(same);
	}
	sl_route_free(n);
	table_free(t);
}

/* INI text of one service with versions v0..vN-1 and, with EXTRA, also
 * x0..xEXTRA-1 (all on one server; v0 takes the traffic). Heap. */
static char *
many_versions(int n, int extra)
{
	size_t cap = 128 + (size_t)(n + extra) * 64, len;
	char *ini = malloc(cap);
	int i;

	assert_non_null(ini);
	len = (size_t)snprintf(ini, cap,
	    "[sluice]\ncontrol_socket = /tmp/sl-unit.sock\n"
	    "[listener:l]\nbind = 127.0.0.1:1\n[service:m]\nstable = v0\n");
	for (i = 0; i < n + extra; i++)
		len += (size_t)snprintf(ini + len, cap - len,
		    "[version:m/%c%d]\nservers = 127.0.0.1:2\nweight = %d\n",
		    i < n ? 'v' : 'x', i < n ? i : i - n, i == 0 ? 100 : 0);
	return ini;
}

/* A reload past SL_MAX_VERSION_IDS names at once is refused with a
 * reason, not fatal, and the names it brought are forgotten, so the next
 * reload without them goes through with the ids it had. */
static void
test_version_id_limit(void **state)
{
	char *ini = many_versions(3000, 0), *more = many_versions(3000, 1200);
	struct sl_route_table *t = table_new(ini), *again;
	struct sl_config *conf;
	char *err = NULL;
	uint32_t ids = t->nversion_ids;

	(void)state;
	conf = sl_conf_load_string("t.ini", more, &err);
	assert_non_null(conf);
	assert_null(sl_route_build(conf, &err));
	assert_non_null(err);
	assert_non_null(
	    strstr(err, "more than 4096 service/version names at once"));
	free(err);
	sl_conf_free(conf);
	again = table_new(ini);
	assert_int_equal(again->nversion_ids, ids);
	/* every name found again (the registry's index, rebuilt after the
	 * refused build's names went) */
	for (size_t i = 0; i < 3000; i++)
		assert_int_equal(again->services[0].versions[i].id,
		    t->services[0].versions[i].id);
	table_free(again);
	table_free(t);
	free(ini);
	free(more);
}

/* Forget every version id no table routes to. */
static void
forget_unused(void)
{
	uint8_t *used = malloc(SL_MAX_VERSION_IDS);
	uint32_t n, id;

	assert_non_null(used);
	n = sl_route_versions_in_use(used);
	for (id = 0; id < n; id++) {
		if (!used[id])
			sl_route_forget_version(id);
	}
	free(used);
}

/* Ids no table routes to any more are given to new names: reloads that
 * name every release anew do not run out of ids. */
static void
test_version_ids_reused(void **state)
{
	char *a = many_versions(1500, 0), *b = many_versions(1, 1499);
	struct sl_route_table *first = table_new(a), *second, *third;
	uint32_t high;

	(void)state;
	sl_route_publish(first);
	forget_unused();       /* the other tests' names */
	second = table_new(b); /* v0 and x0..x1498: 1499 new names */
	high = second->nversion_ids;
	sl_route_publish(second);
	sl_route_reclaim(UINT64_MAX); /* no worker holds the first */
	forget_unused();
	/* v1..v1499 are free again: the first's names, back, take them. */
	third = table_new(a);
	assert_int_equal(third->nversion_ids, high);
	assert_int_equal(third->services[0].versions[0].id,
	    second->services[0].versions[0].id); /* v0 kept its id */
	table_free(third);
	free(a);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_formula),
	    cmocka_unit_test(test_split_accuracy),
	    cmocka_unit_test(test_bucket_layout),
	    cmocka_unit_test(test_monotonic_growth),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_match_index),
	    cmocka_unit_test(test_user_key_order),
	    cmocka_unit_test(test_user_key_cookie),
	    cmocka_unit_test(test_user_key_query),
	    cmocka_unit_test(test_pick_override),
	    cmocka_unit_test(test_pick_pins),
	    cmocka_unit_test(test_pick_sticky_cookie),
	    cmocka_unit_test(test_pick_random_spread),
	    cmocka_unit_test(test_with_weights_errors),
	    cmocka_unit_test(test_with_weights_relayout),
	    cmocka_unit_test(test_version_id_limit),
	    cmocka_unit_test(test_version_ids_reused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

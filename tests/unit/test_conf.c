/*
 * test_conf.c — unit tests for the config loader (conf/load.c): value
 * parsers, a full config with every key, defaults, every error message
 * with its "file:line: " prefix, long lines, continuation lines and the
 * sample configs in conf/.
 */
#include "config.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/xmalloc.h"

/* A valid config of six lines; error cases append from line 7. */
#define BASE                                                                   \
	"[listener:main]\n"                                                    \
	"bind = 127.0.0.1:8080\n"                                              \
	"[service:shop]\n"                                                     \
	"stable = blue\n"                                                      \
	"[version:shop/blue]\n"                                                \
	"servers = 127.0.0.1:9000\n"

/* Load TEXT, which must be valid; prints the errors if it is not. */
static struct sl_config *
load_ok(const char *text)
{
	char *err = NULL;
	struct sl_config *conf = sl_conf_load_string("t.ini", text, &err);

	if (conf == NULL) {
		print_error("unexpected errors:\n%s\n", err ? err : "(none)");
		free(err);
		fail();
	}
	assert_null(err);
	return conf;
}

/* Load TEXT, which must be invalid; returns the errors (caller frees). */
static char *
load_err(const char *text)
{
	char *err = NULL;
	struct sl_config *conf = sl_conf_load_string("t.ini", text, &err);

	if (conf != NULL) {
		sl_conf_free(conf);
		fail_msg("config loaded, but an error was expected");
	}
	assert_non_null(err);
	return err;
}

/* Is LINE one whole line of ERR? */
static bool
has_line(const char *err, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = err; p != NULL; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	}
	return false;
}

static size_t
count_lines(const char *err)
{
	size_t n = 1;

	for (; *err != '\0'; err++)
		n += *err == '\n';
	return n;
}

static uint16_t
port_of(const struct sl_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)&a->ss)
		                 ->sin_port);
	return ntohs(
	    ((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_port);
}

/* ---- value parsers ---- */

static void
test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint32_t ms;
	} good[] = {
	    {"250ms", 250},
	    {"10s", 10000},
	    {"2m", 120000},
	    {"1h", 3600000},
	    {"5", 5000},
	    {"24h", 86400000},
	    {"86400", 86400000},
	    {"1ms", 1},
	};
	static const char *bad[] = {"", "0", "0ms", "25h", "86401", "10x",
	    "1.5s", "-1s", "s", " 10s", "10 s", "99999999999999999999"};
	uint32_t ms;
	const char *why;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(
		    sl_conf_parse_duration(good[i].s, &ms, &why), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(sl_conf_parse_duration(bad[i], &ms, &why), -1);
		assert_non_null(why);
	}
	sl_conf_parse_duration("10x", &ms, &why);
	assert_string_equal(why, "unknown unit (use ms, s, m or h)");
	sl_conf_parse_duration("0", &ms, &why);
	assert_string_equal(why, "must be greater than zero");
	sl_conf_parse_duration("25h", &ms, &why);
	assert_string_equal(why, "must be at most 24h");
	/* WHY may be NULL. */
	assert_int_equal(sl_conf_parse_duration("x", &ms, NULL), -1);
}

static void
test_parse_weight(void **state)
{
	static const struct {
		const char *s;
		uint32_t w;
	} good[] = {
	    {"12.34", 1234},
	    {"0.01", 1},
	    {"100%", 10000},
	    {"100", 10000},
	    {"100.00", 10000},
	    {"12.5", 1250},
	    {"0", 0},
	    {"0.5%", 50},
	    {"7", 700},
	};
	static const char *bad[] = {"", "12.345", "100.01", "101", "-1", "1e2",
	    "12.", ".5", "5%%", "5 %", "abc", "1000"};
	uint32_t w;
	const char *why;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(sl_conf_parse_weight(good[i].s, &w, &why), 0);
		assert_int_equal(w, good[i].w);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(sl_conf_parse_weight(bad[i], &w, &why), -1);
		assert_non_null(why);
	}
	sl_conf_parse_weight("12.345", &w, &why);
	assert_string_equal(why, "more than two decimals");
	sl_conf_parse_weight("100.01", &w, &why);
	assert_string_equal(why, "must be between 0 and 100");
}

static void
test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint32_t n;
	} good[] = {
	    {"100", 100},
	    {"16k", 16384},
	    {"16K", 16384},
	    {"1m", 1048576},
	    {"2M", 2097152},
	    {"0", 0},
	    {"4095m", 4095u * 1048576u},
	};
	static const char *bad[] = {
	    "", "k", "1g", "16kb", "-1", "1.5k", "4096m", "4294967296", "16 k"};
	uint32_t n;
	const char *why;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(sl_conf_parse_size(good[i].s, &n, &why), 0);
		assert_int_equal(n, good[i].n);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(sl_conf_parse_size(bad[i], &n, &why), -1);
		assert_non_null(why);
	}
}

static void
test_parse_addr(void **state)
{
	static const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
	    "127.0.0.1:65536", "127.0.0.1:http", ":8080", "::1:8080",
	    "[::1]8080", "[::1:8080", "[127.0.0.1]:80", "[]:80"};
	struct sl_addr a;
	const struct sockaddr_in *sin = (const void *)&a.ss;
	const struct sockaddr_in6 *sin6 = (const void *)&a.ss;
	const char *why;
	char buf[INET6_ADDRSTRLEN];

	assert_int_equal(sl_conf_parse_addr("127.0.0.1:8080", &a, &why), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(port_of(&a), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_string_equal(a.text, "127.0.0.1:8080");
	free(a.text);

	assert_int_equal(sl_conf_parse_addr("[::1]:443", &a, &why), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(port_of(&a), 443);
	inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
	assert_string_equal(buf, "::1");
	free(a.text);

	assert_int_equal(sl_conf_parse_addr("*:8080", &a, &why), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(port_of(&a), 8080);
	assert_string_equal(a.text, "*:8080");
	free(a.text);

	assert_int_equal(sl_conf_parse_addr("0.0.0.0:1", &a, &why), 0);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(port_of(&a), 1);
	free(a.text);

	assert_int_equal(sl_conf_parse_addr("[::]:65535", &a, &why), 0);
	assert_int_equal(port_of(&a), 65535);
	free(a.text);

	/* A name from /etc/hosts: resolved without the network. */
	assert_int_equal(sl_conf_parse_addr("localhost:80", &a, &why), 0);
	assert_int_equal(port_of(&a), 80);
	free(a.text);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		memset(&a, 0, sizeof a);
		if (sl_conf_parse_addr(bad[i], &a, &why) != -1)
			fail_msg("'%s' parsed as an address", bad[i]);
		assert_non_null(why);
		assert_null(a.text);
	}
	sl_conf_parse_addr("127.0.0.1:0", &a, &why);
	assert_string_equal(why, "port must be a number from 1 to 65535");
	sl_conf_parse_addr("::1:8080", &a, &why);
	assert_string_equal(why,
	    "IPv6 addresses need brackets, e.g. "
	    "[::1]:8080");
}

static void
test_parse_cidr(void **state)
{
	static const char *bad[] = {"", "10.0.0.0/33", "::/129", "10.0.0.1/8",
	    "10.0.0.0/", "10.0.0.0/x", "foo", "10.0.0/8", "/8", "fd00::1/8",
	    "10.0.0.0/-1"};
	struct sl_cidr c;
	const char *why;

	assert_int_equal(sl_conf_parse_cidr("10.0.0.0/8", &c, &why), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(c.addr[0], 10);

	assert_int_equal(sl_conf_parse_cidr("127.0.0.1", &c, &why), 0);
	assert_int_equal(c.prefix, 32);

	assert_int_equal(sl_conf_parse_cidr("::1", &c, &why), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	assert_int_equal(c.addr[15], 1);

	assert_int_equal(sl_conf_parse_cidr("0.0.0.0/0", &c, &why), 0);
	assert_int_equal(c.prefix, 0);
	assert_int_equal(sl_conf_parse_cidr("fd00::/8", &c, &why), 0);
	assert_int_equal(c.prefix, 8);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		if (sl_conf_parse_cidr(bad[i], &c, &why) != -1)
			fail_msg("'%s' parsed as a CIDR", bad[i]);
		assert_non_null(why);
	}
	sl_conf_parse_cidr("10.0.0.1/8", &c, &why);
	assert_string_equal(
	    why, "address has bits set beyond the prefix length");
}

/* Does the literal address IP fall into CIDR? */
static bool
matches(const char *cidr, const char *ip)
{
	struct sl_cidr c;
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (void *)&ss;
	struct sockaddr_in6 *sin6 = (void *)&ss;
	const char *why;

	assert_int_equal(sl_conf_parse_cidr(cidr, &c, &why), 0);
	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
		ss.ss_family = AF_INET6;
	}
	return sl_cidr_match(&c, (const struct sockaddr *)&ss);
}

static void
test_cidr_match(void **state)
{
	/* IPv4 */
	assert_true(matches("10.0.0.0/8", "10.1.2.3"));
	assert_true(matches("10.0.0.0/8", "10.255.255.255"));
	assert_false(matches("10.0.0.0/8", "11.0.0.1"));
	assert_false(matches("10.0.0.0/8", "9.255.255.255"));
	assert_true(matches("172.16.0.0/12", "172.31.255.1"));
	assert_false(matches("172.16.0.0/12", "172.32.0.1"));
	assert_true(matches("192.168.1.10", "192.168.1.10"));
	assert_false(matches("192.168.1.10", "192.168.1.11"));
	assert_true(matches("0.0.0.0/0", "203.0.113.9"));
	assert_false(matches("10.0.0.0/8", "::1"));
	/* An IPv4 client seen by a dual-stack socket. */
	assert_true(matches("10.0.0.0/8", "::ffff:10.9.8.7"));
	assert_false(matches("10.0.0.0/8", "::ffff:11.9.8.7"));

	/* IPv6 */
	assert_true(matches("::1", "::1"));
	assert_false(matches("::1", "::2"));
	assert_true(matches("fd00::/8", "fd12:3456::1"));
	assert_false(matches("fd00::/8", "fe80::1"));
	assert_true(matches("2001:db8::/33", "2001:db8:7fff::1"));
	assert_false(matches("2001:db8::/33", "2001:db8:8000::1"));
	assert_true(matches("::/0", "2001:db8::1"));
	assert_false(matches("fd00::/8", "10.0.0.1"));
}

/* ---- whole configs ---- */

/* A config with every key set to something other than its default. */
static const char full_config[] =
    "; every key\n"                                     /* 1 */
    "[sluice]\n"                                        /* 2 */
    "workers = 4\n"                                     /* 3 */
    "control_socket = /tmp/t/control.sock\n"            /* 4 */
    "admin = 127.0.0.1:9901 ; metrics\n"                /* 5 */
    "state_file = /tmp/t/state.ini\n"                   /* 6 */
    "header_timeout = 5s\n"                             /* 7 */
    "keepalive_timeout = 2m\n"                          /* 8 */
    "connect_timeout = 250ms\n"                         /* 9 */
    "response_timeout = 1h\n"                           /* 10 */
    "body_timeout = 45\n"                               /* 11 */
    "max_header_size = 32k\n"                           /* 12 */
    "max_headers = 50\n"                                /* 13 */
    "max_connections = 20000\n"                         /* 14 */
    "upstream_keepalive = 0\n"                          /* 15 */
    "\n"                                                /* 16 */
    "[listener:main]\n"                                 /* 17 */
    "bind = *:8080\n"                                   /* 18 */
    "[listener:v6]\n"                                   /* 19 */
    "bind = [::1]:8081\n"                               /* 20 */
    "\n"                                                /* 21 */
    "[service:checkout]\n"                              /* 22 */
    "hosts = Shop.Example.COM:443, www.example.com\n"   /* 23 */
    "path_prefix = /checkout\n"                         /* 24 */
    "sticky = header:X-User-Id cookie:uid query:u\n"    /* 25 */
    "seed = checkout-2026\n"                            /* 26 */
    "stable = blue\n"                                   /* 27 */
    "sticky_cookie = sluice_b\n"                        /* 28 */
    "expose_version = on\n"                             /* 29 */
    "override_header = X-Force-Version\n"               /* 30 */
    "override_secret = s3cret\n"                        /* 31 */
    "override_secret_header = X-Force-Secret\n"         /* 32 */
    "override_networks = 10.0.0.0/8, ::1 192.168.1.1\n" /* 33 */
    "[version:checkout/blue]\n"                         /* 34 */
    "servers = 127.0.0.1:9000 127.0.0.1:9001=5\n"       /* 35 */
    "weight = 87.5%\n"                                  /* 36 */
    "[version:checkout/green]\n"                        /* 37 */
    "servers = [::1]:9002=1000\n"                       /* 38 */
    "weight = 12.5\n"                                   /* 39 */
    "[rollout:checkout]\n"                              /* 40 */
    "steps = 0.5 2 10 50.25 100\n"                      /* 41 */
    "step_time = 5m\n"                                  /* 42 */
    "interval = 30s\n"                                  /* 43 */
    "min_requests = 1000\n"                             /* 44 */
    "max_error_rate = 0.5%\n"                           /* 45 */
    "max_latency_ratio = 2.25\n"                        /* 46 */
    "latency_quantile = 0.95\n"                         /* 47 */
    "[pin:checkout/staff]\n"                            /* 48 */
    "match = header:X-Employee^=emp-\n"                 /* 49 */
    "version = green\n"                                 /* 50 */
    "[pin:checkout/beta]\n"                             /* 51 */
    "match = cookie:beta=1\n"                           /* 52 */
    "version = blue\n";                                 /* 53 */

static void
test_full_config(void **state)
{
	struct sl_config *c = load_ok(full_config);
	const struct sl_global_conf *g = &c->global;
	const struct sl_service_conf *s;
	const struct sl_version_conf *v;
	const struct sl_rollout_conf *r;

	assert_string_equal(c->path, "t.ini");
	assert_int_equal(g->workers, 4);
	assert_string_equal(g->control_socket, "/tmp/t/control.sock");
	assert_true(g->has_admin);
	assert_string_equal(g->admin_text, "127.0.0.1:9901");
	assert_string_equal(g->admin.text, "127.0.0.1:9901");
	assert_int_equal(port_of(&g->admin), 9901);
	assert_string_equal(g->state_file, "/tmp/t/state.ini");
	assert_int_equal(g->header_timeout_ms, 5000);
	assert_int_equal(g->keepalive_timeout_ms, 120000);
	assert_int_equal(g->connect_timeout_ms, 250);
	assert_int_equal(g->response_timeout_ms, 3600000);
	assert_int_equal(g->body_timeout_ms, 45000);
	assert_int_equal(g->max_header_size, 32768);
	assert_int_equal(g->max_headers, 50);
	assert_int_equal(g->max_connections, 20000);
	assert_int_equal(g->upstream_keepalive, 0);

	assert_int_equal(c->nlisteners, 2);
	assert_string_equal(c->listeners[0].name, "main");
	assert_int_equal(c->listeners[0].line, 17);
	assert_string_equal(c->listeners[0].bind.text, "*:8080");
	assert_int_equal(port_of(&c->listeners[0].bind), 8080);
	assert_null(c->listeners[0].tls_cert);
	assert_null(c->listeners[0].tls_key);
	assert_int_equal(c->listeners[1].bind.ss.ss_family, AF_INET6);
	assert_int_equal(c->listeners[1].line, 19);

	assert_int_equal(c->nservices, 1);
	s = &c->services[0];
	assert_string_equal(s->name, "checkout");
	assert_int_equal(s->line, 22);
	assert_int_equal(s->nhosts, 2);
	assert_string_equal(s->hosts[0], "shop.example.com");
	assert_string_equal(s->hosts[1], "www.example.com");
	assert_string_equal(s->path_prefix, "/checkout");
	assert_int_equal(s->nkeys, 3);
	assert_int_equal(s->keys[0].source, SL_KEY_HEADER);
	assert_string_equal(s->keys[0].name, "X-User-Id");
	assert_int_equal(s->keys[1].source, SL_KEY_COOKIE);
	assert_string_equal(s->keys[1].name, "uid");
	assert_int_equal(s->keys[2].source, SL_KEY_QUERY);
	assert_string_equal(s->keys[2].name, "u");
	assert_string_equal(s->seed, "checkout-2026");
	assert_string_equal(s->stable, "blue");
	assert_string_equal(s->sticky_cookie, "sluice_b");
	assert_true(s->expose_version);
	assert_string_equal(s->override_header, "X-Force-Version");
	assert_string_equal(s->override_secret, "s3cret");
	assert_string_equal(s->override_secret_header, "X-Force-Secret");
	assert_int_equal(s->noverride_networks, 3);
	assert_int_equal(s->override_networks[0].family, AF_INET);
	assert_int_equal(s->override_networks[0].prefix, 8);
	assert_int_equal(s->override_networks[1].family, AF_INET6);
	assert_int_equal(s->override_networks[1].prefix, 128);
	assert_int_equal(s->override_networks[2].prefix, 32);

	assert_int_equal(s->nversions, 2);
	v = sl_conf_version(s, "blue");
	assert_non_null(v);
	assert_int_equal(v->line, 34);
	assert_int_equal(v->weight, 8750);
	assert_int_equal(v->nservers, 2);
	assert_string_equal(v->servers[0].addr.text, "127.0.0.1:9000");
	assert_int_equal(v->servers[0].weight, 1);
	assert_string_equal(v->servers[1].addr.text, "127.0.0.1:9001");
	assert_int_equal(port_of(&v->servers[1].addr), 9001);
	assert_int_equal(v->servers[1].weight, 5);
	v = sl_conf_version(s, "green");
	assert_non_null(v);
	assert_int_equal(v->weight, 1250);
	assert_int_equal(v->nservers, 1);
	assert_string_equal(v->servers[0].addr.text, "[::1]:9002");
	assert_int_equal(v->servers[0].weight, 1000);
	assert_null(sl_conf_version(s, "red"));

	r = &s->rollout;
	assert_true(r->present);
	assert_int_equal(r->line, 40);
	assert_int_equal(r->nsteps, 5);
	assert_int_equal(r->steps[0], 50);
	assert_int_equal(r->steps[1], 200);
	assert_int_equal(r->steps[2], 1000);
	assert_int_equal(r->steps[3], 5025);
	assert_int_equal(r->steps[4], 10000);
	assert_int_equal(r->step_time_ms, 300000);
	assert_int_equal(r->interval_ms, 30000);
	assert_int_equal(r->min_requests, 1000);
	assert_true(r->max_error_rate == 0.005);
	assert_true(r->max_latency_ratio == 2.25);
	assert_true(r->latency_quantile == 0.95);

	assert_int_equal(s->npins, 2);
	assert_string_equal(s->pins[0].name, "staff");
	assert_int_equal(s->pins[0].line, 48);
	assert_int_equal(s->pins[0].source, SL_KEY_HEADER);
	assert_string_equal(s->pins[0].field, "X-Employee");
	assert_int_equal(s->pins[0].op, SL_MATCH_PREFIX);
	assert_string_equal(s->pins[0].value, "emp-");
	assert_string_equal(s->pins[0].version, "green");
	assert_int_equal(s->pins[1].source, SL_KEY_COOKIE);
	assert_string_equal(s->pins[1].field, "beta");
	assert_int_equal(s->pins[1].op, SL_MATCH_EQUALS);
	assert_string_equal(s->pins[1].value, "1");
	assert_string_equal(s->pins[1].version, "blue");
	sl_conf_free(c);
}

static void
test_defaults(void **state)
{
	struct sl_config *c = load_ok(BASE);
	const struct sl_global_conf *g = &c->global;
	const struct sl_service_conf *s = &c->services[0];
	const struct sl_rollout_conf *r = &s->rollout;

	assert_int_equal(g->workers, 0);
	assert_string_equal(g->control_socket, "/run/sluice/control.sock");
	assert_false(g->has_admin);
	assert_null(g->admin_text);
	assert_string_equal(g->state_file, "/var/lib/sluice/state.ini");
	assert_int_equal(g->header_timeout_ms, 10000);
	assert_int_equal(g->keepalive_timeout_ms, 60000);
	assert_int_equal(g->connect_timeout_ms, 3000);
	assert_int_equal(g->response_timeout_ms, 30000);
	assert_int_equal(g->body_timeout_ms, 30000);
	assert_int_equal(g->max_header_size, 16384);
	assert_int_equal(g->max_headers, 100);
	assert_int_equal(g->max_connections, 10000);
	assert_int_equal(g->upstream_keepalive, 256);

	assert_int_equal(s->nhosts, 0);
	assert_string_equal(s->path_prefix, "/");
	assert_int_equal(s->nkeys, 1);
	assert_int_equal(s->keys[0].source, SL_KEY_IP);
	assert_string_equal(s->seed, "shop");
	assert_null(s->sticky_cookie);
	assert_false(s->expose_version);
	assert_string_equal(s->override_header, "X-Sluice-Version");
	assert_null(s->override_secret);
	assert_string_equal(s->override_secret_header, "X-Sluice-Secret");
	assert_int_equal(s->noverride_networks, 0);
	assert_int_equal(s->npins, 0);
	assert_int_equal(s->versions[0].weight, 10000);
	assert_int_equal(s->versions[0].servers[0].weight, 1);

	/* No [rollout:shop], yet the parameters have their defaults. */
	assert_false(r->present);
	assert_int_equal(r->line, 0);
	assert_int_equal(r->nsteps, 5);
	assert_int_equal(r->steps[0], 100);
	assert_int_equal(r->steps[1], 500);
	assert_int_equal(r->steps[2], 2500);
	assert_int_equal(r->steps[3], 5000);
	assert_int_equal(r->steps[4], 10000);
	assert_int_equal(r->step_time_ms, 60000);
	assert_int_equal(r->interval_ms, 5000);
	assert_int_equal(r->min_requests, 200);
	assert_true(r->max_error_rate == 0.01);
	assert_true(r->max_latency_ratio == 1.5);
	assert_true(r->latency_quantile == 0.99);
	sl_conf_free(c);
}

/* An empty [rollout:] section means "present, with defaults". */
static void
test_empty_rollout_section(void **state)
{
	struct sl_config *c = load_ok(BASE "[rollout:shop]\n");

	assert_true(c->services[0].rollout.present);
	assert_int_equal(c->services[0].rollout.line, 7);
	assert_int_equal(c->services[0].rollout.nsteps, 5);
	sl_conf_free(c);
}

/* sticky_cookie without sticky: the cookie, not the address, keeps
 * anonymous users (the default source ip would leave it nothing). */
static void
test_sticky_cookie_sources(void **state)
{
	struct sl_config *c;

	(void)state;
	c = load_ok("[listener:a]\nbind = 127.0.0.1:1\n"
	            "[service:s]\nstable = v\nsticky_cookie = b\n"
	            "[version:s/v]\nservers = 127.0.0.1:2\n");
	assert_int_equal(c->services[0].nkeys, 0);
	assert_string_equal(c->services[0].sticky_cookie, "b");
	sl_conf_free(c);
	c = load_ok("[listener:a]\nbind = 127.0.0.1:1\n"
	            "[service:s]\nstable = v\nsticky_cookie = b\n"
	            "sticky = header:X-A\n"
	            "[version:s/v]\nservers = 127.0.0.1:2\n");
	assert_int_equal(c->services[0].nkeys, 1);
	sl_conf_free(c);
}

static void
test_weight_defaults(void **state)
{
	struct sl_config *c;
	const struct sl_service_conf *s;

	/* No weights at all: the stable version gets everything. */
	c = load_ok("[listener:a]\nbind = 127.0.0.1:1\n"
	            "[service:s]\nstable = green\n"
	            "[version:s/blue]\nservers = 127.0.0.1:2\n"
	            "[version:s/green]\nservers = 127.0.0.1:3\n");
	s = &c->services[0];
	assert_int_equal(sl_conf_version(s, "blue")->weight, 0);
	assert_int_equal(sl_conf_version(s, "green")->weight, 10000);
	sl_conf_free(c);

	/* Some weights: the unset ones are 0, even the stable one. */
	c = load_ok("[listener:a]\nbind = 127.0.0.1:1\n"
	            "[service:s]\nstable = blue\n"
	            "[version:s/blue]\nservers = 127.0.0.1:2\n"
	            "[version:s/green]\nservers = 127.0.0.1:3\nweight = 100\n"
	            "[version:s/red]\nservers = 127.0.0.1:4\n");
	s = &c->services[0];
	assert_int_equal(sl_conf_version(s, "blue")->weight, 0);
	assert_int_equal(sl_conf_version(s, "green")->weight, 10000);
	assert_int_equal(sl_conf_version(s, "red")->weight, 0);
	sl_conf_free(c);
}

/* Sections may come in any order: versions, pins and rollouts first. */
static void
test_section_order(void **state)
{
	struct sl_config *c = load_ok("[pin:s/p]\nmatch = cookie:a=b\n"
	                              "version = v2\n"
	                              "[rollout:s]\nsteps = 50 100\n"
	                              "[version:s/v2]\nservers = 127.0.0.1:3\n"
	                              "weight = 0\n"
	                              "[version:s/v1]\nservers = 127.0.0.1:2\n"
	                              "weight = 100\n"
	                              "[service:s]\nstable = v1\n"
	                              "[listener:a]\nbind = 127.0.0.1:1\n"
	                              "[sluice]\nworkers = 1\n");
	const struct sl_service_conf *s = &c->services[0];

	assert_int_equal(s->nversions, 2);
	assert_int_equal(s->npins, 1);
	assert_true(s->rollout.present);
	assert_int_equal(s->rollout.nsteps, 2);
	assert_int_equal(c->global.workers, 1);
	assert_int_equal(s->line, 12);
	sl_conf_free(c);
}

/* 300 servers on one line (~5000 bytes), far beyond inih's 200. */
static void
test_long_servers_line(void **state)
{
	size_t cap = 64 * 1024, len = 0;
	char *text = sl_xmalloc(cap), *err;
	char name[200];
	struct sl_config *c;
	const struct sl_version_conf *v;

	/* A version name long enough to overflow inih's section buffer. */
	memset(name, 'v', 63);
	name[63] = '\0';
	len += (size_t)snprintf(text + len, cap - len,
	    "[listener:a]\nbind = 127.0.0.1:1\n"
	    "[service:s]\nstable = %s\n[version:s/%s]\nservers =",
	    name, name);
	for (int i = 0; i < 300; i++)
		len +=
		    (size_t)snprintf(text + len, cap - len, " 127.0.0.%d:%d%s",
		        1 + i % 200, 10000 + i, i % 7 == 0 ? "=3" : "");
	len += (size_t)snprintf(text + len, cap - len,
	    "   ; a comment at the end of a long line\n"
	    "weight = 100\n");
	assert_true(len > 4000);

	c = load_ok(text);
	v = &c->services[0].versions[0];
	assert_string_equal(v->name, name);
	assert_int_equal(v->nservers, 300);
	assert_string_equal(v->servers[0].addr.text, "127.0.0.1:10000");
	assert_int_equal(v->servers[0].weight, 3);
	assert_int_equal(v->servers[1].weight, 1);
	assert_string_equal(v->servers[299].addr.text, "127.0.0.100:10299");
	assert_int_equal(port_of(&v->servers[299].addr), 10299);
	assert_int_equal(v->weight, 10000);
	sl_conf_free(c);

	/* Line numbers stay right after a long line, and a long value in
	 * an error message is kept whole. */
	len = (size_t)snprintf(text, cap,
	    "[listener:a]\nbind = 127.0.0.1:1\n[service:s]\nstable = b\n"
	    "[version:s/b]\nservers =");
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(
		    text + len, cap - len, " 127.0.0.1:%d", 10000 + i);
	snprintf(text + len, cap - len, "\nwieght = 100\n");
	err = load_err(text);
	assert_string_equal(
	    err, "t.ini:7: unknown key 'wieght' in [version:s/b]");
	free(err);
	free(text);
}

/* A long unknown key, a long continuation line and a long comment. */
static void
test_long_other_lines(void **state)
{
	char key[400], list[4000], comment[500], *text, *err, *expect;
	size_t n = 0;
	struct sl_config *c;

	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	memset(comment, 'c', sizeof comment - 1);
	comment[0] = ';';
	comment[sizeof comment - 1] = '\0';
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(
		    list + n, sizeof list - n, "127.0.1.%d:80 ", i + 1);

	text = sl_xasprintf("%s\n" BASE "%s = 1\n", comment, key);
	err = load_err(text);
	expect = sl_xasprintf("t.ini:8: unknown key '%s' in "
	                      "[version:shop/blue]",
	    key);
	assert_string_equal(err, expect);
	free(expect);
	free(err);
	free(text);

	text = sl_xasprintf(BASE "  %s ; trailing comment\n"
	                         "\t%s\n",
	    list, comment);
	c = load_ok(text);
	assert_int_equal(c->services[0].versions[0].nservers, 151);
	assert_string_equal(c->services[0].versions[0].servers[150].addr.text,
	    "127.0.1.150:80");
	sl_conf_free(c);
	free(text);
}

/* Indented lines continue list keys, with or without a first value. */
static void
test_continuation(void **state)
{
	struct sl_config *c = load_ok("[listener:a]\nbind = 127.0.0.1:1\n"
	                              "[service:s]\n"
	                              "stable = b\n"
	                              "sticky =\n"
	                              "    header:X-User ; who\n"
	                              "\n"
	                              "    cookie:uid,\n"
	                              "\tip\n"
	                              "hosts = a.example\n"
	                              "  B.example:8080\n"
	                              "[version:s/b]\n"
	                              "servers = 127.0.0.1:2\n"
	                              "   127.0.0.1:3=2, 127.0.0.1:4\n"
	                              "; a comment between\n"
	                              "   127.0.0.1:5\n");
	const struct sl_service_conf *s = &c->services[0];

	assert_int_equal(s->nkeys, 3);
	assert_string_equal(s->keys[0].name, "X-User");
	assert_string_equal(s->keys[1].name, "uid");
	assert_int_equal(s->keys[2].source, SL_KEY_IP);
	assert_int_equal(s->nhosts, 2);
	assert_string_equal(s->hosts[1], "b.example");
	assert_int_equal(s->versions[0].nservers, 4);
	assert_int_equal(s->versions[0].servers[1].weight, 2);
	assert_string_equal(s->versions[0].servers[3].addr.text, "127.0.0.1:5");
	sl_conf_free(c);
}

/* Messages name the file as given, CRLF and a BOM are accepted. */
static void
test_load_file(void **state)
{
	char path[] = "/tmp/test_conf_XXXXXX";
	int fd = mkstemp(path);
	FILE *f;
	char *err = NULL, *expect;
	struct sl_config *c;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("\xEF\xBB\xBF[listener:main]\r\nbind = 127.0.0.1:8080\r\n"
	      "[service:shop]\r\nstable = blue\r\n"
	      "[version:shop/blue]\r\nservers = 127.0.0.1:9000\r\n",
	    f);
	fclose(f);
	c = sl_conf_load(path, &err);
	assert_null(err);
	assert_non_null(c);
	assert_string_equal(c->path, path);
	assert_string_equal(c->listeners[0].name, "main");
	assert_int_equal(c->services[0].versions[0].line, 5);
	sl_conf_free(c);

	f = fopen(path, "a");
	assert_non_null(f);
	fputs("color = blue\n", f);
	fclose(f);
	assert_null(sl_conf_load(path, &err));
	expect = sl_xasprintf("%s:7: unknown key 'color' in "
	                      "[version:shop/blue]",
	    path);
	assert_string_equal(err, expect);
	free(expect);
	free(err);
	unlink(path);

	assert_null(sl_conf_load("/nonexistent/sluice.ini", &err));
	assert_string_equal(err,
	    "/nonexistent/sluice.ini: cannot open: No "
	    "such file or directory");
	free(err);
	/* errp may be NULL. */
	assert_null(sl_conf_load("/nonexistent/sluice.ini", NULL));
	assert_null(sl_conf_load_string("t.ini", "", NULL));
}

/* TLS files must exist and be readable. */
static void
test_tls_files(void **state)
{
	char cert[] = "/tmp/test_conf_cert_XXXXXX";
	char key[] = "/tmp/test_conf_key_XXXXXX";
	int fc = mkstemp(cert), fk = mkstemp(key);
	char *text, *err;
	struct sl_config *c;

	assert_true(fc >= 0 && fk >= 0);
	close(fc);
	close(fk);
	text = sl_xasprintf("[listener:tls]\nbind = 127.0.0.1:8443\n"
	                    "tls_cert = %s\ntls_key = %s\n"
	                    "[service:s]\nstable = b\n"
	                    "[version:s/b]\nservers = 127.0.0.1:2\n",
	    cert, key);
	c = load_ok(text);
	assert_string_equal(c->listeners[0].tls_cert, cert);
	assert_string_equal(c->listeners[0].tls_key, key);
	sl_conf_free(c);
	free(text);
	unlink(cert);
	unlink(key);

	text = sl_xasprintf("[listener:tls]\nbind = 127.0.0.1:8443\n"
	                    "tls_cert = %s\ntls_key = %s\n"
	                    "[service:s]\nstable = b\n"
	                    "[version:s/b]\nservers = 127.0.0.1:2\n",
	    cert, key);
	err = load_err(text);
	assert_int_equal(count_lines(err), 2);
	assert_non_null(strstr(err,
	    "t.ini:3: [listener:tls] tls_cert: cannot "
	    "read '/tmp/test_conf_cert_"));
	assert_non_null(strstr(err,
	    "': No such file or directory\nt.ini:4: "
	    "[listener:tls] tls_key: cannot read"));
	free(err);
	free(text);
}

/* One file with many mistakes: every one is reported, in line order. */
static void
test_multiple_errors(void **state)
{
	static const char text[] =
	    "[sluice]\n"                            /* 1 */
	    "workers = many\n"                      /* 2 */
	    "header_timeout = 0\n"                  /* 3 */
	    "[listener:main]\n"                     /* 4 */
	    "bind = 127.0.0.1\n"                    /* 5 */
	    "[service:shop]\n"                      /* 6 */
	    "stable = blue\n"                       /* 7 */
	    "colour = red\n"                        /* 8 */
	    "[version:shop/blue]\n"                 /* 9 */
	    "servers = 127.0.0.1:9000\n"            /* 10 */
	    "weight = 50\n"                         /* 11 */
	    "[version:shop/blue]\n"                 /* 12 */
	    "[oops]\n"                              /* 13 */
	    "key = ignored in an unknown section\n" /* 14 */
	    "[rollout:shop]\n"                      /* 15 */
	    "steps = 10 5\n"                        /* 16 */
	    "this line is nonsense\n";              /* 17 */
	char *err = load_err(text);

	assert_string_equal(err,
	    "t.ini:2: [sluice] workers: invalid value 'many': use auto or a "
	    "number from 1 to 256\n"
	    "t.ini:3: [sluice] header_timeout: invalid duration '0': must be "
	    "greater than zero\n"
	    "t.ini:5: [listener:main] bind: invalid address '127.0.0.1': "
	    "expected HOST:PORT\n"
	    "t.ini:6: [service:shop]: weights of versions sum to 50.00, must "
	    "be 100.00\n"
	    "t.ini:8: unknown key 'colour' in [service:shop]\n"
	    "t.ini:12: duplicate section [version:shop/blue] (first at line "
	    "9)\n"
	    "t.ini:13: unknown section [oops]\n"
	    "t.ini:16: [rollout:shop] steps: steps must be strictly "
	    "increasing ('5' follows '10')\n"
	    "t.ini:17: expected 'key = value' or '[section]', got 'this line "
	    "is nonsense'");
	free(err);
}

/* The sample configs in conf/ load without errors. */
static void
test_sample_configs(void **state)
{
	const char *top = getenv("SL_TOP_SRCDIR");
	char *path, *err = NULL;
	struct sl_config *c;
	const struct sl_service_conf *s;

	if (top == NULL) {
		print_message("SL_TOP_SRCDIR is not set: skipped\n");
		skip();
	}
	path = sl_xasprintf("%s/conf/sluice.ini", top);
	c = sl_conf_load(path, &err);
	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->nlisteners, 2);
	assert_int_equal(c->nservices, 2);
	s = &c->services[0];
	assert_int_equal(s->nkeys, 3);
	assert_int_equal(sl_conf_version(s, "green")->nservers, 2);
	assert_int_equal(s->npins, 1);
	assert_true(s->rollout.present);
	sl_conf_free(c);
	free(path);

	path = sl_xasprintf("%s/conf/demo.ini", top);
	c = sl_conf_load(path, &err);
	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->global.workers, 2);
	assert_string_equal(
	    c->global.control_socket, "/tmp/sluice-demo/control.sock");
	assert_string_equal(c->global.admin_text, "127.0.0.1:18091");
	assert_string_equal(c->global.state_file, "/tmp/sluice-demo/state.ini");
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].bind.text, "127.0.0.1:18080");
	s = &c->services[0];
	assert_string_equal(s->name, "shop");
	assert_string_equal(s->path_prefix, "/");
	assert_int_equal(s->nkeys, 2);
	assert_string_equal(s->seed, "shop-demo");
	assert_string_equal(s->stable, "blue");
	assert_string_equal(s->sticky_cookie, "sluice_b");
	assert_true(s->expose_version);
	assert_int_equal(sl_conf_version(s, "blue")->weight, 10000);
	assert_int_equal(sl_conf_version(s, "green")->weight, 0);
	assert_int_equal(sl_conf_version(s, "red")->weight, 0);
	assert_string_equal(sl_conf_version(s, "green")->servers[0].addr.text,
	    "127.0.0.1:18082");
	assert_int_equal(s->rollout.nsteps, 4);
	assert_int_equal(s->rollout.steps[0], 1000);
	assert_int_equal(s->rollout.step_time_ms, 8000);
	assert_int_equal(s->rollout.interval_ms, 2000);
	assert_int_equal(s->rollout.min_requests, 50);
	assert_true(s->rollout.max_error_rate == 0.02);
	sl_conf_free(c);
	free(path);
}

/* ---- one test per error message ---- */

struct error_case {
	const char *name;
	const char *text;
	const char *expect; /* one whole line of the errors */
};

static const struct error_case error_cases[] = {
    {"unknown_key", BASE "wieght = 10\n",
        "t.ini:7: unknown key 'wieght' in [version:shop/blue]"},
    {"unknown_section", BASE "[frobnicate]\n",
        "t.ini:7: unknown section [frobnicate]"},
    {"unknown_section_with_name", BASE "[sluice:x]\n",
        "t.ini:7: unknown section [sluice:x]"},
    {"section_without_name", BASE "[service]\n",
        "t.ini:7: section [service] needs a name: [service:NAME]"},
    {"section_without_service", BASE "[version:blue]\n",
        "t.ini:7: section [version:blue] must be written "
        "[version:SERVICE/NAME]"},
    {"section_bad_name", BASE "[service:a b]\n",
        "t.ini:7: invalid name in [service:a b]: names are 1 to 63 "
        "characters of A-Z a-z 0-9 _ . -"},
    {"section_name_too_long",
        BASE "[listener:"
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaaaaaaaaaaaaaaaa]\n",
        "t.ini:7: invalid name in [listener:"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]: "
        "names are 1 to 63 characters of A-Z a-z 0-9 _ . -"},
    {"version_named_previous", BASE "[version:shop/previous]\n",
        "t.ini:7: invalid name in [version:shop/previous]: 'previous' is "
        "reserved: `switch SVC previous` names the previous stable "
        "version"},
    {"version_named_json", BASE "[version:shop/--json]\n",
        "t.ini:7: invalid name in [version:shop/--json]: '--json' is "
        "reserved: sluicectl reads it as its option wherever it is"},
    {"service_named_json", BASE "[service:--json]\n",
        "t.ini:7: invalid name in [service:--json]: '--json' is reserved: "
        "sluicectl reads it as its option wherever it is"},
    {"section_missing_bracket", BASE "[service:x\n",
        "t.ini:7: missing ']' in section header"},
    {"section_trailing_text", BASE "[service:x] y\n",
        "t.ini:7: unexpected text after ']'"},
    {"duplicate_section", BASE "[service:shop]\nstable = blue\n",
        "t.ini:7: duplicate section [service:shop] (first at line 3)"},
    {"duplicate_sluice", "[sluice]\n" BASE "[sluice]\n",
        "t.ini:8: duplicate section [sluice] (first at line 1)"},
    {"duplicate_key", BASE "servers = 127.0.0.1:9001\n",
        "t.ini:7: duplicate key 'servers' in [version:shop/blue] (first at "
        "line 6)"},
    {"key_outside_section", "workers = 2\n" BASE,
        "t.ini:1: key 'workers' outside of any section (add a section "
        "header such as [sluice] above it)"},
    {"syntax_error", BASE "servers 127.0.0.1\n",
        "t.ini:7: expected 'key = value' or '[section]', got 'servers "
        "127.0.0.1'"},
    {"missing_key_name", BASE "= 5\n", "t.ini:7: missing key name before '='"},
    {"empty_value", BASE "[sluice]\nstate_file =\n",
        "t.ini:8: [sluice] state_file: empty value"},
    {"empty_list", BASE "[sluice]\n[service:x]\nhosts = ,\nstable = b\n",
        "t.ini:9: [service:x] hosts: empty list"},
    {"continuation_of_scalar", BASE "[sluice]\nstate_file = /a\n  /b\n",
        "t.ini:9: [sluice] state_file: indented line continues a key that "
        "takes one value (only lists may span lines)"},
    {"weights_sum",
        BASE "weight = 60\n[version:shop/green]\nservers = 127.0.0.1:9001\n"
             "weight = 30\n",
        "t.ini:3: [service:shop]: weights of versions sum to 90.00, must be "
        "100.00"},
    {"weights_sum_decimals", BASE "weight = 99.99\n",
        "t.ini:3: [service:shop]: weights of versions sum to 99.99, must be "
        "100.00"},
    {"weight_three_decimals", BASE "weight = 12.345\n",
        "t.ini:7: [version:shop/blue] weight: invalid weight '12.345': more "
        "than two decimals"},
    {"weight_over_100", BASE "weight = 100.5\n",
        "t.ini:7: [version:shop/blue] weight: invalid weight '100.5': must be "
        "between 0 and 100"},
    {"stable_missing",
        "[listener:main]\nbind = 127.0.0.1:8080\n[service:shop]\n"
        "[version:shop/blue]\nservers = 127.0.0.1:9000\n",
        "t.ini:3: [service:shop]: missing required key 'stable'"},
    {"stable_unknown",
        "[listener:main]\nbind = 127.0.0.1:8080\n[service:shop]\n"
        "stable = purple\n[version:shop/blue]\nservers = 127.0.0.1:9000\n",
        "t.ini:4: [service:shop] stable: no version 'purple' in service "
        "'shop'"},
    {"service_without_versions",
        BASE "[service:cart]\nstable = a\n"
             "path_prefix = /cart\n",
        "t.ini:7: [service:cart]: no versions (add a [version:cart/NAME] "
        "section)"},
    {"version_of_undefined_service",
        BASE "[version:cart/blue]\nservers = 127.0.0.1:9001\n",
        "t.ini:7: [version:cart/blue]: service 'cart' is not defined (no "
        "[service:cart] section)"},
    {"rollout_of_undefined_service", BASE "[rollout:cart]\n",
        "t.ini:7: [rollout:cart]: service 'cart' is not defined (no "
        "[service:cart] section)"},
    {"pin_of_undefined_service",
        BASE "[pin:cart/x]\nmatch = cookie:a=b\nversion = blue\n",
        "t.ini:7: [pin:cart/x]: service 'cart' is not defined (no "
        "[service:cart] section)"},
    {"pin_unknown_version",
        BASE "[pin:shop/staff]\nmatch = header:X-Staff=1\nversion = green\n",
        "t.ini:9: [pin:shop/staff] version: no version 'green' in service "
        "'shop'"},
    {"pin_missing_match", BASE "[pin:shop/staff]\nversion = blue\n",
        "t.ini:7: [pin:shop/staff]: missing required key 'match'"},
    {"pin_bad_match",
        BASE "[pin:shop/staff]\nmatch = query:a=b\n"
             "version = blue\n",
        "t.ini:8: [pin:shop/staff] match: invalid rule 'query:a=b': use "
        "header:NAME=VALUE, header:NAME^=PREFIX, cookie:NAME=VALUE or "
        "cookie:NAME^=PREFIX"},
    {"pin_bad_header_name",
        BASE "[pin:shop/staff]\nmatch = header:X "
             "Y=1\nversion = blue\n",
        "t.ini:8: [pin:shop/staff] match: invalid header name 'X Y' in "
        "'header:X Y=1'"},
    {"pin_empty_value",
        BASE "[pin:shop/staff]\nmatch = cookie:a^=\n"
             "version = blue\n",
        "t.ini:8: [pin:shop/staff] match: nothing to match after '=' in "
        "'cookie:a^='"},
    {"bad_address", "[listener:x]\nbind = 127.0.0.1\n" BASE,
        "t.ini:2: [listener:x] bind: invalid address '127.0.0.1': "
        "expected HOST:PORT"},
    {"bad_address_v6", BASE "[sluice]\nadmin = ::1:9901\n",
        "t.ini:8: [sluice] admin: invalid address '::1:9901': IPv6 addresses "
        "need brackets, e.g. [::1]:8080"},
    {"bad_port", "[listener:x]\nbind = 127.0.0.1:70000\n" BASE,
        "t.ini:2: [listener:x] bind: invalid address '127.0.0.1:70000': "
        "port must be a number from 1 to 65535"},
    {"bad_server", BASE "[version:shop/green]\nservers = 127.0.0.1:0\n",
        "t.ini:8: [version:shop/green] servers: invalid server "
        "'127.0.0.1:0': port must be a number from 1 to 65535"},
    {"bad_server_weight",
        BASE "[version:shop/green]\nservers = 127.0.0.1:1=1001\n",
        "t.ini:8: [version:shop/green] servers: invalid server "
        "'127.0.0.1:1=1001': weight must be a number from 1 to 1000"},
    {"duplicate_server",
        BASE "[version:shop/green]\nservers = 127.0.0.1:1 127.0.0.1:2, "
             "127.0.0.1:1=4\n",
        "t.ini:8: [version:shop/green] servers: server '127.0.0.1:1' is "
        "listed twice"},
    {"servers_missing", BASE "[version:shop/green]\nweight = 0\n",
        "t.ini:7: [version:shop/green]: missing required key 'servers'"},
    {"duplicate_bind", BASE "[listener:other]\nbind = 127.0.0.1:8080\n",
        "t.ini:8: [listener:other] bind: address '127.0.0.1:8080' is already "
        "bound by [listener:main] (line 1)"},
    {"duplicate_bind_any",
        "[listener:a]\nbind = *:80\n[listener:b]\n"
        "bind = 0.0.0.0:80\n[service:shop]\nstable = b\n"
        "[version:shop/b]\nservers = 127.0.0.1:1\n",
        "t.ini:4: [listener:b] bind: address '0.0.0.0:80' is already bound "
        "by [listener:a] (line 1)"},
    /* SO_REUSEPORT lets one address, however written, be bound twice and
     * splits its connections at random: refused. */
    {"bind_overlaps_v4_mapped",
        "[listener:a]\nbind = 127.0.0.1:80\n[listener:b]\n"
        "bind = [::ffff:127.0.0.1]:80\n[service:shop]\nstable = b\n"
        "[version:shop/b]\nservers = 127.0.0.1:1\n",
        "t.ini:4: [listener:b] bind: address '[::ffff:127.0.0.1]:80' "
        "overlaps '127.0.0.1:80' of [listener:a] (line 1): an IPv4-mapped "
        "IPv6 address is that IPv4 address"},
    {"admin_on_listener", BASE "[sluice]\nadmin = 127.0.0.1:8080\n",
        "t.ini:8: [sluice] admin: address '127.0.0.1:8080' is already bound "
        "by [listener:main] (line 1)"},
    {"admin_overlaps_listener",
        BASE "[sluice]\nadmin = [::ffff:127.0.0.1]:8080\n",
        "t.ini:8: [sluice] admin: address '[::ffff:127.0.0.1]:8080' "
        "overlaps '127.0.0.1:8080' of [listener:main] (line 1): an "
        "IPv4-mapped IPv6 address is that IPv4 address"},
    {"bind_missing", BASE "[listener:x]\n",
        "t.ini:7: [listener:x]: missing required key 'bind'"},
    {"bad_duration", BASE "[sluice]\nheader_timeout = 10x\n",
        "t.ini:8: [sluice] header_timeout: invalid duration '10x': unknown "
        "unit (use ms, s, m or h)"},
    {"duration_too_long", BASE "[sluice]\nbody_timeout = 25h\n",
        "t.ini:8: [sluice] body_timeout: invalid duration '25h': must be at "
        "most 24h"},
    {"bad_size", BASE "[sluice]\nmax_header_size = 12q\n",
        "t.ini:8: [sluice] max_header_size: invalid size '12q': unknown unit "
        "(use k or m)"},
    {"size_out_of_range", BASE "[sluice]\nmax_header_size = 2m\n",
        "t.ini:8: [sluice] max_header_size: size '2m' out of range (1k to "
        "1m)"},
    {"bad_number", BASE "[sluice]\nmax_headers = 0\n",
        "t.ini:8: [sluice] max_headers: invalid value '0': must be a number "
        "from 1 to 1000"},
    {"bad_workers", BASE "[sluice]\nworkers = 257\n",
        "t.ini:8: [sluice] workers: invalid value '257': use auto or a number "
        "from 1 to 256"},
    {"control_socket_too_long",
        BASE "[sluice]\ncontrol_socket = /"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock\n",
        "t.ini:8: [sluice] control_socket: path '/"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock' is too long "
        "for a Unix socket (at most 107 bytes)"},
    {"bad_bool", BASE "[service:x]\nexpose_version = maybe\n",
        "t.ini:8: [service:x] expose_version: invalid value 'maybe': use yes "
        "or no"},
    {"bad_token", BASE "[service:x]\noverride_header = X Version\n",
        "t.ini:8: [service:x] override_header: invalid name 'X Version': use "
        "letters, digits and !#$%&'*+-.^_`|~"},
    {"bad_cidr",
        BASE "[service:x]\noverride_networks = 10.0.0.0/8 "
             "10.0.0.0/33\n",
        "t.ini:8: [service:x] override_networks: invalid network "
        "'10.0.0.0/33': prefix length must be 0..32"},
    {"bad_sticky_source",
        BASE "[service:x]\nsticky = header:X-User "
             "ipaddr\n",
        "t.ini:8: [service:x] sticky: unknown source 'ipaddr' (use "
        "header:NAME, cookie:NAME, query:NAME or ip)"},
    {"bad_sticky_header", BASE "[service:x]\nsticky = header:X(User)\n",
        "t.ini:8: [service:x] sticky: invalid name in 'header:X(User)'"},
    {"sticky_after_ip", BASE "[service:x]\nsticky = ip cookie:uid\n",
        "t.ini:8: [service:x] sticky: 'cookie:uid' comes after 'ip', which "
        "is always present, so it would never be used"},
    {"sticky_cookie_with_ip",
        BASE "[service:x]\nsticky = header:X-A ip\nsticky_cookie = b\n",
        "t.ini:9: [service:x] sticky_cookie: never used, since 'ip' in "
        "sticky gives every request a key (drop ip from sticky)"},
    {"secret_header_framing",
        BASE "[service:x]\noverride_secret = s\n"
             "override_secret_header = Content-Length\n",
        "t.ini:9: [service:x] override_secret_header: 'Content-Length' "
        "frames the request body; sluice drops the secret's header from "
        "forwarded requests (use a header of its own, like "
        "X-Sluice-Secret)"},
    {"secret_header_cgi_spelling",
        BASE "[service:x]\noverride_secret_header = transfer_encoding\n",
        "t.ini:8: [service:x] override_secret_header: 'transfer_encoding' "
        "frames the request body; sluice drops the secret's header from "
        "forwarded requests (use a header of its own, like "
        "X-Sluice-Secret)"},
    {"secret_header_host", BASE "[service:x]\noverride_secret_header = HOST\n",
        "t.ini:8: [service:x] override_secret_header: 'HOST' routes the "
        "request; sluice drops the secret's header from forwarded requests "
        "(use a header of its own, like X-Sluice-Secret)"},
    {"secret_header_sluice_owned",
        BASE "[service:x]\noverride_secret_header = X-Client-Cert-Dn\n",
        "t.ini:8: [service:x] override_secret_header: 'X-Client-Cert-Dn' "
        "is set by sluice; sluice drops the secret's header from forwarded "
        "requests (use a header of its own, like X-Sluice-Secret)"},
    {"secret_header_is_override_header",
        BASE "[service:x]\noverride_header = X-V\n"
             "override_secret_header = x-v\n",
        "t.ini:9: [service:x] override_secret_header: 'x-v' is also "
        "override_header; the version and the secret need headers of "
        "their own"},
    {"server_any_address",
        "[listener:main]\nbind = 127.0.0.1:8080\n"
        "[service:x]\nstable = a\n[version:x/a]\nservers = *:80\n",
        "t.ini:6: [version:x/a] servers: invalid server '*:80': '*', "
        "0.0.0.0 and [::] mean any local address to a listener, not a "
        "server to connect to"},
    {"override_header_is_default_secret_header",
        BASE "[service:x]\noverride_header = x-sluice-secret\n",
        "t.ini:8: [service:x] override_header: 'X-Sluice-Secret' is also "
        "override_secret_header; the version and the secret need headers "
        "of their own"},
    {"sticky_twice", BASE "[service:x]\nsticky = header:X-A header:x-a\n",
        "t.ini:8: [service:x] sticky: source 'header:x-a' is listed twice"},
    {"bad_path_prefix", BASE "[service:x]\npath_prefix = api\n",
        "t.ini:8: [service:x] path_prefix: 'api' must start with '/'"},
    {"bad_host", BASE "[service:x]\nhosts = a.example b/c\n",
        "t.ini:8: [service:x] hosts: invalid host 'b/c'"},
    {"host_twice", BASE "[service:x]\nhosts = a.example A.example:80\n",
        "t.ini:8: [service:x] hosts: host 'a.example' is listed twice"},
    {"ambiguous_routing",
        BASE "[service:cart]\nstable = a\n[version:cart/a]\n"
             "servers = 127.0.0.1:1\n",
        "t.ini:7: [service:cart]: ambiguous routing: same hosts and "
        "path_prefix '/' as [service:shop] (line 3)"},
    {"ambiguous_routing_hosts",
        "[listener:main]\nbind = 127.0.0.1:8080\n"
        "[service:a]\nstable = v\nhosts = x.example y.example\n"
        "[version:a/v]\nservers = 127.0.0.1:1\n"
        "[service:b]\nstable = v\nhosts = Y.EXAMPLE\n"
        "[version:b/v]\nservers = 127.0.0.1:1\n",
        "t.ini:8: [service:b]: ambiguous routing: same hosts and path_prefix "
        "'/' as [service:a] (line 3)"},
    {"interval_over_step_time",
        BASE "[rollout:shop]\nstep_time = 10s\ninterval = 20s\n",
        "t.ini:9: [rollout:shop]: interval (20s) must not be longer than "
        "step_time (10s)"},
    {"interval_over_default_step_time", BASE "[rollout:shop]\ninterval = 90s\n",
        "t.ini:8: [rollout:shop]: interval (90s) must not be longer than "
        "step_time (1m)"},
    {"steps_not_increasing", BASE "[rollout:shop]\nsteps = 1 25 5 100\n",
        "t.ini:8: [rollout:shop] steps: steps must be strictly increasing "
        "('5' follows '25')"},
    {"steps_only_100", BASE "[rollout:shop]\nsteps = 100\n",
        "t.ini:8: [rollout:shop] steps: '100' has no step below 100, where "
        "the analyzer would judge the canary (for a cut-over without one, "
        "use switch)"},
    {"steps_equal", BASE "[rollout:shop]\nsteps = 10 10\n",
        "t.ini:8: [rollout:shop] steps: steps must be strictly increasing "
        "('10' follows '10')"},
    {"step_zero", BASE "[rollout:shop]\nsteps = 0 50\n",
        "t.ini:8: [rollout:shop] steps: invalid step '0': must be greater "
        "than 0"},
    {"step_bad", BASE "[rollout:shop]\nsteps = 5 120\n",
        "t.ini:8: [rollout:shop] steps: invalid step '120': must be between "
        "0 and 100"},
    {"bad_error_rate", BASE "[rollout:shop]\nmax_error_rate = 0\n",
        "t.ini:8: [rollout:shop] max_error_rate: invalid rate '0': use a "
        "percentage in (0%, 100%] such as 1%, or a fraction in (0, 1] such "
        "as 0.01"},
    {"error_rate_over_one", BASE "[rollout:shop]\nmax_error_rate = 1.5\n",
        "t.ini:8: [rollout:shop] max_error_rate: invalid rate '1.5': use a "
        "percentage in (0%, 100%] such as 1%, or a fraction in (0, 1] such "
        "as 0.01"},
    {"bad_latency_ratio", BASE "[rollout:shop]\nmax_latency_ratio = 1\n",
        "t.ini:8: [rollout:shop] max_latency_ratio: invalid ratio '1': must "
        "be a number greater than 1 and at most 100"},
    {"bad_quantile", BASE "[rollout:shop]\nlatency_quantile = 1.0\n",
        "t.ini:8: [rollout:shop] latency_quantile: invalid quantile '1.0': "
        "must be a number between 0 and 1, such as 0.99"},
    {"bad_min_requests", BASE "[rollout:shop]\nmin_requests = 0\n",
        "t.ini:8: [rollout:shop] min_requests: invalid value '0': must be a "
        "number from 1 to 1000000000"},
    {"tls_cert_without_key",
        "[listener:main]\nbind = 127.0.0.1:8443\ntls_cert = /etc/cert.pem\n"
        "[service:shop]\nstable = b\n[version:shop/b]\n"
        "servers = 127.0.0.1:1\n",
        "t.ini:1: [listener:main]: tls_cert and tls_key must be set together "
        "(tls_key is missing)"},
    {"tls_key_without_cert",
        "[listener:main]\nbind = 127.0.0.1:8443\ntls_key = /etc/key.pem\n"
        "[service:shop]\nstable = b\n[version:shop/b]\n"
        "servers = 127.0.0.1:1\n",
        "t.ini:1: [listener:main]: tls_cert and tls_key must be set together "
        "(tls_cert is missing)"},
    {"tls_min_version_bad",
        BASE "[listener:t]\nbind = 127.0.0.1:8443\ntls_min_version = 1.1\n",
        "t.ini:9: [listener:t] tls_min_version: invalid version '1.1': use "
        "1.2 or 1.3"},
    {"tls_min_version_plain",
        BASE "[listener:t]\nbind = 127.0.0.1:8443\ntls_min_version = 1.3\n",
        "t.ini:9: [listener:t] tls_min_version: only for TLS listeners (set "
        "tls_cert and tls_key)"},
    {"tls_ocsp_plain",
        BASE "[listener:t]\nbind = 127.0.0.1:8443\ntls_ocsp = /x.der\n",
        "t.ini:9: [listener:t] tls_ocsp: only for TLS listeners (set "
        "tls_cert and tls_key)"},
    {"tls_ticket_rotation_short",
        BASE "[sluice]\ntls_ticket_rotation = 500ms\n",
        "t.ini:8: [sluice] tls_ticket_rotation: '500ms' is too short (at "
        "least 1s)"},
    {"cert_missing_key", BASE "[cert:x]\ncert = /nonexistent/c.pem\n",
        "t.ini:7: [cert:x]: missing required key 'key'"},
    {"cert_unreadable",
        BASE "[cert:x]\ncert = /nonexistent/c.pem\nkey = /nonexistent/k\n",
        "t.ini:8: [cert:x] cert: cannot read '/nonexistent/c.pem': No such "
        "file or directory"},
    {"cert_no_tls_listener",
        BASE "[cert:x]\ncert = /nonexistent/c.pem\nkey = /nonexistent/k\n",
        "t.ini:7: [cert:x]: no TLS listener to serve it (set tls_cert and "
        "tls_key on a [listener:NAME])"},
    {"cert_plain_listener",
        BASE "[cert:x]\ncert = /n/c.pem\nkey = /n/k\nlisteners = main\n",
        "t.ini:10: [cert:x] listeners: [listener:main] is not a TLS "
        "listener (set tls_cert and tls_key)"},
    {"cert_unknown_listener",
        BASE "[cert:x]\ncert = /n/c.pem\nkey = /n/k\nlisteners = nope\n",
        "t.ini:10: [cert:x] listeners: no [listener:nope]"},
    {"cert_bad_name",
        BASE "[cert:x]\ncert = /n/c.pem\nkey = /n/k\nnames = a.example "
             "bad/name\n",
        "t.ini:10: [cert:x] names: invalid server name 'bad/name' (a DNS "
        "name, or *.domain)"},
    {"cert_wildcard_tld",
        BASE "[cert:x]\ncert = /n/c.pem\nkey = /n/k\nnames = *.com\n",
        "t.ini:10: [cert:x] names: invalid server name '*.com' (a DNS name, "
        "or *.domain)"},
    {"cert_name_twice",
        BASE "[cert:x]\ncert = /n/c.pem\nkey = /n/k\nnames = A.example "
             "a.example\n",
        "t.ini:10: [cert:x] names: name 'a.example' is listed twice"},
    {"origin_tls_sni_bad", BASE "tls = yes\ntls_sni = bad_name\n",
        "t.ini:8: [version:shop/blue] tls_sni: invalid server name "
        "'bad_name' (a DNS name)"},
    {"origin_tls_verify_bad", BASE "tls = yes\ntls_verify = maybe\n",
        "t.ini:8: [version:shop/blue] tls_verify: invalid value 'maybe': "
        "use yes or no"},
    {"origin_tls_without_tls", BASE "tls_sni = a.example\n",
        "t.ini:7: [version:shop/blue] tls_sni: has no effect without tls = "
        "yes"},
    {"origin_tls_ca_unreadable", BASE "tls = yes\ntls_ca = /nonexistent\n",
        "t.ini:8: [version:shop/blue] tls_ca: cannot read '/nonexistent': No "
        "such file or directory"},
    {"origin_client_cert_without_key",
        BASE "tls = yes\ntls_client_cert = /nonexistent/c.pem\n",
        "t.ini:5: [version:shop/blue]: tls_client_cert and tls_client_key "
        "must be set together (tls_client_key is missing)"},
    {"service_client_key_without_cert",
        "[listener:main]\nbind = 127.0.0.1:8080\n[service:shop]\n"
        "stable = blue\ntls = yes\ntls_client_key = /nonexistent/k\n"
        "[version:shop/blue]\nservers = 127.0.0.1:9000\n",
        "t.ini:3: [service:shop]: tls_client_cert and tls_client_key must be "
        "set together (tls_client_cert is missing)"},
    {"no_listener",
        "[service:shop]\nstable = blue\n[version:shop/blue]\n"
        "servers = 127.0.0.1:9000\n",
        "t.ini:4: no [listener:NAME] section (at least one is required)"},
    {"no_service", "[sluice]\n[listener:main]\nbind = 127.0.0.1:1\n",
        "t.ini:3: no [service:NAME] section (at least one is required)"},
    {"empty_file", "",
        "t.ini:1: no [listener:NAME] section (at least one is required)"},
    /* What a message echoes from the file cannot drive a terminal: control
     * characters, C1 controls in UTF-8 and stray bytes are written as
     * \xNN; printable UTF-8 stays as it is. */
    {"escape_control_in_key", BASE "x\033[2J = 1\n",
        "t.ini:7: unknown key 'x\\x1b[2J' in [version:shop/blue]"},
    {"escape_c1_and_stray_bytes",
        BASE "[sluice]\nworkers = a\xc2\x9b"
             "b\xff\x7f\n",
        "t.ini:8: [sluice] workers: invalid value 'a\\xc2\\x9bb\\xff\\x7f': "
        "use auto or a number from 1 to 256"},
    {"escape_keeps_utf8", BASE "[sluice]\nworkers = d\xc3\xa9j\xc3\xa0\n",
        "t.ini:8: [sluice] workers: invalid value 'd\xc3\xa9j\xc3\xa0': use "
        "auto or a number from 1 to 256"},
};

/* A temporary file path (the file exists, empty); caller unlinks. */
static char *
temp_file(const char *tag)
{
	char *path = sl_xasprintf("/tmp/test_conf_%s_XXXXXX", tag);
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	return path;
}

/* Binds that do not share connections: other addresses or ports, and a
 * wildcard beside a specific address or the other family's wildcard (the
 * kernel gives each connection to the most specific listener). */
static void
test_binds_apart(void **state)
{
	static const char *const pairs[][2] = {
	    {"127.0.0.1:80", "127.0.0.2:80"},
	    {"127.0.0.1:80", "127.0.0.1:81"},
	    {"0.0.0.0:80", "[::1]:80"},
	    {"0.0.0.0:80", "0.0.0.0:81"},
	    {"[::]:80", "127.0.0.1:81"},
	    {"0.0.0.0:80", "127.0.0.1:80"},
	    {"[::]:80", "127.0.0.1:80"},
	    {"0.0.0.0:80", "[::]:80"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		char *text = sl_xasprintf("[sluice]\nadmin = 127.0.0.1:9901\n"
		                          "[listener:a]\nbind = %s\n"
		                          "[listener:b]\nbind = %s\n"
		                          "[service:shop]\nstable = b\n"
		                          "[version:shop/b]\n"
		                          "servers = 127.0.0.1:1\n",
		    pairs[i][0], pairs[i][1]);

		sl_conf_free(load_ok(text));
		free(text);
	}
}

/* TLS keys: listener, [cert:], origin TLS with service defaults. */
static void
test_tls_keys(void **state)
{
	char *cert = temp_file("cert"), *key = temp_file("key");
	char *ocsp = temp_file("ocsp"), *ca = temp_file("ca");
	char *text;
	struct sl_config *c;
	const struct sl_listener_conf *l;
	const struct sl_cert_conf *cc;
	const struct sl_service_conf *s;
	const struct sl_version_conf *v;

	text = sl_xasprintf(
	    "[sluice]\n"
	    "tls_ticket_rotation = 30m\n"               /* 2 */
	    "[listener:plain]\nbind = 127.0.0.1:8080\n" /* 3-4 */
	    "[listener:tls]\n"                          /* 5 */
	    "bind = 127.0.0.1:8443\n"
	    "tls_cert = %s\n" /* 7 */
	    "tls_key = %s\n"  /* 8 */
	    "tls_ocsp = %s\n" /* 9 */
	    "tls_min_version = 1.3\n"
	    "tls_ciphers = ECDHE-RSA-AES128-GCM-SHA256\n" /* 11 */
	    "[cert:api]\n"                                /* 12 */
	    "cert = %s\n"
	    "key = %s\n"
	    "names = API.example.com\n"
	    "  *.api.example.com\n"
	    "listeners = tls\n"
	    "[cert:other]\ncert = %s\nkey = %s\nocsp = %s\n" /* 18-21 */
	    "[service:s]\n"                                  /* 22 */
	    "stable = a\n"
	    "tls = yes\n" /* 24 */
	    "tls_ca = %s\n"
	    "tls_sni = Origin.Example\n"
	    "tls_client_cert = %s\n" /* 27 */
	    "tls_client_key = %s\n"
	    "[version:s/a]\nservers = 127.0.0.1:1\nweight = 100\n"
	    "[version:s/b]\nservers = 127.0.0.1:2\n"
	    "weight = 0\ntls_verify = no\ntls_sni = b.example\n"
	    "[service:p]\npath_prefix = /p\nstable = a\n" /* 36 */
	    "[version:p/a]\nservers = 127.0.0.1:3\n",
	    cert, key, ocsp, cert, key, cert, key, ocsp, ca, cert, key);
	c = load_ok(text);
	assert_int_equal(c->global.tls_ticket_rotation_ms, 30 * 60 * 1000);
	assert_null(c->listeners[0].tls_cert);
	assert_int_equal(c->listeners[0].tls_min_version, SL_TLS_1_2);
	l = &c->listeners[1];
	assert_string_equal(l->tls_cert, cert);
	assert_string_equal(l->tls_key, key);
	assert_string_equal(l->tls_ocsp, ocsp);
	assert_int_equal(l->tls_min_version, SL_TLS_1_3);
	assert_string_equal(l->tls_ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
	assert_int_equal(l->tls_cert_line, 7);
	assert_int_equal(l->tls_key_line, 8);
	assert_int_equal(l->tls_ocsp_line, 9);
	assert_int_equal(l->tls_ciphers_line, 11);
	assert_null(l->tls_ctx);

	assert_int_equal(c->ncerts, 2);
	cc = &c->certs[0];
	assert_string_equal(cc->name, "api");
	assert_int_equal(cc->line, 12);
	assert_int_equal(cc->cert_line, 13);
	assert_int_equal(cc->key_line, 14);
	assert_int_equal(cc->nnames, 2);
	assert_string_equal(cc->names[0], "api.example.com");
	assert_string_equal(cc->names[1], "*.api.example.com");
	assert_int_equal(cc->nlisteners, 1);
	assert_string_equal(cc->listeners[0], "tls");
	assert_null(cc->ocsp);
	cc = &c->certs[1];
	assert_int_equal(cc->nnames, 0);
	assert_int_equal(cc->nlisteners, 0);
	assert_string_equal(cc->ocsp, ocsp);
	assert_int_equal(cc->ocsp_line, 21);

	s = &c->services[0];
	assert_true(s->tls.enabled);
	v = sl_conf_version(s, "a"); /* inherits everything */
	assert_true(v->tls.enabled);
	assert_true(v->tls.verify);
	assert_string_equal(v->tls.ca, ca);
	assert_string_equal(v->tls.sni, "origin.example");
	assert_string_equal(v->tls.client_cert, cert);
	assert_string_equal(v->tls.client_key, key);
	assert_int_equal(v->tls.line, 24);
	assert_int_equal(v->tls.client_cert_line, 27);
	v = sl_conf_version(s, "b"); /* overrides verify and SNI */
	assert_true(v->tls.enabled);
	assert_false(v->tls.verify);
	assert_string_equal(v->tls.sni, "b.example");
	assert_string_equal(v->tls.ca, ca);
	s = &c->services[1]; /* defaults: plain HTTP, verify on */
	assert_false(s->tls.enabled);
	assert_true(s->tls.verify);
	assert_false(s->versions[0].tls.enabled);
	assert_null(s->versions[0].tls.ca);
	sl_conf_free(c);
	free(text);

	/* Defaults without [sluice]. */
	c = load_ok(BASE);
	assert_int_equal(c->global.tls_ticket_rotation_ms, 3600 * 1000);
	assert_int_equal(c->ncerts, 0);
	sl_conf_free(c);

	unlink(cert);
	unlink(key);
	unlink(ocsp);
	unlink(ca);
	free(cert);
	free(key);
	free(ocsp);
	free(ca);
}

/* A step_time or interval that does not parse is reported once, not
 * again as "interval longer than step_time". */
static void
test_bad_duration_reported_once(void **state)
{
	static const char *const texts[] = {
	    BASE "[rollout:shop]\nstep_time = 10x\n",
	    BASE "[rollout:shop]\nstep_time = -5s\n",
	    BASE "[rollout:shop]\ninterval = 5q\nstep_time = 0\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof texts / sizeof *texts; i++) {
		char *err = load_err(texts[i]);

		if (strstr(err, "must not be longer") != NULL)
			fail_msg("a second, confusing error:\n%s", err);
		free(err);
	}
}

static void
test_error_case(void **state)
{
	const struct error_case *ec = *state;
	char *err = load_err(ec->text);

	if (!has_line(err, ec->expect))
		fail_msg("expected the line\n  %s\ngot\n  %s", ec->expect, err);
	free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_duration),
	    cmocka_unit_test(test_bad_duration_reported_once),
	    cmocka_unit_test(test_parse_weight),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_parse_addr),
	    cmocka_unit_test(test_parse_cidr),
	    cmocka_unit_test(test_cidr_match),
	    cmocka_unit_test(test_full_config),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_empty_rollout_section),
	    cmocka_unit_test(test_sticky_cookie_sources),
	    cmocka_unit_test(test_weight_defaults),
	    cmocka_unit_test(test_section_order),
	    cmocka_unit_test(test_long_servers_line),
	    cmocka_unit_test(test_long_other_lines),
	    cmocka_unit_test(test_continuation),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_tls_files),
	    cmocka_unit_test(test_tls_keys),
	    cmocka_unit_test(test_multiple_errors),
	    cmocka_unit_test(test_binds_apart),
	    cmocka_unit_test(test_sample_configs),
	};
	size_t n = sizeof error_cases / sizeof error_cases[0];
	struct CMUnitTest *cases = sl_xcalloc(n, sizeof *cases);
	int failed;

	/* Each error case runs as a test of its own, named after it. */
	for (size_t i = 0; i < n; i++) {
		cases[i].name = error_cases[i].name;
		cases[i].test_func = test_error_case;
		cases[i].initial_state = (void *)&error_cases[i];
	}
	failed = cmocka_run_group_tests_name("conf", tests, NULL, NULL);
	failed += _cmocka_run_group_tests("conf_errors", cases, n, NULL, NULL);
	free(cases);
	return failed != 0;
}

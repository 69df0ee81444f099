/*
 * test_conf_keys.c — the config keys added for the control socket,
 * measurement, resilience and the blue/green guard: defaults, parsing and
 * every error with its file:line.
 */
#include "config.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/xmalloc.h"

#define BASE                                                                   \
	"[listener:main]\nbind = 127.0.0.1:8080\n"                             \
	"[version:s/blue]\nservers = 127.0.0.1:9000\n"

/* Load BASE plus a [sluice] and a [service:s] body. */
static struct sl_config *
load(const char *sluice, const char *service, const char *rollout, char **err)
{
	char *text =
	    sl_xasprintf("[sluice]\n%s" BASE "[service:s]\nstable = blue\n%s"
	                 "[rollout:s]\n%s",
	        sluice, service, rollout);
	struct sl_config *c;

	*err = NULL;
	c = sl_conf_load_string("t.ini", text, err);
	free(text);
	return c;
}

static void
test_defaults(void **state)
{
	char *err;
	struct sl_config *c = load("", "", "", &err);
	const struct sl_service_conf *s;

	assert_non_null(c);
	assert_int_equal(c->global.control_mode, 0600);
	assert_null(c->global.control_socket_ro);
	assert_null(c->global.control_group);
	assert_null(c->global.event_log);
	assert_true(c->global.measure);
	assert_true(c->global.normalize_path);
	assert_int_equal(c->global.drain_timeout_ms, 10000);
	assert_int_equal(c->global.retries, 1);
	assert_int_equal(c->global.retry_budget_pct, 20);
	s = &c->services[0];
	assert_null(s->health_path);
	assert_int_equal(s->health_interval_ms, 5000);
	assert_int_equal(s->health_timeout_ms, 2000);
	assert_int_equal(s->health_rise, 2);
	assert_int_equal(s->health_fall, 3);
	assert_int_equal(s->health_status_min, 200);
	assert_int_equal(s->health_status_max, 399);
	assert_int_equal(s->eject_after, 5);
	assert_int_equal(s->eject_time_ms, 10000);
	assert_int_equal(s->eject_max_pct, 50);
	assert_false(s->fallback_stable);
	assert_int_equal(s->rollout.guard_ms, 0);
	assert_int_equal(s->rollout.warmup_ms, 0);
	assert_int_equal(s->rollout.latency_tolerance_us, 250);
	sl_conf_free(c);
}

static void
test_values(void **state)
{
	char *err;
	struct sl_config *c = load(
	    "control_socket_ro = /tmp/ro.sock\ncontrol_mode = 0660\n"
	    "control_group = adm\nevent_log = /tmp/ev.jsonl\nmeasure = yes\n"
	    "drain_timeout = 30s\nretries = 2\nretry_budget = 5%\n",
	    "health_path = /ping\nhealth_interval = 250ms\n"
	    "health_timeout = 1s\nhealth_rise = 1\nhealth_fall = 4\n"
	    "health_status = 2xx\neject_after = 0\neject_time = 1m\n"
	    "eject_max = 30\nfallback = stable\n",
	    "guard = 5m\nwarmup = 20s\n", &err);
	const struct sl_service_conf *s;

	assert_non_null(c);
	assert_string_equal(c->global.control_socket_ro, "/tmp/ro.sock");
	assert_int_equal(c->global.control_mode, 0660);
	assert_string_equal(c->global.control_group, "adm");
	assert_string_equal(c->global.event_log, "/tmp/ev.jsonl");
	assert_true(c->global.measure);
	assert_int_equal(c->global.drain_timeout_ms, 30000);
	assert_int_equal(c->global.retries, 2);
	assert_int_equal(c->global.retry_budget_pct, 5);
	s = &c->services[0];
	assert_string_equal(s->health_path, "/ping");
	assert_int_equal(s->health_interval_ms, 250);
	assert_int_equal(s->health_rise, 1);
	assert_int_equal(s->health_fall, 4);
	assert_int_equal(s->health_status_min, 200);
	assert_int_equal(s->health_status_max, 299);
	assert_int_equal(s->eject_after, 0);
	assert_int_equal(s->eject_time_ms, 60000);
	assert_int_equal(s->eject_max_pct, 30);
	assert_true(s->fallback_stable);
	assert_int_equal(s->rollout.guard_ms, 300000);
	assert_int_equal(s->rollout.warmup_ms, 20000);
	sl_conf_free(c);

	/* warmup and guard say "off" (their default) or 0 for none. */
	c = load("", "", "guard = off\nwarmup = 0\n", &err);
	assert_non_null(c);
	assert_int_equal(c->services[0].rollout.guard_ms, 0);
	assert_int_equal(c->services[0].rollout.warmup_ms, 0);
	sl_conf_free(c);

	/* latency_tolerance: µs, ms or s, decimals, or 0 for none. */
	{
		static const struct {
			const char *value;
			uint32_t us;
		} tol[] = {{"0", 0}, {"40us", 40}, {"1ms", 1000},
		    {"1.5ms", 1500}, {"0.25ms", 250}, {"2s", 2000000},
		    {"10s", 10000000}};
		size_t i;

		for (i = 0; i < sizeof tol / sizeof tol[0]; i++) {
			char *r = sl_xasprintf(
			    "latency_tolerance = %s\n", tol[i].value);

			c = load("", "", r, &err);
			free(r);
			assert_non_null(c);
			assert_int_equal(
			    c->services[0].rollout.latency_tolerance_us,
			    tol[i].us);
			sl_conf_free(c);
		}
	}

	c = load("", "health_status = 204\n", "", &err);
	assert_non_null(c);
	assert_int_equal(c->services[0].health_status_min, 204);
	assert_int_equal(c->services[0].health_status_max, 204);
	sl_conf_free(c);
	c = load("", "health_status = 200-299\n", "", &err);
	assert_non_null(c);
	assert_int_equal(c->services[0].health_status_max, 299);
	sl_conf_free(c);
	/* A query string is part of the request target. */
	c = load("", "health_path = /ready?deep=1&x=%41\n", "", &err);
	assert_non_null(c);
	assert_string_equal(c->services[0].health_path, "/ready?deep=1&x=%41");
	sl_conf_free(c);
}

/* control_socket may name a stale socket (replaced at start) or nothing
 * yet; a regular file there, such as the config itself, is an error. */
static void
test_control_socket_files(void **state)
{
	char dir[] = "/tmp/sl-test-conf-XXXXXX";
	char *file, *sock, *none, *sluice, *err;
	struct sockaddr_un sun;
	struct sl_config *c;
	int fd;

	assert_non_null(mkdtemp(dir));
	file = sl_xasprintf("%s/sluice.ini", dir);
	sock = sl_xasprintf("%s/stale.sock", dir);
	none = sl_xasprintf("%s/none.sock", dir);
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	close(fd); /* a socket file nobody listens on: stale */

	sluice = sl_xasprintf(
	    "control_socket = %s\ncontrol_socket_ro = %s\n", sock, none);
	c = load(sluice, "", "", &err);
	assert_non_null(c);
	sl_conf_free(c);
	free(sluice);

	sluice = sl_xasprintf("control_socket = %s\n", file);
	c = load(sluice, "", "", &err);
	assert_null(c);
	assert_non_null(err);
	assert_non_null(strstr(err, "t.ini:2: [sluice] control_socket: '"));
	assert_non_null(strstr(err, "sluice.ini' exists and is not a socket"));
	free(err);
	free(sluice);

	unlink(file);
	unlink(sock);
	rmdir(dir);
	free(file);
	free(sock);
	free(none);
}

/* Each bad value is an error naming the file and the line. */
static void
test_errors(void **state)
{
	static const struct {
		const char *sluice, *service, *rollout, *want;
	} cases[] = {
	    {"control_mode = 0644x\n", "", "", "t.ini:2: "},
	    {"control_mode = 0400\n", "", "", "owner read and write"},
	    {"control_mode = 1777\n", "", "", "invalid file mode"},
	    /* sluice -t catches it, not the first start */
	    {"control_group = no-such-group-x\n", "", "",
	        "t.ini:2: [sluice] control_group: no group 'no-such-group-x'"},
	    {"control_socket_ro = /tmp/"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
	        "", "", "too long"},
	    /* one socket per path: start would find its own socket there */
	    {"control_socket = /tmp/x.sock\ncontrol_socket_ro = /tmp/x.sock\n",
	        "", "",
	        "t.ini:3: [sluice] control_socket_ro: '/tmp/x.sock' is "
	        "control_socket too (line 2); the read-only socket needs a "
	        "path of its own"},
	    {"control_socket_ro = /run/sluice/control.sock\n", "", "",
	        "t.ini:2: [sluice] control_socket_ro: "
	        "'/run/sluice/control.sock' is control_socket's default; the "
	        "read-only socket needs a path of its own"},
	    /* a file that is there and not a socket is never removed */
	    {"control_socket = /dev/null\n", "", "",
	        "t.ini:2: [sluice] control_socket: '/dev/null' exists and is "
	        "not a socket; sluice will not remove it (choose another "
	        "path)"},
	    {"control_socket_ro = /dev/null\n", "", "",
	        "t.ini:2: [sluice] control_socket_ro: '/dev/null' exists"},
	    {"measure = maybe\n", "", "", "t.ini:2: "},
	    {"normalize_path = sometimes\n", "", "", "t.ini:2: "},
	    /* every config here has a [rollout:s] */
	    {"measure = no\n", "", "",
	        "t.ini:2: [sluice] measure: 'no' leaves the analyzer no "
	        "latencies, so [rollout:s] could never promote"},
	    {"drain_timeout = 0\n", "", "", "drain_timeout"},
	    {"retries = 4\n", "", "", "from 0 to 3"},
	    {"retry_budget = 101%\n", "", "", "invalid percentage"},
	    {"retry_budget = x\n", "", "", "invalid percentage"},
	    /* sent as "GET PATH HTTP/1.1": a path, and one word */
	    {"", "health_path = x\n", "",
	        "t.ini:8: [service:s] health_path: 'x' must start with '/'"},
	    {"", "health_path = /a b\n", "",
	        "t.ini:8: [service:s] health_path: '/a b' may not contain "
	        "white space, control characters, '#' or bytes outside ASCII "
	        "(percent-encode them)"},
	    {"", "health_path = /a\tb\n", "",
	        "t.ini:8: [service:s] health_path: "
	        "'/a\\x09b' may not contain"},
	    {"", "health_path = /a#b\n", "", "may not contain"},
	    {"", "health_path = /caf\xc3\xa9\n", "", "may not contain"},
	    {"", "health_status = 2yy\n", "", "invalid status"},
	    {"", "health_status = 600\n", "", "invalid status"},
	    {"", "health_status = 300-200\n", "", "invalid status"},
	    {"", "health_rise = 0\n", "", "health_rise"},
	    {"", "health_interval = soon\n", "", "invalid duration"},
	    {"", "eject_max = 150\n", "", "invalid percentage"},
	    {"", "fallback = canary\n", "", "none or stable"},
	    {"", "", "guard = forever\n", "invalid duration"},
	    {"", "", "warmup = 1m\n",
	        "t.ini:9: [rollout:s]: warmup (1m) must be shorter than "
	        "step_time (1m)"},
	    {"", "", "step_time = 10s\nwarmup = 15s\n",
	        "t.ini:10: [rollout:s]: warmup (15s) must be shorter than "
	        "step_time (10s)"},
	    {"", "", "warmup = soon\n", "t.ini:9: "},
	    {"", "", "step_time = 1.5s\n",
	        "t.ini:9: [rollout:s] step_time: invalid duration '1.5s': a "
	        "whole number of ms, s, m or h (1500ms, not 1.5s)"},
	    {"", "", "latency_tolerance = 250\n",
	        "t.ini:9: [rollout:s] latency_tolerance: invalid tolerance "
	        "'250': expected a duration in us, ms or s, such as 250us, "
	        "or 0 for none"},
	    {"", "", "latency_tolerance = -1ms\n", "invalid tolerance"},
	    {"", "", "latency_tolerance = 1.ms\n", "invalid tolerance"},
	    {"", "", "latency_tolerance = 2m\n", "invalid tolerance"},
	    {"", "", "latency_tolerance = 11s\n", "must be at most 10s"},
	    {"", "", "latency_tolerance = 0.4us\n", "less than 1us"},
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err;
		struct sl_config *c = load(
		    cases[i].sluice, cases[i].service, cases[i].rollout, &err);

		if (c != NULL || err == NULL ||
		    strstr(err, cases[i].want) == NULL ||
		    strncmp(err, "t.ini:", 6) != 0)
			fail_msg("case %zu: want '%s', got '%s'", i,
			    cases[i].want, err ? err : "(no error)");
		free(err);
		sl_conf_free(c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_control_socket_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

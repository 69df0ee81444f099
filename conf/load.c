/*
 * load.c — reads sluice's INI configuration and validates it.
 *
 * A file becomes a struct sl_config in three steps.
 *
 * 1. Reading. inih parses the text, through our own line reader
 *    (read_line_cb), because Debian's libinih truncates lines at 200 bytes,
 *    cuts section names at 50, never calls the handler for a section
 *    header and does not tell the handler the line number. The reader
 *    takes one physical line at a time, counts it, and classifies it by
 *    inih's own rules:
 *      - blank or comment ("; ..." or "# ..."): inih gets an empty line;
 *      - "[section]": opened here, so that empty sections and long names
 *        work; inih gets a short placeholder header;
 *      - "key = value": inih gets the line as it is or, when it would not
 *        fit inih's buffer, the placeholder "\1=\1" while the real key and
 *        value wait in the loader (the side table) for the handler;
 *      - an indented line after a key: a continuation (as in Python's
 *        configparser); inih gets it as it is, or " \1" when too long;
 *      - anything else is a syntax error, reported here.
 *    inih handles a line completely before it asks for the next one, so
 *    when the handler runs, the loader's line number and side table
 *    describe the line being handled.
 *
 * 2. Collecting. The handler (ini_entry_cb) files each key under its
 *    section and rejects unknown and duplicate keys. A continuation line
 *    is appended with one space to the value of a list key (hosts, sticky,
 *    override_networks, servers, steps, names, listeners), so a long
 *    list may be written one item per line; on any other key it is an
 *    error. An inline comment starts at a ';' that follows white space,
 *    on key lines and continuation lines alike; '#' only starts a
 *    whole-line comment.
 *
 * 3. Building. Once the whole file is read, sections become structs in an
 *    order of our choosing, so sections may appear in any order in the
 *    file. Every key is one row of a table (name, type, bounds, default):
 *    the tables drive parsing, defaults and "missing key" errors. Rules
 *    that span sections (stable version, weights summing to 100, pins,
 *    ambiguous routes, duplicate binds) are checked last.
 *
 * Every error is kept as "file:line: message"; the caller gets all of them,
 * sorted by line, or a complete config.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "conf/strmap.h"
#include "conf/xmalloc.h"

#define MAX_DURATION_MS (24u * 3600u * 1000u)
#define NONE            SIZE_MAX

/* What the reader found on the current physical line. */
enum line_kind {
	LINE_BLANK, /* blank, comment, or an error already reported */
	LINE_SECTION,
	LINE_KEY,
	LINE_CONT, /* continuation of the previous key's value */
};

enum sect_type {
	SECT_SLUICE,
	SECT_LISTENER,
	SECT_SERVICE,
	SECT_VERSION,
	SECT_ROLLOUT,
	SECT_PIN,
	SECT_CERT,
};

struct loader;

/* How a key's value is parsed and where it is stored. */
enum key_type {
	KEY_DURATION, /* uint32_t milliseconds, 1ms..24h */
	KEY_SIZE,     /* uint32_t bytes, min..max */
	KEY_UINT,     /* uint32_t, min..max */
	KEY_STRING,   /* char *, any text */
	KEY_TOKEN,    /* char *, an RFC 9110 token (header or cookie name) */
	KEY_BOOL,     /* bool */
	KEY_CUSTOM,   /* the row's own parse function */
};

#define KEY_LIST     0x1 /* continuation lines append to the value */
#define KEY_OFF      0x4 /* a duration that may be "off" (or 0): none */
#define KEY_REQUIRED 0x2

/* Parses VALUE into OBJ: 0, or -1 with a heap string in *msg. */
typedef int (*key_parse_fn)(
    struct loader *L, void *obj, const char *value, char **msg);

/* One config key: the table row that drives parsing and defaults. */
struct key_def {
	const char *name;
	enum key_type type;
	int flags;
	size_t offset; /* of the field in the section's struct */
	uint32_t min, max;
	const char *dflt; /* parsed like a value when the key is absent */
	key_parse_fn parse;
};

/* One kind of section: [WORD], [WORD:NAME] or [WORD:SVC/NAME]. */
struct sect_def {
	const char *word;
	enum sect_type type;
	int nnames; /* 0, 1 or 2 */
	const struct key_def *keys;
};

/* A key as read, before it is parsed. */
struct entry {
	const struct key_def *def;
	char *value;
	int line;
};

/* A section as read. */
struct section {
	const struct sect_def *def;
	char *title; /* "version:checkout/blue", as in messages */
	char *name1; /* NAME, or SVC of SVC/NAME */
	char *name2; /* NAME of SVC/NAME */
	int line;
	struct entry *entries;
	size_t nentries;
};

struct error {
	int line; /* 0: about the file as a whole */
	size_t seq;
	char *msg;
};

/* Build-time facts about one service. */
struct svc_state {
	const struct section *sec;
	bool weight_set; /* some version sets "weight" */
	bool weight_bad; /* some weight did not parse: skip the sum */
};

struct loader {
	const char *file;
	const char *text;
	size_t len, pos;
	int lineno;

	/* The current physical line, as the reader saw it. */
	char *line;
	size_t linecap;
	enum line_kind kind;
	bool is_long; /* inih got placeholders: real key and value here */
	char *long_key;
	char *long_value;
	bool prev_key; /* mirrors inih: an indented line continues a key */

	struct section *sections;
	size_t nsections;
	struct sl_strmap titles; /* section titles to their index */
	bool in_section;         /* a header was seen, valid or not */
	size_t cur;  /* index of the open section; NONE if invalid */
	size_t cont; /* entry of cur a continuation extends; NONE */

	struct error *errors;
	size_t nerrors;

	/* Building. */
	struct sl_config *conf;
	struct svc_state *svcs;
	const struct section **listener_secs;
	size_t cur_service;         /* service whose version is being parsed */
	struct sl_strmap svc_names; /* the first svc_named services' names */
	size_t svc_named;
};

static int parse_workers(struct loader *, void *, const char *, char **);
static int parse_control_socket(struct loader *, void *, const char *, char **);
static int parse_admin(struct loader *, void *, const char *, char **);
static int parse_control_socket_ro(
    struct loader *, void *, const char *, char **);
static int parse_mode(struct loader *, void *, const char *, char **);
static int parse_health_status(struct loader *, void *, const char *, char **);
static int parse_fallback(struct loader *, void *, const char *, char **);
static int parse_retry_budget(struct loader *, void *, const char *, char **);
static int parse_control_group(struct loader *, void *, const char *, char **);
static int parse_eject_max(struct loader *, void *, const char *, char **);
static int parse_bind(struct loader *, void *, const char *, char **);
static int parse_hosts(struct loader *, void *, const char *, char **);
static int parse_path_prefix(struct loader *, void *, const char *, char **);
static int parse_health_path(struct loader *, void *, const char *, char **);
static int parse_sticky(struct loader *, void *, const char *, char **);
static int parse_networks(struct loader *, void *, const char *, char **);
static int parse_servers(struct loader *, void *, const char *, char **);
static int parse_version_weight(struct loader *, void *, const char *, char **);
static int parse_steps(struct loader *, void *, const char *, char **);
static int parse_error_rate(struct loader *, void *, const char *, char **);
static int parse_latency_ratio(struct loader *, void *, const char *, char **);
static int parse_quantile(struct loader *, void *, const char *, char **);
static int parse_latency_tolerance(
    struct loader *, void *, const char *, char **);
static int parse_match(struct loader *, void *, const char *, char **);
static int parse_ticket_rotation(
    struct loader *, void *, const char *, char **);
static int parse_tls_min_version(
    struct loader *, void *, const char *, char **);
static int parse_tls_verify_client(
    struct loader *, void *, const char *, char **);
static int parse_cert_names(struct loader *, void *, const char *, char **);
static int parse_cert_listeners(struct loader *, void *, const char *, char **);

#define G(f) offsetof(struct sl_global_conf, f)
static const struct key_def sluice_keys[] = {
    {.name = "workers",
        .type = KEY_CUSTOM,
        .dflt = "auto",
        .parse = parse_workers},
    {.name = "control_socket",
        .type = KEY_CUSTOM,
        .dflt = "/run/sluice/control.sock",
        .parse = parse_control_socket},
    {.name = "control_socket_ro",
        .type = KEY_CUSTOM,
        .parse = parse_control_socket_ro},
    {.name = "control_mode",
        .type = KEY_CUSTOM,
        .dflt = "0600",
        .parse = parse_mode},
    {.name = "control_group", .type = KEY_CUSTOM, .parse = parse_control_group},
    {.name = "control_line_timeout",
        .type = KEY_DURATION,
        .offset = G(control_line_timeout_ms),
        .dflt = "10s"},
    {.name = "control_idle_timeout",
        .type = KEY_DURATION,
        .offset = G(control_idle_timeout_ms),
        .dflt = "60s"},
    {.name = "event_log", .type = KEY_STRING, .offset = G(event_log)},
    {.name = "access_log", .type = KEY_STRING, .offset = G(access_log)},
    {.name = "admin", .type = KEY_CUSTOM, .parse = parse_admin},
    {.name = "state_file",
        .type = KEY_STRING,
        .offset = G(state_file),
        .dflt = "/var/lib/sluice/state.ini"},
    {.name = "header_timeout",
        .type = KEY_DURATION,
        .offset = G(header_timeout_ms),
        .dflt = "10s"},
    {.name = "keepalive_timeout",
        .type = KEY_DURATION,
        .offset = G(keepalive_timeout_ms),
        .dflt = "60s"},
    {.name = "connect_timeout",
        .type = KEY_DURATION,
        .offset = G(connect_timeout_ms),
        .dflt = "3s"},
    {.name = "response_timeout",
        .type = KEY_DURATION,
        .offset = G(response_timeout_ms),
        .dflt = "30s"},
    {.name = "body_timeout",
        .type = KEY_DURATION,
        .offset = G(body_timeout_ms),
        .dflt = "30s"},
    {.name = "tunnel_timeout",
        .type = KEY_DURATION,
        .offset = G(tunnel_timeout_ms),
        .dflt = "1h"},
    {.name = "max_header_size",
        .type = KEY_SIZE,
        .offset = G(max_header_size),
        .min = 1024,
        .max = 1024 * 1024,
        .dflt = "16k"},
    {.name = "max_headers",
        .type = KEY_UINT,
        .offset = G(max_headers),
        .min = 1,
        .max = 1000,
        .dflt = "100"},
    {.name = "max_connections",
        .type = KEY_UINT,
        .offset = G(max_connections),
        .min = 1,
        .max = 1000000,
        .dflt = "10000"},
    {.name = "max_connections_per_client",
        .type = KEY_UINT,
        .offset = G(max_conns_per_client),
        .min = 0,
        .max = 1000000,
        .dflt = "0"},
    {.name = "upstream_keepalive",
        .type = KEY_UINT,
        .offset = G(upstream_keepalive),
        .min = 0,
        .max = 10000,
        .dflt = "256"},
    {.name = "measure", .type = KEY_BOOL, .offset = G(measure), .dflt = "yes"},
    {.name = "normalize_path",
        .type = KEY_BOOL,
        .offset = G(normalize_path),
        .dflt = "yes"},
    {.name = "drain_timeout",
        .type = KEY_DURATION,
        .offset = G(drain_timeout_ms),
        .dflt = "10s"},
    {.name = "retries",
        .type = KEY_UINT,
        .offset = G(retries),
        .min = 0,
        .max = 3,
        .dflt = "1"},
    {.name = "retry_budget",
        .type = KEY_CUSTOM,
        .dflt = "20%",
        .parse = parse_retry_budget},
    {.name = "tls_ticket_rotation",
        .type = KEY_CUSTOM,
        .dflt = "1h",
        .parse = parse_ticket_rotation},
    {.name = NULL},
};
#undef G

#define L_(f) offsetof(struct sl_listener_conf, f)
static const struct key_def listener_keys[] = {
    {.name = "bind",
        .type = KEY_CUSTOM,
        .flags = KEY_REQUIRED,
        .parse = parse_bind},
    {.name = "tls_cert", .type = KEY_STRING, .offset = L_(tls_cert)},
    {.name = "tls_key", .type = KEY_STRING, .offset = L_(tls_key)},
    {.name = "tls_ocsp", .type = KEY_STRING, .offset = L_(tls_ocsp)},
    {.name = "tls_min_version",
        .type = KEY_CUSTOM,
        .dflt = "1.2",
        .parse = parse_tls_min_version},
    {.name = "tls_ciphers", .type = KEY_STRING, .offset = L_(tls_ciphers)},
    {.name = "tls_client_ca", .type = KEY_STRING, .offset = L_(tls_client_ca)},
    {.name = "tls_verify_client",
        .type = KEY_CUSTOM,
        .dflt = "required",
        .parse = parse_tls_verify_client},
    {.name = NULL},
};
#undef L_

#define S(f) offsetof(struct sl_service_conf, f)
static const struct key_def service_keys[] = {
    {.name = "hosts",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .parse = parse_hosts},
    {.name = "path_prefix",
        .type = KEY_CUSTOM,
        .dflt = "/",
        .parse = parse_path_prefix},
    {.name = "sticky",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .dflt = "ip",
        .parse = parse_sticky},
    {.name = "seed", .type = KEY_STRING, .offset = S(seed)},
    {.name = "stable",
        .type = KEY_STRING,
        .flags = KEY_REQUIRED,
        .offset = S(stable)},
    {.name = "sticky_cookie", .type = KEY_TOKEN, .offset = S(sticky_cookie)},
    {.name = "expose_version",
        .type = KEY_BOOL,
        .offset = S(expose_version),
        .dflt = "no"},
    {.name = "override_header",
        .type = KEY_TOKEN,
        .offset = S(override_header),
        .dflt = "X-Sluice-Version"},
    {.name = "override_secret",
        .type = KEY_STRING,
        .offset = S(override_secret)},
    {.name = "override_secret_header",
        .type = KEY_TOKEN,
        .offset = S(override_secret_header),
        .dflt = "X-Sluice-Secret"},
    {.name = "override_networks",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .parse = parse_networks},
    {.name = "health_path", .type = KEY_CUSTOM, .parse = parse_health_path},
    {.name = "health_interval",
        .type = KEY_DURATION,
        .offset = S(health_interval_ms),
        .dflt = "5s"},
    {.name = "health_timeout",
        .type = KEY_DURATION,
        .offset = S(health_timeout_ms),
        .dflt = "2s"},
    {.name = "health_rise",
        .type = KEY_UINT,
        .offset = S(health_rise),
        .min = 1,
        .max = 100,
        .dflt = "2"},
    {.name = "health_fall",
        .type = KEY_UINT,
        .offset = S(health_fall),
        .min = 1,
        .max = 100,
        .dflt = "3"},
    {.name = "health_status",
        .type = KEY_CUSTOM,
        .dflt = "200-399",
        .parse = parse_health_status},
    {.name = "eject_after",
        .type = KEY_UINT,
        .offset = S(eject_after),
        .min = 0,
        .max = 1000,
        .dflt = "5"},
    {.name = "eject_time",
        .type = KEY_DURATION,
        .offset = S(eject_time_ms),
        .dflt = "10s"},
    {.name = "eject_max",
        .type = KEY_CUSTOM,
        .dflt = "50%",
        .parse = parse_eject_max},
    {.name = "fallback",
        .type = KEY_CUSTOM,
        .dflt = "none",
        .parse = parse_fallback},
    {.name = "tls", .type = KEY_BOOL, .offset = S(tls.enabled), .dflt = "no"},
    {.name = "tls_verify",
        .type = KEY_BOOL,
        .offset = S(tls.verify),
        .dflt = "yes"},
    {.name = "tls_ca", .type = KEY_STRING, .offset = S(tls.ca)},
    {.name = "tls_sni", .type = KEY_STRING, .offset = S(tls.sni)},
    {.name = "tls_client_cert",
        .type = KEY_STRING,
        .offset = S(tls.client_cert)},
    {.name = "tls_client_key", .type = KEY_STRING, .offset = S(tls.client_key)},
    {.name = NULL},
};
#undef S

#define V(f) offsetof(struct sl_version_conf, f)
static const struct key_def version_keys[] = {
    {.name = "servers",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST | KEY_REQUIRED,
        .parse = parse_servers},
    {.name = "weight", .type = KEY_CUSTOM, .parse = parse_version_weight},
    /* TLS to origins: no defaults here, the service's apply. */
    {.name = "tls", .type = KEY_BOOL, .offset = V(tls.enabled)},
    {.name = "tls_verify", .type = KEY_BOOL, .offset = V(tls.verify)},
    {.name = "tls_ca", .type = KEY_STRING, .offset = V(tls.ca)},
    {.name = "tls_sni", .type = KEY_STRING, .offset = V(tls.sni)},
    {.name = "tls_client_cert",
        .type = KEY_STRING,
        .offset = V(tls.client_cert)},
    {.name = "tls_client_key", .type = KEY_STRING, .offset = V(tls.client_key)},
    {.name = NULL},
};
#undef V

#define R(f) offsetof(struct sl_rollout_conf, f)
static const struct key_def rollout_keys[] = {
    {.name = "steps",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .dflt = "1 5 25 50 100",
        .parse = parse_steps},
    {.name = "step_time",
        .type = KEY_DURATION,
        .offset = R(step_time_ms),
        .dflt = "60s"},
    {.name = "interval",
        .type = KEY_DURATION,
        .offset = R(interval_ms),
        .dflt = "5s"},
    {.name = "min_requests",
        .type = KEY_UINT,
        .offset = R(min_requests),
        .min = 1,
        .max = 1000000000,
        .dflt = "200"},
    {.name = "max_error_rate",
        .type = KEY_CUSTOM,
        .dflt = "1%",
        .parse = parse_error_rate},
    {.name = "max_latency_ratio",
        .type = KEY_CUSTOM,
        .dflt = "1.5",
        .parse = parse_latency_ratio},
    {.name = "latency_quantile",
        .type = KEY_CUSTOM,
        .dflt = "0.99",
        .parse = parse_quantile},
    {.name = "latency_tolerance",
        .type = KEY_CUSTOM,
        .dflt = "250us",
        .parse = parse_latency_tolerance},
    {.name = "guard",
        .type = KEY_DURATION,
        .flags = KEY_OFF,
        .offset = R(guard_ms)},
    {.name = "warmup",
        .type = KEY_DURATION,
        .flags = KEY_OFF,
        .offset = R(warmup_ms)},
    {.name = "judge_4xx",
        .type = KEY_BOOL,
        .offset = R(judge_4xx),
        .dflt = "no"},
    {.name = NULL},
};
#undef R

static const struct key_def pin_keys[] = {
    {.name = "match",
        .type = KEY_CUSTOM,
        .flags = KEY_REQUIRED,
        .parse = parse_match},
    {.name = "version",
        .type = KEY_STRING,
        .flags = KEY_REQUIRED,
        .offset = offsetof(struct sl_pin_conf, version)},
    {.name = NULL},
};

#define C(f) offsetof(struct sl_cert_conf, f)
static const struct key_def cert_keys[] = {
    {.name = "cert",
        .type = KEY_STRING,
        .flags = KEY_REQUIRED,
        .offset = C(cert)},
    {.name = "key",
        .type = KEY_STRING,
        .flags = KEY_REQUIRED,
        .offset = C(key)},
    {.name = "ocsp", .type = KEY_STRING, .offset = C(ocsp)},
    {.name = "names",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .parse = parse_cert_names},
    {.name = "listeners",
        .type = KEY_CUSTOM,
        .flags = KEY_LIST,
        .parse = parse_cert_listeners},
    {.name = NULL},
};
#undef C

/* Indexed by enum sect_type. */
static const struct sect_def sect_defs[] = {
    {"sluice", SECT_SLUICE, 0, sluice_keys},
    {"listener", SECT_LISTENER, 1, listener_keys},
    {"service", SECT_SERVICE, 1, service_keys},
    {"version", SECT_VERSION, 2, version_keys},
    {"rollout", SECT_ROLLOUT, 1, rollout_keys},
    {"pin", SECT_PIN, 2, pin_keys},
    {"cert", SECT_CERT, 1, cert_keys},
    {NULL, SECT_SLUICE, 0, NULL},
};

/* ---- small helpers ---- */

static bool
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool
is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
	    c == '\v';
}

static bool
is_alnum(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Store a static reason and fail; WHY may be NULL. */
static int
fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -1;
}

static char *
lskip(char *s)
{
	while (is_space((unsigned char)*s))
		s++;
	return s;
}

static void
rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && is_space((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/*
 * inih's own scan: the first of CHARS, or an inline comment (';' after
 * white space), or the end of S.
 */
static char *
find_chars_or_comment(char *s, const char *chars)
{
	bool was_space = false;

	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL) &&
	    !(was_space && *s == ';')) {
		was_space = is_space((unsigned char)*s);
		s++;
	}
	return s;
}

/* A section or version name: 1..63 of [A-Za-z0-9_.-]. */
static bool
valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (!is_alnum((unsigned char)s[n]) && s[n] != '_' &&
		    s[n] != '.' && s[n] != '-')
			return false;
	}
	return n >= 1 && n <= SL_MAX_NAME;
}

/* An RFC 9110 token (header field name, cookie name). */
static bool
valid_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!is_alnum((unsigned char)*s) &&
		    strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return false;
	}
	return true;
}

/* Digits only, at most UINT32_MAX. */
static int
parse_u32(const char *s, uint32_t *v)
{
	uint64_t n = 0;

	if (!is_digit((unsigned char)*s))
		return -1;
	for (; is_digit((unsigned char)*s); s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	if (*s != '\0')
		return -1;
	*v = (uint32_t)n;
	return 0;
}

/*
 * A plain decimal "123" or "0.125" (no sign, no exponent, at most 15
 * digits), computed without strtod so the locale cannot change it.
 * SHIFT extra powers of ten divide the result ("1%" is 1 shifted by 2).
 */
static int
parse_decimal(const char *s, int shift, double *out)
{
	uint64_t mant = 0;
	int ndigits = 0, scale = shift;
	double div = 1;

	if (!is_digit((unsigned char)*s))
		return -1;
	for (; is_digit((unsigned char)*s); s++, ndigits++)
		mant = mant * 10 + (uint64_t)(*s - '0');
	if (*s == '.') {
		s++;
		if (!is_digit((unsigned char)*s))
			return -1;
		for (; is_digit((unsigned char)*s); s++, ndigits++, scale++)
			mant = mant * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\0' || ndigits > 15)
		return -1;
	while (scale-- > 0)
		div *= 10;
	*out = (double)mant / div;
	return 0;
}

/* Split a list on white space and commas into a heap array (free_list).
 * Every list key needs an item: NULL and *MSG "empty list" when none. */
static char **
split_list(const char *value, size_t *n, char **msg)
{
	char **items = NULL;
	size_t len;

	*n = 0;
	for (;;) {
		value += strspn(value, " \t,");
		if (*value == '\0')
			break;
		len = strcspn(value, " \t,");
		items = sl_xreallocarray(items, *n + 1, sizeof *items);
		items[(*n)++] = sl_xstrndup(value, len);
		value += len;
	}
	if (*n == 0)
		*msg = sl_xstrdup("empty list");
	return items;
}

static void
free_list(char **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/* "250ms", "10s", "2m", "1h": the shortest exact form, for messages. */
static const char *
fmt_duration(uint32_t ms, char *buf, size_t size)
{
	if (ms % 3600000 == 0)
		snprintf(buf, size, "%uh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, size, "%um", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, size, "%us", ms / 1000);
	else
		snprintf(buf, size, "%ums", ms);
	return buf;
}

/* "16k", "1m" or bytes, for messages. */
static const char *
fmt_size(uint32_t n, char *buf, size_t size)
{
	if (n != 0 && n % (1024 * 1024) == 0)
		snprintf(buf, size, "%um", n / (1024 * 1024));
	else if (n != 0 && n % 1024 == 0)
		snprintf(buf, size, "%uk", n / 1024);
	else
		snprintf(buf, size, "%u", n);
	return buf;
}

/* Do two resolved addresses name the same address and port? (Public:
 * a reload compares the listeners' binds with it.) */
bool
sl_conf_same_sockaddr(
    const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return false;
}

/* A bound address as sockets see it: the family (an IPv4-mapped IPv6
 * address is IPv4), the port, the address bytes. */
struct bind_key {
	int family;
	uint16_t port;
	uint32_t scope;
	uint8_t addr[16];
};

static void
bind_key(const struct sockaddr_storage *ss, struct bind_key *k)
{
	memset(k, 0, sizeof *k);
	k->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		k->port = sin->sin_port;
		memcpy(k->addr, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		k->port = sin6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			k->family = AF_INET;
			memcpy(k->addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			k->scope = sin6->sin6_scope_id;
			memcpy(k->addr, &sin6->sin6_addr, 16);
		}
	}
}

/*
 * Would sockets bound to A and B take each other's connections? With
 * SO_REUSEPORT both bind to one address and port, and the kernel splits
 * the connections between them at random. That is the same address, an
 * IPv4-mapped IPv6 address being its IPv4 one. (A wildcard and a specific
 * address on one port do not share: the kernel gives a connection to the
 * most specific listener, so 0.0.0.0:80 beside 127.0.0.1:80, or [::]:80
 * beside 0.0.0.0:80, is a working setup.)
 */
static bool
binds_overlap(
    const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	struct bind_key x, y;

	bind_key(a, &x);
	bind_key(b, &y);
	if (x.port != y.port || x.port == 0 || x.family != y.family)
		return false;
	return x.scope == y.scope && memcmp(x.addr, y.addr, 16) == 0;
}

/* ---- value parsers (public, shared with the control socket) ---- */

/* "250ms", "10s", "2m", "1h", or bare seconds; 1ms..24h. */
int
sl_conf_parse_duration(const char *s, uint32_t *ms, const char **why)
{
	uint64_t n = 0, mult;

	if (!is_digit((unsigned char)*s))
		return fail(why,
		    "expected a number with an optional unit "
		    "(ms, s, m, h), e.g. 10s");
	for (; is_digit((unsigned char)*s); s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > MAX_DURATION_MS)
			return fail(why, "must be at most 24h");
	}
	if (*s == '\0' || strcmp(s, "s") == 0)
		mult = 1000;
	else if (strcmp(s, "ms") == 0)
		mult = 1;
	else if (strcmp(s, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(s, "h") == 0)
		mult = 3600 * 1000;
	else if (*s == '.')
		return fail(why,
		    "a whole number of ms, s, m or h (1500ms, not "
		    "1.5s)");
	else
		return fail(why, "unknown unit (use ms, s, m or h)");
	n *= mult;
	if (n == 0)
		return fail(why, "must be greater than zero");
	if (n > MAX_DURATION_MS)
		return fail(why, "must be at most 24h");
	*ms = (uint32_t)n;
	return 0;
}

/* "12.34", "0.01", "100", "12.5%": 0..100 with at most two decimals. */
bool
sl_conf_valid_owner(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 63 &&
	    strspn(name,
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	        "0123456789_.@:-") == n;
}

int
sl_conf_parse_weight(const char *s, uint32_t *hundredths, const char **why)
{
	uint32_t whole = 0, frac = 0;
	int ndec = 0;

	if (!is_digit((unsigned char)*s))
		return fail(why, "expected a percentage such as 12.5 or 100");
	for (; is_digit((unsigned char)*s); s++) {
		whole = whole * 10 + (uint32_t)(*s - '0');
		if (whole > 100)
			return fail(why, "must be between 0 and 100");
	}
	if (*s == '.') {
		s++;
		if (!is_digit((unsigned char)*s))
			return fail(why, "expected digits after '.'");
		for (; is_digit((unsigned char)*s); s++) {
			if (++ndec > 2)
				return fail(why, "more than two decimals");
			frac = frac * 10 + (uint32_t)(*s - '0');
		}
		if (ndec == 1)
			frac *= 10;
	}
	if (*s == '%')
		s++;
	if (*s != '\0')
		return fail(why, "expected a percentage such as 12.5 or 100");
	if (whole * 100 + frac > SL_WEIGHT_TOTAL)
		return fail(why, "must be between 0 and 100");
	*hundredths = whole * 100 + frac;
	return 0;
}

/* Bytes, or KiB with k/K, or MiB with m/M; at most 4 GiB - 1. */
int
sl_conf_parse_size(const char *s, uint32_t *bytes, const char **why)
{
	uint64_t n = 0, mult = 1;

	if (!is_digit((unsigned char)*s))
		return fail(why, "expected a number of bytes, e.g. 16k or 1m");
	for (; is_digit((unsigned char)*s); s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > UINT32_MAX)
			return fail(why, "too large");
	}
	if (*s == 'k' || *s == 'K')
		mult = 1024;
	else if (*s == 'm' || *s == 'M')
		mult = 1024 * 1024;
	else if (*s != '\0')
		return fail(why, "unknown unit (use k or m)");
	if (mult != 1 && s[1] != '\0')
		return fail(why, "unknown unit (use k or m)");
	if (n * mult > UINT32_MAX)
		return fail(why, "too large");
	*bytes = (uint32_t)(n * mult);
	return 0;
}

/*
 * "host:port", "[v6]:port" or "*:port" (IPv4 any). A host name is resolved
 * now (first getaddrinfo result). On success addr->text is a heap copy of
 * S, owned by the caller (sl_conf_free frees those in a config).
 */
int
sl_conf_parse_addr(const char *s, struct sl_addr *addr, const char **why)
{
	char host[256];
	const char *hoststart, *port, *colon, *close;
	size_t hostlen;
	uint32_t portnum;
	struct addrinfo hints, *res = NULL;
	int rc;

	if (*s == '[') {
		close = strchr(s, ']');
		if (close == NULL)
			return fail(why, "missing ']' after IPv6 address");
		if (close[1] != ':')
			return fail(why, "expected ':PORT' after ']'");
		hostlen = (size_t)(close - s - 1);
		hoststart = s + 1;
		port = close + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return fail(why, "expected HOST:PORT");
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return fail(why,
			    "IPv6 addresses need brackets, "
			    "e.g. [::1]:8080");
		hostlen = (size_t)(colon - s);
		hoststart = s;
		port = colon + 1;
	}
	if (hostlen == 0)
		return fail(why, "missing host (use *:PORT for any address)");
	if (hostlen >= sizeof host)
		return fail(why, "host name too long");
	memcpy(host, hoststart, hostlen);
	host[hostlen] = '\0';
	if (parse_u32(port, &portnum) == -1 || portnum < 1 || portnum > 65535)
		return fail(why, "port must be a number from 1 to 65535");

	memset(addr, 0, sizeof *addr);
	if (strcmp(host, "*") == 0) {
		struct sockaddr_in *sin = (void *)&addr->ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)portnum);
		addr->len = sizeof *sin;
		addr->text = sl_xstrdup(s);
		return 0;
	}

	memset(&hints, 0, sizeof hints);
	hints.ai_family = *s == '[' ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (*s == '[')
		hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0)
		return fail(
		    why, *s == '[' ? "not an IPv6 address" : gai_strerror(rc));
	if (res->ai_addrlen > sizeof addr->ss ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
		freeaddrinfo(res);
		return fail(why, "unsupported address family");
	}
	memcpy(&addr->ss, res->ai_addr, res->ai_addrlen);
	addr->len = res->ai_addrlen;
	freeaddrinfo(res);
	if (addr->ss.ss_family == AF_INET)
		((struct sockaddr_in *)(void *)&addr->ss)->sin_port =
		    htons((uint16_t)portnum);
	else
		((struct sockaddr_in6 *)(void *)&addr->ss)->sin6_port =
		    htons((uint16_t)portnum);
	addr->text = sl_xstrdup(s);
	return 0;
}

/* "10.0.0.0/8", "fd00::/8", or a bare address (/32, /128). */
int
sl_conf_parse_cidr(const char *s, struct sl_cidr *cidr, const char **why)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t iplen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	uint32_t prefix, max;

	if (iplen == 0 || iplen >= sizeof ip)
		return fail(why, "not an IPv4 or IPv6 address");
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	memset(cidr, 0, sizeof *cidr);
	if (inet_pton(AF_INET, ip, cidr->addr) == 1) {
		cidr->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, cidr->addr) == 1) {
		cidr->family = AF_INET6;
		max = 128;
	} else
		return fail(why, "not an IPv4 or IPv6 address");
	prefix = max;
	if (slash != NULL &&
	    (parse_u32(slash + 1, &prefix) == -1 || prefix > max))
		return fail(why,
		    cidr->family == AF_INET ? "prefix length must be 0..32"
		                            : "prefix length must be 0..128");
	cidr->prefix = (uint8_t)prefix;
	for (uint32_t bit = prefix; bit < max; bit++) {
		if (cidr->addr[bit / 8] & (0x80 >> (bit % 8)))
			return fail(why,
			    "address has bits set beyond the "
			    "prefix length");
	}
	return 0;
}

/*
 * Does SS fall into CIDR? An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 networks, as a dual-stack listener reports IPv4 clients so.
 */
bool
sl_cidr_match(const struct sl_cidr *cidr, const struct sockaddr *sa)
{
	const uint8_t *a;
	uint8_t bits;

	if (sa->sa_family == AF_INET && cidr->family == AF_INET)
		a = (const uint8_t *)&(
		    (const struct sockaddr_in *)(const void *)sa)
		        ->sin_addr;
	else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (cidr->family == AF_INET6)
			a = in6->s6_addr;
		else if (IN6_IS_ADDR_V4MAPPED(in6))
			a = in6->s6_addr + 12;
		else
			return false;
	} else
		return false;

	bits = cidr->prefix;
	if (memcmp(a, cidr->addr, bits / 8) != 0)
		return false;
	if (bits % 8 == 0)
		return true;
	return ((a[bits / 8] ^ cidr->addr[bits / 8]) &
	           (uint8_t)(0xff00 >> (bits % 8))) == 0;
}

/* Find a service's version by name; NULL if absent. */
const struct sl_version_conf *
sl_conf_version(const struct sl_service_conf *svc, const char *name)
{
	for (size_t i = 0; i < svc->nversions; i++) {
		if (strcmp(svc->versions[i].name, name) == 0)
			return &svc->versions[i];
	}
	return NULL;
}

/* Find a listener by name; NULL if absent. */
const struct sl_listener_conf *
sl_conf_listener(const struct sl_config *conf, const char *name)
{
	for (size_t i = 0; i < conf->nlisteners; i++) {
		if (strcmp(conf->listeners[i].name, name) == 0)
			return &conf->listeners[i];
	}
	return NULL;
}

/* ---- errors ---- */

static void add_error(struct loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The length of the printable UTF-8 character at S (N bytes left), or 0:
 * a C1 control (U+0080..U+009F, which terminals act on like ESC), an
 * overlong form, a surrogate or a byte that starts no character.
 */
static size_t
utf8_printable(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < 0xa0 || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    cp > 0x10ffff)
		return 0;
	return len;
}

/*
 * MSG (heap, taken) with every byte a terminal could act on written as
 * \xNN: control characters, DEL, and bytes that are not printable UTF-8.
 * Messages echo names and values from the file; an escape sequence in
 * one must reach the operator as text, not clear their screen.
 */
static char *
escape_unprintable(char *msg)
{
	const unsigned char *s = (const unsigned char *)msg;
	size_t n = strlen(msg), len, o = 0;
	char *out = sl_xmalloc(4 * n + 1);

	for (size_t i = 0; i < n; i += len) {
		len = 1;
		if (s[i] >= 0x20 && s[i] < 0x7f)
			out[o++] = (char)s[i];
		else if (s[i] >= 0x80 &&
		    (len = utf8_printable(s + i, n - i)) > 0) {
			memcpy(out + o, s + i, len);
			o += len;
		} else {
			len = 1;
			o += (size_t)snprintf(out + o, 5, "\\x%02x", s[i]);
		}
	}
	out[o] = '\0';
	free(msg);
	return out;
}

/* Keep one error about LINE (0: the whole file). */
static void
add_error(struct loader *L, int line, const char *fmt, ...)
{
	va_list ap;
	struct error *e;

	L->errors =
	    sl_xreallocarray(L->errors, L->nerrors + 1, sizeof *L->errors);
	e = &L->errors[L->nerrors];
	e->line = line;
	e->seq = L->nerrors++;
	va_start(ap, fmt);
	e->msg = escape_unprintable(sl_xvasprintf(fmt, ap));
	va_end(ap);
}

static int
error_cmp(const void *a, const void *b)
{
	const struct error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All errors, sorted by line, as one heap string of lines. */
static char *
join_errors(struct loader *L)
{
	char *out = NULL, *next;

	qsort(L->errors, L->nerrors, sizeof *L->errors, error_cmp);
	for (size_t i = 0; i < L->nerrors; i++) {
		const struct error *e = &L->errors[i];
		const char *sep = out != NULL ? "\n" : "";

		if (e->line > 0)
			next = sl_xasprintf("%s%s%s:%d: %s", out ? out : "",
			    sep, L->file, e->line, e->msg);
		else
			next = sl_xasprintf(
			    "%s%s%s: %s", out ? out : "", sep, L->file, e->msg);
		free(out);
		out = next;
	}
	return out;
}

/* ---- reading: the line reader and the inih handler ---- */

static const struct sect_def *
find_sect_def(const char *word, size_t len)
{
	for (const struct sect_def *d = sect_defs; d->word != NULL; d++) {
		if (strlen(d->word) == len && memcmp(d->word, word, len) == 0)
			return d;
	}
	return NULL;
}

/* Names a control command or sluicectl would read as a word of its own
 * where the name goes: such a service or version could not be named. */
static const struct reserved_name {
	enum sect_type type;
	bool version; /* NAME of [version:SVC/NAME], else the service */
	const char *name;
	const char *why;
} reserved_names[] = {
    {SECT_VERSION, true, "previous",
        "'previous' is reserved: `switch SVC previous` names the previous "
        "stable version"},
    {SECT_VERSION, true, "--json",
        "'--json' is reserved: sluicectl reads it as its option wherever "
        "it is"},
    {SECT_SERVICE, false, "--json",
        "'--json' is reserved: sluicectl reads it as its option wherever "
        "it is"},
};

/* Why the names of a section header of DEF are reserved (REST: its first
 * name; SLASH: the '/' before its second, or NULL), or NULL. Static. */
static const char *
reserved_name(const struct sect_def *def, const char *rest, const char *slash)
{
	for (size_t i = 0; i < sizeof reserved_names / sizeof *reserved_names;
	     i++) {
		const struct reserved_name *r = &reserved_names[i];
		const char *name = r->version ? slash : rest;

		if (r->version && name != NULL)
			name++;
		if (def->type == r->type && name != NULL &&
		    strcmp(name, r->name) == 0)
			return r->why;
	}
	return NULL;
}

/*
 * Open the section whose header starts at S ("[..."). An invalid header
 * is reported and its keys are then ignored, so one mistake gives one
 * error.
 */
static void
open_section(struct loader *L, char *s)
{
	char *close, *title, *colon, *slash, *rest;
	const struct sect_def *def;
	const char *why;
	struct section *sec;
	uint32_t first;

	L->in_section = true;
	L->cur = NONE;
	close = strchr(s, ']');
	if (close == NULL) {
		add_error(L, L->lineno, "missing ']' in section header");
		return;
	}
	rest = lskip(close + 1);
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		add_error(L, L->lineno, "unexpected text after ']'");
		return;
	}
	*close = '\0';
	title = lskip(s + 1);
	rstrip(title);

	colon = strchr(title, ':');
	def = find_sect_def(
	    title, colon != NULL ? (size_t)(colon - title) : strlen(title));
	if (def == NULL || (def->nnames == 0 && colon != NULL)) {
		add_error(L, L->lineno, "unknown section [%s]", title);
		return;
	}
	if (def->nnames > 0 && colon == NULL) {
		add_error(L, L->lineno, "section [%s] needs a name: [%s:%s]",
		    title, def->word,
		    def->nnames == 2 ? "SERVICE/NAME" : "NAME");
		return;
	}
	if (def->nnames > 0) {
		rest = colon + 1;
		slash = strchr(rest, '/');
		if (def->nnames == 2 &&
		    (slash == NULL || strchr(slash + 1, '/') != NULL)) {
			add_error(L, L->lineno,
			    "section [%s] must be written [%s:SERVICE/NAME]",
			    title, def->word);
			return;
		}
		if (def->nnames == 2)
			*slash = '\0';
		if (!valid_name(rest) ||
		    (def->nnames == 2 && !valid_name(slash + 1))) {
			if (def->nnames == 2)
				*slash = '/';
			add_error(L, L->lineno,
			    "invalid name in [%s]: names are 1 to %d "
			    "characters of A-Z a-z 0-9 _ . -",
			    title, SL_MAX_NAME);
			return;
		}
		if (def->nnames == 2)
			*slash = '/';
		why = reserved_name(def, rest, slash);
		if (why != NULL) {
			add_error(L, L->lineno, "invalid name in [%s]: %s",
			    title, why);
			return;
		}
	}

	if (sl_strmap_get(&L->titles, title, &first)) {
		add_error(L, L->lineno,
		    "duplicate section [%s] (first at line %d)", title,
		    L->sections[first].line);
		return;
	}

	L->sections = sl_xreallocarray(
	    L->sections, L->nsections + 1, sizeof *L->sections);
	sec = &L->sections[L->nsections];
	memset(sec, 0, sizeof *sec);
	sec->def = def;
	sec->title = sl_xstrdup(title);
	sec->line = L->lineno;
	if (def->nnames >= 1) {
		rest = sec->title + (colon - title) + 1;
		slash = strchr(rest, '/');
		if (slash != NULL) {
			sec->name1 = sl_xstrndup(rest, (size_t)(slash - rest));
			sec->name2 = sl_xstrdup(slash + 1);
		} else
			sec->name1 = sl_xstrdup(rest);
	}
	sl_strmap_put(&L->titles, sec->title, (uint32_t)L->nsections);
	L->cur = L->nsections++;
}

/* Hand inih TEXT as one line; BUF holds NUM bytes (inih's buffer). */
static char *
hand(char *buf, int num, const char *text)
{
	snprintf(buf, (size_t)num, "%s\n", text);
	return buf;
}

/*
 * inih's reader: take the next physical line, count it, classify it (see
 * the top of this file) and hand inih the line or a placeholder that fits
 * its NUM-byte buffer. Returns NULL at the end of the text.
 */
static char *
read_line_cb(char *buf, int num, void *stream)
{
	struct loader *L = stream;
	const char *p;
	const char *nl;
	size_t n;
	char *s, *end, *value;

	if (L->pos >= L->len || num < 8)
		return NULL;
	p = L->text + L->pos;
	nl = memchr(p, '\n', L->len - L->pos);
	n = nl != NULL ? (size_t)(nl - p) : L->len - L->pos;
	L->pos += n + (nl != NULL);
	L->lineno++;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (L->lineno == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
		p += 3;
		n -= 3;
	}
	if (n + 1 > L->linecap) {
		L->linecap = n + 1;
		L->line = sl_xrealloc(L->line, L->linecap);
	}
	memcpy(L->line, p, n);
	L->line[n] = '\0';
	L->is_long = false;
	free(L->long_key);
	free(L->long_value);
	L->long_key = L->long_value = NULL;

	L->kind = LINE_BLANK;
	if (memchr(p, '\0', n) != NULL) {
		add_error(L, L->lineno, "NUL byte in line");
		return hand(buf, num, "");
	}
	s = lskip(L->line);
	if (*s == '\0' || *s == ';' || *s == '#')
		return hand(buf, num, "");

	if (s > L->line && L->prev_key) {
		/* inih keeps inline comments on continuation lines: drop
		 * them here, as on key lines. */
		L->kind = LINE_CONT;
		*find_chars_or_comment(s, NULL) = '\0';
		rstrip(s);
		if (strlen(s) + 4 <= (size_t)num) {
			snprintf(buf, (size_t)num, " %s\n", s);
			return buf;
		}
		L->is_long = true;
		L->long_value = sl_xstrdup(s);
		return hand(buf, num, " \001");
	}

	if (*s == '[') {
		L->kind = LINE_SECTION;
		L->prev_key = false;
		open_section(L, s);
		return hand(buf, num, "[s]");
	}

	end = find_chars_or_comment(s, "=:");
	if (*end != '=' && *end != ':') {
		add_error(L, L->lineno,
		    "expected 'key = value' or '[section]', got '%s'", s);
		return hand(buf, num, "");
	}
	L->kind = LINE_KEY;
	L->prev_key = end > s; /* inih's prev_name: the key is not empty */
	if (strlen(L->line) + 3 <= (size_t)num) {
		snprintf(buf, (size_t)num, "%s\n", L->line);
		return buf;
	}
	/* Too long for inih: split it as inih would, keep both halves. */
	L->is_long = true;
	value = end + 1;
	*end = '\0';
	rstrip(s);
	L->long_key = sl_xstrdup(s);
	*find_chars_or_comment(value, NULL) = '\0';
	value = lskip(value);
	rstrip(value);
	L->long_value = sl_xstrdup(value);
	return hand(buf, num, "\001=\001");
}

static const struct key_def *
find_key_def(const struct key_def *keys, const char *name)
{
	for (; keys->name != NULL; keys++) {
		if (strcmp(keys->name, name) == 0)
			return keys;
	}
	return NULL;
}

static struct entry *
find_entry(const struct section *sec, const struct key_def *def)
{
	if (sec == NULL)
		return NULL;
	for (size_t i = 0; i < sec->nentries; i++) {
		if (sec->entries[i].def == def)
			return &sec->entries[i];
	}
	return NULL;
}

/* File "NAME = VALUE" under the open section. */
static void
add_entry(struct loader *L, const char *name, const char *value)
{
	struct section *sec;
	const struct key_def *def;
	struct entry *e;

	L->cont = NONE;
	if (!L->in_section) {
		add_error(L, L->lineno,
		    "key '%s' outside of any section (add a section header "
		    "such as [sluice] above it)",
		    name);
		return;
	}
	if (L->cur == NONE)
		return; /* invalid section, already reported */
	sec = &L->sections[L->cur];
	if (*name == '\0') {
		add_error(L, L->lineno, "missing key name before '='");
		return;
	}
	def = find_key_def(sec->def->keys, name);
	if (def == NULL) {
		add_error(
		    L, L->lineno, "unknown key '%s' in [%s]", name, sec->title);
		return;
	}
	if ((e = find_entry(sec, def)) != NULL) {
		add_error(L, L->lineno,
		    "duplicate key '%s' in [%s] (first at line %d)", name,
		    sec->title, e->line);
		return;
	}
	sec->entries = sl_xreallocarray(
	    sec->entries, sec->nentries + 1, sizeof *sec->entries);
	e = &sec->entries[sec->nentries];
	e->def = def;
	e->value = sl_xstrdup(value);
	e->line = L->lineno;
	L->cont = sec->nentries++;
}

/* Append a continuation line to the value of the last key. */
static void
continue_entry(struct loader *L, const char *value)
{
	struct section *sec;
	struct entry *e;
	char *joined;

	if (L->cur == NONE || L->cont == NONE)
		return; /* the key line was rejected, already reported */
	sec = &L->sections[L->cur];
	e = &sec->entries[L->cont];
	if (!(e->def->flags & KEY_LIST)) {
		add_error(L, L->lineno,
		    "[%s] %s: indented line continues a key that takes one "
		    "value (only lists may span lines)",
		    sec->title, e->def->name);
		L->cont = NONE;
		return;
	}
	joined = sl_xasprintf("%s%s%s", e->value, *e->value ? " " : "", value);
	free(e->value);
	e->value = joined;
}

/* inih's handler: SECTION is inih's placeholder, the loader knows more. */
static int
ini_entry_cb(
    void *user, const char *section, const char *name, const char *value)
{
	struct loader *L = user;

	if (L->is_long) {
		value = L->long_value;
		if (L->kind == LINE_KEY)
			name = L->long_key;
	}
	if (L->kind == LINE_CONT)
		continue_entry(L, value);
	else if (L->kind == LINE_KEY)
		add_entry(L, name, value);
	return 1;
}

/* ---- building: custom key parsers ---- */

static int
parse_workers(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_global_conf *g = obj;
	uint32_t n;

	if (strcmp(value, "auto") == 0) {
		g->workers = 0;
		return 0;
	}
	if (parse_u32(value, &n) == -1 || n < 1 || n > 256) {
		*msg = sl_xasprintf("invalid value '%s': use auto or a number "
		                    "from 1 to 256",
		    value);
		return -1;
	}
	g->workers = (int)n;
	return 0;
}

/* A Unix socket path that fits in sun_path, into *OUT (heap). */
static int
parse_socket_path(const char *value, char **out, char **msg)
{
	struct sockaddr_un sun;

	if (strlen(value) >= sizeof sun.sun_path) {
		*msg = sl_xasprintf("path '%s' is too long for a Unix socket "
		                    "(at most %zu bytes)",
		    value, sizeof sun.sun_path - 1);
		return -1;
	}
	*out = sl_xstrdup(value);
	return 0;
}

static int
parse_control_socket(struct loader *L, void *obj, const char *value, char **msg)
{
	return parse_socket_path(
	    value, &((struct sl_global_conf *)obj)->control_socket, msg);
}

static int
parse_control_socket_ro(
    struct loader *L, void *obj, const char *value, char **msg)
{
	return parse_socket_path(
	    value, &((struct sl_global_conf *)obj)->control_socket_ro, msg);
}

/* control_group = GROUP: a group this system has (sluice -t says so, not
 * the first start). */
static int
parse_control_group(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_global_conf *g = obj;

	if (getgrnam(value) == NULL) {
		*msg = sl_xasprintf("no group '%s' on this system", value);
		return -1;
	}
	free(g->control_group);
	g->control_group = sl_xstrdup(value);
	return 0;
}

/* A whole percentage 0..100, with or without '%'. */
static int
parse_whole_percent(const char *value, uint32_t *out, char **msg)
{
	char *end;
	unsigned long v = strtoul(value, &end, 10);

	if (end == value || (*end != '\0' && strcmp(end, "%") != 0) ||
	    v > 100) {
		*msg = sl_xasprintf("invalid percentage '%s': a whole number "
		                    "from 0 to 100",
		    value);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* retry_budget = PCT ([sluice]) */
static int
parse_retry_budget(struct loader *L, void *obj, const char *value, char **msg)
{
	return parse_whole_percent(
	    value, &((struct sl_global_conf *)obj)->retry_budget_pct, msg);
}

/* eject_max = PCT ([service:]) */
static int
parse_eject_max(struct loader *L, void *obj, const char *value, char **msg)
{
	return parse_whole_percent(
	    value, &((struct sl_service_conf *)obj)->eject_max_pct, msg);
}

/* Expected health-check status: "200", "2xx" or "200-399". */
static int
parse_health_status(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *sc = obj;
	unsigned lo, hi;
	char x1, x2;
	int n;

	if (sscanf(value, "%1u%c%c%n", &lo, &x1, &x2, &n) == 3 && x1 == 'x' &&
	    x2 == 'x' && value[n] == '\0' && lo >= 1 && lo <= 5) {
		sc->health_status_min = (uint16_t)(lo * 100);
		sc->health_status_max = (uint16_t)(lo * 100 + 99);
		return 0;
	}
	if (sscanf(value, "%3u-%3u%n", &lo, &hi, &n) == 2 && value[n] == '\0' &&
	    lo >= 100 && hi <= 599 && lo <= hi) {
		sc->health_status_min = (uint16_t)lo;
		sc->health_status_max = (uint16_t)hi;
		return 0;
	}
	if (sscanf(value, "%3u%n", &lo, &n) == 1 && value[n] == '\0' &&
	    lo >= 100 && lo <= 599) {
		sc->health_status_min = sc->health_status_max = (uint16_t)lo;
		return 0;
	}
	*msg =
	    sl_xasprintf("invalid status '%s': use 200, 2xx or 200-399", value);
	return -1;
}

/* fallback = none | stable */
static int
parse_fallback(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *sc = obj;

	if (strcmp(value, "none") == 0)
		sc->fallback_stable = false;
	else if (strcmp(value, "stable") == 0)
		sc->fallback_stable = true;
	else {
		*msg = sl_xasprintf(
		    "invalid fallback '%s': none or stable", value);
		return -1;
	}
	return 0;
}

/* An octal file mode such as 0600 or 660. */
static int
parse_mode(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_global_conf *g = obj;
	unsigned long m = 0;
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p < '0' || *p > '7' || p - value > 4) {
			*msg = sl_xasprintf("invalid file mode '%s' (octal, "
			                    "e.g. 0600)",
			    value);
			return -1;
		}
		m = m * 8 + (unsigned long)(*p - '0');
	}
	if (p == value || m > 0777 || (m & 0600) != 0600) {
		*msg = sl_xasprintf("invalid file mode '%s': must be octal up "
		                    "to 0777 and let the owner read and write",
		    value);
		return -1;
	}
	g->control_mode = (uint32_t)m;
	return 0;
}

static int
parse_admin(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_global_conf *g = obj;
	const char *why;

	if (sl_conf_parse_addr(value, &g->admin, &why) == -1) {
		*msg = sl_xasprintf("invalid address '%s': %s", value, why);
		return -1;
	}
	g->admin_text = sl_xstrdup(value);
	g->has_admin = true;
	return 0;
}

static int
parse_bind(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_listener_conf *lc = obj;
	const char *why;

	if (sl_conf_parse_addr(value, &lc->bind, &why) == -1) {
		*msg = sl_xasprintf("invalid address '%s': %s", value, why);
		return -1;
	}
	return 0;
}

/* "Shop.Example.com.:443" -> "shop.example.com" (a name's root dot is
 * dropped, as a request's is); NULL if not a host. */
static char *
normal_host(const char *item)
{
	char *h = sl_xstrdup(item), *c;
	size_t n;

	for (c = h; *c != '\0'; c++) {
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	}
	c = strrchr(h, ':');
	if (c != NULL && c[1] != '\0' &&
	    strspn(c + 1, "0123456789") == strlen(c + 1) &&
	    (h[0] == '[' ? c[-1] == ']' : strchr(h, ':') == c))
		*c = '\0';
	n = strlen(h);
	if (n == 0)
		goto bad;
	if (h[0] == '[') {
		if (n < 3 || h[n - 1] != ']' ||
		    strspn(h + 1, "0123456789abcdef:.") != n - 2)
			goto bad;
		return h;
	}
	for (c = h; *c != '\0'; c++) {
		if (!is_alnum((unsigned char)*c) && strchr("-._", *c) == NULL)
			goto bad;
	}
	if (n > 1 && h[n - 1] == '.')
		h[n - 1] = '\0';
	return h;
bad:
	free(h);
	return NULL;
}

/*
 * A list of distinct names into *OUT (*NOUT of them), each normalised by
 * NORM (NULL for an invalid one). Messages: "invalid WHAT 'x'HINT" and
 * "DUP 'x' is listed twice".
 */
static int
parse_distinct_names(const char *value, char *(*norm)(const char *),
    const char *what, const char *hint, const char *dup, char ***out,
    size_t *nout, char **msg)
{
	size_t n;
	char **items = split_list(value, &n, msg);
	char *h;

	if (items == NULL)
		return -1;
	*out = sl_xcalloc(n, sizeof **out);
	for (size_t i = 0; i < n; i++) {
		if ((h = norm(items[i])) == NULL) {
			*msg = sl_xasprintf(
			    "invalid %s '%s'%s", what, items[i], hint);
			goto fail;
		}
		for (size_t j = 0; j < *nout; j++) {
			if (strcmp((*out)[j], h) == 0) {
				*msg = sl_xasprintf(
				    "%s '%s' is listed twice", dup, h);
				free(h);
				goto fail;
			}
		}
		(*out)[(*nout)++] = h;
	}
	free_list(items, n);
	return 0;
fail:
	free_list(items, n);
	return -1;
}

static int
parse_hosts(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *svc = obj;

	return parse_distinct_names(value, normal_host, "host", "", "host",
	    &svc->hosts, &svc->nhosts, msg);
}

static int
parse_path_prefix(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *svc = obj;

	if (value[0] != '/') {
		*msg = sl_xasprintf("'%s' must start with '/'", value);
		return -1;
	}
	for (const char *c = value; *c != '\0'; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '?' ||
		    *c == '#') {
			*msg = sl_xasprintf("'%s' may not contain white space, "
			                    "control characters, '?' or '#'",
			    value);
			return -1;
		}
	}
	svc->path_prefix = sl_xstrdup(value);
	return 0;
}

/* health_path: the request target of every check, sent as written, so
 * only what may stand in a request line ("GET PATH HTTP/1.1"). */
static int
parse_health_path(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *svc = obj;

	if (value[0] != '/') {
		*msg = sl_xasprintf("'%s' must start with '/'", value);
		return -1;
	}
	for (const char *c = value; *c != '\0'; c++) {
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f ||
		    *c == '#') {
			*msg =
			    sl_xasprintf("'%s' may not contain white space, "
			                 "control characters, '#' or bytes "
			                 "outside ASCII (percent-encode them)",
			        value);
			return -1;
		}
	}
	svc->health_path = sl_xstrdup(value);
	return 0;
}

/* Same source twice? Header names compare without case. */
static bool
same_key(const struct sl_key_conf *a, const struct sl_key_conf *b)
{
	if (a->source != b->source)
		return false;
	if (a->source == SL_KEY_IP)
		return true;
	if (a->source == SL_KEY_HEADER)
		return strcasecmp(a->name, b->name) == 0;
	return strcmp(a->name, b->name) == 0;
}

static int
parse_sticky(struct loader *L, void *obj, const char *value, char **msg)
{
	static const struct {
		const char *prefix;
		enum sl_key_source source;
	} sources[] = {
	    {"header:", SL_KEY_HEADER},
	    {"cookie:", SL_KEY_COOKIE},
	    {"query:", SL_KEY_QUERY},
	};
	struct sl_service_conf *svc = obj;
	size_t n;
	char **items = split_list(value, &n, msg);
	struct sl_key_conf k;
	const char *name;

	if (items == NULL)
		return -1;
	svc->keys = sl_xcalloc(n, sizeof *svc->keys);
	for (size_t i = 0; i < n; i++) {
		const char *it = items[i];

		if (svc->nkeys > 0 &&
		    svc->keys[svc->nkeys - 1].source == SL_KEY_IP) {
			*msg = sl_xasprintf("'%s' comes after 'ip', which is "
			                    "always present, so it would "
			                    "never be used",
			    it);
			goto fail;
		}
		memset(&k, 0, sizeof k);
		name = NULL;
		if (strcmp(it, "ip") == 0)
			k.source = SL_KEY_IP;
		else {
			for (size_t j = 0; j < 3; j++) {
				size_t plen = strlen(sources[j].prefix);

				if (strncmp(it, sources[j].prefix, plen) == 0) {
					k.source = sources[j].source;
					name = it + plen;
				}
			}
			if (name == NULL) {
				*msg = sl_xasprintf("unknown source '%s' (use "
				                    "header:NAME, cookie:NAME, "
				                    "query:NAME or ip)",
				    it);
				goto fail;
			}
			if (k.source == SL_KEY_QUERY
			        ? (*name == '\0' ||
			              strpbrk(name, "&=#?;") != NULL)
			        : !valid_token(name)) {
				*msg = sl_xasprintf("invalid name in '%s'", it);
				goto fail;
			}
		}
		k.name = name != NULL ? sl_xstrdup(name) : NULL;
		for (size_t j = 0; j < svc->nkeys; j++) {
			if (same_key(&svc->keys[j], &k)) {
				*msg = sl_xasprintf("source '%s' is listed "
				                    "twice",
				    it);
				free(k.name);
				goto fail;
			}
		}
		svc->keys[svc->nkeys++] = k;
	}
	free_list(items, n);
	return 0;
fail:
	free_list(items, n);
	return -1;
}

static int
parse_networks(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_service_conf *svc = obj;
	size_t n;
	char **items = split_list(value, &n, msg);
	const char *why;

	if (items == NULL)
		return -1;
	svc->override_networks = sl_xcalloc(n, sizeof *svc->override_networks);
	for (size_t i = 0; i < n; i++) {
		if (sl_conf_parse_cidr(
		        items[i], &svc->override_networks[i], &why) == -1) {
			*msg = sl_xasprintf(
			    "invalid network '%s': %s", items[i], why);
			free_list(items, n);
			return -1;
		}
		svc->noverride_networks++;
	}
	free_list(items, n);
	return 0;
}

/* Is SS the any address (0.0.0.0 or ::)? */
static bool
unspecified_addr(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(
	        &((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static int
parse_servers(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_version_conf *v = obj;
	size_t n;
	char **items = split_list(value, &n, msg);
	const char *why;
	char *eq;
	struct sl_server_conf *srv;

	if (items == NULL)
		return -1;
	v->servers = sl_xcalloc(n, sizeof *v->servers);
	for (size_t i = 0; i < n; i++) {
		srv = &v->servers[v->nservers];
		srv->weight = 1;
		if ((eq = strrchr(items[i], '=')) != NULL) {
			*eq = '\0';
			if (parse_u32(eq + 1, &srv->weight) == -1 ||
			    srv->weight < 1 || srv->weight > 1000) {
				*eq = '=';
				*msg = sl_xasprintf("invalid server '%s': "
				                    "weight must be a number "
				                    "from 1 to 1000",
				    items[i]);
				goto fail;
			}
		}
		if (sl_conf_parse_addr(items[i], &srv->addr, &why) == -1) {
			*msg = sl_xasprintf(
			    "invalid server '%s': %s", items[i], why);
			goto fail;
		}
		if (unspecified_addr(&srv->addr.ss)) {
			*msg = sl_xasprintf("invalid server '%s': '*', 0.0.0.0 "
			                    "and [::] mean any local address "
			                    "to a listener, not a server to "
			                    "connect to",
			    items[i]);
			free(srv->addr.text);
			srv->addr.text = NULL;
			goto fail;
		}
		for (size_t j = 0; j < v->nservers; j++) {
			if (sl_conf_same_sockaddr(
			        &v->servers[j].addr.ss, &srv->addr.ss)) {
				*msg = sl_xasprintf("server '%s' is listed "
				                    "twice",
				    items[i]);
				free(srv->addr.text);
				srv->addr.text = NULL;
				goto fail;
			}
		}
		v->nservers++;
	}
	free_list(items, n);
	return 0;
fail:
	free_list(items, n);
	return -1;
}

static int
parse_version_weight(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_version_conf *v = obj;
	const char *why;

	L->svcs[L->cur_service].weight_set = true;
	if (sl_conf_parse_weight(value, &v->weight, &why) == -1) {
		L->svcs[L->cur_service].weight_bad = true;
		*msg = sl_xasprintf("invalid weight '%s': %s", value, why);
		return -1;
	}
	return 0;
}

static int
parse_steps(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_rollout_conf *r = obj;
	size_t n;
	char **items = split_list(value, &n, msg);
	const char *why;
	uint32_t w;

	if (items == NULL)
		return -1;
	r->steps = sl_xcalloc(n, sizeof *r->steps);
	for (size_t i = 0; i < n; i++) {
		if (sl_conf_parse_weight(items[i], &w, &why) == -1) {
			*msg = sl_xasprintf(
			    "invalid step '%s': %s", items[i], why);
			goto fail;
		}
		if (w == 0) {
			*msg = sl_xasprintf("invalid step '%s': must be "
			                    "greater than 0",
			    items[i]);
			goto fail;
		}
		if (i > 0 && w <= r->steps[i - 1]) {
			*msg = sl_xasprintf("steps must be strictly increasing "
			                    "('%s' follows '%s')",
			    items[i], items[i - 1]);
			goto fail;
		}
		r->steps[r->nsteps++] = w;
	}
	/* A step at 100 promotes as it is reached, unjudged. */
	if (r->nsteps > 0 && r->steps[0] >= SL_WEIGHT_TOTAL) {
		*msg = sl_xasprintf("'%s' has no step below 100, where the "
		                    "analyzer would judge the canary (for a "
		                    "cut-over without one, use switch)",
		    value);
		goto fail;
	}
	free_list(items, n);
	return 0;
fail:
	free_list(items, n);
	return -1;
}

/* "1%" or a fraction "0.01"; in (0, 1]. */
static int
parse_error_rate(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_rollout_conf *r = obj;
	char *num = sl_xstrdup(value);
	size_t n = strlen(num);
	int shift = 0;
	double d;

	if (n > 0 && num[n - 1] == '%') {
		num[n - 1] = '\0';
		shift = 2;
	}
	if (parse_decimal(num, shift, &d) == -1 || d <= 0 || d > 1) {
		*msg = sl_xasprintf("invalid rate '%s': use a percentage in "
		                    "(0%%, 100%%] such as 1%%, or a fraction "
		                    "in (0, 1] such as 0.01",
		    value);
		free(num);
		return -1;
	}
	free(num);
	r->max_error_rate = d;
	return 0;
}

static int
parse_latency_ratio(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_rollout_conf *r = obj;
	double d;

	if (parse_decimal(value, 0, &d) == -1 || d <= 1.0 || d > 100) {
		*msg = sl_xasprintf("invalid ratio '%s': must be a number "
		                    "greater than 1 and at most 100",
		    value);
		return -1;
	}
	r->max_latency_ratio = d;
	return 0;
}

/* "250us", "1ms", "0.5ms", "0" (off): at most 10s, kept in µs. */
static int
parse_latency_tolerance(
    struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_rollout_conf *r = obj;
	size_t n = strspn(value, "0123456789.");
	const char *unit = value + n;
	char num[24];
	double d, mult = 0;

	if (strcmp(unit, "us") == 0)
		mult = 1;
	else if (strcmp(unit, "ms") == 0)
		mult = 1e3;
	else if (strcmp(unit, "s") == 0)
		mult = 1e6;
	else if (*unit == '\0' && strcmp(value, "0") == 0)
		mult = 1;
	if (n > 0 && n < sizeof num) {
		memcpy(num, value, n);
		num[n] = '\0';
	}
	if (n == 0 || n >= sizeof num || mult == 0 ||
	    parse_decimal(num, 0, &d) == -1) {
		*msg = sl_xasprintf("invalid tolerance '%s': expected a "
		                    "duration in us, ms or s, such as 250us, "
		                    "or 0 for none",
		    value);
		return -1;
	}
	if (d > 0 && d * mult < 0.5) {
		*msg = sl_xasprintf("invalid tolerance '%s': less than 1us; "
		                    "use 0 for none",
		    value);
		return -1;
	}
	d = d * mult + 0.5;
	if (d >= 10e6 + 1) {
		*msg = sl_xasprintf(
		    "invalid tolerance '%s': must be at most 10s", value);
		return -1;
	}
	r->latency_tolerance_us = (uint32_t)d;
	return 0;
}

static int
parse_quantile(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_rollout_conf *r = obj;
	double d;

	if (parse_decimal(value, 0, &d) == -1 || d <= 0 || d >= 1) {
		*msg = sl_xasprintf("invalid quantile '%s': must be a number "
		                    "between 0 and 1, such as 0.99",
		    value);
		return -1;
	}
	r->latency_quantile = d;
	return 0;
}

/* "header:NAME=VALUE", "header:NAME^=PREFIX", and cookie: alike. */
static int
parse_match(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_pin_conf *pin = obj;
	const char *rest, *eq, *name_end;

	if (strncmp(value, "header:", 7) == 0) {
		pin->source = SL_KEY_HEADER;
		rest = value + 7;
	} else if (strncmp(value, "cookie:", 7) == 0) {
		pin->source = SL_KEY_COOKIE;
		rest = value + 7;
	} else
		goto bad;
	if ((eq = strchr(rest, '=')) == NULL)
		goto bad;
	name_end = eq;
	pin->op = SL_MATCH_EQUALS;
	if (eq > rest && eq[-1] == '^') {
		pin->op = SL_MATCH_PREFIX;
		name_end = eq - 1;
	}
	pin->field = sl_xstrndup(rest, (size_t)(name_end - rest));
	if (!valid_token(pin->field)) {
		*msg = sl_xasprintf("invalid %s name '%s' in '%s'",
		    pin->source == SL_KEY_HEADER ? "header" : "cookie",
		    pin->field, value);
		return -1;
	}
	if (eq[1] == '\0') {
		*msg =
		    sl_xasprintf("nothing to match after '=' in '%s'", value);
		return -1;
	}
	pin->value = sl_xstrdup(eq + 1);
	return 0;
bad:
	*msg = sl_xasprintf("invalid rule '%s': use header:NAME=VALUE, "
	                    "header:NAME^=PREFIX, cookie:NAME=VALUE or "
	                    "cookie:NAME^=PREFIX",
	    value);
	return -1;
}

/* Session ticket keys: a duration of at least one second. */
static int
parse_ticket_rotation(
    struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_global_conf *g = obj;
	const char *why;
	uint32_t ms;

	if (sl_conf_parse_duration(value, &ms, &why) == -1) {
		*msg = sl_xasprintf("invalid duration '%s': %s", value, why);
		return -1;
	}
	if (ms < 1000) {
		*msg = sl_xasprintf("'%s' is too short (at least 1s)", value);
		return -1;
	}
	g->tls_ticket_rotation_ms = ms;
	return 0;
}

/* "1.2" or "1.3": TLS 1.0 and 1.1 are never offered. */
static int
parse_tls_min_version(
    struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_listener_conf *lc = obj;

	if (strcmp(value, "1.2") == 0)
		lc->tls_min_version = SL_TLS_1_2;
	else if (strcmp(value, "1.3") == 0)
		lc->tls_min_version = SL_TLS_1_3;
	else {
		*msg =
		    sl_xasprintf("invalid version '%s': use 1.2 or 1.3", value);
		return -1;
	}
	return 0;
}

/* "required" or "optional" (with tls_client_ca). */
static int
parse_tls_verify_client(
    struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_listener_conf *lc = obj;

	if (strcmp(value, "required") == 0)
		lc->tls_verify_client = SL_VERIFY_CLIENT_REQUIRED;
	else if (strcmp(value, "optional") == 0)
		lc->tls_verify_client = SL_VERIFY_CLIENT_OPTIONAL;
	else {
		*msg = sl_xasprintf(
		    "invalid value '%s': use required or optional", value);
		return -1;
	}
	return 0;
}

/*
 * A DNS name for SNI, lower-cased: letters, digits, '-' and '.', at
 * least one dot, optionally "*." first (one label). NULL if not one.
 */
static char *
sni_name(const char *item, bool wildcard_ok)
{
	char *h = sl_xstrdup(item), *c, *start = h;

	for (c = h; *c != '\0'; c++) {
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	}
	if (wildcard_ok && strncmp(h, "*.", 2) == 0)
		start = h + 2;
	if (*start == '\0' || *start == '.' || h[strlen(h) - 1] == '.' ||
	    strstr(start, "..") != NULL)
		goto bad;
	for (c = start; *c != '\0'; c++) {
		if (!is_alnum((unsigned char)*c) && *c != '-' && *c != '.')
			goto bad;
	}
	if (start != h && strchr(start, '.') == NULL)
		goto bad; /* "*.com" */
	return h;
bad:
	free(h);
	return NULL;
}

/* A [cert:] name: a DNS name, or a wildcard one. */
static char *
cert_name(const char *item)
{
	return sni_name(item, true);
}

/* [cert:] names: the server names the certificate is chosen for. */
static int
parse_cert_names(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_cert_conf *cc = obj;

	return parse_distinct_names(value, cert_name, "server name",
	    " (a DNS name, or *.domain)", "name", &cc->names, &cc->nnames, msg);
}

/* [cert:] listeners: names of listeners (checked once all are known). */
static int
parse_cert_listeners(struct loader *L, void *obj, const char *value, char **msg)
{
	struct sl_cert_conf *cc = obj;
	size_t n;
	char **items = split_list(value, &n, msg);

	if (items == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!valid_name(items[i])) {
			*msg = sl_xasprintf(
			    "invalid listener name '%s'", items[i]);
			free_list(items, n);
			return -1;
		}
	}
	cc->listeners = items;
	cc->nlisteners = n;
	return 0;
}

/* ---- building: sections into structs ---- */

/* Parse VALUE for key DEF into OBJ; report failures at LINE. */
static void
apply_value(struct loader *L, const char *title, const struct key_def *def,
    void *obj, const char *value, int line)
{
	char *field = (char *)obj + def->offset;
	char *msg = NULL;
	const char *why;
	uint32_t u;
	char lo[32], hi[32];

	if (*value == '\0') {
		add_error(L, line, "[%s] %s: empty value", title, def->name);
		return;
	}
	switch (def->type) {
	case KEY_DURATION:
		if ((def->flags & KEY_OFF) &&
		    (strcmp(value, "off") == 0 || strcmp(value, "0") == 0))
			memset(field, 0, sizeof u);
		else if (sl_conf_parse_duration(value, &u, &why) == -1)
			msg = sl_xasprintf(
			    "invalid duration '%s': %s", value, why);
		else
			memcpy(field, &u, sizeof u);
		break;
	case KEY_SIZE:
		if (sl_conf_parse_size(value, &u, &why) == -1)
			msg = sl_xasprintf("invalid size '%s': %s", value, why);
		else if (u < def->min || u > def->max)
			msg = sl_xasprintf("size '%s' out of range (%s to %s)",
			    value, fmt_size(def->min, lo, sizeof lo),
			    fmt_size(def->max, hi, sizeof hi));
		else
			memcpy(field, &u, sizeof u);
		break;
	case KEY_UINT:
		if (parse_u32(value, &u) == -1 || u < def->min || u > def->max)
			msg = sl_xasprintf("invalid value '%s': must be a "
			                   "number from %u to %u",
			    value, def->min, def->max);
		else
			memcpy(field, &u, sizeof u);
		break;
	case KEY_TOKEN:
		if (!valid_token(value)) {
			msg = sl_xasprintf("invalid name '%s': use letters, "
			                   "digits and !#$%%&'*+-.^_`|~",
			    value);
			break;
		}
		/* FALLTHROUGH */
	case KEY_STRING: {
		char *s = sl_xstrdup(value);

		memcpy(field, &s, sizeof s);
		break;
	}
	case KEY_BOOL: {
		static const char *yes[] = {"yes", "true", "on", "1"};
		static const char *no[] = {"no", "false", "off", "0"};
		bool b = false, found = false;

		for (size_t i = 0; i < 4 && !found; i++) {
			if (strcasecmp(value, yes[i]) == 0)
				found = b = true;
			else if (strcasecmp(value, no[i]) == 0)
				found = true;
		}
		if (!found)
			msg = sl_xasprintf(
			    "invalid value '%s': use yes or no", value);
		else
			memcpy(field, &b, sizeof b);
		break;
	}
	case KEY_CUSTOM:
		def->parse(L, obj, value, &msg);
		break;
	}
	if (msg != NULL) {
		add_error(L, line, "[%s] %s: %s", title, def->name, msg);
		free(msg);
	}
}

/*
 * Fill OBJ from SEC (NULL: nothing written, defaults only) with the keys
 * of DEF: given values, then defaults, then "missing" errors.
 */
static void
apply_section(struct loader *L, const struct sect_def *def,
    const struct section *sec, const char *title, void *obj)
{
	const struct entry *e;

	for (const struct key_def *k = def->keys; k->name != NULL; k++) {
		if ((e = find_entry(sec, k)) != NULL)
			apply_value(L, title, k, obj, e->value, e->line);
		else if (k->dflt != NULL)
			apply_value(
			    L, title, k, obj, k->dflt, sec ? sec->line : 0);
		else if ((k->flags & KEY_REQUIRED) && sec != NULL)
			add_error(L, sec->line,
			    "[%s]: missing required key '%s'", title, k->name);
	}
}

/* The line of key NAME in SEC, or the section's own line. */
static int
key_line(const struct section *sec, const char *name)
{
	for (size_t i = 0; i < sec->nentries; i++) {
		if (strcmp(sec->entries[i].def->name, name) == 0)
			return sec->entries[i].line;
	}
	return sec->line;
}

static bool
has_key(const struct section *sec, const char *name)
{
	return key_line(sec, name) != sec->line;
}

static struct sl_service_conf *
find_service(struct loader *L, const char *name, size_t *idx)
{
	uint32_t i;

	/* Services are only added: index the ones added since. */
	for (; L->svc_named < L->conf->nservices; L->svc_named++)
		sl_strmap_put(&L->svc_names,
		    L->conf->services[L->svc_named].name,
		    (uint32_t)L->svc_named);
	if (!sl_strmap_get(&L->svc_names, name, &i))
		return NULL;
	*idx = i;
	return &L->conf->services[i];
}

/* The service a [version:], [rollout:] or [pin:] section belongs to. */
static struct sl_service_conf *
owner_service(struct loader *L, const struct section *sec, size_t *idx)
{
	struct sl_service_conf *svc = find_service(L, sec->name1, idx);

	if (svc == NULL)
		add_error(L, sec->line,
		    "[%s]: service '%s' is not defined (no [service:%s] "
		    "section)",
		    sec->title, sec->name1, sec->name1);
	return svc;
}

/* Report FILE (key KEY of SEC) unless it can be read. */
static void
check_readable(struct loader *L, const struct section *sec, const char *key,
    const char *file)
{
	if (file != NULL && access(file, R_OK) == -1)
		add_error(L, key_line(sec, key),
		    "[%s] %s: cannot read '%s': %s", sec->title, key, file,
		    strerror(errno));
}

int
sl_conf_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	if (u != NULL)
		*(bool *)u = true;
	return 0;
}

EVP_PKEY *
sl_conf_read_key(
    const char *path, const X509 *cert, const char *cert_path, char **why)
{
	BIO *in = BIO_new_file(path, "r");
	EVP_PKEY *pkey = NULL;
	bool encrypted = false;
	unsigned long e;

	*why = NULL;
	if (in != NULL)
		pkey = PEM_read_bio_PrivateKey(
		    in, NULL, sl_conf_no_passphrase_cb, &encrypted);
	BIO_free(in);
	if (encrypted) {
		EVP_PKEY_free(pkey);
		ERR_clear_error(); /* "bad decrypt": not the reason */
		*why = sl_xstrdup("is encrypted; sluice does not read "
		                  "passphrases: store it unencrypted (mode "
		                  "0600)");
		return NULL;
	}
	if (pkey == NULL)
		return NULL;
	/* Before the key goes into a context: one of another type than the
	 * certificate would only fail there as "no certificate assigned". */
	if (cert != NULL && X509_check_private_key(cert, pkey) != 1) {
		e = ERR_peek_last_error();
		*why = sl_xasprintf("does not match the certificate '%s': %s",
		    cert_path,
		    e != 0 && ERR_reason_error_string(e) != NULL
		        ? ERR_reason_error_string(e)
		        : "key values mismatch");
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return NULL;
	}
	ERR_clear_error();
	return pkey;
}

/* A PEM file to read, or NULL. Regular files only: a device the loader
 * is pointed at (/dev/zero, /dev/stdin) would never end or never come. */
static bool
regular_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static BIO *
open_pem(const char *path)
{
	return regular_file(path) ? BIO_new_file(path, "r") : NULL;
}

/*
 * The private key KEY (key KEY_KEY of SEC) and the certificate CERT it
 * serves: a key that asks for a passphrase is refused (sluice never reads
 * one), and a key and certificate that both load must belong together.
 * proxy/tls.c loads them again into its contexts, with the same messages,
 * and reports files that do not load at all, and the rest (chains, OCSP,
 * CAs); these two are checked here so that -t and a reload report them
 * with every other error of the file, not only once the others are fixed.
 */
static void
check_key_pair(struct loader *L, const struct section *sec, const char *key_key,
    const char *key, const char *cert)
{
	BIO *in;
	X509 *x = NULL;
	char *why;

	if (!regular_file(key))
		return;
	if ((in = open_pem(cert)) != NULL) {
		x = PEM_read_bio_X509_AUX(
		    in, NULL, sl_conf_no_passphrase_cb, NULL);
		BIO_free(in);
	}
	EVP_PKEY_free(sl_conf_read_key(key, x, cert, &why));
	if (why != NULL)
		add_error(L, key_line(sec, key_key), "[%s] %s: the key '%s' %s",
		    sec->title, key_key, key, why);
	free(why);
	X509_free(x);
	ERR_clear_error();
}

static void
check_listener(
    struct loader *L, const struct section *sec, struct sl_listener_conf *lc)
{
	static const char *const tls_only[] = {"tls_ocsp", "tls_min_version",
	    "tls_ciphers", "tls_client_ca", "tls_verify_client"};

	lc->tls_cert_line = key_line(sec, "tls_cert");
	lc->tls_key_line = key_line(sec, "tls_key");
	lc->tls_ocsp_line = key_line(sec, "tls_ocsp");
	lc->tls_ciphers_line = key_line(sec, "tls_ciphers");
	lc->tls_client_ca_line = key_line(sec, "tls_client_ca");
	if ((lc->tls_cert == NULL) != (lc->tls_key == NULL)) {
		add_error(L, sec->line,
		    "[%s]: tls_cert and tls_key must be set together (%s is "
		    "missing)",
		    sec->title, lc->tls_cert == NULL ? "tls_cert" : "tls_key");
		return;
	}
	if (lc->tls_cert == NULL) {
		for (size_t i = 0; i < sizeof tls_only / sizeof *tls_only;
		     i++) {
			if (has_key(sec, tls_only[i]))
				add_error(L, key_line(sec, tls_only[i]),
				    "[%s] %s: only for TLS listeners (set "
				    "tls_cert and tls_key)",
				    sec->title, tls_only[i]);
		}
		return;
	}
	check_readable(L, sec, "tls_cert", lc->tls_cert);
	check_readable(L, sec, "tls_key", lc->tls_key);
	check_readable(L, sec, "tls_ocsp", lc->tls_ocsp);
	check_readable(L, sec, "tls_client_ca", lc->tls_client_ca);
	check_key_pair(L, sec, "tls_key", lc->tls_key, lc->tls_cert);
	if (has_key(sec, "tls_verify_client") && lc->tls_client_ca == NULL)
		add_error(L, key_line(sec, "tls_verify_client"),
		    "[%s] tls_verify_client: needs tls_client_ca (the CAs "
		    "that sign client certificates)",
		    sec->title);
}

/* [cert:NAME]: files, and listeners that exist and terminate TLS. */
static void
check_cert(struct loader *L, const struct section *sec, struct sl_cert_conf *cc)
{
	const struct sl_config *conf = L->conf;
	size_t ntls = 0;

	cc->cert_line = key_line(sec, "cert");
	cc->key_line = key_line(sec, "key");
	cc->ocsp_line = key_line(sec, "ocsp");
	check_readable(L, sec, "cert", cc->cert);
	check_readable(L, sec, "key", cc->key);
	check_readable(L, sec, "ocsp", cc->ocsp);
	if (cc->cert != NULL && cc->key != NULL)
		check_key_pair(L, sec, "key", cc->key, cc->cert);
	for (size_t i = 0; i < conf->nlisteners; i++)
		ntls += conf->listeners[i].tls_cert != NULL;
	if (cc->nlisteners == 0 && ntls == 0)
		add_error(L, sec->line,
		    "[%s]: no TLS listener to serve it (set tls_cert and "
		    "tls_key on a [listener:NAME])",
		    sec->title);
	for (size_t i = 0; i < cc->nlisteners; i++) {
		const struct sl_listener_conf *lc = NULL;

		for (size_t j = 0; j < conf->nlisteners; j++) {
			if (strcmp(conf->listeners[j].name, cc->listeners[i]) ==
			    0)
				lc = &conf->listeners[j];
		}
		if (lc == NULL)
			add_error(L, key_line(sec, "listeners"),
			    "[%s] listeners: no [listener:%s]", sec->title,
			    cc->listeners[i]);
		else if (lc->tls_cert == NULL)
			add_error(L, key_line(sec, "listeners"),
			    "[%s] listeners: [listener:%s] is not a TLS "
			    "listener (set tls_cert and tls_key)",
			    sec->title, cc->listeners[i]);
	}
}

/* A version's origin TLS settings: the service's unless it sets them. */
static void
inherit_origin_tls(const struct section *sec, struct sl_origin_tls_conf *v,
    const struct sl_origin_tls_conf *s)
{
	if (!has_key(sec, "tls")) {
		v->enabled = s->enabled;
		v->line = s->line;
	} else
		v->line = key_line(sec, "tls");
	if (!has_key(sec, "tls_verify"))
		v->verify = s->verify;
	if (!has_key(sec, "tls_ca") && s->ca != NULL) {
		v->ca = sl_xstrdup(s->ca);
		v->ca_line = s->ca_line;
	}
	if (!has_key(sec, "tls_sni") && s->sni != NULL)
		v->sni = sl_xstrdup(s->sni);
	if (!has_key(sec, "tls_client_cert") && s->client_cert != NULL) {
		v->client_cert = sl_xstrdup(s->client_cert);
		v->client_cert_line = s->client_cert_line;
	}
	if (!has_key(sec, "tls_client_key") && s->client_key != NULL) {
		v->client_key = sl_xstrdup(s->client_key);
		v->client_key_line = s->client_key_line;
	}
}

/*
 * Origin TLS keys written in SEC ([service:] or, with VERSION, a
 * [version:] whose settings T already include the service's).
 */
static void
check_origin_tls(struct loader *L, const struct section *sec,
    struct sl_origin_tls_conf *t, bool version)
{
	static const char *const keys[] = {"tls_verify", "tls_ca", "tls_sni",
	    "tls_client_cert", "tls_client_key"};
	char *h;

	if (!version)
		t->line = key_line(sec, "tls");
	if (has_key(sec, "tls_ca"))
		t->ca_line = key_line(sec, "tls_ca");
	if (has_key(sec, "tls_client_cert"))
		t->client_cert_line = key_line(sec, "tls_client_cert");
	if (has_key(sec, "tls_client_key"))
		t->client_key_line = key_line(sec, "tls_client_key");
	if (has_key(sec, "tls_ca"))
		check_readable(L, sec, "tls_ca", t->ca);
	if (has_key(sec, "tls_client_cert"))
		check_readable(L, sec, "tls_client_cert", t->client_cert);
	if (has_key(sec, "tls_client_key"))
		check_readable(L, sec, "tls_client_key", t->client_key);
	if (has_key(sec, "tls_sni") && t->sni != NULL) {
		if ((h = sni_name(t->sni, false)) == NULL)
			add_error(L, key_line(sec, "tls_sni"),
			    "[%s] tls_sni: invalid server name '%s' (a DNS "
			    "name)",
			    sec->title, t->sni);
		else {
			free(t->sni);
			t->sni = h;
		}
	}
	if ((has_key(sec, "tls_client_cert") ||
	        has_key(sec, "tls_client_key")) &&
	    (t->client_cert == NULL) != (t->client_key == NULL))
		add_error(L, sec->line,
		    "[%s]: tls_client_cert and tls_client_key must be set "
		    "together (%s is missing)",
		    sec->title,
		    t->client_cert == NULL ? "tls_client_cert"
		                           : "tls_client_key");
	if (!version || t->enabled)
		return;
	for (size_t i = 0; i < 5; i++) {
		if (has_key(sec, keys[i]))
			add_error(L, key_line(sec, keys[i]),
			    "[%s] %s: has no effect without tls = yes",
			    sec->title, keys[i]);
	}
}

/* Has LINE (a key's) already been reported as wrong? Then checks that
 * compare its value with others would only add noise. */
static bool
line_failed(const struct loader *L, int line)
{
	for (size_t i = 0; i < L->nerrors; i++) {
		if (L->errors[i].line == line)
			return true;
	}
	return false;
}

static void
check_rollout(struct loader *L, const struct section *sec,
    const struct sl_rollout_conf *r)
{
	char a[32], b[32];

	if (r->interval_ms > r->step_time_ms &&
	    !line_failed(L, key_line(sec, "interval")) &&
	    !line_failed(L, key_line(sec, "step_time")))
		add_error(L,
		    has_key(sec, "interval") ? key_line(sec, "interval")
		                             : key_line(sec, "step_time"),
		    "[%s]: interval (%s) must not be longer than step_time "
		    "(%s)",
		    sec->title, fmt_duration(r->interval_ms, a, sizeof a),
		    fmt_duration(r->step_time_ms, b, sizeof b));
	/* A step must have time to be judged after its warm-up (a guard
	 * lasts `guard` after it). */
	if (r->warmup_ms > 0 && r->warmup_ms >= r->step_time_ms &&
	    !line_failed(L, key_line(sec, "warmup")) &&
	    !line_failed(L, key_line(sec, "step_time")))
		add_error(L, key_line(sec, "warmup"),
		    "[%s]: warmup (%s) must be shorter than step_time (%s)",
		    sec->title, fmt_duration(r->warmup_ms, a, sizeof a),
		    fmt_duration(r->step_time_ms, b, sizeof b));
}

/* Does the header NAME start with the lower-case LC, in any case, with
 * '_' for '-'? */
static bool
header_prefix(const char *name, const char *lc)
{
	for (; *lc != '\0'; name++, lc++) {
		if (*lc == '-' ? *name != '-' && *name != '_'
		               : (*name | 0x20) != *lc)
			return false;
	}
	return true;
}

/*
 * Why the header NAME cannot carry the override secret, or NULL. sluice
 * drops that header from every forwarded request, so it must not be one
 * the request's framing, routing or sluice's own rewriting depends on:
 * dropping Content-Length would let the body be read as a second request
 * the origin receives unparsed. Names match with '_' for '-' as sluice
 * matches its own (CGI-style origins read both as one).
 */
static const char *
secret_header_why(const char *name)
{
	static const struct {
		const char *name, *why;
	} reserved[] = {
	    {"content-length", "frames the request body"},
	    {"transfer-encoding", "frames the request body"},
	    {"host", "routes the request"},
	    {"expect", "is answered by the origin (100-continue)"},
	    {"connection", "is hop-by-hop"},
	    {"keep-alive", "is hop-by-hop"},
	    {"proxy-connection", "is hop-by-hop"},
	    {"te", "is hop-by-hop"},
	    {"trailer", "is hop-by-hop"},
	    {"upgrade", "is hop-by-hop"},
	    {"via", "is set by sluice"},
	    {"x-forwarded-for", "is set by sluice"},
	    {"x-forwarded-proto", "is set by sluice"},
	};
	size_t i;

	if (header_prefix(name, "x-client-cert-"))
		return "is set by sluice";
	for (i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
		if (header_prefix(name, reserved[i].name) &&
		    strlen(name) == strlen(reserved[i].name))
			return reserved[i].why;
	}
	return NULL;
}

/* Versions, stable, weights: the rules that need all of a service. */
static void
check_service(struct loader *L, size_t idx)
{
	struct sl_service_conf *svc = &L->conf->services[idx];
	const struct svc_state *st = &L->svcs[idx];
	struct sl_version_conf *stable = NULL;
	uint32_t sum = 0;

	/* A client address is always there, so with ip among the sources
	 * no request is ever without a key and the cookie never applies:
	 * the default sources (ip) give way to the cookie, and an explicit
	 * ip is an error. */
	if (svc->sticky_cookie != NULL && svc->nkeys > 0 &&
	    svc->keys[svc->nkeys - 1].source == SL_KEY_IP) {
		if (has_key(st->sec, "sticky"))
			add_error(L, key_line(st->sec, "sticky_cookie"),
			    "[service:%s] sticky_cookie: never used, since "
			    "'ip' in sticky gives every request a key (drop "
			    "ip from sticky)",
			    svc->name);
		else
			svc->nkeys--;
	}
	/* The cookie holds a bucket; read as a user key as well, its number
	 * would be hashed into another bucket, and a user would change
	 * version on their second request. */
	for (size_t k = 0; svc->sticky_cookie != NULL && k < svc->nkeys; k++) {
		if (svc->keys[k].source == SL_KEY_COOKIE &&
		    strcmp(svc->keys[k].name, svc->sticky_cookie) == 0)
			add_error(L, key_line(st->sec, "sticky_cookie"),
			    "[service:%s] sticky_cookie: '%s' is also "
			    "cookie:%s in sticky, a user key; the sticky "
			    "cookie holds a bucket (use another name)",
			    svc->name, svc->sticky_cookie, svc->keys[k].name);
	}

	/* The secret's header is dropped from forwarded requests. */
	if (svc->override_secret_header != NULL &&
	    has_key(st->sec, "override_secret_header")) {
		const char *why =
		    secret_header_why(svc->override_secret_header);

		if (why != NULL)
			add_error(L,
			    key_line(st->sec, "override_secret_header"),
			    "[service:%s] override_secret_header: '%s' %s; "
			    "sluice drops the secret's header from forwarded "
			    "requests (use a header of its own, like "
			    "X-Sluice-Secret)",
			    svc->name, svc->override_secret_header, why);
	}
	/* Either may be the one written (the other its default). */
	if (svc->override_header != NULL &&
	    svc->override_secret_header != NULL &&
	    strcasecmp(svc->override_header, svc->override_secret_header) ==
	        0) {
		bool secret = has_key(st->sec, "override_secret_header");
		const char *key =
		    secret ? "override_secret_header" : "override_header";

		add_error(L, key_line(st->sec, key),
		    "[service:%s] %s: '%s' is also %s; the version and the "
		    "secret need headers of their own",
		    svc->name, key, svc->override_secret_header,
		    secret ? "override_header" : "override_secret_header");
	}

	if (svc->nversions == 0) {
		add_error(L, svc->line,
		    "[service:%s]: no versions (add a [version:%s/NAME] "
		    "section)",
		    svc->name, svc->name);
		return;
	}
	if (svc->stable == NULL)
		return; /* reported as missing */
	for (size_t i = 0; i < svc->nversions; i++) {
		if (strcmp(svc->versions[i].name, svc->stable) == 0)
			stable = &svc->versions[i];
	}
	if (stable == NULL) {
		add_error(L, key_line(st->sec, "stable"),
		    "[service:%s] stable: no version '%s' in service '%s'",
		    svc->name, svc->stable, svc->name);
		if (!st->weight_set)
			return;
	} else if (!st->weight_set)
		stable->weight = SL_WEIGHT_TOTAL;
	if (st->weight_bad)
		return;
	for (size_t i = 0; i < svc->nversions; i++)
		sum += svc->versions[i].weight;
	if (sum != SL_WEIGHT_TOTAL)
		add_error(L, svc->line,
		    "[service:%s]: weights of versions sum to %u.%02u, must "
		    "be 100.00",
		    svc->name, sum / 100, sum % 100);
}

/*
 * The control sockets: two paths, and neither an existing file that is
 * not a socket (sluice replaces a stale socket there at start, and would
 * otherwise refuse to start on it; sluice -t says so first).
 */
static void
check_control_sockets(struct loader *L, const struct section *sluice)
{
	const struct sl_global_conf *g = &L->conf->global;
	const char *keys[] = {"control_socket", "control_socket_ro"};
	const char *paths[] = {g->control_socket, g->control_socket_ro};
	struct stat st;

	for (size_t i = 0; i < 2; i++) {
		if (paths[i] != NULL && lstat(paths[i], &st) == 0 &&
		    !S_ISSOCK(st.st_mode))
			add_error(L, sluice ? key_line(sluice, keys[i]) : 0,
			    "[sluice] %s: '%s' exists and is not a socket; "
			    "sluice will not remove it (choose another path)",
			    keys[i], paths[i]);
	}
	if (paths[0] == NULL || paths[1] == NULL ||
	    strcmp(paths[0], paths[1]) != 0)
		return;
	if (has_key(sluice, "control_socket"))
		add_error(L, key_line(sluice, "control_socket_ro"),
		    "[sluice] control_socket_ro: '%s' is control_socket too "
		    "(line %d); the read-only socket needs a path of its own",
		    paths[1], key_line(sluice, "control_socket"));
	else
		add_error(L, key_line(sluice, "control_socket_ro"),
		    "[sluice] control_socket_ro: '%s' is control_socket's "
		    "default; the read-only socket needs a path of its own",
		    paths[1]);
}

/* Do two services claim the same requests? */
static bool
same_route(const struct sl_service_conf *a, const struct sl_service_conf *b)
{
	if (strcmp(a->path_prefix, b->path_prefix) != 0)
		return false;
	if (a->nhosts == 0 || b->nhosts == 0)
		return a->nhosts == 0 && b->nhosts == 0;
	for (size_t i = 0; i < a->nhosts; i++) {
		for (size_t j = 0; j < b->nhosts; j++) {
			if (strcmp(a->hosts[i], b->hosts[j]) == 0)
				return true;
		}
	}
	return false;
}

/*
 * Does WHAT ("[listener:b] bind", "[sluice] admin"), bound to SS (written
 * TEXT, at LINE), take listener A's connections (binds_overlap)? If so,
 * the error says so and true is returned.
 */
static bool
bind_taken(struct loader *L, int line, const char *what,
    const struct sockaddr_storage *ss, const char *text,
    const struct sl_listener_conf *a)
{
	if (a->bind.text == NULL || !binds_overlap(&a->bind.ss, ss))
		return false;
	if (sl_conf_same_sockaddr(&a->bind.ss, ss))
		add_error(L, line,
		    "%s: address '%s' is already bound by [listener:%s] "
		    "(line %d)",
		    what, text, a->name, a->line);
	else
		add_error(L, line,
		    "%s: address '%s' overlaps '%s' of [listener:%s] (line "
		    "%d): an IPv4-mapped IPv6 address is that IPv4 address",
		    what, text, a->bind.text, a->name, a->line);
	return true;
}

static void
check_routes_and_binds(struct loader *L, const struct section *sluice)
{
	struct sl_config *conf = L->conf;
	char what[SL_MAX_NAME + 32];

	for (size_t j = 0; j < conf->nservices; j++) {
		for (size_t i = 0; i < j; i++) {
			const struct sl_service_conf *a = &conf->services[i];
			const struct sl_service_conf *b = &conf->services[j];

			if (a->path_prefix == NULL || b->path_prefix == NULL ||
			    !same_route(a, b))
				continue;
			add_error(L, b->line,
			    "[service:%s]: ambiguous routing: same hosts and "
			    "path_prefix '%s' as [service:%s] (line %d)",
			    b->name, b->path_prefix, a->name, a->line);
			break;
		}
	}
	for (size_t j = 0; j < conf->nlisteners; j++) {
		const struct sl_listener_conf *b = &conf->listeners[j];

		if (b->bind.text == NULL)
			continue;
		snprintf(what, sizeof what, "[listener:%s] bind", b->name);
		for (size_t i = 0; i < j; i++) {
			if (bind_taken(L, key_line(L->listener_secs[j], "bind"),
			        what, &b->bind.ss, b->bind.text,
			        &conf->listeners[i]))
				break;
		}
	}
	/* The admin endpoint binds with SO_REUSEPORT too: on a listener's
	 * address, requests would land on either at random. */
	for (size_t i = 0; conf->global.has_admin && i < conf->nlisteners;
	     i++) {
		if (bind_taken(L, key_line(sluice, "admin"), "[sluice] admin",
		        &conf->global.admin.ss, conf->global.admin_text,
		        &conf->listeners[i]))
			break;
	}
}

static size_t
count_sections(struct loader *L, enum sect_type type)
{
	size_t n = 0;

	for (size_t i = 0; i < L->nsections; i++)
		n += L->sections[i].def->type == type;
	return n;
}

/* Turn the collected sections into L->conf. */
static void
build(struct loader *L)
{
	struct sl_config *conf = L->conf;
	const struct section *sluice = NULL, *sec;
	size_t nl = count_sections(L, SECT_LISTENER);
	size_t ns = count_sections(L, SECT_SERVICE);
	struct sl_service_conf *svc;
	size_t idx;
	bool *has_rollout;

	conf->listeners = sl_xcalloc(nl ? nl : 1, sizeof *conf->listeners);
	conf->services = sl_xcalloc(ns ? ns : 1, sizeof *conf->services);
	L->listener_secs = sl_xcalloc(nl ? nl : 1, sizeof *L->listener_secs);
	L->svcs = sl_xcalloc(ns ? ns : 1, sizeof *L->svcs);
	has_rollout = sl_xcalloc(ns ? ns : 1, sizeof *has_rollout);

	for (size_t i = 0; i < L->nsections; i++) {
		if (L->sections[i].def->type == SECT_SLUICE)
			sluice = &L->sections[i];
	}
	apply_section(
	    L, &sect_defs[SECT_SLUICE], sluice, "sluice", &conf->global);
	check_control_sockets(L, sluice);

	/* Listeners and services first: the rest refer to services. */
	for (size_t i = 0; i < L->nsections; i++) {
		sec = &L->sections[i];
		if (sec->def->type == SECT_LISTENER) {
			struct sl_listener_conf *lc =
			    &conf->listeners[conf->nlisteners];

			L->listener_secs[conf->nlisteners++] = sec;
			lc->name = sl_xstrdup(sec->name1);
			lc->line = sec->line;
			apply_section(L, sec->def, sec, sec->title, lc);
			check_listener(L, sec, lc);
		} else if (sec->def->type == SECT_SERVICE) {
			svc = &conf->services[conf->nservices];
			L->svcs[conf->nservices++].sec = sec;
			svc->name = sl_xstrdup(sec->name1);
			svc->line = sec->line;
			apply_section(L, sec->def, sec, sec->title, svc);
			if (svc->seed == NULL)
				svc->seed = sl_xstrdup(svc->name);
			check_origin_tls(L, sec, &svc->tls, false);
		}
	}

	/* Certificates for SNI name listeners: after the listeners. */
	for (size_t i = 0; i < L->nsections; i++) {
		struct sl_cert_conf *cc;

		sec = &L->sections[i];
		if (sec->def->type != SECT_CERT)
			continue;
		conf->certs = sl_xreallocarray(
		    conf->certs, conf->ncerts + 1, sizeof *conf->certs);
		cc = &conf->certs[conf->ncerts++];
		memset(cc, 0, sizeof *cc);
		cc->name = sl_xstrdup(sec->name1);
		cc->line = sec->line;
		apply_section(L, sec->def, sec, sec->title, cc);
		check_cert(L, sec, cc);
	}

	for (size_t i = 0; i < L->nsections; i++) {
		struct sl_version_conf *v;

		sec = &L->sections[i];
		if (sec->def->type != SECT_VERSION ||
		    (svc = owner_service(L, sec, &idx)) == NULL)
			continue;
		svc->versions = sl_xreallocarray(
		    svc->versions, svc->nversions + 1, sizeof *svc->versions);
		v = &svc->versions[svc->nversions++];
		memset(v, 0, sizeof *v);
		v->name = sl_xstrdup(sec->name2);
		v->line = sec->line;
		L->cur_service = idx;
		apply_section(L, sec->def, sec, sec->title, v);
		inherit_origin_tls(sec, &v->tls, &svc->tls);
		check_origin_tls(L, sec, &v->tls, true);
	}

	for (size_t i = 0; i < L->nsections; i++) {
		struct sl_pin_conf *pin;

		sec = &L->sections[i];
		if (sec->def->type == SECT_ROLLOUT &&
		    (svc = owner_service(L, sec, &idx)) != NULL) {
			has_rollout[idx] = true;
			svc->rollout.present = true;
			svc->rollout.line = sec->line;
			apply_section(
			    L, sec->def, sec, sec->title, &svc->rollout);
			check_rollout(L, sec, &svc->rollout);
			/* The analyzer judges latencies: without them a
			 * rollout could only ever be inconclusive. */
			if (!conf->global.measure && sluice != NULL &&
			    !line_failed(L, key_line(sluice, "measure")))
				add_error(L, key_line(sluice, "measure"),
				    "[sluice] measure: 'no' leaves the "
				    "analyzer no latencies, so [%s] could "
				    "never promote (set measure = yes, or "
				    "remove the [rollout:] sections)",
				    sec->title);
		}
		if (sec->def->type != SECT_PIN ||
		    (svc = owner_service(L, sec, &idx)) == NULL)
			continue;
		svc->pins = sl_xreallocarray(
		    svc->pins, svc->npins + 1, sizeof *svc->pins);
		pin = &svc->pins[svc->npins++];
		memset(pin, 0, sizeof *pin);
		pin->name = sl_xstrdup(sec->name2);
		pin->line = sec->line;
		apply_section(L, sec->def, sec, sec->title, pin);
		if (pin->version != NULL &&
		    sl_conf_version(svc, pin->version) == NULL)
			add_error(L, key_line(sec, "version"),
			    "[%s] version: no version '%s' in service '%s'",
			    sec->title, pin->version, svc->name);
	}

	/* Services without [rollout:] still get the default parameters,
	 * for "rollout start" from the control socket. */
	for (size_t i = 0; i < conf->nservices; i++) {
		if (!has_rollout[i])
			apply_section(L, &sect_defs[SECT_ROLLOUT], NULL,
			    "rollout", &conf->services[i].rollout);
		check_service(L, i);
	}
	free(has_rollout);
	check_routes_and_binds(L, sluice);

	if (conf->nlisteners == 0)
		add_error(L, L->lineno > 0 ? L->lineno : 1,
		    "no [listener:NAME] section (at least one is required)");
	if (conf->nservices == 0)
		add_error(L, L->lineno > 0 ? L->lineno : 1,
		    "no [service:NAME] section (at least one is required)");
}

static void
loader_free(struct loader *L)
{
	for (size_t i = 0; i < L->nsections; i++) {
		struct section *sec = &L->sections[i];

		for (size_t j = 0; j < sec->nentries; j++)
			free(sec->entries[j].value);
		free(sec->entries);
		free(sec->title);
		free(sec->name1);
		free(sec->name2);
	}
	free(L->sections);
	sl_strmap_free(&L->titles);
	sl_strmap_free(&L->svc_names);
	for (size_t i = 0; i < L->nerrors; i++)
		free(L->errors[i].msg);
	free(L->errors);
	free(L->line);
	free(L->long_key);
	free(L->long_value);
	free(L->svcs);
	free(L->listener_secs);
}

/* Read, collect, build: the common path of both entry points. */
static struct sl_config *
load_text(const char *name, const char *text, size_t len, char **errp)
{
	struct loader L;
	struct sl_config *conf;
	int rc;

	memset(&L, 0, sizeof L);
	L.file = name;
	L.text = text;
	L.len = len;
	L.cur = NONE;
	L.cont = NONE;
	L.conf = conf = sl_xcalloc(1, sizeof *conf);
	conf->path = sl_xstrdup(name);

	rc = ini_parse_stream(read_line_cb, &L, ini_entry_cb, &L);
	if (rc != 0)
		add_error(&L, rc > 0 ? rc : 0,
		    "inih rejected this line (is libinih built without "
		    "multi-line support?)");
	build(&L);

	if (errp != NULL)
		*errp = NULL;
	if (L.nerrors > 0) {
		if (errp != NULL)
			*errp = join_errors(&L);
		sl_conf_free(conf);
		conf = NULL;
	}
	loader_free(&L);
	return conf;
}

/* Load and validate PATH; see conf.h. */
struct sl_config *
sl_conf_load(const char *path, char **errp)
{
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0, got;
	struct sl_config *conf;

	if ((f = fopen(path, "r")) == NULL) {
		if (errp != NULL)
			*errp = sl_xasprintf(
			    "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			text = sl_xrealloc(text, cap);
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		if (errp != NULL)
			*errp = sl_xasprintf(
			    "%s: cannot read: %s", path, strerror(errno));
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	conf = load_text(path, text, len, errp);
	free(text);
	return conf;
}

/* Same, from a string; NAME stands for the file in messages. */
struct sl_config *
sl_conf_load_string(const char *name, const char *text, char **errp)
{
	return load_text(name, text, strlen(text), errp);
}

static void
free_addr(struct sl_addr *a)
{
	free(a->text);
}

static void
free_origin_tls(struct sl_origin_tls_conf *t)
{
	free(t->ca);
	free(t->sni);
	free(t->client_cert);
	free(t->client_key);
}

/* Free a config and everything it owns; NULL is fine. */
void
sl_conf_free(struct sl_config *conf)
{
	if (conf == NULL)
		return;
	if (conf->tls_free != NULL)
		conf->tls_free(conf);
	free(conf->path);
	free(conf->global.control_socket);
	free(conf->global.control_socket_ro);
	free(conf->global.control_group);
	free(conf->global.event_log);
	free(conf->global.access_log);
	free(conf->global.admin_text);
	free_addr(&conf->global.admin);
	free(conf->global.state_file);
	for (size_t i = 0; i < conf->nlisteners; i++) {
		struct sl_listener_conf *lc = &conf->listeners[i];

		free(lc->name);
		free_addr(&lc->bind);
		free(lc->tls_cert);
		free(lc->tls_key);
		free(lc->tls_ocsp);
		free(lc->tls_ciphers);
		free(lc->tls_client_ca);
	}
	free(conf->listeners);
	for (size_t i = 0; i < conf->ncerts; i++) {
		struct sl_cert_conf *cc = &conf->certs[i];

		free(cc->name);
		free(cc->cert);
		free(cc->key);
		free(cc->ocsp);
		free_list(cc->names, cc->nnames);
		free_list(cc->listeners, cc->nlisteners);
	}
	free(conf->certs);
	for (size_t i = 0; i < conf->nservices; i++) {
		struct sl_service_conf *svc = &conf->services[i];

		free(svc->name);
		for (size_t j = 0; j < svc->nhosts; j++)
			free(svc->hosts[j]);
		free(svc->hosts);
		free(svc->path_prefix);
		for (size_t j = 0; j < svc->nkeys; j++)
			free(svc->keys[j].name);
		free(svc->keys);
		free(svc->seed);
		free(svc->stable);
		free(svc->sticky_cookie);
		free(svc->override_header);
		free(svc->override_secret);
		free(svc->override_secret_header);
		free(svc->health_path);
		free(svc->override_networks);
		for (size_t j = 0; j < svc->nversions; j++) {
			struct sl_version_conf *v = &svc->versions[j];

			free(v->name);
			for (size_t k = 0; k < v->nservers; k++)
				free_addr(&v->servers[k].addr);
			free(v->servers);
			free_origin_tls(&v->tls);
		}
		free_origin_tls(&svc->tls);
		free(svc->versions);
		for (size_t j = 0; j < svc->npins; j++) {
			free(svc->pins[j].name);
			free(svc->pins[j].field);
			free(svc->pins[j].value);
			free(svc->pins[j].version);
		}
		free(svc->pins);
		free(svc->rollout.steps);
	}
	free(conf->services);
	free(conf);
}

/*
 * conf.h — sluice's configuration as loaded from the INI file.
 *
 * The loader (conf/load.c) reads one file with inih, validates every key
 * and section, and either returns a complete struct sl_config or NULL with
 * every error found, each as "file:line: message". A config is immutable
 * once loaded; the proxy builds its routing snapshot from it.
 *
 * Units: durations are milliseconds (uint32_t, "ms" suffix on the field);
 * weights are hundredths of a percent (0..10000, so 12.34% is 1234); sizes
 * are bytes.
 */
#ifndef SL_CONF_H
#define SL_CONF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_WEIGHT_TOTAL 10000 /* 100.00% */
#define SL_MAX_NAME     63    /* service and version names */

/* A resolved socket address plus the text it came from ("host:port"). */
struct sl_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char *text; /* as written in the config, e.g. "127.0.0.1:8080" */
};

struct ssl_ctx_st; /* OpenSSL's SSL_CTX; built by proxy/tls.c */

/* TLS protocol versions as on the wire (tls_min_version). */
#define SL_TLS_1_2 0x0303
#define SL_TLS_1_3 0x0304

/* tls_verify_client: a listener with tls_client_ca refuses a handshake
 * without a valid client certificate, or takes one without any (a
 * certificate that is presented must still verify). */
#define SL_VERIFY_CLIENT_REQUIRED 0
#define SL_VERIFY_CLIENT_OPTIONAL 1

/* [listener:NAME] */
struct sl_listener_conf {
	char *name;
	struct sl_addr bind;
	char *tls_cert;    /* PEM: certificate, then its chain; NULL = plain */
	char *tls_key;     /* PEM private key */
	char *tls_ocsp;    /* DER OCSP response to staple; NULL = none */
	char *tls_ciphers; /* TLS 1.2 cipher list; NULL = sluice's default */
	int tls_min_version; /* SL_TLS_1_2 (default) or SL_TLS_1_3 */
	/* Client certificates (mTLS): CAs that sign them (PEM bundle; NULL
	 * = none asked for) and whether one is required or optional. */
	char *tls_client_ca;
	int tls_verify_client; /* SL_VERIFY_CLIENT_* */
	int tls_cert_line, tls_key_line, tls_ocsp_line, tls_ciphers_line;
	int tls_client_ca_line;
	int line; /* line of the section header, for messages */
	/* Built by sl_tls_prepare (proxy/tls.c) for TLS listeners: the
	 * default context, which also owns the SNI map. */
	struct ssl_ctx_st *tls_ctx;
};

/* [cert:NAME] — another certificate for TLS listeners, chosen by SNI. */
struct sl_cert_conf {
	char *name;
	char *cert; /* PEM: certificate, then its chain */
	char *key;
	char *ocsp;   /* DER OCSP response; NULL = none */
	char **names; /* lower case, "*.example.com" allowed; none = the
	               * certificate's DNS names (SAN, else CN) */
	size_t nnames;
	char **listeners; /* listener names; none = every TLS listener */
	size_t nlisteners;
	int cert_line, key_line, ocsp_line;
	int line;
};

/*
 * TLS to origins. Set in [service:NAME] as defaults for its versions, in
 * [version:SVC/NAME] to override them.
 */
struct sl_origin_tls_conf {
	bool enabled;      /* tls = yes */
	bool verify;       /* tls_verify, default yes */
	char *ca;          /* PEM CA bundle; NULL = the system store */
	char *sni;         /* server name and name to verify; NULL = the
	                    * server's host */
	char *client_cert; /* PEM: client certificate for mTLS; NULL = none */
	char *client_key;
	int line; /* of the "tls" key (or the section), for messages */
	int ca_line, client_cert_line, client_key_line;
	/* Built by sl_tls_prepare for versions with tls = yes. */
	struct ssl_ctx_st *ctx;
};

/* One server of a version: "host:port" or "host:port=WEIGHT". */
struct sl_server_conf {
	struct sl_addr addr;
	uint32_t weight; /* 1..1000, default 1 */
};

/* [version:SVC/NAME] */
struct sl_version_conf {
	char *name;
	struct sl_server_conf *servers;
	size_t nservers;
	uint32_t weight;               /* hundredths of a percent, 0..10000 */
	struct sl_origin_tls_conf tls; /* the service's, unless overridden */
	int line;
};

/* Where a user key comes from, in the configured order ("sticky ="). */
enum sl_key_source {
	SL_KEY_HEADER, /* header:NAME */
	SL_KEY_COOKIE, /* cookie:NAME */
	SL_KEY_QUERY,  /* query:NAME */
	SL_KEY_IP,     /* ip (client address) */
};

struct sl_key_conf {
	enum sl_key_source source;
	char *name; /* NULL for SL_KEY_IP */
};

/* A match rule (a [pin:SVC/NAME] section) that pins a group to a version. */
enum sl_match_op {
	SL_MATCH_EQUALS, /* header:NAME=VALUE */
	SL_MATCH_PREFIX, /* header:NAME^=VALUE */
};

struct sl_pin_conf {
	char *name;
	enum sl_key_source source; /* SL_KEY_HEADER or SL_KEY_COOKIE only */
	char *field;               /* header or cookie name */
	enum sl_match_op op;
	char *value;
	char *version; /* names a version of the same service */
	int line;
};

/* A trusted network for overrides: "10.0.0.0/8", "::1/128", "127.0.0.1". */
struct sl_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t prefix; /* bits */
};

/* [rollout:SVC] — parsed and validated here; used by the analyzer. */
struct sl_rollout_conf {
	bool present;
	uint32_t *steps; /* canary weights, hundredths of a percent */
	size_t nsteps;
	uint32_t step_time_ms;    /* default 60s */
	uint32_t interval_ms;     /* default 10s */
	uint32_t min_requests;    /* default 200 */
	double max_error_rate;    /* fraction 0..1, default 0.01 */
	double max_latency_ratio; /* > 1.0, default 1.5 */
	double latency_quantile;  /* (0,1), default 0.99 */
	/* Latencies this close or closer tie; default 250us, 0 = off. */
	uint32_t latency_tolerance_us;
	uint32_t guard_ms;  /* blue/green guard after switch; 0 = off */
	uint32_t warmup_ms; /* start of each step not judged; 0 = off */
	bool judge_4xx;     /* 4xx are errors for error_vs_stable; no */
	int line;
};

/* [service:NAME] */
struct sl_service_conf {
	char *name;
	char **hosts; /* lower-cased, no port; empty = any host */
	size_t nhosts;
	char *path_prefix; /* default "/" */
	struct sl_key_conf *keys;
	size_t nkeys;        /* default: one SL_KEY_IP */
	char *seed;          /* default: the service name */
	char *stable;        /* names a version; required */
	char *sticky_cookie; /* NULL = no cookie for anonymous users */
	bool
	    expose_version; /* adds X-Sluice-Version to responses; default no */

	/* Override header: honoured only with a proof. */
	char *override_header;        /* default "X-Sluice-Version" */
	char *override_secret;        /* NULL = no secret accepted */
	char *override_secret_header; /* default "X-Sluice-Secret" */
	struct sl_cidr *override_networks;
	size_t noverride_networks;

	struct sl_version_conf *versions;
	size_t nversions;
	struct sl_pin_conf *pins;
	size_t npins;
	struct sl_rollout_conf rollout;

	/* Active health checks (none when health_path is NULL). */
	char *health_path;
	uint32_t health_interval_ms; /* 5s */
	uint32_t health_timeout_ms;  /* 2s */
	uint32_t health_rise;        /* successes to come back up; 2 */
	uint32_t health_fall;        /* failures to go down; 3 */
	uint16_t health_status_min;  /* expected status range; 200..399 */
	uint16_t health_status_max;

	/* Passive outlier ejection. */
	uint32_t eject_after;          /* consecutive failures; 5, 0 = never */
	uint32_t eject_time_ms;        /* first ejection; doubles; 10s */
	uint32_t eject_max_pct;        /* share of a version's servers; 50 */
	bool fallback_stable;          /* no server in a version: use stable */
	struct sl_origin_tls_conf tls; /* defaults for the versions */
	int line;
};

/* [sluice] — process-wide settings, timeouts and limits. */
struct sl_global_conf {
	int workers; /* 0 = auto (one per core) */
	char *control_socket;
	char *control_socket_ro; /* read-only socket (show/help); NULL = none */
	uint32_t control_mode;   /* file mode of the sockets; default 0600 */
	char *control_group;     /* group owning the sockets; NULL = keep */
	char *event_log;         /* JSON-lines event log; NULL = none */
	char *access_log;        /* JSON line per request; NULL = none */
	char *admin_text;        /* "127.0.0.1:9901" or NULL when not set */
	struct sl_addr admin;
	bool has_admin;
	char *state_file;
	/* A control client's first line, or one it began, whole; 10s. */
	uint32_t control_line_timeout_ms;
	/* A control client's silence after its replies are out; 60s. */
	uint32_t control_idle_timeout_ms;

	uint32_t header_timeout_ms;    /* whole request head; default 10s */
	uint32_t keepalive_timeout_ms; /* idle between requests; 60s */
	uint32_t tunnel_timeout_ms;    /* idle Upgrade tunnel; 1h */
	uint32_t connect_timeout_ms;   /* upstream connect; 3s */
	uint32_t response_timeout_ms;  /* upstream response head; 30s */
	uint32_t body_timeout_ms;      /* idle while streaming a body; 30s */
	uint32_t max_header_size;      /* request head bytes; 16 KiB */
	uint32_t max_headers;          /* header fields; 100 */
	uint32_t max_connections; /* client connections per process; 10000 */
	uint32_t max_conns_per_client; /* per address (IPv6: /64); 0 = off */
	uint32_t upstream_keepalive;   /* idle upstream conns per server per
	                                  worker; 32 */
	bool measure;                  /* latency histograms on; default yes */
	bool normalize_path;           /* resolve dot-segments; default yes */
	uint32_t drain_timeout_ms;     /* SIGTERM: in-flight grace; 10s */
	uint32_t retries;              /* retries of a failed attempt; 1 */
	uint32_t retry_budget_pct;     /* retries per 100 requests; 20 */
	uint32_t tls_ticket_rotation_ms; /* session ticket key lifetime; 1h */
};

struct sl_config {
	char *path;
	struct sl_global_conf global;
	struct sl_listener_conf *listeners;
	size_t nlisteners;
	struct sl_service_conf *services;
	size_t nservices;
	struct sl_cert_conf *certs;
	size_t ncerts;
	/* Frees what sl_tls_prepare built (set by it); sl_conf_free calls
	 * it, so conf/ needs no OpenSSL. */
	void (*tls_free)(struct sl_config *conf);
};

/*
 * Load and validate PATH. Returns a new config (free with sl_conf_free), or
 * NULL with *errp set to every error found, one "file:line: message" per
 * line (heap string, caller frees).
 */
struct sl_config *sl_conf_load(const char *path, char **errp);

/* Same, from a string; NAME stands for the file in messages (tests). */
struct sl_config *sl_conf_load_string(
    const char *name, const char *text, char **errp);

void sl_conf_free(struct sl_config *conf);

/* Find a service's version by name; NULL if absent. */
const struct sl_version_conf *sl_conf_version(
    const struct sl_service_conf *svc, const char *name);

/* Find a listener by name; NULL if absent. */
const struct sl_listener_conf *sl_conf_listener(
    const struct sl_config *conf, const char *name);

/*
 * Value parsers, shared with the control socket. Each returns 0 or -1 with a
 * short reason in *why (static string).
 */
int sl_conf_parse_duration(const char *s, uint32_t *ms, const char **why);
int sl_conf_parse_weight(const char *s, uint32_t *hundredths, const char **why);

/* Is NAME a lock owner the control socket takes (1-63 of A-Za-z0-9_.@:-)?
 * Shared by the daemon's commands, its state file and sluicectl. */
bool sl_conf_valid_owner(const char *name);
int sl_conf_parse_size(const char *s, uint32_t *bytes, const char **why);
int sl_conf_parse_addr(const char *s, struct sl_addr *addr, const char **why);
int sl_conf_parse_cidr(const char *s, struct sl_cidr *cidr, const char **why);
/* Do A and B (resolved by sl_conf_parse_addr) name the same address and
 * port? */
bool sl_conf_same_sockaddr(
    const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* An OpenSSL passphrase callback that never gives one (OpenSSL's default
 * prompts on the terminal or waits on stdin). *U (a bool, when given) is
 * set: the file asked for a passphrase, it is encrypted. */
int sl_conf_no_passphrase_cb(char *buf, int size, int rwflag, void *u);

struct evp_pkey_st;
struct x509_st;

/*
 * The private key in PEM file PATH, read without a passphrase, and, when
 * CERT is given, checked against that certificate (CERT_PATH names it):
 * the key (EVP_PKEY_free it), or NULL. With *WHY (heap) to follow "the key
 * 'PATH' " in a message when it is encrypted or not CERT's key (OpenSSL's
 * error queue cleared); with *WHY NULL when the file does not load at all
 * (the queue says why). One check for the config loader and proxy/tls.c,
 * so that both say the same.
 */
struct evp_pkey_st *sl_conf_read_key(const char *path,
    const struct x509_st *cert, const char *cert_path, char **why);

/* Does the address SA (AF_INET or AF_INET6) fall into CIDR? */
bool sl_cidr_match(const struct sl_cidr *cidr, const struct sockaddr *sa);

#endif

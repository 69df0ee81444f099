/*
 * tls.c — TLS contexts for listeners and origins, on OpenSSL 3; the
 * streams themselves are sl_io's TLS mode (io.c).
 *
 * Listeners. Each TLS listener gets a default SSL_CTX (its tls_cert and
 * tls_key) and one SSL_CTX per [cert:] section it serves. The default
 * context carries, in its ex_data, the SNI map (server name -> context;
 * exact names first, then "*.domain" wildcards) and holds a reference on
 * every context in it; the servername callback switches the SSL to the
 * matching context. An SSL keeps its initial (default) context for its
 * whole life, so the map it was born with stays valid until it is freed,
 * whichever config is current by then. Every context has the same
 * protocol settings: TLS 1.2 and 1.3 (or 1.3 only), a modern cipher list
 * for 1.2, ALPN "http/1.1", no renegotiation, OCSP stapling when a
 * response file is given.
 *
 * Session resumption. Stateless tickets only (no server-side session
 * cache, nothing shared between threads but the keys): tickets are
 * encrypted with process-wide keys, so a client resumes on any worker and
 * across reloads. The control thread rotates the keys every
 * tls_ticket_rotation; the current key issues tickets, the two before it
 * still decrypt them (and the ticket is then renewed), so a ticket lives
 * at most two rotations, which is also the session lifetime announced to
 * clients. Workers read the keys through a seqlock: no lock, no
 * lock-prefixed atomic, never a torn key. A session resumes only under the
 * server name it was made for (ticket_decrypt_cb, RFC 6066 section 3).
 *
 * Origins. Each version with tls = yes gets a client SSL_CTX (versions
 * with identical settings share one): TLS 1.2+, peer verification against
 * tls_ca (or the system store) unless tls_verify = no, the host name
 * checked (tls_sni, else the server's host), optional client certificate.
 * A pooled connection remembers the context it was made with, so a reload
 * that changes the settings never reuses a connection made under the old
 * ones.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/ui.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "proxy/http1.h"
#include "proxy/io.h"
#include "proxy/route.h"
#include "proxy/tls.h"

/* TLS 1.2 ciphers: forward secret AEADs only (Mozilla "intermediate"
 * without DHE). TLS 1.3 uses OpenSSL's default suites. */
#define SL_TLS12_CIPHERS                                                       \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define SL_OCSP_MAX (1024 * 1024)

/* ALPN: HTTP/1.1 is the only protocol sluice speaks. */
static const unsigned char alpn_h11[] = "\x08http/1.1";

/* ---- session ticket keys ---- */

#define TICKET_KEYS      3  /* current, and two that still decrypt */
#define TICKET_KEY_WORDS 10 /* 16 name + 32 AES + 32 HMAC bytes */

struct ticket_key {
	uint64_t w[TICKET_KEY_WORDS];
};

/* Written by the control thread only; seq is odd while it writes. */
static struct {
	uint64_t seq;
	struct ticket_key keys[TICKET_KEYS]; /* [0] is current */
} ticket_ring;

/* A consistent copy of the ticket keys (seqlock read side). */
static void
ticket_snapshot(struct ticket_key out[TICKET_KEYS])
{
	uint64_t s1, s2;
	size_t i, j;

	do {
		s1 = __atomic_load_n(&ticket_ring.seq, __ATOMIC_ACQUIRE);
		for (i = 0; i < TICKET_KEYS; i++)
			for (j = 0; j < TICKET_KEY_WORDS; j++)
				out[i].w[j] =
				    __atomic_load_n(&ticket_ring.keys[i].w[j],
				        __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&ticket_ring.seq, __ATOMIC_RELAXED);
	} while ((s1 & 1) != 0 || s1 != s2);
}

/* Store key K into slot I (writer side, inside the seqlock). */
static void
ticket_store(size_t i, const struct ticket_key *k)
{
	size_t j;

	for (j = 0; j < TICKET_KEY_WORDS; j++)
		__atomic_store_n(
		    &ticket_ring.keys[i].w[j], k->w[j], __ATOMIC_RELAXED);
}

/* Rotate: shift the keys down one slot, a fresh random key on top. */
void
sl_tls_rotate_ticket_keys(void)
{
	struct ticket_key fresh, old;
	uint64_t seq;
	size_t i, j;

	if (RAND_bytes((unsigned char *)fresh.w, sizeof fresh.w) != 1) {
		sl_log_error("TLS: cannot make a session ticket key; keeping "
		             "the current ones");
		ERR_clear_error();
		return;
	}
	seq = __atomic_load_n(&ticket_ring.seq, __ATOMIC_RELAXED);
	__atomic_store_n(&ticket_ring.seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (i = TICKET_KEYS - 1; i > 0; i--) {
		for (j = 0; j < TICKET_KEY_WORDS; j++)
			old.w[j] = __atomic_load_n(
			    &ticket_ring.keys[i - 1].w[j], __ATOMIC_RELAXED);
		ticket_store(i, &old);
	}
	ticket_store(0, &fresh);
	__atomic_store_n(&ticket_ring.seq, seq + 2, __ATOMIC_RELEASE);
	OPENSSL_cleanse(&fresh, sizeof fresh);
	OPENSSL_cleanse(&old, sizeof old);
}

/*
 * OpenSSL's ticket callback: encrypt new tickets under the current key;
 * decrypt with whichever key named the ticket, asking for a renewal (2)
 * when that key is no longer current. 0: unknown key, full handshake.
 */
static int
ticket_key_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	static char digest[] = "SHA256";
	struct ticket_key keys[TICKET_KEYS];
	const unsigned char *k;
	OSSL_PARAM params[3];
	size_t i = 0;
	int ret = -1;

	ticket_snapshot(keys);
	if (enc) {
		if (RAND_bytes(iv, 16) != 1)
			goto out;
		memcpy(name, keys[0].w, 16);
	} else {
		for (i = 0; i < TICKET_KEYS; i++) {
			if (memcmp(name, keys[i].w, 16) == 0)
				break;
		}
		if (i == TICKET_KEYS) {
			ret = 0;
			goto out;
		}
	}
	k = (const unsigned char *)keys[i].w;
	params[0] = OSSL_PARAM_construct_octet_string(
	    OSSL_MAC_PARAM_KEY, (void *)(k + 48), 32);
	params[1] =
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		goto out;
	if (enc) {
		if (EVP_EncryptInit_ex(
		        cctx, EVP_aes_256_cbc(), NULL, k + 16, iv) != 1)
			goto out;
		ret = 1;
	} else {
		if (EVP_DecryptInit_ex(
		        cctx, EVP_aes_256_cbc(), NULL, k + 16, iv) != 1)
			goto out;
		ret = i == 0 ? 1 : 2;
	}
out:
	OPENSSL_cleanse(keys, sizeof keys);
	return ret;
}

/* ---- per-context data: SNI map and OCSP response ---- */

struct sni_entry {
	char *name; /* lower case; "*.example.com" matches one label */
	SSL_CTX *ctx;
};

struct ctx_data {
	unsigned char *ocsp; /* DER OCSP response, or NULL */
	size_t ocsp_len;
	struct sni_entry *sni; /* default context only */
	size_t nsni;
};

static int ctx_index = -1;
static int cert_hdr_index = -1;    /* SSL ex_data: client cert headers */
static int first_bytes_index = -1; /* SSL ex_data: see first_record_cb */

/* ex_data destructor: runs when the last reference to a context goes,
 * on whichever thread freed the last SSL using it. */
static void
ctx_data_free_cb(
    void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct ctx_data *d = ptr;
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->nsni; i++) {
		free(d->sni[i].name);
		SSL_CTX_free(d->sni[i].ctx);
	}
	free(d->sni);
	free(d->ocsp);
	free(d);
}

/* ex_data destructor of a client connection's certificate headers. */
static void
cert_hdr_free_cb(
    void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct sl_tls_cert_headers *h = ptr;

	if (h != NULL) {
		free(h->text);
		free(h);
	}
}

static char cert_none_text[] = "X-Client-Cert-Verify: NONE\r\n";
static const struct sl_tls_cert_headers cert_headers_none = {
    cert_none_text, sizeof cert_none_text - 1};

/* A context's data (SNI map, OCSP response). */
static struct ctx_data *
data_of(const SSL_CTX *ctx)
{
	return SSL_CTX_get_ex_data(ctx, ctx_index);
}

/* Initialise OpenSSL, the ex_data index and the first ticket key. */
int
sl_tls_init(void)
{
	size_t i;

	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS |
	            OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
	        NULL) != 1)
		return -1;
	/* No prompts, ever: a PEM read without sluice's passphrase callback
	 * (a CA file) falls back to OpenSSL's UI, which gets nothing. */
	UI_set_default_method(UI_null());
	ctx_index =
	    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_data_free_cb);
	if (ctx_index < 0)
		return -1;
	cert_hdr_index =
	    SSL_get_ex_new_index(0, NULL, NULL, NULL, cert_hdr_free_cb);
	if (cert_hdr_index < 0)
		return -1;
	first_bytes_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (first_bytes_index < 0)
		return -1;
	for (i = 0; i < TICKET_KEYS; i++)
		sl_tls_rotate_ticket_keys();
	return 0;
}

/* ---- callbacks on listener contexts ---- */

/* The SNI map's context for NAME: exact match, then a wildcard. */
static SSL_CTX *
sni_lookup(const struct ctx_data *d, const char *name)
{
	const char *dot = strchr(name, '.');
	size_t i;

	for (i = 0; i < d->nsni; i++) {
		if (strcasecmp(d->sni[i].name, name) == 0)
			return d->sni[i].ctx;
	}
	if (dot == NULL || dot == name)
		return NULL;
	for (i = 0; i < d->nsni; i++) {
		if (d->sni[i].name[0] == '*' &&
		    strcasecmp(d->sni[i].name + 1, dot) == 0)
			return d->sni[i].ctx;
	}
	return NULL;
}

/*
 * Servername callback (default contexts only): pick the certificate. The
 * name is acknowledged also when the listener's default serves it: only
 * an acknowledged name is recorded in the session, and resumption is
 * bound to it (ticket_decrypt_cb).
 */
static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct ctx_data *d = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx;

	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	if (d == NULL || (ctx = sni_lookup(d, name)) == NULL)
		return SSL_TLSEXT_ERR_OK; /* the listener's default */
	if (ctx != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, ctx) == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * The server name of the ClientHello being processed (the first entry of
 * its server_name extension, as OpenSSL reads it), as a pointer into the
 * hello and a length; false when there is none. Only while OpenSSL is
 * processing the hello, before it parsed that extension itself.
 */
static bool
hello_server_name(SSL *ssl, const unsigned char **name, size_t *len)
{
	const unsigned char *p;
	size_t n, list;

	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n) !=
	        1 ||
	    n < 5)
		return false;
	list = (size_t)p[0] << 8 | p[1];
	*len = (size_t)p[3] << 8 | p[4];
	if (list > n - 2 || list < 3 || *len > list - 3 ||
	    p[2] != TLSEXT_NAMETYPE_host_name)
		return false;
	*name = p + 5;
	return true;
}

/*
 * Called for each ticket a client offers, once it is decrypted (or not):
 * a session is resumed only under the server name it was made for (RFC
 * 6066 section 3: a server MUST NOT resume when the name differs, and
 * does a full handshake instead), else its certificate would serve
 * another name. SSL_get_servername cannot tell yet (the ticket is read
 * before the extension), so the name comes from the hello itself. Other
 * outcomes stay OpenSSL's: a new ticket replaces one that did not
 * decrypt, and one under an older key is renewed.
 */
static SSL_TICKET_RETURN
ticket_decrypt_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	const unsigned char *name;
	const char *made_for;
	size_t len;
	bool same;

	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return SSL_TICKET_RETURN_IGNORE_RENEW; /* no session */
	made_for = SSL_SESSION_get0_hostname(ss);
	if (hello_server_name(ssl, &name, &len))
		same = made_for != NULL && strlen(made_for) == len &&
		    strncasecmp(made_for, (const char *)name, len) == 0;
	else
		same = made_for == NULL;
	if (!same)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE
	                                    : SSL_TICKET_RETURN_USE_RENEW;
}

/* ALPN: http/1.1 when offered; otherwise no protocol is agreed. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, alpn_h11, sizeof alpn_h11 - 1,
	        in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * Message callback of client connections, for their first record only:
 * it takes itself off at once, so it costs one call per connection. A
 * TLS record starts with a content type (20..23) and an SSLv2 hello with
 * the high bit set, never with a token character: when the first bytes
 * are one, they are kept (packed into the ex_data pointer: no memory) for
 * sl_tls_error, which tells plain HTTP from garbage by them. OpenSSL's
 * own check knows five methods (GET, POST, HEAD, PUT, CONNECT) only.
 */
static void
first_record_cb(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
	const unsigned char *p = buf;
	uintptr_t packed = 0;
	size_t i;

	SSL_set_msg_callback(ssl, NULL);
	if (write_p || content_type != SSL3_RT_HEADER ||
	    len < SSL3_RT_HEADER_LENGTH || !sl_http_is_tchar(p[0]))
		return;
	for (i = 0; i < SSL3_RT_HEADER_LENGTH; i++)
		packed |= (uintptr_t)p[i] << (8 * i);
	if (SSL_set_ex_data(ssl, first_bytes_index, (void *)packed) != 1)
		ERR_clear_error();
}

/* OCSP stapling: a copy of the context's response, when it has one. */
static int
status_cb(SSL *ssl, void *arg)
{
	const struct ctx_data *d = data_of(SSL_get_SSL_CTX(ssl));
	unsigned char *p;

	if (d == NULL || d->ocsp == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	p = OPENSSL_memdup(d->ocsp, d->ocsp_len);
	if (p == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	if (SSL_set_tlsext_status_ocsp_resp(ssl, p, (long)d->ocsp_len) != 1) {
		OPENSSL_free(p);
		return SSL_TLSEXT_ERR_NOACK;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* ---- building contexts ---- */

/* Errors found while preparing a config, "file:line: message" each. */
struct errs {
	const char *file;
	char *text;
};

/* Add an error at LINE, with OpenSSL's last reason appended (if any). */
static void add_err(struct errs *E, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
add_err(struct errs *E, int line, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	char *msg, *one, *all;
	const char *p;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	msg = sl_xvasprintf(fmt, ap);
	va_end(ap);
	ERR_clear_error();
	one = sl_xasprintf("%s:%d: %s%s%s", E->file, line, msg,
	    reason ? ": " : "", reason ? reason : "");
	free(msg);
	/* A [cert:] serving two listeners is loaded for each: its error is
	 * told once. */
	n = strlen(one);
	for (p = E->text; p != NULL && (p = strstr(p, one)) != NULL; p += n) {
		if ((p == E->text || p[-1] == '\n') &&
		    (p[n] == '\0' || p[n] == '\n')) {
			free(one);
			return;
		}
	}
	all = sl_xasprintf(
	    "%s%s%s", E->text ? E->text : "", E->text ? "\n" : "", one);
	free(one);
	free(E->text);
	E->text = all;
}

/* Read a whole small file; NULL with errno set. */
static unsigned char *
read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = sl_xmalloc(max + 1);
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		int err = ferror(f) ? errno : EFBIG;

		fclose(f);
		free(buf);
		errno = err;
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/*
 * Load the private key KEY into CTX, which holds the certificate CERT;
 * TITLE and NAME (the section and its key) and LINE are for messages.
 * The key is read and compared with the certificate by the config
 * loader's own check (sl_conf_read_key), so that both say the same.
 * Returns 0, or -1 with the error added to E: an encrypted key (sluice
 * never asks for a passphrase), no key in the file, or not the
 * certificate's key.
 */
static int
use_key(struct errs *E, SSL_CTX *ctx, int line, const char *title,
    const char *name, const char *key, const char *cert)
{
	char *why;
	EVP_PKEY *pkey =
	    sl_conf_read_key(key, SSL_CTX_get0_certificate(ctx), cert, &why);
	int ret = -1;

	if (why != NULL)
		add_err(
		    E, line, "[%s] %s: the key '%s' %s", title, name, key, why);
	else if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		add_err(E, line, "[%s] %s: cannot load the key '%s'", title,
		    name, key);
	else
		ret = 0;
	free(why);
	EVP_PKEY_free(pkey);
	return ret;
}

/* Where a certificate comes from, for messages. */
struct cert_src {
	const char *title; /* "listener:main", "cert:api" */
	const char *cert_key, *key_key, *ocsp_key;
	const char *cert, *key, *ocsp;
	int cert_line, key_line, ocsp_line;
};

/* Load and check an OCSP response for stapling into D. */
static int
load_ocsp(struct errs *E, const struct cert_src *s, struct ctx_data *d)
{
	const unsigned char *p;
	unsigned char *buf;
	OCSP_RESPONSE *resp;
	size_t len;
	int status;

	buf = read_file(s->ocsp, SL_OCSP_MAX, &len);
	if (buf == NULL) {
		add_err(E, s->ocsp_line, "[%s] %s: cannot read '%s': %s",
		    s->title, s->ocsp_key, s->ocsp, strerror(errno));
		return -1;
	}
	p = buf;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	if (resp == NULL) {
		add_err(E, s->ocsp_line,
		    "[%s] %s: '%s' is not a DER OCSP response", s->title,
		    s->ocsp_key, s->ocsp);
		free(buf);
		return -1;
	}
	status = OCSP_response_status(resp);
	OCSP_RESPONSE_free(resp);
	if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		add_err(E, s->ocsp_line,
		    "[%s] %s: '%s': OCSP response status is %s", s->title,
		    s->ocsp_key, s->ocsp, OCSP_response_status_str(status));
		free(buf);
		return -1;
	}
	d->ocsp = buf;
	d->ocsp_len = len;
	return 0;
}

/* Warn about a certificate that has expired or is not valid yet. */
static void
check_validity(SSL_CTX *ctx, const struct cert_src *s)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);

	if (x == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		sl_log_warn("[%s] %s: certificate '%s' has expired", s->title,
		    s->cert_key, s->cert);
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		sl_log_warn("[%s] %s: certificate '%s' is not valid yet",
		    s->title, s->cert_key, s->cert);
}

#define SL_CLIENT_CA_MAX (4 * 1024 * 1024)

/*
 * Ask clients of listener LC for certificates signed by its tls_client_ca
 * (mTLS) and verify them: required, or optional (a certificate that is
 * presented must still verify). The session id context becomes a digest
 * of the listener's name, the mode and the CA file, so a session
 * resumes only where it was verified the same way: a reload that changes
 * the CAs makes every client show its certificate again. Returns 0 or -1
 * with errors added to E.
 */
static int
client_verify_setup(
    struct errs *E, SSL_CTX *ctx, const struct sl_listener_conf *lc)
{
	STACK_OF(X509_NAME) * names;
	unsigned char sid[EVP_MAX_MD_SIZE], *pem;
	unsigned int sid_len = 0;
	size_t len;
	EVP_MD_CTX *md;
	int mode = SSL_VERIFY_PEER;
	bool ok;

	if ((pem = read_file(lc->tls_client_ca, SL_CLIENT_CA_MAX, &len)) ==
	    NULL) {
		add_err(E, lc->tls_client_ca_line,
		    "[listener:%s] tls_client_ca: cannot read '%s': %s",
		    lc->name, lc->tls_client_ca, strerror(errno));
		return -1;
	}
	names = SSL_load_client_CA_file(lc->tls_client_ca);
	if (names == NULL || sk_X509_NAME_num(names) == 0 ||
	    SSL_CTX_load_verify_file(ctx, lc->tls_client_ca) != 1) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		free(pem);
		add_err(E, lc->tls_client_ca_line,
		    "[listener:%s] tls_client_ca: no CA certificate in '%s'",
		    lc->name, lc->tls_client_ca);
		return -1;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	if (lc->tls_verify_client == SL_VERIFY_CLIENT_REQUIRED)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	md = EVP_MD_CTX_new();
	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, lc->name, strlen(lc->name) + 1) == 1 &&
	    EVP_DigestUpdate(md, &mode, sizeof mode) == 1 &&
	    EVP_DigestUpdate(md, pem, len) == 1 &&
	    EVP_DigestFinal_ex(md, sid, &sid_len) == 1 &&
	    SSL_CTX_set_session_id_context(ctx, sid,
	        sid_len > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH
	                                         : sid_len) == 1;
	EVP_MD_CTX_free(md);
	free(pem);
	if (!ok) {
		add_err(E, lc->tls_client_ca_line,
		    "[listener:%s] tls_client_ca: cannot set up client "
		    "verification",
		    lc->name);
		return -1;
	}
	return 0;
}

/*
 * A server context for listener LC with the certificate of S. Returns a
 * new context (one reference, owned by the caller) or NULL with errors
 * added to E.
 */
static SSL_CTX *
server_ctx_new(struct errs *E, const struct sl_config *conf,
    const struct sl_listener_conf *lc, const struct cert_src *s)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	struct ctx_data *d;
	char sid[64];
	long timeout = (long)(2 * (conf->global.tls_ticket_rotation_ms / 1000));

	if (ctx == NULL) {
		add_err(
		    E, lc->line, "[%s]: cannot create a TLS context", s->title);
		return NULL;
	}
	d = sl_xcalloc(1, sizeof *d);
	if (SSL_CTX_set_ex_data(ctx, ctx_index, d) != 1) {
		free(d);
		add_err(
		    E, lc->line, "[%s]: cannot create a TLS context", s->title);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_default_passwd_cb(ctx, sl_conf_no_passphrase_cb);
	SSL_CTX_set_msg_callback(ctx, first_record_cb);
	SSL_CTX_set_min_proto_version(ctx, lc->tls_min_version);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	        SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx,
	        lc->tls_ciphers ? lc->tls_ciphers : SL_TLS12_CIPHERS) != 1) {
		add_err(E, lc->tls_ciphers_line,
		    "[listener:%s] tls_ciphers: no usable cipher in '%s'",
		    lc->name, lc->tls_ciphers ? lc->tls_ciphers : "");
		goto fail;
	}
	/* Sessions belong to their listener; tickets only, no cache. */
	snprintf(sid, sizeof sid, "sluice:%s", lc->name);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid,
	    (unsigned int)(strlen(sid) > 32 ? 32 : strlen(sid)));
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(ctx, timeout > 0 ? timeout : 1);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
	SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_decrypt_cb, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
	if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
		add_err(E, s->cert_line,
		    "[%s] %s: cannot load the certificate chain '%s'", s->title,
		    s->cert_key, s->cert);
		goto fail;
	}
	if (use_key(E, ctx, s->key_line, s->title, s->key_key, s->key,
	        s->cert) != 0)
		goto fail;
	if (s->ocsp != NULL && load_ocsp(E, s, d) != 0)
		goto fail;
	if (lc->tls_client_ca != NULL && client_verify_setup(E, ctx, lc) != 0)
		goto fail;
	check_validity(ctx, s);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Add NAME (lower case, heap; taken) -> CTX to D's map; first wins. */
static void
sni_add(struct ctx_data *d, char *name, SSL_CTX *ctx)
{
	size_t i;

	for (i = 0; i < d->nsni; i++) {
		if (strcmp(d->sni[i].name, name) == 0) {
			free(name);
			return;
		}
	}
	d->sni = sl_xreallocarray(d->sni, d->nsni + 1, sizeof *d->sni);
	d->sni[d->nsni].name = name;
	d->sni[d->nsni].ctx = ctx;
	SSL_CTX_up_ref(ctx);
	d->nsni++;
}

/* A DNS name from a certificate, lower-cased; NULL if unusable. */
static char *
cert_name(const unsigned char *p, int len)
{
	char *s;
	int i;

	if (len <= 0 || len > 253 || memchr(p, '\0', (size_t)len) != NULL)
		return NULL;
	s = sl_xstrndup((const char *)p, (size_t)len);
	for (i = 0; i < len; i++) {
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
	}
	return s;
}

/* Map CTX under the DNS names of its certificate (SAN, else CN). */
static size_t
sni_add_cert_names(struct ctx_data *d, SSL_CTX *ctx)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	GENERAL_NAMES *gens;
	size_t n = 0;
	int i;
	char *name;

	if (x == NULL)
		return 0;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type != GEN_DNS)
			continue;
		name = cert_name(ASN1_STRING_get0_data(g->d.dNSName),
		    ASN1_STRING_length(g->d.dNSName));
		if (name != NULL) {
			sni_add(d, name, ctx);
			n++;
		}
	}
	GENERAL_NAMES_free(gens);
	if (n == 0) {
		X509_NAME *subj = X509_get_subject_name(x);
		int at = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
		X509_NAME_ENTRY *e =
		    at >= 0 ? X509_NAME_get_entry(subj, at) : NULL;
		ASN1_STRING *cn = e ? X509_NAME_ENTRY_get_data(e) : NULL;

		if (cn != NULL &&
		    (name = cert_name(ASN1_STRING_get0_data(cn),
		         ASN1_STRING_length(cn))) != NULL) {
			sni_add(d, name, ctx);
			n++;
		}
	}
	return n;
}

/* Does [cert:] CC apply to listener LC? */
static bool
cert_serves(const struct sl_cert_conf *cc, const struct sl_listener_conf *lc)
{
	size_t i;

	if (cc->nlisteners == 0)
		return true;
	for (i = 0; i < cc->nlisteners; i++) {
		if (strcmp(cc->listeners[i], lc->name) == 0)
			return true;
	}
	return false;
}

/* The default context of a TLS listener, with its SNI map. */
static SSL_CTX *
listener_ctx_new(struct errs *E, const struct sl_config *conf,
    const struct sl_listener_conf *lc)
{
	char title[SL_MAX_NAME + 16];
	struct cert_src s = {
	    .title = title,
	    .cert_key = "tls_cert",
	    .key_key = "tls_key",
	    .ocsp_key = "tls_ocsp",
	    .cert = lc->tls_cert,
	    .key = lc->tls_key,
	    .ocsp = lc->tls_ocsp,
	    .cert_line = lc->tls_cert_line,
	    .key_line = lc->tls_key_line,
	    .ocsp_line = lc->tls_ocsp_line,
	};
	SSL_CTX *def, *ctx;
	struct ctx_data *d;
	size_t i, j;
	bool ok = true;

	snprintf(title, sizeof title, "listener:%s", lc->name);
	def = server_ctx_new(E, conf, lc, &s);
	if (def == NULL)
		return NULL;
	d = data_of(def);
	for (i = 0; i < conf->ncerts; i++) {
		const struct sl_cert_conf *cc = &conf->certs[i];
		char ctitle[SL_MAX_NAME + 16];
		struct cert_src cs = {
		    .title = ctitle,
		    .cert_key = "cert",
		    .key_key = "key",
		    .ocsp_key = "ocsp",
		    .cert = cc->cert,
		    .key = cc->key,
		    .ocsp = cc->ocsp,
		    .cert_line = cc->cert_line,
		    .key_line = cc->key_line,
		    .ocsp_line = cc->ocsp_line,
		};

		if (!cert_serves(cc, lc))
			continue;
		snprintf(ctitle, sizeof ctitle, "cert:%s", cc->name);
		if ((ctx = server_ctx_new(E, conf, lc, &cs)) == NULL) {
			ok = false;
			continue;
		}
		if (cc->nnames > 0) {
			for (j = 0; j < cc->nnames; j++)
				sni_add(d, sl_xstrdup(cc->names[j]), ctx);
		} else if (sni_add_cert_names(d, ctx) == 0) {
			add_err(E, cc->line,
			    "[cert:%s]: certificate '%s' names no DNS name "
			    "(set names = ...)",
			    cc->name, cc->cert);
			ok = false;
		}
		SSL_CTX_free(ctx); /* the map holds it now */
	}
	if (!ok) {
		SSL_CTX_free(def);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(def, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(def, d);
	return def;
}

/* The client context for origins of a version (tls = yes). */
static int origin_new_session(SSL *ssl, SSL_SESSION *sess);

static SSL_CTX *
origin_ctx_new(struct errs *E, const struct sl_service_conf *svc,
    const struct sl_version_conf *v)
{
	const struct sl_origin_tls_conf *t = &v->tls;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char title[2 * SL_MAX_NAME + 16];
	struct stat st;

	if (ctx == NULL) {
		add_err(E, t->line,
		    "[version:%s/%s]: cannot create a TLS "
		    "context",
		    svc->name, v->name);
		return NULL;
	}
	SSL_CTX_set_default_passwd_cb(ctx, sl_conf_no_passphrase_cb);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* No SSL_OP_IGNORE_UNEXPECTED_EOF: an origin's FIN without
	 * close_notify must stay visible (sl_io_tls_ragged), or a cut
	 * close-delimited body would pass for a whole one. */
	SSL_CTX_set_options(
	    ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Sessions go to the worker's per-server cache, not OpenSSL's. */
	SSL_CTX_set_session_cache_mode(
	    ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, origin_new_session);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_protos(ctx, alpn_h11, sizeof alpn_h11 - 1);
	if (t->ca != NULL) {
		int r = stat(t->ca, &st) == 0 && S_ISDIR(st.st_mode)
		    ? SSL_CTX_load_verify_locations(ctx, NULL, t->ca)
		    : SSL_CTX_load_verify_locations(ctx, t->ca, NULL);

		if (r != 1) {
			add_err(E, t->ca_line,
			    "[version:%s/%s] tls_ca: cannot load CA "
			    "certificates from '%s'",
			    svc->name, v->name, t->ca);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		add_err(E, t->line,
		    "[version:%s/%s]: cannot load the system CA store",
		    svc->name, v->name);
		goto fail;
	}
	SSL_CTX_set_verify(
	    ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (!t->verify)
		sl_log_warn("[version:%s/%s]: tls_verify = no: origin "
		            "certificates are not checked",
		    svc->name, v->name);
	if (t->client_cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, t->client_cert) !=
		    1) {
			add_err(E, t->client_cert_line,
			    "[version:%s/%s] tls_client_cert: cannot load "
			    "the certificate chain '%s'",
			    svc->name, v->name, t->client_cert);
			goto fail;
		}
		snprintf(
		    title, sizeof title, "version:%s/%s", svc->name, v->name);
		if (use_key(E, ctx, t->client_key_line, title, "tls_client_key",
		        t->client_key, t->client_cert) != 0)
			goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Drop every context CONF holds (they live on while SSLs use them). */
static void
tls_free_conf(struct sl_config *conf)
{
	size_t i, j;

	for (i = 0; i < conf->nlisteners; i++) {
		SSL_CTX_free(conf->listeners[i].tls_ctx);
		conf->listeners[i].tls_ctx = NULL;
	}
	for (i = 0; i < conf->nservices; i++) {
		for (j = 0; j < conf->services[i].nversions; j++) {
			struct sl_version_conf *v =
			    &conf->services[i].versions[j];

			SSL_CTX_free(v->tls.ctx);
			v->tls.ctx = NULL;
		}
	}
}

static bool
same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * A context already built in CONF for identical origin settings T, to
 * share (loading the CA store once). The SNI is part of the identity: a
 * pooled connection is reused by any request with the same context.
 */
static SSL_CTX *
same_origin_ctx(
    const struct sl_config *conf, const struct sl_origin_tls_conf *t)
{
	size_t i, j;

	for (i = 0; i < conf->nservices; i++) {
		for (j = 0; j < conf->services[i].nversions; j++) {
			const struct sl_origin_tls_conf *o =
			    &conf->services[i].versions[j].tls;

			if (o == t)
				return NULL; /* only earlier versions */
			if (o->ctx != NULL && o->verify == t->verify &&
			    same_str(o->ca, t->ca) &&
			    same_str(o->sni, t->sni) &&
			    same_str(o->client_cert, t->client_cert) &&
			    same_str(o->client_key, t->client_key))
				return o->ctx;
		}
	}
	return NULL;
}

/* Build CONF's contexts; all or nothing. */
int
sl_tls_prepare(struct sl_config *conf, char **errp)
{
	struct errs E = {conf->path, NULL};
	size_t i, j;

	if (conf->tls_free != NULL)
		return 0; /* already prepared */
	ERR_clear_error();
	conf->tls_free = tls_free_conf;
	for (i = 0; i < conf->nlisteners; i++) {
		struct sl_listener_conf *lc = &conf->listeners[i];

		if (lc->tls_cert != NULL)
			lc->tls_ctx = listener_ctx_new(&E, conf, lc);
	}
	for (i = 0; i < conf->nservices; i++) {
		const struct sl_service_conf *svc = &conf->services[i];

		for (j = 0; j < svc->nversions; j++) {
			struct sl_version_conf *v = &svc->versions[j];
			SSL_CTX *same;

			if (!v->tls.enabled)
				continue;
			if ((same = same_origin_ctx(conf, &v->tls)) != NULL) {
				SSL_CTX_up_ref(same);
				v->tls.ctx = same;
			} else
				v->tls.ctx = origin_ctx_new(&E, svc, v);
		}
	}
	if (E.text == NULL)
		return 0;
	tls_free_conf(conf);
	*errp = E.text;
	return -1;
}

/* A listener of CONF by name (HINT first). */
static const struct sl_listener_conf *
find_listener(const struct sl_config *conf, const char *name, size_t hint)
{
	if (hint < conf->nlisteners &&
	    strcmp(conf->listeners[hint].name, name) == 0)
		return &conf->listeners[hint];
	return sl_conf_listener(conf, name);
}

/* The context to accept with on listener NAME. */
SSL_CTX *
sl_tls_listener_ctx(const struct sl_config *conf, const char *name, size_t hint)
{
	const struct sl_listener_conf *lc = find_listener(conf, name, hint);

	return lc != NULL ? lc->tls_ctx : NULL;
}

/* Certificates CONF serves: listener defaults and [cert:] per listener. */
size_t
sl_tls_count_certs(const struct sl_config *conf)
{
	size_t i, j, n = 0;

	for (i = 0; i < conf->nlisteners; i++) {
		if (conf->listeners[i].tls_ctx == NULL)
			continue;
		n++;
		for (j = 0; j < conf->ncerts; j++)
			n += cert_serves(&conf->certs[j], &conf->listeners[i]);
	}
	return n;
}

/* ---- connections ---- */

/* A server SSL for an accepted connection. */
SSL *
sl_tls_accept_ssl(SSL_CTX *ctx)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		ERR_clear_error();
	return ssl;
}

/* The host part of "host:port", "[v6]:port" into BUF. */
static const char *
server_host(const char *text, char *buf, size_t size)
{
	const char *end;
	size_t n;

	if (text[0] == '[') {
		end = strchr(text, ']');
		text++;
	} else
		end = strrchr(text, ':');
	n = end != NULL ? (size_t)(end - text) : strlen(text);
	if (n >= size)
		n = size - 1;
	memcpy(buf, text, n);
	buf[n] = '\0';
	return buf;
}

void
sl_tls_session_cache_clear(struct sl_tls_session_cache *cache)
{
	SSL_SESSION_free(cache->session);
	SSL_CTX_free(cache->ctx);
	cache->session = NULL;
	cache->ctx = NULL;
}

/* An origin gave a session (TLS 1.2: at the handshake's end; TLS 1.3: in
 * a ticket after it): the connection's cache keeps the newest. Returns 1
 * when it took the reference. */
static int
origin_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct sl_tls_session_cache *cache = SSL_get_app_data(ssl);
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

	if (cache == NULL || !SSL_SESSION_is_resumable(sess) ||
	    SSL_CTX_up_ref(ctx) != 1)
		return 0; /* a health check's, or nothing to keep */
	sl_tls_session_cache_clear(cache);
	cache->session = sess;
	cache->ctx = ctx;
	return 1;
}

void
sl_tls_origin_closing(SSL *ssl)
{
	if (ssl != NULL && SSL_is_init_finished(ssl))
		SSL_set_shutdown(
		    ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

/* A client SSL for an origin: SNI and the name to verify set, a kept
 * session offered. */
SSL *
sl_tls_origin_ssl(const struct sl_origin_tls_conf *t,
    const struct sl_route_server *srv, struct sl_tls_session_cache *cache)
{
	char hostbuf[256];
	const char *host;
	unsigned char ip[16];
	bool is_ip;
	SSL *ssl;

	if (t->ctx == NULL || (ssl = SSL_new(t->ctx)) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	host = t->sni != NULL
	    ? t->sni
	    : server_host(srv->addr.text, hostbuf, sizeof hostbuf);
	is_ip = inet_pton(AF_INET, host, ip) == 1 ||
	    inet_pton(AF_INET6, host, ip) == 1;
	if (is_ip) {
		/* No SNI for addresses; verify the address (IP SAN). */
		if (t->verify &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) !=
		        1)
			goto fail;
	} else {
		if (SSL_set_tlsext_host_name(ssl, host) != 1)
			goto fail;
		if (t->verify) {
			SSL_set_hostflags(
			    ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(ssl, host) != 1)
				goto fail;
		}
	}
	if (cache != NULL) {
		SSL_set_app_data(ssl, cache);
		/* Offered again until the origin gives a newer one, as nginx
		 * and HAProxy do; an origin that refuses it costs a full
		 * handshake, no more. */
		if (cache->session != NULL && cache->ctx == t->ctx &&
		    SSL_set_session(ssl, cache->session) != 1)
			ERR_clear_error();
	}
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

/* NAME as one RFC 4514 line (heap; NULL without memory): the printer
 * escapes special and non-ASCII characters; anything that is still a
 * control byte becomes '?', so a certificate can never break a header
 * line. */
static char *
dn_text(const X509_NAME *name)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s = NULL;
	long n;

	if (b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(b, &data)) >= 0)
		s = strndup(data, (size_t)n);
	BIO_free(b);
	for (char *p = s; p != NULL && *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return s;
}

/*
 * The X-Client-Cert-* lines for the client of SSL (see the header); NULL
 * without memory. On the request path: plain allocations, never the
 * aborting sl_x* ones.
 */
static struct sl_tls_cert_headers *
cert_headers_new(const SSL *ssl)
{
	static const char hex[] = "0123456789abcdef";
	X509 *x = SSL_get0_peer_certificate(ssl);
	struct sl_tls_cert_headers *h;
	unsigned char md[EVP_MAX_MD_SIZE];
	char fp[2 * EVP_MAX_MD_SIZE + 1], *subject, *issuer, *text = NULL;
	unsigned int i, n = 0;
	int len;

	if (x == NULL || SSL_get_verify_result(ssl) != X509_V_OK ||
	    X509_digest(x, EVP_sha256(), md, &n) != 1)
		return NULL; /* the caller's "NONE" */
	for (i = 0; i < n; i++) {
		fp[2 * i] = hex[md[i] >> 4];
		fp[2 * i + 1] = hex[md[i] & 15];
	}
	fp[2 * n] = '\0';
	subject = dn_text(X509_get_subject_name(x));
	issuer = dn_text(X509_get_issuer_name(x));
	len = subject == NULL || issuer == NULL
	    ? -1
	    : asprintf(&text,
	          "X-Client-Cert-Verify: SUCCESS\r\n"
	          "X-Client-Cert-Subject: %s\r\n"
	          "X-Client-Cert-Issuer: %s\r\n"
	          "X-Client-Cert-SHA256: %s\r\n",
	          subject, issuer, fp);
	free(subject);
	free(issuer);
	if (len < 0 || (h = malloc(sizeof *h)) == NULL) {
		if (len >= 0)
			free(text);
		return NULL;
	}
	h->text = text;
	h->len = (size_t)len;
	return h;
}

const struct sl_tls_cert_headers *
sl_tls_client_cert_headers(const struct sl_io *io)
{
	SSL *ssl = sl_io_ssl(io);
	struct sl_tls_cert_headers *h;

	if (ssl == NULL || (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0)
		return NULL;
	if ((h = SSL_get_ex_data(ssl, cert_hdr_index)) != NULL)
		return h;
	/* No verified certificate (optional), or no memory to describe
	 * it: the origin is told NONE, never more than was proven. */
	if ((h = cert_headers_new(ssl)) == NULL)
		return &cert_headers_none;
	if (SSL_set_ex_data(ssl, cert_hdr_index, h) != 1) {
		free(h->text);
		free(h);
		return &cert_headers_none;
	}
	return h;
}

/* Did IO's handshake resume a session? */
bool
sl_tls_resumed(const struct sl_io *io)
{
	SSL *ssl = sl_io_ssl(io);

	return ssl != NULL && SSL_session_reused(ssl);
}

bool
sl_tls_client_cert_failed(const struct sl_io *io)
{
	SSL *ssl = sl_io_ssl(io);
	unsigned long last;
	bool plaintext;

	if (ssl == NULL || !SSL_is_server(ssl) ||
	    (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0)
		return false;
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return true;
	last = sl_io_tls_error(io, &plaintext);
	return ERR_GET_LIB(last) == ERR_LIB_SSL &&
	    ERR_GET_REASON(last) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;
}

/*
 * The method of the plain HTTP request a client sent instead of a
 * ClientHello, from the first bytes first_record_cb kept: a token, then
 * a space (as far as five bytes go: "DELET" is taken for a method too).
 * Returns its length (up to 5) into METHOD, 0 when the bytes are not one.
 */
static size_t
plaintext_method(const SSL *ssl, char method[SSL3_RT_HEADER_LENGTH])
{
	uintptr_t packed = ssl != NULL && SSL_is_server(ssl)
	    ? (uintptr_t)SSL_get_ex_data(ssl, first_bytes_index)
	    : 0;
	size_t n;

	for (n = 0; n < SSL3_RT_HEADER_LENGTH && packed != 0; n++) {
		unsigned char c = (unsigned char)(packed >> (8 * n));

		if (c == ' ')
			return n; /* n > 0: the first byte is a tchar */
		if (!sl_http_is_tchar(c))
			return 0;
		method[n] = (char)c;
	}
	return n;
}

/* Why IO's handshake failed; 1 for a TLS-level failure. */
int
sl_tls_error(const struct sl_io *io, char *buf, size_t size, bool *plaintext)
{
	unsigned long last = sl_io_tls_error(io, plaintext);
	char method[SSL3_RT_HEADER_LENGTH];

	if (plaintext_method(sl_io_ssl(io), method) > 0)
		*plaintext = true;
	return sl_tls_describe(sl_io_ssl(io), last, buf, size);
}

bool
sl_tls_plaintext_head(const struct sl_io *io)
{
	char method[SSL3_RT_HEADER_LENGTH];

	return plaintext_method(sl_io_ssl(io), method) == 4 &&
	    memcmp(method, "HEAD", 4) == 0;
}

int
sl_tls_describe(const SSL *ssl, unsigned long last, char *buf, size_t size)
{
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	const char *reason;

	if (vr != X509_V_OK) {
		snprintf(buf, size, "certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
		return 1;
	}
	if (last != 0) {
		reason = ERR_reason_error_string(last);
		snprintf(buf, size, "%s", reason ? reason : "TLS error");
		return 1;
	}
	snprintf(buf, size, "connection closed during the handshake");
	return 0;
}

/*
 * http1.h — HTTP/1.1 message heads: finding their end in a buffer, parsing
 * them with llhttp into offsets, the strict checks sluice adds where llhttp
 * is lenient, and writing the rewritten head for the other side.
 *
 * A parsed head refers to its bytes by offset (struct sl_http_hdr), so it
 * stays valid however the bytes are moved; the bytes themselves are the
 * linearised head at the front of the input buffer.
 */
#ifndef SL_HTTP1_H
#define SL_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <llhttp.h>

struct evbuffer;

struct sl_http_hdr {
	uint32_t name_off, name_len;
	uint32_t value_off, value_len;
};

/* The most header fields a head may have: max_headers (at most this)
 * for requests, this for responses (origins set many cookies). */
#define SL_HTTP_MAX_FIELDS 1000

/* Longer than any method llhttp knows (its longest are 13 bytes): a
 * request line whose first word is longer names none (501, not 414). */
#define SL_METHOD_MAX 32

/* Header names sluice cares about, found once while parsing. */
enum sl_hdr_kind {
	SL_HDR_OTHER = 0,
	SL_HDR_HOST,
	SL_HDR_CONNECTION,
	SL_HDR_KEEP_ALIVE,
	SL_HDR_PROXY_CONNECTION,
	SL_HDR_TE,
	SL_HDR_TRAILER,
	SL_HDR_TRANSFER_ENCODING,
	SL_HDR_UPGRADE,
	SL_HDR_CONTENT_LENGTH,
	SL_HDR_X_FORWARDED_FOR,
	SL_HDR_X_FORWARDED_PROTO,
	SL_HDR_VIA,
	SL_HDR_COOKIE,
	SL_HDR_EXPECT,
	SL_HDR_X_CLIENT_CERT, /* X-Client-Cert-*: sluice's own (mTLS) */
	SL_HDR_DATE,
	SL_HDR_X_SLUICE_VERSION, /* sluice's, on responses (expose_version) */
	SL_HDR_FRAMING_ALIKE,    /* Content_Length, Transfer_Encoding */
};

struct sl_http_head {
	bool response;
	uint8_t method; /* llhttp_method_t, requests */
	uint8_t major, minor;
	uint16_t status; /* responses */
	uint32_t target_off, target_len;
	uint32_t head_len;    /* bytes of the head, including the empty line */
	uint16_t flags;       /* llhttp flags after the head (F_CHUNKED, ...) */
	bool keep_alive;      /* llhttp_should_keep_alive() after the head */
	bool upgrade;         /* Upgrade requested (request) / 101 (response) */
	bool has_body;        /* a body follows (chunked or length > 0) */
	bool expect_continue; /* request: Expect: 100-continue */
	uint64_t content_length;
	uint32_t conn_tokens; /* SL_CONN_* seen in Connection headers */
	uint32_t nhdrs, max_hdrs;
	int host_idx; /* index of the Host header or -1 */
	struct sl_http_hdr *hdrs;
	uint8_t *kinds; /* enum sl_hdr_kind per header */
};

#define SL_CONN_CLOSE      0x1
#define SL_CONN_KEEP_ALIVE 0x2
#define SL_CONN_UPGRADE    0x4
#define SL_CONN_OTHER      0x8 /* other tokens: those headers are dropped */

/* Why a head was refused: an HTTP status and a short reason. */
struct sl_http_error {
	int status; /* 400, 431, 501, 505 for requests; 502 for responses */
	const char *reason;
};

/*
 * Look for the end of a head ("\r\n\r\n", or a bare "\n\n" which the parser
 * then refuses) in BUF, starting at *SCAN (updated so that the next call
 * resumes where this one stopped). Returns the head length including the
 * terminator, 0 if not complete yet.
 */
size_t sl_http_find_head_end(struct evbuffer *buf, size_t *scan);

/*
 * Parse the head in BASE[0..LEN) (LEN from sl_http_find_head_end) with
 * PARSER, which must be initialised for the right type (request or
 * response) with sl_http_parser_init. For responses, REQ_METHOD says
 * whether the request was HEAD. On success fills HEAD and returns 0; the
 * parser is then positioned at the start of the body. On failure returns -1
 * and fills ERR.
 */
int sl_http_parse_head(llhttp_t *parser, const char *base, size_t len,
    int req_method, struct sl_http_head *head, struct sl_http_error *err);

/*
 * Initialise PARSER for requests (response = false) or responses. Its data
 * pointer is set by sl_http_parse_head and the body helpers.
 */
void sl_http_parser_init(llhttp_t *parser, bool response);

/* Most bytes of extensions one chunk may carry (names and values). */
#define SL_HTTP_CHUNK_EXT_MAX 4096

/*
 * Feed body bytes from SRC to PARSER and move the bytes that belong to the
 * current message to DST: a body framed by its length or by the close
 * zero-copy; a chunked one framed anew (every chunk's size in plain hex,
 * no extensions; a response's trailer fields as "name: value"), or with
 * DECHUNK decoded. *EXT carries the chunked parser's state from one call
 * to the next (the current chunk's extension bytes among it; 0 at a
 * message's start; NULL: within this call only). Returns 1 when the
 * message is complete, 0 when more is needed, -1 on a framing error (with
 * *why set), extensions over SL_HTTP_CHUNK_EXT_MAX included. On an error
 * the chunks before it may be in DST already.
 */
int sl_http_forward_body(llhttp_t *parser, struct evbuffer *src,
    struct evbuffer *dst, bool dechunk, uint32_t *ext, const char **why);

/*
 * Does SRC, from byte FROM on, hold the rest of the message PARSER (placed
 * as sl_http_forward_body needs it) is in: its whole body, or the framing
 * error that ends it? Neither PARSER nor SRC is changed.
 */
bool sl_http_body_buffered(
    const llhttp_t *parser, struct evbuffer *src, size_t from);

/*
 * Tell a close-delimited body that the peer closed: 1 if that completes the
 * message, -1 if the message was cut short.
 */
int sl_http_finish_body(llhttp_t *parser);

/* Does header I's name equal NAME (case-insensitive)? */
bool sl_http_hdr_is(const struct sl_http_head *head, const char *base,
    uint32_t i, const char *name, size_t name_len);

/* Find the first header called NAME; -1 when absent. */
int sl_http_find_hdr(const struct sl_http_head *head, const char *base,
    const char *name, size_t name_len);

/* Is C an RFC 9110 tchar? */
bool sl_http_is_tchar(unsigned char c);

/* The HTTP-date (RFC 9110 5.6.7) of T into BUF, for a Date header. */
#define SL_HTTP_DATE_LEN 64 /* 29 and a NUL; room for any int */
void sl_http_date(char buf[SL_HTTP_DATE_LEN], time_t t);

/* Reason phrase for a status sluice generates. */
const char *sl_http_reason(int status);

/* Allocate a head able to hold MAX_HDRS headers (worker scratch). */
struct sl_http_head *sl_http_head_new(uint32_t max_hdrs);
void sl_http_head_free(struct sl_http_head *head);

/*
 * The protocol names (before any "/version") of HEAD's Upgrade fields, as
 * a 32-bit set of their hashes: a 101 may switch only to a protocol the
 * request offered (RFC 9110 7.8), and a request keeps 4 bytes to tell,
 * wrong at most once in 32 for a protocol it did not offer. 0: none.
 */
uint32_t sl_http_upgrade_protocols(
    const struct sl_http_head *head, const char *base);

/*
 * Whether HEAD's Upgrade fields offer h2c (HTTP/2 over cleartext, RFC 7540
 * 3.2; deprecated by RFC 9113 3.1): not at all, alone, or among other
 * protocols. sluice does not tunnel it: the HTTP/2 requests inside would
 * pass its routing, header rewriting and measurement. A request offering
 * h2c alone is served as if it asked for no upgrade; a 101 to h2c is a 502.
 */
enum sl_h2c { SL_H2C_NONE, SL_H2C_ONLY, SL_H2C_TOO };
enum sl_h2c sl_http_upgrade_h2c(
    const struct sl_http_head *head, const char *base);

/*
 * Resolve the dot-segments of PATH's path part in place ("." and "..",
 * each dot also spelled %2e or %2E), as RFC 3986 5.2.4 removes them, so
 * that a service's path_prefix and the origin see the same path: "/a/../b"
 * is "/b", "/a/./" is "/a/", "/.." is "/". The query is left as it is.
 * PATH starts with '/'. Returns its new length, at most LEN.
 */
size_t sl_http_normalize_path(char *path, size_t len);

#endif

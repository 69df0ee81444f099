/*
 * alog.h — the access log (access_log = PATH in [sluice]): one JSON line
 * per request, which version served it and how it ended. Each worker
 * formats its lines into a buffer of its own and writes them in batches
 * (at 32 KiB, and once a second), so the request path takes no lock and
 * makes one write per 32 KiB of lines, never waiting (a pipe that is
 * full loses the batch, counted).
 */
#ifndef SL_ALOG_H
#define SL_ALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * The log's descriptor (O_APPEND), opened before the workers start; -1:
 * no access log. A reopen (SIGUSR1) puts the new file behind the same
 * descriptor number with dup2, so a worker never writes to a descriptor
 * closed under it.
 */
extern int sl_alog_fd;

/* Open PATH for the access log (creating its directories). 0, or -1 with
 * *ERRP (heap). */
int sl_alog_open(const char *path, char **errp);

/* Open the log's path again (after logrotate moved the file): 0, or -1
 * with errno, the old file kept. */
int sl_alog_reopen(void);

/* The path the log was opened with (NULL: none). */
const char *sl_alog_path(void);

/* Close the log (after the workers are gone). */
void sl_alog_close(void);

/*
 * What a request said of itself, formatted once when its head is parsed
 * (JSON members: "method", "host", "target"), with the status of its
 * answer once one is counted. Heap; conn.c frees it when the request's
 * line is written.
 */
struct sl_alog_req {
	uint16_t status; /* final status sent (0: none yet) */
	uint16_t len;    /* of text */
	uint8_t fail;    /* conn.c: the origin's last failure (0: none) */
	char text[];
};

/* The request fields of a head: METHOD's name, HOST (NULL: none) and the
 * request-target, each escaped; a target over 4 KiB, or a Host over 1
 * KiB, is cut, ending in "...". NULL when out of memory. */
struct sl_alog_req *sl_alog_req_new(const char *method, const char *host,
    size_t host_len, const char *target, size_t target_len);

/* One line's fields. NULL strings are written as null. */
struct sl_alog_entry {
	const char *client;            /* the client's address */
	const struct sl_alog_req *req; /* NULL: refused before it was read */
	int status;                    /* 0: no answer */
	const char *service, *version, *server;
	const char *rule;    /* "split", "override" or "pin" */
	const char *outcome; /* "answered", "cut" or "unanswered" */
	const char *error;   /* the origin's failure sluice answered for */
	unsigned attempts;   /* origin connections tried */
	uint64_t duration_us;
};

/* A worker's lines not written yet. */
struct sl_alog_buf {
	char *p;
	size_t len, cap;
	uint32_t lines;
	bool torn;  /* its last write ended mid-line */
	time_t sec; /* the second ts was formatted for */
	char ts[24];
};

/* Lines are written once this much is buffered (or a second has gone). */
#define SL_ALOG_FLUSH_AT (32 * 1024)

/* Add E's line to B, timed from NOW (the wall clock) back by its
 * duration. 0, or -1 when the line could not be kept (no memory). */
int sl_alog_add(struct sl_alog_buf *b, const struct sl_alog_entry *e,
    const struct timespec *now);

/* Write B's lines to the log. Returns how many could not be written (the
 * disk full, say): they are dropped, the next batch tried afresh. */
uint32_t sl_alog_flush(struct sl_alog_buf *b);

void sl_alog_buf_free(struct sl_alog_buf *b);

#endif

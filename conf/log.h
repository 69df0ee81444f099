/*
 * log.h — sluice's logger: one line per message to stderr, with a level and
 * a timestamp. Thread-safe (one write(2) per line). errno is passed
 * explicitly, as nginx does, so a caller's errno is never clobbered.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum sl_log_level {
	SL_LOG_ERROR = 0,
	SL_LOG_WARN,
	SL_LOG_INFO,
	SL_LOG_DEBUG,
};

/* Set the most verbose level that is printed (default SL_LOG_INFO). */
void sl_log_set_level(enum sl_log_level level);

/*
 * When stderr is a pipe, write to it without blocking: a reader that
 * stalls (a log shipper, `| logger`) then loses lines, counted, instead
 * of stopping the workers that log. Call once, before threads start.
 */
void sl_log_nonblocking(void);

/* Lines lost to a full stderr pipe since start. */
unsigned long long sl_log_dropped(void);

/* Log a message; err != 0 appends ": strerror(err)". */
void sl_log(enum sl_log_level level, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log at ERROR and exit(1): only at start-up and config time. */
void sl_fatal(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/*
 * A warning that can come in floods (a client connecting in a loop, an
 * accept failing for want of descriptors): logged at most once in
 * SL_LOG_LIMIT_S per sl_log_limit (one per kind and place, zeroed), the
 * next one logged saying how many were not. One thread per limit.
 */
#define SL_LOG_LIMIT_S 10
struct sl_log_limit {
	long at; /* monotonic seconds of the last one logged, 0: none */
	unsigned skipped;
};
void sl_log_limited(struct sl_log_limit *limit, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sl_log_error(...) sl_log(SL_LOG_ERROR, 0, __VA_ARGS__)
#define sl_log_warn(...)  sl_log(SL_LOG_WARN, 0, __VA_ARGS__)
#define sl_log_info(...)  sl_log(SL_LOG_INFO, 0, __VA_ARGS__)
#define sl_log_debug(...) sl_log(SL_LOG_DEBUG, 0, __VA_ARGS__)

/*
 * BUG_ON(cond): an internal invariant. Fatal (abort) in --enable-debug
 * builds; logged once per site otherwise, so production keeps serving.
 */
#ifdef SL_DEBUG
#define BUG_ON(cond)                                                           \
	do {                                                                   \
		if (cond) {                                                    \
			sl_log(SL_LOG_ERROR, 0, "BUG at %s:%d: %s", __FILE__,  \
			    __LINE__, #cond);                                  \
			abort();                                               \
		}                                                              \
	} while (0)
#else
#define BUG_ON(cond)                                                           \
	do {                                                                   \
		static bool sl_bug_seen_;                                      \
		if ((cond) && !sl_bug_seen_) {                                 \
			sl_bug_seen_ = true;                                   \
			sl_log(SL_LOG_ERROR, 0, "BUG at %s:%d: %s", __FILE__,  \
			    __LINE__, #cond);                                  \
		}                                                              \
	} while (0)
#endif

#endif

/*
 * log.c — line-oriented logging to stderr, safe from any thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/log.h"

static enum sl_log_level max_level = SL_LOG_INFO;
static int log_fd = STDERR_FILENO;
static unsigned long long log_dropped;      /* atomic: lines a full pipe lost */
static unsigned long long log_dropped_told; /* of those, said in the log */

void
sl_log_nonblocking(void)
{
	struct stat st;
	int fd;

	/* A pipe of its own open file description, so the flag is not
	 * the shell's or the supervisor's too. A line (at most 2048
	 * bytes, under PIPE_BUF) goes whole or not at all. */
	if (fstat(STDERR_FILENO, &st) != 0 || !S_ISFIFO(st.st_mode))
		return;
	fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0)
		log_fd = fd;
}

unsigned long long
sl_log_dropped(void)
{
	return __atomic_load_n(&log_dropped, __ATOMIC_RELAXED);
}

/* Write LINE; a pipe that is full loses it (counted) rather than stop
 * the thread, and the next line that goes says how many were lost. */
static void
log_write(const char *line, size_t n)
{
	unsigned long long lost, told;

	if (write(log_fd, line, n) < 0) {
		if (errno == EAGAIN)
			__atomic_add_fetch(&log_dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	lost = __atomic_load_n(&log_dropped, __ATOMIC_RELAXED);
	told = __atomic_load_n(&log_dropped_told, __ATOMIC_RELAXED);
	/* One thread says it (the exchange), once: its line finds the
	 * count told. */
	if (lost != told &&
	    __atomic_compare_exchange_n(&log_dropped_told, &told, lost, false,
	        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		sl_log(SL_LOG_WARN, 0,
		    "%llu log lines lost: stderr, a pipe, was full (its "
		    "reader stalled)",
		    lost - told);
}

static const char *level_names[] = {"error", "warn", "info", "debug"};

/* Set the most verbose level that is printed. */
void
sl_log_set_level(enum sl_log_level level)
{
	max_level = level;
}

static void log_v(enum sl_log_level level, int err, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Format one line and write it with a single write(2). */
static void
log_v(enum sl_log_level level, int err, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r, saved = errno;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof line - n,
	    ".%03ldZ sluice[%d] %s: ", ts.tv_nsec / 1000000, (int)getpid(),
	    level_names[level]);
	if (r > 0 && (size_t)r < sizeof line - n)
		n += (size_t)r;
	r = vsnprintf(line + n, sizeof line - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof line - n ? (size_t)r
		                                 : sizeof line - n - 1;
	if (err != 0 && n < sizeof line - 1) {
		r = snprintf(line + n, sizeof line - n, ": %s", strerror(err));
		if (r > 0)
			n += (size_t)r < sizeof line - n ? (size_t)r
			                                 : sizeof line - n - 1;
	}
	if (n >= sizeof line - 1)
		n = sizeof line - 2;
	line[n++] = '\n';
	log_write(line, n);
	errno = saved;
}

/* Log a message at LEVEL; err != 0 appends strerror(err). */
void
sl_log(enum sl_log_level level, int err, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	log_v(level, err, fmt, ap);
	va_end(ap);
}

void
sl_log_limited(struct sl_log_limit *limit, int err, const char *fmt, ...)
{
	struct timespec ts;
	char msg[1024];
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (limit->at != 0 && ts.tv_sec - limit->at < SL_LOG_LIMIT_S) {
		limit->skipped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* The skipped ones came since the last one logged, however long
	 * ago that was. */
	if (limit->skipped > 0)
		sl_log(SL_LOG_WARN, err,
		    "%s (and %u more like it in the last %ld s, not logged)",
		    msg, limit->skipped, (long)ts.tv_sec - limit->at);
	else
		sl_log(SL_LOG_WARN, err, "%s", msg);
	/* Never 0 once logged, even in a clock's first second. */
	limit->at = ts.tv_sec > 0 ? (long)ts.tv_sec : 1;
	limit->skipped = 0;
}

/* Log and exit(1). */
void
sl_fatal(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(SL_LOG_ERROR, err, fmt, ap);
	va_end(ap);
	exit(1);
}

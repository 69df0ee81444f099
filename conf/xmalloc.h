/*
 * xmalloc.h — aborting allocators, for start-up, config and control-thread
 * code only. The request path never calls these: it handles allocation
 * failure by closing the one connection.
 */
#ifndef SL_XMALLOC_H
#define SL_XMALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *sl_xmalloc(size_t size);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t size);
void *sl_xreallocarray(void *p, size_t n, size_t size);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t n);
/* printf into a new heap string; the caller frees it. */
char *sl_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sl_xvasprintf(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));

#endif

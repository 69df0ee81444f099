/*
 * mem.h — a per-thread cache of the request path's buffer blocks.
 *
 * libevent mallocs a chain whenever data is added to an empty evbuffer
 * and frees it when the buffer is drained: four times per proxied request
 * (request in, request out, response in, response out), each a power of
 * two from 1 KiB. The cache keeps freed blocks of those sizes on a stack
 * per thread and size: a pop and a push instead of glibc's malloc and
 * free (a 32 KiB chain of a 16 KiB response is past glibc's own
 * per-thread cache and takes its bin paths). Smaller requests go to
 * malloc, whose per-thread cache serves them (rounding them up to 1 KiB
 * would cost every idle connection two evbuffers' worth).
 *
 * Blocks are glibc blocks: whatever leaves the cache (realloc, a stack
 * that is full) goes to realloc and free. Each stack holds at most
 * SL_MEM_KEEP_BYTES. A thread empties its stacks with sl_mem_thread_end
 * before it ends.
 */
#ifndef SL_MEM_H
#define SL_MEM_H

#include <stdbool.h>
#include <stddef.h>

#define SL_MEM_MIN_SHIFT  10                       /* smallest class: 1 KiB */
#define SL_MEM_MIN_SIZE   (1u << SL_MEM_MIN_SHIFT) /* in bytes */
#define SL_MEM_CLASSES    7                        /* 1 KiB .. 64 KiB */
#define SL_MEM_KEEP_BYTES (256 * 1024)             /* per thread and class */

/* Hand libevent's allocations to the cache. Call first thing in main,
 * before anything allocates through libevent. Returns false when there is
 * no cache: under AddressSanitizer, which must see every free to find a
 * use after it, sl_mem_alloc and sl_mem_free are malloc and free. */
bool sl_mem_install(void);

/* A block of at least SIZE bytes (from the cache from 1 to 64 KiB); NULL
 * when out of memory. */
void *sl_mem_alloc(size_t size);

/* Give back a block from sl_mem_alloc or malloc (NULL is ignored). */
void sl_mem_free(void *p);

/* Free the calling thread's cached blocks. */
void sl_mem_thread_end(void);

/* Blocks cached by the calling thread (for tests). */
size_t sl_mem_cached(void);

#endif

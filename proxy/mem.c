/*
 * mem.c — the per-thread block cache (see mem.h).
 */
#include "config.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#include <event2/event.h>

#include "proxy/mem.h"

struct mem_block {
	struct mem_block *next;
};

struct mem_stack {
	struct mem_block *top;
	uint32_t n;
};

static __thread struct mem_stack stacks[SL_MEM_CLASSES];

/* Under AddressSanitizer every block goes straight to malloc and free:
 * a block held in the cache would hide a use after its free. */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_CACHE 0
#endif
#endif
#ifndef MEM_CACHE
#define MEM_CACHE 1
#endif

/* The class a request for SIZE is served from: the smallest power of two
 * that holds it; -1 when out of range (below 1 KiB: glibc's own
 * per-thread cache serves those, and rounding them up would waste). */
static int
class_for_size(size_t size)
{
	if (size < SL_MEM_MIN_SIZE ||
	    size > ((size_t)1 << (SL_MEM_MIN_SHIFT + SL_MEM_CLASSES - 1)))
		return -1;
	return 64 - __builtin_clzl(size - 1) - SL_MEM_MIN_SHIFT;
}

/* The class a block of USABLE bytes can serve: the largest power of two
 * it holds; -1 when out of range. */
static int
class_for_block(size_t usable)
{
	int c;

	if (usable < SL_MEM_MIN_SIZE)
		return -1;
	c = 63 - __builtin_clzl(usable) - SL_MEM_MIN_SHIFT;
	return c < SL_MEM_CLASSES ? c : -1;
}

void *
sl_mem_alloc(size_t size)
{
	int c = class_for_size(size);
	struct mem_stack *s;
	struct mem_block *b;

	if (!MEM_CACHE || c < 0)
		return malloc(size);
	s = &stacks[c];
	b = s->top;
	if (b == NULL) /* a full class block, so it can come back here */
		return malloc((size_t)1 << (c + SL_MEM_MIN_SHIFT));
	s->top = b->next;
	s->n--;
	return b;
}

void
sl_mem_free(void *p)
{
	struct mem_stack *s;
	struct mem_block *b;
	int c;

	if (MEM_CACHE && p != NULL &&
	    (c = class_for_block(malloc_usable_size(p))) >= 0) {
		s = &stacks[c];
		if (s->n <
		    (uint32_t)(SL_MEM_KEEP_BYTES >> (c + SL_MEM_MIN_SHIFT))) {
			b = p;
			b->next = s->top;
			s->top = b;
			s->n++;
			return;
		}
	}
	free(p); /* not a cached size, or its stack is full */
}

static void *
mem_realloc(void *p, size_t size)
{
	return realloc(p, size);
}

bool
sl_mem_install(void)
{
	if (!MEM_CACHE)
		return false;
	event_set_mem_functions(sl_mem_alloc, mem_realloc, sl_mem_free);
	return true;
}

void
sl_mem_thread_end(void)
{
	struct mem_block *b;
	int c;

	for (c = 0; c < SL_MEM_CLASSES; c++) {
		while ((b = stacks[c].top) != NULL) {
			stacks[c].top = b->next;
			free(b);
		}
		stacks[c].n = 0;
	}
}

size_t
sl_mem_cached(void)
{
	size_t n = 0;
	int c;

	for (c = 0; c < SL_MEM_CLASSES; c++)
		n += stacks[c].n;
	return n;
}

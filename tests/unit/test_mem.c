/*
 * test_mem.c — proxy/mem.c's per-thread block cache: blocks come back to
 * the size that can use them, the cache stays within its bounds, and
 * libevent's buffers go through it once installed. (Skipped under
 * AddressSanitizer, where sl_mem_alloc and sl_mem_free are malloc and
 * free.)
 */
#include "config.h"

#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/mem.h"

static bool installed;

/* Under AddressSanitizer there is no cache (mem.h): nothing to test. */
#define need_cache()                                                           \
	do {                                                                   \
		if (!installed)                                                \
			skip();                                                \
	} while (0)

static int
empty_cache(void **state)
{
	(void)state;
	sl_mem_thread_end();
	return 0;
}

/* A freed block is the next one of its size, and memory is usable. */
static void
test_block_comes_back(void **state)
{
	char *p, *q;

	(void)state;
	need_cache();
	p = sl_mem_alloc(1024);
	assert_non_null(p);
	memset(p, 0xab, 1024);
	sl_mem_free(p);
	assert_int_equal(sl_mem_cached(), 1);
	q = sl_mem_alloc(1024);
	assert_ptr_equal(q, p);
	assert_int_equal(sl_mem_cached(), 0);
	sl_mem_free(q);
}

/* A request between two powers of two gets the larger class's block,
 * and that block serves the class's full size. */
static void
test_rounds_up_to_class(void **state)
{
	char *p, *q;

	(void)state;
	need_cache();
	p = sl_mem_alloc(1500);
	assert_non_null(p);
	assert_true(malloc_usable_size(p) >= 2048);
	sl_mem_free(p);
	q = sl_mem_alloc(1024); /* another class: not this block */
	assert_ptr_not_equal(q, p);
	sl_mem_free(q);
	q = sl_mem_alloc(2048);
	assert_ptr_equal(q, p);
	memset(q, 0, 2048);
	sl_mem_free(q);
	/* 64 KiB is the largest class. */
	p = sl_mem_alloc(65536);
	sl_mem_free(p);
	assert_ptr_equal(sl_mem_alloc(40000), p);
	sl_mem_free(p);
}

/* Below 1 KiB and from 128 KiB malloc serves and free takes back (a
 * block of 64 to 128 KiB serves the 64 KiB class). */
static void
test_small_and_large_pass_through(void **state)
{
	void *p;

	(void)state;
	need_cache();
	p = sl_mem_alloc(100);
	assert_non_null(p);
	sl_mem_free(p);
	assert_int_equal(sl_mem_cached(), 0);
	p = sl_mem_alloc(131072);
	assert_non_null(p);
	sl_mem_free(p);
	assert_int_equal(sl_mem_cached(), 0);
	/* A block from plain malloc is taken too, by what it can hold. */
	p = malloc(3000);
	sl_mem_free(p);
	assert_int_equal(sl_mem_cached(), 1);
	assert_ptr_equal(sl_mem_alloc(2048), p);
	sl_mem_free(p);
	sl_mem_free(NULL);
}

/* Each class keeps at most SL_MEM_KEEP_BYTES; the rest is freed. */
static void
test_keeps_at_most_its_bound(void **state)
{
	enum { N = 2 * SL_MEM_KEEP_BYTES / 4096 };
	void *p[N];
	int i;

	(void)state;
	need_cache();
	for (i = 0; i < N; i++)
		assert_non_null(p[i] = sl_mem_alloc(4096));
	for (i = 0; i < N; i++)
		sl_mem_free(p[i]);
	assert_int_equal(sl_mem_cached(), SL_MEM_KEEP_BYTES / 4096);
	sl_mem_thread_end();
	assert_int_equal(sl_mem_cached(), 0);
}

/* Installed, libevent's chains come from the cache and go back to it:
 * a request's worth of add and drain allocates nothing new. */
static void
test_evbuffer_chains_cached(void **state)
{
	struct evbuffer *b;
	char data[700];
	size_t before;
	int i;

	(void)state;
	need_cache();
	memset(data, 'x', sizeof data);
	b = evbuffer_new();
	assert_non_null(b);
	evbuffer_add(b, data, sizeof data);
	evbuffer_drain(b, sizeof data);
	before = sl_mem_cached();
	assert_true(before >= 1);
	for (i = 0; i < 100; i++) {
		evbuffer_add(b, data, sizeof data);
		assert_int_equal(sl_mem_cached(), before - 1);
		evbuffer_drain(b, sizeof data);
		assert_int_equal(sl_mem_cached(), before);
	}
	/* A chain of 16 KiB of data is a 32 KiB block. */
	evbuffer_expand(b, 16384);
	evbuffer_free(b);
	assert_int_equal(sl_mem_cached(), before + 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_block_comes_back, empty_cache),
	    cmocka_unit_test_setup(test_rounds_up_to_class, empty_cache),
	    cmocka_unit_test_setup(
	        test_small_and_large_pass_through, empty_cache),
	    cmocka_unit_test_setup(test_keeps_at_most_its_bound, empty_cache),
	    cmocka_unit_test_setup(test_evbuffer_chains_cached, empty_cache),
	};

	installed = sl_mem_install();
	return cmocka_run_group_tests(tests, NULL, NULL);
}

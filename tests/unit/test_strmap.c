/*
 * test_strmap.c — conf/strmap.c: what is put is found, the first value
 * of a key stays, growth keeps every entry, clear empties.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "conf/strmap.h"

#define N 20000

static void
test_put_get(void **state)
{
	static char keys[N][16];
	struct sl_strmap m = {0};
	uint32_t v, i;

	(void)state;
	assert_false(sl_strmap_get(&m, "x", &v)); /* empty, no table */
	for (i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "k%u", i);
		assert_int_equal(sl_strmap_put(&m, keys[i], i), i);
	}
	assert_int_equal(m.n, N);
	for (i = 0; i < N; i++) {
		assert_true(sl_strmap_get(&m, keys[i], &v));
		assert_int_equal(v, i);
	}
	/* a key already there keeps its first value */
	assert_int_equal(sl_strmap_put(&m, "k7", 99), 7);
	assert_true(sl_strmap_get(&m, "k7", &v));
	assert_int_equal(v, 7);
	assert_false(sl_strmap_get(&m, "k20000", &v));
	assert_false(sl_strmap_get(&m, "", &v));
	sl_strmap_clear(&m);
	assert_int_equal(m.n, 0);
	assert_false(sl_strmap_get(&m, "k1", &v));
	assert_int_equal(sl_strmap_put(&m, "k1", 5), 5);
	sl_strmap_free(&m);
	assert_null(m.slots);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

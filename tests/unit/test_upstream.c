/*
 * test_upstream.c — proxy/upstream.c's ejection length: eject_time,
 * doubled with each repeated ejection up to 5 minutes, and a configured
 * eject_time longer than that used as it is (it was cut to 5 minutes).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/upstream.h"

static void
test_penalty_doubles(void **state)
{
	(void)state;
	assert_int_equal(sl_eject_penalty(10000, 0), 10000);
	assert_int_equal(sl_eject_penalty(10000, 1), 20000);
	assert_int_equal(sl_eject_penalty(10000, 4), 160000);
	assert_int_equal(sl_eject_penalty(10000, 5), 300000); /* 320 s */
	assert_int_equal(sl_eject_penalty(10000, 40), 300000);
	assert_int_equal(sl_eject_penalty(1, 200), 32);
}

static void
test_long_eject_time_kept(void **state)
{
	(void)state;
	/* eject_time = 10m: 10 minutes each time, never cut to 5. */
	assert_int_equal(sl_eject_penalty(600000, 0), 600000);
	assert_int_equal(sl_eject_penalty(600000, 3), 600000);
	/* 24 h, the most a duration may be, does not overflow. */
	assert_int_equal(sl_eject_penalty(86400000, 5), 86400000);
	assert_int_equal(sl_eject_penalty(300000, 2), 300000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_penalty_doubles),
	    cmocka_unit_test(test_long_eject_time_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

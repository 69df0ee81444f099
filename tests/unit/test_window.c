/*
 * test_window.c — the one-second slots behind "the last N seconds": what a
 * window sums and how many seconds it says it covers (the rate's divisor).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "analysis/verdict.h"
#include "analysis/window.h"

static struct sl_vstats total, out;

/* Harvest at second SEC with the version's total at N requests. */
static void
harvest(struct sl_series *s, int64_t sec, uint64_t n)
{
	total.requests = n;
	total.resp_2xx = n;
	sl_series_harvest(s, &total, sl_vstats_moved(&total), sec);
}

/* Five seconds at 10 requests/s after the first harvest: a 60 s window
 * covers those 5 s (the first harvest starts the series and covers
 * nothing; it was counted, and the rate read 50/6 = 8.33). */
static void
test_young_series(void **state)
{
	struct sl_series *s = sl_series_new();
	int64_t t;

	(void)state;
	memset(&total, 0, sizeof total);
	harvest(s, 1000, 7); /* what came before the series is not in it */
	for (t = 1; t <= 5; t++)
		harvest(s, 1000 + t, 7 + 10 * (uint64_t)t);
	assert_int_equal(sl_series_window(s, 60, &out), 5);
	assert_int_equal(out.requests, 50);
	assert_int_equal(sl_series_window(s, 3, &out), 3);
	assert_int_equal(out.requests, 30);
	assert_int_equal(sl_series_window(s, 5, &out), 5);
	assert_int_equal(out.requests, 50);
	sl_series_free(s);
}

/* An older series: a window covers exactly the seconds asked for. */
static void
test_full_window(void **state)
{
	struct sl_series *s = sl_series_new();
	int64_t t;

	(void)state;
	memset(&total, 0, sizeof total);
	for (t = 0; t <= 100; t++)
		harvest(s, 5000 + t, 4 * (uint64_t)t);
	assert_int_equal(sl_series_window(s, 60, &out), 60);
	assert_int_equal(out.requests, 240);
	assert_int_equal(sl_series_window(s, 1, &out), 1);
	assert_int_equal(out.requests, 4);
	sl_series_free(s);
}

/* The current partial second: what the live totals hold beyond the last
 * harvest is in the window at once (a burst polled right after it read 0
 * until the next harvest), latency included; the slots still cover the
 * seconds asked for, and active is the live one. */
static void
test_live_window(void **state)
{
	static struct sl_vstats live;
	struct sl_series *s = sl_series_new();
	int64_t t;

	(void)state;
	memset(&total, 0, sizeof total);
	for (t = 0; t <= 10; t++) {
		sl_hist_record(&total.latency, 1000);
		harvest(s, 7000 + t, 2 * (uint64_t)t);
	}
	live = total;
	live.requests += 3;
	live.resp_2xx += 3;
	live.active = 5;
	sl_hist_record_n(&live.latency, 300600, 3);
	assert_int_equal(sl_series_window_live(s, 1, &live, &out), 1);
	assert_int_equal(out.requests, 2 + 3);
	assert_int_equal(out.resp_2xx, 2 + 3);
	assert_int_equal(out.active, 5);
	assert_int_equal(sl_hist_count(&out.latency), 1 + 3);
	assert_int_equal(out.latency.counts[sl_hist_index(300600)], 3);
	assert_int_equal(sl_hist_sum(&out.latency), 1000 + 3 * 300600);
	assert_int_equal(sl_series_window_live(s, 60, &live, &out), 10);
	assert_int_equal(out.requests, 20 + 3);
	/* the harvest's own window is untouched: it ends at the harvest */
	assert_int_equal(sl_series_window(s, 1, &out), 1);
	assert_int_equal(out.requests, 2);
	/* nothing new: the live window is the harvested one */
	assert_int_equal(sl_series_window_live(s, 60, &total, &out), 10);
	assert_int_equal(out.requests, 20);
	sl_series_free(s);
}

/* What the analyzer leaves out goes through the slots like the rest: of
 * a version's 3 quick requests, 1 its client slowed and 2 a pin routed
 * (one a 500), it judges 4 responses, no error and the 3 quick latencies,
 * and says it left 2 requests out. */
static void
test_unjudged(void **state)
{
	static struct sl_hist judged;
	struct sl_verdict_window w;
	struct sl_series *s = sl_series_new();

	(void)state;
	memset(&total, 0, sizeof total);
	harvest(s, 7000, 0);
	sl_hist_record(&total.latency, 2000);
	sl_hist_record(&total.latency, 2100);
	sl_hist_record(&total.latency, 1900);
	sl_hist_record(&total.latency, 1500000);
	sl_hist_record(&total.latency_unjudged, 1500000);
	total.client_slowed = 1;
	sl_hist_record_n(&total.latency, 900000, 2);
	sl_hist_record_n(&total.latency_unjudged, 900000, 2);
	total.resp_5xx = 1;
	total.unjudged_responses = 2;
	total.unjudged_errors = 1;
	total.unanswered = 1;
	total.unjudged_unanswered = 1;
	harvest(s, 7001, 5); /* 5 2xx and the 500 */
	assert_int_equal(sl_series_window(s, 60, &out), 1);
	assert_int_equal(sl_hist_count(&out.latency), 6);
	assert_int_equal(sl_hist_count(&out.latency_unjudged), 3);
	assert_int_equal(out.client_slowed, 1);
	sl_verdict_window_of(&w, &judged, &out);
	assert_int_equal(w.requests, 4);
	assert_int_equal(w.errors, 0);
	assert_int_equal(w.unanswered, 0);
	assert_int_equal(w.unjudged, 3);
	assert_ptr_equal(w.latency, &judged);
	assert_int_equal(sl_hist_count(&judged), 3);
	assert_true(sl_hist_max(&judged) < 3000);
	sl_series_free(s);
}

/* A second in which nothing moved: an empty slot, the totals kept; the
 * windows read as if it had been harvested in full. Any counter moving,
 * or only the requests in flight, is a change. */
static void
test_still(void **state)
{
	struct sl_series *s = sl_series_new();
	int64_t t;

	(void)state;
	memset(&total, 0, sizeof total);
	assert_true(sl_series_moved(s, 0, 0)); /* never harvested */
	harvest(s, 1000, 0);
	sl_hist_record(&total.latency, 2000);
	total.active = 1;
	harvest(s, 1001, 10);
	for (t = 1002; t <= 1005; t++) {
		assert_false(sl_series_moved(s, sl_vstats_moved(&total), 1));
		sl_series_harvest_still(s, t);
	}
	assert_int_equal(sl_series_window(s, 60, &out), 5);
	assert_int_equal(out.requests, 10);
	assert_int_equal(sl_hist_count(&out.latency), 1);
	assert_int_equal(out.active, 1);
	assert_int_equal(sl_series_window(s, 3, &out), 3);
	assert_int_equal(out.requests, 0);
	assert_int_equal(sl_hist_count(&out.latency), 0);
	assert_true(sl_series_moved(s, sl_vstats_moved(&total), 0));
	total.unjudged_unanswered++;
	assert_true(sl_series_moved(s, sl_vstats_moved(&total), 1));
	total.unjudged_unanswered--;
	sl_hist_record(&total.latency_unjudged, 5);
	assert_true(sl_series_moved(s, sl_vstats_moved(&total), 1));
	sl_series_free(s);
}

/* A version at rest has no ring; its first move brings one, whose
 * windows cover the seconds before it as empty ones; a ring of seconds at
 * rest lets it go again. Windows read the same all along. */
static void
test_rest(void **state)
{
	struct sl_series *s = sl_series_new();
	size_t bare = sl_series_bytes(s);
	uint64_t sig;
	int64_t t;

	(void)state;
	memset(&total, 0, sizeof total);
	for (t = 0; t < 100; t++) {
		sig = sl_vstats_moved(&total);
		if (sl_series_moved(s, sig, 0))
			harvest(s, 2000 + t, 0);
		else
			sl_series_harvest_still(s, 2000 + t);
	}
	assert_int_equal(sl_series_bytes(s), bare);
	assert_int_equal(sl_series_window(s, 60, &out), 60);
	assert_int_equal(sl_series_window(s, 600, &out), 99);
	assert_int_equal(out.requests, 0);
	/* only the requests in flight: still no ring */
	total.active = 2;
	harvest(s, 2100, 0);
	assert_int_equal(sl_series_bytes(s), bare);
	assert_int_equal(sl_series_window(s, 60, &out), 60);
	assert_int_equal(out.active, 2);
	/* the first request: a ring, and the rest before it in it */
	harvest(s, 2101, 3);
	assert_true(sl_series_bytes(s) > bare + 100000);
	assert_int_equal(sl_series_window(s, 60, &out), 60);
	assert_int_equal(out.requests, 3);
	assert_int_equal(sl_series_window(s, 600, &out), 101);
	assert_int_equal(sl_series_window(s, 1, &out), 1);
	assert_int_equal(out.requests, 3);
	for (t = 2102; t < 2101 + SL_WINDOW_SLOTS; t++)
		sl_series_harvest_still(s, t);
	assert_true(sl_series_bytes(s) > bare); /* its last second is in */
	assert_int_equal(sl_series_window(s, 600, &out), 600);
	assert_int_equal(out.requests, 3);
	sl_series_harvest_still(s, 2101 + SL_WINDOW_SLOTS);
	assert_int_equal(sl_series_bytes(s), bare);
	assert_int_equal(sl_series_window(s, 600, &out), 600);
	assert_int_equal(out.requests, 0);
	assert_int_equal(out.active, 2);
	sl_series_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_young_series),
	    cmocka_unit_test(test_full_window),
	    cmocka_unit_test(test_live_window),
	    cmocka_unit_test(test_unjudged),
	    cmocka_unit_test(test_still),
	    cmocka_unit_test(test_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

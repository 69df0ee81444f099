/*
 * test_histogram.c — unit tests for analysis/histogram: bucket layout and
 * error bound, quantiles against exact nearest-rank quantiles of large
 * random samples, merge, window subtraction, sparse slots, extremes and
 * snapshots taken while another thread records.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "analysis/histogram.h"

#define SAMPLE_N 200000
/* Worst relative error of a reported value: half a bucket, 1/256. */
#define MAX_REL_ERR (1.0 / (2 << SL_HIST_SUB_BITS) + 1e-12)

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999, 0.0001, 1.0};

/* splitmix64: a small, fixed-seed PRNG. */
static uint64_t
rng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform double in (0, 1). */
static double
rng_unit(uint64_t *state)
{
	return ((double)(rng_next(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal, Box-Muller. */
static double
rng_normal(uint64_t *state)
{
	double u1 = rng_unit(state), u2 = rng_unit(state);

	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* A latency in µs from a real number: rounded, negative becomes 0. */
static uint64_t
to_usec(double v)
{
	if (!(v > 0))
		return 0;
	if (v >= 1e18)
		return UINT64_C(1000000000000000000);
	return (uint64_t)llround(v);
}

enum dist {
	DIST_UNIFORM,
	DIST_LOGNORMAL,
	DIST_BIMODAL,
	DIST_EXPONENTIAL,
	DIST_LOGUNIFORM,
	DIST_COUNT
};

static const char *const dist_names[] = {
    "uniform", "lognormal", "bimodal", "exponential", "loguniform"};

/* One value from distribution d. */
static uint64_t
draw(enum dist d, uint64_t *state)
{
	switch (d) {
	case DIST_UNIFORM:
		return rng_next(state) % 10000001;
	case DIST_LOGNORMAL:
		/* median 20 ms, heavy tail */
		return to_usec(exp(log(20000) + 1.5 * rng_normal(state)));
	case DIST_BIMODAL:
		if (rng_next(state) % 5 != 0)
			return to_usec(800 + 80 * rng_normal(state));
		return to_usec(250000 + 30000 * rng_normal(state));
	case DIST_EXPONENTIAL:
		return to_usec(-5000 * log(rng_unit(state)));
	case DIST_LOGUNIFORM:
		/* 1 µs .. 60 s, spread over every bucket */
		return to_usec(exp(rng_unit(state) * log(60e6)));
	default:
		return 0;
	}
}

/* Compare two uint64_t for qsort. */
static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Fill v[0..n) from distribution d with a fixed seed. */
static void
fill_sample(uint64_t *v, size_t n, enum dist d, uint64_t seed)
{
	uint64_t state = seed;
	size_t i;

	for (i = 0; i < n; i++)
		v[i] = draw(d, &state);
}

/* Exact nearest-rank quantile of sorted[0..n), values clamped as recorded. */
static uint64_t
exact_quantile(const uint64_t *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);
	uint64_t v;

	if (rank < 1)
		rank = 1;
	v = sorted[rank - 1];
	return v > SL_HIST_MAX_VALUE ? SL_HIST_MAX_VALUE : v;
}

/* Assert that got is within the error bound of exact. */
static void
assert_close(double got, uint64_t exact, const char *what, double q)
{
	double err = fabs(got - (double)exact);

	if (exact == 0 ? err != 0 : err / (double)exact > MAX_REL_ERR) {
		fail_msg("%s q=%g: histogram %.1f, exact %llu", what, q, got,
		    (unsigned long long)exact);
	}
}

/* A zeroed histogram on the heap (20 KiB: keep it off the stack). */
static struct sl_hist *
hist_new(void)
{
	struct sl_hist *h = calloc(1, sizeof *h);

	assert_non_null(h);
	return h;
}

/* Assert that a and b hold the same values bucket by bucket. */
static void
assert_hist_equal(const struct sl_hist *a, const struct sl_hist *b)
{
	assert_memory_equal(a->counts, b->counts, sizeof a->counts);
	assert_int_equal(sl_hist_count(a), sl_hist_count(b));
	assert_int_equal(sl_hist_sum(a), sl_hist_sum(b));
	assert_int_equal(sl_hist_clamped(a), sl_hist_clamped(b));
}

/* Buckets tile 0..SL_HIST_MAX_VALUE, and index() agrees with lo/hi. */
static void
test_layout(void **state)
{
	size_t i;

	assert_int_equal(SL_HIST_NBUCKETS, 2560);
	assert_int_equal(sl_hist_bucket_lo(0), 0);
	assert_int_equal(
	    sl_hist_bucket_hi(SL_HIST_NBUCKETS - 1), SL_HIST_MAX_VALUE);
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		assert_true(sl_hist_bucket_lo(i) <= sl_hist_bucket_hi(i));
		assert_int_equal(sl_hist_index(sl_hist_bucket_lo(i)), i);
		assert_int_equal(sl_hist_index(sl_hist_bucket_hi(i)), i);
		if (i > 0)
			assert_int_equal(
			    sl_hist_bucket_lo(i), sl_hist_bucket_hi(i - 1) + 1);
	}
	assert_int_equal(
	    sl_hist_index(SL_HIST_MAX_VALUE + 1), SL_HIST_NBUCKETS - 1);
	assert_int_equal(sl_hist_index(UINT64_MAX), SL_HIST_NBUCKETS - 1);
}

/* Every value's bucket midpoint is within 1/256 of it. */
static void
test_error_bound(void **state)
{
	uint64_t v;
	size_t i;
	double mid;

	for (v = 1; v <= SL_HIST_MAX_VALUE; v += v < (1 << 20) ? 1 : 97) {
		i = sl_hist_index(v);
		assert_true(i < SL_HIST_NBUCKETS);
		assert_true(sl_hist_bucket_lo(i) <= v);
		assert_true(v <= sl_hist_bucket_hi(i));
		mid = sl_hist_bucket_mid(i);
		if (fabs(mid - (double)v) / (double)v > MAX_REL_ERR)
			fail_msg("value %llu: midpoint %.1f",
			    (unsigned long long)v, mid);
	}
}

/* Quantiles, count, sum, mean, min, max against each sorted sample. */
static void
test_quantiles(void **state)
{
	uint64_t *v = malloc(SAMPLE_N * sizeof *v), sum;
	struct sl_hist *h = hist_new();
	size_t i, k;
	int d;

	assert_non_null(v);
	for (d = 0; d < DIST_COUNT; d++) {
		sl_hist_reset(h);
		fill_sample(v, SAMPLE_N, (enum dist)d, 42 + (uint64_t)d);
		sum = 0;
		for (i = 0; i < SAMPLE_N; i++) {
			sl_hist_record(h, v[i]);
			sum += v[i];
		}
		qsort(v, SAMPLE_N, sizeof *v, cmp_u64);
		assert_true(v[SAMPLE_N - 1] <= SL_HIST_MAX_VALUE);
		assert_int_equal(sl_hist_count(h), SAMPLE_N);
		assert_int_equal(sl_hist_sum(h), sum);
		assert_int_equal(sl_hist_clamped(h), 0);
		assert_int_equal(sl_hist_max(h), v[SAMPLE_N - 1]);
		assert_int_equal(sl_hist_min(h), v[0]);
		assert_true(
		    fabs(sl_hist_mean(h) - (double)sum / SAMPLE_N) < 1e-6);
		for (k = 0; k < sizeof quantiles / sizeof quantiles[0]; k++) {
			assert_close(sl_hist_quantile(h, quantiles[k]),
			    exact_quantile(v, SAMPLE_N, quantiles[k]),
			    dist_names[d], quantiles[k]);
		}
		/* reported values stay within the recorded range */
		assert_true(
		    sl_hist_quantile(h, 1.0) <= (double)v[SAMPLE_N - 1]);
		assert_true(sl_hist_quantile(h, 0) >= (double)v[0]);
	}
	free(h);
	free(v);
}

/* cumulative_le against exact counts, at Prometheus' default boundaries:
 * never a value above le, and every value more than one bucket width
 * (2 * MAX_REL_ERR of le) below it. */
static void
test_cumulative_le(void **state)
{
	static const double le[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025,
	    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60};
	uint64_t *v = malloc(SAMPLE_N * sizeof *v), got, prev, below, above;
	uint64_t all[sizeof le / sizeof le[0]];
	struct sl_hist *h = hist_new();
	size_t i, k;
	int d;

	assert_non_null(v);
	for (d = 0; d < DIST_COUNT; d++) {
		sl_hist_reset(h);
		fill_sample(v, SAMPLE_N, (enum dist)d, 7 + (uint64_t)d);
		for (i = 0; i < SAMPLE_N; i++)
			sl_hist_record(h, v[i]);
		prev = 0;
		for (k = 0; k < sizeof le / sizeof le[0]; k++) {
			double us = le[k] * 1e6;

			got = sl_hist_cumulative_le(h, le[k]);
			below = above = 0;
			for (i = 0; i < SAMPLE_N; i++) {
				below +=
				    (double)v[i] <= us * (1 - 2 * MAX_REL_ERR);
				above += (double)v[i] <= floor(us + 1e-6);
			}
			if (got < below || got > above)
				fail_msg("%s le=%g: %llu not in [%llu, %llu]",
				    dist_names[d], le[k],
				    (unsigned long long)got,
				    (unsigned long long)below,
				    (unsigned long long)above);
			assert_true(got >= prev);
			prev = got;
		}
		/* all bounds in one pass: the same counts */
		sl_hist_cumulative(h, le, sizeof le / sizeof le[0], all);
		for (k = 0; k < sizeof le / sizeof le[0]; k++)
			assert_int_equal(
			    all[k], sl_hist_cumulative_le(h, le[k]));
		assert_int_equal(sl_hist_cumulative_le(h, 1e9), SAMPLE_N);
		assert_int_equal(sl_hist_cumulative_le(h, -1), 0);
		assert_int_equal(sl_hist_cumulative_le(h, NAN), 0);
	}
	free(h);
	free(v);
}

/* Prometheus' le means <= le: a value just above a bound, in a bucket
 * whose midpoint is below it, is not counted in it (the review's 10.0157 s
 * in le="10" and 5.0067 s in le="5"); a bound that is a bucket's upper
 * edge is exact. */
static void
test_cumulative_le_straddle(void **state)
{
	struct sl_hist *h = hist_new();
	uint64_t edge;

	sl_hist_record(h, 1000);
	sl_hist_record(h, 5006700);
	sl_hist_record(h, 10015700);
	sl_hist_record(h, 60000000);
	assert_true(sl_hist_bucket_mid(sl_hist_index(10015700)) < 10e6);
	assert_true(sl_hist_bucket_mid(sl_hist_index(5006700)) < 5e6);
	assert_int_equal(sl_hist_cumulative_le(h, 5), 1);
	assert_int_equal(sl_hist_cumulative_le(h, 10), 2);
	assert_int_equal(sl_hist_cumulative_le(h, 30), 3);
	/* 60 s is in a bucket that straddles the bound (59.77-60.03 s):
	 * left to the next bound, like any straddling bucket */
	assert_int_equal(sl_hist_cumulative_le(h, 60), 3);
	/* just below a value: not counted; at the value's bucket edge: */
	assert_int_equal(sl_hist_cumulative_le(h, 10.0157), 2);
	edge = sl_hist_bucket_hi(sl_hist_index(10015700));
	assert_int_equal(sl_hist_cumulative_le(h, (double)edge / 1e6), 3);
	/* a value exactly at the bound is counted when the bound is an edge */
	sl_hist_reset(h);
	sl_hist_record(h, 1);
	sl_hist_record(h, edge);
	sl_hist_record(h, edge + 1);
	assert_int_equal(sl_hist_cumulative_le(h, (double)edge / 1e6), 2);
	/* a count never goes down as values come: a value in the bucket
	 * straddling the bound is not counted while it is the largest and
	 * then dropped when a larger one comes */
	sl_hist_reset(h);
	sl_hist_record(h, 7490);
	edge = sl_hist_cumulative_le(h, 0.0075);
	sl_hist_record(h, 8000);
	assert_true(sl_hist_cumulative_le(h, 0.0075) >= edge);
	sl_hist_record(h, 9990000);
	edge = sl_hist_cumulative_le(h, 10);
	sl_hist_record(h, 20000000);
	assert_true(sl_hist_cumulative_le(h, 10) >= edge);
	/* bounds that are not exact in binary still mean their decimal */
	sl_hist_reset(h);
	sl_hist_record(h, 1);
	sl_hist_record(h, 255);
	sl_hist_record(h, 10000);
	assert_int_equal(sl_hist_cumulative_le(h, 0.000255), 2);
	free(h);
}

/* A window's max as /stats reports it: its top bucket's midpoint (the
 * review's client max 300.6 ms was reported as the bucket's upper edge,
 * 301.055 ms, above every sample), never above the max since start, and
 * that max when the window holds values beyond the range. */
static void
test_window_max(void **state)
{
	struct sl_hist *a = hist_new(), *b = hist_new(), *w = hist_new();
	size_t top = sl_hist_index(300600);

	sl_hist_record(a, 20000);
	sl_hist_snapshot(a, b);
	sl_hist_record(a, 21000);
	sl_hist_record(a, 300600);
	sl_hist_record(a, 400000); /* the max since start */
	sl_hist_snapshot(a, w);
	sl_hist_sub(w, w, b);
	/* the window holds 21000, 300600 and 400000, the max since start,
	 * below its bucket's middle: exact */
	assert_true(sl_hist_bucket_mid(sl_hist_index(400000)) > 400000);
	assert_int_equal(sl_hist_window_max(w, 400000), 400000);
	/* only 300600 in a window: its bucket's middle, below the edge */
	sl_hist_reset(a);
	sl_hist_reset(b);
	sl_hist_record(a, 1000);
	sl_hist_record(a, 400000); /* before the window */
	sl_hist_snapshot(a, b);
	sl_hist_record(a, 300600);
	sl_hist_snapshot(a, w);
	sl_hist_sub(w, w, b);
	assert_int_equal(sl_hist_max(w), sl_hist_bucket_hi(top));
	assert_int_equal(
	    sl_hist_window_max(w, 400000), (uint64_t)sl_hist_bucket_mid(top));
	assert_true(sl_hist_window_max(w, 400000) < 300600);
	assert_true(
	    sl_hist_window_max(w, 400000) >= 300600 * (1 - MAX_REL_ERR));
	/* never above the max since start */
	assert_int_equal(sl_hist_window_max(w, sl_hist_bucket_lo(top)),
	    sl_hist_bucket_lo(top));
	/* never below the window's min (one bucket, min above its middle) */
	w->min_inv = ~(sl_hist_bucket_hi(top) - 1);
	assert_int_equal(
	    sl_hist_window_max(w, 400000), sl_hist_bucket_hi(top) - 1);
	/* nor with a max since start read before the window's values (a
	 * new max recorded between the reads) */
	assert_int_equal(
	    sl_hist_window_max(w, 100000), sl_hist_bucket_hi(top) - 1);
	/* beyond the range: the window's bucket says nothing; the max since
	 * start is the bound */
	sl_hist_reset(a);
	sl_hist_reset(b);
	sl_hist_record(a, 1000);
	sl_hist_snapshot(a, b);
	sl_hist_record(a, UINT64_C(90000000));
	sl_hist_snapshot(a, w);
	sl_hist_sub(w, w, b);
	assert_int_equal(sl_hist_max(w), SL_HIST_MAX_VALUE);
	assert_int_equal(
	    sl_hist_window_max(w, UINT64_C(90000000)), UINT64_C(90000000));
	/* empty */
	sl_hist_reset(w);
	assert_int_equal(sl_hist_window_max(w, 400000), 0);
	free(a);
	free(b);
	free(w);
}

/* merge(A, B) is bucket-for-bucket the histogram of the union. */
static void
test_merge(void **state)
{
	struct sl_hist *a = hist_new(), *b = hist_new(), *u = hist_new();
	struct sl_hist *m = hist_new();
	uint64_t st = 1, x;
	size_t i, k;

	for (i = 0; i < SAMPLE_N; i++) {
		x = draw(DIST_LOGNORMAL, &st);
		sl_hist_record(a, x);
		sl_hist_record(u, x);
		x = draw(DIST_BIMODAL, &st);
		sl_hist_record(b, x);
		sl_hist_record(u, x);
	}
	sl_hist_record(b, UINT64_C(100000000)); /* clamped */
	sl_hist_record(u, UINT64_C(100000000));

	sl_hist_merge(m, a);
	sl_hist_merge(m, b);
	assert_hist_equal(m, u);
	assert_int_equal(sl_hist_max(m), sl_hist_max(u));
	assert_int_equal(sl_hist_min(m), sl_hist_min(u));
	assert_int_equal(sl_hist_clamped(m), 1);
	assert_int_equal(sl_hist_max(m), UINT64_C(100000000));
	for (k = 0; k < sizeof quantiles / sizeof quantiles[0]; k++)
		assert_true(sl_hist_quantile(m, quantiles[k]) ==
		    sl_hist_quantile(u, quantiles[k]));
	assert_true(sl_hist_mean(m) == sl_hist_mean(u));

	/* merging an empty histogram changes nothing, min included */
	sl_hist_reset(a);
	sl_hist_merge(m, a);
	assert_hist_equal(m, u);
	assert_int_equal(sl_hist_min(m), sl_hist_min(u));
	free(a);
	free(b);
	free(u);
	free(m);
}

/* Extremes: 0, 1 µs, 60 s, the top, clamping, empty. */
static void
test_extremes(void **state)
{
	struct sl_hist *h = hist_new(), *one = hist_new();
	uint64_t top = SL_HIST_MAX_VALUE;

	/* empty */
	assert_true(sl_hist_quantile(h, 0.5) == 0);
	assert_true(sl_hist_quantile(h, 1.0) == 0);
	assert_true(sl_hist_mean(h) == 0);
	assert_int_equal(sl_hist_count(h), 0);
	assert_int_equal(sl_hist_max(h), 0);
	assert_int_equal(sl_hist_min(h), 0);
	assert_int_equal(sl_hist_cumulative_le(h, 1), 0);

	/* 0 goes to the first bucket and is a real minimum */
	sl_hist_record(h, 0);
	assert_int_equal(h->counts[0], 1);
	assert_int_equal(sl_hist_count(h), 1);
	assert_int_equal(sl_hist_min(h), 0);
	assert_true(sl_hist_quantile(h, 0.5) == 0);
	assert_int_equal(sl_hist_cumulative_le(h, 0), 1);

	sl_hist_record(h, 1);
	assert_int_equal(h->counts[1], 1);
	sl_hist_record(h, 60000000);
	sl_hist_record(h, top);
	assert_int_equal(sl_hist_clamped(h), 0);
	/* above the range: clamped into the top bucket and counted, but
	 * sum, mean and max carry the true values */
	sl_hist_record(h, top + 1);
	sl_hist_record(h, 120000000);
	sl_hist_record(h, UINT64_C(3600000000)); /* an hour */
	assert_int_equal(sl_hist_clamped(h), 3);
	assert_int_equal(sl_hist_count(h), 7);
	assert_int_equal(h->counts[SL_HIST_NBUCKETS - 1], 4);
	assert_int_equal(sl_hist_sum(h),
	    1 + 60000000 + 2 * top + 1 + 120000000 + UINT64_C(3600000000));
	assert_int_equal(sl_hist_max(h), UINT64_C(3600000000));
	assert_int_equal(sl_hist_min(h), 0);
	assert_true(sl_hist_mean(h) ==
	    (1 + 60000000 + 2.0 * top + 1 + 120000000 + 3600000000.0) / 7);
	/* every bound below max leaves the clamped values out */
	assert_int_equal(sl_hist_cumulative_le(h, 60), 2); /* 60 s straddles */
	assert_int_equal(sl_hist_cumulative_le(h, 3600), 7);
	assert_true(fabs(sl_hist_quantile(h, 1.0) - (double)top) <=
	    (double)top * MAX_REL_ERR);
	assert_true(sl_hist_quantile(h, 2.0) == sl_hist_quantile(h, 1.0));
	assert_true(sl_hist_quantile(h, -1) == 0);
	assert_true(sl_hist_quantile(h, NAN) == 0);
	assert_true(
	    fabs(sl_hist_quantile(h, 0.4) - 60e6) <= 60e6 * MAX_REL_ERR);

	/* a lone value is reported exactly, through min/max */
	sl_hist_record(one, 60000000);
	assert_true(sl_hist_quantile(one, 0.5) == 60e6);
	assert_true(sl_hist_quantile(one, 1.0) == 60e6);
	assert_true(sl_hist_mean(one) == 60e6);
	/* its bucket straddles 60 s: in no bound below the next (as a
	 * count must never drop when a larger value comes) */
	assert_int_equal(sl_hist_cumulative_le(one, 60), 0);
	assert_int_equal(sl_hist_cumulative_le(one, 60.1), 1);
	assert_int_equal(sl_hist_cumulative_le(one, 59.9), 0);

	/* record_n is n records */
	sl_hist_reset(h);
	sl_hist_reset(one);
	sl_hist_record_n(h, 12345, 5);
	for (int i = 0; i < 5; i++)
		sl_hist_record(one, 12345);
	assert_hist_equal(h, one);
	assert_int_equal(sl_hist_max(h), 12345);
	assert_int_equal(sl_hist_min(h), 12345);
	free(h);
	free(one);
}

/* sub() of two cumulative snapshots is the histogram of the window. */
static void
test_sub(void **state)
{
	struct sl_hist *live = hist_new(), *t1 = hist_new(), *t2 = hist_new();
	struct sl_hist *w = hist_new(), *d = hist_new();
	uint64_t *v = malloc(SAMPLE_N * sizeof *v), st = 3;
	size_t i, k, hi;

	assert_non_null(v);
	for (i = 0; i < SAMPLE_N; i++)
		sl_hist_record(live, draw(DIST_UNIFORM, &st));
	sl_hist_snapshot(live, t1);
	for (i = 0; i < SAMPLE_N; i++) {
		v[i] = draw(DIST_EXPONENTIAL, &st);
		sl_hist_record(live, v[i]);
		sl_hist_record(w, v[i]);
	}
	sl_hist_snapshot(live, t2);

	assert_int_equal(sl_hist_sub(d, t2, t1), 0);
	assert_hist_equal(d, w);
	/* max/min: the bounds of the extreme buckets, within a's range */
	hi = sl_hist_index(sl_hist_max(w));
	assert_true(sl_hist_max(d) >= sl_hist_max(w));
	assert_true(sl_hist_max(d) <= sl_hist_bucket_hi(hi));
	assert_true(sl_hist_max(d) <= sl_hist_max(t2));
	assert_true(sl_hist_min(d) <= sl_hist_min(w));
	assert_true(
	    sl_hist_min(d) >= sl_hist_bucket_lo(sl_hist_index(sl_hist_min(w))));
	qsort(v, SAMPLE_N, sizeof *v, cmp_u64);
	for (k = 0; k < sizeof quantiles / sizeof quantiles[0]; k++)
		assert_close(sl_hist_quantile(d, quantiles[k]),
		    exact_quantile(v, SAMPLE_N, quantiles[k]), "window",
		    quantiles[k]);

	/* an empty window; in place; and the wrong way round */
	assert_int_equal(sl_hist_sub(d, t2, t2), 0);
	assert_int_equal(sl_hist_count(d), 0);
	assert_int_equal(sl_hist_max(d), 0);
	assert_true(sl_hist_quantile(d, 0.5) == 0);
	assert_int_equal(sl_hist_sub(t2, t2, t1), 0);
	assert_hist_equal(t2, w);
	sl_hist_snapshot(live, t2);
	assert_int_equal(sl_hist_sub(d, t1, t2), -1);

	free(v);
	free(live);
	free(t1);
	free(t2);
	free(w);
	free(d);
}

/* delta -> slot -> add back gives the later snapshot again. */
static void
test_slots(void **state)
{
	struct sl_hist *live = hist_new(), *prev = hist_new();
	struct sl_hist *now = hist_new(), *acc = hist_new(), *d = hist_new();
	struct sl_hist_slot slot;
	uint64_t st = 9;
	size_t round, i, n;
	int dist;

	sl_hist_slot_init(&slot);
	/* an empty delta */
	assert_int_equal(sl_hist_slot_from_delta(&slot, live, live), 0);
	assert_int_equal(slot.count, 0);
	assert_int_equal(slot.len, 0);
	assert_int_equal(sl_hist_add_slot(acc, &slot), 0);
	assert_int_equal(sl_hist_count(acc), 0);
	assert_int_equal(sl_hist_min(acc), 0);

	/* one slot reused for rounds of varying size, as in a ring */
	for (round = 0; round < 12; round++) {
		dist = (int)(round % DIST_COUNT);
		n = round == 5 ? SAMPLE_N : 100 + 1000 * round;
		sl_hist_snapshot(live, prev);
		for (i = 0; i < n; i++)
			sl_hist_record(live, draw((enum dist)dist, &st));
		if (round == 3)
			sl_hist_record_n(live, UINT64_MAX, 3);
		sl_hist_snapshot(live, now);

		assert_int_equal(sl_hist_slot_from_delta(&slot, now, prev), 0);
		assert_int_equal(slot.count, n + (round == 3 ? 3 : 0));
		assert_int_equal(slot.clamped, round == 3 ? 3 : 0);

		/* prev + slot == now */
		memcpy(acc, prev, sizeof *acc);
		assert_int_equal(sl_hist_add_slot(acc, &slot), 0);
		assert_hist_equal(acc, now);

		/* empty + slot == now - prev */
		assert_int_equal(sl_hist_sub(d, now, prev), 0);
		sl_hist_reset(acc);
		assert_int_equal(sl_hist_add_slot(acc, &slot), 0);
		assert_hist_equal(acc, d);
		/* Bounds as sl_hist_sub finds them: bucket edges kept
		 * within the exact min and max since start, so that a
		 * window's max is never above the whole's. */
		assert_int_equal(sl_hist_max(acc), sl_hist_max(d));
		assert_int_equal(sl_hist_min(acc), sl_hist_min(d));
		assert_true(sl_hist_max(acc) <= sl_hist_max(now));
		assert_true(sl_hist_max(d) == 0 ||
		    sl_hist_max(acc) >
		        sl_hist_bucket_lo(sl_hist_index(sl_hist_max(d))));
		print_message("slot %zu: %s, %zu values, %u bytes encoded, "
		              "%zu bytes in all\n",
		    round, dist_names[dist], n, slot.len,
		    sl_hist_slot_bytes(&slot));
	}

	/* the wrong way round fails and leaves the slot empty */
	assert_int_equal(sl_hist_slot_from_delta(&slot, prev, now), -1);
	assert_int_equal(slot.count, 0);
	assert_int_equal(slot.len, 0);

	/* a truncated encoding is refused */
	assert_int_equal(sl_hist_slot_from_delta(&slot, now, prev), 0);
	assert_true(slot.len > 2);
	slot.len -= 1;
	assert_int_equal(sl_hist_add_slot(acc, &slot), -1);

	sl_hist_slot_free(&slot);
	assert_null(slot.buf);
	sl_hist_slot_free(&slot);
	free(live);
	free(prev);
	free(now);
	free(acc);
	free(d);
}

/* A value recorded while a snapshot was taken: counted in its bucket, with
 * the snapshot's max (loaded first) still older. A window must not lose
 * it: its bounds stay within the value's bucket, and min <= max. */
static void
test_slot_stale_max(void **state)
{
	struct sl_hist *prev = hist_new(), *now = hist_new();
	struct sl_hist *acc = hist_new(), *d = hist_new();
	struct sl_hist_slot slot;
	size_t i = sl_hist_index(5000);

	(void)state;
	sl_hist_slot_init(&slot);
	sl_hist_record(now, 5000);
	now->max = 0; /* as loaded before the value came */
	now->min_inv = 0;
	assert_int_equal(sl_hist_slot_from_delta(&slot, now, prev), 0);
	assert_int_equal(sl_hist_add_slot(acc, &slot), 0);
	assert_true(sl_hist_max(acc) >= sl_hist_bucket_lo(i));
	assert_true(sl_hist_min(acc) <= sl_hist_max(acc));
	assert_true(sl_hist_quantile(acc, 0.5) >= (double)sl_hist_bucket_lo(i));
	assert_int_equal(sl_hist_sub(d, now, prev), 0);
	assert_true(sl_hist_max(d) >= sl_hist_bucket_lo(i));
	assert_true(sl_hist_min(d) <= sl_hist_max(d));
	sl_hist_slot_free(&slot);
	free(prev);
	free(now);
	free(acc);
	free(d);
}

#define WRITER_RECORDS 2000000

struct writer_arg {
	struct sl_hist *h;
	uint64_t sum; /* of the values recorded */
	int done;     /* set (atomically) when the writer is finished */
};

/* The owner thread: records WRITER_RECORDS values. */
static void *
writer_main(void *p)
{
	struct writer_arg *arg = p;
	uint64_t st = 77, v, sum = 0;
	size_t i;

	for (i = 0; i < WRITER_RECORDS; i++) {
		v = rng_next(&st) % 200000;
		if (i % 100000 == 0)
			v = UINT64_C(100000000); /* above the range */
		sl_hist_record(arg->h, v);
		sum += v;
	}
	arg->sum = sum;
	__atomic_store_n(&arg->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Snapshots taken during recording never go backwards. */
static void
test_concurrent_snapshot(void **state)
{
	struct sl_hist *live = hist_new(), *a = hist_new(), *b = hist_new();
	struct sl_hist *prev = a, *cur = b, *t;
	struct writer_arg arg = {live, 0, 0};
	unsigned long snaps = 0;
	pthread_t tid;
	size_t i;

	assert_int_equal(pthread_create(&tid, NULL, writer_main, &arg), 0);
	while (
	    !__atomic_load_n(&arg.done, __ATOMIC_ACQUIRE) && snaps < 1000000) {
		sl_hist_snapshot(live, cur);
		assert_true(cur->count >= prev->count);
		assert_true(cur->sum >= prev->sum);
		assert_true(cur->clamped >= prev->clamped);
		assert_true(cur->max >= prev->max);
		for (i = 0; i < SL_HIST_NBUCKETS; i++)
			if (cur->counts[i] < prev->counts[i])
				fail_msg("bucket %zu went from %llu to %llu", i,
				    (unsigned long long)prev->counts[i],
				    (unsigned long long)cur->counts[i]);
		assert_true(sl_hist_quantile(cur, 0.99) >= 0);
		t = prev;
		prev = cur;
		cur = t;
		snaps++;
	}
	assert_int_equal(pthread_join(tid, NULL), 0);
	print_message("%lu snapshots while the writer ran\n", snaps);

	sl_hist_snapshot(live, cur);
	assert_true(cur->count >= prev->count);
	assert_int_equal(cur->count, WRITER_RECORDS);
	assert_int_equal(sl_hist_count(live), WRITER_RECORDS);
	assert_int_equal(cur->sum, arg.sum);
	assert_int_equal(cur->clamped, WRITER_RECORDS / 100000);
	free(live);
	free(a);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout),
	    cmocka_unit_test(test_error_bound),
	    cmocka_unit_test(test_quantiles),
	    cmocka_unit_test(test_cumulative_le),
	    cmocka_unit_test(test_cumulative_le_straddle),
	    cmocka_unit_test(test_window_max),
	    cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_extremes),
	    cmocka_unit_test(test_sub),
	    cmocka_unit_test(test_slots),
	    cmocka_unit_test(test_slot_stale_max),
	    cmocka_unit_test(test_concurrent_snapshot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

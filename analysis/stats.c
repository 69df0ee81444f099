/*
 * stats.c — merging per-worker counters (reader side).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "analysis/stats.h"

/* Sum a worker's version counters and histogram into DST. */
void
sl_vstats_merge(struct sl_vstats *dst, const struct sl_vstats *src)
{
	static __thread struct sl_hist snap; /* 20 KiB: not on the stack */

#define SL_X(f, fam, l, lv, h) dst->f += SL_STAT_READ(src->f);
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	dst->active += SL_STAT_READ(src->active);
	for (size_t g = 0; g < SL_GROUPS; g++) {
		dst->groups.n[g] += SL_STAT_READ(src->groups.n[g]);
		dst->groups.err[g] += SL_STAT_READ(src->groups.err[g]);
		dst->groups.lat_n[g] += SL_STAT_READ(src->groups.lat_n[g]);
		dst->groups.lat_sum[g] += SL_STAT_READ(src->groups.lat_sum[g]);
		dst->groups.lat_sq[g] += SL_STAT_READ(src->groups.lat_sq[g]);
	}
	/* The worker records a request in latency, then in latency_unjudged:
	 * read in the other order, every unjudged request read is in the
	 * latency read after it. */
	sl_hist_snapshot(&src->latency_unjudged, &snap);
	sl_hist_merge(&dst->latency_unjudged, &snap);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	sl_hist_snapshot(&src->latency, &snap);
	sl_hist_merge(&dst->latency, &snap);
}

uint64_t
sl_vstats_moved(const struct sl_vstats *v)
{
	/* A histogram's record writes its bucket, clamped, count and sum in
	 * turn: a merge may read some of them before it, none after. */
	uint64_t sum = SL_STAT_READ(v->latency.count) +
	    SL_STAT_READ(v->latency.sum) + SL_STAT_READ(v->latency.clamped) +
	    SL_STAT_READ(v->latency_unjudged.count) +
	    SL_STAT_READ(v->latency_unjudged.sum) +
	    SL_STAT_READ(v->latency_unjudged.clamped);

#define SL_X(f, fam, l, lv, h) sum += SL_STAT_READ(v->f);
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	return sum;
}

/* Counters and histogram of A minus those of B. */
void
sl_vstats_sub(
    struct sl_vstats *dst, const struct sl_vstats *a, const struct sl_vstats *b)
{
#define SL_X(f, fam, l, lv, h) dst->f = a->f - b->f;
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	dst->active = a->active;
	/* A count only grows: never below its base. */
	for (size_t g = 0; g < SL_GROUPS; g++) {
#define SUB(f) dst->groups.f[g] = sl_stat_since(a->groups.f[g], b->groups.f[g])
		SUB(n);
		SUB(err);
		SUB(lat_n);
		SUB(lat_sum);
		SUB(lat_sq);
#undef SUB
	}
	if (sl_hist_sub(&dst->latency, &a->latency, &b->latency) != 0)
		sl_hist_reset(&dst->latency);
	if (sl_hist_sub(&dst->latency_unjudged, &a->latency_unjudged,
	        &b->latency_unjudged) != 0)
		sl_hist_reset(&dst->latency_unjudged);
}

/* D when it is beyond the noise of its estimate from K groups, else 1. */
static double
significant(double d, size_t k)
{
	if (k < 4 || !(d > 1 + 3 * sqrt(2.0 / (double)(k - 1))))
		return 1;
	return d;
}

/* Group I's errors, never more than its requests (each read apart). */
static double
group_errors(const struct sl_groups *g, size_t i)
{
	return (double)(g->err[i] < g->n[i] ? g->err[i] : g->n[i]);
}

/* Design effect of a version's error rate from its own groups. */
static double
deff_errors(const struct sl_groups *g)
{
	double n = 0, x = 0, p, between = 0, d;
	size_t i, k = 0;

	for (i = 0; i < SL_GROUPS; i++) {
		n += (double)g->n[i];
		x += group_errors(g, i);
		k += g->n[i] > 0;
	}
	if (k < 2 || n == 0 || x == 0 || x == n)
		return 1;
	p = x / n;
	for (i = 0; i < SL_GROUPS; i++) {
		double dev = group_errors(g, i) - p * (double)g->n[i];

		between += dev * dev;
	}
	/* The rate's variance between groups (a ratio estimator's, with K
	 * clusters) over the binomial one, p (1 - p) / n. */
	d = (double)k / (double)(k - 1) * between / (n * n) / (p * (1 - p) / n);
	return significant(d, k);
}

/* Design effect of a version's mean latency (log scale) from its own
 * groups: their variance between groups over the total one. */
static double
deff_latency(const struct sl_groups *g)
{
	double n = 0, s = 0, q = 0, mean, var, between = 0, d;
	size_t i, k = 0;

	for (i = 0; i < SL_GROUPS; i++) {
		n += (double)g->lat_n[i];
		s += (double)g->lat_sum[i];
		q += (double)g->lat_sq[i];
		k += g->lat_n[i] > 0;
	}
	if (k < 2 || n < 2)
		return 1;
	mean = s / n;
	var = (q - n * mean * mean) / (n - 1);
	if (!(var > 0))
		return 1;
	for (i = 0; i < SL_GROUPS; i++) {
		double dev = (double)g->lat_sum[i] - mean * (double)g->lat_n[i];

		between += dev * dev;
	}
	d = (double)k / (double)(k - 1) * between / (n * n) / (var / n);
	return significant(d, k);
}

/* Weighted mean size of the groups N: sum n^2 / sum n. */
static double
mean_size(const uint64_t *n)
{
	double s = 0, q = 0;
	size_t i;

	for (i = 0; i < SL_GROUPS; i++) {
		s += (double)n[i];
		q += (double)n[i] * (double)n[i];
	}
	return s > 0 ? q / s : 0;
}

/* The canary's design effect, 1 + (m - 1) rho, with rho what the stable
 * version's design effect D_STABLE and mean group size M_STABLE imply. */
static double
deff_like(double d_stable, double m_stable, double m_canary)
{
	double rho;

	if (d_stable <= 1 || m_stable <= 1 || m_canary <= 1)
		return 1;
	rho = (d_stable - 1) / (m_stable - 1);
	return 1 + (m_canary - 1) * rho;
}

void
sl_groups_deffs(const struct sl_groups *stable, const struct sl_groups *canary,
    struct sl_deffs *st, struct sl_deffs *ca)
{
	st->errors = deff_errors(stable);
	st->latency = deff_latency(stable);
	ca->errors =
	    deff_like(st->errors, mean_size(stable->n), mean_size(canary->n));
	ca->latency = deff_like(
	    st->latency, mean_size(stable->lat_n), mean_size(canary->lat_n));
}

/* Sum a worker's connection counters into DST. */
void
sl_wstats_merge(struct sl_wstats *dst, const struct sl_wstats *src)
{
#define SL_X(f, n, h) dst->f += SL_STAT_READ(src->f);
	SL_WSTATS_COUNTERS(SL_X)
#undef SL_X
	dst->conns_active += SL_STAT_READ(src->conns_active);
}

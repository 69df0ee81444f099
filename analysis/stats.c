/*
 * stats.c — merging per-worker counters (reader side).
 */
#include "config.h"

#include <stdlib.h>

#include "analysis/stats.h"

/* Sum a worker's version counters and histogram into DST. */
void
sl_vstats_merge(struct sl_vstats *dst, const struct sl_vstats *src)
{
	static __thread struct sl_hist snap; /* 20 KiB: not on the stack */

#define SL_X(f, fam, l, lv, h) dst->f += SL_STAT_READ(src->f);
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
	dst->active += SL_STAT_READ(src->active);
	/* The worker records a request in latency, then in latency_client:
	 * read in the other order, every client-slowed request read is in
	 * the latency read after it. */
	sl_hist_snapshot(&src->latency_client, &snap);
	sl_hist_merge(&dst->latency_client, &snap);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	sl_hist_snapshot(&src->latency, &snap);
	sl_hist_merge(&dst->latency, &snap);
}

/* Counters and histogram of A minus those of B. */
void
sl_vstats_sub(
    struct sl_vstats *dst, const struct sl_vstats *a, const struct sl_vstats *b)
{
#define SL_X(f, fam, l, lv, h) dst->f = a->f - b->f;
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
	dst->active = a->active;
	if (sl_hist_sub(&dst->latency, &a->latency, &b->latency) != 0)
		sl_hist_reset(&dst->latency);
	if (sl_hist_sub(&dst->latency_client, &a->latency_client,
	        &b->latency_client) != 0)
		sl_hist_reset(&dst->latency_client);
}

void
sl_vstats_judged_latency(struct sl_hist *out, const struct sl_vstats *v)
{
	/* Every client-slowed request is in latency too (recorded there
	 * first, read there last: sl_vstats_merge); if a read says
	 * otherwise, all are kept. */
	if (sl_hist_sub(out, &v->latency, &v->latency_client) != 0)
		*out = v->latency;
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

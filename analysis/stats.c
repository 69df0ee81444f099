/*
 * stats.c — merging per-worker counters (reader side).
 */
#include "config.h"

#include "proxy/stats.h"

/* Sum a worker's version counters into DST. */
void
sl_vstats_merge(struct sl_vstats *dst, const struct sl_vstats *src)
{
#define SL_X(f, n, h) dst->f += SL_STAT_READ(src->f);
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
	dst->active += SL_STAT_READ(src->active);
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

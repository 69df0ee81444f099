/*
 * histogram.c — the reader side of the latency histogram: snapshots, merge,
 * window subtraction, quantiles, Prometheus buckets and sparse time slots.
 * Recording is inline in histogram.h. Everything here runs on the control
 * thread (or in tests), never on a worker's request path.
 */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/histogram.h"

/* Relaxed atomic load, for fields a worker may be writing. */
#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* Empty h. */
void
sl_hist_reset(struct sl_hist *h)
{
	memset(h, 0, sizeof *h);
}

/* Copy live to out with relaxed loads; count is rebuilt from the buckets. */
void
sl_hist_snapshot(const struct sl_hist *live, struct sl_hist *out)
{
	uint64_t total = 0;
	size_t i;

	out->sum = LOAD(&live->sum);
	out->max = LOAD(&live->max);
	out->min_inv = LOAD(&live->min_inv);
	out->clamped = LOAD(&live->clamped);
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		out->counts[i] = LOAD(&live->counts[i]);
		total += out->counts[i];
	}
	out->count = total;
}

/* dst += src; count follows the buckets, as in a snapshot. */
void
sl_hist_merge(struct sl_hist *dst, const struct sl_hist *src)
{
	uint64_t v, total = 0;
	size_t i;

	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		v = LOAD(&src->counts[i]);
		dst->counts[i] += v;
		total += v;
	}
	dst->count += total;
	dst->sum += LOAD(&src->sum);
	dst->clamped += LOAD(&src->clamped);
	if ((v = LOAD(&src->max)) > dst->max)
		dst->max = v;
	if ((v = LOAD(&src->min_inv)) > dst->min_inv)
		dst->min_inv = v;
}

/* a - b, or 0 (and *bad set) if b > a. */
static uint64_t
sub_or_zero(uint64_t a, uint64_t b, bool *bad)
{
	if (b > a) {
		*bad = true;
		return 0;
	}
	return a - b;
}

/*
 * Bounds of part of a histogram whose values lie in buckets FIRST to LAST:
 * those buckets' edges, kept within WHOLE's exact min and max but never
 * outside the buckets themselves (a snapshot loads max before the
 * buckets, so a value recorded meanwhile is counted in them while max is
 * older).
 */
static void
bucket_bounds(size_t first, size_t last, const struct sl_hist *whole,
    uint64_t *lo, uint64_t *hi)
{
	uint64_t max = whole->max, min = sl_hist_min(whole);

	*lo = sl_hist_bucket_lo(first);
	*hi = sl_hist_bucket_hi(last);
	if (*hi > max)
		*hi = max > sl_hist_bucket_lo(last) ? max
		                                    : sl_hist_bucket_lo(last);
	if (*lo < min)
		*lo = min < sl_hist_bucket_hi(first) ? min
		                                     : sl_hist_bucket_hi(first);
}

/* dst = a - b for a window; max/min approximated from the buckets. */
int
sl_hist_sub(
    struct sl_hist *dst, const struct sl_hist *a, const struct sl_hist *b)
{
	uint64_t total = 0;
	size_t i, lo = SL_HIST_NBUCKETS, hi = 0;
	bool bad = false;

	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		dst->counts[i] = sub_or_zero(a->counts[i], b->counts[i], &bad);
		if (dst->counts[i] != 0) {
			if (lo == SL_HIST_NBUCKETS)
				lo = i;
			hi = i;
			total += dst->counts[i];
		}
	}
	dst->sum = sub_or_zero(a->sum, b->sum, &bad);
	dst->clamped = sub_or_zero(a->clamped, b->clamped, &bad);
	if (sub_or_zero(a->count, b->count, &bad) != total)
		bad = true;
	dst->count = total;
	if (total == 0) {
		dst->max = 0;
		dst->min_inv = 0;
	} else {
		uint64_t min;

		bucket_bounds(lo, hi, a, &min, &dst->max);
		dst->min_inv = ~min;
	}
	return bad ? -1 : 0;
}

/* A window's largest value: its top bucket's midpoint, or WHOLE_MAX. */
uint64_t
sl_hist_window_max(const struct sl_hist *window, uint64_t whole_max)
{
	uint64_t v;
	size_t i;

	if (window->count == 0)
		return 0;
	/* WHOLE_MAX may be older than WINDOW (a new max recorded between
	 * the reads): the window's own min bounds it from below. */
	if (window->clamped != 0)
		return whole_max > SL_HIST_MAX_VALUE ? whole_max
		                                     : SL_HIST_MAX_VALUE;
	for (i = SL_HIST_NBUCKETS - 1; i > 0 && window->counts[i] == 0; i--)
		;
	v = (uint64_t)sl_hist_bucket_mid(i);
	if (v > whole_max)
		v = whole_max;
	if (v < sl_hist_min(window)) /* lone bucket, min above its middle */
		v = sl_hist_min(window);
	return v;
}

/* Values recorded. */
uint64_t
sl_hist_count(const struct sl_hist *h)
{
	return LOAD(&h->count);
}

/* Sum of values recorded, µs. */
uint64_t
sl_hist_sum(const struct sl_hist *h)
{
	return LOAD(&h->sum);
}

/* Values clamped to SL_HIST_MAX_VALUE. */
uint64_t
sl_hist_clamped(const struct sl_hist *h)
{
	return LOAD(&h->clamped);
}

/* Mean in µs, 0 when empty. */
double
sl_hist_mean(const struct sl_hist *h)
{
	uint64_t n = LOAD(&h->count);

	if (n == 0)
		return 0;
	return (double)LOAD(&h->sum) / (double)n;
}

/* Largest value, 0 when empty. */
uint64_t
sl_hist_max(const struct sl_hist *h)
{
	return LOAD(&h->max);
}

/* Smallest value, 0 when empty. */
uint64_t
sl_hist_min(const struct sl_hist *h)
{
	uint64_t inv = LOAD(&h->min_inv);

	return inv == 0 ? 0 : ~inv;
}

/* Nearest-rank quantile, as the bucket midpoint kept within [min, max]. */
double
sl_hist_quantile(const struct sl_hist *h, double q)
{
	uint64_t n = LOAD(&h->count), rank, seen = 0;
	double v, lo, hi;
	size_t i;

	if (n == 0)
		return 0;
	if (!(q > 0)) /* also NaN */
		q = 0;
	if (q > 1)
		q = 1;
	rank = (uint64_t)ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	for (i = 0; i < SL_HIST_NBUCKETS - 1; i++) {
		seen += LOAD(&h->counts[i]);
		if (seen >= rank)
			break;
	}
	v = sl_hist_bucket_mid(i);
	lo = (double)sl_hist_min(h);
	hi = (double)sl_hist_max(h);
	if (v > hi)
		v = hi;
	if (v < lo)
		v = lo;
	return v;
}

/*
 * Values <= le_seconds: the buckets that lie wholly at or below it. A
 * bucket straddling le (some of its values above) is left to the next
 * higher bound, so a value above le is never counted.
 */
uint64_t
sl_hist_cumulative_le(const struct sl_hist *h, double le_seconds)
{
	uint64_t out;

	sl_hist_cumulative(h, &le_seconds, 1, &out);
	return out;
}

void
sl_hist_cumulative(
    const struct sl_hist *h, const double *le, size_t n, uint64_t *out)
{
	uint64_t total = 0, bound;
	size_t i = 0, k;
	double us;

	for (k = 0; k < n; k++) {
		if (!(le[k] >= 0)) { /* also NaN */
			out[k] = 0;
			continue;
		}
		/* Values are whole µs: v <= le iff v <= floor(le). The slack
		 * absorbs the rounding of the product (0.0075 * 1e6 is not
		 * always 7500 exactly); 1e-6 µs is far below any bound's
		 * step. */
		us = floor(le[k] * 1e6 + 1e-6);
		/* Buckets only: a shortcut through max (all values when le is
		 * above it) would count a straddling bucket's values until a
		 * larger one came, then drop them, and a counter went down. */
		bound = us >= (double)SL_HIST_MAX_VALUE ? SL_HIST_MAX_VALUE
		                                        : (uint64_t)us;
		for (; i < SL_HIST_NBUCKETS && sl_hist_bucket_hi(i) <= bound;
		     i++)
			total += LOAD(&h->counts[i]);
		out[k] = total;
	}
}

/* log2 of bucket i's width. */
static unsigned int
bucket_shift(size_t i)
{
	size_t octave = i >> SL_HIST_SUB_BITS;

	return octave == 0 ? 0 : (unsigned int)octave - 1;
}

/* Lowest value in bucket i. */
uint64_t
sl_hist_bucket_lo(size_t i)
{
	unsigned int shift = bucket_shift(i);

	return (uint64_t)(i - ((size_t)shift << SL_HIST_SUB_BITS)) << shift;
}

/* Highest value in bucket i. */
uint64_t
sl_hist_bucket_hi(size_t i)
{
	return sl_hist_bucket_lo(i) + (UINT64_C(1) << bucket_shift(i)) - 1;
}

/* Reported value of bucket i. */
double
sl_hist_bucket_mid(size_t i)
{
	return ((double)sl_hist_bucket_lo(i) + (double)sl_hist_bucket_hi(i)) /
	    2;
}

/* Empty slot with no buffer. */
void
sl_hist_slot_init(struct sl_hist_slot *slot)
{
	memset(slot, 0, sizeof *slot);
}

/* Free slot's buffer and empty it. */
void
sl_hist_slot_free(struct sl_hist_slot *slot)
{
	free(slot->buf);
	sl_hist_slot_init(slot);
}

/* Bytes LEB128 needs for v. */
static size_t
varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Write v as LEB128 at p; return the byte after it. */
static uint8_t *
varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Read a LEB128 value from *pp (before end) into *v; -1 if truncated. */
static int
varint_get(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	unsigned int shift = 0;
	uint64_t r = 0;

	for (;;) {
		if (p == end || shift > 63)
			return -1;
		r |= (uint64_t)(*p & 0x7f) << shift;
		if ((*p++ & 0x80) == 0)
			break;
		shift += 7;
	}
	*pp = p;
	*v = r;
	return 0;
}

/* Empty slot but keep its buffer. */
static void
slot_clear(struct sl_hist_slot *slot)
{
	slot->count = slot->sum = slot->clamped = 0;
	slot->lo = slot->hi = 0;
	slot->len = 0;
}

/*
 * Make slot->buf hold need bytes. The buffer is reused from one slot to the
 * next: it grows with 1/8 to spare and shrinks once it is more than half as
 * large again as needed, so a slot's memory stays within 1.5 * need + 64.
 */
static int
slot_reserve(struct sl_hist_slot *slot, size_t need)
{
	uint8_t *buf;
	size_t cap;

	if (need <= slot->cap && slot->cap <= need + need / 2 + 64)
		return 0;
	cap = need + need / 8 + 16;
	if (cap > UINT32_MAX)
		return -1;
	if ((buf = realloc(slot->buf, cap)) == NULL)
		return need <= slot->cap ? 0 : -1;
	slot->buf = buf;
	slot->cap = (uint32_t)cap;
	return 0;
}

/* slot = now - prev, sparse and varint-encoded. */
int
sl_hist_slot_from_delta(struct sl_hist_slot *slot, const struct sl_hist *now,
    const struct sl_hist *prev)
{
	uint64_t d, total = 0;
	size_t i, first = 0, last, need = 0;
	uint8_t *p;

	slot_clear(slot);
	last = (size_t)-1;
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		if (prev->counts[i] > now->counts[i])
			return -1;
		if ((d = now->counts[i] - prev->counts[i]) == 0)
			continue;
		need += varint_len(i - last - 1) + varint_len(d);
		last = i;
		total += d;
	}
	if (prev->sum > now->sum || prev->clamped > now->clamped ||
	    now->count - prev->count != total || prev->count > now->count)
		return -1;
	if (slot_reserve(slot, need) == -1)
		return -1;

	p = slot->buf;
	last = (size_t)-1;
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		if ((d = now->counts[i] - prev->counts[i]) == 0)
			continue;
		if (last == (size_t)-1)
			first = i;
		p = varint_put(p, i - last - 1);
		p = varint_put(p, d);
		last = i;
	}
	/* No value of the slot lies beyond those of the whole: a window's
	 * max is never above the max since start (and is it, exactly, when
	 * the slot holds it). */
	if (total != 0)
		bucket_bounds(first, last, now, &slot->lo, &slot->hi);
	slot->len = (uint32_t)need;
	slot->count = total;
	slot->sum = now->sum - prev->sum;
	slot->clamped = now->clamped - prev->clamped;
	return 0;
}

/* h += slot. */
int
sl_hist_add_slot(struct sl_hist *h, const struct sl_hist_slot *slot)
{
	const uint8_t *p = slot->buf, *end = p;
	uint64_t gap, d, total = 0;
	size_t i = (size_t)-1;

	if (slot->len != 0)
		end = p + slot->len;
	while (p != end) {
		if (varint_get(&p, end, &gap) == -1 ||
		    varint_get(&p, end, &d) == -1)
			return -1;
		if (gap >= SL_HIST_NBUCKETS - (i + 1))
			return -1;
		i += gap + 1;
		h->counts[i] += d;
		total += d;
	}
	if (total != slot->count)
		return -1;
	h->count += total;
	h->sum += slot->sum;
	h->clamped += slot->clamped;
	if (total != 0) {
		if (slot->hi > h->max)
			h->max = slot->hi;
		if (~slot->lo > h->min_inv)
			h->min_inv = ~slot->lo;
	}
	return 0;
}

/* Memory used by slot. */
size_t
sl_hist_slot_bytes(const struct sl_hist_slot *slot)
{
	return sizeof *slot + slot->cap;
}

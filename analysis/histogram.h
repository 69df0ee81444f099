/*
 * histogram.h — log-linear (HDR-style) latency histogram in microseconds.
 *
 * Bucket layout: values below 2^(SL_HIST_SUB_BITS+1) get one bucket each;
 * above that, every power of two [2^k, 2^(k+1)) is cut into
 * 2^SL_HIST_SUB_BITS equal buckets. A value is reported as the midpoint of
 * its bucket, so the relative error of any reported value (quantile) is at
 * most 1 / 2^(SL_HIST_SUB_BITS+1) = 0.39%; a bucket is at most 0.78% as
 * wide as its values (Prometheus bounds: sl_hist_cumulative_le()). The range is
 * 0 .. SL_HIST_MAX_VALUE µs (~67.1 s); a larger value is recorded in the
 * top bucket and counted in `clamped`, but keeps its true value in sum,
 * max and min: only its bucket is clamped.
 *
 * Concurrency: one writer thread per histogram (the worker that owns it)
 * records with relaxed atomic load + store (plain movs on x86-64, no lock
 * prefix, no RMW); any other thread reads with relaxed atomic loads, through
 * sl_hist_snapshot(), so it never sees a torn 64-bit value and every field it
 * sees only grows. The layout is public so that the histogram can be embedded
 * in per-worker stats and sl_hist_record() can be inlined; callers should
 * still only touch it through these functions. The accessors below also use
 * relaxed loads, but only a snapshot is self-consistent: snapshot a live
 * histogram before asking for quantiles.
 *
 * A zero-filled struct sl_hist is a valid empty histogram.
 *
 * Memory: struct sl_hist is SL_HIST_NBUCKETS (2560) uint64_t counts plus five
 * counters: 20,520 bytes. Time slots (struct sl_hist_slot, below) are sparse
 * and much smaller.
 */
#ifndef SL_HISTOGRAM_H
#define SL_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

/* log2 of the number of buckets per power of two. */
#define SL_HIST_SUB_BITS  7
#define SL_HIST_SUB_COUNT (1u << SL_HIST_SUB_BITS)
/* Values are < 2^SL_HIST_TOP_BITS µs (~67.1 s). */
#define SL_HIST_TOP_BITS  26
#define SL_HIST_MAX_VALUE ((UINT64_C(1) << SL_HIST_TOP_BITS) - 1)
/* Values beyond this (12.7 days) are taken as this in sum, max and min. */
#define SL_HIST_SUM_MAX_VALUE (UINT64_C(1) << 40)
#define SL_HIST_NBUCKETS                                                       \
	((SL_HIST_TOP_BITS - SL_HIST_SUB_BITS + 1) * SL_HIST_SUB_COUNT)

struct sl_hist {
	uint64_t count;   /* values recorded */
	uint64_t sum;     /* sum of recorded values (not clamped), µs */
	uint64_t max;     /* largest recorded value; 0 when empty */
	uint64_t min_inv; /* ~smallest value; 0 when empty (zeroed is valid) */
	uint64_t clamped; /* values above SL_HIST_MAX_VALUE */
	uint64_t counts[SL_HIST_NBUCKETS];
};

/*
 * A sparse, compact copy of the difference between two snapshots, for the
 * control thread's ring of short time slots. Built and read by one thread
 * (never on the hot path); it owns buf (heap).
 *
 * Encoding of buf: for each non-empty bucket in increasing order, a LEB128
 * varint of (index - previous index - 1), then a LEB128 varint of the count:
 * about 2 bytes per non-empty bucket. The header is 40 bytes; the buffer is
 * reused from slot to slot and kept within 1.5 times the encoded size.
 * Encoded size of one 1 s slot, and of a ring of 600 (one version):
 *
 *   latency distribution        req/s  buckets  bytes  600 slots
 *   lognormal, median 2 ms, s=0.5  1k     345     691   0.42 MiB
 *                                 100k     665    1604   0.94 MiB
 *   lognormal, median 20 ms, s=1.5 1k     633    1267   0.75 MiB
 *                                  10k    1375    2750   1.60 MiB
 *                                 100k    1824    3876   2.24 MiB
 *   log-uniform 1 us - 60 s        10k    2408    4820   2.78 MiB
 *
 * Worst case, every bucket non-empty: 2560 * 3 bytes = 7.5 KiB per slot
 * (4.4 MiB per 600 slots) while counts stay below 2^14, 10 KiB below 2^21.
 * A dense uint32 array of the same layout would be 10 KiB per slot always.
 */
struct sl_hist_slot {
	uint64_t count;   /* values in the slot */
	uint64_t sum;     /* their sum, µs */
	uint64_t clamped; /* of which above SL_HIST_MAX_VALUE */
	uint64_t lo, hi;  /* bounds of its values: bucket edges, kept within
	                     the whole histogram's exact min and max */
	uint32_t len;     /* bytes of buf in use */
	uint32_t cap;     /* bytes allocated */
	uint8_t *buf;     /* encoded buckets, see above */
};

/* Bucket index of a value in µs (clamped to SL_HIST_MAX_VALUE). */
static inline size_t
sl_hist_index(uint64_t usec)
{
	unsigned int mag, shift;

	if (usec > SL_HIST_MAX_VALUE)
		usec = SL_HIST_MAX_VALUE;
	mag = 63 - (unsigned int)__builtin_clzll(usec | SL_HIST_SUB_COUNT);
	shift = mag - SL_HIST_SUB_BITS;
	return ((size_t)shift << SL_HIST_SUB_BITS) + (size_t)(usec >> shift);
}

/*
 * Record n values of usec µs. Only the thread that owns h may call this; it
 * never allocates, locks or does an atomic read-modify-write.
 */
static inline void
sl_hist_record_n(struct sl_hist *h, uint64_t usec, uint64_t n)
{
	uint64_t *c;

	/* Only the bucket is clamped: sum, max and min keep the value (up
	 * to 2^40 µs, 12 days, so that no bogus time can wrap the sum). */
	if (__builtin_expect(usec > SL_HIST_MAX_VALUE, 0)) {
		if (usec > SL_HIST_SUM_MAX_VALUE)
			usec = SL_HIST_SUM_MAX_VALUE;
		c = &h->counts[SL_HIST_NBUCKETS - 1];
		__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
		    __ATOMIC_RELAXED);
		/* After the bucket: a reader sees no more clamped than
		 * counted. */
		__atomic_store_n(&h->clamped,
		    __atomic_load_n(&h->clamped, __ATOMIC_RELAXED) + n,
		    __ATOMIC_RELAXED);
	} else {
		c = &h->counts[sl_hist_index(usec)];
		__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
		    __ATOMIC_RELAXED);
	}
	__atomic_store_n(&h->count,
	    __atomic_load_n(&h->count, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum,
	    __atomic_load_n(&h->sum, __ATOMIC_RELAXED) + usec * n,
	    __ATOMIC_RELAXED);
	if (usec > __atomic_load_n(&h->max, __ATOMIC_RELAXED))
		__atomic_store_n(&h->max, usec, __ATOMIC_RELAXED);
	if (~usec > __atomic_load_n(&h->min_inv, __ATOMIC_RELAXED))
		__atomic_store_n(&h->min_inv, ~usec, __ATOMIC_RELAXED);
}

/* Record one value of usec µs; see sl_hist_record_n(). */
static inline void
sl_hist_record(struct sl_hist *h, uint64_t usec)
{
	sl_hist_record_n(h, usec, 1);
}

/* Empty h. Not safe while another thread records into h. */
void sl_hist_reset(struct sl_hist *h);

/*
 * Copy live, which its owner may be recording into, to out (owned by the
 * caller). Every field of out is at least its value in any earlier snapshot
 * of live taken by the same thread. out->count is recomputed from the buckets
 * so that quantiles are self-consistent; sum may be a few values ahead or
 * behind.
 */
void sl_hist_snapshot(const struct sl_hist *live, struct sl_hist *out);

/* Add src into dst (dst = dst + src). dst must not be recorded into. */
void sl_hist_merge(struct sl_hist *dst, const struct sl_hist *src);

/*
 * dst = a - b, where a and b are cumulative snapshots of one histogram taken
 * at t2 and t1 (t1 <= t2): the values recorded in between. max and min cannot
 * be subtracted: dst->max is the upper bound of the highest non-empty bucket
 * and dst->min the lower bound of the lowest (both kept within a's min/max).
 * dst may alias a or b. Returns -1 if b is not an earlier state of a (some
 * counter of b is larger; that difference is taken as 0), 0 otherwise.
 */
int sl_hist_sub(
    struct sl_hist *dst, const struct sl_hist *a, const struct sl_hist *b);

/*
 * The largest value of WINDOW, a part of a histogram whose exact largest
 * value since start is WHOLE_MAX (the part made by sl_hist_sub() or from
 * slots, so its own max is only its highest bucket's upper edge), as
 * /stats reports it: the value a quantile reports for that bucket, its
 * midpoint (floored to the µs), within 0.39% of the window's true largest
 * value; never below the window's min nor above WHOLE_MAX. When the window
 * holds values above SL_HIST_MAX_VALUE, whose bucket says nothing of them,
 * WHOLE_MAX itself: at least the window's largest value, and exactly it when
 * the window holds the largest since start. 0 when the window is empty.
 */
uint64_t sl_hist_window_max(const struct sl_hist *window, uint64_t whole_max);

/* Number of values recorded. */
uint64_t sl_hist_count(const struct sl_hist *h);

/* Sum of values recorded, µs; one above SL_HIST_MAX_VALUE with its true
 * value (only its bucket is clamped). */
uint64_t sl_hist_sum(const struct sl_hist *h);

/* Number of values that were above SL_HIST_MAX_VALUE (in the top bucket). */
uint64_t sl_hist_clamped(const struct sl_hist *h);

/* Mean of the values recorded in µs; 0 when empty. */
double sl_hist_mean(const struct sl_hist *h);

/* Largest value recorded in µs; 0 when empty. */
uint64_t sl_hist_max(const struct sl_hist *h);

/* Smallest value recorded in µs; 0 when empty. */
uint64_t sl_hist_min(const struct sl_hist *h);

/*
 * The q-quantile (q in [0, 1], clamped) in µs: the value of nearest rank
 * max(1, ceil(q * count)), reported as the midpoint of its bucket and kept
 * within [min, max]. Relative error <= 0.39%. 0 when empty.
 */
double sl_hist_quantile(const struct sl_hist *h, double q);

/*
 * Number of values <= le_seconds, for Prometheus' cumulative buckets. Never
 * counts a value above le: a bucket counts only when its upper edge is
 * <= le, so the values of the bucket straddling le (those within one
 * bucket width, < 0.78%, below le) are counted from the next higher le on.
 * Exact when le is a bucket's upper edge or at least max. Non-decreasing in
 * le_seconds; 0 below min and equal to count from max on.
 */
uint64_t sl_hist_cumulative_le(const struct sl_hist *h, double le_seconds);

/* sl_hist_cumulative_le() of each of the N bounds LE (seconds, ascending)
 * into OUT, in one pass over the buckets. */
void sl_hist_cumulative(
    const struct sl_hist *h, const double *le, size_t n, uint64_t *out);

/* Smallest value in µs that falls in bucket i (i < SL_HIST_NBUCKETS). */
uint64_t sl_hist_bucket_lo(size_t i);

/* Largest value in µs that falls in bucket i (i < SL_HIST_NBUCKETS). */
uint64_t sl_hist_bucket_hi(size_t i);

/* Value in µs reported for bucket i: the midpoint of lo and hi. */
double sl_hist_bucket_mid(size_t i);

/* Make slot empty, owning no memory. */
void sl_hist_slot_init(struct sl_hist_slot *slot);

/* Release the memory slot owns; it is empty afterwards. */
void sl_hist_slot_free(struct sl_hist_slot *slot);

/*
 * Set slot to now - prev, two snapshots of one histogram (see sl_hist_sub()),
 * reusing slot's buffer when it fits. Returns 0, or -1 if memory ran out or
 * prev is not an earlier state of now; slot is empty then.
 */
int sl_hist_slot_from_delta(struct sl_hist_slot *slot,
    const struct sl_hist *now, const struct sl_hist *prev);

/*
 * Add slot's values into h (owned by the calling thread, not recorded into).
 * max/min of h grow to cover the slot's highest/lowest buckets (upper/lower
 * bounds). Returns 0, or -1 if slot's encoding is corrupt (h may then hold
 * part of it).
 */
int sl_hist_add_slot(struct sl_hist *h, const struct sl_hist_slot *slot);

/* Bytes of memory slot uses, header included. */
size_t sl_hist_slot_bytes(const struct sl_hist_slot *slot);

#endif /* SL_HISTOGRAM_H */

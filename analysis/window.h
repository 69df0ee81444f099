/*
 * window.h — per-version time series: a ring of one-second slots, so that
 * any window of the last SL_WINDOW_SLOTS seconds can be asked for.
 *
 * The control thread harvests each version's cumulative totals (summed over
 * the workers) once a second; a slot holds the difference from the
 * previous harvest: the counters, and the latency histogram as a sparse
 * delta (analysis/histogram.h, struct sl_hist_slot). Memory per version:
 * one cumulative copy (~20 KiB) plus, per slot, 176 bytes and the sparse
 * histogram delta (about 2 bytes per non-empty bucket: 0.7–4 KiB at
 * realistic rates) — 0.5 to 2.5 MiB for ten minutes.
 */
#ifndef SL_WINDOW_H
#define SL_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "analysis/stats.h"

#define SL_WINDOW_SLOTS 600 /* ten minutes at one-second resolution */

struct sl_series;

/* A new, empty series (aborts on allocation failure: control thread). */
struct sl_series *sl_series_new(void);
void sl_series_free(struct sl_series *s);

/*
 * Record TOTAL, the cumulative totals at wall-clock second NOW_SEC, as a
 * new slot holding the difference from the previous harvest. MOVED is
 * the sum of sl_vstats_moved() over the workers' live counters read
 * before TOTAL was (sl_series_moved() compares the next one with it):
 * whatever a worker was recording while TOTAL was read makes the next
 * sum differ, and the next harvest merges it.
 */
void sl_series_harvest(struct sl_series *s, const struct sl_vstats *total,
    uint64_t moved, int64_t now_sec);

/*
 * Could the totals now differ from those of S's last harvest? SIG is the
 * sum of sl_vstats_moved() over the workers' live counters, ACTIVE the sum
 * of their active (read after the last harvest). False: nothing moved,
 * and sl_series_harvest_still() records the second.
 */
bool sl_series_moved(const struct sl_series *s, uint64_t sig, int64_t active);

/* As sl_series_harvest() for a second in which nothing moved: an empty
 * slot (its histogram buffers freed), the totals as they were. */
void sl_series_harvest_still(struct sl_series *s, int64_t now_sec);

/*
 * Sum the slots of the last SECONDS seconds (up to the last harvest) into
 * OUT, which is overwritten. Returns the seconds actually covered (less
 * than asked when the series is younger).
 */
uint32_t sl_series_window(
    const struct sl_series *s, uint32_t seconds, struct sl_vstats *out);

/*
 * As sl_series_window(), and the current partial second too: LIVE, the
 * cumulative totals read now (after the last harvest, by the harvesting
 * thread), minus those at the last harvest, so that what happened since
 * the last harvest is in the window. OUT's active is LIVE's. Returns the
 * whole seconds the slots cover; the window covers that and the time
 * since the last harvest, which the caller knows.
 */
uint32_t sl_series_window_live(const struct sl_series *s, uint32_t seconds,
    const struct sl_vstats *live, struct sl_vstats *out);

/* Cumulative totals at the last harvest. */
const struct sl_vstats *sl_series_total(const struct sl_series *s);

/* Bytes this series uses, for the docs and /metrics. */
size_t sl_series_bytes(const struct sl_series *s);

#endif

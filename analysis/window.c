/*
 * window.c — the ring of one-second slots behind "the last N seconds".
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/window.h"
#include "conf/xmalloc.h"

struct slot {
	int64_t sec; /* 0: never filled */
#define SL_X(f, fam, l, lv, h) uint64_t f;
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	struct sl_hist_slot hist;
	struct sl_hist_slot hist_unjudged; /* latency_unjudged's */
};

/*
 * A version at rest has no ring: it is allocated when the version's
 * counters first move, and freed once a whole ring of seconds has passed
 * without a move (every slot empty). A version that gets no traffic (one
 * at 0%, the blue of a cut-over) then costs its totals alone, 44 KiB,
 * not 236 KiB: at 2,500 versions, half a gigabyte.
 */
struct sl_series {
	struct sl_vstats total; /* at the last harvest */
	uint64_t moved; /* the workers' sl_vstats_moved() before total */
	bool have_total;
	int64_t first_sec; /* the first harvest: it starts the series */
	int64_t last_sec;
	int64_t moved_sec;  /* the last harvest whose counters moved */
	size_t next;        /* ring index of the next slot to fill */
	struct slot *slots; /* SL_WINDOW_SLOTS, or NULL: every second empty */
};

/* A new series. */
struct sl_series *
sl_series_new(void)
{
	return sl_xcalloc(1, sizeof(struct sl_series));
}

/* Free S's ring, and its slots' histogram buffers. */
static void
ring_free(struct sl_series *s)
{
	size_t i;

	if (s->slots == NULL)
		return;
	for (i = 0; i < SL_WINDOW_SLOTS; i++) {
		sl_hist_slot_free(&s->slots[i].hist);
		sl_hist_slot_free(&s->slots[i].hist_unjudged);
	}
	free(s->slots);
	s->slots = NULL;
	s->next = 0;
}

/* A ring for S, its slots up to the last harvest empty ones: a window
 * covers the same seconds as if they had been there all along. */
static void
ring_new(struct sl_series *s)
{
	int64_t back = s->last_sec - s->first_sec + 1, k;

	s->slots = sl_xcalloc(SL_WINDOW_SLOTS, sizeof *s->slots);
	s->next = 0;
	if (back > SL_WINDOW_SLOTS - 1)
		back = SL_WINDOW_SLOTS - 1;
	for (k = 1; k <= back; k++)
		s->slots[SL_WINDOW_SLOTS - k].sec = s->last_sec - k + 1;
}

void
sl_series_free(struct sl_series *s)
{
	if (s == NULL)
		return;
	ring_free(s);
	free(s);
}

/* Add a slot: TOTAL minus the previous total. */
void
sl_series_harvest(struct sl_series *s, const struct sl_vstats *total,
    uint64_t moved, int64_t now_sec)
{
	struct slot *slot;

	if (!s->have_total) {
		/* The first harvest has no "before": it starts the series,
		 * and its slot (had it one) would be empty. */
		s->first_sec = now_sec;
	} else if (moved == s->moved && s->slots == NULL) {
		/* Only active changed: the second is empty. */
	} else {
		if (s->slots == NULL)
			ring_new(s);
		slot = &s->slots[s->next];
#define SL_X(f, fam, l, lv, h) slot->f = total->f - s->total.f;
		SL_VSTATS_ALL(SL_X)
#undef SL_X
		if (sl_hist_slot_from_delta(
		        &slot->hist, &total->latency, &s->total.latency) != 0)
			sl_hist_slot_from_delta(&slot->hist, &s->total.latency,
			    &s->total.latency); /* empty: counters went back */
		if (sl_hist_slot_from_delta(&slot->hist_unjudged,
		        &total->latency_unjudged,
		        &s->total.latency_unjudged) != 0)
			sl_hist_slot_from_delta(&slot->hist_unjudged,
			    &s->total.latency_unjudged,
			    &s->total.latency_unjudged);
		slot->sec = now_sec;
		s->next = (s->next + 1) % SL_WINDOW_SLOTS;
		if (moved != s->moved)
			s->moved_sec = now_sec;
	}
	s->total = *total;
	s->moved = moved;
	s->have_total = true;
	s->last_sec = now_sec;
}

bool
sl_series_moved(const struct sl_series *s, uint64_t sig, int64_t active)
{
	return !s->have_total || sig != s->moved || active != s->total.active;
}

void
sl_series_harvest_still(struct sl_series *s, int64_t now_sec)
{
	struct slot *slot;

	s->last_sec = now_sec;
	if (s->slots == NULL)
		return;
	if (now_sec - s->moved_sec >= SL_WINDOW_SLOTS) {
		/* The last move is out of every window. */
		ring_free(s);
		return;
	}
	slot = &s->slots[s->next];
#define SL_X(f, fam, l, lv, h) slot->f = 0;
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	sl_hist_slot_free(&slot->hist);
	sl_hist_slot_free(&slot->hist_unjudged);
	slot->sec = now_sec;
	s->next = (s->next + 1) % SL_WINDOW_SLOTS;
}

/* Sum the slots newer than last_sec - SECONDS into OUT. */
uint32_t
sl_series_window(
    const struct sl_series *s, uint32_t seconds, struct sl_vstats *out)
{
	int64_t oldest = s->last_sec, start;
	size_t i;

	memset(out, 0, sizeof *out);
	out->active = s->total.active;
	if (!s->have_total)
		return 0;
	if (seconds > SL_WINDOW_SLOTS)
		seconds = SL_WINDOW_SLOTS;
	if (s->slots == NULL) /* every second empty */
		return s->last_sec - s->first_sec < seconds
		    ? (uint32_t)(s->last_sec - s->first_sec)
		    : seconds;
	for (i = 0; i < SL_WINDOW_SLOTS; i++) {
		const struct slot *slot = &s->slots[i];

		if (slot->sec == 0 || slot->sec <= s->last_sec - seconds)
			continue;
		if (slot->sec < oldest)
			oldest = slot->sec;
#define SL_X(f, fam, l, lv, h) out->f += slot->f;
		SL_VSTATS_ALL(SL_X)
#undef SL_X
		sl_hist_add_slot(&out->latency, &slot->hist);
		sl_hist_add_slot(&out->latency_unjudged, &slot->hist_unjudged);
	}
	/* The window covers from the harvest before the oldest slot; the
	 * series' first slot is that harvest itself and covers nothing (it
	 * was counted as a second: early rates read low). */
	start = oldest > s->first_sec ? oldest - 1 : s->first_sec;
	return (uint32_t)(s->last_sec - start) < seconds
	    ? (uint32_t)(s->last_sec - start)
	    : seconds;
}

/* The slots of the last SECONDS and LIVE's difference from the last
 * harvest, into OUT. */
uint32_t
sl_series_window_live(const struct sl_series *s, uint32_t seconds,
    const struct sl_vstats *live, struct sl_vstats *out)
{
	static __thread struct sl_hist part; /* 20 KiB: not on the stack */
	uint32_t covered = sl_series_window(s, seconds, out);

	out->active = live->active;
	if (!s->have_total)
		return covered;
#define SL_X(f, fam, l, lv, h) out->f += sl_stat_since(live->f, s->total.f);
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	/* Every field of a later read of the same counters is at least the
	 * earlier one's; if not, the histogram's part is left out. */
	if (sl_hist_sub(&part, &live->latency, &s->total.latency) == 0)
		sl_hist_merge(&out->latency, &part);
	if (sl_hist_sub(&part, &live->latency_unjudged,
	        &s->total.latency_unjudged) == 0)
		sl_hist_merge(&out->latency_unjudged, &part);
	return covered;
}

/* Totals at the last harvest. */
const struct sl_vstats *
sl_series_total(const struct sl_series *s)
{
	return &s->total;
}

/* Memory used by S. */
size_t
sl_series_bytes(const struct sl_series *s)
{
	size_t n = sizeof *s, i;

	if (s->slots == NULL)
		return n;
	n += SL_WINDOW_SLOTS * sizeof *s->slots;
	for (i = 0; i < SL_WINDOW_SLOTS; i++)
		n += s->slots[i].hist.cap + s->slots[i].hist_unjudged.cap;
	return n;
}

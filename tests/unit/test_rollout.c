/*
 * test_rollout.c — the rollout state machine: every transition, every
 * operator command in every state, step timing and pauses.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "analysis/rollout.h"
#include "conf/conf.h"

static uint32_t steps3[] = {1000, 5000, 10000}; /* 10 50 100 */

/* A rollout config: steps 10 50 100, step_time 10 s, interval 1 s. */
static void
conf3(struct sl_rollout_conf *rc)
{
	memset(rc, 0, sizeof *rc);
	rc->present = true;
	rc->steps = steps3;
	rc->nsteps = 3;
	rc->step_time_ms = 10000;
	rc->interval_ms = 1000;
	rc->min_requests = 100;
	rc->max_error_rate = 0.01;
	rc->max_latency_ratio = 1.5;
	rc->latency_quantile = 0.99;
}

static struct sl_rollout *
start(uint64_t now_ms)
{
	struct sl_rollout_conf rc;
	struct sl_rollout *ro;
	char err[128];

	conf3(&rc);
	ro = sl_rollout_new(
	    "shop", "green", "blue", &rc, 1000, now_ms, err, sizeof err);
	assert_non_null(ro);
	return ro;
}

static struct sl_judgement
verdict(enum sl_decision d)
{
	struct sl_judgement j;

	memset(&j, 0, sizeof j);
	j.decision = d;
	snprintf(j.summary, sizeof j.summary, "%s", sl_decision_name(d));
	return j;
}

static void
test_start_state(void **state)
{
	struct sl_rollout *ro = start(0);

	assert_int_equal(ro->state, SL_RO_RUNNING);
	assert_int_equal(sl_rollout_weight(ro), 1000);
	assert_int_equal(ro->step, 0);
	assert_false(sl_rollout_final(ro));
	assert_null(sl_rollout_last_verdict(ro));
	sl_rollout_free(ro);
}

/* A canary that already has users begins at the first step at or above
 * its weight; above every step but 100 there is nothing to begin. */
static void
test_begin_at_canary_weight(void **state)
{
	static const struct {
		uint32_t weight;
		int rc;
		uint32_t step;
	} cases[] = {{0, 0, 0}, {1000, 0, 0}, {1001, 0, 1}, {2000, 0, 1},
	    {5000, 0, 1}, {5001, -1, 0}, {10000, -1, 0}};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sl_rollout *ro = start(0);

		assert_int_equal(
		    sl_rollout_begin_at(ro, cases[i].weight), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_int_equal(ro->step, cases[i].step);
			assert_int_equal(
			    sl_verdict_seq_step(ro->seq), cases[i].step);
		}
		sl_rollout_free(ro);
	}
}

static void
test_bad_conf(void **state)
{
	struct sl_rollout_conf rc;
	char err[128] = "";

	conf3(&rc);
	rc.nsteps = 0;
	assert_null(sl_rollout_new("s", "c", "b", &rc, 0, 0, err, sizeof err));
	assert_true(strlen(err) > 0);
	conf3(&rc);
	rc.max_error_rate = 2.0; /* invalid verdict parameter */
	assert_null(sl_rollout_new("s", "c", "b", &rc, 0, 0, err, sizeof err));
}

/* PASS before step_time holds; PASS after it advances. */
static void
test_pass_advances_after_step_time(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);

	assert_int_equal(sl_rollout_on_verdict(ro, &p, 1, 5000), SL_RA_NONE);
	assert_int_equal(ro->step, 0);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 10000), SL_RA_SET_WEIGHT);
	assert_int_equal(ro->step, 1);
	assert_int_equal(sl_rollout_weight(ro), 5000);
	/* The step clock restarted. */
	assert_int_equal(sl_rollout_step_elapsed(ro, 10000), 0);
	assert_int_equal(ro->verdict_counts[SL_PASS], 2);
	sl_rollout_free(ro);
}

/* The next step is 100%: passing step 2 promotes. */
static void
test_promote_at_last_step_below_100(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);

	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 10000), SL_RA_SET_WEIGHT);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 2, 20000), SL_RA_PROMOTE);
	assert_int_equal(ro->state, SL_RO_PROMOTED);
	assert_true(sl_rollout_final(ro));
	assert_int_equal(ro->ended, 2);
	/* The step's clock stopped at the end (step 2 began at 10 s). */
	assert_int_equal(sl_rollout_step_elapsed(ro, 999999), 10000);
	/* Verdicts after the end are ignored. */
	assert_int_equal(sl_rollout_on_verdict(ro, &p, 3, 30000), SL_RA_NONE);
	sl_rollout_free(ro);
}

/* Steps that end below 100% promote after the last one. */
static void
test_promote_after_last_step(void **state)
{
	struct sl_rollout_conf rc;
	struct sl_rollout *ro;
	struct sl_judgement p = verdict(SL_PASS);
	uint32_t s[] = {2500};
	char err[64];

	conf3(&rc);
	rc.steps = s;
	rc.nsteps = 1;
	ro = sl_rollout_new("s", "c", "b", &rc, 0, 0, err, sizeof err);
	assert_non_null(ro);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 10000), SL_RA_PROMOTE);
	sl_rollout_free(ro);
}

static void
test_fail_reverts_at_once(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement f = verdict(SL_FAIL);

	assert_int_equal(sl_rollout_on_verdict(ro, &f, 5, 100), SL_RA_REVERT);
	assert_int_equal(ro->state, SL_RO_REVERTED);
	assert_non_null(strstr(ro->reason, "fail"));
	assert_int_equal(ro->verdict_counts[SL_FAIL], 1);
	assert_non_null(sl_rollout_last_verdict(ro));
	sl_rollout_free(ro);
}

static void
test_inconclusive_waits(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement i = verdict(SL_INCONCLUSIVE);

	for (int k = 0; k < 100; k++)
		assert_int_equal(
		    sl_rollout_on_verdict(ro, &i, k, 1000u * k), SL_RA_NONE);
	assert_int_equal(ro->state, SL_RO_RUNNING);
	assert_int_equal(ro->step, 0);
	assert_int_equal(ro->nverdicts, SL_ROLLOUT_KEEP_VERDICTS);
	sl_rollout_free(ro);
}

/* Paused time does not count toward step_time; verdicts are ignored. */
static void
test_pause_resume_timing(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);
	char err[128];

	assert_int_equal(
	    sl_rollout_pause(ro, 4000, err, sizeof err), SL_RA_NONE);
	assert_int_equal(ro->state, SL_RO_PAUSED);
	assert_int_equal(sl_rollout_on_verdict(ro, &p, 1, 20000), SL_RA_NONE);
	assert_int_equal(
	    sl_rollout_resume(ro, 30000, err, sizeof err), SL_RA_NONE);
	/* 4 s before the pause, 2 s after: 6 s < 10 s. */
	assert_int_equal(sl_rollout_step_elapsed(ro, 32000), 6000);
	assert_int_equal(sl_rollout_on_verdict(ro, &p, 1, 32000), SL_RA_NONE);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 36000), SL_RA_SET_WEIGHT);
	sl_rollout_free(ro);
}

/*
 * Warm-up: warming during the first warmup of each step (pauses excluded)
 * and at the first look after it, which begins the window; never without
 * warmup; again at the next step.
 */
static void
test_warmup(void **state)
{
	struct sl_rollout_conf rc;
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);
	char err[128];

	/* Off by default: the first look is judged. */
	assert_false(sl_rollout_warming(ro, 1000));
	sl_rollout_free(ro);

	conf3(&rc);
	rc.warmup_ms = 3000;
	ro = sl_rollout_new(
	    "shop", "green", "blue", &rc, 1000, 0, err, sizeof err);
	assert_non_null(ro);
	assert_true(sl_rollout_warming(ro, 1000));
	assert_true(sl_rollout_warming(ro, 2000));
	/* Paused for 10 s: 2.5 s of the step so far, still warming. */
	assert_int_equal(
	    sl_rollout_pause(ro, 2000, err, sizeof err), SL_RA_NONE);
	assert_false(sl_rollout_warming(ro, 5000)); /* paused: no looks */
	assert_int_equal(
	    sl_rollout_resume(ro, 12000, err, sizeof err), SL_RA_NONE);
	assert_true(sl_rollout_warming(ro, 12500));
	/* 3 s into the step: the look that begins the window. */
	assert_true(sl_rollout_warming(ro, 13000));
	assert_false(sl_rollout_warming(ro, 14000));
	assert_false(sl_rollout_warming(ro, 15000));
	/* The next step warms up again. */
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 20000), SL_RA_SET_WEIGHT);
	assert_true(sl_rollout_warming(ro, 21000));
	assert_true(sl_rollout_warming(ro, 23500));
	assert_false(sl_rollout_warming(ro, 24000));
	sl_rollout_free(ro);
}

/*
 * A look that lands a few ms before step_time ends the step (looks follow
 * the timer's schedule, the step's clock the look that began it); one
 * more than a tenth of the interval early does not. It used to hold the
 * step for one more look about half the time.
 */
static void
test_step_time_slack(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);

	assert_int_equal(sl_rollout_look_slack(1000), 100);
	assert_int_equal(sl_rollout_look_slack(10000), 1000);
	assert_int_equal(sl_rollout_look_slack(60000), 1000);
	/* step_time 10 s, interval 1 s: slack 100 ms. */
	assert_int_equal(sl_rollout_on_verdict(ro, &p, 1, 9899), SL_RA_NONE);
	assert_int_equal(ro->step, 0);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 9997), SL_RA_SET_WEIGHT);
	assert_int_equal(ro->step, 1);
	sl_rollout_free(ro);
}

/* Every operator command in every state. */
static void
test_commands_in_every_state(void **state)
{
	enum sl_rollout_state states[] = {SL_RO_RUNNING, SL_RO_PAUSED,
	    SL_RO_PROMOTED, SL_RO_REVERTED, SL_RO_ABORTED};
	char err[128];
	size_t i;

	for (i = 0; i < 5; i++) {
		struct sl_rollout *ro;
		enum sl_rollout_state s = states[i];
		bool final = s >= SL_RO_PROMOTED;
		int r;

		/* pause */
		ro = start(0);
		ro->state = s;
		r = sl_rollout_pause(ro, 1, err, sizeof err);
		assert_int_equal(r, s == SL_RO_RUNNING ? SL_RA_NONE : -1);
		assert_int_equal(
		    ro->state, s == SL_RO_RUNNING ? SL_RO_PAUSED : s);
		sl_rollout_free(ro);
		/* resume */
		ro = start(0);
		ro->state = s;
		r = sl_rollout_resume(ro, 1, err, sizeof err);
		assert_int_equal(r, s == SL_RO_PAUSED ? SL_RA_NONE : -1);
		assert_int_equal(
		    ro->state, s == SL_RO_PAUSED ? SL_RO_RUNNING : s);
		sl_rollout_free(ro);
		/* abort */
		ro = start(0);
		ro->state = s;
		r = sl_rollout_abort(ro, 9, 9000, "operator", err, sizeof err);
		assert_int_equal(r, final ? -1 : SL_RA_REVERT);
		assert_int_equal(ro->state, final ? s : SL_RO_ABORTED);
		if (final)
			assert_non_null(strstr(err, "already"));
		sl_rollout_free(ro);
		/* promote */
		ro = start(0);
		ro->state = s;
		r = sl_rollout_promote(ro, 9, 9000, err, sizeof err);
		assert_int_equal(r, final ? -1 : SL_RA_PROMOTE);
		assert_int_equal(ro->state, final ? s : SL_RO_PROMOTED);
		sl_rollout_free(ro);
	}
}

/* A restored rollout resumes at its step with a fresh window. */
static void
test_restore(void **state)
{
	struct sl_rollout *ro = start(0);
	struct sl_judgement p = verdict(SL_PASS);

	sl_rollout_restore(ro, SL_RO_RUNNING, 1, 0, 500, 2000, 50000);
	assert_int_equal(ro->step, 1);
	assert_int_equal(sl_rollout_weight(ro), 5000);
	assert_int_equal(ro->started, 500);
	assert_int_equal(sl_rollout_step_elapsed(ro, 50000), 0);
	/* Step 2 after one step: its window is the third. */
	assert_int_equal(sl_verdict_seq_segment(ro->seq), 2);
	assert_int_equal(sl_rollout_on_verdict(ro, &p, 1, 55000), SL_RA_NONE);
	assert_int_equal(
	    sl_rollout_on_verdict(ro, &p, 1, 60000), SL_RA_PROMOTE);
	sl_rollout_free(ro);

	ro = start(0);
	sl_rollout_restore(ro, SL_RO_PAUSED, 99, 0, 500, 2000, 50000);
	assert_int_equal(ro->step, 2); /* clamped to the last step */
	assert_int_equal(ro->state, SL_RO_PAUSED);
	sl_rollout_free(ro);

	/* Five windows begun before (resumes, restarts): the fresh one is
	 * the sixth's, whatever the step. */
	ro = start(0);
	sl_rollout_restore(ro, SL_RO_RUNNING, 1, 5, 500, 2000, 50000);
	assert_int_equal(sl_verdict_seq_segment(ro->seq), 6);
	sl_rollout_free(ro);

	/* Ended before the restart: how long its last step lasted is not
	 * known (it used to read as 0 s). */
	ro = start(0);
	sl_rollout_restore(ro, SL_RO_PROMOTED, 1, 0, 500, 2000, 50000);
	assert_true(
	    sl_rollout_step_elapsed(ro, 60000) == SL_ROLLOUT_ELAPSED_UNKNOWN);
	sl_rollout_free(ro);

	/* An ended rollout begins no window: it is saved again with the
	 * windows it had, not one more per restart. */
	ro = start(0);
	sl_rollout_restore(ro, SL_RO_REVERTED, 1, 7, 500, 2000, 50000);
	assert_int_equal(sl_verdict_seq_segment(ro->seq), 7);
	sl_rollout_free(ro);
}

/* Aborted while paused: the step's time excludes the pause. */
static void
test_ended_elapsed_excludes_pause(void **state)
{
	struct sl_rollout *ro = start(0);
	char err[128];

	assert_int_equal(
	    sl_rollout_pause(ro, 5000, err, sizeof err), SL_RA_NONE);
	assert_int_equal(
	    sl_rollout_abort(ro, 3605, 3605000, "operator", err, sizeof err),
	    SL_RA_REVERT);
	assert_int_equal(sl_rollout_step_elapsed(ro, 9999999), 5000);
	sl_rollout_free(ro);
}

static void
test_state_names(void **state)
{
	assert_string_equal(sl_rollout_state_name(SL_RO_RUNNING), "running");
	assert_string_equal(sl_rollout_state_name(SL_RO_REVERTED), "reverted");
	assert_string_equal(sl_rollout_state_name(SL_RO_ABORTED), "aborted");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_start_state),
	    cmocka_unit_test(test_begin_at_canary_weight),
	    cmocka_unit_test(test_bad_conf),
	    cmocka_unit_test(test_pass_advances_after_step_time),
	    cmocka_unit_test(test_promote_at_last_step_below_100),
	    cmocka_unit_test(test_promote_after_last_step),
	    cmocka_unit_test(test_fail_reverts_at_once),
	    cmocka_unit_test(test_inconclusive_waits),
	    cmocka_unit_test(test_pause_resume_timing),
	    cmocka_unit_test(test_warmup),
	    cmocka_unit_test(test_step_time_slack),
	    cmocka_unit_test(test_commands_in_every_state),
	    cmocka_unit_test(test_restore),
	    cmocka_unit_test(test_ended_elapsed_excludes_pause),
	    cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

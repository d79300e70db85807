/* test_kv_policy.c: rolling KV cache slot sequences (docs/DIT.md): fill in order, keep sinks,
 * round-robin oldest first, repeated starts rewrite the same slots, adaptive sink refresh,
 * RoPE frame reset before 50, and the calls the policy refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kv_policy.h"
#include "lg_base.h"

#define FT 16 /* tokens per frame */

static void expect(lg_kv_policy *p, int64_t frame, int n, const int *slots, int kv, int rope) {
  lg_kv_plan pl;
  assert_int_equal(lg_kv_policy_plan(p, frame * FT, FT, n, &pl), 0);
  assert_int_equal(pl.n, n);
  for (int j = 0; j < n; j++)
    assert_int_equal(pl.slot[j], slots[j]);
  assert_int_equal(pl.kv_frames, kv);
  assert_int_equal(pl.rope_start, rope);
}

static void test_fill_and_wrap(void **state) {
  (void)state;
  lg_kv_policy p;
  assert_int_equal(lg_kv_policy_init(&p, 4, 1, -1.0), 0);
  expect(&p, 0, 2, (int[]){0, 1}, 2, 0); /* first chunk: 2 latent frames */
  expect(&p, 2, 1, (int[]){2}, 3, 2);
  expect(&p, 3, 1, (int[]){3}, 4, 3); /* full */
  expect(&p, 4, 1, (int[]){1}, 4, 4); /* oldest non-sink; sink slot 0 kept */
  expect(&p, 5, 1, (int[]){2}, 4, 5);
  expect(&p, 6, 1, (int[]){3}, 4, 6);
  expect(&p, 7, 1, (int[]){1}, 4, 7);
  /* a two-frame chunk that wraps the ring */
  expect(&p, 8, 2, (int[]){2, 3}, 4, 8);
  expect(&p, 10, 2, (int[]){1, 2}, 4, 10);
}

static void test_no_sinks_and_t2v_blocks(void **state) {
  (void)state;
  lg_kv_policy p;
  assert_int_equal(lg_kv_policy_init(&p, 6, 3, -1.0), 0);
  expect(&p, 0, 3, (int[]){0, 1, 2}, 3, 0);
  expect(&p, 0, 3, (int[]){0, 1, 2}, 3, 0); /* same block again (next step) */
  expect(&p, 3, 3, (int[]){3, 4, 5}, 6, 3);
  expect(&p, 6, 3, (int[]){3, 4, 5}, 6, 6);
  assert_int_equal(lg_kv_policy_init(&p, 3, 0, -1.0), 0);
  expect(&p, 0, 2, (int[]){0, 1}, 2, 0);
  expect(&p, 2, 2, (int[]){2, 0}, 3, 2);
  expect(&p, 4, 1, (int[]){1}, 3, 4);
}

static void test_repeated_start(void **state) {
  (void)state;
  lg_kv_policy p;
  lg_kv_plan pl;
  assert_int_equal(lg_kv_policy_init(&p, 4, 1, -1.0), 0);
  expect(&p, 0, 2, (int[]){0, 1}, 2, 0);
  assert_int_equal(lg_kv_policy_plan(&p, 0, FT, 2, &pl), 0);
  assert_true(pl.repeat);
  assert_int_equal(pl.slot[0], 0);
  assert_int_equal(pl.slot[1], 1);
  expect(&p, 2, 1, (int[]){2}, 3, 2);
  expect(&p, 3, 1, (int[]){3}, 4, 3);
  expect(&p, 4, 1, (int[]){1}, 4, 4);
  expect(&p, 4, 1, (int[]){1}, 4, 4); /* the same chunk again: same slot, no advance */
  expect(&p, 4, 1, (int[]){1}, 4, 4);
  expect(&p, 5, 1, (int[]){2}, 4, 5);
  /* a start may jump ahead (frames skipped) */
  expect(&p, 9, 1, (int[]){3}, 4, 9);
}

static void test_refused(void **state) {
  (void)state;
  lg_kv_policy p;
  lg_kv_plan pl;
  lg_log_set_level(LG_LOG_ERROR);
  assert_int_equal(lg_kv_policy_init(&p, 4, 4, -1.0), LG_EINVAL); /* sinks must be < cap */
  assert_int_equal(lg_kv_policy_init(&p, 0, 0, -1.0), LG_EINVAL);
  assert_int_equal(lg_kv_policy_init(&p, 4, 1, -1.0), 0);
  assert_int_equal(lg_kv_policy_plan(&p, 5, FT, 1, &pl), LG_EINVAL); /* not a frame start */
  expect(&p, 3, 2, (int[]){0, 1}, 2, 3);
  assert_int_equal(lg_kv_policy_plan(&p, 3 * FT, FT, 1, &pl), LG_EINVAL); /* repeat, other n */
  assert_int_equal(lg_kv_policy_plan(&p, 2 * FT, FT, 1, &pl), LG_EINVAL); /* goes back */
  expect(&p, 5, 2, (int[]){2, 3}, 4, 5);
  /* 4 new frames cannot fit a ring of 3 non-sink slots */
  assert_int_equal(lg_kv_policy_plan(&p, 7 * FT, FT, 4, &pl), LG_EINVAL);
  lg_kv_policy_reset(&p);
  expect(&p, 0, 1, (int[]){0}, 1, 0); /* after reset: empty again, any start */
}

static void test_sink_refresh(void **state) {
  (void)state;
  lg_kv_policy p;
  lg_kv_plan pl;
  assert_int_equal(lg_kv_policy_init(&p, 5, 2, 0.5), 0);
  /* filling: frames in sink slots are never measured */
  assert_int_equal(lg_kv_policy_plan(&p, 0, FT, 2, &pl), 0);
  assert_int_equal(pl.measure_slot, -1);
  assert_int_equal(lg_kv_policy_plan(&p, 2 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.measure_slot, 2); /* first non-sink frame is measured */
  lg_kv_policy_observe(&p, &pl, (double[]){0.9, 0.8});
  assert_int_equal(p.pending_sink, -1); /* similar enough */
  assert_int_equal(lg_kv_policy_plan(&p, 3 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 3);
  lg_kv_policy_observe(&p, &pl, (double[]){0.9, 0.3}); /* sink 1 went stale */
  assert_int_equal(p.pending_sink, 1);
  /* not full yet: the next frame still fills an empty slot, the refresh waits */
  assert_int_equal(lg_kv_policy_plan(&p, 4 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 4);
  assert_int_equal(pl.kv_frames, 5);
  lg_kv_policy_observe(&p, &pl, (double[]){0.7, 0.2});
  /* full: the next new frame overwrites sink slot 1 instead of round-robin slot 2 */
  assert_int_equal(lg_kv_policy_plan(&p, 5 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 1);
  assert_int_equal(pl.measure_slot, -1); /* written into a sink: nothing to measure */
  /* the round-robin pointer did not move: the oldest non-sink (2) is next */
  assert_int_equal(lg_kv_policy_plan(&p, 6 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 2);
  assert_int_equal(pl.measure_slot, 2);
  lg_kv_policy_observe(&p, &pl, (double[]){0.1, 0.4}); /* lowest is sink 0 */
  /* a repeat of the same chunk measures again and its result replaces the pending choice */
  assert_int_equal(lg_kv_policy_plan(&p, 6 * FT, FT, 1, &pl), 0);
  assert_true(pl.repeat);
  assert_int_equal(pl.measure_slot, 2);
  lg_kv_policy_observe(&p, &pl, (double[]){0.6, 0.7});
  assert_int_equal(p.pending_sink, -1);
  assert_int_equal(lg_kv_policy_plan(&p, 7 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 3);
  lg_kv_policy_observe(&p, &pl, (double[]){0.1, 0.4});
  assert_int_equal(lg_kv_policy_plan(&p, 8 * FT, FT, 1, &pl), 0);
  assert_int_equal(pl.slot[0], 0);
  /* threshold <= 0 disables measuring */
  assert_int_equal(lg_kv_policy_init(&p, 5, 2, 0.0), 0);
  for (int f = 0; f < 8; f++) {
    assert_int_equal(lg_kv_policy_plan(&p, f * FT, FT, 1, &pl), 0);
    assert_int_equal(pl.measure_slot, -1);
  }
}

static void test_rope_reset(void **state) {
  (void)state;
  /* kv_frames 6: frame 50 -> 5, then counting up, next reset when 50 is reached again */
  assert_int_equal(lg_kv_rope_frame(0, 1, 6), 0);
  assert_int_equal(lg_kv_rope_frame(49, 1, 6), 49);
  assert_int_equal(lg_kv_rope_frame(50, 1, 6), 5);
  assert_int_equal(lg_kv_rope_frame(51, 1, 6), 6);
  assert_int_equal(lg_kv_rope_frame(94, 1, 6), 49);
  assert_int_equal(lg_kv_rope_frame(95, 1, 6), 5);
  assert_int_equal(lg_kv_rope_frame(1000, 1, 6), 5 + (1000 - 50) % 45);
  /* a chunk keeps its frames contiguous: the whole chunk shifts when its last would be 50 */
  assert_int_equal(lg_kv_rope_frame(48, 2, 6), 48);
  assert_int_equal(lg_kv_rope_frame(49, 2, 6), 4);
  assert_int_equal(lg_kv_rope_frame(49, 3, 4), 49 - 47);
  /* through the policy: start 50*FT with kv_frames 4 -> rope frame 3 */
  lg_kv_policy p;
  assert_int_equal(lg_kv_policy_init(&p, 4, 1, -1.0), 0);
  expect(&p, 50, 1, (int[]){0}, 1, 3);
  expect(&p, 60, 1, (int[]){1}, 2, 13);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fill_and_wrap),  cmocka_unit_test(test_no_sinks_and_t2v_blocks),
      cmocka_unit_test(test_repeated_start), cmocka_unit_test(test_refused),
      cmocka_unit_test(test_sink_refresh),   cmocka_unit_test(test_rope_reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

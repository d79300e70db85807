/* test_sched.c: the flow-matching scheduler (MODELS.md 3) against values worked out by hand:
 * the shifted sigma grid, nearest-timestep lookup, the Self-Forcing warp and bad shifts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flow_sched.h"
#include "lg_base.h"

#include <math.h>

static void test_grid_shift8(void **state) {
  (void)state;
  lg_flow_sched s;
  assert_int_equal(lg_flow_sched_init(&s, 8.0), 0);
  /* i = 0: sigma' = 1 -> sigma = 1, timestep 1000 */
  assert_true(fabs(s.sigma[0] - 1.0) < 1e-15);
  assert_true(fabs(s.timestep[0] - 1000.0) < 1e-12);
  /* i = 500: sigma' = 0.5 -> 8*0.5/(1+7*0.5) = 4/4.5 */
  assert_true(fabs(s.sigma[500] - 4.0 / 4.5) < 1e-15);
  /* i = 900: sigma' = 0.1 -> 0.8/1.7 */
  assert_true(fabs(s.sigma[900] - 0.8 / 1.7) < 1e-15);
  /* i = 999: sigma' = 0.001 -> 0.008/1.007 */
  assert_true(fabs(s.sigma[999] - 0.008 / 1.007) < 1e-15);
  for (int i = 1; i < LG_FLOW_STEPS; i++)
    assert_true(s.timestep[i] < s.timestep[i - 1]);
}

static void test_sigma_nearest(void **state) {
  (void)state;
  lg_flow_sched s;
  assert_int_equal(lg_flow_sched_init(&s, 8.0), 0);
  /* t = 700: grid neighbours i = 774 (sigma' 0.226 -> 1.808/2.582 = 0.70023, 0.23 away) and
   * i = 775 (sigma' 0.225 -> 1.8/2.575 = 0.69903, 0.97 away): the first is nearest */
  assert_int_equal(lg_flow_sched_index(&s, 700.0), 774);
  assert_true(fabs(lg_flow_sched_sigma(&s, 700.0) - 1.808 / 2.582) < 1e-12);
  /* 500: sigma 0.5 -> sigma' = 0.5/(8-3.5) = 0.1111 -> i = 888.9: i = 889 (s' 0.111 ->
   * 0.888/1.777 = 0.49972) vs 888 (s' 0.112 -> 0.896/1.784 = 0.50224): 889 is nearer */
  assert_int_equal(lg_flow_sched_index(&s, 500.0), 889);
  assert_true(fabs(lg_flow_sched_sigma(&s, 500.0) - 0.888 / 1.777) < 1e-12);
  assert_true(fabs(lg_flow_sched_sigma(&s, 1000.0) - 1.0) < 1e-15);
  assert_true(fabs(lg_flow_sched_sigma(&s, 5000.0) - 1.0) < 1e-15);
  /* t = 0 (clean cache pass) maps to the end of the grid */
  assert_int_equal(lg_flow_sched_index(&s, 0.0), 999);
}

static void test_warp_shift5(void **state) {
  (void)state;
  lg_flow_sched s;
  assert_int_equal(lg_flow_sched_init(&s, 5.0), 0);
  /* Self-Forcing: [1000, 750, 500, 250] -> [1000, 937.5, 833.33, 625] */
  assert_true(fabs(lg_flow_sched_warp(&s, 1000) - 1000.0) < 1e-9);
  assert_true(fabs(lg_flow_sched_warp(&s, 750) - 937.5) < 1e-9);
  assert_true(fabs(lg_flow_sched_warp(&s, 500) - 2500.0 / 3.0) < 1e-9);
  assert_true(fabs(lg_flow_sched_warp(&s, 250) - 625.0) < 1e-9);
  assert_true(lg_flow_sched_warp(&s, 0) == 0.0);
  /* unwarped step lists are used as they are: sigma of a warped step is its own grid sigma */
  assert_true(fabs(lg_flow_sched_sigma(&s, 937.5) - 0.9375) < 1e-12);
}

static void test_bad_shift(void **state) {
  (void)state;
  lg_flow_sched s;
  assert_int_equal(lg_flow_sched_init(&s, 0.0), LG_EINVAL);
  assert_int_equal(lg_flow_sched_init(&s, -1.0), LG_EINVAL);
  assert_int_equal(lg_flow_sched_init(&s, NAN), LG_EINVAL);
  /* shift 1 is the unshifted schedule */
  assert_int_equal(lg_flow_sched_init(&s, 1.0), 0);
  assert_true(fabs(s.sigma[250] - 0.75) < 1e-15);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grid_shift8),
      cmocka_unit_test(test_sigma_nearest),
      cmocka_unit_test(test_warp_shift5),
      cmocka_unit_test(test_bad_shift),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

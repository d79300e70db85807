/* test_umt5_golden.c: `livegen probe umt5` (lg_cmd_probe_umt5, CPU backend) against the
 * PyTorch reference's goldens in tests/fixtures/umt5 (made by
 * `python3 tests/ref/umt5_ref.py tests/fixtures/umt5` on the GPU machine): for n = 1, 23, 150
 * tokens, ctx [512, 64] matches with relative error < 1e-4 (max abs error over max |ref|) and
 * rows >= n are exactly zero. Test thread. */
#include "test_util.h"

#include "checkpoint.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX LG_SOURCE_DIR "/tests/fixtures/umt5"

static void check_case(int n) {
  char in[512], want[512], got[512];
  snprintf(in, sizeof in, "%s/umt5_in_%d.safetensors", FX, n);
  snprintf(want, sizeof want, "%s/umt5_out_%d.safetensors", FX, n);
  snprintf(got, sizeof got, "%s/test_umt5_golden_%d.safetensors", LG_BINARY_DIR, n);
  char *argv[] = {
      "umt5", "--model", FX "/umt5_tiny.safetensors", "--in", in, "--out", got, "--backend",
      "cpu",  NULL};
  assert_int_equal(lg_cmd_probe_umt5(9, argv), 0);
  char err[512];
  lg_ckpt *a = lg_ckpt_open(got, err, sizeof err), *b = lg_ckpt_open(want, err, sizeof err);
  if (!a || !b) fail_msg("open: %s", err);
  const lg_ckpt_tensor *ta = lg_ckpt_find(a, "ctx"), *tb = lg_ckpt_find(b, "ctx");
  assert_non_null(ta);
  assert_non_null(tb);
  assert_int_equal(ta->dtype, LG_F32);
  assert_int_equal(tb->dtype, LG_F32);
  assert_int_equal(ta->nbytes, 512 * 64 * 4);
  assert_int_equal(tb->nbytes, 512 * 64 * 4);
  const float *x = ta->data, *y = tb->data;
  double *ref = malloc(sizeof(double) * 512 * 64);
  assert_non_null(ref);
  for (int i = 0; i < 512 * 64; i++)
    ref[i] = y[i];
  double e = tu_rel_err(x, ref, 512 * 64);
  if (!(e < 1e-4)) fail_msg("n=%d: relative error %g >= 1e-4", n, e);
  for (int i = n * 64; i < 512 * 64; i++)
    if (x[i] != 0.0f) fail_msg("n=%d: row %d not zero", n, i / 64);
  free(ref);
  lg_ckpt_free(&a);
  lg_ckpt_free(&b);
  remove(got);
}

static void test_umt5_golden(void **state) {
  (void)state;
  check_case(1);
  check_case(23);
  check_case(150);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_umt5_golden)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_pt_fixtures.c: every tests/fixtures/pt/<name>.pt (written by the real torch.save through
 * tests/ref/make_pt_fixtures.py) must read as exactly the tensors of
 * <name>.expected.safetensors: same names (after mapping), dtypes, shapes and bytes.
 * Fails if the fixture folder is missing or empty. Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "checkpoint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LG_SOURCE_DIR
#error "LG_SOURCE_DIR must be defined (tests/CMakeLists.txt does)"
#endif

static void compare_one(const char *dir, const char *pt_name) {
  char pt[1024], ex[1024], err[512];
  snprintf(pt, sizeof pt, "%s/%s", dir, pt_name);
  size_t stem = strlen(pt_name) - 3;
  snprintf(ex, sizeof ex, "%s/%.*s.expected.safetensors", dir, (int)stem, pt_name);
  lg_ckpt *a = lg_ckpt_open(pt, err, sizeof err);
  if (!a) fail_msg("%s: %s", pt_name, err);
  lg_ckpt *b = lg_ckpt_open(ex, err, sizeof err);
  if (!b) fail_msg("expected file for %s: %s", pt_name, err);
  assert_string_equal(lg_ckpt_format(a), "pytorch");
  if (lg_ckpt_count(a) != lg_ckpt_count(b))
    fail_msg("%s: %d tensors, expected %d", pt_name, lg_ckpt_count(a), lg_ckpt_count(b));
  for (int i = 0; i < lg_ckpt_count(b); i++) {
    const lg_ckpt_tensor *e = lg_ckpt_at(b, i);
    const lg_ckpt_tensor *t = lg_ckpt_find(a, e->name);
    if (!t) fail_msg("%s: tensor '%s' missing", pt_name, e->name);
    if (t->dtype != e->dtype) fail_msg("%s: '%s' dtype differs", pt_name, e->name);
    if (t->ndim != e->ndim) fail_msg("%s: '%s' ndim %d != %d", pt_name, e->name, t->ndim, e->ndim);
    for (int d = 0; d < e->ndim; d++)
      if (t->shape[d] != e->shape[d]) fail_msg("%s: '%s' shape differs", pt_name, e->name);
    assert_int_equal(t->nbytes, e->nbytes);
    if (e->nbytes && memcmp(t->data, e->data, e->nbytes) != 0)
      fail_msg("%s: '%s' data differs", pt_name, e->name);
  }
  lg_ckpt_free(&a);
  lg_ckpt_free(&b);
}

static void test_pt_fixtures(void **state) {
  (void)state;
  const char *dir = LG_SOURCE_DIR "/tests/fixtures/pt";
  DIR *d = opendir(dir);
  if (!d)
    fail_msg("%s is missing: run `python3 tests/ref/make_pt_fixtures.py tests/fixtures/pt` "
             "on a machine with torch and commit the result",
             dir);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name);
    if (l > 3 && strcmp(de->d_name + l - 3, ".pt") == 0) {
      compare_one(dir, de->d_name);
      n++;
    }
  }
  closedir(d);
  if (n < 6) fail_msg("%s holds %d .pt fixtures, expected 6", dir, n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pt_fixtures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

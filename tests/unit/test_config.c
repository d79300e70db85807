/* test_config.c: YAML config parsing, validation, --set overrides and print/load roundtrip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "lg_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_defaults_valid(void **state) {
  (void)state;
  lg_config c;
  char err[512] = "";
  lg_config_defaults(&c);
  assert_int_equal(lg_config_validate(&c, err, sizeof err), 0);
  assert_string_equal(c.input, "test:ball");
  assert_int_equal(c.server.port, 8080);
  assert_string_equal(c.server.host, "127.0.0.1");
  assert_string_equal(c.model.dit, "tiny");
  assert_true(c.output.gpu_frames);
  assert_string_equal(c.model.context_weights, "host");
}

static void test_load_values(void **state) {
  (void)state;
  lg_config c;
  char err[512] = "";
  lg_config_defaults(&c);
  const char *y = "engine:\n  steps: 3\n  step_list: [900, 600, 300]\n  noise_scale: 0.5\n"
                  "  motion_noise: false\n  prompt: \"a cat\"\ninput: file:/tmp/x.mp4\n"
                  "server:\n  ice_servers: [\"stun:127.0.0.1:3478\"]\n"
                  "output:\n  gpu_frames: false\nmodel:\n  context_weights: device\n";
  assert_int_equal(lg_config_load_string(&c, y, "t.yaml", err, sizeof err), 0);
  assert_int_equal(c.engine.steps, 3);
  assert_int_equal(c.engine.n_step_list, 3);
  assert_int_equal(c.engine.step_list[2], 300);
  assert_true(c.engine.noise_scale == 0.5);
  assert_false(c.engine.motion_noise);
  assert_string_equal(c.engine.prompt, "a cat");
  assert_string_equal(c.input, "file:/tmp/x.mp4");
  assert_int_equal(c.server.n_ice_servers, 1);
  assert_false(c.output.gpu_frames);
  assert_string_equal(c.model.context_weights, "device");
  assert_int_equal(lg_config_validate(&c, err, sizeof err), 0);
}

static void expect_error(const char *yaml, const char *needle1, const char *needle2) {
  lg_config c;
  char err[512] = "";
  lg_config_defaults(&c);
  int rc = lg_config_load_string(&c, yaml, "bad.yaml", err, sizeof err);
  if (!rc) rc = lg_config_validate(&c, err, sizeof err);
  assert_true(rc < 0);
  if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2))) fail_msg("message: %s", err);
}

static void test_errors_name_file_line_key(void **state) {
  (void)state;
  expect_error("engine:\n  steps: 2\n  bogus: 1\n", "bad.yaml:3", "engine.bogus");
  expect_error("nosuch: 1\n", "bad.yaml:1", "nosuch");
  expect_error("engine:\n  steps: two\n", "bad.yaml:2", "engine.steps");
  expect_error("engine:\n  steps: 9\n", "out of range", "engine.steps");
  expect_error("engine:\n  noise_scale: [1]\n", "bad.yaml:2", "engine.noise_scale");
  expect_error("engine: 5\n", "bad.yaml:1", "engine");
  expect_error("engine:\n  width: 321\n", "multiples of 16", NULL);
  expect_error("engine:\n  steps: 4\n  step_list: [700, 500]\n", "step_list", NULL);
  expect_error("engine:\n  step_list: [500, 700]\n", "decreasing", NULL);
  expect_error("engine: {steps: 2\n", "bad.yaml", "syntax");
  expect_error("model:\n  decoder: vqgan\n", "model.decoder", NULL);
  expect_error("engine:\n  seed: -4\n", "engine.seed", NULL);
  expect_error("server:\n  ice_servers: [\"http://x\"]\n", "ice_servers", NULL);
}

static void test_set_overrides(void **state) {
  (void)state;
  lg_config c;
  char err[512] = "";
  lg_config_defaults(&c);
  assert_int_equal(lg_config_set(&c, "engine.steps=1", err, sizeof err), 0);
  assert_int_equal(c.engine.steps, 1);
  assert_int_equal(lg_config_set(&c, "server.port=9000", err, sizeof err), 0);
  assert_int_equal(c.server.port, 9000);
  assert_int_equal(lg_config_set(&c, "engine.step_list=[800, 100]", err, sizeof err), 0);
  assert_int_equal(c.engine.n_step_list, 2);
  assert_int_equal(c.engine.step_list[1], 100);
  assert_int_equal(lg_config_set(&c, "engine.prompt=a red fox, running", err, sizeof err), 0);
  assert_string_equal(c.engine.prompt, "a red fox, running");
  assert_true(lg_config_set(&c, "engine.nope=1", err, sizeof err) < 0);
  assert_non_null(strstr(err, "engine.nope"));
  assert_true(lg_config_set(&c, "engine.steps", err, sizeof err) < 0);
  assert_true(lg_config_set(&c, "server.port=70000", err, sizeof err) < 0);
}

static void test_from_args(void **state) {
  (void)state;
  char path[] = "/tmp/lg_cfg_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("engine:\n  steps: 3\ninput: test:smpte\n", f);
  fclose(f);
  char *argv[] = {"serve", "--config", path, "--set", "engine.steps=1", "--frames", "9", NULL};
  int argc = 7;
  lg_config c;
  char err[512] = "";
  assert_int_equal(lg_config_from_args(&c, &argc, argv, err, sizeof err), 0);
  assert_int_equal(c.engine.steps, 1); /* --set wins over the file */
  assert_string_equal(c.input, "test:smpte");
  assert_int_equal(argc, 3);
  assert_string_equal(argv[1], "--frames");
  assert_string_equal(argv[2], "9");
  unlink(path);
}

static void test_print_roundtrip(void **state) {
  (void)state;
  lg_config a, b;
  char err[512] = "";
  lg_config_defaults(&a);
  assert_int_equal(lg_config_set(&a, "engine.prompt=quote \" and \\ back", err, sizeof err), 0);
  assert_int_equal(lg_config_set(&a, "engine.noise_scale=0.65", err, sizeof err), 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(lg_config_print(&a, f), 0);
  fclose(f);
  lg_config_defaults(&b);
  if (lg_config_load_string(&b, buf, "printed", err, sizeof err)) fail_msg("%s\n%s", err, buf);
  free(buf);
  assert_string_equal(a.engine.prompt, b.engine.prompt);
  assert_true(a.engine.noise_scale == b.engine.noise_scale);
  assert_int_equal(a.engine.n_step_list, b.engine.n_step_list);
  assert_string_equal(a.server.host, b.server.host);
}

static void test_shipped_configs_valid(void **state) {
  (void)state;
  const char *files[] = {"default.yaml", "wan2.1-1.3b-v2v.yaml", "wan2.1-14b-v2v.yaml",
                         "wan2.1-1.3b-t2v.yaml"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/configs/%s", LG_SOURCE_DIR, files[i]);
    lg_config c;
    lg_config_defaults(&c);
    if (lg_config_load(&c, path, err, sizeof err) || lg_config_validate(&c, err, sizeof err))
      fail_msg("%s: %s", files[i], err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_valid),
      cmocka_unit_test(test_load_values),
      cmocka_unit_test(test_errors_name_file_line_key),
      cmocka_unit_test(test_set_overrides),
      cmocka_unit_test(test_from_args),
      cmocka_unit_test(test_print_roundtrip),
      cmocka_unit_test(test_shipped_configs_valid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

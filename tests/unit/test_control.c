/* test_control.c: control messages as a user of /ws/control and POST /api/v1/params sends
 * them: valid params are applied all at once and acknowledged with the new params and the
 * request's id; malformed JSON, wrong types, out-of-range values, unknown types and fields,
 * oversize messages get an error answer naming the problem and change nothing; pause,
 * resume, reset, input and status reach the service; the status JSON has every documented
 * field. Main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "control.h"
#include "lg_base.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fake service recording what the ops were asked to do. */
typedef struct fake {
  lg_ctl_params cur;
  int n_set, n_reset, n_pause;
  char input[LG_CTL_INPUT_MAX];
  bool refuse_input;
} fake;

static int f_set_params(void *user, const lg_ctl_params *p, unsigned has, lg_ctl_params *now,
                        char *err, size_t errn) {
  (void)err;
  (void)errn;
  fake *f = user;
  if (has & LG_CTL_HAS_PROMPT) strcpy(f->cur.prompt, p->prompt);
  if (has & LG_CTL_HAS_STRENGTH) f->cur.strength = p->strength;
  if (has & LG_CTL_HAS_STEPS) f->cur.steps = p->steps;
  if (has & LG_CTL_HAS_SEED) f->cur.seed = p->seed;
  if (has & LG_CTL_HAS_BLEND) f->cur.blend = p->blend;
  f->n_set++;
  *now = f->cur;
  return 0;
}
static int f_set_paused(void *user, bool paused, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  fake *f = user;
  f->cur.paused = paused;
  f->n_pause++;
  *now = f->cur;
  return 0;
}
static int f_reset(void *user, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  fake *f = user;
  f->n_reset++;
  *now = f->cur;
  return 0;
}
static int f_set_input(void *user, const char *input, lg_ctl_params *now, char *err, size_t errn) {
  fake *f = user;
  if (f->refuse_input) {
    snprintf(err, errn, "unknown input kind");
    return LG_EINVAL;
  }
  strcpy(f->input, input);
  *now = f->cur;
  return 0;
}
static void f_get_status(void *user, lg_ctl_status *st) {
  fake *f = user;
  strcpy(st->state, "running");
  st->params = f->cur;
  strcpy(st->input, "test:smpte");
  st->fps_in = 16;
  st->fps_out = 15.5;
  st->latency_ms = 120;
  st->dropped = 3;
  st->frames_in = 100;
  st->frames_out = 90;
  st->viewers = 2;
  st->ttff_s = 1.25;
  strcpy(st->gpu_name, "cpu");
  strcpy(st->dit, "tiny");
  strcpy(st->decoder, "taehv");
  st->width = 64;
  st->height = 48;
}

static fake g_f;
static lg_control_ops g_ops;

static int setup(void **state) {
  (void)state;
  memset(&g_f, 0, sizeof g_f);
  strcpy(g_f.cur.prompt, "start");
  g_f.cur.strength = 0.5;
  g_f.cur.steps = 2;
  g_f.cur.seed = 1;
  g_f.cur.blend = 1.0;
  g_ops = (lg_control_ops){&g_f, f_set_params, f_set_paused, f_reset, f_set_input, f_get_status};
  return 0;
}

/* Sends msg and returns the parsed answer (caller decrefs); *rc gets lg_ctl_handle's code. */
static json_t *send_msg(const char *msg, int default_type, int *rc) {
  char out[LG_CTL_ANSWER_MAX];
  *rc = lg_ctl_handle(&g_ops, msg, strlen(msg), default_type, out, sizeof out);
  json_error_t je;
  json_t *a = json_loads(out, 0, &je);
  if (!a) fail_msg("answer is not JSON: '%s' (%s)", out, je.text);
  return a;
}

static void expect_error(const char *msg, const char *words) {
  lg_ctl_params before = g_f.cur;
  int n_set = g_f.n_set;
  int rc;
  json_t *a = send_msg(msg, -1, &rc);
  assert_true(rc < 0);
  assert_string_equal(json_string_value(json_object_get(a, "type")), "error");
  const char *m = json_string_value(json_object_get(a, "message"));
  assert_non_null(m);
  if (!strstr(m, words)) fail_msg("message '%s' for '%.80s' lacks '%s'", m, msg, words);
  assert_int_equal(g_f.n_set, n_set); /* nothing applied */
  assert_memory_equal(&before, &g_f.cur, sizeof before);
  json_decref(a);
}

static void test_params_ack(void **state) {
  (void)state;
  int rc;
  json_t *a = send_msg("{\"type\":\"params\",\"prompt\":\"a red fox\",\"strength\":0.7,"
                       "\"steps\":3,\"seed\":5,\"blend\":0.5,\"id\":\"x1\"}",
                       -1, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(json_string_value(json_object_get(a, "type")), "ack");
  assert_string_equal(json_string_value(json_object_get(a, "id")), "x1");
  json_t *p = json_object_get(a, "params");
  assert_string_equal(json_string_value(json_object_get(p, "prompt")), "a red fox");
  assert_true(json_real_value(json_object_get(p, "strength")) == 0.7);
  assert_int_equal(json_integer_value(json_object_get(p, "steps")), 3);
  assert_int_equal(json_integer_value(json_object_get(p, "seed")), 5);
  assert_true(json_real_value(json_object_get(p, "blend")) == 0.5);
  assert_true(json_is_false(json_object_get(p, "paused")));
  json_decref(a);
  assert_string_equal(g_f.cur.prompt, "a red fox");
  assert_int_equal(g_f.cur.steps, 3);

  /* A subset changes only that field; integer strength and numeric id are fine. */
  a = send_msg("{\"type\":\"params\",\"strength\":1,\"id\":42}", -1, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(json_integer_value(json_object_get(a, "id")), 42);
  json_decref(a);
  assert_true(g_f.cur.strength == 1.0);
  assert_string_equal(g_f.cur.prompt, "a red fox");

  /* No id -> null id. Unicode prompts survive. */
  a = send_msg("{\"type\":\"params\",\"prompt\":\"caf\\u00e9 \xe2\x9c\x93\"}", -1, &rc);
  assert_int_equal(rc, 0);
  assert_true(json_is_null(json_object_get(a, "id")));
  json_decref(a);
  assert_string_equal(g_f.cur.prompt, "caf\xc3\xa9 \xe2\x9c\x93");

  /* POST /api/v1/params: no type needed. */
  a = send_msg("{\"seed\":9007199254740991}", LG_CTL_PARAMS, &rc);
  assert_int_equal(rc, 0);
  json_decref(a);
  assert_true(g_f.cur.seed == 9007199254740991ULL);
}

static void test_bad_messages(void **state) {
  (void)state;
  expect_error("{\"type\":\"params\",\"strength\":", "malformed JSON");
  expect_error("not json", "malformed JSON");
  expect_error("[1,2]", "object");
  expect_error("\"params\"", "malformed JSON"); /* not an object at the top */
  expect_error("{\"prompt\":\"x\"}", "missing \"type\"");
  expect_error("{\"type\":\"dance\"}", "unknown type");
  expect_error("{\"type\":7}", "must be a string");
  expect_error("{\"type\":\"params\",\"strength\":1.5}", "strength");
  expect_error("{\"type\":\"params\",\"strength\":-0.1}", "strength");
  expect_error("{\"type\":\"params\",\"strength\":\"0.5\"}", "strength must be a number");
  expect_error("{\"type\":\"params\",\"steps\":0}", "steps");
  expect_error("{\"type\":\"params\",\"steps\":5}", "steps");
  expect_error("{\"type\":\"params\",\"steps\":2.5}", "steps must be an integer");
  expect_error("{\"type\":\"params\",\"seed\":-1}", "seed");
  expect_error("{\"type\":\"params\",\"seed\":9007199254740992}", "seed");
  expect_error("{\"type\":\"params\",\"blend\":61}", "blend");
  expect_error("{\"type\":\"params\",\"prompt\":5}", "prompt must be a string");
  expect_error("{\"type\":\"params\",\"prompt\":null}", "prompt must be a string");
  expect_error("{\"type\":\"params\",\"strength\":0.5,\"colour\":\"red\"}", "unknown field");
  expect_error("{\"type\":\"pause\",\"prompt\":\"x\"}", "unknown field");
  expect_error("{\"type\":\"params\",\"id\":{\"a\":1}}", "id must be");
  expect_error("{\"type\":\"params\",\"steps\":1,\"steps\":2}", "malformed JSON"); /* dup key */
  expect_error("{\"type\":\"params\",\"prompt\":\"a\\u0000b\"}", "malformed JSON");
  expect_error("{\"type\":\"input\"}", "input must be a string");
  expect_error("{\"type\":\"input\",\"input\":\"\"}", "input must be");
  /* Valid params but one bad field: all or nothing. */
  expect_error("{\"type\":\"params\",\"prompt\":\"never\",\"steps\":9}", "steps");
  assert_string_equal(g_f.cur.prompt, "start");

  /* The id is echoed in errors too. */
  int rc;
  json_t *a = send_msg("{\"type\":\"params\",\"steps\":7,\"id\":\"q\"}", -1, &rc);
  assert_string_equal(json_string_value(json_object_get(a, "id")), "q");
  json_decref(a);

  /* The /api/v1/params endpoint refuses other types. */
  a = send_msg("{\"type\":\"reset\"}", LG_CTL_PARAMS, &rc);
  assert_true(rc < 0);
  assert_int_equal(g_f.n_reset, 0);
  json_decref(a);
}

static void test_limits(void **state) {
  (void)state;
  /* Prompt of exactly 2047 bytes is fine, 2048 is not. */
  size_t n = 2047;
  char *msg = malloc(LG_CTL_MSG_MAX + 64);
  strcpy(msg, "{\"type\":\"params\",\"prompt\":\"");
  size_t off = strlen(msg);
  memset(msg + off, 'a', n);
  strcpy(msg + off + n, "\"}");
  int rc;
  json_t *a = send_msg(msg, -1, &rc);
  assert_int_equal(rc, 0);
  json_decref(a);
  assert_int_equal(strlen(g_f.cur.prompt), 2047);
  memset(msg + off, 'b', n + 1);
  strcpy(msg + off + n + 1, "\"}");
  expect_error(msg, "prompt is too long");

  /* Over 64 KiB: refused before parsing. */
  memset(msg + off, ' ', LG_CTL_MSG_MAX);
  strcpy(msg + off + LG_CTL_MSG_MAX, "\"}");
  expect_error(msg, "too large");

  /* A prompt of 2047 characters that all need escaping still fits an answer. */
  strcpy(msg, "{\"type\":\"params\",\"prompt\":\"");
  off = strlen(msg);
  for (size_t i = 0; i < 1023; i++)
    memcpy(msg + off + 2 * i, "\\\"", 2);
  strcpy(msg + off + 2046, "\"}");
  a = send_msg(msg, -1, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(
      strlen(json_string_value(json_object_get(json_object_get(a, "params"), "prompt"))), 1023);
  json_decref(a);
  free(msg);

  /* Empty and NULL messages. */
  char out[LG_CTL_ANSWER_MAX];
  assert_true(lg_ctl_handle(&g_ops, "", 0, -1, out, sizeof out) < 0);
  assert_non_null(strstr(out, "\"error\""));
}

static void test_commands(void **state) {
  (void)state;
  int rc;
  json_t *a = send_msg("{\"type\":\"pause\",\"id\":\"p\"}", -1, &rc);
  assert_int_equal(rc, 0);
  assert_true(json_is_true(json_object_get(json_object_get(a, "params"), "paused")));
  json_decref(a);
  a = send_msg("{\"type\":\"resume\"}", -1, &rc);
  assert_int_equal(rc, 0);
  assert_true(json_is_false(json_object_get(json_object_get(a, "params"), "paused")));
  json_decref(a);
  assert_int_equal(g_f.n_pause, 2);
  a = send_msg("{\"type\":\"reset\"}", -1, &rc);
  assert_int_equal(rc, 0);
  json_decref(a);
  assert_int_equal(g_f.n_reset, 1);
  a = send_msg("{\"type\":\"input\",\"input\":\"test:ball\"}", -1, &rc);
  assert_int_equal(rc, 0);
  json_decref(a);
  assert_string_equal(g_f.input, "test:ball");
  /* The service's refusal is relayed as an error with its words. */
  g_f.refuse_input = true;
  a = send_msg("{\"type\":\"input\",\"input\":\"gopher://x\"}", -1, &rc);
  assert_true(rc < 0);
  assert_string_equal(json_string_value(json_object_get(a, "type")), "error");
  assert_string_equal(json_string_value(json_object_get(a, "message")), "unknown input kind");
  json_decref(a);
  assert_string_equal(g_f.input, "test:ball");
}

static void test_status(void **state) {
  (void)state;
  int rc;
  json_t *a = send_msg("{\"type\":\"status\",\"id\":\"s\"}", -1, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(json_string_value(json_object_get(a, "type")), "status");
  assert_string_equal(json_string_value(json_object_get(a, "id")), "s");
  assert_string_equal(json_string_value(json_object_get(a, "state")), "running");
  assert_string_equal(json_string_value(json_object_get(a, "input")), "test:smpte");
  json_t *p = json_object_get(a, "params");
  const char *pk[] = {"prompt", "strength", "steps", "seed", "blend", "paused"};
  for (size_t i = 0; i < 6; i++)
    assert_non_null(json_object_get(p, pk[i]));
  json_t *st = json_object_get(a, "stats");
  const char *sk[] = {"fps_in",    "fps_out",    "latency_ms", "dropped",
                      "frames_in", "frames_out", "viewers",    "ttff_s"};
  for (size_t i = 0; i < 8; i++)
    assert_true(json_is_number(json_object_get(st, sk[i])));
  assert_int_equal(json_integer_value(json_object_get(st, "dropped")), 3);
  assert_int_equal(json_integer_value(json_object_get(st, "viewers")), 2);
  assert_true(json_real_value(json_object_get(st, "fps_out")) == 15.5);
  json_t *g = json_object_get(a, "gpu");
  assert_string_equal(json_string_value(json_object_get(g, "name")), "cpu");
  assert_true(json_is_number(json_object_get(g, "mem_used_mb")));
  assert_true(json_is_number(json_object_get(g, "mem_total_mb")));
  json_t *m = json_object_get(a, "model");
  assert_string_equal(json_string_value(json_object_get(m, "dit")), "tiny");
  assert_string_equal(json_string_value(json_object_get(m, "decoder")), "taehv");
  assert_int_equal(json_integer_value(json_object_get(m, "width")), 64);
  assert_int_equal(json_integer_value(json_object_get(m, "height")), 48);
  json_decref(a);

  /* The bare object for GET /api/v1/status has no type. */
  lg_ctl_status s;
  memset(&s, 0, sizeof s);
  f_get_status(&g_f, &s);
  char out[LG_CTL_ANSWER_MAX];
  assert_true(lg_ctl_format_status(&s, NULL, NULL, out, sizeof out) > 0);
  a = json_loads(out, 0, NULL);
  assert_non_null(a);
  assert_null(json_object_get(a, "type"));
  json_decref(a);
  assert_int_equal(lg_ctl_format_status(&s, NULL, NULL, out, 16), LG_ERANGE);
}

/* Random bytes and mangled valid messages: always exactly one error or ack answer that is
 * valid JSON, never a crash, and the service state only changes through valid messages. */
static void test_garbage(void **state) {
  (void)state;
  lg_rng r;
  lg_rng_seed(&r, 1234);
  const char *valid = "{\"type\":\"params\",\"prompt\":\"x\",\"strength\":0.5,\"steps\":2,"
                      "\"seed\":3,\"blend\":1,\"id\":\"a\"}";
  char msg[256];
  char out[LG_CTL_ANSWER_MAX];
  for (int it = 0; it < 20000; it++) {
    size_t n;
    if (it % 2) {
      n = (size_t)(lg_rng_next(&r) % sizeof msg);
      for (size_t i = 0; i < n; i++)
        msg[i] = (char)lg_rng_next(&r);
    } else {
      n = strlen(valid);
      memcpy(msg, valid, n);
      int flips = 1 + (int)(lg_rng_next(&r) % 3);
      for (int k = 0; k < flips; k++)
        msg[lg_rng_next(&r) % n] = (char)(lg_rng_next(&r) % 128);
    }
    int rc = lg_ctl_handle(&g_ops, msg, n, -1, out, sizeof out);
    json_t *a = json_loads(out, 0, NULL);
    if (!a) fail_msg("answer not JSON for iteration %d: %s", it, out);
    const char *t = json_string_value(json_object_get(a, "type"));
    assert_non_null(t);
    assert_true(rc == 0 ? (!strcmp(t, "ack") || !strcmp(t, "status")) : !strcmp(t, "error"));
    json_decref(a);
    assert_true(g_f.cur.steps >= 1 && g_f.cur.steps <= 4);
    assert_true(g_f.cur.strength >= 0 && g_f.cur.strength <= 1);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_params_ack, setup),
      cmocka_unit_test_setup(test_bad_messages, setup),
      cmocka_unit_test_setup(test_limits, setup),
      cmocka_unit_test_setup(test_commands, setup),
      cmocka_unit_test_setup(test_status, setup),
      cmocka_unit_test_setup(test_garbage, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

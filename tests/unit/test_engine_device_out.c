/* test_engine_device_out.c: lg_engine_push_device, the engine call `serve` uses when output
 * frames stay on the GPU, on the CPU backend with the tiny random models: it hands over the same
 * frames, in the same number per chunk and bit for bit, as lg_engine_push downloads (v2v and
 * t2v), as [1,H,W,3] U8 views on the engine's backend numbered 0.. per chunk; max_out caps it;
 * a sink error stops the chunk and is returned. The sink "enqueues" a copy into its own buffer
 * on the backend, as serve's does. Test thread only. */
#include "test_util.h"

#include "config.h"
#include "engine.h"
#include "testsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W = 64, H = 64, PX = W * H * 3, SLOTS = 16 };

static char g_dir[256];
static uint8_t g_in[5][PX], g_host[SLOTS][PX], g_dev[SLOTS][PX];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_engine_dev_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static lg_engine *engine(const char *const *sets) {
  lg_config c;
  char err[512] = "";
  lg_config_defaults(&c);
  const char *base[] = {"engine.backend=cpu", "engine.threads=1", "engine.width=64",
                        "engine.height=64", NULL};
  for (int i = 0; base[i]; i++)
    assert_int_equal(lg_config_set(&c, base[i], err, sizeof err), 0);
  snprintf(c.model.cache_dir, sizeof c.model.cache_dir, "%s", g_dir);
  for (int i = 0; sets && sets[i]; i++)
    if (lg_config_set(&c, sets[i], err, sizeof err)) fail_msg("%s: %s", sets[i], err);
  if (lg_config_validate(&c, err, sizeof err)) fail_msg("validate: %s", err);
  lg_engine *e = lg_engine_new(&c, err, sizeof err);
  if (!e) fail_msg("engine: %s", err);
  return e;
}

/* The caller's frames on the engine's backend, as serve's device ring slots. */
typedef struct sink {
  lg_backend *be;
  lg_tensor buf; /* [SLOTS,H,W,3] U8 */
  int calls, next_i, fail_at;
  bool shape_ok, same_backend;
} sink;

static int take(void *user, int i, const lg_tensor *frame) {
  sink *s = user;
  s->calls++;
  if (s->fail_at >= 0 && s->calls > s->fail_at) return LG_EIO;
  if (!(frame->dtype == LG_U8 && frame->ndim == 4 && frame->ne[0] == 1 && frame->ne[1] == H &&
        frame->ne[2] == W && frame->ne[3] == 3))
    s->shape_ok = false;
  if (frame->be != s->be) s->same_backend = false;
  assert_int_equal(i, s->next_i);
  s->next_i++;
  lg_tensor dst = lg_tensor_narrow(&s->buf, 0, i, 1);
  return LG_OP(s->be, copy, &dst, frame); /* enqueued on the backend's stream */
}

/* Pushes `chunks` chunks of the same test pattern into two engines of the same config, one
 * through lg_engine_push, one through lg_engine_push_device, and compares every chunk. */
static void compare(const char *const *sets, int chunks, int total_min) {
  lg_engine *eh = engine(sets), *ed = engine(sets);
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "test:ball", W, H), 0);
  sink s = {.be = lg_engine_backend(ed), .fail_at = -1, .shape_ok = true, .same_backend = true};
  int64_t shape[4] = {SLOTS, H, W, 3};
  assert_int_equal(lg_tensor_alloc(s.be, &s.buf, LG_U8, 4, shape), 0);
  int total = 0;
  for (int c = 0; c < chunks; c++) {
    int need = lg_engine_frames_needed(eh);
    assert_int_equal(lg_engine_frames_needed(ed), need);
    const uint8_t *in[5];
    uint8_t *out[SLOTS];
    for (int i = 0; i < need; i++) {
      lg_testsrc_next(&src, g_in[i]);
      in[i] = g_in[i];
    }
    for (int i = 0; i < SLOTS; i++)
      out[i] = g_host[i];
    int nh = lg_engine_push(eh, need ? in : NULL, need, out, SLOTS);
    s.next_i = 0;
    s.calls = 0;
    int nd = lg_engine_push_device(ed, need ? in : NULL, need, take, &s, SLOTS);
    assert_true(nh >= 0);
    assert_int_equal(nd, nh);
    assert_int_equal(s.calls, nd);
    assert_int_equal(lg_tensor_download(&s.buf, g_dev), 0); /* syncs the backend */
    for (int i = 0; i < nd; i++)
      assert_memory_equal(g_dev[i], g_host[i], PX);
    total += nd;
  }
  assert_true(s.shape_ok);
  assert_true(s.same_backend);
  assert_true(total >= total_min);
  lg_engine_stats st;
  lg_engine_get_stats(ed, &st);
  assert_int_equal(st.frames_out, (uint64_t)total);
  lg_tensor_free(&s.buf);
  lg_engine_free(&eh);
  lg_engine_free(&ed);
}

static void test_v2v_same_frames_as_push(void **state) {
  (void)state;
  /* 5, 0, 4, 4 frames */
  compare((const char *[]){"engine.steps=2", NULL}, 4, 13);
}

static void test_t2v_same_frames_as_push(void **state) {
  (void)state;
  /* blocks of 9 then 12 frames */
  compare((const char *[]){"engine.mode=t2v", "engine.steps=4", "engine.shift=5",
                           "engine.step_list=[1000,750,500,250]", NULL},
          2, 21);
}

static void test_max_out_and_sink_error(void **state) {
  (void)state;
  lg_engine *e = engine((const char *[]){"engine.steps=1", NULL});
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "test:ball", W, H), 0);
  sink s = {.be = lg_engine_backend(e), .fail_at = -1, .shape_ok = true, .same_backend = true};
  int64_t shape[4] = {SLOTS, H, W, 3};
  assert_int_equal(lg_tensor_alloc(s.be, &s.buf, LG_U8, 4, shape), 0);
  const uint8_t *in[5];
  for (int i = 0; i < 5; i++) {
    lg_testsrc_next(&src, g_in[i]);
    in[i] = g_in[i];
  }
  assert_int_equal(lg_engine_push_device(e, in, 5, NULL, NULL, SLOTS), LG_EINVAL);
  /* the first chunk has 5 frames; max_out 3 hands over 3 */
  assert_int_equal(lg_engine_push_device(e, in, 5, take, &s, 3), 3);
  assert_int_equal(s.calls, 3);
  /* the sink fails on its second frame: the chunk stops with that error */
  for (int i = 0; i < 4; i++)
    lg_testsrc_next(&src, g_in[i]);
  s.calls = 0;
  s.next_i = 0;
  s.fail_at = 1;
  assert_int_equal(lg_engine_push_device(e, in, 4, take, &s, SLOTS), LG_EIO);
  assert_int_equal(s.calls, 2);
  lg_tensor_free(&s.buf);
  lg_engine_free(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v2v_same_frames_as_push),
      cmocka_unit_test(test_t2v_same_frames_as_push),
      cmocka_unit_test(test_max_out_and_sink_error),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_engine_stages.c: the whole engine (VAE encode -> DiT -> VAE decode) with the DiT
 * pipelined over in-process stages (engine.stages, pipeline/dit_runner.h) on the CPU backend,
 * with a tiny random 6-layer DiT. What a user would notice: 2 and 3 stages give the same frames,
 * bit for bit and in order, as 1 stage, only later (the ring's extra lag of (stages-1)*steps
 * chunks), across a reset and a steps change (the ring restarts); t2v and a DiT with fewer
 * layers than stages are refused with a message; engine.stages / engine.gpus values are
 * checked by the config. Adaptive sink refresh is off (engine.adapt_sink -1): with it the ring
 * refreshes sinks later than one stage does (docs/MULTIGPU.md). */
#include "test_util.h"

#include "checkpoint.h"
#include "config.h"
#include "engine.h"
#include "model_spec.h"
#include "testsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LAYERS = 6, W = 64, H = 48, PX = W * H * 3, SLOTS = 16, MAXF = 400 };

static char g_dir[256], g_ckpt[300];
static uint8_t g_in[5][PX], g_out[SLOTS][PX];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_engine_stages_XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  snprintf(g_ckpt, sizeof g_ckpt, "%s/dit6.safetensors", g_dir);
  tu_write_tiny_dit(g_ckpt, LAYERS, 7); /* random, seed 7 */
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Config: CPU, 1 thread, 64x48, the 6-layer DiT, no adaptive sinks, plus `sets`. 0 or the
 * validation error (message in err). */
static int config(lg_config *c, const char *const *sets, char *err, size_t n) {
  lg_config_defaults(c);
  const char *base[] = {"engine.backend=cpu", "engine.threads=1",     "engine.width=64",
                        "engine.height=48",   "engine.adapt_sink=-1", NULL};
  for (int i = 0; base[i]; i++)
    assert_int_equal(lg_config_set(c, base[i], err, n), 0);
  snprintf(c->model.cache_dir, sizeof c->model.cache_dir, "%s", g_dir);
  snprintf(c->model.dit, sizeof c->model.dit, "%s", g_ckpt);
  for (int i = 0; sets && sets[i]; i++) {
    int rc = lg_config_set(c, sets[i], err, n);
    if (rc) return rc;
  }
  return lg_config_validate(c, err, n);
}

static int push(lg_engine *e, lg_testsrc *src) {
  int need = lg_engine_frames_needed(e);
  const uint8_t *in[5];
  uint8_t *out[SLOTS];
  for (int i = 0; i < need; i++) {
    lg_testsrc_next(src, g_in[i]);
    in[i] = g_in[i];
  }
  for (int i = 0; i < SLOTS; i++)
    out[i] = g_out[i];
  int n = lg_engine_push(e, in, need, out, SLOTS);
  assert_true(n >= 0);
  return n;
}

typedef struct seg {
  uint8_t *frames; /* MAXF frames */
  int n;
} seg;

/* Three segments on one engine: 12 chunks; reset, 9 chunks; steps 2 -> 3, 12 chunks. */
static void run(int stages, int balance, seg out[3]) {
  char err[512] = "", set[64], bal[64];
  snprintf(set, sizeof set, "engine.stages=%d", stages);
  snprintf(bal, sizeof bal, "engine.balance_ticks=%d", balance);
  const char *sets[] = {set, bal, NULL};
  lg_config c;
  if (config(&c, sets, err, sizeof err)) fail_msg("config: %s", err);
  lg_engine *e = lg_engine_new(&c, err, sizeof err);
  if (!e) fail_msg("engine with %d stages: %s", stages, err);
  lg_testsrc src;
  assert_int_equal(lg_testsrc_init(&src, "test:ball", W, H), 0);
  const int chunks[3] = {12, 9, 12};
  for (int s = 0; s < 3; s++) {
    out[s].frames = malloc((size_t)MAXF * PX);
    out[s].n = 0;
    if (s == 1) assert_int_equal(lg_engine_reset(e), 0);
    if (s == 2) {
      lg_engine_params p;
      lg_engine_get_params(e, &p);
      p.steps = 3;
      assert_int_equal(lg_engine_set_params(e, &p, err, sizeof err), 0);
      assert_int_equal(lg_engine_frames_needed(e), 5); /* the ring restarts */
    }
    for (int k = 0; k < chunks[s]; k++) {
      int n = push(e, &src);
      assert_true(out[s].n + n <= MAXF);
      memcpy(out[s].frames + (size_t)out[s].n * PX, g_out, (size_t)n * PX);
      out[s].n += n;
    }
  }
  lg_engine_free(&e);
}

static void test_stages_bit_exact_in_order(void **state) {
  (void)state;
  seg one[3], many[3];
  run(1, 0, one);
  /* frames per segment: 5 (first chunk) + 4 per later chunk once the batch (steps-1 chunks)
   * and the ring ((stages-1)*steps chunks) are full */
  const int chunks[3] = {12, 9, 12}, steps[3] = {2, 2, 3};
  for (int s = 0; s < 3; s++)
    assert_int_equal(one[s].n, 5 + 4 * (chunks[s] - 1 - (steps[s] - 1)));
  for (int n = 2; n <= 3; n++) {
    run(n, 0, many);
    for (int s = 0; s < 3; s++) {
      int lag = (n - 1) * steps[s];
      assert_int_equal(many[s].n, 5 + 4 * (chunks[s] - 1 - (steps[s] - 1) - lag));
      /* the same frames in the same order: a prefix of the single-stage output */
      assert_true(many[s].n > 5);
      assert_memory_equal(many[s].frames, one[s].frames, (size_t)many[s].n * PX);
      free(many[s].frames);
    }
  }
  /* the segments differ from each other (the reset and steps change did something) */
  assert_true(memcmp(one[0].frames + (size_t)5 * PX, one[2].frames + (size_t)5 * PX, PX) != 0);
  for (int s = 0; s < 3; s++)
    free(one[s].frames);
}

/* engine.balance_ticks: stage 0 times the batches (plus the engine's VAE time on rank 0),
 * computes target boundaries after 2 and moves layers (with their KV caches) between stages
 * mid-stream; the frames stay the same. */
static void test_balanced_stages_bit_exact(void **state) {
  (void)state;
  seg one[3], bal[3];
  run(1, 0, one);
  tu_log_capture(true);
  run(3, 2, bal);
  const char *log = tu_log_text();
  bool computed = strstr(log, "balance: target boundaries computed") != NULL;
  int moves = 0;
  for (const char *q = log; (q = strstr(q, " moves from layer ")) != NULL; q++)
    moves++;
  tu_log_capture(false);
  assert_true(computed);
  /* the VAE time on rank 0 makes stage 0 the slowest: layers move off it */
  printf("balanced run: %d boundary moves\n", moves);
  assert_true(moves > 0);
  for (int s = 0; s < 3; s++) {
    assert_true(bal[s].n > 5);
    assert_memory_equal(bal[s].frames, one[s].frames, (size_t)bal[s].n * PX);
    free(bal[s].frames);
    free(one[s].frames);
  }
}

static void test_refusals(void **state) {
  (void)state;
  char err[512] = "";
  lg_config c;
  /* t2v on stages */
  const char *t2v[] = {"engine.mode=t2v", "input=none", "engine.stages=2", NULL};
  assert_int_equal(config(&c, t2v, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "v2v only"));
  /* a config that skipped validation still meets the engine's check */
  c.engine.stages = 2;
  snprintf(c.engine.mode, sizeof c.engine.mode, "t2v");
  assert_null(lg_engine_new(&c, err, sizeof err));
  assert_non_null(strstr(err, "v2v only"));
  /* more stages than DiT layers: the tiny 2-layer DiT over 3 stages */
  const char *three[] = {"engine.stages=3", "model.dit=tiny", NULL};
  assert_int_equal(config(&c, three, err, sizeof err), 0);
  snprintf(c.model.dit, sizeof c.model.dit, "tiny");
  err[0] = 0;
  assert_null(lg_engine_new(&c, err, sizeof err));
  assert_non_null(strstr(err, "2 layers"));
  /* stages 0 / 9, stages with gpus, duplicate and out-of-range GPUs, gpus on the CPU backend */
  const char *z[] = {"engine.stages=0", NULL};
  assert_int_equal(config(&c, z, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "engine.stages"));
  const char *nine[] = {"engine.stages=9", NULL};
  assert_int_equal(config(&c, nine, err, sizeof err), LG_EINVAL);
  const char *both[] = {"engine.backend=auto", "engine.stages=2", "engine.gpus=[0,1]", NULL};
  assert_int_equal(config(&c, both, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "exclude"));
  const char *dup[] = {"engine.backend=auto", "engine.gpus=[0,1,0]", NULL};
  assert_int_equal(config(&c, dup, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "GPU 0 twice"));
  const char *big[] = {"engine.backend=auto", "engine.gpus=[0,64]", NULL};
  assert_int_equal(config(&c, big, err, sizeof err), LG_EINVAL);
  const char *cpu[] = {"engine.gpus=[0,1]", NULL};
  assert_int_equal(config(&c, cpu, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "CUDA backend"));
  const char *launch[] = {"engine.backend=auto", "engine.gpus=[0,1]", "engine.launch=mpi", NULL};
  assert_int_equal(config(&c, launch, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "engine.launch"));
}

/* --gpus on the command line of every config-taking command. */
static void test_gpus_option(void **state) {
  (void)state;
  char err[512] = "";
  lg_config c;
  char a0[] = "x", a1[] = "--gpus", a2[] = "2,0,1", a3[] = "--frames", a4[] = "3";
  char *argv[] = {a0, a1, a2, a3, a4, NULL};
  int argc = 5;
  assert_int_equal(lg_config_from_args(&c, &argc, argv, err, sizeof err), 0);
  assert_int_equal(c.engine.n_gpus, 3);
  assert_int_equal(c.engine.gpus[0], 2);
  assert_int_equal(c.engine.gpus[2], 1);
  assert_int_equal(argc, 3); /* --frames 3 left for the command */
  assert_string_equal(argv[1], "--frames");
  const char *bad[] = {"x", "0,", ",1", "0,,1", "-1", "0;1", "1,2,3,4,5,6,7,8,9", "", NULL};
  for (int i = 0; bad[i]; i++) {
    char b0[] = "x", b1[] = "--gpus", b2[32];
    snprintf(b2, sizeof b2, "%s", bad[i]);
    char *bv[] = {b0, b1, b2, NULL};
    int bc = 3;
    err[0] = 0;
    if (lg_config_from_args(&c, &bc, bv, err, sizeof err) != LG_EINVAL)
      fail_msg("--gpus '%s' accepted", bad[i]);
    assert_non_null(strstr(err, "--gpus"));
  }
  char d0[] = "x", d1[] = "--gpus=1,1";
  char *dv[] = {d0, d1, NULL};
  int dc = 2;
  assert_int_equal(lg_config_from_args(&c, &dc, dv, err, sizeof err), LG_EINVAL);
  assert_non_null(strstr(err, "twice"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_gpus_option),
      cmocka_unit_test(test_stages_bit_exact_in_order),
      cmocka_unit_test(test_balanced_stages_bit_exact),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

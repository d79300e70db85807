/* test_stages.c: the DiT pipelined over stages (pipeline/stages.h) with the in-process transport
 * on the CPU backend, each stage a thread with its own backend and its own copy of a tiny
 * random 6-layer DiT. What a user would notice: the pipelined v2v stream emits exactly the
 * frames (bit for bit) of the single-stage stream (pipeline/stream.h) for a multi-chunk
 * sequence with steps=2 over 1, 2 and 3 stages, including layer boundaries moved mid-stream
 * with their KV caches, and the automatic balancer; the output lag is the documented one;
 * adaptive sink refresh through the carried similarity sums matches on one stage; the
 * partition / balancing functions; refusals. */
#include "test_util.h"

#include "checkpoint.h"
#include "model_spec.h"
#include "stages.h"
#include "stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LAYERS = 6, LH = 8, LW = 8, CHUNKS = 14, FRAME = LH * LW * 16 };

static char g_dir[256], g_ckpt[300];
static float g_ctx[512 * 64];

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_stages_XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  snprintf(g_ckpt, sizeof g_ckpt, "%s/dit6.safetensors", g_dir);
  tu_write_tiny_dit(g_ckpt, LAYERS, 7); /* random, seed 7 */
  lg_rng r;
  lg_rng_seed(&r, 11);
  for (int i = 0; i < 512 * 64; i++)
    g_ctx[i] = i < 20 * 64 ? (float)lg_rng_normal(&r) : 0.0f;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Each stage thread loads its own backend and model. */
static lg_wan_dit *load(void *user, int rank) {
  if (user && rank == *(const int *)user) return NULL; /* this rank cannot load its model */
  char err[256];
  lg_backend *be = lg_backend_new_cpu(1);
  lg_ckpt *ck = lg_ckpt_open(g_ckpt, err, sizeof err);
  lg_wan_dit *m = be && ck ? lg_wan_dit_load(be, ck, NULL, err, sizeof err) : NULL;
  lg_ckpt_free(&ck);
  if (!m) lg_backend_free(&be);
  return m;
}

static void free_model(lg_wan_dit **m) {
  lg_backend *be = lg_wan_dit_backend(*m);
  lg_wan_dit_free(m);
  lg_backend_free(&be);
}

/* Noise keyed by (chunk, step): the same draws whatever order the caller asks for them. */
static int noise(void *user, int chunk, int step, float *out, size_t n) {
  (void)user;
  lg_rng r;
  lg_rng_seed(&r, 1000003ull * (uint64_t)(chunk + 1) + (uint64_t)(step + 2));
  for (size_t i = 0; i < n; i++)
    out[i] = (float)lg_rng_normal(&r);
  return 0;
}

static void latent(int chunk, float *out, int frames) {
  lg_rng r;
  lg_rng_seed(&r, 77 + (uint64_t)chunk);
  for (int i = 0; i < frames * FRAME; i++)
    out[i] = (float)lg_rng_normal(&r);
}

static lg_stream_opts sopts(double adapt) {
  lg_stream_opts o = {.steps = 2,
                      .step_list = {700, 500, 400, 200},
                      .shift = 8.0,
                      .kv_frames = 4,
                      .sink_frames = 1,
                      .adapt_sink = adapt,
                      .lat_h = LH,
                      .lat_w = LW};
  return o;
}

typedef struct outputs {
  float x[CHUNKS][2 * FRAME];
  bool have[CHUNKS];
  int emitted_at[CHUNKS]; /* push index that emitted the chunk */
} outputs;

static int g_reset_at = -1; /* push index before which both runners reset (-1: never) */

static double scale_of(int c) {
  return 0.7 + 0.02 * (c % 5);
}

/* The single-stage stream: the reference. */
static void run_stream(double adapt, outputs *o) {
  memset(o, 0, sizeof *o);
  char err[256];
  lg_wan_dit *m = load(NULL, 0);
  assert_non_null(m);
  lg_backend *be = lg_wan_dit_backend(m);
  lg_stream_opts so = sopts(adapt);
  lg_stream *s = lg_stream_new(m, &so, err, sizeof err);
  assert_non_null(s);
  assert_int_equal(lg_stream_set_context(s, g_ctx), 0);
  static float host[2 * FRAME];
  int64_t sh2[4] = {2, LH, LW, 16}, sh1[4] = {1, LH, LW, 16};
  lg_tensor out;
  assert_int_equal(lg_tensor_alloc(be, &out, be->act_dtype, 4, sh2), 0);
  for (int c = 0; c < CHUNKS; c++) {
    if (c == g_reset_at) {
      assert_int_equal(lg_stream_reset(s), 0);
      memset(o, 0, sizeof *o);
    }
    int F = c == 0 || c == g_reset_at ? 2 : 1;
    latent(c, host, F);
    lg_tensor lt = tu_tensor(be, be->act_dtype, 4, F == 2 ? sh2 : sh1, host);
    int chunk = -1;
    int nf = lg_stream_push_v2v(s, &lt, scale_of(c), noise, NULL, &out, &chunk);
    assert_true(nf >= 0);
    if (nf > 0) {
      lg_tensor ov = lg_tensor_narrow(&out, 0, 0, nf);
      assert_int_equal(lg_tensor_download_f32(&ov, o->x[chunk]), 0);
      o->have[chunk] = true;
      o->emitted_at[chunk] = c;
    }
    lg_tensor_free(&lt);
  }
  lg_tensor_free(&out);
  lg_stream_free(&s);
  free_model(&m);
}

typedef struct move {
  int at, k, delta; /* before push `at` */
} move;

/* The pipeline over n stages with the given boundaries and moves; checks the layers each
 * stage ends with when want_bound is given. */
static void run_pipe(int n, const int *bound, int max_layers, double adapt, const move *mv, int nmv,
                     int balance, outputs *o, int *final_bound) {
  memset(o, 0, sizeof *o);
  char err[256] = "";
  lg_stages_opts po = {
      .stream = sopts(adapt), .n = n, .max_layers = max_layers, .balance_ticks = balance};
  if (bound) memcpy(po.bound, bound, sizeof(int) * (size_t)(n + 1));
  lg_stages_inproc *p = lg_stages_inproc_new(&po, load, NULL, err, sizeof err);
  if (!p) fail_msg("pipeline: %s", err);
  lg_stage *s0 = lg_stages_inproc_stage0(p);
  lg_backend *be = lg_backend_new_cpu(1);
  assert_int_equal(lg_stage_set_context(s0, g_ctx), 0);
  static float host[2 * FRAME];
  int64_t sh2[4] = {2, LH, LW, 16}, sh1[4] = {1, LH, LW, 16};
  lg_tensor out;
  assert_int_equal(lg_tensor_alloc(be, &out, be->act_dtype, 4, sh2), 0);
  for (int c = 0; c < CHUNKS; c++) {
    for (int i = 0; i < nmv; i++)
      if (mv[i].at == c) assert_int_equal(lg_stage_move_boundary(s0, mv[i].k, mv[i].delta), 0);
    if (c == g_reset_at) {
      assert_int_equal(lg_stage_reset(s0), 0);
      memset(o, 0, sizeof *o);
    }
    int F = c == 0 || c == g_reset_at ? 2 : 1;
    latent(c, host, F);
    lg_tensor lt = tu_tensor(be, be->act_dtype, 4, F == 2 ? sh2 : sh1, host);
    int chunk = -1;
    int nf = lg_stage_push_v2v(s0, &lt, scale_of(c), noise, NULL, &out, &chunk);
    if (nf < 0) fail_msg("push %d failed: %d", c, nf);
    if (nf > 0) {
      assert_true(chunk >= 0 && chunk < CHUNKS && !o->have[chunk]);
      lg_tensor ov = lg_tensor_narrow(&out, 0, 0, nf);
      assert_int_equal(lg_tensor_download_f32(&ov, o->x[chunk]), 0);
      o->have[chunk] = true;
      o->emitted_at[chunk] = c;
    }
    lg_tensor_free(&lt);
  }
  if (final_bound) lg_stage_bounds(s0, final_bound);
  lg_tensor_free(&out);
  lg_backend_free(&be);
  lg_stages_inproc_free(&p);
  assert_null(p);
}

/* Every chunk the pipeline emitted equals the reference's, bit for bit; the lag is as
 * documented (steps * (n - 1) chunks more than one stage); returns the count compared. */
static int same_bits(const outputs *ref, const outputs *got, int n) {
  int cmp = 0;
  for (int c = 0; c < CHUNKS; c++) {
    if (!got->have[c]) continue;
    assert_true(ref->have[c]);
    int frames = c == 0 ? 2 : 1;
    if (memcmp(ref->x[c], got->x[c], sizeof(float) * (size_t)(frames * FRAME)) != 0) {
      double mx = 0;
      for (int i = 0; i < frames * FRAME; i++)
        mx = fmax(mx, fabs((double)ref->x[c][i] - got->x[c][i]));
      fail_msg("chunk %d differs (max abs %g) with %d stages", c, mx, n);
    }
    int lag = c == 0 ? 0 : 2 * (n - 1);
    assert_int_equal(got->emitted_at[c], ref->emitted_at[c] + lag);
    cmp++;
  }
  return cmp;
}

static outputs g_ref, g_got;

static void test_two_and_three_stages_bit_exact(void **state) {
  (void)state;
  run_stream(0.0, &g_ref);
  /* the reference emits chunk 0 at once, then one chunk per push after a lag of steps-1 */
  assert_true(g_ref.have[0] && g_ref.have[CHUNKS - 2] && !g_ref.have[CHUNKS - 1]);
  run_pipe(1, NULL, 0, 0.0, NULL, 0, 0, &g_got, NULL);
  assert_int_equal(same_bits(&g_ref, &g_got, 1), CHUNKS - 1);
  int b2[3] = {0, 3, 6};
  run_pipe(2, b2, 0, 0.0, NULL, 0, 0, &g_got, NULL);
  assert_int_equal(same_bits(&g_ref, &g_got, 2), CHUNKS - 3);
  int b3[4] = {0, 1, 3, 6};
  run_pipe(3, b3, 0, 0.0, NULL, 0, 0, &g_got, NULL);
  assert_int_equal(same_bits(&g_ref, &g_got, 3), CHUNKS - 5);
}

static void test_moves_keep_bits(void **state) {
  (void)state;
  run_stream(0.0, &g_ref);
  /* 2 stages: layer 2 goes to stage 1 (its KV cache with it), then layers 2 and 3 to stage 0,
   * while batches are in flight; the caches are at most 4 layers */
  int b2[3] = {0, 3, 6}, fb[LG_STAGES_MAX + 1];
  move m2[] = {{4, 0, -1}, {7, 0, +1}, {9, 0, +1}};
  run_pipe(2, b2, 4, 0.0, m2, 3, 0, &g_got, fb);
  assert_int_equal(same_bits(&g_ref, &g_got, 2), CHUNKS - 3);
  assert_int_equal(fb[1], 4);
  /* 3 stages: both boundaries move, in both directions, one of them twice in a row */
  int b3[4] = {0, 2, 4, 6};
  move m3[] = {{3, 1, +1}, {4, 0, -1}, {5, 0, +1}, {6, 1, -1}, {6, 1, -1}};
  run_pipe(3, b3, 0, 0.0, m3, 5, 0, &g_got, fb);
  assert_int_equal(same_bits(&g_ref, &g_got, 3), CHUNKS - 5);
  assert_int_equal(fb[1], 2);
  assert_int_equal(fb[2], 3);
}

static void test_balancer_moves_and_keeps_bits(void **state) {
  (void)state;
  run_stream(0.0, &g_ref);
  /* stage 0 starts with 5 of 6 layers: after 2 measured batches the balancer moves layers to
   * stage 1 one per push; the frames stay the same */
  int b2[3] = {0, 5, 6}, fb[LG_STAGES_MAX + 1];
  run_pipe(2, b2, 0, 0.0, NULL, 0, 2, &g_got, fb);
  assert_int_equal(same_bits(&g_ref, &g_got, 2), CHUNKS - 3);
  assert_true(fb[1] < 5);
}

static void test_reset_mid_stream(void **state) {
  (void)state;
  /* a reset with batches in flight: they are drained, every stage's cache is cleared and the
   * next push is a first chunk again, as in the single-stage stream */
  g_reset_at = 6;
  run_stream(0.0, &g_ref);
  run_pipe(2, NULL, 0, 0.0, NULL, 0, 0, &g_got, NULL);
  g_reset_at = -1;
  assert_true(g_ref.have[0] && g_ref.emitted_at[0] == 6);
  assert_int_equal(same_bits(&g_ref, &g_got, 2), 5);
}

static bool same_chunks(const outputs *a, const outputs *b) {
  for (int c = 0; c < CHUNKS; c++)
    if (a->have[c] != b->have[c] ||
        (a->have[c] && memcmp(a->x[c], b->x[c], sizeof(float) * (size_t)FRAME) != 0))
      return false;
  return true;
}

static void test_adaptive_sinks_one_stage(void **state) {
  (void)state;
  /* a threshold between "always refresh" (2: every cosine is under it) and "never" (1e-9)
   * whose frames differ from both: the decisions then depend on the similarity values, which
   * the ring carries as partial sums in the batch header */
  outputs *always = malloc(sizeof *always), *never = malloc(sizeof *never);
  run_stream(2.0, always);
  run_stream(1e-9, never);
  assert_false(same_chunks(always, never));
  static const double th[] = {0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  double mixed = -1;
  for (size_t i = 0; i < sizeof th / sizeof th[0] && mixed < 0; i++) {
    run_stream(th[i], &g_ref);
    if (!same_chunks(&g_ref, always) && !same_chunks(&g_ref, never)) mixed = th[i];
  }
  if (mixed < 0) fail_msg("no threshold mixes refreshes and non-refreshes");
  run_pipe(1, NULL, 0, mixed, NULL, 0, 0, &g_got, NULL);
  assert_int_equal(same_bits(&g_ref, &g_got, 1), CHUNKS - 1);
  free(always);
  free(never);
}

static void test_partition_and_balance(void **state) {
  (void)state;
  int b[LG_STAGES_MAX + 1];
  assert_int_equal(lg_stages_partition_even(30, 4, b), 0);
  int want[5] = {0, 8, 16, 23, 30};
  assert_memory_equal(b, want, sizeof want);
  assert_int_equal(lg_stages_partition_even(3, 4, b), LG_EINVAL);
  /* equal layers, stage 0 also pays 3 ms of embedding, the last 5 ms of head: 2 stages of
   * 10 layers at 1 ms -> 0..? minimising max(3 + a, 5 + 10 - a): a = 6 */
  double lm[10], fx[2] = {3, 5};
  for (int i = 0; i < 10; i++)
    lm[i] = 1.0;
  assert_int_equal(lg_stages_balance(10, 2, lm, fx, 0, b), 0);
  assert_int_equal(b[0], 0);
  assert_int_equal(b[1], 6);
  assert_int_equal(b[2], 10);
  /* a heavy layer gets a stage of its own */
  double lm2[4] = {1, 1, 10, 1};
  assert_int_equal(lg_stages_balance(4, 3, lm2, NULL, 0, b), 0);
  int w2[4] = {0, 2, 3, 4};
  assert_memory_equal(b, w2, sizeof w2);
  /* capacity: at most 2 layers per stage over 3 stages of 6 layers is forced even */
  double lm3[6] = {5, 5, 1, 1, 1, 1};
  assert_int_equal(lg_stages_balance(6, 3, lm3, NULL, 2, b), 0);
  int w3[4] = {0, 2, 4, 6};
  assert_memory_equal(b, w3, sizeof w3);
  assert_int_equal(lg_stages_balance(6, 2, lm3, NULL, 2, b), LG_EINVAL);
  /* next_move walks one layer at a time and never empties a stage */
  int cur[4] = {0, 1, 2, 6}, tgt[4] = {0, 3, 5, 6}, k, d, steps = 0;
  while (lg_stages_next_move(3, cur, tgt, &k, &d)) {
    cur[k + 1] += d;
    for (int s = 0; s < 3; s++)
      assert_true(cur[s + 1] > cur[s]);
    assert_true(++steps < 20);
  }
  assert_memory_equal(cur, tgt, sizeof tgt);
  assert_int_equal(steps, 5);
}

static void test_refusals(void **state) {
  (void)state;
  char err[256] = "";
  lg_stages_opts po = {.stream = sopts(0.0), .n = 2, .max_layers = 3};
  /* 6 layers cannot be 2 stages of at most 2 */
  po.max_layers = 2;
  tu_log_capture(true);
  lg_stages_inproc *p = lg_stages_inproc_new(&po, load, NULL, err, sizeof err);
  assert_null(p);
  assert_non_null(strstr(err, "max_layers"));
  po.max_layers = 3;
  po.stream.t2v = true;
  assert_null(lg_stages_inproc_new(&po, load, NULL, err, sizeof err));
  assert_non_null(strstr(err, "v2v only"));
  po.stream.t2v = false;
  p = lg_stages_inproc_new(&po, load, NULL, err, sizeof err);
  if (!p) fail_msg("%s", err);
  lg_stage *s0 = lg_stages_inproc_stage0(p);
  /* a stage thread whose model does not load: the pipeline is refused, nothing hangs */
  int bad_rank = 1;
  lg_stages_opts p3 = po;
  p3.n = 3;
  assert_null(lg_stages_inproc_new(&p3, load, &bad_rank, err, sizeof err));
  assert_non_null(strstr(err, "failed to start"));
  /* a move that would leave a stage over max_layers or empty, or a boundary that is not one */
  assert_int_equal(lg_stage_move_boundary(s0, 0, +1), LG_EINVAL);
  assert_int_equal(lg_stage_move_boundary(s0, 1, -1), LG_EINVAL);
  assert_int_equal(lg_stage_move_boundary(s0, 0, 2), LG_EINVAL);
  /* no context yet */
  lg_backend *be = lg_backend_new_cpu(1);
  int64_t sh2[4] = {2, LH, LW, 16};
  lg_tensor lt, out;
  assert_int_equal(lg_tensor_alloc(be, &lt, LG_F32, 4, sh2), 0);
  assert_int_equal(lg_tensor_alloc(be, &out, LG_F32, 4, sh2), 0);
  int chunk;
  assert_int_equal(lg_stage_push_v2v(s0, &lt, 0.8, noise, NULL, &out, &chunk), LG_EINVAL);
  tu_log_capture(false);
  lg_tensor_free(&lt);
  lg_tensor_free(&out);
  lg_backend_free(&be);
  lg_stages_inproc_free(&p);
}

static void test_nccl_id_file_and_env(void **state) {
  (void)state;
  unsigned char id[LG_NCCL_ID_BYTES], got[LG_NCCL_ID_BYTES];
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++)
    id[i] = (unsigned char)(i * 37 + 5);
  char path[320], bad[320];
  snprintf(path, sizeof path, "%s/nccl.id", g_dir);
  snprintf(bad, sizeof bad, "%s/bad.id", g_dir);
  unsetenv("LG_NCCL_ID");
  /* a rank that starts first waits, then gives up with LG_EAGAIN */
  tu_log_capture(true);
  double t0 = lg_now();
  assert_int_equal(lg_stages_id_read(path, got, 0.2), LG_EAGAIN);
  assert_true(lg_now() - t0 >= 0.19);
  tu_log_capture(false);
  assert_int_equal(lg_stages_id_write(path, id), 0);
  memset(got, 0, sizeof got);
  assert_int_equal(lg_stages_id_read(path, got, 1.0), 0);
  assert_memory_equal(id, got, sizeof id);
  /* the environment wins over the file */
  char hex[2 * LG_NCCL_ID_BYTES + 1];
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++)
    snprintf(hex + 2 * i, 3, "%02X", (unsigned)(255 - id[i]));
  setenv("LG_NCCL_ID", hex, 1);
  assert_int_equal(lg_stages_id_read(path, got, 1.0), 0);
  for (int i = 0; i < LG_NCCL_ID_BYTES; i++)
    assert_int_equal(got[i], 255 - id[i]);
  /* malformed: short, or not hex */
  tu_log_capture(true);
  hex[10] = 'g';
  setenv("LG_NCCL_ID", hex, 1);
  assert_int_equal(lg_stages_id_read(path, got, 1.0), LG_EFORMAT);
  unsetenv("LG_NCCL_ID");
  FILE *f = fopen(bad, "w");
  fputs("abcd\n", f);
  fclose(f);
  assert_int_equal(lg_stages_id_read(bad, got, 1.0), LG_EFORMAT);
  tu_log_capture(false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_partition_and_balance),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_two_and_three_stages_bit_exact),
      cmocka_unit_test(test_moves_keep_bits),
      cmocka_unit_test(test_balancer_moves_and_keeps_bits),
      cmocka_unit_test(test_reset_mid_stream),
      cmocka_unit_test(test_adaptive_sinks_one_stage),
      cmocka_unit_test(test_nccl_id_file_and_env),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

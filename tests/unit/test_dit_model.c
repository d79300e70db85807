/* test_dit_model.c: the Wan DiT on tiny random weights (lg_model_spec "tiny"): config read off
 * the tensors, errors naming missing / extra / misshapen tensors (base and override), override
 * weights replacing the base, KV-cache behaviour a caller sees (repeated start reproduces,
 * a grown cache changes the output), the context mattering, and `probe dit` being
 * deterministic (two runs, identical bytes). CPU backend. */
#include "test_util.h"

#include "checkpoint.h"
#include "cli.h"
#include "model_spec.h"
#include "wan_dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", g_dir, name);
}

/* Writes the tiny DiT with values from seed. skip: a tensor left out; extra: a tensor added;
 * bad: a tensor written with its last dimension halved. */
static void write_tiny(const char *path, uint64_t seed, const char *skip, const char *extra,
                       const char *bad) {
  lg_tensor_spec *specs = NULL;
  int n = 0;
  char err[256];
  assert_int_equal(lg_model_spec("wan-dit", "tiny", &specs, &n, err, sizeof err), 0);
  const char **names = calloc((size_t)n + 1, sizeof *names);
  lg_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
  float **bufs = calloc((size_t)n + 1, sizeof *bufs);
  int k = 0;
  lg_rng r;
  lg_rng_seed(&r, seed);
  for (int i = 0; i < n; i++) {
    if (skip && !strcmp(specs[i].name, skip)) continue;
    int64_t shape[LG_MAX_DIMS];
    memcpy(shape, specs[i].shape, sizeof shape);
    if (bad && !strcmp(specs[i].name, bad)) shape[specs[i].ndim - 1] /= 2;
    lg_tensor t = lg_tensor_make(NULL, NULL, LG_F32, specs[i].ndim, shape);
    size_t ne = (size_t)lg_tensor_numel(&t);
    bufs[k] = malloc(ne * sizeof(float));
    for (size_t j = 0; j < ne; j++)
      bufs[k][j] = specs[i].mean + specs[i].std * (float)lg_rng_normal(&r);
    t.data = bufs[k];
    names[k] = specs[i].name;
    ts[k++] = t;
  }
  float one = 1.0f;
  if (extra) {
    int64_t s1[1] = {1};
    names[k] = extra;
    ts[k++] = lg_tensor_make(NULL, &one, LG_F32, 1, s1);
  }
  assert_int_equal(lg_safetensors_write(path, names, ts, k, NULL, 0), 0);
  for (int i = 0; i < n + 1; i++)
    free(bufs[i]);
  free(bufs);
  free(ts);
  free(names);
  free(specs);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/lg_test_dit_XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  char p[300];
  path_in(p, sizeof p, "tiny.safetensors");
  write_tiny(p, 1, NULL, NULL, NULL);
  path_in(p, sizeof p, "tiny2.safetensors");
  write_tiny(p, 2, NULL, NULL, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static lg_ckpt *open_ck(const char *name) {
  char p[300], err[256];
  path_in(p, sizeof p, name);
  lg_ckpt *c = lg_ckpt_open(p, err, sizeof err);
  if (!c) fail_msg("%s: %s", p, err);
  return c;
}

static void test_config_from_tensors(void **state) {
  (void)state;
  lg_ckpt *c = open_ck("tiny.safetensors");
  lg_wan_dit_config cfg;
  char err[256];
  assert_int_equal(lg_wan_dit_read_config(c, &cfg, err, sizeof err), 0);
  assert_int_equal(cfg.dim, 256);
  assert_int_equal(cfg.heads, 2);
  assert_int_equal(cfg.layers, 2);
  assert_int_equal(cfg.ffn_dim, 512);
  assert_int_equal(cfg.text_dim, 64);
  assert_int_equal(cfg.freq_dim, 256);
  lg_ckpt_free(&c);
}

static void expect_load_error(const char *base, const char *over, const char *needle) {
  lg_backend *be = lg_backend_new_cpu(2);
  lg_ckpt *b = open_ck(base), *o = over ? open_ck(over) : NULL;
  char err[512] = "";
  lg_wan_dit *m = lg_wan_dit_load(be, b, o, err, sizeof err);
  assert_null(m);
  if (!strstr(err, needle)) fail_msg("error '%s' does not name '%s'", err, needle);
  lg_ckpt_free(&b);
  lg_ckpt_free(&o);
  lg_backend_free(&be);
}

static void test_bad_tensors_named(void **state) {
  (void)state;
  char p[300];
  path_in(p, sizeof p, "missing.safetensors");
  write_tiny(p, 1, "blocks.1.ffn.2.bias", NULL, NULL);
  expect_load_error("missing.safetensors", NULL, "missing tensor blocks.1.ffn.2.bias");
  path_in(p, sizeof p, "extra.safetensors");
  write_tiny(p, 1, NULL, "blocks.0.self_attn.extra", NULL);
  expect_load_error("extra.safetensors", NULL, "unexpected tensor blocks.0.self_attn.extra");
  path_in(p, sizeof p, "bad.safetensors");
  write_tiny(p, 1, NULL, NULL, "blocks.1.cross_attn.v.weight");
  expect_load_error("bad.safetensors", NULL, "blocks.1.cross_attn.v.weight has shape [256,128]");
  /* an override must supply every tensor */
  expect_load_error("tiny.safetensors", "missing.safetensors",
                    "override weights: missing tensor blocks.1.ffn.2.bias");
}

typedef struct rig {
  lg_backend *be;
  lg_wan_dit *m;
  lg_kv_cache *kv;
  lg_dit_ws *ws;
  lg_tensor x, v;
  float *ctx;
} rig;

enum { H = 8, W = 8, FT = 16 };

static void rig_open(rig *r, const char *base, const char *over) {
  memset(r, 0, sizeof *r);
  r->be = lg_backend_new_cpu(2);
  lg_ckpt *b = open_ck(base), *o = over ? open_ck(over) : NULL;
  char err[512] = "";
  r->m = lg_wan_dit_load(r->be, b, o, err, sizeof err);
  if (!r->m) fail_msg("load: %s", err);
  lg_ckpt_free(&b);
  lg_ckpt_free(&o);
  r->kv = lg_wan_dit_cache_new(r->m, 2, 4, H, W);
  r->ws = lg_dit_ws_new(r->m, 4, H, W);
  assert_non_null(r->kv);
  assert_non_null(r->ws);
  lg_rng g;
  lg_rng_seed(&g, 11);
  r->ctx = calloc(512 * 64, sizeof(float));
  tu_fill_normal(&g, r->ctx, 10 * 64, 1.0f);
  assert_int_equal(lg_wan_dit_set_context(r->m, r->ws, r->kv, r->ctx), 0);
  int64_t s[5] = {2, 2, H, W, 16};
  float *xh = malloc(2 * 2 * H * W * 16 * sizeof(float));
  tu_fill_normal(&g, xh, 2 * 2 * H * W * 16, 1.0f);
  r->x = tu_tensor(r->be, LG_F32, 5, s, xh);
  r->v = tu_tensor(r->be, LG_F32, 5, s, NULL);
  free(xh);
}

static void rig_close(rig *r) {
  lg_tensor_free(&r->x);
  lg_tensor_free(&r->v);
  lg_dit_ws_free(&r->ws);
  lg_kv_cache_free(&r->kv);
  lg_wan_dit_free(&r->m);
  lg_backend_free(&r->be);
  free(r->ctx);
}

/* One forward of both rows, 2 frames each, into slots s0,s1 with kv frames filled; returns
 * the downloaded v. */
static float *fwd(rig *r, int32_t rope, int s0, int s1, int kvf) {
  lg_dit_row rows[2];
  memset(rows, 0, sizeof rows);
  for (int b = 0; b < 2; b++) {
    rows[b].t = b ? 500.0f : 700.0f;
    rows[b].rope_start = rope;
    rows[b].kv_frames = kvf;
    rows[b].slot[0] = s0;
    rows[b].slot[1] = s1;
  }
  assert_int_equal(lg_wan_dit_forward(r->m, r->ws, r->kv, &r->x, rows, &r->v), 0);
  return tu_download(&r->v);
}

static double diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs((double)a[i] - b[i]) > m) m = fabs((double)a[i] - b[i]);
  return m;
}

static void test_cache_behaviour(void **state) {
  (void)state;
  rig r;
  rig_open(&r, "tiny.safetensors", NULL);
  const size_t n = 2 * 2 * H * W * 16;
  float *a = fwd(&r, 0, 0, 1, 2);
  double mx = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(isfinite(a[i]));
    if (fabs(a[i]) > mx) mx = fabs(a[i]);
  }
  assert_true(mx > 1e-3);
  /* the same chunk again at the same start rewrites the same slots: same output */
  float *b = fwd(&r, 0, 0, 1, 2);
  assert_true(diff(a, b, n) == 0.0);
  /* the same input as new frames 2,3 sees a 4-frame cache and another RoPE position */
  float *c = fwd(&r, 2, 2, 3, 4);
  assert_true(diff(a, c, n) > 1e-4);
  /* rows are independent: row 1's output does not depend on row 0's timestep */
  free(a);
  free(b);
  free(c);
  /* the context matters */
  lg_kv_cache_clear(r.kv);
  a = fwd(&r, 0, 0, 1, 2);
  for (int i = 0; i < 64; i++)
    r.ctx[i] += 1.0f;
  assert_int_equal(lg_wan_dit_set_context(r.m, r.ws, r.kv, r.ctx), 0);
  b = fwd(&r, 0, 0, 1, 2);
  assert_true(diff(a, b, n) > 1e-5);
  free(a);
  free(b);
  /* bad slots are refused */
  lg_dit_row rows[2] = {{.t = 1, .kv_frames = 1, .slot = {0, 1}}, {.t = 1, .kv_frames = 2}};
  tu_log_capture(true);
  assert_int_equal(lg_wan_dit_forward(r.m, r.ws, r.kv, &r.x, rows, &r.v), LG_EINVAL);
  tu_log_capture(false);
  rig_close(&r);
}

static void test_override_replaces_base(void **state) {
  (void)state;
  const size_t n = 2 * 2 * H * W * 16;
  rig r1, r2, r3;
  rig_open(&r1, "tiny.safetensors", NULL);
  float *a = fwd(&r1, 0, 0, 1, 2);
  rig_close(&r1);
  rig_open(&r2, "tiny.safetensors", "tiny2.safetensors");
  float *b = fwd(&r2, 0, 0, 1, 2);
  rig_close(&r2);
  rig_open(&r3, "tiny2.safetensors", NULL);
  float *c = fwd(&r3, 0, 0, 1, 2);
  rig_close(&r3);
  assert_true(diff(a, b, n) > 1e-4); /* the override's weights are used ... */
  assert_true(diff(b, c, n) == 0.0); /* ... entirely */
  free(a);
  free(b);
  free(c);
}

/* Context-only weights in host memory: the context pass uploads them per use, and every
 * output stays the same bit for bit, also after a context change and a second move. */
static void test_context_weights_on_host(void **state) {
  (void)state;
  const size_t n = 2 * 2 * H * W * 16;
  rig r1, r2;
  rig_open(&r1, "tiny.safetensors", NULL);
  float *a = fwd(&r1, 0, 0, 1, 2);
  for (int i = 0; i < 64; i++)
    r1.ctx[i] += 1.0f;
  assert_int_equal(lg_wan_dit_set_context(r1.m, r1.ws, r1.kv, r1.ctx), 0);
  float *b = fwd(&r1, 2, 2, 3, 4);
  rig_close(&r1);
  rig_open(&r2, "tiny.safetensors", NULL);
  char err[256] = "";
  assert_int_equal(lg_wan_dit_context_weights_to_host(r2.m, err, sizeof err), 0);
  assert_int_equal(lg_wan_dit_context_weights_to_host(r2.m, err, sizeof err), 0); /* once */
  lg_kv_cache_clear(r2.kv);
  assert_int_equal(lg_wan_dit_set_context(r2.m, r2.ws, r2.kv, r2.ctx), 0);
  float *c = fwd(&r2, 0, 0, 1, 2);
  for (int i = 0; i < 64; i++)
    r2.ctx[i] += 1.0f;
  assert_int_equal(lg_wan_dit_set_context(r2.m, r2.ws, r2.kv, r2.ctx), 0);
  float *d = fwd(&r2, 2, 2, 3, 4);
  /* a workspace made after the move works as well */
  lg_dit_ws_free(&r2.ws);
  r2.ws = lg_dit_ws_new(r2.m, 4, H, W);
  assert_non_null(r2.ws);
  assert_int_equal(lg_wan_dit_set_context(r2.m, r2.ws, r2.kv, r2.ctx), 0);
  float *e = fwd(&r2, 2, 2, 3, 4);
  rig_close(&r2);
  assert_true(diff(a, c, n) == 0.0);
  assert_true(diff(b, d, n) == 0.0);
  assert_true(diff(b, e, n) == 0.0);
  assert_true(diff(a, b, n) > 1e-5);
  free(a), free(b), free(c), free(d), free(e);
}

/* The FFN in passes (LG_DIT_FFN_TOKENS, read when the workspace is made) gives the output of
 * one pass: passes of whole frames (the gated add in ffn.2) and passes of 64 tokens that cut
 * frames (the gated add after the last pass). Latents 24x24: 144 tokens per frame, 2 rows of
 * 2 frames = 576 tokens. */
static float *ffn_pass_run(const char *cap) {
  enum { LH = 24, LW = 24 };
  setenv("LG_DIT_FFN_TOKENS", cap, 1);
  lg_backend *be = lg_backend_new_cpu(2);
  lg_ckpt *b = open_ck("tiny.safetensors");
  char err[512] = "";
  lg_wan_dit *m = lg_wan_dit_load(be, b, NULL, err, sizeof err);
  if (!m) fail_msg("load: %s", err);
  lg_ckpt_free(&b);
  lg_kv_cache *kv = lg_wan_dit_cache_new(m, 2, 4, LH, LW);
  lg_dit_ws *ws = lg_dit_ws_new(m, 4, LH, LW);
  unsetenv("LG_DIT_FFN_TOKENS");
  assert_non_null(kv);
  assert_non_null(ws);
  lg_rng g;
  lg_rng_seed(&g, 11);
  float *ctx = calloc(512 * 64, sizeof(float));
  tu_fill_normal(&g, ctx, 10 * 64, 1.0f);
  assert_int_equal(lg_wan_dit_set_context(m, ws, kv, ctx), 0);
  int64_t s[5] = {2, 2, LH, LW, 16};
  size_t n = 2 * 2 * LH * LW * 16;
  float *xh = malloc(n * sizeof(float));
  tu_fill_normal(&g, xh, n, 1.0f);
  lg_tensor x = tu_tensor(be, LG_F32, 5, s, xh), v = tu_tensor(be, LG_F32, 5, s, NULL);
  lg_dit_row rows[2];
  memset(rows, 0, sizeof rows);
  for (int r = 0; r < 2; r++) {
    rows[r].t = r ? 500.0f : 700.0f;
    rows[r].kv_frames = 2;
    rows[r].slot[0] = 0;
    rows[r].slot[1] = 1;
  }
  assert_int_equal(lg_wan_dit_forward(m, ws, kv, &x, rows, &v), 0);
  float *out = tu_download(&v);
  lg_tensor_free(&x);
  lg_tensor_free(&v);
  lg_dit_ws_free(&ws);
  lg_kv_cache_free(&kv);
  lg_wan_dit_free(&m);
  lg_backend_free(&be);
  free(ctx);
  free(xh);
  return out;
}

static void test_ffn_passes(void **state) {
  (void)state;
  const size_t n = 2 * 2 * 24 * 24 * 16;
  float *one = ffn_pass_run("4096"), *frames = ffn_pass_run("320"), *cut = ffn_pass_run("64");
  double mx = 0;
  for (size_t i = 0; i < n; i++)
    mx = fabs(one[i]) > mx ? fabs(one[i]) : mx;
  assert_true(mx > 1e-3);
  assert_true(diff(one, frames, n) == 0.0);
  assert_true(diff(one, cut, n) == 0.0);
  free(one), free(frames), free(cut);
}

/* probe dit twice on one input: identical output files */
static void test_probe_deterministic(void **state) {
  (void)state;
  char in[300], o1[300], o2[300], model[300];
  path_in(in, sizeof in, "probe_in.safetensors");
  path_in(o1, sizeof o1, "probe_o1.safetensors");
  path_in(o2, sizeof o2, "probe_o2.safetensors");
  path_in(model, sizeof model, "tiny.safetensors");
  lg_rng g;
  lg_rng_seed(&g, 5);
  static float ctx[512 * 64], x[4][2 * 2 * 16 * H * W];
  tu_fill_normal(&g, ctx, 8 * 64, 1.0f);
  const char *names[13];
  lg_tensor ts[13];
  static char nb[13][16];
  float tt[4][2] = {{700, 500}, {500, 400}, {700, 500}, {700, 500}};
  float ss[4][2] = {{0, 0}, {0, 0}, {32, 32}, {48, 32}};
  int k = 0;
  int64_t sc[2] = {512, 64}, s1[1] = {2};
  names[k] = "context";
  ts[k++] = lg_tensor_make(NULL, ctx, LG_F32, 2, sc);
  for (int c = 0; c < 4; c++) {
    int64_t F = c < 2 ? 2 : 1, sx[5] = {2, F, 16, H, W};
    tu_fill_normal(&g, x[c], (size_t)(2 * F * 16 * H * W), 1.0f);
    snprintf(nb[k], 16, "x.%d", c);
    names[k] = nb[k];
    ts[k++] = lg_tensor_make(NULL, x[c], LG_F32, 5, sx);
    snprintf(nb[k], 16, "t.%d", c);
    names[k] = nb[k];
    ts[k++] = lg_tensor_make(NULL, tt[c], LG_F32, 1, s1);
    snprintf(nb[k], 16, "start.%d", c);
    names[k] = nb[k];
    ts[k++] = lg_tensor_make(NULL, ss[c], LG_F32, 1, s1);
  }
  assert_int_equal(lg_safetensors_write(in, names, ts, k, NULL, 0), 0);
  for (int run = 0; run < 2; run++) {
    char *argv[] = {"dit",         "--model",     model, "--in",          in,  "--out",
                    run ? o2 : o1, "--kv-frames", "3",   "--sink-frames", "1", NULL};
    assert_int_equal(lg_cmd_probe_dit(11, argv), 0);
  }
  size_t n1 = 0, n2 = 0;
  FILE *f1 = fopen(o1, "rb"), *f2 = fopen(o2, "rb");
  assert_non_null(f1);
  assert_non_null(f2);
  static uint8_t b1[1 << 20], b2[1 << 20];
  n1 = fread(b1, 1, sizeof b1, f1);
  n2 = fread(b2, 1, sizeof b2, f2);
  fclose(f1);
  fclose(f2);
  assert_true(n1 > 90000); /* 2 x (4+4+2+2) x 1024 floats */
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  /* and the output holds v and x0 of every call */
  char err[256];
  lg_ckpt *c = lg_ckpt_open(o1, err, sizeof err);
  assert_non_null(c);
  assert_int_equal(lg_ckpt_count(c), 8);
  const lg_ckpt_tensor *v3 = lg_ckpt_find(c, "v.3");
  assert_non_null(v3);
  assert_int_equal(v3->ndim, 5);
  assert_int_equal(v3->shape[1], 1);
  assert_int_equal(v3->shape[2], 16);
  lg_ckpt_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_from_tensors), cmocka_unit_test(test_bad_tensors_named),
      cmocka_unit_test(test_cache_behaviour),     cmocka_unit_test(test_override_replaces_base),
      cmocka_unit_test(test_probe_deterministic), cmocka_unit_test(test_context_weights_on_host),
      cmocka_unit_test(test_ffn_passes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

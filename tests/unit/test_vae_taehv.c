/* test_vae_taehv.c: the TAEHV decoder (models/taehv.c) on tiny random weights (widths
 * 32/16/8/8, the "tiny" model spec) on the CPU backend: streamed decoding (MemBlock memories
 * carried across calls, first 3 frames trimmed) equals the whole-sequence decode, streams are
 * deterministic and reset, TGrow weights with extra output channels are sliced to their last
 * n*stride channels like the reference loader, and bad inputs are refused. Test thread. */
#include "test_util.h"

#include "checkpoint.h"
#include "model_spec.h"
#include "taehv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5
#define HH 32
#define WW 24
#define NLAT 3

static lg_backend *be;

/* TGrow layers of the decoder and their real output channel count per input channel. */
static const char *const tgrow[3] = {"decoder.7.conv.weight", "decoder.13.conv.weight",
                                     "decoder.19.conv.weight"};

enum { GROW_NONE, GROW_KEEP_LAST, GROW_KEEP_FIRST };

/* Writes random tiny TAEHV weights (seeded). grow: TGrow weights [n*s,n,1,1] become
 * [n*(s+1),n,1,1] with the original rows last (KEEP_LAST) or first (KEEP_FIRST) and random
 * rows elsewhere. */
static void write_taehv(const char *path, uint64_t seed, int grow) {
  lg_tensor_spec *sp = NULL;
  int n = 0;
  char err[256];
  assert_int_equal(lg_model_spec("taehv", "tiny", &sp, &n, err, sizeof err), 0);
  const char **names = calloc((size_t)n, sizeof *names);
  lg_tensor *ts = calloc((size_t)n, sizeof *ts);
  assert_non_null(names);
  assert_non_null(ts);
  lg_rng r, extra;
  lg_rng_seed(&r, seed);
  lg_rng_seed(&extra, seed + 1000);
  for (int i = 0; i < n; i++) {
    lg_tensor t = lg_tensor_make(NULL, NULL, LG_F32, sp[i].ndim, sp[i].shape);
    size_t ne = (size_t)lg_tensor_numel(&t);
    float *d = malloc(ne * sizeof *d);
    assert_non_null(d);
    for (size_t k = 0; k < ne; k++)
      d[k] = sp[i].mean + sp[i].std * (float)lg_rng_normal(&r);
    int is_grow = 0;
    for (int g = 0; g < 3; g++)
      is_grow |= !strcmp(sp[i].name, tgrow[g]);
    if (grow != GROW_NONE && is_grow) {
      int64_t cin = sp[i].shape[1], add = cin * cin; /* one more group of n rows */
      float *d2 = malloc((ne + (size_t)add) * sizeof *d2);
      assert_non_null(d2);
      float *orig = grow == GROW_KEEP_LAST ? d2 + add : d2,
            *rnd = grow == GROW_KEEP_LAST ? d2 : d2 + ne;
      memcpy(orig, d, ne * sizeof *d);
      for (int64_t k = 0; k < add; k++)
        rnd[k] = sp[i].std * (float)lg_rng_normal(&extra);
      free(d);
      d = d2;
      t.ne[0] += cin;
      t = lg_tensor_make(NULL, NULL, LG_F32, 4, t.ne);
    }
    t.data = d;
    names[i] = sp[i].name;
    ts[i] = t;
  }
  assert_int_equal(lg_safetensors_write(path, names, ts, n, NULL, 0), 0);
  for (int i = 0; i < n; i++)
    free(ts[i].data);
  free(ts);
  free(names);
  free(sp);
}

static lg_taehv *load(const char *path, lg_ckpt **ck) {
  char err[256];
  *ck = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(*ck);
  lg_taehv *t = lg_taehv_load(be, *ck, err, sizeof err);
  if (!t) fail_msg("%s", err);
  return t;
}

static int setup(void **state) {
  (void)state;
  be = lg_backend_new_cpu(2);
  return be ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  lg_backend_free(&be);
  return 0;
}

static float *latents(uint64_t seed) {
  size_t n = (size_t)NLAT * (HH / 8) * (WW / 8) * 16;
  float *z = malloc(n * sizeof *z);
  assert_non_null(z);
  lg_rng r;
  lg_rng_seed(&r, seed);
  tu_fill_normal(&r, z, n, 1.5f);
  return z;
}

/* Streams NLAT latents; returns the 1+4+4.. frames [4*NLAT-3,HH,WW,3]. */
static float *decode_streamed(lg_taehv_stream *s, const float *z) {
  int64_t lat = (HH / 8) * (WW / 8) * 16, fr = (int64_t)HH * WW * 3;
  float *out = malloc((size_t)((4 * NLAT - 3) * fr) * sizeof *out);
  assert_non_null(out);
  int64_t at = 0;
  for (int k = 0; k < NLAT; k++) {
    int64_t T = k ? 4 : 1, sz[4] = {1, HH / 8, WW / 8, 16}, sx[4] = {T, HH, WW, 3};
    lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z + k * lat),
              x = tu_tensor(be, LG_F32, 4, sx, NULL);
    assert_int_equal(lg_taehv_decode(s, &zt, &x), 0);
    float *d = tu_download(&x);
    memcpy(out + at * fr, d, (size_t)(T * fr) * sizeof *d);
    at += T;
    free(d);
    lg_tensor_free(&zt);
    lg_tensor_free(&x);
  }
  return out;
}

static double rel_err(const float *a, const float *b, size_t n) {
  double mx = 0, md = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(isfinite(a[i]) && isfinite(b[i]));
    if (fabs(b[i]) > mx) mx = fabs(b[i]);
    if (fabs(a[i] - b[i]) > md) md = fabs(a[i] - b[i]);
  }
  assert_true(mx > 1e-3);
  return md / mx;
}

static void test_taehv_streamed_equals_clip(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/test_taehv_tiny.safetensors", LG_BINARY_DIR);
  write_taehv(path, 21, GROW_NONE);
  lg_ckpt *ck;
  lg_taehv *t = load(path, &ck);
  float *z = latents(4);
  lg_taehv_stream *s = lg_taehv_stream_new(t, HH, WW);
  assert_non_null(s);
  float *st = decode_streamed(s, z);
  int64_t nf = 4 * NLAT - 3, fr = (int64_t)HH * WW * 3;
  int64_t sz[4] = {NLAT, HH / 8, WW / 8, 16}, sx[4] = {nf, HH, WW, 3};
  lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z), x = tu_tensor(be, LG_F32, 4, sx, NULL);
  assert_int_equal(lg_taehv_decode_clip(t, &zt, &x), 0);
  float *cl = tu_download(&x);
  double e = rel_err(st, cl, (size_t)(nf * fr));
  printf("taehv streamed vs clip: rel err %.3g\n", e);
  assert_true(e < TOL);
  for (int64_t i = 0; i < nf * fr; i++)
    assert_true(st[i] >= -1.0f && st[i] <= 1.0f);
  /* frames differ from each other: the temporal path is not a no-op */
  assert_true(rel_err(st + 5 * fr, st + 6 * fr, (size_t)fr) > 1e-4);
  /* determinism and reset: a second stream and a reset stream repeat the same frames */
  lg_taehv_stream *s2 = lg_taehv_stream_new(t, HH, WW);
  assert_non_null(s2);
  float *st2 = decode_streamed(s2, z);
  assert_memory_equal(st, st2, (size_t)(nf * fr) * sizeof(float));
  assert_int_equal(lg_taehv_stream_reset(s), 0);
  float *st3 = decode_streamed(s, z);
  assert_memory_equal(st, st3, (size_t)(nf * fr) * sizeof(float));
  free(st);
  free(st2);
  free(st3);
  free(cl);
  free(z);
  lg_tensor_free(&zt);
  lg_tensor_free(&x);
  lg_taehv_stream_free(&s);
  lg_taehv_stream_free(&s2);
  assert_null(s);
  lg_taehv_free(&t);
  assert_null(t);
  lg_ckpt_free(&ck);
  remove(path);
}

/* Wider TGrow weights are sliced to their last n*stride rows (the reference patch_tgrow_layers);
 * keeping the first rows instead would give other frames. */
static void test_taehv_tgrow_slices_last_channels(void **state) {
  (void)state;
  char p0[512], p1[512], p2[512];
  snprintf(p0, sizeof p0, "%s/test_taehv_g0.safetensors", LG_BINARY_DIR);
  snprintf(p1, sizeof p1, "%s/test_taehv_g1.safetensors", LG_BINARY_DIR);
  snprintf(p2, sizeof p2, "%s/test_taehv_g2.safetensors", LG_BINARY_DIR);
  write_taehv(p0, 33, GROW_NONE);
  write_taehv(p1, 33, GROW_KEEP_LAST);
  write_taehv(p2, 33, GROW_KEEP_FIRST);
  lg_ckpt *c0, *c1, *c2;
  lg_taehv *t0 = load(p0, &c0), *t1 = load(p1, &c1), *t2 = load(p2, &c2);
  const lg_ckpt_tensor *g = lg_ckpt_find(c1, "decoder.13.conv.weight");
  assert_non_null(g);
  assert_int_equal(g->shape[0], 3 * 16); /* really wider than the 2*16 rows needed */
  float *z = latents(8);
  int64_t nf = 4 * NLAT - 3, fr = (int64_t)HH * WW * 3;
  int64_t sz[4] = {NLAT, HH / 8, WW / 8, 16}, sx[4] = {nf, HH, WW, 3};
  lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z), x = tu_tensor(be, LG_F32, 4, sx, NULL);
  assert_int_equal(lg_taehv_decode_clip(t0, &zt, &x), 0);
  float *a = tu_download(&x);
  assert_int_equal(lg_taehv_decode_clip(t1, &zt, &x), 0);
  float *b = tu_download(&x);
  assert_int_equal(lg_taehv_decode_clip(t2, &zt, &x), 0);
  float *c = tu_download(&x);
  assert_memory_equal(a, b, (size_t)(nf * fr) * sizeof(float));
  assert_true(rel_err(c, a, (size_t)(nf * fr)) > 1e-3);
  free(a);
  free(b);
  free(c);
  free(z);
  lg_tensor_free(&zt);
  lg_tensor_free(&x);
  lg_taehv_free(&t0);
  lg_taehv_free(&t1);
  lg_taehv_free(&t2);
  lg_ckpt_free(&c0);
  lg_ckpt_free(&c1);
  lg_ckpt_free(&c2);
  remove(p0);
  remove(p1);
  remove(p2);
}

static void test_taehv_bad_inputs(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/test_taehv_bad.safetensors", LG_BINARY_DIR);
  write_taehv(path, 5, GROW_NONE);
  lg_ckpt *ck;
  lg_taehv *t = load(path, &ck);
  tu_log_capture(true);
  assert_null(lg_taehv_stream_new(t, 20, 24));
  lg_taehv_stream *s = lg_taehv_stream_new(t, HH, WW);
  assert_non_null(s);
  int64_t sz[4] = {1, HH / 8, WW / 8, 16}, sx4[4] = {4, HH, WW, 3}, sx1[4] = {1, HH, WW, 3};
  int64_t sz_bad[4] = {1, HH / 8, WW / 8, 12};
  lg_tensor z = tu_tensor(be, LG_F32, 4, sz, NULL), zb = tu_tensor(be, LG_F32, 4, sz_bad, NULL);
  lg_tensor x4 = tu_tensor(be, LG_F32, 4, sx4, NULL), x1 = tu_tensor(be, LG_F32, 4, sx1, NULL);
  assert_int_equal(lg_taehv_decode(s, &z, &x4), LG_EINVAL); /* first call gives 1 frame */
  assert_int_equal(lg_taehv_decode(s, &zb, &x1), LG_EINVAL);
  assert_int_equal(lg_taehv_decode(s, &z, &x1), 0);
  assert_int_equal(lg_taehv_decode(s, &z, &x1), LG_EINVAL); /* then 4 */
  assert_int_equal(lg_taehv_decode(s, &z, &x4), 0);
  tu_log_capture(false);
  lg_tensor_free(&z);
  lg_tensor_free(&zb);
  lg_tensor_free(&x4);
  lg_tensor_free(&x1);
  lg_taehv_stream_free(&s);
  lg_taehv_free(&t);
  lg_ckpt_free(&ck);
  remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_taehv_streamed_equals_clip),
      cmocka_unit_test(test_taehv_tgrow_slices_last_channels),
      cmocka_unit_test(test_taehv_bad_inputs),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_vae.c: the Wan VAE (models/wan_vae.c) on tiny random weights (dim 8, the "tiny"
 * model spec) on the CPU backend: streamed encode and decode give the same numbers as the
 * whole-clip paths (which run every layer over all frames at once with zero causal padding, so
 * they check the cache rules), streams are deterministic and reset cleanly, outputs keep their
 * ranges, and bad inputs or checkpoints get clear errors. Test thread. */
#include "test_util.h"

#include "checkpoint.h"
#include "model_spec.h"
#include "wan_vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5
#define HH 32
#define WW 48

static lg_backend *be;
static lg_ckpt *ck;
static lg_wan_vae *vae;
static char ck_path[512];

/* Writes random weights for arch/preset (mean + std*N(0,1) per spec, seeded) to path. When
 * drop is not NULL, tensors whose name starts with drop are left out; when bad is not NULL,
 * that tensor gets its first dim grown by one. */
static void write_random_ckpt(const char *arch, const char *path, uint64_t seed, const char *drop,
                              const char *bad) {
  lg_tensor_spec *sp = NULL;
  int n = 0;
  char err[256];
  assert_int_equal(lg_model_spec(arch, "tiny", &sp, &n, err, sizeof err), 0);
  const char **names = calloc((size_t)n, sizeof *names);
  lg_tensor *ts = calloc((size_t)n, sizeof *ts);
  assert_non_null(names);
  assert_non_null(ts);
  lg_rng r;
  lg_rng_seed(&r, seed);
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (drop && !strncmp(sp[i].name, drop, strlen(drop))) continue;
    int64_t shape[LG_MAX_DIMS];
    memcpy(shape, sp[i].shape, sizeof shape);
    if (bad && !strcmp(sp[i].name, bad)) shape[0]++;
    lg_tensor t = lg_tensor_make(NULL, NULL, LG_F32, sp[i].ndim, shape);
    size_t ne = (size_t)lg_tensor_numel(&t);
    float *d = malloc(ne * sizeof *d + 4);
    assert_non_null(d);
    for (size_t k = 0; k < ne; k++)
      d[k] = sp[i].mean + sp[i].std * (float)lg_rng_normal(&r);
    t.data = d;
    names[m] = sp[i].name;
    ts[m++] = t;
  }
  assert_int_equal(lg_safetensors_write(path, names, ts, m, NULL, 0), 0);
  for (int i = 0; i < m; i++)
    free(ts[i].data);
  free(ts);
  free(names);
  free(sp);
}

static int setup(void **state) {
  (void)state;
  be = lg_backend_new_cpu(2);
  if (!be) return -1;
  snprintf(ck_path, sizeof ck_path, "%s/test_vae_tiny.safetensors", LG_BINARY_DIR);
  write_random_ckpt("wan-vae", ck_path, 11, NULL, NULL);
  char err[256];
  ck = lg_ckpt_open(ck_path, err, sizeof err);
  if (!ck) return -1;
  vae = lg_wan_vae_load(be, ck, err, sizeof err);
  if (!vae) fprintf(stderr, "%s\n", err);
  return vae ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  lg_wan_vae_free(&vae);
  lg_ckpt_free(&ck);
  lg_backend_free(&be);
  remove(ck_path);
  return 0;
}

/* max|a-b| / max|b| over n, and a check that b is finite and not trivially small. */
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

/* Streams 1+4+4 frames through the encoder; returns mu of the 3 calls [3,h,w,16]. */
static float *encode_streamed(lg_vae_stream *s, const float *pix) {
  int64_t h = HH / 8, w = WW / 8, fr = (int64_t)HH * WW * 3, lat = h * w * 16;
  int64_t smu[4] = {1, h, w, 16};
  lg_tensor mu = tu_tensor(be, LG_F32, 4, smu, NULL);
  float *out = malloc((size_t)(3 * lat) * sizeof *out);
  assert_non_null(out);
  int64_t start = 0;
  for (int k = 0; k < 3; k++) {
    int64_t T = k ? 4 : 1, sx[4] = {T, HH, WW, 3};
    lg_tensor x = tu_tensor(be, LG_F32, 4, sx, pix + start * fr);
    assert_int_equal(lg_wan_vae_encode(s, &x, &mu), 0);
    float *m = tu_download(&mu);
    memcpy(out + k * lat, m, (size_t)lat * sizeof *m);
    free(m);
    lg_tensor_free(&x);
    start += T;
  }
  lg_tensor_free(&mu);
  return out;
}

static float *random_pixels(uint64_t seed, size_t n) {
  lg_rng r;
  lg_rng_seed(&r, seed);
  float *p = malloc(n * sizeof *p);
  assert_non_null(p);
  tu_fill_uniform(&r, p, n, -1.0f, 1.0f);
  return p;
}

static void test_vae_encode_streamed_equals_clip(void **state) {
  (void)state;
  int64_t h = HH / 8, w = WW / 8, fr = (int64_t)HH * WW * 3, lat = h * w * 16;
  float *pix = random_pixels(5, (size_t)(9 * fr));
  lg_vae_stream *s = lg_vae_stream_new(vae, HH, WW);
  assert_non_null(s);
  float *st = encode_streamed(s, pix);
  int64_t sx[4] = {9, HH, WW, 3}, sm[4] = {3, h, w, 16};
  lg_tensor x = tu_tensor(be, LG_F32, 4, sx, pix), mu = tu_tensor(be, LG_F32, 4, sm, NULL);
  assert_int_equal(lg_wan_vae_encode_clip(vae, &x, &mu), 0);
  float *cl = tu_download(&mu);
  double e = rel_err(st, cl, (size_t)(3 * lat));
  printf("encode streamed vs clip: rel err %.3g\n", e);
  assert_true(e < TOL);
  free(cl);
  free(st);
  free(pix);
  lg_tensor_free(&x);
  lg_tensor_free(&mu);
  lg_vae_stream_free(&s);
  assert_null(s);
}

static void test_vae_decode_streamed_equals_clip(void **state) {
  (void)state;
  int64_t h = HH / 8, w = WW / 8, lat = h * w * 16, fr = (int64_t)HH * WW * 3;
  lg_rng r;
  lg_rng_seed(&r, 9);
  float *z = malloc((size_t)(3 * lat) * sizeof *z);
  assert_non_null(z);
  tu_fill_normal(&r, z, (size_t)(3 * lat), 1.0f);
  lg_vae_stream *s = lg_vae_stream_new(vae, HH, WW);
  assert_non_null(s);
  float *st = malloc((size_t)(9 * fr) * sizeof *st);
  assert_non_null(st);
  int64_t at = 0;
  for (int k = 0; k < 3; k++) {
    int64_t T = k ? 4 : 1, sz[4] = {1, h, w, 16}, sx[4] = {T, HH, WW, 3};
    lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z + k * lat),
              x = tu_tensor(be, LG_F32, 4, sx, NULL);
    assert_int_equal(lg_wan_vae_decode(s, &zt, &x), 0);
    float *d = tu_download(&x);
    memcpy(st + at * fr, d, (size_t)(T * fr) * sizeof *d);
    at += T;
    free(d);
    lg_tensor_free(&zt);
    lg_tensor_free(&x);
  }
  int64_t sz[4] = {3, h, w, 16}, sx[4] = {9, HH, WW, 3};
  lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z), x = tu_tensor(be, LG_F32, 4, sx, NULL);
  assert_int_equal(lg_wan_vae_decode_clip(vae, &zt, &x), 0);
  float *cl = tu_download(&x);
  double e = rel_err(st, cl, (size_t)(9 * fr));
  printf("decode streamed vs clip: rel err %.3g\n", e);
  assert_true(e < TOL);
  for (int64_t i = 0; i < 9 * fr; i++)
    assert_true(st[i] >= -1.0f && st[i] <= 1.0f);
  free(cl);
  free(st);
  free(z);
  lg_tensor_free(&zt);
  lg_tensor_free(&x);
  lg_vae_stream_free(&s);
}

/* Two streams give bit-identical results; after reset a stream repeats its first results; a
 * stream that both encodes and decodes keeps the two caches apart. */
static void test_vae_deterministic_and_reset(void **state) {
  (void)state;
  int64_t h = HH / 8, w = WW / 8, fr = (int64_t)HH * WW * 3, lat = h * w * 16;
  float *pix = random_pixels(7, (size_t)(9 * fr));
  lg_vae_stream *a = lg_vae_stream_new(vae, HH, WW), *b = lg_vae_stream_new(vae, HH, WW);
  assert_non_null(a);
  assert_non_null(b);
  float *ea = encode_streamed(a, pix), *eb = encode_streamed(b, pix);
  assert_memory_equal(ea, eb, (size_t)(3 * lat) * sizeof(float));
  /* interleave decodes on stream a, then reset and encode again: same as before */
  int64_t sz[4] = {1, h, w, 16}, sx1[4] = {1, HH, WW, 3}, sx4[4] = {4, HH, WW, 3};
  lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, ea), x1 = tu_tensor(be, LG_F32, 4, sx1, NULL);
  lg_tensor x4 = tu_tensor(be, LG_F32, 4, sx4, NULL);
  assert_int_equal(lg_wan_vae_decode(a, &zt, &x1), 0);
  float *d1 = tu_download(&x1);
  assert_int_equal(lg_vae_stream_reset(a), 0);
  float *ec = encode_streamed(a, pix);
  assert_memory_equal(ea, ec, (size_t)(3 * lat) * sizeof(float));
  /* decoding after the encodes (decode cache still at its start after the reset) */
  assert_int_equal(lg_wan_vae_decode(a, &zt, &x1), 0);
  float *d2 = tu_download(&x1);
  assert_memory_equal(d1, d2, (size_t)fr * sizeof(float));
  /* second decode call gives 4 frames; 1 frame is refused */
  tu_log_capture(true);
  assert_int_equal(lg_wan_vae_decode(a, &zt, &x1), LG_EINVAL);
  tu_log_capture(false);
  assert_int_equal(lg_wan_vae_decode(a, &zt, &x4), 0);
  free(d1);
  free(d2);
  free(ea);
  free(eb);
  free(ec);
  free(pix);
  lg_tensor_free(&zt);
  lg_tensor_free(&x1);
  lg_tensor_free(&x4);
  lg_vae_stream_free(&a);
  lg_vae_stream_free(&b);
}

/* A decode-only stream is smaller, decodes the same frames and refuses to encode. */
static void test_vae_decode_only_stream(void **state) {
  (void)state;
  int64_t h = HH / 8, w = WW / 8, fr = (int64_t)HH * WW * 3;
  lg_vae_stream *both = lg_vae_stream_new(vae, HH, WW);
  lg_vae_stream *dec = lg_vae_stream_new_for(vae, HH, WW, LG_VAE_DECODE);
  assert_non_null(both);
  assert_non_null(dec);
  assert_true(lg_vae_stream_bytes(dec) < lg_vae_stream_bytes(both));
  lg_rng r;
  lg_rng_seed(&r, 13);
  float z[(HH / 8) * (WW / 8) * 16];
  int64_t sz[4] = {1, h, w, 16}, sx1[4] = {1, HH, WW, 3}, sx4[4] = {4, HH, WW, 3};
  lg_tensor x1 = tu_tensor(be, LG_F32, 4, sx1, NULL), x4 = tu_tensor(be, LG_F32, 4, sx4, NULL);
  for (int k = 0; k < 2; k++) {
    tu_fill_normal(&r, z, sizeof z / sizeof z[0], 1.0f);
    lg_tensor zt = tu_tensor(be, LG_F32, 4, sz, z), *x = k ? &x4 : &x1;
    assert_int_equal(lg_wan_vae_decode(both, &zt, x), 0);
    float *a = tu_download(x);
    assert_int_equal(lg_wan_vae_decode(dec, &zt, x), 0);
    float *b = tu_download(x);
    assert_memory_equal(a, b, (size_t)((k ? 4 : 1) * fr) * sizeof(float));
    free(a);
    free(b);
    lg_tensor_free(&zt);
  }
  int64_t sm[4] = {1, h, w, 16};
  lg_tensor mu = tu_tensor(be, LG_F32, 4, sm, NULL);
  tu_log_capture(true);
  assert_int_equal(lg_wan_vae_encode(dec, &x1, &mu), LG_ENOTSUP);
  assert_null(lg_vae_stream_new_for(vae, HH, WW, 0));
  tu_log_capture(false);
  lg_tensor_free(&mu);
  lg_tensor_free(&x1);
  lg_tensor_free(&x4);
  lg_vae_stream_free(&both);
  lg_vae_stream_free(&dec);
}

static void test_vae_bad_inputs(void **state) {
  (void)state;
  tu_log_capture(true);
  assert_null(lg_vae_stream_new(vae, 30, 32));
  lg_vae_stream *s = lg_vae_stream_new(vae, HH, WW);
  assert_non_null(s);
  int64_t sx4[4] = {4, HH, WW, 3}, sm[4] = {1, HH / 8, WW / 8, 16}, sx_bad[4] = {1, HH, WW + 8, 3};
  lg_tensor x4 = tu_tensor(be, LG_F32, 4, sx4, NULL), mu = tu_tensor(be, LG_F32, 4, sm, NULL);
  lg_tensor xb = tu_tensor(be, LG_F32, 4, sx_bad, NULL);
  /* the first call takes 1 frame */
  assert_int_equal(lg_wan_vae_encode(s, &x4, &mu), LG_EINVAL);
  assert_int_equal(lg_wan_vae_encode(s, &xb, &mu), LG_EINVAL);
  assert_int_equal(lg_wan_vae_encode_clip(vae, &x4, &mu), LG_EINVAL); /* 4 is not 1+4k */
  tu_log_capture(false);
  lg_tensor_free(&x4);
  lg_tensor_free(&mu);
  lg_tensor_free(&xb);
  lg_vae_stream_free(&s);
}

/* A misshapen tensor and a missing one are named in the error. */
static void test_vae_load_errors_name_the_tensor(void **state) {
  (void)state;
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/test_vae_bad.safetensors", LG_BINARY_DIR);
  write_random_ckpt("wan-vae", path, 3, NULL, "decoder.upsamples.4.shortcut.weight");
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  tu_log_capture(true);
  assert_null(lg_wan_vae_load(be, c, err, sizeof err));
  tu_log_capture(false);
  assert_non_null(strstr(err, "decoder.upsamples.4.shortcut.weight"));
  lg_ckpt_free(&c);
  write_random_ckpt("wan-vae", path, 3, "decoder.middle.1.proj", NULL);
  c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  tu_log_capture(true);
  assert_null(lg_wan_vae_load(be, c, err, sizeof err));
  tu_log_capture(false);
  assert_non_null(strstr(err, "decoder.middle.1.proj.weight"));
  assert_non_null(strstr(err, "missing"));
  lg_ckpt_free(&c);
  /* an encoder-only checkpoint loads and refuses to decode */
  write_random_ckpt("wan-vae", path, 3, "decoder.", NULL);
  c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  lg_wan_vae *v = lg_wan_vae_load(be, c, err, sizeof err);
  assert_non_null(v);
  assert_true(lg_wan_vae_has_encoder(v));
  assert_false(lg_wan_vae_has_decoder(v));
  assert_int_equal(lg_wan_vae_dim(v), 8);
  lg_vae_stream *s = lg_vae_stream_new(v, HH, WW);
  assert_non_null(s);
  int64_t sz[4] = {1, HH / 8, WW / 8, 16}, sx[4] = {1, HH, WW, 3};
  lg_tensor z = tu_tensor(be, LG_F32, 4, sz, NULL), x = tu_tensor(be, LG_F32, 4, sx, NULL);
  tu_log_capture(true);
  assert_int_equal(lg_wan_vae_decode(s, &z, &x), LG_ENOTSUP);
  tu_log_capture(false);
  lg_tensor_free(&z);
  lg_tensor_free(&x);
  lg_vae_stream_free(&s);
  lg_wan_vae_free(&v);
  assert_null(v);
  lg_ckpt_free(&c);
  remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vae_encode_streamed_equals_clip),
      cmocka_unit_test(test_vae_decode_streamed_equals_clip),
      cmocka_unit_test(test_vae_deterministic_and_reset),
      cmocka_unit_test(test_vae_decode_only_stream),
      cmocka_unit_test(test_vae_bad_inputs),
      cmocka_unit_test(test_vae_load_errors_name_the_tensor),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

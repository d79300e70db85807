/* test_util.c: shared helpers for the cmocka unit tests (see test_util.h). Test thread. */
#include "test_util.h"

#include "model_spec.h"
#include "checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tu_fill_uniform(lg_rng *r, float *dst, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    dst[i] = lo + (hi - lo) * (float)lg_rng_uniform(r);
}

void tu_fill_normal(lg_rng *r, float *dst, size_t n, float stddev) {
  for (size_t i = 0; i < n; i++)
    dst[i] = stddev * (float)lg_rng_normal(r);
}

float tu_round(lg_dtype dt, float v) {
  switch (dt) {
  case LG_F16: return lg_f16_to_f32(lg_f32_to_f16(v));
  case LG_BF16: return lg_bf16_to_f32(lg_f32_to_bf16(v));
  default: return v;
  }
}

lg_tensor tu_tensor(lg_backend *be, lg_dtype dt, int ndim, const int64_t *shape,
                    const float *host) {
  lg_tensor t;
  int err = lg_tensor_alloc(be, &t, dt, ndim, shape);
  if (err) fail_msg("tu_tensor: alloc failed: %s", lg_strerror(err));
  if (host)
    err = lg_tensor_upload_f32(&t, host);
  else
    err = be->ops->memset0(be, t.data, lg_tensor_nbytes(&t));
  if (err) fail_msg("tu_tensor: upload failed: %s", lg_strerror(err));
  return t;
}

lg_tensor tu_tensor_rand(lg_backend *be, lg_rng *r, lg_dtype dt, int ndim, const int64_t *shape,
                         float **vals) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!v) fail_msg("tu_tensor_rand: out of memory");
  tu_fill_uniform(r, v, (size_t)n, -1.0f, 1.0f);
  for (int64_t i = 0; i < n; i++)
    v[i] = tu_round(dt, v[i]);
  lg_tensor t = tu_tensor(be, dt, ndim, shape, v);
  if (vals)
    *vals = v;
  else
    free(v);
  return t;
}

float *tu_download(const lg_tensor *t) {
  int64_t n = lg_tensor_numel(t);
  float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!v) fail_msg("tu_download: out of memory");
  int err = lg_tensor_download_f32(t, v);
  if (err) fail_msg("tu_download: %s", lg_strerror(err));
  return v;
}

double tu_max_abs_err(const float *got, const double *ref, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    if (!(d <= m)) m = d; /* NaN propagates as the maximum */
  }
  return m;
}

double tu_rel_err(const float *got, const double *ref, size_t n) {
  double mr = 0.0;
  for (size_t i = 0; i < n; i++)
    if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
  return tu_max_abs_err(got, ref, n) / (mr > 1e-30 ? mr : 1e-30);
}

double tu_assert_close(const lg_tensor *t, const double *ref, double tol, const char *what) {
  size_t n = (size_t)lg_tensor_numel(t);
  float *got = tu_download(t);
  double e = tu_rel_err(got, ref, n);
  if (!(e <= tol)) {
    size_t worst = 0;
    double wd = -1.0;
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)got[i] - ref[i]);
      if (!(d <= wd)) {
        wd = d;
        worst = i;
      }
    }
    print_error("%s: relative error %.3g > %.3g (worst element %zu: got %.9g, want %.9g)\n", what,
                e, tol, worst, (double)got[worst], ref[worst]);
    free(got);
    fail();
  }
  free(got);
  return e;
}

int tu_write_f32(const char *path, const float *v, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return LG_EIO;
  size_t w = fwrite(v, sizeof(float), n, f);
  int rc = fclose(f);
  return (w == n && rc == 0) ? 0 : LG_EIO;
}

float *tu_read_f32(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  float *v = NULL;
  long sz = -1;
  if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
  if (sz < 0 || sz % 4 != 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
  v = malloc(sz > 0 ? (size_t)sz : 1);
  if (!v || fread(v, 1, (size_t)sz, f) != (size_t)sz) goto fail;
  fclose(f);
  *n = (size_t)sz / 4;
  return v;
fail:
  free(v);
  fclose(f);
  return NULL;
}

static char tu_log_buf[16384];
static size_t tu_log_len;

static void tu_log_sink(lg_log_level level, const char *module, const char *msg, void *user) {
  (void)level;
  (void)user;
  int w =
      snprintf(tu_log_buf + tu_log_len, sizeof tu_log_buf - tu_log_len, "%s: %s\n", module, msg);
  if (w > 0) {
    tu_log_len += (size_t)w;
    if (tu_log_len >= sizeof tu_log_buf) tu_log_len = sizeof tu_log_buf - 1;
  }
}

void tu_log_capture(bool on) {
  if (on) {
    tu_log_len = 0;
    tu_log_buf[0] = 0;
    lg_log_set_callback(tu_log_sink, NULL);
  } else {
    lg_log_set_callback(NULL, NULL);
  }
}

const char *tu_log_text(void) {
  return tu_log_buf;
}

void tu_write_tiny_dit(const char *path, int layers, uint64_t seed) {
  lg_tensor_spec *sp = NULL;
  int n = 0;
  char err[256];
  assert_int_equal(lg_model_spec("wan-dit", "tiny", &sp, &n, err, sizeof err), 0);
  int cap = n * layers;
  char **names = calloc((size_t)cap, sizeof *names);
  lg_tensor *ts = calloc((size_t)cap, sizeof *ts);
  lg_rng r;
  lg_rng_seed(&r, seed);
  int k = 0;
  for (int i = 0; i < n; i++) {
    bool blk = !strncmp(sp[i].name, "blocks.", 7);
    if (blk && strncmp(sp[i].name, "blocks.0.", 9)) continue; /* blocks.1.*: from blocks.0 */
    for (int l = 0; l < (blk ? layers : 1); l++) {
      names[k] = malloc(128);
      if (blk)
        snprintf(names[k], 128, "blocks.%d.%s", l, sp[i].name + 9);
      else
        snprintf(names[k], 128, "%s", sp[i].name);
      ts[k] = lg_tensor_make(NULL, NULL, LG_F32, sp[i].ndim, sp[i].shape);
      size_t ne = (size_t)lg_tensor_numel(&ts[k]);
      float *b = malloc(ne * sizeof(float));
      for (size_t j = 0; j < ne; j++)
        b[j] = sp[i].mean + sp[i].std * (float)lg_rng_normal(&r);
      ts[k].data = b;
      k++;
    }
  }
  assert_int_equal(lg_safetensors_write(path, (const char *const *)names, ts, k, NULL, 0), 0);
  for (int i = 0; i < k; i++) {
    free(names[i]);
    free(ts[i].data);
  }
  free(names);
  free(ts);
  free(sp);
}

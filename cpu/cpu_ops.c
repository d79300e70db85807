/* cpu_ops.c: the row-wise and elementwise ops of the fp32 reference backend: copy, unary,
 * axpby, layer_norm, rms_norm, channel_rms_norm, modulate, gated_add, upsample2x,
 * cosine_mean, sq_diff_sum. Rows are all leading dims flattened (any strides); the last dim
 * may have any stride too (non-F32 or strided rows go through per-thread scratch). Runs on
 * the backend's thread, parallel over rows with OpenMP.
 * Semantics worth knowing: norm statistics are accumulated in double; layer_norm/modulate use
 * the biased variance with eps inside the sqrt; cosine_mean follows torch
 * F.cosine_similarity(eps=1e-8) with each norm clamped separately:
 * dot / (max(||a||, 1e-8) * max(||b||, 1e-8)), averaged over rows in double. */
#include "cpu_internal.h"

#include <string.h>

/* Parallelise only when a call has enough elements to pay for the fork. */
#define CPU_PAR_MIN 16384

/* ---- copy: any shape, any strides, any dtype pair ---- */
int cpu_copy(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  if (!y || !x || !y->data || !x->data || y->ndim < 0 || y->ndim > LG_MAX_DIMS ||
      lg_dtype_size(y->dtype) == 0 || lg_dtype_size(x->dtype) == 0)
    return cpu_bad("copy", "bad tensors", y, x);
  if (!lg_tensor_same_shape(y, x)) return cpu_bad("copy", "shape mismatch", y, x);
  int64_t n = lg_tensor_numel(x);
  if (n <= 0) return 0;
  if (x->ndim == 0) {
    if (x->dtype == LG_I32 && y->dtype == LG_I32)
      *(int32_t *)y->data = *(const int32_t *)x->data;
    else
      cpu_st(y->data, y->dtype, 0, cpu_ld(x->data, x->dtype, 0));
    return 0;
  }
  if (x->dtype == y->dtype && lg_tensor_is_contiguous(x) && lg_tensor_is_contiguous(y)) {
    if (x->data != y->data) memmove(y->data, x->data, (size_t)n * lg_dtype_size(x->dtype));
    return 0;
  }
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  int64_t sx = cpu_inner_stride(x), sy = cpu_inner_stride(y);
  int nt = cpu_nt(be);
  size_t esz = lg_dtype_size(x->dtype);
#pragma omp parallel for num_threads(nt) if (n > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t ox = cpu_row_off(x, r), oy = cpu_row_off(y, r);
    if (x->dtype == y->dtype && sx == 1 && sy == 1) {
      memmove((uint8_t *)y->data + (size_t)oy * esz, (const uint8_t *)x->data + (size_t)ox * esz,
              (size_t)cols * esz);
    } else if (x->dtype == y->dtype && esz == 4) {
      const uint32_t *xs = (const uint32_t *)x->data + ox;
      uint32_t *ys = (uint32_t *)y->data + oy;
      for (int64_t i = 0; i < cols; i++)
        ys[i * sy] = xs[i * sx];
    } else if (x->dtype == y->dtype && esz == 2) {
      const uint16_t *xs = (const uint16_t *)x->data + ox;
      uint16_t *ys = (uint16_t *)y->data + oy;
      for (int64_t i = 0; i < cols; i++)
        ys[i * sy] = xs[i * sx];
    } else {
      for (int64_t i = 0; i < cols; i++)
        cpu_st(y->data, y->dtype, oy + i * sy, cpu_ld(x->data, x->dtype, ox + i * sx));
    }
  }
  return 0;
}

/* Checks y and x are float tensors of the same shape. */
static int check_same(const char *op, const lg_tensor *y, const lg_tensor *x) {
  int err = cpu_check_float(op, "y", y);
  if (!err) err = cpu_check_float(op, "x", x);
  if (err) return err;
  if (!lg_tensor_same_shape(y, x)) return cpu_bad(op, "shape mismatch", y, x);
  return 0;
}

/* Per-thread scratch: `k` rows of `cols` floats per thread. */
static float *thread_scratch(lg_backend *be, int64_t cols, int k, size_t extra, size_t *per,
                             const char *op) {
  *per = cpu_round64((size_t)cols) * (size_t)k;
  return cpu_ws(be, (*per * (size_t)cpu_nt(be) + extra) * sizeof(float), op);
}

int cpu_unary(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha) {
  int err = check_same("unary", y, x);
  if (err) return err;
  if (!cpu_act_valid(act)) {
    LG_ERR("cpu", "unary: unknown activation %d", (int)act);
    return LG_EINVAL;
  }
  if ((act == LG_ACT_TANH_SCALED && !(alpha != 0.0f)) ||
      (act == LG_ACT_CLAMP && !(alpha >= 0.0f))) {
    LG_ERR("cpu", "unary: activation %d needs alpha %s, got %g", (int)act,
           act == LG_ACT_CLAMP ? ">= 0" : "!= 0", alpha);
    return LG_EINVAL;
  }
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per;
  float *scr = thread_scratch(be, cols, 2, 0, &per, "unary");
  if (!scr) return LG_ENOMEM;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, r, s);
    float *yr = cpu_row_out(y, r, s + per / 2);
    for (int64_t i = 0; i < cols; i++)
      yr[i] = cpu_act(xr[i], act, alpha);
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

int cpu_axpby(lg_backend *be, lg_tensor *y, float alpha, const lg_tensor *a, float beta,
              const lg_tensor *b) {
  int err = check_same("axpby", y, a);
  if (!err) err = check_same("axpby", y, b);
  if (err) return err;
  int64_t rows = lg_tensor_rows(y), cols = cpu_cols(y);
  size_t per;
  float *scr = thread_scratch(be, cols, 3, 0, &per, "axpby");
  if (!scr) return LG_ENOMEM;
  size_t one = per / 3;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *ar = cpu_row_in(a, r, s);
    const float *br = cpu_row_in(b, r, s + one);
    float *yr = cpu_row_out(y, r, s + 2 * one);
    for (int64_t i = 0; i < cols; i++)
      yr[i] = alpha * ar[i] + beta * br[i];
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

/* Loads an optional per-column vector (w, b, gamma) of n elements into dst; returns 1 when
 * present, 0 when t is NULL, LG_EINVAL on a size mismatch. */
static int load_opt_vec(const char *op, const char *name, const lg_tensor *t, int64_t n, float *dst,
                        const lg_tensor *x) {
  if (!t) return 0;
  int err = cpu_check_float(op, name, t);
  if (err) return err;
  if (lg_tensor_numel(t) != n) {
    char what[96];
    snprintf(what, sizeof what, "%s must have %lld elements (last dim of x)", name, (long long)n);
    return cpu_bad(op, what, t, x);
  }
  cpu_load_vec(t, n, dst);
  return 1;
}

int cpu_layer_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                   const lg_tensor *b, float eps) {
  int err = check_same("layer_norm", y, x);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 2, 2 * c64, &per, "layer_norm");
  if (!scr) return LG_ENOMEM;
  float *wv = scr + per * (size_t)cpu_nt(be), *bv = wv + c64;
  int hw = load_opt_vec("layer_norm", "w", w, cols, wv, x);
  int hb = load_opt_vec("layer_norm", "b", b, cols, bv, x);
  if (hw < 0) return hw;
  if (hb < 0) return hb;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, r, s);
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < cols; i++)
      mean += xr[i];
    mean /= (double)(cols ? cols : 1);
    for (int64_t i = 0; i < cols; i++) {
      double d = xr[i] - mean;
      var += d * d;
    }
    var /= (double)(cols ? cols : 1);
    float m = (float)mean, rs = (float)(1.0 / sqrt(var + (double)eps));
    float *yr = cpu_row_out(y, r, s + c64);
    for (int64_t i = 0; i < cols; i++) {
      float v = (xr[i] - m) * rs;
      if (hw) v *= wv[i];
      if (hb) v += bv[i];
      yr[i] = v;
    }
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

int cpu_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w, float eps) {
  int err = check_same("rms_norm", y, x);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 2, c64, &per, "rms_norm");
  if (!scr) return LG_ENOMEM;
  float *wv = scr + per * (size_t)cpu_nt(be);
  int hw = load_opt_vec("rms_norm", "w", w, cols, wv, x);
  if (hw < 0) return hw;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, r, s);
    double ss = 0.0;
    for (int64_t i = 0; i < cols; i++)
      ss += (double)xr[i] * xr[i];
    float rs = (float)(1.0 / sqrt(ss / (double)(cols ? cols : 1) + (double)eps));
    float *yr = cpu_row_out(y, r, s + c64);
    for (int64_t i = 0; i < cols; i++)
      yr[i] = hw ? xr[i] * rs * wv[i] : xr[i] * rs;
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

int cpu_channel_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *gamma) {
  int err = check_same("channel_rms_norm", y, x);
  if (err) return err;
  if (!gamma) {
    LG_ERR("cpu", "channel_rms_norm: gamma is NULL");
    return LG_EINVAL;
  }
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 2, c64, &per, "channel_rms_norm");
  if (!scr) return LG_ENOMEM;
  float *gv = scr + per * (size_t)cpu_nt(be);
  int hg = load_opt_vec("channel_rms_norm", "gamma", gamma, cols, gv, x);
  if (hg < 0) return hg;
  float sc = sqrtf((float)cols);
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, r, s);
    double ss = 0.0;
    for (int64_t i = 0; i < cols; i++)
      ss += (double)xr[i] * xr[i];
    double nrm = sqrt(ss);
    float f = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12)) * sc;
    float *yr = cpu_row_out(y, r, s + c64);
    for (int64_t i = 0; i < cols; i++)
      yr[i] = xr[i] * f * gv[i];
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

/* shift/scale/gate: [R/group, D] by rows (any leading shape and strides). */
static int check_grouped(const char *op, const char *name, const lg_tensor *t, const lg_tensor *x,
                         int64_t group) {
  int err = cpu_check_float(op, name, t);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x);
  if (group < 1 || rows % group != 0) {
    char what[96];
    snprintf(what, sizeof what, "group %lld must be >= 1 and divide the %lld rows of x",
             (long long)group, (long long)rows);
    return cpu_bad(op, what, x, t);
  }
  if (lg_tensor_rows(t) != rows / group || cpu_cols(t) != cpu_cols(x)) {
    char what[96];
    snprintf(what, sizeof what, "%s must be [%lld rows, %lld] (rows/group %lld)", name,
             (long long)(rows / group), (long long)cpu_cols(x), (long long)group);
    return cpu_bad(op, what, t, x);
  }
  return 0;
}

int cpu_modulate(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
                 const lg_tensor *scale, int64_t group, bool ln, float eps) {
  int err = check_same("modulate", y, x);
  if (!err) err = check_grouped("modulate", "shift", shift, x, group);
  if (!err) err = check_grouped("modulate", "scale", scale, x, group);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 4, 0, &per, "modulate");
  if (!scr) return LG_ENOMEM;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, r, s);
    const float *sh = cpu_row_in(shift, r / group, s + c64);
    const float *sc = cpu_row_in(scale, r / group, s + 2 * c64);
    float m = 0.0f, rs = 1.0f;
    if (ln) {
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < cols; i++)
        mean += xr[i];
      mean /= (double)(cols ? cols : 1);
      for (int64_t i = 0; i < cols; i++) {
        double d = xr[i] - mean;
        var += d * d;
      }
      var /= (double)(cols ? cols : 1);
      m = (float)mean;
      rs = (float)(1.0 / sqrt(var + (double)eps));
    }
    float *yr = cpu_row_out(y, r, s + 3 * c64);
    for (int64_t i = 0; i < cols; i++) {
      float v = ln ? (xr[i] - m) * rs : xr[i];
      yr[i] = v * (1.0f + sc[i]) + sh[i];
    }
    cpu_row_commit(y, r, yr);
  }
  return 0;
}

int cpu_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                  int64_t group) {
  int err = check_same("gated_add", x, y);
  if (!err && gate) err = check_grouped("gated_add", "gate", gate, x, group);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 3, 0, &per, "gated_add");
  if (!scr) return LG_ENOMEM;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *yr = cpu_row_in(y, r, s);
    /* x is read and written: read it into scratch unless it is F32 contiguous */
    const float *xi = cpu_row_in(x, r, s + c64);
    float *xo = cpu_row_out(x, r, s + c64);
    if (gate) {
      const float *g = cpu_row_in(gate, r / group, s + 2 * c64);
      for (int64_t i = 0; i < cols; i++)
        xo[i] = xi[i] + g[i] * yr[i];
    } else {
      for (int64_t i = 0; i < cols; i++)
        xo[i] = xi[i] + yr[i];
    }
    cpu_row_commit(x, r, xo);
  }
  return 0;
}

/* x [T,H,W,C] or [B,T,H,W,C] -> y [.., 2H, 2W, C] (nearest). */
int cpu_upsample2x(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = cpu_check_float("upsample2x", "y", y);
  if (!err) err = cpu_check_float("upsample2x", "x", x);
  if (err) return err;
  int nd = x->ndim;
  bool ok = (nd == 4 || nd == 5) && y->ndim == nd;
  for (int i = 0; ok && i < nd; i++) {
    int64_t want = (i == nd - 3 || i == nd - 2) ? 2 * x->ne[i] : x->ne[i];
    if (y->ne[i] != want) ok = false;
  }
  if (!ok) return cpu_bad("upsample2x", "need x [(B,)T,H,W,C] and y [(B,)T,2H,2W,C]", y, x);
  int64_t C = x->ne[nd - 1], W = x->ne[nd - 2];
  int64_t yrows = lg_tensor_rows(y); /* (B*)T*2H*2W */
  size_t per;
  float *scr = thread_scratch(be, C, 1, 0, &per, "upsample2x");
  if (!scr) return LG_ENOMEM;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (yrows * C > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < yrows; r++) {
    /* y row r = ((bt*2H + h2)*2W + w2); x row = (bt*H + h2/2)*W + w2/2 */
    int64_t w2 = r % (2 * W), rest = r / (2 * W);
    int64_t h2 = rest % (2 * x->ne[nd - 3]), bt = rest / (2 * x->ne[nd - 3]);
    int64_t xr_i = (bt * x->ne[nd - 3] + h2 / 2) * W + w2 / 2;
    float *s = scr + per * (size_t)cpu_tid();
    const float *xr = cpu_row_in(x, xr_i, s);
    if (y->dtype == LG_F32 && cpu_inner_stride(y) == 1) {
      memcpy((float *)y->data + cpu_row_off(y, r), xr, (size_t)C * sizeof(float));
    } else {
      cpu_row_commit(y, r, xr);
    }
  }
  return 0;
}

int cpu_cosine_mean(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b) {
  int err = check_same("cosine_mean", a, b);
  if (err) return err;
  if (!out) {
    LG_ERR("cpu", "cosine_mean: out is NULL");
    return LG_EINVAL;
  }
  int64_t rows = lg_tensor_rows(a), cols = cpu_cols(a);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 2, 0, &per, "cosine_mean");
  if (!scr) return LG_ENOMEM;
  double sum = 0.0;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)          \
    reduction(+ : sum)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *ar = cpu_row_in(a, r, s);
    const float *br = cpu_row_in(b, r, s + c64);
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t i = 0; i < cols; i++) {
      ab += (double)ar[i] * br[i];
      aa += (double)ar[i] * ar[i];
      bb += (double)br[i] * br[i];
    }
    /* torch F.cosine_similarity (eps 1e-8): each norm clamped separately */
    double na = sqrt(aa), nb = sqrt(bb);
    sum += ab / ((na > 1e-8 ? na : 1e-8) * (nb > 1e-8 ? nb : 1e-8));
  }
  *out = rows > 0 ? sum / (double)rows : 0.0;
  return 0;
}

int cpu_sq_diff_sum(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b) {
  int err = check_same("sq_diff_sum", a, b);
  if (err) return err;
  if (!out) {
    LG_ERR("cpu", "sq_diff_sum: out is NULL");
    return LG_EINVAL;
  }
  int64_t rows = lg_tensor_rows(a), cols = cpu_cols(a);
  size_t per, c64 = cpu_round64((size_t)cols);
  float *scr = thread_scratch(be, cols, 2, 0, &per, "sq_diff_sum");
  if (!scr) return LG_ENOMEM;
  double sum = 0.0;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)          \
    reduction(+ : sum)
  for (int64_t r = 0; r < rows; r++) {
    float *s = scr + per * (size_t)cpu_tid();
    const float *ar = cpu_row_in(a, r, s);
    const float *br = cpu_row_in(b, r, s + c64);
    double acc = 0.0;
    for (int64_t i = 0; i < cols; i++) {
      double d = (double)ar[i] - (double)br[i];
      acc += d * d;
    }
    sum += acc;
  }
  *out = sum;
  return 0;
}

/* ---- pixel mapping (engine input/output): U8 <-> [-1,1] floats, any strides ---- */
static int check_pixels(const char *op, const lg_tensor *fl, const lg_tensor *u8) {
  int err = cpu_check_float(op, "float side", fl);
  if (err) return err;
  if (!u8 || !u8->data || u8->dtype != LG_U8 || u8->ndim != fl->ndim)
    return cpu_bad(op, "the other side must be U8 of the same rank", fl, u8);
  if (!lg_tensor_same_shape(fl, u8)) return cpu_bad(op, "shape mismatch", fl, u8);
  return 0;
}

/* y [..] F32/F16/BF16 = x [..] U8 * (2/255) - 1, in double, rounded once to float. */
int cpu_pixels_from_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = check_pixels("pixels_from_u8", y, x);
  if (err) return err;
  int64_t rows = lg_tensor_rows(y), cols = cpu_cols(y);
  int64_t sx = cpu_inner_stride(x), sy = cpu_inner_stride(y);
  const uint8_t *xd = (const uint8_t *)x->data;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t ox = cpu_row_off(x, r), oy = cpu_row_off(y, r);
    for (int64_t i = 0; i < cols; i++)
      cpu_st(y->data, y->dtype, oy + i * sy, (float)(xd[ox + i * sx] * (2.0 / 255.0) - 1.0));
  }
  return 0;
}

/* y [..] U8 = round((x + 1) * 127.5) in double, <= 0 -> 0, >= 255 -> 255, NaN -> 0, ties to
 * even (lrint in the default rounding mode). */
int cpu_pixels_to_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = check_pixels("pixels_to_u8", x, y);
  if (err) return err;
  int64_t rows = lg_tensor_rows(x), cols = cpu_cols(x);
  int64_t sx = cpu_inner_stride(x), sy = cpu_inner_stride(y);
  uint8_t *yd = (uint8_t *)y->data;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (rows * cols > CPU_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t ox = cpu_row_off(x, r), oy = cpu_row_off(y, r);
    for (int64_t i = 0; i < cols; i++) {
      double v = ((double)cpu_ld(x->data, x->dtype, ox + i * sx) + 1.0) * 127.5;
      yd[oy + i * sy] = !(v > 0.0) ? 0 : v >= 255.0 ? 255 : (uint8_t)lrint(v);
    }
  }
  return 0;
}

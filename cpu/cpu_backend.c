/* cpu_backend.c: the fp32 reference backend: construction, memory, load_weight, the shared
 * workspace and checks, and the op table. The ops live in cpu_ops.c (copy, elementwise,
 * norms, modulation, reductions, upsample), cpu_matmul.c, cpu_attn.c (attention, rope3d) and
 * cpu_conv.c. Inputs may be F32/F16/BF16 (converted on read), outputs are written in the
 * output tensor's dtype; all math is fp32 (reductions that the header asks for in double are
 * double). Runs on the thread that owns the backend; ops use OpenMP with `nthreads` threads. */
#include "cpu_internal.h"

#include <stdlib.h>
#include <string.h>

static void cpu_destroy(lg_backend *be) {
  if (!be) return;
  cpu_impl *im = be->impl;
  if (im) free(im->ws);
  free(im);
  free(be);
}
static void *cpu_alloc(lg_backend *be, size_t bytes) {
  (void)be;
  void *p = NULL;
  if (posix_memalign(&p, 256, bytes ? bytes : 1)) return NULL;
  return p;
}
static void cpu_free(lg_backend *be, void *p) {
  (void)be;
  free(p);
}
static int cpu_upload(lg_backend *be, void *dst, const void *src, size_t n) {
  (void)be;
  if (n && (!dst || !src)) {
    LG_ERR("cpu", "upload of %zu bytes with a NULL pointer", n);
    return LG_EINVAL;
  }
  if (n) memcpy(dst, src, n);
  return 0;
}
static int cpu_download(lg_backend *be, void *dst, const void *src, size_t n) {
  (void)be;
  if (n && (!dst || !src)) {
    LG_ERR("cpu", "download of %zu bytes with a NULL pointer", n);
    return LG_EINVAL;
  }
  if (n) memcpy(dst, src, n);
  return 0;
}
static int cpu_memset0(lg_backend *be, void *dst, size_t n) {
  (void)be;
  if (n && !dst) {
    LG_ERR("cpu", "memset0 of %zu bytes with a NULL pointer", n);
    return LG_EINVAL;
  }
  if (n) memset(dst, 0, n);
  return 0;
}
static int cpu_sync(lg_backend *be) {
  (void)be;
  return 0;
}

void *cpu_ws(lg_backend *be, size_t bytes, const char *op) {
  cpu_impl *im = be->impl;
  if (bytes <= im->ws_size) return im->ws;
  size_t want = bytes + bytes / 4 + 4096;
  void *p = NULL;
  if (posix_memalign(&p, 256, want)) {
    LG_ERR("cpu", "%s: cannot allocate %zu bytes of workspace", op, want);
    return NULL;
  }
  free(im->ws);
  im->ws = p;
  im->ws_size = want;
  return p;
}

bool cpu_dtype_ok(const lg_tensor *t) {
  return t && t->data && (t->dtype == LG_F32 || t->dtype == LG_F16 || t->dtype == LG_BF16);
}

int cpu_bad(const char *op, const char *what, const lg_tensor *a, const lg_tensor *b) {
  char sa[128] = "-", sb[128] = "-";
  if (a) lg_tensor_shape_str(a, sa, sizeof sa);
  if (b) lg_tensor_shape_str(b, sb, sizeof sb);
  LG_ERR("cpu", "%s: %s (%s, %s)", op, what, sa, sb);
  return LG_EINVAL;
}

int cpu_check_float(const char *op, const char *name, const lg_tensor *t) {
  if (!t) {
    LG_ERR("cpu", "%s: %s is NULL", op, name);
    return LG_EINVAL;
  }
  if (!cpu_dtype_ok(t) || t->ndim < 1 || t->ndim > LG_MAX_DIMS) {
    char s[128];
    LG_ERR("cpu", "%s: %s %s must be F32/F16/BF16 with 1..%d dims and data", op, name,
           lg_tensor_shape_str(t, s, sizeof s), LG_MAX_DIMS);
    return LG_EINVAL;
  }
  for (int i = 0; i < t->ndim; i++) {
    if (t->ne[i] < 0) {
      char s[128];
      LG_ERR("cpu", "%s: %s %s has a negative dimension", op, name,
             lg_tensor_shape_str(t, s, sizeof s));
      return LG_EINVAL;
    }
  }
  return 0;
}

bool cpu_act_valid(lg_act act) {
  return act >= LG_ACT_NONE && act <= LG_ACT_CLAMP;
}

float cpu_act(float x, lg_act act, float alpha) {
  switch (act) {
  case LG_ACT_NONE: return x;
  case LG_ACT_GELU_TANH: {
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const float k = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
  }
  case LG_ACT_SILU: return x / (1.0f + expf(-x));
  case LG_ACT_RELU: return x > 0.0f ? x : 0.0f;
  case LG_ACT_TANH_SCALED: return alpha * tanhf(x / alpha);
  case LG_ACT_CLAMP: return x < -alpha ? -alpha : (x > alpha ? alpha : x);
  }
  return x;
}

/* Host tensor (F32/F16/BF16, any strides) -> backend weight. LINEAR and VECTOR become
 * contiguous F32 of the same shape; CONV is repacked for conv3d (cpu_conv.c). */
static int cpu_load_weight(lg_backend *be, lg_tensor *out, const lg_tensor *host,
                           lg_weight_kind kind) {
  int err = cpu_check_float("load_weight", "host", host);
  if (err) return err;
  if (kind == LG_WEIGHT_CONV) return cpu_load_conv_weight(be, out, host);
  if (kind != LG_WEIGHT_LINEAR && kind != LG_WEIGHT_VECTOR) {
    LG_ERR("cpu", "load_weight: unknown weight kind %d", (int)kind);
    return LG_EINVAL;
  }
  if (kind == LG_WEIGHT_LINEAR && host->ndim != 2)
    return cpu_bad("load_weight", "a LINEAR weight must be 2-d [out,in]", host, NULL);
  err = lg_tensor_alloc(be, out, LG_F32, host->ndim, host->ne);
  if (err) return err;
  lg_tensor src = *host;
  src.be = be; /* host memory is addressable by this backend */
  err = cpu_copy(be, out, &src);
  if (err) lg_tensor_free(out);
  return err;
}

static const lg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .load_weight = cpu_load_weight,
    .copy = cpu_copy,
    .matmul = cpu_matmul,
    .unary = cpu_unary,
    .axpby = cpu_axpby,
    .layer_norm = cpu_layer_norm,
    .rms_norm = cpu_rms_norm,
    .channel_rms_norm = cpu_channel_rms_norm,
    .modulate = cpu_modulate,
    .gated_add = cpu_gated_add,
    .rope3d = cpu_rope3d,
    .attention = cpu_attention,
    .conv3d = cpu_conv3d,
    .upsample2x = cpu_upsample2x,
    .cosine_mean = cpu_cosine_mean,
    .sq_diff_sum = cpu_sq_diff_sum,
    .attention_bias = cpu_attention_bias,
    .pixels_from_u8 = cpu_pixels_from_u8,
    .pixels_to_u8 = cpu_pixels_to_u8,
};

lg_backend *lg_backend_new_cpu(int threads) {
  lg_backend *be = calloc(1, sizeof *be);
  cpu_impl *im = calloc(1, sizeof *im);
  if (!be || !im) {
    LG_ERR("cpu", "cannot allocate the cpu backend");
    free(be);
    free(im);
    return NULL;
  }
#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_num_procs();
#else
  threads = 1;
#endif
  im->nthreads = threads > 0 ? threads : 1;
  be->ops = &cpu_ops;
  be->act_dtype = LG_F32;
  be->impl = im;
  return be;
}

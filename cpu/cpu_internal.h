/* cpu_internal.h: private helpers shared by the cpu_*.c files of the fp32 reference backend:
 * the backend state (thread count, grow-only workspace), element/row access with dtype
 * conversion, shape checks and the 4x8 GEMM micro-kernel used by matmul, attention and conv3d.
 * Not a public header. Runs on the thread that owns the backend; the row helpers are called
 * from inside OpenMP regions and touch only the memory they are given. */
#ifndef LG_CPU_INTERNAL_H
#define LG_CPU_INTERNAL_H

#include "lg_backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct cpu_impl {
  int nthreads;   /* OpenMP threads for this backend's calls (>= 1) */
  void *ws;       /* grow-only workspace (packing, per-thread scratch) */
  size_t ws_size; /* bytes in ws */
} cpu_impl;

static inline int cpu_nt(lg_backend *be) {
  return ((cpu_impl *)be->impl)->nthreads;
}
static inline int cpu_tid(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* Workspace of at least `bytes` (256-byte aligned), valid until the next cpu_ws call. NULL
 * (logged) when allocation fails. Never called inside a parallel region. */
void *cpu_ws(lg_backend *be, size_t bytes, const char *op);

/* Per-thread float scratch carved from one workspace: `per` floats per thread, rounded up to
 * 64 floats so threads never share a cache line. */
static inline size_t cpu_round64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

/* ---- elements ---- */
/* Plain value cast to U8: nearest (ties to even), saturated to [0,255], NaN -> 0. */
static inline uint8_t cpu_f32_to_u8(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 255.0f) return 255;
  return (uint8_t)lrintf(v);
}
static inline float cpu_ld(const void *p, lg_dtype dt, int64_t i) {
  switch (dt) {
  case LG_F32: return ((const float *)p)[i];
  case LG_F16: return lg_f16_to_f32(((const uint16_t *)p)[i]);
  case LG_BF16: return lg_bf16_to_f32(((const uint16_t *)p)[i]);
  case LG_I32: return (float)((const int32_t *)p)[i];
  case LG_U8: return (float)((const uint8_t *)p)[i];
  }
  return 0.0f;
}
static inline void cpu_st(void *p, lg_dtype dt, int64_t i, float v) {
  switch (dt) {
  case LG_F32: ((float *)p)[i] = v; break;
  case LG_F16: ((uint16_t *)p)[i] = lg_f32_to_f16(v); break;
  case LG_BF16: ((uint16_t *)p)[i] = lg_f32_to_bf16(v); break;
  case LG_I32: ((int32_t *)p)[i] = (int32_t)lrintf(v); break;
  case LG_U8: ((uint8_t *)p)[i] = cpu_f32_to_u8(v); break;
  }
}

/* ---- rows: all leading dims flattened, any strides ---- */
static inline int64_t cpu_row_off(const lg_tensor *t, int64_t r) {
  int64_t off = 0;
  for (int i = t->ndim - 2; i >= 0; i--) {
    int64_t n = t->ne[i];
    off += (r % n) * t->nb[i];
    r /= n;
  }
  return off;
}
static inline int64_t cpu_cols(const lg_tensor *t) {
  return t->ndim > 0 ? t->ne[t->ndim - 1] : 1;
}
static inline int64_t cpu_inner_stride(const lg_tensor *t) {
  return t->ndim > 0 ? t->nb[t->ndim - 1] : 1;
}
/* Row r as f32: a pointer into t when it is F32 with a contiguous last dim, else converted
 * into scratch (cols floats). */
static inline const float *cpu_row_in(const lg_tensor *t, int64_t r, float *scratch) {
  int64_t off = cpu_row_off(t, r), n = cpu_cols(t), s = cpu_inner_stride(t);
  if (t->dtype == LG_F32 && s == 1) return (const float *)t->data + off;
  for (int64_t i = 0; i < n; i++)
    scratch[i] = cpu_ld(t->data, t->dtype, off + i * s);
  return scratch;
}
/* Where to write row r: directly into t when F32 and contiguous, else scratch; finish with
 * cpu_row_commit. */
static inline float *cpu_row_out(const lg_tensor *t, int64_t r, float *scratch) {
  if (t->dtype == LG_F32 && cpu_inner_stride(t) == 1) return (float *)t->data + cpu_row_off(t, r);
  return scratch;
}
static inline void cpu_row_commit(const lg_tensor *t, int64_t r, const float *buf) {
  int64_t off = cpu_row_off(t, r), n = cpu_cols(t), s = cpu_inner_stride(t);
  if (t->dtype == LG_F32 && s == 1) return;
  for (int64_t i = 0; i < n; i++)
    cpu_st(t->data, t->dtype, off + i * s, buf[i]);
}

/* Flattened element i (row-major over ne) of any tensor: offset in elements. */
static inline int64_t cpu_elem_off(const lg_tensor *t, int64_t i) {
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t n = t->ne[d];
    off += (i % n) * t->nb[d];
    i /= n;
  }
  return off;
}
/* Reads a whole tensor of exactly n elements (a bias, gamma: any shape) into buf as f32. */
static inline void cpu_load_vec(const lg_tensor *t, int64_t n, float *buf) {
  for (int64_t i = 0; i < n; i++)
    buf[i] = cpu_ld(t->data, t->dtype, cpu_elem_off(t, i));
}

/* ---- checks ---- */
bool cpu_dtype_ok(const lg_tensor *t); /* F32/F16/BF16 with data */
/* Logs "<op>: <what> (x [..] F32, y [..] F32)" and returns LG_EINVAL. */
int cpu_bad(const char *op, const char *what, const lg_tensor *a, const lg_tensor *b);
/* Common checks for tensors given to float ops (non-NULL, float dtype, ndim >= 1). */
int cpu_check_float(const char *op, const char *name, const lg_tensor *t);

float cpu_act(float x, lg_act act, float alpha);
bool cpu_act_valid(lg_act act);

/* ---- GEMM micro-kernel ----
 * acc[i][j] += sum_k a[i][k] * b[k*ldb + j] for i < 4, j < 8. a rows are contiguous over k;
 * b holds 8 contiguous floats per k. Callers pass repeated row pointers for partial tiles and
 * pad b to 8 columns. */
typedef float cpu_v4 __attribute__((vector_size(16))); /* GCC/clang vector extension */
static inline cpu_v4 cpu_ld4(const float *p) {
  cpu_v4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void cpu_st4(float *p, cpu_v4 v) {
  memcpy(p, &v, sizeof v);
}
static inline void cpu_mk_4x8(int64_t kc, const float *a0, const float *a1, const float *a2,
                              const float *a3, const float *b, int64_t ldb, float acc[4][8]) {
  /* 8 accumulators + 2 b vectors + 1 broadcast fit the 16 SSE registers */
  cpu_v4 c00 = cpu_ld4(acc[0]), c01 = cpu_ld4(acc[0] + 4), c10 = cpu_ld4(acc[1]);
  cpu_v4 c11 = cpu_ld4(acc[1] + 4), c20 = cpu_ld4(acc[2]), c21 = cpu_ld4(acc[2] + 4);
  cpu_v4 c30 = cpu_ld4(acc[3]), c31 = cpu_ld4(acc[3] + 4);
  for (int64_t k = 0; k < kc; k++) {
    const float *bk = b + k * ldb;
    cpu_v4 b0 = cpu_ld4(bk), b1 = cpu_ld4(bk + 4), x;
    x = (cpu_v4){a0[k], a0[k], a0[k], a0[k]};
    c00 += x * b0;
    c01 += x * b1;
    x = (cpu_v4){a1[k], a1[k], a1[k], a1[k]};
    c10 += x * b0;
    c11 += x * b1;
    x = (cpu_v4){a2[k], a2[k], a2[k], a2[k]};
    c20 += x * b0;
    c21 += x * b1;
    x = (cpu_v4){a3[k], a3[k], a3[k], a3[k]};
    c30 += x * b0;
    c31 += x * b1;
  }
  cpu_st4(acc[0], c00);
  cpu_st4(acc[0] + 4, c01);
  cpu_st4(acc[1], c10);
  cpu_st4(acc[1] + 4, c11);
  cpu_st4(acc[2], c20);
  cpu_st4(acc[2] + 4, c21);
  cpu_st4(acc[3], c30);
  cpu_st4(acc[3] + 4, c31);
}

/* ---- ops (one file each group) ---- */
int cpu_copy(lg_backend *be, lg_tensor *y, const lg_tensor *x);
int cpu_matmul(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
               const lg_tensor *bias, const lg_matmul_opts *o);
int cpu_unary(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha);
int cpu_axpby(lg_backend *be, lg_tensor *y, float alpha, const lg_tensor *a, float beta,
              const lg_tensor *b);
int cpu_layer_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                   const lg_tensor *b, float eps);
int cpu_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w, float eps);
int cpu_channel_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *gamma);
int cpu_modulate(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
                 const lg_tensor *scale, int64_t group, bool ln, float eps);
int cpu_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                  int64_t group);
int cpu_rope3d(lg_backend *be, lg_tensor *x, int64_t F, int64_t H, int64_t W,
               const int32_t *frame_start);
int cpu_attention(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                  const lg_tensor *v, const int32_t *kv_len, float scale);
int cpu_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                       const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                       float scale); /* cpu_attn_bias.c */
int cpu_conv3d(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
               const lg_tensor *bias, const lg_conv_opts *o);
int cpu_upsample2x(lg_backend *be, lg_tensor *y, const lg_tensor *x);
int cpu_cosine_mean(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b);
int cpu_sq_diff_sum(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b);
int cpu_pixels_from_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x);
int cpu_pixels_to_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x);
/* Conv weight repack (cpu_conv.c): PyTorch [Co,Ci,kt,kh,kw] -> f32 [kt][kh][kw][Ci][Cop]
 * with Cop = Co rounded up to 8; ne stays the PyTorch shape, nb describes the new layout. */
int cpu_load_conv_weight(lg_backend *be, lg_tensor *out, const lg_tensor *host);

#endif

/* cuda_internal.cuh: what the CUDA backend's .cu files share: the backend state (stream,
 * cuBLASLt handle and workspace, scratch buffer, GEMM plan cache, profiler events), the
 * CUDA_CHECK/CUBLAS_CHECK macros and small device helpers (dtype loads and stores, row
 * indexing of strided tensors). Only .cu files include it. Runs on the backend's thread. */
#ifndef LG_CUDA_INTERNAL_CUH
#define LG_CUDA_INTERNAL_CUH

#include "lg_backend.h"
#include "lg_cuda.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define LG_CUDA_MOD "cuda"

#define CUDA_CHECK(stmt)                                                                           \
  do {                                                                                             \
    cudaError_t e_ = (stmt);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      LG_ERR(LG_CUDA_MOD, "%s failed: %s (%s:%d)", #stmt, cudaGetErrorString(e_), __FILE__,        \
             __LINE__);                                                                            \
      err = LG_EBACKEND;                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define CUBLAS_CHECK(stmt)                                                                         \
  do {                                                                                             \
    cublasStatus_t s_ = (stmt);                                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      LG_ERR(LG_CUDA_MOD, "%s failed: status %d (%s:%d)", #stmt, (int)s_, __FILE__, __LINE__);     \
      err = LG_EBACKEND;                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

/* After a kernel launch: catch launch errors at once (bad config, missing image). */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* Programmatic dependent launch (Hopper on): a kernel launched by lg_cuda_launch_pdl may be
 * scheduled while the kernel before it in the stream is still finishing, so its launch and
 * prologue overlap that kernel's tail. Such a kernel must call lg_pdl_wait() before it touches
 * global memory: that waits until the kernel before it has completed and its writes are
 * visible (a no-op when launched without the attribute). LG_PDL=0 launches plainly. */
__device__ __forceinline__ void lg_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
bool lg_cuda_pdl_on(void);
template <typename... KArgs, typename... Args>
static inline cudaError_t lg_cuda_launch_pdl(void (*k)(KArgs...), dim3 grid, dim3 block,
                                             size_t smem, cudaStream_t st, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute at[1];
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = st;
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at, cfg.numAttrs = lg_cuda_pdl_on() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
}

/* Op ids for the profiler's per-op table (names in cuda_backend.cu). */
enum {
  LG_OP_COPY = 0,
  LG_OP_MATMUL,
  LG_OP_UNARY,
  LG_OP_AXPBY,
  LG_OP_LAYER_NORM,
  LG_OP_RMS_NORM,
  LG_OP_CHANNEL_RMS_NORM,
  LG_OP_MODULATE,
  LG_OP_GATED_ADD,
  LG_OP_ROPE3D,
  LG_OP_ATTENTION,
  LG_OP_CONV3D,
  LG_OP_UPSAMPLE2X,
  LG_OP_QK_NORM_ROPE,
  LG_OP_LINEAR_GATED_ADD,
  LG_OP_CHANNEL_RMS_NORM_SILU,
  LG_OP_LINEAR_GATED_ADD_LN,
  LG_OP_LINEAR_GATED_ADD_MOD,
  LG_OP_COUNT
};

/* One cached cuBLASLt plan: layouts, descriptor and the algorithm the heuristic chose. */
typedef struct lg_gemm_plan {
  uint64_t key[8];
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  bool used;
} lg_gemm_plan;

#define LG_GEMM_PLANS 128
#define LG_PROF_EVENTS 8192

typedef struct lg_cuda {
  int device;
  char name[256];
  int sm_count;
  cudaStream_t stream;
  cudaMemPool_t pool;
  cublasLtHandle_t lt;
  void *lt_ws; /* cuBLASLt workspace, allocated once */
  size_t lt_ws_bytes;
  void *scratch; /* grow-only scratch (dtype conversions, im2col); never grows in capture */
  size_t scratch_bytes;
  double *red; /* 2 doubles of device memory for reductions */
  lg_gemm_plan plans[LG_GEMM_PLANS];
  bool capturing;
  /* profiler: pairs of events per op, summed per class at lg_cuda_profile_end */
  bool prof;
  int prof_n;
  cudaEvent_t *prof_ev; /* 2*LG_PROF_EVENTS */
  uint8_t *prof_cls, *prof_op;
  int32_t *prof_tag;         /* 3 per record: the op's shape (matmul M,N,K; attention B,Lq,Lk) */
  int32_t prof_next[3];      /* the tag of the op being recorded (lg_cuda_prof_tag) */
  double op_ms[LG_OP_COUNT]; /* per op kind, from the last profile_end */
  int op_n[LG_OP_COUNT];
  cudaEvent_t marks[16];
  void *fused; /* cuda_fused.cu: linear_gated_add plans (at the first call) */
  void *conv;  /* cuda_conv.cu: cuDNN handle, per-shape plans, workspace (at the first conv) */
} lg_cuda;

static inline lg_cuda *lg_cu(lg_backend *be) {
  return (lg_cuda *)be->impl;
}

/* Scratch of at least `bytes`; grows outside graph capture only. NULL (logged) on failure. */
void *lg_cuda_scratch(lg_backend *be, size_t bytes);

/* Profiler hooks around an op (no-ops unless profiling). */
void lg_cuda_prof_begin(lg_backend *be);
void lg_cuda_prof_end(lg_backend *be, lg_cuda_prof_class cls, int op);
/* The shape the record of the op now being timed is filed under (0 0 0 unless set). */
void lg_cuda_prof_tag(lg_backend *be, int32_t a, int32_t b, int32_t c);

/* ---- device helpers ---- */
__device__ __forceinline__ float lg_ld(const void *p, int dt, int64_t i) {
  switch (dt) {
  case LG_F32: return ((const float *)p)[i];
  case LG_F16: return __half2float(((const __half *)p)[i]);
  case LG_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case LG_U8: return (float)((const uint8_t *)p)[i];
  default: return (float)((const int32_t *)p)[i];
  }
}

__device__ __forceinline__ void lg_st(void *p, int dt, int64_t i, float v) {
  switch (dt) {
  case LG_F32: ((float *)p)[i] = v; break;
  case LG_F16: ((__half *)p)[i] = __float2half_rn(v); break;
  case LG_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
  /* plain value cast: nearest (ties to even), saturated to [0,255], NaN -> 0 */
  case LG_U8:
    ((uint8_t *)p)[i] = !(v > 0.f) ? 0 : v >= 255.f ? 255 : (uint8_t)__float2int_rn(v);
    break;
  default: ((int32_t *)p)[i] = (int32_t)v; break;
  }
}

/* Row addressing of a tensor whose leading dims are flattened into rows (any strides). */
typedef struct lg_rows {
  int nd; /* leading dims (ndim-1), at most 4 */
  int64_t ne[4], nb[4];
} lg_rows;

static inline lg_rows lg_rows_of(const lg_tensor *t) {
  lg_rows r;
  r.nd = t->ndim - 1;
  for (int i = 0; i < 4; i++) {
    r.ne[i] = i < r.nd ? t->ne[i] : 1;
    r.nb[i] = i < r.nd ? t->nb[i] : 0;
  }
  return r;
}

/* Compile-time indices only (unrolled, guarded): a run-time index into the by-value struct
 * would copy it to local memory in every thread. */
__device__ __forceinline__ int64_t lg_row_off(const lg_rows &r, int64_t row) {
  if (r.nd == 1) return row * r.nb[0];
  int64_t off = 0;
#pragma unroll
  for (int i = 3; i >= 0; i--) {
    if (i < r.nd) {
      int64_t q = row / r.ne[i];
      off += (row - q * r.ne[i]) * r.nb[i];
      row = q;
    }
  }
  return off;
}

/* Strided n-d element addressing (up to LG_MAX_DIMS). */
typedef struct lg_nd {
  int nd;
  int64_t ne[LG_MAX_DIMS], nb[LG_MAX_DIMS];
} lg_nd;

static inline lg_nd lg_nd_of(const lg_tensor *t) {
  lg_nd r;
  r.nd = t->ndim;
  for (int i = 0; i < LG_MAX_DIMS; i++) {
    r.ne[i] = i < t->ndim ? t->ne[i] : 1;
    r.nb[i] = i < t->ndim ? t->nb[i] : 0;
  }
  return r;
}

__device__ __forceinline__ int64_t lg_nd_off(const lg_nd &r, int64_t i) {
  int64_t off = 0;
#pragma unroll
  for (int d = LG_MAX_DIMS - 1; d >= 0; d--) {
    if (d < r.nd) {
      int64_t q = i / r.ne[d];
      off += (i - q * r.ne[d]) * r.nb[d];
      i = q;
    }
  }
  return off;
}

static inline int lg_grid1d(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b > (1 << 30)) b = 1 << 30;
  return (int)(b < 1 ? 1 : b);
}

/* Common argument checks; they log and return LG_EINVAL. */
int lg_cuda_check_tensor(const char *op, const char *what, const lg_tensor *t, bool inner_contig);

/* Ops implemented in the other .cu files, wired into the ops table by cuda_backend.cu. */
int lg_cuda_matmul(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
                   const lg_tensor *bias, const lg_matmul_opts *o);
int lg_cuda_gemm_raw(lg_backend *be, int m, int n, int k, const void *a, int64_t lda, int a_dt,
                     bool trans_a, const void *b, int64_t ldb, int b_dt, bool trans_b, void *y,
                     int64_t ldy, int y_dt, const void *bias, int bias_dt, lg_act act,
                     bool accumulate, int batch, int64_t sa, int64_t sb, int64_t sy);
void lg_cuda_gemm_plans_free(lg_cuda *c);
int lg_cuda_layer_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                       const lg_tensor *b, float eps);
int lg_cuda_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                     float eps);
int lg_cuda_channel_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                             const lg_tensor *gamma);
/* channel_rms_norm followed by SiLU (one kernel on the bf16 row path, else the two ops) */
int lg_cuda_channel_rms_norm_silu(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                                  const lg_tensor *gamma);
int lg_cuda_modulate(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
                     const lg_tensor *scale, int64_t group, bool ln, float eps);
int lg_cuda_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                      int64_t group);
int lg_cuda_rope3d(lg_backend *be, lg_tensor *x, int64_t F, int64_t H, int64_t W,
                   const int32_t *frame_start);
int lg_cuda_attention(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                      const lg_tensor *v, const int32_t *kv_len, float scale);
int lg_cuda_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                           const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                           float scale);
int lg_cuda_conv3d(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                   const lg_tensor *bias, const lg_conv_opts *o);
void lg_cuda_conv_free(lg_cuda *c); /* the conv state (cuda_conv.cu), at backend destroy */
/* attention for one wide head (nh 1, head dim > 128) through GEMMs (cuda_attention_gemm.cu) */
bool lg_cuda_attention_gemm_applies(const lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                                    const lg_tensor *v, const int32_t *kv_len);
int lg_cuda_attention_gemm(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                           const lg_tensor *v, const int32_t *kv_len, float scale);
int lg_cuda_copy(lg_backend *be, lg_tensor *y, const lg_tensor *x);
int lg_cuda_unary_act(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha);
/* fused ops (cuda_fused.cu) */
int lg_cuda_qk_norm_rope(lg_backend *be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F,
                         int64_t H, int64_t W, const int32_t *frame_start);
int lg_cuda_cosine_mean_n(lg_backend *be, double *out, int n, const lg_tensor *a,
                          const lg_tensor *b);
int lg_cuda_linear_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                             const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                             lg_tensor *tmp);
int lg_cuda_linear_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                int64_t group, lg_tensor *tmp, lg_tensor *h, const lg_tensor *ln_w,
                                const lg_tensor *ln_b, float eps);
int lg_cuda_linear_gated_add_mod(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                 const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                 int64_t group, lg_tensor *tmp, lg_tensor *h,
                                 const lg_tensor *shift, const lg_tensor *scale, float eps);
/* cuda_norm.cu: x += gate * y, then h = LayerNorm(x) * ln_w + ln_b (mod false; ln_w, ln_b [D]
 * or NULL), or h = LayerNorm(x) * (1 + ln_w[r / group]) + ln_b[r / group] (mod true: ln_w the
 * scale rows, ln_b the shift rows, [R / group, D]), one pass (bf16, rows of 256..2048
 * elements, 16-byte aligned; shapes checked by the caller); LG_ENOTSUP when the tensors do not
 * fit that path. */
int lg_cuda_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                         int64_t group, lg_tensor *h, const lg_tensor *ln_w, const lg_tensor *ln_b,
                         bool mod, float eps);
void lg_cuda_fused_free(lg_cuda *c); /* the fused ops' state, at backend destroy */

#endif

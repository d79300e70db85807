/* cuda_backend.cu: the CUDA backend object: device setup, the stream-ordered memory pool (a
 * cudaMemPool that keeps freed memory cached, so steady-state allocation never reaches the
 * driver), host transfers, load_weight (everything to bf16; conv weights re-laid out
 * channels-last), the simple elementwise ops (copy, unary, axpby, upsample2x, reductions; 16-byte
 * vector paths for contiguous bf16 axpby, channels-last upsample2x and same-dtype strided copies),
 * the profiler, event markers and CUDA graph capture, and the ops table.
 * Runs on the thread that owns the backend (the GPU worker, a test or the benchmark). */
#include "cuda_internal.cuh"

#include <cuda_profiler_api.h>

#include <stdlib.h>
#include <string.h>

#define SCRATCH_INIT (4u << 20)
#define LT_WS_BYTES (8u << 20) /* 8 and 32 MiB measured the same at the DiT shapes */

/* ------------------------------------------------------------------ helpers */

int lg_cuda_check_tensor(const char *op, const char *what, const lg_tensor *t, bool inner_contig) {
  if (!t || !t->data || t->ndim < 1 || t->ndim > LG_MAX_DIMS) {
    LG_ERR(LG_CUDA_MOD, "%s: %s is missing or has a bad rank", op, what);
    return LG_EINVAL;
  }
  if (t->dtype != LG_F32 && t->dtype != LG_BF16 && t->dtype != LG_F16) {
    LG_ERR(LG_CUDA_MOD, "%s: %s has dtype %s (expected F32, F16 or BF16)", op, what,
           lg_dtype_name(t->dtype));
    return LG_ENOTSUP;
  }
  if (inner_contig && t->nb[t->ndim - 1] != 1 && t->ne[t->ndim - 1] != 1) {
    char b[96];
    LG_ERR(LG_CUDA_MOD, "%s: %s %s needs a contiguous last dimension", op, what,
           lg_tensor_shape_str(t, b, sizeof b));
    return LG_EINVAL;
  }
  return 0;
}

void *lg_cuda_scratch(lg_backend *be, size_t bytes) {
  lg_cuda *c = lg_cu(be);
  int err = 0;
  if (bytes <= c->scratch_bytes) return c->scratch;
  if (c->capturing) {
    LG_ERR(LG_CUDA_MOD, "scratch of %zu bytes needed during graph capture (have %zu)", bytes,
           c->scratch_bytes);
    return NULL;
  }
  if (c->scratch) CUDA_CHECK(cudaFreeAsync(c->scratch, c->stream));
  c->scratch = NULL;
  c->scratch_bytes = 0;
  CUDA_CHECK(cudaMallocFromPoolAsync(&c->scratch, bytes, c->pool, c->stream));
  c->scratch_bytes = bytes;
  return c->scratch;
fail:
  LG_ERR(LG_CUDA_MOD, "no scratch of %zu bytes (%s)", bytes, lg_strerror(err));
  return NULL;
}

void lg_cuda_prof_begin(lg_backend *be) {
  lg_cuda *c = lg_cu(be);
  if (!c->prof || c->prof_n >= LG_PROF_EVENTS) return;
  cudaEventRecord(c->prof_ev[2 * c->prof_n], c->stream);
}

void lg_cuda_prof_end(lg_backend *be, lg_cuda_prof_class cls, int op) {
  lg_cuda *c = lg_cu(be);
  if (!c->prof || c->prof_n >= LG_PROF_EVENTS) return;
  cudaEventRecord(c->prof_ev[2 * c->prof_n + 1], c->stream);
  c->prof_cls[c->prof_n] = (uint8_t)cls;
  c->prof_op[c->prof_n] = (uint8_t)op;
  memcpy(c->prof_tag + 3 * c->prof_n, c->prof_next, sizeof c->prof_next);
  memset(c->prof_next, 0, sizeof c->prof_next);
  c->prof_n++;
}

void lg_cuda_prof_tag(lg_backend *be, int32_t a, int32_t b, int32_t cc) {
  lg_cuda *c = lg_cu(be);
  if (!c->prof) return;
  c->prof_next[0] = a, c->prof_next[1] = b, c->prof_next[2] = cc;
}

static const char *const op_names[LG_OP_COUNT] = {"copy",
                                                  "matmul",
                                                  "unary",
                                                  "axpby",
                                                  "layer_norm",
                                                  "rms_norm",
                                                  "channel_rms_norm",
                                                  "modulate",
                                                  "gated_add",
                                                  "rope3d",
                                                  "attention",
                                                  "conv3d",
                                                  "upsample2x",
                                                  "qk_norm_rope",
                                                  "linear_gated_add",
                                                  "channel_rms_norm_silu",
                                                  "linear_gated_add_ln",
                                                  "linear_gated_add_mod"};

/* ------------------------------------------------------------------ memory */

static void *cu_alloc(lg_backend *be, size_t bytes) {
  lg_cuda *c = lg_cu(be);
  void *p = NULL;
  cudaError_t e = cudaMallocFromPoolAsync(&p, bytes ? bytes : 256, c->pool, c->stream);
  if (e != cudaSuccess) {
    LG_ERR(LG_CUDA_MOD, "cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(e));
    cudaGetLastError();
    return NULL;
  }
  return p;
}

static void cu_free(lg_backend *be, void *p) {
  if (!p) return;
  cudaError_t e = cudaFreeAsync(p, lg_cu(be)->stream);
  if (e != cudaSuccess) LG_ERR(LG_CUDA_MOD, "cudaFreeAsync: %s", cudaGetErrorString(e));
}

static int cu_upload(lg_backend *be, void *dst, const void *src, size_t n) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* src is borrowed for the call only */
  return 0;
fail:
  return err;
}

/* page-locked host memory: uploads from it run at the bus's speed, not through a bounce
 * buffer */
static void *cu_host_alloc(lg_backend *be, size_t n) {
  (void)be;
  void *p = NULL;
  cudaError_t e = cudaHostAlloc(&p, n ? n : 1, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    LG_ERR(LG_CUDA_MOD, "cudaHostAlloc of %zu bytes: %s", n, cudaGetErrorString(e));
    return NULL;
  }
  return p;
}

static void cu_host_free(lg_backend *be, void *p) {
  (void)be;
  cudaError_t e = cudaFreeHost(p);
  if (e != cudaSuccess) LG_ERR(LG_CUDA_MOD, "cudaFreeHost: %s", cudaGetErrorString(e));
}

static int cu_download(lg_backend *be, void *dst, const void *src, size_t n) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  return 0;
fail:
  return err;
}

static int cu_memset0(lg_backend *be, void *dst, size_t n) {
  int err = 0;
  CUDA_CHECK(cudaMemsetAsync(dst, 0, n, lg_cu(be)->stream));
  return 0;
fail:
  return err;
}

static int cu_sync(lg_backend *be) {
  int err = 0;
  CUDA_CHECK(cudaStreamSynchronize(lg_cu(be)->stream));
  return 0;
fail:
  return err;
}

/* Host element i (strided, any of F32/F16/BF16) as f32. */
static float host_elem(const lg_tensor *h, const int64_t *idx) {
  int64_t off = 0;
  for (int d = 0; d < h->ndim; d++)
    off += idx[d] * h->nb[d];
  switch (h->dtype) {
  case LG_F32: return ((const float *)h->data)[off];
  case LG_F16: return lg_f16_to_f32(((const uint16_t *)h->data)[off]);
  case LG_BF16: return lg_bf16_to_f32(((const uint16_t *)h->data)[off]);
  default: return 0.f;
  }
}

/* Weights become bf16. LINEAR and VECTOR keep their shape (contiguous); CONV keeps the
 * PyTorch shape [Co,Ci,(kt,)kh,kw] in ne but is stored channels-last, [Co,kt,kh,kw,Ci], which
 * nb[] describes, so that im2col patches (kt,kh,kw,Ci) meet rows of the weight. */
static int cu_load_weight(lg_backend *be, lg_tensor *out, const lg_tensor *host,
                          lg_weight_kind kind) {
  int err = 0;
  uint16_t *buf = NULL;
  if (!host || !host->data || host->ndim < 1 || host->ndim > LG_MAX_DIMS ||
      (host->dtype != LG_F32 && host->dtype != LG_F16 && host->dtype != LG_BF16)) {
    LG_ERR(LG_CUDA_MOD, "load_weight: host tensor missing, bad rank or dtype");
    return LG_EINVAL;
  }
  int64_t n = lg_tensor_numel(host);
  if (kind == LG_WEIGHT_LINEAR && host->ndim != 2) {
    LG_ERR(LG_CUDA_MOD, "load_weight: a LINEAR weight must be 2-d [out,in], got %d dims",
           host->ndim);
    return LG_EINVAL;
  }
  if (kind == LG_WEIGHT_CONV && host->ndim != 5 && host->ndim != 4) {
    LG_ERR(LG_CUDA_MOD, "load_weight: a CONV weight must be 4-d or 5-d, got %d dims", host->ndim);
    return LG_EINVAL;
  }
  buf = (uint16_t *)malloc((size_t)(n ? n : 1) * 2);
  LG_CHECK(buf, LG_ENOMEM, LG_CUDA_MOD, "load_weight: out of host memory (%lld elements)",
           (long long)n);
  *out = lg_tensor_make(be, NULL, LG_BF16, host->ndim, host->ne);
  if (kind == LG_WEIGHT_CONV) {
    int64_t co = host->ne[0], ci = host->ne[1];
    int64_t kt = host->ndim == 5 ? host->ne[2] : 1;
    int64_t kh = host->ne[host->ndim - 2], kw = host->ne[host->ndim - 1];
    int64_t idx[5] = {0};
    for (int64_t o = 0; o < co; o++)
      for (int64_t t = 0; t < kt; t++)
        for (int64_t h = 0; h < kh; h++)
          for (int64_t w = 0; w < kw; w++)
            for (int64_t i = 0; i < ci; i++) {
              idx[0] = o;
              idx[1] = i;
              if (host->ndim == 5) {
                idx[2] = t, idx[3] = h, idx[4] = w;
              } else {
                idx[2] = h, idx[3] = w;
              }
              int64_t dst = (((o * kt + t) * kh + h) * kw + w) * ci + i;
              buf[dst] = lg_f32_to_bf16(host_elem(host, idx));
            }
    out->nb[0] = kt * kh * kw * ci;
    out->nb[1] = 1;
    if (host->ndim == 5) {
      out->nb[2] = kh * kw * ci, out->nb[3] = kw * ci, out->nb[4] = ci;
    } else {
      out->nb[2] = kw * ci, out->nb[3] = ci;
    }
  } else if (lg_tensor_is_contiguous(host) && host->dtype == LG_BF16) {
    memcpy(buf, host->data, (size_t)n * 2);
  } else if (lg_tensor_is_contiguous(host) && host->dtype == LG_F32) {
    const float *f = (const float *)host->data;
    for (int64_t i = 0; i < n; i++)
      buf[i] = lg_f32_to_bf16(f[i]);
  } else {
    int64_t idx[LG_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
      int64_t r = i;
      for (int d = host->ndim - 1; d >= 0; d--) {
        idx[d] = r % host->ne[d];
        r /= host->ne[d];
      }
      buf[i] = lg_f32_to_bf16(host_elem(host, idx));
    }
  }
  out->data = cu_alloc(be, (size_t)n * 2);
  LG_CHECK(out->data, LG_ENOMEM, LG_CUDA_MOD, "load_weight: cannot allocate %lld bytes",
           (long long)n * 2);
  LG_TRY(cu_upload(be, out->data, buf, (size_t)n * 2));
  free(buf);
  return 0;
fail:
  free(buf);
  if (out->data) cu_free(be, out->data);
  out->data = NULL;
  return err;
}

/* ------------------------------------------------------------------ elementwise */

__global__ void k_copy(void *y, int ydt, lg_nd yn, const void *x, int xdt, lg_nd xn, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    lg_st(y, ydt, lg_nd_off(yn, i), lg_ld(x, xdt, lg_nd_off(xn, i)));
}

__global__ void k_copy_contig(void *y, int ydt, const void *x, int xdt, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    lg_st(y, ydt, i, lg_ld(x, xdt, i));
}

/* Same-dtype strided copy in 16-byte vectors: yn/xn count in vectors (see copy_vec_nd). */
__global__ void k_copy_vec(uint4 *y, lg_nd yn, const uint4 *x, lg_nd xn, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[lg_nd_off(yn, i)] = x[lg_nd_off(xn, i)];
}

/* t in units of 16-byte vectors when its innermost dim is contiguous and every step is a whole
 * number of vectors from a 16-byte aligned base; false otherwise. */
static bool copy_vec_nd(const lg_tensor *t, lg_nd *out) {
  int64_t es = (int64_t)lg_dtype_size(t->dtype), v = 16 / es, last = t->ndim - 1;
  if ((uintptr_t)t->data % 16 || t->nb[last] != 1 || t->ne[last] % v) return false;
  *out = lg_nd_of(t);
  for (int d = 0; d < last; d++) {
    if (t->ne[d] > 1 && t->nb[d] % v) return false;
    out->nb[d] /= v;
  }
  out->ne[last] /= v;
  return true;
}

static bool same_shape(const lg_tensor *a, const lg_tensor *b, const char *op) {
  if (lg_tensor_same_shape(a, b)) return true;
  char s1[96], s2[96];
  LG_ERR(LG_CUDA_MOD, "%s: shapes differ: %s vs %s", op, lg_tensor_shape_str(a, s1, sizeof s1),
         lg_tensor_shape_str(b, s2, sizeof s2));
  return false;
}

int lg_cuda_copy(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  if (!y || !x || !y->data || !x->data) return LG_EINVAL;
  int64_t n = lg_tensor_numel(y);
  if (!same_shape(y, x, "copy")) return LG_EINVAL;
  if (y->dtype == LG_I32 || x->dtype == LG_I32) {
    if (y->dtype != x->dtype) {
      LG_ERR(LG_CUDA_MOD, "copy: I32 converts to nothing else");
      return LG_ENOTSUP;
    }
  }
  if (n == 0) return 0;
  if (lg_tensor_is_contiguous(y) && lg_tensor_is_contiguous(x)) {
    if (y->dtype == x->dtype) {
      CUDA_CHECK(cudaMemcpyAsync(y->data, x->data, lg_tensor_nbytes(y), cudaMemcpyDeviceToDevice,
                                 c->stream));
    } else {
      k_copy_contig<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(y->data, y->dtype, x->data, x->dtype,
                                                              n);
      CUDA_LAUNCH_CHECK();
    }
  } else {
    lg_nd yv, xv;
    if (y->dtype == x->dtype && copy_vec_nd(y, &yv) && copy_vec_nd(x, &xv)) {
      int64_t nv = n * (int64_t)lg_dtype_size(y->dtype) / 16;
      k_copy_vec<<<lg_grid1d(nv, 256), 256, 0, c->stream>>>((uint4 *)y->data, yv,
                                                            (const uint4 *)x->data, xv, nv);
    } else {
      k_copy<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(y->data, y->dtype, lg_nd_of(y), x->data,
                                                       x->dtype, lg_nd_of(x), n);
    }
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

static int cu_copy(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  lg_cuda_prof_begin(be);
  int err = lg_cuda_copy(be, y, x);
  lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_COPY);
  return err;
}

__device__ __forceinline__ float act_apply(float v, int act, float alpha) {
  switch (act) {
  case LG_ACT_GELU_TANH: {
    float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return 0.5f * v * (1.f + tanhf(u));
  }
  case LG_ACT_SILU: return v / (1.f + expf(-v));
  case LG_ACT_RELU: return v > 0.f ? v : 0.f;
  case LG_ACT_TANH_SCALED: return alpha * tanhf(v / alpha);
  case LG_ACT_CLAMP: return fminf(fmaxf(v, -alpha), alpha);
  default: return v;
  }
}

__global__ void k_unary(void *y, int ydt, lg_nd yn, const void *x, int xdt, lg_nd xn, int64_t n,
                        int act, float alpha) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    lg_st(y, ydt, lg_nd_off(yn, i), act_apply(lg_ld(x, xdt, lg_nd_off(xn, i)), act, alpha));
}

/* bf16 contiguous fast path: 8 elements per thread. */
__global__ void k_unary_bf16x8(__nv_bfloat16 *y, const __nv_bfloat16 *x, int64_t n8, int act,
                               float alpha) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8;
       i += (int64_t)gridDim.x * blockDim.x) {
    uint4 u = ((const uint4 *)x)[i];
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = __bfloat1622float2(h[j]);
      h[j] = __floats2bfloat162_rn(act_apply(f.x, act, alpha), act_apply(f.y, act, alpha));
    }
    ((uint4 *)y)[i] = u;
  }
}

int lg_cuda_unary_act(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  int64_t n = 0;
  LG_TRY(lg_cuda_check_tensor("unary", "y", y, false));
  LG_TRY(lg_cuda_check_tensor("unary", "x", x, false));
  if (!same_shape(y, x, "unary")) return LG_EINVAL;
  n = lg_tensor_numel(y);
  if ((act == LG_ACT_TANH_SCALED || act == LG_ACT_CLAMP) && !(alpha > 0.f)) {
    LG_ERR(LG_CUDA_MOD, "unary: act %d needs alpha > 0 (got %g)", (int)act, alpha);
    return LG_EINVAL;
  }
  if (n == 0) return 0;
  if (y->dtype == LG_BF16 && x->dtype == LG_BF16 && lg_tensor_is_contiguous(y) &&
      lg_tensor_is_contiguous(x) && n % 8 == 0 && ((uintptr_t)y->data % 16) == 0 &&
      ((uintptr_t)x->data % 16) == 0) {
    k_unary_bf16x8<<<lg_grid1d(n / 8, 256), 256, 0, c->stream>>>(
        (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)x->data, n / 8, (int)act, alpha);
  } else {
    k_unary<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(y->data, y->dtype, lg_nd_of(y), x->data,
                                                      x->dtype, lg_nd_of(x), n, (int)act, alpha);
  }
  CUDA_LAUNCH_CHECK();
  return 0;
fail:
  return err;
}

static int cu_unary(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha) {
  lg_cuda_prof_begin(be);
  int err = lg_cuda_unary_act(be, y, x, act, alpha);
  lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_UNARY);
  return err;
}

__global__ void k_axpby(void *y, int ydt, lg_nd yn, float alpha, const void *a, int adt, lg_nd an,
                        float beta, const void *b, int bdt, lg_nd bnd, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float va = lg_ld(a, adt, lg_nd_off(an, i)), vb = lg_ld(b, bdt, lg_nd_off(bnd, i));
    lg_st(y, ydt, lg_nd_off(yn, i), alpha * va + beta * vb);
  }
}

/* Contiguous bf16, 16-byte aligned: 8 elements per vector, grid-stride over n/8 vectors, then
 * the n % 8 tail elements by the first threads. fp32 math, as k_axpby. */
__global__ void k_axpby_bf16x8(__nv_bfloat16 *y, float alpha, const __nv_bfloat16 *a, float beta,
                               const __nv_bfloat16 *b, int64_t n) {
  const int64_t n8 = n / 8, tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    uint4 ua = ((const uint4 *)a)[i], ub = ((const uint4 *)b)[i], uy;
    const __nv_bfloat162 *ha = (const __nv_bfloat162 *)&ua, *hb = (const __nv_bfloat162 *)&ub;
    __nv_bfloat162 *hy = (__nv_bfloat162 *)&uy;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 fa = __bfloat1622float2(ha[j]), fb = __bfloat1622float2(hb[j]);
      hy[j] = __floats2bfloat162_rn(alpha * fa.x + beta * fb.x, alpha * fa.y + beta * fb.y);
    }
    ((uint4 *)y)[i] = uy;
  }
  if (tid < n - n8 * 8) {
    int64_t i = n8 * 8 + tid;
    y[i] = __float2bfloat16_rn(alpha * __bfloat162float(a[i]) + beta * __bfloat162float(b[i]));
  }
}

static bool bf16_vec_ok(const lg_tensor *t) {
  return t->dtype == LG_BF16 && lg_tensor_is_contiguous(t) && (uintptr_t)t->data % 16 == 0;
}

static int cu_axpby(lg_backend *be, lg_tensor *y, float alpha, const lg_tensor *a, float beta,
                    const lg_tensor *b) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  int64_t n = lg_tensor_numel(y);
  LG_TRY(lg_cuda_check_tensor("axpby", "y", y, false));
  LG_TRY(lg_cuda_check_tensor("axpby", "a", a, false));
  LG_TRY(lg_cuda_check_tensor("axpby", "b", b, false));
  if (!same_shape(y, a, "axpby") || !same_shape(y, b, "axpby")) return LG_EINVAL;
  if (n == 0) return 0;
  lg_cuda_prof_begin(be);
  if (bf16_vec_ok(y) && bf16_vec_ok(a) && bf16_vec_ok(b)) {
    int blocks = lg_grid1d(n / 8 > 8 ? n / 8 : 8, 256);
    if (blocks > 16 * c->sm_count) blocks = 16 * c->sm_count;
    k_axpby_bf16x8<<<blocks, 256, 0, c->stream>>>((__nv_bfloat16 *)y->data, alpha,
                                                  (const __nv_bfloat16 *)a->data, beta,
                                                  (const __nv_bfloat16 *)b->data, n);
  } else {
    k_axpby<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(y->data, y->dtype, lg_nd_of(y), alpha,
                                                      a->data, a->dtype, lg_nd_of(a), beta, b->data,
                                                      b->dtype, lg_nd_of(b), n);
  }
  CUDA_LAUNCH_CHECK();
  lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_AXPBY);
  return 0;
fail:
  return err;
}

/* x [T,H,W,C] -> y [T,2H,2W,C], nearest. */
__global__ void k_upsample2x(void *y, int ydt, lg_nd yn, const void *x, int xdt, lg_nd xn,
                             int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i;
    int64_t ch = r % yn.ne[3];
    r /= yn.ne[3];
    int64_t w = r % yn.ne[2];
    r /= yn.ne[2];
    int64_t h = r % yn.ne[1];
    int64_t t = r / yn.ne[1];
    int64_t yo = t * yn.nb[0] + h * yn.nb[1] + w * yn.nb[2] + ch * yn.nb[3];
    int64_t xo = t * xn.nb[0] + (h / 2) * xn.nb[1] + (w / 2) * xn.nb[2] + ch * xn.nb[3];
    lg_st(y, ydt, yo, lg_ld(x, xdt, xo));
  }
}

/* Contiguous x and y of one dtype, C * size a multiple of 16 bytes: one 16-byte vector of x
 * (cv vectors per pixel) read once and stored to its 4 destinations. */
__global__ void k_upsample2x_vec(uint4 *y, const uint4 *x, int64_t n, int64_t cv, int64_t W,
                                 int64_t H) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t c = i % cv, p = i / cv;
    int64_t w = p % W, th = p / W;
    int64_t h = th % H, t = th / H;
    uint4 v = x[i];
    int64_t row = 2 * W * cv, o = ((t * 2 * H + 2 * h) * 2 * W + 2 * w) * cv + c;
    y[o] = v;
    y[o + cv] = v;
    y[o + row] = v;
    y[o + row + cv] = v;
  }
}

static int cu_upsample2x(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(lg_cuda_check_tensor("upsample2x", "y", y, false));
  LG_TRY(lg_cuda_check_tensor("upsample2x", "x", x, false));
  if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0] || y->ne[1] != 2 * x->ne[1] ||
      y->ne[2] != 2 * x->ne[2] || y->ne[3] != x->ne[3]) {
    char s1[96], s2[96];
    LG_ERR(LG_CUDA_MOD, "upsample2x: y %s is not x %s doubled in H and W",
           lg_tensor_shape_str(y, s1, sizeof s1), lg_tensor_shape_str(x, s2, sizeof s2));
    return LG_EINVAL;
  }
  if (lg_tensor_numel(y) == 0) return 0;
  lg_cuda_prof_begin(be);
  if (y->dtype == x->dtype && lg_tensor_is_contiguous(y) && lg_tensor_is_contiguous(x) &&
      (uintptr_t)y->data % 16 == 0 && (uintptr_t)x->data % 16 == 0 &&
      (x->ne[3] * (int64_t)lg_dtype_size(x->dtype)) % 16 == 0) {
    int64_t cv = x->ne[3] * (int64_t)lg_dtype_size(x->dtype) / 16;
    int64_t nv = lg_tensor_numel(x) / x->ne[3] * cv;
    k_upsample2x_vec<<<lg_grid1d(nv, 256), 256, 0, c->stream>>>(
        (uint4 *)y->data, (const uint4 *)x->data, nv, cv, x->ne[2], x->ne[1]);
  } else {
    k_upsample2x<<<lg_grid1d(lg_tensor_numel(y), 256), 256, 0, c->stream>>>(
        y->data, y->dtype, lg_nd_of(y), x->data, x->dtype, lg_nd_of(x), lg_tensor_numel(y));
  }
  CUDA_LAUNCH_CHECK();
  lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_UPSAMPLE2X);
  return 0;
fail:
  return err;
}

__device__ __forceinline__ double block_sum_d(double v, double *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x < blockDim.x / 32) t = sh[threadIdx.x];
  if (w == 0)
    for (int o = 16; o > 0; o >>= 1)
      t += __shfl_xor_sync(0xffffffffu, t, o);
  return t; /* valid in thread 0 */
}

/* One block per row: acc += cos(a[r], b[r]). */
__global__ void k_cosine(double *acc, const void *a, int adt, lg_rows ar, const void *b, int bdt,
                         lg_rows br, int64_t d) {
  __shared__ double sh[32];
  int64_t r = blockIdx.x;
  int64_t ao = lg_row_off(ar, r), bo = lg_row_off(br, r);
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    double x = lg_ld(a, adt, ao + i), y = lg_ld(b, bdt, bo + i);
    ab += x * y, aa += x * x, bb += y * y;
  }
  ab = block_sum_d(ab, sh);
  aa = block_sum_d(aa, sh);
  bb = block_sum_d(bb, sh);
  if (threadIdx.x == 0) {
    /* torch F.cosine_similarity(eps=1e-8): each norm clamped separately */
    atomicAdd(acc, ab / (fmax(sqrt(aa), 1e-8) * fmax(sqrt(bb), 1e-8)));
  }
}

static int cu_cosine_mean(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  double h = 0;
  LG_TRY(lg_cuda_check_tensor("cosine_mean", "a", a, true));
  LG_TRY(lg_cuda_check_tensor("cosine_mean", "b", b, true));
  if (!same_shape(a, b, "cosine_mean")) return LG_EINVAL;
  {
    int64_t rows = lg_tensor_rows(a), d = a->ne[a->ndim - 1];
    *out = 0;
    if (rows == 0) return 0;
    CUDA_CHECK(cudaMemsetAsync(c->red, 0, sizeof(double), c->stream));
    k_cosine<<<(unsigned)rows, 256, 0, c->stream>>>(c->red, a->data, a->dtype, lg_rows_of(a),
                                                    b->data, b->dtype, lg_rows_of(b), d);
    CUDA_LAUNCH_CHECK();
    LG_TRY(cu_download(be, &h, c->red, sizeof h));
    *out = h / (double)rows;
  }
  return 0;
fail:
  return err;
}

__global__ void k_sqdiff(double *acc, const void *a, int adt, lg_nd an, const void *b, int bdt,
                         lg_nd bnd, int64_t n) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    double d = (double)lg_ld(a, adt, lg_nd_off(an, i)) - (double)lg_ld(b, bdt, lg_nd_off(bnd, i));
    s += d * d;
  }
  s = block_sum_d(s, sh);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

static int cu_sq_diff_sum(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(lg_cuda_check_tensor("sq_diff_sum", "a", a, false));
  LG_TRY(lg_cuda_check_tensor("sq_diff_sum", "b", b, false));
  if (!same_shape(a, b, "sq_diff_sum")) return LG_EINVAL;
  {
    int64_t n = lg_tensor_numel(a);
    int blocks = lg_grid1d(n, 256);
    if (blocks > 4 * c->sm_count) blocks = 4 * c->sm_count;
    CUDA_CHECK(cudaMemsetAsync(c->red, 0, sizeof(double), c->stream));
    if (n > 0) {
      k_sqdiff<<<blocks, 256, 0, c->stream>>>(c->red, a->data, a->dtype, lg_nd_of(a), b->data,
                                              b->dtype, lg_nd_of(b), n);
      CUDA_LAUNCH_CHECK();
    }
    LG_TRY(cu_download(be, out, c->red, sizeof(double)));
  }
  return 0;
fail:
  return err;
}

/* ------------------------------------------------------------------ pixel mapping */

/* Same arithmetic as cpu_pixels_from_u8 / cpu_pixels_to_u8 (cpu/cpu_ops.c), in double with
 * explicit round-to-nearest intrinsics so nvcc cannot contract into an FMA: bit-identical. */
__device__ __forceinline__ float pix_from_u8(uint8_t u) {
  return (float)__dadd_rn(__dmul_rn((double)u, 2.0 / 255.0), -1.0);
}

__device__ __forceinline__ uint8_t pix_to_u8(float x) {
  double v = __dmul_rn(__dadd_rn((double)x, 1.0), 127.5);
  return !(v > 0.0) ? 0 : v >= 255.0 ? 255 : (uint8_t)__double2int_rn(v);
}

__global__ void k_pix_from_u8(void *y, int ydt, lg_nd yn, const uint8_t *x, lg_nd xn, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    lg_st(y, ydt, lg_nd_off(yn, i), pix_from_u8(x[lg_nd_off(xn, i)]));
}

__global__ void k_pix_from_u8_contig(void *y, int ydt, const uint8_t *x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    lg_st(y, ydt, i, pix_from_u8(x[i]));
}

__global__ void k_pix_to_u8(uint8_t *y, lg_nd yn, const void *x, int xdt, lg_nd xn, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[lg_nd_off(yn, i)] = pix_to_u8(lg_ld(x, xdt, lg_nd_off(xn, i)));
}

__global__ void k_pix_to_u8_contig(uint8_t *y, const void *x, int xdt, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = pix_to_u8(lg_ld(x, xdt, i));
}

/* fl: the float side (F32/F16/BF16), u8: the U8 side, same shape. */
static int check_pixels(const char *op, const lg_tensor *fl, const lg_tensor *u8) {
  int err = 0;
  LG_TRY(lg_cuda_check_tensor(op, "float side", fl, false));
  if (!u8 || !u8->data || u8->dtype != LG_U8 || u8->ndim != fl->ndim) {
    LG_ERR(LG_CUDA_MOD, "%s: the other side must be U8 of the same rank", op);
    return LG_EINVAL;
  }
  if (!same_shape(fl, u8, op)) return LG_EINVAL;
  return 0;
fail:
  return err;
}

static int cu_pixels_from_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(check_pixels("pixels_from_u8", y, x));
  {
    int64_t n = lg_tensor_numel(y);
    if (n == 0) return 0;
    lg_cuda_prof_begin(be);
    if (lg_tensor_is_contiguous(y) && lg_tensor_is_contiguous(x))
      k_pix_from_u8_contig<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(y->data, y->dtype,
                                                                     (const uint8_t *)x->data, n);
    else
      k_pix_from_u8<<<lg_grid1d(n, 256), 256, 0, c->stream>>>(
          y->data, y->dtype, lg_nd_of(y), (const uint8_t *)x->data, lg_nd_of(x), n);
    lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_COPY);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

static int cu_pixels_to_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(check_pixels("pixels_to_u8", x, y));
  {
    int64_t n = lg_tensor_numel(x);
    if (n == 0) return 0;
    lg_cuda_prof_begin(be);
    if (lg_tensor_is_contiguous(y) && lg_tensor_is_contiguous(x))
      k_pix_to_u8_contig<<<lg_grid1d(n, 256), 256, 0, c->stream>>>((uint8_t *)y->data, x->data,
                                                                   x->dtype, n);
    else
      k_pix_to_u8<<<lg_grid1d(n, 256), 256, 0, c->stream>>>((uint8_t *)y->data, lg_nd_of(y),
                                                            x->data, x->dtype, lg_nd_of(x), n);
    lg_cuda_prof_end(be, LG_CUDA_PROF_ELEM, LG_OP_COPY);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

/* ------------------------------------------------------------------ profiled op wrappers */

#define PROF_WRAP(cls, op, name, sig, args)                                                        \
  static int cu_##name sig {                                                                       \
    lg_cuda_prof_begin(be);                                                                        \
    int rc_ = lg_cuda_##name args;                                                                 \
    lg_cuda_prof_end(be, cls, op);                                                                 \
    return rc_;                                                                                    \
  }

/* the profile files each GEMM under M x N x K */
static int cu_matmul(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
                     const lg_tensor *bias, const lg_matmul_opts *o) {
  lg_cuda_prof_begin(be);
  if (lg_cu(be)->prof && y->ndim >= 1 && a->ndim >= 2) {
    int64_t n = y->ne[y->ndim - 1], m = n ? lg_tensor_numel(y) / n : 0;
    int64_t k = o && o->trans_a ? a->ne[a->ndim - 2] : a->ne[a->ndim - 1];
    lg_cuda_prof_tag(be, (int32_t)m, (int32_t)n, (int32_t)k);
  }
  int rc = lg_cuda_matmul(be, y, a, b, bias, o);
  lg_cuda_prof_end(be, LG_CUDA_PROF_GEMM, LG_OP_MATMUL);
  return rc;
}
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_LAYER_NORM, layer_norm,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
           const lg_tensor *b, float eps),
          (be, y, x, w, b, eps))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_RMS_NORM, rms_norm,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w, float eps),
          (be, y, x, w, eps))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_CHANNEL_RMS_NORM, channel_rms_norm,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *g), (be, y, x, g))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_CHANNEL_RMS_NORM_SILU, channel_rms_norm_silu,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *g), (be, y, x, g))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_MODULATE, modulate,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
           const lg_tensor *scale, int64_t group, bool ln, float eps),
          (be, y, x, shift, scale, group, ln, eps))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_GATED_ADD, gated_add,
          (lg_backend * be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate, int64_t group),
          (be, x, y, gate, group))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_ROPE3D, rope3d,
          (lg_backend * be, lg_tensor *x, int64_t F, int64_t H, int64_t W, const int32_t *fs),
          (be, x, F, H, W, fs))
/* one wide head (the Wan VAE's middle attention) goes to the GEMM path */
static int cu_attention(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                        const lg_tensor *v, const int32_t *kv_len, float scale) {
  lg_cuda_prof_begin(be);
  if (lg_cu(be)->prof && q->ndim == 4) { /* filed under B x Lq x the longest kv_len */
    int32_t lk = (int32_t)k->ne[1];
    if (kv_len) {
      lk = 0;
      for (int64_t i = 0; i < q->ne[0]; i++)
        lk = kv_len[i] > lk ? kv_len[i] : lk;
    }
    lg_cuda_prof_tag(be, (int32_t)q->ne[0], (int32_t)q->ne[1], lk);
  }
  int rc = lg_cuda_attention_gemm_applies(o, q, k, v, kv_len)
               ? lg_cuda_attention_gemm(be, o, q, k, v, kv_len, scale)
               : lg_cuda_attention(be, o, q, k, v, kv_len, scale);
  lg_cuda_prof_end(be, LG_CUDA_PROF_ATTN, LG_OP_ATTENTION);
  return rc;
}
PROF_WRAP(LG_CUDA_PROF_ATTN, LG_OP_ATTENTION, attention_bias,
          (lg_backend * be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
           const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len, float scale),
          (be, o, q, k, v, bias, kv_len, scale))
PROF_WRAP(LG_CUDA_PROF_ELEM, LG_OP_QK_NORM_ROPE, qk_norm_rope,
          (lg_backend * be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F, int64_t H,
           int64_t W, const int32_t *fs),
          (be, x, w, eps, F, H, W, fs))
PROF_WRAP(LG_CUDA_PROF_GEMM, LG_OP_LINEAR_GATED_ADD, linear_gated_add,
          (lg_backend * be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
           const lg_tensor *bias, const lg_tensor *gate, int64_t group, lg_tensor *tmp),
          (be, x, a, w, bias, gate, group, tmp))
PROF_WRAP(LG_CUDA_PROF_GEMM, LG_OP_CONV3D, conv3d,
          (lg_backend * be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
           const lg_tensor *bias, const lg_conv_opts *o),
          (be, y, x, w, bias, o))
PROF_WRAP(LG_CUDA_PROF_GEMM, LG_OP_LINEAR_GATED_ADD_LN, linear_gated_add_ln,
          (lg_backend * be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
           const lg_tensor *bias, const lg_tensor *gate, int64_t group, lg_tensor *tmp,
           lg_tensor *h, const lg_tensor *ln_w, const lg_tensor *ln_b, float eps),
          (be, x, a, w, bias, gate, group, tmp, h, ln_w, ln_b, eps))
PROF_WRAP(LG_CUDA_PROF_GEMM, LG_OP_LINEAR_GATED_ADD_MOD, linear_gated_add_mod,
          (lg_backend * be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
           const lg_tensor *bias, const lg_tensor *gate, int64_t group, lg_tensor *tmp,
           lg_tensor *h, const lg_tensor *shift, const lg_tensor *scale, float eps),
          (be, x, a, w, bias, gate, group, tmp, h, shift, scale, eps))

/* Programmatic dependent launch: Hopper and later, unless LG_PDL=0 (set at backend creation;
 * every backend of a process shares it). */
static int g_pdl;
bool lg_cuda_pdl_on(void) {
  return g_pdl == 1;
}

/* ------------------------------------------------------------------ lifetime */

static void cu_destroy(lg_backend *be) {
  if (!be) return;
  lg_cuda *c = lg_cu(be);
  if (c) {
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    lg_cuda_gemm_plans_free(c);
    lg_cuda_fused_free(c);
    lg_cuda_conv_free(c);
    if (c->lt_ws) cudaFreeAsync(c->lt_ws, c->stream);
    if (c->scratch) cudaFreeAsync(c->scratch, c->stream);
    if (c->red) cudaFreeAsync(c->red, c->stream);
    if (c->prof_ev) {
      for (int i = 0; i < 2 * LG_PROF_EVENTS; i++)
        if (c->prof_ev[i]) cudaEventDestroy(c->prof_ev[i]);
      free(c->prof_ev);
    }
    free(c->prof_cls);
    free(c->prof_op);
    free(c->prof_tag);
    for (int i = 0; i < 16; i++)
      if (c->marks[i]) cudaEventDestroy(c->marks[i]);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->pool) cudaMemPoolDestroy(c->pool);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
  }
  free(be);
}

static const lg_backend_ops cuda_ops = {
    /* name */ "cuda",
    /* destroy */ cu_destroy,
    /* alloc */ cu_alloc,
    /* free */ cu_free,
    /* upload */ cu_upload,
    /* download */ cu_download,
    /* memset0 */ cu_memset0,
    /* sync */ cu_sync,
    /* load_weight */ cu_load_weight,
    /* copy */ cu_copy,
    /* matmul */ cu_matmul,
    /* unary */ cu_unary,
    /* axpby */ cu_axpby,
    /* layer_norm */ cu_layer_norm,
    /* rms_norm */ cu_rms_norm,
    /* channel_rms_norm */ cu_channel_rms_norm,
    /* modulate */ cu_modulate,
    /* gated_add */ cu_gated_add,
    /* rope3d */ cu_rope3d,
    /* attention */ cu_attention,
    /* conv3d */ cu_conv3d,
    /* upsample2x */ cu_upsample2x,
    /* cosine_mean */ cu_cosine_mean,
    /* sq_diff_sum */ cu_sq_diff_sum,
    /* attention_bias */ cu_attention_bias,
    /* qk_norm_rope */ cu_qk_norm_rope,
    /* cosine_mean_n */ lg_cuda_cosine_mean_n,
    /* linear_gated_add */ cu_linear_gated_add,
    /* pixels_from_u8 */ cu_pixels_from_u8,
    /* pixels_to_u8 */ cu_pixels_to_u8,
    /* channel_rms_norm_silu */ cu_channel_rms_norm_silu,
    /* host_alloc */ cu_host_alloc,
    /* host_free */ cu_host_free,
    /* linear_gated_add_ln */ cu_linear_gated_add_ln,
    /* linear_gated_add_mod */ cu_linear_gated_add_mod,
};

extern "C" int lg_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" lg_backend *lg_backend_new_cuda(int device) {
  int err = 0;
  lg_backend *be = (lg_backend *)calloc(1, sizeof *be);
  lg_cuda *c = (lg_cuda *)calloc(1, sizeof *c);
  cudaDeviceProp prop;
  cudaMemPoolProps pp;
  uint64_t thr = UINT64_MAX;
  int n = lg_cuda_device_count();
  LG_CHECK(be && c, LG_ENOMEM, LG_CUDA_MOD, "out of host memory");
  be->ops = &cuda_ops;
  be->act_dtype = LG_BF16;
  be->impl = c;
  LG_CHECK(device >= 0 && device < n, LG_EINVAL, LG_CUDA_MOD, "no CUDA device %d (%d present)",
           device, n);
  c->device = device;
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  snprintf(c->name, sizeof c->name, "%s", prop.name);
  c->sm_count = prop.multiProcessorCount;
  {
    const char *e = getenv("LG_PDL");
    g_pdl = prop.major >= 9 && !(e && !strcmp(e, "0"));
  }
  CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  memset(&pp, 0, sizeof pp);
  pp.allocType = cudaMemAllocationTypePinned;
  pp.handleTypes = cudaMemHandleTypeNone;
  pp.location.type = cudaMemLocationTypeDevice;
  pp.location.id = device;
  CUDA_CHECK(cudaMemPoolCreate(&c->pool, &pp));
  /* keep freed memory in the pool: steady state never returns to the driver */
  CUDA_CHECK(cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &thr));
  CUBLAS_CHECK(cublasLtCreate(&c->lt));
  c->lt_ws_bytes = LT_WS_BYTES;
  {
    /* experiment knob: cuBLASLt workspace in MiB (default 8), read once per backend */
    const char *e = getenv("LG_CUBLASLT_WS_MIB");
    int mib = e ? atoi(e) : 0;
    if (mib >= 1 && mib <= 256) c->lt_ws_bytes = (size_t)mib << 20;
  }
  CUDA_CHECK(cudaMallocFromPoolAsync(&c->lt_ws, c->lt_ws_bytes, c->pool, c->stream));
  CUDA_CHECK(cudaMallocFromPoolAsync((void **)&c->red, 4 * sizeof(double), c->pool, c->stream));
  LG_CHECK(lg_cuda_scratch(be, SCRATCH_INIT), LG_ENOMEM, LG_CUDA_MOD, "no scratch");
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  LG_INFO(LG_CUDA_MOD, "device %d: %s, %d SMs, %.1f GiB", device, c->name, c->sm_count,
          prop.totalGlobalMem / 1073741824.0);
  return be;
fail:
  LG_ERR(LG_CUDA_MOD, "cannot create the CUDA backend on device %d (%s)", device, lg_strerror(err));
  if (be && c) {
    cu_destroy(be);
  } else {
    free(be);
    free(c);
  }
  return NULL;
}

/* ------------------------------------------------------------------ lg_cuda.h extras */

extern "C" bool lg_backend_is_cuda(const lg_backend *be) {
  return be && be->ops == &cuda_ops;
}

extern "C" const char *lg_cuda_device_name(const lg_backend *be) {
  return lg_backend_is_cuda(be) ? ((const lg_cuda *)be->impl)->name : "";
}

extern "C" int lg_cuda_mem_stats(lg_backend *be, size_t *peak_used, size_t *now_used) {
  int err = 0;
  uint64_t hi = 0, cur = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  CUDA_CHECK(cudaMemPoolGetAttribute(lg_cu(be)->pool, cudaMemPoolAttrUsedMemHigh, &hi));
  CUDA_CHECK(cudaMemPoolGetAttribute(lg_cu(be)->pool, cudaMemPoolAttrUsedMemCurrent, &cur));
  if (peak_used) *peak_used = (size_t)hi;
  if (now_used) *now_used = (size_t)cur;
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_mem_reset_peak(lg_backend *be) {
  int err = 0;
  uint64_t z = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  CUDA_CHECK(cudaMemPoolSetAttribute(lg_cu(be)->pool, cudaMemPoolAttrUsedMemHigh, &z));
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_profile_begin(lg_backend *be) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  if (c->capturing) return LG_EINVAL;
  if (!c->prof_ev) {
    c->prof_ev = (cudaEvent_t *)calloc(2 * LG_PROF_EVENTS, sizeof(cudaEvent_t));
    c->prof_cls = (uint8_t *)calloc(LG_PROF_EVENTS, 1);
    c->prof_op = (uint8_t *)calloc(LG_PROF_EVENTS, 1);
    c->prof_tag = (int32_t *)calloc(3 * LG_PROF_EVENTS, sizeof(int32_t));
    LG_CHECK(c->prof_ev && c->prof_cls && c->prof_op && c->prof_tag, LG_ENOMEM, LG_CUDA_MOD,
             "profiler: out of memory");
    for (int i = 0; i < 2 * LG_PROF_EVENTS; i++)
      CUDA_CHECK(cudaEventCreate(&c->prof_ev[i]));
  }
  c->prof_n = 0;
  memset(c->prof_next, 0, sizeof c->prof_next);
  c->prof = true;
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_profile_end(lg_backend *be, double *ms, int *ops) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  if (!c->prof) return LG_EINVAL;
  c->prof = false;
  for (int i = 0; i < LG_CUDA_PROF_N; i++)
    ms[i] = 0;
  for (int i = 0; i < LG_OP_COUNT; i++)
    c->op_ms[i] = 0, c->op_n[i] = 0;
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  for (int i = 0; i < c->prof_n; i++) {
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, c->prof_ev[2 * i], c->prof_ev[2 * i + 1]));
    ms[c->prof_cls[i]] += t;
    c->op_ms[c->prof_op[i]] += t;
    c->op_n[c->prof_op[i]]++;
  }
  if (ops) *ops = c->prof_n;
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_profile_ops(lg_backend *be, const char **names, double *ms, int *counts,
                                   int max) {
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  int n = 0;
  for (int i = 0; i < LG_OP_COUNT && n < max; i++) {
    if (!c->op_n[i]) continue;
    names[n] = op_names[i], ms[n] = c->op_ms[i], counts[n] = c->op_n[i];
    n++;
  }
  return n;
}

extern "C" int lg_cuda_profile_shapes(lg_backend *be, lg_cuda_prof_shape *rows, int max) {
  int err = 0, n = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  if (c->prof || !c->prof_tag) return LG_EINVAL;
  for (int i = 0; i < c->prof_n; i++) {
    const int32_t *tg = c->prof_tag + 3 * i;
    if (!tg[0] && !tg[1] && !tg[2]) continue;
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, c->prof_ev[2 * i], c->prof_ev[2 * i + 1]));
    int j = 0;
    while (j < n && !(rows[j].op == op_names[c->prof_op[i]] && !memcmp(rows[j].shape, tg, 12)))
      j++;
    if (j == n) {
      if (n == max) continue;
      rows[n].op = op_names[c->prof_op[i]];
      memcpy(rows[n].shape, tg, 12);
      rows[n].ms = 0, rows[n].count = 0;
      n++;
    }
    rows[j].ms += t, rows[j].count++;
  }
  return n;
fail:
  return err;
}

struct lg_cuda_graph {
  cudaGraph_t g;
  cudaGraphExec_t e;
};

extern "C" int lg_cuda_capture_begin(lg_backend *be) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  LG_CHECK(!c->capturing && !c->prof, LG_EINVAL, LG_CUDA_MOD,
           "capture_begin: already capturing or profiling");
  CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
  c->capturing = true;
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_capture_end(lg_backend *be, lg_cuda_graph **out) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  lg_cuda_graph *g = (lg_cuda_graph *)calloc(1, sizeof *g);
  *out = NULL;
  LG_CHECK(c->capturing, LG_EINVAL, LG_CUDA_MOD, "capture_end without capture_begin");
  c->capturing = false;
  LG_CHECK(g, LG_ENOMEM, LG_CUDA_MOD, "out of memory");
  CUDA_CHECK(cudaStreamEndCapture(c->stream, &g->g));
  CUDA_CHECK(cudaGraphInstantiate(&g->e, g->g, 0));
  *out = g;
  return 0;
fail:
  lg_cuda_graph_free(&g);
  return err;
}

extern "C" int lg_cuda_graph_launch(lg_backend *be, lg_cuda_graph *g) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  CUDA_CHECK(cudaGraphLaunch(g->e, lg_cu(be)->stream));
  return 0;
fail:
  return err;
}

extern "C" void lg_cuda_graph_free(lg_cuda_graph **g) {
  if (!g || !*g) return;
  if ((*g)->e) cudaGraphExecDestroy((*g)->e);
  if ((*g)->g) cudaGraphDestroy((*g)->g);
  free(*g);
  *g = NULL;
}

extern "C" int lg_cuda_profiler_range(lg_backend *be, bool on) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  CUDA_CHECK(cudaStreamSynchronize(lg_cu(be)->stream));
  CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop());
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_mark(lg_backend *be, int slot) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  if (slot < 0 || slot >= 16) return LG_EINVAL;
  if (!c->marks[slot]) CUDA_CHECK(cudaEventCreate(&c->marks[slot]));
  CUDA_CHECK(cudaEventRecord(c->marks[slot], c->stream));
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_elapsed_ms(lg_backend *be, int a, int b, float *ms) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  if (a < 0 || a >= 16 || b < 0 || b >= 16 || !c->marks[a] || !c->marks[b]) return LG_EINVAL;
  CUDA_CHECK(cudaEventSynchronize(c->marks[b]));
  CUDA_CHECK(cudaEventElapsedTime(ms, c->marks[a], c->marks[b]));
  return 0;
fail:
  return err;
}

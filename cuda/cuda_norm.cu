/* cuda_norm.cu: the row ops of the CUDA backend: LayerNorm, RMSNorm, the Wan VAE channel
 * RMS norm and the DiT's modulation (LayerNorm + per-frame shift/scale) in one kernel that
 * reads a row three times from L1 (mean, variance, output); the gated residual add; 3D RoPE.
 * The channel RMS norm of bf16 rows up to 1024 wide (the Wan VAE's C = 96..384) has its own
 * kernel: a few lanes per row instead of a block per row, optionally fused with SiLU.
 * Activations of any of F32/F16/BF16 (16-byte vector path for contiguous bf16/f16/f32 rows);
 * parameters (weights, shift, scale, gate) of any float dtype. Statistics in fp32.
 * Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <math.h>

/* ---- typed 8-wide loads and stores ---- */
template <typename T> struct io;
template <> struct io<float> {
  static constexpr int dt = LG_F32;
  __device__ static void ld8(const float *p, float *v) {
    float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
  __device__ static void st8(float *p, const float *v) {
    ((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    ((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
  __device__ static float ld(const float *p) {
    return *p;
  }
  __device__ static void st(float *p, float v) {
    *p = v;
  }
};
template <> struct io<__nv_bfloat16> {
  static constexpr int dt = LG_BF16;
  __device__ static void ld8(const __nv_bfloat16 *p, float *v) {
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = __bfloat1622float2(h[j]);
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  }
  __device__ static void st8(__nv_bfloat16 *p, const float *v) {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++)
      h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
    *(uint4 *)p = u;
  }
  __device__ static float ld(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
  }
  __device__ static void st(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
  }
};
template <> struct io<__half> {
  static constexpr int dt = LG_F16;
  __device__ static void ld8(const __half *p, float *v) {
    uint4 u = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float2 f = __half22float2(h[j]);
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  }
  __device__ static void st8(__half *p, const float *v) {
    uint4 u;
    __half2 *h = (__half2 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++)
      h[j] = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
    *(uint4 *)p = u;
  }
  __device__ static float ld(const __half *p) {
    return __half2float(*p);
  }
  __device__ static void st(__half *p, float v) {
    *p = __float2half_rn(v);
  }
};

/* Load/store one "chunk" (8 elements when V, else 1) at element index i of a row. */
template <typename T, bool V>
__device__ __forceinline__ void ldc(const T *row, int64_t i, float *v) {
  if (V)
    io<T>::ld8(row + i, v);
  else
    v[0] = io<T>::ld(row + i);
}
template <typename T, bool V>
__device__ __forceinline__ void stc(T *row, int64_t i, const float *v) {
  if (V)
    io<T>::st8(row + i, v);
  else
    io<T>::st(row + i, v[0]);
}

__device__ __forceinline__ float block_sum(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads(); /* sh may still be read from the previous call */
  if (l == 0) sh[w] = v;
  __syncthreads();
  float t = l < (int)(blockDim.x / 32) ? sh[l] : 0.f;
  for (int o = 16; o > 0; o >>= 1)
    t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

enum { NORM_LN = 0, NORM_RMS = 1, NORM_CRMS = 2, NORM_MOD = 3, NORM_MOD_LN = 4 };

typedef struct norm_params {
  const void *w; /* LN weight, RMS weight, channel gamma (may be NULL) */
  int wdt;
  const void *b; /* LN bias (may be NULL) */
  int bdt;
  const void *shift, *scale; /* modulate: rows of D, one per group of x rows */
  int shdt, scdt;
  lg_rows shr, scr;
  int64_t group;
  float eps;
} norm_params;

/* One block per row. y may alias x. */
template <typename TX, typename TY, bool V, int MODE>
__global__ void k_norm(TY *y, lg_rows yr, const TX *x, lg_rows xr, int64_t D, norm_params p) {
  __shared__ float sh[32];
  const int W = V ? 8 : 1;
  int64_t r = blockIdx.x;
  const TX *xrow = x + lg_row_off(xr, r);
  TY *yrow = y + lg_row_off(yr, r);
  float mean = 0.f, rs = 1.f;
  float v[8];
  if (MODE == NORM_LN || MODE == NORM_MOD_LN) {
    float s = 0.f;
    for (int64_t i = threadIdx.x * W; i < D; i += blockDim.x * W) {
      ldc<TX, V>(xrow, i, v);
#pragma unroll
      for (int j = 0; j < W; j++)
        s += v[j];
    }
    mean = block_sum(s, sh) / (float)D;
    float q = 0.f;
    for (int64_t i = threadIdx.x * W; i < D; i += blockDim.x * W) {
      ldc<TX, V>(xrow, i, v);
#pragma unroll
      for (int j = 0; j < W; j++)
        q += (v[j] - mean) * (v[j] - mean);
    }
    rs = rsqrtf(block_sum(q, sh) / (float)D + p.eps);
  } else if (MODE == NORM_RMS || MODE == NORM_CRMS) {
    float q = 0.f;
    for (int64_t i = threadIdx.x * W; i < D; i += blockDim.x * W) {
      ldc<TX, V>(xrow, i, v);
#pragma unroll
      for (int j = 0; j < W; j++)
        q += v[j] * v[j];
    }
    q = block_sum(q, sh);
    if (MODE == NORM_RMS)
      rs = rsqrtf(q / (float)D + p.eps);
    else
      rs = sqrtf((float)D) / fmaxf(sqrtf(q), 1e-12f);
  }
  const void *shift = NULL, *scale = NULL;
  int64_t sho = 0, sco = 0;
  if (MODE == NORM_MOD || MODE == NORM_MOD_LN) {
    int64_t g = r / p.group;
    shift = p.shift, scale = p.scale;
    sho = lg_row_off(p.shr, g), sco = lg_row_off(p.scr, g);
  }
  for (int64_t i = threadIdx.x * W; i < D; i += blockDim.x * W) {
    ldc<TX, V>(xrow, i, v);
#pragma unroll
    for (int j = 0; j < W; j++) {
      float t = (v[j] - mean) * rs;
      if (MODE == NORM_LN) {
        if (p.w) t *= lg_ld(p.w, p.wdt, i + j);
        if (p.b) t += lg_ld(p.b, p.bdt, i + j);
      } else if (MODE == NORM_RMS || MODE == NORM_CRMS) {
        if (p.w) t *= lg_ld(p.w, p.wdt, i + j);
      } else {
        t = t * (1.f + lg_ld(scale, p.scdt, sco + i + j)) + lg_ld(shift, p.shdt, sho + i + j);
      }
      v[j] = t;
    }
    stc<TY, V>(yrow, i, v);
  }
}

/* Fast path: bf16 activations and bf16 parameters (w, b, shift, scale), D % 8 == 0, 16-byte
 * aligned rows; the row stays in registers (at most MAXC chunks of 8 per thread), so x is read
 * once. */
#define NORM_MAXC 4
template <int MODE>
__global__ void k_norm_fast(__nv_bfloat16 *y, lg_rows yr, const __nv_bfloat16 *x, lg_rows xr,
                            int64_t D, norm_params p) {
  __shared__ float sh[32];
  typedef io<__nv_bfloat16> B;
  const int64_t r = blockIdx.x;
  const __nv_bfloat16 *xrow = x + lg_row_off(xr, r);
  __nv_bfloat16 *yrow = y + lg_row_off(yr, r);
  float v[NORM_MAXC][8];
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NORM_MAXC; k++) {
    int64_t i = (threadIdx.x + (int64_t)k * blockDim.x) * 8;
    if (i < D) {
      B::ld8(xrow + i, v[k]);
#pragma unroll
      for (int j = 0; j < 8; j++)
        s += MODE == NORM_LN || MODE == NORM_MOD_LN ? v[k][j] : v[k][j] * v[k][j];
    }
  }
  float mean = 0.f, rs = 1.f;
  if (MODE == NORM_LN || MODE == NORM_MOD_LN) {
    mean = block_sum(s, sh) / (float)D;
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < NORM_MAXC; k++) {
      int64_t i = (threadIdx.x + (int64_t)k * blockDim.x) * 8;
      if (i < D) {
#pragma unroll
        for (int j = 0; j < 8; j++)
          q += (v[k][j] - mean) * (v[k][j] - mean);
      }
    }
    rs = rsqrtf(block_sum(q, sh) / (float)D + p.eps);
  } else if (MODE == NORM_RMS) {
    rs = rsqrtf(block_sum(s, sh) / (float)D + p.eps);
  } else if (MODE == NORM_CRMS) {
    rs = sqrtf((float)D) / fmaxf(sqrtf(block_sum(s, sh)), 1e-12f);
  }
  const __nv_bfloat16 *pa = NULL, *pb = NULL; /* w/b, or scale/shift rows */
  if (MODE == NORM_MOD || MODE == NORM_MOD_LN) {
    int64_t g = r / p.group;
    pa = (const __nv_bfloat16 *)p.scale + lg_row_off(p.scr, g);
    pb = (const __nv_bfloat16 *)p.shift + lg_row_off(p.shr, g);
  } else {
    pa = (const __nv_bfloat16 *)p.w;
    pb = (const __nv_bfloat16 *)p.b;
  }
#pragma unroll
  for (int k = 0; k < NORM_MAXC; k++) {
    int64_t i = (threadIdx.x + (int64_t)k * blockDim.x) * 8;
    if (i < D) {
      float a[8], b[8];
      if (pa) B::ld8(pa + i, a);
      if (pb) B::ld8(pb + i, b);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        float t = (v[k][j] - mean) * rs;
        if (MODE == NORM_MOD || MODE == NORM_MOD_LN)
          t = t * (1.f + a[j]) + b[j];
        else {
          if (pa) t *= a[j];
          if (pb) t += b[j];
        }
        v[k][j] = t;
      }
      B::st8(yrow + i, v[k]);
    }
  }
}

/* Warp per row (D = 256 * C, C <= 8; bf16 rows and parameters, 16-byte aligned): every load of
 * the row and of its parameters is issued up front (kept packed, 4 registers per 8 values),
 * the reductions are shuffles only, 8 rows per 256-thread block. More bytes in flight per SM
 * than a block per row, whose loads wait behind two block-wide reductions. */
__device__ __forceinline__ void bf8_unpack(const uint4 &u, float *v) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    float2 f = __bfloat1622float2(h[j]);
    v[2 * j] = f.x, v[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/* The second half of a warp-per-row norm over a row held packed (xv, D = 256 * C): the variance
 * around mean, then y = (x - mean) * rsqrt(var + eps), modulated (MOD: * (1 + a) + b) or
 * affine (* a, + b, each where given), stored as bf16 at yrow. */
template <int C, bool MOD>
__device__ __forceinline__ void warp_norm_store(const uint4 *xv, const uint4 *av, const uint4 *bv,
                                                bool ha, bool hb, float mean, float eps,
                                                __nv_bfloat16 *yrow, int lane) {
  const float D = 256.f * C;
  float s = 0.f, v[8];
#pragma unroll
  for (int k = 0; k < C; k++) {
    bf8_unpack(xv[k], v);
#pragma unroll
    for (int j = 0; j < 8; j++)
      s += (v[j] - mean) * (v[j] - mean);
  }
  const float rs = rsqrtf(warp_sum(s) / D + eps);
#pragma unroll
  for (int k = 0; k < C; k++) {
    float a[8], b[8];
    bf8_unpack(xv[k], v);
    if (ha) bf8_unpack(av[k], a);
    if (hb) bf8_unpack(bv[k], b);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      float t = (v[j] - mean) * rs;
      if (MOD)
        t = t * (1.f + a[j]) + b[j];
      else {
        if (ha) t *= a[j];
        if (hb) t += b[j];
      }
      v[j] = t;
    }
    io<__nv_bfloat16>::st8(yrow + (k * 32 + lane) * 8, v);
  }
}

template <int MODE, int C>
__global__ void __launch_bounds__(256)
    k_norm_warp(__nv_bfloat16 *y, lg_rows yr, const __nv_bfloat16 *x, lg_rows xr, int64_t R,
                norm_params p) {
  const int64_t r = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  lg_pdl_wait();
  if (r >= R) return;
  const __nv_bfloat16 *xrow = x + lg_row_off(xr, r);
  __nv_bfloat16 *yrow = y + lg_row_off(yr, r);
  const __nv_bfloat16 *pa, *pb; /* w/b, or scale/shift rows */
  if (MODE == NORM_MOD_LN) {
    int64_t g = r / p.group;
    pa = (const __nv_bfloat16 *)p.scale + lg_row_off(p.scr, g);
    pb = (const __nv_bfloat16 *)p.shift + lg_row_off(p.shr, g);
  } else {
    pa = (const __nv_bfloat16 *)p.w;
    pb = (const __nv_bfloat16 *)p.b;
  }
  uint4 xv[C], av[C], bv[C];
#pragma unroll
  for (int k = 0; k < C; k++) {
    const int i = (k * 32 + lane) * 8;
    xv[k] = *(const uint4 *)(xrow + i);
    if (pa) av[k] = *(const uint4 *)(pa + i);
    if (pb) bv[k] = *(const uint4 *)(pb + i);
  }
  float mean = 0.f;
  if (MODE == NORM_LN || MODE == NORM_MOD_LN) {
    float s = 0.f, v[8];
#pragma unroll
    for (int k = 0; k < C; k++) {
      bf8_unpack(xv[k], v);
#pragma unroll
      for (int j = 0; j < 8; j++)
        s += v[j];
    }
    mean = warp_sum(s) / (256.f * C);
  }
  warp_norm_store<C, MODE == NORM_MOD_LN>(xv, av, bv, pa != NULL, pb != NULL, mean, p.eps, yrow,
                                          lane);
}

/* Modulation without the norm, elementwise: y = x * (1 + scale[g]) + shift[g], 8 values per
 * thread over the whole tensor (the DiT's per-block table add is 1-4 rows of 9216). */
__global__ void k_mod_elem(__nv_bfloat16 *y, lg_rows yr, const __nv_bfloat16 *x, lg_rows xr,
                           int64_t R, int64_t D8, norm_params p) {
  const int64_t n = R * D8;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = e / D8, i = (e - r * D8) * 8, g = r / p.group;
    float v[8], a[8], b[8];
    io<__nv_bfloat16>::ld8(x + lg_row_off(xr, r) + i, v);
    io<__nv_bfloat16>::ld8((const __nv_bfloat16 *)p.scale + lg_row_off(p.scr, g) + i, a);
    io<__nv_bfloat16>::ld8((const __nv_bfloat16 *)p.shift + lg_row_off(p.shr, g) + i, b);
#pragma unroll
    for (int j = 0; j < 8; j++)
      v[j] = v[j] * (1.f + a[j]) + b[j];
    io<__nv_bfloat16>::st8(y + lg_row_off(yr, r) + i, v);
  }
}

/* LG_NORM_WARP=0 keeps the block-per-row kernels for LN / RMS / LN-modulate (A/B); read once. */
static bool norm_warp_env(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("LG_NORM_WARP");
    v = e && !strcmp(e, "0") ? 0 : 1;
  }
  return v == 1;
}

template <int MODE, int C>
static void launch_norm_warp(lg_backend *be, lg_tensor *y, const lg_tensor *x, int64_t rows,
                             const norm_params &p) {
  lg_cuda_launch_pdl(k_norm_warp<MODE, C>, dim3((unsigned)((rows + 7) / 8)), dim3(256), 0,
                     lg_cu(be)->stream, (__nv_bfloat16 *)y->data, lg_rows_of(y),
                     (const __nv_bfloat16 *)x->data, lg_rows_of(x), rows, p);
}

static bool param_fast(const void *p, int dt, const lg_rows *r) {
  if (!p) return true;
  if (dt != LG_BF16 || (uintptr_t)p % 16) return false;
  if (r)
    for (int i = 0; i < r->nd; i++)
      if (r->ne[i] > 1 && (r->nb[i] * 2) % 16) return false;
  return true;
}

static bool rows_vec_ok(const lg_tensor *t) {
  if ((uintptr_t)t->data % 16) return false;
  if (t->ne[t->ndim - 1] % 8) return false;
  for (int i = 0; i < t->ndim - 1; i++)
    if (t->ne[i] > 1 && (t->nb[i] * (int64_t)lg_dtype_size(t->dtype)) % 16) return false;
  return true;
}

template <typename TX, typename TY, int MODE>
static void launch_norm2(lg_backend *be, lg_tensor *y, const lg_tensor *x, const norm_params &p,
                         bool vec) {
  lg_cuda *c = lg_cu(be);
  int64_t rows = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
  int64_t chunks = vec ? D / 8 : D;
  int th = (int)((chunks + 31) / 32 * 32);
  if (th > 256) th = 256;
  if (th < 32) th = 32;
  if (vec)
    k_norm<TX, TY, true, MODE><<<(unsigned)rows, th, 0, c->stream>>>(
        (TY *)y->data, lg_rows_of(y), (const TX *)x->data, lg_rows_of(x), D, p);
  else
    k_norm<TX, TY, false, MODE><<<(unsigned)rows, th, 0, c->stream>>>(
        (TY *)y->data, lg_rows_of(y), (const TX *)x->data, lg_rows_of(x), D, p);
}

template <int MODE>
static int launch_norm(lg_backend *be, const char *op, lg_tensor *y, const lg_tensor *x,
                       const norm_params &p) {
  int err = 0;
  LG_TRY(lg_cuda_check_tensor(op, "y", y, true));
  LG_TRY(lg_cuda_check_tensor(op, "x", x, true));
  if (!lg_tensor_same_shape(x, y)) {
    char s1[96], s2[96];
    LG_ERR(LG_CUDA_MOD, "%s: y %s and x %s differ", op, lg_tensor_shape_str(y, s1, sizeof s1),
           lg_tensor_shape_str(x, s2, sizeof s2));
    return LG_EINVAL;
  }
  {
    int64_t rows = lg_tensor_rows(x);
    if (rows == 0 || x->ne[x->ndim - 1] == 0) return 0;
    LG_CHECK(rows < (1ll << 31), LG_ERANGE, LG_CUDA_MOD, "%s: too many rows", op);
    bool vec = rows_vec_ok(x) && rows_vec_ok(y);
    int64_t D = x->ne[x->ndim - 1];
    bool mod = MODE == NORM_MOD || MODE == NORM_MOD_LN;
    const bool fastp =
        vec && x->dtype == LG_BF16 && y->dtype == LG_BF16 &&
        (mod ? param_fast(p.shift, p.shdt, &p.shr) && param_fast(p.scale, p.scdt, &p.scr)
             : param_fast(p.w, p.wdt, NULL) && param_fast(p.b, p.bdt, NULL));
    if (fastp && MODE == NORM_MOD && (rows * D) / 8 < (1ll << 40)) {
      int64_t n = rows * (D / 8);
      unsigned blocks = (unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
      k_mod_elem<<<blocks, 256, 0, lg_cu(be)->stream>>>((__nv_bfloat16 *)y->data, lg_rows_of(y),
                                                        (const __nv_bfloat16 *)x->data,
                                                        lg_rows_of(x), rows, D / 8, p);
      CUDA_LAUNCH_CHECK();
      return 0;
    }
    if (fastp && (MODE == NORM_LN || MODE == NORM_RMS || MODE == NORM_MOD_LN) && D % 256 == 0 &&
        D / 256 >= 1 && D / 256 <= 8 && norm_warp_env()) {
      switch (D / 256) {
      case 1: launch_norm_warp<MODE, 1>(be, y, x, rows, p); break;
      case 2: launch_norm_warp<MODE, 2>(be, y, x, rows, p); break;
      case 3: launch_norm_warp<MODE, 3>(be, y, x, rows, p); break;
      case 4: launch_norm_warp<MODE, 4>(be, y, x, rows, p); break;
      case 5: launch_norm_warp<MODE, 5>(be, y, x, rows, p); break;
      case 6: launch_norm_warp<MODE, 6>(be, y, x, rows, p); break;
      case 7: launch_norm_warp<MODE, 7>(be, y, x, rows, p); break;
      default: launch_norm_warp<MODE, 8>(be, y, x, rows, p); break;
      }
      CUDA_LAUNCH_CHECK();
      return 0;
    }
    if (fastp && D / 8 <= NORM_MAXC * 256) {
      int th = (int)(D / 8 < 256 ? D / 8 : 256); /* then at most NORM_MAXC chunks each */
      th = (th + 31) / 32 * 32;
      k_norm_fast<MODE><<<(unsigned)rows, th, 0, lg_cu(be)->stream>>>(
          (__nv_bfloat16 *)y->data, lg_rows_of(y), (const __nv_bfloat16 *)x->data, lg_rows_of(x), D,
          p);
      CUDA_LAUNCH_CHECK();
      return 0;
    }
#define LN_CASE(TXT, TX)                                                                           \
  if (x->dtype == TXT) {                                                                           \
    if (y->dtype == LG_BF16)                                                                       \
      launch_norm2<TX, __nv_bfloat16, MODE>(be, y, x, p, vec);                                     \
    else if (y->dtype == LG_F32)                                                                   \
      launch_norm2<TX, float, MODE>(be, y, x, p, vec);                                             \
    else                                                                                           \
      launch_norm2<TX, __half, MODE>(be, y, x, p, vec);                                            \
  }
    LN_CASE(LG_BF16, __nv_bfloat16)
    else LN_CASE(LG_F32, float) else LN_CASE(LG_F16, __half)
#undef LN_CASE
        CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

static int check_vec(const char *op, const char *what, const lg_tensor *t, int64_t D) {
  if (!t) return 0;
  if (!t->data || lg_tensor_numel(t) != D || !lg_tensor_is_contiguous(t) ||
      (t->dtype != LG_F32 && t->dtype != LG_BF16 && t->dtype != LG_F16)) {
    LG_ERR(LG_CUDA_MOD, "%s: %s must be a contiguous float vector of %lld elements", op, what,
           (long long)D);
    return LG_EINVAL;
  }
  return 0;
}

int lg_cuda_layer_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                       const lg_tensor *b, float eps) {
  int err = 0;
  norm_params p = {};
  LG_TRY(lg_cuda_check_tensor("layer_norm", "x", x, true));
  LG_TRY(check_vec("layer_norm", "w", w, x->ne[x->ndim - 1]));
  LG_TRY(check_vec("layer_norm", "b", b, x->ne[x->ndim - 1]));
  p.w = w ? w->data : NULL, p.wdt = w ? w->dtype : 0;
  p.b = b ? b->data : NULL, p.bdt = b ? b->dtype : 0;
  p.eps = eps;
  return launch_norm<NORM_LN>(be, "layer_norm", y, x, p);
fail:
  return err;
}

int lg_cuda_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                     float eps) {
  int err = 0;
  norm_params p = {};
  LG_TRY(lg_cuda_check_tensor("rms_norm", "x", x, true));
  LG_TRY(check_vec("rms_norm", "w", w, x->ne[x->ndim - 1]));
  p.w = w ? w->data : NULL, p.wdt = w ? w->dtype : 0;
  p.eps = eps;
  return launch_norm<NORM_RMS>(be, "rms_norm", y, x, p);
fail:
  return err;
}

/* Channel RMS norm of bf16 rows (D % 8 == 0, D <= 8 * CRMS_MAXC * 32, 16-byte aligned rows,
 * bf16 gamma): TPR lanes per row (a power of two, TPR * CRMS_MAXC >= D / 8), each lane keeping
 * up to CRMS_MAXC chunks of 8 in registers (chunk k * TPR + lane: a row is read once, the
 * lanes of a row touch consecutive 16-byte vectors), 256 / TPR rows per block. C = 96 / 192 /
 * 384 give 4 / 8 / 16 lanes of 3 chunks. fp32 math; SILU applies silu before the one bf16
 * rounding. y may alias x (each element is read before it is written, by the same thread). */
#define CRMS_MAXC 4
#define CRMS_THREADS 256
template <int TPR, bool SILU>
__global__ void __launch_bounds__(CRMS_THREADS)
    k_crms_rows(__nv_bfloat16 *y, lg_rows yr, const __nv_bfloat16 *x, lg_rows xr, int64_t rows,
                int D, bool contig, const __nv_bfloat16 *g) {
  typedef io<__nv_bfloat16> B;
  const int lane = threadIdx.x % TPR, chunks = D / 8;
  const int64_t r = (int64_t)blockIdx.x * (CRMS_THREADS / TPR) + threadIdx.x / TPR;
  const bool on = r < rows; /* no early return: every lane of the warp joins the shuffles */
  const __nv_bfloat16 *xrow = x;
  __nv_bfloat16 *yrow = y;
  if (on) {
    xrow = x + (contig ? r * D : lg_row_off(xr, r));
    yrow = y + (contig ? r * D : lg_row_off(yr, r));
  }
  float v[CRMS_MAXC][8];
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < CRMS_MAXC; k++) {
    int c = k * TPR + lane;
    if (on && c < chunks) {
      B::ld8(xrow + c * 8, v[k]);
#pragma unroll
      for (int j = 0; j < 8; j++)
        s += v[k][j] * v[k][j];
    }
  }
#pragma unroll
  for (int o = TPR / 2; o > 0; o >>= 1)
    s += __shfl_xor_sync(0xffffffffu, s, o);
  const float rs = sqrtf((float)D) / fmaxf(sqrtf(s), 1e-12f);
#pragma unroll
  for (int k = 0; k < CRMS_MAXC; k++) {
    int c = k * TPR + lane;
    if (on && c < chunks) {
      float a[8];
      B::ld8(g + c * 8, a);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        float t = v[k][j] * rs * a[j];
        if (SILU) t = t / (1.f + expf(-t));
        v[k][j] = t;
      }
      B::st8(yrow + c * 8, v[k]);
    }
  }
}

template <bool SILU>
static void launch_crms(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *gamma,
                        int tpr) {
  int64_t rows = lg_tensor_rows(x);
  int D = (int)x->ne[x->ndim - 1];
  bool contig = lg_tensor_is_contiguous(x) && lg_tensor_is_contiguous(y);
  unsigned blocks = (unsigned)((rows + CRMS_THREADS / tpr - 1) / (CRMS_THREADS / tpr));
  lg_rows yr = lg_rows_of(y), xr = lg_rows_of(x);
  __nv_bfloat16 *yd = (__nv_bfloat16 *)y->data;
  const __nv_bfloat16 *xd = (const __nv_bfloat16 *)x->data, *g = (const __nv_bfloat16 *)gamma->data;
  cudaStream_t st = lg_cu(be)->stream;
#define CRMS_CASE(T)                                                                               \
  case T:                                                                                          \
    k_crms_rows<T, SILU><<<blocks, CRMS_THREADS, 0, st>>>(yd, yr, xd, xr, rows, D, contig, g);     \
    break;
  switch (tpr) {
    CRMS_CASE(1)
    CRMS_CASE(2)
    CRMS_CASE(4)
    CRMS_CASE(8)
    CRMS_CASE(16)
  default: CRMS_CASE(32)
  }
#undef CRMS_CASE
}

/* channel_rms_norm (silu false) or its fusion with SiLU; the row kernel above where it applies,
 * else the general norm (and for silu the unary op after it). */
static int crms(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *gamma,
                bool silu) {
  int err = 0;
  const char *op = silu ? "channel_rms_norm_silu" : "channel_rms_norm";
  norm_params p = {};
  LG_TRY(lg_cuda_check_tensor(op, "x", x, true));
  LG_TRY(lg_cuda_check_tensor(op, "y", y, true));
  LG_CHECK(gamma, LG_EINVAL, LG_CUDA_MOD, "%s: gamma is required", op);
  LG_TRY(check_vec(op, "gamma", gamma, x->ne[x->ndim - 1]));
  if (!lg_tensor_same_shape(x, y)) {
    char s1[96], s2[96];
    LG_ERR(LG_CUDA_MOD, "%s: y %s and x %s differ", op, lg_tensor_shape_str(y, s1, sizeof s1),
           lg_tensor_shape_str(x, s2, sizeof s2));
    return LG_EINVAL;
  }
  {
    int64_t rows = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
    if (rows == 0 || D == 0) return 0;
    LG_CHECK(rows < (1ll << 31), LG_ERANGE, LG_CUDA_MOD, "%s: too many rows", op);
    if (x->dtype == LG_BF16 && y->dtype == LG_BF16 && D / 8 <= CRMS_MAXC * 32 && rows_vec_ok(x) &&
        rows_vec_ok(y) && param_fast(gamma->data, gamma->dtype, NULL)) {
      int tpr = 1;
      while (tpr * CRMS_MAXC < D / 8)
        tpr *= 2;
      if (silu)
        launch_crms<true>(be, y, x, gamma, tpr);
      else
        launch_crms<false>(be, y, x, gamma, tpr);
      CUDA_LAUNCH_CHECK();
      return 0;
    }
  }
  p.w = gamma->data, p.wdt = gamma->dtype;
  LG_TRY(launch_norm<NORM_CRMS>(be, op, y, x, p));
  if (silu) LG_TRY(lg_cuda_unary_act(be, y, y, LG_ACT_SILU, 0.0f));
  return 0;
fail:
  return err;
}

int lg_cuda_channel_rms_norm(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                             const lg_tensor *gamma) {
  return crms(be, y, x, gamma, false);
}

int lg_cuda_channel_rms_norm_silu(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                                  const lg_tensor *gamma) {
  return crms(be, y, x, gamma, true);
}

/* shift/scale: [R/group, D] with any row stride (e.g. a slice of the [B,F,6,D] table). */
static int check_table(const char *op, const char *what, const lg_tensor *t, int64_t groups,
                       int64_t D) {
  int err = 0;
  LG_TRY(lg_cuda_check_tensor(op, what, t, true));
  if (t->ne[t->ndim - 1] != D || lg_tensor_rows(t) != groups) {
    char s[96];
    LG_ERR(LG_CUDA_MOD, "%s: %s %s must have %lld rows of %lld", op, what,
           lg_tensor_shape_str(t, s, sizeof s), (long long)groups, (long long)D);
    return LG_EINVAL;
  }
  return 0;
fail:
  return err;
}

int lg_cuda_modulate(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
                     const lg_tensor *scale, int64_t group, bool ln, float eps) {
  int err = 0;
  norm_params p = {};
  LG_TRY(lg_cuda_check_tensor("modulate", "x", x, true));
  {
    int64_t R = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
    LG_CHECK(group > 0 && R % group == 0, LG_EINVAL, LG_CUDA_MOD,
             "modulate: group %lld does not divide %lld rows", (long long)group, (long long)R);
    LG_TRY(check_table("modulate", "shift", shift, R / group, D));
    LG_TRY(check_table("modulate", "scale", scale, R / group, D));
    p.shift = shift->data, p.shdt = shift->dtype, p.shr = lg_rows_of(shift);
    p.scale = scale->data, p.scdt = scale->dtype, p.scr = lg_rows_of(scale);
    p.group = group;
    p.eps = eps;
  }
  if (ln) return launch_norm<NORM_MOD_LN>(be, "modulate", y, x, p);
  return launch_norm<NORM_MOD>(be, "modulate", y, x, p);
fail:
  return err;
}

/* x[r] += gate[r/group] * y[r]; one thread per 8 (or 1) elements. */
template <typename TX, typename TY, bool V>
__global__ void k_gated_add(TX *x, lg_rows xr, const TY *y, lg_rows yr, const void *gate, int gdt,
                            lg_rows gr, int64_t group, int64_t D, int64_t total) {
  const int W = V ? 8 : 1;
  int64_t cpr = D / W;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = t / cpr, i = (t - r * cpr) * W;
    TX *xrow = x + lg_row_off(xr, r);
    const TY *yrow = y + lg_row_off(yr, r);
    float a[8], b[8];
    ldc<TX, V>(xrow, i, a);
    ldc<TY, V>(yrow, i, b);
    if (gate) {
      int64_t go = lg_row_off(gr, r / group) + i;
#pragma unroll
      for (int j = 0; j < W; j++)
        a[j] += lg_ld(gate, gdt, go + j) * b[j];
    } else {
#pragma unroll
      for (int j = 0; j < W; j++)
        a[j] += b[j];
    }
    stc<TX, V>(xrow, i, a);
  }
}

/* x += gate * y, then h = LayerNorm(x) * w + b (MOD false: lw, lb [D] or NULL) or
 * h = LayerNorm(x) * (1 + lw[r / group]) + lb[r / group] (MOD: scale and shift rows, row
 * strides lwr, lbr), warp per row (D = 256 * C): the sums run over the bf16-rounded x exactly
 * as k_norm_warp's do, so h has the bits of gated_add + layer_norm / modulate. */
template <int C, bool MOD>
__global__ void __launch_bounds__(256)
    k_gated_add_ln(__nv_bfloat16 *x, lg_rows xr, const __nv_bfloat16 *y, lg_rows yr,
                   const __nv_bfloat16 *gate, lg_rows gr, int64_t group, __nv_bfloat16 *h,
                   lg_rows hr, const __nv_bfloat16 *lw, lg_rows lwr, const __nv_bfloat16 *lb,
                   lg_rows lbr, int64_t R, float eps) {
  typedef io<__nv_bfloat16> B;
  const int64_t r = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  lg_pdl_wait();
  if (r >= R) return;
  __nv_bfloat16 *xrow = x + lg_row_off(xr, r);
  const __nv_bfloat16 *yrow = y + lg_row_off(yr, r), *grow = gate + lg_row_off(gr, r / group);
  if (MOD) lw += lg_row_off(lwr, r / group), lb += lg_row_off(lbr, r / group);
  uint4 xv[C], yv[C], gv[C], wv[C], bv[C];
#pragma unroll
  for (int k = 0; k < C; k++) {
    const int i = (k * 32 + lane) * 8;
    xv[k] = *(const uint4 *)(xrow + i);
    yv[k] = *(const uint4 *)(yrow + i);
    gv[k] = *(const uint4 *)(grow + i);
    if (lw) wv[k] = *(const uint4 *)(lw + i);
    if (lb) bv[k] = *(const uint4 *)(lb + i);
  }
  float s = 0.f, v[8];
#pragma unroll
  for (int k = 0; k < C; k++) {
    float a[8], bb[8], g[8];
    bf8_unpack(xv[k], a);
    bf8_unpack(yv[k], bb);
    bf8_unpack(gv[k], g);
#pragma unroll
    for (int j = 0; j < 8; j++)
      a[j] += g[j] * bb[j];
    B::st8(xrow + (k * 32 + lane) * 8, a);
    __nv_bfloat162 *hp = (__nv_bfloat162 *)&xv[k]; /* keep the rounded values */
#pragma unroll
    for (int j = 0; j < 4; j++)
      hp[j] = __floats2bfloat162_rn(a[2 * j], a[2 * j + 1]);
    bf8_unpack(xv[k], v);
#pragma unroll
    for (int j = 0; j < 8; j++)
      s += v[j];
  }
  warp_norm_store<C, MOD>(xv, wv, bv, lw != NULL, lb != NULL, warp_sum(s) / (256.f * C), eps,
                          h + lg_row_off(hr, r), lane);
}

template <int C>
static void launch_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *y,
                                const lg_tensor *gate, int64_t group, lg_tensor *h,
                                const lg_tensor *lw, const lg_tensor *lb, bool mod, int64_t R,
                                float eps) {
  lg_rows none;
  memset(&none, 0, sizeof none);
  const lg_rows lwr = mod ? lg_rows_of(lw) : none, lbr = mod ? lg_rows_of(lb) : none;
  lg_cuda_launch_pdl(mod ? k_gated_add_ln<C, true> : k_gated_add_ln<C, false>,
                     dim3((unsigned)((R + 7) / 8)), dim3(256), 0, lg_cu(be)->stream,
                     (__nv_bfloat16 *)x->data, lg_rows_of(x), (const __nv_bfloat16 *)y->data,
                     lg_rows_of(y), (const __nv_bfloat16 *)gate->data, lg_rows_of(gate), group,
                     (__nv_bfloat16 *)h->data, lg_rows_of(h),
                     lw ? (const __nv_bfloat16 *)lw->data : NULL, lwr,
                     lb ? (const __nv_bfloat16 *)lb->data : NULL, lbr, R, eps);
}

int lg_cuda_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                         int64_t group, lg_tensor *h, const lg_tensor *ln_w, const lg_tensor *ln_b,
                         bool mod, float eps) {
  int err = 0;
  const int64_t R = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
  if (!gate || group < 1 || R % group || R >= (1ll << 31) || D % 256 || D / 256 < 1 ||
      D / 256 > 8 || !norm_warp_env() || !lg_tensor_same_shape(x, y) ||
      !lg_tensor_same_shape(x, h) || x->dtype != LG_BF16 || y->dtype != LG_BF16 ||
      h->dtype != LG_BF16 || !rows_vec_ok(x) || !rows_vec_ok(y) || !rows_vec_ok(h) ||
      lg_tensor_rows(gate) != R / group || gate->ne[gate->ndim - 1] != D)
    return LG_ENOTSUP;
  {
    lg_rows gr = lg_rows_of(gate);
    if (!param_fast(gate->data, gate->dtype, &gr)) return LG_ENOTSUP;
    const lg_tensor *pp[2] = {ln_w, ln_b};
    for (int i = 0; i < 2; i++) {
      const lg_tensor *t = pp[i];
      if (mod) { /* scale / shift rows, one per group */
        lg_rows tr;
        if (!t || lg_tensor_rows(t) != R / group || t->ne[t->ndim - 1] != D) return LG_ENOTSUP;
        tr = lg_rows_of(t);
        if (!param_fast(t->data, t->dtype, &tr)) return LG_ENOTSUP;
      } else if (t && (lg_tensor_numel(t) != D || !lg_tensor_is_contiguous(t) ||
                       !param_fast(t->data, t->dtype, NULL))) {
        return LG_ENOTSUP;
      }
    }
  }
  if (R == 0) return 0;
  switch (D / 256) {
  case 1: launch_gated_add_ln<1>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 2: launch_gated_add_ln<2>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 3: launch_gated_add_ln<3>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 4: launch_gated_add_ln<4>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 5: launch_gated_add_ln<5>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 6: launch_gated_add_ln<6>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  case 7: launch_gated_add_ln<7>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  default: launch_gated_add_ln<8>(be, x, y, gate, group, h, ln_w, ln_b, mod, R, eps); break;
  }
  CUDA_LAUNCH_CHECK();
  return 0;
fail:
  return err;
}

/* Fast path: bf16 x, y, gate; 8 elements per thread; rows on grid.y (no divisions). */
__global__ void k_gated_add_fast(__nv_bfloat16 *x, lg_rows xr, const __nv_bfloat16 *y, lg_rows yr,
                                 const __nv_bfloat16 *gate, lg_rows gr, int64_t group, int64_t D,
                                 int64_t R) {
  typedef io<__nv_bfloat16> B;
  int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 8;
  if (i >= D) return;
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
    __nv_bfloat16 *xrow = x + lg_row_off(xr, r);
    float a[8], b[8], g[8];
    B::ld8(xrow + i, a);
    B::ld8(y + lg_row_off(yr, r) + i, b);
    if (gate) {
      B::ld8(gate + lg_row_off(gr, r / group) + i, g);
#pragma unroll
      for (int j = 0; j < 8; j++)
        a[j] += g[j] * b[j];
    } else {
#pragma unroll
      for (int j = 0; j < 8; j++)
        a[j] += b[j];
    }
    B::st8(xrow + i, a);
  }
}

template <typename TX, typename TY>
static void launch_gated(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                         int64_t group, bool vec) {
  lg_cuda *c = lg_cu(be);
  int64_t R = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
  int64_t total = R * (vec ? D / 8 : D);
  lg_rows gr = gate ? lg_rows_of(gate) : lg_rows_of(x);
  if (vec)
    k_gated_add<TX, TY, true><<<lg_grid1d(total, 256), 256, 0, c->stream>>>(
        (TX *)x->data, lg_rows_of(x), (const TY *)y->data, lg_rows_of(y), gate ? gate->data : NULL,
        gate ? gate->dtype : 0, gr, group, D, total);
  else
    k_gated_add<TX, TY, false><<<lg_grid1d(total, 256), 256, 0, c->stream>>>(
        (TX *)x->data, lg_rows_of(x), (const TY *)y->data, lg_rows_of(y), gate ? gate->data : NULL,
        gate ? gate->dtype : 0, gr, group, D, total);
}

int lg_cuda_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                      int64_t group) {
  int err = 0;
  LG_TRY(lg_cuda_check_tensor("gated_add", "x", x, true));
  LG_TRY(lg_cuda_check_tensor("gated_add", "y", y, true));
  LG_CHECK(lg_tensor_same_shape(x, y), LG_EINVAL, LG_CUDA_MOD, "gated_add: x and y differ");
  {
    int64_t R = lg_tensor_rows(x), D = x->ne[x->ndim - 1];
    if (R == 0 || D == 0) return 0;
    if (gate) {
      LG_CHECK(group > 0 && R % group == 0, LG_EINVAL, LG_CUDA_MOD,
               "gated_add: group %lld does not divide %lld rows", (long long)group, (long long)R);
      LG_TRY(check_table("gated_add", "gate", gate, R / group, D));
    } else {
      group = 1;
    }
    bool vec = rows_vec_ok(x) && rows_vec_ok(y);
    lg_rows gr = gate ? lg_rows_of(gate) : lg_rows_of(x);
    if (vec && x->dtype == LG_BF16 && y->dtype == LG_BF16 &&
        (!gate || param_fast(gate->data, gate->dtype, &gr))) {
      dim3 grid((unsigned)((D / 8 + 127) / 128), (unsigned)(R < 65535 ? R : 65535));
      k_gated_add_fast<<<grid, 128, 0, lg_cu(be)->stream>>>(
          (__nv_bfloat16 *)x->data, lg_rows_of(x), (const __nv_bfloat16 *)y->data, lg_rows_of(y),
          gate ? (const __nv_bfloat16 *)gate->data : NULL, gr, group, D, R);
      CUDA_LAUNCH_CHECK();
      return 0;
    }
#define GA_CASE(TXT, TX)                                                                           \
  if (x->dtype == TXT) {                                                                           \
    if (y->dtype == LG_BF16)                                                                       \
      launch_gated<TX, __nv_bfloat16>(be, x, y, gate, group, vec);                                 \
    else if (y->dtype == LG_F32)                                                                   \
      launch_gated<TX, float>(be, x, y, gate, group, vec);                                         \
    else                                                                                           \
      launch_gated<TX, __half>(be, x, y, gate, group, vec);                                        \
  }
    GA_CASE(LG_BF16, __nv_bfloat16)
    else GA_CASE(LG_F32, float) else GA_CASE(LG_F16, __half)
#undef GA_CASE
        CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

/* ---- RoPE: one thread per complex pair (2j, 2j+1) of one head of one token ---- */
#define ROPE_MAX_PAIRS 128
#define ROPE_MAX_B 64
typedef struct rope_params {
  double theta[ROPE_MAX_PAIRS]; /* per pair; the axis is decided by the pair index */
  int32_t frame_start[ROPE_MAX_B];
  int npairs, nf, nhp; /* pairs: total, frame part, row part (= column part) */
} rope_params;

/* sin/cos of pos*theta: the angle (up to ~1e3 rad) is formed and reduced to [-pi, pi] in
 * double, then the fast float sincos (abs error ~4e-7 there) does the rest. */
__device__ __forceinline__ void rope_sincos(int64_t pos, double theta, float *s, float *c) {
  double a = (double)pos * theta;
  a -= rint(a * 0.15915494309189535) * 6.283185307179586;
  __sincosf((float)a, s, c);
}

/* bf16 fast path: one thread per 4 pairs (16 bytes); rows of x need 16-byte alignment. */
__global__ void k_rope_bf16x8(__nv_bfloat16 *x, lg_nd xn, int64_t F, int64_t H, int64_t W,
                              int64_t total, rope_params p) {
  typedef io<__nv_bfloat16> B;
  const int cpr = p.npairs / 4; /* chunks of 4 pairs per head */
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    /* 32-bit index math (the host checks that it fits): 64-bit divisions cost more than
     * the memory traffic here */
    uint32_t r = (uint32_t)t;
    const uint32_t nh = (uint32_t)xn.ne[2], L = (uint32_t)xn.ne[1], Wu = (uint32_t)W;
    int j0 = (int)(r % (uint32_t)cpr) * 4;
    r /= (uint32_t)cpr;
    uint32_t h = r % nh;
    r /= nh;
    uint32_t l = r % L, b = r / L;
    uint32_t f = l / (uint32_t)(H * W), lw = l / Wu, hh = lw % (uint32_t)H, w = l - lw * Wu;
    __nv_bfloat16 *e = x + b * xn.nb[0] + (int64_t)l * xn.nb[1] + (int64_t)h * xn.nb[2] + 2 * j0;
    float v[8];
    B::ld8(e, v);
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int j = j0 + q;
      int64_t pos = j < p.nf ? p.frame_start[b] + f : (j < p.nf + p.nhp ? hh : w);
      float s, c;
      rope_sincos(pos, p.theta[j], &s, &c);
      float x0 = v[2 * q], x1 = v[2 * q + 1];
      v[2 * q] = x0 * c - x1 * s;
      v[2 * q + 1] = x0 * s + x1 * c;
    }
    B::st8(e, v);
  }
}

template <typename T>
__global__ void k_rope(T *x, lg_nd xn, int64_t F, int64_t H, int64_t W, int64_t total,
                       rope_params p) {
  /* index space: b, l, head, pair */
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = t;
    int j = (int)(r % p.npairs);
    r /= p.npairs;
    int64_t h = r % xn.ne[2];
    r /= xn.ne[2];
    int64_t l = r % xn.ne[1];
    int64_t b = r / xn.ne[1];
    int64_t f = l / (H * W), hh = (l / W) % H, w = l % W;
    int64_t pos = j < p.nf ? p.frame_start[b] + f : (j < p.nf + p.nhp ? hh : w);
    float s, c;
    rope_sincos(pos, p.theta[j], &s, &c);
    T *e = x + b * xn.nb[0] + l * xn.nb[1] + h * xn.nb[2] + 2 * j;
    float x0 = io<T>::ld(e), x1 = io<T>::ld(e + 1);
    io<T>::st(e, x0 * c - x1 * s);
    io<T>::st(e + 1, x0 * s + x1 * c);
  }
}

int lg_cuda_rope3d(lg_backend *be, lg_tensor *x, int64_t F, int64_t H, int64_t W,
                   const int32_t *frame_start) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  rope_params p;
  LG_TRY(lg_cuda_check_tensor("rope3d", "x", x, true));
  LG_CHECK(x->ndim == 4 && x->ne[1] == F * H * W && x->ne[3] % 2 == 0 && F > 0 && H > 0 && W > 0,
           LG_EINVAL, LG_CUDA_MOD,
           "rope3d: x must be [B, F*H*W, heads, even head_dim] (F=%lld H=%lld W=%lld)",
           (long long)F, (long long)H, (long long)W);
  LG_CHECK(frame_start, LG_EINVAL, LG_CUDA_MOD, "rope3d: frame_start is required");
  LG_CHECK(x->ne[0] <= ROPE_MAX_B && x->ne[3] / 2 <= ROPE_MAX_PAIRS, LG_ENOTSUP, LG_CUDA_MOD,
           "rope3d: at most %d batch rows and %d pairs", ROPE_MAX_B, ROPE_MAX_PAIRS);
  {
    int cpairs = (int)(x->ne[3] / 2);
    p.npairs = cpairs;
    p.nhp = cpairs / 3;
    p.nf = cpairs - 2 * p.nhp;
    for (int j = 0; j < cpairs; j++) {
      int i, n;
      if (j < p.nf)
        i = j, n = p.nf;
      else if (j < p.nf + p.nhp)
        i = j - p.nf, n = p.nhp;
      else
        i = j - p.nf - p.nhp, n = p.nhp;
      /* theta_i = 10000^(-2i/(2n)) in double, as the reference's float64 table */
      p.theta[j] = pow(10000.0, -(double)(2 * i) / (double)(2 * n));
    }
    for (int b = 0; b < x->ne[0]; b++)
      p.frame_start[b] = frame_start[b];
    int64_t total = x->ne[0] * x->ne[1] * x->ne[2] * cpairs;
    if (total == 0) return 0;
    bool vec = x->dtype == LG_BF16 && cpairs % 4 == 0 && (uintptr_t)x->data % 16 == 0 &&
               x->nb[0] % 8 == 0 && x->nb[1] % 8 == 0 && x->nb[2] % 8 == 0 &&
               total / 4 < (1ll << 31);
    if (vec)
      k_rope_bf16x8<<<lg_grid1d(total / 4, 256), 256, 0, c->stream>>>(
          (__nv_bfloat16 *)x->data, lg_nd_of(x), F, H, W, total / 4, p);
    else if (x->dtype == LG_BF16)
      k_rope<__nv_bfloat16><<<lg_grid1d(total, 256), 256, 0, c->stream>>>(
          (__nv_bfloat16 *)x->data, lg_nd_of(x), F, H, W, total, p);
    else if (x->dtype == LG_F32)
      k_rope<float><<<lg_grid1d(total, 256), 256, 0, c->stream>>>((float *)x->data, lg_nd_of(x), F,
                                                                  H, W, total, p);
    else
      k_rope<__half><<<lg_grid1d(total, 256), 256, 0, c->stream>>>((__half *)x->data, lg_nd_of(x),
                                                                   F, H, W, total, p);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

/* cuda_fused.cu: fused ops of the CUDA backend (lg_backend_ops' optional tail, see
 * cpu/lg_fused.c for their unfused meaning):
 * - qk_norm_rope: per token, RMSNorm over its nh*dh elements (weight w) and 3D RoPE of every
 *   head, in one pass with one bf16 rounding (the unfused pair reads and writes the tensor
 *   twice and rounds twice). One warp per token, the row in registers (16-byte loads), RoPE
 *   angles as in cuda_norm.cu (formed and range-reduced in double, fast float sincos), the
 *   frequencies in shared memory.
 *   Other dtypes, layouts or widths over QNR_MAXC*256 compose rms_norm + rope3d.
 * - cosine_mean_n: many cosine_mean pairs (the adaptive-sink measurement: every layer, K and
 *   V, every sink) accumulated in device doubles and downloaded with one sync instead of one
 *   per pair.
 * Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <math.h>
#include <string.h>

#define QNR_MAXC 8       /* chunks of 8 elements per lane: tokens up to 2048 elements */
#define QNR_MAX_PAIRS 64 /* pairs per head: head_dim up to 128 */
#define QNR_MAX_B 64
#define QNR_WARPS 4 /* tokens per block */

typedef struct qnr_params {
  double theta[QNR_MAX_PAIRS];
  int32_t frame_start[QNR_MAX_B];
  int npairs, nf, nhp; /* pairs per head; frame pairs; row (= column) pairs */
  uint32_t L, HW, W, dh, D;
  int64_t nb0, nb1;
  float eps;
} qnr_params;

__device__ __forceinline__ void qnr_ld8(const __nv_bfloat16 *p, float *v) {
  uint4 u = *(const uint4 *)p;
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    float2 f = __bfloat1622float2(h[j]);
    v[2 * j] = f.x, v[2 * j + 1] = f.y;
  }
}

__device__ __forceinline__ void qnr_st8(__nv_bfloat16 *p, const float *v) {
  uint4 u;
  __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
  for (int j = 0; j < 4; j++)
    h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
  *(uint4 *)p = u;
}

__global__ void __launch_bounds__(QNR_WARPS * 32)
    k_qk_norm_rope(__nv_bfloat16 *x, const __nv_bfloat16 *w, int64_t ntok, qnr_params p) {
  /* the per-pair frequencies in shared memory: lanes read different pairs, which the
   * constant bank (kernel parameters) would serve one address at a time */
  __shared__ double th[QNR_MAX_PAIRS];
  for (int j = threadIdx.x; j < p.npairs; j += blockDim.x)
    th[j] = p.theta[j];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t tok = (int64_t)blockIdx.x * QNR_WARPS + (threadIdx.x >> 5);
  if (tok >= ntok) return;
  const uint32_t b = (uint32_t)(tok / p.L), l = (uint32_t)(tok - (int64_t)b * p.L);
  __nv_bfloat16 *row = x + (int64_t)b * p.nb0 + (int64_t)l * p.nb1;
  float v[QNR_MAXC][8];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < QNR_MAXC; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D) {
      qnr_ld8(row + i, v[k]);
#pragma unroll
      for (int j = 0; j < 8; j++)
        ss += v[k][j] * v[k][j];
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float rs = rsqrtf(ss / (float)p.D + p.eps);
  const uint32_t f = l / p.HW, hw = l - f * p.HW, hh = hw / p.W, ww = hw - hh * p.W;
  const int64_t fpos = (int64_t)p.frame_start[b] + f;
#pragma unroll
  for (int k = 0; k < QNR_MAXC; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D) {
      float g[8];
      if (w)
        qnr_ld8(w + i, g);
      else {
#pragma unroll
        for (int j = 0; j < 8; j++)
          g[j] = 1.f;
      }
      const int j0 = (int)((i % p.dh) / 2);
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const int j = j0 + q;
        const int64_t pos = j < p.nf ? fpos : (j < p.nf + p.nhp ? (int64_t)hh : (int64_t)ww);
        double a = (double)pos * th[j];
        a -= rint(a * 0.15915494309189535) * 6.283185307179586;
        float s, c;
        __sincosf((float)a, &s, &c);
        float x0 = v[k][2 * q] * rs * g[2 * q], x1 = v[k][2 * q + 1] * rs * g[2 * q + 1];
        v[k][2 * q] = x0 * c - x1 * s;
        v[k][2 * q + 1] = x0 * s + x1 * c;
      }
      qnr_st8(row + i, v[k]);
    }
  }
}

int lg_cuda_qk_norm_rope(lg_backend *be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F,
                         int64_t H, int64_t W, const int32_t *frame_start) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(lg_cuda_check_tensor("qk_norm_rope", "x", x, true));
  LG_CHECK(x->ndim == 4 && x->nb[3] == 1 && x->nb[2] == x->ne[3] && x->ne[1] == F * H * W &&
               x->ne[3] % 2 == 0 && F > 0 && H > 0 && W > 0 && frame_start,
           LG_EINVAL, LG_CUDA_MOD,
           "qk_norm_rope: x must be [B, F*H*W, heads, even head_dim] with contiguous tokens "
           "(F=%lld H=%lld W=%lld) and frame_start given",
           (long long)F, (long long)H, (long long)W);
  {
    const int64_t B = x->ne[0], L = x->ne[1], dh = x->ne[3], D = x->ne[2] * dh;
    LG_CHECK(!w || (lg_tensor_numel(w) == D && lg_tensor_is_contiguous(w)), LG_EINVAL, LG_CUDA_MOD,
             "qk_norm_rope: w must be a contiguous vector of %lld", (long long)D);
    bool fast = x->dtype == LG_BF16 && (!w || w->dtype == LG_BF16) && dh % 8 == 0 &&
                dh / 2 <= QNR_MAX_PAIRS && D <= QNR_MAXC * 256 && B <= QNR_MAX_B &&
                (uintptr_t)x->data % 16 == 0 && (!w || (uintptr_t)w->data % 16 == 0) &&
                x->nb[0] % 8 == 0 && x->nb[1] % 8 == 0 && L < (1ll << 31) &&
                F * H * W < (1ll << 31);
    if (!fast) {
      lg_tensor r = *x;
      r.ndim = 3;
      r.ne[2] = D;
      r.nb[2] = 1;
      LG_TRY(lg_cuda_rms_norm(be, &r, &r, w, eps));
      return lg_cuda_rope3d(be, x, F, H, W, frame_start);
    }
    qnr_params p;
    memset(&p, 0, sizeof p);
    p.npairs = (int)(dh / 2);
    p.nhp = p.npairs / 3;
    p.nf = p.npairs - 2 * p.nhp;
    for (int j = 0; j < p.npairs; j++) {
      int i, n;
      if (j < p.nf)
        i = j, n = p.nf;
      else if (j < p.nf + p.nhp)
        i = j - p.nf, n = p.nhp;
      else
        i = j - p.nf - p.nhp, n = p.nhp;
      p.theta[j] = pow(10000.0, -(double)(2 * i) / (double)(2 * n));
    }
    for (int64_t b = 0; b < B; b++) {
      LG_CHECK(frame_start[b] >= 0, LG_EINVAL, LG_CUDA_MOD, "qk_norm_rope: frame_start[%lld] = %d",
               (long long)b, frame_start[b]);
      p.frame_start[b] = frame_start[b];
    }
    p.L = (uint32_t)L, p.HW = (uint32_t)(H * W), p.W = (uint32_t)W, p.dh = (uint32_t)dh;
    p.D = (uint32_t)D, p.nb0 = x->nb[0], p.nb1 = x->nb[1], p.eps = eps;
    const int64_t ntok = B * L;
    if (ntok == 0) return 0;
    k_qk_norm_rope<<<(unsigned)((ntok + QNR_WARPS - 1) / QNR_WARPS), QNR_WARPS * 32, 0,
                     c->stream>>>((__nv_bfloat16 *)x->data,
                                  w ? (const __nv_bfloat16 *)w->data : NULL, ntok, p);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

/* ---- cosine_mean_n: every pair's cosine_mean into one device array, one download ---- */

__device__ __forceinline__ double cos_block_sum(double v, double *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  double t = threadIdx.x < blockDim.x / 32 ? sh[threadIdx.x] : 0.0;
  if (w == 0)
    for (int o = 16; o > 0; o >>= 1)
      t += __shfl_xor_sync(0xffffffffu, t, o);
  return t; /* valid in thread 0 */
}

/* One block per row: acc += cos(a[r], b[r]) (torch cosine_similarity, eps 1e-8 per norm). */
__global__ void k_cos_acc(double *acc, const void *a, int adt, lg_rows ar, const void *b, int bdt,
                          lg_rows br, int64_t d) {
  __shared__ double sh[32];
  const int64_t r = blockIdx.x, ao = lg_row_off(ar, r), bo = lg_row_off(br, r);
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    double x = lg_ld(a, adt, ao + i), y = lg_ld(b, bdt, bo + i);
    ab += x * y, aa += x * x, bb += y * y;
  }
  ab = cos_block_sum(ab, sh);
  aa = cos_block_sum(aa, sh);
  bb = cos_block_sum(bb, sh);
  if (threadIdx.x == 0) atomicAdd(acc, ab / (fmax(sqrt(aa), 1e-8) * fmax(sqrt(bb), 1e-8)));
}

int lg_cuda_cosine_mean_n(lg_backend *be, double *out, int n, const lg_tensor *a,
                          const lg_tensor *b) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  double *acc = NULL;
  if (n <= 0) return 0;
  LG_CHECK(!c->capturing, LG_EINVAL, LG_CUDA_MOD, "cosine_mean_n: not during graph capture");
  for (int i = 0; i < n; i++) {
    LG_TRY(lg_cuda_check_tensor("cosine_mean_n", "a", &a[i], true));
    LG_TRY(lg_cuda_check_tensor("cosine_mean_n", "b", &b[i], true));
    LG_CHECK(lg_tensor_same_shape(&a[i], &b[i]), LG_EINVAL, LG_CUDA_MOD,
             "cosine_mean_n: pair %d has two shapes", i);
  }
  acc = (double *)lg_cuda_scratch(be, (size_t)n * sizeof(double));
  LG_CHECK(acc, LG_ENOMEM, LG_CUDA_MOD, "cosine_mean_n: no scratch for %d results", n);
  CUDA_CHECK(cudaMemsetAsync(acc, 0, (size_t)n * sizeof(double), c->stream));
  for (int i = 0; i < n; i++) {
    const int64_t rows = lg_tensor_rows(&a[i]);
    if (rows == 0) continue;
    LG_CHECK(rows < (1ll << 31), LG_ERANGE, LG_CUDA_MOD, "cosine_mean_n: %lld rows",
             (long long)rows);
    k_cos_acc<<<(unsigned)rows, 256, 0, c->stream>>>(acc + i, a[i].data, a[i].dtype,
                                                     lg_rows_of(&a[i]), b[i].data, b[i].dtype,
                                                     lg_rows_of(&b[i]), a[i].ne[a[i].ndim - 1]);
    CUDA_LAUNCH_CHECK();
  }
  CUDA_CHECK(
      cudaMemcpyAsync(out, acc, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  for (int i = 0; i < n; i++) {
    const int64_t rows = lg_tensor_rows(&a[i]);
    out[i] = rows ? out[i] / (double)rows : 0.0;
  }
  return 0;
fail:
  return err;
}

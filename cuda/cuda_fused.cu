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
 * - linear_gated_add: the gated residual add of the o-projection / ffn.2; with
 *   LG_FUSED_GATED_GEMM=1 it tries the cuBLASLt epilogue (a gate vector per frame as alpha,
 *   beta 1 onto x), which cuBLASLt 13 does not support on the H100, so by default it is the
 *   GEMM + gated_add.
 * Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QNR_MAXC 8       /* chunks of 8 elements per lane: tokens up to 2048 elements */
#define QNR_MAX_PAIRS 64 /* pairs per head: head_dim up to 128 */
#define QNR_MAX_B 64
#define QNR_WARPS 4 /* tokens per block */

typedef struct qnr_params {
  double theta[QNR_MAX_PAIRS];
  int32_t frame_start[QNR_MAX_B];
  int npairs, nf, nhp; /* pairs per head; frame pairs; row (= column) pairs */
  int same_pairs;      /* 256 % dh == 0: a lane meets the same pairs in every chunk */
  uint32_t L, HW, W, dh, D;
  int64_t nb0, nb1;
  float eps;
} qnr_params;

__device__ __forceinline__ void qnr_unpack8(uint4 u, float *v) {
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

/* The rotation of pair j of a token: angle pos(j) * theta[j] reduced to [-pi, pi] in double,
 * then the fast float sine and cosine. */
__device__ __forceinline__ void qnr_angle(const double *th, int j, const qnr_params &p,
                                          int64_t fpos, uint32_t hh, uint32_t ww, float *s,
                                          float *c) {
  const int64_t pos = j < p.nf ? fpos : (j < p.nf + p.nhp ? (int64_t)hh : (int64_t)ww);
  double a = (double)pos * th[j];
  a -= rint(a * 0.15915494309189535) * 6.283185307179586;
  __sincosf((float)a, s, c);
}

/* C: chunks of 8 elements per lane, ceil(D / 256) (registers for just those) */
template <int C>
__global__ void __launch_bounds__(QNR_WARPS * 32, 5)
    k_qk_norm_rope(__nv_bfloat16 *x, const __nv_bfloat16 *w, int64_t ntok, qnr_params p) {
  /* the per-pair frequencies in shared memory: lanes read different pairs, which the
   * constant bank (kernel parameters) would serve one address at a time */
  __shared__ double th[QNR_MAX_PAIRS];
  for (int j = threadIdx.x; j < p.npairs; j += blockDim.x)
    th[j] = p.theta[j];
  __syncthreads();
  lg_pdl_wait();
  const int lane = threadIdx.x & 31;
  const int64_t tok = (int64_t)blockIdx.x * QNR_WARPS + (threadIdx.x >> 5);
  if (tok >= ntok) return;
  const uint32_t b = (uint32_t)(tok / p.L), l = (uint32_t)(tok - (int64_t)b * p.L);
  __nv_bfloat16 *row = x + (int64_t)b * p.nb0 + (int64_t)l * p.nb1;
  /* every load first (the row, then the weight), then what needs no data: the rotations */
  uint4 xv[C], wv[C]; /* packed bf16: 4 registers per 8 values */
#pragma unroll
  for (int k = 0; k < C; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D) xv[k] = *(const uint4 *)(row + i);
  }
#pragma unroll
  for (int k = 0; k < C; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D && w) wv[k] = *(const uint4 *)(w + i);
  }
  const uint32_t f = l / p.HW, hw = l - f * p.HW, hh = hw / p.W, ww = hw - hh * p.W;
  const int64_t fpos = (int64_t)p.frame_start[b] + f;
  /* when 256 % dh == 0 a lane's 8 elements sit at the same place of a head in every chunk:
   * its 4 rotations are computed once */
  float sn[4], cs[4];
  if (p.same_pairs) {
    const int j0 = (int)(((uint32_t)lane * 8 % p.dh) / 2);
#pragma unroll
    for (int q = 0; q < 4; q++)
      qnr_angle(th, j0 + q, p, fpos, hh, ww, &sn[q], &cs[q]);
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < C; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D) {
      float v[8];
      qnr_unpack8(xv[k], v);
#pragma unroll
      for (int j = 0; j < 8; j++)
        ss += v[j] * v[j];
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float rs = rsqrtf(ss / (float)p.D + p.eps);
#pragma unroll
  for (int k = 0; k < C; k++) {
    uint32_t i = (uint32_t)(lane + 32 * k) * 8;
    if (i < p.D) {
      float g[8], v[8];
      qnr_unpack8(xv[k], v);
      if (w) {
        const __nv_bfloat162 *h2 = (const __nv_bfloat162 *)&wv[k];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          float2 f2 = __bfloat1622float2(h2[j]);
          g[2 * j] = f2.x, g[2 * j + 1] = f2.y;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++)
          g[j] = 1.f;
      }
      const int j0 = (int)((i % p.dh) / 2);
#pragma unroll
      for (int q = 0; q < 4; q++) {
        float s, c;
        if (p.same_pairs)
          s = sn[q], c = cs[q];
        else
          qnr_angle(th, j0 + q, p, fpos, hh, ww, &s, &c);
        float x0 = v[2 * q] * rs * g[2 * q], x1 = v[2 * q + 1] * rs * g[2 * q + 1];
        v[2 * q] = x0 * c - x1 * s;
        v[2 * q + 1] = x0 * s + x1 * c;
      }
      qnr_st8(row + i, v);
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
    p.same_pairs = 256 % dh == 0;
    const int64_t ntok = B * L;
    if (ntok == 0) return 0;
    void (*k)(__nv_bfloat16 *, const __nv_bfloat16 *, int64_t, qnr_params);
    switch ((D + 255) / 256) {
    case 1: k = k_qk_norm_rope<1>; break;
    case 2: k = k_qk_norm_rope<2>; break;
    case 3: k = k_qk_norm_rope<3>; break;
    case 4: k = k_qk_norm_rope<4>; break;
    case 5: k = k_qk_norm_rope<5>; break;
    case 6: k = k_qk_norm_rope<6>; break;
    case 7: k = k_qk_norm_rope<7>; break;
    default: k = k_qk_norm_rope<8>; break;
    }
    CUDA_CHECK(lg_cuda_launch_pdl(k, dim3((unsigned)((ntok + QNR_WARPS - 1) / QNR_WARPS)),
                                  dim3(QNR_WARPS * 32), 0, c->stream, (__nv_bfloat16 *)x->data,
                                  w ? (const __nv_bfloat16 *)w->data : NULL, ntok, p));
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

/* ---- linear_gated_add: x += gate (.) (a @ w^T + bias), the gate in the GEMM epilogue ----
 * cuBLASLt with a per-output-feature alpha vector (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_
 * BETA_HOST), beta 1 and C = D = x, batched over the R/group gate groups: per group g,
 * x_g = gate_g (.) (a_g w^T) + 1 * x_g + (gate_g (.) bias). The f32 gates and the bf16
 * gate (.) bias rows are made by one small kernel in scratch. Where cuBLASLt offers no
 * algorithm (or dtypes and layouts differ), matmul into tmp + gated_add. */

#define LGA_PLANS 16
typedef struct lga_plan {
  int64_t key[8];
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  int state; /* 0 unused, 1 ready, 2 no algorithm (use the fallback) */
} lga_plan;

typedef struct lg_fused_state {
  lga_plan plans[LGA_PLANS];
} lg_fused_state;

void lg_cuda_fused_free(lg_cuda *c) {
  lg_fused_state *f = (lg_fused_state *)c->fused;
  if (!f) return;
  for (int i = 0; i < LGA_PLANS; i++) {
    lga_plan *p = &f->plans[i];
    if (p->state != 1) continue;
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->desc);
  }
  free(f);
  c->fused = NULL;
}

/* ga[g,n] = gate[g,n] (f32); gb[g,n] = bf16(gate[g,n] * bias[n]) when bias. */
__global__ void k_gate_prep(float *ga, __nv_bfloat16 *gb, const void *gate, int gdt, lg_rows gr,
                            const void *bias, int bdt, int64_t G, int64_t N) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < G * N;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t g = i / N, n = i - g * N;
    const float v = lg_ld(gate, gdt, lg_row_off(gr, g) + n);
    ga[i] = v;
    if (bias) gb[i] = __float2bfloat16_rn(v * lg_ld(bias, bdt, n));
  }
}

static int lga_fallback(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                        const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                        lg_tensor *tmp) {
  int err = 0;
  lg_matmul_opts o;
  memset(&o, 0, sizeof o);
  o.trans_b = true;
  LG_TRY(lg_cuda_matmul(be, tmp, a, w, bias, &o));
  LG_TRY(lg_cuda_gated_add(be, x, tmp, gate, group));
fail:
  return err;
}

static uint32_t lga_align(const void *p) {
  uint32_t a = 256;
  while (a > 1 && ((uintptr_t)p % a))
    a >>= 1;
  return a;
}

/* The plan for these shapes and alignments, made at the first call (outside graph capture). */
static lga_plan *lga_get_plan(lg_backend *be, int64_t G, int64_t M, int64_t N, int64_t K,
                              bool has_bias, uint32_t al) {
  lg_cuda *c = lg_cu(be);
  int err = 0;
  lg_fused_state *f = (lg_fused_state *)c->fused;
  if (!f) {
    f = (lg_fused_state *)calloc(1, sizeof *f);
    if (!f) return NULL;
    c->fused = f;
  }
  int64_t key[8] = {G, M, N, K, has_bias, al, 0, 0};
  lga_plan *p = NULL;
  for (int i = 0; i < LGA_PLANS && !p; i++)
    if (f->plans[i].state && !memcmp(f->plans[i].key, key, sizeof key)) p = &f->plans[i];
  if (p) return p;
  for (int i = 0; i < LGA_PLANS && !p; i++)
    if (!f->plans[i].state) p = &f->plans[i];
  if (!p || c->capturing) return NULL; /* table full or in capture: the fallback */
  memset(p, 0, sizeof *p);
  memcpy(p->key, key, sizeof key);
  p->state = 2;
  {
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasOperation_t opa = CUBLAS_OP_T, opb = CUBLAS_OP_N; /* cublas A = w [N,K] (T), B = a */
    cublasLtPointerMode_t pm = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST;
    cublasLtEpilogue_t epi = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    int64_t vstride = N, zero = 0, bs_a = M * K, bs_x = M * N;
    int batch = (int)G;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        p->desc, CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE, &vstride, sizeof vstride));
    if (has_bias)
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                  &vstride, sizeof vstride));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, K, N, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, K, M, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_16BF, N, M, N));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(p->la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof batch));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        p->la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &zero, sizeof zero));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof batch));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        p->lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &bs_a, sizeof bs_a));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof batch));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        p->lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &bs_x, sizeof bs_x));
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_bytes, sizeof c->lt_ws_bytes));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al,
                                         sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al,
                                         sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al,
                                         sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al,
                                         sizeof al);
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc,
                                                       pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    p->state = 1; /* descriptors exist from here */
    if (st != CUBLAS_STATUS_SUCCESS || nres < 1) {
      LG_INFO(LG_CUDA_MOD,
              "linear_gated_add: no cuBLASLt algorithm with a gate vector for %lld x %lld x %lld "
              "(%lld groups, status %d): matmul + gated_add",
              (long long)M, (long long)N, (long long)K, (long long)G, (int)st);
      goto fail;
    }
    p->algo = res.algo;
  }
  return p;
fail:
  if (err) LG_ERR(LG_CUDA_MOD, "linear_gated_add: cuBLASLt plan setup failed: matmul + gated_add");
  if (p->la) cublasLtMatrixLayoutDestroy(p->la);
  if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
  if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
  if (p->desc) cublasLtMatmulDescDestroy(p->desc);
  p->la = p->lb = p->lc = NULL;
  p->desc = NULL;
  p->state = 2;
  return p;
}

/* LG_FUSED_GATED_GEMM=1 tries the epilogue path; off by default, because cuBLASLt 13 on the
 * H100 offers no algorithm for it (status 15, NOT_SUPPORTED, for every DiT shape: bf16, gate
 * vector, beta 1, batched bias), so each shape would only probe and fall back. Read once. */
static bool lga_enabled(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("LG_FUSED_GATED_GEMM");
    on = e && !strcmp(e, "1");
  }
  return on == 1;
}

/* linear_gated_add_ln / _mod: the GEMM into tmp, then the gated add and the norm (affine
 * LayerNorm, or LayerNorm + modulate) in one pass (x is read once instead of twice); tensors
 * that do not fit that pass go through linear_gated_add + layer_norm / modulate. */
static int gated_add_norm(lg_backend *be, const char *nm, lg_tensor *x, const lg_tensor *a,
                          const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                          int64_t group, lg_tensor *tmp, lg_tensor *h, const lg_tensor *pa,
                          const lg_tensor *pb, bool mod, float eps) {
  int err = 0;
  LG_TRY(lg_cuda_check_tensor(nm, "tmp", tmp, true));
  LG_TRY(lg_cuda_check_tensor(nm, "h", h, true));
  LG_CHECK(lg_tensor_same_shape(tmp, x) && lg_tensor_same_shape(h, x), LG_EINVAL, LG_CUDA_MOD,
           "%s: tmp and h must have x's shape", nm);
  {
    lg_matmul_opts o = {.trans_b = true};
    LG_TRY(lg_cuda_matmul(be, tmp, a, w, bias, &o));
    err = lg_cuda_gated_add_ln(be, x, tmp, gate, group, h, pa, pb, mod, eps);
    if (err == LG_ENOTSUP) {
      LG_TRY(lg_cuda_gated_add(be, x, tmp, gate, group));
      err = mod ? lg_cuda_modulate(be, h, x, pb, pa, group, true, eps)
                : lg_cuda_layer_norm(be, h, x, pa, pb, eps);
    }
  }
fail:
  return err;
}

int lg_cuda_linear_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                int64_t group, lg_tensor *tmp, lg_tensor *h, const lg_tensor *ln_w,
                                const lg_tensor *ln_b, float eps) {
  return gated_add_norm(be, "linear_gated_add_ln", x, a, w, bias, gate, group, tmp, h, ln_w, ln_b,
                        false, eps);
}

int lg_cuda_linear_gated_add_mod(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                 const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                 int64_t group, lg_tensor *tmp, lg_tensor *h,
                                 const lg_tensor *shift, const lg_tensor *scale, float eps) {
  return gated_add_norm(be, "linear_gated_add_mod", x, a, w, bias, gate, group, tmp, h, scale,
                        shift, true, eps);
}

int lg_cuda_linear_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                             const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                             lg_tensor *tmp) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_TRY(lg_cuda_check_tensor("linear_gated_add", "x", x, true));
  LG_TRY(lg_cuda_check_tensor("linear_gated_add", "a", a, true));
  LG_TRY(lg_cuda_check_tensor("linear_gated_add", "w", w, true));
  LG_TRY(lg_cuda_check_tensor("linear_gated_add", "gate", gate, true));
  {
    const int64_t R = lg_tensor_rows(x), N = x->ne[x->ndim - 1], K = a->ne[a->ndim - 1];
    LG_CHECK(group >= 1 && R % group == 0 && lg_tensor_rows(a) == R && w->ndim == 2 &&
                 w->ne[0] == N && w->ne[1] == K && lg_tensor_rows(gate) == R / group &&
                 gate->ne[gate->ndim - 1] == N && (!bias || lg_tensor_numel(bias) == N),
             LG_EINVAL, LG_CUDA_MOD,
             "linear_gated_add: shapes do not fit (R %lld, N %lld, K %lld, group %lld)",
             (long long)R, (long long)N, (long long)K, (long long)group);
    const int64_t G = R / group;
    const bool ok = lga_enabled() && x->dtype == LG_BF16 && a->dtype == LG_BF16 &&
                    w->dtype == LG_BF16 && lg_tensor_is_contiguous(x) &&
                    lg_tensor_is_contiguous(a) && lg_tensor_is_contiguous(w) && w->nb[0] == K &&
                    (!bias || lg_tensor_is_contiguous(bias)) && R < (1ll << 31) && N % 8 == 0 &&
                    K % 8 == 0 && group % 8 == 0;
    lga_plan *p = NULL;
    if (ok) {
      uint32_t al = lga_align(x->data);
      uint32_t a2 = lga_align(a->data), a3 = lga_align(w->data);
      al = al < a2 ? al : a2;
      al = al < a3 ? al : a3;
      p = lga_get_plan(be, G, group, N, K, bias != NULL, al);
    }
    if (!p || p->state != 1) return lga_fallback(be, x, a, w, bias, gate, group, tmp);
    /* scratch: f32 gates [G,N] then bf16 gate*bias [G,N], each 256-byte aligned */
    size_t ga_b = ((size_t)(G * N) * 4 + 255) & ~(size_t)255, gb_b = (size_t)(G * N) * 2;
    uint8_t *s = (uint8_t *)lg_cuda_scratch(be, ga_b + gb_b + 256);
    if (!s) return lga_fallback(be, x, a, w, bias, gate, group, tmp);
    float *ga = (float *)s;
    __nv_bfloat16 *gb = (__nv_bfloat16 *)(s + ga_b);
    k_gate_prep<<<lg_grid1d(G * N, 256), 256, 0, c->stream>>>(
        ga, gb, gate->data, gate->dtype, lg_rows_of(gate), bias ? bias->data : NULL,
        bias ? bias->dtype : 0, G, N);
    CUDA_LAUNCH_CHECK();
    if (bias) {
      const void *bp = gb;
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                  sizeof bp));
    }
    {
      const float beta = 1.f;
      CUBLAS_CHECK(cublasLtMatmul(c->lt, p->desc, ga, w->data, p->la, a->data, p->lb, &beta,
                                  x->data, p->lc, x->data, p->lc, &p->algo, c->lt_ws,
                                  c->lt_ws_bytes, c->stream));
    }
  }
  return 0;
fail:
  return err;
}

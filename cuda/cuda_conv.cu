/* cuda_conv.cu: the conv3d op. x [T,H,W,Ci] channels-last, the weight from load_weight(CONV)
 * (bf16, stored [Co,kt,kh,kw,Ci]: cuDNN's NHWC/NDHWC filter layout), bias [Co] or NULL,
 * y [T',H',W',Co] contiguous. Paths:
 * - 1x1x1 stride 1 unpadded on a contiguous x: one cuBLASLt GEMM.
 * - cuDNN (legacy API; libcudnn.so.9 opened with dlopen at the first conv, so a machine without
 *   it still runs, on im2col): kt == 1 with no time stride or padding is a 2-d NHWC conv with
 *   the frames as the batch (Conv2d, the upsample/downsample convs, TAEHV); anything else a 3-d
 *   NDHWC conv (3x3x3, 3x1x1). bf16 in and out, fp32 compute, tensor-op math. Asymmetric
 *   padding (the downsample's (0,1), the clip mode's 2 front frames) or a strided / unaligned x
 *   is first copied into a zero-padded contiguous tensor in the scratch buffer and convolved
 *   unpadded. The bias is a separate pass over y.
 * - split (a 3-d conv with time stride 1 and no time padding left): kt accumulated 2-d cuDNN
 *   convs, one per time tap, the To output frames as the batch and the input shifted by one
 *   frame per tap (y = conv(x[0:To], w_0); y += conv(x[it:it+To], w_it), cuDNN beta = 1), the
 *   per-tap filters repacked [kt][Co,kh,kw,Ci] on each call (a small copy); the bias is added by
 *   the last tap (cudnnConvolutionBiasActivationForward, z = y) where cuDNN allows it, else a
 *   pass. The partial sums between taps are rounded to bf16 (y's dtype).
 * - direct (Co <= 8, Ci % 32 == 0, bf16): an implicit-GEMM kernel on mma.sync m16n8k16 (one
 *   8-wide n tile, fp32 accumulators, bias fused), for the 3-channel heads where cuDNN reaches
 *   ~17 TFLOP/s.
 * - im2col + cuBLASLt GEMM in row chunks (F32/F16 tensors, no cuDNN, or where it measured faster).
 * Per distinct shape a plan is made once (descriptors, the algorithm from
 * cudnnFindConvolutionForwardAlgorithm, its workspace size; in auto mode every applicable path is
 * then timed on that call's tensors (median of 5, bias included) and the fastest kept: cuDNN as
 * planned, split with the bias pass or fused, direct, and for Ci < 32 im2col). The workspace and
 * the repacked-filter buffer grow only when a new plan needs more and never during graph capture,
 * so a steady call allocates nothing. LG_CONV=im2col|cudnn|split|direct|auto (read once) or
 * lg_cuda_conv_set_mode overrides the choice (split/direct where they apply, else cuDNN). Runs
 * on the backend's thread. */
#include "cuda_internal.cuh"

#include <stdlib.h>
#include <string.h>

#include <type_traits>

#ifdef LG_HAVE_CUDNN
#include <cudnn.h>
#include <dlfcn.h>
#endif

#define CONV_SCRATCH (64ll << 20)       /* im2col patch matrix bytes per chunk, at most */
#define CONV_WS_MAX ((size_t)512 << 20) /* largest cuDNN workspace an algorithm may ask */
#define CONV_PLANS 128

enum { CONV_AUTO = 0, CONV_IM2COL = 1, CONV_CUDNN = 2, CONV_SPLIT = 3, CONV_DIRECT = 4 };

typedef struct conv_geom {
  int64_t T, H, W, Ci; /* input */
  int64_t To, Ho, Wo;  /* output */
  int kt, kh, kw;
  int st, sh, sw;
  int pt, ph, pw; /* front/top/left padding */
  int64_t xb[4];  /* x strides (t,h,w,c) */
} conv_geom;

static int g_conv_mode = -1; /* -1: LG_CONV from the environment at the first conv */

extern "C" void lg_cuda_conv_set_mode(int mode) {
  g_conv_mode = mode;
}

static int conv_mode(void) {
  if (g_conv_mode < 0) {
    const char *e = getenv("LG_CONV");
    g_conv_mode = CONV_AUTO;
    if (e && !strcmp(e, "im2col")) g_conv_mode = CONV_IM2COL;
    if (e && !strcmp(e, "cudnn")) g_conv_mode = CONV_CUDNN;
    if (e && !strcmp(e, "split")) g_conv_mode = CONV_SPLIT;
    if (e && !strcmp(e, "direct")) g_conv_mode = CONV_DIRECT;
  }
  return g_conv_mode;
}

/* ------------------------------------------------------------------ kernels */

/* col[r - r0][k] for output rows r in [r0, r0+rows): k = ((it*kh + ih)*kw + iw)*Ci + c. */
__global__ void k_im2col(__nv_bfloat16 *col, const void *x, int xdt, conv_geom g, int64_t r0,
                         int64_t rows, int64_t kdim) {
  int64_t total = rows * kdim;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t rr = i / kdim, k = i - rr * kdim;
    int64_t r = r0 + rr;
    int64_t wo = r % g.Wo, ho = (r / g.Wo) % g.Ho, to = r / (g.Wo * g.Ho);
    int64_t c = k % g.Ci, rest = k / g.Ci;
    int iw = (int)(rest % g.kw), ih = (int)((rest / g.kw) % g.kh), it = (int)(rest / (g.kw * g.kh));
    int64_t ti = to * g.st - g.pt + it, hi = ho * g.sh - g.ph + ih, wi = wo * g.sw - g.pw + iw;
    float v = 0.f;
    if (ti >= 0 && ti < g.T && hi >= 0 && hi < g.H && wi >= 0 && wi < g.W)
      v = lg_ld(x, xdt, ti * g.xb[0] + hi * g.xb[1] + wi * g.xb[2] + c * g.xb[3]);
    col[i] = __float2bfloat16_rn(v);
  }
}

/* dst [Tp,Hp,Wp,C] contiguous bf16 = x [T,H,W,C] (strides xb, c contiguous) placed at
 * (pt,ph,pw), zeros around; V channels per thread (8 = one 16-byte vector). */
template <int V>
__global__ void k_pad_copy(__nv_bfloat16 *dst, const __nv_bfloat16 *x, conv_geom g, int64_t Tp,
                           int64_t Hp, int64_t Wp) {
  typedef typename std::conditional<V == 8, uint4, __nv_bfloat16>::type vec;
  int64_t cv = g.Ci / V, total = Tp * Hp * Wp * cv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t c = i % cv, p = i / cv;
    int64_t w = p % Wp, h = (p / Wp) % Hp, t = p / (Wp * Hp);
    int64_t ti = t - g.pt, hi = h - g.ph, wi = w - g.pw;
    vec v;
    memset(&v, 0, sizeof v);
    if (ti >= 0 && ti < g.T && hi >= 0 && hi < g.H && wi >= 0 && wi < g.W)
      v = *(const vec *)(x + ti * g.xb[0] + hi * g.xb[1] + wi * g.xb[2] + c * V);
    ((vec *)dst)[i] = v;
  }
}

/* y[r, c] += bias[c * bstride], y [rows, C] contiguous bf16; V channels per thread. */
template <int V>
__global__ void k_bias_add(__nv_bfloat16 *y, int64_t rows, int64_t C, const void *bias, int bdt,
                           int64_t bstride) {
  int64_t cv = C / V, total = rows * cv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t c0 = (i % cv) * V;
    __nv_bfloat16 *p = y + (i / cv) * C + c0;
    if (V == 8) {
      uint4 u = *(uint4 *)p;
      __nv_bfloat16 *e = (__nv_bfloat16 *)&u;
#pragma unroll
      for (int j = 0; j < V; j++)
        e[j] = __float2bfloat16_rn(__bfloat162float(e[j]) + lg_ld(bias, bdt, (c0 + j) * bstride));
      *(uint4 *)p = u;
    } else {
      p[0] = __float2bfloat16_rn(__bfloat162float(p[0]) + lg_ld(bias, bdt, c0 * bstride));
    }
  }
}

/* wt [kt][Co][khw*Ci] = w [Co][kt][khw*Ci] (bf16): the per-tap filters of the split path,
 * each contiguous; V elements per thread (8 = one 16-byte vector). */
template <int V>
__global__ void k_repack_taps(__nv_bfloat16 *wt, const __nv_bfloat16 *w, int64_t Co, int kt,
                              int64_t inner) {
  typedef typename std::conditional<V == 8, uint4, __nv_bfloat16>::type vec;
  int64_t iv = inner / V, total = Co * kt * iv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t e = i % iv, r = i / iv; /* r = o*kt + t (source order) */
    int64_t t = r % kt, o = r / kt;
    ((vec *)wt)[(t * Co + o) * iv + e] = ((const vec *)w)[i];
  }
}

/* Direct conv for Co <= 8 on tensor cores: a warp computes DIRECT_P tiles of 16 output pixels
 * of one output row (to, ho), wo = wo0 + 16j + {gid, gid+8}, as mma.sync m16n8k16 bf16 with
 * fp32 accumulators: M = pixels, N = the Co outputs (padded to 8), K = kt*kh*kw*Ci walked as
 * (tap, 32 channels). Lane (gid = lane/4, tig = lane%4) loads 8 channels c0+8tig.. of its two
 * pixels and of weight row gid as one 16-byte vector each; the two k16 steps use words (x,y)
 * and (z,w) of them, a permutation of K applied to A and B alike. Out-of-range taps (padding)
 * read zeros. x [T,H,W,Ci] with c contiguous, Ci % 32 == 0, strides xb multiples of 8 and a
 * 16-byte aligned base; w [Co,kt,kh,kw,Ci]; y [To,Ho,Wo,Co] contiguous; bias [Co] or NULL.
 * Block: 8 warps = 8 consecutive output rows; grid (ceil(Wo / (16 DIRECT_P)) * To, ceil(Ho / 8)),
 * the output frame fastest, so that the To blocks of one tile, which read the same input
 * frames, run together. */
#define DIRECT_P 4
__global__ void __launch_bounds__(256)
    k_conv_smallco(__nv_bfloat16 *y, const __nv_bfloat16 *x, const __nv_bfloat16 *w,
                   const void *bias, int bdt, int64_t bstride, conv_geom g, int Co) {
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int64_t to = blockIdx.x % g.To, ho = (int64_t)blockIdx.y * 8 + (threadIdx.x >> 5);
  const int64_t wo0 = (int64_t)(blockIdx.x / g.To) * 16 * DIRECT_P;
  const int64_t kdim = (int64_t)g.kt * g.kh * g.kw * g.Ci;
  const bool row_ok = ho < g.Ho;
  const bool wrow = gid < Co;
  const __nv_bfloat16 *wp = w + (wrow ? gid : 0) * kdim + 8 * tig;
  float acc[DIRECT_P][4];
#pragma unroll
  for (int j = 0; j < DIRECT_P; j++)
    acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  for (int it = 0; it < g.kt; it++) {
    int64_t ti = to * g.st - g.pt + it;
    bool tok = row_ok && ti >= 0 && ti < g.T;
    for (int ih = 0; ih < g.kh; ih++) {
      int64_t hi = ho * g.sh - g.ph + ih;
      bool hok = tok && hi >= 0 && hi < g.H;
      for (int iw = 0; iw < g.kw; iw++) {
        int64_t pa[DIRECT_P], pb[DIRECT_P];
        bool va[DIRECT_P], vb[DIRECT_P];
#pragma unroll
        for (int j = 0; j < DIRECT_P; j++) {
          int64_t woa = wo0 + 16 * j + gid, wob = woa + 8;
          int64_t wia = woa * g.sw - g.pw + iw, wib = wob * g.sw - g.pw + iw;
          va[j] = hok && woa < g.Wo && wia >= 0 && wia < g.W;
          vb[j] = hok && wob < g.Wo && wib >= 0 && wib < g.W;
          int64_t base = ti * g.xb[0] + hi * g.xb[1] + 8 * tig;
          pa[j] = base + wia * g.xb[2];
          pb[j] = base + wib * g.xb[2];
        }
        const __nv_bfloat16 *wt = wp + ((int64_t)(it * g.kh + ih) * g.kw + iw) * g.Ci;
#pragma unroll 1
        for (int64_t c0 = 0; c0 < g.Ci; c0 += 32) {
          uint4 B = make_uint4(0, 0, 0, 0);
          if (wrow) B = __ldg((const uint4 *)(wt + c0));
#pragma unroll
          for (int j = 0; j < DIRECT_P; j++) {
            uint4 A0 = make_uint4(0, 0, 0, 0), A1 = make_uint4(0, 0, 0, 0);
            if (va[j]) A0 = __ldg((const uint4 *)(x + pa[j] + c0));
            if (vb[j]) A1 = __ldg((const uint4 *)(x + pb[j] + c0));
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                         : "r"(A0.x), "r"(A1.x), "r"(A0.y), "r"(A1.y), "r"(B.x), "r"(B.y));
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                         : "r"(A0.z), "r"(A1.z), "r"(A0.w), "r"(A1.w), "r"(B.z), "r"(B.w));
          }
        }
      }
    }
  }
  if (!row_ok) return;
  /* c0,c1: pixel gid, outputs 2tig, 2tig+1; c2,c3: pixel gid+8 */
  const int n0 = 2 * tig;
  float b0 = 0.f, b1 = 0.f;
  if (bias && n0 < Co) b0 = lg_ld(bias, bdt, n0 * bstride);
  if (bias && n0 + 1 < Co) b1 = lg_ld(bias, bdt, (n0 + 1) * bstride);
  __nv_bfloat16 *yr = y + (to * g.Ho + ho) * g.Wo * Co;
#pragma unroll
  for (int j = 0; j < DIRECT_P; j++) {
    int64_t woa = wo0 + 16 * j + gid, wob = woa + 8;
    if (woa < g.Wo) {
      if (n0 < Co) yr[woa * Co + n0] = __float2bfloat16_rn(acc[j][0] + b0);
      if (n0 + 1 < Co) yr[woa * Co + n0 + 1] = __float2bfloat16_rn(acc[j][1] + b1);
    }
    if (wob < g.Wo) {
      if (n0 < Co) yr[wob * Co + n0] = __float2bfloat16_rn(acc[j][2] + b0);
      if (n0 + 1 < Co) yr[wob * Co + n0 + 1] = __float2bfloat16_rn(acc[j][3] + b1);
    }
  }
}

/* Whether the direct kernel takes this conv (see k_conv_smallco). */
static bool direct_applies(const lg_tensor *y, const lg_tensor *x, const conv_geom &g, int64_t Co) {
  return x->dtype == LG_BF16 && y->dtype == LG_BF16 && Co >= 1 && Co <= 8 && g.Ci % 32 == 0 &&
         x->nb[3] == 1 && g.xb[0] % 8 == 0 && g.xb[1] % 8 == 0 && g.xb[2] % 8 == 0 &&
         (uintptr_t)x->data % 16 == 0 && (g.Wo + 63) / 64 * g.To < ((int64_t)1 << 31) &&
         (g.Ho + 7) / 8 <= 65535;
}

static int conv_direct(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                       const lg_tensor *bias, const conv_geom &g, int64_t Co) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  dim3 grid((unsigned)((g.Wo + 16 * DIRECT_P - 1) / (16 * DIRECT_P) * g.To),
            (unsigned)((g.Ho + 7) / 8));
  k_conv_smallco<<<grid, 256, 0, c->stream>>>(
      (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)x->data, (const __nv_bfloat16 *)w->data,
      bias ? bias->data : NULL, bias ? bias->dtype : LG_BF16, bias ? bias->nb[0] : 0, g, (int)Co);
  CUDA_LAUNCH_CHECK();
  return 0;
fail:
  return err;
}

/* y [rows, Co] += bias (the separate bias pass of the cuDNN paths). */
static int bias_pass(lg_backend *be, lg_tensor *y, int64_t rows, int64_t Co,
                     const lg_tensor *bias) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  if (Co % 8 == 0) {
    int64_t n = rows * Co / 8;
    k_bias_add<8><<<lg_grid1d(n, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)y->data, rows, Co,
                                                            bias->data, bias->dtype, bias->nb[0]);
  } else {
    k_bias_add<1><<<lg_grid1d(rows * Co, 256), 256, 0, c->stream>>>(
        (__nv_bfloat16 *)y->data, rows, Co, bias->data, bias->dtype, bias->nb[0]);
  }
  CUDA_LAUNCH_CHECK();
  return 0;
fail:
  return err;
}

/* ------------------------------------------------------------------ im2col + GEMM */

static int conv_im2col(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                       const lg_tensor *bias, const conv_geom &g, int64_t Co) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  int64_t kdim = (int64_t)g.kt * g.kh * g.kw * g.Ci, rows = g.To * g.Ho * g.Wo;
  lg_matmul_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.trans_b = true;
  int64_t wshape[2] = {Co, kdim}, ashape[2] = {rows, kdim}, yshape[2] = {rows, Co};
  lg_tensor wt = lg_tensor_make(be, w->data, LG_BF16, 2, wshape);
  int64_t chunk = CONV_SCRATCH / (kdim * 2);
  if (chunk < 1) chunk = 1;
  if (chunk > rows) chunk = rows;
  __nv_bfloat16 *col = (__nv_bfloat16 *)lg_cuda_scratch(be, (size_t)(chunk * kdim * 2));
  LG_CHECK(col, LG_ENOMEM, LG_CUDA_MOD, "conv3d: no scratch for %lld x %lld patches",
           (long long)chunk, (long long)kdim);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
    int64_t total = n * kdim;
    k_im2col<<<lg_grid1d(total, 256), 256, 0, c->stream>>>(col, x->data, x->dtype, g, r0, n, kdim);
    CUDA_LAUNCH_CHECK();
    ashape[0] = n, yshape[0] = n;
    lg_tensor a = lg_tensor_make(be, col, LG_BF16, 2, ashape);
    lg_tensor yy = lg_tensor_make(
        be, (uint8_t *)y->data + (size_t)(r0 * Co) * lg_dtype_size(y->dtype), y->dtype, 2, yshape);
    LG_TRY(lg_cuda_matmul(be, &yy, &a, &wt, bias, &mo));
  }
  return 0;
fail:
  return err;
}

/* ------------------------------------------------------------------ cuDNN */

#ifdef LG_HAVE_CUDNN

/* the legacy-API entry points, looked up by name in libcudnn.so.9 */
#define CUDNN_FNS(X)                                                                               \
  X(GetErrorString)                                                                                \
  X(GetVersion)                                                                                    \
  X(Create)                                                                                        \
  X(Destroy)                                                                                       \
  X(SetStream)                                                                                     \
  X(CreateTensorDescriptor)                                                                        \
  X(DestroyTensorDescriptor)                                                                       \
  X(SetTensorNdDescriptorEx)                                                                       \
  X(CreateFilterDescriptor)                                                                        \
  X(DestroyFilterDescriptor)                                                                       \
  X(SetFilterNdDescriptor)                                                                         \
  X(CreateConvolutionDescriptor)                                                                   \
  X(DestroyConvolutionDescriptor)                                                                  \
  X(SetConvolutionNdDescriptor)                                                                    \
  X(SetConvolutionMathType)                                                                        \
  X(GetConvolutionNdForwardOutputDim)                                                              \
  X(FindConvolutionForwardAlgorithm)                                                               \
  X(GetConvolutionForwardWorkspaceSize)                                                            \
  X(ConvolutionForward)

/* optional: without them the split path adds its bias in a separate pass */
#define CUDNN_OPT_FNS(X)                                                                           \
  X(CreateActivationDescriptor)                                                                    \
  X(SetActivationDescriptor)                                                                       \
  X(DestroyActivationDescriptor)                                                                   \
  X(ConvolutionBiasActivationForward)

typedef struct cudnn_api {
#define CUDNN_DECL(f) decltype(&cudnn##f) f;
  CUDNN_FNS(CUDNN_DECL)
  CUDNN_OPT_FNS(CUDNN_DECL)
#undef CUDNN_DECL
} cudnn_api;

typedef struct conv_plan {
  int64_t key[18];
  bool used, have_descs, have_algo, timed;
  int path; /* CONV_CUDNN, CONV_SPLIT, CONV_DIRECT or CONV_IM2COL (measured fastest, or the
               only one with an algorithm) */
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnConvolutionFwdAlgo_t algo;
  size_t ws;
  /* split: the per-tap 2-d conv [To,Ci,Hin,Win] -> [To,Co,Ho,Wo], filters [Co,Ci,kh,kw] */
  bool have_split_descs, have_split, have_bias_desc, can_fuse, fuse;
  cudnnTensorDescriptor_t xd2, yd2, bd2;
  cudnnFilterDescriptor_t wd2;
  cudnnConvolutionDescriptor_t cd2;
  cudnnConvolutionFwdAlgo_t algo2;
  size_t ws2;
  float ms_find, ms_cudnn, ms_im2col, ms_split, ms_fused, ms_direct; /* -1: not timed */
} conv_plan;

typedef struct lg_cuda_conv {
  int state; /* 1 cuDNN usable, -1 not (im2col only) */
  void *lib;
  cudnn_api a;
  cudnnHandle_t h;
  void *ws; /* cuDNN workspace, grow-only, from the backend's pool */
  size_t ws_bytes;
  void *wt; /* the split path's per-tap filters, grow-only, from the pool */
  size_t wt_bytes;
  bool have_act; /* the optional functions and an identity activation descriptor */
  cudnnActivationDescriptor_t act;
  cudaEvent_t ev[2];
  conv_plan plans[CONV_PLANS];
  char last[160]; /* what the last conv3d ran (tests' perf table) */
} lg_cuda_conv;

static const char *dn_str(lg_cuda_conv *s, cudnnStatus_t st) {
  return s->a.GetErrorString ? s->a.GetErrorString(st) : "?";
}

#define DN_CHECK(s, stmt)                                                                          \
  do {                                                                                             \
    cudnnStatus_t st_ = (stmt);                                                                    \
    if (st_ != CUDNN_STATUS_SUCCESS) {                                                             \
      LG_ERR(LG_CUDA_MOD, "%s failed: %s (%s:%d)", #stmt, dn_str(s, st_), __FILE__, __LINE__);     \
      err = LG_EBACKEND;                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

static void plan_release(lg_cuda_conv *s, conv_plan *p) {
  if (p->have_descs) {
    s->a.DestroyTensorDescriptor(p->xd);
    s->a.DestroyTensorDescriptor(p->yd);
    s->a.DestroyFilterDescriptor(p->wd);
    s->a.DestroyConvolutionDescriptor(p->cd);
  }
  if (p->have_split_descs) {
    s->a.DestroyTensorDescriptor(p->xd2);
    s->a.DestroyTensorDescriptor(p->yd2);
    s->a.DestroyFilterDescriptor(p->wd2);
    s->a.DestroyConvolutionDescriptor(p->cd2);
  }
  if (p->have_bias_desc) s->a.DestroyTensorDescriptor(p->bd2);
  memset(p, 0, sizeof *p);
}

void lg_cuda_conv_free(lg_cuda *c) {
  lg_cuda_conv *s = (lg_cuda_conv *)c->conv;
  if (!s) return;
  if (s->state > 0) {
    for (int i = 0; i < CONV_PLANS; i++)
      if (s->plans[i].used) plan_release(s, &s->plans[i]);
    if (s->have_act) s->a.DestroyActivationDescriptor(s->act);
    if (s->h) s->a.Destroy(s->h);
  }
  for (int i = 0; i < 2; i++)
    if (s->ev[i]) cudaEventDestroy(s->ev[i]);
  if (s->ws) cudaFreeAsync(s->ws, c->stream);
  if (s->wt) cudaFreeAsync(s->wt, c->stream);
  /* the library stays loaded: other backends of the process may use it */
  free(s);
  c->conv = NULL;
}

/* The conv state, created at the first conv; NULL when cuDNN cannot be used (logged once). */
static lg_cuda_conv *conv_state(lg_backend *be) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  lg_cuda_conv *s = (lg_cuda_conv *)c->conv;
  if (s) return s->state > 0 ? s : NULL;
  s = (lg_cuda_conv *)calloc(1, sizeof *s);
  if (!s) return NULL;
  c->conv = s;
  s->state = -1;
  {
    const char *env = getenv("LG_CUDNN_LIB");
    const char *names[3] = {env, "libcudnn.so.9", "libcudnn.so"};
    for (int i = 0; i < 3 && !s->lib; i++)
      if (names[i] && names[i][0]) s->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!s->lib) {
      const char *why = dlerror();
      LG_WARN(LG_CUDA_MOD, "conv3d: cuDNN not loaded (%s): im2col + GEMM only",
              why ? why : "not found");
      return NULL;
    }
#define CUDNN_SYM(f)                                                                               \
  *(void **)&s->a.f = dlsym(s->lib, "cudnn" #f);                                                   \
  LG_CHECK(s->a.f, LG_ENOTSUP, LG_CUDA_MOD, "conv3d: libcudnn has no cudnn" #f);
    CUDNN_FNS(CUDNN_SYM)
#undef CUDNN_SYM
#define CUDNN_OPT_SYM(f) *(void **)&s->a.f = dlsym(s->lib, "cudnn" #f);
    CUDNN_OPT_FNS(CUDNN_OPT_SYM)
#undef CUDNN_OPT_SYM
    DN_CHECK(s, s->a.Create(&s->h));
    if (s->a.CreateActivationDescriptor && s->a.SetActivationDescriptor &&
        s->a.DestroyActivationDescriptor && s->a.ConvolutionBiasActivationForward &&
        s->a.CreateActivationDescriptor(&s->act) == CUDNN_STATUS_SUCCESS) {
      s->have_act =
          s->a.SetActivationDescriptor(s->act, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN,
                                       0.0) == CUDNN_STATUS_SUCCESS;
      if (!s->have_act) s->a.DestroyActivationDescriptor(s->act);
    }
    DN_CHECK(s, s->a.SetStream(s->h, c->stream));
    CUDA_CHECK(cudaEventCreate(&s->ev[0]));
    CUDA_CHECK(cudaEventCreate(&s->ev[1]));
    LG_INFO(LG_CUDA_MOD, "conv3d: cuDNN %zu loaded", s->a.GetVersion());
    s->state = 1;
    return s;
  }
fail:
  LG_WARN(LG_CUDA_MOD, "conv3d: cuDNN unusable (%s): im2col + GEMM only", lg_strerror(err));
  if (s->have_act) s->a.DestroyActivationDescriptor(s->act);
  s->have_act = false;
  if (s->h) s->a.Destroy(s->h);
  s->h = NULL;
  return NULL;
}

/* Grows a pool buffer to at least `need` bytes (outside graph capture only). */
static int grow(lg_cuda *c, void **buf, size_t *have, size_t need) {
  int err = 0;
  if (need <= *have) return 0;
  if (*buf) CUDA_CHECK(cudaFreeAsync(*buf, c->stream));
  *buf = NULL, *have = 0;
  CUDA_CHECK(cudaMallocFromPoolAsync(buf, need, c->pool, c->stream));
  *have = need;
  return 0;
fail:
  return err;
}

/* The split path's sub-plan of a 3-d plan (time stride 1, no time padding, kt > 1): the per-tap
 * 2-d descriptors (x [To,Ci,Hin,Win], w [Co,Ci,kh,kw], y [To,Co,Ho,Wo], NHWC), Find's
 * algorithm, the workspace and repacked-filter buffer, and the bias descriptor for the fused
 * last tap. A failure only leaves the split path out (logged). */
static int split_make(lg_backend *be, lg_cuda_conv *s, conv_plan *p, const int *xdims,
                      const int *ydims, const int *wdims, const int *pad, const int *stride) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  int Ci = xdims[1], Hin = xdims[3], Win = xdims[4], Co = ydims[1], To = ydims[2];
  int kt = wdims[2], kh = wdims[3], kw = wdims[4];
  int x2[4] = {To, Ci, Hin, Win}, y2[4] = {To, Co, ydims[3], ydims[4]}, w2[4] = {Co, Ci, kh, kw};
  int b2[4] = {1, Co, 1, 1}, pd[2] = {pad[1], pad[2]}, sd[2] = {stride[1], stride[2]},
      dil[2] = {1, 1}, outd[4] = {0};
  cudnnConvolutionFwdAlgoPerf_t perf[12];
  int nperf = 0, best = -1;
  /* every tap's input and filters must start 16-byte aligned */
  if ((int64_t)Hin * Win * Ci % 8 || (int64_t)Co * kh * kw * Ci % 8) return LG_ENOTSUP;
  DN_CHECK(s, s->a.CreateTensorDescriptor(&p->xd2));
  DN_CHECK(s, s->a.CreateTensorDescriptor(&p->yd2));
  DN_CHECK(s, s->a.CreateFilterDescriptor(&p->wd2));
  DN_CHECK(s, s->a.CreateConvolutionDescriptor(&p->cd2));
  p->have_split_descs = true;
  DN_CHECK(s, s->a.SetTensorNdDescriptorEx(p->xd2, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 4, x2));
  DN_CHECK(s, s->a.SetTensorNdDescriptorEx(p->yd2, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 4, y2));
  DN_CHECK(s, s->a.SetFilterNdDescriptor(p->wd2, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, 4, w2));
  DN_CHECK(s, s->a.SetConvolutionNdDescriptor(p->cd2, 2, pd, sd, dil, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  DN_CHECK(s, s->a.SetConvolutionMathType(p->cd2, CUDNN_TENSOR_OP_MATH));
  DN_CHECK(s, s->a.GetConvolutionNdForwardOutputDim(p->cd2, p->xd2, p->wd2, 4, outd));
  for (int i = 0; i < 4; i++)
    LG_CHECK(outd[i] == y2[i], LG_EINVAL, LG_CUDA_MOD,
             "conv3d split: cuDNN output dim %d is %d, expected %d", i, outd[i], y2[i]);
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  DN_CHECK(s, s->a.FindConvolutionForwardAlgorithm(s->h, p->xd2, p->wd2, p->cd2, p->yd2, 12, &nperf,
                                                   perf));
  for (int i = 0; i < nperf && best < 0; i++)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CONV_WS_MAX) best = i;
  LG_CHECK(best >= 0, LG_ENOTSUP, LG_CUDA_MOD, "conv3d split: no cuDNN algorithm");
  p->algo2 = perf[best].algo;
  DN_CHECK(s, s->a.GetConvolutionForwardWorkspaceSize(s->h, p->xd2, p->wd2, p->cd2, p->yd2,
                                                      p->algo2, &p->ws2));
  LG_TRY(grow(c, &s->ws, &s->ws_bytes, p->ws2));
  LG_TRY(grow(c, &s->wt, &s->wt_bytes, (size_t)Co * Ci * kt * kh * kw * 2));
  p->have_split = true;
  /* cuDNN fuses an identity activation (the bias alone) only with implicit precomp GEMM */
  if (s->have_act && p->algo2 == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM &&
      s->a.CreateTensorDescriptor(&p->bd2) == CUDNN_STATUS_SUCCESS) {
    p->have_bias_desc = true;
    p->can_fuse = s->a.SetTensorNdDescriptorEx(p->bd2, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 4,
                                               b2) == CUDNN_STATUS_SUCCESS;
  }
  return 0;
fail:
  LG_WARN(LG_CUDA_MOD, "conv3d: no split plan for this shape (%s)", lg_strerror(err));
  p->have_split = false;
  return err;
}

/* Descriptors and algorithm for one shape (the key's fields, see conv_cudnn). Runs Find (which
 * executes every algorithm once on buffers of its own) and, in auto mode with Ci < 32, times
 * im2col on this call's tensors, keeping the faster. NULL during graph capture; a shape cuDNN
 * refuses gets an im2col-only plan (logged once). */
static conv_plan *plan_make(lg_backend *be, lg_cuda_conv *s, const int64_t *key, bool two_d,
                            const int *xdims, const int *ydims, const int *wdims, const int *pad,
                            const int *stride, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                            const lg_tensor *bias, const conv_geom &g, int64_t Co) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  unsigned hsh = 0;
  for (int i = 0; i < 18; i++)
    hsh = hsh * 1000003u ^ (unsigned)(key[i] ^ (key[i] >> 32));
  conv_plan *p = NULL;
  for (int i = 0; i < CONV_PLANS; i++) {
    conv_plan *q = &s->plans[(hsh + i) % CONV_PLANS];
    if (q->used && !memcmp(q->key, key, sizeof q->key)) return q;
    if (!q->used) {
      p = q;
      break;
    }
  }
  if (c->capturing) return NULL; /* no Find, no workspace growth inside a graph */
  if (!p) {
    p = &s->plans[hsh % CONV_PLANS];
    plan_release(s, p);
  }
  {
    int nd = two_d ? 4 : 5, outd[5] = {0}, dil[3] = {1, 1, 1};
    cudnnConvolutionFwdAlgoPerf_t perf[12];
    int nperf = 0, best = -1;
    memset(p, 0, sizeof *p);
    memcpy(p->key, key, sizeof p->key);
    p->used = true;
    p->path = CONV_IM2COL;
    p->ms_find = p->ms_cudnn = p->ms_im2col = p->ms_split = p->ms_fused = p->ms_direct = -1.f;
    DN_CHECK(s, s->a.CreateTensorDescriptor(&p->xd));
    DN_CHECK(s, s->a.CreateTensorDescriptor(&p->yd));
    DN_CHECK(s, s->a.CreateFilterDescriptor(&p->wd));
    DN_CHECK(s, s->a.CreateConvolutionDescriptor(&p->cd));
    p->have_descs = true;
    DN_CHECK(
        s, s->a.SetTensorNdDescriptorEx(p->xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, nd, xdims));
    DN_CHECK(
        s, s->a.SetTensorNdDescriptorEx(p->yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, nd, ydims));
    DN_CHECK(s,
             s->a.SetFilterNdDescriptor(p->wd, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, nd, wdims));
    DN_CHECK(s, s->a.SetConvolutionNdDescriptor(p->cd, nd - 2, pad, stride, dil,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DN_CHECK(s, s->a.SetConvolutionMathType(p->cd, CUDNN_TENSOR_OP_MATH));
    DN_CHECK(s, s->a.GetConvolutionNdForwardOutputDim(p->cd, p->xd, p->wd, nd, outd));
    for (int i = 0; i < nd; i++)
      LG_CHECK(outd[i] == ydims[i], LG_EINVAL, LG_CUDA_MOD,
               "conv3d: cuDNN output dim %d is %d, expected %d", i, outd[i], ydims[i]);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    DN_CHECK(s, s->a.FindConvolutionForwardAlgorithm(s->h, p->xd, p->wd, p->cd, p->yd, 12, &nperf,
                                                     perf));
    for (int i = 0; i < nperf && best < 0; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CONV_WS_MAX) best = i;
    if (best >= 0) {
      p->algo = perf[best].algo;
      p->ms_find = perf[best].time;
      DN_CHECK(s, s->a.GetConvolutionForwardWorkspaceSize(s->h, p->xd, p->wd, p->cd, p->yd, p->algo,
                                                          &p->ws));
      LG_TRY(grow(c, &s->ws, &s->ws_bytes, p->ws));
      p->path = CONV_CUDNN;
      p->have_algo = true;
    }
    if (conv_mode() == CONV_AUTO && best >= 0 && g.Ci < 32) {
      /* im2col on this call (once to warm its GEMM plan, once timed); y is rewritten below.
       * Only for narrow inputs (Ci < 32, patch rows of at most 27*31 elements), the one place
       * it was measured to win (H100: the decoder's conv1 16 -> 384, 0.05 vs 0.09 ms); at
       * Ci >= 32 it lost by 2-46x, and timing it there would cost the first call up to
       * 2 x 67 ms per shape. */
      LG_TRY(conv_im2col(be, y, x, w, bias, g, Co));
      CUDA_CHECK(cudaEventRecord(s->ev[0], c->stream));
      LG_TRY(conv_im2col(be, y, x, w, bias, g, Co));
      CUDA_CHECK(cudaEventRecord(s->ev[1], c->stream));
      CUDA_CHECK(cudaEventSynchronize(s->ev[1]));
      CUDA_CHECK(cudaEventElapsedTime(&p->ms_im2col, s->ev[0], s->ev[1]));
    }
    if (!two_d && stride[0] == 1 && pad[0] == 0 && wdims[2] > 1)
      (void)split_make(be, s, p, xdims, ydims, wdims, pad, stride); /* failure: no split */
  }
  return p;
fail:
  /* remembered as im2col-only, so that a shape cuDNN refuses is not retried on every call */
  LG_WARN(LG_CUDA_MOD, "conv3d: no cuDNN plan for this shape (%s): im2col", lg_strerror(err));
  if (p) p->path = p->have_split ? CONV_SPLIT : CONV_IM2COL, p->have_algo = false;
  return p;
}

/* Runs one path of a plan: CONV_CUDNN (the planned conv + the bias pass), CONV_SPLIT (repack
 * the per-tap filters, kt accumulated 2-d convs on xin shifted by `frame` elements per tap, the
 * bias fused into the last tap or a pass), CONV_DIRECT (k_conv_smallco on x itself with the
 * geometry g0, padding by bounds checks). xin is x or its padded copy. */
static int run_path(lg_backend *be, lg_cuda_conv *s, conv_plan *p, int path, bool fuse,
                    lg_tensor *y, const void *xin, const lg_tensor *x, const lg_tensor *w,
                    const lg_tensor *bias, const conv_geom &g0, int64_t Co, int64_t frame,
                    bool mat) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  int64_t rows = g0.To * g0.Ho * g0.Wo;
  float one = 1.f, zero = 0.f;
  if (path == CONV_DIRECT) {
    LG_TRY(conv_direct(be, y, x, w, bias, g0, Co));
    snprintf(s->last, sizeof s->last, "direct mma Co%d (plan: cudnn %.3f / direct %.3f ms)",
             (int)Co, p->ms_cudnn, p->ms_direct);
    return 0;
  }
  if (path == CONV_SPLIT) {
    int kt = g0.kt;
    int64_t tap = Co * g0.kh * g0.kw * g0.Ci; /* elements of one tap's filters */
    const __nv_bfloat16 *wt = (const __nv_bfloat16 *)s->wt;
    int64_t inner = (int64_t)g0.kh * g0.kw * g0.Ci;
    if (inner % 8 == 0) {
      int64_t n = Co * kt * inner / 8;
      k_repack_taps<8><<<lg_grid1d(n, 256), 256, 0, c->stream>>>(
          (__nv_bfloat16 *)s->wt, (const __nv_bfloat16 *)w->data, Co, kt, inner);
    } else {
      k_repack_taps<1><<<lg_grid1d(Co * kt * inner, 256), 256, 0, c->stream>>>(
          (__nv_bfloat16 *)s->wt, (const __nv_bfloat16 *)w->data, Co, kt, inner);
    }
    CUDA_LAUNCH_CHECK();
    for (int it = 0; it < kt; it++) {
      const __nv_bfloat16 *xi = (const __nv_bfloat16 *)xin + it * frame;
      const float *beta = it ? &one : &zero;
      if (it == kt - 1 && fuse && bias) {
        DN_CHECK(s, s->a.ConvolutionBiasActivationForward(s->h, &one, p->xd2, xi, p->wd2,
                                                          wt + it * tap, p->cd2, p->algo2, s->ws,
                                                          p->ws2, &one, p->yd2, y->data, p->bd2,
                                                          bias->data, s->act, p->yd2, y->data));
      } else {
        DN_CHECK(s, s->a.ConvolutionForward(s->h, &one, p->xd2, xi, p->wd2, wt + it * tap, p->cd2,
                                            p->algo2, s->ws, p->ws2, beta, p->yd2, y->data));
      }
    }
    if (bias && !fuse) LG_TRY(bias_pass(be, y, rows, Co, bias));
    snprintf(s->last, sizeof s->last,
             "split %dx2d algo %d%s%s (plan: cudnn %.3f / split %.3f / fused %.3f ms)", kt,
             (int)p->algo2, fuse && bias ? " bias fused" : "", mat ? " padded copy" : "",
             p->ms_cudnn, p->ms_split, p->ms_fused);
    return 0;
  }
  DN_CHECK(s, s->a.ConvolutionForward(s->h, &one, p->xd, xin, p->wd, w->data, p->cd, p->algo, s->ws,
                                      p->ws, &zero, p->yd, y->data));
  if (bias) LG_TRY(bias_pass(be, y, rows, Co, bias));
  snprintf(s->last, sizeof s->last, "cudnn %s algo %d%s (plan: cudnn %.3f / im2col %.3f ms)",
           p->key[0] ? "2d" : "3d", (int)p->algo, mat ? " padded copy" : "", p->ms_cudnn,
           p->ms_im2col);
  return 0;
fail:
  return err;
}

/* cuDNN path. 0 done, LG_ENOTSUP when im2col should run instead, other LG_E* on failure. */
static int conv_cudnn(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                      const lg_tensor *bias, const lg_conv_opts *o, const conv_geom &g0,
                      int64_t Co) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  lg_cuda_conv *s = conv_state(be);
  if (!s) return LG_ENOTSUP;
  if ((uintptr_t)y->data % 16) return LG_ENOTSUP;
  {
    conv_geom g = g0;
    bool two_d = g.kt == 1 && g.st == 1 && !o->pad_t_front && !o->pad_t_back;
    bool sym = o->pad_h[0] == o->pad_h[1] && o->pad_w[0] == o->pad_w[1] &&
               (two_d || o->pad_t_front == o->pad_t_back);
    bool packed = lg_tensor_is_contiguous(x) && (uintptr_t)x->data % 16 == 0;
    bool mat = !sym || !packed;
    int64_t Tin = g.T, Hin = g.H, Win = g.W;
    int pad[3] = {g.pt, g.ph, g.pw};
    if (mat) {
      Tin += o->pad_t_front + o->pad_t_back;
      Hin += o->pad_h[0] + o->pad_h[1];
      Win += o->pad_w[0] + o->pad_w[1];
      pad[0] = pad[1] = pad[2] = 0;
    }
    LG_CHECK(Tin * Hin * Win * g.Ci < ((int64_t)1 << 31) &&
                 g.To * g.Ho * g.Wo * Co < ((int64_t)1 << 31),
             LG_ENOTSUP, LG_CUDA_MOD, "conv3d: tensor over 2^31 elements for cuDNN");
    int xdims[5], ydims[5], wdims[5], pd[3], sd[3];
    if (two_d) {
      int a[4] = {(int)Tin, (int)g.Ci, (int)Hin, (int)Win},
          b[4] = {(int)g.To, (int)Co, (int)g.Ho, (int)g.Wo},
          k[4] = {(int)Co, (int)g.Ci, g.kh, g.kw};
      memcpy(xdims, a, sizeof a), memcpy(ydims, b, sizeof b), memcpy(wdims, k, sizeof k);
      pd[0] = pad[1], pd[1] = pad[2], sd[0] = g.sh, sd[1] = g.sw;
    } else {
      int a[5] = {1, (int)g.Ci, (int)Tin, (int)Hin, (int)Win},
          b[5] = {1, (int)Co, (int)g.To, (int)g.Ho, (int)g.Wo},
          k[5] = {(int)Co, (int)g.Ci, g.kt, g.kh, g.kw};
      memcpy(xdims, a, sizeof a), memcpy(ydims, b, sizeof b), memcpy(wdims, k, sizeof k);
      pd[0] = pad[0], pd[1] = pad[1], pd[2] = pad[2];
      sd[0] = g.st, sd[1] = g.sh, sd[2] = g.sw;
    }
    int64_t key[18] = {two_d, Tin,  Hin,  Win,    g.Ci,   Co,     g.kt, g.kh, g.kw,
                       g.st,  g.sh, g.sw, pad[0], pad[1], pad[2], 0,    0,    0};
    conv_plan *p = plan_make(be, s, key, two_d, xdims, ydims, wdims, pd, sd, y, x, w, bias, g0, Co);
    if (!p) return LG_ENOTSUP;
    int mode = conv_mode();
    bool direct_ok = direct_applies(y, x, g0, Co);
    if (mode == CONV_AUTO && p->timed && p->path == CONV_DIRECT && direct_ok)
      return run_path(be, s, p, CONV_DIRECT, false, y, NULL, x, w, bias, g0, Co, 0, false);
    if (!p->have_algo && !p->have_split) return LG_ENOTSUP;
    const void *xin = x->data;
    if (mat) {
      __nv_bfloat16 *buf =
          (__nv_bfloat16 *)lg_cuda_scratch(be, (size_t)(Tin * Hin * Win * g.Ci * 2));
      LG_CHECK(buf, LG_ENOMEM, LG_CUDA_MOD, "conv3d: no scratch for the padded input");
      g.pt = o->pad_t_front, g.ph = o->pad_h[0], g.pw = o->pad_w[0];
      bool v8 = g.Ci % 8 == 0 && g.xb[0] % 8 == 0 && g.xb[1] % 8 == 0 && g.xb[2] % 8 == 0 &&
                (uintptr_t)x->data % 16 == 0;
      int64_t n = Tin * Hin * Win * (v8 ? g.Ci / 8 : g.Ci);
      if (v8)
        k_pad_copy<8><<<lg_grid1d(n, 256), 256, 0, c->stream>>>(buf, (const __nv_bfloat16 *)x->data,
                                                                g, Tin, Hin, Win);
      else
        k_pad_copy<1><<<lg_grid1d(n, 256), 256, 0, c->stream>>>(buf, (const __nv_bfloat16 *)x->data,
                                                                g, Tin, Hin, Win);
      CUDA_LAUNCH_CHECK();
      xin = buf;
    }
    int64_t frame = Hin * Win * g.Ci;
    bool bias_fusable = bias && bias->dtype == LG_BF16 && bias->nb[0] == 1 &&
                        (uintptr_t)bias->data % 16 == 0 && p->can_fuse;
    if (mode == CONV_AUTO && !p->timed && !c->capturing) {
      /* once per plan: every applicable path on this call's tensors (one warm-up each, then
       * TIME_ROUNDS rounds over the paths in turn, so that clock changes hit all alike), the
       * lowest median kept */
      enum { TIME_ROUNDS = 5 };
      const int paths[4] = {CONV_CUDNN, CONV_SPLIT, CONV_SPLIT, CONV_DIRECT};
      const bool fuses[4] = {false, false, true, false};
      bool ok[4] = {p->have_algo, p->have_split, p->have_split && bias_fusable, direct_ok};
      float *ms[4] = {&p->ms_cudnn, &p->ms_split, &p->ms_fused, &p->ms_direct};
      float t[4][TIME_ROUNDS];
      float best = p->have_algo || p->have_split ? 1e30f : -1.f;
      int best_path = p->have_algo ? CONV_CUDNN : CONV_SPLIT;
      bool best_fuse = false;
      for (int k = 0; k < 4; k++)
        if (ok[k] && run_path(be, s, p, paths[k], fuses[k], y, xin, x, w, bias, g0, Co, frame, mat))
          ok[k] = false; /* logged; the path is left out */
      for (int r = 0; r < TIME_ROUNDS; r++)
        for (int k = 0; k < 4; k++) {
          if (!ok[k]) continue;
          CUDA_CHECK(cudaEventRecord(s->ev[0], c->stream));
          if (run_path(be, s, p, paths[k], fuses[k], y, xin, x, w, bias, g0, Co, frame, mat)) {
            ok[k] = false;
            continue;
          }
          CUDA_CHECK(cudaEventRecord(s->ev[1], c->stream));
          CUDA_CHECK(cudaEventSynchronize(s->ev[1]));
          CUDA_CHECK(cudaEventElapsedTime(&t[k][r], s->ev[0], s->ev[1]));
        }
      for (int k = 0; k < 4; k++) {
        if (!ok[k]) continue;
        for (int i = 1; i < TIME_ROUNDS; i++) /* insertion sort of 5 */
          for (int j = i; j > 0 && t[k][j] < t[k][j - 1]; j--) {
            float v = t[k][j];
            t[k][j] = t[k][j - 1], t[k][j - 1] = v;
          }
        *ms[k] = t[k][TIME_ROUNDS / 2];
        if (*ms[k] < best) best = *ms[k], best_path = paths[k], best_fuse = fuses[k];
      }
      p->path = best_path, p->fuse = best_fuse;
      if (p->ms_im2col >= 0 && p->ms_im2col < best) p->path = CONV_IM2COL;
      p->timed = true;
      LG_INFO(LG_CUDA_MOD,
              "conv3d plan %s x[%d,%d,%d,%d,%d] w[%d,%d,%d,%d%s] -> %s%s (cudnn algo %d: find "
              "%.3f ms, with bias %.3f; split algo %d: %.3f, bias fused %.3f; direct %.3f; "
              "im2col %.3f; ws %zu/%zu KiB)",
              two_d ? "2d" : "3d", xdims[0], xdims[1], xdims[2], xdims[3], two_d ? 0 : xdims[4],
              wdims[0], wdims[1], wdims[2], wdims[3], two_d ? "" : ",kt",
              p->path == CONV_CUDNN    ? "cudnn"
              : p->path == CONV_SPLIT  ? "split"
              : p->path == CONV_DIRECT ? "direct"
                                       : "im2col",
              p->path == CONV_SPLIT && p->fuse ? " (bias fused)" : "",
              p->have_algo ? (int)p->algo : -1, p->ms_find, p->ms_cudnn,
              p->have_split ? (int)p->algo2 : -1, p->ms_split, p->ms_fused, p->ms_direct,
              p->ms_im2col, p->ws >> 10, p->ws2 >> 10);
    }
    int path = CONV_CUDNN;
    bool fuse = false;
    if (mode == CONV_AUTO) {
      if (p->path == CONV_IM2COL) return LG_ENOTSUP;
      path = p->path == CONV_DIRECT && !direct_ok ? CONV_CUDNN : p->path;
      fuse = p->fuse && bias_fusable;
    } else if (mode == CONV_SPLIT && p->have_split) {
      path = CONV_SPLIT, fuse = bias_fusable;
    } else if (mode == CONV_DIRECT && direct_ok) {
      path = CONV_DIRECT;
    }
    if (path == CONV_CUDNN && !p->have_algo) path = p->have_split ? CONV_SPLIT : -1;
    if (path == CONV_SPLIT && !p->have_split) path = p->have_algo ? CONV_CUDNN : -1;
    if (path < 0) return LG_ENOTSUP;
    return run_path(be, s, p, path, fuse, y, xin, x, w, bias, g0, Co, frame, mat);
  }
fail:
  return err;
}

#endif /* LG_HAVE_CUDNN */

#ifndef LG_HAVE_CUDNN
void lg_cuda_conv_free(lg_cuda *c) {
  (void)c;
}
#endif

/* What the last conv3d of this backend ran, for the tests' perf table. */
extern "C" const char *lg_cuda_conv_last(lg_backend *be) {
#ifdef LG_HAVE_CUDNN
  lg_cuda_conv *s = (lg_cuda_conv *)lg_cu(be)->conv;
  if (s) return s->last;
#else
  (void)be;
#endif
  return "im2col (no cuDNN)";
}

static void note_last(lg_backend *be, const char *what) {
#ifdef LG_HAVE_CUDNN
  lg_cuda_conv *s = (lg_cuda_conv *)lg_cu(be)->conv;
  if (s) snprintf(s->last, sizeof s->last, "%s", what);
#else
  (void)be, (void)what;
#endif
}

/* ------------------------------------------------------------------ the op */

int lg_cuda_conv3d(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                   const lg_tensor *bias, const lg_conv_opts *o) {
  int err = 0;
  conv_geom g;
  char s1[96], s2[96], s3[96];
  lg_conv_opts def;
  memset(&def, 0, sizeof def);
  if (!o) o = &def;
  LG_TRY(lg_cuda_check_tensor("conv3d", "y", y, true));
  LG_TRY(lg_cuda_check_tensor("conv3d", "x", x, true));
  LG_TRY(lg_cuda_check_tensor("conv3d", "w", w, false));
  LG_CHECK(x->ndim == 4 && y->ndim == 4 && (w->ndim == 5 || w->ndim == 4), LG_EINVAL, LG_CUDA_MOD,
           "conv3d: x and y must be [T,H,W,C] and w [Co,Ci,(kt,)kh,kw]");
  {
    int64_t Co = w->ne[0], Ci = w->ne[1];
    int kt = w->ndim == 5 ? (int)w->ne[2] : 1;
    int kh = (int)w->ne[w->ndim - 2], kw = (int)w->ne[w->ndim - 1];
    int64_t kdim = (int64_t)kt * kh * kw * Ci;
    LG_CHECK(w->dtype == LG_BF16 && w->nb[1] == 1 && w->nb[0] == kdim, LG_EINVAL, LG_CUDA_MOD,
             "conv3d: w %s is not a weight from load_weight(CONV) (channels-last bf16)",
             lg_tensor_shape_str(w, s3, sizeof s3));
    g.T = x->ne[0], g.H = x->ne[1], g.W = x->ne[2], g.Ci = x->ne[3];
    g.kt = kt, g.kh = kh, g.kw = kw;
    g.st = o->stride[0] > 0 ? o->stride[0] : 1;
    g.sh = o->stride[1] > 0 ? o->stride[1] : 1;
    g.sw = o->stride[2] > 0 ? o->stride[2] : 1;
    g.pt = o->pad_t_front, g.ph = o->pad_h[0], g.pw = o->pad_w[0];
    LG_CHECK(o->pad_t_front >= 0 && o->pad_t_back >= 0 && o->pad_h[0] >= 0 && o->pad_h[1] >= 0 &&
                 o->pad_w[0] >= 0 && o->pad_w[1] >= 0,
             LG_EINVAL, LG_CUDA_MOD, "conv3d: negative padding");
    int64_t tp = g.T + o->pad_t_front + o->pad_t_back, hp = g.H + o->pad_h[0] + o->pad_h[1],
            wp = g.W + o->pad_w[0] + o->pad_w[1];
    LG_CHECK(Ci == g.Ci && tp >= kt && hp >= kh && wp >= kw, LG_EINVAL, LG_CUDA_MOD,
             "conv3d: x %s does not fit w %s", lg_tensor_shape_str(x, s1, sizeof s1),
             lg_tensor_shape_str(w, s3, sizeof s3));
    g.To = (tp - kt) / g.st + 1, g.Ho = (hp - kh) / g.sh + 1, g.Wo = (wp - kw) / g.sw + 1;
    LG_CHECK(y->ne[0] == g.To && y->ne[1] == g.Ho && y->ne[2] == g.Wo && y->ne[3] == Co &&
                 lg_tensor_is_contiguous(y),
             LG_EINVAL, LG_CUDA_MOD, "conv3d: y %s must be contiguous [%lld,%lld,%lld,%lld] (x %s)",
             lg_tensor_shape_str(y, s1, sizeof s1), (long long)g.To, (long long)g.Ho,
             (long long)g.Wo, (long long)Co, lg_tensor_shape_str(x, s2, sizeof s2));
    for (int i = 0; i < 4; i++)
      g.xb[i] = x->nb[i];
    int64_t rows = g.To * g.Ho * g.Wo;
    if (rows == 0 || Co == 0) return 0;
    bool pointwise = kt == 1 && kh == 1 && kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 &&
                     !o->pad_t_front && !o->pad_t_back && !o->pad_h[0] && !o->pad_h[1] &&
                     !o->pad_w[0] && !o->pad_w[1] && lg_tensor_is_contiguous(x);
    if (pointwise) {
      lg_matmul_opts mo;
      memset(&mo, 0, sizeof mo);
      mo.trans_b = true;
      int64_t wshape[2] = {Co, kdim}, ashape[2] = {rows, Ci}, yshape[2] = {rows, Co};
      lg_tensor wt = lg_tensor_make(be, w->data, LG_BF16, 2, wshape);
      lg_tensor a = lg_tensor_make(be, x->data, x->dtype, 2, ashape);
      lg_tensor yy = lg_tensor_make(be, y->data, y->dtype, 2, yshape);
      note_last(be, "gemm (1x1x1)");
      return lg_cuda_matmul(be, &yy, &a, &wt, bias, &mo);
    }
    if (conv_mode() == CONV_DIRECT && direct_applies(y, x, g, Co) && (uintptr_t)y->data % 16 == 0) {
      note_last(be, "direct mma (forced)");
      return conv_direct(be, y, x, w, bias, g, Co);
    }
    bool try_cudnn = x->dtype == LG_BF16 && y->dtype == LG_BF16 && conv_mode() != CONV_IM2COL;
#ifdef LG_HAVE_CUDNN
    if (try_cudnn) {
      int rc = conv_cudnn(be, y, x, w, bias, o, g, Co);
      if (rc != LG_ENOTSUP) return rc;
    }
#else
    (void)try_cudnn;
#endif
    note_last(be, "im2col + gemm");
    return conv_im2col(be, y, x, w, bias, g, Co);
  }
fail:
  return err;
}

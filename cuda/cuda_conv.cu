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
 * - im2col + cuBLASLt GEMM in row chunks (F32/F16 tensors, no cuDNN, or where it measured faster).
 * Per distinct shape a plan is made once (descriptors, the algorithm from
 * cudnnFindConvolutionForwardAlgorithm, its workspace size, and for Ci < 32 a timing of im2col
 * on the same call: the faster path is kept). The workspace grows only when a new plan needs more
 * and never during graph capture, so a steady call allocates nothing. LG_CONV=im2col|cudnn|auto
 * (read once) or lg_cuda_conv_set_mode overrides the choice. Runs on the backend's thread. */
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

enum { CONV_AUTO = 0, CONV_IM2COL = 1, CONV_CUDNN = 2 };

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

typedef struct cudnn_api {
#define CUDNN_DECL(f) decltype(&cudnn##f) f;
  CUDNN_FNS(CUDNN_DECL)
#undef CUDNN_DECL
} cudnn_api;

typedef struct conv_plan {
  int64_t key[18];
  bool used, have_descs, have_algo;
  int path; /* CONV_CUDNN or CONV_IM2COL (measured faster, or no cuDNN algorithm) */
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnConvolutionFwdAlgo_t algo;
  size_t ws;
  float ms_cudnn, ms_im2col;
} conv_plan;

typedef struct lg_cuda_conv {
  int state; /* 1 cuDNN usable, -1 not (im2col only) */
  void *lib;
  cudnn_api a;
  cudnnHandle_t h;
  void *ws; /* cuDNN workspace, grow-only, from the backend's pool */
  size_t ws_bytes;
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
  memset(p, 0, sizeof *p);
}

void lg_cuda_conv_free(lg_cuda *c) {
  lg_cuda_conv *s = (lg_cuda_conv *)c->conv;
  if (!s) return;
  if (s->state > 0) {
    for (int i = 0; i < CONV_PLANS; i++)
      if (s->plans[i].used) plan_release(s, &s->plans[i]);
    if (s->h) s->a.Destroy(s->h);
  }
  for (int i = 0; i < 2; i++)
    if (s->ev[i]) cudaEventDestroy(s->ev[i]);
  if (s->ws) cudaFreeAsync(s->ws, c->stream);
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
    DN_CHECK(s, s->a.Create(&s->h));
    DN_CHECK(s, s->a.SetStream(s->h, c->stream));
    CUDA_CHECK(cudaEventCreate(&s->ev[0]));
    CUDA_CHECK(cudaEventCreate(&s->ev[1]));
    LG_INFO(LG_CUDA_MOD, "conv3d: cuDNN %zu loaded", s->a.GetVersion());
    s->state = 1;
    return s;
  }
fail:
  LG_WARN(LG_CUDA_MOD, "conv3d: cuDNN unusable (%s): im2col + GEMM only", lg_strerror(err));
  if (s->h) s->a.Destroy(s->h);
  s->h = NULL;
  return NULL;
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
      p->ms_cudnn = perf[best].time;
      DN_CHECK(s, s->a.GetConvolutionForwardWorkspaceSize(s->h, p->xd, p->wd, p->cd, p->yd, p->algo,
                                                          &p->ws));
      if (p->ws > s->ws_bytes) {
        if (s->ws) CUDA_CHECK(cudaFreeAsync(s->ws, c->stream));
        s->ws = NULL, s->ws_bytes = 0;
        CUDA_CHECK(cudaMallocFromPoolAsync(&s->ws, p->ws, c->pool, c->stream));
        s->ws_bytes = p->ws;
      }
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
      if (p->ms_im2col < p->ms_cudnn) p->path = CONV_IM2COL;
    }
    LG_INFO(LG_CUDA_MOD,
            "conv3d plan %s x[%d,%d,%d,%d,%d] w[%d,%d,%d,%d%s] -> %s (cudnn algo %d %.3f ms, ws "
            "%zu KiB; im2col %.3f ms)",
            two_d ? "2d" : "3d", xdims[0], xdims[1], xdims[2], xdims[3], two_d ? 0 : xdims[4],
            wdims[0], wdims[1], wdims[2], wdims[3], two_d ? "" : ",kt",
            p->path == CONV_CUDNN ? "cudnn" : "im2col", best >= 0 ? (int)p->algo : -1, p->ms_cudnn,
            p->ws >> 10, p->ms_im2col);
  }
  return p;
fail:
  /* remembered as im2col-only, so that a shape cuDNN refuses is not retried on every call */
  LG_WARN(LG_CUDA_MOD, "conv3d: no cuDNN plan for this shape (%s): im2col", lg_strerror(err));
  if (p) p->path = CONV_IM2COL, p->have_algo = false;
  return p;
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
    /* auto: the measured faster path; forced cudnn: any plan with an algorithm */
    if (!p->have_algo || (conv_mode() == CONV_AUTO && p->path != CONV_CUDNN)) return LG_ENOTSUP;
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
    {
      float one = 1.f, zero = 0.f;
      DN_CHECK(s, s->a.ConvolutionForward(s->h, &one, p->xd, xin, p->wd, w->data, p->cd, p->algo,
                                          s->ws, p->ws, &zero, p->yd, y->data));
    }
    if (bias) {
      int64_t rows = g.To * g.Ho * g.Wo;
      if (Co % 8 == 0) {
        int64_t n = rows * Co / 8;
        k_bias_add<8><<<lg_grid1d(n, 256), 256, 0, c->stream>>>(
            (__nv_bfloat16 *)y->data, rows, Co, bias->data, bias->dtype, bias->nb[0]);
      } else {
        k_bias_add<1><<<lg_grid1d(rows * Co, 256), 256, 0, c->stream>>>(
            (__nv_bfloat16 *)y->data, rows, Co, bias->data, bias->dtype, bias->nb[0]);
      }
      CUDA_LAUNCH_CHECK();
    }
    snprintf(s->last, sizeof s->last, "cudnn %s algo %d%s (plan: cudnn %.3f / im2col %.3f ms)",
             two_d ? "2d" : "3d", (int)p->algo, mat ? " padded copy" : "", p->ms_cudnn,
             p->ms_im2col);
  }
  return 0;
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

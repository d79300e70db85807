/* cuda_conv.cu: channels-last 3D convolution as im2col + cuBLASLt GEMM. Output rows are
 * processed in chunks whose patch matrix fits the scratch buffer, so memory stays bounded for
 * the VAE's k3 convs; a 1x1x1 stride-1 conv skips im2col. The DiT patchify (kernel = stride =
 * (1,2,2), Kdim 64) is one small im2col and one GEMM. The weight must come from
 * load_weight(CONV), which stores it [Co, kt, kh, kw, Ci] so that a patch row (kt,kh,kw,Ci)
 * meets a weight row. Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <string.h>

#define CONV_SCRATCH (64ll << 20) /* patch matrix bytes per chunk, at most */

typedef struct conv_geom {
  int64_t T, H, W, Ci; /* input */
  int64_t To, Ho, Wo;  /* output */
  int kt, kh, kw;
  int st, sh, sw;
  int pt, ph, pw; /* front/top/left padding */
  int64_t xb[4];  /* x strides (t,h,w,c) */
} conv_geom;

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

int lg_cuda_conv3d(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                   const lg_tensor *bias, const lg_conv_opts *o) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
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
    lg_matmul_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.trans_b = true;
    int64_t wshape[2] = {Co, kdim}, ashape[2] = {rows, Ci}, yshape[2] = {rows, Co};
    lg_tensor wt = lg_tensor_make(be, w->data, LG_BF16, 2, wshape);
    bool pointwise = kt == 1 && kh == 1 && kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 &&
                     !o->pad_t_front && !o->pad_t_back && !o->pad_h[0] && !o->pad_h[1] &&
                     !o->pad_w[0] && !o->pad_w[1] && lg_tensor_is_contiguous(x);
    if (pointwise) {
      lg_tensor a = lg_tensor_make(be, x->data, x->dtype, 2, ashape);
      lg_tensor yy = lg_tensor_make(be, y->data, y->dtype, 2, yshape);
      return lg_cuda_matmul(be, &yy, &a, &wt, bias, &mo);
    }
    int64_t chunk = CONV_SCRATCH / (kdim * 2);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    __nv_bfloat16 *col = (__nv_bfloat16 *)lg_cuda_scratch(be, (size_t)(chunk * kdim * 2));
    LG_CHECK(col, LG_ENOMEM, LG_CUDA_MOD, "conv3d: no scratch for %lld x %lld patches",
             (long long)chunk, (long long)kdim);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
      int64_t total = n * kdim;
      k_im2col<<<lg_grid1d(total, 256), 256, 0, c->stream>>>(col, x->data, x->dtype, g, r0, n,
                                                             kdim);
      CUDA_LAUNCH_CHECK();
      ashape[0] = n, ashape[1] = kdim, yshape[0] = n;
      lg_tensor a = lg_tensor_make(be, col, LG_BF16, 2, ashape);
      lg_tensor yy =
          lg_tensor_make(be, (uint8_t *)y->data + (size_t)(r0 * Co) * lg_dtype_size(y->dtype),
                         y->dtype, 2, yshape);
      LG_TRY(lg_cuda_matmul(be, &yy, &a, &wt, bias, &mo));
    }
  }
  return 0;
fail:
  return err;
}

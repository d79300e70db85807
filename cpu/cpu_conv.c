/* cpu_conv.c: channels-last 3D convolution and the conv weight repack for the fp32 reference
 * backend. Runs on the backend's thread, parallel over output rows (b, t', h').
 *
 * Weight layout: load_weight(CONV) turns PyTorch [Co,Ci,kt,kh,kw] (or [Co,Ci,kh,kw], kt = 1)
 * into f32 [kt][kh][kw][Ci][Cop], Cop = Co rounded up to 8 (zero padded). ne[] keeps the
 * PyTorch shape and nb[] describes the repacked layout, so the weight is an honest strided
 * view (copy/download_f32 of it give the PyTorch tensor). conv3d also accepts any other
 * weight tensor and repacks it into the workspace per call.
 *
 * Compute: for each output row and each block of 4 output columns, every 8-channel output
 * panel accumulates sum over taps (kt,kh,kw) of x[4 positions][Ci] @ w[tap][Ci][8] with the
 * 4x8 micro-kernel (inner loop over Co contiguous); taps outside the input in t/h are
 * skipped and columns outside in w read a zero row, which is zero padding. */
#include "cpu_internal.h"

#include <stdlib.h>
#include <string.h>

enum { PW = 32 }; /* output columns per cache block */

/* Repacks weight w (any dtype/strides, PyTorch order of ne) into dst [kt][kh][kw][Ci][Cop]. */
static void repack(const lg_tensor *w, float *dst, int64_t Cop) {
  int64_t Co = w->ne[0], Ci = w->ne[1];
  int five = w->ndim == 5;
  int64_t kt = five ? w->ne[2] : 1, kh = w->ne[w->ndim - 2], kw = w->ne[w->ndim - 1];
  int64_t st = five ? w->nb[2] : 0, sh = w->nb[w->ndim - 2], sw = w->nb[w->ndim - 1];
  for (int64_t t = 0; t < kt; t++)
    for (int64_t h = 0; h < kh; h++)
      for (int64_t x = 0; x < kw; x++)
        for (int64_t ci = 0; ci < Ci; ci++) {
          float *d = dst + (((t * kh + h) * kw + x) * Ci + ci) * Cop;
          for (int64_t co = 0; co < Cop; co++)
            d[co] = co < Co ? cpu_ld(w->data, w->dtype,
                                     co * w->nb[0] + ci * w->nb[1] + t * st + h * sh + x * sw)
                            : 0.0f;
        }
}

/* Strides of the repacked layout for a weight of shape ne (ndim 4 or 5). */
static void packed_strides(int ndim, const int64_t *ne, int64_t Cop, int64_t *nb) {
  int64_t Ci = ne[1], kh = ne[ndim - 2], kw = ne[ndim - 1];
  nb[0] = 1;
  nb[1] = Cop;
  nb[ndim - 1] = Ci * Cop;
  nb[ndim - 2] = kw * Ci * Cop;
  if (ndim == 5) nb[2] = kh * kw * Ci * Cop;
}

int cpu_load_conv_weight(lg_backend *be, lg_tensor *out, const lg_tensor *host) {
  if (host->ndim != 4 && host->ndim != 5)
    return cpu_bad("load_weight", "a CONV weight must be [Co,Ci,kt,kh,kw] or [Co,Ci,kh,kw]", host,
                   NULL);
  int64_t Cop = (host->ne[0] + 7) / 8 * 8;
  int64_t taps = 1;
  for (int i = 2; i < host->ndim; i++)
    taps *= host->ne[i];
  size_t n = (size_t)(taps * host->ne[1] * Cop);
  *out = lg_tensor_make(be, NULL, LG_F32, host->ndim, host->ne);
  out->data = be->ops->alloc(be, n * sizeof(float));
  if (!out->data) {
    LG_ERR("cpu", "load_weight: cannot allocate %zu bytes", n * sizeof(float));
    return LG_ENOMEM;
  }
  packed_strides(host->ndim, host->ne, Cop, out->nb);
  repack(host, out->data, Cop);
  return 0;
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1) {
  int64_t span = in + p0 + p1 - k;
  return span < 0 ? -1 : span / s + 1;
}

int cpu_conv3d(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
               const lg_tensor *bias, const lg_conv_opts *o) {
  static const lg_conv_opts defaults; /* all zero */
  if (!o) o = &defaults;
  int err = cpu_check_float("conv3d", "y", y);
  if (!err) err = cpu_check_float("conv3d", "x", x);
  if (!err) err = cpu_check_float("conv3d", "w", w);
  if (!err && bias) err = cpu_check_float("conv3d", "bias", bias);
  if (err) return err;
  int nd = x->ndim;
  if ((nd != 4 && nd != 5) || y->ndim != nd || (nd == 5 && y->ne[0] != x->ne[0]))
    return cpu_bad("conv3d", "x and y must be [T,H,W,C] or [B,T,H,W,C]", y, x);
  if (w->ndim != 4 && w->ndim != 5)
    return cpu_bad("conv3d", "w must be [Co,Ci,kt,kh,kw] or [Co,Ci,kh,kw]", w, x);
  int64_t B = nd == 5 ? x->ne[0] : 1;
  int64_t T = x->ne[nd - 4], H = x->ne[nd - 3], W = x->ne[nd - 2], Ci = x->ne[nd - 1];
  int64_t Co = w->ne[0];
  int64_t kt = w->ndim == 5 ? w->ne[2] : 1, kh = w->ne[w->ndim - 2], kw = w->ne[w->ndim - 1];
  if (w->ne[1] != Ci) return cpu_bad("conv3d", "w's Ci != x's channels", w, x);
  int st = o->stride[0] ? o->stride[0] : 1, sh = o->stride[1] ? o->stride[1] : 1;
  int sw = o->stride[2] ? o->stride[2] : 1;
  if (st < 0 || sh < 0 || sw < 0 || o->pad_t_front < 0 || o->pad_t_back < 0 || o->pad_h[0] < 0 ||
      o->pad_h[1] < 0 || o->pad_w[0] < 0 || o->pad_w[1] < 0 || kt < 1 || kh < 1 || kw < 1) {
    LG_ERR("cpu", "conv3d: negative stride/padding or empty kernel");
    return LG_EINVAL;
  }
  int64_t To = out_size(T, kt, st, o->pad_t_front, o->pad_t_back);
  int64_t Ho = out_size(H, kh, sh, o->pad_h[0], o->pad_h[1]);
  int64_t Wo = out_size(W, kw, sw, o->pad_w[0], o->pad_w[1]);
  if (To < 0 || Ho < 0 || Wo < 0 || y->ne[nd - 4] != To || y->ne[nd - 3] != Ho ||
      y->ne[nd - 2] != Wo || y->ne[nd - 1] != Co) {
    char what[160];
    snprintf(what, sizeof what, "y must be [%lld,%lld,%lld,%lld] for kernel %lldx%lldx%lld",
             (long long)To, (long long)Ho, (long long)Wo, (long long)Co, (long long)kt,
             (long long)kh, (long long)kw);
    return cpu_bad("conv3d", what, y, x);
  }
  if (bias && lg_tensor_numel(bias) != Co)
    return cpu_bad("conv3d", "bias must have Co elements", bias, w);
  if (B == 0 || To == 0 || Ho == 0 || Wo == 0 || Co == 0) return 0;

  int64_t Cop = (Co + 7) / 8 * 8;
  int64_t wnb[LG_MAX_DIMS];
  packed_strides(w->ndim, w->ne, Cop, wnb);
  bool w_packed = w->dtype == LG_F32;
  for (int i = 0; w_packed && i < w->ndim; i++)
    if (w->nb[i] != wnb[i] && w->ne[i] != 1) w_packed = false;
  bool x_direct = x->dtype == LG_F32 && x->nb[nd - 1] == 1;
  size_t taps = (size_t)(kt * kh * kw);
  size_t nw = w_packed ? 0 : cpu_round64(taps * (size_t)(Ci * Cop));
  size_t nx = x_direct ? 0 : cpu_round64((size_t)(B * T * H * W * Ci));
  size_t nz = cpu_round64((size_t)Ci), nbv = cpu_round64((size_t)Cop);
  float *ws = cpu_ws(be, (nw + nx + nz + nbv) * sizeof(float), "conv3d");
  if (!ws) return LG_ENOMEM;
  float *wbuf = ws, *xbuf = ws + nw, *zero = xbuf + nx, *bv = zero + nz;
  const float *wp = w_packed ? (const float *)w->data : wbuf;
  if (!w_packed) repack(w, wbuf, Cop);
  memset(zero, 0, nz * sizeof(float));
  memset(bv, 0, nbv * sizeof(float));
  if (bias) cpu_load_vec(bias, Co, bv);
  int nt = cpu_nt(be);
  /* x(b,t,h,w,:) at xp + b*xs[0] + t*xs[1] + h*xs[2] + w*xs[3] */
  const float *xp;
  int64_t xs[4];
  if (x_direct) {
    xp = x->data;
    xs[0] = nd == 5 ? x->nb[0] : 0;
    for (int i = 0; i < 3; i++)
      xs[1 + i] = x->nb[nd - 4 + i];
  } else {
    lg_tensor xc = lg_tensor_make(be, xbuf, LG_F32, nd, x->ne);
    err = cpu_copy(be, &xc, x);
    if (err) return err;
    xp = xbuf;
    xs[3] = Ci;
    xs[2] = W * Ci;
    xs[1] = H * W * Ci;
    xs[0] = T * H * W * Ci;
  }
  bool y_direct = y->dtype == LG_F32 && y->nb[nd - 1] == 1;
  int64_t ys[4];
  ys[0] = nd == 5 ? y->nb[0] : 0;
  for (int i = 0; i < 3; i++)
    ys[1 + i] = y->nb[nd - 4 + i];
  int64_t nrow = B * To * Ho;
  double flops = (double)nrow * (double)Wo * (double)Co * (double)Ci * (double)taps;

#pragma omp parallel for num_threads(nt) if (flops > 2e5) schedule(dynamic, 1)
  for (int64_t r = 0; r < nrow; r++) {
    int64_t b = r / (To * Ho), to = (r / Ho) % To, ho = r % Ho;
    int64_t t_in0 = to * st - o->pad_t_front, h_in0 = ho * sh - o->pad_h[0];
    const float *xb = xp + b * xs[0];
    int64_t ybase = b * ys[0] + to * ys[1] + ho * ys[2];
    for (int64_t w0 = 0; w0 < Wo; w0 += PW) {
      int64_t wend = w0 + PW < Wo ? w0 + PW : Wo;
      for (int64_t pc = 0; pc < Cop; pc += 8) {
        for (int64_t g = w0; g < wend; g += 4) {
          int64_t np = wend - g < 4 ? wend - g : 4;
          float acc[4][8];
          for (int u = 0; u < 4; u++)
            memcpy(acc[u], bv + pc, sizeof acc[u]);
          for (int64_t dt = 0; dt < kt; dt++) {
            int64_t ti = t_in0 + dt;
            if (ti < 0 || ti >= T) continue;
            for (int64_t dy = 0; dy < kh; dy++) {
              int64_t hi = h_in0 + dy;
              if (hi < 0 || hi >= H) continue;
              const float *xrow = xb + ti * xs[1] + hi * xs[2];
              for (int64_t dx = 0; dx < kw; dx++) {
                const float *a[4];
                for (int u = 0; u < 4; u++) {
                  int64_t wi = (g + (u < np ? u : 0)) * sw - o->pad_w[0] + dx;
                  a[u] = (wi >= 0 && wi < W) ? xrow + wi * xs[3] : zero;
                }
                const float *wt = wp + ((dt * kh + dy) * kw + dx) * Ci * Cop + pc;
                cpu_mk_4x8(Ci, a[0], a[1], a[2], a[3], wt, Cop, acc);
              }
            }
          }
          int64_t nco = Co - pc < 8 ? Co - pc : 8;
          for (int64_t u = 0; u < np; u++) {
            int64_t yo = ybase + (g + u) * ys[3];
            if (y_direct)
              memcpy((float *)y->data + yo + pc, acc[u], (size_t)nco * sizeof(float));
            else
              for (int64_t j = 0; j < nco; j++)
                cpu_st(y->data, y->dtype, yo + (pc + j) * y->nb[nd - 1], acc[u][j]);
          }
        }
      }
    }
  }
  return 0;
}

/* cpu_attn.c: attention and 3D RoPE for the fp32 reference backend. Runs on the backend's
 * thread, parallel over (batch, head, query block) and over tokens.
 *
 * attention: per task (b, h, QB queries) keys are processed in blocks of KB with an online
 * softmax (running max m, running sum l, output rescaled by exp(m_old - m_new)), so scores
 * never overflow and memory does not grow with Lk. K is packed per block into 8-key panels
 * [KB/8][dh][8] and V into [KB][dhp] (dhp = dh rounded up to 8), both f32, so that S = Q K^T
 * and O += P V both run on the 4x8 micro-kernel.
 *
 * rope3d: MODELS.md 2.6 generalised: c = dh/2 pairs of adjacent elements (2j, 2j+1); the
 * first cf = c - 2*(c/3) pairs rotate by the frame index with freq 10000^(-2j/(2cf)), the
 * next c/3 by the row h, the last c/3 by the column w, both with 10000^(-2j'/(2(c/3))).
 * Like the PyTorch reference (float64 polar table, rotation in complex128, then .float()),
 * angles, cos/sin and the rotation are computed in double and cast once. */
#include "cpu_internal.h"

#include <stdlib.h>
#include <string.h>

enum { QB = 32, KBLK = 64 };

static int check4(const char *op, const char *name, const lg_tensor *t) {
  int err = cpu_check_float(op, name, t);
  if (err) return err;
  if (t->ndim != 4) return cpu_bad(op, "tensors must be 4-d [B,L,nh,dh]", t, NULL);
  return 0;
}

int cpu_attention(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                  const lg_tensor *v, const int32_t *kv_len, float scale) {
  int err = check4("attention", "o", o);
  if (!err) err = check4("attention", "q", q);
  if (!err) err = check4("attention", "k", k);
  if (!err) err = check4("attention", "v", v);
  if (err) return err;
  if (!lg_tensor_same_shape(o, q)) return cpu_bad("attention", "o and q must have one shape", o, q);
  int64_t B = q->ne[0], Lq = q->ne[1], nh = q->ne[2], dh = q->ne[3];
  if (!lg_tensor_same_shape(k, v)) return cpu_bad("attention", "k and v must have one shape", k, v);
  if ((k->ne[0] != B && k->ne[0] != 1) || k->ne[2] != nh || k->ne[3] != dh)
    return cpu_bad("attention", "k/v must be [B or 1, Lk, nh, dh] matching q", k, q);
  int64_t Lk = k->ne[1];
  for (int64_t b = 0; kv_len && b < B; b++) {
    if (kv_len[b] < 0 || kv_len[b] > Lk) {
      LG_ERR("cpu", "attention: kv_len[%lld] = %d outside [0, Lk=%lld]", (long long)b, kv_len[b],
             (long long)Lk);
      return LG_EINVAL;
    }
  }
  if (B == 0 || Lq == 0 || nh == 0 || dh == 0) return 0;

  int nt = cpu_nt(be);
  int64_t dhp = (dh + 7) / 8 * 8;
  /* per thread: Q [QB][dhp], O [QB][dhp], S/P [QB][KBLK], Kp [KBLK][dhp], Vp [KBLK][dhp],
   * m [QB], l [QB], row scratch [dh] */
  size_t per = cpu_round64((size_t)(QB * dhp)) * 2 + cpu_round64(QB * KBLK) +
               cpu_round64((size_t)(KBLK * dhp)) * 2 + 64 * 2 + cpu_round64((size_t)dhp);
  float *ws = cpu_ws(be, per * (size_t)nt * sizeof(float), "attention");
  if (!ws) return LG_ENOMEM;
  int64_t nqb = (Lq + QB - 1) / QB, ntask = B * nh * nqb;
  double flops = 4.0 * (double)B * (double)nh * (double)Lq * (double)Lk * (double)dh;

#pragma omp parallel for num_threads(nt) if (flops > 2e5) schedule(dynamic, 1)
  for (int64_t task = 0; task < ntask; task++) {
    int64_t b = task / (nh * nqb), h = (task / nqb) % nh, q0 = (task % nqb) * QB;
    int64_t qc = Lq - q0 < QB ? Lq - q0 : QB;
    int64_t kb = k->ne[0] == 1 ? 0 : b;
    int64_t L = kv_len ? kv_len[b] : Lk;
    float *Q = ws + per * (size_t)cpu_tid();
    float *O = Q + cpu_round64((size_t)(QB * dhp));
    float *S = O + cpu_round64((size_t)(QB * dhp));
    float *Kp = S + cpu_round64(QB * KBLK);
    float *Vp = Kp + cpu_round64((size_t)(KBLK * dhp));
    float *mx = Vp + cpu_round64((size_t)(KBLK * dhp));
    float *lsum = mx + 64;
    float *tmp = lsum + 64;
    (void)tmp;
    for (int64_t i = 0; i < qc; i++) {
      int64_t off = (b * q->nb[0] + (q0 + i) * q->nb[1] + h * q->nb[2]);
      for (int64_t d = 0; d < dh; d++)
        Q[i * dhp + d] = cpu_ld(q->data, q->dtype, off + d * q->nb[3]);
      mx[i] = -INFINITY;
      lsum[i] = 0.0f;
    }
    memset(O, 0, sizeof(float) * (size_t)(QB * dhp));
    for (int64_t j0 = 0; j0 < L; j0 += KBLK) {
      int64_t jc = L - j0 < KBLK ? L - j0 : KBLK;
      int64_t jcp = (jc + 7) / 8 * 8;
      /* pack K block into panels [jcp/8][dh][8] and V into [jc][dhp] */
      for (int64_t j = 0; j < jcp; j++) {
        float *kd = Kp + (j / 8) * dh * 8 + (j % 8);
        float *vd = Vp + j * dhp;
        if (j < jc) {
          int64_t ko = kb * k->nb[0] + (j0 + j) * k->nb[1] + h * k->nb[2];
          int64_t vo = kb * v->nb[0] + (j0 + j) * v->nb[1] + h * v->nb[2];
          for (int64_t d = 0; d < dh; d++) {
            kd[d * 8] = cpu_ld(k->data, k->dtype, ko + d * k->nb[3]);
            vd[d] = cpu_ld(v->data, v->dtype, vo + d * v->nb[3]);
          }
        } else {
          for (int64_t d = 0; d < dh; d++) {
            kd[d * 8] = 0.0f;
            vd[d] = 0.0f;
          }
        }
        for (int64_t d = dh; d < dhp; d++)
          vd[d] = 0.0f;
      }
      /* S[QB][KBLK] = Q K^T */
      for (int64_t i = 0; i < qc; i += 4) {
        int64_t last = qc - 1;
        const float *r0 = Q + i * dhp;
        const float *r1 = Q + (i + 1 <= last ? i + 1 : last) * dhp;
        const float *r2 = Q + (i + 2 <= last ? i + 2 : last) * dhp;
        const float *r3 = Q + (i + 3 <= last ? i + 3 : last) * dhp;
        for (int64_t j = 0; j < jcp; j += 8) {
          float acc[4][8];
          memset(acc, 0, sizeof acc);
          cpu_mk_4x8(dh, r0, r1, r2, r3, Kp + (j / 8) * dh * 8, 8, acc);
          int64_t rr = qc - i < 4 ? qc - i : 4;
          for (int64_t u = 0; u < rr; u++)
            memcpy(S + (i + u) * KBLK + j, acc[u], sizeof acc[u]);
        }
      }
      /* online softmax update; P overwrites S (zeros past jc) */
      for (int64_t i = 0; i < qc; i++) {
        float *s = S + i * KBLK;
        float m = mx[i];
        for (int64_t j = 0; j < jc; j++) {
          s[j] *= scale;
          if (s[j] > m) m = s[j];
        }
        float corr = expf(mx[i] - m); /* exp(-inf) = 0 on the first block */
        float ps = 0.0f;
        for (int64_t j = 0; j < jc; j++) {
          s[j] = expf(s[j] - m);
          ps += s[j];
        }
        for (int64_t j = jc; j < KBLK; j++)
          s[j] = 0.0f;
        lsum[i] = lsum[i] * corr + ps;
        mx[i] = m;
        if (corr != 1.0f) {
          float *oi = O + i * dhp;
          for (int64_t d = 0; d < dhp; d++)
            oi[d] *= corr;
        }
      }
      /* O += P V */
      for (int64_t i = 0; i < qc; i += 4) {
        int64_t last = qc - 1;
        const float *p0 = S + i * KBLK;
        const float *p1 = S + (i + 1 <= last ? i + 1 : last) * KBLK;
        const float *p2 = S + (i + 2 <= last ? i + 2 : last) * KBLK;
        const float *p3 = S + (i + 3 <= last ? i + 3 : last) * KBLK;
        int64_t rr = qc - i < 4 ? qc - i : 4;
        for (int64_t d = 0; d < dhp; d += 8) {
          float acc[4][8];
          for (int64_t u = 0; u < 4; u++)
            memcpy(acc[u], O + (i + (u < rr ? u : 0)) * dhp + d, sizeof acc[u]);
          cpu_mk_4x8(jc, p0, p1, p2, p3, Vp + d, dhp, acc);
          for (int64_t u = 0; u < rr; u++)
            memcpy(O + (i + u) * dhp + d, acc[u], sizeof acc[u]);
        }
      }
    }
    /* o = O / l (zero rows when kv_len is 0) */
    for (int64_t i = 0; i < qc; i++) {
      int64_t off = b * o->nb[0] + (q0 + i) * o->nb[1] + h * o->nb[2];
      float inv = lsum[i] > 0.0f ? 1.0f / lsum[i] : 0.0f;
      for (int64_t d = 0; d < dh; d++)
        cpu_st(o->data, o->dtype, off + d * o->nb[3], O[i * dhp + d] * inv);
    }
  }
  return 0;
}

int cpu_rope3d(lg_backend *be, lg_tensor *x, int64_t F, int64_t H, int64_t W,
               const int32_t *frame_start) {
  int err = check4("rope3d", "x", x);
  if (err) return err;
  int64_t B = x->ne[0], nh = x->ne[2], dh = x->ne[3];
  if (F < 0 || H < 0 || W < 0 || x->ne[1] != F * H * W || dh % 2 != 0) {
    char what[128];
    snprintf(what, sizeof what, "x must be [B, F*H*W = %lld*%lld*%lld, nh, even dh]", (long long)F,
             (long long)H, (long long)W);
    return cpu_bad("rope3d", what, x, NULL);
  }
  int64_t c = dh / 2, c3 = c / 3, cf = c - 2 * c3;
  if (B == 0 || x->ne[1] == 0 || nh == 0 || c == 0) return 0;
  int32_t fmax = 0;
  for (int64_t b = 0; b < B; b++) {
    int32_t f0 = frame_start ? frame_start[b] : 0;
    if (f0 < 0 || f0 > INT32_MAX - (int32_t)F) {
      LG_ERR("cpu", "rope3d: frame_start[%lld] = %d out of range", (long long)b, f0);
      return LG_EINVAL;
    }
    if (f0 + F > fmax) fmax = (int32_t)(f0 + F);
  }
  /* tables (double): frames [fmax][cf] cos,sin; rows [H][c3]; cols [W][c3] */
  size_t nf = (size_t)fmax * (size_t)cf, nr = (size_t)H * (size_t)c3, nc = (size_t)W * (size_t)c3;
  double *tab = cpu_ws(be, (nf + nr + nc) * 2 * sizeof(double), "rope3d");
  if (!tab) return LG_ENOMEM;
  double *fcs = tab, *rcs = fcs + 2 * nf, *ccs = rcs + 2 * nr;
  for (int64_t p = 0; p < fmax; p++) {
    for (int64_t j = 0; j < cf; j++) {
      double fr = 1.0 / pow(10000.0, (double)(2 * j) / (double)(2 * cf));
      double a = (double)p * fr;
      fcs[2 * (p * cf + j)] = cos(a);
      fcs[2 * (p * cf + j) + 1] = sin(a);
    }
  }
  for (int64_t p = 0; p < H || p < W; p++) {
    for (int64_t j = 0; j < c3; j++) {
      double fr = 1.0 / pow(10000.0, (double)(2 * j) / (double)(2 * c3));
      double a = (double)p * fr;
      if (p < H) {
        rcs[2 * (p * c3 + j)] = cos(a);
        rcs[2 * (p * c3 + j) + 1] = sin(a);
      }
      if (p < W) {
        ccs[2 * (p * c3 + j)] = cos(a);
        ccs[2 * (p * c3 + j) + 1] = sin(a);
      }
    }
  }
  int64_t L = x->ne[1], nrow = B * L * nh;
  int nt = cpu_nt(be);
#pragma omp parallel for num_threads(nt) if (nrow * dh > 16384) schedule(static)
  for (int64_t r = 0; r < nrow; r++) {
    int64_t hh = r % nh, t = (r / nh) % L, b = r / (nh * L);
    int64_t f = t / (H * W), hi = (t / W) % H, wi = t % W;
    int64_t fi = (frame_start ? frame_start[b] : 0) + f;
    int64_t off = b * x->nb[0] + t * x->nb[1] + hh * x->nb[2], s = x->nb[3];
    for (int64_t j = 0; j < c; j++) {
      const double *cs;
      if (j < cf)
        cs = fcs + 2 * (fi * cf + j);
      else if (j < cf + c3)
        cs = rcs + 2 * (hi * c3 + (j - cf));
      else
        cs = ccs + 2 * (wi * c3 + (j - cf - c3));
      int64_t i0 = off + 2 * j * s, i1 = i0 + s;
      double x0 = cpu_ld(x->data, x->dtype, i0), x1 = cpu_ld(x->data, x->dtype, i1);
      cpu_st(x->data, x->dtype, i0, (float)(x0 * cs[0] - x1 * cs[1]));
      cpu_st(x->data, x->dtype, i1, (float)(x0 * cs[1] + x1 * cs[0]));
    }
  }
  return 0;
}

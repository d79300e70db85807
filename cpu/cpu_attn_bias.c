/* cpu_attn_bias.c: attention with an additive logit bias (the T5 / umT5 relative position
 * bias) for the fp32 reference backend, and lg_backend_attention_bias, the generic entry that
 * returns LG_ENOTSUP for a backend without the op. Runs on the backend's thread, parallel over
 * (batch, head, query).
 *
 * Per query row: s_j = scale * q.k_j + bias[h,i,j] for j < kv_len[b] (f32 dot products),
 * p = softmax(s) with the maximum subtracted, o = sum_j p_j v_j / sum_j p_j (f32). It is a
 * plain loop rather than the blocked kernel of cpu_attn.c: the text encoder runs once per
 * prompt on at most 512 tokens, so clarity wins over speed here. */
#include "cpu_internal.h"

#include <stdlib.h>

int lg_backend_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                              const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                              float scale) {
  if (!be || !be->ops) {
    LG_ERR("backend", "attention_bias: no backend");
    return LG_EINVAL;
  }
  if (!be->ops->attention_bias) {
    LG_ERR("backend", "attention_bias: the %s backend does not implement this op",
           be->ops->name ? be->ops->name : "?");
    return LG_ENOTSUP;
  }
  return be->ops->attention_bias(be, o, q, k, v, bias, kv_len, scale);
}

static int check4(const char *name, const lg_tensor *t) {
  int err = cpu_check_float("attention_bias", name, t);
  if (err) return err;
  if (t->ndim != 4) return cpu_bad("attention_bias", "tensors must be 4-d [B,L,nh,dh]", t, NULL);
  return 0;
}

int cpu_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                       const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                       float scale) {
  int err = check4("o", o);
  if (!err) err = check4("q", q);
  if (!err) err = check4("k", k);
  if (!err) err = check4("v", v);
  if (!err) err = cpu_check_float("attention_bias", "bias", bias);
  if (err) return err;
  if (!lg_tensor_same_shape(o, q))
    return cpu_bad("attention_bias", "o and q must have one shape", o, q);
  int64_t B = q->ne[0], Lq = q->ne[1], nh = q->ne[2], dh = q->ne[3];
  if (!lg_tensor_same_shape(k, v))
    return cpu_bad("attention_bias", "k and v must have one shape", k, v);
  if ((k->ne[0] != B && k->ne[0] != 1) || k->ne[2] != nh || k->ne[3] != dh)
    return cpu_bad("attention_bias", "k/v must be [B or 1, Lk, nh, dh] matching q", k, q);
  int64_t Lk = k->ne[1];
  if (bias->dtype != LG_F32 || bias->ndim != 3 || bias->ne[0] != nh || bias->ne[1] != Lq ||
      bias->ne[2] != Lk || bias->nb[2] != 1)
    return cpu_bad("attention_bias", "bias must be F32 [nh, Lq, Lk] with a contiguous last dim",
                   bias, q);
  for (int64_t b = 0; kv_len && b < B; b++) {
    if (kv_len[b] < 0 || kv_len[b] > Lk) {
      LG_ERR("cpu", "attention_bias: kv_len[%lld] = %d outside [0, Lk=%lld]", (long long)b,
             kv_len[b], (long long)Lk);
      return LG_EINVAL;
    }
  }
  if (B == 0 || Lq == 0 || nh == 0 || dh == 0) return 0;

  int nt = cpu_nt(be);
  /* per thread: q row [dh], o row [dh], scores [Lk] */
  size_t per = cpu_round64((size_t)dh) * 2 + cpu_round64((size_t)Lk);
  float *ws = cpu_ws(be, per * (size_t)nt * sizeof(float), "attention_bias");
  if (!ws) return LG_ENOMEM;
  int64_t ntask = B * nh * Lq;
  double flops = 4.0 * (double)ntask * (double)Lk * (double)dh;
  const float *bd = bias->data;
  const bool kf = k->dtype == LG_F32 && k->nb[3] == 1, vf = v->dtype == LG_F32 && v->nb[3] == 1;

#pragma omp parallel for num_threads(nt) if (flops > 2e5) schedule(static)
  for (int64_t task = 0; task < ntask; task++) {
    int64_t b = task / (nh * Lq), h = (task / Lq) % nh, i = task % Lq;
    int64_t kb = k->ne[0] == 1 ? 0 : b;
    int64_t L = kv_len ? kv_len[b] : Lk;
    float *qr = ws + per * (size_t)cpu_tid();
    float *orow = qr + cpu_round64((size_t)dh);
    float *s = orow + cpu_round64((size_t)dh);
    int64_t qo = b * q->nb[0] + i * q->nb[1] + h * q->nb[2];
    for (int64_t d = 0; d < dh; d++) {
      qr[d] = cpu_ld(q->data, q->dtype, qo + d * q->nb[3]);
      orow[d] = 0.0f;
    }
    const float *brow = bd + h * bias->nb[0] + i * bias->nb[1];
    float m = -INFINITY;
    for (int64_t j = 0; j < L; j++) {
      int64_t ko = kb * k->nb[0] + j * k->nb[1] + h * k->nb[2];
      float acc = 0.0f;
      if (kf) /* f32 rows with a contiguous head dim: read in place */
        for (int64_t d = 0; d < dh; d++)
          acc += qr[d] * ((const float *)k->data)[ko + d];
      else
        for (int64_t d = 0; d < dh; d++)
          acc += qr[d] * cpu_ld(k->data, k->dtype, ko + d * k->nb[3]);
      s[j] = acc * scale + brow[j];
      if (s[j] > m) m = s[j];
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < L; j++) {
      float p = expf(s[j] - m);
      sum += p;
      int64_t vo = kb * v->nb[0] + j * v->nb[1] + h * v->nb[2];
      if (vf)
        for (int64_t d = 0; d < dh; d++)
          orow[d] += p * ((const float *)v->data)[vo + d];
      else
        for (int64_t d = 0; d < dh; d++)
          orow[d] += p * cpu_ld(v->data, v->dtype, vo + d * v->nb[3]);
    }
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f; /* zero rows when kv_len is 0 */
    int64_t oo = b * o->nb[0] + i * o->nb[1] + h * o->nb[2];
    for (int64_t d = 0; d < dh; d++)
      cpu_st(o->data, o->dtype, oo + d * o->nb[3], orow[d] * inv);
  }
  return 0;
}

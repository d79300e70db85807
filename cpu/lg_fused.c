/* lg_fused.c: the fused ops of lg_backend_ops (qk_norm_rope, cosine_mean_n, linear_gated_add,
 * linear_gated_add_ln, linear_gated_add_mod, channel_rms_norm_silu): each
 * wrapper calls the backend's fused kernel when it has one, else composes the plain ops, which is
 * what the CPU backend does (so its results are those of the unfused sequence, bit for bit). Runs
 * on the thread that owns the backend. */
#include "lg_backend.h"

int lg_backend_qk_norm_rope(lg_backend *be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F,
                            int64_t H, int64_t W, const int32_t *frame_start) {
  char sb[96];
  if (!be || !x || x->ndim != 4 || x->nb[3] != 1 || x->nb[2] != x->ne[3]) {
    LG_ERR("fused", "qk_norm_rope: x %s must be [B,L,nh,dh] with contiguous tokens",
           x ? lg_tensor_shape_str(x, sb, sizeof sb) : "NULL");
    return LG_EINVAL;
  }
  if (be->ops->qk_norm_rope) return be->ops->qk_norm_rope(be, x, w, eps, F, H, W, frame_start);
  /* [B, L, nh*dh] row view of the same memory */
  lg_tensor r = *x;
  r.ndim = 3;
  r.ne[2] = x->ne[2] * x->ne[3];
  r.nb[2] = 1;
  r.ne[3] = r.nb[3] = 0;
  int err = be->ops->rms_norm(be, &r, &r, w, eps);
  if (err) return err;
  return be->ops->rope3d(be, x, F, H, W, frame_start);
}

int lg_backend_cosine_mean_n(lg_backend *be, double *out, int n, const lg_tensor *a,
                             const lg_tensor *b) {
  if (!be || !out || n < 0 || (n > 0 && (!a || !b))) {
    LG_ERR("fused", "cosine_mean_n: bad arguments (n %d)", n);
    return LG_EINVAL;
  }
  if (be->ops->cosine_mean_n) return be->ops->cosine_mean_n(be, out, n, a, b);
  for (int i = 0; i < n; i++) {
    int err = be->ops->cosine_mean(be, &out[i], &a[i], &b[i]);
    if (err) return err;
  }
  return 0;
}

int lg_backend_linear_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                int64_t group, lg_tensor *tmp) {
  if (!be || !x || !a || !w || !gate || !tmp || group < 1) {
    LG_ERR("fused", "linear_gated_add: missing tensor or group %lld", (long long)group);
    return LG_EINVAL;
  }
  if (be->ops->linear_gated_add)
    return be->ops->linear_gated_add(be, x, a, w, bias, gate, group, tmp);
  lg_matmul_opts o = {.trans_b = true};
  int err = be->ops->matmul(be, tmp, a, w, bias, &o);
  if (err) return err;
  return be->ops->gated_add(be, x, tmp, gate, group);
}

int lg_backend_linear_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                   const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                   int64_t group, lg_tensor *tmp, lg_tensor *h,
                                   const lg_tensor *ln_w, const lg_tensor *ln_b, float eps) {
  if (!be || !x || !a || !w || !gate || !tmp || !h || group < 1) {
    LG_ERR("fused", "linear_gated_add_ln: missing tensor or group %lld", (long long)group);
    return LG_EINVAL;
  }
  if (be->ops->linear_gated_add_ln)
    return be->ops->linear_gated_add_ln(be, x, a, w, bias, gate, group, tmp, h, ln_w, ln_b, eps);
  int err = lg_backend_linear_gated_add(be, x, a, w, bias, gate, group, tmp);
  if (err) return err;
  return be->ops->layer_norm(be, h, x, ln_w, ln_b, eps);
}

int lg_backend_linear_gated_add_mod(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                    const lg_tensor *w, const lg_tensor *bias,
                                    const lg_tensor *gate, int64_t group, lg_tensor *tmp,
                                    lg_tensor *h, const lg_tensor *shift, const lg_tensor *scale,
                                    float eps) {
  if (!be || !x || !a || !w || !gate || !tmp || !h || !shift || !scale || group < 1) {
    LG_ERR("fused", "linear_gated_add_mod: missing tensor or group %lld", (long long)group);
    return LG_EINVAL;
  }
  if (be->ops->linear_gated_add_mod)
    return be->ops->linear_gated_add_mod(be, x, a, w, bias, gate, group, tmp, h, shift, scale, eps);
  int err = lg_backend_linear_gated_add(be, x, a, w, bias, gate, group, tmp);
  if (err) return err;
  return be->ops->modulate(be, h, x, shift, scale, group, true, eps);
}

int lg_backend_channel_rms_norm_silu(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                                     const lg_tensor *gamma) {
  if (!be || !y || !x || !gamma) {
    LG_ERR("fused", "channel_rms_norm_silu: missing backend or tensor");
    return LG_EINVAL;
  }
  if (be->ops->channel_rms_norm_silu) return be->ops->channel_rms_norm_silu(be, y, x, gamma);
  int err = be->ops->channel_rms_norm(be, y, x, gamma);
  if (err) return err;
  return be->ops->unary(be, y, y, LG_ACT_SILU, 0.0f);
}

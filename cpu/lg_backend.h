/* lg_backend.h: the tensor struct and the op interface that every model is written against.
 * One interface, two backends: cpu/ (fp32 reference, tests, CI, tiny default model) and
 * cuda/ (bf16 storage, fp32 accumulation, fused kernels). A model forward is a sequence of
 * calls on this interface; it never looks at data pointers itself.
 *
 * Conventions
 * - Shapes are outermost-first, like PyTorch: ne[0] is the slowest dimension. Strides nb[]
 *   are in elements. Most ops need the innermost dimension contiguous (nb[ndim-1] == 1); an op
 *   that needs more says so and returns LG_EINVAL otherwise.
 * - "Rows" of a tensor are all leading dimensions flattened: a [B,L,D] tensor has B*L rows of D.
 * - Ops are enqueued in order on the backend's stream; results are visible to later ops at
 *   once, and to the host after lg_backend_sync / download.
 * - Every op returns 0 or a negative LG_E* code and logs why.
 * - Host arrays passed to ops (kv_len, frame_start) are read during the call only.
 *
 * Threads: a backend instance belongs to one thread (the GPU worker, or a test). */
#ifndef LG_BACKEND_H
#define LG_BACKEND_H

#include "lg_base.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_MAX_DIMS 5

typedef enum {
  LG_F32 = 0,
  LG_F16 = 1,
  LG_BF16 = 2,
  LG_I32 = 3,
  LG_U8 = 4, /* RGB24 pixels; copy converts it to and from F32/F16/BF16 (see copy) */
} lg_dtype;

size_t lg_dtype_size(lg_dtype t);
const char *lg_dtype_name(lg_dtype t);

struct lg_backend;

typedef struct lg_tensor {
  lg_dtype dtype;
  int ndim;
  int64_t ne[LG_MAX_DIMS]; /* shape, outermost first */
  int64_t nb[LG_MAX_DIMS]; /* strides in elements */
  void *data;              /* backend memory (host for cpu, device for cuda); borrowed */
  struct lg_backend *be;   /* owner of data; NULL for plain host tensors */
} lg_tensor;

/* Contiguous tensor over existing memory (not owned). */
lg_tensor lg_tensor_make(struct lg_backend *be, void *data, lg_dtype dtype, int ndim,
                         const int64_t *shape);
int64_t lg_tensor_numel(const lg_tensor *t);
size_t lg_tensor_nbytes(const lg_tensor *t); /* numel * dtype size (contiguous size) */
bool lg_tensor_is_contiguous(const lg_tensor *t);
bool lg_tensor_same_shape(const lg_tensor *a, const lg_tensor *b);
/* Rows = product of all but the last dimension. */
int64_t lg_tensor_rows(const lg_tensor *t);
/* View of t restricted to [start, start+len) along dim (shares memory). */
lg_tensor lg_tensor_narrow(const lg_tensor *t, int dim, int64_t start, int64_t len);
/* View with a new shape; t must be contiguous. Returns LG_EINVAL on size mismatch. */
int lg_tensor_reshape(const lg_tensor *t, int ndim, const int64_t *shape, lg_tensor *out);
/* View with dimensions permuted: out.ne[i] = t.ne[perm[i]]. */
lg_tensor lg_tensor_permute(const lg_tensor *t, const int *perm);
/* "[2,3,4] f32" into buf. */
const char *lg_tensor_shape_str(const lg_tensor *t, char *buf, size_t n);

typedef enum {
  LG_ACT_NONE = 0,
  LG_ACT_GELU_TANH,
  LG_ACT_SILU,
  LG_ACT_RELU,
  LG_ACT_TANH_SCALED, /* alpha * tanh(x / alpha) (TAEHV input clamp) */
  LG_ACT_CLAMP,       /* clamp(x, -alpha, alpha) */
} lg_act;

typedef struct lg_matmul_opts {
  bool trans_a;    /* a is [K,M] instead of [M,K] */
  bool trans_b;    /* b is [N,K] instead of [K,N]: true for PyTorch Linear weights */
  lg_act act;      /* applied after bias */
  bool accumulate; /* y += result instead of y = result (act must be NONE) */
} lg_matmul_opts;

typedef enum {
  LG_WEIGHT_LINEAR = 0, /* [out,in] Linear weight, used with trans_b */
  LG_WEIGHT_CONV,       /* [Co,Ci,kt,kh,kw] or [Co,Ci,kh,kw] conv weight (PyTorch layout) */
  LG_WEIGHT_VECTOR,     /* bias, norm gamma, modulation table: any shape, read elementwise */
} lg_weight_kind;

typedef struct lg_conv_opts {
  int stride[3];   /* t, h, w (0 means 1) */
  int pad_t_front; /* zero frames in front (causal); the model concatenates cached frames
                      itself and then passes 0 */
  int pad_t_back;  /* zero frames behind (non-causal uses only) */
  int pad_h[2];    /* top, bottom */
  int pad_w[2];    /* left, right */
} lg_conv_opts;

typedef struct lg_backend lg_backend;

typedef struct lg_backend_ops {
  const char *name;
  void (*destroy)(lg_backend *be);

  /* ---- memory ---- */
  void *(*alloc)(lg_backend *be, size_t bytes); /* NULL on failure; 256-byte aligned */
  void (*free)(lg_backend *be, void *p);
  int (*upload)(lg_backend *be, void *dst, const void *src_host, size_t bytes);
  int (*download)(lg_backend *be, void *dst_host, const void *src, size_t bytes);
  int (*memset0)(lg_backend *be, void *dst, size_t bytes);
  int (*sync)(lg_backend *be);

  /* Turn a host tensor (F32/F16/BF16, any layout the kind names) into a backend weight.
   * The backend allocates out->data (freed with free) and may store its own dtype and
   * layout; the result is only ever passed back to ops as the weight argument. */
  int (*load_weight)(lg_backend *be, lg_tensor *out, const lg_tensor *host, lg_weight_kind kind);

  /* ---- ops ---- */
  /* y = x, same shape, any strides, converting dtype. U8 <-> F32/F16/BF16 are plain value
   * casts: U8 -> float gives 0..255; float -> U8 rounds to nearest (ties to even) and
   * saturates to [0,255], NaN gives 0. */
  int (*copy)(lg_backend *be, lg_tensor *y, const lg_tensor *x);
  /* y[M,N] = act(op(a)[M,K] @ op(b)[K,N] + bias[N]); a and y may have leading dims that are
   * flattened into M; bias may be NULL. b is a weight from load_weight or any tensor. */
  int (*matmul)(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
                const lg_tensor *bias, const lg_matmul_opts *o);
  /* y = act(x) elementwise (same shape). */
  int (*unary)(lg_backend *be, lg_tensor *y, const lg_tensor *x, lg_act act, float alpha);
  /* y = alpha*a + beta*b elementwise (same shape; y may alias a or b). */
  int (*axpby)(lg_backend *be, lg_tensor *y, float alpha, const lg_tensor *a, float beta,
               const lg_tensor *b);
  /* LayerNorm over the last dim; w, b may be NULL (no affine). */
  int (*layer_norm)(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                    const lg_tensor *b, float eps);
  /* RMSNorm over the last dim: y = x * rsqrt(mean(x^2) + eps) * w (w may be NULL). */
  int (*rms_norm)(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w, float eps);
  /* Wan VAE channel RMS norm over the last (channel) dim:
   * y = x / max(||x||_2, 1e-12) * sqrt(C) * gamma (gamma has C elements). */
  int (*channel_rms_norm)(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *gamma);
  /* x [R,D] rows grouped by `group` consecutive rows; shift/scale [R/group, D] (any row
   * stride). y = x*(1+scale[r/group]) + shift[r/group]. With ln=true x is first
   * LayerNorm'ed (no affine, eps). y may alias x. */
  int (*modulate)(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *shift,
                  const lg_tensor *scale, int64_t group, bool ln, float eps);
  /* x[r] += gate[r/group] * y[r]; x,y [R,D], gate [R/group,D] (any row stride) or NULL
   * (plain residual add). */
  int (*gated_add)(lg_backend *be, lg_tensor *x, const lg_tensor *y, const lg_tensor *gate,
                   int64_t group);
  /* 3D RoPE in place per MODELS.md 2.6. x [B, F*H*W, nh, dh], tokens ordered f,h,w; the
   * frame index of local frame f in batch b is frame_start[b] + f. dh even; pairs split
   * c-2*(c/3) (frame) / c/3 (row) / c/3 (column), c = dh/2. */
  int (*rope3d)(lg_backend *be, lg_tensor *x, int64_t F, int64_t H, int64_t W,
                const int32_t *frame_start);
  /* o[B,Lq,nh,dh] = softmax(q k^T * scale) v over the first kv_len[b] keys of k,v
   * [B,Lk,nh,dh] (Lk = capacity; any batch/row strides, batch stride 0 allowed for
   * shared K/V). kv_len NULL means all Lk. */
  int (*attention)(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                   const lg_tensor *v, const int32_t *kv_len, float scale);
  /* Channels-last 3D convolution: x [T,H,W,Ci], w from load_weight(CONV) [Co,Ci,kt,kh,kw]
   * (a 4-d [Co,Ci,kh,kw] weight is kt=1), bias [Co] or NULL, y [T',H',W',Co]. */
  int (*conv3d)(lg_backend *be, lg_tensor *y, const lg_tensor *x, const lg_tensor *w,
                const lg_tensor *bias, const lg_conv_opts *o);
  /* Nearest 2x spatial upsampling: x [T,H,W,C] -> y [T,2H,2W,C]. */
  int (*upsample2x)(lg_backend *be, lg_tensor *y, const lg_tensor *x);
  /* Mean over rows of cosine similarity of a[r] and b[r] ([R,D] each); result to host. */
  int (*cosine_mean)(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b);
  /* Sum over all elements of (a-b)^2; result to host. */
  int (*sq_diff_sum)(lg_backend *be, double *out, const lg_tensor *a, const lg_tensor *b);
  /* attention with an additive logit bias (T5 relative positions): o = softmax(q k^T * scale +
   * bias[h]) v, shapes and kv_len as attention; bias [nh, Lq, Lk] F32 (last dim contiguous),
   * shared over the batch. May be NULL in a backend: call it through lg_backend_attention_bias,
   * which then returns LG_ENOTSUP. */
  int (*attention_bias)(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                        const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                        float scale);

  /* ---- fused ops: optional (NULL composes the plain ops); call them through the
   * lg_backend_* wrappers below (cpu/lg_fused.c), which fall back when NULL ---- */
  /* x [B, F*H*W, nh, dh] in place, each token's nh*dh elements contiguous (nb[2] == dh,
   * nb[3] == 1; any batch/token strides): RMSNorm over the token's nh*dh elements with weight
   * w [nh*dh] (eps), then 3D RoPE exactly as rope3d. */
  int (*qk_norm_rope)(lg_backend *be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F,
                      int64_t H, int64_t W, const int32_t *frame_start);
  /* out[i] = cosine_mean(a[i], b[i]) for i < n, with one host sync for all of them. */
  int (*cosine_mean_n)(lg_backend *be, double *out, int n, const lg_tensor *a, const lg_tensor *b);
  /* The gated residual add of a Linear: x[r] += gate[r/group] * (a[r] @ w^T + bias), x [R,N]
   * and a [R,K] with contiguous rows, w a LINEAR weight [N,K], bias [N] or NULL, gate
   * [R/group, N] (any row stride), R a multiple of group. tmp [R,N] (act dtype, contiguous)
   * is workspace the op may use (the unfused matmul + gated_add goes through it). */
  int (*linear_gated_add)(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                          const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                          lg_tensor *tmp);
  /* Pixel mapping of the engine (call through lg_backend_pixels_from_u8/_to_u8, which log
   * LG_ENOTSUP when a backend has none). Same shape, any strides.
   * pixels_from_u8: y (F32/F16/BF16) = (float)(x_u8 * (2/255) - 1), computed in double.
   * pixels_to_u8: y (U8) = round((x + 1) * 127.5), in double from x's float value, clamped:
   * <= 0 gives 0, >= 255 gives 255, else nearest with ties to even; NaN gives 0. */
  int (*pixels_from_u8)(lg_backend *be, lg_tensor *y, const lg_tensor *x);
  int (*pixels_to_u8)(lg_backend *be, lg_tensor *y, const lg_tensor *x);
  /* The Wan VAE's pre-conv activation: y = silu(channel_rms_norm(x, gamma)), shapes and
   * contract as channel_rms_norm (y may alias x). */
  int (*channel_rms_norm_silu)(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                               const lg_tensor *gamma);
  /* Host memory the backend uploads from fastest (CUDA: page-locked), for bytes kept on the
   * host and uploaded often; NULL in a backend: call through lg_backend_host_alloc / _free,
   * which fall back to malloc / free. */
  void *(*host_alloc)(lg_backend *be, size_t bytes);
  void (*host_free)(lg_backend *be, void *p);
  /* linear_gated_add, then the next block's input norm over the updated x: h = LayerNorm(x) *
   * ln_w + ln_b (ln_w, ln_b [N] or NULL; eps), h [R,N] act dtype, contiguous. */
  int (*linear_gated_add_ln)(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                             const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                             lg_tensor *tmp, lg_tensor *h, const lg_tensor *ln_w,
                             const lg_tensor *ln_b, float eps);
  /* linear_gated_add, then the next block's modulated input norm over the updated x:
   * h = modulate(x, shift, scale, group, ln=true, eps), shift/scale [R/group, N] (any row
   * stride), h [R,N] act dtype, contiguous. */
  int (*linear_gated_add_mod)(lg_backend *be, lg_tensor *x, const lg_tensor *a, const lg_tensor *w,
                              const lg_tensor *bias, const lg_tensor *gate, int64_t group,
                              lg_tensor *tmp, lg_tensor *h, const lg_tensor *shift,
                              const lg_tensor *scale, float eps);
} lg_backend_ops;

/* be->ops->host_alloc (NULL on failure), or malloc; host_free pairs with it (NULL is a no-op). */
void *lg_backend_host_alloc(lg_backend *be, size_t bytes);
void lg_backend_host_free(lg_backend *be, void *p);

/* be->ops->linear_gated_add, or matmul into tmp and gated_add. 0 or LG_E*. */
int lg_backend_linear_gated_add(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                int64_t group, lg_tensor *tmp);
/* be->ops->linear_gated_add_ln, or lg_backend_linear_gated_add then layer_norm. 0 or LG_E*. */
int lg_backend_linear_gated_add_ln(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                   const lg_tensor *w, const lg_tensor *bias, const lg_tensor *gate,
                                   int64_t group, lg_tensor *tmp, lg_tensor *h,
                                   const lg_tensor *ln_w, const lg_tensor *ln_b, float eps);
/* be->ops->linear_gated_add_mod, or lg_backend_linear_gated_add then modulate. 0 or LG_E*. */
int lg_backend_linear_gated_add_mod(lg_backend *be, lg_tensor *x, const lg_tensor *a,
                                    const lg_tensor *w, const lg_tensor *bias,
                                    const lg_tensor *gate, int64_t group, lg_tensor *tmp,
                                    lg_tensor *h, const lg_tensor *shift, const lg_tensor *scale,
                                    float eps);
/* be->ops->cosine_mean_n, or cosine_mean per pair (same values). 0 or LG_E*. */
int lg_backend_cosine_mean_n(lg_backend *be, double *out, int n, const lg_tensor *a,
                             const lg_tensor *b);
/* be->ops->qk_norm_rope, or rms_norm over each token followed by rope3d. 0 or LG_E*. */
int lg_backend_qk_norm_rope(lg_backend *be, lg_tensor *x, const lg_tensor *w, float eps, int64_t F,
                            int64_t H, int64_t W, const int32_t *frame_start);

/* be->ops->pixels_from_u8 / pixels_to_u8, or LG_ENOTSUP (logged) when a backend has none
 * (cpu/lg_pixels.c). */
int lg_backend_pixels_from_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x);
int lg_backend_pixels_to_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x);

/* be->ops->channel_rms_norm_silu, or channel_rms_norm then unary SiLU in place on y (the CPU
 * backend: bit for bit the unfused pair). 0 or LG_E*. */
int lg_backend_channel_rms_norm_silu(lg_backend *be, lg_tensor *y, const lg_tensor *x,
                                     const lg_tensor *gamma);

/* be->ops->attention_bias, or LG_ENOTSUP (logged, naming the backend) when it has none
 * (cpu/cpu_attn_bias.c). */
int lg_backend_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                              const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                              float scale);

struct lg_backend {
  const lg_backend_ops *ops;
  lg_dtype act_dtype; /* dtype the backend prefers for activations (F32 cpu, BF16 cuda) */
  void *impl;
};

/* Backends. NULL on failure (logged). Free with lg_backend_free(&be). */
lg_backend *lg_backend_new_cpu(int threads); /* threads <= 0: all cores */
lg_backend *lg_backend_new_cuda(int device); /* NULL when built without CUDA or no GPU */
/* "cpu", "cuda", "cuda:N" or "auto" (cuda when a GPU is present, else cpu). */
lg_backend *lg_backend_new_by_name(const char *name);
void lg_backend_free(lg_backend **be);

/* Allocate a contiguous tensor owned by the caller (free with lg_tensor_free). */
int lg_tensor_alloc(lg_backend *be, lg_tensor *t, lg_dtype dtype, int ndim, const int64_t *shape);
void lg_tensor_free(lg_tensor *t);
/* Host <-> backend for whole contiguous tensors of equal byte size. */
int lg_tensor_upload(lg_tensor *t, const void *host);
int lg_tensor_download(const lg_tensor *t, void *host);
/* Download any tensor as contiguous f32 into host (numel floats). */
int lg_tensor_download_f32(const lg_tensor *t, float *host);
/* Upload host f32 (numel floats, contiguous) into t, converting to t's dtype. */
int lg_tensor_upload_f32(lg_tensor *t, const float *host);

/* Bump allocator over one backend buffer: sized once at setup, reset per chunk, so the hot
 * path never allocates. */
typedef struct lg_arena {
  lg_backend *be;
  uint8_t *base;
  size_t cap, used, peak;
} lg_arena;
int lg_arena_init(lg_arena *a, lg_backend *be, size_t bytes);
void lg_arena_free(lg_arena *a);
/* Contiguous tensor from the arena; LG_ENOMEM (logged with sizes) when full. */
int lg_arena_tensor(lg_arena *a, lg_tensor *t, lg_dtype dtype, int ndim, const int64_t *shape);
static inline size_t lg_arena_mark(const lg_arena *a) {
  return a->used;
}
static inline void lg_arena_reset(lg_arena *a, size_t mark) {
  a->used = mark;
}

/* Op wrappers: call through the tensor's backend. */
#define LG_OP(be, name, ...) ((be)->ops->name((be), __VA_ARGS__))

#ifdef __cplusplus
}
#endif
#endif

/* cuda_attention_gemm.cu: attention for one wide head (nh == 1, head dim > 128, bf16): the Wan
 * VAE's middle attention, one head of C = 384 over a frame's H*W tokens (6240 at 480x832),
 * where the flash kernels have no tile and the per-query fallback is slow. Per batch row, query
 * rows in chunks: S = Q K^T (cuBLASLt, fp32 [rows, n]), P = softmax(S * scale) (a row kernel,
 * bf16), O = P V (cuBLASLt, into o). S and P live in the backend's scratch buffer (at most
 * ATTN_GEMM_BYTES, grown once), so a steady call allocates nothing. Keys past kv_len[b] are
 * skipped by shortening the GEMMs. Dispatched by the attention op's wrapper in cuda_backend.cu
 * when lg_cuda_attention_gemm_applies says so. Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <math.h>

#define ATTN_GEMM_BYTES ((int64_t)320 << 20) /* S (f32) + P (bf16) of one query chunk, at most */

/* P[r, :n] = softmax(S[r, :n] * scale) with scale_log2 = scale * log2(e); one block per row. */
__global__ void k_softmax_rows(__nv_bfloat16 *P, int64_t ldp, const float *S, int64_t lds, int n,
                               float scale_log2) {
  __shared__ float sm[32], sl[32];
  const float *s = S + (int64_t)blockIdx.x * lds;
  __nv_bfloat16 *p = P + (int64_t)blockIdx.x * ldp;
  float m = -INFINITY, l = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float x = s[i] * scale_log2;
    if (x > m) {
      l = l * exp2f(m - x) + 1.f;
      m = x;
    } else {
      l += exp2f(x - m);
    }
  }
  /* combine (m, l) over the warp, then over the warps */
  for (int off = 16; off > 0; off >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, off), l2 = __shfl_xor_sync(0xffffffffu, l, off);
    float mm = fmaxf(m, m2);
    if (mm != -INFINITY)
      l = (m == -INFINITY ? 0.f : l * exp2f(m - mm)) +
          (m2 == -INFINITY ? 0.f : l2 * exp2f(m2 - mm));
    m = mm;
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  if (lane == 0) sm[warp] = m, sl[warp] = l;
  __syncthreads();
  float M = -INFINITY, L = 0.f;
  for (int i = 0; i < nw; i++)
    M = fmaxf(M, sm[i]);
  for (int i = 0; i < nw; i++)
    if (sm[i] != -INFINITY) L += sl[i] * exp2f(sm[i] - M);
  float inv = L > 0.f ? 1.f / L : 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    p[i] = __float2bfloat16_rn(exp2f(s[i] * scale_log2 - M) * inv);
}

bool lg_cuda_attention_gemm_applies(const lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                                    const lg_tensor *v, const int32_t *kv_len) {
  if (!o || !q || !k || !v || !o->data || !q->data || !k->data || !v->data) return false;
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || o->ndim != 4) return false;
  if (q->ne[2] != 1 || q->ne[3] <= 128 || !lg_tensor_same_shape(o, q) ||
      !lg_tensor_same_shape(k, v) || k->ne[2] != 1 || k->ne[3] != q->ne[3] ||
      (k->ne[0] != q->ne[0] && k->ne[0] != 1))
    return false;
  const lg_tensor *all[4] = {o, q, k, v};
  for (int i = 0; i < 4; i++)
    if (all[i]->dtype != LG_BF16 || all[i]->nb[3] != 1) return false;
  if (q->ne[1] >= (1 << 30) || k->ne[1] >= (1 << 30) || k->ne[1] < 1) return false;
  for (int64_t b = 0; kv_len && b < q->ne[0]; b++)
    if (kv_len[b] < 1 || kv_len[b] > k->ne[1]) return false; /* the kernels' path masks these */
  return true;
}

/* o[B,Lq,1,dh] = softmax(q k^T * scale) v, shapes as lg_cuda_attention_gemm_applies accepts. */
int lg_cuda_attention_gemm(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                           const lg_tensor *v, const int32_t *kv_len, float scale) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  LG_CHECK(lg_cuda_attention_gemm_applies(o, q, k, v, kv_len), LG_EINVAL, LG_CUDA_MOD,
           "attention (gemm): shapes or dtypes it does not take");
  {
    const int64_t B = q->ne[0], Lq = q->ne[1], Lk = k->ne[1], dh = q->ne[3];
    const int64_t ld = (Lk + 7) / 8 * 8; /* S and P row stride: 16-byte aligned rows */
    int64_t rows = ATTN_GEMM_BYTES / (ld * 6);
    if (rows < 1) rows = 1;
    if (rows > Lq) rows = Lq;
    const size_t s_bytes = (size_t)((rows * ld * 4 + 255) / 256 * 256);
    uint8_t *buf = (uint8_t *)lg_cuda_scratch(be, s_bytes + (size_t)(rows * ld * 2));
    LG_CHECK(buf, LG_ENOMEM, LG_CUDA_MOD, "attention (gemm): no scratch for %lld x %lld scores",
             (long long)rows, (long long)Lk);
    float *S = (float *)buf;
    __nv_bfloat16 *P = (__nv_bfloat16 *)(buf + s_bytes);
    const __nv_bfloat16 *qp = (const __nv_bfloat16 *)q->data, *kp = (const __nv_bfloat16 *)k->data,
                        *vp = (const __nv_bfloat16 *)v->data;
    __nv_bfloat16 *op = (__nv_bfloat16 *)o->data;
    const float sl2 = scale * 1.4426950408889634f;
    for (int64_t b = 0; b < B; b++) {
      const int n = (int)(kv_len ? kv_len[b] : Lk);
      const int64_t kb = k->ne[0] == 1 ? 0 : b * k->nb[0], vb = v->ne[0] == 1 ? 0 : b * v->nb[0];
      for (int64_t r0 = 0; r0 < Lq; r0 += rows) {
        const int m = (int)(Lq - r0 < rows ? Lq - r0 : rows);
        LG_TRY(lg_cuda_gemm_raw(be, m, n, (int)dh, qp + b * q->nb[0] + r0 * q->nb[1], q->nb[1],
                                LG_BF16, false, kp + kb, k->nb[1], LG_BF16, true, S, ld, LG_F32,
                                NULL, LG_F32, LG_ACT_NONE, false, 1, 0, 0, 0));
        k_softmax_rows<<<m, 256, 0, c->stream>>>(P, ld, S, ld, n, sl2);
        CUDA_LAUNCH_CHECK();
        LG_TRY(lg_cuda_gemm_raw(be, m, (int)dh, n, P, ld, LG_BF16, false, vp + vb, v->nb[1],
                                LG_BF16, false, op + b * o->nb[0] + r0 * o->nb[1], o->nb[1],
                                LG_BF16, NULL, LG_BF16, LG_ACT_NONE, false, 1, 0, 0, 0));
      }
    }
  }
  return 0;
fail:
  return err;
}

/* cuda_attention.cu: the attention op. On Hopper, bf16 head dim 128 goes to the wgmma kernel
 * of cuda_attention_wgmma.cu. Otherwise a flash-attention kernel of our own for bf16 and head
 * dims 64/128 (mma.sync m16n8k16 bf16 -> fp32, online softmax in exp2 form, K/V tiles of 64
 * keys double-buffered through cp.async, ldmatrix fragments), one block of 4 warps per 64
 * queries of one head of one batch row, keys masked past kv_len[b]; and a plain fp32 kernel
 * (one warp per query) for every other dtype, head dim or alignment.
 * q/k/v/o [B, L, heads, dh] with any batch/row/head strides (K/V batch stride 0 allowed).
 * Runs on the backend's thread. */
#include "cuda_attention.cuh"

#include <math.h>
#include <stdlib.h>

#define ATT_BN 64 /* keys per tile */

/* ---------------------------------------------------------------- fallback (any dtype) */
template <int NPER> __global__ void k_attn_ref(att_params p) {
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  int total = p.Lq * p.nh;
  int b = blockIdx.y;
  if (warp >= total) return;
  int i = warp / p.nh, h = warp % p.nh;
  float qv[NPER], acc[NPER];
  int nper = (p.dh + 31) / 32;
#pragma unroll
  for (int j = 0; j < NPER; j++) {
    int d = lane + 32 * j;
    qv[j] = (j < nper && d < p.dh) ? lg_ld(p.q, p.qdt, b * p.qb + i * p.ql + h * p.qh + d) : 0.f;
    acc[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  int n = p.kv_len[b];
  for (int key = 0; key < n; key++) {
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < NPER; j++) { /* compile-time indices: the arrays stay in registers */
      int d = lane + 32 * j;
      if (j < nper && d < p.dh)
        s += qv[j] * lg_ld(p.k, p.kdt, b * p.kb + key * p.kl + h * p.kh + d);
    }
    for (int o = 16; o > 0; o >>= 1)
      s += __shfl_xor_sync(0xffffffffu, s, o);
    s *= p.scale_log2;
    if (p.bias) s += p.bias[h * p.bias_h + i * p.bias_q + key] * 1.4426950408889634f;
    float mn = fmaxf(m, s);
    float corr = exp2f(m - mn), e = exp2f(s - mn);
    l = l * corr + e;
#pragma unroll
    for (int j = 0; j < NPER; j++) {
      int d = lane + 32 * j;
      float vv =
          (j < nper && d < p.dh) ? lg_ld(p.v, p.vdt, b * p.vb + key * p.vl + h * p.vh + d) : 0.f;
      acc[j] = acc[j] * corr + e * vv;
    }
    m = mn;
  }
#pragma unroll
  for (int j = 0; j < NPER; j++) {
    int d = lane + 32 * j;
    if (j < nper && d < p.dh)
      lg_st(p.o, p.odt, b * p.ob + i * p.ol + h * p.oh + d, l > 0.f ? acc[j] / l : 0.f);
  }
}

/* ---------------------------------------------------------------- flash kernel (bf16) */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                        const void *smem) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                          const void *smem) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(s));
}

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
               "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *(uint32_t *)&h;
}

/* WARPS warps of 16 queries each; MINB blocks per SM bounds the registers. */
template <int D, int WARPS, int MINB, bool SPLIT>
__global__ void __launch_bounds__(32 * WARPS, MINB) k_flash(att_params p) {
  constexpr int BM = 16 * WARPS, NTH = 32 * WARPS;
  constexpr int LDS = D + 8; /* padded smem row (elements): ldmatrix without bank conflicts */
  constexpr int KT = D / 16; /* k-steps over the head dim */
  constexpr int NT = D / 8;  /* n-tiles of the output */
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)smem_raw; /* [2][BN][LDS] */
  __nv_bfloat16 *Vs = Ks + 2 * ATT_BN * LDS;     /* [2][BN][LDS] */
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int b = blockIdx.z / p.nsplit, split = blockIdx.z % p.nsplit, h = blockIdx.y;
  const int q0 = blockIdx.x * BM + warp * 16;
  const int n = p.kv_len[b];

  const __nv_bfloat16 *qp = (const __nv_bfloat16 *)p.q + b * p.qb + h * p.qh;
  const __nv_bfloat16 *kp = (const __nv_bfloat16 *)p.k + b * p.kb + h * p.kh;
  const __nv_bfloat16 *vp = (const __nv_bfloat16 *)p.v + b * p.vb + h * p.vh;

  /* Q fragments straight from global (read once): rows q0+g, q0+g+8 */
  uint32_t qf[KT][4];
  {
    int r0 = q0 + g, r1 = q0 + g + 8;
    const uint32_t *p0 = (const uint32_t *)(qp + (int64_t)r0 * p.ql);
    const uint32_t *p1 = (const uint32_t *)(qp + (int64_t)r1 * p.ql);
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
      int c0 = (kk * 16 + 2 * t) / 2, c1 = (kk * 16 + 8 + 2 * t) / 2;
      qf[kk][0] = r0 < p.Lq ? p0[c0] : 0u;
      qf[kk][1] = r1 < p.Lq ? p1[c0] : 0u;
      qf[kk][2] = r0 < p.Lq ? p0[c1] : 0u;
      qf[kk][3] = r1 < p.Lq ? p1[c1] : 0u;
    }
  }

  float o[NT][4];
#pragma unroll
  for (int j = 0; j < NT; j++)
    o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  /* this block's share of the key tiles (split-KV: partial results combined later) */
  const int t_beg = split * p.tps;
  const int t_end = min((n + ATT_BN - 1) / ATT_BN, t_beg + p.tps);
  /* tile loader: BN rows x D cols of K and V, 16-byte chunks, zero past n */
  auto load_tile = [&](int tile, int buf) {
    constexpr int CPR = D / 8; /* chunks per row */
    __nv_bfloat16 *kd = Ks + buf * ATT_BN * LDS, *vd = Vs + buf * ATT_BN * LDS;
#pragma unroll
    for (int c = tid; c < ATT_BN * CPR; c += NTH) {
      int r = c / CPR, col = (c % CPR) * 8;
      int key = tile * ATT_BN + r;
      bool ok = key < n;
      const __nv_bfloat16 *ks = ok ? kp + (int64_t)key * p.kl + col : kp;
      const __nv_bfloat16 *vs = ok ? vp + (int64_t)key * p.vl + col : vp;
      cp_async16(kd + r * LDS + col, ks, ok ? 16 : 0);
      cp_async16(vd + r * LDS + col, vs, ok ? 16 : 0);
    }
  };

  if (t_beg < t_end) load_tile(t_beg, 0);
  cp_async_commit();
  for (int tile = t_beg; tile < t_end; tile++) {
    const int buf = (tile - t_beg) & 1;
    if (tile + 1 < t_end) load_tile(tile + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __nv_bfloat16 *kb = Ks + buf * ATT_BN * LDS, *vb = Vs + buf * ATT_BN * LDS;

    /* S = Q K^T: 16 x 64 per warp, 8 n-tiles of 8 keys */
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
    const int mi = lane / 8, rr = lane % 8;
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, kb + ((j + mi / 2) * 8 + rr) * LDS + kk * 16 + (mi % 2) * 8);
        mma16816(s[j], qf[kk], b0, b1);
        mma16816(s[j + 1], qf[kk], b2, b3);
      }
    }
    /* mask keys past n (only the last tile can have them) */
    if ((tile + 1) * ATT_BN > n) {
#pragma unroll
      for (int j = 0; j < 8; j++) {
        int key = tile * ATT_BN + j * 8 + 2 * t;
        if (key >= n) s[j][0] = s[j][2] = -INFINITY;
        if (key + 1 >= n) s[j][1] = s[j][3] = -INFINITY;
      }
    }
    /* online softmax for rows g (c0,c1) and g+8 (c2,c3) */
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    float mn0 = fmaxf(m0, mx0 * p.scale_log2), mn1 = fmaxf(m1, mx1 * p.scale_log2);
    float base0 = mn0 == -INFINITY ? 0.f : mn0, base1 = mn1 == -INFINITY ? 0.f : mn1;
    float a0 = exp2f(m0 - base0), a1 = exp2f(m1 - base1);
    m0 = mn0, m1 = mn1;
    l0 *= a0, l1 *= a1;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      o[j][0] *= a0, o[j][1] *= a0;
      o[j][2] *= a1, o[j][3] *= a1;
    }
    uint32_t pf[4][4]; /* P as A fragments: 4 k-steps of 16 keys */
#pragma unroll
    for (int j = 0; j < 8; j++) {
      float e0 = exp2f(s[j][0] * p.scale_log2 - base0), e1 = exp2f(s[j][1] * p.scale_log2 - base0);
      float e2 = exp2f(s[j][2] * p.scale_log2 - base1), e3 = exp2f(s[j][3] * p.scale_log2 - base1);
      l0 += e0 + e1, l1 += e2 + e3;
      pf[j / 2][(j % 2) * 2 + 0] = pack_bf16(e0, e1);
      pf[j / 2][(j % 2) * 2 + 1] = pack_bf16(e2, e3);
    }
    /* O += P V: V [keys][dims] through ldmatrix.trans */
#pragma unroll
    for (int kb2 = 0; kb2 < 4; kb2++) {
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, vb + (kb2 * 16 + (mi % 2) * 8 + rr) * LDS + (j + mi / 2) * 8);
        mma16816(o[j], pf[kb2], b0, b1);
        mma16816(o[j + 1], pf[kb2], b2, b3);
      }
    }
    __syncthreads(); /* this buffer is refilled by the next iteration's load */
  }
  cp_async_wait<0>();

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
  int r0 = q0 + g, r1 = q0 + g + 8;
  if (SPLIT) {
    /* partial: O/l (fp32) [split][b][q][h][D] and (m, l) [split][b][q][h] */
    int64_t row0 = (((int64_t)split * p.B + b) * p.Lq + r0) * p.nh + h;
    int64_t row1 = row0 + (int64_t)8 * p.nh;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      int col = j * 8 + 2 * t;
      if (r0 < p.Lq)
        *(float2 *)(p.part_o + row0 * D + col) = make_float2(o[j][0] * i0, o[j][1] * i0);
      if (r1 < p.Lq)
        *(float2 *)(p.part_o + row1 * D + col) = make_float2(o[j][2] * i1, o[j][3] * i1);
    }
    if (t == 0) {
      if (r0 < p.Lq) *(float2 *)(p.part_ml + 2 * row0) = make_float2(m0, l0);
      if (r1 < p.Lq) *(float2 *)(p.part_ml + 2 * row1) = make_float2(m1, l1);
    }
    return;
  }
  __nv_bfloat16 *op = (__nv_bfloat16 *)p.o + b * p.ob + h * p.oh;
#pragma unroll
  for (int j = 0; j < NT; j++) {
    int col = j * 8 + 2 * t;
    if (r0 < p.Lq)
      *(__nv_bfloat162 *)(op + (int64_t)r0 * p.ol + col) =
          __floats2bfloat162_rn(o[j][0] * i0, o[j][1] * i0);
    if (r1 < p.Lq)
      *(__nv_bfloat162 *)(op + (int64_t)r1 * p.ol + col) =
          __floats2bfloat162_rn(o[j][2] * i1, o[j][3] * i1);
  }
}

/* Variant 2: each warp owns 32 queries (two m16 tiles), so every K/V fragment read from shared
 * memory feeds two MMAs (half the ldmatrix traffic per FLOP of k_flash, twice the independent
 * MMAs per warp); Q sits in shared memory and is re-read per tile with ldmatrix. WARPS warps,
 * BM = 32*WARPS queries per block, K/V double-buffered as in k_flash. */
template <int D, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, 2) k_flash2(att_params p) {
  constexpr int BM = 32 * WARPS, NTH = 32 * WARPS;
  constexpr int LDS = D + 8, KT = D / 16, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)smem_raw; /* [2][BN][LDS] */
  __nv_bfloat16 *Vs = Ks + 2 * ATT_BN * LDS;     /* [2][BN][LDS] */
  __nv_bfloat16 *Qs = Vs + 2 * ATT_BN * LDS;     /* [BM][LDS] */
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4, mi = lane / 8, rr = lane % 8;
  const int b = blockIdx.z, h = blockIdx.y;
  const int qblk = blockIdx.x * BM;
  const int n = p.kv_len[b];
  const __nv_bfloat16 *qp = (const __nv_bfloat16 *)p.q + b * p.qb + h * p.qh;
  const __nv_bfloat16 *kp = (const __nv_bfloat16 *)p.k + b * p.kb + h * p.kh;
  const __nv_bfloat16 *vp = (const __nv_bfloat16 *)p.v + b * p.vb + h * p.vh;
  constexpr int CPR = D / 8;
  /* Q tile (zero rows past Lq) */
  for (int c = tid; c < BM * CPR; c += NTH) {
    int r = c / CPR, col = (c % CPR) * 8, q = qblk + r;
    bool ok = q < p.Lq;
    cp_async16(Qs + r * LDS + col, ok ? qp + (int64_t)q * p.ql + col : qp, ok ? 16 : 0);
  }
  auto load_tile = [&](int tile, int buf) {
    __nv_bfloat16 *kd = Ks + buf * ATT_BN * LDS, *vd = Vs + buf * ATT_BN * LDS;
    for (int c = tid; c < ATT_BN * CPR; c += NTH) {
      int r = c / CPR, col = (c % CPR) * 8;
      int key = tile * ATT_BN + r;
      bool ok = key < n;
      cp_async16(kd + r * LDS + col, ok ? kp + (int64_t)key * p.kl + col : kp, ok ? 16 : 0);
      cp_async16(vd + r * LDS + col, ok ? vp + (int64_t)key * p.vl + col : vp, ok ? 16 : 0);
    }
  };
  const int ntiles = (n + ATT_BN - 1) / ATT_BN;
  if (ntiles > 0) load_tile(0, 0);
  cp_async_commit(); /* Q and tile 0 */

  float o[2][NT][4];
#pragma unroll
  for (int m = 0; m < 2; m++)
#pragma unroll
    for (int j = 0; j < NT; j++)
      o[m][j][0] = o[m][j][1] = o[m][j][2] = o[m][j][3] = 0.f;
  float mrow[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, lrow[4] = {0.f, 0.f, 0.f, 0.f};
  const __nv_bfloat16 *qw = Qs + (warp * 32) * LDS;

  for (int tile = 0; tile < ntiles; tile++) {
    const int buf = tile & 1;
    if (tile + 1 < ntiles) load_tile(tile + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const __nv_bfloat16 *kb = Ks + buf * ATT_BN * LDS, *vb = Vs + buf * ATT_BN * LDS;
    float s[2][8][4];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
      for (int j = 0; j < 8; j++)
        s[m][j][0] = s[m][j][1] = s[m][j][2] = s[m][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
      uint32_t qa[2][4];
#pragma unroll
      for (int m = 0; m < 2; m++)
        ldsm_x4(qa[m][0], qa[m][1], qa[m][2], qa[m][3],
                qw + (m * 16 + (mi % 2) * 8 + rr) * LDS + kk * 16 + (mi / 2) * 8);
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(b0, b1, b2, b3, kb + ((j + mi / 2) * 8 + rr) * LDS + kk * 16 + (mi % 2) * 8);
        mma16816(s[0][j], qa[0], b0, b1);
        mma16816(s[0][j + 1], qa[0], b2, b3);
        mma16816(s[1][j], qa[1], b0, b1);
        mma16816(s[1][j + 1], qa[1], b2, b3);
      }
    }
    if ((tile + 1) * ATT_BN > n) {
#pragma unroll
      for (int j = 0; j < 8; j++) {
        int key = tile * ATT_BN + j * 8 + 2 * t;
#pragma unroll
        for (int m = 0; m < 2; m++) {
          if (key >= n) s[m][j][0] = s[m][j][2] = -INFINITY;
          if (key + 1 >= n) s[m][j][1] = s[m][j][3] = -INFINITY;
        }
      }
    }
    uint32_t pf[2][4][4];
#pragma unroll
    for (int m = 0; m < 2; m++) {
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        mx0 = fmaxf(mx0, fmaxf(s[m][j][0], s[m][j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[m][j][2], s[m][j][3]));
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      float mn0 = fmaxf(mrow[2 * m], mx0 * p.scale_log2);
      float mn1 = fmaxf(mrow[2 * m + 1], mx1 * p.scale_log2);
      float base0 = mn0 == -INFINITY ? 0.f : mn0, base1 = mn1 == -INFINITY ? 0.f : mn1;
      float a0 = exp2f(mrow[2 * m] - base0), a1 = exp2f(mrow[2 * m + 1] - base1);
      mrow[2 * m] = mn0, mrow[2 * m + 1] = mn1;
      float l0 = lrow[2 * m] * a0, l1 = lrow[2 * m + 1] * a1;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        o[m][j][0] *= a0, o[m][j][1] *= a0;
        o[m][j][2] *= a1, o[m][j][3] *= a1;
      }
#pragma unroll
      for (int j = 0; j < 8; j++) {
        float e0 = exp2f(fmaf(s[m][j][0], p.scale_log2, -base0));
        float e1 = exp2f(fmaf(s[m][j][1], p.scale_log2, -base0));
        float e2 = exp2f(fmaf(s[m][j][2], p.scale_log2, -base1));
        float e3 = exp2f(fmaf(s[m][j][3], p.scale_log2, -base1));
        l0 += e0 + e1, l1 += e2 + e3;
        pf[m][j / 2][(j % 2) * 2 + 0] = pack_bf16(e0, e1);
        pf[m][j / 2][(j % 2) * 2 + 1] = pack_bf16(e2, e3);
      }
      lrow[2 * m] = l0, lrow[2 * m + 1] = l1;
    }
#pragma unroll
    for (int kb2 = 0; kb2 < 4; kb2++) {
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, vb + (kb2 * 16 + (mi % 2) * 8 + rr) * LDS + (j + mi / 2) * 8);
        mma16816(o[0][j], pf[0][kb2], b0, b1);
        mma16816(o[0][j + 1], pf[0][kb2], b2, b3);
        mma16816(o[1][j], pf[1][kb2], b0, b1);
        mma16816(o[1][j + 1], pf[1][kb2], b2, b3);
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  __nv_bfloat16 *op = (__nv_bfloat16 *)p.o + b * p.ob + h * p.oh;
#pragma unroll
  for (int m = 0; m < 2; m++) {
    float l0 = lrow[2 * m], l1 = lrow[2 * m + 1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
    int r0 = qblk + warp * 32 + m * 16 + g, r1 = r0 + 8;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      int col = j * 8 + 2 * t;
      if (r0 < p.Lq)
        *(__nv_bfloat162 *)(op + (int64_t)r0 * p.ol + col) =
            __floats2bfloat162_rn(o[m][j][0] * i0, o[m][j][1] * i0);
      if (r1 < p.Lq)
        *(__nv_bfloat162 *)(op + (int64_t)r1 * p.ol + col) =
            __floats2bfloat162_rn(o[m][j][2] * i1, o[m][j][3] * i1);
    }
  }
}

template <int D, int WARPS> static int launch_flash2(lg_cuda *c, const att_params &p, int B) {
  int err = 0;
  size_t smem = ((size_t)4 * ATT_BN + 32 * WARPS) * (D + 8) * 2;
  static bool attr_set = false;
  if (!attr_set) {
    CUDA_CHECK(cudaFuncSetAttribute(k_flash2<D, WARPS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    attr_set = true;
  }
  {
    dim3 grid((p.Lq + 32 * WARPS - 1) / (32 * WARPS), p.nh, B);
    k_flash2<D, WARPS><<<grid, 32 * WARPS, smem, c->stream>>>(p);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

static bool al16(const void *p, int64_t s1, int64_t s2, int64_t s3) {
  return ((uintptr_t)p % 16) == 0 && s1 % 8 == 0 && s2 % 8 == 0 && s3 % 8 == 0;
}

/* Split-KV combine: one warp per (b, q, h) row; O = sum_s w_s O_s with
 * w_s = l_s 2^(m_s - M) / sum_s' l_s' 2^(m_s' - M). */
template <int D> __global__ void k_flash_combine(att_params p) {
  int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  int64_t rows = (int64_t)p.B * p.Lq * p.nh;
  if (row >= rows) return;
  float M = -INFINITY;
  for (int s = 0; s < p.nsplit; s++)
    M = fmaxf(M, p.part_ml[2 * (s * rows + row)]);
  float base = M == -INFINITY ? 0.f : M, L = 0.f;
  float acc[D / 32];
#pragma unroll
  for (int j = 0; j < D / 32; j++)
    acc[j] = 0.f;
  for (int s = 0; s < p.nsplit; s++) {
    float2 ml = *(const float2 *)(p.part_ml + 2 * (s * rows + row));
    float w = ml.y * exp2f(ml.x - base);
    L += w;
    const float *src = p.part_o + (s * rows + row) * D;
#pragma unroll
    for (int j = 0; j < D / 32; j++)
      acc[j] += w * src[lane + 32 * j];
  }
  float inv = L > 0.f ? 1.f / L : 0.f;
  int h = (int)(row % p.nh);
  int64_t bq = row / p.nh;
  int q = (int)(bq % p.Lq), b = (int)(bq / p.Lq);
  __nv_bfloat16 *op = (__nv_bfloat16 *)p.o + b * p.ob + (int64_t)q * p.ol + h * p.oh;
#pragma unroll
  for (int j = 0; j < D / 32; j++)
    op[lane + 32 * j] = __float2bfloat16_rn(acc[j] * inv);
}

/* Process-wide overrides of the knobs below (lg_cuda_attn_set_kernel; tests and benchmarks). */
static int g_attn_kernel = 0, g_attn_split = -2;

/* Key splits: LG_ATTN_SPLIT=N, or 0 for the count that best fills the last wave of blocks;
 * -1 when unset (the mma.sync kernels then take 1, no split: measured on H100 for the 1.3B
 * chunk, 2 or 4 splits took 27 ms vs 25 ms of attention per 2-step chunk; the wgmma kernel
 * takes its automatic choice). */
static int attn_split_env(void) {
  static int v = -2;
  if (g_attn_split != -2) return g_attn_split;
  if (v == -2) {
    const char *e = getenv("LG_ATTN_SPLIT");
    v = e ? atoi(e) : -1;
    if (v < -1 || v > 8) v = -1;
  }
  return v;
}

static int pick_split(int blocks, int slots, int ntiles) {
  int best = 1;
  double best_cost = 1e30;
  for (int ns = 1; ns <= 4; ns++) {
    if (ns > 1 && (ntiles + ns - 1) / ns < 2) break;
    double waves = (double)((blocks * ns + slots - 1) / slots);
    double cost = waves / ns + (ns > 1 ? 0.04 : 0.0); /* combine pass */
    if (cost < best_cost - 1e-9) best = ns, best_cost = cost;
  }
  return best;
}

template <int D, int WARPS, int MINB>
static int launch_flash(lg_backend *be, att_params &p, int B) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  size_t smem = (size_t)4 * ATT_BN * (D + 8) * 2;
  static bool attr_set = false; /* per instantiation; one device kind per process */
  if (!attr_set) {
    CUDA_CHECK(cudaFuncSetAttribute(k_flash<D, WARPS, MINB, false>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CUDA_CHECK(cudaFuncSetAttribute(k_flash<D, WARPS, MINB, true>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attr_set = true;
  }
  {
    int qt = (p.Lq + 16 * WARPS - 1) / (16 * WARPS), maxn = 0;
    for (int b = 0; b < B; b++)
      maxn = p.kv_len[b] > maxn ? p.kv_len[b] : maxn;
    int ntiles = (maxn + ATT_BN - 1) / ATT_BN;
    int ns = attn_split_env();
    if (ns < 0) ns = 1;
    if (!ns) ns = pick_split(qt * p.nh * B, MINB * c->sm_count, ntiles);
    if (ns > 1 && B * ns > 65535) ns = 1;
    p.B = B;
    p.nsplit = ns;
    p.tps = ns > 1 ? (ntiles + ns - 1) / ns : (ntiles > 0 ? ntiles : 1);
    if (ns > 1) {
      size_t rows = (size_t)B * p.Lq * p.nh * ns;
      size_t ob = (rows * D * 4 + 255) & ~(size_t)255;
      uint8_t *scr = (uint8_t *)lg_cuda_scratch(be, ob + rows * 8);
      LG_CHECK(scr, LG_ENOMEM, LG_CUDA_MOD, "attention: no scratch for %d key splits", ns);
      p.part_o = (float *)scr;
      p.part_ml = (float *)(scr + ob);
    }
    dim3 grid(qt, p.nh, B * ns);
    if (ns > 1)
      k_flash<D, WARPS, MINB, true><<<grid, 32 * WARPS, smem, c->stream>>>(p);
    else
      k_flash<D, WARPS, MINB, false><<<grid, 32 * WARPS, smem, c->stream>>>(p);
    CUDA_LAUNCH_CHECK();
    if (ns > 1) {
      int64_t warps = (int64_t)B * p.Lq * p.nh;
      k_flash_combine<D><<<(unsigned)((warps + 7) / 8), 256, 0, c->stream>>>(p);
      CUDA_LAUNCH_CHECK();
    }
  }
  return 0;
fail:
  return err;
}

/* LG_ATTN_WARPS=4 (64 queries per block, 3 blocks/SM) or 8 (128 queries, 1 block/SM, fewer
 * K/V re-reads from L2); read once per process. */
static int attn_warps(void) {
  static int w = 0;
  if (!w) {
    const char *e = getenv("LG_ATTN_WARPS");
    int v = e ? atoi(e) : 4;
    w = (v == 2 || v == 3 || v == 6 || v == 8) ? v : 4;
  }
  return w;
}

/* LG_ATTN_KERNEL=1 (mma.sync, 16 queries per warp), 2 (32 per warp, Q in shared memory) or 3
 * to 11 (wgmma, Hopper: its variants 0 to 8, see cuda_attention.cuh; 8 = 4 with TMA; 9 = 176-key
 * tiles, 2 stages, TMA; 10 / 11 = 8 / 9 with ping-pong); unset: 10 (3 K/V stages loaded by TMA,
 * S of the next tile overlapping P V, the two consumer warpgroups taking turns at the tensor
 * cores: the fastest measured on the H100 in two A/B runs, see docs/PERFORMANCE.md) where the
 * device runs it, else 1. */
static int attn_kernel(void) {
  static int k = 0;
  if (g_attn_kernel) return g_attn_kernel;
  if (!k) {
    const char *e = getenv("LG_ATTN_KERNEL");
    int v = e ? atoi(e) : 10;
    k = v >= 1 && v <= 11 ? v : 10;
  }
  return k;
}

/* Tests and benchmarks (declared where used): kernel 1..11 or 0 for the default; split N >= 0
 * as LG_ATTN_SPLIT, -1 for the kernel's default, -2 to follow the environment again. */
extern "C" void lg_cuda_attn_set_kernel(int kernel, int split) {
  g_attn_kernel = kernel >= 1 && kernel <= 11 ? kernel : 0;
  g_attn_split = split >= -2 && split <= 8 ? split : -2;
}

/* Tests: 1 when attention with bf16 head dim 128 runs the wgmma kernel on this device, 0 when
 * the device is no Hopper (compute capability 9.0), -1 when it is one but the kernel cannot
 * run (the sm_90a image not loaded). */
extern "C" int lg_cuda_attn_wgmma_active(lg_backend *be) {
  int dev = 0, major = 0, minor = 0;
  if (lg_cuda_attn_wgmma_ok(be)) return 1;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return -1;
  return major == 9 && minor == 0 ? -1 : 0;
}

/* attention, or attention_bias when bias ([nh, Lq, Lk] f32) is given: the bias path runs the
 * one-warp-per-query kernel (umT5 runs once per prompt). */
static int attention_impl(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                          const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                          float scale) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  att_params p;
  char s1[96], s2[96], s3[96], s4[96];
  LG_TRY(lg_cuda_check_tensor("attention", "o", o, true));
  LG_TRY(lg_cuda_check_tensor("attention", "q", q, true));
  LG_TRY(lg_cuda_check_tensor("attention", "k", k, true));
  LG_TRY(lg_cuda_check_tensor("attention", "v", v, true));
  LG_CHECK(q->ndim == 4 && k->ndim == 4 && v->ndim == 4 && o->ndim == 4 &&
               lg_tensor_same_shape(o, q) && lg_tensor_same_shape(k, v) &&
               (k->ne[0] == q->ne[0] || k->ne[0] == 1) && k->ne[2] == q->ne[2] &&
               k->ne[3] == q->ne[3],
           LG_EINVAL, LG_CUDA_MOD, "attention: shapes do not fit: o %s q %s k %s v %s",
           lg_tensor_shape_str(o, s1, sizeof s1), lg_tensor_shape_str(q, s2, sizeof s2),
           lg_tensor_shape_str(k, s3, sizeof s3), lg_tensor_shape_str(v, s4, sizeof s4));
  {
    int B = (int)q->ne[0];
    LG_CHECK(B <= ATT_MAX_B && q->ne[1] < (1 << 30) && k->ne[1] < (1 << 30), LG_ENOTSUP,
             LG_CUDA_MOD, "attention: at most %d batch rows", ATT_MAX_B);
    p.q = q->data, p.k = k->data, p.v = v->data, p.o = o->data;
    p.qb = q->nb[0], p.ql = q->nb[1], p.qh = q->nb[2];
    /* K/V of one batch row shared by all query rows: batch stride 0 */
    p.kb = k->ne[0] == 1 ? 0 : k->nb[0], p.kl = k->nb[1], p.kh = k->nb[2];
    p.vb = v->ne[0] == 1 ? 0 : v->nb[0], p.vl = v->nb[1], p.vh = v->nb[2];
    p.ob = o->nb[0], p.ol = o->nb[1], p.oh = o->nb[2];
    p.Lq = (int)q->ne[1], p.Lk = (int)k->ne[1], p.nh = (int)q->ne[2], p.dh = (int)q->ne[3];
    p.scale_log2 = scale * 1.4426950408889634f;
    p.qdt = q->dtype, p.kdt = k->dtype, p.vdt = v->dtype, p.odt = o->dtype;
    p.dt = 0, p.wg_dbg = 0;
    p.B = B, p.nsplit = 1, p.tps = 1, p.part_o = NULL, p.part_ml = NULL;
    p.bias = NULL, p.bias_h = p.bias_q = 0;
    if (bias) {
      LG_CHECK(bias->dtype == LG_F32 && bias->ndim == 3 && bias->ne[0] == q->ne[2] &&
                   bias->ne[1] == q->ne[1] && bias->ne[2] == k->ne[1] && bias->nb[2] == 1 &&
                   bias->data,
               LG_EINVAL, LG_CUDA_MOD, "attention_bias: bias %s must be F32 [%lld,%lld,%lld]",
               lg_tensor_shape_str(bias, s1, sizeof s1), (long long)q->ne[2], (long long)q->ne[1],
               (long long)k->ne[1]);
      p.bias = (const float *)bias->data, p.bias_h = bias->nb[0], p.bias_q = bias->nb[1];
    }
    for (int b = 0; b < B; b++) {
      int n = kv_len ? kv_len[b] : p.Lk;
      LG_CHECK(n >= 0 && n <= p.Lk, LG_ERANGE, LG_CUDA_MOD,
               "attention: kv_len[%d] = %d outside [0, %d]", b, n, p.Lk);
      p.kv_len[b] = n;
    }
    if (p.Lq == 0 || p.nh == 0 || B == 0) return 0;
    bool bf =
        q->dtype == LG_BF16 && k->dtype == LG_BF16 && v->dtype == LG_BF16 && o->dtype == LG_BF16;
    bool aligned = al16(q->data, p.qb, p.ql, p.qh) && al16(k->data, p.kb, p.kl, p.kh) &&
                   al16(v->data, p.vb, p.vl, p.vh) && al16(o->data, p.ob, p.ol, p.oh);
    if (bf && aligned && p.dh == 128 && !bias) {
      if (attn_kernel() >= 3 && lg_cuda_attn_wgmma_ok(be)) {
        int ns = attn_split_env();
        return lg_cuda_attn_wgmma(be, p, ns < 0 ? 0 : ns, attn_kernel() - 3);
      }
      if (attn_kernel() == 2) {
        if (attn_warps() == 2) return launch_flash2<128, 2>(c, p, B);
        if (attn_warps() == 3) return launch_flash2<128, 3>(c, p, B);
        return launch_flash2<128, 4>(c, p, B);
      }
      if (attn_warps() == 8) return launch_flash<128, 8, 1>(be, p, B);
      if (attn_warps() == 6) return launch_flash<128, 6, 2>(be, p, B);
      return launch_flash<128, 4, 3>(be, p, B);
    }
    if (bf && aligned && p.dh == 64 && !bias) return launch_flash<64, 4, 3>(be, p, B);
    LG_CHECK(p.dh <= 1024, LG_ENOTSUP, LG_CUDA_MOD, "attention: head dim %d over 1024", p.dh);
    {
      /* one warp per query: head dims up to 256 (VAE-free paths) or 1024 (the Wan VAE's
       * single-head middle attention, C = 384) */
      int warps = p.Lq * p.nh;
      dim3 grid((unsigned)((warps + 3) / 4), (unsigned)B);
      if (p.dh <= 256)
        k_attn_ref<8><<<grid, 128, 0, c->stream>>>(p);
      else
        k_attn_ref<32><<<grid, 128, 0, c->stream>>>(p);
      CUDA_LAUNCH_CHECK();
    }
  }
  return 0;
fail:
  return err;
}

int lg_cuda_attention(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                      const lg_tensor *v, const int32_t *kv_len, float scale) {
  return attention_impl(be, o, q, k, v, NULL, kv_len, scale);
}

int lg_cuda_attention_bias(lg_backend *be, lg_tensor *o, const lg_tensor *q, const lg_tensor *k,
                           const lg_tensor *v, const lg_tensor *bias, const int32_t *kv_len,
                           float scale) {
  if (!bias) {
    LG_ERR(LG_CUDA_MOD, "attention_bias: bias is NULL");
    return LG_EINVAL;
  }
  return attention_impl(be, o, q, k, v, bias, kv_len, scale);
}

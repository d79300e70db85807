/* cuda_attention_wgmma.cu: the Hopper flash-attention kernel for head dim 128, bf16 (built
 * for sm_90a alone: wgmma and setmaxnreg). FlashAttention-3 style: one block of 3 warpgroups
 * per 128 queries of one head of one batch row; warpgroup 0 is the producer (cp.async of Q and
 * of BN-key K/V tiles into 128-byte-swizzled shared memory, STAGES deep, completion and
 * release through mbarriers, K and V each by two warps), warpgroups 1 and 2 are consumers
 * owning 64 query rows each: S = Q K^T by wgmma from shared memory (m64n128k16, fp32), online
 * softmax in registers (exp2 form), P converted to bf16 in registers and fed to O += P V as
 * wgmma's register A operand. Variants (template flags): OVL issues S of tile j+1 before P V of
 * tile j so the softmax overlaps the products; PP makes the consumers take turns issuing; TMA
 * loads every full K/V tile with cp.async.bulk.tensor (one thread, two 64-dim boxes of a tensor
 * map per K and V, mbarrier expect_tx) and only the tail tile by cp.async (TMA would read keys
 * past kv_len, which the cache may hold as anything), and Q too (zero-filled past Lq; issued as
 * soon as the previous item's last S is done, LG_ATTN_TMA_Q=0 for cp.async). BN (keys per
 * tile) 128, or 176 for the experimental variant 6 (S by m64n176k16 into 88 registers, P V in
 * 11 k-steps, K/V tiles of 44 KB so only 2 stages fit beside Q: 208 KB; consumers 232
 * registers, producer 40).
 * Default (cuda_attention.cu, kernel 10): 3 stages, OVL, PP, TMA, automatic key split.
 * Keys at or past kv_len[b] are zero-filled and masked, queries past Lq zero-filled and not
 * stored; kv_len 0 writes zeros. Persistent blocks (at most one per SM) take items (row, head,
 * query tile, key split) in turn, loading the next item's Q and K/V while finishing the
 * current one; the automatic key split applies to the last, part-full wave's units only
 * (partials merged by k_wg_combine).
 * q/k/v/o [B, L, heads, 128] with any 16-byte-aligned strides (K/V batch stride 0 allowed).
 * Runs on the backend's thread. */
#include "cuda_attention.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdlib.h>
#include <string.h>

#define WG_BM 128     /* queries per block (2 consumer warpgroups x 64) */
#define WG_BN 128     /* keys per tile (variants 0-5; variant 6: 176) */
#define WG_TILE 32768 /* bytes of one 128 x 128 bf16 tile (Q; K/V tiles are BN x 128) */

/* ---------------------------------------------------------------- device helpers (sm_90a) */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t wg_smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void wg_cp16(uint32_t dst, const void *src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void wg_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
/* cp.async writes are generic-proxy writes; wgmma reads through the async proxy */
__device__ __forceinline__ void wg_fence_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile("{\n"
               ".reg .pred done;\n"
               "WG_WAIT_%=:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra WG_WAIT_%=;\n"
               "}\n" ::"r"(bar),
               "r"(parity)
               : "memory");
}
/* TMA (variant TMA): arm the full barrier with the bytes to come, then one 128-key x 64-dim box
 * of a 4-d tensor map {dims 128, heads, keys, rows} into 128-byte-swizzled shared memory */
__device__ __forceinline__ void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
  asm volatile(
      "{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
      "r"(bytes)
      : "memory");
}
__device__ __forceinline__ void wg_tma_load(uint32_t dst, const CUtensorMap *map, int d0, int h,
                                            int key, int row, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
               "[%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
               "l"((uint64_t)map), "r"(d0), "r"(h), "r"(key), "r"(row), "r"(bar)
               : "memory");
}
/* wgmma shared-memory descriptor, 128-byte swizzle (tiles 1024-byte aligned) */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = (uint64_t)((addr & 0x3FFFF) >> 4);
  d |= (uint64_t)((lbo & 0x3FFFF) >> 4) << 16;
  d |= (uint64_t)((sbo & 0x3FFFF) >> 4) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}
__device__ __forceinline__ void wg_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit_mma() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait_mma() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keep the compiler from moving accumulator accesses across wgmma issue / wait */
template <int N> __device__ __forceinline__ void wg_reg_fence(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile("" : "+f"(d[i])::"memory");
}
template <int N> __device__ __forceinline__ void wg_reg_fence_u(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile("" : "+r"(r[i])::"memory");
}
/* d[64x128] (+)= A[64x16] (shared, K-major) * B[16x128] (shared, K-major: [n][k]) */
__device__ __forceinline__ void wg_mma_ss(float (&d)[64], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, "
               "%7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
               "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, "
               "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
               "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
                 "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
                 "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
                 "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
                 "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
                 "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
                 "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
                 "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]),
                 "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),
                 "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "l"(da), "l"(db), "r"(acc));
}
/* d[64x176] (+)= A[64x16] (shared, K-major) * B[16x176] (shared, K-major: [n][k]) */
__device__ __forceinline__ void wg_mma_ss(float (&d)[88], uint64_t da, uint64_t db, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, "
      "%81, %82, %83, %84, %85, %86, %87}, %88, %89, p, 1, 1, 0, "
      "0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
        "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
        "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
        "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "l"(da), "l"(db), "r"(acc));
}
/* d[64x128] += A[64x16] (registers) * B[16x128] (shared, N-major: [k][n], transposed) */
__device__ __forceinline__ void wg_mma_rs(float (&d)[64], const uint32_t *a, uint64_t db) {
  asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, "
               "%7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
               "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, "
               "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
               "%56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
                 "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
                 "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
                 "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
                 "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
                 "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
                 "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
                 "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]),
                 "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),
                 "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
__device__ __forceinline__ uint32_t wg_pack(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *(uint32_t *)&h;
}
#endif

/* Tensor maps of K and V for the TMA variant (unused otherwise): dims {128, heads, keys, rows},
 * box {64, 1, 128, 1}, 128-byte swizzle; rowk / rowv: 1 when the row index is the batch row,
 * 0 for batch stride 0. */
struct wg_maps {
  CUtensorMap k, v, q;
  int rowk, rowv, rowq;
  int hasq; /* Q by TMA too (boxes of 128 queries; rows past Lq zero-filled) */
};

/* Shared memory: Q [2 halves of 64 dims][128 rows][128 B], then K[STAGES], V[STAGES] alike
 * ([2 halves][BN rows][128 B], BN * 256 bytes: BN a multiple of 8, so every half stays 1024-byte
 * aligned), then the mbarriers (Q, K full, V full, K free, V free); row r's 16-byte chunk c of a
 * half sits at chunk c ^ (r % 8). */
template <int BN> __host__ __device__ constexpr uint32_t wg_kv_tile() {
  return (uint32_t)BN * 256;
}
template <int STAGES, int BN = WG_BN> constexpr size_t wg_smem_bytes() {
  /* Q, K and V stages, barriers, alignment slack */
  return (size_t)WG_TILE + (size_t)2 * STAGES * wg_kv_tile<BN>() + 256 + 1024;
}

/* BN: keys per tile, 128 or 176 (S by m64n176k16, P V in 11 k-steps; the consumers then hold
 * 88 + 64 + 44 registers of S, O and P: setmaxnreg 232 for them and 40 for the producer, 2 * 128
 * * 232 + 128 * 40 = 64512 = 384 * 168 as launched; ptxas spills with 224 (consumers) or 24
 * (producer), not with 232 / 40) */
template <int STAGES, bool SPLIT, bool OVL, bool PP, bool TMA, int BN = WG_BN>
__global__ void __launch_bounds__(384, 1)
    k_flash_wg(const __grid_constant__ att_params p, const __grid_constant__ wg_maps tm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(BN == 128 || BN == 176, "key tile: 128 or 176");
  constexpr uint32_t KV_TILE = wg_kv_tile<BN>();
  extern __shared__ unsigned char wg_smem_raw[];
  const uint32_t raw = wg_smem_u32(wg_smem_raw);
  const uint32_t sQ = (raw + 1023u) & ~1023u;
  const uint32_t sK = sQ + WG_TILE, sV = sK + STAGES * KV_TILE;
  const uint32_t bars = sV + STAGES * KV_TILE;
  const uint32_t barQ = bars;
  auto barK = [&](int s) { return bars + 8u * (1 + s); };
  auto barV = [&](int s) { return bars + 8u * (1 + STAGES + s); };
  auto barEK = [&](int s) { return bars + 8u * (1 + 2 * STAGES + s); };
  auto barEV = [&](int s) { return bars + 8u * (1 + 3 * STAGES + s); };

  const uint32_t barQE = bars + 8u * (1 + 4 * STAGES); /* Q free: the consumer warps' last S */

  const int tid = threadIdx.x, wg = tid / 128;
  /* item -> unit (row b, head h, query tile) and key split (-1: the whole unit): items below
   * p.whole are units u0.., the rest p.nsplit parts of the units after them; the block takes
   * items blockIdx.x, + gridDim.x, ... (persistent when the grid is smaller than p.nitems) */
  struct item_t {
    int unit, split, h, b, q0, n, t_beg, ntile;
  };
  auto item_of = [&](int item) {
    item_t r;
    const int j = item - p.whole;
    r.unit = j < 0 ? p.u0 + item : p.u0 + p.whole + j / p.nsplit;
    r.split = j < 0 ? -1 : j % p.nsplit;
    r.h = (r.unit / p.qt) % p.nh, r.b = r.unit / (p.qt * p.nh);
    r.q0 = (r.unit % p.qt) * WG_BM;
    r.n = p.kv_len[r.b];
    const int nt = (r.n + BN - 1) / BN;
    r.t_beg = j < 0 ? 0 : r.split * p.tps;
    const int t_end = j < 0 ? nt : min(nt, r.t_beg + p.tps);
    r.ntile = t_end > r.t_beg ? t_end - r.t_beg : 0;
    return r;
  };

  const bool tq = TMA && tm.hasq; /* Q by TMA: one arrival with its bytes */
  if (tid == 0) {
    mbar_init(barQ, tq ? 1 : 64);
    mbar_init(barQE, 8);
    for (int s = 0; s < STAGES; s++) {
      mbar_init(barK(s), 64); /* the producer's K warps */
      mbar_init(barV(s), 64); /* its V warps */
      mbar_init(barEK(s), 8); /* one arrival per consumer warp */
      mbar_init(barEV(s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  lg_pdl_wait();

  if (wg == 0) {
    /* ------------------------------------------------ producer warpgroup: warps 0-1 load Q
     * and the K tiles, warps 2-3 the V tiles; each keeps two tiles in flight, signals a tile
     * once its own copies of it have landed, and refills a stage once every consumer warp has
     * released it */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(BN > 128 ? 40 : 56));
    const bool isv = tid >= 64;
    const int pt = tid % 64, r4 = pt / 16, c = pt % 16; /* 4 rows x 16 chunks per pass */
    /* rows 8j + r4 and 8j + 4 + r4 of pass pair j: their swizzled offsets within 8 rows */
    const uint32_t off0 =
        (uint32_t)(c / 8) * (BN * 128) + (uint32_t)r4 * 128 + (uint32_t)(((c % 8) ^ r4) * 16);
    const uint32_t off1 = (uint32_t)(c / 8) * (BN * 128) + (uint32_t)(r4 + 4) * 128 +
                          (uint32_t)(((c % 8) ^ (r4 + 4)) * 16);
    /* Q's halves are WG_BM rows apart, K/V's BN */
    const uint32_t qo0 = off0 - (uint32_t)(c / 8) * ((BN - WG_BM) * 128);
    const uint32_t qo1 = off1 - (uint32_t)(c / 8) * ((BN - WG_BM) * 128);
    const int64_t rs = isv ? p.vl : p.kl;
    const uint32_t base = isv ? sV : sK;
    int gt = 0, qi = 0; /* K/V tiles and Q tiles loaded so far by this block */
    for (int item = blockIdx.x; item < p.nitems; item += gridDim.x) {
      const item_t u = item_of(item);
      if (u.ntile == 0) continue;
      const int b = u.b, h = u.h, n = u.n, t_beg = u.t_beg, ntile = u.ntile;
      const __nv_bfloat16 *src = isv ? (const __nv_bfloat16 *)p.v + b * p.vb + h * p.vh + c * 8
                                     : (const __nv_bfloat16 *)p.k + b * p.kb + h * p.kh + c * 8;
      /* Q of this item, once every consumer warp has issued its last S of the previous one */
      auto load_q = [&]() {
        if (qi > 0) mbar_wait(barQE, (qi - 1) & 1);
        const __nv_bfloat16 *qp = (const __nv_bfloat16 *)p.q + b * p.qb + h * p.qh + c * 8;
#pragma unroll 4
        for (int j = 0; j < 16; j++) {
          int qa = u.q0 + j * 8 + r4, qb2 = qa + 4;
          wg_cp16(sQ + qo0 + j * 1024, qa < p.Lq ? qp + (int64_t)qa * p.ql : qp,
                  qa < p.Lq ? 16 : 0);
          wg_cp16(sQ + qo1 + j * 1024, qb2 < p.Lq ? qp + (int64_t)qb2 * p.ql : qp,
                  qb2 < p.Lq ? 16 : 0);
        }
        wg_commit();
      };
      if (TMA) {
        /* full tiles: one thread arms the barrier and issues two TMA boxes, the other 63 of
         * the pair arrive; the tail tile (keys past kv_len zero-filled) by cp.async as below.
         * Q: by TMA before tile q_it (below), or (LG_ATTN_TMA_Q=0) by cp.async after tile 0. */
        const CUtensorMap *map = isv ? &tm.v : &tm.k;
        const int mrow = (isv ? tm.rowv : tm.rowk) ? b : 0;
        /* Q by TMA goes out just before tile q_it, whose stage frees when the last S of the
         * previous item is done, as Q's buffer does: the tiles before it are not held up */
        const int q_it = min(STAGES - 1, ntile - 1);
        for (int it = 0; it < ntile; it++, gt++) {
          const int s = gt % STAGES, key0 = (t_beg + it) * BN;
          const uint32_t fb = isv ? barV(s) : barK(s), dst = base + s * KV_TILE;
          if (tq && !isv && pt == 0 && it == q_it) {
            if (qi > 0) mbar_wait(barQE, (qi - 1) & 1);
            mbar_arrive_tx(barQ, WG_TILE);
            wg_tma_load(sQ, &tm.q, 0, h, u.q0, tm.rowq ? b : 0, barQ);
            wg_tma_load(sQ + WG_BM * 128, &tm.q, 64, h, u.q0, tm.rowq ? b : 0, barQ);
          }
          if (gt >= STAGES) mbar_wait(isv ? barEV(s) : barEK(s), ((gt / STAGES) + 1) & 1);
          if (key0 + BN <= n) {
            if (pt == 0) {
              mbar_arrive_tx(fb, KV_TILE);
              wg_tma_load(dst, map, 0, h, key0, mrow, fb);
              wg_tma_load(dst + BN * 128, map, 64, h, key0, mrow, fb);
            } else {
              mbar_arrive(fb);
            }
          } else {
#pragma unroll 4
            for (int j = 0; j < BN / 8; j++) {
              int ka = key0 + j * 8 + r4, kb2 = ka + 4;
              wg_cp16(dst + off0 + j * 1024, ka < n ? src + (int64_t)ka * rs : src,
                      ka < n ? 16 : 0);
              wg_cp16(dst + off1 + j * 1024, kb2 < n ? src + (int64_t)kb2 * rs : src,
                      kb2 < n ? 16 : 0);
            }
            wg_commit();
            wg_wait_group<0>();
            wg_fence_async();
            mbar_arrive(fb);
          }
          if (it == 0 && !isv && !tq) {
            load_q();
            wg_wait_group<0>();
            wg_fence_async();
            mbar_arrive(barQ);
          }
        }
      } else {
        /* two tiles in flight per warp pair: tile it-1 is signalled once tile it is issued */
        if (!isv) load_q();
        auto signal = [&](int g) {
          wg_fence_async();
          mbar_arrive(isv ? barV(g % STAGES) : barK(g % STAGES));
        };
        for (int it = 0; it < ntile; it++, gt++) {
          const int s = gt % STAGES, key0 = (t_beg + it) * BN;
          if (gt >= STAGES) mbar_wait(isv ? barEV(s) : barEK(s), ((gt / STAGES) + 1) & 1);
          const uint32_t dst = base + s * KV_TILE;
#pragma unroll 4
          for (int j = 0; j < BN / 8; j++) {
            int ka = key0 + j * 8 + r4, kb2 = ka + 4;
            wg_cp16(dst + off0 + j * 1024, ka < n ? src + (int64_t)ka * rs : src, ka < n ? 16 : 0);
            wg_cp16(dst + off1 + j * 1024, kb2 < n ? src + (int64_t)kb2 * rs : src,
                    kb2 < n ? 16 : 0);
          }
          wg_commit();
          if (it > 0) {
            wg_wait_group<1>();
            if (!isv && it == 1) { /* Q's group landed with tile 0's */
              wg_fence_async();
              mbar_arrive(barQ);
            }
            signal(gt - 1);
          }
        }
        wg_wait_group<0>();
        if (!isv && ntile == 1) {
          wg_fence_async();
          mbar_arrive(barQ);
        }
        signal(gt - 1);
      }
      qi++;
    }
    return;
  }

  /* -------------------------------------------------- consumer warpgroups */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(BN > 128 ? 232 : 224));
  const int cw = wg - 1, lt = tid % 128, warp = lt / 32, lane = lt % 32;
  const int g = lane / 4, t = lane % 4;
  float o[64], sc[BN / 2];
  uint32_t pf[BN / 4]; /* P as the A operand: BN / 16 k-steps of 16 keys, 4 registers each */
  float m0, m1, l0, l1, a0 = 1.f, a1 = 1.f;
  int n = 0; /* the current item's keys */
  const float sl2 = p.scale_log2;
  /* V is N-major (transposed B): leading offset = between 64-dim halves, stride = between
   * 8-key groups */
  const uint32_t vlbo = p.wg_dbg & 1 ? 1024 : BN * 128, vsbo = p.wg_dbg & 1 ? BN * 128 : 1024;
  const uint32_t qrow = sQ + (uint32_t)cw * 64 * 128;
  /* S = Q K^T of stage s into sc (issued, not waited for) */
  auto issue_qk = [&](int s) {
    const uint32_t kt = sK + s * KV_TILE;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      uint32_t qoff = (uint32_t)(kk / 4) * (WG_BM * 128) + (uint32_t)(kk % 4) * 32;
      uint32_t koff = (uint32_t)(kk / 4) * (BN * 128) + (uint32_t)(kk % 4) * 32;
      wg_mma_ss(sc, wg_desc(qrow + qoff, 16, 1024), wg_desc(kt + koff, 16, 1024), kk > 0);
    }
    wg_commit_mma();
  };
  /* O += P V of stage s (issued, not waited for) */
  auto issue_pv = [&](int s) {
    const uint32_t vt = sV + s * KV_TILE;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++)
      wg_mma_rs(o, pf + 4 * kk, wg_desc(vt + (uint32_t)kk * 2048, vlbo, vsbo));
    wg_commit_mma();
  };
  /* online softmax of sc (keys key0..key0+BN-1, masked past n): new running max, the factor
   * a0/a1 that rescales what came before, exponentials in place, row sums */
  auto softmax = [&](int key0) {
    if (key0 + BN > n) {
#pragma unroll
      for (int nb = 0; nb < BN / 8; nb++) {
        int key = key0 + nb * 8 + 2 * t;
        if (key >= n) sc[4 * nb + 0] = sc[4 * nb + 2] = -INFINITY;
        if (key + 1 >= n) sc[4 * nb + 1] = sc[4 * nb + 3] = -INFINITY;
      }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
      mx0 = fmaxf(mx0, fmaxf(sc[4 * nb + 0], sc[4 * nb + 1]));
      mx1 = fmaxf(mx1, fmaxf(sc[4 * nb + 2], sc[4 * nb + 3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0 * sl2), mn1 = fmaxf(m1, mx1 * sl2);
    const float base0 = mn0 == -INFINITY ? 0.f : mn0, base1 = mn1 == -INFINITY ? 0.f : mn1;
    a0 = exp2f(m0 - base0), a1 = exp2f(m1 - base1);
    m0 = mn0, m1 = mn1;
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < BN / 8; nb++) {
      sc[4 * nb + 0] = exp2f(fmaf(sc[4 * nb + 0], sl2, -base0));
      sc[4 * nb + 1] = exp2f(fmaf(sc[4 * nb + 1], sl2, -base0));
      sc[4 * nb + 2] = exp2f(fmaf(sc[4 * nb + 2], sl2, -base1));
      sc[4 * nb + 3] = exp2f(fmaf(sc[4 * nb + 3], sl2, -base1));
      s0 += sc[4 * nb + 0] + sc[4 * nb + 1];
      s1 += sc[4 * nb + 2] + sc[4 * nb + 3];
    }
    l0 = l0 * a0 + s0, l1 = l1 * a1 + s1;
  };
  /* O *= a (O holds every finished P V), then P = bf16(sc) */
  auto rescale_pack = [&]() {
#pragma unroll
    for (int nb = 0; nb < 16; nb++) {
      o[4 * nb + 0] *= a0, o[4 * nb + 1] *= a0;
      o[4 * nb + 2] *= a1, o[4 * nb + 3] *= a1;
      pf[(nb / 2) * 4 + (nb % 2) * 2 + 0] = wg_pack(sc[4 * nb + 0], sc[4 * nb + 1]);
      pf[(nb / 2) * 4 + (nb % 2) * 2 + 1] = wg_pack(sc[4 * nb + 2], sc[4 * nb + 3]);
    }
#pragma unroll
    for (int nb = 16; nb < BN / 8; nb++) { /* BN 176: P's key blocks past the 16 of O's dims */
      pf[(nb / 2) * 4 + (nb % 2) * 2 + 0] = wg_pack(sc[4 * nb + 0], sc[4 * nb + 1]);
      pf[(nb / 2) * 4 + (nb % 2) * 2 + 1] = wg_pack(sc[4 * nb + 2], sc[4 * nb + 3]);
    }
  };
  /* ping-pong (PP): the two consumer warpgroups take turns issuing their wgmmas (named
   * barriers 1 and 2), so one's softmax runs while the other's products fill the tensor cores */
  auto turn_begin = [&]() {
    if (PP) asm volatile("bar.sync %0, 256;\n" ::"r"(1 + cw) : "memory");
  };
  auto turn_end = [&]() {
    if (PP) asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - cw) : "memory");
  };
  int gt = 0, qi = 0; /* K/V tiles and Q tiles consumed so far by this block */
  for (int item = blockIdx.x; item < p.nitems; item += gridDim.x) {
    const item_t u = item_of(item);
    const int t_beg = u.t_beg, ntile = u.ntile;
    n = u.n;
#pragma unroll
    for (int i = 0; i < 64; i++)
      o[i] = 0.f;
    m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    /* stage and phase of this item's tile it */
    auto stg = [&](int it) { return (gt + it) % STAGES; };
    auto par = [&](int it) { return (uint32_t)(((gt + it) / STAGES) & 1); };
    /* after the item's last S: Q may be refilled */
    auto q_free = [&](int it) {
      if (it == ntile - 1 && lane == 0) mbar_arrive(barQE);
    };
    if (ntile > 0) {
      mbar_wait(barQ, qi & 1);
      if (PP && cw == 1 && qi == 0) turn_end(); /* warpgroup 1 goes first */
      if (OVL) {
        /* S of tile it+1 and P V of tile it in flight together; the softmax of tile it+1 runs
         * while P V of tile it is still on the tensor cores */
        mbar_wait(barK(stg(0)), par(0));
        turn_begin();
        issue_qk(stg(0));
        turn_end();
        wg_wait_mma<0>();
        wg_reg_fence(sc);
        if (lane == 0) mbar_arrive(barEK(stg(0)));
        q_free(0);
        softmax(t_beg * BN);
        rescale_pack();
        for (int it = 1; it < ntile; it++) {
          const int s = stg(it), sp = stg(it - 1);
          mbar_wait(barK(s), par(it));
          mbar_wait(barV(sp), par(it - 1));
          turn_begin();
          issue_qk(s);
          issue_pv(sp);
          turn_end();
          wg_wait_mma<1>(); /* S done; P V may still run */
          wg_reg_fence(sc);
          if (lane == 0) mbar_arrive(barEK(s));
          q_free(it);
          softmax((t_beg + it) * BN);
          wg_wait_mma<0>();
          wg_reg_fence(o);
          wg_reg_fence_u(pf);
          if (lane == 0) mbar_arrive(barEV(sp));
          rescale_pack();
        }
        const int sl = stg(ntile - 1);
        mbar_wait(barV(sl), par(ntile - 1));
        turn_begin();
        issue_pv(sl);
        turn_end();
        wg_wait_mma<0>();
        wg_reg_fence(o);
        wg_reg_fence_u(pf);
        if (lane == 0) mbar_arrive(barEV(sl));
      } else {
        for (int it = 0; it < ntile; it++) {
          const int s = stg(it);
          mbar_wait(barK(s), par(it));
          issue_qk(s);
          wg_wait_mma<0>();
          wg_reg_fence(sc);
          if (lane == 0) mbar_arrive(barEK(s));
          q_free(it);
          softmax((t_beg + it) * BN);
          rescale_pack();
          mbar_wait(barV(s), par(it));
          issue_pv(s);
          wg_wait_mma<0>();
          wg_reg_fence(o);
          wg_reg_fence_u(pf);
          if (lane == 0) mbar_arrive(barEV(s));
        }
      }
      gt += ntile, qi++;
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
    const int rr = cw * 64 + warp * 16 + g, r0 = u.q0 + rr, r1 = r0 + 8;
    if (SPLIT && u.split >= 0) {
      int64_t row0 = ((int64_t)(u.unit - p.u0 - p.whole) * p.nsplit + u.split) * WG_BM + rr,
              row1 = row0 + 8;
#pragma unroll
      for (int nb = 0; nb < 16; nb++) {
        int col = nb * 8 + 2 * t;
        if (r0 < p.Lq)
          *(float2 *)(p.part_o + row0 * 128 + col) =
              make_float2(o[4 * nb] * i0, o[4 * nb + 1] * i0);
        if (r1 < p.Lq)
          *(float2 *)(p.part_o + row1 * 128 + col) =
              make_float2(o[4 * nb + 2] * i1, o[4 * nb + 3] * i1);
      }
      if (t == 0) {
        if (r0 < p.Lq) *(float2 *)(p.part_ml + 2 * row0) = make_float2(m0, l0);
        if (r1 < p.Lq) *(float2 *)(p.part_ml + 2 * row1) = make_float2(m1, l1);
      }
      continue;
    }
    __nv_bfloat16 *op = (__nv_bfloat16 *)p.o + u.b * p.ob + u.h * p.oh;
#pragma unroll
    for (int nb = 0; nb < 16; nb++) {
      int col = nb * 8 + 2 * t;
      if (r0 < p.Lq)
        *(__nv_bfloat162 *)(op + (int64_t)r0 * p.ol + col) =
            __floats2bfloat162_rn(o[4 * nb] * i0, o[4 * nb + 1] * i0);
      if (r1 < p.Lq)
        *(__nv_bfloat162 *)(op + (int64_t)r1 * p.ol + col) =
            __floats2bfloat162_rn(o[4 * nb + 2] * i1, o[4 * nb + 3] * i1);
    }
  }
#endif
}

/* The key-split combine: one warp per query row of a split unit (16 blocks of 8 rows per unit
 * u0 + blockIdx.x / 16): lane s < nsplit (<= 8) reads partial s's (max, sum), the weights come
 * by shuffles, then every lane merges 4 dims of the nsplit normalised partials into o (bf16). */
__global__ void __launch_bounds__(256) k_wg_combine(const __grid_constant__ att_params p) {
  const int ui = (int)blockIdx.x / 16, r = ((int)blockIdx.x % 16) * 8 + (int)threadIdx.x / 32;
  const int lane = threadIdx.x % 32, unit = p.u0 + ui, ns = p.nsplit;
  lg_pdl_wait();
  const int h = (unit / p.qt) % p.nh, b = unit / (p.qt * p.nh), q0 = (unit % p.qt) * WG_BM;
  if (q0 + r >= p.Lq) return;
  const int64_t r0 = (int64_t)ui * ns * WG_BM + r; /* partial s: row r0 + s * 128 */
  const float2 ml = lane < ns ? *(const float2 *)(p.part_ml + 2 * (r0 + (int64_t)lane * WG_BM))
                              : make_float2(-INFINITY, 0.f);
  float M = ml.x; /* over the whole warp: every lane needs the max and the sum */
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  const float base = M == -INFINITY ? 0.f : M;
  const float w = lane < ns ? ml.y * exp2f(ml.x - base) : 0.f;
  float L = w;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    L += __shfl_xor_sync(0xffffffffu, L, o);
  float4 o4[8];
#pragma unroll
  for (int s = 0; s < 8; s++)
    if (s < ns) o4[s] = *(const float4 *)(p.part_o + (r0 + (int64_t)s * WG_BM) * 128 + 4 * lane);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int s = 0; s < 8; s++) {
    const float ws = __shfl_sync(0xffffffffu, w, s);
    if (s < ns)
      acc[0] += ws * o4[s].x, acc[1] += ws * o4[s].y, acc[2] += ws * o4[s].z,
          acc[3] += ws * o4[s].w;
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;
  __nv_bfloat16 *op =
      (__nv_bfloat16 *)p.o + b * p.ob + (int64_t)(q0 + r) * p.ol + h * p.oh + 4 * lane;
  *(__nv_bfloat162 *)op = __floats2bfloat162_rn(acc[0] * inv, acc[1] * inv);
  *(__nv_bfloat162 *)(op + 2) = __floats2bfloat162_rn(acc[2] * inv, acc[3] * inv);
}

/* 1 when this translation unit's sm_90a image is the one the device loaded */
__global__ void k_wg_probe(int *out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

template <int ST, bool OVL, bool PP, bool TMA = false, int BN = WG_BN>
static int wg_set_attr(void) {
  int err = 0;
  CUDA_CHECK(cudaFuncSetAttribute(k_flash_wg<ST, false, OVL, PP, TMA, BN>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)wg_smem_bytes<ST, BN>()));
  CUDA_CHECK(cudaFuncSetAttribute(k_flash_wg<ST, true, OVL, PP, TMA, BN>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)wg_smem_bytes<ST, BN>()));
  return 0;
fail:
  return err;
}

bool lg_cuda_attn_wgmma_ok(lg_backend *be) {
  static int ok = -1;
  if (ok < 0 && lg_cu(be)->capturing) return false; /* the probe syncs: not while capturing */
  if (ok < 0) {
    int err = 0, dev = 0, major = 0, minor = 0, h = 0, *d = NULL;
    ok = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0) return false;
    CUDA_CHECK(cudaMalloc(&d, sizeof(int)));
    k_wg_probe<<<1, 1>>>(d);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost));
    LG_TRY((wg_set_attr<2, true, false>()));
    LG_TRY((wg_set_attr<3, true, false>()));
    LG_TRY((wg_set_attr<2, false, false>()));
    LG_TRY((wg_set_attr<3, true, true>()));
    LG_TRY((wg_set_attr<2, true, true>()));
    LG_TRY((wg_set_attr<3, true, false, true>()));
    LG_TRY((wg_set_attr<2, true, false, true, 176>()));
    LG_TRY((wg_set_attr<3, true, true, true>()));
    LG_TRY((wg_set_attr<2, true, true, true, 176>()));
    ok = h == 1;
    if (!ok) LG_WARN(LG_CUDA_MOD, "attention: the sm_90a image was not loaded; no wgmma kernel");
  fail:
    if (d) cudaFree(d);
    if (err) LG_WARN(LG_CUDA_MOD, "attention: wgmma probe failed (%d); mma.sync kernel used", err);
  }
  return ok == 1;
}

template <int ST, bool OVL, bool PP, bool TMA = false, int BN = WG_BN>
static void wg_launch(const att_params &p, const wg_maps &m, dim3 grid, cudaStream_t st) {
  lg_cuda_launch_pdl(p.nsplit > 1 ? k_flash_wg<ST, true, OVL, PP, TMA, BN>
                                  : k_flash_wg<ST, false, OVL, PP, TMA, BN>,
                     grid, dim3(384), wg_smem_bytes<ST, BN>(), st, p, m);
}

/* The TMA variants' tensor map of K or V ([B, L, heads, 128] bf16, strides in elements; batch
 * stride 0 allowed; boxes of bn keys x 64 dims): false when the driver entry point is missing or
 * the strides do not fit a tensor map (the caller then runs the cp.async variant). */
static bool wg_encode_map(CUtensorMap *m, int *row, const void *base, int64_t sb, int64_t sl,
                          int64_t sh, int B, int L, int nh, int bn) {
  static PFN_cuTensorMapEncodeTiled_v12000 enc = NULL;
  static int tried = 0;
  if (!tried) {
    cudaDriverEntryPointQueryResult q;
    void *fn = NULL;
    tried = 1;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      enc = (PFN_cuTensorMapEncodeTiled_v12000)fn;
  }
  if (!enc || L < 1 || nh < 1) return false;
  *row = sb != 0;
  cuuint64_t dims[4] = {128, (cuuint64_t)nh, (cuuint64_t)L, (cuuint64_t)(sb ? B : 1)};
  cuuint64_t str[3] = {(cuuint64_t)sh * 2, (cuuint64_t)sl * 2,
                       (cuuint64_t)(sb ? sb : sl * (int64_t)L) * 2};
  cuuint32_t box[4] = {64, 1, (cuuint32_t)bn, 1}, es[4] = {1, 1, 1, 1};
  return enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (void *)base, dims, str, box, es,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* Key splits of the wgmma kernel. One block per SM, so the last wave of units is often
 * part-full: the automatic choice runs the whole waves unsplit and splits only the units of the
 * last wave (in the same launch, after the whole ones), in as many parts (1..8, at least 4 key
 * tiles each) as minimise their cost in microseconds: waves x (key tiles per item x 1.55 + 3
 * per item), plus for a split 3 (the combine's launch) and the fp32 partials (units x splits x
 * rows x 520 bytes) written by the kernel and read by the combine at ~2.6 TB/s. Fitted to
 * Nsight Compute times on the H100 (1.3B chunk, 9360 keys, 12 heads, 132 SMs) with the split
 * in a second launch: the last wave of 24 units (1 row) split 5 ways took 32 + 4 us against
 * ~118 us whole, 48 units (2 rows) 5 ways 60 + 6 us, 96 units (4 rows) 4 ways 105 + 11 us
 * against ~110 us whole; in one launch the 4-row tail is split 4 ways. */
static int wg_pick_split(int units, int slots, int ntiles, int rows_per_unit) {
  int best = 1;
  double best_cost = 1e30;
  static int tail_env = -1; /* LG_ATTN_TAIL_SPLIT=N forces N parts for the tail (A/B runs) */
  if (tail_env < 0) {
    const char *e = getenv("LG_ATTN_TAIL_SPLIT");
    tail_env = e ? atoi(e) : 0;
  }
  if (tail_env > 0) return tail_env > 8 ? 8 : tail_env;
  for (int ns = 1; ns <= 8; ns++) {
    if (ns > 1 && (ntiles + ns - 1) / ns < 4) break;
    double waves = (double)(((int64_t)units * ns + slots - 1) / slots);
    double cost = waves * (((ntiles + ns - 1) / ns) * 1.55 + 3.0) +
                  (ns > 1 ? 3.0 + (double)units * ns * rows_per_unit * 520.0 / 2.6e6 : 0.0);
    if (cost < best_cost - 1e-9) best = ns, best_cost = cost;
  }
  return best;
}

/* Scratch of a key split over `rows` = units * splits * 128 partial rows: O fp32 [rows][128]
 * (rounded up to 256 bytes), then (m, l) fp32 [rows][2]. */
static size_t wg_split_obytes(size_t rows) {
  return (rows * 128 * 4 + 255) & ~(size_t)255;
}
static size_t wg_split_bytes(size_t rows) {
  return wg_split_obytes(rows) + rows * 8;
}

static void wg_launch_variant(const att_params &p, const wg_maps &m, dim3 grid, cudaStream_t st,
                              int variant) {
  if (variant == 8)
    wg_launch<2, true, true, true, 176>(p, m, grid, st);
  else if (variant == 7)
    wg_launch<3, true, true, true>(p, m, grid, st);
  else if (variant == 6)
    wg_launch<2, true, false, true, 176>(p, m, grid, st);
  else if (variant == 5)
    wg_launch<3, true, false, true>(p, m, grid, st);
  else if (variant == 1)
    wg_launch<3, true, false>(p, m, grid, st);
  else if (variant == 2)
    wg_launch<2, false, false>(p, m, grid, st);
  else if (variant == 3)
    wg_launch<3, true, true>(p, m, grid, st);
  else if (variant == 4)
    wg_launch<2, true, true>(p, m, grid, st);
  else
    wg_launch<2, true, false>(p, m, grid, st);
}

/* Persistent blocks: at most one per SM, each taking items blockIdx.x, + gridDim.x, ..., so a
 * block loads its next item's Q and K/V while it finishes the current one.
 * LG_ATTN_PERSIST=0 launches one block per item; tests cap the grid lower
 * (lg_cuda_attn_set_grid). */
static int g_wg_grid = -1; /* -1: the environment; 0: one block per item; N: at most N */
extern "C" void lg_cuda_attn_set_grid(int blocks) {
  g_wg_grid = blocks >= 0 ? blocks : -1;
}
static int wg_grid(int sms, int items) {
  static int env = -1;
  if (env < 0) {
    const char *e = getenv("LG_ATTN_PERSIST");
    env = e ? atoi(e) != 0 : 1;
  }
  const int cap = g_wg_grid >= 0 ? g_wg_grid : env ? sms : 0;
  return cap && items > cap ? cap : items;
}

/* One launch: the first `whole` units whole, then the next nsp units in ns key splits each
 * (ntiles: the longest row's key tiles), then the combine pass of those. */
static int wg_run(lg_backend *be, att_params &p, const wg_maps &m, int variant, int whole, int nsp,
                  int ns, int ntiles) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  if (ns < 2) whole += nsp, nsp = 0, ns = 1;
  p.u0 = 0, p.whole = whole, p.nsplit = ns;
  p.tps = ns > 1 ? (ntiles + ns - 1) / ns : (ntiles > 0 ? ntiles : 1);
  if (nsp) {
    size_t rows = (size_t)nsp * ns * WG_BM;
    uint8_t *scr = (uint8_t *)lg_cuda_scratch(be, wg_split_bytes(rows));
    LG_CHECK(scr, LG_ENOMEM, LG_CUDA_MOD, "attention: no scratch for %d key splits", ns);
    p.part_o = (float *)scr;
    p.part_ml = (float *)(scr + wg_split_obytes(rows));
  }
  p.nitems = whole + nsp * ns;
  wg_launch_variant(p, m, dim3((unsigned)wg_grid(c->sm_count, p.nitems)), c->stream, variant);
  CUDA_LAUNCH_CHECK();
  if (nsp) {
    att_params pc = p; /* the combine: units whole.. */
    pc.u0 = whole;
    CUDA_CHECK(lg_cuda_launch_pdl(k_wg_combine, dim3((unsigned)((int64_t)nsp * 16)), dim3(256), 0,
                                  c->stream, pc));
  }
  return 0;
fail:
  return err;
}

int lg_cuda_attn_wgmma(lg_backend *be, att_params &p, int split, int variant) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  const int B = p.B;
  int qt = (p.Lq + WG_BM - 1) / WG_BM, maxn = 0;
  for (int b = 0; b < B; b++)
    maxn = p.kv_len[b] > maxn ? p.kv_len[b] : maxn;
  wg_maps m;
  memset(&m, 0, sizeof m);
  if (variant >= 5 && variant <= 8) { /* the TMA variants */
    const int bn = variant == 6 || variant == 8 ? 176 : WG_BN;
    static int tma_q = -1; /* LG_ATTN_TMA_Q=0: Q by cp.async (A/B runs) */
    if (tma_q < 0) {
      const char *e = getenv("LG_ATTN_TMA_Q");
      tma_q = e ? atoi(e) != 0 : 1;
    }
    if (!(wg_encode_map(&m.k, &m.rowk, p.k, p.kb, p.kl, p.kh, B, p.Lk, p.nh, bn) &&
          wg_encode_map(&m.v, &m.rowv, p.v, p.vb, p.vl, p.vh, B, p.Lk, p.nh, bn)))
      variant = 1; /* no tensor map: variant 1, the cp.async kernel of 128-key tiles */
    else
      m.hasq = tma_q && wg_encode_map(&m.q, &m.rowq, p.q, p.qb, p.ql, p.qh, B, p.Lq, p.nh, WG_BM);
  }
  const int bn = variant == 6 || variant == 8 ? 176 : WG_BN; /* keys per tile */
  int ntiles = (maxn + bn - 1) / bn;
  static int dbg = -1;
  if (dbg < 0) {
    const char *e = getenv("LG_ATTN_WG_DEBUG");
    dbg = e ? atoi(e) : 0;
  }
  p.wg_dbg = dbg;
  const int units = qt * p.nh * B, G = c->sm_count, rpu = p.Lq < WG_BM ? p.Lq : WG_BM;
  LG_CHECK((int64_t)units * 8 < (1ll << 31), LG_ENOTSUP, LG_CUDA_MOD,
           "attention: %d query tiles x heads x rows is too many", units);
  p.qt = qt;
  if (split > 0) { /* every unit in `split` parts (tests, LG_ATTN_SPLIT) */
    int ns = split > ntiles ? 1 : split;
    LG_TRY(wg_run(be, p, m, variant, 0, units, ns, ntiles));
  } else {
    /* whole waves unsplit, then the last wave's units split where that pays */
    const int tail = units % G, head = units - tail;
    int ns = tail ? wg_pick_split(tail, G, ntiles, rpu) : 1;
    /* in graph capture the scratch cannot grow: split only when an earlier (eager) call of the
     * same shape grew it already, as the bench does */
    if (ns > 1 && c->capturing && wg_split_bytes((size_t)tail * ns * WG_BM) > c->scratch_bytes)
      ns = 1;
    LG_TRY(wg_run(be, p, m, variant, head, tail, ns, ntiles));
  }
  return 0;
fail:
  return err;
}

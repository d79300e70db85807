/* cuda_attention.cuh: what the attention files share (cuda_attention.cu: the op, the mma.sync
 * flash kernels, the fallback and the split-KV combine; cuda_attention_wgmma.cu: the Hopper
 * wgmma kernel for head dim 128, built for sm_90a only): the kernel parameter block and the
 * launchers each file offers the other. Only those two .cu files include it. Runs on the
 * backend's thread. */
#ifndef LG_CUDA_ATTENTION_CUH
#define LG_CUDA_ATTENTION_CUH

#include "cuda_internal.cuh"

#define ATT_MAX_B 64

typedef struct att_params {
  const void *q, *k, *v;
  void *o;
  int64_t qb, ql, qh, kb, kl, kh, vb, vl, vh, ob, ol, oh; /* strides in elements */
  int Lq, Lk, nh, dh;
  float scale_log2; /* scale * log2(e) */
  int dt;           /* fallback kernel: dtypes */
  int qdt, kdt, vdt, odt;
  int kv_len[ATT_MAX_B];
  int B, nsplit, tps; /* split-KV: nsplit blocks per (query tile, head, row), tps tiles each */
  /* mma.sync kernels: part_o [nsplit][B][Lq][nh][dh] fp32, part_ml [nsplit][B][Lq][nh][2] (max
   * in log2 units, sum). wgmma kernel: a 1-d grid over units u0..u0+n-1 (unit = (row b, head,
   * query tile of 128), query tile fastest; qt tiles per head), see nitems; part_o [unit - u0 -
   * whole][split][128 queries][128] fp32 normalised O, part_ml [unit - u0 - whole][split][128]
   * [2]. */
  float *part_o;
  float *part_ml;
  int u0, qt;
  /* wgmma kernel: items of this launch: the whole units u0..u0+whole-1, then nsplit key
   * splits of each unit after them; a block takes items blockIdx.x, + gridDim.x, ...
   * (persistent when the grid is smaller than nitems) */
  int nitems, whole;
  const float *bias; /* attention_bias: [nh, Lq, Lk] f32 logit bias, or NULL */
  int64_t bias_h, bias_q;
  int wg_dbg; /* wgmma kernel: 1 swaps the V descriptor's strides (LG_ATTN_WG_DEBUG, bring-up) */
} att_params;

/* cuda_attention_wgmma.cu: true when the wgmma kernel can run on this device (compute
 * capability 9.0 and the sm_90a image was the one loaded); probed once, outside graph capture
 * (false until then). */
bool lg_cuda_attn_wgmma_ok(lg_backend *be);
/* The wgmma flash kernel: bf16 q/k/v/o, head dim 128, rows 16-byte aligned. split: key splits
 * (1 = none; 0 = automatic: whole waves of unsplit units, then the
 * last part-full wave's units split so that they fill the SMs, when that pays). variant: 0 = 2 K/V
 * stages with S of the next tile overlapping P V of this one, 1 = the same with 3 stages, 2 = 2
 * stages without the overlap, 3 / 4 = variants 1 / 0 with the consumer warpgroups taking turns
 * (ping-pong), 5 = variant 1 with full K/V tiles loaded by TMA (variant 1 when no tensor map fits),
 * 6 = experimental: 176-key tiles (S by m64n176k16), 2 stages, the overlap and TMA (variant 1 when
 * no tensor map fits), 7 / 8 = experimental: variants 5 / 6 with the consumer warpgroups taking
 * turns (ping-pong). p.nsplit, p.tps, p.part_* are set here. */
int lg_cuda_attn_wgmma(lg_backend *be, att_params &p, int split, int variant);

#endif

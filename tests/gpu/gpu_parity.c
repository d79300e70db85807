/* gpu_parity.c: lg_gpu_tests, the CUDA backend against the CPU reference backend. Every op on
 * random inputs of odd sizes (strided views, shared K/V, masked keys, both flash and fallback
 * attention paths), then the tiny Wan DiT through a multi-call KV-cache sequence on both
 * backends. Inputs are rounded to bf16 before they reach either backend, so the error measures
 * the CUDA op's arithmetic and its bf16 output, not the input rounding. Outputs on the GPU are
 * poisoned (NaN) first, so an unwritten element fails. Error = ||gpu - cpu|| / ||cpu||.
 * Prints one table row per check and exits 1 if any fails (2 if no GPU).
 * Usage: lg_gpu_tests [filter-substring | wgmmaN (the wgmma attention cases of kernel N)] |
 * --perf (times the row ops at the DiT's sizes) | --attn-perf (attention TFLOP/s per kernel at the
 * DiT's shapes) | --conv-perf (conv3d per path at the Wan VAE / TAEHV shapes, and the VAE middle
 * attention). Main thread only; run by tests/gpu/run. */
#include "kv_cache.h"
#include "lg_backend.h"
#include "lg_cuda.h"
#include "model_spec.h"
#include "wan_dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Defined in pipeline/cmd_bench.c: writes random weights for lg_model_spec(arch, preset). */
int lg_bench_write_random_ckpt(const char *arch, const char *preset, const char *path,
                               uint64_t seed, lg_dtype dt);

/* Defined in cuda/cuda_attention.cu: attention kernel override (1 mma.sync, 3 wgmma, 0
 * default; split N, -1 the kernel's default, -2 the environment) and whether the wgmma kernel
 * runs here (1 yes, 0 no Hopper, -1 Hopper but not loaded). */
void lg_cuda_attn_set_kernel(int kernel, int split);
/* cuda_attention_wgmma.cu: at most `blocks` persistent blocks (0 one per item, -1 default) */
void lg_cuda_attn_set_grid(int blocks);
int lg_cuda_attn_wgmma_active(lg_backend *be);

static lg_backend *g_cpu, *g_gpu;
static lg_rng g_rng;
static int g_fail, g_run;
static const char *g_filter;

/* ---------------------------------------------------------------- helpers */

typedef struct pair {
  lg_tensor c, g; /* cpu (F32) and gpu (dtype) tensors holding the same values */
  float *h;       /* host values (bf16-rounded) */
} pair;

static float *rand_vals(int64_t n, float lo, float hi) {
  float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  for (int64_t i = 0; i < n; i++)
    v[i] = lg_bf16_to_f32(lg_f32_to_bf16(lo + (hi - lo) * (float)lg_rng_uniform(&g_rng)));
  return v;
}

static void must(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "fatal: %s failed (%s)\n", what, lg_strerror(rc));
    exit(1);
  }
}

/* New pair of contiguous tensors of the given shape; gpu dtype gdt. */
static pair mk(lg_dtype gdt, int nd, const int64_t *sh, float lo, float hi) {
  pair p;
  must(lg_tensor_alloc(g_cpu, &p.c, LG_F32, nd, sh), "cpu alloc");
  must(lg_tensor_alloc(g_gpu, &p.g, gdt, nd, sh), "gpu alloc");
  int64_t n = lg_tensor_numel(&p.c);
  p.h = rand_vals(n, lo, hi);
  must(lg_tensor_upload(&p.c, p.h), "cpu upload");
  must(lg_tensor_upload_f32(&p.g, p.h), "gpu upload");
  return p;
}

/* Output pair: cpu zero, gpu poisoned with NaN bytes. */
static pair mk_out(lg_dtype gdt, int nd, const int64_t *sh) {
  pair p;
  p.h = NULL;
  must(lg_tensor_alloc(g_cpu, &p.c, LG_F32, nd, sh), "cpu alloc");
  must(lg_tensor_alloc(g_gpu, &p.g, gdt, nd, sh), "gpu alloc");
  size_t nb = lg_tensor_nbytes(&p.g);
  uint8_t *ff = malloc(nb ? nb : 1);
  memset(ff, 0xff, nb);
  must(lg_tensor_upload(&p.g, ff), "poison");
  free(ff);
  memset(p.c.data, 0, lg_tensor_nbytes(&p.c));
  return p;
}

static void pfree(pair *p) {
  lg_tensor_free(&p->c);
  lg_tensor_free(&p->g);
  free(p->h);
  p->h = NULL;
}

/* Same view on both tensors of a pair. */
static void view2(pair *p, lg_tensor *c, lg_tensor *g, int nd, const int64_t *ne, const int64_t *nb,
                  int64_t off) {
  *c = p->c, *g = p->g;
  c->ndim = g->ndim = nd;
  for (int i = 0; i < nd; i++) {
    c->ne[i] = g->ne[i] = ne[i];
    c->nb[i] = g->nb[i] = nb[i];
  }
  c->data = (float *)p->c.data + off;
  g->data = (uint8_t *)p->g.data + off * (int64_t)lg_dtype_size(p->g.dtype);
}

/* ||g - c|| / ||c|| over a tensor (any strides), NaN if the gpu has a non-finite value. */
static double rel_err(const lg_tensor *gt, const lg_tensor *ct) {
  int64_t n = lg_tensor_numel(ct);
  float *a = malloc((size_t)(n ? n : 1) * 4), *b = malloc((size_t)(n ? n : 1) * 4);
  must(lg_tensor_download_f32(gt, a), "gpu download");
  must(lg_tensor_download_f32(ct, b), "cpu download");
  double num = 0, den = 0;
  bool bad = false;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) bad = true;
    double d = (double)a[i] - b[i];
    num += d * d, den += (double)b[i] * b[i];
  }
  free(a);
  free(b);
  if (bad) return NAN;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool want(const char *name) {
  return !g_filter || strstr(name, g_filter);
}

static void row(const char *name, const char *shape, double err, double tol, int rc) {
  bool ok = rc == 0 && err == err && err <= tol;
  g_run++;
  if (!ok) g_fail++;
  if (rc)
    printf("| %-34s | %-30s | %9s | %7.0e | FAIL (rc %s) |\n", name, shape, "-", tol,
           lg_strerror(rc));
  else
    printf("| %-34s | %-30s | %9.2e | %7.0e | %s |\n", name, shape, err, tol, ok ? "ok" : "FAIL");
  fflush(stdout);
}

#define TOL_GEMM 1e-2
#define TOL_ATTN 1e-2
#define TOL_NORM 5e-3
#define TOL_ELEM 5e-3
#define TOL_DIT 5e-2

/* ---------------------------------------------------------------- op tests */

static void t_copy(void) {
  if (!want("copy")) return;
  int64_t sh[3] = {5, 7, 9};
  pair x = mk(LG_BF16, 3, sh, -2, 2);
  int perm[3] = {2, 0, 1};
  lg_tensor xc = lg_tensor_permute(&x.c, perm), xg = lg_tensor_permute(&x.g, perm);
  int64_t osh[3] = {9, 5, 7};
  for (int k = 0; k < 3; k++) {
    lg_dtype dt = k == 0 ? LG_BF16 : (k == 1 ? LG_F32 : LG_F16);
    pair y = mk_out(dt, 3, osh);
    int rc = LG_OP(g_gpu, copy, &y.g, &xg);
    if (!rc) rc = LG_OP(g_cpu, copy, &y.c, &xc);
    char nm[64];
    snprintf(nm, sizeof nm, "copy permuted bf16->%s", lg_dtype_name(dt));
    row(nm, "[9,5,7] of [5,7,9]", rc ? 0 : rel_err(&y.g, &y.c), TOL_ELEM, rc);
    pfree(&y);
  }
  pfree(&x);
}

static void t_matmul_case(const char *nm, int64_t M, int64_t K, int64_t N, bool wload, bool bias_on,
                          lg_act act, bool accumulate, bool trans_a, lg_dtype adt) {
  char shape[64];
  snprintf(shape, sizeof shape, "M%lld K%lld N%lld", (long long)M, (long long)K, (long long)N);
  int64_t ash[2] = {trans_a ? K : M, trans_a ? M : K}, wsh[2] = {N, K}, bsh[1] = {N},
          ysh[2] = {M, N};
  pair a = mk(adt, 2, ash, -1, 1), w = mk(LG_BF16, 2, wsh, -0.3f, 0.3f),
       b = mk(LG_BF16, 1, bsh, -1, 1);
  pair y = accumulate ? mk(LG_BF16, 2, ysh, -1, 1) : mk_out(LG_BF16, 2, ysh);
  lg_tensor wg = w.g, wc = w.c;
  int rc = 0;
  if (wload) {
    lg_tensor host = lg_tensor_make(NULL, w.h, LG_F32, 2, wsh);
    rc = g_gpu->ops->load_weight(g_gpu, &wg, &host, LG_WEIGHT_LINEAR);
    if (!rc) rc = g_cpu->ops->load_weight(g_cpu, &wc, &host, LG_WEIGHT_LINEAR);
  }
  lg_matmul_opts o = {.trans_a = trans_a, .trans_b = true, .act = act, .accumulate = accumulate};
  if (!rc) rc = LG_OP(g_gpu, matmul, &y.g, &a.g, &wg, bias_on ? &b.g : NULL, &o);
  if (!rc) rc = LG_OP(g_cpu, matmul, &y.c, &a.c, &wc, bias_on ? &b.c : NULL, &o);
  row(nm, shape, rc ? 0 : rel_err(&y.g, &y.c), TOL_GEMM, rc);
  if (wload) {
    g_gpu->ops->free(g_gpu, wg.data);
    g_cpu->ops->free(g_cpu, wc.data);
  }
  pfree(&a), pfree(&w), pfree(&b), pfree(&y);
}

static void t_matmul(void) {
  if (!want("matmul")) return;
  t_matmul_case("matmul weight+bias", 37, 72, 40, true, true, LG_ACT_NONE, false, false, LG_BF16);
  t_matmul_case("matmul bias+gelu_tanh", 301, 256, 520, true, true, LG_ACT_GELU_TANH, false, false,
                LG_BF16);
  t_matmul_case("matmul bias+silu", 33, 64, 24, true, true, LG_ACT_SILU, false, false, LG_BF16);
  t_matmul_case("matmul accumulate+bias", 45, 128, 96, false, true, LG_ACT_NONE, true, false,
                LG_BF16);
  t_matmul_case("matmul trans_a", 40, 48, 56, false, false, LG_ACT_NONE, false, true, LG_BF16);
  t_matmul_case("matmul f32 a, odd K", 29, 67, 33, true, true, LG_ACT_NONE, false, false, LG_F32);
  t_matmul_case("matmul odd K/N bf16", 31, 67, 35, false, true, LG_ACT_RELU, false, false, LG_BF16);
  /* strided batch: a [2,L,K] is a view of [2,L+5,K] rows, y written into [2,L+3,N] */
  {
    int64_t L = 19, K = 64, N = 48;
    int64_t ash[3] = {2, L + 5, K}, ysh[3] = {2, L + 3, N}, wsh[2] = {N, K};
    pair a = mk(LG_BF16, 3, ash, -1, 1), w = mk(LG_BF16, 2, wsh, -0.3f, 0.3f),
         y = mk_out(LG_BF16, 3, ysh);
    lg_tensor ac, ag, yc, yg;
    int64_t ane[3] = {2, L, K}, anb[3] = {(L + 5) * K, K, 1}, yne[3] = {2, L, N},
            ynb[3] = {(L + 3) * N, N, 1};
    view2(&a, &ac, &ag, 3, ane, anb, 2 * K);
    view2(&y, &yc, &yg, 3, yne, ynb, N);
    lg_matmul_opts o = {.trans_b = true};
    int rc = LG_OP(g_gpu, matmul, &yg, &ag, &w.g, NULL, &o);
    if (!rc) rc = LG_OP(g_cpu, matmul, &yc, &ac, &w.c, NULL, &o);
    row("matmul strided batch views", "[2,19,64]x[48,64]^T", rc ? 0 : rel_err(&yg, &yc), TOL_GEMM,
        rc);
    pfree(&a), pfree(&w), pfree(&y);
  }
}

static void t_unary_axpby(void) {
  if (!want("unary") && !want("axpby")) return;
  int64_t sh[2] = {13, 77};
  pair x = mk(LG_BF16, 2, sh, -4, 4);
  struct {
    lg_act a;
    float alpha;
    const char *n;
  } cs[] = {{LG_ACT_GELU_TANH, 0, "unary gelu_tanh"},
            {LG_ACT_SILU, 0, "unary silu"},
            {LG_ACT_RELU, 0, "unary relu"},
            {LG_ACT_TANH_SCALED, 3, "unary tanh_scaled"},
            {LG_ACT_CLAMP, 1.5f, "unary clamp"}};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    if (!want(cs[i].n)) continue;
    pair y = mk_out(LG_BF16, 2, sh);
    int rc = LG_OP(g_gpu, unary, &y.g, &x.g, cs[i].a, cs[i].alpha);
    if (!rc) rc = LG_OP(g_cpu, unary, &y.c, &x.c, cs[i].a, cs[i].alpha);
    row(cs[i].n, "[13,77]", rc ? 0 : rel_err(&y.g, &y.c), TOL_ELEM, rc);
    pfree(&y);
  }
  if (want("axpby")) {
    pair b = mk(LG_F32, 2, sh, -1, 1);
    int rc = LG_OP(g_gpu, axpby, &x.g, 0.7f, &x.g, -1.3f, &b.g);
    if (!rc) rc = LG_OP(g_cpu, axpby, &x.c, 0.7f, &x.c, -1.3f, &b.c);
    row("axpby in place (bf16, f32)", "[13,77]", rc ? 0 : rel_err(&x.g, &x.c), TOL_ELEM, rc);
    pfree(&b);
  }
  pfree(&x);
}

/* D 328 (the generic block-per-row path), 1536 (the 1.3B DiT's rows: warp per row), 1032
 * (block per row, registers), 2048 (warp per row, 8 chunks a lane) and 9216 (the DiT's 6 x 1536
 * modulation table add: the elementwise no-ln modulate; the norms take the generic path) */
static void t_norms_d(int64_t D) {
  char shs[32], shm[32];
  snprintf(shs, sizeof shs, "[37,%lld]", (long long)D);
  snprintf(shm, sizeof shm, "[40,%lld] g8", (long long)D);
  int64_t R = 37;
  int64_t sh[2] = {R, D}, vsh[1] = {D};
  pair x = mk(LG_BF16, 2, sh, -3, 5), w = mk(LG_BF16, 1, vsh, 0.5f, 1.5f),
       b = mk(LG_BF16, 1, vsh, -1, 1);
  for (int k = 0; k < 2; k++) {
    pair y = mk_out(LG_BF16, 2, sh);
    int rc = LG_OP(g_gpu, layer_norm, &y.g, &x.g, k ? &w.g : NULL, k ? &b.g : NULL, 1e-6f);
    if (!rc) rc = LG_OP(g_cpu, layer_norm, &y.c, &x.c, k ? &w.c : NULL, k ? &b.c : NULL, 1e-6f);
    row(k ? "layer_norm affine" : "layer_norm plain", shs, rc ? 0 : rel_err(&y.g, &y.c), TOL_NORM,
        rc);
    pfree(&y);
  }
  {
    pair y = mk_out(LG_BF16, 2, sh);
    int rc = LG_OP(g_gpu, rms_norm, &y.g, &x.g, &w.g, 1e-6f);
    if (!rc) rc = LG_OP(g_cpu, rms_norm, &y.c, &x.c, &w.c, 1e-6f);
    row("rms_norm weight", shs, rc ? 0 : rel_err(&y.g, &y.c), TOL_NORM, rc);
    pfree(&y);
  }
  {
    int64_t s3[2] = {R, 13}, g3[1] = {13};
    pair x3 = mk(LG_BF16, 2, s3, -2, 2), gm = mk(LG_BF16, 1, g3, 0.5f, 1.5f),
         y = mk_out(LG_BF16, 2, s3);
    int rc = LG_OP(g_gpu, channel_rms_norm, &y.g, &x3.g, &gm.g);
    if (!rc) rc = LG_OP(g_cpu, channel_rms_norm, &y.c, &x3.c, &gm.c);
    row("channel_rms_norm", "[37,13]", rc ? 0 : rel_err(&y.g, &y.c), TOL_NORM, rc);
    pfree(&x3), pfree(&gm), pfree(&y);
  }
  /* modulate / gated_add: tokens in groups of 5 frames-worth (R = 40 rows, group 8), the
   * shift/scale/gate rows are strided views of a [5, 6, D] table like the DiT's */
  {
    int64_t RR = 40, G = 8, NG = RR / G;
    int64_t xs[2] = {RR, D}, ts[3] = {NG, 6, D};
    pair xx = mk(LG_BF16, 2, xs, -3, 3), tab = mk(LG_BF16, 3, ts, -0.5f, 0.5f);
    lg_tensor shc, shg, scc, scg, gc, gg;
    int64_t ne[2] = {NG, D}, nb[2] = {6 * D, 1};
    view2(&tab, &shc, &shg, 2, ne, nb, 0);
    view2(&tab, &scc, &scg, 2, ne, nb, D);
    view2(&tab, &gc, &gg, 2, ne, nb, 2 * D);
    for (int ln = 0; ln < 2; ln++) {
      pair y = mk_out(LG_BF16, 2, xs);
      int rc = LG_OP(g_gpu, modulate, &y.g, &xx.g, &shg, &scg, G, ln, 1e-6f);
      if (!rc) rc = LG_OP(g_cpu, modulate, &y.c, &xx.c, &shc, &scc, G, ln, 1e-6f);
      row(ln ? "modulate ln (strided table)" : "modulate no-ln (strided table)", shm,
          rc ? 0 : rel_err(&y.g, &y.c), TOL_NORM, rc);
      pfree(&y);
    }
    {
      pair yy = mk(LG_BF16, 2, xs, -1, 1);
      int rc = LG_OP(g_gpu, gated_add, &xx.g, &yy.g, &gg, G);
      if (!rc) rc = LG_OP(g_cpu, gated_add, &xx.c, &yy.c, &gc, G);
      row("gated_add gate", shm, rc ? 0 : rel_err(&xx.g, &xx.c), TOL_ELEM, rc);
      rc = LG_OP(g_gpu, gated_add, &xx.g, &yy.g, NULL, 1);
      if (!rc) rc = LG_OP(g_cpu, gated_add, &xx.c, &yy.c, NULL, 1);
      row("gated_add plain", shs, rc ? 0 : rel_err(&xx.g, &xx.c), TOL_ELEM, rc);
      pfree(&yy);
    }
    pfree(&xx), pfree(&tab);
  }
  pfree(&x), pfree(&w), pfree(&b);
}

static void t_norms(void) {
  if (!want("norm") && !want("modulate") && !want("gated")) return;
  t_norms_d(328);
  t_norms_d(1536);
  t_norms_d(1032);
  t_norms_d(2048);
  t_norms_d(9216);
}

static void t_rope(void) {
  if (!want("rope")) return;
  int dhs[2] = {128, 40};
  for (int k = 0; k < 2; k++) {
    int64_t F = 2, H = 3, W = 5, dh = dhs[k];
    int64_t sh[4] = {2, F * H * W, 3, dh};
    pair x = mk(LG_BF16, 4, sh, -2, 2);
    int32_t fs[2] = {0, 37};
    int rc = LG_OP(g_gpu, rope3d, &x.g, F, H, W, fs);
    if (!rc) rc = LG_OP(g_cpu, rope3d, &x.c, F, H, W, fs);
    char nm[64], shape[64];
    snprintf(nm, sizeof nm, "rope3d dh %lld", (long long)dh);
    snprintf(shape, sizeof shape, "[2,30,3,%lld] fs 0/37", (long long)dh);
    row(nm, shape, rc ? 0 : rel_err(&x.g, &x.c), TOL_ELEM, rc);
    pfree(&x);
  }
}

/* Fused ops (cuda/cuda_fused.cu) against the CPU backend's composition (cpu/lg_fused.c). */
static void t_fused(void) {
  if (!want("fused")) return;
  /* qk_norm_rope: contiguous [B,L,nh,dh] (the DiT's q), a strided view with a batch stride
   * (K written into a cache slot), head_dim 40 and a token of 2560 (the composed path) */
  struct {
    int64_t B, F, H, W, nh, dh, extra; /* extra: tokens before/after the view per row */
    int32_t fs[2];
  } cs[] = {{2, 1, 6, 10, 12, 128, 0, {10, 11}},
            {2, 2, 3, 5, 3, 128, 7, {0, 37}},
            {1, 2, 3, 5, 4, 40, 3, {5, 0}},
            {2, 1, 3, 5, 20, 128, 0, {2, 49}}};
  for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
    int64_t L = cs[k].F * cs[k].H * cs[k].W, D = cs[k].nh * cs[k].dh, cap = L + 2 * cs[k].extra;
    int64_t sh[4] = {cs[k].B, cap, cs[k].nh, cs[k].dh}, wsh[1] = {D};
    pair x = mk(LG_BF16, 4, sh, -2, 2), w = mk(LG_BF16, 1, wsh, 0.5f, 1.5f);
    lg_tensor xc, xg;
    int64_t ne[4] = {cs[k].B, L, cs[k].nh, cs[k].dh}, nb[4] = {cap * D, D, cs[k].dh, 1};
    view2(&x, &xc, &xg, 4, ne, nb, cs[k].extra * D);
    int rc = lg_backend_qk_norm_rope(g_gpu, &xg, &w.g, 1e-6f, cs[k].F, cs[k].H, cs[k].W, cs[k].fs);
    if (!rc)
      rc = lg_backend_qk_norm_rope(g_cpu, &xc, &w.c, 1e-6f, cs[k].F, cs[k].H, cs[k].W, cs[k].fs);
    char shape[64];
    snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld] in %lld rows", (long long)cs[k].B,
             (long long)L, (long long)cs[k].nh, (long long)cs[k].dh, (long long)cap);
    /* the whole buffer: tokens outside the view must be untouched on both sides */
    row("qk_norm_rope", shape, rc ? 0 : rel_err(&x.g, &x.c), TOL_NORM, rc);
    pfree(&x), pfree(&w);
  }
  /* cosine_mean_n: three pairs of different shapes (one a strided row view), vs cosine_mean
   * on the CPU; the worst relative error of the three values */
  {
    int64_t s1[2] = {45, 256}, s2[2] = {7, 1536}, s3[2] = {30, 96};
    pair a1 = mk(LG_BF16, 2, s1, -1, 1), b1 = mk(LG_BF16, 2, s1, -1, 1);
    pair a2 = mk(LG_BF16, 2, s2, -1, 1), b2 = mk(LG_BF16, 2, s2, -0.5f, 1.5f);
    pair a3 = mk(LG_BF16, 2, s3, -1, 1), b3 = mk(LG_BF16, 2, s3, -1, 1);
    lg_tensor ga[3], gb[3], ca[3], cb[3];
    int64_t ne[2] = {15, 200}, nb[2] = {3 * 256, 1}; /* every third row, 200 of 256 columns */
    view2(&a1, &ca[0], &ga[0], 2, ne, nb, 10);
    view2(&b1, &cb[0], &gb[0], 2, ne, nb, 20);
    ca[1] = a2.c, ga[1] = a2.g, cb[1] = b2.c, gb[1] = b2.g;
    ca[2] = a3.c, ga[2] = a3.g, cb[2] = a3.c, gb[2] = a3.g; /* a with itself: 1 */
    double vg[3] = {0}, vc[3] = {0};
    int rc = lg_backend_cosine_mean_n(g_gpu, vg, 3, ga, gb);
    if (!rc) rc = lg_backend_cosine_mean_n(g_cpu, vc, 3, ca, cb);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
      double e = fabs(vg[i] - vc[i]) / fmax(fabs(vc[i]), 1e-3);
      worst = e > worst || e != e ? e : worst;
    }
    row("cosine_mean_n (3 pairs, one strided)", "[15,200] [7,1536] [30,96]", rc ? 0 : worst,
        TOL_ELEM, rc);
    pfree(&a1), pfree(&b1), pfree(&a2), pfree(&b2), pfree(&a3), pfree(&b3);
  }
  /* linear_gated_add: x += gate[r/group] * (a w^T + bias), gates a strided view like the
   * DiT's modulation chunks; group 40 (the cuBLASLt gate-vector epilogue with
   * LG_FUSED_GATED_GEMM=1), 15 (not a multiple of 8: matmul + gated_add), no bias */
  {
    struct {
      int64_t G, group, K, N;
      bool bias;
    } cs[] = {{2, 40, 64, 96, true}, {3, 15, 64, 96, true}, {2, 40, 128, 64, false}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
      int64_t R = cs[k].G * cs[k].group, K = cs[k].K, N = cs[k].N;
      int64_t xsh[2] = {R, N}, ash[2] = {R, K}, wsh[2] = {N, K}, bsh[1] = {N},
              gsh[2] = {cs[k].G, 3 * N};
      pair x = mk(LG_BF16, 2, xsh, -1, 1), a = mk(LG_BF16, 2, ash, -1, 1);
      pair w = mk(LG_BF16, 2, wsh, -0.3f, 0.3f), b = mk(LG_BF16, 1, bsh, -1, 1);
      pair g = mk(LG_BF16, 2, gsh, -1, 1), t = mk_out(LG_BF16, 2, xsh);
      lg_tensor gc, gg;
      int64_t ne[2] = {cs[k].G, N}, nb[2] = {3 * N, 1};
      view2(&g, &gc, &gg, 2, ne, nb, N); /* the middle third of each row */
      int rc = lg_backend_linear_gated_add(g_gpu, &x.g, &a.g, &w.g, cs[k].bias ? &b.g : NULL, &gg,
                                           cs[k].group, &t.g);
      if (!rc)
        rc = lg_backend_linear_gated_add(g_cpu, &x.c, &a.c, &w.c, cs[k].bias ? &b.c : NULL, &gc,
                                         cs[k].group, &t.c);
      char shape[64];
      snprintf(shape, sizeof shape, "R%lld K%lld N%lld g%lld%s", (long long)R, (long long)K,
               (long long)N, (long long)cs[k].group, cs[k].bias ? " bias" : "");
      row("linear_gated_add", shape, rc ? 0 : rel_err(&x.g, &x.c), TOL_GEMM, rc);
      pfree(&x), pfree(&a), pfree(&w), pfree(&b), pfree(&g), pfree(&t);
    }
  }
  /* linear_gated_add_ln / _mod: the gated add, then LayerNorm (affine or not; _ln) or
   * LayerNorm + modulate (_mod: shift and scale from the same table rows as the gate, as the
   * DiT's ffn.2 with the next block's input norm) of the new x into h; N 1536 and 256 take the
   * one-pass kernel (the DiT's o-projection + norm3, ffn.2 + norm1), 96 the unfused pair; both
   * x and h are compared. A table row per group: [shift | scale | gate]. */
  {
    enum { LN, LN_AFFINE, MOD };
    struct {
      int64_t G, group, K, N;
      int mode;
    } cs[] = {{2, 40, 64, 1536, LN_AFFINE},
              {3, 16, 64, 256, LN},
              {2, 40, 64, 96, LN_AFFINE},
              {2, 40, 64, 1536, MOD},
              {3, 16, 64, 96, MOD}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
      int64_t R = cs[k].G * cs[k].group, K = cs[k].K, N = cs[k].N;
      int64_t xsh[2] = {R, N}, ash[2] = {R, K}, wsh[2] = {N, K}, bsh[1] = {N},
              gsh[2] = {cs[k].G, 3 * N};
      pair x = mk(LG_BF16, 2, xsh, -3, 3), a = mk(LG_BF16, 2, ash, -1, 1);
      pair w = mk(LG_BF16, 2, wsh, -0.3f, 0.3f), b = mk(LG_BF16, 1, bsh, -1, 1);
      pair lw = mk(LG_BF16, 1, bsh, 0.5f, 1.5f), lb = mk(LG_BF16, 1, bsh, -1, 1);
      pair g = mk(LG_BF16, 2, gsh, -1, 1), t = mk_out(LG_BF16, 2, xsh), h = mk_out(LG_BF16, 2, xsh);
      lg_tensor gc, gg, shc, shg, scc, scg;
      int64_t ne[2] = {cs[k].G, N}, nb[2] = {3 * N, 1};
      view2(&g, &shc, &shg, 2, ne, nb, 0);
      view2(&g, &scc, &scg, 2, ne, nb, N);
      view2(&g, &gc, &gg, 2, ne, nb, 2 * N);
      const int md = cs[k].mode;
      const bool af = md == LN_AFFINE;
      int rc;
      if (md == MOD) {
        rc = lg_backend_linear_gated_add_mod(g_gpu, &x.g, &a.g, &w.g, &b.g, &gg, cs[k].group, &t.g,
                                             &h.g, &shg, &scg, 1e-6f);
        if (!rc)
          rc = lg_backend_linear_gated_add_mod(g_cpu, &x.c, &a.c, &w.c, &b.c, &gc, cs[k].group,
                                               &t.c, &h.c, &shc, &scc, 1e-6f);
      } else {
        rc = lg_backend_linear_gated_add_ln(g_gpu, &x.g, &a.g, &w.g, &b.g, &gg, cs[k].group, &t.g,
                                            &h.g, af ? &lw.g : NULL, af ? &lb.g : NULL, 1e-6f);
        if (!rc)
          rc = lg_backend_linear_gated_add_ln(g_cpu, &x.c, &a.c, &w.c, &b.c, &gc, cs[k].group, &t.c,
                                              &h.c, af ? &lw.c : NULL, af ? &lb.c : NULL, 1e-6f);
      }
      char shape[64];
      snprintf(shape, sizeof shape, "R%lld K%lld N%lld g%lld%s", (long long)R, (long long)K,
               (long long)N, (long long)cs[k].group, af ? " affine" : "");
      const char *nx = md == MOD ? "linear_gated_add_mod: x" : "linear_gated_add_ln: x";
      const char *nh = md == MOD ? "linear_gated_add_mod: h" : "linear_gated_add_ln: h";
      row(nx, shape, rc ? 0 : rel_err(&x.g, &x.c), TOL_GEMM, rc);
      row(nh, shape, rc ? 0 : rel_err(&h.g, &h.c), TOL_GEMM, rc);
      pfree(&x), pfree(&a), pfree(&w), pfree(&b), pfree(&lw), pfree(&lb), pfree(&g), pfree(&t),
          pfree(&h);
    }
  }
}

/* q [B,Lq,nh,dh] contiguous; K/V views [B,cap,nh,dh] of a [B,cap+3,nh,dh] buffer (or one
 * shared row); kv_len per row. */
static void t_attn_case(const char *nm, int B, int Lq, int cap, int nh, int dh, const int32_t *kvl,
                        bool shared, lg_dtype dt) {
  int64_t qs[4] = {B, Lq, nh, dh}, ks[4] = {shared ? 1 : B, cap + 3, nh, dh};
  pair q = mk(dt, 4, qs, -2, 2), k = mk(dt, 4, ks, -2, 2), v = mk(dt, 4, ks, -1, 1),
       o = mk_out(dt, 4, qs);
  lg_tensor kc, kg, vc, vg;
  int64_t ne[4] = {shared ? 1 : B, cap, nh, dh}, nb[4] = {(cap + 3) * nh * dh, nh * dh, dh, 1};
  view2(&k, &kc, &kg, 4, ne, nb, nh * dh);
  view2(&v, &vc, &vg, 4, ne, nb, 2 * nh * dh);
  float scale = 1.f / sqrtf((float)dh);
  int rc = LG_OP(g_gpu, attention, &o.g, &q.g, &kg, &vg, kvl, scale);
  if (!rc) rc = LG_OP(g_cpu, attention, &o.c, &q.c, &kc, &vc, kvl, scale);
  char shape[64];
  snprintf(shape, sizeof shape, "B%d Lq%d cap%d h%d d%d", B, Lq, cap, nh, dh);
  row(nm, shape, rc ? 0 : rel_err(&o.g, &o.c), TOL_ATTN, rc);
  pfree(&q), pfree(&k), pfree(&v), pfree(&o);
}

/* attention_bias (umT5 relative positions): bias [nh, Lq, Lk] f32, no scale, masked keys. */
static void t_attn_bias(void) {
  if (!want("attention")) return;
  int64_t qs[4] = {2, 33, 3, 64}, ks[4] = {2, 40, 3, 64}, bs[3] = {3, 33, 40};
  pair q = mk(LG_BF16, 4, qs, -1, 1), k = mk(LG_BF16, 4, ks, -1, 1), v = mk(LG_BF16, 4, ks, -1, 1),
       b = mk(LG_F32, 3, bs, -3, 3), o = mk_out(LG_BF16, 4, qs);
  int32_t kvl[2] = {40, 27};
  int rc = lg_backend_attention_bias(g_gpu, &o.g, &q.g, &k.g, &v.g, &b.g, kvl, 1.0f);
  if (!rc) rc = lg_backend_attention_bias(g_cpu, &o.c, &q.c, &k.c, &v.c, &b.c, kvl, 1.0f);
  row("attention_bias (umT5) kv_len", "B2 Lq33 Lk40 h3 d64", rc ? 0 : rel_err(&o.g, &o.c), TOL_ATTN,
      rc);
  pfree(&q), pfree(&k), pfree(&v), pfree(&b), pfree(&o);
}

/* The wgmma kernel (Hopper, bf16, head dim 128) on the DiT's shapes and their tails: 12 heads,
 * Lq 1560 (one latent frame, 13 query tiles, the last part-full) and 37, kv_len 9360 / 3120 /
 * 77 / 0 (a row with no keys gives zeros), K/V shared by the rows (batch stride 0), and the
 * key split (its combine pass, and splits that get no keys). */
static void t_attn_wgmma(void) {
  int act = lg_cuda_attn_wgmma_active(g_gpu);
  row("attention wgmma kernel loaded", act == 1 ? "sm_90a" : "not Hopper", 0, 0,
      act < 0 ? LG_ENOTSUP : 0);
  if (act != 1) return;
  /* kernel 8 (the default: kernel 4 with full K/V tiles loaded by TMA) and kernel 4 (3
   * stages, S of the next tile overlapping P V, cp.async loads) with and without the key split,
   * then the variants 3 (2 stages), 5 (2 stages, no overlap), 6 (3 stages, ping-pong), 7 (2
   * stages, ping-pong), and the experimental kernel 9 (176-key tiles, 2 stages, TMA: 9360 keys
   * = 53 full tiles + 32, 3120 = 17 + 128, 512 = 2 + 160, so every case has a masked tail; with
   * split 2 the 3120-key row's second half gets no keys), and 10 / 11 (8 / 9 with ping-pong,
   * experimental). The filter "wgmmaN" runs only kernel N's cases. */
  struct {
    int kernel, split;
    bool all;
  } vs[] = {{8, 1, true},  {8, 2, true},  {4, 1, true},  {4, 2, true},  {3, 1, true},
            {3, 2, false}, {5, 1, false}, {6, 2, true},  {7, 1, false}, {9, 1, true},
            {9, 2, true},  {10, 2, true}, {11, 1, true}, {11, 2, true}, {10, 0, true}};
  for (int vi = 0; vi < (int)(sizeof vs / sizeof vs[0]); vi++) {
    int kn = vs[vi].kernel, sp = vs[vi].split;
    char only[16];
    snprintf(only, sizeof only, "wgmma%d", kn);
    if (g_filter && !strncmp(g_filter, "wgmma", 5) && strcmp(g_filter, only)) continue;
    lg_cuda_attn_set_kernel(kn, sp);
    char nm[64];
    int32_t k1[2] = {9360, 3120}, k2[2] = {77, 0}, k3[2] = {0, 9360}, k4[2] = {77, 3};
    snprintf(nm, sizeof nm, "attention wgmma%d kv 9360/3120 s%d", kn, sp);
    t_attn_case(nm, 2, 1560, 9360, 12, 128, k1, false, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d Lq37 kv 0/9360 s%d", kn, sp);
    t_attn_case(nm, 2, 37, 9360, 12, 128, k3, false, LG_BF16);
    if (!vs[vi].all) continue;
    snprintf(nm, sizeof nm, "attention wgmma%d kv 77/0 s%d", kn, sp);
    t_attn_case(nm, 2, 1560, 9360, 12, 128, k2, false, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d cross shared s%d", kn, sp);
    t_attn_case(nm, 2, 1560, 512, 12, 128, NULL, true, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d Lq37 shared kv77 s%d", kn, sp);
    t_attn_case(nm, 2, 37, 512, 12, 128, k4, true, LG_BF16);
    if (sp != 0) continue;
    /* automatic split: the persistent kernel where it applies (units cut between blocks and
     * merged by the fix-up pass): 1 row (156 units on 132 SMs), 4 rows with a tail tile,
     * the cross-attention of 1 and 4 rows; kv 9360/3120 above has rows of unequal length */
    int32_t k5[1] = {9360}, k6[4] = {9300, 9300, 9300, 9300};
    snprintf(nm, sizeof nm, "attention wgmma%d 1 row kv 9360 s%d", kn, sp);
    t_attn_case(nm, 1, 1560, 9360, 12, 128, k5, false, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d 4 rows kv 9300 s%d", kn, sp);
    t_attn_case(nm, 4, 1560, 9360, 12, 128, k6, false, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d cross 1 row s%d", kn, sp);
    t_attn_case(nm, 1, 1560, 512, 12, 128, NULL, true, LG_BF16);
    snprintf(nm, sizeof nm, "attention wgmma%d cross 4 rows s%d", kn, sp);
    t_attn_case(nm, 4, 1560, 512, 12, 128, NULL, true, LG_BF16);
  }
  /* persistent blocks taking many items each (a grid of 7: 40-90 items per block), with rows
   * of no keys, masked tails, key splits and shared K/V; then one block per item */
  if (!g_filter || !strcmp(g_filter, "wgmma10")) {
    int32_t k1[2] = {9360, 3120}, k2[2] = {77, 0}, k4[2] = {77, 3};
    const int sp[2] = {0, 2};
    for (int i = 0; i < 2; i++) {
      char nm[64];
      lg_cuda_attn_set_kernel(10, sp[i]);
      lg_cuda_attn_set_grid(7);
      snprintf(nm, sizeof nm, "attention wgmma10 grid 7 kv 9360/3120 s%d", sp[i]);
      t_attn_case(nm, 2, 1560, 9360, 12, 128, k1, false, LG_BF16);
      snprintf(nm, sizeof nm, "attention wgmma10 grid 7 kv 77/0 s%d", sp[i]);
      t_attn_case(nm, 2, 1560, 9360, 12, 128, k2, false, LG_BF16);
      snprintf(nm, sizeof nm, "attention wgmma10 grid 7 Lq37 shared kv77 s%d", sp[i]);
      t_attn_case(nm, 2, 37, 512, 12, 128, k4, true, LG_BF16);
      lg_cuda_attn_set_grid(0);
      snprintf(nm, sizeof nm, "attention wgmma10 block per item kv 9360/3120 s%d", sp[i]);
      t_attn_case(nm, 2, 1560, 9360, 12, 128, k1, false, LG_BF16);
    }
    lg_cuda_attn_set_grid(-1);
  }
  lg_cuda_attn_set_kernel(0, -2);
}

static void t_attention(void) {
  if (g_filter && !strncmp(g_filter, "wgmma", 5)) { /* "wgmmaN": kernel N's wgmma cases only */
    t_attn_wgmma();
    return;
  }
  if (!want("attention")) return;
  t_attn_wgmma();
  t_attn_bias();
  int32_t kvl[2] = {150, 93};
  t_attn_case("attention flash d128 kv_len", 2, 77, 150, 3, 128, kvl, false, LG_BF16);
  int32_t kvl2[2] = {200, 64};
  t_attn_case("attention flash d64 kv_len", 2, 130, 200, 2, 64, kvl2, false, LG_BF16);
  t_attn_case("attention flash shared K/V (cross)", 2, 65, 96, 2, 128, NULL, true, LG_BF16);
  int32_t kvl3[2] = {45, 1};
  t_attn_case("attention fallback d40", 2, 33, 50, 2, 40, kvl3, false, LG_BF16);
  int32_t kvl5[2] = {70, 41};
  t_attn_case("attention fallback f32 d128", 2, 21, 70, 2, 128, kvl5, false, LG_F32);
  /* the Wan VAE's middle attention: one head of C = 384 over a frame's pixels */
  t_attn_case("attention fallback d384 (VAE mid)", 2, 70, 70, 1, 384, NULL, false, LG_BF16);
  int32_t kvl4[1] = {1560 * 3};
  t_attn_case("attention flash long (3 frames)", 1, 300, 1560 * 3, 2, 128, kvl4, false, LG_BF16);
}

/* Defined in cuda/cuda_conv.cu: conv3d path override (0 auto: the fastest path, timed once per
 * shape; 1 im2col + GEMM; 2 cuDNN as planned wherever it has an algorithm; 3 split: a 3-d conv
 * as kt accumulated 2-d cuDNN convs, bias fused into the last where cuDNN allows it; 4 direct:
 * the mma kernel for Co <= 8, Ci % 32 == 0; 3 and 4 run cuDNN where they do not apply; -1 the
 * environment) and what the last conv3d ran. */
void lg_cuda_conv_set_mode(int mode);
const char *lg_cuda_conv_last(lg_backend *be);

typedef struct conv_case {
  const char *n;
  int64_t T, H, W, Ci, Co, kt, kh, kw;
  lg_conv_opts o;
  bool w4;      /* 4-d [Co,Ci,kh,kw] weight (Conv2d: resample convs, TAEHV) */
  bool strided; /* x a channel view of a wider tensor */
} conv_case;

static void conv_out_shape(const conv_case *c, int64_t *ys) {
  const lg_conv_opts *o = &c->o;
  int st = o->stride[0] ? o->stride[0] : 1, sh = o->stride[1] ? o->stride[1] : 1,
      sw = o->stride[2] ? o->stride[2] : 1;
  ys[0] = (c->T + o->pad_t_front + o->pad_t_back - c->kt) / st + 1;
  ys[1] = (c->H + o->pad_h[0] + o->pad_h[1] - c->kh) / sh + 1;
  ys[2] = (c->W + o->pad_w[0] + o->pad_w[1] - c->kw) / sw + 1;
  ys[3] = c->Co;
}

static void poison(lg_tensor *t) {
  size_t nb = lg_tensor_nbytes(t);
  uint8_t *ff = malloc(nb ? nb : 1);
  memset(ff, 0xff, nb);
  must(lg_tensor_upload(t, ff), "poison");
  free(ff);
}

/* Every conv3d shape class of the Wan VAE / TAEHV at small sizes (and two at real width)
 * against the CPU, once per path: auto (the plan's choice, made on the first call), cuDNN
 * forced, im2col forced; y is poisoned before each GPU call. */
static void t_conv(void) {
  if (!want("conv")) return;
  const lg_conv_opts p1 = {.pad_h = {1, 1}, .pad_w = {1, 1}};
  const lg_conv_opts down = {.stride = {1, 2, 2}, .pad_h = {0, 1}, .pad_w = {0, 1}};
  conv_case cs[] = {
      {"conv3d patchify k(1,2,2) s(1,2,2)",
       2,
       6,
       10,
       16,
       24,
       1,
       2,
       2,
       {.stride = {1, 2, 2}},
       false,
       false},
      {"conv3d k3 clip pad_t 2",
       3,
       5,
       7,
       8,
       12,
       3,
       3,
       3,
       {.pad_t_front = 2, .pad_h = {1, 1}, .pad_w = {1, 1}},
       false,
       false},
      {"conv3d k3 causal (cache in x)", 5, 6, 10, 32, 32, 3, 3, 3, p1, false, false},
      {"conv3d k3 causal tiny C8", 3, 5, 7, 8, 8, 3, 3, 3, p1, false, false},
      {"conv3d k3 head Co3", 4, 6, 8, 16, 3, 3, 3, 3, p1, false, false},
      {"conv3d k3 input Ci3", 4, 6, 8, 3, 16, 3, 3, 3, p1, false, false},
      {"conv3d k3 strided x", 4, 5, 6, 16, 24, 3, 3, 3, p1, false, true},
      {"conv3d time k(3,1,1)", 5, 4, 6, 16, 32, 3, 1, 1, {.stride = {1, 1, 1}}, false, false},
      {"conv3d time k(3,1,1) s2", 5, 4, 6, 16, 16, 3, 1, 1, {.stride = {2, 1, 1}}, false, false},
      {"conv2d k3 p1 4-d w, frames", 4, 6, 10, 16, 24, 1, 3, 3, p1, true, false},
      {"conv2d k3 p1 tiny C8 4-d w", 2, 5, 7, 8, 8, 1, 3, 3, p1, true, false},
      {"conv2d k3 s2 pad r/b", 1, 9, 11, 8, 6, 1, 3, 3, down, false, false},
      {"conv2d k3 s2 pad r/b C32 4-d w", 2, 10, 12, 32, 32, 1, 3, 3, down, true, false},
      {"conv3d 1x1x1", 2, 4, 5, 24, 40, 1, 1, 1, {.stride = {1, 1, 1}}, false, false},
      {"conv2d k3 s2 C96 120x208 (real)", 1, 120, 208, 96, 96, 1, 3, 3, down, true, false},
      {"conv3d k3 C384 60x104 (real)", 3, 60, 104, 384, 384, 3, 3, 3, p1, false, false},
      /* the split and direct paths: real widths at small frames, odd shapes */
      {"conv3d k3 C96 48x80 (real width)", 6, 48, 80, 96, 96, 3, 3, 3, p1, false, false},
      {"conv3d k3 C96 1 out frame", 3, 20, 36, 96, 96, 3, 3, 3, p1, false, false},
      {"conv3d k3 head Co3 C96", 6, 20, 36, 96, 3, 3, 3, 3, p1, false, false},
      {"conv3d k3 head Co3 C96 W 23", 3, 11, 23, 96, 3, 3, 3, 3, p1, false, false},
      {"conv3d k3 Co8 C32 strided x", 4, 9, 21, 32, 8, 3, 3, 3, p1, false, true},
      {"conv3d k3 Co5 C64 clip pad_t 2",
       3,
       7,
       9,
       64,
       5,
       3,
       3,
       3,
       {.pad_t_front = 2, .pad_h = {1, 1}, .pad_w = {1, 1}},
       false,
       false},
      {"conv2d k3 out Co3 C64 4-d w", 2, 17, 35, 64, 3, 1, 3, 3, p1, true, false},
      {"conv2d k3 s2 pad r/b Co6 C32", 2, 10, 12, 32, 6, 1, 3, 3, down, true, false},
      {"conv3d time k(3,1,1) s1 C96->192",
       4,
       6,
       10,
       96,
       192,
       3,
       1,
       1,
       {.stride = {1, 1, 1}},
       false,
       false},
  };
  static const char *const mode_nm[5] = {"auto", "im2col", "cudnn", "split",
                                         "direct"}; /* set_mode */
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    const conv_case *k = &cs[i];
    int64_t cx = k->strided ? k->Ci + 8 : k->Ci;
    int64_t xs[4] = {k->T, k->H, k->W, cx}, ys[4];
    int64_t ws[5] = {k->Co, k->Ci, k->kt, k->kh, k->kw}, bs[1] = {k->Co};
    int64_t w4[4] = {k->Co, k->Ci, k->kh, k->kw};
    conv_out_shape(k, ys);
    pair x = mk(LG_BF16, 4, xs, -1, 1), w = mk(LG_BF16, 5, ws, -0.3f, 0.3f),
         b = mk(LG_BF16, 1, bs, -1, 1), y = mk_out(LG_BF16, 4, ys);
    lg_tensor xc = x.c, xg = x.g;
    if (k->strided) {
      int64_t ne[4] = {k->T, k->H, k->W, k->Ci}, nb[4] = {k->H * k->W * cx, k->W * cx, cx, 1};
      view2(&x, &xc, &xg, 4, ne, nb, 4);
    }
    lg_tensor host = k->w4 ? lg_tensor_make(NULL, w.h, LG_F32, 4, w4)
                           : lg_tensor_make(NULL, w.h, LG_F32, 5, ws),
              wg, wc;
    int rc = g_gpu->ops->load_weight(g_gpu, &wg, &host, LG_WEIGHT_CONV);
    if (!rc) rc = g_cpu->ops->load_weight(g_cpu, &wc, &host, LG_WEIGHT_CONV);
    if (!rc) rc = LG_OP(g_cpu, conv3d, &y.c, &xc, &wc, &b.c, &k->o);
    for (int m = 0; m < 5; m++) {
      lg_cuda_conv_set_mode(m);
      poison(&y.g);
      int rg = rc ? rc : LG_OP(g_gpu, conv3d, &y.g, &xg, &wg, &b.g, &k->o);
      char nm[80], shape[96];
      snprintf(nm, sizeof nm, "%s [%s]", k->n, mode_nm[m]);
      snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]->%lld %.28s", (long long)k->T,
               (long long)k->H, (long long)k->W, (long long)k->Ci, (long long)k->Co,
               lg_cuda_conv_last(g_gpu));
      row(nm, shape, rg ? 0 : rel_err(&y.g, &y.c), TOL_GEMM, rg);
    }
    lg_cuda_conv_set_mode(-1);
    if (!rc) {
      g_gpu->ops->free(g_gpu, wg.data);
      g_cpu->ops->free(g_cpu, wc.data);
    }
    pfree(&x), pfree(&w), pfree(&b), pfree(&y);
  }
}

/* The Wan VAE's middle attention through the GEMM path (one head, dim > 128): the real size
 * (one frame of 60x104 = 6240 tokens, C = 384, q/k/v thirds of one qkv row as the model passes
 * them), two batch rows with kv_len, and shared K/V. */
static void t_attn_gemm(void) {
  if (!want("attention gemm")) return;
  int32_t kvl[2] = {70, 33};
  t_attn_case("attention gemm d384 kv_len", 2, 70, 70, 1, 384, kvl, false, LG_BF16);
  t_attn_case("attention gemm d256 shared K/V", 2, 45, 60, 1, 256, NULL, true, LG_BF16);
  {
    const int64_t L = 6240, C = 384;
    int64_t qs[2] = {L, 3 * C}, os[4] = {1, L, 1, C};
    pair qkv = mk(LG_BF16, 2, qs, -2, 2), o = mk_out(LG_BF16, 4, os);
    lg_tensor qc, qg, kc, kg, vc, vg;
    int64_t ne[4] = {1, L, 1, C}, nb[4] = {L * 3 * C, 3 * C, C, 1};
    view2(&qkv, &qc, &qg, 4, ne, nb, 0);
    view2(&qkv, &kc, &kg, 4, ne, nb, C);
    view2(&qkv, &vc, &vg, 4, ne, nb, 2 * C);
    float scale = 1.f / sqrtf((float)C);
    int rc = LG_OP(g_gpu, attention, &o.g, &qg, &kg, &vg, NULL, scale);
    if (!rc) rc = LG_OP(g_cpu, attention, &o.c, &qc, &kc, &vc, NULL, scale);
    row("attention gemm d384 (VAE mid 60x104)", "B1 L6240 h1 d384 qkv view",
        rc ? 0 : rel_err(&o.g, &o.c), TOL_ATTN, rc);
    pfree(&qkv), pfree(&o);
  }
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Median ms of 10 timed calls of one conv (after 2 warm-ups) in the current mode. */
static double conv_time(lg_tensor *y, lg_tensor *x, lg_tensor *w, lg_tensor *b,
                        const lg_conv_opts *o) {
  float t[10];
  for (int i = 0; i < 2; i++)
    must(LG_OP(g_gpu, conv3d, y, x, w, b, o), "conv3d");
  for (int i = 0; i < 10; i++) {
    must(lg_cuda_mark(g_gpu, 6), "mark");
    must(LG_OP(g_gpu, conv3d, y, x, w, b, o), "conv3d");
    must(lg_cuda_mark(g_gpu, 7), "mark");
    must(lg_cuda_elapsed_ms(g_gpu, 6, 7, &t[i]), "elapsed");
  }
  qsort(t, 10, sizeof t[0], cmp_float);
  return 0.5 * (t[4] + t[5]);
}

/* conv3d alone at the Wan VAE's (480x832) and TAEHV's real shapes: cuDNN forced vs im2col, and
 * what auto mode chose; then the VAE middle attention. */
static void perf_conv(void) {
  const lg_conv_opts p1 = {.pad_h = {1, 1}, .pad_w = {1, 1}};
  const lg_conv_opts down = {.stride = {1, 2, 2}, .pad_h = {0, 1}, .pad_w = {0, 1}};
  const lg_conv_opts none = {.stride = {1, 1, 1}};
  conv_case cs[] = {
      {"vae dec conv1 k3 16->384", 3, 60, 104, 16, 384, 3, 3, 3, p1, false, false},
      {"vae k3 384 60x104 (1 frame)", 3, 60, 104, 384, 384, 3, 3, 3, p1, false, false},
      {"vae k3 384 120x208 (2 frames)", 4, 120, 208, 384, 384, 3, 3, 3, p1, false, false},
      {"vae k3 192 240x416 (4 frames)", 6, 240, 416, 192, 192, 3, 3, 3, p1, false, false},
      {"vae k3 384 240x416 (4 frames)", 6, 240, 416, 384, 384, 3, 3, 3, p1, false, false},
      {"vae k3 96 480x832 (4 frames)", 6, 480, 832, 96, 96, 3, 3, 3, p1, false, false},
      {"vae dec head k3 96->3", 6, 480, 832, 96, 3, 3, 3, 3, p1, false, false},
      {"vae enc conv1 k3 3->96", 6, 480, 832, 3, 96, 3, 3, 3, p1, false, false},
      {"vae time k(3,1,1) 384->768", 3, 60, 104, 384, 768, 3, 1, 1, none, false, false},
      {"vae time k(3,1,1) 384->768 x2", 4, 120, 208, 384, 768, 3, 1, 1, none, false, false},
      {"vae up conv2d 384->192 120x208", 1, 120, 208, 384, 192, 1, 3, 3, p1, true, false},
      {"vae up conv2d 384->192 240x416", 1, 240, 416, 384, 192, 1, 3, 3, p1, true, false},
      {"vae up conv2d 192->96 480x832", 1, 480, 832, 192, 96, 1, 3, 3, p1, true, false},
      {"vae enc down s2 96 480x832", 4, 480, 832, 96, 96, 1, 3, 3, down, true, false},
      {"vae enc down s2 384 120x208", 2, 120, 208, 384, 384, 1, 3, 3, down, true, false},
      {"vae enc time s2 k(3,1,1) 384",
       5,
       60,
       104,
       384,
       384,
       3,
       1,
       1,
       {.stride = {2, 1, 1}},
       false,
       false},
      {"taehv conv2d 256 60x104", 4, 60, 104, 256, 256, 1, 3, 3, p1, true, false},
      {"taehv memblock 512->256 60x104", 4, 60, 104, 512, 256, 1, 3, 3, p1, true, false},
      {"taehv conv2d 64 480x832", 1, 480, 832, 64, 64, 1, 3, 3, p1, true, false},
      {"taehv memblock 128->64 480x832", 1, 480, 832, 128, 64, 1, 3, 3, p1, true, false},
      {"taehv out 64->3 480x832", 1, 480, 832, 64, 3, 1, 3, 3, p1, true, false},
  };
  printf("\nconv3d on %s, bf16, median of 10 (ms; TFLOP/s = 2*out*Co*Ci*k / time):\n\n",
         lg_cuda_device_name(g_gpu));
  printf("| %-32s | %-22s | %9s | %7s | %9s | %7s | %9s | %7s | %9s | %7s | %s |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|\n",
         "shape", "x -> Co", "cudnn ms", "TFLOP/s", "split ms", "TFLOP/s", "direct ms", "TFLOP/s",
         "im2col ms", "TFLOP/s", "auto chose (its time)");
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    const conv_case *k = &cs[i];
    int64_t xs[4] = {k->T, k->H, k->W, k->Ci}, ys[4], bs[1] = {k->Co};
    int64_t ws[5] = {k->Co, k->Ci, k->kt, k->kh, k->kw}, w4[4] = {k->Co, k->Ci, k->kh, k->kw};
    conv_out_shape(k, ys);
    lg_tensor x, y, b, wg;
    must(lg_tensor_alloc(g_gpu, &x, LG_BF16, 4, xs), "alloc");
    must(lg_tensor_alloc(g_gpu, &y, LG_BF16, 4, ys), "alloc");
    must(lg_tensor_alloc(g_gpu, &b, LG_BF16, 1, bs), "alloc");
    int64_t nx = lg_tensor_numel(&x), nw = k->Co * k->Ci * k->kt * k->kh * k->kw;
    float *h = rand_vals(nx > nw ? nx : nw, -1, 1);
    must(lg_tensor_upload_f32(&x, h), "upload");
    must(lg_tensor_upload_f32(&b, h), "upload");
    lg_tensor host =
        k->w4 ? lg_tensor_make(NULL, h, LG_F32, 4, w4) : lg_tensor_make(NULL, h, LG_F32, 5, ws);
    must(g_gpu->ops->load_weight(g_gpu, &wg, &host, LG_WEIGHT_CONV), "load_weight");
    free(h);
    double flop = 2.0 * ys[0] * ys[1] * ys[2] * k->Co * k->Ci * k->kt * k->kh * k->kw;
    char chose[160];
    lg_cuda_conv_set_mode(0);
    must(LG_OP(g_gpu, conv3d, &y, &x, &wg, &b, &k->o), "conv3d"); /* makes the plan */
    must(LG_OP(g_gpu, conv3d, &y, &x, &wg, &b, &k->o), "conv3d");
    snprintf(chose, sizeof chose, "%s", lg_cuda_conv_last(g_gpu));
    lg_cuda_conv_set_mode(0);
    double ta = conv_time(&y, &x, &wg, &b, &k->o);
    lg_cuda_conv_set_mode(2);
    double tc = conv_time(&y, &x, &wg, &b, &k->o);
    double tsp = -1, tdi = -1; /* forced split / direct, where they apply */
    lg_cuda_conv_set_mode(3);
    must(LG_OP(g_gpu, conv3d, &y, &x, &wg, &b, &k->o), "conv3d");
    if (!strncmp(lg_cuda_conv_last(g_gpu), "split", 5)) tsp = conv_time(&y, &x, &wg, &b, &k->o);
    lg_cuda_conv_set_mode(4);
    must(LG_OP(g_gpu, conv3d, &y, &x, &wg, &b, &k->o), "conv3d");
    if (!strncmp(lg_cuda_conv_last(g_gpu), "direct", 6)) tdi = conv_time(&y, &x, &wg, &b, &k->o);
    lg_cuda_conv_set_mode(1);
    double ti = conv_time(&y, &x, &wg, &b, &k->o);
    lg_cuda_conv_set_mode(-1);
    char sh[64];
    snprintf(sh, sizeof sh, "[%lld,%lld,%lld,%lld]->%lld", (long long)xs[0], (long long)xs[1],
             (long long)xs[2], (long long)xs[3], (long long)k->Co);
    printf("| %-32s | %-22s | %9.3f | %7.1f | %9.3f | %7.1f | %9.3f | %7.1f | %9.3f | %7.1f | %s "
           "(%.3f ms) |\n",
           k->n, sh, tc, flop / (tc * 1e9), tsp, tsp > 0 ? flop / (tsp * 1e9) : 0.0, tdi,
           tdi > 0 ? flop / (tdi * 1e9) : 0.0, ti, flop / (ti * 1e9), chose, ta);
    fflush(stdout);
    g_gpu->ops->free(g_gpu, wg.data);
    lg_tensor_free(&x), lg_tensor_free(&y), lg_tensor_free(&b);
  }
  {
    const int64_t L = 6240, C = 384;
    int64_t qs[4] = {1, L, 1, C};
    lg_tensor q, k, v, o;
    lg_tensor *all[4] = {&q, &k, &v, &o};
    for (int i = 0; i < 4; i++) {
      must(lg_tensor_alloc(g_gpu, all[i], LG_BF16, 4, qs), "alloc");
      float *h = rand_vals(L * C, -2, 2);
      must(lg_tensor_upload_f32(all[i], h), "upload");
      free(h);
    }
    float t[10];
    for (int i = 0; i < 2; i++)
      must(LG_OP(g_gpu, attention, &o, &q, &k, &v, NULL, 0.051f), "attention");
    for (int i = 0; i < 10; i++) {
      must(lg_cuda_mark(g_gpu, 6), "mark");
      must(LG_OP(g_gpu, attention, &o, &q, &k, &v, NULL, 0.051f), "attention");
      must(lg_cuda_mark(g_gpu, 7), "mark");
      must(lg_cuda_elapsed_ms(g_gpu, 6, 7, &t[i]), "elapsed");
    }
    qsort(t, 10, sizeof t[0], cmp_float);
    double ms = 0.5 * (t[4] + t[5]);
    printf("\nattention B1 L6240 h1 d384 (VAE mid, GEMM path): %.3f ms, %.1f TFLOP/s\n", ms,
           4.0 * L * L * C / (ms * 1e9));
    for (int i = 0; i < 4; i++)
      lg_tensor_free(all[i]);
  }
}

static void t_misc(void) {
  if (!want("upsample") && !want("cosine") && !want("sq_diff")) return;
  int64_t xs[4] = {2, 3, 5, 7}, ys[4] = {2, 6, 10, 7};
  pair x = mk(LG_BF16, 4, xs, -1, 1), y = mk_out(LG_BF16, 4, ys);
  int rc = LG_OP(g_gpu, upsample2x, &y.g, &x.g);
  if (!rc) rc = LG_OP(g_cpu, upsample2x, &y.c, &x.c);
  row("upsample2x", "[2,3,5,7]", rc ? 0 : rel_err(&y.g, &y.c), TOL_ELEM, rc);
  int64_t s2[2] = {33, 130};
  pair a = mk(LG_BF16, 2, s2, -1, 1), b = mk(LG_BF16, 2, s2, -1, 1);
  double cg = 0, cc = 0, qg = 0, qc = 0;
  rc = LG_OP(g_gpu, axpby, &b.g, 0.5f, &a.g, 0.5f, &b.g); /* correlate a and b */
  if (!rc) rc = LG_OP(g_cpu, axpby, &b.c, 0.5f, &a.c, 0.5f, &b.c);
  if (!rc) rc = LG_OP(g_gpu, cosine_mean, &cg, &a.g, &b.g);
  if (!rc) rc = LG_OP(g_cpu, cosine_mean, &cc, &a.c, &b.c);
  row("cosine_mean", "[33,130]", rc ? 0 : fabs(cg - cc) / fabs(cc), TOL_ELEM, rc);
  if (!rc) rc = LG_OP(g_gpu, sq_diff_sum, &qg, &a.g, &b.g);
  if (!rc) rc = LG_OP(g_cpu, sq_diff_sum, &qc, &a.c, &b.c);
  row("sq_diff_sum", "[33,130]", rc ? 0 : fabs(qg - qc) / fabs(qc), TOL_ELEM, rc);
  pfree(&x), pfree(&y), pfree(&a), pfree(&b);
}

/* ---- pixel path (U8 copy, pixels_from_u8, pixels_to_u8): bit-exact against the CPU ---- */

/* New contiguous U8 tensor on be holding bytes (NULL: 0xff poison). */
static lg_tensor px_u8(lg_backend *be, int nd, const int64_t *sh, const uint8_t *bytes) {
  lg_tensor t;
  must(lg_tensor_alloc(be, &t, LG_U8, nd, sh), "u8 alloc");
  size_t nb = lg_tensor_nbytes(&t);
  uint8_t *ff = NULL;
  if (!bytes) {
    ff = malloc(nb ? nb : 1);
    memset(ff, 0xff, nb);
  }
  must(lg_tensor_upload(&t, bytes ? bytes : ff), "u8 upload");
  free(ff);
  return t;
}

/* New contiguous tensor of dtype dt on be holding v (NULL: NaN poison). */
static lg_tensor px_f(lg_backend *be, lg_dtype dt, int nd, const int64_t *sh, const float *v) {
  lg_tensor t;
  must(lg_tensor_alloc(be, &t, dt, nd, sh), "alloc");
  int64_t n = lg_tensor_numel(&t);
  float *nan = NULL;
  if (!v) {
    nan = malloc((size_t)(n ? n : 1) * sizeof *nan);
    for (int64_t i = 0; i < n; i++)
      nan[i] = NAN;
  }
  must(lg_tensor_upload_f32(&t, v ? v : nan), "upload");
  free(nan);
  return t;
}

/* Elements that differ between the gpu and cpu tensors (bitwise on the f32 values, NaN equal
 * to NaN only), over whole contiguous tensors of any dtype. */
static double px_mismatch(const lg_tensor *gt, const lg_tensor *ct) {
  int64_t n = lg_tensor_numel(ct);
  if (gt->dtype == LG_U8) {
    uint8_t *a = malloc((size_t)(n ? n : 1)), *b = malloc((size_t)(n ? n : 1));
    must(lg_tensor_download(gt, a), "gpu download");
    must(lg_tensor_download(ct, b), "cpu download");
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
      bad += a[i] != b[i];
    free(a);
    free(b);
    return (double)bad;
  }
  float *a = malloc((size_t)(n ? n : 1) * 4), *b = malloc((size_t)(n ? n : 1) * 4);
  must(lg_tensor_download_f32(gt, a), "gpu download");
  must(lg_tensor_download_f32(ct, b), "cpu download");
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    bad += (isnan(a[i]) != isnan(b[i])) || (!isnan(a[i]) && memcmp(&a[i], &b[i], 4));
  free(a);
  free(b);
  return (double)bad;
}

/* Values that exercise the U8 rounding: .5 ties, both sides of the (x+1)*127.5 boundaries,
 * clamping and non-finite values, then uniform [-1.2,1.2) (n >= 64). */
static float *px_edge_vals(int64_t n, bool pixel_scale) {
  float *v = malloc((size_t)n * sizeof *v);
  static const float fixed[] = {0.5f, 1.5f,     2.5f,      253.5f, 254.5f, -0.5f, 255.6f, 300.f,
                                NAN,  INFINITY, -INFINITY, 0.f,    -1.f,   1.f,   1.01f,  -1.01f};
  int64_t i = 0;
  for (; i < 16; i++)
    v[i] = fixed[i];
  for (int k = 0; i + 3 <= 64; k += 13, i += 3) {
    float b = (float)((k + 0.5) / 127.5 - 1.0);
    if (!pixel_scale) b = (float)k + 0.5f;
    v[i] = nextafterf(b, -INFINITY), v[i + 1] = b, v[i + 2] = nextafterf(b, INFINITY);
  }
  for (; i < n; i++)
    v[i] = pixel_scale ? -1.2f + 2.4f * (float)lg_rng_uniform(&g_rng)
                       : -20.f + 300.f * (float)lg_rng_uniform(&g_rng);
  return v;
}

static void t_pixels(void) {
  if (!want("pixels") && !want("copy u8")) return;
  /* bytes [5,7,9] (315: every value), viewed permuted as [9,5,7] */
  int64_t sh[3] = {5, 7, 9}, psh[3] = {9, 5, 7};
  int perm[3] = {2, 0, 1};
  uint8_t bytes[315];
  for (int i = 0; i < 315; i++)
    bytes[i] = (uint8_t)(i < 256 ? (i * 97) & 255 : lg_rng_next(&g_rng) & 255);
  lg_tensor uc = px_u8(g_cpu, 3, sh, bytes), ug = px_u8(g_gpu, 3, sh, bytes);
  lg_tensor upc = lg_tensor_permute(&uc, perm), upg = lg_tensor_permute(&ug, perm);
  const lg_dtype fdt[3] = {LG_F32, LG_F16, LG_BF16};
  char nm[64];
  for (int k = 0; k < 3; k++) {
    /* copy U8 -> float (permuted source), float -> U8 back */
    lg_tensor yc = px_f(g_cpu, fdt[k], 3, psh, NULL), yg = px_f(g_gpu, fdt[k], 3, psh, NULL);
    int rc = LG_OP(g_gpu, copy, &yg, &upg);
    if (!rc) rc = LG_OP(g_cpu, copy, &yc, &upc);
    snprintf(nm, sizeof nm, "copy u8->%s permuted", lg_dtype_name(fdt[k]));
    row(nm, "[9,5,7] of [5,7,9], mismatches", rc ? 0 : px_mismatch(&yg, &yc), 0, rc);
    lg_tensor bc = px_u8(g_cpu, 3, psh, NULL), bg = px_u8(g_gpu, 3, psh, NULL);
    rc = LG_OP(g_gpu, copy, &bg, &yg);
    if (!rc) rc = LG_OP(g_cpu, copy, &bc, &yc);
    snprintf(nm, sizeof nm, "copy %s->u8 (round trip)", lg_dtype_name(fdt[k]));
    row(nm, "[9,5,7], mismatches", rc ? 0 : px_mismatch(&bg, &bc), 0, rc);
    lg_tensor_free(&bc), lg_tensor_free(&bg), lg_tensor_free(&yc), lg_tensor_free(&yg);
    /* copy float -> U8 at the rounding edges (ties to even, saturation, NaN) */
    int64_t esh[2] = {13, 11};
    float *ev = px_edge_vals(143, false);
    lg_tensor ec = px_f(g_cpu, fdt[k], 2, esh, ev), eg = px_f(g_gpu, fdt[k], 2, esh, ev);
    lg_tensor oc = px_u8(g_cpu, 2, esh, NULL), og = px_u8(g_gpu, 2, esh, NULL);
    rc = LG_OP(g_gpu, copy, &og, &eg);
    if (!rc) rc = LG_OP(g_cpu, copy, &oc, &ec);
    snprintf(nm, sizeof nm, "copy %s->u8 ties/clamp/nan", lg_dtype_name(fdt[k]));
    row(nm, "[13,11], mismatches", rc ? 0 : px_mismatch(&og, &oc), 0, rc);
    lg_tensor_free(&oc), lg_tensor_free(&og), lg_tensor_free(&ec), lg_tensor_free(&eg);
    free(ev);
    /* pixels_from_u8: contiguous and permuted sources */
    for (int strided = 0; strided < 2; strided++) {
      lg_tensor pc = px_f(g_cpu, fdt[k], 3, strided ? psh : sh, NULL),
                pg = px_f(g_gpu, fdt[k], 3, strided ? psh : sh, NULL);
      rc = lg_backend_pixels_from_u8(g_gpu, &pg, strided ? &upg : &ug);
      if (!rc) rc = lg_backend_pixels_from_u8(g_cpu, &pc, strided ? &upc : &uc);
      snprintf(nm, sizeof nm, "pixels_from_u8 ->%s%s", lg_dtype_name(fdt[k]),
               strided ? " permuted" : "");
      row(nm, strided ? "[9,5,7] of [5,7,9], mismatches" : "[5,7,9], mismatches",
          rc ? 0 : px_mismatch(&pg, &pc), 0, rc);
      lg_tensor_free(&pc), lg_tensor_free(&pg);
    }
    /* pixels_to_u8: edge values, contiguous and into a strided (every other byte) view */
    int64_t fsh[4] = {2, 7, 9, 3}, dsh[4] = {2, 7, 9, 6};
    float *fv = px_edge_vals(378, true);
    lg_tensor xc = px_f(g_cpu, fdt[k], 4, fsh, fv), xg = px_f(g_gpu, fdt[k], 4, fsh, fv);
    for (int strided = 0; strided < 2; strided++) {
      lg_tensor qc = px_u8(g_cpu, 4, strided ? dsh : fsh, NULL),
                qg = px_u8(g_gpu, 4, strided ? dsh : fsh, NULL);
      lg_tensor vc = qc, vg = qg;
      if (strided) {
        vc.ne[3] = vg.ne[3] = 3;
        vc.nb[3] = vg.nb[3] = 2;
      }
      rc = lg_backend_pixels_to_u8(g_gpu, &vg, &xg);
      if (!rc) rc = lg_backend_pixels_to_u8(g_cpu, &vc, &xc);
      snprintf(nm, sizeof nm, "pixels_to_u8 %s%s", lg_dtype_name(fdt[k]),
               strided ? " strided out" : "");
      row(nm, "[2,7,9,3], mismatches", rc ? 0 : px_mismatch(&qg, &qc), 0, rc);
      lg_tensor_free(&qc), lg_tensor_free(&qg);
    }
    lg_tensor_free(&xc), lg_tensor_free(&xg);
    free(fv);
  }
  lg_tensor_free(&uc), lg_tensor_free(&ug);
}

/* The Wan VAE's elementwise fast paths (contiguous bf16, 16-byte vectors): channel_rms_norm and
 * its fusion with SiLU at the VAE widths (C 96/192/384 at 60x104) and odd sizes (a partial last
 * lane, 1 and 32 lanes per row, strided rows, C % 8 != 0 on the general path, in place), the
 * residual axpby (with a tail of n % 8), upsample2x per vector, and a strided (interleave-like)
 * bf16 copy in vectors. The CPU side of the fused op is the unfused pair. */
static void t_vae_elem(void) {
  static const struct {
    int nd;
    int64_t sh[4];
    int stride2; /* 1: x is the first C channels of rows of 2C (strided rows) */
    int inplace;
  } ns[] = {{4, {2, 60, 104, 96}, 0, 0}, {4, {1, 60, 104, 192}, 0, 0}, {4, {1, 60, 104, 384}, 0, 1},
            {4, {3, 7, 11, 104}, 0, 0},  {4, {5, 3, 7, 8}, 0, 0},      {2, {37, 1024}, 0, 0},
            {2, {33, 96}, 1, 0},         {4, {2, 5, 9, 13}, 0, 0},     {2, {41, 200}, 0, 1}};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    int nd = ns[i].nd;
    int64_t C = ns[i].sh[nd - 1], g1[1] = {C}, xs[4];
    char shape[64];
    int n = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < nd; d++) {
      xs[d] = ns[i].sh[d];
      n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? "," : "", (long long)xs[d]);
    }
    snprintf(shape + n, sizeof shape - (size_t)n, "]%s%s", ns[i].stride2 ? " rows of 2C" : "",
             ns[i].inplace ? " in place" : "");
    if (ns[i].stride2) xs[nd - 1] = 2 * C;
    for (int silu = 0; silu < 2; silu++) {
      const char *nm = silu ? "vae channel_rms_norm_silu" : "vae channel_rms_norm";
      if (!want(nm)) continue;
      pair x = mk(LG_BF16, nd, xs, -3, 3), gm = mk(LG_BF16, 1, g1, 0.5f, 1.5f);
      pair y = mk_out(LG_BF16, nd, ns[i].sh);
      lg_tensor xc = x.c, xg = x.g, *yc = &y.c, *yg = &y.g;
      if (ns[i].stride2) {
        int64_t nb[2] = {2 * C, 1};
        view2(&x, &xc, &xg, 2, ns[i].sh, nb, 0);
      }
      if (ns[i].inplace) yc = &xc, yg = &xg;
      int rc = silu ? lg_backend_channel_rms_norm_silu(g_gpu, yg, &xg, &gm.g)
                    : LG_OP(g_gpu, channel_rms_norm, yg, &xg, &gm.g);
      if (!rc)
        rc = silu ? lg_backend_channel_rms_norm_silu(g_cpu, yc, &xc, &gm.c)
                  : LG_OP(g_cpu, channel_rms_norm, yc, &xc, &gm.c);
      row(nm, shape, rc ? 0 : rel_err(yg, yc), TOL_NORM, rc);
      pfree(&x), pfree(&gm), pfree(&y);
    }
  }
  if (want("vae axpby")) {
    static const int64_t as[3][4] = {{2, 60, 104, 96}, {3, 7, 11, 13}, {1, 1, 1, 5}};
    for (int i = 0; i < 3; i++) {
      for (int inplace = 0; inplace < 2; inplace++) {
        char shape[64];
        snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]%s", (long long)as[i][0],
                 (long long)as[i][1], (long long)as[i][2], (long long)as[i][3],
                 inplace ? " y = a" : "");
        pair a = mk(LG_BF16, 4, as[i], -2, 2), b = mk(LG_BF16, 4, as[i], -2, 2),
             y = mk_out(LG_BF16, 4, as[i]);
        lg_tensor *yg = inplace ? &a.g : &y.g, *yc = inplace ? &a.c : &y.c;
        int rc = LG_OP(g_gpu, axpby, yg, 1.0f, &a.g, 0.75f, &b.g);
        if (!rc) rc = LG_OP(g_cpu, axpby, yc, 1.0f, &a.c, 0.75f, &b.c);
        row("vae axpby bf16", shape, rc ? 0 : rel_err(yg, yc), TOL_ELEM, rc);
        pfree(&a), pfree(&b), pfree(&y);
      }
    }
  }
  if (want("vae upsample2x")) {
    static const int64_t us[3][4] = {{1, 30, 52, 96}, {2, 3, 5, 24}, {1, 4, 6, 12}};
    for (int i = 0; i < 3; i++) {
      int64_t ys[4] = {us[i][0], 2 * us[i][1], 2 * us[i][2], us[i][3]};
      char shape[64];
      snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]", (long long)us[i][0],
               (long long)us[i][1], (long long)us[i][2], (long long)us[i][3]);
      pair x = mk(LG_BF16, 4, us[i], -1, 1), y = mk_out(LG_BF16, 4, ys);
      int rc = LG_OP(g_gpu, upsample2x, &y.g, &x.g);
      if (!rc) rc = LG_OP(g_cpu, upsample2x, &y.c, &x.c);
      row("vae upsample2x bf16", shape, rc ? 0 : rel_err(&y.g, &y.c), TOL_ELEM, rc);
      pfree(&x), pfree(&y);
    }
  }
  if (want("vae copy")) {
    /* t [T,H,W,2C] -> y [2T,H,W,C] like the upsample's interleave: a 5-d strided source */
    int64_t T = 2, H = 7, W = 9, C = 16, ts[4] = {T, H, W, 2 * C}, ys[5] = {T, 2, H, W, C};
    int64_t sne[5] = {T, 2, H, W, C}, snb[5] = {H * W * 2 * C, C, W * 2 * C, 2 * C, 1};
    pair t = mk(LG_BF16, 4, ts, -1, 1), y = mk_out(LG_BF16, 5, ys);
    lg_tensor sc, sg;
    view2(&t, &sc, &sg, 5, sne, snb, 0);
    int rc = LG_OP(g_gpu, copy, &y.g, &sg);
    if (!rc) rc = LG_OP(g_cpu, copy, &y.c, &sc);
    row("vae copy strided bf16", "[2,2,7,9,16] of [2,7,9,32]", rc ? 0 : rel_err(&y.g, &y.c),
        TOL_ELEM, rc);
    pfree(&t), pfree(&y);
  }
}

/* ---------------------------------------------------------------- tiny DiT sequence */

typedef struct dit_side {
  lg_backend *be;
  lg_wan_dit *m;
  lg_dit_ws *ws;
  lg_kv_cache *kv;
  lg_tensor x, v;
} dit_side;

static int dit_side_init(dit_side *s, lg_backend *be, lg_ckpt *ck, int rows, int cap, int lh,
                         int lw, const float *ctx) {
  char err[256];
  memset(s, 0, sizeof *s);
  s->be = be;
  s->m = lg_wan_dit_load(be, ck, NULL, err, sizeof err);
  if (!s->m) {
    fprintf(stderr, "dit load on %s: %s\n", be->ops->name, err);
    return LG_EFORMAT;
  }
  s->ws = lg_dit_ws_new(s->m, rows * 2, lh, lw); /* calls of up to 2 frames per row */
  s->kv = lg_wan_dit_cache_new(s->m, rows, cap, lh, lw);
  if (!s->ws || !s->kv) return LG_ENOMEM;
  int rc = lg_kv_cache_clear(s->kv);
  if (!rc) rc = lg_wan_dit_set_context(s->m, s->ws, s->kv, ctx);
  return rc;
}

static void dit_side_free(dit_side *s) {
  lg_tensor_free(&s->x);
  lg_tensor_free(&s->v);
  lg_kv_cache_free(&s->kv);
  lg_dit_ws_free(&s->ws);
  lg_wan_dit_free(&s->m);
}

static void t_dit(void) {
  if (!want("dit")) return;
  char path[] = "/tmp/lg_gpu_tiny_dit_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    row("dit tiny: temp file", "-", 0, TOL_DIT, LG_EIO);
    return;
  }
  close(fd);
  int rc = lg_bench_write_random_ckpt("wan-dit", "tiny", path, 1234, LG_F32);
  char err[256] = "";
  lg_ckpt *ck = rc ? NULL : lg_ckpt_open(path, err, sizeof err);
  unlink(path);
  if (!ck) {
    fprintf(stderr, "tiny dit checkpoint: %s\n", err);
    row("dit tiny: checkpoint", "-", 0, TOL_DIT, rc ? rc : LG_EFORMAT);
    return;
  }
  const int rows = 2, cap = 4, lh = 6, lw = 10; /* 3x5 = 15 tokens per frame */
  const lg_wan_dit_config *cfg = NULL;
  float *ctx = NULL;
  dit_side c, g;
  memset(&c, 0, sizeof c), memset(&g, 0, sizeof g);
  {
    lg_wan_dit_config cf;
    rc = lg_wan_dit_read_config(ck, &cf, err, sizeof err);
    if (rc) goto done;
    ctx = rand_vals((int64_t)LG_DIT_TEXT_LEN * cf.text_dim, -1, 1);
    for (int r = 20 * cf.text_dim; r < LG_DIT_TEXT_LEN * cf.text_dim; r++)
      ctx[r] = 0.f; /* rows past a 20-token prompt are zero, as T5 gives them */
  }
  rc = dit_side_init(&c, g_cpu, ck, rows, cap, lh, lw, ctx);
  if (!rc) rc = dit_side_init(&g, g_gpu, ck, rows, cap, lh, lw, ctx);
  if (rc) goto done;
  cfg = lg_wan_dit_get_config(g.m);
  {
    /* the sequence: fill slots 0..3 over four calls (row 1 one call behind, like the stream
     * batch), then overwrite a non-sink slot, with timesteps and RoPE starts per row */
    struct {
      int F, kvf[2], slot[2][2], rope[2];
      float t[2];
    } calls[] = {
        {1, {1, 1}, {{0}, {0}}, {0, 0}, {700, 500}},
        {1, {2, 1}, {{1}, {0}}, {1, 0}, {700, 500}},
        {2, {4, 3}, {{2, 3}, {1, 2}}, {2, 1}, {500, 400}},
        {1, {4, 4}, {{3}, {3}}, {9, 4}, {400, 200}},
        /* both rows the same slots (one batched K/V segment), then slots that are not
         * consecutive and differ per row (one segment per frame) */
        {2, {4, 4}, {{1, 2}, {1, 2}}, {10, 5}, {300, 300}},
        {2, {4, 4}, {{3, 1}, {2, 0}}, {12, 7}, {200, 100}},
    };
    lg_dit_row last[2];
    for (size_t ci = 0; ci < sizeof calls / sizeof calls[0]; ci++) {
      int F = calls[ci].F;
      int64_t sh[5] = {rows, F, lh, lw, 16};
      lg_tensor_free(&c.x), lg_tensor_free(&c.v), lg_tensor_free(&g.x), lg_tensor_free(&g.v);
      rc = lg_tensor_alloc(g_cpu, &c.x, g_cpu->act_dtype, 5, sh);
      if (!rc) rc = lg_tensor_alloc(g_cpu, &c.v, g_cpu->act_dtype, 5, sh);
      if (!rc) rc = lg_tensor_alloc(g_gpu, &g.x, g_gpu->act_dtype, 5, sh);
      if (!rc) rc = lg_tensor_alloc(g_gpu, &g.v, g_gpu->act_dtype, 5, sh);
      if (rc) goto done;
      float *xh = rand_vals(lg_tensor_numel(&c.x), -1.5f, 1.5f);
      rc = lg_tensor_upload_f32(&c.x, xh);
      if (!rc) rc = lg_tensor_upload_f32(&g.x, xh);
      free(xh);
      if (rc) goto done;
      lg_dit_row r[2];
      memset(r, 0, sizeof r);
      for (int b = 0; b < rows; b++) {
        r[b].t = calls[ci].t[b];
        r[b].rope_start = calls[ci].rope[b];
        r[b].kv_frames = calls[ci].kvf[b];
        for (int f = 0; f < F; f++)
          r[b].slot[f] = calls[ci].slot[b][f];
      }
      rc = lg_wan_dit_forward(c.m, c.ws, c.kv, &c.x, r, &c.v);
      if (!rc) rc = lg_wan_dit_forward(g.m, g.ws, g.kv, &g.x, r, &g.v);
      char nm[64], shape[64];
      snprintf(nm, sizeof nm, "dit tiny call %zu (v)", ci + 1);
      snprintf(shape, sizeof shape, "B2 F%d %dx%d kv %d/%d", F, lh, lw, calls[ci].kvf[0],
               calls[ci].kvf[1]);
      row(nm, shape, rc ? 0 : rel_err(&g.v, &c.v), TOL_DIT, rc);
      if (rc) goto done;
      memcpy(last, r, sizeof r);
    }
    /* the last call again on the GPU: eager, then staged (lg_wan_dit_prepare), captured as a
     * CUDA graph and replayed twice: the same bits (the forward writes the same cache slots
     * with the same values each time) */
    {
      int64_t n = lg_tensor_numel(&g.v);
      float *ve = malloc((size_t)n * 4), *vr = malloc((size_t)n * 4);
      lg_cuda_graph *gr = NULL;
      rc = lg_wan_dit_forward(g.m, g.ws, g.kv, &g.x, last, &g.v);
      if (!rc) rc = lg_tensor_download_f32(&g.v, ve);
      if (!rc) rc = lg_wan_dit_prepare(g.m, g.ws, last, rows, g.x.ne[1]);
      if (!rc) rc = g_gpu->ops->memset0(g_gpu, g.v.data, lg_tensor_nbytes(&g.v));
      if (!rc) rc = g_gpu->ops->sync(g_gpu);
      if (!rc) rc = lg_cuda_capture_begin(g_gpu);
      if (!rc) {
        int rc2 = lg_wan_dit_forward(g.m, g.ws, g.kv, &g.x, last, &g.v);
        rc = lg_cuda_capture_end(g_gpu, &gr);
        if (rc2) rc = rc2;
      }
      for (int i = 0; !rc && i < 2; i++)
        rc = lg_cuda_graph_launch(g_gpu, gr);
      if (!rc) rc = lg_tensor_download_f32(&g.v, vr);
      double num = 0, den = 0;
      for (int64_t i = 0; !rc && i < n; i++) {
        double d = (double)vr[i] - ve[i];
        num += d * d, den += (double)ve[i] * ve[i];
      }
      row("dit tiny forward: graph == eager", "B2 F2 last call", rc ? 0 : sqrt(num / den), 0.0, rc);
      lg_cuda_graph_free(&gr);
      free(ve), free(vr);
      if (rc) goto done;
    }
    /* context-only weights moved to host memory (model.context_weights: host): the context
     * pass uploads them per use; the recomputed context K/V and the forward are the same */
    {
      int64_t n = lg_tensor_numel(&g.v);
      float *va = malloc((size_t)n * 4), *vb = malloc((size_t)n * 4);
      rc = va && vb ? 0 : LG_ENOMEM;
      if (!rc) rc = lg_wan_dit_forward(g.m, g.ws, g.kv, &g.x, last, &g.v);
      if (!rc) rc = lg_tensor_download_f32(&g.v, va);
      if (!rc) rc = lg_wan_dit_context_weights_to_host(g.m, err, sizeof err);
      if (!rc) rc = lg_wan_dit_set_context(g.m, g.ws, g.kv, ctx);
      if (!rc) rc = lg_wan_dit_forward(g.m, g.ws, g.kv, &g.x, last, &g.v);
      if (!rc) rc = lg_tensor_download_f32(&g.v, vb);
      double num = 0, den = 0;
      for (int64_t i = 0; !rc && i < n; i++) {
        double d = (double)vb[i] - va[i];
        num += d * d, den += (double)va[i] * va[i];
      }
      row("dit tiny: context weights on host", "B2 F2 last call", rc ? 0 : sqrt(num / den), 1e-6,
          rc);
      free(va), free(vb);
      if (rc) goto done;
    }
    /* the caches must agree too: layer 0 and the last layer, K and V, row 1 */
    for (int which = 0; which < 2; which++) {
      int layer = which ? cfg->layers - 1 : 0;
      lg_tensor kc = lg_kv_cache_slot(c.kv, layer, 0, 1, 2),
                kg = lg_kv_cache_slot(g.kv, layer, 0, 1, 2);
      lg_tensor vc = lg_kv_cache_slot(c.kv, layer, 1, 1, 2),
                vg = lg_kv_cache_slot(g.kv, layer, 1, 1, 2);
      char nm[64];
      snprintf(nm, sizeof nm, "dit tiny cache K layer %d", layer);
      row(nm, "row 1 slot 2", rel_err(&kg, &kc), TOL_DIT, 0);
      snprintf(nm, sizeof nm, "dit tiny cache V layer %d", layer);
      row(nm, "row 1 slot 2", rel_err(&vg, &vc), TOL_DIT, 0);
    }
  }
done:
  if (rc) row("dit tiny sequence", "-", 0, TOL_DIT, rc);
  dit_side_free(&g);
  dit_side_free(&c);
  free(ctx);
  lg_ckpt_free(&ck);
}

/* ---------------------------------------------------------------- CUDA graph capture */

/* One attention block's worth of ops captured into a graph and replayed twice on the same
 * buffers must give exactly what the same ops give run eagerly (kernel arguments by value,
 * no sync or allocation inside). */
static int graph_seq(lg_tensor *x, lg_tensor *h, lg_tensor *q, lg_tensor *o, const lg_tensor *w,
                     const lg_tensor *gw, const lg_tensor *tab, int64_t F, int64_t H, int64_t W,
                     const int32_t *fs, const int32_t *kvl) {
  lg_matmul_opts mo = {.trans_b = true};
  int64_t B = x->ne[0], L = x->ne[1], D = x->ne[2], nh = D / 128;
  lg_tensor x2, h2, q2, o2, q4, o4, sh, sc;
  int64_t s2[2] = {B * L, D}, s4[4] = {B, L, nh, 128};
  int rc = lg_tensor_reshape(x, 2, s2, &x2);
  if (!rc) rc = lg_tensor_reshape(h, 2, s2, &h2);
  if (!rc) rc = lg_tensor_reshape(q, 2, s2, &q2);
  if (!rc) rc = lg_tensor_reshape(o, 2, s2, &o2);
  if (!rc) rc = lg_tensor_reshape(q, 4, s4, &q4);
  if (!rc) rc = lg_tensor_reshape(o, 4, s4, &o4);
  if (rc) return rc;
  sh = *tab, sc = *tab; /* [B, 2, D] table: rows of shift and scale */
  sh.ndim = sc.ndim = 2;
  sh.ne[0] = sc.ne[0] = B, sh.ne[1] = sc.ne[1] = D;
  sh.nb[0] = sc.nb[0] = 2 * D, sh.nb[1] = sc.nb[1] = 1;
  sc.data = (uint16_t *)tab->data + D;
  rc = LG_OP(g_gpu, modulate, &h2, &x2, &sh, &sc, L, true, 1e-6f);
  if (!rc) rc = LG_OP(g_gpu, matmul, &q2, &h2, w, NULL, &mo);
  if (!rc) rc = LG_OP(g_gpu, rms_norm, &q2, &q2, gw, 1e-6f);
  if (!rc) rc = LG_OP(g_gpu, rope3d, &q4, F, H, W, fs);
  if (!rc) rc = LG_OP(g_gpu, attention, &o4, &q4, &q4, &q4, kvl, 0.088f);
  if (!rc) rc = LG_OP(g_gpu, gated_add, &x2, &o2, &sh, L);
  return rc;
}

static void t_graph(void) {
  if (!want("graph")) return;
  const int64_t B = 2, F = 1, H = 6, W = 10, L = F * H * W, D = 256;
  int64_t xs[3] = {B, L, D}, ws[2] = {D, D}, gs[1] = {D}, ts[3] = {B, 2, D};
  int32_t fs[2] = {3, 7}, kvl[2] = {60, 45};
  lg_tensor x, h, q, o, w, gw, tab, x0;
  int rc = 0;
  must(lg_tensor_alloc(g_gpu, &x, LG_BF16, 3, xs), "alloc");
  must(lg_tensor_alloc(g_gpu, &x0, LG_BF16, 3, xs), "alloc");
  must(lg_tensor_alloc(g_gpu, &h, LG_BF16, 3, xs), "alloc");
  must(lg_tensor_alloc(g_gpu, &q, LG_BF16, 3, xs), "alloc");
  must(lg_tensor_alloc(g_gpu, &o, LG_BF16, 3, xs), "alloc");
  must(lg_tensor_alloc(g_gpu, &w, LG_BF16, 2, ws), "alloc");
  must(lg_tensor_alloc(g_gpu, &gw, LG_BF16, 1, gs), "alloc");
  must(lg_tensor_alloc(g_gpu, &tab, LG_BF16, 3, ts), "alloc");
  float *hx = rand_vals(B * L * D, -1, 1), *hw = rand_vals(D * D, -0.1f, 0.1f),
        *hg = rand_vals(D, 0.5f, 1.5f), *ht = rand_vals(B * 2 * D, -0.3f, 0.3f);
  must(lg_tensor_upload_f32(&x0, hx), "up");
  must(lg_tensor_upload_f32(&w, hw), "up");
  must(lg_tensor_upload_f32(&gw, hg), "up");
  must(lg_tensor_upload_f32(&tab, ht), "up");
  /* eager: two applications */
  float *eager = malloc((size_t)(B * L * D) * 4), *replay = malloc((size_t)(B * L * D) * 4);
  rc = LG_OP(g_gpu, copy, &x, &x0);
  for (int i = 0; !rc && i < 2; i++)
    rc = graph_seq(&x, &h, &q, &o, &w, &gw, &tab, F, H, W, fs, kvl);
  if (!rc) rc = lg_tensor_download_f32(&x, eager);
  /* captured once, replayed twice */
  lg_cuda_graph *gr = NULL;
  if (!rc) rc = LG_OP(g_gpu, copy, &x, &x0);
  if (!rc) rc = g_gpu->ops->sync(g_gpu);
  if (!rc) rc = lg_cuda_capture_begin(g_gpu);
  if (!rc) {
    int rc2 = graph_seq(&x, &h, &q, &o, &w, &gw, &tab, F, H, W, fs, kvl);
    rc = lg_cuda_capture_end(g_gpu, &gr);
    if (rc2) rc = rc2;
  }
  for (int i = 0; !rc && i < 2; i++)
    rc = lg_cuda_graph_launch(g_gpu, gr);
  if (!rc) rc = lg_tensor_download_f32(&x, replay);
  double num = 0, den = 0;
  for (int64_t i = 0; !rc && i < B * L * D; i++) {
    double d = (double)replay[i] - eager[i];
    num += d * d, den += (double)eager[i] * eager[i];
  }
  row("graph capture == eager (6 ops x2)", "[2,60,256] bf16", rc ? 0 : sqrt(num / den), 0.0, rc);
  lg_cuda_graph_free(&gr);
  free(hx), free(hw), free(hg), free(ht), free(eager), free(replay);
  lg_tensor_free(&x), lg_tensor_free(&x0), lg_tensor_free(&h), lg_tensor_free(&q);
  lg_tensor_free(&o), lg_tensor_free(&w), lg_tensor_free(&gw), lg_tensor_free(&tab);
}

/* ---------------------------------------------------------------- op timings (--perf) */

/* Median-free quick timing: 50 back-to-back calls after 5 warm-ups, events around them. */
#define PERF_TIME(label, bytes, call)                                                              \
  do {                                                                                             \
    for (int w_ = 0; w_ < 5; w_++)                                                                 \
      must(call, label);                                                                           \
    must(lg_cuda_mark(g_gpu, 2), "mark");                                                          \
    for (int w_ = 0; w_ < 50; w_++)                                                                \
      must(call, label);                                                                           \
    must(lg_cuda_mark(g_gpu, 3), "mark");                                                          \
    float ms_ = 0;                                                                                 \
    must(lg_cuda_elapsed_ms(g_gpu, 2, 3, &ms_), "elapsed");                                        \
    double us_ = ms_ * 1e3 / 50;                                                                   \
    printf("| %-40s | %9.1f us | %7.0f GB/s |\n", label, us_, (bytes) / (us_ * 1e3));              \
  } while (0)

static void perf_ops(void) {
  const int64_t R = 3120, D = 1536, G = 1560;
  int64_t sh[2] = {R, D}, vsh[1] = {D}, tsh[3] = {2, 6, D}, q4[4] = {2, G, 12, 128};
  lg_tensor x, y, w, tab, shf, scl, q;
  must(lg_tensor_alloc(g_gpu, &x, LG_BF16, 2, sh), "alloc");
  must(lg_tensor_alloc(g_gpu, &y, LG_BF16, 2, sh), "alloc");
  must(lg_tensor_alloc(g_gpu, &w, LG_BF16, 1, vsh), "alloc");
  must(lg_tensor_alloc(g_gpu, &tab, LG_BF16, 3, tsh), "alloc");
  float *h = rand_vals(R * D, -1, 1);
  must(lg_tensor_upload_f32(&x, h), "up");
  must(lg_tensor_upload_f32(&y, h), "up");
  must(lg_tensor_upload_f32(&w, h), "up");
  must(lg_tensor_upload_f32(&tab, h), "up");
  free(h);
  int64_t ne[2] = {2, D}, nb[2] = {6 * D, 1};
  shf = tab, scl = tab;
  shf.ndim = scl.ndim = 2;
  memcpy(shf.ne, ne, sizeof ne), memcpy(shf.nb, nb, sizeof nb);
  memcpy(scl.ne, ne, sizeof ne), memcpy(scl.nb, nb, sizeof nb);
  scl.data = (uint16_t *)tab.data + D;
  must(lg_tensor_reshape(&x, 4, q4, &q), "reshape");
  int32_t fs[2] = {10, 11};
  double B = (double)R * D * 2;
  printf("\nop timings on [3120,1536] bf16 (the 1.3B DiT's 2-row chunk), back to back:\n\n");
  printf("| %-40s | %12s | %12s |\n|---|---|---|\n", "op", "time", "r+w");
  PERF_TIME("copy (memcpy d2d)", 2 * B, LG_OP(g_gpu, copy, &y, &x));
  PERF_TIME("rms_norm in place, weight", 2 * B, LG_OP(g_gpu, rms_norm, &y, &y, &w, 1e-6f));
  PERF_TIME("layer_norm affine", 2 * B, LG_OP(g_gpu, layer_norm, &y, &x, &w, &w, 1e-6f));
  PERF_TIME("modulate ln, group 1560", 2 * B,
            LG_OP(g_gpu, modulate, &y, &x, &shf, &scl, G, true, 1e-6f));
  PERF_TIME("gated_add gate, group 1560", 3 * B, LG_OP(g_gpu, gated_add, &y, &x, &shf, G));
  PERF_TIME("gated_add plain", 3 * B, LG_OP(g_gpu, gated_add, &y, &x, NULL, 1));
  PERF_TIME("rope3d [2,1560,12,128]", 2 * B, LG_OP(g_gpu, rope3d, &q, 1, 30, 52, fs));
  PERF_TIME("qk_norm_rope [2,1560,12,128] (fused)", 2 * B,
            lg_backend_qk_norm_rope(g_gpu, &q, &w, 1e-6f, 1, 30, 52, fs));
  lg_tensor_free(&x), lg_tensor_free(&y), lg_tensor_free(&w), lg_tensor_free(&tab);
}

/* Attention alone on the 1.3B DiT's 2-row chunk shapes (B 2, Lq 1560, 12 heads x 128, bf16):
 * self over a [2, 9360, 12, 128] cache, all keys valid, and cross over 512 text keys shared
 * by both rows; per kernel: median of 20 timed calls after 3 warm-ups, TFLOP/s as
 * 4 * 128 * Lq * keys * heads * B / time. */
static void perf_attention(void) {
  const int B = 2, Lq = 1560, nh = 12, dh = 128;
  int64_t qs[4] = {B, Lq, nh, dh}, ks[4] = {B, 9360, nh, dh}, cs[4] = {1, 512, nh, dh};
  lg_tensor q, o, k, v, ck, cv;
  lg_tensor *all[6] = {&q, &o, &k, &v, &ck, &cv};
  const int64_t *shp[6] = {qs, qs, ks, ks, cs, cs};
  for (int i = 0; i < 6; i++) {
    must(lg_tensor_alloc(g_gpu, all[i], LG_BF16, 4, shp[i]), "alloc");
    int64_t n = lg_tensor_numel(all[i]);
    float *h = rand_vals(n, -2, 2);
    must(lg_tensor_upload_f32(all[i], h), "upload");
    free(h);
  }
  struct {
    const char *nm;
    int kernel, split;
  } ks_[] = {{"mma.sync (kernel 1)", 1, 1},
             {"wgmma (kernel 3), no split", 3, 1},
             {"wgmma (kernel 3), auto split", 3, 0},
             {"wgmma 3 stages (4), no split", 4, 1},
             {"wgmma 3 stages (4), auto split", 4, 0},
             {"wgmma no overlap (5), no split", 5, 1},
             {"wgmma no overlap (5), auto", 5, 0},
             {"wgmma 3st ping-pong (6), none", 6, 1},
             {"wgmma 3st ping-pong (6), auto", 6, 0},
             {"wgmma 2st ping-pong (7), none", 7, 1},
             {"wgmma 2st ping-pong (7), auto", 7, 0},
             {"wgmma 3st TMA (8), no split", 8, 1},
             {"wgmma TMA (8), auto (default)", 8, 0},
             {"wgmma 176 keys 2st TMA (9), none", 9, 1},
             {"wgmma 176 keys 2st TMA (9), auto", 9, 0},
             {"wgmma TMA ping-pong (10), split 2", 10, 2},
             {"wgmma TMA ping-pong (10), auto", 10, 0},
             {"wgmma 176 TMA ping-pong (11), none", 11, 1},
             {"wgmma 176 TMA ping-pong (11), auto", 11, 0}};
  int nk = lg_cuda_attn_wgmma_active(g_gpu) == 1 ? (int)(sizeof ks_ / sizeof ks_[0]) : 1;
  printf("\nattention on %s, B 2, Lq 1560, 12 heads x 128, bf16 (median of 20):\n\n",
         lg_cuda_device_name(g_gpu));
  printf("| %-30s | %-22s | %10s | %8s |\n|---|---|---|---|\n", "kernel", "shape", "us", "TFLOP/s");
  for (int c = 0; c < 2; c++) {
    int32_t kvl[2] = {9360, 9360};
    lg_tensor *kk = c ? &ck : &k, *vv = c ? &cv : &v;
    double keys = c ? 512 : 9360;
    double flop = 4.0 * dh * Lq * keys * nh * B;
    for (int i = 0; i < nk; i++) {
      lg_cuda_attn_set_kernel(ks_[i].kernel, ks_[i].split);
      float t[20];
      for (int w = 0; w < 3; w++)
        must(LG_OP(g_gpu, attention, &o, &q, kk, vv, c ? NULL : kvl, 0.0884f), "attention");
      for (int it = 0; it < 20; it++) {
        must(lg_cuda_mark(g_gpu, 4), "mark");
        must(LG_OP(g_gpu, attention, &o, &q, kk, vv, c ? NULL : kvl, 0.0884f), "attention");
        must(lg_cuda_mark(g_gpu, 5), "mark");
        must(lg_cuda_elapsed_ms(g_gpu, 4, 5, &t[it]), "elapsed");
      }
      for (int a = 0; a < 20; a++) /* insertion sort for the median */
        for (int b2 = a; b2 > 0 && t[b2] < t[b2 - 1]; b2--) {
          float x = t[b2];
          t[b2] = t[b2 - 1], t[b2 - 1] = x;
        }
      double us = 0.5 * (t[9] + t[10]) * 1e3;
      printf("| %-30s | %-22s | %10.1f | %8.1f |\n", ks_[i].nm,
             c ? "cross Lk 512 (shared)" : "self kv 9360", us, flop / (us * 1e6));
      fflush(stdout);
    }
  }
  lg_cuda_attn_set_kernel(0, -2);
  for (int i = 0; i < 6; i++)
    lg_tensor_free(all[i]);
}

int main(int argc, char **argv) {
  bool perf = argc > 1 && !strcmp(argv[1], "--perf");
  bool aperf = argc > 1 && !strcmp(argv[1], "--attn-perf");
  bool cperf = argc > 1 && !strcmp(argv[1], "--conv-perf");
  g_filter = argc > 1 && !perf && !aperf && !cperf ? argv[1] : NULL;
  lg_log_set_level(LG_LOG_WARN);
  if (lg_cuda_device_count() < 1) {
    fprintf(stderr, "lg_gpu_tests: no CUDA device\n");
    return 2;
  }
  g_cpu = lg_backend_new_cpu(0);
  g_gpu = lg_backend_new_cuda(0);
  if (!g_cpu || !g_gpu) {
    fprintf(stderr, "lg_gpu_tests: cannot create the backends\n");
    return 2;
  }
  lg_rng_seed(&g_rng, 20261124);
  if (perf || aperf || cperf) {
    if (perf) perf_ops();
    if (aperf) perf_attention();
    if (cperf) perf_conv();
    lg_backend_free(&g_gpu);
    lg_backend_free(&g_cpu);
    return 0;
  }
  printf("lg_gpu_tests on %s: CUDA (bf16) vs CPU (fp32), error = ||gpu-cpu|| / ||cpu||\n\n",
         lg_cuda_device_name(g_gpu));
  printf("| %-34s | %-30s | %9s | %7s | %s |\n", "check", "shape", "error", "tol", "result");
  printf("|%s|%s|%s|%s|%s|\n", "------------------------------------",
         "--------------------------------", "-----------", "---------", "------");
  t_copy();
  t_matmul();
  t_unary_axpby();
  t_norms();
  t_rope();
  t_fused();
  t_attention();
  t_conv();
  t_attn_gemm();
  t_misc();
  t_pixels();
  t_vae_elem();
  t_graph();
  t_dit();
  printf("\n%d checks, %d failed\n", g_run, g_fail);
  lg_backend_free(&g_gpu);
  lg_backend_free(&g_cpu);
  return g_fail ? 1 : 0;
}

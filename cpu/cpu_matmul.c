/* cpu_matmul.c: y[M,N] = act(op(a)[M,K] @ op(b)[K,N] + bias[N]) for the fp32 reference backend.
 * b is packed once per call into 8-column panels ([N/8][K][8] f32, zero padded); a rows are
 * read in place when F32 with a contiguous last dim, else packed to f32 [M][K]. Tiles of
 * MB x NB outputs are spread over OpenMP threads; each tile accumulates K blocks of KB with
 * the 4x8 register micro-kernel into a per-thread f32 tile, then applies accumulate, bias,
 * act and the output dtype. y must not overlap a or b. act is NONE, GELU_TANH, SILU or RELU
 * (the alpha-taking ones go through unary). Runs on the backend's thread. */
#include "cpu_internal.h"

#include <string.h>

enum { MB = 64, NB = 128, KB = 256 };

int cpu_matmul(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
               const lg_tensor *bias, const lg_matmul_opts *o) {
  static const lg_matmul_opts defaults; /* all zero */
  if (!o) o = &defaults;
  int err = cpu_check_float("matmul", "y", y);
  if (!err) err = cpu_check_float("matmul", "a", a);
  if (!err) err = cpu_check_float("matmul", "b", b);
  if (!err && bias) err = cpu_check_float("matmul", "bias", bias);
  if (err) return err;
  if (!cpu_act_valid(o->act) || o->act == LG_ACT_TANH_SCALED || o->act == LG_ACT_CLAMP) {
    /* the alpha-taking activations have no alpha here: use unary after the matmul */
    LG_ERR("cpu", "matmul: activation %d is not one of NONE, GELU_TANH, SILU, RELU", (int)o->act);
    return LG_EINVAL;
  }
  if (o->accumulate && o->act != LG_ACT_NONE)
    return cpu_bad("matmul", "accumulate needs act NONE", y, a);
  if (b->ndim != 2) return cpu_bad("matmul", "b must be 2-d", b, a);
  if (o->trans_a && a->ndim != 2) return cpu_bad("matmul", "trans_a needs a 2-d a [K,M]", a, b);
  int64_t M, K, sam, sak; /* a(m,k) at m*sam + k*sak (plus the row offset when !trans_a) */
  if (o->trans_a) {
    K = a->ne[0];
    M = a->ne[1];
    sak = a->nb[0];
    sam = a->nb[1];
  } else {
    K = cpu_cols(a);
    M = lg_tensor_rows(a);
    sak = cpu_inner_stride(a);
    sam = 0; /* rows via cpu_row_off */
  }
  int64_t N, Kb, sbk, sbn;
  if (o->trans_b) {
    N = b->ne[0];
    Kb = b->ne[1];
    sbn = b->nb[0];
    sbk = b->nb[1];
  } else {
    Kb = b->ne[0];
    N = b->ne[1];
    sbk = b->nb[0];
    sbn = b->nb[1];
  }
  if (Kb != K)
    return cpu_bad("matmul", o->trans_b ? "a's K != b[N,K]'s K" : "a's K != b[K,N]'s K", a, b);
  if (lg_tensor_rows(y) != M || cpu_cols(y) != N) {
    char what[96];
    snprintf(what, sizeof what, "y must have %lld rows of %lld", (long long)M, (long long)N);
    return cpu_bad("matmul", what, y, a);
  }
  if (bias && lg_tensor_numel(bias) != N)
    return cpu_bad("matmul", "bias must have N elements", bias, y);
  if (M == 0 || N == 0) return 0;

  int nt = cpu_nt(be);
  int64_t Np = (N + 7) / 8 * 8;
  bool a_direct = !o->trans_a && a->dtype == LG_F32 && sak == 1;
  /* workspace: packed b, packed a (optional), bias, per-thread tiles */
  size_t nbp = cpu_round64((size_t)(Np * K)), nap = a_direct ? 0 : cpu_round64((size_t)(M * K));
  size_t nbias = cpu_round64((size_t)Np), ntile = (size_t)MB * NB + 64;
  float *ws = cpu_ws(be, (nbp + nap + nbias + ntile * (size_t)nt) * sizeof(float), "matmul");
  if (!ws) return LG_ENOMEM;
  float *bp = ws, *ap = ws + nbp, *bv = ap + nap, *tiles = bv + nbias;

  /* pack b: panel p holds columns [8p, 8p+8) as [K][8] */
  int64_t npan = Np / 8;
#pragma omp parallel for num_threads(nt) if (N * K > 65536) schedule(static)
  for (int64_t p = 0; p < npan; p++) {
    float *dst = bp + p * K * 8;
    for (int64_t k = 0; k < K; k++) {
      for (int j = 0; j < 8; j++) {
        int64_t n = p * 8 + j;
        dst[k * 8 + j] = n < N ? cpu_ld(b->data, b->dtype, k * sbk + n * sbn) : 0.0f;
      }
    }
  }
  if (!a_direct) {
#pragma omp parallel for num_threads(nt) if (M * K > 65536) schedule(static)
    for (int64_t m = 0; m < M; m++) {
      int64_t base = o->trans_a ? m * sam : cpu_row_off(a, m);
      for (int64_t k = 0; k < K; k++)
        ap[m * K + k] = cpu_ld(a->data, a->dtype, base + k * sak);
    }
  }
  if (bias) cpu_load_vec(bias, N, bv);

  int64_t mt = (M + MB - 1) / MB, ntl = (N + NB - 1) / NB;
  int64_t ntask = mt * ntl;
  double flops = (double)M * (double)N * (double)K;
#pragma omp parallel for num_threads(nt) if (flops > 2e5) schedule(dynamic, 1)
  for (int64_t task = 0; task < ntask; task++) {
    int64_t m0 = (task / ntl) * MB, n0 = (task % ntl) * NB;
    int64_t mc = M - m0 < MB ? M - m0 : MB, nc = N - n0 < NB ? N - n0 : NB;
    float *tile = tiles + ntile * (size_t)cpu_tid(); /* [MB][NB] */
    memset(tile, 0, sizeof(float) * MB * NB);
    const float *arow[MB];
    for (int64_t i = 0; i < mc; i++)
      arow[i] = a_direct ? (const float *)a->data + cpu_row_off(a, m0 + i) : ap + (m0 + i) * K;
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      int64_t kc = K - k0 < KB ? K - k0 : KB;
      for (int64_t i = 0; i < mc; i += 4) {
        int64_t last = mc - 1;
        const float *r0 = arow[i] + k0;
        const float *r1 = arow[i + 1 <= last ? i + 1 : last] + k0;
        const float *r2 = arow[i + 2 <= last ? i + 2 : last] + k0;
        const float *r3 = arow[i + 3 <= last ? i + 3 : last] + k0;
        for (int64_t j = 0; j < nc; j += 8) {
          float acc[4][8];
          memset(acc, 0, sizeof acc);
          const float *pb = bp + ((n0 + j) / 8) * K * 8 + k0 * 8;
          cpu_mk_4x8(kc, r0, r1, r2, r3, pb, 8, acc);
          int64_t rr = mc - i < 4 ? mc - i : 4;
          for (int64_t u = 0; u < rr; u++) {
            float *t = tile + (i + u) * NB + j;
            for (int v = 0; v < 8; v++)
              t[v] += acc[u][v];
          }
        }
      }
    }
    /* epilogue: (+ y) + bias -> act -> y in its dtype */
    for (int64_t i = 0; i < mc; i++) {
      int64_t off = cpu_row_off(y, m0 + i) + n0 * cpu_inner_stride(y);
      int64_t sy = cpu_inner_stride(y);
      float *t = tile + i * NB;
      for (int64_t j = 0; j < nc; j++) {
        float v = t[j];
        if (o->accumulate) v += cpu_ld(y->data, y->dtype, off + j * sy);
        if (bias) v += bv[n0 + j];
        cpu_st(y->data, y->dtype, off + j * sy, cpu_act(v, o->act, 1.0f));
      }
    }
  }
  return 0;
}

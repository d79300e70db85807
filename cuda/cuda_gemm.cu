/* cuda_gemm.cu: the matmul op on cuBLASLt: bf16 (or f16/f32) operands, fp32 accumulation,
 * bias and GELU/ReLU epilogues, strided batches, plans (layouts + heuristic choice) cached
 * per shape so that the hot path makes no heuristic query, and one workspace allocated at
 * backend creation. Row-major y[M,N] = op(a)[M,K] @ op(b)[K,N] is computed as the
 * column-major product y^T = op(b)^T op(a)^T. Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <string.h>

static cudaDataType_t cuda_type(int dt) {
  switch (dt) {
  case LG_F16: return CUDA_R_16F;
  case LG_BF16: return CUDA_R_16BF;
  default: return CUDA_R_32F;
  }
}

static uint64_t align_of(const void *p) {
  uint64_t a = 256;
  while (a > 1 && ((uintptr_t)p % a))
    a >>= 1;
  return a;
}

void lg_cuda_gemm_plans_free(lg_cuda *c) {
  for (int i = 0; i < LG_GEMM_PLANS; i++) {
    lg_gemm_plan *p = &c->plans[i];
    if (!p->used) continue;
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->desc);
    p->used = false;
  }
}

static int set_batch(cublasLtMatrixLayout_t l, int batch, int64_t stride) {
  int err = 0;
  if (batch <= 1) return 0;
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                sizeof batch));
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof stride));
  return 0;
fail:
  return err;
}

/* y[m,n] (ldy) = epi(op(a)[m,k] @ op(b)[k,n]) (+ y when accumulate); a and b of one dtype;
 * bias (n elements, dtype == y's) and act GELU_TANH/RELU go into the epilogue; other acts
 * must be applied by the caller. Strides in elements. */
int lg_cuda_gemm_raw(lg_backend *be, int m, int n, int k, const void *a, int64_t lda, int a_dt,
                     bool trans_a, const void *b, int64_t ldb, int b_dt, bool trans_b, void *y,
                     int64_t ldy, int y_dt, const void *bias, int bias_dt, lg_act act,
                     bool accumulate, int batch, int64_t sa, int64_t sb, int64_t sy) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  (void)bias_dt;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (act == LG_ACT_GELU_TANH)
    epi = bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  else if (act == LG_ACT_RELU)
    epi = bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  else if (bias)
    epi = CUBLASLT_EPILOGUE_BIAS;
  uint64_t al = align_of(a) | (align_of(b) << 9) | (align_of(y) << 18);
  uint64_t key[8] = {((uint64_t)m << 32) | (uint32_t)n,
                     ((uint64_t)k << 32) | (uint32_t)batch,
                     ((uint64_t)lda << 32) | (uint64_t)ldb,
                     ((uint64_t)ldy << 32) | ((uint64_t)trans_a) | ((uint64_t)trans_b << 1) |
                         ((uint64_t)accumulate << 2) | ((uint64_t)a_dt << 4) |
                         ((uint64_t)y_dt << 8) | ((uint64_t)epi << 12),
                     (uint64_t)sa,
                     (uint64_t)sb,
                     (uint64_t)sy,
                     al};
  lg_gemm_plan *p = NULL;
  unsigned h = 0;
  for (int i = 0; i < 8; i++)
    h = h * 1000003u ^ (unsigned)(key[i] ^ (key[i] >> 32));
  for (int i = 0; i < LG_GEMM_PLANS; i++) {
    lg_gemm_plan *q = &c->plans[(h + i) % LG_GEMM_PLANS];
    if (q->used && !memcmp(q->key, key, sizeof key)) {
      p = q;
      break;
    }
    if (!q->used) {
      p = q;
      break;
    }
  }
  if (!p) { /* full: evict the home slot */
    p = &c->plans[h % LG_GEMM_PLANS];
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->desc);
    p->used = false;
  }
  if (!p->used) {
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasOperation_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N; /* cublas A = our b */
    cublasOperation_t opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N; /* cublas B = our a */
    cudaDataType_t ab_t = cuda_type(a_dt), y_t = cuda_type(y_dt);
    uint32_t a_al = (uint32_t)align_of(b), b_al = (uint32_t)align_of(a),
             c_al = (uint32_t)align_of(y);
    memset(p, 0, sizeof *p);
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    /* stored shapes (column-major): A = b as [k,n] (T) or [n,k] (N); B = a as [k,m] (N) or
     * [m,k] (T); D = y as [n,m] */
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, ab_t, trans_b ? k : n, trans_b ? n : k, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, ab_t, trans_a ? m : k, trans_a ? k : m, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, y_t, n, m, ldy));
    LG_TRY(set_batch(p->la, batch, sb));
    LG_TRY(set_batch(p->lb, batch, sa));
    LG_TRY(set_batch(p->lc, batch, sy));
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_bytes, sizeof c->lt_ws_bytes));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_al,
                                         sizeof a_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_al,
                                         sizeof b_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c_al,
                                         sizeof c_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c_al,
                                         sizeof c_al);
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc,
                                                       pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    p->used = true; /* the descriptors exist: free them on any path from here */
    memcpy(p->key, key, sizeof key);
    if (st != CUBLAS_STATUS_SUCCESS || nres < 1) {
      LG_ERR(LG_CUDA_MOD,
             "matmul: cuBLASLt has no algorithm for m=%d n=%d k=%d lda=%lld ldb=%lld ldy=%lld "
             "trans_a=%d trans_b=%d batch=%d (status %d)",
             m, n, k, (long long)lda, (long long)ldb, (long long)ldy, trans_a, trans_b, batch,
             (int)st);
      cublasLtMatrixLayoutDestroy(p->la);
      cublasLtMatrixLayoutDestroy(p->lb);
      cublasLtMatrixLayoutDestroy(p->lc);
      cublasLtMatmulDescDestroy(p->desc);
      p->used = false;
      return LG_ENOTSUP;
    }
    p->algo = res.algo;
  }
  if (bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof bias));
  {
    float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    CUBLAS_CHECK(cublasLtMatmul(c->lt, p->desc, &alpha, b, p->la, a, p->lb, &beta, y, p->lc, y,
                                p->lc, &p->algo, c->lt_ws, c->lt_ws_bytes, c->stream));
  }
  return 0;
fail:
  return err;
}

/* Flatten dims [from,to) of t into one of count *n and stride *st; false if they do not
 * collapse. Dims of size 1 are ignored; all-ones gives stride 0. */
static bool collapse(const lg_tensor *t, int from, int to, int64_t *n, int64_t *st) {
  int64_t cnt = 1, stride = 0, expect = -1;
  for (int i = to - 1; i >= from; i--) {
    if (t->ne[i] == 1) continue;
    if (expect < 0) {
      stride = t->nb[i];
    } else if (t->nb[i] != expect) {
      return false;
    }
    expect = t->nb[i] * t->ne[i];
    cnt *= t->ne[i];
  }
  *n = cnt;
  *st = stride;
  return true;
}

/* y = act(x + bias) over rows (any row strides), in place on y. */
__global__ void k_bias_act(void *y, int ydt, lg_rows yr, const void *bias, int bdt, int64_t n,
                           int64_t total, int act, float alpha) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / n, col = i - r * n;
    int64_t o = lg_row_off(yr, r) + col;
    float v = lg_ld(y, ydt, o) + (bias ? lg_ld(bias, bdt, col) : 0.f);
    switch (act) {
    case LG_ACT_GELU_TANH:
      v = 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
      break;
    case LG_ACT_SILU: v = v / (1.f + expf(-v)); break;
    case LG_ACT_RELU: v = v > 0.f ? v : 0.f; break;
    case LG_ACT_TANH_SCALED: v = alpha * tanhf(v / alpha); break;
    case LG_ACT_CLAMP: v = fminf(fmaxf(v, -alpha), alpha); break;
    default: break;
    }
    lg_st(y, ydt, o, v);
  }
}

static void contig_like(lg_tensor *dst, const lg_tensor *src, void *data, int dt) {
  *dst = lg_tensor_make(src->be, data, (lg_dtype)dt, src->ndim, src->ne);
}

int lg_cuda_matmul(lg_backend *be, lg_tensor *y, const lg_tensor *a, const lg_tensor *b,
                   const lg_tensor *bias, const lg_matmul_opts *o) {
  int err = 0;
  lg_cuda *c = lg_cu(be);
  lg_matmul_opts def;
  memset(&def, 0, sizeof def);
  if (!o) o = &def;
  char s1[96], s2[96], s3[96];
  LG_TRY(lg_cuda_check_tensor("matmul", "y", y, true));
  LG_TRY(lg_cuda_check_tensor("matmul", "a", a, true));
  LG_TRY(lg_cuda_check_tensor("matmul", "b", b, true));
  if (bias) LG_TRY(lg_cuda_check_tensor("matmul", "bias", bias, true));
  LG_CHECK(a->ndim >= 2 && b->ndim == 2 && y->ndim == a->ndim && (!o->trans_a || a->ndim == 2),
           LG_EINVAL, LG_CUDA_MOD, "matmul: bad ranks: y %s, a %s, b %s (b must be 2-d)",
           lg_tensor_shape_str(y, s1, sizeof s1), lg_tensor_shape_str(a, s2, sizeof s2),
           lg_tensor_shape_str(b, s3, sizeof s3));
  LG_CHECK(!o->accumulate || o->act == LG_ACT_NONE, LG_EINVAL, LG_CUDA_MOD,
           "matmul: accumulate needs act NONE");
  {
    int nd = a->ndim;
    int64_t K = o->trans_a ? a->ne[0] : a->ne[nd - 1];
    int64_t Mlast = o->trans_a ? a->ne[1] : a->ne[nd - 2];
    int64_t Kb = o->trans_b ? b->ne[1] : b->ne[0];
    int64_t N = o->trans_b ? b->ne[0] : b->ne[1];
    bool ok = Kb == K && y->ne[nd - 1] == N && y->ne[nd - 2] == Mlast;
    for (int i = 0; i < nd - 2; i++)
      ok = ok && y->ne[i] == a->ne[i];
    if (bias) ok = ok && lg_tensor_numel(bias) == N;
    LG_CHECK(ok, LG_EINVAL, LG_CUDA_MOD, "matmul: shapes do not fit: y %s, a %s, b %s%s",
             lg_tensor_shape_str(y, s1, sizeof s1), lg_tensor_shape_str(a, s2, sizeof s2),
             lg_tensor_shape_str(b, s3, sizeof s3), bias ? " (or bias)" : "");
    if (lg_tensor_numel(y) == 0) return 0;
    if (K == 0) {
      LG_ERR(LG_CUDA_MOD, "matmul: K = 0");
      return LG_EINVAL;
    }

    /* Operand dtypes: one of bf16/f16 for both, or f32 for both with an f32 y; anything
     * else converts the odd operands to bf16 in scratch. */
    lg_tensor ac = *a, bc = *b;
    bool direct = a->dtype == b->dtype && (a->dtype != LG_F32 || y->dtype == LG_F32) &&
                  (a->dtype == LG_F32 || y->dtype == LG_F32 || y->dtype == a->dtype);
    if (!direct) {
      LG_CHECK(y->dtype != LG_F16, LG_ENOTSUP, LG_CUDA_MOD, "matmul: an F16 y needs F16 operands");
      size_t abytes = a->dtype == LG_BF16 ? 0 : ((size_t)lg_tensor_numel(a) * 2 + 255) & ~255ul;
      size_t bbytes = b->dtype == LG_BF16 ? 0 : (size_t)lg_tensor_numel(b) * 2;
      uint8_t *s = (uint8_t *)lg_cuda_scratch(be, abytes + bbytes + 256);
      LG_CHECK(s, LG_ENOMEM, LG_CUDA_MOD, "matmul: no scratch for operand conversion");
      if (a->dtype != LG_BF16) {
        contig_like(&ac, a, s, LG_BF16);
        LG_TRY(lg_cuda_copy(be, &ac, a));
      }
      if (b->dtype != LG_BF16) {
        contig_like(&bc, b, s + abytes, LG_BF16);
        LG_TRY(lg_cuda_copy(be, &bc, b));
      }
    }

    /* Rows: all leading dims into M, or a strided batch over the outer ones. */
    int64_t M = 0, lda = 0, ldy = 0, batch = 1, sa = 0, sy = 0;
    if (o->trans_a) {
      M = Mlast;
      lda = ac.nb[0];
      ldy = y->nb[0];
    } else {
      int split = -1;
      for (int s = 0; s <= nd - 2 && split < 0; s++) {
        int64_t m1, st1, m2, st2, b1, bs1, b2, bs2;
        if (collapse(&ac, s, nd - 1, &m1, &st1) && collapse(y, s, nd - 1, &m2, &st2) &&
            collapse(&ac, 0, s, &b1, &bs1) && collapse(y, 0, s, &b2, &bs2)) {
          split = s;
          M = m1;
          lda = st1;
          ldy = st2;
          batch = b1;
          sa = bs1;
          sy = bs2;
        }
      }
      LG_CHECK(split >= 0, LG_EINVAL, LG_CUDA_MOD,
               "matmul: the leading dims of a %s / y %s are not a strided batch of rows",
               lg_tensor_shape_str(a, s2, sizeof s2), lg_tensor_shape_str(y, s1, sizeof s1));
      if (lda == 0) lda = K;
      if (ldy == 0) ldy = N;
    }
    int64_t ldb = bc.nb[0] ? bc.nb[0] : bc.ne[1];
    LG_CHECK(M < (1ll << 31) && N < (1ll << 31) && K < (1ll << 31) && batch < (1ll << 31),
             LG_ERANGE, LG_CUDA_MOD, "matmul: sizes over 2^31");

    /* bias and act in the epilogue where cuBLASLt can (bias of y's dtype, aligned; GELU
     * tanh or ReLU), else one pass of k_bias_act after the product */
    bool bias_ok = !bias || (bias->dtype == y->dtype && lg_tensor_is_contiguous(bias) &&
                             ((uintptr_t)bias->data % 16) == 0);
    bool act_ok = o->act == LG_ACT_NONE || o->act == LG_ACT_GELU_TANH || o->act == LG_ACT_RELU;
    bool use_epi = bias_ok && act_ok;
    LG_TRY(lg_cuda_gemm_raw(be, (int)M, (int)N, (int)K, ac.data, lda, ac.dtype, o->trans_a, bc.data,
                            ldb, bc.dtype, o->trans_b, y->data, ldy, y->dtype,
                            use_epi && bias ? bias->data : NULL, bias ? bias->dtype : 0,
                            use_epi ? o->act : LG_ACT_NONE, o->accumulate, (int)batch, sa, 0, sy));
    if (!use_epi) {
      int64_t total = lg_tensor_rows(y) * N;
      k_bias_act<<<lg_grid1d(total, 256), 256, 0, c->stream>>>(
          y->data, y->dtype, lg_rows_of(y), bias ? bias->data : NULL, bias ? bias->dtype : 0, N,
          total, o->act, 0.f);
      CUDA_LAUNCH_CHECK();
    }
  }
  return 0;
fail:
  return err;
}

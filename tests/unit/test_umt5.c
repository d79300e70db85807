/* test_umt5.c: the umT5 text encoder (models/umt5.c) and the attention_bias op it needs
 * (cpu/cpu_attn_bias.c) on the CPU backend, with tiny random weights (the "tiny" model spec:
 * vocab 1000, d 64, 2 layers, 4 heads x 16, d_ff 128).
 * - the T5 relative position bucket function against hand-computed values;
 * - attention_bias against a double reference, and LG_ENOTSUP on a backend without it;
 * - the encoder against a naive double-precision re-implementation that follows the PyTorch
 *   reference literally (512 padded tokens, key mask, rows past the prompt zeroed), with F32
 *   and BF16 checkpoints; rows past n_ids are zero, encodes are deterministic;
 * - the host attention fallback (a backend without attention_bias) gives the same output;
 * - bad ids, shapes and checkpoints get clear errors. Test thread. */
#include "test_util.h"

#include "checkpoint.h"
#include "model_spec.h"
#include "umt5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXL LG_UMT5_MAX_LEN

static lg_backend *be;

static int setup(void **state) {
  (void)state;
  be = lg_backend_new_cpu(2);
  return be ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  lg_backend_free(&be);
  return 0;
}

/* ---- bucket function ---- */

static void test_umt5_bucket_hand_values(void **state) {
  (void)state;
  /* 32 buckets, max distance 128: 16 per sign (keys after the query get +16), exact below 8,
   * then 8 + int(log(|rp|/8) / log(16) * 8), clamped to 15 */
  static const struct {
    int rp, bucket;
  } cases[] = {
      {0, 0},     {1, 17},   {7, 23},   {8, 24},  {20, 26}, /* log(2.5)/log(16)*8 = 2.64 */
      {127, 31},                                            /* 7.97 -> 7 -> 15 */
      {128, 31},  {500, 31}, {-1, 1},   {-9, 8},            /* log(9/8)/log(16)*8 = 0.34 */
      {-300, 15}, {16, 26},  {-32, 12}, {64, 30},           /* 2, 4, 6 exactly */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = lg_umt5_bucket(cases[i].rp, 32, 128);
    if (got != cases[i].bucket)
      fail_msg("bucket(%d) = %d, expected %d", cases[i].rp, got, cases[i].bucket);
  }
}

/* ---- attention_bias op ---- */

static void test_attention_bias_matches_double_reference(void **state) {
  (void)state;
  enum { B = 2, LQ = 5, LK = 9, NH = 3, DH = 8 };
  lg_rng r;
  lg_rng_seed(&r, 3);
  int64_t sq[4] = {B, LQ, NH, DH}, sk[4] = {B, LK, NH, DH}, sb[3] = {NH, LQ, LK};
  float *qv, *kv, *vv, *bv;
  lg_tensor q = tu_tensor_rand(be, &r, LG_F32, 4, sq, &qv);
  lg_tensor k = tu_tensor_rand(be, &r, LG_F32, 4, sk, &kv);
  lg_tensor v = tu_tensor_rand(be, &r, LG_F32, 4, sk, &vv);
  lg_tensor bias = tu_tensor_rand(be, &r, LG_F32, 3, sb, &bv);
  for (int i = 0; i < NH * LQ * LK; i++) /* a bias that matters: up to +-4 */
    bv[i] *= 4.0f;
  assert_int_equal(lg_tensor_upload(&bias, bv), 0);
  lg_tensor o = tu_tensor(be, LG_F32, 4, sq, NULL);
  const int32_t kv_len[B] = {9, 4};
  const float scale = 0.7f;
  assert_int_equal(lg_backend_attention_bias(be, &o, &q, &k, &v, &bias, kv_len, scale), 0);
  double *ref = calloc((size_t)B * LQ * NH * DH, sizeof *ref);
  assert_non_null(ref);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < LQ; i++) {
        double s[LK], mx = -INFINITY, sum = 0;
        for (int j = 0; j < kv_len[b]; j++) {
          double dot = 0;
          for (int d = 0; d < DH; d++)
            dot +=
                (double)qv[((b * LQ + i) * NH + h) * DH + d] * kv[((b * LK + j) * NH + h) * DH + d];
          s[j] = dot * scale + bv[(h * LQ + i) * LK + j];
          if (s[j] > mx) mx = s[j];
        }
        for (int j = 0; j < kv_len[b]; j++)
          sum += s[j] = exp(s[j] - mx);
        for (int d = 0; d < DH; d++) {
          double acc = 0;
          for (int j = 0; j < kv_len[b]; j++)
            acc += s[j] * vv[((b * LK + j) * NH + h) * DH + d];
          ref[((b * LQ + i) * NH + h) * DH + d] = acc / sum;
        }
      }
  tu_assert_close(&o, ref, 1e-5, "attention_bias");

  /* BF16 k/v (read element by element) give what their f32 values give */
  lg_tensor kb = tu_tensor(be, LG_BF16, 4, sk, kv), vb = tu_tensor(be, LG_BF16, 4, sk, vv);
  float *kr = tu_download(&kb), *vr = tu_download(&vb);
  lg_tensor k32 = tu_tensor(be, LG_F32, 4, sk, kr), v32 = tu_tensor(be, LG_F32, 4, sk, vr);
  lg_tensor ob = tu_tensor(be, LG_F32, 4, sq, NULL), o32 = tu_tensor(be, LG_F32, 4, sq, NULL);
  assert_int_equal(lg_backend_attention_bias(be, &ob, &q, &kb, &vb, &bias, kv_len, scale), 0);
  assert_int_equal(lg_backend_attention_bias(be, &o32, &q, &k32, &v32, &bias, kv_len, scale), 0);
  float *gb = tu_download(&ob), *g32 = tu_download(&o32);
  assert_memory_equal(gb, g32, sizeof(float) * B * LQ * NH * DH);
  free(gb), free(g32), free(kr), free(vr);
  lg_tensor_free(&kb), lg_tensor_free(&vb), lg_tensor_free(&k32), lg_tensor_free(&v32);
  lg_tensor_free(&ob), lg_tensor_free(&o32);

  /* a zero bias gives plain attention */
  float *zero = calloc(NH * LQ * LK, sizeof *zero);
  assert_non_null(zero);
  assert_int_equal(lg_tensor_upload(&bias, zero), 0);
  lg_tensor o2 = tu_tensor(be, LG_F32, 4, sq, NULL);
  assert_int_equal(lg_backend_attention_bias(be, &o, &q, &k, &v, &bias, kv_len, scale), 0);
  assert_int_equal(LG_OP(be, attention, &o2, &q, &k, &v, kv_len, scale), 0);
  float *a = tu_download(&o), *a2 = tu_download(&o2);
  for (int i = 0; i < B * LQ * NH * DH; i++)
    assert_true(fabsf(a[i] - a2[i]) <= 1e-5f * (1.0f + fabsf(a2[i])));

  /* a bias of the wrong shape is refused */
  int64_t sbad[3] = {NH, LQ, LK - 1};
  lg_tensor bad = tu_tensor(be, LG_F32, 3, sbad, NULL);
  tu_log_capture(true);
  assert_int_equal(lg_backend_attention_bias(be, &o, &q, &k, &v, &bad, NULL, 1.0f), LG_EINVAL);
  assert_non_null(strstr(tu_log_text(), "bias must be F32 [nh, Lq, Lk]"));
  tu_log_capture(false);

  /* a backend without the op says so */
  lg_backend_ops ops = *be->ops;
  ops.attention_bias = NULL;
  lg_backend nob = *be;
  nob.ops = &ops;
  tu_log_capture(true);
  assert_int_equal(lg_backend_attention_bias(&nob, &o, &q, &k, &v, &bias, NULL, 1.0f), LG_ENOTSUP);
  assert_non_null(strstr(tu_log_text(), "does not implement"));
  tu_log_capture(false);

  free(a);
  free(a2);
  free(zero);
  free(ref);
  free(qv);
  free(kv);
  free(vv);
  free(bv);
  lg_tensor_free(&bad);
  lg_tensor_free(&o2);
  lg_tensor_free(&o);
  lg_tensor_free(&q);
  lg_tensor_free(&k);
  lg_tensor_free(&v);
  lg_tensor_free(&bias);
}

/* ---- tiny random checkpoints ---- */

/* Writes the tiny umT5 with random weights in dtype dt. Norm gammas get 1 + 0.2 N(0,1) and
 * position tables N(0,1) (instead of the spec's 1 and 0.1) so that both visibly matter.
 * drop: leave that tensor out; bad: grow its first dim by one; extra: add a tensor so named. */
static void write_ckpt(const char *path, uint64_t seed, lg_dtype dt, const char *drop,
                       const char *bad, const char *extra) {
  lg_tensor_spec *sp = NULL;
  int n = 0;
  char err[256];
  assert_int_equal(lg_model_spec("umt5", "tiny", &sp, &n, err, sizeof err), 0);
  assert_int_equal(n, 2 + 2 * 10);
  const char **names = calloc((size_t)n + 1, sizeof *names);
  lg_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
  assert_non_null(names);
  assert_non_null(ts);
  lg_rng r;
  lg_rng_seed(&r, seed);
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (drop && !strcmp(sp[i].name, drop)) continue;
    int64_t shape[LG_MAX_DIMS];
    memcpy(shape, sp[i].shape, sizeof shape);
    if (bad && !strcmp(sp[i].name, bad)) shape[0]++;
    lg_tensor t = lg_tensor_make(NULL, NULL, dt, sp[i].ndim, shape);
    size_t ne = (size_t)lg_tensor_numel(&t);
    void *d = malloc(ne * 4 + 4);
    assert_non_null(d);
    float mean = sp[i].mean, std = sp[i].std;
    if (std == 0.0f) std = 0.2f;
    if (strstr(sp[i].name, "pos_embedding")) std = 1.0f;
    for (size_t k = 0; k < ne; k++) {
      float x = mean + std * (float)lg_rng_normal(&r);
      if (dt == LG_BF16)
        ((uint16_t *)d)[k] = lg_f32_to_bf16(x);
      else
        ((float *)d)[k] = x;
    }
    t.data = d;
    names[m] = sp[i].name;
    ts[m++] = t;
  }
  if (extra) {
    static float one = 1.0f;
    ts[m] = lg_tensor_make(NULL, &one, LG_F32, 1, (int64_t[]){1});
    names[m++] = extra;
  }
  assert_int_equal(lg_safetensors_write(path, names, ts, m, NULL, 0), 0);
  for (int i = 0; i < m - (extra ? 1 : 0); i++) /* the extra's data is static */
    free(ts[i].data);
  free(ts);
  free(names);
  free(sp);
}

/* ---- naive double reference (literal PyTorch semantics) ---- */

typedef struct ref_model {
  int vocab, d, layers, nh, dh, ff, nb;
  double *emb, *norm;                    /* [vocab*d], [d] */
  double **n1, **q, **k, **v, **o, **n2; /* per layer */
  double **gate, **fc1, **fc2, **pos;    /* per layer */
} ref_model;

static double *ck_read(const lg_ckpt *c, const char *fmt, int l) {
  char nm[128];
  snprintf(nm, sizeof nm, fmt, l);
  const lg_ckpt_tensor *t = lg_ckpt_find(c, nm);
  if (!t) fail_msg("reference: missing %s", nm);
  lg_tensor h = lg_ckpt_host_tensor(t);
  size_t ne = (size_t)lg_tensor_numel(&h);
  double *out = malloc(ne * sizeof *out);
  assert_non_null(out);
  for (size_t i = 0; i < ne; i++)
    out[i] = t->dtype == LG_BF16 ? lg_bf16_to_f32(((const uint16_t *)t->data)[i])
                                 : ((const float *)t->data)[i];
  return out;
}

static void ref_load(ref_model *r, const lg_ckpt *c) {
  r->vocab = 1000, r->d = 64, r->layers = 2, r->nh = 4, r->dh = 16, r->ff = 128, r->nb = 32;
  r->emb = ck_read(c, "token_embedding.weight", 0);
  r->norm = ck_read(c, "norm.weight", 0);
  double ***slots[] = {&r->n1, &r->q,    &r->k,   &r->v,   &r->o,
                       &r->n2, &r->gate, &r->fc1, &r->fc2, &r->pos};
  static const char *const names[] = {
      "blocks.%d.norm1.weight",      "blocks.%d.attn.q.weight",
      "blocks.%d.attn.k.weight",     "blocks.%d.attn.v.weight",
      "blocks.%d.attn.o.weight",     "blocks.%d.norm2.weight",
      "blocks.%d.ffn.gate.0.weight", "blocks.%d.ffn.fc1.weight",
      "blocks.%d.ffn.fc2.weight",    "blocks.%d.pos_embedding.embedding.weight"};
  for (int s = 0; s < 10; s++) {
    *slots[s] = calloc((size_t)r->layers, sizeof(double *));
    assert_non_null(*slots[s]);
    for (int l = 0; l < r->layers; l++)
      (*slots[s])[l] = ck_read(c, names[s], l);
  }
}

static void ref_free(ref_model *r) {
  double **slots[] = {r->n1, r->q, r->k, r->v, r->o, r->n2, r->gate, r->fc1, r->fc2, r->pos};
  for (int s = 0; s < 10; s++) {
    for (int l = 0; l < r->layers; l++)
      free(slots[s][l]);
    free(slots[s]);
  }
  free(r->emb);
  free(r->norm);
}

/* y[L][out] = x[L][in] @ w[out][in]^T */
static void ref_linear(double *y, const double *x, const double *w, int L, int in, int out) {
  for (int i = 0; i < L; i++)
    for (int o = 0; o < out; o++) {
      double s = 0;
      for (int c = 0; c < in; c++)
        s += x[i * in + c] * w[o * in + c];
      y[i * out + o] = s;
    }
}

static void ref_rms(double *y, const double *x, const double *w, int L, int d) {
  for (int i = 0; i < L; i++) {
    double ms = 0;
    for (int c = 0; c < d; c++)
      ms += x[i * d + c] * x[i * d + c];
    double inv = 1.0 / sqrt(ms / d + 1e-6);
    for (int c = 0; c < d; c++)
      y[i * d + c] = x[i * d + c] * inv * w[c];
  }
}

/* T5 _relative_position_bucket, bidirectional, written from the PyTorch code independently. */
static int ref_bucket(int rel_pos) {
  int num_buckets = 16, ret = rel_pos > 0 ? 16 : 0, a = abs(rel_pos), max_exact = 8;
  if (a < max_exact) return ret + a;
  int large = max_exact + (int)(log((double)a / max_exact) / log(128.0 / max_exact) *
                                (num_buckets - max_exact));
  return ret + (large < num_buckets - 1 ? large : num_buckets - 1);
}

/* The reference forward on ids padded with 0 to 512 tokens, keys >= n masked (-inf), output
 * rows >= n zeroed. out [512*d]. */
static void ref_encode(const ref_model *r, const int32_t *ids, int n, double *out) {
  int L = MAXL, d = r->d, in = r->nh * r->dh, ff = r->ff;
  double *x = malloc(sizeof(double) * L * d), *h = malloc(sizeof(double) * L * d);
  double *q = malloc(sizeof(double) * L * in), *k = malloc(sizeof(double) * L * in);
  double *v = malloc(sizeof(double) * L * in), *a = malloc(sizeof(double) * L * in);
  double *g = malloc(sizeof(double) * L * ff), *u = malloc(sizeof(double) * L * ff);
  double *t = malloc(sizeof(double) * L * d), *s = malloc(sizeof(double) * L);
  assert_true(x && h && q && k && v && a && g && u && t && s);
  for (int i = 0; i < L; i++) {
    int id = i < n ? ids[i] : 0;
    memcpy(x + (size_t)i * d, r->emb + (size_t)id * d, sizeof(double) * d);
  }
  for (int l = 0; l < r->layers; l++) {
    ref_rms(h, x, r->n1[l], L, d);
    ref_linear(q, h, r->q[l], L, d, in);
    ref_linear(k, h, r->k[l], L, d, in);
    ref_linear(v, h, r->v[l], L, d, in);
    for (int hd = 0; hd < r->nh; hd++)
      for (int i = 0; i < L; i++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < L; j++) {
          double dot = 0;
          for (int c = 0; c < r->dh; c++)
            dot += q[i * in + hd * r->dh + c] * k[j * in + hd * r->dh + c];
          dot += r->pos[l][ref_bucket(j - i) * r->nh + hd];
          s[j] = j < n ? dot : -INFINITY; /* mask hides the padded keys */
          if (s[j] > mx) mx = s[j];
        }
        for (int j = 0; j < L; j++)
          sum += s[j] = exp(s[j] - mx);
        for (int c = 0; c < r->dh; c++) {
          double acc = 0;
          for (int j = 0; j < L; j++)
            acc += s[j] * v[j * in + hd * r->dh + c];
          a[i * in + hd * r->dh + c] = acc / sum;
        }
      }
    ref_linear(t, a, r->o[l], L, in, d);
    for (int i = 0; i < L * d; i++)
      x[i] += t[i];
    ref_rms(h, x, r->n2[l], L, d);
    ref_linear(g, h, r->gate[l], L, d, ff);
    ref_linear(u, h, r->fc1[l], L, d, ff);
    for (int i = 0; i < L * ff; i++) {
      double z = g[i];
      double gelu = 0.5 * z * (1.0 + tanh(sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
      u[i] *= gelu;
    }
    ref_linear(t, u, r->fc2[l], L, ff, d);
    for (int i = 0; i < L * d; i++)
      x[i] += t[i];
  }
  ref_rms(out, x, r->norm, L, d);
  for (int i = n * d; i < L * d; i++)
    out[i] = 0.0;
  free(x), free(h), free(q), free(k), free(v), free(a), free(g), free(u), free(t), free(s);
}

/* ---- encoder tests ---- */

static void random_ids(lg_rng *r, int32_t *ids, int n) {
  for (int i = 0; i < n; i++)
    ids[i] = 2 + (int32_t)(lg_rng_uniform(r) * 997.0);
  if (n > 0) ids[n - 1] = 1; /* </s> */
}

static void check_against_reference(lg_dtype dt, const char *file) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/%s", LG_BINARY_DIR, file);
  write_ckpt(path, 21, dt, NULL, NULL, NULL);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  lg_umt5 *m = lg_umt5_load(be, c, err, sizeof err);
  if (!m) fail_msg("load: %s", err);
  const lg_umt5_config *cfg = lg_umt5_get_config(m);
  assert_int_equal(cfg->vocab, 1000);
  assert_int_equal(cfg->dim, 64);
  assert_int_equal(cfg->layers, 2);
  assert_int_equal(cfg->heads, 4);
  assert_int_equal(cfg->head_dim, 16);
  assert_int_equal(cfg->ffn_dim, 128);
  assert_int_equal(cfg->buckets, 32);
  ref_model rm;
  ref_load(&rm, c);

  /* lengths: one token, one spanning the exact and log buckets, one past max distance 128 */
  static const int lens[] = {1, 23, 150};
  lg_rng r;
  lg_rng_seed(&r, 5);
  int64_t so[2] = {MAXL, 64};
  lg_tensor out = tu_tensor(be, LG_F32, 2, so, NULL);
  double *ref = malloc(sizeof(double) * MAXL * 64);
  assert_non_null(ref);
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    int n = lens[li];
    int32_t ids[MAXL];
    random_ids(&r, ids, n);
    /* garbage in out first: rows past n must come back zero */
    float *junk = malloc(sizeof(float) * MAXL * 64);
    assert_non_null(junk);
    for (int i = 0; i < MAXL * 64; i++)
      junk[i] = 7.0f;
    assert_int_equal(lg_tensor_upload(&out, junk), 0);
    free(junk);
    assert_int_equal(lg_umt5_encode(m, ids, n, &out), 0);
    ref_encode(&rm, ids, n, ref);
    char what[64];
    snprintf(what, sizeof what, "umt5 %s n=%d", lg_dtype_name(dt), n);
    tu_assert_close(&out, ref, 1e-4, what);
    float *got = tu_download(&out);
    for (int i = n * 64; i < MAXL * 64; i++)
      if (got[i] != 0.0f) fail_msg("%s: row %d not zero (%g)", what, i / 64, got[i]);
    /* deterministic: a second encode is bit-identical */
    assert_int_equal(lg_umt5_encode(m, ids, n, &out), 0);
    float *got2 = tu_download(&out);
    assert_memory_equal(got, got2, sizeof(float) * MAXL * 64);
    free(got);
    free(got2);
  }
  free(ref);
  ref_free(&rm);
  lg_tensor_free(&out);
  lg_umt5_free(&m);
  assert_null(m);
  lg_ckpt_free(&c);
  remove(path);
}

static void test_umt5_f32_matches_reference(void **state) {
  (void)state;
  check_against_reference(LG_F32, "test_umt5_f32.safetensors");
}

static void test_umt5_bf16_matches_reference(void **state) {
  (void)state;
  check_against_reference(LG_BF16, "test_umt5_bf16.safetensors");
}

/* A backend without attention_bias (the CUDA backend today) runs attention on the host. */
static void test_umt5_host_fallback_same_output(void **state) {
  (void)state;
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/test_umt5_fb.safetensors", LG_BINARY_DIR);
  write_ckpt(path, 33, LG_F32, NULL, NULL, NULL);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  lg_backend_ops ops = *be->ops;
  ops.attention_bias = NULL;
  lg_backend nob = *be;
  nob.ops = &ops;
  lg_umt5 *m1 = lg_umt5_load(be, c, err, sizeof err);
  lg_umt5 *m2 = lg_umt5_load(&nob, c, err, sizeof err);
  assert_non_null(m1);
  assert_non_null(m2);
  int32_t ids[40];
  lg_rng r;
  lg_rng_seed(&r, 9);
  random_ids(&r, ids, 40);
  int64_t so[2] = {MAXL, 64};
  lg_tensor o1 = tu_tensor(be, LG_F32, 2, so, NULL), o2 = tu_tensor(&nob, LG_F32, 2, so, NULL);
  assert_int_equal(lg_umt5_encode(m1, ids, 40, &o1), 0);
  assert_int_equal(lg_umt5_encode(m2, ids, 40, &o2), 0);
  float *a = tu_download(&o1), *b = tu_download(&o2);
  double mx = 0;
  for (int i = 0; i < MAXL * 64; i++) {
    assert_true(fabsf(a[i] - b[i]) <= 1e-5f * (1.0f + fabsf(a[i])));
    if (fabs(a[i]) > mx) mx = fabs(a[i]);
  }
  assert_true(mx > 0.1);
  free(a);
  free(b);
  lg_tensor_free(&o1);
  lg_tensor_free(&o2);
  lg_umt5_free(&m1);
  lg_umt5_free(&m2);
  lg_ckpt_free(&c);
  remove(path);
}

static void test_umt5_bad_inputs(void **state) {
  (void)state;
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/test_umt5_bad.safetensors", LG_BINARY_DIR);
  write_ckpt(path, 44, LG_F32, NULL, NULL, NULL);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  lg_umt5 *m = lg_umt5_load(be, c, err, sizeof err);
  assert_non_null(m);
  int64_t so[2] = {MAXL, 64}, s_narrow[2] = {MAXL, 32}, s_short[2] = {4, 64};
  lg_tensor out = tu_tensor(be, LG_F32, 2, so, NULL);
  lg_tensor narrow = tu_tensor(be, LG_F32, 2, s_narrow, NULL);
  lg_tensor shrt = tu_tensor(be, LG_F32, 2, s_short, NULL);
  int32_t ids[MAXL + 1];
  for (int i = 0; i < MAXL + 1; i++)
    ids[i] = 5;
  tu_log_capture(true);
  ids[2] = 1000;
  assert_int_equal(lg_umt5_encode(m, ids, 3, &out), LG_EINVAL);
  assert_non_null(strstr(tu_log_text(), "outside the vocabulary"));
  ids[2] = -1;
  assert_int_equal(lg_umt5_encode(m, ids, 3, &out), LG_EINVAL);
  ids[2] = 5;
  assert_int_equal(lg_umt5_encode(m, ids, MAXL + 1, &out), LG_EINVAL);
  assert_int_equal(lg_umt5_encode(m, ids, 3, &narrow), LG_EINVAL);
  assert_int_equal(lg_umt5_encode(m, ids, 5, &shrt), LG_EINVAL);
  tu_log_capture(false);
  /* a short output holds exactly n rows; n = 0 gives all zeros */
  assert_int_equal(lg_umt5_encode(m, ids, 4, &shrt), 0);
  assert_int_equal(lg_umt5_encode(m, ids, 0, &out), 0);
  float *z = tu_download(&out);
  for (int i = 0; i < MAXL * 64; i++)
    assert_true(z[i] == 0.0f);
  free(z);
  lg_tensor_free(&out);
  lg_tensor_free(&narrow);
  lg_tensor_free(&shrt);
  lg_umt5_free(&m);
  lg_ckpt_free(&c);
  remove(path);
}

static void expect_load_error(const char *drop, const char *bad, const char *extra,
                              const char *want) {
  char path[512], err[256] = "";
  snprintf(path, sizeof path, "%s/test_umt5_err.safetensors", LG_BINARY_DIR);
  write_ckpt(path, 55, LG_F32, drop, bad, extra);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  assert_non_null(c);
  lg_umt5 *m = lg_umt5_load(be, c, err, sizeof err);
  assert_null(m);
  if (!strstr(err, want)) fail_msg("error '%s' does not mention '%s'", err, want);
  lg_ckpt_free(&c);
  remove(path);
}

static void test_umt5_load_errors_name_the_tensor(void **state) {
  (void)state;
  expect_load_error("blocks.1.ffn.fc2.weight", NULL, NULL,
                    "missing tensor blocks.1.ffn.fc2.weight");
  expect_load_error(NULL, "blocks.1.attn.k.weight", NULL, "blocks.1.attn.k.weight has shape");
  expect_load_error(NULL, NULL, "blocks.0.attn.relative_bias", "unexpected tensor");
  expect_load_error("token_embedding.weight", NULL, NULL, "token_embedding.weight");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_umt5_bucket_hand_values),
      cmocka_unit_test(test_attention_bias_matches_double_reference),
      cmocka_unit_test(test_umt5_f32_matches_reference),
      cmocka_unit_test(test_umt5_bf16_matches_reference),
      cmocka_unit_test(test_umt5_host_fallback_same_output),
      cmocka_unit_test(test_umt5_bad_inputs),
      cmocka_unit_test(test_umt5_load_errors_name_the_tensor),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

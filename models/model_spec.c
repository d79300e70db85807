/* model_spec.c: the tensor lists (official names, shapes, random-init scales) of the Wan DiT,
 * the Wan2.1 VAE, the TAEHV decoder and the umT5 encoder, per preset (MODELS.md 2, 4, 5).
 * Real sizes: wan-dit 1.3b = 825 tensors / 1,418,996,800 params; wan-vae = 194 / 126,892,531;
 * umt5 = 242 / 5,680,910,336; taehv decoder = 64 / 9,844,611.
 * Init: weights N(0, 1/fan_in), biases N(0, 0.01^2), norm gammas 1, DiT modulation tables
 * N(0, 0.02^2), embeddings N(0, 1), so that random models keep activations finite.
 * Threads: any (no shared state). */
#include "model_spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct spec_list {
  lg_tensor_spec *v;
  int n, cap;
  int oom;
} spec_list;

/* Appends name (printf format) with ndim dims from the varargs (int64_t), then mean and std. */
static void add(spec_list *l, float mean, float std, int ndim, const int64_t *shape,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add(spec_list *l, float mean, float std, int ndim, const int64_t *shape,
                const char *fmt, ...) {
  if (l->oom) return;
  if (l->n == l->cap) {
    int nc = l->cap ? l->cap * 2 : 64;
    lg_tensor_spec *v = realloc(l->v, sizeof *v * (size_t)nc);
    if (!v) {
      l->oom = 1;
      return;
    }
    l->v = v;
    l->cap = nc;
  }
  lg_tensor_spec *s = &l->v[l->n++];
  memset(s, 0, sizeof *s);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->name, sizeof s->name, fmt, ap);
  va_end(ap);
  s->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    s->shape[i] = shape[i];
  s->mean = mean;
  s->std = std;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* weight of fan_in inputs, std 1/sqrt(fan_in) */
#define W(l, fan_in, name, ...)                                                                    \
  add(l, 0.0f, 1.0f / sqrtf((float)(fan_in)), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), "%s", name)
#define BIAS_STD 0.01f

static void linear(spec_list *l, const char *prefix, int64_t out, int64_t in, int bias) {
  char nm[128];
  snprintf(nm, sizeof nm, "%s.weight", prefix);
  W(l, in, nm, out, in);
  if (bias) add(l, 0.0f, BIAS_STD, 1, SHAPE(out), "%s.bias", prefix);
}

/* ---- Wan DiT (MODELS.md 2) ---- */

static void spec_dit(spec_list *l, int64_t d, int64_t f, int layers, int64_t text_dim,
                     int64_t freq_dim) {
  W(l, 16 * 1 * 2 * 2, "patch_embedding.weight", d, 16, 1, 2, 2);
  add(l, 0.0f, BIAS_STD, 1, SHAPE(d), "patch_embedding.bias");
  linear(l, "text_embedding.0", d, text_dim, 1);
  linear(l, "text_embedding.2", d, d, 1);
  linear(l, "time_embedding.0", d, freq_dim, 1);
  linear(l, "time_embedding.2", d, d, 1);
  linear(l, "time_projection.1", 6 * d, d, 1);
  for (int i = 0; i < layers; i++) {
    char p[96];
    add(l, 0.0f, 0.02f, 3, SHAPE(1, 6, d), "blocks.%d.modulation", i);
    static const char *const attn[2] = {"self_attn", "cross_attn"};
    for (int a = 0; a < 2; a++) {
      static const char *const qkvo[4] = {"q", "k", "v", "o"};
      for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "blocks.%d.%s.%s", i, attn[a], qkvo[k]);
        linear(l, p, d, d, 1);
      }
      add(l, 1.0f, 0.0f, 1, SHAPE(d), "blocks.%d.%s.norm_q.weight", i, attn[a]);
      add(l, 1.0f, 0.0f, 1, SHAPE(d), "blocks.%d.%s.norm_k.weight", i, attn[a]);
    }
    add(l, 1.0f, 0.0f, 1, SHAPE(d), "blocks.%d.norm3.weight", i);
    add(l, 0.0f, 0.0f, 1, SHAPE(d), "blocks.%d.norm3.bias", i);
    snprintf(p, sizeof p, "blocks.%d.ffn.0", i);
    linear(l, p, f, d, 1);
    snprintf(p, sizeof p, "blocks.%d.ffn.2", i);
    linear(l, p, d, f, 1);
  }
  add(l, 0.0f, 0.02f, 3, SHAPE(1, 2, d), "head.modulation");
  linear(l, "head.head", 16 * 1 * 2 * 2, d, 1);
}

/* ---- Wan2.1 VAE (MODELS.md 4, wan21_vae_tensors.txt) ---- */

#define SPEC_NAME ((int)sizeof(((lg_tensor_spec *)0)->name))

static void vae_gamma(spec_list *l, const char *name, int64_t c, int nd) {
  if (nd == 4)
    add(l, 1.0f, 0.0f, 4, SHAPE(c, 1, 1, 1), "%s", name);
  else
    add(l, 1.0f, 0.0f, 3, SHAPE(c, 1, 1), "%s", name);
}

static void vae_conv3(spec_list *l, const char *prefix, int64_t co, int64_t ci, int64_t kt,
                      int64_t kh, int64_t kw) {
  char nm[SPEC_NAME + 8]; /* the prefix is cut so that "<prefix>.weight" fits a spec name */
  snprintf(nm, sizeof nm, "%.*s.weight", SPEC_NAME - 8, prefix);
  W(l, ci * kt * kh * kw, nm, co, ci, kt, kh, kw);
  add(l, 0.0f, BIAS_STD, 1, SHAPE(co), "%s.bias", prefix);
}

static void vae_conv2(spec_list *l, const char *prefix, int64_t co, int64_t ci, int64_t k) {
  char nm[SPEC_NAME + 8]; /* the prefix is cut so that "<prefix>.weight" fits a spec name */
  snprintf(nm, sizeof nm, "%.*s.weight", SPEC_NAME - 8, prefix);
  W(l, ci * k * k, nm, co, ci, k, k);
  add(l, 0.0f, BIAS_STD, 1, SHAPE(co), "%s.bias", prefix);
}

static void vae_res(spec_list *l, const char *prefix, int64_t in, int64_t out) {
  char nm[160];
  snprintf(nm, sizeof nm, "%s.residual.0.gamma", prefix);
  vae_gamma(l, nm, in, 4);
  snprintf(nm, sizeof nm, "%s.residual.2", prefix);
  vae_conv3(l, nm, out, in, 3, 3, 3);
  snprintf(nm, sizeof nm, "%s.residual.3.gamma", prefix);
  vae_gamma(l, nm, out, 4);
  snprintf(nm, sizeof nm, "%s.residual.6", prefix);
  vae_conv3(l, nm, out, out, 3, 3, 3);
  if (in != out) {
    snprintf(nm, sizeof nm, "%s.shortcut", prefix);
    vae_conv3(l, nm, out, in, 1, 1, 1);
  }
}

static void vae_middle(spec_list *l, const char *enc, int64_t c) {
  char nm[160];
  snprintf(nm, sizeof nm, "%s.middle.0", enc);
  vae_res(l, nm, c, c);
  snprintf(nm, sizeof nm, "%s.middle.1.norm.gamma", enc);
  vae_gamma(l, nm, c, 3);
  snprintf(nm, sizeof nm, "%s.middle.1.to_qkv", enc);
  vae_conv2(l, nm, 3 * c, c, 1);
  snprintf(nm, sizeof nm, "%s.middle.1.proj", enc);
  vae_conv2(l, nm, c, c, 1);
  snprintf(nm, sizeof nm, "%s.middle.2", enc);
  vae_res(l, nm, c, c);
}

static void spec_vae(spec_list *l, int64_t dim, int64_t z) {
  static const int mult[4] = {1, 2, 4, 4};
  char nm[160];
  /* encoder: dims [dim, dim*1, dim*2, dim*4, dim*4]; temporal down [F, T, T] */
  int64_t ed[5] = {dim, dim * mult[0], dim * mult[1], dim * mult[2], dim * mult[3]};
  vae_conv3(l, "encoder.conv1", dim, 3, 3, 3, 3);
  int idx = 0;
  for (int i = 0; i < 4; i++) {
    int64_t in = ed[i], out = ed[i + 1];
    for (int r = 0; r < 2; r++) {
      snprintf(nm, sizeof nm, "encoder.downsamples.%d", idx++);
      vae_res(l, nm, in, out);
      in = out;
    }
    if (i != 3) {
      snprintf(nm, sizeof nm, "encoder.downsamples.%d.resample.1", idx);
      vae_conv2(l, nm, out, out, 3);
      if (i >= 1) {
        snprintf(nm, sizeof nm, "encoder.downsamples.%d.time_conv", idx);
        vae_conv3(l, nm, out, out, 3, 1, 1);
      }
      idx++;
    }
  }
  vae_middle(l, "encoder", ed[4]);
  vae_gamma(l, "encoder.head.0.gamma", ed[4], 4);
  vae_conv3(l, "encoder.head.2", 2 * z, ed[4], 3, 3, 3);
  vae_conv3(l, "conv1", 2 * z, 2 * z, 1, 1, 1);
  vae_conv3(l, "conv2", z, z, 1, 1, 1);
  /* decoder: dims [dim*4, dim*4, dim*4, dim*2, dim]; temporal up [T, T, F] */
  int64_t dd[5] = {dim * mult[3], dim * mult[3], dim * mult[2], dim * mult[1], dim * mult[0]};
  vae_conv3(l, "decoder.conv1", dd[0], z, 3, 3, 3);
  vae_middle(l, "decoder", dd[0]);
  idx = 0;
  for (int i = 0; i < 4; i++) {
    int64_t in = (i == 0) ? dd[i] : dd[i] / 2, out = dd[i + 1];
    for (int r = 0; r < 3; r++) {
      snprintf(nm, sizeof nm, "decoder.upsamples.%d", idx++);
      vae_res(l, nm, in, out);
      in = out;
    }
    if (i != 3) {
      snprintf(nm, sizeof nm, "decoder.upsamples.%d.resample.1", idx);
      vae_conv2(l, nm, out / 2, out, 3);
      if (i <= 1) {
        snprintf(nm, sizeof nm, "decoder.upsamples.%d.time_conv", idx);
        vae_conv3(l, nm, out * 2, out, 3, 1, 1);
      }
      idx++;
    }
  }
  vae_gamma(l, "decoder.head.0.gamma", dd[4], 4);
  vae_conv3(l, "decoder.head.2", 3, dd[4], 3, 3, 3);
}

/* ---- TAEHV decoder ---- */

static void tae_conv(spec_list *l, int idx, const char *sub, int64_t co, int64_t ci, int64_t k,
                     int bias) {
  char nm[160];
  snprintf(nm, sizeof nm, "decoder.%d%s.weight", idx, sub);
  W(l, ci * k * k, nm, co, ci, k, k);
  if (bias) add(l, 0.0f, BIAS_STD, 1, SHAPE(co), "decoder.%d%s.bias", idx, sub);
}

static void tae_memblock(spec_list *l, int idx, int64_t c) {
  tae_conv(l, idx, ".conv.0", c, 2 * c, 3, 1);
  tae_conv(l, idx, ".conv.2", c, c, 3, 1);
  tae_conv(l, idx, ".conv.4", c, c, 3, 1);
}

static void spec_taehv(spec_list *l, int64_t w0, int64_t w1, int64_t w2, int64_t w3) {
  tae_conv(l, 1, "", w0, 16, 3, 1);
  for (int i = 3; i <= 5; i++)
    tae_memblock(l, i, w0);
  tae_conv(l, 7, ".conv", w0 * 1, w0, 1, 0); /* TGrow(w0, stride 1) */
  tae_conv(l, 8, "", w1, w0, 3, 0);
  for (int i = 9; i <= 11; i++)
    tae_memblock(l, i, w1);
  tae_conv(l, 13, ".conv", w1 * 2, w1, 1, 0); /* TGrow(w1, 2) */
  tae_conv(l, 14, "", w2, w1, 3, 0);
  for (int i = 15; i <= 17; i++)
    tae_memblock(l, i, w2);
  tae_conv(l, 19, ".conv", w2 * 2, w2, 1, 0); /* TGrow(w2, 2) */
  tae_conv(l, 20, "", w3, w2, 3, 0);
  tae_conv(l, 22, "", 3, w3, 3, 1);
}

/* ---- umT5 encoder (MODELS.md 5) ---- */

static void spec_umt5(spec_list *l, int64_t vocab, int64_t d, int layers, int64_t heads,
                      int64_t head_dim, int64_t dff, int64_t buckets) {
  int64_t inner = heads * head_dim;
  add(l, 0.0f, 1.0f, 2, SHAPE(vocab, d), "token_embedding.weight");
  for (int i = 0; i < layers; i++) {
    char p[96];
    add(l, 1.0f, 0.0f, 1, SHAPE(d), "blocks.%d.norm1.weight", i);
    static const char *const qkv[3] = {"q", "k", "v"};
    for (int k = 0; k < 3; k++) {
      snprintf(p, sizeof p, "blocks.%d.attn.%s", i, qkv[k]);
      linear(l, p, inner, d, 0);
    }
    snprintf(p, sizeof p, "blocks.%d.attn.o", i);
    linear(l, p, d, inner, 0);
    add(l, 1.0f, 0.0f, 1, SHAPE(d), "blocks.%d.norm2.weight", i);
    snprintf(p, sizeof p, "blocks.%d.ffn.gate.0", i);
    linear(l, p, dff, d, 0);
    snprintf(p, sizeof p, "blocks.%d.ffn.fc1", i);
    linear(l, p, dff, d, 0);
    snprintf(p, sizeof p, "blocks.%d.ffn.fc2", i);
    linear(l, p, d, dff, 0);
    add(l, 0.0f, 0.1f, 2, SHAPE(buckets, heads), "blocks.%d.pos_embedding.embedding.weight", i);
  }
  add(l, 1.0f, 0.0f, 1, SHAPE(d), "norm.weight");
}

static int spec_fail(char *err, size_t errn, int code, const char *fmt, const char *arg) {
  if (err && errn) snprintf(err, errn, fmt, arg);
  return code;
}

int lg_model_spec(const char *arch, const char *preset, lg_tensor_spec **specs, int *n, char *err,
                  size_t errn) {
  spec_list l = {0};
  *specs = NULL;
  *n = 0;
  if (!arch || !preset)
    return spec_fail(err, errn, LG_EINVAL, "model spec: %s are required", "arch and preset");
  bool tiny = strcmp(preset, "tiny") == 0;
  bool big = strcmp(preset, "14b") == 0;
  if (!tiny && !big && strcmp(preset, "1.3b") != 0)
    return spec_fail(err, errn, LG_EINVAL, "model spec: unknown preset '%s' (tiny, 1.3b, 14b)",
                     preset);
  if (strcmp(arch, "wan-dit") == 0) {
    if (tiny)
      spec_dit(&l, 256, 512, 2, 64, 256);
    else if (big)
      spec_dit(&l, 5120, 13824, 40, 4096, 256);
    else
      spec_dit(&l, 1536, 8960, 30, 4096, 256);
  } else if (strcmp(arch, "wan-vae") == 0) {
    spec_vae(&l, tiny ? 8 : 96, 16);
  } else if (strcmp(arch, "taehv") == 0) {
    if (tiny)
      spec_taehv(&l, 32, 16, 8, 8);
    else
      spec_taehv(&l, 256, 128, 64, 64);
  } else if (strcmp(arch, "umt5") == 0) {
    if (tiny)
      spec_umt5(&l, 1000, 64, 2, 4, 16, 128, 32);
    else
      spec_umt5(&l, 256384, 4096, 24, 64, 64, 10240, 32);
  } else {
    return spec_fail(err, errn, LG_EINVAL,
                     "model spec: unknown architecture '%s' (wan-dit, wan-vae, taehv, umt5)", arch);
  }
  if (l.oom) {
    free(l.v);
    return spec_fail(err, errn, LG_ENOMEM, "model spec: %s", "out of memory");
  }
  *specs = l.v;
  *n = l.n;
  return 0;
}

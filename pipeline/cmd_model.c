/* cmd_model.c: the checkpoint tools of the livegen CLI.
 *   livegen inspect FILE [--summary]     format, tensors (name dtype shape), totals, detected
 *                                        architecture and config
 *   livegen convert IN OUT.safetensors   any readable checkpoint -> safetensors (mapped names,
 *                                        dtypes kept)
 *   livegen init-model --arch A --preset P --seed N --out FILE [--dtype f32|bf16|f16]
 *                      [--dry-run]       random weights under official names (model_spec.h),
 *                                        streamed tensor by tensor to disk
 * Exit status: 0 ok, 1 runtime error (message on stderr), 2 usage error. Main thread. */
#include "checkpoint.h"
#include "cli.h"
#include "model_spec.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a name from a file with non-printable bytes (terminal escapes) shown as '?'. */
static void print_name(const char *s) {
  for (; *s; s++)
    putchar((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f ? '?' : *s);
}

/* "1418996800" -> "1,418,996,800" */
static const char *commas(uint64_t v, char *buf, size_t n) {
  char tmp[32];
  int l = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
  size_t o = 0;
  for (int i = 0; i < l && o + 2 < n; i++) {
    if (i > 0 && (l - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = tmp[i];
  }
  buf[o] = '\0';
  return buf;
}

static uint64_t numel_of(const lg_ckpt_tensor *t) {
  uint64_t n = 1;
  for (int d = 0; d < t->ndim; d++)
    n *= (uint64_t)t->shape[d];
  return n;
}

static const char *st_dtype(lg_dtype t) {
  switch (t) {
  case LG_F32: return "F32";
  case LG_F16: return "F16";
  case LG_BF16: return "BF16";
  case LG_I32: return "I32";
  case LG_U8: return "U8";
  }
  return "?";
}

static int64_t dim_of(const lg_ckpt *c, const char *name, int d) {
  const lg_ckpt_tensor *t = lg_ckpt_find(c, name);
  return (t && d < t->ndim) ? t->shape[d] : -1;
}

/* Number of distinct N in "blocks.N." names (max N + 1). */
static int count_blocks(const lg_ckpt *c, const char *prefix) {
  size_t pl = strlen(prefix);
  int maxn = -1;
  for (int i = 0; i < lg_ckpt_count(c); i++) {
    const char *nm = lg_ckpt_at(c, i)->name;
    if (strncmp(nm, prefix, pl) != 0 || !isdigit((unsigned char)nm[pl])) continue;
    long v = strtol(nm + pl, NULL, 10);
    if (v > maxn && v < 100000) maxn = (int)v;
  }
  return maxn + 1;
}

/* Writes "arch (config)" into buf from the tensor names and shapes (MODELS.md 2, 4, 5). */
static void detect_arch(const lg_ckpt *c, char *buf, size_t n) {
  if (lg_ckpt_find(c, "patch_embedding.weight") && lg_ckpt_find(c, "blocks.0.self_attn.q.weight")) {
    int64_t dim = dim_of(c, "patch_embedding.weight", 0);
    snprintf(buf, n,
             "wan-dit (dim %" PRId64 ", ffn_dim %" PRId64 ", heads %" PRId64
             ", layers %d, text_dim %" PRId64 ", freq_dim %" PRId64 ")",
             dim, dim_of(c, "blocks.0.ffn.0.weight", 0), dim > 0 ? dim / 128 : -1,
             count_blocks(c, "blocks."), dim_of(c, "text_embedding.0.weight", 1),
             dim_of(c, "time_embedding.0.weight", 1));
  } else if (lg_ckpt_find(c, "decoder.conv1.weight") && lg_ckpt_find(c, "decoder.head.2.weight")) {
    int64_t dim = dim_of(c, "decoder.head.0.gamma", 0);
    int64_t z = dim_of(c, "decoder.conv1.weight", 1);
    snprintf(buf, n, "wan-vae (dim %" PRId64 ", z %" PRId64 "%s)", dim, z,
             lg_ckpt_find(c, "encoder.conv1.weight") ? "" : ", decoder only");
  } else if (lg_ckpt_find(c, "decoder.1.weight") && lg_ckpt_find(c, "decoder.3.conv.0.weight")) {
    snprintf(buf, n, "taehv (decoder widths %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 ")",
             dim_of(c, "decoder.1.weight", 0), dim_of(c, "decoder.8.weight", 0),
             dim_of(c, "decoder.14.weight", 0), dim_of(c, "decoder.20.weight", 0));
  } else if (lg_ckpt_find(c, "token_embedding.weight") &&
             lg_ckpt_find(c, "blocks.0.attn.q.weight")) {
    snprintf(buf, n,
             "umt5 (layers %d, d %" PRId64 ", vocab %" PRId64 ", d_ff %" PRId64 ", heads %" PRId64
             ")",
             count_blocks(c, "blocks."), dim_of(c, "token_embedding.weight", 1),
             dim_of(c, "token_embedding.weight", 0), dim_of(c, "blocks.0.ffn.fc1.weight", 0),
             dim_of(c, "blocks.0.pos_embedding.embedding.weight", 1));
  } else {
    snprintf(buf, n, "unknown");
  }
}

static void inspect_usage(FILE *f) {
  fprintf(f, "usage: livegen inspect FILE [--summary]\n"
             "  Lists a checkpoint's tensors (name dtype shape), totals and the detected\n"
             "  architecture. FILE: .safetensors, *.index.json (sharded) or a .pt/.pth.\n"
             "  --summary  totals and architecture only\n");
}

int lg_cmd_inspect(int argc, char **argv) {
  const char *path = NULL;
  int summary = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--summary")) {
      summary = 1;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      inspect_usage(stdout);
      return 0;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "livegen inspect: unknown option '%s'\n", argv[i]);
      inspect_usage(stderr);
      return 2;
    } else if (!path) {
      path = argv[i];
    } else {
      fprintf(stderr, "livegen inspect: one file only\n");
      return 2;
    }
  }
  if (!path) {
    inspect_usage(stderr);
    return 2;
  }
  char err[512];
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) {
    fprintf(stderr, "livegen inspect: %s\n", err);
    return 1;
  }
  uint64_t params = 0, bytes = 0;
  int per_dtype[4] = {0};
  for (int i = 0; i < lg_ckpt_count(c); i++) {
    const lg_ckpt_tensor *t = lg_ckpt_at(c, i);
    params += numel_of(t);
    bytes += t->nbytes;
    if ((unsigned)t->dtype < 4) per_dtype[t->dtype]++;
  }
  char arch[256], cb[40], cb2[40];
  detect_arch(c, arch, sizeof arch);
  printf("file: %s\nformat: %s\n", path, lg_ckpt_format(c));
  printf("tensors: %d\n", lg_ckpt_count(c));
  printf("params: %s\n", commas(params, cb, sizeof cb));
  printf("bytes: %s\n", commas(bytes, cb2, sizeof cb2));
  printf("dtypes:");
  for (int d = 0; d < 4; d++)
    if (per_dtype[d]) printf(" %s=%d", st_dtype((lg_dtype)d), per_dtype[d]);
  printf("\narch: %s\n", arch);
  if (!summary) {
    /* name order */
    int n = lg_ckpt_count(c);
    const lg_ckpt_tensor **v = malloc(sizeof *v * (size_t)(n ? n : 1));
    if (!v) {
      fprintf(stderr, "livegen inspect: out of memory\n");
      lg_ckpt_free(&c);
      return 1;
    }
    for (int i = 0; i < n; i++)
      v[i] = lg_ckpt_at(c, i);
    for (int i = 1; i < n; i++) /* insertion sort keeps this dependency-free; n ~ 1000 */
      for (int j = i; j > 0 && strcmp(v[j - 1]->name, v[j]->name) > 0; j--) {
        const lg_ckpt_tensor *t = v[j];
        v[j] = v[j - 1];
        v[j - 1] = t;
      }
    for (int i = 0; i < n; i++) {
      print_name(v[i]->name);
      printf(" %s [", st_dtype(v[i]->dtype));
      for (int d = 0; d < v[i]->ndim; d++)
        printf(d ? ", %" PRId64 : "%" PRId64, v[i]->shape[d]);
      printf("]\n");
    }
    free(v);
  }
  lg_ckpt_free(&c);
  if (fflush(stdout) != 0) return 1;
  return 0;
}

/* ---- convert ---- */

int lg_cmd_convert(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("usage: livegen convert IN OUT.safetensors\n"
           "  Rewrites a checkpoint (.pt/.pth, safetensors, sharded *.index.json) as one\n"
           "  safetensors file with official tensor names; dtypes are kept.\n");
    return 0;
  }
  if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
    fprintf(stderr, "usage: livegen convert IN OUT.safetensors\n");
    return 2;
  }
  char err[512];
  lg_ckpt *c = lg_ckpt_open(argv[1], err, sizeof err);
  if (!c) {
    fprintf(stderr, "livegen convert: %s\n", err);
    return 1;
  }
  int n = lg_ckpt_count(c);
  const char **names = malloc(sizeof *names * (size_t)(n ? n : 1));
  lg_tensor *ts = malloc(sizeof *ts * (size_t)(n ? n : 1));
  int rc = 1;
  if (!names || !ts) {
    fprintf(stderr, "livegen convert: out of memory\n");
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const lg_ckpt_tensor *t = lg_ckpt_at(c, i);
    names[i] = t->name;
    ts[i] = lg_ckpt_host_tensor(t);
  }
  const char *meta[4] = {"format", "pt", "source_format", lg_ckpt_format(c)};
  int e = lg_safetensors_write(argv[2], names, ts, n, meta, 2);
  if (e) {
    fprintf(stderr, "livegen convert: writing %s failed: %s\n", argv[2], lg_strerror(e));
    goto done;
  }
  printf("wrote %s: %d tensors\n", argv[2], n);
  rc = 0;
done:
  free(names);
  free(ts);
  lg_ckpt_free(&c);
  return rc;
}

/* ---- init-model ---- */

typedef struct init_ctx {
  const lg_tensor_spec *specs;
  lg_dtype dtype;
  uint64_t seed;
  lg_rng rng; /* state of the tensor being produced */
} init_ctx;

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

/* Tensor i's values are mean + std * N(0,1) from an RNG seeded by (seed, name), so a tensor's
 * values do not depend on the order or the set of other tensors. */
static int init_fill(void *user, int i, size_t offset, void *buf, size_t nbytes) {
  init_ctx *x = user;
  const lg_tensor_spec *s = &x->specs[i];
  if (offset == 0) lg_rng_seed(&x->rng, x->seed ^ fnv1a(s->name));
  size_t es = lg_dtype_size(x->dtype), n = nbytes / es;
  for (size_t k = 0; k < n; k++) {
    float v = s->mean;
    if (s->std != 0.0f) v += s->std * (float)lg_rng_normal(&x->rng);
    if (x->dtype == LG_F32)
      ((float *)buf)[k] = v;
    else if (x->dtype == LG_BF16)
      ((uint16_t *)buf)[k] = lg_f32_to_bf16(v);
    else
      ((uint16_t *)buf)[k] = lg_f32_to_f16(v);
  }
  return 0;
}

static void init_usage(FILE *f) {
  fprintf(f, "usage: livegen init-model --arch ARCH --preset PRESET --seed N --out FILE\n"
             "                          [--dtype f32|bf16|f16] [--dry-run]\n"
             "  Writes random weights under official names as safetensors (deterministic for\n"
             "  a seed). ARCH: wan-dit, wan-vae, taehv, umt5. PRESET: tiny, 1.3b, 14b.\n"
             "  --dry-run  print the tensor count and parameter total without writing\n");
}

int lg_cmd_init_model(int argc, char **argv) {
  const char *arch = NULL, *preset = NULL, *out = NULL, *dts = "f32", *seed_s = NULL;
  int dry = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = !strcmp(a, "--arch")     ? &arch
                        : !strcmp(a, "--preset") ? &preset
                        : !strcmp(a, "--out")    ? &out
                        : !strcmp(a, "--dtype")  ? &dts
                        : !strcmp(a, "--seed")   ? &seed_s
                                                 : NULL;
    if (slot) {
      if (i + 1 >= argc) {
        fprintf(stderr, "livegen init-model: %s needs a value\n", a);
        return 2;
      }
      *slot = argv[++i];
    } else if (!strcmp(a, "--dry-run")) {
      dry = 1;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      init_usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "livegen init-model: unknown argument '%s'\n", a);
      init_usage(stderr);
      return 2;
    }
  }
  if (!arch || !preset || (!dry && (!out || !seed_s))) {
    fprintf(stderr, "livegen init-model: --arch, --preset%s are required\n",
            dry ? "" : ", --seed and --out");
    init_usage(stderr);
    return 2;
  }
  uint64_t seed = 0;
  if (seed_s) {
    char *end;
    errno = 0;
    seed = strtoull(seed_s, &end, 0);
    if (errno || end == seed_s || *end || seed_s[0] == '-') {
      fprintf(stderr, "livegen init-model: bad --seed '%s'\n", seed_s);
      return 2;
    }
  }
  lg_dtype dtype;
  if (!strcmp(dts, "f32") || !strcmp(dts, "fp32"))
    dtype = LG_F32;
  else if (!strcmp(dts, "bf16"))
    dtype = LG_BF16;
  else if (!strcmp(dts, "f16") || !strcmp(dts, "fp16"))
    dtype = LG_F16;
  else {
    fprintf(stderr, "livegen init-model: bad --dtype '%s' (f32, bf16, f16)\n", dts);
    return 2;
  }
  lg_tensor_spec *specs = NULL;
  int n = 0;
  char err[256];
  if (lg_model_spec(arch, preset, &specs, &n, err, sizeof err)) {
    fprintf(stderr, "livegen init-model: %s\n", err);
    return 2;
  }
  uint64_t params = 0;
  for (int i = 0; i < n; i++) {
    uint64_t p = 1;
    for (int d = 0; d < specs[i].ndim; d++)
      p *= (uint64_t)specs[i].shape[d];
    params += p;
  }
  char cb[40], cb2[40];
  int rc = 0;
  if (dry) {
    printf("arch: %s\npreset: %s\ntensors: %d\nparams: %s\nbytes: %s (%s)\n", arch, preset, n,
           commas(params, cb, sizeof cb), commas(params * lg_dtype_size(dtype), cb2, sizeof cb2),
           dts);
    goto done;
  }
  const char **names = malloc(sizeof *names * (size_t)n);
  lg_tensor *ts = malloc(sizeof *ts * (size_t)n);
  if (!names || !ts) {
    free(names);
    free(ts);
    fprintf(stderr, "livegen init-model: out of memory\n");
    rc = 1;
    goto done;
  }
  for (int i = 0; i < n; i++) {
    names[i] = specs[i].name;
    ts[i] = lg_tensor_make(NULL, NULL, dtype, specs[i].ndim, specs[i].shape);
  }
  char seed_txt[32];
  snprintf(seed_txt, sizeof seed_txt, "%" PRIu64, seed);
  const char *meta[10] = {"format",         "pt",    "livegen_arch", arch,
                          "livegen_preset", preset,  "livegen_seed", seed_txt,
                          "livegen_init",   "random"};
  init_ctx x = {.specs = specs, .dtype = dtype, .seed = seed};
  int e = lg_safetensors_write_fill(out, names, ts, n, meta, 5, init_fill, &x);
  free(names);
  free(ts);
  if (e) {
    fprintf(stderr, "livegen init-model: writing %s failed: %s\n", out, lg_strerror(e));
    rc = 1;
    goto done;
  }
  printf("wrote %s: %s %s, %d tensors, %s params, %s\n", out, arch, preset, n,
         commas(params, cb, sizeof cb), dts);
done:
  free(specs);
  return rc;
}

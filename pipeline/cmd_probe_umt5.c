/* cmd_probe_umt5.c: `livegen probe umt5`: runs the umT5 text encoder on token ids from a
 * safetensors file (or on a prompt through the tokenizer) and writes the context tensor, for
 * golden tests against the PyTorch reference (tests/ref/umt5_ref.py). Main thread.
 *
 * IN: `ids` [n] (F32 holding integers, or I32 where the reader supports it), n <= 512.
 * OUT: `ctx` F32 [512, d] (rows >= n zero) and `ids` F32 [n]. */
#include "checkpoint.h"
#include "cli.h"
#include "lg_backend.h"
#include "tokenizer.h"
#include "umt5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f, "usage: livegen probe umt5 --model W (--in IN | --tokenizer spiece.model --prompt "
             "TEXT)\n"
             "                         --out OUT [--backend cpu|cuda|auto]\n"
             "  W    umT5 encoder weights (.pth/.safetensors, official Wan names)\n"
             "  IN   safetensors with `ids` [n] (F32 integers or I32), n <= 512\n"
             "  OUT  safetensors with `ctx` F32 [512, d] (rows >= n zero) and `ids` F32 [n]\n");
}

/* Reads `ids` from IN into ids[512]; returns n or -1 (printed). */
static int read_ids(const char *path, int32_t *ids) {
  char err[512];
  lg_ckpt *in = lg_ckpt_open(path, err, sizeof err);
  if (!in) {
    fprintf(stderr, "livegen probe umt5: %s\n", err);
    return -1;
  }
  int n = -1;
  const lg_ckpt_tensor *t = lg_ckpt_find(in, "ids");
  if (!t) {
    fprintf(stderr, "livegen probe umt5: %s has no tensor `ids`\n", path);
    goto done;
  }
  int64_t ne = t->ndim == 1 ? t->shape[0] : -1;
  if (ne < 0 || ne > LG_UMT5_MAX_LEN || (t->dtype != LG_F32 && t->dtype != LG_I32) ||
      t->nbytes != (size_t)ne * 4) {
    fprintf(stderr, "livegen probe umt5: `ids` must be F32 or I32 [n] with n <= %d\n",
            LG_UMT5_MAX_LEN);
    goto done;
  }
  for (int64_t i = 0; i < ne; i++) {
    if (t->dtype == LG_I32) {
      ids[i] = ((const int32_t *)t->data)[i];
    } else {
      float v = ((const float *)t->data)[i];
      if (!(v >= 0.0f && v < 16777216.0f) || v != floorf(v)) {
        fprintf(stderr, "livegen probe umt5: ids[%lld] = %g is not a token id\n", (long long)i, v);
        goto done;
      }
      ids[i] = (int32_t)v;
    }
  }
  n = (int)ne;
done:
  lg_ckpt_free(&in);
  return n;
}

int lg_cmd_probe_umt5(int argc, char **argv) {
  const char *model = NULL, *in_path = NULL, *out_path = NULL, *backend = "auto";
  const char *tok_path = NULL, *prompt = NULL;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "livegen probe umt5: %s needs a value\n", k);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(k, "--model"))
      model = v;
    else if (!strcmp(k, "--in"))
      in_path = v;
    else if (!strcmp(k, "--out"))
      out_path = v;
    else if (!strcmp(k, "--backend"))
      backend = v;
    else if (!strcmp(k, "--tokenizer"))
      tok_path = v;
    else if (!strcmp(k, "--prompt"))
      prompt = v;
    else {
      fprintf(stderr, "livegen probe umt5: unknown option %s\n", k);
      usage(stderr);
      return 2;
    }
  }
  if (!model || !out_path || (!in_path == !(tok_path && prompt)) || (!tok_path != !prompt)) {
    fprintf(stderr, "livegen probe umt5: need --model, --out and either --in or --tokenizer with "
                    "--prompt\n");
    usage(stderr);
    return 2;
  }

  int rc = 1, n = 0;
  char err[512];
  int32_t ids[LG_UMT5_MAX_LEN];
  lg_ckpt *ck = NULL;
  lg_backend *be = NULL;
  lg_umt5 *m = NULL;
  lg_tokenizer *tok = NULL;
  lg_tensor out = {0};
  float *ctx = NULL, *fids = NULL;
  if (in_path) {
    n = read_ids(in_path, ids);
  } else {
    tok = lg_tokenizer_load(tok_path, err, sizeof err);
    if (!tok) {
      fprintf(stderr, "livegen probe umt5: %s\n", err);
      goto done;
    }
    n = lg_tokenizer_encode(tok, prompt, ids, LG_UMT5_MAX_LEN);
  }
  if (n < 0) goto done;
  ck = lg_ckpt_open(model, err, sizeof err);
  if (!ck) {
    fprintf(stderr, "livegen probe umt5: %s\n", err);
    goto done;
  }
  be = lg_backend_new_by_name(backend);
  if (!be) {
    fprintf(stderr, "livegen probe umt5: cannot create backend '%s'\n", backend);
    goto done;
  }
  m = lg_umt5_load(be, ck, err, sizeof err);
  if (!m) {
    fprintf(stderr, "livegen probe umt5: %s\n", err);
    goto done;
  }
  lg_ckpt_free(&ck); /* the model holds its own copies */
  int d = lg_umt5_get_config(m)->dim;
  int64_t so[2] = {LG_UMT5_MAX_LEN, d};
  if (lg_tensor_alloc(be, &out, LG_F32, 2, so) < 0) goto done;
  double t0 = lg_now();
  if (lg_umt5_encode(m, ids, n, &out) < 0 || be->ops->sync(be) < 0) {
    fprintf(stderr, "livegen probe umt5: encode failed\n");
    goto done;
  }
  double t1 = lg_now();
  ctx = malloc(sizeof(float) * (size_t)LG_UMT5_MAX_LEN * (size_t)d);
  fids = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!ctx || !fids || lg_tensor_download(&out, ctx) < 0) goto done;
  for (int i = 0; i < n; i++)
    fids[i] = (float)ids[i];
  const char *names[2] = {"ctx", "ids"};
  int64_t si[1] = {n};
  lg_tensor ts[2] = {lg_tensor_make(NULL, ctx, LG_F32, 2, so),
                     lg_tensor_make(NULL, fids, LG_F32, 1, si)};
  if (lg_safetensors_write(out_path, names, ts, 2, NULL, 0) < 0) {
    fprintf(stderr, "livegen probe umt5: cannot write %s\n", out_path);
    goto done;
  }
  printf("probe umt5: %d tokens, encode %.3f s on %s, wrote %s\n", n, t1 - t0, be->ops->name,
         out_path);
  rc = 0;
done:
  free(ctx);
  free(fids);
  lg_tensor_free(&out);
  lg_umt5_free(&m);
  lg_backend_free(&be);
  lg_ckpt_free(&ck);
  lg_tokenizer_free(&tok);
  return rc;
}

/* umt5.h: the umT5-xxl text encoder of Wan2.1 (MODELS.md 5), written once against the op
 * interface in lg_backend.h so that it runs on every backend.
 *
 * Math per block (T5 v1.1 / umT5, Wan's t5.py): h = RMSNorm(x) (no mean subtraction, eps
 * 1e-6); x += o(attention(q(h), k(h), v(h)) with logits q.k (scale 1) + this block's relative
 * position bias); h = RMSNorm(x); x += fc2(fc1(h) * gelu_tanh(gate.0(h))); finally
 * out = norm(x). All Linear layers have no bias. The relative position bias is
 * pos_embedding.embedding.weight [32, heads] indexed by lg_umt5_bucket(key - query).
 *
 * Padding: the reference encodes the 512-token padded sequence with a key mask hiding the pad
 * tokens, then zeroes output rows past the prompt. Masked keys get exactly zero weight, so the
 * valid rows depend only on the first n_ids tokens: lg_umt5_encode runs those n_ids tokens
 * only and writes zeros to the remaining rows (identical results, less work).
 *
 * Weights: official names (Wan models_t5_umt5-xxl-enc-bf16.pth): token_embedding.weight,
 * norm.weight, blocks.i.{norm1, attn.{q,k,v,o}, norm2, ffn.gate.0, ffn.fc1, ffn.fc2,
 * pos_embedding.embedding}.weight. The config is read off the tensor shapes (real: vocab
 * 256384, d 4096, 24 layers, 64 heads x 64, d_ff 10240; tiny: 1000, 64, 2, 4 x 16, 128). The
 * token embedding stays on the host (a copy in the checkpoint's dtype, 2.1 GB bf16 for the
 * real model): the op interface has no gather, and rows are looked up once per prompt.
 * Activations use the backend's act dtype; the position bias is F32.
 *
 * Backends without the attention_bias op (lg_backend_attention_bias returns LG_ENOTSUP) still
 * run the model: q, k, v are downloaded, attention runs on a private CPU backend and the
 * result is uploaded (logged once at load).
 *
 * Threads: a model belongs to the thread that owns its backend. */
#ifndef LG_UMT5_H
#define LG_UMT5_H

#include "checkpoint.h"
#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LG_UMT5_MAX_LEN 512  /* Wan's text_len: tokens per prompt, rows of the context */
#define LG_UMT5_MAX_DIST 128 /* relative position max distance */
#define LG_UMT5_NORM_EPS 1e-6f

typedef struct lg_umt5_config {
  int vocab;    /* token_embedding.weight [vocab, dim] */
  int dim;      /* model width d */
  int layers;   /* count of blocks.N */
  int heads;    /* blocks.0.pos_embedding.embedding.weight [buckets, heads] */
  int head_dim; /* q rows / heads */
  int ffn_dim;  /* blocks.0.ffn.fc1.weight [ffn_dim, dim] */
  int buckets;  /* relative position buckets (32) */
} lg_umt5_config;

typedef struct lg_umt5 lg_umt5;

/* Reads the config off a checkpoint's tensors. 0 or LG_E* with the offending tensor in err. */
int lg_umt5_read_config(const lg_ckpt *ck, lg_umt5_config *cfg, char *err, size_t n);
/* Loads the encoder onto be. The checkpoint is borrowed during the call only. A missing,
 * extra or misshapen tensor is an error naming it. NULL on failure with a message in err. */
lg_umt5 *lg_umt5_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n);
void lg_umt5_free(lg_umt5 **m);
const lg_umt5_config *lg_umt5_get_config(const lg_umt5 *m);

/* Encodes token ids (0 <= id < vocab; n_ids <= LG_UMT5_MAX_LEN, typically the tokenizer's
 * output ending in </s>) into out: a contiguous [L, dim] tensor on the model's backend (F32,
 * F16 or BF16, L >= n_ids, normally LG_UMT5_MAX_LEN). Rows < n_ids get the encoder output,
 * rows >= n_ids are zero. 0 or LG_E* (logged). */
int lg_umt5_encode(lg_umt5 *m, const int32_t *ids, int n_ids, lg_tensor *out);

/* T5 relative position bucket (bidirectional) of rel_pos = key_pos - query_pos:
 * half = buckets/2 buckets per sign (offset half for rel_pos > 0), exact below half/2,
 * log-spaced up to max_dist, clamped to the sign's last bucket. */
int lg_umt5_bucket(int rel_pos, int buckets, int max_dist);

#ifdef __cplusplus
}
#endif
#endif

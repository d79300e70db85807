/* checkpoint.h: read-only access to the tensors of a checkpoint file, whatever its format:
 * safetensors (single, or sharded through *.index.json) and PyTorch zip pickles (.pt/.pth).
 * Tensor data is mmapped (or, for pickled non-contiguous/odd tensors, copied) and stays valid
 * until lg_ckpt_free. Names are mapped to official Wan names per MODELS.md section 1
 * (generator_ema over generator over state_dict, strip "model." and "_fsdp_wrapped_module.",
 * diffusers names renamed). Every byte read from the file is bounds-checked; a malformed file
 * gives NULL and a message in err, never a crash. Nothing in a file is ever executed.
 * Threads: an lg_ckpt may be read from any thread once opened. */
#ifndef LG_CHECKPOINT_H
#define LG_CHECKPOINT_H

#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_ckpt_tensor {
  const char *name; /* official name after mapping; owned by the lg_ckpt */
  lg_dtype dtype;   /* F32, F16 or BF16 */
  int ndim;
  int64_t shape[LG_MAX_DIMS];
  const void *data; /* contiguous little-endian elements; owned by the lg_ckpt */
  size_t nbytes;
} lg_ckpt_tensor;

typedef struct lg_ckpt lg_ckpt;

/* Opens path (format detected from content, not the suffix). NULL with a message in err. */
lg_ckpt *lg_ckpt_open(const char *path, char *err, size_t errn);
void lg_ckpt_free(lg_ckpt **c);
int lg_ckpt_count(const lg_ckpt *c);
const lg_ckpt_tensor *lg_ckpt_at(const lg_ckpt *c, int i);
const lg_ckpt_tensor *lg_ckpt_find(const lg_ckpt *c, const char *name); /* NULL if absent */
const char *lg_ckpt_format(const lg_ckpt *c); /* "safetensors", "safetensors-sharded", "pytorch" */
/* Host lg_tensor view (be = NULL) of a checkpoint tensor, for load_weight. */
lg_tensor lg_ckpt_host_tensor(const lg_ckpt_tensor *t);

/* Writes a safetensors file. names[i] and tensors[i] (host, contiguous, be may be NULL or a
 * backend: data is downloaded) for i < n. metadata may be NULL (jansson-free: key/value
 * pairs, n_meta of them). 0 or LG_E*. */
int lg_safetensors_write(const char *path, const char *const *names, const lg_tensor *tensors,
                         int n, const char *const *meta_kv, int n_meta);

/* Streaming variant for files too large to hold in memory (init-model): a tensor whose data is
 * NULL is produced by fill(user, i, offset, buf, nbytes), which writes bytes [offset,
 * offset+nbytes) of tensor i's contiguous data into buf. Tensors are produced in name order,
 * each in consecutive chunks (offset 0 first) of at most 64 MiB, a multiple of the element
 * size. Returns 0 or LG_E* (fill's error is passed on; no file is left behind). */
typedef int (*lg_st_fill_fn)(void *user, int i, size_t offset, void *buf, size_t nbytes);
int lg_safetensors_write_fill(const char *path, const char *const *names, const lg_tensor *tensors,
                              int n, const char *const *meta_kv, int n_meta, lg_st_fill_fn fill,
                              void *user);

#ifdef __cplusplus
}
#endif
#endif

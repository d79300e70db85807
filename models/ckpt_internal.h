/* ckpt_internal.h: private interface between the checkpoint front end (checkpoint.c: format
 * detection, tensor table, name mapping) and the format readers (safetensors.c, the
 * PyTorch zip/pickle path in checkpoint.c). Not for use outside models/checkpoint*.
 * Threads: whichever thread calls lg_ckpt_open. */
#ifndef LG_CKPT_INTERNAL_H
#define LG_CKPT_INTERNAL_H

#include "checkpoint.h"

#include <stdarg.h>

/* Writes "fmt" into err (if err) and returns code. */
int lg_ckpt_fail(char *err, size_t errn, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Maps path read-only. A zero-length file gives *p == NULL, *n == 0 and success. The mapping
 * is registered with c (unmapped by lg_ckpt_free). */
int lg_ckpt_map_file(lg_ckpt *c, const char *path, const uint8_t **p, size_t *n, char *err,
                     size_t errn);
/* c takes ownership of p (malloc'ed); on failure p is freed at once. */
int lg_ckpt_keep(lg_ckpt *c, void *p);
/* Appends a tensor; name (name_len bytes, not NUL-terminated) is copied. data must stay valid
 * while c lives (a mapping or a kept buffer). */
int lg_ckpt_push(lg_ckpt *c, const char *name, size_t name_len, lg_dtype dtype, int ndim,
                 const int64_t *shape, const void *data, size_t nbytes);

/* Safetensors: parses the file mapped at p[0..n) and pushes its tensors. what names the file
 * in messages. */
int lg_st_read(lg_ckpt *c, const uint8_t *p, size_t n, const char *what, char *err, size_t errn);

/* PyTorch zip pickle: parses the archive at p[0..n) and pushes the tensors of the selected
 * state dict (generator_ema > generator > state_dict > top level; nested dicts flattened with
 * '.'). */
int lg_pt_read(lg_ckpt *c, const uint8_t *p, size_t n, char *err, size_t errn);

#endif

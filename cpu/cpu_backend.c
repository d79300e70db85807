/* cpu_backend.c: the fp32 reference backend. PLACEHOLDER: memory functions only; the ops are
 * being written (see cpu/README). Runs on the thread that owns the backend. */
#include "lg_backend.h"

#include <stdlib.h>
#include <string.h>

static void cpu_destroy(lg_backend *be) {
  free(be);
}
static void *cpu_alloc(lg_backend *be, size_t bytes) {
  (void)be;
  void *p = NULL;
  if (posix_memalign(&p, 256, bytes ? bytes : 1)) return NULL;
  return p;
}
static void cpu_free(lg_backend *be, void *p) {
  (void)be;
  free(p);
}
static int cpu_upload(lg_backend *be, void *dst, const void *src, size_t n) {
  (void)be;
  memcpy(dst, src, n);
  return 0;
}
static int cpu_download(lg_backend *be, void *dst, const void *src, size_t n) {
  (void)be;
  memcpy(dst, src, n);
  return 0;
}
static int cpu_memset0(lg_backend *be, void *dst, size_t n) {
  (void)be;
  memset(dst, 0, n);
  return 0;
}
static int cpu_sync(lg_backend *be) {
  (void)be;
  return 0;
}

static const lg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
};

lg_backend *lg_backend_new_cpu(int threads) {
  (void)threads;
  lg_backend *be = calloc(1, sizeof *be);
  if (!be) return NULL;
  be->ops = &cpu_ops;
  be->act_dtype = LG_F32;
  return be;
}

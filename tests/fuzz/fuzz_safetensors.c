/* fuzz_safetensors.c: libFuzzer target for checkpoint opening (format detection, safetensors
 * header parsing and bounds checks, via lg_ckpt_open on an in-memory file). Every byte of
 * every tensor it returns is read so that ASan catches a view outside the mapping. */
#include "checkpoint.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int g_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_fd < 0) g_fd = memfd_create("lg_fuzz_st", 0);
  if (g_fd < 0) return 0;
  if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size) return 0;
  char path[64], err[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", g_fd);
  lg_ckpt *c = lg_ckpt_open(path, err, sizeof err);
  if (!c) return 0;
  volatile uint8_t sink = 0;
  for (int i = 0; i < lg_ckpt_count(c); i++) {
    const lg_ckpt_tensor *t = lg_ckpt_at(c, i);
    const uint8_t *p = t->data;
    for (size_t k = 0; k < t->nbytes; k++)
      sink ^= p[k];
    if (lg_ckpt_find(c, t->name) == NULL) __builtin_trap(); /* every name must be findable */
  }
  (void)sink;
  lg_ckpt_free(&c);
  return 0;
}

/* backend_select.c: picks a backend by name ("cpu", "cuda", "cuda:N", "auto"). Built with and
 * without CUDA; without it lg_backend_new_cuda says so and returns NULL. Main thread. */
#include "lg_backend.h"

#include <stdlib.h>
#include <string.h>

#ifndef LG_HAVE_CUDA
lg_backend *lg_backend_new_cuda(int device) {
  (void)device;
  LG_ERR("backend", "this build has no CUDA backend (configure with -DLG_CUDA=ON)");
  return NULL;
}
int lg_cuda_device_count(void) {
  return 0;
}
#else
int lg_cuda_device_count(void); /* cuda_backend.cu */
#endif

lg_backend *lg_backend_new_by_name(const char *name) {
  if (!name || !strcmp(name, "auto")) {
    if (lg_cuda_device_count() > 0) return lg_backend_new_cuda(0);
    return lg_backend_new_cpu(0);
  }
  if (!strcmp(name, "cpu")) return lg_backend_new_cpu(0);
  if (!strcmp(name, "cuda")) return lg_backend_new_cuda(0);
  if (!strncmp(name, "cuda:", 5)) {
    char *end = NULL;
    long dev = strtol(name + 5, &end, 10);
    if (end && *end == 0 && dev >= 0 && dev < 64) return lg_backend_new_cuda((int)dev);
  }
  LG_ERR("backend", "unknown backend '%s' (expected auto, cpu, cuda or cuda:N)", name);
  return NULL;
}

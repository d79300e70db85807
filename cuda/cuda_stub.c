/* cuda_stub.c: lg_cuda.h for builds without CUDA: every call says "not supported", so that
 * callers (the benchmark, tests) link and run on the CPU backend alone. Any thread. */
#include "lg_cuda.h"

#ifndef LG_HAVE_CUDA
bool lg_backend_is_cuda(const lg_backend *be) {
  (void)be;
  return false;
}
const char *lg_cuda_device_name(const lg_backend *be) {
  (void)be;
  return "";
}
int lg_cuda_mem_stats(lg_backend *be, size_t *peak_used, size_t *now_used) {
  (void)be, (void)peak_used, (void)now_used;
  return LG_ENOTSUP;
}
int lg_cuda_mem_reset_peak(lg_backend *be) {
  (void)be;
  return LG_ENOTSUP;
}
int lg_cuda_profile_begin(lg_backend *be) {
  (void)be;
  return LG_ENOTSUP;
}
int lg_cuda_profile_end(lg_backend *be, double *ms, int *ops) {
  (void)be, (void)ms, (void)ops;
  return LG_ENOTSUP;
}
int lg_cuda_profile_ops(lg_backend *be, const char **names, double *ms, int *counts, int max) {
  (void)be, (void)names, (void)ms, (void)counts, (void)max;
  return LG_ENOTSUP;
}
int lg_cuda_profile_shapes(lg_backend *be, lg_cuda_prof_shape *rows, int max) {
  (void)be, (void)rows, (void)max;
  return LG_ENOTSUP;
}
int lg_cuda_profiler_range(lg_backend *be, bool on) {
  (void)be, (void)on;
  return LG_ENOTSUP;
}
int lg_cuda_capture_begin(lg_backend *be) {
  (void)be;
  return LG_ENOTSUP;
}
int lg_cuda_capture_end(lg_backend *be, lg_cuda_graph **out) {
  (void)be;
  if (out) *out = NULL;
  return LG_ENOTSUP;
}
int lg_cuda_graph_launch(lg_backend *be, lg_cuda_graph *g) {
  (void)be, (void)g;
  return LG_ENOTSUP;
}
void lg_cuda_graph_free(lg_cuda_graph **g) {
  if (g) *g = NULL;
}
int lg_cuda_mark(lg_backend *be, int slot) {
  (void)be, (void)slot;
  return LG_ENOTSUP;
}
int lg_cuda_elapsed_ms(lg_backend *be, int a, int b, float *ms) {
  (void)be, (void)a, (void)b, (void)ms;
  return LG_ENOTSUP;
}
int lg_cuda_power_read(lg_backend *be, lg_cuda_power *p) {
  (void)be;
  if (p) p->energy_mj = 0, p->power_mw = p->sm_mhz = 0;
  return LG_ENOTSUP;
}
#else
typedef int lg_cuda_stub_unused; /* ISO C wants a declaration in every file */
#endif

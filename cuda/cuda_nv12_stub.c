/* cuda_nv12_stub.c: lg_cuda_nv12.h for builds without CUDA: every call says "not supported"
 * (the encoder then never tries CUDA frames). Any thread. */
#include "lg_cuda_nv12.h"

#ifndef LG_HAVE_CUDA
int lg_cuda_native_handles(lg_backend *be, void **cu_context, void **cu_stream) {
  (void)be;
  if (cu_context) *cu_context = NULL;
  if (cu_stream) *cu_stream = NULL;
  return LG_ENOTSUP;
}
int lg_cuda_rgb_to_nv12(lg_backend *be, const lg_tensor *rgb, void *y, size_t y_pitch, void *uv,
                        size_t uv_pitch) {
  (void)be, (void)rgb, (void)y, (void)y_pitch, (void)uv, (void)uv_pitch;
  return LG_ENOTSUP;
}
int lg_cuda_nv12_write(void *backend, const void *rgb, uint8_t *y, size_t y_pitch, uint8_t *uv,
                       size_t uv_pitch) {
  (void)backend, (void)rgb, (void)y, (void)y_pitch, (void)uv, (void)uv_pitch;
  return LG_ENOTSUP;
}
#else
typedef int lg_cuda_nv12_stub_unused; /* ISO C wants a declaration in every file */
#endif

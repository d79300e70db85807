/* cuda_nv12.cu: the encoder's CUDA-frame helpers (lg_cuda_nv12.h): the backend's CUcontext and
 * stream, and RGB (U8 bytes or [-1,1] engine pixels) -> NV12 BT.709 limited range written
 * straight into an nvenc input frame. One thread per 2x2 block: 4 luma bytes and one (Cb,Cr)
 * pair, in the integers of cpu/lg_nv12.h (identical to lg_rgb_to_nv12_ref).
 * Runs on the thread that owns the backend (enqueue only). */
#include "cuda_internal.cuh"
#include "lg_cuda_nv12.h"
#include "lg_nv12.h"

#include <cuda.h>

/* The same byte as cu_pixels_to_u8 (cuda_backend.cu) and cpu_pixels_to_u8: round((x+1)*127.5)
 * in double with explicit rounding, clamped, NaN -> 0. */
__device__ __forceinline__ int nv12_byte(const void *p, int dt, int64_t i) {
  if (dt == LG_U8) return ((const uint8_t *)p)[i];
  double v = __dmul_rn(__dadd_rn((double)lg_ld(p, dt, i), 1.0), 127.5);
  return !(v > 0.0) ? 0 : v >= 255.0 ? 255 : __double2int_rn(v);
}

__global__ void k_rgb_to_nv12(const void *x, int dt, int64_t sh, int64_t sw, int64_t sc, int w2,
                              int h2, uint8_t *y, size_t yp, uint8_t *uv, size_t uvp) {
  int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y * blockDim.y + threadIdx.y;
  if (i >= w2 || j >= h2) return;
  int r = 0, g = 0, b = 0;
#pragma unroll
  for (int dy = 0; dy < 2; dy++) {
    uint8_t *yrow = y + (size_t)(2 * j + dy) * yp;
#pragma unroll
    for (int dx = 0; dx < 2; dx++) {
      int64_t o = (int64_t)(2 * j + dy) * sh + (int64_t)(2 * i + dx) * sw;
      int pr = nv12_byte(x, dt, o), pg = nv12_byte(x, dt, o + sc),
          pb = nv12_byte(x, dt, o + 2 * sc);
      yrow[2 * i + dx] = lg_nv12_y(pr, pg, pb);
      r += pr, g += pg, b += pb;
    }
  }
  uint8_t *c = uv + (size_t)j * uvp + 2 * i;
  c[0] = lg_nv12_u(r, g, b);
  c[1] = lg_nv12_v(r, g, b);
}

extern "C" int lg_cuda_rgb_to_nv12(lg_backend *be, const lg_tensor *rgb, void *y, size_t y_pitch,
                                   void *uv, size_t uv_pitch) {
  int err = 0;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  int nd = rgb ? rgb->ndim : 0;
  LG_CHECK(rgb && rgb->data && y && uv && (nd == 3 || (nd == 4 && rgb->ne[0] == 1)) &&
               rgb->ne[nd - 1] == 3,
           LG_EINVAL, LG_CUDA_MOD, "rgb_to_nv12: need an [H,W,3] or [1,H,W,3] frame");
  LG_CHECK(rgb->dtype == LG_U8 || rgb->dtype == LG_F32 || rgb->dtype == LG_F16 ||
               rgb->dtype == LG_BF16,
           LG_ENOTSUP, LG_CUDA_MOD, "rgb_to_nv12: dtype %s (U8, F32, F16 or BF16)",
           lg_dtype_name(rgb->dtype));
  {
    int64_t h = rgb->ne[nd - 3], w = rgb->ne[nd - 2];
    LG_CHECK(h >= 2 && w >= 2 && !(h & 1) && !(w & 1) && h <= 16384 && w <= 16384 &&
                 y_pitch >= (size_t)w && uv_pitch >= (size_t)w,
             LG_EINVAL, LG_CUDA_MOD, "rgb_to_nv12: %lldx%lld (even, <= 16384) pitches %zu/%zu",
             (long long)w, (long long)h, y_pitch, uv_pitch);
    dim3 blk(32, 8), grid((unsigned)((w / 2 + 31) / 32), (unsigned)((h / 2 + 7) / 8));
    k_rgb_to_nv12<<<grid, blk, 0, c->stream>>>(
        rgb->data, rgb->dtype, rgb->nb[nd - 3], rgb->nb[nd - 2], rgb->nb[nd - 1], (int)(w / 2),
        (int)(h / 2), (uint8_t *)y, y_pitch, (uint8_t *)uv, uv_pitch);
    CUDA_LAUNCH_CHECK();
  }
  return 0;
fail:
  return err;
}

extern "C" int lg_cuda_nv12_write(void *backend, const void *rgb, uint8_t *y, size_t y_pitch,
                                  uint8_t *uv, size_t uv_pitch) {
  return lg_cuda_rgb_to_nv12((lg_backend *)backend, (const lg_tensor *)rgb, y, y_pitch, uv,
                             uv_pitch);
}

extern "C" int lg_cuda_native_handles(lg_backend *be, void **cu_context, void **cu_stream) {
  int err = 0;
  typedef CUresult (*ctx_get_fn)(CUcontext *);
  ctx_get_fn get = NULL;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  CUcontext ctx = NULL;
  if (cu_context) *cu_context = NULL;
  if (cu_stream) *cu_stream = NULL;
  if (!lg_backend_is_cuda(be)) return LG_ENOTSUP;
  lg_cuda *c = lg_cu(be);
  /* the runtime makes the device's primary context current on this thread; the driver entry
   * point reads it without linking libcuda (no driver library needed at load time) */
  CUDA_CHECK(cudaSetDevice(c->device));
  CUDA_CHECK(cudaFree(0));
  CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", (void **)&get, 12000,
                                              cudaEnableDefault, &q));
  LG_CHECK(get && q == cudaDriverEntryPointSuccess, LG_EBACKEND, LG_CUDA_MOD,
           "the driver has no cuCtxGetCurrent");
  LG_CHECK(get(&ctx) == CUDA_SUCCESS && ctx, LG_EBACKEND, LG_CUDA_MOD,
           "no current CUDA context on device %d", c->device);
  if (cu_context) *cu_context = (void *)ctx;
  if (cu_stream) *cu_stream = (void *)c->stream;
  return 0;
fail:
  return err;
}

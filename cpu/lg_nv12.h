/* lg_nv12.h: RGB24 -> NV12 (BT.709, limited range), the layout h264_nvenc takes from CUDA
 * frames. This is the host reference; the CUDA kernel (cuda/lg_cuda_nv12.h) computes the same
 * integers, so a CPU test pins the arithmetic the GPU runs.
 * Arithmetic (16-bit fixed point, exact in int32):
 *   Y  = (11966 R + 40254 G + 4064 B + (16 << 16) + (1 << 15)) >> 16          (16..235)
 *   Cb = (-6596 R' - 22188 G' + 28784 B' + (128 << 18) + (1 << 17)) >> 18      (16..240)
 *   Cr = (28784 R' - 26145 G' - 2639 B' + (128 << 18) + (1 << 17)) >> 18       (16..240)
 * where R', G', B' are the sums of the 2x2 block a chroma sample covers (box filter, chroma
 * centred between the four luma samples). Gray (R = G = B) gives Cb = Cr = 128 exactly.
 * Threads: any (pure function). */
#ifndef LG_NV12_H
#define LG_NV12_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The per-pixel formulas are inline for both compilers: nvcc builds them for the kernel. */
#ifdef __CUDACC__
#define LG_NV12_FN static inline __host__ __device__
#else
#define LG_NV12_FN static inline
#endif

/* Fixed-point coefficients (the formulas above), shared with the CUDA kernel. */
enum {
  LG_NV12_YR = 11966,
  LG_NV12_YG = 40254,
  LG_NV12_YB = 4064,
  LG_NV12_UR = -6596,
  LG_NV12_UG = -22188,
  LG_NV12_UB = 28784,
  LG_NV12_VR = 28784,
  LG_NV12_VG = -26145,
  LG_NV12_VB = -2639,
};

LG_NV12_FN uint8_t lg_nv12_y(int r, int g, int b) {
  return (uint8_t)((LG_NV12_YR * r + LG_NV12_YG * g + LG_NV12_YB * b + (16 << 16) + (1 << 15)) >>
                   16);
}
/* r, g, b: sums over a 2x2 block (0..1020). */
LG_NV12_FN uint8_t lg_nv12_u(int r, int g, int b) {
  return (uint8_t)((LG_NV12_UR * r + LG_NV12_UG * g + LG_NV12_UB * b + (128 << 18) + (1 << 17)) >>
                   18);
}
LG_NV12_FN uint8_t lg_nv12_v(int r, int g, int b) {
  return (uint8_t)((LG_NV12_VR * r + LG_NV12_VG * g + LG_NV12_VB * b + (128 << 18) + (1 << 17)) >>
                   18);
}

/* rgb: h rows of w*3 bytes, rows rgb_stride bytes apart. y: h rows of w bytes (y_pitch apart);
 * uv: h/2 rows of w/2 interleaved (Cb, Cr) pairs (uv_pitch apart). w and h even, >= 2; pitches
 * at least the row sizes. 0 or LG_EINVAL. */
int lg_rgb_to_nv12_ref(const uint8_t *rgb, size_t rgb_stride, int w, int h, uint8_t *y,
                       size_t y_pitch, uint8_t *uv, size_t uv_pitch);

#ifdef __cplusplus
}
#endif
#endif

/* lg_nv12.c: the host reference of RGB24 -> NV12 BT.709 limited range (lg_nv12.h). The
 * encoder's CUDA-frame path runs the same arithmetic on the GPU (cuda/cuda_nv12.cu).
 * Threads: any. */
#include "lg_nv12.h"

#include "lg_base.h"

int lg_rgb_to_nv12_ref(const uint8_t *rgb, size_t rgb_stride, int w, int h, uint8_t *y,
                       size_t y_pitch, uint8_t *uv, size_t uv_pitch) {
  if (!rgb || !y || !uv || w < 2 || h < 2 || (w & 1) || (h & 1) || rgb_stride < (size_t)w * 3 ||
      y_pitch < (size_t)w || uv_pitch < (size_t)w) {
    LG_ERR("nv12", "rgb_to_nv12: bad arguments (%dx%d, strides %zu/%zu/%zu; even sizes needed)", w,
           h, rgb_stride, y_pitch, uv_pitch);
    return LG_EINVAL;
  }
  for (int j = 0; j < h; j += 2) {
    const uint8_t *p0 = rgb + (size_t)j * rgb_stride, *p1 = p0 + rgb_stride;
    uint8_t *y0 = y + (size_t)j * y_pitch, *y1 = y0 + y_pitch;
    uint8_t *c = uv + (size_t)(j / 2) * uv_pitch;
    for (int i = 0; i < w; i += 2) {
      const uint8_t *a = p0 + 3 * i, *b = a + 3, *d = p1 + 3 * i, *e = d + 3;
      y0[i] = lg_nv12_y(a[0], a[1], a[2]);
      y0[i + 1] = lg_nv12_y(b[0], b[1], b[2]);
      y1[i] = lg_nv12_y(d[0], d[1], d[2]);
      y1[i + 1] = lg_nv12_y(e[0], e[1], e[2]);
      int r = a[0] + b[0] + d[0] + e[0], g = a[1] + b[1] + d[1] + e[1],
          bl = a[2] + b[2] + d[2] + e[2];
      c[i] = lg_nv12_u(r, g, bl);
      c[i + 1] = lg_nv12_v(r, g, bl);
    }
  }
  return 0;
}

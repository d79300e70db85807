/* lg_pixels.c: the wrappers of the pixel ops of lg_backend_ops (pixels_from_u8, pixels_to_u8):
 * the engine's RGB24 <-> [-1,1] mapping on the backend. No composition of the plain ops gives
 * the same rounding, so a backend without them is refused with LG_ENOTSUP (the CPU and CUDA
 * backends both have them). Runs on the thread that owns the backend. */
#include "lg_backend.h"

int lg_backend_pixels_from_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  if (!be || !y || !x) {
    LG_ERR("pixels", "pixels_from_u8: missing backend or tensor");
    return LG_EINVAL;
  }
  if (!be->ops->pixels_from_u8) {
    LG_ERR("pixels", "pixels_from_u8: backend %s has no pixel ops", be->ops->name);
    return LG_ENOTSUP;
  }
  return be->ops->pixels_from_u8(be, y, x);
}

int lg_backend_pixels_to_u8(lg_backend *be, lg_tensor *y, const lg_tensor *x) {
  if (!be || !y || !x) {
    LG_ERR("pixels", "pixels_to_u8: missing backend or tensor");
    return LG_EINVAL;
  }
  if (!be->ops->pixels_to_u8) {
    LG_ERR("pixels", "pixels_to_u8: backend %s has no pixel ops", be->ops->name);
    return LG_ENOTSUP;
  }
  return be->ops->pixels_to_u8(be, y, x);
}

/* lg_cuda_nv12.h: what the encoder's CUDA-frame path needs from the CUDA backend: its CUDA
 * context and stream (for FFmpeg's AVCUDADeviceContext, so h264_nvenc reads frames in the
 * engine's own context, ordered after the engine's work on its stream), and the RGB -> NV12
 * BT.709 limited-range kernel (the integers of cpu/lg_nv12.h, bit for bit).
 * Plain C; built without CUDA (cuda_nv12_stub.c) or given a non-CUDA backend, every call
 * returns LG_ENOTSUP. Threads: the thread that owns the backend; the kernel is only enqueued,
 * so another thread that shares the stream (the encoder) sees its result in stream order. */
#ifndef LG_CUDA_NV12_H
#define LG_CUDA_NV12_H

#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend's CUcontext (the device's primary context, which the CUDA runtime uses) and its
 * cudaStream_t (== CUstream), as void *. Both live as long as the backend. 0 or LG_E*. */
int lg_cuda_native_handles(lg_backend *be, void **cu_context, void **cu_stream);

/* Enqueues on the backend's stream: rgb [H,W,3] or [1,H,W,3] on the device, U8 bytes, or
 * F32/F16/BF16 engine pixels in [-1,1] (mapped to bytes exactly as pixels_to_u8 first), any
 * strides -> y (H rows of W bytes, y_pitch apart) and uv (H/2 rows of W/2 (Cb,Cr) pairs,
 * uv_pitch apart), device memory of the backend's context. H, W even. 0 or LG_E*. */
int lg_cuda_rgb_to_nv12(lg_backend *be, const lg_tensor *rgb, void *y, size_t y_pitch, void *uv,
                        size_t uv_pitch);

/* lg_rgb_to_nv12 in the shape of the encoder's lg_encoder_nv12_fn (streaming/encoder.h):
 * backend is the lg_backend *, rgb the const lg_tensor * of the frame. */
int lg_cuda_nv12_write(void *backend, const void *rgb, uint8_t *y, size_t y_pitch, uint8_t *uv,
                       size_t uv_pitch);

#ifdef __cplusplus
}
#endif
#endif

/* wan_vae.h: the Wan2.1 video VAE (MODELS.md 4; reference: Wan2.1 wan/modules/vae.py), written
 * once against the op interface in lg_backend.h. Streaming encode and decode keep the causal
 * caches of the reference (CACHE_T = 2 frames per causal conv, the downsample3d last frame, the
 * upsample3d time_conv cache) in an lg_vae_stream that is sized once for a frame size, so a
 * streaming call never allocates. Whole-clip encode/decode run the same layers over all frames
 * at once (zero causal padding, no caches) and give the same numbers as the streamed calls.
 *
 * Layouts: activations channels-last [T,H,W,C] in the backend's act dtype; weights keep their
 * PyTorch layout (load_weight). Pixels are in [-1,1]; latents have 16 channels.
 * Threads: a model and its streams belong to the thread that owns the backend (GPU worker or a
 * test). Several streams may share one model (one at a time). */
#ifndef LG_WAN_VAE_H
#define LG_WAN_VAE_H

#include "checkpoint.h"
#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_wan_vae lg_wan_vae;
typedef struct lg_vae_stream lg_vae_stream;

/* Loads the VAE from an open checkpoint (official names, no prefix: encoder.*, conv1, conv2,
 * decoder.*). Widths are read from the tensors (dim 96 for the real model); every tensor's shape
 * is checked. A checkpoint may hold only the encoder (+conv1) or only the decoder (+conv2); the
 * missing half then answers LG_ENOTSUP. The checkpoint is only borrowed during the call (weights
 * are copied to the backend). NULL on failure with a message in err. */
lg_wan_vae *lg_wan_vae_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n);
/* Frees the model (accepts NULL, sets *v to NULL). Free its streams first. */
void lg_wan_vae_free(lg_wan_vae **v);
/* Channel width `dim` (96 real, 8 tiny) and which halves were loaded. */
int lg_wan_vae_dim(const lg_wan_vae *v);
int lg_wan_vae_has_encoder(const lg_wan_vae *v);
int lg_wan_vae_has_decoder(const lg_wan_vae *v);

/* A streaming state for frames of height x width pixels (multiples of 8). Allocates every
 * cache (encode and decode caches are separate, so one stream may do both) and one activation
 * arena for that size up front. The model is borrowed until lg_vae_stream_free. NULL on failure
 * (logged). */
lg_vae_stream *lg_vae_stream_new(lg_wan_vae *v, int height, int width);
/* Same, with the caches of only some halves: a stream that only encodes (TAEHV decodes) or only
 * decodes is smaller (480x832 f32 on cpu: 8374 MiB both, 4479 encode only, 6088 decode only).
 * Halves the model lacks are left out; NULL when none is left. A call on a missing half is
 * LG_ENOTSUP. */
enum { LG_VAE_ENCODE = 1, LG_VAE_DECODE = 2 };
lg_vae_stream *lg_vae_stream_new_for(lg_wan_vae *v, int height, int width, unsigned halves);
void lg_vae_stream_free(lg_vae_stream **s);
/* Clears both caches: the next encode takes 1 frame and the next decode gives 1 frame. */
int lg_vae_stream_reset(lg_vae_stream *s);
/* Bytes the stream holds on the backend (caches + arena). */
size_t lg_vae_stream_bytes(const lg_vae_stream *s);

/* Streaming encode. x [T,H,W,3] (any dtype/strides, innermost contiguous) pixels in [-1,1]; T = 1
 * on the first call after new/reset, then 4. mu [1,h,w,16] contiguous (h = H/8, w = W/8), act
 * dtype: the unnormalised latent mean (first 16 channels of conv1(encoder(x))). */
int lg_wan_vae_encode(lg_vae_stream *s, const lg_tensor *x, lg_tensor *mu);
/* Streaming decode. z [1,h,w,16] normalised latent (decode does z*std + mean, conv2, decoder).
 * x [T,H,W,3] contiguous, act dtype, pixels clamped to [-1,1]; T = 1 on the first call after
 * new/reset, then 4. */
int lg_wan_vae_decode(lg_vae_stream *s, const lg_tensor *z, lg_tensor *x);

/* Whole clip, no streaming state: x [1+4k,H,W,3] -> mu [1+k,h,w,16]; z [n,h,w,16] ->
 * x [1+4(n-1),H,W,3]. They allocate a temporary arena sized for the clip (not for hot paths).
 * Same results as streaming the clip through a fresh stream, call by call. */
int lg_wan_vae_encode_clip(lg_wan_vae *v, const lg_tensor *x, lg_tensor *mu);
int lg_wan_vae_decode_clip(lg_wan_vae *v, const lg_tensor *z, lg_tensor *x);

#ifdef __cplusplus
}
#endif
#endif

/* taehv.h: TAEHV, the tiny video decoder for Wan2.1 latents (taew2_1; MODELS.md 4; reference:
 * madebyollin/taehv taehv.py, decoder with decoder_time_upscale (False, True, True)). Works on
 * normalised latents (no mean/std). Written once against lg_backend.h.
 *
 * Streaming: each MemBlock keeps its memory (the previous frame's block input) in an
 * lg_taehv_stream sized once for a frame size; every latent gives 4 frames and the first 3 of a
 * stream are trimmed, so the first call returns 1 frame and later calls 4. A streamed sequence
 * equals lg_taehv_decode_clip of the whole sequence (which drops its first 3 frames too).
 *
 * Layouts: activations channels-last [T,H,W,C] in the backend's act dtype; conv weights in
 * PyTorch layout. Output pixels in [-1,1] (the reference's [0,1] clamp mapped by x*2-1).
 * Threads: a model and its streams belong to the thread that owns the backend. */
#ifndef LG_TAEHV_H
#define LG_TAEHV_H

#include "checkpoint.h"
#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_taehv lg_taehv;
typedef struct lg_taehv_stream lg_taehv_stream;

/* Loads decoder.* tensors (encoder.* are ignored). Widths come from the tensors (256/128/64/64
 * real). A TGrow weight with more output channels than its stride needs (e.g. [4n,n,1,1] for
 * stride 2) is sliced to its last n*stride channels, as the reference loader does. The
 * checkpoint is borrowed during the call only. NULL on failure with a message in err. */
lg_taehv *lg_taehv_load(lg_backend *be, const lg_ckpt *ck, char *err, size_t n);
void lg_taehv_free(lg_taehv **t); /* accepts NULL, sets *t to NULL; free streams first */

/* Streaming state for height x width pixel frames (multiples of 8): MemBlock memories and one
 * activation arena, allocated here once. The model is borrowed until lg_taehv_stream_free. */
lg_taehv_stream *lg_taehv_stream_new(lg_taehv *t, int height, int width);
void lg_taehv_stream_free(lg_taehv_stream **s);
int lg_taehv_stream_reset(lg_taehv_stream *s); /* zero memories; next call returns 1 frame */
size_t lg_taehv_stream_bytes(const lg_taehv_stream *s);

/* z [1,h,w,16] normalised latent (h = H/8, w = W/8; act dtype or F32, channels contiguous).
 * x [T,H,W,3] contiguous act dtype in [-1,1]: T = 1 on the first call after new/reset, then 4. */
int lg_taehv_decode(lg_taehv_stream *s, const lg_tensor *z, lg_tensor *x);
/* Whole sequence: z [n,h,w,16] -> x [4n-3,H,W,3] (the reference decode_video, parallel, with
 * its first 3 frames trimmed). Allocates a temporary arena for the sequence. */
int lg_taehv_decode_clip(lg_taehv *t, const lg_tensor *z, lg_tensor *x);

#ifdef __cplusplus
}
#endif
#endif

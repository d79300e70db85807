/* encoder.h: RGB24 frames -> H.264 access units with libavcodec. h264_nvenc when configured
 * and available ("auto" tries it and falls back to libx264), else libx264 with
 * tune=zerolatency. Given the engine's CUDA context (opts.cuda), h264_nvenc is first tried
 * with CUDA frames: NV12 device frames in that context, written by the engine's kernel
 * (lg_encoder_encode_device), never copied to the host; the fallback chain is nvenc with CUDA
 * frames -> nvenc with host frames -> libx264 (auto), each failure logged. Output is Annex B, one
 * access unit per packet, SPS+PPS in every keyframe, no B-frames (pts order = decode order).
 * Optional downscale (the input preview stream). Threads: one encoder thread owns an lg_encoder;
 * only lg_encoder_request_keyframe may be called from other threads (an atomic flag). */
#ifndef LG_ENCODER_H
#define LG_ENCODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes one NV12 BT.709 limited-range frame (out_height rows of out_width luma bytes, y_pitch
 * apart; out_height/2 rows of (Cb,Cr) pairs, uv_pitch apart) into device memory of the CUDA
 * context, enqueued on the stream, from src (what lg_encoder_encode_device was given, e.g. the
 * engine's output tensor). 0 or LG_E*. cuda/lg_cuda_nv12.h's lg_cuda_nv12_write is one. */
typedef int (*lg_encoder_nv12_fn)(void *user, const void *src, uint8_t *y, size_t y_pitch,
                                  uint8_t *uv, size_t uv_pitch);

/* CUDA frames for h264_nvenc. All zero: host frames only. */
typedef struct lg_encoder_cuda {
  void *context; /* CUcontext the frames live in: the engine's (lg_cuda_native_handles) */
  void *stream;  /* CUstream write_nv12 enqueues on; nvenc reads each frame after it */
  lg_encoder_nv12_fn write_nv12;
  void *user; /* write_nv12's first argument (the engine's backend) */
} lg_encoder_cuda;

typedef struct lg_encoder_opts {
  char codec[32];    /* "auto", "libx264", "h264_nvenc" */
  int width, height; /* input RGB frame size */
  int out_width;     /* encoded size; 0 = input size. Rounded down to even. */
  int out_height;
  int fps_num, fps_den; /* nominal frame rate (rate control, stream info) */
  int bitrate_kbps;     /* target bitrate, > 0 */
  int keyint;           /* frames between keyframes, >= 1 */
  char preset[32];      /* x264 preset (ultrafast..placebo) or nvenc p1..p7; "" = default */
  int threads;          /* encoder threads, 0 = codec default */
  lg_encoder_cuda cuda; /* h264_nvenc CUDA frames (needs out size == input size, both even) */
} lg_encoder_opts;

/* Receives each access unit. data is borrowed for the call only. Return 0 or LG_E* (stops
 * the drain and is returned by lg_encoder_encode). */
typedef int (*lg_encoder_packet_fn)(void *user, const uint8_t *data, size_t size, int64_t pts_us,
                                    bool key);

typedef struct lg_encoder lg_encoder;

/* Opens the codec. NULL with the reason in err (and logged). */
lg_encoder *lg_encoder_new(const lg_encoder_opts *o, char *err, size_t errn);
void lg_encoder_free(lg_encoder **e);

/* Encodes one frame (height rows of width*3 RGB bytes, rows `stride` bytes apart) with
 * presentation time pts_us (made strictly increasing if it is not) and hands every packet
 * the codec has ready to fn. rgb == NULL flushes the codec (end of stream). EAGAIN/EOF from
 * libavcodec are normal. Returns 0 or LG_E*. */
int lg_encoder_encode(lg_encoder *e, const uint8_t *rgb, size_t stride, int64_t pts_us,
                      lg_encoder_packet_fn fn, void *user);

/* True when the encoder takes CUDA frames (h264_nvenc opened on opts.cuda): feed it with
 * lg_encoder_encode_device; lg_encoder_encode then refuses host frames (LG_EINVAL). */
bool lg_encoder_device_frames(const lg_encoder *e);

/* Encodes one frame that lives on the device: opts.cuda.write_nv12(user, src, ...) fills the
 * next NV12 CUDA frame of the encoder's pool, which goes to h264_nvenc as it is. pts_us and
 * packets as lg_encoder_encode (flush with lg_encoder_encode(e, NULL, ...)). LG_EINVAL when
 * the encoder takes host frames. */
int lg_encoder_encode_device(lg_encoder *e, const void *src, int64_t pts_us,
                             lg_encoder_packet_fn fn, void *user);

/* Any thread: the next frame is encoded as an IDR keyframe (a viewer joined). */
void lg_encoder_request_keyframe(lg_encoder *e);

/* The codec in use ("libx264" or "h264_nvenc"). */
const char *lg_encoder_name(const lg_encoder *e);
void lg_encoder_size(const lg_encoder *e, int *width, int *height);
/* "avc1.PPCCLL" from the SPS of the first keyframe; "" before it. */
const char *lg_encoder_codec_string(const lg_encoder *e);
/* SPS+PPS (Annex B) from the first keyframe; size 0 before it. Borrowed while e lives. */
const uint8_t *lg_encoder_headers(const lg_encoder *e, size_t *size);

/* Parses "avc1.PPCCLL" out of an Annex B buffer's first SPS. 0 or LG_ENOTFOUND. out: >= 12
 * bytes. */
int lg_h264_codec_string(const uint8_t *annexb, size_t size, char *out, size_t outn);
/* Calls fn for each NAL unit (start code stripped) in an Annex B buffer. Returns the count. */
int lg_h264_for_each_nal(const uint8_t *annexb, size_t size,
                         void (*fn)(void *user, const uint8_t *nal, size_t n), void *user);

#ifdef __cplusplus
}
#endif
#endif

/* encoder.c: libavcodec H.264 encoding of RGB24 frames (see encoder.h). Host frames: RGB is
 * converted to yuv420p (and scaled when out size differs) by one preallocated swscale context
 * into one preallocated AVFrame. CUDA frames (h264_nvenc given the engine's CUDA context): an
 * AVHWDeviceContext of type CUDA wraps that context and stream (FFmpeg neither creates nor
 * destroys it), an AVHWFramesContext pools NV12 device frames, the caller's writer fills each
 * one on the stream and nvenc reads it there (BT.709 limited range, tagged in the SPS). Packets are
 * drained with the send/receive loop (EAGAIN and EOF are normal). SPS/PPS are remembered from the
 * first keyframe and prepended to any keyframe that lacks them, so every keyframe is decodable on
 * its own whatever the codec does. Threads: the encoder thread that owns it; request_keyframe from
 * any thread. */
#include "encoder.h"

#include "lg_base.h"

#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

/* hwcontext_cuda.h includes <cuda.h> unless CUDA_VERSION is defined: name the two driver-API
 * handle types it uses (the same typedefs as cuda.h) instead, as ffnvcodec's dynlink_cuda.h
 * does, so this file builds without the CUDA toolkit (CPU CI). No CUDA call is made here. */
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
#ifndef CUDA_VERSION
#define CUDA_VERSION 7050
#endif
#include <libavutil/hwcontext_cuda.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_MAX 512

struct lg_encoder {
  AVCodecContext *ctx;
  AVFrame *frame; /* (out_h, out_w) yuv420p; with CUDA frames an empty frame that holds the
                     pool's frame during one encode */
  AVPacket *pkt;
  struct SwsContext *sws; /* host frames only */
  AVBufferRef *hw_frames; /* CUDA frames: AV_PIX_FMT_CUDA / NV12 pool, or NULL (host frames) */
  lg_encoder_cuda cuda;
  int in_w, in_h, out_w, out_h;
  const char *name;
  int64_t last_pts;
  atomic_int want_key;
  char codec_str[16];
  uint8_t hdr[HDR_MAX]; /* SPS+PPS Annex B */
  size_t hdr_size;
  uint8_t *buf; /* keyframe with prepended headers */
  size_t buf_cap;
};

/* FFmpeg's log, routed into lg_log (DESIGN.md "Logging"): errors and warnings as such, its
 * chatty info (x264's capability and statistics lines) at debug. Any thread. */
static _Thread_local bool quiet_probe; /* "auto" trying nvenc: its failure is expected */
/* nvenc said the driver loaded but the GPU cannot encode ("OpenEncodeSessionEx failed:
 * unsupported device", as on an H100): trying nvenc again with host frames is pointless. */
static _Thread_local bool saw_no_nvenc;

static void av_log_to_lg(void *avcl, int level, const char *fmt, va_list vl) {
  if (level > AV_LOG_INFO) return;
  lg_log_level lv = level <= AV_LOG_ERROR     ? LG_LOG_ERROR
                    : level <= AV_LOG_WARNING ? LG_LOG_WARN
                                              : LG_LOG_DEBUG;
  if (quiet_probe) lv = LG_LOG_DEBUG;
  bool is_error = level <= AV_LOG_ERROR;
  if (lv > lg_log_get_level() && !is_error) return;
  char line[1024];
  int prefix = 1;
  av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
  if (is_error && strstr(line, "OpenEncodeSessionEx failed: unsupported device"))
    saw_no_nvenc = true;
  if (lv > lg_log_get_level()) return;
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = 0;
  if (n) lg_log(lv, "ffmpeg", "%s", line);
}

static void route_av_log(void) {
  av_log_set_callback(av_log_to_lg);
}

static void av_err(char *err, size_t errn, const char *what, int rc) {
  char m[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(rc, m, sizeof m);
  snprintf(err, errn, "%s: %s", what, m);
}

int lg_h264_for_each_nal(const uint8_t *p, size_t size,
                         void (*fn)(void *user, const uint8_t *nal, size_t n), void *user) {
  int count = 0;
  size_t i = 0;
  /* Find the first start code. */
  while (i + 3 <= size && !(p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1))
    i++;
  while (i + 3 <= size) {
    size_t start = i + 3;
    size_t j = start;
    while (j + 3 <= size && !(p[j] == 0 && p[j + 1] == 0 && (p[j + 2] == 1 || p[j + 2] == 0)))
      j++;
    size_t end = j + 3 <= size ? j : size;
    /* The next start code may be 4 bytes (00 00 00 01): skip its leading zeros. */
    size_t next = end;
    while (next + 3 <= size && !(p[next] == 0 && p[next + 1] == 0 && p[next + 2] == 1))
      next++;
    if (end > start) {
      if (fn) fn(user, p + start, end - start);
      count++;
    }
    if (next + 3 > size) break;
    i = next;
  }
  return count;
}

typedef struct sps_find {
  const uint8_t *sps;
  size_t n;
} sps_find;

static void find_sps(void *user, const uint8_t *nal, size_t n) {
  sps_find *f = user;
  if (!f->sps && n >= 4 && (nal[0] & 0x1f) == 7) {
    f->sps = nal;
    f->n = n;
  }
}

int lg_h264_codec_string(const uint8_t *annexb, size_t size, char *out, size_t outn) {
  sps_find f = {0};
  lg_h264_for_each_nal(annexb, size, find_sps, &f);
  if (!f.sps || outn < 12) return LG_ENOTFOUND;
  /* SPS: nal header, profile_idc, constraint_set flags, level_idc (no emulation prevention
   * possible in these three bytes unless two are zero, which no real profile has). */
  snprintf(out, outn, "avc1.%02X%02X%02X", f.sps[1], f.sps[2], f.sps[3]);
  return 0;
}

typedef struct hdr_scan {
  uint8_t *dst; /* HDR_MAX bytes to copy SPS/PPS into, or NULL to only look */
  bool has_sps, has_pps;
  size_t n;
} hdr_scan;

/* Notes (and optionally copies) the SPS/PPS NALs of a keyframe. */
static void collect_hdr(void *user, const uint8_t *nal, size_t n) {
  hdr_scan *s = user;
  int t = nal[0] & 0x1f;
  if (t == 7) s->has_sps = true;
  if (t == 8) s->has_pps = true;
  if (s->dst && (t == 7 || t == 8) && s->n + 4 + n <= HDR_MAX) {
    static const uint8_t sc[4] = {0, 0, 0, 1};
    memcpy(s->dst + s->n, sc, 4);
    memcpy(s->dst + s->n + 4, nal, n);
    s->n += 4 + n;
  }
}

/* A pool of NV12 CUDA frames (out size) in the caller's CUDA context and stream. *out is the
 * frames context (it holds the device context). 0 or LG_ENOTSUP with the reason in err. */
static int make_cuda_frames(const lg_encoder *e, const lg_encoder_opts *o, AVBufferRef **out,
                            char *err, size_t errn) {
  AVBufferRef *dev = av_hwdevice_ctx_alloc(AV_HWDEVICE_TYPE_CUDA), *fr = NULL;
  int rc;
  *out = NULL;
  if (!dev) {
    snprintf(err, errn, "this FFmpeg has no CUDA device support");
    return LG_ENOTSUP;
  }
  AVCUDADeviceContext *cu = ((AVHWDeviceContext *)dev->data)->hwctx;
  cu->cuda_ctx = (CUcontext)o->cuda.context;
  cu->stream = (CUstream)o->cuda.stream;
  if ((rc = av_hwdevice_ctx_init(dev)) < 0) {
    /* e.g. libcuda.so.1 (the NVIDIA driver) cannot be loaded */
    av_err(err, errn, "cannot use the engine's CUDA context in FFmpeg", rc);
    goto fail;
  }
  if (!(fr = av_hwframe_ctx_alloc(dev))) {
    snprintf(err, errn, "out of memory (CUDA frames context)");
    goto fail;
  }
  AVHWFramesContext *fc = (AVHWFramesContext *)fr->data;
  fc->format = AV_PIX_FMT_CUDA;
  fc->sw_format = AV_PIX_FMT_NV12; /* nvenc's native input: no conversion inside the encoder */
  fc->width = e->out_w;
  fc->height = e->out_h;
  if ((rc = av_hwframe_ctx_init(fr)) < 0) {
    av_err(err, errn, "cannot make a pool of NV12 CUDA frames", rc);
    goto fail;
  }
  av_buffer_unref(&dev); /* the frames context keeps its own reference */
  *out = fr;
  return 0;
fail:
  av_buffer_unref(&fr);
  av_buffer_unref(&dev);
  return LG_ENOTSUP;
}

/* Opens codec `name`; cuda_frames: h264_nvenc with NV12 CUDA frames from opts.cuda. */
static int try_open(lg_encoder *e, const lg_encoder_opts *o, const char *name, bool cuda_frames,
                    char *err, size_t errn) {
  const AVCodec *codec = avcodec_find_encoder_by_name(name);
  if (!codec) {
    snprintf(err, errn, "encoder %s is not in this FFmpeg build", name);
    return LG_ENOTSUP;
  }
  AVBufferRef *frames = NULL;
  if (cuda_frames) {
    int frc = make_cuda_frames(e, o, &frames, err, errn);
    if (frc) return frc;
  }
  AVCodecContext *c = avcodec_alloc_context3(codec);
  if (!c) {
    av_buffer_unref(&frames);
    return LG_ENOMEM;
  }
  bool nvenc = !strcmp(name, "h264_nvenc");
  c->width = e->out_w;
  c->height = e->out_h;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  if (frames) {
    c->pix_fmt = AV_PIX_FMT_CUDA;
    c->hw_frames_ctx = av_buffer_ref(frames);
    if (!c->hw_frames_ctx) {
      av_buffer_unref(&frames);
      avcodec_free_context(&c);
      return LG_ENOMEM;
    }
    /* what the NV12 writer produces, written into the SPS (VUI) so players convert back */
    c->color_primaries = AVCOL_PRI_BT709;
    c->color_trc = AVCOL_TRC_BT709;
    c->colorspace = AVCOL_SPC_BT709;
    c->color_range = AVCOL_RANGE_MPEG;
  }
  c->time_base = (AVRational){1, 1000000}; /* pts in microseconds */
  c->framerate = (AVRational){o->fps_num, o->fps_den};
  c->gop_size = o->keyint;
  c->max_b_frames = 0;
  c->bit_rate = (int64_t)o->bitrate_kbps * 1000;
  c->rc_max_rate = c->bit_rate;
  c->rc_buffer_size = (int)(c->bit_rate > INT32_MAX ? INT32_MAX : c->bit_rate); /* 1 s VBV */
  c->thread_count = o->threads;
  c->flags |= AV_CODEC_FLAG_LOW_DELAY;
  /* Constrained Baseline: decodable by every browser (WebCodecs, WebRTC, MSE). */
  c->profile = FF_PROFILE_H264_BASELINE;
  const char *preset = o->preset;
  bool nv_preset = preset[0] == 'p' && preset[1] >= '1' && preset[1] <= '7' && !preset[2];
  if (nvenc) {
    av_opt_set(c->priv_data, "preset", nv_preset ? preset : "p2", 0);
    av_opt_set(c->priv_data, "tune", "ull", 0);
    av_opt_set(c->priv_data, "profile", "baseline", 0);
    av_opt_set_int(c->priv_data, "zerolatency", 1, 0);
    av_opt_set_int(c->priv_data, "delay", 0, 0);
    av_opt_set_int(c->priv_data, "forced-idr", 1, 0);
    av_opt_set(c->priv_data, "rc", "cbr", 0);
  } else {
    av_opt_set(c->priv_data, "preset", (preset[0] && !nv_preset) ? preset : "veryfast", 0);
    av_opt_set(c->priv_data, "tune", "zerolatency", 0);
    av_opt_set(c->priv_data, "profile", "baseline", 0);
    av_opt_set_int(c->priv_data, "forced-idr", 1, 0);
    /* repeat-headers: SPS/PPS before every IDR; scenecut=0: keyframes exactly every keyint. */
    av_opt_set(c->priv_data, "x264-params", "repeat-headers=1:scenecut=0", 0);
  }
  int rc = avcodec_open2(c, codec, NULL);
  if (rc < 0) {
    av_err(err, errn, name, rc);
    if (nvenc && saw_no_nvenc) {
      size_t n = strlen(err);
      snprintf(err + n, errn - n,
               " (this GPU has no NVENC encoder: the driver answered 'unsupported device', as "
               "on an H100)");
    }
    avcodec_free_context(&c);
    av_buffer_unref(&frames);
    return LG_ENOTSUP;
  }
  e->ctx = c;
  e->hw_frames = frames;
  e->name = nvenc ? "h264_nvenc" : "libx264";
  return 0;
}

lg_encoder *lg_encoder_new(const lg_encoder_opts *o, char *err, size_t errn) {
  char tmp[256];
  if (!err || !errn) {
    err = tmp;
    errn = sizeof tmp;
  }
  err[0] = 0;
  if (!o || o->width < 2 || o->height < 2 || o->width > 8192 || o->height > 8192 ||
      o->fps_num <= 0 || o->fps_den <= 0 || o->bitrate_kbps <= 0 || o->bitrate_kbps > 1000000 ||
      o->keyint < 1 || o->out_width < 0 || o->out_height < 0 || o->out_width > 8192 ||
      o->out_height > 8192) {
    snprintf(err, errn, "bad options (size, fps, bitrate or keyint)");
    LG_ERR("encoder", "%s", err);
    return NULL;
  }
  static pthread_once_t log_once = PTHREAD_ONCE_INIT;
  pthread_once(&log_once, route_av_log);
  lg_encoder *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  atomic_init(&e->want_key, 0);
  e->in_w = o->width;
  e->in_h = o->height;
  e->out_w = (o->out_width ? o->out_width : o->width) & ~1;
  e->out_h = (o->out_height ? o->out_height : o->height) & ~1;
  e->last_pts = INT64_MIN;
  e->cuda = o->cuda;
  int rc = 0;
  bool is_auto = !strcmp(o->codec, "auto"), is_nvenc = !strcmp(o->codec, "h264_nvenc");
  /* nvenc with CUDA frames first, when the engine's context is given and usable */
  bool cuda = o->cuda.context != NULL;
  if (cuda && (is_auto || is_nvenc)) {
    if (!o->cuda.write_nv12) {
      LG_WARN("encoder", "CUDA frames not used: no NV12 writer was given; host frames instead");
      cuda = false;
    } else if (e->out_w != e->in_w || e->out_h != e->in_h) {
      LG_INFO("encoder",
              "CUDA frames not used: they are not scaled, and the encoded size %dx%d differs "
              "from the input %dx%d; host frames instead",
              e->out_w, e->out_h, e->in_w, e->in_h);
      cuda = false;
    }
  }
  bool opened = false;
  saw_no_nvenc = false;
  if (cuda && (is_auto || is_nvenc)) {
    quiet_probe = is_auto;
    rc = try_open(e, o, "h264_nvenc", true, err, errn);
    quiet_probe = false;
    opened = rc == 0;
    if (!opened && saw_no_nvenc && is_auto)
      LG_INFO("encoder", "h264_nvenc with CUDA frames failed (%s); using libx264", err);
    else if (!opened && !saw_no_nvenc)
      lg_log(is_auto ? LG_LOG_INFO : LG_LOG_WARN, "encoder",
             "h264_nvenc with CUDA frames failed (%s); trying h264_nvenc with host frames", err);
  }
  if (opened) {
    /* h264_nvenc with CUDA frames */
  } else if (saw_no_nvenc) {
    /* no NVENC on this GPU: host frames would fail the same way */
    if (is_auto) rc = try_open(e, o, "libx264", false, err, errn);
  } else if (is_auto) {
    quiet_probe = true;
    rc = try_open(e, o, "h264_nvenc", false, err, errn);
    quiet_probe = false;
    if (rc) {
      LG_INFO("encoder", "h264_nvenc unavailable (%s); using libx264", err);
      rc = try_open(e, o, "libx264", false, err, errn);
    }
  } else if (!strcmp(o->codec, "libx264") || is_nvenc) {
    rc = try_open(e, o, o->codec, false, err, errn);
  } else {
    snprintf(err, errn, "unknown codec '%.32s' (auto, libx264, h264_nvenc)", o->codec);
    rc = LG_EINVAL;
  }
  if (rc) goto fail;
  e->frame = av_frame_alloc();
  e->pkt = av_packet_alloc();
  if (!e->frame || !e->pkt) {
    snprintf(err, errn, "out of memory");
    goto fail;
  }
  if (e->hw_frames) {
    LG_INFO("encoder",
            "%s %dx%d, CUDA frames (NV12 BT.709 in the engine's context), %d kbit/s, "
            "keyint %d",
            e->name, e->out_w, e->out_h, o->bitrate_kbps, o->keyint);
    return e;
  }
  e->frame->format = AV_PIX_FMT_YUV420P;
  e->frame->width = e->out_w;
  e->frame->height = e->out_h;
  if ((rc = av_frame_get_buffer(e->frame, 0)) < 0) {
    av_err(err, errn, "av_frame_get_buffer", rc);
    goto fail;
  }
  e->sws = sws_getContext(e->in_w, e->in_h, AV_PIX_FMT_RGB24, e->out_w, e->out_h,
                          AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
  if (!e->sws) {
    snprintf(err, errn, "sws_getContext %dx%d -> %dx%d failed", e->in_w, e->in_h, e->out_w,
             e->out_h);
    goto fail;
  }
  LG_INFO("encoder", "%s %dx%d -> %dx%d, host frames, %d kbit/s, keyint %d", e->name, e->in_w,
          e->in_h, e->out_w, e->out_h, o->bitrate_kbps, o->keyint);
  return e;
fail:
  LG_ERR("encoder", "%s", err);
  lg_encoder_free(&e);
  return NULL;
}

void lg_encoder_free(lg_encoder **pe) {
  if (!pe || !*pe) return;
  lg_encoder *e = *pe;
  avcodec_free_context(&e->ctx);
  av_frame_free(&e->frame);
  av_buffer_unref(&e->hw_frames);
  av_packet_free(&e->pkt);
  sws_freeContext(e->sws);
  free(e->buf);
  free(e);
  *pe = NULL;
}

void lg_encoder_request_keyframe(lg_encoder *e) {
  if (e) atomic_store(&e->want_key, 1);
}

bool lg_encoder_device_frames(const lg_encoder *e) {
  return e && e->hw_frames;
}

const char *lg_encoder_name(const lg_encoder *e) {
  return e->name;
}

void lg_encoder_size(const lg_encoder *e, int *width, int *height) {
  if (width) *width = e->out_w;
  if (height) *height = e->out_h;
}

const char *lg_encoder_codec_string(const lg_encoder *e) {
  return e->codec_str;
}

const uint8_t *lg_encoder_headers(const lg_encoder *e, size_t *size) {
  *size = e->hdr_size;
  return e->hdr;
}

/* Hands one packet to fn, making sure a keyframe carries SPS/PPS. */
static int deliver(lg_encoder *e, const AVPacket *pkt, lg_encoder_packet_fn fn, void *user) {
  bool key = pkt->flags & AV_PKT_FLAG_KEY;
  const uint8_t *data = pkt->data;
  size_t size = (size_t)pkt->size;
  if (key) {
    /* The first keyframe's headers are kept; later ones are only checked. */
    hdr_scan s = {.dst = e->hdr_size ? NULL : e->hdr};
    lg_h264_for_each_nal(data, size, collect_hdr, &s);
    if (!e->hdr_size) {
      if (s.has_sps && s.has_pps) {
        e->hdr_size = s.n;
        lg_h264_codec_string(e->hdr, e->hdr_size, e->codec_str, sizeof e->codec_str);
      }
    }
    if (!(s.has_sps && s.has_pps) && e->hdr_size) {
      size_t need = e->hdr_size + size;
      if (need > e->buf_cap) {
        uint8_t *nb = realloc(e->buf, need);
        if (!nb) return LG_ENOMEM;
        e->buf = nb;
        e->buf_cap = need;
      }
      memcpy(e->buf, e->hdr, e->hdr_size);
      memcpy(e->buf + e->hdr_size, data, size);
      data = e->buf;
      size = need;
    }
  }
  /* No B-frames, so pts comes back in order; microseconds by the time base. */
  return fn ? fn(user, data, size, pkt->pts, key) : 0;
}

static int drain(lg_encoder *e, lg_encoder_packet_fn fn, void *user) {
  for (;;) {
    int rc = avcodec_receive_packet(e->ctx, e->pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 0;
    if (rc < 0) {
      char m[128];
      av_err(m, sizeof m, "avcodec_receive_packet", rc);
      LG_ERR("encoder", "%s", m);
      return LG_EIO;
    }
    int err = deliver(e, e->pkt, fn, user);
    av_packet_unref(e->pkt);
    if (err) return err;
  }
}

/* Sends e->frame (filled) with pts_us made strictly increasing and a pending keyframe
 * request. 0 or LG_EIO. */
static int send_frame(lg_encoder *e, int64_t pts_us) {
  if (e->last_pts != INT64_MIN && pts_us <= e->last_pts) pts_us = e->last_pts + 1;
  e->last_pts = pts_us;
  e->frame->pts = pts_us;
  e->frame->pict_type = atomic_exchange(&e->want_key, 0) ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
  e->frame->key_frame = e->frame->pict_type == AV_PICTURE_TYPE_I;
  int rc = avcodec_send_frame(e->ctx, e->frame);
  if (rc < 0) {
    char m[128];
    av_err(m, sizeof m, "avcodec_send_frame", rc);
    LG_ERR("encoder", "%s", m);
    return LG_EIO;
  }
  return 0;
}

int lg_encoder_encode(lg_encoder *e, const uint8_t *rgb, size_t stride, int64_t pts_us,
                      lg_encoder_packet_fn fn, void *user) {
  if (!e) return LG_EINVAL;
  int rc;
  if (!rgb) {
    rc = avcodec_send_frame(e->ctx, NULL);
    if (rc < 0 && rc != AVERROR_EOF) return LG_EIO;
    return drain(e, fn, user);
  }
  if (e->hw_frames) {
    LG_ERR("encoder", "this encoder takes CUDA frames (lg_encoder_encode_device), not host frames");
    return LG_EINVAL;
  }
  if (stride < (size_t)e->in_w * 3 || stride > INT32_MAX) return LG_EINVAL;
  if ((rc = av_frame_make_writable(e->frame)) < 0) return LG_ENOMEM;
  const uint8_t *src[4] = {rgb, NULL, NULL, NULL};
  const int src_stride[4] = {(int)stride, 0, 0, 0};
  sws_scale(e->sws, src, src_stride, 0, e->in_h, e->frame->data, e->frame->linesize);
  if ((rc = send_frame(e, pts_us))) return rc;
  return drain(e, fn, user);
}

int lg_encoder_encode_device(lg_encoder *e, const void *src, int64_t pts_us,
                             lg_encoder_packet_fn fn, void *user) {
  if (!e || !src) return LG_EINVAL;
  if (!e->hw_frames) {
    LG_ERR("encoder", "%s takes host frames (lg_encoder_encode), not CUDA frames", e->name);
    return LG_EINVAL;
  }
  /* a frame of the pool (reused once nvenc has released it: no allocation in steady state) */
  int rc = av_hwframe_get_buffer(e->hw_frames, e->frame, 0);
  if (rc < 0) {
    char m[128];
    av_err(m, sizeof m, "no NV12 CUDA frame from the pool", rc);
    LG_ERR("encoder", "%s", m);
    return LG_ENOMEM;
  }
  if (e->frame->linesize[0] <= 0 || e->frame->linesize[1] <= 0) {
    av_frame_unref(e->frame);
    return LG_EIO;
  }
  rc = e->cuda.write_nv12(e->cuda.user, src, e->frame->data[0], (size_t)e->frame->linesize[0],
                          e->frame->data[1], (size_t)e->frame->linesize[1]);
  if (rc) {
    LG_ERR("encoder", "writing the NV12 CUDA frame failed: %s", lg_strerror(rc));
    av_frame_unref(e->frame);
    return rc;
  }
  rc = send_frame(e, pts_us);
  av_frame_unref(e->frame); /* nvenc holds its own reference until the packet is out */
  if (rc) return rc;
  return drain(e, fn, user);
}

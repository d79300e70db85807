/* serve.c: the running service (serve.h). Owns the rings, the engine's GPU worker thread,
 * the two encoder threads (output and input preview), the server and the outputs (RTMP push,
 * recorder, WebRTC). Output frames go to the output encoder through the host frame ring, or,
 * in device mode (the engine on CUDA and h264_nvenc taking CUDA frames), through a ring of
 * device frames that never leave the GPU (device_ring.h; docs/STREAMING_IO.md "Encoder"). Talks to
 * streaming/ through plain structs and callbacks only: the lg_control_ops table below is called by
 * the server on the lws thread, and never blocks (parameters go to the engine's thread-safe setter,
 * reset and input switches are flags the owning threads pick up). Threads: main (new/poll/free,
 * input switches), GPU worker, output encoder, input encoder, lws service thread (control ops,
 * publish callback), plus those the streaming modules start.
 */
#ifdef LG_HAVE_STREAMING

#include "serve.h"

#include "device_ring.h"
#include "encoder.h"
#include "engine.h"
#include "frame_ring.h"
#include "ingest.h"
#include "lg_base.h"
#include "lg_cuda.h"
#include "lg_cuda_nv12.h"
#include "metrics.h"
#include "packet_ring.h"
#include "recorder.h"
#include "rtmp_push.h"
#include "server.h"
#include "webrtc.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "serve"
#define INGEST_SLOTS 8    /* input frames buffered before the oldest is dropped */
#define OUT_SLOTS 16      /* decoded frames waiting for the output encoder */
#define PREVIEW_SLOTS 8   /* input frames waiting for the preview encoder */
#define PACKET_SLOTS 256  /* encoded access units kept per stream */
#define CAP_FIFO 64       /* capture times of chunks in flight in the engine */
#define PREVIEW_MAX_W 640 /* the input preview is encoded at most this wide */
#define GPU_MAX_OUT 16    /* output frames the GPU worker takes per chunk (t2v: up to 12) */
/* Device mode: at most OUT_SLOTS frames wait (as in the host ring); a chunk being written and
 * the frame the encoder reads hold slots of their own, so the producer never finds the ring
 * exhausted and only a full queue drops. */
#define DEV_SLOTS (OUT_SLOTS + GPU_MAX_OUT + 1)

typedef enum state {
  ST_LOADING = 0,
  ST_WARMING,
  ST_RUNNING,
  ST_ERROR,
} state;

/* One encoder thread: frames from `frames` -> H.264 -> `packets`. */
typedef struct enc_worker {
  struct lg_serve *sv;
  lg_stream_source source;
  lg_frame_ring *frames;
  lg_packet_ring *packets;
  lg_encoder *enc;
  lg_encoder_opts opts; /* what enc_start opened (device mode reopens it with opts.cuda) */
  pthread_t thread;
  bool started;
  uint8_t *buf;             /* one frame, (H,W,3) uint8 */
  lg_device_ring *dev_ring; /* output in device mode: frames from here, not from `frames` */
  int fps_num, fps_den;
  /* bitrate estimate over ~1 s windows (output stream only updates the gauge) */
  double win_t0;
  uint64_t win_bytes;
} enc_worker;

struct lg_serve {
  lg_config cfg;
  int W, H;
  lg_metrics *metrics;
  lg_frame_ring *ingest_ring, *out_frames, *in_frames;
  lg_packet_ring *out_packets, *in_packets;
  lg_server *server;
  lg_webrtc *webrtc;
  lg_rtmp_push *rtmp;
  lg_recorder *recorder;
  enc_worker enc_out, enc_in;
  pthread_t gpu_thread;
  bool gpu_started;
  atomic_bool stop;
  atomic_int state;
  atomic_bool want_reset;
  double t0; /* lg_now() at start: pts origin */

  /* mu guards everything below (lws thread vs GPU worker vs main). */
  pthread_mutex_t mu;
  lg_engine *engine;       /* set by the GPU worker once loaded; NULL before/after */
  lg_engine_params params; /* the canonical parameters (what status reports) */
  bool paused;
  char input[LG_PATH_MAX];         /* current input spec */
  char pending_input[LG_PATH_MAX]; /* requested switch, "" = none */
  lg_ingest *ingest;               /* guarded: the publish callback uses it */
  char error[256];
  double ttff_s, latency_ms;
  lg_engine_stats stats;
  /* rate estimates for status */
  /* rate samples, one per >= 1 s; rates span the oldest (~4 s: chunks come in bursts) */
  struct {
    double t;
    uint64_t in, out;
  } rate[4];
  int rate_n, rate_head;
  double fps_in, fps_out;

  pthread_mutex_t acct_mu; /* ingest ring counters already moved into the metrics */
  uint64_t seen_in, seen_drop;
  double last_key_req[LG_SOURCE_COUNT]; /* also under acct_mu */

  /* Device mode handshake, once, when the engine has loaded: the GPU worker offers the output
   * encoder thread a device ring (dev_offer), the thread opens h264_nvenc with CUDA frames in
   * the engine's context and answers (dev_answer 1 yes, -1 no). dev_mu guards these. */
  pthread_mutex_t dev_mu;
  pthread_cond_t dev_cv;
  lg_device_ring *dev_offer; /* non-NULL: an offer waits for its answer */
  lg_backend *dev_be;
  int dev_answer;
  bool enc_out_gone; /* the output encoder thread has ended: offers are refused */
};

/* ---------------------------------------------------------------- helpers */

static void to_ctl_params(const lg_serve *s, lg_ctl_params *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->prompt, sizeof c->prompt, "%s", s->params.prompt);
  c->strength = s->params.noise_scale;
  c->steps = s->params.steps;
  c->seed = s->params.seed;
  c->blend = s->params.blend_s;
  c->paused = s->paused;
}

static const char *state_name(int st, bool paused) {
  switch (st) {
  case ST_LOADING: return "loading";
  case ST_WARMING: return paused ? "paused" : "warming";
  case ST_RUNNING: return paused ? "paused" : "running";
  default: return "error";
  }
}

static void account_ingest(lg_serve *s);

/* Copies an input spec for display, hiding URL credentials (rtmp://user:key@host/...):
 * status is readable by every viewer. */
static void redact_uri(char *dst, size_t n, const char *uri) {
  const char *sep = strstr(uri, "://");
  const char *host = sep ? sep + 3 : NULL;
  const char *at = host ? strchr(host, '@') : NULL;
  const char *slash = host ? strchr(host, '/') : NULL;
  if (!at || (slash && slash < at)) {
    snprintf(dst, n, "%s", uri);
    return;
  }
  snprintf(dst, n, "%.*s***%s", (int)(host - uri), uri, at);
}

/* ---------------------------------------------------------------- control ops (lws thread) */

static int op_set_params(void *user, const lg_ctl_params *p, unsigned has, lg_ctl_params *now,
                         char *err, size_t errn) {
  lg_serve *s = user;
  pthread_mutex_lock(&s->mu);
  lg_engine_params np = s->params;
  if (has & LG_CTL_HAS_PROMPT) snprintf(np.prompt, sizeof np.prompt, "%s", p->prompt);
  if (has & LG_CTL_HAS_STRENGTH) np.noise_scale = p->strength;
  if (has & LG_CTL_HAS_STEPS) np.steps = p->steps;
  if (has & LG_CTL_HAS_SEED) np.seed = p->seed;
  if (has & LG_CTL_HAS_BLEND) np.blend_s = p->blend;
  np.paused = false; /* pause is handled here, not by the engine */
  int rc = 0;
  if (s->engine) rc = lg_engine_set_params(s->engine, &np, err, errn);
  if (!rc) s->params = np; /* before the engine exists, the worker applies them on load */
  to_ctl_params(s, now);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static int op_set_paused(void *user, bool paused, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  lg_serve *s = user;
  pthread_mutex_lock(&s->mu);
  s->paused = paused;
  to_ctl_params(s, now);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static int op_reset(void *user, lg_ctl_params *now, char *err, size_t errn) {
  (void)err;
  (void)errn;
  lg_serve *s = user;
  atomic_store(&s->want_reset, true);
  pthread_mutex_lock(&s->mu);
  to_ctl_params(s, now);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static int op_set_input(void *user, const char *input, lg_ctl_params *now, char *err, size_t errn) {
  lg_serve *s = user;
  lg_ingest_kind kind;
  bool t2v = !strcmp(s->cfg.engine.mode, "t2v");
  if (t2v) {
    snprintf(err, errn, "the engine runs text-to-video: it takes no input");
    return LG_EINVAL;
  }
  if (!strcmp(input, "none") || lg_ingest_parse_kind(input, &kind)) {
    snprintf(err, errn,
             "unknown input '%.200s' (test:<pattern>, file:PATH, v4l2:DEVICE, rtmp://, srt://, "
             "rtmp-listen:PORT/APP/KEY, ws, whip)",
             input);
    return LG_EINVAL;
  }
  if (kind == LG_INGEST_KIND_WHIP && !s->webrtc) {
    snprintf(err, errn, "WebRTC (whip) is not available in this build");
    return LG_ENOTSUP;
  }
  pthread_mutex_lock(&s->mu);
  snprintf(s->pending_input, sizeof s->pending_input, "%s", input);
  to_ctl_params(s, now);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static void op_get_status(void *user, lg_ctl_status *st) {
  lg_serve *s = user;
  account_ingest(s);
  double now = lg_now();
  uint64_t fin = lg_metrics_get(s->metrics, LG_COUNTER_FRAMES_IN);
  uint64_t fout = lg_metrics_get(s->metrics, LG_COUNTER_FRAMES_OUT);
  pthread_mutex_lock(&s->mu);
  int newest = (s->rate_head + s->rate_n - 1) % 4;
  if (s->rate_n == 0 || now - s->rate[newest].t >= 1.0) {
    if (s->rate_n) {
      int o = s->rate_head; /* oldest */
      double dt = now - s->rate[o].t;
      s->fps_in = (double)(fin - s->rate[o].in) / dt;
      s->fps_out = (double)(fout - s->rate[o].out) / dt;
    }
    if (s->rate_n == 4) {
      s->rate_head = (s->rate_head + 1) % 4;
      s->rate_n--;
    }
    int k = (s->rate_head + s->rate_n) % 4;
    s->rate[k].t = now;
    s->rate[k].in = fin;
    s->rate[k].out = fout;
    s->rate_n++;
  }
  snprintf(st->state, sizeof st->state, "%s", state_name(atomic_load(&s->state), s->paused));
  to_ctl_params(s, &st->params);
  redact_uri(st->input, sizeof st->input, s->input);
  st->fps_in = s->fps_in;
  st->fps_out = s->fps_out;
  st->latency_ms = s->latency_ms;
  st->ttff_s = s->ttff_s;
  snprintf(st->gpu_name, sizeof st->gpu_name, "%s", s->stats.device[0] ? s->stats.device : "");
  st->mem_used_mb = (double)s->stats.mem_peak_bytes / (1024.0 * 1024.0);
  pthread_mutex_unlock(&s->mu);
  st->frames_in = fin;
  st->frames_out = fout;
  st->dropped = lg_metrics_get(s->metrics, LG_COUNTER_FRAMES_DROPPED);
  st->mem_total_mb = 0;
  snprintf(st->dit, sizeof st->dit, "%s", s->cfg.model.dit);
  snprintf(st->decoder, sizeof st->decoder, "%s", s->cfg.model.decoder);
  st->width = s->W;
  st->height = s->H;
  if (s->webrtc) {
    lg_webrtc_stats ws;
    lg_webrtc_get_stats(s->webrtc, &ws);
    st->viewers = ws.viewers_connected; /* the server adds its WebSocket viewers */
  }
}

/* /ws/publish (lws thread): JPEG into the ws ingest, if that is the input. */
static int on_publish(void *user, const uint8_t *data, size_t n) {
  lg_serve *s = user;
  pthread_mutex_lock(&s->mu);
  int rc = s->ingest ? lg_ingest_push_jpeg(s->ingest, data, n) : LG_ENOTSUP;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Keyframe requests (viewers joining or lagging, WebRTC PLIs) from any thread: at most one
 * forced IDR per stream per 0.25 s, so a crowd joining does not flood the stream with IDRs. */
static void want_keyframe(lg_serve *s, lg_stream_source src) {
  double now = lg_now();
  pthread_mutex_lock(&s->acct_mu); /* also keeps enc_stop from freeing the encoder meanwhile */
  lg_encoder *e = src == LG_SOURCE_INPUT ? s->enc_in.enc : s->enc_out.enc;
  if (e && now - s->last_key_req[src] >= 0.25) {
    s->last_key_req[src] = now;
    lg_encoder_request_keyframe(e);
  }
  pthread_mutex_unlock(&s->acct_mu);
}

static void on_want_keyframe(void *user, lg_stream_source src) {
  want_keyframe(user, src);
}

static void on_webrtc_keyframe(void *user) {
  want_keyframe(user, LG_SOURCE_OUTPUT);
}

static int on_webrtc_answer(void *user, uint64_t req, int status, const char *answer_sdp,
                            const char *resource_id, const char *message) {
  lg_serve *s = user;
  return lg_server_sdp_answer(s->server, req, status, answer_sdp, resource_id, message);
}

/* ---------------------------------------------------------------- encoder threads */

static int on_packet(void *user, const uint8_t *data, size_t size, int64_t pts_us, bool key) {
  enc_worker *w = user;
  lg_serve *s = w->sv;
  if (key) {
    lg_stream_info have;
    lg_packet_ring_get_info(w->packets, &have);
    const char *cs = lg_encoder_codec_string(w->enc);
    if (!have.version || strcmp(have.codec, cs)) {
      lg_stream_info info;
      memset(&info, 0, sizeof info);
      lg_encoder_size(w->enc, &info.width, &info.height);
      info.fps_num = w->fps_num;
      info.fps_den = w->fps_den;
      snprintf(info.codec, sizeof info.codec, "%s", cs);
      size_t hn;
      const uint8_t *h = lg_encoder_headers(w->enc, &hn);
      if (hn <= sizeof info.extradata) {
        memcpy(info.extradata, h, hn);
        info.extradata_size = hn;
      }
      lg_packet_ring_set_info(w->packets, &info);
    }
  }
  int rc = lg_packet_ring_write(w->packets, data, size, pts_us, key);
  if (w->source == LG_SOURCE_OUTPUT) {
    lg_metrics_add(s->metrics, LG_COUNTER_BYTES_OUT, size);
    w->win_bytes += size;
    double now = lg_now();
    if (now - w->win_t0 >= 1.0) {
      lg_metrics_set_gauge(s->metrics, LG_GAUGE_ENCODER_BITRATE,
                           8.0 * (double)w->win_bytes / (now - w->win_t0));
      w->win_t0 = now;
      w->win_bytes = 0;
    }
  }
  lg_server_wake(s->server);
  return rc;
}

/* ---- device mode, output encoder thread side */

/* Opens the output encoder again with CUDA frames in be's context and stream; on success it
 * replaces the host-frame encoder, which has encoded nothing yet (the engine had produced no
 * frame when it made the offer). false: the host encoder stays, as if no offer had come. */
static bool enc_open_device(enc_worker *w, lg_backend *be) {
  lg_serve *s = w->sv;
  void *ctx = NULL, *stream = NULL;
  /* also makes the engine's device current on this thread, which launches the NV12 kernel */
  int rc = lg_cuda_native_handles(be, &ctx, &stream);
  if (rc) {
    LG_WARN(MOD, "output frames stay on the host: no CUDA context for the encoder (%s)",
            lg_strerror(rc));
    return false;
  }
  lg_encoder_opts o = w->opts;
  o.cuda.context = ctx;
  o.cuda.stream = stream;
  o.cuda.write_nv12 = lg_cuda_nv12_write;
  o.cuda.user = be;
  char err[256] = "";
  lg_encoder *ne = lg_encoder_new(&o, err, sizeof err);
  if (!ne || !lg_encoder_device_frames(ne)) {
    LG_INFO(MOD, "output frames stay on the host: %s",
            ne ? "h264_nvenc takes no CUDA frames here" : err);
    lg_encoder_free(&ne);
    return false;
  }
  lg_encoder *old = w->enc;
  pthread_mutex_lock(&s->acct_mu); /* keyframe requests see one encoder or the other */
  w->enc = ne;
  pthread_mutex_unlock(&s->acct_mu);
  lg_encoder_free(&old);
  LG_INFO(MOD, "output frames stay on the GPU: %s with CUDA frames", lg_encoder_name(ne));
  return true;
}

/* Answers a pending device offer (output encoder thread). True when device mode starts. */
static bool enc_take_device_offer(enc_worker *w) {
  lg_serve *s = w->sv;
  pthread_mutex_lock(&s->dev_mu);
  lg_device_ring *r = s->dev_offer;
  lg_backend *be = s->dev_be;
  pthread_mutex_unlock(&s->dev_mu);
  if (!r) return false;
  bool ok = enc_open_device(w, be); /* outside the lock: opening nvenc takes a while */
  if (ok) w->dev_ring = r;
  pthread_mutex_lock(&s->dev_mu);
  s->dev_answer = ok ? 1 : -1;
  s->dev_offer = NULL;
  pthread_cond_broadcast(&s->dev_cv);
  pthread_mutex_unlock(&s->dev_mu);
  return ok;
}

/* The read of one device frame: the NV12 kernel that reads the slot is enqueued on the engine's
 * stream inside lg_encoder_encode_device; the ring frees the slot only after this returns, so
 * the engine's next write into it runs after the kernel (device_ring.h). */
static int enc_device_frame(void *user, const lg_tensor *frame, const lg_device_frame_info *fi) {
  enc_worker *w = user;
  double t = lg_now();
  int rc = lg_encoder_encode_device(w->enc, frame, fi->pts_ns / 1000, on_packet, w);
  lg_metrics_observe(w->sv->metrics, LG_STAGE_ENCODE, lg_now() - t);
  return rc;
}

/* Device mode until the GPU worker closes the ring: then flush, free the encoder (it borrows
 * the engine's CUDA context) and tell the GPU worker, which frees the slots and the engine. */
static void enc_device_loop(enc_worker *w) {
  lg_serve *s = w->sv;
  for (;;) {
    int frc = 0;
    int rc = lg_device_ring_consume(w->dev_ring, enc_device_frame, w, 0.2, &frc);
    if (rc == LG_EAGAIN) continue;
    if (rc) break; /* closed and drained */
    if (frc) LG_ERR(MOD, "encoder (output): %s", lg_strerror(frc));
  }
  lg_encoder_encode(w->enc, NULL, 0, 0, on_packet, w); /* flush */
  lg_encoder *e = w->enc;
  pthread_mutex_lock(&s->acct_mu);
  w->enc = NULL;
  pthread_mutex_unlock(&s->acct_mu);
  lg_encoder_free(&e);
  lg_device_ring_finish(w->dev_ring);
  w->dev_ring = NULL; /* the GPU worker frees it */
}

static void *enc_main(void *arg) {
  enc_worker *w = arg;
  lg_serve *s = w->sv;
  size_t fsz = lg_frame_ring_frame_size(w->frames);
  bool device = false;
  w->win_t0 = lg_now();
  for (;;) {
    if (w->source == LG_SOURCE_OUTPUT && enc_take_device_offer(w)) {
      device = true;
      enc_device_loop(w); /* until the GPU worker ends */
      break;
    }
    lg_frame_info fi;
    int rc = lg_frame_ring_pop(w->frames, w->buf, fsz, &fi, 0.2);
    if (rc == LG_EAGAIN) continue;
    if (rc) break; /* closed and drained */
    double t = lg_now();
    int64_t pts_us = fi.pts_ns / 1000;
    rc = lg_encoder_encode(w->enc, w->buf, (size_t)lg_frame_ring_width(w->frames) * 3, pts_us,
                           on_packet, w);
    if (rc) LG_ERR(MOD, "encoder (%s): %s", w->source ? "input" : "output", lg_strerror(rc));
    if (w->source == LG_SOURCE_OUTPUT) {
      double done = lg_now();
      lg_metrics_observe(s->metrics, LG_STAGE_ENCODE, done - t);
      /* pts_ns of output frames carries nothing about capture; serve keeps that separately */
    }
  }
  if (!device) lg_encoder_encode(w->enc, NULL, 0, 0, on_packet, w); /* flush */
  if (w->source == LG_SOURCE_OUTPUT) {
    /* no device mode after this: a late offer gets its answer at once */
    pthread_mutex_lock(&s->dev_mu);
    s->enc_out_gone = true;
    if (s->dev_offer) {
      s->dev_offer = NULL;
      s->dev_answer = -1;
      pthread_cond_broadcast(&s->dev_cv);
    }
    pthread_mutex_unlock(&s->dev_mu);
  }
  return NULL;
}

static int enc_start(lg_serve *s, enc_worker *w, lg_stream_source src, lg_frame_ring *frames,
                     lg_packet_ring *packets, int out_w, int out_h, int kbps, char *err,
                     size_t errn) {
  w->sv = s;
  w->source = src;
  w->frames = frames;
  w->packets = packets;
  lg_encoder_opts o;
  memset(&o, 0, sizeof o);
  snprintf(o.codec, sizeof o.codec, "%s", s->cfg.output.codec);
  o.width = lg_frame_ring_width(frames);
  o.height = lg_frame_ring_height(frames);
  o.out_width = out_w;
  o.out_height = out_h;
  /* fps as a rational: 16 -> 16/1, 29.97 -> 29970/1000 */
  w->fps_num = (int)lround(s->cfg.engine.fps * 1000.0);
  w->fps_den = 1000;
  if (w->fps_num % 1000 == 0) {
    w->fps_num /= 1000;
    w->fps_den = 1;
  }
  o.fps_num = w->fps_num;
  o.fps_den = w->fps_den;
  o.bitrate_kbps = kbps;
  o.keyint = s->cfg.output.keyint;
  snprintf(o.preset, sizeof o.preset, "%s", s->cfg.output.preset);
  w->opts = o;
  w->enc = lg_encoder_new(&o, err, errn);
  if (!w->enc) return LG_ENOTSUP;
  w->buf = malloc(lg_frame_ring_frame_size(frames));
  if (!w->buf) return LG_ENOMEM;
  if (pthread_create(&w->thread, NULL, enc_main, w)) return LG_ENOMEM;
  w->started = true;
  return 0;
}

static void enc_stop(enc_worker *w) {
  if (w->frames) lg_frame_ring_close(w->frames);
  if (w->started) pthread_join(w->thread, NULL);
  w->started = false;
  if (w->packets) lg_packet_ring_close(w->packets);
  /* The lws and WebRTC threads may still ask for keyframes: unpublish, then free. */
  lg_encoder *e = w->enc;
  if (w->sv) pthread_mutex_lock(&w->sv->acct_mu);
  w->enc = NULL;
  if (w->sv) pthread_mutex_unlock(&w->sv->acct_mu);
  lg_encoder_free(&e);
  free(w->buf);
  w->buf = NULL;
}

/* ---------------------------------------------------------------- GPU worker */

/* Moves the ingest ring's counters into the metrics. Called by the GPU worker after each
 * frame it takes, by the owner's poll and by status requests, so the counters are fresh even
 * while a long chunk runs; acct_mu makes the read-and-add atomic between them. */
static void account_ingest(lg_serve *s) {
  lg_frame_ring_stats rs;
  pthread_mutex_lock(&s->acct_mu);
  lg_frame_ring_get_stats(s->ingest_ring, &rs);
  if (rs.pushed > s->seen_in) {
    lg_metrics_add(s->metrics, LG_COUNTER_FRAMES_IN, rs.pushed - s->seen_in);
    s->seen_in = rs.pushed;
  }
  if (rs.dropped > s->seen_drop) {
    lg_metrics_add(s->metrics, LG_COUNTER_FRAMES_DROPPED, rs.dropped - s->seen_drop);
    s->seen_drop = rs.dropped;
  }
  pthread_mutex_unlock(&s->acct_mu);
}

/* ---- device mode, GPU worker side */

/* Device mode when the engine runs on CUDA and the output encoder thread could open h264_nvenc
 * with CUDA frames in the engine's context: the ring (DEV_SLOTS frames on the engine's device)
 * and `last` ([1,H,W,3] U8, the paused picture) are allocated here, once. NULL: host frames,
 * exactly as without a GPU. GPU worker thread. */
static lg_device_ring *dev_start(lg_serve *s, lg_engine *e, lg_tensor *last) {
  lg_backend *be = lg_engine_backend(e);
  const char *codec = s->cfg.output.codec;
  if (!be || !lg_backend_is_cuda(be)) return NULL;
  if (strcmp(codec, "auto") && strcmp(codec, "h264_nvenc")) return NULL; /* libx264 */
  if (!s->cfg.output.gpu_frames) {
    LG_INFO(MOD, "output frames stay on the host (output.gpu_frames is false)");
    return NULL;
  }
  lg_device_ring *r = lg_device_ring_new(be, s->W, s->H, DEV_SLOTS, OUT_SLOTS);
  int64_t shape[4] = {1, s->H, s->W, 3};
  if (!r || lg_tensor_alloc(be, last, LG_U8, 4, shape)) {
    LG_WARN(MOD, "output frames stay on the host: no GPU memory for %d device frames", DEV_SLOTS);
    lg_device_ring_free(&r);
    return NULL;
  }
  pthread_mutex_lock(&s->dev_mu);
  if (!s->enc_out_gone) {
    s->dev_offer = r;
    s->dev_be = be;
    s->dev_answer = 0;
    while (s->dev_answer == 0) /* the encoder thread answers within its 0.2 s poll + opening */
      pthread_cond_wait(&s->dev_cv, &s->dev_mu);
  }
  bool ok = s->dev_answer > 0;
  pthread_mutex_unlock(&s->dev_mu);
  if (!ok) {
    lg_tensor_free(last);
    lg_device_ring_free(&r);
  }
  return r;
}

/* Ends device mode before the engine is freed: the encoder thread drains the ring, flushes and
 * frees its encoder (which borrows the engine's CUDA context), then the slots go. */
static void dev_stop(lg_device_ring **r, lg_backend *be, lg_tensor *last) {
  if (!*r) return;
  lg_device_ring_close(*r);
  lg_device_ring_wait_finished(*r, -1);
  be->ops->sync(be); /* no kernel reads a slot any more */
  lg_tensor_free(last);
  lg_device_ring_free(r);
}

/* Moves the device ring's drops into the metrics (GPU worker; *seen: drops already counted). */
static void dev_account(lg_serve *s, lg_device_ring *r, uint64_t *seen) {
  lg_device_ring_stats st;
  lg_device_ring_get_stats(r, &st);
  if (st.dropped > *seen) {
    lg_metrics_add(s->metrics, LG_COUNTER_FRAMES_DROPPED, st.dropped - *seen);
    *seen = st.dropped;
  }
}

/* The slots one chunk's output frames were copied into, published once the chunk is done. */
typedef struct dev_chunk {
  lg_device_ring *ring;
  lg_backend *be;
  int slot[GPU_MAX_OUT];
  lg_tensor frame[GPU_MAX_OUT]; /* [1,H,W,3] U8 views of the slots */
  int n;
} dev_chunk;

/* lg_engine_frame_fn: copies the engine's output frame into a ring slot, on the engine's stream
 * (after the decode that wrote it, before the engine writes it again). */
static int dev_take(void *user, int i, const lg_tensor *frame) {
  dev_chunk *c = user;
  (void)i;
  if (c->n == GPU_MAX_OUT) return 0;
  lg_tensor dst;
  int slot = lg_device_ring_acquire(c->ring, &dst);
  if (slot < 0) return 0; /* not with DEV_SLOTS (and the ring closes only after this thread) */
  int rc = LG_OP(c->be, copy, &dst, frame);
  if (rc) {
    lg_device_ring_cancel(c->ring, slot);
    return rc;
  }
  c->slot[c->n] = slot;
  c->frame[c->n] = dst;
  c->n++;
  return 0;
}

static void dev_cancel(dev_chunk *c) {
  for (int i = 0; i < c->n; i++)
    lg_device_ring_cancel(c->ring, c->slot[i]);
  c->n = 0;
}

/* The paused picture again, from `last` into a slot (GPU worker). */
static void dev_repeat(lg_device_ring *r, lg_backend *be, const lg_tensor *last, int64_t pts_ns) {
  lg_tensor dst;
  int slot = lg_device_ring_acquire(r, &dst);
  if (slot < 0) return;
  if (LG_OP(be, copy, &dst, last)) {
    lg_device_ring_cancel(r, slot);
    return;
  }
  lg_device_ring_publish(r, slot, pts_ns);
}

typedef struct chunk_times {
  double cap[CAP_FIFO]; /* capture time of the oldest input frame of each pushed chunk */
  int head, n;
} chunk_times;

static void *gpu_main(void *arg) {
  lg_serve *s = arg;
  char err[512] = {0};
  lg_engine *e = lg_engine_new(&s->cfg, err, sizeof err);
  if (!e) {
    LG_ERR(MOD, "engine: %s", err);
    pthread_mutex_lock(&s->mu);
    snprintf(s->error, sizeof s->error, "%s", err[0] ? err : "engine failed to load");
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->state, ST_ERROR);
    return NULL;
  }
  /* Parameters changed while loading are applied now. */
  pthread_mutex_lock(&s->mu);
  lg_engine_params p = s->params;
  if (lg_engine_set_params(e, &p, err, sizeof err)) LG_WARN(MOD, "initial params: %s", err);
  s->engine = e;
  pthread_mutex_unlock(&s->mu);
  atomic_store(&s->state, ST_WARMING);
  LG_INFO(MOD, "engine ready (%dx%d, %s)", s->W, s->H, s->cfg.engine.mode);

  const bool t2v = !strcmp(s->cfg.engine.mode, "t2v");
  const size_t fsz = (size_t)s->W * s->H * 3;
  enum { MAX_IN = 8, MAX_OUT = GPU_MAX_OUT };
  /* device mode: output frames stay on the GPU (NULL: the host frame ring, as without one) */
  lg_backend *be = lg_engine_backend(e);
  lg_tensor dev_last;
  memset(&dev_last, 0, sizeof dev_last);
  lg_device_ring *dev = dev_start(s, e, &dev_last);
  uint64_t dev_seen_drop = 0;
  uint8_t *in_buf = malloc(fsz * MAX_IN), *out_buf = malloc(fsz * MAX_OUT);
  uint8_t *last = malloc(fsz);
  const uint8_t *in_ptr[MAX_IN];
  uint8_t *out_ptr[MAX_OUT];
  for (int i = 0; i < MAX_IN; i++)
    in_ptr[i] = in_buf + fsz * i;
  for (int i = 0; i < MAX_OUT; i++)
    out_ptr[i] = out_buf + fsz * i;
  chunk_times ct = {0};
  bool have_last = false;
  const double frame_dt = 1.0 / s->cfg.engine.fps;
  double next_pts_t = 0; /* seconds since t0 of the next output frame */
  double last_repeat = 0;
  bool fatal = !in_buf || !out_buf || !last;

  int carry = 0; /* input frames already in in_buf for the next push */
  double carry_cap = 0;
  while (!fatal && !atomic_load(&s->stop)) {
    account_ingest(s);
    if (atomic_exchange(&s->want_reset, false)) {
      lg_engine_reset(e);
      lg_frame_ring_flush(s->ingest_ring);
      ct.n = 0;
      carry = 0;
      LG_INFO(MOD, "engine reset");
    }
    pthread_mutex_lock(&s->mu);
    bool paused = s->paused;
    pthread_mutex_unlock(&s->mu);
    if (paused) {
      /* Output freezes on the last frame (re-sent at the frame rate so the stream and its
       * keyframes go on); input keeps draining so resuming starts fresh. */
      lg_frame_info fi;
      carry = 0; /* in_buf is reused below */
      while (!t2v && lg_frame_ring_pop(s->ingest_ring, in_buf, fsz, &fi, 0) == 0)
        lg_frame_ring_push(s->in_frames, in_buf, (size_t)s->W * 3, fi.pts_ns);
      double now = lg_now();
      if (have_last && now - last_repeat >= frame_dt) {
        double t = fmax(now - s->t0, next_pts_t);
        if (dev) {
          dev_repeat(dev, be, &dev_last, (int64_t)(t * 1e9));
          dev_account(s, dev, &dev_seen_drop);
        } else {
          lg_frame_ring_push(s->out_frames, last, (size_t)s->W * 3, (int64_t)(t * 1e9));
        }
        next_pts_t = t + frame_dt;
        last_repeat = now;
      }
      struct timespec ts = {0, 20 * 1000000};
      nanosleep(&ts, NULL);
      continue;
    }
    if (t2v) {
      /* No input paces text-to-video: stay at most 0.25 s ahead of the wall clock so the
       * stream plays at engine.fps instead of fast-forwarding. */
      double ahead = next_pts_t - (lg_now() - s->t0);
      if (ahead > 0.25) {
        struct timespec ts = {0, (long)(fmin(ahead - 0.25, 0.05) * 1e9)};
        nanosleep(&ts, NULL);
        continue;
      }
    }
    int need = lg_engine_frames_needed(e);
    if (need > MAX_IN) need = MAX_IN;
    int got = carry < need ? carry : need; /* frames kept from a refused push */
    carry = 0;
    double cap_oldest = got ? carry_cap : 0;
    while (!t2v && got < need && !atomic_load(&s->stop) && !atomic_load(&s->want_reset)) {
      lg_frame_info fi;
      int rc = lg_frame_ring_pop(s->ingest_ring, (uint8_t *)in_ptr[got], fsz, &fi, 0.1);
      if (rc == LG_EAGAIN || rc == LG_EEOF) {
        if (rc == LG_EEOF) {
          struct timespec ts = {0, 50 * 1000000}; /* input ended or switching: wait */
          nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&s->mu);
        bool p2 = s->paused;
        pthread_mutex_unlock(&s->mu);
        if (p2) break;
        continue;
      }
      if (rc) break;
      account_ingest(s); /* counted before the preview shows it */
      double now = lg_now();
      lg_metrics_observe(s->metrics, LG_STAGE_INGEST, now - fi.t_arrival);
      if (got == 0) cap_oldest = fi.t_arrival;
      /* The preview shows the input as the engine takes it. */
      lg_frame_ring_push(s->in_frames, in_ptr[got], (size_t)s->W * 3,
                         (int64_t)((fi.t_arrival - s->t0) * 1e9));
      got++;
    }
    if (atomic_load(&s->stop)) break;
    if (got < need) { /* reset, pause or stop interrupted the chunk: keep the frames */
      carry = got;
      carry_cap = cap_oldest;
      continue;
    }
    if (t2v) cap_oldest = lg_now();
    if (ct.n < CAP_FIFO) {
      ct.cap[(ct.head + ct.n) % CAP_FIFO] = cap_oldest;
      ct.n++;
    }
    dev_chunk dc = {.ring = dev, .be = be, .n = 0};
    int n_out = dev ? lg_engine_push_device(e, t2v ? NULL : in_ptr, got, dev_take, &dc, MAX_OUT)
                    : lg_engine_push(e, t2v ? NULL : in_ptr, got, out_ptr, MAX_OUT);
    if (dev && n_out < 0) dev_cancel(&dc);
    if (dev && n_out >= 0) n_out = dc.n; /* the frames that got a slot */
    if (n_out == LG_EINVAL && !t2v && lg_engine_frames_needed(e) != got) {
      /* A parameter change (steps) restarted the stream at the chunk boundary, so this
       * push wants a different number of frames: keep what we have and top it up. */
      carry = got;
      carry_cap = cap_oldest;
      ct.n = ct.n ? ct.n - 1 : 0;
      continue;
    }
    if (n_out < 0) {
      LG_ERR(MOD, "engine push: %s", lg_strerror(n_out));
      pthread_mutex_lock(&s->mu);
      snprintf(s->error, sizeof s->error, "engine failed: %s", lg_strerror(n_out));
      pthread_mutex_unlock(&s->mu);
      atomic_store(&s->state, ST_ERROR);
      break;
    }
    lg_engine_stats es;
    lg_engine_get_stats(e, &es);
    pthread_mutex_lock(&s->mu);
    bool paused_now = s->paused;
    pthread_mutex_unlock(&s->mu);
    if (n_out > 0 && paused_now) {
      /* Paused while this chunk ran: the picture freezes where the viewer saw it pause, so
       * these frames are not shown (they would be stale after resume anyway). */
      if (dev) dev_cancel(&dc);
      if (ct.n) {
        ct.head = (ct.head + 1) % CAP_FIFO;
        ct.n--;
      }
      n_out = 0;
    }
    if (n_out > 0) {
      double cap = ct.n ? ct.cap[ct.head] : cap_oldest;
      if (ct.n) {
        ct.head = (ct.head + 1) % CAP_FIFO;
        ct.n--;
      }
      double now = lg_now();
      double t = fmax(now - s->t0, next_pts_t);
      /* Counted before the frames can reach a viewer, so status never lags the stream. */
      lg_metrics_add(s->metrics, LG_COUNTER_FRAMES_OUT, (uint64_t)n_out);
      if (dev) {
        /* the paused picture, copied while this thread still owns the slot */
        if (LG_OP(be, copy, &dev_last, &dc.frame[n_out - 1]) == 0) have_last = true;
        for (int i = 0; i < n_out; i++) {
          lg_device_ring_publish(dev, dc.slot[i], (int64_t)(t * 1e9));
          t += frame_dt;
        }
        dev_account(s, dev, &dev_seen_drop);
      } else {
        for (int i = 0; i < n_out; i++) {
          lg_frame_ring_push(s->out_frames, out_ptr[i], (size_t)s->W * 3, (int64_t)(t * 1e9));
          t += frame_dt;
        }
        memcpy(last, out_ptr[n_out - 1], fsz);
        have_last = true;
      }
      next_pts_t = t;
      lg_metrics_observe(s->metrics, LG_STAGE_TOTAL, now - cap);
      if (atomic_load(&s->state) == ST_WARMING) atomic_store(&s->state, ST_RUNNING);
      pthread_mutex_lock(&s->mu);
      s->latency_ms = (now - cap) * 1000.0;
      if (s->ttff_s == 0) s->ttff_s = now - s->t0;
      pthread_mutex_unlock(&s->mu);
    }
    lg_metrics_observe(s->metrics, LG_STAGE_DIT, es.ms_dit / 1000.0);
    lg_metrics_observe(s->metrics, LG_STAGE_DECODE, es.ms_decode / 1000.0);
    pthread_mutex_lock(&s->mu);
    s->stats = es;
    pthread_mutex_unlock(&s->mu);
  }
  pthread_mutex_lock(&s->mu);
  s->engine = NULL;
  pthread_mutex_unlock(&s->mu);
  dev_stop(&dev, be, &dev_last); /* before the engine: the encoder uses its CUDA context */
  lg_engine_free(&e);
  free(in_buf);
  free(out_buf);
  free(last);
  return NULL;
}

/* ---------------------------------------------------------------- ingest */

/* Starts the input named by uri (main thread). "none" and t2v: no ingest. */
static int start_ingest(lg_serve *s, const char *uri) {
  if (!strcmp(s->cfg.engine.mode, "t2v") || !strcmp(uri, "none")) return 0;
  lg_frame_ring_flush(s->ingest_ring);
  lg_frame_ring_reopen(s->ingest_ring);
  lg_ingest *in = lg_ingest_new(uri, s->W, s->H, s->cfg.engine.fps, s->ingest_ring, NULL);
  if (!in) return LG_EINVAL;
  /* Only a whip input takes a WHIP publisher's frames; others must not mix into its ring. */
  lg_ingest_kind kind;
  if (s->webrtc)
    lg_webrtc_set_whip_enabled(s->webrtc,
                               !lg_ingest_parse_kind(uri, &kind) && kind == LG_INGEST_KIND_WHIP);
  pthread_mutex_lock(&s->mu);
  s->ingest = in;
  snprintf(s->input, sizeof s->input, "%s", uri);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static void stop_ingest(lg_serve *s) {
  pthread_mutex_lock(&s->mu);
  lg_ingest *in = s->ingest;
  s->ingest = NULL; /* the publish callback no longer sees it */
  pthread_mutex_unlock(&s->mu);
  lg_ingest_free(&in);
}

/* ---------------------------------------------------------------- lifecycle */

lg_serve *lg_serve_new(const lg_config *cfg, char *err, size_t errn) {
  char tmp[512];
  if (!err || !errn) {
    err = tmp;
    errn = sizeof tmp;
  }
  err[0] = 0;
  lg_serve *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cfg = *cfg;
  s->W = cfg->engine.width;
  s->H = cfg->engine.height;
  s->t0 = lg_now();
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->acct_mu, NULL);
  pthread_mutex_init(&s->dev_mu, NULL);
  pthread_cond_init(&s->dev_cv, NULL);
  atomic_init(&s->stop, false);
  atomic_init(&s->state, ST_LOADING);
  atomic_init(&s->want_reset, false);
  snprintf(s->params.prompt, sizeof s->params.prompt, "%s", cfg->engine.prompt);
  s->params.noise_scale = cfg->engine.noise_scale;
  s->params.steps = cfg->engine.steps;
  s->params.seed = cfg->engine.seed;
  s->params.blend_s = cfg->engine.prompt_blend_s;
  snprintf(s->input, sizeof s->input, "%s", cfg->input);
  const bool t2v = !strcmp(cfg->engine.mode, "t2v");

  s->metrics = lg_metrics_new();
  s->ingest_ring = lg_frame_ring_new(s->W, s->H, INGEST_SLOTS);
  s->out_frames = lg_frame_ring_new(s->W, s->H, OUT_SLOTS);
  s->in_frames = lg_frame_ring_new(s->W, s->H, PREVIEW_SLOTS);
  s->out_packets = lg_packet_ring_new(PACKET_SLOTS);
  s->in_packets = lg_packet_ring_new(PACKET_SLOTS);
  if (!s->metrics || !s->ingest_ring || !s->out_frames || !s->in_frames || !s->out_packets ||
      !s->in_packets) {
    snprintf(err, errn, "out of memory (rings for %dx%d)", s->W, s->H);
    goto fail;
  }

  /* Encoders before the server: viewers may ask for keyframes at once. */
  if (enc_start(s, &s->enc_out, LG_SOURCE_OUTPUT, s->out_frames, s->out_packets, 0, 0,
                cfg->output.bitrate_kbps, err, errn))
    goto fail;
  int pw = s->W, ph = s->H;
  if (pw > PREVIEW_MAX_W) {
    ph = (int)((long)ph * PREVIEW_MAX_W / pw);
    pw = PREVIEW_MAX_W;
  }
  int preview_kbps = cfg->output.bitrate_kbps / 2 > 100 ? cfg->output.bitrate_kbps / 2 : 100;
  if (enc_start(s, &s->enc_in, LG_SOURCE_INPUT, s->in_frames, s->in_packets, pw, ph, preview_kbps,
                err, errn))
    goto fail;

  /* WebRTC (WHEP viewers read the output packets; a WHIP publisher feeds the ingest ring). */
  lg_webrtc_opts wo;
  memset(&wo, 0, sizeof wo);
  wo.packets = s->out_packets;
  wo.ingest = t2v ? NULL : s->ingest_ring;
  wo.width = s->W;
  wo.height = s->H;
  wo.fps = cfg->engine.fps;
  wo.max_viewers = cfg->server.max_viewers;
  for (int i = 0; i < cfg->server.n_ice_servers && i < LG_WEBRTC_MAX_ICE; i++)
    snprintf(wo.ice_servers[i], sizeof wo.ice_servers[i], "%s", cfg->server.ice_servers[i]);
  wo.n_ice_servers =
      cfg->server.n_ice_servers < LG_WEBRTC_MAX_ICE ? cfg->server.n_ice_servers : LG_WEBRTC_MAX_ICE;
  wo.answer = on_webrtc_answer;
  wo.answer_user = s;
  wo.want_keyframe = on_webrtc_keyframe;
  wo.keyframe_user = s;
  s->webrtc = lg_webrtc_new(&wo);
  if (!s->webrtc) LG_WARN(MOD, "WebRTC unavailable: /whep and /whip will answer 503");

  lg_server_opts so;
  memset(&so, 0, sizeof so);
  snprintf(so.host, sizeof so.host, "%s", cfg->server.host);
  so.port = cfg->server.port;
  if (cfg->server.web_root[0])
    snprintf(so.web_root, sizeof so.web_root, "%s", cfg->server.web_root);
  else
    snprintf(so.web_root, sizeof so.web_root, "%s/web", LG_SOURCE_DIR);
  so.max_viewers = cfg->server.max_viewers;
  so.rings[LG_SOURCE_OUTPUT] = s->out_packets;
  so.rings[LG_SOURCE_INPUT] = s->in_packets;
  so.metrics = s->metrics;
  so.control =
      (lg_control_ops){s, op_set_params, op_set_paused, op_reset, op_set_input, op_get_status};
  if (s->webrtc) lg_webrtc_fill_hooks(s->webrtc, &so.webrtc);
  so.user = s;
  so.publish_jpeg = on_publish;
  so.want_keyframe = on_want_keyframe;
  s->server = lg_server_new(&so, err, errn);
  if (!s->server) goto fail;

  if (cfg->output.rtmp[0]) {
    s->rtmp = lg_rtmp_push_new(s->out_packets, cfg->output.rtmp, NULL);
    if (!s->rtmp) LG_WARN(MOD, "RTMP push to %s could not start", cfg->output.rtmp);
  }
  if (cfg->output.record[0]) {
    s->recorder = lg_recorder_new(s->out_packets, cfg->output.record);
    if (!s->recorder) {
      snprintf(err, errn, "cannot record to %s", cfg->output.record);
      goto fail;
    }
  }

  if (start_ingest(s, cfg->input)) {
    snprintf(err, errn, "cannot open input '%s'", cfg->input);
    goto fail;
  }
  if (pthread_create(&s->gpu_thread, NULL, gpu_main, s)) {
    snprintf(err, errn, "cannot start the GPU worker thread");
    goto fail;
  }
  s->gpu_started = true;
  if (lg_server_start(s->server)) {
    snprintf(err, errn, "cannot start the server thread");
    goto fail;
  }
  LG_INFO(MOD, "serving on http://%s:%d/ (input %s)", cfg->server.host, lg_server_port(s->server),
          s->input);
  return s;
fail:
  LG_ERR(MOD, "%s", err);
  lg_serve_free(&s);
  return NULL;
}

int lg_serve_port(const lg_serve *s) {
  return s && s->server ? lg_server_port(s->server) : -1;
}

int lg_serve_poll(lg_serve *s) {
  if (atomic_load(&s->state) == ST_ERROR) return LG_EBACKEND;
  account_ingest(s);
  char want[LG_PATH_MAX];
  pthread_mutex_lock(&s->mu);
  snprintf(want, sizeof want, "%s", s->pending_input);
  s->pending_input[0] = 0;
  pthread_mutex_unlock(&s->mu);
  if (want[0]) {
    LG_INFO(MOD, "switching input to %s", want);
    stop_ingest(s);
    if (start_ingest(s, want)) {
      LG_WARN(MOD, "input %s failed; back to %s", want, s->cfg.input);
      start_ingest(s, s->cfg.input);
    }
  }
  return 0;
}

void lg_serve_free(lg_serve **ps) {
  if (!ps || !*ps) return;
  lg_serve *s = *ps;
  atomic_store(&s->stop, true);
  /* 1. no more input; 2. the GPU worker ends its chunk and frees the engine. */
  stop_ingest(s);
  if (s->ingest_ring) lg_frame_ring_close(s->ingest_ring);
  if (s->gpu_started) pthread_join(s->gpu_thread, NULL);
  /* 3. encoders drain and flush; the packet rings close (outputs see EOF). */
  enc_stop(&s->enc_out);
  enc_stop(&s->enc_in);
  /* 4. outputs, then WebRTC (it answers through the server), then the server. */
  lg_rtmp_push_free(&s->rtmp);
  lg_recorder_free(&s->recorder);
  lg_webrtc_free(&s->webrtc);
  lg_server_free(&s->server);
  lg_packet_ring_free(&s->out_packets);
  lg_packet_ring_free(&s->in_packets);
  lg_frame_ring_free(&s->ingest_ring);
  lg_frame_ring_free(&s->out_frames);
  lg_frame_ring_free(&s->in_frames);
  lg_metrics_free(&s->metrics);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->acct_mu);
  pthread_mutex_destroy(&s->dev_mu);
  pthread_cond_destroy(&s->dev_cv);
  free(s);
  *ps = NULL;
}

#endif /* LG_HAVE_STREAMING */

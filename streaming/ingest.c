/* ingest.c: GStreamer input pipelines feeding the frame ring (see ingest.h).
 * Threads: a supervisor thread per ingest (pipeline lifecycle, bus, backoff), GStreamer
 * streaming threads (appsink new-sample -> lg_frame_ring_push), an RTMP listen reader thread
 * (FFmpeg avio server -> appsrc) for rtmp-listen, and any caller of lg_ingest_push_jpeg.
 * `mu` guards status and the current appsrc pointer; the supervisor alone builds and tears
 * down pipelines. */
#include "ingest.h"

#include "lg_base.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <libavformat/avio.h>
#include <libavutil/error.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "ingest"
#define JPEG_MAX_BYTES (16u << 20)

struct lg_ingest {
  lg_ingest_kind kind;
  char arg[1024]; /* pattern, path, device, URI or listen URL (validated) */
  int width, height;
  int fps_n, fps_d;
  lg_frame_ring *ring; /* borrowed */
  lg_ingest_options opt;

  pthread_t supervisor;
  bool supervisor_started;
  atomic_bool stop;   /* set by lg_ingest_free */
  pthread_mutex_t mu; /* guards everything below and the wait on cv */
  pthread_cond_t cv;  /* wakes the supervisor's backoff sleep on stop */
  lg_ingest_status st;
  GstElement *appsrc;   /* current ws/rtmp-listen appsrc (new reference) or NULL */
  bool got_frame;       /* a frame arrived since the pipeline was built */
  uint64_t whip_pushed; /* whip: ring pushes seen by the last _get_status */

  /* rtmp-listen reader (one per pipeline instance) */
  pthread_t reader;
  bool reader_started;
  atomic_bool reader_stop;
};

void lg_ingest_options_default(lg_ingest_options *o) {
  o->reconnect_min_s = 0.5;
  o->reconnect_max_s = 10.0;
  o->max_reconnects = -1;
  o->appsrc_max_bytes = 4 << 20;
}

const char *lg_ingest_state_name(lg_ingest_state s) {
  switch (s) {
  case LG_INGEST_STATE_STARTING: return "starting";
  case LG_INGEST_STATE_RUNNING: return "running";
  case LG_INGEST_STATE_WAITING: return "waiting";
  case LG_INGEST_STATE_RECONNECTING: return "reconnecting";
  case LG_INGEST_STATE_EOS: return "eos";
  case LG_INGEST_STATE_FAILED: return "failed";
  }
  return "?";
}

static void set_state(lg_ingest *in, lg_ingest_state s, const char *why) {
  pthread_mutex_lock(&in->mu);
  in->st.state = s;
  if (why) snprintf(in->st.last_error, sizeof(in->st.last_error), "%s", why);
  pthread_mutex_unlock(&in->mu);
}

static bool starts_with(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

/* rtmp-listen:[HOST:]PORT[/APP/KEY] -> rtmp://HOST:PORT/APP/KEY (default live/stream). Only
 * [A-Za-z0-9._-] in APP and KEY so the URL cannot carry options. FFmpeg's server accepts a
 * publisher whatever app/key it names (it only logs the mismatch): the key is no secret. */
static int parse_rtmp_listen(const char *spec, char *url, size_t n) {
  char host[64] = "127.0.0.1";
  const char *p = spec;
  const char *slash = strchr(p, '/');
  const char *port_end = slash ? slash : p + strlen(p);
  const char *colon = memchr(p, ':', (size_t)(port_end - p));
  if (colon) {
    size_t hl = (size_t)(colon - p);
    if (hl == 0 || hl >= sizeof(host)) return LG_EINVAL;
    memcpy(host, p, hl);
    host[hl] = 0;
    for (size_t i = 0; i < hl; i++) /* IPv4 address or host name */
      if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-') return LG_EINVAL;
    p = colon + 1;
  }
  char *end = NULL;
  long port = strtol(p, &end, 10);
  if (end != port_end || end == p || port < 1 || port > 65535) return LG_EINVAL;
  const char *path = slash ? slash + 1 : "live/stream";
  int slashes = 0;
  for (const char *c = path; *c; c++) {
    if (*c == '/') {
      slashes++;
      if (c == path || c[1] == 0 || c[-1] == '/') return LG_EINVAL;
    } else if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') {
      return LG_EINVAL;
    }
  }
  if (slashes != 1) return LG_EINVAL; /* exactly APP/KEY */
  int w = snprintf(url, n, "rtmp://%s:%ld/%s", host, port, path);
  return (w > 0 && (size_t)w < n) ? 0 : LG_EINVAL;
}

static int parse_uri(const char *uri, lg_ingest_kind *kind, char *arg, size_t n) {
  if (!uri) return LG_EINVAL;
  size_t len = strlen(uri);
  if (len == 0 || len >= n) return LG_EINVAL;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)uri[i] < 0x20) return LG_EINVAL;
  arg[0] = 0;
  if (starts_with(uri, "test:")) {
    const char *p = uri + 5;
    if (!*p) return LG_EINVAL;
    for (const char *c = p; *c; c++) /* goes into a parse-launch string: keep it a word */
      if (!isalnum((unsigned char)*c) && *c != '-') return LG_EINVAL;
    *kind = LG_INGEST_KIND_TEST;
    snprintf(arg, n, "%s", p);
  } else if (starts_with(uri, "file:")) {
    if (!uri[5]) return LG_EINVAL;
    *kind = LG_INGEST_KIND_FILE;
    snprintf(arg, n, "%s", uri + 5);
  } else if (starts_with(uri, "v4l2:")) {
    if (!starts_with(uri + 5, "/dev/")) return LG_EINVAL;
    *kind = LG_INGEST_KIND_V4L2;
    snprintf(arg, n, "%s", uri + 5);
  } else if (starts_with(uri, "rtmp-listen:")) {
    *kind = LG_INGEST_KIND_RTMP_LISTEN;
    return parse_rtmp_listen(uri + 12, arg, n);
  } else if (starts_with(uri, "rtmp://") || starts_with(uri, "rtmps://") ||
             starts_with(uri, "srt://") || starts_with(uri, "rtsp://") ||
             starts_with(uri, "http://") || starts_with(uri, "https://")) {
    if (!gst_uri_is_valid(uri)) return LG_EINVAL;
    *kind = LG_INGEST_KIND_URI;
    snprintf(arg, n, "%s", uri);
  } else if (strcmp(uri, "ws") == 0) {
    *kind = LG_INGEST_KIND_WS;
  } else if (strcmp(uri, "whip") == 0) {
    *kind = LG_INGEST_KIND_WHIP;
  } else {
    return LG_EINVAL;
  }
  return 0;
}

int lg_ingest_parse_kind(const char *uri, lg_ingest_kind *kind) {
  char arg[1024];
  lg_ingest_kind k;
  if (!gst_is_initialized()) gst_init(NULL, NULL);
  int err = parse_uri(uri, &k, arg, sizeof(arg));
  if (err == 0 && kind) *kind = k;
  return err;
}

static bool is_live(lg_ingest_kind k) {
  return k != LG_INGEST_KIND_FILE;
}

/* ---- frames out: appsink (GStreamer streaming thread) ---- */

static GstFlowReturn on_new_sample(GstAppSink *sink, gpointer user) {
  lg_ingest *in = user;
  GstSample *s = gst_app_sink_pull_sample(sink);
  if (!s) return GST_FLOW_EOS;
  GstVideoInfo vi;
  GstVideoFrame vf;
  GstBuffer *buf = gst_sample_get_buffer(s);
  GstCaps *caps = gst_sample_get_caps(s);
  if (buf && caps && gst_video_info_from_caps(&vi, caps) &&
      GST_VIDEO_INFO_WIDTH(&vi) == in->width && GST_VIDEO_INFO_HEIGHT(&vi) == in->height &&
      GST_VIDEO_INFO_FORMAT(&vi) == GST_VIDEO_FORMAT_RGB &&
      gst_video_frame_map(&vf, &vi, buf, GST_MAP_READ)) {
    int64_t pts = GST_BUFFER_PTS_IS_VALID(buf) ? (int64_t)GST_BUFFER_PTS(buf) : -1;
    int rc = lg_frame_ring_push(in->ring, GST_VIDEO_FRAME_PLANE_DATA(&vf, 0),
                                (size_t)GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0), pts);
    gst_video_frame_unmap(&vf);
    if (rc == 0) {
      pthread_mutex_lock(&in->mu);
      in->st.frames++;
      in->st.last_frame_t = lg_now();
      in->got_frame = true;
      if (in->st.state != LG_INGEST_STATE_RUNNING) {
        in->st.state = LG_INGEST_STATE_RUNNING;
        in->st.last_error[0] = 0;
      }
      pthread_mutex_unlock(&in->mu);
    }
  } else {
    LG_WARN(MOD, "unexpected sample caps; frame dropped");
  }
  gst_sample_unref(s);
  return GST_FLOW_OK;
}

/* decodebin/uridecodebin pad-added: link the first raw video pad to the tail. */
static void on_pad_added(GstElement *dec, GstPad *pad, gpointer user) {
  GstElement *conv = user;
  (void)dec;
  GstCaps *caps = gst_pad_get_current_caps(pad);
  if (!caps) caps = gst_pad_query_caps(pad, NULL);
  const GstStructure *s = caps ? gst_caps_get_structure(caps, 0) : NULL;
  bool video = s && g_str_has_prefix(gst_structure_get_name(s), "video/x-raw");
  if (caps) gst_caps_unref(caps);
  if (!video) return;
  GstPad *sink = gst_element_get_static_pad(conv, "sink");
  if (!gst_pad_is_linked(sink) && gst_pad_link(pad, sink) != GST_PAD_LINK_OK)
    LG_WARN(MOD, "could not link decoded video pad");
  gst_object_unref(sink);
}

/* flvdemux pad-added: audio (OBS always sends some) goes to a fakesink, created only when
 * there is audio: an unlinked pad would stop the demuxer with not-linked, and a fakesink
 * that never gets data would never see EOS, so the pipeline would never report the end. */
static void on_flv_pad(GstElement *demux, GstPad *pad, gpointer user) {
  GstElement *pipe = user;
  (void)demux;
  if (strcmp(GST_OBJECT_NAME(pad), "audio") != 0) return;
  GstElement *fs = gst_element_factory_make("fakesink", NULL);
  if (!fs) return;
  g_object_set(fs, "sync", FALSE, "async", FALSE, NULL);
  gst_bin_add(GST_BIN(pipe), fs);
  gst_element_sync_state_with_parent(fs);
  GstPad *sp = gst_element_get_static_pad(fs, "sink");
  if (gst_pad_link(pad, sp) != GST_PAD_LINK_OK) LG_WARN(MOD, "cannot drop the FLV audio");
  gst_object_unref(sp);
}

/* ---- rtmp-listen: FFmpeg's RTMP server mode feeding appsrc (reader thread) ---- */

static int avio_interrupt(void *user) {
  lg_ingest *in = user;
  return atomic_load(&in->stop) || atomic_load(&in->reader_stop);
}

static void *rtmp_reader_main(void *user) {
  lg_ingest *in = user;
  AVIOContext *io = NULL;
  AVDictionary *o = NULL;
  GstElement *src = NULL;
  enum { CHUNK = 64 * 1024 };
  pthread_mutex_lock(&in->mu);
  if (in->appsrc) src = gst_object_ref(in->appsrc);
  pthread_mutex_unlock(&in->mu);
  if (!src) return NULL;
  av_dict_set(&o, "listen", "1", 0);
  AVIOInterruptCB cb = {avio_interrupt, in};
  LG_INFO(MOD, "rtmp-listen: waiting for a publisher on %s", in->arg);
  int rc = avio_open2(&io, in->arg, AVIO_FLAG_READ, &cb, &o);
  av_dict_free(&o);
  if (rc < 0) {
    if (!avio_interrupt(in)) {
      char msg[128];
      av_strerror(rc, msg, sizeof(msg));
      LG_WARN(MOD, "rtmp-listen on %s failed: %s", in->arg, msg);
      set_state(in, LG_INGEST_STATE_RECONNECTING, msg);
    }
    goto done;
  }
  LG_INFO(MOD, "rtmp-listen: publisher connected on %s", in->arg);
  while (!avio_interrupt(in)) {
    GstBuffer *b = gst_buffer_new_allocate(NULL, CHUNK, NULL);
    GstMapInfo m;
    if (!b || !gst_buffer_map(b, &m, GST_MAP_WRITE)) {
      if (b) gst_buffer_unref(b);
      break;
    }
    int n = avio_read_partial(io, m.data, CHUNK);
    gst_buffer_unmap(b, &m);
    if (n <= 0) {
      gst_buffer_unref(b);
      if (n < 0 && n != AVERROR_EOF && !avio_interrupt(in)) {
        char msg[128];
        av_strerror(n, msg, sizeof(msg));
        LG_WARN(MOD, "rtmp-listen: read failed: %s", msg);
      }
      break;
    }
    gst_buffer_set_size(b, (gsize)n);
    if (gst_app_src_push_buffer(GST_APP_SRC(src), b) != GST_FLOW_OK) break; /* flushing */
  }
  LG_INFO(MOD, "rtmp-listen: publisher left %s", in->arg);
done:
  if (io) avio_closep(&io);
  /* EOS makes the supervisor rebuild the pipeline and listen again. */
  if (!avio_interrupt(in)) gst_app_src_end_of_stream(GST_APP_SRC(src));
  gst_object_unref(src);
  return NULL;
}

/* ---- pipeline construction (supervisor thread) ---- */

static GstElement *build_pipeline(lg_ingest *in) {
  char head[1400], desc[2048];
  bool dynamic = false; /* head ends in a (uri)decodebin named "dyn" linked at pad-added */
  switch (in->kind) {
  case LG_INGEST_KIND_TEST:
    snprintf(head, sizeof(head), "videotestsrc pattern=%s is-live=true ! ", in->arg);
    break;
  case LG_INGEST_KIND_FILE:
    snprintf(head, sizeof(head), "uridecodebin name=dyn  ");
    dynamic = true;
    break;
  case LG_INGEST_KIND_URI:
    /* The source element for the URI (rtmp2src/rtmpsrc, srtsrc, ...) is added below and
     * linked straight to decodebin: uridecodebin would insert a network buffer (queue2)
     * that delays a live stream by seconds and then bursts. */
    if (starts_with(in->arg, "rtmp"))
      /* An explicit flvdemux: inside decodebin the video would wait for the audio stream
       * that the FLV header made up by the RTMP source announces (no-more-pads). Audio goes
       * to a fakesink (on_flv_pad). */
      snprintf(head, sizeof(head), "flvdemux name=flv flv.video ! queue ! decodebin name=dyn  ");
    else
      snprintf(head, sizeof(head), "decodebin name=dyn  ");
    dynamic = true;
    break;
  case LG_INGEST_KIND_V4L2:
    snprintf(head, sizeof(head), "v4l2src name=src ! decodebin name=dyn  ");
    dynamic = true;
    break;
  case LG_INGEST_KIND_RTMP_LISTEN:
    snprintf(head, sizeof(head),
             "appsrc name=src format=bytes is-live=true caps=video/x-flv max-bytes=%d block=true"
             " ! flvdemux name=flv flv.video ! queue ! decodebin name=dyn  ",
             in->opt.appsrc_max_bytes);
    dynamic = true;
    break;
  case LG_INGEST_KIND_WS:
    snprintf(head, sizeof(head),
             "appsrc name=src format=time is-live=true do-timestamp=true caps=image/jpeg"
             " max-bytes=%d leaky-type=downstream ! jpegdec ! ",
             in->opt.appsrc_max_bytes);
    break;
  case LG_INGEST_KIND_WHIP: return NULL;
  }
  snprintf(desc, sizeof(desc),
           "%s videoconvert name=conv ! videoscale ! videorate skip-to-first=true ! "
           "video/x-raw,format=RGB,width=%d,height=%d,framerate=%d/%d,pixel-aspect-ratio=1/1 ! "
           "appsink name=sink max-buffers=2 drop=true sync=%s",
           head, in->width, in->height, in->fps_n, in->fps_d,
           in->kind == LG_INGEST_KIND_FILE ? "true" : "false");
  GError *gerr = NULL;
  GstElement *p = gst_parse_launch(desc, &gerr);
  if (!p || gerr) {
    LG_ERR(MOD, "cannot build pipeline `%s`: %s", desc, gerr ? gerr->message : "?");
    if (gerr) g_error_free(gerr);
    if (p) gst_object_unref(p);
    return NULL;
  }
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  GstAppSinkCallbacks cbs = {0};
  cbs.new_sample = on_new_sample;
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, in, NULL);
  gst_object_unref(sink);
  if (dynamic) {
    GstElement *dyn = gst_bin_get_by_name(GST_BIN(p), "dyn");
    GstElement *conv = gst_bin_get_by_name(GST_BIN(p), "conv");
    g_signal_connect(dyn, "pad-added", G_CALLBACK(on_pad_added), conv);
    if (in->kind == LG_INGEST_KIND_FILE) {
      gchar *uri = gst_filename_to_uri(in->arg, NULL);
      g_object_set(dyn, "uri", uri, NULL);
      g_free(uri);
    } else if (in->kind == LG_INGEST_KIND_URI) {
      GError *uerr = NULL;
      GstElement *usrc = gst_element_make_from_uri(GST_URI_SRC, in->arg, "netsrc", &uerr);
      GstElement *first = gst_bin_get_by_name(GST_BIN(p), "flv"); /* flvdemux or NULL */
      bool linked =
          usrc && gst_bin_add(GST_BIN(p), usrc) && gst_element_link(usrc, first ? first : dyn);
      if (first) gst_object_unref(first);
      if (!linked) {
        LG_ERR(MOD, "no GStreamer source for %s: %s", in->arg, uerr ? uerr->message : "?");
        if (uerr) g_error_free(uerr);
        gst_object_unref(conv);
        gst_object_unref(dyn);
        gst_object_unref(p);
        return NULL;
      }
      if (uerr) g_error_free(uerr);
    }
    gst_object_unref(conv); /* the pipeline keeps it alive as long as dyn can emit */
    gst_object_unref(dyn);
  }
  GstElement *flv = gst_bin_get_by_name(GST_BIN(p), "flv");
  if (flv) {
    g_signal_connect(flv, "pad-added", G_CALLBACK(on_flv_pad), p);
    gst_object_unref(flv);
  }
  GstElement *src = gst_bin_get_by_name(GST_BIN(p), "src");
  if (src && in->kind == LG_INGEST_KIND_V4L2) {
    g_object_set(src, "device", in->arg, NULL);
  }
  pthread_mutex_lock(&in->mu);
  if (in->appsrc) gst_object_unref(in->appsrc);
  in->appsrc = NULL;
  if (src && (in->kind == LG_INGEST_KIND_WS || in->kind == LG_INGEST_KIND_RTMP_LISTEN))
    in->appsrc = gst_object_ref(src);
  in->got_frame = false;
  pthread_mutex_unlock(&in->mu);
  if (src) gst_object_unref(src);
  return p;
}

static void teardown(lg_ingest *in, GstElement **pp) {
  atomic_store(&in->reader_stop, true);
  if (*pp) gst_element_set_state(*pp, GST_STATE_NULL); /* unblocks appsrc pushes */
  if (in->reader_started) {
    pthread_join(in->reader, NULL);
    in->reader_started = false;
  }
  pthread_mutex_lock(&in->mu);
  if (in->appsrc) gst_object_unref(in->appsrc);
  in->appsrc = NULL;
  pthread_mutex_unlock(&in->mu);
  if (*pp) gst_object_unref(*pp);
  *pp = NULL;
}

/* Sleeps up to s seconds unless stopped; returns true when stopped. */
static bool backoff_sleep(lg_ingest *in, double s) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double whole = floor(s);
  ts.tv_sec += (time_t)whole;
  ts.tv_nsec += (long)((s - whole) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&in->mu);
  while (!atomic_load(&in->stop)) {
    if (pthread_cond_timedwait(&in->cv, &in->mu, &ts) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&in->mu);
  return atomic_load(&in->stop);
}

static void *supervisor_main(void *user) {
  lg_ingest *in = user;
  GstElement *p = NULL;
  double backoff = in->opt.reconnect_min_s;
  int attempts = 0;
  while (!atomic_load(&in->stop)) {
    char why[256] = "";
    bool ended = false; /* file EOS: session over */
    p = build_pipeline(in);
    if (!p) {
      snprintf(why, sizeof(why), "pipeline could not be built");
      if (!is_live(in->kind)) ended = true;
      goto lost;
    }
    set_state(in,
              (in->kind == LG_INGEST_KIND_RTMP_LISTEN || in->kind == LG_INGEST_KIND_WS)
                  ? LG_INGEST_STATE_WAITING
                  : LG_INGEST_STATE_STARTING,
              NULL);
    if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
      snprintf(why, sizeof(why), "pipeline refused to start");
      /* the bus usually has the reason */
    }
    if (in->kind == LG_INGEST_KIND_RTMP_LISTEN) {
      atomic_store(&in->reader_stop, false);
      if (pthread_create(&in->reader, NULL, rtmp_reader_main, in) == 0) in->reader_started = true;
    }
    GstBus *bus = gst_element_get_bus(p);
    while (!atomic_load(&in->stop)) {
      GstMessage *m = gst_bus_timed_pop_filtered(
          bus, 100 * GST_MSECOND, GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_WARNING);
      pthread_mutex_lock(&in->mu);
      if (in->got_frame) { /* frames flow: the next loss starts the backoff again */
        backoff = in->opt.reconnect_min_s;
        attempts = 0;
      }
      pthread_mutex_unlock(&in->mu);
      if (!m) continue;
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR || GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING) {
        GError *e = NULL;
        gchar *dbg = NULL;
        bool error = GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR;
        if (error)
          gst_message_parse_error(m, &e, &dbg);
        else
          gst_message_parse_warning(m, &e, &dbg);
        LG_WARN(MOD, "%s from %s: %s", error ? "error" : "warning", GST_OBJECT_NAME(m->src),
                e ? e->message : "?");
        if (error) snprintf(why, sizeof(why), "%s", e ? e->message : "pipeline error");
        if (e) g_error_free(e);
        g_free(dbg);
        gst_message_unref(m);
        if (error) break;
        continue;
      }
      /* EOS */
      gst_message_unref(m);
      if (!is_live(in->kind)) {
        ended = true;
        snprintf(why, sizeof(why), "end of file");
      } else {
        snprintf(why, sizeof(why), "input ended");
      }
      break;
    }
    gst_object_unref(bus);
  lost:
    teardown(in, &p);
    if (atomic_load(&in->stop)) break;
    if (ended || !is_live(in->kind)) { /* a file's end or error ends the session */
      bool eos = ended && strcmp(why, "end of file") == 0;
      LG_INFO(MOD, "%s: %s; closing the ring", in->arg, why);
      set_state(in, eos ? LG_INGEST_STATE_EOS : LG_INGEST_STATE_FAILED, eos ? NULL : why);
      lg_frame_ring_close(in->ring);
      break;
    }
    if (in->opt.max_reconnects >= 0 && attempts >= in->opt.max_reconnects) {
      LG_ERR(MOD, "input lost (%s), giving up after %d reconnects", why, attempts);
      set_state(in, LG_INGEST_STATE_FAILED, why);
      lg_frame_ring_close(in->ring);
      break;
    }
    /* A publisher leaving an rtmp-listen endpoint is normal: listen again at once. */
    bool publisher_left = in->kind == LG_INGEST_KIND_RTMP_LISTEN && strcmp(why, "input ended") == 0;
    double wait = publisher_left ? 0.05 : backoff;
    LG_WARN(MOD, "input lost (%s); reconnecting in %.2f s", why, wait);
    set_state(in, LG_INGEST_STATE_RECONNECTING, why);
    pthread_mutex_lock(&in->mu);
    in->st.reconnects++;
    pthread_mutex_unlock(&in->mu);
    if (!publisher_left) {
      attempts++;
      backoff = fmin(backoff * 2, in->opt.reconnect_max_s);
    }
    if (backoff_sleep(in, wait)) break;
  }
  return NULL;
}

lg_ingest *lg_ingest_new(const char *uri, int width, int height, double fps, lg_frame_ring *ring,
                         const lg_ingest_options *opt) {
  lg_ingest *in = NULL;
  if (!gst_is_initialized()) gst_init(NULL, NULL);
  if (!ring || width != lg_frame_ring_width(ring) || height != lg_frame_ring_height(ring) ||
      !(fps > 0 && fps <= 240)) {
    LG_ERR(MOD, "bad ingest geometry %dx%d @ %g fps for the ring", width, height, fps);
    return NULL;
  }
  in = calloc(1, sizeof(*in));
  if (!in) return NULL;
  if (parse_uri(uri, &in->kind, in->arg, sizeof(in->arg)) < 0) {
    LG_ERR(MOD,
           "unknown or invalid input URI `%s` (test:, file:, v4l2:, rtmp://, srt://, "
           "rtmp-listen:PORT[/APP/KEY], ws, whip)",
           uri ? uri : "(null)");
    free(in);
    return NULL;
  }
  if (opt)
    in->opt = *opt;
  else
    lg_ingest_options_default(&in->opt);
  if (in->opt.reconnect_min_s <= 0) in->opt.reconnect_min_s = 0.1;
  if (in->opt.reconnect_max_s < in->opt.reconnect_min_s)
    in->opt.reconnect_max_s = in->opt.reconnect_min_s;
  if (in->opt.appsrc_max_bytes <= 0) in->opt.appsrc_max_bytes = 4 << 20;
  in->width = width;
  in->height = height;
  gst_util_double_to_fraction(fps, &in->fps_n, &in->fps_d);
  in->ring = ring;
  in->st.kind = in->kind;
  pthread_mutex_init(&in->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&in->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (in->kind == LG_INGEST_KIND_WHIP) {
    lg_frame_ring_stats rs; /* streaming/webrtc.c pushes into the ring; count from here on */
    lg_frame_ring_get_stats(ring, &rs);
    in->whip_pushed = rs.pushed;
    in->st.state = LG_INGEST_STATE_WAITING;
    return in;
  }
  if (in->kind == LG_INGEST_KIND_FILE) {
    FILE *f = fopen(in->arg, "rb");
    if (!f) {
      LG_ERR(MOD, "input file %s: %s", in->arg, strerror(errno));
      goto fail;
    }
    fclose(f);
  }
  if (pthread_create(&in->supervisor, NULL, supervisor_main, in) != 0) {
    LG_ERR(MOD, "cannot start the ingest thread");
    goto fail;
  }
  in->supervisor_started = true;
  return in;
fail:
  pthread_cond_destroy(&in->cv);
  pthread_mutex_destroy(&in->mu);
  free(in);
  return NULL;
}

void lg_ingest_free(lg_ingest **pin) {
  if (!pin || !*pin) return;
  lg_ingest *in = *pin;
  pthread_mutex_lock(&in->mu);
  atomic_store(&in->stop, true);
  pthread_cond_broadcast(&in->cv);
  pthread_mutex_unlock(&in->mu);
  if (in->supervisor_started) pthread_join(in->supervisor, NULL);
  if (in->appsrc) gst_object_unref(in->appsrc);
  pthread_cond_destroy(&in->cv);
  pthread_mutex_destroy(&in->mu);
  free(in);
  *pin = NULL;
}

int lg_ingest_push_jpeg(lg_ingest *in, const uint8_t *data, size_t len) {
  if (!in || !data) return LG_EINVAL;
  if (in->kind != LG_INGEST_KIND_WS) return LG_ENOTSUP;
  /* A JPEG starts with SOI (FF D8) and ends with EOI (FF D9). */
  if (len < 4 || len > JPEG_MAX_BYTES || data[0] != 0xFF || data[1] != 0xD8 ||
      data[len - 2] != 0xFF || data[len - 1] != 0xD9) {
    LG_WARN(MOD, "ws frame of %zu bytes is not a JPEG image; ignored", len);
    return LG_EFORMAT;
  }
  GstElement *src = NULL;
  pthread_mutex_lock(&in->mu);
  if (in->appsrc) src = gst_object_ref(in->appsrc);
  pthread_mutex_unlock(&in->mu);
  if (!src) return LG_EAGAIN;
  GstBuffer *b = gst_buffer_new_memdup(data, len);
  GstFlowReturn fr = gst_app_src_push_buffer(GST_APP_SRC(src), b); /* takes b */
  gst_object_unref(src);
  return fr == GST_FLOW_OK ? 0 : LG_EAGAIN;
}

void lg_ingest_get_status(lg_ingest *in, lg_ingest_status *st) {
  if (!in || !st) return;
  pthread_mutex_lock(&in->mu);
  if (in->kind == LG_INGEST_KIND_WHIP) { /* webrtc.c pushes: judge by the ring's counters */
    lg_frame_ring_stats rs;
    lg_frame_ring_get_stats(in->ring, &rs);
    double now = lg_now();
    if (rs.pushed != in->whip_pushed) {
      in->st.frames += rs.pushed - in->whip_pushed;
      in->whip_pushed = rs.pushed;
      in->st.last_frame_t = now;
    }
    in->st.state = in->st.last_frame_t > 0 && now - in->st.last_frame_t < 2.0
                       ? LG_INGEST_STATE_RUNNING
                       : LG_INGEST_STATE_WAITING;
  }
  *st = in->st;
  pthread_mutex_unlock(&in->mu);
}

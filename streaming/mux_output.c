/* mux_output.c: a packet ring reader thread that muxes H.264 access units into a libavformat
 * output, reopening it with backoff when allowed (see mux_output.h).
 * Threads: one output thread per lg_mux_output runs everything below except _new, _free and
 * _get_status; `mu` guards the status. */
#include "mux_output.h"

#include "lg_base.h"

#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lg_mux_output {
  char url[1024], format[32], movflags[128];
  const char *tag;
  lg_mux_output_options opt;
  lg_packet_ring *ring; /* borrowed */
  lg_packet_reader rd;  /* positioned by _new: output starts at the next keyframe after it */
  pthread_t thread;
  atomic_bool stop;  /* finish: write the trailer and leave */
  atomic_bool abort; /* interrupt blocking network I/O now */
  pthread_mutex_t mu;
  lg_mux_output_status st;
};

const char *lg_mux_state_name(lg_mux_state s) {
  switch (s) {
  case LG_MUX_STATE_WAITING: return "waiting";
  case LG_MUX_STATE_RUNNING: return "running";
  case LG_MUX_STATE_RECONNECTING: return "reconnecting";
  case LG_MUX_STATE_DONE: return "done";
  case LG_MUX_STATE_FAILED: return "failed";
  }
  return "?";
}

/* Next NAL unit in [p, end): returns its first byte after the start code (NULL if none) and
 * sets *nal_end to where it stops (the next start code or end). */
static const uint8_t *next_nal(const uint8_t *p, const uint8_t *end, const uint8_t **nal_end) {
  while (p + 3 <= end && !(p[0] == 0 && p[1] == 0 && p[2] == 1))
    p++;
  if (p + 3 > end) return NULL;
  const uint8_t *nal = p + 3;
  const uint8_t *q = nal;
  while (q + 3 <= end &&
         !(q[0] == 0 && q[1] == 0 && (q[2] == 1 || (q[2] == 0 && q + 4 <= end && q[3] == 1))))
    q++;
  *nal_end = q + 3 <= end ? q : end;
  return nal;
}

int lg_h264_extract_parameter_sets(const uint8_t *au, size_t size, uint8_t *out, size_t cap) {
  const uint8_t *end = au + size, *p = au, *nal_end = NULL, *nal;
  size_t n = 0;
  int have_sps = 0, have_pps = 0;
  if (!au) return 0;
  while ((nal = next_nal(p, end, &nal_end)) != NULL) {
    if (nal < nal_end) {
      int type = nal[0] & 0x1f;
      if (type == 7 || type == 8) {
        size_t len = (size_t)(nal_end - nal);
        while (len > 0 && nal[len - 1] == 0)
          len--; /* trailing zero bytes belong to no NAL */
        if (n + 4 + len > cap) return LG_ERANGE;
        memcpy(out + n, "\0\0\0\1", 4);
        memcpy(out + n + 4, nal, len);
        n += 4 + len;
        have_sps |= type == 7;
        have_pps |= type == 8;
      }
    }
    p = nal_end;
  }
  return have_sps && have_pps ? (int)n : 0;
}

static void set_error(lg_mux_output *m, lg_mux_state s, const char *what, int averr) {
  char msg[128] = "";
  if (averr) av_strerror(averr, msg, sizeof(msg));
  pthread_mutex_lock(&m->mu);
  m->st.state = s;
  if (what)
    snprintf(m->st.last_error, sizeof(m->st.last_error), "%s%s%s", what, averr ? ": " : "", msg);
  pthread_mutex_unlock(&m->mu);
}

static int interrupt_cb(void *user) {
  lg_mux_output *m = user;
  return atomic_load(&m->abort);
}

static void close_output(AVFormatContext **poc, int write_trailer) {
  AVFormatContext *oc = *poc;
  if (!oc) return;
  if (write_trailer) av_write_trailer(oc);
  if (oc->pb && !(oc->oformat->flags & AVFMT_NOFILE)) avio_closep(&oc->pb);
  avformat_free_context(oc);
  *poc = NULL;
}

/* Opens the output and writes its header. 0 or an AVERROR (logged). */
static int open_output(lg_mux_output *m, const lg_stream_info *info, const uint8_t *key_au,
                       size_t key_size, AVFormatContext **poc) {
  AVFormatContext *oc = NULL;
  AVDictionary *io_opts = NULL, *hdr_opts = NULL;
  uint8_t ps[LG_EXTRADATA_MAX];
  const uint8_t *extra = info->extradata;
  int extra_size = (int)info->extradata_size;
  int rc;
  if (extra_size <= 0 || extra_size > LG_EXTRADATA_MAX) {
    extra_size = lg_h264_extract_parameter_sets(key_au, key_size, ps, sizeof(ps));
    extra = ps;
  }
  if (extra_size <= 0) {
    LG_ERR(m->tag, "no SPS/PPS in the stream info or the keyframe; cannot write a header");
    return AVERROR_INVALIDDATA;
  }
  rc = avformat_alloc_output_context2(&oc, NULL, m->format, m->url);
  if (rc < 0 || !oc) goto fail;
  AVStream *st = avformat_new_stream(oc, NULL);
  if (!st) {
    rc = AVERROR(ENOMEM);
    goto fail;
  }
  st->time_base = (AVRational){1, 90000};
  if (info->fps_num > 0 && info->fps_den > 0)
    st->avg_frame_rate = (AVRational){info->fps_num, info->fps_den};
  AVCodecParameters *par = st->codecpar;
  par->codec_type = AVMEDIA_TYPE_VIDEO;
  par->codec_id = AV_CODEC_ID_H264;
  par->width = info->width;
  par->height = info->height;
  par->extradata = av_mallocz((size_t)extra_size + AV_INPUT_BUFFER_PADDING_SIZE);
  if (!par->extradata) {
    rc = AVERROR(ENOMEM);
    goto fail;
  }
  memcpy(par->extradata, extra, (size_t)extra_size);
  par->extradata_size = extra_size;
  if (!(oc->oformat->flags & AVFMT_NOFILE)) {
    char us[32];
    snprintf(us, sizeof(us), "%lld", (long long)(m->opt.io_timeout_s * 1e6));
    if (m->opt.reconnect) av_dict_set(&io_opts, "rw_timeout", us, 0);
    AVIOInterruptCB cb = {interrupt_cb, m};
    rc = avio_open2(&oc->pb, m->url, AVIO_FLAG_WRITE, &cb, &io_opts);
    if (rc < 0) goto fail;
  }
  if (m->movflags[0]) av_dict_set(&hdr_opts, "movflags", m->movflags, 0);
  if (strcmp(m->format, "flv") == 0) av_dict_set(&hdr_opts, "flvflags", "no_duration_filesize", 0);
  oc->flush_packets = 1; /* fragments reach the disk/socket at once: playable while written */
  rc = avformat_write_header(oc, &hdr_opts);
  if (rc < 0) goto fail;
  av_dict_free(&io_opts);
  av_dict_free(&hdr_opts);
  *poc = oc;
  return 0;
fail:
  if (rc >= 0) rc = AVERROR_UNKNOWN;
  {
    char msg[128];
    av_strerror(rc, msg, sizeof(msg));
    LG_WARN(m->tag, "cannot open %s (%s): %s", m->url, m->format, msg);
  }
  av_dict_free(&io_opts);
  av_dict_free(&hdr_opts);
  close_output(&oc, 0);
  return rc;
}

static void *output_main(void *user) {
  lg_mux_output *m = user;
  lg_packet_reader rd = m->rd;
  lg_packet_meta meta;
  lg_stream_info info;
  AVFormatContext *oc = NULL;
  AVPacket *pkt = av_packet_alloc();
  size_t cap = 1 << 20;
  uint8_t *buf = malloc(cap);
  double backoff = m->opt.reconnect_min_s, next_try = 0;
  int64_t base_us = 0, last_pts = -1;
  bool eof = false;
  if (!buf || !pkt) {
    set_error(m, LG_MUX_STATE_FAILED, "out of memory", 0);
    goto done;
  }
  while (!atomic_load(&m->stop)) {
    int rc = lg_packet_ring_wait_read(m->ring, &rd, buf, cap, &meta, 100);
    if (rc == LG_EAGAIN) continue;
    if (rc == LG_EEOF) {
      eof = true;
      break;
    }
    if (rc == LG_ERANGE) { /* grows to the largest access unit once, then never again */
      uint8_t *nb = meta.size <= LG_PACKET_MAX_BYTES ? realloc(buf, meta.size) : NULL;
      if (!nb) {
        set_error(m, LG_MUX_STATE_FAILED, "out of memory for an access unit", 0);
        break;
      }
      buf = nb;
      cap = meta.size;
      continue;
    }
    if (rc < 0) {
      set_error(m, LG_MUX_STATE_FAILED, "packet ring read failed", 0);
      break;
    }
    pthread_mutex_lock(&m->mu);
    m->st.skipped += meta.skipped;
    pthread_mutex_unlock(&m->mu);
    if (!oc) {
      if (!meta.key || lg_now() < next_try) continue; /* start on a keyframe after backoff */
      if (lg_packet_ring_get_info(m->ring, &info) == 0 || info.width <= 0 || info.height <= 0)
        continue; /* the encoder has not described the stream yet */
      int orc = open_output(m, &info, buf, meta.size, &oc);
      if (orc < 0) {
        pthread_mutex_lock(&m->mu);
        m->st.failures++;
        pthread_mutex_unlock(&m->mu);
        if (!m->opt.reconnect) {
          set_error(m, LG_MUX_STATE_FAILED, "cannot open output", orc);
          break;
        }
        set_error(m, LG_MUX_STATE_RECONNECTING, "cannot open output", orc);
        LG_WARN(m->tag, "retrying %s in %.2f s", m->url, backoff);
        next_try = lg_now() + backoff;
        backoff = fmin(backoff * 2, m->opt.reconnect_max_s);
        lg_packet_reader_init(m->ring, &rd, 0); /* resume at a fresh keyframe */
        continue;
      }
      LG_INFO(m->tag, "writing %s (%dx%d)", m->url, info.width, info.height);
      pthread_mutex_lock(&m->mu);
      m->st.connects++;
      m->st.state = LG_MUX_STATE_RUNNING;
      pthread_mutex_unlock(&m->mu);
      base_us = meta.pts_us;
      last_pts = -1;
    }
    AVStream *st = oc->streams[0];
    int64_t pts = av_rescale_q(meta.pts_us - base_us, (AVRational){1, 1000000}, st->time_base);
    if (pts <= last_pts) pts = last_pts + 1; /* muxers need strictly increasing dts */
    last_pts = pts;
    av_packet_unref(pkt);
    pkt->data = buf; /* not refcounted: av_write_frame does not keep it */
    pkt->size = (int)meta.size;
    pkt->pts = pkt->dts = pts;
    pkt->stream_index = 0;
    pkt->flags = meta.key ? AV_PKT_FLAG_KEY : 0;
    rc = av_write_frame(oc, pkt);
    pkt->data = NULL;
    pkt->size = 0;
    if (rc < 0) {
      pthread_mutex_lock(&m->mu);
      m->st.failures++;
      pthread_mutex_unlock(&m->mu);
      close_output(&oc, 0);
      if (!m->opt.reconnect) {
        set_error(m, LG_MUX_STATE_FAILED, "write failed", rc);
        LG_ERR(m->tag, "%s: %s", m->url, m->st.last_error);
        break;
      }
      set_error(m, LG_MUX_STATE_RECONNECTING, "write failed", rc);
      LG_WARN(m->tag, "%s: %s; reconnecting in %.2f s", m->url, m->st.last_error, backoff);
      next_try = lg_now() + backoff;
      backoff = fmin(backoff * 2, m->opt.reconnect_max_s);
      lg_packet_reader_init(m->ring, &rd, 0);
      continue;
    }
    backoff = m->opt.reconnect_min_s; /* a working connection resets the backoff */
    pthread_mutex_lock(&m->mu);
    m->st.packets++;
    m->st.bytes += meta.size;
    pthread_mutex_unlock(&m->mu);
  }
done:
  close_output(&oc, 1);
  if (eof) {
    pthread_mutex_lock(&m->mu);
    if (m->st.state != LG_MUX_STATE_FAILED) m->st.state = LG_MUX_STATE_DONE;
    pthread_mutex_unlock(&m->mu);
    LG_INFO(m->tag, "%s finished: end of stream", m->url);
  }
  av_packet_free(&pkt);
  free(buf);
  return NULL;
}

lg_mux_output *lg_mux_output_new(lg_packet_ring *ring, const lg_mux_output_options *opt) {
  const char *tag = opt && opt->tag ? opt->tag : "mux";
  if (!ring || !opt || !opt->url || !opt->url[0] || !opt->format ||
      strlen(opt->url) >= sizeof(((lg_mux_output *)0)->url) || strlen(opt->format) >= 32 ||
      (opt->movflags && strlen(opt->movflags) >= 128)) {
    LG_ERR(tag, "bad output options");
    return NULL;
  }
  if (!av_guess_format(opt->format, NULL, NULL)) {
    LG_ERR(tag, "libavformat has no muxer `%s`", opt->format);
    return NULL;
  }
  lg_mux_output *m = calloc(1, sizeof(*m));
  if (!m) return NULL;
  snprintf(m->url, sizeof(m->url), "%s", opt->url);
  snprintf(m->format, sizeof(m->format), "%s", opt->format);
  if (opt->movflags) snprintf(m->movflags, sizeof(m->movflags), "%s", opt->movflags);
  m->tag = tag;
  m->opt = *opt;
  if (!(m->opt.reconnect_min_s > 0)) m->opt.reconnect_min_s = 1.0;
  if (m->opt.reconnect_max_s < m->opt.reconnect_min_s) m->opt.reconnect_max_s = 30.0;
  if (!(m->opt.io_timeout_s > 0)) m->opt.io_timeout_s = 5.0;
  m->ring = ring;
  lg_packet_reader_init(ring, &m->rd, 0);
  pthread_mutex_init(&m->mu, NULL);
  if (pthread_create(&m->thread, NULL, output_main, m) != 0) {
    LG_ERR(tag, "cannot start the output thread");
    pthread_mutex_destroy(&m->mu);
    free(m);
    return NULL;
  }
  return m;
}

void lg_mux_output_free(lg_mux_output **pm) {
  if (!pm || !*pm) return;
  lg_mux_output *m = *pm;
  atomic_store(&m->stop, true);
  /* Give the thread a moment to finish the file cleanly, then interrupt network I/O. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 1;
  if (pthread_timedjoin_np(m->thread, NULL, &ts) != 0) {
    atomic_store(&m->abort, true);
    pthread_join(m->thread, NULL);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
  *pm = NULL;
}

void lg_mux_output_get_status(lg_mux_output *m, lg_mux_output_status *st) {
  if (!m || !st) return;
  pthread_mutex_lock(&m->mu);
  *st = m->st;
  pthread_mutex_unlock(&m->mu);
}

/* streaming_test_enc.h: a live H.264 source for the output tests (RTMP push, recorder,
 * WebRTC): a thread draws a moving pattern, encodes it with the service's own encoder
 * (streaming/encoder.h, libx264) and writes the access units into a packet ring at the
 * nominal frame rate, publishing the stream info at the first keyframe, as serve.c does.
 * Header-only; used by the test that includes it. */
#ifndef LG_STREAMING_TEST_ENC_H
#define LG_STREAMING_TEST_ENC_H

#include "encoder.h"
#include "lg_base.h"
#include "packet_ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct st_source {
  lg_packet_ring *ring; /* borrowed */
  int width, height, fps, keyint;
  int frames;        /* how many to produce */
  bool close_at_end; /* close the ring after the last frame */
  atomic_bool stop;  /* set to end early */
  /* results */
  atomic_int written; /* access units written */
  atomic_int keyframes;
  double max_write_s; /* slowest lg_packet_ring_write: the encoder must never block */
  int err;
  pthread_t th;
  lg_encoder *enc;
  bool info_set;
} st_source;

static inline int st_source_packet(void *user, const uint8_t *data, size_t size, int64_t pts_us,
                                   bool key) {
  st_source *s = user;
  if (key && !s->info_set) {
    lg_stream_info info;
    memset(&info, 0, sizeof(info));
    info.width = s->width;
    info.height = s->height;
    info.fps_num = s->fps;
    info.fps_den = 1;
    size_t hn = 0;
    const uint8_t *h = lg_encoder_headers(s->enc, &hn);
    if (h && hn <= sizeof(info.extradata)) {
      memcpy(info.extradata, h, hn);
      info.extradata_size = hn;
    }
    snprintf(info.codec, sizeof(info.codec), "%s", lg_encoder_codec_string(s->enc));
    info.version = 1;
    lg_packet_ring_set_info(s->ring, &info);
    s->info_set = true;
  }
  double t0 = lg_now();
  int rc = lg_packet_ring_write(s->ring, data, size, pts_us, key);
  double dt = lg_now() - t0;
  if (dt > s->max_write_s) s->max_write_s = dt;
  if (rc == 0) {
    atomic_fetch_add(&s->written, 1);
    if (key) atomic_fetch_add(&s->keyframes, 1);
  }
  return rc;
}

static inline void *st_source_main(void *user) {
  st_source *s = user;
  size_t stride = (size_t)s->width * 3;
  uint8_t *rgb = malloc(stride * (size_t)s->height);
  double t0 = lg_now();
  for (int i = 0; i < s->frames && rgb && !atomic_load(&s->stop); i++) {
    for (int y = 0; y < s->height; y++)
      for (int x = 0; x < s->width; x++) {
        uint8_t *p = rgb + (size_t)y * stride + (size_t)x * 3;
        p[0] = (uint8_t)(x * 2 + i * 4);
        p[1] = (uint8_t)(y * 2);
        p[2] = (uint8_t)((x + y + i * 8) & 0xff);
      }
    int64_t pts_us = (int64_t)i * 1000000 / s->fps;
    int rc = lg_encoder_encode(s->enc, rgb, stride, pts_us, st_source_packet, s);
    if (rc < 0) {
      s->err = rc;
      break;
    }
    double wake = t0 + (double)(i + 1) / s->fps; /* real time, like a live encoder */
    double now = lg_now();
    if (wake > now) usleep((useconds_t)((wake - now) * 1e6));
  }
  if (s->err == 0) lg_encoder_encode(s->enc, NULL, 0, 0, st_source_packet, s);
  if (s->close_at_end) lg_packet_ring_close(s->ring);
  free(rgb);
  return NULL;
}

/* Opens the encoder and starts the producer thread. 0 or -1. */
static inline int st_source_start(st_source *s) {
  lg_encoder_opts o;
  memset(&o, 0, sizeof(o));
  snprintf(o.codec, sizeof(o.codec), "libx264");
  o.width = s->width;
  o.height = s->height;
  o.fps_num = s->fps;
  o.fps_den = 1;
  o.bitrate_kbps = 300;
  o.keyint = s->keyint;
  snprintf(o.preset, sizeof(o.preset), "ultrafast");
  o.threads = 1;
  char err[256];
  s->enc = lg_encoder_new(&o, err, sizeof(err));
  if (!s->enc) {
    fprintf(stderr, "encoder: %s\n", err);
    return -1;
  }
  return pthread_create(&s->th, NULL, st_source_main, s) == 0 ? 0 : -1;
}

static inline void st_source_join(st_source *s) {
  pthread_join(s->th, NULL);
  lg_encoder_free(&s->enc);
}

#endif

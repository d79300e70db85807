/* h264_check.h: a small libavcodec H.264 decoder wrapper for tests (test_encoder.c,
 * test_serve_e2e.c): feed Annex B access units, count decoded frames, their size, and the
 * mean luma of the last one. Header-only (static functions). One thread per decoder. */
#ifndef LG_H264_CHECK_H
#define LG_H264_CHECK_H

#include <libavcodec/avcodec.h>

#include <stdint.h>
#include <string.h>

typedef struct h264_dec {
  AVCodecContext *ctx;
  AVPacket *pkt;
  AVFrame *frame;
  int frames, width, height, errors;
  double last_mean_y;
} h264_dec;

static int h264_dec_open(h264_dec *d) {
  memset(d, 0, sizeof *d);
  const AVCodec *c = avcodec_find_decoder(AV_CODEC_ID_H264);
  if (!c) return -1;
  d->ctx = avcodec_alloc_context3(c);
  d->pkt = av_packet_alloc();
  d->frame = av_frame_alloc();
  if (!d->ctx || !d->pkt || !d->frame) return -1;
  d->ctx->thread_count = 1; /* frame threading would delay output */
  return avcodec_open2(d->ctx, c, NULL) < 0 ? -1 : 0;
}

static void h264_dec_drain(h264_dec *d) {
  while (avcodec_receive_frame(d->ctx, d->frame) == 0) {
    d->frames++;
    d->width = d->frame->width;
    d->height = d->frame->height;
    double s = 0;
    for (int y = 0; y < d->frame->height; y++)
      for (int x = 0; x < d->frame->width; x++)
        s += d->frame->data[0][y * d->frame->linesize[0] + x];
    d->last_mean_y = s / ((double)d->frame->width * d->frame->height);
    av_frame_unref(d->frame);
  }
}

/* Decodes one access unit (NULL = flush). Returns 0 or -1 on a decoder error. */
static int h264_dec_feed(h264_dec *d, const uint8_t *data, size_t size) {
  int rc;
  if (data) {
    if (av_new_packet(d->pkt, (int)size) < 0) return -1;
    memcpy(d->pkt->data, data, size);
    rc = avcodec_send_packet(d->ctx, d->pkt);
    av_packet_unref(d->pkt);
  } else {
    rc = avcodec_send_packet(d->ctx, NULL);
  }
  if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_EOF) {
    d->errors++;
    return -1;
  }
  h264_dec_drain(d);
  return 0;
}

static void h264_dec_close(h264_dec *d) {
  avcodec_free_context(&d->ctx);
  av_packet_free(&d->pkt);
  av_frame_free(&d->frame);
}

#endif

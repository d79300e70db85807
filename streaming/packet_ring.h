/* packet_ring.h: encoded access units (H.264 Annex B) between one encoder thread (the only
 * writer) and any number of readers (the lws thread for WebSocket viewers, WebRTC, RTMP push,
 * the recorder), each reader with its own tail.
 *
 * Rules: the writer never waits for a reader. A reader that falls more than the ring's
 * capacity (or its own max_lag) behind skips to the next keyframe, so it never sees a
 * P-frame whose reference it missed. A new reader starts at the next keyframe.
 *
 * Threads: lg_packet_ring_write / _set_info / _close from the writer thread; readers call
 * _read / _wait / _get_info from their own thread with their own lg_packet_reader (a reader
 * struct is used by one thread only). A mutex guards the slots; it is held only for a copy.
 */
#ifndef LG_PACKET_RING_H
#define LG_PACKET_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_PACKET_MAX_BYTES (8u << 20) /* larger access units are refused */
#define LG_CODEC_STR_MAX 32
#define LG_EXTRADATA_MAX 512

/* What a reader needs to set up a decoder or muxer. Set by the writer before (or with) the
 * first keyframe; version increments on every change. */
typedef struct lg_stream_info {
  int width, height;
  int fps_num, fps_den;
  char codec[LG_CODEC_STR_MAX];        /* "avc1.PPCCLL" from the SPS, "" until known */
  uint8_t extradata[LG_EXTRADATA_MAX]; /* SPS+PPS, Annex B */
  size_t extradata_size;
  uint32_t version; /* 0 = not set yet */
} lg_stream_info;

/* Metadata of one packet as returned to a reader. */
typedef struct lg_packet_meta {
  uint64_t seq;     /* 0,1,2,... in write order */
  int64_t pts_us;   /* presentation time in microseconds */
  bool key;         /* IDR access unit with SPS/PPS */
  size_t size;      /* bytes of the access unit */
  uint64_t skipped; /* packets this reader lost just before this one (fell behind) */
} lg_packet_meta;

/* One reader's position. Plain struct owned by the reader; init with lg_packet_reader_init. */
typedef struct lg_packet_reader {
  uint64_t next;    /* seq of the next packet to return */
  bool need_key;    /* waiting for a keyframe */
  uint32_t max_lag; /* skip to the next keyframe when more than this many packets behind;
                       0 = only when overrun */
  uint64_t skipped_total;
} lg_packet_reader;

typedef struct lg_packet_ring lg_packet_ring;

/* n_slots: packets held (>= 2). NULL on bad arguments or no memory. */
lg_packet_ring *lg_packet_ring_new(size_t n_slots);
void lg_packet_ring_free(lg_packet_ring **r);

/* Writer: copies size bytes of data into the oldest slot (evicting it). The slot's buffer
 * grows to the largest packet seen, so steady state allocates nothing. Returns 0, LG_EINVAL
 * (size 0 or > LG_PACKET_MAX_BYTES, or ring closed) or LG_ENOMEM. Wakes waiting readers. */
int lg_packet_ring_write(lg_packet_ring *r, const uint8_t *data, size_t size, int64_t pts_us,
                         bool key);
/* Writer: publishes the stream description (copied). */
void lg_packet_ring_set_info(lg_packet_ring *r, const lg_stream_info *info);
/* Writer: no more packets; readers get LG_EEOF once they have read everything. */
void lg_packet_ring_close(lg_packet_ring *r);

/* Any thread: copies the stream description; returns its version (0 = not set). */
uint32_t lg_packet_ring_get_info(lg_packet_ring *r, lg_stream_info *info);
/* Any thread: seq the next write will get (= packets written so far). */
uint64_t lg_packet_ring_head(lg_packet_ring *r);

/* Reader: positions rd at the next keyframe written from now on. */
void lg_packet_reader_init(lg_packet_ring *r, lg_packet_reader *rd, uint32_t max_lag);

/* Reader: copies the next packet into buf (cap bytes) and fills meta.
 * Returns 0, LG_EAGAIN (nothing new yet), LG_EEOF (closed and drained) or LG_ERANGE (cap too
 * small: meta->size says how much is needed; the reader does not advance). */
int lg_packet_ring_read(lg_packet_ring *r, lg_packet_reader *rd, uint8_t *buf, size_t cap,
                        lg_packet_meta *meta);
/* Reader: like _read but waits up to timeout_ms for a packet (LG_EAGAIN on timeout). */
int lg_packet_ring_wait_read(lg_packet_ring *r, lg_packet_reader *rd, uint8_t *buf, size_t cap,
                             lg_packet_meta *meta, int timeout_ms);
/* Reader: true when _read would not return LG_EAGAIN. Cheap; used to decide whether to ask
 * for a writable callback. */
bool lg_packet_ring_readable(lg_packet_ring *r, const lg_packet_reader *rd);

#ifdef __cplusplus
}
#endif
#endif

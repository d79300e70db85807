/* frame_ring.h: the ingest ring, a bounded queue of RGB24 frames between the GStreamer
 * streaming threads (producers) and the GPU worker (consumer).
 *
 * Frames have one fixed size set at creation; all slot buffers are allocated by
 * lg_frame_ring_new, so push and pop never allocate. Freshness beats completeness: a push
 * into a full ring overwrites the oldest queued frame and counts a drop. lg_frame_ring_close
 * marks end of stream: queued frames can still be popped, then pop returns LG_EEOF.
 *
 * Threads: every function except _new/_free may be called from any thread concurrently
 * (one mutex + one condition variable). _free must not race with any other call. */
#ifndef LG_FRAME_RING_H
#define LG_FRAME_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_frame_ring lg_frame_ring;

/* What the producer knew about a frame. */
typedef struct lg_frame_info {
  int64_t pts_ns;   /* stream timestamp (GStreamer running time or source pts), ns; -1 unknown */
  double t_arrival; /* lg_now() when the frame entered the ring, seconds (monotonic) */
  uint64_t seq;     /* 0,1,2,... in push order, counting dropped frames too */
} lg_frame_info;

typedef struct lg_frame_ring_stats {
  uint64_t pushed;  /* frames accepted by push */
  uint64_t popped;  /* frames returned by pop */
  uint64_t dropped; /* frames overwritten before anyone popped them */
  int queued;       /* frames waiting now */
  int closed;       /* 1 after lg_frame_ring_close */
} lg_frame_ring_stats;

/* A ring of `capacity` (1..1024) frames of (height, width, 3) uint8 RGB, rows packed
 * (stride width*3). NULL on bad sizes or allocation failure (logged). */
lg_frame_ring *lg_frame_ring_new(int width, int height, int capacity);
/* Frees the ring and its buffers and sets *r to NULL; accepts NULL and *r == NULL. */
void lg_frame_ring_free(lg_frame_ring **r);

int lg_frame_ring_width(const lg_frame_ring *r);
int lg_frame_ring_height(const lg_frame_ring *r);
/* Bytes of one frame: width * height * 3. */
size_t lg_frame_ring_frame_size(const lg_frame_ring *r);

/* Copies one (height, width, 3) RGB frame whose rows are `stride` bytes apart (>= width*3)
 * into the ring; the caller keeps `rgb`. A full ring drops its oldest frame. Returns 0,
 * LG_EINVAL on a bad argument, LG_EEOF if the ring is closed (the frame is discarded). */
int lg_frame_ring_push(lg_frame_ring *r, const uint8_t *rgb, size_t stride, int64_t pts_ns);

/* Waits up to timeout_s (0: do not wait, < 0: forever) for a frame and copies the oldest
 * queued one into dst (dst_size >= lg_frame_ring_frame_size, rows packed); info may be NULL.
 * Returns 0, LG_EAGAIN on timeout, LG_EEOF once closed and drained, LG_EINVAL. */
int lg_frame_ring_pop(lg_frame_ring *r, uint8_t *dst, size_t dst_size, lg_frame_info *info,
                      double timeout_s);

/* Drops every queued frame (counted as dropped), e.g. after a reset; the ring stays open. */
void lg_frame_ring_flush(lg_frame_ring *r);
/* End of stream: wakes all waiters; later pushes are refused. Idempotent. */
void lg_frame_ring_close(lg_frame_ring *r);
/* Opens a closed ring again (a new input session on the same ring); queued frames stay. */
void lg_frame_ring_reopen(lg_frame_ring *r);
void lg_frame_ring_get_stats(lg_frame_ring *r, lg_frame_ring_stats *st);

#ifdef __cplusplus
}
#endif
#endif

/* device_ring.h: the output frame ring of `serve` when frames stay on the GPU: a bounded queue
 * of preallocated U8 RGB frames in the engine backend's memory (device memory on CUDA), between
 * the GPU worker (producer) and the output encoder thread (consumer). Only slot numbers and frame
 * info move through the ring; the pixels never leave the device.
 *
 * A slot goes FREE -> (acquire) WRITING -> (publish) QUEUED -> (consume) READING -> FREE.
 * Ownership rule, which makes reuse safe without any host synchronisation: every write and every
 * read of a slot is *enqueued* on the backend's one stream. The producer enqueues its write
 * between acquire and publish; the consumer's callback enqueues its read (the NV12 kernel) and
 * returns, and only then does the slot become FREE. A later write into the slot is therefore
 * enqueued after the read (the ring's mutex orders the two host calls), and the stream runs it
 * after the read. A consumer callback that only enqueues must not touch the slot afterwards.
 *
 * Freshness beats completeness (as the host frame ring): publishing into a ring that already
 * holds max_queued frames drops the oldest queued frame, and acquiring when no slot is free
 * takes the oldest queued frame's slot; both count a drop. No call allocates after _new.
 *
 * Threads: acquire/publish/cancel/close/wait_finished from the producer, consume/finish from
 * the consumer, get_stats from any thread (one mutex, one condition variable). _new/_free on the
 * thread that owns the backend, with no other call racing. */
#ifndef LG_DEVICE_RING_H
#define LG_DEVICE_RING_H

#include "lg_backend.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_device_ring lg_device_ring;

typedef struct lg_device_frame_info {
  int64_t pts_ns; /* what the producer published */
  uint64_t seq;   /* 0,1,2,... in publish order, counting dropped frames too */
} lg_device_frame_info;

typedef struct lg_device_ring_stats {
  uint64_t published; /* frames published */
  uint64_t consumed;  /* frames handed to the consumer */
  uint64_t dropped;   /* queued frames dropped before the consumer got them */
  int queued;         /* frames waiting now */
  int writing;        /* slots held by the producer now */
  int reading;        /* slots held by the consumer now (0 or 1) */
  bool closed;
} lg_device_ring_stats;

/* capacity (2..256) frames of [1,height,width,3] U8 allocated on be (one tensor), of which at
 * most max_queued (1..capacity-1) wait for the consumer. The producer may hold up to
 * capacity - max_queued - 1 slots without ever finding the ring exhausted. NULL on bad sizes or
 * allocation failure (logged). be must outlive the ring. */
lg_device_ring *lg_device_ring_new(lg_backend *be, int width, int height, int capacity,
                                   int max_queued);
/* Frees the frames and the ring, sets *r to NULL; accepts NULL. The caller makes sure no read or
 * write of a slot is still pending on the stream (the consumer finished, the backend synced). */
void lg_device_ring_free(lg_device_ring **r);

int lg_device_ring_capacity(const lg_device_ring *r);

/* Producer: a slot to write into, and in *frame its [1,H,W,3] U8 view on the backend. A free
 * slot if there is one, else the oldest queued frame is dropped and its slot reused. Returns the
 * slot (>= 0), LG_EAGAIN when every slot is being written or read (the producer holds too many),
 * LG_EEOF once closed, LG_EINVAL. */
int lg_device_ring_acquire(lg_device_ring *r, lg_tensor *frame);
/* Producer: the write into `slot` is enqueued; queue it for the consumer with pts_ns. A full
 * queue (max_queued) drops its oldest frame first. LG_EEOF once closed (the slot is freed),
 * LG_EINVAL for a slot the producer does not hold. */
int lg_device_ring_publish(lg_device_ring *r, int slot, int64_t pts_ns);
/* Producer: gives back an acquired slot unpublished (e.g. the picture was paused). */
void lg_device_ring_cancel(lg_device_ring *r, int slot);

/* Consumer's read of one frame: frame is the slot's [1,H,W,3] U8 view, valid for the call only.
 * Enqueue the read on the backend's stream and return; the slot is reused once this returns. */
typedef int (*lg_device_ring_read_fn)(void *user, const lg_tensor *frame,
                                      const lg_device_frame_info *info);

/* Consumer: waits up to timeout_s (0: no wait, < 0: forever) for the oldest queued frame, calls
 * fn on it (outside the lock, so the producer never waits for the read), then frees the slot.
 * Returns 0 when fn ran (its result in *fn_rc, which may be NULL), LG_EAGAIN on timeout, LG_EEOF
 * once closed and drained, LG_EINVAL. */
int lg_device_ring_consume(lg_device_ring *r, lg_device_ring_read_fn fn, void *user,
                           double timeout_s, int *fn_rc);

/* Producer: end of stream. Queued frames can still be consumed, then consume returns LG_EEOF;
 * later acquires return LG_EEOF. Wakes a waiting consumer. Idempotent. */
void lg_device_ring_close(lg_device_ring *r);
/* Consumer: it will read no slot any more (after LG_EEOF, or giving up). Idempotent. */
void lg_device_ring_finish(lg_device_ring *r);
/* Producer: waits until the consumer called finish, or up to timeout_s (< 0: forever). true once
 * finished. Before freeing the ring (and the backend its reads are enqueued on). */
bool lg_device_ring_wait_finished(lg_device_ring *r, double timeout_s);

void lg_device_ring_get_stats(lg_device_ring *r, lg_device_ring_stats *st);

#ifdef __cplusplus
}
#endif
#endif

/* frame_ring.c: bounded drop-oldest ring of fixed-size RGB24 frames (see frame_ring.h).
 * Producers: GStreamer streaming threads (ingest appsink, WHIP decoder). Consumer: the GPU
 * worker. One mutex guards all state; the slot copy happens under the lock, which keeps the
 * code obviously correct and costs one memcpy of width*height*3 bytes per frame. */
#include "frame_ring.h"

#include "lg_base.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "frame_ring"

struct lg_frame_ring {
  int width, height, capacity;
  size_t frame_size;   /* width*height*3 */
  uint8_t *slots;      /* (capacity, height, width, 3) uint8 */
  lg_frame_info *info; /* (capacity) */
  int head;            /* index of the oldest queued frame */
  int count;           /* frames queued */
  int closed;
  uint64_t next_seq, pushed, popped, dropped;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled on push and close; waits use CLOCK_MONOTONIC */
};

lg_frame_ring *lg_frame_ring_new(int width, int height, int capacity) {
  lg_frame_ring *r = NULL;
  size_t row, frame, total;
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384 || capacity < 1 ||
      capacity > 1024) {
    LG_ERR(MOD, "bad ring geometry %dx%d x%d", width, height, capacity);
    return NULL;
  }
  if (lg_mul_size((size_t)width, 3, &row) || lg_mul_size(row, (size_t)height, &frame) ||
      lg_mul_size(frame, (size_t)capacity, &total)) {
    LG_ERR(MOD, "ring size overflows");
    return NULL;
  }
  r = calloc(1, sizeof(*r));
  if (!r) goto fail;
  r->width = width;
  r->height = height;
  r->capacity = capacity;
  r->frame_size = frame;
  r->slots = malloc(total);
  r->info = calloc((size_t)capacity, sizeof(*r->info));
  if (!r->slots || !r->info) goto fail;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  return r;
fail:
  LG_ERR(MOD, "out of memory for %d frames of %dx%d", capacity, width, height);
  if (r) {
    free(r->slots);
    free(r->info);
    free(r);
  }
  return NULL;
}

void lg_frame_ring_free(lg_frame_ring **pr) {
  if (!pr || !*pr) return;
  lg_frame_ring *r = *pr;
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r->slots);
  free(r->info);
  free(r);
  *pr = NULL;
}

int lg_frame_ring_width(const lg_frame_ring *r) {
  return r ? r->width : 0;
}
int lg_frame_ring_height(const lg_frame_ring *r) {
  return r ? r->height : 0;
}
size_t lg_frame_ring_frame_size(const lg_frame_ring *r) {
  return r ? r->frame_size : 0;
}

int lg_frame_ring_push(lg_frame_ring *r, const uint8_t *rgb, size_t stride, int64_t pts_ns) {
  if (!r || !rgb || stride < (size_t)r->width * 3) return LG_EINVAL;
  size_t row = (size_t)r->width * 3;
  pthread_mutex_lock(&r->mu);
  if (r->closed) {
    pthread_mutex_unlock(&r->mu);
    return LG_EEOF;
  }
  if (r->count == r->capacity) { /* drop the oldest: freshness beats completeness */
    r->head = (r->head + 1) % r->capacity;
    r->count--;
    r->dropped++;
  }
  int idx = (r->head + r->count) % r->capacity;
  uint8_t *dst = r->slots + (size_t)idx * r->frame_size;
  if (stride == row) {
    memcpy(dst, rgb, r->frame_size);
  } else {
    for (int y = 0; y < r->height; y++)
      memcpy(dst + (size_t)y * row, rgb + (size_t)y * stride, row);
  }
  r->info[idx].pts_ns = pts_ns;
  r->info[idx].t_arrival = lg_now();
  r->info[idx].seq = r->next_seq++;
  r->count++;
  r->pushed++;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

int lg_frame_ring_pop(lg_frame_ring *r, uint8_t *dst, size_t dst_size, lg_frame_info *info,
                      double timeout_s) {
  if (!r || !dst || dst_size < r->frame_size) return LG_EINVAL;
  struct timespec deadline;
  if (timeout_s > 0) {
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double whole = floor(timeout_s);
    deadline.tv_sec += (time_t)whole;
    deadline.tv_nsec += (long)((timeout_s - whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&r->mu);
  while (r->count == 0 && !r->closed) {
    if (timeout_s == 0) break;
    if (timeout_s < 0) {
      pthread_cond_wait(&r->cv, &r->mu);
    } else if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT) {
      break;
    }
  }
  int err;
  if (r->count > 0) {
    memcpy(dst, r->slots + (size_t)r->head * r->frame_size, r->frame_size);
    if (info) *info = r->info[r->head];
    r->head = (r->head + 1) % r->capacity;
    r->count--;
    r->popped++;
    err = 0;
  } else {
    err = r->closed ? LG_EEOF : LG_EAGAIN;
  }
  pthread_mutex_unlock(&r->mu);
  return err;
}

void lg_frame_ring_flush(lg_frame_ring *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->dropped += (uint64_t)r->count;
  r->count = 0;
  pthread_mutex_unlock(&r->mu);
}

void lg_frame_ring_close(lg_frame_ring *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->closed = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void lg_frame_ring_reopen(lg_frame_ring *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->closed = 0;
  pthread_mutex_unlock(&r->mu);
}

void lg_frame_ring_get_stats(lg_frame_ring *r, lg_frame_ring_stats *st) {
  if (!r || !st) return;
  pthread_mutex_lock(&r->mu);
  st->pushed = r->pushed;
  st->popped = r->popped;
  st->dropped = r->dropped;
  st->queued = r->count;
  st->closed = r->closed;
  pthread_mutex_unlock(&r->mu);
}

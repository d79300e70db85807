/* device_ring.c: bounded drop-oldest ring of preallocated backend frames (see device_ring.h).
 * Producer: the GPU worker (writes are enqueued on the backend's stream). Consumer: the output
 * encoder thread (reads are enqueued on the same stream). One mutex guards the slot states and
 * the queue of slot numbers; the consumer's callback runs outside it. */
#include "device_ring.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define MOD "device_ring"

enum { SLOT_FREE = 0, SLOT_WRITING, SLOT_QUEUED, SLOT_READING };

struct lg_device_ring {
  lg_backend *be;
  lg_tensor frames; /* [capacity,H,W,3] U8 on be */
  int capacity, max_queued;
  unsigned char *state; /* (capacity) SLOT_* */
  int *queue;           /* (capacity) slot numbers, oldest at head */
  int64_t *pts;         /* (capacity) per slot */
  uint64_t *seq;        /* (capacity) per slot */
  int head, count;      /* queue */
  int writing, reading; /* slots held */
  bool closed, finished;
  uint64_t next_seq, published, consumed, dropped;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* publish, close (consumer waits); finish (producer waits) */
};

lg_device_ring *lg_device_ring_new(lg_backend *be, int width, int height, int capacity,
                                   int max_queued) {
  if (!be || width <= 0 || height <= 0 || width > 16384 || height > 16384 || capacity < 2 ||
      capacity > 256 || max_queued < 1 || max_queued >= capacity) {
    LG_ERR(MOD, "bad ring geometry %dx%d x%d (queue %d)", width, height, capacity, max_queued);
    return NULL;
  }
  lg_device_ring *r = calloc(1, sizeof *r);
  if (!r) goto oom;
  r->be = be;
  r->capacity = capacity;
  r->max_queued = max_queued;
  r->state = calloc((size_t)capacity, sizeof *r->state);
  r->queue = calloc((size_t)capacity, sizeof *r->queue);
  r->pts = calloc((size_t)capacity, sizeof *r->pts);
  r->seq = calloc((size_t)capacity, sizeof *r->seq);
  if (!r->state || !r->queue || !r->pts || !r->seq) goto oom;
  int64_t shape[4] = {capacity, height, width, 3};
  if (lg_tensor_alloc(be, &r->frames, LG_U8, 4, shape)) {
    LG_ERR(MOD, "cannot allocate %d frames of %dx%d on the backend", capacity, width, height);
    goto fail;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  return r;
oom:
  LG_ERR(MOD, "out of memory");
fail:
  if (r) {
    free(r->state);
    free(r->queue);
    free(r->pts);
    free(r->seq);
    free(r);
  }
  return NULL;
}

void lg_device_ring_free(lg_device_ring **pr) {
  if (!pr || !*pr) return;
  lg_device_ring *r = *pr;
  lg_tensor_free(&r->frames);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r->state);
  free(r->queue);
  free(r->pts);
  free(r->seq);
  free(r);
  *pr = NULL;
}

int lg_device_ring_capacity(const lg_device_ring *r) {
  return r ? r->capacity : 0;
}

/* Drops the oldest queued frame: its slot becomes FREE. Under mu; count > 0. */
static int drop_oldest(lg_device_ring *r) {
  int slot = r->queue[r->head];
  r->head = (r->head + 1) % r->capacity;
  r->count--;
  r->dropped++;
  r->state[slot] = SLOT_FREE;
  return slot;
}

int lg_device_ring_acquire(lg_device_ring *r, lg_tensor *frame) {
  if (!r || !frame) return LG_EINVAL;
  pthread_mutex_lock(&r->mu);
  int slot = -1, rc;
  if (r->closed) {
    rc = LG_EEOF;
    goto out;
  }
  for (int i = 0; i < r->capacity && slot < 0; i++)
    if (r->state[i] == SLOT_FREE) slot = i;
  if (slot < 0 && r->count > 0) slot = drop_oldest(r); /* the encoder is behind */
  if (slot < 0) {
    rc = LG_EAGAIN; /* every slot is being written or read */
    goto out;
  }
  r->state[slot] = SLOT_WRITING;
  r->writing++;
  *frame = lg_tensor_narrow(&r->frames, 0, slot, 1);
  rc = slot;
out:
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int lg_device_ring_publish(lg_device_ring *r, int slot, int64_t pts_ns) {
  if (!r) return LG_EINVAL;
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  if (slot < 0 || slot >= r->capacity || r->state[slot] != SLOT_WRITING) {
    LG_ERR(MOD, "publish of slot %d, which the producer does not hold", slot);
    rc = LG_EINVAL;
    goto out;
  }
  r->writing--;
  if (r->closed) {
    r->state[slot] = SLOT_FREE;
    rc = LG_EEOF;
    goto out;
  }
  if (r->count == r->max_queued) drop_oldest(r);
  r->state[slot] = SLOT_QUEUED;
  r->pts[slot] = pts_ns;
  r->seq[slot] = r->next_seq++;
  r->queue[(r->head + r->count) % r->capacity] = slot;
  r->count++;
  r->published++;
  pthread_cond_broadcast(&r->cv);
out:
  pthread_mutex_unlock(&r->mu);
  return rc;
}

void lg_device_ring_cancel(lg_device_ring *r, int slot) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  if (slot >= 0 && slot < r->capacity && r->state[slot] == SLOT_WRITING) {
    r->state[slot] = SLOT_FREE;
    r->writing--;
  }
  pthread_mutex_unlock(&r->mu);
}

static void deadline_in(struct timespec *d, double timeout_s) {
  clock_gettime(CLOCK_MONOTONIC, d);
  double whole = floor(timeout_s);
  d->tv_sec += (time_t)whole;
  d->tv_nsec += (long)((timeout_s - whole) * 1e9);
  if (d->tv_nsec >= 1000000000L) {
    d->tv_sec++;
    d->tv_nsec -= 1000000000L;
  }
}

int lg_device_ring_consume(lg_device_ring *r, lg_device_ring_read_fn fn, void *user,
                           double timeout_s, int *fn_rc) {
  if (!r || !fn) return LG_EINVAL;
  struct timespec deadline;
  if (timeout_s > 0) deadline_in(&deadline, timeout_s);
  pthread_mutex_lock(&r->mu);
  while (r->count == 0 && !r->closed && timeout_s != 0) {
    if (timeout_s < 0)
      pthread_cond_wait(&r->cv, &r->mu);
    else if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT)
      break;
  }
  if (r->count == 0) {
    int rc = r->closed ? LG_EEOF : LG_EAGAIN;
    pthread_mutex_unlock(&r->mu);
    return rc;
  }
  int slot = r->queue[r->head];
  r->head = (r->head + 1) % r->capacity;
  r->count--;
  r->state[slot] = SLOT_READING; /* neither acquire nor a drop can take it now */
  r->reading++;
  r->consumed++;
  lg_device_frame_info info = {.pts_ns = r->pts[slot], .seq = r->seq[slot]};
  lg_tensor frame = lg_tensor_narrow(&r->frames, 0, slot, 1);
  pthread_mutex_unlock(&r->mu);
  /* the read is enqueued here; the slot is released only after it */
  int frc = fn(user, &frame, &info);
  pthread_mutex_lock(&r->mu);
  r->state[slot] = SLOT_FREE;
  r->reading--;
  pthread_mutex_unlock(&r->mu);
  if (fn_rc) *fn_rc = frc;
  return 0;
}

void lg_device_ring_close(lg_device_ring *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->closed = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void lg_device_ring_finish(lg_device_ring *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->finished = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

bool lg_device_ring_wait_finished(lg_device_ring *r, double timeout_s) {
  if (!r) return true;
  struct timespec deadline;
  if (timeout_s > 0) deadline_in(&deadline, timeout_s);
  pthread_mutex_lock(&r->mu);
  while (!r->finished && timeout_s != 0) {
    if (timeout_s < 0)
      pthread_cond_wait(&r->cv, &r->mu);
    else if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT)
      break;
  }
  bool done = r->finished;
  pthread_mutex_unlock(&r->mu);
  return done;
}

void lg_device_ring_get_stats(lg_device_ring *r, lg_device_ring_stats *st) {
  if (!r || !st) return;
  pthread_mutex_lock(&r->mu);
  st->published = r->published;
  st->consumed = r->consumed;
  st->dropped = r->dropped;
  st->queued = r->count;
  st->writing = r->writing;
  st->reading = r->reading;
  st->closed = r->closed;
  pthread_mutex_unlock(&r->mu);
}

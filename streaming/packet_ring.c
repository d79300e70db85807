/* packet_ring.c: the encoded-packet ring (see packet_ring.h). Slots are indexed by
 * seq % n_slots; the writer overwrites the oldest slot, readers hold a seq and detect being
 * overrun by comparing it with the oldest seq still stored. One mutex guards the slots and is
 * held only for a memcpy; a condition variable wakes readers that wait.
 * Threads: one writer (encoder thread), any number of reader threads. */
#include "packet_ring.h"

#include "lg_base.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
  uint8_t *data; /* cap bytes, grown on demand by the writer */
  size_t cap, size;
  int64_t pts_us;
  bool key;
} slot;

struct lg_packet_ring {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  slot *slots;
  size_t n;
  uint64_t head; /* seq of the next write */
  bool closed;
  lg_stream_info info;
};

lg_packet_ring *lg_packet_ring_new(size_t n_slots) {
  if (n_slots < 2 || n_slots > (1u << 20)) {
    LG_ERR("packet_ring", "n_slots %zu out of range 2..%u", n_slots, 1u << 20);
    return NULL;
  }
  lg_packet_ring *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->slots = calloc(n_slots, sizeof *r->slots);
  if (!r->slots) {
    free(r);
    return NULL;
  }
  r->n = n_slots;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  return r;
}

void lg_packet_ring_free(lg_packet_ring **pr) {
  if (!pr || !*pr) return;
  lg_packet_ring *r = *pr;
  for (size_t i = 0; i < r->n; i++)
    free(r->slots[i].data);
  free(r->slots);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
  *pr = NULL;
}

int lg_packet_ring_write(lg_packet_ring *r, const uint8_t *data, size_t size, int64_t pts_us,
                         bool key) {
  if (!r || !data || size == 0 || size > LG_PACKET_MAX_BYTES) {
    LG_ERR("packet_ring", "write: bad packet (size %zu, max %u)", size, LG_PACKET_MAX_BYTES);
    return LG_EINVAL;
  }
  pthread_mutex_lock(&r->mu);
  int err = 0;
  if (r->closed) {
    err = LG_EINVAL;
    goto out;
  }
  slot *s = &r->slots[r->head % r->n];
  if (s->cap < size) {
    /* Grow to the largest packet seen (rounded up): rare after the first keyframes. */
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < size)
      cap *= 2;
    uint8_t *p = realloc(s->data, cap);
    if (!p) {
      err = LG_ENOMEM;
      goto out;
    }
    s->data = p;
    s->cap = cap;
  }
  memcpy(s->data, data, size);
  s->size = size;
  s->pts_us = pts_us;
  s->key = key;
  r->head++;
  pthread_cond_broadcast(&r->cv);
out:
  pthread_mutex_unlock(&r->mu);
  return err;
}

void lg_packet_ring_set_info(lg_packet_ring *r, const lg_stream_info *info) {
  pthread_mutex_lock(&r->mu);
  uint32_t v = r->info.version + 1;
  r->info = *info;
  r->info.version = v ? v : 1;
  pthread_mutex_unlock(&r->mu);
}

void lg_packet_ring_close(lg_packet_ring *r) {
  pthread_mutex_lock(&r->mu);
  r->closed = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

uint32_t lg_packet_ring_get_info(lg_packet_ring *r, lg_stream_info *info) {
  pthread_mutex_lock(&r->mu);
  if (info) *info = r->info;
  uint32_t v = r->info.version;
  pthread_mutex_unlock(&r->mu);
  return v;
}

uint64_t lg_packet_ring_head(lg_packet_ring *r) {
  pthread_mutex_lock(&r->mu);
  uint64_t h = r->head;
  pthread_mutex_unlock(&r->mu);
  return h;
}

void lg_packet_reader_init(lg_packet_ring *r, lg_packet_reader *rd, uint32_t max_lag) {
  memset(rd, 0, sizeof *rd);
  rd->next = lg_packet_ring_head(r);
  rd->need_key = true;
  rd->max_lag = max_lag;
}

/* Oldest seq still stored. Caller holds mu. */
static uint64_t oldest_locked(const lg_packet_ring *r) {
  return r->head > r->n ? r->head - r->n : 0;
}

/* Moves *next to the first keyframe at or after it; false (and *next = head) if none is
 * stored yet. Caller holds mu. */
static bool seek_key_locked(const lg_packet_ring *r, uint64_t *next) {
  for (uint64_t s = *next; s < r->head; s++) {
    if (r->slots[s % r->n].key) {
      *next = s;
      return true;
    }
  }
  *next = r->head;
  return false;
}

/* Applies the overrun / lag / keyframe rules to rd's position (rd->next is then the packet to
 * return) and stores in *lost how many packets were passed over. False when nothing is
 * readable yet. Caller holds mu. */
static bool position_locked(const lg_packet_ring *r, lg_packet_reader *rd, uint64_t *lost) {
  uint64_t oldest = oldest_locked(r);
  uint64_t start = rd->next;
  if (rd->next < oldest) {
    rd->next = oldest; /* overrun: the packets before oldest are gone */
    rd->need_key = true;
  }
  if (rd->max_lag && r->head - rd->next > rd->max_lag) {
    /* Too far behind (a slow socket): drop everything outside the last max_lag packets and
     * resume at the first keyframe inside that window (or the next one written). */
    uint64_t s = r->head - rd->max_lag;
    rd->next = s;
    rd->need_key = true;
  }
  if (rd->need_key) {
    if (!seek_key_locked(r, &rd->next)) {
      *lost = rd->next - start;
      return false;
    }
    rd->need_key = false;
  }
  *lost = rd->next > start ? rd->next - start : 0;
  return rd->next < r->head;
}

bool lg_packet_ring_readable(lg_packet_ring *r, const lg_packet_reader *rd) {
  lg_packet_reader tmp = *rd;
  uint64_t lost;
  pthread_mutex_lock(&r->mu);
  bool ok = position_locked(r, &tmp, &lost) || (r->closed && tmp.next >= r->head);
  pthread_mutex_unlock(&r->mu);
  return ok;
}

static int read_locked(lg_packet_ring *r, lg_packet_reader *rd, uint8_t *buf, size_t cap,
                       lg_packet_meta *meta) {
  uint64_t lost = 0;
  if (!position_locked(r, rd, &lost)) {
    rd->skipped_total += lost;
    if (meta) meta->skipped = lost;
    return r->closed ? LG_EEOF : LG_EAGAIN;
  }
  const slot *s = &r->slots[rd->next % r->n];
  if (meta) {
    meta->seq = rd->next;
    meta->pts_us = s->pts_us;
    meta->key = s->key;
    meta->size = s->size;
    meta->skipped = lost;
  }
  if (s->size > cap) return LG_ERANGE;
  memcpy(buf, s->data, s->size);
  rd->skipped_total += lost;
  rd->next++;
  return 0;
}

int lg_packet_ring_read(lg_packet_ring *r, lg_packet_reader *rd, uint8_t *buf, size_t cap,
                        lg_packet_meta *meta) {
  if (!r || !rd || (!buf && cap)) return LG_EINVAL;
  pthread_mutex_lock(&r->mu);
  int rc = read_locked(r, rd, buf, cap, meta);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int lg_packet_ring_wait_read(lg_packet_ring *r, lg_packet_reader *rd, uint8_t *buf, size_t cap,
                             lg_packet_meta *meta, int timeout_ms) {
  if (!r || !rd || (!buf && cap)) return LG_EINVAL;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&r->mu);
  int rc;
  for (;;) {
    rc = read_locked(r, rd, buf, cap, meta);
    if (rc != LG_EAGAIN) break;
    if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) {
      rc = read_locked(r, rd, buf, cap, meta);
      break;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

/* metrics.c: counters, gauges and fixed-bucket histograms as C11 atomics (doubles stored as
 * their bit patterns in atomic uint64, added with a compare-exchange loop), and the
 * Prometheus text renderer. Any thread. */
#include "metrics.h"

#include "lg_base.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[LG_METRICS_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,    1,     2.5,  5,     10};

static const struct {
  const char *name, *help;
} counter_def[LG_COUNTER_COUNT] = {
    [LG_COUNTER_FRAMES_IN] = {"livegen_frames_in_total",
                              "Input frames accepted into the ingest ring."},
    [LG_COUNTER_FRAMES_OUT] = {"livegen_frames_out_total", "Output frames produced by the engine."},
    [LG_COUNTER_FRAMES_DROPPED] = {"livegen_frames_dropped_total",
                                   "Input frames dropped (ring full or undecodable)."},
    [LG_COUNTER_BYTES_OUT] = {"livegen_encoder_bytes_total", "Encoded output bytes."},
};

static const struct {
  const char *name, *help;
} gauge_def[LG_GAUGE_COUNT] = {
    [LG_GAUGE_VIEWERS] = {"livegen_viewers", "Connected WebSocket stream viewers."},
    [LG_GAUGE_ENCODER_BITRATE] = {"livegen_encoder_bitrate_bps",
                                  "Output encoder bitrate over the last second."},
};

static const char *stage_name[LG_STAGE_COUNT] = {[LG_STAGE_INGEST] = "ingest",
                                                 [LG_STAGE_ENCODE] = "encode",
                                                 [LG_STAGE_DIT] = "dit",
                                                 [LG_STAGE_DECODE] = "decode",
                                                 [LG_STAGE_TOTAL] = "total"};

typedef struct histogram {
  _Atomic uint64_t bucket[LG_METRICS_N_BUCKETS + 1]; /* non-cumulative; last = +Inf */
  _Atomic uint64_t count;
  _Atomic uint64_t sum_bits; /* double */
} histogram;

struct lg_metrics {
  _Atomic uint64_t counter[LG_COUNTER_COUNT];
  _Atomic uint64_t gauge_bits[LG_GAUGE_COUNT]; /* double */
  histogram hist[LG_STAGE_COUNT];
};

static uint64_t d2u(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static double u2d(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

lg_metrics *lg_metrics_new(void) {
  lg_metrics *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  for (int i = 0; i < LG_COUNTER_COUNT; i++)
    atomic_init(&m->counter[i], 0);
  for (int i = 0; i < LG_GAUGE_COUNT; i++)
    atomic_init(&m->gauge_bits[i], d2u(0.0));
  for (int s = 0; s < LG_STAGE_COUNT; s++) {
    for (int b = 0; b <= LG_METRICS_N_BUCKETS; b++)
      atomic_init(&m->hist[s].bucket[b], 0);
    atomic_init(&m->hist[s].count, 0);
    atomic_init(&m->hist[s].sum_bits, d2u(0.0));
  }
  return m;
}

void lg_metrics_free(lg_metrics **m) {
  if (!m || !*m) return;
  free(*m);
  *m = NULL;
}

void lg_metrics_add(lg_metrics *m, lg_counter c, uint64_t n) {
  if (!m || (unsigned)c >= LG_COUNTER_COUNT) return;
  atomic_fetch_add_explicit(&m->counter[c], n, memory_order_relaxed);
}

uint64_t lg_metrics_get(lg_metrics *m, lg_counter c) {
  if (!m || (unsigned)c >= LG_COUNTER_COUNT) return 0;
  return atomic_load_explicit(&m->counter[c], memory_order_relaxed);
}

void lg_metrics_set_gauge(lg_metrics *m, lg_gauge g, double v) {
  if (!m || (unsigned)g >= LG_GAUGE_COUNT || !isfinite(v)) return;
  atomic_store_explicit(&m->gauge_bits[g], d2u(v), memory_order_relaxed);
}

double lg_metrics_get_gauge(lg_metrics *m, lg_gauge g) {
  if (!m || (unsigned)g >= LG_GAUGE_COUNT) return 0.0;
  return u2d(atomic_load_explicit(&m->gauge_bits[g], memory_order_relaxed));
}

void lg_metrics_observe(lg_metrics *m, lg_stage s, double seconds) {
  if (!m || (unsigned)s >= LG_STAGE_COUNT || !(seconds >= 0.0) || !isfinite(seconds)) return;
  histogram *h = &m->hist[s];
  int b = 0;
  while (b < LG_METRICS_N_BUCKETS && seconds > bucket_le[b])
    b++;
  atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
  uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, d2u(u2d(old) + seconds),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

uint64_t lg_metrics_observations(lg_metrics *m, lg_stage s) {
  if (!m || (unsigned)s >= LG_STAGE_COUNT) return 0;
  return atomic_load_explicit(&m->hist[s].count, memory_order_relaxed);
}

size_t lg_metrics_render_size(void) {
  /* Generous: ~200 bytes per header, ~90 per histogram line. */
  return 4096 + (size_t)LG_STAGE_COUNT * (LG_METRICS_N_BUCKETS + 4) * 96;
}

typedef struct out {
  char *buf;
  size_t cap, len;
  int overflow;
} out;

__attribute__((format(printf, 2, 3))) static void emit(out *o, const char *fmt, ...) {
  if (o->overflow) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= o->cap - o->len) {
    o->overflow = 1;
    return;
  }
  o->len += (size_t)n;
}

int lg_metrics_render(lg_metrics *m, char *buf, size_t cap) {
  if (!m || !buf || cap == 0) return LG_EINVAL;
  out o = {buf, cap, 0, 0};
  buf[0] = 0;
  for (int i = 0; i < LG_COUNTER_COUNT; i++) {
    emit(&o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_def[i].name, counter_def[i].help,
         counter_def[i].name, counter_def[i].name,
         (unsigned long long)lg_metrics_get(m, (lg_counter)i));
  }
  for (int i = 0; i < LG_GAUGE_COUNT; i++) {
    emit(&o, "# HELP %s %s\n# TYPE %s gauge\n%s %.9g\n", gauge_def[i].name, gauge_def[i].help,
         gauge_def[i].name, gauge_def[i].name, lg_metrics_get_gauge(m, (lg_gauge)i));
  }
  const char *hn = "livegen_stage_latency_seconds";
  emit(&o, "# HELP %s Per-stage latency.\n# TYPE %s histogram\n", hn, hn);
  for (int s = 0; s < LG_STAGE_COUNT; s++) {
    histogram *h = &m->hist[s];
    /* Read the buckets first and derive the count from them so that the +Inf bucket always
     * equals _count even while other threads observe. */
    uint64_t cum = 0;
    for (int b = 0; b <= LG_METRICS_N_BUCKETS; b++) {
      cum += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
      if (b < LG_METRICS_N_BUCKETS)
        emit(&o, "%s_bucket{stage=\"%s\",le=\"%g\"} %llu\n", hn, stage_name[s], bucket_le[b],
             (unsigned long long)cum);
      else
        emit(&o, "%s_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", hn, stage_name[s],
             (unsigned long long)cum);
    }
    emit(&o, "%s_sum{stage=\"%s\"} %.9g\n", hn, stage_name[s],
         u2d(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
    emit(&o, "%s_count{stage=\"%s\"} %llu\n", hn, stage_name[s], (unsigned long long)cum);
  }
  if (o.overflow) return LG_ERANGE;
  return (int)o.len;
}

/* metrics.h: the service's Prometheus metrics: a fixed set of counters, gauges and per-stage
 * latency histograms with fixed buckets, updated lock-free (C11 atomics) from any thread
 * and rendered as Prometheus text exposition format 0.0.4 for GET /metrics.
 * Threads: every function may be called from any thread; _new/_free must not race. */
#ifndef LG_METRICS_H
#define LG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lg_counter {
  LG_COUNTER_FRAMES_IN = 0,  /* livegen_frames_in_total */
  LG_COUNTER_FRAMES_OUT,     /* livegen_frames_out_total */
  LG_COUNTER_FRAMES_DROPPED, /* livegen_frames_dropped_total */
  LG_COUNTER_BYTES_OUT,      /* livegen_encoder_bytes_total */
  LG_COUNTER_COUNT
} lg_counter;

typedef enum lg_gauge {
  LG_GAUGE_VIEWERS = 0,     /* livegen_viewers */
  LG_GAUGE_ENCODER_BITRATE, /* livegen_encoder_bitrate_bps */
  LG_GAUGE_COUNT
} lg_gauge;

typedef enum lg_stage {
  LG_STAGE_INGEST = 0, /* capture -> dequeued by the GPU worker */
  LG_STAGE_ENCODE,     /* one frame through the encoder */
  LG_STAGE_DIT,        /* DiT part of one chunk */
  LG_STAGE_DECODE,     /* VAE/TAEHV decode of one chunk */
  LG_STAGE_TOTAL,      /* capture -> encoded packet */
  LG_STAGE_COUNT
} lg_stage;

#define LG_METRICS_N_BUCKETS 13 /* finite upper bounds; +Inf is implicit */

typedef struct lg_metrics lg_metrics;

lg_metrics *lg_metrics_new(void);
void lg_metrics_free(lg_metrics **m);

void lg_metrics_add(lg_metrics *m, lg_counter c, uint64_t n);
uint64_t lg_metrics_get(lg_metrics *m, lg_counter c);
void lg_metrics_set_gauge(lg_metrics *m, lg_gauge g, double v);
double lg_metrics_get_gauge(lg_metrics *m, lg_gauge g);
/* Records one latency sample in seconds (negative or NaN samples are ignored). */
void lg_metrics_observe(lg_metrics *m, lg_stage s, double seconds);
/* Samples recorded for a stage so far. */
uint64_t lg_metrics_observations(lg_metrics *m, lg_stage s);

/* Writes the whole exposition (NUL-terminated) into buf. Returns the length without the NUL,
 * or LG_ERANGE when cap is too small (lg_metrics_render_size() is always enough). */
int lg_metrics_render(lg_metrics *m, char *buf, size_t cap);
size_t lg_metrics_render_size(void);

#ifdef __cplusplus
}
#endif
#endif

/* mux_output.h: one libavformat output (FLV over RTMP, fragmented MP4 file, ...) fed from the
 * packet ring by a thread of its own. The shared engine behind rtmp_push.h and recorder.h;
 * use those unless you need another container.
 *
 * The output thread is an ordinary packet ring reader: the encoder never waits for it. When
 * the output is slow (a congested RTMP link) the ring overruns the reader, which then skips
 * to the next keyframe. Packets are H.264 Annex B access units; the muxers convert them to
 * length-prefixed form because the codec extradata (SPS+PPS from lg_stream_info, or parsed
 * from the first keyframe) is Annex B. Timestamps start at 0 on every (re)connection;
 * pts == dts (the encoder emits no B-frames), made strictly increasing if needed.
 *
 * Threads: _new starts the thread; _get_status from any thread; _free from the owner. */
#ifndef LG_MUX_OUTPUT_H
#define LG_MUX_OUTPUT_H

#include "packet_ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_mux_output lg_mux_output;

typedef struct lg_mux_output_options {
  const char *url;      /* file path or network URL (copied) */
  const char *format;   /* libavformat muxer name: "flv", "mp4" (copied) */
  const char *movflags; /* mp4 only, or NULL (copied) */
  const char *tag;      /* log module name, e.g. "rtmp_push" (static string) */
  bool reconnect;       /* on a write/open failure: retry with backoff (network outputs);
                           false: stop with state FAILED (files) */
  double reconnect_min_s, reconnect_max_s; /* backoff: doubles from min to max */
  double io_timeout_s; /* network: give up a stuck connect/write after this (rw_timeout) */
} lg_mux_output_options;

typedef enum lg_mux_state {
  LG_MUX_STATE_WAITING = 0,  /* for the stream info and the first keyframe */
  LG_MUX_STATE_RUNNING,      /* header written, packets flowing */
  LG_MUX_STATE_RECONNECTING, /* output failed; retrying after a backoff */
  LG_MUX_STATE_DONE,         /* the packet ring was closed; trailer written */
  LG_MUX_STATE_FAILED,       /* gave up (file outputs do not retry) */
} lg_mux_state;

typedef struct lg_mux_output_status {
  lg_mux_state state;
  uint64_t packets; /* packets written, all connections together */
  uint64_t bytes;   /* access unit bytes written */
  uint64_t skipped; /* packets skipped because the output fell behind */
  int connects;     /* successful opens */
  int failures;     /* failed opens or writes */
  char last_error[256];
} lg_mux_output_status;

/* Starts the output thread reading `ring` (borrowed until _free returns) from its next
 * keyframe written after this call. NULL on bad options (logged). */
lg_mux_output *lg_mux_output_new(lg_packet_ring *ring, const lg_mux_output_options *opt);
/* Stops the thread (bounded by io_timeout_s at worst), finishes the file (trailer) if a
 * header was written, frees, and sets *m = NULL. Accepts NULL. */
void lg_mux_output_free(lg_mux_output **m);
void lg_mux_output_get_status(lg_mux_output *m, lg_mux_output_status *st);
const char *lg_mux_state_name(lg_mux_state s);

/* Copies the SPS and PPS NAL units (with 4-byte start codes) of an Annex B access unit into
 * out (cap bytes). Returns the bytes written, 0 when the unit has no SPS or no PPS, or
 * LG_ERANGE when cap is too small. */
int lg_h264_extract_parameter_sets(const uint8_t *au, size_t size, uint8_t *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif

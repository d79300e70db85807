/* rtmp_push.h: pushes the encoded stream to an RTMP server (output.rtmp), e.g. YouTube,
 * Twitch or nginx-rtmp, as FLV. Fed from the packet ring by its own thread (mux_output.h):
 * it never blocks the encoder; a slow link skips to the next keyframe; a failed connect or
 * write is retried with exponential backoff (reconnect_min_s doubling to reconnect_max_s)
 * from a fresh keyframe, forever, until lg_rtmp_push_free.
 *
 * Threads: _new starts the push thread; _get_status from any thread (metrics, the HTTP API);
 * _free from the owner (serve.c). */
#ifndef LG_RTMP_PUSH_H
#define LG_RTMP_PUSH_H

#include "mux_output.h"
#include "packet_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_rtmp_push lg_rtmp_push;

typedef struct lg_rtmp_push_options {
  double reconnect_min_s; /* default 1 s */
  double reconnect_max_s; /* default 30 s */
  double io_timeout_s;    /* a stalled connection is dropped after this; default 5 s */
} lg_rtmp_push_options;

/* url: rtmp:// or rtmps:// (copied). ring: borrowed until _free returns. opt NULL = defaults.
 * Returns NULL on a bad URL (logged); an unreachable server is not an error here (status). */
lg_rtmp_push *lg_rtmp_push_new(lg_packet_ring *ring, const char *url,
                               const lg_rtmp_push_options *opt);
/* Ends the stream (FLV trailer, RTMP close) and frees; bounded (about 1 s plus io_timeout_s
 * at worst). *p = NULL. Accepts NULL. */
void lg_rtmp_push_free(lg_rtmp_push **p);
/* state (waiting, running, reconnecting), packets/bytes sent, reconnects, last error. */
void lg_rtmp_push_get_status(lg_rtmp_push *p, lg_mux_output_status *st);

#ifdef __cplusplus
}
#endif
#endif

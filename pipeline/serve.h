/* serve.h: `livegen serve` as a library: the service's threads with fixed roles and bounded
 * queues between them (DESIGN.md "Threads"):
 *   ingest (streaming/ingest: GStreamer threads) -> ingest frame ring (drops oldest)
 *   -> GPU worker (owns the lg_engine: frames_needed, push per chunk)
 *   -> output frame ring -> output encoder thread -> output packet ring
 *      (device mode, engine on CUDA + h264_nvenc with CUDA frames: a ring of device frames
 *      instead, device_ring.h; docs/STREAMING_IO.md "Output frames on the GPU")
 *   input frames -> input frame ring -> input encoder thread -> input packet ring (preview)
 *   packet rings -> lws service thread (viewers), RTMP push, recorder, WebRTC.
 * Control reaches the service through lg_control_ops (plain structs; server/control.c do
 * the JSON). pipeline/ never formats network messages.
 * Threads: _new, _poll and _free from one owner thread (main); the callbacks run on the lws
 * thread. */
#ifndef LG_SERVE_H
#define LG_SERVE_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_serve lg_serve;

/* Starts everything per cfg (server.port 0 = any free port). The engine loads on the GPU
 * worker in the background (status "loading"). NULL with the reason in err. */
lg_serve *lg_serve_new(const lg_config *cfg, char *err, size_t errn);
/* The HTTP/WebSocket port actually bound. */
int lg_serve_port(const lg_serve *s);
/* Owner-thread housekeeping, call every ~100 ms: applies input switches requested over the
 * control API. Returns 0, or LG_E* when the service failed for good (engine load error). */
int lg_serve_poll(lg_serve *s);
/* Stops every thread in order (ingest, GPU worker, encoders, outputs, server) and frees.
 * Bounded in time. Accepts NULL. */
void lg_serve_free(lg_serve **s);

#ifdef __cplusplus
}
#endif
#endif

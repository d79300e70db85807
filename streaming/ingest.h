/* ingest.h: live input for livegen. Turns an input URI into RGB24 frames of a fixed size and
 * rate pushed into an lg_frame_ring (freshness beats completeness: the ring drops oldest).
 *
 * URIs (lg_config.input):
 *   test:<pattern>         videotestsrc pattern=<pattern> is-live=true (ball, smpte, snow, ...)
 *   file:PATH              any file GStreamer can decode (uridecodebin), played in real time;
 *                          its end ends the session: the ring is closed (state EOS)
 *   v4l2:/dev/videoN       a webcam (raw or MJPEG, via decodebin)
 *   rtmp://... rtmps://... pull from an RTMP server (rtmp2src ! flvdemux ! decodebin)
 *   srt://HOST:PORT[?mode=caller|listener|...]  SRT (srtsrc ! decodebin)
 *   rtmp-listen:[HOST:]PORT[/APP/KEY]  an RTMP publish endpoint OBS/ffmpeg push to, e.g.
 *                          `ffmpeg -re -i x.mp4 -c:v libx264 -f flv rtmp://HOST:PORT/APP/KEY`
 *                          (OBS: Server rtmp://HOST:PORT/APP, Stream Key KEY). APP/KEY default
 *                          to live/stream; FFmpeg's server accepts any app/key a publisher
 *                          names, so the key is not an access control.
 *                          GStreamer has no RTMP server element, so a thread of ours runs
 *                          FFmpeg's built-in RTMP server (avio_open2 with listen=1, which
 *                          yields the FLV byte stream) and feeds appsrc ! flvdemux ! decodebin.
 *                          HOST (IPv4 or name) defaults to 127.0.0.1; 0.0.0.0 accepts the LAN.
 *                          One publisher at a time; after it leaves, the next may publish.
 *   ws                     JPEG frames pushed by the server with lg_ingest_push_jpeg
 *                          (appsrc ! jpegdec ! ...)
 *   whip                   frames come from a WHIP publisher decoded by streaming/webrtc.c,
 *                          which pushes into the same ring; the ingest only reports status
 *                          (running while frames arrived in the last 2 s, else waiting).
 * Every pipeline ends in videoconvert ! videoscale ! videorate !
 * video/x-raw,format=RGB,width,height,framerate,pixel-aspect-ratio=1/1 (letterboxed) !
 * appsink (max-buffers=2 drop=true).
 *
 * Loss: bus errors and EOS of a live source are logged, reported in lg_ingest_status (state
 * RECONNECTING, last_error) and the pipeline is rebuilt after an exponential backoff
 * (reconnect_min_s doubling up to reconnect_max_s; reset once frames flow again). A file's
 * EOS or error closes the ring.
 *
 * Threads: lg_ingest_new starts one supervisor thread (builds the pipeline, watches its bus,
 * reconnects) plus, for rtmp-listen, one reader thread per connection. Frames are pushed
 * from GStreamer streaming threads. _push_jpeg and _get_status may be called from any thread
 * (e.g. the lws thread); _free from the thread that owns the ingest. */
#ifndef LG_INGEST_H
#define LG_INGEST_H

#include "frame_ring.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_ingest lg_ingest;

typedef enum lg_ingest_kind {
  LG_INGEST_KIND_TEST = 0,
  LG_INGEST_KIND_FILE,
  LG_INGEST_KIND_V4L2,
  LG_INGEST_KIND_URI, /* rtmp://, rtmps://, srt://, rtsp://, http(s)://: source for the URI !
                         decodebin (rtmp: ! flvdemux first), no network buffering */
  LG_INGEST_KIND_RTMP_LISTEN,
  LG_INGEST_KIND_WS,
  LG_INGEST_KIND_WHIP,
} lg_ingest_kind;

typedef enum lg_ingest_state {
  LG_INGEST_STATE_STARTING = 0, /* pipeline built, no frame yet */
  LG_INGEST_STATE_RUNNING,      /* frames flowing */
  LG_INGEST_STATE_WAITING,      /* waiting for a publisher/pusher (rtmp-listen, ws, whip) */
  LG_INGEST_STATE_RECONNECTING, /* input lost, rebuilding after a backoff */
  LG_INGEST_STATE_EOS,          /* file ended; ring closed */
  LG_INGEST_STATE_FAILED,       /* gave up (file error, max_reconnects reached); ring closed */
} lg_ingest_state;

typedef struct lg_ingest_options {
  double reconnect_min_s; /* first backoff (default 0.5 s) */
  double reconnect_max_s; /* backoff cap (default 10 s) */
  int max_reconnects;     /* -1 (default): retry forever */
  int appsrc_max_bytes;   /* ws/rtmp-listen input queue bound (default 4 MiB) */
} lg_ingest_options;

typedef struct lg_ingest_status {
  lg_ingest_kind kind;
  lg_ingest_state state;
  uint64_t frames;     /* frames pushed into the ring */
  int reconnects;      /* pipelines rebuilt after a loss */
  double last_frame_t; /* lg_now() of the last frame, 0 = none yet */
  char last_error[256];
} lg_ingest_status;

/* Fills the defaults above. */
void lg_ingest_options_default(lg_ingest_options *o);

/* Parses uri, builds and starts the input. width, height: frame size of `ring` (checked);
 * fps > 0: output rate. ring is borrowed until lg_ingest_free returns. opt NULL = defaults.
 * NULL on an unknown/invalid URI or a pipeline that cannot be built (logged). */
lg_ingest *lg_ingest_new(const char *uri, int width, int height, double fps, lg_frame_ring *ring,
                         const lg_ingest_options *opt);
/* Stops the pipeline and threads (bounded: well under a second) and frees; *in = NULL. Does
 * not close the ring. Accepts NULL. */
void lg_ingest_free(lg_ingest **in);

/* ws input: one complete JPEG image (copied; the caller keeps data). Returns 0, LG_ENOTSUP
 * for other kinds, LG_EFORMAT when data is not a JPEG (no SOI/EOI markers) or larger than
 * 16 MiB, LG_EAGAIN while the pipeline is being rebuilt. A full queue drops the oldest. */
int lg_ingest_push_jpeg(lg_ingest *in, const uint8_t *data, size_t len);

void lg_ingest_get_status(lg_ingest *in, lg_ingest_status *st);
const char *lg_ingest_state_name(lg_ingest_state s);

/* Parses only the kind of a URI (for config validation): 0 or LG_EINVAL. */
int lg_ingest_parse_kind(const char *uri, lg_ingest_kind *kind);

#ifdef __cplusplus
}
#endif
#endif

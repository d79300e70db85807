/* recorder.h: records the encoded stream to a fragmented MP4 file (output.record) with
 * movflags frag_keyframe+empty_moov+default_base_moof: a fragment is flushed at every
 * keyframe, so the file is playable (ffprobe, ffplay, browsers via MSE) while it is written
 * and survives a crash up to the last fragment. Fed from the packet ring by its own thread
 * (mux_output.h); the recording starts at the next keyframe. A write error (disk full)
 * stops the recording (state failed); the stream goes on.
 *
 * Threads: _new starts the recorder thread; _get_status from any thread; _free from the
 * owner. */
#ifndef LG_RECORDER_H
#define LG_RECORDER_H

#include "mux_output.h"
#include "packet_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_recorder lg_recorder;

/* path: the .mp4 to create or overwrite (copied). ring: borrowed until _free returns.
 * NULL on a bad argument or a directory that cannot be written (logged). */
lg_recorder *lg_recorder_new(lg_packet_ring *ring, const char *path);
/* Writes the last fragment and the trailer, closes the file, frees; *r = NULL. Also done
 * by itself when the packet ring closes (state done). Accepts NULL. */
void lg_recorder_free(lg_recorder **r);
void lg_recorder_get_status(lg_recorder *r, lg_mux_output_status *st);

#ifdef __cplusplus
}
#endif
#endif

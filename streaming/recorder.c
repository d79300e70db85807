/* recorder.c: fragmented MP4 recording through mux_output (no reconnection: a file error
 * ends the recording). Threads: the mux_output thread; wrappers on the owner's thread. */
#include "recorder.h"

#include "lg_base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "recorder"

struct lg_recorder {
  lg_mux_output *out;
};

lg_recorder *lg_recorder_new(lg_packet_ring *ring, const char *path) {
  if (!ring || !path || !path[0]) {
    LG_ERR(MOD, "output.record needs a file path");
    return NULL;
  }
  /* Fail now, not at the first keyframe, when the file cannot be created. */
  FILE *f = fopen(path, "wb");
  if (!f) {
    LG_ERR(MOD, "cannot create %s: %s", path, strerror(errno));
    return NULL;
  }
  fclose(f);
  lg_mux_output_options mo = {0};
  mo.url = path;
  mo.format = "mp4";
  mo.movflags = "frag_keyframe+empty_moov+default_base_moof";
  mo.tag = MOD;
  mo.reconnect = false;
  lg_recorder *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->out = lg_mux_output_new(ring, &mo);
  if (!r->out) {
    free(r);
    return NULL;
  }
  return r;
}

void lg_recorder_free(lg_recorder **pr) {
  if (!pr || !*pr) return;
  lg_mux_output_free(&(*pr)->out);
  free(*pr);
  *pr = NULL;
}

void lg_recorder_get_status(lg_recorder *r, lg_mux_output_status *st) {
  if (r) lg_mux_output_get_status(r->out, st);
}

/* rtmp_push.c: RTMP push = the FLV muxer on an rtmp:// URL through mux_output, with
 * reconnection. Threads: the mux_output thread; these wrappers run on the owner's thread. */
#include "rtmp_push.h"

#include "lg_base.h"

#include <stdlib.h>
#include <string.h>

#define MOD "rtmp_push"

struct lg_rtmp_push {
  lg_mux_output *out;
};

lg_rtmp_push *lg_rtmp_push_new(lg_packet_ring *ring, const char *url,
                               const lg_rtmp_push_options *opt) {
  if (!ring || !url || (strncmp(url, "rtmp://", 7) != 0 && strncmp(url, "rtmps://", 8) != 0)) {
    LG_ERR(MOD, "output.rtmp must be an rtmp:// or rtmps:// URL, got `%s`", url ? url : "");
    return NULL;
  }
  lg_mux_output_options mo = {0};
  mo.url = url;
  mo.format = "flv";
  mo.tag = MOD;
  mo.reconnect = true;
  mo.reconnect_min_s = opt ? opt->reconnect_min_s : 1.0;
  mo.reconnect_max_s = opt ? opt->reconnect_max_s : 30.0;
  mo.io_timeout_s = opt ? opt->io_timeout_s : 5.0;
  lg_rtmp_push *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->out = lg_mux_output_new(ring, &mo);
  if (!p->out) {
    free(p);
    return NULL;
  }
  return p;
}

void lg_rtmp_push_free(lg_rtmp_push **pp) {
  if (!pp || !*pp) return;
  lg_mux_output_free(&(*pp)->out);
  free(*pp);
  *pp = NULL;
}

void lg_rtmp_push_get_status(lg_rtmp_push *p, lg_mux_output_status *st) {
  if (p) lg_mux_output_get_status(p->out, st);
}

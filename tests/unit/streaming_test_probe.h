/* streaming_test_probe.h: reads a stream or file back with ffprobe (the user's view of an
 * output): codec, size, decoded frame count, duration. Header-only, for streaming tests. */
#ifndef LG_STREAMING_TEST_PROBE_H
#define LG_STREAMING_TEST_PROBE_H

#include "streaming_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_probe {
  char codec[32];
  int width, height;
  int frames;      /* decoded video frames (nb_read_frames), -1 unknown */
  double duration; /* container duration in seconds, -1 unknown */
} st_probe;

static inline void st_probe_field(const char *out, const char *key, char *val, size_t n) {
  const char *p = strstr(out, key);
  val[0] = 0;
  if (!p) return;
  p += strlen(key);
  size_t i = 0;
  while (p[i] && p[i] != '\n' && i + 1 < n) {
    val[i] = p[i];
    i++;
  }
  val[i] = 0;
}

static inline void st_probe_cmd(const char *target, char *cmd, size_t n) {
  snprintf(cmd, n,
           "ffprobe -v error -rw_timeout 15000000 -count_frames -select_streams v:0 "
           "-show_entries stream=codec_name,width,height,nb_read_frames "
           "-show_entries format=duration -of default=nw=1 '%s'",
           target);
}

static inline void st_probe_parse(const char *out, st_probe *pr) {
  char v[64];
  memset(pr, 0, sizeof(*pr));
  pr->frames = -1;
  pr->duration = -1;
  st_probe_field(out, "codec_name=", pr->codec, sizeof(pr->codec));
  st_probe_field(out, "width=", v, sizeof(v));
  pr->width = atoi(v);
  st_probe_field(out, "height=", v, sizeof(v));
  pr->height = atoi(v);
  st_probe_field(out, "nb_read_frames=", v, sizeof(v));
  if (v[0] && strcmp(v, "N/A") != 0) pr->frames = atoi(v);
  st_probe_field(out, "duration=", v, sizeof(v));
  if (v[0] && strcmp(v, "N/A") != 0) pr->duration = atof(v);
}

/* Runs ffprobe on target (a file or URL) with a deadline. 0 when it ran and found a video
 * stream, -1 otherwise. */
static inline int st_ffprobe(const char *target, double timeout_s, st_probe *pr) {
  char cmd[1500], out[4096];
  st_probe_cmd(target, cmd, sizeof(cmd));
  int rc = st_capture(cmd, out, sizeof(out), timeout_s);
  fprintf(stderr, "ffprobe %s -> rc %d:\n%s", target, rc, out);
  st_probe_parse(out, pr);
  return rc == 0 && pr->codec[0] ? 0 : -1;
}

/* Starts ffprobe on target in the background with its stdout in out_path; returns the pid. */
static inline pid_t st_ffprobe_start(const char *target, const char *out_path) {
  char cmd[1500], full[2300];
  st_probe_cmd(target, cmd, sizeof(cmd));
  snprintf(full, sizeof(full), "exec %s > '%s'", cmd, out_path);
  return st_spawn(full);
}

/* Waits for a background ffprobe and parses its output. 0 or -1 like st_ffprobe. */
static inline int st_ffprobe_finish(pid_t pid, const char *out_path, double timeout_s,
                                    st_probe *pr) {
  char out[4096];
  int rc = st_wait(pid, timeout_s);
  if (rc < 0) st_kill(pid);
  FILE *f = fopen(out_path, "rb");
  size_t got = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
  out[got] = 0;
  if (f) fclose(f);
  fprintf(stderr, "ffprobe (background) -> rc %d:\n%s", rc, out);
  st_probe_parse(out, pr);
  return rc == 0 && pr->codec[0] ? 0 : -1;
}

#endif

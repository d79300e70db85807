/* testsrc.h: built-in synthetic test patterns producing RGB24 frames, used by `livegen
 * generate` and the tests when GStreamer is absent. "ball": a bouncing shaded ball over a
 * slowly moving gradient; "bars": eight colour bars scrolling sideways with a moving white
 * line. Both move every frame (so motion-aware noise sees motion) and are a pure function of
 * the frame index. Threads: one generator per thread. */
#ifndef LG_TESTSRC_H
#define LG_TESTSRC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LG_TESTSRC_BALL = 0, LG_TESTSRC_BARS = 1 } lg_testsrc_kind;

typedef struct lg_testsrc {
  lg_testsrc_kind kind;
  int width, height;
  uint64_t frame; /* index of the next frame */
} lg_testsrc;

/* name "ball" or "bars" (also "test:ball", "test:bars"); width, height >= 2. 0 or LG_EINVAL. */
int lg_testsrc_init(lg_testsrc *t, const char *name, int width, int height);
/* Writes the next frame, width*height*3 bytes RGB24, rows top to bottom. */
void lg_testsrc_next(lg_testsrc *t, uint8_t *rgb);

#ifdef __cplusplus
}
#endif
#endif

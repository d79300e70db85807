/* testsrc.c: synthetic RGB24 test patterns (see testsrc.h). Caller's thread. */
#include "testsrc.h"

#include "lg_base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lg_testsrc_init(lg_testsrc *t, const char *name, int width, int height) {
  memset(t, 0, sizeof *t);
  if (name && !strncmp(name, "test:", 5)) name += 5;
  if (!name || width < 2 || height < 2 || width > 16384 || height > 16384) {
    LG_ERR("testsrc", "bad test source %s %dx%d", name ? name : "(null)", width, height);
    return LG_EINVAL;
  }
  if (!strcmp(name, "ball"))
    t->kind = LG_TESTSRC_BALL;
  else if (!strcmp(name, "bars"))
    t->kind = LG_TESTSRC_BARS;
  else {
    LG_ERR("testsrc", "unknown test pattern '%s' (ball, bars)", name);
    return LG_EINVAL;
  }
  t->width = width;
  t->height = height;
  return 0;
}

static uint8_t u8(double v) {
  return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrint(v);
}

/* position bouncing in [0, len) with speed v per frame */
static double bounce(double pos, double len) {
  double p = fmod(pos, 2 * len);
  if (p < 0) p += 2 * len;
  return p < len ? p : 2 * len - p;
}

void lg_testsrc_next(lg_testsrc *t, uint8_t *rgb) {
  const int W = t->width, H = t->height;
  const double f = (double)t->frame;
  if (t->kind == LG_TESTSRC_BALL) {
    double r = 0.18 * (W < H ? W : H);
    double cx = r + bounce(f * 0.045 * W, W - 2 * r), cy = r + bounce(f * 0.06 * H, H - 2 * r);
    for (int y = 0; y < H; y++) {
      for (int x = 0; x < W; x++) {
        uint8_t *p = rgb + ((size_t)y * W + x) * 3;
        double gx = (double)x / W, gy = (double)y / H, ph = f * 0.02;
        double R = 40 + 60 * gx + 20 * sin(ph), G = 50 + 80 * gy, B = 90 + 60 * (1 - gx);
        double dx = x - cx, dy = y - cy, d2 = (dx * dx + dy * dy) / (r * r);
        if (d2 < 1.0) {
          double shade = 0.55 + 0.45 * sqrt(1.0 - d2) - 0.25 * (dx + dy) / (2 * r);
          R = 250 * shade;
          G = 120 * shade;
          B = 40 * shade;
        }
        p[0] = u8(R);
        p[1] = u8(G);
        p[2] = u8(B);
      }
    }
  } else {
    static const uint8_t bars[8][3] = {{235, 235, 235}, {235, 235, 16}, {16, 235, 235},
                                       {16, 235, 16},   {235, 16, 235}, {235, 16, 16},
                                       {16, 16, 235},   {16, 16, 16}};
    int shift = (int)((t->frame * 3) % (uint64_t)W);
    int line = (int)bounce(f * 2.0, H - 1);
    for (int y = 0; y < H; y++) {
      for (int x = 0; x < W; x++) {
        uint8_t *p = rgb + ((size_t)y * W + x) * 3;
        int b = (int)(((int64_t)((x + shift) % W) * 8) / W);
        if (abs(y - line) <= 1) {
          p[0] = p[1] = p[2] = 255;
        } else {
          memcpy(p, bars[b], 3);
        }
      }
    }
  }
  t->frame++;
}

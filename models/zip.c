/* zip.c: zip central directory reader for PyTorch checkpoints (see zip.h). Finds the end of
 * central directory record (and the ZIP64 locator/record when present), lists the entries with
 * ZIP64 extra fields applied, and resolves a STORED entry's data through its local header.
 * Every offset is checked against the archive size. Threads: any. */
#include "zip.h"

#include "lg_base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define SIG_CDIR 0x02014b50u
#define SIG_LOCAL 0x04034b50u

static int zfail(char *err, size_t errn, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int zfail(char *err, size_t errn, int code, const char *fmt, ...) {
  if (err && errn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
  }
  return code;
}

static uint16_t rd16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) {
  return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* True when [off, off+len) lies inside [0, n). */
static int in_bounds(uint64_t off, uint64_t len, size_t n) {
  return off <= n && len <= n - off;
}

void lg_zip_free(lg_zip *z) {
  if (!z) return;
  for (size_t i = 0; i < z->ne; i++)
    free(z->e[i].name);
  free(z->e);
  memset(z, 0, sizeof *z);
}

int lg_zip_open(lg_zip *z, const uint8_t *p, size_t n, char *err, size_t errn) {
  memset(z, 0, sizeof *z);
  z->p = p;
  z->n = n;
  if (n < 22) return zfail(err, errn, LG_EFORMAT, "zip: archive truncated (%zu bytes)", n);
  /* end of central directory: last 22 bytes plus a comment of up to 65535 */
  size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0;
  size_t eocd = SIZE_MAX;
  for (size_t pos = n - 22 + 1; pos-- > lo;) {
    if (rd32(p + pos) == SIG_EOCD && pos + 22 + rd16(p + pos + 20) <= n) {
      eocd = pos;
      break;
    }
  }
  if (eocd == SIZE_MAX)
    return zfail(err, errn, LG_EFORMAT, "zip: no end of central directory (truncated archive?)");
  const uint8_t *e = p + eocd;
  uint64_t count = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12);
  uint64_t cd_off = rd32(e + 16);
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
    return zfail(err, errn, LG_ENOTSUP, "zip: multi-disk archives are not supported");
  if (eocd >= 20 && rd32(p + eocd - 20) == SIG_LOC64) {
    uint64_t off64 = rd64(p + eocd - 20 + 8);
    if (!in_bounds(off64, 56, n) || rd32(p + off64) != SIG_EOCD64)
      return zfail(err, errn, LG_EFORMAT, "zip: bad ZIP64 end of central directory record");
    const uint8_t *e64 = p + off64;
    count = rd64(e64 + 32);
    cd_size = rd64(e64 + 40);
    cd_off = rd64(e64 + 48);
  } else if (count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
    return zfail(err, errn, LG_EFORMAT, "zip: ZIP64 values without a ZIP64 locator");
  }
  if (!in_bounds(cd_off, cd_size, n))
    return zfail(err, errn, LG_EFORMAT, "zip: central directory outside the archive");
  if (count > cd_size / 46)
    return zfail(err, errn, LG_EFORMAT,
                 "zip: %llu entries cannot fit a %llu-byte central directory",
                 (unsigned long long)count, (unsigned long long)cd_size);
  z->e = calloc(count ? (size_t)count : 1, sizeof *z->e);
  if (!z->e) return zfail(err, errn, LG_ENOMEM, "zip: out of memory");
  uint64_t pos = cd_off, end = cd_off + cd_size;
  int rc = 0;
  for (uint64_t i = 0; i < count; i++) {
    if (pos + 46 > end || rd32(p + pos) != SIG_CDIR) {
      rc = zfail(err, errn, LG_EFORMAT, "zip: central directory entry %llu is corrupt",
                 (unsigned long long)i);
      goto fail;
    }
    const uint8_t *c = p + pos;
    uint16_t nl = rd16(c + 28), xl = rd16(c + 30), cl = rd16(c + 32);
    if (pos + 46 + (uint64_t)nl + xl + cl > end) {
      rc = zfail(err, errn, LG_EFORMAT, "zip: central directory entry %llu overruns",
                 (unsigned long long)i);
      goto fail;
    }
    lg_zip_entry *en = &z->e[z->ne];
    en->flags = rd16(c + 8);
    en->method = rd16(c + 10);
    en->csize = rd32(c + 20);
    en->size = rd32(c + 24);
    en->local_off = rd32(c + 42);
    en->name = malloc((size_t)nl + 1);
    if (!en->name) {
      rc = zfail(err, errn, LG_ENOMEM, "zip: out of memory");
      goto fail;
    }
    memcpy(en->name, c + 46, nl);
    en->name[nl] = '\0';
    z->ne++;
    /* ZIP64 extended information: the 8-byte values replace the 0xffffffff ones, in order */
    const uint8_t *x = c + 46 + nl, *xe = x + xl;
    while (xe - x >= 4) {
      uint16_t id = rd16(x), sz = rd16(x + 2);
      if (sz > xe - x - 4) break;
      if (id == 1) {
        const uint8_t *f = x + 4, *fe = f + sz;
        uint64_t *slots[3] = {&en->size, &en->csize, &en->local_off};
        for (int k = 0; k < 3; k++) {
          if (*slots[k] != 0xffffffffu) continue;
          if (fe - f < 8) {
            rc = zfail(err, errn, LG_EFORMAT, "zip: '%s': short ZIP64 extra field", en->name);
            goto fail;
          }
          *slots[k] = rd64(f);
          f += 8;
        }
      }
      x += 4 + sz;
    }
    pos += 46 + (uint64_t)nl + xl + cl;
  }
  return 0;
fail:
  lg_zip_free(z);
  return rc;
}

const lg_zip_entry *lg_zip_find(const lg_zip *z, const char *name) {
  for (size_t i = 0; i < z->ne; i++)
    if (strcmp(z->e[i].name, name) == 0) return &z->e[i];
  return NULL;
}

int lg_zip_data(const lg_zip *z, const lg_zip_entry *e, const uint8_t **data, size_t *size,
                char *err, size_t errn) {
  if (e->flags & 1) return zfail(err, errn, LG_ENOTSUP, "zip: '%s' is encrypted", e->name);
  if (e->method != 0)
    return zfail(err, errn, LG_ENOTSUP,
                 "zip: '%s' is compressed (method %u); only stored entries are supported (save "
                 "with torch.save, which does not compress)",
                 e->name, e->method);
  if (e->csize != e->size)
    return zfail(err, errn, LG_EFORMAT, "zip: '%s': stored entry with size %llu != %llu", e->name,
                 (unsigned long long)e->csize, (unsigned long long)e->size);
  if (!in_bounds(e->local_off, 30, z->n) || rd32(z->p + e->local_off) != SIG_LOCAL)
    return zfail(err, errn, LG_EFORMAT, "zip: '%s': bad local header", e->name);
  const uint8_t *l = z->p + e->local_off;
  uint64_t start = e->local_off + 30 + (uint64_t)rd16(l + 26) + rd16(l + 28);
  if (!in_bounds(start, e->size, z->n))
    return zfail(err, errn, LG_EFORMAT, "zip: '%s': data (%llu bytes) extends past the archive",
                 e->name, (unsigned long long)e->size);
  *data = z->p + start;
  *size = (size_t)e->size;
  return 0;
}

/* zip.h: read-only index of a zip archive held in memory (the mmapped .pt/.pth written by
 * torch.save): central directory, ZIP64 end records and extra fields. Only STORED (method 0)
 * entries have usable data; the data is never copied. Threads: any (no shared state). */
#ifndef LG_ZIP_H
#define LG_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct lg_zip_entry {
  char *name;         /* NUL-terminated copy of the file name */
  uint16_t method;    /* 0 = stored */
  uint16_t flags;     /* general purpose flags (bit 0: encrypted) */
  uint64_t size;      /* uncompressed size */
  uint64_t csize;     /* compressed size */
  uint64_t local_off; /* offset of the local header */
} lg_zip_entry;

typedef struct lg_zip {
  const uint8_t *p;
  size_t n;
  lg_zip_entry *e;
  size_t ne;
} lg_zip;

/* Indexes the archive p[0..n). 0 or LG_E* with a message in err. */
int lg_zip_open(lg_zip *z, const uint8_t *p, size_t n, char *err, size_t errn);
void lg_zip_free(lg_zip *z);
const lg_zip_entry *lg_zip_find(const lg_zip *z, const char *name);
/* The data of a STORED entry: 0 with data and size set, or LG_E* with a message (compressed,
 * encrypted, sizes disagreeing or data outside the archive). */
int lg_zip_data(const lg_zip *z, const lg_zip_entry *e, const uint8_t **data, size_t *size,
                char *err, size_t errn);

#endif

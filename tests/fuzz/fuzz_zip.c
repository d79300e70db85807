/* fuzz_zip.c: libFuzzer target for the zip central directory reader (zip.c): indexes the
 * input, resolves every entry's data and reads its first and last byte. */
#include "zip.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lg_zip z;
  char err[256];
  if (lg_zip_open(&z, data, size, err, sizeof err) != 0) return 0;
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < z.ne; i++) {
    const uint8_t *d;
    size_t n;
    if (lg_zip_find(&z, z.e[i].name) == NULL) __builtin_trap();
    if (lg_zip_data(&z, &z.e[i], &d, &n, err, sizeof err) == 0 && n > 0) {
      if (d < data || d + n > data + size) __builtin_trap();
      sink ^= d[0];
      sink ^= d[n - 1];
    }
  }
  (void)sink;
  lg_zip_free(&z);
  return 0;
}

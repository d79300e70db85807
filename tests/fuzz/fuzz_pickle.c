/* fuzz_pickle.c: libFuzzer target for the restricted pickle VM (pickle.c): runs the input and
 * walks the result (bounded depth, so memo-made cycles terminate), checking tensor views
 * against their storages. */
#include "pickle.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long g_budget; /* values visited per input: memo cycles would make the walk exponential */

static void walk(const lg_pk_value *v, int depth) {
  if (!v || depth > 16 || --g_budget < 0) return;
  switch (v->type) {
  case LG_PK_TUPLE:
  case LG_PK_LIST:
  case LG_PK_DICT:
    for (size_t i = 0; i < v->n; i++)
      walk(v->items[i], depth + 1);
    break;
  case LG_PK_TENSOR: {
    if (!v->storage || v->storage->type != LG_PK_STORAGE) __builtin_trap();
    uint64_t numel = 1, last = (uint64_t)v->offset;
    for (int d = 0; d < v->ndim; d++) {
      if (v->shape[d] < 0 || v->stride[d] < 0) __builtin_trap();
      numel *= (uint64_t)v->shape[d];
    }
    if (numel) {
      for (int d = 0; d < v->ndim; d++)
        last += (uint64_t)(v->shape[d] - 1) * v->stride[d];
      if (last >= v->storage->numel) __builtin_trap();
    }
    break;
  }
  case LG_PK_STR:
  case LG_PK_BYTES:
  case LG_PK_GLOBAL:
    if (v->s[v->slen] != '\0') __builtin_trap();
    break;
  default: break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lg_pickle pk;
  char err[256];
  if (lg_pickle_load(&pk, data, size, err, sizeof err) != 0) return 0;
  g_budget = 100000;
  walk(pk.root, 0);
  (void)lg_pk_dict_get(pk.root, "generator");
  lg_pickle_free(&pk);
  return 0;
}

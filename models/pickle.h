/* pickle.h: a restricted pickle VM for PyTorch state dicts (data.pkl inside a torch.save zip).
 * It understands only the opcodes a state dict needs (protocol 2-5 subset) and only a whitelist
 * of globals (OrderedDict, torch tensor/parameter rebuilders, torch storage classes and float
 * dtypes, torch.Size); anything else is an error. Nothing in the input is ever executed: a
 * "call" (REDUCE) of a whitelisted global is interpreted by the VM. Storages are returned as
 * references (key, element type, element count); the caller finds their bytes.
 * Threads: any (no shared state). */
#ifndef LG_PICKLE_H
#define LG_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#define LG_PK_MAX_DIMS 5

typedef enum {
  LG_PK_NONE = 0,
  LG_PK_BOOL,
  LG_PK_INT,
  LG_PK_FLOAT,
  LG_PK_STR,
  LG_PK_BYTES,
  LG_PK_TUPLE,
  LG_PK_LIST,
  LG_PK_DICT,
  LG_PK_GLOBAL,  /* a whitelisted class/function/dtype: s = "module.name" */
  LG_PK_STORAGE, /* persistent-id storage: s = key, st = element type, numel */
  LG_PK_TENSOR,  /* view on a storage */
} lg_pk_type;

/* Storage element types (torch.<X>Storage). */
typedef enum {
  LG_PK_ST_F32 = 0,
  LG_PK_ST_F16,
  LG_PK_ST_BF16,
  LG_PK_ST_F64,
  LG_PK_ST_I64,
  LG_PK_ST_I32,
  LG_PK_ST_I16,
  LG_PK_ST_I8,
  LG_PK_ST_U8,
  LG_PK_ST_BOOL,
  LG_PK_ST_UNTYPED, /* torch.UntypedStorage: bytes */
} lg_pk_storage_type;

size_t lg_pk_storage_elsize(lg_pk_storage_type t);
const char *lg_pk_storage_name(lg_pk_storage_type t);

typedef struct lg_pk_value lg_pk_value;
struct lg_pk_value {
  lg_pk_type type;
  int64_t i;           /* BOOL, INT */
  double f;            /* FLOAT */
  char *s;             /* STR, BYTES, GLOBAL name, STORAGE key: NUL-terminated */
  size_t slen;         /* bytes in s (STR/BYTES may contain NULs) */
  lg_pk_value **items; /* TUPLE/LIST: n items; DICT: n (key, value) pairs in 2n slots */
  size_t n, cap;
  /* STORAGE */
  lg_pk_storage_type st;
  uint64_t numel;
  /* TENSOR: element (i0..) at storage offset + sum(i_k * stride[k]), all within the storage */
  lg_pk_value *storage;
  int64_t offset;
  int ndim;
  int64_t shape[LG_PK_MAX_DIMS];
  int64_t stride[LG_PK_MAX_DIMS];
  lg_pk_value *next_alloc; /* VM-owned allocation chain */
};

typedef struct lg_pickle {
  lg_pk_value *root; /* the value STOP returned */
  lg_pk_value *all;  /* every value, freed by lg_pickle_free */
  size_t nvalues;
} lg_pickle;

/* Runs the pickle p[0..n). 0 or LG_E* with a message in err (e.g. "pickle: global os.system not
 * allowed"). */
int lg_pickle_load(lg_pickle *pk, const uint8_t *p, size_t n, char *err, size_t errn);
void lg_pickle_free(lg_pickle *pk);
/* Value of a DICT for a STR key, NULL if absent or d is not a dict. */
const lg_pk_value *lg_pk_dict_get(const lg_pk_value *d, const char *key);

#endif

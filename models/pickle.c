/* pickle.c: the restricted pickle VM of pickle.h. A stack machine over lg_pk_value nodes that
 * are all chained into one allocation list (containers may reference each other, even
 * cyclically, through the memo; freeing never recurses). Stack, mark stack, memo, value count
 * and string sizes are bounded; every read is checked against the end of the input.
 * Threads: any. */
#include "pickle.h"

#include "lg_base.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_MAX_STACK (1u << 20)
#define PK_MAX_MARKS (1u << 16)
#define PK_MAX_MEMO (1u << 21)
#define PK_MAX_VALUES (1u << 22) /* a state dict needs ~15 per tensor */

size_t lg_pk_storage_elsize(lg_pk_storage_type t) {
  switch (t) {
  case LG_PK_ST_F32: return 4;
  case LG_PK_ST_F16: return 2;
  case LG_PK_ST_BF16: return 2;
  case LG_PK_ST_F64: return 8;
  case LG_PK_ST_I64: return 8;
  case LG_PK_ST_I32: return 4;
  case LG_PK_ST_I16: return 2;
  case LG_PK_ST_I8: return 1;
  case LG_PK_ST_U8: return 1;
  case LG_PK_ST_BOOL: return 1;
  case LG_PK_ST_UNTYPED: return 1;
  }
  return 1;
}

const char *lg_pk_storage_name(lg_pk_storage_type t) {
  switch (t) {
  case LG_PK_ST_F32: return "float32";
  case LG_PK_ST_F16: return "float16";
  case LG_PK_ST_BF16: return "bfloat16";
  case LG_PK_ST_F64: return "float64";
  case LG_PK_ST_I64: return "int64";
  case LG_PK_ST_I32: return "int32";
  case LG_PK_ST_I16: return "int16";
  case LG_PK_ST_I8: return "int8";
  case LG_PK_ST_U8: return "uint8";
  case LG_PK_ST_BOOL: return "bool";
  case LG_PK_ST_UNTYPED: return "untyped";
  }
  return "?";
}

/* The globals a state dict may name. kind: 0 plain (callable by REDUCE), 1 storage class. */
typedef struct pk_global {
  const char *name;
  int kind;
  lg_pk_storage_type st;
} pk_global;

static const pk_global k_globals[] = {
    {"collections.OrderedDict", 0, 0},
    {"torch._utils._rebuild_tensor_v2", 0, 0},
    {"torch._utils._rebuild_parameter", 0, 0},
    {"torch._utils._rebuild_parameter_with_state", 0, 0},
    {"torch.Size", 0, 0},
    {"torch.float32", 0, 0},
    {"torch.float16", 0, 0},
    {"torch.bfloat16", 0, 0},
    {"torch.FloatStorage", 1, LG_PK_ST_F32},
    {"torch.HalfStorage", 1, LG_PK_ST_F16},
    {"torch.BFloat16Storage", 1, LG_PK_ST_BF16},
    {"torch.DoubleStorage", 1, LG_PK_ST_F64},
    {"torch.LongStorage", 1, LG_PK_ST_I64},
    {"torch.IntStorage", 1, LG_PK_ST_I32},
    {"torch.ShortStorage", 1, LG_PK_ST_I16},
    {"torch.CharStorage", 1, LG_PK_ST_I8},
    {"torch.ByteStorage", 1, LG_PK_ST_U8},
    {"torch.BoolStorage", 1, LG_PK_ST_BOOL},
    {"torch.UntypedStorage", 1, LG_PK_ST_UNTYPED},
    {"torch.storage.UntypedStorage", 1, LG_PK_ST_UNTYPED},
};

typedef struct pk_vm {
  const uint8_t *p;
  size_t n, pos;
  lg_pickle *pk;
  lg_pk_value **stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  lg_pk_value **memo;
  size_t memo_n;     /* slots allocated */
  size_t memo_count; /* keys defined (len(memo) in Python: the MEMOIZE index) */
  char *err;
  size_t errn;
} pk_vm;

static int vfail(pk_vm *vm, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int vfail(pk_vm *vm, int code, const char *fmt, ...) {
  if (vm->err && vm->errn) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(vm->err, vm->errn, "pickle: %s", msg);
  }
  return code;
}

static lg_pk_value *vnew(pk_vm *vm, lg_pk_type type) {
  if (vm->pk->nvalues >= PK_MAX_VALUES) return NULL;
  lg_pk_value *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  v->type = type;
  v->next_alloc = vm->pk->all;
  vm->pk->all = v;
  vm->pk->nvalues++;
  return v;
}

static int push(pk_vm *vm, lg_pk_value *v) {
  if (!v) return vfail(vm, LG_ENOMEM, "out of memory (or too many values)");
  if (vm->sp == vm->scap) {
    if (vm->scap >= PK_MAX_STACK) return vfail(vm, LG_ERANGE, "stack deeper than %u", PK_MAX_STACK);
    size_t nc = vm->scap ? vm->scap * 2 : 64;
    lg_pk_value **s = realloc(vm->stack, nc * sizeof *s);
    if (!s) return vfail(vm, LG_ENOMEM, "out of memory");
    vm->stack = s;
    vm->scap = nc;
  }
  vm->stack[vm->sp++] = v;
  return 0;
}

/* Lowest stack index usable by the current op (above the innermost mark). */
static size_t floor_sp(const pk_vm *vm) {
  return vm->nmarks ? vm->marks[vm->nmarks - 1] : 0;
}

static int pop(pk_vm *vm, lg_pk_value **out) {
  if (vm->sp <= floor_sp(vm)) return vfail(vm, LG_EFORMAT, "stack underflow at byte %zu", vm->pos);
  *out = vm->stack[--vm->sp];
  return 0;
}

static int top(pk_vm *vm, lg_pk_value **out) {
  if (vm->sp <= floor_sp(vm)) return vfail(vm, LG_EFORMAT, "stack empty at byte %zu", vm->pos);
  *out = vm->stack[vm->sp - 1];
  return 0;
}

static int pop_mark(pk_vm *vm, size_t *base) {
  if (!vm->nmarks) return vfail(vm, LG_EFORMAT, "no MARK at byte %zu", vm->pos);
  *base = vm->marks[--vm->nmarks];
  return 0;
}

static int append_item(pk_vm *vm, lg_pk_value *c, lg_pk_value *v) {
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 4;
    if (nc > PK_MAX_VALUES) return vfail(vm, LG_ERANGE, "container too large");
    lg_pk_value **it = realloc(c->items, nc * sizeof *it);
    if (!it) return vfail(vm, LG_ENOMEM, "out of memory");
    c->items = it;
    c->cap = nc;
  }
  c->items[c->n++] = v;
  return 0;
}

/* d[k] = v. Items are appended as (key, value) pairs without a duplicate scan (that would be
 * quadratic on hostile input); lookups take the last pair, and the checkpoint layer rejects
 * duplicate tensor names. */
static int dict_set(pk_vm *vm, lg_pk_value *d, lg_pk_value *k, lg_pk_value *v) {
  if (d->type != LG_PK_DICT) return vfail(vm, LG_EFORMAT, "SETITEM on a non-dict");
  int rc = append_item(vm, d, k);
  if (!rc) rc = append_item(vm, d, v);
  return rc;
}

const lg_pk_value *lg_pk_dict_get(const lg_pk_value *d, const char *key) {
  if (!d || d->type != LG_PK_DICT) return NULL;
  size_t kl = strlen(key);
  for (size_t i = d->n; i >= 2; i -= 2) {
    const lg_pk_value *k = d->items[i - 2];
    if (k->type == LG_PK_STR && k->slen == kl && memcmp(k->s, key, kl) == 0) return d->items[i - 1];
  }
  return NULL;
}

static int need(pk_vm *vm, size_t k) {
  if (k > vm->n - vm->pos)
    return vfail(vm, LG_EFORMAT, "truncated at byte %zu (needs %zu more)", vm->pos, k);
  return 0;
}

static uint64_t rdle(const uint8_t *p, int k) {
  uint64_t v = 0;
  for (int i = k - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static int push_string(pk_vm *vm, lg_pk_type type, uint64_t len) {
  if (len > vm->n - vm->pos)
    return vfail(vm, LG_EFORMAT, "string of %llu bytes past the end at byte %zu",
                 (unsigned long long)len, vm->pos);
  lg_pk_value *v = vnew(vm, type);
  if (!v) return vfail(vm, LG_ENOMEM, "out of memory");
  v->s = malloc((size_t)len + 1);
  if (!v->s) return vfail(vm, LG_ENOMEM, "out of memory");
  memcpy(v->s, vm->p + vm->pos, (size_t)len);
  v->s[len] = '\0';
  v->slen = (size_t)len;
  vm->pos += (size_t)len;
  return push(vm, v);
}

static int push_int(pk_vm *vm, int64_t x) {
  lg_pk_value *v = vnew(vm, LG_PK_INT);
  if (v) v->i = x;
  return push(vm, v);
}

static int make_global(pk_vm *vm, const char *mod, size_t ml, const char *name, size_t nl) {
  char full[160];
  if (ml + nl + 2 > sizeof full || memchr(mod, 0, ml) || memchr(name, 0, nl))
    return vfail(vm, LG_EFORMAT, "global name too long or malformed");
  memcpy(full, mod, ml);
  full[ml] = '.';
  memcpy(full + ml + 1, name, nl);
  full[ml + 1 + nl] = '\0';
  for (size_t i = 0; i < sizeof k_globals / sizeof k_globals[0]; i++) {
    if (strcmp(full, k_globals[i].name) == 0) {
      lg_pk_value *v = vnew(vm, LG_PK_GLOBAL);
      if (!v) return vfail(vm, LG_ENOMEM, "out of memory");
      v->s = strdup(full);
      if (!v->s) return vfail(vm, LG_ENOMEM, "out of memory");
      v->slen = strlen(full);
      v->st = k_globals[i].st;
      v->i = k_globals[i].kind;
      return push(vm, v);
    }
  }
  /* print only printable bytes of an attacker-chosen name */
  for (char *c = full; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) *c = '?';
  return vfail(vm, LG_ENOTSUP, "global %s not allowed", full);
}

static bool is_global(const lg_pk_value *v, const char *name) {
  return v->type == LG_PK_GLOBAL && strcmp(v->s, name) == 0;
}

static int int_arg(pk_vm *vm, const lg_pk_value *v, int64_t lo, int64_t hi, const char *what,
                   int64_t *out) {
  if (v->type != LG_PK_INT || v->i < lo || v->i > hi)
    return vfail(vm, LG_EFORMAT, "%s: expected an integer in [%lld, %lld]", what, (long long)lo,
                 (long long)hi);
  *out = v->i;
  return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(pk_vm *vm, const lg_pk_value *args, lg_pk_value **out) {
  if (args->n < 4 || args->n > 7) return vfail(vm, LG_EFORMAT, "_rebuild_tensor_v2: bad args");
  const lg_pk_value *st = args->items[0], *sz = args->items[2], *sd = args->items[3];
  if (st->type != LG_PK_STORAGE)
    return vfail(vm, LG_EFORMAT, "_rebuild_tensor_v2: first argument is not a storage");
  if (sz->type != LG_PK_TUPLE || sd->type != LG_PK_TUPLE || sz->n != sd->n)
    return vfail(vm, LG_EFORMAT, "_rebuild_tensor_v2: size/stride are not tuples of one length");
  if (sz->n > LG_PK_MAX_DIMS)
    return vfail(vm, LG_ENOTSUP, "tensor with %zu dims (at most %d)", sz->n, LG_PK_MAX_DIMS);
  lg_pk_value *t = vnew(vm, LG_PK_TENSOR);
  if (!t) return vfail(vm, LG_ENOMEM, "out of memory");
  t->storage = (lg_pk_value *)st;
  const int64_t lim = (int64_t)1 << 48;
  int rc = int_arg(vm, args->items[1], 0, lim, "storage offset", &t->offset);
  if (rc) return rc;
  t->ndim = (int)sz->n;
  uint64_t numel = 1, last = (uint64_t)t->offset;
  for (int d = 0; d < t->ndim; d++) {
    if ((rc = int_arg(vm, sz->items[d], 0, lim, "tensor size", &t->shape[d])) ||
        (rc = int_arg(vm, sd->items[d], 0, lim, "tensor stride", &t->stride[d])))
      return rc;
    numel *= (uint64_t)t->shape[d];
    if (numel > (uint64_t)lim) return vfail(vm, LG_ERANGE, "tensor too large");
  }
  if (numel > 0) {
    for (int d = 0; d < t->ndim; d++) {
      uint64_t span;
      if (__builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d], &span) ||
          __builtin_add_overflow(last, span, &last) || last > (uint64_t)lim * 4)
        return vfail(vm, LG_ERANGE, "tensor extent too large");
    }
    if (last >= st->numel)
      return vfail(vm, LG_EFORMAT,
                   "tensor view (offset %lld, last element %llu) outside its storage '%s' of %llu "
                   "elements",
                   (long long)t->offset, (unsigned long long)last, st->s,
                   (unsigned long long)st->numel);
  }
  *out = t;
  return 0;
}

static int op_reduce(pk_vm *vm) {
  lg_pk_value *args = NULL, *fn = NULL, *res = NULL;
  int rc = pop(vm, &args);
  if (!rc) rc = pop(vm, &fn);
  if (rc) return rc;
  if (fn->type != LG_PK_GLOBAL) return vfail(vm, LG_EFORMAT, "REDUCE of a non-global");
  if (args->type != LG_PK_TUPLE) return vfail(vm, LG_EFORMAT, "REDUCE arguments not a tuple");
  if (is_global(fn, "collections.OrderedDict")) {
    if (args->n != 0) return vfail(vm, LG_ENOTSUP, "OrderedDict with constructor arguments");
    res = vnew(vm, LG_PK_DICT);
  } else if (is_global(fn, "torch._utils._rebuild_tensor_v2")) {
    if ((rc = rebuild_tensor(vm, args, &res))) return rc;
  } else if (is_global(fn, "torch._utils._rebuild_parameter") ||
             is_global(fn, "torch._utils._rebuild_parameter_with_state")) {
    if (args->n < 1 || args->items[0]->type != LG_PK_TENSOR)
      return vfail(vm, LG_EFORMAT, "%s: first argument is not a tensor", fn->s);
    res = args->items[0];
  } else if (is_global(fn, "torch.Size")) {
    if (args->n != 1 || args->items[0]->type != LG_PK_TUPLE)
      return vfail(vm, LG_EFORMAT, "torch.Size: argument is not a tuple");
    res = args->items[0];
  } else {
    return vfail(vm, LG_ENOTSUP, "cannot call %s", fn->s);
  }
  return push(vm, res);
}

/* ('storage', storage_type, key, location, numel) */
static int op_persid(pk_vm *vm) {
  lg_pk_value *pid = NULL;
  int rc = pop(vm, &pid);
  if (rc) return rc;
  if (pid->type != LG_PK_TUPLE || pid->n != 5 || pid->items[0]->type != LG_PK_STR ||
      strcmp(pid->items[0]->s, "storage") != 0)
    return vfail(vm, LG_EFORMAT, "persistent id is not ('storage', type, key, location, numel)");
  const lg_pk_value *ty = pid->items[1], *key = pid->items[2], *num = pid->items[4];
  if (ty->type != LG_PK_GLOBAL || ty->i != 1)
    return vfail(vm, LG_EFORMAT, "persistent id: storage type is not a storage class");
  if (key->type != LG_PK_STR || key->slen == 0 || key->slen > 64)
    return vfail(vm, LG_EFORMAT, "persistent id: bad storage key");
  for (size_t i = 0; i < key->slen; i++) {
    char ch = key->s[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          ch == '_' || ch == '-'))
      return vfail(vm, LG_EFORMAT, "persistent id: storage key has odd characters");
  }
  if (num->type != LG_PK_INT || num->i < 0)
    return vfail(vm, LG_EFORMAT, "persistent id: bad element count");
  lg_pk_value *s = vnew(vm, LG_PK_STORAGE);
  if (!s) return vfail(vm, LG_ENOMEM, "out of memory");
  s->s = strdup(key->s);
  if (!s->s) return vfail(vm, LG_ENOMEM, "out of memory");
  s->slen = key->slen;
  s->st = ty->st;
  s->numel = (uint64_t)num->i;
  return push(vm, s);
}

static int memo_put(pk_vm *vm, uint64_t idx) {
  lg_pk_value *v = NULL;
  int rc = top(vm, &v);
  if (rc) return rc;
  if (idx >= PK_MAX_MEMO)
    return vfail(vm, LG_ERANGE, "memo index %llu too large", (unsigned long long)idx);
  if (idx >= vm->memo_n) {
    size_t nn = vm->memo_n ? vm->memo_n : 64;
    while (nn <= idx)
      nn *= 2;
    lg_pk_value **m = realloc(vm->memo, nn * sizeof *m);
    if (!m) return vfail(vm, LG_ENOMEM, "out of memory");
    memset(m + vm->memo_n, 0, (nn - vm->memo_n) * sizeof *m);
    vm->memo = m;
    vm->memo_n = nn;
  }
  if (!vm->memo[idx]) vm->memo_count++;
  vm->memo[idx] = v;
  return 0;
}

static int memo_get(pk_vm *vm, uint64_t idx) {
  if (idx >= vm->memo_n || !vm->memo[idx])
    return vfail(vm, LG_EFORMAT, "memo key %llu not defined", (unsigned long long)idx);
  return push(vm, vm->memo[idx]);
}

/* Builds a tuple of the values above base (or the last k). */
static int make_tuple(pk_vm *vm, size_t base) {
  lg_pk_value *t = vnew(vm, LG_PK_TUPLE);
  if (!t) return vfail(vm, LG_ENOMEM, "out of memory");
  for (size_t i = base; i < vm->sp; i++) {
    int rc = append_item(vm, t, vm->stack[i]);
    if (rc) return rc;
  }
  vm->sp = base;
  return push(vm, t);
}

static int run(pk_vm *vm) {
  for (;;) {
    if (vm->pos >= vm->n) return vfail(vm, LG_EFORMAT, "truncated: no STOP");
    uint8_t op = vm->p[vm->pos++];
    int rc = 0;
    switch (op) {
    case 0x80: /* PROTO */
      if ((rc = need(vm, 1))) return rc;
      if (vm->p[vm->pos] > 5) return vfail(vm, LG_ENOTSUP, "protocol %u", vm->p[vm->pos]);
      vm->pos++;
      break;
    case 0x95: /* FRAME: a length hint; the frame contents follow inline */
      if ((rc = need(vm, 8))) return rc;
      vm->pos += 8;
      break;
    case '}': rc = push(vm, vnew(vm, LG_PK_DICT)); break;
    case ']': rc = push(vm, vnew(vm, LG_PK_LIST)); break;
    case ')': rc = push(vm, vnew(vm, LG_PK_TUPLE)); break;
    case 'N': rc = push(vm, vnew(vm, LG_PK_NONE)); break;
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */ {
      lg_pk_value *v = vnew(vm, LG_PK_BOOL);
      if (v) v->i = op == 0x88;
      rc = push(vm, v);
      break;
    }
    case '(': /* MARK */
      if (vm->nmarks == vm->mcap) {
        if (vm->mcap >= PK_MAX_MARKS) return vfail(vm, LG_ERANGE, "too many nested MARKs");
        size_t nc = vm->mcap ? vm->mcap * 2 : 16;
        size_t *m = realloc(vm->marks, nc * sizeof *m);
        if (!m) return vfail(vm, LG_ENOMEM, "out of memory");
        vm->marks = m;
        vm->mcap = nc;
      }
      vm->marks[vm->nmarks++] = vm->sp;
      break;
    case 'X': /* BINUNICODE */
      if ((rc = need(vm, 4))) return rc;
      vm->pos += 4;
      rc = push_string(vm, LG_PK_STR, rdle(vm->p + vm->pos - 4, 4));
      break;
    case 0x8c: /* SHORT_BINUNICODE */
      if ((rc = need(vm, 1))) return rc;
      vm->pos += 1;
      rc = push_string(vm, LG_PK_STR, vm->p[vm->pos - 1]);
      break;
    case 0x8d: /* BINUNICODE8 */
      if ((rc = need(vm, 8))) return rc;
      vm->pos += 8;
      rc = push_string(vm, LG_PK_STR, rdle(vm->p + vm->pos - 8, 8));
      break;
    case 'C': /* SHORT_BINBYTES */
      if ((rc = need(vm, 1))) return rc;
      vm->pos += 1;
      rc = push_string(vm, LG_PK_BYTES, vm->p[vm->pos - 1]);
      break;
    case 'B': /* BINBYTES */
      if ((rc = need(vm, 4))) return rc;
      vm->pos += 4;
      rc = push_string(vm, LG_PK_BYTES, rdle(vm->p + vm->pos - 4, 4));
      break;
    case 0x8e: /* BINBYTES8 */
      if ((rc = need(vm, 8))) return rc;
      vm->pos += 8;
      rc = push_string(vm, LG_PK_BYTES, rdle(vm->p + vm->pos - 8, 8));
      break;
    case 'J': /* BININT: signed 4 bytes */
      if ((rc = need(vm, 4))) return rc;
      rc = push_int(vm, (int32_t)(uint32_t)rdle(vm->p + vm->pos, 4));
      vm->pos += 4;
      break;
    case 'K': /* BININT1 */
      if ((rc = need(vm, 1))) return rc;
      rc = push_int(vm, vm->p[vm->pos++]);
      break;
    case 'M': /* BININT2 */
      if ((rc = need(vm, 2))) return rc;
      rc = push_int(vm, (int64_t)rdle(vm->p + vm->pos, 2));
      vm->pos += 2;
      break;
    case 0x8a: /* LONG1: n bytes little-endian two's complement */ {
      if ((rc = need(vm, 1))) return rc;
      size_t k = vm->p[vm->pos++];
      if ((rc = need(vm, k))) return rc;
      if (k > 8) return vfail(vm, LG_ERANGE, "integer of %zu bytes", k);
      uint64_t u = k ? rdle(vm->p + vm->pos, (int)k) : 0;
      if (k && k < 8 && (vm->p[vm->pos + k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
      vm->pos += k;
      rc = push_int(vm, (int64_t)u);
      break;
    }
    case 'G': /* BINFLOAT: big-endian double */ {
      if ((rc = need(vm, 8))) return rc;
      uint64_t u = 0;
      for (int i = 0; i < 8; i++)
        u = (u << 8) | vm->p[vm->pos + i];
      vm->pos += 8;
      lg_pk_value *v = vnew(vm, LG_PK_FLOAT);
      if (v) memcpy(&v->f, &u, 8);
      rc = push(vm, v);
      break;
    }
    case 't': /* TUPLE */ {
      size_t base = 0;
      if ((rc = pop_mark(vm, &base))) return rc;
      rc = make_tuple(vm, base);
      break;
    }
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */ {
      size_t k = (size_t)(op - 0x84);
      if (vm->sp < floor_sp(vm) + k) return vfail(vm, LG_EFORMAT, "stack underflow (TUPLE%zu)", k);
      rc = make_tuple(vm, vm->sp - k);
      break;
    }
    case 'l': /* LIST */
    case 'd': /* DICT */ {
      size_t base = 0;
      if ((rc = pop_mark(vm, &base))) return rc;
      lg_pk_value *c = vnew(vm, op == 'l' ? LG_PK_LIST : LG_PK_DICT);
      if (!c) return vfail(vm, LG_ENOMEM, "out of memory");
      if (op == 'd' && (vm->sp - base) % 2) return vfail(vm, LG_EFORMAT, "DICT with odd items");
      for (size_t i = base; i < vm->sp && !rc; i += op == 'l' ? 1 : 2)
        rc = op == 'l' ? append_item(vm, c, vm->stack[i])
                       : dict_set(vm, c, vm->stack[i], vm->stack[i + 1]);
      vm->sp = base;
      if (!rc) rc = push(vm, c);
      break;
    }
    case '0': /* POP */ {
      lg_pk_value *v = NULL;
      rc = pop(vm, &v);
      break;
    }
    case '1': /* POP_MARK */ {
      size_t base = 0;
      if ((rc = pop_mark(vm, &base))) return rc;
      vm->sp = base;
      break;
    }
    case 'q': /* BINPUT */
      if ((rc = need(vm, 1))) return rc;
      rc = memo_put(vm, vm->p[vm->pos++]);
      break;
    case 'r': /* LONG_BINPUT */
      if ((rc = need(vm, 4))) return rc;
      rc = memo_put(vm, rdle(vm->p + vm->pos, 4));
      vm->pos += 4;
      break;
    case 0x94: /* MEMOIZE */ rc = memo_put(vm, vm->memo_count); break;
    case 'h': /* BINGET */
      if ((rc = need(vm, 1))) return rc;
      rc = memo_get(vm, vm->p[vm->pos++]);
      break;
    case 'j': /* LONG_BINGET */
      if ((rc = need(vm, 4))) return rc;
      rc = memo_get(vm, rdle(vm->p + vm->pos, 4));
      vm->pos += 4;
      break;
    case 's': /* SETITEM */ {
      lg_pk_value *v = NULL, *k = NULL, *d = NULL;
      if ((rc = pop(vm, &v)) || (rc = pop(vm, &k)) || (rc = top(vm, &d))) return rc;
      rc = dict_set(vm, d, k, v);
      break;
    }
    case 'u': /* SETITEMS */ {
      size_t base = 0;
      lg_pk_value *d = NULL;
      if ((rc = pop_mark(vm, &base))) return rc;
      if ((vm->sp - base) % 2) return vfail(vm, LG_EFORMAT, "SETITEMS with odd items");
      if (base <= floor_sp(vm)) return vfail(vm, LG_EFORMAT, "SETITEMS: no dict");
      d = vm->stack[base - 1];
      for (size_t i = base; i < vm->sp && !rc; i += 2)
        rc = dict_set(vm, d, vm->stack[i], vm->stack[i + 1]);
      vm->sp = base;
      break;
    }
    case 'a': /* APPEND */ {
      lg_pk_value *v = NULL, *l = NULL;
      if ((rc = pop(vm, &v)) || (rc = top(vm, &l))) return rc;
      if (l->type != LG_PK_LIST) return vfail(vm, LG_EFORMAT, "APPEND to a non-list");
      rc = append_item(vm, l, v);
      break;
    }
    case 'e': /* APPENDS */ {
      size_t base = 0;
      if ((rc = pop_mark(vm, &base))) return rc;
      if (base <= floor_sp(vm)) return vfail(vm, LG_EFORMAT, "APPENDS: no list");
      lg_pk_value *l = vm->stack[base - 1];
      if (l->type != LG_PK_LIST) return vfail(vm, LG_EFORMAT, "APPENDS to a non-list");
      for (size_t i = base; i < vm->sp && !rc; i++)
        rc = append_item(vm, l, vm->stack[i]);
      vm->sp = base;
      break;
    }
    case 'c': /* GLOBAL "module\nname\n" */ {
      const uint8_t *s = vm->p + vm->pos, *e = vm->p + vm->n;
      const uint8_t *nl1 = memchr(s, '\n', (size_t)(e - s));
      if (!nl1) return vfail(vm, LG_EFORMAT, "GLOBAL: truncated");
      const uint8_t *nl2 = memchr(nl1 + 1, '\n', (size_t)(e - nl1 - 1));
      if (!nl2) return vfail(vm, LG_EFORMAT, "GLOBAL: truncated");
      vm->pos = (size_t)(nl2 + 1 - vm->p);
      rc = make_global(vm, (const char *)s, (size_t)(nl1 - s), (const char *)nl1 + 1,
                       (size_t)(nl2 - nl1 - 1));
      break;
    }
    case 0x93: /* STACK_GLOBAL */ {
      lg_pk_value *name = NULL, *mod = NULL;
      if ((rc = pop(vm, &name)) || (rc = pop(vm, &mod))) return rc;
      if (name->type != LG_PK_STR || mod->type != LG_PK_STR)
        return vfail(vm, LG_EFORMAT, "STACK_GLOBAL: module and name must be strings");
      rc = make_global(vm, mod->s, mod->slen, name->s, name->slen);
      break;
    }
    case 'R': rc = op_reduce(vm); break;
    case 'b': /* BUILD: set state; state dicts carry _metadata; tensors nothing we need */ {
      lg_pk_value *state = NULL, *obj = NULL;
      if ((rc = pop(vm, &state)) || (rc = top(vm, &obj))) return rc;
      if (obj->type != LG_PK_DICT && obj->type != LG_PK_TENSOR)
        return vfail(vm, LG_ENOTSUP, "BUILD on a value that is not a dict or tensor");
      break;
    }
    case 'Q': rc = op_persid(vm); break;
    case '.': /* STOP */ {
      lg_pk_value *v = NULL;
      if ((rc = pop(vm, &v))) return rc;
      vm->pk->root = v;
      return 0;
    }
    default:
      return vfail(vm, LG_ENOTSUP, "opcode 0x%02x at byte %zu not supported", op, vm->pos - 1);
    }
    if (rc) return rc;
  }
}

int lg_pickle_load(lg_pickle *pk, const uint8_t *p, size_t n, char *err, size_t errn) {
  memset(pk, 0, sizeof *pk);
  pk_vm vm = {.p = p, .n = n, .pk = pk, .err = err, .errn = errn};
  int rc = run(&vm);
  free(vm.stack);
  free(vm.marks);
  free(vm.memo);
  if (rc) lg_pickle_free(pk);
  return rc;
}

void lg_pickle_free(lg_pickle *pk) {
  if (!pk) return;
  lg_pk_value *v = pk->all;
  while (v) {
    lg_pk_value *nx = v->next_alloc;
    free(v->s);
    free(v->items);
    free(v);
    v = nx;
  }
  memset(pk, 0, sizeof *pk);
}

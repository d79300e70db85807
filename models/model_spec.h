/* model_spec.h: the tensor list (official names and shapes) of each architecture and preset,
 * used by `livegen init-model` to write random weights that load like the real checkpoints,
 * and by loaders to name a missing or misshapen tensor. */
#ifndef LG_MODEL_SPEC_H
#define LG_MODEL_SPEC_H

#include "lg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lg_tensor_spec {
  char name[128];
  int ndim;
  int64_t shape[LG_MAX_DIMS];
  float mean; /* random init: mean + std * N(0,1); norm gammas use mean 1, std 0 */
  float std;
} lg_tensor_spec;

/* arch: "wan-dit", "wan-vae", "taehv", "umt5"; preset: "tiny", "1.3b", "14b" (the VAE, TAEHV
 * and umT5 have one real size, so 1.3b and 14b name the same). On success *specs is a
 * malloc'ed array the caller frees. 0 or LG_E* with a message in err. */
int lg_model_spec(const char *arch, const char *preset, lg_tensor_spec **specs, int *n, char *err,
                  size_t errn);

#ifdef __cplusplus
}
#endif
#endif

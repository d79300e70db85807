/* wan_consts.h: constants of the Wan2.1 family that several models share (MODELS.md 4). */
#ifndef LG_WAN_CONSTS_H
#define LG_WAN_CONSTS_H

#ifdef __cplusplus
extern "C" {
#endif

#define LG_WAN_Z_DIM 16
/* Per-channel latent statistics: z = (mu - mean) / std. */
extern const float lg_wan_latent_mean[LG_WAN_Z_DIM];
extern const float lg_wan_latent_std[LG_WAN_Z_DIM];

#ifdef __cplusplus
}
#endif
#endif

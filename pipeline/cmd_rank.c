/* cmd_rank.c: `livegen rank`: one rank > 0 of the DiT pipelined over GPUs with NCCL
 * (docs/MULTIGPU.md). Started by rank 0 (engine.launch spawn: `serve --gpus 0,1,...` forks one
 * per GPU) or by mpirun/srun (engine.launch external; rank, size and local GPU from the
 * launcher's environment). Loads the DiT of the config on its GPU, joins the NCCL ring with
 * the id from $LG_NCCL_ID or the id file rank 0 writes, and runs the stage sessions rank 0
 * opens until it says QUIT. Under a launcher, rank 0 runs the command after `--` (serve or
 * generate) instead. Main thread. */
#include "cli.h"
#include "config.h"
#include "dit_runner.h"
#include "engine.h"
#include "lg_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: livegen rank [--config FILE] [--set k=v ...] [--rank R] [--nranks N] [--gpu G]\n"
          "                    [--id-file PATH] [--timeout S] [-- serve|generate ARGS...]\n"
          "  One rank > 0 of the DiT pipelined over GPUs (NCCL). rank 0 (serve/generate with\n"
          "  engine.gpus) starts these itself; under mpirun/srun the rank, size and local GPU\n"
          "  come from OMPI_COMM_WORLD_* / SLURM_* (PMI_*), and rank 0 runs the command after\n"
          "  `--` (its config needs engine.gpus with N entries and engine.launch external).\n"
          "  The NCCL id: $LG_NCCL_ID, else the file (--id-file, engine.nccl_id_file) rank 0\n"
          "  writes, waited for up to --timeout seconds (default 600).\n");
}

/* First of the environment variables that holds a non-negative integer, else -1. */
static int env_int(const char *const *names) {
  for (; *names; names++) {
    const char *v = getenv(*names);
    char *end = NULL;
    if (!v || !*v) continue;
    long x = strtol(v, &end, 10);
    if (*end == 0 && x >= 0 && x < 1 << 20) return (int)x;
  }
  return -1;
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
  char *end = NULL;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < lo || x > hi) {
    fprintf(stderr, "livegen rank: %s must be an integer in [%d, %d], got '%s'\n", opt, lo, hi, v);
    return -1;
  }
  *out = (int)x;
  return 0;
}

static lg_log_level level_of(const char *s) {
  if (!strcmp(s, "error")) return LG_LOG_ERROR;
  if (!strcmp(s, "warn")) return LG_LOG_WARN;
  if (!strcmp(s, "debug")) return LG_LOG_DEBUG;
  return LG_LOG_INFO;
}

int lg_cmd_rank(int argc, char **argv) {
  int rank = -1, nranks = -1, gpu = -1, timeout = 600, sub = 0, total = argc;
  const char *id_file = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--")) { /* rank 0's command: not ours to parse */
      sub = i + 1;
      argc = i;
      break;
    }
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  }
  lg_config cfg;
  char err[1024] = "";
  if (lg_config_from_args(&cfg, &argc, argv, err, sizeof err)) {
    fprintf(stderr, "livegen rank: %s\n", err);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "livegen rank: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    int bad = 0;
    if (!strcmp(a, "--rank"))
      bad = parse_int(a, v, 0, LG_STAGES_MAX - 1, &rank);
    else if (!strcmp(a, "--nranks"))
      bad = parse_int(a, v, 2, LG_STAGES_MAX, &nranks);
    else if (!strcmp(a, "--gpu"))
      bad = parse_int(a, v, 0, 63, &gpu);
    else if (!strcmp(a, "--timeout"))
      bad = parse_int(a, v, 1, 86400, &timeout);
    else if (!strcmp(a, "--id-file"))
      id_file = v;
    else {
      fprintf(stderr, "livegen rank: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (bad) return 2;
  }
  if (rank < 0)
    rank = env_int((const char *const[]){"OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "PMI_RANK", NULL});
  if (nranks < 0)
    nranks =
        env_int((const char *const[]){"OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE", NULL});
  if (nranks < 0 && cfg.engine.n_gpus > 1) nranks = cfg.engine.n_gpus;
  if (gpu < 0)
    gpu = env_int((const char *const[]){"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                        "MPI_LOCALRANKID", NULL});
  if (gpu < 0 && rank >= 0 && rank < cfg.engine.n_gpus) gpu = cfg.engine.gpus[rank];
  if (rank < 0 || nranks < 2 || nranks > LG_STAGES_MAX || rank >= nranks || gpu < 0) {
    fprintf(stderr,
            "livegen rank: rank %d of %d on GPU %d: give --rank, --nranks (2..%d) and --gpu, or "
            "run under mpirun/srun\n",
            rank, nranks, gpu, LG_STAGES_MAX);
    return 2;
  }
  lg_log_set_level(level_of(cfg.log_level));
  if (rank == 0) {
    /* under a launcher: this process is the service itself */
    if (sub > 0 && sub < total && !strcmp(argv[sub], "serve"))
      return lg_cmd_serve(total - sub, argv + sub);
    if (sub > 0 && sub < total && !strcmp(argv[sub], "generate"))
      return lg_cmd_generate(total - sub, argv + sub);
    fprintf(stderr, "livegen rank: rank 0 runs the service: give `-- serve ARGS` or "
                    "`-- generate ARGS` (their config with engine.gpus and engine.launch "
                    "external)\n");
    return 2;
  }
  if (strcmp(cfg.engine.mode, "v2v")) {
    fprintf(stderr, "livegen rank: the pipelined DiT runs v2v only\n");
    return 2;
  }
  if (!id_file && cfg.engine.nccl_id_file[0]) id_file = cfg.engine.nccl_id_file;
  unsigned char id[LG_NCCL_ID_BYTES];
  const char *env_id = getenv("LG_NCCL_ID");
  int rc;
  if ((env_id && *env_id) || id_file)
    rc = lg_stages_id_read(id_file, id, timeout);
  else if (getenv("NCCL_COMM_ID")) /* every rank derives the same id from the address */
    rc = lg_nccl_unique_id(id);
  else
    rc = LG_EINVAL;
  if (rc) {
    fprintf(stderr,
            "livegen rank %d: no NCCL id (%s): set LG_NCCL_ID, --id-file / engine.nccl_id_file "
            "(written by rank 0), or NCCL_COMM_ID\n",
            rank, rc == LG_EINVAL ? "none given" : lg_strerror(rc));
    return 1;
  }
  lg_backend *be = lg_backend_new_cuda(gpu);
  if (!be) {
    fprintf(stderr, "livegen rank %d: cannot open GPU %d (a CUDA build and the GPU are needed)\n",
            rank, gpu);
    return 1;
  }
  lg_wan_dit *m = lg_engine_load_dit(&cfg, be, err, sizeof err);
  if (!m) {
    fprintf(stderr, "livegen rank %d: %s\n", rank, err);
    lg_backend_free(&be);
    return 1;
  }
  /* buffers for the largest session (any steps value) at the config's size */
  lg_stages_opts mo = {.stream = {.steps = LG_MAX_STEPS,
                                  .kv_frames = cfg.engine.kv_frames,
                                  .lat_h = cfg.engine.height / 8,
                                  .lat_w = cfg.engine.width / 8},
                       .n = nranks};
  size_t maxp = lg_stages_max_payload(lg_wan_dit_get_config(m), &mo);
  lg_transport *t = lg_nccl_transport_new(id, rank, nranks, gpu, maxp);
  rc = t ? lg_dit_rank_loop(m, t) : LG_EBACKEND;
  if (rc) fprintf(stderr, "livegen rank %d (GPU %d): stopped: %s\n", rank, gpu, lg_strerror(rc));
  lg_transport_free(&t);
  lg_wan_dit_free(&m);
  lg_backend_free(&be);
  return rc ? 1 : 0;
}

/* cmd_serve.c: `livegen serve --config FILE [--set k=v ...]`: parses the config, starts the
 * service (serve.h) and runs until SIGINT or SIGTERM, then shuts down cleanly (exit 0).
 * Exit 1 when the service cannot start or fails (engine load error), 2 on usage errors.
 * Main thread. */
#include "cli.h"
#include "config.h"
#include "lg_base.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef LG_HAVE_STREAMING
#include "serve.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *f) {
  fprintf(f, "usage: livegen serve [--config FILE] [--set section.key=value ...] [--gpus 0,1,...]\n"
             "  Runs the service: ingest -> engine -> encoders -> viewers (HTTP/WebSocket,\n"
             "  WHEP), RTMP push and recording. Stops cleanly on SIGINT/SIGTERM.\n"
             "  server.port=0 picks a free port (printed on start). See docs/API.md.\n"
             "  --gpus 0,1,2,3 pipelines the DiT over those GPUs (one process each, NCCL;\n"
             "  this process is rank 0 on the first GPU). See docs/MULTIGPU.md.\n");
}

static lg_log_level level_of(const char *s) {
  if (!strcmp(s, "error")) return LG_LOG_ERROR;
  if (!strcmp(s, "warn")) return LG_LOG_WARN;
  if (!strcmp(s, "debug")) return LG_LOG_DEBUG;
  return LG_LOG_INFO;
}

int lg_cmd_serve(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  lg_config cfg;
  char err[1024];
  if (lg_config_from_args(&cfg, &argc, argv, err, sizeof err)) {
    fprintf(stderr, "livegen serve: %s\n", err);
    return 2;
  }
  if (argc > 1) {
    fprintf(stderr, "livegen serve: unexpected argument '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }
  lg_log_set_level(level_of(cfg.log_level));

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN); /* a viewer closing its socket must not kill the service */

  lg_serve *s = lg_serve_new(&cfg, err, sizeof err);
  if (!s) {
    fprintf(stderr, "livegen serve: %s\n", err);
    return 1;
  }
  printf("livegen serve: listening on http://%s:%d/\n", cfg.server.host, lg_serve_port(s));
  fflush(stdout);
  int rc = 0;
  while (!g_stop) {
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    if (lg_serve_poll(s)) {
      fprintf(stderr, "livegen serve: the service failed (see the log above)\n");
      rc = 1;
      break;
    }
  }
  if (g_stop) LG_INFO("serve", "signal received: shutting down");
  lg_serve_free(&s);
  return rc;
}

#else

int lg_cmd_serve(int argc, char **argv) {
  (void)argc;
  fprintf(stderr, "livegen %s: this build has no streaming (configure with -DLG_STREAMING=ON)\n",
          argv[0]);
  return 1;
}

#endif

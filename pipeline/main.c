/* main.c: the livegen command line: dispatches to the subcommands in cli.h. Main thread. */
#include "cli.h"
#include "lg_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *help;
} command;

static const command commands[] = {
    {"serve", lg_cmd_serve, "run the service (ingest, engine, viewers, RTMP, recording)"},
    {"generate", lg_cmd_generate, "run the v2v or t2v loop offline into a video file"},
    {"config", lg_cmd_config, "print the effective configuration (--print)"},
    {"inspect", lg_cmd_inspect, "list a checkpoint's tensors and detected architecture"},
    {"convert", lg_cmd_convert, "convert a .pt/.pth/.safetensors checkpoint to safetensors"},
    {"init-model", lg_cmd_init_model, "write random weights under official names"},
    {"probe", NULL, "run one model component on tensors from a file (golden tests)"},
    {"bench", lg_cmd_bench, "benchmark dit | engine | pipeline"},
    {"rank", lg_cmd_rank, NULL}, /* started by serve --gpus or mpirun (docs/MULTIGPU.md) */
};

static void usage(FILE *f) {
  fprintf(f, "usage: livegen <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i].help) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\nprobe kinds: dit, stream, compare, vae-encode, vae-decode, taehv-decode\n"
             "Run 'livegen <command> --help' for a command's options.\n"
             "LG_LOG_LEVEL=error|warn|info|debug sets the log level until a config sets it.\n");
}

static int probe(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr,
            "usage: livegen probe dit|stream|compare|vae-encode|vae-decode|taehv-decode ...\n");
    return 2;
  }
  const char *kind = argv[1];
  if (!strcmp(kind, "dit")) return lg_cmd_probe_dit(argc - 1, argv + 1);
  if (!strcmp(kind, "stream")) return lg_cmd_probe_stream(argc - 1, argv + 1);
  if (!strcmp(kind, "compare")) return lg_cmd_probe_compare(argc - 1, argv + 1);
  if (!strcmp(kind, "umt5")) return lg_cmd_probe_umt5(argc - 1, argv + 1);
  if (!strcmp(kind, "vae-encode") || !strcmp(kind, "vae-decode") || !strcmp(kind, "taehv-decode"))
    return lg_cmd_probe_vae(argc - 1, argv + 1);
  fprintf(stderr, "livegen probe: unknown kind '%s'\n", kind);
  return 2;
}

int main(int argc, char **argv) {
  const char *lv = getenv("LG_LOG_LEVEL");
  if (lv) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
      if (!strcmp(lv, names[i])) lg_log_set_level((lg_log_level)i);
  }
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "probe")) return probe(argc - 1, argv + 1);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i].fn && !strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "livegen: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

/* cmd_config.c: `livegen config --print [--config FILE] [--set key=value ...]` prints the
 * effective configuration (defaults, then files, then overrides) as YAML; `--check` only
 * validates. Main thread. */
#include "cli.h"
#include "config.h"

#include <stdio.h>
#include <string.h>

int lg_cmd_config(int argc, char **argv) {
  lg_config cfg;
  char err[1024];
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf(
          "usage: livegen config --print|--check [--config FILE] [--set section.key=value]...\n");
      return 0;
    }
  if (lg_config_from_args(&cfg, &argc, argv, err, sizeof err)) {
    fprintf(stderr, "livegen config: %s\n", err);
    return 1;
  }
  bool print = false, check = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--print"))
      print = true;
    else if (!strcmp(argv[i], "--check"))
      check = true;
    else {
      fprintf(stderr, "livegen config: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!print && !check) {
    fprintf(stderr, "usage: livegen config --print|--check [--config FILE] [--set k=v]...\n");
    return 2;
  }
  if (print) return lg_config_print(&cfg, stdout) ? 1 : 0;
  printf("config ok\n");
  return 0;
}

/* cmd_bench.c: placeholder until this command is written; says so and fails. */
#include "cli.h"

#include <stdio.h>

int lg_cmd_bench(int argc, char **argv) {
  (void)argc;
  fprintf(stderr, "livegen %s: not implemented in this build\n", argv[0]);
  return 1;
}

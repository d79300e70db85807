/* cli.h: the livegen subcommands. Each returns the process exit status (0 ok, 1 runtime
 * error, 2 usage error) and prints its own errors; only main() exits.
 * Every command file owns its own argument parsing. Main thread. */
#ifndef LG_CLI_H
#define LG_CLI_H

#ifdef __cplusplus
extern "C" {
#endif

/* cmd_config.c: config --print|--check */
int lg_cmd_config(int argc, char **argv);
/* cmd_model.c: inspect, convert, init-model */
int lg_cmd_inspect(int argc, char **argv);
int lg_cmd_convert(int argc, char **argv);
int lg_cmd_init_model(int argc, char **argv);
/* cmd_probe_dit.c: probe dit, probe stream, probe compare */
int lg_cmd_probe_dit(int argc, char **argv);
int lg_cmd_probe_stream(int argc, char **argv);
int lg_cmd_probe_compare(int argc, char **argv);
/* cmd_probe_umt5.c: probe umt5 */
int lg_cmd_probe_umt5(int argc, char **argv);
/* cmd_generate.c: generate */
int lg_cmd_generate(int argc, char **argv);
/* cmd_probe_vae.c: probe vae-encode|vae-decode|taehv-decode (argv[0] names which) */
int lg_cmd_probe_vae(int argc, char **argv);
/* cmd_bench.c: bench dit|engine|pipeline */
int lg_cmd_bench(int argc, char **argv);
/* bench_engine.c: bench engine */
int lg_bench_engine(int argc, char **argv);
/* cmd_serve.c: serve (LG_HAVE_STREAMING) */
int lg_cmd_serve(int argc, char **argv);
/* cmd_rank.c: rank (a rank > 0 of the DiT pipelined over GPUs; not listed in the usage) */
int lg_cmd_rank(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif

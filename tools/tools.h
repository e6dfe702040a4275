/* The raftstack command: subcommands share this header. */
#ifndef RS_TOOLS_TOOLS_H
#define RS_TOOLS_TOOLS_H

/* Exit codes scripts can trust. */
enum {
  TOOL_OK = 0,
  TOOL_FAIL = 1,  /* the operation failed */
  TOOL_USAGE = 2, /* bad command line or bad configuration */
};

/* Each subcommand: argv[0] is the subcommand's name. Prints its own --help. */
int cmd_config(int argc, char **argv);
int cmd_protocols(int argc, char **argv);
int cmd_perf(int argc, char **argv);
/* `perf multicast` and `perf rpc`, dispatched by cmd_perf (argv[0] is the benchmark). */
int cmd_perf_multicast(int argc, char **argv);
int cmd_perf_rpc(int argc, char **argv);
int cmd_probe(int argc, char **argv);
/* `log dump|verify DIR`: a file log's metadata and entries, every CRC checked. */
int cmd_log(int argc, char **argv);
/* `log bench DIR`: fsync latency and file-log throughput (argv[0] is "bench"). */
int cmd_log_bench(int argc, char **argv);

#endif

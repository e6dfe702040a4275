/* raftstack: the command-line tool (config check, protocol reference, perf, ...). */
#include <stdio.h>
#include <string.h>

#include "tools/tools.h"

struct subcommand {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
};

static const struct subcommand subcommands[] = {
    {"config", cmd_config, "config check FILE [-Dname=value ...]: validate and print a stack"},
    {"protocols", cmd_protocols, "protocols [NAME] [--markdown]: protocols and their attributes"},
    {"perf", cmd_perf, "perf transport|multicast|rpc ...: transport, group and RPC benchmarks"},
    {"probe", cmd_probe, "probe [--cluster C]: address, view and statistics of running members"},
    {"log", cmd_log, "log dump|verify DIR: print or check a Raft file log (<name>.log directory)"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: raftstack <command> [args]   (raftstack <command> --help for more)\n\n");
  for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
    fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return TOOL_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return TOOL_OK;
  }
  for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
    if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "raftstack: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return TOOL_USAGE;
}

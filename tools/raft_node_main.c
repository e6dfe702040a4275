/* raft-node: one Raft node on an XML stack, controlled by line commands on stdin/stdout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/raft_node.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: raft-node --config FILE --id RAFT_ID [--cluster NAME] [-Dname=value ...]\n"
          "\n"
          "Runs one Raft node (a RaftHandle over the XML stack; its raft_id is RAFT_ID, also the\n"
          "channel's name) and answers one line per command read on stdin:\n"
          "  status                    role, term, leader, commit, applied and last index\n"
          "  put N [SIZE [WINDOW]]     commits N commands (through the leader), checks answers\n"
          "  await-commit MS           retries one command until it commits (after a crash)\n"
          "  wait-applied INDEX MS     waits until this node applied INDEX\n"
          "  digest                    count and hash of the commands this node applied\n"
          "  stats                     every protocol's non-zero counters\n"
          "  bench K SIZE SECS WARMUP  K outstanding sets for SECS seconds (see raft-perf)\n"
          "  quit                      leaves the cluster and exits\n"
          "The log lives in <rs.raft.log_dir>/<RAFT_ID>.log (raft.xml, raft-tcp.xml). The exit\n"
          "status is 0 when every command succeeded.\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                           {"id", required_argument, NULL, 'i'},
                                           {"cluster", required_argument, NULL, 'C'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  struct raft_node_opts o = {.cluster = "raft"};
  int opt;
  while ((opt = getopt_long(argc, argv, "c:i:C:D:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'c': o.config = optarg; break;
    case 'i': o.id = optarg; break;
    case 'C': o.cluster = optarg; break;
    case 'D':
      if (raft_node_add_prop(&o, optarg)) {
        fprintf(stderr, "raft-node: -D wants name=value (at most %d)\n", RAFT_NODE_MAX_PROPS);
        return 2;
      }
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!o.config || !o.id || optind != argc) {
    usage(stderr);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  return raft_node_serve(&o, STDIN_FILENO, STDOUT_FILENO);
}

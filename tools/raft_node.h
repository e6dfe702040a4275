/* A Raft node driven by line commands (raft-node, and each member process of raft-perf). */
#ifndef RS_TOOLS_RAFT_NODE_H
#define RS_TOOLS_RAFT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_NODE_MAX_PROPS 64

struct raft_node_opts {
  const char *config;                         /* XML file */
  const char *id;                             /* raft_id and the channel's logical name */
  const char *cluster;                        /* cluster name to connect to */
  const char *props[RAFT_NODE_MAX_PROPS + 1]; /* "name=value", NULL-terminated */
  int n_props;
};

/*
 * Opens the channel and a RaftHandle on it, connects, prints "ready ...", then reads commands
 * from in_fd, one a line, and answers each on out_fd with one line (bench also prints progress
 * lines first). Returns the exit status once "quit" is read or in_fd ends (0 when every command
 * succeeded). The protocol is documented in raft_node.c.
 */
int raft_node_serve(const struct raft_node_opts *o, int in_fd, int out_fd);

/* Adds "name=value" to o->props (copied by reference: the string must outlive o). */
int raft_node_add_prop(struct raft_node_opts *o, const char *nv);

/* ---- between raft_node.c and raft_node_bench.c ---- */
struct rs_raft;
struct rs_runtime;
/* bench OUTSTANDING SIZE SECONDS WARMUP_SECONDS: drives rs_raft_set_async from this process (on
 * the channel's loop thread rt) and writes progress lines and one result line to out_fd.
 * Returns 0, or -1 when a request failed. */
int raft_node_bench(struct rs_raft *h, struct rs_runtime *rt, const char *args, int out_fd);
void raft_node_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

/* SIMNET: a fault-injection protocol for the simulation, driven by a test-owned network model. */
#ifndef RS_TESTS_SIMNET_H
#define RS_TESTS_SIMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/sim.h"
#include "stack/stack.h"

/*
 * <SIMNET/> sits just above the transport (LOOPBACK) of every simulated stack. Each message a
 * node receives from another node is judged on arrival, from the world's seeded stream
 * (rs_sim_random) and one shared model that the test changes at any moment:
 *   - reachability: cut[from][to] drops everything `from` sends to `to` (one-way cuts; a
 *     partition is the cuts both ways between groups). A message held back by a delay is judged
 *     again when it is due: cutting a link also loses what is in flight on it;
 *   - drop with probability `drop`, duplicate with probability `dup`;
 *   - delay with probability `delay_p` by a uniform time in [0, delay_max] (which reorders).
 * Messages from a node to itself always pass. Nodes are known by name (the channel's name, for
 * Raft the raft_id); every address a node ever had maps to it, so messages still in flight from
 * a crashed incarnation obey the same cuts.
 */

#define SIMNET_MAX_NODES 16
#define SIMNET_ID 1101 /* protocol id (no header on the wire) */

struct simnet {
  struct rs_sim *sim;
  size_t n;
  char names[SIMNET_MAX_NODES][64];
  bool cut[SIMNET_MAX_NODES][SIMNET_MAX_NODES]; /* [from][to] */
  double drop, dup, delay_p;
  rs_time delay_max;
  /* Every address seen at a node's start, and whose it is. */
  struct {
    struct rs_addr addr;
    size_t node;
  } * addrs;
  size_t n_addrs, cap_addrs;
  /* Counters. */
  uint64_t passed, dropped, cut_dropped, duplicated, delayed;
};

/* The model that SIMNET instances built from now on use (one world at a time). */
void simnet_init(struct simnet *net, struct rs_sim *sim);
void simnet_fini(struct simnet *net);
void simnet_set_current(struct simnet *net);
/* Declares a node by name; its index (also when it exists), or -1 when the table is full. */
int simnet_add_node(struct simnet *net, const char *name);
int simnet_node_index(const struct simnet *net, const char *name);

/* Reachability. */
void simnet_cut(struct simnet *net, size_t from, size_t to, bool cut);
/* Cuts node i off from every other node (both ways) or restores its links. */
void simnet_isolate(struct simnet *net, size_t i, bool isolated);
/* Partitions into two sides: side[i] says which; links across are cut both ways, others healed. */
void simnet_partition(struct simnet *net, const bool *side);
void simnet_heal(struct simnet *net);
bool simnet_reachable(const struct simnet *net, size_t from, size_t to);

/* The protocol: register with stack_set_extra_protocols before building stacks. */
extern const struct rs_protocol_ops simnet_protocol;

#endif

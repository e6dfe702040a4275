/* A simulated Raft cluster: nodes over SIMNET and the sim log, a test state machine, and Raft's
 * safety invariants checked after every step. */
#ifndef RS_TESTS_SIM_CLUSTER_H
#define RS_TESTS_SIM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/raft/raft.h"
#include "stack/sim.h"
#include "tests/lib/sim_log.h"
#include "tests/lib/simnet.h"

/*
 * Each node is a channel on its own simulated runtime with the stack
 *   LOOPBACK, SIMNET, raft.ELECTION, raft.RAFT
 * and log_class="sim". RAFT sees the network's faults directly (no UNICAST3 or NAKACK2 repairs
 * them): its own resends must. A crash closes the channel after marking the node's disk, so the
 * close loses what a power loss would (tests/lib/sim_log.h); a restart opens a new channel on a
 * new runtime over the same disk.
 *
 * The state machine (sim_cmd_*): registers and counters per key. Every command carries a unique
 * op id, so that the checks can tell which client call an entry belongs to.
 *
 * Invariants (each violation is reported once with the seed, step, time, invariant and the
 * nodes' state, and sets `failed`):
 *  - election safety: at most one leader per term, over the whole run (role listeners);
 *  - leader append-only: while a node leads a term, its log never shrinks and the entry at the
 *    highest index seen so far never changes (checked every step);
 *  - log matching: two logs with the same term at an index agree on it and on the entries
 *    below (sampled near the ends of the logs every few steps);
 *  - committed entries agree: every index any node commits holds the same (term, data) on every
 *    node that commits it, and a node's commit index never goes back while it runs;
 *  - leader completeness: a new leader's log holds every entry committed so far;
 *  - state machine safety: no two nodes apply different entries at one index (apply hook), and
 *    no command is applied at two indices;
 *  - acknowledged commands: each was applied at the index the checks saw, and at the end every
 *    node that applied past that index holds it there.
 */

#define SIM_MAX_NODES 7
#define SIM_KEYS 4

enum sim_cmd_kind {
  SIM_CMD_WRITE = 1, /* register[key] = arg */
  SIM_CMD_READ = 2,  /* -> register[key] */
  SIM_CMD_ADD = 3,   /* counter[key] += arg -> new value */
  SIM_CMD_CREAD = 4, /* -> counter[key] */
};
#define SIM_CMD_LEN 20

struct sim_cluster;

struct sim_node {
  struct sim_cluster *c;
  int idx;
  char name[16];
  struct rs_runtime *rt;
  struct rs_channel *ch;
  struct raft *raft;      /* NULL while down */
  struct rs_raft *handle; /* with sim_options.handle: the RaftHandle over the channel */
  bool up;
  uint64_t incarnation;
  /* The state machine. */
  int64_t reg[SIM_KEYS], ctr[SIM_KEYS];
  rs_index sm_applied;
  /* Invariant tracking. */
  rs_index seen_commit;
  rs_term lead_term;
  rs_index lead_last;
  uint64_t lead_hash;
};

struct sim_options {
  size_t nodes;         /* 3, 5 or 7 */
  bool fsync;           /* log_use_fsync (default on) */
  bool handle;          /* REDIRECT on top and a RaftHandle per node (sim_node_submit uses it) */
  const char *election; /* extra ELECTION attributes (NULL: the defaults below) */
  const char *raft;     /* extra RAFT attributes */
  rs_time disk_min, disk_max; /* simulated fsync delay */
  bool verbose;
};

struct sim_entry_rec {
  rs_term term; /* 0: nothing recorded */
  uint64_t hash;
  /* Committed entries: the term of the node that first committed it, at that moment. The entry
   * was committed in this term or an earlier one (a node learns a commit only from a leader of
   * its own term, or replays one it persisted), so leaders of later terms must hold it. */
  rs_term commit_term;
};

struct sim_cluster {
  uint64_t seed;
  struct sim_options opt;
  struct rs_sim *sim;
  struct simnet net;
  struct sim_disk *disk;
  size_t n;
  struct sim_node nodes[SIM_MAX_NODES];
  struct rs_runtime **retired; /* runtimes of crashed incarnations, destroyed at the end */
  size_t n_retired;
  /* Invariant state. */
  struct sim_entry_rec *committed, *applied; /* by index */
  size_t cap_committed, cap_applied;
  rs_index max_committed;
  int *leader_of_term; /* node index + 1, 0: none */
  size_t cap_terms;
  rs_index *op_index; /* op id -> index it was applied at (0: not yet) */
  size_t cap_ops;
  uint64_t steps_checked, elections, crashes, restarts;
  bool failed;
  char failure[512];
  uint64_t check_every; /* log matching sample period in steps */
  uint64_t max_steps;   /* 0: no limit; past it runs stop early and over_budget is set */
  bool over_budget;
};

/* A cluster of opt->nodes nodes named n0..n6, all started and connected. NULL on failure (the
 * reason on stderr). */
struct sim_cluster *sim_cluster_new(uint64_t seed, const struct sim_options *opt);
/* Stops every node (clean), runs out the world and frees everything. */
void sim_cluster_free(struct sim_cluster *c);

/* Node lifecycle (called between steps, never from a callback). */
int sim_node_start(struct sim_cluster *c, size_t i);
void sim_node_crash(struct sim_cluster *c, size_t i);
void sim_node_stop(struct sim_cluster *c, size_t i); /* clean */

/* On node i's loop: submits a command through its RaftHandle (REDIRECT forwards it to the
 * leader) when the cluster has handles, else straight to RAFT (raft_submit). Takes a new
 * reference to buf; 0 (done runs once, later) or an error at once. */
int sim_node_submit(struct sim_cluster *c, size_t i, struct rs_buf *buf, raft_done_fn done,
                    void *arg);

/* The node leading the highest term among running nodes, or -1. */
int sim_cluster_leader(const struct sim_cluster *c);
/* Runs until cond or timeout (virtual), stopping early on a violation. */
bool sim_cluster_run_until(struct sim_cluster *c, bool (*cond)(void *arg), void *arg,
                           rs_time timeout);
void sim_cluster_run_for(struct sim_cluster *c, rs_time d);

/* Commands. */
void sim_cmd_encode(uint8_t out[SIM_CMD_LEN], enum sim_cmd_kind kind, unsigned key, uint64_t op,
                    int64_t arg);
/* Reports a violation (printf-style); the first one is kept in c->failure. */
void sim_cluster_fail(struct sim_cluster *c, const char *invariant, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A client's command was acknowledged (status 0) with op id `op`: checks it was applied. */
void sim_cluster_acked(struct sim_cluster *c, uint64_t op);
/* End-of-run checks: every acknowledged op is in place on every node that applied past it. */
void sim_cluster_final_checks(struct sim_cluster *c, const uint64_t *acked, size_t n);
/* Prints every node's state (role, term, commit, applied, last index and log terms) to stderr. */
void sim_cluster_dump(const struct sim_cluster *c);

#endif

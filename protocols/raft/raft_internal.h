/* RAFT's instance and the functions its files (raft.c, raft_replication.c, raft_apply.c) share. */
#ifndef RS_PROTOCOLS_RAFT_RAFT_INTERNAL_H
#define RS_PROTOCOLS_RAFT_RAFT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/raft/election.h"
#include "protocols/raft/raft.h"
#include "protocols/raft/raft_wire.h"
#include "stack/stack.h"

#define RAFT_ID 521
#define RAFT_MAX_MEMBERS 64 /* voting members; far above what a Raft group should have */
#define RAFT_MAX_INFLIGHT 1024

/* One member as the leader tracks it (Raft Figure 2 "volatile state on leaders"), plus the
 * address learned for it. The entry of this node itself only carries its id. */
struct raft_peer {
  char id[RAFT_ID_MAX + 1];
  struct rs_addr addr; /* learned from views and from every message it sent; null: unknown */
  rs_index next_index, match_index;
  rs_index commit_sent; /* highest commit index sent to it */
  /* Pipelining: last index of each AppendEntries in flight (a ring of max_inflight), so that an
   * answer acknowledging index i retires every request that ended at or below i. */
  rs_index *inflight;
  unsigned inflight_head, inflight_n;
  rs_time last_heard;  /* last answer in the current term (check-quorum) */
  rs_time progress_at; /* last time match_index advanced, or the leader (re)started sending */
};

/* A command submitted here and waiting for its index to be applied (raft.h: keyed by index and
 * term, not by role). Kept in index order in a ring. */
struct raft_pending {
  rs_index index;
  rs_term term;
  raft_done_fn done;
  void *arg;
};

struct raft_listener {
  raft_role_fn fn;
  void *arg;
  int id; /* -1: free slot */
};

struct raft_stats {
  uint64_t ae_sent, ae_received, entries_sent, entries_received, heartbeats_sent;
  uint64_t rsp_sent, rsp_received, rejects_sent, rejects_received, resends;
  uint64_t step_downs, leaders_elected, stale_dropped, bad_dropped, not_for_us;
  uint64_t applied_batches, truncations;
};

struct raft {
  struct rs_protocol base;
  /* Attributes. */
  char *raft_id;
  struct rs_strlist members;
  char *log_class;
  char *log_args;
  char *log_dir;
  char *log_prefix;
  bool log_use_fsync;
  uint64_t log_segment_size;
  rs_time resend_interval;
  bool send_commits_immediately;
  uint64_t max_log_size;
  int64_t max_append_entries;
  uint64_t max_append_bytes;
  int64_t max_inflight;
  /* Membership (from `members`; self is peers[self]). */
  struct raft_peer *peers;
  size_t n_peers, self, majority;
  /* Persistent state lives in the log (current term, voted for, entries, commit index). */
  struct raft_log *log;
  const struct rs_log_ops *log_ops;
  struct election *el;
  /* Volatile state (Raft Figure 2). */
  enum rs_raft_role role;
  int leader; /* peer index of the known leader, -1 when none */
  rs_index commit_index, last_applied;
  bool stopped; /* not started, stopped, or halted by a log error */
  /* Follower: highest index known to match the leader of the current term (the end of the last
   * accepted AppendEntries); acks say min(this, durable_index). */
  rs_index verified;
  rs_term verified_term;
  rs_index acked; /* last ack index sent to the leader in verified_term */
  bool ack_wanted;
  /* Apply. */
  const struct rs_state_machine *sm;
  void *sm_arg;
  raft_apply_hook_fn apply_hook;
  void *apply_hook_arg;
  struct raft_pending *pending; /* ring */
  size_t pending_head, pending_n, pending_cap;
  struct rs_raft_reply *reply;
  /* Tasks and timers. */
  struct rs_task flush_task, apply_task, ack_task;
  struct rs_timer resend_timer;
  struct raft_listener *listeners;
  size_t n_listeners;
  int next_listener_id;
  /* Scratch for decoding AppendEntries (grows up to RAFT_MAX_DECODE). */
  struct raft_entry *scratch;
  size_t scratch_cap;
  struct rs_ratelimit rl_bad;
  struct raft_stats st;
};

#define RAFT(p) ((struct raft *)(p))

/* raft.c: roles, terms and sending. */
void raft_become_follower(struct raft *r, rs_term term, int leader);
void raft_set_leader(struct raft *r, int leader);
void raft_notify_role(struct raft *r);
/* Sends m (payload already starting with the id prefix) to peers[peer]: unicast when its
 * address is known, else to the group with the target's id in the payload. Takes m. */
void raft_send_to(struct raft *r, struct rs_protocol *from, size_t peer, struct rs_msg *m);
/* Stops the node after an unrecoverable log error: steps down, fails pending commands, tells
 * the state machine. */
void raft_halt(struct raft *r, int err);
void raft_log_bad(struct raft *r, const struct rs_addr *src, const char *what);

/* raft_replication.c: the leader's side and the follower's answers (Raft §5.3). */
void raft_repl_leader_start(struct raft *r);
void raft_repl_flush(struct raft *r); /* posts the flush task */
void raft_repl_flush_task(struct rs_task *t);
void raft_repl_ack_task(struct rs_task *t);
void raft_repl_heartbeat(struct raft *r);
void raft_repl_resend(struct rs_timer *t);
void raft_repl_on_persisted(struct raft *r);
void raft_repl_on_msg(struct raft *r, struct rs_msg *m, const struct raft_hdr *h, size_t from,
                      struct rs_reader *payload);

/* raft_apply.c: applying committed entries and completing pending commands. */
void raft_apply_post(struct raft *r);
void raft_apply_task(struct rs_task *t);
/* Fails pending commands with index >= from (their entries are being truncated). */
void raft_pending_truncated(struct raft *r, rs_index from);
int raft_apply_init(struct raft *r);
void raft_apply_fini(struct raft *r);

#endif

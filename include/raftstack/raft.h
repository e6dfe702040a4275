/* RaftHandle: replicate commands through Raft on a channel whose stack has ELECTION and RAFT. */
#ifndef RAFTSTACK_RAFT_H
#define RAFTSTACK_RAFT_H

#include <raftstack/channel.h>
#include <raftstack/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rs_raft;        /* a RaftHandle */
struct rs_raft_future; /* the outcome of rs_raft_set_async */
struct rs_raft_reply;  /* where apply writes the response of one command */
struct rs_raft_writer; /* snapshot output stream (snapshots are not implemented yet) */
struct rs_raft_reader; /* snapshot input stream (snapshots are not implemented yet) */

enum rs_raft_role {
  RS_RAFT_FOLLOWER = 0,
  RS_RAFT_CANDIDATE = 1,
  RS_RAFT_LEADER = 2,
  RS_RAFT_LEARNER = 3, /* a non-voting member (reserved: membership changes come later) */
};
/* "Follower", "Candidate", "Leader", "Learner". */
RS_API const char *rs_raft_role_name(enum rs_raft_role role);

/*
 * The state machine. Every callback runs on the channel's event-loop thread, one at a time, and
 * must not block (a blocking raftstack call made from one returns RS_EDEADLK).
 */
struct rs_state_machine {
  /* Applies the committed command at `index` (called in index order, on every node). The
   * response for the caller of set is given with rs_raft_reply_set (copied; ignored on nodes
   * where nobody waits). A non-zero return is handed to that caller as its status; the command
   * still counts as applied. Required. */
  int (*apply)(void *arg, uint64_t index, const void *data, size_t len,
               struct rs_raft_reply *reply);
  /* Writes the whole state / replaces the state from a snapshot. Reserved: snapshots and their
   * stream functions are not implemented yet, so these are never called; may be NULL. */
  int (*write_snapshot)(void *arg, struct rs_raft_writer *out);
  int (*read_snapshot)(void *arg, struct rs_raft_reader *in);
  /* Optional: this node's role changed (leader start/stop, following start/stop). */
  void (*role_changed)(void *arg, enum rs_raft_role role, uint64_t term, const char *leader);
  /* Optional: the node stopped on an unrecoverable error (a failed fsync, a corrupt log). */
  void (*error)(void *arg, int err, const char *detail);
  /* Optional: a membership change committed, with the new voting members (comma list).
   * Reserved: membership changes are not implemented yet, so it is never called. */
  void (*config_committed)(void *arg, uint64_t index, const char *members);
};

/* Copies len bytes as the response to the command being applied. At most one response; a later
 * call replaces it. Valid only inside apply. */
RS_API void rs_raft_reply_set(struct rs_raft_reply *reply, const void *data, size_t len);

/* Wraps a channel (opened, not yet connected) whose stack has RAFT. The handle installs the state
 * machine; the channel stays the caller's and must outlive the handle. RS_ECONFIG when the stack
 * has no RAFT. The caller owns *out (rs_raft_close). */
RS_API int rs_raft_open(struct rs_raft **out, struct rs_channel *ch,
                        const struct rs_state_machine *sm, void *sm_arg);
/* Fails outstanding requests with RS_ESHUTDOWN and frees the handle (not the channel). Call
 * after rs_channel_disconnect or before it; not from a callback. */
RS_API void rs_raft_close(struct rs_raft *h);

/* A response: `data` is malloc'd, the caller frees it with free(). NULL/0 when none was set. */
struct rs_raft_rsp {
  void *data;
  size_t len;
};

#define RS_RAFT_FOREVER UINT64_MAX

/*
 * Replicates len bytes (copied before return) and waits until the command is committed and
 * applied on the node that appended it, then returns the state machine's status and response.
 * On a follower the request goes to the leader through REDIRECT. Errors:
 *  RS_ENOLEADER  no leader is known: nothing was appended; retry later.
 *  RS_ENOTLEADER this node is not the leader and the stack has no REDIRECT, or the entry was
 *                overwritten by a new leader before it committed: it was NOT applied; retry.
 *                The response (when wanted) is the raft_id of the leader known, if any.
 *  RS_EAGAIN     REDIRECT's max_pending requests are in flight: nothing was appended; retry.
 *  RS_ETIMEDOUT  timeout_ms passed: the command may or may not be applied later.
 *  RS_EUNKNOWN   the node that held the request went away: it may or may not be applied.
 *  RS_ESHUTDOWN  the handle or channel is closing.
 *  RS_ENOTCONN   the channel is not connected: nothing was sent.
 *  RS_EDEADLK    called on the loop thread (use rs_raft_set_async).
 * rsp may be NULL when the response is not wanted.
 */
RS_API int rs_raft_set(struct rs_raft *h, const void *data, size_t len, struct rs_raft_rsp *rsp,
                       uint64_t timeout_ms);

/* As rs_raft_set without waiting: *out completes with the same statuses (no timeout of its own:
 * use rs_raft_future_wait_for). Callable from callbacks. The caller owns *out. */
RS_API int rs_raft_set_async(struct rs_raft *h, const void *data, size_t len,
                             struct rs_raft_future **out);
/* Waits for completion; returns the status; the response moves to *rsp (may be NULL). */
RS_API int rs_raft_future_wait(struct rs_raft_future *f, struct rs_raft_rsp *rsp);
/* As wait, but RS_ETIMEDOUT after timeout_ms with the future still pending. */
RS_API int rs_raft_future_wait_for(struct rs_raft_future *f, uint64_t timeout_ms,
                                   struct rs_raft_rsp *rsp);
RS_API bool rs_raft_future_done(const struct rs_raft_future *f);
/* Calls fn once on completion, on the loop thread (or at once, in the caller, if already done).
 * `data` is valid during the call only. At most one callback per future. */
RS_API int rs_raft_future_on_complete(struct rs_raft_future *f,
                                      void (*fn)(void *arg, int status, const void *data,
                                                 size_t len),
                                      void *arg);
/* Frees the future; if still pending its outcome is dropped when it arrives. */
RS_API void rs_raft_future_free(struct rs_raft_future *f);

/* State. Thread-safe; from a callback they read the loop's state directly. */
RS_API bool rs_raft_is_leader(struct rs_raft *h);
/* The leader's raft_id copied into buf (at least 256 bytes); false when none is known. */
RS_API bool rs_raft_leader(struct rs_raft *h, char *buf, size_t len);
RS_API const char *rs_raft_id(const struct rs_raft *h); /* owned by the handle */
RS_API enum rs_raft_role rs_raft_role(struct rs_raft *h);
RS_API uint64_t rs_raft_current_term(struct rs_raft *h);
RS_API uint64_t rs_raft_last_applied(struct rs_raft *h);
RS_API uint64_t rs_raft_commit_index(struct rs_raft *h);
RS_API uint64_t rs_raft_last_index(struct rs_raft *h);
RS_API uint64_t rs_raft_log_size(struct rs_raft *h); /* bytes */

/* Role listeners: fn runs on the loop thread after every role change (a cluster singleton
 * starts its work on RS_RAFT_LEADER and stops it on any other role). Returns an id for
 * rs_raft_remove_role_listener, or a negative RS_E*. */
RS_API int rs_raft_add_role_listener(struct rs_raft *h,
                                     void (*fn)(void *arg, enum rs_raft_role role,
                                                uint64_t term, const char *leader),
                                     void *arg);
RS_API void rs_raft_remove_role_listener(struct rs_raft *h, int id);

#ifdef __cplusplus
}
#endif
#endif

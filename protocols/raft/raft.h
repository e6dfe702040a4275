/* RAFT's interface to the layers above it (REDIRECT, the RaftHandle) and to the simulation. */
#ifndef RS_PROTOCOLS_RAFT_RAFT_H
#define RS_PROTOCOLS_RAFT_RAFT_H

#include <raftstack/raft.h>

#include "raft/log/log.h"
#include "stack/stack.h"

/*
 * Everything here runs on the stack's loop thread. ELECTION and RAFT share a further internal
 * interface (protocols/raft/election.h) that nothing else uses.
 */

struct raft; /* the RAFT protocol instance */

/* The stack's RAFT, or NULL. */
struct raft *raft_find(struct rs_stack *st);

/* The state machine the handle installs (NULL: commands are applied to nothing). */
void raft_set_state_machine(struct raft *r, const struct rs_state_machine *sm, void *arg);

/* The outcome of one submitted command: status 0 and the state machine's response (valid during
 * the call), or an RS_E* as documented for rs_raft_set. Called exactly once. */
typedef void (*raft_done_fn)(void *arg, int status, const void *rsp, size_t len);

/*
 * Appends a command on the leader; takes a new reference to buf. Returns 0 (done will run,
 * later, exactly once) or an error at once (done not called): RS_ENOTLEADER, RS_ENOLEADER,
 * RS_ESHUTDOWN, or the log's error.
 *
 * A pending command is keyed by (index, term), not by the role: if this node stops leading, it
 * keeps waiting as a follower. When its own apply reaches the index, the command completes with
 * the local response if the entry there still has its term, or with RS_ENOTLEADER if another
 * leader's entry replaced it (then it was not applied). A truncation of the index fails it at
 * once with RS_ENOTLEADER.
 */
int raft_submit(struct raft *r, struct rs_buf *buf, const uint8_t *data, uint32_t len,
                raft_done_fn done, void *arg);
/* Fails every pending command's done with `status` (close: RS_ESHUTDOWN). */
void raft_fail_pending(struct raft *r, int status);

/* State, read on the loop thread. */
enum rs_raft_role raft_role(const struct raft *r);
const char *raft_self_id(const struct raft *r);
/* The current leader's raft_id and address; NULL / null address when none is known. */
const char *raft_leader_id(const struct raft *r);
struct rs_addr raft_leader_addr(const struct raft *r);
rs_term raft_current_term(const struct raft *r);
rs_index raft_commit_index(const struct raft *r);
rs_index raft_last_applied(const struct raft *r);
rs_index raft_last_index(const struct raft *r);
uint64_t raft_log_size(const struct raft *r);
/* The log (tests and the simulation's invariant checks read it; never mutate). */
const struct raft_log *raft_get_log(const struct raft *r);

/* Role listeners, called after every role change (and when the known leader changes) with the
 * new role, term and leader id (NULL when unknown). Returns an id >= 0 or RS_ENOMEM. */
typedef void (*raft_role_fn)(void *arg, enum rs_raft_role role, rs_term term, const char *leader);
int raft_add_role_listener(struct raft *r, raft_role_fn fn, void *arg);
void raft_remove_role_listener(struct raft *r, int id);

/* For the simulation's checks: called after each entry is applied (index, term, data). */
typedef void (*raft_apply_hook_fn)(void *arg, const struct raft_entry *e);
void raft_set_apply_hook(struct raft *r, raft_apply_hook_fn fn, void *arg);

#endif

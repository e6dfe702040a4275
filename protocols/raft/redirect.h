/* raft.REDIRECT's interface for the RaftHandle: submit a command here or at the leader. */
#ifndef RS_PROTOCOLS_RAFT_REDIRECT_H
#define RS_PROTOCOLS_RAFT_REDIRECT_H

#include "protocols/raft/raft.h"
#include "stack/stack.h"

#define REDIRECT_ID 522

struct redirect; /* the REDIRECT protocol instance */

/* The stack's REDIRECT, or NULL. */
struct redirect *redirect_find(struct rs_stack *st);

/*
 * On the loop thread. Submits a command: on the leader straight to RAFT (raft_submit), on a
 * follower to the leader in a request message; takes a new reference to buf (buf may be NULL
 * when len is 0). Returns 0 (done runs later, exactly once, on the loop thread) or an error at
 * once (done not called): RS_ENOLEADER (no leader known), RS_EAGAIN (max_pending requests
 * already in flight), RS_ESHUTDOWN (not started), RS_ENOMEM, or raft_submit's error.
 *
 * done's statuses are rs_raft_set's; with RS_ENOTLEADER the response bytes are the raft_id of
 * the leader the answering node knows (empty when it knows none).
 */
int redirect_submit(struct redirect *rd, struct rs_buf *buf, const uint8_t *data, uint32_t len,
                    raft_done_fn done, void *arg);

/* Fails every request this node forwarded and still waits for with `status` (close:
 * RS_ESHUTDOWN). Requests other nodes forwarded here are RAFT's pending commands
 * (raft_fail_pending). */
void redirect_fail_pending(struct redirect *rd, int status);

#endif

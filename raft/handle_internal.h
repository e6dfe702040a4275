/* What the RaftHandle's files (handle.c, handle_future.c) share. */
#ifndef RS_RAFT_HANDLE_INTERNAL_H
#define RS_RAFT_HANDLE_INTERNAL_H

#include <raftstack/raft.h>

#include "protocols/raft/raft.h"

/* Runs fn(arg) on the handle's loop thread (at once when called there) and waits for it. 0 or
 * RS_ESHUTDOWN. */
int handle_on_loop(struct rs_runtime *rt, void (*fn)(void *arg), void *arg);

/* On the loop: submits a command through REDIRECT (or RAFT when the stack has none); takes a new
 * reference to buf. 0 (done runs later, exactly once) or an error at once (done not called). */
int handle_submit(struct rs_raft *h, struct rs_buf *buf, uint32_t len, raft_done_fn done,
                  void *arg);
/* References to the handle: rs_raft_open's (dropped by rs_raft_close) and one per future from
 * rs_raft_set_async until its outcome, so a submission queued on the loop while close runs (a
 * future callback that retries) never finds a freed handle. Any thread; the last frees it. */
void handle_ref(struct rs_raft *h);
void handle_unref(struct rs_raft *h);
/* On the loop: the leader RAFT knows, or NULL. */
const char *handle_leader_id(struct rs_raft *h);
struct rs_runtime *handle_runtime(struct rs_raft *h);

#endif

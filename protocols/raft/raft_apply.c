/* RAFT: submitting commands, applying committed entries in batches, completing pending commands. */
#include <stdlib.h>
#include <string.h>

#include "protocols/raft/raft_internal.h"

/*
 * Raft §5.3: "If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied] to
 * state machine." Applying runs in a posted task, never from the code that advanced the commit
 * index (no recursion into the state machine from a message handler), and at most APPLY_BATCH
 * entries per run so that a long catch-up does not starve the loop; the task posts itself again
 * while entries remain.
 *
 * Pending commands (raft.h) sit in a ring in index order: commands are appended at the end of the
 * log, so a new one always has the highest index. A pending command completes when its index is
 * applied: with the state machine's response if the entry there has the command's term, with
 * RS_ENOTLEADER if another leader's entry replaced it. A truncation fails the commands at and
 * above the truncated index at once (they are at the end of the ring).
 */
#define APPLY_BATCH 4096

struct rs_raft_reply {
  uint8_t *data;
  size_t len, cap;
  bool set;
};

void rs_raft_reply_set(struct rs_raft_reply *reply, const void *data, size_t len) {
  if (!reply) return;
  if (len > reply->cap) {
    size_t cap = reply->cap ? reply->cap : 64;
    while (cap < len)
      cap *= 2;
    uint8_t *p = realloc(reply->data, cap);
    if (!p) return; /* the caller gets no response rather than a wrong one */
    reply->data = p;
    reply->cap = cap;
  }
  if (len) memcpy(reply->data, data, len);
  reply->len = len;
  reply->set = true;
}

int raft_apply_init(struct raft *r) {
  r->reply = calloc(1, sizeof(*r->reply));
  r->pending_cap = 256;
  r->pending = malloc(r->pending_cap * sizeof(*r->pending));
  r->pending_head = r->pending_n = 0;
  if (r->reply && r->pending) return 0;
  raft_apply_fini(r);
  return RS_ENOMEM;
}

void raft_apply_fini(struct raft *r) {
  if (r->reply) free(r->reply->data);
  free(r->reply);
  r->reply = NULL;
  free(r->pending);
  r->pending = NULL;
  r->pending_n = r->pending_cap = r->pending_head = 0;
}

static struct raft_pending *pending_at(struct raft *r, size_t k) {
  return &r->pending[(r->pending_head + k) % r->pending_cap];
}

static int pending_reserve(struct raft *r) {
  if (r->pending_n < r->pending_cap) return 0;
  size_t cap = r->pending_cap * 2;
  struct raft_pending *p = malloc(cap * sizeof(*p));
  if (!p) return RS_ENOMEM;
  for (size_t k = 0; k < r->pending_n; k++)
    p[k] = *pending_at(r, k);
  free(r->pending);
  r->pending = p;
  r->pending_cap = cap;
  r->pending_head = 0;
  return 0;
}

static struct raft_pending pending_pop_front(struct raft *r) {
  struct raft_pending p = r->pending[r->pending_head];
  r->pending_head = (r->pending_head + 1) % r->pending_cap;
  r->pending_n--;
  return p;
}

int raft_submit(struct raft *r, struct rs_buf *buf, const uint8_t *data, uint32_t len,
                raft_done_fn done, void *arg) {
  if (r->stopped || !r->log)
    return r->log && raft_log_error(r->log) ? raft_log_error(r->log) : RS_ESHUTDOWN;
  if (r->role != RS_RAFT_LEADER) return r->leader >= 0 ? RS_ENOTLEADER : RS_ENOLEADER;
  if (pending_reserve(r)) return RS_ENOMEM;
  rs_term term = raft_log_current_term(r->log);
  rs_index idx;
  int rc = raft_log_append(r->log, term, RAFT_ENTRY_COMMAND, buf, data, len, &idx);
  if (rc) {
    if (raft_log_error(r->log)) raft_halt(r, rc);
    return rc;
  }
  r->pending_n++;
  *pending_at(r, r->pending_n - 1) = (struct raft_pending){idx, term, done, arg};
  raft_repl_flush(r);
  return 0;
}

void raft_fail_pending(struct raft *r, int status) {
  while (r->pending_n) {
    struct raft_pending p = pending_pop_front(r);
    p.done(p.arg, status, NULL, 0);
  }
}

void raft_pending_truncated(struct raft *r, rs_index from) {
  /* Failed from the highest down, each exactly once: take it out of the ring before its done
   * runs (a done may submit again only on a leader, which never truncates its own log). */
  while (r->pending_n) {
    struct raft_pending *p = pending_at(r, r->pending_n - 1);
    if (p->index < from) break;
    struct raft_pending copy = *p;
    r->pending_n--;
    copy.done(copy.arg, RS_ENOTLEADER, NULL, 0);
  }
}

void raft_apply_post(struct raft *r) {
  if (r->last_applied < r->commit_index) rs_post(r->base.rt, &r->apply_task);
}

/* Completes the pending command at e's index, if any, with the response of its apply. */
static void complete(struct raft *r, const struct raft_entry *e, int status) {
  while (r->pending_n && r->pending[r->pending_head].index < e->index) {
    /* Cannot happen (every index below was applied and completed), but never leave one hanging. */
    struct raft_pending p = pending_pop_front(r);
    p.done(p.arg, RS_ENOTLEADER, NULL, 0);
  }
  if (!r->pending_n || r->pending[r->pending_head].index != e->index) return;
  struct raft_pending p = pending_pop_front(r);
  if (p.term != e->term) {
    p.done(p.arg, RS_ENOTLEADER, NULL, 0);
    return;
  }
  struct rs_raft_reply *rp = r->reply;
  p.done(p.arg, status, rp->set ? rp->data : NULL, rp->set ? rp->len : 0);
}

static void apply_one(struct raft *r, const struct raft_entry *e) {
  int status = 0;
  r->reply->set = false;
  r->reply->len = 0;
  if (e->type == RAFT_ENTRY_COMMAND && r->sm && r->sm->apply)
    status = r->sm->apply(r->sm_arg, e->index, e->data, e->len, r->reply);
  r->last_applied = e->index;
  if (r->apply_hook) r->apply_hook(r->apply_hook_arg, e);
  complete(r, e, status);
}

void raft_apply_task(struct rs_task *t) {
  struct raft *r = (struct raft *)((char *)t - offsetof(struct raft, apply_task));
  if (r->stopped) return;
  size_t n = 0;
  while (r->last_applied < r->commit_index && n < APPLY_BATCH && !r->stopped) {
    const struct raft_entry *e = raft_log_get(r->log, r->last_applied + 1);
    if (!e) break; /* below the log's start: a snapshot's business, not implemented yet */
    apply_one(r, e);
    n++;
  }
  if (n) r->st.applied_batches++;
  if (r->stopped) return;
  /* Raft keeps the commit index volatile; persisting it lazily lets a restarted node replay what
   * it knows to be committed without waiting for a leader. */
  if (raft_log_commit_index(r->log) < r->last_applied) raft_log_set_commit(r->log, r->last_applied);
  raft_apply_post(r);
}

/* The RaftHandle: rs_raft_open/close, set, set_async, state getters and role listeners. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/raft.h>

#include "protocols/raft/redirect.h"
#include "raft/handle_internal.h"
#include "stack/channel_internal.h"
#include "stack/log_internal.h"

/*
 * Threads (DESIGN.md §2). RAFT and REDIRECT live on the channel's loop thread and hold no
 * locks; the handle is how application threads reach them:
 *
 * - Commands: rs_raft_set_async copies the bytes into one rs_buf and posts the submission to
 *   the loop (rs_runtime_call); the loop hands the buffer to REDIRECT (or to RAFT when the stack
 *   has no REDIRECT) and the outcome completes the future there (handle_future.c). rs_raft_set
 *   is set_async + wait_for + free, so a timed-out set simply frees a future whose outcome is
 *   dropped when it arrives.
 * - State (role, term, indexes, leader): on the loop thread read from RAFT directly; from any
 *   other thread one hop to the loop and back (rs_runtime_call + a completion) that takes a
 *   consistent snapshot of all of it. Choice: no mirror under a mutex. A hop costs 10-30 us
 *   on the libev runtime (test_raft_handle's threads_on_the_libev_runtime prints it: 20,000
 *   getters in 200-600 ms, debug builds, this shared 2-core machine), far below a Raft round trip, and a
 *   getter can never show a state RAFT was not in. A mirror would be worth it only for callers
 *   polling in a hot loop.
 * - Role listeners are RAFT's own (raft_add_role_listener), added and removed on the loop.
 * - Close runs on the loop: it fails what is outstanding with RS_ESHUTDOWN, removes the
 *   listeners and the state machine, then drops the caller's reference. Each future holds one
 *   more until its outcome (handle_ref), so the memory outlives a submission that a future
 *   callback queued during close; that submission finds the handle closing (RS_ESHUTDOWN).
 */

struct rs_raft {
  atomic_uint refs;
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_stack *st;
  struct raft *raft;
  struct redirect *redirect;  /* NULL: submit to RAFT directly */
  struct rs_state_machine sm; /* RAFT points at this copy */
  void *sm_arg;
  bool has_sm;
  bool closing; /* loop only */
  char id[RAFT_ID_MAX + 1];
  int *listeners; /* ids of RAFT role listeners added through the handle (loop only) */
  size_t n_listeners, cap_listeners;
  int sm_listener; /* forwards role changes to sm.role_changed; -1: none */
};

const char *rs_raft_role_name(enum rs_raft_role role) {
  switch (role) {
  case RS_RAFT_FOLLOWER: return "Follower";
  case RS_RAFT_CANDIDATE: return "Candidate";
  case RS_RAFT_LEADER: return "Leader";
  case RS_RAFT_LEARNER: return "Learner";
  }
  return "?";
}

/* ---------------------------------------------------------------------------------------------
 * Running a function on the loop thread and waiting for it.
 */
struct hop {
  void (*fn)(void *arg);
  void *arg;
  struct rs_completion done;
};

static void hop_run(void *arg) {
  struct hop *hp = arg;
  hp->fn(hp->arg);
  completion_done(&hp->done, 0);
}

/* fn(arg) on the loop: at once when called there, else through the loop and back. 0 or
 * RS_ESHUTDOWN when the loop is gone. */
int handle_on_loop(struct rs_runtime *rt, void (*fn)(void *arg), void *arg) {
  if (rs_runtime_on_loop(rt)) {
    fn(arg);
    return 0;
  }
  struct hop hp = {.fn = fn, .arg = arg};
  completion_init(&hp.done);
  int rc = rs_runtime_call(rt, hop_run, &hp);
  if (rc == 0) rc = completion_wait(rt, &hp.done, UINT64_MAX);
  completion_fini(&hp.done);
  return rc ? RS_ESHUTDOWN : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Open and close.
 */
struct open_args {
  struct rs_raft *h;
  int rc;
};

static void sm_role_changed(void *arg, enum rs_raft_role role, rs_term term, const char *leader) {
  struct rs_raft *h = arg;
  if (h->sm.role_changed) h->sm.role_changed(h->sm_arg, role, term, leader);
}

static void open_on_loop(void *arg) {
  struct open_args *a = arg;
  struct rs_raft *h = a->h;
  if (h->st->started) {
    RS_LOG(ERROR, "raft",
           "rs_raft_open: the channel is connected already; open the handle "
           "before rs_channel_connect so the state machine sees every entry");
    a->rc = RS_EISCONN;
    return;
  }
  h->raft = raft_find(h->st);
  if (!h->raft) {
    RS_LOG(ERROR, "raft",
           "rs_raft_open: the channel's stack has no RAFT (add <raft.ELECTION/> "
           "and <raft.RAFT raft_id=... members=.../> to its XML)");
    a->rc = RS_ECONFIG;
    return;
  }
  h->redirect = redirect_find(h->st);
  const char *id = raft_self_id(h->raft);
  snprintf(h->id, sizeof(h->id), "%s", id ? id : "");
  if (h->has_sm && h->sm.role_changed) {
    int lid = raft_add_role_listener(h->raft, sm_role_changed, h);
    if (lid < 0) {
      a->rc = lid;
      return;
    }
    h->sm_listener = lid;
  }
  raft_set_state_machine(h->raft, h->has_sm ? &h->sm : NULL, h->sm_arg);
  a->rc = 0;
}

int rs_raft_open(struct rs_raft **out, struct rs_channel *ch, const struct rs_state_machine *sm,
                 void *sm_arg) {
  if (!out || !ch || (sm && !sm->apply)) return RS_EINVAL;
  *out = NULL;
  struct rs_raft *h = calloc(1, sizeof(*h));
  if (!h) return RS_ENOMEM;
  h->ch = ch;
  h->rt = channel_runtime(ch);
  h->st = channel_stack(ch);
  h->sm_listener = -1;
  if (sm) {
    h->sm = *sm;
    h->has_sm = true;
  }
  h->sm_arg = sm_arg;
  atomic_init(&h->refs, 1);
  struct open_args a = {.h = h, .rc = RS_ESHUTDOWN};
  int rc = h->st ? handle_on_loop(h->rt, open_on_loop, &a) : RS_ESHUTDOWN;
  if (rc == 0) rc = a.rc;
  if (rc) {
    free(h);
    return rc;
  }
  *out = h;
  return 0;
}

static void close_on_loop(void *arg) {
  struct rs_raft *h = arg;
  h->closing = true;
  /* What RAFT holds (submitted here, or for other nodes through REDIRECT), then what this node
   * forwarded and still waits for. */
  raft_fail_pending(h->raft, RS_ESHUTDOWN);
  if (h->redirect) redirect_fail_pending(h->redirect, RS_ESHUTDOWN);
  for (size_t i = 0; i < h->n_listeners; i++)
    raft_remove_role_listener(h->raft, h->listeners[i]);
  h->n_listeners = 0;
  if (h->sm_listener >= 0) raft_remove_role_listener(h->raft, h->sm_listener);
  h->sm_listener = -1;
  raft_set_state_machine(h->raft, NULL, NULL);
}

void rs_raft_close(struct rs_raft *h) {
  if (!h) return;
  if (rs_runtime_on_loop(h->rt)) {
    /* Freeing the handle under a callback that may still use it: refused, as channel close. */
    RS_LOG(ERROR, "raft", "rs_raft_close called from a callback: refused (%s)",
           rs_strerror(RS_EDEADLK));
    return;
  }
  if (handle_on_loop(h->rt, close_on_loop, h) != 0)
    RS_LOG(ERROR, "raft",
           "rs_raft_close: the channel's loop is gone (close the handle before "
           "the channel)");
  handle_unref(h);
}

void handle_ref(struct rs_raft *h) { atomic_fetch_add(&h->refs, 1); }

void handle_unref(struct rs_raft *h) {
  if (atomic_fetch_sub(&h->refs, 1) != 1) return;
  free(h->listeners);
  free(h);
}

const char *rs_raft_id(const struct rs_raft *h) { return h->id; }

/* ---------------------------------------------------------------------------------------------
 * Submitting (called on the loop by handle_future.c).
 */
int handle_submit(struct rs_raft *h, struct rs_buf *buf, uint32_t len, raft_done_fn done,
                  void *arg) {
  if (h->closing) return RS_ESHUTDOWN;
  if (!h->st->started) return RS_ENOTCONN;
  const uint8_t *data = buf ? buf->data : NULL;
  if (h->redirect) return redirect_submit(h->redirect, buf, data, len, done, arg);
  return raft_submit(h->raft, buf, data, len, done, arg);
}

const char *handle_leader_id(struct rs_raft *h) { return raft_leader_id(h->raft); }

struct rs_runtime *handle_runtime(struct rs_raft *h) {
  return h->rt;
}

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct snapshot {
  struct rs_raft *h;
  enum rs_raft_role role;
  rs_term term;
  rs_index commit, applied, last;
  uint64_t log_size;
  bool has_leader;
  char leader[RAFT_ID_MAX + 1];
};

static void snapshot_on_loop(void *arg) {
  struct snapshot *s = arg;
  struct raft *r = s->h->raft;
  s->role = raft_role(r);
  s->term = raft_current_term(r);
  s->commit = raft_commit_index(r);
  s->applied = raft_last_applied(r);
  s->last = raft_last_index(r);
  s->log_size = raft_log_size(r);
  const char *l = raft_leader_id(r);
  s->has_leader = l != NULL;
  snprintf(s->leader, sizeof(s->leader), "%s", l ? l : "");
}

/* Everything in one consistent read; zeros when the loop is gone. */
static struct snapshot snap(struct rs_raft *h) {
  struct snapshot s = {.h = h};
  handle_on_loop(h->rt, snapshot_on_loop, &s);
  return s;
}

bool rs_raft_is_leader(struct rs_raft *h) { return snap(h).role == RS_RAFT_LEADER; }
enum rs_raft_role rs_raft_role(struct rs_raft *h) { return snap(h).role; }
uint64_t rs_raft_current_term(struct rs_raft *h) { return snap(h).term; }
uint64_t rs_raft_last_applied(struct rs_raft *h) { return snap(h).applied; }
uint64_t rs_raft_commit_index(struct rs_raft *h) { return snap(h).commit; }
uint64_t rs_raft_last_index(struct rs_raft *h) { return snap(h).last; }
uint64_t rs_raft_log_size(struct rs_raft *h) { return snap(h).log_size; }

bool rs_raft_leader(struct rs_raft *h, char *buf, size_t len) {
  struct snapshot s = snap(h);
  if (buf && len) snprintf(buf, len, "%s", s.has_leader ? s.leader : "");
  return s.has_leader;
}

/* ---------------------------------------------------------------------------------------------
 * Role listeners.
 */
struct listener_args {
  struct rs_raft *h;
  raft_role_fn fn;
  void *arg;
  int id;
};

static void add_listener_on_loop(void *arg) {
  struct listener_args *a = arg;
  struct rs_raft *h = a->h;
  if (h->n_listeners == h->cap_listeners) {
    size_t cap = h->cap_listeners ? 2 * h->cap_listeners : 4;
    int *v = realloc(h->listeners, cap * sizeof(*v));
    if (!v) {
      a->id = RS_ENOMEM;
      return;
    }
    h->listeners = v;
    h->cap_listeners = cap;
  }
  a->id = raft_add_role_listener(h->raft, a->fn, a->arg);
  if (a->id >= 0) h->listeners[h->n_listeners++] = a->id;
}

int rs_raft_add_role_listener(struct rs_raft *h,
                              void (*fn)(void *arg, enum rs_raft_role role, uint64_t term,
                                         const char *leader),
                              void *arg) {
  if (!h || !fn) return RS_EINVAL;
  struct listener_args a = {.h = h, .fn = fn, .arg = arg, .id = RS_ESHUTDOWN};
  handle_on_loop(h->rt, add_listener_on_loop, &a);
  return a.id;
}

static void remove_listener_on_loop(void *arg) {
  struct listener_args *a = arg;
  struct rs_raft *h = a->h;
  for (size_t i = 0; i < h->n_listeners; i++)
    if (h->listeners[i] == a->id) {
      h->listeners[i] = h->listeners[--h->n_listeners];
      raft_remove_role_listener(h->raft, a->id);
      return;
    }
}

void rs_raft_remove_role_listener(struct rs_raft *h, int id) {
  if (!h || id < 0) return;
  struct listener_args a = {.h = h, .id = id};
  handle_on_loop(h->rt, remove_listener_on_loop, &a);
}

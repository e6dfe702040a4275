/* The RaftHandle's commands: rs_raft_set, rs_raft_set_async and the futures they complete. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/raft.h>

#include "raft/handle_internal.h"
#include "stack/buf.h"

/*
 * A future is shared by two parties, each holding one reference: its owner (the application,
 * until rs_raft_future_free) and the loop (from the submission until the outcome arrives). The
 * loop completes it under the future's mutex; the owner waits on its completion from any thread
 * (in the simulation, waiting steps the world). Freeing a pending future only marks it detached
 * and drops the owner's reference: the loop still holds its own, so the outcome that arrives
 * later lands in a live object and is dropped there. A timed-out rs_raft_set is exactly that.
 * A future also holds a reference to its handle from rs_raft_set_async until its outcome, so a
 * submission still queued on the loop when rs_raft_close returns finds the handle alive (and
 * closing: RS_ESHUTDOWN).
 */

typedef void (*future_cb)(void *arg, int status, const void *data, size_t len);

struct rs_raft_future {
  atomic_uint refs;
  atomic_bool done;   /* the outcome is in and the callback (if any) has returned */
  pthread_mutex_t mu; /* guards everything below that changes after creation */
  struct rs_completion c;
  bool completed; /* the outcome is in (the callback may still be running) */
  bool detached;  /* the owner freed it: drop the outcome, call no callback */
  int status;
  void *rsp; /* malloc'd; moves to the owner in wait */
  size_t rsp_len;
  future_cb cb;
  void *cb_arg;
  bool cb_set;
  /* Fixed at creation. */
  struct rs_raft *h;
  struct rs_runtime *rt;
  struct rs_buf *buf; /* the command, until submitted (NULL when empty) */
  uint32_t len;
};

static void future_unref(struct rs_raft_future *f) {
  if (atomic_fetch_sub(&f->refs, 1) != 1) return;
  rs_buf_unref(f->buf);
  free(f->rsp);
  completion_fini(&f->c);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* The outcome, on the loop thread (RAFT's or REDIRECT's done, or a failed submission): exactly
 * once per future. The callback runs before waiters wake, so a wait that returns has seen it. */
static void future_complete(void *arg, int status, const void *rsp, size_t len) {
  struct rs_raft_future *f = arg;
  future_cb cb = NULL;
  void *cb_arg = NULL;
  pthread_mutex_lock(&f->mu);
  if (!f->detached) {
    f->status = status;
    if (len && (f->rsp = malloc(len)) != NULL) {
      memcpy(f->rsp, rsp, len);
      f->rsp_len = len;
    } else if (len) {
      f->status = RS_ENOMEM; /* applied, but the response could not be kept */
    }
    cb = f->cb;
    cb_arg = f->cb_arg;
  }
  f->completed = true;
  pthread_mutex_unlock(&f->mu);
  if (cb) cb(cb_arg, status, rsp, len);
  atomic_store(&f->done, true);
  completion_done(&f->c, status);
  future_unref(f);
}

/* RAFT's or REDIRECT's done. rs_raft_set: "RS_ENOTLEADER (with the leader's id when known)":
 * when the answer does not name the leader, the one this node knows is the response. */
static void on_outcome(void *arg, int status, const void *rsp, size_t len) {
  struct rs_raft_future *f = arg;
  struct rs_raft *h = f->h; /* f may be freed by future_complete */
  if (status == RS_ENOTLEADER && !len) {
    const char *leader = handle_leader_id(h);
    rsp = leader;
    len = leader ? strlen(leader) : 0;
  }
  future_complete(f, status, rsp, len);
  handle_unref(h); /* the future's reference (rs_raft_set_async) */
}

static void submit_on_loop(void *arg) {
  struct rs_raft_future *f = arg;
  int rc = handle_submit(f->h, f->buf, f->len, on_outcome, f);
  rs_buf_unref(f->buf); /* RAFT or REDIRECT took its own reference */
  f->buf = NULL;
  if (rc) on_outcome(f, rc, NULL, 0);
}

int rs_raft_set_async(struct rs_raft *h, const void *data, size_t len,
                      struct rs_raft_future **out) {
  if (!h || !out || (!data && len)) return RS_EINVAL;
  if (len > UINT32_MAX) return RS_ETOOBIG;
  *out = NULL;
  struct rs_raft_future *f = calloc(1, sizeof(*f));
  if (!f) return RS_ENOMEM;
  if (len && !(f->buf = rs_buf_new(len))) {
    free(f);
    return RS_ENOMEM;
  }
  if (len) memcpy(f->buf->data, data, len);
  f->len = (uint32_t)len;
  f->h = h;
  f->rt = handle_runtime(h);
  atomic_init(&f->refs, 2);
  atomic_init(&f->done, false);
  pthread_mutex_init(&f->mu, NULL);
  completion_init(&f->c);
  handle_ref(h); /* until the outcome (on_outcome) */
  /* Always through the loop's queue, even on the loop thread: commands go to RAFT in the order
   * they were made, and never from inside one of RAFT's own callbacks (apply, role change). */
  if (rs_runtime_call(f->rt, submit_on_loop, f) != 0) {
    handle_unref(h);
    atomic_store(&f->refs, 1);
    future_unref(f);
    return RS_ESHUTDOWN;
  }
  *out = f;
  return 0;
}

static rs_time ms_to_ns(uint64_t ms) { return ms >= UINT64_MAX / RS_MS ? UINT64_MAX : ms * RS_MS; }

int rs_raft_future_wait_for(struct rs_raft_future *f, uint64_t timeout_ms,
                            struct rs_raft_rsp *rsp) {
  if (rsp) *rsp = (struct rs_raft_rsp){0};
  if (!f) return RS_EINVAL;
  if (!atomic_load(&f->done)) {
    if (rs_runtime_on_loop(f->rt)) {
      /* A callback: only its own future (complete, its callback running) can be read. */
      pthread_mutex_lock(&f->mu);
      bool completed = f->completed;
      pthread_mutex_unlock(&f->mu);
      if (!completed) return RS_EDEADLK;
    } else if (completion_wait(f->rt, &f->c, ms_to_ns(timeout_ms)) == RS_ETIMEDOUT &&
               !atomic_load(&f->done)) {
      return RS_ETIMEDOUT;
    }
  }
  pthread_mutex_lock(&f->mu);
  int status = f->status;
  if (rsp) {
    rsp->data = f->rsp;
    rsp->len = f->rsp_len;
    f->rsp = NULL;
    f->rsp_len = 0;
  }
  pthread_mutex_unlock(&f->mu);
  return status;
}

int rs_raft_future_wait(struct rs_raft_future *f, struct rs_raft_rsp *rsp) {
  return rs_raft_future_wait_for(f, RS_RAFT_FOREVER, rsp);
}

bool rs_raft_future_done(const struct rs_raft_future *f) {
  return f && atomic_load(&((struct rs_raft_future *)f)->done);
}

int rs_raft_future_on_complete(struct rs_raft_future *f, future_cb fn, void *arg) {
  if (!f || !fn) return RS_EINVAL;
  pthread_mutex_lock(&f->mu);
  if (f->cb_set) {
    pthread_mutex_unlock(&f->mu);
    return RS_EEXIST;
  }
  f->cb_set = true;
  if (!f->completed) {
    f->cb = fn;
    f->cb_arg = arg;
    pthread_mutex_unlock(&f->mu);
    return 0;
  }
  int status = f->status;
  void *data = f->rsp;
  size_t len = f->rsp_len;
  pthread_mutex_unlock(&f->mu);
  /* Already complete: in the caller, now. Only the owner moves rsp (wait), and the owner is
   * the one calling. */
  fn(arg, status, data, len);
  return 0;
}

void rs_raft_future_free(struct rs_raft_future *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  f->detached = true;
  f->cb = NULL;
  pthread_mutex_unlock(&f->mu);
  future_unref(f);
}

int rs_raft_set(struct rs_raft *h, const void *data, size_t len, struct rs_raft_rsp *rsp,
                uint64_t timeout_ms) {
  if (rsp) *rsp = (struct rs_raft_rsp){0};
  if (!h) return RS_EINVAL;
  if (rs_runtime_on_loop(handle_runtime(h))) return RS_EDEADLK;
  struct rs_raft_future *f;
  int rc = rs_raft_set_async(h, data, len, &f);
  if (rc) return rc;
  rc = rs_raft_future_wait_for(f, timeout_ms, rsp);
  rs_raft_future_free(f);
  return rc;
}

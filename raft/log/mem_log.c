/* The "memory" log class: keeps nothing, completes every batch asynchronously on the loop. */
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "raft/log/log.h"

/*
 * The memory image lives in struct raft_log; a store only persists it, and this one persists
 * nothing: every open finds an empty log, and nothing survives the process (tests, and
 * benchmarks without log_use_fsync). A batch still completes from a posted task rather than
 * inside submit, so that callers see the same asynchronous order as with the file store and the
 * class works in the simulation and on libev alike.
 */
struct mem_store {
  struct rs_runtime *rt;
  struct rs_task task;
  log_done_fn done; /* the outstanding submit's, NULL when none */
  void *arg;
};

static void mem_complete(struct rs_task *t) {
  struct mem_store *s = (struct mem_store *)((char *)t - offsetof(struct mem_store, task));
  log_done_fn done = s->done;
  s->done = NULL;
  if (done) done(s->arg, 0);
}

static int mem_open(struct rs_log_store **out, const struct log_config *cfg, struct rs_runtime *rt,
                    struct log_loaded *loaded, char *err, size_t errlen) {
  (void)cfg;
  (void)err;
  (void)errlen;
  struct mem_store *s = calloc(1, sizeof(*s));
  if (!s) return RS_ENOMEM;
  s->rt = rt;
  rs_task_init(&s->task, mem_complete);
  memset(loaded, 0, sizeof(*loaded));
  loaded->first_index = 1;
  *out = (struct rs_log_store *)s;
  return 0;
}

static void mem_submit(struct rs_log_store *store, const struct log_op *ops, size_t n, bool sync,
                       log_done_fn done, void *arg) {
  struct mem_store *s = (struct mem_store *)store;
  (void)ops;
  (void)n;
  (void)sync;
  s->done = done;
  s->arg = arg;
  rs_post(s->rt, &s->task);
}

/* The outstanding batch's done runs here, before the store goes away. */
static void mem_close(struct rs_log_store *store) {
  struct mem_store *s = (struct mem_store *)store;
  if (!s) return;
  rs_task_cancel(s->rt, &s->task);
  mem_complete(&s->task);
  free(s);
}

static const char *const mem_aliases[] = {"InMemoryLog", "org.jgroups.protocols.raft.InMemoryLog",
                                          NULL};

const struct rs_log_ops log_memory_ops = {
    .name = "memory",
    .aliases = mem_aliases,
    .open = mem_open,
    .submit = mem_submit,
    .close = mem_close,
};

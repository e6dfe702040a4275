/* The Raft log: the in-memory image RAFT reads, and group commit of its mutations to a store. */
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "raft/log/log.h"
#include "raft/log/log_internal.h"
#include "stack/log_internal.h"

/*
 * Every mutation changes the memory image at once (so RAFT reads its own writes) and is recorded
 * as an op of the *open* batch. At most one batch is at the store (the *in-flight* one); the open
 * batch is handed over from a posted task when nothing is in flight, or from the in-flight
 * batch's completion. Everything RAFT does in one loop callback therefore lands in one batch, and
 * everything it does while an fsync runs lands in the next: group commit, one fsync per batch.
 *
 * A batch owns its own references to the payload buffers of the entries it carries, so the
 * memory image may drop an entry (suffix truncation) while the store still writes it.
 *
 * durable_index: the entries <= it are what the store holds durably *and* are still the entries
 * of the memory image. A batch's completion raises it to the last index its ops produced
 * (end_index), clamped below the lowest suffix truncation queued after it (the open batch's
 * trunc_floor): those entries were durable, but are already replaced in memory. A truncation
 * lowers it at once, for the same reason.
 */

/* The memory image is a ring of fixed-size chunks. */
#define CHUNK_SHIFT 10
#define CHUNK ((size_t)1 << CHUNK_SHIFT)

/* A batch: ops in order, with the entries of its appends in one array. */
struct batch {
  struct log_op *ops;
  size_t n_ops, cap_ops;
  struct raft_entry *ents; /* each holds one buffer reference */
  size_t n_ents, cap_ents;
  char voted_for[RAFT_ID_MAX + 1]; /* the META op's vote (one per batch, coalesced) */
  size_t meta_op, commit_op;       /* position of the META / COMMIT op, SIZE_MAX if none */
  rs_index end_index;              /* last index after this batch's ops */
  rs_index trunc_floor;            /* lowest (from - 1) of its suffix truncations */
  uint64_t meta_seq;               /* the log's meta_seq when its META op was last updated */
  uint64_t bytes;
  bool needs_sync; /* anything but a COMMIT op */
};

struct raft_log {
  const struct rs_log_ops *ops;
  struct rs_log_store *store;
  struct rs_runtime *rt;
  bool use_fsync;

  /* The memory image: a ring of entries first_index..first_index + n - 1, in chunks of CHUNK
   * entries (cap is a power of two, a multiple of CHUNK). */
  struct raft_entry **chunks;
  size_t cap, head, n;
  rs_index first_index;
  rs_term prefix_term;
  uint64_t size_bytes;

  rs_term term;
  char voted_for[RAFT_ID_MAX + 1];
  rs_index commit;

  rs_index durable_index;
  uint64_t meta_seq; /* bumped by every set_term_vote */
  bool meta_durable;

  struct batch batches[2];
  struct batch *open, *inflight; /* inflight NULL when nothing is at the store */
  struct rs_task flush_task;
  struct rs_timer commit_timer; /* flushes a batch that only moves the commit index */
  bool closing;
  int error;

  void (*persisted)(void *arg, int status);
  void *persisted_arg;
  struct raft_log_stats stats;
};

/* ---- the memory image ----------------------------------------------------------------------- */

static struct raft_entry *slot(const struct raft_log *log, size_t i) {
  size_t pos = (log->head + i) & (log->cap - 1);
  return &log->chunks[pos >> CHUNK_SHIFT][pos & (CHUNK - 1)];
}

/* Doubles the ring by adding chunks; entries never move, except the at most CHUNK - 1 that wrapped
 * into the lower part of the head's chunk. A flat array doubled by copying stalled the loop for
 * longer than an election timeout at 2^23 entries (half a gigabyte copied at once). */
static int ring_grow(struct raft_log *log) {
  size_t n_old = log->cap >> CHUNK_SHIFT, n_new = n_old ? n_old * 2 : 1;
  struct raft_entry **c = calloc(n_new, sizeof(*c));
  if (!c) return RS_ENOMEM;
  for (size_t j = n_old; j < n_new; j++)
    if (!(c[j] = malloc(CHUNK * sizeof(**c)))) {
      while (j-- > n_old)
        free(c[j]);
      free(c);
      return RS_ENOMEM;
    }
  /* Renumber the old chunks from the one holding the head: entry i stays in place. */
  size_t k0 = log->head >> CHUNK_SHIFT, off = log->head & (CHUNK - 1);
  for (size_t j = 0; j < n_old; j++)
    c[j] = log->chunks[(k0 + j) % n_old];
  /* A full ring wrapped into the head chunk below `off`: those entries now belong one lap on. */
  if (n_old && log->n + off > log->cap) memcpy(c[n_old], c[0], off * sizeof(**c));
  free(log->chunks);
  log->chunks = c;
  log->cap = n_new << CHUNK_SHIFT;
  log->head = off;
  return 0;
}

static void entry_drop(struct raft_log *log, struct raft_entry *e) {
  log->size_bytes -= (uint64_t)e->len + LOG_ENTRY_OVERHEAD;
  rs_buf_unref(e->buf);
  memset(e, 0, sizeof(*e));
}

/* ---- batches -------------------------------------------------------------------------------- */

static void batch_reset(struct batch *b) {
  for (size_t i = 0; i < b->n_ents; i++)
    rs_buf_unref(b->ents[i].buf);
  b->n_ops = b->n_ents = 0;
  b->meta_op = b->commit_op = SIZE_MAX;
  b->end_index = 0;
  b->trunc_floor = UINT64_MAX;
  b->bytes = 0;
  b->needs_sync = false;
}

static void batch_free(struct batch *b) {
  batch_reset(b);
  free(b->ops);
  free(b->ents);
}

static struct log_op *batch_add_op(struct batch *b, enum log_op_type type) {
  if (b->n_ops == b->cap_ops) {
    size_t cap = b->cap_ops ? b->cap_ops * 2 : 8;
    struct log_op *o = realloc(b->ops, cap * sizeof(*o));
    if (!o) return NULL;
    b->ops = o;
    b->cap_ops = cap;
  }
  struct log_op *op = &b->ops[b->n_ops++];
  memset(op, 0, sizeof(*op));
  op->type = type;
  return op;
}

static int batch_reserve_ents(struct batch *b, size_t more) {
  if (b->n_ents + more <= b->cap_ents) return 0;
  size_t cap = b->cap_ents ? b->cap_ents : 16;
  while (cap < b->n_ents + more)
    cap *= 2;
  struct raft_entry *e = realloc(b->ents, cap * sizeof(*e));
  if (!e) return RS_ENOMEM;
  b->ents = e;
  b->cap_ents = cap;
  return 0;
}

/* Append ops record where their entries start in b->ents (an offset in u.append.entries, as the
 * array may move); batch_seal turns offsets into pointers before the store sees them. */
static void batch_seal(struct batch *b) {
  for (size_t i = 0; i < b->n_ops; i++)
    if (b->ops[i].type == LOG_OP_APPEND)
      b->ops[i].u.append.entries = b->ents + (uintptr_t)b->ops[i].u.append.entries;
  if (b->meta_op != SIZE_MAX) b->ops[b->meta_op].u.meta.voted_for = b->voted_for;
}

/* ---- submitting ----------------------------------------------------------------------------- */

static void batch_done(void *arg, int status);

/* A batch that only moves the commit index waits for the next batch with real work, or for
 * COMMIT_LAZY: on its own it would hold the store's one slot and delay the next append's fsync,
 * which is on every command's path (measured: 0.6 entries per batch at one outstanding command).
 * A commit index lost in a crash is learned again from the leader. */
#define COMMIT_LAZY RS_SEC

static void flush_now(struct raft_log *log);

static void flush(struct raft_log *log) {
  if (log->open->n_ops && !log->open->needs_sync) {
    if (!rs_timer_active(&log->commit_timer)) rs_timer_start(&log->commit_timer, COMMIT_LAZY, 0);
    return;
  }
  flush_now(log);
}

static void commit_timer_cb(struct rs_timer *t) {
  flush_now((struct raft_log *)((char *)t - offsetof(struct raft_log, commit_timer)));
}

static void flush_now(struct raft_log *log) {
  if (log->inflight || log->closing || log->error || log->open->n_ops == 0) return;
  rs_timer_stop(&log->commit_timer);
  struct batch *b = log->open;
  log->inflight = b;
  log->open = (b == &log->batches[0]) ? &log->batches[1] : &log->batches[0];
  batch_seal(b);
  log->stats.batches++;
  log->stats.ops += b->n_ops;
  log->stats.entries_written += b->n_ents;
  log->stats.bytes_written += b->bytes;
  if (b->n_ents > log->stats.max_batch_entries) log->stats.max_batch_entries = b->n_ents;
  /* A COMMIT alone never needs an fsync: a lost commit index is learned again from the leader. */
  log->ops->submit(log->store, b->ops, b->n_ops, log->use_fsync && b->needs_sync, batch_done, log);
}

static void flush_task(struct rs_task *t) {
  struct raft_log *log = (struct raft_log *)((char *)t - offsetof(struct raft_log, flush_task));
  flush(log);
}

static void batch_done(void *arg, int status) {
  struct raft_log *log = arg;
  struct batch *b = log->inflight;
  log->inflight = NULL;
  if (log->closing) { /* from the store's close: nobody reads the outcome any more */
    batch_reset(b);
    return;
  }
  if (status != 0) {
    if (!log->error) log->error = status;
    RS_LOG(ERROR, "RAFT", "log %s: store failed: %s; the log refuses every mutation from now on",
           log->ops->name, rs_strerror(status));
  } else {
    rs_index durable = b->end_index;
    if (log->open->trunc_floor < durable) durable = log->open->trunc_floor;
    if (durable > log->durable_index) log->durable_index = durable;
    if (b->meta_op != SIZE_MAX && b->meta_seq == log->meta_seq) log->meta_durable = true;
  }
  batch_reset(b);
  flush(log);
  if (log->persisted) log->persisted(log->persisted_arg, status);
}

/* Every mutation: the open batch gets an op, and a flush is scheduled for after this callback. */
static void scheduled(struct raft_log *log) {
  log->open->end_index = raft_log_last_index(log);
  if (!log->inflight) rs_post(log->rt, &log->flush_task);
}

/* ---- open / close --------------------------------------------------------------------------- */

static void load(struct raft_log *log, struct log_loaded *l) {
  log->term = l->term;
  memcpy(log->voted_for, l->voted_for, sizeof(log->voted_for));
  log->voted_for[RAFT_ID_MAX] = '\0';
  log->commit = l->commit;
  log->first_index = l->first_index ? l->first_index : 1;
  log->prefix_term = l->prefix_term;
  for (size_t i = 0; i < l->n; i++) {
    *slot(log, log->n++) = l->entries[i]; /* the reference moves to the ring */
    log->size_bytes += (uint64_t)l->entries[i].len + LOG_ENTRY_OVERHEAD;
  }
  free(l->entries);
  l->entries = NULL;
  l->n = 0;
  log->durable_index = raft_log_last_index(log);
  log->meta_durable = true;
}

int raft_log_open(struct raft_log **out, const struct rs_log_ops *ops, const struct log_config *cfg,
                  struct rs_runtime *rt, char *err, size_t errlen) {
  *out = NULL;
  if (errlen) err[0] = '\0';
  struct raft_log *log = calloc(1, sizeof(*log));
  if (!log) return RS_ENOMEM;
  log->ops = ops;
  log->rt = rt;
  log->use_fsync = cfg->use_fsync;
  log->open = &log->batches[0];
  batch_reset(&log->batches[0]);
  batch_reset(&log->batches[1]);
  rs_task_init(&log->flush_task, flush_task);
  rs_timer_init(&log->commit_timer, rt, commit_timer_cb);
  struct log_loaded l;
  memset(&l, 0, sizeof(l));
  int rc = ops->open(&log->store, cfg, rt, &l, err, errlen);
  if (rc != 0) goto err_after_alloc;
  while (log->cap < l.n + 1)
    if ((rc = ring_grow(log)) != 0) goto err_after_store;
  load(log, &l);
  *out = log;
  return 0;
err_after_store:
  log_loaded_free(&l);
  ops->close(log->store);
err_after_alloc:
  free(log);
  return rc;
}

void raft_log_close(struct raft_log *log) {
  if (!log) return;
  rs_task_cancel(log->rt, &log->flush_task);
  /* A commit index held back for company goes now, so a clean stop keeps it (when the store's
   * slot is free; other unsubmitted mutations are lost, as in a crash). */
  if (!log->open->needs_sync) flush_now(log);
  rs_timer_stop(&log->commit_timer);
  log->closing = true;
  log->ops->close(log->store); /* runs the in-flight batch's done, which now only frees it */
  for (size_t i = 0; i < log->n; i++)
    rs_buf_unref(slot(log, i)->buf);
  for (size_t j = 0; j < log->cap >> CHUNK_SHIFT; j++)
    free(log->chunks[j]);
  free(log->chunks);
  batch_free(&log->batches[0]);
  batch_free(&log->batches[1]);
  free(log);
}

void raft_log_set_listener(struct raft_log *log, void (*persisted)(void *arg, int status),
                           void *arg) {
  log->persisted = persisted;
  log->persisted_arg = arg;
}

/* ---- reads ---------------------------------------------------------------------------------- */

rs_index raft_log_first_index(const struct raft_log *log) { return log->first_index; }
rs_index raft_log_last_index(const struct raft_log *log) { return log->first_index + log->n - 1; }

rs_term raft_log_last_term(const struct raft_log *log) {
  return log->n ? slot(log, log->n - 1)->term : log->prefix_term;
}

rs_term raft_log_term_at(const struct raft_log *log, rs_index idx) {
  if (idx == 0) return 0;
  if (idx == log->first_index - 1) return log->prefix_term;
  if (idx < log->first_index || idx > raft_log_last_index(log)) return 0;
  return slot(log, idx - log->first_index)->term;
}

const struct raft_entry *raft_log_get(const struct raft_log *log, rs_index idx) {
  if (idx < log->first_index || idx > raft_log_last_index(log)) return NULL;
  return slot(log, idx - log->first_index);
}

uint64_t raft_log_size_bytes(const struct raft_log *log) { return log->size_bytes; }
rs_term raft_log_current_term(const struct raft_log *log) { return log->term; }
const char *raft_log_voted_for(const struct raft_log *log) { return log->voted_for; }
rs_index raft_log_commit_index(const struct raft_log *log) { return log->commit; }
rs_index raft_log_durable_index(const struct raft_log *log) { return log->durable_index; }
bool raft_log_meta_durable(const struct raft_log *log) { return log->meta_durable; }
int raft_log_error(const struct raft_log *log) { return log->error; }
void raft_log_get_stats(const struct raft_log *log, struct raft_log_stats *out) {
  *out = log->stats;
}

/* ---- mutations ------------------------------------------------------------------------------ */

/* The APPEND op at the end of the open batch (a run of appends is one op), or a new one. */
static struct log_op *append_op(struct batch *b) {
  if (b->n_ops && b->ops[b->n_ops - 1].type == LOG_OP_APPEND) return &b->ops[b->n_ops - 1];
  struct log_op *op = batch_add_op(b, LOG_OP_APPEND);
  if (op) op->u.append.entries = (const struct raft_entry *)(uintptr_t)b->n_ents;
  return op;
}

int raft_log_append_entries(struct raft_log *log, const struct raft_entry *e, size_t n) {
  if (log->error) return log->error;
  if (n == 0) return 0;
  if (e[0].index != raft_log_last_index(log) + 1) return RS_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && e[i].index != e[i - 1].index + 1) return RS_EINVAL;
    if (e[i].len > LOG_RECORD_MAX) return RS_ETOOBIG; /* what a store could not load again */
  }
  struct batch *b = log->open;
  while (log->cap < log->n + n)
    if (ring_grow(log) != 0) return RS_ENOMEM;
  if (batch_reserve_ents(b, n) != 0) return RS_ENOMEM;
  struct log_op *op = append_op(b);
  if (!op) return RS_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    struct raft_entry *m = slot(log, log->n++);
    *m = e[i];
    if (m->buf) rs_buf_ref(m->buf);
    log->size_bytes += (uint64_t)m->len + LOG_ENTRY_OVERHEAD;
    b->ents[b->n_ents++] = *m;
    if (m->buf) rs_buf_ref(m->buf);
    b->bytes += (uint64_t)m->len + LOG_ENTRY_OVERHEAD;
  }
  op->u.append.n += n;
  b->needs_sync = true;
  scheduled(log);
  return 0;
}

int raft_log_append(struct raft_log *log, rs_term term, uint8_t type, struct rs_buf *buf,
                    const uint8_t *data, uint32_t len, rs_index *index) {
  struct raft_entry e = {.term = term,
                         .index = raft_log_last_index(log) + 1,
                         .type = type,
                         .buf = len ? buf : NULL,
                         .data = len ? data : NULL,
                         .len = len};
  int rc = raft_log_append_entries(log, &e, 1);
  if (rc == 0 && index) *index = e.index;
  return rc;
}

int raft_log_truncate_suffix(struct raft_log *log, rs_index from) {
  if (log->error) return log->error;
  if (from == raft_log_last_index(log) + 1) return 0; /* nothing to remove */
  if (from < log->first_index || from > raft_log_last_index(log)) return RS_EINVAL;
  struct log_op *op = batch_add_op(log->open, LOG_OP_TRUNCATE_SUFFIX);
  if (!op) return RS_ENOMEM;
  op->u.from = from;
  while (raft_log_last_index(log) >= from)
    entry_drop(log, slot(log, --log->n));
  if (from - 1 < log->open->trunc_floor) log->open->trunc_floor = from - 1;
  if (from - 1 < log->durable_index) log->durable_index = from - 1;
  log->open->needs_sync = true;
  scheduled(log);
  return 0;
}

int raft_log_truncate_prefix(struct raft_log *log, rs_index upto, rs_term upto_term) {
  if (log->error) return log->error;
  if (upto < log->first_index) return 0; /* already removed; the prefix never moves back */
  struct log_op *op = batch_add_op(log->open, LOG_OP_TRUNCATE_PREFIX);
  if (!op) return RS_ENOMEM;
  op->u.prefix.upto = upto;
  op->u.prefix.upto_term = upto_term;
  while (log->n && log->first_index <= upto) {
    entry_drop(log, slot(log, 0));
    log->head = (log->head + 1) & (log->cap - 1);
    log->n--;
    log->first_index++;
  }
  /* Past the last entry (a snapshot from the leader): the log restarts empty after upto. */
  if (log->first_index <= upto) log->first_index = upto + 1;
  log->prefix_term = upto_term;
  log->open->needs_sync = true;
  scheduled(log);
  return 0;
}

int raft_log_set_term_vote(struct raft_log *log, rs_term term, const char *voted_for) {
  if (log->error) return log->error;
  if (!voted_for) voted_for = "";
  size_t len = strlen(voted_for);
  if (len > RAFT_ID_MAX) return RS_EINVAL;
  struct batch *b = log->open;
  if (b->meta_op == SIZE_MAX) {
    if (!batch_add_op(b, LOG_OP_META)) return RS_ENOMEM;
    b->meta_op = b->n_ops - 1;
  }
  b->ops[b->meta_op].u.meta.term = term;
  memcpy(b->voted_for, voted_for, len + 1);
  log->term = term;
  memcpy(log->voted_for, voted_for, len + 1);
  b->meta_seq = ++log->meta_seq;
  log->meta_durable = false;
  b->needs_sync = true;
  scheduled(log);
  return 0;
}

int raft_log_set_commit(struct raft_log *log, rs_index commit) {
  if (log->error) return log->error;
  struct batch *b = log->open;
  if (b->commit_op == SIZE_MAX) {
    if (!batch_add_op(b, LOG_OP_COMMIT)) return RS_ENOMEM;
    b->commit_op = b->n_ops - 1;
  }
  b->ops[b->commit_op].u.commit = commit;
  log->commit = commit;
  scheduled(log);
  return 0;
}

void log_loaded_free(struct log_loaded *l) {
  for (size_t i = 0; i < l->n; i++)
    rs_buf_unref(l->entries[i].buf);
  free(l->entries);
  l->entries = NULL;
  l->n = 0;
}

/* ---- log classes ---------------------------------------------------------------------------- */

#define MAX_CLASSES 16
static const struct rs_log_ops *classes[MAX_CLASSES] = {&log_file_ops, &log_memory_ops};
static size_t n_classes = 2;
static const char *class_names[MAX_CLASSES + 1];

/* Case-sensitive, as JGroups class names are. */
const struct rs_log_ops *log_class_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < n_classes; i++) {
    if (strcmp(classes[i]->name, name) == 0) return classes[i];
    for (const char *const *a = classes[i]->aliases; a && *a; a++)
      if (strcmp(*a, name) == 0) return classes[i];
  }
  return NULL;
}

void log_class_register(const struct rs_log_ops *ops) {
  for (size_t i = 0; i < n_classes; i++)
    if (classes[i] == ops || strcmp(classes[i]->name, ops->name) == 0) {
      classes[i] = ops;
      return;
    }
  if (n_classes < MAX_CLASSES) classes[n_classes++] = ops;
}

const char *const *log_class_names(void) {
  for (size_t i = 0; i < n_classes; i++)
    class_names[i] = classes[i]->name;
  class_names[n_classes] = NULL;
  return class_names;
}

/* The Raft log: entries kept in memory for reads, persisted by a store behind struct rs_log_ops. */
#ifndef RS_RAFT_LOG_H
#define RS_RAFT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/buf.h"
#include "stack/runtime.h"

/*
 * Two layers:
 *  - struct raft_log (raft/log/log.c): what RAFT and ELECTION call, on the loop thread only. It
 *    keeps every entry from first_index to last_index in memory (a payload is a slice of a
 *    refcounted buffer, never copied), so reads never touch the disk. Every mutation changes the
 *    memory image at once and is queued for the store. At most one batch is at the store at a
 *    time; mutations made meanwhile form the next batch (group commit). When a batch is durable
 *    the log advances durable_index / the durable term and vote, and calls the listener.
 *  - struct rs_log_ops (a "log class"): the persistence backend. "file" (raft/log/file_log.c:
 *    segments, CRC, atomic metadata, an I/O thread), "memory" (raft/log/mem_log.c: nothing
 *    survives the process) and, in tests, "sim" (a simulated disk that loses unsynced writes on a
 *    crash). A store receives whole batches; it never serves reads after open.
 */

typedef uint64_t rs_index;
typedef uint64_t rs_term;

/* Entry types: wire and disk constants, never renumber. */
enum raft_entry_type {
  RAFT_ENTRY_COMMAND = 1, /* an application command, given to the state machine */
  RAFT_ENTRY_NOOP = 2,    /* appended by a new leader so that earlier entries commit (§5.4.2) */
  RAFT_ENTRY_CONFIG = 3,  /* a membership change (reserved; not written yet) */
};

struct raft_entry {
  rs_term term;
  rs_index index;
  uint8_t type;
  struct rs_buf *buf; /* one reference, or NULL when len == 0 */
  const uint8_t *data;
  uint32_t len;
};

#define RAFT_ID_MAX 255 /* longest raft_id in bytes */

/* One mutation, as the store receives it (in order). */
enum log_op_type {
  LOG_OP_APPEND,          /* entries[0..n), consecutive, the first at last_index + 1 */
  LOG_OP_TRUNCATE_SUFFIX, /* removes index >= from */
  LOG_OP_TRUNCATE_PREFIX, /* removes index <= upto; upto_term is kept as the term of `upto` */
  LOG_OP_META,            /* current term and voted-for ("" = none) */
  LOG_OP_COMMIT,          /* commit index (persisted lazily; never needs an fsync of its own) */
};
struct log_op {
  enum log_op_type type;
  union {
    struct {
      const struct raft_entry *entries;
      size_t n;
    } append;
    rs_index from;
    struct {
      rs_index upto;
      rs_term upto_term;
    } prefix;
    struct {
      rs_term term;
      const char *voted_for;
    } meta;
    rs_index commit;
  } u;
};

/* What a store found on open. Entries are handed over with their buffer references. */
struct log_loaded {
  rs_term term;
  char voted_for[RAFT_ID_MAX + 1];
  rs_index commit;
  rs_index first_index; /* first entry kept (prefix_index + 1) */
  rs_term prefix_term;  /* term of first_index - 1 (0 when nothing was truncated) */
  struct raft_entry *entries; /* malloc'd array of n, indices first_index.. consecutive */
  size_t n;
};

struct log_config {
  const char *dir;    /* log_dir */
  const char *name;   /* log_prefix, else raft_id: the store's directory is <dir>/<name>.log */
  const char *args;   /* log_args (class-specific, may be NULL) */
  bool use_fsync;     /* log_use_fsync */
  size_t segment_size; /* file: roll to a new segment past this many bytes */
};

struct rs_log_store;
/* Called on the loop thread when a submitted batch is durable (status 0) or failed. */
typedef void (*log_done_fn)(void *arg, int status);

struct rs_log_ops {
  const char *name;           /* "file", "memory", "sim" */
  const char *const *aliases; /* jgroups-raft names: "FileBasedLog", "InMemoryLog", and the
                                 fully qualified org.jgroups.protocols.raft.* forms; NULL-end */
  /* Opens (creating if needed) and loads what survives. A bad record anywhere but the tail of the
   * last segment is RS_ECORRUPT with "file:offset: what" in err; a torn tail is cut and logged. */
  int (*open)(struct rs_log_store **out, const struct log_config *cfg, struct rs_runtime *rt,
              struct log_loaded *loaded, char *err, size_t errlen);
  /* Applies ops[0..n) in order, durably when sync (fsync) and calls done(arg, status) on the loop
   * thread. The ops and the entries they point to stay valid until done runs. At most one
   * submit is outstanding. A failed fsync is final: the store refuses everything afterwards. */
  void (*submit)(struct rs_log_store *s, const struct log_op *ops, size_t n, bool sync,
                 log_done_fn done, void *arg);
  /* Waits for an outstanding submit (its done still runs, on the loop) and frees the store. */
  void (*close)(struct rs_log_store *s);
};

/* Log classes: the built-in ones plus any a test registers. By name or alias, NULL if unknown. */
const struct rs_log_ops *log_class_find(const char *name);
/* Registers another class (tests: "sim"). Not thread-safe; before stacks start. */
void log_class_register(const struct rs_log_ops *ops);
/* Every known class name (for "did you mean" and docs), NULL-terminated static array. */
const char *const *log_class_names(void);
extern const struct rs_log_ops log_file_ops, log_memory_ops;

/* ---------------------------------------------------------------------------------------------
 * The log as RAFT sees it. Loop thread only.
 */
struct raft_log;

/* Opens the store of class `ops` and loads it. 0, or an error with the detail in err. */
int raft_log_open(struct raft_log **out, const struct rs_log_ops *ops,
                  const struct log_config *cfg, struct rs_runtime *rt, char *err, size_t errlen);
/* Waits for the outstanding batch (no new one starts, except a pending commit index when nothing
 * is outstanding), closes the store and frees the log. Other mutations not yet submitted are
 * lost, as in a crash. */
void raft_log_close(struct raft_log *log);

/* Called after every batch completes (durable_index or meta may have advanced) or fails. */
void raft_log_set_listener(struct raft_log *log, void (*persisted)(void *arg, int status),
                           void *arg);

rs_index raft_log_first_index(const struct raft_log *log); /* last_index + 1 when empty */
rs_index raft_log_last_index(const struct raft_log *log);  /* 0 when nothing was ever written */
rs_term raft_log_last_term(const struct raft_log *log);
/* Term of entry idx: the prefix term for first_index - 1, 0 for index 0, and 0 for an index
 * outside [first_index - 1, last_index] (the caller checks bounds first). */
rs_term raft_log_term_at(const struct raft_log *log, rs_index idx);
/* The entry at idx, or NULL outside [first_index, last_index]. Valid until the next mutation
 * that removes it; take a buffer reference to keep the payload longer. */
const struct raft_entry *raft_log_get(const struct raft_log *log, rs_index idx);
/* Total bytes of the entries kept (payload + per-entry overhead): `log_size`. */
uint64_t raft_log_size_bytes(const struct raft_log *log);

/* Appends one entry at last_index + 1 with the given term; takes a new reference to buf.
 * Returns its index in *index. 0, RS_ENOMEM, or the store's sticky error. */
int raft_log_append(struct raft_log *log, rs_term term, uint8_t type, struct rs_buf *buf,
                    const uint8_t *data, uint32_t len, rs_index *index);
/* Appends entries received from a leader; e[0].index must be last_index + 1 (the caller has
 * truncated a conflicting suffix first). Takes new references to the buffers. */
int raft_log_append_entries(struct raft_log *log, const struct raft_entry *e, size_t n);
/* Removes entries >= from (a follower's conflicting suffix; never a committed index). */
int raft_log_truncate_suffix(struct raft_log *log, rs_index from);
/* Removes entries <= upto (after a snapshot); upto_term becomes the prefix term. */
int raft_log_truncate_prefix(struct raft_log *log, rs_index upto, rs_term upto_term);

rs_term raft_log_current_term(const struct raft_log *log);
const char *raft_log_voted_for(const struct raft_log *log); /* "" when none */
/* Sets term and vote in memory and queues them; a vote may be answered only once
 * raft_log_meta_durable() (Raft §5.2: persist before responding). */
int raft_log_set_term_vote(struct raft_log *log, rs_term term, const char *voted_for);
rs_index raft_log_commit_index(const struct raft_log *log);
int raft_log_set_commit(struct raft_log *log, rs_index commit);

/* Durability: entries <= durable_index are on disk (with log_use_fsync; else handed to the OS);
 * meta_durable: the term and vote in memory are the persisted ones. */
rs_index raft_log_durable_index(const struct raft_log *log);
bool raft_log_meta_durable(const struct raft_log *log);
/* 0, or the sticky error that stopped the store (a failed fsync): the node must stop. */
int raft_log_error(const struct raft_log *log);
/* Counters for stats: batches submitted, entries written, largest batch. */
struct raft_log_stats {
  uint64_t batches, ops, entries_written, max_batch_entries, bytes_written;
};
void raft_log_get_stats(const struct raft_log *log, struct raft_log_stats *out);

/* Frees a log_loaded's entries (drops their references). */
void log_loaded_free(struct log_loaded *l);

#endif

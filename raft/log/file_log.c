/* The "file" log class: segmented append-only records, atomic metadata, an I/O thread. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <raftstack/errors.h>

#include "raft/log/log.h"
#include "raft/log/log_internal.h"
#include "stack/log_internal.h"

/*
 * Layout (docs/raft-log.md): <log_dir>/<name>.log/ holds segment files named by the index of
 * their first record ("00000000000000000001.seg"), each a run of records (log_internal.h), and
 * "meta" (term, vote, commit, prefix index and term) replaced atomically.
 *
 * Threads: the loop thread calls submit and close; the store's I/O thread does every write and
 * fsync; a finished batch returns to the loop with rs_runtime_call. The call carries the store's
 * id rather than its pointer, so a call that arrives after close (the runtime queues calls, it
 * cannot take them back) finds no store and does nothing.
 *
 * Group commit: a batch is written with one pwritev per run of entries and made durable with one
 * fdatasync of the active segment (plus one of the directory when a file was created or removed).
 * A suffix truncation costs its own syncs, before anything after it in the batch is written
 * (truncate_suffix).
 * The commit index alone is never a reason to write: "meta" is rewritten when the term, vote or
 * prefix change, and for the commit index at most once a second (COMMIT_META_INTERVAL), since a
 * lost commit index is learned again from the leader.
 *
 * Errors: a failed write or fsync is final. The store records RS_EIO and fails every batch after
 * it, and the node must stop. There is no retry of a failed fsync: after one, the kernel may have
 * dropped the dirty pages and marked them clean, so a second fsync can succeed while the data is
 * not on disk (the PostgreSQL "fsyncgate" lesson); nothing the store could do afterwards would
 * make its durability claims true again.
 */

#define SEGMENT_SIZE_DEFAULT ((size_t)64 << 20)
#define SEGMENT_SIZE_MIN ((size_t)4096)
#define SEGMENT_SIZE_MAX ((size_t)1 << 30)
#define COMMIT_META_INTERVAL_NS 1000000000ull
#define IOV_BATCH 512 /* entries per pwritev (two iovecs each) */

struct file_store {
  struct rs_runtime *rt;
  uint64_t id;
  char path[PATH_MAX]; /* the <name>.log directory */
  int dirfd;
  bool use_fsync;
  size_t segment_size;

  /* Disk state: the I/O thread's after open. */
  struct log_segment *segs;
  size_t n_segs, cap_segs;
  int fd; /* the last segment's, -1 when there is none */
  struct log_meta meta;
  bool meta_dirty, commit_dirty, data_dirty, dir_dirty;
  uint64_t meta_written_ns;
  int error; /* sticky */
  struct iovec iov[2 * IOV_BATCH];
  uint8_t hdr[IOV_BATCH][LOG_RECORD_HEADER];

  /* Hand-over, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  const struct log_op *ops;
  size_t n_ops;
  bool sync, has_job, finished, stop;
  int status;
  log_done_fn done;
  void *arg;
};

int (*_Atomic log_file_fault)(const char *what, const char *path);

/* ---- stores by id, for completions that may outlive their store ----------------------------- */

static pthread_mutex_t stores_mu = PTHREAD_MUTEX_INITIALIZER;
static struct file_store **stores;
static size_t n_stores, cap_stores;
static uint64_t next_id = 1;

static int stores_add(struct file_store *s) {
  pthread_mutex_lock(&stores_mu);
  int rc = 0;
  if (n_stores == cap_stores) {
    size_t cap = cap_stores ? cap_stores * 2 : 8;
    struct file_store **a = realloc(stores, cap * sizeof(*a));
    if (a) {
      stores = a;
      cap_stores = cap;
    } else {
      rc = RS_ENOMEM;
    }
  }
  if (rc == 0) {
    s->id = next_id++;
    stores[n_stores++] = s;
  }
  pthread_mutex_unlock(&stores_mu);
  return rc;
}

static void stores_remove(struct file_store *s) {
  pthread_mutex_lock(&stores_mu);
  for (size_t i = 0; i < n_stores; i++)
    if (stores[i] == s) {
      stores[i] = stores[--n_stores];
      break;
    }
  if (n_stores == 0) {
    free(stores);
    stores = NULL;
    cap_stores = 0;
  }
  pthread_mutex_unlock(&stores_mu);
}

static struct file_store *stores_find(uint64_t id) {
  struct file_store *s = NULL;
  pthread_mutex_lock(&stores_mu);
  for (size_t i = 0; i < n_stores && !s; i++)
    if (stores[i]->id == id) s = stores[i];
  pthread_mutex_unlock(&stores_mu);
  return s;
}

/* ---- system calls, with fault injection and a final error ------------------------------------ */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int io_error(struct file_store *s, const char *op, const char *file, int err) {
  RS_LOG(ERROR, "RAFT",
         "log %s/%s: %s failed: %s; the log stops (a failed write or fsync is "
         "never retried)",
         s->path, file, op, strerror(err));
  s->error = RS_EIO;
  return RS_EIO;
}

static int injected(const char *what, const char *path) {
  int (*fault)(const char *, const char *) = log_file_fault; /* set by tests from another thread */
  return fault ? fault(what, path) : 0;
}

static int sync_fd(struct file_store *s, int fd, const char *file, bool dir) {
  int e = injected(dir ? "dirsync" : "fsync", file);
  if (e == 0 && (dir ? fsync(fd) : fdatasync(fd)) != 0) e = errno;
  return e ? io_error(s, dir ? "directory fsync" : "fdatasync", file, e) : 0;
}

static const char *seg_file(const struct log_segment *seg, char *buf, size_t len) {
  log_segment_name(buf, len, seg->first);
  return buf;
}

/* Writes iov[0..cnt) at off in full. */
static int write_all(struct file_store *s, int fd, struct iovec *iov, int cnt, uint64_t off,
                     const char *file) {
  int e = injected("write", file);
  if (e) return io_error(s, "write", file, e);
  while (cnt > 0) {
    ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return io_error(s, "write", file, errno);
    off += (uint64_t)w;
    size_t left = (size_t)w;
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0 && left > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

/* ---- segments ------------------------------------------------------------------------------- */

static struct log_segment *last_seg(struct file_store *s) {
  return s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
}

static int reopen_last(struct file_store *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  struct log_segment *seg = last_seg(s);
  if (!seg) return 0;
  char name[64];
  s->fd = openat(s->dirfd, seg_file(seg, name, sizeof(name)), O_RDWR | O_CLOEXEC);
  return s->fd < 0 ? io_error(s, "open", name, errno) : 0;
}

/* A new segment whose first record will be `first`; the previous one is made durable first. */
static int roll(struct file_store *s, rs_index first, bool sync) {
  char name[64];
  struct log_segment *prev = last_seg(s);
  if (prev && sync && s->data_dirty) {
    int rc = sync_fd(s, s->fd, seg_file(prev, name, sizeof(name)), false);
    if (rc) return rc;
  }
  if (s->n_segs == s->cap_segs) {
    size_t cap = s->cap_segs ? s->cap_segs * 2 : 16;
    struct log_segment *a = realloc(s->segs, cap * sizeof(*a));
    if (!a) return io_error(s, "allocation", "segments", ENOMEM);
    s->segs = a;
    s->cap_segs = cap;
  }
  log_segment_name(name, sizeof(name), first);
  int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(s, "create", name, errno);
  if (s->fd >= 0) close(s->fd);
  s->fd = fd;
  memset(&s->segs[s->n_segs], 0, sizeof(s->segs[0]));
  s->segs[s->n_segs++].first = first;
  s->dir_dirty = true;
  s->data_dirty = false;
  return 0;
}

static int remove_last(struct file_store *s) {
  char name[64];
  struct log_segment *seg = last_seg(s);
  if (unlinkat(s->dirfd, seg_file(seg, name, sizeof(name)), 0) != 0)
    return io_error(s, "unlink", name, errno);
  free(seg->offs);
  s->n_segs--;
  s->dir_dirty = true;
  return 0;
}

/* ---- the ops -------------------------------------------------------------------------------- */

static int append(struct file_store *s, const struct raft_entry *e, size_t n, bool sync) {
  char name[64];
  size_t i = 0;
  while (i < n) {
    struct log_segment *seg = last_seg(s);
    /* A new segment also when the log restarts after a snapshot past its end (upto + 1). */
    if (!seg || seg->size >= s->segment_size || seg->first + seg->n != e[i].index) {
      int rc = roll(s, e[i].index, sync);
      if (rc) return rc;
      seg = last_seg(s);
    }
    /* One pwritev: as many entries as fit in this segment and in the iovec array. */
    uint64_t start = seg->size;
    int cnt = 0;
    for (size_t k = 0; i < n && k < IOV_BATCH && seg->size < s->segment_size; i++, k++) {
      log_record_encode(s->hdr[k], e[i].term, e[i].index, e[i].type, e[i].data, e[i].len);
      s->iov[cnt++] = (struct iovec){.iov_base = s->hdr[k], .iov_len = LOG_RECORD_HEADER};
      if (e[i].len)
        s->iov[cnt++] = (struct iovec){.iov_base = (void *)e[i].data, .iov_len = e[i].len};
      if (log_segment_push(seg, seg->size) != 0)
        return io_error(s, "allocation", "offsets", ENOMEM);
      seg->size += LOG_RECORD_HEADER + e[i].len;
    }
    int rc = write_all(s, s->fd, s->iov, cnt, start, seg_file(seg, name, sizeof(name)));
    if (rc) return rc;
    s->data_dirty = true;
  }
  return 0;
}

/* Raft §5.3: a follower deletes a conflicting entry and all that follow it. With sync, each step
 * is durable before the next and before the new suffix (written later in the same batch) is: a
 * crash must leave the old suffix or the new, never a removed later segment beside a rewritten
 * earlier one (a gap) or old records after new ones (a decreasing term), which load rejects. */
static int truncate_suffix(struct file_store *s, rs_index from, bool sync) {
  bool removed = false;
  while (s->n_segs && last_seg(s)->first >= from) {
    int rc = remove_last(s);
    if (rc) return rc;
    removed = true;
  }
  if (removed) {
    int rc = reopen_last(s); /* s->fd was the removed segment's */
    if (rc == 0 && sync) rc = sync_fd(s, s->dirfd, ".", true);
    if (rc) return rc;
    if (sync) s->dir_dirty = false;
  }
  struct log_segment *seg = last_seg(s);
  if (seg && from - seg->first < seg->n) {
    char name[64];
    seg_file(seg, name, sizeof(name));
    uint64_t off = seg->offs[from - seg->first];
    if (ftruncate(s->fd, (off_t)off) != 0) return io_error(s, "ftruncate", name, errno);
    seg->n = from - seg->first;
    seg->size = off;
    s->data_dirty = true;
    if (sync) {
      int rc = sync_fd(s, s->fd, name, false);
      if (rc) return rc;
      s->data_dirty = false;
    }
  }
  return 0;
}

static int write_meta(struct file_store *s) {
  uint8_t buf[LOG_META_MAX];
  size_t len = log_meta_encode(buf, &s->meta);
  int fd = openat(s->dirfd, LOG_META_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(s, "create", LOG_META_TMP, errno);
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  int rc = write_all(s, fd, &iov, 1, 0, LOG_META_TMP);
  if (rc == 0 && s->use_fsync) rc = sync_fd(s, fd, LOG_META_TMP, false);
  close(fd);
  if (rc) return rc;
  if (renameat(s->dirfd, LOG_META_TMP, s->dirfd, LOG_META_FILE) != 0)
    return io_error(s, "rename", LOG_META_FILE, errno);
  /* The rename is durable only once the directory is. */
  if (s->use_fsync && (rc = sync_fd(s, s->dirfd, ".", true)) != 0) return rc;
  s->meta_dirty = s->commit_dirty = false;
  s->meta_written_ns = mono_ns();
  return 0;
}

/* After a snapshot: the prefix is recorded first, so a crash between the two steps leaves
 * entries on disk that the next load skips, never a log that starts after a gap. */
/* Deletes the segments whose records are all <= upto. */
static int drop_segments_upto(struct file_store *s, rs_index upto) {
  while (s->n_segs && s->segs[0].first + s->segs[0].n - 1 <= upto) {
    char name[64];
    struct log_segment *seg = &s->segs[0];
    if (unlinkat(s->dirfd, seg_file(seg, name, sizeof(name)), 0) != 0)
      return io_error(s, "unlink", name, errno);
    free(seg->offs);
    memmove(s->segs, s->segs + 1, --s->n_segs * sizeof(*s->segs));
    s->dir_dirty = true;
    if (s->n_segs == 0) return reopen_last(s);
  }
  return 0;
}

static int truncate_prefix(struct file_store *s, rs_index upto, rs_term upto_term) {
  s->meta.prefix_index = upto;
  s->meta.prefix_term = upto_term;
  int rc = write_meta(s);
  return rc ? rc : drop_segments_upto(s, upto);
}

static int run_op(struct file_store *s, const struct log_op *op, bool sync) {
  switch (op->type) {
  case LOG_OP_APPEND: return append(s, op->u.append.entries, op->u.append.n, sync);
  case LOG_OP_TRUNCATE_SUFFIX: return truncate_suffix(s, op->u.from, sync);
  case LOG_OP_TRUNCATE_PREFIX: return truncate_prefix(s, op->u.prefix.upto, op->u.prefix.upto_term);
  case LOG_OP_META:
    s->meta.term = op->u.meta.term;
    snprintf(s->meta.voted_for, sizeof(s->meta.voted_for), "%s", op->u.meta.voted_for);
    s->meta_dirty = true;
    return 0;
  case LOG_OP_COMMIT:
    s->meta.commit = op->u.commit;
    s->commit_dirty = true;
    return 0;
  }
  return 0;
}

static int run_batch(struct file_store *s, const struct log_op *ops, size_t n, bool sync) {
  if (s->error) return s->error;
  for (size_t i = 0; i < n; i++) {
    int rc = run_op(s, &ops[i], sync);
    if (rc) return rc;
  }
  char name[64];
  if (sync && s->data_dirty && s->fd >= 0) {
    int rc = sync_fd(s, s->fd, seg_file(last_seg(s), name, sizeof(name)), false);
    if (rc) return rc;
  }
  if (sync && s->dir_dirty) {
    int rc = sync_fd(s, s->dirfd, ".", true);
    if (rc) return rc;
  }
  if (sync) s->data_dirty = s->dir_dirty = false;
  /* Raft §5.2/Figure 2: currentTerm and votedFor are persisted before the batch is done. */
  if (s->meta_dirty ||
      (s->commit_dirty && mono_ns() - s->meta_written_ns >= COMMIT_META_INTERVAL_NS))
    return write_meta(s);
  return 0;
}

/* ---- the I/O thread and the hand-over -------------------------------------------------------- */

static void deliver(struct file_store *s) {
  pthread_mutex_lock(&s->mu);
  log_done_fn done = s->finished ? s->done : NULL;
  void *arg = s->arg;
  int status = s->status;
  if (s->finished) {
    s->finished = false;
    s->done = NULL;
  }
  pthread_mutex_unlock(&s->mu);
  if (done) done(arg, status);
}

static void file_complete(void *arg) {
  struct file_store *s = stores_find((uint64_t)(uintptr_t)arg);
  if (s) deliver(s);
}

static void *io_thread(void *arg) {
  struct file_store *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->has_job && !s->stop)
      pthread_cond_wait(&s->cv, &s->mu);
    if (!s->has_job) break;
    const struct log_op *ops = s->ops;
    size_t n = s->n_ops;
    bool sync = s->sync;
    pthread_mutex_unlock(&s->mu);
    int status = run_batch(s, ops, n, sync);
    pthread_mutex_lock(&s->mu);
    s->has_job = false;
    s->finished = true;
    s->status = status;
    pthread_mutex_unlock(&s->mu);
    rs_runtime_call(s->rt, file_complete, (void *)(uintptr_t)s->id);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static void file_submit(struct rs_log_store *store, const struct log_op *ops, size_t n, bool sync,
                        log_done_fn done, void *arg) {
  struct file_store *s = (struct file_store *)store;
  pthread_mutex_lock(&s->mu);
  s->ops = ops;
  s->n_ops = n;
  s->sync = sync;
  s->done = done;
  s->arg = arg;
  s->has_job = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* ---- open / close --------------------------------------------------------------------------- */

static int make_dirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(path, 0755);
    *p = '/';
    if (rc != 0 && errno != EEXIST) return -1;
  }
  return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int store_init(struct file_store *s, const struct log_config *cfg, struct rs_runtime *rt,
                      char *err, size_t errlen) {
  const char *dir = cfg->dir && *cfg->dir ? cfg->dir : ".";
  s->fd = s->dirfd = -1; /* before any error return: store_free closes them */
  if (rt->simulated) {
    /* Its I/O thread completes batches with rs_runtime_call, which the simulation's runtime
     * takes from its own thread only. */
    snprintf(err, errlen,
             "file log: not available in the simulation (use log_class=memory, or "
             "a simulated disk)");
    return RS_ECONFIG;
  }
  if (!cfg->name || !*cfg->name || strchr(cfg->name, '/')) {
    snprintf(err, errlen, "file log: the log name '%s' is empty or contains '/'",
             cfg->name ? cfg->name : "");
    return RS_ECONFIG;
  }
  if ((size_t)snprintf(s->path, sizeof(s->path), "%s/%s.log", dir, cfg->name) >= sizeof(s->path)) {
    snprintf(err, errlen, "file log: path too long");
    return RS_ECONFIG;
  }
  s->rt = rt;
  s->use_fsync = cfg->use_fsync;
  s->segment_size = cfg->segment_size ? cfg->segment_size : SEGMENT_SIZE_DEFAULT;
  if (s->segment_size < SEGMENT_SIZE_MIN) s->segment_size = SEGMENT_SIZE_MIN;
  if (s->segment_size > SEGMENT_SIZE_MAX) s->segment_size = SEGMENT_SIZE_MAX;
  if (make_dirs(s->path) != 0 ||
      (s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
    snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
    return RS_EIO;
  }
  /* The log directory's own entry must be durable before anything in it counts. */
  int pfd = s->use_fsync ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (s->use_fsync && (pfd < 0 || fsync(pfd) != 0)) {
    snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
    if (pfd >= 0) close(pfd);
    return RS_EIO;
  }
  if (pfd >= 0) close(pfd);
  return 0;
}

static void store_free(struct file_store *s) {
  for (size_t i = 0; i < s->n_segs; i++)
    free(s->segs[i].offs);
  free(s->segs);
  if (s->fd >= 0) close(s->fd);
  if (s->dirfd >= 0) close(s->dirfd);
  free(s);
}

static int file_open(struct rs_log_store **out, const struct log_config *cfg, struct rs_runtime *rt,
                     struct log_loaded *loaded, char *err, size_t errlen) {
  *out = NULL;
  struct file_store *s = calloc(1, sizeof(*s));
  if (!s) return RS_ENOMEM;
  int rc = store_init(s, cfg, rt, err, errlen);
  struct log_dir_state st;
  if (rc == 0) rc = log_dir_load(s->dirfd, s->path, true, &st, loaded, err, errlen);
  if (rc != 0) goto err_after_alloc;
  s->meta = st.meta;
  s->segs = st.segs;
  s->n_segs = s->cap_segs = st.n_segs;
  s->meta_written_ns = mono_ns();
  /* Finishes a prefix truncation that a crash interrupted after its metadata write. */
  if ((rc = reopen_last(s)) != 0 || (rc = drop_segments_upto(s, s->meta.prefix_index)) != 0 ||
      (rc = stores_add(s)) != 0)
    goto err_after_load;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->thread, NULL, io_thread, s) != 0) {
    rc = RS_ENOMEM;
    goto err_after_threads;
  }
  *out = (struct rs_log_store *)s;
  return 0;
err_after_threads:
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  stores_remove(s);
err_after_load:
  snprintf(err, errlen, "%s: cannot start the log: %s", s->path, rs_strerror(rc));
  log_loaded_free(loaded);
err_after_alloc:
  store_free(s);
  return rc;
}

/* Finishes the outstanding batch (its done runs here, on the loop), writes a commit index that
 * is still only in memory, and frees the store. */
static void file_close(struct rs_log_store *store) {
  struct file_store *s = (struct file_store *)store;
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stop = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  stores_remove(s);
  deliver(s);
  if (!s->error && (s->commit_dirty || s->meta_dirty)) write_meta(s);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  store_free(s);
}

/* jgroups-raft's LevelDBLog and RocksDBLog were key-value stores; their role (a persistent,
 * fsync-able log) is the file log's, so configurations that name them get the file log. */
static const char *const file_aliases[] = {"FileBasedLog",
                                           "org.jgroups.protocols.raft.FileBasedLog",
                                           "LevelDBLog",
                                           "org.jgroups.protocols.raft.LevelDBLog",
                                           "RocksDBLog",
                                           "org.jgroups.protocols.raft.RocksDBLog",
                                           NULL};

const struct rs_log_ops log_file_ops = {
    .name = "file",
    .aliases = file_aliases,
    .open = file_open,
    .submit = file_submit,
    .close = file_close,
};

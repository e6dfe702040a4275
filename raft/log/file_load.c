/* Recovery of a file log directory: metadata, segments in order, every CRC, a torn tail cut. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raftstack/errors.h>

#include "raft/log/log_internal.h"
#include "stack/log_internal.h"

/*
 * Recovery rule (docs/raft-log.md): the only damage a crash can do to an append-only log is a
 * torn tail, i.e. the end of the last segment. So a bad record at the tail of the last segment
 * is cut, and a bad record anywhere else, a gap in the indices or a term that decreases is
 * RS_ECORRUPT naming the file and offset: never a silent skip, which could drop acknowledged
 * entries. Everything is checked before anything is modified, so a corrupt log stays as found
 * for a person to inspect (`raftstack log verify`).
 */

/* A segment file is never larger than segment_size plus one record; refuse absurd sizes. */
#define SEGMENT_FILE_MAX ((uint64_t)4 << 30)

void log_segment_name(char *buf, size_t len, rs_index first) {
  snprintf(buf, len, "%020" PRIu64 "%s", first, LOG_SEGMENT_SUFFIX);
}

int log_segment_push(struct log_segment *seg, uint64_t off) {
  if (seg->n == seg->cap) {
    size_t cap = seg->cap ? seg->cap * 2 : 256;
    uint64_t *o = realloc(seg->offs, cap * sizeof(*o));
    if (!o) return RS_ENOMEM;
    seg->offs = o;
    seg->cap = cap;
  }
  seg->offs[seg->n++] = off;
  return 0;
}

void log_dir_state_free(struct log_dir_state *st) {
  for (size_t i = 0; i < st->n_segs; i++)
    free(st->segs[i].offs);
  free(st->segs);
  st->segs = NULL;
  st->n_segs = 0;
}

static int fail(char *err, size_t errlen, const char *path, const char *file, uint64_t off,
                const char *what) {
  snprintf(err, errlen, "%s/%s:%" PRIu64 ": %s", path, file, off, what);
  return RS_ECORRUPT;
}

static int io_fail(char *err, size_t errlen, const char *path, const char *file, const char *op) {
  snprintf(err, errlen, "%s/%s: %s: %s", path, file, op, strerror(errno));
  return RS_EIO;
}

/* Reads a whole file at dirfd/name into a new buffer (NULL for an empty file). */
static int read_file(int dirfd, const char *name, struct rs_buf **out, size_t *len, uint64_t max) {
  *out = NULL;
  *len = 0;
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? RS_ENOTFOUND : RS_EIO;
  struct stat sb;
  int rc = 0;
  if (fstat(fd, &sb) != 0)
    rc = RS_EIO;
  else if ((uint64_t)sb.st_size > max)
    rc = RS_ETOOBIG;
  else if (sb.st_size > 0 && !(*out = rs_buf_new((size_t)sb.st_size)))
    rc = RS_ENOMEM;
  size_t got = 0;
  while (rc == 0 && got < (size_t)sb.st_size) {
    ssize_t r = pread(fd, (*out)->data + got, (size_t)sb.st_size - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      rc = RS_EIO;
    else
      got += (size_t)r;
  }
  close(fd);
  if (rc != 0) {
    rs_buf_unref(*out);
    *out = NULL;
    return rc;
  }
  *len = got;
  return 0;
}

static int load_meta(int dirfd, const char *path, struct log_dir_state *st, char *err,
                     size_t errlen) {
  struct rs_buf *b;
  size_t len;
  int rc = read_file(dirfd, LOG_META_FILE, &b, &len, 4096);
  if (rc == RS_ENOTFOUND) return 0; /* nothing persisted yet: term 0, no vote */
  if (rc == RS_ETOOBIG) return fail(err, errlen, path, LOG_META_FILE, 0, "metadata file too big");
  if (rc != 0) return io_fail(err, errlen, path, LOG_META_FILE, "read");
  char what[96];
  rc = log_meta_decode(b ? b->data : (const uint8_t *)"", len, &st->meta, what, sizeof(what));
  rs_buf_unref(b);
  if (rc != 0) return fail(err, errlen, path, LOG_META_FILE, 0, what);
  st->has_meta = true;
  return 0;
}

static int cmp_index(const void *a, const void *b) {
  rs_index x = *(const rs_index *)a, y = *(const rs_index *)b;
  return x < y ? -1 : x > y;
}

/* The first indices of the segment files, sorted. Other files are ignored. */
static int list_segments(int dirfd, rs_index **out, size_t *n) {
  *out = NULL;
  *n = 0;
  int fd = dup(dirfd);
  if (fd < 0) return RS_EIO;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return RS_EIO;
  }
  rewinddir(d);
  size_t cap = 0;
  int rc = 0;
  for (struct dirent *de; rc == 0 && (de = readdir(d));) {
    const char *nm = de->d_name;
    if (strlen(nm) != 20 + strlen(LOG_SEGMENT_SUFFIX) || strcmp(nm + 20, LOG_SEGMENT_SUFFIX))
      continue;
    if (strspn(nm, "0123456789") != 20) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      rs_index *o = realloc(*out, cap * sizeof(*o));
      if (!o) {
        rc = RS_ENOMEM;
        break;
      }
      *out = o;
    }
    (*out)[(*n)++] = strtoull(nm, NULL, 10);
  }
  closedir(d);
  if (rc == 0 && *n) qsort(*out, *n, sizeof(**out), cmp_index);
  return rc;
}

/* Collects each scanned record into the segment's offsets and, past the prefix, the entries. */
struct collect {
  struct log_segment *seg;
  struct log_loaded *loaded;
  size_t cap;
  struct rs_buf *buf;
  rs_index prefix;
  rs_index last;
  rs_term last_term;
};

static int collect_record(void *arg, const struct log_record *r) {
  struct collect *c = arg;
  if (log_segment_push(c->seg, r->offset) != 0) return RS_ENOMEM;
  c->last = r->index;
  c->last_term = r->term;
  if (r->index <= c->prefix || !c->loaded) return 0;
  struct log_loaded *l = c->loaded;
  if (l->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    struct raft_entry *e = realloc(l->entries, cap * sizeof(*e));
    if (!e) return RS_ENOMEM;
    l->entries = e;
    c->cap = cap;
  }
  l->entries[l->n++] = (struct raft_entry){.term = r->term,
                                           .index = r->index,
                                           .type = r->type,
                                           .buf = r->len ? rs_buf_ref(c->buf) : NULL,
                                           .data = r->len ? r->data : NULL,
                                           .len = r->len};
  return 0;
}

/* Scans segment i (named first) and appends it to st. */
static int load_segment(int dirfd, const char *path, struct log_dir_state *st, rs_index first,
                        bool last, struct collect *c, char *err, size_t errlen) {
  char name[64];
  log_segment_name(name, sizeof(name), first);
  struct rs_buf *b;
  size_t len;
  int rc = read_file(dirfd, name, &b, &len, SEGMENT_FILE_MAX);
  if (rc == RS_ETOOBIG) return fail(err, errlen, path, name, 0, "segment file too big");
  if (rc != 0) return io_fail(err, errlen, path, name, "read");
  /* Consecutive, except after segments wholly inside the prefix: a snapshot past the end of the
   * log restarts it at prefix + 1, and the older segments may outlive a crash. */
  bool skipped = c->last <= c->prefix && first > c->last && first <= c->prefix + 1;
  if (st->n_segs && first != c->last + 1 && !skipped) {
    rs_buf_unref(b);
    char what[96];
    snprintf(what, sizeof(what),
             "segment starts at index %" PRIu64 " but the previous ended at %" PRIu64, first,
             c->last);
    return fail(err, errlen, path, name, 0, what);
  }
  struct log_segment *seg = &st->segs[st->n_segs++];
  memset(seg, 0, sizeof(*seg));
  seg->first = first;
  c->seg = seg;
  c->buf = b;
  struct log_scan scan;
  rc = log_segment_scan(b ? b->data : NULL, len, first, c->last_term, last, collect_record, c,
                        &scan);
  rs_buf_unref(b);
  if (rc == RS_ENOMEM) return rc;
  if (rc != 0) return fail(err, errlen, path, name, scan.err_offset, scan.what);
  seg->size = scan.valid_len;
  if (!last && seg->n == 0)
    return fail(err, errlen, path, name, 0, "empty segment before the last");
  if (scan.torn) {
    st->torn = true;
    snprintf(st->torn_file, sizeof(st->torn_file), "%s", name);
    st->torn_offset = scan.valid_len;
    st->torn_bytes = len - scan.valid_len;
  }
  return 0;
}

static int load_segments(int dirfd, const char *path, struct log_dir_state *st,
                         struct log_loaded *loaded, char *err, size_t errlen) {
  rs_index *firsts;
  size_t n;
  int rc = list_segments(dirfd, &firsts, &n);
  if (rc != 0) return rc == RS_ENOMEM ? rc : io_fail(err, errlen, path, ".", "readdir");
  st->segs = calloc(n ? n : 1, sizeof(*st->segs));
  if (!st->segs) {
    free(firsts);
    return RS_ENOMEM;
  }
  struct collect c = {.loaded = loaded, .prefix = st->meta.prefix_index};
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = load_segment(dirfd, path, st, firsts[i], i + 1 == n, &c, err, errlen);
  free(firsts);
  if (rc != 0) return rc;
  /* Raft §5.3 Log Matching relies on a gap-free log: the first kept entry follows the prefix. */
  if (st->n_segs && st->segs[0].first > st->meta.prefix_index + 1) {
    char name[64], what[96];
    log_segment_name(name, sizeof(name), st->segs[0].first);
    snprintf(what, sizeof(what),
             "log starts at index %" PRIu64 " but the snapshot ends at %" PRIu64, st->segs[0].first,
             st->meta.prefix_index);
    return fail(err, errlen, path, name, 0, what);
  }
  return 0;
}

/* The repairs, once everything checked out. */
static int repair_dir(int dirfd, const char *path, struct log_dir_state *st, char *err,
                      size_t errlen) {
  if (st->torn) {
    int fd = openat(dirfd, st->torn_file, O_RDWR | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)st->torn_offset) != 0 || fsync(fd) != 0) {
      if (fd >= 0) close(fd);
      return io_fail(err, errlen, path, st->torn_file, "cutting the torn tail");
    }
    close(fd);
    RS_LOG(WARN, "RAFT", "log %s/%s:%" PRIu64 ": torn tail of %" PRIu64 " bytes cut", path,
           st->torn_file, st->torn_offset, st->torn_bytes);
  }
  struct log_segment *lastseg = st->n_segs ? &st->segs[st->n_segs - 1] : NULL;
  if (lastseg && lastseg->n == 0) {
    char name[64];
    log_segment_name(name, sizeof(name), lastseg->first);
    if (unlinkat(dirfd, name, 0) != 0) return io_fail(err, errlen, path, name, "unlink");
    free(lastseg->offs);
    st->n_segs--;
    st->empty_removed = true;
  }
  if (unlinkat(dirfd, LOG_META_TMP, 0) == 0) st->tmp_found = true;
  if ((st->torn || st->empty_removed) && fsync(dirfd) != 0)
    return io_fail(err, errlen, path, ".", "fsync");
  return 0;
}

int log_dir_load(int dirfd, const char *path, bool repair, struct log_dir_state *st,
                 struct log_loaded *loaded, char *err, size_t errlen) {
  memset(st, 0, sizeof(*st));
  if (loaded) memset(loaded, 0, sizeof(*loaded));
  int rc = load_meta(dirfd, path, st, err, errlen);
  if (rc == 0) rc = load_segments(dirfd, path, st, loaded, err, errlen);
  if (rc == 0 && repair)
    rc = repair_dir(dirfd, path, st, err, errlen);
  else if (rc == 0 && faccessat(dirfd, LOG_META_TMP, F_OK, 0) == 0)
    st->tmp_found = true;
  if (rc != 0) {
    if (rc == RS_ENOMEM) snprintf(err, errlen, "%s: out of memory", path);
    if (loaded) log_loaded_free(loaded);
    log_dir_state_free(st);
    return rc;
  }
  if (loaded) {
    loaded->term = st->meta.term;
    memcpy(loaded->voted_for, st->meta.voted_for, sizeof(loaded->voted_for));
    loaded->first_index = st->meta.prefix_index + 1;
    loaded->prefix_term = st->meta.prefix_term;
    rs_index last = loaded->n ? loaded->entries[loaded->n - 1].index : st->meta.prefix_index;
    loaded->commit = st->meta.commit < last ? st->meta.commit : last;
  }
  return 0;
}

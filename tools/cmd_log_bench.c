/* `raftstack log bench DIR`: fsync latency of DIR's disk and the file log's group-commit
 * throughput. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <raftstack/errors.h>

#include "raft/log/log.h"
#include "tools/tools.h"

/*
 * Two measurements, both in DIR (created if needed; the files are removed at the end):
 *  1. fsync latency: N appends of SIZE bytes to one file, each followed by fdatasync, timed one
 *     by one (this is the floor under every durable Raft commit on this disk);
 *  2. log throughput: a struct raft_log of class "file" on a libev runtime, fed continuously:
 *     WINDOW entries of SIZE bytes are kept waiting for durability, and each completed batch is
 *     replaced at once by as many new entries. Prints entries/s, batches/s and the mean batch.
 */

struct bench {
  struct raft_log *log;
  struct rs_runtime *rt;
  struct rs_buf *payload;
  uint32_t size;
  uint64_t window;
  bool stop;
  int rc;
  struct raft_log_stats stats;
  rs_index durable, start; /* durable index at the end, and at open */
  bool fsync;
  const char *dir;
  char err[512];
  struct rs_completion done;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int fsync_latency(const char *dir, unsigned n, uint32_t size) {
  char path[4200];
  snprintf(path, sizeof(path), "%.4096s/fsync-bench.tmp", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    fprintf(stderr, "raftstack log bench: %s: %s\n", path, strerror(errno));
    return TOOL_FAIL;
  }
  uint64_t *lat = calloc(n, sizeof(*lat));
  uint8_t *buf = calloc(1, size);
  int rc = lat && buf ? TOOL_OK : TOOL_FAIL;
  for (unsigned i = 0; rc == TOOL_OK && i < n; i++) {
    uint64_t t0 = now_ns();
    if (pwrite(fd, buf, size, (off_t)i * size) != (ssize_t)size || fdatasync(fd) != 0) {
      fprintf(stderr, "raftstack log bench: %s: %s\n", path, strerror(errno));
      rc = TOOL_FAIL;
    }
    lat[i] = now_ns() - t0;
  }
  if (rc == TOOL_OK) {
    qsort(lat, n, sizeof(*lat), cmp_u64);
    printf("fsync: %u x (write %" PRIu32 " B + fdatasync): p50 %.1f us, p90 %.1f us, p99 %.1f us, "
           "max %.1f us\n",
           n, size, (double)lat[n / 2] / 1e3, (double)lat[n * 9 / 10] / 1e3,
           (double)lat[n * 99 / 100] / 1e3, (double)lat[n - 1] / 1e3);
  }
  free(lat);
  free(buf);
  close(fd);
  unlink(path);
  return rc;
}

/* Keeps `window` entries waiting for the store. */
static void refill(struct bench *b) {
  if (b->stop) return;
  rs_index durable = raft_log_durable_index(b->log);
  while (raft_log_last_index(b->log) - durable < b->window) {
    int rc =
        raft_log_append(b->log, 1, RAFT_ENTRY_COMMAND, b->payload, b->payload->data, b->size, NULL);
    if (rc) {
      b->rc = rc;
      b->stop = true;
      return;
    }
  }
}

static void persisted(void *arg, int status) {
  struct bench *b = arg;
  if (status) {
    b->rc = status;
    b->stop = true;
  }
  refill(b);
}

static void bench_start(void *arg) {
  struct bench *b = arg;
  struct log_config cfg = {
      .dir = b->dir, .name = b->fsync ? "bench-fsync" : "bench-nofsync", .use_fsync = b->fsync};
  b->rc = raft_log_open(&b->log, &log_file_ops, &cfg, b->rt, b->err, sizeof(b->err));
  if (b->rc == 0) {
    raft_log_set_listener(b->log, persisted, b);
    b->start = raft_log_durable_index(b->log);
    refill(b);
  }
  completion_done(&b->done, b->rc);
}

static void bench_stop(void *arg) {
  struct bench *b = arg;
  b->stop = true;
  raft_log_get_stats(b->log, &b->stats);
  b->durable = raft_log_durable_index(b->log);
  raft_log_close(b->log);
  completion_done(&b->done, 0);
}

static int on_loop(struct bench *b, rs_call_fn fn) {
  completion_init(&b->done);
  int rc = rs_runtime_call(b->rt, fn, b);
  if (rc == 0) rc = completion_wait(b->rt, &b->done, 60 * RS_SEC);
  completion_fini(&b->done);
  return rc;
}

static int throughput(const char *dir, bool fsync, uint32_t size, uint64_t window, double secs) {
  struct bench b = {.size = size, .window = window, .fsync = fsync, .dir = dir};
  b.rt = rs_runtime_ev_new("bench");
  b.payload = rs_buf_new(size ? size : 1);
  if (!b.rt || !b.payload) return TOOL_FAIL;
  memset(b.payload->data, 'x', size);
  uint64_t t0 = now_ns();
  int rc = on_loop(&b, bench_start);
  if (rc != 0) {
    fprintf(stderr, "raftstack log bench: %s\n", b.err[0] ? b.err : rs_strerror(rc));
  } else {
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    on_loop(&b, bench_stop);
    double el = (double)(now_ns() - t0) / 1e9;
    printf("log (fsync %s, %" PRIu32 " B entries, %" PRIu64 " waiting): %.0f entries/s, %.0f "
           "batches/s, %.1f entries/batch (max %" PRIu64 "), %.1f MB/s%s%s\n",
           fsync ? "on" : "off", size, window, (double)(b.durable - b.start) / el,
           (double)b.stats.batches / el,
           b.stats.batches ? (double)b.stats.entries_written / (double)b.stats.batches : 0.0,
           b.stats.max_batch_entries, (double)b.stats.bytes_written / el / 1e6,
           b.rc ? ", error: " : "", b.rc ? rs_strerror(b.rc) : "");
    if (b.rc) rc = b.rc;
  }
  rs_buf_unref(b.payload);
  rs_runtime_destroy(b.rt);
  return rc ? TOOL_FAIL : TOOL_OK;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void bench_usage(FILE *f) {
  fprintf(f, "usage: raftstack log bench DIR [--size BYTES] [--window N] [--seconds S] "
             "[--fsyncs N]\n"
             "\n"
             "Measures, in a temporary directory under DIR (removed afterwards), the latency of\n"
             "write+fdatasync on DIR's disk (--fsyncs, default 500), then the file log's\n"
             "throughput with --window entries (default 256) of --size bytes (default 100)\n"
             "always waiting to be made durable, for --seconds (default 5), with fsync on and\n"
             "then with fsync off.\n");
}

int cmd_log_bench(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help")) {
    bench_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? TOOL_USAGE : TOOL_OK;
  }
  uint32_t size = 100;
  uint64_t window = 256;
  double secs = 5;
  unsigned fsyncs = 500;
  for (int i = 2; i < argc; i++) {
    bool more = i + 1 < argc;
    if (!strcmp(argv[i], "--size") && more)
      size = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--window") && more)
      window = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--seconds") && more)
      secs = strtod(argv[++i], NULL);
    else if (!strcmp(argv[i], "--fsyncs") && more)
      fsyncs = (unsigned)strtoul(argv[++i], NULL, 10);
    else {
      bench_usage(stderr);
      return TOOL_USAGE;
    }
  }
  if (window == 0 || fsyncs == 0 || secs <= 0 || size > (1u << 24)) {
    bench_usage(stderr);
    return TOOL_USAGE;
  }
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/raftstack-log-bench-XXXXXX", argv[1]);
  if (!mkdtemp(dir)) {
    fprintf(stderr, "raftstack log bench: %s: %s\n", dir, strerror(errno));
    return TOOL_FAIL;
  }
  int rc = fsync_latency(dir, fsyncs, size);
  if (rc == TOOL_OK) rc = throughput(dir, true, size, window, secs);
  if (rc == TOOL_OK) rc = throughput(dir, false, size, window, secs);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}

/* libFuzzer target: the file log's decoders — segment scan, metadata, and a whole directory load.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raftstack/raftstack.h>

#include "raft/log/log_internal.h"

/*
 * Input: byte 0 picks the decoder (bits 0..6 modulo 3) and, bit 7, whether a segment is the last
 * one; bytes 1..2 give the segment's first index (1..65536). The rest is: 0: a segment, scanned in
 * memory; every record handed out must lie inside the input, with consecutive indices and terms
 * that never decrease; 1: a metadata file; what decodes must encode back to the same bytes; 2:
 * split at its first 0xA5 byte into a metadata file and a segment file, written to a directory and
 * loaded read-only (log_dir_load), as `raftstack log verify` does.
 */

static volatile uint8_t sink;

struct seen {
  const uint8_t *lo, *hi;
  rs_index next;
  rs_term term;
};

static int check_record(void *arg, const struct log_record *r) {
  struct seen *s = arg;
  if (r->data < s->lo || r->data + r->len > s->hi) abort();
  if (r->index != s->next || r->term < s->term) abort();
  uint8_t sum = 0; /* every payload byte is read, so ASan sees an overrun */
  for (uint32_t i = 0; i < r->len; i++)
    sum ^= r->data[i];
  sink ^= sum;
  s->next++;
  s->term = r->term;
  return 0;
}

static char dir[64];
static int dirfd_;

static void setup(void) {
  rs_log_set_level(RS_LOG_OFF);
  snprintf(dir, sizeof(dir), "/tmp/rs-fuzz-log-XXXXXX");
  if (!mkdtemp(dir)) abort();
  dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
  if (dirfd_ < 0) abort();
}

static void put_file(const char *name, const uint8_t *p, size_t n) {
  int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) abort();
  if (n && write(fd, p, n) != (ssize_t)n) abort();
  close(fd);
}

static void load_dir(const uint8_t *p, size_t n, rs_index first) {
  const uint8_t *cut = memchr(p, 0xA5, n);
  size_t mlen = cut ? (size_t)(cut - p) : 0;
  char seg[64];
  log_segment_name(seg, sizeof(seg), first);
  put_file(LOG_META_FILE, p, mlen);
  put_file(seg, p + mlen, n - mlen);
  struct log_dir_state st;
  struct log_loaded l;
  char err[512];
  if (log_dir_load(dirfd_, dir, false, &st, &l, err, sizeof(err)) == 0) {
    for (size_t i = 0; i < l.n; i++)
      if (l.entries[i].index != l.first_index + i) abort();
    log_loaded_free(&l);
    log_dir_state_free(&st);
  }
  unlinkat(dirfd_, seg, 0);
  unlinkat(dirfd_, LOG_META_FILE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  if (!once++) setup();
  if (size < 3) return 0;
  int mode = (data[0] & 0x7f) % 3;
  bool last = data[0] & 0x80;
  rs_index first = (rs_index)((data[1] << 8) | data[2]) + 1;
  const uint8_t *p = data + 3;
  size_t n = size - 3;
  if (mode == 0) {
    struct seen s = {.lo = p, .hi = p + n, .next = first};
    struct log_scan scan;
    int rc = log_segment_scan(p, n, first, 0, last, check_record, &s, &scan);
    if (rc == 0 && scan.valid_len > n) abort();
    if (rc == 0 && !scan.torn && scan.valid_len != n) abort();
    if (rc != 0 && scan.err_offset > n) abort();
  } else if (mode == 1) {
    struct log_meta m;
    char what[96];
    if (log_meta_decode(p, n, &m, what, sizeof(what)) == 0) {
      uint8_t out[LOG_META_MAX];
      size_t len = log_meta_encode(out, &m);
      if (len != n || memcmp(out, p, n) != 0) abort();
    }
  } else {
    load_dir(p, n, first);
  }
  return 0;
}

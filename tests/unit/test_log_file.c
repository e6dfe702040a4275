/* The file log: persistence across reopen, segments, recovery (torn tails, corruption), atomic
 * metadata, fsync errors, group commit, and the `raftstack log` tool. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/log_fixture.h"

/* The store's fault hook doubles as a gate: a test holds the I/O thread inside a write to keep a
 * batch in flight deterministically. */

START_TEST(file_reopen_keeps_everything) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 20, 1), 0);
  ck_assert_int_eq(lf_set_meta(3, "C"), 0);
  ck_assert_int_eq(lf_set_commit(15), 0);
  ck_assert_int_eq(lf_trunc_prefix(5, 1), 0);
  ck_assert_int_eq(lf_trunc_suffix(18), 0);
  ck_assert_int_eq(lf_append_n(18, 19, 3), 0);
  lf_settle();
  ck_assert_int_eq(lf_snap()->error, 0);
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 6);
  ck_assert_uint_eq(s->last, 19);
  ck_assert_uint_eq(s->last_term, 3);
  ck_assert_uint_eq(s->term_at_prev, 1);
  ck_assert_uint_eq(s->term, 3);
  ck_assert_str_eq(s->voted_for, "C");
  ck_assert_uint_eq(s->commit, 15); /* written lazily, and at close */
  ck_assert_uint_eq(s->durable, 19);
  ck_assert(s->meta_durable);
  for (rs_index i = 6; i <= 17; i++)
    lf_check_entry(i, 1);
  lf_check_entry(18, 3);
  lf_check_entry(19, 3);
  ck_assert(!lf_has_entry(5));
  /* A commit index alone is written lazily: here by close. */
  ck_assert_int_eq(lf_set_commit(17), 0);
  lf_settle();
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->commit, 17);
  /* And it goes on from there. */
  ck_assert_int_eq(lf_append_n(20, 25, 3), 0);
  lf_settle();
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 25);
  lf_check_entry(25, 3);
}
END_TEST

START_TEST(file_segments_roll_and_prefix_truncation_deletes_them) {
  LF.segment_size = 4096;
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 400, 1), 0);
  lf_settle();
  size_t n = lf_count_segments();
  ck_assert_uint_ge(n, 4);
  char path[512];
  lf_seg_path(path, sizeof(path), 1);
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_uint_ge((uint64_t)sb.st_size, 4096);
  ck_assert_uint_lt((uint64_t)sb.st_size, 4096 + 32 + 64);
  ck_assert_int_eq(lf_trunc_prefix(250, 1), 0);
  lf_settle();
  size_t m = lf_count_segments();
  ck_assert_uint_lt(m, n);
  ck_assert_uint_ge(m, 2);
  ck_assert_int_eq(access(path, F_OK), -1); /* the first segment is gone */
  /* A suffix truncation into an earlier segment removes every later one. */
  ck_assert_int_eq(lf_trunc_suffix(300), 0);
  ck_assert_int_eq(lf_append_n(300, 310, 2), 0);
  lf_settle();
  lf_log_close();
  ck_assert_msg(lf_log_open() == 0, "%s", LF.err);
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 251);
  ck_assert_uint_eq(s->last, 310);
  for (rs_index i = 251; i <= 299; i++)
    lf_check_entry(i, 1);
  for (rs_index i = 300; i <= 310; i++)
    lf_check_entry(i, 2);
}
END_TEST

/* The last segment's file and where its last record starts. */
static void last_record(char *path, size_t plen, rs_index first, rs_index last, size_t *start,
                        size_t *len) {
  lf_seg_path(path, plen, first);
  uint8_t *p = lf_read_all(path, len);
  free(p);
  *start = *len - (LOG_RECORD_HEADER + lf_payload_len(last));
}

START_TEST(file_torn_tail_cut_at_every_byte) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 10, 1), 0);
  lf_settle();
  lf_log_close();
  char path[512];
  size_t start, len;
  last_record(path, sizeof(path), 1, 10, &start, &len);
  uint8_t *orig = lf_read_all(path, &len);
  rs_log_set_level(RS_LOG_ERROR); /* one WARN line per cut otherwise */
  for (size_t cut = start; cut < len; cut++) {
    ck_assert_int_eq(truncate(path, (off_t)cut), 0);
    ck_assert_msg(lf_log_open() == 0, "cut at %zu: %s", cut, LF.err);
    struct snap *s = lf_snap();
    ck_assert_msg(s->last == 9, "cut at %zu: last %llu", cut, (unsigned long long)s->last);
    lf_check_entry(9, 1);
    lf_log_close();
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq((uint64_t)sb.st_size, start); /* the torn record is cut */
    lf_write_all_file(path, orig, len);
  }
  rs_log_set_level(RS_LOG_WARN);
  /* Zeros after the last record (a file extended but never written) are a torn tail too. */
  uint8_t *z = calloc(1, len + 100);
  memcpy(z, orig, len);
  lf_write_all_file(path, z, len + 100);
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 10);
  ck_assert_int_eq(lf_append(11, 1), 0); /* appends go after the cut */
  lf_settle();
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 11);
  lf_check_entry(11, 1);
  free(z);
  free(orig);
}
END_TEST

START_TEST(file_bad_record_in_the_middle_is_corruption) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 10, 1), 0);
  lf_settle();
  lf_log_close();
  char path[512];
  lf_seg_path(path, sizeof(path), 1);
  size_t len;
  uint8_t *orig = lf_read_all(path, &len);
  /* Record 3 starts after records 1 and 2; flip one payload byte of it. */
  size_t off3 = 2 * LOG_RECORD_HEADER + lf_payload_len(1) + lf_payload_len(2);
  uint8_t *bad = malloc(len);
  memcpy(bad, orig, len);
  bad[off3 + LOG_RECORD_HEADER + 1] ^= 0x40;
  lf_write_all_file(path, bad, len);
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  char want[128];
  snprintf(want, sizeof(want), "00000000000000000001.seg:%zu: bad record payload", off3);
  ck_assert_msg(strstr(LF.err, want) != NULL, "err: %s", LF.err);
  size_t len2;
  uint8_t *after = lf_read_all(path, &len2);
  ck_assert_uint_eq(len2, len); /* nothing modified */
  ck_assert(memcmp(after, bad, len) == 0);
  free(after);
  /* A flipped header byte (the length) is caught by the header CRC, not taken as a torn tail. */
  memcpy(bad, orig, len);
  bad[off3 + 2] ^= 0x01;
  lf_write_all_file(path, bad, len);
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  snprintf(want, sizeof(want), "00000000000000000001.seg:%zu: bad record header", off3);
  ck_assert_msg(strstr(LF.err, want) != NULL, "err: %s", LF.err);
  free(bad);
  free(orig);
}
END_TEST

START_TEST(file_bad_record_in_an_earlier_segment_is_corruption) {
  LF.segment_size = 4096;
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 200, 1), 0);
  lf_settle();
  lf_log_close();
  ck_assert_uint_ge(lf_count_segments(), 2);
  char path[512];
  lf_seg_path(path, sizeof(path), 1);
  size_t len;
  uint8_t *p = lf_read_all(path, &len);
  p[len - 1] ^= 0xff; /* the last byte of the first segment's last record */
  lf_write_all_file(path, p, len);
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  ck_assert_msg(strstr(LF.err, "/n1.log/00000000000000000001.seg:") != NULL, "err: %s", LF.err);
  ck_assert_msg(strstr(LF.err, "bad record payload") != NULL, "err: %s", LF.err);
  size_t len2;
  uint8_t *q = lf_read_all(path, &len2);
  ck_assert_uint_eq(len2, len);
  free(q);
  free(p);
}
END_TEST

START_TEST(file_gap_and_decreasing_term_are_corruption) {
  LF.segment_size = 4096;
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 300, 1), 0);
  lf_settle();
  lf_log_close();
  /* Remove a middle segment: the next one starts after a gap. */
  rs_index firsts[16];
  size_t n = 0;
  char path[512];
  for (rs_index i = 1; i <= 300 && n < 16; i++) {
    lf_seg_path(path, sizeof(path), i);
    if (access(path, F_OK) == 0) firsts[n++] = i;
  }
  ck_assert_uint_ge(n, 3);
  lf_seg_path(path, sizeof(path), firsts[1]);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  char name[64], want[128];
  log_segment_name(name, sizeof(name), firsts[2]);
  snprintf(want, sizeof(want), "%s:0: segment starts at index %llu but the previous ended at %llu",
           name, (unsigned long long)firsts[2], (unsigned long long)(firsts[1] - 1));
  ck_assert_msg(strstr(LF.err, want) != NULL, "err: %s", LF.err);
  /* A hand-written segment whose terms go 2, 1. */
  nftw(LF.dir, lf_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  ck_assert_int_eq(mkdir(LF.dir, 0755), 0);
  ck_assert_int_eq(lf_log_open(), 0);
  lf_log_close();
  uint8_t buf[3 * LOG_RECORD_HEADER + 3];
  uint8_t d = 'x';
  log_record_encode(buf, 2, 1, RAFT_ENTRY_COMMAND, &d, 1);
  buf[LOG_RECORD_HEADER] = d;
  log_record_encode(buf + 33, 1, 2, RAFT_ENTRY_COMMAND, &d, 1);
  buf[33 + LOG_RECORD_HEADER] = d;
  log_record_encode(buf + 66, 2, 3, RAFT_ENTRY_COMMAND, &d, 1);
  buf[66 + LOG_RECORD_HEADER] = d;
  lf_seg_path(path, sizeof(path), 1);
  lf_write_all_file(path, buf, sizeof(buf));
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  ck_assert_msg(strstr(LF.err, "00000000000000000001.seg:33: term 1 after term 2") != NULL,
                "err: %s", LF.err);
}
END_TEST

START_TEST(file_metadata_tmp_ignored_and_bad_meta_reported) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_set_meta(7, "node-B"), 0);
  ck_assert_int_eq(lf_append_n(1, 3, 7), 0);
  lf_settle();
  lf_log_close();
  char path[512], meta[512];
  snprintf(path, sizeof(path), "%s/n1.log/%s", LF.dir, LOG_META_TMP);
  snprintf(meta, sizeof(meta), "%s/n1.log/%s", LF.dir, LOG_META_FILE);
  /* A crash between writing meta.tmp and the rename leaves it behind: the old meta holds. */
  lf_write_all_file(path, (const uint8_t *)"half-written", 12);
  ck_assert_int_eq(lf_log_open(), 0);
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->term, 7);
  ck_assert_str_eq(s->voted_for, "node-B");
  ck_assert_int_eq(access(path, F_OK), -1); /* removed */
  lf_log_close();
  size_t len;
  uint8_t *p = lf_read_all(meta, &len);
  p[9] ^= 1;
  lf_write_all_file(meta, p, len);
  ck_assert_int_eq(lf_log_open(), RS_ECORRUPT);
  ck_assert_msg(strstr(LF.err, "/n1.log/meta:0: metadata CRC mismatch") != NULL, "err: %s", LF.err);
  free(p);
}
END_TEST

START_TEST(file_prefix_truncation_interrupted_by_a_crash) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_set_meta(4, "A"), 0);
  ck_assert_int_eq(lf_append_n(1, 10, 1), 0);
  lf_settle();
  lf_log_close();
  /* The metadata of a snapshot up to 20 (past the end) was written, the crash came before the
   * old segment was deleted. */
  struct log_meta m = {.term = 4, .prefix_index = 20, .prefix_term = 3};
  snprintf(m.voted_for, sizeof(m.voted_for), "A");
  uint8_t buf[LOG_META_MAX];
  size_t len = log_meta_encode(buf, &m);
  char meta[512], seg1[512];
  snprintf(meta, sizeof(meta), "%s/n1.log/%s", LF.dir, LOG_META_FILE);
  lf_write_all_file(meta, buf, len);
  ck_assert_msg(lf_log_open() == 0, "%s", LF.err);
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 21);
  ck_assert_uint_eq(s->last, 20);
  ck_assert_uint_eq(s->last_term, 3);
  lf_seg_path(seg1, sizeof(seg1), 1);
  ck_assert_int_eq(access(seg1, F_OK), -1); /* the interrupted deletion is finished */
  ck_assert_int_eq(lf_append_n(21, 23, 4), 0);
  lf_settle();
  lf_log_close();
  ck_assert_msg(lf_log_open() == 0, "%s", LF.err);
  ck_assert_uint_eq(lf_snap()->last, 23);
  lf_check_entry(21, 4);
  lf_log_close();
  /* Read-only (the tool): the old segment before a log that restarts at prefix + 1 is fine. */
  lf_write_all_file(seg1, buf, 0);
  struct log_dir_state st;
  struct log_loaded l;
  char err[512], dir[512];
  snprintf(dir, sizeof(dir), "%s/n1.log", LF.dir);
  uint8_t rec[LOG_RECORD_HEADER + 1];
  uint8_t d = 'q';
  log_record_encode(rec, 1, 1, RAFT_ENTRY_COMMAND, &d, 1);
  rec[LOG_RECORD_HEADER] = d;
  lf_write_all_file(seg1, rec, sizeof(rec));
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  ck_assert_int_eq(log_dir_load(dfd, dir, false, &st, &l, err, sizeof(err)), 0);
  ck_assert_uint_eq(l.first_index, 21);
  ck_assert_uint_eq(l.n, 3);
  log_loaded_free(&l);
  log_dir_state_free(&st);
  close(dfd);
}
END_TEST

/* The fault hook: fails every fsync with EIO (counting them), or holds the first write. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int fsyncs_failed, gate_state; /* gate: 0 off, 1 armed, 2 holding, 3 open */

static int fail_fsync(const char *what, const char *path) {
  (void)path;
  if (strcmp(what, "fsync") != 0) return 0;
  pthread_mutex_lock(&gate_mu);
  fsyncs_failed++;
  pthread_mutex_unlock(&gate_mu);
  return EIO;
}

static int hold_first_write(const char *what, const char *path) {
  (void)path;
  pthread_mutex_lock(&gate_mu);
  if (strcmp(what, "write") == 0 && gate_state == 1) {
    gate_state = 2;
    pthread_cond_broadcast(&gate_cv);
    while (gate_state != 3)
      pthread_cond_wait(&gate_cv, &gate_mu);
  }
  pthread_mutex_unlock(&gate_mu);
  return 0;
}

/* Counts the store's writes and syncs (never fails). */
static int n_writes, n_fsyncs, n_dirsyncs;
static int count_io(const char *what, const char *path) {
  (void)path;
  pthread_mutex_lock(&gate_mu);
  n_writes += !strcmp(what, "write");
  n_fsyncs += !strcmp(what, "fsync");
  n_dirsyncs += !strcmp(what, "dirsync");
  pthread_mutex_unlock(&gate_mu);
  return 0;
}

/* Records the store's writes and syncs in order: W write, F fdatasync, D directory fsync. */
static char io_seq[64];
static size_t io_seq_n;
static int record_io(const char *what, const char *path) {
  (void)path;
  pthread_mutex_lock(&gate_mu);
  if (io_seq_n + 1 < sizeof(io_seq)) {
    io_seq[io_seq_n++] = !strcmp(what, "write") ? 'W' : !strcmp(what, "fsync") ? 'F' : 'D';
    io_seq[io_seq_n] = '\0';
  }
  pthread_mutex_unlock(&gate_mu);
  return 0;
}
static void record_io_start(void) {
  pthread_mutex_lock(&gate_mu);
  io_seq_n = 0;
  io_seq[0] = '\0';
  pthread_mutex_unlock(&gate_mu);
  log_file_fault = record_io;
}

/* Raft §5.3: a follower replaces a conflicting suffix, truncation and new entries in one batch. A
 * crash before the batch's fsync must leave the old suffix or the new one, never a removed later
 * segment beside a rewritten earlier one (a gap) nor old records after new ones (a term that
 * decreases): both are RS_ECORRUPT on the next open, a node that cannot restart. So the removal
 * (directory fsync) and the cut (fdatasync) are durable before the first new byte is written. */
START_TEST(file_suffix_truncation_is_durable_before_the_new_suffix_is_written) {
  LF.segment_size = 4096;
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 400, 1), 0);
  lf_settle();
  size_t n_segs = lf_count_segments();
  ck_assert_uint_ge(n_segs, 4);
  /* Into an earlier segment: later segments are unlinked, the earlier one cut and rewritten. */
  record_io_start();
  ck_assert_int_eq(lf_trunc_append(100, 105, 2), 0);
  lf_settle();
  log_file_fault = NULL;
  ck_assert_str_eq(io_seq, "DFWF");
  ck_assert_uint_eq(lf_snap()->durable, 105);
  /* Inside the last segment: cut, synced, then written. */
  record_io_start();
  ck_assert_int_eq(lf_trunc_append(104, 106, 3), 0);
  lf_settle();
  log_file_fault = NULL;
  ck_assert_str_eq(io_seq, "FWF");
  lf_log_close();
  ck_assert_msg(lf_log_open() == 0, "%s", LF.err);
  ck_assert_uint_eq(lf_snap()->last, 106);
  ck_assert_uint_lt(lf_count_segments(), n_segs);
  lf_check_entry(99, 1);
  lf_check_entry(103, 2);
  lf_check_entry(106, 3);
}
END_TEST

START_TEST(file_one_fdatasync_per_batch_and_none_without_fsync) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 5, 1), 0);
  lf_settle();
  n_writes = n_fsyncs = n_dirsyncs = 0;
  log_file_fault = count_io;
  for (rs_index i = 6; i <= 60; i += 5) {
    ck_assert_int_eq(lf_append_n(i, i + 4, 1), 0);
    lf_settle(); /* one batch each */
  }
  ck_assert_int_eq(n_fsyncs, 11);
  ck_assert_int_eq(n_writes, 11);
  ck_assert_int_eq(n_dirsyncs, 0); /* no file created or removed */
  /* A vote: the metadata file's fsync and its directory's, on top of nothing else. */
  ck_assert_int_eq(lf_set_meta(2, "A"), 0);
  lf_settle();
  ck_assert_int_eq(n_fsyncs, 12);
  ck_assert_int_eq(n_dirsyncs, 1);
  /* A commit index alone is no reason to write (it is written with the next metadata). */
  ck_assert_int_eq(lf_set_commit(3), 0);
  lf_settle();
  ck_assert_int_eq(n_writes, 12);
  log_file_fault = NULL;
  lf_log_close();
  /* log_use_fsync=false: written, never synced. */
  LF.use_fsync = false;
  n_writes = n_fsyncs = n_dirsyncs = 0;
  log_file_fault = count_io;
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(61, 65, 1), 0);
  ck_assert_int_eq(lf_set_meta(3, "B"), 0);
  lf_settle();
  ck_assert_int_gt(n_writes, 0);
  ck_assert_int_eq(n_fsyncs + n_dirsyncs, 0);
  log_file_fault = NULL;
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 65);
  ck_assert_uint_eq(lf_snap()->term, 3);
  ck_assert_uint_eq(lf_snap()->commit, 3);
}
END_TEST

START_TEST(file_fsync_error_is_sticky) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 3, 1), 0);
  lf_settle();
  fsyncs_failed = 0;
  log_file_fault = fail_fsync;
  ck_assert_int_eq(lf_append_n(4, 6, 1), 0);
  lf_settle();
  struct snap *s = lf_snap();
  ck_assert_int_eq(s->error, RS_EIO);
  ck_assert_int_eq(LF.last_status, RS_EIO);
  ck_assert_uint_eq(s->durable, 3); /* 4..6 never became durable */
  ck_assert_int_eq(fsyncs_failed, 1);
  /* Sticky: every mutation is refused, and the store never tries another fsync. */
  ck_assert_int_eq(lf_append(7, 1), RS_EIO);
  ck_assert_int_eq(lf_set_meta(2, "A"), RS_EIO);
  ck_assert_int_eq(lf_trunc_suffix(2), RS_EIO);
  lf_log_close();
  ck_assert_int_eq(fsyncs_failed, 1);
  log_file_fault = NULL;
}
END_TEST

START_TEST(file_group_commit_one_fsync_per_batch) {
  ck_assert_int_eq(lf_log_open(), 0);
  gate_state = 1;
  log_file_fault = hold_first_write;
  ck_assert_int_eq(lf_append(1, 1), 0);
  pthread_mutex_lock(&gate_mu);
  while (gate_state != 2)
    pthread_cond_wait(&gate_cv, &gate_mu); /* batch 1 is in the write */
  pthread_mutex_unlock(&gate_mu);
  for (rs_index i = 2; i <= 200; i += 11)
    ck_assert_int_eq(lf_append_n(i, i + 10, 1), 0);
  ck_assert_uint_eq(lf_snap()->stats.batches, 1);
  pthread_mutex_lock(&gate_mu);
  gate_state = 3;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
  lf_settle();
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->stats.batches, 2);
  ck_assert_uint_eq(s->stats.entries_written, 210);
  ck_assert_uint_eq(s->stats.max_batch_entries, 209);
  ck_assert_uint_eq(s->durable, 210);
  log_file_fault = NULL;
  lf_log_close();
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 210);
  lf_check_entry(210, 1);
}
END_TEST

START_TEST(file_bad_name_is_a_config_error) {
  struct log_config cfg = {.dir = LF.dir, .name = "a/b", .use_fsync = true};
  struct raft_log *l = NULL;
  char err[256];
  /* A refused configuration closes no descriptor it did not open: fd 0 is a pipe of ours here
   * (in a daemon whose stdin is closed, fd 0 is whatever was opened next, a socket or a file). */
  int saved0 = dup(0), p[2];
  ck_assert_int_eq(pipe(p), 0);
  ck_assert_int_eq(dup2(p[0], 0), 0);
  ck_assert_int_eq(raft_log_open(&l, &log_file_ops, &cfg, LF.rt, err, sizeof(err)), RS_ECONFIG);
  bool fd0_open = fcntl(0, F_GETFD) != -1;
  if (saved0 >= 0) {
    dup2(saved0, 0);
    close(saved0);
  } else {
    close(0);
  }
  close(p[0]);
  close(p[1]);
  ck_assert_msg(fd0_open, "the failed open closed fd 0");
  ck_assert_ptr_null(l);
  ck_assert_msg(strstr(err, "'a/b'") != NULL, "%s", err);
  /* Nor on a simulated runtime, whose calls are not thread-safe. */
  struct rs_sim *sim = rs_sim_new(1);
  struct rs_runtime *srt = rs_sim_runtime_new(sim, "s");
  cfg.name = "n1";
  ck_assert_int_eq(raft_log_open(&l, &log_file_ops, &cfg, srt, err, sizeof(err)), RS_ECONFIG);
  ck_assert_msg(strstr(err, "simulation") != NULL, "%s", err);
  rs_runtime_destroy(srt);
  rs_sim_free(sim);
}
END_TEST

static void store_done(void *arg, int status) { completion_done(arg, status); }

/* One batch straight to the store (no raft_log in between); its status. */
static int store_batch(struct rs_log_store *st, rs_index idx) {
  uint8_t d = 'z';
  struct raft_entry e = {.term = 1, .index = idx, .type = RAFT_ENTRY_COMMAND, .data = &d, .len = 1};
  struct log_op op = {.type = LOG_OP_APPEND, .u.append = {.entries = &e, .n = 1}};
  struct rs_completion c;
  completion_init(&c);
  log_file_ops.submit(st, &op, 1, true, store_done, &c);
  int rc = completion_wait(LF.rt, &c, 20 * RS_SEC);
  completion_fini(&c);
  return rc;
}

START_TEST(file_store_refuses_everything_after_a_failed_fsync) {
  struct log_config cfg = {.dir = LF.dir, .name = "n1", .use_fsync = true};
  struct rs_log_store *st;
  struct log_loaded l;
  char err[256];
  ck_assert_int_eq(log_file_ops.open(&st, &cfg, LF.rt, &l, err, sizeof(err)), 0);
  ck_assert_uint_eq(l.n, 0);
  ck_assert_int_eq(store_batch(st, 1), 0);
  fsyncs_failed = 0;
  log_file_fault = fail_fsync;
  ck_assert_int_eq(store_batch(st, 2), RS_EIO);
  ck_assert_int_eq(fsyncs_failed, 1);
  /* The disk "recovers": the store still refuses, and tries no fsync (no retry). */
  log_file_fault = NULL;
  ck_assert_int_eq(store_batch(st, 3), RS_EIO);
  log_file_fault = fail_fsync;
  ck_assert_int_eq(store_batch(st, 3), RS_EIO);
  ck_assert_int_eq(fsyncs_failed, 1);
  log_file_fault = NULL;
  log_file_ops.close(st);
}
END_TEST

/* The raftstack binary of this build: BUILD/raftstack for BUILD/tests/unit/test_log_file, wherever
 * the test runs from (make check, or tests/valgrind-run from the source tree). */
static const char *tool_path(void) {
  static char path[4096];
  char self[4000];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ck_assert_int_gt(n, 0);
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  ck_assert_ptr_nonnull(slash);
  *slash = '\0';
  snprintf(path, sizeof(path), "%s/../../raftstack", self);
  return path;
}

/* Runs `raftstack log ARGS`; returns its exit status, its output (both streams) in out. */
static int run_tool(const char *args, char *out, size_t outlen) {
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "'%s' log %s 2>&1", tool_path(), args);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  size_t n = fread(out, 1, outlen - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(file_tool_dump_and_verify) {
  ck_assert_msg(access(tool_path(), X_OK) == 0, "%s: not built", tool_path());
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_set_meta(2, "B"), 0);
  ck_assert_int_eq(lf_append_n(1, 3, 1), 0);
  ck_assert_int_eq(lf_append_n(4, 5, 2), 0);
  lf_settle();
  lf_log_close();
  char args[512], out[8192];
  snprintf(args, sizeof(args), "verify %s/n1.log", LF.dir);
  ck_assert_int_eq(run_tool(args, out, sizeof(out)), 0);
  ck_assert_str_eq(out, "ok: 5 entries, first 1, last 5, term 2\n");
  snprintf(args, sizeof(args), "dump %s/n1.log --data", LF.dir);
  ck_assert_int_eq(run_tool(args, out, sizeof(out)), 0);
  ck_assert_msg(
      strstr(out, "meta: term 2, voted_for 'B', commit 0, prefix index 0, prefix term 0\n"), "%s",
      out);
  char line[256], hex[2 * 64 + 1];
  uint8_t want[64];
  lf_payload(want, lf_payload_len(4), 4 * 1000 + 2);
  for (uint32_t i = 0; i < lf_payload_len(4); i++)
    snprintf(hex + 2 * i, 3, "%02x", want[i]);
  snprintf(line, sizeof(line), "\n4 2 command %u %s\n", lf_payload_len(4), hex);
  ck_assert_msg(strstr(out, line), "%s", out);
  /* A flipped byte in record 2: exit 1 and the file and offset. */
  char path[512];
  lf_seg_path(path, sizeof(path), 1);
  size_t len;
  uint8_t *p = lf_read_all(path, &len);
  size_t off2 = LOG_RECORD_HEADER + lf_payload_len(1);
  p[off2 + LOG_RECORD_HEADER] ^= 1;
  lf_write_all_file(path, p, len);
  free(p);
  snprintf(args, sizeof(args), "verify %s/n1.log", LF.dir);
  ck_assert_int_eq(run_tool(args, out, sizeof(out)), 1);
  snprintf(line, sizeof(line), "00000000000000000001.seg:%zu: bad record payload (CRC mismatch)",
           off2);
  ck_assert_msg(strstr(out, line), "%s", out);
  ck_assert_int_eq(run_tool("verify", out, sizeof(out)), 2);
  /* bench: a short run prints its three lines and removes what it wrote. */
  snprintf(args, sizeof(args), "bench %s --seconds 0.2 --fsyncs 5 --window 16", LF.dir);
  ck_assert_int_eq(run_tool(args, out, sizeof(out)), 0);
  ck_assert_msg(strstr(out, "fsync: 5 x (write 100 B + fdatasync): p50 "), "%s", out);
  ck_assert_msg(strstr(out, "log (fsync on, 100 B entries, 16 waiting): "), "%s", out);
  ck_assert_msg(strstr(out, "log (fsync off, 100 B entries, 16 waiting): "), "%s", out);
  ck_assert_msg(!strstr(out, "error"), "%s", out);
  snprintf(args, sizeof(args), "bench %s --window 0", LF.dir);
  ck_assert_int_eq(run_tool(args, out, sizeof(out)), 2);
}
END_TEST

static Suite *log_file_suite(void) {
  Suite *s = suite_create("log_file");
  TCase *tc = tcase_create("file");
  tcase_add_checked_fixture(tc, lf_setup_file, lf_teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, file_reopen_keeps_everything);
  tcase_add_test(tc, file_segments_roll_and_prefix_truncation_deletes_them);
  tcase_add_test(tc, file_torn_tail_cut_at_every_byte);
  tcase_add_test(tc, file_bad_record_in_the_middle_is_corruption);
  tcase_add_test(tc, file_bad_record_in_an_earlier_segment_is_corruption);
  tcase_add_test(tc, file_gap_and_decreasing_term_are_corruption);
  tcase_add_test(tc, file_metadata_tmp_ignored_and_bad_meta_reported);
  tcase_add_test(tc, file_prefix_truncation_interrupted_by_a_crash);
  tcase_add_test(tc, file_fsync_error_is_sticky);
  tcase_add_test(tc, file_one_fdatasync_per_batch_and_none_without_fsync);
  tcase_add_test(tc, file_suffix_truncation_is_durable_before_the_new_suffix_is_written);
  tcase_add_test(tc, file_group_commit_one_fsync_per_batch);
  tcase_add_test(tc, file_bad_name_is_a_config_error);
  tcase_add_test(tc, file_tool_dump_and_verify);
  tcase_add_test(tc, file_store_refuses_everything_after_a_failed_fsync);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(log_file_suite()); }

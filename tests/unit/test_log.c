/* The Raft log: memory image, group commit, durable_index, log classes (memory in the simulation,
 * and the class-independent tests also over the file class). */
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

/* ---- both classes --------------------------------------------------------------------------- */

START_TEST(append_get_and_terms) {
  ck_assert_int_eq(lf_log_open(), 0);
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 1);
  ck_assert_uint_eq(s->last, 0);
  ck_assert_uint_eq(s->last_term, 0);
  ck_assert_int_eq(lf_append_n(1, 5, 1), 0);
  ck_assert_int_eq(lf_append_n(6, 9, 3), 0);
  s = lf_snap();
  ck_assert_uint_eq(s->first, 1);
  ck_assert_uint_eq(s->last, 9);
  ck_assert_uint_eq(s->last_term, 3);
  uint64_t size = 0;
  for (rs_index i = 1; i <= 9; i++)
    size += lf_payload_len(i) + LOG_ENTRY_OVERHEAD;
  ck_assert_uint_eq(s->size, size);
  for (rs_index i = 1; i <= 9; i++)
    lf_check_entry(i, i <= 5 ? 1 : 3);
  ck_assert(!lf_has_entry(0));
  ck_assert(!lf_has_entry(10));
  /* An entry must follow the last one: a leader's batch that does not fit is refused. */
  struct raft_entry e = {.term = 3, .index = 11, .type = RAFT_ENTRY_NOOP};
  ck_assert_int_eq(raft_log_append_entries(LF.log, &e, 1), RS_EINVAL);
  lf_settle();
  s = lf_snap();
  ck_assert_uint_eq(s->durable, 9);
  ck_assert_int_eq(LF.last_status, 0);
}
END_TEST

START_TEST(truncations_and_meta) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 10, 2), 0);
  ck_assert_int_eq(lf_set_meta(4, "B"), 0);
  ck_assert_int_eq(lf_set_commit(6), 0);
  ck_assert_int_eq(lf_trunc_suffix(8), 0); /* a follower's conflicting suffix */
  ck_assert_int_eq(lf_append_n(8, 9, 4), 0);
  ck_assert_int_eq(lf_trunc_suffix(10), 0); /* just past the end: nothing to remove */
  ck_assert_int_eq(lf_trunc_suffix(11), RS_EINVAL);
  ck_assert_int_eq(lf_trunc_prefix(3, 2), 0); /* after a snapshot up to 3 */
  ck_assert_int_eq(lf_trunc_prefix(2, 2), 0); /* already gone: nothing happens */
  lf_settle();
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 4);
  ck_assert_uint_eq(s->last, 9);
  ck_assert_uint_eq(s->last_term, 4);
  ck_assert_uint_eq(s->term_at_prev, 2);
  ck_assert_uint_eq(s->term, 4);
  ck_assert_str_eq(s->voted_for, "B");
  ck_assert_uint_eq(s->commit, 6);
  ck_assert_uint_eq(s->durable, 9);
  ck_assert(!lf_has_entry(3));
  for (rs_index i = 4; i <= 7; i++)
    lf_check_entry(i, 2);
  lf_check_entry(8, 4);
  lf_check_entry(9, 4);
  ck_assert_uint_eq(raft_log_term_at(LF.log, 0), 0);
  ck_assert_uint_eq(raft_log_term_at(LF.log, 2), 0); /* outside the log */
  ck_assert_uint_eq(raft_log_term_at(LF.log, 10), 0);
  /* A snapshot past the end (installed from the leader) empties the log after it. */
  ck_assert_int_eq(lf_trunc_prefix(20, 5), 0);
  s = lf_snap();
  ck_assert_uint_eq(s->first, 21);
  ck_assert_uint_eq(s->last, 20);
  ck_assert_uint_eq(s->last_term, 5);
  ck_assert_uint_eq(s->size, 0);
  ck_assert_int_eq(lf_append(21, 5), 0);
  lf_settle();
  lf_check_entry(21, 5);
  ck_assert_uint_eq(lf_snap()->durable, 21);
}
END_TEST

/* The memory image grows in chunks of 1,024 entries while its head has wrapped around: every
 * entry must still be found at its index with its term after each growth. */
START_TEST(growth_keeps_entries_with_a_wrapped_head) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 1024, 1), 0); /* exactly one full chunk */
  ck_assert_int_eq(lf_trunc_prefix(700, 1), 0); /* the head moves into the chunk */
  ck_assert_int_eq(lf_append_n(1025, 1724, 2), 0); /* wraps below the head, then grows */
  ck_assert_int_eq(lf_trunc_prefix(1500, 2), 0);
  ck_assert_int_eq(lf_append_n(1725, 6000, 3), 0); /* two more growths */
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->first, 1501);
  ck_assert_uint_eq(s->last, 6000);
  for (rs_index i = 1501; i <= 6000; i++)
    lf_check_entry(i, i <= 1724 ? 2 : 3);
  ck_assert(!lf_has_entry(1500));
  lf_settle();
}
END_TEST

/* Moving only the commit index never takes the store's slot at once (it would delay the next
 * append's fsync); it rides with the next real batch, or goes alone after a second. */
START_TEST(commit_alone_waits_for_company_or_a_second) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append(1, 1), 0);
  lf_settle();
  uint64_t b0 = lf_snap()->stats.batches;
  ck_assert_int_eq(lf_set_commit(1), 0);
  rs_sim_run_for(LF.sim, 500 * RS_MS);
  ck_assert_uint_eq(lf_snap()->stats.batches, b0); /* held back */
  ck_assert_int_eq(lf_append(2, 1), 0);            /* company: one batch carries both */
  lf_settle();
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->stats.batches, b0 + 1);
  ck_assert_uint_eq(s->stats.ops, 3); /* append; then append + commit */
  ck_assert_int_eq(lf_set_commit(2), 0);
  rs_sim_run_for(LF.sim, 999 * RS_MS);
  ck_assert_uint_eq(lf_snap()->stats.batches, b0 + 1);
  rs_sim_run_for(LF.sim, 2 * RS_MS); /* a second after it was held back: alone */
  ck_assert_uint_eq(lf_snap()->stats.batches, b0 + 2);
  ck_assert_uint_eq(lf_snap()->commit, 2);
}
END_TEST

/* ---- memory class in the simulation: exact batch boundaries ---------------------------------- */

static bool batches_at_least(void *arg) {
  lf_take_snap(&LF);
  return LF.snap.stats.batches >= (uint64_t)(uintptr_t)arg;
}

START_TEST(group_commit_while_a_batch_is_in_flight) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append(1, 1), 0);
  /* The first batch goes to the store after this callback; run exactly until it is there. */
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)1, RS_SEC));
  ck_assert_uint_eq(LF.snap.durable, 0);
  ck_assert_int_eq(LF.persisted_calls, 0);
  /* 99 appends, a vote and a commit while it is in flight all wait for the next batch. */
  for (rs_index i = 2; i <= 100; i++)
    ck_assert_int_eq(lf_append(i, 1), 0);
  ck_assert_int_eq(lf_set_meta(1, "A"), 0);
  ck_assert_int_eq(lf_set_commit(1), 0);
  ck_assert(!lf_snap()->meta_durable);
  lf_settle();
  struct snap *s = lf_snap();
  ck_assert_uint_eq(s->stats.batches, 2);
  ck_assert_uint_eq(s->stats.entries_written, 100);
  ck_assert_uint_eq(s->stats.max_batch_entries, 99);
  ck_assert_uint_eq(s->stats.ops, 1 + 3); /* APPEND | APPEND (one run), META, COMMIT */
  ck_assert_uint_eq(s->durable, 100);
  ck_assert(s->meta_durable);
  ck_assert_int_eq(LF.persisted_calls, 2);
}
END_TEST

START_TEST(durable_index_with_truncation_in_flight) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 5, 1), 0);
  lf_settle();
  ck_assert_uint_eq(lf_snap()->durable, 5);
  ck_assert_int_eq(lf_append_n(6, 10, 1), 0);
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)2, RS_SEC));
  /* 6..10 are at the store when a new leader's entries replace 7.. : durable drops at once. */
  ck_assert_int_eq(lf_trunc_suffix(7), 0);
  ck_assert_uint_eq(lf_snap()->durable, 5);
  ck_assert_int_eq(lf_append_n(7, 8, 2), 0);
  /* The in-flight batch completes: 6 is durable, 7..10 were written but are replaced. */
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)3, RS_SEC));
  ck_assert_uint_eq(LF.snap.durable, 6);
  ck_assert_int_eq(LF.persisted_calls, 2);
  lf_settle();
  ck_assert_uint_eq(lf_snap()->durable, 8);
  lf_check_entry(8, 2);
}
END_TEST

START_TEST(meta_durable_only_for_the_latest_vote) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert(lf_snap()->meta_durable);
  ck_assert_int_eq(lf_set_meta(1, "A"), 0);
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)1, RS_SEC));
  ck_assert_int_eq(lf_set_meta(2, ""), 0); /* a newer term while the vote for A is in flight */
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)2, RS_SEC));
  /* The first batch is durable, but it held term 1: term 2 is not persisted yet. */
  ck_assert_int_eq(LF.persisted_calls, 1);
  ck_assert(!LF.snap.meta_durable);
  lf_settle();
  ck_assert(LF.snap.meta_durable);
  ck_assert_uint_eq(LF.snap.term, 2);
  ck_assert_str_eq(LF.snap.voted_for, "");
  char big[RAFT_ID_MAX + 2];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ck_assert_int_eq(lf_set_meta(3, big), RS_EINVAL);
}
END_TEST

START_TEST(close_with_a_batch_in_flight) {
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_int_eq(lf_append_n(1, 50, 1), 0);
  ck_assert(rs_sim_run_until(LF.sim, batches_at_least, (void *)1, RS_SEC));
  ck_assert_int_eq(lf_append_n(51, 60, 1), 0); /* queued, never submitted: lost as in a crash */
  lf_log_close();
  rs_sim_run_for(LF.sim, RS_SEC);
  ck_assert_int_eq(LF.persisted_calls, 0); /* no listener call after close */
  /* The memory class keeps nothing. */
  ck_assert_int_eq(lf_log_open(), 0);
  ck_assert_uint_eq(lf_snap()->last, 0);
}
END_TEST

START_TEST(class_names_and_aliases) {
  const struct rs_log_ops *file = &log_file_ops, *mem = &log_memory_ops;
  const char *file_names[] = {"file",
                              "FileBasedLog",
                              "org.jgroups.protocols.raft.FileBasedLog",
                              "LevelDBLog",
                              "org.jgroups.protocols.raft.LevelDBLog",
                              "RocksDBLog",
                              "org.jgroups.protocols.raft.RocksDBLog"};
  for (size_t i = 0; i < sizeof(file_names) / sizeof(file_names[0]); i++)
    ck_assert_msg(log_class_find(file_names[i]) == file, "%s", file_names[i]);
  ck_assert(log_class_find("memory") == mem);
  ck_assert(log_class_find("InMemoryLog") == mem);
  ck_assert(log_class_find("org.jgroups.protocols.raft.InMemoryLog") == mem);
  /* Case-sensitive, like Java class names; unknown names are NULL. */
  ck_assert_ptr_null(log_class_find("inmemorylog"));
  ck_assert_ptr_null(log_class_find("File"));
  ck_assert_ptr_null(log_class_find("org.jgroups.protocols.raft.Nope"));
  ck_assert_ptr_null(log_class_find(NULL));
  static const char *const al[] = {"SimLog", NULL};
  static const struct rs_log_ops sim_ops = {.name = "test-sim", .aliases = al};
  log_class_register(&sim_ops);
  ck_assert(log_class_find("test-sim") == &sim_ops);
  ck_assert(log_class_find("SimLog") == &sim_ops);
  const char *const *names = log_class_names();
  ck_assert_str_eq(names[0], "file");
  ck_assert_str_eq(names[1], "memory");
  ck_assert_str_eq(names[2], "test-sim");
  ck_assert_ptr_null(names[3]);
}
END_TEST

static Suite *log_suite(void) {
  Suite *s = suite_create("log");
  TCase *tc = tcase_create("memory");
  tcase_add_checked_fixture(tc, lf_setup_memory, lf_teardown);
  tcase_add_test(tc, append_get_and_terms);
  tcase_add_test(tc, truncations_and_meta);
  tcase_add_test(tc, growth_keeps_entries_with_a_wrapped_head);
  tcase_add_test(tc, commit_alone_waits_for_company_or_a_second);
  tcase_add_test(tc, group_commit_while_a_batch_is_in_flight);
  tcase_add_test(tc, durable_index_with_truncation_in_flight);
  tcase_add_test(tc, meta_durable_only_for_the_latest_vote);
  tcase_add_test(tc, close_with_a_batch_in_flight);
  tcase_add_test(tc, class_names_and_aliases);
  suite_add_tcase(s, tc);
  tc = tcase_create("file");
  tcase_add_checked_fixture(tc, lf_setup_file, lf_teardown);
  tcase_add_test(tc, append_get_and_terms);
  tcase_add_test(tc, truncations_and_meta);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(log_suite()); }

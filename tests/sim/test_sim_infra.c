/* The simulation's machinery: pausing a runtime, SIMNET's cuts/loss/duplicates/delays, and the
 * "sim" log class's durability model (what survives a crash, with and without fsync). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "raft/log/log.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/sim_log.h"
#include "tests/lib/simnet.h"
#include "tests/lib/testlib.h"

static struct rs_sim *sim;

static void setup(void) { sim = rs_sim_new(777); }
static void teardown(void) { rs_sim_free(sim); }

/* --- pause ------------------------------------------------------------------------------------ */

struct stamp {
  struct rs_timer timer;
  rs_time fired;
};

static void on_stamp(struct rs_timer *t) { ((struct stamp *)t)->fired = rs_sim_now(sim); }
static void on_call(void *arg) { *(rs_time *)arg = rs_sim_now(sim); }

START_TEST(pause_delays_timers_and_calls) {
  struct rs_runtime *a = rs_sim_runtime_new(sim, "a"), *b = rs_sim_runtime_new(sim, "b");
  struct stamp ta = {0}, tb = {0};
  rs_timer_init(&ta.timer, a, on_stamp);
  rs_timer_init(&tb.timer, b, on_stamp);
  rs_timer_start(&ta.timer, 10 * RS_MS, 0);
  rs_timer_start(&tb.timer, 20 * RS_MS, 0);
  rs_sim_pause(a, 50 * RS_MS);
  rs_sim_pause(a, 5 * RS_MS); /* a shorter pause does not shorten it */
  rs_time called = 0;
  ck_assert_int_eq(rs_runtime_call(a, on_call, &called), 0);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(tb.fired, 20 * RS_MS); /* b ran on time */
  ck_assert_uint_eq(called, 50 * RS_MS);   /* a's call waited for the pause to end */
  ck_assert_uint_eq(ta.fired, 50 * RS_MS); /* a's timer, due at 10 ms, fired late */
  /* After the pause everything is on time again. */
  rs_timer_start(&ta.timer, 10 * RS_MS, 0);
  rs_sim_run_for(sim, 20 * RS_MS);
  ck_assert_uint_eq(ta.fired, 110 * RS_MS);
  rs_runtime_destroy(a);
  rs_runtime_destroy(b);
}
END_TEST

static unsigned hook_calls;
static void count_hook(void *arg) {
  (void)arg;
  hook_calls++;
}

START_TEST(step_hook_runs_after_every_step) {
  struct rs_runtime *a = rs_sim_runtime_new(sim, "a");
  struct stamp t = {0};
  rs_timer_init(&t.timer, a, on_stamp);
  rs_timer_start(&t.timer, RS_MS, RS_MS);
  rs_sim_set_step_hook(sim, count_hook, NULL);
  uint64_t s0 = rs_sim_steps(sim);
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(hook_calls, rs_sim_steps(sim) - s0);
  ck_assert_uint_eq(hook_calls, 10);
  rs_sim_set_step_hook(sim, NULL, NULL);
  rs_timer_stop(&t.timer);
  rs_runtime_destroy(a);
}
END_TEST

/* --- SIMNET ----------------------------------------------------------------------------------- */

#define NET_XML "<config><LOOPBACK/><SIMNET/></config>"
enum { NODES = 3, MAXLOG = 4096 };

struct node {
  struct rs_runtime *rt;
  struct rs_channel *ch;
  struct rs_addr addr;
  uint32_t got[MAXLOG]; /* (sender << 24) | seq, in arrival order */
  size_t n;
};

static struct simnet net;
static struct node nodes[NODES];

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  (void)src;
  (void)flags;
  struct node *nd = arg;
  uint32_t v = 0;
  if (len == 4) memcpy(&v, data, 4);
  if (nd->n < MAXLOG) nd->got[nd->n++] = v;
}

static void net_setup(void) {
  setup();
  static const struct rs_protocol_ops *const extra[] = {&simnet_protocol, NULL};
  stack_set_extra_protocols(extra);
  simnet_init(&net, sim);
  simnet_set_current(&net);
  static const struct rs_receiver r = {.receive = on_receive};
  for (int i = 0; i < NODES; i++) {
    char name[8];
    snprintf(name, sizeof(name), "n%d", i);
    ck_assert_int_eq(simnet_add_node(&net, name), i);
    struct node *nd = &nodes[i];
    memset(nd, 0, sizeof(*nd));
    nd->rt = rs_sim_runtime_new(sim, name);
    struct rs_channel_opts o = {.config_xml = NET_XML, .name = name, .runtime = nd->rt};
    char err[256];
    ck_assert_msg(rs_channel_open(&nd->ch, &o, err, sizeof(err)) == 0, "%s", err);
    rs_channel_set_receiver(nd->ch, &r, nd);
    ck_assert_int_eq(rs_channel_connect(nd->ch, "simnet"), 0);
    nd->addr = rs_channel_address(nd->ch);
  }
}

static void net_teardown(void) {
  for (int i = 0; i < NODES; i++) {
    rs_channel_close(nodes[i].ch);
    rs_runtime_destroy(nodes[i].rt);
  }
  simnet_fini(&net);
  stack_set_extra_protocols(NULL);
  teardown();
}

static void send_seq(int from, int to, uint32_t seq) {
  uint32_t v = ((uint32_t)from << 24) | seq;
  ck_assert_int_eq(rs_channel_send(nodes[from].ch, &nodes[to].addr, &v, 4, 0), 0);
}

static size_t count_from(const struct node *nd, int from) {
  size_t c = 0;
  for (size_t i = 0; i < nd->n; i++)
    c += (nd->got[i] >> 24) == (uint32_t)from;
  return c;
}

static void reset_counts(void) {
  for (int i = 0; i < NODES; i++)
    nodes[i].n = 0;
}

START_TEST(simnet_clean_and_one_way_cut) {
  for (uint32_t i = 0; i < 50; i++)
    send_seq(0, 1, i), send_seq(1, 0, i);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), 50);
  ck_assert_uint_eq(count_from(&nodes[0], 1), 50);
  for (uint32_t i = 0; i < 50; i++)
    ck_assert_uint_eq(nodes[1].got[i] & 0xffffff, i); /* order */
  reset_counts();
  simnet_cut(&net, 0, 1, true); /* 0 -> 1 cut; 1 -> 0 still works */
  for (uint32_t i = 0; i < 50; i++)
    send_seq(0, 1, i), send_seq(1, 0, i), send_seq(0, 2, i);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), 0);
  ck_assert_uint_eq(count_from(&nodes[0], 1), 50);
  ck_assert_uint_eq(count_from(&nodes[2], 0), 50);
  ck_assert_uint_eq(net.cut_dropped, 50);
  reset_counts();
  simnet_heal(&net);
  send_seq(0, 1, 7);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), 1);
  /* A partition {0} | {1, 2}: both ways. */
  reset_counts();
  bool side[NODES] = {true, false, false};
  simnet_partition(&net, side);
  send_seq(0, 1, 1), send_seq(1, 0, 1), send_seq(1, 2, 1), send_seq(2, 1, 1);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(nodes[0].n + count_from(&nodes[1], 0), 0);
  ck_assert_uint_eq(count_from(&nodes[2], 1) + count_from(&nodes[1], 2), 2);
}
END_TEST

START_TEST(simnet_drop_dup_delay) {
  enum { N = 2000 };
  net.drop = 0.25;
  for (uint32_t i = 0; i < N; i++)
    send_seq(0, 1, i);
  rs_sim_run_for(sim, 200 * RS_MS);
  size_t got = count_from(&nodes[1], 0);
  ck_assert_msg(got > N * 65 / 100 && got < N * 85 / 100, "got %zu of %d at 25%% loss", got, N);
  ck_assert_uint_eq(net.dropped, N - got);
  reset_counts();
  net.drop = 0;
  net.dup = 1;
  for (uint32_t i = 0; i < 100; i++)
    send_seq(0, 1, i);
  rs_sim_run_for(sim, 200 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), 200); /* each twice */
  reset_counts();
  net.dup = 0;
  net.delay_p = 1;
  net.delay_max = 50 * RS_MS;
  for (uint32_t i = 0; i < 200; i++)
    send_seq(0, 1, i);
  rs_sim_run_for(sim, 200 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), 200); /* all arrive... */
  size_t inversions = 0;
  for (size_t i = 1; i < nodes[1].n; i++)
    inversions += (nodes[1].got[i] & 0xffffff) < (nodes[1].got[i - 1] & 0xffffff);
  ck_assert_uint_gt(inversions, 20); /* ...reordered */
  /* What is in flight on a link that is then cut is lost. */
  reset_counts();
  for (uint32_t i = 0; i < 100; i++)
    send_seq(0, 1, i);
  rs_sim_run_for(sim, 2 * RS_MS);
  size_t early = count_from(&nodes[1], 0);
  simnet_cut(&net, 0, 1, true);
  rs_sim_run_for(sim, 200 * RS_MS);
  ck_assert_uint_eq(count_from(&nodes[1], 0), early);
  ck_assert_uint_lt(early, 100);
}
END_TEST

/* --- the sim log ------------------------------------------------------------------------------ */

static struct sim_disk *disk;
static struct rs_runtime *lrt;

static void log_setup(void) {
  setup();
  disk = sim_disk_new(sim, 100 * 1000, 2 * RS_MS);
  sim_disk_set_current(disk);
  lrt = rs_sim_runtime_new(sim, "log");
}

static void log_teardown(void) {
  rs_runtime_destroy(lrt);
  sim_disk_free(disk);
  teardown();
}

static struct raft_log *open_log(const char *name, bool fsync) {
  struct log_config cfg = {.name = name, .use_fsync = fsync};
  struct raft_log *log;
  char err[256];
  const struct rs_log_ops *ops = log_class_find("sim");
  ck_assert_ptr_nonnull(ops);
  ck_assert_msg(raft_log_open(&log, ops, &cfg, lrt, err, sizeof(err)) == 0, "%s", err);
  return log;
}

static void append(struct raft_log *log, rs_term term, uint32_t v) {
  struct rs_buf *b = rs_buf_new(4);
  memcpy(b->data, &v, 4);
  rs_index idx;
  ck_assert_int_eq(raft_log_append(log, term, RAFT_ENTRY_COMMAND, b, b->data, 4, &idx), 0);
  rs_buf_unref(b);
}

struct durable_wait {
  struct raft_log *log;
  rs_index idx;
};
static bool durable_reached(void *arg) {
  struct durable_wait *w = arg;
  return raft_log_durable_index(w->log) >= w->idx;
}

/* Closing a log from the loop (as a stack would). */
static void close_on_loop(void *arg) { raft_log_close(arg); }
static void close_log(struct raft_log *log) {
  ck_assert_int_eq(rs_runtime_call(lrt, close_on_loop, log), 0);
  rs_sim_run_for(sim, 0);
}

START_TEST(sim_log_survives_clean_close) {
  struct raft_log *log = open_log("A", true);
  ck_assert_int_eq(raft_log_set_term_vote(log, 3, "B"), 0);
  for (uint32_t i = 1; i <= 100; i++)
    append(log, 3, i);
  struct durable_wait w = {log, 100};
  ck_assert(rs_sim_run_until(sim, durable_reached, &w, RS_SEC));
  ck_assert(raft_log_meta_durable(log));
  close_log(log);
  log = open_log("A", true);
  ck_assert_uint_eq(raft_log_last_index(log), 100);
  ck_assert_uint_eq(raft_log_current_term(log), 3);
  ck_assert_str_eq(raft_log_voted_for(log), "B");
  const struct raft_entry *e = raft_log_get(log, 42);
  uint32_t v;
  memcpy(&v, e->data, 4);
  ck_assert_uint_eq(v, 42);
  /* Truncations persist too. */
  ck_assert_int_eq(raft_log_truncate_suffix(log, 61), 0);
  append(log, 4, 999);
  w = (struct durable_wait){log, 61};
  ck_assert(rs_sim_run_until(sim, durable_reached, &w, RS_SEC));
  close_log(log);
  log = open_log("A", true);
  ck_assert_uint_eq(raft_log_last_index(log), 61);
  ck_assert_uint_eq(raft_log_term_at(log, 61), 4);
  ck_assert_uint_eq(raft_log_term_at(log, 60), 3);
  close_log(log);
  /* Another name is another disk. */
  log = open_log("B", true);
  ck_assert_uint_eq(raft_log_last_index(log), 0);
  close_log(log);
}
END_TEST

START_TEST(sim_log_crash_loses_only_unsynced) {
  struct raft_log *log = open_log("A", true);
  for (uint32_t i = 1; i <= 10; i++)
    append(log, 1, i);
  struct durable_wait w = {log, 10};
  ck_assert(rs_sim_run_until(sim, durable_reached, &w, RS_SEC));
  for (uint32_t i = 11; i <= 20; i++)
    append(log, 1, i);
  rs_sim_run_for(sim, 0); /* the batch is submitted, not yet done */
  ck_assert_uint_lt(raft_log_durable_index(log), 20);
  sim_disk_crash(disk, "A");
  close_log(log);
  struct sim_disk_stats st;
  sim_disk_stats(disk, &st);
  ck_assert_uint_eq(st.crashes, 1);
  log = open_log("A", true);
  ck_assert_uint_eq(raft_log_last_index(log), 10); /* synced: kept; in flight: lost */
  close_log(log);
}
END_TEST

/* Without fsync completed batches sit in the page cache: a crash keeps a random prefix, tears
 * an append sometimes, and never invents or reorders anything. */
START_TEST(sim_log_crash_without_fsync) {
  unsigned lost_some = 0, kept_some = 0;
  for (int round = 0; round < 20; round++) {
    char name[16];
    snprintf(name, sizeof(name), "N%d", round);
    struct raft_log *log = open_log(name, false);
    for (uint32_t i = 1; i <= 50; i++) {
      append(log, 1, i);
      if (i % 5 == 0) rs_sim_run_for(sim, 3 * RS_MS); /* batches of 5 complete */
    }
    struct durable_wait w = {log, 50};
    ck_assert(rs_sim_run_until(sim, durable_reached, &w, RS_SEC));
    sim_disk_crash(disk, name);
    close_log(log);
    log = open_log(name, false);
    rs_index last = raft_log_last_index(log);
    lost_some += last < 50;
    kept_some += last > 0;
    for (rs_index i = 1; i <= last; i++) {
      uint32_t v;
      memcpy(&v, raft_log_get(log, i)->data, 4);
      ck_assert_uint_eq(v, i);
    }
    close_log(log);
  }
  ck_assert_uint_gt(lost_some, 5);
  ck_assert_uint_gt(kept_some, 5);
  struct sim_disk_stats st;
  sim_disk_stats(disk, &st);
  ck_assert_uint_gt(st.torn_appends, 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sim_infra");
  TCase *tc = tcase_create("pause");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, pause_delays_timers_and_calls);
  tcase_add_test(tc, step_hook_runs_after_every_step);
  suite_add_tcase(s, tc);
  tc = tcase_create("simnet");
  tcase_add_checked_fixture(tc, net_setup, net_teardown);
  tcase_add_test(tc, simnet_clean_and_one_way_cut);
  tcase_add_test(tc, simnet_drop_dup_delay);
  suite_add_tcase(s, tc);
  tc = tcase_create("sim_log");
  tcase_add_checked_fixture(tc, log_setup, log_teardown);
  tcase_add_test(tc, sim_log_survives_clean_close);
  tcase_add_test(tc, sim_log_crash_loses_only_unsynced);
  tcase_add_test(tc, sim_log_crash_without_fsync);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(suite()); }

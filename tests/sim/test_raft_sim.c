/* Raft scenarios in the deterministic simulation: the paper's Figure 8, a leader cut off from the
 * majority, a node rejoining after a partition (pre-vote), and a restart of every node. The
 * invariants of tests/sim/cluster.h are checked after every step of each. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "tests/lib/testlib.h"
#include "tests/sim/cluster.h"

static struct sim_cluster *c;

static void open_cluster(uint64_t seed, size_t n, const char *raft_attrs) {
  struct sim_options o = {.nodes = n, .fsync = true, .raft = raft_attrs};
  c = sim_cluster_new(seed, &o);
  ck_assert_ptr_nonnull(c);
}

static void close_cluster(void) {
  if (!c) return;
  bool failed = c->failed;
  char why[sizeof(c->failure)];
  memcpy(why, c->failure, sizeof(why));
  sim_cluster_free(c);
  c = NULL;
  ck_assert_msg(!failed, "invariant violated: %s", why);
}

static void teardown(void) {
  if (c) sim_cluster_free(c);
  c = NULL;
}

#define NOFAIL() ck_assert_msg(!c->failed, "invariant violated: %s", c->failure)
/* Runs until cond holds; a timeout or a violation fails the test with the reason. */
#define RUN_UNTIL(cond, arg, timeout)                                                              \
  ck_assert_msg(sim_cluster_run_until(c, (cond), (arg), (timeout)), "%s did not hold%s%s", #cond,  \
                c->failed ? "; invariant violated: " : "", c->failure)

/* --- helpers --------------------------------------------------------------------------------- */

static bool has_leader(void *arg) {
  (void)arg;
  return sim_cluster_leader(c) >= 0;
}

static int wait_leader(void) {
  ck_assert_msg(sim_cluster_run_until(c, has_leader, NULL, 10 * RS_SEC), "no leader%s%s",
                c->failed ? "; invariant violated: " : "", c->failure);
  return sim_cluster_leader(c);
}

struct result {
  bool done;
  int status;
  int64_t value;
};

struct submit_call {
  size_t node;
  enum sim_cmd_kind kind;
  unsigned key;
  uint64_t op;
  int64_t arg;
  struct result *res;
};

static void on_done(void *arg, int status, const void *rsp, size_t len) {
  struct submit_call *k = arg;
  k->res->done = true;
  k->res->status = status;
  if (status == 0 && len == 8) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
      v |= (uint64_t)((const uint8_t *)rsp)[i] << (8 * i);
    k->res->value = (int64_t)v;
  }
  free(k);
}

static void do_submit(void *arg) {
  struct submit_call *k = arg;
  struct sim_node *nd = &c->nodes[k->node];
  uint8_t cmd[SIM_CMD_LEN];
  sim_cmd_encode(cmd, k->kind, k->key, k->op, k->arg);
  struct rs_buf *b = rs_buf_new(SIM_CMD_LEN);
  memcpy(b->data, cmd, SIM_CMD_LEN);
  int rc = nd->up ? raft_submit(nd->raft, b, b->data, SIM_CMD_LEN, on_done, k) : RS_ESHUTDOWN;
  rs_buf_unref(b);
  if (rc) on_done(k, rc, NULL, 0);
}

static uint64_t next_op = 1;

/* Submits on `node` (from its loop); the outcome lands in *res. */
static uint64_t submit(size_t node, enum sim_cmd_kind kind, unsigned key, int64_t arg,
                       struct result *res) {
  struct submit_call *k = malloc(sizeof(*k));
  *k = (struct submit_call){node, kind, key, next_op++, arg, res};
  memset(res, 0, sizeof(*res));
  ck_assert_int_eq(rs_runtime_call(c->nodes[node].rt, do_submit, k), 0);
  return k->op;
}

static bool result_done(void *arg) { return ((struct result *)arg)->done; }

/* A write through the current leader, acknowledged: returns its op id. */
static uint64_t write_acked(unsigned key, int64_t v) {
  for (int attempt = 0; attempt < 20; attempt++) {
    int l = wait_leader();
    struct result res;
    uint64_t op = submit((size_t)l, SIM_CMD_WRITE, key, v, &res);
    RUN_UNTIL(result_done, &res, 10 * RS_SEC);
    NOFAIL();
    if (res.status == 0) {
      sim_cluster_acked(c, op);
      return op;
    }
  }
  ck_abort_msg("no write was acknowledged in 20 attempts");
  return 0;
}

struct caught_up {
  size_t node;
  rs_index idx;
};
static bool node_last_is(void *arg) {
  struct caught_up *w = arg;
  const struct sim_node *nd = &c->nodes[w->node];
  return nd->up && raft_last_index(nd->raft) == w->idx;
}
static bool node_durable(void *arg) {
  struct caught_up *w = arg;
  const struct sim_node *nd = &c->nodes[w->node];
  return nd->up && raft_log_durable_index(raft_get_log(nd->raft)) >= w->idx;
}
static bool all_applied(void *arg) {
  rs_index idx = *(rs_index *)arg;
  for (size_t i = 0; i < c->n; i++)
    if (!c->nodes[i].up || raft_last_applied(c->nodes[i].raft) < idx) return false;
  return true;
}
static bool node_is_leader(void *arg) {
  const struct sim_node *nd = &c->nodes[*(size_t *)arg];
  return nd->up && raft_role(nd->raft) == RS_RAFT_LEADER;
}

/* Only `winner` can win the next election: every other node can send to `winner` alone (so its
 * pre-vote cannot reach a majority), and winner reaches exactly `voters`. */
static void force_winner(size_t winner, const size_t *voters, size_t n_voters) {
  for (size_t a = 0; a < c->n; a++)
    for (size_t b = 0; b < c->n; b++)
      simnet_cut(&c->net, a, b, a != b && b != winner);
  for (size_t b = 0; b < c->n; b++)
    simnet_cut(&c->net, winner, b, true);
  for (size_t k = 0; k < n_voters; k++)
    simnet_cut(&c->net, winner, voters[k], false);
  for (size_t a = 0; a < c->n; a++) {
    bool voter = false;
    for (size_t k = 0; k < n_voters; k++)
      voter |= voters[k] == a;
    if (!voter && a != winner) simnet_cut(&c->net, a, winner, true);
  }
}

/* --- Figure 8 -------------------------------------------------------------------------------- */

/*
 * Raft §5.4.2, Figure 8: a leader may not conclude that an entry from an earlier term is
 * committed once it is stored on a majority; only entries of its own term commit by counting.
 * Built with the nodes S1..S5 (in the order the first election leaves them):
 *  (a) S1 leads term t1; cut off with S2, it appends A at index k, which reaches S2 only;
 *  (b) S1 crashes; S5 wins term t2 with the votes of S3 and S4 and appends its no-op at k,
 *      which reaches nobody; S5 crashes;
 *  (c) S1 restarts and wins term t3 with S2 and S3; it sends A (index k) to S3, whose ack comes
 *      back, but its own no-op (k+1, term t3) reaches S2 only: A is on S1, S2, S3 — a
 *      majority — while nothing of term t3 is;
 *  (d) S1 crashes; S5 restarts and wins term t4 with S3 and S4 (its last term t2 beats their
 *      t1) and overwrites index k with its entry of term t2.
 * Had S1 committed A in (c) by counting, (d) would erase a committed entry: the checks report
 * "committed entries agree" or "leader completeness". Correct: S1's commit index stays below
 * k in (c), and index k ends with S5's entry everywhere.
 */
START_TEST(figure8) {
  open_cluster(8, 5, "resend_interval=\"60ms\" max_append_entries=\"1\" max_inflight=\"1\"");
  int l0 = wait_leader();
  size_t S[6]; /* S[1..5] */
  S[1] = (size_t)l0;
  for (size_t i = 0, k = 2; i < 5; i++)
    if (i != S[1]) S[k++] = i;
  rs_index base = raft_last_index(c->nodes[S[1]].raft);
  RUN_UNTIL(all_applied, &base, 5 * RS_SEC);
  rs_term t1 = raft_current_term(c->nodes[S[1]].raft);
  rs_index k = base + 1;

  /* (a) */
  simnet_isolate(&c->net, S[1], true);
  simnet_cut(&c->net, S[1], S[2], false);
  simnet_cut(&c->net, S[2], S[1], false);
  struct result ra;
  submit(S[1], SIM_CMD_WRITE, 0, 111, &ra);
  struct caught_up w2 = {S[2], k};
  RUN_UNTIL(node_last_is, &w2, 2 * RS_SEC);
  /* A leader writes its own log in parallel with sending: A must be on S1's disk too. */
  struct caught_up d1 = {S[1], k};
  RUN_UNTIL(node_durable, &d1, 2 * RS_SEC);
  ck_assert_uint_eq(raft_log_term_at(raft_get_log(c->nodes[S[2]].raft), k), t1);
  ck_assert_uint_lt(raft_commit_index(c->nodes[S[1]].raft), k);
  sim_node_crash(c, S[1]);
  NOFAIL();

  /* (b) */
  size_t v5[] = {S[3], S[4]};
  force_winner(S[5], v5, 2);
  RUN_UNTIL(node_is_leader, &S[5], 10 * RS_SEC);
  simnet_isolate(&c->net, S[5], true); /* its no-op, already sent, is lost on the way */
  rs_term t2 = raft_current_term(c->nodes[S[5]].raft);
  ck_assert_uint_eq(raft_log_term_at(raft_get_log(c->nodes[S[5]].raft), k), t2);
  sim_cluster_run_for(c, 50 * RS_MS);
  ck_assert_uint_lt(raft_last_index(c->nodes[S[3]].raft), k);
  sim_node_crash(c, S[5]);

  /* (c) */
  size_t v1[] = {S[2], S[3]};
  force_winner(S[1], v1, 2);
  ck_assert_int_eq(sim_node_start(c, S[1]), 0);
  RUN_UNTIL(node_is_leader, &S[1], 10 * RS_SEC);
  rs_term t3 = raft_current_term(c->nodes[S[1]].raft);
  ck_assert_uint_gt(t3, t2);
  struct caught_up w3 = {S[3], k};
  RUN_UNTIL(node_last_is, &w3, 2 * RS_SEC);
  simnet_cut(&c->net, S[1], S[3], true); /* S3's ack of k still reaches S1; k+1 will not */
  sim_cluster_run_for(c, 100 * RS_MS);
  ck_assert_uint_eq(raft_last_index(c->nodes[S[3]].raft), k);
  ck_assert_uint_eq(raft_log_term_at(raft_get_log(c->nodes[S[3]].raft), k), t1);
  ck_assert_uint_eq(raft_last_index(c->nodes[S[2]].raft), k + 1); /* the no-op of t3 */
  /* A is on S1, S2, S3, a majority, but may not count as committed. */
  ck_assert_uint_lt(raft_commit_index(c->nodes[S[1]].raft), k);
  NOFAIL();
  sim_node_crash(c, S[1]);

  /* (d) */
  size_t v5b[] = {S[3], S[4]};
  force_winner(S[5], v5b, 2);
  ck_assert_int_eq(sim_node_start(c, S[5]), 0);
  RUN_UNTIL(node_is_leader, &S[5], 10 * RS_SEC);
  ck_assert_uint_gt(raft_current_term(c->nodes[S[5]].raft), t3);
  /* S5 and its voters exchange everything now. */
  simnet_heal(&c->net);
  simnet_isolate(&c->net, S[2], true);
  struct caught_up w4 = {S[3], raft_last_index(c->nodes[S[5]].raft)};
  RUN_UNTIL(node_last_is, &w4, 5 * RS_SEC);
  sim_cluster_run_for(c, 500 * RS_MS);
  NOFAIL();
  ck_assert_uint_ge(raft_commit_index(c->nodes[S[5]].raft), k);
  ck_assert_uint_eq(raft_log_term_at(raft_get_log(c->nodes[S[3]].raft), k), t2);
  /* Everyone back: S1 and S2 drop A and the no-op of t3, and the cluster agrees. */
  simnet_heal(&c->net);
  ck_assert_int_eq(sim_node_start(c, S[1]), 0);
  rs_index last = raft_last_index(c->nodes[S[5]].raft);
  RUN_UNTIL(all_applied, &last, 10 * RS_SEC);
  for (size_t i = 0; i < 5; i++)
    ck_assert_uint_eq(raft_log_term_at(raft_get_log(c->nodes[i].raft), k), t2);
  close_cluster();
}
END_TEST

/* --- a leader cut off from the majority ------------------------------------------------------ */

START_TEST(leader_cut_off_steps_down) {
  open_cluster(21, 5, NULL);
  size_t old = (size_t)wait_leader();
  rs_term t0 = raft_current_term(c->nodes[old].raft);
  write_acked(0, 1);
  simnet_isolate(&c->net, old, true);
  /* Check-quorum: the old leader steps down within about an election timeout (300 ms max). */
  sim_cluster_run_for(c, 700 * RS_MS);
  ck_assert_int_ne(raft_role(c->nodes[old].raft), RS_RAFT_LEADER);
  int l = sim_cluster_leader(c);
  ck_assert_int_ge(l, 0);
  ck_assert_int_ne(l, (int)old);
  ck_assert_uint_gt(raft_current_term(c->nodes[l].raft), t0);
  /* The new leader commits; a command on the old one fails without being applied. */
  struct result stale;
  submit(old, SIM_CMD_WRITE, 0, 99, &stale);
  uint64_t op = write_acked(0, 2);
  RUN_UNTIL(result_done, &stale, RS_SEC);
  ck_assert_int_ne(stale.status, 0);
  /* Heal: the old leader follows and applies the new leader's entries. */
  simnet_heal(&c->net);
  rs_index last = raft_last_index(c->nodes[l].raft);
  RUN_UNTIL(all_applied, &last, 5 * RS_SEC);
  ck_assert_int_eq(c->nodes[old].reg[0], 2);
  sim_cluster_final_checks(c, &op, 1);
  close_cluster();
}
END_TEST

/* --- a node rejoins after a partition -------------------------------------------------------- */

START_TEST(rejoin_does_not_disrupt_leader) {
  open_cluster(33, 5, NULL);
  size_t l = (size_t)wait_leader();
  write_acked(1, 5);
  size_t f = (l + 1) % 5;
  rs_term t0 = raft_current_term(c->nodes[l].raft);
  simnet_isolate(&c->net, f, true);
  /* Cut off for many election timeouts: pre-vote keeps its term where it was. */
  sim_cluster_run_for(c, 3 * RS_SEC);
  ck_assert_uint_eq(raft_current_term(c->nodes[f].raft), t0);
  write_acked(1, 6);
  simnet_heal(&c->net);
  rs_index last = raft_last_index(c->nodes[l].raft);
  RUN_UNTIL(all_applied, &last, 5 * RS_SEC);
  sim_cluster_run_for(c, RS_SEC);
  /* The leader leads on, in the same term. */
  ck_assert_int_eq(sim_cluster_leader(c), (int)l);
  ck_assert_uint_eq(raft_current_term(c->nodes[l].raft), t0);
  ck_assert_uint_eq(c->elections, 1);
  ck_assert_int_eq(c->nodes[f].reg[1], 6);
  close_cluster();
}
END_TEST

/* --- every node restarts --------------------------------------------------------------------- */

START_TEST(restart_all_keeps_acknowledged_writes) {
  enum { N = 40 };
  open_cluster(44, 3, NULL);
  uint64_t acked[N];
  for (int i = 0; i < N; i++)
    acked[i] = write_acked((unsigned)i % SIM_KEYS, 1000 + i);
  /* Power loss everywhere at once: only what was synced survives, and that is every
   * acknowledged write. */
  for (size_t i = 0; i < 3; i++)
    sim_node_crash(c, i);
  for (size_t i = 0; i < 3; i++)
    ck_assert_int_eq(sim_node_start(c, i), 0);
  int l = wait_leader();
  write_acked(0, 7777); /* commits everything before it */
  rs_index last = raft_last_index(c->nodes[l].raft);
  RUN_UNTIL(all_applied, &last, 5 * RS_SEC);
  sim_cluster_final_checks(c, acked, N);
  NOFAIL();
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(c->nodes[i].reg[0], 7777);
    for (unsigned k = 1; k < SIM_KEYS; k++)
      ck_assert_int_eq(c->nodes[i].reg[k], 1000 + (N - SIM_KEYS) + (int)k);
  }
  close_cluster();
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("raft_sim");
  TCase *tc = tcase_create("scenarios");
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, figure8);
  tcase_add_test(tc, leader_cut_off_steps_down);
  tcase_add_test(tc, rejoin_does_not_disrupt_leader);
  tcase_add_test(tc, restart_all_keeps_acknowledged_writes);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  rs_log_set_level(RS_LOG_OFF);
  return test_run(suite());
}

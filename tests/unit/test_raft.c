/* ELECTION and RAFT on LOOPBACK in the simulation: elections, replication, catch-up, check-quorum,
 * pre-vote, durable votes, overwritten commands, configuration errors, stats. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "protocols/raft/raft.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"

#define MAX_NODES 7
#define MAX_APPLIED 8192

struct applied {
  uint64_t index;
  uint32_t value;
};

struct node {
  char id[8];
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct raft *raft;
  struct applied applied[MAX_APPLIED]; /* commands, in apply order */
  size_t n_applied;
  uint64_t hook_last; /* last index seen by the apply hook */
  uint64_t hook_errors;
  bool up;
};

static struct rs_sim *sim;
static struct node nodes[MAX_NODES];
static size_t n_nodes;
static char members[64];
static const char *extra_raft = "";
static const char *extra_election = "";
static const char *log_class = "memory";
static const char *below = "<LOOPBACK/><DISCARD/>"; /* the stack under ELECTION */

/* ---- the state machine: records commands; the response is the value + 1000000 -------------- */

static int sm_apply(void *arg, uint64_t index, const void *data, size_t len,
                    struct rs_raft_reply *reply) {
  struct node *nd = arg;
  uint32_t v = 0;
  if (len == 4) memcpy(&v, data, 4);
  if (nd->n_applied < MAX_APPLIED) nd->applied[nd->n_applied++] = (struct applied){index, v};
  uint32_t rsp = v + 1000000;
  rs_raft_reply_set(reply, &rsp, 4);
  return 0;
}

static const struct rs_state_machine test_sm = {.apply = sm_apply};

static void apply_hook(void *arg, const struct raft_entry *e) {
  struct node *nd = arg;
  if (e->index != nd->hook_last + 1) nd->hook_errors++;
  nd->hook_last = e->index;
}

/* ---- cluster ------------------------------------------------------------------------------- */

static void open_node(struct node *nd, const char *id) {
  memset(nd, 0, sizeof(*nd));
  snprintf(nd->id, sizeof(nd->id), "%s", id);
  char xml[1024];
  snprintf(xml, sizeof(xml),
           "<config>%s<raft.ELECTION %s/>"
           "<raft.RAFT raft_id=\"%s\" members=\"%s\" log_class=\"%s\" resend_interval=\"200ms\" "
           "%s/></config>",
           below, extra_election, id, members, log_class, extra_raft);
  nd->rt = rs_sim_runtime_new(sim, id);
  struct rs_channel_opts o = {.config_xml = xml, .name = id, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  nd->raft = raft_find(channel_stack(nd->ch));
  ck_assert_ptr_nonnull(nd->raft);
  raft_set_state_machine(nd->raft, &test_sm, nd);
  raft_set_apply_hook(nd->raft, apply_hook, nd);
  ck_assert_int_eq(rs_channel_connect(nd->ch, "raft"), 0);
  nd->up = true;
}

static void close_node(struct node *nd) {
  if (!nd->ch) return;
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
  nd->ch = NULL;
  nd->up = false;
}

static void start_cluster(size_t n) {
  n_nodes = n;
  members[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(members);
    snprintf(members + l, sizeof(members) - l, "%s%c", i ? "," : "", (char)('A' + i));
  }
  for (size_t i = 0; i < n; i++) {
    char id[2] = {(char)('A' + i), 0};
    open_node(&nodes[i], id);
  }
}

static void stop_cluster(void) {
  for (size_t i = 0; i < n_nodes; i++)
    close_node(&nodes[i]);
  n_nodes = 0;
}

static struct rs_protocol *proto_of(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nd->ch)->bottom, name);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void cut(struct node *nd, bool on) { discard_set_all(proto_of(nd, "DISCARD"), on); }

/* ---- stats --------------------------------------------------------------------------------- */

struct stat_query {
  const char *name;
  char value[64];
  bool found;
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_query *q = out->arg;
  if (strcmp(name, q->name)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->value, sizeof(q->value), fmt, ap);
  va_end(ap);
  q->found = true;
}

static const char *stat_str(struct node *nd, const char *proto, const char *name) {
  static struct stat_query q;
  memset(&q, 0, sizeof(q));
  q.name = name;
  struct rs_protocol *p = proto_of(nd, proto);
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.found, "no stat %s.%s", proto, name);
  return q.value;
}

static uint64_t stat(struct node *nd, const char *proto, const char *name) {
  return strtoull(stat_str(nd, proto, name), NULL, 10);
}

/* ---- waiting ------------------------------------------------------------------------------- */

/* Exactly one leader among the nodes that are up and not cut, and all of those agree on it and on
 * the term. Returns its index or -1. */
static long agreed_leader(void) {
  long leader = -1;
  for (size_t i = 0; i < n_nodes; i++) {
    if (!nodes[i].up) continue;
    if (raft_role(nodes[i].raft) == RS_RAFT_LEADER) {
      if (leader >= 0) return -1;
      leader = (long)i;
    }
  }
  if (leader < 0) return -1;
  rs_term t = raft_current_term(nodes[leader].raft);
  for (size_t i = 0; i < n_nodes; i++) {
    if (!nodes[i].up) continue;
    const char *l = raft_leader_id(nodes[i].raft);
    if (!l || strcmp(l, nodes[leader].id) || raft_current_term(nodes[i].raft) != t) return -1;
  }
  return leader;
}

static bool have_leader(void *arg) {
  (void)arg;
  return agreed_leader() >= 0;
}

static long wait_leader(rs_time timeout) {
  ck_assert_msg(rs_sim_run_until(sim, have_leader, NULL, timeout), "no agreed leader");
  return agreed_leader();
}

struct applied_want {
  size_t n;
};

static bool all_applied(void *arg) {
  struct applied_want *w = arg;
  for (size_t i = 0; i < n_nodes; i++)
    if (nodes[i].up && nodes[i].n_applied < w->n) return false;
  return true;
}

static void wait_applied(size_t n, rs_time timeout) {
  struct applied_want w = {n};
  ck_assert_msg(rs_sim_run_until(sim, all_applied, &w, timeout), "not all applied %zu", n);
}

/* ---- submitting ---------------------------------------------------------------------------- */

struct result {
  bool done;
  int status;
  uint32_t rsp;
  size_t rsp_len;
};

static void on_done(void *arg, int status, const void *rsp, size_t len) {
  struct result *res = arg;
  ck_assert_msg(!res->done, "done called twice");
  res->done = true;
  res->status = status;
  res->rsp_len = len;
  if (len == 4) memcpy(&res->rsp, rsp, 4);
}

static int submit(struct node *nd, uint32_t v, struct result *res) {
  struct rs_buf *b = rs_buf_new(4);
  memcpy(b->data, &v, 4);
  int rc = raft_submit(nd->raft, b, b->data, 4, on_done, res);
  rs_buf_unref(b);
  return rc;
}

struct results_want {
  struct result *r;
  size_t n;
};

static bool all_done(void *arg) {
  struct results_want *w = arg;
  for (size_t i = 0; i < w->n; i++)
    if (!w->r[i].done) return false;
  return true;
}

static void setup(void) {
  sim = rs_sim_new(20261123);
  extra_raft = "";
  extra_election = "";
  log_class = "memory";
  below = "<LOOPBACK/><DISCARD/>";
}
static void teardown(void) {
  stop_cluster();
  rs_sim_free(sim);
}

/* ---- elections ----------------------------------------------------------------------------- */

static void elect_n(size_t n) {
  start_cluster(n);
  long l = wait_leader(5 * RS_SEC);
  rs_term t = raft_current_term(nodes[l].raft);
  ck_assert_uint_ge(t, 1);
  /* Stable: the same leader and term a while later, and everyone still agrees. */
  rs_sim_run_for(sim, 3 * RS_SEC);
  ck_assert_int_eq(agreed_leader(), l);
  ck_assert_uint_eq(raft_current_term(nodes[l].raft), t);
  size_t leaders = 0;
  for (size_t i = 0; i < n; i++)
    leaders += raft_role(nodes[i].raft) == RS_RAFT_LEADER;
  ck_assert_uint_eq(leaders, 1);
  /* The new leader's no-op commits everywhere. */
  for (size_t i = 0; i < n; i++) {
    ck_assert_uint_ge(raft_commit_index(nodes[i].raft), 1);
    ck_assert_uint_eq(raft_last_applied(nodes[i].raft), raft_commit_index(nodes[i].raft));
  }
  stop_cluster();
}

START_TEST(one_leader_3_5_7) {
  elect_n(3);
  elect_n(5);
  elect_n(7);
}
END_TEST

START_TEST(election2_alias_and_single_node) {
  start_cluster(1);
  long l = wait_leader(2 * RS_SEC);
  ck_assert_int_eq(l, 0);
  struct result res = {0};
  ck_assert_int_eq(submit(&nodes[0], 7, &res), 0);
  struct results_want w = {&res, 1};
  ck_assert(rs_sim_run_until(sim, all_done, &w, RS_SEC));
  ck_assert_int_eq(res.status, 0);
  ck_assert_uint_eq(res.rsp, 1000007);
  stop_cluster();
  /* raft.ELECTION2 loads the same protocol. */
  const char *xml = "<config><LOOPBACK/><raft.ELECTION2/><raft.RAFT raft_id=\"A\" members=\"A\" "
                    "log_class=\"InMemoryLog\"/></config>";
  struct rs_channel *ch;
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "X");
  struct rs_channel_opts o = {.config_xml = xml, .name = "A", .runtime = rt};
  char err[512];
  ck_assert_msg(rs_channel_open(&ch, &o, err, sizeof(err)) == 0, "%s", err);
  ck_assert_ptr_nonnull(proto_find(channel_stack(ch)->bottom, "ELECTION"));
  rs_channel_close(ch);
  rs_runtime_destroy(rt);
}
END_TEST

/* ---- replication --------------------------------------------------------------------------- */

START_TEST(commands_apply_in_order_everywhere) {
  enum { N = 3000 };
  start_cluster(3);
  long l = wait_leader(5 * RS_SEC);
  static struct result res[N];
  memset(res, 0, sizeof(res));
  /* In bursts of 100 per loop iteration, as many clients would. */
  for (uint32_t i = 0; i < N; i++) {
    ck_assert_int_eq(submit(&nodes[l], i, &res[i]), 0);
    if (i % 100 == 99) rs_sim_run_for(sim, RS_MS);
  }
  struct results_want w = {res, N};
  ck_assert(rs_sim_run_until(sim, all_done, &w, 10 * RS_SEC));
  for (uint32_t i = 0; i < N; i++) {
    ck_assert_int_eq(res[i].status, 0);
    ck_assert_uint_eq(res[i].rsp_len, 4);
    ck_assert_uint_eq(res[i].rsp, i + 1000000);
  }
  wait_applied(N, 5 * RS_SEC);
  for (size_t k = 0; k < 3; k++) {
    struct node *nd = &nodes[k];
    ck_assert_uint_eq(nd->n_applied, N);
    for (uint32_t i = 0; i < N; i++) {
      ck_assert_uint_eq(nd->applied[i].value, i);
      ck_assert_uint_eq(nd->applied[i].index, nodes[l].applied[i].index);
    }
    ck_assert_uint_eq(nd->hook_errors, 0);
    ck_assert_uint_eq(raft_last_applied(nd->raft), raft_last_index(nodes[l].raft));
    ck_assert_uint_eq(raft_commit_index(nd->raft), raft_last_index(nodes[l].raft));
  }
  /* Batched: far fewer AppendEntries than entries. */
  uint64_t sent = stat(&nodes[l], "RAFT", "append_entries_sent");
  uint64_t entries = stat(&nodes[l], "RAFT", "entries_sent");
  ck_assert_uint_ge(entries, 2 * N);
  ck_assert_uint_lt(sent, entries / 20);
  ck_assert_str_eq(stat_str(&nodes[l], "RAFT", "role"), "Leader");
  ck_assert_str_eq(stat_str(&nodes[(l + 1) % 3], "RAFT", "leader"), nodes[l].id);
  ck_assert_uint_eq(stat(&nodes[l], "RAFT", "commit_index"), raft_commit_index(nodes[l].raft));
  ck_assert_uint_eq(stat(&nodes[l], "RAFT", "pending_commands"), 0);
  ck_assert_uint_ge(stat(&nodes[l], "ELECTION", "elections_started"), 1);
}
END_TEST

START_TEST(submit_on_follower_or_without_leader) {
  start_cluster(3);
  struct result res = {0};
  /* Before any election: nobody leads. */
  ck_assert_int_eq(submit(&nodes[0], 1, &res), RS_ENOLEADER);
  long l = wait_leader(5 * RS_SEC);
  struct node *f = &nodes[(l + 1) % 3];
  ck_assert_int_eq(submit(f, 1, &res), RS_ENOTLEADER);
  ck_assert(!res.done);
  ck_assert_str_eq(raft_leader_id(f->raft), nodes[l].id);
}
END_TEST

/* A follower cut off while 2000 entries commit does not raise the cluster's term (pre-vote) and
 * does not disturb the leader. Then the leader goes and the follower comes back: the new leader
 * starts with next_index past its whole log, and the follower's reject hint (its last index)
 * brings it back in one step, so it catches up in few rounds. */
START_TEST(cut_follower_catches_up_with_few_rounds) {
  enum { N = 2000 };
  start_cluster(3);
  long l = wait_leader(5 * RS_SEC);
  rs_term t = raft_current_term(nodes[l].raft);
  struct node *c = &nodes[(l + 2) % 3];
  cut(c, true);
  static struct result res[N];
  memset(res, 0, sizeof(res));
  for (uint32_t i = 0; i < N; i++)
    ck_assert_int_eq(submit(&nodes[l], i, &res[i]), 0);
  struct results_want w = {res, N};
  ck_assert(rs_sim_run_until(sim, all_done, &w, 5 * RS_SEC));
  rs_sim_run_for(sim, 3 * RS_SEC); /* c's election timeouts come and go */
  ck_assert_uint_eq(c->n_applied, 0);
  ck_assert_uint_eq(raft_current_term(c->raft), t);
  ck_assert_uint_ge(stat(c, "ELECTION", "pre_votes_started"), 3);
  ck_assert_uint_eq(stat(c, "ELECTION", "elections_started"), 0);
  c->up = false;
  ck_assert_int_eq(agreed_leader(), l); /* the healthy leader was not disturbed */
  ck_assert_uint_eq(raft_current_term(nodes[l].raft), t);
  uint64_t ae0 = stat(c, "RAFT", "append_entries_received");
  uint64_t rej0 = stat(c, "RAFT", "rejects_sent");
  /* The leader goes, c comes back: only the third node can win (c's log is behind). */
  cut(&nodes[l], true);
  nodes[l].up = false;
  cut(c, false);
  c->up = true;
  long nl = wait_leader(5 * RS_SEC);
  ck_assert_int_eq(nl, (l + 1) % 3);
  wait_applied(N, 5 * RS_SEC);
  for (uint32_t i = 0; i < N; i++)
    ck_assert_uint_eq(c->applied[i].value, i);
  uint64_t rounds = stat(c, "RAFT", "append_entries_received") - ae0;
  uint64_t rejects = stat(c, "RAFT", "rejects_sent") - rej0;
  fprintf(stderr, "catch-up of %d entries: %llu AppendEntries, %llu rejects\n", N,
          (unsigned long long)rounds, (unsigned long long)rejects);
  /* One reject tells the new leader where c's log ends; then 2000 entries in batches of 512
   * (a few more requests may be in flight when the reject arrives). */
  ck_assert_uint_ge(rejects, 1);
  ck_assert_uint_le(rejects, 2);
  ck_assert_uint_le(rounds, N / 512 + 1 + 4);
}
END_TEST

/* The leader cut off from the majority steps down within an election timeout (check-quorum); the
 * others elect a new leader that commits; the command the old leader took while cut off is
 * overwritten and completes with RS_ENOTLEADER; the old leader catches up. */
START_TEST(isolated_leader_steps_down_and_loses_its_entry) {
  start_cluster(3);
  long l = wait_leader(5 * RS_SEC);
  struct node *old = &nodes[l];
  rs_term t = raft_current_term(old->raft);
  struct result orphan = {0};
  cut(old, true);
  rs_time t0 = rs_sim_now(sim);
  ck_assert_int_eq(submit(old, 4242, &orphan), 0);
  /* election_max_interval is 500ms: the quorum check runs at that period. */
  while (raft_role(old->raft) == RS_RAFT_LEADER && rs_sim_now(sim) - t0 < 2 * RS_SEC)
    rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_int_ne(raft_role(old->raft), RS_RAFT_LEADER);
  ck_assert_uint_le(rs_sim_now(sim) - t0, 1100 * RS_MS);
  ck_assert(!orphan.done); /* keyed by (index, term): still waiting as a follower */
  old->up = false;         /* leave it out of the agreement checks while cut off */
  long nl = wait_leader(5 * RS_SEC);
  ck_assert_int_ne(nl, l);
  ck_assert_uint_gt(raft_current_term(nodes[nl].raft), t);
  struct result res[5] = {{0}};
  for (uint32_t i = 0; i < 5; i++)
    ck_assert_int_eq(submit(&nodes[nl], 100 + i, &res[i]), 0);
  struct results_want w = {res, 5};
  ck_assert(rs_sim_run_until(sim, all_done, &w, 2 * RS_SEC));
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(res[i].status, 0);
  cut(old, false);
  old->up = true;
  struct results_want wo = {&orphan, 1};
  ck_assert(rs_sim_run_until(sim, all_done, &wo, 5 * RS_SEC));
  ck_assert_int_eq(orphan.status, RS_ENOTLEADER);
  wait_applied(5, 5 * RS_SEC);
  for (size_t i = 0; i < 3; i++) {
    ck_assert_uint_eq(nodes[i].n_applied, 5);
    for (uint32_t k = 0; k < 5; k++)
      ck_assert_uint_eq(nodes[i].applied[k].value, 100 + k); /* 4242 was never applied */
  }
  ck_assert_uint_ge(stat(old, "RAFT", "step_downs"), 1);
  ck_assert_uint_ge(stat(old, "ELECTION", "quorum_losses"), 1);
}
END_TEST

/* A node restarted with a new address (and here an empty memory log) is found again: the leader
 * learns its new address from its answers and brings it up to date. */
START_TEST(restarted_node_new_address_catches_up) {
  start_cluster(3);
  long l = wait_leader(5 * RS_SEC);
  struct result res[10] = {{0}};
  for (uint32_t i = 0; i < 10; i++)
    ck_assert_int_eq(submit(&nodes[l], i, &res[i]), 0);
  wait_applied(10, 2 * RS_SEC);
  size_t k = (size_t)(l + 1) % 3;
  close_node(&nodes[k]);
  rs_sim_run_for(sim, 200 * RS_MS);
  char id[2] = {(char)('A' + k), 0};
  open_node(&nodes[k], id);
  wait_applied(10, 5 * RS_SEC);
  for (uint32_t i = 0; i < 10; i++)
    ck_assert_uint_eq(nodes[k].applied[i].value, i);
}
END_TEST

/* With the group stack below (GMS, NAKACK2, UNICAST3): replication works, and when the leader
 * leaves, the view without it starts the election early (a hint), which Raft's votes decide. */
START_TEST(over_the_group_stack_a_view_hastens_the_election) {
  below = "<LOOPBACK/><DISCARD/><PING/><pbcast.NAKACK2 xmit_interval=\"200ms\"/>"
          "<UNICAST3 xmit_interval=\"200ms\"/><pbcast.STABLE/><raft.NO_DUPES/>"
          "<pbcast.GMS join_timeout=\"1s\"/>";
  extra_election = "election_min_interval=\"1s\" election_max_interval=\"2s\" "
                   "heartbeat_interval=\"100ms\"";
  start_cluster(3);
  long l = wait_leader(10 * RS_SEC);
  static struct result res[500];
  memset(res, 0, sizeof(res));
  for (uint32_t i = 0; i < 500; i++)
    ck_assert_int_eq(submit(&nodes[l], i, &res[i]), 0);
  struct results_want w = {res, 500};
  ck_assert(rs_sim_run_until(sim, all_done, &w, 5 * RS_SEC));
  wait_applied(500, 5 * RS_SEC);
  for (size_t k = 0; k < 3; k++)
    for (uint32_t i = 0; i < 500; i++)
      ck_assert_uint_eq(nodes[k].applied[i].value, i);
  rs_term t = raft_current_term(nodes[l].raft);
  close_node(&nodes[l]); /* leaves: GMS installs a view without it */
  rs_time t0 = rs_sim_now(sim);
  long nl = wait_leader(10 * RS_SEC);
  /* Without the view, the followers would wait for their 1-2 s election timeouts. */
  ck_assert_uint_lt(rs_sim_now(sim) - t0, 900 * RS_MS);
  ck_assert_uint_gt(raft_current_term(nodes[nl].raft), t);
  ck_assert_uint_ge(stat(&nodes[(l + 1) % 3], "ELECTION", "view_triggers") +
                        stat(&nodes[(l + 2) % 3], "ELECTION", "view_triggers"),
                    1);
  struct result r2 = {0};
  ck_assert_int_eq(submit(&nodes[nl], 9999, &r2), 0);
  struct results_want w2 = {&r2, 1};
  ck_assert(rs_sim_run_until(sim, all_done, &w2, 2 * RS_SEC));
  ck_assert_int_eq(r2.status, 0);
}
END_TEST

/* ---- durable votes ------------------------------------------------------------------------- */

/* A log class over "memory" that completes every batch 20 ms late and records, per node, when a
 * vote became durable. */
struct slow_store {
  struct rs_log_store *inner;
  struct rs_runtime *rt;
  char name[16];
  struct rs_timer timer;
  log_done_fn done;
  void *arg;
  int status;
  char vote[16];
  bool has_vote;
};

static rs_time vote_durable_at[MAX_NODES];

static void slow_fire(struct rs_timer *t) {
  struct slow_store *s = (struct slow_store *)((char *)t - offsetof(struct slow_store, timer));
  if (s->has_vote && s->vote[0] && s->name[0] >= 'A' && s->name[0] < 'A' + MAX_NODES &&
      strcmp(s->vote, s->name) && !vote_durable_at[s->name[0] - 'A'])
    vote_durable_at[s->name[0] - 'A'] = rs_now(s->rt);
  log_done_fn done = s->done;
  s->done = NULL;
  if (done) done(s->arg, s->status);
}

static void slow_inner_done(void *arg, int status) {
  struct slow_store *s = arg;
  s->status = status;
  rs_timer_start(&s->timer, 20 * RS_MS, 0);
}

static int slow_open(struct rs_log_store **out, const struct log_config *cfg, struct rs_runtime *rt,
                     struct log_loaded *loaded, char *err, size_t errlen) {
  struct slow_store *s = calloc(1, sizeof(*s));
  int rc = log_memory_ops.open(&s->inner, cfg, rt, loaded, err, errlen);
  if (rc) {
    free(s);
    return rc;
  }
  s->rt = rt;
  snprintf(s->name, sizeof(s->name), "%s", cfg->name);
  rs_timer_init(&s->timer, rt, slow_fire);
  *out = (struct rs_log_store *)s;
  return 0;
}

static void slow_submit(struct rs_log_store *store, const struct log_op *ops, size_t n, bool sync,
                        log_done_fn done, void *arg) {
  struct slow_store *s = (struct slow_store *)store;
  s->has_vote = false;
  for (size_t i = 0; i < n; i++)
    if (ops[i].type == LOG_OP_META) {
      snprintf(s->vote, sizeof(s->vote), "%s", ops[i].u.meta.voted_for);
      s->has_vote = true;
    }
  s->done = done;
  s->arg = arg;
  log_memory_ops.submit(s->inner, ops, n, sync, slow_inner_done, s);
}

static void slow_close(struct rs_log_store *store) {
  struct slow_store *s = (struct slow_store *)store;
  log_memory_ops.close(s->inner);
  rs_timer_stop(&s->timer);
  log_done_fn done = s->done;
  s->done = NULL;
  if (done) done(s->arg, s->status);
  free(s);
}

static const struct rs_log_ops slow_ops = {
    .name = "slowmem", .open = slow_open, .submit = slow_submit, .close = slow_close};

static rs_time leader_at;
static void on_role(void *arg, enum rs_raft_role role, rs_term term, const char *leader) {
  (void)arg;
  (void)term;
  (void)leader;
  if (role == RS_RAFT_LEADER && !leader_at) leader_at = rs_sim_now(sim);
}

START_TEST(votes_are_answered_only_once_durable) {
  static bool registered;
  if (!registered) log_class_register(&slow_ops);
  registered = true;
  memset(vote_durable_at, 0, sizeof(vote_durable_at));
  leader_at = 0;
  log_class = "slowmem";
  start_cluster(3);
  for (size_t i = 0; i < 3; i++)
    raft_add_role_listener(nodes[i].raft, on_role, NULL);
  long l = wait_leader(5 * RS_SEC);
  ck_assert_uint_gt(leader_at, 0);
  /* The leader counted a vote that was on a voter's disk: the earliest durable vote of another
   * node precedes its election (every batch takes 20 ms to become durable). */
  rs_time first = 0;
  for (size_t i = 0; i < 3; i++)
    if ((long)i != l && vote_durable_at[i] && (!first || vote_durable_at[i] < first))
      first = vote_durable_at[i];
  ck_assert_uint_gt(first, 0);
  ck_assert_uint_le(first, leader_at);
  ck_assert_uint_ge(stat(&nodes[(l + 1) % 3], "ELECTION", "votes_granted") +
                        stat(&nodes[(l + 2) % 3], "ELECTION", "votes_granted"),
                    1);
  /* And replication still works with slow durability. */
  struct result res = {0};
  ck_assert_int_eq(submit(&nodes[l], 5, &res), 0);
  struct results_want w = {&res, 1};
  ck_assert(rs_sim_run_until(sim, all_done, &w, RS_SEC));
  ck_assert_int_eq(res.status, 0);
}
END_TEST

/* ---- configuration errors ------------------------------------------------------------------ */

static int try_connect(const char *xml, char *err, size_t errlen) {
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "cfg");
  struct rs_channel *ch;
  struct rs_channel_opts o = {.config_xml = xml, .name = "D", .runtime = rt};
  int rc = rs_channel_open(&ch, &o, err, errlen);
  if (rc == 0) {
    rc = rs_channel_connect(ch, "raft");
    snprintf(err, errlen, "%s", rs_channel_last_error(ch));
    rs_channel_close(ch);
  }
  rs_runtime_destroy(rt);
  return rc;
}

START_TEST(config_errors_say_what_is_wrong) {
  char err[1024];
  int rc = try_connect("<config><LOOPBACK/><raft.ELECTION/><raft.RAFT raft_id=\"D\" "
                       "members=\"A,B,C\" log_class=\"memory\"/></config>",
                       err, sizeof(err));
  ck_assert_int_eq(rc, RS_ECONFIG);
  ck_assert_msg(strstr(err, "raft_id 'D' is not in members [A, B, C]"), "%s", err);
  rc = try_connect("<config><LOOPBACK/><raft.ELECTION/><raft.RAFT raft_id=\"A\" "
                   "members=\"A,B,C\" log_class=\"memroy\"/></config>",
                   err, sizeof(err));
  ck_assert_int_eq(rc, RS_ECONFIG);
  ck_assert_msg(strstr(err, "unknown log_class 'memroy' (did you mean 'memory'?)"), "%s", err);
  rc = try_connect("<config><LOOPBACK/><raft.RAFT raft_id=\"A\" members=\"A\" "
                   "log_class=\"memory\"/></config>",
                   err, sizeof(err));
  ck_assert_int_eq(rc, RS_ECONFIG);
  ck_assert_msg(strstr(err, "ELECTION"), "%s", err);
  rc = try_connect("<config><LOOPBACK/><raft.ELECTION election_min_interval=\"500ms\" "
                   "election_max_interval=\"100ms\"/><raft.RAFT raft_id=\"A\" members=\"A\" "
                   "log_class=\"memory\"/></config>",
                   err, sizeof(err));
  ck_assert_int_eq(rc, RS_ECONFIG);
  ck_assert_msg(strstr(err, "election_min_interval"), "%s", err);
  /* jgroups-raft attributes load. */
  rc = try_connect(
      "<config><LOOPBACK/><raft.ELECTION vote_timeout=\"600\"/><raft.RAFT "
      "raft_id=\"D\" members=\"D\" log_class=\"org.jgroups.protocols.raft.InMemoryLog\" "
      "max_log_cache_size=\"1024\" dynamic_view_changes=\"true\"/></config>",
      err, sizeof(err));
  ck_assert_msg(rc == 0, "%s", err);
}
END_TEST

static Suite *raft_suite(void) {
  Suite *s = suite_create("raft");
  TCase *tc = tcase_create("election");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, one_leader_3_5_7);
  tcase_add_test(tc, election2_alias_and_single_node);
  tcase_add_test(tc, votes_are_answered_only_once_durable);
  suite_add_tcase(s, tc);
  tc = tcase_create("replication");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, commands_apply_in_order_everywhere);
  tcase_add_test(tc, submit_on_follower_or_without_leader);
  tcase_add_test(tc, cut_follower_catches_up_with_few_rounds);
  tcase_add_test(tc, isolated_leader_steps_down_and_loses_its_entry);
  tcase_add_test(tc, restarted_node_new_address_catches_up);
  tcase_add_test(tc, over_the_group_stack_a_view_hastens_the_election);
  suite_add_tcase(s, tc);
  tc = tcase_create("configuration");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, config_errors_say_what_is_wrong);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(raft_suite()); }

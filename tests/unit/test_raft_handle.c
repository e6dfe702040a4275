/* The RaftHandle and REDIRECT over LOOPBACK + ELECTION + RAFT (memory log) in the simulation:
 * set on leader and follower, futures, timeouts, no leader, leader changes, close, bad input. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "protocols/raft/raft.h"
#include "protocols/raft/redirect.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "stack/view.h"
#include "tests/lib/testlib.h"

#define MAX_NODES 5
#define MAX_APPLIED 256
#define MAX_EVENTS 64
#define CMD_MAX 64

struct applied {
  uint64_t index;
  char cmd[CMD_MAX];
};

struct role_event {
  enum rs_raft_role role;
  uint64_t term;
  char leader[32];
};

struct node {
  char name[8];
  struct rs_runtime *rt;
  struct rs_channel *ch;
  struct rs_raft *h;
  struct applied applied[MAX_APPLIED];
  size_t n_applied;
  struct role_event events[MAX_EVENTS];
  size_t n_events;
  size_t sm_role_calls; /* the state machine's own role_changed */
  int deadlk_rc;        /* what rs_raft_set returned inside apply */
};

static struct rs_sim *sim;
static struct node nodes[MAX_NODES];
static size_t n_nodes;

/* --- the state machine: records every command; the response names the node and the index --- */

static int sm_apply(void *arg, uint64_t index, const void *data, size_t len,
                    struct rs_raft_reply *reply) {
  struct node *nd = arg;
  struct applied *a = &nd->applied[nd->n_applied < MAX_APPLIED ? nd->n_applied++ : 0];
  a->index = index;
  snprintf(a->cmd, sizeof(a->cmd), "%.*s", (int)(len < CMD_MAX - 1 ? len : CMD_MAX - 1),
           (const char *)data);
  if (!strcmp(a->cmd, "set-from-apply")) nd->deadlk_rc = rs_raft_set(nd->h, "x", 1, NULL, 1000);
  char rsp[128];
  int n = snprintf(rsp, sizeof(rsp), "%s:%llu:%s", nd->name, (unsigned long long)index, a->cmd);
  rs_raft_reply_set(reply, rsp, (size_t)n);
  return strncmp(a->cmd, "fail", 4) ? 0 : 42;
}

static void sm_role(void *arg, enum rs_raft_role role, uint64_t term, const char *leader) {
  (void)role, (void)term, (void)leader;
  ((struct node *)arg)->sm_role_calls++;
}

static const struct rs_state_machine sm = {.apply = sm_apply, .role_changed = sm_role};

static void on_role(void *arg, enum rs_raft_role role, uint64_t term, const char *leader) {
  struct node *nd = arg;
  if (nd->n_events == MAX_EVENTS) return;
  struct role_event *e = &nd->events[nd->n_events++];
  e->role = role;
  e->term = term;
  snprintf(e->leader, sizeof(e->leader), "%s", leader ? leader : "");
}

/* Times a command was applied on a node. */
static size_t count_applied(const struct node *nd, const char *cmd) {
  size_t k = 0;
  for (size_t i = 0; i < nd->n_applied; i++)
    k += !strcmp(nd->applied[i].cmd, cmd);
  return k;
}

/* --- the cluster -------------------------------------------------------------------------- */

#define XML                                                                                        \
  "<config><LOOPBACK/><DISCARD/>"                                                                  \
  "<raft.ELECTION election_min_interval=\"100ms\" election_max_interval=\"200ms\" "                \
  "heartbeat_interval=\"30ms\"/>"                                                                  \
  "<raft.RAFT raft_id=\"%s\" members=\"%s\" log_class=\"memory\"/>%s</config>"
#define REDIRECT_XML "<raft.REDIRECT leader_change_timeout=\"500ms\"/>"

static void open_node(struct node *nd, const char *name, const char *members, bool redirect,
                      bool connect) {
  memset(nd, 0, sizeof(*nd));
  snprintf(nd->name, sizeof(nd->name), "%s", name);
  char xml[1024], err[512];
  snprintf(xml, sizeof(xml), XML, name, members, redirect ? REDIRECT_XML : "");
  nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  ck_assert_int_eq(rs_raft_open(&nd->h, nd->ch, &sm, nd), 0);
  ck_assert_int_ge(rs_raft_add_role_listener(nd->h, on_role, nd), 0);
  if (connect) ck_assert_int_eq(rs_channel_connect(nd->ch, "raft"), 0);
}

static void close_node(struct node *nd) {
  if (nd->h) rs_raft_close(nd->h);
  nd->h = NULL;
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
}

static void cluster(size_t n, bool redirect) {
  static const char *names[] = {"A", "B", "C", "D", "E"};
  char members[64] = "";
  for (size_t i = 0; i < n; i++)
    snprintf(members + strlen(members), sizeof(members) - strlen(members), "%s%s", i ? "," : "",
             names[i]);
  n_nodes = n;
  for (size_t i = 0; i < n; i++)
    open_node(&nodes[i], names[i], members, redirect, true);
}

static void close_cluster(void) {
  for (size_t i = 0; i < n_nodes; i++)
    close_node(&nodes[i]);
  n_nodes = 0;
}

static struct raft *raft_of(struct node *nd) { return raft_find(channel_stack(nd->ch)); }

static struct rs_protocol *proto_of(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nd->ch)->bottom, name);
  ck_assert_ptr_nonnull(p);
  return p;
}

/* Read on the (single) simulation thread directly: conditions must not step the world. */
static bool has_leader_everywhere(void *arg) {
  (void)arg;
  const char *first = NULL;
  size_t leaders = 0;
  for (size_t i = 0; i < n_nodes; i++) {
    struct raft *r = raft_of(&nodes[i]);
    const char *l = raft_leader_id(r);
    if (!l || (first && strcmp(first, l))) return false;
    first = l;
    leaders += raft_role(r) == RS_RAFT_LEADER;
  }
  return leaders == 1;
}

static struct node *wait_leader(void) {
  ck_assert_msg(rs_sim_run_until(sim, has_leader_everywhere, NULL, 5 * RS_SEC), "no leader");
  for (size_t i = 0; i < n_nodes; i++)
    if (raft_role(raft_of(&nodes[i])) == RS_RAFT_LEADER) return &nodes[i];
  return NULL;
}

static struct node *a_follower(const struct node *leader, size_t skip) {
  for (size_t i = 0; i < n_nodes; i++)
    if (&nodes[i] != leader && skip-- == 0) return &nodes[i];
  return NULL;
}

struct applied_everywhere {
  const char *cmd;
  size_t times;
};

static bool applied_everywhere(void *arg) {
  struct applied_everywhere *a = arg;
  for (size_t i = 0; i < n_nodes; i++)
    if (count_applied(&nodes[i], a->cmd) < a->times) return false;
  return true;
}

static void wait_applied(const char *cmd) {
  struct applied_everywhere a = {cmd, 1};
  ck_assert_msg(rs_sim_run_until(sim, applied_everywhere, &a, 5 * RS_SEC), "%s not applied", cmd);
}

/* --- stats -------------------------------------------------------------------------------- */

struct stat_query {
  const char *name;
  uint64_t v;
  bool found;
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_query *q = out->arg;
  if (strcmp(name, q->name)) return;
  char buf[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  q->v = strtoull(buf, NULL, 10);
  q->found = true;
}

static uint64_t rd_stat(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_of(nd, "REDIRECT");
  struct stat_query q = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.found, "no stat %s", name);
  return q.v;
}

/* RS_TEST_SEED=N runs the simulation from another seed (every test must pass from any). */
static void setup(void) {
  const char *seed = getenv("RS_TEST_SEED");
  sim = rs_sim_new(seed ? strtoull(seed, NULL, 10) : 20261123);
}
static void teardown(void) { rs_sim_free(sim); }

/* --- set on the leader and on a follower ---------------------------------------------------- */

START_TEST(set_on_leader_and_follower) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  struct rs_raft_rsp rsp;
  ck_assert_int_eq(rs_raft_set(l->h, "one", 3, &rsp, 2000), 0);
  uint64_t idx = rs_raft_last_applied(l->h);
  char want[64];
  int n = snprintf(want, sizeof(want), "%s:%llu:one", l->name, (unsigned long long)idx);
  ck_assert_uint_eq(rsp.len, (size_t)n);
  ck_assert_mem_eq(rsp.data, want, rsp.len);
  free(rsp.data);

  /* On a follower the command goes to the leader; the response is the leader's apply. */
  ck_assert_int_eq(rs_raft_set(f->h, "two", 3, &rsp, 2000), 0);
  n = snprintf(want, sizeof(want), "%s:%llu:two", l->name, (unsigned long long)(idx + 1));
  ck_assert_uint_eq(rsp.len, (size_t)n);
  ck_assert_mem_eq(rsp.data, want, rsp.len);
  free(rsp.data);
  ck_assert_uint_eq(rd_stat(f, "forwarded"), 1);
  ck_assert_uint_eq(rd_stat(f, "responses_received"), 1);
  ck_assert_uint_eq(rd_stat(l, "served"), 1);

  /* The state machine's status reaches the caller; the command still counts as applied. */
  ck_assert_int_eq(rs_raft_set(f->h, "fail-me", 7, NULL, 2000), 42);
  wait_applied("fail-me");
  /* Every node applied each command once, at the same index. */
  wait_applied("two");
  for (size_t i = 0; i < n_nodes; i++) {
    ck_assert_uint_eq(count_applied(&nodes[i], "one"), 1);
    ck_assert_uint_eq(count_applied(&nodes[i], "two"), 1);
    ck_assert_uint_eq(count_applied(&nodes[i], "fail-me"), 1);
    ck_assert_uint_eq(nodes[i].n_applied, 3);
    ck_assert_uint_eq(nodes[i].applied[1].index, idx + 1);
  }
  /* An empty command is a command. */
  ck_assert_int_eq(rs_raft_set(f->h, NULL, 0, &rsp, 2000), 0);
  n = snprintf(want, sizeof(want), "%s:%llu:", l->name, (unsigned long long)(idx + 3));
  ck_assert_mem_eq(rsp.data, want, (size_t)n);
  free(rsp.data);
  close_cluster();
}
END_TEST

/* --- futures --------------------------------------------------------------------------------- */

struct cb_log {
  int order[32];
  int status[32];
  char rsp[32][64];
  size_t n;
};

struct cb_arg {
  struct cb_log *log;
  int k;
};

static void on_done_cb(void *arg, int status, const void *data, size_t len) {
  struct cb_arg *a = arg;
  struct cb_log *lg = a->log;
  lg->order[lg->n] = a->k;
  lg->status[lg->n] = status;
  snprintf(lg->rsp[lg->n], sizeof(lg->rsp[0]), "%.*s", (int)len, (const char *)data);
  lg->n++;
}

static bool futures_done(void *arg) {
  struct rs_raft_future **f = arg;
  for (; *f; f++)
    if (!rs_raft_future_done(*f)) return false;
  return true;
}

START_TEST(async_callbacks_in_order) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 1);
  enum { N = 10 };
  struct rs_raft_future *fut[N + 1] = {0};
  struct cb_log lg = {0};
  struct cb_arg args[N];
  for (int k = 0; k < N; k++) {
    char cmd[16];
    int n = snprintf(cmd, sizeof(cmd), "a%d", k);
    ck_assert_int_eq(rs_raft_set_async(f->h, cmd, (size_t)n, &fut[k]), 0);
    args[k] = (struct cb_arg){&lg, k};
    ck_assert_int_eq(rs_raft_future_on_complete(fut[k], on_done_cb, &args[k]), 0);
    ck_assert_int_eq(rs_raft_future_on_complete(fut[k], on_done_cb, &args[k]), RS_EEXIST);
  }
  ck_assert(!rs_raft_future_done(fut[0]));
  ck_assert_msg(rs_sim_run_until(sim, futures_done, fut, 5 * RS_SEC), "futures not done");
  ck_assert_uint_eq(lg.n, N);
  uint64_t first = 0;
  for (int k = 0; k < N; k++) {
    ck_assert_int_eq(lg.order[k], k); /* in the order they were submitted */
    ck_assert_int_eq(lg.status[k], 0);
    struct rs_raft_rsp rsp;
    ck_assert_int_eq(rs_raft_future_wait(fut[k], &rsp), 0);
    char want[64];
    unsigned long long idx = 0;
    ck_assert_int_eq(sscanf(lg.rsp[k], "%*[^:]:%llu:", &idx), 1);
    if (k == 0) first = idx;
    ck_assert_uint_eq(idx, first + (uint64_t)k); /* consecutive indexes */
    int n = snprintf(want, sizeof(want), "%s:%llu:a%d", l->name, idx, k);
    ck_assert_uint_eq(rsp.len, (size_t)n);
    ck_assert_mem_eq(rsp.data, want, rsp.len);
    ck_assert_str_eq(lg.rsp[k], want);
    free(rsp.data);
    /* The response moved out: a second wait has the status and no bytes. */
    ck_assert_int_eq(rs_raft_future_wait(fut[k], &rsp), 0);
    ck_assert_ptr_null(rsp.data);
  }
  /* A callback registered on a completed future runs at once, in the caller. */
  struct rs_raft_future *g;
  ck_assert_int_eq(rs_raft_set_async(l->h, "late-cb", 7, &g), 0);
  ck_assert_int_eq(rs_raft_future_wait_for(g, 2000, NULL), 0);
  struct cb_log lg2 = {0};
  struct cb_arg a2 = {&lg2, 7};
  ck_assert_int_eq(rs_raft_future_on_complete(g, on_done_cb, &a2), 0);
  ck_assert_uint_eq(lg2.n, 1);
  ck_assert_int_eq(lg2.order[0], 7);
  ck_assert(strstr(lg2.rsp[0], ":late-cb") != NULL);
  rs_raft_future_free(g);
  for (int k = 0; k < N; k++)
    rs_raft_future_free(fut[k]);
  close_cluster();
}
END_TEST

START_TEST(wait_for_timeout_then_completion) {
  cluster(3, true);
  struct node *l = wait_leader();
  /* Cut off for less than an election timeout: the entry is appended but cannot commit. */
  discard_set_all(proto_of(l, "DISCARD"), true);
  struct rs_raft_future *f;
  ck_assert_int_eq(rs_raft_set_async(l->h, "slow", 4, &f), 0);
  rs_time t0 = rs_sim_now(sim);
  struct rs_raft_rsp rsp = {(void *)1, 1};
  ck_assert_int_eq(rs_raft_future_wait_for(f, 40, &rsp), RS_ETIMEDOUT);
  ck_assert_ptr_null(rsp.data);
  ck_assert_uint_ge(rs_sim_now(sim) - t0, 40 * RS_MS);
  ck_assert(!rs_raft_future_done(f));
  ck_assert_uint_eq(count_applied(l, "slow"), 0);
  /* rs_raft_set's timeout: the outcome arriving later lands in the freed future. */
  ck_assert_int_eq(rs_raft_set(l->h, "slow2", 5, &rsp, 20), RS_ETIMEDOUT);
  ck_assert_ptr_null(rsp.data);
  discard_set_all(proto_of(l, "DISCARD"), false);
  ck_assert_int_eq(rs_raft_future_wait_for(f, 2000, &rsp), 0);
  ck_assert(rs_raft_future_done(f));
  ck_assert(strstr(rsp.data, ":slow") != NULL);
  free(rsp.data);
  rs_raft_future_free(f);
  wait_applied("slow2");
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "slow2"), 1);
  close_cluster();
}
END_TEST

static void never_called(void *arg, int status, const void *data, size_t len) {
  (void)status, (void)data, (void)len;
  (*(int *)arg)++;
}

START_TEST(free_before_completion) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  int calls = 0;
  struct rs_raft_future *a, *b;
  rs_sim_pause(l->rt, 50 * RS_MS); /* (shorter than an election timeout) */
  ck_assert_int_eq(rs_raft_set_async(l->h, "freed-l", 7, &a), 0);
  ck_assert_int_eq(rs_raft_set_async(f->h, "freed-f", 7, &b), 0);
  ck_assert_int_eq(rs_raft_future_on_complete(b, never_called, &calls), 0);
  rs_raft_future_free(a); /* before it even reached the loop */
  rs_sim_run_for(sim, RS_MS);
  ck_assert_uint_eq(rd_stat(f, "forwarded"), 1);
  rs_raft_future_free(b); /* forwarded, not answered yet */
  wait_applied("freed-l");
  wait_applied("freed-f");
  rs_sim_run_for(sim, 200 * RS_MS); /* the answers arrive and are dropped */
  ck_assert_int_eq(calls, 0);
  for (size_t i = 0; i < n_nodes; i++) {
    ck_assert_uint_eq(count_applied(&nodes[i], "freed-l"), 1);
    ck_assert_uint_eq(count_applied(&nodes[i], "freed-f"), 1);
  }
  ck_assert_uint_eq(rd_stat(f, "responses_received"), 1);
  ck_assert_uint_eq(rd_stat(f, "pending_forwarded"), 0);
  rs_raft_future_free(NULL);
  close_cluster();
}
END_TEST

/* --- no leader ----------------------------------------------------------------------------- */

START_TEST(no_leader_fails_at_once) {
  n_nodes = 1;
  open_node(&nodes[0], "A", "A,B,C", true, true);
  rs_sim_run_for(sim, RS_SEC); /* elections come and go; nobody answers */
  ck_assert(!rs_raft_is_leader(nodes[0].h));
  char buf[256] = "x";
  ck_assert(!rs_raft_leader(nodes[0].h, buf, sizeof(buf)));
  ck_assert_str_eq(buf, "");
  rs_time t0 = rs_sim_now(sim);
  struct rs_raft_rsp rsp;
  ck_assert_int_eq(rs_raft_set(nodes[0].h, "x", 1, &rsp, 10000), RS_ENOLEADER);
  ck_assert_ptr_null(rsp.data);
  ck_assert_uint_lt(rs_sim_now(sim) - t0, RS_MS); /* at once, not after the timeout */
  ck_assert_uint_ge(rd_stat(&nodes[0], "no_leader"), 1);
  ck_assert_uint_eq(nodes[0].n_applied, 0);
  close_cluster();
}
END_TEST

/* Without REDIRECT a follower refuses with RS_ENOTLEADER and names the leader. */
START_TEST(no_redirect_follower_says_not_leader) {
  cluster(3, false);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  struct rs_raft_rsp rsp;
  ck_assert_int_eq(rs_raft_set(f->h, "x", 1, &rsp, 1000), RS_ENOTLEADER);
  ck_assert_uint_eq(rsp.len, strlen(l->name));
  ck_assert_mem_eq(rsp.data, l->name, rsp.len);
  free(rsp.data);
  ck_assert_int_eq(rs_raft_set(l->h, "y", 1, NULL, 1000), 0);
  rs_sim_run_for(sim, 100 * RS_MS);
  for (size_t i = 0; i < n_nodes; i++) {
    ck_assert_uint_eq(count_applied(&nodes[i], "x"), 0);
    ck_assert_uint_eq(count_applied(&nodes[i], "y"), 1);
  }
  close_cluster();
}
END_TEST

/* --- leader changes ------------------------------------------------------------------------ */

static bool served_one(void *arg) { return rd_stat(arg, "served") >= 1; }

static bool new_leader_among(void *arg) {
  struct node *old = arg;
  for (size_t i = 0; i < n_nodes; i++)
    if (&nodes[i] != old && raft_role(raft_of(&nodes[i])) == RS_RAFT_LEADER) return true;
  return false;
}

/* The leader appended a forwarded command and was cut off before it replicated it: a new leader
 * takes over, the old one cannot answer, and the follower ends the request with RS_EUNKNOWN
 * after leader_change_timeout. Once the old leader is back, the replaced entry completes there
 * with RS_ENOTLEADER and its late answer is dropped. The command was applied nowhere, and a
 * retry applies it exactly once. */
START_TEST(leader_change_in_flight_is_unknown) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  struct rs_raft_future *fut;
  ck_assert_int_eq(rs_raft_set_async(f->h, "moved", 5, &fut), 0);
  ck_assert(rs_sim_run_until(sim, served_one, l, RS_SEC));
  discard_set_all(proto_of(l, "DISCARD"), true);
  rs_time t_cut = rs_sim_now(sim);
  ck_assert_msg(rs_sim_run_until(sim, new_leader_among, l, 3 * RS_SEC), "no new leader");
  ck_assert(!rs_raft_future_done(fut));
  ck_assert_int_eq(rs_raft_future_wait_for(fut, 3000, NULL), RS_EUNKNOWN);
  ck_assert_uint_ge(rs_sim_now(sim) - t_cut, 500 * RS_MS);
  ck_assert_uint_eq(rd_stat(f, "unknown_leader_change"), 1);
  rs_raft_future_free(fut);
  /* The old leader stepped down (check-quorum) and its listener saw it. */
  ck_assert_int_eq(l->events[l->n_events - 1].role, RS_RAFT_FOLLOWER);
  discard_set_all(proto_of(l, "DISCARD"), false);
  ck_assert(rs_sim_run_until(sim, has_leader_everywhere, NULL, 3 * RS_SEC));
  rs_sim_run_for(sim, 500 * RS_MS);
  ck_assert_uint_eq(rd_stat(f, "late_responses"), 1);
  ck_assert_uint_eq(rd_stat(f, "bad_dropped"), 0);
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "moved"), 0);
  /* The caller retries. */
  ck_assert_int_eq(rs_raft_set(f->h, "moved", 5, NULL, 2000), 0);
  wait_applied("moved");
  rs_sim_run_for(sim, 200 * RS_MS);
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "moved"), 1);
  close_cluster();
}
END_TEST

static bool knows_leader(void *arg) {
  struct node **p = arg; /* {node, leader} */
  const char *l = raft_leader_id(raft_of(p[0]));
  return l && !strcmp(l, p[1]->name) && raft_role(raft_of(p[0])) == RS_RAFT_FOLLOWER;
}

/* A follower that still believes in a leader that stepped down: the old leader refuses with
 * RS_ENOTLEADER and names the new leader; nothing was appended. Five nodes: F (paused) keeps
 * its belief, the old leader L loses its quorum, C, D and E elect N, L learns N. */
START_TEST(stale_leader_answers_not_leader) {
  cluster(5, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  for (size_t i = 0; i < n_nodes; i++)
    if (&nodes[i] != l && &nodes[i] != f) {
      struct rs_addr a = rs_channel_address(nodes[i].ch);
      discard_ignore(proto_of(f, "DISCARD"), &a);
      discard_ignore(proto_of(l, "DISCARD"), &a);
    }
  rs_sim_pause(f->rt, 10 * RS_SEC);
  ck_assert_msg(rs_sim_run_until(sim, new_leader_among, l, 3 * RS_SEC), "no new leader");
  struct node *n = NULL;
  for (size_t i = 0; i < n_nodes; i++)
    if (&nodes[i] != l && raft_role(raft_of(&nodes[i])) == RS_RAFT_LEADER) n = &nodes[i];
  ck_assert_ptr_nonnull(n);
  discard_clear_ignored(proto_of(l, "DISCARD"));
  struct node *pair[2] = {l, n};
  bool known = rs_sim_run_until(sim, knows_leader, pair, 3 * RS_SEC);
  if (!known)
    for (size_t i = 0; i < n_nodes; i++)
      fprintf(stderr, "%s: role %d term %llu leader %s\n", nodes[i].name,
              raft_role(raft_of(&nodes[i])),
              (unsigned long long)raft_current_term(raft_of(&nodes[i])),
              raft_leader_id(raft_of(&nodes[i])) ? raft_leader_id(raft_of(&nodes[i])) : "-");
  ck_assert(known);
  ck_assert_str_eq(raft_leader_id(raft_of(f)), l->name); /* F, paused, still believes in L */
  struct rs_raft_future *fut;
  ck_assert_int_eq(rs_raft_set_async(f->h, "stale", 5, &fut), 0);
  struct rs_raft_rsp rsp;
  ck_assert_int_eq(rs_raft_future_wait_for(fut, 20000, &rsp), RS_ENOTLEADER);
  ck_assert_uint_eq(rsp.len, strlen(n->name));
  ck_assert_mem_eq(rsp.data, n->name, rsp.len);
  free(rsp.data);
  rs_raft_future_free(fut);
  ck_assert_uint_eq(rd_stat(l, "not_leader_answers"), 1);
  discard_clear_ignored(proto_of(f, "DISCARD"));
  rs_sim_run_for(sim, RS_SEC);
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "stale"), 0);
  close_cluster();
}
END_TEST

/* A view without the leader a request went to: RS_EUNKNOWN at once (it may have appended it). */
struct view_delivery {
  struct rs_protocol *to;
  struct rs_view_data *v;
};

static void deliver_view(void *arg) {
  struct view_delivery *d = arg;
  struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = d->v};
  d->to->ops->up_event(d->to, &ev);
}

START_TEST(view_without_leader_is_unknown) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0), *o = a_follower(l, 1);
  rs_sim_pause(l->rt, 60 * RS_MS); /* the request waits at the leader */
  struct rs_raft_future *fut;
  ck_assert_int_eq(rs_raft_set_async(f->h, "viewed", 6, &fut), 0);
  rs_sim_run_for(sim, RS_MS);
  ck_assert_uint_eq(rd_stat(f, "pending_forwarded"), 1);
  /* A view with the leader changes nothing; one without it ends the request. */
  struct rs_addr all[3] = {rs_channel_address(l->ch), rs_channel_address(f->ch),
                           rs_channel_address(o->ch)};
  struct view_delivery d = {proto_of(f, "REDIRECT"), view_new(&all[1], 2, 3, all, NULL)};
  ck_assert_int_eq(rs_runtime_call(f->rt, deliver_view, &d), 0);
  rs_sim_run_for(sim, RS_MS);
  view_unref(d.v);
  ck_assert(!rs_raft_future_done(fut));
  d.v = view_new(&all[1], 3, 2, &all[1], NULL);
  rs_time t0 = rs_sim_now(sim);
  ck_assert_int_eq(rs_runtime_call(f->rt, deliver_view, &d), 0);
  ck_assert_int_eq(rs_raft_future_wait_for(fut, 1000, NULL), RS_EUNKNOWN);
  ck_assert_uint_lt(rs_sim_now(sim) - t0, RS_MS);
  view_unref(d.v);
  rs_raft_future_free(fut);
  ck_assert_uint_eq(rd_stat(f, "unknown_view"), 1);
  /* The leader, back, applies it (it had it) and its answer comes too late. */
  wait_applied("viewed");
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(rd_stat(f, "late_responses"), 1);
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "viewed"), 1);
  close_cluster();
}
END_TEST

/* --- calls from callbacks ------------------------------------------------------------------- */

struct in_cb {
  struct rs_raft *h;
  struct rs_raft_future *pending;
  int set_rc, wait_rc, async_rc;
  struct rs_raft_future *from_cb;
};

static void blocking_from_cb(void *arg, int status, const void *data, size_t len) {
  (void)status, (void)data, (void)len;
  struct in_cb *c = arg;
  c->set_rc = rs_raft_set(c->h, "never", 5, NULL, 1000);
  c->wait_rc = rs_raft_future_wait(c->pending, NULL);
  c->async_rc = rs_raft_set_async(c->h, "from-cb", 7, &c->from_cb);
}

START_TEST(blocking_calls_from_callbacks) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  struct in_cb c = {.h = f->h, .set_rc = 1, .wait_rc = 1, .async_rc = 1};
  struct rs_raft_future *a;
  /* A's callback waits on a later command's future: still pending (callbacks run in order). */
  ck_assert_int_eq(rs_raft_set_async(f->h, "first", 5, &a), 0);
  ck_assert_int_eq(rs_raft_future_on_complete(a, blocking_from_cb, &c), 0);
  ck_assert_int_eq(rs_raft_set_async(f->h, "second", 6, &c.pending), 0);
  ck_assert_int_eq(rs_raft_future_wait(a, NULL), 0);
  ck_assert_int_eq(c.set_rc, RS_EDEADLK);
  ck_assert_int_eq(c.wait_rc, RS_EDEADLK);
  ck_assert_int_eq(c.async_rc, 0);
  ck_assert_int_eq(rs_raft_future_wait_for(c.from_cb, 2000, NULL), 0);
  ck_assert_int_eq(rs_raft_future_wait_for(c.pending, 2000, NULL), 0);
  /* And from the state machine itself. */
  ck_assert_int_eq(rs_raft_set(l->h, "set-from-apply", 14, NULL, 2000), 0);
  ck_assert_int_eq(l->deadlk_rc, RS_EDEADLK);
  wait_applied("from-cb");
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "never"), 0);
  rs_raft_future_free(a);
  rs_raft_future_free(c.pending);
  rs_raft_future_free(c.from_cb);
  close_cluster();
}
END_TEST

/* --- getters and role listeners -------------------------------------------------------------- */

START_TEST(getters_and_role_listeners) {
  cluster(3, true);
  struct node *l = wait_leader();
  rs_sim_run_for(sim, 100 * RS_MS);
  uint64_t term = rs_raft_current_term(l->h);
  ck_assert_uint_ge(term, 1);
  size_t leaders = 0;
  for (size_t i = 0; i < n_nodes; i++) {
    struct node *nd = &nodes[i];
    ck_assert_str_eq(rs_raft_id(nd->h), nd->name);
    char buf[256];
    ck_assert(rs_raft_leader(nd->h, buf, sizeof(buf)));
    ck_assert_str_eq(buf, l->name);
    leaders += rs_raft_is_leader(nd->h);
    ck_assert_int_eq(rs_raft_role(nd->h), nd == l ? RS_RAFT_LEADER : RS_RAFT_FOLLOWER);
    ck_assert_uint_eq(rs_raft_current_term(nd->h), term);
    /* The listener's last word agrees with the getters. */
    ck_assert_uint_ge(nd->n_events, 1);
    struct role_event *e = &nd->events[nd->n_events - 1];
    ck_assert_int_eq(e->role, rs_raft_role(nd->h));
    ck_assert_uint_eq(e->term, term);
    ck_assert_str_eq(e->leader, l->name);
    ck_assert_uint_ge(nd->sm_role_calls, 1); /* the state machine's role_changed too */
  }
  ck_assert_uint_eq(leaders, 1);
  /* The leader went Follower -> Candidate -> Leader (pre-vote raises no term, so the events of
   * its own election are Candidate then Leader, after an initial follower state). */
  ck_assert_uint_ge(l->n_events, 2);
  ck_assert_int_eq(l->events[l->n_events - 2].role, RS_RAFT_CANDIDATE);
  ck_assert_int_eq(l->events[l->n_events - 1].role, RS_RAFT_LEADER);
  ck_assert_int_eq(rs_raft_role(a_follower(l, 0)->h), RS_RAFT_FOLLOWER);
  /* Indexes follow a set. */
  ck_assert_int_eq(rs_raft_set(l->h, "g", 1, NULL, 2000), 0);
  uint64_t applied = rs_raft_last_applied(l->h);
  ck_assert_uint_eq(applied, l->applied[l->n_applied - 1].index);
  ck_assert_uint_ge(rs_raft_commit_index(l->h), applied);
  ck_assert_uint_ge(rs_raft_last_index(l->h), applied);
  ck_assert_uint_gt(rs_raft_log_size(l->h), 0);
  ck_assert_str_eq(rs_raft_role_name(RS_RAFT_CANDIDATE), "Candidate");
  ck_assert_str_eq(rs_raft_role_name(RS_RAFT_LEARNER), "Learner");
  /* A removed listener hears nothing more; the others do. */
  struct node *f = a_follower(l, 0);
  struct node spy = {.n_events = 0};
  int id = rs_raft_add_role_listener(f->h, on_role, &spy);
  ck_assert_int_ge(id, 0);
  rs_raft_remove_role_listener(f->h, id);
  size_t before = f->n_events;
  discard_set_all(proto_of(l, "DISCARD"), true);
  ck_assert(rs_sim_run_until(sim, new_leader_among, l, 3 * RS_SEC));
  ck_assert_uint_gt(f->n_events, before);
  ck_assert_uint_eq(spy.n_events, 0);
  discard_set_all(proto_of(l, "DISCARD"), false);
  close_cluster();
}
END_TEST

/* --- close ----------------------------------------------------------------------------------- */

START_TEST(close_with_pending_requests) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0);
  struct rs_raft_future *on_l, *on_f;
  ck_assert_int_eq(rs_raft_set_async(l->h, "close-l", 7, &on_l), 0);
  ck_assert_int_eq(rs_raft_set_async(f->h, "close-f", 7, &on_f), 0);
  /* The submissions run first (the loop's queue is in order), then close fails them. */
  rs_raft_close(f->h);
  f->h = NULL;
  rs_raft_close(l->h);
  l->h = NULL;
  ck_assert(rs_raft_future_done(on_l));
  ck_assert(rs_raft_future_done(on_f));
  ck_assert_int_eq(rs_raft_future_wait(on_l, NULL), RS_ESHUTDOWN);
  ck_assert_int_eq(rs_raft_future_wait(on_f, NULL), RS_ESHUTDOWN);
  rs_sim_run_for(sim, 500 * RS_MS);
  rs_raft_future_free(on_l); /* after close: fine */
  rs_raft_future_free(on_f);
  /* The channel stays usable without a handle. */
  ck_assert_int_eq(rs_channel_disconnect(f->ch), 0);
  close_cluster();
}
END_TEST

/* A future callback that submits again (a retry) from inside close, which is where close fails
 * what is outstanding: the new submission's call is queued on the loop and runs after close
 * returned. It must end with RS_ESHUTDOWN without touching a freed handle (valgrind / ASan). */
struct resubmit {
  struct rs_raft *h;
  struct rs_raft_future *again;
  int rc, first_status;
};
static void resubmit_cb(void *arg, int status, const void *data, size_t len) {
  (void)data, (void)len;
  struct resubmit *r = arg;
  r->first_status = status;
  r->rc = rs_raft_set_async(r->h, "again", 5, &r->again);
}

START_TEST(close_while_a_callback_resubmits) {
  cluster(3, true);
  struct node *l = wait_leader();
  struct resubmit r = {.h = l->h, .rc = -1, .first_status = -1};
  struct rs_raft_future *f;
  ck_assert_int_eq(rs_raft_set_async(l->h, "first", 5, &f), 0);
  ck_assert_int_eq(rs_raft_future_on_complete(f, resubmit_cb, &r), 0);
  rs_raft_close(l->h);
  l->h = NULL;
  ck_assert_int_eq(r.first_status, RS_ESHUTDOWN);
  rs_sim_run_for(sim, 100 * RS_MS);
  if (r.rc == 0) {
    ck_assert(rs_raft_future_done(r.again));
    ck_assert_int_eq(rs_raft_future_wait(r.again, NULL), RS_ESHUTDOWN);
    rs_raft_future_free(r.again);
  } else {
    ck_assert_int_eq(r.rc, RS_ESHUTDOWN);
  }
  rs_raft_future_free(f);
  /* Nothing was applied: neither command reached the state machine. */
  for (size_t i = 0; i < n_nodes; i++)
    for (size_t k = 0; k < nodes[i].n_applied; k++)
      ck_assert_str_ne(nodes[i].applied[k].cmd, "again");
  close_cluster();
}
END_TEST

START_TEST(disconnect_then_close) {
  cluster(3, true);
  struct node *l = wait_leader();
  discard_set_all(proto_of(l, "DISCARD"), true);
  struct rs_raft_future *a;
  ck_assert_int_eq(rs_raft_set_async(l->h, "dc", 2, &a), 0);
  rs_sim_run_for(sim, RS_MS);
  ck_assert_int_eq(rs_channel_disconnect(l->ch), 0);
  ck_assert_int_eq(rs_raft_future_wait(a, NULL), RS_ESHUTDOWN);
  rs_raft_future_free(a);
  ck_assert_int_eq(rs_raft_set(l->h, "dc2", 3, NULL, 1000), RS_ENOTCONN);
  close_cluster();
}
END_TEST

START_TEST(open_errors) {
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "X");
  struct rs_channel_opts o = {
      .config_xml = "<config><LOOPBACK/></config>", .name = "X", .runtime = rt};
  struct rs_channel *ch;
  ck_assert_int_eq(rs_channel_open(&ch, &o, NULL, 0), 0);
  struct rs_raft *h = (struct rs_raft *)1;
  ck_assert_int_eq(rs_raft_open(&h, ch, &sm, NULL), RS_ECONFIG);
  ck_assert_ptr_null(h);
  struct rs_state_machine bad = {0};
  ck_assert_int_eq(rs_raft_open(&h, ch, &bad, NULL), RS_EINVAL);
  rs_channel_close(ch);
  /* Connected already: the state machine would miss entries. */
  n_nodes = 1;
  open_node(&nodes[0], "A", "A", true, true);
  ck_assert_int_eq(rs_raft_open(&h, nodes[0].ch, &sm, NULL), RS_EISCONN);
  close_cluster();
  rs_runtime_destroy(rt);
}
END_TEST

/* --- bad input ----------------------------------------------------------------------------- */

struct inject {
  struct rs_protocol *from;
  struct rs_addr to;
  uint8_t type;
  uint64_t req_id;
  int32_t status;
  const char *payload;
};

static void inject_on_loop(void *arg) {
  struct inject *in = arg;
  struct rs_msg *m = rs_msg_new_copy(in->payload, strlen(in->payload));
  ck_assert_ptr_nonnull(m);
  /* The header's in-memory layout is REDIRECT's: u64 req_id, i32 status, u8 type. */
  struct {
    uint64_t req_id;
    int32_t status;
    uint8_t type;
  } *h = rs_msg_put_header(m, registry_header_type(REDIRECT_ID));
  h->req_id = in->req_id;
  h->status = in->status;
  h->type = in->type;
  m->dest = in->to;
  proto_down_msg(in->from, m);
}

static void inject(struct node *from, struct node *to, uint8_t type, uint64_t req_id,
                   const char *payload) {
  struct inject in = {
      proto_of(from, "REDIRECT"), rs_channel_address(to->ch), type, req_id, 0, payload};
  ck_assert_int_eq(rs_runtime_call(from->rt, inject_on_loop, &in), 0);
  rs_sim_run_for(sim, 50 * RS_MS);
}

START_TEST(bad_input_dropped_and_counted) {
  cluster(3, true);
  struct node *l = wait_leader(), *f = a_follower(l, 0), *o = a_follower(l, 1);
  /* A response to a request never sent. */
  inject(o, f, 1, 12345, "junk");
  ck_assert_uint_eq(rd_stat(f, "late_responses"), 0);
  ck_assert_uint_eq(rd_stat(f, "bad_dropped"), 1);
  /* A response from a node the request did not go to: the leader is paused, F's first request
   * (id 1) is in flight, O answers it. */
  rs_sim_pause(l->rt, 60 * RS_MS);
  struct rs_raft_future *fut;
  ck_assert_int_eq(rs_raft_set_async(f->h, "real", 4, &fut), 0);
  rs_sim_run_for(sim, RS_MS);
  inject(o, f, 1, 1, "forged");
  ck_assert_uint_eq(rd_stat(f, "wrong_source"), 1);
  ck_assert_uint_eq(rd_stat(f, "bad_dropped"), 2);
  ck_assert(!rs_raft_future_done(fut));
  struct rs_raft_rsp rsp;
  ck_assert_int_eq(rs_raft_future_wait_for(fut, 2000, &rsp), 0);
  ck_assert(strstr(rsp.data, ":real") != NULL);
  free(rsp.data);
  rs_raft_future_free(fut);
  /* A duplicated request is appended once; its answer goes to O, which waits for nothing. */
  inject(o, l, 0, 77, "dup");
  inject(o, l, 0, 77, "dup");
  wait_applied("dup");
  rs_sim_run_for(sim, 200 * RS_MS);
  for (size_t i = 0; i < n_nodes; i++)
    ck_assert_uint_eq(count_applied(&nodes[i], "dup"), 1);
  ck_assert_uint_eq(rd_stat(l, "duplicates_dropped"), 1);
  ck_assert_uint_ge(rd_stat(o, "bad_dropped"), 1); /* O never sent request 77 */
  /* A request to a follower is refused, not appended. */
  inject(o, f, 0, 78, "to-follower");
  ck_assert_uint_eq(rd_stat(f, "not_leader_answers"), 1);
  /* A request id far below the window is answered RS_EAGAIN, not appended. */
  inject(o, l, 0, 100000, "high");
  inject(o, l, 0, 5, "too-old");
  ck_assert_uint_eq(rd_stat(l, "stale_requests"), 1);
  rs_sim_run_for(sim, 200 * RS_MS);
  for (size_t i = 0; i < n_nodes; i++) {
    ck_assert_uint_eq(count_applied(&nodes[i], "to-follower"), 0);
    ck_assert_uint_eq(count_applied(&nodes[i], "too-old"), 0);
  }
  close_cluster();
}
END_TEST

/* The header decoder refuses what it must, and what it accepts encodes back to the same bytes. */
START_TEST(header_codec) {
  const struct rs_header_type *t = registry_header_type(REDIRECT_ID);
  ck_assert_ptr_nonnull(t);
  static const struct {
    uint8_t b[16];
    size_t n;
    bool ok;
  } cases[] = {
      {{0x00, 0x05}, 2, true},       /* REQ id 5 */
      {{0x01, 0x05, 0x21}, 3, true}, /* RSP id 5 status -17 (RS_ENOTLEADER) */
      {{0x01, 0x05, 0x54}, 3, true}, /* RSP id 5 status 42 */
      {{0x02, 0x05}, 2, false},      /* no such type */
      {{0x00, 0x00}, 2, false},      /* id 0 */
      {{0x01, 0x05}, 2, false},      /* RSP without a status */
      {{0x00, 0x85}, 2, false},      /* truncated varint */
      {{0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x10}, 7, false}, /* status beyond int32 */
      {{0x00, 0x80, 0x00}, 3, false},                         /* non-minimal varint */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t h[64] = {0};
    struct rs_reader r;
    reader_init(&r, cases[i].b, cases[i].n);
    t->read(h, &r);
    bool ok = !r.err && reader_remaining(&r) == 0;
    ck_assert_msg(ok == cases[i].ok, "case %zu", i);
    if (!ok) continue;
    uint8_t out[16];
    struct rs_writer w;
    writer_init(&w, out, sizeof(out));
    t->write(h, &w);
    ck_assert_uint_eq(w.len, cases[i].n);
    ck_assert_uint_eq(t->wire_size(h), cases[i].n);
    ck_assert_mem_eq(out, cases[i].b, cases[i].n);
    char text[64];
    ck_assert_int_gt(t->print(h, text, sizeof(text)), 0);
  }
  uint8_t h[64];
  struct rs_reader r;
  reader_init(&r, (const uint8_t[]){0x01, 0x05, 0x21}, 3);
  t->read(h, &r);
  char text[64];
  t->print(h, text, sizeof(text));
  ck_assert_str_eq(text, "RSP req_id=5 status=-17 RS_ENOTLEADER");
}
END_TEST

/* --- real threads ----------------------------------------------------------------------------- */

struct worker {
  struct rs_raft *h;
  int n, ok;
  char tag;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < w->n; i++) {
    char cmd[16];
    int n = snprintf(cmd, sizeof(cmd), "%c%d", w->tag, i);
    struct rs_raft_rsp rsp;
    if (rs_raft_set(w->h, cmd, (size_t)n, &rsp, 5000) == 0 && rsp.len > 0) w->ok++;
    free(rsp.data);
  }
  return NULL;
}

static int real_applied;
static int count_apply(void *arg, uint64_t index, const void *data, size_t len,
                       struct rs_raft_reply *reply) {
  (void)arg, (void)index;
  real_applied++; /* the loop thread only */
  rs_raft_reply_set(reply, data, len);
  return 0;
}

static bool is_leader_cond(void *arg) { return rs_raft_is_leader(arg); }

/* A one-member cluster on the libev runtime: four threads set concurrently; getters hop. */
START_TEST(threads_on_the_libev_runtime) {
  struct rs_channel *ch;
  struct rs_channel_opts o = {
      .config_xml = "<config><LOOPBACK/><raft.ELECTION election_min_interval=\"20ms\" "
                    "election_max_interval=\"40ms\" heartbeat_interval=\"5ms\"/><raft.RAFT "
                    "raft_id=\"solo\" members=\"solo\" "
                    "log_class=\"memory\"/><raft.REDIRECT/></config>",
      .name = "solo"};
  char err[512];
  ck_assert_msg(rs_channel_open(&ch, &o, err, sizeof(err)) == 0, "%s", err);
  struct rs_raft *h;
  static const struct rs_state_machine csm = {.apply = count_apply};
  real_applied = 0;
  ck_assert_int_eq(rs_raft_open(&h, ch, &csm, NULL), 0);
  ck_assert_int_eq(rs_channel_connect(ch, "solo"), 0);
  WAIT_UNTIL(is_leader_cond, h, 5000, "solo leads");
  enum { T = 4, N = 250 };
  struct worker w[T];
  pthread_t th[T];
  uint64_t t0 = test_now_ms();
  for (int i = 0; i < T; i++) {
    w[i] = (struct worker){h, N, 0, (char)('a' + i)};
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  for (int i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  uint64_t t_set = test_now_ms() - t0;
  for (int i = 0; i < T; i++)
    ck_assert_int_eq(w[i].ok, N);
  ck_assert_uint_ge(rs_raft_last_applied(h), T * N);
  /* What a getter costs from another thread (the hop to the loop and back). */
  enum { G = 20000 };
  t0 = test_now_ms();
  uint64_t sum = 0;
  for (int i = 0; i < G; i++)
    sum += rs_raft_commit_index(h);
  uint64_t t_get = test_now_ms() - t0;
  ck_assert_uint_gt(sum, 0);
  fprintf(stderr,
          "threads_on_the_libev_runtime: %d sets from %d threads in %llu ms; "
          "%d getter hops in %llu ms (%.2f us each)\n",
          T * N, T, (unsigned long long)t_set, G, (unsigned long long)t_get,
          (double)t_get * 1000.0 / G);
  rs_raft_close(h);
  ck_assert_int_eq(real_applied, T * N);
  rs_channel_close(ch);
}
END_TEST

int main(void) {
  Suite *s = suite_create("raft_handle");
  TCase *tc = tcase_create("handle");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, set_on_leader_and_follower);
  tcase_add_test(tc, async_callbacks_in_order);
  tcase_add_test(tc, wait_for_timeout_then_completion);
  tcase_add_test(tc, free_before_completion);
  tcase_add_test(tc, no_leader_fails_at_once);
  tcase_add_test(tc, no_redirect_follower_says_not_leader);
  tcase_add_test(tc, leader_change_in_flight_is_unknown);
  tcase_add_test(tc, stale_leader_answers_not_leader);
  tcase_add_test(tc, view_without_leader_is_unknown);
  tcase_add_test(tc, blocking_calls_from_callbacks);
  tcase_add_test(tc, getters_and_role_listeners);
  tcase_add_test(tc, close_with_pending_requests);
  tcase_add_test(tc, close_while_a_callback_resubmits);
  tcase_add_test(tc, disconnect_then_close);
  tcase_add_test(tc, open_errors);
  tcase_add_test(tc, bad_input_dropped_and_counted);
  tcase_add_test(tc, header_codec);
  tcase_add_test(tc, threads_on_the_libev_runtime);
  suite_add_tcase(s, tc);
  return test_run(s);
}

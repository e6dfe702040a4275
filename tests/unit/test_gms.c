/* GMS and NO_DUPES on LOOPBACK in the simulation, with the real stack: joins, concurrent start,
 * leaves, crashes, partitions and merges, duplicate names, ordering rules, hostile input. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "protocols/pbcast/gms.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"

#define MAX_NODES 8
#define MAX_MBRS 8
#define MAX_HIST 32

/* One member, and what its application saw of the views. */
struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  const char *name;
  struct rs_addr addr;
  uint64_t view_id; /* the last view */
  struct rs_addr creator;
  size_t n;
  struct rs_addr members[MAX_MBRS];
  char names[MAX_MBRS][16];
  uint64_t ids[MAX_HIST]; /* every view id, in the order seen */
  size_t n_views;
  rs_time view_at;       /* virtual time of the last view */
  bool out_of_order;     /* a view id not above the previous one */
  char events[256];      /* "M" per message, "V<id>" per view, in delivery order */
  uint64_t send_on_view; /* when this view arrives, multicast 20 messages from the callback */
};

static struct rs_sim *sim; /* NULL: channels run their own libev loops */
static struct node nodes[MAX_NODES];
/* Views arrive on the loop threads when channels have their own (real_threads_over_loopback). */
static pthread_mutex_t view_lock = PTHREAD_MUTEX_INITIALIZER;
enum { A, B, C, D, E, F, G };
static const char *const node_names[] = {"A", "B", "C", "D", "E", "F", "G"};

#define STACK(merge3, gms)                                                                         \
  "<config><LOOPBACK/><DISCARD/><PING/>" merge3                                                    \
  "<FD_ALL3 interval=\"1s\" timeout=\"5s\"/><VERIFY_SUSPECT timeout=\"1s\"/>"                      \
  "<pbcast.NAKACK2 xmit_interval=\"200ms\"/><UNICAST3 xmit_interval=\"200ms\"/>"                   \
  "<pbcast.STABLE desired_avg_gossip=\"5s\"/><raft.NO_DUPES/>"                                     \
  "<pbcast.GMS join_timeout=\"1s\" " gms "/></config>"
static const char *const full = STACK("<MERGE3 min_interval=\"1s\" max_interval=\"3s\"/>", "");
static const char *const no_merge3 = STACK("", "");

/* --- nodes ----------------------------------------------------------------------------------- */

static void on_view(void *arg, const struct rs_view *v) {
  struct node *nd = arg;
  pthread_mutex_lock(&view_lock);
  if (nd->n_views && v->id <= nd->view_id) nd->out_of_order = true;
  nd->view_id = v->id;
  nd->creator = v->creator;
  nd->n = v->n_members < MAX_MBRS ? v->n_members : MAX_MBRS;
  for (size_t i = 0; i < nd->n; i++) {
    nd->members[i] = v->members[i];
    snprintf(nd->names[i], sizeof(nd->names[i]), "%s", v->names[i]);
  }
  if (nd->n_views < MAX_HIST) nd->ids[nd->n_views] = v->id;
  nd->n_views++;
  nd->view_at = nd->rt ? rs_now(nd->rt) : 0;
  pthread_mutex_unlock(&view_lock);
  size_t len = strlen(nd->events);
  snprintf(nd->events + len, sizeof(nd->events) - len, "V%llu", (unsigned long long)v->id);
  if (v->id == nd->send_on_view)
    for (int i = 0; i < 20; i++)
      ck_assert_int_eq(rs_channel_send_nb(nd->ch, NULL, "m", 1, 0), 0);
}

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  (void)src, (void)data, (void)len, (void)flags;
  struct node *nd = arg;
  size_t n = strlen(nd->events);
  snprintf(nd->events + n, sizeof(nd->events) - n, "M");
}

static void open_node(struct node *nd, const char *name, const char *xml) {
  memset(nd, 0, sizeof(*nd));
  nd->name = name;
  nd->rt = sim ? rs_sim_runtime_new(sim, name) : NULL;
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  char err[1024];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open %s: %s", name, err);
  static const struct rs_receiver r = {.receive = on_receive, .view = on_view};
  rs_channel_set_receiver(nd->ch, &r, nd);
}

static int connect_node(struct node *nd) {
  int rc = rs_channel_connect(nd->ch, "gms");
  nd->addr = rs_channel_address(nd->ch);
  return rc;
}

static void start_node(struct node *nd, const char *name, const char *xml) {
  open_node(nd, name, xml);
  int rc = connect_node(nd);
  ck_assert_msg(rc == 0, "connect %s: %s", name, rs_channel_last_error(nd->ch));
}

/* Starts the first k nodes one after the other. */
static void start_nodes(size_t k, const char *xml) {
  for (size_t i = 0; i < k; i++)
    start_node(&nodes[i], node_names[i], xml);
}

static void close_node(struct node *nd) {
  if (!nd->ch) return;
  rs_channel_close(nd->ch);
  if (nd->rt) rs_runtime_destroy(nd->rt);
  nd->ch = NULL;
}

/* Connects without waiting, so that several members start at the same virtual instant (the
 * public connect blocks until joined): what do_connect in stack/channel.c does, on the stack. The
 * channel itself stays "open"; the test watches the views and closes the channel as usual. */
static void connect_async(struct node *nd) {
  struct rs_stack *st = channel_stack(nd->ch);
  st->local_addr = addr_random(nd->rt);
  snprintf(st->cluster, sizeof(st->cluster), "gms");
  ck_assert_int_eq(stack_start(st), 0);
  struct rs_event ev = {.type = RS_EV_CONNECT, .u.cluster = st->cluster};
  ck_assert_int_eq(stack_down_event(st, &ev), RS_EAGAIN);
  nd->addr = st->local_addr;
}

static struct rs_protocol *proto_of(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nd->ch)->bottom, name);
  ck_assert_msg(p != NULL, "no %s", name);
  return p;
}

static struct gms *gms_of(struct node *nd) { return GMS(proto_of(nd, "GMS")); }

/* --- stats ----------------------------------------------------------------------------------- */

struct stat_query {
  const char *name;
  char value[128];
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_query *q = out->arg;
  if (strcmp(name, q->name)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->value, sizeof(q->value), fmt, ap);
  va_end(ap);
}

static const char *stat_str(struct node *nd, const char *proto, const char *name) {
  static struct stat_query q;
  struct rs_protocol *p = proto_of(nd, proto);
  q = (struct stat_query){.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.value[0], "no stat %s.%s", proto, name);
  return q.value;
}

static uint64_t stat(struct node *nd, const char *proto, const char *name) {
  return strtoull(stat_str(nd, proto, name), NULL, 10);
}

/* --- views ----------------------------------------------------------------------------------- */

/* "A,B,C": the names of nd's last view, in order. */
static const char *names_of(const struct node *nd, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < nd->n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", nd->names[i]);
  return buf;
}

/* A set of nodes (indices, -1-terminated) that must agree on one view of `n` members. */
struct agree {
  const int *idx;
  size_t n;
};

static bool agreed_locked(const struct agree *a) {
  const struct node *first = &nodes[a->idx[0]];
  for (const int *i = a->idx; *i >= 0; i++) {
    const struct node *nd = &nodes[*i];
    if (nd->n != a->n || nd->view_id != first->view_id ||
        !rs_addr_eq(&nd->creator, &first->creator))
      return false;
    for (size_t k = 0; k < nd->n; k++)
      if (!rs_addr_eq(&nd->members[k], &first->members[k])) return false;
  }
  return true;
}

static bool agreed(void *arg) {
  pthread_mutex_lock(&view_lock);
  bool ok = agreed_locked(arg);
  pthread_mutex_unlock(&view_lock);
  return ok;
}

static void wait_agree(const int *idx, size_t n, rs_time timeout, const char *what) {
  struct agree a = {idx, n};
  bool ok = sim ? rs_sim_run_until(sim, agreed, &a, timeout)
                : wait_until(agreed, &a, (unsigned)(timeout / RS_MS));
  if (!ok)
    for (const int *i = idx; *i >= 0; i++) {
      char buf[128];
      fprintf(stderr, "%s: view %llu [%s]\n", nodes[*i].name, (unsigned long long)nodes[*i].view_id,
              names_of(&nodes[*i], buf, sizeof(buf)));
    }
  ck_assert_msg(ok, "timed out: %s", what);
}

static void assert_names(const struct node *nd, const char *want) {
  char buf[128];
  ck_assert_msg(!strcmp(names_of(nd, buf, sizeof(buf)), want), "%s sees [%s], expected [%s]",
                nd->name, buf, want);
}

/* Each node in idx saw only increasing view ids. */
static void assert_in_order(const int *idx) {
  for (const int *i = idx; *i >= 0; i++)
    ck_assert_msg(!nodes[*i].out_of_order, "%s saw views out of order", nodes[*i].name);
}

static void close_all(void) {
  for (int i = MAX_NODES - 1; i >= 0; i--)
    close_node(&nodes[i]);
}

static void setup(void) {
  sim = rs_sim_new(4711);
  memset(nodes, 0, sizeof(nodes));
}
static void teardown(void) {
  close_all();
  if (sim) rs_sim_free(sim);
  sim = NULL;
}

/* Both directions of every pair across the two groups drop everything. */
static void partition(const int *g1, const int *g2) {
  for (const int *x = g1; *x >= 0; x++)
    for (const int *y = g2; *y >= 0; y++) {
      ck_assert_int_eq(discard_ignore(proto_of(&nodes[*x], "DISCARD"), &nodes[*y].addr), 0);
      ck_assert_int_eq(discard_ignore(proto_of(&nodes[*y], "DISCARD"), &nodes[*x].addr), 0);
    }
}

static void heal(const int *idx) {
  for (const int *i = idx; *i >= 0; i++)
    discard_clear_ignored(proto_of(&nodes[*i], "DISCARD"));
}

static const int ALL5[] = {A, B, C, D, E, -1};

/* --- joining --------------------------------------------------------------------------------- */

START_TEST(five_join_one_after_another) {
  for (int i = 0; i < 5; i++) {
    start_node(&nodes[i], node_names[i], full);
    /* connect returns once the joiner has installed its first view */
    ck_assert_uint_eq(nodes[i].view_id, (uint64_t)i + 1);
    ck_assert_uint_eq(nodes[i].n, (size_t)i + 1);
  }
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members in one view");
  for (int i = 0; i < 5; i++) {
    struct node *nd = &nodes[i];
    assert_names(nd, "A,B,C,D,E");
    ck_assert_uint_eq(nd->view_id, 5);
    ck_assert(rs_addr_eq(&nd->members[0], &nodes[A].addr));
    ck_assert(rs_addr_eq(&nd->creator, &nodes[A].addr));
    /* every view from the one it joined with, each once, in order */
    ck_assert_uint_eq(nd->n_views, 5 - (size_t)i);
    for (size_t k = 0; k < nd->n_views; k++)
      ck_assert_uint_eq(nd->ids[k], (uint64_t)i + 1 + k);
  }
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "joins_admitted"), 4);
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "views_sent"), 4);
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "view_ack_timeouts"), 0);
  ck_assert_str_eq(stat_str(&nodes[A], "GMS", "role"), "coordinator");
  ck_assert_str_eq(stat_str(&nodes[E], "GMS", "role"), "participant");
}
END_TEST

START_TEST(five_start_concurrently) {
  for (int i = 0; i < 5; i++)
    open_node(&nodes[i], node_names[i], full);
  for (int i = 0; i < 5; i++)
    connect_async(&nodes[i]);
  wait_agree(ALL5, 5, 30 * RS_SEC, "five members starting together converge");
  /* The lowest address among members starting together becomes coordinator. */
  const struct rs_addr *lowest = &nodes[A].addr;
  for (int i = 1; i < 5; i++)
    if (rs_addr_cmp(&nodes[i].addr, lowest) < 0) lowest = &nodes[i].addr;
  for (int i = 0; i < 5; i++) {
    ck_assert(rs_addr_eq(&nodes[i].members[0], lowest));
    for (int j = 0; j < 5; j++)
      ck_assert_int_ge(view_index(gms_of(&nodes[i])->view, &nodes[j].addr), 0);
  }
  assert_in_order(ALL5);
  /* Every other member joined through the coordinator: one view, or a few coalesced ones. */
  int coord = 0;
  while (!rs_addr_eq(&nodes[coord].addr, lowest))
    coord++;
  ck_assert_uint_eq(stat(&nodes[coord], "GMS", "joins_admitted"), 4);
}
END_TEST

/* X asks A to join, then loses everything from A for a while: the JOIN_RSP (which UNICAST3 keeps
 * retransmitting) and the answer to X's next discovery. An empty discovery round after a
 * coordinator was found is a failed attempt, not a reason to start a view of its own; and the
 * JOIN_RSP, once it gets through, is taken although X is waiting to try again by then. */
START_TEST(join_survives_lost_answers) {
  start_node(&nodes[A], "A", no_merge3);
  open_node(&nodes[G], "X",
            "<config><LOOPBACK/><DISCARD/><PING/><pbcast.NAKACK2 xmit_interval=\"200ms\"/>"
            "<UNICAST3 xmit_interval=\"200ms\"/><pbcast.STABLE/><pbcast.GMS join_timeout=\"500ms\" "
            "all_clients_retry_timeout=\"2s\"/></config>");
  struct node *x = &nodes[G];
  connect_async(x);
  while (!gms_of(&nodes[A])->st.join_reqs_received)
    ck_assert(rs_sim_step(sim));
  ck_assert_int_eq(discard_ignore(proto_of(x, "DISCARD"), &nodes[A].addr), 0);
  /* 0.5 s: no JOIN_RSP; 2.5 s: discovery again, A's answer lost; 3 s: an empty round */
  rs_sim_run_for(sim, 3200 * RS_MS);
  ck_assert_uint_eq(x->n_views, 0);
  ck_assert_int_eq(gms_of(x)->role, GMS_CLIENT);
  ck_assert_uint_eq(stat(x, "GMS", "join_attempts"), 2);
  discard_clear_ignored(proto_of(x, "DISCARD"));
  rs_time t0 = rs_sim_now(sim);
  static const int ax[] = {A, G, -1};
  wait_agree(ax, 2, 10 * RS_SEC, "X joined");
  /* by the first JOIN_RSP, retransmitted, before X's next attempt at 5 s */
  ck_assert_uint_lt(x->view_at - t0, RS_SEC);
  ck_assert_uint_eq(stat(x, "GMS", "join_attempts"), 2);
  assert_names(x, "A,X");
}
END_TEST

/* A view goes up after the messages its coordinator sent before it, even when they arrive in
 * one batch: here A's application multicasts 20 messages from its callback for view 3, which A
 * installs before it multicasts the view, so they leave together. */
START_TEST(view_delivered_after_preceding_messages) {
  start_nodes(2, no_merge3);
  nodes[A].send_on_view = 3;
  nodes[B].events[0] = '\0';
  start_node(&nodes[C], "C", no_merge3);
  static const int abc[] = {A, B, C, -1};
  wait_agree(abc, 3, 5 * RS_SEC, "C joined");
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_str_eq(nodes[B].events, "MMMMMMMMMMMMMMMMMMMMV3");
}
END_TEST

/* A joiner whose JOIN_REQs never arrive gives up after max_join_attempts and starts a view of
 * its own, as JGroups does. */
START_TEST(join_gives_up_after_max_attempts) {
  start_node(&nodes[A], "A", no_merge3);
  open_node(&nodes[B], "B",
            "<config><LOOPBACK/><DISCARD drop_down_unicasts=\"100000\"/><PING/>"
            "<pbcast.NAKACK2/><UNICAST3/><pbcast.STABLE/>"
            "<pbcast.GMS join_timeout=\"500ms\" max_join_attempts=\"2\"/></config>");
  rs_time t0 = rs_sim_now(sim);
  ck_assert_int_eq(connect_node(&nodes[B]), 0);
  assert_names(&nodes[B], "B");
  ck_assert_uint_eq(nodes[B].view_id, 1);
  ck_assert_uint_eq(stat(&nodes[B], "GMS", "join_attempts"), 2);
  ck_assert_uint_ge(rs_sim_now(sim) - t0, 2 * 500 * RS_MS);
  assert_names(&nodes[A], "A"); /* A never heard of it */
}
END_TEST

/* Joins and a leave with 10% of messages lost each way: NAKACK2 and UNICAST3 repair what GMS
 * sends, joins are retried, views are sent again to members that did not ack them. Discovery is
 * not reliable: a joiner whose requests or answers are all lost starts a view of its own (as in
 * JGroups), and MERGE3 merges it later. */
START_TEST(membership_under_loss) {
  const char *lossy = "<config><LOOPBACK/><DISCARD up=\"0.1\" down=\"0.1\"/>"
                      "<PING num_discovery_runs=\"3\"/><MERGE3 min_interval=\"1s\" "
                      "max_interval=\"3s\"/>"
                      "<FD_ALL3 interval=\"1s\" timeout=\"10s\"/><VERIFY_SUSPECT timeout=\"1s\"/>"
                      "<pbcast.NAKACK2 xmit_interval=\"200ms\"/><UNICAST3 xmit_interval=\"200ms\"/>"
                      "<pbcast.STABLE desired_avg_gossip=\"5s\"/><raft.NO_DUPES/>"
                      "<pbcast.GMS join_timeout=\"1s\"/></config>";
  start_nodes(5, lossy);
  wait_agree(ALL5, 5, 60 * RS_SEC, "five members despite loss");
  ck_assert_int_eq(rs_channel_disconnect(nodes[B].ch), 0);
  static const int rest[] = {A, C, D, E, -1};
  wait_agree(rest, 4, 30 * RS_SEC, "B left despite loss");
  for (const int *i = rest; *i >= 0; i++)
    ck_assert_int_lt(view_index(gms_of(&nodes[*i])->view, &nodes[B].addr), 0);
  assert_in_order(ALL5);
}
END_TEST

/* --- leaving --------------------------------------------------------------------------------- */

START_TEST(graceful_leave_seen_at_once) {
  start_nodes(5, full);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  rs_time t0 = rs_sim_now(sim);
  ck_assert_int_eq(rs_channel_disconnect(nodes[C].ch), 0);
  static const int rest[] = {A, B, D, E, -1};
  wait_agree(rest, 4, 5 * RS_SEC, "four members after C left");
  for (const int *i = rest; *i >= 0; i++) {
    assert_names(&nodes[*i], "A,B,D,E");
    ck_assert_uint_eq(nodes[*i].view_id, 6);
    /* at once: well within one FD_ALL3 interval, let alone its timeout */
    ck_assert_uint_lt(nodes[*i].view_at - t0, 100 * RS_MS);
  }
  /* the leaver's application saw no view without itself */
  ck_assert_uint_eq(nodes[C].view_id, 5);
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "leaves_handled"), 1);
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "suspects_handled"), 0);
  assert_in_order(ALL5);
}
END_TEST

START_TEST(coordinator_leaves_next_takes_over) {
  start_nodes(5, full);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  rs_time t0 = rs_sim_now(sim);
  ck_assert_int_eq(rs_channel_disconnect(nodes[A].ch), 0);
  static const int rest[] = {B, C, D, E, -1};
  wait_agree(rest, 4, 5 * RS_SEC, "four members after A left");
  for (const int *i = rest; *i >= 0; i++) {
    assert_names(&nodes[*i], "B,C,D,E");
    ck_assert(rs_addr_eq(&nodes[*i].creator, &nodes[B].addr));
    ck_assert_uint_lt(nodes[*i].view_at - t0, 100 * RS_MS);
  }
  ck_assert_uint_eq(stat(&nodes[B], "GMS", "suspects_handled"), 0);
  /* B coordinates now: a new member joins through it */
  start_node(&nodes[F], "F", full);
  static const int with_f[] = {B, C, D, E, F, -1};
  wait_agree(with_f, 5, 5 * RS_SEC, "F joined through B");
  assert_names(&nodes[F], "B,C,D,E,F");
  ck_assert_uint_eq(stat(&nodes[B], "GMS", "joins_admitted"), 1);
}
END_TEST

/* --- failures -------------------------------------------------------------------------------- */

/* FD_ALL3 (timeout 5 s, interval 1 s) and VERIFY_SUSPECT (1 s) find a member cut off. */
START_TEST(member_cut_off_is_removed) {
  start_nodes(5, full);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  rs_time t0 = rs_sim_now(sim);
  discard_set_all(proto_of(&nodes[D], "DISCARD"), true);
  /* a unicast to D now is never acked... */
  ck_assert_int_eq(rs_channel_send(nodes[A].ch, &nodes[D].addr, "x", 1, 0), 0);
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_ge(stat(&nodes[A], "UNICAST3", "unacked"), 1);
  static const int rest[] = {A, B, C, E, -1};
  wait_agree(rest, 4, 30 * RS_SEC, "D removed");
  for (const int *i = rest; *i >= 0; i++) {
    assert_names(&nodes[*i], "A,B,C,E");
    rs_time took = nodes[*i].view_at - t0;
    ck_assert_msg(took >= 5 * RS_SEC && took <= 8 * RS_SEC, "removed after %llu ms",
                  (unsigned long long)(took / RS_MS));
  }
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "suspects_handled"), 1);
  /* ...and no longer retransmitted once the view removed D (UNICAST3 follows the views) */
  ck_assert_uint_eq(stat(&nodes[A], "UNICAST3", "unacked"), 0);
  ck_assert_uint_ge(stat(&nodes[A], "UNICAST3", "conns_removed_by_view"), 1);
  assert_in_order(rest);
}
END_TEST

START_TEST(coordinator_crash_next_takes_over) {
  start_nodes(5, full);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  rs_time t0 = rs_sim_now(sim);
  discard_set_all(proto_of(&nodes[A], "DISCARD"), true);
  static const int rest[] = {B, C, D, E, -1};
  wait_agree(rest, 4, 30 * RS_SEC, "A removed");
  for (const int *i = rest; *i >= 0; i++) {
    assert_names(&nodes[*i], "B,C,D,E");
    ck_assert(rs_addr_eq(&nodes[*i].creator, &nodes[B].addr));
    ck_assert_uint_eq(nodes[*i].view_id, 6);
    ck_assert_uint_le(nodes[*i].view_at - t0, 8 * RS_SEC);
  }
  ck_assert_uint_eq(stat(&nodes[B], "GMS", "suspects_handled"), 1);
  assert_in_order(rest);
}
END_TEST

/* The same on real threads: each channel runs its own libev loop, LOOPBACK between them. */
START_TEST(real_threads_over_loopback) {
  rs_sim_free(sim);
  sim = NULL;
  const char *xml = STACK("", "");
  start_nodes(3, xml);
  static const int abc[] = {A, B, C, -1};
  wait_agree(abc, 3, 10 * RS_SEC, "three members on real threads");
  pthread_mutex_lock(&view_lock);
  assert_names(&nodes[C], "A,B,C");
  pthread_mutex_unlock(&view_lock);
  uint64_t t0 = test_now_ms();
  ck_assert_int_eq(rs_channel_disconnect(nodes[B].ch), 0);
  static const int ac[] = {A, C, -1};
  wait_agree(ac, 2, 5 * RS_SEC, "B left");
  ck_assert_uint_lt(test_now_ms() - t0, 1000);
  pthread_mutex_lock(&view_lock);
  assert_names(&nodes[C], "A,C");
  pthread_mutex_unlock(&view_lock);
}
END_TEST

/* --- partitions and merges ------------------------------------------------------------------- */

static const int G1[] = {A, B, C, -1}, G2[] = {D, E, -1};

static void split_3_2(void) {
  partition(G1, G2);
  wait_agree(G1, 3, 30 * RS_SEC, "A,B,C on their own");
  wait_agree(G2, 2, 30 * RS_SEC, "D,E on their own");
  assert_names(&nodes[A], "A,B,C");
  assert_names(&nodes[D], "D,E");
  rs_sim_run_for(sim, RS_SEC); /* the coordinators collect their acks */
}

/* The merge view: the leader's subgroup first, id one above both, merge flag. */
static void assert_merged(uint64_t id1, uint64_t id2) {
  bool a_leads = rs_addr_cmp(&nodes[A].addr, &nodes[D].addr) < 0;
  for (int i = 0; i < 5; i++) {
    assert_names(&nodes[i], a_leads ? "A,B,C,D,E" : "D,E,A,B,C");
    ck_assert_uint_eq(nodes[i].view_id, (id1 > id2 ? id1 : id2) + 1);
    ck_assert(gms_of(&nodes[i])->view->merge);
  }
  assert_in_order(ALL5);
}

START_TEST(partition_then_merge3_heals) {
  start_nodes(5, full);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  split_3_2();
  uint64_t id1 = nodes[A].view_id, id2 = nodes[D].view_id;
  heal(ALL5);
  wait_agree(ALL5, 5, 60 * RS_SEC, "one view of five after the partition healed");
  assert_merged(id1, id2);
  struct node *leader = rs_addr_cmp(&nodes[A].addr, &nodes[D].addr) < 0 ? &nodes[A] : &nodes[D];
  ck_assert_uint_ge(stat(leader, "GMS", "merges_completed"), 1);
}
END_TEST

static void inject_merge(struct node *at, struct node *x, struct node *y) {
  struct rs_view_data *views[2] = {gms_of(x)->view, gms_of(y)->view};
  struct rs_event ev = {.type = RS_EV_MERGE, .u.merge = {.views = views, .n = 2}};
  struct rs_protocol *g = proto_of(at, "GMS");
  g->ops->up_event(g, &ev);
}

/* A merge that cannot finish is cancelled after merge_timeout; a second one while one runs is
 * ignored; once the subgroups can talk, an injected MERGE event merges them. */
START_TEST(injected_merge_timeout_then_success) {
  start_nodes(5, no_merge3);
  wait_agree(ALL5, 5, 5 * RS_SEC, "five members");
  split_3_2();
  uint64_t id1 = nodes[A].view_id, id2 = nodes[D].view_id;
  bool a_leads = rs_addr_cmp(&nodes[A].addr, &nodes[D].addr) < 0;
  struct node *leader = a_leads ? &nodes[A] : &nodes[D], *other = a_leads ? &nodes[D] : &nodes[A];
  inject_merge(other, &nodes[A], &nodes[D]); /* not the leader: nothing happens */
  ck_assert_uint_eq(stat(other, "GMS", "merges_ignored"), 1);
  inject_merge(leader, &nodes[A], &nodes[D]);
  inject_merge(leader, &nodes[A], &nodes[D]); /* one is running */
  ck_assert_uint_eq(stat(leader, "GMS", "merges_started"), 1);
  ck_assert_uint_eq(stat(leader, "GMS", "merges_ignored"), 1);
  rs_sim_run_for(sim, 6 * RS_SEC); /* merge_timeout is 5 s */
  ck_assert_uint_eq(stat(leader, "GMS", "merges_cancelled"), 1);
  ck_assert(!gms_merge_busy(gms_of(leader)));
  ck_assert_uint_eq(nodes[A].view_id, id1);
  ck_assert_uint_eq(nodes[D].view_id, id2);
  /* the view handler works again after the cancelled merge */
  heal(ALL5);
  inject_merge(leader, &nodes[A], &nodes[D]);
  wait_agree(ALL5, 5, 10 * RS_SEC, "merged by the injected event");
  assert_merged(id1, id2);
  ck_assert_uint_eq(stat(leader, "GMS", "merges_completed"), 1);
  /* The other coordinator's part ended with the merge view, not by its timeout. (It also got the
   * cancelled merge's MERGE_REQ and CANCEL_MERGE, which UNICAST3 retransmitted after the heal, in
   * that order: merge messages are not OOB.) */
  ck_assert(!gms_merge_busy(gms_of(other)));
  ck_assert_uint_le(stat(other, "GMS", "merges_cancelled"), 1);
  rs_sim_run_for(sim, 6 * RS_SEC);
  ck_assert_uint_eq(nodes[A].view_id, (id1 > id2 ? id1 : id2) + 1);
  start_node(&nodes[F], "F", no_merge3);
  ck_assert_uint_eq(nodes[F].n, 6);
}
END_TEST

/* --- NO_DUPES -------------------------------------------------------------------------------- */

START_TEST(duplicate_name_refused_until_it_leaves) {
  start_nodes(3, full);
  static const int abc[] = {A, B, C, -1};
  wait_agree(abc, 3, 5 * RS_SEC, "A, B, C");
  struct node *b2 = &nodes[F];
  open_node(b2, "B", full);
  ck_assert_int_eq(connect_node(b2), RS_EEXIST);
  ck_assert_str_eq(rs_channel_last_error(b2->ch),
                   "NO_DUPES: join of 'B' refused: 'B' is already in view [A|3] (3) [A, B, C]");
  ck_assert_uint_eq(b2->n_views, 0);
  rs_sim_run_for(sim, 2 * RS_SEC);
  for (const int *i = abc; *i >= 0; i++)
    ck_assert_uint_eq(nodes[*i].view_id, 3);
  ck_assert_uint_eq(stat(&nodes[A], "NO_DUPES", "joins_refused"), 1);
  ck_assert_uint_eq(stat(&nodes[A], "GMS", "join_reqs_received"), 2); /* B's and C's only */
  /* once the first B left, the name is free */
  ck_assert_int_eq(rs_channel_disconnect(nodes[B].ch), 0);
  static const int ac[] = {A, C, -1};
  wait_agree(ac, 2, 5 * RS_SEC, "B left");
  ck_assert_int_eq(connect_node(b2), 0);
  static const int acb[] = {A, C, F, -1};
  wait_agree(acb, 3, 5 * RS_SEC, "the second B joined");
  assert_names(b2, "A,C,B");
}
END_TEST

/* Two joiners with one name at the same moment: exactly one gets in. */
START_TEST(concurrent_duplicates_one_admitted) {
  start_nodes(2, full);
  open_node(&nodes[C], "X", full);
  open_node(&nodes[D], "X", full);
  connect_async(&nodes[C]);
  connect_async(&nodes[D]);
  rs_sim_run_for(sim, 10 * RS_SEC);
  assert_names(&nodes[A], "A,B,X");
  ck_assert_uint_eq(stat(&nodes[A], "NO_DUPES", "joins_refused"), 1);
  ck_assert_uint_eq(nodes[C].n_views + nodes[D].n_views, 1);
}
END_TEST

/* --- configuration --------------------------------------------------------------------------- */

static void assert_open_fails(const char *xml, const char *want) {
  struct rs_channel *ch = NULL;
  char err[2048];
  struct rs_channel_opts o = {.config_xml = xml, .name = "X", .runtime = NULL};
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "X");
  o.runtime = rt;
  ck_assert_int_eq(rs_channel_open(&ch, &o, err, sizeof(err)), RS_ECONFIG);
  ck_assert_msg(strstr(err, want), "error [%s] lacks [%s]", err, want);
  rs_runtime_destroy(rt);
}

START_TEST(ordering_rules) {
  assert_open_fails("<config><LOOPBACK/><PING/><pbcast.NAKACK2/><UNICAST3/><pbcast.GMS/>"
                    "<raft.NO_DUPES/></config>",
                    "NO_DUPES: needs GMS above it, but GMS is below it");
  assert_open_fails("<config><LOOPBACK/><PING/><UNICAST3/><pbcast.GMS/></config>",
                    "GMS: needs NAKACK2 below it");
  assert_open_fails("<config><LOOPBACK/><pbcast.NAKACK2/><UNICAST3/><pbcast.GMS/></config>",
                    "GMS: needs PING or TCPPING below it");
  assert_open_fails("<config><LOOPBACK/><PING/><pbcast.GMS/><pbcast.NAKACK2/></config>",
                    "GMS: needs NAKACK2 below it, but NAKACK2 is above it");
}
END_TEST

/* --- print_local_addr ------------------------------------------------------------------------ */

static char captured[4096];

static void capture(void *arg, enum rs_log_level level, const char *subsys, const char *line) {
  (void)arg;
  if (level == RS_LOG_INFO && strstr(line, "address="))
    snprintf(captured + strlen(captured), sizeof(captured) - strlen(captured), "%s: %s\n", subsys,
             line);
}

START_TEST(print_local_addr_logs_at_info) {
  rs_log_set_sink(capture, NULL);
  captured[0] = '\0';
  start_node(&nodes[A], "A", STACK("", "level=\"info\""));
  char want[256], phys[RS_PHYS_STRLEN];
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS};
  stack_down_event(channel_stack(nodes[A].ch), &ev);
  snprintf(want, sizeof(want), "GMS[A]: address=A, cluster=gms, physical address=%s\n",
           phys_format(&ev.phys, phys, sizeof(phys)));
  ck_assert_str_eq(captured, want);
  captured[0] = '\0';
  start_node(&nodes[B], "B", STACK("", "level=\"info\" print_physical_addrs=\"false\""));
  ck_assert_str_eq(captured, "GMS[B]: address=B, cluster=gms\n");
  captured[0] = '\0';
  start_node(&nodes[C], "C", STACK("", "level=\"info\" print_local_addr=\"false\""));
  ck_assert_str_eq(captured, "");
  rs_log_set_sink(NULL, NULL);
}
END_TEST

/* --- hostile input --------------------------------------------------------------------------- */

static bool hdr_decodes(const uint8_t *p, size_t len) {
  _Alignas(8) uint8_t h[RS_HDR_INLINE] = {0};
  struct rs_reader r;
  reader_init(&r, p, len);
  gms_header.read(h, &r);
  return !r.err && r.pos == r.len;
}

START_TEST(header_codec) {
  /* every type round-trips, with a merge id exactly on the merge types */
  for (uint8_t t = GMS_JOIN_REQ; t <= GMS_TYPE_MAX; t++) {
    bool merge = t >= GMS_MERGE_REQ && t <= GMS_CANCEL_MERGE;
    struct gms_hdr h = {.type = t,
                        .flags = merge ? GMS_F_MERGE_ID : 0,
                        .merge_id = merge ? 0x1122334455667788u : 0};
    uint8_t buf[16];
    struct rs_writer w;
    writer_init(&w, buf, sizeof(buf));
    gms_header.write(&h, &w);
    ck_assert_uint_eq(w.len, gms_header.wire_size(&h));
    ck_assert_uint_eq(w.len, merge ? 10 : 2);
    _Alignas(8) uint8_t back[RS_HDR_INLINE] = {0};
    struct rs_reader r;
    reader_init(&r, buf, w.len);
    gms_header.read(back, &r);
    ck_assert_int_eq(r.err, 0);
    const struct gms_hdr *got = (const struct gms_hdr *)back;
    ck_assert_uint_eq(got->type, h.type);
    ck_assert_uint_eq(got->flags, h.flags);
    ck_assert_uint_eq(got->merge_id, h.merge_id);
  }
  static const uint8_t ok_rejected[] = {7, 3, 0, 0, 0, 0, 0, 0, 0, 9};
  ck_assert(hdr_decodes(ok_rejected, sizeof(ok_rejected)));
  static const struct {
    uint8_t b[12];
    size_t len;
  } bad[] = {
      {{0}, 0},                             /* empty */
      {{5}, 1},                             /* no flags */
      {{0, 0}, 2},                          /* type 0 */
      {{11, 0}, 2},                         /* unknown type */
      {{5, 0x04}, 2},                       /* unknown flag */
      {{6, 0}, 2},                          /* merge type without its id */
      {{1, 1, 0, 0, 0, 0, 0, 0, 0, 1}, 10}, /* merge id on a join */
      {{6, 1, 0, 0, 0, 0, 0, 0, 0, 0}, 10}, /* merge id 0 */
      {{6, 1, 0, 0, 0}, 5},                 /* truncated merge id */
      {{5, 2}, 2},                          /* REJECTED on a view */
      {{6, 3, 0, 0, 0, 0, 0, 0, 0, 1}, 10}, /* REJECTED on a request */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(!hdr_decodes(bad[i].b, bad[i].len), "bad header %zu accepted", i);
}
END_TEST

/* A GMS message as if received from src (NULL body: none). */
static void inject(struct node *nd, const struct rs_addr *src, bool mcast, uint8_t type,
                   uint8_t flags, uint64_t merge_id, const void *body, size_t len) {
  struct rs_protocol *g = proto_of(nd, "GMS");
  struct rs_msg *m = rs_msg_new_copy(body, len);
  struct gms_hdr *h = rs_msg_put_header(m, &gms_header);
  h->type = type;
  h->flags = flags;
  h->merge_id = merge_id;
  m->src = *src;
  m->dest = mcast ? RS_ADDR_NULL : nd->addr;
  struct rs_batch b;
  rs_batch_init(&b);
  b.src = m->src;
  b.dest = m->dest;
  rs_batch_add(&b, m);
  proto_up_batch(g->down, &b);
}

/* The body of a VIEW: a view of the given members (names from the nodes) with id and creator. */
static size_t view_body(uint8_t *buf, size_t cap, const struct rs_addr *creator, uint64_t id,
                        const struct rs_addr *mbrs, size_t n, bool merge, bool digest) {
  const char *names[MAX_MBRS] = {0};
  struct rs_view_data *v = view_new(creator, id, n, mbrs, names);
  v->merge = merge;
  struct rs_writer w;
  writer_init(&w, buf, cap);
  put_view(&w, v);
  if (digest) put_digest(&w, &(struct rs_digest){0});
  view_unref(v);
  ck_assert_int_eq(w.err, 0);
  return w.len;
}

START_TEST(hostile_messages_dropped) {
  start_nodes(3, no_merge3);
  static const int abc[] = {A, B, C, -1};
  wait_agree(abc, 3, 5 * RS_SEC, "A, B, C");
  struct node *a = &nodes[A], *b = &nodes[B];
  struct rs_addr x = {0x1234, 0x5678}, mb[3] = {a->addr, b->addr, nodes[C].addr};
  uint8_t buf[1024];
  uint64_t bad0 = stat(b, "GMS", "bad_dropped"), stale0 = stat(b, "GMS", "stale_ignored");
  uint64_t abad0 = stat(a, "GMS", "bad_dropped");

  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0x7f};
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, garbage, sizeof(garbage)); /* not a view */
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, NULL, 0);                  /* empty */
  size_t len =
      view_body(buf, sizeof(buf), &x, 9, (struct rs_addr[]){x, a->addr, b->addr}, 3, false, false);
  inject(b, &x, true, GMS_VIEW, 0, 0, buf, len); /* newer, but from a stranger */
  len = view_body(buf, sizeof(buf), &a->addr, 9, mb, 3, false, false);
  buf[len] = 0;
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len + 1); /* trailing byte */
  inject(b, &a->addr, false, GMS_VIEW, 0, 0, buf, len);    /* a view sent to one member */
  inject(b, &a->addr, true, GMS_JOIN_REQ, 0, 0, "\1X", 2); /* a join multicast */
  inject(b, &a->addr, false, GMS_VIEW_ACK, 0, 0, garbage, 3);
  inject(b, &a->addr, false, GMS_MERGE_REQ, GMS_F_MERGE_ID, 7, "x", 1); /* body on MERGE_REQ */
  inject(b, &a->addr, false, GMS_INSTALL_MERGE_VIEW, GMS_F_MERGE_ID, 7, garbage, sizeof(garbage));
  len = view_body(buf, sizeof(buf), &a->addr, 9, mb, 3, false, true);
  inject(b, &a->addr, false, GMS_INSTALL_MERGE_VIEW, GMS_F_MERGE_ID, 7, buf,
         len); /* no merge flag */
  len = view_body(buf, sizeof(buf), &a->addr, 9, (struct rs_addr[]){a->addr, b->addr, b->addr}, 3,
                  false, false);
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len); /* a member twice */
  len = view_body(buf, sizeof(buf), &a->addr, 9, (struct rs_addr[]){a->addr, b->addr, {0, 0}}, 3,
                  false, false);
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len); /* a null member */
  ck_assert_uint_eq(stat(b, "GMS", "bad_dropped") - bad0, 12);

  /* well-formed but out of place: counted as stale, nothing changes */
  len = view_body(buf, sizeof(buf), &a->addr, 2, mb, 3, false, false);
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len); /* older than ours */
  len = view_body(buf, sizeof(buf), &a->addr, 3, mb, 3, false, false);
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len); /* the same id */
  len = view_body(buf, sizeof(buf), &a->addr, 1, mb, 3, false, true);
  uint8_t rsp[1100] = {0};
  memcpy(rsp + 1, buf, len);
  inject(b, &a->addr, false, GMS_JOIN_RSP, 0, 0, rsp, len + 1);          /* not joining */
  inject(b, &a->addr, false, GMS_MERGE_RSP, GMS_F_MERGE_ID, 7, NULL, 0); /* no merge */
  inject(b, &a->addr, false, GMS_CANCEL_MERGE, GMS_F_MERGE_ID, 7, NULL, 0);
  inject(b, &a->addr, false, GMS_LEAVE_RSP, 0, 0, NULL, 0); /* not leaving */
  ck_assert_uint_eq(stat(b, "GMS", "stale_ignored") - stale0, 6);

  /* a view from our coordinator that leaves us out is ignored (we would be merged back) */
  len = view_body(buf, sizeof(buf), &a->addr, 9, (struct rs_addr[]){a->addr, nodes[C].addr}, 2,
                  false, false);
  inject(b, &a->addr, true, GMS_VIEW, 0, 0, buf, len);

  /* at the coordinator: malformed joins and acks */
  inject(a, &x, false, GMS_JOIN_REQ, 0, 0, "\5AB", 3);      /* name longer than its bytes */
  inject(a, &x, false, GMS_JOIN_REQ, 0, 0, "\1AB", 3);      /* trailing byte */
  inject(a, &a->addr, false, GMS_JOIN_REQ, 0, 0, "\1A", 2); /* from ourselves */
  uint8_t longname[RS_NAME_MAX + 3];
  longname[0] = RS_NAME_MAX + 1;
  longname[1] = 0x01; /* a two-byte varint: 128, one more than a name may have */
  memset(longname + 2, 'n', RS_NAME_MAX + 1);
  inject(a, &x, false, GMS_JOIN_REQ, 0, 0, longname, sizeof(longname));
  inject(a, &b->addr, false, GMS_VIEW_ACK, 0, 0, garbage, sizeof(garbage));
  ck_assert_uint_eq(stat(a, "GMS", "bad_dropped") - abad0, 5);

  rs_sim_run_for(sim, 3 * RS_SEC);
  for (const int *i = abc; *i >= 0; i++) {
    ck_assert_uint_eq(nodes[*i].view_id, 3);
    assert_names(&nodes[*i], "A,B,C");
  }
  /* and the group still works */
  start_node(&nodes[D], "D", no_merge3);
  static const int abcd[] = {A, B, C, D, -1};
  wait_agree(abcd, 4, 5 * RS_SEC, "D joined after the garbage");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("gms");
  TCase *tc = tcase_create("gms");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, five_join_one_after_another);
  tcase_add_test(tc, five_start_concurrently);
  tcase_add_test(tc, join_gives_up_after_max_attempts);
  tcase_add_test(tc, join_survives_lost_answers);
  tcase_add_test(tc, view_delivered_after_preceding_messages);
  tcase_add_test(tc, membership_under_loss);
  tcase_add_test(tc, graceful_leave_seen_at_once);
  tcase_add_test(tc, coordinator_leaves_next_takes_over);
  tcase_add_test(tc, member_cut_off_is_removed);
  tcase_add_test(tc, coordinator_crash_next_takes_over);
  tcase_add_test(tc, real_threads_over_loopback);
  tcase_add_test(tc, partition_then_merge3_heals);
  tcase_add_test(tc, injected_merge_timeout_then_success);
  tcase_add_test(tc, duplicate_name_refused_until_it_leaves);
  tcase_add_test(tc, concurrent_duplicates_one_admitted);
  tcase_add_test(tc, ordering_rules);
  tcase_add_test(tc, print_local_addr_logs_at_info);
  tcase_add_test(tc, header_codec);
  tcase_add_test(tc, hostile_messages_dropped);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(suite()); }

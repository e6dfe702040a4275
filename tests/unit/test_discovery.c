/* Discovery: PING in the simulation over LOOPBACK (finding, coordinators, loss, clusters, hostile
 * input, concurrency, stop) and TCPPING (parsing, static peers, real TCP on 127.0.0.1). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "protocols/discard.h"
#include "protocols/discovery.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "stack/view.h"
#include "stack/wire.h"
#include "tests/lib/testlib.h"
#include "transport/tp.h"

#define MAX_NODES 10
#define MAX_FOUND 16

/* ---------------------------------------------------------------------------------------------
 * TESTDISC: a test-only protocol above discovery, standing in for GMS. It has no handlers; the
 * test sends events down from it.
 */
struct testdisc {
  struct rs_protocol base;
};
static const struct rs_protocol_ops testdisc_ops = {
    .name = "TESTDISC",
    .size = sizeof(struct testdisc),
    .description = "test: sends FIND_INITIAL_MBRS, views and BECOME_SERVER down",
};
static const struct rs_protocol_ops *const extra[] = {&testdisc_ops, NULL};

/* What one FIND_INITIAL_MBRS reported. */
struct finder {
  _Atomic unsigned calls;
  rs_time at; /* virtual time of the call (simulation) */
  size_t n;
  struct rs_ping_data found[MAX_FOUND];
  struct rs_protocol *again; /* start another find from the callback (re-entrancy) */
  struct finder *next_finder;
};

static struct rs_sim *sim;

static void on_found(void *arg, const struct rs_ping_data *found, size_t n) {
  struct finder *f = arg;
  f->at = sim ? rs_sim_now(sim) : 0;
  f->n = n < MAX_FOUND ? n : MAX_FOUND;
  memcpy(f->found, found, f->n * sizeof(*found));
  if (f->again) {
    struct rs_event ev = {.type = RS_EV_FIND_INITIAL_MBRS};
    ev.u.find.timeout = RS_SEC;
    ev.u.find.done = on_found;
    ev.u.find.arg = f->next_finder;
    ck_assert_int_eq(proto_down_event(f->again, &ev), 0);
  }
  atomic_fetch_add(&f->calls, 1); /* last: the test thread may read the rest once it sees it */
}

/* ---------------------------------------------------------------------------------------------
 * Nodes.
 */
struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_addr addr;
  char name[16];
  uint64_t delivered;
};

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  ((struct node *)arg)->delivered++;
}

static void open_node_rt(struct node *nd, const char *name, const char *xml, const char *cluster,
                         struct rs_runtime *rt) {
  memset(nd, 0, sizeof(*nd));
  snprintf(nd->name, sizeof(nd->name), "%s", name);
  nd->rt = rt;
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = rt};
  char err[1024];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(nd->ch, &r, nd);
  rc = rs_channel_connect(nd->ch, cluster);
  ck_assert_msg(rc == 0, "connect: %s", rs_channel_last_error(nd->ch));
  nd->addr = rs_channel_address(nd->ch);
}

static void open_node(struct node *nd, const char *name, const char *xml, const char *cluster) {
  open_node_rt(nd, name, xml, cluster, rs_sim_runtime_new(sim, name));
}

static void close_node(struct node *nd) {
  rs_channel_close(nd->ch);
  if (sim) rs_runtime_destroy(nd->rt);
}

static struct rs_protocol *proto_in(struct node *nd, const char *name) {
  for (struct rs_protocol *p = channel_stack(nd->ch)->bottom; p; p = p->up)
    if (!strcmp(p->ops->name, name)) return p;
  ck_abort_msg("no %s in the stack", name);
  return NULL;
}

static struct rs_tp *tp_of(struct node *nd) {
  return (struct rs_tp *)channel_stack(nd->ch)->bottom;
}

static struct rs_protocol *top_of(struct node *nd) { return proto_in(nd, "TESTDISC"); }

static int find_rc(struct node *nd, struct finder *f, rs_time timeout, size_t num_members) {
  struct rs_event ev = {.type = RS_EV_FIND_INITIAL_MBRS};
  ev.u.find.timeout = timeout;
  ev.u.find.num_members = num_members;
  ev.u.find.done = on_found;
  ev.u.find.arg = f;
  return proto_down_event(top_of(nd), &ev);
}

static void find(struct node *nd, struct finder *f, rs_time timeout, size_t num_members) {
  ck_assert_int_eq(find_rc(nd, f, timeout, num_members), 0);
}

/* Installs the view (coordinator first) on every node listed and makes them servers, as GMS
 * would. */
static void give_view(struct node **members, size_t n) {
  struct rs_addr addrs[MAX_NODES];
  for (size_t i = 0; i < n; i++)
    addrs[i] = members[i]->addr;
  struct rs_view_data *v = view_new(&addrs[0], 1, n, addrs, NULL);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++) {
    struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = v};
    proto_down_event(top_of(members[i]), &ev);
    struct rs_event bs = {.type = RS_EV_BECOME_SERVER};
    proto_down_event(top_of(members[i]), &bs);
  }
  view_unref(v);
}

/* --- stats ----------------------------------------------------------------------------------- */

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

static uint64_t stat_of(struct node *nd, const char *proto, const char *name) {
  struct rs_protocol *p = proto_in(nd, proto);
  struct stat_query q = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.found, "no stat %s", name);
  return q.v;
}
#define PSTAT(nd, name) stat_of((nd), "PING", (name))

/* --- waiting and checking -------------------------------------------------------------------- */

struct finders {
  struct finder **f;
  size_t n;
};
static bool all_done(void *arg) {
  struct finders *fs = arg;
  for (size_t i = 0; i < fs->n; i++)
    if (!atomic_load(&fs->f[i]->calls)) return false;
  return true;
}
static void wait_done(struct finder **f, size_t n, rs_time bound) {
  struct finders fs = {f, n};
  ck_assert_msg(rs_sim_run_until(sim, all_done, &fs, bound), "discovery did not complete");
}
static void wait_one(struct finder *f, rs_time bound) { wait_done(&f, 1, bound); }

static const struct rs_ping_data *found_of(const struct finder *f, const struct node *nd) {
  for (size_t i = 0; i < f->n; i++)
    if (rs_addr_eq(&f->found[i].addr, &nd->addr)) return &f->found[i];
  return NULL;
}

/* f reported nd with its name and physical address, and these flags. */
static void assert_found(const struct finder *f, struct node *nd, bool coord, bool server) {
  const struct rs_ping_data *pd = found_of(f, nd);
  ck_assert_msg(pd, "%s not found", nd->name);
  ck_assert_str_eq(pd->name, nd->name);
  ck_assert_msg(phys_eq(&pd->phys, &tp_of(nd)->local_phys), "%s: wrong physical address", nd->name);
  ck_assert_msg(pd->is_coord == coord, "%s: is_coord %d", nd->name, pd->is_coord);
  ck_assert_msg(pd->is_server == server, "%s: is_server %d", nd->name, pd->is_server);
}

static void setup(void) {
  sim = rs_sim_new(4242);
  stack_set_extra_protocols(extra);
}
static void teardown(void) {
  stack_set_extra_protocols(NULL);
  rs_sim_free(sim);
  sim = NULL;
}

#define PING_XML(discard, ping)                                                                    \
  "<config><LOOPBACK/><DISCARD " discard "/><PING " ping "/><TESTDISC/></config>"

static void open_n(struct node *nd, size_t n, const char *xml, const char *cluster) {
  static const char *const names[MAX_NODES] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"};
  for (size_t i = 0; i < n; i++)
    open_node(&nd[i], names[i], xml, cluster);
}
static void close_n(struct node *nd, size_t n) {
  for (size_t i = 0; i < n; i++)
    close_node(&nd[i]);
}

/* --- (1) five members find each other -------------------------------------------------------- */

START_TEST(five_members_find_each_other) {
  struct node nd[5];
  static struct finder f[5];
  memset(f, 0, sizeof(f));
  open_n(nd, 5, PING_XML("", ""), "disc");
  rs_time t0 = rs_sim_now(sim);
  struct finder *fp[5];
  for (int i = 0; i < 5; i++) {
    find(&nd[i], &f[i], 0, 0); /* 0: PING's timeout, 2s by default */
    fp[i] = &f[i];
  }
  wait_done(fp, 5, 5 * RS_SEC);
  rs_sim_run_for(sim, 3 * RS_SEC); /* done is never called twice */
  for (int i = 0; i < 5; i++) {
    ck_assert_uint_eq(atomic_load(&f[i].calls), 1);
    ck_assert_uint_eq(f[i].at - t0, 2 * RS_SEC); /* nobody is coordinator: the whole timeout */
    ck_assert_uint_eq(f[i].n, 4);
    ck_assert_ptr_null(found_of(&f[i], &nd[i])); /* never ourselves */
    for (int j = 0; j < 5; j++)
      if (j != i) assert_found(&f[i], &nd[j], false, false);
    /* The transport learned every member's name and physical address. */
    for (int j = 0; j < 5; j++) {
      if (j == i) continue;
      const struct tp_peer *peer = tp_lookup(tp_of(&nd[i]), &nd[j].addr);
      ck_assert_ptr_nonnull(peer);
      ck_assert_ptr_nonnull(peer->name);
      ck_assert_str_eq(peer->name, nd[j].name);
      ck_assert(phys_eq(&peer->phys, &tp_of(&nd[j])->local_phys));
    }
    ck_assert_uint_eq(PSTAT(&nd[i], "discovery_runs"), 1);
    ck_assert_uint_eq(PSTAT(&nd[i], "finds_timed_out"), 1);
    ck_assert_uint_eq(PSTAT(&nd[i], "requests_sent"), 1);
    ck_assert_uint_eq(PSTAT(&nd[i], "requests_received"), 4);
    ck_assert_uint_eq(PSTAT(&nd[i], "responses_sent"), 4);
    ck_assert_uint_eq(PSTAT(&nd[i], "responses_received"), 4);
    ck_assert_uint_eq(PSTAT(&nd[i], "members_found"), 4);
    ck_assert_uint_eq(PSTAT(&nd[i], "finds_outstanding"), 0);
    ck_assert_uint_eq(nd[i].delivered, 0); /* discovery messages never reach the application */
  }
  close_n(nd, 5);
}
END_TEST

/* --- (2) coordinator and servers ------------------------------------------------------------- */

START_TEST(first_of_a_view_is_reported_coordinator) {
  struct node nd[5];
  static struct finder f;
  memset(&f, 0, sizeof(f));
  open_n(nd, 5, PING_XML("", "break_on_coord_rsp=\"false\""), "disc");
  struct node *view[] = {&nd[1], &nd[0], &nd[2]}; /* B is first: B is the coordinator */
  give_view(view, 3);
  find(&nd[3], &f, RS_SEC, 0);
  wait_one(&f, 2 * RS_SEC);
  ck_assert_uint_eq(f.n, 4);
  assert_found(&f, &nd[1], true, true);
  assert_found(&f, &nd[0], false, true);
  assert_found(&f, &nd[2], false, true);
  assert_found(&f, &nd[4], false, false);
  close_n(nd, 5);
}
END_TEST

START_TEST(break_on_coord_rsp_stops_at_the_coordinator) {
  struct node nd[5];
  static struct finder f, g;
  memset(&f, 0, sizeof(f));
  memset(&g, 0, sizeof(g));
  open_n(nd, 5, PING_XML("", ""), "disc");
  struct node *view[] = {&nd[0], &nd[1], &nd[2]};
  give_view(view, 3);
  rs_time t0 = rs_sim_now(sim);
  find(&nd[3], &f, 2 * RS_SEC, 0);
  wait_one(&f, 3 * RS_SEC);
  ck_assert_msg(f.at - t0 < 100 * RS_MS, "took %llu ns", (unsigned long long)(f.at - t0));
  assert_found(&f, &nd[0], true, true);
  ck_assert_uint_eq(PSTAT(&nd[3], "finds_completed_early"), 1);
  /* Without a coordinator in sight, num_members ends it early too. */
  t0 = rs_sim_now(sim);
  find(&nd[4], &g, 2 * RS_SEC, 2);
  wait_one(&g, 3 * RS_SEC);
  ck_assert(g.at - t0 < 100 * RS_MS);
  ck_assert_uint_ge(g.n, 2);
  close_n(nd, 5);
}
END_TEST

START_TEST(num_members_ends_a_find_early) {
  struct node nd[5];
  static struct finder f;
  memset(&f, 0, sizeof(f));
  open_n(nd, 5, PING_XML("", "break_on_coord_rsp=\"false\""), "disc");
  rs_time t0 = rs_sim_now(sim);
  find(&nd[0], &f, 2 * RS_SEC, 3);
  wait_one(&f, 3 * RS_SEC);
  ck_assert(f.at - t0 < 100 * RS_MS);
  ck_assert_uint_ge(f.n, 3);
  ck_assert_uint_eq(PSTAT(&nd[0], "finds_completed_early"), 1);
  close_n(nd, 5);
}
END_TEST

/* --- (3) loss: more runs find more ----------------------------------------------------------- */

/* Fraction of (finder, member) pairs found by 8 members under 50% loss of received messages. */
static double found_fraction(const char *runs, const char *cluster) {
  enum { N = 8 };
  char xml[256];
  snprintf(xml, sizeof(xml), PING_XML("up=\"0.5\"", "num_discovery_runs=\"%s\""), runs);
  struct node nd[N];
  static struct finder f[N];
  memset(f, 0, sizeof(f));
  open_n(nd, N, xml, cluster);
  struct finder *fp[N];
  for (int i = 0; i < N; i++) {
    find(&nd[i], &f[i], 3 * RS_SEC, 0);
    fp[i] = &f[i];
  }
  wait_done(fp, N, 5 * RS_SEC);
  size_t pairs = 0;
  for (int i = 0; i < N; i++)
    pairs += f[i].n;
  if (!strcmp(runs, "3"))
    for (int i = 0; i < N; i++)
      ck_assert_uint_eq(PSTAT(&nd[i], "requests_sent"), 3);
  close_n(nd, N);
  return (double)pairs / (N * (N - 1));
}

START_TEST(lossy_network_more_runs_find_more) {
  double one = found_fraction("1", "lossy1");
  double three = found_fraction("3", "lossy3");
  fprintf(stderr,
          "lossy: 50%% of received messages dropped: found %.0f%% with 1 run, %.0f%% with 3\n",
          one * 100, three * 100);
  ck_assert_msg(three >= 0.85, "only %.0f%% found with 3 runs", three * 100);
  ck_assert_msg(three > one, "3 runs (%.2f) no better than 1 (%.2f)", three, one);
}
END_TEST

/* --- (4) other clusters ------------------------------------------------------------------------
 */

START_TEST(other_clusters_are_not_found) {
  struct node a[3], x[2];
  static struct finder fa, fx;
  memset(&fa, 0, sizeof(fa));
  memset(&fx, 0, sizeof(fx));
  open_n(a, 3, PING_XML("", ""), "disc");
  open_node(&x[0], "X", PING_XML("", ""), "other");
  open_node(&x[1], "Y", PING_XML("", ""), "other");
  find(&a[0], &fa, RS_SEC, 0);
  find(&x[0], &fx, RS_SEC, 0);
  struct finder *fp[] = {&fa, &fx};
  wait_done(fp, 2, 2 * RS_SEC);
  ck_assert_uint_eq(fa.n, 2);
  assert_found(&fa, &a[1], false, false);
  assert_found(&fa, &a[2], false, false);
  ck_assert_uint_eq(fx.n, 1);
  assert_found(&fx, &x[1], false, false);
  ck_assert_uint_eq(PSTAT(&x[1], "requests_received"), 1);
  ck_assert_uint_eq(PSTAT(&a[1], "requests_received"), 1);
  ck_assert_ptr_null(tp_lookup(tp_of(&a[0]), &x[0].addr));
  close_n(a, 3);
  close_n(x, 2);
}
END_TEST

/* --- (5) many finds at once, from the callback, and stop ------------------------------------ */

START_TEST(concurrent_finds_each_complete_once) {
  struct node nd[3];
  static struct finder f1, f3, fn, fa, fb;
  memset(&f1, 0, sizeof(f1));
  memset(&f3, 0, sizeof(f3));
  memset(&fn, 0, sizeof(fn));
  memset(&fa, 0, sizeof(fa));
  memset(&fb, 0, sizeof(fb));
  open_n(nd, 3, PING_XML("", ""), "disc");
  rs_time t0 = rs_sim_now(sim);
  find(&nd[0], &f3, 3 * RS_SEC, 0);
  find(&nd[0], &f1, RS_SEC, 0);
  find(&nd[0], &fn, 3 * RS_SEC, 1);
  fa.again = top_of(&nd[0]); /* starts fb from its callback */
  fa.next_finder = &fb;
  find(&nd[0], &fa, 2 * RS_SEC, 0);
  struct finder *all[] = {&f1, &f3, &fn, &fa, &fb};
  wait_done(all, 5, 5 * RS_SEC);
  rs_sim_run_for(sim, 2 * RS_SEC);
  for (int i = 0; i < 5; i++)
    ck_assert_uint_eq(atomic_load(&all[i]->calls), 1);
  ck_assert(fn.at - t0 < 100 * RS_MS);
  ck_assert_uint_eq(fn.n, 1);
  ck_assert_uint_eq(f1.at - t0, RS_SEC);
  ck_assert_uint_eq(fa.at - t0, 2 * RS_SEC);
  ck_assert_uint_eq(fb.at - t0, 3 * RS_SEC);
  ck_assert_uint_eq(f3.at - t0, 3 * RS_SEC);
  ck_assert_uint_eq(f1.n, 2);
  ck_assert_uint_eq(f3.n, 2);
  ck_assert_uint_eq(fb.n, 2);
  ck_assert_uint_eq(PSTAT(&nd[0], "discovery_runs"), 5);
  ck_assert_uint_eq(PSTAT(&nd[0], "finds_outstanding"), 0);
  close_n(nd, 3);
}
END_TEST

START_TEST(stop_cancels_outstanding_finds) {
  struct node nd[2];
  static struct finder f, g, h;
  memset(&f, 0, sizeof(f));
  memset(&g, 0, sizeof(g));
  memset(&h, 0, sizeof(h));
  open_n(nd, 2, PING_XML("", ""), "disc");
  discard_set_all(proto_in(&nd[0], "DISCARD"), true); /* B's answers never arrive */
  find(&nd[0], &f, 2 * RS_SEC, 0);
  find(&nd[0], &g, 2 * RS_SEC, 1);
  ck_assert_int_eq(rs_channel_disconnect(nd[0].ch), 0);
  rs_sim_run_for(sim, 3 * RS_SEC);
  ck_assert_uint_eq(atomic_load(&f.calls), 0);
  ck_assert_uint_eq(PSTAT(&nd[0], "finds_cancelled"), 2);
  ck_assert_uint_eq(PSTAT(&nd[0], "finds_outstanding"), 0);
  /* A stopped stack refuses; after a new connect discovery works again. */
  ck_assert_int_eq(find_rc(&nd[0], &h, RS_SEC, 0), RS_ENOTCONN);
  discard_set_all(proto_in(&nd[0], "DISCARD"), false);
  ck_assert_int_eq(rs_channel_connect(nd[0].ch, "disc"), 0);
  nd[0].addr = rs_channel_address(nd[0].ch);
  find(&nd[0], &h, RS_SEC, 0);
  wait_one(&h, 2 * RS_SEC);
  ck_assert_uint_eq(h.n, 1);
  assert_found(&h, &nd[1], false, false);
  ck_assert_uint_eq(atomic_load(&g.calls), 0);
  close_n(nd, 2);
}
END_TEST

START_TEST(too_many_outstanding_finds_are_refused) {
  struct node nd[1];
  static struct finder f[DISCOVERY_MAX_FINDS + 1];
  memset(f, 0, sizeof(f));
  open_n(nd, 1, PING_XML("", ""), "disc");
  for (int i = 0; i < DISCOVERY_MAX_FINDS; i++)
    find(&nd[0], &f[i], RS_SEC, 0);
  ck_assert_int_eq(find_rc(&nd[0], &f[DISCOVERY_MAX_FINDS], RS_SEC, 0), RS_EAGAIN);
  rs_sim_run_for(sim, 2 * RS_SEC);
  for (int i = 0; i < DISCOVERY_MAX_FINDS; i++)
    ck_assert_uint_eq(atomic_load(&f[i].calls), 1);
  ck_assert_uint_eq(atomic_load(&f[DISCOVERY_MAX_FINDS].calls), 0);
  ck_assert_uint_eq(PSTAT(&nd[0], "finds_refused"), 1);
  close_n(nd, 1);
}
END_TEST

/* --- (6) who answers, and when --------------------------------------------------------------- */

START_TEST(stagger_timeout_spreads_answers_coordinator_first) {
  struct node nd[5];
  static struct finder f;
  memset(&f, 0, sizeof(f));
  open_n(nd, 5, PING_XML("", "break_on_coord_rsp=\"false\" stagger_timeout=\"900ms\""), "disc");
  struct node *view[] = {&nd[0], &nd[1], &nd[2]};
  give_view(view, 3);
  rs_time t0 = rs_sim_now(sim);
  find(&nd[3], &f, 2 * RS_SEC, 4);
  wait_one(&f, 3 * RS_SEC);
  /* A answers at once, B after 300ms, C after 600ms, E (no view) within 900ms. */
  ck_assert_uint_eq(f.n, 4);
  ck_assert(rs_addr_eq(&f.found[0].addr, &nd[0].addr));
  ck_assert_msg(f.at - t0 >= 600 * RS_MS && f.at - t0 <= 900 * RS_MS, "done after %llu ms",
                (unsigned long long)((f.at - t0) / RS_MS));
  size_t b = found_of(&f, &nd[1]) - f.found, c = found_of(&f, &nd[2]) - f.found;
  ck_assert_uint_lt(b, c);
  close_n(nd, 5);
}
END_TEST

START_TEST(max_rank_to_reply_and_leaving_members_stay_silent) {
  struct node nd[5];
  static struct finder f, g;
  memset(&f, 0, sizeof(f));
  memset(&g, 0, sizeof(g));
  open_n(nd, 5, PING_XML("", "break_on_coord_rsp=\"false\" max_rank_to_reply=\"1\""), "disc");
  struct node *view[] = {&nd[0], &nd[1], &nd[2]};
  give_view(view, 3);
  find(&nd[3], &f, RS_SEC, 0);
  wait_one(&f, 2 * RS_SEC);
  ck_assert_uint_eq(f.n, 2); /* the coordinator A, and E which has no view */
  assert_found(&f, &nd[0], true, true);
  assert_found(&f, &nd[4], false, false);
  ck_assert_uint_eq(PSTAT(&nd[1], "not_answered"), 1);
  /* A member that is leaving answers nothing. */
  struct rs_event ev = {.type = RS_EV_DISCONNECT};
  proto_down_event(top_of(&nd[4]), &ev);
  find(&nd[3], &g, RS_SEC, 0);
  wait_one(&g, 2 * RS_SEC);
  ck_assert_uint_eq(g.n, 1);
  assert_found(&g, &nd[0], true, true);
  ck_assert_uint_eq(PSTAT(&nd[4], "not_answered"), 1);
  close_n(nd, 5);
}
END_TEST

/* --- (7) hostile input ----------------------------------------------------------------------- */

static struct rs_msg *forge(uint16_t id, uint8_t type, const struct rs_addr *src,
                            const struct rs_ping_data *pd) {
  const struct rs_header_type *t = registry_header_type(id);
  ck_assert_ptr_nonnull(t);
  struct rs_msg *m = rs_msg_new();
  struct discovery_hdr *h = rs_msg_put_header(m, t);
  h->type = type;
  if (pd) {
    h->data = malloc(sizeof(*pd));
    *h->data = *pd;
  }
  m->src = *src;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  return m;
}

/* Header bytes chosen by the test under PING's id, for a frame the decoder must refuse. */
static const uint8_t *raw_bytes;
static size_t raw_len;
static size_t raw_size(const void *h) { return raw_len; }
static void raw_write(const void *h, struct rs_writer *w) { put_bytes(w, raw_bytes, raw_len); }
static const struct rs_header_type raw_ping = {
    .id = 5, .name = "raw", .size = 1, .wire_size = raw_size, .write = raw_write};

static void receive_raw_frame(struct node *to, const struct rs_addr *src, const uint8_t *b,
                              size_t n) {
  raw_bytes = b;
  raw_len = n;
  struct rs_msg *m = rs_msg_new();
  rs_msg_put_header(m, &raw_ping);
  struct rs_writer w;
  writer_init_grow(&w, 256);
  wire_encode_frame(&w, "disc", src, NULL, &m, 1);
  ck_assert_int_eq(w.err, 0);
  struct rs_buf *buf = rs_buf_new(w.len);
  memcpy(buf->data, w.p, w.len);
  tp_receive(tp_of(to), buf, 0, w.len, NULL);
  rs_buf_unref(buf);
  free(w.p);
  rs_msg_free(m);
}

START_TEST(hostile_headers_are_dropped_and_counted) {
  struct node nd[2];
  open_n(nd, 2, PING_XML("", ""), "disc");
  struct node *c = &nd[1];
  struct rs_protocol *below = proto_in(c, "DISCARD");
  struct rs_addr forger = {0x1234, 0x5678}, other = {0x9999, 0x1};
  struct rs_ping_data pd = {
      .addr = forger, .name = "F", .phys = {.family = RS_PHYS_LOOP, .port = 999}};
  uint64_t bad0 = PSTAT(c, "bad_dropped"), rsp0 = PSTAT(c, "responses_sent");
  proto_up_msg(below, forge(5, DISCOVERY_GET_MBRS_REQ, &forger, NULL)); /* no ping data */
  proto_up_msg(below, forge(5, 7, &forger, &pd));                       /* unknown type */
  proto_up_msg(below, forge(5, DISCOVERY_GET_MBRS_REQ, &other, &pd));   /* not its sender's */
  struct rs_ping_data none = pd;
  none.addr = RS_ADDR_NULL;
  proto_up_msg(below, forge(5, DISCOVERY_GET_MBRS_RSP, &RS_ADDR_NULL, &none)); /* no address */
  struct rs_ping_data me = pd;
  me.addr = c->addr;
  proto_up_msg(below, forge(5, DISCOVERY_GET_MBRS_REQ, &c->addr, &me)); /* claims to be us */
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(PSTAT(c, "bad_dropped"), bad0 + 5);
  ck_assert_uint_eq(PSTAT(c, "responses_sent"), rsp0);
  ck_assert_uint_eq(PSTAT(c, "requests_received"), 0);
  ck_assert_ptr_null(tp_lookup(tp_of(c), &forger));
  ck_assert_ptr_null(tp_lookup(tp_of(c), &other));
  ck_assert_uint_eq(c->delivered, 0);
  /* Malformed header bytes: the frame decoder drops the whole frame (the transport counts). */
  uint64_t mal0 = tp_of(c)->stats.dropped_malformed;
  const uint8_t bad_type[] = {9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0};
  uint8_t long_name[1 + 16 + 2 + 200 + 1 + 1];
  memset(long_name, 'x', sizeof(long_name));
  long_name[0] = 1;
  long_name[17] = 0xc8; /* 200 as a varint: over RS_NAME_MAX */
  long_name[18] = 0x01;
  const uint8_t truncated[] = {1, 0, 0};
  receive_raw_frame(c, &forger, bad_type, sizeof(bad_type));
  receive_raw_frame(c, &forger, long_name, sizeof(long_name));
  receive_raw_frame(c, &forger, truncated, sizeof(truncated));
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(tp_of(c)->stats.dropped_malformed, mal0 + 3);
  ck_assert_uint_eq(PSTAT(c, "requests_received"), 0);
  /* A well-formed request in a batch with an application message: discovery takes its own
   * message and passes the other up. */
  struct rs_batch b;
  rs_batch_init(&b);
  b.src = forger;
  b.dest = c->addr;
  rs_batch_add(&b, forge(5, DISCOVERY_GET_MBRS_REQ, &forger, &pd));
  struct rs_msg *app = rs_msg_new_copy("hi", 2);
  app->src = forger;
  rs_batch_add(&b, app);
  rs_batch_add(&b, forge(9, DISCOVERY_GET_MBRS_REQ, &forger, &pd)); /* TCPPING's: not here */
  proto_up_batch(below, &b);
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(c->delivered, 1);
  ck_assert_uint_eq(PSTAT(c, "foreign_dropped"), 1);
  ck_assert_uint_eq(PSTAT(c, "requests_received"), 1);
  ck_assert_uint_eq(PSTAT(c, "responses_sent"), rsp0 + 1);
  const struct tp_peer *learned = tp_lookup(tp_of(c), &forger);
  ck_assert_ptr_nonnull(learned);
  ck_assert_str_eq(learned->name, "F");
  ck_assert_uint_eq(PSTAT(c, "bad_dropped"), bad0 + 5);
  close_n(nd, 2);
}
END_TEST

static bool decode(const uint8_t *b, size_t n, struct discovery_hdr *h) {
  const struct rs_header_type *t = registry_header_type(5);
  memset(h, 0, sizeof(*h));
  struct rs_reader r;
  reader_init(&r, b, n);
  t->read(h, &r);
  return !r.err && r.pos == n;
}

START_TEST(header_bytes) {
  const struct rs_header_type *ping = registry_header_type(5), *tcpping = registry_header_type(9);
  ck_assert_ptr_nonnull(ping);
  ck_assert_ptr_nonnull(tcpping);
  ck_assert_uint_le(ping->size, RS_HDR_INLINE);
  struct rs_ping_data pd = {.addr = {0x0102030405060708ull, 0x090a0b0c0d0e0f10ull},
                            .name = "A",
                            .phys = {.family = RS_PHYS_IP4, .port = 7800, .ip = {127, 0, 0, 1}},
                            .is_coord = true,
                            .is_server = true};
  struct discovery_hdr h = {.data = &pd, .type = DISCOVERY_GET_MBRS_RSP};
  uint8_t buf[64];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  ping->write(&h, &w);
  static const uint8_t want[] = {0x02, 1,  2,  3,    4,   5,    6,   7, 8, 9, 10,   11,   12,  13,
                                 14,   15, 16, 0x01, 'A', 0x04, 127, 0, 0, 1, 0x1e, 0x78, 0x03};
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, sizeof(want));
  ck_assert_uint_eq(ping->wire_size(&h), sizeof(want));
  ck_assert_mem_eq(buf, want, sizeof(want));
  struct discovery_hdr back;
  ck_assert(decode(buf, w.len, &back));
  ck_assert_uint_eq(back.type, DISCOVERY_GET_MBRS_RSP);
  ck_assert(rs_addr_eq(&back.data->addr, &pd.addr));
  ck_assert_str_eq(back.data->name, "A");
  ck_assert(phys_eq(&back.data->phys, &pd.phys));
  ck_assert(back.data->is_coord && back.data->is_server);
  /* A copied message owns its own ping data. */
  struct rs_msg *m = rs_msg_new();
  struct discovery_hdr *mh = rs_msg_put_header(m, tcpping);
  *mh = back;
  struct rs_msg *copy = rs_msg_copy(m);
  struct discovery_hdr *ch = rs_msg_header(copy, 9);
  ck_assert_ptr_ne(ch->data, mh->data);
  ck_assert_str_eq(ch->data->name, "A");
  rs_msg_free(m);
  rs_msg_free(copy);
  /* Refused: type 0 and 3, an unknown flag bit, an unknown address family, a name with a NUL,
   * trailing or missing bytes. */
  struct {
    size_t at;
    uint8_t v;
  } bad[] = {{0, 0}, {0, 3}, {26, 0x04}, {19, 9}, {18, 0}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t b[sizeof(want)];
    memcpy(b, want, sizeof(want));
    b[bad[i].at] = bad[i].v;
    ck_assert_msg(!decode(b, sizeof(b), &back), "bad[%zu] accepted", i);
    ck_assert_ptr_null(back.data);
  }
  uint8_t longer[sizeof(want) + 1];
  memcpy(longer, want, sizeof(want));
  longer[sizeof(want)] = 0;
  ck_assert(!decode(longer, sizeof(longer), &back)); /* the frame decoder refuses leftovers */
  free(back.data);
  for (size_t n = 0; n < sizeof(want); n++) {
    ck_assert_msg(!decode(want, n, &back), "truncated to %zu accepted", n);
    ck_assert_ptr_null(back.data);
  }
  char text[256];
  ck_assert_int_gt(ping->print(&h, text, sizeof(text)), 0);
  ck_assert_ptr_nonnull(strstr(text, "GET_MBRS_RSP"));
}
END_TEST

START_TEST(jgroups_attributes_are_accepted) {
  struct node nd[1];
  open_n(nd, 1,
         "<config><LOOPBACK/><PING timeout=\"3000\" break_on_coord_rsp=\"true\" "
         "return_entire_cache=\"false\" use_disk_cache=\"false\" num_initial_members=\"3\" "
         "async_discovery=\"true\" max_members_in_discovery_request=\"500\" "
         "discovery_rsp_expiry_time=\"60000\" send_cache_on_join=\"true\" "
         "num_discovery_runs=\"2\" stagger_timeout=\"0\" max_rank_to_reply=\"0\"/>"
         "<TESTDISC/></config>",
         "disc");
  close_n(nd, 1);
}
END_TEST

/* --- (8) TCPPING: parsing and static peers ---------------------------------------------------- */

static const char *open_error(const char *xml) {
  static char err[1024];
  struct rs_channel *ch = NULL;
  struct rs_channel_opts o = {.config_xml = xml, .name = "T", .runtime = NULL};
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "T");
  o.runtime = rt;
  int rc = rs_channel_open(&ch, &o, err, sizeof(err));
  if (rc == 0) {
    rs_channel_close(ch);
    err[0] = '\0';
  }
  rs_runtime_destroy(rt);
  return err;
}

static char *write_file(const char *text) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/test_discovery_%d_XXXXXX", (int)getpid());
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

START_TEST(initial_hosts_errors_name_the_entry) {
  static const struct {
    const char *value, *message;
  } cases[] = {
      {"127.0.0.1[x]", "TCPPING: initial_hosts: '127.0.0.1[x]' is not host[port]"},
      {"127.0.0.1[7800],127.0.0.1", "TCPPING: initial_hosts: '127.0.0.1' is not host[port]"},
      {"h[0]", "TCPPING: initial_hosts: 'h[0]' is not host[port]"},
      {"h[65536]", "TCPPING: initial_hosts: 'h[65536]' is not host[port]"},
      {"[7800]", "TCPPING: initial_hosts: '[7800]' is not host[port]"},
      {"::1:7800", "TCPPING: initial_hosts: '::1:7800' is not host[port]"},
      {"[::1]7800", "TCPPING: initial_hosts: '[::1]7800' is not host[port]"},
      {"a b[7800]", "TCPPING: initial_hosts: 'a b[7800]' is not host[port]"},
      {"h:", "TCPPING: initial_hosts: 'h:' is not host[port]"},
  };
  char xml[512];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(xml, sizeof(xml), "<config><LOOPBACK/><TCPPING initial_hosts=\"%s\"/></config>",
             cases[i].value);
    const char *err = open_error(xml);
    ck_assert_msg(strstr(err, cases[i].message), "case %zu: got '%s'", i, err);
  }
  char *path = write_file("# members\n127.0.0.1[7800]\n\nnonsense # line 4\n");
  snprintf(xml, sizeof(xml), "<config><LOOPBACK/><TCPPING initial_hosts_file=\"%s\"/></config>",
           path);
  const char *err = open_error(xml);
  char want[256];
  snprintf(want, sizeof(want), "TCPPING: initial_hosts_file: %s:4: 'nonsense' is not host[port]",
           path);
  ck_assert_msg(strstr(err, want), "got '%s'", err);
  unlink(path);
  snprintf(xml, sizeof(xml),
           "<config><LOOPBACK/><TCPPING initial_hosts_file=\"/nonexistent/hosts\"/></config>");
  err = open_error(xml);
  ck_assert_msg(strstr(err, "TCPPING: initial_hosts_file: cannot read '/nonexistent/hosts'"),
                "got '%s'", err);
  /* Attribute ranges are the attribute table's. */
  err = open_error(
      "<config><LOOPBACK/><TCPPING initial_hosts=\"h[1]\" port_range=\"1001\"/></config>");
  ck_assert_msg(strstr(err, "port_range"), "got '%s'", err);
}
END_TEST

static bool has_static(const struct rs_tp *tp, const char *addr) {
  struct rs_phys want;
  ck_assert_int_eq(phys_parse(&want, addr), 0);
  for (size_t i = 0; i < tp->n_static; i++)
    if (phys_eq(&tp->static_peers[i], &want)) return true;
  return false;
}

START_TEST(initial_hosts_become_static_peers) {
  char *path =
      write_file("10.0.0.1[7000] # first\n# a comment line\n\n10.0.0.2[7000], 10.0.0.3:7000\n");
  char xml[512];
  snprintf(
      xml, sizeof(xml),
      "<config><LOOPBACK/><TCPPING initial_hosts=\"127.0.0.1[7800],localhost:7900,[::1]:8000\" "
      "port_range=\"2\" initial_hosts_file=\"%s\" break_on_coord_rsp=\"false\"/>"
      "<TESTDISC/></config>",
      path);
  struct node nd[2];
  open_n(nd, 2, xml, "tcpping");
  unlink(path);
  struct rs_tp *tp = tp_of(&nd[0]);
  ck_assert_uint_eq(tp->n_static, 18); /* 6 hosts x ports p..p+2 */
  ck_assert_uint_eq(stat_of(&nd[0], "TCPPING", "initial_hosts"), 6);
  ck_assert_uint_eq(stat_of(&nd[0], "TCPPING", "static_peers_added"), 18);
  ck_assert_uint_eq(stat_of(&nd[0], "TCPPING", "unresolved_hosts"), 0);
  const char *want[] = {"127.0.0.1:7800", "127.0.0.1:7802", "127.0.0.1:7900", "127.0.0.1:7901",
                        "[::1]:8000",     "[::1]:8002",     "10.0.0.1:7000",  "10.0.0.3:7002"};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    ck_assert_msg(has_static(tp, want[i]), "%s missing", want[i]);
  ck_assert(!has_static(tp, "127.0.0.1:7803"));
  /* TCPPING discovers like PING (its own header id) over a transport that multicasts. */
  static struct finder f;
  memset(&f, 0, sizeof(f));
  find(&nd[0], &f, RS_SEC, 0);
  wait_one(&f, 2 * RS_SEC);
  ck_assert_uint_eq(f.n, 1);
  assert_found(&f, &nd[1], false, false);
  /* A second connect adds nothing twice. */
  ck_assert_int_eq(rs_channel_disconnect(nd[0].ch), 0);
  ck_assert_int_eq(rs_channel_connect(nd[0].ch, "tcpping"), 0);
  ck_assert_uint_eq(tp->n_static, 18);
  close_n(nd, 2);
}
END_TEST

/* --- (9) TCPPING over real TCP on 127.0.0.1 -------------------------------------------------- */

/* A base port with n free TCP and UDP ports above it (as tests/unit/test_transport.c). */
static int free_ports(int n) {
  static unsigned seed;
  if (!seed) seed = (unsigned)getpid() ^ (unsigned)time(NULL);
  for (int attempt = 0; attempt < 200; attempt++) {
    int base = 20000 + (int)(rand_r(&seed) % 35000u);
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
      for (int type = SOCK_STREAM; type <= SOCK_DGRAM && ok; type++) {
        int fd = socket(AF_INET, type, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + i))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
      }
    if (ok) return base;
  }
  ck_abort_msg("no free ports");
  return 0;
}

struct loop_find {
  struct node *nd;
  struct finder *f;
  _Atomic int rc;
  _Atomic bool started;
};

static void find_on_loop(void *arg) {
  struct loop_find *lf = arg;
  atomic_store(&lf->rc, find_rc(lf->nd, lf->f, 5 * RS_SEC, 2));
  atomic_store(&lf->started, true);
}

static bool started(void *arg) { return atomic_load(&((struct loop_find *)arg)->started); }
static bool finder_done(void *arg) { return atomic_load(&((struct finder *)arg)->calls) > 0; }

START_TEST(tcpping_over_tcp_finds_members) {
  enum { N = 3 };
  rs_sim_free(sim); /* real threads and sockets here */
  sim = NULL;
  int base = free_ports(N);
  char *path = NULL;
  {
    char hosts[256];
    snprintf(hosts, sizeof(hosts), "# all three\n127.0.0.1[%d]\n127.0.0.1[%d] localhost[%d]\n",
             base, base + 1, base + 2);
    path = strdup(write_file(hosts));
  }
  struct node nd[N];
  static struct finder f[N];
  memset(f, 0, sizeof(f));
  const char *names[N] = {"A", "B", "C"};
  for (int i = 0; i < N; i++) {
    char xml[1024], list[256];
    if (i < 2)
      snprintf(list, sizeof(list), "initial_hosts=\"127.0.0.1[%d],127.0.0.1[%d],localhost[%d]\"",
               base, base + 1, base + 2);
    else
      snprintf(list, sizeof(list), "initial_hosts_file=\"%s\"", path);
    snprintf(xml, sizeof(xml),
             "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "diag.enabled=\"false\"/><TCPPING %s port_range=\"0\"/><TESTDISC/></config>",
             base + i, list);
    open_node_rt(&nd[i], names[i], xml, "tcpping", NULL);
    nd[i].rt = channel_runtime(nd[i].ch);
  }
  uint64_t t0 = test_now_ms();
  static struct loop_find lf[N];
  for (int i = 0; i < N; i++) {
    lf[i] = (struct loop_find){.nd = &nd[i], .f = &f[i]};
    ck_assert_int_eq(rs_runtime_call(nd[i].rt, find_on_loop, &lf[i]), 0);
    WAIT_UNTIL(started, &lf[i], 5000, "find started");
    ck_assert_int_eq(atomic_load(&lf[i].rc), 0);
  }
  for (int i = 0; i < N; i++)
    WAIT_UNTIL(finder_done, &f[i], 10000, "TCPPING discovery");
  fprintf(stderr, "tcpping over TCP: 3 members found each other in %llu ms\n",
          (unsigned long long)(test_now_ms() - t0));
  for (int i = 0; i < N; i++) {
    ck_assert_uint_eq(f[i].n, 2);
    for (int j = 0; j < N; j++) {
      if (j == i) continue;
      const struct rs_ping_data *pd = found_of(&f[i], &nd[j]);
      ck_assert_msg(pd, "%s did not find %s", names[i], names[j]);
      ck_assert_str_eq(pd->name, names[j]);
      char want[32], got[RS_PHYS_STRLEN];
      snprintf(want, sizeof(want), "127.0.0.1:%d", base + j);
      ck_assert_str_eq(phys_format(&pd->phys, got, sizeof(got)), want);
    }
  }
  for (int i = 0; i < N; i++)
    close_node(&nd[i]);
  unlink(path);
  free(path);
  sim = rs_sim_new(1); /* for teardown */
}
END_TEST

static Suite *discovery_suite(void) {
  Suite *s = suite_create("discovery");
  TCase *tc = tcase_create("PING");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, five_members_find_each_other);
  tcase_add_test(tc, first_of_a_view_is_reported_coordinator);
  tcase_add_test(tc, break_on_coord_rsp_stops_at_the_coordinator);
  tcase_add_test(tc, num_members_ends_a_find_early);
  tcase_add_test(tc, lossy_network_more_runs_find_more);
  tcase_add_test(tc, other_clusters_are_not_found);
  tcase_add_test(tc, concurrent_finds_each_complete_once);
  tcase_add_test(tc, stop_cancels_outstanding_finds);
  tcase_add_test(tc, too_many_outstanding_finds_are_refused);
  tcase_add_test(tc, stagger_timeout_spreads_answers_coordinator_first);
  tcase_add_test(tc, max_rank_to_reply_and_leaving_members_stay_silent);
  suite_add_tcase(s, tc);
  tc = tcase_create("hostile input");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, hostile_headers_are_dropped_and_counted);
  tcase_add_test(tc, header_bytes);
  tcase_add_test(tc, jgroups_attributes_are_accepted);
  suite_add_tcase(s, tc);
  tc = tcase_create("TCPPING");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, initial_hosts_errors_name_the_entry);
  tcase_add_test(tc, initial_hosts_become_static_peers);
  tcase_add_test(tc, tcpping_over_tcp_finds_members);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(discovery_suite()); }

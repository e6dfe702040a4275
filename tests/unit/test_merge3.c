/* MERGE3 on LOOPBACK in the simulation: subgroups found and merged by one leader, no merge within
 * one view or across a partition, names learned, hostile input; with GMS, a partition healed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "stack/view.h"
#include "tests/lib/testlib.h"
#include "transport/tp.h"

#define MERGE3_ID 38
#define N 5
#define MAX_RECS 64
#define MAX_VIEWS 8

/* Timing of the stacks below: INFO every 1..5 s, a check every 1.6 x 5 = 8 s. */
#define MAX_INTERVAL (5 * RS_SEC)
#define CHECK_INTERVAL (8 * RS_SEC)
#define MARGIN RS_SEC
#define XML_CAP(cap)                                                                               \
  "<config><LOOPBACK/><DISCARD/><MERGE3 min_interval=\"1s\" max_interval=\"5s\" " cap              \
  "/><MERGE_SINK/></config>"
#define XML XML_CAP("")

static struct rs_sim *sim;

/* ---------------------------------------------------------------------------------------------
 * MERGE_SINK: a test protocol on top that records the RS_EV_MERGE events coming up.
 */
struct merge_rec {
  struct rs_addr by; /* the member that raised it */
  rs_time at;
  size_t n;
  struct rs_view_data *views[MAX_VIEWS];
};
static struct merge_rec recs[MAX_RECS];
static size_t n_recs;

static int sink_up_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type != RS_EV_MERGE) return proto_up_event(p, ev);
  ck_assert_uint_lt(n_recs, MAX_RECS);
  struct merge_rec *r = &recs[n_recs++];
  r->by = proto_local_addr(p);
  r->at = rs_now(p->rt);
  r->n = ev->u.merge.n;
  for (size_t i = 0; i < r->n && i < MAX_VIEWS; i++)
    r->views[i] = view_ref(ev->u.merge.views[i]);
  return 0;
}

static const struct rs_protocol_ops sink_ops = {
    .name = "MERGE_SINK",
    .size = sizeof(struct rs_protocol),
    .description = "test: records MERGE events",
    .up_event = sink_up_event,
};
static const struct rs_protocol_ops *const extra[] = {&sink_ops, NULL};

static void recs_free(void) {
  for (size_t i = 0; i < n_recs; i++)
    for (size_t k = 0; k < recs[i].n && k < MAX_VIEWS; k++)
      view_unref(recs[i].views[k]);
  n_recs = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Members.
 */
struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_addr addr;
  char name[8];
};
static struct node nodes[N];
enum { A, B, C, D, E };

static void open_node(struct node *nd, const char *name, const char *xml) {
  memset(nd, 0, sizeof(*nd));
  snprintf(nd->name, sizeof(nd->name), "%s", name);
  nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  ck_assert_int_eq(rs_channel_connect(nd->ch, "m3"), 0);
  nd->addr = rs_channel_address(nd->ch);
}

static void open_all(size_t n, const char *xml) {
  static const char *const names[N] = {"A", "B", "C", "D", "E"};
  for (size_t i = 0; i < n; i++)
    open_node(&nodes[i], names[i], xml);
}

static void close_all(size_t n) {
  for (size_t i = 0; i < n; i++) {
    rs_channel_close(nodes[i].ch);
    rs_runtime_destroy(nodes[i].rt);
  }
}

static struct rs_protocol *proto_of(size_t i, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nodes[i].ch)->bottom, name);
  ck_assert_ptr_nonnull(p);
  return p;
}

static struct rs_tp *tp_of(size_t i) { return (struct rs_tp *)channel_stack(nodes[i].ch)->bottom; }

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

static uint64_t stat(size_t i, const char *name) {
  struct rs_protocol *p = proto_of(i, "MERGE3");
  struct stat_query q = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.found, "no stat %s", name);
  return q.v;
}

/* --- views ----------------------------------------------------------------------------------- */

/* The view (id, members idx[0..k)) with idx[0] as creator and coordinator. */
static struct rs_view_data *make_view(const size_t *idx, size_t k, uint64_t id) {
  struct rs_addr mem[N];
  const char *names[N];
  for (size_t i = 0; i < k; i++) {
    mem[i] = nodes[idx[i]].addr;
    names[i] = nodes[idx[i]].name;
  }
  struct rs_view_data *v = view_new(&mem[0], id, k, mem, names);
  ck_assert_ptr_nonnull(v);
  return v;
}

/* Installs the view on each of its members, as GMS would: RS_EV_VIEW_CHANGE going down. */
static void install(const size_t *idx, size_t k, uint64_t id) {
  struct rs_view_data *v = make_view(idx, k, id);
  for (size_t i = 0; i < k; i++) {
    struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = v};
    stack_down_event(channel_stack(nodes[idx[i]].ch), &ev);
  }
  view_unref(v);
}

static void assert_view(const struct rs_view_data *v, const size_t *idx, size_t k, uint64_t id) {
  ck_assert_uint_eq(v->id, id);
  ck_assert(rs_addr_eq(&v->creator, &nodes[idx[0]].addr));
  ck_assert_uint_eq(v->n, k);
  for (size_t i = 0; i < k; i++) {
    ck_assert(rs_addr_eq(&v->members[i], &nodes[idx[i]].addr));
    ck_assert_str_eq(v->names[i], nodes[idx[i]].name);
  }
}

/* The lower address of the two. */
static size_t lower(size_t i, size_t j) {
  return rs_addr_cmp(&nodes[i].addr, &nodes[j].addr) < 0 ? i : j;
}

/* --- partitions ------------------------------------------------------------------------------ */

static void partition(const size_t *g1, size_t n1, const size_t *g2, size_t n2) {
  for (size_t i = 0; i < n1; i++)
    for (size_t j = 0; j < n2; j++) {
      ck_assert_int_eq(discard_ignore(proto_of(g1[i], "DISCARD"), &nodes[g2[j]].addr), 0);
      ck_assert_int_eq(discard_ignore(proto_of(g2[j], "DISCARD"), &nodes[g1[i]].addr), 0);
    }
}

static void heal(size_t n) {
  for (size_t i = 0; i < n; i++)
    discard_clear_ignored(proto_of(i, "DISCARD"));
}

/* --- waiting --------------------------------------------------------------------------------- */

static bool recs_at_least(void *arg) { return n_recs >= *(size_t *)arg; }

/* Runs until the n-th MERGE event; returns the virtual time it took. */
static rs_time wait_merges(size_t n, rs_time timeout) {
  rs_time t0 = rs_sim_now(sim);
  ck_assert_msg(rs_sim_run_until(sim, recs_at_least, &n, timeout),
                "no MERGE event within %.1f s (%zu so far)", (double)timeout / RS_SEC, n_recs);
  return rs_sim_now(sim) - t0;
}

static void setup(void) {
  sim = rs_sim_new(4242);
  stack_set_extra_protocols(extra);
  n_recs = 0;
}

static void teardown(void) {
  recs_free();
  stack_set_extra_protocols(NULL);
  rs_sim_free(sim);
}

static const size_t all[] = {A, B, C, D, E};

/* A 3/2 split {X, B, C} / {Y, E}, where X and Y are A and D in the order that puts the lower
 * address (the merge leader) in the big or in the small subgroup. */
struct split {
  size_t big[3], small[2];
  size_t leader, other; /* the two coordinators */
};

static struct split make_split(bool leader_in_big) {
  size_t lo = lower(A, D), hi = lo == A ? D : A;
  size_t cb = leader_in_big ? lo : hi, cs = leader_in_big ? hi : lo;
  return (struct split){.big = {cb, B, C}, .small = {cs, E}, .leader = lo, .other = hi};
}

static void install_split(const struct split *sp, uint64_t id) {
  install(sp->big, 3, id);
  install(sp->small, 2, id);
}

/* The MERGE event of a split: raised by the leader, its own view first, both views whole. */
static void assert_split_merge(const struct merge_rec *r, const struct split *sp, uint64_t id) {
  ck_assert_msg(rs_addr_eq(&r->by, &nodes[sp->leader].addr), "MERGE raised by the wrong member");
  ck_assert_uint_eq(r->n, 2);
  bool big_first = sp->big[0] == sp->leader;
  assert_view(r->views[0], big_first ? sp->big : sp->small, big_first ? 3 : 2, id);
  assert_view(r->views[1], big_first ? sp->small : sp->big, big_first ? 2 : 3, id);
}

/* ---------------------------------------------------------------------------------------------
 * Tests.
 */

static void split_merged_once(bool leader_in_big) {
  open_all(N, XML);
  struct split sp = make_split(leader_in_big);
  install_split(&sp, 2);
  rs_time took = wait_merges(1, MAX_INTERVAL + CHECK_INTERVAL + MARGIN);
  fprintf(stderr, "split 3/2: first MERGE after %.3f s virtual (leader %s, in the %s subgroup)\n",
          (double)took / RS_SEC, nodes[sp.leader].name, leader_in_big ? "big" : "small");
  assert_split_merge(&recs[0], &sp, 2);
  /* Exactly one: nothing else until the leader's next check. */
  rs_sim_run_for(sim, CHECK_INTERVAL / 2);
  ck_assert_uint_eq(n_recs, 1);
  ck_assert_uint_eq(stat(sp.leader, "merges_triggered"), 1);
  ck_assert_uint_eq(stat(sp.leader, "view_reqs_sent"), 1);
  ck_assert_uint_eq(stat(sp.other, "view_reqs_received"), 1);
  ck_assert_uint_eq(stat(sp.other, "merges_triggered"), 0);
  ck_assert_uint_ge(stat(sp.other, "not_leader"), 1);
  for (size_t i = 0; i < N; i++)
    if (i != A && i != D) ck_assert_uint_eq(stat(i, "checks"), 0); /* not coordinators */
  /* Without GMS the subgroups stay: the leader, and only the leader, asks again each check. */
  rs_sim_run_for(sim, 5 * CHECK_INTERVAL);
  ck_assert_uint_ge(n_recs, 4);
  for (size_t i = 0; i < n_recs; i++)
    assert_split_merge(&recs[i], &sp, 2);
  ck_assert_uint_eq(stat(sp.other, "merges_triggered"), 0);
  /* GMS's merge view: one view id everywhere, and MERGE3 falls silent. */
  install(all, N, 3);
  size_t before = n_recs;
  uint64_t found = stat(A, "subgroups_found") + stat(D, "subgroups_found");
  uint64_t d_checks = stat(D, "checks");
  rs_sim_run_for(sim, 10 * CHECK_INTERVAL);
  ck_assert_uint_eq(n_recs, before);
  ck_assert_uint_eq(stat(A, "subgroups_found") + stat(D, "subgroups_found"), found);
  ck_assert_uint_eq(stat(D, "checks"), d_checks); /* no longer coordinator */
  ck_assert_uint_ge(stat(A, "checks"), 9);
  ck_assert_uint_eq(stat(A, "bad_dropped") + stat(D, "bad_dropped"), 0);
  close_all(N);
}

START_TEST(split_3_2_merged_once_by_lowest_coordinator) { split_merged_once(true); }
END_TEST

START_TEST(split_3_2_leader_in_smaller_subgroup) { split_merged_once(false); }
END_TEST

START_TEST(one_view_never_merges) {
  open_all(N, XML);
  install(all, N, 1);
  rs_sim_run_for(sim, 20 * CHECK_INTERVAL);
  ck_assert_uint_eq(n_recs, 0);
  ck_assert_uint_ge(stat(A, "checks"), 19);
  ck_assert_uint_eq(stat(A, "subgroups_found"), 0);
  ck_assert_uint_eq(stat(A, "view_reqs_sent"), 0);
  ck_assert_uint_le(stat(A, "entries"), N - 1); /* one per sender */
  for (size_t i = 0; i < N; i++) {
    /* 160 s at one INFO every 1..5 s */
    ck_assert_uint_ge(stat(i, "info_sent"), 160 / 5);
    ck_assert_uint_le(stat(i, "info_sent"), 160 / 1 + 1);
    ck_assert_uint_ge(stat(i, "info_received"), 4 * 160 / 5);
    if (i != A) ck_assert_uint_eq(stat(i, "checks"), 0);
  }
  close_all(N);
}
END_TEST

START_TEST(no_merge_across_a_partition_then_merge_after_healing) {
  open_all(N, XML);
  struct split sp = make_split(false);
  install_split(&sp, 2);
  partition(sp.big, 3, sp.small, 2);
  rs_sim_run_for(sim, 6 * CHECK_INTERVAL + 3 * RS_SEC);
  ck_assert_uint_eq(n_recs, 0);
  ck_assert_uint_ge(stat(A, "checks"), 6);
  ck_assert_uint_ge(stat(D, "checks"), 6);
  ck_assert_uint_eq(stat(A, "subgroups_found") + stat(D, "subgroups_found"), 0);
  ck_assert_uint_gt(stat(sp.big[0], "info_received"), 0);   /* from B and C */
  ck_assert_uint_gt(stat(sp.small[0], "info_received"), 0); /* from E */
  ck_assert_uint_le(stat(sp.big[0], "entries"), 2);
  ck_assert_uint_le(stat(sp.small[0], "entries"), 1);
  heal(N);
  rs_time took = wait_merges(1, MAX_INTERVAL + CHECK_INTERVAL + MARGIN);
  fprintf(stderr, "healed partition: MERGE %.3f s after healing\n", (double)took / RS_SEC);
  assert_split_merge(&recs[0], &sp, 2);
  rs_sim_run_for(sim, CHECK_INTERVAL / 2);
  ck_assert_uint_eq(n_recs, 1);
  close_all(N);
}
END_TEST

/* Three subgroups {A,B} {C,D} {E}: one MERGE with all three views, or with the leader's and
 * the next lowest coordinator's when max_participants_in_merge is 2. */
static void three_subgroups(const char *xml, size_t expect) {
  open_all(N, xml);
  static const size_t ab[] = {A, B}, cd[] = {C, D}, e[] = {E};
  install(ab, 2, 4);
  install(cd, 2, 4);
  install(e, 1, 4);
  wait_merges(1, MAX_INTERVAL + CHECK_INTERVAL + MARGIN);
  rs_sim_run_for(sim, CHECK_INTERVAL / 2);
  ck_assert_uint_eq(n_recs, 1);
  size_t coords[3] = {A, C, E};
  for (size_t i = 0; i < 3; i++) /* by address */
    for (size_t j = i + 1; j < 3; j++)
      if (lower(coords[i], coords[j]) == coords[j]) {
        size_t t = coords[i];
        coords[i] = coords[j];
        coords[j] = t;
      }
  ck_assert(rs_addr_eq(&recs[0].by, &nodes[coords[0]].addr));
  ck_assert_uint_eq(recs[0].n, expect);
  for (size_t i = 0; i < expect; i++) {
    const size_t *g = coords[i] == A ? ab : coords[i] == C ? cd : e;
    assert_view(recs[0].views[i], g, coords[i] == E ? 1 : 2, 4);
  }
  ck_assert_uint_eq(stat(coords[0], "view_reqs_sent"), expect - 1);
  close_all(N);
}

START_TEST(three_subgroups_one_merge) { three_subgroups(XML, 3); }
END_TEST

START_TEST(max_participants_caps_the_merge) {
  three_subgroups(XML_CAP("max_participants_in_merge=\"2\""), 2);
}
END_TEST

/* --- hostile input --------------------------------------------------------------------------- */

struct m3_hdr_view { /* the header's in-memory layout (protocols/merge3.c) */
  struct rs_addr creator, coord;
  uint64_t id;
  uint8_t type;
};

static void inject(size_t to, const struct rs_addr *src, uint8_t type, uint64_t id,
                   const struct rs_addr *creator, const void *payload, size_t len) {
  struct rs_msg *m = rs_msg_new_copy(payload, len);
  struct m3_hdr_view *h = rs_msg_put_header(m, registry_header_type(MERGE3_ID));
  ck_assert_ptr_nonnull(h);
  *h = (struct m3_hdr_view){.type = type, .id = id};
  if (creator) h->creator = h->coord = *creator;
  m->src = *src;
  m->dest = nodes[to].addr;
  proto_up_msg(proto_of(to, "DISCARD"), m);
}

static size_t info_payload(uint8_t *out, size_t cap, const char *name, uint8_t family) {
  struct rs_writer w;
  writer_init(&w, out, cap);
  put_str(&w, name);
  put_u8(&w, family);
  if (family == RS_PHYS_LOOP) put_u16(&w, 5);
  ck_assert_int_eq(w.err, 0);
  return w.len;
}

/* A view's wire form with n members written as `count` (the bytes may hold fewer). */
static size_t view_bytes(uint8_t *out, size_t cap, const struct rs_addr *creator,
                         const struct rs_addr *mem, size_t n, uint64_t count) {
  struct rs_writer w;
  writer_init(&w, out, cap);
  put_addr(&w, creator);
  put_varint(&w, 5);
  put_u8(&w, 0);
  put_varint(&w, count);
  for (size_t i = 0; i < n; i++) {
    put_addr(&w, &mem[i]);
    put_str(&w, "m");
  }
  ck_assert_int_eq(w.err, 0);
  return w.len;
}

static bool reqs_sent(void *arg) { return stat(A, "view_reqs_sent") >= *(uint64_t *)arg; }

START_TEST(hostile_input_is_dropped_with_bounded_work) {
  open_all(1, XML);
  static const size_t a[] = {A};
  install(a, 1, 1);
  /* Forged members above A in address order, so that A leads the merge. */
  struct rs_addr x = {UINT64_MAX, 1}, y = {UINT64_MAX, 2}, z = {UINT64_MAX, 3};
  uint8_t p[256];
  inject(A, &x, 7, 0, &x, NULL, 0); /* unknown type */
  ck_assert_uint_eq(stat(A, "bad_dropped"), 1);
  /* INFO payloads: name too long, unknown address family, trailing byte, empty. */
  struct rs_writer w;
  writer_init(&w, p, sizeof(p));
  put_varint(&w, 200);
  for (int i = 0; i < 200; i++)
    put_u8(&w, 'n');
  put_u8(&w, 0);
  inject(A, &x, 0, 5, &x, p, w.len);
  inject(A, &x, 0, 5, &x, p, info_payload(p, sizeof(p), "X", 9));
  size_t len = info_payload(p, sizeof(p), "X", RS_PHYS_LOOP);
  p[len] = 0;
  inject(A, &x, 0, 5, &x, p, len + 1);
  inject(A, &x, 0, 5, &x, NULL, 0);
  ck_assert_uint_eq(stat(A, "bad_dropped"), 5);
  ck_assert_uint_eq(stat(A, "info_received"), 0);
  ck_assert_uint_eq(stat(A, "entries"), 0);
  /* A VIEW_RSP nobody asked for is not even decoded. */
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &x, &x, 1, 1));
  ck_assert_uint_eq(stat(A, "stale_rsps"), 1);
  /* X reports another view: at the check A asks X for it (the request goes nowhere). */
  inject(A, &x, 0, 5, &x, p, info_payload(p, sizeof(p), "X", RS_PHYS_NONE));
  ck_assert_uint_eq(stat(A, "entries"), 1);
  uint64_t one = 1;
  ck_assert(rs_sim_run_until(sim, reqs_sent, &one, CHECK_INTERVAL + MARGIN));
  /* Hostile answers: too many members, a count the bytes cannot hold, a view without its
   * sender, a member twice, trailing bytes. */
  struct rs_addr xz[] = {x, z}, xx[] = {x, x}, yz[] = {y, z};
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &x, xz, 2, RS_VIEW_MAX_MEMBERS + 1));
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &x, xz, 2, 4000));
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &y, yz, 2, 2));
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &x, xx, 2, 2));
  len = view_bytes(p, sizeof(p), &x, xz, 2, 2);
  p[len] = 0;
  inject(A, &x, 2, 1, NULL, p, len + 1);
  ck_assert_uint_eq(stat(A, "bad_dropped"), 10);
  /* Another round's answer, and one from a member not asked. */
  inject(A, &x, 2, 2, NULL, p, view_bytes(p, sizeof(p), &x, xz, 2, 2));
  inject(A, &y, 2, 1, NULL, p, view_bytes(p, sizeof(p), &y, yz, 2, 2));
  ck_assert_uint_eq(stat(A, "stale_rsps"), 3);
  ck_assert_uint_eq(n_recs, 0);
  /* The real answer completes the round at once. */
  inject(A, &x, 2, 1, NULL, p, view_bytes(p, sizeof(p), &x, xz, 2, 2));
  ck_assert_uint_eq(n_recs, 1);
  ck_assert_uint_eq(recs[0].n, 2);
  assert_view(recs[0].views[0], a, 1, 1);
  ck_assert(rs_addr_eq(&recs[0].views[1]->creator, &x));
  ck_assert_uint_eq(recs[0].views[1]->id, 5);
  ck_assert_uint_eq(recs[0].views[1]->n, 2);
  ck_assert(rs_addr_eq(&recs[0].views[1]->members[1], &z));
  ck_assert_uint_eq(stat(A, "entries"), 0); /* cleared after the round */
  ck_assert_uint_eq(stat(A, "rounds_timed_out"), 0);
  /* Unanswered: the round ends after check_interval / 10 with only our view, and no MERGE. */
  inject(A, &x, 0, 5, &x, p, info_payload(p, sizeof(p), "X", RS_PHYS_NONE));
  uint64_t two = 2;
  ck_assert(rs_sim_run_until(sim, reqs_sent, &two, CHECK_INTERVAL + MARGIN));
  rs_sim_run_for(sim, CHECK_INTERVAL / 10 + RS_MS);
  ck_assert_uint_eq(stat(A, "rounds_timed_out"), 1);
  ck_assert_uint_eq(n_recs, 1);
  close_all(1);
}
END_TEST

/* A flood of INFO from forged senders keeps at most RS_VIEW_MAX_MEMBERS entries; a newcomer
 * still gets in, in the place of the stalest entry. */
START_TEST(entry_table_is_bounded) {
  open_all(1, XML);
  static const size_t a[] = {A};
  install(a, 1, 1);
  uint8_t p[64];
  size_t len = info_payload(p, sizeof(p), "", RS_PHYS_NONE);
  for (uint64_t i = 0; i < RS_VIEW_MAX_MEMBERS + 1000; i++) {
    struct rs_addr f = {0x100, i + 1};
    inject(A, &f, 0, 1, &nodes[A].addr, p, len); /* reporting A's own view */
  }
  ck_assert_uint_eq(stat(A, "entries"), RS_VIEW_MAX_MEMBERS);
  ck_assert_uint_eq(stat(A, "entries_evicted"), 1000);
  rs_sim_run_for(sim, RS_SEC);
  struct rs_addr x = {UINT64_MAX, 1};
  inject(A, &x, 0, 5, &x, p, len);
  ck_assert_uint_eq(stat(A, "entries"), RS_VIEW_MAX_MEMBERS);
  ck_assert_uint_eq(stat(A, "entries_evicted"), 1001);
  rs_sim_run_for(sim, CHECK_INTERVAL);
  ck_assert_uint_eq(stat(A, "subgroups_found"), 1);
  ck_assert_uint_eq(stat(A, "view_reqs_sent"), 1); /* to X */
  close_all(1);
}
END_TEST

/* A new view makes what was collected about the old one meaningless: it is cleared, and the
 * first check comes a full check_interval after the view. */
START_TEST(new_view_clears_collected_info) {
  open_all(1, XML);
  static const size_t a[] = {A};
  install(a, 1, 1);
  uint8_t p[64];
  size_t len = info_payload(p, sizeof(p), "", RS_PHYS_NONE);
  rs_sim_run_for(sim, 4 * RS_SEC);
  struct rs_addr x = {UINT64_MAX, 1};
  inject(A, &x, 0, 5, &x, p, len); /* would be found by the check at 8 s */
  ck_assert_uint_eq(stat(A, "entries"), 1);
  rs_sim_run_for(sim, RS_SEC);
  install(a, 1, 2);
  ck_assert_uint_eq(stat(A, "entries"), 0);
  rs_sim_run_for(sim, CHECK_INTERVAL - RS_MS);
  ck_assert_uint_eq(stat(A, "checks"), 0); /* restarted at the view */
  rs_sim_run_for(sim, 2 * RS_MS);
  ck_assert_uint_eq(stat(A, "checks"), 1);
  ck_assert_uint_eq(stat(A, "subgroups_found"), 0);
  ck_assert_uint_eq(stat(A, "view_reqs_sent"), 0);
  close_all(1);
}
END_TEST

/* INFO teaches the transport names and physical addresses (LOOPBACK alone learns neither a
 * member's name nor the address of a member it never heard from). */
START_TEST(transport_learns_names_and_addresses_from_info) {
  open_all(2, XML);
  const struct tp_peer *peer = tp_lookup(tp_of(B), &nodes[A].addr);
  ck_assert(!peer || !peer->name);
  static const size_t ab[] = {A, B};
  install(ab, 2, 1);
  rs_sim_run_for(sim, MAX_INTERVAL + MARGIN);
  ck_assert_uint_ge(stat(B, "info_received"), 1);
  peer = tp_lookup(tp_of(B), &nodes[A].addr);
  ck_assert_ptr_nonnull(peer);
  ck_assert_ptr_nonnull(peer->name);
  ck_assert_str_eq(peer->name, "A");
  ck_assert(phys_eq(&peer->phys, &tp_of(A)->local_phys));
  ck_assert_uint_ge(stat(B, "mappings_learned"), 1);
  ck_assert_uint_eq(stat(B, "entries"), 0); /* not coordinator: nothing recorded */
  ck_assert_uint_eq(stat(A, "entries"), 1);
  /* A member of another subgroup, only known from its INFO. */
  struct rs_addr x = {0x7777, 0x7777};
  uint8_t buf[64];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_str(&w, "X-ray");
  struct rs_phys ph = {.family = RS_PHYS_LOOP, .port = 999};
  put_phys(&w, &ph);
  inject(B, &x, 0, 7, &x, w.p, w.len);
  peer = tp_lookup(tp_of(B), &x);
  ck_assert_ptr_nonnull(peer);
  ck_assert_str_eq(peer->name, "X-ray");
  ck_assert(phys_eq(&peer->phys, &ph));
  /* A name without an address: the entry knows no address yet (and sending to it is refused). */
  struct rs_addr y = {0x7777, 0x7778};
  writer_init(&w, buf, sizeof(buf));
  put_str(&w, "Yankee");
  put_u8(&w, RS_PHYS_NONE);
  inject(B, &y, 0, 7, &y, w.p, w.len);
  peer = tp_lookup(tp_of(B), &y);
  ck_assert_ptr_nonnull(peer);
  ck_assert_str_eq(peer->name, "Yankee");
  ck_assert_uint_eq(peer->phys.family, RS_PHYS_NONE);
  close_all(2);
}
END_TEST

/* --- end to end, with the real GMS --------------------------------------------------------- */

#define FULL_XML                                                                                   \
  "<config><LOOPBACK/><DISCARD/><PING timeout=\"500ms\"/>"                                         \
  "<MERGE3 min_interval=\"1s\" max_interval=\"5s\"/>"                                              \
  "<FD_ALL3 interval=\"1s\" timeout=\"5s\"/><VERIFY_SUSPECT timeout=\"1s\"/>"                      \
  "<pbcast.NAKACK2/><UNICAST3/><pbcast.STABLE/><pbcast.GMS join_timeout=\"1s\"/></config>"

/* The last view each member's application saw. */
struct seen_view {
  struct rs_addr creator;
  uint64_t id;
  size_t n;
  struct rs_addr members[N];
  unsigned views;
};
static struct seen_view seen[N];

static void on_view(void *arg, const struct rs_view *v) {
  struct seen_view *sv = arg;
  sv->creator = v->creator;
  sv->id = v->id;
  sv->n = v->n_members;
  for (size_t i = 0; i < v->n_members && i < N; i++)
    sv->members[i] = v->members[i];
  sv->views++;
}

static void open_full(size_t i, const char *name) {
  memset(&nodes[i], 0, sizeof(nodes[i]));
  memset(&seen[i], 0, sizeof(seen[i]));
  snprintf(nodes[i].name, sizeof(nodes[i].name), "%s", name);
  nodes[i].rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = FULL_XML, .name = name, .runtime = nodes[i].rt};
  char err[512];
  ck_assert_msg(rs_channel_open(&nodes[i].ch, &o, err, sizeof(err)) == 0, "open: %s", err);
  static const struct rs_receiver r = {.view = on_view};
  rs_channel_set_receiver(nodes[i].ch, &r, &seen[i]);
  ck_assert_int_eq(rs_channel_connect(nodes[i].ch, "m3-gms"), 0);
  nodes[i].addr = rs_channel_address(nodes[i].ch);
}

/* Every member of g[0..n) sees the same view, of exactly those members. */
struct group {
  const size_t *g;
  size_t n;
};
static bool same_view_of(const struct group *gr) {
  const struct seen_view *first = &seen[gr->g[0]];
  if (first->n != gr->n) return false;
  for (size_t i = 0; i < gr->n; i++) {
    const struct seen_view *v = &seen[gr->g[i]];
    if (v->n != gr->n || v->id != first->id || !rs_addr_eq(&v->creator, &first->creator))
      return false;
    bool found = false;
    for (size_t k = 0; k < v->n; k++)
      found |= rs_addr_eq(&v->members[k], &nodes[gr->g[i]].addr);
    if (!found) return false;
  }
  return true;
}
static bool groups_formed(void *arg) {
  for (const struct group *gr = arg; gr->g; gr++)
    if (!same_view_of(gr)) return false;
  return true;
}

START_TEST(gms_heals_a_3_2_partition_into_one_view) {
  static const char *const names[N] = {"A", "B", "C", "D", "E"};
  for (size_t i = 0; i < N; i++)
    open_full(i, names[i]);
  struct group one[] = {{all, N}, {NULL, 0}};
  ck_assert_msg(rs_sim_run_until(sim, groups_formed, one, 30 * RS_SEC), "no view of 5");
  uint64_t id0 = seen[A].id;
  static const size_t big[] = {A, B, C}, small[] = {D, E};
  partition(big, 3, small, 2);
  struct group two[] = {{big, 3}, {small, 2}, {NULL, 0}};
  ck_assert_msg(rs_sim_run_until(sim, groups_formed, two, 30 * RS_SEC), "no 3/2 split");
  ck_assert(rs_addr_eq(&seen[A].members[0], &nodes[A].addr));
  ck_assert(rs_addr_eq(&seen[D].members[0], &nodes[D].addr));
  heal(N);
  rs_time t0 = rs_sim_now(sim);
  ck_assert_msg(
      rs_sim_run_until(sim, groups_formed, one, MAX_INTERVAL + CHECK_INTERVAL + 10 * RS_SEC),
      "the partition did not heal");
  fprintf(stderr, "GMS: one view of 5 again %.3f s after healing (view id %llu)\n",
          (double)(rs_sim_now(sim) - t0) / RS_SEC, (unsigned long long)seen[A].id);
  ck_assert_uint_gt(seen[A].id, id0);
  size_t leader = lower(A, D);
  ck_assert(rs_addr_eq(&seen[A].members[0], &nodes[leader].addr)); /* the merge leader leads */
  ck_assert_uint_ge(stat(leader, "merges_triggered"), 1);
  ck_assert_uint_eq(stat(leader == A ? D : A, "merges_triggered"), 0);
  /* Stays one view. */
  uint64_t id = seen[A].id;
  rs_sim_run_for(sim, 3 * CHECK_INTERVAL);
  ck_assert(groups_formed(one));
  ck_assert_uint_eq(seen[A].id, id);
  for (size_t i = N; i-- > 0;) {
    rs_channel_close(nodes[i].ch);
    rs_runtime_destroy(nodes[i].rt);
  }
}
END_TEST

/* The header decoder: exact bytes, and malformed input leaves zeroed storage. */
START_TEST(header_wire_form) {
  const struct rs_header_type *t = registry_header_type(MERGE3_ID);
  ck_assert_ptr_nonnull(t);
  struct m3_hdr_view h = {.type = 1, .id = 300}, back;
  uint8_t buf[64];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  t->write(&h, &w);
  ck_assert_uint_eq(w.len, t->wire_size(&h));
  static const uint8_t req[] = {0x01, 0xac, 0x02}; /* VIEW_REQ, round 300 */
  ck_assert_uint_eq(w.len, sizeof(req));
  ck_assert_mem_eq(buf, req, sizeof(req));
  struct rs_addr x = {1, 2}, k = {3, 4};
  h = (struct m3_hdr_view){.type = 0, .creator = x, .coord = k, .id = 9};
  writer_init(&w, buf, sizeof(buf));
  t->write(&h, &w);
  ck_assert_uint_eq(w.len, 34);
  ck_assert_uint_eq(w.len, t->wire_size(&h));
  struct rs_reader r;
  reader_init(&r, buf, w.len);
  memset(&back, 0, sizeof(back));
  t->read(&back, &r);
  ck_assert_int_eq(r.err, 0);
  ck_assert(rs_addr_eq(&back.creator, &x) && rs_addr_eq(&back.coord, &k) && back.id == 9);
  /* Truncated, unknown type, null creator. */
  static const uint8_t zero[sizeof(struct m3_hdr_view)];
  const uint8_t bad_type[] = {0x03, 0x00};
  uint8_t null_creator[34];
  memcpy(null_creator, buf, 34);
  memset(null_creator + 1, 0, 16);
  const struct {
    const uint8_t *p;
    size_t len;
  } cases[] = {{buf, 20}, {bad_type, sizeof(bad_type)}, {null_creator, 34}};
  for (size_t i = 0; i < 3; i++) {
    memset(&back, 0, sizeof(back));
    reader_init(&r, cases[i].p, cases[i].len);
    t->read(&back, &r);
    ck_assert_int_ne(r.err, 0);
    ck_assert_mem_eq(&back, zero, sizeof(zero));
  }
}
END_TEST

static int open_err(const char *xml, char *err, size_t len) {
  struct rs_channel *ch = NULL;
  struct rs_channel_opts o = {.config_xml = xml, .name = "A", .runtime = NULL};
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "A");
  o.runtime = rt;
  int rc = rs_channel_open(&ch, &o, err, len);
  if (rc == 0) {
    struct rs_protocol *p = proto_find(channel_stack(ch)->bottom, "MERGE3");
    const struct rs_attr *a = attr_find(p->ops, "check_interval");
    attr_format(a, p, err, len);
    rs_channel_close(ch);
  }
  rs_runtime_destroy(rt);
  return rc;
}

START_TEST(attributes_are_checked) {
  char err[512];
  ck_assert_int_ne(open_err("<config><LOOPBACK/><MERGE3 min_interval=\"5s\" max_interval=\"5s\"/>"
                            "</config>",
                            err, sizeof(err)),
                   0);
  ck_assert_msg(strstr(err, "min_interval (5000ms) must be less than max_interval (5000ms)"), "%s",
                err);
  ck_assert_int_ne(open_err("<config><LOOPBACK/><MERGE3 max_participants_in_merge=\"1\"/></config>",
                            err, sizeof(err)),
                   0);
  ck_assert_msg(strstr(err, "max_participants_in_merge"), "%s", err);
  /* check_interval: computed as 1.6 x max_interval when 0 or not above max_interval. */
  ck_assert_int_eq(open_err("<config><LOOPBACK/><MERGE3/></config>", err, sizeof(err)), 0);
  ck_assert_str_eq(err, "16s");
  ck_assert_int_eq(open_err("<config><LOOPBACK/><MERGE3 max_interval=\"5s\" "
                            "check_interval=\"2s\"/></config>",
                            err, sizeof(err)),
                   0);
  ck_assert_str_eq(err, "8s");
  ck_assert_int_eq(open_err("<config><LOOPBACK/><MERGE3 max_interval=\"5s\" "
                            "check_interval=\"6s\"/></config>",
                            err, sizeof(err)),
                   0);
  ck_assert_str_eq(err, "6s");
}
END_TEST

int main(void) {
  Suite *s = suite_create("merge3");
  TCase *tc = tcase_create("merge3");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, split_3_2_merged_once_by_lowest_coordinator);
  tcase_add_test(tc, split_3_2_leader_in_smaller_subgroup);
  tcase_add_test(tc, one_view_never_merges);
  tcase_add_test(tc, no_merge_across_a_partition_then_merge_after_healing);
  tcase_add_test(tc, three_subgroups_one_merge);
  tcase_add_test(tc, max_participants_caps_the_merge);
  tcase_add_test(tc, transport_learns_names_and_addresses_from_info);
  tcase_add_test(tc, hostile_input_is_dropped_with_bounded_work);
  tcase_add_test(tc, entry_table_is_bounded);
  tcase_add_test(tc, new_view_clears_collected_info);
  tcase_add_test(tc, header_wire_form);
  tcase_add_test(tc, gms_heals_a_3_2_partition_into_one_view);
  tcase_add_test(tc, attributes_are_checked);
  suite_add_tcase(s, tc);
  return test_run(s);
}

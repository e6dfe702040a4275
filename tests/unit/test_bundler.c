/* Bundling, loopback to self, and the fault-injection protocols, on LOOPBACK in the simulation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"
#include "transport/tp.h"

#define MAX_RECV 4096

struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_addr src[MAX_RECV];
  uint32_t seq[MAX_RECV];
  size_t len[MAX_RECV];
  rs_time at[MAX_RECV];
  size_t n;
};

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct node *nd = arg;
  if (nd->n == MAX_RECV) return;
  uint32_t seq = 0;
  if (len >= 4) memcpy(&seq, data, 4);
  nd->src[nd->n] = *src;
  nd->seq[nd->n] = seq;
  nd->len[nd->n] = len;
  nd->at[nd->n] = rs_now(nd->rt);
  nd->n++;
}

static struct rs_sim *sim;

static void open_node(struct node *nd, const char *name, const char *xml) {
  memset(nd, 0, sizeof(*nd));
  nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(nd->ch, &r, nd);
  ck_assert_int_eq(rs_channel_connect(nd->ch, "bundling"), 0);
}

static void close_node(struct node *nd) {
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
}

static struct tp_stats *stats_of(struct node *nd) {
  return &((struct rs_tp *)channel_stack(nd->ch)->bottom)->stats;
}

static void send_seq(struct node *from, const struct rs_addr *to, uint32_t seq, size_t len, unsigned flags) {
  uint8_t buf[20000] = {0};
  memcpy(buf, &seq, 4);
  ck_assert_int_eq(rs_channel_send(from->ch, to, buf, len, flags), 0);
}

struct want {
  struct node *nd;
  size_t n;
};
static bool has_n(void *arg) {
  struct want *w = arg;
  return w->nd->n >= w->n;
}

static void setup(void) { sim = rs_sim_new(1234); }
static void teardown(void) { rs_sim_free(sim); }

static const char *plain = "<config><LOOPBACK/></config>";

START_TEST(one_iteration_one_frame) {
  struct node a, b;
  open_node(&a, "A", plain);
  open_node(&b, "B", plain);
  struct rs_addr to_b = rs_channel_address(b.ch);
  for (uint32_t i = 0; i < 10; i++) send_seq(&a, &to_b, i, 100, 0);
  struct want w = {&b, 10};
  ck_assert(rs_sim_run_until(sim, has_n, &w, RS_SEC));
  ck_assert_uint_eq(stats_of(&a)->frames_sent, 1);
  ck_assert_uint_eq(stats_of(&a)->batches_sent, 1);
  ck_assert_uint_eq(stats_of(&a)->msgs_sent, 10);
  ck_assert_uint_eq(stats_of(&b)->batches_received, 1);
  for (uint32_t i = 0; i < 10; i++) {
    ck_assert_uint_eq(b.seq[i], i);
    ck_assert(rs_addr_eq(&b.src[i], &(struct rs_addr){rs_channel_address(a.ch).hi, rs_channel_address(a.ch).lo}));
  }
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(frames_respect_bundler_max_size) {
  const char *xml = "<config><LOOPBACK bundler.max_size=\"10000\"/></config>";
  struct node a, b;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  struct rs_addr to_b = rs_channel_address(b.ch);
  for (uint32_t i = 0; i < 100; i++) send_seq(&a, &to_b, i, 1000, 0);
  send_seq(&a, &to_b, 100, 15000, 0); /* over max_size: travels alone */
  struct want w = {&b, 101};
  ck_assert(rs_sim_run_until(sim, has_n, &w, RS_SEC));
  /* 1000-byte payload + 3 bytes of message header + 2 of length = 1005 per message; the frame
   * header takes 5 + 8 (cluster) + 32 + 1 (count) = 46; so 9 fit under 10000 and 100 messages
   * make 12 frames, plus one for the big message. */
  ck_assert_uint_eq(stats_of(&a)->frames_sent, 13);
  ck_assert_uint_eq(stats_of(&a)->msgs_sent, 101);
  ck_assert_uint_le(stats_of(&a)->bytes_sent, 12 * 10000 + 15000 + 100);
  for (uint32_t i = 0; i <= 100; i++) ck_assert_uint_eq(b.seq[i], i);
  ck_assert_uint_eq(b.len[100], 15000);
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(group_sends_loop_back_unless_asked_not_to) {
  struct node a, b, c;
  open_node(&a, "A", plain);
  open_node(&b, "B", plain);
  open_node(&c, "C", plain);
  send_seq(&a, NULL, 1, 10, 0);
  send_seq(&a, NULL, 2, 10, RS_MSG_DONT_LOOPBACK << 16);
  struct rs_addr self = rs_channel_address(a.ch);
  send_seq(&a, &self, 3, 10, 0); /* unicast to self never leaves the process */
  struct want wb = {&b, 2}, wc = {&c, 2}, wa = {&a, 2};
  ck_assert(rs_sim_run_until(sim, has_n, &wb, RS_SEC));
  ck_assert(rs_sim_run_until(sim, has_n, &wc, RS_SEC));
  ck_assert(rs_sim_run_until(sim, has_n, &wa, RS_SEC));
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(a.n, 2);
  ck_assert_uint_eq(a.seq[0] + a.seq[1], 4); /* 1 and 3, in either order: two paths */
  ck_assert_uint_eq(b.n, 2);
  ck_assert_uint_eq(b.seq[0], 1);
  ck_assert_uint_eq(b.seq[1], 2);
  ck_assert_uint_eq(c.n, 2);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

START_TEST(other_clusters_are_not_heard) {
  struct node a, b;
  open_node(&a, "A", plain);
  memset(&b, 0, sizeof(b));
  b.rt = rs_sim_runtime_new(sim, "B");
  struct rs_channel_opts o = {.config_xml = plain, .name = "B", .runtime = b.rt};
  char err[256];
  ck_assert_int_eq(rs_channel_open(&b.ch, &o, err, sizeof(err)), 0);
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(b.ch, &r, &b);
  ck_assert_int_eq(rs_channel_connect(b.ch, "elsewhere"), 0);
  send_seq(&a, NULL, 1, 10, 0);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(b.n, 0);
  ck_assert_uint_eq(stats_of(&b)->dropped_other_cluster, 1);
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(discard_drops_what_it_is_told) {
  const char *xml = "<config><LOOPBACK/><DISCARD/></config>";
  struct node a, b;
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  struct rs_protocol *da = proto_find(channel_stack(a.ch)->bottom, "DISCARD");
  struct rs_protocol *db = proto_find(channel_stack(b.ch)->bottom, "DISCARD");
  ck_assert_ptr_nonnull(da);
  struct rs_addr to_b = rs_channel_address(b.ch), addr_a = rs_channel_address(a.ch);
  discard_set_all(da, true);
  send_seq(&a, &to_b, 1, 10, 0);
  send_seq(&a, NULL, 2, 10, 0);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(b.n, 0);
  ck_assert_uint_eq(a.n, 1); /* its own multicast still reaches it */
  discard_set_all(da, false);
  discard_ignore(db, &addr_a); /* B no longer hears A */
  send_seq(&a, &to_b, 3, 10, 0);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_uint_eq(b.n, 0);
  discard_clear_ignored(db);
  discard_set_rates(da, 0, 0.5);
  for (uint32_t i = 0; i < 1000; i++) send_seq(&a, &to_b, i, 10, 0);
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_gt(b.n, 350); /* about 500 of 1000 */
  ck_assert_uint_lt(b.n, 650);
  close_node(&a);
  close_node(&b);
}
END_TEST

START_TEST(delay_holds_messages) {
  const char *xml = "<config><LOOPBACK/><DELAY in_delay=\"40ms\" constant_delay=\"true\"/></config>";
  struct node a, b;
  open_node(&a, "A", plain);
  open_node(&b, "B", xml);
  rs_time sent = rs_sim_now(sim);
  send_seq(&a, &(struct rs_addr){rs_channel_address(b.ch).hi, rs_channel_address(b.ch).lo}, 1, 10, 0);
  struct want w = {&b, 1};
  ck_assert(rs_sim_run_until(sim, has_n, &w, RS_SEC));
  ck_assert_uint_eq(b.at[0] - sent, 40 * RS_MS);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* --- the loop thread's rules, and determinism at channel level ------------------------------- */

struct reentrant {
  struct rs_channel *ch;
  int blocking_rc, nb_rc, connect_rc;
  int calls;
};

static void on_receive_reenter(void *arg, const struct rs_addr *src, const void *data, size_t len,
                               unsigned flags) {
  struct reentrant *r = arg;
  if (r->calls++) return;
  r->blocking_rc = rs_channel_send(r->ch, src, "x", 1, 0);
  r->nb_rc = rs_channel_send_nb(r->ch, src, "y", 1, 0);
  r->connect_rc = rs_channel_connect(r->ch, "other");
}

static bool got_one(void *arg) { return ((struct reentrant *)arg)->calls > 0; }

START_TEST(blocking_calls_from_callbacks_fail_with_edeadlk) {
  struct node a;
  open_node(&a, "A", plain);
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "B");
  struct rs_channel *b;
  struct rs_channel_opts o = {.config_xml = plain, .name = "B", .runtime = rt};
  ck_assert_int_eq(rs_channel_open(&b, &o, NULL, 0), 0);
  struct reentrant r = {.ch = b};
  static const struct rs_receiver rr = {.receive = on_receive_reenter};
  rs_channel_set_receiver(b, &rr, &r);
  ck_assert_int_eq(rs_channel_connect(b, "bundling"), 0);
  send_seq(&a, NULL, 1, 10, 0);
  ck_assert(rs_sim_run_until(sim, got_one, &r, RS_SEC));
  ck_assert_int_eq(r.blocking_rc, RS_EDEADLK);
  ck_assert_int_eq(r.connect_rc, RS_EDEADLK);
  ck_assert_int_eq(r.nb_rc, 0);               /* the non-blocking send goes straight down */
  struct want w = {&a, 2};                     /* A's own multicast, and B's "y" */
  ck_assert(rs_sim_run_until(sim, has_n, &w, RS_SEC));
  ck_assert_uint_eq(a.len[1], 1);
  rs_channel_close(b);
  rs_runtime_destroy(rt);
  close_node(&a);
}
END_TEST

/* Three members multicast 50 messages each; the order in which C receives them is a function
 * of the seed alone. */
static void run_three(uint64_t seed, char *out, size_t outlen) {
  sim = rs_sim_new(seed);
  struct node *n = calloc(3, sizeof(*n));
  open_node(&n[0], "A", plain);
  open_node(&n[1], "B", plain);
  open_node(&n[2], "C", plain);
  for (uint32_t i = 0; i < 50; i++)
    for (int k = 0; k < 3; k++) send_seq(&n[k], NULL, (uint32_t)k * 1000 + i, 8, RS_MSG_DONT_LOOPBACK << 16);
  struct want w = {&n[2], 100};
  ck_assert(rs_sim_run_until(sim, has_n, &w, RS_SEC));
  size_t off = 0;
  for (size_t i = 0; i < n[2].n && off + 8 < outlen; i++)
    off += (size_t)snprintf(out + off, outlen - off, "%u,", n[2].seq[i]);
  for (int k = 0; k < 3; k++) close_node(&n[k]);
  free(n);
  rs_sim_free(sim);
  sim = NULL;
}

START_TEST(same_seed_same_delivery_order) {
  rs_sim_free(sim); /* this test makes its own worlds */
  static char a[4096], b[4096];
  run_three(99, a, sizeof(a));
  run_three(99, b, sizeof(b));
  ck_assert_str_eq(a, b);
  /* Each sender's messages arrive in its order, whatever the interleaving. */
  uint32_t last[2] = {0, 0};
  bool seen[2] = {false, false};
  for (char *p = a; *p;) {
    uint32_t v = (uint32_t)strtoul(p, &p, 10);
    p++;
    int k = (int)(v / 1000);
    ck_assert(k == 0 || k == 1);
    if (seen[k]) ck_assert_uint_eq(v, last[k] + 1);
    seen[k] = true;
    last[k] = v;
  }
  sim = rs_sim_new(1); /* for teardown */
}
END_TEST

static Suite *bundler_suite(void) {
  Suite *s = suite_create("bundler");
  TCase *tc = tcase_create("loopback");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, one_iteration_one_frame);
  tcase_add_test(tc, frames_respect_bundler_max_size);
  tcase_add_test(tc, group_sends_loop_back_unless_asked_not_to);
  tcase_add_test(tc, other_clusters_are_not_heard);
  suite_add_tcase(s, tc);
  tc = tcase_create("fault injection");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, discard_drops_what_it_is_told);
  tcase_add_test(tc, delay_holds_messages);
  suite_add_tcase(s, tc);
  tc = tcase_create("channel");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, blocking_calls_from_callbacks_fail_with_edeadlk);
  tcase_add_test(tc, same_seed_same_delivery_order);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(bundler_suite()); }

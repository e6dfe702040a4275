/* Failure detection in the simulation over LOOPBACK: FD_ALL3 + VERIFY_SUSPECT (crashes, slow
 * members, views, heartbeats, hostile input), the headers' bytes, configuration errors. The
 * FD_SOCK cases over real TCP are in test_failure_detection_tcp.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "stack/channel_internal.h"
#include "stack/stack.h"
#include "tests/lib/testlib.h"
#include "tests/unit/fd_testlib.h"

#define FD_ALL3_ID 70
#define FD_SOCK_ID 71
#define VS_ID 11

/* ---------------------------------------------------------------------------------------------
 * FD_ALL3 + VERIFY_SUSPECT in the simulation: 5 members on LOOPBACK, interval 1 s, timeout 5 s,
 * verification 2 s.
 */
#define INTERVAL (1 * RS_SEC)
#define FD_TIMEOUT (5 * RS_SEC)
#define VS_TIMEOUT (2 * RS_SEC)
#define SIM_XML(discard)                                                                           \
  "<config><LOOPBACK/><DISCARD " discard "/><SPY/><FD_ALL3 interval=\"1s\" timeout=\"5s\"/>"       \
  "<VERIFY_SUSPECT timeout=\"2s\"/><FDTEST/></config>"

static void sim_setup(void) {
  sim = rs_sim_new(4711);
  stack_set_extra_protocols(fd_extra);
  memset(nodes, 0, sizeof(nodes));
}

static void sim_teardown(void) {
  for (int i = 0; i < MAX_NODES; i++)
    close_node(&nodes[i]);
  stack_set_extra_protocols(NULL);
  rs_sim_free(sim);
  sim = NULL;
}

/* Five members A..E (node `odd`, if >= 0, gets odd_xml), in one view with A as coordinator. */
static void start_group(int odd, const char *odd_xml) {
  static const char *const names[] = {"A", "B", "C", "D", "E"};
  for (int i = 0; i < MAX_NODES; i++) {
    start_node(&nodes[i], names[i], i == odd ? odd_xml : SIM_XML(""));
    group[i] = &nodes[i];
  }
  inject_view_all(group, MAX_NODES, 1);
}

static void assert_no_events(int first, int last) {
  for (int i = first; i <= last; i++)
    ck_assert_msg(n_events(&nodes[i]) == 0, "%s recorded %zu events", rs_channel_name(nodes[i].ch),
                  n_events(&nodes[i]));
}

static void wait_event(struct node *nd, enum rs_event_type type, const struct rs_addr *a,
                       size_t count, rs_time timeout, const char *what) {
  struct want_event w = {nd, type, a, count};
  ck_assert_msg(rs_sim_run_until(sim, has_event, &w, timeout), "timed out: %s", what);
}

START_TEST(healthy_group_is_never_suspected) {
  start_group(-1, NULL);
  rs_time t0 = rs_sim_now(sim);
  rs_sim_run_for(sim, 100 * INTERVAL);
  assert_no_events(0, 4);
  for (int i = 0; i < MAX_NODES; i++) {
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "suspicions"), 0);
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "members"), 4);
    /* One heartbeat per interval since the view, heard by the four others. */
    uint64_t sent = stat(&nodes[i], "FD_ALL3", "heartbeats_sent");
    ck_assert_uint_ge(sent, 99);
    ck_assert_uint_le(sent, 101);
    ck_assert_uint_ge(stat(&nodes[i], "FD_ALL3", "heartbeats_received"), 4 * 98);
    ck_assert_uint_eq(stat(&nodes[i], "VERIFY_SUSPECT", "verifications"), 0);
    ck_assert_uint_eq(nodes[i].delivered, 0); /* heartbeats never reach the application */
  }
  ck_assert_uint_eq(rs_sim_now(sim) - t0, 100 * INTERVAL);
}
END_TEST

/* C stops hearing and being heard. A (the coordinator) suspects it between timeout - interval and
 * timeout + interval after the silence began (its last heartbeat may be up to an interval old),
 * and VERIFY_SUSPECT confirms exactly VS_TIMEOUT later. The others suspect C too but it is not
 * theirs to report; C, cut off, is the first unsuspected member of its own picture and reports
 * everyone else. */
START_TEST(silent_member_is_suspected_and_confirmed) {
  start_group(-1, NULL);
  rs_sim_run_for(sim, 10 * INTERVAL);
  assert_no_events(0, 4);
  rs_time t0 = rs_sim_now(sim);
  discard_set_all(proto_of(&nodes[2], "DISCARD"), true);
  wait_event(&nodes[0], RS_EV_SUSPECT, &nodes[2].addr, 1, 20 * RS_SEC, "A confirms C");
  rs_time t = event_time(&nodes[0], RS_EV_SUSPECT, &nodes[2].addr);
  ck_assert_msg(t >= t0 + FD_TIMEOUT - INTERVAL + VS_TIMEOUT &&
                    t <= t0 + FD_TIMEOUT + INTERVAL + VS_TIMEOUT,
                "confirmed %.3f s after the silence began", (double)(t - t0) / RS_SEC);
  /* Exactly: suspected at A's first check a timeout after the last thing from C arrived. */
  rs_time last = last_heard(&nodes[0], &nodes[2].addr), suspected = t - VS_TIMEOUT;
  ck_assert_uint_le(last, t0);
  ck_assert_msg(suspected >= last + FD_TIMEOUT && suspected < last + FD_TIMEOUT + INTERVAL,
                "suspected %.3f s after C was last heard", (double)(suspected - last) / RS_SEC);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "verifications"), 1);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "are_you_dead_sent"), 1);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "confirmed"), 1);
  rs_sim_run_for(sim, 20 * INTERVAL); /* once per suspicion: no repeats while the view stands */
  ck_assert_uint_eq(n_events(&nodes[0]), 1);
  ck_assert_uint_eq(stat(&nodes[0], "FD_ALL3", "suspect_events"), 1);
  for (int i = 1; i <= 4; i++) {
    if (i == 2) continue;
    ck_assert_uint_eq(n_events(&nodes[i]), 0);
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "suspected"), 1);
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "suspect_events"), 0);
    ck_assert_uint_eq(stat(&nodes[i], "VERIFY_SUSPECT", "verifications"), 0);
  }
  ck_assert_uint_eq(count_events(&nodes[2], RS_EV_SUSPECT, NULL), 4);
  for (int i = 0; i < MAX_NODES; i++)
    if (i != 2) ck_assert_uint_eq(count_events(&nodes[2], RS_EV_SUSPECT, &nodes[i].addr), 1);
}
END_TEST

/* The coordinator falls silent: B, next in line, is the one to report it. */
START_TEST(silent_coordinator_is_reported_by_the_next_member) {
  start_group(-1, NULL);
  rs_sim_run_for(sim, 3 * INTERVAL);
  discard_set_all(proto_of(&nodes[0], "DISCARD"), true);
  wait_event(&nodes[1], RS_EV_SUSPECT, &nodes[0].addr, 1, 20 * RS_SEC, "B confirms A");
  rs_sim_run_for(sim, 5 * INTERVAL);
  ck_assert_uint_eq(n_events(&nodes[1]), 1);
  assert_no_events(2, 4);
  ck_assert_uint_eq(count_events(&nodes[0], RS_EV_SUSPECT, NULL), 4);
}
END_TEST

/* E's heartbeats are all lost (DISCARD drops its multicasts) but it answers ARE_YOU_DEAD: A
 * suspects it after a timeout of silence, asks, and unsuspects it at once; no SUSPECT ever
 * reaches the top. The detector starts E's silence afresh each time. */
START_TEST(slow_member_that_answers_is_unsuspected) {
  start_group(4, SIM_XML("drop_down_multicasts=\"1000000000\""));
  rs_time t0 = rs_sim_now(sim);
  wait_event(&nodes[0], RS_EV_UNSUSPECT, &nodes[4].addr, 1, 20 * RS_SEC, "A unsuspects E");
  rs_time t = event_time(&nodes[0], RS_EV_UNSUSPECT, &nodes[4].addr);
  /* E was "heard" when the view came; suspected at the first check a timeout later; the answer
   * arrives within the same virtual instant on LOOPBACK. */
  ck_assert_msg(t >= t0 + FD_TIMEOUT && t <= t0 + FD_TIMEOUT + INTERVAL,
                "unsuspected %.3f s after the view", (double)(t - t0) / RS_SEC);
  rs_sim_run_for(sim, 30 * INTERVAL);
  ck_assert_uint_eq(count_events(&nodes[0], RS_EV_SUSPECT, NULL), 0);
  size_t unsuspects = count_events(&nodes[0], RS_EV_UNSUSPECT, &nodes[4].addr);
  ck_assert_uint_ge(unsuspects, 6); /* the first, then one per timeout over 30 s */
  ck_assert_uint_le(unsuspects, 8);
  /* The answer is a message from E: FD_ALL3 hears it first and unsuspects E, which ends the
   * verification before VERIFY_SUSPECT reads the answer itself. */
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "verifications"), unsuspects);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "cancelled"), unsuspects);
  ck_assert_uint_eq(stat(&nodes[0], "FD_ALL3", "unsuspect_events"), unsuspects);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "confirmed"), 0);
  ck_assert_uint_eq(stat(&nodes[4], "VERIFY_SUSPECT", "are_you_dead_received"), unsuspects);
  ck_assert_uint_eq(stat(&nodes[4], "VERIFY_SUSPECT", "i_am_not_dead_sent"), unsuspects);
  assert_no_events(1, 4);
}
END_TEST

/* Suspected, confirmed, heard from again (UNSUSPECT), silent again (SUSPECT again). */
START_TEST(member_heard_again_is_unsuspected_then_suspected_anew) {
  start_group(-1, NULL);
  struct rs_protocol *dc = proto_of(&nodes[2], "DISCARD");
  const struct rs_addr *c = &nodes[2].addr;
  discard_set_all(dc, true);
  wait_event(&nodes[0], RS_EV_SUSPECT, c, 1, 20 * RS_SEC, "A confirms C");
  discard_set_all(dc, false);
  wait_event(&nodes[0], RS_EV_UNSUSPECT, c, 1, 3 * INTERVAL, "A hears C again");
  discard_set_all(dc, true);
  wait_event(&nodes[0], RS_EV_SUSPECT, c, 2, 20 * RS_SEC, "A confirms C again");
  struct fdtest *t = top_of(&nodes[0]);
  ck_assert_uint_eq(n_events(&nodes[0]), 3);
  ck_assert_int_eq(t->ev[0].type, RS_EV_SUSPECT);
  ck_assert_int_eq(t->ev[1].type, RS_EV_UNSUSPECT);
  ck_assert_int_eq(t->ev[2].type, RS_EV_SUSPECT);
  ck_assert_uint_ge(t->ev[2].t - t->ev[1].t, FD_TIMEOUT - INTERVAL + VS_TIMEOUT);
}
END_TEST

/* RS_EV_UNSUSPECT coming down (VERIFY_SUSPECT got an answer) clears FD_ALL3's suspicion and
 * starts the member's silence afresh: a silent member is reported again a timeout later. */
START_TEST(unsuspect_from_above_restarts_the_silence) {
  start_group(-1, NULL);
  discard_set_all(proto_of(&nodes[2], "DISCARD"), true);
  wait_event(&nodes[0], RS_EV_SUSPECT, &nodes[2].addr, 1, 20 * RS_SEC, "A confirms C");
  ck_assert_uint_eq(stat(&nodes[0], "FD_ALL3", "suspected"), 1);
  rs_time t0 = rs_sim_now(sim);
  struct rs_event ev = {.type = RS_EV_UNSUSPECT, .u.addr = nodes[2].addr};
  stack_down_event(channel_stack(nodes[0].ch), &ev);
  ck_assert_uint_eq(stat(&nodes[0], "FD_ALL3", "suspected"), 0);
  wait_event(&nodes[0], RS_EV_SUSPECT, &nodes[2].addr, 2, 20 * RS_SEC, "A confirms C again");
  rs_time t = top_of(&nodes[0])->ev[1].t;
  ck_assert_uint_ge(t - t0, FD_TIMEOUT + VS_TIMEOUT);
  ck_assert_uint_lt(t - t0, FD_TIMEOUT + INTERVAL + VS_TIMEOUT);
}
END_TEST

/* A new view that still has a silent member makes it suspected (and verified) again. */
START_TEST(new_view_reports_a_silent_member_again) {
  start_group(-1, NULL);
  discard_set_all(proto_of(&nodes[3], "DISCARD"), true);
  wait_event(&nodes[0], RS_EV_SUSPECT, &nodes[3].addr, 1, 20 * RS_SEC, "A confirms D");
  rs_time t_view = rs_sim_now(sim);
  inject_view_all(group, MAX_NODES, 2);
  wait_event(&nodes[0], RS_EV_SUSPECT, &nodes[3].addr, 2, 10 * RS_SEC, "A confirms D again");
  rs_time t = top_of(&nodes[0])->ev[1].t;
  ck_assert_uint_le(t - t_view, INTERVAL + VS_TIMEOUT);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "verifications"), 2);
}
END_TEST

static bool verifying(void *arg) { return stat(arg, "VERIFY_SUSPECT", "verifying") > 0; }

/* E leaves the view (and closes): nobody suspects it. D then falls silent and, while A verifies
 * it, a view without D comes: the verification is dropped, no SUSPECT goes up. */
START_TEST(member_removed_from_the_view_is_not_suspected) {
  start_group(-1, NULL);
  rs_sim_run_for(sim, 2 * INTERVAL);
  close_node(&nodes[4]);
  inject_view_all(group, 4, 2);
  rs_sim_run_for(sim, 30 * INTERVAL);
  assert_no_events(0, 3);
  for (int i = 0; i < 4; i++) {
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "members"), 3);
    ck_assert_uint_eq(stat(&nodes[i], "FD_ALL3", "suspicions"), 0);
  }
  discard_set_all(proto_of(&nodes[3], "DISCARD"), true);
  ck_assert(rs_sim_run_until(sim, verifying, &nodes[0], 20 * RS_SEC));
  inject_view_all(group, 3, 3);
  rs_sim_run_for(sim, 10 * INTERVAL);
  assert_no_events(0, 2);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "dropped_left"), 1);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "confirmed"), 0);
  ck_assert_uint_eq(stat(&nodes[0], "VERIFY_SUSPECT", "verifying"), 0);
}
END_TEST

/* A member that multicasts at least once per interval sends no heartbeats (its traffic is its
 * sign of life) and is not suspected. */
START_TEST(traffic_replaces_heartbeats) {
  start_group(-1, NULL);
  uint64_t hb0 = stat(&nodes[1], "FD_ALL3", "heartbeats_sent");
  for (int i = 0; i < 40; i++) {
    uint8_t x = (uint8_t)i;
    ck_assert_int_eq(rs_channel_send(nodes[1].ch, NULL, &x, 1, 0), 0);
    rs_sim_run_for(sim, INTERVAL / 2);
  }
  ck_assert_uint_le(stat(&nodes[1], "FD_ALL3", "heartbeats_sent"), hb0 + 1);
  ck_assert_uint_ge(stat(&nodes[1], "FD_ALL3", "heartbeats_suppressed"), 19);
  assert_no_events(0, 4);
  ck_assert_uint_eq(nodes[0].delivered, 40);
}
END_TEST

/* --- hostile input ---------------------------------------------------------------------------- */

static struct rs_msg *forge(struct node *to, const struct rs_addr *src, uint16_t id, uint8_t type) {
  const struct rs_header_type *t = registry_header_type(id);
  ck_assert_ptr_nonnull(t);
  struct rs_msg *m = rs_msg_new();
  uint8_t *h = rs_msg_put_header(m, t);
  ck_assert_ptr_nonnull(h);
  /* Both headers start with their type byte in memory (protocols/fd_all3.c, verify_suspect.c). */
  h[0] = type;
  m->src = *src;
  m->dest = to->addr;
  return m;
}

/* Hands a forged message to the node's protocols from below, as if it came off the network. */
static void inject_msg(struct node *to, struct rs_msg *m) {
  proto_up_msg(proto_of(to, "DISCARD"), m);
}

START_TEST(hostile_input_is_dropped_and_counted) {
  start_group(-1, NULL);
  struct node *a = &nodes[0];
  struct rs_addr forger = {0x1234, 0x5678};
  inject_msg(a, forge(a, &nodes[1].addr, FD_ALL3_ID, 9));
  inject_msg(a, forge(a, &nodes[1].addr, VS_ID, 0));
  inject_msg(a, forge(a, &forger, VS_ID, 77));
  ck_assert_uint_eq(stat(a, "FD_ALL3", "bad_dropped"), 1);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "bad_dropped"), 2);
  /* An answer nobody asked for changes nothing. */
  inject_msg(a, forge(a, &forger, VS_ID, 2));
  inject_msg(a, forge(a, &nodes[3].addr, VS_ID, 2));
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "stale_rsps"), 2);
  /* Suspicions of ourselves or of strangers are not verified. */
  struct rs_protocol *fd = proto_of(a, "FD_ALL3");
  struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = a->addr};
  proto_up_event(fd, &ev);
  ev.u.addr = forger;
  proto_up_event(fd, &ev);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "ignored_self"), 1);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "ignored_non_member"), 1);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "verifications"), 0);
  /* A stranger's messages are no sign of life of anyone, and cost no state. */
  inject_msg(a, forge(a, &forger, FD_ALL3_ID, 1));
  ck_assert_uint_eq(stat(a, "FD_ALL3", "members"), 4);
  rs_sim_run_for(sim, 20 * INTERVAL);
  assert_no_events(0, 4);
  ck_assert_uint_eq(a->delivered, 0);
}
END_TEST

/* With use_mcast_rsps, C answers ARE_YOU_DEAD with a multicast: the asker unsuspects it, the
 * others, who asked nothing, count a stale answer. */
START_TEST(multicast_answers_reach_everyone) {
  start_group(2, "<config><LOOPBACK/><DISCARD/><SPY/><FD_ALL3 interval=\"1s\" timeout=\"5s\"/>"
                 "<VERIFY_SUSPECT timeout=\"2s\" use_mcast_rsps=\"true\"/><FDTEST/></config>");
  struct node *a = &nodes[0];
  struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = nodes[2].addr};
  proto_up_event(proto_of(a, "FD_ALL3"), &ev);
  wait_event(a, RS_EV_UNSUSPECT, &nodes[2].addr, 1, RS_SEC, "A unsuspects C");
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "unsuspected"), 1);
  ck_assert_uint_eq(stat(&nodes[2], "VERIFY_SUSPECT", "i_am_not_dead_sent"), 1);
  for (int i = 1; i < MAX_NODES; i++)
    if (i != 2) ck_assert_uint_eq(stat(&nodes[i], "VERIFY_SUSPECT", "stale_rsps"), 1);
  assert_no_events(1, 4);
}
END_TEST

/* A suspicion repeated while the member is being verified keeps the first deadline. */
START_TEST(repeated_suspicion_keeps_the_deadline) {
  start_group(-1, NULL);
  struct node *a = &nodes[0];
  discard_set_all(proto_of(&nodes[1], "DISCARD"), true); /* B hears nothing, answers nothing */
  struct rs_protocol *fd = proto_of(a, "FD_ALL3");
  rs_time t0 = rs_sim_now(sim);
  struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = nodes[1].addr};
  proto_up_event(fd, &ev);
  rs_sim_run_for(sim, VS_TIMEOUT / 2);
  ev = (struct rs_event){.type = RS_EV_SUSPECT, .u.addr = nodes[1].addr};
  proto_up_event(fd, &ev);
  ev = (struct rs_event){.type = RS_EV_SUSPECT, .u.addr = nodes[2].addr};
  proto_up_event(fd, &ev); /* C answers */
  wait_event(a, RS_EV_SUSPECT, &nodes[1].addr, 1, 5 * RS_SEC, "A confirms B");
  ck_assert_uint_eq(event_time(a, RS_EV_SUSPECT, &nodes[1].addr), t0 + VS_TIMEOUT);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "repeated_suspicions"), 1);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "are_you_dead_sent"), 3);
  /* C was suspected by no detector: its answer is what ends the verification. */
  ck_assert_uint_eq(count_events(a, RS_EV_UNSUSPECT, &nodes[2].addr), 1);
  ck_assert_uint_eq(count_events(a, RS_EV_SUSPECT, &nodes[2].addr), 0);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "unsuspected"), 1);
  ck_assert_uint_eq(stat(a, "VERIFY_SUSPECT", "i_am_not_dead_received"), 1);
}
END_TEST

/* --- headers on the wire --------------------------------------------------------------------- */

static int decode(uint16_t id, const uint8_t *p, size_t len, uint8_t *out, size_t outlen) {
  const struct rs_header_type *t = registry_header_type(id);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_le(t->size, outlen);
  memset(out, 0xa5, outlen);
  memset(out, 0, t->size);
  struct rs_reader r;
  reader_init(&r, p, len);
  t->read(out, &r);
  if (!r.err && r.pos != len) return RS_EMALFORMED; /* the frame decoder's rule */
  return r.err;
}

static size_t encode(uint16_t id, const void *h, uint8_t *out, size_t cap) {
  const struct rs_header_type *t = registry_header_type(id);
  struct rs_writer w;
  writer_init(&w, out, cap);
  t->write(h, &w);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, t->wire_size(h));
  return w.len;
}

START_TEST(headers_round_trip_and_reject_bad_bytes) {
  uint8_t h[64], out[64];
  /* FD_ALL3: one type byte, 1 = HEARTBEAT. */
  static const uint8_t hb[] = {0x01};
  ck_assert_int_eq(decode(FD_ALL3_ID, hb, 1, h, sizeof(h)), 0);
  ck_assert_uint_eq(encode(FD_ALL3_ID, h, out, sizeof(out)), 1);
  ck_assert_mem_eq(out, hb, 1);
  static const uint8_t bad_hb[][2] = {{0x00}, {0x02}, {0xff}};
  for (size_t i = 0; i < 3; i++)
    ck_assert_int_ne(decode(FD_ALL3_ID, bad_hb[i], 1, h, sizeof(h)), 0);
  ck_assert_int_ne(decode(FD_ALL3_ID, hb, 0, h, sizeof(h)), 0);
  /* VERIFY_SUSPECT: 1 = ARE_YOU_DEAD, 2 = I_AM_NOT_DEAD. */
  for (uint8_t t = 1; t <= 2; t++) {
    ck_assert_int_eq(decode(VS_ID, &t, 1, h, sizeof(h)), 0);
    ck_assert_uint_eq(encode(VS_ID, h, out, sizeof(out)), 1);
    ck_assert_uint_eq(out[0], t);
  }
  static const uint8_t bad_vs[] = {0, 3, 0x80};
  for (size_t i = 0; i < sizeof(bad_vs); i++)
    ck_assert_int_ne(decode(VS_ID, &bad_vs[i], 1, h, sizeof(h)), 0);
  /* FD_SOCK: type, then the member's 16 address bytes. */
  uint8_t s[17] = {0x01, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x2a};
  ck_assert_int_eq(decode(FD_SOCK_ID, s, 17, h, sizeof(h)), 0);
  ck_assert_uint_eq(encode(FD_SOCK_ID, h, out, sizeof(out)), 17);
  ck_assert_mem_eq(out, s, 17);
  s[0] = 2;
  ck_assert_int_eq(decode(FD_SOCK_ID, s, 17, h, sizeof(h)), 0);
  ck_assert_int_ne(decode(FD_SOCK_ID, s, 16, h, sizeof(h)), 0);
  s[0] = 3;
  ck_assert_int_ne(decode(FD_SOCK_ID, s, 17, h, sizeof(h)), 0);
  static const uint8_t null_mbr[17] = {0x01};
  ck_assert_int_ne(decode(FD_SOCK_ID, null_mbr, 17, h, sizeof(h)), 0);
}
END_TEST

/* --- configuration errors --------------------------------------------------------------------- */

START_TEST(configuration_errors_are_clear) {
  char err[1024];
  struct node n;
  int rc =
      open_node(&n, "X", "<config><LOOPBACK/><FD_ALL3 interval=\"5s\" timeout=\"5s\"/></config>",
                err, sizeof(err));
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "FD_ALL3") && strstr(err, "interval (5000 ms) must be less than "
                                                      "timeout (5000 ms)"),
                "%s", err);
  /* FD_SOCK needs sockets: not in the simulation... */
  rc = open_node(&n, "Y", "<config><LOOPBACK/><FD_SOCK/></config>", err, sizeof(err));
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "FD_SOCK") && strstr(err, "needs a runtime with I/O"), "%s", err);
  close_node(&n);
  /* ... and not over LOOPBACK, whose addresses have no IP. */
  struct rs_sim *keep = sim;
  sim = NULL;
  rc = open_node(&n, "Z",
                 "<config><LOOPBACK/><FD_SOCK2 offset=\"200\"/><VERIFY_SUSPECT2/>"
                 "</config>",
                 err, sizeof(err));
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(err, "FD_SOCK") && strstr(err, "needs an IP transport"), "%s", err);
  close_node(&n);
  sim = keep;
}
END_TEST

/* ------------------------------------------------------------------------------------------- */

static Suite *suite(void) {
  Suite *s = suite_create("failure_detection");
  TCase *tc = tcase_create("fd_all3 + verify_suspect (simulation)");
  tcase_add_checked_fixture(tc, sim_setup, sim_teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, healthy_group_is_never_suspected);
  tcase_add_test(tc, silent_member_is_suspected_and_confirmed);
  tcase_add_test(tc, silent_coordinator_is_reported_by_the_next_member);
  tcase_add_test(tc, slow_member_that_answers_is_unsuspected);
  tcase_add_test(tc, member_heard_again_is_unsuspected_then_suspected_anew);
  tcase_add_test(tc, unsuspect_from_above_restarts_the_silence);
  tcase_add_test(tc, new_view_reports_a_silent_member_again);
  tcase_add_test(tc, member_removed_from_the_view_is_not_suspected);
  tcase_add_test(tc, traffic_replaces_heartbeats);
  tcase_add_test(tc, hostile_input_is_dropped_and_counted);
  tcase_add_test(tc, repeated_suspicion_keeps_the_deadline);
  tcase_add_test(tc, multicast_answers_reach_everyone);
  tcase_add_test(tc, headers_round_trip_and_reject_bad_bytes);
  tcase_add_test(tc, configuration_errors_are_clear);
  suite_add_tcase(s, tc);
  suite_add_tcase(s, fd_sock_tcase());
  return s;
}

int main(void) { return test_run(suite()); }

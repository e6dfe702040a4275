/* UNICAST3 on LOOPBACK in the simulation: exactly once and in order under loss, OOB, first and
 * last message lost, expiry and SEND_FIRST_SEQNO, quiescence, bounded windows, hostile input. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"

#define U3_ID 48
#define MAX_PEERS 4
#define MAX_LOG 4096
#define MAX_OOB 65536
#define OOB_BIT 0x80000000u

/* What one member received: per sender the next regular seq expected, OOB ones in a bitmap. */
struct from {
  struct rs_addr src;
  uint32_t next;
  uint64_t n;
};

struct node {
  struct rs_channel *ch;
  struct rs_runtime *rt;
  struct rs_addr addr;
  struct from from[MAX_PEERS];
  size_t n_from;
  uint8_t oob_seen[MAX_OOB / 8];
  uint64_t n_oob;
  uint64_t errors;       /* out of order, duplicates, unknown senders */
  uint32_t log[MAX_LOG]; /* seqs in delivery order (OOB ones with OOB_BIT) */
  size_t n_log;
};

static struct rs_sim *sim;

static struct from *from_of(struct node *nd, const struct rs_addr *src) {
  for (size_t i = 0; i < nd->n_from; i++)
    if (rs_addr_eq(&nd->from[i].src, src)) return &nd->from[i];
  if (nd->n_from == MAX_PEERS) return NULL;
  struct from *f = &nd->from[nd->n_from++];
  f->src = *src;
  return f;
}

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct node *nd = arg;
  uint32_t seq = 0;
  if (len >= 4) memcpy(&seq, data, 4);
  if (nd->n_log < MAX_LOG) nd->log[nd->n_log++] = seq | (flags & RS_MSG_OOB ? OOB_BIT : 0);
  if (flags & RS_MSG_OOB) {
    if (seq >= MAX_OOB || (nd->oob_seen[seq / 8] & (1u << (seq % 8))))
      nd->errors++;
    else
      nd->oob_seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
    nd->n_oob++;
    return;
  }
  struct from *f = from_of(nd, src);
  if (!f || seq != f->next) {
    nd->errors++;
    if (f) fprintf(stderr, "order: got %u, expected %u\n", seq, f->next);
  }
  if (f) {
    f->next = seq + 1;
    f->n++;
  }
}

static void open_node(struct node *nd, const char *name, const char *xml) {
  memset(nd, 0, sizeof(*nd));
  nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open: %s", err);
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(nd->ch, &r, nd);
  ck_assert_int_eq(rs_channel_connect(nd->ch, "u3"), 0);
  nd->addr = rs_channel_address(nd->ch);
}

static void close_node(struct node *nd) {
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
}

static struct rs_protocol *proto_of(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nd->ch)->bottom, name);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void send_seq(struct node *from, const struct node *to, uint32_t seq, unsigned flags) {
  uint8_t buf[16] = {0};
  memcpy(buf, &seq, 4);
  ck_assert_int_eq(rs_channel_send(from->ch, &to->addr, buf, sizeof(buf), flags), 0);
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

static uint64_t stat(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_of(nd, "UNICAST3");
  struct stat_query q = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.found, "no stat %s", name);
  return q.v;
}

/* --- waiting --------------------------------------------------------------------------------- */

struct want {
  struct node *nd;
  const struct rs_addr *src; /* NULL: count OOB messages */
  uint64_t n;
};

static uint64_t got(struct node *nd, const struct rs_addr *src) {
  if (!src) return nd->n_oob;
  for (size_t i = 0; i < nd->n_from; i++)
    if (rs_addr_eq(&nd->from[i].src, src)) return nd->from[i].n;
  return 0;
}

static bool all_got(void *arg) {
  for (struct want *w = arg; w->nd; w++)
    if (got(w->nd, w->src) < w->n) return false;
  return true;
}

static void wait_all(struct want *w, rs_time timeout, const char *what) {
  ck_assert_msg(rs_sim_run_until(sim, all_got, w, timeout), "timed out: %s", what);
}

static void setup(void) { sim = rs_sim_new(4242); }
static void teardown(void) { rs_sim_free(sim); }

#define LOSSY(extra)                                                                               \
  "<config><LOOPBACK/><DISCARD up=\"0.1\" down=\"0.1\"/><UNICAST3 xmit_interval=\"100ms\" " extra  \
  "/></config>"
#define CLEAN(extra)                                                                               \
  "<config><LOOPBACK/><DISCARD/><UNICAST3 xmit_interval=\"100ms\" " extra "/></config>"

/* --- (1) exactly once, in order, 10% loss both ways ------------------------------------------ */

START_TEST(lossy_100k_each_way) {
  enum { N = 100000 };
  static struct node a, b, c;
  open_node(&a, "A", LOSSY(""));
  open_node(&b, "B", LOSSY(""));
  open_node(&c, "C", LOSSY(""));
  uint64_t t0 = test_now_ms();
  for (uint32_t i = 0; i < N; i++) {
    send_seq(&a, &c, i, 0);
    send_seq(&b, &c, i, 0);
    send_seq(&c, &a, i, 0);
    send_seq(&c, &b, i, 0);
  }
  struct want w[] = {{&c, &a.addr, N}, {&c, &b.addr, N}, {&a, &c.addr, N}, {&b, &c.addr, N}, {0}};
  wait_all(w, 600 * RS_SEC, "100,000 messages each way");
  rs_time vt = rs_sim_now(sim);
  rs_sim_run_for(sim, 2 * RS_SEC); /* nothing more may arrive */
  fprintf(stderr,
          "lossy_100k_each_way: %llu ms real, %.1f s virtual; C: xmits=%llu "
          "xmit_reqs_sent=%llu dups=%llu window_full=%llu acks_sent=%llu\n",
          (unsigned long long)(test_now_ms() - t0), (double)vt / RS_SEC,
          (unsigned long long)stat(&c, "xmits"), (unsigned long long)stat(&c, "xmit_reqs_sent"),
          (unsigned long long)stat(&c, "dups_dropped"),
          (unsigned long long)stat(&c, "window_full_dropped"),
          (unsigned long long)stat(&c, "acks_sent"));
  ck_assert_uint_eq(got(&c, &a.addr), N);
  ck_assert_uint_eq(got(&c, &b.addr), N);
  ck_assert_uint_eq(got(&a, &c.addr), N);
  ck_assert_uint_eq(got(&b, &c.addr), N);
  ck_assert_uint_eq(a.errors + b.errors + c.errors, 0);
  /* Loss happened and was repaired, near the minimum: with 10% lost each way about 0.25
   * retransmissions per message sent (data, requests and retransmissions are all lost). */
  ck_assert_uint_gt(stat(&a, "xmits"), N / 10);
  ck_assert_uint_lt(stat(&a, "xmits"), N * 4 / 10);
  ck_assert_uint_lt(stat(&b, "xmits"), N * 4 / 10);
  ck_assert_uint_lt(stat(&c, "xmits"), 2 * N * 4 / 10);
  ck_assert_uint_lt(stat(&c, "dups_dropped"), 2 * N / 20);
  ck_assert_uint_eq(stat(&a, "unacked") + stat(&b, "unacked") + stat(&c, "unacked"), 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

START_TEST(no_loss_no_retransmission) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN(""));
  open_node(c, "C", CLEAN(""));
  for (uint32_t i = 0; i < 10000; i++) {
    send_seq(a, c, i, 0);
    send_seq(c, a, i, 0);
  }
  struct want w[] = {{c, &a->addr, 10000}, {a, &c->addr, 10000}, {0}};
  wait_all(w, 10 * RS_SEC, "10,000 messages each way");
  rs_sim_run_for(sim, 2 * RS_SEC);
  struct node *nodes[2] = {a, c};
  for (int k = 0; k < 2; k++) {
    ck_assert_uint_eq(stat(nodes[k], "xmits"), 0);
    ck_assert_uint_eq(stat(nodes[k], "xmit_reqs_sent"), 0);
    ck_assert_uint_eq(stat(nodes[k], "dups_dropped"), 0);
    ck_assert_uint_eq(stat(nodes[k], "unacked"), 0);
    /* One ack per ack_threshold (100) messages, or fewer: batches deliver many at once. */
    ck_assert_uint_le(stat(nodes[k], "acks_sent"), 10000 / 100 + 2);
    ck_assert_uint_ge(stat(nodes[k], "acks_sent"), 1);
  }
  ck_assert_uint_eq(a->errors + c->errors, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

START_TEST(reordering_and_loss) {
  const char *xml = "<config><LOOPBACK/><DELAY in_delay=\"5ms\"/><DISCARD up=\"0.1\" down=\"0.1\"/>"
                    "<UNICAST3 xmit_interval=\"100ms\"/></config>";
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", xml);
  open_node(c, "C", xml);
  for (uint32_t i = 0; i < 5000; i++) {
    send_seq(a, c, i, 0);
    send_seq(c, a, i, 0);
    if (i % 100 == 99) rs_sim_run_for(sim, RS_MS); /* a sender with a rate, so delays interleave */
  }
  struct want w[] = {{c, &a->addr, 5000}, {a, &c->addr, 5000}, {0}};
  wait_all(w, 60 * RS_SEC, "5,000 messages each way");
  rs_sim_run_for(sim, 2 * RS_SEC);
  ck_assert_uint_eq(got(c, &a->addr), 5000);
  ck_assert_uint_eq(got(a, &c->addr), 5000);
  ck_assert_uint_eq(a->errors + c->errors, 0);
  ck_assert_uint_gt(stat(c, "ooo_buffered"), 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* Multicasts, NO_RELIABILITY messages and messages to ourselves get no header and no state. */
START_TEST(untouched_messages) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN(""));
  open_node(c, "C", CLEAN(""));
  uint8_t buf[16] = {0};
  ck_assert_int_eq(rs_channel_send(a->ch, NULL, buf, sizeof(buf), RS_MSG_DONT_LOOPBACK << 16), 0);
  buf[0] = 1;
  ck_assert_int_eq(rs_channel_send(a->ch, &c->addr, buf, sizeof(buf), RS_MSG_NO_RELIABILITY), 0);
  buf[0] = 0;
  ck_assert_int_eq(rs_channel_send(a->ch, &a->addr, buf, sizeof(buf), 0), 0);
  struct want w[] = {{c, &a->addr, 2}, {a, &a->addr, 1}, {0}};
  wait_all(w, RS_SEC, "the three messages");
  ck_assert_uint_eq(stat(a, "msgs_sent"), 0);
  ck_assert_uint_eq(stat(a, "send_conns"), 0);
  ck_assert_uint_eq(stat(c, "msgs_received"), 0);
  ck_assert_uint_eq(stat(c, "recv_conns"), 0);
  /* A lost NO_RELIABILITY message stays lost. */
  discard_set_all(proto_of(a, "DISCARD"), true);
  buf[0] = 2;
  ck_assert_int_eq(rs_channel_send(a->ch, &c->addr, buf, sizeof(buf), RS_MSG_NO_RELIABILITY), 0);
  rs_sim_run_for(sim, RS_MS);
  discard_set_all(proto_of(a, "DISCARD"), false);
  rs_sim_run_for(sim, 2 * RS_SEC);
  ck_assert_uint_eq(got(c, &a->addr), 2);
  ck_assert_uint_eq(a->errors + c->errors, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- (2) OOB: exactly once, not held back ---------------------------------------------------- */

START_TEST(oob_exactly_once_under_loss) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", LOSSY(""));
  open_node(c, "C", LOSSY(""));
  uint32_t reg = 0, oob = 0;
  for (uint32_t i = 0; i < 6000; i++) {
    if (i % 3 == 0)
      send_seq(a, c, oob++, RS_MSG_OOB);
    else
      send_seq(a, c, reg++, 0);
  }
  struct want w[] = {{c, &a->addr, reg}, {c, NULL, oob}, {0}};
  wait_all(w, 60 * RS_SEC, "regular and OOB messages");
  rs_sim_run_for(sim, 2 * RS_SEC);
  ck_assert_uint_eq(got(c, &a->addr), reg);
  ck_assert_uint_eq(c->n_oob, oob);
  ck_assert_uint_eq(c->errors, 0);
  ck_assert_uint_gt(stat(c, "oob_delivered"), 0);
  ck_assert_uint_eq(stat(c, "oob_delivered"), oob);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

START_TEST(oob_overtakes_a_lost_regular_message) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN(""));
  open_node(c, "C", CLEAN(""));
  struct rs_protocol *da = proto_of(a, "DISCARD");
  send_seq(a, c, 0, 0);
  struct want w0[] = {{c, &a->addr, 1}, {0}};
  wait_all(w0, RS_SEC, "first message");
  discard_set_all(da, true);
  send_seq(a, c, 1, 0); /* lost */
  rs_sim_run_for(sim, RS_MS);
  discard_set_all(da, false);
  send_seq(a, c, 7, RS_MSG_OOB);
  struct want w[] = {{c, &a->addr, 2}, {c, NULL, 1}, {0}};
  wait_all(w, 5 * RS_SEC, "the lost message and the OOB one");
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_eq(c->n_log, 3);
  ck_assert_uint_eq(c->log[0], 0);
  ck_assert_uint_eq(c->log[1], 7 | OOB_BIT); /* delivered before the gap was repaired */
  ck_assert_uint_eq(c->log[2], 1);
  ck_assert_uint_eq(c->errors, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- (3) (4) first and last message lost ----------------------------------------------------- */

START_TEST(first_message_lost) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", "<config><LOOPBACK/><DISCARD drop_down_unicasts=\"1\"/><UNICAST3/></config>");
  open_node(c, "C", CLEAN(""));
  send_seq(a, c, 0, 0);
  send_seq(a, c, 1, 0);
  struct want w[] = {{c, &a->addr, 2}, {0}};
  wait_all(w, 5 * RS_SEC, "both messages");
  ck_assert_uint_eq(c->n_log, 2);
  ck_assert_uint_eq(c->log[0], 0);
  ck_assert_uint_eq(c->log[1], 1);
  ck_assert_uint_eq(c->errors, 0);
  /* The receiver did not know the connection and asked for its first message. */
  ck_assert_uint_ge(stat(c, "send_first_seqno_sent"), 1);
  ck_assert_uint_ge(stat(a, "send_first_seqno_received"), 1);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

START_TEST(last_message_lost) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN(""));
  open_node(c, "C", CLEAN(""));
  struct rs_protocol *da = proto_of(a, "DISCARD");
  for (uint32_t i = 0; i < 9; i++)
    send_seq(a, c, i, 0);
  struct want w0[] = {{c, &a->addr, 9}, {0}};
  wait_all(w0, RS_SEC, "nine messages");
  discard_set_all(da, true);
  send_seq(a, c, 9, 0); /* the last one, lost: no later message reveals the gap */
  rs_sim_run_for(sim, RS_MS);
  discard_set_all(da, false);
  ck_assert_uint_eq(got(c, &a->addr), 9);
  rs_time t0 = rs_sim_now(sim);
  struct want w[] = {{c, &a->addr, 10}, {0}};
  wait_all(w, 5 * RS_SEC, "the last message");
  /* The sender resends its highest once it sent nothing for a whole interval (100ms). */
  ck_assert_uint_le(rs_sim_now(sim) - t0, 250 * RS_MS);
  ck_assert_uint_ge(stat(a, "resends_highest"), 1);
  ck_assert_uint_eq(c->errors, 0);
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_eq(stat(a, "unacked"), 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- (5) expiry: the receiver forgot the connection, the sender did not ----------------------- */

START_TEST(receiver_state_removed_send_first_seqno) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN("conn_expiry_timeout=\"0\""));
  open_node(c, "C", CLEAN("conn_expiry_timeout=\"1s\""));
  for (uint32_t i = 0; i < 10; i++)
    send_seq(a, c, i, 0);
  struct want w0[] = {{c, &a->addr, 10}, {0}};
  wait_all(w0, RS_SEC, "ten messages");
  ck_assert_uint_eq(stat(c, "recv_conns"), 1);
  rs_sim_run_for(sim, 3 * RS_SEC);
  ck_assert_uint_eq(stat(c, "recv_conns"), 0); /* expired */
  ck_assert_uint_eq(stat(c, "conns_expired"), 1);
  ck_assert_uint_eq(stat(a, "send_conns"), 1); /* the sender still has it: same conn_id */
  for (uint32_t i = 10; i < 20; i++)
    send_seq(a, c, i, 0);
  struct want w[] = {{c, &a->addr, 20}, {0}};
  wait_all(w, 5 * RS_SEC, "ten more messages");
  ck_assert_uint_eq(c->errors, 0);
  ck_assert_uint_ge(stat(c, "send_first_seqno_sent"), 1);
  ck_assert_uint_ge(stat(c, "unknown_conn_dropped"), 1);
  ck_assert_uint_eq(stat(a, "conns_created"), 1);
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_eq(c->n_log, 20);
  ck_assert_uint_eq(stat(a, "unacked"), 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* The receiver expires before its delayed ack was due: it acks on the way out, so nothing it
 * delivered comes back when the sender answers SEND_FIRST_SEQNO. */
START_TEST(expiry_acks_what_was_delivered) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  /* A's slow xmit run keeps its resend of the highest message (which would draw an ack) out of
   * the picture until C is gone. */
  open_node(a, "A",
            "<config><LOOPBACK/><DISCARD/><UNICAST3 xmit_interval=\"2s\" "
            "conn_expiry_timeout=\"0\"/></config>");
  open_node(c, "C",
            "<config><LOOPBACK/><DISCARD/><UNICAST3 xmit_interval=\"1s\" "
            "conn_expiry_timeout=\"100ms\"/></config>");
  for (uint32_t i = 0; i < 10; i++)
    send_seq(a, c, i, 0);
  struct want w0[] = {{c, &a->addr, 10}, {0}};
  wait_all(w0, RS_SEC, "ten messages");
  ck_assert_uint_eq(stat(c, "acks_sent"), 0); /* fewer than ack_threshold: not yet */
  rs_sim_run_for(sim, 1500 * RS_MS);
  ck_assert_uint_eq(stat(c, "recv_conns"), 0);
  ck_assert_uint_eq(stat(c, "acks_sent"), 1);
  ck_assert_uint_eq(stat(a, "unacked"), 0);
  for (uint32_t i = 10; i < 20; i++)
    send_seq(a, c, i, 0);
  struct want w[] = {{c, &a->addr, 20}, {0}};
  wait_all(w, 5 * RS_SEC, "ten more messages");
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_eq(c->n_log, 20);
  ck_assert_uint_eq(c->errors, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

START_TEST(sender_expiry_closes_both_sides) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN("conn_expiry_timeout=\"1s\""));
  open_node(c, "C", CLEAN("conn_expiry_timeout=\"1m\""));
  for (uint32_t i = 0; i < 10; i++)
    send_seq(a, c, i, 0);
  struct want w0[] = {{c, &a->addr, 10}, {0}};
  wait_all(w0, RS_SEC, "ten messages");
  rs_sim_run_for(sim, 3 * RS_SEC);
  ck_assert_uint_eq(stat(a, "send_conns"), 0);
  ck_assert_uint_eq(stat(a, "closes_sent"), 1);
  ck_assert_uint_eq(stat(c, "closes_received"), 1);
  ck_assert_uint_eq(stat(c, "recv_conns"), 0); /* removed by CLOSE, long before its expiry */
  for (uint32_t i = 10; i < 20; i++)
    send_seq(a, c, i, 0);
  struct want w[] = {{c, &a->addr, 20}, {0}};
  wait_all(w, 5 * RS_SEC, "ten more messages");
  ck_assert_uint_eq(c->errors, 0);
  ck_assert_uint_eq(stat(a, "conns_created"), 2); /* a new connection, marked FIRST */
  ck_assert_uint_eq(stat(c, "send_first_seqno_sent"), 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

START_TEST(new_connection_replaces_old_one) {
  /* The CLOSE is lost: the receiver still has the old connection when the new one starts. */
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN("conn_expiry_timeout=\"1s\""));
  open_node(c, "C", CLEAN("conn_expiry_timeout=\"1m\""));
  for (uint32_t i = 0; i < 10; i++)
    send_seq(a, c, i, 0);
  struct want w0[] = {{c, &a->addr, 10}, {0}};
  wait_all(w0, RS_SEC, "ten messages");
  rs_sim_run_for(sim, 500 * RS_MS); /* acked */
  ck_assert_uint_eq(stat(a, "unacked"), 0);
  discard_set_all(proto_of(a, "DISCARD"), true);
  rs_sim_run_for(sim, 3 * RS_SEC);
  discard_set_all(proto_of(a, "DISCARD"), false);
  ck_assert_uint_eq(stat(a, "send_conns"), 0);
  ck_assert_uint_eq(stat(c, "recv_conns"), 1);
  for (uint32_t i = 10; i < 20; i++)
    send_seq(a, c, i, 0);
  struct want w[] = {{c, &a->addr, 20}, {0}};
  wait_all(w, 5 * RS_SEC, "ten more messages");
  ck_assert_uint_eq(c->errors, 0);
  ck_assert_uint_eq(stat(c, "conns_replaced"), 1);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- (6) quiet once acked -------------------------------------------------------------------- */

static const char *const quiet_stats[] = {"xmits",     "resends_highest",       "xmit_reqs_sent",
                                          "acks_sent", "send_first_seqno_sent", "msgs_sent"};
#define N_QUIET (sizeof(quiet_stats) / sizeof(quiet_stats[0]))

START_TEST(retransmission_stops_once_acked) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", LOSSY(""));
  open_node(c, "C", LOSSY(""));
  uint32_t reg = 0, oob = 0;
  for (uint32_t i = 0; i < 2000; i++) {
    if (i % 5 == 0)
      send_seq(a, c, oob++, RS_MSG_OOB);
    else
      send_seq(a, c, reg++, 0);
    send_seq(c, a, i, 0);
  }
  struct want w[] = {{c, &a->addr, 1600}, {c, NULL, 400}, {a, &c->addr, 2000}, {0}};
  wait_all(w, 60 * RS_SEC, "2,000 messages each way");
  rs_sim_run_for(sim, 2 * RS_SEC);
  uint64_t before[2][N_QUIET];
  struct node *nodes[2] = {a, c};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < N_QUIET; i++)
      before[k][i] = stat(nodes[k], quiet_stats[i]);
  rs_sim_run_for(sim, 10 * RS_SEC);
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < N_QUIET; i++)
      ck_assert_msg(stat(nodes[k], quiet_stats[i]) == before[k][i], "%s still grows",
                    quiet_stats[i]);
    ck_assert_uint_eq(stat(nodes[k], "unacked"), 0);
    ck_assert_uint_eq(stat(nodes[k], "held"), 0);
    ck_assert_uint_eq(stat(nodes[k], "held_bytes"), 0);
  }
  ck_assert_uint_gt(before[0][0], 0); /* there was something to stop */
  ck_assert_uint_eq(a->errors + c->errors, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- bounded receive window ------------------------------------------------------------------ */

struct bounded {
  struct want w[2];
  struct node *c;
  uint64_t max_held, max_bytes;
};

static bool bounded_done(void *arg) {
  struct bounded *b = arg;
  uint64_t h = stat(b->c, "held"), by = stat(b->c, "held_bytes");
  if (h > b->max_held) b->max_held = h;
  if (by > b->max_bytes) b->max_bytes = by;
  return all_got(b->w);
}

START_TEST(full_receive_window_drops_and_recovers) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", LOSSY(""));
  open_node(c, "C", LOSSY("recv_window_size=\"16\" recv_window_bytes=\"100\""));
  for (uint32_t i = 0; i < 3000; i++)
    send_seq(a, c, i, 0);
  struct bounded b = {.w = {{c, &a->addr, 3000}, {0}}, .c = c};
  ck_assert(rs_sim_run_until(sim, bounded_done, &b, 120 * RS_SEC));
  ck_assert_uint_eq(c->errors, 0);
  ck_assert_uint_gt(stat(c, "window_full_dropped"), 0);
  ck_assert_uint_le(b.max_held, 16);
  ck_assert_uint_le(b.max_bytes, 100); /* 16-byte payloads: 6 fit */
  ck_assert_uint_gt(b.max_held, 0);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- (7) hostile headers -----------------------------------------------------------------------
 */

struct u3_hdr_view { /* the header's in-memory layout (protocols/unicast3.c) */
  uint64_t seqno;
  uint32_t conn_id;
  uint8_t type;
  uint8_t flags;
};

static struct rs_msg *forge(struct node *c, const struct rs_addr *src, uint8_t type, uint8_t flags,
                            uint32_t conn_id, uint64_t seqno, const void *payload, size_t len) {
  const struct rs_header_type *t = registry_header_type(U3_ID);
  ck_assert_ptr_nonnull(t);
  struct rs_msg *m = rs_msg_new_copy(payload, len);
  struct u3_hdr_view *h = rs_msg_put_header(m, t);
  *h = (struct u3_hdr_view){.seqno = seqno, .conn_id = conn_id, .type = type, .flags = flags};
  m->src = *src;
  m->dest = c->addr;
  return m;
}

/* Hands a forged message to C's UNICAST3 from below, as if it came off the network. */
static void inject(struct node *c, const struct rs_addr *src, uint8_t type, uint8_t flags,
                   uint32_t conn_id, uint64_t seqno, const void *payload, size_t len) {
  proto_up_msg(proto_of(c, "DISCARD"), forge(c, src, type, flags, conn_id, seqno, payload, len));
}

static size_t ranges(uint8_t *out, size_t cap, uint64_t count, const uint64_t *v, size_t nv) {
  struct rs_writer w;
  writer_init(&w, out, cap);
  put_varint(&w, count);
  for (size_t i = 0; i < nv; i++)
    put_varint(&w, v[i]);
  ck_assert_int_eq(w.err, 0);
  return w.len;
}

START_TEST(hostile_headers_are_dropped_with_bounded_work) {
  struct node *a = calloc(2, sizeof(*a)), *c = a + 1;
  open_node(a, "A", CLEAN(""));
  open_node(c, "C", CLEAN(""));
  struct rs_addr forger = {0x1234, 0x5678};
  /* C holds 50 unacked messages for A (A hears nothing). */
  discard_set_all(proto_of(c, "DISCARD"), true);
  for (uint32_t i = 0; i < 50; i++)
    send_seq(c, a, i, 0);
  rs_sim_run_for(sim, RS_MS);
  ck_assert_uint_eq(stat(c, "unacked"), 50);
  uint64_t bad0 = stat(c, "bad_dropped");
  inject(c, &a->addr, 9, 0, 1, 1, NULL, 0);          /* unknown type */
  inject(c, &a->addr, 0, 0, 1, 0, NULL, 0);          /* DATA seqno 0 */
  inject(c, &a->addr, 0, 0, 1, UINT64_MAX, NULL, 0); /* seqno beyond 2^63 - 1 */
  ck_assert_uint_eq(stat(c, "bad_dropped"), bad0 + 3);
  /* A FIRST message far up the seqno space is a legal start; the one after it is not. */
  uint32_t x = 0;
  inject(c, &forger, 0, 1, 5, INT64_MAX, &x, 4);
  inject(c, &forger, 0, 0, 5, (uint64_t)INT64_MAX + 1, &x, 4);
  ck_assert_uint_eq(c->n_log, 1);
  ck_assert_uint_eq(stat(c, "bad_dropped"), bad0 + 4);
  /* A huge seqno of an unknown connection: asks for its first message, delivers nothing. */
  struct rs_addr forger2 = {0x9999, 0x1};
  inject(c, &forger2, 0, 0, 3, (uint64_t)1 << 62, &x, 4);
  ck_assert_uint_eq(c->n_log, 1);
  ck_assert_uint_eq(stat(c, "send_first_seqno_sent"), 1);
  /* XMIT_REQ for [1, 2^63 - 1]: resends the 50 C holds, no more. */
  uint8_t p[64];
  uint64_t huge[] = {1, (uint64_t)INT64_MAX - 1};
  uint64_t x0 = stat(c, "xmits");
  inject(c, &a->addr, 3, 0, 1, 0, p, ranges(p, sizeof(p), 1, huge, 2));
  ck_assert_uint_eq(stat(c, "xmits"), x0 + 50);
  /* A count far beyond the bytes: malformed, nothing resent. */
  inject(c, &a->addr, 3, 0, 1, 0, p, ranges(p, sizeof(p), 1000000000, huge, 2));
  ck_assert_uint_eq(stat(c, "xmits"), x0 + 50);
  ck_assert_uint_eq(stat(c, "bad_dropped"), bad0 + 5);
  /* Ranges that overflow 2^63: what came before is served, the rest refused. */
  uint64_t over[] = {10, 0, (uint64_t)INT64_MAX, 0};
  inject(c, &a->addr, 3, 0, 1, 0, p, ranges(p, sizeof(p), 2, over, 4));
  ck_assert_uint_eq(stat(c, "xmits"), x0 + 51);
  ck_assert_uint_eq(stat(c, "bad_dropped"), bad0 + 6);
  /* Another connection's XMIT_REQ and ACK are ignored. */
  inject(c, &a->addr, 3, 0, 2, 0, p, ranges(p, sizeof(p), 1, huge, 2));
  inject(c, &a->addr, 1, 0, 2, 50, NULL, 0);
  ck_assert_uint_eq(stat(c, "xmits"), x0 + 51);
  ck_assert_uint_eq(stat(c, "unacked"), 50);
  /* An ack beyond what was sent acks what was sent. */
  inject(c, &a->addr, 1, 0, 1, (uint64_t)INT64_MAX, NULL, 0);
  ck_assert_uint_eq(stat(c, "unacked"), 0);
  /* One batch opens a connection, leaves a gap and closes it: the entry goes, nothing leaks. */
  struct rs_addr forger3 = {0x4444, 0x2};
  uint64_t conns = stat(c, "recv_conns");
  struct rs_batch b;
  rs_batch_init(&b);
  b.src = forger3;
  b.dest = c->addr;
  rs_batch_add(&b, forge(c, &forger3, 0, 1, 9, 1, &x, 4));
  rs_batch_add(&b, forge(c, &forger3, 0, 0, 9, 3, &x, 4));
  rs_batch_add(&b, forge(c, &forger3, 4, 0, 9, 0, NULL, 0));
  rs_batch_add(&b, forge(c, &forger3, 0, 0, 9, 4, &x, 4));
  proto_up_batch(proto_of(c, "DISCARD"), &b);
  ck_assert_uint_eq(c->n_log, 2);
  ck_assert_uint_eq(stat(c, "closes_received"), 1);
  /* The last DATA, after the CLOSE, is of a connection C no longer knows. */
  ck_assert_uint_eq(stat(c, "recv_conns"), conns + 1);
  ck_assert_uint_eq(stat(c, "send_first_seqno_sent"), 2);
  discard_set_all(proto_of(c, "DISCARD"), false);
  close_node(a);
  close_node(c);
  free(a);
}
END_TEST

/* --- the header on the wire ------------------------------------------------------------------ */

static bool decode(const uint8_t *p, size_t len, struct u3_hdr_view *h) {
  const struct rs_header_type *t = registry_header_type(U3_ID);
  struct rs_reader r;
  reader_init(&r, p, len);
  memset(h, 0xa5, sizeof(*h));
  t->read(h, &r);
  return !r.err && r.pos == len;
}

START_TEST(header_bytes) {
  const struct rs_header_type *t = registry_header_type(U3_ID);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_le(t->size, RS_HDR_INLINE);
  struct u3_hdr_view h = {.seqno = 300, .conn_id = 2, .type = 0, .flags = 1};
  uint8_t buf[32];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  t->write(&h, &w);
  const uint8_t want[] = {0x00, 0x01, 0x02, 0xac, 0x02}; /* DATA, FIRST, conn 2, seqno 300 */
  ck_assert_uint_eq(w.len, sizeof(want));
  ck_assert_uint_eq(t->wire_size(&h), sizeof(want));
  ck_assert_mem_eq(buf, want, sizeof(want));
  struct u3_hdr_view back;
  ck_assert(decode(buf, w.len, &back));
  ck_assert_uint_eq(back.seqno, 300);
  ck_assert_uint_eq(back.conn_id, 2);
  ck_assert_uint_eq(back.flags, 1);
  const uint8_t close[] = {0x04, 0x07};
  ck_assert(decode(close, sizeof(close), &back));
  ck_assert_uint_eq(back.type, 4);
  ck_assert_uint_eq(back.conn_id, 7);
  ck_assert_uint_eq(back.seqno, 0);
  /* Malformed: unknown type, unknown flag, DATA seqno 0, conn_id over 32 bits, seqno over
   * 2^63 - 1, truncated. On error the struct is left zeroed (nothing to free). */
  const struct {
    uint8_t b[16];
    size_t n;
  } bad[] = {
      {{0x05, 0x01}, 2},
      {{0x00, 0x02, 0x01, 0x01}, 4},
      {{0x00, 0x00, 0x01, 0x00}, 4},
      {{0x04, 0x80, 0x80, 0x80, 0x80, 0x10}, 6},
      {{0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 12},
      {{0x00, 0x00, 0x01}, 3},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_msg(!decode(bad[i].b, bad[i].n, &back), "bad[%zu] accepted", i);
    ck_assert_uint_eq(back.seqno, 0);
    ck_assert_uint_eq(back.type, 0);
  }
}
END_TEST

START_TEST(jgroups_attributes_are_accepted) {
  struct node *a = calloc(1, sizeof(*a));
  open_node(
      a, "A",
      "<config><LOOPBACK/><UNICAST3 xmit_interval=\"0.5s\" conn_close_timeout=\"240000\" "
      "xmit_table_num_rows=\"100\" xmit_table_msgs_per_row=\"1024\" "
      "max_xmit_req_size=\"0\" sync_min_interval=\"2000\" log_not_found_msgs=\"true\"/></config>");
  close_node(a);
  free(a);
}
END_TEST

static Suite *unicast3_suite(void) {
  Suite *s = suite_create("unicast3");
  TCase *tc = tcase_create("delivery");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, lossy_100k_each_way);
  tcase_add_test(tc, no_loss_no_retransmission);
  tcase_add_test(tc, reordering_and_loss);
  tcase_add_test(tc, untouched_messages);
  tcase_add_test(tc, oob_exactly_once_under_loss);
  tcase_add_test(tc, oob_overtakes_a_lost_regular_message);
  tcase_add_test(tc, first_message_lost);
  tcase_add_test(tc, last_message_lost);
  tcase_add_test(tc, retransmission_stops_once_acked);
  tcase_add_test(tc, full_receive_window_drops_and_recovers);
  suite_add_tcase(s, tc);
  tc = tcase_create("connections");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, receiver_state_removed_send_first_seqno);
  tcase_add_test(tc, expiry_acks_what_was_delivered);
  tcase_add_test(tc, sender_expiry_closes_both_sides);
  tcase_add_test(tc, new_connection_replaces_old_one);
  suite_add_tcase(s, tc);
  tc = tcase_create("hostile input");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, hostile_headers_are_dropped_with_bounded_work);
  tcase_add_test(tc, header_bytes);
  tcase_add_test(tc, jgroups_attributes_are_accepted);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(unicast3_suite()); }

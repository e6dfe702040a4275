/* UFC and MFC on LOOPBACK in the simulation: bounded receiver memory under a fast sender, no
 * blocking when receivers keep up, views, CREDIT_REQUEST, NO_FC/OOB, hostile input, config. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/discard.h"
#include "stack/channel_internal.h"
#include "stack/sim.h"
#include "stack/view.h"
#include "tests/lib/testlib.h"

#define UFC_ID 31
#define MFC_ID 30
#define MSG_LEN 1000
#define MAX_PEERS 4
#define MAX_LOG 256
#define FC_NO_FC_TAG 0x40000000u /* seq tag of a NO_FC message in the logs */

/* ---------------------------------------------------------------------------------------------
 * SLOW (test only): placed below UFC/MFC on a receiver, it holds every message coming up and
 * passes `rate` of them up per virtual millisecond, as a loop that processes its input slowly
 * would. What it holds has been received but not consumed: flow control must bound it.
 */
struct slow {
  struct rs_protocol base;
  int64_t rate; /* messages per ms; 0: pass everything at once */
  bool paused;  /* hold everything until unpaused */
  struct rs_msg *head, *tail;
  uint64_t held, held_bytes, max_held_bytes;
  struct rs_timer tick;
};

static void slow_release(struct slow *s, int64_t n) {
  while (s->head && n-- > 0) {
    struct rs_msg *m = s->head;
    s->head = m->next;
    if (!s->head) s->tail = NULL;
    m->next = NULL;
    s->held--;
    s->held_bytes -= m->len;
    proto_up_msg(&s->base, m);
  }
  if (!s->head) rs_timer_stop(&s->tick);
}

static void slow_tick(struct rs_timer *t) {
  struct slow *s = (struct slow *)((char *)t - offsetof(struct slow, tick));
  if (!s->paused) slow_release(s, s->rate ? s->rate : INT64_MAX);
}

static void slow_up(struct rs_protocol *p, struct rs_msg *m) {
  struct slow *s = (struct slow *)p;
  if (!s->rate && !s->paused && !s->head) {
    proto_up_msg(p, m);
    return;
  }
  m->next = NULL;
  if (s->tail) s->tail->next = m;
  else s->head = m;
  s->tail = m;
  s->held++;
  s->held_bytes += m->len;
  if (s->held_bytes > s->max_held_bytes) s->max_held_bytes = s->held_bytes;
  if (!rs_timer_active(&s->tick)) rs_timer_start(&s->tick, RS_MS, RS_MS);
}

static int slow_init(struct rs_protocol *p) {
  rs_timer_init(&((struct slow *)p)->tick, p->rt, slow_tick);
  return 0;
}

static void slow_destroy(struct rs_protocol *p) {
  struct slow *s = (struct slow *)p;
  rs_timer_stop(&s->tick);
  for (struct rs_msg *m = s->head, *n; m; m = n) {
    n = m->next;
    rs_msg_free(m);
  }
  s->head = s->tail = NULL;
}

static void slow_set_paused(struct rs_protocol *p, bool paused) {
  struct slow *s = (struct slow *)p;
  s->paused = paused;
  if (!paused && s->head && !rs_timer_active(&s->tick)) rs_timer_start(&s->tick, RS_MS, RS_MS);
}

static const struct rs_attr slow_attrs[] = {
    {"rate", RS_ATTR_INT, offsetof(struct slow, rate), "0", 0, 1e9,
     "messages passed up per millisecond (0: all)", 0, NULL},
    {"paused", RS_ATTR_BOOL, offsetof(struct slow, paused), "false", 0, 0, "hold everything", 0,
     NULL},
    RS_ATTR_END,
};

static const struct rs_protocol_ops slow_ops = {
    .name = "SLOW",
    .size = sizeof(struct slow),
    .description = "test: a receiver that consumes at a fixed rate",
    .attrs = slow_attrs,
    .init = slow_init,
    .destroy = slow_destroy,
    .up_msg = slow_up,
};

static const struct rs_protocol_ops *const extra[] = {&slow_ops, NULL};

/* ---------------------------------------------------------------------------------------------
 * Members.
 */
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
  uint64_t errors; /* out of order, duplicates, wrong length */
  uint32_t log[MAX_LOG]; /* seqs in delivery order (NO_FC ones tagged) */
  rs_time at[MAX_LOG];   /* when each was delivered */
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
  (void)flags;
  uint32_t seq = 0;
  if (len >= 4) memcpy(&seq, data, 4);
  if (nd->n_log < MAX_LOG) {
    nd->at[nd->n_log] = rs_now(nd->rt);
    nd->log[nd->n_log++] = seq;
  }
  if (seq & FC_NO_FC_TAG) return;
  struct from *f = from_of(nd, src);
  if (!f || seq != f->next || len < 4) {
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
  ck_assert_int_eq(rs_channel_connect(nd->ch, "fc"), 0);
  nd->addr = rs_channel_address(nd->ch);
}

static void close_node(struct node *nd) {
  rs_channel_close(nd->ch);
  rs_runtime_destroy(nd->rt);
}

static struct rs_protocol *proto_of(struct node *nd, const char *name) {
  for (struct rs_protocol *p = channel_stack(nd->ch)->bottom; p; p = p->up)
    if (!strcmp(p->ops->name, name)) return p;
  ck_abort_msg("no %s in the stack", name);
  return NULL;
}

static struct slow *slow_of(struct node *nd) { return (struct slow *)proto_of(nd, "SLOW"); }

static void send_sized(struct node *from, const struct node *to, uint32_t seq, size_t len,
                       unsigned flags) {
  uint8_t *buf = calloc(1, len);
  memcpy(buf, &seq, 4);
  ck_assert_int_eq(rs_channel_send(from->ch, to ? &to->addr : NULL, buf, len, flags), 0);
  free(buf);
}

static void send_seq(struct node *from, const struct node *to, uint32_t seq, unsigned flags) {
  send_sized(from, to, seq, MSG_LEN, flags);
}

static uint64_t got(const struct node *nd, const struct node *src) {
  for (size_t i = 0; i < nd->n_from; i++)
    if (rs_addr_eq(&nd->from[i].src, &src->addr)) return nd->from[i].n;
  return 0;
}

struct want {
  struct node *nd, *src;
  uint64_t n;
};

static bool all_got(void *arg) {
  for (struct want *w = arg; w->nd; w++)
    if (got(w->nd, w->src) < w->n) return false;
  return true;
}

static void wait_all(struct want *w, rs_time timeout, const char *what) {
  ck_assert_msg(rs_sim_run_until(sim, all_got, w, timeout), "timed out: %s", what);
}

/* Installs a view made of `members` at each of `at`, as GMS would: going down from the top of
 * the stack, or (up) coming up from the transport. */
static void inject_view(struct node *const *members, size_t n, uint64_t id, struct node *const *at,
                        size_t n_at, bool up) {
  struct rs_addr addrs[MAX_PEERS];
  for (size_t i = 0; i < n; i++)
    addrs[i] = members[i]->addr;
  struct rs_view_data *v = view_new(&addrs[0], id, n, addrs, NULL);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n_at; i++) {
    struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = v};
    struct rs_stack *st = channel_stack(at[i]->ch);
    if (up)
      proto_up_event(st->bottom, &ev);
    else
      stack_down_event(st, &ev);
  }
  view_unref(v);
}

/* --- stats ----------------------------------------------------------------------------------- */

struct stat_query {
  const char *name;
  char value[64];
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

static int64_t stat(struct node *nd, const char *proto, const char *name) {
  struct rs_protocol *p = proto_of(nd, proto);
  struct stat_query q = {.name = name};
  struct rs_stats_printer out = {.line = stat_line, .arg = &q};
  p->ops->stats(p, &out);
  ck_assert_msg(q.value[0], "no stat %s", name);
  return strtoll(q.value, NULL, 10);
}

static void setup(void) {
  sim = rs_sim_new(4242);
  stack_set_extra_protocols(extra);
}
static void teardown(void) {
  stack_set_extra_protocols(NULL);
  rs_sim_free(sim);
}

/* --- a fast sender, a slow receiver ---------------------------------------------------------- */

#define UFC_STACK(slow, fc)                                                                        \
  "<config><LOOPBACK/><UNICAST3 xmit_interval=\"100ms\"/><SLOW " slow "/><UFC " fc               \
  "/></config>"

START_TEST(ufc_slow_receiver_memory_is_bounded) {
  enum { N = 100000, CREDITS = 100000, RATE = 10 };
  static struct node a, b;
  open_node(&a, "A", UFC_STACK("", "max_credits=\"100K\""));
  open_node(&b, "B", UFC_STACK("rate=\"10\"", "max_credits=\"100K\""));
  uint64_t t0 = test_now_ms();
  for (uint32_t i = 0; i < N; i++)
    send_seq(&a, &b, i, 0);
  /* rs_channel_send held the sender back: the last call returned only once all but the channel
   * queue (1,024), one message and a window had been consumed at 10 per ms. */
  rs_time sent_at = rs_sim_now(sim);
  ck_assert_uint_ge(sent_at, (rs_time)(N - 1024 - 1 - CREDITS / MSG_LEN) / RATE * RS_MS);
  struct want w[] = {{&b, &a, N}, {0}};
  wait_all(w, 60 * RS_SEC, "100,000 messages");
  rs_time vt = rs_sim_now(sim);
  rs_sim_run_for(sim, RS_SEC);
  fprintf(stderr,
          "ufc_slow_receiver: %llu ms real, %.2f s virtual, B held at most %llu bytes; A: "
          "blockings=%lld replenish_received=%lld queued_max=%lld\n",
          (unsigned long long)(test_now_ms() - t0), (double)vt / RS_SEC,
          (unsigned long long)slow_of(&b)->max_held_bytes,
          (long long)stat(&a, "UFC", "blockings"), (long long)stat(&a, "UFC", "replenish_received"),
          (long long)stat(&a, "UFC", "queued_max"));
  ck_assert_uint_eq(got(&b, &a), N);
  ck_assert_uint_eq(b.errors, 0);
  /* The receiver never held more than one window, and consumed at its own pace. */
  ck_assert_uint_le(slow_of(&b)->max_held_bytes, CREDITS + MSG_LEN);
  ck_assert_uint_ge(slow_of(&b)->max_held_bytes, CREDITS / 2);
  ck_assert_uint_ge(vt, (rs_time)N / RATE * RS_MS);
  /* The sender queued one message at a time: the channel stopped feeding it meanwhile. */
  ck_assert_int_eq(stat(&a, "UFC", "queued_max"), 1);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 0);
  ck_assert_int_gt(stat(&a, "UFC", "blockings"), 100);
  ck_assert_int_eq(stat(&a, "UFC", "msgs_sent"), N);
  /* Credit came by REPLENISH alone (every 60% of a window), none lost, none asked for. */
  ck_assert_int_eq(stat(&a, "UFC", "replenish_received"), stat(&b, "UFC", "replenish_sent"));
  ck_assert_int_ge(stat(&b, "UFC", "replenish_sent"), (int64_t)N * MSG_LEN / (CREDITS * 6 / 10) - 1);
  ck_assert_int_eq(stat(&a, "UFC", "credit_requests_sent"), 0);
  /* At rest, what B consumed since its last REPLENISH (less than 60% of a window) is still
   * unreported, as in JGroups. */
  ck_assert_int_gt(stat(&a, "UFC", "credits"), CREDITS * 4 / 10);
  ck_assert_int_le(stat(&a, "UFC", "credits"), CREDITS);
  close_node(&a);
  close_node(&b);
}
END_TEST

#define MFC_STACK(slow, fc) "<config><LOOPBACK/><SLOW " slow "/><MFC " fc "/></config>"
#define SMALL "max_credits=\"10K\" max_block_time=\"100ms\""

START_TEST(mfc_one_slow_member_bounds_its_memory) {
  enum { N = 100000, CREDITS = 100000, RATE = 10 };
  static struct node a, b, c;
  open_node(&a, "A", MFC_STACK("", "max_credits=\"100K\""));
  open_node(&b, "B", MFC_STACK("", "max_credits=\"100K\""));
  open_node(&c, "C", MFC_STACK("rate=\"10\"", "max_credits=\"100K\""));
  struct node *all[] = {&a, &b, &c};
  inject_view(all, 3, 1, all, 3, false);
  ck_assert_int_eq(stat(&a, "MFC", "members"), 2); /* B and C, not ourselves */
  uint64_t t0 = test_now_ms();
  for (uint32_t i = 0; i < N; i++)
    send_seq(&a, NULL, i, 0);
  struct want w[] = {{&a, &a, N}, {&b, &a, N}, {&c, &a, N}, {0}};
  wait_all(w, 60 * RS_SEC, "100,000 multicasts everywhere");
  rs_time vt = rs_sim_now(sim);
  rs_sim_run_for(sim, RS_SEC);
  fprintf(stderr,
          "mfc_one_slow_member: %llu ms real, %.2f s virtual, C held at most %llu bytes, B %llu; "
          "A: blockings=%lld\n",
          (unsigned long long)(test_now_ms() - t0), (double)vt / RS_SEC,
          (unsigned long long)slow_of(&c)->max_held_bytes,
          (unsigned long long)slow_of(&b)->max_held_bytes, (long long)stat(&a, "MFC", "blockings"));
  for (int i = 0; i < 3; i++) {
    ck_assert_uint_eq(got(all[i], &a), N);
    ck_assert_uint_eq(all[i]->errors, 0);
  }
  ck_assert_uint_le(slow_of(&c)->max_held_bytes, CREDITS + MSG_LEN);
  ck_assert_uint_ge(slow_of(&c)->max_held_bytes, CREDITS / 2);
  ck_assert_uint_eq(slow_of(&b)->max_held_bytes, 0); /* B kept up */
  ck_assert_uint_ge(vt, (rs_time)N / RATE * RS_MS);   /* everyone went at C's pace */
  ck_assert_int_eq(stat(&a, "MFC", "queued_max"), 1);
  ck_assert_int_gt(stat(&a, "MFC", "blockings"), 100);
  ck_assert_int_eq(stat(&a, "MFC", "credit_requests_sent"), 0);
  /* Own multicasts are not counted by ourselves. */
  ck_assert_int_eq(stat(&a, "MFC", "replenish_sent"), 0);
  ck_assert_int_gt(stat(&b, "MFC", "replenish_sent"), 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

START_TEST(no_blocking_when_receivers_keep_up) {
  enum { N = 20000 };
  static struct node a, b, c;
  const char *xml = "<config><LOOPBACK/><UNICAST3/><UFC/><MFC/></config>"; /* 5M credits */
  open_node(&a, "A", xml);
  open_node(&b, "B", xml);
  open_node(&c, "C", xml);
  struct node *all[] = {&a, &b, &c};
  inject_view(all, 3, 1, all, 3, true);
  /* Senders at 500 messages (0.5 MB) per millisecond each: the receivers keep up. */
  for (uint32_t i = 0; i < N; i++) {
    send_seq(&a, &b, i, 0);
    send_seq(&b, NULL, i, 0);
    if (i % 500 == 499) rs_sim_run_for(sim, RS_MS);
  }
  struct want w[] = {{&b, &a, N}, {&a, &b, N}, {&c, &b, N}, {0}};
  wait_all(w, 60 * RS_SEC, "20,000 unicasts and multicasts");
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_uint_eq(a.errors + b.errors + c.errors, 0);
  ck_assert_int_eq(stat(&a, "UFC", "blockings"), 0);
  ck_assert_int_eq(stat(&b, "MFC", "blockings"), 0);
  ck_assert_int_eq(stat(&a, "UFC", "credit_requests_sent"), 0);
  ck_assert_int_eq(stat(&b, "MFC", "credit_requests_sent"), 0);
  /* 20 MB through 5 MB windows: credit was replenished along the way. */
  ck_assert_int_ge(stat(&a, "UFC", "replenish_received"), 5);
  ck_assert_int_ge(stat(&b, "MFC", "replenish_received"), 2 * 5);
  ck_assert_int_eq(stat(&a, "UFC", "msgs_sent"), N);
  ck_assert_int_eq(stat(&b, "MFC", "msgs_sent"), N);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

/* --- views ----------------------------------------------------------------------------------- */

START_TEST(mfc_member_leaving_unblocks_the_sender) {
  static struct node a, b, c;
  open_node(&a, "A", MFC_STACK("", SMALL));
  open_node(&b, "B", MFC_STACK("", SMALL));
  open_node(&c, "C", MFC_STACK("paused=\"true\"", SMALL));
  struct node *all[] = {&a, &b, &c};
  inject_view(all, 3, 1, all, 3, false);
  for (uint32_t i = 0; i < 100; i++) /* fits in the channel's queue: the test thread goes on */
    send_seq(&a, NULL, i, 0);
  rs_sim_run_for(sim, RS_SEC);
  /* C consumes nothing: A sent one window and waits, asking C for credit in vain. */
  ck_assert_uint_eq(got(&b, &a), 10);
  ck_assert_uint_eq(slow_of(&c)->held_bytes, 10 * MSG_LEN);
  ck_assert_int_eq(stat(&a, "MFC", "queued_msgs"), 1);
  ck_assert_int_ge(stat(&a, "MFC", "credit_requests_sent"), 5);
  ck_assert_int_ge(stat(&b, "MFC", "credit_responses_sent"), 5); /* B answers, C holds them */
  ck_assert_int_eq(stat(&c, "MFC", "credit_responses_sent"), 0);
  /* C leaves: nobody holds A back any more. */
  struct node *ab[] = {&a, &b};
  inject_view(ab, 2, 2, ab, 2, false);
  rs_time t0 = rs_sim_now(sim);
  struct want w[] = {{&b, &a, 100}, {&a, &a, 100}, {0}};
  wait_all(w, RS_SEC, "the rest after C left");
  ck_assert_uint_le(rs_sim_now(sim) - t0, RS_MS);
  ck_assert_int_eq(stat(&a, "MFC", "members"), 1);
  ck_assert_int_eq(stat(&a, "MFC", "queued_msgs"), 0);
  ck_assert_int_ge(stat(&a, "MFC", "unblocked_by_view"), 1);
  ck_assert_int_ge(stat(&a, "MFC", "blocked_time_ms"), 900);
  ck_assert_uint_eq(a.errors + b.errors, 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

/* The view comes up from below here, as GMS passes it. */
START_TEST(ufc_destination_leaving_releases_its_queue) {
  static struct node a, b, c;
  open_node(&a, "A", UFC_STACK("", "max_credits=\"10K\""));
  open_node(&b, "B", UFC_STACK("", "max_credits=\"10K\""));
  open_node(&c, "C", UFC_STACK("paused=\"true\"", "max_credits=\"10K\""));
  struct node *all[] = {&a, &b, &c};
  inject_view(all, 3, 1, all, 3, true);
  for (uint32_t i = 0; i < 20; i++)
    send_seq(&a, &c, i, 0);
  send_seq(&a, &b, 0, 0); /* behind the blocked ones in the channel's queue */
  rs_sim_run_for(sim, 200 * RS_MS);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1);
  ck_assert_uint_eq(got(&b, &a), 0);
  ck_assert_int_eq(stat(&a, "UFC", "destinations"), 1);
  struct node *ab[] = {&a, &b};
  inject_view(ab, 2, 2, ab, 2, true);
  struct want w[] = {{&b, &a, 1}, {0}};
  wait_all(w, RS_SEC, "the message to B");
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 0);
  ck_assert_int_ge(stat(&a, "UFC", "unblocked_by_view"), 1);
  /* C is no member: it is no longer flow-controlled (what is sent to it goes down at once). */
  ck_assert_int_eq(stat(&a, "UFC", "destinations"), 1); /* B's flow only */
  slow_set_paused(proto_of(&c, "SLOW"), false);
  struct want w2[] = {{&c, &a, 20}, {0}};
  wait_all(w2, 5 * RS_SEC, "C gets all 20");
  ck_assert_uint_eq(a.errors + b.errors + c.errors, 0);
  close_node(&a);
  close_node(&b);
  close_node(&c);
}
END_TEST

/* --- CREDIT_REQUEST -------------------------------------------------------------------------- */

#define LOSSY_REPLENISH(bt)                                                                        \
  "<config><LOOPBACK/><DISCARD drop_down_unicasts=\"1\"/><UFC max_credits=\"10K\" "              \
  "max_block_time=\"" bt "\"/></config>"
#define PLAIN(bt)                                                                                  \
  "<config><LOOPBACK/><DISCARD/><UFC max_credits=\"10K\" max_block_time=\"" bt "\"/></config>"

START_TEST(credit_request_recovers_a_lost_replenish) {
  static struct node a, b;
  open_node(&a, "A", PLAIN("100ms"));
  open_node(&b, "B", LOSSY_REPLENISH("100ms")); /* B's first unicast, a REPLENISH, is lost */
  for (uint32_t i = 0; i < 100; i++)
    send_seq(&a, &b, i, 0);
  struct want w[] = {{&b, &a, 100}, {0}};
  wait_all(w, 5 * RS_SEC, "100 messages despite the lost REPLENISH");
  ck_assert_uint_eq(b.errors, 0);
  ck_assert_int_eq(stat(&b, "DISCARD", "dropped_down"), 1);
  ck_assert_int_ge(stat(&a, "UFC", "credit_requests_sent"), 1);
  ck_assert_int_ge(stat(&b, "UFC", "credit_responses_sent"), 1);
  ck_assert_int_ge(stat(&a, "UFC", "credit_responses_received"), 1);
  /* After one window A waited max_block_time for the REPLENISH that never came, then asked. */
  ck_assert_uint_ge(b.at[10] - b.at[9], 100 * RS_MS);
  ck_assert_uint_le(b.at[10] - b.at[9], 110 * RS_MS);
  /* The answer re-aligned the counts: no further request was needed. */
  ck_assert_int_eq(stat(&a, "UFC", "credit_requests_sent"), 1);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* Without credit requests (max_block_time 0, as JGroups' "wait for ever") the same loss stalls
 * the sender for good: the request is what repaired it above. */
START_TEST(without_credit_requests_a_lost_replenish_stalls) {
  static struct node a, b;
  open_node(&a, "A", PLAIN("0"));
  open_node(&b, "B", LOSSY_REPLENISH("0"));
  for (uint32_t i = 0; i < 100; i++)
    send_seq(&a, &b, i, 0);
  rs_sim_run_for(sim, 5 * RS_SEC);
  ck_assert_uint_eq(got(&b, &a), 10);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1);
  ck_assert_int_eq(stat(&a, "UFC", "credit_requests_sent"), 0);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* A message longer than the credit left while the receiver has consumed everything (and not
 * reported the rest: less than a REPLENISH's worth) goes without waiting, even with credit
 * requests off; so does one longer than a whole window. */
START_TEST(long_messages_do_not_wait_for_a_replenish_that_is_not_coming) {
  static struct node a, b;
  open_node(&a, "A", PLAIN("0"));
  open_node(&b, "B", PLAIN("0"));
  for (uint32_t i = 0; i < 3; i++)
    send_seq(&a, &b, i, 0);
  struct want w0[] = {{&b, &a, 3}, {0}};
  wait_all(w0, RS_SEC, "three small messages");
  ck_assert_int_eq(stat(&b, "UFC", "replenish_sent"), 0); /* 3,000 bytes: below 6,000 */
  send_sized(&a, &b, 3, 8000, 0);  /* 7,000 left */
  send_sized(&a, &b, 4, 25000, 0); /* more than max_credits */
  send_seq(&a, &b, 5, 0);
  struct want w[] = {{&b, &a, 6}, {0}};
  wait_all(w, RS_SEC, "the long messages");
  ck_assert_uint_eq(b.errors, 0);
  ck_assert_int_eq(stat(&a, "UFC", "credit_requests_sent"), 0);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 0);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* --- what is governed ------------------------------------------------------------------------ */

/* As JGroups: OOB messages take credit like any other; NO_FC ones, multicasts (for UFC) and
 * messages to ourselves do not. */
START_TEST(oob_is_governed_no_fc_is_not) {
  static struct node a, b;
  open_node(&a, "A", UFC_STACK("", "max_credits=\"10K\""));
  open_node(&b, "B", UFC_STACK("paused=\"true\"", "max_credits=\"10K\""));
  for (uint32_t i = 0; i < 10; i++)
    send_seq(&a, &b, i, 0);
  send_seq(&a, &b, 10, RS_MSG_OOB);
  rs_sim_run_for(sim, 100 * RS_MS);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1); /* the OOB one waits for credit */
  ck_assert_uint_eq(slow_of(&b)->held, 10);
  /* A protocol above UFC sends NO_FC messages straight down, credit or not. */
  for (uint32_t k = 0; k < 3; k++) {
    uint32_t tag = FC_NO_FC_TAG | k;
    struct rs_msg *m = rs_msg_new_copy(&tag, sizeof(tag));
    m->dest = b.addr;
    m->flags = RS_MSG_NO_FC;
    ck_assert_int_eq(stack_down_msg(channel_stack(a.ch), m), 0);
  }
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(slow_of(&b)->held, 13);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1);
  /* A multicast and a message to ourselves pass too (the channel is congested, so they are sent
   * from above as well). */
  uint32_t tag = FC_NO_FC_TAG | 7;
  struct rs_msg *mc = rs_msg_new_copy(&tag, sizeof(tag));
  ck_assert_int_eq(stack_down_msg(channel_stack(a.ch), mc), 0);
  struct rs_msg *self = rs_msg_new_copy(&tag, sizeof(tag));
  self->dest = a.addr;
  ck_assert_int_eq(stack_down_msg(channel_stack(a.ch), self), 0);
  rs_sim_run_for(sim, 10 * RS_MS);
  ck_assert_uint_eq(a.n_log, 2);
  ck_assert_int_eq(stat(&a, "UFC", "msgs_sent"), 10);
  slow_set_paused(proto_of(&b, "SLOW"), false);
  struct want w[] = {{&b, &a, 11}, {0}};
  wait_all(w, 5 * RS_SEC, "the OOB message");
  ck_assert_uint_eq(b.errors, 0);
  /* B: the ten, the three NO_FC ones, the multicast (which arrived before the OOB one), then
   * the OOB one once credit came. */
  ck_assert_uint_eq(b.n_log, 15);
  ck_assert_uint_eq(b.log[10], FC_NO_FC_TAG | 0);
  ck_assert_uint_eq(b.log[13], FC_NO_FC_TAG | 7);
  ck_assert_uint_eq(b.log[14], 10);
  /* Credit went to the 11 governed messages only. */
  ck_assert_int_eq(stat(&a, "UFC", "msgs_sent"), 11);
  ck_assert_int_eq(stat(&a, "UFC", "bytes_sent"), 11 * MSG_LEN);
  close_node(&a);
  close_node(&b);
}
END_TEST

/* --- hostile input --------------------------------------------------------------------------- */

struct fc_hdr_view { /* the header's in-memory layout (protocols/flow_control.h) */
  uint64_t consumed;
  uint64_t sent;
  uint8_t type;
};

/* Hands a forged control message to nd's UFC from below, as if it came off the network. */
static void inject(struct node *nd, const struct rs_addr *src, uint8_t type, uint64_t consumed,
                   uint64_t sent) {
  const struct rs_header_type *t = registry_header_type(UFC_ID);
  ck_assert_ptr_nonnull(t);
  struct rs_msg *m = rs_msg_new();
  struct fc_hdr_view *h = rs_msg_put_header(m, t);
  *h = (struct fc_hdr_view){.consumed = consumed, .sent = sent, .type = type};
  m->src = *src;
  m->dest = nd->addr;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  proto_up_msg(proto_of(nd, "SLOW"), m);
}

START_TEST(hostile_control_messages_are_bounded) {
  static struct node a, b;
  open_node(&a, "A", UFC_STACK("", "max_credits=\"10K\" max_block_time=\"100ms\""));
  open_node(&b, "B", UFC_STACK("paused=\"true\"", "max_credits=\"10K\" max_block_time=\"100ms\""));
  for (uint32_t i = 0; i < 100; i++)
    send_seq(&a, &b, i, 0);
  rs_sim_run_for(sim, 50 * RS_MS);
  ck_assert_uint_eq(slow_of(&b)->held_bytes, 10 * MSG_LEN);
  struct rs_addr forger = {0x1234, 0x5678};
  int64_t bad0 = stat(&a, "UFC", "bad_dropped"), stale0 = stat(&a, "UFC", "stale_ignored");
  inject(&a, &b.addr, 9, 0, 0);                         /* unknown type */
  inject(&a, &b.addr, 1, ((uint64_t)1 << 62) + 1, 0);   /* count out of range */
  ck_assert_int_eq(stat(&a, "UFC", "bad_dropped"), bad0 + 2);
  inject(&a, &forger, 1, 5000, 0);                      /* REPLENISH from nobody we send to */
  inject(&a, &b.addr, 3, 0, 1000000);                   /* a response about more than we sent */
  ck_assert_int_eq(stat(&a, "UFC", "stale_ignored"), stale0 + 2);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1);
  /* A request from a forger is answered (with nothing consumed) and costs one entry. */
  inject(&a, &forger, 2, 0, 123);
  ck_assert_int_eq(stat(&a, "UFC", "credit_responses_sent"), 1);
  ck_assert_int_eq(stat(&a, "UFC", "senders"), 1);
  /* A REPLENISH claiming 2^62 bytes: believed up to what A sent, so one more window goes out
   * (B, paused, now holds two), then A waits again and asks B to re-align. */
  inject(&a, &b.addr, 1, (uint64_t)1 << 62, 0);
  rs_sim_run_for(sim, 50 * RS_MS);
  ck_assert_uint_eq(slow_of(&b)->held_bytes, 20 * MSG_LEN);
  ck_assert_int_eq(stat(&a, "UFC", "queued_msgs"), 1);
  ck_assert_int_eq(stat(&a, "UFC", "resyncs"), 1);
  ck_assert_int_le(stat(&a, "UFC", "credits"), 0);
  /* Once B consumes, its answers re-align the counts and the rest flows at B's pace. */
  slow_set_paused(proto_of(&b, "SLOW"), false);
  struct want w[] = {{&b, &a, 100}, {0}};
  wait_all(w, 5 * RS_SEC, "all 100");
  ck_assert_uint_eq(b.errors, 0);
  ck_assert_uint_le(slow_of(&b)->max_held_bytes, 20 * MSG_LEN);
  close_node(&a);
  close_node(&b);
}
END_TEST

static bool decode(const uint8_t *p, size_t len, struct fc_hdr_view *h) {
  const struct rs_header_type *t = registry_header_type(MFC_ID);
  struct rs_reader r;
  reader_init(&r, p, len);
  memset(h, 0xa5, sizeof(*h));
  t->read(h, &r);
  return !r.err && r.pos == len;
}

START_TEST(header_bytes) {
  const struct rs_header_type *t = registry_header_type(MFC_ID);
  ck_assert_ptr_nonnull(t);
  ck_assert_ptr_nonnull(registry_header_type(UFC_ID));
  ck_assert_uint_le(t->size, RS_HDR_INLINE);
  struct fc_hdr_view h = {.consumed = 300, .sent = 5, .type = 3};
  uint8_t buf[32];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  t->write(&h, &w);
  const uint8_t want[] = {0x03, 0xac, 0x02, 0x05}; /* CREDIT_RESPONSE consumed=300 sent=5 */
  ck_assert_uint_eq(w.len, sizeof(want));
  ck_assert_uint_eq(t->wire_size(&h), sizeof(want));
  ck_assert_mem_eq(buf, want, sizeof(want));
  struct fc_hdr_view back;
  ck_assert(decode(buf, w.len, &back));
  ck_assert_uint_eq(back.consumed, 300);
  ck_assert_uint_eq(back.sent, 5);
  const uint8_t rep[] = {0x01, 0x07};
  ck_assert(decode(rep, sizeof(rep), &back));
  ck_assert_uint_eq(back.type, 1);
  ck_assert_uint_eq(back.consumed, 7);
  ck_assert_uint_eq(back.sent, 0);
  const uint8_t req[] = {0x02, 0x80, 0x01};
  ck_assert(decode(req, sizeof(req), &back));
  ck_assert_uint_eq(back.sent, 128);
  ck_assert_uint_eq(back.consumed, 0);
  /* Malformed: types 0 and 4, a count over 2^62, truncated. The struct is left zeroed. */
  const struct {
    uint8_t b[16];
    size_t n;
  } bad[] = {
      {{0x00, 0x01}, 2},
      {{0x04, 0x01}, 2},
      {{0x01, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40}, 10},
      {{0x03, 0x01}, 2},
      {{0x02}, 1},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_msg(!decode(bad[i].b, bad[i].n, &back), "bad[%zu] accepted", i);
    ck_assert_uint_eq(back.type, 0);
    ck_assert_uint_eq(back.consumed, 0);
    ck_assert_uint_eq(back.sent, 0);
  }
}
END_TEST

/* --- configuration --------------------------------------------------------------------------- */

static void open_fails(const char *xml, const char *needle) {
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "X");
  struct rs_channel *ch = NULL;
  struct rs_channel_opts o = {.config_xml = xml, .name = "X", .runtime = rt};
  char err[1024];
  int rc = rs_channel_open(&ch, &o, err, sizeof(err));
  ck_assert_msg(rc != 0, "accepted: %s", xml);
  ck_assert_msg(strstr(err, needle), "error '%s' does not mention '%s'", err, needle);
  rs_runtime_destroy(rt);
}

START_TEST(config_checks) {
  open_fails("<config><LOOPBACK/><UFC min_threshold=\"1\"/></config>", "min_threshold must be in (0, 1)");
  open_fails("<config><LOOPBACK/><MFC min_threshold=\"0\"/></config>", "min_threshold must be in (0, 1)");
  open_fails("<config><LOOPBACK/><UFC max_credits=\"10K\" min_credits=\"10K\"/></config>",
             "min_credits (10000) must be below max_credits (10000)");
  open_fails("<config><LOOPBACK/><MFC max_credits=\"50K\"/><FRAG4/></config>",
             "max_credits (50000) must exceed FRAG4's frag_size (60000)");
  open_fails("<config><LOOPBACK/><UFC max_credits=\"8K\"/><FRAG2 frag_size=\"8K\"/></config>",
             "frag_size (8000)");
  /* FRAG4 below flow control is not its concern; JGroups-only attributes are accepted. */
  static struct node a, b;
  open_node(&a, "A",
            "<config><LOOPBACK/><FRAG4/><UFC max_credits=\"50K\" max_block_times=\"1000:10\" "
            "ignore_synchronous_response=\"true\"/></config>");
  close_node(&a);
  /* udp.xml's values: min_credits is computed as JGroups does (4M x 0.4). */
  open_node(&b, "B",
            "<config><LOOPBACK/><UFC max_credits=\"4M\" min_threshold=\"0.4\"/>"
            "<MFC max_credits=\"4M\" min_threshold=\"0.4\"/><FRAG2 frag_size=\"60K\"/></config>");
  char *printed = rs_channel_print_stack(b.ch);
  ck_assert_ptr_nonnull(strstr(printed, "min_credits = 1600000"));
  ck_assert_ptr_nonnull(strstr(printed, "max_block_time = 500ms"));
  free(printed);
  ck_assert_int_eq(stat(&b, "MFC", "credits"), 4000000);
  ck_assert_int_eq(stat(&b, "UFC", "credits"), 4000000);
  close_node(&b);
}
END_TEST

static Suite *fc_suite(void) {
  Suite *s = suite_create("flow_control");
  TCase *tc = tcase_create("slow receivers");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, ufc_slow_receiver_memory_is_bounded);
  tcase_add_test(tc, mfc_one_slow_member_bounds_its_memory);
  tcase_add_test(tc, no_blocking_when_receivers_keep_up);
  suite_add_tcase(s, tc);
  tc = tcase_create("views and credit requests");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, mfc_member_leaving_unblocks_the_sender);
  tcase_add_test(tc, ufc_destination_leaving_releases_its_queue);
  tcase_add_test(tc, credit_request_recovers_a_lost_replenish);
  tcase_add_test(tc, without_credit_requests_a_lost_replenish_stalls);
  tcase_add_test(tc, long_messages_do_not_wait_for_a_replenish_that_is_not_coming);
  tcase_add_test(tc, oob_is_governed_no_fc_is_not);
  suite_add_tcase(s, tc);
  tc = tcase_create("hostile input and config");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, hostile_control_messages_are_bounded);
  tcase_add_test(tc, header_bytes);
  tcase_add_test(tc, config_checks);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(fc_suite()); }

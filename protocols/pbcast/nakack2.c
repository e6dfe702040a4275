/* NAKACK2: reliable FIFO multicast per sender, with NAKs, retransmission and digests. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "protocols/seqno_window.h"
#include "stack/stack.h"
#include "stack/view.h"
#include "transport/tp.h"

/*
 * How it works (JGroups' pbcast.NAKACK2, reimplemented):
 *
 * - Sending: every multicast that asks for reliability (not NO_RELIABILITY) gets the next seqno
 *   of this member, from 1 at every connect (a connect also makes a new address). A copy that
 *   shares the payload (rs_msg_copy) stays in the *send window* until STABLE reports that every
 *   member delivered it: only the original sender keeps a message after delivery, so only it
 *   retransmits (JGroups with discard_delivered_msgs, its default).
 * - Receiving: one *receive window* per sender that is a member of the view, and one for
 *   ourselves (our multicasts come back through the transport's loopback and are delivered like
 *   anybody's). A window delivers in seqno order, drops duplicates, and holds out-of-order
 *   messages within recv_window_size messages and recv_window_bytes of payload; what does not fit
 *   is dropped and counted, and comes back by retransmission once there is room (JGroups bounds
 *   nothing here and relies on MFC; with MFC above, a sender waits for credits long before a
 *   window fills, and without it the bound keeps a gap that lasts from costing unbounded memory;
 *   tests/unit/test_nakack2.c measures both regimes). OOB messages
 *   are passed up as soon as they arrive; the window keeps a marker in their slot so that a
 *   retransmitted copy is recognised: exactly once, not in order.
 * - Gaps: a receiver NAKs with an XMIT_REQ (seqno ranges in the payload, at most
 *   max_xmit_req_size seqnos) sent to the original sender, (a) at once after a batch, for the
 *   seqnos it has just learned are missing (each once), and (b) in a *pass* on every xmit run
 *   (and after recv_window_size/32 new seqnos), for the gaps that already existed at the previous
 *   pass (the request or its answer was lost). JGroups only NAKs on its timer, for gaps older
 *   than one run; asking at once repairs a loss in one round trip instead of up to two intervals,
 *   the same rule UNICAST3 follows here (see protocols/unicast3.c for the measurements).
 * - Retransmission: the sender answers with XMIT_RSP copies of what it still keeps, unicast to
 *   the requester. Choice: use_mcast_xmit defaults to false here (JGroups: true for UDP). Every
 *   receiver asks for itself and is answered at once, so a multicast answer would reach every
 *   member for each requester, and with loss at the receivers (independent per member, the
 *   common case) most of them already have it. With use_mcast_xmit=true and a transport that can
 *   multicast, answers are multicast, as in JGroups.
 * - A lost *last* message is revealed by HIGHEST_SEQNO: on an xmit run after an interval in which
 *   it sent nothing, a member multicasts its highest seqno, at most resend_last_seqno_max_times
 *   times for one seqno (JGroups' resend_last_seqno). A STABILITY digest also reveals what others
 *   received (its `received` column), so a lost announcement is caught by the next STABLE round.
 * - Membership: a view creates windows at seqno 0 for new members (their messages from 1 on)
 *   and removes those of members that left; our own window stays. A new member's first
 *   multicasts (and its HIGHEST_SEQNO) may reach us before the view or digest that makes its
 *   window: like JGroups' become-server queue, they wait in an *early queue* (early_queue_size
 *   messages and early_queue_bytes over all senders; beyond, dropped and counted as
 *   non_member_dropped) and are replayed through the normal receive path, in arrival order,
 *   right after the SET_DIGEST, MERGE_DIGEST or VIEW_CHANGE that made the window (deferred to a
 *   task, so that nothing goes up inside the event): those at or below the digest are
 *   duplicates, gaps are NAKed. A view frees what is held from senders not in it; anything held
 *   is freed after 10 to 20 xmit runs at the latest (early_expired). After a view with joiners,
 *   each member that sent anything multicasts its highest seqno once, so a joiner learns of a
 *   message it missed even when nothing more is sent. What the early queue cannot hold comes
 *   back by retransmission once a later message or HIGHEST_SEQNO reveals the gap.
 * - Joining: GMS gives a joiner the coordinator's digest (RS_EV_SET_DIGEST) *before* the first
 *   view, as JGroups does: a joiner's window for each member starts after that member's
 *   `delivered`, so it never receives what was multicast before it joined, and asks at once for
 *   what the coordinator had received beyond (`received`). Until RS_EV_BECOME_SERVER a joiner
 *   delivers nothing: messages wait in the windows (OOB ones too) and go up when it becomes a
 *   server (JGroups queues up to become_server_queue_size of them instead).
 * - Digests: RS_EV_GET_DIGEST reports every window (delivered = highest delivered in order,
 *   received = highest actually received; ours: highest sent). RS_EV_MERGE_DIGEST replaces a
 *   window only when the digest is ahead of it (never ours). RS_EV_STABLE purges our send window
 *   up to the stable `delivered` for us, never beyond what we delivered ourselves.
 * - Untouched: unicasts and NO_RELIABILITY messages, both ways. Control messages (XMIT_REQ,
 *   HIGHEST_SEQNO) are OOB|NO_FC and never retransmitted. Hostile input (bad headers, absurd
 *   ranges, huge seqnos) is dropped and counted; one request costs at most max_xmit_req_size
 *   retransmissions.
 */

#define NAK_ID 41
#define RL_INTERVAL (5 * RS_SEC)
/* A NAK pass also runs when recv_window_size / PASS_FRACTION new seqnos arrived since the last. */
#define PASS_FRACTION 32

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 41). Byte layout (docs/wire-format.md, NAKACK2):
 *
 *   MSG (1):            type u8 | seqno varint
 *   XMIT_REQ (2):       type u8 | sender (16)      (whose messages; the ranges are the payload)
 *   XMIT_RSP (3):       type u8 | seqno varint     (a retransmitted MSG)
 *   HIGHEST_SEQNO (4):  type u8 | seqno varint     (the sender's highest seqno sent)
 *
 * Seqnos are 1 .. 2^63 - 1. Another type or an out-of-range seqno makes the header malformed.
 */
enum { NAK_MSG = 1, NAK_XMIT_REQ = 2, NAK_XMIT_RSP = 3, NAK_HIGHEST_SEQNO = 4 };

struct nak_hdr {
  uint64_t seqno;
  struct rs_addr sender;
  uint8_t type;
};

static size_t hdr_wire_size(const void *p) {
  const struct nak_hdr *h = p;
  return 1 + (h->type == NAK_XMIT_REQ ? 16 : varint_size(h->seqno));
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct nak_hdr *h = p;
  put_u8(w, h->type);
  if (h->type == NAK_XMIT_REQ)
    put_addr(w, &h->sender);
  else
    put_varint(w, h->seqno);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct nak_hdr *h = p;
  *h = (struct nak_hdr){0};
  h->type = get_u8(r);
  if (h->type == NAK_XMIT_REQ) {
    h->sender = get_addr(r);
  } else {
    h->seqno = get_varint(r);
    if (h->type < NAK_MSG || h->type > NAK_HIGHEST_SEQNO || h->seqno == 0 ||
        h->seqno > SEQWIN_SEQNO_MAX)
      reader_fail(r, RS_EMALFORMED);
  }
  if (r->err) *h = (struct nak_hdr){0};
}

static const char *const type_names[] = {"?", "MSG", "XMIT_REQ", "XMIT_RSP", "HIGHEST_SEQNO"};

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct nak_hdr *h = p;
  const char *t = h->type <= NAK_HIGHEST_SEQNO ? type_names[h->type] : "?";
  if (h->type == NAK_XMIT_REQ) {
    char a[RS_ADDR_STRLEN];
    return snprintf(buf, len, "%s sender=%s", t, rs_addr_format(&h->sender, a));
  }
  return snprintf(buf, len, "%s seqno=%" PRIu64, t, h->seqno);
}

static const struct rs_header_type nak_header = {
    .id = NAK_ID,
    .name = "NAKACK2",
    .size = sizeof(struct nak_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct member {
  struct seqwin_node node; /* first: the sender's address */
  struct seqwin_recv win;
  uint64_t highest_received; /* highest seqno of a message that arrived (for digests) */
  uint64_t highest_seen;     /* highest seqno heard of: received, announced, or in a digest */
  uint64_t nak_high;         /* every missing seqno up to here has been requested once */
  uint64_t nak_mark;         /* nak_high at the previous pass: gaps up to here are re-requested */
  uint64_t pass_seen;        /* highest_seen at the previous pass */
};

struct nak_stats {
  uint64_t msgs_sent, msgs_received, msgs_delivered, oob_delivered;
  uint64_t xmit_reqs_sent, xmit_reqs_received, xmits, xmit_rsps_received;
  uint64_t xmit_not_found, xmit_req_truncated, xmit_req_other_sender;
  uint64_t highest_seqno_sent, highest_seqno_received;
  uint64_t dups_dropped, ooo_buffered, window_full_dropped, non_member_dropped;
  uint64_t dont_loopback_dropped, bad_dropped, bad_digest_entries;
  uint64_t stable_events, purged, digests_set, digests_merged, windows_replaced;
  uint64_t early_held, early_replayed, early_expired;
};

/* Messages from senders we have no window for yet, oldest first (linked by m->next). */
struct early_queue {
  struct rs_msg *head, *tail;
  size_t n, old; /* old: the first `old` were here at the previous aging tick */
  uint64_t bytes;
};

struct nakack2 {
  struct rs_protocol base;
  /* Attributes. */
  rs_time xmit_interval;
  bool use_mcast_xmit;
  bool log_discard_msgs;
  bool log_not_found_msgs;
  rs_time suppress_non_member;
  int64_t max_xmit_req_size;
  bool resend_last_seqno;
  int64_t resend_last_seqno_max_times;
  int64_t recv_window_size;
  uint64_t recv_window_bytes;
  int64_t early_queue_size;
  uint64_t early_queue_bytes;
  /* State. */
  struct rs_addr self;
  struct seqwin_send sent;     /* our multicasts, kept until stable */
  struct seqwin_table members; /* receive windows by sender, ours included */
  struct member *me;
  struct rs_view_data *view;
  bool is_server;
  bool mcast_xmit; /* use_mcast_xmit and the transport can multicast */
  struct rs_timer xmit_timer;
  uint64_t next_at_run; /* sent.next at the previous xmit run */
  uint64_t announced;   /* highest seqno announced with HIGHEST_SEQNO, and how often */
  int64_t announce_count;
  struct seqwin_range *ranges; /* scratch for XMIT_REQ: max_xmit_req_size */
  struct rs_ratelimit rl_bad, rl_non_member, rl_not_found;
  struct early_queue early; /* held: no window for the sender yet */
  struct early_queue ready; /* their window now exists: replayed by early_task */
  struct rs_task early_task;
  bool replaying;      /* early_task is replaying: a sender without a window is dropped */
  bool announce_joins; /* a view brought joiners: announce our highest seqno once */
  uint64_t runs;       /* xmit runs, for aging the early queue */
  struct nak_stats st;
};

#define NAK(p) ((struct nakack2 *)(p))

static rs_time now_of(struct nakack2 *n) { return rs_now(n->base.rt); }

static void log_bad(struct nakack2 *n, const struct rs_addr *src, const char *what) {
  n->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&n->base, RS_LOG_WARN) ||
      !ratelimit_ok(&n->rl_bad, now_of(n), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&n->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

/* JGroups warns about messages from non-members at most once per
 * suppress_time_non_member_warnings; a joiner that is not a server yet hears the group before
 * it has windows, which is expected and not logged. */
static void non_member(struct nakack2 *n, const struct rs_addr *src, uint8_t type) {
  n->st.non_member_dropped++;
  uint64_t suppressed = 0;
  if (!n->log_discard_msgs || !n->is_server || !proto_log_enabled(&n->base, RS_LOG_WARN)) return;
  if (n->suppress_non_member &&
      !ratelimit_ok(&n->rl_non_member, now_of(n), n->suppress_non_member, &suppressed))
    return;
  char a[RS_ADDR_STRLEN], v[256] = "none";
  if (n->view) view_format(n->view, v, sizeof(v));
  PLOG(&n->base, WARN, "dropped %s from non-member %s (view %s; %" PRIu64 " similar suppressed)",
       type_names[type], rs_addr_format(src, a), v, suppressed);
}

static struct member *member_find(struct nakack2 *n, const struct rs_addr *a) {
  return (struct member *)seqwin_table_find(&n->members, a);
}

/* A window whose first seqno to deliver is delivered + 1. */
static struct member *member_add(struct nakack2 *n, const struct rs_addr *a, uint64_t delivered) {
  struct member *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  e->node.addr = *a;
  seqwin_recv_init(&e->win, delivered + 1, (size_t)n->recv_window_size,
                   (size_t)n->recv_window_bytes);
  e->highest_received = e->highest_seen = delivered;
  e->nak_high = e->nak_mark = e->pass_seen = delivered;
  if (seqwin_table_add(&n->members, &e->node) != 0) {
    free(e);
    return NULL;
  }
  return e;
}

static void member_remove(struct nakack2 *n, struct member *e) {
  seqwin_table_remove(&n->members, &e->node);
  seqwin_recv_free(&e->win);
  free(e);
}

static void remove_each(struct seqwin_node *node, void *arg) {
  member_remove(arg, (struct member *)node);
}

/* ---------------------------------------------------------------------------------------------
 * The early queue: data and HIGHEST_SEQNO from senders we have no window for yet (JGroups keeps
 * such messages in its become-server queue). Bounded by early_queue_size messages and
 * early_queue_bytes of payload over all senders; held messages are replayed through the normal
 * receive path once their sender has a window, freed when a view without their sender is
 * installed, and at the latest after EARLY_AGE_RUNS to twice that many xmit runs.
 */
#define EARLY_AGE_RUNS 10

static void eq_push(struct early_queue *q, struct rs_msg *m) {
  m->next = NULL;
  if (q->tail)
    q->tail->next = m;
  else
    q->head = m;
  q->tail = m;
  q->n++;
  q->bytes += m->len;
}

static struct rs_msg *eq_pop(struct early_queue *q) {
  struct rs_msg *m = q->head;
  if (!m) return NULL;
  q->head = m->next;
  if (!q->head) q->tail = NULL;
  m->next = NULL;
  q->n--;
  q->bytes -= m->len;
  if (q->old) q->old--;
  return m;
}

static void eq_free(struct early_queue *q) {
  struct rs_msg *m;
  while ((m = eq_pop(q)))
    rs_msg_free(m);
  *q = (struct early_queue){0};
}

/* Takes m when there is room (not while replaying: a replayed message is held only once). */
static bool early_hold(struct nakack2 *n, struct rs_msg *m) {
  struct early_queue *q = &n->early;
  if (n->replaying || q->n + n->ready.n >= (uint64_t)n->early_queue_size ||
      q->bytes + n->ready.bytes + m->len > n->early_queue_bytes)
    return false;
  n->st.early_held++;
  eq_push(q, m);
  return true;
}

/* Windows were made: held messages of their senders move to the ready queue (arrival order
 * kept) for early_task to replay. After a view, the others are freed: not members. */
static void early_sort(struct nakack2 *n, bool view) {
  struct early_queue keep = {0};
  while (n->early.head) {
    bool was_old = n->early.old > 0;
    struct rs_msg *m = eq_pop(&n->early);
    if (member_find(n, &m->src)) {
      eq_push(&n->ready, m);
    } else if (view) {
      n->st.early_expired++;
      rs_msg_free(m);
    } else {
      eq_push(&keep, m);
      keep.old += was_old;
    }
  }
  n->early = keep;
  if (n->ready.n) rs_post(n->base.rt, &n->early_task);
}

/* Every EARLY_AGE_RUNS xmit runs, what was held already at the previous tick is freed. */
static void early_age(struct nakack2 *n) {
  if (++n->runs % EARLY_AGE_RUNS) return;
  while (n->early.old) {
    rs_msg_free(eq_pop(&n->early));
    n->st.early_expired++;
  }
  n->early.old = n->early.n;
}

/* ---------------------------------------------------------------------------------------------
 * Control messages: OOB|NO_FC, never kept, never retransmitted.
 */
static void send_control(struct nakack2 *n, const struct rs_addr *to, uint8_t type, uint64_t seqno,
                         struct rs_msg *m) {
  if (!m) m = rs_msg_new();
  if (!m) return;
  struct nak_hdr *h = rs_msg_put_header(m, &nak_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  h->seqno = seqno;
  if (type == NAK_XMIT_REQ) h->sender = *to;
  m->dest = to ? *to : RS_ADDR_NULL;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  proto_down_msg(&n->base, m);
}

static void send_xmit_req(struct nakack2 *n, struct member *e, size_t count) {
  struct rs_writer w;
  writer_init_grow(&w, seqwin_ranges_wire_size(n->ranges, count));
  seqwin_put_ranges(&w, n->ranges, count);
  struct rs_msg *m = w.err ? NULL : rs_msg_new_copy(w.p, w.len);
  free(w.p);
  if (!m) return;
  n->st.xmit_reqs_sent++;
  send_control(n, &e->node.addr, NAK_XMIT_REQ, 0, m);
}

/* Requests the missing seqnos in [lo, hi] (clipped to the window); returns the last seqno
 * covered by the request (less than hi when it reached max_xmit_req_size). */
static uint64_t request_missing(struct nakack2 *n, struct member *e, uint64_t lo, uint64_t hi) {
  uint64_t covered;
  size_t max = (size_t)n->max_xmit_req_size;
  size_t count = seqwin_recv_missing(&e->win, lo, hi, n->ranges, max, max, &covered);
  if (count) send_xmit_req(n, e, count);
  return covered;
}

/* Re-requests the gaps that already existed at the previous pass. */
static void nak_pass(struct nakack2 *n, struct member *e) {
  if (e->nak_mark >= e->win.next) request_missing(n, e, e->win.next, e->nak_mark);
  e->nak_mark = e->nak_high;
  e->pass_seen = e->highest_seen;
}

/* Requests what we just learned is missing (each seqno once; nak_pass repeats). */
static void nak_new_gaps(struct nakack2 *n, struct member *e) {
  if (e->highest_seen - e->pass_seen > e->win.max_msgs / PASS_FRACTION) nak_pass(n, e);
  uint64_t done = e->win.next - 1;
  uint64_t lo = (e->nak_high > done ? e->nak_high : done) + 1;
  uint64_t end = seqwin_recv_end(&e->win);
  uint64_t hi = e->highest_seen < end ? e->highest_seen : end;
  if (lo > hi) return;
  uint64_t covered = request_missing(n, e, lo, hi);
  if (covered > e->nak_high) e->nak_high = covered;
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */
static int nak_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct nakack2 *n = NAK(p);
  if (!rs_msg_is_multicast(m) || (m->flags & RS_MSG_NO_RELIABILITY) || !n->me)
    return proto_down_msg(p, m);
  if (n->sent.next > SEQWIN_SEQNO_MAX) { /* 2^63 multicasts: not in this universe */
    rs_msg_free(m);
    return RS_ETOOBIG;
  }
  struct nak_hdr *h = rs_msg_put_header(m, &nak_header);
  if (!h) { /* already RS_MSG_MAX_HDRS headers */
    rs_msg_free(m);
    return RS_EINVAL;
  }
  h->type = NAK_MSG;
  h->seqno = n->sent.next;
  struct rs_msg *kept = rs_msg_copy(m);
  if (!kept || seqwin_send_push(&n->sent, kept) != 0) {
    rs_msg_free(kept);
    rs_msg_free(m);
    return RS_ENOMEM;
  }
  /* Not looped back to us: our window steps over it (if the marker does not fit, the gap is
   * repaired from the send window and the copy dropped on delivery). */
  if (m->tflags & RS_MSG_DONT_LOOPBACK) seqwin_recv_skip(&n->me->win, h->seqno);
  n->st.msgs_sent++;
  /* Kept: if the transport refuses it now, receivers ask for it again. */
  proto_down_msg(p, m);
  return 0;
}

/* Resends our message `seqno` (kept in the send window) to the requester, or to the group. */
static void retransmit(struct nakack2 *n, uint64_t seqno, const struct rs_addr *to) {
  struct rs_msg *c = rs_msg_copy(seqwin_send_get(&n->sent, seqno));
  if (!c) return;
  struct nak_hdr *h = rs_msg_header(c, NAK_ID);
  h->type = NAK_XMIT_RSP;
  if (n->mcast_xmit && !rs_addr_eq(to, &n->self)) {
    c->dest = RS_ADDR_NULL;
    c->tflags |= RS_MSG_DONT_LOOPBACK;
  } else {
    c->dest = *to;
  }
  n->st.xmits++;
  proto_down_msg(&n->base, c);
}

/* ---------------------------------------------------------------------------------------------
 * Receiving.
 */

/* Our own multicast sent with DONT_LOOPBACK, coming back by retransmission: never delivered. */
static bool must_skip(struct nakack2 *n, const struct member *e, const struct rs_msg *m) {
  return e == n->me && (m->tflags & RS_MSG_DONT_LOOPBACK);
}

static void deliver_one(struct nakack2 *n, struct member *e, struct rs_msg *m,
                        struct rs_batch *up) {
  if (must_skip(n, e, m)) {
    n->st.dont_loopback_dropped++;
    rs_msg_free(m);
    return;
  }
  n->st.msgs_delivered++;
  rs_batch_add(up, m);
}

/* Moves what is now in order from the window to `up` (nothing before BECOME_SERVER). Done after
 * every message, so that a large batch does not fill the window with messages that could
 * leave. */
static void drain_in_order(struct nakack2 *n, struct member *e, struct rs_batch *up) {
  struct rs_msg *m;
  if (n->is_server)
    while ((m = seqwin_recv_remove(&e->win)))
      deliver_one(n, e, m, up);
}

/* A MSG or XMIT_RSP; takes m. Returns the member whose window it went to, or NULL. */
static struct member *on_data(struct nakack2 *n, struct rs_msg *m, const struct nak_hdr *h,
                              struct rs_batch *up) {
  struct member *e = member_find(n, &m->src);
  if (!e) {
    if (early_hold(n, m)) return NULL;
    non_member(n, &m->src, h->type);
    rs_msg_free(m);
    return NULL;
  }
  n->st.msgs_received++;
  if (h->type == NAK_XMIT_RSP) n->st.xmit_rsps_received++;
  uint64_t seqno = h->seqno; /* h lives in m, which the window may take */
  if (seqno > e->highest_seen) e->highest_seen = seqno;
  m->dest = RS_ADDR_NULL; /* a unicast retransmission is delivered as the multicast it was */
  /* Before BECOME_SERVER nothing goes up, OOB messages included: they wait in line. */
  bool oob = (m->flags & RS_MSG_OOB) && n->is_server;
  enum seqwin_add_result r = seqwin_recv_add(&e->win, seqno, m, oob);
  if (r == SEQWIN_ADDED || r == SEQWIN_DELIVER) {
    if (seqno > e->highest_received) e->highest_received = seqno;
  }
  switch (r) {
  case SEQWIN_ADDED:
    if (seqno != e->win.next) n->st.ooo_buffered++;
    drain_in_order(n, e, up);
    break;
  case SEQWIN_DELIVER:
    n->st.oob_delivered++;
    deliver_one(n, e, m, up);
    break;
  case SEQWIN_DUPLICATE:
    n->st.dups_dropped++;
    rs_msg_free(m);
    break;
  case SEQWIN_FULL:
  case SEQWIN_NOMEM:
    n->st.window_full_dropped++;
    rs_msg_free(m);
    break;
  }
  return e;
}

static struct member *on_highest_seqno(struct nakack2 *n, const struct rs_msg *m,
                                       const struct nak_hdr *h) {
  struct member *e = member_find(n, &m->src);
  if (!e) {
    non_member(n, &m->src, h->type);
    return NULL;
  }
  n->st.highest_seqno_received++;
  if (h->seqno > e->highest_seen) e->highest_seen = h->seqno;
  return e;
}

struct serve {
  struct nakack2 *n;
  const struct rs_addr *to;
  uint64_t budget; /* retransmissions left for this request */
};

static bool serve_range(void *arg, uint64_t first, uint64_t last) {
  struct serve *s = arg;
  struct nakack2 *n = s->n;
  if (first >= n->sent.next) return false; /* nothing we sent from here on */
  if (first < n->sent.low) {
    /* Purged: STABLE said everyone delivered it, so the requester should not need it. */
    uint64_t purged_last = last < n->sent.low ? last : n->sent.low - 1;
    n->st.xmit_not_found += purged_last - first + 1;
    first = n->sent.low;
  }
  if (last >= n->sent.next) last = n->sent.next - 1;
  for (uint64_t seqno = first; seqno <= last; seqno++) {
    if (s->budget == 0) {
      n->st.xmit_req_truncated++;
      return false;
    }
    s->budget--;
    retransmit(n, seqno, s->to);
  }
  return true;
}

static void log_not_found(struct nakack2 *n, const struct rs_addr *src, uint64_t before) {
  uint64_t suppressed;
  if (!n->log_not_found_msgs || n->st.xmit_not_found == before ||
      !proto_log_enabled(&n->base, RS_LOG_WARN) ||
      !ratelimit_ok(&n->rl_not_found, now_of(n), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&n->base, WARN,
       "%s asked for %" PRIu64 " messages already purged as stable (%" PRIu64
       " similar suppressed)",
       rs_addr_format(src, a), n->st.xmit_not_found - before, suppressed);
}

/* Decodes the ranges and resends what they name, at most max_xmit_req_size messages. */
static void on_xmit_req(struct nakack2 *n, const struct rs_msg *m, const struct nak_hdr *h) {
  if (!rs_addr_eq(&h->sender, &n->self)) {
    n->st.xmit_req_other_sender++; /* we keep only our own messages */
    return;
  }
  if (!rs_addr_eq(&m->src, &n->self) && !view_contains(n->view, &m->src)) {
    non_member(n, &m->src, h->type);
    return;
  }
  n->st.xmit_reqs_received++;
  uint64_t before = n->st.xmit_not_found;
  struct serve s = {.n = n, .to = &m->src, .budget = (uint64_t)n->max_xmit_req_size};
  if (seqwin_ranges_each(m->data, m->len, serve_range, &s) != 0)
    log_bad(n, &m->src, "malformed XMIT_REQ ranges");
  log_not_found(n, &m->src, before);
}

/* After a batch from e's sender: pass up what is in order, NAK what is missing. */
static void after_batch(struct nakack2 *n, struct member *e, struct rs_batch *up) {
  drain_in_order(n, e, up);
  nak_new_gaps(n, e);
  if (!up->n) return;
  up->src = e->node.addr;
  up->dest = RS_ADDR_NULL;
  /* Last: what is above may send, change the view (and so remove windows) before it returns. */
  proto_up_batch(&n->base, up);
  rs_batch_init(up);
}

/* One message with our header; takes m. Returns the member whose window it concerns. */
static struct member *on_msg(struct nakack2 *n, struct rs_msg *m, const struct nak_hdr *h,
                             struct rs_batch *up) {
  struct member *e = NULL;
  bool seqno_ok = h->seqno >= 1 && h->seqno <= SEQWIN_SEQNO_MAX; /* as the decoder checks */
  switch (h->type) {
  case NAK_MSG:
  case NAK_XMIT_RSP:
    if (seqno_ok) return on_data(n, m, h, up);
    log_bad(n, &m->src, "NAKACK2 seqno out of range");
    break;
  case NAK_XMIT_REQ: on_xmit_req(n, m, h); break;
  case NAK_HIGHEST_SEQNO:
    if (!seqno_ok)
      log_bad(n, &m->src, "NAKACK2 seqno out of range");
    else if (!member_find(n, &m->src) && early_hold(n, m))
      return NULL;
    else
      e = on_highest_seqno(n, m, h);
    break;
  default: log_bad(n, &m->src, "bad NAKACK2 header"); break;
  }
  rs_msg_free(m);
  return e;
}

/* Messages with our header are taken out of the batch; the rest goes up as it came, after the
 * messages we deliver. A batch has one sender, so usually one window changes; its deliveries go
 * up as one batch. */
static void nak_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct nakack2 *n = NAK(p);
  struct rs_batch rest, up;
  rs_batch_init(&rest);
  rs_batch_init(&up);
  rest.src = b->src;
  rest.dest = b->dest;
  struct member *touched = NULL;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct nak_hdr *h = rs_msg_header(m, NAK_ID);
    if (!h || (m->flags & RS_MSG_NO_RELIABILITY)) {
      rs_batch_add(&rest, m);
      continue;
    }
    /* Another sender's message: the previous one's deliveries go up first. A delivery may
     * change the view and so remove windows: windows are looked up afresh afterwards. */
    if (touched && !rs_addr_eq(&m->src, &touched->node.addr)) {
      after_batch(n, touched, &up);
      touched = NULL;
    }
    struct member *e = on_msg(n, m, h, &up);
    if (e) touched = e;
  }
  if (touched) after_batch(n, touched, &up);
  if (rest.n) proto_up_batch(p, &rest);
}

/* ---------------------------------------------------------------------------------------------
 * The xmit run, every xmit_interval.
 */
static void pass_each(struct seqwin_node *node, void *arg) { nak_pass(arg, (struct member *)node); }

/* Our own messages come back through the transport's loopback, which loses nothing unless its
 * queue was full; after a whole interval without sending, anything still missing is lost. */
static void check_own_loopback(struct nakack2 *n) {
  uint64_t highest = n->sent.next - 1;
  if (n->sent.next != n->next_at_run || n->me->highest_seen >= highest) return;
  n->me->highest_seen = highest;
  nak_new_gaps(n, n->me);
}

/* JGroups' resend_last_seqno: announce the highest seqno after an idle interval, so that a
 * receiver that lost our last message notices the gap. */
static void announce_highest(struct nakack2 *n) {
  uint64_t highest = n->sent.next - 1;
  if (!n->resend_last_seqno || highest == 0 || n->sent.next != n->next_at_run) return;
  if (highest < n->sent.low) return; /* stable: everybody has it */
  if (highest != n->announced) {
    n->announced = highest;
    n->announce_count = 0;
  }
  if (n->announce_count >= n->resend_last_seqno_max_times) return;
  n->announce_count++;
  n->st.highest_seqno_sent++;
  send_control(n, NULL, NAK_HIGHEST_SEQNO, highest, NULL);
}

static void xmit_run(struct rs_timer *t) {
  struct nakack2 *n = (struct nakack2 *)((char *)t - offsetof(struct nakack2, xmit_timer));
  seqwin_table_each(&n->members, pass_each, n);
  check_own_loopback(n);
  announce_highest(n);
  n->next_at_run = n->sent.next;
  early_age(n);
}

/* After a view with joiners: our highest seqno once, so that a joiner that missed a message
 * of ours (sent after the digest it got, before it had a window for us) learns of the gap even
 * if we send nothing more. */
static void announce_to_joiners(struct nakack2 *n) {
  uint64_t highest = n->sent.next - 1;
  n->announce_joins = false;
  if (!n->resend_last_seqno || highest == 0 || highest < n->sent.low) return;
  n->st.highest_seqno_sent++;
  send_control(n, NULL, NAK_HIGHEST_SEQNO, highest, NULL);
}

/* Posted when windows were made: replays the ready queue through the normal receive path, one
 * message at a time (a delivery may change the view), after the event that made the windows
 * has gone through the stack. */
static void early_replay(struct rs_task *t) {
  struct nakack2 *n = (struct nakack2 *)((char *)t - offsetof(struct nakack2, early_task));
  if (!n->me) return;
  if (n->announce_joins) announce_to_joiners(n);
  n->replaying = true;
  struct rs_msg *m;
  while ((m = eq_pop(&n->ready))) {
    n->st.early_replayed++;
    struct rs_batch b;
    rs_batch_init(&b);
    b.src = m->src;
    b.dest = RS_ADDR_NULL;
    rs_batch_add(&b, m);
    nak_up_batch(&n->base, &b);
  }
  n->replaying = false;
}

/* ---------------------------------------------------------------------------------------------
 * Events: views, digests, stability.
 */
/* Checks a digest entry from outside (GMS or STABLE, possibly from the network): seqnos must
 * leave room for a window above them. */
static bool entry_ok(struct nakack2 *n, const struct rs_digest_entry *d) {
  if (d->delivered < SEQWIN_SEQNO_MAX && d->received <= SEQWIN_SEQNO_MAX &&
      d->received >= d->delivered && !rs_addr_is_null(&d->addr))
    return true;
  n->st.bad_digest_entries++;
  return false;
}

/* What a digest says was received beyond what a window delivered is asked for at once. */
static void learn_received(struct nakack2 *n, struct member *e, uint64_t received) {
  if (received <= e->highest_seen) return;
  e->highest_seen = received;
  nak_new_gaps(n, e);
}

struct digest_fill {
  struct nakack2 *n;
  struct rs_digest *out;
};

static void fill_entry(struct seqwin_node *node, void *arg) {
  struct digest_fill *f = arg;
  struct member *e = (struct member *)node;
  struct rs_digest_entry *d = &f->out->e[f->out->n++];
  d->addr = e->node.addr;
  d->delivered = e->win.next - 1;
  uint64_t received = e == f->n->me ? f->n->sent.next - 1 : e->highest_received;
  d->received = received > d->delivered ? received : d->delivered;
}

/* RS_EV_GET_DIGEST: every window; the caller frees the entries with digest_free. */
static int fill_digest(struct nakack2 *n, struct rs_digest *out) {
  if (!out) return RS_EINVAL;
  out->n = 0;
  out->e = NULL;
  if (!n->members.n) return 0;
  out->e = malloc(n->members.n * sizeof(*out->e));
  if (!out->e) return RS_ENOMEM;
  struct digest_fill f = {n, out};
  seqwin_table_each(&n->members, fill_entry, &f);
  return 0;
}

/* RS_EV_SET_DIGEST (a joiner): windows for the members we have none for start after their
 * `delivered`; existing windows and our own are kept (JGroups does the same). */
static void set_digest(struct nakack2 *n, const struct rs_digest *d) {
  n->st.digests_set++;
  for (size_t i = 0; d && i < d->n; i++) {
    const struct rs_digest_entry *x = &d->e[i];
    if (!entry_ok(n, x) || rs_addr_eq(&x->addr, &n->self) || member_find(n, &x->addr)) continue;
    struct member *e = member_add(n, &x->addr, x->delivered);
    if (e) learn_received(n, e, x->received);
  }
  early_sort(n, false);
}

/* RS_EV_MERGE_DIGEST: a window is replaced when the digest says more was delivered than it did
 * (the member comes from another subgroup, whose history we never saw); never our own. */
static void merge_digest(struct nakack2 *n, const struct rs_digest *d) {
  n->st.digests_merged++;
  for (size_t i = 0; d && i < d->n; i++) {
    const struct rs_digest_entry *x = &d->e[i];
    if (!entry_ok(n, x) || rs_addr_eq(&x->addr, &n->self)) continue;
    struct member *e = member_find(n, &x->addr);
    if (e && e->win.next - 1 < x->delivered) {
      member_remove(n, e);
      n->st.windows_replaced++;
      e = NULL;
    }
    if (!e) e = member_add(n, &x->addr, x->delivered);
    if (e) learn_received(n, e, x->received);
  }
  early_sort(n, false);
}

/* RS_EV_STABLE: everyone delivered our messages up to our entry's `delivered`: they are no
 * longer needed for retransmission. Never beyond what we delivered ourselves. */
static void stable(struct nakack2 *n, const struct rs_digest *d) {
  n->st.stable_events++;
  for (size_t i = 0; d && i < d->n; i++) {
    const struct rs_digest_entry *x = &d->e[i];
    if (!entry_ok(n, x)) continue;
    if (rs_addr_eq(&x->addr, &n->self)) {
      uint64_t own = n->me->win.next - 1;
      n->st.purged += seqwin_send_purge(&n->sent, x->delivered < own ? x->delivered : own);
      continue;
    }
    struct member *e = member_find(n, &x->addr);
    if (e) learn_received(n, e, x->received);
  }
}

static void drop_left(struct seqwin_node *node, void *arg) {
  struct nakack2 *n = arg;
  struct member *e = (struct member *)node;
  if (e != n->me && !view_contains(n->view, &e->node.addr)) member_remove(n, e);
}

/* RS_EV_VIEW_CHANGE: windows of members that left go, new members get one from seqno 1; held
 * messages of members are replayed, the others freed; joiners hear our highest seqno. */
static void view_change(struct nakack2 *n, const struct rs_view_data *v) {
  struct rs_view_data *old = n->view;
  n->view = view_ref((struct rs_view_data *)v);
  view_unref(old);
  seqwin_table_each(&n->members, drop_left, n);
  bool joiners = false;
  for (size_t i = 0; i < v->n; i++)
    if (!member_find(n, &v->members[i]) && member_add(n, &v->members[i], 0)) joiners = true;
  early_sort(n, true);
  if (joiners && n->sent.next > 1) {
    n->announce_joins = true;
    rs_post(n->base.rt, &n->early_task);
  }
}

struct collect {
  struct rs_addr *addrs;
  size_t n;
};

static void collect_addr(struct seqwin_node *node, void *arg) {
  struct collect *c = arg;
  c->addrs[c->n++] = node->addr;
}

/* RS_EV_BECOME_SERVER: what waited in the windows goes up. A delivery may change the view, so
 * the windows are looked up one by one from a list of addresses taken first. */
static void become_server(struct nakack2 *n) {
  n->is_server = true;
  size_t count = n->members.n;
  struct rs_addr *addrs = malloc((count ? count : 1) * sizeof(*addrs));
  if (!addrs) return; /* each window delivers with its sender's next batch */
  struct collect c = {addrs, 0};
  seqwin_table_each(&n->members, collect_addr, &c);
  size_t k = c.n;
  for (size_t i = 0; i < k; i++) {
    struct member *e = member_find(n, &addrs[i]);
    struct rs_batch up;
    rs_batch_init(&up);
    if (e) after_batch(n, e, &up);
  }
  free(addrs);
}

/* Digest events are answered here and go no further; views and BECOME_SERVER go on down. */
static int nak_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct nakack2 *n = NAK(p);
  bool started = n->me != NULL;
  switch (ev->type) {
  case RS_EV_GET_DIGEST: return fill_digest(n, ev->digest_out);
  case RS_EV_SET_DIGEST:
    if (started) set_digest(n, ev->u.digest);
    return 0;
  case RS_EV_MERGE_DIGEST:
    if (started) merge_digest(n, ev->u.digest);
    return 0;
  case RS_EV_STABLE:
    if (started) stable(n, ev->u.digest);
    return 0;
  case RS_EV_VIEW_CHANGE:
    if (started && ev->u.view) view_change(n, ev->u.view);
    break;
  case RS_EV_BECOME_SERVER:
    if (started) become_server(n);
    break;
  default: break;
  }
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int nak_init(struct rs_protocol *p) {
  struct nakack2 *n = NAK(p);
  seqwin_table_init(&n->members);
  seqwin_send_init(&n->sent);
  rs_timer_init(&n->xmit_timer, p->rt, xmit_run);
  rs_task_init(&n->early_task, early_replay);
  n->ranges = malloc((size_t)n->max_xmit_req_size * sizeof(*n->ranges));
  if (!n->ranges) return proto_error(p, "out of memory");
  return 0;
}

/* Whether the transport can send one frame to the whole group (JGroups turns use_mcast_xmit
 * off on transports that cannot). */
static bool transport_multicasts(struct rs_protocol *p) {
  struct rs_protocol *b = p->stack->bottom;
  if (!b || !(b->ops->flags & RS_PROTO_TRANSPORT)) return false;
  const struct rs_tp *tp = (const struct rs_tp *)b;
  return tp->tops && tp->tops->multicast;
}

/* A connect starts from scratch: a new address, seqnos from 1, no view yet. */
static int nak_start(struct rs_protocol *p) {
  struct nakack2 *n = NAK(p);
  n->self = proto_local_addr(p);
  seqwin_send_init(&n->sent);
  n->me = member_add(n, &n->self, 0);
  if (!n->me) return proto_error(p, "out of memory");
  n->is_server = false;
  n->mcast_xmit = n->use_mcast_xmit && transport_multicasts(p);
  n->next_at_run = n->sent.next;
  n->announced = 0;
  n->announce_count = 0;
  rs_timer_start(&n->xmit_timer, n->xmit_interval, n->xmit_interval);
  return 0;
}

static void nak_stop(struct rs_protocol *p) {
  struct nakack2 *n = NAK(p);
  rs_timer_stop(&n->xmit_timer);
  rs_task_cancel(n->base.rt, &n->early_task);
  eq_free(&n->early);
  eq_free(&n->ready);
  n->announce_joins = false;
  n->runs = 0;
  seqwin_table_each(&n->members, remove_each, n);
  n->me = NULL;
  seqwin_send_free(&n->sent);
  view_unref(n->view);
  n->view = NULL;
  n->is_server = false;
}

static void nak_destroy(struct rs_protocol *p) {
  struct nakack2 *n = NAK(p);
  nak_stop(p);
  seqwin_table_free(&n->members);
  free(n->ranges);
  n->ranges = NULL;
}

struct totals {
  uint64_t held, held_bytes, missing;
};

static void add_member(struct seqwin_node *node, void *arg) {
  struct totals *t = arg;
  struct member *e = (struct member *)node;
  t->held += e->win.held;
  t->held_bytes += e->win.bytes;
  if (e->highest_seen >= e->win.next) t->missing += e->highest_seen - e->win.next + 1 - e->win.held;
}

static void nak_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct nakack2 *n = NAK(p);
  struct totals t = {0};
  seqwin_table_each(&n->members, add_member, &t);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"msgs_sent", n->st.msgs_sent},
      {"msgs_received", n->st.msgs_received},
      {"msgs_delivered", n->st.msgs_delivered},
      {"oob_delivered", n->st.oob_delivered},
      {"xmit_reqs_sent", n->st.xmit_reqs_sent},
      {"xmit_reqs_received", n->st.xmit_reqs_received},
      {"xmits", n->st.xmits},
      {"xmit_rsps_received", n->st.xmit_rsps_received},
      {"xmit_not_found", n->st.xmit_not_found},
      {"xmit_req_truncated", n->st.xmit_req_truncated},
      {"xmit_req_other_sender", n->st.xmit_req_other_sender},
      {"highest_seqno_sent", n->st.highest_seqno_sent},
      {"highest_seqno_received", n->st.highest_seqno_received},
      {"dups_dropped", n->st.dups_dropped},
      {"ooo_buffered", n->st.ooo_buffered},
      {"window_full_dropped", n->st.window_full_dropped},
      {"non_member_dropped", n->st.non_member_dropped},
      {"dont_loopback_dropped", n->st.dont_loopback_dropped},
      {"bad_dropped", n->st.bad_dropped},
      {"bad_digest_entries", n->st.bad_digest_entries},
      {"stable_events", n->st.stable_events},
      {"purged", n->st.purged},
      {"digests_set", n->st.digests_set},
      {"digests_merged", n->st.digests_merged},
      {"windows_replaced", n->st.windows_replaced},
      {"early_held", n->st.early_held},
      {"early_replayed", n->st.early_replayed},
      {"early_expired", n->st.early_expired},
      {"early_queue", n->early.n + n->ready.n},
      {"early_queue_bytes", n->early.bytes + n->ready.bytes},
      {"seqno", n->sent.next - 1},
      {"xmit_table_msgs", seqwin_send_count(&n->sent)},
      {"xmit_table_bytes", n->sent.bytes},
      {"windows", n->members.n},
      {"held", t.held},
      {"held_bytes", t.held_bytes},
      {"missing", t.missing},
      {"is_server", n->is_server},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr nak_attrs[] = {
    {"xmit_interval", RS_ATTR_DURATION, offsetof(struct nakack2, xmit_interval), "1s", 1, 3600000,
     "period of the retransmission run: NAKs for old gaps, HIGHEST_SEQNO after an idle interval", 0,
     NULL},
    {"use_mcast_xmit", RS_ATTR_BOOL, offsetof(struct nakack2, use_mcast_xmit), "false", 0, 0,
     "retransmit by multicast (when the transport can) instead of unicast to the requester", 0,
     NULL},
    {"max_xmit_req_size", RS_ATTR_INT, offsetof(struct nakack2, max_xmit_req_size), "1024", 1,
     65536, "seqnos asked for in one XMIT_REQ, and resent for one", 0, NULL},
    {"resend_last_seqno", RS_ATTR_BOOL, offsetof(struct nakack2, resend_last_seqno), "true", 0, 0,
     "multicast our highest seqno after an interval without sending, so a lost last message is "
     "found",
     0, NULL},
    {"resend_last_seqno_max_times", RS_ATTR_INT,
     offsetof(struct nakack2, resend_last_seqno_max_times), "1", 1, 1000,
     "how often one highest seqno is announced", 0, NULL},
    {"log_discard_msgs", RS_ATTR_BOOL, offsetof(struct nakack2, log_discard_msgs), "true", 0, 0,
     "log messages dropped because their sender is not a member (always counted)", 0, NULL},
    {"log_not_found_msgs", RS_ATTR_BOOL, offsetof(struct nakack2, log_not_found_msgs), "true", 0, 0,
     "log requests for messages already purged as stable (always counted)", 0, NULL},
    {"suppress_time_non_member_warnings", RS_ATTR_DURATION,
     offsetof(struct nakack2, suppress_non_member), "60s", 0, 0,
     "at most one warning about non-members per this interval; 0: every one", 0, NULL},
    {"recv_window_size", RS_ATTR_INT, offsetof(struct nakack2, recv_window_size), "8192", 1,
     16777216,
     "messages held per sender beyond the next one in order; later ones are dropped and "
     "retransmitted",
     0, NULL},
    {"recv_window_bytes", RS_ATTR_SIZE, offsetof(struct nakack2, recv_window_bytes), "10M", 0, 0,
     "payload bytes held per sender out of order; more is dropped and retransmitted", 0, NULL},
    {"early_queue_size", RS_ATTR_INT, offsetof(struct nakack2, early_queue_size), "1024", 0,
     16777216,
     "messages held (over all senders) that came from senders we have no window for yet; "
     "replayed when the window is made; 0: dropped at once",
     0, NULL},
    {"early_queue_bytes", RS_ATTR_SIZE, offsetof(struct nakack2, early_queue_bytes), "1M", 0, 0,
     "payload bytes held from senders we have no window for yet; more is dropped", 0, NULL},
    IGNORED("use_mcast_xmit_req",
            "requests go to the original sender: only it keeps its messages after delivery"),
    IGNORED("xmit_from_random_member",
            "requests go to the original sender: only it keeps its messages after delivery"),
    IGNORED("discard_delivered_msgs", "always: receivers keep nothing they delivered"),
    IGNORED("become_server_queue_size",
            "messages that arrive before BECOME_SERVER wait in the receive windows"),
    IGNORED("xmit_table_num_rows", "windows grow as needed within recv_window_size"),
    IGNORED("xmit_table_msgs_per_row", "windows grow as needed within recv_window_size"),
    IGNORED("xmit_table_resize_factor", "windows double as needed"),
    IGNORED("xmit_table_max_compaction_time", "windows free memory as they drain"),
    IGNORED("max_batch_size", "what a received batch makes deliverable goes up as one batch"),
    IGNORED("max_msg_batch_size", "what a received batch makes deliverable goes up as one batch"),
    IGNORED("reuse_message_batches", "no batch objects are allocated"),
    IGNORED("max_rebroadcast_timeout", "no FLUSH, no rebroadcast"),
    IGNORED("print_stability_history_on_failed_xmit", "failed retransmissions are counted"),
    RS_ATTR_END,
};

const struct rs_protocol_ops nakack2_protocol = {
    .name = "NAKACK2",
    .package = "pbcast",
    .id = NAK_ID,
    .size = sizeof(struct nakack2),
    .description = "reliable FIFO multicast per sender: seqnos, NAKs, retransmission, digests",
    .attrs = nak_attrs,
    .header = &nak_header,
    .init = nak_init,
    .start = nak_start,
    .stop = nak_stop,
    .destroy = nak_destroy,
    .down_msg = nak_down_msg,
    .up_batch = nak_up_batch,
    .down_event = nak_down_event,
    .stats = nak_stats,
};

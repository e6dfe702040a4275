/* UNICAST3: reliable, FIFO unicast per pair of members (acks, NAKs, connection ids, expiry). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "protocols/seqno_window.h"
#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' UNICAST3, reimplemented; doc/design/UNICAST3.txt there):
 *
 * - Per destination a *send entry*: a connection id chosen when the entry is created, seqnos from
 *   1, and the send window that keeps a copy of every message until the receiver acks it. The
 *   message with seqno 1 is marked FIRST, so the receiver knows where the connection starts.
 * - Per source a *receive entry*: the connection id, and the receive window that delivers in
 *   order, drops duplicates and holds out-of-order messages within bounds (recv_window_size
 *   messages, recv_window_bytes of payload). A message that does not fit is dropped and counted:
 *   the sender still has it, and the receiver asks for it again once there is room.
 * - OOB messages take part in the seqno order (so they are reliable and delivered once) but are
 *   passed up as soon as they arrive; the window keeps a marker in their slot.
 * - Acks are cumulative: the highest seqno delivered in order. Choice: as JGroups, an ack is sent
 *   at once after a received batch when at least ack_threshold messages were delivered since the
 *   last ack, or when a duplicate arrived (our last ack may have been lost); otherwise it waits
 *   for the next xmit run (at most xmit_interval). So a busy stream is acked about every
 *   ack_threshold messages (one small message per hundred) and a request/response exchange
 *   causes at most one ack per xmit_interval instead of one per message.
 * - Loss is repaired from both ends, as in JGroups. The receiver NAKs (XMIT_REQ: seqno ranges
 *   in the payload) (a) at once after a batch, for the seqnos it has just learned are missing (a
 *   gap revealed by a higher seqno, or seqnos that just came into the window), each once; and
 *   (b) in a *pass*, for the gaps that already existed at the previous pass (their request or
 *   retransmission was lost). The sender resends what is requested. (a) is JGroups' rule made
 *   eager: over a FIFO transport a gap means loss, so waiting for the timer only delays the
 *   repair; a transport that reorders costs at most one spurious retransmission per reordered
 *   message. A pass runs on every xmit run, as in JGroups, and also when recv_window_size/32 new
 *   seqnos arrived since the last one (256 by default; at most once per batch). Without that, a
 *   fast sender fills the window behind a gap whose repair was lost long before the timer comes
 *   round, and every message beyond the window costs a retransmission: with 10% loss each way
 *   the 100k test needed 2.3 retransmissions per message sent, against 0.25 (about the minimum)
 *   with it. A gap is thus re-requested after 1/32 to 1/16 of the window arrived behind it, so
 *   the window should hold several round trips' worth of messages; otherwise retransmissions
 *   still under way are requested again (the duplicates are dropped and counted).
 * - The sender, on every xmit run, resends its highest message when it has unacked messages and
 *   sent nothing new for a whole interval: a lost last message (no later one reveals the gap) or
 *   a lost ack is found that way, and the duplicate makes the receiver ack at once.
 * - Connection ids: a receiver that gets a message of a connection it does not know (no entry, or
 *   another id) that is not marked FIRST cannot tell where the sequence starts; it drops it and
 *   asks the sender with SEND_FIRST_SEQNO (at most once per entry and xmit_interval). The sender
 *   resends its lowest unacked message marked FIRST (everything below was acked, i.e. delivered),
 *   and the receiver starts its window there and NAKs the rest. A FIRST message with a higher id
 *   replaces the receiver's entry: the sender started a new connection. Ids of one sender only
 *   grow (one counter per stack, and a restarted stack has a new address), so a message with a
 *   lower id is a stale one of an older connection and is dropped without further ado.
 * - Expiry (conn_expiry_timeout): a receive entry that heard nothing for that long is removed; a
 *   send entry idle for that long with nothing unacked is removed and a CLOSE(conn_id) tells the
 *   receiver to remove its entry too (if CLOSE is lost, the receiver's own expiry, a FIRST with
 *   a new id, or SEND_FIRST_SEQNO sort it out). A send entry with unacked messages is never
 *   expired: the member is still expected; a view change removes departed members.
 * - Control messages (ACK, XMIT_REQ, SEND_FIRST_SEQNO, CLOSE) are OOB|NO_FC, carry the
 *   connection id (a message about another connection is ignored) and are never retransmitted.
 * - Untouched: multicasts (NAKACK2's), messages flagged NO_RELIABILITY, and messages to ourselves
 *   (the transport loops them back in order and cannot lose them).
 *
 * Views: RS_EV_VIEW_CHANGE going down removes the entries of the members of the previous view
 * that are not in the new one, both the send entry (its unacked messages are dropped: a member
 * that left or crashed will never ack them) and the receive entry, as JGroups does. Only members
 * that *left* a view lose their entries: a joiner (not yet in any view) keeps the connection its
 * JOIN_REQ and JOIN_RSP use, and so does a stranger, whose idle entries leave by expiry.
 */

#define U3_ID 48
#define MAX_XMIT_RANGES 2048 /* ranges per XMIT_REQ; more are requested by the next one */
#define RL_INTERVAL (5 * RS_SEC)
/* A NAK pass also runs when recv_window_size / PASS_FRACTION new seqnos arrived since the last. */
#define PASS_FRACTION 32

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 48). Byte layout (docs/wire-format.md, UNICAST3):
 *
 *   DATA (0):             type u8 | flags u8 (0x01 FIRST) | conn_id varint | seqno varint
 *   ACK (1):              type u8 | conn_id varint | seqno varint (highest delivered in order)
 *   SEND_FIRST_SEQNO (2): type u8 | conn_id varint
 *   XMIT_REQ (3):         type u8 | conn_id varint        (the ranges are the payload)
 *   CLOSE (4):            type u8 | conn_id varint
 *
 * conn_id is at most 2^32 - 1; seqnos are at most 2^63 - 1 and DATA's are at least 1. Another
 * type, another flag bit, or an out-of-range value makes the header malformed.
 */
enum { U3_DATA = 0, U3_ACK = 1, U3_SEND_FIRST_SEQNO = 2, U3_XMIT_REQ = 3, U3_CLOSE = 4 };
#define U3_FIRST 0x01

struct u3_hdr {
  uint64_t seqno;
  uint32_t conn_id;
  uint8_t type;
  uint8_t flags;
};

static bool has_seqno(uint8_t type) { return type == U3_DATA || type == U3_ACK; }

static size_t hdr_wire_size(const void *p) {
  const struct u3_hdr *h = p;
  size_t n = 1 + varint_size(h->conn_id);
  if (h->type == U3_DATA) n++;
  if (has_seqno(h->type)) n += varint_size(h->seqno);
  return n;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct u3_hdr *h = p;
  put_u8(w, h->type);
  if (h->type == U3_DATA) put_u8(w, h->flags);
  put_varint(w, h->conn_id);
  if (has_seqno(h->type)) put_varint(w, h->seqno);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct u3_hdr *h = p;
  *h = (struct u3_hdr){0};
  h->type = get_u8(r);
  if (h->type > U3_CLOSE) reader_fail(r, RS_EMALFORMED);
  if (h->type == U3_DATA) h->flags = get_u8(r);
  uint64_t conn = get_varint(r);
  if (has_seqno(h->type)) h->seqno = get_varint(r);
  if ((h->flags & ~U3_FIRST) || conn > UINT32_MAX || h->seqno > SEQWIN_SEQNO_MAX ||
      (h->type == U3_DATA && h->seqno == 0))
    reader_fail(r, RS_EMALFORMED);
  h->conn_id = (uint32_t)conn;
  if (r->err) *h = (struct u3_hdr){0};
}

static const char *const type_names[] = {"DATA", "ACK", "SEND_FIRST_SEQNO", "XMIT_REQ", "CLOSE"};

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct u3_hdr *h = p;
  const char *t = h->type <= U3_CLOSE ? type_names[h->type] : "?";
  if (!has_seqno(h->type)) return snprintf(buf, len, "%s conn_id=%" PRIu32, t, h->conn_id);
  return snprintf(buf, len, "%s conn_id=%" PRIu32 " seqno=%" PRIu64 "%s", t, h->conn_id, h->seqno,
                  h->flags & U3_FIRST ? " first" : "");
}

static const struct rs_header_type u3_header = {
    .id = U3_ID,
    .name = "UNICAST3",
    .size = sizeof(struct u3_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct send_entry {
  struct seqwin_node node; /* first: the peer's address */
  uint32_t conn_id;
  struct seqwin_send win;
  rs_time last_active;  /* last message sent or ack received */
  uint64_t next_at_run; /* win.next at the previous xmit run */
};

struct recv_entry {
  struct seqwin_node node; /* first: the peer's address */
  uint32_t conn_id;
  bool established; /* a FIRST message fixed where the sequence starts */
  struct seqwin_recv win;
  uint64_t highest_seen; /* highest seqno received on this connection (held or not) */
  uint64_t nak_high;     /* every missing seqno up to here has been requested once */
  uint64_t nak_mark;     /* nak_high at the previous pass: gaps up to here are re-requested */
  uint64_t pass_seen;    /* highest_seen at the previous pass */
  uint64_t acked;        /* highest seqno acked to the sender */
  bool ack_now;          /* a duplicate arrived: the sender may have missed our ack */
  /* Messages of a connection we do not know: ask for its first message, once per xmit run
   * and only in a batch that brought such a message. */
  bool sfs_wanted; /* in the current batch */
  bool sfs_sent;   /* in the current xmit run */
  uint32_t sfs_conn;
  uint64_t sfs_highest; /* highest seqno seen of sfs_conn, NAKed once its start is known */
  rs_time last_active;  /* last data received */
};

struct u3_stats {
  uint64_t msgs_sent, msgs_received, msgs_delivered, oob_delivered;
  uint64_t xmits, xmit_reqs_sent, xmit_reqs_received, resends_highest;
  uint64_t acks_sent, acks_received;
  uint64_t dups_dropped, ooo_buffered, window_full_dropped, unknown_conn_dropped;
  uint64_t sfs_sent, sfs_received, closes_sent, closes_received;
  uint64_t conns_created, conns_expired, conns_replaced;
  uint64_t stale_ignored, bad_dropped;
  uint64_t conns_removed_by_view;
};

struct unicast3 {
  struct rs_protocol base;
  /* Attributes. */
  rs_time xmit_interval;
  rs_time conn_expiry_timeout;
  int64_t ack_threshold;
  int64_t recv_window_size;
  uint64_t recv_window_bytes;
  /* State. */
  struct seqwin_table send_table, recv_table;
  uint32_t last_conn_id;
  struct rs_timer xmit_timer;
  struct seqwin_range *ranges; /* scratch for XMIT_REQ, MAX_XMIT_RANGES */
  struct rs_view_data *view; /* the last view passed down (a reference), or NULL */
  struct rs_ratelimit rl_bad;
  struct u3_stats st;
};

#define U3(p) ((struct unicast3 *)(p))

static rs_time now_of(struct unicast3 *u) { return rs_now(u->base.rt); }

static void log_bad(struct unicast3 *u, const struct rs_addr *src, const char *what) {
  u->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&u->base, RS_LOG_WARN) ||
      !ratelimit_ok(&u->rl_bad, now_of(u), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&u->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

/* ---------------------------------------------------------------------------------------------
 * Control messages: OOB|NO_FC, never kept, never retransmitted.
 */
static void send_control(struct unicast3 *u, const struct rs_addr *to, uint8_t type,
                         uint32_t conn_id, uint64_t seqno, struct rs_msg *m) {
  if (!m) m = rs_msg_new();
  if (!m) return;
  struct u3_hdr *h = rs_msg_put_header(m, &u3_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  h->conn_id = conn_id;
  h->seqno = seqno;
  m->dest = *to;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  proto_down_msg(&u->base, m);
}

static void send_ack(struct unicast3 *u, struct recv_entry *e) {
  e->acked = e->win.next - 1;
  e->ack_now = false;
  u->st.acks_sent++;
  send_control(u, &e->node.addr, U3_ACK, e->conn_id, e->acked, NULL);
}

/* XMIT_REQ payload: count (varint), then per range: skip (varint), extra (varint). The first
 * range starts at skip, each later one at the previous range's last + 1 + skip; a range covers
 * [start, start + extra]. Ranges are therefore ascending and disjoint by construction. */
static void send_xmit_req(struct unicast3 *u, struct recv_entry *e, const struct seqwin_range *rg,
                          size_t n) {
  struct rs_writer w;
  writer_init_grow(&w, 8 + n * 6);
  put_varint(&w, n);
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    put_varint(&w, i ? rg[i].first - prev - 1 : rg[i].first);
    put_varint(&w, rg[i].last - rg[i].first);
    prev = rg[i].last;
  }
  struct rs_msg *m = w.err ? NULL : rs_msg_new_copy(w.p, w.len);
  free(w.p);
  if (!m) return;
  u->st.xmit_reqs_sent++;
  send_control(u, &e->node.addr, U3_XMIT_REQ, e->conn_id, 0, m);
}

/* Requests the missing seqnos in [lo, hi] (clipped to the window); returns the last seqno
 * covered by the request (less than hi when it filled up). */
static uint64_t request_missing(struct unicast3 *u, struct recv_entry *e, uint64_t lo,
                                uint64_t hi) {
  uint64_t covered;
  size_t n = seqwin_recv_missing(&e->win, lo, hi, u->ranges, MAX_XMIT_RANGES, 0, &covered);
  if (n) send_xmit_req(u, e, u->ranges, n);
  return covered;
}

/* ---------------------------------------------------------------------------------------------
 * Entries.
 */
static struct send_entry *send_find(struct unicast3 *u, const struct rs_addr *peer) {
  return (struct send_entry *)seqwin_table_find(&u->send_table, peer);
}

static struct recv_entry *recv_find(struct unicast3 *u, const struct rs_addr *peer) {
  return (struct recv_entry *)seqwin_table_find(&u->recv_table, peer);
}

/* A new connection gets the next id: ids only grow for one sender address, which lets a
 * receiver recognise a message of an older connection as stale. */
static struct send_entry *send_create(struct unicast3 *u, const struct rs_addr *peer) {
  struct send_entry *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  e->node.addr = *peer;
  e->conn_id = ++u->last_conn_id;
  seqwin_send_init(&e->win);
  e->next_at_run = e->win.next;
  if (seqwin_table_add(&u->send_table, &e->node) != 0) {
    free(e);
    return NULL;
  }
  u->st.conns_created++;
  return e;
}

static void send_remove(struct unicast3 *u, struct send_entry *e) {
  seqwin_table_remove(&u->send_table, &e->node);
  seqwin_send_free(&e->win);
  free(e);
}

/* A receive entry that knows no connection yet (established by the first FIRST message). */
static struct recv_entry *recv_create(struct unicast3 *u, const struct rs_addr *peer) {
  struct recv_entry *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  e->node.addr = *peer;
  seqwin_recv_init(&e->win, 1, 1, 0);
  if (seqwin_table_add(&u->recv_table, &e->node) != 0) {
    free(e);
    return NULL;
  }
  return e;
}

static void recv_remove(struct unicast3 *u, struct recv_entry *e) {
  seqwin_table_remove(&u->recv_table, &e->node);
  seqwin_recv_free(&e->win);
  free(e);
}

/* Starts (or restarts) e's window at the FIRST message `seqno` of connection conn_id. */
static void recv_establish(struct unicast3 *u, struct recv_entry *e, uint32_t conn_id,
                           uint64_t seqno) {
  if (e->established)
    u->st.conns_replaced++;
  else
    u->st.conns_created++;
  seqwin_recv_free(&e->win);
  seqwin_recv_init(&e->win, seqno, (size_t)u->recv_window_size, (size_t)u->recv_window_bytes);
  /* Messages of this connection dropped while we waited for its first one are NAKed at once. */
  uint64_t seen = e->sfs_conn == conn_id ? e->sfs_highest : 0;
  e->conn_id = conn_id;
  e->established = true;
  e->highest_seen = seen > seqno ? seen : seqno;
  e->nak_high = e->nak_mark = e->acked = seqno - 1;
  e->pass_seen = e->highest_seen;
  e->ack_now = false;
  e->sfs_wanted = false;
}

static void free_send_node(struct seqwin_node *n, void *arg) {
  send_remove(arg, (struct send_entry *)n);
}
static void free_recv_node(struct seqwin_node *n, void *arg) {
  recv_remove(arg, (struct recv_entry *)n);
}

static void remove_all(struct unicast3 *u) {
  seqwin_table_each(&u->send_table, free_send_node, u);
  seqwin_table_each(&u->recv_table, free_recv_node, u);
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */

/* Sends a copy of the kept message `seqno` again; `first` marks it FIRST (the answer to
 * SEND_FIRST_SEQNO: the receiver starts its window there). */
static void retransmit(struct unicast3 *u, struct send_entry *e, uint64_t seqno, bool first) {
  struct rs_msg *kept = seqwin_send_get(&e->win, seqno);
  struct rs_msg *c = kept ? rs_msg_copy(kept) : NULL;
  if (!c) return;
  if (first) ((struct u3_hdr *)rs_msg_header(c, U3_ID))->flags |= U3_FIRST;
  u->st.xmits++;
  proto_down_msg(&u->base, c);
}

static int u3_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct unicast3 *u = U3(p);
  struct rs_addr self = proto_local_addr(p);
  if (rs_msg_is_multicast(m) || (m->flags & RS_MSG_NO_RELIABILITY) || rs_addr_eq(&m->dest, &self))
    return proto_down_msg(p, m);
  struct send_entry *e = send_find(u, &m->dest);
  if (!e) e = send_create(u, &m->dest);
  struct u3_hdr *h = e ? rs_msg_put_header(m, &u3_header) : NULL;
  if (!h) {
    rs_msg_free(m);
    return e ? RS_EINVAL : RS_ENOMEM; /* no room for our header, or no memory */
  }
  h->type = U3_DATA;
  h->conn_id = e->conn_id;
  h->seqno = e->win.next;
  h->flags = h->seqno == 1 ? U3_FIRST : 0;
  struct rs_msg *keep = rs_msg_copy(m);
  if (!keep || seqwin_send_push(&e->win, keep) != 0) {
    rs_msg_free(keep);
    rs_msg_free(m);
    return RS_ENOMEM;
  }
  e->last_active = now_of(u);
  u->st.msgs_sent++;
  /* From here the message is ours to deliver: if the layers below lose it, it is retransmitted,
   * so their verdict is not the caller's concern. */
  proto_down_msg(p, m);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Receiving data.
 */

/* A DATA message of a connection the receiver does not know and that is not marked FIRST. */
static struct recv_entry *unknown_conn(struct unicast3 *u, struct recv_entry *e,
                                       const struct rs_addr *src, const struct u3_hdr *h) {
  if (e && e->established && h->conn_id < e->conn_id) {
    u->st.stale_ignored++; /* an older connection's message, still in flight */
    return NULL;
  }
  u->st.unknown_conn_dropped++;
  if (!e) e = recv_create(u, src);
  if (!e) return NULL;
  if (e->sfs_conn != h->conn_id) {
    e->sfs_conn = h->conn_id;
    e->sfs_highest = 0;
  }
  if (h->seqno > e->sfs_highest) e->sfs_highest = h->seqno;
  e->sfs_wanted = true;
  e->last_active = now_of(u);
  return e;
}

/* The entry whose window takes this DATA message, or NULL (the message is dropped; *touched
 * receives an entry that needs its after-batch work anyway). */
static struct recv_entry *entry_for_data(struct unicast3 *u, const struct rs_addr *src,
                                         const struct u3_hdr *h, struct recv_entry **touched) {
  struct recv_entry *e = recv_find(u, src);
  *touched = NULL;
  if (e && e->established && e->conn_id == h->conn_id) return e;
  if (!(h->flags & U3_FIRST)) {
    *touched = unknown_conn(u, e, src, h);
    return NULL;
  }
  if (e && e->established && h->conn_id < e->conn_id) {
    u->st.stale_ignored++;
    return NULL;
  }
  if (!e) e = recv_create(u, src);
  if (e) recv_establish(u, e, h->conn_id, h->seqno);
  return e;
}

static void deliver_in_order(struct unicast3 *u, struct recv_entry *e, struct rs_batch *up) {
  struct rs_msg *m;
  while ((m = seqwin_recv_remove(&e->win))) {
    rs_batch_add(up, m);
    u->st.msgs_delivered++;
  }
}

/* Returns the entry whose state changed (for after_batch), or NULL. Takes m. */
static struct recv_entry *on_data(struct unicast3 *u, struct rs_msg *m, const struct u3_hdr *h,
                                  struct rs_batch *up) {
  u->st.msgs_received++;
  struct recv_entry *touched;
  struct recv_entry *e = entry_for_data(u, &m->src, h, &touched);
  if (!e) {
    rs_msg_free(m);
    return touched;
  }
  uint64_t seqno = h->seqno; /* h lives in m, which the window may take */
  e->last_active = now_of(u);
  if (seqno > e->highest_seen) e->highest_seen = seqno;
  switch (seqwin_recv_add(&e->win, seqno, m, (m->flags & RS_MSG_OOB) != 0)) {
  case SEQWIN_ADDED:
    if (seqno != e->win.next) u->st.ooo_buffered++;
    break;
  case SEQWIN_DELIVER:
    rs_batch_add(up, m);
    u->st.msgs_delivered++;
    u->st.oob_delivered++;
    break;
  case SEQWIN_DUPLICATE:
    u->st.dups_dropped++;
    e->ack_now = true;
    rs_msg_free(m);
    break;
  case SEQWIN_FULL:
  case SEQWIN_NOMEM:
    u->st.window_full_dropped++;
    rs_msg_free(m);
    break;
  }
  deliver_in_order(u, e, up);
  return e;
}

/* Re-requests the gaps that already existed at the previous pass. */
static void nak_pass(struct unicast3 *u, struct recv_entry *e) {
  if (e->nak_mark >= e->win.next) request_missing(u, e, e->win.next, e->nak_mark);
  e->nak_mark = e->nak_high;
  e->pass_seen = e->highest_seen;
}

/* After a batch from e's sender: NAK what we just learned is missing, ack if due, ask for the
 * first message of an unknown connection. */
static void after_batch(struct unicast3 *u, struct recv_entry *e) {
  if (e->established) {
    if (e->highest_seen - e->pass_seen > e->win.max_msgs / PASS_FRACTION) nak_pass(u, e);
    uint64_t done = e->win.next - 1;
    uint64_t lo = (e->nak_high > done ? e->nak_high : done) + 1;
    uint64_t end = seqwin_recv_end(&e->win);
    uint64_t hi = e->highest_seen < end ? e->highest_seen : end;
    if (lo <= hi) {
      uint64_t covered = request_missing(u, e, lo, hi);
      if (covered > e->nak_high) e->nak_high = covered;
    }
    if (e->ack_now || done - e->acked >= (uint64_t)u->ack_threshold) send_ack(u, e);
  }
  if (e->sfs_wanted && !e->sfs_sent) {
    e->sfs_sent = true;
    u->st.sfs_sent++;
    send_control(u, &e->node.addr, U3_SEND_FIRST_SEQNO, e->sfs_conn, 0, NULL);
  }
  e->sfs_wanted = false;
}

/* ---------------------------------------------------------------------------------------------
 * Receiving control messages.
 */
static void on_ack(struct unicast3 *u, const struct rs_msg *m, const struct u3_hdr *h) {
  struct send_entry *e = send_find(u, &m->src);
  if (!e || e->conn_id != h->conn_id) {
    u->st.stale_ignored++;
    return;
  }
  u->st.acks_received++;
  e->last_active = now_of(u);
  seqwin_send_purge(&e->win, h->seqno); /* an ack beyond what we sent acks what we sent */
}

/* Resends the kept messages in [first, last]; clipped to the window, so at most its size. */
static void retransmit_range(struct unicast3 *u, struct send_entry *e, uint64_t first,
                             uint64_t last) {
  if (first < e->win.low) first = e->win.low;
  if (last >= e->win.next) last = e->win.next - 1;
  for (uint64_t s = first; s <= last; s++)
    retransmit(u, e, s, false);
}

/* Decodes the ranges (see send_xmit_req) and resends what they name. Hostile input costs at
 * most one pass over the payload and one over the send window: the count is checked against
 * the bytes left, ranges ascend by construction, and the loop stops past the highest seqno
 * sent. */
static void on_xmit_req(struct unicast3 *u, const struct rs_msg *m, const struct u3_hdr *h) {
  struct send_entry *e = send_find(u, &m->src);
  if (!e || e->conn_id != h->conn_id) {
    u->st.stale_ignored++;
    return;
  }
  u->st.xmit_reqs_received++;
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  uint64_t n = get_varint(&r);
  if (!r.err && n > reader_remaining(&r) / 2) reader_fail(&r, RS_EMALFORMED);
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n && !r.err; i++) {
    uint64_t skip = get_varint(&r), extra = get_varint(&r);
    uint64_t base = i ? prev + 1 : 0;
    if (r.err || skip > SEQWIN_SEQNO_MAX - base || extra > SEQWIN_SEQNO_MAX - (base + skip)) {
      reader_fail(&r, RS_EMALFORMED);
      break;
    }
    uint64_t first = base + skip;
    prev = first + extra;
    if (first >= e->win.next) break; /* nothing we sent from here on */
    retransmit_range(u, e, first, prev);
  }
  if (r.err) log_bad(u, &m->src, "malformed XMIT_REQ ranges");
}

static void on_send_first_seqno(struct unicast3 *u, const struct rs_msg *m,
                                const struct u3_hdr *h) {
  u->st.sfs_received++;
  struct send_entry *e = send_find(u, &m->src);
  /* Another connection's question (stale), or nothing unacked: the receiver learns the start
   * from the next message we send, or from our highest resent on the xmit run. */
  if (!e || e->conn_id != h->conn_id || !seqwin_send_count(&e->win)) {
    u->st.stale_ignored++;
    return;
  }
  retransmit(u, e, e->win.low, true);
}

static void on_close(struct unicast3 *u, const struct rs_msg *m, const struct u3_hdr *h) {
  u->st.closes_received++;
  struct recv_entry *e = recv_find(u, &m->src);
  if (!e || (e->established ? e->conn_id : e->sfs_conn) != h->conn_id) {
    u->st.stale_ignored++;
    return;
  }
  recv_remove(u, e);
}

/* One message of a unicast batch; returns the receive entry it changed, or NULL. Takes m. */
static struct recv_entry *on_msg(struct unicast3 *u, struct rs_msg *m, struct rs_batch *up) {
  const struct u3_hdr *h = rs_msg_header(m, U3_ID);
  if (!h) {
    rs_batch_add(up, m); /* not ours: NO_RELIABILITY, or a stack without UNICAST3 */
    return NULL;
  }
  switch (h->type) {
  case U3_DATA:
    if (h->seqno == 0 || h->seqno > SEQWIN_SEQNO_MAX) break;
    return on_data(u, m, h, up);
  case U3_ACK:
    on_ack(u, m, h);
    rs_msg_free(m);
    return NULL;
  case U3_XMIT_REQ:
    on_xmit_req(u, m, h);
    rs_msg_free(m);
    return NULL;
  case U3_SEND_FIRST_SEQNO:
    on_send_first_seqno(u, m, h);
    rs_msg_free(m);
    return NULL;
  case U3_CLOSE:
    on_close(u, m, h);
    rs_msg_free(m);
    return NULL;
  default: break;
  }
  log_bad(u, &m->src, "bad UNICAST3 header");
  rs_msg_free(m);
  return NULL;
}

/* A batch has one sender: at most one receive entry changes, and its acks and NAKs go out once
 * after the whole batch. The delivered messages go up as one batch. */
static void u3_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct unicast3 *u = U3(p);
  if (rs_addr_is_null(&b->dest)) {
    proto_up_batch(p, b); /* multicasts: NAKACK2's business */
    return;
  }
  struct rs_batch up;
  rs_batch_init(&up);
  up.src = b->src;
  up.dest = b->dest;
  struct recv_entry *touched = NULL;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct u3_hdr *h = rs_msg_header(m, U3_ID);
    if (h && h->type == U3_CLOSE && touched) {
      after_batch(u, touched); /* CLOSE may free the entry */
      touched = NULL;
    }
    struct recv_entry *e = on_msg(u, m, &up);
    if (e && touched && e != touched) after_batch(u, touched);
    if (e) touched = e;
  }
  if (touched) after_batch(u, touched);
  if (up.n) proto_up_batch(p, &up);
}

/* ---------------------------------------------------------------------------------------------
 * The xmit run, every xmit_interval.
 */
static void recv_run(struct seqwin_node *n, void *arg) {
  struct unicast3 *u = arg;
  struct recv_entry *e = (struct recv_entry *)n;
  if (u->conn_expiry_timeout && now_of(u) - e->last_active >= u->conn_expiry_timeout) {
    /* Our last ack first: what we delivered must not come back as the answer to a later
     * SEND_FIRST_SEQNO (the sender starts the new window at its lowest unacked message). */
    if (e->established && e->win.next - 1 > e->acked) send_ack(u, e);
    u->st.conns_expired++;
    recv_remove(u, e);
    return;
  }
  /* SEND_FIRST_SEQNO is not repeated by the timer: if it or its answer was lost, the sender's
   * resend of its highest message (or its next message) reaches us and asks anew. */
  e->sfs_sent = false;
  if (!e->established) return;
  nak_pass(u, e);
  if (e->win.next - 1 > e->acked) send_ack(u, e);
}

static void send_run(struct seqwin_node *n, void *arg) {
  struct unicast3 *u = arg;
  struct send_entry *e = (struct send_entry *)n;
  if (seqwin_send_count(&e->win)) {
    /* Unacked, and nothing sent for a whole interval: resend the highest, so that a receiver
     * that lost it (or whose ack was lost) hears of it and acks. */
    if (e->win.next == e->next_at_run) {
      u->st.resends_highest++;
      retransmit(u, e, e->win.next - 1, false);
    }
  } else if (u->conn_expiry_timeout && now_of(u) - e->last_active >= u->conn_expiry_timeout) {
    u->st.conns_expired++;
    u->st.closes_sent++;
    send_control(u, &e->node.addr, U3_CLOSE, e->conn_id, 0, NULL);
    send_remove(u, e);
    return;
  }
  e->next_at_run = e->win.next;
}

static void xmit_run(struct rs_timer *t) {
  struct unicast3 *u = (struct unicast3 *)((char *)t - offsetof(struct unicast3, xmit_timer));
  seqwin_table_each(&u->recv_table, recv_run, u);
  seqwin_table_each(&u->send_table, send_run, u);
}

/* ---------------------------------------------------------------------------------------------
 * Views: the members that left lose their connections.
 */
static void view_change(struct unicast3 *u, const struct rs_view_data *v) {
  struct rs_view_data *old = u->view;
  u->view = view_ref((struct rs_view_data *)v);
  for (size_t i = 0; old && i < old->n; i++) {
    const struct rs_addr *a = &old->members[i];
    if (view_contains(v, a)) continue;
    struct send_entry *s = send_find(u, a);
    struct recv_entry *r = recv_find(u, a);
    if (s) send_remove(u, s);
    if (r) recv_remove(u, r);
    if (s || r) u->st.conns_removed_by_view++;
  }
  view_unref(old);
}

static int u3_down_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE && ev->u.view) view_change(U3(p), ev->u.view);
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int u3_init(struct rs_protocol *p) {
  struct unicast3 *u = U3(p);
  seqwin_table_init(&u->send_table);
  seqwin_table_init(&u->recv_table);
  rs_timer_init(&u->xmit_timer, p->rt, xmit_run);
  u->ranges = malloc(MAX_XMIT_RANGES * sizeof(*u->ranges));
  if (!u->ranges) return proto_error(p, "out of memory");
  return 0;
}

static int u3_start(struct rs_protocol *p) {
  struct unicast3 *u = U3(p);
  rs_timer_start(&u->xmit_timer, u->xmit_interval, u->xmit_interval);
  return 0;
}

/* A stopped stack forgets every connection: it comes back with a new address. */
static void u3_stop(struct rs_protocol *p) {
  struct unicast3 *u = U3(p);
  rs_timer_stop(&u->xmit_timer);
  remove_all(u);
  view_unref(u->view);
  u->view = NULL;
}

static void u3_destroy(struct rs_protocol *p) {
  struct unicast3 *u = U3(p);
  u3_stop(p);
  seqwin_table_free(&u->send_table);
  seqwin_table_free(&u->recv_table);
  free(u->ranges);
  u->ranges = NULL;
}

struct totals {
  uint64_t unacked, held, held_bytes;
};

static void add_send(struct seqwin_node *n, void *arg) {
  ((struct totals *)arg)->unacked += seqwin_send_count(&((struct send_entry *)n)->win);
}

static void add_recv(struct seqwin_node *n, void *arg) {
  struct totals *t = arg;
  t->held += ((struct recv_entry *)n)->win.held;
  t->held_bytes += ((struct recv_entry *)n)->win.bytes;
}

static void u3_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct unicast3 *u = U3(p);
  struct totals t = {0};
  seqwin_table_each(&u->send_table, add_send, &t);
  seqwin_table_each(&u->recv_table, add_recv, &t);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"msgs_sent", u->st.msgs_sent},
      {"msgs_received", u->st.msgs_received},
      {"msgs_delivered", u->st.msgs_delivered},
      {"oob_delivered", u->st.oob_delivered},
      {"xmits", u->st.xmits},
      {"resends_highest", u->st.resends_highest},
      {"xmit_reqs_sent", u->st.xmit_reqs_sent},
      {"xmit_reqs_received", u->st.xmit_reqs_received},
      {"acks_sent", u->st.acks_sent},
      {"acks_received", u->st.acks_received},
      {"dups_dropped", u->st.dups_dropped},
      {"ooo_buffered", u->st.ooo_buffered},
      {"window_full_dropped", u->st.window_full_dropped},
      {"unknown_conn_dropped", u->st.unknown_conn_dropped},
      {"send_first_seqno_sent", u->st.sfs_sent},
      {"send_first_seqno_received", u->st.sfs_received},
      {"closes_sent", u->st.closes_sent},
      {"closes_received", u->st.closes_received},
      {"conns_created", u->st.conns_created},
      {"conns_replaced", u->st.conns_replaced},
      {"conns_expired", u->st.conns_expired},
      {"conns_removed_by_view", u->st.conns_removed_by_view},
      {"stale_ignored", u->st.stale_ignored},
      {"bad_dropped", u->st.bad_dropped},
      {"send_conns", u->send_table.n},
      {"recv_conns", u->recv_table.n},
      {"unacked", t.unacked},
      {"held", t.held},
      {"held_bytes", t.held_bytes},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr u3_attrs[] = {
    {"xmit_interval", RS_ATTR_DURATION, offsetof(struct unicast3, xmit_interval), "500ms", 1,
     3600000,
     "period of the retransmission run: delayed acks, NAKs for old gaps, resend of the highest "
     "unacked message, expiry",
     0, NULL},
    {"conn_expiry_timeout", RS_ATTR_DURATION, offsetof(struct unicast3, conn_expiry_timeout), "2m",
     0, 0, "connections idle this long are closed (a sender's only once all is acked); 0: never", 0,
     NULL},
    {"ack_threshold", RS_ATTR_INT, offsetof(struct unicast3, ack_threshold), "100", 1, 1e9,
     "messages delivered from a sender before it is acked at once; fewer are acked on the next "
     "xmit run",
     0, NULL},
    {"recv_window_size", RS_ATTR_INT, offsetof(struct unicast3, recv_window_size), "8192", 1,
     16777216,
     "messages held per sender beyond the next one in order; later ones are dropped and "
     "retransmitted",
     0, NULL},
    {"recv_window_bytes", RS_ATTR_SIZE, offsetof(struct unicast3, recv_window_bytes), "10M", 0, 0,
     "payload bytes held per sender out of order; more is dropped and retransmitted", 0, NULL},
    IGNORED("conn_close_timeout",
            "closing is immediate: a CLOSE is sent when a connection expires"),
    IGNORED("xmit_table_num_rows", "windows grow as needed within recv_window_size"),
    IGNORED("xmit_table_msgs_per_row", "windows grow as needed within recv_window_size"),
    IGNORED("xmit_table_resize_factor", "windows double as needed"),
    IGNORED("xmit_table_max_compaction_time", "windows free memory as they drain"),
    IGNORED("max_xmit_req_size", "an XMIT_REQ never names more than recv_window_size seqnos"),
    IGNORED("sync_min_interval", "SEND_FIRST_SEQNO is sent at most once per xmit_interval"),
    IGNORED("log_not_found_msgs", "drops are counted in stats and logged rate-limited"),
    IGNORED("max_batch_size", "what a received batch makes deliverable goes up as one batch"),
    IGNORED("reuse_message_batches", "no batch objects are allocated"),
    IGNORED("loopback", "messages to ourselves always bypass UNICAST3"),
    IGNORED("xmits_enabled", "deprecated in JGroups; retransmission is always on"),
    IGNORED("ack_batches_immediately", "see ack_threshold"),
    IGNORED("max_retransmit_time", "unacked messages are kept until acked or the member leaves"),
    RS_ATTR_END,
};

const struct rs_protocol_ops unicast3_protocol = {
    .name = "UNICAST3",
    .id = U3_ID,
    .size = sizeof(struct unicast3),
    .description =
        "reliable FIFO unicast per pair of members: acks, retransmission, connection ids, expiry",
    .attrs = u3_attrs,
    .header = &u3_header,
    .init = u3_init,
    .start = u3_start,
    .stop = u3_stop,
    .destroy = u3_destroy,
    .down_msg = u3_down_msg,
    .up_batch = u3_up_batch,
    .down_event = u3_down_event,
    .stats = u3_stats,
};

/* Credit-based flow control, the logic UFC and MFC share: credits, queues, REPLENISH, requests. */
#include "protocols/flow_control.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "stack/view.h"

/*
 * The model (JGroups' FlowControl, UFC and MFC, reworked for a loop that never blocks):
 *
 * - A sender may have at most max_credits payload bytes outstanding towards each receiver:
 *   UFC counts per destination, MFC per member of the view, and a multicast needs credit from
 *   every member, so the group's credit is the smallest one. Only the messages a protocol governs
 *   count (UFC: unicasts, MFC: multicasts), and as in JGroups not those flagged NO_FC nor those
 *   with an empty payload; OOB messages are governed like any other (JGroups does the same: OOB
 *   changes delivery order, not memory use).
 * - JGroups blocks the sending thread until credit comes. Here a message that does not fit waits
 *   in a FIFO queue of its flow, and while any queue holds a message the protocol holds back
 *   pressure (proto_set_congested): the channel stops passing messages down and application
 *   threads block in rs_channel_send once its queue is full. So a queue holds at most what one
 *   call down brings after credit ran out (one message, or FRAG4's fragments of one), plus what
 *   protocols above send on their own. A message to another destination that has credit still
 *   goes at once; one behind a queued message of its own flow waits its turn (FIFO).
 * - A receiver counts, per sender, the bytes it has passed up. Like JGroups it reports once the
 *   sender's remaining credit, as far as it knows, falls to min_credits (max_credits times
 *   min_threshold unless set), i.e. after max_credits - min_credits new bytes. Counting after
 *   passing up is what ties a sender to the receiver's pace: a receiver whose loop falls behind
 *   passes up late, reports late, and the sender waits.
 *
 * Where we differ from JGroups, and why:
 *
 * - Counts are cumulative. REPLENISH carries the total number of bytes the receiver has passed up
 *   from the sender, not the increment since the last one, so a lost, duplicated or reordered
 *   REPLENISH costs nothing: the next one says it all again. The sender keeps per receiver the
 *   highest total seen and the offset (`base`) between its own byte count and the receiver's;
 *   it may send while sent + length <= base + seen + max_credits.
 * - A sender blocked for max_block_time sends CREDIT_REQUEST carrying its own byte count S, as
 *   a regular (not OOB) message, so it reaches the receiver behind every message sent before it;
 *   MFC multicasts it, so NAKACK2's per-sender order puts it behind the multicasts, which a
 *   unicast through UNICAST3 would not guarantee. When the receiver handles it, it has passed up
 *   everything sent before it, so its count C at that moment corresponds to the sender's S: it
 *   answers CREDIT_RESPONSE(C, S) and the sender sets base = S - C. JGroups' receiver grants
 *   whatever the sender says it is owed, which lets a sender run past a receiver that is merely
 *   slow; ours grants exactly what was consumed, which recovers lost REPLENISHes and re-aligns
 *   both counts after anything that made them disagree (a receiver that dropped its entry on a
 *   view change and counts from 0 again, a sender that re-created its flow, messages lost for
 *   good below us). The original JGroups rationale for a non-OOB request is the same: a receiver
 *   that cannot process regular messages is exactly the one the sender must wait for.
 * - A REPLENISH claiming more than we ever sent (the counts disagree, or a forged message) is
 *   believed only up to what we sent, so it opens one window at most, and it triggers a
 *   CREDIT_REQUEST to re-align the counts, at most once per max_block_time (once a second when
 *   that is 0). A CREDIT_RESPONSE is likewise taken only about what we sent.
 * - Messages to ourselves are not governed (UFC) and our own multicasts do not take credit from
 *   us (MFC): they are looped back by our own transport and handled by our own loop, in the order
 *   sent, so they cannot pile up in another member's memory. JGroups counts itself as a member.
 * - Once a view is known, UFC governs unicasts to its members only, as JGroups does, so a member
 *   that left (perhaps crashed) can never hold the channel back. Before the first view (or in a
 *   stack without a membership protocol) it governs every destination, creating its flow on the
 *   first message to it. A receiver counts every sender that sends it governed messages (its
 *   view may lag the sender's) and forgets those a view no longer has. Tables hold at most
 *   RS_VIEW_MAX_MEMBERS entries (beyond that, messages bypass flow control and are counted in
 *   `bypassed_table_full`).
 * - A message longer than the credit left is sent anyway once less than max_credits -
 *   min_credits is outstanding: a receiver that consumed everything does not report the rest, so
 *   it would otherwise wait for nothing. JGroups blocks it until a CREDIT_REQUEST is answered (it
 *   warns when frag_size >= min_credits for that reason), or for ever when it exceeds
 *   max_credits. Init still refuses a FRAG4 above whose frag_size is not below max_credits.
 * - MFC: a member that joins starts with a full window from our count at that moment (JGroups:
 *   max_credits); a member that leaves no longer holds anyone back, and a UFC destination that
 *   leaves the view has its queued messages sent down at once (JGroups unblocks its sender).
 *
 * Control messages: REPLENISH and CREDIT_RESPONSE are OOB|NO_FC; CREDIT_REQUEST is NO_FC only
 * (see above). All have an empty payload: the counts are in the header. NO_FC makes the other
 * flow-control protocol (UFC under MFC) pass them untouched.
 */

#define FC_MAX_PEERS RS_VIEW_MAX_MEMBERS
#define RL_INTERVAL (5 * RS_SEC)

#define FC(p) ((struct fc *)(p))

/* ---------------------------------------------------------------------------------------------
 * The header. Byte layout (docs/wire-format.md, UFC / MFC):
 *
 *   REPLENISH (1):        type u8 | consumed varint
 *   CREDIT_REQUEST (2):   type u8 | sent varint
 *   CREDIT_RESPONSE (3):  type u8 | consumed varint | sent varint (the request's, echoed)
 *
 * Counts are at most 2^62; another type or a larger count makes the header malformed.
 */
static bool has_consumed(uint8_t type) { return type == FC_REPLENISH || type == FC_CREDIT_RESPONSE; }
static bool has_sent(uint8_t type) { return type == FC_CREDIT_REQUEST || type == FC_CREDIT_RESPONSE; }

size_t fc_hdr_wire_size(const void *v) {
  const struct fc_hdr *h = v;
  size_t n = 1;
  if (has_consumed(h->type)) n += varint_size(h->consumed);
  if (has_sent(h->type)) n += varint_size(h->sent);
  return n;
}

void fc_hdr_write(const void *v, struct rs_writer *w) {
  const struct fc_hdr *h = v;
  put_u8(w, h->type);
  if (has_consumed(h->type)) put_varint(w, h->consumed);
  if (has_sent(h->type)) put_varint(w, h->sent);
}

void fc_hdr_read(void *v, struct rs_reader *r) {
  struct fc_hdr *h = v;
  *h = (struct fc_hdr){0};
  h->type = get_u8(r);
  if (h->type < FC_REPLENISH || h->type > FC_CREDIT_RESPONSE) reader_fail(r, RS_EMALFORMED);
  if (has_consumed(h->type)) h->consumed = get_varint(r);
  if (has_sent(h->type)) h->sent = get_varint(r);
  if (h->consumed > FC_COUNT_MAX || h->sent > FC_COUNT_MAX) reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct fc_hdr){0};
}

int fc_hdr_print(const void *v, char *buf, size_t len) {
  const struct fc_hdr *h = v;
  switch (h->type) {
  case FC_REPLENISH: return snprintf(buf, len, "REPLENISH consumed=%" PRIu64, h->consumed);
  case FC_CREDIT_REQUEST: return snprintf(buf, len, "CREDIT_REQUEST sent=%" PRIu64, h->sent);
  case FC_CREDIT_RESPONSE:
    return snprintf(buf, len, "CREDIT_RESPONSE consumed=%" PRIu64 " sent=%" PRIu64, h->consumed,
                    h->sent);
  default: return snprintf(buf, len, "? type=%u", h->type);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Helpers.
 */
static rs_time now_of(const struct fc *fc) { return rs_now(fc->base.rt); }

static bool is_self(const struct fc *fc, const struct rs_addr *a) {
  struct rs_addr self = proto_local_addr(&fc->base);
  return rs_addr_eq(a, &self);
}

static void log_bad(struct fc *fc, const struct rs_addr *src, const char *what) {
  fc->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&fc->base, RS_LOG_WARN) ||
      !ratelimit_ok(&fc->rl_bad, now_of(fc), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&fc->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

/* Sends a control message (empty payload) to `to`, or to the group when `to` is NULL. */
static void send_control(struct fc *fc, const struct rs_addr *to, uint8_t type, uint64_t consumed,
                         uint64_t sent, uint16_t flags) {
  struct rs_msg *m = rs_msg_new();
  struct fc_hdr *h = m ? rs_msg_put_header(m, fc->base.ops->header) : NULL;
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  h->consumed = consumed;
  h->sent = sent;
  if (to) m->dest = *to;
  m->flags = flags;
  proto_down_msg(&fc->base, m);
}

/* Holds back pressure while any flow has a queued message, and releases it when none has. */
static void update_congestion(struct fc *fc) {
  bool want = fc->n_queued > 0;
  if (want == fc->congested) return;
  fc->congested = want;
  proto_set_congested(&fc->base, want);
}

/* ---------------------------------------------------------------------------------------------
 * Sender side: credit.
 */
static void recompute_min(struct fc_flow *f) {
  int64_t m = INT64_MAX;
  for (size_t i = 0; i < f->n_credits; i++) {
    int64_t v = f->credits[i].base + (int64_t)f->credits[i].seen;
    if (v < m) m = v;
  }
  f->min_limit = m;
}

/* Bytes the flow may still send: the smallest receiver's allowance, never more than one window
 * (a receiver that reports more than we sent cannot buy more). */
static int64_t available(const struct fc *fc, const struct fc_flow *f) {
  int64_t max = (int64_t)fc->max_credits;
  if (f->n_credits == 0) return max;
  int64_t a = f->min_limit + max - (int64_t)f->sent;
  return a < max ? a : max;
}

static bool fits(const struct fc *fc, const struct fc_flow *f, size_t len) {
  if (f->n_credits == 0) return true; /* MFC without other members: nobody to wait for */
  int64_t a = available(fc, f);
  if (a >= 0 && len <= (uint64_t)a) return true;
  /* Longer than the credit left: it goes anyway once less than a REPLENISH's worth is
   * outstanding. A receiver that has consumed everything leaves that much unreported, so waiting
   * for more would wait for a REPLENISH that is not coming; the receiver then holds at most
   * max_credits plus this one message. */
  return a > (int64_t)fc->min_credits;
}

static int send_now(struct fc *fc, struct fc_flow *f, struct rs_msg *m) {
  f->sent += m->len;
  fc->st.msgs_sent++;
  fc->st.bytes_sent += m->len;
  return proto_down_msg(&fc->base, m);
}

/* ---------------------------------------------------------------------------------------------
 * Sender side: the queue, blocking and CREDIT_REQUEST.
 */
static void send_request(struct fc *fc, struct fc_flow *f) {
  f->requested = true;
  f->last_request = now_of(fc);
  fc->st.requests_sent++;
  send_control(fc, fc->multicast ? NULL : &f->dest, FC_CREDIT_REQUEST, 0, f->sent, RS_MSG_NO_FC);
}

/* A request to re-align the counts, at most once per max_block_time (a second when that is 0). */
static void request_resync(struct fc *fc, struct fc_flow *f) {
  rs_time every = fc->max_block_time ? fc->max_block_time : RS_SEC;
  if (f->requested && now_of(fc) - f->last_request < every) return;
  fc->st.resyncs++;
  send_request(fc, f);
}

static void block_timer(struct rs_timer *t) {
  struct fc_flow *f = (struct fc_flow *)((char *)t - offsetof(struct fc_flow, timer));
  if (!f->head) {
    rs_timer_stop(t);
    return;
  }
  send_request(f->fc, f);
}

static void block_start(struct fc *fc, struct fc_flow *f) {
  f->blocked_since = now_of(fc);
  fc->st.blockings++;
  if (fc->max_block_time) rs_timer_start(&f->timer, fc->max_block_time, fc->max_block_time);
}

static void block_end(struct fc *fc, struct fc_flow *f) {
  fc->st.blocked_ns += now_of(fc) - f->blocked_since;
  rs_timer_stop(&f->timer);
}

static void enqueue(struct fc *fc, struct fc_flow *f, struct rs_msg *m) {
  m->next = NULL;
  if (f->tail) f->tail->next = m;
  else f->head = m;
  f->tail = m;
  f->n_queued++;
  f->queued_bytes += m->len;
  fc->n_queued++;
  fc->queued_bytes += m->len;
  fc->st.msgs_queued++;
  if (fc->n_queued > fc->st.queued_max) fc->st.queued_max = fc->n_queued;
  if (f->n_queued == 1) block_start(fc, f);
  update_congestion(fc);
}

static struct rs_msg *dequeue(struct fc *fc, struct fc_flow *f) {
  struct rs_msg *m = f->head;
  f->head = m->next;
  if (!f->head) f->tail = NULL;
  m->next = NULL;
  f->n_queued--;
  f->queued_bytes -= m->len;
  fc->n_queued--;
  fc->queued_bytes -= m->len;
  return m;
}

/* Sends queued messages while they fit (all of them when `force`: the flow is going away). */
static void drain(struct fc *fc, struct fc_flow *f, bool force) {
  if (!f->head) return;
  while (f->head && (force || fits(fc, f, f->head->len)))
    send_now(fc, f, dequeue(fc, f));
  if (!f->head) block_end(fc, f);
  update_congestion(fc);
}

/* ---------------------------------------------------------------------------------------------
 * Sender side: flows.
 */
static struct fc_flow *flow_new(struct fc *fc, const struct rs_addr *dest) {
  struct fc_flow *f = calloc(1, sizeof(*f));
  if (!f) return NULL;
  f->fc = fc;
  f->dest = *dest;
  rs_timer_init(&f->timer, fc->base.rt, block_timer);
  if (!fc->multicast) {
    f->one.addr = *dest;
    f->credits = &f->one;
    f->n_credits = 1;
  }
  recompute_min(f);
  return f;
}

static void flow_free(struct fc *fc, struct fc_flow *f) {
  if (f->head) block_end(fc, f);
  while (f->head)
    rs_msg_free(dequeue(fc, f));
  rs_timer_stop(&f->timer);
  if (f->credits != &f->one) free(f->credits);
  free(f);
}

static struct fc_flow *flow_find(struct fc *fc, const struct rs_addr *dest) {
  if (fc->last_flow < fc->n_flows && rs_addr_eq(&fc->flows[fc->last_flow]->dest, dest))
    return fc->flows[fc->last_flow];
  for (size_t i = 0; i < fc->n_flows; i++)
    if (rs_addr_eq(&fc->flows[i]->dest, dest)) {
      fc->last_flow = i;
      return fc->flows[i];
    }
  return NULL;
}

static struct fc_flow *flow_add(struct fc *fc, const struct rs_addr *dest) {
  if (fc->n_flows == fc->cap_flows) {
    size_t cap = fc->cap_flows ? fc->cap_flows * 2 : 8;
    struct fc_flow **v = realloc(fc->flows, cap * sizeof(*v));
    if (!v) return NULL;
    fc->flows = v;
    fc->cap_flows = cap;
  }
  struct fc_flow *f = flow_new(fc, dest);
  if (f) fc->flows[fc->n_flows++] = f;
  return f;
}

/* The flow a governed message belongs to, or NULL when it bypasses flow control. */
static struct fc_flow *flow_for(struct fc *fc, const struct rs_msg *m) {
  if (fc->multicast) return fc->flows[0];
  if (is_self(fc, &m->dest)) return NULL;
  struct fc_flow *f = flow_find(fc, &m->dest);
  if (f) return f;
  if (fc->view && !view_contains(fc->view, &m->dest)) return NULL; /* no member */
  if (fc->n_flows >= FC_MAX_PEERS || !(f = flow_add(fc, &m->dest))) {
    fc->st.bypassed_table_full++;
    return NULL;
  }
  return f;
}

/* The credit `src` gives us, and its flow; NULL when we send nothing governed to it. */
static struct fc_credit *credit_of(struct fc *fc, const struct rs_addr *src, struct fc_flow **fp) {
  struct fc_flow *f = fc->multicast ? fc->flows[0] : flow_find(fc, src);
  *fp = f;
  if (!f) return NULL;
  for (size_t i = 0; i < f->n_credits; i++)
    if (rs_addr_eq(&f->credits[i].addr, src)) return &f->credits[i];
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Sender side: what receivers tell us.
 */
static void on_replenish(struct fc *fc, const struct rs_addr *src, uint64_t consumed) {
  struct fc_flow *f;
  struct fc_credit *c = credit_of(fc, src, &f);
  if (!c) {
    fc->st.stale_ignored++;
    return;
  }
  fc->st.replenish_received++;
  /* More than we sent: the counts disagree (or the message lies). Believe no more than what we
   * sent, which opens one window at most, and re-align the counts. */
  int64_t room = (int64_t)f->sent - c->base;
  if (room < 0) room = 0;
  if (consumed > (uint64_t)room) {
    consumed = (uint64_t)room;
    request_resync(fc, f);
  }
  if (consumed <= c->seen) return; /* an older report, overtaken */
  c->seen = consumed;
  recompute_min(f);
  drain(fc, f, false);
}

static void on_response(struct fc *fc, const struct rs_addr *src, uint64_t consumed,
                        uint64_t sent) {
  struct fc_flow *f;
  struct fc_credit *c = credit_of(fc, src, &f);
  /* An answer to an older request than one already taken, or about more than we sent. */
  if (!c || sent > f->sent || sent < c->sync_sent) {
    fc->st.stale_ignored++;
    return;
  }
  fc->st.responses_received++;
  c->sync_sent = sent;
  c->base = (int64_t)sent - (int64_t)consumed;
  c->seen = consumed;
  recompute_min(f);
  drain(fc, f, false);
}

/* ---------------------------------------------------------------------------------------------
 * Receiver side.
 */
static struct fc_received *recv_find(struct fc *fc, const struct rs_addr *src, bool create) {
  if (fc->last_recv < fc->n_recv && rs_addr_eq(&fc->recv[fc->last_recv].addr, src))
    return &fc->recv[fc->last_recv];
  for (size_t i = 0; i < fc->n_recv; i++)
    if (rs_addr_eq(&fc->recv[i].addr, src)) {
      fc->last_recv = i;
      return &fc->recv[i];
    }
  if (!create || fc->n_recv >= FC_MAX_PEERS) return NULL;
  if (fc->n_recv == fc->cap_recv) {
    size_t cap = fc->cap_recv ? fc->cap_recv * 2 : 8;
    struct fc_received *v = realloc(fc->recv, cap * sizeof(*v));
    if (!v) return NULL;
    fc->recv = v;
    fc->cap_recv = cap;
  }
  fc->last_recv = fc->n_recv;
  fc->recv[fc->n_recv] = (struct fc_received){.addr = *src};
  return &fc->recv[fc->n_recv++];
}

/* After passing up `bytes` governed bytes from src: report once the sender may be down to
 * min_credits. */
static void account(struct fc *fc, const struct rs_addr *src, uint64_t bytes) {
  if (is_self(fc, src)) return;
  struct fc_received *r = recv_find(fc, src, true);
  if (!r) {
    fc->st.bypassed_table_full++;
    return;
  }
  r->consumed += bytes;
  if (r->consumed - r->reported < fc->replenish_at) return;
  r->reported = r->consumed;
  fc->st.replenish_sent++;
  send_control(fc, src, FC_REPLENISH, r->consumed, 0, RS_MSG_OOB | RS_MSG_NO_FC);
}

/* A blocked sender asks: everything it sent before the request has been passed up by now (the
 * request travels behind it), so our count is the one that matches its `sent`. */
static void on_request(struct fc *fc, const struct rs_addr *src, uint64_t sent) {
  if (is_self(fc, src)) return; /* our own multicast request, looped back */
  fc->st.requests_received++;
  struct fc_received *r = recv_find(fc, src, true);
  uint64_t consumed = r ? r->consumed : 0;
  if (r) r->reported = consumed;
  fc->st.responses_sent++;
  send_control(fc, src, FC_CREDIT_RESPONSE, consumed, sent, RS_MSG_OOB | RS_MSG_NO_FC);
}

static void on_control(struct fc *fc, const struct rs_msg *m, const struct fc_hdr *h) {
  if (h->consumed > FC_COUNT_MAX || h->sent > FC_COUNT_MAX || rs_addr_is_null(&m->src)) {
    log_bad(fc, &m->src, "count out of range");
    return;
  }
  switch (h->type) {
  case FC_REPLENISH: on_replenish(fc, &m->src, h->consumed); break;
  case FC_CREDIT_REQUEST: on_request(fc, &m->src, h->sent); break;
  case FC_CREDIT_RESPONSE: on_response(fc, &m->src, h->consumed, h->sent); break;
  default: log_bad(fc, &m->src, "unknown flow control message type"); break;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Views: members that left no longer count, on either side; MFC learns its members.
 */
static void prune_received(struct fc *fc, const struct rs_view_data *v) {
  size_t kept = 0;
  for (size_t i = 0; i < fc->n_recv; i++)
    if (view_contains(v, &fc->recv[i].addr)) fc->recv[kept++] = fc->recv[i];
  fc->n_recv = kept;
  fc->last_recv = 0;
}

/* UFC: a destination that left is dropped; what waited for it goes down now (as JGroups wakes a
 * sender blocked on a member that left), for the layers below to deliver or drop. */
static void prune_flows(struct fc *fc, const struct rs_view_data *v) {
  size_t kept = 0;
  for (size_t i = 0; i < fc->n_flows; i++) {
    struct fc_flow *f = fc->flows[i];
    if (view_contains(v, &f->dest)) {
      fc->flows[kept++] = f;
      continue;
    }
    fc->st.unblocked_by_view += f->n_queued;
    drain(fc, f, true);
    flow_free(fc, f);
  }
  fc->n_flows = kept;
  fc->last_flow = 0;
  update_congestion(fc);
}

/* MFC: credits of members that stay are kept, new members start with a full window from our
 * count now, members that left are forgotten (and stop holding the group back). */
static void set_members(struct fc *fc, const struct rs_view_data *v) {
  struct fc_flow *f = fc->flows[0];
  struct fc_credit *nc = v->n ? calloc(v->n, sizeof(*nc)) : NULL;
  if (v->n && !nc) {
    PLOG(&fc->base, ERROR, "out of memory: view not applied");
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < v->n; i++) {
    if (is_self(fc, &v->members[i])) continue;
    struct fc_flow *unused;
    struct fc_credit *old = credit_of(fc, &v->members[i], &unused);
    nc[n++] = old ? *old
                  : (struct fc_credit){.addr = v->members[i], .base = (int64_t)f->sent,
                                       .sync_sent = f->sent};
  }
  size_t queued = f->n_queued;
  free(f->credits);
  f->credits = nc;
  f->n_credits = n;
  f->cap_credits = v->n;
  recompute_min(f);
  drain(fc, f, false);
  fc->st.unblocked_by_view += queued - f->n_queued;
}

static void on_view(struct fc *fc, const struct rs_view_data *v) {
  if (!v || v == fc->view) return; /* the same view up and down */
  view_unref(fc->view);
  /* Views are immutable and refcounted: keeping one is taking a reference. */
  fc->view = view_ref((struct rs_view_data *)v);
  prune_received(fc, v);
  if (fc->multicast)
    set_members(fc, v);
  else
    prune_flows(fc, v);
}

/* ---------------------------------------------------------------------------------------------
 * Handlers.
 */
int fc_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct fc *fc = FC(p);
  if ((m->flags & RS_MSG_NO_FC) || m->len == 0 || rs_msg_is_multicast(m) != fc->multicast)
    return proto_down_msg(p, m);
  struct fc_flow *f = flow_for(fc, m);
  if (!f) return proto_down_msg(p, m);
  if (!f->head && fits(fc, f, m->len)) return send_now(fc, f, m);
  enqueue(fc, f, m);
  return 0;
}

/* Control messages of ours are consumed here; the rest goes up as one batch, and then the
 * governed bytes are counted (after passing up, as JGroups does). A batch has one sender. */
void fc_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct fc *fc = FC(p);
  struct rs_batch up;
  rs_batch_init(&up);
  up.src = b->src;
  up.dest = b->dest;
  uint64_t bytes = 0;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct fc_hdr *h = rs_msg_header(m, p->ops->id);
    if (h) {
      on_control(fc, m, h);
      rs_msg_free(m);
      continue;
    }
    if (!(m->flags & RS_MSG_NO_FC) && rs_msg_is_multicast(m) == fc->multicast) bytes += m->len;
    rs_batch_add(&up, m);
  }
  if (up.n) proto_up_batch(p, &up);
  if (bytes) account(fc, &b->src, bytes);
}

int fc_down_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE) on_view(FC(p), ev->u.view);
  return proto_down_event(p, ev);
}

int fc_up_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE) on_view(FC(p), ev->u.view);
  return proto_up_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle.
 */

/* FRAG4 above us cuts messages to frag_size: a fragment of a whole window or more defeats flow
 * control (each one goes alone, beyond the window), so that configuration is refused. JGroups
 * only warns, already from frag_size >= min_credits, where its senders may block until a credit
 * request is answered; ours send such a fragment without waiting (see fits()). */
static int check_frag_size(struct fc *fc) {
  const struct rs_protocol_ops *frag_ops = registry_find("FRAG4");
  struct rs_protocol *frag = fc->base.up;
  while (frag && frag->ops != frag_ops)
    frag = frag->up;
  const struct rs_attr *a = frag ? attr_find(frag->ops, "frag_size") : NULL;
  if (!a || a->type != RS_ATTR_SIZE) return 0;
  uint64_t frag_size = *(const uint64_t *)((const char *)frag + a->offset);
  if (frag_size >= fc->max_credits)
    return proto_error(&fc->base, "max_credits (%" PRIu64 ") must exceed %s's frag_size (%" PRIu64 ")",
                       fc->max_credits, frag->ops->name, frag_size);
  return 0;
}

int fc_init(struct rs_protocol *p, bool multicast) {
  struct fc *fc = FC(p);
  fc->multicast = multicast;
  if (!(fc->min_threshold > 0 && fc->min_threshold < 1))
    return proto_error(p, "min_threshold must be in (0, 1), not %g", fc->min_threshold);
  /* As JGroups: min_credits is max_credits * min_threshold unless set. */
  if (!fc->min_credits) fc->min_credits = (uint64_t)((double)fc->max_credits * fc->min_threshold);
  if (fc->min_credits >= fc->max_credits)
    return proto_error(p, "min_credits (%" PRIu64 ") must be below max_credits (%" PRIu64 ")",
                       fc->min_credits, fc->max_credits);
  fc->replenish_at = fc->max_credits - fc->min_credits;
  int rc = check_frag_size(fc);
  if (rc) return rc;
  if (multicast) {
    struct rs_addr group = RS_ADDR_NULL;
    if (!flow_add(fc, &group)) return proto_error(p, "out of memory");
  }
  return 0;
}

/* A stopped stack comes back with a new address: every count and queue starts again. */
void fc_stop(struct rs_protocol *p) {
  struct fc *fc = FC(p);
  size_t keep = fc->multicast && fc->n_flows ? 1 : 0;
  for (size_t i = keep; i < fc->n_flows; i++)
    flow_free(fc, fc->flows[i]);
  fc->n_flows = keep;
  if (keep) {
    struct fc_flow *f = fc->flows[0];
    if (f->head) block_end(fc, f);
    while (f->head)
      rs_msg_free(dequeue(fc, f));
    free(f->credits);
    f->credits = NULL;
    f->n_credits = f->cap_credits = 0;
    f->sent = 0;
    f->requested = false;
    recompute_min(f);
  }
  fc->n_recv = 0;
  fc->last_flow = fc->last_recv = 0;
  view_unref(fc->view);
  fc->view = NULL;
  update_congestion(fc);
}

void fc_destroy(struct rs_protocol *p) {
  struct fc *fc = FC(p);
  for (size_t i = 0; i < fc->n_flows; i++)
    flow_free(fc, fc->flows[i]);
  fc->n_flows = 0;
  free(fc->flows);
  fc->flows = NULL;
  free(fc->recv);
  fc->recv = NULL;
  fc->n_recv = 0;
  view_unref(fc->view);
  fc->view = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Stats and attributes.
 */
void fc_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct fc *fc = FC(p);
  int64_t credits = (int64_t)fc->max_credits;
  for (size_t i = 0; i < fc->n_flows; i++) {
    int64_t a = available(fc, fc->flows[i]);
    if (a < credits) credits = a;
  }
  const struct fc_stats *s = &fc->st;
  out->line(out, "credits", "%" PRId64, credits);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"msgs_sent", s->msgs_sent},
      {"bytes_sent", s->bytes_sent},
      {"msgs_queued", s->msgs_queued},
      {"blockings", s->blockings},
      {"blocked_time_ms", s->blocked_ns / RS_MS},
      {"replenish_sent", s->replenish_sent},
      {"replenish_received", s->replenish_received},
      {"credit_requests_sent", s->requests_sent},
      {"credit_requests_received", s->requests_received},
      {"credit_responses_sent", s->responses_sent},
      {"credit_responses_received", s->responses_received},
      {"resyncs", s->resyncs},
      {"unblocked_by_view", s->unblocked_by_view},
      {"bypassed_table_full", s->bypassed_table_full},
      {"stale_ignored", s->stale_ignored},
      {"bad_dropped", s->bad_dropped},
      {"queued_msgs", fc->n_queued},
      {"queued_bytes", fc->queued_bytes},
      {"queued_max", s->queued_max},
      {fc->multicast ? "members" : "destinations",
       fc->multicast ? (fc->n_flows ? fc->flows[0]->n_credits : 0) : fc->n_flows},
      {"senders", fc->n_recv},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
  out->line(out, "avg_block_time_ms", "%.3f",
            s->blockings ? (double)s->blocked_ns / (double)s->blockings / (double)RS_MS : 0.0);
}

#define IGNORED(name, why) {name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL}

const struct rs_attr fc_attrs[] = {
    {"max_credits", RS_ATTR_SIZE, offsetof(struct fc, max_credits), "5M", 1, 1e12,
     "payload bytes a sender may have outstanding towards one receiver (MFC: towards each member)",
     0, NULL},
    {"max_block_time", RS_ATTR_DURATION, offsetof(struct fc, max_block_time), "500ms", 0, 3600000,
     "a sender blocked this long asks its receivers for credit (CREDIT_REQUEST), and again each "
     "time it passes; 0: never ask",
     0, NULL},
    {"min_threshold", RS_ATTR_DOUBLE, offsetof(struct fc, min_threshold), "0.40", 0, 1,
     "a receiver sends credit once the sender may be down to max_credits x min_threshold; in "
     "(0, 1)",
     0, NULL},
    {"min_credits", RS_ATTR_SIZE, offsetof(struct fc, min_credits), "0", 0, 1e12,
     "overrides max_credits x min_threshold when set; must be below max_credits", 0, NULL},
    IGNORED("max_block_times",
            "messages never give up waiting for credit: they wait in a queue, not a thread"),
    IGNORED("ignore_synchronous_response", "no thread ever blocks, so none can deadlock"),
    RS_ATTR_END,
};

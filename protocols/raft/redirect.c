/* raft.REDIRECT: forwards a command submitted on a follower to the leader and returns its answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/raft/redirect.h"
#include "stack/view.h"

/*
 * jgroups-raft's REDIRECT, reimplemented. A command submitted on a follower travels to the
 * leader in a REQ message (the command is the payload, a request id is in the header); the
 * leader appends it with raft_submit and, once it is applied there, sends back a RSP with the
 * status and the state machine's response. On the leader itself a command goes straight to RAFT.
 *
 * The rules that keep one call from being lost or applied twice:
 *
 * - REDIRECT never sends a request twice. A lost REQ or RSP is the transport's to repair
 *   (UNICAST3); if the leader goes away, the caller gets an error and decides. Over a stack
 *   without reliable unicast a lost message leaves its request waiting (the caller's own
 *   timeout still ends the call) until the leader changes.
 * - No leader known (or its address unknown): RS_ENOLEADER at once; nothing was sent.
 * - A REQ that reaches a node that is not leader any more is answered RS_ENOTLEADER with the
 *   raft_id of the leader that node knows: nothing was appended, so the caller may retry.
 * - A leader that appended the command keeps waiting for it after it stops leading (raft.h:
 *   pending commands are keyed by index and term, not by role). Once its apply reaches the index
 *   it answers with the response (the entry survived and was applied) or RS_ENOTLEADER (another
 *   leader's entry replaced it: not applied). So a leader change alone does not end a forwarded
 *   request: the old leader's answer is awaited.
 * - The follower ends a forwarded request with RS_EUNKNOWN ("it may or may not be applied")
 *   when the node that holds it went away: at once when a view no longer contains it, and
 *   when another node (or none) has been leader for leader_change_timeout while the old leader
 *   did not answer (it crashed, or it is cut off). An answer that comes later is dropped and
 *   counted (late_responses).
 * - The leader drops a duplicate REQ (same sender, same request id) without appending it again:
 *   it remembers the last DEDUP_BITS request ids of each of the last DEDUP_SOURCES senders. A
 *   network that duplicates messages (or a transport without UNICAST3) thus cannot make one call
 *   apply twice. A request id older than that window is answered RS_EAGAIN and not appended.
 * - Closing (the handle's redirect_fail_pending, or stop) ends forwarded requests with
 *   RS_ESHUTDOWN; a leader that stops with requests of others pending answers nothing (its
 *   followers' rules above then apply), and one whose handle closes answers RS_EUNKNOWN.
 *
 * Bad input (a RSP for a request id never sent, or from another node than the one the request
 * went to) is dropped, counted (bad_dropped) and logged rate-limited; the answer to a request
 * that already ended is dropped and counted (late_responses). Memory is bounded by max_pending, on
 * both sides, and by the fixed dedup table.
 */

#define DEDUP_BITS 4096  /* request ids remembered per sender */
#define DEDUP_SOURCES 64 /* senders remembered; the least recently heard is forgotten first */
#define RL_INTERVAL (5 * RS_SEC)

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 522). Byte layout (docs/wire-format.md, REDIRECT):
 *
 *   REQ (0): type u8 | req_id varint                    payload: the command
 *   RSP (1): type u8 | req_id varint | status varint     payload: the response, or with
 *                                                         RS_ENOTLEADER the leader's raft_id
 *
 * req_id is at least 1 (ids of one sender grow from 1). status is an int32 in zigzag encoding:
 * 0, an RS_E* code, or what the state machine's apply returned. Another type, req_id 0 or a
 * status outside int32 makes the header malformed.
 */
enum { RD_REQ = 0, RD_RSP = 1 };

struct rd_hdr {
  uint64_t req_id;
  int32_t status;
  uint8_t type;
};

static uint64_t zigzag(int32_t v) { return (uint64_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)); }
static int32_t unzigzag(uint32_t z) { return (int32_t)((z >> 1) ^ (0u - (z & 1u))); }

static size_t hdr_wire_size(const void *p) {
  const struct rd_hdr *h = p;
  size_t n = 1 + varint_size(h->req_id);
  if (h->type == RD_RSP) n += varint_size(zigzag(h->status));
  return n;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct rd_hdr *h = p;
  put_u8(w, h->type);
  put_varint(w, h->req_id);
  if (h->type == RD_RSP) put_varint(w, zigzag(h->status));
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct rd_hdr *h = p;
  *h = (struct rd_hdr){0};
  h->type = get_u8(r);
  if (h->type > RD_RSP) reader_fail(r, RS_EMALFORMED);
  h->req_id = get_varint(r);
  uint64_t z = h->type == RD_RSP ? get_varint(r) : 0;
  if (h->req_id == 0 || z > UINT32_MAX) reader_fail(r, RS_EMALFORMED);
  h->status = unzigzag((uint32_t)z);
  if (r->err) *h = (struct rd_hdr){0};
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct rd_hdr *h = p;
  if (h->type != RD_RSP) return snprintf(buf, len, "REQ req_id=%" PRIu64, h->req_id);
  return snprintf(buf, len, "RSP req_id=%" PRIu64 " status=%" PRId32 "%s%s", h->req_id, h->status,
                  h->status < 0 ? " " : "", h->status < 0 ? rs_errname(h->status) : "");
}

static const struct rs_header_type rd_header = {
    .id = REDIRECT_ID,
    .name = "REDIRECT",
    .size = sizeof(struct rd_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */

/* A request this node forwarded, waiting for the leader's answer. */
struct fwd {
  struct fwd *prev, *next;
  uint64_t req_id;
  struct rs_addr target; /* the leader it went to */
  bool orphaned;         /* another node (or none) leads since `since` */
  rs_time since;
  raft_done_fn done;
  void *arg;
};

/* A request of another node that this leader submitted to RAFT, until RAFT's done. */
struct remote {
  struct remote *prev, *next;
  struct redirect *rd; /* NULL once REDIRECT stopped: the answer is dropped */
  struct rs_addr src;
  uint64_t req_id;
};

/* The request ids recently seen from one sender: a window of DEDUP_BITS ids below `high`. */
struct dedup {
  struct rs_addr src;
  uint64_t high; /* 0: none yet */
  rs_time last;
  uint64_t bits[DEDUP_BITS / 64];
};

struct rd_stats {
  uint64_t forwarded, responses_received, served, responses_sent, local_submits;
  uint64_t no_leader, overloaded, not_leader_answers, unknown_view, unknown_leader_change;
  uint64_t duplicates_dropped, stale_requests, late_responses, wrong_source, bad_dropped;
};

struct redirect {
  struct rs_protocol base;
  /* Attributes. */
  rs_time leader_change_timeout;
  int64_t max_pending;
  /* State. */
  struct raft *raft;
  int listener_id; /* -1: none */
  bool started;
  uint64_t next_req_id;
  struct fwd *fwd_head, *fwd_tail;
  size_t n_fwd, n_orphans;
  struct remote *remote_head;
  size_t n_remote;
  struct dedup *dedup; /* DEDUP_SOURCES slots */
  size_t n_dedup;
  struct rs_timer orphan_timer;
  struct rs_ratelimit rl;
  struct rd_stats st;
};

#define RD(p) ((struct redirect *)(p))

extern const struct rs_protocol_ops redirect_protocol;

struct redirect *redirect_find(struct rs_stack *st) {
  for (struct rs_protocol *q = st ? st->bottom : NULL; q; q = q->up)
    if (q->ops == &redirect_protocol) return RD(q);
  return NULL;
}

static void log_bad(struct redirect *rd, const struct rs_addr *src, const char *what) {
  rd->st.bad_dropped++;
  uint64_t suppressed;
  if (!ratelimit_ok(&rd->rl, rs_now(rd->base.rt), RL_INTERVAL, &suppressed)) return;
  char a[RS_ADDR_STRLEN];
  rs_addr_format(src, a);
  PLOG(&rd->base, WARN, "dropped a message from %s: %s (%" PRIu64 " more suppressed)", a, what,
       suppressed);
}

/* ---------------------------------------------------------------------------------------------
 * Follower side: forwarded requests.
 */
static void fwd_unlink(struct redirect *rd, struct fwd *f) {
  if (f->prev)
    f->prev->next = f->next;
  else
    rd->fwd_head = f->next;
  if (f->next)
    f->next->prev = f->prev;
  else
    rd->fwd_tail = f->prev;
  rd->n_fwd--;
  if (f->orphaned) rd->n_orphans--;
}

/* Ends a forwarded request: unlinks it first, so that done may call into REDIRECT again. */
static void fwd_finish(struct redirect *rd, struct fwd *f, int status, const void *rsp,
                       size_t len) {
  fwd_unlink(rd, f);
  raft_done_fn done = f->done;
  void *arg = f->arg;
  free(f);
  done(arg, status, rsp, len);
}

static struct fwd *fwd_by_id(struct redirect *rd, uint64_t id) {
  /* Answers mostly come in request order: the oldest is found first. */
  for (struct fwd *f = rd->fwd_head; f; f = f->next)
    if (f->req_id == id) return f;
  return NULL;
}

/* Whether the node a request went to is still the leader RAFT knows. */
static bool target_leads(struct redirect *rd, const struct fwd *f) {
  struct rs_addr cur = raft_leader_addr(rd->raft);
  return !rs_addr_is_null(&cur) && rs_addr_eq(&cur, &f->target);
}

static int send_request(struct redirect *rd, struct rs_addr to, uint64_t id, struct rs_buf *buf,
                        const uint8_t *data, uint32_t len) {
  struct rs_msg *m = buf ? rs_msg_new_slice(buf, (size_t)(data - buf->data), len) : rs_msg_new();
  if (!m) return RS_ENOMEM;
  struct rd_hdr *h = rs_msg_put_header(m, &rd_header);
  h->type = RD_REQ;
  h->req_id = id;
  m->dest = to;
  proto_down_msg(&rd->base, m);
  return 0;
}

static int forward(struct redirect *rd, struct rs_buf *buf, const uint8_t *data, uint32_t len,
                   raft_done_fn done, void *arg) {
  struct rs_addr leader = raft_leader_addr(rd->raft);
  if (rs_addr_is_null(&leader)) {
    rd->st.no_leader++;
    return RS_ENOLEADER;
  }
  if (rd->n_fwd >= (size_t)rd->max_pending) {
    rd->st.overloaded++;
    return RS_EAGAIN;
  }
  struct fwd *f = calloc(1, sizeof(*f));
  if (!f) return RS_ENOMEM;
  f->req_id = ++rd->next_req_id;
  f->target = leader;
  f->done = done;
  f->arg = arg;
  int rc = send_request(rd, leader, f->req_id, buf, data, len);
  if (rc) {
    free(f);
    return rc;
  }
  f->prev = rd->fwd_tail;
  if (rd->fwd_tail)
    rd->fwd_tail->next = f;
  else
    rd->fwd_head = f;
  rd->fwd_tail = f;
  rd->n_fwd++;
  rd->st.forwarded++;
  return 0;
}

int redirect_submit(struct redirect *rd, struct rs_buf *buf, const uint8_t *data, uint32_t len,
                    raft_done_fn done, void *arg) {
  if (!rd->started || !rd->raft) return RS_ESHUTDOWN;
  if (raft_role(rd->raft) == RS_RAFT_LEADER) {
    rd->st.local_submits++;
    return raft_submit(rd->raft, buf, data, len, done, arg);
  }
  return forward(rd, buf, data, len, done, arg);
}

void redirect_fail_pending(struct redirect *rd, int status) {
  while (rd->fwd_head)
    fwd_finish(rd, rd->fwd_head, status, NULL, 0);
}

/* Fails the requests whose leader has been replaced for leader_change_timeout. */
static void orphan_tick(struct rs_timer *t) {
  struct redirect *rd = (struct redirect *)((char *)t - offsetof(struct redirect, orphan_timer));
  rs_time now = rs_now(rd->base.rt);
  struct fwd *f = rd->fwd_head;
  while (f) {
    struct fwd *next = f->next;
    if (f->orphaned && now - f->since >= rd->leader_change_timeout) {
      rd->st.unknown_leader_change++;
      fwd_finish(rd, f, RS_EUNKNOWN, NULL, 0);
      next = rd->fwd_head; /* done may have ended others: start over (each pass ends one) */
    }
    f = next;
  }
  if (!rd->n_orphans) rs_timer_stop(&rd->orphan_timer);
}

/* RAFT's role listener: marks the requests whose leader no longer leads (and unmarks those
 * whose leader leads again), so orphan_tick can bound the wait for their answer. */
static void on_role(void *arg, enum rs_raft_role role, rs_term term, const char *leader) {
  (void)role, (void)term, (void)leader;
  struct redirect *rd = arg;
  rs_time now = rs_now(rd->base.rt);
  for (struct fwd *f = rd->fwd_head; f; f = f->next) {
    bool leads = target_leads(rd, f);
    if (leads && f->orphaned) {
      f->orphaned = false;
      rd->n_orphans--;
    } else if (!leads && !f->orphaned) {
      f->orphaned = true;
      f->since = now;
      rd->n_orphans++;
    }
  }
  if (rd->n_orphans && !rs_timer_active(&rd->orphan_timer)) {
    rs_time period = rd->leader_change_timeout / 4;
    if (period < RS_MS) period = RS_MS;
    rs_timer_start(&rd->orphan_timer, period, period);
  }
}

/* A view without the node a request went to: that node crashed or was cut off. */
static void on_view(struct redirect *rd, const struct rs_view_data *v) {
  struct fwd *f = rd->fwd_head;
  while (f) {
    struct fwd *next = f->next;
    if (!view_contains(v, &f->target)) {
      rd->st.unknown_view++;
      fwd_finish(rd, f, RS_EUNKNOWN, NULL, 0);
      next = rd->fwd_head;
    }
    f = next;
  }
}

static void handle_response(struct redirect *rd, struct rs_msg *m, const struct rd_hdr *h) {
  struct fwd *f = fwd_by_id(rd, h->req_id);
  if (!f && h->req_id <= rd->next_req_id) {
    /* The answer to a request that already ended (RS_EUNKNOWN, RS_ESHUTDOWN): expected. */
    rd->st.late_responses++;
    PLOG(&rd->base, DEBUG, "late answer to request %" PRIu64 " dropped", h->req_id);
    return;
  }
  if (!f) {
    log_bad(rd, &m->src, "a response to a request never sent");
    return;
  }
  if (!rs_addr_eq(&m->src, &f->target)) {
    rd->st.wrong_source++;
    log_bad(rd, &m->src, "a response from another node than the one asked");
    return;
  }
  rd->st.responses_received++;
  fwd_finish(rd, f, h->status, m->data, m->len);
}

/* ---------------------------------------------------------------------------------------------
 * Leader side: requests of others.
 */
static void send_response(struct redirect *rd, const struct rs_addr *to, uint64_t id, int status,
                          const void *rsp, size_t len) {
  struct rs_msg *m = len ? rs_msg_new_copy(rsp, len) : rs_msg_new();
  if (!m) return; /* the follower's leader_change_timeout or a view ends its request */
  struct rd_hdr *h = rs_msg_put_header(m, &rd_header);
  h->type = RD_RSP;
  h->req_id = id;
  h->status = (int32_t)status;
  m->dest = *to;
  rd->st.responses_sent++;
  proto_down_msg(&rd->base, m);
}

/* RS_ENOTLEADER carries the raft_id of the leader this node knows, so the caller can go there. */
static void answer(struct redirect *rd, const struct rs_addr *to, uint64_t id, int status,
                   const void *rsp, size_t len) {
  if (status == RS_ENOTLEADER) {
    const char *leader = rd->raft ? raft_leader_id(rd->raft) : NULL;
    rsp = leader;
    len = leader ? strlen(leader) : 0;
  }
  send_response(rd, to, id, status, rsp, len);
}

static void remote_unlink(struct redirect *rd, struct remote *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    rd->remote_head = c->next;
  if (c->next) c->next->prev = c->prev;
  rd->n_remote--;
}

/* RAFT's done for a command of another node. */
static void on_remote_done(void *arg, int status, const void *rsp, size_t len) {
  struct remote *c = arg;
  struct redirect *rd = c->rd;
  if (rd) {
    remote_unlink(rd, c);
    /* Closing here does not tell whether the entry commits elsewhere. */
    if (status == RS_ESHUTDOWN) status = RS_EUNKNOWN;
    answer(rd, &c->src, c->req_id, status, rsp, len);
  }
  free(c);
}

static struct dedup *dedup_of(struct redirect *rd, const struct rs_addr *src) {
  struct dedup *oldest = NULL;
  for (size_t i = 0; i < rd->n_dedup; i++) {
    struct dedup *d = &rd->dedup[i];
    if (rs_addr_eq(&d->src, src)) return d;
    if (!oldest || d->last < oldest->last) oldest = d;
  }
  struct dedup *d = rd->n_dedup < DEDUP_SOURCES ? &rd->dedup[rd->n_dedup++] : oldest;
  memset(d, 0, sizeof(*d));
  d->src = *src;
  return d;
}

enum { SEEN_NEW, SEEN_DUPLICATE, SEEN_TOO_OLD };

static bool bit_get(const struct dedup *d, uint64_t id) {
  return d->bits[(id % DEDUP_BITS) / 64] >> (id % 64) & 1;
}
static void bit_put(struct dedup *d, uint64_t id, bool v) {
  uint64_t mask = (uint64_t)1 << (id % 64);
  uint64_t *w = &d->bits[(id % DEDUP_BITS) / 64];
  *w = v ? *w | mask : *w & ~mask;
}

/* Records id as seen; says whether it was new. */
static int dedup_check(struct dedup *d, uint64_t id) {
  if (id > d->high) {
    if (id - d->high >= DEDUP_BITS)
      memset(d->bits, 0, sizeof(d->bits));
    else
      for (uint64_t i = d->high + 1; i < id; i++)
        bit_put(d, i, false);
    bit_put(d, id, true);
    d->high = id;
    return SEEN_NEW;
  }
  if (d->high - id >= DEDUP_BITS) return SEEN_TOO_OLD;
  if (bit_get(d, id)) return SEEN_DUPLICATE;
  bit_put(d, id, true);
  return SEEN_NEW;
}

static void serve(struct redirect *rd, struct rs_msg *m, const struct rd_hdr *h) {
  struct dedup *d = dedup_of(rd, &m->src);
  d->last = rs_now(rd->base.rt);
  switch (dedup_check(d, h->req_id)) {
  case SEEN_DUPLICATE:
    rd->st.duplicates_dropped++; /* the first copy is (or was) answered */
    return;
  case SEEN_TOO_OLD:
    rd->st.stale_requests++;
    answer(rd, &m->src, h->req_id, RS_EAGAIN, NULL, 0); /* not appended: safe to retry */
    return;
  }
  rd->st.served++;
  if (!rd->started || raft_role(rd->raft) != RS_RAFT_LEADER) {
    rd->st.not_leader_answers++;
    answer(rd, &m->src, h->req_id, RS_ENOTLEADER, NULL, 0);
    return;
  }
  if (rd->n_remote >= (size_t)rd->max_pending) {
    rd->st.overloaded++;
    answer(rd, &m->src, h->req_id, RS_EAGAIN, NULL, 0);
    return;
  }
  struct remote *c = calloc(1, sizeof(*c));
  if (!c) {
    answer(rd, &m->src, h->req_id, RS_ENOMEM, NULL, 0);
    return;
  }
  c->rd = rd;
  c->src = m->src;
  c->req_id = h->req_id;
  int rc = raft_submit(rd->raft, m->buf, m->data, (uint32_t)m->len, on_remote_done, c);
  if (rc) {
    free(c);
    if (rc == RS_ENOTLEADER) rd->st.not_leader_answers++;
    answer(rd, &m->src, h->req_id, rc, NULL, 0);
    return;
  }
  c->next = rd->remote_head;
  if (c->next) c->next->prev = c;
  rd->remote_head = c;
  rd->n_remote++;
}

/* ---------------------------------------------------------------------------------------------
 * The protocol.
 */
static void rd_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct redirect *rd = RD(p);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct rd_hdr *h = rs_msg_header(m, REDIRECT_ID);
    if (!h) {
      rs_batch_add(&keep, m);
      continue;
    }
    if (!rd->started || !rd->raft)
      ; /* stopping: nothing to serve or complete */
    else if (m->len > UINT32_MAX)
      log_bad(rd, &m->src, "a request larger than a log entry can be");
    else if (h->type == RD_REQ)
      serve(rd, m, h);
    else
      handle_response(rd, m, h);
    rs_msg_free(m);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

static int rd_up_event(struct rs_protocol *p, struct rs_event *ev) {
  struct redirect *rd = RD(p);
  if (ev->type == RS_EV_VIEW_CHANGE && ev->u.view && rd->started) on_view(rd, ev->u.view);
  return proto_up_event(p, ev);
}

static int rd_init(struct rs_protocol *p) {
  struct redirect *rd = RD(p);
  rd->listener_id = -1;
  rs_timer_init(&rd->orphan_timer, p->rt, orphan_tick);
  rd->dedup = calloc(DEDUP_SOURCES, sizeof(*rd->dedup));
  if (!rd->dedup) return proto_error(p, "out of memory");
  return 0;
}

static int rd_start(struct rs_protocol *p) {
  struct redirect *rd = RD(p);
  rd->raft = raft_find(p->stack);
  if (!rd->raft) return proto_error(p, "needs raft.RAFT below it");
  int id = raft_add_role_listener(rd->raft, on_role, rd);
  if (id < 0) return proto_error(p, "cannot listen to RAFT's role changes: %s", rs_strerror(id));
  rd->listener_id = id;
  rd->n_dedup = 0;
  rd->started = true;
  return 0;
}

static void rd_stop(struct rs_protocol *p) {
  struct redirect *rd = RD(p);
  rd->started = false;
  rs_timer_stop(&rd->orphan_timer);
  redirect_fail_pending(rd, RS_ESHUTDOWN);
  /* RAFT still holds the commands of others (it completes them at its own stop); their
   * answers are dropped. */
  while (rd->remote_head) {
    struct remote *c = rd->remote_head;
    remote_unlink(rd, c);
    c->rd = NULL;
  }
  if (rd->raft && rd->listener_id >= 0) raft_remove_role_listener(rd->raft, rd->listener_id);
  rd->listener_id = -1;
}

static void rd_destroy(struct rs_protocol *p) {
  struct redirect *rd = RD(p);
  if (rd->started) rd_stop(p);
  free(rd->dedup);
  rd->dedup = NULL;
}

static void rd_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct redirect *rd = RD(p);
  const struct rd_stats *s = &rd->st;
#define L(name) out->line(out, #name, "%" PRIu64, s->name)
  L(forwarded);
  L(responses_received);
  L(local_submits);
  L(served);
  L(responses_sent);
  L(no_leader);
  L(overloaded);
  L(not_leader_answers);
  L(unknown_view);
  L(unknown_leader_change);
  L(duplicates_dropped);
  L(stale_requests);
  L(late_responses);
  L(wrong_source);
  L(bad_dropped);
#undef L
  out->line(out, "pending_forwarded", "%zu", rd->n_fwd);
  out->line(out, "pending_served", "%zu", rd->n_remote);
}

static const struct rs_attr rd_attrs[] = {
    {"leader_change_timeout", RS_ATTR_DURATION, offsetof(struct redirect, leader_change_timeout),
     "2s", 1, 3600000,
     "how long a forwarded request waits for the answer of a leader that another node (or none) "
     "has replaced, before it ends with RS_EUNKNOWN",
     0, NULL},
    {"max_pending", RS_ATTR_INT, offsetof(struct redirect, max_pending), "10000", 1, 1e7,
     "requests forwarded and not yet answered (and requests of others being served); beyond, "
     "RS_EAGAIN",
     0, NULL},
    RS_ATTR_END,
};

static const char *const rd_below[] = {"RAFT", NULL};

const struct rs_protocol_ops redirect_protocol = {
    .name = "REDIRECT",
    .package = "raft",
    .id = REDIRECT_ID,
    .size = sizeof(struct redirect),
    .description = "forwards commands submitted on a follower to the leader and returns its answer",
    .attrs = rd_attrs,
    .header = &rd_header,
    .requires_below = rd_below,
    .init = rd_init,
    .start = rd_start,
    .stop = rd_stop,
    .destroy = rd_destroy,
    .up_batch = rd_up_batch,
    .up_event = rd_up_event,
    .stats = rd_stats,
};

/* STABLE: members gossip what they delivered; the coordinator tells everyone what is stable. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' pbcast.STABLE, reimplemented):
 *
 * - Every member, at random intervals averaging desired_avg_gossip (uniform in [d/2, 3d/2];
 *   JGroups draws from [0, 2d]: same mean, fewer bursts), and also once max_bytes of multicast
 *   payload went up since its last gossip, asks NAKACK2 for its digest (RS_EV_GET_DIGEST) and
 *   sends it, restricted to the members of the current view in view order, to the coordinator
 *   (the view's first member) as a STABLE_GOSSIP tagged with the view id. A digest that does not
 *   cover every member yet (a window is missing) is not sent: the next round tries again.
 * - The coordinator keeps, for the current view only, one vote per member and a running digest:
 *   per member the minimum `delivered` and the maximum `received` over the reports. A gossip of
 *   another view, from a non-member, a second one from a member in the same round, or one whose
 *   entries are not the view's members in order is ignored (counted). Its own report goes in
 *   directly, without a message.
 * - Once every member has reported, the coordinator multicasts STABILITY (the running digest,
 *   tagged with the view id) and passes RS_EV_STABLE down itself; members pass it down when the
 *   view id is theirs and it comes from their coordinator. NAKACK2 then purges what everyone
 *   delivered and asks for what others received and it did not. A new round starts.
 * - A view change starts collection afresh. Gossip and STABILITY are OOB|NO_RELIABILITY|NO_FC:
 *   a lost one is replaced by the next round, as in JGroups.
 */

#define STABLE_ID 13
#define RL_INTERVAL (5 * RS_SEC)

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 13). Byte layout (docs/wire-format.md, STABLE):
 *
 *   type u8 (1 STABLE_GOSSIP, 2 STABILITY) | view creator (16) | view id (varint)
 *
 * The payload is a digest (stack/view.h, put_digest) with one entry per member of that view, in
 * view order. Another type makes the header malformed.
 */
enum { STABLE_GOSSIP = 1, STABILITY = 2 };

struct stable_hdr {
  struct rs_addr creator;
  uint64_t view_id;
  uint8_t type;
};

static size_t hdr_wire_size(const void *p) {
  const struct stable_hdr *h = p;
  return 1 + 16 + varint_size(h->view_id);
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct stable_hdr *h = p;
  put_u8(w, h->type);
  put_addr(w, &h->creator);
  put_varint(w, h->view_id);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct stable_hdr *h = p;
  *h = (struct stable_hdr){0};
  h->type = get_u8(r);
  h->creator = get_addr(r);
  h->view_id = get_varint(r);
  if (h->type != STABLE_GOSSIP && h->type != STABILITY) reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct stable_hdr){0};
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct stable_hdr *h = p;
  char a[RS_ADDR_STRLEN];
  return snprintf(buf, len, "%s view=[%s|%" PRIu64 "]",
                  h->type == STABLE_GOSSIP ? "STABLE_GOSSIP" : "STABILITY",
                  rs_addr_format(&h->creator, a), h->view_id);
}

static const struct rs_header_type stable_header = {
    .id = STABLE_ID,
    .name = "STABLE",
    .size = sizeof(struct stable_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct stable_stats {
  uint64_t gossip_sent, gossip_received, gossip_incomplete;
  uint64_t stability_sent, stability_received, stable_events;
  uint64_t stale_ignored, duplicate_votes, not_coord, bad_dropped;
};

struct stable {
  struct rs_protocol base;
  /* Attributes. */
  rs_time desired_avg_gossip;
  uint64_t max_bytes;
  /* State. */
  struct rs_view_data *view;
  bool *votes; /* the coordinator's: one per member of the view, by rank */
  size_t n_votes;
  struct rs_digest round; /* the coordinator's running digest, in view order */
  uint64_t bytes;         /* multicast payload received since our last gossip */
  struct rs_timer gossip_timer;
  struct rs_task gossip_task; /* a gossip after max_bytes, sent outside the delivery */
  struct rs_ratelimit rl_bad;
  struct stable_stats st;
};

#define ST(p) ((struct stable *)(p))

static void log_bad(struct stable *s, const struct rs_addr *src, const char *what) {
  s->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&s->base, RS_LOG_WARN) ||
      !ratelimit_ok(&s->rl_bad, rs_now(s->base.rt), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&s->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

static bool is_coord(struct stable *s) {
  struct rs_addr self = proto_local_addr(&s->base);
  const struct rs_addr *coord = view_coord(s->view);
  return coord && rs_addr_eq(coord, &self);
}

static bool same_view(const struct stable *s, const struct stable_hdr *h) {
  return s->view && s->view->id == h->view_id && rs_addr_eq(&s->view->creator, &h->creator);
}

/* Starts a new round of votes (a view change, or STABILITY sent). */
static void round_reset(struct stable *s) {
  for (size_t i = 0; i < s->n_votes; i++)
    s->votes[i] = false;
  digest_free(&s->round);
}

/* ---------------------------------------------------------------------------------------------
 * Messages.
 */
static void send_digest(struct stable *s, uint8_t type, const struct rs_addr *to,
                        const struct rs_digest *d) {
  struct rs_writer w;
  writer_init_grow(&w, digest_wire_size(d));
  put_digest(&w, d);
  struct rs_msg *m = w.err ? NULL : rs_msg_new_copy(w.p, w.len);
  free(w.p);
  if (!m) return;
  struct stable_hdr *h = rs_msg_put_header(m, &stable_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  h->creator = s->view->creator;
  h->view_id = s->view->id;
  m->dest = to ? *to : RS_ADDR_NULL;
  m->flags = RS_MSG_OOB | RS_MSG_NO_RELIABILITY | RS_MSG_NO_FC;
  if (!to) m->tflags |= RS_MSG_DONT_LOOPBACK; /* the coordinator passed it down already */
  proto_down_msg(&s->base, m);
}

static void pass_stable(struct stable *s, const struct rs_digest *d) {
  s->st.stable_events++;
  struct rs_event ev = {.type = RS_EV_STABLE, .u.digest = d};
  proto_down_event(&s->base, &ev);
}

/* Every member reported: the minimum is stable everywhere. */
static void send_stability(struct stable *s) {
  s->st.stability_sent++;
  send_digest(s, STABILITY, NULL, &s->round);
  pass_stable(s, &s->round);
  round_reset(s);
}

/* The coordinator counts one report (entries in view order, checked by the caller). */
static void vote(struct stable *s, size_t rank, const struct rs_digest *d) {
  if (s->votes[rank]) {
    s->st.duplicate_votes++;
    return;
  }
  if (!s->round.e) {
    s->round.e = malloc(d->n * sizeof(*d->e));
    if (!s->round.e) return;
    s->round.n = d->n;
    for (size_t i = 0; i < d->n; i++)
      s->round.e[i] = d->e[i];
  } else {
    for (size_t i = 0; i < d->n; i++) {
      struct rs_digest_entry *r = &s->round.e[i];
      if (d->e[i].delivered < r->delivered) r->delivered = d->e[i].delivered;
      if (d->e[i].received > r->received) r->received = d->e[i].received;
    }
  }
  s->votes[rank] = true;
  for (size_t i = 0; i < s->n_votes; i++)
    if (!s->votes[i]) return;
  send_stability(s);
}

/* Whether d has exactly the view's members, in view order. */
static bool covers_view(const struct stable *s, const struct rs_digest *d) {
  if (d->n != s->view->n) return false;
  for (size_t i = 0; i < d->n; i++)
    if (!rs_addr_eq(&d->e[i].addr, &s->view->members[i])) return false;
  return true;
}

static void on_gossip(struct stable *s, const struct rs_addr *src, const struct rs_digest *d) {
  if (!is_coord(s)) {
    s->st.not_coord++;
    return;
  }
  long rank = view_index(s->view, src);
  if (rank < 0) {
    s->st.stale_ignored++;
    return;
  }
  if (!covers_view(s, d)) {
    log_bad(s, src, "STABLE_GOSSIP digest does not match the view");
    return;
  }
  s->st.gossip_received++;
  vote(s, (size_t)rank, d);
}

static void on_stability(struct stable *s, const struct rs_addr *src, const struct rs_digest *d) {
  const struct rs_addr *coord = view_coord(s->view);
  if (!coord || !rs_addr_eq(coord, src)) {
    s->st.not_coord++;
    return;
  }
  s->st.stability_received++;
  pass_stable(s, d);
}

static void on_msg(struct stable *s, const struct rs_msg *m, const struct stable_hdr *h) {
  if (!same_view(s, h)) {
    s->st.stale_ignored++; /* another view's round */
    return;
  }
  struct rs_reader r;
  struct rs_digest d;
  reader_init(&r, m->data, m->len);
  get_digest(&r, &d);
  if (r.err || r.pos != m->len) {
    digest_free(&d);
    log_bad(s, &m->src, "malformed digest");
    return;
  }
  if (h->type == STABLE_GOSSIP)
    on_gossip(s, &m->src, &d);
  else
    on_stability(s, &m->src, &d);
  digest_free(&d);
}

static void stable_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct stable *s = ST(p);
  struct rs_batch rest;
  rs_batch_init(&rest);
  rest.src = b->src;
  rest.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct stable_hdr *h = rs_msg_header(m, STABLE_ID);
    if (h) {
      on_msg(s, m, h);
      rs_msg_free(m);
      continue;
    }
    if (rs_msg_is_multicast(m)) s->bytes += m->len;
    rs_batch_add(&rest, m);
  }
  if (s->max_bytes && s->bytes >= s->max_bytes) rs_post(p->rt, &s->gossip_task);
  if (rest.n) proto_up_batch(p, &rest);
}

/* ---------------------------------------------------------------------------------------------
 * Gossip.
 */
static int addr_entry_cmp(const void *a, const void *b) {
  return rs_addr_cmp(&((const struct rs_digest_entry *)a)->addr,
                     &((const struct rs_digest_entry *)b)->addr);
}

/* NAKACK2's digest restricted to the view's members, in view order; false (nothing to free)
 * when a member has no window yet. */
static bool view_digest(struct stable *s, struct rs_digest *out) {
  struct rs_digest all = {0};
  struct rs_event ev = {.type = RS_EV_GET_DIGEST, .digest_out = &all};
  if (proto_down_event(&s->base, &ev) != 0 || !all.e) {
    digest_free(&all);
    return false;
  }
  qsort(all.e, all.n, sizeof(*all.e), addr_entry_cmp);
  out->n = s->view->n;
  out->e = malloc(out->n * sizeof(*out->e));
  bool ok = out->e != NULL;
  for (size_t i = 0; ok && i < out->n; i++) {
    struct rs_digest_entry key = {.addr = s->view->members[i]};
    const struct rs_digest_entry *e = bsearch(&key, all.e, all.n, sizeof(*all.e), addr_entry_cmp);
    if (e) out->e[i] = *e;
    ok = e != NULL;
  }
  digest_free(&all);
  if (!ok) digest_free(out);
  return ok;
}

static void send_gossip(struct stable *s) {
  s->bytes = 0;
  if (!s->view || !s->view->n) return;
  struct rs_digest d;
  if (!view_digest(s, &d)) {
    s->st.gossip_incomplete++;
    return;
  }
  s->st.gossip_sent++;
  if (is_coord(s)) {
    struct rs_addr self = proto_local_addr(&s->base);
    on_gossip(s, &self, &d);
  } else {
    send_digest(s, STABLE_GOSSIP, view_coord(s->view), &d);
  }
  digest_free(&d);
}

static void arm_gossip(struct stable *s) {
  rs_time d = s->desired_avg_gossip;
  rs_timer_start(&s->gossip_timer, rs_random_range(s->base.rt, d / 2, d + d / 2), 0);
}

static void gossip_timer_cb(struct rs_timer *t) {
  struct stable *s = (struct stable *)((char *)t - offsetof(struct stable, gossip_timer));
  send_gossip(s);
  arm_gossip(s);
}

static void gossip_task_cb(struct rs_task *t) {
  struct stable *s = (struct stable *)((char *)t - offsetof(struct stable, gossip_task));
  if (s->max_bytes && s->bytes >= s->max_bytes) send_gossip(s);
}

/* ---------------------------------------------------------------------------------------------
 * Views, lifecycle, stats, attributes.
 */
static void view_change(struct stable *s, const struct rs_view_data *v) {
  bool *votes = calloc(v->n ? v->n : 1, sizeof(*votes));
  if (!votes) return; /* keep the old view: its gossip is ignored by the others */
  round_reset(s);
  free(s->votes);
  s->votes = votes;
  s->n_votes = v->n;
  struct rs_view_data *old = s->view;
  s->view = view_ref((struct rs_view_data *)v);
  view_unref(old);
  if (!rs_timer_active(&s->gossip_timer)) arm_gossip(s);
}

static int stable_down_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE && ev->u.view) view_change(ST(p), ev->u.view);
  return proto_down_event(p, ev);
}

static int stable_init(struct rs_protocol *p) {
  struct stable *s = ST(p);
  rs_timer_init(&s->gossip_timer, p->rt, gossip_timer_cb);
  rs_task_init(&s->gossip_task, gossip_task_cb);
  return 0;
}

static void stable_stop(struct rs_protocol *p) {
  struct stable *s = ST(p);
  rs_timer_stop(&s->gossip_timer);
  rs_task_cancel(p->rt, &s->gossip_task);
  round_reset(s);
  free(s->votes);
  s->votes = NULL;
  s->n_votes = 0;
  view_unref(s->view);
  s->view = NULL;
  s->bytes = 0;
}

static void stable_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct stable *s = ST(p);
  size_t voted = 0;
  for (size_t i = 0; i < s->n_votes; i++)
    voted += s->votes[i];
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"gossip_sent", s->st.gossip_sent},
      {"gossip_received", s->st.gossip_received},
      {"gossip_incomplete", s->st.gossip_incomplete},
      {"stability_sent", s->st.stability_sent},
      {"stability_received", s->st.stability_received},
      {"stable_events", s->st.stable_events},
      {"stale_ignored", s->st.stale_ignored},
      {"duplicate_votes", s->st.duplicate_votes},
      {"not_coord", s->st.not_coord},
      {"bad_dropped", s->st.bad_dropped},
      {"votes", voted},
      {"bytes_since_gossip", s->bytes},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr stable_attrs[] = {
    {"desired_avg_gossip", RS_ATTR_DURATION, offsetof(struct stable, desired_avg_gossip), "20s", 2,
     86400000,
     "average interval between a member's reports to the coordinator (each drawn from "
     "[d/2, 3d/2])",
     0, NULL},
    {"max_bytes", RS_ATTR_SIZE, offsetof(struct stable, max_bytes), "2000000", 0, 0,
     "multicast payload received that triggers a report before its time; 0: only the timer", 0,
     NULL},
    IGNORED("stability_delay", "STABILITY is sent as soon as every member reported"),
    IGNORED("send_stable_msgs_to_coord_only", "reports always go to the coordinator"),
    IGNORED("cap", "no heap ergonomics; max_bytes is absolute"),
    RS_ATTR_END,
};

static const char *const stable_below[] = {"NAKACK2", NULL};

const struct rs_protocol_ops stable_protocol = {
    .name = "STABLE",
    .package = "pbcast",
    .id = STABLE_ID,
    .size = sizeof(struct stable),
    .description = "garbage collection for NAKACK2: members report what they delivered, the "
                   "coordinator announces what everyone has",
    .attrs = stable_attrs,
    .header = &stable_header,
    .requires_below = stable_below,
    .init = stable_init,
    .stop = stable_stop,
    .destroy = stable_stop,
    .up_batch = stable_up_batch,
    .down_event = stable_down_event,
    .stats = stable_stats,
};

/* VERIFY_SUSPECT: asks a suspected member directly before its suspicion goes on to GMS. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' VERIFY_SUSPECT / VERIFY_SUSPECT2, reimplemented):
 *
 * - It sits above the failure detectors and below GMS. RS_EV_SUSPECT coming up stops here: the
 *   suspect is sent `num_msgs` ARE_YOU_DEAD unicasts (OOB|NO_FC; below UNICAST3, so unreliable,
 *   hence the copies) and gets a deadline `timeout` from now. Every member answers ARE_YOU_DEAD
 *   at once with `num_msgs` I_AM_NOT_DEAD (to the asker, or multicast with use_mcast_rsps).
 * - An I_AM_NOT_DEAD from a member being verified ends its verification: RS_EV_UNSUSPECT goes up
 *   (GMS forgets the suspicion) and down (the failure detectors reset their state for it, so
 *   FD_ALL3 measures its silence afresh and FD_SOCK watches it again), as JGroups does.
 * - A deadline that passes without an answer sends RS_EV_SUSPECT up: the suspicion is confirmed.
 *   Several suspects are verified at once, each with its own deadline; a member suspected again
 *   while it is being verified keeps its deadline (the timer is not restarted) but is asked again,
 *   in case the first question was lost (VERIFY_SUSPECT2 does the same).
 * - RS_EV_UNSUSPECT coming up (a detector heard from the member) ends a verification too, and
 *   goes on up. Suspicions of ourselves are ignored. With a view (RS_EV_VIEW_CHANGE passing down,
 *   kept with view_ref), suspicions of non-members are ignored and members that leave the view
 *   are dropped from verification: GMS has removed them already.
 * - Deadlines are kept in arrival order; with one `timeout` for all, that is deadline order, so
 *   one timer armed for the first entry serves them all.
 */

#define VS_ID 11
#define RL_INTERVAL (5 * RS_SEC)

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 11). Byte layout (docs/wire-format.md, VERIFY_SUSPECT):
 *
 *   type u8 (1 = ARE_YOU_DEAD, 2 = I_AM_NOT_DEAD: JGroups' numbers)
 *
 * JGroups also writes the asker's (or the answerer's) address; ours is the frame's sender. Any
 * other type makes the header malformed.
 */
enum { VS_ARE_YOU_DEAD = 1, VS_I_AM_NOT_DEAD = 2 };

struct vs_hdr {
  uint8_t type;
};

static size_t hdr_wire_size(const void *h) {
  (void)h;
  return 1;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  put_u8(w, ((const struct vs_hdr *)p)->type);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct vs_hdr *h = p;
  h->type = get_u8(r);
  if (h->type != VS_ARE_YOU_DEAD && h->type != VS_I_AM_NOT_DEAD) reader_fail(r, RS_EMALFORMED);
  if (r->err) h->type = 0;
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct vs_hdr *h = p;
  switch (h->type) {
  case VS_ARE_YOU_DEAD: return snprintf(buf, len, "ARE_YOU_DEAD");
  case VS_I_AM_NOT_DEAD: return snprintf(buf, len, "I_AM_NOT_DEAD");
  default: return snprintf(buf, len, "?%u", h->type);
  }
}

static const struct rs_header_type vs_header = {
    .id = VS_ID,
    .name = "VERIFY_SUSPECT",
    .size = sizeof(struct vs_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct pending {
  struct rs_addr addr;
  rs_time deadline;
};

struct vs_stats {
  uint64_t verifications, repeated, confirmed, unsuspected, cancelled, dropped_left;
  uint64_t ignored_self, ignored_non_member, overflow;
  uint64_t are_you_dead_sent, are_you_dead_received, not_dead_sent, not_dead_received;
  uint64_t stale_rsps, bad_dropped;
};

struct verify_suspect {
  struct rs_protocol base;
  /* Attributes. */
  rs_time timeout;
  int64_t num_msgs;
  bool use_mcast_rsps;
  /* State. */
  struct rs_view_data *view;
  struct pending *pending; /* in deadline order */
  size_t n_pending, cap_pending;
  struct rs_timer timer;
  struct rs_ratelimit rl_bad;
  struct vs_stats st;
};

#define VS(p) ((struct verify_suspect *)(p))

static rs_time now_of(struct verify_suspect *v) { return rs_now(v->base.rt); }

static void log_bad(struct verify_suspect *v, const struct rs_addr *src, const char *what) {
  v->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&v->base, RS_LOG_WARN) ||
      !ratelimit_ok(&v->rl_bad, now_of(v), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&v->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

static long find(const struct verify_suspect *v, const struct rs_addr *a) {
  for (size_t i = 0; i < v->n_pending; i++)
    if (rs_addr_eq(&v->pending[i].addr, a)) return (long)i;
  return -1;
}

static void remove_at(struct verify_suspect *v, size_t i) {
  memmove(&v->pending[i], &v->pending[i + 1], (v->n_pending - i - 1) * sizeof(*v->pending));
  v->n_pending--;
}

/* Removes a from verification; true if it was being verified. */
static bool remove_addr(struct verify_suspect *v, const struct rs_addr *a) {
  long i = find(v, a);
  if (i < 0) return false;
  remove_at(v, (size_t)i);
  return true;
}

static void arm(struct verify_suspect *v) {
  if (!v->n_pending) {
    rs_timer_stop(&v->timer);
    return;
  }
  rs_time now = now_of(v), d = v->pending[0].deadline;
  rs_timer_start(&v->timer, d > now ? d - now : 0, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */
static void send_type(struct verify_suspect *v, const struct rs_addr *to, uint8_t type) {
  struct rs_msg *m = rs_msg_new();
  if (!m) return;
  struct vs_hdr *h = rs_msg_put_header(m, &vs_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  if (to) m->dest = *to;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  proto_down_msg(&v->base, m);
}

static void ask(struct verify_suspect *v, const struct rs_addr *suspect) {
  for (int64_t i = 0; i < v->num_msgs; i++) {
    v->st.are_you_dead_sent++;
    send_type(v, suspect, VS_ARE_YOU_DEAD);
  }
}

static void answer(struct verify_suspect *v, const struct rs_addr *asker) {
  for (int64_t i = 0; i < v->num_msgs; i++) {
    v->st.not_dead_sent++;
    send_type(v, v->use_mcast_rsps ? NULL : asker, VS_I_AM_NOT_DEAD);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Verifying.
 */
static void verify(struct verify_suspect *v, const struct rs_addr *suspect) {
  struct rs_addr self = proto_local_addr(&v->base);
  if (rs_addr_eq(suspect, &self)) {
    v->st.ignored_self++;
    return;
  }
  if (v->view && !view_contains(v->view, suspect)) {
    v->st.ignored_non_member++;
    return;
  }
  if (find(v, suspect) >= 0) {
    v->st.repeated++; /* keeps its deadline; asked again below */
  } else {
    if (v->n_pending == RS_VIEW_MAX_MEMBERS) {
      v->st.overflow++;
      return;
    }
    if (v->n_pending == v->cap_pending) {
      size_t cap = v->cap_pending ? 2 * v->cap_pending : 8;
      struct pending *np = realloc(v->pending, cap * sizeof(*np));
      if (!np) {
        v->st.overflow++;
        return;
      }
      v->pending = np;
      v->cap_pending = cap;
    }
    v->pending[v->n_pending++] = (struct pending){*suspect, now_of(v) + v->timeout};
    v->st.verifications++;
    if (v->n_pending == 1) arm(v);
    char a[RS_ADDR_STRLEN];
    PLOG(&v->base, DEBUG, "verifying that %s is dead", rs_addr_format(suspect, a));
  }
  ask(v, suspect);
}

/* Deadlines that passed confirm their suspicions. GMS may act on each event at once (a new
 * view comes down and drops entries), so the head is looked at afresh after each one. */
static void on_deadline(struct rs_timer *t) {
  struct verify_suspect *v =
      (struct verify_suspect *)((char *)t - offsetof(struct verify_suspect, timer));
  while (v->n_pending && v->pending[0].deadline <= now_of(v)) {
    struct rs_addr a = v->pending[0].addr;
    remove_at(v, 0);
    v->st.confirmed++;
    char s[RS_ADDR_STRLEN];
    PLOG(&v->base, INFO, "%s did not answer within %" PRIu64 " ms: suspected",
         rs_addr_format(&a, s), v->timeout / RS_MS);
    struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = a};
    proto_up_event(&v->base, &ev);
  }
  arm(v);
}

static void on_not_dead(struct verify_suspect *v, const struct rs_addr *src) {
  v->st.not_dead_received++;
  if (!remove_addr(v, src)) {
    v->st.stale_rsps++; /* a copy, a late answer, or one we never asked for */
    return;
  }
  arm(v);
  v->st.unsuspected++;
  char a[RS_ADDR_STRLEN];
  PLOG(&v->base, INFO, "%s answered: not dead", rs_addr_format(src, a));
  struct rs_event ev = {.type = RS_EV_UNSUSPECT, .u.addr = *src};
  proto_down_event(&v->base, &ev);
  ev = (struct rs_event){.type = RS_EV_UNSUSPECT, .u.addr = *src};
  proto_up_event(&v->base, &ev);
}

/* ---------------------------------------------------------------------------------------------
 * Messages and events.
 */
static void vs_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct verify_suspect *v = VS(p);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct vs_hdr *h = rs_msg_header(m, VS_ID);
    if (!h) {
      rs_batch_add(&keep, m);
      continue;
    }
    struct rs_addr src = m->src;
    uint8_t type = h->type;
    rs_msg_free(m);
    if (type == VS_ARE_YOU_DEAD) {
      v->st.are_you_dead_received++;
      answer(v, &src);
    } else if (type == VS_I_AM_NOT_DEAD) {
      on_not_dead(v, &src);
    } else {
      log_bad(v, &src, "bad VERIFY_SUSPECT header");
    }
  }
  if (keep.n) proto_up_batch(p, &keep);
}

static int vs_up_event(struct rs_protocol *p, struct rs_event *ev) {
  struct verify_suspect *v = VS(p);
  switch (ev->type) {
  case RS_EV_SUSPECT: verify(v, &ev->u.addr); return 0; /* goes up later, if confirmed */
  case RS_EV_UNSUSPECT:
    if (remove_addr(v, &ev->u.addr)) {
      v->st.cancelled++;
      arm(v);
    }
    return proto_up_event(p, ev);
  default: return proto_up_event(p, ev);
  }
}

static void set_view(struct verify_suspect *v, const struct rs_view_data *view) {
  view_unref(v->view);
  v->view = view_ref((struct rs_view_data *)view);
  for (size_t i = 0; i < v->n_pending;) {
    if (view_contains(view, &v->pending[i].addr)) {
      i++;
      continue;
    }
    remove_at(v, i);
    v->st.dropped_left++;
  }
  arm(v);
}

static int vs_down_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE && ev->u.view) set_view(VS(p), ev->u.view);
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int vs_init(struct rs_protocol *p) {
  rs_timer_init(&VS(p)->timer, p->rt, on_deadline);
  return 0;
}

static void vs_stop(struct rs_protocol *p) {
  struct verify_suspect *v = VS(p);
  rs_timer_stop(&v->timer);
  v->n_pending = 0;
  view_unref(v->view);
  v->view = NULL;
}

static void vs_destroy(struct rs_protocol *p) {
  struct verify_suspect *v = VS(p);
  vs_stop(p);
  free(v->pending);
  v->pending = NULL;
  v->cap_pending = 0;
}

static void vs_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct verify_suspect *v = VS(p);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"verifications", v->st.verifications},
      {"repeated_suspicions", v->st.repeated},
      {"confirmed", v->st.confirmed},
      {"unsuspected", v->st.unsuspected},
      {"cancelled", v->st.cancelled},
      {"dropped_left", v->st.dropped_left},
      {"ignored_self", v->st.ignored_self},
      {"ignored_non_member", v->st.ignored_non_member},
      {"overflow", v->st.overflow},
      {"are_you_dead_sent", v->st.are_you_dead_sent},
      {"are_you_dead_received", v->st.are_you_dead_received},
      {"i_am_not_dead_sent", v->st.not_dead_sent},
      {"i_am_not_dead_received", v->st.not_dead_received},
      {"stale_rsps", v->st.stale_rsps},
      {"bad_dropped", v->st.bad_dropped},
      {"verifying", v->n_pending},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr vs_attrs[] = {
    {"timeout", RS_ATTR_DURATION, offsetof(struct verify_suspect, timeout), "2s", 1, 3600000,
     "time a suspect has to answer ARE_YOU_DEAD before its suspicion goes on to GMS", 0, NULL},
    {"num_msgs", RS_ATTR_INT, offsetof(struct verify_suspect, num_msgs), "1", 1, 100,
     "copies of each ARE_YOU_DEAD and I_AM_NOT_DEAD sent (they are not retransmitted)", 0, NULL},
    {"use_mcast_rsps", RS_ATTR_BOOL, offsetof(struct verify_suspect, use_mcast_rsps), "false", 0, 0,
     "answer ARE_YOU_DEAD with a multicast, so every member verifying us hears it", 0, NULL},
    IGNORED("use_icmp", "ICMP echo needs raw sockets; members are asked with ARE_YOU_DEAD"),
    IGNORED("bind_addr", "only used by use_icmp"),
    RS_ATTR_END,
};

static const char *const vs_aliases[] = {"VERIFY_SUSPECT2", NULL};

const struct rs_protocol_ops verify_suspect_protocol = {
    .name = "VERIFY_SUSPECT",
    .aliases = vs_aliases,
    .id = VS_ID,
    .size = sizeof(struct verify_suspect),
    .description = "verifies a suspicion by asking the suspect directly before GMS acts on it",
    .attrs = vs_attrs,
    .header = &vs_header,
    .init = vs_init,
    .stop = vs_stop,
    .destroy = vs_destroy,
    .up_batch = vs_up_batch,
    .down_event = vs_down_event,
    .up_event = vs_up_event,
    .stats = vs_stats,
};

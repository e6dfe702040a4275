/* FD_ALL3: failure detection by heartbeats; a member not heard from for `timeout` is suspected. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' FD_ALL3 and its base FailureDetection, reimplemented):
 *
 * - Every `interval` each member multicasts a HEARTBEAT (OOB|NO_FC, not looped back), unless it
 *   multicast something else since the previous tick: receivers count any message as a sign of
 *   life, so that message already did the heartbeat's job (JGroups suppresses it the same way).
 *   Heartbeats start with a view of two or more members.
 * - Any message or batch from a member of the view counts as a sign of life. JGroups keeps per
 *   member a bitmap of timeout/interval bits, one per interval, set when something arrives; the
 *   member is suspected when all bits are clear. Choice: the equivalent with one number, the time
 *   it was last heard from. The check runs every `interval`, so a member is suspected between
 *   `timeout` and `timeout + interval` after the last thing it sent arrived.
 * - Members come from RS_EV_VIEW_CHANGE passing down (the view is kept with view_ref). A new
 *   member starts as "heard now"; members that left are forgotten; we never suspect ourselves.
 * - Reporting, as JGroups does: of the members that suspect someone, only the one that would be
 *   coordinator if the suspects were gone (the first member of the view not suspected) passes
 *   RS_EV_SUSPECT up, once per member and suspicion. The others keep the suspicion and report it
 *   if they become that member (when the coordinator is suspected as well). So one member, not
 *   the whole group, asks VERIFY_SUSPECT to verify and GMS to act.
 * - A suspected member that is heard from again is no longer suspected; if its suspicion was
 *   reported, RS_EV_UNSUSPECT goes up (GMS) and down (FD_SOCK). RS_EV_UNSUSPECT coming down
 *   (VERIFY_SUSPECT got an answer) clears the suspicion and counts as hearing from the member,
 *   so it is suspected again only after another `timeout` of silence.
 * - A new view clears every suspicion (the silence measured so far is kept): a member still
 *   silent is suspected, and reported, again at the next check. JGroups' checker re-reports
 *   silent members on every check; once per view is enough for GMS and keeps VERIFY_SUSPECT from
 *   re-verifying a member it already confirmed.
 */

#define FD_ALL3_ID 70
#define RL_INTERVAL (5 * RS_SEC)

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 70), on heartbeats only. Byte layout (docs/wire-format.md, FD_ALL3):
 *
 *   type u8 (1 = HEARTBEAT)
 *
 * JGroups' heartbeat header is empty; the type byte leaves room for later kinds. Any other value
 * makes the header malformed.
 */
enum { HB_HEARTBEAT = 1 };

struct hb_hdr {
  uint8_t type;
};

static size_t hdr_wire_size(const void *h) {
  (void)h;
  return 1;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  put_u8(w, ((const struct hb_hdr *)p)->type);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct hb_hdr *h = p;
  h->type = get_u8(r);
  if (h->type != HB_HEARTBEAT) reader_fail(r, RS_EMALFORMED);
  if (r->err) h->type = 0;
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct hb_hdr *h = p;
  return h->type == HB_HEARTBEAT ? snprintf(buf, len, "HEARTBEAT")
                                 : snprintf(buf, len, "?%u", h->type);
}

static const struct rs_header_type hb_header = {
    .id = FD_ALL3_ID,
    .name = "FD_ALL3",
    .size = sizeof(struct hb_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct member {
  struct rs_addr addr;
  rs_time last_heard;
  bool suspected;
  bool reported; /* RS_EV_SUSPECT went up for this suspicion */
};

struct fd_stats {
  uint64_t heartbeats_sent, heartbeats_suppressed, heartbeats_received;
  uint64_t suspicions, suspect_events, unsuspect_events, bad_dropped;
};

struct fd_all3 {
  struct rs_protocol base;
  /* Attributes. */
  rs_time interval;
  rs_time timeout;
  /* State. */
  struct rs_view_data *view;
  struct member *mbrs; /* the view's members but ourselves, sorted by address */
  size_t n_mbrs;
  bool mcast_sent; /* a multicast went down since the previous tick */
  struct rs_timer timer;
  struct rs_ratelimit rl_bad;
  struct fd_stats st;
};

#define FD(p) ((struct fd_all3 *)(p))

static rs_time now_of(struct fd_all3 *f) { return rs_now(f->base.rt); }

static int member_cmp(const void *a, const void *b) {
  return rs_addr_cmp(&((const struct member *)a)->addr, &((const struct member *)b)->addr);
}

static struct member *find(struct fd_all3 *f, const struct rs_addr *a) {
  struct member key = {.addr = *a};
  return f->n_mbrs ? bsearch(&key, f->mbrs, f->n_mbrs, sizeof(key), member_cmp) : NULL;
}

static void log_bad(struct fd_all3 *f, const struct rs_addr *src, const char *what) {
  f->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&f->base, RS_LOG_WARN) ||
      !ratelimit_ok(&f->rl_bad, now_of(f), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&f->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

/* ---------------------------------------------------------------------------------------------
 * Suspecting and reporting.
 */

/* True when we are the first member of the view that is not suspected. */
static bool would_be_coord(struct fd_all3 *f) {
  struct rs_addr self = proto_local_addr(&f->base);
  for (size_t i = 0; f->view && i < f->view->n; i++) {
    const struct rs_addr *a = &f->view->members[i];
    if (rs_addr_eq(a, &self)) return true;
    const struct member *m = find(f, a);
    if (!m || !m->suspected) return false;
  }
  return false;
}

/* Reports every suspicion not reported yet, if it is ours to report. Each event may change the
 * view under us (GMS acting at once), so the table is looked at afresh after each one. */
static void report(struct fd_all3 *f) {
  for (;;) {
    if (!would_be_coord(f)) return;
    struct member *m = NULL;
    for (size_t i = 0; i < f->n_mbrs && !m; i++)
      if (f->mbrs[i].suspected && !f->mbrs[i].reported) m = &f->mbrs[i];
    if (!m) return;
    m->reported = true;
    f->st.suspect_events++;
    char a[RS_ADDR_STRLEN];
    PLOG(&f->base, INFO, "suspecting %s: not heard from for %" PRIu64 " ms",
         rs_addr_format(&m->addr, a), (now_of(f) - m->last_heard) / RS_MS);
    struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = m->addr};
    proto_up_event(&f->base, &ev);
  }
}

/* Something arrived from addr: it lives. */
static void heard(struct fd_all3 *f, const struct rs_addr *addr) {
  struct member *m = find(f, addr);
  if (!m) return; /* not a member (or ourselves): nothing to watch */
  m->last_heard = now_of(f);
  if (!m->suspected) return;
  m->suspected = false;
  if (!m->reported) return;
  m->reported = false;
  f->st.unsuspect_events++;
  char a[RS_ADDR_STRLEN];
  PLOG(&f->base, INFO, "unsuspecting %s: heard from it again", rs_addr_format(addr, a));
  struct rs_event ev = {.type = RS_EV_UNSUSPECT, .u.addr = *addr};
  proto_up_event(&f->base, &ev);
  ev = (struct rs_event){.type = RS_EV_UNSUSPECT, .u.addr = *addr};
  proto_down_event(&f->base, &ev);
}

static void send_heartbeat(struct fd_all3 *f) {
  struct rs_msg *m = rs_msg_new();
  if (!m) return;
  struct hb_hdr *h = rs_msg_put_header(m, &hb_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = HB_HEARTBEAT;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  m->tflags = RS_MSG_DONT_LOOPBACK;
  f->st.heartbeats_sent++;
  proto_down_msg(&f->base, m);
}

/* Every interval: a heartbeat, then the check. */
static void on_tick(struct rs_timer *t) {
  struct fd_all3 *f = (struct fd_all3 *)((char *)t - offsetof(struct fd_all3, timer));
  bool mcast_sent = f->mcast_sent;
  f->mcast_sent = false;
  if (!f->n_mbrs) return; /* alone (or no view yet): nobody to tell, nobody to watch */
  if (mcast_sent)
    f->st.heartbeats_suppressed++;
  else
    send_heartbeat(f);
  rs_time now = now_of(f);
  for (size_t i = 0; i < f->n_mbrs; i++) {
    struct member *m = &f->mbrs[i];
    if (m->suspected || now - m->last_heard < f->timeout) continue;
    m->suspected = true;
    f->st.suspicions++;
  }
  report(f);
}

/* ---------------------------------------------------------------------------------------------
 * Views.
 */

/* Keeps what we know of members that stay (their silence so far), starts new ones as heard now,
 * forgets those that left, and clears every suspicion (see the design note). */
static int set_view(struct fd_all3 *f, const struct rs_view_data *v) {
  struct member *nm = calloc(v->n ? v->n : 1, sizeof(*nm));
  if (!nm) return RS_ENOMEM;
  struct rs_addr self = proto_local_addr(&f->base);
  rs_time now = now_of(f);
  size_t k = 0;
  for (size_t i = 0; i < v->n; i++) {
    if (rs_addr_eq(&v->members[i], &self)) continue;
    const struct member *old = find(f, &v->members[i]);
    nm[k].addr = v->members[i];
    nm[k].last_heard = old ? old->last_heard : now;
    k++;
  }
  qsort(nm, k, sizeof(*nm), member_cmp);
  size_t u = 0; /* a view never lists a member twice; drop duplicates if one does */
  for (size_t i = 0; i < k; i++)
    if (!u || !rs_addr_eq(&nm[u - 1].addr, &nm[i].addr)) nm[u++] = nm[i];
  free(f->mbrs);
  f->mbrs = nm;
  f->n_mbrs = u;
  view_unref(f->view);
  f->view = view_ref((struct rs_view_data *)v);
  return 0;
}

static void forget_all(struct fd_all3 *f) {
  view_unref(f->view);
  f->view = NULL;
  free(f->mbrs);
  f->mbrs = NULL;
  f->n_mbrs = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Messages and events.
 */
static int fd_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  if (rs_msg_is_multicast(m)) FD(p)->mcast_sent = true;
  return proto_down_msg(p, m);
}

/* The batch's sender lives; heartbeats end here, everything else goes up. */
static void fd_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct fd_all3 *f = FD(p);
  heard(f, &b->src);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct hb_hdr *h = rs_msg_header(m, FD_ALL3_ID);
    if (!h) {
      rs_batch_add(&keep, m);
      continue;
    }
    if (h->type == HB_HEARTBEAT)
      f->st.heartbeats_received++;
    else
      log_bad(f, &m->src, "bad FD_ALL3 header");
    rs_msg_free(m);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

static int fd_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct fd_all3 *f = FD(p);
  switch (ev->type) {
  case RS_EV_VIEW_CHANGE:
    if (ev->u.view && set_view(f, ev->u.view) != 0)
      PLOG(p, ERROR, "out of memory: kept the previous view");
    break;
  case RS_EV_UNSUSPECT: {
    /* VERIFY_SUSPECT heard from it: start its silence afresh. */
    struct member *m = find(f, &ev->u.addr);
    if (m) {
      m->suspected = m->reported = false;
      m->last_heard = now_of(f);
    }
    break;
  }
  default: break;
  }
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int fd_init(struct rs_protocol *p) {
  struct fd_all3 *f = FD(p);
  rs_timer_init(&f->timer, p->rt, on_tick); /* first: destroy stops it even after a failed init */
  if (f->interval >= f->timeout)
    return proto_error(p, "interval (%" PRIu64 " ms) must be less than timeout (%" PRIu64 " ms)",
                       f->interval / RS_MS, f->timeout / RS_MS);
  return 0;
}

static int fd_start(struct rs_protocol *p) {
  struct fd_all3 *f = FD(p);
  f->mcast_sent = false;
  rs_timer_start(&f->timer, f->interval, f->interval);
  return 0;
}

static void fd_stop(struct rs_protocol *p) {
  struct fd_all3 *f = FD(p);
  rs_timer_stop(&f->timer);
  forget_all(f);
}

static void fd_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct fd_all3 *f = FD(p);
  uint64_t suspected = 0;
  for (size_t i = 0; i < f->n_mbrs; i++)
    suspected += f->mbrs[i].suspected;
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"heartbeats_sent", f->st.heartbeats_sent},
      {"heartbeats_suppressed", f->st.heartbeats_suppressed},
      {"heartbeats_received", f->st.heartbeats_received},
      {"suspicions", f->st.suspicions},
      {"suspect_events", f->st.suspect_events},
      {"unsuspect_events", f->st.unsuspect_events},
      {"bad_dropped", f->st.bad_dropped},
      {"members", f->n_mbrs},
      {"suspected", suspected},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr fd_attrs[] = {
    {"interval", RS_ATTR_DURATION, offsetof(struct fd_all3, interval), "8s", 1, 3600000,
     "period of heartbeats and of the check for silent members; less than timeout", 0, NULL},
    {"timeout", RS_ATTR_DURATION, offsetof(struct fd_all3, timeout), "40s", 2, 86400000,
     "a member not heard from for this long is suspected (within timeout + interval)", 0, NULL},
    IGNORED("timeout_check_interval", "FD_ALL's; FD_ALL3 checks every interval"),
    IGNORED("use_time_service", "time comes from the runtime"),
    IGNORED("msg_counts_as_heartbeat", "every message counts as a heartbeat"),
    RS_ATTR_END,
};

const struct rs_protocol_ops fd_all3_protocol = {
    .name = "FD_ALL3",
    .id = FD_ALL3_ID,
    .size = sizeof(struct fd_all3),
    .description = "failure detection by multicast heartbeats: a member silent for timeout is "
                   "suspected",
    .attrs = fd_attrs,
    .header = &hb_header,
    .init = fd_init,
    .start = fd_start,
    .stop = fd_stop,
    .destroy = fd_stop,
    .down_msg = fd_down_msg,
    .up_batch = fd_up_batch,
    .down_event = fd_down_event,
    .stats = fd_stats,
};

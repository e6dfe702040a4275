/* MERGE3: finds subgroups after a partition heals and asks GMS to merge them into one view. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' MERGE3, reimplemented in our own terms):
 *
 * - Gossip. Every member that has a view multicasts an INFO message at random intervals, each
 *   drawn uniformly from [min_interval, max_interval] (JGroups draws from about 0.5 to 1.5 times
 *   max_interval; the brief asks for the configured range, which also honours min_interval as a
 *   real lower bound). INFO says who sent it, its logical name and physical address, the id of its
 *   view (creator, id) and that view's coordinator. On a transport that cannot multicast (TCP)
 *   the transport sends it to every member it knows (tp_group_targets), as it does for any group
 *   message; INFO is not looped back to its sender.
 * - Every receiver teaches the transport the sender's name and physical address
 *   (RS_EV_ADD_PHYSICAL_ADDRESS), so members of another subgroup become reachable. A coordinator
 *   also records, per sender, the view id it reported and that view's coordinator: at most one
 *   entry per sender, replaced by the sender's next INFO, dropped once older than twice
 *   max_interval (a live member refreshes its entry at least once per max_interval, so one lost
 *   INFO is tolerated; an older entry is a member gone), and at most RS_VIEW_MAX_MEMBERS entries
 *   (a new sender then replaces the stalest one). Other members keep no entries: they only
 *   become coordinator through a view change, and a view change clears the entries anyway (as in
 *   JGroups: a new view makes what was collected about the old one meaningless).
 * - Checking. A coordinator checks what it collected every check_interval (default: 1.6 x
 *   max_interval, as JGroups computes it, so that every member sent at least one INFO in between;
 *   a configured value not above max_interval is replaced by that with a warning, as JGroups does;
 *   the check timer restarts at every view change so the first check sees a full interval of
 *   INFO). If an entry reports a view id other than ours, there are subgroups. Their coordinators
 *   are ourselves and the coordinators the differing entries named.
 * - Merge leader (choice, JGRP-1387's rule): only the coordinator with the lowest address among
 *   those found goes on; the others do nothing, so that two subgroups never start competing
 *   merges. (JGroups 4+ lets every member check and has GMS pick the leader; here only
 *   coordinators check, which also keeps VIEW_REQ traffic to one round per check in the whole
 *   cluster. GMS checks again that it is coordinator.) Known limit: when the lowest coordinator
 *   cannot hear the others (an asymmetric partition) nobody merges until that changes.
 * - The leader asks every other coordinator for its current view (VIEW_REQ, unicast; VIEW_RSP
 *   carries the full view in view.h's wire form), at most max_participants_in_merge coordinators
 *   in all (the lowest addresses; itself included). A round number in both messages pairs
 *   answers with their request, so a late answer to an earlier round is ignored. When every
 *   coordinator answered, or after check_interval / 10 (JGroups' wait) with what came, the
 *   distinct views (by view id) go up in one RS_EV_MERGE if there are at least two: ours first,
 *   then the others in the order of their coordinators' addresses. The entries are then cleared,
 *   so the next check works on fresh INFO. Without a merge (GMS busy or absent) the next check
 *   finds the subgroups again and raises MERGE again, one check_interval later.
 * - GMS owns the merge: the views in RS_EV_MERGE are valid during the call; GMS takes a
 *   reference (view_ref) on any it keeps.
 * - Control messages (INFO, VIEW_REQ, VIEW_RSP) are OOB|NO_FC. Bad input (unknown types, null
 *   addresses, a view that does not contain its sender or names a member twice, truncated or
 *   oversized payloads) is dropped and counted with work bounded by the message's size.
 */

#define MERGE3_ID 38
#define MAX_ENTRIES RS_VIEW_MAX_MEMBERS
#define RL_INTERVAL (5 * RS_SEC)
#define ENTRY_LIFETIME_INTERVALS 2 /* entries live this many max_intervals */

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 38). Byte layout (docs/wire-format.md, MERGE3):
 *
 *   INFO (0):     type u8 | view creator (16) | view id varint | coordinator (16)
 *                 payload: name (varint length + bytes, at most 127) | physical address
 *   VIEW_REQ (1): type u8 | round varint
 *   VIEW_RSP (2): type u8 | round varint
 *                 payload: the view (put_view: creator | id | flags | n | n x (addr | name))
 *
 * Another type, or a null creator or coordinator in INFO, makes the header malformed.
 */
enum { M3_INFO = 0, M3_VIEW_REQ = 1, M3_VIEW_RSP = 2 };

struct m3_hdr {
  struct rs_addr creator; /* INFO: the sender's view id is (creator, id) */
  struct rs_addr coord;   /* INFO: the coordinator of the sender's view */
  uint64_t id;            /* INFO: view id; VIEW_REQ and VIEW_RSP: the round */
  uint8_t type;
};
_Static_assert(sizeof(struct m3_hdr) <= RS_HDR_INLINE, "MERGE3 header must fit inline");

static size_t hdr_wire_size(const void *p) {
  const struct m3_hdr *h = p;
  return 1 + varint_size(h->id) + (h->type == M3_INFO ? 32 : 0);
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct m3_hdr *h = p;
  put_u8(w, h->type);
  if (h->type == M3_INFO) {
    put_addr(w, &h->creator);
    put_varint(w, h->id);
    put_addr(w, &h->coord);
  } else {
    put_varint(w, h->id);
  }
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct m3_hdr *h = p;
  *h = (struct m3_hdr){0};
  h->type = get_u8(r);
  if (h->type > M3_VIEW_RSP) reader_fail(r, RS_EMALFORMED);
  if (h->type == M3_INFO) {
    h->creator = get_addr(r);
    h->id = get_varint(r);
    h->coord = get_addr(r);
    if (rs_addr_is_null(&h->creator) || rs_addr_is_null(&h->coord)) reader_fail(r, RS_EMALFORMED);
  } else {
    h->id = get_varint(r);
  }
  if (r->err) *h = (struct m3_hdr){0};
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct m3_hdr *h = p;
  char c[RS_ADDR_STRLEN], k[RS_ADDR_STRLEN];
  switch (h->type) {
  case M3_INFO:
    return snprintf(buf, len, "INFO view=[%s|%" PRIu64 "] coord=%s", rs_addr_format(&h->creator, c),
                    h->id, rs_addr_format(&h->coord, k));
  case M3_VIEW_REQ: return snprintf(buf, len, "VIEW_REQ round=%" PRIu64, h->id);
  case M3_VIEW_RSP: return snprintf(buf, len, "VIEW_RSP round=%" PRIu64, h->id);
  default: return snprintf(buf, len, "?");
  }
}

static const struct rs_header_type m3_header = {
    .id = MERGE3_ID,
    .name = "MERGE3",
    .size = sizeof(struct m3_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */

/* What one sender last reported in INFO (kept by coordinators only). */
struct entry {
  struct rs_addr sender;
  struct rs_addr creator, coord; /* its view id's creator, its view's coordinator */
  uint64_t view_id;
  rs_time seen;
};

/* A VIEW_REQ round of the merge leader: coords[0] is ourselves, views[i] the answer of
 * coords[i] (one reference) or NULL. */
struct round {
  uint64_t id; /* 0: no round under way */
  size_t n, answered;
  struct rs_addr *coords;
  struct rs_view_data **views;
};

struct m3_stats {
  uint64_t info_sent, info_received, mappings_learned;
  uint64_t checks, subgroups_found, not_leader;
  uint64_t view_reqs_sent, view_reqs_received, view_rsps_sent, view_rsps_received;
  uint64_t rounds_timed_out, stale_rsps, merges_triggered;
  uint64_t entries_expired, entries_evicted, bad_dropped;
};

struct merge3 {
  struct rs_protocol base;
  /* Attributes. */
  rs_time min_interval, max_interval, check_interval;
  int64_t max_participants;
  /* State. */
  struct rs_view_data *view; /* the current view (one reference), or NULL */
  bool is_coord;
  struct entry *entries;
  size_t n_entries, cap_entries;
  uint64_t last_round;
  struct round round;
  struct rs_timer info_timer, check_timer, round_timer;
  struct rs_ratelimit rl_bad;
  struct m3_stats st;
};

#define M3(p) ((struct merge3 *)(p))
#define CONTAINER(ptr, field) ((struct merge3 *)((char *)(ptr)-offsetof(struct merge3, field)))

static rs_time now_of(struct merge3 *m) { return rs_now(m->base.rt); }

static void log_bad(struct merge3 *m, const struct rs_addr *src, const char *what) {
  m->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&m->base, RS_LOG_WARN) ||
      !ratelimit_ok(&m->rl_bad, now_of(m), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&m->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

static bool same_view_id(const struct rs_view_data *v, const struct rs_addr *creator, uint64_t id) {
  return v && v->id == id && rs_addr_eq(&v->creator, creator);
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */
static void send_msg(struct merge3 *m, struct rs_msg *msg, const struct m3_hdr *hdr) {
  struct m3_hdr *h = msg ? rs_msg_put_header(msg, &m3_header) : NULL;
  if (!h) {
    rs_msg_free(msg);
    return;
  }
  *h = *hdr;
  msg->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  proto_down_msg(&m->base, msg);
}

/* A message whose payload is what w holds (NULL on error); frees w's buffer. */
static struct rs_msg *msg_from(struct rs_writer *w) {
  struct rs_msg *msg = w->err ? NULL : rs_msg_new_copy(w->p, w->len);
  free(w->p);
  return msg;
}

static void send_info(struct merge3 *m) {
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS, .u.addr = RS_ADDR_NULL};
  if (proto_down_event(&m->base, &ev) != 0) ev.phys.family = RS_PHYS_NONE;
  struct rs_writer w;
  writer_init_grow(&w, 1 + RS_NAME_MAX + 1 + 19);
  put_str(&w, proto_local_name(&m->base));
  put_phys(&w, &ev.phys);
  struct rs_msg *msg = msg_from(&w);
  if (!msg) return;
  msg->tflags |= RS_MSG_DONT_LOOPBACK;
  struct m3_hdr h = {.type = M3_INFO,
                     .creator = m->view->creator,
                     .id = m->view->id,
                     .coord = *view_coord(m->view)};
  m->st.info_sent++;
  send_msg(m, msg, &h);
}

static void send_view_req(struct merge3 *m, const struct rs_addr *to, uint64_t round) {
  struct rs_msg *msg = rs_msg_new();
  if (!msg) return;
  msg->dest = *to;
  m->st.view_reqs_sent++;
  send_msg(m, msg, &(struct m3_hdr){.type = M3_VIEW_REQ, .id = round});
}

static void send_view_rsp(struct merge3 *m, const struct rs_addr *to, uint64_t round) {
  struct rs_writer w;
  writer_init_grow(&w, view_wire_size(m->view));
  put_view(&w, m->view);
  struct rs_msg *msg = msg_from(&w);
  if (!msg) return;
  msg->dest = *to;
  m->st.view_rsps_sent++;
  send_msg(m, msg, &(struct m3_hdr){.type = M3_VIEW_RSP, .id = round});
}

/* The next INFO after a random interval in [min_interval, max_interval]. */
static void schedule_info(struct merge3 *m) {
  rs_timer_start(&m->info_timer, rs_random_range(m->base.rt, m->min_interval, m->max_interval), 0);
}

static void info_due(struct rs_timer *t) {
  struct merge3 *m = CONTAINER(t, info_timer);
  if (!m->view || !m->view->n) return; /* no view (any more): nothing to report */
  send_info(m);
  schedule_info(m);
}

/* ---------------------------------------------------------------------------------------------
 * Entries (coordinators only).
 */
static void clear_entries(struct merge3 *m) { m->n_entries = 0; }

static void remove_entry(struct merge3 *m, size_t i) { m->entries[i] = m->entries[--m->n_entries]; }

static void expire_entries(struct merge3 *m) {
  rs_time now = now_of(m), life = ENTRY_LIFETIME_INTERVALS * m->max_interval;
  for (size_t i = 0; i < m->n_entries;) {
    if (now - m->entries[i].seen > life) {
      m->st.entries_expired++;
      remove_entry(m, i);
    } else {
      i++;
    }
  }
}

/* The entry of `sender`, made if needed: the table grows up to MAX_ENTRIES, then the stalest
 * entry makes room. NULL only without memory. */
static struct entry *entry_for(struct merge3 *m, const struct rs_addr *sender) {
  size_t stalest = 0;
  for (size_t i = 0; i < m->n_entries; i++) {
    if (rs_addr_eq(&m->entries[i].sender, sender)) return &m->entries[i];
    if (m->entries[i].seen < m->entries[stalest].seen) stalest = i;
  }
  if (m->n_entries == MAX_ENTRIES) {
    m->st.entries_evicted++;
    return &m->entries[stalest];
  }
  if (m->n_entries == m->cap_entries) {
    size_t cap = m->cap_entries ? m->cap_entries * 2 : 16;
    if (cap > MAX_ENTRIES) cap = MAX_ENTRIES;
    struct entry *e = realloc(m->entries, cap * sizeof(*e));
    if (!e) return NULL;
    m->entries = e;
    m->cap_entries = cap;
  }
  return &m->entries[m->n_entries++];
}

static void record(struct merge3 *m, const struct rs_addr *sender, const struct m3_hdr *h) {
  struct entry *e = entry_for(m, sender);
  if (!e) return;
  *e = (struct entry){.sender = *sender,
                      .creator = h->creator,
                      .coord = h->coord,
                      .view_id = h->id,
                      .seen = now_of(m)};
}

/* ---------------------------------------------------------------------------------------------
 * The merge round.
 */
static void round_free(struct round *r) {
  for (size_t i = 0; i < r->n; i++)
    view_unref(r->views[i]);
  free(r->views);
  free(r->coords);
  *r = (struct round){0};
}

static void cancel_round(struct merge3 *m) {
  rs_timer_stop(&m->round_timer);
  round_free(&m->round);
}

static bool has_view_id(struct rs_view_data *const *v, size_t n, const struct rs_view_data *x) {
  for (size_t i = 0; i < n; i++)
    if (view_id_cmp(v[i], x) == 0) return true;
  return false;
}

/* Raises RS_EV_MERGE with the distinct views collected (ours first), if there are two or more.
 * The round is detached first: GMS may install a view (and so reset our state) during the
 * call. */
static void finish_round(struct merge3 *m) {
  struct round r = m->round;
  m->round = (struct round){0};
  rs_timer_stop(&m->round_timer);
  clear_entries(m);
  size_t n = 0;
  for (size_t i = 0; i < r.n; i++)
    if (r.views[i] && !has_view_id(r.views, n, r.views[i])) {
      struct rs_view_data *v = r.views[i];
      r.views[i] = r.views[n]; /* n <= i: compact the distinct views to the front */
      r.views[n++] = v;
    }
  if (n >= 2) {
    char buf[256];
    PLOG(&m->base, INFO, "%zu subgroups found; asking GMS to merge (first: %s)", n,
         view_format(r.views[0], buf, sizeof(buf)));
    struct rs_event ev = {.type = RS_EV_MERGE, .u.merge = {.views = r.views, .n = n}};
    m->st.merges_triggered++;
    proto_up_event(&m->base, &ev);
  }
  round_free(&r);
}

static void round_timeout(struct rs_timer *t) {
  struct merge3 *m = CONTAINER(t, round_timer);
  m->st.rounds_timed_out++;
  finish_round(m);
}

/* Asks coords[1..n) for their views; coords[0] is ourselves. Takes coords. */
static void start_round(struct merge3 *m, struct rs_addr *coords, size_t n) {
  struct rs_view_data **views = calloc(n, sizeof(*views));
  if (!views) {
    free(coords);
    return;
  }
  m->round = (struct round){
      .id = ++m->last_round, .n = n, .answered = 1, .coords = coords, .views = views};
  views[0] = view_ref(m->view);
  for (size_t i = 1; i < n; i++)
    send_view_req(m, &coords[i], m->round.id);
  rs_timer_start(&m->round_timer, m->check_interval / 10, 0);
}

static int addr_cmp_qsort(const void *a, const void *b) { return rs_addr_cmp(a, b); }

/* Sorts and removes duplicates; returns the new count. */
static size_t sort_unique(struct rs_addr *v, size_t n) {
  if (!n) return 0;
  qsort(v, n, sizeof(*v), addr_cmp_qsort);
  size_t k = 1;
  for (size_t i = 1; i < n; i++)
    if (!rs_addr_eq(&v[i], &v[k - 1])) v[k++] = v[i];
  return k;
}

/* Ourselves and the coordinators of the other view ids reported, sorted, without duplicates, in
 * a malloc'd array (NULL without memory). */
static struct rs_addr *coords_found(struct merge3 *m, size_t *n_out) {
  struct rs_addr *c = malloc((m->n_entries + 1) * sizeof(*c));
  if (!c) return NULL;
  size_t n = 0;
  c[n++] = proto_local_addr(&m->base);
  for (size_t i = 0; i < m->n_entries; i++) {
    const struct entry *e = &m->entries[i];
    if (!same_view_id(m->view, &e->creator, e->view_id)) c[n++] = e->coord;
  }
  *n_out = sort_unique(c, n);
  return c;
}

static void check_due(struct rs_timer *t) {
  struct merge3 *m = CONTAINER(t, check_timer);
  m->st.checks++;
  if (!m->is_coord || m->round.id) return; /* a round is still collecting views */
  expire_entries(m);
  size_t n;
  struct rs_addr *coords = coords_found(m, &n);
  if (!coords) return;
  if (n < 2) {
    free(coords); /* one view id, or only stale reports of our own former views */
    return;
  }
  m->st.subgroups_found++;
  struct rs_addr self = proto_local_addr(&m->base);
  /* Ourselves, or ordered first; ascending order keeps the lowest addresses under the cap. */
  if (!rs_addr_eq(&coords[0], &self)) {
    m->st.not_leader++;
    free(coords);
    return;
  }
  if (m->max_participants > 0 && n > (size_t)m->max_participants) n = (size_t)m->max_participants;
  start_round(m, coords, n);
}

/* ---------------------------------------------------------------------------------------------
 * Receiving.
 */
static void on_info(struct merge3 *m, const struct rs_msg *msg, const struct m3_hdr *h) {
  char name[RS_NAME_MAX + 1];
  struct rs_reader r;
  reader_init(&r, msg->data, msg->len);
  get_str(&r, name, sizeof(name), RS_NAME_MAX);
  struct rs_phys phys = get_phys(&r);
  if (!r.err && reader_remaining(&r)) reader_fail(&r, RS_EMALFORMED);
  if (r.err) {
    log_bad(m, &msg->src, "malformed INFO payload");
    return;
  }
  m->st.info_received++;
  if (phys.family != RS_PHYS_NONE || name[0]) {
    struct rs_event ev = {.type = RS_EV_ADD_PHYSICAL_ADDRESS};
    ev.u.mapping.addr = msg->src;
    ev.u.mapping.phys = phys;
    ev.u.mapping.name = name[0] ? name : NULL;
    if (proto_down_event(&m->base, &ev) == 0) m->st.mappings_learned++;
  }
  if (m->is_coord) record(m, &msg->src, h);
}

static bool has_duplicates(const struct rs_view_data *v) {
  struct rs_addr *c = malloc((v->n ? v->n : 1) * sizeof(*c));
  if (!c) return true; /* cannot check: refuse */
  memcpy(c, v->members, v->n * sizeof(*c));
  bool dup = sort_unique(c, v->n) != v->n;
  free(c);
  return dup;
}

/* A view from the network, as its sender's: not empty, contains the sender, no member twice. */
static const char *view_problem(const struct rs_view_data *v, const struct rs_addr *src) {
  if (!v->n) return "empty view in VIEW_RSP";
  if (!view_contains(v, src)) return "VIEW_RSP view does not contain its sender";
  if (rs_addr_is_null(&v->creator)) return "VIEW_RSP view without creator";
  if (has_duplicates(v)) return "VIEW_RSP view names a member twice";
  return NULL;
}

/* The index of src among the coordinators asked in the round under way that did not answer
 * yet, or -1. */
static long awaited(const struct merge3 *m, const struct rs_addr *src, uint64_t round) {
  if (!m->round.id || round != m->round.id) return -1;
  for (size_t i = 1; i < m->round.n; i++)
    if (!m->round.views[i] && rs_addr_eq(&m->round.coords[i], src)) return (long)i;
  return -1;
}

static void on_view_rsp(struct merge3 *m, const struct rs_msg *msg, const struct m3_hdr *h) {
  m->st.view_rsps_received++;
  long i = awaited(m, &msg->src, h->id);
  if (i < 0) {
    m->st.stale_rsps++; /* an earlier round's, or not asked: not even decoded */
    return;
  }
  struct rs_reader r;
  reader_init(&r, msg->data, msg->len);
  struct rs_view_data *v = get_view(&r);
  if (!r.err && reader_remaining(&r)) reader_fail(&r, RS_EMALFORMED);
  const char *problem = r.err ? "malformed VIEW_RSP view" : view_problem(v, &msg->src);
  if (problem) {
    view_unref(v);
    log_bad(m, &msg->src, problem);
    return;
  }
  m->round.views[i] = v;
  if (++m->round.answered == m->round.n) finish_round(m);
}

/* One message with our header: handled and freed. */
static void on_msg(struct merge3 *m, struct rs_msg *msg, const struct m3_hdr *h) {
  struct rs_addr self = proto_local_addr(&m->base);
  if (rs_addr_eq(&msg->src, &self)) {
    rs_msg_free(msg); /* our own INFO, looped back by a network that does so */
    return;
  }
  switch (h->type) {
  case M3_INFO: on_info(m, msg, h); break;
  case M3_VIEW_REQ:
    m->st.view_reqs_received++;
    if (m->view && m->view->n) send_view_rsp(m, &msg->src, h->id);
    break;
  case M3_VIEW_RSP: on_view_rsp(m, msg, h); break;
  default: log_bad(m, &msg->src, "unknown MERGE3 message type"); break;
  }
  rs_msg_free(msg);
}

static void m3_up_msg(struct rs_protocol *p, struct rs_msg *msg) {
  const struct m3_hdr *h = rs_msg_header(msg, MERGE3_ID);
  if (!h) {
    proto_up_msg(p, msg);
    return;
  }
  on_msg(M3(p), msg, h);
}

/* Our messages are taken out of the batch; the rest goes up as one batch. */
static void m3_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *msg;
  while ((msg = rs_batch_pop(b))) {
    const struct m3_hdr *h = rs_msg_header(msg, MERGE3_ID);
    if (h)
      on_msg(M3(p), msg, h);
    else
      rs_batch_add(&keep, msg);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

/* ---------------------------------------------------------------------------------------------
 * Events.
 */

/* A new view: what was collected is about the old one; the checker restarts, so its first check
 * sees a full check_interval of INFO about the new view. */
static void on_view_change(struct merge3 *m, const struct rs_view_data *v) {
  view_unref(m->view);
  m->view = view_ref((struct rs_view_data *)v); /* views are immutable; only the count moves */
  cancel_round(m);
  clear_entries(m);
  struct rs_addr self = proto_local_addr(&m->base);
  const struct rs_addr *coord = view_coord(v);
  m->is_coord = coord && rs_addr_eq(coord, &self);
  if (m->is_coord)
    rs_timer_start(&m->check_timer, m->check_interval, m->check_interval);
  else
    rs_timer_stop(&m->check_timer);
  if (!rs_timer_active(&m->info_timer)) schedule_info(m);
}

static void reset(struct merge3 *m) {
  rs_timer_stop(&m->info_timer);
  rs_timer_stop(&m->check_timer);
  cancel_round(m);
  clear_entries(m);
  view_unref(m->view);
  m->view = NULL;
  m->is_coord = false;
}

static int m3_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct merge3 *m = M3(p);
  switch (ev->type) {
  case RS_EV_VIEW_CHANGE:
    if (ev->u.view) on_view_change(m, ev->u.view);
    break;
  case RS_EV_DISCONNECT: reset(m); break; /* leaving: no more INFO, no merges */
  default: break;
  }
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int m3_init(struct rs_protocol *p) {
  struct merge3 *m = M3(p);
  /* First: destroy (which stops them) runs even when init fails. */
  rs_timer_init(&m->info_timer, p->rt, info_due);
  rs_timer_init(&m->check_timer, p->rt, check_due);
  rs_timer_init(&m->round_timer, p->rt, round_timeout);
  if (m->min_interval >= m->max_interval)
    return proto_error(
        p, "min_interval (%" PRIu64 "ms) must be less than max_interval (%" PRIu64 "ms)",
        m->min_interval / RS_MS, m->max_interval / RS_MS);
  if (m->max_participants == 1)
    return proto_error(p, "max_participants_in_merge must be 0 (no limit) or at least 2");
  rs_time computed = m->max_interval * 16 / 10;
  if (m->check_interval && m->check_interval <= m->max_interval)
    PLOG(p, WARN,
         "check_interval (%" PRIu64 "ms) must exceed max_interval (%" PRIu64 "ms); using %" PRIu64
         "ms",
         m->check_interval / RS_MS, m->max_interval / RS_MS, computed / RS_MS);
  if (m->check_interval <= m->max_interval) m->check_interval = computed;
  return 0;
}

static void m3_stop(struct rs_protocol *p) { reset(M3(p)); }

static void m3_destroy(struct rs_protocol *p) {
  struct merge3 *m = M3(p);
  reset(m);
  free(m->entries);
  m->entries = NULL;
  m->cap_entries = 0;
}

static void m3_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct merge3 *m = M3(p);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"info_sent", m->st.info_sent},
      {"info_received", m->st.info_received},
      {"mappings_learned", m->st.mappings_learned},
      {"checks", m->st.checks},
      {"subgroups_found", m->st.subgroups_found},
      {"not_leader", m->st.not_leader},
      {"view_reqs_sent", m->st.view_reqs_sent},
      {"view_reqs_received", m->st.view_reqs_received},
      {"view_rsps_sent", m->st.view_rsps_sent},
      {"view_rsps_received", m->st.view_rsps_received},
      {"stale_rsps", m->st.stale_rsps},
      {"rounds_timed_out", m->st.rounds_timed_out},
      {"merges_triggered", m->st.merges_triggered},
      {"entries", m->n_entries},
      {"entries_expired", m->st.entries_expired},
      {"entries_evicted", m->st.entries_evicted},
      {"bad_dropped", m->st.bad_dropped},
      {"is_coord", m->is_coord},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr m3_attrs[] = {
    {"min_interval", RS_ATTR_DURATION, offsetof(struct merge3, min_interval), "1s", 0, 86400000,
     "shortest time between two INFO messages of a member (less than max_interval)", 0, NULL},
    {"max_interval", RS_ATTR_DURATION, offsetof(struct merge3, max_interval), "10s", 1, 86400000,
     "longest time between two INFO messages of a member; each interval is drawn uniformly from "
     "[min_interval, max_interval]",
     0, NULL},
    {"check_interval", RS_ATTR_DURATION, offsetof(struct merge3, check_interval), "0", 0, 864000000,
     "how often a coordinator looks for subgroups in the INFO it collected; 0 (or not above "
     "max_interval): 1.6 x max_interval",
     0, NULL},
    {"max_participants_in_merge", RS_ATTR_INT, offsetof(struct merge3, max_participants), "100", 0,
     RS_VIEW_MAX_MEMBERS,
     "most subgroups (coordinators, the merge leader included) one merge takes in; 0: no limit", 0,
     NULL},
    IGNORED("only_coords_run_consistency_checker",
            "deprecated in JGroups; here only coordinators check, and only the lowest one merges"),
    RS_ATTR_END,
};

const struct rs_protocol_ops merge3_protocol = {
    .name = "MERGE3",
    .id = MERGE3_ID,
    .size = sizeof(struct merge3),
    .description =
        "finds subgroups after a partition heals (INFO gossip of view ids) and asks GMS to merge",
    .attrs = m3_attrs,
    .header = &m3_header,
    .init = m3_init,
    .stop = m3_stop,
    .destroy = m3_destroy,
    .up_msg = m3_up_msg,
    .up_batch = m3_up_batch,
    .down_event = m3_down_event,
    .stats = m3_stats,
};

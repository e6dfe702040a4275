/* pbcast.GMS, the coordinator's view handler: queued requests become views, acks are collected. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/pbcast/gms.h"

/*
 * As JGroups' ViewHandler: join, leave and suspect requests wait in a queue (at most MAX_QUEUE,
 * each member and kind once), and a task handles them when the coordinator is free: not
 * collecting the acks of its previous view, and not in a merge. Everything queued by then becomes
 * one view, so requests that pile up behind a slow view are coalesced. The view is the old
 * membership minus the members leaving or suspected, followed by the new joiners in the order
 * they asked; its id is the old id + 1 and its creator its first member (the coordinator, or the
 * next member when the coordinator itself leaves). The coordinator installs it first, then
 * multicasts it, then answers: JOIN_RSP with the view and the digest (taken after the multicast)
 * to each joiner, LEAVE_RSP to each leaver. It waits for a VIEW_ACK from every member of the new
 * view (suspects excepted: they will not answer) for at most view_ack_collection_timeout before
 * it handles the next requests, so a member never gets two views at once from one coordinator
 * out of order with its acks.
 *
 * Beyond JGroups: the members whose acks are missing at the timeout are *laggards*, and the view
 * is multicast to them again, at once and then every view_ack_collection_timeout (at most
 * MAX_RESENDS times), until they ack, are suspected, or a newer view goes out, without holding up
 * the queue. A member that lost the view does not know it when the view was our last multicast:
 * NAKACK2 finds a gap only behind a later message (its HIGHEST_SEQNO announcement can be lost as
 * well), and STABLE cannot reveal it either, since it discards the gossip of a member whose view
 * differs. The copy's seqno reveals the gap, and NAKACK2 delivers the original and the copy in
 * order; the copy is then stale, and so it is for the members that had the view.
 */

#define MAX_QUEUE 1024 /* membership requests waiting at the coordinator; more are dropped */
#define MAX_RESENDS 10 /* multicasts of a view to its laggards */

static void queue_run(struct rs_task *t);
static void ack_timeout(struct rs_timer *t);
static void resend_fired(struct rs_timer *t);

void gms_coord_init(struct gms *g) {
  rs_timer_init(&g->ack_timer, g->base.rt, ack_timeout);
  rs_timer_init(&g->resend_timer, g->base.rt, resend_fired);
  rs_task_init(&g->queue_task, queue_run);
}

/* ---------------------------------------------------------------------------------------------
 * Laggards.
 */
static void resend_stop(struct gms *g) {
  rs_timer_stop(&g->resend_timer);
  view_unref(g->resend_view);
  g->resend_view = NULL;
  g->n_laggards = 0;
}

static void resend(struct gms *g) {
  g->st.views_resent++;
  gms_send_view(g, NULL, GMS_VIEW, 0, 0, g->resend_view, NULL);
  rs_timer_start(&g->resend_timer, g->view_ack_collection_timeout, 0);
}

/* The members still missing at the ack timeout become the laggards of the view. A merge view
 * went by UNICAST3, which repairs a lost last message itself. */
static void resend_start(struct gms *g) {
  resend_stop(g);
  if (!g->acking || g->acking->merge || !g->n_ack_missing) return;
  if (g->cap_laggards < g->n_ack_missing) {
    struct rs_addr *l = realloc(g->laggards, g->n_ack_missing * sizeof(*l));
    if (!l) return;
    g->laggards = l;
    g->cap_laggards = g->n_ack_missing;
  }
  memcpy(g->laggards, g->ack_missing, g->n_ack_missing * sizeof(*g->laggards));
  g->n_laggards = g->n_ack_missing;
  g->resend_view = view_ref(g->acking);
  g->resends = 0;
  resend(g);
}

static void resend_fired(struct rs_timer *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, resend_timer));
  if (!g->resend_view || !g->n_laggards || g->role != GMS_COORD || ++g->resends >= MAX_RESENDS) {
    resend_stop(g);
    return;
  }
  resend(g);
}

/* The view handler's state is the coordinator's alone: a member that stops being coordinator
 * forgets it (the joiners ask the new coordinator). */
void gms_coord_reset(struct gms *g) {
  g->n_queue = 0;
  g->collecting = false;
  rs_timer_stop(&g->ack_timer);
  view_unref(g->acking);
  g->acking = NULL;
  g->n_ack_missing = 0;
  rs_task_cancel(g->base.rt, &g->queue_task);
  resend_stop(g);
}

static bool queued(const struct gms *g, uint8_t type, const struct rs_addr *a) {
  for (size_t i = 0; i < g->n_queue; i++)
    if (g->queue[i].type == type && rs_addr_eq(&g->queue[i].addr, a)) return true;
  return false;
}

void gms_kick_queue(struct gms *g) {
  if (g->n_queue && g->role == GMS_COORD) rs_post(g->base.rt, &g->queue_task);
}

/* Queues a request (once per member and kind); false when the queue is full. */
bool gms_enqueue(struct gms *g, uint8_t type, const struct rs_addr *a, const char *name) {
  if (queued(g, type, a)) return true;
  if (g->n_queue == MAX_QUEUE) {
    g->st.requests_dropped++;
    return false;
  }
  if (g->n_queue == g->cap_queue) {
    size_t cap = g->cap_queue ? 2 * g->cap_queue : 8;
    struct gms_req *q = realloc(g->queue, cap * sizeof(*q));
    if (!q) {
      g->st.requests_dropped++;
      return false;
    }
    g->queue = q;
    g->cap_queue = cap;
  }
  struct gms_req *q = &g->queue[g->n_queue++];
  q->type = type;
  q->addr = *a;
  snprintf(q->name, sizeof(q->name), "%s", name ? name : "");
  gms_kick_queue(g);
  return true;
}

void gms_unqueue(struct gms *g, uint8_t type, const struct rs_addr *a) {
  size_t k = 0;
  for (size_t i = 0; i < g->n_queue; i++)
    if (g->queue[i].type != type || !rs_addr_eq(&g->queue[i].addr, a)) g->queue[k++] = g->queue[i];
  g->n_queue = k;
}

/* Whether a queued leave or suspicion removes a. */
static bool removed(const struct gms *g, const struct rs_addr *a) {
  for (size_t i = 0; i < g->n_queue; i++)
    if (g->queue[i].type != REQ_JOIN && rs_addr_eq(&g->queue[i].addr, a)) return true;
  return false;
}

/* The membership after the queued requests: old members in order minus those removed, then the
 * new joiners in the order they asked. NULL when nothing changes (or out of memory: *nomem). */
static struct rs_view_data *next_view(struct gms *g, size_t *joined, size_t *gone, bool *nomem) {
  const struct rs_view_data *old = g->view;
  size_t cap = old->n + g->n_queue, n = 0;
  struct rs_addr *mbrs = malloc(cap * sizeof(*mbrs));
  const char **names = malloc(cap * sizeof(*names));
  struct rs_view_data *v = NULL;
  *joined = *gone = 0;
  *nomem = !mbrs || !names;
  if (*nomem) goto out;
  for (size_t i = 0; i < old->n; i++) {
    if (removed(g, &old->members[i])) {
      ++*gone;
      continue;
    }
    mbrs[n] = old->members[i];
    names[n++] = old->names[i];
  }
  for (size_t i = 0; i < g->n_queue; i++) {
    const struct gms_req *q = &g->queue[i];
    if (q->type != REQ_JOIN || removed(g, &q->addr) || view_contains(old, &q->addr) ||
        gms_addr_in(mbrs, n, &q->addr))
      continue;
    if (n == RS_VIEW_MAX_MEMBERS) {
      g->st.requests_dropped++; /* it asks again, and finds no room or a later view */
      continue;
    }
    mbrs[n] = q->addr;
    names[n++] = q->name;
    ++*joined;
  }
  if ((*joined || *gone) && n) {
    v = view_new(&mbrs[0], old->id + 1, n, mbrs, names);
    *nomem = !v;
  }
out:
  free(mbrs);
  free(names);
  return v;
}

/* JOIN_RSP (view and digest) to every joiner in v, LEAVE_RSP to every leaver; empties the queue. */
static void answer_requests(struct gms *g, const struct rs_view_data *v) {
  struct rs_addr self = proto_local_addr(&g->base);
  struct rs_digest d = {0};
  bool have_digest = false;
  for (size_t i = 0; i < g->n_queue; i++) {
    const struct gms_req *q = &g->queue[i];
    if (q->type == REQ_JOIN && view_contains(v, &q->addr)) {
      if (!have_digest) gms_get_digest(g, &d);
      have_digest = true;
      gms_send_view(g, &q->addr, GMS_JOIN_RSP, 0, 0, v, &d);
    } else if (q->type == REQ_LEAVE && !rs_addr_eq(&q->addr, &self)) {
      gms_send(g, &q->addr, GMS_LEAVE_RSP, 0, 0, NULL, 0);
    }
  }
  digest_free(&d);
  g->n_queue = 0;
}

static void count_requests(struct gms *g, const struct rs_view_data *v) {
  for (size_t i = 0; i < g->n_queue; i++) {
    const struct gms_req *q = &g->queue[i];
    if (q->type == REQ_JOIN && view_contains(v, &q->addr) && !view_contains(g->view, &q->addr))
      g->st.joins_admitted++;
    else if (q->type == REQ_LEAVE && view_contains(g->view, &q->addr))
      g->st.leaves_handled++;
    else if (q->type == REQ_SUSPECT && view_contains(g->view, &q->addr))
      g->st.suspects_handled++;
  }
}

/* Everything queued becomes one view: installed here first (unless we are the leaver), then
 * multicast, then answered; the next view waits for the acks. */
void gms_handle_requests(struct gms *g) {
  size_t joined, gone;
  bool nomem;
  struct rs_view_data *v = next_view(g, &joined, &gone, &nomem);
  if (!v) {
    if (!nomem)
      answer_requests(g, g->view); /* nothing changes: joiners are members already */
    else
      g->n_queue = 0;
    return;
  }
  struct rs_addr self = proto_local_addr(&g->base);
  bool stays = view_contains(v, &self);
  if (stays && !rs_addr_eq(view_coord(v), &self)) {
    /* We took over from a suspected coordinator that is no longer suspected. */
    view_unref(v);
    g->role = GMS_PARTICIPANT;
    gms_coord_reset(g);
    return;
  }
  count_requests(g, v);
  if (stays) gms_install(g, view_ref(v), NULL, false);
  gms_send_view(g, NULL, GMS_VIEW, 0, 0, v, NULL);
  g->st.views_sent++;
  answer_requests(g, v);
  if (!stays) g->leave_cast = true;
  gms_collect_acks(g, v);
  view_unref(v);
}

static void queue_run(struct rs_task *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, queue_task));
  if (g->role != GMS_COORD || g->collecting || g->left || gms_merge_busy(g) || !g->n_queue) return;
  gms_handle_requests(g);
}

void gms_acks_done(struct gms *g) {
  g->collecting = false;
  rs_timer_stop(&g->ack_timer);
  view_unref(g->acking);
  g->acking = NULL;
  g->n_ack_missing = 0;
  if (g->leaving && g->leave_cast) {
    gms_finish_leave(g);
    return;
  }
  gms_kick_queue(g);
}

void gms_collect_acks(struct gms *g, struct rs_view_data *v) {
  struct rs_addr self = proto_local_addr(&g->base);
  resend_stop(g); /* a newer view: its seqno reveals any gap by itself */
  if (g->cap_ack_missing < v->n) {
    struct rs_addr *a = realloc(g->ack_missing, v->n * sizeof(*a));
    if (!a) {
      gms_acks_done(g);
      return;
    }
    g->ack_missing = a;
    g->cap_ack_missing = v->n;
  }
  g->n_ack_missing = 0;
  for (size_t i = 0; i < v->n; i++)
    if (!rs_addr_eq(&v->members[i], &self) &&
        !gms_addr_in(g->suspects, g->n_suspects, &v->members[i]))
      g->ack_missing[g->n_ack_missing++] = v->members[i];
  view_unref(g->acking);
  g->acking = view_ref(v);
  if (!g->n_ack_missing) {
    gms_acks_done(g);
    return;
  }
  g->collecting = true;
  rs_timer_start(&g->ack_timer, g->view_ack_collection_timeout, 0);
}

static void ack_timeout(struct rs_timer *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, ack_timer));
  g->st.view_ack_timeouts++;
  if (proto_log_enabled(&g->base, RS_LOG_WARN) && g->acking) {
    char v[256], who[256] = "", a[RS_ADDR_STRLEN];
    size_t off = 0;
    for (size_t k = 0; k < g->n_ack_missing && k < 4 && off < sizeof(who); k++) {
      long i = view_index(g->acking, &g->ack_missing[k]);
      const char *name = i >= 0 && g->acking->names[i][0] ? g->acking->names[i]
                                                          : rs_addr_format(&g->ack_missing[k], a);
      off += (size_t)snprintf(who + off, sizeof(who) - off, "%s%s", k ? ", " : "", name);
    }
    PLOG(&g->base, WARN, "no VIEW_ACK for %s within %" PRIu64 " ms from %zu member(s): %s%s",
         view_format(g->acking, v, sizeof(v)), g->view_ack_collection_timeout / RS_MS,
         g->n_ack_missing, who, g->n_ack_missing > 4 ? ", ..." : "");
  }
  resend_start(g);
  gms_acks_done(g);
}

void gms_on_view_ack(struct gms *g, const struct rs_msg *m) {
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  struct rs_addr creator = get_addr(&r);
  uint64_t id = get_varint(&r);
  if (r.err || r.pos != r.len) {
    gms_log_bad(g, &m->src, "malformed VIEW_ACK");
    return;
  }
  const struct rs_view_data *late = g->resend_view;
  if (late && id == late->id && rs_addr_eq(&creator, &late->creator)) {
    if (gms_addr_remove(g->laggards, &g->n_laggards, &m->src) && !g->n_laggards) resend_stop(g);
    return;
  }
  if (!g->collecting || id != g->acking->id || !rs_addr_eq(&creator, &g->acking->creator)) {
    g->st.stale_ignored++;
    return;
  }
  g->st.view_acks_received++;
  if (gms_addr_remove(g->ack_missing, &g->n_ack_missing, &m->src) && !g->n_ack_missing)
    gms_acks_done(g);
}

void gms_on_join_req(struct gms *g, const struct rs_msg *m) {
  g->st.join_reqs_received++;
  char name[RS_NAME_MAX + 1];
  struct rs_addr self = proto_local_addr(&g->base);
  if (gms_read_join_req(m, name) != 0 || rs_addr_eq(&m->src, &self)) {
    gms_log_bad(g, &m->src, "malformed JOIN_REQ");
    return;
  }
  if (g->role != GMS_COORD || g->leaving) {
    g->st.stale_ignored++; /* the joiner asks again, and finds the coordinator */
    return;
  }
  gms_enqueue(g, REQ_JOIN, &m->src, name);
}

void gms_coord_forget(struct gms *g, const struct rs_addr *a) {
  if (gms_addr_remove(g->laggards, &g->n_laggards, a) && !g->n_laggards) resend_stop(g);
  if (g->collecting && gms_addr_remove(g->ack_missing, &g->n_ack_missing, a) && !g->n_ack_missing)
    gms_acks_done(g);
}

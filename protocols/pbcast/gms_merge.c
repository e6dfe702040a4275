/* pbcast.GMS merging: subgroups that found each other again become one view. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/pbcast/gms.h"

/*
 * How it works (JGroups' Merger, reimplemented and simplified):
 *
 * - MERGE3 sends RS_EV_MERGE up with the views of the subgroups it found. Only the *merge
 *   leader*, the coordinator with the lowest address among the subgroups' coordinators, acts;
 *   every other member ignores the event (MERGE3 runs on every coordinator, so the leader's own
 *   MERGE3 reports the same subgroups). A leader that is merging already, or still collecting
 *   the acks of a view, ignores it too: MERGE3 reports again later.
 * - The leader picks a random merge id and asks every other subgroup coordinator for its view
 *   and digest (MERGE_REQ). A coordinator that is busy (in another merge, collecting acks, not
 *   the coordinator any more, or leaving) answers MERGE_RSP with the REJECTED flag; otherwise it
 *   answers with its view and digest and stops handling membership requests until the merge
 *   ends (INSTALL_MERGE_VIEW, CANCEL_MERGE, or merge_timeout of its own).
 * - With every answer in, the leader computes the merge view: its own subgroup's members in
 *   order, then each other subgroup's in order of their coordinators' addresses, without
 *   duplicates; id = the highest view id + 1; creator and coordinator = the leader; the merge
 *   flag set. The digest is the union of the subgroups' digests (the highest seqnos where they
 *   overlap).
 * - Choice: the leader sends INSTALL_MERGE_VIEW (view and digest) to every member directly,
 *   over UNICAST3, rather than through each subgroup's coordinator as JGroups does: one hop
 *   fewer, and a member does not depend on a second coordinator staying alive. Each member
 *   passes MERGE_DIGEST down for the members new to it, installs the view, and acks it to the
 *   leader, which collects the acks as for any view before its view handler resumes.
 * - A rejection, or answers missing after merge_timeout, cancels the merge: the leader sends
 *   CANCEL_MERGE to the other coordinators, and everyone returns to normal. A coordinator that
 *   answered and then hears nothing cancels itself after merge_timeout.
 */

static void merge_timeout_fired(struct rs_timer *t);

void gms_merge_init(struct gms *g) {
  rs_timer_init(&g->merge.timer, g->base.rt, merge_timeout_fired);
}

void gms_merge_reset(struct gms *g) {
  struct gms_merge *mg = &g->merge;
  rs_timer_stop(&mg->timer);
  for (size_t i = 0; i < mg->n; i++) {
    view_unref(mg->views[i]);
    digest_free(&mg->digests[i]);
  }
  free(mg->coords);
  free(mg->views);
  free(mg->digests);
  mg->coords = NULL;
  mg->views = NULL;
  mg->digests = NULL;
  mg->n = mg->answered = 0;
  mg->id = 0;
  mg->leader = false;
  mg->leader_addr = RS_ADDR_NULL;
}

bool gms_merge_busy(const struct gms *g) { return g->merge.id != 0; }

/* The merge is over, one way or the other: the view handler resumes. */
static void merge_done(struct gms *g) {
  gms_merge_reset(g);
  gms_kick_queue(g);
}

static void cancel_merge(struct gms *g, const char *why) {
  struct gms_merge *mg = &g->merge;
  struct rs_addr self = proto_local_addr(&g->base);
  PLOG(&g->base, INFO, "merge %016" PRIx64 " cancelled: %s (%zu of %zu answered)", mg->id, why,
       mg->answered, mg->n);
  for (size_t i = 0; i < mg->n; i++)
    if (!rs_addr_eq(&mg->coords[i], &self))
      gms_send(g, &mg->coords[i], GMS_CANCEL_MERGE, GMS_F_MERGE_ID, mg->id, NULL, 0);
  g->st.merges_cancelled++;
  merge_done(g);
}

static void merge_timeout_fired(struct rs_timer *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, merge.timer));
  if (g->merge.leader) {
    cancel_merge(g, "timed out");
    return;
  }
  PLOG(&g->base, INFO, "merge %016" PRIx64 " led by another coordinator timed out", g->merge.id);
  g->st.merges_cancelled++;
  merge_done(g);
}

/* ---------------------------------------------------------------------------------------------
 * The leader.
 */

/* The distinct coordinators of the subgroups, ourselves included; malloc'd, NULL if fewer than
 * two (nothing to merge). */
static struct rs_addr *subgroup_coords(struct gms *g, struct rs_view_data *const *views, size_t n,
                                       size_t *out_n) {
  struct rs_addr self = proto_local_addr(&g->base);
  size_t cap = (n < RS_VIEW_MAX_MEMBERS ? n : RS_VIEW_MAX_MEMBERS) + 1, k = 0;
  struct rs_addr *c = malloc(cap * sizeof(*c));
  if (!c) return NULL;
  c[k++] = self;
  for (size_t i = 0; i < n && k < cap; i++) {
    const struct rs_addr *a = views[i] ? view_coord(views[i]) : NULL;
    bool seen = false;
    for (size_t j = 0; a && j < k && !seen; j++)
      seen = rs_addr_eq(&c[j], a);
    if (a && !seen) c[k++] = *a;
  }
  *out_n = k;
  if (k < 2) {
    free(c);
    return NULL;
  }
  return c;
}

static bool is_leader(const struct gms *g, const struct rs_addr *coords, size_t n) {
  struct rs_addr self = proto_local_addr(&g->base);
  for (size_t i = 0; i < n; i++)
    if (rs_addr_cmp(&coords[i], &self) < 0) return false;
  return true;
}

void gms_merge_event(struct gms *g, struct rs_view_data *const *views, size_t n) {
  size_t k;
  if (g->role != GMS_COORD || g->leaving || g->left || !g->view) {
    g->st.merges_ignored++;
    return;
  }
  struct rs_addr *coords = subgroup_coords(g, views, n, &k);
  if (!coords || !is_leader(g, coords, k) || gms_merge_busy(g) || g->collecting) {
    g->st.merges_ignored++;
    free(coords);
    return;
  }
  struct gms_merge *mg = &g->merge;
  mg->views = calloc(k, sizeof(*mg->views));
  mg->digests = calloc(k, sizeof(*mg->digests));
  if (!mg->views || !mg->digests) {
    free(coords);
    gms_merge_reset(g);
    return;
  }
  mg->coords = coords;
  mg->n = k;
  do
    mg->id = rs_random(g->base.rt);
  while (!mg->id);
  mg->leader = true;
  mg->leader_addr = coords[0]; /* ourselves */
  mg->views[0] = view_ref(g->view);
  gms_get_digest(g, &mg->digests[0]);
  mg->answered = 1;
  g->st.merges_started++;
  PLOG(&g->base, INFO, "merge %016" PRIx64 ": asking %zu subgroup coordinators", mg->id, k - 1);
  for (size_t i = 1; i < k; i++)
    gms_send(g, &coords[i], GMS_MERGE_REQ, GMS_F_MERGE_ID, mg->id, NULL, 0);
  rs_timer_start(&mg->timer, g->merge_timeout, 0);
}

/* Appends the members of v not yet in mbrs (up to RS_VIEW_MAX_MEMBERS). */
static void add_members(const struct rs_view_data *v, struct rs_addr *mbrs, const char **names,
                        size_t *n) {
  for (size_t i = 0; i < v->n && *n < RS_VIEW_MAX_MEMBERS; i++) {
    bool seen = false;
    for (size_t j = 0; j < *n && !seen; j++)
      seen = rs_addr_eq(&mbrs[j], &v->members[i]);
    if (seen) continue;
    mbrs[*n] = v->members[i];
    names[(*n)++] = v->names[i];
  }
}

/* The leader's subgroup first (it has the lowest coordinator address), then the others by
 * ascending coordinator address. */
static struct rs_view_data *merge_view(struct gms *g) {
  struct gms_merge *mg = &g->merge;
  size_t total = 0, n = 0;
  uint64_t max_id = 0;
  for (size_t i = 0; i < mg->n; i++) {
    total += mg->views[i]->n;
    if (mg->views[i]->id > max_id) max_id = mg->views[i]->id;
  }
  struct rs_addr *mbrs = malloc(total * sizeof(*mbrs));
  const char **names = malloc(total * sizeof(*names));
  bool *done = calloc(mg->n, sizeof(*done));
  struct rs_view_data *v = NULL;
  if (mbrs && names && done) {
    for (size_t round = 0; round < mg->n; round++) {
      size_t best = mg->n;
      for (size_t i = 0; i < mg->n; i++)
        if (!done[i] && (best == mg->n || rs_addr_cmp(&mg->coords[i], &mg->coords[best]) < 0))
          best = i;
      done[best] = true;
      add_members(mg->views[best], mbrs, names, &n);
    }
    v = view_new(&mg->coords[0], max_id + 1, n, mbrs, names);
    if (v) v->merge = true;
  }
  free(mbrs);
  free(names);
  free(done);
  return v;
}

/* The union of the subgroups' digests over the members of v; the highest seqnos win. */
static int merge_digest(struct gms *g, const struct rs_view_data *v, struct rs_digest *out) {
  struct gms_merge *mg = &g->merge;
  out->n = 0;
  out->e = malloc(v->n * sizeof(*out->e));
  if (!out->e) return RS_ENOMEM;
  for (size_t i = 0; i < mg->n; i++)
    for (size_t j = 0; j < mg->digests[i].n; j++) {
      const struct rs_digest_entry *e = &mg->digests[i].e[j];
      if (!view_contains(v, &e->addr)) continue;
      size_t k = 0;
      while (k < out->n && !rs_addr_eq(&out->e[k].addr, &e->addr))
        k++;
      if (k == out->n) {
        out->e[out->n++] = *e;
        continue;
      }
      if (e->delivered > out->e[k].delivered) out->e[k].delivered = e->delivered;
      if (e->received > out->e[k].received) out->e[k].received = e->received;
    }
  return 0;
}

static void install_merge(struct gms *g) {
  struct gms_merge *mg = &g->merge;
  struct rs_addr self = proto_local_addr(&g->base);
  struct rs_digest d = {0};
  struct rs_view_data *v = merge_view(g);
  if (!v || merge_digest(g, v, &d) != 0) {
    view_unref(v);
    cancel_merge(g, "out of memory");
    return;
  }
  if (proto_log_enabled(&g->base, RS_LOG_INFO)) {
    char buf[512];
    PLOG(&g->base, INFO, "merge %016" PRIx64 ": installing %s", mg->id,
         view_format(v, buf, sizeof(buf)));
  }
  for (size_t i = 0; i < v->n; i++)
    if (!rs_addr_eq(&v->members[i], &self))
      gms_send_view(g, &v->members[i], GMS_INSTALL_MERGE_VIEW, GMS_F_MERGE_ID, mg->id, v, &d);
  g->st.merges_completed++;
  gms_merge_reset(g);
  gms_install(g, view_ref(v), &d, true);
  digest_free(&d);
  gms_collect_acks(g, v);
  view_unref(v);
}

static void on_merge_rsp(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  struct gms_merge *mg = &g->merge;
  size_t i = 0;
  while (i < mg->n && !rs_addr_eq(&mg->coords[i], &m->src))
    i++;
  if (!mg->leader || h->merge_id != mg->id || i == mg->n || mg->views[i]) {
    g->st.stale_ignored++;
    return;
  }
  if (h->flags & GMS_F_REJECTED) {
    if (m->len)
      gms_log_bad(g, &m->src, "MERGE_RSP rejection with a body");
    else
      cancel_merge(g, "a coordinator is busy");
    return;
  }
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  struct rs_view_data *v = gms_read_view(&r, &mg->digests[i]);
  if (!v || !rs_addr_eq(view_coord(v), &m->src)) {
    if (v) digest_free(&mg->digests[i]);
    view_unref(v);
    gms_log_bad(g, &m->src, "malformed MERGE_RSP");
    return;
  }
  mg->views[i] = v;
  if (++mg->answered == mg->n) install_merge(g);
}

/* ---------------------------------------------------------------------------------------------
 * The other subgroup coordinators, and every member.
 */
static void on_merge_req(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  struct gms_merge *mg = &g->merge;
  bool busy = g->role != GMS_COORD || g->leaving || g->left || g->collecting ||
              (mg->id && (mg->id != h->merge_id || !rs_addr_eq(&mg->leader_addr, &m->src)));
  if (busy) {
    g->st.merges_rejected++;
    gms_send(g, &m->src, GMS_MERGE_RSP, GMS_F_MERGE_ID | GMS_F_REJECTED, h->merge_id, NULL, 0);
    return;
  }
  mg->id = h->merge_id;
  mg->leader = false;
  mg->leader_addr = m->src;
  rs_timer_start(&mg->timer, g->merge_timeout, 0);
  struct rs_digest d;
  gms_get_digest(g, &d);
  gms_send_view(g, &m->src, GMS_MERGE_RSP, GMS_F_MERGE_ID, h->merge_id, g->view, &d);
  digest_free(&d);
}

static void on_install_merge_view(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  struct gms_merge *mg = &g->merge;
  struct rs_reader r;
  struct rs_digest d;
  reader_init(&r, m->data, m->len);
  struct rs_view_data *v = gms_read_view(&r, &d);
  if (!v || !v->merge) {
    if (v) digest_free(&d);
    view_unref(v);
    gms_log_bad(g, &m->src, "malformed INSTALL_MERGE_VIEW");
    return;
  }
  bool ours = mg->id == h->merge_id && !mg->leader && rs_addr_eq(&mg->leader_addr, &m->src);
  if (ours) gms_merge_reset(g);
  gms_accept_view(g, &m->src, v, &d);
  digest_free(&d);
  if (ours) gms_kick_queue(g);
}

static void on_cancel_merge(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  struct gms_merge *mg = &g->merge;
  if (mg->id != h->merge_id || mg->leader || !rs_addr_eq(&mg->leader_addr, &m->src)) {
    g->st.stale_ignored++;
    return;
  }
  g->st.merges_cancelled++;
  merge_done(g);
}

void gms_merge_msg(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  bool empty_body = h->type == GMS_MERGE_REQ || h->type == GMS_CANCEL_MERGE;
  if (empty_body && m->len) {
    gms_log_bad(g, &m->src, "merge message with an unexpected body");
    return;
  }
  switch (h->type) {
  case GMS_MERGE_REQ: on_merge_req(g, m, h); break;
  case GMS_MERGE_RSP: on_merge_rsp(g, m, h); break;
  case GMS_INSTALL_MERGE_VIEW: on_install_merge_view(g, m, h); break;
  case GMS_CANCEL_MERGE: on_cancel_merge(g, m, h); break;
  default: gms_log_bad(g, &m->src, "unknown GMS message type"); break;
  }
}

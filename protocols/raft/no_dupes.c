/* raft.NO_DUPES: refuses a joiner whose logical name a member already has (sits below GMS). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/pbcast/gms.h"

/*
 * jgroups-raft's NO_DUPES, reimplemented. A member's logical name is its raft_id, and two
 * members with one raft_id would make a mess of the Raft membership; so a joiner whose name is
 * taken must be refused before GMS admits it.
 *
 * NO_DUPES sits below GMS and reads GMS's header (protocols/pbcast/gms.h). It keeps the view
 * that GMS passes down, and looks at every JOIN_REQ going up: when the joiner's name is the
 * name of a member of the view with another address, it answers the joiner itself with a
 * JOIN_RSP refusal, RS_EEXIST and a text that names the duplicate and the view, e.g.
 *
 *   NO_DUPES: join of 'B' refused: 'B' is already in view [A|3] (3) [A, B, C]
 *
 * and drops the request, so GMS never sees it. The joiner's connect fails with that code, and
 * the text is what rs_channel_last_error() shows there.
 *
 * Beyond jgroups-raft: two joiners with one name asking at the same moment would both pass a
 * check against the view alone, and end up in one view together. So NO_DUPES also remembers the
 * joins it let through (address and name) until a view contains them, or for PENDING_TTL, and
 * refuses a second joiner with a name that is still pending. A joiner with an empty name (none
 * given) is not checked.
 */

#define NO_DUPES_ID 525
#define PENDING_MAX 256           /* joins remembered; the oldest is forgotten first */
#define PENDING_TTL (10 * RS_SEC) /* longer than a join takes, even behind a slow view */

struct pending {
  struct rs_addr addr;
  char name[RS_NAME_MAX + 1];
  rs_time since;
};

struct no_dupes {
  struct rs_protocol base;
  struct rs_view_data *view; /* the last view GMS passed down (one reference) */
  struct pending *pending;   /* PENDING_MAX slots, allocated at init */
  size_t n_pending;
  uint64_t joins_checked, joins_refused;
};

#define ND(p) ((struct no_dupes *)(p))

static void forget(struct no_dupes *nd, size_t i) { nd->pending[i] = nd->pending[--nd->n_pending]; }

/* Drops the joins that a view now covers, and those too old to be joining still. */
static void prune(struct no_dupes *nd) {
  rs_time now = rs_now(nd->base.rt);
  for (size_t i = 0; i < nd->n_pending;)
    if (view_contains(nd->view, &nd->pending[i].addr) || now - nd->pending[i].since > PENDING_TTL)
      forget(nd, i);
    else
      i++;
}

static void remember(struct no_dupes *nd, const struct rs_addr *a, const char *name) {
  size_t i = 0;
  while (i < nd->n_pending && !rs_addr_eq(&nd->pending[i].addr, a))
    i++;
  if (i == nd->n_pending) {
    if (nd->n_pending == PENDING_MAX) {
      size_t oldest = 0;
      for (size_t k = 1; k < nd->n_pending; k++)
        if (nd->pending[k].since < nd->pending[oldest].since) oldest = k;
      forget(nd, oldest);
      i = nd->n_pending;
    }
    nd->n_pending++;
  }
  nd->pending[i].addr = *a;
  snprintf(nd->pending[i].name, sizeof(nd->pending[i].name), "%s", name);
  nd->pending[i].since = rs_now(nd->base.rt);
}

/* Whether a member of the view, or another pending joiner, other than `self` is called name. */
static bool name_in_view(const struct rs_view_data *v, const char *name,
                         const struct rs_addr *self) {
  for (size_t i = 0; i < v->n; i++)
    if (!strcmp(v->names[i], name) && !rs_addr_eq(&v->members[i], self)) return true;
  return false;
}

static bool name_pending(const struct no_dupes *nd, const char *name, const struct rs_addr *self) {
  for (size_t i = 0; i < nd->n_pending; i++)
    if (!strcmp(nd->pending[i].name, name) && !rs_addr_eq(&nd->pending[i].addr, self)) return true;
  return false;
}

static void refuse(struct no_dupes *nd, const struct rs_addr *joiner, const char *name,
                   bool in_view) {
  char v[512], text[GMS_TEXT_MAX];
  view_format(nd->view, v, sizeof(v));
  if (in_view)
    snprintf(text, sizeof(text), "NO_DUPES: join of '%s' refused: '%s' is already in view %s", name,
             name, v);
  else
    snprintf(text, sizeof(text),
             "NO_DUPES: join of '%s' refused: another member named '%s' is joining view %s", name,
             name, v);
  nd->joins_refused++;
  PLOG(&nd->base, INFO, "%s", text);
  struct rs_msg *m = gms_make_refusal(joiner, RS_EEXIST, text);
  if (m) proto_down_msg(&nd->base, m);
}

/* True when the JOIN_REQ m is refused (and answered here). A malformed request goes up: GMS
 * counts and drops it. */
static bool check_join(struct no_dupes *nd, const struct rs_msg *m) {
  char name[RS_NAME_MAX + 1];
  if (!nd->view || gms_read_join_req(m, name) != 0 || !name[0]) return false;
  nd->joins_checked++;
  prune(nd);
  bool in_view = name_in_view(nd->view, name, &m->src);
  if (in_view || name_pending(nd, name, &m->src)) {
    refuse(nd, &m->src, name, in_view);
    return true;
  }
  remember(nd, &m->src, name);
  return false;
}

static void nd_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct no_dupes *nd = ND(p);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct gms_hdr *h = rs_msg_header(m, GMS_ID);
    if (h && h->type == GMS_JOIN_REQ && check_join(nd, m))
      rs_msg_free(m);
    else
      rs_batch_add(&keep, m);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

static int nd_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct no_dupes *nd = ND(p);
  if (ev->type == RS_EV_VIEW_CHANGE && ev->u.view) {
    view_unref(nd->view);
    nd->view = view_ref((struct rs_view_data *)ev->u.view);
    prune(nd);
  }
  return proto_down_event(p, ev);
}

static int nd_init(struct rs_protocol *p) {
  struct no_dupes *nd = ND(p);
  nd->pending = malloc(PENDING_MAX * sizeof(*nd->pending));
  return nd->pending ? 0 : proto_error(p, "out of memory");
}

static void nd_stop(struct rs_protocol *p) {
  struct no_dupes *nd = ND(p);
  view_unref(nd->view);
  nd->view = NULL;
  nd->n_pending = 0;
}

static void nd_destroy(struct rs_protocol *p) {
  nd_stop(p);
  free(ND(p)->pending);
  ND(p)->pending = NULL;
}

static void nd_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct no_dupes *nd = ND(p);
  out->line(out, "joins_checked", "%" PRIu64, nd->joins_checked);
  out->line(out, "joins_refused", "%" PRIu64, nd->joins_refused);
  out->line(out, "joins_pending", "%zu", nd->n_pending);
}

static const char *const nd_above[] = {"GMS", NULL};

const struct rs_protocol_ops no_dupes_protocol = {
    .name = "NO_DUPES",
    .package = "raft",
    .id = NO_DUPES_ID,
    .size = sizeof(struct no_dupes),
    .description = "refuses a joiner whose logical name (raft_id) is already in the view",
    .requires_above = nd_above,
    .init = nd_init,
    .stop = nd_stop,
    .destroy = nd_destroy,
    .up_batch = nd_up_batch,
    .down_event = nd_down_event,
    .stats = nd_stats,
};

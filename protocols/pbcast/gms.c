/* pbcast.GMS: group membership — joining, leaving, views, and removal of suspected members. */
#include "protocols/pbcast/gms.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * How it works (JGroups' GMS, reimplemented; docs/membership.md has the whole picture):
 *
 * - Joining (a *client*): on CONNECT, ask discovery for the members (FIND_INITIAL_MBRS, waiting
 *   at most join_timeout). If a coordinator answered, send it JOIN_REQ with our logical name and
 *   wait join_timeout for JOIN_RSP; on timeout try again from discovery, up to
 *   max_join_attempts (0: forever), after which we become a singleton coordinator as JGroups
 *   does (MERGE3 heals that later). A JOIN_RSP that comes while we already try again is taken
 *   all the same. Nobody answered: we are the first, and become coordinator of the view [us|1];
 *   but once a coordinator has answered an earlier round, an empty round is an attempt that
 *   failed (its messages were lost), not a reason to start a view of our own (JGroups would).
 *   Only members that are themselves still joining answered (concurrent start): the lowest
 *   address among them and us becomes coordinator; the others wait all_clients_retry_timeout
 *   and discover again, and then find it.
 *   On JOIN_RSP: SET_DIGEST down (where NAKACK2 starts receiving from each member), the view
 *   (VIEW_CHANGE down, then up, so the protocols below know it before the application does),
 *   BECOME_SERVER down, VIEW_ACK to the coordinator, and CONNECT_DONE(0) up. A refusal (from
 *   NO_DUPES) ends the connect with its code, and its text becomes the channel's error.
 * - The coordinator queues join, leave and suspect requests and handles them one view at a
 *   time, as JGroups' ViewHandler does: everything queued when the handler gets to run becomes
 *   one new view (old members minus leavers and suspects, joiners appended in arrival order;
 *   id + 1; the creator is the new view's first member). It installs the view locally, multicasts
 *   VIEW (a regular message, so NAKACK2 delivers it reliably and in order with the data sent
 *   before it), sends JOIN_RSP (view and digest) to the joiners and LEAVE_RSP to the leavers,
 *   and waits for a VIEW_ACK from every member for up to view_ack_collection_timeout before it
 *   handles the next requests. A joiner that is already a member (its JOIN_RSP was late and it
 *   asked again) gets the current view again.
 * - Views are installed only in increasing view id; a view with an id not above ours is stale.
 *   A view is accepted from our coordinator, or from the new view's coordinator or creator (the
 *   member that took over when ours crashed or left, or the leader of a merge). A view that
 *   does not contain us is ignored, as in JGroups (we were wrongly excluded: a merge brings us
 *   back), unless we are leaving, when it ends the leave.
 * - Leaving: a member sends LEAVE_REQ to the coordinator and waits for LEAVE_RSP, or a view
 *   without it, at most leave_timeout (asking the new coordinator if the coordinator changes
 *   meanwhile). A leaving coordinator puts its own leave into its queue: the resulting view has
 *   the next member as coordinator and is cast like any other, so every member sees the leave
 *   at once; the old coordinator then collects the acks (bounded by leave_timeout) and goes.
 *   The leaver does not install the view without itself: its application sees no view change.
 * - Suspicion (SUSPECT from VERIFY_SUSPECT or an FD protocol): the coordinator queues the
 *   removal. A member that learns that the coordinator is suspected and finds itself the first
 *   member of the view not suspected takes over (JGroups' "coordinator crashed"): it becomes
 *   coordinator and removes every suspect with its first view. UNSUSPECT withdraws a suspicion.
 * - CONNECT_DONE and DISCONNECT_DONE are sent from a task, never from inside the handling of a
 *   message: the channel stops the stack when it gets them, which must not happen under the
 *   feet of the protocols below that are delivering to us.
 *
 * The coordinator's view handler is in gms_coord.c, merging in gms_merge.c.
 */

#define RL_INTERVAL (5 * RS_SEC)

/* ---------------------------------------------------------------------------------------------
 * The header (layout in gms.h and docs/wire-format.md).
 */
static bool is_merge_type(uint8_t t) { return t >= GMS_MERGE_REQ && t <= GMS_CANCEL_MERGE; }

static size_t hdr_wire_size(const void *p) {
  const struct gms_hdr *h = p;
  return 2 + (h->flags & GMS_F_MERGE_ID ? 8 : 0);
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct gms_hdr *h = p;
  put_u8(w, h->type);
  put_u8(w, h->flags);
  if (h->flags & GMS_F_MERGE_ID) put_u64(w, h->merge_id);
}

/* Exactly the merge types carry a (non-zero) merge id; REJECTED only on MERGE_RSP. */
static void hdr_read(void *p, struct rs_reader *r) {
  struct gms_hdr *h = p;
  *h = (struct gms_hdr){0};
  h->type = get_u8(r);
  h->flags = get_u8(r);
  if (h->flags & GMS_F_MERGE_ID) h->merge_id = get_u64(r);
  bool has_id = (h->flags & GMS_F_MERGE_ID) != 0;
  bool ok = h->type >= GMS_JOIN_REQ && h->type <= GMS_TYPE_MAX &&
            !(h->flags & ~(GMS_F_MERGE_ID | GMS_F_REJECTED)) && has_id == is_merge_type(h->type) &&
            (!has_id || h->merge_id != 0) &&
            (!(h->flags & GMS_F_REJECTED) || h->type == GMS_MERGE_RSP);
  if (!ok) reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct gms_hdr){0};
}

static const char *const type_names[] = {
    "?",         "JOIN_REQ",  "JOIN_RSP",           "LEAVE_REQ",    "LEAVE_RSP", "VIEW",
    "MERGE_REQ", "MERGE_RSP", "INSTALL_MERGE_VIEW", "CANCEL_MERGE", "VIEW_ACK"};

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct gms_hdr *h = p;
  const char *t = h->type <= GMS_TYPE_MAX ? type_names[h->type] : "?";
  if (!(h->flags & GMS_F_MERGE_ID)) return snprintf(buf, len, "%s", t);
  return snprintf(buf, len, "%s merge_id=%016" PRIx64 "%s", t, h->merge_id,
                  h->flags & GMS_F_REJECTED ? " rejected" : "");
}

const struct rs_header_type gms_header = {
    .id = GMS_ID,
    .name = "GMS",
    .size = sizeof(struct gms_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * Bodies and sending.
 */
int gms_read_join_req(const struct rs_msg *m, char name[RS_NAME_MAX + 1]) {
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  get_str(&r, name, RS_NAME_MAX + 1, RS_NAME_MAX);
  if (!r.err && r.pos != r.len) reader_fail(&r, RS_EMALFORMED);
  if (r.err) name[0] = '\0';
  return r.err ? RS_EMALFORMED : 0;
}

static struct rs_msg *make_msg(const struct rs_addr *dest, uint8_t type, uint8_t flags,
                               uint64_t merge_id, const void *body, size_t len) {
  struct rs_msg *m = rs_msg_new_copy(body, len);
  struct gms_hdr *h = m ? rs_msg_put_header(m, &gms_header) : NULL;
  if (!h) {
    rs_msg_free(m);
    return NULL;
  }
  h->type = type;
  h->flags = flags;
  h->merge_id = merge_id;
  if (dest) m->dest = *dest;
  /* Views travel in order with the data (NAKACK2 and UNICAST3 are FIFO when not OOB), so that a
   * member has everything sent in the old view before it sees the new one. Merge messages are
   * ordered too, so that a CANCEL_MERGE never overtakes its MERGE_REQ (both may be retransmitted
   * long after, once a partition heals). The rest is OOB control traffic. Nothing of ours is
   * subject to flow control. */
  bool ordered = type == GMS_VIEW || is_merge_type(type);
  m->flags = (uint16_t)(RS_MSG_NO_FC | (ordered ? 0 : RS_MSG_OOB));
  return m;
}

void gms_send(struct gms *g, const struct rs_addr *dest, uint8_t type, uint8_t flags,
              uint64_t merge_id, const void *body, size_t len) {
  struct rs_msg *m = make_msg(dest, type, flags, merge_id, body, len);
  if (m) proto_down_msg(&g->base, m);
}

struct rs_msg *gms_make_refusal(const struct rs_addr *joiner, int code, const char *text) {
  struct rs_writer w;
  size_t n = strlen(text);
  if (n > GMS_TEXT_MAX) n = GMS_TEXT_MAX;
  writer_init_grow(&w, n + 16);
  put_u8(&w, 1);
  put_varint(&w, (uint64_t) - (int64_t)code);
  put_varint(&w, n);
  put_bytes(&w, text, n);
  struct rs_msg *m = w.err ? NULL : make_msg(joiner, GMS_JOIN_RSP, 0, 0, w.p, w.len);
  free(w.p);
  return m;
}

void gms_send_view(struct gms *g, const struct rs_addr *dest, uint8_t type, uint8_t flags,
                   uint64_t merge_id, const struct rs_view_data *v, const struct rs_digest *d) {
  struct rs_writer w;
  writer_init_grow(&w, 1 + view_wire_size(v) + (d ? digest_wire_size(d) : 0));
  if (type == GMS_JOIN_RSP) put_u8(&w, 0); /* accepted */
  put_view(&w, v);
  if (d) put_digest(&w, d);
  if (!w.err) gms_send(g, dest, type, flags, merge_id, w.p, w.len);
  free(w.p);
}

static int cmp_addr(const void *a, const void *b) { return rs_addr_cmp(a, b); }

/* A view names each member once, and no null address; O(n log n) for hostile sizes. */
static bool view_sane(const struct rs_view_data *v) {
  if (!v->n || rs_addr_is_null(&v->creator)) return false;
  struct rs_addr *sorted = malloc(v->n * sizeof(*sorted));
  if (!sorted) return false;
  memcpy(sorted, v->members, v->n * sizeof(*sorted));
  qsort(sorted, v->n, sizeof(*sorted), cmp_addr);
  bool ok = !rs_addr_is_null(&sorted[0]);
  for (size_t i = 1; ok && i < v->n; i++)
    ok = !rs_addr_eq(&sorted[i - 1], &sorted[i]);
  free(sorted);
  return ok;
}

struct rs_view_data *gms_read_view(struct rs_reader *r, struct rs_digest *d) {
  struct rs_view_data *v = get_view(r);
  if (d) get_digest(r, d);
  if (!r->err && r->pos != r->len) reader_fail(r, RS_EMALFORMED);
  if (!r->err && v && !view_sane(v)) reader_fail(r, RS_EMALFORMED);
  if (r->err) {
    view_unref(v);
    if (d) digest_free(d);
    return NULL;
  }
  return v;
}

static void send_view_ack(struct gms *g, const struct rs_addr *to, const struct rs_view_data *v) {
  uint8_t buf[16 + RS_VARINT_MAX];
  struct rs_writer w;
  writer_init(&w, buf, sizeof(buf));
  put_addr(&w, &v->creator);
  put_varint(&w, v->id);
  gms_send(g, to, GMS_VIEW_ACK, 0, 0, w.p, w.len);
}

void gms_log_bad(struct gms *g, const struct rs_addr *src, const char *what) {
  g->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&g->base, RS_LOG_WARN) ||
      !ratelimit_ok(&g->rl_bad, rs_now(g->base.rt), RL_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&g->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

void gms_get_digest(struct gms *g, struct rs_digest *out) {
  out->n = 0;
  out->e = NULL;
  struct rs_event ev = {.type = RS_EV_GET_DIGEST, .digest_out = out};
  proto_down_event(&g->base, &ev);
}

/* ---------------------------------------------------------------------------------------------
 * Views.
 */
static struct rs_addr self_of(const struct gms *g) { return proto_local_addr(&g->base); }

/* MERGE_DIGEST carries only the members new to us: for the others our windows are right. */
static void send_digest(struct gms *g, const struct rs_digest *d, bool merge) {
  struct rs_digest sub = {0};
  if (merge) {
    sub.e = malloc((d->n ? d->n : 1) * sizeof(*sub.e));
    if (!sub.e) return;
    for (size_t i = 0; i < d->n; i++)
      if (!view_contains(g->view, &d->e[i].addr)) sub.e[sub.n++] = d->e[i];
  }
  struct rs_event ev = {.type = merge ? RS_EV_MERGE_DIGEST : RS_EV_SET_DIGEST,
                        .u.digest = merge ? &sub : d};
  if (!merge || sub.n) proto_down_event(&g->base, &ev);
  free(sub.e);
}

void gms_install(struct gms *g, struct rs_view_data *v, const struct rs_digest *d, bool merge) {
  if (d) send_digest(g, d, merge);
  struct rs_view_data *old = g->view;
  g->view = v;
  struct rs_addr self = self_of(g);
  enum gms_role was = g->role;
  g->role = rs_addr_eq(view_coord(v), &self) ? GMS_COORD : GMS_PARTICIPANT;
  if (was == GMS_COORD && g->role != GMS_COORD) gms_coord_reset(g);
  for (size_t i = 0; i < g->n_suspects;)
    if (view_contains(v, &g->suspects[i]))
      i++;
    else
      g->suspects[i] = g->suspects[--g->n_suspects];
  g->st.views_installed++;
  if (v->merge) g->st.merge_views_installed++;
  if (proto_log_enabled(&g->base, RS_LOG_INFO)) {
    char buf[512];
    PLOG(&g->base, INFO, "installed %sview %s", v->merge ? "merge " : "",
         view_format(v, buf, sizeof(buf)));
  }
  struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = v};
  proto_down_event(&g->base, &ev);
  proto_up_event(&g->base, &ev);
  view_unref(old);
}

/* ---------------------------------------------------------------------------------------------
 * Completion of CONNECT and DISCONNECT (from a task; see the comment at the top).
 */
static void done_run(struct rs_task *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, done_task));
  if (g->connect_done_pending) {
    g->connect_done_pending = false;
    struct rs_event ev = {.type = RS_EV_CONNECT_DONE, .u.status = g->connect_status};
    proto_up_event(&g->base, &ev);
    return; /* an error stopped the stack, which reset us */
  }
  if (g->disconnect_done_pending) {
    g->disconnect_done_pending = false;
    struct rs_event ev = {.type = RS_EV_DISCONNECT_DONE, .u.status = 0};
    proto_up_event(&g->base, &ev);
  }
}

static void finish_connect(struct gms *g, int status) {
  rs_timer_stop(&g->join_timer);
  g->finding = false;
  if (status) g->role = GMS_IDLE;
  g->connect_done_pending = true;
  g->connect_status = status;
  rs_post(g->base.rt, &g->done_task);
}

/* The leave is over: the protocols below get DISCONNECT, the channel DISCONNECT_DONE. */
void gms_finish_leave(struct gms *g) {
  if (g->left) return;
  g->left = true;
  rs_timer_stop(&g->leave_timer);
  gms_coord_reset(g);
  struct rs_event ev = {.type = RS_EV_DISCONNECT};
  proto_down_event(&g->base, &ev);
  g->disconnect_done_pending = true;
  rs_post(g->base.rt, &g->done_task);
}

/* ---------------------------------------------------------------------------------------------
 * Joining.
 */
static void print_local(struct gms *g) {
  if (!g->print_local_addr || !proto_log_enabled(&g->base, RS_LOG_INFO)) return;
  char phys[RS_PHYS_STRLEN] = "";
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS, .u.addr = RS_ADDR_NULL};
  if (g->print_physical_addrs && proto_down_event(&g->base, &ev) == 0 && ev.phys.family)
    phys_format(&ev.phys, phys, sizeof(phys));
  /* JGroups prints this to stdout; a library may not, so it is an INFO line (docs/membership.md).
   */
  PLOG(&g->base, INFO, "address=%s, cluster=%s%s%s", proto_local_name(&g->base),
       proto_cluster(&g->base), phys[0] ? ", physical address=" : "", phys);
}

static void become_server(struct gms *g) {
  struct rs_event ev = {.type = RS_EV_BECOME_SERVER};
  proto_down_event(&g->base, &ev);
}

static void become_singleton(struct gms *g, const char *why) {
  struct rs_addr self = self_of(g);
  const char *name = proto_local_name(&g->base);
  struct rs_view_data *v = view_new(&self, 1, 1, &self, &name);
  if (!v) {
    finish_connect(g, RS_ENOMEM);
    return;
  }
  PLOG(&g->base, INFO, "%s: becoming coordinator of a new view", why);
  struct rs_digest_entry e = {.addr = self};
  struct rs_digest d = {.n = 1, .e = &e};
  gms_install(g, v, &d, false);
  become_server(g);
  finish_connect(g, 0);
}

static void find_members(struct gms *g);

/* An attempt (JOIN_REQ sent) went unanswered: try again after a pause, or give up after
 * max_join_attempts and start a view of our own, as JGroups does. */
static void attempt_failed(struct gms *g) {
  if (g->max_join_attempts && ++g->join_attempts >= g->max_join_attempts) {
    PLOG(&g->base, WARN, "no JOIN_RSP after %" PRId64 " attempts", g->join_attempts);
    become_singleton(g, "giving up joining");
    return;
  }
  g->join_phase = JOIN_RETRY_WAIT;
  rs_timer_start(&g->join_timer, g->all_clients_retry_timeout, 0);
}

static void on_found(void *arg, const struct rs_ping_data *found, size_t n) {
  struct gms *g = arg;
  if (!g->finding || g->role != GMS_CLIENT) return;
  g->finding = false;
  rs_timer_stop(&g->join_timer);
  struct rs_addr self = self_of(g);
  const struct rs_addr *coord = NULL, *lowest = &self;
  size_t others = 0, servers = 0;
  for (size_t i = 0; i < n; i++) {
    const struct rs_addr *a = &found[i].addr;
    if (rs_addr_eq(a, &self) || rs_addr_is_null(a)) continue;
    others++;
    if (found[i].is_server) servers++;
    /* Several coordinators (a partition): the lowest, which would also lead their merge. */
    if (found[i].is_coord && (!coord || rs_addr_cmp(a, coord) < 0)) coord = a;
    if (rs_addr_cmp(a, lowest) < 0) lowest = a;
  }
  if (coord) {
    g->join_target = *coord;
    g->join_phase = JOIN_WAIT_RSP;
    const char *name = proto_local_name(&g->base);
    struct rs_writer w;
    writer_init_grow(&w, strlen(name) + 2);
    put_str(&w, name);
    if (!w.err) gms_send(g, coord, GMS_JOIN_REQ, 0, 0, w.p, w.len);
    free(w.p);
    rs_timer_start(&g->join_timer, g->join_timeout, 0);
    return;
  }
  if (!others && rs_addr_is_null(&g->join_target)) {
    become_singleton(g, "no member found");
    return;
  }
  if (!others) {
    /* We found a coordinator before: this round's requests or answers were lost, most likely
     * (JGroups would start a view of its own here, and need a merge later). */
    attempt_failed(g);
    return;
  }
  if (!servers && rs_addr_eq(lowest, &self)) {
    become_singleton(g, "lowest address of the members starting together");
    return;
  }
  g->join_phase = JOIN_RETRY_WAIT;
  rs_timer_start(&g->join_timer, g->all_clients_retry_timeout, 0);
}

static void find_members(struct gms *g) {
  g->finding = true;
  g->join_phase = JOIN_FINDING;
  g->st.join_attempts++;
  /* A watchdog, in case discovery never answers (it promises to). */
  rs_timer_start(&g->join_timer, 2 * g->join_timeout + RS_SEC, 0);
  struct rs_event ev = {.type = RS_EV_FIND_INITIAL_MBRS};
  ev.u.find.timeout = g->join_timeout;
  ev.u.find.num_members = 0;
  ev.u.find.done = on_found;
  ev.u.find.arg = g;
  if (proto_down_event(&g->base, &ev) != 0 && g->finding) {
    /* Refused (discovery busy, say): done will not be called; ask again shortly. */
    g->finding = false;
    g->join_phase = JOIN_RETRY_WAIT;
    rs_timer_start(&g->join_timer, g->all_clients_retry_timeout, 0);
  }
}

static void join_timer_fired(struct rs_timer *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, join_timer));
  if (g->role != GMS_CLIENT) return;
  switch (g->join_phase) {
  case JOIN_FINDING:
    PLOG(&g->base, WARN, "discovery did not answer: proceeding as if nobody had");
    on_found(g, NULL, 0);
    break;
  case JOIN_WAIT_RSP: attempt_failed(g); break;
  case JOIN_RETRY_WAIT: find_members(g); break;
  }
}

/* The coordinator (its NO_DUPES, in practice) refused us: the connect fails with its code, and
 * its text, made printable, becomes the channel's error. */
static void on_refused(struct gms *g, const struct rs_msg *m, struct rs_reader *r) {
  uint64_t code = get_varint(r);
  char text[GMS_TEXT_MAX + 1];
  get_str(r, text, sizeof(text), GMS_TEXT_MAX);
  if (!r->err && (r->pos != r->len || code == 0 || code > 1000)) reader_fail(r, RS_EMALFORMED);
  if (r->err) {
    gms_log_bad(g, &m->src, "malformed JOIN_RSP");
    return;
  }
  for (char *c = text; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  struct rs_stack *st = g->base.stack;
  int status = -(int)code;
  if (text[0])
    snprintf(st->err, sizeof(st->err), "%s", text);
  else
    snprintf(st->err, sizeof(st->err), "GMS: join refused: %s", rs_strerror(status));
  PLOG(&g->base, WARN, "join refused: %s", st->err);
  g->st.joins_refused++;
  finish_connect(g, status);
}

static void on_join_rsp(struct gms *g, const struct rs_msg *m) {
  /* The answer may come late, while we already try again: from the coordinator we asked last,
   * it is good whatever we are doing now. */
  if (g->role != GMS_CLIENT || rs_addr_is_null(&g->join_target) ||
      !rs_addr_eq(&m->src, &g->join_target)) {
    g->st.stale_ignored++;
    return;
  }
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  uint8_t status = get_u8(&r);
  if (status == 1) {
    on_refused(g, m, &r);
    return;
  }
  struct rs_digest d;
  struct rs_view_data *v = status == 0 && !r.err ? gms_read_view(&r, &d) : NULL;
  struct rs_addr self = self_of(g);
  if (!v || !view_contains(v, &self)) {
    if (v) {
      view_unref(v);
      digest_free(&d);
    }
    gms_log_bad(g, &m->src, "malformed JOIN_RSP");
    return;
  }
  gms_install(g, v, &d, false);
  digest_free(&d);
  become_server(g);
  send_view_ack(g, &m->src, v);
  finish_connect(g, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Leaving.
 */

/* Asks the coordinator to let us go, or, as coordinator, queues our own leave. */
static void continue_leave(struct gms *g) {
  if (!g->leaving || g->left || g->leave_cast) return;
  struct rs_addr self = self_of(g);
  if (g->role == GMS_COORD) {
    if (g->view->n == 1 || !gms_enqueue(g, REQ_LEAVE, &self, NULL)) gms_finish_leave(g);
    return;
  }
  gms_send(g, view_coord(g->view), GMS_LEAVE_REQ, 0, 0, NULL, 0);
}

static void leave_timeout(struct rs_timer *t) {
  struct gms *g = (struct gms *)((char *)t - offsetof(struct gms, leave_timer));
  if (g->role == GMS_COORD && !g->leave_cast && !g->left) {
    /* Still busy (a merge, or a queue behind a slow view): cast the leave now, unacked. */
    struct rs_addr self = self_of(g);
    gms_merge_reset(g);
    g->collecting = false;
    rs_timer_stop(&g->ack_timer);
    gms_enqueue(g, REQ_LEAVE, &self, NULL);
    gms_handle_requests(g);
  }
  PLOG(&g->base, WARN, "leave not confirmed within %" PRIu64 " ms: leaving anyway",
       g->leave_timeout / RS_MS);
  gms_finish_leave(g);
}

static int on_disconnect(struct gms *g, struct rs_event *ev) {
  switch (g->role) {
  case GMS_CLIENT: {
    /* Still joining: the connect ends here. Reported at once (not from the task) because the
     * channel waits for it before it can finish the disconnect. */
    rs_timer_stop(&g->join_timer);
    g->finding = false;
    g->role = GMS_IDLE;
    struct rs_event done = {.type = RS_EV_CONNECT_DONE, .u.status = RS_ECANCELED};
    proto_up_event(&g->base, &done);
    return 0;
  }
  case GMS_PARTICIPANT:
  case GMS_COORD:
    if (g->role == GMS_COORD && g->view->n == 1) return proto_down_event(&g->base, ev);
    g->leaving = true;
    if (g->collecting) gms_acks_done(g); /* our leave goes first */
    rs_timer_start(&g->leave_timer, g->leave_timeout, 0);
    continue_leave(g);
    return g->left ? 0 : RS_EAGAIN;
  default: return proto_down_event(&g->base, ev);
  }
}

static void on_leave_req(struct gms *g, const struct rs_msg *m) {
  if (g->role != GMS_COORD || g->left) {
    g->st.stale_ignored++;
    return;
  }
  if (!view_contains(g->view, &m->src)) {
    gms_send(g, &m->src, GMS_LEAVE_RSP, 0, 0, NULL, 0); /* gone already: let it stop waiting */
    return;
  }
  gms_enqueue(g, REQ_LEAVE, &m->src, NULL);
}

static void on_leave_rsp(struct gms *g, const struct rs_msg *m) {
  if (!g->leaving || g->role != GMS_PARTICIPANT || !view_contains(g->view, &m->src)) {
    g->st.stale_ignored++;
    return;
  }
  gms_finish_leave(g);
}

/* ---------------------------------------------------------------------------------------------
 * Views from the network.
 */

/* A merge view comes from its coordinator, the merge leader, who may be new to us. Any other
 * view comes from a member of ours: our coordinator, or the new view's coordinator or creator (a
 * member that took over from a crashed coordinator, or the next one when it left). */
static bool may_send_view(const struct gms *g, const struct rs_addr *src,
                          const struct rs_view_data *v) {
  if (v->merge) return rs_addr_eq(src, view_coord(v));
  return view_contains(g->view, src) &&
         (rs_addr_eq(src, view_coord(g->view)) || rs_addr_eq(src, view_coord(v)) ||
          rs_addr_eq(src, &v->creator));
}

bool gms_accept_view(struct gms *g, const struct rs_addr *src, struct rs_view_data *v,
                     const struct rs_digest *d) {
  struct rs_addr self = self_of(g);
  if ((g->role != GMS_PARTICIPANT && g->role != GMS_COORD) || g->left || rs_addr_eq(src, &self) ||
      v->id <= g->view->id) {
    if (!rs_addr_eq(src, &self)) g->st.stale_ignored++;
    view_unref(v);
    return false;
  }
  if (!may_send_view(g, src, v)) {
    gms_log_bad(g, src, "view from a member that is not a coordinator");
    view_unref(v);
    return false;
  }
  if (!view_contains(v, &self)) {
    if (g->leaving) {
      gms_finish_leave(g);
    } else if (proto_log_enabled(&g->base, RS_LOG_WARN)) {
      char buf[256];
      PLOG(&g->base, WARN, "not a member of view %s: ignored", view_format(v, buf, sizeof(buf)));
    }
    view_unref(v);
    return false;
  }
  const struct rs_addr old_coord = *view_coord(g->view);
  gms_install(g, v, d, v->merge);
  send_view_ack(g, src, v);
  if (g->leaving && (g->role == GMS_COORD || !rs_addr_eq(&old_coord, view_coord(v))))
    continue_leave(g);
  return true;
}

static void on_view(struct gms *g, const struct rs_msg *m) {
  struct rs_reader r;
  reader_init(&r, m->data, m->len);
  struct rs_view_data *v = gms_read_view(&r, NULL);
  if (!v || v->merge) {
    view_unref(v);
    gms_log_bad(g, &m->src, "malformed VIEW");
    return;
  }
  gms_accept_view(g, &m->src, v, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Suspicion.
 */
static const struct rs_addr *first_unsuspected(const struct gms *g) {
  for (size_t i = 0; i < g->view->n; i++)
    if (!gms_addr_in(g->suspects, g->n_suspects, &g->view->members[i])) return &g->view->members[i];
  return NULL;
}

static void on_suspect(struct gms *g, const struct rs_addr *a) {
  struct rs_addr self = self_of(g);
  if ((g->role != GMS_PARTICIPANT && g->role != GMS_COORD) || g->left || rs_addr_eq(a, &self) ||
      !view_contains(g->view, a))
    return;
  if (!gms_addr_in(g->suspects, g->n_suspects, a)) {
    if (g->n_suspects == g->cap_suspects) {
      size_t cap = g->cap_suspects ? 2 * g->cap_suspects : 8;
      struct rs_addr *s = realloc(g->suspects, cap * sizeof(*s));
      if (!s) return;
      g->suspects = s;
      g->cap_suspects = cap;
    }
    g->suspects[g->n_suspects++] = *a;
  }
  gms_coord_forget(g, a);
  if (g->role == GMS_COORD) {
    gms_enqueue(g, REQ_SUSPECT, a, NULL);
    return;
  }
  const struct rs_addr *next = first_unsuspected(g);
  if (!next || !rs_addr_eq(next, &self)) return;
  /* JGroups' "coordinator crashed": the first member not suspected takes over and removes
   * every suspect at once. */
  char buf[256];
  PLOG(&g->base, INFO, "coordinator suspected: taking over from view %s",
       view_format(g->view, buf, sizeof(buf)));
  g->role = GMS_COORD;
  for (size_t i = 0; i < g->n_suspects; i++)
    gms_enqueue(g, REQ_SUSPECT, &g->suspects[i], NULL);
  continue_leave(g);
}

static void on_unsuspect(struct gms *g, const struct rs_addr *a) {
  gms_addr_remove(g->suspects, &g->n_suspects, a);
  gms_unqueue(g, REQ_SUSPECT, a);
}

/* ---------------------------------------------------------------------------------------------
 * Messages and events.
 */
static void handle_msg(struct gms *g, const struct rs_msg *m, const struct gms_hdr *h) {
  /* VIEW is the only multicast; every other message is for one member. */
  if (rs_msg_is_multicast(m) != (h->type == GMS_VIEW)) {
    gms_log_bad(g, &m->src, "GMS message to the wrong kind of destination");
    return;
  }
  if (g->role == GMS_IDLE) {
    g->st.stale_ignored++;
    return;
  }
  switch (h->type) {
  case GMS_JOIN_REQ: gms_on_join_req(g, m); break;
  case GMS_JOIN_RSP: on_join_rsp(g, m); break;
  case GMS_LEAVE_REQ: on_leave_req(g, m); break;
  case GMS_LEAVE_RSP: on_leave_rsp(g, m); break;
  case GMS_VIEW: on_view(g, m); break;
  case GMS_VIEW_ACK: gms_on_view_ack(g, m); break;
  default: gms_merge_msg(g, m, h); break;
  }
}

/* GMS's messages are consumed here; the others go up in order around them, so that a view is
 * delivered after the messages that preceded it. */
static void gms_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct gms *g = GMS(p);
  struct rs_batch up;
  rs_batch_init(&up);
  up.src = b->src;
  up.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct gms_hdr *h = rs_msg_header(m, GMS_ID);
    if (!h) {
      rs_batch_add(&up, m);
      continue;
    }
    if (up.n) {
      proto_up_batch(p, &up);
      rs_batch_init(&up);
      up.src = b->src;
      up.dest = b->dest;
    }
    handle_msg(g, m, h);
    rs_msg_free(m);
  }
  if (up.n) proto_up_batch(p, &up);
}

static void reset(struct gms *g);

static int gms_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct gms *g = GMS(p);
  switch (ev->type) {
  case RS_EV_CONNECT: {
    int rc = proto_down_event(p, ev);
    if (rc && rc != RS_EAGAIN) return rc;
    reset(g);
    g->role = GMS_CLIENT;
    print_local(g);
    find_members(g);
    return RS_EAGAIN;
  }
  case RS_EV_DISCONNECT: return on_disconnect(g, ev);
  default: return proto_down_event(p, ev);
  }
}

static int gms_up_event(struct rs_protocol *p, struct rs_event *ev) {
  struct gms *g = GMS(p);
  switch (ev->type) {
  case RS_EV_SUSPECT: on_suspect(g, &ev->u.addr); return 0;
  case RS_EV_UNSUSPECT: on_unsuspect(g, &ev->u.addr); return 0;
  case RS_EV_MERGE: gms_merge_event(g, ev->u.merge.views, ev->u.merge.n); return 0;
  default: return proto_up_event(p, ev);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static void reset(struct gms *g) {
  rs_timer_stop(&g->join_timer);
  rs_timer_stop(&g->leave_timer);
  rs_task_cancel(g->base.rt, &g->done_task);
  gms_coord_reset(g);
  gms_merge_reset(g);
  view_unref(g->view);
  g->view = NULL;
  g->role = GMS_IDLE;
  g->n_suspects = 0;
  g->finding = false;
  g->join_attempts = 0;
  g->join_target = RS_ADDR_NULL;
  g->leaving = g->leave_cast = g->left = false;
  g->connect_done_pending = g->disconnect_done_pending = false;
}

static int gms_init(struct rs_protocol *p) {
  struct gms *g = GMS(p);
  rs_timer_init(&g->join_timer, p->rt, join_timer_fired);
  rs_timer_init(&g->leave_timer, p->rt, leave_timeout);
  rs_task_init(&g->done_task, done_run);
  gms_coord_init(g);
  gms_merge_init(g);
  return 0;
}

static int gms_start(struct rs_protocol *p) {
  reset(GMS(p));
  return 0;
}

static void gms_stop(struct rs_protocol *p) { reset(GMS(p)); }

static void gms_destroy(struct rs_protocol *p) {
  struct gms *g = GMS(p);
  reset(g);
  free(g->queue);
  free(g->suspects);
  free(g->ack_missing);
  free(g->laggards);
  g->laggards = NULL;
  g->queue = NULL;
  g->suspects = g->ack_missing = NULL;
}

static void gms_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct gms *g = GMS(p);
  static const char *const roles[] = {"none", "joining", "participant", "coordinator"};
  char v[512] = "";
  if (g->view) view_format(g->view, v, sizeof(v));
  out->line(out, "role", "%s", roles[g->role]);
  out->line(out, "view", "%s", v);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"views_installed", g->st.views_installed},
      {"views_sent", g->st.views_sent},
      {"join_attempts", g->st.join_attempts},
      {"join_reqs_received", g->st.join_reqs_received},
      {"joins_admitted", g->st.joins_admitted},
      {"joins_refused", g->st.joins_refused},
      {"leaves_handled", g->st.leaves_handled},
      {"suspects_handled", g->st.suspects_handled},
      {"view_acks_received", g->st.view_acks_received},
      {"view_ack_timeouts", g->st.view_ack_timeouts},
      {"views_resent", g->st.views_resent},
      {"merges_started", g->st.merges_started},
      {"merges_completed", g->st.merges_completed},
      {"merges_cancelled", g->st.merges_cancelled},
      {"merges_rejected", g->st.merges_rejected},
      {"merges_ignored", g->st.merges_ignored},
      {"merge_views_installed", g->st.merge_views_installed},
      {"queued_requests", g->n_queue},
      {"requests_dropped", g->st.requests_dropped},
      {"stale_ignored", g->st.stale_ignored},
      {"bad_dropped", g->st.bad_dropped},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr gms_attrs[] = {
    {"join_timeout", RS_ATTR_DURATION, offsetof(struct gms, join_timeout), "2000ms", 1, 3600000,
     "how long discovery may take, and how long a joiner waits for JOIN_RSP before it tries "
     "again",
     0, NULL},
    {"max_join_attempts", RS_ATTR_INT, offsetof(struct gms, max_join_attempts), "10", 0, 1e9,
     "JOIN_REQs without an answer before the joiner gives up and starts a view of its own "
     "(0: never gives up)",
     0, NULL},
    {"all_clients_retry_timeout", RS_ATTR_DURATION, offsetof(struct gms, all_clients_retry_timeout),
     "100ms", 1, 3600000,
     "wait before discovering again when only members that are still joining answered", 0, NULL},
    {"leave_timeout", RS_ATTR_DURATION, offsetof(struct gms, leave_timeout), "1000ms", 1, 3600000,
     "how long a leaving member waits for the coordinator to confirm", 0, NULL},
    {"merge_timeout", RS_ATTR_DURATION, offsetof(struct gms, merge_timeout), "5000ms", 1, 3600000,
     "how long a merge may take before it is cancelled", 0, NULL},
    {"view_ack_collection_timeout", RS_ATTR_DURATION,
     offsetof(struct gms, view_ack_collection_timeout), "2000ms", 1, 3600000,
     "how long the coordinator waits for every member to acknowledge a view before the next", 0,
     NULL},
    {"print_local_addr", RS_ATTR_BOOL, offsetof(struct gms, print_local_addr), "true", 0, 0,
     "log the local address, cluster and physical address at INFO when joining (JGroups prints "
     "it to stdout)",
     0, NULL},
    {"print_physical_addrs", RS_ATTR_BOOL, offsetof(struct gms, print_physical_addrs), "true", 0, 0,
     "include the physical address in that line", 0, NULL},
    IGNORED("use_delta_views", "full views are always sent"),
    IGNORED("max_leave_attempts", "LEAVE_REQ is sent again whenever the coordinator changes"),
    IGNORED("num_prev_mbrs", "messages of former members are dropped by NAKACK2 and UNICAST3"),
    IGNORED("num_prev_views", "probe shows the current view"),
    IGNORED("log_collect_msgs", "missing VIEW_ACKs are logged at WARN"),
    IGNORED("log_view_warnings", "view problems are logged at WARN"),
    IGNORED("print_view_details", "views are logged at INFO"),
    IGNORED("membership_change_policy",
            "built in: joiners are appended, leavers and suspects removed"),
    IGNORED("view_bundling", "requests queued while a view is out always become one view"),
    IGNORED("max_bundling_time", "requests queued while a view is out always become one view"),
    RS_ATTR_END,
};

static const char *const gms_below[] = {"NAKACK2", "PING|TCPPING", NULL};

const struct rs_protocol_ops gms_protocol = {
    .name = "GMS",
    .package = "pbcast",
    .id = GMS_ID,
    .size = sizeof(struct gms),
    .description = "group membership: join, leave, views, removal of crashed members, merging",
    .attrs = gms_attrs,
    .header = &gms_header,
    .requires_below = gms_below,
    .init = gms_init,
    .start = gms_start,
    .stop = gms_stop,
    .destroy = gms_destroy,
    .up_batch = gms_up_batch,
    .down_event = gms_down_event,
    .up_event = gms_up_event,
    .stats = gms_stats,
};

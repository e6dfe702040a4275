/* Discovery: finding members (FIND_INITIAL_MBRS) and answering them, shared by PING and TCPPING. */
#include "protocols/discovery.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tp.h"

/*
 * How it works (JGroups' Discovery, reimplemented):
 *
 * - Finding (RS_EV_FIND_INITIAL_MBRS from GMS): the request gets its own record, sends a
 *   GET_MBRS_REQ carrying our ping data (address, logical name, physical address, coordinator
 *   and server flags) as a group message, and collects what comes back, one entry per member
 *   (a later answer of the same member replaces its entry: its flags may have changed). With
 *   num_discovery_runs = N the request is sent N times, at 0, T/N, 2T/N, ... of its timeout T,
 *   so that one lost request or answer on a lossy network does not hide a member. It completes,
 *   exactly once and outside the receive path (a task), when its timeout expires, when a
 *   coordinator has answered (break_on_coord_rsp, as JGroups: a joiner needs nothing more), or
 *   when num_members members have answered. Several requests may be outstanding (GMS retries);
 *   every answer counts for all of them.
 * - Answering: every member of the cluster answers a GET_MBRS_REQ with a unicast GET_MBRS_RSP
 *   carrying its own ping data: also a member still joining (is_server false), because members
 *   that join at the same time must find each other (GMS then picks the lowest address among
 *   them as the first coordinator). As in JGroups, a member that is leaving (DISCONNECT went
 *   down) answers nothing and ignores answers, so that it is not merged back; and a request
 *   itself is evidence of its sender, so its ping data counts as an answer for our own
 *   outstanding requests (two joiners that lose each other's answers still meet that way).
 * - Teaching the transport: every request and answer sends RS_EV_ADD_PHYSICAL_ADDRESS down with
 *   the sender's (address, physical address, name), so the unicast answer can be routed and
 *   logical names are known everywhere.
 * - stagger_timeout spreads answers as JGroups does: a member at position r (1-based) of an n
 *   member view waits stagger_timeout * (r - 1) / n, so the coordinator answers first; a member
 *   without a view waits a random time up to stagger_timeout.
 * - The ping data travels in the header (not the payload): discovery messages carry nothing
 *   else, and the header's codec is the one place that validates it.
 * - Control messages are OOB|NO_FC; requests are DONT_LOOPBACK (we never answer ourselves).
 * - Bad input: a header whose ping data does not describe its sender (another address, none,
 *   or ours) is dropped and counted in `bad_dropped` with a rate-limited line. Malformed header
 *   bytes never get here: the frame decoder drops the frame (the transport's dropped_malformed).
 */

#define D(p) ((struct discovery *)(p))
#define BAD_INPUT_LOG_INTERVAL (5 * RS_SEC)
#define CONTROL_FLAGS (RS_MSG_OOB | RS_MSG_NO_FC)
#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---------------------------------------------------------------------------------------------
 * The header (PING id 5, TCPPING id 9). Byte layout (docs/wire-format.md, PING and TCPPING):
 *
 *   +--------+--------------+-----------------------+-----------------+--------+
 *   | type   | address (16) | name (varint len + B) | physical address| flags  |
 *   +--------+--------------+-----------------------+-----------------+--------+
 *   type: 1 GET_MBRS_REQ, 2 GET_MBRS_RSP; name: at most RS_NAME_MAX bytes, no NUL; physical
 *   address: as put_phys writes it; flags: 0x01 is_server, 0x02 is_coord. Another type,
 *   another flag bit, an unknown address family or a longer name makes the header malformed.
 */
static const struct rs_ping_data no_data;

static const struct rs_ping_data *data_of(const struct discovery_hdr *h) {
  return h->data ? h->data : &no_data;
}

static size_t phys_wire_size(const struct rs_phys *p) {
  switch (p->family) {
  case RS_PHYS_NONE: return 1;
  case RS_PHYS_IP4: return 1 + 4 + 2;
  case RS_PHYS_IP6: return 1 + 16 + 2;
  default: return 1 + 2;
  }
}

static uint8_t flags_of(const struct rs_ping_data *pd) {
  return (uint8_t)((pd->is_server ? DISCOVERY_IS_SERVER : 0) |
                   (pd->is_coord ? DISCOVERY_IS_COORD : 0));
}

size_t discovery_hdr_wire_size(const void *p) {
  const struct rs_ping_data *pd = data_of(p);
  size_t name = strlen(pd->name);
  return 1 + 16 + varint_size(name) + name + phys_wire_size(&pd->phys) + 1;
}

void discovery_hdr_write(const void *p, struct rs_writer *w) {
  const struct discovery_hdr *h = p;
  const struct rs_ping_data *pd = data_of(h);
  put_u8(w, h->type);
  put_addr(w, &pd->addr);
  put_str(w, pd->name);
  put_phys(w, &pd->phys);
  put_u8(w, flags_of(pd));
}

void discovery_hdr_read(void *p, struct rs_reader *r) {
  struct discovery_hdr *h = p;
  h->data = NULL;
  h->type = 0;
  struct rs_ping_data *pd = calloc(1, sizeof(*pd));
  if (!pd) {
    reader_fail(r, RS_ENOMEM);
    return;
  }
  uint8_t type = get_u8(r);
  pd->addr = get_addr(r);
  get_str(r, pd->name, sizeof(pd->name), RS_NAME_MAX);
  pd->phys = get_phys(r);
  uint8_t flags = get_u8(r);
  if ((type != DISCOVERY_GET_MBRS_REQ && type != DISCOVERY_GET_MBRS_RSP) ||
      (flags & ~(DISCOVERY_IS_SERVER | DISCOVERY_IS_COORD)))
    reader_fail(r, RS_EMALFORMED);
  if (r->err) {
    free(pd);
    return;
  }
  pd->is_server = flags & DISCOVERY_IS_SERVER;
  pd->is_coord = flags & DISCOVERY_IS_COORD;
  h->type = type;
  h->data = pd;
}

int discovery_hdr_copy(void *dst, const void *src) {
  struct discovery_hdr *d = dst;
  const struct discovery_hdr *s = src;
  d->type = s->type;
  d->data = NULL;
  if (!s->data) return 0;
  if (!(d->data = malloc(sizeof(*d->data)))) return RS_ENOMEM;
  *d->data = *s->data;
  return 0;
}

void discovery_hdr_free(void *p) {
  struct discovery_hdr *h = p;
  free(h->data);
  h->data = NULL;
}

int discovery_hdr_print(const void *p, char *buf, size_t len) {
  const struct discovery_hdr *h = p;
  const struct rs_ping_data *pd = data_of(h);
  char a[RS_ADDR_STRLEN], ph[RS_PHYS_STRLEN];
  const char *t = h->type == DISCOVERY_GET_MBRS_REQ   ? "GET_MBRS_REQ"
                  : h->type == DISCOVERY_GET_MBRS_RSP ? "GET_MBRS_RSP"
                                                      : "?";
  return snprintf(buf, len, "%s %s (%s) %s%s%s", t, rs_addr_format(&pd->addr, a), pd->name,
                  phys_format(&pd->phys, ph, sizeof(ph)), pd->is_coord ? " coord" : "",
                  pd->is_server ? " server" : "");
}

/* ---------------------------------------------------------------------------------------------
 * What we say about ourselves, and what we learn of others.
 */
static bool is_coord(struct discovery *d) {
  struct rs_addr self = proto_local_addr(&d->base);
  const struct rs_addr *coord = view_coord(d->view);
  return coord && rs_addr_eq(coord, &self);
}

/* Our position in the view, from 1; 0 without a view that contains us. */
static size_t own_rank(struct discovery *d) {
  struct rs_addr self = proto_local_addr(&d->base);
  long i = d->view ? view_index(d->view, &self) : -1;
  return i < 0 ? 0 : (size_t)i + 1;
}

static void own_data(struct discovery *d, struct rs_ping_data *pd) {
  memset(pd, 0, sizeof(*pd));
  pd->addr = proto_local_addr(&d->base);
  snprintf(pd->name, sizeof(pd->name), "%s", proto_local_name(&d->base));
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS, .u.addr = RS_ADDR_NULL};
  if (proto_down_event(&d->base, &ev) == 0) pd->phys = ev.phys;
  pd->is_coord = is_coord(d);
  pd->is_server = d->is_server;
}

/* A discovery message of ours: header with our ping data, OOB|NO_FC. NULL when out of memory. */
static struct rs_msg *make_msg(struct discovery *d, uint8_t type, const struct rs_addr *dest) {
  struct rs_msg *m = rs_msg_new();
  struct rs_ping_data *pd = malloc(sizeof(*pd));
  struct discovery_hdr *h = m && pd ? rs_msg_put_header(m, d->base.ops->header) : NULL;
  if (!h) {
    free(pd);
    rs_msg_free(m);
    return NULL;
  }
  own_data(d, pd);
  h->type = type;
  h->data = pd;
  m->dest = dest ? *dest : RS_ADDR_NULL;
  m->flags = CONTROL_FLAGS;
  return m;
}

static void teach_transport(struct discovery *d, const struct rs_ping_data *pd) {
  struct rs_event ev = {.type = RS_EV_ADD_PHYSICAL_ADDRESS};
  ev.u.mapping.addr = pd->addr;
  ev.u.mapping.phys = pd->phys;
  ev.u.mapping.name = pd->name[0] ? pd->name : NULL;
  proto_down_event(&d->base, &ev);
}

/* ---------------------------------------------------------------------------------------------
 * Requests: one record per outstanding RS_EV_FIND_INITIAL_MBRS.
 */
struct disc_request {
  struct disc_request *next;
  struct discovery *d;
  struct rs_timer deadline;  /* the request's timeout */
  struct rs_timer run_timer; /* the next of num_discovery_runs */
  int64_t runs_left;
  size_t num_members;
  void (*done)(void *arg, const struct rs_ping_data *found, size_t n);
  void *arg;
  struct rs_ping_data *found;
  size_t n_found, cap_found;
  bool finished; /* done is due: the finish task calls it */
  bool early;    /* finished before the timeout */
};

static void send_request(struct discovery *d) {
  struct rs_msg *m = make_msg(d, DISCOVERY_GET_MBRS_REQ, NULL);
  if (!m) return;
  m->tflags |= RS_MSG_DONT_LOOPBACK;
  d->st.requests_sent++;
  d->dops->send_request(d, m);
}

static void finish(struct disc_request *rq, bool early) {
  if (rq->finished) return;
  rq->finished = true;
  rq->early = early;
  rs_timer_stop(&rq->deadline);
  rs_timer_stop(&rq->run_timer);
  rs_post(rq->d->base.rt, &rq->d->finish_task);
}

static void on_deadline(struct rs_timer *t) {
  finish(CONTAINER_OF(t, struct disc_request, deadline), false);
}

static void on_run(struct rs_timer *t) {
  struct disc_request *rq = CONTAINER_OF(t, struct disc_request, run_timer);
  if (--rq->runs_left <= 0) rs_timer_stop(&rq->run_timer);
  send_request(rq->d);
}

static struct rs_ping_data *found_slot(struct disc_request *rq, const struct rs_addr *addr) {
  for (size_t i = 0; i < rq->n_found; i++)
    if (rs_addr_eq(&rq->found[i].addr, addr)) return &rq->found[i];
  if (rq->n_found == rq->cap_found) {
    if (rq->cap_found >= DISCOVERY_MAX_FOUND) return NULL;
    size_t cap = rq->cap_found ? rq->cap_found * 2 : 8;
    struct rs_ping_data *v = realloc(rq->found, cap * sizeof(*v));
    if (!v) return NULL;
    rq->found = v;
    rq->cap_found = cap;
  }
  return &rq->found[rq->n_found++];
}

/* Records what a member said about itself in every outstanding request; a request that now has
 * a coordinator's answer (break_on_coord_rsp) or num_members answers is finished. */
static void add_found(struct discovery *d, const struct rs_ping_data *pd) {
  for (struct disc_request *rq = d->requests; rq; rq = rq->next) {
    if (rq->finished) continue;
    struct rs_ping_data *slot = found_slot(rq, &pd->addr);
    if (!slot) {
      d->st.dropped_found_full++;
      continue;
    }
    *slot = *pd;
    if ((d->break_on_coord_rsp && pd->is_coord) ||
        (rq->num_members && rq->n_found >= rq->num_members))
      finish(rq, true);
  }
}

static void request_free(struct disc_request *rq) {
  rs_timer_stop(&rq->deadline);
  rs_timer_stop(&rq->run_timer);
  free(rq->found);
  free(rq);
}

/* Calls done for every finished request, one at a time from the head: done may start a new
 * request (linked at the head, unfinished) or otherwise use the protocol. */
static void finish_ready(struct rs_task *t) {
  struct discovery *d = CONTAINER_OF(t, struct discovery, finish_task);
  for (;;) {
    struct disc_request **pp = &d->requests;
    while (*pp && !(*pp)->finished)
      pp = &(*pp)->next;
    struct disc_request *rq = *pp;
    if (!rq) return;
    *pp = rq->next;
    d->n_requests--;
    if (rq->early)
      d->st.finds_completed_early++;
    else
      d->st.finds_timed_out++;
    d->st.members_found += rq->n_found;
    rq->done(rq->arg, rq->found ? rq->found : &no_data, rq->n_found); /* never NULL */
    request_free(rq);
  }
}

static int find_start(struct discovery *d, const struct rs_event *ev) {
  if (!d->running || !ev->u.find.done) {
    d->st.finds_refused++;
    return d->running ? RS_EINVAL : RS_ENOTCONN;
  }
  if (d->n_requests >= DISCOVERY_MAX_FINDS) {
    d->st.finds_refused++;
    return RS_EAGAIN;
  }
  struct disc_request *rq = calloc(1, sizeof(*rq));
  if (!rq) return RS_ENOMEM;
  rq->d = d;
  rq->num_members = ev->u.find.num_members;
  rq->done = ev->u.find.done;
  rq->arg = ev->u.find.arg;
  rs_timer_init(&rq->deadline, d->base.rt, on_deadline);
  rs_timer_init(&rq->run_timer, d->base.rt, on_run);
  rq->next = d->requests;
  d->requests = rq;
  d->n_requests++;
  d->st.discovery_runs++;
  rs_time timeout = ev->u.find.timeout ? ev->u.find.timeout : d->timeout;
  rs_timer_start(&rq->deadline, timeout, 0);
  rq->runs_left = d->num_discovery_runs - 1;
  if (rq->runs_left > 0) {
    rs_time every = timeout / (rs_time)d->num_discovery_runs;
    rs_timer_start(&rq->run_timer, every ? every : 1, every ? every : 1);
  }
  send_request(d);
  return 0;
}

static void cancel_requests(struct discovery *d) {
  while (d->requests) {
    struct disc_request *rq = d->requests;
    d->requests = rq->next;
    d->st.finds_cancelled++;
    request_free(rq);
  }
  d->n_requests = 0;
  rs_task_cancel(d->base.rt, &d->finish_task);
}

/* ---------------------------------------------------------------------------------------------
 * Answers, at once or after the stagger delay.
 */
static void send_response(struct discovery *d, const struct rs_addr *to) {
  struct rs_msg *m = make_msg(d, DISCOVERY_GET_MBRS_RSP, to);
  if (!m) return;
  d->st.responses_sent++;
  proto_down_msg(&d->base, m);
}

static rs_time stagger_delay(struct discovery *d) {
  if (!d->stagger_timeout) return 0;
  size_t rank = own_rank(d);
  if (!rank) return rs_random_range(d->base.rt, 0, d->stagger_timeout);
  return d->stagger_timeout * (rs_time)(rank - 1) / (rs_time)d->view->n;
}

static void arm_stagger(struct discovery *d) {
  if (!d->n_pending) {
    rs_timer_stop(&d->stagger_timer);
    return;
  }
  rs_time first = d->pending[0].at, now = rs_now(d->base.rt);
  for (size_t i = 1; i < d->n_pending; i++)
    if (d->pending[i].at < first) first = d->pending[i].at;
  rs_timer_start(&d->stagger_timer, first > now ? first - now : 0, 0);
}

static void on_stagger(struct rs_timer *t) {
  struct discovery *d = CONTAINER_OF(t, struct discovery, stagger_timer);
  rs_time now = rs_now(d->base.rt);
  size_t kept = 0;
  for (size_t i = 0; i < d->n_pending; i++) {
    if (d->pending[i].at <= now)
      send_response(d, &d->pending[i].to);
    else
      d->pending[kept++] = d->pending[i];
  }
  d->n_pending = kept;
  arm_stagger(d);
}

static void queue_response(struct discovery *d, const struct rs_addr *to, rs_time delay) {
  for (size_t i = 0; i < d->n_pending; i++)
    if (rs_addr_eq(&d->pending[i].to, to)) return; /* one answer covers both requests */
  if (d->n_pending == DISCOVERY_MAX_PENDING_RSP) {
    d->st.dropped_pending_full++;
    return;
  }
  d->pending[d->n_pending].to = *to;
  d->pending[d->n_pending].at = rs_now(d->base.rt) + delay;
  d->n_pending++;
  arm_stagger(d);
}

static void answer(struct discovery *d, const struct rs_addr *to) {
  if (d->max_rank_to_reply > 0 && own_rank(d) > (size_t)d->max_rank_to_reply) {
    d->st.not_answered++;
    return;
  }
  rs_time delay = stagger_delay(d);
  if (delay)
    queue_response(d, to, delay);
  else
    send_response(d, to);
}

/* ---------------------------------------------------------------------------------------------
 * Receiving.
 */
static void drop_bad(struct discovery *d, const struct rs_msg *m, const char *why) {
  d->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&d->base, RS_LOG_WARN) ||
      !ratelimit_ok(&d->rl_bad, rs_now(d->base.rt), BAD_INPUT_LOG_INTERVAL, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&d->base, WARN, "dropped a discovery message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(&m->src, a), why, suppressed);
}

static void handle(struct discovery *d, const struct rs_msg *m, const struct discovery_hdr *h) {
  const struct rs_ping_data *pd = h->data;
  struct rs_addr self = proto_local_addr(&d->base);
  const char *bad = NULL;
  if (!d->running) return;
  if (!pd || (h->type != DISCOVERY_GET_MBRS_REQ && h->type != DISCOVERY_GET_MBRS_RSP))
    bad = "no ping data or an unknown type";
  else if (rs_addr_is_null(&pd->addr) || !rs_addr_eq(&pd->addr, &m->src))
    bad = "the ping data is not its sender's";
  else if (rs_addr_eq(&pd->addr, &self))
    bad = "it claims our own address";
  if (bad) {
    drop_bad(d, m, bad);
    return;
  }
  bool request = h->type == DISCOVERY_GET_MBRS_REQ;
  if (request)
    d->st.requests_received++;
  else
    d->st.responses_received++;
  if (d->leaving) {
    if (request) d->st.not_answered++;
    return;
  }
  teach_transport(d, pd);
  add_found(d, pd);
  if (request) answer(d, &pd->addr);
}

/* The ids of every discovery protocol that uses this codec. */
static const uint16_t discovery_ids[] = {5 /* PING */, 9 /* TCPPING */};

/* A message of another discovery protocol that is not in our stack (a PING member talking to a
 * TCPPING one): nobody above would take it, and it must not reach the application. */
static bool foreign(const struct discovery *d, const struct rs_msg *m) {
  for (size_t i = 0; i < sizeof(discovery_ids) / sizeof(discovery_ids[0]); i++)
    if ((d->foreign_ids & (1u << i)) && rs_msg_header(m, discovery_ids[i])) return true;
  return false;
}

static bool wanted(const struct discovery *d, const struct rs_msg *m) {
  return rs_msg_header(m, d->base.ops->id) || (d->foreign_ids && foreign(d, m));
}

void discovery_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct discovery *d = D(p);
  uint16_t id = p->ops->id;
  bool ours = false;
  for (struct rs_msg *m = b->head; m && !ours; m = m->next)
    ours = wanted(d, m);
  if (!ours) {
    proto_up_batch(p, b);
    return;
  }
  struct rs_batch rest;
  rs_batch_init(&rest);
  rest.src = b->src;
  rest.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct discovery_hdr *h = rs_msg_header(m, id);
    if (!h && !foreign(d, m)) {
      rs_batch_add(&rest, m);
      continue;
    }
    if (h)
      handle(d, m, h);
    else
      d->st.foreign_dropped++;
    rs_msg_free(m);
  }
  if (rest.n) proto_up_batch(p, &rest);
}

/* ---------------------------------------------------------------------------------------------
 * Events from above.
 */
static void set_view(struct discovery *d, const struct rs_view_data *v) {
  struct rs_view_data *old = d->view;
  d->view = v ? view_ref((struct rs_view_data *)v) : NULL;
  view_unref(old);
}

int discovery_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct discovery *d = D(p);
  switch (ev->type) {
  case RS_EV_FIND_INITIAL_MBRS: return find_start(d, ev);
  case RS_EV_VIEW_CHANGE: set_view(d, ev->u.view); break;
  case RS_EV_BECOME_SERVER: d->is_server = true; break;
  case RS_EV_DISCONNECT: /* a leaving member says nothing more, not even staggered answers */
    d->leaving = true;
    d->n_pending = 0;
    rs_timer_stop(&d->stagger_timer);
    break;
  default: break;
  }
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle and stats.
 */
struct rs_tp *discovery_transport(struct discovery *d) {
  struct rs_protocol *bottom = d->base.stack->bottom;
  return bottom && (bottom->ops->flags & RS_PROTO_TRANSPORT) ? (struct rs_tp *)bottom : NULL;
}

int discovery_init(struct rs_protocol *p) {
  struct discovery *d = D(p);
  rs_task_init(&d->finish_task, finish_ready);
  rs_timer_init(&d->stagger_timer, p->rt, on_stagger);
  d->pending = malloc(DISCOVERY_MAX_PENDING_RSP * sizeof(*d->pending));
  if (!d->pending) return proto_error(p, "out of memory");
  return 0;
}

int discovery_start(struct rs_protocol *p) {
  struct discovery *d = D(p);
  memset(&d->st, 0, sizeof(d->st));
  d->is_server = false;
  d->leaving = false;
  d->foreign_ids = 0;
  for (size_t i = 0; i < sizeof(discovery_ids) / sizeof(discovery_ids[0]); i++) {
    bool present = false;
    for (struct rs_protocol *q = p->stack->bottom; q && !present; q = q->up)
      present = q->ops->id == discovery_ids[i];
    if (!present) d->foreign_ids |= 1u << i;
  }
  int rc = d->dops->start ? d->dops->start(d) : 0;
  if (rc) return rc;
  d->running = true;
  return 0;
}

/* A stopped stack comes back with a new address: forget everything (see discovery.h for why
 * outstanding requests are cancelled, not completed). */
void discovery_stop(struct rs_protocol *p) {
  struct discovery *d = D(p);
  d->running = false;
  cancel_requests(d);
  rs_timer_stop(&d->stagger_timer);
  d->n_pending = 0;
  set_view(d, NULL);
  d->is_server = false;
}

void discovery_destroy(struct rs_protocol *p) {
  struct discovery *d = D(p);
  discovery_stop(p);
  free(d->pending);
  d->pending = NULL;
}

void discovery_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct discovery *d = D(p);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"discovery_runs", d->st.discovery_runs},
      {"finds_completed_early", d->st.finds_completed_early},
      {"finds_timed_out", d->st.finds_timed_out},
      {"finds_cancelled", d->st.finds_cancelled},
      {"finds_refused", d->st.finds_refused},
      {"finds_outstanding", d->n_requests},
      {"requests_sent", d->st.requests_sent},
      {"requests_received", d->st.requests_received},
      {"responses_sent", d->st.responses_sent},
      {"responses_received", d->st.responses_received},
      {"members_found", d->st.members_found},
      {"not_answered", d->st.not_answered},
      {"responses_waiting", d->n_pending},
      {"dropped_pending_full", d->st.dropped_pending_full},
      {"dropped_found_full", d->st.dropped_found_full},
      {"bad_dropped", d->st.bad_dropped},
      {"foreign_dropped", d->st.foreign_dropped},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
  out->line(out, "is_coord", "%s", is_coord(d) ? "true" : "false");
  out->line(out, "is_server", "%s", d->is_server ? "true" : "false");
}

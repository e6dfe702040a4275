/* The common transport: bundler, frame codec use, loopback to self, the address table. */
#include "transport/tp.h"

#include "stack/view.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP(p) ((struct rs_tp *)(p))
#define MAX_GROUP_TARGETS 1024
#define BAD_INPUT_LOG_INTERVAL (5 * RS_SEC)

/* --- the address table ----------------------------------------------------------------------- */

const struct tp_peer *tp_lookup(const struct rs_tp *tp, const struct rs_addr *addr) {
  for (size_t i = 0; i < tp->n_table; i++)
    if (rs_addr_eq(&tp->table[i].addr, addr)) return &tp->table[i];
  return NULL;
}

int tp_learn(struct rs_tp *tp, const struct rs_addr *addr, const struct rs_phys *phys,
             const char *name) {
  struct tp_peer *e = (struct tp_peer *)tp_lookup(tp, addr);
  if (!e) {
    if (tp->n_table == tp->cap_table) {
      size_t cap = tp->cap_table ? tp->cap_table * 2 : 16;
      struct tp_peer *t = realloc(tp->table, cap * sizeof(*t));
      if (!t) return RS_ENOMEM;
      tp->table = t;
      tp->cap_table = cap;
    }
    e = &tp->table[tp->n_table++];
    e->addr = *addr;
    e->phys = (struct rs_phys){0}; /* a name may come before the address (MERGE3's INFO) */
    e->name = NULL;
  }
  if (phys && phys->family != RS_PHYS_NONE) e->phys = *phys;
  if (name && (!e->name || strcmp(e->name, name))) {
    char *copy = strdup(name);
    if (copy) {
      free(e->name);
      e->name = copy;
    }
  }
  return 0;
}

static void table_clear(struct rs_tp *tp) {
  for (size_t i = 0; i < tp->n_table; i++) free(tp->table[i].name);
  tp->n_table = 0;
}

static bool contains_phys(const struct rs_phys *v, size_t n, const struct rs_phys *p) {
  for (size_t i = 0; i < n; i++)
    if (phys_eq(&v[i], p)) return true;
  return false;
}

size_t tp_group_targets(struct rs_tp *tp, struct rs_phys *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < tp->n_table && n < cap; i++) {
    const struct rs_phys *p = &tp->table[i].phys;
    if (p->family == RS_PHYS_NONE || phys_eq(p, &tp->local_phys) || contains_phys(out, n, p)) continue;
    out[n++] = *p;
  }
  for (size_t i = 0; i < tp->n_static && n < cap; i++) {
    const struct rs_phys *p = &tp->static_peers[i];
    if (phys_eq(p, &tp->local_phys) || contains_phys(out, n, p)) continue;
    out[n++] = *p;
  }
  return n;
}

int tp_add_static_peer(struct rs_tp *tp, const struct rs_phys *phys) {
  if (contains_phys(tp->static_peers, tp->n_static, phys)) return 0;
  if (tp->n_static == tp->cap_static) {
    size_t cap = tp->cap_static ? tp->cap_static * 2 : 8;
    struct rs_phys *v = realloc(tp->static_peers, cap * sizeof(*v));
    if (!v) return RS_ENOMEM;
    tp->static_peers = v;
    tp->cap_static = cap;
  }
  tp->static_peers[tp->n_static++] = *phys;
  return 0;
}

/* --- bundler queues -------------------------------------------------------------------------- */

static struct tp_queue *queue_for(struct rs_tp *tp, const struct rs_addr *dest) {
  for (size_t i = 0; i < tp->n_queues; i++)
    if (rs_addr_eq(&tp->queues[i].dest, dest)) return &tp->queues[i];
  if (tp->n_queues == tp->cap_queues) {
    size_t cap = tp->cap_queues ? tp->cap_queues * 2 : 8;
    struct tp_queue *q = realloc(tp->queues, cap * sizeof(*q));
    if (!q) return NULL;
    tp->queues = q;
    tp->cap_queues = cap;
  }
  struct tp_queue *q = &tp->queues[tp->n_queues++];
  memset(q, 0, sizeof(*q));
  q->dest = *dest;
  return q;
}

static void queue_push(struct rs_tp *tp, struct tp_queue *q, struct rs_msg *m) {
  m->next = NULL;
  if (q->tail) q->tail->next = m;
  else q->head = m;
  q->tail = m;
  q->n++;
  tp->queued++;
}

static struct rs_msg *queue_pop(struct rs_tp *tp, struct tp_queue *q) {
  struct rs_msg *m = q->head;
  q->head = m->next;
  if (!q->head) q->tail = NULL;
  m->next = NULL;
  q->n--;
  tp->queued--;
  return m;
}

static void queues_clear(struct rs_tp *tp) {
  for (size_t i = 0; i < tp->n_queues; i++)
    while (tp->queues[i].head) rs_msg_free(queue_pop(tp, &tp->queues[i]));
  tp->n_queues = 0;
}

/* --- sending frames -------------------------------------------------------------------------- */

static void log_bad(struct rs_tp *tp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_bad(struct rs_tp *tp, const char *fmt, ...) {
  uint64_t suppressed;
  if (!ratelimit_ok(&tp->rl_bad, rs_now(tp->base.rt), BAD_INPUT_LOG_INTERVAL, &suppressed)) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (suppressed)
    PLOG(&tp->base, WARN, "%s (%llu similar lines suppressed)", line, (unsigned long long)suppressed);
  else
    PLOG(&tp->base, WARN, "%s", line);
}

/* Keeps a refused frame and the targets still to send it to, until tp_writable(). */
static void keep_pending(struct rs_tp *tp, const uint8_t *frame, size_t len,
                         const struct rs_phys *targets, size_t n, bool multicast) {
  tp->pending.bytes = malloc(len);
  tp->pending.targets = n ? malloc(n * sizeof(*targets)) : NULL;
  if (!tp->pending.bytes || (n && !tp->pending.targets)) {
    free(tp->pending.bytes);
    free(tp->pending.targets);
    tp->pending.bytes = NULL;
    tp->pending.targets = NULL;
    tp->stats.dropped_send_error++;
    return;
  }
  memcpy(tp->pending.bytes, frame, len);
  if (n) memcpy(tp->pending.targets, targets, n * sizeof(*targets));
  tp->pending.len = len;
  tp->pending.n_targets = n;
  tp->pending.multicast = multicast;
  tp->blocked = true;
  tp->stats.send_blocked++;
  stack_set_congested(tp->base.stack, true);
}

/* Sends to each target in turn (a multicast when targets is NULL). Returns the index of the
 * target that refused (RS_EAGAIN), or n when all were sent or dropped. */
static size_t send_to(struct rs_tp *tp, const uint8_t *frame, size_t len,
                      const struct rs_phys *targets, size_t n, bool multicast) {
  if (multicast) {
    int rc = tp->tops->send(tp, NULL, frame, len);
    if (rc == RS_EAGAIN) return 0;
    if (rc) tp->stats.dropped_send_error++;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = tp->tops->send(tp, &targets[i], frame, len);
    if (rc == RS_EAGAIN) return i;
    if (rc) tp->stats.dropped_send_error++;
  }
  return n;
}

static void send_frame(struct rs_tp *tp, const struct rs_addr *dest, const uint8_t *frame,
                       size_t len) {
  struct rs_phys targets[MAX_GROUP_TARGETS];
  size_t n = 0;
  targets[0] = (struct rs_phys){0};
  bool multicast = rs_addr_is_null(dest) && tp->tops->multicast;
  if (rs_addr_is_null(dest)) {
    if (!multicast) n = tp_group_targets(tp, targets, MAX_GROUP_TARGETS);
  } else {
    const struct tp_peer *peer = tp_lookup(tp, dest);
    if (peer && peer->phys.family != RS_PHYS_NONE) {
      targets[0] = peer->phys;
    } else if (!tp->tops->resolve || tp->tops->resolve(tp, dest, &targets[0]) != 0) {
      char a[RS_ADDR_STRLEN];
      tp->stats.dropped_no_route++;
      log_bad(tp, "no physical address for %s: frame dropped", rs_addr_format(dest, a));
      return;
    } else {
      tp_learn(tp, dest, &targets[0], NULL);
    }
    n = 1;
  }
  size_t done = send_to(tp, frame, len, targets, n, multicast);
  if (multicast ? done == 0 : done < n)
    keep_pending(tp, frame, len, targets + (multicast ? 0 : done), multicast ? 0 : n - done, multicast);
}

/* Packs as many queued messages as fit in bundler.max_size (at least one) into tp->frame. */
static size_t pack(struct rs_tp *tp, struct tp_queue *q) {
  bool multicast = rs_addr_is_null(&q->dest);
  size_t budget = (size_t)tp->bundler_max_size, n = 0, total = 0;
  for (struct rs_msg *m = q->head; m; m = m->next) {
    size_t sz = wire_msg_size(m);
    size_t frame = wire_frame_header_size(tp->base.stack->cluster, multicast, n + 1) + total + sz;
    if (n > 0 && frame > budget) break;
    total += sz;
    n++;
    if (frame > budget) break; /* a single message over the budget goes alone */
  }
  for (size_t i = 0; i < n; i++) tp->pack[i] = queue_pop(tp, q);
  tp->frame.len = 0;
  tp->frame.err = 0;
  struct rs_addr src = tp->base.stack->local_addr;
  wire_encode_frame(&tp->frame, tp->base.stack->cluster, &src, multicast ? NULL : &q->dest,
                    tp->pack, n);
  return n;
}

static void flush(struct rs_task *task) {
  struct rs_tp *tp = (struct rs_tp *)((char *)task - offsetof(struct rs_tp, flush_task));
  for (size_t i = 0; i < tp->n_queues && !tp->blocked; i++) {
    struct tp_queue *q = &tp->queues[i];
    while (q->head && !tp->blocked) {
      size_t n = pack(tp, q);
      if (tp->frame.err || tp->frame.len > tp->tops->max_frame) {
        tp->stats.dropped_send_error += n;
        PLOG(&tp->base, WARN, "dropped a frame of %zu messages: %s", n,
             tp->frame.err ? rs_strerror(tp->frame.err) : "larger than the transport can carry (use FRAG4)");
      } else {
        send_frame(tp, &q->dest, tp->frame.p, tp->frame.len);
        tp->stats.frames_sent++;
        tp->stats.batches_sent += n > 1;
        tp->stats.msgs_sent += n;
        tp->stats.bytes_sent += tp->frame.len;
      }
      for (size_t k = 0; k < n; k++) rs_msg_free(tp->pack[k]);
    }
  }
  if (!tp->blocked) {
    /* Queues of destinations with nothing pending are dropped so the array stays short. */
    size_t kept = 0;
    for (size_t i = 0; i < tp->n_queues; i++)
      if (tp->queues[i].head) tp->queues[kept++] = tp->queues[i];
    tp->n_queues = kept;
    stack_set_congested(tp->base.stack, false);
  }
}

void tp_writable(struct rs_tp *tp) {
  if (!tp->blocked) return;
  size_t n = tp->pending.n_targets;
  size_t done = send_to(tp, tp->pending.bytes, tp->pending.len, tp->pending.targets, n,
                        tp->pending.multicast);
  if (tp->pending.multicast ? done == 0 : done < n) {
    memmove(tp->pending.targets, tp->pending.targets + done, (n - done) * sizeof(struct rs_phys));
    tp->pending.n_targets = n - done;
    return;
  }
  free(tp->pending.bytes);
  free(tp->pending.targets);
  tp->pending.bytes = NULL;
  tp->pending.targets = NULL;
  tp->blocked = false;
  rs_post(tp->base.rt, &tp->flush_task);
}

/* --- loopback to ourselves ------------------------------------------------------------------- */

static void self_deliver(struct rs_task *task) {
  struct rs_tp *tp = (struct rs_tp *)((char *)task - offsetof(struct rs_tp, self_task));
  struct rs_batch b = tp->self_loop;
  rs_batch_init(&tp->self_loop);
  b.src = tp->base.stack->local_addr;
  tp->stats.msgs_received += b.n;
  proto_up_batch(&tp->base, &b);
}

static void loop_to_self(struct rs_tp *tp, struct rs_msg *m) {
  rs_batch_add(&tp->self_loop, m);
  rs_post(tp->base.rt, &tp->self_task);
}

/* --- sockets --------------------------------------------------------------------------------- */

int tp_bind_in_range(struct rs_tp *tp, int fd, struct rs_phys *addr) {
  int64_t last = tp->bind_port ? tp->bind_port + tp->port_range : 0;
  if (last > 65535) last = 65535;
  for (int64_t port = tp->bind_port; port <= last; port++) {
    struct sockaddr_storage ss;
    addr->port = (uint16_t)port;
    socklen_t sl = phys_to_sockaddr(addr, &ss);
    if (bind(fd, (struct sockaddr *)&ss, sl) == 0) return 0;
    if (errno != EADDRINUSE) return proto_error(&tp->base, "bind: %s", strerror(errno));
  }
  char a[RS_PHYS_STRLEN];
  addr->port = (uint16_t)tp->bind_port;
  proto_error(&tp->base, "no free port in %s..%" PRId64 " (bind_port %" PRId64 ", port_range %" PRId64 ")",
              phys_format(addr, a, sizeof(a)), last, tp->bind_port, tp->port_range);
  return RS_EADDRINUSE;
}

/* --- the protocol handlers ------------------------------------------------------------------- */

int tp_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct rs_tp *tp = TP(p);
  if (!p->stack->started) {
    rs_msg_free(m);
    return RS_ENOTCONN;
  }
  m->src = p->stack->local_addr;
  if (rs_addr_eq(&m->dest, &m->src)) {
    loop_to_self(tp, m);
    return 0;
  }
  if (tp->queued >= (size_t)tp->bundler_capacity) {
    tp->stats.dropped_queue_full++;
    rs_msg_free(m);
    return RS_EAGAIN;
  }
  if (rs_msg_is_multicast(m) && !(m->tflags & RS_MSG_DONT_LOOPBACK)) {
    struct rs_msg *copy = rs_msg_copy(m);
    if (copy) loop_to_self(tp, copy);
  }
  struct tp_queue *q = queue_for(tp, &m->dest);
  if (!q) {
    rs_msg_free(m);
    return RS_ENOMEM;
  }
  queue_push(tp, q, m);
  if (!tp->blocked) rs_post(p->rt, &tp->flush_task);
  return 0;
}

void tp_receive(struct rs_tp *tp, struct rs_buf *buf, size_t off, size_t len,
                const struct rs_phys *from) {
  struct rs_frame_info info;
  struct rs_batch batch;
  char a[RS_PHYS_STRLEN] = "unknown";
  tp->stats.frames_received++;
  tp->stats.bytes_received += len;
  if (from) phys_format(from, a, sizeof(a));
  int rc = wire_decode_frame(buf, off, len, &tp->limits, &info, &batch);
  if (rc) {
    tp->stats.dropped_malformed++;
    log_bad(tp, "dropped a bad frame from %s: %s", a, wire_last_error());
    return;
  }
  struct rs_stack *st = tp->base.stack;
  if (strcmp(info.cluster, st->cluster)) {
    tp->stats.dropped_other_cluster++;
    log_bad(tp, "dropped a frame from %s for cluster '%s' (not ours)", a, info.cluster);
  } else if (rs_addr_eq(&info.src, &st->local_addr)) {
    tp->stats.dropped_own++; /* our own multicast, looped back by the network */
  } else if (!rs_addr_is_null(&info.dest) && !rs_addr_eq(&info.dest, &st->local_addr)) {
    tp->stats.dropped_not_for_us++;
  } else {
    if (from) {
      const struct tp_peer *peer = tp_lookup(tp, &info.src);
      if (!peer || !phys_eq(&peer->phys, from)) tp_learn(tp, &info.src, from, NULL);
    }
    if (info.flags & RS_FRAME_BATCH) tp->stats.batches_received++;
    tp->stats.msgs_received += batch.n;
    proto_up_batch(&tp->base, &batch);
    return;
  }
  rs_batch_clear(&batch);
}

int tp_init(struct rs_protocol *p) {
  struct rs_tp *tp = TP(p);
  if (tp->bundler_max_size > tp->tops->max_frame)
    return proto_error(p, "bundler.max_size %llu exceeds the largest frame this transport carries (%zu)",
                       (unsigned long long)tp->bundler_max_size, tp->tops->max_frame);
  for (size_t i = 0; i < tp->peers.n; i++) {
    struct rs_phys ph;
    if (phys_parse(&ph, tp->peers.v[i]) != 0)
      return proto_error(p, "peers: '%s' is not a numeric host:port", tp->peers.v[i]);
    if (tp_add_static_peer(tp, &ph)) return RS_ENOMEM;
  }
  tp->limits.max_frame = (size_t)tp->max_frame_size;
  tp->limits.max_payload = (size_t)tp->max_payload;
  tp->limits.max_msgs = 1u << 20;
  writer_init_grow(&tp->frame, (size_t)tp->bundler_max_size + 64);
  /* A frame holds at most one message per 4 bytes of budget, and one over-budget message. */
  tp->pack = malloc(((size_t)tp->bundler_max_size / 4 + 1) * sizeof(*tp->pack));
  if (tp->frame.err || !tp->pack) return RS_ENOMEM;
  rs_task_init(&tp->flush_task, flush);
  rs_task_init(&tp->self_task, self_deliver);
  rs_batch_init(&tp->self_loop);
  return 0;
}

int tp_start(struct rs_protocol *p) {
  struct rs_tp *tp = TP(p);
  memset(&tp->stats, 0, sizeof(tp->stats));
  int rc = tp->tops->open(tp);
  if (rc) return rc;
  if ((rc = diag_open(tp)) != 0) {
    tp->tops->close(tp);
    return rc;
  }
  return tp_learn(tp, &p->stack->local_addr, &tp->local_phys, p->stack->name);
}

void tp_stop(struct rs_protocol *p) {
  struct rs_tp *tp = TP(p);
  diag_close(tp);
  tp->tops->close(tp);
  view_unref(tp->view);
  tp->view = NULL;
  rs_task_cancel(p->rt, &tp->flush_task);
  rs_task_cancel(p->rt, &tp->self_task);
  queues_clear(tp);
  rs_batch_clear(&tp->self_loop);
  free(tp->pending.bytes);
  free(tp->pending.targets);
  memset(&tp->pending, 0, sizeof(tp->pending));
  tp->blocked = false;
  table_clear(tp);
}

void tp_destroy(struct rs_protocol *p) {
  struct rs_tp *tp = TP(p);
  table_clear(tp);
  free(tp->table);
  free(tp->static_peers);
  free(tp->queues);
  free(tp->pack);
  free(tp->frame.p);
}

int tp_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct rs_tp *tp = TP(p);
  switch (ev->type) {
  case RS_EV_GET_PHYSICAL_ADDRESS: {
    if (rs_addr_is_null(&ev->u.addr) || rs_addr_eq(&ev->u.addr, &p->stack->local_addr)) {
      ev->phys = tp->local_phys;
      return 0;
    }
    const struct tp_peer *peer = tp_lookup(tp, &ev->u.addr);
    if (!peer) return RS_ENOTFOUND;
    ev->phys = peer->phys;
    return 0;
  }
  case RS_EV_ADD_PHYSICAL_ADDRESS:
    return tp_learn(tp, &ev->u.mapping.addr, &ev->u.mapping.phys, ev->u.mapping.name);
  case RS_EV_VIEW_CHANGE:
    view_unref(tp->view);
    tp->view = view_ref((struct rs_view_data *)ev->u.view);
    return 0;
  default: return 0;
  }
}

void tp_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  const struct tp_stats *s = &TP(p)->stats;
  char a[RS_PHYS_STRLEN];
  out->line(out, "physical_addr", "%s", phys_format(&TP(p)->local_phys, a, sizeof(a)));
#define STAT(f) out->line(out, #f, "%llu", (unsigned long long)s->f)
  STAT(msgs_sent);
  STAT(msgs_received);
  STAT(frames_sent);
  STAT(frames_received);
  STAT(batches_sent);
  STAT(batches_received);
  STAT(bytes_sent);
  STAT(bytes_received);
  STAT(dropped_malformed);
  STAT(dropped_other_cluster);
  STAT(dropped_own);
  STAT(dropped_not_for_us);
  STAT(dropped_no_route);
  STAT(dropped_send_error);
  STAT(dropped_queue_full);
  STAT(send_blocked);
  STAT(diag_requests);
  STAT(diag_bad_requests);
#undef STAT
}

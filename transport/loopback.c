/* LOOPBACK: an in-process transport for tests and the simulation; frames are real bytes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tp.h"

/*
 * Every LOOPBACK endpoint in the process is reachable from every other: a "multicast" goes to
 * all of them and tp_receive() drops frames of other clusters, exactly as a shared network
 * would. Frames are copied and handed to the receiver's loop with rs_runtime_call, so stacks on
 * different threads (libev) or in one simulated world behave alike. An endpoint outlives its
 * protocol instance while deliveries to it are in flight (refcounted); `max_inflight` bounds
 * what one receiver may have queued before senders are told to wait.
 */

struct endpoint {
  atomic_int refs;
  uint16_t id;
  struct rs_addr addr;   /* the stack's logical address while open */
  struct rs_tp *tp;      /* NULL once closed; read and written on the owner's loop only */
  struct rs_runtime *rt;
  atomic_size_t inflight; /* bytes queued to this endpoint, not yet delivered */
  size_t max_inflight;
  struct endpoint *next;  /* in the registry */
  struct endpoint **waiters; /* senders told RS_EAGAIN because of us */
  size_t n_waiters, cap_waiters;
};

struct loopback {
  struct rs_tp tp;
  uint64_t max_inflight;
  struct endpoint *ep;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct endpoint *registry;
static uint16_t next_id = 1;

static void ep_unref(struct endpoint *ep) {
  if (atomic_fetch_sub(&ep->refs, 1) == 1) {
    free(ep->waiters);
    free(ep);
  }
}

struct delivery {
  struct endpoint *to;
  struct rs_buf *buf;
  struct rs_phys from;
};

static void wake_sender(void *arg) {
  struct endpoint *ep = arg;
  if (ep->tp) tp_writable(ep->tp);
  ep_unref(ep);
}

/* After a delivery: senders waiting on this endpoint may go on once it has drained to half. */
static void release_waiters(struct endpoint *ep) {
  if (atomic_load(&ep->inflight) > ep->max_inflight / 2) return;
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < ep->n_waiters; i++) {
    struct endpoint *w = ep->waiters[i];
    if (rs_runtime_call(w->rt, wake_sender, w) != 0) ep_unref(w);
  }
  ep->n_waiters = 0;
  pthread_mutex_unlock(&registry_lock);
}

static void deliver(void *arg) {
  struct delivery *d = arg;
  struct endpoint *ep = d->to;
  size_t len = d->buf->cap;
  if (ep->tp) tp_receive(ep->tp, d->buf, 0, len, &d->from);
  atomic_fetch_sub(&ep->inflight, len);
  release_waiters(ep);
  rs_buf_unref(d->buf);
  free(d);
  ep_unref(ep);
}

/* Registers `self` as waiting on `full` (registry lock held). */
static void add_waiter(struct endpoint *full, struct endpoint *self) {
  for (size_t i = 0; i < full->n_waiters; i++)
    if (full->waiters[i] == self) return;
  if (full->n_waiters == full->cap_waiters) {
    size_t cap = full->cap_waiters ? full->cap_waiters * 2 : 4;
    struct endpoint **w = realloc(full->waiters, cap * sizeof(*w));
    if (!w) return;
    full->waiters = w;
    full->cap_waiters = cap;
  }
  atomic_fetch_add(&self->refs, 1);
  full->waiters[full->n_waiters++] = self;
}

/* Queues one delivery of buf (shared by all receivers of a group frame) to `to`. */
static int post_frame(struct endpoint *self, struct endpoint *to, struct rs_buf *buf) {
  struct delivery *d = malloc(sizeof(*d));
  if (!d) return RS_ENOMEM;
  d->to = to;
  d->buf = rs_buf_ref(buf);
  d->from = self->tp->local_phys;
  atomic_fetch_add(&to->refs, 1);
  atomic_fetch_add(&to->inflight, buf->cap);
  if (rs_runtime_call(to->rt, deliver, d) != 0) {
    atomic_fetch_sub(&to->inflight, buf->cap);
    atomic_fetch_sub(&to->refs, 1);
    rs_buf_unref(buf);
    free(d);
    return RS_ESHUTDOWN;
  }
  return 0;
}

static bool over_limit(const struct endpoint *ep) {
  return atomic_load(&ep->inflight) >= ep->max_inflight;
}

static int loopback_send(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame,
                         size_t len) {
  struct endpoint *self = ((struct loopback *)tp)->ep;
  int rc = 0;
  pthread_mutex_lock(&registry_lock);
  /* All or nothing: a group frame waits while any receiver is full, so no member misses it. */
  for (struct endpoint *e = registry; e; e = e->next) {
    if (e == self || (dest && e->id != dest->port)) continue;
    if (over_limit(e)) {
      add_waiter(e, self);
      rc = RS_EAGAIN;
      goto out;
    }
  }
  bool found = false;
  struct rs_buf *buf = rs_buf_new(len);
  if (!buf) {
    rc = RS_ENOMEM;
    goto out;
  }
  memcpy(buf->data, frame, len);
  for (struct endpoint *e = registry; e; e = e->next) {
    if (e == self || (dest && e->id != dest->port)) continue;
    found = true;
    int r = post_frame(self, e, buf);
    if (r && !rc) rc = r;
  }
  rs_buf_unref(buf);
  if (dest && !found) rc = RS_ENOTFOUND;
out:
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

static int loopback_open(struct rs_tp *tp) {
  struct loopback *lb = (struct loopback *)tp;
  struct endpoint *ep = calloc(1, sizeof(*ep));
  if (!ep) return RS_ENOMEM;
  atomic_init(&ep->refs, 1);
  atomic_init(&ep->inflight, 0);
  ep->tp = tp;
  ep->rt = tp->base.rt;
  ep->max_inflight = (size_t)lb->max_inflight;
  ep->addr = tp->base.stack->local_addr;
  pthread_mutex_lock(&registry_lock);
  ep->id = next_id++;
  if (next_id == 0) next_id = 1;
  ep->next = registry;
  registry = ep;
  pthread_mutex_unlock(&registry_lock);
  memset(&tp->local_phys, 0, sizeof(tp->local_phys));
  tp->local_phys.family = RS_PHYS_LOOP;
  tp->local_phys.port = ep->id;
  lb->ep = ep;
  return 0;
}

static void loopback_close(struct rs_tp *tp) {
  struct loopback *lb = (struct loopback *)tp;
  struct endpoint *ep = lb->ep;
  if (!ep) return;
  pthread_mutex_lock(&registry_lock);
  for (struct endpoint **pp = &registry; *pp; pp = &(*pp)->next)
    if (*pp == ep) {
      *pp = ep->next;
      break;
    }
  for (size_t i = 0; i < ep->n_waiters; i++) {
    struct endpoint *w = ep->waiters[i];
    if (rs_runtime_call(w->rt, wake_sender, w) != 0) ep_unref(w);
  }
  ep->n_waiters = 0;
  pthread_mutex_unlock(&registry_lock);
  ep->tp = NULL; /* deliveries still queued to us now find nobody home */
  lb->ep = NULL;
  ep_unref(ep);
}

/* The registry is the whole network, so it answers for every endpoint's logical address. */
static int loopback_resolve(struct rs_tp *tp, const struct rs_addr *addr, struct rs_phys *out) {
  int rc = RS_ENOTFOUND;
  pthread_mutex_lock(&registry_lock);
  for (struct endpoint *e = registry; e; e = e->next)
    if (rs_addr_eq(&e->addr, addr)) {
      memset(out, 0, sizeof(*out));
      out->family = RS_PHYS_LOOP;
      out->port = e->id;
      rc = 0;
      break;
    }
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

static const struct rs_tp_ops loopback_tops = {
    .resolve = loopback_resolve,
    .open = loopback_open,
    .close = loopback_close,
    .send = loopback_send,
    .multicast = true,
    .max_frame = 1u << 30,
};

static int loopback_init(struct rs_protocol *p) {
  ((struct loopback *)p)->tp.tops = &loopback_tops;
  return tp_init(p);
}

static const struct rs_attr loopback_attrs[] = {
    TP_ATTRS(struct loopback),
    {"max_inflight", RS_ATTR_SIZE, offsetof(struct loopback, max_inflight), "8MiB", 65536,
     1073741824, "bytes queued to one member before its senders wait", 0, NULL},
    RS_ATTR_END,
};

static const char *const loopback_aliases[] = {"SHARED_LOOPBACK", NULL};

const struct rs_protocol_ops loopback_protocol = {
    .name = "LOOPBACK",
    .aliases = loopback_aliases,
    .id = 27,
    .flags = RS_PROTO_TRANSPORT,
    .size = sizeof(struct loopback),
    .description = "in-process transport: every LOOPBACK stack of the process is one network",
    .attrs = loopback_attrs,
    .init = loopback_init,
    .start = tp_start,
    .stop = tp_stop,
    .destroy = tp_destroy,
    .down_msg = tp_down_msg,
    .down_event = tp_down_event,
    .stats = tp_stats,
};

/* DISCARD: drops messages on purpose (a fraction, all, or those of chosen members) for tests. */
#include "protocols/discard.h"

#include <stdlib.h>

#include "stack/stack.h"

struct discard {
  struct rs_protocol base;
  double up, down;
  bool discard_all;
  bool exclude_itself;
  int64_t drop_down_unicasts, drop_down_multicasts;
  struct rs_addr *ignored;
  size_t n_ignored;
  uint64_t dropped_up, dropped_down;
};

#define D(p) ((struct discard *)(p))

void discard_set_all(struct rs_protocol *p, bool on) { D(p)->discard_all = on; }
void discard_set_rates(struct rs_protocol *p, double up, double down) {
  D(p)->up = up;
  D(p)->down = down;
}
void discard_clear_ignored(struct rs_protocol *p) { D(p)->n_ignored = 0; }

int discard_ignore(struct rs_protocol *p, const struct rs_addr *addr) {
  struct discard *d = D(p);
  struct rs_addr *v = realloc(d->ignored, (d->n_ignored + 1) * sizeof(*v));
  if (!v) return RS_ENOMEM;
  d->ignored = v;
  v[d->n_ignored++] = *addr;
  return 0;
}

static bool ignored(const struct discard *d, const struct rs_addr *a) {
  for (size_t i = 0; i < d->n_ignored; i++)
    if (rs_addr_eq(&d->ignored[i], a)) return true;
  return false;
}

static bool drop_up(struct discard *d, const struct rs_msg *m) {
  struct rs_addr self = proto_local_addr(&d->base);
  bool from_self = rs_addr_eq(&m->src, &self);
  if (from_self && d->exclude_itself) return false;
  if (d->discard_all || ignored(d, &m->src)) return true;
  return d->up > 0 && rs_random_unit(d->base.rt) < d->up;
}

static bool drop_down(struct discard *d, const struct rs_msg *m) {
  struct rs_addr self = proto_local_addr(&d->base);
  if (rs_addr_eq(&m->dest, &self) && d->exclude_itself) return false;
  if (d->discard_all || (!rs_msg_is_multicast(m) && ignored(d, &m->dest))) return true;
  int64_t *count = rs_msg_is_multicast(m) ? &d->drop_down_multicasts : &d->drop_down_unicasts;
  if (*count > 0) {
    (*count)--;
    return true;
  }
  return d->down > 0 && rs_random_unit(d->base.rt) < d->down;
}

static int discard_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct discard *d = D(p);
  if (drop_down(d, m)) {
    d->dropped_down++;
    /* A discarded multicast still reaches ourselves, as it would with a lossy network. */
    if (rs_msg_is_multicast(m) && !(m->tflags & RS_MSG_DONT_LOOPBACK) && d->exclude_itself) {
      m->dest = proto_local_addr(p);
      return proto_down_msg(p, m);
    }
    rs_msg_free(m);
    return 0;
  }
  return proto_down_msg(p, m);
}

static void discard_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct discard *d = D(p);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    if (drop_up(d, m)) {
      d->dropped_up++;
      rs_msg_free(m);
    } else {
      rs_batch_add(&keep, m);
    }
  }
  if (keep.n) proto_up_batch(p, &keep);
}

static void discard_destroy(struct rs_protocol *p) { free(D(p)->ignored); }

static void discard_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  out->line(out, "dropped_up", "%llu", (unsigned long long)D(p)->dropped_up);
  out->line(out, "dropped_down", "%llu", (unsigned long long)D(p)->dropped_down);
}

static const struct rs_attr discard_attrs[] = {
    {"up", RS_ATTR_DOUBLE, offsetof(struct discard, up), "0", 0, 1,
     "fraction of received messages dropped at random", 0, NULL},
    {"down", RS_ATTR_DOUBLE, offsetof(struct discard, down), "0", 0, 1,
     "fraction of sent messages dropped at random", 0, NULL},
    {"discard_all", RS_ATTR_BOOL, offsetof(struct discard, discard_all), "false", 0, 0,
     "drop every message to and from other members", 0, NULL},
    {"excludeItself", RS_ATTR_BOOL, offsetof(struct discard, exclude_itself), "true", 0, 0,
     "never drop messages to or from ourselves", 0, NULL},
    {"drop_down_unicasts", RS_ATTR_INT, offsetof(struct discard, drop_down_unicasts), "0", 0,
     1e9, "drop the next N unicasts sent", 0, NULL},
    {"drop_down_multicasts", RS_ATTR_INT, offsetof(struct discard, drop_down_multicasts), "0", 0,
     1e9, "drop the next N multicasts sent", 0, NULL},
    {"gui", RS_ATTR_IGNORED, 0, NULL, 0, 0, "no GUI", 0, NULL},
    RS_ATTR_END,
};

const struct rs_protocol_ops discard_protocol = {
    .name = "DISCARD",
    .id = 26,
    .size = sizeof(struct discard),
    .description = "drops a fraction of messages, all of them, or those of chosen members (tests)",
    .attrs = discard_attrs,
    .destroy = discard_destroy,
    .down_msg = discard_down_msg,
    .up_batch = discard_up_batch,
    .stats = discard_stats,
};

/* DELAY: holds messages for a random or constant time before passing them on (tests). */
#include <stdlib.h>

#include "stack/stack.h"

struct delayed {
  struct rs_timer timer;
  struct rs_protocol *p;
  struct rs_msg *msg;
  bool up;
  struct delayed *prev, *next; /* all in flight, so stop can release them */
};

struct delay {
  struct rs_protocol base;
  rs_time in_delay, out_delay;
  bool constant_delay;
  struct delayed *inflight;
  uint64_t delayed_up, delayed_down;
};

#define DL(p) ((struct delay *)(p))

static void unlink_delayed(struct delay *d, struct delayed *x) {
  if (x->prev) x->prev->next = x->next;
  else d->inflight = x->next;
  if (x->next) x->next->prev = x->prev;
}

static void fire(struct rs_timer *t) {
  struct delayed *x = (struct delayed *)t;
  struct rs_protocol *p = x->p;
  unlink_delayed(DL(p), x);
  if (x->up) proto_up_msg(p, x->msg);
  else proto_down_msg(p, x->msg);
  free(x);
}

static rs_time pick(struct delay *d, rs_time max) {
  if (d->constant_delay || max == 0) return max;
  return rs_random_range(d->base.rt, 0, max);
}

/* Passes m on after a delay; returns false (m untouched) when it should go on at once. */
static bool hold(struct delay *d, struct rs_msg *m, bool up) {
  rs_time max = up ? d->in_delay : d->out_delay;
  rs_time wait = pick(d, max);
  if (wait == 0) return false;
  struct delayed *x = malloc(sizeof(*x));
  if (!x) return false;
  rs_timer_init(&x->timer, d->base.rt, fire);
  x->p = &d->base;
  x->msg = m;
  x->up = up;
  x->prev = NULL;
  x->next = d->inflight;
  if (d->inflight) d->inflight->prev = x;
  d->inflight = x;
  rs_timer_start(&x->timer, wait, 0);
  if (up) d->delayed_up++;
  else d->delayed_down++;
  return true;
}

static int delay_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  return hold(DL(p), m, false) ? 0 : proto_down_msg(p, m);
}

static void delay_up_msg(struct rs_protocol *p, struct rs_msg *m) {
  if (!hold(DL(p), m, true)) proto_up_msg(p, m);
}

static void delay_stop(struct rs_protocol *p) {
  struct delay *d = DL(p);
  while (d->inflight) {
    struct delayed *x = d->inflight;
    unlink_delayed(d, x);
    rs_timer_stop(&x->timer);
    rs_msg_free(x->msg);
    free(x);
  }
}

static void delay_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  out->line(out, "delayed_up", "%llu", (unsigned long long)DL(p)->delayed_up);
  out->line(out, "delayed_down", "%llu", (unsigned long long)DL(p)->delayed_down);
}

static const struct rs_attr delay_attrs[] = {
    {"in_delay", RS_ATTR_DURATION, offsetof(struct delay, in_delay), "0", 0, 0,
     "received messages are held up to this long (uniformly random unless constant_delay)", 0, NULL},
    {"out_delay", RS_ATTR_DURATION, offsetof(struct delay, out_delay), "0", 0, 0,
     "sent messages are held up to this long (uniformly random unless constant_delay)", 0, NULL},
    {"constant_delay", RS_ATTR_BOOL, offsetof(struct delay, constant_delay), "false", 0, 0,
     "hold every message for exactly in_delay / out_delay", 0, NULL},
    {"in_delay_nanos", RS_ATTR_IGNORED, 0, NULL, 0, 0, "durations take units (e.g. 0.5ms)", 0, NULL},
    {"out_delay_nanos", RS_ATTR_IGNORED, 0, NULL, 0, 0, "durations take units (e.g. 0.5ms)", 0, NULL},
    RS_ATTR_END,
};

const struct rs_protocol_ops delay_protocol = {
    .name = "DELAY",
    .id = 100,
    .size = sizeof(struct delay),
    .description = "delays messages by a random or constant time, in either direction (tests)",
    .attrs = delay_attrs,
    .stop = delay_stop,
    .destroy = delay_stop,
    .down_msg = delay_down_msg,
    .up_msg = delay_up_msg,
    .stats = delay_stats,
};

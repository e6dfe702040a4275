/* The stack at run time: passing messages and events between layers, and the lifecycle. */
#include "stack/stack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/log_internal.h"

/* --- passing on ------------------------------------------------------------------------------ */

int proto_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  for (struct rs_protocol *q = p->down; q; q = q->down)
    if (q->ops->down_msg) return q->ops->down_msg(q, m);
  p->stack->dropped_at_bottom++;
  rs_msg_free(m);
  return RS_ENOTCONN;
}

static void deliver_up(struct rs_stack *st, struct rs_msg *m) {
  if (st->deliver) st->deliver(st->owner, m);
  else rs_msg_free(m);
}

void proto_up_msg(struct rs_protocol *p, struct rs_msg *m) {
  for (struct rs_protocol *q = p->up; q; q = q->up) {
    if (q->ops->up_msg) {
      q->ops->up_msg(q, m);
      return;
    }
    if (q->ops->up_batch) {
      struct rs_batch b;
      rs_batch_init(&b);
      b.src = m->src;
      b.dest = m->dest;
      rs_batch_add(&b, m);
      q->ops->up_batch(q, &b);
      return;
    }
  }
  deliver_up(p->stack, m);
}

void proto_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  for (struct rs_protocol *q = p->up; q; q = q->up) {
    if (q->ops->up_batch) {
      q->ops->up_batch(q, b);
      return;
    }
    if (q->ops->up_msg) {
      struct rs_msg *m;
      while ((m = rs_batch_pop(b))) q->ops->up_msg(q, m);
      return;
    }
  }
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) deliver_up(p->stack, m);
}

int proto_down_event(struct rs_protocol *p, struct rs_event *ev) {
  for (struct rs_protocol *q = p->down; q; q = q->down)
    if (q->ops->down_event) return q->ops->down_event(q, ev);
  return 0;
}

int proto_up_event(struct rs_protocol *p, struct rs_event *ev) {
  for (struct rs_protocol *q = p->up; q; q = q->up)
    if (q->ops->up_event) return q->ops->up_event(q, ev);
  struct rs_stack *st = p->stack;
  return st->up_event ? st->up_event(st->owner, ev) : 0;
}

int stack_down_msg(struct rs_stack *st, struct rs_msg *m) {
  for (struct rs_protocol *p = st->top; p; p = p->down)
    if (p->ops->down_msg) return p->ops->down_msg(p, m);
  st->dropped_at_bottom++;
  rs_msg_free(m);
  return RS_ENOTCONN;
}

int stack_down_event(struct rs_stack *st, struct rs_event *ev) {
  for (struct rs_protocol *p = st->top; p; p = p->down)
    if (p->ops->down_event) return p->ops->down_event(p, ev);
  return 0;
}

/* --- what every protocol may ask ------------------------------------------------------------- */

struct rs_addr proto_local_addr(const struct rs_protocol *p) { return p->stack->local_addr; }
const char *proto_local_name(const struct rs_protocol *p) { return p->stack->name; }
const char *proto_cluster(const struct rs_protocol *p) { return p->stack->cluster; }

struct rs_protocol *proto_find(const struct rs_protocol *p, const char *name) {
  const struct rs_protocol_ops *ops = registry_find(name);
  if (!ops) return NULL;
  for (struct rs_protocol *q = p->stack->bottom; q; q = q->up)
    if (q->ops == ops) return q;
  return NULL;
}

int proto_error(struct rs_protocol *p, const char *fmt, ...) {
  struct rs_stack *st = p->stack;
  int n = snprintf(st->err, sizeof(st->err), "%s: ", p->ops->name);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(st->err)) vsnprintf(st->err + n, sizeof(st->err) - (size_t)n, fmt, ap);
  va_end(ap);
  return RS_ECONFIG;
}

bool proto_log_enabled(const struct rs_protocol *p, enum rs_log_level level) {
  if (p->level_set) return level >= p->level && level < RS_LOG_OFF;
  return log_enabled(level, p->ops->name);
}

void proto_log(const struct rs_protocol *p, enum rs_log_level level, const char *fmt, ...) {
  char subsys[160];
  /* The node's name tells lines of several stacks in one process apart. */
  snprintf(subsys, sizeof(subsys), "%s[%s]", p->ops->name, p->stack->name[0] ? p->stack->name : "-");
  va_list ap;
  va_start(ap, fmt);
  log_emitv(level, subsys, fmt, ap);
  va_end(ap);
}

bool ratelimit_ok(struct rs_ratelimit *rl, rs_time now, rs_time interval, uint64_t *suppressed) {
  /* 0 means "never logged", so the first instant of a simulation counts as 1. */
  rs_time t = now ? now : 1;
  if (rl->last && t - rl->last < interval) {
    rl->suppressed++;
    return false;
  }
  rl->last = t;
  *suppressed = rl->suppressed;
  rl->suppressed = 0;
  return true;
}

/* --- lifecycle ------------------------------------------------------------------------------- */

int stack_start(struct rs_stack *st) {
  st->err[0] = '\0';
  st->congested_by = 0; /* the channel starts uncongested too */
  for (struct rs_protocol *p = st->bottom; p; p = p->up) {
    int rc = p->ops->start ? p->ops->start(p) : 0;
    if (rc == 0) continue;
    if (!st->err[0]) snprintf(st->err, sizeof(st->err), "%s: %s", p->ops->name, rs_strerror(rc));
    for (struct rs_protocol *q = p->down; q; q = q->down)
      if (q->ops->stop) q->ops->stop(q);
    return rc;
  }
  st->started = true;
  return 0;
}

void stack_stop(struct rs_stack *st) {
  if (!st->started) return;
  for (struct rs_protocol *p = st->top; p; p = p->down)
    if (p->ops->stop) p->ops->stop(p);
  st->started = false;
}

void stack_destroy(struct rs_stack *st) {
  if (!st) return;
  stack_stop(st);
  for (struct rs_protocol *p = st->top, *down; p; p = down) {
    down = p->down;
    if (p->ops->destroy) p->ops->destroy(p);
    attr_free_values(p->ops, p);
    free(p);
  }
  stack_origin_free(st->origin);
  free(st->file);
  free(st);
}

void stack_stats(const struct rs_stack *st, struct rs_stats_printer *out) {
  for (struct rs_protocol *p = st->bottom; p; p = p->up)
    if (p->ops->stats) p->ops->stats(p, out);
}

/* Several protocols may push back at once (the transport, UFC, MFC), each setting and clearing
 * its own bit: the channel is told when the first bit is set and when the last one is cleared,
 * so the transport's release after every flush does not undo UFC's hold. */
static void set_congested_bit(struct rs_stack *st, unsigned bit, bool congested) {
  uint64_t before = st->congested_by, mask = (uint64_t)1 << bit;
  st->congested_by = congested ? before | mask : before & ~mask;
  if ((before != 0) != (st->congested_by != 0) && st->congestion)
    st->congestion(st->owner, congested);
}

void stack_set_congested(struct rs_stack *st, bool congested) {
  set_congested_bit(st, 0, congested);
}

void proto_set_congested(struct rs_protocol *p, bool congested) {
  unsigned pos = 0;
  for (const struct rs_protocol *q = p->stack->bottom; q && q != p && pos < 63; q = q->up) pos++;
  set_congested_bit(p->stack, pos, congested);
}

/* Helpers of the failure detection tests: FDTEST and SPY, nodes, stats, views, events. */
#include "tests/unit/fd_testlib.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/channel_internal.h"
#include "stack/stack.h"
#include "stack/view.h"
#include "tests/lib/testlib.h"
#include "transport/tp.h"

/* ---------------------------------------------------------------------------------------------
 * Test protocols. FDTEST sits on top (where GMS will be); the tests inject views below it.
 */
static int fdtest_up_event(struct rs_protocol *p, struct rs_event *ev) {
  struct fdtest *t = (struct fdtest *)p;
  if (ev->type == RS_EV_SUSPECT || ev->type == RS_EV_UNSUSPECT) {
    size_t n = atomic_load(&t->n);
    if (n < MAX_EVENTS) {
      t->ev[n] = (struct fd_event){ev->type, ev->u.addr, rs_now(p->rt)};
      atomic_store(&t->n, n + 1);
    }
  }
  return proto_up_event(p, ev);
}

static const struct rs_protocol_ops fdtest_protocol = {
    .name = "FDTEST",
    .id = 1990,
    .size = sizeof(struct fdtest),
    .description = "records SUSPECT/UNSUSPECT events (tests)",
    .up_event = fdtest_up_event,
};

/* SPY, just above DISCARD: when the last message from each member arrived (heartbeats end in
 * FD_ALL3, so the top cannot see them). */
#define SPY_MAX 8
struct spy {
  struct rs_protocol base;
  struct rs_addr src[SPY_MAX];
  rs_time last[SPY_MAX];
  size_t n;
};

static void spy_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct spy *s = (struct spy *)p;
  size_t i = 0;
  while (i < s->n && !rs_addr_eq(&s->src[i], &b->src))
    i++;
  if (i < SPY_MAX) {
    s->src[i] = b->src;
    s->last[i] = rs_now(p->rt);
    if (i == s->n) s->n++;
  }
  proto_up_batch(p, b);
}

static const struct rs_protocol_ops spy_protocol = {
    .name = "SPY",
    .size = sizeof(struct spy),
    .description = "records when each member was last heard from (tests)",
    .up_batch = spy_up_batch,
};

const struct rs_protocol_ops *const fd_extra[] = {&fdtest_protocol, &spy_protocol, NULL};

/* ---------------------------------------------------------------------------------------------
 * Nodes, on the simulated runtime or on libev.
 */

struct rs_sim *sim;
struct node nodes[MAX_NODES];
struct node *group[MAX_NODES];

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  (void)src, (void)data, (void)len, (void)flags;
  ((struct node *)arg)->delivered++;
}

static struct rs_runtime *rt_of(struct node *nd) { return channel_runtime(nd->ch); }

/* Runs fn(arg) on the node's loop: directly in the simulation (one thread runs the world),
 * through rs_runtime_call on libev. */
struct loop_call {
  void (*fn)(void *arg);
  void *arg;
  struct rs_completion done;
};

static void loop_call_run(void *arg) {
  struct loop_call *c = arg;
  c->fn(c->arg);
  completion_done(&c->done, 0);
}

void on_loop(struct node *nd, void (*fn)(void *), void *arg) {
  if (rt_of(nd)->simulated) {
    fn(arg);
    return;
  }
  struct loop_call c = {.fn = fn, .arg = arg};
  completion_init(&c.done);
  ck_assert_int_eq(rs_runtime_call(rt_of(nd), loop_call_run, &c), 0);
  completion_wait(rt_of(nd), &c.done, UINT64_MAX);
  completion_fini(&c.done);
}

int open_node(struct node *nd, const char *name, const char *xml, char *err, size_t len) {
  memset(nd, 0, sizeof(*nd));
  if (sim) nd->rt = rs_sim_runtime_new(sim, name);
  struct rs_channel_opts o = {.config_xml = xml, .name = name, .runtime = nd->rt};
  int rc = rs_channel_open(&nd->ch, &o, err, len);
  if (rc) {
    if (nd->rt) rs_runtime_destroy(nd->rt);
    return rc;
  }
  static const struct rs_receiver r = {.receive = on_receive};
  rs_channel_set_receiver(nd->ch, &r, nd);
  if ((rc = rs_channel_connect(nd->ch, "fd")) != 0) {
    snprintf(err, len, "%s", rs_channel_last_error(nd->ch));
    return rc;
  }
  nd->addr = rs_channel_address(nd->ch);
  nd->phys = ((struct rs_tp *)channel_stack(nd->ch)->bottom)->local_phys;
  return 0;
}

void start_node(struct node *nd, const char *name, const char *xml) {
  char err[1024];
  int rc = open_node(nd, name, xml, err, sizeof(err));
  ck_assert_msg(rc == 0, "%s: %s", name, err);
}

void close_node(struct node *nd) {
  if (!nd->ch) return;
  rs_channel_close(nd->ch);
  nd->ch = NULL;
  if (nd->rt) rs_runtime_destroy(nd->rt);
  nd->rt = NULL;
}

struct rs_protocol *proto_of(struct node *nd, const char *name) {
  struct rs_protocol *p = proto_find(channel_stack(nd->ch)->bottom, name);
  ck_assert_msg(p != NULL, "no %s", name);
  return p;
}

struct fdtest *top_of(struct node *nd) {
  struct rs_protocol *p = channel_stack(nd->ch)->top;
  ck_assert_ptr_eq(p->ops, &fdtest_protocol);
  return (struct fdtest *)p;
}

/* --- stats ----------------------------------------------------------------------------------- */

struct stat_query {
  struct rs_protocol *p;
  const char *name;
  char value[64];
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_query *q = out->arg;
  if (strcmp(name, q->name)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->value, sizeof(q->value), fmt, ap);
  va_end(ap);
}

static void stat_run(void *arg) {
  struct stat_query *q = arg;
  struct rs_stats_printer out = {.line = stat_line, .arg = q};
  q->p->ops->stats(q->p, &out);
}

const char *stat_str(struct node *nd, const char *proto, const char *name, char *buf, size_t len) {
  struct stat_query q = {.p = proto_of(nd, proto), .name = name};
  on_loop(nd, stat_run, &q);
  ck_assert_msg(q.value[0], "no stat %s.%s", proto, name);
  snprintf(buf, len, "%s", q.value);
  return buf;
}

uint64_t stat(struct node *nd, const char *proto, const char *name) {
  char buf[64];
  return strtoull(stat_str(nd, proto, name, buf, sizeof(buf)), NULL, 10);
}

/* --- views and physical addresses ------------------------------------------------------------ */

struct inject {
  struct node *nd;
  struct node **members;
  size_t n;
  uint64_t id;
};

static void inject_run(void *arg) {
  struct inject *in = arg;
  struct rs_stack *st = channel_stack(in->nd->ch);
  struct rs_addr addrs[MAX_NODES];
  for (size_t i = 0; i < in->n; i++) {
    addrs[i] = in->members[i]->addr;
    if (in->members[i]->phys.family != RS_PHYS_IP4) continue;
    struct rs_event ev = {.type = RS_EV_ADD_PHYSICAL_ADDRESS};
    ev.u.mapping.addr = addrs[i];
    ev.u.mapping.phys = in->members[i]->phys;
    stack_down_event(st, &ev);
  }
  struct rs_view_data *v = view_new(&addrs[0], in->id, in->n, addrs, NULL);
  ck_assert_ptr_nonnull(v);
  struct rs_event ev = {.type = RS_EV_VIEW_CHANGE, .u.view = v};
  stack_down_event(st, &ev);
  view_unref(v); /* the protocols keep their own references */
}

/* Installs the view `members` (coordinator first) on node nd, as GMS would pass it down. */
void inject_view(struct node *nd, struct node **members, size_t n, uint64_t id) {
  struct inject in = {nd, members, n, id};
  on_loop(nd, inject_run, &in);
}

void inject_view_all(struct node **members, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    inject_view(members[i], members, n, id);
}

/* --- recorded events ------------------------------------------------------------------------- */

size_t n_events(struct node *nd) { return atomic_load(&top_of(nd)->n); }

size_t count_events(struct node *nd, enum rs_event_type type, const struct rs_addr *a) {
  struct fdtest *t = top_of(nd);
  size_t n = atomic_load(&t->n), k = 0;
  for (size_t i = 0; i < n; i++)
    if (t->ev[i].type == type && (!a || rs_addr_eq(&t->ev[i].addr, a))) k++;
  return k;
}

/* The time of the first recorded event of this type about a, or 0. */
rs_time event_time(struct node *nd, enum rs_event_type type, const struct rs_addr *a) {
  struct fdtest *t = top_of(nd);
  size_t n = atomic_load(&t->n);
  for (size_t i = 0; i < n; i++)
    if (t->ev[i].type == type && rs_addr_eq(&t->ev[i].addr, a)) return t->ev[i].t;
  return 0;
}

bool has_event(void *arg) {
  struct want_event *w = arg;
  return count_events(w->nd, w->type, w->addr) >= (w->count ? w->count : 1);
}

/* When nd last received anything from `from`, per SPY. */
rs_time last_heard(struct node *nd, const struct rs_addr *from) {
  struct spy *s = NULL;
  for (struct rs_protocol *p = channel_stack(nd->ch)->bottom; p; p = p->up)
    if (p->ops == &spy_protocol) s = (struct spy *)p;
  ck_assert_ptr_nonnull(s);
  for (size_t i = 0; i < s->n; i++)
    if (rs_addr_eq(&s->src[i], from)) return s->last[i];
  ck_abort_msg("never heard");
  return 0;
}

/* SIMNET: a fault-injection protocol for the simulation, driven by a test-owned network model. */
#include "tests/lib/simnet.h"

#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

static struct simnet *current;

void simnet_init(struct simnet *net, struct rs_sim *sim) {
  memset(net, 0, sizeof(*net));
  net->sim = sim;
}

void simnet_fini(struct simnet *net) {
  free(net->addrs);
  if (current == net) current = NULL;
  memset(net, 0, sizeof(*net));
}

void simnet_set_current(struct simnet *net) { current = net; }

int simnet_node_index(const struct simnet *net, const char *name) {
  for (size_t i = 0; i < net->n; i++)
    if (strcmp(net->names[i], name) == 0) return (int)i;
  return -1;
}

int simnet_add_node(struct simnet *net, const char *name) {
  int i = simnet_node_index(net, name);
  if (i >= 0) return i;
  if (net->n == SIMNET_MAX_NODES || strlen(name) >= sizeof(net->names[0])) return -1;
  strcpy(net->names[net->n], name);
  return (int)net->n++;
}

void simnet_cut(struct simnet *net, size_t from, size_t to, bool cut) {
  if (from < SIMNET_MAX_NODES && to < SIMNET_MAX_NODES) net->cut[from][to] = cut;
}

void simnet_isolate(struct simnet *net, size_t i, bool isolated) {
  for (size_t j = 0; j < net->n; j++) {
    if (j == i) continue;
    simnet_cut(net, i, j, isolated);
    simnet_cut(net, j, i, isolated);
  }
}

void simnet_partition(struct simnet *net, const bool *side) {
  for (size_t i = 0; i < net->n; i++)
    for (size_t j = 0; j < net->n; j++)
      net->cut[i][j] = side[i] != side[j];
}

void simnet_heal(struct simnet *net) { memset(net->cut, 0, sizeof(net->cut)); }

bool simnet_reachable(const struct simnet *net, size_t from, size_t to) {
  return from == to || !net->cut[from][to];
}

static void learn(struct simnet *net, const struct rs_addr *a, size_t node) {
  for (size_t i = 0; i < net->n_addrs; i++)
    if (rs_addr_eq(&net->addrs[i].addr, a)) {
      net->addrs[i].node = node;
      return;
    }
  if (net->n_addrs == net->cap_addrs) {
    size_t cap = net->cap_addrs ? net->cap_addrs * 2 : 16;
    void *v = realloc(net->addrs, cap * sizeof(net->addrs[0]));
    if (!v) return;
    net->addrs = v;
    net->cap_addrs = cap;
  }
  net->addrs[net->n_addrs].addr = *a;
  net->addrs[net->n_addrs++].node = node;
}

/* The node an address belongs to, or -1 (an address nobody declared: not subject to cuts). */
static long node_of(const struct simnet *net, const struct rs_addr *a) {
  for (size_t i = net->n_addrs; i-- > 0;)
    if (rs_addr_eq(&net->addrs[i].addr, a)) return (long)net->addrs[i].node;
  return -1;
}

static double unit(struct simnet *net) {
  return (double)(rs_sim_random(net->sim) >> 11) * (1.0 / 9007199254740992.0);
}

/* --- the protocol ---------------------------------------------------------------------------- */

struct held {
  struct rs_timer timer;
  struct rs_protocol *p;
  struct rs_msg *msg;
  struct held *prev, *next;
};

struct simnet_proto {
  struct rs_protocol base;
  struct simnet *net;
  long self; /* node index, -1 when the name is not declared (everything passes) */
  struct held *held;
};

#define SN(p) ((struct simnet_proto *)(p))

static bool link_up(struct simnet_proto *s, const struct rs_msg *m) {
  long from = node_of(s->net, &m->src);
  return from < 0 || s->self < 0 || simnet_reachable(s->net, (size_t)from, (size_t)s->self);
}

static void unhold(struct simnet_proto *s, struct held *h) {
  if (h->prev)
    h->prev->next = h->next;
  else
    s->held = h->next;
  if (h->next) h->next->prev = h->prev;
}

static void release(struct rs_timer *t) {
  struct held *h = (struct held *)t;
  struct simnet_proto *s = SN(h->p);
  unhold(s, h);
  if (link_up(s, h->msg)) {
    proto_up_msg(h->p, h->msg);
  } else {
    s->net->cut_dropped++;
    rs_msg_free(h->msg);
  }
  free(h);
}

static void hold(struct simnet_proto *s, struct rs_msg *m, rs_time delay) {
  struct held *h = malloc(sizeof(*h));
  if (!h) {
    proto_up_msg(&s->base, m);
    return;
  }
  rs_timer_init(&h->timer, s->base.rt, release);
  h->p = &s->base;
  h->msg = m;
  h->prev = NULL;
  h->next = s->held;
  if (s->held) s->held->prev = h;
  s->held = h;
  rs_timer_start(&h->timer, delay, 0);
}

/* Delivers m now or later (a random delay), or not at all. */
static void pass_on(struct simnet_proto *s, struct rs_msg *m) {
  struct simnet *net = s->net;
  if (net->delay_p > 0 && net->delay_max > 0 && unit(net) < net->delay_p) {
    net->delayed++;
    hold(s, m, rs_sim_random(net->sim) % (net->delay_max + 1));
    return;
  }
  net->passed++;
  proto_up_msg(&s->base, m);
}

static void judge(struct simnet_proto *s, struct rs_msg *m) {
  struct simnet *net = s->net;
  struct rs_addr self = proto_local_addr(&s->base);
  if (!net || rs_addr_eq(&m->src, &self)) {
    proto_up_msg(&s->base, m);
    return;
  }
  if (!link_up(s, m)) {
    net->cut_dropped++;
    rs_msg_free(m);
    return;
  }
  if (net->drop > 0 && unit(net) < net->drop) {
    net->dropped++;
    rs_msg_free(m);
    return;
  }
  if (net->dup > 0 && unit(net) < net->dup) {
    struct rs_msg *copy = rs_msg_copy(m);
    if (copy) {
      net->duplicated++;
      pass_on(s, copy);
    }
  }
  pass_on(s, m);
}

static void simnet_up_msg(struct rs_protocol *p, struct rs_msg *m) { judge(SN(p), m); }

static void simnet_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct rs_msg *m;
  while ((m = rs_batch_pop(b)))
    judge(SN(p), m);
}

static int simnet_init_proto(struct rs_protocol *p) {
  SN(p)->net = current;
  SN(p)->self = -1;
  return 0;
}

static int simnet_start(struct rs_protocol *p) {
  struct simnet_proto *s = SN(p);
  if (!s->net) return 0;
  s->self = simnet_node_index(s->net, proto_local_name(p));
  struct rs_addr self = proto_local_addr(p);
  if (s->self >= 0) learn(s->net, &self, (size_t)s->self);
  return 0;
}

/* A stopped (or crashed) node loses what it had not yet received. */
static void simnet_stop(struct rs_protocol *p) {
  struct simnet_proto *s = SN(p);
  while (s->held) {
    struct held *h = s->held;
    unhold(s, h);
    rs_timer_stop(&h->timer);
    rs_msg_free(h->msg);
    free(h);
  }
}

const struct rs_protocol_ops simnet_protocol = {
    .name = "SIMNET",
    .id = SIMNET_ID,
    .size = sizeof(struct simnet_proto),
    .description =
        "the simulation's network: cuts, loss, duplicates and delays from a shared model",
    .init = simnet_init_proto,
    .start = simnet_start,
    .stop = simnet_stop,
    .destroy = simnet_stop,
    .up_msg = simnet_up_msg,
    .up_batch = simnet_up_batch,
};

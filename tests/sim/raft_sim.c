/* raft_sim: random exploration of Raft under faults, seed by seed, with invariant and
 * linearizability checks. `raft_sim --seeds N [--first S] [--nodes 3|5|7] [--seed S --verbose]`. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raftstack/errors.h>

#include "tests/lib/linearizability.h"
#include "tests/sim/cluster.h"

/*
 * One seed is one run: the seed decides the cluster size (unless --nodes), the fault mix (loss,
 * duplicates, delays, partitions and one-way cuts, crashes and restarts, pauses) and the run's
 * length, and seeds the world. Clients on a runtime of their own issue register writes and
 * reads and counter adds and reads through the log (raft_submit on the node they believe leads),
 * each with a timeout; every call goes into a history with its invoke and complete times. After
 * the faulty phase the network heals and every node restarts; the cluster must then elect a
 * leader and converge. The invariants of tests/sim/cluster.h are checked after every step; the
 * histories are checked for linearizability at the end.
 */

#define CLIENT_TIMEOUT (4 * RS_SEC)

enum op_state { OP_PENDING, OP_OK, OP_FAILED, OP_UNKNOWN };

struct op_rec {
  struct lin_op lin;
  bool counter;
  enum op_state state;
  int client;
};

struct run;

struct client {
  struct rs_timer timer;
  struct run *run;
  int id;
  int64_t op; /* outstanding op, -1 when idle */
  rs_time deadline;
};

struct fault_mix {
  double drop, dup, delay_p;
  rs_time delay_max;
  bool partitions, crashes, pauses;
  rs_time duration;
  unsigned clients;
  bool handle;
};

struct run {
  struct sim_cluster *c;
  struct fault_mix mix;
  struct rs_runtime *crt; /* the clients' runtime */
  struct client clients[8];
  unsigned n_clients;
  bool issuing;
  struct op_rec *ops;
  size_t n_ops, cap_ops;
  uint64_t *acked;
  size_t n_acked, cap_acked;
  uint64_t rng; /* the harness's own choices (splitmix64 from the seed) */
  bool verbose;
};

struct totals {
  uint64_t seeds, failed, slow, ops_ok, ops_failed, ops_unknown, elections, crashes, lin_budget;
  uint64_t virtual_ms, steps;
};

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t pick(struct run *r, uint64_t n) { return n ? splitmix(&r->rng) % n : 0; }
static double unit(struct run *r) { return (double)(splitmix(&r->rng) >> 11) / 9007199254740992.0; }

/* --- clients --------------------------------------------------------------------------------- */

struct call {
  struct run *run;
  uint64_t op;
  size_t node;
  uint64_t incarnation;
};

static void push_acked(struct run *r, uint64_t op) {
  if (r->n_acked == r->cap_acked) {
    r->cap_acked = r->cap_acked ? r->cap_acked * 2 : 256;
    r->acked = realloc(r->acked, r->cap_acked * sizeof(*r->acked));
    if (!r->acked) abort();
  }
  r->acked[r->n_acked++] = op;
}

static void schedule(struct client *cl, rs_time delay) { rs_timer_start(&cl->timer, delay, 0); }

/* The outcome of one call. RS_ENOTLEADER and RS_ENOLEADER say it was not applied (raft.h); any
 * other error leaves it unknown: it may take effect later or never. */
static void finish(struct run *r, uint64_t id, int status, const void *rsp, size_t len) {
  struct op_rec *o = &r->ops[id];
  if (o->state == OP_OK || o->state == OP_FAILED) return;
  bool was_waiting = o->state == OP_PENDING;
  if (status == 0) {
    o->state = OP_OK;
    o->lin.known = true;
    o->lin.complete = rs_sim_now(r->c->sim);
    if (o->lin.kind != LIN_WRITE) {
      int64_t v = 0;
      if (len == 8)
        for (int i = 0; i < 8; i++)
          v |= (int64_t)((uint64_t)((const uint8_t *)rsp)[i] << (8 * i));
      else
        sim_cluster_fail(r->c, "responses", "op %" PRIu64 " answered with %zu bytes", id, len);
      o->lin.result = v;
    }
    sim_cluster_acked(r->c, id);
    push_acked(r, id);
  } else if (status == RS_ENOTLEADER || status == RS_ENOLEADER) {
    o->state = OP_FAILED;
  } else {
    o->state = OP_UNKNOWN;
  }
  struct client *cl = &r->clients[o->client];
  if (was_waiting && cl->op == (int64_t)id) {
    cl->op = -1;
    if (r->issuing) schedule(cl, pick(r, 20) * RS_MS);
  }
}

static void on_done(void *arg, int status, const void *rsp, size_t len) {
  struct call *k = arg;
  finish(k->run, k->op, status, rsp, len);
  free(k);
}

/* Runs on the target node's loop (so a paused node takes the call late, as a stopped process
 * would). */
static void do_submit(void *arg) {
  struct call *k = arg;
  struct sim_node *nd = &k->run->c->nodes[k->node];
  if (!nd->up || nd->incarnation != k->incarnation) {
    finish(k->run, k->op, RS_ENOTLEADER, NULL, 0); /* it never reached Raft */
    free(k);
    return;
  }
  const struct op_rec *o = &k->run->ops[k->op];
  enum sim_cmd_kind kind = o->lin.kind == LIN_WRITE ? SIM_CMD_WRITE
                           : o->lin.kind == LIN_ADD ? SIM_CMD_ADD
                           : o->counter             ? SIM_CMD_CREAD
                                                    : SIM_CMD_READ;
  struct rs_buf *b = rs_buf_new(SIM_CMD_LEN);
  if (!b) abort();
  sim_cmd_encode(b->data, kind, (unsigned)o->lin.key, k->op, o->lin.arg);
  int rc = sim_node_submit(k->run->c, k->node, b, on_done, k);
  rs_buf_unref(b);
  if (rc) {
    /* Refused at once: nothing was appended. */
    finish(k->run, k->op,
           rc == RS_ENOTLEADER || rc == RS_ENOLEADER || rc == RS_ESHUTDOWN ? RS_ENOTLEADER : rc,
           NULL, 0);
    free(k);
  }
}

/* Most calls go to the node that leads the highest term, the rest anywhere. */
static int target(struct run *r) {
  struct sim_cluster *c = r->c;
  int l = sim_cluster_leader(c);
  if (l >= 0 && unit(r) < (c->opt.handle ? 0.5 : 0.85)) return l; /* REDIRECT forwards */
  int up[SIM_MAX_NODES], n = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->nodes[i].up) up[n++] = (int)i;
  return n ? up[pick(r, (uint64_t)n)] : -1;
}

static void issue(struct client *cl) {
  struct run *r = cl->run;
  int node = target(r);
  if (node < 0) {
    schedule(cl, 50 * RS_MS);
    return;
  }
  if (r->n_ops == r->cap_ops) {
    r->cap_ops = r->cap_ops ? r->cap_ops * 2 : 1024;
    r->ops = realloc(r->ops, r->cap_ops * sizeof(*r->ops));
    if (!r->ops) abort();
  }
  uint64_t id = r->n_ops++;
  struct op_rec *o = &r->ops[id];
  memset(o, 0, sizeof(*o));
  o->counter = pick(r, 2) == 0;
  o->client = cl->id;
  o->state = OP_PENDING;
  o->lin.key = pick(r, o->counter ? 2 : 3);
  o->lin.client = (uint32_t)cl->id;
  o->lin.invoke = rs_sim_now(r->c->sim);
  bool update = pick(r, 2) == 0;
  o->lin.kind = !update ? LIN_READ : o->counter ? LIN_ADD : LIN_WRITE;
  o->lin.arg = o->counter ? (int64_t)pick(r, 5) + 1 : (int64_t)id + 1; /* unique values */
  struct call *k = malloc(sizeof(*k));
  if (!k) abort();
  *k = (struct call){r, id, (size_t)node, r->c->nodes[node].incarnation};
  cl->op = (int64_t)id;
  cl->deadline = rs_sim_now(r->c->sim) + CLIENT_TIMEOUT;
  if (rs_runtime_call(r->c->nodes[node].rt, do_submit, k) != 0) {
    free(k);
    finish(r, id, RS_ENOTLEADER, NULL, 0);
    return;
  }
  schedule(cl, CLIENT_TIMEOUT);
}

static void client_timer(struct rs_timer *t) {
  struct client *cl = (struct client *)t;
  struct run *r = cl->run;
  if (cl->op >= 0) {
    if (rs_sim_now(r->c->sim) < cl->deadline) return;
    /* Timed out: the outcome stays unknown unless an answer still comes. */
    r->ops[cl->op].state = OP_UNKNOWN;
    cl->op = -1;
  }
  if (r->issuing) issue(cl);
}

/* --- the nemesis ----------------------------------------------------------------------------- */

static size_t n_up(const struct sim_cluster *c) {
  size_t k = 0;
  for (size_t i = 0; i < c->n; i++)
    k += c->nodes[i].up;
  return k;
}

static void nemesis(struct run *r) {
  struct sim_cluster *c = r->c;
  const char *what = NULL;
  size_t i = pick(r, c->n);
  switch (pick(r, 9)) {
  case 0:
    if (!r->mix.partitions) break;
    {
      bool side[SIMNET_MAX_NODES];
      for (size_t k = 0; k < c->n; k++)
        side[k] = pick(r, 2);
      simnet_partition(&c->net, side);
      what = "partition";
    }
    break;
  case 1:
    if (!r->mix.partitions) break;
    simnet_cut(&c->net, i, pick(r, c->n), true);
    what = "one-way cut";
    break;
  case 2:
    if (!r->mix.partitions) break;
    if (sim_cluster_leader(c) >= 0) {
      i = (size_t)sim_cluster_leader(c);
      simnet_isolate(&c->net, i, true);
      what = "isolate leader";
    }
    break;
  case 3:
    simnet_heal(&c->net);
    what = "heal";
    break;
  case 4:
    if (!r->mix.crashes || !c->nodes[i].up || n_up(c) <= c->n / 2) break;
    sim_node_crash(c, i);
    what = "crash";
    break;
  case 5:
  case 6:
    for (size_t k = 0; k < c->n; k++)
      if (!c->nodes[(i + k) % c->n].up) {
        i = (i + k) % c->n;
        sim_node_start(c, i);
        c->restarts++;
        what = "restart";
        break;
      }
    break;
  case 7:
    if (!r->mix.pauses || !c->nodes[i].up) break;
    rs_sim_pause(c->nodes[i].rt, (pick(r, 10) + 1) * 100 * RS_MS);
    what = "pause";
    break;
  case 8: /* the network's quality changes during the run */
    c->net.drop = pick(r, 2) ? 0 : unit(r) * 0.15;
    c->net.dup = pick(r, 2) ? 0 : unit(r) * 0.05;
    c->net.delay_p = pick(r, 2) ? 0 : unit(r) * 0.5;
    what = "network rates";
    break;
  }
  if (what && r->verbose)
    fprintf(stderr, "%.6f nemesis: %s (n%zu)\n", (double)rs_sim_now(c->sim) / RS_SEC, what, i);
}

/* --- one seed -------------------------------------------------------------------------------- */

static void choose_mix(struct run *r, uint64_t seed, size_t *nodes) {
  r->rng = seed ^ 0x5eed5eed5eed5eedull;
  if (!*nodes) {
    uint64_t k = pick(r, 10);
    *nodes = k < 5 ? 3 : k < 8 ? 5 : 7;
  }
  struct fault_mix *m = &r->mix;
  m->drop = pick(r, 3) == 0 ? 0 : unit(r) * 0.15;
  m->dup = pick(r, 2) == 0 ? 0 : unit(r) * 0.05;
  m->delay_p = pick(r, 2) == 0 ? 0 : unit(r) * 0.5;
  m->delay_max = (pick(r, 40) + 1) * RS_MS;
  m->partitions = pick(r, 4) != 0;
  m->crashes = pick(r, 4) != 0;
  m->pauses = pick(r, 3) != 0;
  m->duration = (1 + pick(r, 3)) * RS_SEC;
  m->clients = 2 + (unsigned)pick(r, 3);
  m->handle = pick(r, 3) == 0;
}

static bool converged(void *arg) {
  struct sim_cluster *c = arg;
  int l = sim_cluster_leader(c);
  if (l < 0) return false;
  rs_index last = raft_last_index(c->nodes[l].raft);
  if (raft_commit_index(c->nodes[l].raft) < last) return false;
  for (size_t i = 0; i < c->n; i++)
    if (!c->nodes[i].up || raft_last_applied(c->nodes[i].raft) < last) return false;
  return true;
}

static enum lin_result check_history(struct run *r, bool counter, char *why, size_t len) {
  struct lin_op *v = malloc((r->n_ops ? r->n_ops : 1) * sizeof(*v));
  if (!v) abort();
  size_t n = 0;
  for (size_t i = 0; i < r->n_ops; i++) {
    struct op_rec *o = &r->ops[i];
    if (o->counter != counter || o->state == OP_FAILED) continue;
    v[n] = o->lin;
    v[n].known = o->state == OP_OK;
    n++;
  }
  struct lin_options opt = {.model = counter ? LIN_COUNTER : LIN_REGISTER, .max_steps = 20000000};
  enum lin_result res = lin_check(v, n, &opt, why, len, NULL);
  free(v);
  return res;
}

static void run_clients(struct run *r, bool on) {
  r->issuing = on;
  for (unsigned i = 0; i < r->n_clients && on; i++)
    schedule(&r->clients[i], pick(r, 50) * RS_MS);
}

/* Returns true when the seed passed. */
static uint64_t max_steps = 400000;
static bool use_fsync = true;  /* --fsync off: shows what losing unsynced writes costs */
static int handle_mode = -1;   /* --handle on|off; -1: the seed decides (one seed in three) */
static const char *raft_attrs; /* --raft: RAFT attributes instead of the cluster's defaults */

/* 1: passed, 0: failed, -1: stopped at the step budget (a performance problem, no verdict). */
static int run_seed(uint64_t seed, size_t nodes, bool verbose, struct totals *t) {
  struct run r = {.verbose = verbose};
  choose_mix(&r, seed, &nodes);
  struct sim_options opt = {.nodes = nodes,
                            .fsync = use_fsync,
                            .verbose = verbose,
                            .raft = raft_attrs,
                            .handle = handle_mode >= 0 ? handle_mode : r.mix.handle};
  r.c = sim_cluster_new(seed, &opt);
  if (!r.c) return 0;
  struct sim_cluster *c = r.c;
  c->max_steps = max_steps;
  c->net.drop = r.mix.drop;
  c->net.dup = r.mix.dup;
  c->net.delay_p = r.mix.delay_p;
  c->net.delay_max = r.mix.delay_max;
  if (verbose)
    fprintf(stderr,
            "seed %" PRIu64 ": %zu nodes, %.1fs, drop %.3f dup %.3f delay %.2f<=%" PRIu64
            "ms, partitions %d crashes %d pauses %d, %u clients, %s\n",
            seed, nodes, (double)r.mix.duration / RS_SEC, r.mix.drop, r.mix.dup, r.mix.delay_p,
            r.mix.delay_max / RS_MS, r.mix.partitions, r.mix.crashes, r.mix.pauses, r.mix.clients,
            opt.handle ? "RaftHandle + REDIRECT" : "raft_submit");
  r.crt = rs_sim_runtime_new(c->sim, "clients");
  r.n_clients = r.mix.clients;
  for (unsigned i = 0; i < r.n_clients; i++) {
    r.clients[i] = (struct client){.run = &r, .id = (int)i, .op = -1};
    rs_timer_init(&r.clients[i].timer, r.crt, client_timer);
  }
  run_clients(&r, true);
  rs_time end = rs_sim_now(c->sim) + r.mix.duration;
  while (!c->failed && !c->over_budget && rs_sim_now(c->sim) < end) {
    sim_cluster_run_for(c, (pick(&r, 6) + 1) * 100 * RS_MS);
    nemesis(&r);
  }
  /* Heal everything; the cluster must then elect a leader and converge. */
  simnet_heal(&c->net);
  c->net.drop = c->net.dup = c->net.delay_p = 0;
  for (size_t i = 0; i < c->n && !c->failed; i++)
    sim_node_start(c, i);
  sim_cluster_run_for(c, RS_SEC);
  run_clients(&r, false);
  if (!c->failed && !sim_cluster_run_until(c, converged, c, 20 * RS_SEC) && !c->failed &&
      !c->over_budget)
    sim_cluster_fail(c, "liveness", "no leader with every node caught up 20 s after healing");
  if (!c->failed) sim_cluster_final_checks(c, r.acked, r.n_acked);
  for (unsigned i = 0; i < r.n_clients; i++)
    rs_timer_stop(&r.clients[i].timer);
  char why[768];
  for (int counter = 0; counter < 2 && !c->failed; counter++) {
    enum lin_result lr = check_history(&r, counter, why, sizeof(why));
    if (lr == LIN_FAIL)
      sim_cluster_fail(c, counter ? "linearizability (counter)" : "linearizability (register)",
                       "%s", why);
    else if (lr == LIN_BUDGET)
      t->lin_budget++;
  }
  int ok = c->failed ? 0 : c->over_budget ? -1 : 1;
  t->seeds++;
  t->elections += c->elections;
  t->crashes += c->crashes;
  t->virtual_ms += rs_sim_now(c->sim) / RS_MS;
  t->steps += rs_sim_steps(c->sim);
  for (size_t i = 0; i < r.n_ops; i++) {
    t->ops_ok += r.ops[i].state == OP_OK;
    t->ops_failed += r.ops[i].state == OP_FAILED;
    t->ops_unknown += r.ops[i].state == OP_UNKNOWN || r.ops[i].state == OP_PENDING;
  }
  if (verbose)
    fprintf(stderr,
            "seed %" PRIu64 ": %s, %zu ops, %" PRIu64 " elections, %" PRIu64
            " crashes, %.1fs virtual\n",
            seed,
            ok > 0   ? "ok"
            : ok < 0 ? "over the step budget"
                     : "FAILED",
            r.n_ops, c->elections, c->crashes, (double)rs_sim_now(c->sim) / RS_SEC);
  /* Pending calls end with RS_ESHUTDOWN while the nodes stop: their state no longer matters. */
  rs_runtime_destroy(r.crt);
  sim_cluster_free(c);
  free(r.ops);
  free(r.acked);
  return ok;
}

/* --- main ------------------------------------------------------------------------------------ */

static void usage(void) {
  fprintf(stderr, "usage: raft_sim [--seeds N] [--first S] [--nodes 3|5|7] [--seed S] [--verbose]\n"
                  "                [--max-steps N (default 400000 per seed; 0: none)]\n"
                  "                [--raft 'ATTR=\"V\" ...' (RAFT attributes for every node)]\n"
                  "                [--handle on|off (clients use RaftHandle + REDIRECT; default: "
                  "one seed in three)]\n"
                  "                [--fsync on|off (default on; off loses acknowledged writes "
                  "on crashes)]\n"
                  "  with no arguments: 1000 seeds from 1 (what make check runs)\n");
}

int main(int argc, char **argv) {
  uint64_t seeds = 1000, first = 1;
  size_t nodes = 0;
  bool verbose = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seeds") && v)
      seeds = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--first") && v)
      first = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--seed") && v)
      first = strtoull(argv[++i], NULL, 10), seeds = 1;
    else if (!strcmp(a, "--nodes") && v)
      nodes = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(a, "--verbose"))
      verbose = true;
    else if (!strcmp(a, "--max-steps") && v)
      max_steps = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--raft") && v)
      raft_attrs = argv[++i];
    else if (!strcmp(a, "--fsync") && v)
      use_fsync = strcmp(argv[++i], "off") != 0;
    else if (!strcmp(a, "--handle") && v)
      handle_mode = !strcmp(argv[++i], "on");
    else {
      usage();
      return 2;
    }
  }
  if (nodes && nodes != 3 && nodes != 5 && nodes != 7) {
    usage();
    return 2;
  }
  rs_log_set_level(verbose ? RS_LOG_WARN : RS_LOG_OFF);
  struct totals t = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  /* The options that change a seed's run, for the replay line. */
  char extra[512];
  int w = snprintf(extra, sizeof(extra), "%s%s%s%s", use_fsync ? "" : " --fsync off",
                   handle_mode < 0 ? ""
                   : handle_mode   ? " --handle on"
                                   : " --handle off",
                   raft_attrs ? " --raft '" : "", raft_attrs ? raft_attrs : "");
  if (raft_attrs && w > 0 && (size_t)w < sizeof(extra) - 1) strcat(extra, "'");
  if (nodes) snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --nodes %zu", nodes);
  for (uint64_t s = first; s < first + seeds; s++) {
    int res = run_seed(s, nodes, verbose, &t);
    if (res > 0) continue;
    if (res < 0) {
      t.slow++;
      fprintf(stderr,
              "SLOW seed %" PRIu64 ": over %" PRIu64 " steps (no verdict); replay: "
              "tests/sim/raft_sim --seed %" PRIu64 "%s --max-steps 0 --verbose\n",
              s, max_steps, s, extra);
      continue;
    }
    t.failed++;
    fprintf(stderr,
            "FAILED seed %" PRIu64 "; replay: tests/sim/raft_sim --seed %" PRIu64
            "%s%s --verbose\n",
            s, s, extra, max_steps != 400000 ? " --max-steps 0" : "");
    if (t.failed >= 5) break;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("raft_sim: %" PRIu64 " seeds from %" PRIu64 ", %" PRIu64 " failed, %" PRIu64
         " over the step budget; %" PRIu64 " ops acknowledged, %" PRIu64 " refused, %" PRIu64
         " unknown; %" PRIu64 " elections, %" PRIu64 " crashes; %" PRIu64
         " inconclusive checks; %.1f s virtual, %" PRIu64 " steps, %.1f s real\n",
         t.seeds, first, t.failed, t.slow, t.ops_ok, t.ops_failed, t.ops_unknown, t.elections,
         t.crashes, t.lin_budget, (double)t.virtual_ms / 1000, t.steps, secs);
  /* A seed without a verdict (over the step budget, or a history too costly to check) is not a
   * pass: the run fails so that it is looked at, never hidden among the passes. */
  return t.failed || t.slow || t.lin_budget ? 1 : 0;
}

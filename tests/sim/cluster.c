/* A simulated Raft cluster: nodes over SIMNET and the sim log, a test state machine, and Raft's
 * safety invariants checked after every step. */
#include "tests/sim/cluster.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "raft/handle_internal.h"
#include "stack/channel_internal.h"

#define DEFAULT_ELECTION                                                                           \
  "heartbeat_interval=\"30ms\" election_min_interval=\"150ms\" election_max_interval=\"300ms\""
#define DEFAULT_RAFT "resend_interval=\"60ms\" max_append_entries=\"64\""

/* --- commands and the state machine ---------------------------------------------------------- */

static void cmd_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t cmd_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* [kind:1][key:1][0:2][op:8][arg:8], little-endian (a test format, never on a real wire). */
void sim_cmd_encode(uint8_t out[SIM_CMD_LEN], enum sim_cmd_kind kind, unsigned key, uint64_t op,
                    int64_t arg) {
  memset(out, 0, SIM_CMD_LEN);
  out[0] = (uint8_t)kind;
  out[1] = (uint8_t)key;
  cmd_put_u64(out + 4, op);
  cmd_put_u64(out + 12, (uint64_t)arg);
}

static int sm_apply(void *arg, uint64_t index, const void *data, size_t len,
                    struct rs_raft_reply *reply) {
  struct sim_node *nd = arg;
  const uint8_t *p = data;
  nd->sm_applied = index;
  if (len != SIM_CMD_LEN || p[1] >= SIM_KEYS) return 0;
  int64_t v = (int64_t)cmd_get_u64(p + 12), out = 0;
  switch (p[0]) {
  case SIM_CMD_WRITE: nd->reg[p[1]] = v; return 0;
  case SIM_CMD_READ: out = nd->reg[p[1]]; break;
  case SIM_CMD_ADD: out = nd->ctr[p[1]] += v; break;
  case SIM_CMD_CREAD: out = nd->ctr[p[1]]; break;
  default: return 0;
  }
  uint8_t b[8];
  cmd_put_u64(b, (uint64_t)out);
  rs_raft_reply_set(reply, b, sizeof(b));
  return 0;
}

static const struct rs_state_machine sim_sm = {.apply = sm_apply};

/* --- reporting ------------------------------------------------------------------------------- */

static const char *role_name(enum rs_raft_role r) {
  return r == RS_RAFT_LEADER ? "leader" : r == RS_RAFT_CANDIDATE ? "candidate" : "follower";
}

void sim_cluster_dump(const struct sim_cluster *c) {
  for (size_t i = 0; i < c->n; i++) {
    const struct sim_node *nd = &c->nodes[i];
    if (!nd->up) {
      fprintf(stderr, "  %s: down\n", nd->name);
      continue;
    }
    const struct raft_log *log = raft_get_log(nd->raft);
    rs_index last = raft_last_index(nd->raft);
    fprintf(stderr,
            "  %s: %s term=%" PRIu64 " leader=%s commit=%" PRIu64 " applied=%" PRIu64
            " last=%" PRIu64 " terms(last 12):",
            nd->name, role_name(raft_role(nd->raft)), raft_current_term(nd->raft),
            raft_leader_id(nd->raft) ? raft_leader_id(nd->raft) : "-", raft_commit_index(nd->raft),
            raft_last_applied(nd->raft), last);
    for (rs_index j = last > 12 ? last - 11 : 1; log && j <= last; j++)
      fprintf(stderr, " %" PRIu64, raft_log_term_at(log, j));
    fprintf(stderr, "\n");
  }
}

void sim_cluster_fail(struct sim_cluster *c, const char *invariant, const char *fmt, ...) {
  if (c->failed) return;
  c->failed = true;
  char detail[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  snprintf(c->failure, sizeof(c->failure), "%s: %s", invariant, detail);
  fprintf(stderr,
          "VIOLATION seed=%" PRIu64 " nodes=%zu step=%" PRIu64 " t=%.6fs\n  invariant: %s\n"
          "  %s\n  state:\n",
          c->seed, c->n, rs_sim_steps(c->sim), (double)rs_sim_now(c->sim) / RS_SEC, invariant,
          detail);
  sim_cluster_dump(c);
}

/* --- invariants ------------------------------------------------------------------------------ */

static uint64_t entry_hash(const struct raft_entry *e) {
  uint64_t h = 1469598103934665603ull ^ e->type;
  h *= 1099511628211ull;
  for (uint32_t i = 0; i < e->len; i++) {
    h ^= e->data[i];
    h *= 1099511628211ull;
  }
  return h;
}

static struct sim_entry_rec *rec_at(struct sim_entry_rec **v, size_t *cap, rs_index idx) {
  if (idx >= *cap) {
    size_t n = *cap ? *cap : 1024;
    while (n <= idx)
      n *= 2;
    struct sim_entry_rec *p = realloc(*v, n * sizeof(*p));
    if (!p) abort();
    memset(p + *cap, 0, (n - *cap) * sizeof(*p));
    *v = p;
    *cap = n;
  }
  return &(*v)[idx];
}

static rs_index *op_slot(struct sim_cluster *c, uint64_t op) {
  if (op >= c->cap_ops) {
    size_t n = c->cap_ops ? c->cap_ops : 1024;
    while (n <= op)
      n *= 2;
    rs_index *p = realloc(c->op_index, n * sizeof(*p));
    if (!p) abort();
    memset(p + c->cap_ops, 0, (n - c->cap_ops) * sizeof(*p));
    c->op_index = p;
    c->cap_ops = n;
  }
  return &c->op_index[op];
}

/* State machine safety (Raft §5.4.3 / Figure 3): one entry per index over all applies. */
static void on_apply(void *arg, const struct raft_entry *e) {
  struct sim_node *nd = arg;
  struct sim_cluster *c = nd->c;
  struct sim_entry_rec *r = rec_at(&c->applied, &c->cap_applied, e->index);
  uint64_t h = entry_hash(e);
  if (!r->term) {
    *r = (struct sim_entry_rec){e->term, h, 0};
  } else if (r->term != e->term || r->hash != h) {
    sim_cluster_fail(c, "state machine safety",
                     "%s applied (term %" PRIu64 ", hash %016" PRIx64 ") at index %" PRIu64
                     " where another node applied (term %" PRIu64 ", hash %016" PRIx64 ")",
                     nd->name, e->term, h, e->index, r->term, r->hash);
  }
  if (e->type != RAFT_ENTRY_COMMAND || e->len != SIM_CMD_LEN) return;
  uint64_t op = cmd_get_u64(e->data + 4);
  rs_index *slot = op_slot(c, op);
  if (!*slot)
    *slot = e->index;
  else if (*slot != e->index)
    sim_cluster_fail(c, "one apply per command",
                     "op %" PRIu64 " applied at index %" PRIu64 " and at %" PRIu64 " (on %s)", op,
                     *slot, e->index, nd->name);
}

/* Leader completeness (Raft §5.4.1): "If a log entry is committed in a given term, then that
 * entry will be present in the logs of the leaders for all higher-numbered terms." A leader of
 * an older term may still appear after a later commit (its votes were granted before; a pause
 * delayed them): it owes nothing committed in its own term or later. */
static void check_completeness(struct sim_cluster *c, struct sim_node *nd, rs_term term) {
  const struct raft_log *log = raft_get_log(nd->raft);
  for (rs_index i = 1; log && i <= c->max_committed; i++) {
    const struct sim_entry_rec *r = &c->committed[i];
    if (!r->term || r->commit_term >= term || i < raft_log_first_index(log)) continue;
    const struct raft_entry *e = raft_log_get(log, i);
    if (!e || e->term != r->term || entry_hash(e) != r->hash) {
      sim_cluster_fail(
          c, "leader completeness",
          "%s leads term %" PRIu64 " but lacks committed index %" PRIu64 " (term %" PRIu64
          ", committed by term %" PRIu64 "); its entry there: %s term %" PRIu64,
          nd->name, term, i, r->term, r->commit_term, e ? "present," : "absent,", e ? e->term : 0);
      return;
    }
  }
}

/* Election safety (Raft §5.2): at most one leader per term. */
static void on_role(void *arg, enum rs_raft_role role, rs_term term, const char *leader) {
  struct sim_node *nd = arg;
  struct sim_cluster *c = nd->c;
  (void)leader;
  if (c->opt.verbose)
    fprintf(stderr, "%.6f %s: %s term %" PRIu64 " leader %s\n", (double)rs_sim_now(c->sim) / RS_SEC,
            nd->name, role_name(role), term, leader ? leader : "-");
  if (role != RS_RAFT_LEADER || !nd->raft) return;
  if (term >= c->cap_terms) {
    size_t n = c->cap_terms ? c->cap_terms : 256;
    while (n <= term)
      n *= 2;
    int *p = realloc(c->leader_of_term, n * sizeof(*p));
    if (!p) abort();
    memset(p + c->cap_terms, 0, (n - c->cap_terms) * sizeof(*p));
    c->leader_of_term = p;
    c->cap_terms = n;
  }
  int *who = &c->leader_of_term[term];
  if (*who && *who != nd->idx + 1) {
    sim_cluster_fail(c, "election safety", "%s and %s both lead term %" PRIu64,
                     c->nodes[*who - 1].name, nd->name, term);
    return;
  }
  if (!*who) c->elections++;
  *who = nd->idx + 1;
  check_completeness(c, nd, term);
}

/* Every newly committed index must agree with what any node committed there. */
static void check_commit(struct sim_cluster *c, struct sim_node *nd) {
  rs_index commit = raft_commit_index(nd->raft);
  const struct raft_log *log = raft_get_log(nd->raft);
  if (commit < nd->seen_commit) {
    sim_cluster_fail(c, "commit index monotonic",
                     "%s's commit index went from %" PRIu64 " back to %" PRIu64, nd->name,
                     nd->seen_commit, commit);
    return;
  }
  for (rs_index i = nd->seen_commit + 1; log && i <= commit; i++) {
    const struct raft_entry *e = raft_log_get(log, i);
    if (!e) {
      sim_cluster_fail(c, "commit within the log",
                       "%s commits index %" PRIu64 " beyond its log (last %" PRIu64 ")", nd->name,
                       i, raft_log_last_index(log));
      return;
    }
    struct sim_entry_rec *r = rec_at(&c->committed, &c->cap_committed, i);
    uint64_t h = entry_hash(e);
    if (!r->term) {
      *r = (struct sim_entry_rec){e->term, h, raft_current_term(nd->raft)};
      if (i > c->max_committed) c->max_committed = i;
    } else if (r->term != e->term || r->hash != h) {
      sim_cluster_fail(c, "committed entries agree",
                       "%s committed (term %" PRIu64 ") at index %" PRIu64 " where (term %" PRIu64
                       ") was committed before",
                       nd->name, e->term, i, r->term);
      return;
    }
  }
  nd->seen_commit = commit;
}

static uint64_t hash_at(const struct raft_log *log, rs_index i) {
  const struct raft_entry *e = raft_log_get(log, i);
  return e ? entry_hash(e) ^ e->term : 0;
}

/* Leader append-only (Raft Figure 3): while leading a term, the log only grows. */
static void check_append_only(struct sim_cluster *c, struct sim_node *nd) {
  const struct raft_log *log = raft_get_log(nd->raft);
  if (!log || raft_role(nd->raft) != RS_RAFT_LEADER) {
    nd->lead_term = 0;
    return;
  }
  rs_term term = raft_current_term(nd->raft);
  rs_index last = raft_log_last_index(log);
  if (nd->lead_term == term) {
    if (last < nd->lead_last || hash_at(log, nd->lead_last) != nd->lead_hash) {
      sim_cluster_fail(
          c, "leader append-only",
          "%s, leading term %" PRIu64 ", %s its entry at %" PRIu64 " (last now %" PRIu64 ")",
          nd->name, term, last < nd->lead_last ? "removed" : "changed", nd->lead_last, last);
      return;
    }
  }
  nd->lead_term = term;
  nd->lead_last = last;
  nd->lead_hash = hash_at(log, last);
}

/* Log matching (Raft §5.3): the highest index where two logs agree on the term, and the 8
 * below it, hold the same entries. */
static void check_matching(struct sim_cluster *c, struct sim_node *a, struct sim_node *b) {
  const struct raft_log *la = raft_get_log(a->raft), *lb = raft_get_log(b->raft);
  if (!la || !lb) return;
  rs_index m = raft_log_last_index(la) < raft_log_last_index(lb) ? raft_log_last_index(la)
                                                                 : raft_log_last_index(lb);
  rs_index lo = raft_log_first_index(la) > raft_log_first_index(lb) ? raft_log_first_index(la)
                                                                    : raft_log_first_index(lb);
  for (rs_index i = m; i >= lo && i + 24 > m && i > 0; i--) {
    rs_term t = raft_log_term_at(la, i);
    if (!t || t != raft_log_term_at(lb, i)) continue;
    for (rs_index j = i; j >= lo && j + 8 > i && j > 0; j--)
      if (raft_log_term_at(la, j) != raft_log_term_at(lb, j) || hash_at(la, j) != hash_at(lb, j)) {
        sim_cluster_fail(c, "log matching",
                         "%s and %s both have term %" PRIu64 " at index %" PRIu64
                         " but differ at %" PRIu64 " (terms %" PRIu64 " / %" PRIu64 ")",
                         a->name, b->name, t, i, j, raft_log_term_at(la, j),
                         raft_log_term_at(lb, j));
        return;
      }
    return;
  }
}

static void step_hook(void *arg) {
  struct sim_cluster *c = arg;
  if (c->failed) return;
  c->steps_checked++;
  for (size_t i = 0; i < c->n && !c->failed; i++) {
    struct sim_node *nd = &c->nodes[i];
    if (!nd->up || !nd->raft) continue;
    check_commit(c, nd);
    check_append_only(c, nd);
  }
  if (c->steps_checked % c->check_every) return;
  for (size_t i = 0; i < c->n; i++)
    for (size_t j = i + 1; j < c->n && !c->failed; j++)
      if (c->nodes[i].up && c->nodes[j].up && c->nodes[i].raft && c->nodes[j].raft)
        check_matching(c, &c->nodes[i], &c->nodes[j]);
}

void sim_cluster_acked(struct sim_cluster *c, uint64_t op) {
  if (op >= c->cap_ops || !c->op_index[op])
    sim_cluster_fail(c, "acknowledged commands applied",
                     "op %" PRIu64 " was acknowledged but no node applied it", op);
}

void sim_cluster_final_checks(struct sim_cluster *c, const uint64_t *acked, size_t n) {
  for (size_t k = 0; k < n && !c->failed; k++) {
    uint64_t op = acked[k];
    rs_index idx = op < c->cap_ops ? c->op_index[op] : 0;
    if (!idx) {
      sim_cluster_acked(c, op);
      return;
    }
    for (size_t i = 0; i < c->n; i++) {
      struct sim_node *nd = &c->nodes[i];
      if (!nd->up || raft_last_applied(nd->raft) < idx) continue;
      const struct raft_entry *e = raft_log_get(raft_get_log(nd->raft), idx);
      if (!e || e->len != SIM_CMD_LEN || cmd_get_u64(e->data + 4) != op) {
        sim_cluster_fail(c, "acknowledged commands durable",
                         "op %" PRIu64 " was acknowledged at index %" PRIu64
                         " but %s (applied to %" PRIu64 ") holds another entry there",
                         op, idx, nd->name, raft_last_applied(nd->raft));
        return;
      }
    }
  }
}

/* --- nodes ----------------------------------------------------------------------------------- */

static char *node_xml(const struct sim_cluster *c, const struct sim_node *nd) {
  char members[SIM_MAX_NODES * 4 + 1] = "";
  for (size_t i = 0; i < c->n; i++) {
    strcat(members, c->nodes[i].name);
    if (i + 1 < c->n) strcat(members, ",");
  }
  size_t len = 1024 + (c->opt.election ? strlen(c->opt.election) : 0) +
               (c->opt.raft ? strlen(c->opt.raft) : 0);
  char *xml = malloc(len);
  if (!xml) abort();
  snprintf(xml, len,
           "<config><LOOPBACK/><SIMNET/>"
           "<raft.ELECTION %s/>"
           "<raft.RAFT raft_id=\"%s\" members=\"%s\" log_class=\"sim\" log_use_fsync=\"%s\" %s/>"
           "%s</config>",
           c->opt.election ? c->opt.election : DEFAULT_ELECTION, nd->name, members,
           c->opt.fsync ? "true" : "false", c->opt.raft ? c->opt.raft : DEFAULT_RAFT,
           c->opt.handle ? "<raft.REDIRECT/>" : "");
  return xml;
}

int sim_node_start(struct sim_cluster *c, size_t i) {
  struct sim_node *nd = &c->nodes[i];
  if (nd->up) return 0;
  nd->incarnation++;
  memset(nd->reg, 0, sizeof(nd->reg));
  memset(nd->ctr, 0, sizeof(nd->ctr));
  nd->sm_applied = nd->seen_commit = nd->lead_last = 0;
  nd->lead_term = 0;
  char rtname[32];
  snprintf(rtname, sizeof(rtname), "%s.%" PRIu64, nd->name, nd->incarnation);
  nd->rt = rs_sim_runtime_new(c->sim, rtname);
  char *xml = node_xml(c, nd);
  struct rs_channel_opts o = {.config_xml = xml, .name = nd->name, .runtime = nd->rt};
  char err[512];
  int rc = rs_channel_open(&nd->ch, &o, err, sizeof(err));
  free(xml);
  if (rc) {
    fprintf(stderr, "sim: %s: open: %s\n", nd->name, err);
    return rc;
  }
  nd->raft = raft_find(channel_stack(nd->ch));
  if (!c->opt.handle) {
    raft_set_state_machine(nd->raft, &sim_sm, nd);
  } else if ((rc = rs_raft_open(&nd->handle, nd->ch, &sim_sm, nd)) != 0) {
    fprintf(stderr, "sim: %s: rs_raft_open: %s\n", nd->name, rs_strerror(rc));
    return rc;
  }
  raft_set_apply_hook(nd->raft, on_apply, nd);
  raft_add_role_listener(nd->raft, on_role, nd);
  nd->up = true;
  if ((rc = rs_channel_connect(nd->ch, "raftsim")) != 0) {
    fprintf(stderr, "sim: %s: connect: %s (%s)\n", nd->name, rs_strerror(rc),
            rs_channel_last_error(nd->ch));
    nd->up = false;
    nd->raft = NULL;
    return rc;
  }
  return 0;
}

static void retire(struct sim_cluster *c, struct rs_runtime *rt) {
  struct rs_runtime **v = realloc(c->retired, (c->n_retired + 1) * sizeof(*v));
  if (!v) abort();
  c->retired = v;
  c->retired[c->n_retired++] = rt;
}

static void node_down(struct sim_cluster *c, size_t i, bool crash) {
  struct sim_node *nd = &c->nodes[i];
  if (!nd->up) return;
  if (crash) sim_disk_crash(c->disk, nd->name);
  /* Out of the checks first: closing steps the world, and this node's state is going away. */
  nd->up = false;
  nd->raft = NULL;
  if (nd->handle) rs_raft_close(nd->handle); /* outstanding calls end with RS_ESHUTDOWN */
  nd->handle = NULL;
  rs_channel_close(nd->ch);
  nd->ch = NULL;
  /* Deliveries may still be queued on the runtime: it is destroyed at the end. */
  retire(c, nd->rt);
  nd->rt = NULL;
}

void sim_node_crash(struct sim_cluster *c, size_t i) {
  c->crashes++;
  node_down(c, i, true);
}
void sim_node_stop(struct sim_cluster *c, size_t i) { node_down(c, i, false); }

int sim_node_submit(struct sim_cluster *c, size_t i, struct rs_buf *buf, raft_done_fn done,
                    void *arg) {
  struct sim_node *nd = &c->nodes[i];
  if (!nd->up) return RS_ESHUTDOWN;
  if (nd->handle) return handle_submit(nd->handle, buf, (uint32_t)buf->cap, done, arg);
  return raft_submit(nd->raft, buf, buf->data, (uint32_t)buf->cap, done, arg);
}

int sim_cluster_leader(const struct sim_cluster *c) {
  int best = -1;
  rs_term bt = 0;
  for (size_t i = 0; i < c->n; i++) {
    const struct sim_node *nd = &c->nodes[i];
    if (!nd->up || raft_role(nd->raft) != RS_RAFT_LEADER) continue;
    if (best < 0 || raft_current_term(nd->raft) > bt) {
      best = (int)i;
      bt = raft_current_term(nd->raft);
    }
  }
  return best;
}

/* --- the cluster ----------------------------------------------------------------------------- */

struct sim_cluster *sim_cluster_new(uint64_t seed, const struct sim_options *opt) {
  static const struct rs_protocol_ops *const extra[] = {&simnet_protocol, NULL};
  struct sim_cluster *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->seed = seed;
  c->opt = *opt;
  if (getenv("RS_SIM_VERBOSE")) c->opt.verbose = true; /* role changes of a scenario test */
  c->n = opt->nodes ? opt->nodes : 3;
  if (c->n > SIM_MAX_NODES) c->n = SIM_MAX_NODES;
  if (!c->opt.disk_max) {
    c->opt.disk_min = 50 * 1000;
    c->opt.disk_max = 2 * RS_MS;
  }
  c->check_every = 32;
  c->sim = rs_sim_new(seed);
  simnet_init(&c->net, c->sim);
  simnet_set_current(&c->net);
  c->disk = sim_disk_new(c->sim, c->opt.disk_min, c->opt.disk_max);
  sim_disk_set_current(c->disk);
  stack_set_extra_protocols(extra);
  rs_sim_set_step_hook(c->sim, step_hook, c);
  for (size_t i = 0; i < c->n; i++) {
    struct sim_node *nd = &c->nodes[i];
    nd->c = c;
    nd->idx = (int)i;
    snprintf(nd->name, sizeof(nd->name), "n%u", (unsigned)(i % 100));
    simnet_add_node(&c->net, nd->name);
  }
  for (size_t i = 0; i < c->n; i++)
    if (sim_node_start(c, i) != 0) {
      sim_cluster_free(c);
      return NULL;
    }
  return c;
}

void sim_cluster_free(struct sim_cluster *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++)
    sim_node_stop(c, i);
  rs_sim_set_step_hook(c->sim, NULL, NULL);
  rs_sim_run_for(c->sim, RS_SEC); /* deliveries to closed endpoints drain */
  for (size_t i = 0; i < c->n_retired; i++)
    rs_runtime_destroy(c->retired[i]);
  free(c->retired);
  stack_set_extra_protocols(NULL);
  simnet_fini(&c->net);
  sim_disk_free(c->disk);
  rs_sim_free(c->sim);
  free(c->committed);
  free(c->applied);
  free(c->leader_of_term);
  free(c->op_index);
  free(c);
}

struct until {
  struct sim_cluster *c;
  bool (*cond)(void *arg);
  void *arg;
};

static bool until_cond(void *arg) {
  struct until *u = arg;
  struct sim_cluster *c = u->c;
  if (c->max_steps && rs_sim_steps(c->sim) > c->max_steps) c->over_budget = true;
  return c->failed || c->over_budget || (u->cond && u->cond(u->arg));
}

bool sim_cluster_run_until(struct sim_cluster *c, bool (*cond)(void *arg), void *arg,
                           rs_time timeout) {
  struct until u = {c, cond, arg};
  rs_sim_run_until(c->sim, until_cond, &u, timeout);
  return !c->failed && !c->over_budget && cond && cond(arg);
}

void sim_cluster_run_for(struct sim_cluster *c, rs_time d) {
  struct until u = {c, NULL, NULL};
  rs_sim_run_until(c->sim, until_cond, &u, d);
}

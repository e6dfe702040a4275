/* raft.RAFT: the Raft node — attributes, log, roles and terms, addressing, getters, listeners. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/raft/raft_internal.h"

/*
 * RAFT is the Raft state of one node (Raft Figure 2): the persistent part lives in the log
 * (raft/log/log.h: current term, voted for, entries, commit index), the volatile part here. Its
 * concerns are split over files:
 *  - raft.c (this file): the protocol, start/stop, roles and terms, the members and their
 *    addresses, getters and role listeners;
 *  - raft_replication.c: AppendEntries on both sides (Raft §5.3), commit (§5.4.2);
 *  - raft_apply.c: applying committed entries in batches and completing pending commands;
 *  - raft_wire.c: the wire forms; election.c: ELECTION (timers, votes, pre-vote, check-quorum).
 *
 * Addressing. Members are raft ids (`members`); a node learns the address of a member from the
 * views going up (a member's logical name is its raft id) and from the sender of every ELECTION
 * or RAFT message, whose payload starts with the sender's and the target's raft id. A restarted
 * member has a new address, learned from its first message. A message to a member whose address
 * is not known yet goes to the whole group (DONT_LOOPBACK) and every other member drops it, so
 * RAFT needs no membership protocol below it (LOOPBACK alone is enough), and works with GMS,
 * NAKACK2 and UNICAST3 too. Unicasts are ordinary (ordered) messages; RAFT does not rely on
 * their order or delivery: every rule below holds under loss, duplication and reordering.
 */

/* ---------------------------------------------------------------------------------------------
 * Roles and terms.
 */
static const char *peer_id(const struct raft *r, int i) { return i >= 0 ? r->peers[i].id : NULL; }

/* Role listeners (the handle forwards to the state machine's role_changed through one). */
void raft_notify_role(struct raft *r) {
  rs_term term = raft_log_current_term(r->log);
  const char *leader = peer_id(r, r->leader);
  for (size_t i = 0; i < r->n_listeners; i++)
    if (r->listeners[i].id >= 0) r->listeners[i].fn(r->listeners[i].arg, r->role, term, leader);
}

static void set_role(struct raft *r, enum rs_raft_role role, int leader) {
  if (r->role == role && r->leader == leader) return;
  if (r->role == RS_RAFT_LEADER && role != RS_RAFT_LEADER) r->st.step_downs++;
  bool role_changed = r->role != role;
  r->role = role;
  r->leader = leader;
  if (role_changed && r->el) election_role_changed(r->el);
  PLOG(&r->base, DEBUG, "%s in term %" PRIu64 ", leader %s", rs_raft_role_name(role),
       raft_log_current_term(r->log), leader >= 0 ? r->peers[leader].id : "unknown");
  raft_notify_role(r);
}

/* Raft §5.1: "If RPC request or response contains term T > currentTerm: set currentTerm = T,
 * convert to follower." The vote of the new term is still free. */
static int adopt_term(struct raft *r, rs_term term) {
  if (term <= raft_log_current_term(r->log)) return 0;
  int rc = raft_log_set_term_vote(r->log, term, "");
  if (rc) raft_halt(r, rc);
  return rc;
}

void raft_become_follower(struct raft *r, rs_term term, int leader) {
  if (r->stopped || adopt_term(r, term)) return;
  set_role(r, RS_RAFT_FOLLOWER, leader);
}

void raft_set_leader(struct raft *r, int leader) { set_role(r, r->role, leader); }

void raft_el_observe_term(struct raft *r, rs_term term) {
  if (r->stopped || term <= raft_log_current_term(r->log)) return;
  raft_become_follower(r, term, -1);
}

int raft_el_become_candidate(struct raft *r) {
  if (r->stopped) return RS_ESHUTDOWN;
  /* Raft §5.2: "increment currentTerm, vote for self". The vote is persisted before any request
   * goes out (ELECTION waits for raft_log_meta_durable), so a restart cannot vote twice. */
  int rc = raft_log_set_term_vote(r->log, raft_log_current_term(r->log) + 1, r->peers[r->self].id);
  if (rc) {
    raft_halt(r, rc);
    return rc;
  }
  set_role(r, RS_RAFT_CANDIDATE, -1);
  return 0;
}

void raft_el_become_leader(struct raft *r) {
  if (r->stopped || r->role == RS_RAFT_LEADER) return;
  r->st.leaders_elected++;
  PLOG(&r->base, INFO, "leader in term %" PRIu64 " (last index %" PRIu64 ", commit %" PRIu64 ")",
       raft_log_current_term(r->log), raft_log_last_index(r->log), r->commit_index);
  r->role = RS_RAFT_LEADER; /* before the no-op, which raft_repl_leader_start appends */
  r->leader = (int)r->self;
  raft_repl_leader_start(r);
  if (r->el) election_role_changed(r->el);
  raft_notify_role(r);
}

void raft_el_lose_leader(struct raft *r) {
  if (r->stopped) return;
  set_role(r, RS_RAFT_FOLLOWER, -1);
}

void raft_el_heartbeat(struct raft *r) {
  if (!r->stopped && r->role == RS_RAFT_LEADER) raft_repl_heartbeat(r);
}

void raft_log_bad(struct raft *r, const struct rs_addr *src, const char *what) {
  r->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&r->base, RS_LOG_WARN) ||
      !ratelimit_ok(&r->rl_bad, rs_now(r->base.rt), 5 * RS_SEC, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&r->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

void raft_halt(struct raft *r, int err) {
  if (r->stopped) return;
  PLOG(&r->base, ERROR, "the log failed (%s): this node stops taking part in Raft",
       rs_strerror(err));
  r->stopped = true;
  if (r->el) election_detach(r->el);
  rs_timer_stop(&r->resend_timer);
  if (r->role != RS_RAFT_FOLLOWER || r->leader >= 0) {
    if (r->role == RS_RAFT_LEADER) r->st.step_downs++;
    r->role = RS_RAFT_FOLLOWER;
    r->leader = -1;
    raft_notify_role(r);
  }
  raft_fail_pending(r, err);
  if (r->sm && r->sm->error) r->sm->error(r->sm_arg, err, "the Raft log failed; the node stopped");
}

/* ---------------------------------------------------------------------------------------------
 * Addressing.
 */
static long peer_index(const struct raft *r, const char *id) {
  for (size_t i = 0; i < r->n_peers; i++)
    if (!strcmp(r->peers[i].id, id)) return (long)i;
  return -1;
}

void raft_send_to(struct raft *r, struct rs_protocol *from, size_t peer, struct rs_msg *m) {
  struct raft_peer *p = &r->peers[peer];
  if (rs_addr_is_null(&p->addr)) {
    m->dest = RS_ADDR_NULL;
    m->tflags |= RS_MSG_DONT_LOOPBACK;
  } else {
    m->dest = p->addr;
  }
  proto_down_msg(from, m);
}

struct rs_msg *raft_el_new_msg(struct raft *r, size_t peer, size_t body, uint8_t **body_out) {
  const char *from = r->peers[r->self].id, *to = r->peers[peer].id;
  size_t ids = raft_ids_size(from, to);
  struct rs_buf *b = rs_buf_new(ids + body);
  if (!b) return NULL;
  struct rs_writer w;
  writer_init(&w, b->data, ids);
  raft_ids_put(&w, from, to);
  struct rs_msg *m = rs_msg_new_slice(b, 0, ids + body);
  rs_buf_unref(b);
  if (m && body_out) *body_out = b->data + ids;
  return m;
}

void raft_el_send(struct raft *r, struct rs_protocol *p, size_t peer, struct rs_msg *m) {
  raft_send_to(r, p, peer, m);
}

long raft_el_accept(struct raft *r, const struct rs_msg *m, struct rs_reader *payload) {
  char from[RAFT_ID_MAX + 1], to[RAFT_ID_MAX + 1];
  raft_ids_get(payload, from, to);
  if (payload->err) {
    raft_log_bad(r, &m->src, "malformed raft id prefix");
    return -1;
  }
  if (to[0] && strcmp(to, r->peers[r->self].id)) {
    r->st.not_for_us++; /* sent to the group for another member */
    return -1;
  }
  long i = peer_index(r, from);
  if (i < 0 || (size_t)i == r->self) {
    r->st.not_for_us++;
    return -1;
  }
  if (!rs_addr_is_null(&m->src)) r->peers[i].addr = m->src;
  return i;
}

void raft_el_learn_view(struct raft *r, const struct rs_addr *members, const char *const *names,
                        size_t n) {
  for (size_t k = 0; k < n; k++) {
    long i = names && names[k] ? peer_index(r, names[k]) : -1;
    if (i >= 0 && (size_t)i != r->self) r->peers[i].addr = members[k];
  }
}

bool raft_el_leader_in_view(const struct raft *r, const struct rs_addr *members, size_t n) {
  if (r->leader < 0 || (size_t)r->leader == r->self) return true;
  const struct rs_addr *a = &r->peers[r->leader].addr;
  if (rs_addr_is_null(a)) return true; /* cannot tell */
  for (size_t k = 0; k < n; k++)
    if (rs_addr_eq(&members[k], a)) return true;
  return false;
}

size_t raft_el_n_members(const struct raft *r) { return r->n_peers; }
size_t raft_el_self(const struct raft *r) { return r->self; }
size_t raft_el_majority(const struct raft *r) { return r->majority; }
struct raft_log *raft_el_log(struct raft *r) {
  return r->log;
}
const char *raft_el_peer_id(const struct raft *r, size_t i) { return r->peers[i].id; }
rs_time raft_el_peer_heard(const struct raft *r, size_t i) { return r->peers[i].last_heard; }

/* ---------------------------------------------------------------------------------------------
 * Messages.
 */
static void on_msg(struct raft *r, struct rs_msg *m) {
  const struct raft_hdr *h = rs_msg_header(m, RAFT_ID);
  if (r->stopped) {
    rs_msg_free(m);
    return;
  }
  struct rs_reader rd;
  reader_init(&rd, m->data, m->len);
  long from = raft_el_accept(r, m, &rd);
  if (from >= 0) raft_repl_on_msg(r, m, h, (size_t)from, &rd);
  rs_msg_free(m);
}

static void raft_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct raft *r = RAFT(p);
  struct rs_batch up;
  rs_batch_init(&up);
  up.src = b->src;
  up.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    if (rs_msg_header(m, RAFT_ID))
      on_msg(r, m);
    else
      rs_batch_add(&up, m);
  }
  if (up.n) proto_up_batch(p, &up);
}

static void raft_up_msg(struct rs_protocol *p, struct rs_msg *m) {
  if (rs_msg_header(m, RAFT_ID))
    on_msg(RAFT(p), m);
  else
    proto_up_msg(p, m);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle.
 */
static void on_persisted(void *arg, int status) {
  struct raft *r = arg;
  if (r->stopped) return;
  int err = status ? status : raft_log_error(r->log);
  if (err) {
    raft_halt(r, err);
    return;
  }
  if (r->el) election_on_persisted(r->el);
  raft_repl_on_persisted(r);
}

static const char *const *class_names(size_t *n) {
  const char *const *names = log_class_names();
  for (*n = 0; names[*n]; (*n)++) {
  }
  return names;
}

static int check_log_class(struct raft *r) {
  r->log_ops = log_class_find(r->log_class ? r->log_class : "");
  if (r->log_ops) return 0;
  size_t n;
  const char *const *names = class_names(&n);
  const char *s = suggest_closest(r->log_class ? r->log_class : "", names, n);
  char known[256] = "";
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(known);
    snprintf(known + l, sizeof(known) - l, "%s%s", i ? ", " : "", names[i]);
  }
  if (s)
    return proto_error(&r->base, "unknown log_class '%s' (did you mean '%s'?); known: %s",
                       r->log_class, s, known);
  return proto_error(&r->base, "unknown log_class '%s'; known: %s", r->log_class, known);
}

static int build_peers(struct raft *r) {
  if (!r->members.n) return proto_error(&r->base, "members is empty: list the raft ids");
  if (r->members.n > RAFT_MAX_MEMBERS)
    return proto_error(&r->base, "%zu members; at most %d", r->members.n, RAFT_MAX_MEMBERS);
  r->peers = calloc(r->members.n, sizeof(*r->peers));
  if (!r->peers) return proto_error(&r->base, "out of memory");
  r->n_peers = 0;
  for (size_t i = 0; i < r->members.n; i++) {
    const char *id = r->members.v[i];
    if (strlen(id) > RAFT_ID_MAX)
      return proto_error(&r->base, "member id '%.40s...' is longer than %d bytes", id, RAFT_ID_MAX);
    if (peer_index(r, id) >= 0) continue; /* duplicates dropped, as jgroups-raft does */
    struct raft_peer *p = &r->peers[r->n_peers++];
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->inflight = calloc((size_t)r->max_inflight, sizeof(*p->inflight));
    if (!p->inflight) return proto_error(&r->base, "out of memory");
  }
  r->majority = r->n_peers / 2 + 1;
  return 0;
}

static int check_self(struct raft *r) {
  long self = r->raft_id ? peer_index(r, r->raft_id) : -1;
  if (self >= 0) {
    r->self = (size_t)self;
    return 0;
  }
  char list[512] = "";
  for (size_t i = 0; i < r->n_peers; i++) {
    size_t l = strlen(list);
    snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", r->peers[i].id);
  }
  return proto_error(&r->base, "raft_id '%s' is not in members [%s]: add it to members",
                     r->raft_id ? r->raft_id : "", list);
}

static int open_log(struct raft *r) {
  struct log_config cfg = {
      .dir = r->log_dir,
      .name = r->log_prefix && r->log_prefix[0] ? r->log_prefix : r->raft_id,
      .args = r->log_args,
      .use_fsync = r->log_use_fsync,
      .segment_size = (size_t)r->log_segment_size,
  };
  char err[512] = "";
  int rc = raft_log_open(&r->log, r->log_ops, &cfg, r->base.rt, err, sizeof(err));
  if (rc) {
    proto_error(&r->base, "cannot open the %s log: %s", r->log_ops->name,
                err[0] ? err : rs_strerror(rc));
    return rc;
  }
  raft_log_set_listener(r->log, on_persisted, r);
  return 0;
}

static int raft_init(struct rs_protocol *p) {
  struct raft *r = RAFT(p);
  int rc = check_log_class(r);
  if (rc) return rc;
  if (!r->members.n) return proto_error(p, "members is empty: list the raft ids");
  rs_task_init(&r->flush_task, raft_repl_flush_task);
  rs_task_init(&r->apply_task, raft_apply_task);
  rs_task_init(&r->ack_task, raft_repl_ack_task);
  rs_timer_init(&r->resend_timer, p->rt, raft_repl_resend);
  r->stopped = true;
  return 0;
}

static void free_peers(struct raft *r) {
  for (size_t i = 0; i < r->n_peers; i++)
    free(r->peers[i].inflight);
  free(r->peers);
  r->peers = NULL;
  r->n_peers = 0;
}

static int raft_start(struct rs_protocol *p) {
  struct raft *r = RAFT(p);
  int rc;
  if ((rc = check_log_class(r)) || (rc = build_peers(r)) || (rc = check_self(r))) goto err_peers;
  r->el = election_find(p);
  if (!r->el) {
    rc = proto_error(p, "needs raft.ELECTION below it");
    goto err_peers;
  }
  if ((rc = raft_apply_init(r))) {
    proto_error(p, "out of memory");
    goto err_peers;
  }
  if ((rc = open_log(r))) goto err_apply;
  r->role = RS_RAFT_FOLLOWER;
  r->leader = -1;
  r->verified = r->acked = 0;
  r->verified_term = 0;
  /* The state machine starts empty: replay the log from its start up to the persisted commit
   * index (a committed index stays committed). Snapshots, not implemented yet, will start later. */
  r->last_applied = raft_log_first_index(r->log) - 1;
  r->commit_index = raft_log_commit_index(r->log);
  if (r->commit_index > raft_log_last_index(r->log)) r->commit_index = raft_log_last_index(r->log);
  if (r->commit_index < r->last_applied) r->commit_index = r->last_applied;
  r->stopped = false;
  memset(&r->st, 0, sizeof(r->st));
  election_attach(r->el, r);
  if (r->commit_index > r->last_applied) raft_apply_post(r);
  PLOG(&r->base, INFO,
       "started: %s of %zu, term %" PRIu64 ", log %" PRIu64 "..%" PRIu64 ", commit %" PRIu64,
       r->peers[r->self].id, r->n_peers, raft_log_current_term(r->log),
       raft_log_first_index(r->log), raft_log_last_index(r->log), r->commit_index);
  return 0;

err_apply:
  raft_apply_fini(r);
err_peers:
  free_peers(r);
  return rc;
}

static void raft_stop(struct rs_protocol *p) {
  struct raft *r = RAFT(p);
  if (!r->log) return;
  if (r->el) election_detach(r->el);
  r->el = NULL;
  r->stopped = true;
  rs_timer_stop(&r->resend_timer);
  rs_task_cancel(p->rt, &r->flush_task);
  rs_task_cancel(p->rt, &r->apply_task);
  rs_task_cancel(p->rt, &r->ack_task);
  raft_fail_pending(r, RS_ESHUTDOWN);
  raft_log_close(r->log);
  r->log = NULL;
  raft_apply_fini(r);
  free_peers(r);
  r->role = RS_RAFT_FOLLOWER;
  r->leader = -1;
}

static void raft_destroy(struct rs_protocol *p) {
  struct raft *r = RAFT(p);
  raft_stop(p);
  free(r->listeners);
  r->listeners = NULL;
  free(r->scratch);
  r->scratch = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The interface of raft.h.
 */
extern const struct rs_protocol_ops raft_protocol;

struct raft *raft_find(struct rs_stack *st) {
  for (struct rs_protocol *q = st ? st->bottom : NULL; q; q = q->up)
    if (q->ops == &raft_protocol) return RAFT(q);
  return NULL;
}

void raft_set_state_machine(struct raft *r, const struct rs_state_machine *sm, void *arg) {
  r->sm = sm;
  r->sm_arg = arg;
}

enum rs_raft_role raft_role(const struct raft *r) { return r->role; }
const char *raft_self_id(const struct raft *r) { return r->raft_id; }
const char *raft_leader_id(const struct raft *r) {
  return r->stopped ? NULL : peer_id(r, r->leader);
}
struct rs_addr raft_leader_addr(const struct raft *r) {
  if (r->stopped || r->leader < 0) return RS_ADDR_NULL;
  if ((size_t)r->leader == r->self) return proto_local_addr(&r->base);
  return r->peers[r->leader].addr;
}
rs_term raft_current_term(const struct raft *r) {
  return r->log ? raft_log_current_term(r->log) : 0;
}
rs_index raft_commit_index(const struct raft *r) { return r->commit_index; }
rs_index raft_last_applied(const struct raft *r) { return r->last_applied; }
rs_index raft_last_index(const struct raft *r) { return r->log ? raft_log_last_index(r->log) : 0; }
uint64_t raft_log_size(const struct raft *r) { return r->log ? raft_log_size_bytes(r->log) : 0; }
const struct raft_log *raft_get_log(const struct raft *r) { return r->log; }

int raft_add_role_listener(struct raft *r, raft_role_fn fn, void *arg) {
  size_t i = 0;
  while (i < r->n_listeners && r->listeners[i].id >= 0)
    i++;
  if (i == r->n_listeners) {
    struct raft_listener *l = realloc(r->listeners, (r->n_listeners + 1) * sizeof(*l));
    if (!l) return RS_ENOMEM;
    r->listeners = l;
    r->n_listeners++;
  }
  r->listeners[i] = (struct raft_listener){.fn = fn, .arg = arg, .id = r->next_listener_id++};
  return r->listeners[i].id;
}

void raft_remove_role_listener(struct raft *r, int id) {
  for (size_t i = 0; i < r->n_listeners; i++)
    if (r->listeners[i].id == id) r->listeners[i].id = -1;
}

void raft_set_apply_hook(struct raft *r, raft_apply_hook_fn fn, void *arg) {
  r->apply_hook = fn;
  r->apply_hook_arg = arg;
}

/* ---------------------------------------------------------------------------------------------
 * Stats and the protocol table.
 */
static void raft_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct raft *r = RAFT(p);
  const struct raft_stats *s = &r->st;
  out->line(out, "term", "%" PRIu64, raft_current_term(r));
  out->line(out, "role", "%s", rs_raft_role_name(r->role));
  out->line(out, "leader", "%s", raft_leader_id(r) ? raft_leader_id(r) : "");
  out->line(out, "commit_index", "%" PRIu64, r->commit_index);
  out->line(out, "last_applied", "%" PRIu64, r->last_applied);
  out->line(out, "last_index", "%" PRIu64, raft_last_index(r));
  out->line(out, "log_size", "%" PRIu64, raft_log_size(r));
  out->line(out, "append_entries_sent", "%" PRIu64, s->ae_sent);
  out->line(out, "append_entries_received", "%" PRIu64, s->ae_received);
  out->line(out, "entries_sent", "%" PRIu64, s->entries_sent);
  out->line(out, "entries_received", "%" PRIu64, s->entries_received);
  out->line(out, "heartbeats_sent", "%" PRIu64, s->heartbeats_sent);
  out->line(out, "responses_sent", "%" PRIu64, s->rsp_sent);
  out->line(out, "responses_received", "%" PRIu64, s->rsp_received);
  out->line(out, "rejects_sent", "%" PRIu64, s->rejects_sent);
  out->line(out, "rejects_received", "%" PRIu64, s->rejects_received);
  out->line(out, "resends", "%" PRIu64, s->resends);
  out->line(out, "step_downs", "%" PRIu64, s->step_downs);
  out->line(out, "leaders_elected", "%" PRIu64, s->leaders_elected);
  out->line(out, "truncations", "%" PRIu64, s->truncations);
  out->line(out, "apply_batches", "%" PRIu64, s->applied_batches);
  out->line(out, "pending_commands", "%zu", r->pending_n);
  out->line(out, "stale_dropped", "%" PRIu64, s->stale_dropped);
  out->line(out, "bad_dropped", "%" PRIu64, s->bad_dropped);
  out->line(out, "not_for_us", "%" PRIu64, s->not_for_us);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }
#define OFF(f) offsetof(struct raft, f)

static const struct rs_attr raft_attrs[] = {
    {"raft_id", RS_ATTR_STRING, OFF(raft_id), NULL, 0, 0,
     "this node's id: unique, and one of members", RS_ATTR_REQUIRED, NULL},
    {"members", RS_ATTR_LIST, OFF(members), NULL, 0, 0,
     "raft ids of the voting members (majority = n/2+1)", 0, NULL},
    {"log_class", RS_ATTR_STRING, OFF(log_class), "file", 0, 0,
     "log store: file or memory (jgroups-raft's FileBasedLog, InMemoryLog also accepted)", 0, NULL},
    {"log_args", RS_ATTR_STRING, OFF(log_args), NULL, 0, 0, "options passed to the log class (file and memory take none)",
     0, NULL},
    {"log_dir", RS_ATTR_STRING, OFF(log_dir), "/tmp", 0, 0,
     "directory of the log (<log_dir>/<log_prefix or raft_id>.log); /tmp as jgroups-raft: set it "
     "to a durable place",
     0, NULL},
    {"log_prefix", RS_ATTR_STRING, OFF(log_prefix), NULL, 0, 0,
     "name of the log directory (default: raft_id)", 0, NULL},
    {"log_use_fsync", RS_ATTR_BOOL, OFF(log_use_fsync), "true", 0, 0,
     "acknowledge an entry only once it is fsynced (jgroups-raft defaults to false)", 0, NULL},
    {"log_segment_size", RS_ATTR_SIZE, OFF(log_segment_size), "64MiB", 4096, 1e12,
     "file log: start a new segment past this many bytes", 0, NULL},
    {"resend_interval", RS_ATTR_DURATION, OFF(resend_interval), "1s", 1, 3600000,
     "the leader resends to a follower that has not answered for this long", 0, NULL},
    {"send_commits_immediately", RS_ATTR_BOOL, OFF(send_commits_immediately), "false", 0, 0,
     "send the new commit index to followers as soon as it advances (else with the next "
     "AppendEntries or heartbeat)",
     0, NULL},
    {"max_log_size", RS_ATTR_SIZE, OFF(max_log_size), "1000000", 0, 0,
     "log size that triggers a snapshot (stored only: snapshots are not implemented yet)", 0, NULL},
    {"max_append_entries", RS_ATTR_INT, OFF(max_append_entries), "512", 1, 65536,
     "entries per AppendEntries at most", 0, NULL},
    {"max_append_bytes", RS_ATTR_SIZE, OFF(max_append_bytes), "60000", 256, 16777216,
     "payload bytes per AppendEntries at most (one larger entry goes alone)", 0, NULL},
    {"max_inflight", RS_ATTR_INT, OFF(max_inflight), "8", 1, RAFT_MAX_INFLIGHT,
     "AppendEntries in flight per follower (pipelining)", 0, NULL},
    IGNORED("dynamic_view_changes", "membership changes are not implemented yet"),
    IGNORED("max_log_cache_size", "every entry is kept in memory until a snapshot"),
    IGNORED("processing_queue_max_size", "RAFT runs on the event loop, without a queue"),
    RS_ATTR_END,
};

static const char *const raft_below[] = {"ELECTION", NULL};

const struct rs_protocol_ops raft_protocol = {
    .name = "RAFT",
    .package = "raft",
    .id = RAFT_ID,
    .size = sizeof(struct raft),
    .description = "Raft log replication: AppendEntries with batching and pipelining, commit, "
                   "apply",
    .attrs = raft_attrs,
    .header = &raft_header_type,
    .requires_below = raft_below,
    .init = raft_init,
    .start = raft_start,
    .stop = raft_stop,
    .destroy = raft_destroy,
    .up_msg = raft_up_msg,
    .up_batch = raft_up_batch,
    .stats = raft_stats,
};

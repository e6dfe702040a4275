/* raft.ELECTION (and ELECTION2): election timeout, pre-vote, votes, heartbeats, check-quorum. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/raft/election.h"
#include "protocols/raft/raft.h"
#include "protocols/raft/raft_wire.h"
#include "stack/stack.h"
#include "stack/view.h"

/*
 * Raft's leader election (Raft §5.2) with the two additions of Ongaro's dissertation that keep a
 * cluster stable:
 *
 * - Election timeout: a follower that hears nothing from a leader for a random time in
 *   [election_min_interval, election_max_interval] starts an election. The timer restarts on
 *   every AppendEntries or heartbeat of the current leader and on every vote granted.
 * - Pre-vote (§9.6): before raising its term, the node asks "would you vote for me in term
 *   T+1?". A member says yes only if it has not heard from a leader within
 *   election_min_interval and the asker's log is at least as up to date as its own (§5.4.1);
 *   answering changes nothing. Only with a majority of yeses does the node raise its term and
 *   ask for real votes. So a node cut off from the cluster never raises its term, and coming
 *   back does not depose a healthy leader.
 * - Votes (§5.2, §5.4.1): at most one per term, only for a log at least as up to date, and
 *   persisted before the answer goes out (raft_log_set_term_vote, answered once
 *   raft_log_meta_durable). A candidate sends its requests only once its own vote is durable.
 *   A member that heard from a leader within election_min_interval ignores a request of a
 *   higher term (§4.2.3, disruptive servers) when check_quorum is on.
 * - Heartbeats: the leader sends RAFT's heartbeat every heartbeat_interval.
 * - Check-quorum (§6.2): a leader that has not heard from a majority within
 *   election_max_interval steps down.
 * - Views are hints: a view without the known leader drops the lease and starts the election
 *   timeout short, but the election itself runs by the rules above.
 *
 * jgroups-raft's ELECTION elects through the view coordinator; ELECTION2 adds a pre-vote. Here
 * both names load this protocol, which follows the Raft paper instead.
 */

#define ELECTION_ID 520

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 520). Byte layout (docs/wire-format.md, ELECTION):
 *
 *   PRE_VOTE_REQ (1), VOTE_REQ (3): type u8 | term varint | last_index varint | last_term varint
 *   PRE_VOTE_RSP (2), VOTE_RSP (4): type u8 | term varint | granted u8 (0 or 1)
 *
 * A pre-vote request's term is the term the asker would stand in (its term + 1); an answer's
 * term is that term when granted, else the voter's own term. The payload is the raft-id prefix
 * (protocols/raft/raft_wire.h).
 */
enum { EL_PRE_VOTE_REQ = 1, EL_PRE_VOTE_RSP = 2, EL_VOTE_REQ = 3, EL_VOTE_RSP = 4 };

struct election_hdr {
  rs_term term;
  rs_index last_index;
  rs_term last_term;
  uint8_t type;
  uint8_t granted;
};

_Static_assert(sizeof(struct election_hdr) <= RS_HDR_INLINE, "ELECTION header must fit inline");

static bool is_req(uint8_t t) { return t == EL_PRE_VOTE_REQ || t == EL_VOTE_REQ; }

static size_t hdr_wire_size(const void *p) {
  const struct election_hdr *h = p;
  size_t n = 1 + varint_size(h->term);
  return is_req(h->type) ? n + varint_size(h->last_index) + varint_size(h->last_term) : n + 1;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct election_hdr *h = p;
  put_u8(w, h->type);
  put_varint(w, h->term);
  if (is_req(h->type)) {
    put_varint(w, h->last_index);
    put_varint(w, h->last_term);
  } else {
    put_u8(w, h->granted);
  }
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct election_hdr *h = p;
  *h = (struct election_hdr){0};
  h->type = get_u8(r);
  h->term = get_varint(r);
  if (h->type < EL_PRE_VOTE_REQ || h->type > EL_VOTE_RSP) reader_fail(r, RS_EMALFORMED);
  if (is_req(h->type)) {
    h->last_index = get_varint(r);
    h->last_term = get_varint(r);
  } else {
    h->granted = get_u8(r);
    if (h->granted > 1) reader_fail(r, RS_EMALFORMED);
  }
  if ((h->term | h->last_index | h->last_term) >> 63) reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct election_hdr){0};
}

static const char *const type_names[] = {"?", "PRE_VOTE_REQ", "PRE_VOTE_RSP", "VOTE_REQ",
                                         "VOTE_RSP"};

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct election_hdr *h = p;
  const char *t = h->type <= EL_VOTE_RSP ? type_names[h->type] : "?";
  if (is_req(h->type))
    return snprintf(buf, len, "%s term=%" PRIu64 " last=%" PRIu64 "/%" PRIu64, t, h->term,
                    h->last_index, h->last_term);
  return snprintf(buf, len, "%s term=%" PRIu64 " %s", t, h->term,
                  h->granted ? "granted" : "denied");
}

static const struct rs_header_type election_header = {
    .id = ELECTION_ID,
    .name = "ELECTION",
    .size = sizeof(struct election_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
#define MAX_DEFERRED 64

struct election_stats {
  uint64_t pre_votes_started, elections_started, pre_votes_granted, pre_votes_denied;
  uint64_t votes_granted, votes_denied, votes_received, leader_timeouts, quorum_losses;
  uint64_t view_triggers, lease_refusals, bad_dropped;
};

struct election {
  struct rs_protocol base;
  /* Attributes. */
  rs_time election_min_interval, election_max_interval, heartbeat_interval, vote_timeout;
  bool pre_vote, check_quorum;
  /* State. */
  struct raft *r;
  struct rs_timer election_timer, heartbeat_timer, quorum_timer;
  rs_time leader_contact; /* last time a leader of the current term was heard (0: never) */
  bool pre_voting;        /* a pre-vote round is open for round_term */
  bool requests_pending;  /* candidate: requests go out once our vote is durable */
  rs_term round_term;
  uint64_t votes; /* bit i: peers[i] granted in the open round */
  struct {
    size_t peer;
    rs_term term;
  } deferred[MAX_DEFERRED]; /* votes granted, answered once durable */
  size_t n_deferred;
  struct rs_ratelimit rl_bad;
  struct election_stats st;
};

#define EL(p) ((struct election *)(p))

static rs_time now_of(struct election *e) { return rs_now(e->base.rt); }

static unsigned count_votes(uint64_t v) { return (unsigned)__builtin_popcountll(v); }

static void arm_election_timer(struct election *e, rs_time lo, rs_time hi) {
  rs_timer_start(&e->election_timer, rs_random_range(e->base.rt, lo, hi), 0);
}

static void arm_timeout(struct election *e) {
  arm_election_timer(e, e->election_min_interval, e->election_max_interval);
}

/* Whether a leader's lease holds: we lead, or heard from a leader within the minimum timeout. */
static bool in_lease(struct election *e) {
  if (raft_role(e->r) == RS_RAFT_LEADER) return true;
  return e->leader_contact && raft_leader_id(e->r) &&
         now_of(e) - e->leader_contact < e->election_min_interval;
}

/* Raft §5.4.1: "If the logs have last entries with different terms, then the log with the later
 * term is more up-to-date. If the logs end with the same term, then whichever log is longer is
 * more up-to-date." */
static bool log_ok(struct election *e, const struct election_hdr *h) {
  const struct raft_log *log = raft_el_log(e->r);
  rs_term t = raft_log_last_term(log);
  return h->last_term > t || (h->last_term == t && h->last_index >= raft_log_last_index(log));
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */
static void send_hdr(struct election *e, size_t peer, const struct election_hdr *src) {
  struct rs_msg *m = raft_el_new_msg(e->r, peer, 0, NULL);
  if (!m) return;
  struct election_hdr *h = rs_msg_put_header(m, &election_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  *h = *src;
  m->flags |= RS_MSG_OOB | RS_MSG_NO_FC;
  raft_el_send(e->r, &e->base, peer, m);
}

static void send_requests(struct election *e, uint8_t type, rs_term term) {
  const struct raft_log *log = raft_el_log(e->r);
  struct election_hdr h = {.type = type,
                           .term = term,
                           .last_index = raft_log_last_index(log),
                           .last_term = raft_log_last_term(log)};
  for (size_t i = 0; i < raft_el_n_members(e->r); i++)
    if (i != raft_el_self(e->r)) send_hdr(e, i, &h);
}

static void answer(struct election *e, size_t peer, uint8_t type, rs_term term, bool granted) {
  struct election_hdr h = {.type = type, .term = term, .granted = granted};
  send_hdr(e, peer, &h);
}

/* ---------------------------------------------------------------------------------------------
 * Rounds.
 */
static void check_won(struct election *e) {
  if (raft_role(e->r) != RS_RAFT_CANDIDATE || e->requests_pending) return;
  if (count_votes(e->votes) >= raft_el_majority(e->r)) raft_el_become_leader(e->r);
}

static void start_election(struct election *e) {
  e->pre_voting = false;
  if (raft_el_become_candidate(e->r)) return;
  e->st.elections_started++;
  e->round_term = raft_current_term(e->r);
  e->votes = 1ull << raft_el_self(e->r);
  e->requests_pending = true;
  PLOG(&e->base, DEBUG, "election for term %" PRIu64, e->round_term);
  election_on_persisted(e); /* sends now if the vote is durable already */
}

static void start_pre_vote(struct election *e) {
  e->st.pre_votes_started++;
  e->pre_voting = true;
  e->round_term = raft_current_term(e->r) + 1;
  e->votes = 1ull << raft_el_self(e->r);
  if (count_votes(e->votes) >= raft_el_majority(e->r)) {
    start_election(e);
    return;
  }
  send_requests(e, EL_PRE_VOTE_REQ, e->round_term);
}

static void on_election_timeout(struct rs_timer *t) {
  struct election *e = (struct election *)((char *)t - offsetof(struct election, election_timer));
  if (!e->r || raft_role(e->r) == RS_RAFT_LEADER) return;
  arm_timeout(e); /* a round that fails starts again after a new random timeout */
  if (raft_leader_id(e->r)) {
    e->st.leader_timeouts++;
    raft_el_lose_leader(e->r);
  }
  e->leader_contact = 0;
  if (e->pre_vote)
    start_pre_vote(e);
  else
    start_election(e);
}

static void on_heartbeat_timer(struct rs_timer *t) {
  struct election *e = (struct election *)((char *)t - offsetof(struct election, heartbeat_timer));
  if (e->r) raft_el_heartbeat(e->r);
}

static void on_quorum_timer(struct rs_timer *t) {
  struct election *e = (struct election *)((char *)t - offsetof(struct election, quorum_timer));
  if (!e->r || raft_role(e->r) != RS_RAFT_LEADER) return;
  rs_time now = now_of(e);
  size_t heard = 0;
  for (size_t i = 0; i < raft_el_n_members(e->r); i++)
    if (i == raft_el_self(e->r) || now - raft_el_peer_heard(e->r, i) < e->election_max_interval)
      heard++;
  if (heard >= raft_el_majority(e->r)) return;
  e->st.quorum_losses++;
  PLOG(&e->base, INFO, "heard from %zu of %zu members within %" PRIu64 " ms: stepping down", heard,
       raft_el_n_members(e->r), e->election_max_interval / RS_MS);
  raft_el_lose_leader(e->r);
}

/* ---------------------------------------------------------------------------------------------
 * Receiving.
 */
static void on_pre_vote_req(struct election *e, size_t from, const struct election_hdr *h) {
  rs_term cur = raft_current_term(e->r);
  /* Ongaro §9.6: grant if we would vote in a real election and have no leader. */
  bool granted = h->term > cur && !in_lease(e) && log_ok(e, h);
  if (granted)
    e->st.pre_votes_granted++;
  else
    e->st.pre_votes_denied++;
  answer(e, from, EL_PRE_VOTE_RSP, granted ? h->term : cur, granted);
}

static void on_pre_vote_rsp(struct election *e, size_t from, const struct election_hdr *h) {
  if (!h->granted) {
    if (h->term > raft_current_term(e->r)) raft_el_observe_term(e->r, h->term);
    return;
  }
  if (!e->pre_voting || h->term != e->round_term || raft_current_term(e->r) + 1 != h->term) return;
  e->votes |= 1ull << from;
  if (count_votes(e->votes) >= raft_el_majority(e->r)) start_election(e);
}

static void defer_answer(struct election *e, size_t from, rs_term term) {
  for (size_t i = 0; i < e->n_deferred; i++)
    if (e->deferred[i].peer == from && e->deferred[i].term == term) return;
  if (e->n_deferred < MAX_DEFERRED) {
    e->deferred[e->n_deferred].peer = from;
    e->deferred[e->n_deferred++].term = term;
  }
}

static void on_vote_req(struct election *e, size_t from, const struct election_hdr *h) {
  rs_term cur = raft_current_term(e->r);
  if (h->term > cur) {
    if (e->check_quorum && in_lease(e)) {
      e->st.lease_refusals++; /* Ongaro §4.2.3: a live leader is not deposed by a stray */
      answer(e, from, EL_VOTE_RSP, cur, false);
      return;
    }
    raft_el_observe_term(e->r, h->term);
    cur = raft_current_term(e->r);
  }
  const char *voted = raft_log_voted_for(raft_el_log(e->r));
  const char *cand = raft_el_peer_id(e->r, from);
  bool free_vote = !voted[0] || !strcmp(voted, cand);
  if (h->term < cur || !free_vote || !log_ok(e, h)) {
    e->st.votes_denied++;
    answer(e, from, EL_VOTE_RSP, cur, false);
    return;
  }
  if (!voted[0] && raft_log_set_term_vote(raft_el_log(e->r), cur, cand)) return;
  e->st.votes_granted++;
  arm_timeout(e); /* Raft §5.2: granting a vote restarts the election timeout */
  /* Raft §5.2 / Figure 2: persistent state is updated on stable storage before responding. */
  if (raft_log_meta_durable(raft_el_log(e->r)))
    answer(e, from, EL_VOTE_RSP, cur, true);
  else
    defer_answer(e, from, cur);
}

static void on_vote_rsp(struct election *e, size_t from, const struct election_hdr *h) {
  rs_term cur = raft_current_term(e->r);
  if (h->term > cur) {
    raft_el_observe_term(e->r, h->term);
    return;
  }
  if (!h->granted || h->term != cur || raft_role(e->r) != RS_RAFT_CANDIDATE) return;
  e->st.votes_received++;
  e->votes |= 1ull << from;
  check_won(e);
}

static void log_bad(struct election *e, const struct rs_addr *src, const char *what) {
  e->st.bad_dropped++;
  uint64_t suppressed;
  if (!proto_log_enabled(&e->base, RS_LOG_WARN) ||
      !ratelimit_ok(&e->rl_bad, now_of(e), 5 * RS_SEC, &suppressed))
    return;
  char a[RS_ADDR_STRLEN];
  PLOG(&e->base, WARN, "dropped a message from %s: %s (%" PRIu64 " similar suppressed)",
       rs_addr_format(src, a), what, suppressed);
}

static void on_msg(struct election *e, struct rs_msg *m) {
  const struct election_hdr *h = rs_msg_header(m, ELECTION_ID);
  if (e->r) {
    struct rs_reader rd;
    reader_init(&rd, m->data, m->len);
    long from = raft_el_accept(e->r, m, &rd);
    if (from >= 0 && rd.pos != rd.len)
      log_bad(e, &m->src, "trailing bytes");
    else if (from >= 0) {
      switch (h->type) {
      case EL_PRE_VOTE_REQ: on_pre_vote_req(e, (size_t)from, h); break;
      case EL_PRE_VOTE_RSP: on_pre_vote_rsp(e, (size_t)from, h); break;
      case EL_VOTE_REQ: on_vote_req(e, (size_t)from, h); break;
      case EL_VOTE_RSP: on_vote_rsp(e, (size_t)from, h); break;
      default: log_bad(e, &m->src, "unknown ELECTION message type"); break;
      }
    }
  }
  rs_msg_free(m);
}

static void el_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct rs_batch up;
  rs_batch_init(&up);
  up.src = b->src;
  up.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    if (rs_msg_header(m, ELECTION_ID))
      on_msg(EL(p), m);
    else
      rs_batch_add(&up, m);
  }
  if (up.n) proto_up_batch(p, &up);
}

static void el_up_msg(struct rs_protocol *p, struct rs_msg *m) {
  if (rs_msg_header(m, ELECTION_ID))
    on_msg(EL(p), m);
  else
    proto_up_msg(p, m);
}

static void on_view(struct election *e, const struct rs_view_data *v) {
  if (!e->r || !v) return;
  raft_el_learn_view(e->r, v->members, (const char *const *)v->names, v->n);
  if (raft_role(e->r) != RS_RAFT_FOLLOWER || !raft_leader_id(e->r) ||
      raft_el_leader_in_view(e->r, v->members, v->n))
    return;
  /* The leader left the view: a hint, not a decision. Drop its lease so that pre-votes can be
   * granted, and time out soon; the election itself follows the usual rules. */
  e->st.view_triggers++;
  e->leader_contact = 0;
  arm_election_timer(e, 0, e->election_min_interval / 2);
}

static int el_up_event(struct rs_protocol *p, struct rs_event *ev) {
  if (ev->type == RS_EV_VIEW_CHANGE) on_view(EL(p), ev->u.view);
  return proto_up_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * The interface to RAFT (election.h).
 */
extern const struct rs_protocol_ops election_protocol;

struct election *election_find(struct rs_protocol *p) {
  for (struct rs_protocol *q = p->down; q; q = q->down)
    if (q->ops == &election_protocol) return EL(q);
  return NULL;
}

void election_attach(struct election *e, struct raft *r) {
  e->r = r;
  e->leader_contact = 0;
  e->pre_voting = e->requests_pending = false;
  e->n_deferred = 0;
  memset(&e->st, 0, sizeof(e->st));
  election_role_changed(e);
}

void election_detach(struct election *e) {
  e->r = NULL;
  rs_timer_stop(&e->election_timer);
  rs_timer_stop(&e->heartbeat_timer);
  rs_timer_stop(&e->quorum_timer);
  e->n_deferred = 0;
}

void election_leader_contact(struct election *e) {
  e->leader_contact = now_of(e);
  e->pre_voting = false;
  arm_timeout(e);
}

void election_role_changed(struct election *e) {
  if (!e->r) return;
  if (raft_role(e->r) == RS_RAFT_LEADER) {
    rs_timer_stop(&e->election_timer);
    e->pre_voting = e->requests_pending = false;
    rs_timer_start(&e->heartbeat_timer, e->heartbeat_interval, e->heartbeat_interval);
    if (e->check_quorum)
      rs_timer_start(&e->quorum_timer, e->election_max_interval, e->election_max_interval);
    return;
  }
  rs_timer_stop(&e->heartbeat_timer);
  rs_timer_stop(&e->quorum_timer);
  if (raft_role(e->r) == RS_RAFT_FOLLOWER) e->requests_pending = false;
  if (!rs_timer_active(&e->election_timer)) arm_timeout(e);
}

void election_on_persisted(struct election *e) {
  if (!e->r) return;
  struct raft_log *log = raft_el_log(e->r);
  if (!raft_log_meta_durable(log)) return;
  rs_term cur = raft_current_term(e->r);
  const char *voted = raft_log_voted_for(log);
  for (size_t i = 0; i < e->n_deferred; i++)
    if (e->deferred[i].term == cur && !strcmp(voted, raft_el_peer_id(e->r, e->deferred[i].peer)))
      answer(e, e->deferred[i].peer, EL_VOTE_RSP, cur, true);
  e->n_deferred = 0;
  if (e->requests_pending && raft_role(e->r) == RS_RAFT_CANDIDATE && cur == e->round_term) {
    e->requests_pending = false;
    send_requests(e, EL_VOTE_REQ, cur);
    check_won(e);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, the protocol table.
 */
static int el_init(struct rs_protocol *p) {
  struct election *e = EL(p);
  if (e->election_min_interval >= e->election_max_interval)
    return proto_error(p,
                       "election_min_interval (%" PRIu64 " ms) must be below "
                       "election_max_interval (%" PRIu64 " ms)",
                       e->election_min_interval / RS_MS, e->election_max_interval / RS_MS);
  if (e->heartbeat_interval >= e->election_min_interval)
    return proto_error(p,
                       "heartbeat_interval (%" PRIu64 " ms) must be below "
                       "election_min_interval (%" PRIu64 " ms)",
                       e->heartbeat_interval / RS_MS, e->election_min_interval / RS_MS);
  rs_timer_init(&e->election_timer, p->rt, on_election_timeout);
  rs_timer_init(&e->heartbeat_timer, p->rt, on_heartbeat_timer);
  rs_timer_init(&e->quorum_timer, p->rt, on_quorum_timer);
  return 0;
}

static void el_stop(struct rs_protocol *p) { election_detach(EL(p)); }

static void el_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  const struct election_stats *s = &EL(p)->st;
  out->line(out, "pre_votes_started", "%" PRIu64, s->pre_votes_started);
  out->line(out, "elections_started", "%" PRIu64, s->elections_started);
  out->line(out, "pre_votes_granted", "%" PRIu64, s->pre_votes_granted);
  out->line(out, "pre_votes_denied", "%" PRIu64, s->pre_votes_denied);
  out->line(out, "votes_granted", "%" PRIu64, s->votes_granted);
  out->line(out, "votes_denied", "%" PRIu64, s->votes_denied);
  out->line(out, "votes_received", "%" PRIu64, s->votes_received);
  out->line(out, "leader_timeouts", "%" PRIu64, s->leader_timeouts);
  out->line(out, "quorum_losses", "%" PRIu64, s->quorum_losses);
  out->line(out, "view_triggers", "%" PRIu64, s->view_triggers);
  out->line(out, "lease_refusals", "%" PRIu64, s->lease_refusals);
  out->line(out, "bad_dropped", "%" PRIu64, s->bad_dropped);
}

#define OFF(f) offsetof(struct election, f)

static const struct rs_attr election_attrs[] = {
    {"election_min_interval", RS_ATTR_DURATION, OFF(election_min_interval), "100ms", 1, 3600000,
     "lower bound of the random election timeout; also the leader lease of pre-vote", 0, NULL},
    {"election_max_interval", RS_ATTR_DURATION, OFF(election_max_interval), "500ms", 1, 3600000,
     "upper bound of the random election timeout; a leader that has not heard from a majority "
     "for this long steps down",
     0, NULL},
    {"heartbeat_interval", RS_ATTR_DURATION, OFF(heartbeat_interval), "30ms", 1, 3600000,
     "the leader's heartbeat period", 0, NULL},
    {"vote_timeout", RS_ATTR_DURATION, OFF(vote_timeout), "600ms", 0, 0,
     "accepted for jgroups-raft configurations; a round ends with the random election timeout", 0,
     NULL},
    {"pre_vote", RS_ATTR_BOOL, OFF(pre_vote), "true", 0, 0,
     "ask for pre-votes before raising the term (Ongaro 9.6)", 0, NULL},
    {"check_quorum", RS_ATTR_BOOL, OFF(check_quorum), "true", 0, 0,
     "a leader without a majority steps down; leases refuse disruptive votes", 0, NULL},
    RS_ATTR_END,
};

static const char *const election_aliases[] = {"ELECTION2", NULL};

const struct rs_protocol_ops election_protocol = {
    .name = "ELECTION",
    .package = "raft",
    .aliases = election_aliases,
    .id = ELECTION_ID,
    .size = sizeof(struct election),
    .description = "Raft leader election: random timeouts, pre-vote, durable votes, "
                   "heartbeats, check-quorum",
    .attrs = election_attrs,
    .header = &election_header,
    .init = el_init,
    .stop = el_stop,
    .up_msg = el_up_msg,
    .up_batch = el_up_batch,
    .up_event = el_up_event,
    .stats = el_stats,
};

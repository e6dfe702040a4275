/* RAFT: AppendEntries on both sides — batching, pipelining, back-off, durable acks, commit. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/raft/raft_internal.h"

/*
 * Leader (Raft §5.3). Per follower next_index and match_index. An AppendEntries carries up to
 * max_append_entries entries and max_append_bytes of them; up to max_inflight requests are in
 * flight per follower, and next_index advances optimistically when one is sent. The ring
 * `inflight` holds the last index of each request in flight; an ack of index i retires those
 * ending at or below i. Everything appended in one loop iteration goes out together: submit
 * posts the flush task, which sends to every follower. The leader writes to its own log in
 * parallel (the log persists in the background); its own match index is the log's
 * durable_index.
 *
 * Follower. Checks the request (term, prev_index/prev_term), truncates a conflicting suffix,
 * appends what is new, and remembers the end of the accepted request as `verified` (its log
 * matches the leader's up to there). It acks min(durable_index, verified): only entries on disk
 * count towards a majority. Acks are coalesced: one per persisted batch or posted ack task, not
 * one per request. A reject says where the logs diverge (fast back-off, as etcd's hint and the
 * optimisation of Raft §5.3): the follower's last index when prev_index is beyond it, else the
 * first index of the conflicting term.
 *
 * Commit (Raft §5.4.2, Figure 8): the highest index held by a majority, and only if its entry has
 * the leader's current term; earlier entries commit with it. Followers learn the commit index
 * from every AppendEntries and heartbeat: a heartbeat carries min(commit, match_index of that
 * follower), which the follower's log is known to hold (as etcd does), so it needs no log check.
 *
 * Loss: a lost request shows up as a reject of the next one (prev_index beyond the follower's
 * log), or, when it was the last, as no progress for resend_interval: the leader then starts
 * again from match_index + 1.
 */

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */
static struct rs_msg *new_msg(struct raft *r, size_t peer, size_t body, uint8_t **b,
                              struct raft_hdr **h) {
  struct rs_msg *m = raft_el_new_msg(r, peer, body, b);
  if (!m) return NULL;
  *h = rs_msg_put_header(m, &raft_header_type);
  if (!*h) {
    rs_msg_free(m);
    return NULL;
  }
  (*h)->term = raft_log_current_term(r->log);
  return m;
}

static void send_heartbeat(struct raft *r, size_t i) {
  struct raft_peer *p = &r->peers[i];
  struct raft_hdr *h;
  struct rs_msg *m = new_msg(r, i, 0, NULL, &h);
  if (!m) return;
  h->type = RAFT_HEARTBEAT;
  /* Only what this follower is known to hold: it can take it without a log check. */
  h->commit = r->commit_index < p->match_index ? r->commit_index : p->match_index;
  p->commit_sent = h->commit;
  r->st.heartbeats_sent++;
  raft_send_to(r, &r->base, i, m);
}

/* How many entries from `from` go into one request (at least one). */
static uint32_t batch_count(struct raft *r, rs_index from, rs_index last, size_t *bytes) {
  uint32_t n = 0;
  size_t total = 0;
  while (from + n <= last && n < (uint64_t)r->max_append_entries) {
    const struct raft_entry *e = raft_log_get(r->log, from + n);
    if (!e) break;
    size_t s = raft_entry_wire_size(e);
    if (n && total + s > r->max_append_bytes) break;
    total += s;
    n++;
  }
  *bytes = total;
  return n;
}

/* An AppendEntries without entries at next_index - 1: a follower that has all entries but no
 * longer knows that they match (it restarted) checks them and acks, and learns the commit. */
static void send_probe(struct raft *r, size_t i) {
  struct raft_peer *p = &r->peers[i];
  struct raft_hdr *h;
  struct rs_msg *m = new_msg(r, i, 0, NULL, &h);
  if (!m) return;
  h->type = RAFT_APPEND_REQ;
  h->prev_index = p->next_index - 1;
  h->prev_term = raft_log_term_at(r->log, h->prev_index);
  h->commit = r->commit_index;
  p->commit_sent = r->commit_index;
  r->st.ae_sent++;
  raft_send_to(r, &r->base, i, m);
}

static bool send_one_append(struct raft *r, size_t i, rs_index last) {
  struct raft_peer *p = &r->peers[i];
  size_t bytes;
  uint32_t n = batch_count(r, p->next_index, last, &bytes);
  if (!n) return false;
  uint8_t *b;
  struct raft_hdr *h;
  struct rs_msg *m = new_msg(r, i, bytes, &b, &h);
  if (!m) return false;
  struct rs_writer w;
  writer_init(&w, b, bytes);
  for (uint32_t k = 0; k < n; k++)
    raft_entry_put(&w, raft_log_get(r->log, p->next_index + k));
  h->type = RAFT_APPEND_REQ;
  h->prev_index = p->next_index - 1;
  h->prev_term = raft_log_term_at(r->log, h->prev_index);
  h->commit = r->commit_index;
  h->n = n;
  p->commit_sent = r->commit_index;
  p->inflight[(p->inflight_head + p->inflight_n) % (unsigned)r->max_inflight] =
      p->next_index + n - 1;
  p->inflight_n++;
  p->next_index += n;
  r->st.ae_sent++;
  r->st.entries_sent += n;
  raft_send_to(r, &r->base, i, m);
  return true;
}

/* Sends what follower i lacks, as far as the pipeline allows. True when something was sent. */
static bool send_append(struct raft *r, size_t i) {
  struct raft_peer *p = &r->peers[i];
  rs_index last = raft_log_last_index(r->log);
  bool sent = false;
  while (p->inflight_n < (unsigned)r->max_inflight && p->next_index <= last) {
    if (p->next_index < raft_log_first_index(r->log)) {
      PLOG(&r->base, WARN, "%s needs entries before the log's start: snapshots are not implemented yet",
           p->id);
      break;
    }
    if (!send_one_append(r, i, last)) break;
    sent = true;
  }
  return sent;
}

static void send_all(struct raft *r, bool heartbeat) {
  bool commits = r->send_commits_immediately;
  for (size_t i = 0; i < r->n_peers; i++) {
    if (i == r->self) continue;
    struct raft_peer *p = &r->peers[i];
    if (send_append(r, i)) continue;
    rs_index could = r->commit_index < p->match_index ? r->commit_index : p->match_index;
    if (heartbeat || (commits && could > p->commit_sent)) send_heartbeat(r, i);
  }
}

void raft_repl_flush(struct raft *r) { rs_post(r->base.rt, &r->flush_task); }

void raft_repl_flush_task(struct rs_task *t) {
  struct raft *r = (struct raft *)((char *)t - offsetof(struct raft, flush_task));
  if (!r->stopped && r->role == RS_RAFT_LEADER) send_all(r, false);
}

void raft_repl_heartbeat(struct raft *r) { send_all(r, true); }

static void reset_peer(struct raft *r, struct raft_peer *p, rs_index next) {
  p->next_index = next;
  p->inflight_n = 0;
  p->inflight_head = 0;
  p->progress_at = rs_now(r->base.rt);
}

void raft_repl_leader_start(struct raft *r) {
  rs_time now = rs_now(r->base.rt);
  rs_index next = raft_log_last_index(r->log) + 1;
  for (size_t i = 0; i < r->n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    reset_peer(r, p, next);
    p->match_index = 0;
    p->commit_sent = 0;
    p->last_heard = now; /* check-quorum counts from the start of the term */
  }
  /* Raft §5.4.2 / §8: a new leader commits an entry of its own term at once, which commits
   * everything before it; a read or a client waiting on an older entry needs nothing else. */
  rs_index idx;
  int rc =
      raft_log_append(r->log, raft_log_current_term(r->log), RAFT_ENTRY_NOOP, NULL, NULL, 0, &idx);
  if (rc) {
    raft_halt(r, rc);
    return;
  }
  send_all(r, true);
  rs_timer_start(&r->resend_timer, r->resend_interval, r->resend_interval);
}

/* The resend run: a follower that made no progress for resend_interval while it lacks entries
 * starts again from its match index (a lost request, or a lost answer). */
void raft_repl_resend(struct rs_timer *t) {
  struct raft *r = (struct raft *)((char *)t - offsetof(struct raft, resend_timer));
  if (r->stopped || r->role != RS_RAFT_LEADER) {
    rs_timer_stop(t);
    return;
  }
  rs_time now = rs_now(r->base.rt);
  rs_index last = raft_log_last_index(r->log);
  for (size_t i = 0; i < r->n_peers; i++) {
    struct raft_peer *p = &r->peers[i];
    if (i == r->self || p->match_index >= last || now - p->progress_at < r->resend_interval)
      continue;
    r->st.resends++;
    reset_peer(r, p, p->match_index + 1);
    send_append(r, i);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Commit (leader).
 */
static int cmp_index(const void *a, const void *b) {
  rs_index x = *(const rs_index *)a, y = *(const rs_index *)b;
  return x < y ? 1 : x > y ? -1 : 0; /* descending */
}

static void maybe_commit(struct raft *r) {
  if (r->role != RS_RAFT_LEADER) return;
  rs_index m[RAFT_MAX_MEMBERS];
  for (size_t i = 0; i < r->n_peers; i++)
    m[i] = i == r->self ? raft_log_durable_index(r->log) : r->peers[i].match_index;
  qsort(m, r->n_peers, sizeof(m[0]), cmp_index);
  rs_index n = m[r->majority - 1]; /* held by a majority */
  /* Raft §5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only
   * log entries from the leader's current term are committed by counting replicas." */
  if (n <= r->commit_index || raft_log_term_at(r->log, n) != raft_log_current_term(r->log)) return;
  r->commit_index = n;
  raft_apply_post(r);
  if (r->send_commits_immediately) raft_repl_flush(r);
}

/* ---------------------------------------------------------------------------------------------
 * Answers (follower -> leader).
 */
static void send_rsp(struct raft *r, size_t to, bool reject, rs_index index, rs_index prev) {
  struct raft_hdr *h;
  struct rs_msg *m = new_msg(r, to, 0, NULL, &h);
  if (!m) return;
  h->type = RAFT_APPEND_RSP;
  h->flags = reject ? RAFT_RSP_REJECT : 0;
  h->index = index;
  h->last = raft_log_last_index(r->log);
  h->prev_index = prev;
  r->st.rsp_sent++;
  if (reject) r->st.rejects_sent++;
  raft_send_to(r, &r->base, to, m);
}

/* The ack: min(durable, verified). Sent when it progressed, or once everything verified is
 * durable (then the leader hears from us even without progress: check-quorum, heartbeats). */
static void maybe_ack(struct raft *r) {
  if (!r->ack_wanted || r->role != RS_RAFT_FOLLOWER || r->leader < 0) return;
  rs_index durable = raft_log_durable_index(r->log);
  rs_index ack = durable < r->verified ? durable : r->verified;
  bool all = durable >= r->verified;
  if (!all && ack <= r->acked) return;
  send_rsp(r, (size_t)r->leader, false, ack, 0);
  r->acked = ack;
  if (all) r->ack_wanted = false;
}

void raft_repl_ack_task(struct rs_task *t) {
  struct raft *r = (struct raft *)((char *)t - offsetof(struct raft, ack_task));
  if (!r->stopped) maybe_ack(r);
}

void raft_repl_on_persisted(struct raft *r) {
  if (r->role == RS_RAFT_LEADER)
    maybe_commit(r);
  else
    maybe_ack(r);
}

/* ---------------------------------------------------------------------------------------------
 * Receiving.
 */
static void retire_inflight(struct raft *r, struct raft_peer *p, rs_index acked) {
  while (p->inflight_n && p->inflight[p->inflight_head] <= acked) {
    p->inflight_head = (p->inflight_head + 1) % (unsigned)r->max_inflight;
    p->inflight_n--;
  }
}

static void on_rsp(struct raft *r, size_t from, const struct raft_hdr *h) {
  struct raft_peer *p = &r->peers[from];
  r->st.rsp_received++;
  p->last_heard = rs_now(r->base.rt);
  if (h->last < p->match_index) {
    /* It acked entries it no longer has: it restarted without its log (a lost disk, or the
     * memory log), or this answer was overtaken by a later one. Either way, going back to what
     * it says it has is safe (match_index only ever counts towards a majority). */
    PLOG(&r->base, DEBUG, "%s has %" PRIu64 " entries, acked %" PRIu64, p->id, h->last,
         p->match_index);
    p->match_index = h->last;
    reset_peer(r, p, h->last + 1);
  }
  if (h->flags & RAFT_RSP_REJECT) {
    r->st.rejects_received++;
    /* Stale: about an index known to match, or beyond where we already went back to. */
    if (h->prev_index < p->match_index || h->prev_index >= p->next_index) {
      r->st.stale_dropped++;
      return;
    }
    rs_index next = h->index;
    if (next > h->last + 1) next = h->last + 1;
    if (next > h->prev_index) next = h->prev_index; /* at least one step back */
    if (next <= p->match_index) next = p->match_index + 1;
    reset_peer(r, p, next);
    send_append(r, from);
    return;
  }
  if (h->index > p->match_index) {
    if (h->index > raft_log_last_index(r->log)) {
      raft_log_bad(r, &p->addr, "ack beyond the leader's log");
      return;
    }
    p->match_index = h->index;
    p->progress_at = p->last_heard;
    if (p->next_index <= p->match_index) p->next_index = p->match_index + 1;
    maybe_commit(r);
  }
  retire_inflight(r, p, h->index);
  if (send_append(r, from)) return;
  /* Everything was sent and acked, yet it acks less than its match index now: it restarted and
   * must check its log against ours again before it may ack or commit. */
  if (h->index < p->match_index && !p->inflight_n) send_probe(r, from);
}

static struct raft_entry *scratch(struct raft *r, uint32_t n) {
  if (n <= r->scratch_cap) return r->scratch;
  size_t cap = r->scratch_cap ? r->scratch_cap : 64;
  while (cap < n)
    cap *= 2;
  struct raft_entry *e = realloc(r->scratch, cap * sizeof(*e));
  if (!e) return NULL;
  r->scratch = e;
  r->scratch_cap = cap;
  return e;
}

/* The first index of the term of entry idx, not below the commit index + 1 (committed entries
 * never conflict). */
static rs_index conflict_start(struct raft *r, rs_index idx) {
  rs_term t = raft_log_term_at(r->log, idx);
  rs_index first = raft_log_first_index(r->log);
  while (idx > first && idx - 1 > r->commit_index && raft_log_term_at(r->log, idx - 1) == t)
    idx--;
  return idx;
}

/* Appends e[0..n) at prev+1.. after removing a conflicting suffix. 0 or an error (halts). */
static int store_entries(struct raft *r, rs_index prev, struct raft_entry *e, uint32_t n,
                         const struct rs_addr *src) {
  uint32_t k = 0;
  for (; k < n; k++) {
    rs_index idx = prev + 1 + k;
    if (idx > raft_log_last_index(r->log)) break;
    if (raft_log_term_at(r->log, idx) == e[k].term) continue; /* already have it */
    /* Raft §5.3: "If an existing entry conflicts with a new one (same index but different
     * terms), delete the existing entry and all that follow it." Never a committed one. */
    if (idx <= r->commit_index) {
      raft_log_bad(r, src, "AppendEntries conflicts with a committed entry");
      return RS_EINVAL;
    }
    raft_pending_truncated(r, idx);
    r->st.truncations++;
    int rc = raft_log_truncate_suffix(r->log, idx);
    if (rc) return rc;
    break;
  }
  if (k == n) return 0;
  return raft_log_append_entries(r->log, e + k, n - k);
}

static void on_append(struct raft *r, size_t from, const struct raft_hdr *h, struct rs_msg *m,
                      struct rs_reader *rd) {
  r->st.ae_received++;
  struct raft_entry *e = h->n ? scratch(r, h->n) : NULL;
  if (h->n && !e) return;
  raft_entries_get(rd, m->buf, h->prev_index + 1, h->n, e);
  if (rd->err || rd->pos != rd->len) {
    raft_log_bad(r, &m->src, "malformed AppendEntries entries");
    return;
  }
  r->st.entries_received += h->n;
  rs_index last = raft_log_last_index(r->log);
  if (h->prev_index > last) {
    send_rsp(r, from, true, last + 1, h->prev_index);
    return;
  }
  if (h->prev_index + 1 < raft_log_first_index(r->log)) {
    r->st.stale_dropped++; /* below our log start (a snapshot would cover it) */
    return;
  }
  if (raft_log_term_at(r->log, h->prev_index) != h->prev_term) {
    send_rsp(r, from, true, conflict_start(r, h->prev_index), h->prev_index);
    return;
  }
  int rc = store_entries(r, h->prev_index, e, h->n, &m->src);
  if (rc) {
    if (raft_log_error(r->log)) raft_halt(r, rc);
    return;
  }
  rs_index end = h->prev_index + h->n;
  if (end > r->verified) r->verified = end;
  /* Raft Figure 2: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
   * last new entry)". */
  rs_index c = h->commit < end ? h->commit : end;
  if (c > r->commit_index) {
    r->commit_index = c;
    raft_apply_post(r);
  }
  r->ack_wanted = true;
  rs_post(r->base.rt, &r->ack_task);
}

static void on_heartbeat(struct raft *r, const struct raft_hdr *h) {
  /* h->commit <= our match index, which we acked in this term, so it is <= verified; bounding
   * by verified as well keeps a node that restarted without its log from taking a commit index
   * for entries it does not have (verified is 0 until an AppendEntries of this term matched). */
  rs_index c = h->commit < r->verified ? h->commit : r->verified;
  if (c > r->commit_index) {
    r->commit_index = c;
    raft_apply_post(r);
  }
  r->ack_wanted = true;
  rs_post(r->base.rt, &r->ack_task);
}

/* A request of the leader `from` in term h->term: Raft §5.1 and §5.2 before the log checks. */
static bool accept_leader(struct raft *r, size_t from, const struct raft_hdr *h) {
  rs_term term = raft_log_current_term(r->log);
  if (h->term < term) {
    /* A deposed leader: our answer carries the newer term and makes it step down. */
    r->st.stale_dropped++;
    send_rsp(r, from, true, 0, h->prev_index);
    return false;
  }
  if (h->term == term && r->role == RS_RAFT_LEADER) {
    raft_log_bad(r, &r->peers[from].addr, "another leader in our term");
    return false;
  }
  raft_become_follower(r, h->term, (int)from);
  if (r->stopped) return false;
  if (r->verified_term != h->term) {
    r->verified_term = h->term;
    r->verified = 0;
    r->acked = 0;
  }
  if (r->el) election_leader_contact(r->el);
  return true;
}

void raft_repl_on_msg(struct raft *r, struct rs_msg *m, const struct raft_hdr *h, size_t from,
                      struct rs_reader *payload) {
  switch (h->type) {
  case RAFT_APPEND_REQ:
    if (accept_leader(r, from, h)) on_append(r, from, h, m, payload);
    break;
  case RAFT_HEARTBEAT:
    if (accept_leader(r, from, h)) on_heartbeat(r, h);
    break;
  case RAFT_APPEND_RSP:
    if (h->term > raft_log_current_term(r->log)) {
      raft_el_observe_term(r, h->term);
    } else if (h->term < raft_log_current_term(r->log) || r->role != RS_RAFT_LEADER) {
      r->st.stale_dropped++;
    } else {
      on_rsp(r, from, h);
    }
    break;
  default: raft_log_bad(r, &m->src, "unknown RAFT message type"); break;
  }
}

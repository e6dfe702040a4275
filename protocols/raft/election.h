/* The interface between ELECTION (timers, votes, pre-vote, check-quorum) and RAFT (state, log). */
#ifndef RS_PROTOCOLS_RAFT_ELECTION_H
#define RS_PROTOCOLS_RAFT_ELECTION_H

#include <stdbool.h>
#include <stddef.h>

#include "raft/log/log.h"
#include "stack/protocol.h"

/*
 * RAFT owns the Raft state: the log (term, vote, entries), the role, the leader, the members and
 * their addresses. ELECTION owns time: the randomized election timeout, the leader's heartbeat
 * and check-quorum timers, and the vote messages. RAFT starts after ELECTION (bottom to top) and
 * attaches to it; from then on each calls the other only through the functions below, on the
 * loop thread.
 */
struct raft;
struct election;

/* ---- RAFT -> ELECTION --------------------------------------------------------------------- */
/* The ELECTION instance below p, or NULL. */
struct election *election_find(struct rs_protocol *p);
/* RAFT started (its log is open): ELECTION starts its timers. */
void election_attach(struct election *e, struct raft *r);
/* RAFT stopped or halted: ELECTION stops its timers and forgets r. */
void election_detach(struct election *e);
/* A valid AppendEntries or heartbeat from the leader of the current term arrived: the election
 * timeout starts again and the leader's lease (for pre-vote and vote refusals) is renewed. */
void election_leader_contact(struct election *e);
/* The role changed (RAFT calls it after every change): leader timers or the election timer. */
void election_role_changed(struct election *e);
/* A batch of the log became durable: deferred vote answers and vote requests go out. */
void election_on_persisted(struct election *e);

/* ---- ELECTION -> RAFT (protocols/raft/raft.c) ----------------------------------------------- */
size_t raft_el_n_members(const struct raft *r);
size_t raft_el_self(const struct raft *r);
size_t raft_el_majority(const struct raft *r);
struct raft_log *raft_el_log(struct raft *r);
const char *raft_el_peer_id(const struct raft *r, size_t i);
/* When peers[i] last answered the leader in the current term (0: never). */
rs_time raft_el_peer_heard(const struct raft *r, size_t i);
/* A new message to peers[i] whose payload is the id prefix followed by `body` bytes of room
 * (returned in *body); NULL when out of memory. */
struct rs_msg *raft_el_new_msg(struct raft *r, size_t peer, size_t body, uint8_t **body_out);
/* Sends m from protocol p (ELECTION) to peers[i] (unicast, or to the group with the target id).
 * Takes m. */
void raft_el_send(struct raft *r, struct rs_protocol *p, size_t peer, struct rs_msg *m);
/* Checks the id prefix of a received message: the sender's peer index (and learns its address),
 * or -1 when it is not for us or not from a member (dropped and counted by the caller). */
long raft_el_accept(struct raft *r, const struct rs_msg *m, struct rs_reader *payload);
/* A higher term was seen: become follower in `term` with no vote and no known leader. */
void raft_el_observe_term(struct raft *r, rs_term term);
/* Starts a real election: term + 1, vote for self (persisted; ELECTION sends its requests once
 * raft_log_meta_durable). 0 or the log's error. Role becomes candidate. */
int raft_el_become_candidate(struct raft *r);
/* This node won the election of the current term. */
void raft_el_become_leader(struct raft *r);
/* The leader was lost (no heartbeat within the election timeout, or it left the view) or this
 * leader lost its quorum: follower with no known leader in the current term. */
void raft_el_lose_leader(struct raft *r);
/* The leader's heartbeat: an AppendEntries (or heartbeat) to every follower. */
void raft_el_heartbeat(struct raft *r);
enum rs_raft_role raft_role(const struct raft *r);
/* Whether a view may mean the leader is gone: called with each view going up. */
bool raft_el_leader_in_view(const struct raft *r, const struct rs_addr *members, size_t n);
/* Learns addresses from a view (members' logical names are raft ids). */
void raft_el_learn_view(struct raft *r, const struct rs_addr *members, const char *const *names,
                        size_t n);

#endif

/* UNICAST3's data structures: seqno windows (send and receive) and the table of peers. */
#ifndef RS_PROTOCOLS_UNICAST3_WINDOW_H
#define RS_PROTOCOLS_UNICAST3_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/msg.h"

/* Seqnos start at 1 per connection; anything above this is refused on the wire, so window
 * arithmetic (seqno + window size) can never wrap a uint64_t. */
#define U3_SEQNO_MAX ((uint64_t)INT64_MAX)

/* ---------------------------------------------------------------------------------------------
 * Send window: the messages of one connection with seqnos [low, next), kept until acked. Slot of
 * seqno s is s & (cap - 1); the ring doubles as needed (a sender is bounded by flow control
 * above, as in JGroups, not here). Each slot owns a copy of the message sent (rs_msg_copy: own
 * headers, shared payload).
 */
struct u3_send_window {
  struct rs_msg **ring;
  size_t cap;    /* 0 or a power of two */
  uint64_t low;  /* lowest unacked seqno */
  uint64_t next; /* seqno of the next message sent */
};

void u3_sendwin_init(struct u3_send_window *w);
/* Takes m as the message with seqno w->next and advances next. 0 or RS_ENOMEM (m not taken). */
int u3_sendwin_push(struct u3_send_window *w, struct rs_msg *m);
/* The kept message with this seqno, or NULL when it is not in [low, next). */
struct rs_msg *u3_sendwin_get(const struct u3_send_window *w, uint64_t seqno);
/* Frees every message up to and including seqno (clipped to next - 1); returns how many. */
size_t u3_sendwin_ack(struct u3_send_window *w, uint64_t seqno);
static inline size_t u3_sendwin_count(const struct u3_send_window *w) {
  return (size_t)(w->next - w->low);
}
void u3_sendwin_free(struct u3_send_window *w);

/* ---------------------------------------------------------------------------------------------
 * Receive window: what a receiver holds for one connection. `next` is the next seqno to deliver
 * in order; seqnos [next, next + max_msgs) may be held, regular messages until they are next in
 * line, OOB ones as a marker once delivered (so a retransmission is recognised as a duplicate).
 * Bounded by max_msgs slots and max_bytes of payload; the ring grows lazily up to the power of
 * two that covers max_msgs.
 */
struct u3_recv_window {
  void **ring; /* NULL: missing; U3_DELIVERED: an OOB message already passed up; else rs_msg */
  size_t cap;  /* 0 or a power of two */
  uint64_t next;
  size_t max_msgs;
  size_t held;  /* occupied slots (messages and markers) */
  size_t bytes; /* payload bytes of the messages held */
  size_t max_bytes;
};

enum u3_add_result {
  U3_ADDED,     /* held until it is next in line */
  U3_DELIVER,   /* an OOB message to pass up now; the window keeps a marker */
  U3_DUPLICATE, /* delivered before, or already held: the caller frees it */
  U3_FULL,      /* beyond the window or over its bytes: the caller frees it; it is retransmitted */
  U3_NOMEM,     /* the caller frees it; it is retransmitted */
};

void u3_recvwin_init(struct u3_recv_window *w, uint64_t first, size_t max_msgs, size_t max_bytes);
/* Offers message m with this seqno (an OOB one when oob). Only U3_ADDED takes m. */
enum u3_add_result u3_recvwin_add(struct u3_recv_window *w, uint64_t seqno, struct rs_msg *m,
                                  bool oob);
/* The next message in order, or NULL when it is missing; skips OOB markers. */
struct rs_msg *u3_recvwin_remove(struct u3_recv_window *w);
/* The last seqno the window may hold. */
static inline uint64_t u3_recvwin_end(const struct u3_recv_window *w) {
  return w->next + w->max_msgs - 1;
}
static inline bool u3_recvwin_has(const struct u3_recv_window *w, uint64_t seqno) {
  return seqno >= w->next && seqno - w->next < w->cap && w->ring[seqno & (w->cap - 1)];
}
void u3_recvwin_free(struct u3_recv_window *w);

/* A run of missing seqnos [first, last]. */
struct u3_range {
  uint64_t first, last;
};
/* Writes the missing runs within [lo, hi] ∩ [next, end] into out (at most cap of them) and
 * returns how many; *covered receives the last seqno examined (hi, or less when out filled). */
size_t u3_recvwin_missing(const struct u3_recv_window *w, uint64_t lo, uint64_t hi,
                          struct u3_range *out, size_t cap, uint64_t *covered);

/* ---------------------------------------------------------------------------------------------
 * Peer table: entries keyed by address, chained in buckets. An entry embeds struct u3_node
 * first; the table does not own it.
 */
struct u3_node {
  struct u3_node *next;
  struct rs_addr addr;
};

struct u3_table {
  struct u3_node **buckets;
  size_t n_buckets; /* 0 or a power of two */
  size_t n;
};

void u3_table_init(struct u3_table *t);
struct u3_node *u3_table_find(const struct u3_table *t, const struct rs_addr *addr);
/* Adds a node whose address is not in the table yet. 0 or RS_ENOMEM. */
int u3_table_add(struct u3_table *t, struct u3_node *n);
void u3_table_remove(struct u3_table *t, struct u3_node *n);
/* Calls fn on every node; fn may remove (and free) the node it is given. */
void u3_table_each(struct u3_table *t, void (*fn)(struct u3_node *n, void *arg), void *arg);
/* Frees the bucket array (not the nodes). */
void u3_table_free(struct u3_table *t);

#endif

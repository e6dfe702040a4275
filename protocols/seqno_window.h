/* Seqno windows for the reliable protocols: send rings, bounded receive windows, peer tables. */
#ifndef RS_PROTOCOLS_SEQNO_WINDOW_H
#define RS_PROTOCOLS_SEQNO_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stack/codec.h"
#include "stack/msg.h"

/*
 * Pure data structures, no I/O and no time, shared by the protocols that number messages and
 * repair loss by retransmission (NAKACK2; UNICAST3 keeps its own copy of the same ideas in
 * unicast3_window.c). Seqnos start at 1; anything above SEQWIN_SEQNO_MAX is refused on the wire,
 * so window arithmetic (seqno + window size) can never wrap a uint64_t.
 */
#define SEQWIN_SEQNO_MAX ((uint64_t)INT64_MAX)

/* ---------------------------------------------------------------------------------------------
 * Send window: the messages [low, next) a sender keeps for retransmission. Slot of seqno s is
 * s & (cap - 1); the ring doubles as needed and halves again as it drains (a sender is bounded
 * by flow control above and by whoever purges, not here). Each slot owns one message.
 */
struct seqwin_send {
  struct rs_msg **ring;
  size_t cap;    /* 0 or a power of two */
  uint64_t low;  /* lowest seqno still kept */
  uint64_t next; /* seqno of the next message sent */
  size_t bytes;  /* payload bytes kept */
};

void seqwin_send_init(struct seqwin_send *w);
/* Takes m as the message with seqno w->next and advances next. 0 or RS_ENOMEM (m not taken). */
int seqwin_send_push(struct seqwin_send *w, struct rs_msg *m);
/* The kept message with this seqno, or NULL when it is not in [low, next). */
struct rs_msg *seqwin_send_get(const struct seqwin_send *w, uint64_t seqno);
/* Frees every message up to and including seqno (clipped to next - 1); returns how many. */
size_t seqwin_send_purge(struct seqwin_send *w, uint64_t seqno);
static inline size_t seqwin_send_count(const struct seqwin_send *w) {
  return (size_t)(w->next - w->low);
}
void seqwin_send_free(struct seqwin_send *w);

/* ---------------------------------------------------------------------------------------------
 * Receive window: what a receiver holds for one sender. `next` is the next seqno to deliver in
 * order; seqnos [next, next + max_msgs) may be held, regular messages until they are next in
 * line, OOB ones (and seqnos to skip) as a marker once passed up, so that a retransmission is
 * recognised as a duplicate. Bounded by max_msgs slots and max_bytes of payload; the ring grows
 * lazily up to the power of two that covers max_msgs, and is given back when it drains.
 */
struct seqwin_recv {
  void **ring; /* NULL: missing; the marker: passed up already; else an rs_msg */
  size_t cap;  /* 0 or a power of two */
  uint64_t next;
  size_t max_msgs;
  size_t held;  /* occupied slots (messages and markers) */
  size_t bytes; /* payload bytes of the messages held */
  size_t max_bytes;
};

enum seqwin_add_result {
  SEQWIN_ADDED,     /* held until it is next in line */
  SEQWIN_DELIVER,   /* an OOB message to pass up now; the window keeps a marker */
  SEQWIN_DUPLICATE, /* delivered before, or already held: the caller frees it */
  SEQWIN_FULL,      /* beyond the window or over its bytes: the caller frees it */
  SEQWIN_NOMEM,     /* the caller frees it */
};

/* A window whose first seqno to deliver is `first` (>= 1, <= SEQWIN_SEQNO_MAX). */
void seqwin_recv_init(struct seqwin_recv *w, uint64_t first, size_t max_msgs, size_t max_bytes);
/* Offers message m with this seqno (an OOB one when oob). Only SEQWIN_ADDED takes m. */
enum seqwin_add_result seqwin_recv_add(struct seqwin_recv *w, uint64_t seqno, struct rs_msg *m,
                                       bool oob);
/* Marks seqno as passed up without a message (a message that must not be delivered here);
 * SEQWIN_DELIVER when marked, else as seqwin_recv_add. */
enum seqwin_add_result seqwin_recv_skip(struct seqwin_recv *w, uint64_t seqno);
/* The next message in order, or NULL when it is missing; steps over markers. */
struct rs_msg *seqwin_recv_remove(struct seqwin_recv *w);
/* The last seqno the window may hold. */
static inline uint64_t seqwin_recv_end(const struct seqwin_recv *w) {
  return w->next + w->max_msgs - 1;
}
static inline bool seqwin_recv_has(const struct seqwin_recv *w, uint64_t seqno) {
  return seqno >= w->next && seqno - w->next < w->cap && w->ring[seqno & (w->cap - 1)];
}
void seqwin_recv_free(struct seqwin_recv *w);

/* A run of seqnos [first, last]. */
struct seqwin_range {
  uint64_t first, last;
};
/* Writes the missing runs within [lo, hi] ∩ [next, end] into out: at most cap runs covering at
 * most max_seqnos seqnos (0: no limit). Returns how many runs; *covered receives the last seqno
 * examined (hi, or less when a limit was reached). */
size_t seqwin_recv_missing(const struct seqwin_recv *w, uint64_t lo, uint64_t hi,
                           struct seqwin_range *out, size_t cap, uint64_t max_seqnos,
                           uint64_t *covered);

/* ---------------------------------------------------------------------------------------------
 * Ranges on the wire (the payload of a retransmission request): count (varint), then per range
 * skip (varint) and extra (varint). The first range starts at skip, each later one at the
 * previous range's last + 1 + skip; a range covers [start, start + extra]. Ranges are therefore
 * ascending and disjoint by construction.
 */
void seqwin_put_ranges(struct rs_writer *w, const struct seqwin_range *r, size_t n);
size_t seqwin_ranges_wire_size(const struct seqwin_range *r, size_t n);
/* Decodes ranges and calls fn for each, in order, until fn returns false. Hostile input costs
 * one pass over the bytes: the count is checked against the bytes left and a range past
 * SEQWIN_SEQNO_MAX stops the decoding. 0, or RS_EMALFORMED after calling fn for the ranges
 * decoded before the fault. */
int seqwin_ranges_each(const uint8_t *p, size_t len,
                       bool (*fn)(void *arg, uint64_t first, uint64_t last), void *arg);

/* ---------------------------------------------------------------------------------------------
 * Peer table: entries keyed by address, chained in buckets. An entry embeds struct seqwin_node
 * first; the table does not own it.
 */
struct seqwin_node {
  struct seqwin_node *next;
  struct rs_addr addr;
};

struct seqwin_table {
  struct seqwin_node **buckets;
  size_t n_buckets; /* 0 or a power of two */
  size_t n;
};

void seqwin_table_init(struct seqwin_table *t);
struct seqwin_node *seqwin_table_find(const struct seqwin_table *t, const struct rs_addr *addr);
/* Adds a node whose address is not in the table yet. 0 or RS_ENOMEM. */
int seqwin_table_add(struct seqwin_table *t, struct seqwin_node *n);
void seqwin_table_remove(struct seqwin_table *t, struct seqwin_node *n);
/* Calls fn on every node; fn may remove (and free) the node it is given. */
void seqwin_table_each(struct seqwin_table *t, void (*fn)(struct seqwin_node *n, void *arg),
                       void *arg);
/* Frees the bucket array (not the nodes). */
void seqwin_table_free(struct seqwin_table *t);

#endif

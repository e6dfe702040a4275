/* UNICAST3's seqno windows and peer table: pure data structures, no I/O and no time. */
#include "protocols/unicast3_window.h"

#include <stdlib.h>

#include <raftstack/errors.h>

#define SEND_INITIAL_CAP 64
#define RECV_INITIAL_CAP 16
#define TABLE_INITIAL_BUCKETS 16

/* The slot marker of an OOB message already passed up. */
static char delivered_marker;
#define U3_DELIVERED ((void *)&delivered_marker)

static size_t pow2_at_least(size_t n) {
  size_t c = 1;
  while (c < n)
    c <<= 1;
  return c;
}

/* --- send window ----------------------------------------------------------------------------- */

void u3_sendwin_init(struct u3_send_window *w) {
  w->ring = NULL;
  w->cap = 0;
  w->low = w->next = 1;
}

/* Moves [low, next) into a ring of new_cap slots (a power of two that holds them all). */
static int sendwin_resize(struct u3_send_window *w, size_t new_cap) {
  struct rs_msg **ring = calloc(new_cap, sizeof(*ring));
  if (!ring) return RS_ENOMEM;
  for (uint64_t s = w->low; s < w->next; s++)
    ring[s & (new_cap - 1)] = w->ring[s & (w->cap - 1)];
  free(w->ring);
  w->ring = ring;
  w->cap = new_cap;
  return 0;
}

int u3_sendwin_push(struct u3_send_window *w, struct rs_msg *m) {
  size_t n = u3_sendwin_count(w);
  if (n == w->cap) {
    int rc = sendwin_resize(w, w->cap ? w->cap * 2 : SEND_INITIAL_CAP);
    if (rc) return rc;
  }
  w->ring[w->next & (w->cap - 1)] = m;
  w->next++;
  return 0;
}

struct rs_msg *u3_sendwin_get(const struct u3_send_window *w, uint64_t seqno) {
  if (seqno < w->low || seqno >= w->next) return NULL;
  return w->ring[seqno & (w->cap - 1)];
}

size_t u3_sendwin_ack(struct u3_send_window *w, uint64_t seqno) {
  size_t freed = 0;
  while (w->low <= seqno && w->low < w->next) {
    struct rs_msg **slot = &w->ring[w->low & (w->cap - 1)];
    rs_msg_free(*slot);
    *slot = NULL;
    w->low++;
    freed++;
  }
  /* A burst made the ring large: give the memory back once everything is acked. */
  if (w->low == w->next && w->cap > SEND_INITIAL_CAP * 16) {
    free(w->ring);
    w->ring = NULL;
    w->cap = 0;
  }
  return freed;
}

void u3_sendwin_free(struct u3_send_window *w) {
  u3_sendwin_ack(w, w->next - 1);
  free(w->ring);
  w->ring = NULL;
  w->cap = 0;
}

/* --- receive window -------------------------------------------------------------------------- */

void u3_recvwin_init(struct u3_recv_window *w, uint64_t first, size_t max_msgs, size_t max_bytes) {
  w->ring = NULL;
  w->cap = 0;
  w->next = first;
  w->max_msgs = max_msgs ? max_msgs : 1;
  w->held = 0;
  w->bytes = 0;
  w->max_bytes = max_bytes;
}

/* Grows the ring so that seqno fits (seqno - next < max_msgs, so at most pow2(max_msgs)). */
static int recvwin_grow(struct u3_recv_window *w, uint64_t seqno) {
  size_t need = pow2_at_least((size_t)(seqno - w->next) + 1);
  size_t new_cap = w->cap ? w->cap : RECV_INITIAL_CAP;
  while (new_cap < need)
    new_cap <<= 1;
  void **ring = calloc(new_cap, sizeof(*ring));
  if (!ring) return RS_ENOMEM;
  for (size_t i = 0; i < w->cap; i++) {
    uint64_t s = w->next + i;
    ring[s & (new_cap - 1)] = w->ring[s & (w->cap - 1)];
  }
  free(w->ring);
  w->ring = ring;
  w->cap = new_cap;
  return 0;
}

enum u3_add_result u3_recvwin_add(struct u3_recv_window *w, uint64_t seqno, struct rs_msg *m,
                                  bool oob) {
  if (seqno < w->next) return U3_DUPLICATE;
  if (seqno - w->next >= w->max_msgs) return U3_FULL;
  if (u3_recvwin_has(w, seqno)) return U3_DUPLICATE;
  /* The next message in line is always taken, whatever its size: it leaves at once, so a
   * message bigger than max_bytes cannot stall the connection. */
  if (!oob && seqno != w->next && w->bytes + m->len > w->max_bytes) return U3_FULL;
  if (seqno - w->next >= w->cap && recvwin_grow(w, seqno) != 0) return U3_NOMEM;
  w->ring[seqno & (w->cap - 1)] = oob ? U3_DELIVERED : m;
  w->held++;
  if (oob) return U3_DELIVER;
  w->bytes += m->len;
  return U3_ADDED;
}

struct rs_msg *u3_recvwin_remove(struct u3_recv_window *w) {
  while (w->cap) {
    void **slot = &w->ring[w->next & (w->cap - 1)];
    void *v = *slot;
    if (!v) return NULL;
    *slot = NULL;
    w->held--;
    w->next++;
    if (v == U3_DELIVERED) continue;
    struct rs_msg *m = v;
    w->bytes -= m->len;
    return m;
  }
  return NULL;
}

void u3_recvwin_free(struct u3_recv_window *w) {
  for (size_t i = 0; i < w->cap; i++)
    if (w->ring[i] && w->ring[i] != U3_DELIVERED) rs_msg_free(w->ring[i]);
  free(w->ring);
  w->ring = NULL;
  w->cap = 0;
  w->held = 0;
  w->bytes = 0;
}

size_t u3_recvwin_missing(const struct u3_recv_window *w, uint64_t lo, uint64_t hi,
                          struct u3_range *out, size_t cap, uint64_t *covered) {
  size_t n = 0;
  uint64_t end = u3_recvwin_end(w);
  if (lo < w->next) lo = w->next;
  if (hi > end) hi = end;
  *covered = hi;
  for (uint64_t s = lo; s <= hi; s++) {
    if (u3_recvwin_has(w, s)) continue;
    if (n && out[n - 1].last == s - 1) {
      out[n - 1].last = s;
      continue;
    }
    if (n == cap) {
      *covered = s - 1;
      break;
    }
    out[n].first = out[n].last = s;
    n++;
  }
  return n;
}

/* --- peer table ------------------------------------------------------------------------------ */

static size_t bucket_of(const struct rs_addr *a, size_t n_buckets) {
  uint64_t h = a->hi * 0x9e3779b97f4a7c15ull ^ a->lo;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)h & (n_buckets - 1);
}

void u3_table_init(struct u3_table *t) {
  t->buckets = NULL;
  t->n_buckets = 0;
  t->n = 0;
}

struct u3_node *u3_table_find(const struct u3_table *t, const struct rs_addr *addr) {
  if (!t->n_buckets) return NULL;
  for (struct u3_node *n = t->buckets[bucket_of(addr, t->n_buckets)]; n; n = n->next)
    if (rs_addr_eq(&n->addr, addr)) return n;
  return NULL;
}

static int table_rehash(struct u3_table *t, size_t n_buckets) {
  struct u3_node **b = calloc(n_buckets, sizeof(*b));
  if (!b) return RS_ENOMEM;
  for (size_t i = 0; i < t->n_buckets; i++)
    for (struct u3_node *n = t->buckets[i], *next; n; n = next) {
      next = n->next;
      size_t k = bucket_of(&n->addr, n_buckets);
      n->next = b[k];
      b[k] = n;
    }
  free(t->buckets);
  t->buckets = b;
  t->n_buckets = n_buckets;
  return 0;
}

int u3_table_add(struct u3_table *t, struct u3_node *n) {
  if (t->n >= t->n_buckets) {
    int rc = table_rehash(t, t->n_buckets ? t->n_buckets * 2 : TABLE_INITIAL_BUCKETS);
    if (rc && !t->n_buckets) return rc; /* a full table still works, only slower */
  }
  size_t k = bucket_of(&n->addr, t->n_buckets);
  n->next = t->buckets[k];
  t->buckets[k] = n;
  t->n++;
  return 0;
}

void u3_table_remove(struct u3_table *t, struct u3_node *n) {
  if (!t->n_buckets) return;
  for (struct u3_node **pp = &t->buckets[bucket_of(&n->addr, t->n_buckets)]; *pp; pp = &(*pp)->next)
    if (*pp == n) {
      *pp = n->next;
      n->next = NULL;
      t->n--;
      return;
    }
}

void u3_table_each(struct u3_table *t, void (*fn)(struct u3_node *n, void *arg), void *arg) {
  for (size_t i = 0; i < t->n_buckets; i++)
    for (struct u3_node *n = t->buckets[i], *next; n; n = next) {
      next = n->next;
      fn(n, arg);
    }
}

void u3_table_free(struct u3_table *t) {
  free(t->buckets);
  u3_table_init(t);
}

/* Seqno windows and peer tables for the reliable protocols: pure data structures. */
#include "protocols/seqno_window.h"

#include <stdlib.h>

#include <raftstack/errors.h>

#define SEND_INITIAL_CAP 64
#define RECV_INITIAL_CAP 16
#define TABLE_INITIAL_BUCKETS 16

/* The slot marker of a seqno already passed up (an OOB message, or one skipped). */
static char delivered_marker;
#define DELIVERED ((void *)&delivered_marker)

static size_t pow2_at_least(size_t n) {
  size_t c = 1;
  while (c < n)
    c <<= 1;
  return c;
}

/* --- send window ----------------------------------------------------------------------------- */

void seqwin_send_init(struct seqwin_send *w) {
  w->ring = NULL;
  w->cap = 0;
  w->low = w->next = 1;
  w->bytes = 0;
}

/* Moves [low, next) into a ring of new_cap slots (a power of two that holds them all). */
static int send_resize(struct seqwin_send *w, size_t new_cap) {
  struct rs_msg **ring = calloc(new_cap, sizeof(*ring));
  if (!ring) return RS_ENOMEM;
  for (uint64_t s = w->low; s < w->next; s++)
    ring[s & (new_cap - 1)] = w->ring[s & (w->cap - 1)];
  free(w->ring);
  w->ring = ring;
  w->cap = new_cap;
  return 0;
}

int seqwin_send_push(struct seqwin_send *w, struct rs_msg *m) {
  if (seqwin_send_count(w) == w->cap) {
    int rc = send_resize(w, w->cap ? w->cap * 2 : SEND_INITIAL_CAP);
    if (rc) return rc;
  }
  w->ring[w->next & (w->cap - 1)] = m;
  w->next++;
  w->bytes += m->len;
  return 0;
}

struct rs_msg *seqwin_send_get(const struct seqwin_send *w, uint64_t seqno) {
  if (seqno < w->low || seqno >= w->next) return NULL;
  return w->ring[seqno & (w->cap - 1)];
}

size_t seqwin_send_purge(struct seqwin_send *w, uint64_t seqno) {
  size_t freed = 0;
  while (w->low <= seqno && w->low < w->next) {
    struct rs_msg **slot = &w->ring[w->low & (w->cap - 1)];
    w->bytes -= (*slot)->len;
    rs_msg_free(*slot);
    *slot = NULL;
    w->low++;
    freed++;
  }
  /* A burst made the ring large: give memory back as it drains (a quarter full halves it, so
   * a window that hovers around a size does not resize back and forth). */
  size_t n = seqwin_send_count(w);
  if (n == 0 && w->cap > SEND_INITIAL_CAP) {
    free(w->ring);
    w->ring = NULL;
    w->cap = 0;
  } else if (w->cap > SEND_INITIAL_CAP && n < w->cap / 4) {
    send_resize(w, w->cap / 2); /* on ENOMEM the ring just stays as large as it was */
  }
  return freed;
}

void seqwin_send_free(struct seqwin_send *w) {
  seqwin_send_purge(w, w->next - 1);
  free(w->ring);
  w->ring = NULL;
  w->cap = 0;
}

/* --- receive window -------------------------------------------------------------------------- */

void seqwin_recv_init(struct seqwin_recv *w, uint64_t first, size_t max_msgs, size_t max_bytes) {
  w->ring = NULL;
  w->cap = 0;
  w->next = first;
  w->max_msgs = max_msgs ? max_msgs : 1;
  w->held = 0;
  w->bytes = 0;
  w->max_bytes = max_bytes;
}

/* Grows the ring so that seqno fits (seqno - next < max_msgs, so at most pow2(max_msgs)). */
static int recv_grow(struct seqwin_recv *w, uint64_t seqno) {
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

/* Checks that seqno may take a slot; a regular message also needs room for its bytes. */
static enum seqwin_add_result recv_admit(struct seqwin_recv *w, uint64_t seqno, bool regular,
                                         size_t bytes) {
  if (seqno < w->next) return SEQWIN_DUPLICATE;
  if (seqno - w->next >= w->max_msgs) return SEQWIN_FULL;
  if (seqwin_recv_has(w, seqno)) return SEQWIN_DUPLICATE;
  /* The next message in line is always taken, whatever its size: it leaves at once, so a
   * message bigger than max_bytes cannot stall the sender's stream. */
  if (regular && seqno != w->next && w->bytes + bytes > w->max_bytes) return SEQWIN_FULL;
  if (seqno - w->next >= w->cap && recv_grow(w, seqno) != 0) return SEQWIN_NOMEM;
  return SEQWIN_ADDED;
}

enum seqwin_add_result seqwin_recv_add(struct seqwin_recv *w, uint64_t seqno, struct rs_msg *m,
                                       bool oob) {
  enum seqwin_add_result r = recv_admit(w, seqno, !oob, m->len);
  if (r != SEQWIN_ADDED) return r;
  w->ring[seqno & (w->cap - 1)] = oob ? DELIVERED : m;
  w->held++;
  if (oob) return SEQWIN_DELIVER;
  w->bytes += m->len;
  return SEQWIN_ADDED;
}

enum seqwin_add_result seqwin_recv_skip(struct seqwin_recv *w, uint64_t seqno) {
  enum seqwin_add_result r = recv_admit(w, seqno, false, 0);
  if (r != SEQWIN_ADDED) return r;
  w->ring[seqno & (w->cap - 1)] = DELIVERED;
  w->held++;
  return SEQWIN_DELIVER;
}

struct rs_msg *seqwin_recv_remove(struct seqwin_recv *w) {
  while (w->cap) {
    void **slot = &w->ring[w->next & (w->cap - 1)];
    void *v = *slot;
    if (!v) return NULL;
    *slot = NULL;
    w->held--;
    w->next++;
    if (!w->held && w->cap > RECV_INITIAL_CAP * 64) {
      /* Drained after a burst: the ring is regrown lazily when needed again. */
      free(w->ring);
      w->ring = NULL;
      w->cap = 0;
    }
    if (v == DELIVERED) continue;
    struct rs_msg *m = v;
    w->bytes -= m->len;
    return m;
  }
  return NULL;
}

void seqwin_recv_free(struct seqwin_recv *w) {
  for (size_t i = 0; i < w->cap; i++)
    if (w->ring[i] && w->ring[i] != DELIVERED) rs_msg_free(w->ring[i]);
  free(w->ring);
  w->ring = NULL;
  w->cap = 0;
  w->held = 0;
  w->bytes = 0;
}

size_t seqwin_recv_missing(const struct seqwin_recv *w, uint64_t lo, uint64_t hi,
                           struct seqwin_range *out, size_t cap, uint64_t max_seqnos,
                           uint64_t *covered) {
  size_t n = 0;
  uint64_t count = 0, end = seqwin_recv_end(w);
  if (lo < w->next) lo = w->next;
  if (hi > end) hi = end;
  *covered = hi;
  for (uint64_t s = lo; s <= hi; s++) {
    if (seqwin_recv_has(w, s)) continue;
    if (max_seqnos && count == max_seqnos) {
      *covered = s - 1;
      break;
    }
    count++;
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

/* --- ranges on the wire ---------------------------------------------------------------------- */

void seqwin_put_ranges(struct rs_writer *w, const struct seqwin_range *r, size_t n) {
  put_varint(w, n);
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    put_varint(w, i ? r[i].first - prev - 1 : r[i].first);
    put_varint(w, r[i].last - r[i].first);
    prev = r[i].last;
  }
}

size_t seqwin_ranges_wire_size(const struct seqwin_range *r, size_t n) {
  size_t len = varint_size(n);
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    len +=
        varint_size(i ? r[i].first - prev - 1 : r[i].first) + varint_size(r[i].last - r[i].first);
    prev = r[i].last;
  }
  return len;
}

int seqwin_ranges_each(const uint8_t *p, size_t len,
                       bool (*fn)(void *arg, uint64_t first, uint64_t last), void *arg) {
  struct rs_reader r;
  reader_init(&r, p, len);
  uint64_t n = get_varint(&r);
  if (!r.err && n > reader_remaining(&r) / 2) return RS_EMALFORMED;
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n && !r.err; i++) {
    uint64_t skip = get_varint(&r), extra = get_varint(&r);
    uint64_t base = i ? prev + 1 : 0;
    if (r.err || skip > SEQWIN_SEQNO_MAX - base || extra > SEQWIN_SEQNO_MAX - (base + skip))
      return RS_EMALFORMED;
    uint64_t first = base + skip;
    prev = first + extra;
    if (!fn(arg, first, prev)) return 0;
  }
  return r.err ? RS_EMALFORMED : 0;
}

/* --- peer table ------------------------------------------------------------------------------ */

static size_t bucket_of(const struct rs_addr *a, size_t n_buckets) {
  uint64_t h = a->hi * 0x9e3779b97f4a7c15ull ^ a->lo;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)h & (n_buckets - 1);
}

void seqwin_table_init(struct seqwin_table *t) {
  t->buckets = NULL;
  t->n_buckets = 0;
  t->n = 0;
}

struct seqwin_node *seqwin_table_find(const struct seqwin_table *t, const struct rs_addr *addr) {
  if (!t->n_buckets) return NULL;
  for (struct seqwin_node *n = t->buckets[bucket_of(addr, t->n_buckets)]; n; n = n->next)
    if (rs_addr_eq(&n->addr, addr)) return n;
  return NULL;
}

static int table_rehash(struct seqwin_table *t, size_t n_buckets) {
  struct seqwin_node **b = calloc(n_buckets, sizeof(*b));
  if (!b) return RS_ENOMEM;
  for (size_t i = 0; i < t->n_buckets; i++)
    for (struct seqwin_node *n = t->buckets[i], *next; n; n = next) {
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

int seqwin_table_add(struct seqwin_table *t, struct seqwin_node *n) {
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

void seqwin_table_remove(struct seqwin_table *t, struct seqwin_node *n) {
  if (!t->n_buckets) return;
  for (struct seqwin_node **pp = &t->buckets[bucket_of(&n->addr, t->n_buckets)]; *pp;
       pp = &(*pp)->next)
    if (*pp == n) {
      *pp = n->next;
      n->next = NULL;
      t->n--;
      return;
    }
}

void seqwin_table_each(struct seqwin_table *t, void (*fn)(struct seqwin_node *n, void *arg),
                       void *arg) {
  for (size_t i = 0; i < t->n_buckets; i++)
    for (struct seqwin_node *n = t->buckets[i], *next; n; n = next) {
      next = n->next;
      fn(n, arg);
    }
}

void seqwin_table_free(struct seqwin_table *t) {
  free(t->buckets);
  seqwin_table_init(t);
}

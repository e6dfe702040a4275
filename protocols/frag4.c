/* FRAG4: splits messages larger than frag_size and reassembles them (also FRAG2 and FRAG3). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/stack.h"
#include "transport/tp.h"

/*
 * Sending (as JGroups' FRAG2/FRAG4): a message whose payload is longer than frag_size is cut into
 * ceil(len / frag_size) ranges of its buffer. No payload byte is copied: every fragment is a new
 * message referencing a slice of the original refcounted buffer, and the original message itself
 * becomes fragment 0. So, as in JGroups, only fragment 0 carries the original's headers (those of
 * the protocols above FRAG4); every fragment carries the original's flags, because the protocols
 * below (NAKACK2's OOB delivery, UFC/MFC's NO_FC, ...) act on each fragment. Headers added below
 * FRAG4 are added to and consumed from each fragment by their own protocols.
 *
 * Receiving (as JGroups' FRAG3): the first fragment of a message to arrive, whichever its index,
 * allocates one buffer of the original length, and each fragment is copied to its offset; when
 * all have arrived, fragment 0 (kept without its payload) gets the buffer and goes up as the
 * original message, with its headers and flags. Fragments of many messages of many senders may
 * interleave and arrive in any order. Like JGroups, FRAG4 needs NAKACK2/UNICAST3 below for
 * reliability (not for ordering); unlike JGroups, an incomplete message is discarded after
 * reassembly_timeout without a new fragment, and what is held is bounded per sender and in all.
 *
 * The layout is fixed so the receiver can check every fragment without trusting it: with S the
 * sender's fragment size, fragment i covers [i*S, min((i+1)*S, total)), count = ceil(total / S),
 * so fragments never overlap and together cover the whole message exactly. The receiver learns S
 * from any fragment (a fragment that is not the last is S long; the last one starts at index*S)
 * and every fragment of the message must agree with it.
 *
 * Header (protocol id 69, inside the message's length-prefixed header; docs/wire-format.md):
 *
 *   +-------------+----------------+----------------+----------------+-----------------+
 *   | id (varint) | index (varint) | count (varint) | total (varint) | offset (varint) |
 *   +-------------+----------------+----------------+----------------+-----------------+
 *   id: the message's number, per sender; index < count <= 2^32-1; total: the original payload
 *   length; offset: where this fragment's bytes start in it.
 */

#define FRAG4_ID 69
#define BAD_INPUT_LOG_INTERVAL RS_SEC

/* ---------------------------------------------------------------------------------------------
 * The header.
 */
struct frag4_hdr {
  uint64_t id;
  uint64_t total;
  uint64_t offset;
  uint32_t index;
  uint32_t count;
};

static size_t hdr_wire_size(const void *v) {
  const struct frag4_hdr *h = v;
  return varint_size(h->id) + varint_size(h->index) + varint_size(h->count) +
         varint_size(h->total) + varint_size(h->offset);
}

static void hdr_write(const void *v, struct rs_writer *w) {
  const struct frag4_hdr *h = v;
  put_varint(w, h->id);
  put_varint(w, h->index);
  put_varint(w, h->count);
  put_varint(w, h->total);
  put_varint(w, h->offset);
}

static uint32_t get_u32_varint(struct rs_reader *r) {
  uint64_t v = get_varint(r);
  if (v > UINT32_MAX) reader_fail(r, RS_EMALFORMED);
  return (uint32_t)v;
}

/* Only the syntax is checked here; whether the numbers make sense is decided by FRAG4 itself,
 * which counts each kind of bad fragment. The struct holds no pointers: always freeable. */
static void hdr_read(void *v, struct rs_reader *r) {
  struct frag4_hdr *h = v;
  h->id = get_varint(r);
  h->index = get_u32_varint(r);
  h->count = get_u32_varint(r);
  h->total = get_varint(r);
  h->offset = get_varint(r);
}

static int hdr_print(const void *v, char *buf, size_t len) {
  const struct frag4_hdr *h = v;
  return snprintf(buf, len,
                  "id=%" PRIu64 " frag=%" PRIu32 "/%" PRIu32 " offset=%" PRIu64 " total=%" PRIu64,
                  h->id, h->index, h->count, h->offset, h->total);
}

static const struct rs_header_type frag4_header = {
    .id = FRAG4_ID,
    .name = "FRAG4",
    .size = sizeof(struct frag4_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State: incomplete messages keyed by (sender, id), what each sender holds, and a list of the
 * incomplete messages by last activity for the reassembly timeout.
 */
struct hnode {
  struct hnode *next;
  uint64_t hash;
};

/* Chained hash table of intrusive nodes; the bucket count is a power of two. */
struct htable {
  struct hnode **slots;
  size_t cap, n;
};

struct sender {
  struct hnode node;
  struct rs_addr addr;
  uint64_t held; /* bytes charged for its incomplete messages */
  size_t n_entries;
};

struct entry {
  struct hnode node;
  struct sender *s;
  struct entry *prev, *next; /* by last activity, oldest first */
  uint64_t id, total, frag_len;
  uint32_t count, received;
  uint64_t charge; /* bytes charged: payload and bookkeeping */
  rs_time last;    /* when its last fragment arrived */
  struct rs_buf *buf;
  struct rs_msg *first; /* fragment 0 without payload: the original's headers and flags */
  uint8_t have[];       /* one bit per fragment */
};

struct frag4_stats {
  uint64_t fragmented, frags_sent, send_failed;
  uint64_t frags_received, reassembled, duplicates, expired;
  uint64_t dropped_inconsistent, dropped_too_big, dropped_over_limit, dropped_nomem;
};

struct frag4 {
  struct rs_protocol base;
  uint64_t frag_size;
  uint64_t max_reassembly_size;  /* per sender */
  uint64_t max_reassembly_total; /* all senders */
  rs_time reassembly_timeout;

  uint64_t next_id;
  uint64_t seed; /* keys the hash, so a sender cannot aim at one bucket */
  struct htable entries, senders;
  struct entry *oldest, *newest;
  uint64_t held;
  struct rs_timer reaper;
  struct rs_ratelimit rl_bad;
  struct frag4_stats st;
};

#define F(p) ((struct frag4 *)(p))

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t key_hash(const struct frag4 *f, const struct rs_addr *a, uint64_t id) {
  return mix(mix(mix(f->seed ^ a->hi) ^ a->lo) ^ id);
}

static int ht_grow(struct htable *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  struct hnode **slots = calloc(cap, sizeof(*slots));
  if (!slots) return RS_ENOMEM;
  for (size_t i = 0; i < t->cap; i++)
    for (struct hnode *x = t->slots[i], *next; x; x = next) {
      next = x->next;
      x->next = slots[x->hash & (cap - 1)];
      slots[x->hash & (cap - 1)] = x;
    }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return 0;
}

static int ht_insert(struct htable *t, struct hnode *x) {
  if (t->n >= t->cap && ht_grow(t) != 0) return RS_ENOMEM;
  struct hnode **slot = &t->slots[x->hash & (t->cap - 1)];
  x->next = *slot;
  *slot = x;
  t->n++;
  return 0;
}

static void ht_remove(struct htable *t, struct hnode *x) {
  for (struct hnode **pp = &t->slots[x->hash & (t->cap - 1)]; *pp; pp = &(*pp)->next)
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  if (--t->n == 0) { /* a burst (or an attack) must not pin its peak table size */
    free(t->slots);
    t->slots = NULL;
    t->cap = 0;
  }
}

static struct hnode *ht_first(const struct htable *t, uint64_t hash) {
  return t->cap ? t->slots[hash & (t->cap - 1)] : NULL;
}

static struct sender *sender_find(struct frag4 *f, const struct rs_addr *a) {
  uint64_t h = key_hash(f, a, 0);
  for (struct hnode *x = ht_first(&f->senders, h); x; x = x->next) {
    struct sender *s = (struct sender *)x;
    if (x->hash == h && rs_addr_eq(&s->addr, a)) return s;
  }
  return NULL;
}

static struct sender *sender_get(struct frag4 *f, const struct rs_addr *a) {
  struct sender *s = sender_find(f, a);
  if (s) return s;
  s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->addr = *a;
  s->node.hash = key_hash(f, a, 0);
  if (ht_insert(&f->senders, &s->node) != 0) {
    free(s);
    return NULL;
  }
  return s;
}

static void sender_release_if_idle(struct frag4 *f, struct sender *s) {
  if (s->n_entries) return;
  ht_remove(&f->senders, &s->node);
  free(s);
}

static struct entry *entry_find(struct frag4 *f, const struct rs_addr *a, uint64_t id) {
  uint64_t h = key_hash(f, a, id);
  for (struct hnode *x = ht_first(&f->entries, h); x; x = x->next) {
    struct entry *e = (struct entry *)x;
    if (x->hash == h && e->id == id && rs_addr_eq(&e->s->addr, a)) return e;
  }
  return NULL;
}

static void lru_unlink(struct frag4 *f, struct entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    f->oldest = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    f->newest = e->prev;
  e->prev = e->next = NULL;
}

static void lru_append(struct frag4 *f, struct entry *e) {
  e->prev = f->newest;
  e->next = NULL;
  if (f->newest)
    f->newest->next = e;
  else
    f->oldest = e;
  f->newest = e;
}

/* Forgets an incomplete (or just completed) message and releases what it held. */
static void entry_free(struct frag4 *f, struct entry *e) {
  ht_remove(&f->entries, &e->node);
  lru_unlink(f, e);
  e->s->held -= e->charge;
  e->s->n_entries--;
  f->held -= e->charge;
  sender_release_if_idle(f, e->s);
  rs_buf_unref(e->buf);
  rs_msg_free(e->first);
  free(e);
}

static void free_all(struct frag4 *f) {
  while (f->oldest)
    entry_free(f, f->oldest);
}

/* ---------------------------------------------------------------------------------------------
 * Down: fragmentation.
 */

/* Fragments 1..count-1 of m, each a slice of m's buffer, linked through ->next. */
static struct rs_msg *make_tail_fragments(const struct rs_msg *m, const struct frag4_hdr *proto,
                                          size_t frag_size) {
  struct rs_msg *head = NULL, **tail = &head;
  size_t base = (size_t)(m->data - m->buf->data);
  for (uint32_t i = 1; i < proto->count; i++) {
    size_t off = (size_t)i * frag_size;
    size_t len = m->len - off < frag_size ? m->len - off : frag_size;
    struct rs_msg *fr = rs_msg_new_slice(m->buf, base + off, len);
    if (!fr) goto err_after_fragments;
    fr->dest = m->dest;
    fr->src = m->src;
    fr->flags = m->flags;
    fr->tflags = m->tflags;
    struct frag4_hdr *h = rs_msg_put_header(fr, &frag4_header); /* a new message has room */
    *h = *proto;
    h->index = i;
    h->offset = off;
    *tail = fr;
    tail = &fr->next;
  }
  return head;
err_after_fragments:
  while (head) {
    struct rs_msg *next = head->next;
    rs_msg_free(head);
    head = next;
  }
  return NULL;
}

/* Sends fragment 0 (m itself) and then the rest, in order; stops at the first refusal. */
static int send_fragments(struct frag4 *f, struct rs_msg *m, struct rs_msg *rest) {
  int rc = proto_down_msg(&f->base, m);
  if (rc == 0) f->st.frags_sent++;
  while (rest) {
    struct rs_msg *fr = rest;
    rest = fr->next;
    fr->next = NULL;
    if (rc != 0) {
      rs_msg_free(fr);
      continue;
    }
    rc = proto_down_msg(&f->base, fr);
    if (rc == 0) f->st.frags_sent++;
  }
  if (rc != 0) f->st.send_failed++;
  return rc;
}

static int fragment(struct frag4 *f, struct rs_msg *m) {
  size_t frag_size = (size_t)f->frag_size;
  uint64_t count = (m->len + frag_size - 1) / frag_size;
  bool room = rs_msg_header(m, FRAG4_ID) || m->n_hdrs < RS_MSG_MAX_HDRS;
  if (count > UINT32_MAX || !room) {
    PLOG(&f->base, ERROR, "cannot fragment a message of %zu bytes with %u headers", m->len,
         (unsigned)m->n_hdrs);
    rs_msg_free(m);
    return RS_ETOOBIG;
  }
  struct frag4_hdr h = {.id = ++f->next_id, .total = m->len, .count = (uint32_t)count};
  struct rs_msg *rest = make_tail_fragments(m, &h, frag_size);
  if (!rest) {
    rs_msg_free(m);
    return RS_ENOMEM;
  }
  /* The original becomes fragment 0: it keeps its headers, flags and buffer reference. */
  m->len = frag_size;
  *(struct frag4_hdr *)rs_msg_put_header(m, &frag4_header) = h;
  f->st.fragmented++;
  return send_fragments(f, m, rest);
}

static int frag4_down_msg(struct rs_protocol *p, struct rs_msg *m) {
  struct frag4 *f = F(p);
  if (m->len <= f->frag_size || !m->buf) return proto_down_msg(p, m);
  return fragment(f, m);
}

/* ---------------------------------------------------------------------------------------------
 * Up: reassembly.
 */
/* Bad input and discarded messages are logged at most once per BAD_INPUT_LOG_INTERVAL (they are
 * always counted). */
static void log_limited(struct frag4 *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_limited(struct frag4 *f, const char *fmt, ...) {
  uint64_t suppressed;
  if (!proto_log_enabled(&f->base, RS_LOG_WARN)) return;
  if (!ratelimit_ok(&f->rl_bad, rs_now(f->base.rt), BAD_INPUT_LOG_INTERVAL, &suppressed)) return;
  char line[512], more[64] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (suppressed)
    snprintf(more, sizeof(more), " (%" PRIu64 " similar lines suppressed)", suppressed);
  PLOG(&f->base, WARN, "%s%s", line, more);
}

static void log_drop(struct frag4 *f, const struct rs_msg *m, const struct frag4_hdr *h,
                     const char *why) {
  char a[RS_ADDR_STRLEN], hs[160];
  hdr_print(h, hs, sizeof(hs));
  log_limited(f, "dropped a fragment from %s (%s, %zu bytes): %s", rs_addr_format(&m->src, a), hs,
              m->len, why);
}

static void drop(struct frag4 *f, struct rs_msg *m, const struct frag4_hdr *h, uint64_t *counter,
                 const char *why) {
  (*counter)++;
  log_drop(f, m, h, why);
  rs_msg_free(m);
}

/* Checks a fragment against the fixed layout and finds S, the sender's fragment size. Returns
 * NULL when consistent, else why not. */
static const char *check_layout(const struct frag4_hdr *h, size_t len, uint64_t *frag_len) {
  if (h->index >= h->count) return "index >= count";
  if (len == 0 || h->total == 0) return "empty fragment";
  if (h->offset > h->total || len > h->total - h->offset) return "fragment beyond the total length";
  uint64_t s;
  if (h->index + 1 < h->count) {
    s = len; /* every fragment but the last is S long and starts at index*S */
    if (h->offset != h->index * s) return "offset does not match index * fragment size";
  } else {
    if (h->index > 0 && h->offset % h->index) return "offset of the last fragment is not index * S";
    s = h->index ? h->offset / h->index : len;
    if (len > s || h->offset + len != h->total) return "last fragment does not end the message";
  }
  if (h->total / s + (h->total % s != 0) != h->count) return "count does not match total length";
  *frag_len = s;
  return NULL;
}

/* In 64 bits: count may be 2^32-1. */
static size_t bitmap_bytes(uint32_t count) { return (size_t)(((uint64_t)count + 7) / 8); }

/* Called once total is known to be at most max_reassembly_size (<= 1 TiB): no overflow. */
static uint64_t entry_charge(const struct frag4_hdr *h) {
  return h->total + sizeof(struct entry) + bitmap_bytes(h->count) + sizeof(struct rs_msg);
}

static void arm_reaper(struct frag4 *f) {
  if (!f->reassembly_timeout || !f->oldest || rs_timer_active(&f->reaper)) return;
  rs_time now = rs_now(f->base.rt), deadline = f->oldest->last + f->reassembly_timeout;
  rs_timer_start(&f->reaper, deadline > now ? deadline - now : 0, 0);
}

/* A new incomplete message, if the sender's and the global budgets allow; else the fragment is
 * dropped and counted, and NULL returned. */
static struct entry *entry_new(struct frag4 *f, struct rs_msg *m, const struct frag4_hdr *h,
                               uint64_t frag_len) {
  uint64_t charge = entry_charge(h);
  struct entry *e = NULL;
  struct sender *s = sender_get(f, &m->src);
  if (!s) goto err_nomem;
  if (s->held + charge > f->max_reassembly_size || f->held + charge > f->max_reassembly_total) {
    sender_release_if_idle(f, s);
    drop(f, m, h, &f->st.dropped_over_limit, "max_reassembly_size or _total reached");
    return NULL;
  }
  e = calloc(1, sizeof(*e) + bitmap_bytes(h->count));
  if (!e) goto err_after_sender;
  e->buf = rs_buf_new((size_t)h->total);
  if (!e->buf) goto err_after_entry;
  e->node.hash = key_hash(f, &m->src, h->id);
  if (ht_insert(&f->entries, &e->node) != 0) goto err_after_buf;
  e->s = s;
  e->id = h->id;
  e->total = h->total;
  e->frag_len = frag_len;
  e->count = h->count;
  e->charge = charge;
  s->held += charge;
  s->n_entries++;
  f->held += charge;
  lru_append(f, e);
  return e;
err_after_buf:
  rs_buf_unref(e->buf);
err_after_entry:
  free(e);
err_after_sender:
  sender_release_if_idle(f, s);
err_nomem:
  drop(f, m, h, &f->st.dropped_nomem, "out of memory");
  return NULL;
}

/* Fragment 0 stays as the template of the reassembled message, without its payload. */
static void keep_first(struct entry *e, struct rs_msg *m) {
  rs_msg_remove_header(m, FRAG4_ID);
  rs_buf_unref(m->buf);
  m->buf = NULL;
  m->data = NULL;
  m->len = 0;
  m->next = NULL;
  e->first = m;
}

static struct rs_msg *complete(struct frag4 *f, struct entry *e) {
  struct rs_msg *m = e->first;
  e->first = NULL;
  m->buf = e->buf;
  m->data = e->buf->data;
  m->len = (size_t)e->total;
  e->buf = NULL;
  entry_free(f, e);
  f->st.reassembled++;
  return m;
}

/* Takes a fragment; returns the whole message when this fragment completed it, else NULL. */
static struct rs_msg *on_fragment(struct frag4 *f, struct rs_msg *m) {
  struct frag4_hdr h = *(const struct frag4_hdr *)rs_msg_header(m, FRAG4_ID);
  uint64_t frag_len;
  f->st.frags_received++;
  const char *why = check_layout(&h, m->len, &frag_len);
  if (why) return drop(f, m, &h, &f->st.dropped_inconsistent, why), NULL;
  if (h.total > f->max_reassembly_size || entry_charge(&h) > f->max_reassembly_size)
    return drop(f, m, &h, &f->st.dropped_too_big, "message larger than max_reassembly_size"), NULL;
  struct entry *e = entry_find(f, &m->src, h.id);
  if (!e && !(e = entry_new(f, m, &h, frag_len))) return NULL;
  if (e->total != h.total || e->count != h.count || e->frag_len != frag_len)
    return drop(f, m, &h, &f->st.dropped_inconsistent, "disagrees with earlier fragments"), NULL;
  uint8_t bit = (uint8_t)(1u << (h.index % 8));
  if (e->have[h.index / 8] & bit) {
    f->st.duplicates++; /* as JGroups: a fragment already held is ignored */
    rs_msg_free(m);
    return NULL;
  }
  memcpy(e->buf->data + h.offset, m->data, m->len);
  e->have[h.index / 8] |= bit;
  e->received++;
  e->last = rs_now(f->base.rt);
  lru_unlink(f, e);
  lru_append(f, e);
  if (h.index == 0)
    keep_first(e, m);
  else
    rs_msg_free(m);
  if (e->received == e->count) return complete(f, e);
  arm_reaper(f);
  return NULL;
}

static void frag4_up_msg(struct rs_protocol *p, struct rs_msg *m) {
  if (rs_msg_header(m, FRAG4_ID)) m = on_fragment(F(p), m);
  if (m) proto_up_msg(p, m);
}

/* As JGroups' FRAG2 does with a batch: fragments are taken out, and a message they complete
 * takes the place of its last fragment. */
static void frag4_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    if (rs_msg_header(m, FRAG4_ID)) m = on_fragment(F(p), m);
    if (m) rs_batch_add(&keep, m);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

/* Discards incomplete messages that saw no fragment for reassembly_timeout. */
static void reap(struct rs_timer *t) {
  struct frag4 *f = (struct frag4 *)((char *)t - offsetof(struct frag4, reaper));
  rs_time now = rs_now(f->base.rt);
  while (f->oldest && now - f->oldest->last >= f->reassembly_timeout) {
    struct entry *e = f->oldest;
    char a[RS_ADDR_STRLEN];
    log_limited(f,
                "discarded message %" PRIu64 " from %s: %" PRIu32 " of %" PRIu32
                " fragments arrived, then none for reassembly_timeout",
                e->id, rs_addr_format(&e->s->addr, a), e->received, e->count);
    f->st.expired++;
    entry_free(f, e);
  }
  arm_reaper(f);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, table.
 */
static struct rs_tp *transport_below(struct rs_protocol *p) {
  struct rs_protocol *bottom = p->stack->bottom;
  return bottom && (bottom->ops->flags & RS_PROTO_TRANSPORT) ? (struct rs_tp *)bottom : NULL;
}

static int frag4_init(struct rs_protocol *p) {
  struct frag4 *f = F(p);
  rs_timer_init(&f->reaper, p->rt, reap);
  f->seed = rs_random(p->rt);
  struct rs_tp *tp = transport_below(p);
  /* JGroups' Fragmentation.init: frag_size has to be < the transport's bundler.max_size. */
  if (tp && f->frag_size >= tp->bundler_max_size)
    return proto_error(p,
                       "frag_size (%" PRIu64 ") must be below the transport's "
                       "bundler.max_size (%" PRIu64 ")",
                       f->frag_size, tp->bundler_max_size);
  if (f->max_reassembly_total < f->max_reassembly_size)
    return proto_error(p,
                       "max_reassembly_total (%" PRIu64 ") must be at least "
                       "max_reassembly_size (%" PRIu64 ")",
                       f->max_reassembly_total, f->max_reassembly_size);
  return 0;
}

/* Incomplete messages do not survive a disconnect: the next connect has a new address. */
static void frag4_stop(struct rs_protocol *p) {
  struct frag4 *f = F(p);
  if (!f->reaper.rt) return; /* init never ran */
  rs_timer_stop(&f->reaper);
  free_all(f);
}

static void frag4_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct frag4 *f = F(p);
  const struct frag4_stats *s = &f->st;
#define LINE(name, v) out->line(out, name, "%llu", (unsigned long long)(v))
  LINE("fragmented", s->fragmented);
  LINE("frags_sent", s->frags_sent);
  LINE("send_failed", s->send_failed);
  LINE("frags_received", s->frags_received);
  LINE("reassembled", s->reassembled);
  LINE("duplicates", s->duplicates);
  LINE("expired", s->expired);
  LINE("dropped_inconsistent", s->dropped_inconsistent);
  LINE("dropped_too_big", s->dropped_too_big);
  LINE("dropped_over_limit", s->dropped_over_limit);
  LINE("dropped_nomem", s->dropped_nomem);
  LINE("incomplete", f->entries.n);
  LINE("bytes_held", f->held);
#undef LINE
}

static const struct rs_attr frag4_attrs[] = {
    {"frag_size", RS_ATTR_SIZE, offsetof(struct frag4, frag_size), "60000", 512, 16777216,
     "messages with a longer payload are sent in fragments of this many bytes; must be below "
     "the transport's bundler.max_size",
     0, NULL},
    {"max_reassembly_size", RS_ATTR_SIZE, offsetof(struct frag4, max_reassembly_size), "64MiB",
     65536, 1099511627776.0,
     "bytes of incomplete messages held per sender (payload plus bookkeeping); also bounds the "
     "largest message that can be received",
     0, NULL},
    {"max_reassembly_total", RS_ATTR_SIZE, offsetof(struct frag4, max_reassembly_total), "256MiB",
     65536, 1099511627776.0, "bytes of incomplete messages held for all senders together", 0, NULL},
    {"reassembly_timeout", RS_ATTR_DURATION, offsetof(struct frag4, reassembly_timeout), "60s", 0,
     86400000,
     "an incomplete message that receives no fragment for this long is discarded and "
     "counted (0: never)",
     0, NULL},
    RS_ATTR_END,
};

static const char *const frag4_aliases[] = {"FRAG2", "FRAG3", NULL};

const struct rs_protocol_ops frag4_protocol = {
    .name = "FRAG4",
    .aliases = frag4_aliases,
    .id = FRAG4_ID,
    .size = sizeof(struct frag4),
    .description = "fragments messages larger than frag_size and reassembles them (also FRAG2, "
                   "FRAG3)",
    .attrs = frag4_attrs,
    .header = &frag4_header,
    .init = frag4_init,
    .stop = frag4_stop,
    .destroy = frag4_stop,
    .down_msg = frag4_down_msg,
    .up_msg = frag4_up_msg,
    .up_batch = frag4_up_batch,
    .stats = frag4_stats,
};

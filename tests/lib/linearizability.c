/* A linearizability checker for register and counter histories (Wing & Gong with Lowe's memo). */
#include "tests/lib/linearizability.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_STEPS 100000000ull

/* One call or return event in the doubly linked list the search walks. */
struct entry {
  size_t op; /* index into the partition's ops */
  bool is_call;
  uint64_t time;
  struct entry *match; /* call <-> return */
  struct entry *prev, *next;
};

/* A memoized configuration: which ops are linearized (bitset) and the model state. */
struct memo {
  uint64_t hash; /* 0: empty slot */
  int64_t state;
  uint64_t *bits;
};

struct search {
  const struct lin_op *const *ops; /* the partition's ops */
  size_t n, words;
  enum lin_model model;
  uint64_t *zobrist; /* a random word per op: the bitset's hash is the XOR over its members */
  struct memo *table;
  size_t cap, used;
  uint64_t **arenas; /* bitset storage, in chunks */
  size_t n_arenas, arena_used, arena_cap;
  uint64_t steps, max_steps;
  /* The deepest point reached, for the explanation. */
  size_t best_depth;
  int64_t best_state;
  size_t best_stuck; /* the op whose return was met with nothing left to try */
};

/* --- the models ------------------------------------------------------------------------------ */

/* Applies op to state: false when the op's observed result is impossible there. */
static bool model_step(enum lin_model m, int64_t state, const struct lin_op *op, int64_t *out) {
  switch (op->kind) {
  case LIN_READ: *out = state; return !op->known || op->result == state;
  case LIN_WRITE: *out = op->arg; return m == LIN_REGISTER;
  case LIN_ADD:
    *out = (int64_t)((uint64_t)state + (uint64_t)op->arg); /* wraps like the counter would */
    return m == LIN_COUNTER && (!op->known || op->result == *out);
  }
  return false;
}

/* --- the memo table (open addressing) -------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static uint64_t memo_hash(uint64_t bits_hash, int64_t state) {
  uint64_t h = mix(bits_hash ^ mix((uint64_t)state + 0x9e3779b97f4a7c15ull));
  return h ? h : 1;
}

static uint64_t *arena_take(struct search *s) {
  if (s->n_arenas == 0 || s->arena_used + s->words > s->arena_cap) {
    size_t cap = s->words * 4096;
    uint64_t **v = realloc(s->arenas, (s->n_arenas + 1) * sizeof(*v));
    if (!v) return NULL;
    s->arenas = v;
    if (!(v[s->n_arenas] = malloc(cap * sizeof(uint64_t)))) return NULL;
    s->n_arenas++;
    s->arena_used = 0;
    s->arena_cap = cap;
  }
  uint64_t *b = s->arenas[s->n_arenas - 1] + s->arena_used;
  s->arena_used += s->words;
  return b;
}

static bool memo_grow(struct search *s) {
  size_t cap = s->cap ? s->cap * 2 : 1024;
  struct memo *t = calloc(cap, sizeof(*t));
  if (!t) return false;
  for (size_t i = 0; i < s->cap; i++) {
    if (!s->table[i].hash) continue;
    size_t j = s->table[i].hash & (cap - 1);
    while (t[j].hash)
      j = (j + 1) & (cap - 1);
    t[j] = s->table[i];
  }
  free(s->table);
  s->table = t;
  s->cap = cap;
  return true;
}

/* Adds the configuration; 1 if new, 0 if seen before, -1 out of memory. */
static int memo_add(struct search *s, const uint64_t *bits, uint64_t bits_hash, int64_t state) {
  if ((s->used + 1) * 2 > s->cap && !memo_grow(s)) return -1;
  uint64_t h = memo_hash(bits_hash, state);
  size_t j = h & (s->cap - 1);
  for (; s->table[j].hash; j = (j + 1) & (s->cap - 1)) {
    struct memo *e = &s->table[j];
    if (e->hash == h && e->state == state &&
        memcmp(e->bits, bits, s->words * sizeof(uint64_t)) == 0)
      return 0;
  }
  uint64_t *copy = arena_take(s);
  if (!copy) return -1;
  memcpy(copy, bits, s->words * sizeof(uint64_t));
  s->table[j] = (struct memo){.hash = h, .state = state, .bits = copy};
  s->used++;
  return 1;
}

static void search_free(struct search *s) {
  for (size_t i = 0; i < s->n_arenas; i++)
    free(s->arenas[i]);
  free(s->arenas);
  free(s->table);
  free(s->zobrist);
}

/* --- the event list -------------------------------------------------------------------------- */

static int entry_cmp(const void *a, const void *b) {
  const struct entry *x = a, *y = b;
  if (x->time != y->time) return x->time < y->time ? -1 : 1;
  /* At equal times calls come first: touching operations count as concurrent, which can only
   * accept more histories, never reject a linearizable one. */
  if (x->is_call != y->is_call) return x->is_call ? -1 : 1;
  return x->op < y->op ? -1 : x->op > y->op;
}

/* Builds the sorted list behind *head; returns the entries array (to free) or NULL. */
static struct entry *build_list(const struct lin_op *const *ops, size_t n, struct entry *head) {
  struct entry *e = malloc(2 * n * sizeof(*e));
  if (!e) return NULL;
  for (size_t i = 0; i < n; i++) {
    e[2 * i] = (struct entry){.op = i, .is_call = true, .time = ops[i]->invoke};
    e[2 * i + 1] = (struct entry){
        .op = i, .is_call = false, .time = ops[i]->known ? ops[i]->complete : UINT64_MAX};
  }
  qsort(e, 2 * n, sizeof(*e), entry_cmp);
  size_t *call_at = malloc(n * sizeof(*call_at));
  if (!call_at) {
    free(e);
    return NULL;
  }
  for (size_t i = 0; i < 2 * n; i++)
    if (e[i].is_call) call_at[e[i].op] = i;
  struct entry *prev = head;
  *head = (struct entry){.is_call = false};
  for (size_t i = 0; i < 2 * n; i++) {
    if (!e[i].is_call) {
      e[i].match = &e[call_at[e[i].op]];
      e[call_at[e[i].op]].match = &e[i];
    }
    e[i].prev = prev;
    prev->next = &e[i];
    prev = &e[i];
  }
  prev->next = NULL;
  free(call_at);
  return e;
}

/* Removes a call and its return from the list (the op is linearized). */
static void lift(struct entry *call) {
  call->prev->next = call->next;
  call->next->prev = call->prev; /* a call always has its return after it */
  struct entry *ret = call->match;
  ret->prev->next = ret->next;
  if (ret->next) ret->next->prev = ret->prev;
}

static void unlift(struct entry *call) {
  struct entry *ret = call->match;
  ret->prev->next = ret;
  if (ret->next) ret->next->prev = ret;
  call->prev->next = call;
  call->next->prev = call;
}

/* --- the search ------------------------------------------------------------------------------ */

struct frame {
  struct entry *call;
  int64_t state;
  int pass;
};

static void note_depth(struct search *s, size_t depth, int64_t state, size_t stuck) {
  if (depth < s->best_depth && s->best_stuck != SIZE_MAX) return;
  s->best_depth = depth;
  s->best_state = state;
  s->best_stuck = stuck;
}

/* Wing & Gong's search: at each point try every pending call that may go next (any call before
 * the first return in the list); meeting a return means the op it belongs to should have been
 * linearized already, so backtrack.
 *
 * The candidates are tried in two passes: ops with a known outcome first, then those with an
 * unknown one. Every candidate is still tried once per configuration, so the verdict is the
 * same, but a linearizable history is found without first applying, at every point, each of
 * the many unknown ops that may never have taken effect. */
static enum lin_result search_run(struct search *s, struct entry *head, int64_t initial,
                                  bool has_unknown) {
  struct frame *stack = malloc((s->n + 1) * sizeof(*stack));
  uint64_t *bits = calloc(s->words ? s->words : 1, sizeof(uint64_t));
  enum lin_result res = LIN_BADARG;
  if (!stack || !bits) goto out;
  size_t depth = 0;
  int64_t state = initial;
  uint64_t bits_hash = 0;
  int pass = 0;
  struct entry *e = head->next;
  while (head->next) {
    if (++s->steps > s->max_steps) {
      res = LIN_BUDGET;
      goto out;
    }
    if (e->is_call) {
      int64_t next;
      const struct lin_op *op = s->ops[e->op];
      if (op->known == (pass == 0) && model_step(s->model, state, op, &next)) {
        bits[e->op / 64] |= 1ull << (e->op % 64);
        int added = memo_add(s, bits, bits_hash ^ s->zobrist[e->op], next);
        if (added < 0) goto out;
        if (added) {
          stack[depth++] = (struct frame){.call = e, .state = state, .pass = pass};
          state = next;
          bits_hash ^= s->zobrist[e->op];
          lift(e);
          e = head->next;
          pass = 0;
          continue;
        }
        bits[e->op / 64] &= ~(1ull << (e->op % 64));
      }
      e = e->next;
      continue;
    }
    if (pass == 0 && has_unknown) {
      pass = 1;
      e = head->next;
      continue;
    }
    note_depth(s, depth, state, e->op);
    if (depth == 0) {
      res = LIN_FAIL;
      goto out;
    }
    struct frame f = stack[--depth];
    state = f.state;
    bits[f.call->op / 64] &= ~(1ull << (f.call->op % 64));
    bits_hash ^= s->zobrist[f.call->op];
    unlift(f.call);
    e = f.call->next;
    pass = f.pass;
  }
  res = LIN_OK;
out:
  free(stack);
  free(bits);
  return res;
}

/* --- explanations ---------------------------------------------------------------------------- */

static const char *kind_name(enum lin_kind k) {
  return k == LIN_WRITE ? "write" : k == LIN_READ ? "read" : "add";
}

int lin_op_format(const struct lin_op *op, char *buf, size_t len) {
  char arg[32] = "", res[32] = "", end[32] = "?";
  if (op->kind != LIN_READ) snprintf(arg, sizeof(arg), "%" PRId64, op->arg);
  if (op->kind != LIN_WRITE) snprintf(res, sizeof(res), "->%s", op->known ? "" : "?");
  if (op->kind != LIN_WRITE && op->known) snprintf(res, sizeof(res), "->%" PRId64, op->result);
  if (op->known) snprintf(end, sizeof(end), "%" PRIu64, op->complete);
  return snprintf(buf, len, "c%" PRIu32 " %s(%s)%s [%" PRIu64 ",%s]", op->client,
                  kind_name(op->kind), arg, res, op->invoke, end);
}

/* The op that could not be linearized, and the ops that overlap it (at most 6). */
static void explain(const struct search *s, uint64_t key, char *why, size_t len) {
  if (!why || !len) return;
  const struct lin_op *stuck = s->ops[s->best_stuck];
  char buf[128];
  lin_op_format(stuck, buf, sizeof(buf));
  int w = snprintf(why, len,
                   "key %" PRIu64 ": after %zu ops linearized (state %" PRId64
                   "), %s cannot be linearized; overlapping:",
                   key, s->best_depth, s->best_state, buf);
  size_t shown = 0;
  for (size_t i = 0; i < s->n && shown < 6; i++) {
    const struct lin_op *o = s->ops[i];
    uint64_t o_end = o->known ? o->complete : UINT64_MAX;
    uint64_t s_end = stuck->known ? stuck->complete : UINT64_MAX;
    if (i == s->best_stuck || o->invoke > s_end || o_end < stuck->invoke) continue;
    lin_op_format(o, buf, sizeof(buf));
    if (w >= 0 && (size_t)w < len) w += snprintf(why + w, len - (size_t)w, " %s;", buf);
    shown++;
  }
  if (!shown && w >= 0 && (size_t)w < len) snprintf(why + w, len - (size_t)w, " none");
}

/* --- partitions ------------------------------------------------------------------------------ */

static int by_key(const void *a, const void *b) {
  const struct lin_op *x = *(const struct lin_op *const *)a, *y = *(const struct lin_op *const *)b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x < y ? -1 : x > y;
}

static int by_value(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Register: an unknown write whose value no read returned can be assumed never applied. Any
 * linearization that applies it stays valid without it (no read between it and the next write
 * returned its value), and each such write would double the configurations a failing search
 * must visit. Compacts ops in place; returns the new count. */
static size_t drop_unread_writes(const struct lin_op **ops, size_t n) {
  int64_t *seen = malloc((n ? n : 1) * sizeof(*seen));
  if (!seen) return n;
  size_t k = 0, m = 0;
  for (size_t i = 0; i < n; i++)
    if (ops[i]->kind == LIN_READ) seen[k++] = ops[i]->result;
  qsort(seen, k, sizeof(*seen), by_value);
  for (size_t i = 0; i < n; i++) {
    const struct lin_op *o = ops[i];
    if (o->kind == LIN_WRITE && !o->known && !bsearch(&o->arg, seen, k, sizeof(*seen), by_value))
      continue;
    ops[m++] = o;
  }
  free(seen);
  return m;
}

static enum lin_result check_partition(const struct lin_op **ops, size_t n,
                                       const struct lin_options *opt, uint64_t *budget, char *why,
                                       size_t whylen, uint64_t *steps) {
  if (opt->model == LIN_REGISTER) n = drop_unread_writes(ops, n);
  if (n == 0) return LIN_OK;
  struct search s = {.ops = ops,
                     .n = n,
                     .words = (n + 63) / 64,
                     .model = opt->model,
                     .max_steps = *budget,
                     .best_stuck = SIZE_MAX};
  struct entry head;
  struct entry *entries = build_list(ops, n, &head);
  s.zobrist = malloc(n * sizeof(uint64_t));
  enum lin_result res = LIN_BADARG;
  if (entries && s.zobrist) {
    uint64_t x = 0x243f6a8885a308d3ull ^ n;
    for (size_t i = 0; i < n; i++)
      s.zobrist[i] = mix(x += 0x9e3779b97f4a7c15ull);
    bool has_unknown = false;
    for (size_t i = 0; i < n; i++)
      has_unknown |= !ops[i]->known;
    res = search_run(&s, &head, opt->initial, has_unknown);
  }
  if (res == LIN_FAIL) explain(&s, ops[0]->key, why, whylen);
  *budget -= s.steps < *budget ? s.steps : *budget;
  if (steps) *steps += s.steps;
  free(entries);
  search_free(&s);
  return res;
}

static bool fits_model(const struct lin_op *op, enum lin_model m) {
  if (op->kind == LIN_READ) return true;
  return op->kind == (m == LIN_REGISTER ? LIN_WRITE : LIN_ADD) &&
         (!op->known || op->complete >= op->invoke);
}

enum lin_result lin_check(const struct lin_op *ops, size_t n, const struct lin_options *opt,
                          char *why, size_t whylen, uint64_t *steps) {
  if (why && whylen) why[0] = '\0';
  if (steps) *steps = 0;
  const struct lin_op **v = malloc((n ? n : 1) * sizeof(*v));
  if (!v) return LIN_BADARG;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!fits_model(&ops[i], opt->model)) {
      free(v);
      if (why) snprintf(why, whylen, "op %zu does not fit the model", i);
      return LIN_BADARG;
    }
    /* A read whose answer never came back constrains nothing. */
    if (ops[i].kind == LIN_READ && !ops[i].known) continue;
    v[m++] = &ops[i];
  }
  qsort(v, m, sizeof(*v), by_key);
  uint64_t budget = opt->max_steps ? opt->max_steps : DEFAULT_MAX_STEPS;
  enum lin_result res = LIN_OK;
  for (size_t i = 0; i < m && res == LIN_OK;) {
    size_t j = i;
    while (j < m && v[j]->key == v[i]->key)
      j++;
    res = check_partition(v + i, j - i, opt, &budget, why, whylen, steps);
    i = j;
  }
  free(v);
  return res;
}

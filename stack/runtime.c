/* The runtime's shared half: the timer heap, deferred tasks and the random source. */
#include "stack/runtime.h"

#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

/* --- xoshiro256** (Blackman & Vigna), seeded through splitmix64 --- */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rs_random(struct rs_runtime *rt) {
  uint64_t *s = rt->rng;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t rs_random_range(struct rs_runtime *rt, uint64_t lo, uint64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = hi - lo + 1;
  if (span == 0) return rs_random(rt); /* the full 64-bit range */
  /* Rejection sampling: no modulo bias. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t v;
  do v = rs_random(rt);
  while (v >= limit);
  return lo + v % span;
}

double rs_random_unit(struct rs_runtime *rt) { return (double)(rs_random(rt) >> 11) * 0x1.0p-53; }

void runtime_base_init(struct rs_runtime *rt, const struct rs_runtime_ops *ops, uint64_t seed) {
  memset(rt, 0, sizeof(*rt));
  rt->ops = ops;
  for (int i = 0; i < 4; i++) rt->rng[i] = splitmix64(&seed);
}

void runtime_base_fini(struct rs_runtime *rt) {
  for (size_t i = 0; i < rt->heap_len; i++) rt->heap[i]->slot = SIZE_MAX;
  free(rt->heap);
  rt->heap = NULL;
  rt->heap_len = rt->heap_cap = 0;
  while (rt->task_head) {
    struct rs_task *t = rt->task_head;
    rt->task_head = t->next;
    t->queued = false;
    t->next = NULL;
  }
  rt->task_tail = NULL;
}

rs_time rs_now(struct rs_runtime *rt) { return rt->ops->now(rt); }
int rs_runtime_call(struct rs_runtime *rt, rs_call_fn fn, void *arg) { return rt->ops->call(rt, fn, arg); }
bool rs_runtime_on_loop(struct rs_runtime *rt) { return rt->ops->on_loop(rt); }
void rs_runtime_destroy(struct rs_runtime *rt) {
  if (rt) rt->ops->destroy(rt);
}

/* --- the timer heap: a binary min-heap on (deadline, seq) --- */
static bool earlier(const struct rs_timer *a, const struct rs_timer *b) {
  return a->deadline != b->deadline ? a->deadline < b->deadline : a->seq < b->seq;
}

static void heap_set(struct rs_runtime *rt, size_t i, struct rs_timer *t) {
  rt->heap[i] = t;
  t->slot = i;
}

static void sift_up(struct rs_runtime *rt, size_t i) {
  struct rs_timer *t = rt->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, rt->heap[parent])) break;
    heap_set(rt, i, rt->heap[parent]);
    i = parent;
  }
  heap_set(rt, i, t);
}

static void sift_down(struct rs_runtime *rt, size_t i) {
  struct rs_timer *t = rt->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= rt->heap_len) break;
    if (c + 1 < rt->heap_len && earlier(rt->heap[c + 1], rt->heap[c])) c++;
    if (!earlier(rt->heap[c], t)) break;
    heap_set(rt, i, rt->heap[c]);
    i = c;
  }
  heap_set(rt, i, t);
}

static void heap_remove(struct rs_runtime *rt, struct rs_timer *t) {
  size_t i = t->slot;
  struct rs_timer *last = rt->heap[--rt->heap_len];
  t->slot = SIZE_MAX;
  if (i == rt->heap_len) return;
  heap_set(rt, i, last);
  sift_down(rt, i);
  sift_up(rt, last->slot);
}

static bool heap_push(struct rs_runtime *rt, struct rs_timer *t) {
  if (rt->heap_len == rt->heap_cap) {
    size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 16;
    struct rs_timer **h = realloc(rt->heap, cap * sizeof(*h));
    if (!h) return false;
    rt->heap = h;
    rt->heap_cap = cap;
  }
  heap_set(rt, rt->heap_len++, t);
  sift_up(rt, t->slot);
  return true;
}

void rs_timer_init(struct rs_timer *t, struct rs_runtime *rt, void (*cb)(struct rs_timer *t)) {
  memset(t, 0, sizeof(*t));
  t->cb = cb;
  t->rt = rt;
  t->slot = SIZE_MAX;
}

void rs_timer_start(struct rs_timer *t, rs_time delay, rs_time period) {
  struct rs_runtime *rt = t->rt;
  bool was_first = rt->heap_len && rt->heap[0] == t;
  if (rs_timer_active(t)) heap_remove(rt, t);
  t->deadline = rt->ops->now(rt) + delay;
  t->period = period;
  t->seq = rt->timer_seq++;
  if (!heap_push(rt, t)) abort(); /* cannot keep a timer promise: fail loudly */
  if (was_first || rt->heap[0] == t) rt->ops->arm(rt);
}

void rs_timer_stop(struct rs_timer *t) {
  if (!rs_timer_active(t)) return;
  struct rs_runtime *rt = t->rt;
  bool was_first = rt->heap[0] == t;
  heap_remove(rt, t);
  if (was_first) rt->ops->arm(rt);
}

rs_time runtime_next_deadline(const struct rs_runtime *rt) {
  return rt->heap_len ? rt->heap[0]->deadline : UINT64_MAX;
}

bool runtime_fire_one_timer(struct rs_runtime *rt, rs_time now) {
  if (!rt->heap_len || rt->heap[0]->deadline > now) return false;
  struct rs_timer *t = rt->heap[0];
  heap_remove(rt, t);
  if (t->period) {
    /* Periodic timers keep their phase: the next deadline follows the previous one, not the
     * moment the callback ran; a loop that fell far behind skips to the next future slot. */
    t->deadline += t->period;
    if (t->deadline <= now) t->deadline = now + t->period;
    t->seq = rt->timer_seq++;
    heap_push(rt, t);
  }
  t->cb(t);
  return true;
}

size_t runtime_fire_timers(struct rs_runtime *rt, rs_time now) {
  size_t n = 0;
  while (runtime_fire_one_timer(rt, now)) n++;
  return n;
}

/* --- tasks --- */
void rs_task_init(struct rs_task *task, void (*cb)(struct rs_task *t)) {
  task->cb = cb;
  task->next = NULL;
  task->queued = false;
}

void rs_post(struct rs_runtime *rt, struct rs_task *task) {
  if (task->queued) return;
  task->queued = true;
  task->next = NULL;
  if (rt->task_tail) rt->task_tail->next = task;
  else rt->task_head = task;
  rt->task_tail = task;
  rt->ops->wake(rt);
}

void rs_task_cancel(struct rs_runtime *rt, struct rs_task *task) {
  if (!task->queued) return;
  struct rs_task **pp = &rt->task_head, *prev = NULL;
  while (*pp && *pp != task) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (!*pp) return;
  *pp = task->next;
  if (rt->task_tail == task) rt->task_tail = prev;
  task->queued = false;
  task->next = NULL;
}

bool runtime_run_one_task(struct rs_runtime *rt) {
  struct rs_task *t = rt->task_head;
  if (!t) return false;
  rt->task_head = t->next;
  if (!rt->task_head) rt->task_tail = NULL;
  t->next = NULL;
  t->queued = false;
  t->cb(t);
  return true;
}

size_t runtime_run_tasks(struct rs_runtime *rt) {
  size_t n = 0;
  while (runtime_run_one_task(rt)) n++;
  return n;
}

/* --- completions --- */
#include <errno.h>
#include <time.h>

#include "stack/sim.h"

void completion_init(struct rs_completion *c) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, &attr);
  pthread_condattr_destroy(&attr);
  c->done = false;
  c->status = 0;
}

void completion_fini(struct rs_completion *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

void completion_done(struct rs_completion *c, int status) {
  pthread_mutex_lock(&c->mu);
  c->status = status;
  c->done = true;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static bool completion_is_done(void *arg) { return ((struct rs_completion *)arg)->done; }

int completion_wait(struct rs_runtime *rt, struct rs_completion *c, rs_time timeout) {
  if (rs_runtime_on_loop(rt)) return RS_EDEADLK;
  if (rt->simulated) {
    if (!rs_sim_run_until(rs_sim_of(rt), completion_is_done, c, timeout)) return RS_ETIMEDOUT;
    return c->status;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (timeout != UINT64_MAX) {
    uint64_t ns = (uint64_t)ts.tv_nsec + timeout % RS_SEC;
    ts.tv_sec += (time_t)(timeout / RS_SEC + ns / RS_SEC);
    ts.tv_nsec = (long)(ns % RS_SEC);
  }
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  while (!c->done && rc != ETIMEDOUT)
    rc = timeout == UINT64_MAX ? pthread_cond_wait(&c->cv, &c->mu)
                               : pthread_cond_timedwait(&c->cv, &c->mu, &ts);
  int status = c->done ? c->status : RS_ETIMEDOUT;
  pthread_mutex_unlock(&c->mu);
  return status;
}

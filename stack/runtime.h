/* The runtime: the only way protocols reach time, timers, deferred calls and randomness. */
#ifndef RS_STACK_RUNTIME_H
#define RS_STACK_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Two implementations share this interface and the timer heap below it:
 *  - runtime_ev.c: a libev loop on a thread of its own (production);
 *  - runtime_sim.c: virtual time, any number of runtimes stepped in one thread from a seed, so a
 *    whole cluster runs deterministically (tests).
 * Protocol code runs on the runtime's loop thread only, holds no locks and never blocks.
 */

struct rs_runtime;

/* Nanoseconds. Monotonic; virtual in the simulation. */
typedef uint64_t rs_time;
#define RS_MS ((rs_time)1000000)
#define RS_SEC ((rs_time)1000000000)

/* A timer lives inside its owner (no allocation). Initialise once, start and stop freely. */
struct rs_timer {
  void (*cb)(struct rs_timer *t);
  struct rs_runtime *rt;
  rs_time deadline;
  rs_time period; /* 0: one-shot */
  uint64_t seq;   /* tie-break: equal deadlines fire in start order */
  size_t slot;    /* position in the heap, SIZE_MAX when idle */
};

/* A deferred call, also embedded in its owner. Runs on the loop thread after the current
 * callback returns and before the loop waits again; tasks run in the order they were posted. */
struct rs_task {
  void (*cb)(struct rs_task *t);
  struct rs_task *next;
  bool queued;
};

/* Thread-safe entry into the loop from any thread: fn(arg) runs on the loop thread. */
typedef void (*rs_call_fn)(void *arg);

/* An I/O watcher on a file descriptor (libev runtime only). */
struct rs_io;
typedef void (*rs_io_fn)(struct rs_io *io, int revents);
enum { RS_IO_READ = 1, RS_IO_WRITE = 2 };
/* The arg given to io_new, for use in the watcher's callback. */
void *rs_io_arg(const struct rs_io *io);

struct rs_runtime_ops {
  rs_time (*now)(struct rs_runtime *rt);
  void (*arm)(struct rs_runtime *rt); /* the earliest timer changed */
  void (*wake)(struct rs_runtime *rt); /* a task was posted */
  int (*call)(struct rs_runtime *rt, rs_call_fn fn, void *arg); /* thread-safe */
  bool (*on_loop)(struct rs_runtime *rt);
  /* I/O: NULL in the simulation. */
  struct rs_io *(*io_new)(struct rs_runtime *rt, int fd, rs_io_fn fn, void *arg);
  void (*io_set)(struct rs_io *io, int events); /* 0 stops watching */
  void (*io_free)(struct rs_io *io);
  void (*destroy)(struct rs_runtime *rt);
};

/* Common state; implementations embed it first. */
struct rs_runtime {
  const struct rs_runtime_ops *ops;
  struct rs_timer **heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  struct rs_task *task_head, *task_tail;
  uint64_t rng[4];  /* xoshiro256** */
  const char *name; /* for traces */
  bool simulated;
};

rs_time rs_now(struct rs_runtime *rt);

void rs_timer_init(struct rs_timer *t, struct rs_runtime *rt, void (*cb)(struct rs_timer *t));
/* Starts (or restarts) the timer to fire after `delay`, then every `period` if non-zero. */
void rs_timer_start(struct rs_timer *t, rs_time delay, rs_time period);
void rs_timer_stop(struct rs_timer *t);
static inline bool rs_timer_active(const struct rs_timer *t) { return t->slot != SIZE_MAX; }

void rs_task_init(struct rs_task *task, void (*cb)(struct rs_task *t));
/* Queues the task unless it is already queued. */
void rs_post(struct rs_runtime *rt, struct rs_task *task);
/* Removes a queued task (e.g. when its owner is destroyed). */
void rs_task_cancel(struct rs_runtime *rt, struct rs_task *task);

/* Runs fn(arg) on the loop thread; callable from any thread. 0 or RS_ESHUTDOWN. */
int rs_runtime_call(struct rs_runtime *rt, rs_call_fn fn, void *arg);
bool rs_runtime_on_loop(struct rs_runtime *rt);

uint64_t rs_random(struct rs_runtime *rt);
/* Uniform in [lo, hi]. */
uint64_t rs_random_range(struct rs_runtime *rt, uint64_t lo, uint64_t hi);
/* Uniform in [0, 1). */
double rs_random_unit(struct rs_runtime *rt);

void rs_runtime_destroy(struct rs_runtime *rt);

/* --- shared by the implementations --- */
void runtime_base_init(struct rs_runtime *rt, const struct rs_runtime_ops *ops, uint64_t seed);
void runtime_base_fini(struct rs_runtime *rt);
/* Deadline of the earliest timer, or UINT64_MAX. */
rs_time runtime_next_deadline(const struct rs_runtime *rt);
/* Fires every timer due at `now`, in deadline order. Returns how many fired. */
size_t runtime_fire_timers(struct rs_runtime *rt, rs_time now);
/* Fires the single earliest timer if it is due at `now`; true if one fired. */
bool runtime_fire_one_timer(struct rs_runtime *rt, rs_time now);
/* Runs queued tasks until none is left (tasks posted meanwhile run too). */
size_t runtime_run_tasks(struct rs_runtime *rt);
/* Runs the first queued task; true if one ran. */
bool runtime_run_one_task(struct rs_runtime *rt);
static inline bool runtime_has_tasks(const struct rs_runtime *rt) { return rt->task_head != NULL; }

/* --- libev runtime --- */
/* Creates a runtime with its own loop thread, named for logs. NULL on failure. */
struct rs_runtime *rs_runtime_ev_new(const char *name);


/* --- waiting for the loop from another thread --- */
#include <pthread.h>

/* A one-shot completion: the loop thread completes it, an application thread waits for it. In
 * the simulation, waiting steps the world until it completes (virtual time). */
struct rs_completion {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int status;
};
void completion_init(struct rs_completion *c);
void completion_fini(struct rs_completion *c);
void completion_done(struct rs_completion *c, int status);
/* The status given to completion_done, RS_ETIMEDOUT after `timeout` (UINT64_MAX: forever), or
 * RS_EDEADLK when called on the loop thread (it could never complete). */
int completion_wait(struct rs_runtime *rt, struct rs_completion *c, rs_time timeout);

#endif

/* The production runtime: a libev loop on a thread of its own. */
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <raftstack/errors.h>

#include "stack/runtime.h"

struct call {
  rs_call_fn fn;
  void *arg;
  struct call *next;
};

struct ev_rt {
  struct rs_runtime base;
  struct ev_loop *loop;
  pthread_t thread;
  ev_timer timer;
  ev_async async;
  ev_prepare prepare;
  pthread_mutex_t lock;
  struct call *calls, *calls_tail;
  bool stopping;
  char name[32];
};

struct rs_io {
  ev_io w;
  rs_io_fn fn;
  void *arg;
  struct ev_rt *rt;
};

static struct ev_rt *EVRT(struct rs_runtime *rt) { return (struct ev_rt *)rt; }

static rs_time ev_rt_now(struct rs_runtime *rt) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (rs_time)ts.tv_sec * RS_SEC + (rs_time)ts.tv_nsec;
}

static void ev_rt_arm(struct rs_runtime *rt) {
  struct ev_rt *e = EVRT(rt);
  ev_timer_stop(e->loop, &e->timer);
  rs_time next = runtime_next_deadline(rt);
  if (next == UINT64_MAX) return;
  rs_time now = ev_rt_now(rt);
  double after = next > now ? (double)(next - now) / 1e9 : 0.0;
  ev_timer_set(&e->timer, after, 0.0);
  ev_timer_start(e->loop, &e->timer);
}

/* Tasks run from the prepare watcher, i.e. after every callback of this iteration and before the
 * loop waits, so posting from a callback never needs a wake-up. */
static void ev_rt_wake(struct rs_runtime *rt) { (void)rt; }

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  struct ev_rt *e = w->data;
  runtime_fire_timers(&e->base, ev_rt_now(&e->base));
  ev_rt_arm(&e->base);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
  struct ev_rt *e = w->data;
  runtime_run_tasks(&e->base);
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents) {
  struct ev_rt *e = w->data;
  pthread_mutex_lock(&e->lock);
  struct call *c = e->calls;
  e->calls = e->calls_tail = NULL;
  bool stopping = e->stopping;
  pthread_mutex_unlock(&e->lock);
  while (c) {
    struct call *next = c->next;
    c->fn(c->arg);
    free(c);
    c = next;
  }
  if (stopping) ev_break(loop, EVBREAK_ALL);
}

static int ev_rt_call(struct rs_runtime *rt, rs_call_fn fn, void *arg) {
  struct ev_rt *e = EVRT(rt);
  struct call *c = malloc(sizeof(*c));
  if (!c) return RS_ENOMEM;
  c->fn = fn;
  c->arg = arg;
  c->next = NULL;
  pthread_mutex_lock(&e->lock);
  if (e->stopping) {
    pthread_mutex_unlock(&e->lock);
    free(c);
    return RS_ESHUTDOWN;
  }
  if (e->calls_tail) e->calls_tail->next = c;
  else e->calls = c;
  e->calls_tail = c;
  pthread_mutex_unlock(&e->lock);
  ev_async_send(e->loop, &e->async);
  return 0;
}

static bool ev_rt_on_loop(struct rs_runtime *rt) {
  return pthread_equal(pthread_self(), EVRT(rt)->thread);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
  struct rs_io *io = (struct rs_io *)w;
  io->fn(io, (revents & EV_READ ? RS_IO_READ : 0) | (revents & EV_WRITE ? RS_IO_WRITE : 0));
}

static struct rs_io *ev_rt_io_new(struct rs_runtime *rt, int fd, rs_io_fn fn, void *arg) {
  struct rs_io *io = calloc(1, sizeof(*io));
  if (!io) return NULL;
  ev_io_init(&io->w, on_io, fd, 0);
  io->fn = fn;
  io->arg = arg;
  io->rt = EVRT(rt);
  return io;
}

void *rs_io_arg(const struct rs_io *io) { return io->arg; }

static void ev_rt_io_set(struct rs_io *io, int events) {
  int want = (events & RS_IO_READ ? EV_READ : 0) | (events & RS_IO_WRITE ? EV_WRITE : 0);
  if (ev_is_active(&io->w) && (io->w.events & (EV_READ | EV_WRITE)) == want) return;
  ev_io_stop(io->rt->loop, &io->w);
  if (!want) return;
  ev_io_set(&io->w, io->w.fd, want);
  ev_io_start(io->rt->loop, &io->w);
}

static void ev_rt_io_free(struct rs_io *io) {
  if (!io) return;
  ev_io_stop(io->rt->loop, &io->w);
  free(io);
}

static void ev_rt_destroy(struct rs_runtime *rt) {
  struct ev_rt *e = EVRT(rt);
  if (ev_rt_on_loop(rt)) abort(); /* a loop cannot join itself: a caller bug */
  pthread_mutex_lock(&e->lock);
  e->stopping = true;
  pthread_mutex_unlock(&e->lock);
  ev_async_send(e->loop, &e->async);
  pthread_join(e->thread, NULL);
  /* Calls that raced with the stop are dropped unrun; their senders saw RS_ESHUTDOWN or own
   * nothing that needs them. */
  for (struct call *c = e->calls, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  ev_timer_stop(e->loop, &e->timer);
  ev_prepare_stop(e->loop, &e->prepare);
  ev_async_stop(e->loop, &e->async);
  ev_loop_destroy(e->loop);
  pthread_mutex_destroy(&e->lock);
  runtime_base_fini(rt);
  free(e);
}

static const struct rs_runtime_ops ev_ops = {
    .now = ev_rt_now,
    .arm = ev_rt_arm,
    .wake = ev_rt_wake,
    .call = ev_rt_call,
    .on_loop = ev_rt_on_loop,
    .io_new = ev_rt_io_new,
    .io_set = ev_rt_io_set,
    .io_free = ev_rt_io_free,
    .destroy = ev_rt_destroy,
};

static void *loop_main(void *arg) {
  struct ev_rt *e = arg;
  ev_run(e->loop, 0);
  return NULL;
}

struct rs_runtime *rs_runtime_ev_new(const char *name) {
  struct ev_rt *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  uint64_t seed;
  if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)e;
  runtime_base_init(&e->base, &ev_ops, seed);
  snprintf(e->name, sizeof(e->name), "%s", name ? name : "loop");
  e->base.name = e->name;
  e->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (!e->loop) goto err_after_alloc;
  pthread_mutex_init(&e->lock, NULL);
  ev_timer_init(&e->timer, on_timer, 0., 0.);
  e->timer.data = e;
  ev_async_init(&e->async, on_async);
  e->async.data = e;
  ev_async_start(e->loop, &e->async);
  ev_prepare_init(&e->prepare, on_prepare);
  e->prepare.data = e;
  ev_prepare_start(e->loop, &e->prepare);
  /* The loop thread takes no signals: they belong to the application's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&e->thread, NULL, loop_main, e);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) goto err_after_loop;
  return &e->base;
err_after_loop:
  pthread_mutex_destroy(&e->lock);
  ev_loop_destroy(e->loop);
err_after_alloc:
  free(e);
  return NULL;
}

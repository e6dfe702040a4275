/* The simulated runtime: virtual time and a seeded scheduler over many runtimes in one thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raftstack/errors.h>

#include "stack/sim.h"

struct sim_call {
  rs_call_fn fn;
  void *arg;
  struct sim_call *next;
};

struct sim_rt {
  struct rs_runtime base;
  struct rs_sim *sim;
  struct sim_call *calls, *calls_tail;
  rs_time paused_until; /* rs_sim_pause: nothing of this runtime runs before this time */
  char name[32];
};

struct rs_sim {
  rs_time now;
  struct rs_runtime rng; /* only its random state is used */
  struct sim_rt **rts;
  size_t n, cap;
  uint64_t steps;
  int in_step;
  void (*trace)(void *arg, const char *line);
  void *trace_arg;
  void (*hook)(void *arg);
  void *hook_arg;
};

static struct sim_rt *SIMRT(struct rs_runtime *rt) { return (struct sim_rt *)rt; }

static rs_time sim_now(struct rs_runtime *rt) { return SIMRT(rt)->sim->now; }
static void sim_arm(struct rs_runtime *rt) { (void)rt; }
static void sim_wake(struct rs_runtime *rt) { (void)rt; }
static bool sim_on_loop(struct rs_runtime *rt) { return SIMRT(rt)->sim->in_step > 0; }

/* One thread drives the world, so a "thread-safe" call is simply queued for the next step. */
static int sim_call(struct rs_runtime *rt, rs_call_fn fn, void *arg) {
  struct sim_rt *s = SIMRT(rt);
  struct sim_call *c = malloc(sizeof(*c));
  if (!c) return RS_ENOMEM;
  c->fn = fn;
  c->arg = arg;
  c->next = NULL;
  if (s->calls_tail) s->calls_tail->next = c;
  else s->calls = c;
  s->calls_tail = c;
  return 0;
}

static void sim_destroy(struct rs_runtime *rt) {
  struct sim_rt *s = SIMRT(rt);
  struct rs_sim *sim = s->sim;
  for (size_t i = 0; i < sim->n; i++)
    if (sim->rts[i] == s) {
      memmove(&sim->rts[i], &sim->rts[i + 1], (sim->n - i - 1) * sizeof(sim->rts[0]));
      sim->n--;
      break;
    }
  for (struct sim_call *c = s->calls, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  runtime_base_fini(rt);
  free(s);
}

static const struct rs_runtime_ops sim_ops = {
    .now = sim_now,
    .arm = sim_arm,
    .wake = sim_wake,
    .call = sim_call,
    .on_loop = sim_on_loop,
    .destroy = sim_destroy,
};

struct rs_sim *rs_sim_new(uint64_t seed) {
  struct rs_sim *sim = calloc(1, sizeof(*sim));
  if (!sim) return NULL;
  runtime_base_init(&sim->rng, NULL, seed);
  return sim;
}

void rs_sim_free(struct rs_sim *sim) {
  if (!sim) return;
  free(sim->rts);
  free(sim);
}

struct rs_runtime *rs_sim_runtime_new(struct rs_sim *sim, const char *name) {
  if (sim->n == sim->cap) {
    size_t cap = sim->cap ? sim->cap * 2 : 8;
    struct sim_rt **v = realloc(sim->rts, cap * sizeof(*v));
    if (!v) return NULL;
    sim->rts = v;
    sim->cap = cap;
  }
  struct sim_rt *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  runtime_base_init(&s->base, &sim_ops, rs_random(&sim->rng));
  s->base.simulated = true;
  snprintf(s->name, sizeof(s->name), "%s", name ? name : "sim");
  s->base.name = s->name;
  s->sim = sim;
  sim->rts[sim->n++] = s;
  return &s->base;
}

struct rs_sim *rs_sim_of(struct rs_runtime *rt) {
  return rt && rt->simulated ? SIMRT(rt)->sim : NULL;
}

rs_time rs_sim_now(const struct rs_sim *sim) { return sim->now; }
uint64_t rs_sim_steps(const struct rs_sim *sim) { return sim->steps; }
uint64_t rs_sim_random(struct rs_sim *sim) { return rs_random(&sim->rng); }

void rs_sim_set_trace(struct rs_sim *sim, void (*fn)(void *arg, const char *line), void *arg) {
  sim->trace = fn;
  sim->trace_arg = arg;
}

static void trace(struct rs_sim *sim, const struct sim_rt *s, const char *what) {
  if (!sim->trace) return;
  char line[96];
  snprintf(line, sizeof(line), "%llu %s %s", (unsigned long long)sim->now, s->name, what);
  sim->trace(sim->trace_arg, line);
}

static bool has_work(const struct sim_rt *s) { return s->calls || runtime_has_tasks(&s->base); }
static bool paused(const struct sim_rt *s) { return s->paused_until > s->sim->now; }
static bool ready(const struct sim_rt *s) { return has_work(s) && !paused(s); }

/* Runs one call or task of s: calls first, they came from "outside" earlier. */
static void run_ready(struct rs_sim *sim, struct sim_rt *s) {
  struct sim_call *c = s->calls;
  if (c) {
    s->calls = c->next;
    if (!s->calls) s->calls_tail = NULL;
    trace(sim, s, "call");
    c->fn(c->arg);
    free(c);
  } else {
    trace(sim, s, "task");
    runtime_run_one_task(&s->base);
  }
}

/* When s may next run something other than ready work: its earliest timer, or for a paused
 * runtime the end of the pause if work or a timer waits by then (timers due meanwhile fire
 * late, as on a stopped process). */
static rs_time next_time(const struct sim_rt *s) {
  rs_time t = runtime_next_deadline(&s->base);
  if (!paused(s)) return t;
  if (has_work(s)) return s->paused_until;
  return t == UINT64_MAX || t > s->paused_until ? t : s->paused_until;
}

/* The earliest timer (or end of a pause) over all runtimes (ties: the runtime created first),
 * or NULL. */
static struct sim_rt *earliest_timer(struct rs_sim *sim, rs_time *when) {
  struct sim_rt *best = NULL;
  *when = UINT64_MAX;
  for (size_t i = 0; i < sim->n; i++) {
    rs_time t = next_time(sim->rts[i]);
    if (t < *when) {
      *when = t;
      best = sim->rts[i];
    }
  }
  return best;
}

static bool step(struct rs_sim *sim);

bool rs_sim_step(struct rs_sim *sim) {
  bool ran = step(sim);
  if (ran && sim->hook) sim->hook(sim->hook_arg);
  return ran;
}

void rs_sim_set_step_hook(struct rs_sim *sim, void (*fn)(void *arg), void *arg) {
  sim->hook = fn;
  sim->hook_arg = arg;
}

void rs_sim_pause(struct rs_runtime *rt, rs_time duration) {
  struct sim_rt *s = SIMRT(rt);
  rs_time until = s->sim->now + duration;
  if (until > s->paused_until) s->paused_until = until;
}

static bool step(struct rs_sim *sim) {
  size_t n_ready = 0;
  for (size_t i = 0; i < sim->n; i++) n_ready += ready(sim->rts[i]);
  sim->in_step++;
  sim->steps++;
  if (n_ready) {
    /* The seeded choice among runtimes with work at this instant is what makes interleavings
     * vary by seed and repeat exactly for the same seed. */
    size_t pick = (size_t)rs_random_range(&sim->rng, 0, n_ready - 1);
    for (size_t i = 0; i < sim->n; i++)
      if (ready(sim->rts[i]) && pick-- == 0) {
        run_ready(sim, sim->rts[i]);
        break;
      }
    sim->in_step--;
    return true;
  }
  rs_time when;
  struct sim_rt *s = earliest_timer(sim, &when);
  if (!s) {
    sim->in_step--;
    sim->steps--;
    return false;
  }
  if (when > sim->now) sim->now = when;
  if (has_work(s)) {
    run_ready(sim, s); /* its pause just ended */
  } else {
    trace(sim, s, "timer");
    runtime_fire_one_timer(&s->base, sim->now);
  }
  sim->in_step--;
  return true;
}

/* Time of the next step, or UINT64_MAX when nothing is scheduled. */
static rs_time next_event(struct rs_sim *sim) {
  for (size_t i = 0; i < sim->n; i++)
    if (ready(sim->rts[i])) return sim->now;
  rs_time when;
  earliest_timer(sim, &when);
  return when;
}

bool rs_sim_run_until(struct rs_sim *sim, bool (*cond)(void *arg), void *arg, rs_time timeout) {
  rs_time deadline = timeout == UINT64_MAX || sim->now > UINT64_MAX - timeout ? UINT64_MAX
                                                                            : sim->now + timeout;
  while (!cond(arg)) {
    rs_time next = next_event(sim);
    if (next == UINT64_MAX || next > deadline) {
      if (deadline != UINT64_MAX) sim->now = deadline;
      return cond(arg);
    }
    rs_sim_step(sim);
  }
  return true;
}

static bool never(void *arg) {
  (void)arg;
  return false;
}

void rs_sim_run_for(struct rs_sim *sim, rs_time duration) {
  rs_sim_run_until(sim, never, NULL, duration);
}

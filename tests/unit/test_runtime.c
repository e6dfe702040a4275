/* Unit tests of the runtimes: timer order, tasks, determinism of the simulation, and the libev
 * runtime's thread-safe entry and deadlock guard. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/protocol.h"
#include "stack/runtime.h"
#include "stack/sim.h"
#include "tests/lib/testlib.h"

/* --- a log of what fired --------------------------------------------------------------------- */
struct fired {
  int order[64];
  int n;
};

struct tagged_timer {
  struct rs_timer t;
  int tag;
  struct fired *log;
};

static void on_tagged(struct rs_timer *t) {
  struct tagged_timer *tt = (struct tagged_timer *)t;
  tt->log->order[tt->log->n++] = tt->tag;
}

START_TEST(timers_fire_in_deadline_then_start_order) {
  struct rs_sim *sim = rs_sim_new(1);
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "a");
  struct fired log = {0};
  struct tagged_timer t[6];
  const rs_time delays[] = {30, 10, 20, 10, 0, 20}; /* ms */
  for (int i = 0; i < 6; i++) {
    rs_timer_init(&t[i].t, rt, on_tagged);
    t[i].tag = i;
    t[i].log = &log;
    rs_timer_start(&t[i].t, delays[i] * RS_MS, 0);
  }
  rs_timer_stop(&t[5].t);            /* stopped: never fires */
  rs_timer_start(&t[0].t, 5 * RS_MS, 0); /* restarted earlier */
  rs_sim_run_for(sim, RS_SEC);
  const int want[] = {4, 0, 1, 3, 2};
  ck_assert_int_eq(log.n, 5);
  ck_assert_mem_eq(log.order, want, sizeof(want));
  ck_assert_uint_eq(rs_sim_now(sim), RS_SEC);
  rs_runtime_destroy(rt);
  rs_sim_free(sim);
}
END_TEST

struct ticker {
  struct rs_timer t;
  rs_time at[8];
  int n;
};

static void on_tick(struct rs_timer *t) {
  struct ticker *k = (struct ticker *)t;
  k->at[k->n++] = rs_now(t->rt);
  if (k->n == 4) rs_timer_stop(t);
}

START_TEST(periodic_timer_keeps_its_phase) {
  struct rs_sim *sim = rs_sim_new(2);
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "a");
  struct ticker k = {0};
  rs_timer_init(&k.t, rt, on_tick);
  rs_timer_start(&k.t, 50 * RS_MS, 100 * RS_MS);
  rs_sim_run_for(sim, RS_SEC);
  ck_assert_int_eq(k.n, 4);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(k.at[i], (50 + 100 * (rs_time)i) * RS_MS);
  ck_assert(!rs_timer_active(&k.t));
  rs_runtime_destroy(rt);
  rs_sim_free(sim);
}
END_TEST

struct tagged_task {
  struct rs_task task;
  int tag;
  struct fired *log;
  struct rs_runtime *rt;
  struct rs_task *then; /* posted from inside */
};

static void on_task(struct rs_task *t) {
  struct tagged_task *tt = (struct tagged_task *)t;
  tt->log->order[tt->log->n++] = tt->tag;
  if (tt->then) rs_post(tt->rt, tt->then);
}

START_TEST(tasks_run_fifo_once_and_cancel) {
  struct rs_sim *sim = rs_sim_new(3);
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "a");
  struct fired log = {0};
  struct tagged_task t[4];
  for (int i = 0; i < 4; i++) {
    rs_task_init(&t[i].task, on_task);
    t[i].tag = i;
    t[i].log = &log;
    t[i].rt = rt;
    t[i].then = NULL;
  }
  t[0].then = &t[3].task;
  rs_post(rt, &t[0].task);
  rs_post(rt, &t[1].task);
  rs_post(rt, &t[1].task); /* already queued: runs once */
  rs_post(rt, &t[2].task);
  rs_task_cancel(rt, &t[2].task);
  while (rs_sim_step(sim)) {
  }
  const int want[] = {0, 1, 3};
  ck_assert_int_eq(log.n, 3);
  ck_assert_mem_eq(log.order, want, sizeof(want));
  ck_assert_uint_eq(rs_sim_now(sim), 0); /* tasks take no virtual time */
  rs_runtime_destroy(rt);
  rs_sim_free(sim);
}
END_TEST

/* --- determinism: three runtimes with random timers and cross-runtime calls ------------------- */

struct node {
  struct rs_timer t;
  struct rs_runtime *rt;
  struct node *peers;
  int id, fired;
};

static struct node world_nodes[3];

static void poke(void *arg) {
  struct node *n = arg;
  n->fired++;
}

static void on_node_timer(struct rs_timer *t) {
  struct node *n = (struct node *)t;
  n->fired++;
  /* Random fan-out to a peer and a random next deadline: enough freedom for seeds to differ. */
  struct node *peer = &world_nodes[rs_random_range(n->rt, 0, 2)];
  rs_runtime_call(peer->rt, poke, peer);
  if (n->fired < 200) rs_timer_start(t, rs_random_range(n->rt, 1, 5) * RS_MS, 0);
}

struct trace {
  char *text;
  size_t len, cap;
};

static void record(void *arg, const char *line) {
  struct trace *tr = arg;
  size_t n = strlen(line);
  if (tr->len + n + 2 > tr->cap) {
    tr->cap = (tr->cap + n + 2) * 2;
    tr->text = realloc(tr->text, tr->cap);
  }
  memcpy(tr->text + tr->len, line, n);
  tr->len += n;
  tr->text[tr->len++] = '\n';
  tr->text[tr->len] = '\0';
}

static char *run_world(uint64_t seed) {
  struct trace tr = {0};
  struct rs_sim *sim = rs_sim_new(seed);
  rs_sim_set_trace(sim, record, &tr);
  const char *names[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    struct node *n = &world_nodes[i];
    memset(n, 0, sizeof(*n));
    n->rt = rs_sim_runtime_new(sim, names[i]);
    n->id = i;
    rs_timer_init(&n->t, n->rt, on_node_timer);
    rs_timer_start(&n->t, RS_MS, 0);
  }
  while (rs_sim_step(sim)) {
  }
  for (int i = 0; i < 3; i++) rs_runtime_destroy(world_nodes[i].rt);
  rs_sim_free(sim);
  return tr.text;
}

START_TEST(same_seed_same_trace) {
  char *a = run_world(42), *b = run_world(42), *c = run_world(43);
  ck_assert_ptr_nonnull(a);
  ck_assert_uint_gt(strlen(a), 1000);
  ck_assert_str_eq(a, b);
  ck_assert_str_ne(a, c);
  free(a);
  free(b);
  free(c);
}
END_TEST

START_TEST(random_range_is_bounded_and_covers) {
  struct rs_sim *sim = rs_sim_new(7);
  struct rs_runtime *rt = rs_sim_runtime_new(sim, "a");
  int seen[5] = {0};
  for (int i = 0; i < 10000; i++) {
    uint64_t v = rs_random_range(rt, 10, 14);
    ck_assert(v >= 10 && v <= 14);
    seen[v - 10]++;
    double u = rs_random_unit(rt);
    ck_assert(u >= 0.0 && u < 1.0);
  }
  for (int i = 0; i < 5; i++) ck_assert_int_gt(seen[i], 1500); /* ~2000 each */
  rs_runtime_destroy(rt);
  rs_sim_free(sim);
}
END_TEST

/* --- the libev runtime ----------------------------------------------------------------------- */

struct ev_probe {
  struct rs_runtime *rt;
  bool on_loop;
  int deadlock_rc;
  struct rs_completion done;
  struct rs_timer t[3];
  int order[3];
  int n;
};

static void probe_call(void *arg) {
  struct ev_probe *p = arg;
  p->on_loop = rs_runtime_on_loop(p->rt);
  struct rs_completion c;
  completion_init(&c);
  p->deadlock_rc = completion_wait(p->rt, &c, RS_SEC); /* must not hang */
  completion_fini(&c);
  completion_done(&p->done, 7);
}

START_TEST(ev_call_runs_on_loop_and_refuses_to_deadlock) {
  struct ev_probe p = {0};
  p.rt = rs_runtime_ev_new("t");
  ck_assert_ptr_nonnull(p.rt);
  ck_assert(!rs_runtime_on_loop(p.rt));
  completion_init(&p.done);
  ck_assert_int_eq(rs_runtime_call(p.rt, probe_call, &p), 0);
  ck_assert_int_eq(completion_wait(p.rt, &p.done, 5 * RS_SEC), 7);
  ck_assert(p.on_loop);
  ck_assert_int_eq(p.deadlock_rc, RS_EDEADLK);
  completion_fini(&p.done);
  rs_runtime_destroy(p.rt);
}
END_TEST

static struct ev_probe *probe_of_timer;

static void ev_on_timer(struct rs_timer *t) {
  struct ev_probe *p = probe_of_timer;
  p->order[p->n++] = (int)(t - p->t);
  if (p->n == 3) completion_done(&p->done, 0);
}

static void start_timers(void *arg) {
  struct ev_probe *p = arg;
  const rs_time delays[] = {30, 10, 20};
  for (int i = 0; i < 3; i++) {
    rs_timer_init(&p->t[i], p->rt, ev_on_timer);
    rs_timer_start(&p->t[i], delays[i] * RS_MS, 0);
  }
}

START_TEST(ev_timers_fire_in_order) {
  struct ev_probe p = {0};
  probe_of_timer = &p;
  p.rt = rs_runtime_ev_new("t");
  completion_init(&p.done);
  rs_time start = rs_now(p.rt);
  rs_runtime_call(p.rt, start_timers, &p);
  ck_assert_int_eq(completion_wait(p.rt, &p.done, 5 * RS_SEC), 0);
  ck_assert_uint_ge(rs_now(p.rt) - start, 30 * RS_MS);
  const int want[] = {1, 2, 0};
  ck_assert_mem_eq(p.order, want, sizeof(want));
  completion_fini(&p.done);
  rs_runtime_destroy(p.rt);
}
END_TEST

START_TEST(completion_times_out) {
  struct rs_runtime *rt = rs_runtime_ev_new("t");
  struct rs_completion c;
  completion_init(&c);
  ck_assert_int_eq(completion_wait(rt, &c, 20 * RS_MS), RS_ETIMEDOUT);
  completion_fini(&c);
  rs_runtime_destroy(rt);

  struct rs_sim *sim = rs_sim_new(1);
  rt = rs_sim_runtime_new(sim, "s");
  completion_init(&c);
  ck_assert_int_eq(completion_wait(rt, &c, 20 * RS_MS), RS_ETIMEDOUT);
  ck_assert_uint_eq(rs_sim_now(sim), 20 * RS_MS); /* virtual time moved, not real time */
  completion_fini(&c);
  rs_runtime_destroy(rt);
  rs_sim_free(sim);
}
END_TEST

START_TEST(ratelimit_allows_one_line_per_interval) {
  struct rs_ratelimit rl = {0};
  uint64_t suppressed = 99;
  /* At virtual time 0 too: the first instant of a simulation. */
  ck_assert(ratelimit_ok(&rl, 0, RS_SEC, &suppressed));
  ck_assert_uint_eq(suppressed, 0);
  ck_assert(!ratelimit_ok(&rl, 0, RS_SEC, &suppressed));
  ck_assert(!ratelimit_ok(&rl, RS_SEC / 2, RS_SEC, &suppressed));
  ck_assert(ratelimit_ok(&rl, RS_SEC + 1, RS_SEC, &suppressed));
  ck_assert_uint_eq(suppressed, 2);
}
END_TEST

static Suite *runtime_suite(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("simulated");
  tcase_add_test(tc, timers_fire_in_deadline_then_start_order);
  tcase_add_test(tc, periodic_timer_keeps_its_phase);
  tcase_add_test(tc, tasks_run_fifo_once_and_cancel);
  tcase_add_test(tc, same_seed_same_trace);
  tcase_add_test(tc, random_range_is_bounded_and_covers);
  tcase_add_test(tc, ratelimit_allows_one_line_per_interval);
  suite_add_tcase(s, tc);
  tc = tcase_create("libev");
  tcase_add_test(tc, ev_call_runs_on_loop_and_refuses_to_deadlock);
  tcase_add_test(tc, ev_timers_fire_in_order);
  tcase_add_test(tc, completion_times_out);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(runtime_suite()); }

/* The linearizability checker: hand-written register and counter histories, unknown outcomes,
 * partitions by key, and large random histories generated from a sequential execution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/linearizability.h"
#include "tests/lib/testlib.h"

#define W(c, v, a, b)                                                                              \
  { 0, c, LIN_WRITE, v, 0, true, a, b }
#define WU(c, v, a)                                                                                \
  { 0, c, LIN_WRITE, v, 0, false, a, 0 }
#define R(c, v, a, b)                                                                              \
  { 0, c, LIN_READ, 0, v, true, a, b }
#define ADD(c, d, v, a, b)                                                                         \
  { 0, c, LIN_ADD, d, v, true, a, b }
#define ADDU(c, d, a)                                                                              \
  { 0, c, LIN_ADD, d, 0, false, a, 0 }

static const struct lin_options REG = {.model = LIN_REGISTER, .initial = 0};
static const struct lin_options CTR = {.model = LIN_COUNTER, .initial = 0};

static char why[512];

static enum lin_result check(const struct lin_op *ops, size_t n, const struct lin_options *o) {
  return lin_check(ops, n, o, why, sizeof(why), NULL);
}
#define CHECK(ops, o) check(ops, sizeof(ops) / sizeof(ops[0]), o)

/* --- register -------------------------------------------------------------------------------- */

START_TEST(register_sequential) {
  struct lin_op ok[] = {R(1, 0, 0, 1), W(1, 5, 2, 3), R(2, 5, 4, 5), W(2, 7, 6, 7), R(1, 7, 8, 9)};
  ck_assert_int_eq(CHECK(ok, &REG), LIN_OK);
  /* The initial value counts: a register that starts at 3. */
  struct lin_options init3 = {.model = LIN_REGISTER, .initial = 3};
  struct lin_op first[] = {R(1, 3, 0, 1)};
  ck_assert_int_eq(CHECK(first, &init3), LIN_OK);
  ck_assert_int_eq(CHECK(first, &REG), LIN_FAIL);
}
END_TEST

START_TEST(register_stale_read) {
  /* The write completed before the read began: the read must see it. */
  struct lin_op bad[] = {W(1, 1, 0, 10), R(2, 0, 11, 12)};
  ck_assert_int_eq(CHECK(bad, &REG), LIN_FAIL);
  ck_assert_msg(strstr(why, "c2 read()->0 [11,12]") != NULL, "why: %s", why);
  ck_assert_msg(strstr(why, "key 0") != NULL, "why: %s", why);
}
END_TEST

START_TEST(register_concurrent) {
  /* Both reads overlap the write: one may see the old value, the next the new one. */
  struct lin_op ok[] = {W(1, 1, 0, 10), R(2, 0, 1, 2), R(3, 1, 3, 4), R(2, 1, 5, 6)};
  ck_assert_int_eq(CHECK(ok, &REG), LIN_OK);
  /* But once a read saw the new value, a later read cannot see the old one (no flip-flop). */
  struct lin_op flip[] = {W(1, 1, 0, 10), R(2, 1, 1, 2), R(3, 0, 3, 4)};
  ck_assert_int_eq(CHECK(flip, &REG), LIN_FAIL);
  /* Two concurrent writes, readers agree on one order... */
  struct lin_op order[] = {W(1, 1, 0, 10), W(2, 2, 0, 10), R(3, 2, 11, 12), R(4, 2, 13, 14)};
  ck_assert_int_eq(CHECK(order, &REG), LIN_OK);
  /* ...and the other order is fine too, but not both after both writes completed. */
  struct lin_op both[] = {W(1, 1, 0, 10), W(2, 2, 0, 10), R(3, 1, 11, 12), R(4, 2, 13, 14)};
  ck_assert_int_eq(CHECK(both, &REG), LIN_FAIL);
  /* Reads during the writes may see 1 then 2 (the order 1, 2) */
  struct lin_op seen[] = {W(1, 1, 0, 10), W(2, 2, 0, 10), R(3, 1, 1, 2), R(3, 2, 3, 4),
                          R(4, 2, 11, 12)};
  ck_assert_int_eq(CHECK(seen, &REG), LIN_OK);
  /* ...but not 2 then 1 and then 2 again. */
  struct lin_op seen_bad[] = {W(1, 1, 0, 10), W(2, 2, 0, 10), R(3, 2, 1, 2), R(3, 1, 3, 4),
                              R(4, 2, 11, 12)};
  ck_assert_int_eq(CHECK(seen_bad, &REG), LIN_FAIL);
  /* A value nobody wrote. */
  struct lin_op ghost[] = {W(1, 1, 0, 10), R(2, 9, 1, 20)};
  ck_assert_int_eq(CHECK(ghost, &REG), LIN_FAIL);
}
END_TEST

START_TEST(register_unknown_outcomes) {
  /* A write that timed out may have taken effect: a later read may see it... */
  struct lin_op applied[] = {WU(1, 5, 0), R(2, 5, 10, 11)};
  ck_assert_int_eq(CHECK(applied, &REG), LIN_OK);
  /* ...or not see it, and see it later still (it took effect late)... */
  struct lin_op late[] = {WU(1, 5, 0), R(2, 0, 10, 11), R(2, 5, 20, 21)};
  ck_assert_int_eq(CHECK(late, &REG), LIN_OK);
  /* ...but once seen it cannot be undone. */
  struct lin_op undone[] = {WU(1, 5, 0), R(2, 5, 10, 11), R(2, 0, 20, 21)};
  ck_assert_int_eq(CHECK(undone, &REG), LIN_FAIL);
  /* It cannot take effect before it was invoked. */
  struct lin_op early[] = {R(2, 5, 0, 1), WU(1, 5, 2)};
  ck_assert_int_eq(CHECK(early, &REG), LIN_FAIL);
  /* It must be assumed applied when only it explains a read: known writes alone cannot. */
  struct lin_op needed_ok[] = {W(1, 1, 0, 1), W(1, 3, 3, 4), WU(2, 2, 2), R(3, 2, 5, 6),
                               R(3, 2, 7, 8)};
  ck_assert_int_eq(CHECK(needed_ok, &REG), LIN_OK);
  /* ...and it takes effect once: its value cannot come back after a later write. */
  struct lin_op once[] = {WU(2, 2, 2), R(3, 2, 5, 6), W(1, 3, 7, 8), R(3, 2, 9, 10)};
  ck_assert_int_eq(CHECK(once, &REG), LIN_FAIL);
  /* An unknown write nobody read is never needed; one that somebody read is. */
  struct lin_op unread[] = {WU(2, 2, 0), R(3, 0, 5, 6), W(1, 3, 7, 8), R(3, 3, 9, 10)};
  ck_assert_int_eq(CHECK(unread, &REG), LIN_OK);
  struct lin_op read_once[] = {WU(2, 2, 0), R(3, 2, 5, 6), W(1, 3, 7, 8), R(3, 3, 9, 10)};
  ck_assert_int_eq(CHECK(read_once, &REG), LIN_OK);
  /* A read without an answer constrains nothing. */
  struct lin_op lost_read[] = {W(1, 1, 0, 1), {0, 2, LIN_READ, 0, 42, false, 2, 0}};
  ck_assert_int_eq(CHECK(lost_read, &REG), LIN_OK);
}
END_TEST

/* --- counter --------------------------------------------------------------------------------- */

START_TEST(counter_histories) {
  struct lin_op seq[] = {ADD(1, 1, 1, 0, 1), ADD(2, 2, 3, 2, 3), R(1, 3, 4, 5)};
  ck_assert_int_eq(CHECK(seq, &CTR), LIN_OK);
  /* Concurrent adds may take effect in either order. */
  struct lin_op conc[] = {ADD(1, 1, 2, 0, 10), ADD(2, 1, 1, 1, 9), R(3, 2, 11, 12)};
  ck_assert_int_eq(CHECK(conc, &CTR), LIN_OK);
  /* A lost update: two adds of 1 that both saw 1. */
  struct lin_op lost[] = {ADD(1, 1, 1, 0, 10), ADD(2, 1, 1, 1, 9)};
  ck_assert_int_eq(CHECK(lost, &CTR), LIN_FAIL);
  /* A read of a value that never existed between two adds. */
  struct lin_op between[] = {ADD(1, 2, 2, 0, 1), ADD(1, 2, 4, 2, 3), R(2, 3, 0, 10)};
  ck_assert_int_eq(CHECK(between, &CTR), LIN_FAIL);
  /* Real time: the add completed before the read started. */
  struct lin_op stale[] = {ADD(1, 5, 5, 0, 1), R(2, 0, 2, 3)};
  ck_assert_int_eq(CHECK(stale, &CTR), LIN_FAIL);
  /* A wrong model: write on a counter. */
  struct lin_op wrong[] = {W(1, 1, 0, 1)};
  ck_assert_int_eq(CHECK(wrong, &CTR), LIN_BADARG);
  ck_assert_int_eq(CHECK(seq, &REG), LIN_BADARG);
}
END_TEST

START_TEST(counter_unknown_outcomes) {
  /* An add that timed out and was applied: the read sees it, and a later add's result agrees. */
  struct lin_op applied[] = {ADDU(1, 5, 0), R(2, 5, 10, 11), ADD(2, 1, 6, 12, 13)};
  ck_assert_int_eq(CHECK(applied, &CTR), LIN_OK);
  /* Not applied (yet): both reads of 0 are fine... */
  struct lin_op never[] = {ADDU(1, 5, 0), R(2, 0, 10, 11), ADD(2, 1, 1, 12, 13)};
  ck_assert_int_eq(CHECK(never, &CTR), LIN_OK);
  /* ...but an unknown add of 5 cannot explain 3. */
  struct lin_op three[] = {ADDU(1, 5, 0), R(2, 3, 10, 11)};
  ck_assert_int_eq(CHECK(three, &CTR), LIN_FAIL);
  /* And it applies at most once: two reads that differ by 10 need two adds. */
  struct lin_op twice[] = {ADDU(1, 5, 0), R(2, 5, 10, 11), R(2, 10, 12, 13)};
  ck_assert_int_eq(CHECK(twice, &CTR), LIN_FAIL);
  /* Two unknown adds may both apply, in any order, each at most once. */
  struct lin_op two[] = {ADDU(1, 5, 0), ADDU(2, 7, 1), R(3, 7, 10, 11), R(3, 12, 12, 13)};
  ck_assert_int_eq(CHECK(two, &CTR), LIN_OK);
}
END_TEST

/* --- keys ------------------------------------------------------------------------------------ */

START_TEST(partitions_by_key) {
  struct lin_op ops[] = {W(1, 1, 0, 1), R(2, 1, 2, 3), W(1, 2, 4, 5),
                         R(2, 0, 6, 7), W(1, 2, 0, 1), R(2, 2, 2, 3)};
  ops[2].key = ops[3].key = 7;
  ops[4].key = ops[5].key = 9;
  ck_assert_int_eq(CHECK(ops, &REG), LIN_FAIL); /* key 7: reads 0 after write(2) */
  ck_assert_msg(strstr(why, "key 7") != NULL, "why: %s", why);
  ops[3].result = 2;
  ck_assert_int_eq(CHECK(ops, &REG), LIN_OK);
  /* The same ops on one key are not linearizable: keys are independent objects. */
  for (size_t i = 0; i < 6; i++)
    ops[i].key = 0;
  ck_assert_int_eq(CHECK(ops, &REG), LIN_FAIL);
}
END_TEST

/* --- random histories ------------------------------------------------------------------------ */

struct gen {
  struct lin_op op;
  uint64_t at; /* the linearization point */
  bool applied;
};

static uint64_t rng_state;
static uint64_t rnd(uint64_t n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (rng_state >> 33) % n;
}

static int by_point(const void *a, const void *b) {
  const struct gen *x = a, *y = b;
  return x->at < y->at ? -1 : x->at > y->at;
}

/* n ops by `clients` sequential clients over `keys` keys, each with a linearization point
 * inside its interval; results come from executing them in point order. 1 in `unknown_1_in`
 * updates has an unknown outcome (applied or not). */
static struct lin_op *random_history(size_t n, unsigned clients, unsigned keys,
                                     enum lin_model model, unsigned unknown_1_in, uint64_t seed) {
  rng_state = seed;
  struct gen *g = calloc(n, sizeof(*g));
  uint64_t *clock = calloc(clients, sizeof(uint64_t));
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned)rnd(clients);
    uint64_t inv = clock[c] + rnd(50);
    uint64_t at = inv + rnd(100);
    uint64_t done = at + rnd(100);
    clock[c] = done + 1;
    bool update = rnd(2) == 0;
    bool unknown = update && rnd(unknown_1_in) == 0;
    g[i].op = (struct lin_op){.key = rnd(keys),
                              .client = c,
                              .invoke = inv,
                              .complete = done,
                              .known = !unknown,
                              .arg = (int64_t)rnd(1000) + 1,
                              .kind = !update                 ? LIN_READ
                                      : model == LIN_REGISTER ? LIN_WRITE
                                                              : LIN_ADD};
    g[i].at = at;
    g[i].applied = !unknown || rnd(2);
    if (unknown) clock[c] = done + 1000000; /* that client is gone for a while */
  }
  qsort(g, n, sizeof(*g), by_point);
  int64_t *state = calloc(keys, sizeof(int64_t));
  struct lin_op *ops = calloc(n, sizeof(*ops));
  for (size_t i = 0; i < n; i++) {
    struct lin_op *o = &g[i].op;
    int64_t *s = &state[o->key];
    if (o->kind == LIN_READ)
      o->result = *s;
    else if (g[i].applied)
      *s = o->kind == LIN_WRITE ? o->arg : *s + o->arg;
    if (o->kind == LIN_ADD) o->result = *s;
    ops[i] = *o;
  }
  free(state);
  free(clock);
  free(g);
  return ops;
}

/* Unknown outcomes are the expensive part: an unknown counter add can never be ruled out the way
 * an unread register write can, so a stuck search tries subsets of the pending ones. Histories
 * from the simulation have few (long client timeouts); `unknown_1_in` sets the rate here. */
static void random_case(enum lin_model model, unsigned keys, unsigned unknown_1_in, uint64_t seed) {
  enum { N = 5000, SMALL = 1000 };
  struct lin_options o = {.model = model};
  struct lin_op *ops = random_history(N, 8, keys, model, unknown_1_in, seed);
  uint64_t t0 = test_now_ms(), steps;
  enum lin_result r = lin_check(ops, N, &o, why, sizeof(why), &steps);
  uint64_t ms = test_now_ms() - t0;
  fprintf(stderr, "random %s, %u keys, %d ops (1 in %u updates unknown): %llu ms, %llu steps\n",
          model == LIN_REGISTER ? "register" : "counter", keys, N, unknown_1_in,
          (unsigned long long)ms, (unsigned long long)steps);
  ck_assert_msg(r == LIN_OK, "seed %llu: %s", (unsigned long long)seed, why);
  ck_assert_uint_lt(ms, 1000);
  free(ops);
  /* Corrupt one known read to a value nothing produced: now it must fail. Proving a failure
   * explores every configuration up to it, which grows with 2^(pending unknown outcomes), so
   * this history has few unknowns. */
  ops = random_history(SMALL, 8, keys, model, 200, seed);
  ck_assert_int_eq(lin_check(ops, SMALL, &o, why, sizeof(why), NULL), LIN_OK);
  for (size_t i = SMALL / 2; i < SMALL; i++)
    if (ops[i].kind == LIN_READ && ops[i].known) {
      ops[i].result = -12345;
      break;
    }
  t0 = test_now_ms();
  r = lin_check(ops, SMALL, &o, why, sizeof(why), &steps);
  ms = test_now_ms() - t0;
  fprintf(stderr, "  corrupted, %d ops: %llu ms, %llu steps: %s\n", SMALL, (unsigned long long)ms,
          (unsigned long long)steps, why);
  ck_assert_int_eq(r, LIN_FAIL);
  ck_assert_msg(strstr(why, "->-12345") != NULL, "why: %s", why);
  free(ops);
}

START_TEST(random_register_one_key) { random_case(LIN_REGISTER, 1, 20, 11); }
END_TEST
START_TEST(random_register_keys) { random_case(LIN_REGISTER, 5, 20, 12); }
END_TEST
START_TEST(random_counter_one_key) { random_case(LIN_COUNTER, 1, 200, 13); }
END_TEST
START_TEST(random_counter_keys) { random_case(LIN_COUNTER, 5, 100, 14); }
END_TEST

/* A swapped pair of results from one sequential client is a real-time violation. */
START_TEST(random_swapped_reads_fail) {
  enum { N = 3000 };
  struct lin_options o = {.model = LIN_COUNTER};
  struct lin_op *ops = random_history(N, 1, 1, LIN_COUNTER, 200, 99);
  ck_assert_int_eq(lin_check(ops, N, &o, why, sizeof(why), NULL), LIN_OK);
  size_t a = SIZE_MAX;
  for (size_t i = 0; i < N; i++)
    if (ops[i].kind == LIN_ADD && ops[i].known) {
      if (a != SIZE_MAX && ops[a].result != ops[i].result) {
        int64_t t = ops[a].result;
        ops[a].result = ops[i].result;
        ops[i].result = t;
        break;
      }
      a = i;
    }
  ck_assert_int_eq(lin_check(ops, N, &o, why, sizeof(why), NULL), LIN_FAIL);
  free(ops);
}
END_TEST

START_TEST(budget_is_reported) {
  struct lin_options o = {.model = LIN_REGISTER, .max_steps = 10};
  struct lin_op *ops = random_history(200, 4, 1, LIN_REGISTER, 20, 5);
  ck_assert_int_eq(lin_check(ops, 200, &o, why, sizeof(why), NULL), LIN_BUDGET);
  free(ops);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("linearizability");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, register_sequential);
  tcase_add_test(tc, register_stale_read);
  tcase_add_test(tc, register_concurrent);
  tcase_add_test(tc, register_unknown_outcomes);
  tcase_add_test(tc, counter_histories);
  tcase_add_test(tc, counter_unknown_outcomes);
  tcase_add_test(tc, partitions_by_key);
  tcase_add_test(tc, random_register_one_key);
  tcase_add_test(tc, random_register_keys);
  tcase_add_test(tc, random_counter_one_key);
  tcase_add_test(tc, random_counter_keys);
  tcase_add_test(tc, random_swapped_reads_fail);
  tcase_add_test(tc, budget_is_reported);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run(suite()); }

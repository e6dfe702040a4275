/* A linearizability checker for register and counter histories (Wing & Gong with Lowe's memo). */
#ifndef RS_TESTS_LINEARIZABILITY_H
#define RS_TESTS_LINEARIZABILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A history is a set of operations, each with the time it was invoked and the time it completed.
 * The checker searches for a total order that respects real time (an operation that completed
 * before another was invoked comes first) and in which every result is the one the sequential
 * model gives (Herlihy & Wing's definition).
 *
 * Search: Wing & Gong's backtracking over the call/return list, with Lowe's memoization: a
 * (set of linearized operations, model state) configuration reached once is never explored
 * again (as in Porcupine). Keys are independent objects, so each key is checked on its own
 * (linearizability is compositional, Herlihy & Wing 1990, Theorem 1).
 *
 * An operation whose outcome is unknown (a timeout, RS_EUNKNOWN, a crashed client) may take
 * effect at any time after its invocation, or never: it is given an infinite completion time and
 * its result is not checked. "Never" is then the same as "after everything else". A read with an
 * unknown outcome constrains nothing and is ignored.
 *
 * Pure C: no raftstack dependencies.
 */

enum lin_model {
  LIN_REGISTER, /* write v; read -> v. State: the last value written (initially `initial`). */
  LIN_COUNTER,  /* add d -> the new value; read -> the value. State starts at `initial`. */
};

enum lin_kind {
  LIN_WRITE, /* register: arg = value written; result unused */
  LIN_READ,  /* both models: result = value read */
  LIN_ADD,   /* counter: arg = delta; result = value after the add */
};

struct lin_op {
  uint64_t key;    /* independent object */
  uint32_t client; /* for explanations only */
  enum lin_kind kind;
  int64_t arg;
  int64_t result;
  bool known;        /* false: the outcome is unknown (result ignored, complete ignored) */
  uint64_t invoke;   /* any time unit, the same for every op */
  uint64_t complete; /* >= invoke when known */
};

enum lin_result {
  LIN_OK = 1,      /* linearizable */
  LIN_FAIL = 0,    /* not linearizable; `why` says which key and operations */
  LIN_BUDGET = -1, /* the search exceeded its step budget (no verdict) */
  LIN_BADARG = -2, /* an op does not fit the model (e.g. ADD on a register) or out of memory */
};

struct lin_options {
  enum lin_model model;
  int64_t initial;    /* the value of every key before any operation */
  uint64_t max_steps; /* 0: 100,000,000 search steps over all keys */
};

/* Checks ops[0..n) (any order). `why` (may be NULL) receives a short explanation on failure:
 * the key, the model state reached at the deepest point of the search, the operation that could
 * not be linearized and those concurrent with it. Statistics go to *steps when non-NULL. */
enum lin_result lin_check(const struct lin_op *ops, size_t n, const struct lin_options *opt,
                          char *why, size_t whylen, uint64_t *steps);

/* Prints one operation ("c3 write(7) [10,25]", "c1 add(2)->9 [4,?]") into buf. */
int lin_op_format(const struct lin_op *op, char *buf, size_t len);

#endif

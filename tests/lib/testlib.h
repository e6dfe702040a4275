/* Shared test helpers: bounded waits, configs, simulated clusters. */
#ifndef RS_TESTS_TESTLIB_H
#define RS_TESTS_TESTLIB_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#include <raftstack/raftstack.h>

#include "stack/runtime.h"

/* Polls cond(arg) every millisecond until it holds (true) or timeout_ms passes (false). For
 * tests over real threads and sockets; simulated tests use rs_sim_run_until. */
bool wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* ck_assert wrapper: waits and fails the test with `what` when the condition does not hold. */
#define WAIT_UNTIL(cond, arg, ms, what) ck_assert_msg(wait_until((cond), (arg), (ms)), "timed out: %s", (what))

/* The source directory (RS_SRCDIR, set by make check; "." otherwise) joined with rel.
 * Returns a static buffer. */
const char *test_path(const char *rel);

/* Runs the suite with Check's normal output and returns the process exit status. */
int test_run(Suite *s);

/* Milliseconds on the monotonic clock. */
uint64_t test_now_ms(void);

#endif

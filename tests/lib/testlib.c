/* Shared test helpers. */
#include "tests/lib/testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint64_t test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms) {
  uint64_t deadline = test_now_ms() + timeout_ms;
  for (;;) {
    if (cond(arg)) return true;
    if (test_now_ms() >= deadline) return cond(arg);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

const char *test_path(const char *rel) {
  static char buf[4096];
  const char *src = getenv("RS_SRCDIR");
  snprintf(buf, sizeof(buf), "%s/%s", src ? src : ".", rel);
  return buf;
}

int test_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

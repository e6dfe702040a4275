/* raft-node's `bench`: K outstanding rs_raft_set_async calls for a time, with a latency histogram.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raftstack/raft.h>
#include <raftstack/raftstack.h>

#include "stack/runtime.h"
#include "tools/raft_node.h"

/*
 * bench K SIZE SECONDS WARMUP: the requests are issued and completed on the channel's loop
 * thread: the first K through rs_runtime_call, and each completion callback issues the next
 * request of its slot at once, so no thread hand-off sits in the measured path (the same design
 * as `raftstack perf rpc`). A request's latency runs from just before rs_raft_set_async to its
 * completion callback. Requests completed in the first WARMUP seconds are not measured.
 *
 * A future is freed inside its own callback: rs_raft_future_free only drops the owner's
 * reference (the handle keeps its own until the callback has returned). The histogram is a fixed
 * array (log-linear buckets, 32 per power of two, so a percentile is within 3% of the true
 * value): recording a latency never allocates.
 *
 * Lines written (the parent, raft-perf, reads them):
 *   progress t=SECONDS commits=TOTAL rate=PER_SECOND_IN_THE_LAST_SECOND
 *   bench commits= secs= errors= err= p50_ns= p90_ns= p99_ns= p999_ns= max_ns= mean_ns=
 */

#define SUB_BITS 5
#define SUB (1u << SUB_BITS)
#define N_BUCKETS (2 * SUB + (64 - SUB_BITS - 1) * SUB)
#define DRAIN_TIMEOUT_MS 30000
#define MAX_OUTSTANDING 65536

struct hist {
  uint64_t count[N_BUCKETS];
  uint64_t n, max, sum;
};

static unsigned bucket_of(uint64_t v) {
  if (v < 2 * SUB) return (unsigned)v;
  unsigned b = 63u - (unsigned)__builtin_clzll(v); /* b >= SUB_BITS + 1 */
  unsigned shift = b - SUB_BITS;
  return 2 * SUB + (b - SUB_BITS - 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* The middle of bucket i's range of values. */
static uint64_t bucket_value(unsigned i) {
  if (i < 2 * SUB) return i;
  unsigned b = (i - 2 * SUB) / SUB + SUB_BITS + 1, shift = b - SUB_BITS;
  uint64_t lo = ((uint64_t)(SUB + (i - 2 * SUB) % SUB)) << shift;
  return lo + ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v) {
  h->count[bucket_of(v)]++;
  h->n++;
  h->sum += v;
  if (v > h->max) h->max = v;
}

static uint64_t hist_pct(const struct hist *h, double p) {
  if (!h->n) return 0;
  uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999), seen = 0;
  if (rank < 1) rank = 1;
  for (unsigned i = 0; i < N_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= rank) return bucket_value(i) < h->max ? bucket_value(i) : h->max;
  }
  return h->max;
}

struct bench;
struct slot {
  struct bench *b;
  uint64_t issued_ns;
  struct rs_raft_future *f;
};

struct bench {
  struct rs_raft *h;
  struct rs_runtime *rt;
  uint8_t *payload;
  size_t size;
  struct slot *slots;
  size_t k;
  uint64_t measure_from_ns;
  atomic_bool stop;
  atomic_uint_fast64_t completed, errors, inflight;
  atomic_int first_err;
  /* Loop thread only. */
  struct hist hist;
  uint64_t measured, first_measured_ns, last_measured_ns;
  struct rs_completion drained;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static void on_done(void *arg, int status, const void *data, size_t len);

/* A slot stops: the last one to stop wakes the waiting thread. */
static void slot_end(struct bench *b) {
  if (atomic_fetch_sub(&b->inflight, 1) == 1) completion_done(&b->drained, 0);
}

/* Issues the slot's next request (loop thread). A request refused at once ends the slot. */
static void issue(struct slot *s) {
  struct bench *b = s->b;
  s->issued_ns = now_ns();
  int rc = rs_raft_set_async(b->h, b->payload, b->size, &s->f);
  if (rc == 0) rc = rs_raft_future_on_complete(s->f, on_done, s);
  if (rc == 0) return;
  int zero = 0;
  atomic_compare_exchange_strong(&b->first_err, &zero, rc);
  atomic_fetch_add(&b->errors, 1);
  slot_end(b);
}

static void on_done(void *arg, int status, const void *data, size_t len) {
  (void)data;
  (void)len;
  struct slot *s = arg;
  struct bench *b = s->b;
  uint64_t t = now_ns();
  rs_raft_future_free(s->f);
  s->f = NULL;
  if (status) {
    int zero = 0;
    atomic_compare_exchange_strong(&b->first_err, &zero, status);
    atomic_fetch_add(&b->errors, 1);
  } else {
    atomic_fetch_add(&b->completed, 1);
    if (s->issued_ns >= b->measure_from_ns && !atomic_load(&b->stop)) {
      hist_add(&b->hist, t - s->issued_ns);
      if (!b->measured++) b->first_measured_ns = s->issued_ns;
      b->last_measured_ns = t;
    }
  }
  /* A failed request is not retried: the run reports it and fails. */
  if (status == 0 && !atomic_load(&b->stop))
    issue(s);
  else
    slot_end(b);
}

static void start_on_loop(void *arg) {
  struct bench *b = arg;
  for (size_t i = 0; i < b->k; i++)
    issue(&b->slots[i]);
}

/* Runs the load for secs + warmup seconds, printing one progress line a second. */
static void run_load(struct bench *b, unsigned secs, unsigned warmup, int out) {
  uint64_t start = now_ns(), prev = 0;
  b->measure_from_ns = start + (uint64_t)warmup * 1000000000ull;
  atomic_store(&b->inflight, b->k);
  if (rs_runtime_call(b->rt, start_on_loop, b)) {
    atomic_store(&b->inflight, 0);
    atomic_fetch_add(&b->errors, 1);
    atomic_store(&b->first_err, RS_ESHUTDOWN);
    return;
  }
  for (unsigned t = 1; t <= secs + warmup && atomic_load(&b->inflight) > 0; t++) {
    uint64_t due = start + (uint64_t)t * 1000000000ull, now = now_ns();
    if (due > now) sleep_ns(due - now);
    uint64_t c = atomic_load(&b->completed);
    raft_node_say(out, "progress t=%u commits=%" PRIu64 " rate=%" PRIu64 "%s", t, c, c - prev,
                  t <= warmup ? " warmup" : "");
    prev = c;
  }
  atomic_store(&b->stop, true);
}

int raft_node_bench(struct rs_raft *h, struct rs_runtime *rt, const char *args, int out) {
  unsigned long long k = 0, size = 0, secs = 0, warmup = 0;
  if (sscanf(args, "%llu %llu %llu %llu", &k, &size, &secs, &warmup) != 4 || !k ||
      k > MAX_OUTSTANDING || !size || size > 1000000 || !secs || secs > 86400 || warmup > 3600) {
    raft_node_say(out, "error usage: bench OUTSTANDING SIZE SECONDS WARMUP_SECONDS");
    return -1;
  }
  struct bench *b = calloc(1, sizeof(*b));
  if (b) b->slots = calloc(k, sizeof(*b->slots));
  if (b) b->payload = malloc(size);
  if (!b || !b->slots || !b->payload) {
    raft_node_say(out, "error out of memory");
    if (b) free(b->slots);
    free(b);
    return -1;
  }
  b->h = h;
  b->rt = rt;
  b->k = k;
  b->size = size;
  for (size_t i = 0; i < size; i++)
    b->payload[i] = (uint8_t)('a' + i % 26);
  for (size_t i = 0; i < k; i++)
    b->slots[i].b = b;
  completion_init(&b->drained);

  run_load(b, (unsigned)secs, (unsigned)warmup, out);
  /* The last requests complete (or fail). */
  int rc = completion_wait(rt, &b->drained, (uint64_t)DRAIN_TIMEOUT_MS * 1000000ull);

  uint64_t span =
      b->last_measured_ns > b->measure_from_ns ? b->last_measured_ns - b->measure_from_ns : 0;
  uint64_t errors = atomic_load(&b->errors);
  int err = atomic_load(&b->first_err);
  if (rc) {
    err = err ? err : RS_ETIMEDOUT;
    errors += atomic_load(&b->inflight);
  }
  raft_node_say(out,
                "bench commits=%" PRIu64 " secs=%.3f errors=%" PRIu64 " err=%s p50_ns=%" PRIu64
                " p90_ns=%" PRIu64 " p99_ns=%" PRIu64 " p999_ns=%" PRIu64 " max_ns=%" PRIu64
                " mean_ns=%" PRIu64,
                b->measured, (double)span / 1e9, errors, err ? rs_errname(err) : "-",
                hist_pct(&b->hist, 0.50), hist_pct(&b->hist, 0.90), hist_pct(&b->hist, 0.99),
                hist_pct(&b->hist, 0.999), b->hist.max, b->hist.n ? b->hist.sum / b->hist.n : 0);
  if (rc == 0) {
    completion_fini(&b->drained);
    free(b->slots);
    free(b->payload);
    free(b);
  } /* else requests are still out and may call back into b: it stays allocated */
  return errors || rc ? -1 : 0;
}

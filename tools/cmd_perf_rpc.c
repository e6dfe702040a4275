/* `raftstack perf rpc`: unicast request/response rate and latency between two member processes. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/perf_group.h"
#include "tools/tools.h"

/*
 * Two members on 127.0.0.1 over the given XML stack: A answers, B asks. Once both see the view of
 * two, B keeps `outstanding` requests in flight: it sends that many, and each response (on the
 * loop thread, in the receive callback) sends the next request at once, so no thread hand-off
 * sits in the measured path. A answers in its receive callback too, with a response of the same
 * size. Both are unicasts, regular (ordered, through UNICAST3) unless --oob.
 *
 *   request   'Q' | request id (u64) | filler up to `size`      (big-endian)
 *   response  'A' | the request's id | filler up to `size`
 *
 * A send from a callback cannot block: when the stack pushes back (flow control, a full
 * transport queue) it returns RS_EAGAIN, and the message goes to a thread that may block (B's
 * main thread, A's helper); such deferred sends are counted and printed.
 *
 * The first `warmup` requests are not measured. Latency is per request, from just before it is
 * handed to the channel to its response's arrival in B's callback; the rate is the measured
 * requests over the time from the first measured send to the last response.
 */

#define REQ 'Q'
#define RSP 'A'
#define HDR_LEN 9
#define MAX_SIZE 1000000
#define MAX_OUTSTANDING 10000

/* A response A could not send from its callback. */
struct pending {
  struct pending *next;
  struct rs_addr dest;
  size_t len;
  uint8_t data[];
};

struct rpc {
  struct pg_node node; /* first: the receiver's arg is the whole state */
  struct pg_opts o;
  uint64_t count, warmup, total;
  size_t size;
  uint64_t outstanding;
  unsigned flags;

  /* B, under node.lock. */
  struct rs_addr peer;
  uint64_t next_id, answered, n_lat, t_start, t_end, errors, deferred_total;
  uint64_t *sent_ns;  /* per request id */
  uint8_t *answered_bits;
  uint64_t *lat;      /* per measured request, ns */
  uint64_t *deferred; /* ids the callback could not send (at most `outstanding`) */
  size_t n_deferred;
  uint8_t *buf;       /* the loop thread's request */
  char first_error[160];

  /* A, under node.lock. */
  struct pending *pend_head, *pend_tail;
  uint64_t responses_deferred;
  bool stopping;
  pthread_t helper;
  bool helper_started;
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack perf rpc [--config FILE] [--count N] [--size BYTES]\n"
          "                          [--outstanding K] [--warmup N] [--oob] [--timeout SECONDS]\n"
          "                          [--verbose] [-Dname=value ...]\n"
          "\n"
          "Starts two member processes on 127.0.0.1 over an XML stack; once both see the view of\n"
          "two, B sends unicast requests of BYTES bytes to A, which answers each with a unicast\n"
          "response of the same size. B keeps K requests in flight. Prints requests/s and the\n"
          "latency distribution (microseconds) of the measured requests.\n"
          "\n"
          "  --config FILE      the stack (default udp.xml); a bare name is looked up in the\n"
          "                     working directory, then in the source tree's or installed\n"
          "                     xml-configs. Ports, the multicast group (TTL 0) and TCPPING's\n"
          "                     hosts are chosen free and passed as rs.* properties (see\n"
          "                     raftstack perf multicast --help)\n"
          "  --count N          measured requests (default 50000)\n"
          "  --size BYTES       bytes per request and per response (default 1000, %d..%d)\n"
          "  --outstanding K    requests in flight (default 1, at most %d)\n"
          "  --warmup N         requests sent first and not measured (default 1000)\n"
          "  --oob              requests and responses are OOB (not ordered by UNICAST3)\n"
          "  --timeout S        give up after S seconds without a response (default 10)\n"
          "  --verbose          print both members' non-zero protocol counters at the end\n"
          "  -Dname=value       a property for ${name} in the XML (wins over ours)\n"
          "\n"
          "The last line is for scripts:\n"
          "  perf=rpc config=udp.xml size=1000 count=50000 outstanding=1 warmup=1000 reqs_s=...\n"
          "  p50_us=... p90_us=... p99_us=... p999_us=... max_us=... errors=0 missing=0\n"
          "(the exit status is 0 only with errors=0 missing=0)\n",
          HDR_LEN, MAX_SIZE, MAX_OUTSTANDING);
}

static int parse_args(int argc, char **argv, struct rpc *s) {
  static const struct option longopts[] = {
      PG_COMMON_LONGOPTS,
      {"count", required_argument, NULL, 'n'},  {"size", required_argument, NULL, 's'},
      {"outstanding", required_argument, NULL, 'k'}, {"warmup", required_argument, NULL, 'w'},
      {"oob", no_argument, NULL, 'O'},          {NULL, 0, NULL, 0},
  };
  uint64_t v;
  int opt, rc;
  optind = 1;
  while ((opt = getopt_long(argc, argv, PG_COMMON_SHORTOPTS "n:s:k:w:", longopts, NULL)) != -1) {
    if ((rc = pg_common_opt(&s->o, opt, optarg, "rpc")) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (opt) {
    case 'n':
      if (pg_parse_u64(optarg, 1, 100000000, "--count", "rpc", &s->count)) return TOOL_USAGE;
      break;
    case 's':
      if (pg_parse_u64(optarg, HDR_LEN, MAX_SIZE, "--size", "rpc", &v)) return TOOL_USAGE;
      s->size = (size_t)v;
      break;
    case 'k':
      if (pg_parse_u64(optarg, 1, MAX_OUTSTANDING, "--outstanding", "rpc", &s->outstanding))
        return TOOL_USAGE;
      break;
    case 'w':
      if (pg_parse_u64(optarg, 0, 100000000, "--warmup", "rpc", &s->warmup)) return TOOL_USAGE;
      break;
    case 'O': s->flags = RS_MSG_OOB; break;
    case 'h': usage(stdout); return -1;
    default: usage(stderr); return TOOL_USAGE;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "raftstack perf rpc: unexpected argument '%s'\n", argv[optind]);
    return TOOL_USAGE;
  }
  s->total = s->warmup + s->count;
  return pg_resolve_config(&s->o, "rpc");
}

/* ---- B: requests ---------------------------------------------------------------------------- */

/* Takes the next request id if fewer than `outstanding` are in flight. Under node.lock. */
static bool next_request(struct rpc *s, uint64_t *id) {
  if (s->next_id >= s->total || s->next_id - s->answered >= s->outstanding) return false;
  *id = s->next_id++;
  s->sent_ns[*id] = pg_now_ns();
  if (*id == s->warmup) s->t_start = s->sent_ns[*id];
  return true;
}

static void fill(uint8_t *buf, char type, uint64_t id) {
  buf[0] = (uint8_t)type;
  pg_put_u64(buf + 1, id);
}

static void bad_response(struct rpc *s, const char *what, uint64_t id) {
  s->errors++;
  if (!s->first_error[0])
    snprintf(s->first_error, sizeof(s->first_error), "%s (id %" PRIu64 ")", what, id);
}

/* A response: its latency, then the next request straight from the callback. */
static void on_response(struct rpc *s, const uint8_t *p, size_t len) {
  uint64_t t = pg_now_ns(), id = len >= HDR_LEN ? pg_get_u64(p + 1) : 0, next;
  pthread_mutex_lock(&s->node.lock);
  if (len != s->size) bad_response(s, "response of the wrong size", id);
  else if (id >= s->next_id) bad_response(s, "response to no request", id);
  else if (s->answered_bits[id >> 3] & (1u << (id & 7))) bad_response(s, "second response", id);
  else {
    s->answered_bits[id >> 3] |= (uint8_t)(1u << (id & 7));
    s->answered++;
    if (id >= s->warmup) s->lat[s->n_lat++] = t - s->sent_ns[id];
    s->t_end = t;
    if (s->answered == s->total) pthread_cond_broadcast(&s->node.changed);
  }
  bool more = next_request(s, &next);
  pthread_mutex_unlock(&s->node.lock);
  if (!more) return;
  fill(s->buf, REQ, next);
  if (rs_channel_send_nb(s->node.ch, &s->peer, s->buf, s->size, s->flags) == 0) return;
  pthread_mutex_lock(&s->node.lock);
  s->deferred[s->n_deferred++] = next;
  s->deferred_total++;
  pthread_cond_broadcast(&s->node.changed);
  pthread_mutex_unlock(&s->node.lock);
}

/* ---- A: responses --------------------------------------------------------------------------- */

static void defer_response(struct rpc *s, const struct rs_addr *dest, const uint8_t *data,
                           size_t len) {
  struct pending *p = malloc(sizeof(*p) + len);
  if (!p) return; /* B times out and reports it missing */
  p->next = NULL;
  p->dest = *dest;
  p->len = len;
  memcpy(p->data, data, len);
  pthread_mutex_lock(&s->node.lock);
  if (s->pend_tail) s->pend_tail->next = p;
  else s->pend_head = p;
  s->pend_tail = p;
  s->responses_deferred++;
  pthread_cond_broadcast(&s->node.changed);
  pthread_mutex_unlock(&s->node.lock);
}

static void on_request(struct rpc *s, const struct rs_addr *src, const uint8_t *p, size_t len) {
  if (len != s->size) return; /* cannot come from B: it would see the id go unanswered */
  fill(s->buf, RSP, pg_get_u64(p + 1));
  if (rs_channel_send_nb(s->node.ch, src, s->buf, len, s->flags) != 0)
    defer_response(s, src, s->buf, len);
}

/* A's helper: sends, blocking, what the callback could not. */
static void *helper_main(void *arg) {
  struct rpc *s = arg;
  pthread_mutex_lock(&s->node.lock);
  for (;;) {
    while (!s->pend_head && !s->stopping) pthread_cond_wait(&s->node.changed, &s->node.lock);
    struct pending *p = s->pend_head;
    if (!p) break;
    s->pend_head = p->next;
    if (!s->pend_head) s->pend_tail = NULL;
    pthread_mutex_unlock(&s->node.lock);
    rs_channel_send(s->node.ch, &p->dest, p->data, p->len, s->flags);
    free(p);
    pthread_mutex_lock(&s->node.lock);
  }
  pthread_mutex_unlock(&s->node.lock);
  return NULL;
}

/* ---- both ----------------------------------------------------------------------------------- */

static void rpc_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                        unsigned flags) {
  struct rpc *s = arg;
  const uint8_t *p = data;
  if (len == 0) return;
  if (p[0] == REQ) on_request(s, src, p, len);
  else if (p[0] == RSP) on_response(s, p, len);
}

static void rpc_view(void *arg, const struct rs_view *v) {
  pg_on_view(&((struct rpc *)arg)->node, v);
}

static const struct rs_receiver rpc_receiver = {.receive = rpc_receive, .view = rpc_view};

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest latency with at least p of the samples at or below it. */
static uint64_t percentile(const uint64_t *v, uint64_t n, double p) {
  if (n == 0) return 0;
  uint64_t rank = (uint64_t)ceil(p * (double)n);
  return v[rank ? rank - 1 : 0];
}

/* Sends the deferred requests and keeps K in flight until all are answered or nothing comes
 * for the timeout. Under node.lock. */
static void drive(struct rpc *s) {
  uint64_t progress = UINT64_MAX, since = pg_now_ns(), id;
  uint8_t *buf = malloc(s->size);
  if (!buf) return;
  memset(buf, 'x', s->size);
  while (s->answered < s->total) {
    bool have = s->n_deferred > 0;
    if (have) id = s->deferred[--s->n_deferred];
    else have = next_request(s, &id);
    if (have) {
      pthread_mutex_unlock(&s->node.lock);
      fill(buf, REQ, id);
      int rc = rs_channel_send(s->node.ch, &s->peer, buf, s->size, s->flags);
      pthread_mutex_lock(&s->node.lock);
      if (rc) bad_response(s, rs_strerror(rc), id);
      if (rc) break;
      continue;
    }
    uint64_t now = pg_now_ns();
    if (s->answered != progress) {
      progress = s->answered;
      since = now;
    } else if (now - since > (uint64_t)s->o.timeout_s * 1000000000ull) {
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->node.changed, &s->node.lock, &ts);
  }
  free(buf);
}

static int run_requester(struct rpc *s) {
  struct pg_node *n = &s->node;
  struct rs_addr self = rs_channel_address(n->ch);
  pthread_mutex_lock(&n->lock);
  for (size_t i = 0; i < n->n_view; i++)
    if (!rs_addr_eq(&n->view[i], &self)) s->peer = n->view[i];
  drive(s);
  uint64_t missing = s->total - s->answered, k = s->n_lat;
  qsort(s->lat, k, sizeof(s->lat[0]), cmp_u64);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < k; i++) sum += s->lat[i];
  if (s->first_error[0])
    fprintf(stderr, "raftstack perf: member %s: first error: %s\n", n->name, s->first_error);
  if (missing)
    fprintf(stderr, "raftstack perf: member %s: %" PRIu64 " of %" PRIu64 " requests unanswered "
            "after %u s without a response\n", n->name, missing, s->total, s->o.timeout_s);
  pg_report(n, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
            " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, k,
            k && s->t_end > s->t_start ? s->t_end - s->t_start : 0, s->errors, missing,
            s->deferred_total, k ? s->lat[0] : 0, percentile(s->lat, k, 0.5),
            percentile(s->lat, k, 0.9), percentile(s->lat, k, 0.99), percentile(s->lat, k, 0.999),
            k ? s->lat[k - 1] : 0, k ? sum / k : 0);
  pthread_mutex_unlock(&n->lock);
  return 0;
}

static int rpc_run(struct pg_node *n, void *arg) {
  struct rpc *s = arg;
  if (n->index == 1) return run_requester(s);
  s->helper_started = pthread_create(&s->helper, NULL, helper_main, s) == 0;
  pg_report(n, "responder");
  return 0;
}

static void rpc_stopped(struct pg_node *n, void *arg) {
  struct rpc *s = arg;
  if (!s->helper_started) return;
  pthread_mutex_lock(&n->lock);
  s->stopping = true;
  pthread_cond_broadcast(&n->changed);
  pthread_mutex_unlock(&n->lock);
  pthread_join(s->helper, NULL);
  for (struct pending *p = s->pend_head, *q; p; p = q) {
    q = p->next;
    free(p);
  }
  if (s->responses_deferred)
    fprintf(stderr, "raftstack perf: member %s: %" PRIu64 " responses waited for the stack to "
            "take them (flow control or a full transport queue)\n", n->name,
            s->responses_deferred);
}

static const struct pg_bench rpc_bench = {.recv = &rpc_receiver, .run = rpc_run,
                                          .stopped = rpc_stopped};

/* ---- the parent ----------------------------------------------------------------------------- */

struct rpc_result {
  uint64_t n, ns, errors, missing, deferred, min, p50, p90, p99, p999, max, mean;
};

static double us(uint64_t ns) { return (double)ns / 1e3; }

static int report(struct rpc *s, struct pg_member *m) {
  char line[1024];
  struct rpc_result r = {0};
  bool ok = pg_read_result(&m[1], line, sizeof(line)) &&
            sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                   " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
                   &r.n, &r.ns, &r.errors, &r.missing, &r.deferred, &r.min, &r.p50, &r.p90,
                   &r.p99, &r.p999, &r.max, &r.mean) == 12;
  pg_read_result(&m[0], line, sizeof(line));
  if (!ok) {
    fprintf(stderr, "raftstack perf rpc: the requester gave no result\n");
    r.missing = s->total;
  }
  double rate = pg_per_sec(r.n, r.ns);
  printf("requests: %" PRIu64 " measured in %.3f s: %.0f requests/s, %.1f MB/s each way",
         r.n, (double)r.ns / 1e9, rate, rate * (double)s->size / 1e6);
  if (r.deferred) printf(" (%" PRIu64 " requests waited for the stack)", r.deferred);
  printf("\nlatency (us): min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  "
         "mean %.1f\n", us(r.min), us(r.p50), us(r.p90), us(r.p99), us(r.p999), us(r.max),
         us(r.mean));
  fflush(stdout);
  pg_finish(m, 2, s->o.verbose);
  printf("perf=rpc config=%s size=%zu count=%" PRIu64 " outstanding=%" PRIu64 " warmup=%" PRIu64
         " reqs_s=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%"
         PRIu64 " missing=%" PRIu64 "\n", pg_config_base(&s->o), s->size, s->count,
         s->outstanding, s->warmup, rate, us(r.p50), us(r.p90), us(r.p99), us(r.p999),
         us(r.max), r.errors, r.missing);
  return ok && !r.errors && !r.missing ? TOOL_OK : TOOL_FAIL;
}

static bool alloc_state(struct rpc *s) {
  s->sent_ns = calloc(s->total, sizeof(uint64_t));
  s->lat = calloc(s->count, sizeof(uint64_t));
  s->answered_bits = calloc(1, (size_t)(s->total / 8 + 1));
  s->deferred = calloc(s->outstanding, sizeof(uint64_t));
  s->buf = malloc(s->size);
  if (s->buf) memset(s->buf, 'x', s->size);
  return s->sent_ns && s->lat && s->answered_bits && s->deferred && s->buf;
}

static void free_state(struct rpc *s) {
  free(s->sent_ns);
  free(s->lat);
  free(s->answered_bits);
  free(s->deferred);
  free(s->buf);
  free(s);
}

int cmd_perf_rpc(int argc, char **argv) {
  struct rpc *s = calloc(1, sizeof(*s));
  if (!s) return TOOL_FAIL;
  s->o.members = 2;
  s->o.timeout_s = 10;
  s->count = 50000;
  s->warmup = 1000;
  s->size = 1000;
  s->outstanding = 1;
  int rc = parse_args(argc, argv, s);
  struct pg_run run;
  struct pg_member m[2];
  if (rc == 0 && !alloc_state(s)) rc = TOOL_FAIL;
  if (rc == 0) rc = pg_run_init(&run, &s->o);
  if (rc == 0) {
    printf("perf rpc: B asks, A answers over %s, 127.0.0.1 ports %d..; %" PRIu64
           " warm-up requests, then %" PRIu64 " of %zu bytes, %" PRIu64 " outstanding%s\n",
           s->o.config, run.base_port, s->warmup, s->count, s->size, s->outstanding,
           s->flags ? ", OOB" : "");
    rc = pg_start(&run, m, &s->node, &rpc_bench, s);
  }
  if (rc == 0) rc = report(s, m);
  free_state(s);
  return rc < 0 ? TOOL_OK : rc;
}

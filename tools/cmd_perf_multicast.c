/* `raftstack perf multicast`: a group stack's throughput, one process per member (as MPerf). */
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/perf_group.h"
#include "tools/tools.h"

/*
 * N members on 127.0.0.1 over the given XML stack; once all see one view of all, each of the
 * first S sends `count` multicasts of `size` bytes, as fast as rs_channel_send lets it (it blocks
 * while flow control or the transport push back). Every member, senders included (their own
 * multicasts loop back, as JGroups delivers them), receives everything and checks it:
 *
 *   payload   'M' | sender index (u32) | seqno (u64) | filler up to `size`    (big-endian)
 *
 * A seqno seen before is a duplicate; one that is not the previous one from that sender + 1 is
 * out of order; a payload of the wrong size, sender or range is malformed. A bitmap per sender
 * tells exactly which messages are missing when a member gives up (no new message for
 * --timeout seconds).
 *
 * Timing is the receiver's, from its first to its last message: msgs/s is everything it
 * received (all senders, its own included) over that time. Startup is not in it (the clock starts
 * at the first message), but the first messages meet cold caches and empty windows, so the rate
 * after the first 10% is printed beside it.
 */

#define MAGIC 'M'
#define HDR_LEN 13
#define MAX_SIZE 1000000
#define MAX_COUNT 100000000ull

struct mc {
  struct pg_node node; /* first: the receiver's arg is the whole state */
  struct pg_opts o;
  int senders;
  uint64_t count;
  size_t size;

  /* Receiving: on the loop thread, under node.lock. */
  uint8_t *seen[PG_MAX_MEMBERS]; /* one bit per seqno per sender */
  uint64_t next[PG_MAX_MEMBERS]; /* the seqno expected next from each sender */
  uint64_t have[PG_MAX_MEMBERS];
  uint64_t delivered, bytes, dups, reorders, bad;
  uint64_t first_ns, last_ns, t10_ns, n10;
  char first_error[160];

  /* Sending: the sender thread. */
  pthread_t thread;
  bool thread_started;
  atomic_bool send_done;
  atomic_uint_fast64_t sent;
  uint64_t send_ns;
  int send_rc;
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack perf multicast [--config FILE] [--members N] [--senders S]\n"
          "                                [--count N] [--size BYTES] [--timeout SECONDS]\n"
          "                                [--verbose] [-Dname=value ...]\n"
          "\n"
          "Starts N member processes on 127.0.0.1 over an XML stack, waits until every member\n"
          "sees a view of all, then each of the first S members multicasts N messages of BYTES\n"
          "bytes (blocking when the stack pushes back). Every member receives all of them, checks\n"
          "that each sender's messages arrive exactly once and in order, and reports messages/s\n"
          "and MB/s from its first to its last message (and after the first 10%%).\n"
          "\n"
          "  --config FILE    the stack (default udp.xml); a bare name is looked up in the\n"
          "                   working directory, then in the source tree's or installed\n"
          "                   xml-configs. Ports, the multicast group (TTL 0) and TCPPING's\n"
          "                   hosts are passed as rs.port, rs.mcast_addr, rs.mcast_port, rs.ttl,\n"
          "                   rs.initial_hosts and rs.hosts_range, chosen free for this run\n"
          "  --members N      member processes (default 3, at most %d)\n"
          "  --senders S      how many of them send (default: all)\n"
          "  --count N        messages per sender (default 100000)\n"
          "  --size BYTES     bytes per message (default 1000, %d..%d)\n"
          "  --timeout S      a member gives up after S seconds without a new message and\n"
          "                   reports what is missing (default 10)\n"
          "  --verbose        print every member's non-zero protocol counters at the end\n"
          "  -Dname=value     a property for ${name} in the XML (wins over the ones above)\n"
          "\n"
          "The last line is for scripts:\n"
          "  perf=multicast config=udp.xml members=3 senders=3 size=1000 count=100000\n"
          "  msgs_s_per_member=... MB_s_per_member=... min_msgs_s=...\n"
          "  steady_msgs_s_per_member=... errors=0 missing=0\n"
          "(per-member figures are means over the members; errors counts duplicates, messages out\n"
          "of order and malformed ones; the exit status is 0 only with errors=0 missing=0)\n",
          PG_MAX_MEMBERS, HDR_LEN, MAX_SIZE);
}

static int parse_args(int argc, char **argv, struct mc *s) {
  static const struct option longopts[] = {
      PG_COMMON_LONGOPTS,
      {"members", required_argument, NULL, 'm'}, {"senders", required_argument, NULL, 'S'},
      {"count", required_argument, NULL, 'n'},   {"size", required_argument, NULL, 's'},
      {NULL, 0, NULL, 0},
  };
  uint64_t v, senders = 0;
  int opt, rc;
  optind = 1;
  while ((opt = getopt_long(argc, argv, PG_COMMON_SHORTOPTS "m:S:n:s:", longopts, NULL)) != -1) {
    if ((rc = pg_common_opt(&s->o, opt, optarg, "multicast")) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (opt) {
    case 'm':
      if (pg_parse_u64(optarg, 1, PG_MAX_MEMBERS, "--members", "multicast", &v))
        return TOOL_USAGE;
      s->o.members = (int)v;
      break;
    case 'S':
      if (pg_parse_u64(optarg, 1, PG_MAX_MEMBERS, "--senders", "multicast", &senders))
        return TOOL_USAGE;
      break;
    case 'n':
      if (pg_parse_u64(optarg, 1, MAX_COUNT, "--count", "multicast", &s->count)) return TOOL_USAGE;
      break;
    case 's':
      if (pg_parse_u64(optarg, HDR_LEN, MAX_SIZE, "--size", "multicast", &v)) return TOOL_USAGE;
      s->size = (size_t)v;
      break;
    case 'h': usage(stdout); return -1;
    default: usage(stderr); return TOOL_USAGE;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "raftstack perf multicast: unexpected argument '%s'\n", argv[optind]);
    return TOOL_USAGE;
  }
  if (senders > (uint64_t)s->o.members) {
    fprintf(stderr, "raftstack perf multicast: --senders %" PRIu64 " is more than --members %d\n",
            senders, s->o.members);
    return TOOL_USAGE;
  }
  s->senders = senders ? (int)senders : s->o.members;
  return pg_resolve_config(&s->o, "multicast");
}

/* ---- receiving (loop thread) ---------------------------------------------------------------- */

static void note_error(struct mc *s, const char *what, uint32_t who, uint64_t seq) {
  if (s->first_error[0]) return;
  snprintf(s->first_error, sizeof(s->first_error), "%s (sender %" PRIu32 ", seqno %" PRIu64 ")",
           what, who, seq);
}

/* Checks one message against the sender's bitmap and order; counts it. Under node.lock. */
static void take(struct mc *s, const uint8_t *p, size_t len, uint64_t t) {
  uint32_t who = len >= HDR_LEN ? pg_get_u32(p + 1) : 0;
  uint64_t seq = len >= HDR_LEN ? pg_get_u64(p + 5) : 0;
  if (len != s->size || p[0] != MAGIC || who >= (uint32_t)s->senders || seq >= s->count) {
    s->bad++;
    note_error(s, "malformed message", who, seq);
    return;
  }
  uint8_t bit = (uint8_t)(1u << (seq & 7));
  if (s->seen[who][seq >> 3] & bit) {
    s->dups++;
    note_error(s, "duplicate", who, seq);
    return;
  }
  s->seen[who][seq >> 3] |= bit;
  if (seq != s->next[who]) {
    s->reorders++;
    note_error(s, "out of order", who, seq);
  }
  s->next[who] = seq + 1;
  s->have[who]++;
  s->bytes += len;
  if (s->delivered++ == 0) s->first_ns = t;
  s->last_ns = t;
  if (s->delivered == s->n10) s->t10_ns = t;
}

static void mc_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct mc *s = arg;
  uint64_t t = pg_now_ns();
  pthread_mutex_lock(&s->node.lock);
  take(s, data, len, t);
  if (s->delivered == s->count * (uint64_t)s->senders) pthread_cond_broadcast(&s->node.changed);
  pthread_mutex_unlock(&s->node.lock);
}

static void mc_view(void *arg, const struct rs_view *v) {
  pg_on_view(&((struct mc *)arg)->node, v);
}

static const struct rs_receiver mc_receiver = {.receive = mc_receive, .view = mc_view};

/* ---- sending -------------------------------------------------------------------------------- */

static void *sender_main(void *arg) {
  struct mc *s = arg;
  uint8_t *buf = malloc(s->size);
  uint64_t t0 = pg_now_ns();
  if (!buf) s->send_rc = RS_ENOMEM;
  else {
    memset(buf, 'x', s->size);
    buf[0] = MAGIC;
    pg_put_u32(buf + 1, (uint32_t)s->node.index);
  }
  for (uint64_t seq = 0; buf && seq < s->count; seq++) {
    pg_put_u64(buf + 5, seq);
    if ((s->send_rc = rs_channel_send(s->node.ch, NULL, buf, s->size, 0)) != 0) break;
    atomic_store_explicit(&s->sent, seq + 1, memory_order_relaxed);
  }
  s->send_ns = pg_now_ns() - t0;
  free(buf);
  pthread_mutex_lock(&s->node.lock);
  atomic_store(&s->send_done, true);
  pthread_cond_broadcast(&s->node.changed);
  pthread_mutex_unlock(&s->node.lock);
  return NULL;
}

/* ---- the member ----------------------------------------------------------------------------- */

static bool finished(const struct mc *s) {
  return s->delivered == s->count * (uint64_t)s->senders &&
         (!s->thread_started || atomic_load(&s->send_done));
}

/* Until everything is in and sent, or nothing new for the timeout. Under node.lock. */
static void wait_done(struct mc *s) {
  uint64_t progress = UINT64_MAX, since = pg_now_ns();
  while (!finished(s)) {
    uint64_t now = pg_now_ns(), mark = s->delivered + atomic_load(&s->sent);
    if (mark != progress) {
      progress = mark;
      since = now;
    } else if (now - since > (uint64_t)s->o.timeout_s * 1000000000ull) {
      return;
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
}

/* "missing 12 from B: 1000-1009 1500 1733" on stderr, per sender with a shortfall. */
static void print_missing(const struct mc *s) {
  for (int w = 0; w < s->senders; w++) {
    if (s->have[w] == s->count) continue;
    fprintf(stderr, "raftstack perf: member %s: missing %" PRIu64 " of %" PRIu64 " from %c:",
            s->node.name, s->count - s->have[w], s->count, w < 26 ? 'A' + w : '?');
    int ranges = 0;
    for (uint64_t q = 0; q < s->count && ranges < 5;) {
      if (s->seen[w][q >> 3] & (1u << (q & 7))) {
        q++;
        continue;
      }
      uint64_t e = q;
      while (e + 1 < s->count && !(s->seen[w][(e + 1) >> 3] & (1u << ((e + 1) & 7)))) e++;
      if (e == q) fprintf(stderr, " %" PRIu64, q);
      else fprintf(stderr, " %" PRIu64 "-%" PRIu64, q, e);
      ranges++;
      q = e + 1;
    }
    fprintf(stderr, "%s\n", ranges == 5 ? " ..." : "");
  }
}

static int mc_run(struct pg_node *n, void *arg) {
  struct mc *s = arg;
  if (n->index < s->senders) {
    s->thread_started = pthread_create(&s->thread, NULL, sender_main, s) == 0;
    if (!s->thread_started) fprintf(stderr, "raftstack perf: member %s: no thread\n", n->name);
  }
  pthread_mutex_lock(&n->lock);
  wait_done(s);
  uint64_t total = s->count * (uint64_t)s->senders, missing = total - s->delivered;
  uint64_t steady = s->t10_ns && s->delivered > s->n10 ? s->delivered - s->n10 : 0;
  bool sent_all = atomic_load(&s->send_done);
  if (missing) print_missing(s);
  if (s->first_error[0])
    fprintf(stderr, "raftstack perf: member %s: first error: %s\n", n->name, s->first_error);
  if (s->thread_started && !sent_all)
    fprintf(stderr, "raftstack perf: member %s: its sending is stuck after %" PRIu64 " of %" PRIu64
            "\n", n->name, (uint64_t)atomic_load(&s->sent), s->count);
  if (s->send_rc)
    fprintf(stderr, "raftstack perf: member %s: send: %s\n", n->name, rs_strerror(s->send_rc));
  pg_report(n, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
            " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, s->delivered, s->bytes,
            s->delivered > 1 ? s->last_ns - s->first_ns : 0, steady,
            steady ? s->last_ns - s->t10_ns : 0, s->dups, s->reorders, s->bad, missing,
            (uint64_t)atomic_load(&s->sent), sent_all ? s->send_ns : 0);
  pthread_mutex_unlock(&n->lock);
  return 0;
}

/* After disconnect a blocked send returns, so the thread ends. */
static void mc_stopped(struct pg_node *n, void *arg) {
  struct mc *s = arg;
  if (s->thread_started) pthread_join(s->thread, NULL);
}

static const struct pg_bench mc_bench = {.recv = &mc_receiver, .run = mc_run,
                                         .stopped = mc_stopped};

/* ---- the parent ----------------------------------------------------------------------------- */

struct member_result {
  uint64_t msgs, bytes, ns, steady, steady_ns, dups, reorders, bad, missing, sent, send_ns;
};

static bool parse_result(const char *line, struct member_result *r) {
  return sscanf(line,
                "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
                &r->msgs, &r->bytes, &r->ns, &r->steady, &r->steady_ns, &r->dups, &r->reorders,
                &r->bad, &r->missing, &r->sent, &r->send_ns) == 11;
}

static void print_member(const struct mc *s, int i, const struct member_result *r) {
  uint64_t total = s->count * (uint64_t)s->senders;
  printf("member %c: received %" PRIu64 " of %" PRIu64 " in %.3f s: %.0f msgs/s, %.1f MB/s "
         "(after the first 10%%: %.0f msgs/s)",
         'A' + i, r->msgs, total, (double)r->ns / 1e9, pg_per_sec(r->msgs, r->ns),
         pg_per_sec(r->bytes, r->ns) / 1e6, pg_per_sec(r->steady, r->steady_ns));
  if (i < s->senders && r->send_ns)
    printf("; sent %" PRIu64 " in %.3f s", r->sent, (double)r->send_ns / 1e9);
  else if (i < s->senders)
    printf("; sent %" PRIu64 " (not finished)", r->sent);
  if (r->dups + r->reorders + r->bad + r->missing)
    printf("; ERRORS: %" PRIu64 " duplicate, %" PRIu64 " out of order, %" PRIu64
           " malformed, %" PRIu64 " missing", r->dups, r->reorders, r->bad, r->missing);
  printf("\n");
}

static int collect(struct mc *s, struct pg_member *m) {
  int n = s->o.members, got = 0;
  double sum_msgs = 0, sum_mb = 0, sum_steady = 0, min_msgs = 0;
  uint64_t errors = 0, missing = 0;
  for (int i = 0; i < n; i++) {
    char line[1024];
    struct member_result r = {0};
    if (!pg_read_result(&m[i], line, sizeof(line)) || !parse_result(line, &r)) {
      fprintf(stderr, "raftstack perf multicast: member %c gave no result\n", 'A' + i);
      missing += s->count * (uint64_t)s->senders;
      continue;
    }
    got++;
    print_member(s, i, &r);
    double rate = pg_per_sec(r.msgs, r.ns);
    sum_msgs += rate;
    sum_mb += pg_per_sec(r.bytes, r.ns) / 1e6;
    sum_steady += pg_per_sec(r.steady, r.steady_ns);
    min_msgs = got == 1 || rate < min_msgs ? rate : min_msgs;
    errors += r.dups + r.reorders + r.bad;
    missing += r.missing;
  }
  fflush(stdout);
  pg_finish(m, n, s->o.verbose);
  printf("perf=multicast config=%s members=%d senders=%d size=%zu count=%" PRIu64
         " msgs_s_per_member=%.0f MB_s_per_member=%.2f min_msgs_s=%.0f"
         " steady_msgs_s_per_member=%.0f errors=%" PRIu64 " missing=%" PRIu64 "\n",
         pg_config_base(&s->o), n, s->senders, s->size, s->count, sum_msgs / n, sum_mb / n,
         min_msgs, sum_steady / n, errors, missing);
  return errors || missing || got < n ? TOOL_FAIL : TOOL_OK;
}

static bool alloc_bitmaps(struct mc *s) {
  for (int w = 0; w < s->senders; w++)
    if (!(s->seen[w] = calloc(1, (size_t)(s->count / 8 + 1)))) return false;
  return true;
}

int cmd_perf_multicast(int argc, char **argv) {
  struct mc *s = calloc(1, sizeof(*s));
  if (!s) return TOOL_FAIL;
  s->o.members = 3;
  s->o.timeout_s = 10;
  s->count = 100000;
  s->size = 1000;
  int rc = parse_args(argc, argv, s);
  struct pg_run run;
  struct pg_member m[PG_MAX_MEMBERS];
  if (rc == 0 && !alloc_bitmaps(s)) rc = TOOL_FAIL;
  if (rc == 0) rc = pg_run_init(&run, &s->o);
  s->n10 = s->count * (uint64_t)s->senders / 10;
  if (s->n10 == 0) s->n10 = 1;
  if (rc == 0) {
    printf("perf multicast: %d members (%d sending %" PRIu64 " x %zu bytes each) over %s, "
           "127.0.0.1 ports %d.., group %s:%d\n",
           s->o.members, s->senders, s->count, s->size, s->o.config, run.base_port,
           run.mcast_addr, run.mcast_port);
    rc = pg_start(&run, m, &s->node, &mc_bench, s);
  }
  if (rc == 0) rc = collect(s, m);
  for (int w = 0; w < PG_MAX_MEMBERS; w++) free(s->seen[w]);
  free(s);
  return rc < 0 ? TOOL_OK : rc;
}

/* `raftstack perf transport`: a transport's throughput, against a plain socket loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <raftstack/raftstack.h>

#include "stack/channel_internal.h"
#include "stack/runtime.h"
#include "tools/tools.h"

/*
 * One sender, one receiver, both on 127.0.0.1. The receiver runs in a child process (for
 * LOOPBACK: in a thread of the same process, the only place LOOPBACK reaches).
 *
 * Stack run: two channels over a stack holding only the transport. The receiver announces
 * itself with a group message ("hello", repeated until data flows); the sender learns the
 * receiver's address from it and sends `count` unicasts of `size` bytes. The receiver counts
 * messages and bytes and times the first to the last; it stops at `count`, or when nothing has
 * arrived for 1 s (UDP may lose datagrams: the shortfall is reported as lost).
 *
 * Plain run, same machine, same run: TCP is one write() per message of a 4-byte big-endian length
 * followed by the payload, and a reader that parses them; UDP is one sendto() per message and a
 * recv() loop. Sockets keep the OS defaults (Nagle on for TCP), except the UDP receive buffer,
 * which gets the same size the UDP transport asks for, so both runs can absorb the same bursts.
 *
 * Results travel from the receiver to the sender as one line over a pipe.
 */

#define HELLO 'H'
#define DATA 'D'
#define IDLE_END_NS (1000 * 1000 * 1000ull)
#define RUN_TIMEOUT_NS (300 * 1000 * 1000 * 1000ull)
#define UDP_RCVBUF (5 * 1000 * 1000)

enum transport { T_TCP, T_UDP, T_LOOPBACK };
static const char *const transport_names[] = {"tcp", "udp", "loopback"};

struct perf_opts {
  enum transport transport;
  uint64_t count;
  size_t size;
  const char *config; /* a file, instead of the built-in transport-only stack */
  bool verbose;
  bool stack_only;
};

/* What the receiver measured. */
struct result {
  uint64_t msgs, bytes, elapsed_ns;
  bool ok;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: raftstack perf transport [--transport tcp|udp|loopback] [--count N]\n"
          "                                [--size BYTES] [--config FILE] [--verbose] [--stack-only]\n"
          "\n"
          "Sends N messages of BYTES bytes from one channel to another on 127.0.0.1 and reports\n"
          "messages/s and MB/s as measured by the receiver from its first to its last message;\n"
          "then does the same with a plain socket loop (TCP: one write per message with a 4-byte\n"
          "length prefix; UDP: one sendto per message) and prints the ratio stack/plain of MB/s.\n"
          "The receiver is a child process (LOOPBACK: a thread; it has no plain counterpart).\n"
          "UDP may lose datagrams: a run ends 1 s after the last arrival and reports the loss.\n"
          "\n"
          "  --transport T   tcp (default), udp or loopback\n"
          "  --count N       messages to send (default 100000)\n"
          "  --size BYTES    payload bytes per message (default 1000, at least 1)\n"
          "  --config FILE   XML stack to use for both channels instead of the built-in\n"
          "                  transport-only one (its group messages must reach the other side)\n"
          "  --verbose       print the sender's and receiver's transport counters\n"
          "  --stack-only    skip the plain socket run (for profiling the stack)\n"
          "\n"
          "The last line is for scripts:\n"
          "  transport=tcp size=1000 count=100000 stack_msgs_s=... stack_MB_s=... plain_msgs_s=...\n"
          "  plain_MB_s=... ratio=... lost=... plain_lost=...\n");
}

/* ---- small helpers -------------------------------------------------------------------------- */

/* A port the OS considers free right now (bound, then released). */
static int free_port(int type) {
  int fd = socket(AF_INET, type, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

static struct sockaddr_in loopback_addr(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

static void write_result(int fd, const struct result *r) {
  char line[128];
  int n = snprintf(line, sizeof(line), "%d %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", r->ok,
                   r->msgs, r->bytes, r->elapsed_ns);
  if (write(fd, line, (size_t)n) != n) perror("perf: pipe");
}

static bool read_result(int fd, struct result *r) {
  char line[128];
  size_t n = 0;
  while (n < sizeof(line) - 1) {
    ssize_t k = read(fd, line + n, sizeof(line) - 1 - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    n += (size_t)k;
    if (memchr(line, '\n', n)) break;
  }
  line[n] = '\0';
  int ok = 0;
  if (sscanf(line, "%d %" SCNu64 " %" SCNu64 " %" SCNu64, &ok, &r->msgs, &r->bytes,
             &r->elapsed_ns) != 4)
    return false;
  r->ok = ok != 0;
  return true;
}

/* A one-character signal over a pipe ("ready"). */
static bool wait_byte(int fd) {
  char c;
  ssize_t k;
  do k = read(fd, &c, 1);
  while (k < 0 && errno == EINTR);
  return k == 1;
}

/* ---- the stack run -------------------------------------------------------------------------- */

struct counter {
  uint64_t expect;
  atomic_uint_fast64_t msgs, bytes, first_ns, last_ns;
  atomic_bool have_peer;
  struct rs_addr peer; /* sender: the receiver, from its hello */
};

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct counter *c = arg;
  const uint8_t *p = data;
  if (len == 0) return;
  if (p[0] == HELLO) {
    if (!atomic_load(&c->have_peer)) {
      c->peer = *src;
      atomic_store(&c->have_peer, true);
    }
    return;
  }
  uint64_t t = now_ns();
  if (atomic_load_explicit(&c->msgs, memory_order_relaxed) == 0)
    atomic_store(&c->first_ns, t);
  atomic_store_explicit(&c->last_ns, t, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->bytes, len, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->msgs, 1, memory_order_release);
}

static const struct rs_receiver perf_receiver = {.receive = on_receive};

struct stack_cfg {
  const struct perf_opts *o;
  int port, peer_port; /* built-in configs: own port and the other side's */
};

static void build_xml(const struct stack_cfg *sc, char *xml, size_t len) {
  switch (sc->o->transport) {
  case T_TCP:
    snprintf(xml, len, "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "peers=\"127.0.0.1:%d\"/></config>", sc->port, sc->peer_port);
    break;
  case T_UDP:
    /* Group messages (the hello) as unicasts to the peer: no multicast needed. */
    snprintf(xml, len, "<config><UDP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "ip_mcast=\"false\" peers=\"127.0.0.1:%d\"/></config>", sc->port, sc->peer_port);
    break;
  case T_LOOPBACK: snprintf(xml, len, "<config><LOOPBACK/></config>"); break;
  }
}

static struct rs_channel *open_connected(const struct stack_cfg *sc, const char *name,
                                         struct counter *c) {
  char xml[512], err[1024];
  build_xml(sc, xml, sizeof(xml));
  struct rs_channel_opts o = {.name = name};
  if (sc->o->config) o.config_file = sc->o->config;
  else o.config_xml = xml;
  struct rs_channel *ch;
  int rc = rs_channel_open(&ch, &o, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "perf: %s: %s\n", name, err);
    return NULL;
  }
  rs_channel_set_receiver(ch, &perf_receiver, c);
  if ((rc = rs_channel_connect(ch, "perf"))) {
    fprintf(stderr, "perf: %s: connect: %s (%s)\n", name, rs_strerror(rc),
            rs_channel_last_error(ch));
    rs_channel_close(ch);
    return NULL;
  }
  return ch;
}

struct stats_req {
  struct rs_channel *ch;
  const char *who;
  struct rs_completion done;
};

static void print_stat(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void print_stat(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stats_req *r = out->arg;
  char value[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof(value), fmt, ap);
  va_end(ap);
  if (strcmp(value, "0")) fprintf(stderr, "  %s %s=%s\n", r->who, name, value);
}

static void stats_on_loop(void *arg) {
  struct stats_req *r = arg;
  struct rs_stats_printer out = {.line = print_stat, .arg = r};
  stack_stats(channel_stack(r->ch), &out);
  completion_done(&r->done, 0);
}

/* Prints the stack's non-zero counters (read on its loop thread). */
static void print_stats(struct rs_channel *ch, const char *who) {
  struct stats_req r = {.ch = ch, .who = who};
  completion_init(&r.done);
  if (rs_runtime_call(channel_runtime(ch), stats_on_loop, &r) == 0)
    completion_wait(channel_runtime(ch), &r.done, UINT64_MAX);
  completion_fini(&r.done);
}

/* Waits for count messages, or until none has come for 1 s after the first one. */
static void wait_for_data(struct counter *c, uint64_t started) {
  uint64_t last_msgs = 0, last_change = now_ns();
  for (;;) {
    uint64_t m = atomic_load(&c->msgs), t = now_ns();
    if (m >= c->expect || t - started > RUN_TIMEOUT_NS) return;
    if (m != last_msgs) {
      last_msgs = m;
      last_change = t;
    } else if (m > 0 && t - last_change > IDLE_END_NS) {
      return;
    }
    sleep_ms(m ? 5 : 1);
  }
}

/* The receiving side: hello until data flows, count, report on fd. */
static int stack_receiver(const struct stack_cfg *sc, int fd) {
  struct counter c = {.expect = sc->o->count};
  struct result r = {0};
  struct rs_channel *ch = open_connected(sc, "receiver", &c);
  if (ch) {
    uint64_t started = now_ns();
    /* The first hellos may go out before the sender is up: repeat until data arrives. */
    while (atomic_load(&c.msgs) == 0 && now_ns() - started < 30 * IDLE_END_NS) {
      char hello = HELLO;
      rs_channel_send(ch, NULL, &hello, 1, 0);
      for (int i = 0; i < 100 && atomic_load(&c.msgs) == 0; i++) sleep_ms(1);
    }
    wait_for_data(&c, started);
    r.msgs = atomic_load(&c.msgs);
    r.bytes = atomic_load(&c.bytes);
    r.elapsed_ns = r.msgs > 1 ? atomic_load(&c.last_ns) - atomic_load(&c.first_ns) : 0;
    r.ok = r.msgs > 0;
    if (sc->o->verbose) print_stats(ch, "receiver");
  }
  write_result(fd, &r);
  if (ch) rs_channel_close(ch);
  return r.ok ? 0 : 1;
}

/* The sending side: learn the receiver from its hello, send count messages, get the result. */
static bool stack_sender(const struct stack_cfg *sc, int fd, struct result *r) {
  struct counter c = {0};
  struct rs_channel *ch = open_connected(sc, "sender", &c);
  if (!ch) return false;
  uint64_t deadline = now_ns() + 30 * IDLE_END_NS;
  while (!atomic_load(&c.have_peer) && now_ns() < deadline) sleep_ms(1);
  bool ok = atomic_load(&c.have_peer);
  if (!ok) fprintf(stderr, "perf: no hello from the receiver within 30 s\n");
  uint8_t *buf = calloc(1, sc->o->size);
  if (ok && buf) {
    memset(buf, 'x', sc->o->size);
    buf[0] = DATA;
    for (uint64_t i = 0; i < sc->o->count && ok; i++) {
      int rc = rs_channel_send(ch, &c.peer, buf, sc->o->size, 0);
      if (rc) fprintf(stderr, "perf: send: %s\n", rs_strerror(rc));
      ok = rc == 0;
    }
  }
  free(buf);
  /* Keep the channel open until the receiver is done: closing would drop what is queued. */
  ok = read_result(fd, r) && ok;
  if (sc->o->verbose) print_stats(ch, "sender");
  rs_channel_close(ch);
  return ok;
}

struct thread_arg {
  const struct stack_cfg *sc;
  int fd;
};

static void *receiver_thread(void *arg) {
  struct thread_arg *a = arg;
  stack_receiver(a->sc, a->fd);
  return NULL;
}

static bool run_stack(const struct perf_opts *o, struct result *r) {
  int p[2];
  if (pipe(p)) return false;
  int sport = free_port(o->transport == T_UDP ? SOCK_DGRAM : SOCK_STREAM);
  int rport = free_port(o->transport == T_UDP ? SOCK_DGRAM : SOCK_STREAM);
  struct stack_cfg send_cfg = {o, sport, rport}, recv_cfg = {o, rport, sport};
  bool ok;
  if (o->transport == T_LOOPBACK) {
    pthread_t th;
    struct thread_arg a = {&recv_cfg, p[1]};
    pthread_create(&th, NULL, receiver_thread, &a);
    ok = stack_sender(&send_cfg, p[0], r);
    pthread_join(th, NULL);
  } else {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      close(p[0]);
      _exit(stack_receiver(&recv_cfg, p[1]));
    }
    close(p[1]);
    p[1] = -1;
    ok = stack_sender(&send_cfg, p[0], r);
    waitpid(pid, NULL, 0);
  }
  close(p[0]);
  if (p[1] >= 0) close(p[1]);
  return ok;
}

/* ---- the plain socket run ------------------------------------------------------------------- */

/* Counts message arrivals: one call per message, at its arrival time. */
static void count_msg(struct result *r, uint64_t *first, uint64_t *last, size_t len) {
  uint64_t t = now_ns();
  if (r->msgs++ == 0) *first = t;
  *last = t;
  r->bytes += len;
}

/* Reads length-prefixed messages until count or end of stream. */
static void plain_tcp_reader(int fd, uint64_t count, struct result *r, uint64_t *first,
                             uint64_t *last) {
  size_t cap = 1 << 20, have = 0, pos = 0;
  uint8_t *buf = malloc(cap);
  while (buf && r->msgs < count) {
    ssize_t n = read(fd, buf + have, cap - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    while (have - pos >= 4) {
      size_t len = ((size_t)buf[pos] << 24) | ((size_t)buf[pos + 1] << 16) |
                   ((size_t)buf[pos + 2] << 8) | buf[pos + 3];
      if (len > cap - 4) goto out; /* cannot happen with our sender */
      if (have - pos < 4 + len) break;
      count_msg(r, first, last, len);
      pos += 4 + len;
    }
    memmove(buf, buf + pos, have - pos);
    have -= pos;
    pos = 0;
  }
out:
  free(buf);
}

static int plain_tcp_receiver(int lfd, uint64_t count, int ready_fd, int fd) {
  struct result r = {0};
  uint64_t first = 0, last = 0;
  if (write(ready_fd, "R", 1) == 1) {
    int c = accept(lfd, NULL, NULL);
    if (c >= 0) {
      plain_tcp_reader(c, count, &r, &first, &last);
      close(c);
    }
  }
  r.elapsed_ns = r.msgs > 1 ? last - first : 0;
  r.ok = r.msgs > 0;
  write_result(fd, &r);
  return 0;
}

static bool plain_tcp_sender(int port, const struct perf_opts *o) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = loopback_addr(port);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
    perror("perf: plain connect");
    if (fd >= 0) close(fd);
    return false;
  }
  uint8_t *buf = malloc(4 + o->size);
  bool ok = buf != NULL;
  if (ok) {
    memset(buf, 'x', 4 + o->size);
    buf[0] = (uint8_t)(o->size >> 24);
    buf[1] = (uint8_t)(o->size >> 16);
    buf[2] = (uint8_t)(o->size >> 8);
    buf[3] = (uint8_t)o->size;
  }
  for (uint64_t i = 0; i < o->count && ok; i++) {
    size_t off = 0;
    while (off < 4 + o->size && ok) { /* one write per message; a short one is completed */
      ssize_t n = write(fd, buf + off, 4 + o->size - off);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      off += n > 0 ? (size_t)n : 0;
    }
  }
  free(buf);
  close(fd);
  return ok;
}

static int plain_udp_receiver(int sfd, uint64_t count, int ready_fd, int fd) {
  struct result r = {0};
  uint64_t first = 0, last = 0, idle_since = 0;
  uint8_t buf[65536];
  int sz = UDP_RCVBUF;
  setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  bool ready = write(ready_fd, "R", 1) == 1;
  struct pollfd pfd = {.fd = sfd, .events = POLLIN};
  uint64_t started = now_ns();
  while (ready && r.msgs < count) {
    ssize_t n = recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n >= 0) {
      count_msg(&r, &first, &last, (size_t)n);
      idle_since = 0;
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) break;
    uint64_t t = now_ns();
    if (!idle_since) idle_since = t;
    if ((r.msgs && t - idle_since > IDLE_END_NS) || t - started > 30 * IDLE_END_NS) break;
    poll(&pfd, 1, 10);
  }
  r.elapsed_ns = r.msgs > 1 ? last - first : 0;
  r.ok = r.msgs > 0;
  write_result(fd, &r);
  return 0;
}

static bool plain_udp_sender(int port, const struct perf_opts *o) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sa = loopback_addr(port);
  uint8_t *buf = calloc(1, o->size);
  bool ok = fd >= 0 && buf;
  for (uint64_t i = 0; i < o->count && ok; i++) {
    ssize_t n;
    do n = sendto(fd, buf, o->size, 0, (struct sockaddr *)&sa, sizeof(sa));
    while (n < 0 && (errno == EINTR || errno == ENOBUFS));
    ok = n == (ssize_t)o->size;
  }
  if (!ok) perror("perf: plain sendto");
  free(buf);
  if (fd >= 0) close(fd);
  return ok;
}

/* The receiving socket is made before the fork, so the sender can use it at once. */
static int plain_socket(enum transport t, int *port) {
  int fd = socket(AF_INET, t == T_UDP ? SOCK_DGRAM : SOCK_STREAM, 0);
  struct sockaddr_in sa = loopback_addr(0);
  socklen_t sl = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
      (t == T_TCP && listen(fd, 1)) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

static bool run_plain(const struct perf_opts *o, struct result *r) {
  int res[2], ready[2], port = 0;
  int sfd = plain_socket(o->transport, &port);
  if (sfd < 0 || pipe(res)) return false;
  if (pipe(ready)) return false;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    close(res[0]);
    close(ready[0]);
    _exit(o->transport == T_UDP ? plain_udp_receiver(sfd, o->count, ready[1], res[1])
                                : plain_tcp_receiver(sfd, o->count, ready[1], res[1]));
  }
  close(sfd);
  close(res[1]);
  close(ready[1]);
  bool ok = wait_byte(ready[0]);
  if (ok) ok = o->transport == T_UDP ? plain_udp_sender(port, o) : plain_tcp_sender(port, o);
  ok = read_result(res[0], r) && ok;
  waitpid(pid, NULL, 0);
  close(res[0]);
  close(ready[0]);
  return ok;
}

/* ---- reporting ------------------------------------------------------------------------------ */

static double per_sec(uint64_t v, uint64_t ns) { return ns ? (double)v * 1e9 / (double)ns : 0; }

static void print_run(const char *what, const struct result *r, uint64_t count) {
  printf("%-6s %" PRIu64 " of %" PRIu64 " messages in %.3f s: %.0f msgs/s, %.1f MB/s", what,
         r->msgs, count, (double)r->elapsed_ns / 1e9, per_sec(r->msgs, r->elapsed_ns),
         per_sec(r->bytes, r->elapsed_ns) / 1e6);
  if (r->msgs < count) printf(" (lost %" PRIu64 ")", count - r->msgs);
  printf("\n");
}

static int parse_args(int argc, char **argv, struct perf_opts *o) {
  static const struct option longopts[] = {
      {"transport", required_argument, NULL, 't'}, {"count", required_argument, NULL, 'n'},
      {"size", required_argument, NULL, 's'},      {"config", required_argument, NULL, 'c'},
      {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
      {"stack-only", no_argument, NULL, 'S'},
      {NULL, 0, NULL, 0},
  };
  int opt;
  char *end;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:n:s:c:vh", longopts, NULL)) != -1) {
    switch (opt) {
    case 't':
      for (o->transport = 0; o->transport <= T_LOOPBACK; o->transport++)
        if (!strcasecmp(optarg, transport_names[o->transport])) break;
      if (o->transport > T_LOOPBACK) {
        fprintf(stderr, "raftstack perf: unknown transport '%s' (tcp, udp, loopback)\n", optarg);
        return TOOL_USAGE;
      }
      break;
    case 'n':
      o->count = strtoull(optarg, &end, 10);
      if (*end || o->count == 0) {
        fprintf(stderr, "raftstack perf: --count wants a positive number\n");
        return TOOL_USAGE;
      }
      break;
    case 's':
      o->size = strtoull(optarg, &end, 10);
      if (*end || o->size == 0 || o->size > 60000) {
        fprintf(stderr, "raftstack perf: --size wants 1..60000 bytes\n");
        return TOOL_USAGE;
      }
      break;
    case 'c': o->config = optarg; break;
    case 'v': o->verbose = true; break;
    case 'S': o->stack_only = true; break;
    case 'h': usage(stdout); return -1;
    default: usage(stderr); return TOOL_USAGE;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "raftstack perf: unexpected argument '%s'\n", argv[optind]);
    return TOOL_USAGE;
  }
  return 0;
}

static int perf_transport(int argc, char **argv) {
  struct perf_opts o = {.transport = T_TCP, .count = 100000, .size = 1000};
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc < 0 ? TOOL_OK : rc;
  signal(SIGPIPE, SIG_IGN);
  struct result st = {0}, pl = {0};
  if (!run_stack(&o, &st)) {
    fprintf(stderr, "raftstack perf: the stack run failed\n");
    return TOOL_FAIL;
  }
  print_run("stack", &st, o.count);
  bool plain = o.transport != T_LOOPBACK && !o.stack_only;
  if (plain && !run_plain(&o, &pl)) {
    fprintf(stderr, "raftstack perf: the plain socket run failed\n");
    return TOOL_FAIL;
  }
  if (plain) print_run("plain", &pl, o.count);
  double smb = per_sec(st.bytes, st.elapsed_ns) / 1e6, pmb = per_sec(pl.bytes, pl.elapsed_ns) / 1e6;
  printf("transport=%s size=%zu count=%" PRIu64 " stack_msgs_s=%.0f stack_MB_s=%.2f ",
         transport_names[o.transport], o.size, o.count, per_sec(st.msgs, st.elapsed_ns), smb);
  if (plain)
    printf("plain_msgs_s=%.0f plain_MB_s=%.2f ratio=%.3f lost=%" PRIu64 " plain_lost=%" PRIu64
           "\n", per_sec(pl.msgs, pl.elapsed_ns), pmb, pmb > 0 ? smb / pmb : 0,
           o.count - st.msgs, o.count - pl.msgs);
  else
    printf("plain_msgs_s=na plain_MB_s=na ratio=na lost=%" PRIu64 " plain_lost=na\n",
           o.count - st.msgs);
  return TOOL_OK;
}

/* The group benchmarks (multicast, rpc) live in cmd_perf_multicast.c and cmd_perf_rpc.c. */
static void usage_all(FILE *f) {
  fprintf(f, "usage: raftstack perf transport|multicast|rpc [options]   (--help after each)\n"
             "  transport  one transport's throughput, against a plain socket loop\n"
             "  multicast  a group stack's multicast throughput, N member processes (MPerf)\n"
             "  rpc        unicast request/response rate and latency between two members\n\n");
}

int cmd_perf(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage_all(argc < 2 ? stderr : stdout);
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? TOOL_USAGE : TOOL_OK;
  }
  if (!strcmp(argv[1], "multicast")) return cmd_perf_multicast(argc - 1, argv + 1);
  if (!strcmp(argv[1], "rpc")) return cmd_perf_rpc(argc - 1, argv + 1);
  if (strcmp(argv[1], "transport")) {
    fprintf(stderr, "raftstack perf: unknown benchmark '%s' (transport, multicast, rpc)\n",
            argv[1]);
    return TOOL_USAGE;
  }
  return perf_transport(argc - 1, argv + 1);
}

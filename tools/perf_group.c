/* Group benchmarks' common part: member processes, free ports, configuration lookup, pipes. */
#include "tools/perf_group.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stack/channel_internal.h"
#include "stack/protocol.h"
#include "stack/runtime.h"
#include "tools/tools.h"

/*
 * Every member is a process of its own, forked from the command (no exec: it runs the same code
 * with the state the benchmark prepared). Parent and member talk over two pipes, in lines:
 *
 *   member → parent   "C"        connected            parent → member   "G"  go
 *                     "V"        sees a view of all                      "S"  print counters
 *                     "R ..."    its result                              "Q"  leave and exit
 *                     "D"        counters printed                        "L"  others leave now:
 *                     "E ..."    it failed, and why                           log errors only
 *
 * The first member is started alone and the others only once it is connected: started together,
 * each would find nobody, make itself coordinator, and the views would wait for a merge. All
 * members wait for "go" after seeing the full view, so every sender starts into the same,
 * settled group and the measurement holds no join. A member leaves only on "Q", after every
 * member has reported: one that left early could not answer retransmission requests.
 *
 * Ports: member i binds base + i; the base is drawn at random in 10000..19790, below the
 * kernel's ephemeral ports (32768..) and the chat cluster tests' (20000..39999), and kept only if
 * base..base+n (UDP and TCP), the multicast port and FD_SOCK's ports (transport port + 100, 5
 * tried) are free now, so parallel runs do not meet. The multicast group is drawn at random in
 * 239.100.0.0..239.199.255.255; TTL 0 keeps multicasts on this host.
 */

#define START_TIMEOUT_NS (60 * 1000000000ull)
#define EXIT_TIMEOUT_MS 30000
#define FD_SOCK_OFFSET 100
#define FD_SOCK_RANGE 5
#define MCAST_PORT_OFFSET 60

#ifndef RS_TOP_SRCDIR
#define RS_TOP_SRCDIR ""
#endif
#ifndef RS_TOP_BUILDDIR
#define RS_TOP_BUILDDIR ""
#endif
#ifndef RS_XMLCONFIG_DIR
#define RS_XMLCONFIG_DIR ""
#endif

/* ---- small helpers -------------------------------------------------------------------------- */

uint64_t pg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double pg_per_sec(uint64_t v, uint64_t ns) { return ns ? (double)v * 1e9 / (double)ns : 0; }

void pg_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

void pg_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

uint32_t pg_get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v = v << 8 | p[i];
  return v;
}

uint64_t pg_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

static void write_all(int fd, const char *s, size_t len) {
  while (len > 0) {
    ssize_t k = write(fd, s, len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return; /* the other side is gone: its own checks report it */
    s += k;
    len -= (size_t)k;
  }
}

/* ---- options -------------------------------------------------------------------------------- */

int pg_parse_u64(const char *arg, uint64_t lo, uint64_t hi, const char *what, const char *bench,
                 uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 10);
  if (errno || end == arg || *end || arg[0] == '-' || v < lo || v > hi) {
    fprintf(stderr, "raftstack perf %s: %s wants a number in %" PRIu64 "..%" PRIu64 "\n", bench,
            what, lo, hi);
    return TOOL_USAGE;
  }
  *out = v;
  return 0;
}

int pg_common_opt(struct pg_opts *o, int opt, const char *arg, const char *bench) {
  uint64_t v;
  switch (opt) {
  case 'c': o->config_arg = arg; return 0;
  case 'v': o->verbose = true; return 0;
  case 'T':
    if (pg_parse_u64(arg, 1, 3600, "--timeout", bench, &v)) return TOOL_USAGE;
    o->timeout_s = (unsigned)v;
    return 0;
  case 'D':
    if (!strchr(arg, '=') || o->n_user_props == PG_MAX_PROPS) {
      fprintf(stderr, "raftstack perf %s: -D wants name=value (at most %d)\n", bench,
              PG_MAX_PROPS);
      return TOOL_USAGE;
    }
    o->user_props[o->n_user_props++] = arg;
    return 0;
  default: return -1;
  }
}

/* The running binary is the one in the build tree: prefer the source tree's configurations. */
static bool in_build_tree(void) {
  char exe[PATH_MAX];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (k <= 0 || !RS_TOP_BUILDDIR[0]) return false;
  exe[k] = '\0';
  return !strncmp(exe, RS_TOP_BUILDDIR "/", strlen(RS_TOP_BUILDDIR) + 1);
}

static bool try_dir(struct pg_opts *o, const char *dir, const char *sub, const char *file) {
  if (!dir || !dir[0]) return false;
  snprintf(o->config, sizeof(o->config), "%s%s/%s", dir, sub, file);
  return access(o->config, R_OK) == 0;
}

/* A path is taken as it is; a bare file name that is not in the working directory is looked up
 * in $RS_SRCDIR/xml-configs, then the source tree's and the installed xml-configs (the source
 * tree first when this binary is the build tree's). */
int pg_resolve_config(struct pg_opts *o, const char *bench) {
  const char *f = o->config_arg ? o->config_arg : "udp.xml";
  bool found;
  if (strchr(f, '/') || access(f, R_OK) == 0) {
    snprintf(o->config, sizeof(o->config), "%s", f);
    found = access(f, R_OK) == 0;
  } else {
    bool build = in_build_tree();
    found = try_dir(o, getenv("RS_SRCDIR"), "/xml-configs", f) ||
            (build && try_dir(o, RS_TOP_SRCDIR, "/xml-configs", f)) ||
            try_dir(o, RS_XMLCONFIG_DIR, "", f) || try_dir(o, RS_TOP_SRCDIR, "/xml-configs", f);
  }
  char real[PATH_MAX];
  if (found && realpath(o->config, real)) snprintf(o->config, sizeof(o->config), "%s", real);
  if (found) return 0;
  fprintf(stderr, "raftstack perf %s: cannot read configuration '%s'%s\n", bench, f,
          strchr(f, '/') ? "" : " (looked in the working directory and in xml-configs)");
  return TOOL_USAGE;
}

const char *pg_config_base(const struct pg_opts *o) {
  const char *s = strrchr(o->config, '/');
  return s ? s + 1 : o->config;
}

/* ---- ports ---------------------------------------------------------------------------------- */

static bool port_free(int type, int port) {
  if (port <= 1024 || port > 65535) return false;
  int fd = socket(AF_INET, type, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static bool ports_free(int base, int n) {
  for (int i = 0; i < n; i++)
    if (!port_free(SOCK_DGRAM, base + i) || !port_free(SOCK_STREAM, base + i)) return false;
  for (int i = 0; i < n + FD_SOCK_RANGE; i++)
    if (!port_free(SOCK_STREAM, base + FD_SOCK_OFFSET + i)) return false;
  return port_free(SOCK_DGRAM, base + MCAST_PORT_OFFSET);
}

static uint32_t xorshift(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

int pg_run_init(struct pg_run *r, const struct pg_opts *o) {
  uint32_t seed = (uint32_t)getpid() * 2654435761u ^ (uint32_t)pg_now_ns();
  if (!seed) seed = 1;
  memset(r, 0, sizeof(*r));
  r->o = o;
  for (int tries = 0; tries < 1000 && !r->base_port; tries++) {
    int base = 10000 + (int)(xorshift(&seed) % 980) * 10;
    if (ports_free(base, o->members)) r->base_port = base;
  }
  if (!r->base_port) {
    fprintf(stderr, "raftstack perf: no free range of ports found on 127.0.0.1\n");
    return TOOL_FAIL;
  }
  r->mcast_port = r->base_port + MCAST_PORT_OFFSET;
  uint32_t g = xorshift(&seed);
  snprintf(r->mcast_addr, sizeof(r->mcast_addr), "239.%u.%u.%u", 100 + g % 100,
           1 + (g >> 8) % 250, 1 + (g >> 16) % 250);
  snprintf(r->cluster, sizeof(r->cluster), "perf-%d-%u", (int)getpid(), xorshift(&seed) % 100000);
  return 0;
}

/* ---- the member process --------------------------------------------------------------------- */

static void say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int fd, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k > sizeof(line) - 2) k = (int)sizeof(line) - 2;
  line[k++] = '\n';
  write_all(fd, line, (size_t)k);
}

void pg_report(struct pg_node *n, const char *fmt, ...) {
  char text[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  say(n->to_parent, "R %s", text);
}

void pg_on_view(struct pg_node *n, const struct rs_view *v) {
  pthread_mutex_lock(&n->lock);
  n->n_view = v->n_members < PG_MAX_MEMBERS ? v->n_members : PG_MAX_MEMBERS;
  memcpy(n->view, v->members, n->n_view * sizeof(n->view[0]));
  pthread_cond_broadcast(&n->changed);
  pthread_mutex_unlock(&n->lock);
}

static bool wait_view(struct pg_node *n, size_t want) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(START_TIMEOUT_NS / 1000000000ull);
  pthread_mutex_lock(&n->lock);
  int rc = 0;
  while (n->n_view < want && rc == 0) rc = pthread_cond_timedwait(&n->changed, &n->lock, &ts);
  bool ok = n->n_view >= want;
  pthread_mutex_unlock(&n->lock);
  return ok;
}

bool pg_parent_spoke(struct pg_node *n, int ms) {
  struct pollfd p = {.fd = n->from_parent, .events = POLLIN};
  int k;
  do k = poll(&p, 1, ms);
  while (k < 0 && errno == EINTR);
  return k != 0;
}

/* One byte from the parent; 0 when it is gone. */
static char parent_command(struct pg_node *n) {
  char c;
  ssize_t k;
  do k = read(n->from_parent, &c, 1);
  while (k < 0 && errno == EINTR);
  return k == 1 ? c : 0;
}

struct stats_req {
  struct rs_channel *ch;
  const char *who;
  const char *proto;
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
  if (strcmp(value, "0")) fprintf(stderr, "  %s %s.%s=%s\n", r->who, r->proto, name, value);
}

/* Counters are read on the loop thread, which owns them. */
static void stats_on_loop(void *arg) {
  struct stats_req *r = arg;
  struct rs_stats_printer out = {.line = print_stat, .arg = r};
  for (struct rs_protocol *p = channel_stack(r->ch)->bottom; p; p = p->up) {
    r->proto = p->ops->name;
    if (p->ops->stats) p->ops->stats(p, &out);
  }
  completion_done(&r->done, 0);
}

static void print_stats(struct pg_node *n) {
  struct stats_req r = {.ch = n->ch, .who = n->name};
  completion_init(&r.done);
  if (rs_runtime_call(channel_runtime(n->ch), stats_on_loop, &r) == 0)
    completion_wait(channel_runtime(n->ch), &r.done, UINT64_MAX);
  completion_fini(&r.done);
  fflush(stderr);
}

/* The member's properties: ours, then the user's (a later definition of a name wins, as on a
 * Java command line). */
static void member_props(const struct pg_run *r, int index, char text[][128], const char **props) {
  const struct pg_opts *o = r->o;
  int k = 0, t = 0;
  snprintf(text[t++], 128, "rs.port=%d", r->base_port + index);
  snprintf(text[t++], 128, "rs.bind_addr=127.0.0.1");
  snprintf(text[t++], 128, "rs.mcast_addr=%s", r->mcast_addr);
  snprintf(text[t++], 128, "rs.mcast_port=%d", r->mcast_port);
  snprintf(text[t++], 128, "rs.ttl=0");
  snprintf(text[t++], 128, "rs.initial_hosts=127.0.0.1[%d]", r->base_port);
  snprintf(text[t++], 128, "rs.hosts_range=%d", o->members - 1);
  for (int i = 0; i < t; i++) props[k++] = text[i];
  for (int i = 0; i < o->n_user_props; i++) props[k++] = o->user_props[i];
  props[k] = NULL;
}

/* Opens, connects and waits for the full view; "E ..." to the parent on failure. */
static int member_join(const struct pg_run *r, struct pg_node *n, const struct pg_bench *b,
                       void *arg) {
  char text[8][128], err[2048];
  const char *props[PG_MAX_PROPS + 9];
  member_props(r, n->index, text, props);
  struct rs_channel_opts co = {.config_file = r->o->config, .props = props, .name = n->name};
  if (rs_channel_open(&n->ch, &co, err, sizeof(err))) {
    for (char *p = err; *p; p++)
      if (*p == '\n') *p = ' ';
    say(n->to_parent, "E %s", err);
    return TOOL_USAGE;
  }
  rs_channel_set_receiver(n->ch, b->recv, arg);
  int rc = rs_channel_connect(n->ch, r->cluster);
  if (rc) {
    say(n->to_parent, "E connect: %s (%s)", rs_strerror(rc), rs_channel_last_error(n->ch));
    return TOOL_FAIL;
  }
  say(n->to_parent, "C");
  if (!wait_view(n, (size_t)r->o->members)) {
    say(n->to_parent, "E saw %zu of %d members in its view after %llu s%s", n->n_view,
        r->o->members, START_TIMEOUT_NS / 1000000000ull,
        n->n_view ? "" : " (a stack without GMS installs no views)");
    return TOOL_FAIL;
  }
  say(n->to_parent, "V");
  return 0;
}

static int member_main(const struct pg_run *r, struct pg_node *n, const struct pg_bench *b,
                       void *arg) {
  pthread_mutex_init(&n->lock, NULL);
  pthread_cond_init(&n->changed, NULL);
  int rc = member_join(r, n, b, arg);
  if (rc == 0) {
    if (parent_command(n) == 'G') rc = b->run(n, arg);
    /* Whatever the result, stay until the parent says "quit": others may need our messages. */
    for (char c; (c = parent_command(n)) == 'S' || c == 'L';) {
      /* The others leave now: closed connections and vanished peers are normal, so quiet
       * (unless the user chose levels). */
      if (c == 'L' && !getenv("RS_LOG")) rs_log_set_level(RS_LOG_ERROR);
      if (c == 'S') {
        print_stats(n);
        say(n->to_parent, "D");
      }
    }
  }
  if (n->ch) rs_channel_disconnect(n->ch);
  if (n->ch && b->stopped) b->stopped(n, arg);
  rs_channel_close(n->ch);
  return rc;
}

/* ---- the parent ----------------------------------------------------------------------------- */

static const char *member_name(int i, char *buf, size_t len) {
  if (i < 26) snprintf(buf, len, "%c", 'A' + i);
  else snprintf(buf, len, "M%d", i);
  return buf;
}

static int spawn(struct pg_run *r, struct pg_member *m, int i, struct pg_node *node,
                 const struct pg_bench *b, void *arg) {
  int down[2], up[2];
  if (pipe(down)) {
    perror("raftstack perf: pipe");
    return -1;
  }
  if (pipe(up)) {
    perror("raftstack perf: pipe");
    close(down[0]);
    close(down[1]);
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) perror("raftstack perf: fork");
  if (pid == 0) {
    /* Only our own pipe ends: another member's write end held here would hide its parent's
     * death from it. */
    for (int k = 0; k < i; k++) {
      close(m[k].to);
      close(m[k].from);
    }
    close(down[1]);
    close(up[0]);
    signal(SIGPIPE, SIG_IGN);
    node->index = i;
    member_name(i, node->name, sizeof(node->name));
    node->to_parent = up[1];
    node->from_parent = down[0];
    _exit(member_main(r, node, b, arg));
  }
  close(down[0]);
  close(up[1]);
  if (pid < 0) {
    close(down[1]);
    close(up[0]);
    return -1;
  }
  m[i] = (struct pg_member){.pid = pid, .to = down[1], .from = up[0]};
  return 0;
}

/* The next line from a member: 1, 0 when it is gone, -1 at the deadline (0: none). */
static int read_line(struct pg_member *m, uint64_t deadline, char *line, size_t len) {
  for (;;) {
    char *nl = memchr(m->buf, '\n', m->have);
    if (nl) {
      size_t k = (size_t)(nl - m->buf);
      snprintf(line, len, "%.*s", (int)k, m->buf);
      memmove(m->buf, nl + 1, m->have - k - 1);
      m->have -= k + 1;
      return 1;
    }
    if (m->have == sizeof(m->buf)) m->have = 0; /* an overlong line: cannot come from us */
    int ms = -1;
    if (deadline) {
      uint64_t t = pg_now_ns();
      if (t >= deadline) return -1;
      ms = (int)((deadline - t) / 1000000 + 1);
    }
    struct pollfd p = {.fd = m->from, .events = POLLIN};
    int k = poll(&p, 1, ms);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) return -1;
    ssize_t got = read(m->from, m->buf + m->have, sizeof(m->buf) - m->have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0;
    m->have += (size_t)got;
  }
}

/* Waits for `want` ("C" or "V") from member i; prints why not. */
static bool expect(struct pg_member *m, int i, char want, uint64_t deadline) {
  char line[1024], name[16];
  int k = read_line(&m[i], deadline, line, sizeof(line));
  if (k == 1 && line[0] == want && !line[1]) return true;
  member_name(i, name, sizeof(name));
  if (k == 1 && line[0] == 'E') fprintf(stderr, "raftstack perf: member %s: %s\n", name, line + 2);
  else if (k == 1) fprintf(stderr, "raftstack perf: member %s: unexpected '%s'\n", name, line);
  else if (k == 0) fprintf(stderr, "raftstack perf: member %s exited\n", name);
  else
    fprintf(stderr, "raftstack perf: member %s: no %s within %llu s\n", name,
            want == 'C' ? "connect" : "view of all members", START_TIMEOUT_NS / 1000000000ull);
  return false;
}

static void kill_all(struct pg_member *m, int n) {
  for (int i = 0; i < n; i++) {
    kill(m[i].pid, SIGKILL);
    waitpid(m[i].pid, NULL, 0);
    close(m[i].to);
    close(m[i].from);
  }
}

/* Builds the stack once here, so a bad file or property is a usage error before any fork. */
static int check_config(const struct pg_run *r) {
  char text[8][128], err[2048];
  const char *props[PG_MAX_PROPS + 9];
  member_props(r, 0, text, props);
  struct rs_channel_opts co = {.config_file = r->o->config, .props = props, .name = "check"};
  struct rs_channel *ch;
  if (rs_channel_open(&ch, &co, err, sizeof(err)) == 0) {
    rs_channel_close(ch);
    return 0;
  }
  fprintf(stderr, "raftstack perf: %s\n", err);
  return TOOL_USAGE;
}

int pg_start(struct pg_run *r, struct pg_member *m, struct pg_node *node,
             const struct pg_bench *b, void *arg) {
  int n = r->o->members, started = 0;
  if (check_config(r)) return TOOL_USAGE;
  signal(SIGPIPE, SIG_IGN);
  bool ok = spawn(r, m, 0, node, b, arg) == 0;
  started = ok ? 1 : 0;
  ok = ok && expect(m, 0, 'C', pg_now_ns() + START_TIMEOUT_NS);
  for (int i = 1; ok && i < n; i++) {
    ok = spawn(r, m, i, node, b, arg) == 0;
    started += ok;
  }
  uint64_t deadline = pg_now_ns() + START_TIMEOUT_NS;
  for (int i = 1; ok && i < n; i++) ok = expect(m, i, 'C', deadline);
  for (int i = 0; ok && i < n; i++) ok = expect(m, i, 'V', deadline);
  if (!ok) {
    kill_all(m, started);
    return TOOL_FAIL;
  }
  for (int i = 0; i < n; i++) write_all(m[i].to, "G", 1);
  return 0;
}

bool pg_read_result(struct pg_member *m, char *line, size_t len) {
  char buf[1024];
  for (;;) {
    if (read_line(m, 0, buf, sizeof(buf)) != 1) return false;
    if (buf[0] == 'R' && buf[1] == ' ') {
      snprintf(line, len, "%s", buf + 2);
      return true;
    }
    if (buf[0] == 'E') fprintf(stderr, "raftstack perf: %s\n", buf + 2);
  }
}

static void wait_exit(struct pg_member *m) {
  for (int waited = 0; waited < EXIT_TIMEOUT_MS; waited += 10) {
    if (waitpid(m->pid, NULL, WNOHANG) != 0) return;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "raftstack perf: a member did not exit within %d s: killed\n",
          EXIT_TIMEOUT_MS / 1000);
  kill(m->pid, SIGKILL);
  waitpid(m->pid, NULL, 0);
}

void pg_finish(struct pg_member *m, int n, bool verbose) {
  char line[64];
  for (int i = 0; verbose && i < n; i++) {
    write_all(m[i].to, "S", 1);
    read_line(&m[i], pg_now_ns() + START_TIMEOUT_NS, line, sizeof(line));
  }
  /* The last joined leaves first and the coordinator last: every leave then goes to a
   * coordinator still there to confirm it. */
  for (int i = 0; i < n; i++) write_all(m[i].to, "L", 1);
  for (int i = n - 1; i >= 0; i--) {
    write_all(m[i].to, "Q", 1);
    wait_exit(&m[i]);
    close(m[i].to);
    close(m[i].from);
  }
}

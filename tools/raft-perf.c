/* raft-perf: throughput and latency of rs_raft_set on a cluster of processes on 127.0.0.1. */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/perf_group.h"
#include "tools/raft_node.h"
#include "tools/tools.h"

/*
 * raft-perf forks --members processes; each runs a raft-node (tools/raft_node.c) over the XML
 * file with its own raft_id (A, B, C, ...) and a fresh log directory under one temporary
 * directory, removed at the end. Ports, the multicast group and the cluster name are drawn for
 * each run (as `raftstack perf` does) so parallel runs do not meet and nothing leaves the host.
 *
 * The load runs in the leader's process: raft-perf waits until every member names the same
 * leader, then tells that member to run `bench`, which keeps --outstanding rs_raft_set_async
 * calls in flight from its loop thread. Driving the leader measures Raft itself (append, fsync,
 * replicate, commit, apply) without REDIRECT's extra hop; a load from a follower would add one
 * round trip per request. If leadership moves during the run, the requests that the old leader
 * could not commit fail, the run reports them as errors and exits 1.
 *
 * Parent and members talk over pipes in raft-node's line protocol: "ready", "status",
 * "bench ...", "progress ...", "stats", "quit"/"bye".
 */

#define START_TIMEOUT_MS 60000
#define LEADER_TIMEOUT_MS 30000
#define EXIT_TIMEOUT_MS 30000

struct member {
  pid_t pid;
  int to, from;
  char buf[4096];
  size_t have;
  char id[8];
};

struct perf {
  struct pg_opts o; /* config, members, user properties (perf_group's option parsing) */
  uint64_t outstanding, size, duration, warmup;
  bool fsync;
  char logroot[64];
  char members_prop[64]; /* "A,B,C,..." (at most 26) */
  struct pg_run run;
  struct member m[PG_MAX_MEMBERS];
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: raft-perf [--members N] [--config FILE] [--outstanding K] [--size BYTES]\n"
          "                 [--duration SECONDS] [--warmup SECONDS] [--fsync on|off]\n"
          "                 [--verbose] [-Dname=value ...]\n"
          "\n"
          "Starts N Raft processes (default 3, raft_ids A, B, C, ...) on 127.0.0.1 over the XML\n"
          "stack (default raft.xml; a bare name is looked up in xml-configs), each with a fresh\n"
          "log directory, waits for a leader, and has the leader's process keep K requests of\n"
          "BYTES bytes (defaults 1 and 100) in flight with rs_raft_set_async for SECONDS\n"
          "(default 10) after WARMUP seconds that are not measured (default 1). --fsync off uses\n"
          "the memory log (-Drs.raft.log_class=memory): nothing is written to disk.\n"
          "Prints a progress line a second and one summary line:\n"
          "  raft-perf members=3 outstanding=1 size=100 fsync=on config=raft.xml duration=10.0s\n"
          "  commits=... throughput=.../s p50=...us p90=...us p99=...us p99.9=...us max=...us\n"
          "  errors=0\n"
          "--verbose prints every member's protocol counters and its log's batches (fsyncs).\n"
          "Exit status: 0, 1 when a request failed or the cluster did not form, 2 on bad usage.\n");
}

static uint64_t now_ms(void) { return pg_now_ns() / 1000000; }

static void send_line(struct member *m, const char *line) {
  size_t len = strlen(line);
  while (len > 0) {
    ssize_t k = write(m->to, line, len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return; /* the member is gone: the next read says so */
    line += k;
    len -= (size_t)k;
  }
}

/* The next line from a member: 1, 0 when it is gone, -1 at the deadline. */
static int read_line(struct member *m, uint64_t deadline_ms, char *line, size_t len) {
  for (;;) {
    char *nl = memchr(m->buf, '\n', m->have);
    if (nl) {
      size_t k = (size_t)(nl - m->buf);
      snprintf(line, len, "%.*s", (int)k, m->buf);
      memmove(m->buf, nl + 1, m->have - k - 1);
      m->have -= k + 1;
      return 1;
    }
    if (m->have == sizeof(m->buf)) m->have = 0; /* an overlong line cannot come from raft-node */
    uint64_t t = now_ms();
    if (t >= deadline_ms) return -1;
    struct pollfd p = {.fd = m->from, .events = POLLIN};
    int k = poll(&p, 1, (int)(deadline_ms - t));
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) return -1;
    ssize_t got = read(m->from, m->buf + m->have, sizeof(m->buf) - m->have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0;
    m->have += (size_t)got;
  }
}

/* Sends a command and reads the answer line that starts with `want` (other lines are printed
 * when they are errors). False when the member died, answered an error or took too long. */
static bool ask(struct member *m, const char *cmd, const char *want, char *ans, size_t len,
                uint64_t timeout_ms) {
  if (cmd) send_line(m, cmd);
  uint64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int k = read_line(m, deadline, ans, len);
    if (k == 0) fprintf(stderr, "raft-perf: member %s exited\n", m->id);
    if (k == -1) fprintf(stderr, "raft-perf: member %s: no answer to '%s'\n", m->id, want);
    if (k != 1) return false;
    if (!strncmp(ans, want, strlen(want))) return true;
    if (!strncmp(ans, "error", 5)) {
      fprintf(stderr, "raft-perf: member %s: %s\n", m->id, ans);
      return false;
    }
  }
}

/* ---- members -------------------------------------------------------------------------------- */

static void member_opts(struct perf *p, int i, struct raft_node_opts *no, char text[][160]) {
  const struct pg_run *r = &p->run;
  int t = 0;
  snprintf(text[t++], 160, "rs.port=%d", r->base_port + i);
  snprintf(text[t++], 160, "rs.bind_addr=127.0.0.1");
  snprintf(text[t++], 160, "rs.mcast_addr=%s", r->mcast_addr);
  snprintf(text[t++], 160, "rs.mcast_port=%d", r->mcast_port);
  snprintf(text[t++], 160, "rs.ttl=0");
  snprintf(text[t++], 160, "rs.initial_hosts=127.0.0.1[%d]", r->base_port);
  snprintf(text[t++], 160, "rs.hosts_range=%d", p->o.members - 1);
  snprintf(text[t++], 160, "rs.raft.members=%s", p->members_prop);
  snprintf(text[t++], 160, "rs.raft.log_dir=%s", p->logroot);
  snprintf(text[t++], 160, "rs.raft.log_class=%s", p->fsync ? "file" : "memory");
  snprintf(text[t++], 160, "rs.raft.fsync=%s", p->fsync ? "true" : "false");
  *no = (struct raft_node_opts){.config = p->o.config, .id = p->m[i].id, .cluster = r->cluster};
  for (int k = 0; k < t; k++)
    raft_node_add_prop(no, text[k]);
  /* The user's come last: a later definition of a name wins. */
  for (int k = 0; k < p->o.n_user_props; k++)
    raft_node_add_prop(no, p->o.user_props[k]);
}

static int spawn(struct perf *p, int i) {
  int down[2], up[2];
  if (pipe(down)) return -1;
  if (pipe(up)) {
    close(down[0]);
    close(down[1]);
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    /* Only our own pipe ends: another member's held here would hide the parent's death. */
    for (int k = 0; k < i; k++) {
      close(p->m[k].to);
      close(p->m[k].from);
    }
    close(down[1]);
    close(up[0]);
    signal(SIGPIPE, SIG_IGN);
    char text[16][160];
    struct raft_node_opts no;
    member_opts(p, i, &no, text);
    _exit(raft_node_serve(&no, down[0], up[1]));
  }
  close(down[0]);
  close(up[1]);
  if (pid < 0) {
    perror("raft-perf: fork");
    close(down[1]);
    close(up[0]);
    return -1;
  }
  p->m[i].pid = pid;
  p->m[i].to = down[1];
  p->m[i].from = up[0];
  return 0;
}

static void kill_all(struct perf *p, int n) {
  for (int i = 0; i < n; i++) {
    kill(p->m[i].pid, SIGKILL);
    waitpid(p->m[i].pid, NULL, 0);
    close(p->m[i].to);
    close(p->m[i].from);
  }
}

/* True when the member exited by itself with status 0. */
static bool wait_exit(struct member *m) {
  int status = 0;
  for (int waited = 0; waited < EXIT_TIMEOUT_MS; waited += 10) {
    pid_t k = waitpid(m->pid, &status, WNOHANG);
    if (k == m->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    if (k != 0) {
      fprintf(stderr, "raft-perf: member %s exited with %s %d\n", m->id,
              WIFEXITED(status) ? "status" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      return false;
    }
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "raft-perf: member %s did not exit within %d s: killed\n", m->id,
          EXIT_TIMEOUT_MS / 1000);
  kill(m->pid, SIGKILL);
  waitpid(m->pid, NULL, 0);
  return false;
}

/* Followers leave first, the leader last, so no election runs while the cluster shuts down.
 * False when a member failed (a command's error, a crash, a sanitizer's or valgrind's report). */
static bool quit_all(struct perf *p, int leader) {
  int n = p->o.members;
  bool ok = true;
  for (int j = 0; j < n; j++) {
    int i = (leader + 1 + j) % n;
    send_line(&p->m[i], "quit\n");
    ok = wait_exit(&p->m[i]) && ok;
    close(p->m[i].to);
    close(p->m[i].from);
  }
  return ok;
}

/* The first alone until it is connected (it becomes the coordinator), then the others. */
static bool start_members(struct perf *p) {
  char line[4096];
  int n = p->o.members, started = 0;
  bool ok = true;
  for (int i = 0; ok && i < n; i++) {
    ok = spawn(p, i) == 0;
    started += ok;
    if (ok && i == 0) ok = ask(&p->m[0], NULL, "ready", line, sizeof(line), START_TIMEOUT_MS);
  }
  for (int i = 1; ok && i < n; i++)
    ok = ask(&p->m[i], NULL, "ready", line, sizeof(line), START_TIMEOUT_MS);
  if (!ok) kill_all(p, started);
  return ok;
}

static bool field(const char *line, const char *name, char *out, size_t len) {
  const char *s = strstr(line, name);
  if (!s) return false;
  s += strlen(name);
  size_t k = strcspn(s, " ");
  snprintf(out, len, "%.*s", (int)k, s);
  return true;
}

/* Polls every member's status until all name one leader that says it leads. Its index, or -1. */
static int wait_leader(struct perf *p) {
  char line[4096], leader[64], role[32], first[64];
  uint64_t deadline = now_ms() + LEADER_TIMEOUT_MS;
  while (now_ms() < deadline) {
    int at = -1;
    bool agree = true;
    for (int i = 0; i < p->o.members; i++) {
      if (!ask(&p->m[i], "status\n", "status", line, sizeof(line), 5000)) return -1;
      if (!field(line, " leader=", leader, sizeof(leader)) || !strcmp(leader, "-")) agree = false;
      if (i == 0)
        snprintf(first, sizeof(first), "%s", leader);
      else if (strcmp(first, leader))
        agree = false;
      if (field(line, " role=", role, sizeof(role)) && !strcmp(role, "Leader")) at = i;
    }
    if (agree && at >= 0 && !strcmp(p->m[at].id, first)) return at;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "raft-perf: no leader that every member agrees on within %d s\n",
          LEADER_TIMEOUT_MS / 1000);
  return -1;
}

/* ---- the run -------------------------------------------------------------------------------- */

struct result {
  uint64_t commits, errors, p50, p90, p99, p999, max, mean;
  double secs;
  char err[64];
};

static bool parse_result(const char *line, struct result *r) {
  return sscanf(line,
                "bench commits=%" SCNu64 " secs=%lf errors=%" SCNu64 " err=%63s p50_ns=%" SCNu64
                " p90_ns=%" SCNu64 " p99_ns=%" SCNu64 " p999_ns=%" SCNu64 " max_ns=%" SCNu64
                " mean_ns=%" SCNu64,
                &r->commits, &r->secs, &r->errors, r->err, &r->p50, &r->p90, &r->p99, &r->p999,
                &r->max, &r->mean) == 10;
}

/* Runs bench in the leader's process, echoing its progress lines. */
static bool run_bench(struct perf *p, struct member *m, struct result *r) {
  char cmd[128], line[4096];
  snprintf(cmd, sizeof(cmd), "bench %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
           p->outstanding, p->size, p->duration, p->warmup);
  send_line(m, cmd);
  uint64_t deadline = now_ms() + (p->duration + p->warmup) * 1000 + 60000;
  for (;;) {
    int k = read_line(m, deadline, line, sizeof(line));
    if (k != 1) {
      fprintf(stderr, "raft-perf: leader %s %s\n", m->id, k ? "did not finish" : "exited");
      return false;
    }
    char t[16], c[32], rate[32];
    if (!strncmp(line, "progress ", 9) && field(line, " t=", t, sizeof(t)) &&
        field(line, " commits=", c, sizeof(c)) && field(line, " rate=", rate, sizeof(rate))) {
      printf("raft-perf: %ss commits=%s (%s/s)%s\n", t, c, rate,
             strstr(line, " warmup") ? " warmup" : "");
      fflush(stdout);
    } else if (!strncmp(line, "bench ", 6)) {
      if (parse_result(line, r)) return true;
      fprintf(stderr, "raft-perf: unreadable result '%s'\n", line);
      return false;
    } else if (!strncmp(line, "error", 5)) {
      fprintf(stderr, "raft-perf: leader %s: %s\n", m->id, line);
      return false;
    }
  }
}

/* After the load: every member applies up to the leader's commit index and all have one digest
 * (count and hash of the commands applied), so a run whose nodes diverged cannot pass. */
static bool check_members(struct perf *p, int leader, uint64_t completed) {
  char line[4096], v[64], cmd[64], first[4096] = "";
  if (!ask(&p->m[leader], "status\n", "status", line, sizeof(line), 5000) ||
      !field(line, " commit=", v, sizeof(v)))
    return false;
  uint64_t commit = strtoull(v, NULL, 10);
  if (commit < completed) {
    fprintf(stderr,
            "raft-perf: leader's commit index %" PRIu64 " below the %" PRIu64
            " commands completed\n",
            commit, completed);
    return false;
  }
  snprintf(cmd, sizeof(cmd), "wait-applied %" PRIu64 " 30000\n", commit);
  for (int i = 0; i < p->o.members; i++)
    if (!ask(&p->m[i], cmd, "applied", line, sizeof(line), 35000) ||
        strncmp(line, "applied ok", 10)) {
      fprintf(stderr, "raft-perf: member %s did not apply %" PRIu64 ": %s\n", p->m[i].id, commit,
              line);
      return false;
    }
  /* No command runs now: once all report one applied index, their digests must agree. */
  for (uint64_t deadline = now_ms() + 10000; now_ms() < deadline;) {
    bool same = true;
    for (int i = 0; i < p->o.members && same; i++) {
      if (!ask(&p->m[i], "digest\n", "digest", line, sizeof(line), 5000)) return false;
      if (i == 0)
        snprintf(first, sizeof(first), "%s", line);
      else
        same = !strcmp(first, line);
    }
    if (same) {
      printf("raft-perf: all %d members applied up to %" PRIu64 " with one %s\n", p->o.members,
             commit, first);
      return true;
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "raft-perf: the members' digests differ (last: %s)\n", first);
  return false;
}

static void print_stats(struct member *m) {
  char line[4096];
  send_line(m, "stats\n");
  while (read_line(m, now_ms() + 10000, line, sizeof(line)) == 1 && strcmp(line, "stats end"))
    fprintf(stderr, "  %s %s\n", m->id, line);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path) ? -1 : 0;
}

/* ---- options -------------------------------------------------------------------------------- */

static int parse_u64(const char *arg, uint64_t lo, uint64_t hi, const char *what, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 10);
  if (errno || end == arg || *end || arg[0] == '-' || v < lo || v > hi) {
    fprintf(stderr, "raft-perf: %s wants a number in %" PRIu64 "..%" PRIu64 "\n", what, lo, hi);
    return TOOL_USAGE;
  }
  *out = v;
  return 0;
}

static int parse_args(struct perf *p, int argc, char **argv) {
  static const struct option longopts[] = {{"members", required_argument, NULL, 'n'},
                                           {"outstanding", required_argument, NULL, 'k'},
                                           {"size", required_argument, NULL, 's'},
                                           {"duration", required_argument, NULL, 'd'},
                                           {"warmup", required_argument, NULL, 'w'},
                                           {"fsync", required_argument, NULL, 'f'},
                                           PG_COMMON_LONGOPTS,
                                           {NULL, 0, NULL, 0}};
  uint64_t v;
  int opt;
  while ((opt = getopt_long(argc, argv, "n:k:s:d:w:f:" PG_COMMON_SHORTOPTS, longopts, NULL)) !=
         -1) {
    int rc = pg_common_opt(&p->o, opt, optarg, "raft");
    if (rc >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (opt) {
    case 'n':
      if (parse_u64(optarg, 1, 26, "--members", &v)) return TOOL_USAGE;
      p->o.members = (int)v;
      break;
    case 'k':
      if (parse_u64(optarg, 1, 65536, "--outstanding", &p->outstanding)) return TOOL_USAGE;
      break;
    case 's':
      if (parse_u64(optarg, 1, 1000000, "--size", &p->size)) return TOOL_USAGE;
      break;
    case 'd':
      if (parse_u64(optarg, 1, 86400, "--duration", &p->duration)) return TOOL_USAGE;
      break;
    case 'w':
      if (parse_u64(optarg, 0, 3600, "--warmup", &p->warmup)) return TOOL_USAGE;
      break;
    case 'f':
      if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
        fprintf(stderr, "raft-perf: --fsync wants on or off\n");
        return TOOL_USAGE;
      }
      p->fsync = !strcmp(optarg, "on");
      break;
    case 'h': usage(stdout); exit(TOOL_OK);
    default: usage(stderr); return TOOL_USAGE;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return TOOL_USAGE;
  }
  return 0;
}

static int run(struct perf *p) {
  int n = p->o.members;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    snprintf(p->m[i].id, sizeof(p->m[i].id), "%c", 'A' + i);
    off += (size_t)snprintf(p->members_prop + off, sizeof(p->members_prop) - off, "%s%s",
                            i ? "," : "", p->m[i].id);
  }
  if (pg_run_init(&p->run, &p->o)) return TOOL_FAIL;
  snprintf(p->run.cluster, sizeof(p->run.cluster), "raft-perf-%d-%d", (int)getpid(),
           p->run.base_port);
  if (!start_members(p)) return TOOL_FAIL;
  int leader = wait_leader(p);
  if (leader < 0) {
    kill_all(p, n);
    return TOOL_FAIL;
  }
  printf("raft-perf: %d members over %s, leader %s; %s, %" PRIu64 " outstanding, %" PRIu64
         " bytes, %" PRIu64 " s after %" PRIu64 " s warmup\n",
         n, pg_config_base(&p->o), p->m[leader].id, p->fsync ? "fsync on" : "memory log",
         p->outstanding, p->size, p->duration, p->warmup);
  struct result r = {0};
  bool got = run_bench(p, &p->m[leader], &r), ok = got;
  for (int i = 0; got && p->o.verbose && i < n; i++)
    print_stats(&p->m[i]);
  if (ok && !check_members(p, leader, r.commits)) ok = false;
  if (!quit_all(p, leader)) ok = false;
  if (!got) return TOOL_FAIL;
  double secs = r.secs > 0 ? r.secs : 1e-9;
  printf("raft-perf members=%d outstanding=%" PRIu64 " size=%" PRIu64
         " fsync=%s config=%s duration=%.1fs commits=%" PRIu64
         " throughput=%.0f/s p50=%.1fus p90=%.1fus p99=%.1fus p99.9=%.1fus max=%.1fus"
         " errors=%" PRIu64 "%s%s\n",
         n, p->outstanding, p->size, p->fsync ? "on" : "off", pg_config_base(&p->o), r.secs,
         r.commits, (double)r.commits / secs, (double)r.p50 / 1e3, (double)r.p90 / 1e3,
         (double)r.p99 / 1e3, (double)r.p999 / 1e3, (double)r.max / 1e3, r.errors,
         r.errors ? " first_error=" : "", r.errors ? r.err : "");
  return ok && !r.errors && r.commits ? TOOL_OK : TOOL_FAIL;
}

int main(int argc, char **argv) {
  struct perf p = {.o = {.members = 3, .config_arg = "raft.xml", .timeout_s = 10},
                   .outstanding = 1,
                   .size = 100,
                   .duration = 10,
                   .warmup = 1,
                   .fsync = true};
  int rc = parse_args(&p, argc, argv);
  if (rc) return rc;
  if (p.o.timeout_s == 0) p.o.timeout_s = 10;
  if (pg_resolve_config(&p.o, "raft")) return TOOL_USAGE;
  snprintf(p.logroot, sizeof(p.logroot), "/tmp/raft-perf-XXXXXX");
  if (!mkdtemp(p.logroot)) {
    perror("raft-perf: mkdtemp");
    return TOOL_FAIL;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  rc = run(&p);
  nftw(p.logroot, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}

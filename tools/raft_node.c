/* A Raft node for scripts and raft-perf: a RaftHandle over an XML stack, driven by line commands.
 */
#include "tools/raft_node.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <raftstack/raft.h>
#include <raftstack/raftstack.h>

#include "protocols/raft/raft.h"
#include "stack/channel_internal.h"
#include "stack/protocol.h"
#include "stack/runtime.h"

/*
 * The node opens the channel with the given properties plus raft_id=<id>, puts a RaftHandle on
 * it and connects. Its state machine is a digest of what it applied: a count and a hash chained
 * over (index, data) of every command, so two nodes that applied the same commands in the same
 * order print the same digest. It lives on the loop thread (apply writes it, `digest` reads it
 * there through rs_runtime_call), so apply takes no lock. The response to a command is its index (8
 * bytes, big-endian) followed by its first 32 bytes, so a caller can tell that the answer is for
 * its own command.
 *
 * Commands (one a line) and answers (one line each; fields are name=value):
 *   status                 status id= role= term= leader= commit= applied= last= log_bytes=
 *   put N [SIZE [WINDOW]]  N commands "<id>:<seq>:..." of SIZE bytes (16), WINDOW in flight
 *                          (64), each checked against its response:
 *                          put ok= failed= bad_rsp= first= last= ms= err=
 *   await-commit MS        retries a one-command set until one succeeds (at most MS):
 *                          committed ms= index= leader= term=    or   await failed ms= err=
 *   wait-applied INDEX MS  applied ok index= ms=                 or   applied timeout have=
 *   digest                 digest applied= count= hash=
 *   stats                  stat PROTOCOL.counter=value ..., the log's batches (stat LOG....),
 *                          then "stats end"
 *   bench K SIZE SECS WARMUP   see raft_node_bench.c
 *   quit                   bye
 * An unknown command answers "error unknown command". At start: "ready id=..." or
 * "error ..." and exit 1.
 */

#define RSP_ECHO 32
#define PUT_TIMEOUT_MS 60000 /* for a whole put */
#define AWAIT_SET_TIMEOUT_MS 100
#define AWAIT_RETRY_MS 5

/* Written by apply on the loop thread; read there too (cmd_digest hops to the loop). */
struct digest {
  uint64_t count, hash, applied;
};

struct node {
  const struct raft_node_opts *o;
  struct rs_channel *ch;
  struct rs_raft *h;
  struct digest d;
  int out;
  bool failed; /* a command reported an error: the exit status says so */
};

void raft_node_say(int fd, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k > sizeof(line) - 2) k = (int)sizeof(line) - 2;
  line[k++] = '\n';
  for (const char *p = line; k > 0;) {
    ssize_t w = write(fd, p, (size_t)k);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the reader is gone; it notices our exit */
    p += w;
    k -= (int)w;
  }
}

int raft_node_add_prop(struct raft_node_opts *o, const char *nv) {
  if (!strchr(nv, '=') || o->n_props == RAFT_NODE_MAX_PROPS) return -1;
  o->props[o->n_props++] = nv;
  o->props[o->n_props] = NULL;
  return 0;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* ---- the state machine ---------------------------------------------------------------------- */

/* A chained hash, eight bytes a step (apply runs for every command on every node, so a
 * byte-wise hash would cost more than Raft itself in raft-perf). Detects divergence; not crypto. */
static uint64_t mix(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len) {
  const uint8_t *p = data;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = mix(h, w);
  }
  uint64_t tail = 0;
  for (; i < len; i++)
    tail = tail << 8 | p[i];
  return mix(h, tail ^ (uint64_t)len << 56);
}

static int sm_apply(void *arg, uint64_t index, const void *data, size_t len,
                    struct rs_raft_reply *reply) {
  struct node *n = arg;
  uint8_t rsp[8 + RSP_ECHO];
  n->d.hash = hash_bytes(mix(n->d.hash, index), data, len);
  n->d.count++;
  n->d.applied = index;
  size_t echo = len < RSP_ECHO ? len : RSP_ECHO;
  put_be64(rsp, index);
  if (echo) memcpy(rsp + 8, data, echo);
  rs_raft_reply_set(reply, rsp, 8 + echo);
  return 0;
}

static void sm_error(void *arg, int err, const char *detail) {
  (void)arg;
  fprintf(stderr, "raft-node: the node stopped: %s: %s\n", rs_strerror(err), detail ? detail : "");
}

static const struct rs_state_machine node_sm = {.apply = sm_apply, .error = sm_error};

/* ---- commands ------------------------------------------------------------------------------- */

static void cmd_status(struct node *n) {
  char leader[256];
  if (!rs_raft_leader(n->h, leader, sizeof(leader))) snprintf(leader, sizeof(leader), "-");
  raft_node_say(n->out,
                "status id=%s role=%s term=%" PRIu64 " leader=%s commit=%" PRIu64
                " applied=%" PRIu64 " last=%" PRIu64 " log_bytes=%" PRIu64,
                rs_raft_id(n->h), rs_raft_role_name(rs_raft_role(n->h)), rs_raft_current_term(n->h),
                leader, rs_raft_commit_index(n->h), rs_raft_last_applied(n->h),
                rs_raft_last_index(n->h), rs_raft_log_size(n->h));
}

struct digest_req {
  struct node *n;
  struct digest d;
  struct rs_completion done;
};

static void digest_on_loop(void *arg) {
  struct digest_req *r = arg;
  r->d = r->n->d;
  completion_done(&r->done, 0);
}

static void cmd_digest(struct node *n) {
  struct digest_req r = {.n = n};
  completion_init(&r.done);
  if (rs_runtime_call(channel_runtime(n->ch), digest_on_loop, &r) == 0)
    completion_wait(channel_runtime(n->ch), &r.done, UINT64_MAX);
  completion_fini(&r.done);
  struct digest d = r.d;
  raft_node_say(n->out, "digest applied=%" PRIu64 " count=%" PRIu64 " hash=%016" PRIx64, d.applied,
                d.count, d.hash);
}

/* A command's bytes: "<id>:<seq>:" then filler up to size. */
static size_t make_command(uint8_t *buf, size_t size, const char *id, uint64_t seq) {
  int k = snprintf((char *)buf, size + 1, "%s:%" PRIu64 ":", id, seq);
  size_t len = (size_t)k < size ? size : (size_t)k;
  for (size_t i = (size_t)k; i < len; i++)
    buf[i] = (uint8_t)('a' + i % 26);
  return len;
}

struct put_state {
  uint64_t ok, failed, bad_rsp, first, last;
  uint64_t deadline_ms; /* the whole put: PUT_TIMEOUT_MS from its start */
  int first_err;
};

/* Waits for one future and checks that its response names the command that was sent. */
static void put_collect(struct put_state *s, struct rs_raft_future *f, const uint8_t *cmd,
                        size_t len) {
  struct rs_raft_rsp rsp = {0};
  uint64_t t = now_ms();
  int rc = rs_raft_future_wait_for(f, s->deadline_ms > t ? s->deadline_ms - t : 0, &rsp);
  rs_raft_future_free(f);
  if (rc) {
    s->failed++;
    if (!s->first_err) s->first_err = rc;
    free(rsp.data);
    return;
  }
  size_t echo = len < RSP_ECHO ? len : RSP_ECHO;
  const uint8_t *r = rsp.data;
  uint64_t idx = rsp.len == 8 + echo ? get_be64(r) : 0;
  if (!idx || memcmp(r + 8, cmd, echo)) {
    s->bad_rsp++;
  } else {
    s->ok++;
    if (!s->first || idx < s->first) s->first = idx;
    if (idx > s->last) s->last = idx;
  }
  free(rsp.data);
}

static void cmd_put(struct node *n, const char *args) {
  unsigned long long count = 0, size = 16, window = 64;
  if (sscanf(args, "%llu %llu %llu", &count, &size, &window) < 1 || !count || size < 8 ||
      size > 1000000 || !window || window > 4096) {
    raft_node_say(n->out, "error usage: put N [SIZE [WINDOW]]");
    return;
  }
  static uint64_t seq; /* unique over the node's life: every command differs */
  struct rs_raft_future **fut = calloc(window, sizeof(*fut));
  uint8_t *cmds = malloc(window * (size + 64));
  size_t *lens = calloc(window, sizeof(*lens));
  uint64_t t0 = now_ms();
  struct put_state s = {.deadline_ms = t0 + PUT_TIMEOUT_MS};
  for (uint64_t i = 0; fut && cmds && lens && i < count + window; i++) {
    size_t slot = i % window;
    uint8_t *cmd = cmds + slot * (size + 64);
    if (fut[slot]) {
      put_collect(&s, fut[slot], cmd, lens[slot]);
      fut[slot] = NULL;
    }
    if (i >= count) continue;
    lens[slot] = make_command(cmd, size, rs_raft_id(n->h), ++seq);
    int rc = rs_raft_set_async(n->h, cmd, lens[slot], &fut[slot]);
    if (rc) {
      fut[slot] = NULL;
      s.failed++;
      if (!s.first_err) s.first_err = rc;
    }
  }
  if (s.failed || s.bad_rsp || s.ok != count) n->failed = true;
  raft_node_say(n->out,
                "put ok=%" PRIu64 " failed=%" PRIu64 " bad_rsp=%" PRIu64 " first=%" PRIu64
                " last=%" PRIu64 " ms=%" PRIu64 " err=%s",
                s.ok, s.failed, s.bad_rsp, s.first, s.last, now_ms() - t0,
                s.first_err ? rs_errname(s.first_err) : "-");
  free(fut);
  free(cmds);
  free(lens);
}

/* Retries until one command commits: after a leader's crash this measures how soon the cluster
 * takes writes again. Every failure here means "not yet" (no leader, an old leader's request
 * lost, a timeout at a dead leader); the first success was committed by a live leader. */
static void cmd_await_commit(struct node *n, const char *args) {
  unsigned long long limit = 0;
  if (sscanf(args, "%llu", &limit) != 1 || !limit) {
    raft_node_say(n->out, "error usage: await-commit MS");
    return;
  }
  uint64_t t0 = now_ms(), tries = 0;
  int rc = RS_ETIMEDOUT;
  uint8_t cmd[64];
  static uint64_t seq;
  while (now_ms() - t0 < limit) {
    int k = snprintf((char *)cmd, sizeof(cmd), "%s:await:%" PRIu64, rs_raft_id(n->h), ++seq);
    struct rs_raft_rsp rsp = {0};
    tries++;
    rc = rs_raft_set(n->h, cmd, (size_t)k, &rsp, AWAIT_SET_TIMEOUT_MS);
    uint64_t idx = rc == 0 && rsp.len >= 8 ? get_be64(rsp.data) : 0;
    free(rsp.data);
    if (rc == 0) {
      char leader[256];
      if (!rs_raft_leader(n->h, leader, sizeof(leader))) snprintf(leader, sizeof(leader), "-");
      raft_node_say(n->out,
                    "committed ms=%" PRIu64 " index=%" PRIu64 " leader=%s term=%" PRIu64
                    " tries=%" PRIu64,
                    now_ms() - t0, idx, leader, rs_raft_current_term(n->h), tries);
      return;
    }
    sleep_ms(AWAIT_RETRY_MS);
  }
  n->failed = true;
  raft_node_say(n->out, "await failed ms=%" PRIu64 " err=%s tries=%" PRIu64, now_ms() - t0,
                rs_errname(rc), tries);
}

static void cmd_wait_applied(struct node *n, const char *args) {
  unsigned long long index = 0, limit = 0;
  if (sscanf(args, "%llu %llu", &index, &limit) != 2) {
    raft_node_say(n->out, "error usage: wait-applied INDEX MS");
    return;
  }
  uint64_t t0 = now_ms();
  while (rs_raft_last_applied(n->h) < index && now_ms() - t0 < limit)
    sleep_ms(5);
  uint64_t have = rs_raft_last_applied(n->h);
  if (have >= index)
    raft_node_say(n->out, "applied ok index=%" PRIu64 " ms=%" PRIu64, have, now_ms() - t0);
  else
    raft_node_say(n->out, "applied timeout have=%" PRIu64, have);
}

/* ---- stats: every protocol's non-zero counters, read on the loop thread that owns them ---- */

struct stats_req {
  struct node *n;
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
  if (strcmp(value, "0")) raft_node_say(r->n->out, "stat %s.%s=%s", r->proto, name, value);
}

/* The log's group commit: how many entries each batch (one write + one fsync) carried. */
static void log_stats(struct stats_req *r) {
  struct raft *raft = raft_find(channel_stack(r->n->ch));
  const struct raft_log *log = raft ? raft_get_log(raft) : NULL;
  if (!log) return;
  struct raft_log_stats st;
  raft_log_get_stats(log, &st);
  raft_node_say(r->n->out,
                "stat LOG.batches=%" PRIu64 " LOG.entries_written=%" PRIu64
                " LOG.avg_batch_entries=%.1f LOG.max_batch_entries=%" PRIu64
                " LOG.bytes_written=%" PRIu64,
                st.batches, st.entries_written,
                st.batches ? (double)st.entries_written / (double)st.batches : 0.0,
                st.max_batch_entries, st.bytes_written);
}

static void stats_on_loop(void *arg) {
  struct stats_req *r = arg;
  struct rs_stats_printer out = {.line = print_stat, .arg = r};
  for (struct rs_protocol *p = channel_stack(r->n->ch)->bottom; p; p = p->up) {
    r->proto = p->ops->name;
    if (p->ops->stats) p->ops->stats(p, &out);
  }
  log_stats(r);
  completion_done(&r->done, 0);
}

static void cmd_stats(struct node *n) {
  struct stats_req r = {.n = n};
  completion_init(&r.done);
  if (rs_runtime_call(channel_runtime(n->ch), stats_on_loop, &r) == 0)
    completion_wait(channel_runtime(n->ch), &r.done, UINT64_MAX);
  completion_fini(&r.done);
  raft_node_say(n->out, "stats end");
}

/* ---- the node ------------------------------------------------------------------------------- */

static int node_start(struct node *n) {
  char err[2048], idprop[300];
  struct raft_node_opts o = *n->o;
  snprintf(idprop, sizeof(idprop), "raft_id=%s", o.id);
  /* Ours first: a -Draft_id given by the user comes later and wins, as on a Java command line. */
  memmove(o.props + 1, o.props, (size_t)o.n_props * sizeof(o.props[0]));
  o.props[0] = idprop;
  o.props[++o.n_props] = NULL;
  struct rs_channel_opts co = {.config_file = o.config, .props = o.props, .name = o.id};
  int rc = rs_channel_open(&n->ch, &co, err, sizeof(err));
  if (rc) {
    for (char *p = err; *p; p++)
      if (*p == '\n') *p = ' ';
    raft_node_say(n->out, "error %s", err);
    return rc;
  }
  rc = rs_raft_open(&n->h, n->ch, &node_sm, n);
  if (rc) {
    raft_node_say(n->out, "error rs_raft_open: %s", rs_strerror(rc));
    return rc;
  }
  rc = rs_channel_connect(n->ch, o.cluster);
  if (rc) {
    raft_node_say(n->out, "error connect: %s (%s)", rs_strerror(rc), rs_channel_last_error(n->ch));
    return rc;
  }
  raft_node_say(n->out, "ready id=%s pid=%d", o.id, (int)getpid());
  return 0;
}

static bool dispatch(struct node *n, char *line) {
  char *args = line + strcspn(line, " ");
  if (*args) *args++ = '\0';
  if (!strcmp(line, "status"))
    cmd_status(n);
  else if (!strcmp(line, "put"))
    cmd_put(n, args);
  else if (!strcmp(line, "await-commit"))
    cmd_await_commit(n, args);
  else if (!strcmp(line, "wait-applied"))
    cmd_wait_applied(n, args);
  else if (!strcmp(line, "digest"))
    cmd_digest(n);
  else if (!strcmp(line, "stats"))
    cmd_stats(n);
  else if (!strcmp(line, "bench")) {
    if (raft_node_bench(n->h, channel_runtime(n->ch), args, n->out)) n->failed = true;
  } else if (!strcmp(line, "quit"))
    return false;
  else if (line[0])
    raft_node_say(n->out, "error unknown command '%s'", line);
  return true;
}

int raft_node_serve(const struct raft_node_opts *o, int in_fd, int out_fd) {
  struct node n = {.o = o, .out = out_fd};
  n.d.hash = 14695981039346656037ull;
  int status = 1;
  FILE *in = NULL;
  if (node_start(&n)) goto out;
  in = fdopen(in_fd, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while (in && (len = getline(&line, &cap, in)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (!dispatch(&n, line)) break;
  }
  free(line);
  status = n.failed ? 1 : 0;
out:
  if (n.ch) rs_channel_disconnect(n.ch);
  if (n.h) rs_raft_close(n.h);
  if (n.ch) rs_channel_close(n.ch);
  if (in) fclose(in);
  if (status == 0 || n.h) raft_node_say(out_fd, "bye status=%d", status);
  return status;
}

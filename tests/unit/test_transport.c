/* Transport tests: UDP, TCP and LOOPBACK channels exchanging messages, bad input, bind_addr. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <raftstack/raftstack.h>

#include "stack/channel_internal.h"
#include "stack/runtime.h"
#include "tests/lib/testlib.h"
#include "transport/bindaddr.h"
#include "transport/tp.h"

/* Everything here talks to 127.0.0.1, or to a multicast group through the loopback interface
 * with ip_ttl 0: no packet leaves the machine. */

#define MAX_NODES 4
#define TOTAL_MSGS 100000
#define KIND_GROUP 0
#define KIND_UCAST 1
#define KIND_BIG 2 /* a unicast of any size */

/* ---- nodes that check what they receive ----------------------------------------------------- */

/* Payload: kind (1 byte), sender index (1), sequence number (8, big-endian), then filler bytes
 * derived from the sequence number, so any corruption or misdelivery shows. */
#define PAYLOAD_HDR 10

struct node {
  struct rs_channel *ch;
  int idx;
  struct rs_addr addr;
  uint64_t next[MAX_NODES][3]; /* loop thread only: next sequence number expected */
  atomic_ulong got[MAX_NODES][3];
  atomic_ulong disorder, corrupt, foreign;
};

static struct node nodes[MAX_NODES];
static int n_nodes;

static size_t payload_size(uint64_t seq) { return PAYLOAD_HDR + 6 + (size_t)(seq % 190); }

static size_t make_payload(uint8_t *p, int kind, int sender, uint64_t seq) {
  size_t n = payload_size(seq);
  p[0] = (uint8_t)kind;
  p[1] = (uint8_t)sender;
  for (int i = 0; i < 8; i++) p[2 + i] = (uint8_t)(seq >> (56 - 8 * i));
  for (size_t i = PAYLOAD_HDR; i < n; i++) p[i] = (uint8_t)(seq * 31 + i);
  return n;
}

static size_t make_big_payload(uint8_t *p, size_t n, int sender, uint64_t seq) {
  make_payload(p, KIND_BIG, sender, seq);
  for (size_t i = PAYLOAD_HDR; i < n; i++) p[i] = (uint8_t)(seq * 31 + i);
  return n;
}

static bool payload_ok(const uint8_t *p, size_t len, uint64_t seq) {
  if (p[0] != KIND_BIG && len != payload_size(seq)) return false;
  for (size_t i = PAYLOAD_HDR; i < len; i++)
    if (p[i] != (uint8_t)(seq * 31 + i)) return false;
  return true;
}

static void on_receive(void *arg, const struct rs_addr *src, const void *data, size_t len,
                       unsigned flags) {
  struct node *me = arg;
  const uint8_t *p = data;
  if (len < PAYLOAD_HDR || p[0] > KIND_BIG || p[1] >= n_nodes) {
    atomic_fetch_add(&me->foreign, 1);
    return;
  }
  int kind = p[0], from = p[1];
  uint64_t seq = 0;
  for (int i = 0; i < 8; i++) seq = (seq << 8) | p[2 + i];
  if (!rs_addr_eq(src, &nodes[from].addr) || !payload_ok(p, len, seq)) {
    atomic_fetch_add(&me->corrupt, 1);
    return;
  }
  /* Each sender's stream must arrive in order: with loss (UDP) numbers may skip, never repeat
   * or go back. */
  if (seq < me->next[from][kind]) atomic_fetch_add(&me->disorder, 1);
  me->next[from][kind] = seq + 1;
  atomic_fetch_add(&me->got[from][kind], 1);
}

static const struct rs_receiver receiver = {.receive = on_receive};

static struct rs_channel *open_channel(const char *xml, const char *name, struct node *n) {
  struct rs_channel *ch;
  char err[1024];
  struct rs_channel_opts o = {.config_xml = xml, .name = name};
  int rc = rs_channel_open(&ch, &o, err, sizeof(err));
  ck_assert_msg(rc == 0, "open %s: %s", name, err);
  if (n) rs_channel_set_receiver(ch, &receiver, n);
  return ch;
}

static void start_node(int i, const char *xml, const char *cluster) {
  struct node *n = &nodes[i];
  char name[16];
  snprintf(name, sizeof(name), "n%d", i);
  memset(n, 0, sizeof(*n));
  n->idx = i;
  n->ch = open_channel(xml, name, n);
  int rc = rs_channel_connect(n->ch, cluster);
  ck_assert_msg(rc == 0, "connect %s: %s (%s)", name, rs_strerror(rc),
                rs_channel_last_error(n->ch));
  n->addr = rs_channel_address(n->ch);
}

static void stop_nodes(void) {
  for (int i = 0; i < n_nodes; i++) {
    rs_channel_close(nodes[i].ch);
    nodes[i].ch = NULL;
  }
  n_nodes = 0;
}

/* ---- stats, read on the channel's loop thread ----------------------------------------------- */

struct stat_req {
  struct rs_channel *ch;
  const char *name;
  char value[64];
  struct rs_completion done;
};

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct stat_req *r = out->arg;
  if (strcmp(name, r->name)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->value, sizeof(r->value), fmt, ap);
  va_end(ap);
}

static void stat_on_loop(void *arg) {
  struct stat_req *r = arg;
  struct rs_stats_printer out = {.line = stat_line, .arg = r};
  stack_stats(channel_stack(r->ch), &out);
  completion_done(&r->done, 0);
}

static uint64_t stat_of(struct rs_channel *ch, const char *name) {
  struct stat_req r = {.ch = ch, .name = name};
  completion_init(&r.done);
  ck_assert_int_eq(rs_runtime_call(channel_runtime(ch), stat_on_loop, &r), 0);
  completion_wait(channel_runtime(ch), &r.done, UINT64_MAX);
  completion_fini(&r.done);
  ck_assert_msg(r.value[0], "no stat '%s'", name);
  return strtoull(r.value, NULL, 10);
}

struct stat_at_least {
  struct rs_channel *ch;
  const char *name;
  uint64_t value;
};

static bool stat_reached(void *arg) {
  struct stat_at_least *s = arg;
  return stat_of(s->ch, s->name) >= s->value;
}

/* The transport's physical address (set before connect returned). */
static struct rs_phys phys_of(struct rs_channel *ch) {
  return ((struct rs_tp *)channel_stack(ch)->bottom)->local_phys;
}

/* ---- configurations ------------------------------------------------------------------------- */

/* A base port with n free consecutive ports (TCP and UDP) on 127.0.0.1. */
static int free_ports(int n) {
  static unsigned seed;
  if (!seed) seed = (unsigned)getpid() ^ (unsigned)time(NULL);
  for (int attempt = 0; attempt < 200; attempt++) {
    int base = 20000 + (int)(rand_r(&seed) % 35000u);
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
      for (int type = SOCK_STREAM; type <= SOCK_DGRAM && ok; type++) {
        int fd = socket(AF_INET, type, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + i))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
      }
    if (ok) return base;
  }
  ck_abort_msg("no free ports");
  return 0;
}

/* A multicast group and port of our own, so concurrent test runs do not hear each other. */
static void random_group(char *addr, size_t len, int *port) {
  unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
  snprintf(addr, len, "239.%u.%u.%u", 100 + r % 100, (r >> 8) % 250 + 1, (r >> 16) % 250 + 1);
  *port = free_ports(1);
}

static char *peers_list(int base, int n) {
  static char buf[512];
  buf[0] = '\0';
  for (int i = 0; i < n; i++)
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s127.0.0.1:%d", i ? "," : "",
             base + i);
  return buf;
}

enum tp_kind { TP_UDP, TP_UDP_NOMCAST, TP_TCP, TP_LOOPBACK };

static void make_xml(char *xml, size_t len, enum tp_kind kind, int port, int base, int n,
                     const char *group, int mport) {
  switch (kind) {
  case TP_UDP:
    snprintf(xml, len, "<config><UDP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "mcast_addr=\"%s\" mcast_port=\"%d\" ip_ttl=\"0\"/></config>", port, group, mport);
    break;
  case TP_UDP_NOMCAST:
    snprintf(xml, len, "<config><UDP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "ip_mcast=\"false\" peers=\"%s\"/></config>", port, peers_list(base, n));
    break;
  case TP_TCP:
    snprintf(xml, len, "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "peers=\"%s\"/></config>", port, peers_list(base, n));
    break;
  case TP_LOOPBACK: snprintf(xml, len, "<config><LOOPBACK/></config>"); break;
  }
}

static void start_cluster(enum tp_kind kind, int n, const char *cluster) {
  char xml[1024], group[32];
  int mport = 0, base = free_ports(n);
  random_group(group, sizeof(group), &mport);
  n_nodes = n;
  for (int i = 0; i < n; i++) {
    make_xml(xml, sizeof(xml), kind, base + i, base, n, group, mport);
    start_node(i, xml, cluster);
  }
}

/* ---- sending from several threads at once --------------------------------------------------- */

struct sender {
  int idx, kind;
  uint64_t count;
  int rc;
};

static void *send_thread(void *arg) {
  struct sender *s = arg;
  uint8_t buf[256];
  struct rs_addr dest = nodes[(s->idx + 1) % n_nodes].addr;
  for (uint64_t seq = 0; seq < s->count && !s->rc; seq++) {
    size_t len = make_payload(buf, s->kind, s->idx, seq);
    s->rc = rs_channel_send(nodes[s->idx].ch, s->kind == KIND_UCAST ? &dest : NULL, buf, len, 0);
  }
  return NULL;
}

/* Every node sends `count` messages (to the group, or each to its successor) concurrently. */
static void send_all(int kind, uint64_t count) {
  pthread_t th[MAX_NODES];
  struct sender s[MAX_NODES];
  for (int i = 0; i < n_nodes; i++) {
    s[i] = (struct sender){.idx = i, .kind = kind, .count = count};
    pthread_create(&th[i], NULL, send_thread, &s[i]);
  }
  for (int i = 0; i < n_nodes; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(s[i].rc == 0, "send from n%d: %s", i, rs_strerror(s[i].rc));
  }
}

/* What node `to` should get from `from` of a kind after send_all(kind, count). */
static uint64_t expected(int to, int from, int kind, uint64_t count) {
  if (kind == KIND_GROUP) return count; /* everyone, the sender too (loopback) */
  return (from + 1) % n_nodes == to ? count : 0;
}

struct expect {
  int kind;
  uint64_t count;
};

static bool all_arrived(void *arg) {
  const struct expect *e = arg;
  for (int to = 0; to < n_nodes; to++)
    for (int from = 0; from < n_nodes; from++)
      if (atomic_load(&nodes[to].got[from][e->kind]) < expected(to, from, e->kind, e->count))
        return false;
  return true;
}

static uint64_t total_got(int kind) {
  uint64_t t = 0;
  for (int to = 0; to < n_nodes; to++)
    for (int from = 0; from < n_nodes; from++) t += atomic_load(&nodes[to].got[from][kind]);
  return t;
}

/* For lossy transports: waits until everything arrived or nothing more came for 1 s. */
static void wait_quiet(int kind, const struct expect *e, unsigned timeout_ms) {
  uint64_t last = total_got(kind), deadline = test_now_ms() + timeout_ms;
  uint64_t changed = test_now_ms();
  while (!all_arrived((void *)e) && test_now_ms() < deadline && test_now_ms() - changed < 1000) {
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t now = total_got(kind);
    if (now != last) {
      last = now;
      changed = test_now_ms();
    }
  }
}

static void check_clean(bool lossless, int kind, uint64_t count) {
  for (int to = 0; to < n_nodes; to++) {
    ck_assert_uint_eq(atomic_load(&nodes[to].corrupt), 0);
    ck_assert_uint_eq(atomic_load(&nodes[to].foreign), 0);
    ck_assert_uint_eq(atomic_load(&nodes[to].disorder), 0);
    for (int from = 0; from < n_nodes; from++) {
      uint64_t got = atomic_load(&nodes[to].got[from][kind]);
      uint64_t want = expected(to, from, kind, count);
      if (lossless) ck_assert_msg(got == want, "n%d got %lu of %lu from n%d", to,
                                  (unsigned long)got, (unsigned long)want, from);
      else ck_assert_uint_le(got, want);
    }
  }
}

/* 3 nodes: every node sends to the group, then each to its successor; TOTAL_MSGS messages are
 * sent in each phase. */
static void exchange(enum tp_kind kind, const char *cluster, bool lossless) {
  start_cluster(kind, 3, cluster);
  uint64_t per_node = (TOTAL_MSGS + 2) / 3;
  struct expect g = {KIND_GROUP, per_node}, u = {KIND_UCAST, per_node};
  send_all(KIND_GROUP, per_node);
  if (lossless) WAIT_UNTIL(all_arrived, &g, 120000, "every group message");
  else wait_quiet(KIND_GROUP, &g, 60000);
  check_clean(lossless, KIND_GROUP, per_node);
  /* Unicasts need the destination's physical address, learned from its group messages. */
  for (int to = 0; to < n_nodes; to++)
    for (int from = 0; from < n_nodes; from++)
      ck_assert_msg(atomic_load(&nodes[to].got[from][KIND_GROUP]) > 0, "n%d heard nothing from n%d",
                    to, from);
  send_all(KIND_UCAST, per_node);
  if (lossless) WAIT_UNTIL(all_arrived, &u, 120000, "every unicast");
  else wait_quiet(KIND_UCAST, &u, 60000);
  check_clean(lossless, KIND_UCAST, per_node);
  if (!lossless) fprintf(stderr, "%s: %lu of %lu group and %lu of %lu unicast deliveries\n",
                         cluster, (unsigned long)total_got(KIND_GROUP),
                         (unsigned long)(per_node * 9), (unsigned long)total_got(KIND_UCAST),
                         (unsigned long)(per_node * 3));
  stop_nodes();
}

START_TEST(test_exchange_tcp) { exchange(TP_TCP, "xtcp", true); }
END_TEST

START_TEST(test_exchange_loopback) { exchange(TP_LOOPBACK, "xloop", true); }
END_TEST

START_TEST(test_exchange_udp) {
  exchange(TP_UDP, "xudp", false);
}
END_TEST

START_TEST(test_exchange_udp_without_multicast) { exchange(TP_UDP_NOMCAST, "xudpu", false); }
END_TEST

/* ---- a restarted TCP peer ------------------------------------------------------------------- */

struct got_from {
  struct node *n;
  int from, kind;
  uint64_t at_least;
};

static bool got_enough(void *arg) {
  struct got_from *g = arg;
  return atomic_load(&g->n->got[g->from][g->kind]) >= g->at_least;
}

/* Sends numbered group messages from node `from` until `to` has received one more of them. */
static void send_until_heard(int from, int to, uint64_t *seq) {
  uint8_t buf[256];
  struct got_from g = {&nodes[to], from, KIND_GROUP, atomic_load(&nodes[to].got[from][0]) + 1};
  uint64_t deadline = test_now_ms() + 10000;
  while (!got_enough(&g)) {
    ck_assert_msg(test_now_ms() < deadline, "n%d never heard from n%d", to, from);
    size_t len = make_payload(buf, KIND_GROUP, from, (*seq)++);
    ck_assert_int_eq(rs_channel_send(nodes[from].ch, NULL, buf, len, 0), 0);
    wait_until(got_enough, &g, 20);
  }
}

START_TEST(test_tcp_reconnects_restarted_peer) {
  char xml[1024];
  int base = free_ports(2);
  uint64_t seq0 = 0, seq1 = 0;
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    make_xml(xml, sizeof(xml), TP_TCP, base + i, base, 2, NULL, 0);
    start_node(i, xml, "restart");
  }
  send_until_heard(0, 1, &seq0);
  send_until_heard(1, 0, &seq1);
  uint64_t connects_before = stat_of(nodes[0].ch, "tcp_connects");

  /* n1 goes away and comes back on the same port, with a new address and sequence numbers. */
  rs_channel_close(nodes[1].ch);
  make_xml(xml, sizeof(xml), TP_TCP, base + 1, base, 2, NULL, 0);
  start_node(1, xml, "restart");
  nodes[0].next[1][KIND_GROUP] = 0; /* n1's numbering starts again */
  seq1 = 0;
  /* Messages sent while the old connection dies may be lost; later ones must arrive. */
  send_until_heard(0, 1, &seq0);
  ck_assert_uint_ge(stat_of(nodes[0].ch, "tcp_connects") + stat_of(nodes[0].ch, "tcp_accepts"),
                    connects_before + 1);
  send_until_heard(1, 0, &seq1);

  /* Unicasts both ways over the new connection. */
  uint8_t buf[256];
  for (uint64_t s = 0; s < 100; s++) {
    size_t len = make_payload(buf, KIND_UCAST, 0, s);
    ck_assert_int_eq(rs_channel_send(nodes[0].ch, &nodes[1].addr, buf, len, 0), 0);
    len = make_payload(buf, KIND_UCAST, 1, s);
    ck_assert_int_eq(rs_channel_send(nodes[1].ch, &nodes[0].addr, buf, len, 0), 0);
  }
  struct got_from a = {&nodes[1], 0, KIND_UCAST, 100}, b = {&nodes[0], 1, KIND_UCAST, 100};
  WAIT_UNTIL(got_enough, &a, 10000, "unicasts to the restarted node");
  WAIT_UNTIL(got_enough, &b, 10000, "unicasts from the restarted node");
  for (int i = 0; i < 2; i++) {
    ck_assert_uint_eq(atomic_load(&nodes[i].corrupt), 0);
    ck_assert_uint_eq(atomic_load(&nodes[i].disorder), 0);
  }
  stop_nodes();
}
END_TEST

/* ---- idle connections ----------------------------------------------------------------------- */

static bool idle_expired(void *arg) {
  (void)arg;
  return stat_of(nodes[0].ch, "tcp_expired") + stat_of(nodes[1].ch, "tcp_expired") >= 1 &&
         stat_of(nodes[0].ch, "tcp_connections") == 0 && stat_of(nodes[1].ch, "tcp_connections") == 0;
}

START_TEST(test_tcp_idle_connections_expire) {
  char xml[1024];
  int base = free_ports(2);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    snprintf(xml, sizeof(xml), "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" "
             "port_range=\"0\" peers=\"%s\" conn_expire_time=\"300ms\" reaper_interval=\"50ms\"/>"
             "</config>", base + i, peers_list(base, 2));
    start_node(i, xml, "expire");
  }
  uint64_t seq0 = 0, seq1 = 0;
  send_until_heard(0, 1, &seq0);
  /* Both ends expire the connection after 300 ms idle; whichever reaper runs first closes it,
   * and the other end sees the close. */
  WAIT_UNTIL(idle_expired, NULL, 5000, "the idle connection closed");
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_connections"), 0);
  /* A new message opens a new connection. */
  send_until_heard(0, 1, &seq0);
  send_until_heard(1, 0, &seq1);
  ck_assert_uint_eq(atomic_load(&nodes[1].disorder), 0);
  stop_nodes();
}
END_TEST

/* ---- frames larger than the input buffer ---------------------------------------------------- */

START_TEST(test_tcp_large_messages) {
  char xml[1024];
  int base = free_ports(2);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    make_xml(xml, sizeof(xml), TP_TCP, base + i, base, 2, NULL, 0);
    start_node(i, xml, "large");
  }
  uint64_t seq = 0;
  send_until_heard(1, 0, &seq);
  /* Sizes around and far above the transport's 128 KiB input buffer, then small ones again. */
  static const size_t sizes[] = {100, 131072, 131073, 1 << 20, 3 << 20, 200, 65536, 10, 500000};
  size_t n = sizeof(sizes) / sizeof(sizes[0]);
  uint8_t *buf = malloc(3 << 20);
  ck_assert_ptr_nonnull(buf);
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < n; i++) {
      uint64_t s = (uint64_t)round * n + i;
      size_t len = make_big_payload(buf, sizes[i], 0, s);
      ck_assert_int_eq(rs_channel_send(nodes[0].ch, &nodes[1].addr, buf, len, 0), 0);
    }
  free(buf);
  struct got_from all = {&nodes[1], 0, KIND_BIG, 3 * n};
  WAIT_UNTIL(got_enough, &all, 30000, "every large message");
  ck_assert_uint_eq(atomic_load(&nodes[1].corrupt), 0);
  ck_assert_uint_eq(atomic_load(&nodes[1].disorder), 0);
  stop_nodes();
}
END_TEST

/* ---- back pressure -------------------------------------------------------------------------- */

struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool open, entered;
};

/* Runs on a loop thread and holds it until the gate opens: that stack reads nothing meanwhile. */
static void hold_loop(void *arg) {
  struct gate *g = arg;
  pthread_mutex_lock(&g->mu);
  g->entered = true;
  pthread_cond_broadcast(&g->cv);
  while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

START_TEST(test_tcp_back_pressure_loses_nothing) {
  char xml[1024];
  int base = free_ports(2);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    snprintf(xml, sizeof(xml), "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" "
             "port_range=\"0\" peers=\"%s\" send_queue_size=\"64KiB\"/></config>", base + i,
             peers_list(base, 2));
    start_node(i, xml, "pressure");
  }
  uint64_t seq = 0;
  send_until_heard(0, 1, &seq);
  seq = 0;
  send_until_heard(1, 0, &seq);

  struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
  ck_assert_int_eq(rs_runtime_call(channel_runtime(nodes[1].ch), hold_loop, &g), 0);
  pthread_mutex_lock(&g.mu);
  while (!g.entered) pthread_cond_wait(&g.cv, &g.mu);
  pthread_mutex_unlock(&g.mu);

  /* n1 reads nothing: socket buffers and n0's queue fill up, then n0 refuses more. */
  uint8_t buf[256];
  uint64_t sent = 0, refused_since = 0;
  while (sent < 2000000) {
    size_t len = make_payload(buf, KIND_UCAST, 0, sent);
    int rc = rs_channel_send_nb(nodes[0].ch, &nodes[1].addr, buf, len, 0);
    if (rc == 0) {
      sent++;
      refused_since = 0;
      continue;
    }
    ck_assert_int_eq(rc, RS_EAGAIN);
    if (!refused_since) refused_since = test_now_ms();
    if (test_now_ms() - refused_since > 300) break; /* stuck, not just busy */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  ck_assert_uint_lt(sent, 2000000);
  ck_assert_uint_ge(stat_of(nodes[0].ch, "send_blocked"), 1);

  pthread_mutex_lock(&g.mu);
  g.open = true;
  pthread_cond_broadcast(&g.cv);
  pthread_mutex_unlock(&g.mu);
  for (uint64_t i = 0; i < 1000; i++, sent++) {
    size_t len = make_payload(buf, KIND_UCAST, 0, sent);
    ck_assert_int_eq(rs_channel_send(nodes[0].ch, &nodes[1].addr, buf, len, 0), 0);
  }
  struct got_from all = {&nodes[1], 0, KIND_UCAST, sent};
  WAIT_UNTIL(got_enough, &all, 60000, "every message sent under back pressure");
  ck_assert_uint_eq(atomic_load(&nodes[1].got[0][KIND_UCAST]), sent);
  ck_assert_uint_eq(atomic_load(&nodes[1].disorder), 0);
  ck_assert_uint_eq(atomic_load(&nodes[1].corrupt), 0);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "dropped_queue_full"), 0);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_frames_dropped"), 0);
  stop_nodes();
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------ */

/* Every node sends 50 numbered unicasts to its successor; all must arrive intact. */
static void check_still_works(void) {
  uint8_t buf[256];
  for (int i = 0; i < n_nodes; i++) nodes[i].next[i][KIND_UCAST] = 0;
  for (uint64_t s = 0; s < 50; s++)
    for (int i = 0; i < n_nodes; i++) {
      struct rs_addr to = nodes[(i + 1) % n_nodes].addr;
      size_t len = make_payload(buf, KIND_UCAST, i, s);
      ck_assert_int_eq(rs_channel_send(nodes[i].ch, &to, buf, len, 0), 0);
    }
  for (int i = 0; i < n_nodes; i++) {
    struct got_from g = {&nodes[(i + 1) % n_nodes], i, KIND_UCAST, 50};
    WAIT_UNTIL(got_enough, &g, 10000, "messages after the bad input");
    ck_assert_uint_eq(atomic_load(&nodes[(i + 1) % n_nodes].corrupt), 0);
  }
}

static void send_datagram(const struct sockaddr_in *to, const void *p, size_t len) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct in_addr lo = {htonl(INADDR_LOOPBACK)};
  unsigned char ttl = 0;
  setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof(lo));
  setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
  ck_assert_int_eq(sendto(fd, p, len, 0, (const struct sockaddr *)to, sizeof(*to)), (ssize_t)len);
  close(fd);
}

START_TEST(test_udp_refuses_garbage) {
  char xml[1024], group[32];
  int base = free_ports(2), mport;
  random_group(group, sizeof(group), &mport);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    make_xml(xml, sizeof(xml), TP_UDP, base + i, base, 2, group, mport);
    start_node(i, xml, "garbage");
  }
  uint64_t seq = 0;
  send_until_heard(0, 1, &seq);
  seq = 0;
  send_until_heard(1, 0, &seq);

  struct sockaddr_in ucast = {.sin_family = AF_INET, .sin_port = htons((uint16_t)base)};
  ucast.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct sockaddr_in mcast = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mport)};
  inet_pton(AF_INET, group, &mcast.sin_addr);
  static uint8_t junk[65507];
  unsigned seed = 42;
  for (size_t i = 0; i < sizeof(junk); i++) junk[i] = (uint8_t)rand_r(&seed);
  junk[0] = 0xAA; /* not our magic */
  int sent = 0;
  for (size_t len = 1; len < 3000; len += 97, sent += 2) {
    send_datagram(&ucast, junk, len);
    send_datagram(&mcast, junk, len);
  }
  /* Our magic with a version from the future, and with impossible flags. */
  uint8_t v[64] = {'R', 'S', 99, 0};
  send_datagram(&ucast, v, sizeof(v));
  uint8_t f[64] = {'R', 'S', 1, 0xff};
  send_datagram(&ucast, f, sizeof(f));
  send_datagram(&ucast, junk, sizeof(junk)); /* the largest datagram there is */
  sent += 3;
  struct stat_at_least s = {nodes[0].ch, "dropped_malformed", (uint64_t)sent};
  WAIT_UNTIL(stat_reached, &s, 10000, "garbage datagrams counted");
  check_still_works();
  stop_nodes();
}
END_TEST

static int tcp_connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

/* True when the server closed the connection within 5 s. */
static bool closed_by_server(int fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  char b[64];
  uint64_t deadline = test_now_ms() + 5000;
  while (test_now_ms() < deadline) {
    if (poll(&pfd, 1, 100) == 1) {
      ssize_t n = read(fd, b, sizeof(b));
      if (n <= 0) return true;
    }
  }
  return false;
}

static void write_all(int fd, const void *p, size_t len) {
  ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
}

static const uint8_t preamble[] = {'R', 'S', 'T', 'C', 1, 4, 127, 0, 0, 1, 0x12, 0x34};

START_TEST(test_tcp_refuses_garbage) {
  char xml[1024];
  int base = free_ports(2);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    make_xml(xml, sizeof(xml), TP_TCP, base + i, base, 2, NULL, 0);
    start_node(i, xml, "garbage");
  }
  uint64_t seq = 0;
  send_until_heard(0, 1, &seq);
  seq = 0;
  send_until_heard(1, 0, &seq);

  /* Not our protocol at all. */
  int fd = tcp_connect_to(base);
  write_all(fd, "GET / HTTP/1.0\r\n\r\n", 18);
  ck_assert(closed_by_server(fd));
  close(fd);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_bad_preamble"), 1);

  /* A preamble of a future version. */
  fd = tcp_connect_to(base);
  uint8_t future[sizeof(preamble)];
  memcpy(future, preamble, sizeof(future));
  future[4] = 9;
  write_all(fd, future, sizeof(future));
  ck_assert(closed_by_server(fd));
  close(fd);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_bad_preamble"), 2);

  /* A frame length far over max_frame_size. */
  fd = tcp_connect_to(base);
  write_all(fd, preamble, sizeof(preamble));
  write_all(fd, "\xff\xff\xff\xf0", 4);
  ck_assert(closed_by_server(fd));
  close(fd);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_bad_length"), 1);

  /* Well-framed garbage: the frames are refused, the connection stays. */
  uint64_t before = stat_of(nodes[0].ch, "dropped_malformed");
  fd = tcp_connect_to(base);
  write_all(fd, preamble, sizeof(preamble));
  for (int i = 0; i < 10; i++) write_all(fd, "\x00\x00\x00\x05junk!", 9);
  struct stat_at_least s = {nodes[0].ch, "dropped_malformed", before + 10};
  WAIT_UNTIL(stat_reached, &s, 5000, "framed garbage counted");
  close(fd);

  /* A connection that never says anything is closed after sock_conn_timeout (2 s). */
  fd = tcp_connect_to(base);
  ck_assert(closed_by_server(fd));
  close(fd);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "tcp_bad_preamble"), 3);
  check_still_works();
  stop_nodes();
}
END_TEST

/* ---- port_range ----------------------------------------------------------------------------- */

static void check_port_range(enum tp_kind kind) {
  char xml[1024], group[32];
  int base = free_ports(3), mport;
  random_group(group, sizeof(group), &mport);
  const char *name = kind == TP_TCP ? "TCP" : "UDP";
  const char *extra = kind == TP_TCP ? "" : "ip_ttl=\"0\" mcast_port";
  char mp[32] = "";
  if (kind != TP_TCP) snprintf(mp, sizeof(mp), "=\"%d\"", mport);
  snprintf(xml, sizeof(xml), "<config><%s bind_addr=\"127.0.0.1\" bind_port=\"%d\" "
           "port_range=\"1\" %s%s/></config>", name, base, extra, mp);
  struct rs_channel *a = open_channel(xml, "a", NULL), *b = open_channel(xml, "b", NULL);
  struct rs_channel *c = open_channel(xml, "c", NULL);
  ck_assert_int_eq(rs_channel_connect(a, "ports"), 0);
  ck_assert_int_eq(rs_channel_connect(b, "ports"), 0);
  ck_assert_int_eq(phys_of(a).port, base);
  ck_assert_int_eq(phys_of(b).port, base + 1);
  /* bind_port and the one port above it are taken. */
  ck_assert_int_eq(rs_channel_connect(c, "ports"), RS_EADDRINUSE);
  ck_assert_msg(strstr(rs_channel_last_error(c), "no free port"), "error: %s",
                rs_channel_last_error(c));
  rs_channel_close(c);
  rs_channel_close(b);
  rs_channel_close(a);
}

START_TEST(test_port_range_tcp) { check_port_range(TP_TCP); }
END_TEST

START_TEST(test_port_range_udp) { check_port_range(TP_UDP); }
END_TEST

/* ---- bind_addr ------------------------------------------------------------------------------ */

static struct rs_phys resolve_ok(const char *spec, int family) {
  struct rs_phys p;
  char err[512] = "";
  int rc = bindaddr_resolve(spec, family, &p, err, sizeof(err));
  ck_assert_msg(rc == 0, "%s: %s", spec, err);
  return p;
}

static void resolve_fails(const char *spec, int want_rc, const char *want_err) {
  struct rs_phys p;
  char err[512] = "";
  ck_assert_int_eq(bindaddr_resolve(spec, AF_UNSPEC, &p, err, sizeof(err)), want_rc);
  ck_assert_str_eq(err, want_err);
}

static bool is_127_0_0_1(const struct rs_phys *p) {
  return p->family == RS_PHYS_IP4 && p->ip[0] == 127 && p->ip[1] == 0 && p->ip[2] == 0 &&
         p->ip[3] == 1 && p->port == 0;
}

START_TEST(test_bindaddr_loopback_forms) {
  const char *specs[] = {"127.0.0.1", "loopback", "LOOPBACK", "localhost", "match-interface:lo",
                         "match-address:127\\..*", "MATCH-INTERFACE:l.", " 127.0.0.1 ",
                         "match-host:LOCALHOST.*"};
  for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
    struct rs_phys p = resolve_ok(specs[i], AF_UNSPEC);
    ck_assert_msg(is_127_0_0_1(&p), "%s", specs[i]);
  }
  struct rs_phys p6 = resolve_ok("::1", AF_UNSPEC);
  ck_assert_int_eq(p6.family, RS_PHYS_IP6);
  ck_assert(bindaddr_is_loopback(&p6));
  p6 = resolve_ok("loopback", AF_INET6);
  ck_assert_int_eq(p6.family, RS_PHYS_IP6);
  struct rs_phys any = resolve_ok("0.0.0.0", AF_UNSPEC);
  ck_assert_int_eq(any.family, RS_PHYS_IP4);
}
END_TEST

START_TEST(test_bindaddr_lists) {
  /* The first item that resolves wins. */
  struct rs_phys p = resolve_ok("match-interface:nosuchif9,127.0.0.1", AF_UNSPEC);
  ck_assert(is_127_0_0_1(&p));
  p = resolve_ok("nosuchhost.invalid, match-address:127\\.0\\.0\\.1", AF_UNSPEC);
  ck_assert(is_127_0_0_1(&p));
  p = resolve_ok("loopback,", AF_UNSPEC);
  ck_assert(is_127_0_0_1(&p));
  /* Whatever the host has, NON_LOOPBACK never gives a loopback address. */
  char err[512];
  if (bindaddr_resolve("NON_LOOPBACK", AF_UNSPEC, &p, err, sizeof(err)) == 0)
    ck_assert(!bindaddr_is_loopback(&p));
  if (bindaddr_resolve("SITE_LOCAL", AF_INET, &p, err, sizeof(err)) == 0)
    ck_assert(p.family == RS_PHYS_IP4 ? p.ip[0] == 10 || p.ip[0] == 172 || p.ip[0] == 192
                                      : (p.ip[0] & 0xfe) == 0xfc || p.ip[0] == 0xfe);
  if (bindaddr_resolve("LINK_LOCAL", AF_INET6, &p, err, sizeof(err)) == 0)
    ck_assert(p.family == RS_PHYS_IP6 ? p.ip[0] == 0xfe && (p.ip[1] & 0xc0) == 0x80
                                      : p.ip[0] == 169 && p.ip[1] == 254);
}
END_TEST

START_TEST(test_bindaddr_errors) {
  resolve_fails("match-interface:eth9", RS_ENOTFOUND,
                "bind_addr 'match-interface:eth9': no interface matches");
  resolve_fails("match-address:10\\.99\\.99\\..*", RS_ENOTFOUND,
                "bind_addr 'match-address:10\\.99\\.99\\..*': no address of this host matches");
  /* 192.0.2.0/24 is TEST-NET-1: never this host's address in a test environment. */
  resolve_fails("192.0.2.77", RS_ENOTFOUND,
                "bind_addr '192.0.2.77': not an address of this host");
  resolve_fails("match-interface:eth9,192.0.2.77", RS_ENOTFOUND,
                "bind_addr 'match-interface:eth9,192.0.2.77': nothing resolves on this host "
                "(match-interface:eth9: no interface matches; 192.0.2.77: not an address of "
                "this host)");
  resolve_fails("", RS_EINVAL, "bind_addr '': empty item");
  resolve_fails(",loopback", RS_EINVAL, "bind_addr ',loopback': empty item");
  resolve_fails("match-interface:eth9,match-host:(", RS_EINVAL,
                "bind_addr 'match-interface:eth9,match-host:(': match-host:(: bad regular "
                "expression: Unmatched ( or \\(");
  struct rs_phys p;
  char err[512];
  ck_assert_int_eq(bindaddr_resolve("match-interface:[", AF_UNSPEC, &p, err, sizeof(err)),
                   RS_EINVAL);
  ck_assert_msg(strstr(err, "bind_addr 'match-interface:[': bad regular expression"), "%s", err);
  ck_assert_int_eq(bindaddr_resolve("nosuchhost.invalid", AF_UNSPEC, &p, err, sizeof(err)),
                   RS_ENOTFOUND);
  ck_assert_msg(strstr(err, "bind_addr 'nosuchhost.invalid': host not found"), "%s", err);
}
END_TEST

START_TEST(test_bind_addr_error_at_connect) {
  const char *xml = "<config><TCP bind_addr=\"match-interface:nosuchif9\"/></config>";
  struct rs_channel *ch = open_channel(xml, "x", NULL);
  ck_assert_int_ne(rs_channel_connect(ch, "c"), 0);
  ck_assert_msg(strstr(rs_channel_last_error(ch),
                       "TCP: bind_addr 'match-interface:nosuchif9': no interface matches"),
                "%s", rs_channel_last_error(ch));
  rs_channel_close(ch);
}
END_TEST

/* ---- probe (diagnostics) ------------------------------------------------------------------ */

/* Sends one probe request to the group and collects the answers' text for 500 ms. */
static int probe(const char *group, int port, const char *request, char *out, size_t outlen) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct in_addr iface = {.s_addr = htonl(INADDR_LOOPBACK)};
  unsigned char ttl = 0;
  inet_pton(AF_INET, group, &to.sin_addr);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
  setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &iface, sizeof(iface));
  setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
  ck_assert_int_eq(sendto(fd, request, strlen(request), 0, (struct sockaddr *)&to, sizeof(to)),
                   (ssize_t)strlen(request));
  int answers = 0;
  size_t off = 0;
  uint64_t deadline = test_now_ms() + 500;
  out[0] = '\0';
  while (test_now_ms() < deadline) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 50) <= 0) continue;
    ssize_t n = recv(fd, out + off, outlen - off - 1, 0);
    if (n <= 0) continue;
    off += (size_t)n;
    out[off] = '\0';
    answers++;
  }
  close(fd);
  return answers;
}

START_TEST(test_probe_answers_with_address_and_stats) {
  char xml[1024], group[32], text[65536];
  int mport, dport = free_ports(1), base = free_ports(2);
  random_group(group, sizeof(group), &mport);
  n_nodes = 2;
  for (int i = 0; i < 2; i++) {
    snprintf(xml, sizeof(xml), "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\" "
             "peers=\"%s\" diag.mcast_addr=\"%s\" diag.port=\"%d\" diag.ttl=\"0\"/></config>",
             base + i, peers_list(base, 2), group, dport);
    start_node(i, xml, "probed");
  }
  ck_assert_int_eq(probe(group, dport, "RSPROBE 1 probed\n", text, sizeof(text)), 2);
  ck_assert_ptr_nonnull(strstr(text, "member=n0\n"));
  ck_assert_ptr_nonnull(strstr(text, "member=n1\n"));
  ck_assert_ptr_nonnull(strstr(text, "cluster=probed\n"));
  char phys[64];
  snprintf(phys, sizeof(phys), "physical=127.0.0.1:%d\n", base);
  ck_assert_ptr_nonnull(strstr(text, phys));
  ck_assert_ptr_nonnull(strstr(text, "TCP.msgs_sent="));
  /* Another cluster's probe gets no answer; garbage is counted and ignored. */
  ck_assert_int_eq(probe(group, dport, "RSPROBE 1 other\n", text, sizeof(text)), 0);
  ck_assert_int_eq(probe(group, dport, "GET / HTTP/1.0\r\n\r\n", text, sizeof(text)), 0);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "diag_bad_requests"), 1);
  ck_assert_uint_eq(stat_of(nodes[0].ch, "diag_requests"), 1);
  ck_assert_int_eq(probe(group, dport, "RSPROBE 1 *\n", text, sizeof(text)), 2);
  stop_nodes();
}
END_TEST

static Suite *transport_suite(void) {
  Suite *s = suite_create("transport");
  TCase *b = tcase_create("bindaddr");
  tcase_add_test(b, test_bindaddr_loopback_forms);
  tcase_add_test(b, test_bindaddr_lists);
  tcase_add_test(b, test_bindaddr_errors);
  tcase_add_test(b, test_bind_addr_error_at_connect);
  suite_add_tcase(s, b);
  TCase *p = tcase_create("ports");
  tcase_add_test(p, test_port_range_tcp);
  tcase_add_test(p, test_port_range_udp);
  suite_add_tcase(s, p);
  TCase *x = tcase_create("exchange");
  tcase_set_timeout(x, 300);
  tcase_add_test(x, test_exchange_tcp);
  tcase_add_test(x, test_exchange_loopback);
  tcase_add_test(x, test_exchange_udp);
  tcase_add_test(x, test_exchange_udp_without_multicast);
  suite_add_tcase(s, x);
  TCase *f = tcase_create("faults");
  tcase_set_timeout(f, 120);
  tcase_add_test(f, test_tcp_reconnects_restarted_peer);
  tcase_add_test(f, test_tcp_back_pressure_loses_nothing);
  tcase_add_test(f, test_tcp_large_messages);
  tcase_add_test(f, test_tcp_idle_connections_expire);
  tcase_add_test(f, test_udp_refuses_garbage);
  tcase_add_test(f, test_tcp_refuses_garbage);
  tcase_add_test(f, test_probe_answers_with_address_and_stats);
  suite_add_tcase(s, f);
  return s;
}

int main(void) { return test_run(transport_suite()); }

/* FD_SOCK over TCP on 127.0.0.1 with libev runtimes: a member killed with SIGKILL (in a child
 * process) is suspected at once, a graceful leave is not, refused neighbours, hostile peers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stack/channel_internal.h"
#include "stack/stack.h"
#include "tests/lib/testlib.h"
#include "tests/unit/fd_testlib.h"

/* ---------------------------------------------------------------------------------------------
 * FD_SOCK over TCP on 127.0.0.1, libev runtimes.
 */
#define TCP_XML                                                                                    \
  "<config><TCP bind_addr=\"127.0.0.1\" bind_port=\"%d\" port_range=\"0\"/>"                       \
  "<FD_SOCK connect_retry=\"100ms\"/><FDTEST/></config>"

/* A base port with n free consecutive TCP ports, and their FD_SOCK ports (+100 .. +104). */
static int free_ports(int n) {
  static unsigned seed;
  if (!seed) seed = (unsigned)getpid() ^ (unsigned)time(NULL);
  for (int attempt = 0; attempt < 200; attempt++) {
    int base = 20000 + (int)(rand_r(&seed) % 35000u);
    bool ok = true;
    for (int i = 0; i < n + 104 && ok; i++) {
      if (i >= n && i < 100) continue;
      int fd = socket(AF_INET, SOCK_STREAM, 0);
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

static void tcp_node(struct node *nd, const char *name, int port) {
  char xml[512];
  snprintf(xml, sizeof(xml), TCP_XML, port);
  start_node(nd, name, xml);
}

static void tcp_setup(void) {
  sim = NULL;
  stack_set_extra_protocols(fd_extra);
  memset(nodes, 0, sizeof(nodes));
}

static void tcp_teardown(void) {
  for (int i = 0; i < MAX_NODES; i++)
    close_node(&nodes[i]);
  stack_set_extra_protocols(NULL);
}

struct ring_ready {
  struct node *nd;
  const struct rs_addr *dest;
};

static bool watching(void *arg) {
  struct ring_ready *r = arg;
  char buf[64], a[RS_ADDR_STRLEN];
  return stat(r->nd, "FD_SOCK", "ping_dest_connected") == 1 &&
         !strcmp(stat_str(r->nd, "FD_SOCK", "ping_dest", buf, sizeof(buf)),
                 rs_addr_format(r->dest, a));
}

static void wait_watching(struct node *nd, const struct rs_addr *dest, const char *what) {
  struct ring_ready r = {nd, dest};
  WAIT_UNTIL(watching, &r, 5000, what);
}

struct tcp_event {
  struct node *nd;
  enum rs_event_type type;
  const struct rs_addr *addr;
};

static bool got_event(void *arg) {
  struct tcp_event *e = arg;
  return count_events(e->nd, e->type, e->addr) > 0;
}

/* --- a member in a child process ---------------------------------------------------------- */

struct member_info {
  struct rs_addr addr;
  struct rs_phys phys;
};

static bool read_all(int fd, void *p, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += (size_t)r;
  }
  return true;
}

static bool write_all(int fd, const void *p, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, (const char *)p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += (size_t)w;
  }
  return true;
}

/* The child: one member, told the others' addresses through the pipe; lives until it is killed
 * (or the pipe closes). Forked before the parent starts any thread. */
static void child_main(int idx, int port, int rfd, int wfd) {
  static struct node me;
  char err[1024], xml[512], name[8];
  snprintf(xml, sizeof(xml), TCP_XML, port);
  snprintf(name, sizeof(name), "%c", 'A' + idx);
  if (open_node(&me, name, xml, err, sizeof(err))) _exit(2);
  struct member_info mine, all[3];
  memset(&mine, 0, sizeof(mine)); /* padding goes through the pipe too */
  mine.addr = me.addr;
  mine.phys = me.phys;
  if (!write_all(wfd, &mine, sizeof(mine)) || !read_all(rfd, all, sizeof(all))) _exit(3);
  static struct node others[3];
  struct node *members[3];
  for (int i = 0; i < 3; i++) {
    others[i].addr = all[i].addr;
    others[i].phys = all[i].phys;
    members[i] = &others[i];
  }
  inject_view(&me, members, 3, 1);
  char c;
  while (read(rfd, &c, 1) > 0) {
  }
  _exit(0);
}

/* Members 0..2 in a ring (0 → 1 → 2 → 0); `victim` runs in a child process. Returns its pid. */
static pid_t start_ring_with_child(int victim) {
  int base = free_ports(3);
  int down[2], up[2];
  ck_assert_int_eq(pipe(down), 0);
  ck_assert_int_eq(pipe(up), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(down[1]);
    close(up[0]);
    child_main(victim, base + victim, down[0], up[1]);
  }
  close(down[0]);
  close(up[1]);
  struct member_info info[3];
  memset(info, 0, sizeof(info));
  ck_assert_msg(read_all(up[0], &info[victim], sizeof(info[0])), "the child member did not start");
  close(up[0]);
  for (int i = 0; i < 3; i++) {
    group[i] = &nodes[i];
    if (i == victim) continue;
    char name[8];
    snprintf(name, sizeof(name), "%c", 'A' + i);
    tcp_node(&nodes[i], name, base + i);
    info[i].addr = nodes[i].addr;
    info[i].phys = nodes[i].phys;
  }
  nodes[victim].addr = info[victim].addr;
  nodes[victim].phys = info[victim].phys;
  ck_assert(write_all(down[1], info, sizeof(info)));
  for (int i = 0; i < 3; i++)
    if (i != victim) inject_view(&nodes[i], group, 3, 1);
  /* The pipe's write end stays open in the parent until the test ends (the child waits on it). */
  for (int i = 0; i < 3; i++)
    if (i != victim) wait_watching(&nodes[i], &nodes[(i + 1) % 3].addr, "the ring is connected");
  return pid;
}

static void kill_and_measure(pid_t pid, struct node *reporter, const struct rs_addr *victim,
                             const char *what) {
  uint64_t t0 = test_now_ms();
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  struct tcp_event e = {reporter, RS_EV_SUSPECT, victim};
  WAIT_UNTIL(got_event, &e, 5000, what);
  uint64_t dt = test_now_ms() - t0;
  fprintf(stderr, "%s: SUSPECT %llu ms after SIGKILL\n", what, (unsigned long long)dt);
  ck_assert_msg(dt < 500, "%s took %llu ms", what, (unsigned long long)dt);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* B dies: A, which watches it, suspects it at once and, as coordinator, reports it; then A
 * watches C. C hears the SUSPECT message but does not report (A is there to). */
START_TEST(killed_neighbour_is_suspected_at_once) {
  pid_t pid = start_ring_with_child(1);
  kill_and_measure(pid, &nodes[0], &nodes[1].addr, "A suspects the killed B");
  wait_watching(&nodes[0], &nodes[2].addr, "A watches C");
  ck_assert_uint_eq(stat(&nodes[0], "FD_SOCK", "suspicions"), 1);
  ck_assert_uint_eq(count_events(&nodes[0], RS_EV_SUSPECT, NULL), 1);
  struct tcp_event e = {&nodes[2], RS_EV_SUSPECT, NULL};
  (void)wait_until(got_event, &e, 200);
  ck_assert_uint_eq(n_events(&nodes[2]), 0);
  ck_assert_uint_ge(stat(&nodes[2], "FD_SOCK", "suspect_msgs_received"), 1);
}
END_TEST

/* The coordinator A dies: only C watches it. C's SUSPECT message reaches B, the next in line,
 * which reports it; C does not (B comes before it). C then watches B. */
START_TEST(killed_coordinator_is_reported_by_the_next_member) {
  pid_t pid = start_ring_with_child(0);
  kill_and_measure(pid, &nodes[1], &nodes[0].addr, "B reports the killed A (found by C)");
  wait_watching(&nodes[2], &nodes[1].addr, "C watches B");
  ck_assert_uint_eq(stat(&nodes[2], "FD_SOCK", "suspicions"), 1);
  ck_assert_uint_ge(stat(&nodes[2], "FD_SOCK", "suspect_msgs_sent"), 1);
  ck_assert_uint_eq(n_events(&nodes[2]), 0);
  ck_assert_uint_eq(stat(&nodes[1], "FD_SOCK", "suspicions"), 0);
  ck_assert_uint_eq(count_events(&nodes[1], RS_EV_SUSPECT, NULL), 1);
}
END_TEST

/* B disconnects: it says LEAVING first, so A moves on to C without suspecting anyone. */
START_TEST(graceful_leave_is_not_a_suspicion) {
  int base = free_ports(3);
  for (int i = 0; i < 3; i++) {
    char name[8];
    snprintf(name, sizeof(name), "%c", 'A' + i);
    tcp_node(&nodes[i], name, base + i);
    group[i] = &nodes[i];
  }
  inject_view_all(group, 3, 1);
  for (int i = 0; i < 3; i++)
    wait_watching(&nodes[i], &nodes[(i + 1) % 3].addr, "ring");
  ck_assert_int_eq(rs_channel_disconnect(nodes[1].ch), 0);
  ck_assert_uint_eq(stat(&nodes[1], "FD_SOCK", "leaving_sent"), 1);
  wait_watching(&nodes[0], &nodes[2].addr, "A watches C");
  struct tcp_event e = {&nodes[0], RS_EV_SUSPECT, NULL};
  ck_assert(!wait_until(got_event, &e, 300));
  ck_assert_uint_eq(n_events(&nodes[0]) + n_events(&nodes[2]), 0);
  ck_assert_uint_eq(stat(&nodes[0], "FD_SOCK", "leaves_seen"), 1);
  ck_assert_uint_eq(stat(&nodes[0], "FD_SOCK", "suspicions"), 0);
  ck_assert_uint_eq(stat(&nodes[2], "FD_SOCK", "suspect_msgs_received"), 0);
}
END_TEST

struct stat_ge {
  struct node *nd;
  const char *name;
  uint64_t v;
};

static bool stat_reached(void *arg) {
  struct stat_ge *s = arg;
  return stat(s->nd, "FD_SOCK", s->name) >= s->v;
}

/* A's neighbour B does not listen (it died before A could connect): every port of B's range is
 * refused, num_tries rounds connect_retry apart, then B is suspected and A moves on to X, whose
 * physical address nobody knows: X is asked for again and again but never suspected for it. */
START_TEST(refused_neighbour_is_suspected_after_num_tries) {
  int base = free_ports(3);
  tcp_node(&nodes[0], "A", base);
  struct node *a = &nodes[0], *b = &nodes[1], *x = &nodes[2];
  b->addr = (struct rs_addr){0xb0b, 1};
  b->phys = a->phys;
  b->phys.port = (uint16_t)(base + 1);
  x->addr = (struct rs_addr){0xc0c, 1}; /* phys left empty: no mapping is injected */
  group[0] = a;
  group[1] = b;
  group[2] = x;
  uint64_t t0 = test_now_ms();
  inject_view(a, group, 3, 1);
  struct tcp_event e = {a, RS_EV_SUSPECT, &b->addr};
  WAIT_UNTIL(got_event, &e, 5000, "A suspects B");
  uint64_t dt = test_now_ms() - t0;
  ck_assert_uint_ge(dt, 2 * 100); /* two pauses of connect_retry between the three rounds */
  ck_assert_uint_eq(stat(a, "FD_SOCK", "connect_failures"), 3 * 5);
  ck_assert_uint_eq(stat(a, "FD_SOCK", "suspicions"), 1);
  struct stat_ge asked = {a, "no_address", 3};
  WAIT_UNTIL(stat_reached, &asked, 5000, "A keeps asking for X's address");
  ck_assert_uint_eq(count_events(a, RS_EV_SUSPECT, &x->addr), 0);
  ck_assert_uint_eq(stat(a, "FD_SOCK", "suspicions"), 1);
}
END_TEST

/* --- hostile peers on the FD_SOCK ports ------------------------------------------------------ */

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(fd, 4), 0);
  return fd;
}

static int accept_within(int lfd, int ms) {
  struct pollfd pfd = {.fd = lfd, .events = POLLIN};
  ck_assert_int_eq(poll(&pfd, 1, ms), 1);
  int fd = accept(lfd, NULL, NULL);
  ck_assert_int_ge(fd, 0);
  return fd;
}

static void greet(int fd, const struct rs_addr *as) {
  uint8_t g[21] = {'R', 'S', 'F', 'D', 1};
  struct rs_writer w;
  writer_init(&w, g + 5, 16);
  put_addr(&w, as);
  ck_assert(write_all(fd, g, sizeof(g)));
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

/* SUSPECT messages about ourselves or about a stranger, handed to the node from below. */
struct forged {
  struct node *nd;
  struct rs_addr from, about;
};

static void forged_suspect_run(void *arg) {
  struct forged *f = arg;
  const struct rs_header_type *t = registry_header_type(71);
  ck_assert_ptr_nonnull(t);
  uint8_t bytes[17] = {1}; /* SUSPECT | member */
  struct rs_writer w;
  writer_init(&w, bytes + 1, 16);
  put_addr(&w, &f->about);
  struct rs_msg *m = rs_msg_new();
  struct rs_reader r;
  reader_init(&r, bytes, sizeof(bytes));
  t->read(rs_msg_put_header(m, t), &r);
  ck_assert_int_eq(r.err, 0);
  m->src = f->from;
  m->dest = f->nd->addr;
  proto_up_msg(channel_stack(f->nd->ch)->bottom, m);
}

/* A's neighbour B is played by the test: the first port of B's range is held by an impostor
 * (another member's greeting), so A must go on to the next port; the real B then says LEAVING.
 * A second impostor fakes a crash (no LEAVING). Garbage sent to A's own port is counted and the
 * connection closed. */
START_TEST(hostile_peers_are_identified_and_garbage_counted) {
  int base = free_ports(2);
  tcp_node(&nodes[0], "A", base);
  struct node *a = &nodes[0], *b = &nodes[1];
  b->addr = (struct rs_addr){0xb0b, 0xb0b};
  b->phys = a->phys;
  b->phys.port = (uint16_t)(base + 1);
  int impostor = listen_on(base + 1 + 100), real = listen_on(base + 1 + 101);
  group[0] = a;
  group[1] = b;
  inject_view(a, group, 2, 1);
  int c1 = accept_within(impostor, 2000);
  struct rs_addr other = {0xdead, 0xbeef};
  greet(c1, &other);
  int c2 = accept_within(real, 2000);
  greet(c2, &b->addr);
  wait_watching(a, &b->addr, "A watches the real B on B's second port");
  ck_assert_uint_eq(stat(a, "FD_SOCK", "wrong_member"), 1);
  struct forged f = {a, b->addr, a->addr};
  on_loop(a, forged_suspect_run, &f); /* B says A is dead: A knows better */
  f.about = (struct rs_addr){0x5, 0x7};
  on_loop(a, forged_suspect_run, &f); /* a stranger: not in A's view */
  ck_assert_uint_eq(stat(a, "FD_SOCK", "suspect_msgs_received"), 2);
  ck_assert_uint_eq(stat(a, "FD_SOCK", "ignored"), 2);
  const uint8_t leaving = 0x4c, junk[3] = {1, 2, 3};
  ck_assert(write_all(c2, junk, sizeof(junk)));
  ck_assert(write_all(c2, &leaving, 1));
  close(c2);
  struct stat_ge left = {a, "leaves_seen", 1};
  WAIT_UNTIL(stat_reached, &left, 2000, "A sees B leave");
  ck_assert_uint_eq(stat(a, "FD_SOCK", "garbage_bytes"), 3);
  ck_assert_uint_eq(n_events(a), 0);
  close(c1);
  /* A member that said LEAVING is never watched again; a new one (B restarted: a new address)
   * takes its place at the same physical address, then dies without a word. */
  inject_view(a, group, 2, 2);
  ck_assert_uint_eq(stat(a, "FD_SOCK", "ping_dest_connected"), 0);
  b->addr = (struct rs_addr){0xb0b, 0x2};
  inject_view(a, group, 2, 3);
  int c3 = accept_within(impostor, 2000);
  greet(c3, &other);
  int c4 = accept_within(real, 2000);
  greet(c4, &b->addr);
  wait_watching(a, &b->addr, "A watches B again");
  close(c4);
  struct tcp_event e = {a, RS_EV_SUSPECT, &b->addr};
  WAIT_UNTIL(got_event, &e, 2000, "A suspects B");
  close(c3);
  /* A's own port: greets with A's address; a connector that talks is cut off. */
  int c5 = connect_to((int)stat(a, "FD_SOCK", "port"));
  uint8_t g[21];
  ck_assert(read_all(c5, g, sizeof(g)));
  ck_assert_mem_eq(g, "RSFD\x01", 5);
  struct rs_reader r;
  reader_init(&r, g + 5, 16);
  struct rs_addr who = get_addr(&r);
  ck_assert(rs_addr_eq(&who, &a->addr));
  uint64_t g0 = stat(a, "FD_SOCK", "garbage_bytes");
  uint8_t flood[2048];
  memset(flood, 0x55, sizeof(flood));
  (void)write_all(c5, flood, sizeof(flood));
  struct stat_ge cut = {a, "garbage_closed", 1};
  WAIT_UNTIL(stat_reached, &cut, 2000, "A cuts off the talker");
  ck_assert_uint_gt(stat(a, "FD_SOCK", "garbage_bytes"), g0 + 1024);
  char x;
  ck_assert_int_le(read(c5, &x, 1), 0); /* closed by A */
  close(c5);
  close(impostor);
  close(real);
}
END_TEST

TCase *fd_sock_tcase(void) {
  TCase *tc = tcase_create("fd_sock (TCP on 127.0.0.1)");
  tcase_add_checked_fixture(tc, tcp_setup, tcp_teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, killed_neighbour_is_suspected_at_once);
  tcase_add_test(tc, killed_coordinator_is_reported_by_the_next_member);
  tcase_add_test(tc, graceful_leave_is_not_a_suspicion);
  tcase_add_test(tc, refused_neighbour_is_suspected_after_num_tries);
  tcase_add_test(tc, hostile_peers_are_identified_and_garbage_counted);
  return tc;
}

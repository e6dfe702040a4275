/* FD_SOCK: a ring of TCP connections; a member whose connection closes is suspected at once. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stack/stack.h"
#include "stack/view.h"

/*
 * How it works (JGroups' FD_SOCK2, reimplemented; doc/design/FD_SOCK2.txt there):
 *
 * - Each member listens on a TCP port of its own: the transport's physical address (its IP and
 *   port, from RS_EV_GET_PHYSICAL_ADDRESS) plus `port_offset`, or the next free one of
 *   `port_range` ports. It needs an IP transport (UDP or TCP) and a runtime with I/O; on the
 *   simulated runtime or over LOOPBACK its start fails with a message saying so.
 * - Each member keeps one connection to its *ping destination*: the next member after it in the
 *   view, wrapping around, skipping members it found unreachable or that announced they leave.
 *   It is recomputed on every view change; a connection to a member that is no longer the ping
 *   destination is closed without suspicion.
 * - Finding the neighbour's port (choice): nothing announces it. The connector takes the
 *   neighbour's physical address (RS_EV_GET_PHYSICAL_ADDRESS) and tries its port + port_offset,
 *   then the next ones of the range, as the neighbour chose them when it bound. Since a port of
 *   the range may belong to another member on the same host, the acceptor greets each connection
 *   with its logical address (JGroups' CONNECT_RSP carries the same); a connector that reached
 *   the wrong member tries the next port.
 * - The stream (docs/wire-format.md, FD_SOCK): acceptor → connector: the greeting, then at most
 *   the LEAVING byte. The connector sends nothing. Any other byte is garbage: counted and ignored
 *   (an accepted connection that sends more than GARBAGE_LIMIT bytes is closed). Reads are
 *   bounded per event, and accepted connections by MAX_ACCEPTED.
 * - A crash closes the process's sockets at once: the connection to the ping destination ends
 *   without LEAVING, and the member suspects it immediately, then connects to the next one. A
 *   connect attempt that fails (refused, timed out after connect_timeout, wrong member) on every
 *   port of the range is repeated after connect_retry; num_tries failed rounds are a suspicion
 *   too. A neighbour whose physical address is unknown is not suspected for it (retried only).
 * - A member that leaves gracefully (RS_EV_DISCONNECT passing down, or stop) first writes LEAVING
 *   on every connection it accepted; its neighbour then takes the end of the connection as a
 *   departure, not a crash, and moves on to the next member.
 * - Suspicions travel as in FD_SOCK2: the member that detected one multicasts SUSPECT(member)
 *   (OOB|NO_FC; this layer is below NAKACK2, so the message is unreliable) and repeats it every
 *   suspect_msg_interval while the member is still in the view. Every member that receives it
 *   (and the detector itself) marks the member suspected; only the one that would be coordinator
 *   without the suspects passes RS_EV_SUSPECT up (once per suspicion and view), as FD_ALL3 does,
 *   so the coordinator hears of a crash that only a neighbour can see.
 * - RS_EV_UNSUSPECT coming down (VERIFY_SUSPECT got an answer, or FD_ALL3 heard from it) clears
 *   a suspicion we hold and multicasts UNSUSPECT(member): every member forgets the suspicion,
 *   stops repeating it, and may take the member as ping destination again.
 */

#define FD_SOCK_ID 71
#define RL_INTERVAL (5 * RS_SEC)
#define GREETING_LEN 21 /* "RSFD" + version + logical address */
#define GREETING_VERSION 1
#define FD_LEAVING 0x4c    /* 'L' */
#define MAX_ACCEPTED 64    /* accepted connections; more are closed at once */
#define GARBAGE_LIMIT 1024 /* bytes an accepted connection may send before it is closed */
#define READ_CHUNK 256
#define READS_PER_EVENT 4

static const uint8_t greeting_magic[4] = {'R', 'S', 'F', 'D'};

/* ---------------------------------------------------------------------------------------------
 * The header (protocol id 71), on SUSPECT and UNSUSPECT messages. Byte layout
 * (docs/wire-format.md, FD_SOCK):
 *
 *   type u8 (1 = SUSPECT, 2 = UNSUSPECT: FD_SOCK2's numbers) | member (16)
 *
 * One member per message (FD_SOCK2 lists several; bundling packs ours into one frame). Another
 * type or a null member makes the header malformed.
 */
enum { FS_SUSPECT = 1, FS_UNSUSPECT = 2 };

struct fs_hdr {
  struct rs_addr mbr;
  uint8_t type;
};

static size_t hdr_wire_size(const void *h) {
  (void)h;
  return 17;
}

static void hdr_write(const void *p, struct rs_writer *w) {
  const struct fs_hdr *h = p;
  put_u8(w, h->type);
  put_addr(w, &h->mbr);
}

static void hdr_read(void *p, struct rs_reader *r) {
  struct fs_hdr *h = p;
  h->type = get_u8(r);
  h->mbr = get_addr(r);
  if ((h->type != FS_SUSPECT && h->type != FS_UNSUSPECT) || rs_addr_is_null(&h->mbr))
    reader_fail(r, RS_EMALFORMED);
  if (r->err) *h = (struct fs_hdr){{0, 0}, 0};
}

static int hdr_print(const void *p, char *buf, size_t len) {
  const struct fs_hdr *h = p;
  char a[RS_ADDR_STRLEN];
  return snprintf(buf, len, "%s %s",
                  h->type == FS_SUSPECT     ? "SUSPECT"
                  : h->type == FS_UNSUSPECT ? "UNSUSPECT"
                                            : "?",
                  rs_addr_format(&h->mbr, a));
}

static const struct rs_header_type fs_header = {
    .id = FD_SOCK_ID,
    .name = "FD_SOCK",
    .size = sizeof(struct fs_hdr),
    .wire_size = hdr_wire_size,
    .write = hdr_write,
    .read = hdr_read,
    .print = hdr_print,
};

/* ---------------------------------------------------------------------------------------------
 * State.
 */
struct mstate {     /* per member of the view, in view order */
  bool suspected;   /* by us or by a SUSPECT message */
  bool reported;    /* RS_EV_SUSPECT went up for this suspicion */
  bool unreachable; /* we found it dead: not a ping destination until the next view */
  bool left;        /* it said LEAVING: never a ping destination again */
  bool repeat;      /* we repeat SUSPECT for it every suspect_msg_interval */
};

struct fd_sock;

struct accepted {
  struct fd_sock *fs;
  struct accepted *next;
  int fd;
  struct rs_io *io;
  uint64_t garbage;
};

/* CL_START: connect to port port_idx when the timer fires (at once). Connecting only from the
 * timer keeps failures from recursing through the ports and members. */
enum client_state { CL_IDLE, CL_START, CL_CONNECTING, CL_GREETING, CL_CONNECTED, CL_WAIT_RETRY };

struct client { /* the connection to the ping destination */
  enum client_state state;
  bool has_dest;
  struct rs_addr dest;
  int fd;
  struct rs_io *io;
  int64_t port_idx; /* the port of the range being tried */
  int64_t failures; /* rounds over the whole range that failed */
  uint8_t greet[GREETING_LEN];
  size_t greet_len;
  bool leaving;          /* the destination said LEAVING */
  struct rs_timer timer; /* start, connect_timeout, or connect_retry */
};

struct fs_stats {
  uint64_t suspicions, suspect_events, suspect_msgs_sent, suspect_msgs_received;
  uint64_t unsuspect_msgs_sent, unsuspect_msgs_received, ignored;
  uint64_t connects, connect_failures, connect_timeouts, wrong_member, no_address;
  uint64_t leaves_seen, leaving_sent, accepted, accept_refused, accept_errors;
  uint64_t garbage_bytes, garbage_closed, bad_dropped;
};

struct fd_sock {
  struct rs_protocol base;
  /* Attributes. */
  int64_t port_offset;
  int64_t port_range;
  rs_time connect_timeout;
  rs_time connect_retry;
  int64_t num_tries;
  rs_time suspect_msg_interval;
  /* State. */
  struct rs_phys local; /* our FD_SOCK address (the transport's IP) */
  int lfd;
  struct rs_io *lio;
  struct rs_timer accept_retry;
  struct accepted *accepted;
  size_t n_accepted;
  bool leaving_sent;
  struct rs_view_data *view;
  struct mstate *ms; /* parallel to view->members */
  struct client cl;
  struct rs_timer repeat_timer;
  struct rs_ratelimit rl_bad;
  struct fs_stats st;
};

#define FS(p) ((struct fd_sock *)(p))
#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static struct rs_runtime *RT(struct fd_sock *fs) { return fs->base.rt; }

static void log_bad(struct fd_sock *fs, const char *what, const char *detail) {
  uint64_t suppressed;
  if (!proto_log_enabled(&fs->base, RS_LOG_WARN) ||
      !ratelimit_ok(&fs->rl_bad, rs_now(RT(fs)), RL_INTERVAL, &suppressed))
    return;
  PLOG(&fs->base, WARN, "%s: %s (%" PRIu64 " similar suppressed)", what, detail, suppressed);
}

/* Port i of the range above base: wraps past 65535 and skips the privileged ports, as FD_SOCK2
 * does, so both ends compute the same list. */
static uint16_t range_port(const struct fd_sock *fs, uint16_t base, int64_t i) {
  uint32_t p = (uint32_t)(((int64_t)base + fs->port_offset + i) % 65536);
  if (p < 1024) p += 1024;
  return (uint16_t)p;
}

static struct mstate *state_of(struct fd_sock *fs, const struct rs_addr *a) {
  long i = view_index(fs->view, a);
  return i < 0 ? NULL : &fs->ms[i];
}

/* ---------------------------------------------------------------------------------------------
 * Suspicions: reporting, SUSPECT and UNSUSPECT messages.
 */

/* True when we are the first member of the view that is not suspected. */
static bool would_be_coord(struct fd_sock *fs) {
  struct rs_addr self = proto_local_addr(&fs->base);
  for (size_t i = 0; fs->view && i < fs->view->n; i++) {
    if (rs_addr_eq(&fs->view->members[i], &self)) return true;
    if (!fs->ms[i].suspected) return false;
  }
  return false;
}

/* Passes up every suspicion not reported yet, if it is ours to report. An event may bring a new
 * view at once (GMS), so the table is looked at afresh after each one. */
static void report(struct fd_sock *fs) {
  for (;;) {
    if (!would_be_coord(fs)) return;
    long k = -1;
    for (size_t i = 0; i < fs->view->n && k < 0; i++)
      if (fs->ms[i].suspected && !fs->ms[i].reported) k = (long)i;
    if (k < 0) return;
    fs->ms[k].reported = true;
    fs->st.suspect_events++;
    struct rs_event ev = {.type = RS_EV_SUSPECT, .u.addr = fs->view->members[k]};
    proto_up_event(&fs->base, &ev);
  }
}

static void send_hdr_msg(struct fd_sock *fs, uint8_t type, const struct rs_addr *mbr) {
  struct rs_msg *m = rs_msg_new();
  if (!m) return;
  struct fs_hdr *h = rs_msg_put_header(m, &fs_header);
  if (!h) {
    rs_msg_free(m);
    return;
  }
  h->type = type;
  h->mbr = *mbr;
  m->flags = RS_MSG_OOB | RS_MSG_NO_FC;
  m->tflags = RS_MSG_DONT_LOOPBACK;
  if (type == FS_SUSPECT)
    fs->st.suspect_msgs_sent++;
  else
    fs->st.unsuspect_msgs_sent++;
  proto_down_msg(&fs->base, m);
}

/* We found mbr dead: tell the group now and keep telling it until a view drops mbr. */
static void suspect_found(struct fd_sock *fs, const struct rs_addr *mbr) {
  struct mstate *m = state_of(fs, mbr);
  if (!m) return;
  m->unreachable = true;
  fs->st.suspicions++;
  char a[RS_ADDR_STRLEN];
  PLOG(&fs->base, INFO, "suspecting %s: its FD_SOCK connection failed", rs_addr_format(mbr, a));
  m->suspected = true;
  m->repeat = true;
  send_hdr_msg(fs, FS_SUSPECT, mbr);
  if (!rs_timer_active(&fs->repeat_timer))
    rs_timer_start(&fs->repeat_timer, fs->suspect_msg_interval, fs->suspect_msg_interval);
}

static void on_repeat(struct rs_timer *t) {
  struct fd_sock *fs = CONTAINER_OF(t, struct fd_sock, repeat_timer);
  bool any = false;
  for (size_t i = 0; fs->view && i < fs->view->n; i++) {
    if (!fs->ms[i].repeat) continue;
    any = true;
    send_hdr_msg(fs, FS_SUSPECT, &fs->view->members[i]);
  }
  if (!any) rs_timer_stop(t);
  report(fs);
}

/* ---------------------------------------------------------------------------------------------
 * The client: the connection to the ping destination.
 */
static void next_ping_dest(struct fd_sock *fs);

static void client_close(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  rs_timer_stop(&c->timer);
  if (c->io) RT(fs)->ops->io_free(c->io);
  if (c->fd >= 0) close(c->fd);
  c->io = NULL;
  c->fd = -1;
  c->state = CL_IDLE;
  c->greet_len = 0;
}

/* The ping destination is gone: suspected, unless it said LEAVING (or we are leaving
 * ourselves: then nothing we see matters any more). Then the next one. */
static void dest_lost(struct fd_sock *fs, const char *why) {
  struct client *c = &fs->cl;
  struct rs_addr dest = c->dest;
  bool leaving = c->leaving;
  client_close(fs);
  if (fs->leaving_sent) return;
  char a[RS_ADDR_STRLEN];
  if (leaving) {
    fs->st.leaves_seen++;
    PLOG(&fs->base, DEBUG, "%s left", rs_addr_format(&dest, a));
    struct mstate *m = state_of(fs, &dest);
    if (m) m->left = true;
  } else {
    PLOG(&fs->base, DEBUG, "connection to %s: %s", rs_addr_format(&dest, a), why);
    suspect_found(fs, &dest);
  }
  next_ping_dest(fs);
  report(fs); /* last: GMS may install a view in it */
}

/* Every port of the range failed once. */
static void round_failed(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  client_close(fs);
  if (++c->failures >= fs->num_tries) {
    dest_lost(fs, "no connection after num_tries rounds");
    return;
  }
  c->state = CL_WAIT_RETRY;
  rs_timer_start(&c->timer, fs->connect_retry, 0);
}

/* Connects to port port_idx of the destination's range from the timer, at once. */
static void client_start(struct fd_sock *fs) {
  fs->cl.state = CL_START;
  rs_timer_start(&fs->cl.timer, 0, 0);
}

static void attempt_failed(struct fd_sock *fs) {
  fs->st.connect_failures++;
  client_close(fs);
  if (++fs->cl.port_idx < fs->port_range)
    client_start(fs);
  else
    round_failed(fs);
}

static void client_set_events(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  RT(fs)->ops->io_set(c->io, c->state == CL_CONNECTING ? RS_IO_WRITE : RS_IO_READ);
}

/* Bytes from an established destination: LEAVING, or garbage. */
static void client_bytes(struct fd_sock *fs, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == FD_LEAVING)
      fs->cl.leaving = true;
    else
      fs->st.garbage_bytes++;
  }
}

/* Reads the greeting; returns how many bytes of p it took, or SIZE_MAX when it is wrong. */
static size_t take_greeting(struct fd_sock *fs, const uint8_t *p, size_t n) {
  struct client *c = &fs->cl;
  size_t take = GREETING_LEN - c->greet_len;
  if (take > n) take = n;
  memcpy(c->greet + c->greet_len, p, take);
  c->greet_len += take;
  size_t have = c->greet_len < 4 ? c->greet_len : 4;
  if (memcmp(c->greet, greeting_magic, have) ||
      (c->greet_len > 4 && c->greet[4] != GREETING_VERSION)) {
    fs->st.garbage_bytes += c->greet_len;
    return SIZE_MAX;
  }
  if (c->greet_len < GREETING_LEN) return take;
  struct rs_reader r;
  reader_init(&r, c->greet + 5, 16);
  struct rs_addr who = get_addr(&r);
  if (!rs_addr_eq(&who, &c->dest)) {
    fs->st.wrong_member++;
    return SIZE_MAX;
  }
  c->state = CL_CONNECTED;
  c->failures = 0;
  rs_timer_stop(&c->timer);
  fs->st.connects++;
  char a[RS_ADDR_STRLEN];
  PLOG(&fs->base, DEBUG, "watching %s", rs_addr_format(&c->dest, a));
  return take;
}

static void client_readable(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  for (int i = 0; i < READS_PER_EVENT; i++) {
    uint8_t buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      if (c->state == CL_GREETING)
        attempt_failed(fs);
      else
        dest_lost(fs, n == 0 ? "closed" : strerror(errno));
      return;
    }
    size_t off = 0;
    if (c->state == CL_GREETING) {
      off = take_greeting(fs, buf, (size_t)n);
      if (off == SIZE_MAX) {
        attempt_failed(fs);
        return;
      }
    }
    if (c->state == CL_CONNECTED) client_bytes(fs, buf + off, (size_t)n - off);
  }
}

static void on_client_io(struct rs_io *io, int revents) {
  struct fd_sock *fs = rs_io_arg(io);
  struct client *c = &fs->cl;
  if (c->state == CL_CONNECTING) {
    int err = 0;
    socklen_t sl = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) || err) {
      attempt_failed(fs);
      return;
    }
    c->state = CL_GREETING;
    client_set_events(fs);
    return;
  }
  if (revents & RS_IO_READ) client_readable(fs);
}

/* Opens a non-blocking connection from our IP to port port_idx of the destination's range. */
static int open_client_socket(struct fd_sock *fs, const struct rs_phys *to) {
  struct sockaddr_storage ss, bs;
  socklen_t sl = phys_to_sockaddr(to, &ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct rs_phys from = fs->local;
  from.port = 0;
  static const uint8_t zero[16];
  if (from.family == to->family && memcmp(from.ip, zero, sizeof(zero))) {
    /* From our interface, as the transport does; should it fail, the OS picks one. */
    socklen_t bl = phys_to_sockaddr(&from, &bs);
    (void)bind(fd, (struct sockaddr *)&bs, bl);
  }
  int rc = connect(fd, (struct sockaddr *)&ss, sl);
  if (rc && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  fs->cl.state = rc ? CL_CONNECTING : CL_GREETING;
  return fd;
}

static void client_connect(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS, .u.addr = c->dest};
  int rc = proto_down_event(&fs->base, &ev);
  if (rc || (ev.phys.family != RS_PHYS_IP4 && ev.phys.family != RS_PHYS_IP6)) {
    /* Not the neighbour's fault: look again later, without counting it as a failure. */
    fs->st.no_address++;
    c->state = CL_WAIT_RETRY;
    rs_timer_start(&c->timer, fs->connect_retry, 0);
    return;
  }
  struct rs_phys to = ev.phys;
  to.port = range_port(fs, ev.phys.port, c->port_idx);
  c->greet_len = 0;
  c->fd = open_client_socket(fs, &to);
  if (c->fd < 0 || !(c->io = RT(fs)->ops->io_new(RT(fs), c->fd, on_client_io, fs))) {
    attempt_failed(fs);
    return;
  }
  client_set_events(fs);
  rs_timer_start(&c->timer, fs->connect_timeout, 0);
}

static void on_client_timer(struct rs_timer *t) {
  struct fd_sock *fs = CONTAINER_OF(t, struct fd_sock, cl.timer);
  switch (fs->cl.state) {
  case CL_WAIT_RETRY:
    fs->cl.port_idx = 0;
    client_connect(fs);
    return;
  case CL_START: client_connect(fs); return;
  case CL_CONNECTING:
  case CL_GREETING:
    fs->st.connect_timeouts++;
    attempt_failed(fs); /* connecting or waiting for the greeting took connect_timeout */
    return;
  default: return;
  }
}

/* The next member after us in the view that we may watch, or false. */
static bool compute_dest(struct fd_sock *fs, struct rs_addr *out) {
  struct rs_addr self = proto_local_addr(&fs->base);
  long me = view_index(fs->view, &self);
  if (me < 0) return false;
  size_t n = fs->view->n;
  for (size_t k = 1; k < n; k++) {
    size_t j = ((size_t)me + k) % n;
    if (fs->ms[j].unreachable || fs->ms[j].left) continue;
    *out = fs->view->members[j];
    return true;
  }
  return false;
}

/* Watches the member compute_dest names; a connection to another one closes without suspicion. */
static void next_ping_dest(struct fd_sock *fs) {
  struct client *c = &fs->cl;
  struct rs_addr dest;
  bool has = compute_dest(fs, &dest);
  if (has && c->has_dest && rs_addr_eq(&dest, &c->dest) && c->state != CL_IDLE) return;
  client_close(fs);
  c->has_dest = has;
  c->dest = has ? dest : RS_ADDR_NULL;
  c->failures = 0;
  c->port_idx = 0;
  c->leaving = false;
  if (has) client_start(fs);
}

/* ---------------------------------------------------------------------------------------------
 * The server: accepted connections get the greeting, and LEAVING when we go.
 */
static void accepted_close(struct fd_sock *fs, struct accepted *a) {
  for (struct accepted **pp = &fs->accepted; *pp; pp = &(*pp)->next) {
    if (*pp != a) continue;
    *pp = a->next;
    break;
  }
  fs->n_accepted--;
  RT(fs)->ops->io_free(a->io);
  close(a->fd);
  free(a);
}

/* A connector sends nothing: what comes is garbage (read, counted, bounded), or the end. */
static void on_accepted_io(struct rs_io *io, int revents) {
  struct accepted *a = rs_io_arg(io);
  struct fd_sock *fs = a->fs;
  (void)revents;
  for (int i = 0; i < READS_PER_EVENT; i++) {
    uint8_t buf[READ_CHUNK];
    ssize_t n = recv(a->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      accepted_close(fs, a);
      return;
    }
    a->garbage += (uint64_t)n;
    fs->st.garbage_bytes += (uint64_t)n;
    if (a->garbage > GARBAGE_LIMIT) {
      fs->st.garbage_closed++;
      log_bad(fs, "closed an FD_SOCK connection", "it sent bytes (only the acceptor writes)");
      accepted_close(fs, a);
      return;
    }
  }
}

static bool send_all_now(int fd, const uint8_t *p, size_t n) {
  ssize_t w;
  do
    w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  return w == (ssize_t)n;
}

static void accept_one(struct fd_sock *fs, int fd) {
  if (fs->n_accepted >= MAX_ACCEPTED || fs->leaving_sent) {
    fs->st.accept_refused++;
    close(fd);
    return;
  }
  uint8_t g[GREETING_LEN];
  struct rs_writer w;
  writer_init(&w, g, sizeof(g));
  put_bytes(&w, greeting_magic, 4);
  put_u8(&w, GREETING_VERSION);
  struct rs_addr self = proto_local_addr(&fs->base);
  put_addr(&w, &self);
  struct accepted *a = calloc(1, sizeof(*a));
  /* 21 bytes into a fresh socket's empty buffer: all or nothing. */
  if (!a || !send_all_now(fd, g, sizeof(g)) ||
      !(a->io = RT(fs)->ops->io_new(RT(fs), fd, on_accepted_io, a))) {
    free(a);
    close(fd);
    return;
  }
  a->fs = fs;
  a->fd = fd;
  a->next = fs->accepted;
  fs->accepted = a;
  fs->n_accepted++;
  fs->st.accepted++;
  RT(fs)->ops->io_set(a->io, RS_IO_READ);
}

static void on_listen(struct rs_io *io, int revents) {
  struct fd_sock *fs = rs_io_arg(io);
  (void)revents;
  for (int i = 0; i < 16; i++) {
    int fd = accept4(fs->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(fs, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    /* Out of descriptors or similar: the socket stays readable, so pause instead of spinning. */
    fs->st.accept_errors++;
    log_bad(fs, "accept", strerror(errno));
    RT(fs)->ops->io_set(fs->lio, 0);
    rs_timer_start(&fs->accept_retry, 100 * RS_MS, 0);
    return;
  }
}

static void on_accept_retry(struct rs_timer *t) {
  struct fd_sock *fs = CONTAINER_OF(t, struct fd_sock, accept_retry);
  if (fs->lio) RT(fs)->ops->io_set(fs->lio, RS_IO_READ);
}

/* A graceful departure: the members watching us learn it is not a crash. */
static void send_leaving(struct fd_sock *fs) {
  if (fs->leaving_sent) return;
  fs->leaving_sent = true;
  const uint8_t b = FD_LEAVING;
  for (struct accepted *a = fs->accepted; a; a = a->next)
    if (send_all_now(a->fd, &b, 1)) fs->st.leaving_sent++;
}

/* Binds the server to the transport's IP, at its port + port_offset or the next free one. */
static int listen_in_range(struct fd_sock *fs, const struct rs_phys *tp_addr) {
  struct sockaddr_storage ss;
  int last_err = 0;
  for (int64_t i = 0; i < fs->port_range; i++) {
    struct rs_phys a = *tp_addr;
    a.port = range_port(fs, tp_addr->port, i);
    socklen_t sl = phys_to_sockaddr(&a, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return proto_error(&fs->base, "socket: %s", strerror(errno));
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&ss, sl) == 0 && listen(fd, 16) == 0) {
      fs->lfd = fd;
      fs->local = a;
      return 0;
    }
    last_err = errno;
    close(fd);
    if (last_err != EADDRINUSE) break;
  }
  char t[RS_PHYS_STRLEN];
  return proto_error(
      &fs->base, "cannot listen on %s + port_offset %" PRId64 " (%" PRId64 " ports tried): %s",
      phys_format(tp_addr, t, sizeof(t)), fs->port_offset, fs->port_range, strerror(last_err));
}

/* ---------------------------------------------------------------------------------------------
 * Views.
 */

/* Members that stay keep their suspicion (it is repeated until a view drops them) and whether
 * they said LEAVING; every member may be watched again, and every suspicion is reported again. */
static int set_view(struct fd_sock *fs, const struct rs_view_data *v) {
  struct mstate *ms = calloc(v->n ? v->n : 1, sizeof(*ms));
  if (!ms) return RS_ENOMEM;
  for (size_t i = 0; i < v->n; i++) {
    const struct mstate *old = state_of(fs, &v->members[i]);
    if (!old) continue;
    ms[i].suspected = old->suspected;
    ms[i].repeat = old->repeat;
    ms[i].left = old->left;
  }
  free(fs->ms);
  fs->ms = ms;
  view_unref(fs->view);
  fs->view = view_ref((struct rs_view_data *)v);
  next_ping_dest(fs);
  return 0;
}

static void forget_view(struct fd_sock *fs) {
  view_unref(fs->view);
  fs->view = NULL;
  free(fs->ms);
  fs->ms = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Messages and events.
 */
static void on_hdr_msg(struct fd_sock *fs, const struct rs_addr *src, const struct fs_hdr *h) {
  struct rs_addr self = proto_local_addr(&fs->base);
  struct mstate *m = state_of(fs, &h->mbr);
  if (h->type != FS_SUSPECT && h->type != FS_UNSUSPECT) { /* the decoder refuses these */
    fs->st.bad_dropped++;
    char a[RS_ADDR_STRLEN];
    log_bad(fs, "dropped a bad FD_SOCK header from", rs_addr_format(src, a));
    return;
  }
  if (h->type == FS_SUSPECT)
    fs->st.suspect_msgs_received++;
  else
    fs->st.unsuspect_msgs_received++;
  if (!m || rs_addr_eq(&h->mbr, &self)) {
    fs->st.ignored++; /* not a member of our view, or ourselves */
    return;
  }
  if (h->type == FS_SUSPECT) {
    m->suspected = true;
    report(fs);
    return;
  }
  *m = (struct mstate){.left = m->left};
  next_ping_dest(fs);
}

static void fs_up_batch(struct rs_protocol *p, struct rs_batch *b) {
  struct fd_sock *fs = FS(p);
  struct rs_batch keep;
  rs_batch_init(&keep);
  keep.src = b->src;
  keep.dest = b->dest;
  struct rs_msg *m;
  while ((m = rs_batch_pop(b))) {
    const struct fs_hdr *h = rs_msg_header(m, FD_SOCK_ID);
    if (!h) {
      rs_batch_add(&keep, m);
      continue;
    }
    struct fs_hdr copy = *h;
    struct rs_addr src = m->src;
    rs_msg_free(m);
    on_hdr_msg(fs, &src, &copy);
  }
  if (keep.n) proto_up_batch(p, &keep);
}

/* Someone heard from mbr: if we hold a suspicion of it, the group forgets it. */
static void on_unsuspect(struct fd_sock *fs, const struct rs_addr *mbr) {
  struct mstate *m = state_of(fs, mbr);
  if (!m || !(m->suspected || m->unreachable)) return;
  *m = (struct mstate){.left = m->left};
  send_hdr_msg(fs, FS_UNSUSPECT, mbr);
  next_ping_dest(fs);
}

static int fs_down_event(struct rs_protocol *p, struct rs_event *ev) {
  struct fd_sock *fs = FS(p);
  switch (ev->type) {
  case RS_EV_VIEW_CHANGE:
    if (ev->u.view && fs->lfd >= 0 && set_view(fs, ev->u.view) != 0)
      PLOG(p, ERROR, "out of memory: kept the previous view");
    break;
  case RS_EV_UNSUSPECT: on_unsuspect(fs, &ev->u.addr); break;
  case RS_EV_DISCONNECT: send_leaving(fs); break;
  default: break;
  }
  return proto_down_event(p, ev);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle, stats, attributes.
 */
static int fs_init(struct rs_protocol *p) {
  struct fd_sock *fs = FS(p);
  fs->lfd = -1;
  fs->cl.fd = -1;
  rs_timer_init(&fs->cl.timer, p->rt, on_client_timer);
  rs_timer_init(&fs->accept_retry, p->rt, on_accept_retry);
  rs_timer_init(&fs->repeat_timer, p->rt, on_repeat);
  return 0;
}

static int fs_start(struct rs_protocol *p) {
  struct fd_sock *fs = FS(p);
  if (!p->rt->ops->io_new)
    return proto_error(p, "needs a runtime with I/O (libev); in the simulation use FD_ALL3");
  struct rs_event ev = {.type = RS_EV_GET_PHYSICAL_ADDRESS};
  int rc = proto_down_event(p, &ev);
  if (rc || (ev.phys.family != RS_PHYS_IP4 && ev.phys.family != RS_PHYS_IP6)) {
    char a[RS_PHYS_STRLEN] = "none";
    if (!rc) phys_format(&ev.phys, a, sizeof(a));
    return proto_error(p,
                       "needs an IP transport (UDP or TCP) below it; the transport's address "
                       "is %s",
                       a);
  }
  if ((rc = listen_in_range(fs, &ev.phys)) != 0) return rc;
  if (!(fs->lio = RT(fs)->ops->io_new(RT(fs), fs->lfd, on_listen, fs))) {
    close(fs->lfd);
    fs->lfd = -1;
    return proto_error(p, "out of memory");
  }
  RT(fs)->ops->io_set(fs->lio, RS_IO_READ);
  fs->leaving_sent = false;
  char a[RS_PHYS_STRLEN];
  PLOG(p, DEBUG, "listening on %s", phys_format(&fs->local, a, sizeof(a)));
  return 0;
}

static void fs_stop(struct rs_protocol *p) {
  struct fd_sock *fs = FS(p);
  if (fs->lfd >= 0) send_leaving(fs);
  client_close(fs);
  fs->cl.has_dest = false;
  while (fs->accepted)
    accepted_close(fs, fs->accepted);
  if (fs->lio) RT(fs)->ops->io_free(fs->lio);
  fs->lio = NULL;
  if (fs->lfd >= 0) close(fs->lfd);
  fs->lfd = -1;
  rs_timer_stop(&fs->accept_retry);
  rs_timer_stop(&fs->repeat_timer);
  forget_view(fs);
}

static void fs_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct fd_sock *fs = FS(p);
  const struct {
    const char *name;
    uint64_t v;
  } rows[] = {
      {"suspicions", fs->st.suspicions},
      {"suspect_events", fs->st.suspect_events},
      {"suspect_msgs_sent", fs->st.suspect_msgs_sent},
      {"suspect_msgs_received", fs->st.suspect_msgs_received},
      {"unsuspect_msgs_sent", fs->st.unsuspect_msgs_sent},
      {"unsuspect_msgs_received", fs->st.unsuspect_msgs_received},
      {"ignored", fs->st.ignored},
      {"connects", fs->st.connects},
      {"connect_failures", fs->st.connect_failures},
      {"connect_timeouts", fs->st.connect_timeouts},
      {"wrong_member", fs->st.wrong_member},
      {"no_address", fs->st.no_address},
      {"leaves_seen", fs->st.leaves_seen},
      {"leaving_sent", fs->st.leaving_sent},
      {"accepted", fs->st.accepted},
      {"accept_refused", fs->st.accept_refused},
      {"accept_errors", fs->st.accept_errors},
      {"garbage_bytes", fs->st.garbage_bytes},
      {"garbage_closed", fs->st.garbage_closed},
      {"bad_dropped", fs->st.bad_dropped},
      {"connections_accepted", fs->n_accepted},
      {"ping_dest_connected", fs->cl.state == CL_CONNECTED},
      {"port", fs->local.port},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    out->line(out, rows[i].name, "%" PRIu64, rows[i].v);
  char a[RS_ADDR_STRLEN] = "none";
  if (fs->cl.has_dest) rs_addr_format(&fs->cl.dest, a);
  out->line(out, "ping_dest", "%s", a);
}

#define IGNORED(name, why)                                                                         \
  { name, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL }

static const struct rs_attr fs_attrs[] = {
    {"port_offset", RS_ATTR_INT, offsetof(struct fd_sock, port_offset), "100", 0, 65535,
     "the server listens on the transport's port + port_offset (or the next free port of "
     "port_range)",
     0, NULL},
    {"offset", RS_ATTR_ALIAS, 0, "port_offset", 0, 0, "FD_SOCK2's name for port_offset", 0, NULL},
    {"port_range", RS_ATTR_INT, offsetof(struct fd_sock, port_range), "5", 1, 100,
     "ports tried from the transport's port + port_offset, when listening and when connecting", 0,
     NULL},
    {"connect_timeout", RS_ATTR_DURATION, offsetof(struct fd_sock, connect_timeout), "1s", 1,
     600000, "time allowed to connect to a port of the neighbour and read its greeting", 0, NULL},
    {"sock_conn_timeout", RS_ATTR_ALIAS, 0, "connect_timeout", 0, 0, "FD_SOCK's name", 0, NULL},
    {"connect_retry", RS_ATTR_DURATION, offsetof(struct fd_sock, connect_retry), "500ms", 1, 600000,
     "pause before connecting again when no port of the neighbour's range answered", 0, NULL},
    {"num_tries", RS_ATTR_INT, offsetof(struct fd_sock, num_tries), "3", 1, 1000,
     "rounds of failed connects (over the whole range) after which the neighbour is suspected", 0,
     NULL},
    {"suspect_msg_interval", RS_ATTR_DURATION, offsetof(struct fd_sock, suspect_msg_interval), "5s",
     10, 3600000, "a SUSPECT message is repeated this often until a view no longer has the member",
     0, NULL},
    IGNORED("bind_addr", "the transport's bind address is used"),
    IGNORED("bind_interface_str", "the transport's bind address is used"),
    IGNORED("start_port", "the port is the transport's port + port_offset"),
    IGNORED("client_bind_port", "connections use an ephemeral port"),
    IGNORED("external_addr", "members connect to the transport's physical address"),
    IGNORED("external_port", "members connect to the transport's physical port + port_offset"),
    IGNORED("min_port", "ports wrap past 65535 to 1024 and up"),
    IGNORED("max_port", "ports wrap past 65535 to 1024 and up"),
    IGNORED("keep_alive", "a host that vanishes without closing its sockets is found by FD_ALL3"),
    IGNORED("linger", "nothing is left to send when a connection closes"),
    IGNORED("get_cache_timeout", "there is no address cache: addresses come from the transport"),
    IGNORED("get_cache_attempts", "there is no address cache: addresses come from the transport"),
    IGNORED("cache_max_elements", "there is no address cache: addresses come from the transport"),
    IGNORED("cache_max_age", "there is no address cache: addresses come from the transport"),
    RS_ATTR_END,
};

static const char *const fs_aliases[] = {"FD_SOCK2", NULL};

const struct rs_protocol_ops fd_sock_protocol = {
    .name = "FD_SOCK",
    .aliases = fs_aliases,
    .id = FD_SOCK_ID,
    .size = sizeof(struct fd_sock),
    .description = "failure detection by a ring of TCP connections: a closed connection is an "
                   "immediate suspicion",
    .attrs = fs_attrs,
    .header = &fs_header,
    .init = fs_init,
    .start = fs_start,
    .stop = fs_stop,
    .destroy = fs_stop,
    .up_batch = fs_up_batch,
    .down_event = fs_down_event,
    .stats = fs_stats,
};

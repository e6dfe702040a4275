/* The TCP transport: a mesh of connections made on demand, carrying length-prefixed frames. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stack/log_internal.h"
#include "transport/bindaddr.h"
#include "transport/tp.h"

/*
 * Connections. A node listens on bind_addr:bind_port (or the next free port of port_range). To
 * send to a peer it uses an open connection to the peer's listening address, or connects (non
 * blocking, with sock_conn_timeout) and queues frames until the connection is up. A connection
 * is used in both directions: the acceptor learns the connector's listening address from the
 * preamble and sends to it over the same connection.
 *
 * If two nodes connect to each other at the same moment, both connections are kept: each node
 * goes on sending on the connection it chose first for the peer (the choice never changes while
 * that connection lives, so frames to one peer never switch connections, which would break
 * FIFO), and receives on both, which is harmless. An idle one goes away with conn_expire_time.
 *
 * Connection preamble, sent once by the connector before any frame (12 bytes for IPv4, 24 for
 * IPv6):
 *
 *    0   1   2   3   4         5         6                   6+n       8+n
 *   +---+---+---+---+---------+---------+-------------------+---------+
 *   | R | S | T | C | version | family  | address (n bytes) | port    |
 *   +---+---+---+---+---------+---------+-------------------+---------+
 *   magic "RSTC" (0x52 0x53 0x54 0x43); version 1 (TCP_PREAMBLE_VERSION); then the connector's
 *   listening address as put_phys writes it: family 4 (IPv4, n = 4) or 6 (IPv6, n = 16), the
 *   address bytes in network order, and the port as a big-endian u16.
 *
 * Then, in both directions, frames: u32 length (big-endian) followed by that many bytes of frame
 * (stack/wire.h). A length above max_frame_size is a protocol error: the connection is closed.
 */

#define TCP_MAGIC "RSTC"
#define TCP_PREAMBLE_VERSION 1
#define TCP_PREAMBLE_MAX (4 + 1 + 1 + 16 + 2)
#define TCP_IN_DEFAULT (128 * 1024) /* input buffer: many frames per read() */
#define TCP_READS_PER_EVENT 16      /* reads per readable event, for fairness between sockets */
#define TCP_MAX_FRAME ((size_t)1 << 30)

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum conn_state {
  CONN_CONNECTING, /* outgoing: connect() in progress */
  CONN_PREAMBLE,   /* incoming: waiting for the peer's preamble */
  CONN_OPEN,
  CONN_CLOSED,     /* closed, freed when the callback that closed it returns */
};

struct tcp_conn {
  struct tcp *t;
  struct tcp_conn *prev, *next;
  int fd;
  struct rs_io *io;
  struct rs_timer timer; /* connect / preamble deadline */
  struct rs_phys peer;   /* the peer's listening address (incoming: once the preamble is read) */
  struct rs_phys remote; /* incoming: the socket's remote address, for log lines */
  enum conn_state state;
  bool sending;     /* the connection chosen to carry frames to this peer */
  bool in_callback; /* closing defers the free to the end of the callback */
  bool want_write;
  /* Output: bytes [out_off, out_len) are still to be written; out_mark is where the first
   * frame not yet completely written starts (for counting frames lost on failure). */
  uint8_t *out;
  size_t out_off, out_len, out_cap, out_mark;
  /* Input: frames are parsed from [in_start, in_len) of a buffer that delivered messages may
   * still reference (only the bytes before in_start, which are never rewritten while shared). */
  struct rs_buf *in;
  size_t in_start, in_len;
  rs_time last_used;
};

struct tcp_stats {
  uint64_t connects, accepts, connect_failures, closed_by_peer, conn_errors, expired;
  uint64_t frames_dropped; /* queued frames lost when a connection failed or closed */
  uint64_t bad_preamble, bad_length;
  uint64_t accept_errors;
};

struct tcp {
  struct rs_tp tp;
  /* Attributes. */
  rs_time sock_conn_timeout;
  bool tcp_nodelay;
  uint64_t send_queue_size;
  uint64_t recv_buf_size, send_buf_size;
  rs_time conn_expire_time, reaper_interval;
  int64_t linger;
  /* State. */
  struct rs_phys bind_ip;
  int lfd;
  struct rs_io *lio;
  struct rs_timer accept_retry; /* listening paused after running out of descriptors */
  struct rs_timer reaper;
  struct tcp_conn *conns, *conns_tail, *last; /* last: the connection of the previous send */
  size_t n_conns;
  bool blocked; /* a send was refused (queue full): call tp_writable() when room appears */
  struct rs_ratelimit rl;
  struct tcp_stats st;
};

static int tcp_open(struct rs_tp *tp);
static void tcp_close(struct rs_tp *tp);
static int tcp_send(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame,
                    size_t len);

/* TCP cannot multicast: tp.c sends a group frame to each member through send(). */
static const struct rs_tp_ops tcp_ops = {
    .open = tcp_open, .close = tcp_close, .send = tcp_send,
    .multicast = false, .max_frame = TCP_MAX_FRAME,
};

/* A rate-limited line about a peer (bad input, failures); the counting is the caller's. */
static void tcp_log(struct tcp *t, enum rs_log_level level, const char *what,
                    const struct rs_phys *peer, const char *detail) {
  uint64_t suppressed;
  if (!proto_log_enabled(&t->tp.base, level)) return;
  if (!ratelimit_ok(&t->rl, rs_now(t->tp.base.rt), 10 * RS_SEC, &suppressed)) return;
  char a[RS_PHYS_STRLEN] = "?";
  if (peer && peer->family) phys_format(peer, a, sizeof(a));
  if (suppressed)
    proto_log(&t->tp.base, level, "%s %s: %s (%" PRIu64 " similar lines suppressed)", what, a,
              detail, suppressed);
  else
    proto_log(&t->tp.base, level, "%s %s: %s", what, a, detail);
}

static void tcp_warn(struct tcp *t, const char *what, const struct rs_phys *peer,
                     const char *detail) {
  tcp_log(t, RS_LOG_WARN, what, peer, detail);
}

static struct rs_runtime *RT(struct tcp *t) { return t->tp.base.rt; }

/* ---- connection bookkeeping ----------------------------------------------------------------- */

static void on_conn_io(struct rs_io *io, int revents);
static void on_conn_timer(struct rs_timer *timer);

static struct tcp_conn *conn_new(struct tcp *t, int fd) {
  struct tcp_conn *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->t = t;
  c->fd = fd;
  c->last_used = rs_now(RT(t));
  rs_timer_init(&c->timer, RT(t), on_conn_timer);
  c->io = RT(t)->ops->io_new(RT(t), fd, on_conn_io, c);
  if (!c->io) {
    free(c);
    return NULL;
  }
  c->prev = t->conns_tail;
  if (t->conns_tail) t->conns_tail->next = c;
  else t->conns = c;
  t->conns_tail = c;
  t->n_conns++;
  return c;
}

static void conn_free(struct tcp_conn *c) {
  free(c->out);
  rs_buf_unref(c->in);
  free(c);
}

/* Frames queued but not completely written: counted as dropped when the connection goes. */
static size_t queued_frames(const struct tcp_conn *c) {
  size_t n = 0;
  for (size_t pos = c->out_mark; pos + 4 <= c->out_len; n++) {
    struct rs_reader r;
    reader_init(&r, c->out + pos, 4);
    pos += 4 + get_u32(&r);
  }
  return n;
}

/* Closes the connection and unlinks it; the memory goes now or when the callback returns. */
static void conn_close(struct tcp_conn *c) {
  struct tcp *t = c->t;
  if (c->state == CONN_CLOSED) return;
  t->st.frames_dropped += queued_frames(c);
  rs_timer_stop(&c->timer);
  RT(t)->ops->io_free(c->io);
  close(c->fd);
  c->io = NULL;
  c->fd = -1;
  c->state = CONN_CLOSED;
  if (c->prev) c->prev->next = c->next;
  else t->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  else t->conns_tail = c->prev;
  if (t->last == c) t->last = NULL;
  t->n_conns--;
  if (!c->in_callback) conn_free(c);
}

/* After a connection freed queue space or went away: let tp.c retry its refused frame. Only
 * called from I/O callbacks, never from inside tcp_send. */
static void wake_sender(struct tcp *t) {
  if (!t->blocked) return;
  t->blocked = false;
  tp_writable(&t->tp);
}

/* A connecting socket is watched for writable (connected or failed); others always for input,
 * and for writable while output is queued. */
static void set_events(struct tcp_conn *c) {
  int ev = c->state == CONN_CONNECTING ? RS_IO_WRITE
                                       : RS_IO_READ | (c->want_write ? RS_IO_WRITE : 0);
  RT(c->t)->ops->io_set(c->io, ev);
}

/* The connection that carries frames to peer. Once chosen it stays chosen while it lives, even
 * if the peer's own connection to us completes later: frames to one peer never switch
 * connections, which would break their order. */
static struct tcp_conn *conn_find(struct tcp *t, const struct rs_phys *peer) {
  if (t->last && phys_eq(&t->last->peer, peer)) return t->last;
  struct tcp_conn *usable = NULL;
  for (struct tcp_conn *c = t->conns; c; c = c->next) {
    if (c->state == CONN_PREAMBLE || !phys_eq(&c->peer, peer)) continue;
    if (c->sending) return t->last = c;
    if (!usable) usable = c;
  }
  if (usable) usable->sending = true;
  return t->last = usable;
}

/* ---- socket options ------------------------------------------------------------------------- */

static int af_of(const struct rs_phys *p) { return p->family == RS_PHYS_IP6 ? AF_INET6 : AF_INET; }

static void set_sock_opts(struct tcp *t, int fd) {
  /* The bundler already gathers everything sent in one loop iteration into as few frames as
   * possible, and each frame goes out with one write; Nagle's algorithm could only hold a frame
   * back waiting for an ACK, adding latency without saving any packets. */
  int on = t->tcp_nodelay ? 1 : 0;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  if (t->recv_buf_size) {
    int v = t->recv_buf_size > INT32_MAX / 2 ? INT32_MAX / 2 : (int)t->recv_buf_size;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  }
  if (t->send_buf_size) {
    int v = t->send_buf_size > INT32_MAX / 2 ? INT32_MAX / 2 : (int)t->send_buf_size;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  }
  if (t->linger >= 0) {
    struct linger l = {.l_onoff = 1, .l_linger = (int)t->linger};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
}

static bool is_wildcard(const struct rs_phys *p) {
  static const uint8_t zero[16];
  return !memcmp(p->ip, zero, p->family == RS_PHYS_IP4 ? 4 : 16);
}

/* ---- output --------------------------------------------------------------------------------- */

/* Makes room for n more bytes at out_len. */
static bool out_reserve(struct tcp_conn *c, size_t n) {
  if (c->out_cap - c->out_len >= n) return true;
  /* Slide the unwritten bytes to the front first, from the start of the frame being written
   * (out_mark) so the buffer still parses as frames; before the preamble has gone out, out_mark
   * is past out_off. */
  size_t from = c->out_mark < c->out_off ? c->out_mark : c->out_off;
  if (from) {
    memmove(c->out, c->out + from, c->out_len - from);
    c->out_len -= from;
    c->out_off -= from;
    c->out_mark -= from;
    if (c->out_cap - c->out_len >= n) return true;
  }
  size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
  while (cap - c->out_len < n) cap *= 2;
  uint8_t *p = realloc(c->out, cap);
  if (!p) return false;
  c->out = p;
  c->out_cap = cap;
  return true;
}

static bool out_append_frame(struct tcp_conn *c, const uint8_t *frame, size_t len) {
  if (!out_reserve(c, 4 + len)) return false;
  struct rs_writer w;
  writer_init(&w, c->out + c->out_len, 4 + len);
  put_u32(&w, (uint32_t)len);
  put_bytes(&w, frame, len);
  c->out_len += 4 + len;
  return true;
}

/* Moves out_mark past the frames that have been written completely. */
static void advance_mark(struct tcp_conn *c) {
  while (c->out_mark + 4 <= c->out_len) {
    struct rs_reader r;
    reader_init(&r, c->out + c->out_mark, 4);
    size_t end = c->out_mark + 4 + get_u32(&r);
    if (end > c->out_off) break;
    c->out_mark = end;
  }
  if (c->out_off == c->out_len) c->out_off = c->out_len = c->out_mark = 0;
}

/* Writes what it can. 0, or RS_EIO when the connection broke (the caller closes it). */
static int flush(struct tcp_conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return RS_EIO;
    c->out_off += (size_t)n;
    c->last_used = rs_now(RT(c->t));
  }
  advance_mark(c);
  bool want = c->out_off < c->out_len;
  if (want != c->want_write) {
    c->want_write = want;
    set_events(c);
  }
  return 0;
}

/* The fast path: nothing queued, so the frame goes straight to the socket with one writev; only
 * what the socket did not take is copied. Returns 0 or RS_EIO (connection broken). */
static int write_direct(struct tcp_conn *c, const uint8_t *frame, size_t len) {
  uint8_t hdr[4];
  struct rs_writer w;
  writer_init(&w, hdr, sizeof(hdr));
  put_u32(&w, (uint32_t)len);
  struct iovec iov[2] = {{hdr, 4}, {(void *)(uintptr_t)frame, len}};
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
  ssize_t n;
  do n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return RS_EIO;
  c->last_used = rs_now(RT(c->t));
  if (n == (ssize_t)(4 + len)) return 0;
  /* Keep the whole frame so the output stays a sequence of frames, minus what went out. */
  c->out_off = c->out_len = c->out_mark = 0;
  if (!out_append_frame(c, frame, len)) return RS_ENOMEM;
  c->out_off = n > 0 ? (size_t)n : 0;
  c->want_write = true;
  set_events(c);
  return 0;
}

/* ---- connecting ----------------------------------------------------------------------------- */

static bool queue_preamble(struct tcp_conn *c) {
  struct rs_writer w;
  if (!out_reserve(c, TCP_PREAMBLE_MAX)) return false;
  writer_init(&w, c->out, TCP_PREAMBLE_MAX);
  put_bytes(&w, TCP_MAGIC, 4);
  put_u8(&w, TCP_PREAMBLE_VERSION);
  put_phys(&w, &c->t->tp.local_phys);
  c->out_len = c->out_mark = w.len;
  return true;
}

static void conn_opened(struct tcp_conn *c) {
  c->state = CONN_OPEN;
  rs_timer_stop(&c->timer);
  c->t->st.connects++;
}

/* Starts a connection to peer; frames can be queued on it at once. NULL when it failed. */
static struct tcp_conn *conn_connect(struct tcp *t, const struct rs_phys *peer) {
  struct sockaddr_storage ss;
  socklen_t sl = phys_to_sockaddr(peer, &ss);
  int fd = socket(af_of(peer), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    tcp_warn(t, "socket for", peer, strerror(errno));
    return NULL;
  }
  set_sock_opts(t, fd);
  /* Connect from the bind address, so the peer sees traffic from the interface we chose. */
  if (t->bind_ip.family == peer->family && !is_wildcard(&t->bind_ip)) {
    struct sockaddr_storage bs;
    socklen_t bl = phys_to_sockaddr(&t->bind_ip, &bs);
    if (bind(fd, (struct sockaddr *)&bs, bl)) tcp_warn(t, "bind before connecting to", peer,
                                                       strerror(errno));
  }
  int rc = connect(fd, (struct sockaddr *)&ss, sl);
  if (rc && errno != EINPROGRESS) {
    t->st.connect_failures++;
    tcp_log(t, RS_LOG_INFO, "connect to", peer, strerror(errno));
    close(fd);
    return NULL;
  }
  struct tcp_conn *c = conn_new(t, fd);
  if (!c) {
    close(fd);
    return NULL;
  }
  c->peer = *peer;
  c->sending = true;
  if (!queue_preamble(c)) {
    conn_close(c);
    return NULL;
  }
  if (rc == 0) {
    conn_opened(c);
    c->want_write = true; /* the preamble */
  } else {
    c->state = CONN_CONNECTING;
    rs_timer_start(&c->timer, t->sock_conn_timeout, 0);
  }
  set_events(c);
  return c;
}

/* A peer that is down is an everyday event in a group (failure detection deals with it): the
 * failure is counted, and logged at INFO only. */
static void connect_failed(struct tcp_conn *c, const char *why) {
  c->t->st.connect_failures++;
  tcp_log(c->t, RS_LOG_INFO, "connect to", &c->peer, why);
  conn_close(c);
}

static void on_connected(struct tcp_conn *c) {
  int err = 0;
  socklen_t sl = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err == 0) {
    conn_opened(c);
    c->want_write = true; /* the preamble is queued; flush() switches the watcher to input */
    if (flush(c)) connect_failed(c, strerror(errno));
    return;
  }
  connect_failed(c, strerror(err ? err : errno));
}

static void on_conn_timer(struct rs_timer *timer) {
  struct tcp_conn *c = CONTAINER_OF(timer, struct tcp_conn, timer);
  struct tcp *t = c->t;
  if (c->state == CONN_CONNECTING) {
    connect_failed(c, "timed out (sock_conn_timeout)");
  } else if (c->state == CONN_PREAMBLE) {
    t->st.bad_preamble++;
    tcp_warn(t, "closed connection from", &c->remote, "no preamble within sock_conn_timeout");
    conn_close(c);
  }
  wake_sender(t);
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Checks the preamble once enough bytes are there. 1: read it; 0: need more; <0: refused. */
static int read_preamble(struct tcp_conn *c) {
  const uint8_t *p = c->in->data + c->in_start;
  size_t avail = c->in_len - c->in_start;
  if (memcmp(p, TCP_MAGIC, avail < 4 ? avail : 4)) return RS_EMALFORMED;
  if (avail < 6) return 0;
  if (p[4] != TCP_PREAMBLE_VERSION) return RS_EVERSION;
  if (p[5] != RS_PHYS_IP4 && p[5] != RS_PHYS_IP6) return RS_EMALFORMED;
  size_t need = 6 + (p[5] == RS_PHYS_IP4 ? 4u : 16u) + 2;
  if (avail < need) return 0;
  struct rs_reader r;
  reader_init(&r, p + 5, need - 5);
  c->peer = get_phys(&r);
  if (r.err || c->peer.port == 0) return RS_EMALFORMED;
  c->in_start += need;
  c->state = CONN_OPEN;
  rs_timer_stop(&c->timer);
  c->t->st.accepts++;
  return 1;
}

/* Hands every complete frame to tp_receive. false when the connection was closed. */
static bool parse_frames(struct tcp_conn *c) {
  struct tcp *t = c->t;
  if (c->state == CONN_PREAMBLE) {
    int rc = read_preamble(c);
    if (rc < 0) {
      t->st.bad_preamble++;
      tcp_warn(t, "closed connection from", &c->remote, rc == RS_EVERSION
                   ? "unsupported preamble version" : "not a raftstack TCP connection");
      conn_close(c);
      return false;
    }
    if (rc == 0) return true;
  }
  while (c->in_len - c->in_start >= 4) {
    struct rs_reader r;
    reader_init(&r, c->in->data + c->in_start, 4);
    size_t len = get_u32(&r);
    if (len > t->tp.max_frame_size) {
      t->st.bad_length++;
      char why[96];
      snprintf(why, sizeof(why), "frame of %zu bytes exceeds max_frame_size", len);
      tcp_warn(t, "closed connection from", &c->peer, why);
      conn_close(c);
      return false;
    }
    if (c->in_len - c->in_start < 4 + len) break;
    tp_receive(&t->tp, c->in, c->in_start + 4, len, &c->peer);
    c->in_start += 4 + len;
    if (c->state == CONN_CLOSED) return false;
  }
  return true;
}

/* Bytes the next frame needs from in_start (header included), or 0 when unknown yet. */
static size_t pending_frame_size(const struct tcp_conn *c) {
  if (c->state != CONN_OPEN || c->in_len - c->in_start < 4) return 0;
  struct rs_reader r;
  reader_init(&r, c->in->data + c->in_start, 4);
  return 4 + (size_t)get_u32(&r);
}

/* Makes room to read into. Reads go on at the tail while the pending frame fits (or, its size
 * unknown yet, while a quarter of a buffer is left); otherwise the unparsed bytes move to the
 * front, in place when no delivered message references the buffer, else into a fresh buffer
 * (also when the pending frame needs a bigger one, or a big one is no longer needed). */
static bool make_room(struct tcp_conn *c) {
  if (!c->in) return (c->in = rs_buf_new(TCP_IN_DEFAULT)) != NULL;
  size_t need = pending_frame_size(c), rest = c->in_len - c->in_start, cap = c->in->cap;
  bool shared = atomic_load_explicit(&c->in->refs, memory_order_acquire) > 1;
  if (!shared && rest == 0) c->in_start = c->in_len = 0;
  /* A buffer grown for a big frame goes back to the default size once that frame is through. */
  bool oversized = cap > TCP_IN_DEFAULT && need <= TCP_IN_DEFAULT && rest <= TCP_IN_DEFAULT;
  if (!oversized &&
      (need ? c->in_start + need <= cap : cap - c->in_len >= TCP_IN_DEFAULT / 4))
    return true;
  size_t want = need > TCP_IN_DEFAULT ? need : TCP_IN_DEFAULT;
  if (!shared && cap >= want && (cap == TCP_IN_DEFAULT || want > TCP_IN_DEFAULT)) {
    memmove(c->in->data, c->in->data + c->in_start, rest);
  } else {
    struct rs_buf *b = rs_buf_new(want);
    if (!b) return false;
    memcpy(b->data, c->in->data + c->in_start, rest);
    rs_buf_unref(c->in);
    c->in = b;
  }
  c->in_start = 0;
  c->in_len = rest;
  return true;
}

static void peer_closed(struct tcp_conn *c, const char *why) {
  if (why) {
    c->t->st.conn_errors++;
    tcp_warn(c->t, "connection with", c->peer.family ? &c->peer : &c->remote, why);
  } else {
    c->t->st.closed_by_peer++;
    char a[RS_PHYS_STRLEN] = "(no preamble)";
    if (c->peer.family) phys_format(&c->peer, a, sizeof(a));
    PLOG(&c->t->tp.base, DEBUG, "connection with %s closed by the peer", a);
  }
  conn_close(c);
}

static void on_readable(struct tcp_conn *c) {
  for (int i = 0; i < TCP_READS_PER_EVENT && c->state != CONN_CLOSED; i++) {
    if (!make_room(c)) {
      tcp_warn(c->t, "reading from", &c->peer, "out of memory");
      return;
    }
    size_t room = c->in->cap - c->in_len;
    ssize_t n = read(c->fd, c->in->data + c->in_len, room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      peer_closed(c, n < 0 ? strerror(errno) : NULL);
      return;
    }
    c->in_len += (size_t)n;
    c->last_used = rs_now(RT(c->t));
    if (!parse_frames(c) || (size_t)n < room) return;
  }
}

static void on_conn_io(struct rs_io *io, int revents) {
  struct tcp_conn *c = rs_io_arg(io);
  struct tcp *t = c->t;
  c->in_callback = true;
  if (c->state == CONN_CONNECTING) {
    if (revents & (RS_IO_WRITE | RS_IO_READ)) on_connected(c);
  } else {
    if ((revents & RS_IO_WRITE) && c->state == CONN_OPEN && flush(c))
      peer_closed(c, strerror(errno));
    if ((revents & RS_IO_READ) && c->state != CONN_CLOSED) on_readable(c);
  }
  c->in_callback = false;
  bool room = c->state == CONN_CLOSED || c->out_len - c->out_off <= t->send_queue_size / 2;
  if (c->state == CONN_CLOSED) conn_free(c);
  if (room) wake_sender(t);
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void accept_one(struct tcp *t, int fd, const struct sockaddr *remote) {
  set_sock_opts(t, fd);
  struct tcp_conn *c = conn_new(t, fd);
  if (!c) {
    close(fd);
    return;
  }
  phys_from_sockaddr(&c->remote, remote);
  c->state = CONN_PREAMBLE;
  rs_timer_start(&c->timer, t->sock_conn_timeout, 0);
  set_events(c);
}

static void on_accept_retry(struct rs_timer *timer) {
  struct tcp *t = CONTAINER_OF(timer, struct tcp, accept_retry);
  if (t->lio) RT(t)->ops->io_set(t->lio, RS_IO_READ);
}

static void on_listen(struct rs_io *io, int revents) {
  struct tcp *t = rs_io_arg(io);
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(t, fd, (struct sockaddr *)&ss);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    t->st.accept_errors++;
    tcp_warn(t, "accept on", &t->tp.local_phys, strerror(errno));
    /* Out of descriptors (or similar): the socket stays readable, so stop watching it for a
     * moment instead of spinning. */
    RT(t)->ops->io_set(t->lio, 0);
    rs_timer_start(&t->accept_retry, 100 * RS_MS, 0);
    return;
  }
}

/* ---- the reaper ----------------------------------------------------------------------------- */

static void on_reaper(struct rs_timer *timer) {
  struct tcp *t = CONTAINER_OF(timer, struct tcp, reaper);
  rs_time now = rs_now(RT(t));
  for (struct tcp_conn *c = t->conns, *next; c; c = next) {
    next = c->next;
    if (c->state == CONN_OPEN && c->out_off == c->out_len &&
        now - c->last_used >= t->conn_expire_time) {
      t->st.expired++;
      conn_close(c);
    }
  }
}

/* ---- ops ------------------------------------------------------------------------------------ */

static int tcp_open(struct rs_tp *tp) {
  struct tcp *t = (struct tcp *)tp;
  if (!RT(t)->ops->io_new) return proto_error(&tp->base, "needs a runtime with I/O (libev)");
  char err[512];
  int rc = bindaddr_resolve(tp->bind_addr, AF_UNSPEC, &t->bind_ip, err, sizeof(err));
  if (rc) return proto_error(&tp->base, "%s", err);
  struct rs_phys addr = t->bind_ip;
  t->lfd = socket(af_of(&addr), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (t->lfd < 0) return proto_error(&tp->base, "socket: %s", strerror(errno));
  /* Lets a restarted node listen on its old port while connections of its previous life are
   * in TIME_WAIT; two live listeners on one port are still refused. */
  int on = 1;
  setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if ((rc = tp_bind_in_range(&t->tp, t->lfd, &addr))) goto err_after_socket;
  if (listen(t->lfd, 128)) {
    rc = proto_error(&tp->base, "listen: %s", strerror(errno));
    goto err_after_socket;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  getsockname(t->lfd, (struct sockaddr *)&ss, &sl);
  phys_from_sockaddr(&tp->local_phys, (struct sockaddr *)&ss);
  if (!(t->lio = RT(t)->ops->io_new(RT(t), t->lfd, on_listen, t))) {
    rc = RS_ENOMEM;
    goto err_after_socket;
  }
  RT(t)->ops->io_set(t->lio, RS_IO_READ);
  if (t->conn_expire_time && t->reaper_interval)
    rs_timer_start(&t->reaper, t->reaper_interval, t->reaper_interval);
  return 0;
err_after_socket:
  close(t->lfd);
  t->lfd = -1;
  return rc;
}

static void tcp_close(struct rs_tp *tp) {
  struct tcp *t = (struct tcp *)tp;
  while (t->conns) conn_close(t->conns);
  if (t->lio) RT(t)->ops->io_free(t->lio);
  t->lio = NULL;
  if (t->lfd >= 0) close(t->lfd);
  t->lfd = -1;
  rs_timer_stop(&t->accept_retry);
  rs_timer_stop(&t->reaper);
  t->blocked = false;
}

/* A frame to a connection that is up with nothing queued goes out at once; otherwise it is
 * queued, up to send_queue_size bytes per connection. */
static int tcp_send(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame,
                    size_t len) {
  struct tcp *t = (struct tcp *)tp;
  if (!dest || (dest->family != RS_PHYS_IP4 && dest->family != RS_PHYS_IP6)) return RS_EINVAL;
  if (len > UINT32_MAX) return RS_ETOOBIG;
  struct tcp_conn *c = conn_find(t, dest);
  if (!c && !(c = conn_connect(t, dest))) return RS_EIO;
  size_t queued = c->out_len - c->out_off;
  if (c->state == CONN_OPEN && queued == 0) {
    int rc = write_direct(c, frame, len);
    if (rc != RS_EIO) return rc;
    /* The peer went away (restarted?): reconnect and queue the frame on the new connection. */
    tcp_warn(t, "connection to", dest, "broken; reconnecting");
    conn_close(c);
    if (!(c = conn_connect(t, dest))) return RS_EIO;
    queued = c->out_len - c->out_off;
  }
  if (queued > 0 && queued + 4 + len > t->send_queue_size) {
    t->blocked = true;
    return RS_EAGAIN;
  }
  if (!out_append_frame(c, frame, len)) return RS_ENOMEM;
  return 0;
}

static int tcp_init(struct rs_protocol *p) {
  struct tcp *t = (struct tcp *)p;
  t->tp.tops = &tcp_ops;
  t->lfd = -1;
  rs_timer_init(&t->accept_retry, p->rt, on_accept_retry);
  rs_timer_init(&t->reaper, p->rt, on_reaper);
  return tp_init(p);
}

static void tcp_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct tcp *t = (struct tcp *)p;
  tp_stats(p, out);
  out->line(out, "tcp_connections", "%zu", t->n_conns);
  out->line(out, "tcp_connects", "%" PRIu64, t->st.connects);
  out->line(out, "tcp_accepts", "%" PRIu64, t->st.accepts);
  out->line(out, "tcp_connect_failures", "%" PRIu64, t->st.connect_failures);
  out->line(out, "tcp_closed_by_peer", "%" PRIu64, t->st.closed_by_peer);
  out->line(out, "tcp_conn_errors", "%" PRIu64, t->st.conn_errors);
  out->line(out, "tcp_expired", "%" PRIu64, t->st.expired);
  out->line(out, "tcp_frames_dropped", "%" PRIu64, t->st.frames_dropped);
  out->line(out, "tcp_bad_preamble", "%" PRIu64, t->st.bad_preamble);
  out->line(out, "tcp_bad_length", "%" PRIu64, t->st.bad_length);
  out->line(out, "tcp_accept_errors", "%" PRIu64, t->st.accept_errors);
}

#define TCP_IGNORED(n, why) {n, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL}

static const struct rs_attr tcp_attrs[] = {
    TP_ATTRS(struct tcp),
    {"sock_conn_timeout", RS_ATTR_DURATION, offsetof(struct tcp, sock_conn_timeout), "2000ms", 1,
     600000, "time allowed to connect to a peer (and for an accepted peer to send its preamble)", 0,
     NULL},
    {"tcp_nodelay", RS_ATTR_BOOL, offsetof(struct tcp, tcp_nodelay), "true", 0, 0,
     "TCP_NODELAY: the bundler batches already, so Nagle would only add latency", 0, NULL},
    {"send_queue_size", RS_ATTR_SIZE, offsetof(struct tcp, send_queue_size), "4MiB", 65536,
     1073741824, "bytes buffered per connection before sends are refused (back pressure)", 0,
     NULL},
    {"recv_buf_size", RS_ATTR_SIZE, offsetof(struct tcp, recv_buf_size), "0", 0, 1073741824,
     "SO_RCVBUF of connections; 0: the OS default (auto-tuned)", 0, NULL},
    {"send_buf_size", RS_ATTR_SIZE, offsetof(struct tcp, send_buf_size), "0", 0, 1073741824,
     "SO_SNDBUF of connections; 0: the OS default (auto-tuned)", 0, NULL},
    {"conn_expire_time", RS_ATTR_DURATION, offsetof(struct tcp, conn_expire_time), "0", 0, 0,
     "idle connections are closed after this long; 0: never", 0, NULL},
    {"reaper_interval", RS_ATTR_DURATION, offsetof(struct tcp, reaper_interval), "0", 0, 0,
     "how often idle connections are looked for; 0: never", 0, NULL},
    {"linger", RS_ATTR_INT, offsetof(struct tcp, linger), "-1", -1, 65535,
     "SO_LINGER in seconds; -1: off", 0, NULL},
    TCP_IGNORED("buffered_input_stream_size", "reads go into one buffer per connection"),
    TCP_IGNORED("buffered_output_stream_size", "writes use send_queue_size"),
    TCP_IGNORED("use_lock_to_send", "one loop thread sends"),
    TCP_IGNORED("peer_addr_read_timeout", "sock_conn_timeout bounds the preamble"),
    TCP_IGNORED("max_length", "max_frame_size bounds frames"),
    TCP_IGNORED("log_details", "always logged"),
    TCP_IGNORED("client_bind_addr", "connections are made from bind_addr"),
    TCP_IGNORED("client_bind_port", "connections use an ephemeral port"),
    TCP_IGNORED("defer_client_bind_addr", "connections are made from bind_addr"),
    TCP_IGNORED("non_blocking_sends", "sends never block"),
    TCP_IGNORED("max_send_queue", "see send_queue_size"),
    RS_ATTR_END,
};

const struct rs_protocol_ops tcp_protocol = {
    .name = "TCP",
    .id = 17,
    .flags = RS_PROTO_TRANSPORT,
    .size = sizeof(struct tcp),
    .description = "TCP transport: connections made on demand, length-prefixed frames",
    .attrs = tcp_attrs,
    .init = tcp_init,
    .start = tp_start,
    .stop = tp_stop,
    .destroy = tp_destroy,
    .down_msg = tp_down_msg,
    .down_event = tp_down_event,
    .stats = tcp_stats,
};

/* The UDP transport: unicast datagrams and IP multicast, received in batches with recvmmsg. */
#define _GNU_SOURCE /* recvmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stack/log_internal.h"
#include "transport/bindaddr.h"
#include "transport/tp.h"

/*
 * Sockets, as in JGroups since JGRP-1765:
 *  - one unicast socket bound to bind_addr:bind_port (or the next free port of port_range). It
 *    sends everything, unicasts and multicasts, so the source address of every datagram is the
 *    sender's physical address and receivers learn it from recvmmsg;
 *  - one multicast socket bound to mcast_addr:mcast_port (SO_REUSEADDR/SO_REUSEPORT, so every
 *    member on a host can bind it), joined to the group on the bind interface. It only receives.
 * Multicasts leave through the bind interface (IP_MULTICAST_IF) with ip_ttl hops, and are looped
 * back to the other members on the same host (IP_MULTICAST_LOOP). Our own copy is dropped by
 * tp_receive (its source is our own address).
 */

#define UDP_MAX_DATAGRAM 65507 /* 65535 - 20 (IPv4 header) - 8 (UDP header) */
#define UDP_SLOT_SIZE 65536    /* one more than any datagram we accept, to see oversize ones */
#define UDP_BATCH 16           /* datagrams per recvmmsg */
#define UDP_READS_PER_EVENT 64 /* recvmmsg calls per readable event, so one busy socket cannot
                                  starve the loop's other watchers (timers, other sockets) */

/* A receiving socket with its batch of buffers. */
struct udp_sock {
  int fd;
  struct rs_io *io;
  struct rs_buf *slot[UDP_BATCH];
  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_BATCH];
  struct sockaddr_storage from[UDP_BATCH];
};

struct udp_stats {
  uint64_t dropped_truncated; /* larger than UDP_MAX_DATAGRAM, or cut by the kernel */
  uint64_t recv_errors, send_errors, send_too_big;
};

struct udp {
  struct rs_tp tp;
  /* Attributes. */
  char *mcast_addr;
  int64_t mcast_port;
  bool ip_mcast;
  int64_t ip_ttl;
  int64_t tos;
  uint64_t mcast_recv_buf_size, mcast_send_buf_size;
  uint64_t ucast_recv_buf_size, ucast_send_buf_size;
  /* State. */
  struct rs_phys group; /* mcast_addr:mcast_port */
  struct udp_sock ucast, mcast;
  bool want_write;
  struct rs_ratelimit rl;
  struct udp_stats st;
};

static int udp_open(struct rs_tp *tp);
static void udp_close(struct rs_tp *tp);
static int udp_send(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame,
                    size_t len);

/* With ip_mcast the group gets one datagram; without, tp.c sends one per member. */
static const struct rs_tp_ops udp_mcast_ops = {
    .open = udp_open, .close = udp_close, .send = udp_send,
    .multicast = true, .max_frame = UDP_MAX_DATAGRAM,
};
static const struct rs_tp_ops udp_ucast_ops = {
    .open = udp_open, .close = udp_close, .send = udp_send,
    .multicast = false, .max_frame = UDP_MAX_DATAGRAM,
};

/* ---- logging bad input and failures --------------------------------------------------------- */

static void udp_warn(struct udp *u, const char *what, const char *detail) {
  uint64_t suppressed;
  if (!ratelimit_ok(&u->rl, rs_now(u->tp.base.rt), 10 * RS_SEC, &suppressed)) return;
  if (suppressed)
    PLOG(&u->tp.base, WARN, "%s: %s (%" PRIu64 " similar lines suppressed)", what, detail,
         suppressed);
  else
    PLOG(&u->tp.base, WARN, "%s: %s", what, detail);
}

/* ---- sockets -------------------------------------------------------------------------------- */

static int af_of(const struct rs_phys *p) { return p->family == RS_PHYS_IP6 ? AF_INET6 : AF_INET; }

/* Asks for a socket buffer size; the kernel caps it at net.core.[rw]mem_max (JGroups warns the
 * same way). Linux reports twice the value it grants, for its bookkeeping. */
static void set_buf(struct udp *u, int fd, int opt, uint64_t want, const char *attr) {
  if (want == 0) return;
  int v = want > INT32_MAX / 2 ? INT32_MAX / 2 : (int)want;
  int got = 0;
  socklen_t sl = sizeof(got);
  if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) ||
      getsockopt(fd, SOL_SOCKET, opt, &got, &sl))
    return;
  if ((uint64_t)got / 2 < want)
    PLOG(&u->tp.base, INFO, "%s: asked for %" PRIu64 " bytes, the OS granted %d (raise "
         "net.core.%s)", attr, want, got / 2, opt == SO_RCVBUF ? "rmem_max" : "wmem_max");
}

static void sock_init(struct udp_sock *s) {
  memset(s, 0, sizeof(*s));
  s->fd = -1;
}

static void sock_close(struct udp *u, struct udp_sock *s) {
  if (s->io) u->tp.base.rt->ops->io_free(s->io);
  if (s->fd >= 0) close(s->fd);
  for (size_t i = 0; i < UDP_BATCH; i++) rs_buf_unref(s->slot[i]);
  sock_init(s);
}

static void on_ucast(struct rs_io *io, int revents);
static void on_mcast(struct rs_io *io, int revents);

static int watch(struct udp *u, struct udp_sock *s, rs_io_fn fn) {
  struct rs_runtime *rt = u->tp.base.rt;
  s->io = rt->ops->io_new(rt, s->fd, fn, u);
  if (!s->io) return RS_ENOMEM;
  rt->ops->io_set(s->io, RS_IO_READ);
  return 0;
}

static int open_ucast(struct udp *u, const struct rs_phys *bind_ip) {
  struct rs_phys addr = *bind_ip;
  int fd = socket(af_of(&addr), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return proto_error(&u->tp.base, "socket: %s", strerror(errno));
  u->ucast.fd = fd;
  set_buf(u, fd, SO_RCVBUF, u->ucast_recv_buf_size, "ucast_recv_buf_size");
  /* This socket also sends the multicasts: give it the larger of the two send sizes. */
  uint64_t snd = u->ucast_send_buf_size > u->mcast_send_buf_size ? u->ucast_send_buf_size
                                                                 : u->mcast_send_buf_size;
  set_buf(u, fd, SO_SNDBUF, snd, "ucast_send_buf_size/mcast_send_buf_size");
  int tos = (int)u->tos;
  if (tos && addr.family == RS_PHYS_IP4) setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
  if (tos && addr.family == RS_PHYS_IP6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
  int rc = tp_bind_in_range(&u->tp, fd, &addr);
  if (rc) return rc;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl))
    return proto_error(&u->tp.base, "getsockname: %s", strerror(errno));
  phys_from_sockaddr(&u->tp.local_phys, (struct sockaddr *)&ss);
  return watch(u, &u->ucast, on_ucast);
}

/* Multicasts leave through the bind interface, hop at most ip_ttl routers, and come back to the
 * members on this host. */
static int set_mcast_send_opts(struct udp *u, const struct rs_phys *bind_ip) {
  int fd = u->ucast.fd, ttl = (int)u->ip_ttl, loop = 1;
  if (bind_ip->family == RS_PHYS_IP4) {
    struct in_addr ifa;
    memcpy(&ifa, bind_ip->ip, 4);
    unsigned char ttl8 = (unsigned char)ttl, loop8 = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, sizeof(ifa)) ||
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl8, sizeof(ttl8)) ||
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop8, sizeof(loop8)))
      return proto_error(&u->tp.base, "multicast options: %s", strerror(errno));
    return 0;
  }
  unsigned ifindex = bindaddr_ifindex(bind_ip);
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl)) ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof(loop)))
    return proto_error(&u->tp.base, "multicast options: %s", strerror(errno));
  return 0;
}

static int join_group(struct udp *u, int fd, const struct rs_phys *bind_ip) {
  if (u->group.family == RS_PHYS_IP4) {
    struct ip_mreq mreq;
    memcpy(&mreq.imr_multiaddr, u->group.ip, 4);
    memcpy(&mreq.imr_interface, bind_ip->ip, 4);
    int all = 0; /* only the groups this socket joined, not every group joined on the host */
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &all, sizeof(all));
    if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)))
      return proto_error(&u->tp.base, "joining %s: %s", u->mcast_addr, strerror(errno));
    return 0;
  }
  struct ipv6_mreq mreq6;
  memcpy(&mreq6.ipv6mr_multiaddr, u->group.ip, 16);
  mreq6.ipv6mr_interface = bindaddr_ifindex(bind_ip);
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq6, sizeof(mreq6)))
    return proto_error(&u->tp.base, "joining %s: %s", u->mcast_addr, strerror(errno));
  return 0;
}

static int open_mcast(struct udp *u, const struct rs_phys *bind_ip) {
  int fd = socket(af_of(&u->group), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return proto_error(&u->tp.base, "socket: %s", strerror(errno));
  u->mcast.fd = fd;
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
  set_buf(u, fd, SO_RCVBUF, u->mcast_recv_buf_size, "mcast_recv_buf_size");
  /* Bound to the group address, so the socket receives that group's datagrams and nothing sent
   * to mcast_port as unicast. */
  struct sockaddr_storage ss;
  socklen_t sl = phys_to_sockaddr(&u->group, &ss);
  if (bind(fd, (struct sockaddr *)&ss, sl))
    return proto_error(&u->tp.base, "bind %s:%" PRId64 ": %s", u->mcast_addr, u->mcast_port,
                       strerror(errno));
  int rc = join_group(u, fd, bind_ip);
  return rc ? rc : watch(u, &u->mcast, on_mcast);
}

static int udp_open(struct rs_tp *tp) {
  struct udp *u = (struct udp *)tp;
  struct rs_phys bind_ip;
  char err[512];
  sock_init(&u->ucast);
  sock_init(&u->mcast);
  if (!tp->base.rt->ops->io_new) return proto_error(&tp->base, "needs a runtime with I/O (libev)");
  int family = u->ip_mcast ? af_of(&u->group) : AF_UNSPEC;
  int rc = bindaddr_resolve(tp->bind_addr, family, &bind_ip, err, sizeof(err));
  if (rc) return proto_error(&tp->base, "%s", err);
  if (u->ip_mcast && bind_ip.family != u->group.family)
    return proto_error(&tp->base, "mcast_addr %s and bind_addr %s are of different families",
                       u->mcast_addr, tp->bind_addr);
  if ((rc = open_ucast(u, &bind_ip))) goto err_after_open;
  if (u->ip_mcast && ((rc = set_mcast_send_opts(u, &bind_ip)) || (rc = open_mcast(u, &bind_ip))))
    goto err_after_open;
  char a[RS_PHYS_STRLEN];
  PLOG(&tp->base, DEBUG, "listening on %s%s%s", phys_format(&tp->local_phys, a, sizeof(a)),
       u->ip_mcast ? ", group " : "", u->ip_mcast ? u->mcast_addr : "");
  return 0;
err_after_open:
  udp_close(tp);
  return rc;
}

static void udp_close(struct rs_tp *tp) {
  struct udp *u = (struct udp *)tp;
  sock_close(u, &u->ucast);
  sock_close(u, &u->mcast);
  u->want_write = false;
}

/* ---- receiving ------------------------------------------------------------------------------ */

/* Gives every slot a buffer and points the batch's headers at them. A slot keeps its buffer
 * between batches unless the stack still holds messages that reference it. */
static bool prepare_batch(struct udp_sock *s) {
  for (size_t i = 0; i < UDP_BATCH; i++) {
    if (!s->slot[i] && !(s->slot[i] = rs_buf_new(UDP_SLOT_SIZE))) return false;
    s->iov[i].iov_base = s->slot[i]->data;
    s->iov[i].iov_len = UDP_SLOT_SIZE;
    memset(&s->msgs[i].msg_hdr, 0, sizeof(s->msgs[i].msg_hdr));
    s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
    s->msgs[i].msg_hdr.msg_iovlen = 1;
    s->msgs[i].msg_hdr.msg_name = &s->from[i];
    s->msgs[i].msg_hdr.msg_namelen = sizeof(s->from[i]);
  }
  return true;
}

static void deliver(struct udp *u, struct udp_sock *s, size_t i) {
  const struct mmsghdr *mh = &s->msgs[i];
  size_t len = mh->msg_len;
  if ((mh->msg_hdr.msg_flags & MSG_TRUNC) || len > UDP_MAX_DATAGRAM) {
    u->st.dropped_truncated++;
    udp_warn(u, "dropped datagram", "larger than 65507 bytes");
    return;
  }
  struct rs_phys from;
  phys_from_sockaddr(&from, (const struct sockaddr *)&s->from[i]);
  /* Messages the stack keeps (for retransmission, say) keep the buffer their payload lives in.
   * A small datagram is therefore copied into a buffer of its own size, so that it never pins
   * a 64 KiB slot: what is kept costs at most twice its size. */
  if (len < UDP_SLOT_SIZE / 2) {
    struct rs_buf *b = rs_buf_new(len);
    if (!b) {
      udp_warn(u, "receive", "out of memory");
      return;
    }
    memcpy(b->data, s->slot[i]->data, len);
    tp_receive(&u->tp, b, 0, len, &from);
    rs_buf_unref(b);
    return;
  }
  tp_receive(&u->tp, s->slot[i], 0, len, &from);
  /* Messages still referencing the buffer keep it; the slot gets a fresh one next time. */
  if (atomic_load_explicit(&s->slot[i]->refs, memory_order_acquire) > 1) {
    rs_buf_unref(s->slot[i]);
    s->slot[i] = NULL;
  }
}

/* Reads batches until the socket is empty (or the per-event budget is spent). */
static void drain(struct udp *u, struct udp_sock *s) {
  for (int round = 0; round < UDP_READS_PER_EVENT && s->fd >= 0; round++) {
    if (!prepare_batch(s)) {
      udp_warn(u, "receive", "out of memory");
      return;
    }
    int n = recvmmsg(s->fd, s->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        u->st.recv_errors++;
        udp_warn(u, "recvmmsg", strerror(errno));
      }
      return;
    }
    for (int i = 0; i < n && s->fd >= 0; i++) deliver(u, s, (size_t)i);
    if (n < UDP_BATCH) return;
  }
}

static void on_writable(struct udp *u) {
  u->want_write = false;
  u->tp.base.rt->ops->io_set(u->ucast.io, RS_IO_READ);
  tp_writable(&u->tp);
}

static void on_ucast(struct rs_io *io, int revents) {
  struct udp *u = rs_io_arg(io);
  if ((revents & RS_IO_WRITE) && u->want_write) on_writable(u);
  if (revents & RS_IO_READ) drain(u, &u->ucast);
}

static void on_mcast(struct rs_io *io, int revents) {
  struct udp *u = rs_io_arg(io);
  if (revents & RS_IO_READ) drain(u, &u->mcast);
}

/* ---- sending -------------------------------------------------------------------------------- */

static int udp_send(struct rs_tp *tp, const struct rs_phys *dest, const uint8_t *frame,
                    size_t len) {
  struct udp *u = (struct udp *)tp;
  if (len > UDP_MAX_DATAGRAM) {
    u->st.send_too_big++;
    return RS_ETOOBIG;
  }
  struct sockaddr_storage ss;
  socklen_t sl = phys_to_sockaddr(dest ? dest : &u->group, &ss);
  if (sl == 0) return RS_EINVAL;
  for (;;) {
    if (sendto(u->ucast.fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ss,
               sl) >= 0)
      return 0;
    if (errno == EINTR) continue;
    break;
  }
  /* ENOBUFS: a full device queue; like EAGAIN, worth retrying when the socket drains. */
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
    if (!u->want_write) {
      u->want_write = true;
      tp->base.rt->ops->io_set(u->ucast.io, RS_IO_READ | RS_IO_WRITE);
    }
    return RS_EAGAIN;
  }
  u->st.send_errors++;
  char a[RS_PHYS_STRLEN], what[96];
  snprintf(what, sizeof(what), "sendto %s", phys_format(dest ? dest : &u->group, a, sizeof(a)));
  udp_warn(u, what, strerror(errno));
  return RS_EIO;
}

/* ---- the protocol --------------------------------------------------------------------------- */

/* mcast_addr:mcast_port into u->group; false unless it is a multicast group. */
static bool parse_group(struct udp *u) {
  char text[RS_PHYS_STRLEN + 16];
  if (!u->mcast_addr) return false;
  bool v6 = strchr(u->mcast_addr, ':') != NULL;
  snprintf(text, sizeof(text), v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, u->mcast_addr,
           u->mcast_port);
  if (phys_parse(&u->group, text)) return false;
  if (u->group.family == RS_PHYS_IP4) return (u->group.ip[0] & 0xf0) == 0xe0; /* 224.0.0.0/4 */
  return u->group.ip[0] == 0xff;                                             /* ff00::/8 */
}

static int udp_init(struct rs_protocol *p) {
  struct udp *u = (struct udp *)p;
  u->tp.tops = u->ip_mcast ? &udp_mcast_ops : &udp_ucast_ops;
  sock_init(&u->ucast);
  sock_init(&u->mcast);
  if (u->ip_mcast && !parse_group(u))
    return proto_error(p, "mcast_addr '%s' is not a multicast address",
                       u->mcast_addr ? u->mcast_addr : "");
  return tp_init(p);
}

static void udp_stats(struct rs_protocol *p, struct rs_stats_printer *out) {
  struct udp *u = (struct udp *)p;
  tp_stats(p, out);
  out->line(out, "udp_dropped_truncated", "%" PRIu64, u->st.dropped_truncated);
  out->line(out, "udp_recv_errors", "%" PRIu64, u->st.recv_errors);
  out->line(out, "udp_send_errors", "%" PRIu64, u->st.send_errors);
  out->line(out, "udp_send_too_big", "%" PRIu64, u->st.send_too_big);
}

#define UDP_IGNORED(n, why) {n, RS_ATTR_IGNORED, 0, NULL, 0, 0, why, 0, NULL}

static const struct rs_attr udp_attrs[] = {
    TP_ATTRS(struct udp),
    {"mcast_addr", RS_ATTR_STRING, offsetof(struct udp, mcast_addr), "239.8.8.8", 0, 0,
     "IP multicast group (IPv4 239.x or IPv6 ff0x::); multicasts leave through the bind "
     "interface only", 0, NULL},
    {"mcast_port", RS_ATTR_INT, offsetof(struct udp, mcast_port), "45588", 1, 65535,
     "port of the multicast group", 0, NULL},
    {"ip_mcast", RS_ATTR_BOOL, offsetof(struct udp, ip_mcast), "true", 0, 0,
     "send group messages as one IP multicast; false: one unicast per member (table and peers)",
     0, NULL},
    {"ip_ttl", RS_ATTR_INT, offsetof(struct udp, ip_ttl), "1", 0, 255,
     "multicast time to live: 0 stays on this host, 1 on the local network", 0, NULL},
    {"tos", RS_ATTR_INT, offsetof(struct udp, tos), "0", 0, 255,
     "IP type of service / traffic class of outgoing datagrams", 0, NULL},
    {"mcast_recv_buf_size", RS_ATTR_SIZE, offsetof(struct udp, mcast_recv_buf_size), "5M", 0,
     1073741824, "SO_RCVBUF of the multicast socket (capped by net.core.rmem_max)", 0, NULL},
    {"mcast_send_buf_size", RS_ATTR_SIZE, offsetof(struct udp, mcast_send_buf_size), "6554100",
     0, 1073741824, "SO_SNDBUF for multicasts (the unicast socket sends them)", 0, NULL},
    {"ucast_recv_buf_size", RS_ATTR_SIZE, offsetof(struct udp, ucast_recv_buf_size), "5M", 0,
     1073741824, "SO_RCVBUF of the unicast socket (capped by net.core.rmem_max)", 0, NULL},
    {"ucast_send_buf_size", RS_ATTR_SIZE, offsetof(struct udp, ucast_send_buf_size), "200000", 0,
     1073741824, "SO_SNDBUF of the unicast socket (capped by net.core.wmem_max)", 0, NULL},
    UDP_IGNORED("unicast_receiver_threads", "sockets are read on the loop thread"),
    UDP_IGNORED("multicast_receiver_threads", "sockets are read on the loop thread"),
    UDP_IGNORED("disable_loopback", "own multicasts are always delivered by the transport"),
    UDP_IGNORED("suppress_time_out_of_buffer_space", "send errors are rate-limited"),
    RS_ATTR_END,
};

const struct rs_protocol_ops udp_protocol = {
    .name = "UDP",
    .id = 16,
    .flags = RS_PROTO_TRANSPORT,
    .size = sizeof(struct udp),
    .description = "UDP transport: unicast datagrams and IP multicast",
    .attrs = udp_attrs,
    .init = udp_init,
    .start = tp_start,
    .stop = tp_stop,
    .destroy = tp_destroy,
    .down_msg = tp_down_msg,
    .down_event = tp_down_event,
    .stats = udp_stats,
};

/* The diagnostics handler: answers `raftstack probe` with the member's address, view and stats. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stack/view.h"
#include "transport/bindaddr.h"
#include "transport/tp.h"

/*
 * Every stack with diag.enabled listens on the UDP multicast group diag.mcast_addr:diag.port,
 * joined on the interface of its bind address (127.0.0.1 by default), as JGroups' diagnostics
 * handler does. A request is one datagram of text:
 *
 *     RSPROBE 1 <cluster or *>\n
 *
 * Members of that cluster (or all, for *) answer the sender with one datagram of lines
 * "key=value": member, address, cluster, physical, view, then PROTOCOL.stat=value for every
 * protocol with statistics. Anything else on the port is counted and ignored.
 */

#define PROBE_MAGIC "RSPROBE 1 "
#define REPLY_MAX 65000

struct reply {
  struct rs_stats_printer printer;
  char *buf;
  size_t len;
  const char *proto;
};

static void add(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct reply *r, const char *fmt, ...) {
  if (r->len >= REPLY_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(r->buf + r->len, REPLY_MAX - r->len, fmt, ap);
  va_end(ap);
  if (n > 0) r->len += (size_t)n < REPLY_MAX - r->len ? (size_t)n : REPLY_MAX - r->len - 1;
}

static void stat_line(struct rs_stats_printer *out, const char *name, const char *fmt, ...) {
  struct reply *r = (struct reply *)out;
  char value[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof(value), fmt, ap);
  va_end(ap);
  add(r, "%s.%s=%s\n", r->proto, name, value);
}

static void build_reply(struct rs_tp *tp, struct reply *r) {
  struct rs_stack *st = tp->base.stack;
  char a[RS_ADDR_STRLEN], ph[RS_PHYS_STRLEN], view[2048] = "none";
  if (tp->view) view_format(tp->view, view, sizeof(view));
  add(r, "member=%s\naddress=%s\ncluster=%s\nphysical=%s\nview=%s\n", st->name,
      rs_addr_format(&st->local_addr, a), st->cluster, phys_format(&tp->local_phys, ph, sizeof(ph)),
      view);
  r->printer.line = stat_line;
  for (struct rs_protocol *p = st->bottom; p; p = p->up) {
    if (!p->ops->stats) continue;
    r->proto = p->ops->name;
    p->ops->stats(p, &r->printer);
  }
}

static void on_request(struct rs_io *io, int revents) {
  struct rs_tp *tp = rs_io_arg(io);
  for (int i = 0; i < 16; i++) {
    char req[512];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(tp->diag_fd, req, sizeof(req) - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    if (n < 0) return;
    req[n] = '\0';
    size_t ml = strlen(PROBE_MAGIC);
    char *cluster = req + ml;
    cluster[strcspn(cluster, "\r\n")] = '\0';
    if ((size_t)n < ml || memcmp(req, PROBE_MAGIC, ml)) {
      tp->stats.diag_bad_requests++;
      continue;
    }
    if (strcmp(cluster, "*") && strcmp(cluster, tp->base.stack->cluster)) continue;
    struct reply r = {.buf = malloc(REPLY_MAX)};
    if (!r.buf) return;
    build_reply(tp, &r);
    sendto(tp->diag_fd, r.buf, r.len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&from, fl);
    tp->stats.diag_requests++;
    free(r.buf);
  }
}

int diag_open(struct rs_tp *tp) {
  tp->diag_fd = -1;
  struct rs_runtime *rt = tp->base.rt;
  if (!tp->diag_enabled || !rt->ops->io_new) return 0;
  struct in_addr group, iface;
  if (inet_pton(AF_INET, tp->diag_mcast_addr, &group) != 1 || !IN_MULTICAST(ntohl(group.s_addr)))
    return proto_error(&tp->base, "diag.mcast_addr '%s' is not an IPv4 multicast address", tp->diag_mcast_addr);
  /* The interface: the transport's IPv4 bind address, or 127.0.0.1 (LOOPBACK, IPv6 binds). */
  iface.s_addr = htonl(INADDR_LOOPBACK);
  if (tp->local_phys.family == RS_PHYS_IP4) memcpy(&iface, tp->local_phys.ip, 4);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return proto_error(&tp->base, "diag socket: %s", strerror(errno));
  int one = 1;
  unsigned char ttl = (unsigned char)tp->diag_ttl;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tp->diag_port), .sin_addr = group};
  struct ip_mreq mreq = {.imr_multiaddr = group, .imr_interface = iface};
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
      bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
      setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) ||
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl)) ||
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &iface, sizeof(iface))) {
    /* Diagnostics are optional: a host without multicast still runs the stack. */
    PLOG(&tp->base, WARN, "diagnostics disabled: %s", strerror(errno));
    close(fd);
    return 0;
  }
  tp->diag_io = rt->ops->io_new(rt, fd, on_request, tp);
  if (!tp->diag_io) {
    close(fd);
    return RS_ENOMEM;
  }
  tp->diag_fd = fd;
  rt->ops->io_set(tp->diag_io, RS_IO_READ);
  return 0;
}

void diag_close(struct rs_tp *tp) {
  if (tp->diag_io) tp->base.rt->ops->io_free(tp->diag_io);
  if (tp->diag_fd >= 0) close(tp->diag_fd);
  tp->diag_io = NULL;
  tp->diag_fd = -1;
}

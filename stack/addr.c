/* Addresses: UUID text form, physical address conversions and wire form. */
#include "stack/addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/runtime.h"

char *rs_addr_format(const struct rs_addr *a, char *buf) {
  snprintf(buf, RS_ADDR_STRLEN, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a->hi >> 32),
           (unsigned)((a->hi >> 16) & 0xffff), (unsigned)(a->hi & 0xffff),
           (unsigned)(a->lo >> 48), (unsigned long long)(a->lo & 0xffffffffffffULL));
  return buf;
}

int addr_parse(struct rs_addr *a, const char *s) {
  unsigned long long v[5];
  int lens[5] = {8, 4, 4, 4, 12};
  const char *p = s;
  for (int i = 0; i < 5; i++) {
    char *end;
    for (int k = 0; k < lens[i]; k++)
      if (!strchr("0123456789abcdefABCDEF", p[k]) || !p[k]) return RS_EINVAL;
    char tmp[13];
    memcpy(tmp, p, (size_t)lens[i]);
    tmp[lens[i]] = '\0';
    v[i] = strtoull(tmp, &end, 16);
    p += lens[i];
    if (i < 4 && *p++ != '-') return RS_EINVAL;
  }
  if (*p) return RS_EINVAL;
  a->hi = (v[0] << 32) | (v[1] << 16) | v[2];
  a->lo = (v[3] << 48) | v[4];
  return 0;
}

struct rs_addr addr_random(struct rs_runtime *rt) {
  struct rs_addr a;
  do {
    a.hi = rs_random(rt);
    a.lo = rs_random(rt);
    a.hi = (a.hi & ~0xf000ULL) | 0x4000ULL;                      /* version 4 */
    a.lo = (a.lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL; /* variant 10 */
  } while (rs_addr_is_null(&a));
  return a;
}

bool phys_eq(const struct rs_phys *a, const struct rs_phys *b) {
  if (a->family != b->family || a->port != b->port) return false;
  switch (a->family) {
  case RS_PHYS_IP4: return memcmp(a->ip, b->ip, 4) == 0;
  case RS_PHYS_IP6: return memcmp(a->ip, b->ip, 16) == 0;
  default: return true;
  }
}

char *phys_format(const struct rs_phys *p, char *buf, size_t len) {
  char ip[INET6_ADDRSTRLEN];
  switch (p->family) {
  case RS_PHYS_LOOP: snprintf(buf, len, "loop:%u", p->port); break;
  case RS_PHYS_IP4:
    inet_ntop(AF_INET, p->ip, ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, p->port);
    break;
  case RS_PHYS_IP6:
    inet_ntop(AF_INET6, p->ip, ip, sizeof(ip));
    snprintf(buf, len, "[%s]:%u", ip, p->port);
    break;
  default: snprintf(buf, len, "none"); break;
  }
  return buf;
}

void phys_from_sockaddr(struct rs_phys *p, const struct sockaddr *sa) {
  memset(p, 0, sizeof(*p));
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    p->family = RS_PHYS_IP4;
    memcpy(p->ip, &in->sin_addr, 4);
    p->port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    p->family = RS_PHYS_IP6;
    memcpy(p->ip, &in6->sin6_addr, 16);
    p->port = ntohs(in6->sin6_port);
  }
}

socklen_t phys_to_sockaddr(const struct rs_phys *p, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (p->family == RS_PHYS_IP4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(p->port);
    memcpy(&in->sin_addr, p->ip, 4);
    return sizeof(*in);
  }
  if (p->family == RS_PHYS_IP6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(p->port);
    memcpy(&in6->sin6_addr, p->ip, 16);
    return sizeof(*in6);
  }
  return 0;
}

int phys_parse(struct rs_phys *p, const char *s) {
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon;
  memset(p, 0, sizeof(*p));
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) return RS_EINVAL;
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host)) return RS_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
  }
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (!colon[1] || *end || port > 65535) return RS_EINVAL;
  p->port = (uint16_t)port;
  if (inet_pton(AF_INET, host, p->ip) == 1) p->family = RS_PHYS_IP4;
  else if (inet_pton(AF_INET6, host, p->ip) == 1) p->family = RS_PHYS_IP6;
  else return RS_EINVAL;
  return 0;
}

void put_phys(struct rs_writer *w, const struct rs_phys *p) {
  put_u8(w, p->family);
  switch (p->family) {
  case RS_PHYS_IP4: put_bytes(w, p->ip, 4); break;
  case RS_PHYS_IP6: put_bytes(w, p->ip, 16); break;
  default: break;
  }
  if (p->family != RS_PHYS_NONE) put_u16(w, p->port);
}

struct rs_phys get_phys(struct rs_reader *r) {
  struct rs_phys p;
  memset(&p, 0, sizeof(p));
  p.family = get_u8(r);
  const uint8_t *q;
  switch (p.family) {
  case RS_PHYS_NONE: return p;
  case RS_PHYS_LOOP: break;
  case RS_PHYS_IP4:
    if ((q = get_bytes(r, 4))) memcpy(p.ip, q, 4);
    break;
  case RS_PHYS_IP6:
    if ((q = get_bytes(r, 16))) memcpy(p.ip, q, 16);
    break;
  default: reader_fail(r, RS_EMALFORMED); return p;
  }
  p.port = get_u16(r);
  return p;
}

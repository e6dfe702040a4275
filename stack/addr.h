/* Addresses: logical UUIDs (public rs_addr) and physical transport addresses. */
#ifndef RS_STACK_ADDR_H
#define RS_STACK_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <raftstack/types.h>

#include "stack/codec.h"

/* A physical address: IPv4/IPv6 + port, or an in-process LOOPBACK endpoint id. */
enum rs_phys_family { RS_PHYS_NONE = 0, RS_PHYS_LOOP = 1, RS_PHYS_IP4 = 4, RS_PHYS_IP6 = 6 };

struct rs_phys {
  uint8_t family;
  uint16_t port; /* the endpoint id for LOOP */
  uint8_t ip[16];
};

#define RS_PHYS_STRLEN 56

bool phys_eq(const struct rs_phys *a, const struct rs_phys *b);
/* "127.0.0.1:7800", "[::1]:7800", "loop:3". Returns buf. */
char *phys_format(const struct rs_phys *p, char *buf, size_t len);
void phys_from_sockaddr(struct rs_phys *p, const struct sockaddr *sa);
/* Fills ss from p; returns the sockaddr length (0 for non-IP). */
socklen_t phys_to_sockaddr(const struct rs_phys *p, struct sockaddr_storage *ss);
/* "host:port" or "[v6]:port" with a numeric address. 0 or RS_EINVAL. */
int phys_parse(struct rs_phys *p, const char *s);

/* Wire form: u8 family; LOOP: u16 id; IP4: 4 bytes + u16 port; IP6: 16 bytes + u16 port. */
void put_phys(struct rs_writer *w, const struct rs_phys *p);
struct rs_phys get_phys(struct rs_reader *r);

/* A version-4 UUID from the runtime's random source. */
struct rs_runtime;
struct rs_addr addr_random(struct rs_runtime *rt);
/* Parses the canonical text form. 0 or RS_EINVAL. */
int addr_parse(struct rs_addr *a, const char *s);

#endif

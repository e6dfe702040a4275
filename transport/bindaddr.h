/* bind_addr resolution: literal addresses, host names, JGroups' symbolic values and match rules. */
#ifndef RS_TRANSPORT_BINDADDR_H
#define RS_TRANSPORT_BINDADDR_H

#include <stddef.h>

#include "stack/addr.h"

/*
 * Resolves a bind_addr spec to one address of this host (out->port is left 0). A spec is a comma
 * list of items; the first item that resolves on this host wins. An item is:
 *   - a literal address ("127.0.0.1", "::1", "0.0.0.0" for all interfaces),
 *   - a host name (getaddrinfo; the first of its addresses that belongs to this host),
 *   - GLOBAL, SITE_LOCAL, LINK_LOCAL, NON_LOOPBACK or LOOPBACK (case-insensitive), as in JGroups,
 *   - match-interface:RE, match-host:RE or match-address:RE: the first address of an interface
 *     that is up whose name / reverse-resolved host name / address text matches the POSIX
 *     extended regular expression RE entirely (Java's String.matches semantics).
 * family_pref: AF_INET, AF_INET6, or AF_UNSPEC (IPv4 preferred, IPv6 if no IPv4 address fits).
 * Returns 0, RS_EINVAL (the spec is malformed: empty item, bad regular expression) or
 * RS_ENOTFOUND (nothing resolves); on error err receives one line such as
 * "bind_addr 'match-interface:eth9': no interface matches".
 */
int bindaddr_resolve(const char *spec, int family_pref, struct rs_phys *out, char *err,
                     size_t errlen);

/* The index of the interface that holds addr (for IPv6 multicast), or 0 when none does. */
unsigned bindaddr_ifindex(const struct rs_phys *addr);

/* True for the loopback addresses 127.0.0.0/8 and ::1. */
bool bindaddr_is_loopback(const struct rs_phys *addr);

#endif

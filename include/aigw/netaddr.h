/* SPDX-License-Identifier: MIT */
#pragma once

/* Client addresses: the [server] trusted_proxies list, and which address a
 * request comes from when it arrives through those proxies.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are IPv4 everywhere here:
 * a dual-stack socket reports IPv4 clients that way, and "10.0.0.0/8" must
 * match them. */

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#define AIGW_NETADDR_MAX 1024    /* entries in one list */
#define AIGW_XFF_MAX_ENTRIES 32  /* X-Forwarded-For entries examined */
#define AIGW_ADDRSTRLEN 46       /* INET6_ADDRSTRLEN: any formatted address, with its NUL */

struct aigw_netaddr_list;

/* Parse addresses and CIDR prefixes separated by blanks or commas, e.g.
 * "127.0.0.1/32 ::1 10.0.0.0/8". An address alone means a single host. A
 * prefix with bits set past its length ("10.0.0.1/8") is refused as a
 * likely typo. NULL or "" gives an empty list. On failure returns -EINVAL
 * with "trusted_proxies: ..." in errbuf (if errbuf != NULL and errlen > 0),
 * or -ENOMEM. */
int aigw_netaddr_list_parse(const char *s, struct aigw_netaddr_list **ret, char *errbuf,
                            size_t errlen);

void aigw_netaddr_list_free(struct aigw_netaddr_list *l);

size_t aigw_netaddr_list_count(const struct aigw_netaddr_list *l);

/* Whether sa (AF_INET or AF_INET6; port ignored) is in the list. False for
 * a NULL list, a NULL sa or another family. */
bool aigw_netaddr_match(const struct aigw_netaddr_list *l, const struct sockaddr *sa);

/* Canonical text (inet_ntop; mapped IPv6 as IPv4) of sa's address, without
 * the port. Returns -EAFNOSUPPORT for families other than AF_INET and
 * AF_INET6, -ENOBUFS if buflen is too small (AIGW_ADDRSTRLEN always fits),
 * -EINVAL for NULL arguments. */
int aigw_netaddr_format(const struct sockaddr *sa, char *ret_buf, size_t buflen);

/* The address a request comes from, formatted as by aigw_netaddr_format():
 * the peer, unless the peer is in trusted; then X-Forwarded-For (xff, not
 * NUL-terminated; NULL if absent; several headers joined with ",") is read
 * from the right, skipping trusted addresses, and the first untrusted one is
 * the client. If every examined entry is trusted, the leftmost examined is.
 * Entries may be "a.b.c.d", "a.b.c.d:port", an IPv6 address, "[v6]" or
 * "[v6]:port". A malformed entry (including an empty one) stops the walk:
 * the last address read before it is used, since everything left of it
 * could have been written by anyone. At most AIGW_XFF_MAX_ENTRIES entries
 * are examined, and an entry longer than a valid one could be (with up to
 * 64 blanks around it) is malformed, so the work does not grow with xff_len.
 * Errors as for aigw_netaddr_format() (a unix-socket peer is -EAFNOSUPPORT:
 * the caller decides what to call it). */
int aigw_client_address(const struct sockaddr *peer, const char *xff, size_t xff_len,
                        const struct aigw_netaddr_list *trusted, char *ret_buf, size_t buflen);

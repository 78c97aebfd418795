/* SPDX-License-Identifier: MIT */
#include "aigw/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/macro.h"

/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" is 49 characters. */
#define ENTRY_MAX 49
/* "[" + the longest IPv6 text + "]:65535" */
#define XFF_ENTRY_MAX (1 + (AIGW_ADDRSTRLEN - 1) + 7)
/* An entry plus generous blanks around it. */
#define XFF_SCAN_MAX (XFF_ENTRY_MAX + 64)

struct ip {
    int family;     /* AF_INET (address in a[0..3]) or AF_INET6 */
    uint8_t a[16];
};

struct prefix {
    struct ip ip;
    unsigned bits;
};

struct aigw_netaddr_list {
    size_t n;
    struct prefix p[];
};

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d becomes a.b.c.d. */
static void ip_unmap(struct ip *ip) {
    if (ip->family == AF_INET6 && memcmp(ip->a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
        memmove(ip->a, ip->a + 12, 4);
        memset(ip->a + 4, 0, 12);
        ip->family = AF_INET;
    }
}

static unsigned ip_bits(const struct ip *ip) {
    return ip->family == AF_INET ? 32 : 128;
}

/* Whether the first `bits` bits of a and b agree. */
static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned bits) {
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[whole] ^ b[whole]) & mask) == 0;
}

static bool host_bits_clear(const struct ip *ip, unsigned bits) {
    unsigned total = ip_bits(ip);
    for (unsigned i = bits; i < total; i++)
        if (ip->a[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

static bool list_match_ip(const struct aigw_netaddr_list *l, const struct ip *ip) {
    for (size_t i = 0; i < l->n; i++)
        if (l->p[i].ip.family == ip->family && bits_equal(l->p[i].ip.a, ip->a, l->p[i].bits))
            return true;
    return false;
}

static int sockaddr_to_ip(const struct sockaddr *sa, struct ip *ret) {
    struct ip ip = {};
    if (!sa)
        return -EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ip.family = AF_INET;
        memcpy(ip.a, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ip.family = AF_INET6;
        memcpy(ip.a, &in6->sin6_addr, 16);
        ip_unmap(&ip);
    } else {
        return -EAFNOSUPPORT;
    }
    *ret = ip;
    return 0;
}

/* s is NUL-terminated; plain addresses only, no brackets or ports. */
static bool parse_ip(const char *s, struct ip *ret) {
    struct ip ip = {};
    if (inet_pton(AF_INET, s, ip.a) == 1) {
        ip.family = AF_INET;
    } else if (inet_pton(AF_INET6, s, ip.a) == 1) {
        ip.family = AF_INET6;
    } else {
        return false;
    }
    *ret = ip;
    return true;
}

static bool parse_decimal(const char *s, size_t len, unsigned max, unsigned *ret) {
    unsigned v = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *ret = v;
    return true;
}

_printf_(3, 4) static void set_error(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!errbuf || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static bool is_separator(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',';
}

void aigw_netaddr_list_free(struct aigw_netaddr_list *l) {
    free(l);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_netaddr_list *, aigw_netaddr_list_free);

size_t aigw_netaddr_list_count(const struct aigw_netaddr_list *l) {
    return l ? l->n : 0;
}

/* tok: NUL-terminated, printable (the caller checked), at most ENTRY_MAX. */
static int parse_prefix(char *tok, struct prefix *ret, char *errbuf, size_t errlen) {
    char shown[ENTRY_MAX + 1];
    struct prefix p = {};
    char *slash;
    unsigned bits;

    snprintf(shown, sizeof(shown), "%s", tok);
    slash = strchr(tok, '/');
    if (slash)
        *slash = '\0';

    if (!parse_ip(tok, &p.ip)) {
        set_error(errbuf, errlen,
                  "trusted_proxies: \"%s\" is not an IPv4/IPv6 address or CIDR prefix", shown);
        return -EINVAL;
    }
    bits = ip_bits(&p.ip);
    if (slash && !parse_decimal(slash + 1, strlen(slash + 1), bits, &bits)) {
        set_error(errbuf, errlen, "trusted_proxies: \"%s\": prefix length must be 0-%u", shown,
                  ip_bits(&p.ip));
        return -EINVAL;
    }
    if (!host_bits_clear(&p.ip, bits)) {
        set_error(errbuf, errlen, "trusted_proxies: \"%s\": address has bits set past the /%u",
                  shown, bits);
        return -EINVAL;
    }
    p.bits = bits;

    /* A prefix inside ::ffff:0:0/96 is an IPv4 prefix, since matching sees
     * mapped addresses as IPv4. A shorter one covers more than the mapped
     * range and stays IPv6. */
    if (p.ip.family == AF_INET6 && p.bits >= 96 &&
        memcmp(p.ip.a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
        ip_unmap(&p.ip);
        p.bits -= 96;
    }

    *ret = p;
    return 0;
}

int aigw_netaddr_list_parse(const char *s, struct aigw_netaddr_list **ret, char *errbuf,
                            size_t errlen) {
    _cleanup_(aigw_netaddr_list_freep) struct aigw_netaddr_list *l = NULL;
    size_t n = 0, idx = 0;
    const char *p;

    if (!ret) {
        set_error(errbuf, errlen, "trusted_proxies: invalid arguments");
        return -EINVAL;
    }
    if (!s)
        s = "";

    /* Count first, so the list is one allocation of the right size. */
    for (p = s; *p;) {
        while (*p && is_separator(*p))
            p++;
        if (!*p)
            break;
        n++;
        while (*p && !is_separator(*p))
            p++;
    }
    if (n > AIGW_NETADDR_MAX) {
        set_error(errbuf, errlen, "trusted_proxies: too many entries (max %d)", AIGW_NETADDR_MAX);
        return -EINVAL;
    }

    l = calloc(1, sizeof(*l) + n * sizeof(l->p[0]));
    if (!l) {
        set_error(errbuf, errlen, "trusted_proxies: out of memory");
        return -ENOMEM;
    }

    for (p = s; *p;) {
        char tok[ENTRY_MAX + 1];
        size_t len = 0;

        while (*p && is_separator(*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !is_separator(*p))
            p++;
        len = (size_t)(p - start);
        idx++;

        bool printable = true;
        for (size_t i = 0; i < len && printable; i++)
            printable = start[i] > 0x20 && start[i] < 0x7f && start[i] != '"';
        if (len > ENTRY_MAX || !printable) {
            set_error(errbuf, errlen,
                      "trusted_proxies: entry %zu is not an IPv4/IPv6 address or CIDR prefix",
                      idx);
            return -EINVAL;
        }
        memcpy(tok, start, len);
        tok[len] = '\0';

        int r = parse_prefix(tok, &l->p[l->n], errbuf, errlen);
        if (r < 0)
            return r;
        l->n++;
    }

    *ret = TAKE_PTR(l);
    return 0;
}

bool aigw_netaddr_match(const struct aigw_netaddr_list *l, const struct sockaddr *sa) {
    struct ip ip;
    if (!l || sockaddr_to_ip(sa, &ip) < 0)
        return false;
    return list_match_ip(l, &ip);
}

static int format_ip(const struct ip *ip, char *ret_buf, size_t buflen) {
    char text[AIGW_ADDRSTRLEN];
    size_t len;

    if (!inet_ntop(ip->family, ip->a, text, sizeof(text)))
        return negative_errno();
    len = strlen(text);
    if (!ret_buf || buflen < len + 1)
        return -ENOBUFS;
    memcpy(ret_buf, text, len + 1);
    return 0;
}

int aigw_netaddr_format(const struct sockaddr *sa, char *ret_buf, size_t buflen) {
    struct ip ip;
    int r;

    if (!sa || !ret_buf)
        return -EINVAL;
    r = sockaddr_to_ip(sa, &ip);
    if (r < 0)
        return r;
    return format_ip(&ip, ret_buf, buflen);
}

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* One X-Forwarded-For element, trimmed. Accepts "v4", "v4:port", "v6",
 * "[v6]" and "[v6]:port". */
static bool parse_xff_entry(const char *s, size_t len, struct ip *ret) {
    char buf[XFF_ENTRY_MAX + 1];
    struct ip ip;
    unsigned port;

    while (len > 0 && is_ows(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_ows(s[len - 1]))
        len--;
    if (len == 0 || len > XFF_ENTRY_MAX || memchr(s, '\0', len))
        return false;

    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        size_t alen = (size_t)(close - s - 1), rest = len - alen - 2;
        if (rest > 0 && (close[1] != ':' || !parse_decimal(close + 2, rest - 1, 65535, &port)))
            return false;
        memcpy(buf, s + 1, alen);
        buf[alen] = '\0';
        if (!parse_ip(buf, &ip) || ip.family != AF_INET6)
            return false;
    } else {
        const char *colon = memchr(s, ':', len);
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (colon && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) == NULL) {
            /* exactly one colon: IPv4 with a port */
            size_t alen = (size_t)(colon - s);
            if (!parse_decimal(colon + 1, len - alen - 1, 65535, &port))
                return false;
            buf[alen] = '\0';
            if (!parse_ip(buf, &ip) || ip.family != AF_INET)
                return false;
        } else if (!parse_ip(buf, &ip)) {
            return false;
        }
    }

    ip_unmap(&ip);
    *ret = ip;
    return true;
}

int aigw_client_address(const struct sockaddr *peer, const char *xff, size_t xff_len,
                        const struct aigw_netaddr_list *trusted, char *ret_buf, size_t buflen) {
    struct ip client;
    int r;

    if (!peer || !ret_buf)
        return -EINVAL;
    r = sockaddr_to_ip(peer, &client);
    if (r < 0)
        return r;

    if (trusted && xff && list_match_ip(trusted, &client)) {
        const char *end = xff + xff_len;
        for (unsigned i = 0; i < AIGW_XFF_MAX_ENTRIES; i++) {
            const char *comma = NULL, *start, *c;
            struct ip ip;

            /* Look back no further than the longest valid entry could
             * reach, so a huge header costs no more than a short one. */
            for (c = end; c > xff && end - c <= XFF_SCAN_MAX; c--)
                if (c[-1] == ',') {
                    comma = c - 1;
                    break;
                }
            if (!comma && c > xff)
                break;
            start = comma ? comma + 1 : xff;

            if (!parse_xff_entry(start, (size_t)(end - start), &ip))
                break;
            client = ip;
            if (!list_match_ip(trusted, &ip) || !comma)
                break;
            end = comma;
        }
    }

    return format_ip(&client, ret_buf, buflen);
}

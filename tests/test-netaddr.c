/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/netaddr.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_netaddr_list *, aigw_netaddr_list_free);
#define _cleanup_list_ _cleanup_(aigw_netaddr_list_freep)

/* "1.2.3.4" → sockaddr_in, anything else with a colon → sockaddr_in6 */
static const struct sockaddr *sa_from(const char *s, struct sockaddr_storage *st) {
    memset(st, 0, sizeof(*st));
    struct sockaddr_in *in = (struct sockaddr_in *)st;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)st;
    if (inet_pton(AF_INET, s, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(12345);
    } else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(443);
    } else {
        fail_msg("bad test address %s", s);
    }
    return (const struct sockaddr *)st;
}

static struct aigw_netaddr_list *parse_ok(const char *s) {
    struct aigw_netaddr_list *l = NULL;
    char err[256] = "";
    int r = aigw_netaddr_list_parse(s, &l, err, sizeof(err));
    if (r != 0)
        fail_msg("parse \"%s\" failed (%d): %s", s, r, err);
    assert_non_null(l);
    return l;
}

static void test_parse_ok(void **state) {
    static const struct {
        const char *input;
        size_t count;
    } cases[] = {
        {"127.0.0.1/32 ::1 10.0.0.0/8", 3},
        {"", 0},
        {" ,\t,\n ", 0},
        {"192.168.1.0/24,172.16.0.0/12", 2},
        {" 0.0.0.0/0 , ::/0 ", 2},
        {"fe80::/10\t2001:db8::/32\r\n", 2},
        {"::ffff:10.0.0.0/104", 1},
        {"10.0.0.0/008", 1},
        {"1.2.3.4/32 1.2.3.4", 2},
        {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", 1},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_list_ struct aigw_netaddr_list *l = parse_ok(cases[i].input);
        assert_int_equal(aigw_netaddr_list_count(l), cases[i].count);
    }
    _cleanup_list_ struct aigw_netaddr_list *l = parse_ok(NULL);
    assert_int_equal(aigw_netaddr_list_count(l), 0);
    assert_int_equal(aigw_netaddr_list_count(NULL), 0);
    aigw_netaddr_list_free(NULL);
}

#define NOT_ADDR "is not an IPv4/IPv6 address or CIDR prefix"

static const struct {
    const char *input;
    const char *message;
} parse_errors[] = {
    {"10.0.0.1/8", "trusted_proxies: \"10.0.0.1/8\": address has bits set past the /8"},
    {"::1 192.168.1.1/31", "trusted_proxies: \"192.168.1.1/31\": address has bits set past the /31"},
    {"2001:db8::1/64", "trusted_proxies: \"2001:db8::1/64\": address has bits set past the /64"},
    {"::ffff:10.0.0.1/104",
     "trusted_proxies: \"::ffff:10.0.0.1/104\": address has bits set past the /104"},
    {"10.0.0.0/33", "trusted_proxies: \"10.0.0.0/33\": prefix length must be 0-32"},
    {"::1/129", "trusted_proxies: \"::1/129\": prefix length must be 0-128"},
    {"10.0.0.0/", "trusted_proxies: \"10.0.0.0/\": prefix length must be 0-32"},
    {"10.0.0.0/ 8", "trusted_proxies: \"10.0.0.0/\": prefix length must be 0-32"},
    {"10.0.0.0/+8", "trusted_proxies: \"10.0.0.0/+8\": prefix length must be 0-32"},
    {"10.0.0.0/-1", "trusted_proxies: \"10.0.0.0/-1\": prefix length must be 0-32"},
    {"10.0.0.0/8/8", "trusted_proxies: \"10.0.0.0/8/8\": prefix length must be 0-32"},
    {"10.0.0.0/0x8", "trusted_proxies: \"10.0.0.0/0x8\": prefix length must be 0-32"},
    {"10.0.0.0/4294967304", "trusted_proxies: \"10.0.0.0/4294967304\": prefix length must be 0-32"},
    {"localhost", "trusted_proxies: \"localhost\" " NOT_ADDR},
    {"::1 10.1", "trusted_proxies: \"10.1\" " NOT_ADDR},
    {"256.0.0.1", "trusted_proxies: \"256.0.0.1\" " NOT_ADDR},
    {"010.0.0.1", "trusted_proxies: \"010.0.0.1\" " NOT_ADDR}, /* octal or decimal? neither */
    {"1.2.3.4.5", "trusted_proxies: \"1.2.3.4.5\" " NOT_ADDR},
    {"1.2.3.4:80", "trusted_proxies: \"1.2.3.4:80\" " NOT_ADDR},
    {"[::1]", "trusted_proxies: \"[::1]\" " NOT_ADDR},
    {"fe80::1%eth0", "trusted_proxies: \"fe80::1%eth0\" " NOT_ADDR},
    {"/8", "trusted_proxies: \"/8\" " NOT_ADDR},
    {"1.2.3.4;5.6.7.8", "trusted_proxies: \"1.2.3.4;5.6.7.8\" " NOT_ADDR},
    /* not echoed: quotes, control bytes, too long */
    {"\"10.0.0.1\"", "trusted_proxies: entry 1 " NOT_ADDR},
    {"::1 \x01", "trusted_proxies: entry 2 " NOT_ADDR},
    {"::1 ::2 caf\xc3\xa9", "trusted_proxies: entry 3 " NOT_ADDR},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/1280", "trusted_proxies: entry 1 " NOT_ADDR},
};

static void test_parse_errors(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(parse_errors); i++) {
        struct aigw_netaddr_list *l = (struct aigw_netaddr_list *)0x1;
        char err[256] = "";
        int r = aigw_netaddr_list_parse(parse_errors[i].input, &l, err, sizeof(err));
        if (r != -EINVAL || strcmp(err, parse_errors[i].message) != 0)
            fail_msg("case %zu: r=%d err=\"%s\", expected \"%s\"", i, r, err,
                     parse_errors[i].message);
        assert_ptr_equal(l, (struct aigw_netaddr_list *)0x1);
    }
}

static void test_parse_limits(void **state) {
    const size_t per = strlen("1.1.1.1 ");
    _cleanup_free_ char *buf = malloc((AIGW_NETADDR_MAX + 1) * per + 1);
    struct aigw_netaddr_list *l = NULL;
    char err[128];

    assert_non_null(buf);
    for (size_t i = 0; i < AIGW_NETADDR_MAX + 1; i++)
        memcpy(buf + i * per, "1.1.1.1 ", per);
    buf[AIGW_NETADDR_MAX * per] = '\0';
    _cleanup_list_ struct aigw_netaddr_list *max = parse_ok(buf);
    assert_int_equal(aigw_netaddr_list_count(max), AIGW_NETADDR_MAX);

    buf[AIGW_NETADDR_MAX * per] = '1';
    buf[(AIGW_NETADDR_MAX + 1) * per] = '\0';
    assert_int_equal(aigw_netaddr_list_parse(buf, &l, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "trusted_proxies: too many entries (max 1024)");
    assert_null(l);

    /* no error buffer; bad arguments */
    assert_int_equal(aigw_netaddr_list_parse("x", &l, NULL, 0), -EINVAL);
    assert_int_equal(aigw_netaddr_list_parse("::1", NULL, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "trusted_proxies: invalid arguments");
    assert_null(l);
}

static const struct {
    const char *list;
    const char *addr;
    bool match;
} match_cases[] = {
    {"127.0.0.1/32 ::1 10.0.0.0/8", "127.0.0.1", true},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "127.0.0.2", false},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "::1", true},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "::2", false},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "10.255.255.255", true},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "11.0.0.0", false},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "9.255.255.255", false},
    /* IPv4-mapped peers are IPv4 */
    {"127.0.0.1/32 ::1 10.0.0.0/8", "::ffff:10.1.2.3", true},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "::ffff:127.0.0.1", true},
    {"127.0.0.1/32 ::1 10.0.0.0/8", "::ffff:11.1.2.3", false},
    {"::ffff:10.0.0.0/104", "10.9.8.7", true},
    {"::ffff:10.0.0.0/104", "::ffff:10.9.8.7", true},
    {"::ffff:10.0.0.0/104", "11.0.0.0", false},
    {"::ffff:0:0/96", "1.2.3.4", true},
    {"::/0", "2001:db8::1", true},
    {"::/0", "1.2.3.4", false},
    {"::/0", "::ffff:1.2.3.4", false}, /* mapped is IPv4, ::/0 is not */
    {"0.0.0.0/0", "::ffff:1.2.3.4", true},
    {"0.0.0.0/0", "::1", false},
    /* odd prefix lengths */
    {"192.168.1.128/25", "192.168.1.129", true},
    {"192.168.1.128/25", "192.168.1.255", true},
    {"192.168.1.128/25", "192.168.1.127", false},
    {"2001:db8::/33", "2001:db8:7fff::1", true},
    {"2001:db8::/33", "2001:db8:8000::", false},
    {"2001:db8::/32", "2001:db9::", false},
    {"fe80::/10", "febf::1", true},
    {"fe80::/10", "fec0::1", false},
    {"1.2.3.4", "1.2.3.4", true},
    {"1.2.3.4", "1.2.3.5", false},
    {"", "1.2.3.4", false},
};

static void test_match(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(match_cases); i++) {
        _cleanup_list_ struct aigw_netaddr_list *l = parse_ok(match_cases[i].list);
        struct sockaddr_storage st;
        bool m = aigw_netaddr_match(l, sa_from(match_cases[i].addr, &st));
        if (m != match_cases[i].match)
            fail_msg("case %zu: %s in \"%s\": %d", i, match_cases[i].addr, match_cases[i].list,
                     m);
    }
}

static void test_match_other(void **state) {
    _cleanup_list_ struct aigw_netaddr_list *l = parse_ok("0.0.0.0/0 ::/0");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_storage st;
    assert_false(aigw_netaddr_match(l, (struct sockaddr *)&un));
    assert_false(aigw_netaddr_match(l, NULL));
    assert_false(aigw_netaddr_match(NULL, sa_from("1.2.3.4", &st)));
    assert_true(aigw_netaddr_match(l, sa_from("1.2.3.4", &st)));
}

static void test_format(void **state) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"192.0.2.1", "192.0.2.1"},
        {"2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
        {"::ffff:1.2.3.4", "1.2.3.4"},
        {"::ffff:0102:0304", "1.2.3.4"},
        {"::1", "::1"},
        {"::", "::"},
        {"0.0.0.0", "0.0.0.0"},
    };
    struct sockaddr_storage st;
    char buf[AIGW_ADDRSTRLEN];
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        assert_int_equal(aigw_netaddr_format(sa_from(cases[i].in, &st), buf, sizeof(buf)), 0);
        assert_string_equal(buf, cases[i].out);
    }

    /* exact fit, one short */
    memcpy(buf, "untouched", 10);
    assert_int_equal(aigw_netaddr_format(sa_from("192.0.2.1", &st), buf, 9), -ENOBUFS);
    assert_string_equal(buf, "untouched");
    assert_int_equal(aigw_netaddr_format(sa_from("192.0.2.1", &st), buf, 10), 0);
    assert_string_equal(buf, "192.0.2.1");

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(aigw_netaddr_format((struct sockaddr *)&un, buf, sizeof(buf)), -EAFNOSUPPORT);
    assert_int_equal(aigw_netaddr_format(NULL, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(aigw_netaddr_format(sa_from("::1", &st), NULL, 10), -EINVAL);
}

#define TRUSTED "10.0.0.0/8 ::1 127.0.0.1"

static const struct {
    const char *peer;
    const char *xff; /* NULL: no header */
    size_t xff_len;  /* 0: strlen */
    const char *expected;
} xff_cases[] = {
    /* an untrusted peer's header is ignored */
    {"203.0.113.5", "1.2.3.4", 0, "203.0.113.5"},
    {"::ffff:203.0.113.5", "1.2.3.4", 0, "203.0.113.5"},
    {"2001:db8::5", "1.2.3.4", 0, "2001:db8::5"},
    /* trusted peer */
    {"10.0.0.1", NULL, 0, "10.0.0.1"},
    {"10.0.0.1", "", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4", 0, "1.2.3.4"},
    {"10.0.0.1", "  1.2.3.4\t ", 0, "1.2.3.4"},
    {"::1", "1.2.3.4", 0, "1.2.3.4"},
    {"::ffff:10.0.0.1", "1.2.3.4", 0, "1.2.3.4"},
    {"127.0.0.1", "2001:DB8:0::1", 0, "2001:db8::1"},
    /* spoofed entries left of the first untrusted one are ignored */
    {"10.0.0.1", "6.6.6.6, 1.2.3.4", 0, "1.2.3.4"},
    {"10.0.0.1", "6.6.6.6,1.2.3.4,10.0.0.2", 0, "1.2.3.4"},
    {"10.0.0.1", "127.0.0.1, 1.2.3.4, 10.0.0.2, 10.0.0.3", 0, "1.2.3.4"},
    /* all trusted: the leftmost */
    {"10.0.0.1", "10.0.0.3, 10.0.0.2", 0, "10.0.0.3"},
    {"10.0.0.1", "::1", 0, "::1"},
    /* malformed: stop, use the last good one */
    {"10.0.0.1", "garbage, 10.0.0.2", 0, "10.0.0.2"},
    {"10.0.0.1", "1.2.3.4, garbage", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4,,10.0.0.2", 0, "10.0.0.2"},
    {"10.0.0.1", "1.2.3.4, ", 0, "10.0.0.1"},
    {"10.0.0.1", ",", 0, "10.0.0.1"},
    {"10.0.0.1", "unknown", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4 5.6.7.8", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4/32", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4\0", 8, "10.0.0.1"},
    {"10.0.0.1", "9.9.9.9, 10.0.0.2\0", 18, "10.0.0.1"},
    {"10.0.0.1", "1.2.3", 0, "10.0.0.1"},
    {"10.0.0.1", "010.0.0.1", 0, "10.0.0.1"},
    {"10.0.0.1", "fe80::1%eth0", 0, "10.0.0.1"},
    /* ports and brackets */
    {"10.0.0.1", "1.2.3.4:8080", 0, "1.2.3.4"},
    {"10.0.0.1", "1.2.3.4:0", 0, "1.2.3.4"},
    {"10.0.0.1", "1.2.3.4:65535", 0, "1.2.3.4"},
    {"10.0.0.1", "1.2.3.4:65536", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4:", 0, "10.0.0.1"},
    {"10.0.0.1", "1.2.3.4:x", 0, "10.0.0.1"},
    {"10.0.0.1", "[2001:db8::1]:443", 0, "2001:db8::1"},
    {"10.0.0.1", "[2001:db8::1]", 0, "2001:db8::1"},
    {"10.0.0.1", "[2001:db8::1]:", 0, "10.0.0.1"},
    {"10.0.0.1", "[2001:db8::1]x", 0, "10.0.0.1"},
    {"10.0.0.1", "[2001:db8::1", 0, "10.0.0.1"},
    {"10.0.0.1", "[1.2.3.4]", 0, "10.0.0.1"},
    {"10.0.0.1", "[]", 0, "10.0.0.1"},
    {"10.0.0.1", "2001:db8::1:443", 0, "2001:db8::1:443"}, /* a valid IPv6 address */
    /* mapped entries are IPv4, so trusted ones are skipped */
    {"10.0.0.1", "::ffff:1.2.3.4", 0, "1.2.3.4"},
    {"10.0.0.1", "1.1.1.1, [::ffff:10.0.0.5]", 0, "1.1.1.1"},
    /* only xff_len bytes count */
    {"10.0.0.1", "1.2.3.4, 5.6.7.8", 7, "1.2.3.4"},
};

static void test_client_address(void **state) {
    _cleanup_list_ struct aigw_netaddr_list *trusted = parse_ok(TRUSTED);
    for (size_t i = 0; i < ELEMENTSOF(xff_cases); i++) {
        struct sockaddr_storage st;
        char buf[AIGW_ADDRSTRLEN] = "";
        const char *xff = xff_cases[i].xff;
        size_t len = xff_cases[i].xff_len ? xff_cases[i].xff_len : (xff ? strlen(xff) : 0);
        int r = aigw_client_address(sa_from(xff_cases[i].peer, &st), xff, len, trusted, buf,
                                    sizeof(buf));
        if (r != 0 || strcmp(buf, xff_cases[i].expected) != 0)
            fail_msg("case %zu: r=%d \"%s\", expected \"%s\"", i, r, buf, xff_cases[i].expected);
    }
}

static void test_client_address_bounds(void **state) {
    _cleanup_list_ struct aigw_netaddr_list *trusted = parse_ok(TRUSTED);
    struct sockaddr_storage st;
    const struct sockaddr *peer = sa_from("10.0.0.1", &st);
    char buf[AIGW_ADDRSTRLEN];
    char xff[8192];
    size_t o;

    /* 1.2.3.4 then 40 trusted: only 32 are examined, the 32nd from the
     * right (10.0.0.9) is the answer */
    o = (size_t)snprintf(xff, sizeof(xff), "1.2.3.4");
    for (int i = 1; i <= 40; i++)
        o += (size_t)snprintf(xff + o, sizeof(xff) - o, ", 10.0.0.%d", i);
    assert_int_equal(aigw_client_address(peer, xff, o, trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "10.0.0.9");

    /* 31 trusted: the 32nd entry is the untrusted one and is reached */
    o = (size_t)snprintf(xff, sizeof(xff), "6.6.6.6, 1.2.3.4");
    for (int i = 1; i <= 31; i++)
        o += (size_t)snprintf(xff + o, sizeof(xff) - o, ", 10.0.0.%d", i);
    assert_int_equal(aigw_client_address(peer, xff, o, trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1.2.3.4");

    /* a huge run of junk on the left costs nothing and changes nothing */
    memset(xff, 'x', sizeof(xff));
    memcpy(xff + sizeof(xff) - 18, ", 5.6.7.8,10.0.0.2", 18);
    assert_int_equal(aigw_client_address(peer, xff, sizeof(xff), trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "5.6.7.8");
    /* one huge entry: malformed */
    assert_int_equal(aigw_client_address(peer, xff, 4000, trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "10.0.0.1");

    /* blanks: some are fine, a run longer than any entry could need is not */
    o = (size_t)snprintf(xff, sizeof(xff), "%s%60s", "1.2.3.4", "");
    assert_int_equal(aigw_client_address(peer, xff, o, trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1.2.3.4");
    o = (size_t)snprintf(xff, sizeof(xff), "%s%200s", "1.2.3.4", "");
    assert_int_equal(aigw_client_address(peer, xff, o, trusted, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "10.0.0.1");

    /* the longest valid entry */
    static const char longest[] = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535";
    assert_int_equal(aigw_client_address(peer, longest, strlen(longest), trusted, buf,
                                         sizeof(buf)),
                     0);
    assert_string_equal(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

static void test_client_address_errors(void **state) {
    _cleanup_list_ struct aigw_netaddr_list *trusted = parse_ok(TRUSTED);
    struct sockaddr_storage st;
    char buf[AIGW_ADDRSTRLEN];

    /* no list: the peer */
    assert_int_equal(aigw_client_address(sa_from("10.0.0.1", &st), "1.2.3.4", 7, NULL, buf,
                                         sizeof(buf)),
                     0);
    assert_string_equal(buf, "10.0.0.1");

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(aigw_client_address((struct sockaddr *)&un, "1.2.3.4", 7, trusted, buf,
                                         sizeof(buf)),
                     -EAFNOSUPPORT);
    assert_int_equal(aigw_client_address(NULL, NULL, 0, trusted, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(aigw_client_address(sa_from("10.0.0.1", &st), NULL, 0, trusted, NULL, 46),
                     -EINVAL);

    /* too small for the answer (which is the XFF one, not the peer) */
    memcpy(buf, "untouched", 10);
    assert_int_equal(aigw_client_address(sa_from("10.0.0.1", &st), "2001:db8::1234", 14, trusted,
                                         buf, 14),
                     -ENOBUFS);
    assert_string_equal(buf, "untouched");
    assert_int_equal(aigw_client_address(sa_from("10.0.0.1", &st), "2001:db8::1234", 14, trusted,
                                         buf, 15),
                     0);
    assert_string_equal(buf, "2001:db8::1234");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_match_other),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_client_address),
        cmocka_unit_test(test_client_address_bounds),
        cmocka_unit_test(test_client_address_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

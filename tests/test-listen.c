/* SPDX-License-Identifier: MIT */
/* Listening sockets: address parsing, fd names, binding, and socket
 * activation through LISTEN_FDS. */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-daemon.h>

#include "aigw/listen.h"
#include "aigw/macro.h"

/* ---- listen_parse_address -------------------------------------------------------------- */

static void test_parse_valid(void **state) {
    static const struct {
        const char *s;
        int family;
        const char *addr; /* as inet_ntop writes it */
        unsigned port;
    } t[] = {
        {"127.0.0.1:5002", AF_INET, "127.0.0.1", 5002},
        {"0.0.0.0:1", AF_INET, "0.0.0.0", 1},
        {"255.255.255.255:65535", AF_INET, "255.255.255.255", 65535},
        {"10.1.2.3:080", AF_INET, "10.1.2.3", 80},
        {"*:5002", AF_INET, "0.0.0.0", 5002},
        {":5002", AF_INET, "0.0.0.0", 5002},
        {":1", AF_INET, "0.0.0.0", 1},
        {"[::1]:5002", AF_INET6, "::1", 5002},
        {"[::]:80", AF_INET6, "::", 80},
        {"[::ffff:10.0.0.1]:443", AF_INET6, "::ffff:10.0.0.1", 443},
        {"[2001:db8::1]:65535", AF_INET6, "2001:db8::1", 65535},
        {"[fe80::1:2:3:4]:9102", AF_INET6, "fe80::1:2:3:4", 9102},
        /* the longest textual form there is */
        {"[0000:0000:0000:0000:0000:ffff:255.255.255.255]:80", AF_INET6, "::ffff:255.255.255.255", 80},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xaa, sizeof(ss));
        unsigned len = 12345;
        int r = listen_parse_address(t[i].s, &ss, &len);
        if (r != 0)
            print_message("\"%s\"\n", t[i].s);
        assert_int_equal(r, 0);
        assert_int_equal(ss.ss_family, t[i].family);
        char buf[INET6_ADDRSTRLEN];
        if (t[i].family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            assert_int_equal(len, sizeof(struct sockaddr_in));
            assert_int_equal(ntohs(a->sin_port), t[i].port);
            assert_non_null(inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)));
            static const char zero[sizeof(a->sin_zero)];
            assert_memory_equal(a->sin_zero, zero, sizeof(zero));
        } else {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            assert_int_equal(len, sizeof(struct sockaddr_in6));
            assert_int_equal(ntohs(a->sin6_port), t[i].port);
            assert_int_equal(a->sin6_flowinfo, 0);
            assert_int_equal(a->sin6_scope_id, 0);
            assert_non_null(inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)));
        }
        assert_string_equal(buf, t[i].addr);
    }
}

static void test_parse_invalid(void **state) {
    static const char *const t[] = {
        "",
        ":",
        "*",
        "*:",
        "5002",
        "127.0.0.1",
        "127.0.0.1:",
        /* ports */
        "127.0.0.1:0",
        ":0",
        "*:0",
        "[::1]:0",
        "127.0.0.1:65536",
        "127.0.0.1:99999",
        "127.0.0.1:4294967376",         /* 2^32 + 80 */
        "127.0.0.1:99999999999999999999", /* overflows long */
        "127.0.0.1:-1",
        "127.0.0.1:-80",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:\t80",
        "127.0.0.1:80 ",
        "127.0.0.1:80a",
        "127.0.0.1:abc",
        "127.0.0.1:0x50",
        "127.0.0.1:8.0",
        "127.0.0.1:http",
        /* host names need DNS at start: refused */
        "localhost:80",
        "example.com:443",
        "ip6-localhost:80",
        /* malformed addresses */
        " 127.0.0.1:80",
        "127.0.0.1 :80",
        "256.1.1.1:80",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "1.2.3.4/8:80",
        "::1:80",           /* IPv6 needs brackets */
        "::1",
        "[::1]",
        "[::1]:",
        "[::1:80",
        "::1]:80",
        "[]:80",
        "[*]:80",
        "[127.0.0.1]:80",
        "[fe80::1%eth0]:80", /* scope ids are not supported */
        "[::1]]:80",
        "[[::1]:80",
        "[::g]:80",
        /* longer than any address */
        "[1111:2222:3333:4444:5555:6666:7777:8888:9999]:80",
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xaa, sizeof(ss));
        unsigned len = 12345;
        int r = listen_parse_address(t[i], &ss, &len);
        if (r != -EINVAL)
            print_message("\"%s\" gave %d\n", t[i], r);
        assert_int_equal(r, -EINVAL);
        /* untouched on failure */
        assert_int_equal(len, 12345);
        for (size_t j = 0; j < sizeof(ss); j++)
            assert_int_equal(((unsigned char *)&ss)[j], 0xaa);
    }
    struct sockaddr_storage ss;
    unsigned len;
    assert_int_equal(listen_parse_address(NULL, &ss, &len), -EINVAL);
}

static void test_role_from_name(void **state) {
    assert_int_equal(listen_role_from_name("metrics"), LISTEN_METRICS);
    static const char *const http[] = {"http", "aigw.socket", "unknown", "", "Metrics", "metrics2", " metrics", "metric"};
    for (size_t i = 0; i < ELEMENTSOF(http); i++)
        assert_int_equal(listen_role_from_name(http[i]), LISTEN_HTTP);
    assert_int_equal(listen_role_from_name(NULL), LISTEN_HTTP);
}

/* ---- binding --------------------------------------------------------------------------- */

static unsigned count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A port nothing listens on right now (the kernel's choice for port 0). */
static unsigned free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(close(fd), 0);
    return ntohs(a.sin_port);
}

static void check_listening(int fd, int family, unsigned port) {
    int v = 0;
    socklen_t l = sizeof(v);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l), 0);
    assert_int_equal(v, 1);
    assert_int_equal(sd_is_socket(fd, family, SOCK_STREAM, 1), 1);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), port); /* same offset for in6 */
}

static void clear_listen_env(void) {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

static void test_collect_bind(void **state) {
    clear_listen_env();
    unsigned before = count_fds();
    unsigned p1 = free_port(), p2 = free_port();
    char a1[64], a2[64];
    snprintf(a1, sizeof(a1), "127.0.0.1:%u", p1);
    snprintf(a2, sizeof(a2), "127.0.0.1:%u", p2);

    struct listen_set s;
    memset(&s, 0xaa, sizeof(s));
    assert_int_equal(listen_collect(a1, NULL, &s), 0);
    assert_false(s.from_systemd);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.sockets[0].role, LISTEN_HTTP);
    assert_string_equal(s.sockets[0].name, a1);
    check_listening(s.sockets[0].fd, AF_INET, p1);

    /* it accepts connections */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p1),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(close(c), 0);

    listen_set_close(&s);
    assert_null(s.sockets);
    assert_int_equal(s.n, 0);
    listen_set_close(&s); /* twice is fine */
    assert_int_equal(count_fds(), before);

    /* with a metrics listener */
    memset(&s, 0, sizeof(s));
    assert_int_equal(listen_collect(a1, a2, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.sockets[0].role, LISTEN_HTTP);
    assert_int_equal(s.sockets[1].role, LISTEN_METRICS);
    assert_string_equal(s.sockets[1].name, a2);
    check_listening(s.sockets[0].fd, AF_INET, p1);
    check_listening(s.sockets[1].fd, AF_INET, p2);
    listen_set_close(&s);
    assert_int_equal(count_fds(), before);
}

static void test_collect_bind_ipv6(void **state) {
    clear_listen_env();
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        print_message("no IPv6: skipped\n");
        skip();
    }
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (bind(probe, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(probe);
        print_message("no ::1: skipped\n");
        skip();
    }
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(probe, (struct sockaddr *)&a, &len), 0);
    unsigned port = ntohs(a.sin6_port);
    assert_int_equal(close(probe), 0);

    char addr[64];
    snprintf(addr, sizeof(addr), "[::1]:%u", port);
    struct listen_set s = {0};
    assert_int_equal(listen_collect(addr, NULL, &s), 0);
    assert_int_equal(s.n, 1);
    check_listening(s.sockets[0].fd, AF_INET6, port);
    int v6only = 0;
    socklen_t l = sizeof(v6only);
    assert_int_equal(getsockopt(s.sockets[0].fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l), 0);
    assert_int_equal(v6only, 1);
    listen_set_close(&s);
}

static void test_collect_errors(void **state) {
    clear_listen_env();
    unsigned before = count_fds();
    unsigned p1 = free_port();
    char a1[64];
    snprintf(a1, sizeof(a1), "127.0.0.1:%u", p1);

    static const struct listen_socket marker = {.fd = -42};
    struct listen_set s = {.sockets = (struct listen_socket *)&marker, .n = 77, .from_systemd = true};

    /* unparsable addresses; port 0 (any port) is not accepted either */
    assert_int_equal(listen_collect("localhost:80", NULL, &s), -EINVAL);
    assert_int_equal(listen_collect("127.0.0.1:0", NULL, &s), -EINVAL);
    assert_int_equal(listen_collect(NULL, NULL, &s), -EINVAL);
    /* a bad metrics address: the HTTP socket bound first is closed again */
    assert_int_equal(listen_collect(a1, "nonsense", &s), -EINVAL);
    assert_int_equal(count_fds(), before);
    /* ret untouched */
    assert_ptr_equal(s.sockets, &marker);
    assert_int_equal(s.n, 77);
    assert_true(s.from_systemd);

    /* the port is taken */
    int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(busy >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p1),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(busy, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(busy, 1), 0);
    assert_int_equal(listen_collect(a1, NULL, &s), -EADDRINUSE);
    /* ... as the metrics port: the HTTP socket is closed again */
    unsigned p2 = free_port();
    char a2[64];
    snprintf(a2, sizeof(a2), "127.0.0.1:%u", p2);
    assert_int_equal(listen_collect(a2, a1, &s), -EADDRINUSE);
    assert_int_equal(close(busy), 0);
    assert_int_equal(count_fds(), before);
    assert_ptr_equal(s.sockets, &marker);

    /* an address this host does not have */
    assert_int_equal(listen_collect("192.0.2.1:80", NULL, &s), -EADDRNOTAVAIL);
    assert_int_equal(count_fds(), before);
}

/* ---- socket activation ----------------------------------------------------------------- */

static int listening_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* blocking, as systemd passes them */
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* Puts fd at exactly `at` (3, 4, ...), as systemd does. */
static void place_fd(int fd, int at) {
    if (fd == at)
        return; /* the lowest free number already */
    assert_int_equal(fcntl(at, F_GETFD), -1); /* free */
    assert_int_equal(dup2(fd, at), at);
    assert_int_equal(close(fd), 0);
}

static void set_listen_env(unsigned n, const char *names) {
    char pid[32], nfds[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    snprintf(nfds, sizeof(nfds), "%u", n);
    assert_int_equal(setenv("LISTEN_PID", pid, 1), 0);
    assert_int_equal(setenv("LISTEN_FDS", nfds, 1), 0);
    if (names)
        assert_int_equal(setenv("LISTEN_FDNAMES", names, 1), 0);
    else
        unsetenv("LISTEN_FDNAMES");
}

static void assert_listen_env_gone(void) {
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_FDNAMES"));
}

static void test_collect_systemd(void **state) {
    clear_listen_env();
    /* fds 3 and 4 must be free for this test */
    if (fcntl(SD_LISTEN_FDS_START, F_GETFD) >= 0 || fcntl(SD_LISTEN_FDS_START + 1, F_GETFD) >= 0) {
        print_message("fd 3 or 4 in use: skipped\n");
        skip();
    }
    place_fd(listening_socket(), 3);
    place_fd(listening_socket(), 4);
    set_listen_env(2, "aigw.socket:metrics");

    struct listen_set s = {0};
    /* the addresses are not used: systemd's sockets win */
    assert_int_equal(listen_collect("nonsense", "nonsense", &s), 0);
    assert_true(s.from_systemd);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.sockets[0].fd, 3);
    assert_int_equal(s.sockets[0].role, LISTEN_HTTP);
    assert_string_equal(s.sockets[0].name, "aigw.socket");
    assert_int_equal(s.sockets[1].fd, 4);
    assert_int_equal(s.sockets[1].role, LISTEN_METRICS);
    assert_string_equal(s.sockets[1].name, "metrics");
    for (size_t i = 0; i < 2; i++) {
        assert_true(fcntl(s.sockets[i].fd, F_GETFL) & O_NONBLOCK); /* made non-blocking for h2o */
        assert_true(fcntl(s.sockets[i].fd, F_GETFD) & FD_CLOEXEC);
    }
    assert_listen_env_gone(); /* children do not inherit them */
    listen_set_close(&s);
    assert_int_equal(fcntl(3, F_GETFD), -1);
    assert_int_equal(fcntl(4, F_GETFD), -1);

    /* without names: "unknown", serving HTTP */
    place_fd(listening_socket(), 3);
    set_listen_env(1, NULL);
    assert_int_equal(listen_collect(NULL, NULL, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.sockets[0].name, "unknown");
    assert_int_equal(s.sockets[0].role, LISTEN_HTTP);
    listen_set_close(&s);

    /* a name longer than the field is cut, not overflowed */
    place_fd(listening_socket(), 3);
    set_listen_env(1, "a-very-long-file-descriptor-name-that-does-not-fit-in-sixty-four-bytes");
    assert_int_equal(listen_collect(NULL, NULL, &s), 0);
    assert_int_equal(strlen(s.sockets[0].name), 63);
    assert_memory_equal(s.sockets[0].name, "a-very-long-file-descriptor-name-that-does-not-fit-in-sixty-fou", 63);
    listen_set_close(&s);

    /* LISTEN_PID of another process: ignored, aigw binds itself */
    unsigned port = free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    place_fd(listening_socket(), 3);
    assert_int_equal(setenv("LISTEN_PID", "1", 1), 0);
    assert_int_equal(setenv("LISTEN_FDS", "1", 1), 0);
    assert_int_equal(listen_collect(addr, NULL, &s), 0);
    assert_false(s.from_systemd);
    assert_int_equal(s.n, 1);
    assert_int_not_equal(s.sockets[0].fd, 3);
    check_listening(s.sockets[0].fd, AF_INET, port);
    listen_set_close(&s);
    assert_int_equal(close(3), 0);
    clear_listen_env();
}

static void test_collect_systemd_errors(void **state) {
    clear_listen_env();
    if (fcntl(SD_LISTEN_FDS_START, F_GETFD) >= 0 || fcntl(SD_LISTEN_FDS_START + 1, F_GETFD) >= 0) {
        print_message("fd 3 or 4 in use: skipped\n");
        skip();
    }
    static const struct listen_socket marker = {.fd = -42};
    struct listen_set s = {.sockets = (struct listen_socket *)&marker, .n = 77};

    /* a pipe is not a socket */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    place_fd(p[0], 3);
    set_listen_env(1, "http");
    assert_int_equal(listen_collect(NULL, NULL, &s), -ENOTSOCK);
    assert_listen_env_gone();
    assert_ptr_equal(s.sockets, &marker);
    assert_int_equal(close(3), 0);
    assert_int_equal(close(p[1]), 0);

    /* a socket that does not listen */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    place_fd(fd, 3);
    set_listen_env(1, NULL);
    assert_int_equal(listen_collect(NULL, NULL, &s), -ENOTSOCK);
    assert_int_equal(close(3), 0);

    /* a datagram socket */
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    place_fd(fd, 3);
    set_listen_env(1, NULL);
    assert_int_equal(listen_collect(NULL, NULL, &s), -ENOTSOCK);
    assert_int_equal(close(3), 0);

    /* the second of two is bad: the first is left open for the caller
     * (systemd's sockets are not ours to close on error) */
    place_fd(listening_socket(), 3);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    place_fd(p[0], 4);
    set_listen_env(2, "http:metrics");
    assert_int_equal(listen_collect(NULL, NULL, &s), -ENOTSOCK);
    assert_true(fcntl(3, F_GETFD) >= 0);
    assert_int_equal(close(3), 0);
    assert_int_equal(close(4), 0);
    assert_int_equal(close(p[1]), 0);
    assert_ptr_equal(s.sockets, &marker);
    assert_int_equal(s.n, 77);
    clear_listen_env();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_role_from_name),
        cmocka_unit_test(test_collect_bind),
        cmocka_unit_test(test_collect_bind_ipv6),
        cmocka_unit_test(test_collect_errors),
        cmocka_unit_test(test_collect_systemd),
        cmocka_unit_test(test_collect_systemd_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

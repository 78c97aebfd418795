/* SPDX-License-Identifier: MIT */
/* Logging: field names, the stderr line format (escaping, quoting,
 * truncation), the journal iovec, JOURNAL_STREAM matching, and log_struct
 * writing to stderr. */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aigw/log.h"
#include "aigw/macro.h"

/* ---- field names ----------------------------------------------------------------------- */

static void test_field_name_valid(void **state) {
    static const struct {
        const char *name;
        bool valid;
    } t[] = {
        {"A", true},
        {"MESSAGE", true},
        {"ERRNO", true},
        {"AIGW_REQUEST_ID", true},
        {"A1", true},
        {"A_", true},
        {"A__B_9", true},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZ0", true},   /* 64 */
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZ01", false}, /* 65 */
        {"", false},
        {"_A", false},
        {"_SYSTEMD_UNIT", false}, /* trusted fields cannot be sent */
        {"1A", false},
        {"9", false},
        {"a", false},
        {"Aigw", false},
        {"A-B", false},
        {"A B", false},
        {"A=B", false},
        {"A.B", false},
        {"A\nB", false},
        {"\xc3\x84", false},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        if (log_field_name_valid(t[i].name) != t[i].valid)
            print_message("name \"%s\"\n", t[i].name);
        assert_int_equal(log_field_name_valid(t[i].name), t[i].valid);
    }
    /* the fixed names of log.h are all valid */
    static const char *const fixed[] = {LOG_F_REQUEST_ID, LOG_F_ROUTE,    LOG_F_METHOD,  LOG_F_STATUS,
                                        LOG_F_DURATION,   LOG_F_PEER,     LOG_F_PROTOCOL, LOG_F_MODEL,
                                        LOG_F_BACKEND,    LOG_F_KEY,      LOG_F_UPSTREAM_STATUS,
                                        LOG_F_OVERHEAD,   LOG_F_ERRNO};
    for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
        assert_true(log_field_name_valid(fixed[i]));
}

/* ---- stderr lines ---------------------------------------------------------------------- */

static void check_line(int prio, const char *message, const struct log_field *fields, size_t n,
                       const char *want) {
    char buf[1024];
    memset(buf, 0x5a, sizeof(buf));
    size_t len = log_format_line(buf, sizeof(buf), prio, message, fields, n);
    size_t wl = strlen(want);
    if (len != wl || memcmp(buf, want, wl) != 0)
        print_message("got  \"%.*s\"\nwant \"%s\"\n", (int)len, buf, want);
    assert_int_equal(len, wl);
    assert_memory_equal(buf, want, wl);
    assert_int_equal((unsigned char)buf[len], 0x5a); /* nothing beyond, not even a NUL */
}

static void test_format_message(void **state) {
    static const struct {
        int prio;
        const char *message;
        const char *want;
    } t[] = {
        {LOG_INFO, "hello", "<6>hello\n"},
        {LOG_ERR, "boom", "<3>boom\n"},
        {LOG_DEBUG, "", "<7>\n"},
        {LOG_EMERG, "x", "<0>x\n"},
        {LOG_LOCAL0 | LOG_WARNING, "facility bits dropped", "<4>facility bits dropped\n"},
        {11, "x", "<3>x\n"},
        /* one entry is one line */
        {LOG_INFO, "a\nb", "<6>a\\nb\n"},
        {LOG_INFO, "\n", "<6>\\n\n"},
        {LOG_INFO, "a\r\nb", "<6>a\\x0d\\nb\n"},
        {LOG_INFO, "tab\there", "<6>tab\\x09here\n"},
        {LOG_INFO, "\x01\x1b[31m\x1f\x7f", "<6>\\x01\\x1b[31m\\x1f\\x7f\n"},
        /* the message itself is never quoted */
        {LOG_INFO, "say \"hi\" a=b c\\d", "<6>say \"hi\" a=b c\\d\n"},
        /* UTF-8 passes */
        {LOG_INFO, "caf\xc3\xa9 \xe2\x82\xac", "<6>caf\xc3\xa9 \xe2\x82\xac\n"},
        {LOG_INFO, "\x80\xff", "<6>\x80\xff\n"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++)
        check_line(t[i].prio, t[i].message, NULL, 0, t[i].want);
}

static void test_format_fields(void **state) {
    static const struct {
        const char *value;
        const char *want; /* the line for message "m" and field F=value */
    } t[] = {
        {"v", "<6>m F=v\n"},
        {"200", "<6>m F=200\n"},
        {"", "<6>m F=\"\"\n"},
        {"a b", "<6>m F=\"a b\"\n"},
        {" ", "<6>m F=\" \"\n"},
        {"a\"b", "<6>m F=\"a\\\"b\"\n"},
        {"\"", "<6>m F=\"\\\"\"\n"},
        {"a=b", "<6>m F=\"a=b\"\n"},
        {"a\\b", "<6>m F=\"a\\\\b\"\n"},
        {"x\" G=forged", "<6>m F=\"x\\\" G=forged\"\n"},
        /* control characters are escaped, which needs no quotes */
        {"a\nb", "<6>m F=a\\nb\n"},
        {"a\tb", "<6>m F=a\\x09b\n"},
        {"a b\nc", "<6>m F=\"a b\\nc\"\n"},
        {"a\x7f", "<6>m F=a\\x7f\n"},
        {"\xc3\xa9", "<6>m F=\xc3\xa9\n"},
        {"127.0.0.1:5002", "<6>m F=127.0.0.1:5002\n"},
        {"[::1]:80", "<6>m F=[::1]:80\n"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        const struct log_field f[] = {{"F", t[i].value}};
        check_line(LOG_INFO, "m", f, 1, t[i].want);
    }

    /* several fields in order; NULL values and invalid names are left out */
    const struct log_field f[] = {
        {LOG_F_REQUEST_ID, "abc123"},
        {LOG_F_MODEL, NULL},
        {"lowercase", "x"},
        {"_TRUSTED", "x"},
        {"BAD NAME", "x"},
        {"", "x"},
        {LOG_F_STATUS, "200"},
        {LOG_F_ROUTE, "chat completions"},
    };
    check_line(LOG_NOTICE, "GET /health 200", f, ELEMENTSOF(f),
               "<5>GET /health 200 AIGW_REQUEST_ID=abc123 AIGW_STATUS=200 AIGW_ROUTE=\"chat completions\"\n");
    /* n_fields is honoured: the rest of the array is not read */
    check_line(LOG_NOTICE, "x", f, 1, "<5>x AIGW_REQUEST_ID=abc123\n");
    check_line(LOG_NOTICE, "x", f, 0, "<5>x\n");
    /* only skipped fields */
    check_line(LOG_NOTICE, "x", f + 1, 5, "<5>x\n");
}

/* Every buffer size, from none to more than enough: nothing is written
 * beyond it, and the result is the start of the full line plus '\n'. */
static void test_format_truncation(void **state) {
    const struct log_field f[] = {
        {"A", "quoted value \"x\""},
        {"B", "line\nbreak"},
        {"C", NULL},
        {"D", "\x01"},
    };
    const char *message = "message with\nnewline and \x02 control";
    char full[512];
    size_t full_len = log_format_line(full, sizeof(full), LOG_WARNING, message, f, ELEMENTSOF(f));
    static const char want_full[] =
        "<4>message with\\nnewline and \\x02 control A=\"quoted value \\\"x\\\"\" B=line\\nbreak D=\\x01\n";
    assert_int_equal(full_len, sizeof(want_full) - 1);
    assert_memory_equal(full, want_full, full_len);

    for (size_t size = 0; size <= full_len + 8; size++) {
        char buf[600];
        memset(buf, 0x5a, sizeof(buf));
        size_t len = log_format_line(buf, size, LOG_WARNING, message, f, ELEMENTSOF(f));
        for (size_t i = size; i < sizeof(buf); i++)
            assert_int_equal((unsigned char)buf[i], 0x5a);
        if (size < 2) {
            /* no room for a character and the newline: nothing at all */
            assert_int_equal(len, 0);
            continue;
        }
        size_t want_len = MIN(size, full_len);
        assert_int_equal(len, want_len);
        assert_memory_equal(buf, full, len - 1);
        assert_int_equal(buf[len - 1], '\n');
    }
    /* the two smallest useful sizes, spelled out */
    char buf[4];
    assert_int_equal(log_format_line(buf, 2, LOG_INFO, "hello", NULL, 0), 2);
    assert_memory_equal(buf, "<\n", 2);
    assert_int_equal(log_format_line(buf, 4, LOG_INFO, "hello", NULL, 0), 4);
    assert_memory_equal(buf, "<6>\n", 4);
}

/* ---- journal iovec --------------------------------------------------------------------- */

static void check_iov(const struct iovec *iov, const char *want) {
    size_t wl = strlen(want);
    if (iov->iov_len != wl || memcmp(iov->iov_base, want, wl) != 0)
        print_message("got  \"%.*s\"\nwant \"%s\"\n", (int)iov->iov_len, (const char *)iov->iov_base, want);
    assert_int_equal(iov->iov_len, wl);
    assert_memory_equal(iov->iov_base, want, wl);
}

static void test_iovec_basic(void **state) {
    struct iovec iov[8];
    char storage[256];
    int n = log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), LOG_INFO, NULL, "hello", NULL, 0);
    assert_int_equal(n, 3);
    check_iov(&iov[0], "MESSAGE=hello");
    check_iov(&iov[1], "PRIORITY=6");
    check_iov(&iov[2], "SYSLOG_IDENTIFIER=aigw");
    /* the strings live in storage, back to back, without terminators */
    assert_ptr_equal(iov[0].iov_base, storage);
    assert_ptr_equal(iov[1].iov_base, storage + 13);
    assert_ptr_equal(iov[2].iov_base, storage + 23);

    /* facility bits are dropped; the message is sent as it is (the
     * journal keeps newlines, no escaping wanted) */
    n = log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), LOG_DAEMON | LOG_ERR, NULL,
                        "two\nlines \"q\"", NULL, 0);
    assert_int_equal(n, 3);
    check_iov(&iov[0], "MESSAGE=two\nlines \"q\"");
    check_iov(&iov[1], "PRIORITY=3");
    n = log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), 0, NULL, "", NULL, 0);
    assert_int_equal(n, 3);
    check_iov(&iov[0], "MESSAGE=");
    check_iov(&iov[1], "PRIORITY=0");
}

static void test_iovec_fields(void **state) {
    struct iovec iov[16];
    char storage[512];
    const struct log_field f[] = {
        {LOG_F_REQUEST_ID, "abc"},
        {LOG_F_MODEL, NULL},
        {"bad name", NULL}, /* left out before its name is checked */
        {LOG_F_STATUS, "200"},
        {LOG_F_ROUTE, "a b\nc"},
        {LOG_F_KEY, ""},
    };
    int n = log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), LOG_NOTICE, LOG_MID_STARTED,
                            "started", f, ELEMENTSOF(f));
    assert_int_equal(n, 8);
    check_iov(&iov[0], "MESSAGE=started");
    check_iov(&iov[1], "PRIORITY=5");
    check_iov(&iov[2], "SYSLOG_IDENTIFIER=aigw");
    check_iov(&iov[3], "MESSAGE_ID=" LOG_MID_STARTED);
    check_iov(&iov[4], "AIGW_REQUEST_ID=abc");
    check_iov(&iov[5], "AIGW_STATUS=200");
    check_iov(&iov[6], "AIGW_ROUTE=a b\nc");
    check_iov(&iov[7], "AIGW_KEY=");
}

static void test_iovec_errors(void **state) {
    const struct log_field f[] = {{"A", "1"}, {"BB", "22"}};
    /* MESSAGE=m PRIORITY=6 SYSLOG_IDENTIFIER=aigw MESSAGE_ID=x A=1 BB=22 */
    const size_t total = 9 + 10 + 22 + 12 + 3 + 5;
    struct iovec iov[8];
    char storage[128];

    /* exactly enough of both */
    memset(storage, 0x5a, sizeof(storage));
    assert_int_equal(log_build_iovec(iov, 6, storage, total, LOG_INFO, "x", "m", f, 2), 6);
    check_iov(&iov[5], "BB=22");
    assert_int_equal((unsigned char)storage[total], 0x5a);

    /* too few iovecs */
    for (size_t n_iov = 0; n_iov < 6; n_iov++)
        assert_int_equal(log_build_iovec(iov, n_iov, storage, sizeof(storage), LOG_INFO, "x", "m", f, 2), -E2BIG);
    /* too little storage, and nothing written beyond what was given */
    for (size_t size = 0; size < total; size++) {
        memset(storage, 0x5a, sizeof(storage));
        assert_int_equal(log_build_iovec(iov, ELEMENTSOF(iov), storage, size, LOG_INFO, "x", "m", f, 2), -ENOBUFS);
        for (size_t i = size; i < sizeof(storage); i++)
            assert_int_equal((unsigned char)storage[i], 0x5a);
    }
    /* a field name the journal would refuse */
    static const char *const bad[] = {"lower", "_UNDERSCORE", "1DIGIT", "A B", ""};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        const struct log_field fb[] = {{"OK", "1"}, {bad[i], "v"}};
        assert_int_equal(log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), LOG_INFO, NULL, "m", fb, 2),
                         -EINVAL);
    }
}

/* ---- JOURNAL_STREAM -------------------------------------------------------------------- */

static void test_stream_is_journal(void **state) {
    char path[] = "/tmp/aigw-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char other_path[] = "/tmp/aigw-test-log-XXXXXX";
    int other = mkstemp(other_path);
    assert_true(other >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned long long dev = st.st_dev, ino = st.st_ino;

    char s[128];
    snprintf(s, sizeof(s), "%llu:%llu", dev, ino);
    assert_true(log_stream_is_journal(s, fd));
    assert_false(log_stream_is_journal(s, other)); /* another file */
    assert_false(log_stream_is_journal(s, -1));
    assert_false(log_stream_is_journal(NULL, fd));

    /* near misses: every one must be refused */
    char bad[11][128];
    snprintf(bad[0], sizeof(bad[0]), "%llu:%llu ", dev, ino);
    snprintf(bad[1], sizeof(bad[1]), "%llu:%llu\n", dev, ino);
    snprintf(bad[2], sizeof(bad[2]), "%llu:%llux", dev, ino);
    snprintf(bad[3], sizeof(bad[3]), "%llu:%llu:", dev, ino);
    snprintf(bad[4], sizeof(bad[4]), "%llu:%llu:0", dev, ino);
    snprintf(bad[5], sizeof(bad[5]), "%llu;%llu", dev, ino);
    snprintf(bad[6], sizeof(bad[6]), "%llu %llu", dev, ino);
    snprintf(bad[7], sizeof(bad[7]), "%llu:", dev);
    snprintf(bad[8], sizeof(bad[8]), ":%llu", ino);
    snprintf(bad[9], sizeof(bad[9]), "%llu", dev);
    snprintf(bad[10], sizeof(bad[10]), "%llu:x%llu", dev, ino);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        if (log_stream_is_journal(bad[i], fd))
            print_message("accepted \"%s\"\n", bad[i]);
        assert_false(log_stream_is_journal(bad[i], fd));
    }
    static const char *const junk[] = {"", ":", "abc", "abc:def", "x1:2"};
    for (size_t i = 0; i < ELEMENTSOF(junk); i++)
        assert_false(log_stream_is_journal(junk[i], fd));

    snprintf(s, sizeof(s), "%llu:%llu", dev + 1, ino);
    assert_false(log_stream_is_journal(s, fd));
    snprintf(s, sizeof(s), "%llu:%llu", dev, ino + 1);
    assert_false(log_stream_is_journal(s, fd));
    snprintf(s, sizeof(s), "%llu:%llu", ino, dev);
    assert_int_equal(log_stream_is_journal(s, fd), ino == dev);

    assert_int_equal(close(fd), 0);
    assert_int_equal(close(other), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(other_path), 0);
}

/* ---- log_struct on stderr ---------------------------------------------------------------- */

/* Runs fn with stderr sent to a temporary file; returns what was written. */
static size_t capture_stderr(void (*fn)(void), char *out, size_t size) {
    char path[] = "/tmp/aigw-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    assert_int_equal(close(saved), 0);
    ssize_t n = pread(fd, out, size - 1, 0);
    assert_true(n >= 0);
    out[n] = 0;
    assert_int_equal(close(fd), 0);
    return (size_t)n;
}

static void emit_some(void) {
    const struct log_field f[] = {{LOG_F_STATUS, "503"}, {LOG_F_MODEL, NULL}, {LOG_F_PEER, "127.0.0.1:1"}};
    errno = EAGAIN;
    log_struct(LOG_WARNING, LOG_MID_STOPPING, f, ELEMENTSOF(f), "%s %d", "over\nload", 42);
    assert_int_equal(errno, EAGAIN); /* logging does not clobber errno */
    log_info("info %s", "too");
    log_debug("debug is filtered");
    log_error("err");
}

static void test_log_struct_stderr(void **state) {
    assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
    log_setup();
    assert_false(log_is_journal());
    int old = log_get_level();
    log_set_level(LOG_INFO);
    assert_int_equal(log_get_level(), LOG_INFO);

    char out[1024];
    size_t n = capture_stderr(emit_some, out, sizeof(out));
    static const char want[] = "<4>over\\nload 42 AIGW_STATUS=503 AIGW_PEER=127.0.0.1:1\n"
                               "<6>info too\n"
                               "<3>err\n";
    assert_int_equal(n, sizeof(want) - 1);
    assert_string_equal(out, want);

    log_set_level(LOG_ERR);
    n = capture_stderr(emit_some, out, sizeof(out));
    assert_string_equal(out, "<3>err\n");
    log_set_level(old);
}

/* JOURNAL_STREAM naming our stderr turns the journal on; anything else off. */
static void test_log_setup(void **state) {
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char s[128];
    snprintf(s, sizeof(s), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", s, 1), 0);
    log_setup();
    assert_true(log_is_journal());
    snprintf(s, sizeof(s), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
    assert_int_equal(setenv("JOURNAL_STREAM", s, 1), 0);
    log_setup();
    assert_false(log_is_journal());
    assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
    log_setup();
    assert_false(log_is_journal());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_name_valid),
        cmocka_unit_test(test_format_message),
        cmocka_unit_test(test_format_fields),
        cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_iovec_basic),
        cmocka_unit_test(test_iovec_fields),
        cmocka_unit_test(test_iovec_errors),
        cmocka_unit_test(test_stream_is_journal),
        cmocka_unit_test(test_log_struct_stderr),
        cmocka_unit_test(test_log_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

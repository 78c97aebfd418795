/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/keys.h"
#include "aigw/macro.h"

/* sha256("alpha-secret"), sha256("beta-secret"), sha256("") */
#define DA "3f8ad42d6dc52445378196cb2e49281f812253eaea7830fe46f4756f2ca0a3d4"
#define DA_UPPER "3F8AD42D6DC52445378196CB2E49281F812253EAEA7830FE46F4756F2CA0A3D4"
#define DB "d40ab4efae8afe82f0fda0f0fc785ff61bec7b5f329c6070c453594397e03568"
#define DEMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_keys *, aigw_keys_free);
#define _cleanup_keys_ _cleanup_(aigw_keys_freep)

static struct aigw_keys *parse_ok(const char *s, size_t len) {
    struct aigw_keys *k = NULL;
    char err[256] = "";
    int r = aigw_keys_parse(s, len, &k, err, sizeof(err));
    if (r != 0)
        fail_msg("parse failed (%d): %s", r, err);
    assert_non_null(k);
    return k;
}

static void test_parse_full(void **state) {
    static const char text[] = "# API keys\n"
                               "\n"
                               "   \t\n"
                               "  # indented comment\n"
                               "alpha sha256:" DA "\n"
                               "beta\tsha256:" DB "  rpm=60 tpm=100000\tinflight=4  \r\n"
                               "Gamma.2_x-y sha256:" DEMPTY " inflight=1000000000 rpm=1\r\n"
                               "\r\n"
                               "   delta sha256:"
                               "0000000000000000000000000000000000000000000000000000000000000001";
    _cleanup_keys_ struct aigw_keys *k = parse_ok(text, strlen(text));
    const struct aigw_key *e;

    assert_int_equal(aigw_keys_count(k), 4);

    e = aigw_keys_get(k, 0);
    assert_string_equal(e->name, "alpha");
    assert_int_equal(e->digest[0], 0x3f);
    assert_int_equal(e->digest[31], 0xd4);
    assert_false(e->has_rpm);
    assert_false(e->has_tpm);
    assert_false(e->has_inflight);

    e = aigw_keys_get(k, 1);
    assert_string_equal(e->name, "beta");
    assert_true(e->has_rpm);
    assert_int_equal(e->rpm, 60);
    assert_true(e->has_tpm);
    assert_int_equal(e->tpm, 100000);
    assert_true(e->has_inflight);
    assert_int_equal(e->inflight, 4);

    e = aigw_keys_get(k, 2);
    assert_string_equal(e->name, "Gamma.2_x-y");
    assert_true(e->has_rpm);
    assert_int_equal(e->rpm, 1);
    assert_false(e->has_tpm);
    assert_true(e->has_inflight);
    assert_int_equal(e->inflight, 1000000000);

    e = aigw_keys_get(k, 3);
    assert_string_equal(e->name, "delta");
    assert_int_equal(e->digest[30], 0);
    assert_int_equal(e->digest[31], 1);

    assert_null(aigw_keys_get(k, 4));
    assert_null(aigw_keys_get(NULL, 0));
    assert_int_equal(aigw_keys_count(NULL), 0);
}

static void test_parse_upper_hex(void **state) {
    static const char text[] = "alpha sha256:" DA_UPPER "\n";
    _cleanup_keys_ struct aigw_keys *k = parse_ok(text, strlen(text));
    assert_non_null(aigw_keys_lookup(k, "alpha-secret", strlen("alpha-secret")));
}

static void test_parse_empty(void **state) {
    static const char *const inputs[] = {"", "\n", "# nothing\n\n", "   \r\n\t\n"};
    for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
        _cleanup_keys_ struct aigw_keys *k = parse_ok(inputs[i], strlen(inputs[i]));
        assert_int_equal(aigw_keys_count(k), 0);
        assert_null(aigw_keys_lookup(k, "x", 1));
    }
    _cleanup_keys_ struct aigw_keys *k = parse_ok(NULL, 0);
    assert_int_equal(aigw_keys_count(k), 0);
}

#define E_DIGEST "digest must be sha256: followed by 64 hex digits"
#define E_NAME "invalid key name (1-64 characters from A-Z a-z 0-9 . _ -)"
#define E_UNKNOWN "(expected rpm=N, tpm=N or inflight=N)"
#define E_RPM "rpm must be an integer from 1 to 1000000000"

static const struct {
    const char *input;
    size_t len; /* 0: strlen */
    const char *message;
} parse_errors[] = {
    /* names */
    {"bad/name sha256:" DA, 0, "keys file line 1: " E_NAME},
    {"# ok\nna\xc3\xafve sha256:" DA, 0, "keys file line 2: " E_NAME},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa sha256:" DA, 0,
     "keys file line 1: " E_NAME},
    {"na=me sha256:" DA, 0, "keys file line 1: " E_NAME},
    /* digests */
    {"alpha", 0, "keys file line 1: missing digest (expected NAME sha256:HEX [options])"},
    {"\n\nalpha  \t\r\n", 0,
     "keys file line 3: missing digest (expected NAME sha256:HEX [options])"},
    {"alpha sha256:", 0, "keys file line 1: " E_DIGEST},
    {"alpha " DA, 0, "keys file line 1: " E_DIGEST},
    {"alpha sha256 " DA, 0, "keys file line 1: " E_DIGEST},
    {"alpha SHA256:" DA, 0, "keys file line 1: " E_DIGEST},
    {"alpha sha1:" DA, 0, "keys file line 1: " E_DIGEST},
    {"alpha sha256:" DA "0", 0, "keys file line 1: " E_DIGEST},
    {"alpha sha256:3f8ad42d6dc52445378196cb2e49281f812253eaea7830fe46f4756f2ca0a3d", 0,
     "keys file line 1: " E_DIGEST},
    {"alpha sha256:3f8ad42d6dc52445378196cb2e49281f812253eaea7830fe46f4756f2ca0a3dg", 0,
     "keys file line 1: " E_DIGEST},
    {"alpha sha256: " DA, 0, "keys file line 1: " E_DIGEST},
    {"# one\n# two\nalpha sha256:" DA "\rx", 0, "keys file line 3: " E_DIGEST},
    /* options */
    {"alpha sha256:" DA " foo=1", 0, "keys file line 1: unknown option \"foo\" " E_UNKNOWN},
    {"alpha sha256:" DA " RPM=1", 0, "keys file line 1: unknown option \"RPM\" " E_UNKNOWN},
    {"alpha sha256:" DA " # trailing comment", 0,
     "keys file line 1: unknown option \"#\" " E_UNKNOWN},
    {"alpha sha256:" DA " \x01\x02=1", 0, "keys file line 1: unknown option " E_UNKNOWN},
    {"alpha sha256:" DA " =5", 0, "keys file line 1: unknown option " E_UNKNOWN},
    {"alpha sha256:" DA " abcdefghijabcdefghijabcdefghijabc=1", 0,
     "keys file line 1: unknown option " E_UNKNOWN},
    {"alpha sha256:" DA " rpm=1 rpm=2", 0, "keys file line 1: duplicate option \"rpm\""},
    {"alpha sha256:" DA " tpm=1 rpm=3 tpm=1", 0, "keys file line 1: duplicate option \"tpm\""},
    {"alpha sha256:" DA " inflight=1 inflight=x", 0,
     "keys file line 1: duplicate option \"inflight\""},
    {"alpha sha256:" DA " rpm", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=0", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=-1", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=+1", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=1x", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=0x10", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=1.5", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=1000000001", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=99999999999999999999999999", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " rpm=18446744073709551617", 0, "keys file line 1: " E_RPM},
    {"alpha sha256:" DA " tpm=0", 0,
     "keys file line 1: tpm must be an integer from 1 to 1000000000"},
    {"alpha sha256:" DA " inflight=", 0,
     "keys file line 1: inflight must be an integer from 1 to 1000000000"},
    /* bytes */
    {"alpha sha256:" DA "\n\0beta", 6 + 7 + 64 + 1 + 5, "keys file line 2: contains a NUL byte"},
    {"#\0", 2, "keys file line 1: contains a NUL byte"},
    /* duplicates */
    {"alpha sha256:" DA "\n#\nalpha sha256:" DB "\n", 0,
     "keys file line 3: duplicate key name \"alpha\" (first on line 1)"},
    {"alpha sha256:" DA "\nbeta sha256:" DA_UPPER "\n", 0,
     "keys file line 2: duplicate digest (same key as line 1)"},
    {"x sha256:" DA "\nx sha256:" DB "\nx sha256:" DEMPTY "\n", 0,
     "keys file line 2: duplicate key name \"x\" (first on line 1)"},
    /* the earliest duplicated line wins, whichever kind */
    {"a sha256:" DA "\nb sha256:" DA "\na sha256:" DB "\n", 0,
     "keys file line 2: duplicate digest (same key as line 1)"},
    {"a sha256:" DA "\na sha256:" DB "\nb sha256:" DB "\n", 0,
     "keys file line 2: duplicate key name \"a\" (first on line 1)"},
    {"x sha256:" DA "\ny sha256:" DB "\ny sha256:" DEMPTY "\nx sha256:"
     "0000000000000000000000000000000000000000000000000000000000000000\n",
     0, "keys file line 3: duplicate key name \"y\" (first on line 2)"},
    {"z sha256:" DA "\na sha256:" DB "\nb sha256:" DB "\nc sha256:" DA "\n", 0,
     "keys file line 3: duplicate digest (same key as line 2)"},
    /* a syntax error anywhere comes before duplicates */
    {"a sha256:" DA "\na sha256:" DB "\nb sha256:zz\n", 0, "keys file line 3: " E_DIGEST},
};

static void test_parse_errors(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(parse_errors); i++) {
        const char *in = parse_errors[i].input;
        size_t len = parse_errors[i].len ? parse_errors[i].len : strlen(in);
        struct aigw_keys *k = (struct aigw_keys *)0x1;
        char err[256] = "";

        int r = aigw_keys_parse(in, len, &k, err, sizeof(err));
        if (r != -EINVAL || strcmp(err, parse_errors[i].message) != 0)
            fail_msg("case %zu: r=%d err=\"%s\", expected \"%s\"", i, r, err,
                     parse_errors[i].message);
        /* untouched on failure */
        assert_ptr_equal(k, (struct aigw_keys *)0x1);
    }
}

static void test_parse_line_length(void **state) {
    char buf[AIGW_KEYS_LINE_MAX + 64];
    char err[256];
    struct aigw_keys *k = NULL;

    /* exactly the limit (not counting the newline) is fine */
    memset(buf, ' ', sizeof(buf));
    buf[0] = '#';
    buf[AIGW_KEYS_LINE_MAX] = '\n';
    _cleanup_keys_ struct aigw_keys *ok = parse_ok(buf, AIGW_KEYS_LINE_MAX + 1);
    assert_int_equal(aigw_keys_count(ok), 0);

    /* a key line padded to the limit with trailing blanks */
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, "alpha sha256:" DA, strlen("alpha sha256:" DA));
    _cleanup_keys_ struct aigw_keys *ok2 = parse_ok(buf, AIGW_KEYS_LINE_MAX);
    assert_int_equal(aigw_keys_count(ok2), 1);

    /* one more byte, with or without a newline, on line 2 */
    memset(buf, ' ', sizeof(buf));
    buf[0] = '\n';
    buf[1] = '#';
    assert_int_equal(aigw_keys_parse(buf, AIGW_KEYS_LINE_MAX + 2, &k, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file line 2: line too long (max 1024 bytes)");
    buf[AIGW_KEYS_LINE_MAX + 2] = '\n';
    assert_int_equal(aigw_keys_parse(buf, AIGW_KEYS_LINE_MAX + 3, &k, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file line 2: line too long (max 1024 bytes)");
    assert_null(k);
}

/* n lines with distinct names and digests; digest i is the index in hex. */
static char *make_many(size_t n, size_t *ret_len) {
    const size_t per = 16 + 7 + 64 + 1;
    char *buf = malloc(n * per + 1);
    size_t o = 0;
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(buf + o, per + 1, "k%06zu sha256:%064zx\n", i, i);
    *ret_len = o;
    return buf;
}

static void test_parse_max_keys(void **state) {
    size_t len;
    char err[256] = "";
    struct aigw_keys *k = NULL;
    _cleanup_free_ char *buf = make_many(AIGW_KEYS_MAX + 1, &len);
    size_t last_line_len = strlen("k100000 sha256:") + 64 + 1;

    /* exactly the maximum */
    _cleanup_keys_ struct aigw_keys *ok = parse_ok(buf, len - last_line_len);
    assert_int_equal(aigw_keys_count(ok), AIGW_KEYS_MAX);
    assert_string_equal(aigw_keys_get(ok, AIGW_KEYS_MAX - 1)->name, "k099999");
    /* a miss still compares against all 100000 digests */
    assert_null(aigw_keys_lookup(ok, "alpha-secret", 12));

    assert_int_equal(aigw_keys_parse(buf, len, &k, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file line 100001: too many keys (max 100000)");
    assert_null(k);
}

static void test_parse_many_duplicates(void **state) {
    size_t len;
    char err[256] = "";
    struct aigw_keys *k = NULL;
    _cleanup_free_ char *buf = make_many(5000, &len);

    /* turn line 4001's name into line 17's name */
    char *line = buf + 4000 * (len / 5000);
    assert_memory_equal(line, "k004000 ", 8);
    memcpy(line, "k000016", 7);
    assert_int_equal(aigw_keys_parse(buf, len, &k, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file line 4001: duplicate key name \"k000016\" (first on line 17)");
    assert_null(k);
}

static void test_parse_errbuf(void **state) {
    static const char bad[] = "alpha sha1:00";
    struct aigw_keys *k = NULL;
    char small[12];

    /* no error buffer at all */
    assert_int_equal(aigw_keys_parse(bad, strlen(bad), &k, NULL, 0), -EINVAL);
    assert_int_equal(aigw_keys_parse(bad, strlen(bad), &k, small, 0), -EINVAL);
    /* truncated, still terminated */
    memset(small, 'x', sizeof(small));
    assert_int_equal(aigw_keys_parse(bad, strlen(bad), &k, small, sizeof(small)), -EINVAL);
    assert_string_equal(small, "keys file l");

    /* bad arguments */
    char err[64];
    assert_int_equal(aigw_keys_parse(NULL, 3, &k, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file: invalid arguments");
    assert_int_equal(aigw_keys_parse("", 0, NULL, err, sizeof(err)), -EINVAL);
    assert_null(k);
}

static void test_lookup(void **state) {
    static const char text[] = "alpha sha256:" DA "\n"
                               "beta sha256:" DB " rpm=5\n";
    _cleanup_keys_ struct aigw_keys *k = parse_ok(text, strlen(text));
    const struct aigw_key *e;

    e = aigw_keys_lookup(k, "alpha-secret", strlen("alpha-secret"));
    assert_non_null(e);
    assert_string_equal(e->name, "alpha");
    assert_ptr_equal(e, aigw_keys_get(k, 0));

    e = aigw_keys_lookup(k, "beta-secret", strlen("beta-secret"));
    assert_non_null(e);
    assert_string_equal(e->name, "beta");
    assert_true(e->has_rpm);
    assert_int_equal(e->rpm, 5);

    /* length is explicit: a longer buffer with the key as prefix is not it */
    assert_non_null(aigw_keys_lookup(k, "beta-secretXYZ", strlen("beta-secret")));
    assert_null(aigw_keys_lookup(k, "beta-secretXYZ", strlen("beta-secretXYZ")));
    assert_null(aigw_keys_lookup(k, "alpha-secreT", strlen("alpha-secreT")));
    assert_null(aigw_keys_lookup(k, "alpha-secre", strlen("alpha-secre")));
    assert_null(aigw_keys_lookup(k, "", 0));
    assert_null(aigw_keys_lookup(k, NULL, 0));
    assert_null(aigw_keys_lookup(NULL, "alpha-secret", strlen("alpha-secret")));
}

static void test_lookup_empty_key_digest(void **state) {
    /* an entry at index 0 must be found too (the match is folded in as i+1) */
    static const char text[] = "empty sha256:" DEMPTY "\nalpha sha256:" DA "\n";
    _cleanup_keys_ struct aigw_keys *k = parse_ok(text, strlen(text));
    const struct aigw_key *e = aigw_keys_lookup(k, "", 0);
    assert_non_null(e);
    assert_string_equal(e->name, "empty");
    e = aigw_keys_lookup(k, "alpha-secret", strlen("alpha-secret"));
    assert_non_null(e);
    assert_string_equal(e->name, "alpha");
}

static const struct {
    const char *authorization; /* NULL: header absent */
    const char *x_api_key;
    int r;
    const char *key; /* expected on success */
} extract_cases[] = {
    {"Bearer abc", NULL, 0, "abc"},
    {"bearer abc", NULL, 0, "abc"},
    {"BEARER abc", NULL, 0, "abc"},
    {"BeArEr    abc", NULL, 0, "abc"},
    {"  Bearer abc \t ", NULL, 0, "abc"},
    {"Bearer aigw-AZaz09-._~+/==", NULL, 0, "aigw-AZaz09-._~+/=="},
    {"Bearer abc", "other", 0, "abc"},
    {NULL, "xyz", 0, "xyz"},
    {NULL, " \txyz\t ", 0, "xyz"},
    {NULL, "k=v!#$%&'()*", 0, "k=v!#$%&'()*"},
    {"", "xyz", 0, "xyz"},
    {"   ", "xyz", 0, "xyz"},
    {"Basic dXNlcjpwYXNz", "xyz", 0, "xyz"},
    {"Bearerabc", "xyz", 0, "xyz"},
    /* nothing presented */
    {NULL, NULL, -ENOKEY, NULL},
    {"", "", -ENOKEY, NULL},
    {" \t", "\t ", -ENOKEY, NULL},
    {NULL, "", -ENOKEY, NULL},
    /* malformed */
    {"Bearer", NULL, -EINVAL, NULL},
    {"Bearer ", "xyz", -EINVAL, NULL},
    {"Bearer    ", NULL, -EINVAL, NULL},
    {"Bearer a b", NULL, -EINVAL, NULL},
    {"Bearer a\tb", NULL, -EINVAL, NULL},
    {"Bearer \tabc", NULL, -EINVAL, NULL},
    {"Bearer ab=c", NULL, -EINVAL, NULL},
    {"Bearer =abc", NULL, -EINVAL, NULL},
    {"Bearer ===", NULL, -EINVAL, NULL},
    {"Bearer a,b", NULL, -EINVAL, NULL},
    {"Bearer a\"b", NULL, -EINVAL, NULL},
    {"Bearer \xc3\xa9t\xc3\xa9", NULL, -EINVAL, NULL},
    {"Bearer abc", NULL, 0, "abc"},
    {"Basic dXNlcjpwYXNz", NULL, -EINVAL, NULL},
    {"Bearerabc", NULL, -EINVAL, NULL},
    {NULL, "a b", -EINVAL, NULL},
    {NULL, "a\x7f", -EINVAL, NULL},
    {NULL, "caf\xc3\xa9", -EINVAL, NULL},
    {"Basic x", "a b", -EINVAL, NULL},
};

static void test_extract(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(extract_cases); i++) {
        const char *a = extract_cases[i].authorization, *x = extract_cases[i].x_api_key;
        const char *key = (const char *)0x1;
        size_t len = 12345;
        int r = aigw_keys_extract(a, a ? strlen(a) : 0, x, x ? strlen(x) : 0, &key, &len);
        if (r != extract_cases[i].r)
            fail_msg("case %zu: r=%d, expected %d", i, r, extract_cases[i].r);
        if (r == 0) {
            if (len != strlen(extract_cases[i].key) ||
                memcmp(key, extract_cases[i].key, len) != 0)
                fail_msg("case %zu: key \"%.*s\", expected \"%s\"", i, (int)len, key,
                         extract_cases[i].key);
        } else {
            assert_ptr_equal(key, (const char *)0x1);
            assert_int_equal(len, 12345);
        }
    }
}

static void test_extract_lengths(void **state) {
    char buf[AIGW_KEY_PRESENTED_MAX + 16];
    const char *key;
    size_t len;

    /* not NUL-terminated: only alen bytes count */
    assert_int_equal(aigw_keys_extract("Bearer abcdef", 10, NULL, 0, &key, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(key, "abc", 3);

    memcpy(buf, "Bearer ", 7);
    memset(buf + 7, 'a', AIGW_KEY_PRESENTED_MAX + 1);
    assert_int_equal(aigw_keys_extract(buf, 7 + AIGW_KEY_PRESENTED_MAX, NULL, 0, &key, &len), 0);
    assert_int_equal(len, AIGW_KEY_PRESENTED_MAX);
    assert_int_equal(aigw_keys_extract(buf, 7 + AIGW_KEY_PRESENTED_MAX + 1, NULL, 0, &key, &len),
                     -EINVAL);
    assert_int_equal(aigw_keys_extract(NULL, 0, buf + 7, AIGW_KEY_PRESENTED_MAX, &key, &len), 0);
    assert_int_equal(aigw_keys_extract(NULL, 0, buf + 7, AIGW_KEY_PRESENTED_MAX + 1, &key, &len),
                     -EINVAL);

    assert_int_equal(aigw_keys_extract("Bearer a", 8, NULL, 0, NULL, &len), -EINVAL);
    assert_int_equal(aigw_keys_extract("Bearer a", 8, NULL, 0, &key, NULL), -EINVAL);
}

static bool is_base64url(const char *s) {
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

static void test_keygen_round_trip(void **state) {
    _cleanup_free_ char *key1 = NULL, *line1 = NULL, *key2 = NULL, *line2 = NULL;
    const char *presented, *name_end;
    size_t plen;

    assert_int_equal(aigw_keygen("svc-1", &key1, &line1), 0);
    assert_int_equal(aigw_keygen("other.Name_2", &key2, &line2), 0);

    /* "aigw-" + 43 characters of base64url (32 bytes, no padding) */
    assert_int_equal(strlen(key1), 5 + 43);
    assert_memory_equal(key1, "aigw-", 5);
    assert_true(is_base64url(key1 + 5));
    assert_string_not_equal(key1, key2);

    assert_int_equal(strlen(line1), strlen("svc-1 sha256:") + 64);
    assert_memory_equal(line1, "svc-1 sha256:", strlen("svc-1 sha256:"));
    name_end = strchr(line2, ' ');
    assert_non_null(name_end);
    assert_int_equal(name_end - line2, strlen("other.Name_2"));

    /* the generated key, presented as a client would, finds its line */
    size_t tlen = strlen(line1) + 1 + strlen(line2) + 2;
    _cleanup_free_ char *text = malloc(tlen);
    assert_non_null(text);
    snprintf(text, tlen, "%s\n%s\n", line1, line2);
    _cleanup_keys_ struct aigw_keys *k = parse_ok(text, strlen(text));
    assert_int_equal(aigw_keys_count(k), 2);

    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", key1);
    assert_int_equal(aigw_keys_extract(auth, strlen(auth), NULL, 0, &presented, &plen), 0);
    const struct aigw_key *e = aigw_keys_lookup(k, presented, plen);
    assert_non_null(e);
    assert_string_equal(e->name, "svc-1");

    assert_int_equal(aigw_keys_extract(NULL, 0, key2, strlen(key2), &presented, &plen), 0);
    e = aigw_keys_lookup(k, presented, plen);
    assert_non_null(e);
    assert_string_equal(e->name, "other.Name_2");

    /* one character off is a miss */
    key1[10] = key1[10] == 'A' ? 'B' : 'A';
    assert_null(aigw_keys_lookup(k, key1, strlen(key1)));
}

static void test_keygen_invalid(void **state) {
    static const char *const bad[] = {
        "", "a b", "a/b", "caf\xc3\xa9", "a\n",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 */
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        char *key = (char *)0x1, *line = (char *)0x1;
        assert_int_equal(aigw_keygen(bad[i], &key, &line), -EINVAL);
        assert_ptr_equal(key, (char *)0x1);
        assert_ptr_equal(line, (char *)0x1);
    }
    char *key, *line;
    assert_int_equal(aigw_keygen(NULL, &key, &line), -EINVAL);
    assert_int_equal(aigw_keygen("a", NULL, &line), -EINVAL);
    assert_int_equal(aigw_keygen("a", &key, NULL), -EINVAL);

    /* 64 characters is the longest valid name */
    static const char longest[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_int_equal(strlen(longest), 64);
    assert_int_equal(aigw_keygen(longest, &key, &line), 0);
    assert_int_equal(strlen(line), 64 + 1 + 7 + 64);
    free(key);
    free(line);
}

static void test_name_valid(void **state) {
    assert_true(aigw_key_name_is_valid("a", 1));
    assert_true(aigw_key_name_is_valid("A.z_0-9", 7));
    assert_false(aigw_key_name_is_valid("", 0));
    assert_false(aigw_key_name_is_valid(NULL, 1));
    assert_false(aigw_key_name_is_valid("a b", 3));
    assert_false(aigw_key_name_is_valid("a:b", 3));
    assert_false(aigw_key_name_is_valid("ab\0", 3));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_upper_hex),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_line_length),
        cmocka_unit_test(test_parse_max_keys),
        cmocka_unit_test(test_parse_many_duplicates),
        cmocka_unit_test(test_parse_errbuf),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_lookup_empty_key_digest),
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_extract_lengths),
        cmocka_unit_test(test_keygen_round_trip),
        cmocka_unit_test(test_keygen_invalid),
        cmocka_unit_test(test_name_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

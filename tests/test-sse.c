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

#include "aigw/macro.h"
#include "aigw/sse.h"

/* Events as one string: "<event>=<data>|" per event, "" for no event. */
struct transcript {
    char buf[4096];
    size_t len;
    int stop_after; /* return stop_ret after this many events; 0: never */
    int stop_ret;
    int n;
};

static void append(struct transcript *t, const char *s, size_t n) {
    assert_true(t->len + n < sizeof(t->buf));
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static int collect(const char *event, const char *data, size_t data_len, void *userdata) {
    struct transcript *t = userdata;

    /* The documented NUL termination. */
    assert_non_null(data);
    assert_int_equal(data[data_len], '\0');
    if (event)
        assert_true(event[0] != '\0');

    if (event)
        append(t, event, strlen(event));
    append(t, "=", 1);
    append(t, data, data_len);
    append(t, "|", 1);

    t->n++;
    if (t->stop_after > 0 && t->n >= t->stop_after)
        return t->stop_ret;
    return 0;
}

struct row {
    const char *name;
    const char *in;
    size_t max; /* 0: 4096 */
    const char *events;
    int feed_r;     /* first error a feed returns */
    int finish_r;   /* finish()'s result */
    bool endings;   /* also run with "\n" replaced by "\r\n" and by "\r" */
};

static const struct row rows[] = {
    { "simple", "data: hello\n\n", 0, "=hello|", 0, 0, true },
    { "no space after colon", "data:hello\n\n", 0, "=hello|", 0, 0, true },
    { "only one space stripped", "data:  two\n\n", 0, "= two|", 0, 0, true },
    { "tab not stripped", "data:\tx\n\n", 0, "=\tx|", 0, 0, true },
    { "event type", "event: ping\ndata: 1\n\nevent: message\ndata: 2\n\n", 0,
      "ping=1|message=2|", 0, 0, true },
    { "event type after data", "data: 1\nevent: late\n\n", 0, "late=1|", 0, 0, true },
    { "last event type wins", "event: a\nevent: b\ndata: x\n\n", 0, "b=x|", 0, 0, true },
    { "empty event type is none", "event: a\nevent:\ndata: x\n\n", 0, "=x|", 0, 0, true },
    { "event type reset per event", "event: a\ndata: 1\n\ndata: 2\n\n", 0, "a=1|=2|", 0, 0,
      true },
    { "multi-line data", "data: a\ndata: b\ndata:\ndata:  c\n\n", 0, "=a\nb\n\n c|", 0, 0,
      true },
    { "comments", ": keep-alive\n\n: x\ndata: y\n: z\n\n:\n\n", 0, "=y|", 0, 0, true },
    { "colon in value", "data: a: b:c\n\n", 0, "=a: b:c|", 0, 0, true },
    { "field without colon", "data\n\n", 0, "=|", 0, 0, true },
    { "two empty data lines", "data\ndata\n\n", 0, "=\n|", 0, 0, true },
    { "empty data line", "data:\n\n", 0, "=|", 0, 0, true },
    { "no data, no event", "event: x\n\ndata: y\n\n", 0, "=y|", 0, 0, true },
    { "id and retry ignored", "id: 1\nretry: 1000\ndata: z\nid\n\n", 0, "=z|", 0, 0, true },
    { "unknown fields ignored", "foo: bar\ndatas: x\ndat: y\ndata : w\nDATA: v\ndata: z\n\n", 0,
      "=z|", 0, 0, true },
    { "long unknown field name", "averyveryverylongfieldname: x\ndata: z\n\n", 0, "=z|", 0, 0,
      true },
    { "blank lines only", "\n\n\n", 0, "", 0, 0, true },
    { "empty stream", "", 0, "", 0, 0, false },
    { "openai style with done", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", 0,
      "={\"a\":1}|={\"b\":2}|=[DONE]|", 0, 0, true },
    { "gemini style", "data: {\"candidates\":[]}\r\n\r\ndata: {\"usage\":{}}\r\n\r\n", 0,
      "={\"candidates\":[]}|={\"usage\":{}}|", 0, 0, false },
    { "mixed line endings", "data: a\r\ndata: b\rdata: c\n\r\n", 0, "=a\nb\nc|", 0, 0, false },
    { "lone CRs", "data: a\r\rdata: b\r\r", 0, "=a|=b|", 0, 0, false },
    { "LF CR is two endings", "data: a\n\rdata: b\n\n", 0, "=a|=b|", 0, 0, false },
    { "CR CR LF", "data: a\r\r\ndata: b\n\n", 0, "=a|=b|", 0, 0, false },
    { "BOM skipped", "\xEF\xBB\xBF" "data: x\n\n", 0, "=x|", 0, 0, true },
    { "BOM only at start", "data: x\n\n\xEF\xBB\xBF" "data: y\n\n", 0, "=x|", 0, 0, true },
    { "only one BOM skipped", "\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n", 0, "", 0, 0, true },
    { "partial BOM is text", "\xEF\xBB" "data: x\n\ndata: y\n\n", 0, "=y|", 0, 0, true },
    { "partial BOM then colon", "\xEF:\ndata: y\n\n", 0, "=y|", 0, 0, true },
    { "BOM then blank", "\xEF\xBB\xBF\ndata: y\n\n", 0, "=y|", 0, 0, true },
    { "non-UTF-8 passed through", "data: \xff\xfe\n\n", 0, "=\xff\xfe|", 0, 0, true },

    /* Cut streams. */
    { "cut after data line", "data: x\n\ndata: y\n", 0, "=x|", 0, -EPIPE, true },
    { "cut mid data line", "data: x\n\ndata: par", 0, "=x|", 0, -EPIPE, false },
    { "cut mid field name", "data: x\n\nda", 0, "=x|", 0, -EPIPE, false },
    { "cut after colon", "data:", 0, "", 0, -EPIPE, false },
    { "cut mid comment", "data: x\n\n: comm", 0, "=x|", 0, -EPIPE, false },
    { "cut after event line", "event: x\n", 0, "", 0, -EPIPE, true },
    { "cut after empty data", "data\n", 0, "", 0, -EPIPE, true },
    { "cut after CR", "data: x\r", 0, "", 0, -EPIPE, false },
    { "cut inside BOM", "\xEF\xBB", 0, "", 0, -EPIPE, false },
    { "complete comment at end", "data: x\n\n: bye\n", 0, "=x|", 0, 0, true },
    { "complete id at end", "data: x\n\nid: 3\nretry: 5\n", 0, "=x|", 0, 0, true },
    { "ends at CR of CRLF", "data: x\r\n\r", 0, "=x|", 0, 0, false },

    /* Bounds (max = 16). Lines count whole, prefix included. */
    { "line at limit", "data: 0123456789\n\n", 16, "=0123456789|", 0, 0, true },
    { "line over limit", "data: 0123456789a\n\n", 16, "", -EMSGSIZE, -EMSGSIZE, true },
    { "comment over limit", ": 0123456789abcdef\ndata: x\n\n", 16, "", -EMSGSIZE, -EMSGSIZE,
      true },
    { "unterminated line over limit", "data: x\n\n: 0123456789abcdef", 16, "=x|", -EMSGSIZE,
      -EMSGSIZE, false },
    { "event data at limit", "data:01234567\ndata:0123456\n\n", 16, "=01234567\n0123456|", 0,
      0, true },
    { "event data over limit", "data:01234567\ndata:01234567\n\n", 16, "", -EMSGSIZE,
      -EMSGSIZE, true },
    { "joining newline counts", "data:0123456789\ndata:01234\ndata\n\n", 16, "", -EMSGSIZE,
      -EMSGSIZE, true },
    { "event type counts", "event:abcdefgh\ndata:012345678\n\n", 16, "", -EMSGSIZE,
      -EMSGSIZE, true },
    { "event type and data at limit", "event:abcdefgh\ndata:01234567\n\n", 16,
      "abcdefgh=01234567|", 0, 0, true },
    { "error after good events", "data: a\n\ndata: b\n\ndata:0123456789abcdefgh\n\n", 16,
      "=a|=b|", -EMSGSIZE, -EMSGSIZE, true },
    { "limit resets per event", "data:0123456789\n\ndata:0123456789\n\n", 16,
      "=0123456789|=0123456789|", 0, 0, true },
    { "zero limit, blank lines", "\n\n", SIZE_MAX, "", 0, 0, true },
    { "zero limit, data", "\ndata\n\n", SIZE_MAX, "", -EMSGSIZE, -EMSGSIZE, true },
};

static size_t row_max(const struct row *r) {
    if (r->max == SIZE_MAX)
        return 0;
    return r->max ? r->max : 4096;
}

/* Feed in pieces cut at cuts[0..n_cuts) (ascending); check that every feed
 * after the first error repeats it; return the first error. */
static void run_cuts(const struct row *r, const char *in, size_t len, const size_t *cuts,
                     size_t n_cuts, const char *what) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };
    int first = 0;
    size_t prev = 0;

    aigw_sse_decoder_init(&d, row_max(r));
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        int q = aigw_sse_decoder_feed(&d, in + prev, end - prev, collect, &t);
        if (first < 0)
            assert_int_equal(q, first);
        else if (q < 0)
            first = q;
        else
            assert_int_equal(q, 0);
        prev = end;
    }
    int fin = aigw_sse_decoder_finish(&d, collect, &t);
    aigw_sse_decoder_done(&d);

    if (first != r->feed_r || fin != r->finish_r || strcmp(t.buf, r->events) != 0) {
        print_error("row \"%s\" (%s), cuts:", r->name, what);
        for (size_t k = 0; k < n_cuts; k++)
            print_error(" %zu", cuts[k]);
        print_error("\n  got events \"%s\" feed %d finish %d\n", t.buf, first, fin);
        fail();
    }
}

static void run_all_splits(const struct row *r, const char *in, size_t len, const char *what) {
    size_t cuts[2];

    run_cuts(r, in, len, NULL, 0, what);

    for (size_t a = 0; a <= len; a++) {
        cuts[0] = a;
        run_cuts(r, in, len, cuts, 1, what);
        for (size_t b = a; b <= len; b++) {
            cuts[1] = b;
            run_cuts(r, in, len, cuts, 2, what);
        }
    }

    size_t *each = malloc((len + 1) * sizeof(size_t));
    assert_non_null(each);
    for (size_t k = 0; k < len; k++)
        each[k] = k + 1;
    run_cuts(r, in, len, each, len, what); /* one byte at a time */
    free(each);
}

/* s with every "\n" replaced by nl. */
static char *replace_lf(const char *s, const char *nl) {
    size_t n = 0, nl_len = strlen(nl);
    for (const char *p = s; *p; p++)
        n += *p == '\n' ? nl_len : 1;
    char *out = malloc(n + 1), *o = out;
    assert_non_null(out);
    for (const char *p = s; *p; p++) {
        if (*p == '\n') {
            memcpy(o, nl, nl_len);
            o += nl_len;
        } else
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

static void test_decoder_table(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        const struct row *r = &rows[i];

        run_all_splits(r, r->in, strlen(r->in), "LF");
        if (!r->endings)
            continue;

        _cleanup_free_ char *crlf = replace_lf(r->in, "\r\n");
        _cleanup_free_ char *cr = replace_lf(r->in, "\r");
        run_all_splits(r, crlf, strlen(crlf), "CRLF");
        run_all_splits(r, cr, strlen(cr), "CR");
    }
}

/* The case the line-ending rule exists for, spelled out: a CR ending one
 * slice and an LF starting the next are one line ending, so "x" and "y"
 * are one event. Were the LF a second ending, "x" would dispatch alone. */
static void test_crlf_split_across_feeds(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, "data: x\r", 8, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_feed(&d, "\ndata: y\r", 9, collect, &t), 0);
    assert_string_equal(t.buf, "");
    assert_int_equal(aigw_sse_decoder_feed(&d, "\n", 1, collect, &t), 0);
    assert_string_equal(t.buf, "");
    /* Not a continuation: this CR is the blank line. */
    assert_int_equal(aigw_sse_decoder_feed(&d, "\r", 1, collect, &t), 0);
    assert_string_equal(t.buf, "=x\ny|");
    /* And the LF after it is swallowed, not a second blank line. */
    assert_int_equal(aigw_sse_decoder_feed(&d, "\ndata: z\n\n", 10, collect, &t), 0);
    assert_string_equal(t.buf, "=x\ny|=z|");
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), 0);
    aigw_sse_decoder_done(&d);
}

static void test_empty_feeds(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, NULL, 0, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_feed(&d, "\xEF", 1, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_feed(&d, NULL, 0, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_feed(&d, "\xBB\xBF" "data: 1\n\n", 11, collect, &t), 0);
    assert_string_equal(t.buf, "=1|");
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), 0);
    aigw_sse_decoder_done(&d);
}

static void test_nul_in_data(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };
    static const char in[] = "data: a\0b\n\n";

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, sizeof(in) - 1, collect, &t), 0);
    assert_int_equal(t.len, 5);
    assert_memory_equal(t.buf, "=a\0b|", 5);
    aigw_sse_decoder_done(&d);
}

static void test_nul_in_event_type(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };
    static const char in[] = "event: ab\0c\ndata: 1\n\nevent: \0x\ndata: 2\n\n";

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, sizeof(in) - 1, collect, &t), 0);
    assert_string_equal(t.buf, "ab=1|=2|");
    aigw_sse_decoder_done(&d);
}

static void test_callback_stops(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .stop_after = 2, .stop_ret = -ECANCELED };
    static const char in[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, strlen(in), collect, &t), -ECANCELED);
    assert_string_equal(t.buf, "=1|=2|");
    /* Sticky: the rest of the slice was never parsed. */
    assert_int_equal(aigw_sse_decoder_feed(&d, "data: 4\n\n", 9, collect, &t), -ECANCELED);
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), -ECANCELED);
    assert_string_equal(t.buf, "=1|=2|");
    aigw_sse_decoder_done(&d);

    /* A positive return is not an error. */
    struct transcript t2 = { .stop_after = 1, .stop_ret = 7 };
    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, strlen(in), collect, &t2), 0);
    assert_string_equal(t2.buf, "=1|=2|=3|");
    aigw_sse_decoder_done(&d);
}

static void test_null_callback(void **state) {
    struct aigw_sse_decoder d;

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, "data: 1\n\n", 9, NULL, NULL), 0);
    assert_int_equal(aigw_sse_decoder_finish(&d, NULL, NULL), 0);
    aigw_sse_decoder_done(&d);
}

static void test_event_type_limit(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };
    char in[AIGW_SSE_EVENT_TYPE_MAX + 64];
    char expect[AIGW_SSE_EVENT_TYPE_MAX + 16];
    int n;

    /* Exactly AIGW_SSE_EVENT_TYPE_MAX: accepted. */
    n = snprintf(in, sizeof(in), "event: %0*d\ndata: x\n\n", AIGW_SSE_EVENT_TYPE_MAX, 0);
    snprintf(expect, sizeof(expect), "%0*d=x|", AIGW_SSE_EVENT_TYPE_MAX, 0);
    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, (size_t)n, collect, &t), 0);
    assert_string_equal(t.buf, expect);
    aigw_sse_decoder_done(&d);

    /* One more, even split over feeds: refused. */
    n = snprintf(in, sizeof(in), "event: %0*d\ndata: x\n\n", AIGW_SSE_EVENT_TYPE_MAX + 1, 0);
    t.len = 0;
    t.buf[0] = '\0';
    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, in, 60, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_feed(&d, in + 60, (size_t)n - 60, collect, &t),
                     -EMSGSIZE);
    assert_string_equal(t.buf, "");
    aigw_sse_decoder_done(&d);
}

/* The heap stays within max_event_bytes + 1, whatever the stream does. */
static void test_memory_bound(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };
    char line[64];

    aigw_sse_decoder_init(&d, 40);
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(line, sizeof(line), "data:%d\n", i % 10);
        int q = aigw_sse_decoder_feed(&d, line, (size_t)n, collect, &t);
        assert_true(d.data_alloc <= 41);
        if (q < 0) {
            /* 20 lines of 1 byte + 19 joins = 39; the 21st overflows. */
            assert_int_equal(q, -EMSGSIZE);
            assert_int_equal(i, 20);
            break;
        }
    }
    aigw_sse_decoder_done(&d);

    /* Comments are not buffered at all. */
    aigw_sse_decoder_init(&d, 40);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(aigw_sse_decoder_feed(&d, ": 0123456789012345678901234567\n", 31,
                                               collect, &t),
                         0);
    assert_null(d.data);
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), 0);
    aigw_sse_decoder_done(&d);
}

static void test_reuse_after_finish(void **state) {
    struct aigw_sse_decoder d;
    struct transcript t = { .len = 0 };

    aigw_sse_decoder_init(&d, 1024);
    assert_int_equal(aigw_sse_decoder_feed(&d, "event: e\ndata: cut", 18, collect, &t), 0);
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), -EPIPE);
    /* Nothing of the cut event leaks into the next stream, and a BOM is
     * skipped again at its start. */
    assert_int_equal(aigw_sse_decoder_feed(&d, "\xEF\xBB\xBF" "data: new\n\n", 14, collect, &t),
                     0);
    assert_string_equal(t.buf, "=new|");
    assert_int_equal(aigw_sse_decoder_finish(&d, collect, &t), 0);
    aigw_sse_decoder_done(&d);
    aigw_sse_decoder_done(&d); /* idempotent */
    aigw_sse_decoder_done(NULL);
}

struct enc_row {
    const char *event;
    const char *data;
    size_t len;
    const char *out;
    const char *decoded_event; /* NULL: none */
    const char *decoded_data;
};

static const struct enc_row enc_rows[] = {
    { NULL, "hello", 5, "data: hello\n\n", NULL, "hello" },
    { "ping", "{}", 2, "event: ping\ndata: {}\n\n", "ping", "{}" },
    { "", "x", 1, "data: x\n\n", NULL, "x" },
    { NULL, "", 0, "data: \n\n", NULL, "" },
    { NULL, NULL, 0, "data: \n\n", NULL, "" },
    { NULL, "a\nb", 3, "data: a\ndata: b\n\n", NULL, "a\nb" },
    { NULL, "a\r\nb", 4, "data: a\ndata: b\n\n", NULL, "a\nb" },
    { NULL, "a\rb", 3, "data: a\ndata: b\n\n", NULL, "a\nb" },
    { NULL, "a\r\r\nb", 5, "data: a\ndata: \ndata: b\n\n", NULL, "a\n\nb" },
    { NULL, "\n", 1, "data: \ndata: \n\n", NULL, "\n" },
    { NULL, "a\n", 2, "data: a\ndata: \n\n", NULL, "a\n" },
    { NULL, "\r", 1, "data: \ndata: \n\n", NULL, "\n" },
    { NULL, " lead", 5, "data:  lead\n\n", NULL, " lead" },
    { NULL, ": not a comment", 15, "data: : not a comment\n\n", NULL, ": not a comment" },
    { " sp", "x", 1, "event:  sp\ndata: x\n\n", " sp", "x" },
    { NULL, "[DONE]", 6, "data: [DONE]\n\n", NULL, "[DONE]" },
};

struct one_event {
    int n;
    char event[256];
    bool has_event;
    char data[256];
    size_t data_len;
};

static int keep_one(const char *event, const char *data, size_t data_len, void *userdata) {
    struct one_event *e = userdata;

    e->n++;
    e->has_event = event != NULL;
    if (event)
        snprintf(e->event, sizeof(e->event), "%s", event);
    assert_true(data_len < sizeof(e->data));
    memcpy(e->data, data, data_len);
    e->data_len = data_len;
    return 0;
}

static void decode_one(const char *buf, size_t len, struct one_event *e) {
    struct aigw_sse_decoder d;

    *e = (struct one_event){ .n = 0 };
    aigw_sse_decoder_init(&d, 4096);
    assert_int_equal(aigw_sse_decoder_feed(&d, buf, len, keep_one, e), 0);
    assert_int_equal(aigw_sse_decoder_finish(&d, keep_one, e), 0);
    aigw_sse_decoder_done(&d);
    assert_int_equal(e->n, 1);
}

static void test_encode_table(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(enc_rows); i++) {
        const struct enc_row *r = &enc_rows[i];
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct one_event e;

        assert_int_equal(aigw_sse_encode(r->event, r->data, r->len, &buf, &len), 0);
        assert_int_equal(len, strlen(r->out));
        assert_string_equal(buf, r->out);

        decode_one(buf, len, &e);
        if (r->decoded_event) {
            assert_true(e.has_event);
            assert_string_equal(e.event, r->decoded_event);
        } else
            assert_false(e.has_event);
        assert_int_equal(e.data_len, strlen(r->decoded_data));
        assert_memory_equal(e.data, r->decoded_data, e.data_len);
    }
}

static void test_encode_errors(void **state) {
    char *buf = (char *)"untouched";
    size_t len = 77;
    char long_event[AIGW_SSE_EVENT_TYPE_MAX + 2];

    assert_int_equal(aigw_sse_encode("a\nb", "x", 1, &buf, &len), -EINVAL);
    assert_int_equal(aigw_sse_encode("a\rb", "x", 1, &buf, &len), -EINVAL);
    assert_int_equal(aigw_sse_encode(NULL, NULL, 1, &buf, &len), -EINVAL);
    memset(long_event, 'e', sizeof(long_event) - 1);
    long_event[sizeof(long_event) - 1] = '\0';
    assert_int_equal(aigw_sse_encode(long_event, "x", 1, &buf, &len), -EINVAL);
    assert_string_equal(buf, "untouched");
    assert_int_equal(len, 77);

    /* One shorter is the longest accepted. */
    long_event[AIGW_SSE_EVENT_TYPE_MAX] = '\0';
    assert_int_equal(aigw_sse_encode(long_event, "x", 1, &buf, &len), 0);
    assert_int_equal(len, 7 + AIGW_SSE_EVENT_TYPE_MAX + 1 + 8 + 1);
    free(buf);
}

/* Random data over an alphabet rich in line breaks, colons and spaces:
 * decode(encode(x)) is x with CRLF and CR turned into LF. */
static void test_encode_round_trip_random(void **state) {
    static const char alphabet[] = { 'a', ' ', ':', '\r', '\n', '\0', '\xc3', '\xa9' };
    uint32_t seed = 12345;

    for (int iter = 0; iter < 3000; iter++) {
        char data[64], expect[64];
        size_t len, elen = 0;

        seed = seed * 1103515245 + 12345;
        len = (seed >> 16) % sizeof(data);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245 + 12345;
            data[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
        }
        for (size_t i = 0; i < len; i++) {
            if (data[i] == '\r') {
                expect[elen++] = '\n';
                if (i + 1 < len && data[i + 1] == '\n')
                    i++;
            } else
                expect[elen++] = data[i];
        }

        _cleanup_free_ char *buf = NULL;
        size_t blen;
        struct one_event e;
        assert_int_equal(aigw_sse_encode(iter % 2 ? "delta" : NULL, data, len, &buf, &blen), 0);
        decode_one(buf, blen, &e);
        assert_int_equal(e.has_event, iter % 2);
        assert_int_equal(e.data_len, elen);
        assert_memory_equal(e.data, expect, elen);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_table),
        cmocka_unit_test(test_crlf_split_across_feeds),
        cmocka_unit_test(test_empty_feeds),
        cmocka_unit_test(test_nul_in_data),
        cmocka_unit_test(test_nul_in_event_type),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_null_callback),
        cmocka_unit_test(test_event_type_limit),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_reuse_after_finish),
        cmocka_unit_test(test_encode_table),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_round_trip_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

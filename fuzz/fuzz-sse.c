/* SPDX-License-Identifier: MIT */
/* Input: byte 0 picks max_event_bytes, byte 1 seeds how the stream is cut
 * into slices, the rest is the stream. Checks, besides memory safety:
 *   - the result (events, feed error, finish result) does not depend on
 *     how the stream is sliced;
 *   - the callback contract (NUL-terminated data, bounded sizes);
 *   - decode(encode(x)) == x with line breaks normalized to LF. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/macro.h"
#include "aigw/sse.h"

struct sink {
    char *buf;
    size_t len, cap;
    size_t max;
};

static void sink_add(struct sink *s, const void *p, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2 + 64;
        char *m = realloc(s->buf, cap);
        if (!m)
            abort();
        s->buf = m;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static int on_event(const char *event, const char *data, size_t data_len, void *userdata) {
    struct sink *s = userdata;
    size_t ev_len = event ? strlen(event) : 0;

    if (data[data_len] != '\0')
        abort();
    if (event && (ev_len == 0 || ev_len > AIGW_SSE_EVENT_TYPE_MAX))
        abort();
    if (data_len + ev_len > s->max)
        abort();

    /* Length-prefixed, so that distinct event sequences never collide. */
    sink_add(s, &ev_len, sizeof(ev_len));
    sink_add(s, event ? event : "", ev_len);
    sink_add(s, &data_len, sizeof(data_len));
    sink_add(s, data, data_len);
    return 0;
}

struct outcome {
    struct sink events;
    int feed_r;
    int finish_r;
};

/* seed 0: one slice; 1: one byte at a time; else slices of 1..16 bytes. */
static void decode(const char *in, size_t len, size_t max, uint32_t seed, struct outcome *o) {
    struct aigw_sse_decoder d;
    size_t off = 0;

    *o = (struct outcome){ .events.max = max };
    aigw_sse_decoder_init(&d, max);
    while (off < len) {
        size_t n = len - off;
        if (seed == 1)
            n = 1;
        else if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            n = MIN(n, 1 + (size_t)((seed >> 16) % 16));
        }
        int r = aigw_sse_decoder_feed(&d, in + off, n, on_event, &o->events);
        if (o->feed_r < 0 && r != o->feed_r)
            abort(); /* errors are sticky */
        if (r < 0)
            o->feed_r = r;
        off += n;
    }
    o->finish_r = aigw_sse_decoder_finish(&d, on_event, &o->events);
    if (o->feed_r < 0 && o->finish_r != o->feed_r)
        abort();
    aigw_sse_decoder_done(&d);
}

static void round_trip(const char *data, size_t len) {
    char *buf = NULL, *expect;
    size_t blen = 0, elen = 0;
    struct outcome o;

    if (aigw_sse_encode(len % 3 ? "ev" : NULL, data, len, &buf, &blen) < 0)
        abort();

    expect = malloc(len + 1);
    if (!expect)
        abort();
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r') {
            expect[elen++] = '\n';
            if (i + 1 < len && data[i + 1] == '\n')
                i++;
        } else
            expect[elen++] = data[i];
    }

    decode(buf, blen, len + 16, 0, &o);
    if (o.feed_r != 0 || o.finish_r != 0)
        abort();

    /* Exactly one event, carrying expect. */
    size_t ev_len, data_len, p = 0;
    if (o.events.len < 2 * sizeof(size_t))
        abort();
    memcpy(&ev_len, o.events.buf, sizeof(ev_len));
    p += sizeof(ev_len) + ev_len;
    memcpy(&data_len, o.events.buf + p, sizeof(data_len));
    p += sizeof(data_len);
    if (ev_len != (len % 3 ? 2u : 0u) || data_len != elen ||
        memcmp(o.events.buf + p, expect, elen) != 0 || p + data_len != o.events.len)
        abort();

    free(o.events.buf);
    free(expect);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct outcome whole, sliced, bytewise;

    if (size < 2)
        return 0;

    size_t max = data[0] == 0xFF ? 0 : 1 + (size_t)data[0] * 2;
    uint32_t seed = data[1] | 0x100u; /* never 0 or 1 */
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    decode(in, len, max, 0, &whole);
    decode(in, len, max, seed, &sliced);
    decode(in, len, max, 1, &bytewise);

    struct outcome *others[] = { &sliced, &bytewise };
    for (size_t k = 0; k < 2; k++) {
        const struct outcome *o = others[k];
        if (o->feed_r != whole.feed_r || o->finish_r != whole.finish_r ||
            o->events.len != whole.events.len ||
            (whole.events.len > 0 && memcmp(o->events.buf, whole.events.buf, whole.events.len) != 0))
            abort();
    }

    free(whole.events.buf);
    free(sliced.events.buf);
    free(bytewise.events.buf);

    if (len <= 4096)
        round_trip(in, len);
    return 0;
}

/* SPDX-License-Identifier: MIT */
#include "aigw/sse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/macro.h"

/* Lines are parsed as they stream in rather than buffered whole: only the
 * values of data: and event: fields are kept, so memory is bounded by what
 * an event accumulates, and a long comment costs nothing but a counter. */
enum {
    STATE_NAME,        /* field name, up to the first ':' */
    STATE_VALUE_START, /* just after the ':'; one space may follow */
    STATE_VALUE,
};

enum {
    FIELD_IGNORED, /* comments, id:, retry:, unknown names */
    FIELD_DATA,
    FIELD_EVENT,
};

static const char utf8_bom[3] = "\xEF\xBB\xBF";

void aigw_sse_decoder_init(struct aigw_sse_decoder *d, size_t max_event_bytes) {
    *d = (struct aigw_sse_decoder){
        /* The data buffer holds max_event_bytes + 1 (NUL); keep that sum
         * from wrapping. */
        .max_event_bytes = MIN(max_event_bytes, SIZE_MAX - 1),
        .state = STATE_NAME,
        .field = FIELD_IGNORED,
        .at_start = true,
    };
}

static void reset_line(struct aigw_sse_decoder *d) {
    d->state = STATE_NAME;
    d->field = FIELD_IGNORED;
    d->name_len = 0;
    d->line_len = 0;
}

static void reset_event(struct aigw_sse_decoder *d) {
    d->data_len = 0;
    d->has_data = false;
    d->in_event = false;
    d->event_len = 0;
}

void aigw_sse_decoder_done(struct aigw_sse_decoder *d) {
    if (!d)
        return;
    free(d->data);
    d->data = NULL;
    d->data_alloc = 0;
    reset_event(d);
}

/* Invariant: data_len + event_len <= max_event_bytes. */
static int check_event_room(const struct aigw_sse_decoder *d, size_t n) {
    if (n > d->max_event_bytes - d->data_len - d->event_len)
        return -EMSGSIZE;
    return 0;
}

static int append_data(struct aigw_sse_decoder *d, const char *p, size_t n) {
    int r;

    r = check_event_room(d, n);
    if (r < 0)
        return r;

    /* +1: the NUL written at dispatch. Never above max_event_bytes + 1,
     * by the invariant. */
    size_t need = d->data_len + n + 1;
    if (need > d->data_alloc) {
        size_t cap = MAX(d->data_alloc, (size_t)256);
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        cap = MIN(cap, d->max_event_bytes + 1);

        char *m = realloc(d->data, cap);
        if (!m)
            return -ENOMEM;
        d->data = m;
        d->data_alloc = cap;
    }

    memcpy(d->data + d->data_len, p, n);
    d->data_len += n;
    return 0;
}

static int append_event(struct aigw_sse_decoder *d, const char *p, size_t n) {
    int r;

    if (n > AIGW_SSE_EVENT_TYPE_MAX - d->event_len)
        return -EMSGSIZE;
    r = check_event_room(d, n);
    if (r < 0)
        return r;

    memcpy(d->event + d->event_len, p, n);
    d->event_len += n;
    return 0;
}

/* The field name is complete (a ':' or the line end was seen). */
static int begin_field(struct aigw_sse_decoder *d) {
    if (d->name_len == 4 && memcmp(d->name, "data", 4) == 0) {
        d->field = FIELD_DATA;
        d->in_event = true;
        if (d->has_data) {
            int r = append_data(d, "\n", 1);
            if (r < 0)
                return r;
        } else {
            /* The first data line must reserve room for the NUL even
             * when empty, so that dispatch always has a buffer. */
            int r = append_data(d, "", 0);
            if (r < 0)
                return r;
        }
        d->has_data = true;
    } else if (d->name_len == 5 && memcmp(d->name, "event", 5) == 0) {
        d->field = FIELD_EVENT;
        d->in_event = true;
        d->event_len = 0; /* the last event: line wins */
    } else
        d->field = FIELD_IGNORED;
    return 0;
}

/* n bytes of one line, none of them CR or LF. */
static int line_bytes(struct aigw_sse_decoder *d, const char *p, size_t n) {
    int r;

    while (n > 0) {
        switch (d->state) {

        case STATE_NAME: {
            const char *colon = memchr(p, ':', n);
            size_t k = colon ? (size_t)(colon - p) : n;

            /* Names longer than the buffer are never "data" or "event";
             * only their length is kept, to tell them apart. */
            if (d->name_len < sizeof(d->name))
                memcpy(d->name + d->name_len, p, MIN(k, sizeof(d->name) - d->name_len));
            d->name_len += k; /* bounded by line_len, cannot wrap */

            if (!colon)
                return 0;

            r = begin_field(d);
            if (r < 0)
                return r;
            d->state = STATE_VALUE_START;
            p += k + 1;
            n -= k + 1;
            break;
        }

        case STATE_VALUE_START:
            if (p[0] == ' ') {
                p++;
                n--;
            }
            d->state = STATE_VALUE;
            break;

        case STATE_VALUE:
            if (d->field == FIELD_DATA)
                return append_data(d, p, n);
            if (d->field == FIELD_EVENT)
                return append_event(d, p, n);
            return 0;

        default:
            return -EINVAL;
        }
    }
    return 0;
}

static int dispatch(struct aigw_sse_decoder *d, aigw_sse_event_cb cb, void *userdata) {
    if (!d->has_data) {
        /* An event without data is dropped, and its type with it. */
        reset_event(d);
        return 0;
    }

    /* begin_field() made sure the buffer exists with room for the NUL. */
    d->data[d->data_len] = '\0';
    d->event[d->event_len] = '\0';

    /* The callback gets the type as a C string: one with a NUL byte is
     * seen cut there, and one cut to nothing is no type at all. */
    const char *event = d->event[0] != '\0' ? d->event : NULL;
    size_t data_len = d->data_len;

    /* Reset first: the bytes stay valid during the call, and the decoder
     * is consistent whatever the callback returns. */
    reset_event(d);

    if (!cb)
        return 0;
    int r = cb(event, d->data, data_len, userdata);
    return r < 0 ? r : 0;
}

static int end_line(struct aigw_sse_decoder *d, aigw_sse_event_cb cb, void *userdata) {
    int r = 0;

    if (d->state == STATE_NAME) {
        if (d->name_len == 0)
            r = dispatch(d, cb, userdata);
        else
            /* A line without a colon is a field with an empty value. */
            r = begin_field(d);
    }
    reset_line(d);
    return r;
}

static int parse(struct aigw_sse_decoder *d, const char *buf, size_t len, aigw_sse_event_cb cb,
                 void *userdata) {
    size_t i = 0;
    int r;

    while (i < len) {
        char c = buf[i];

        if (d->skip_lf) {
            /* CR LF is one line ending even when the slices split it. */
            d->skip_lf = false;
            if (c == '\n') {
                i++;
                continue;
            }
        }

        if (c == '\r' || c == '\n') {
            d->skip_lf = c == '\r';
            i++;
            r = end_line(d, cb, userdata);
            if (r < 0)
                return r;
            continue;
        }

        const char *lf = memchr(buf + i, '\n', len - i);
        size_t run = lf ? (size_t)(lf - (buf + i)) : len - i;
        const char *cr = memchr(buf + i, '\r', run);
        if (cr)
            run = (size_t)(cr - (buf + i));

        /* Invariant: line_len <= max_event_bytes. */
        if (run > d->max_event_bytes - d->line_len)
            return -EMSGSIZE;
        d->line_len += run;

        r = line_bytes(d, buf + i, run);
        if (r < 0)
            return r;
        i += run;
    }
    return 0;
}

int aigw_sse_decoder_feed(struct aigw_sse_decoder *d, const char *buf, size_t len,
                          aigw_sse_event_cb cb, void *userdata) {
    size_t i = 0;
    int r;

    if (d->error < 0)
        return d->error;
    if (len == 0) /* buf may be NULL */
        return 0;

    /* The BOM may arrive split over several slices; the bytes matched so
     * far are replayed as ordinary text if it turns out not to be one. */
    while (d->at_start && i < len) {
        if (buf[i] == utf8_bom[d->bom_seen]) {
            i++;
            if (++d->bom_seen == sizeof(utf8_bom))
                d->at_start = false;
            continue;
        }

        d->at_start = false;
        r = parse(d, utf8_bom, d->bom_seen, cb, userdata);
        if (r < 0)
            return (d->error = r);
    }

    r = parse(d, buf + i, len - i, cb, userdata);
    if (r < 0)
        return (d->error = r);
    return 0;
}

int aigw_sse_decoder_finish(struct aigw_sse_decoder *d, _unused_ aigw_sse_event_cb cb,
                            _unused_ void *userdata) {
    if (d->error < 0)
        return d->error;

    bool cut = d->in_event || d->line_len > 0 || (d->at_start && d->bom_seen > 0);

    reset_event(d);
    reset_line(d);
    d->skip_lf = false;
    d->bom_seen = 0;
    d->at_start = true;

    return cut ? -EPIPE : 0;
}

int aigw_sse_encode(const char *event, const char *data, size_t len, char **ret_buf,
                    size_t *ret_len) {
    size_t event_len = event ? strlen(event) : 0;

    if (event_len > AIGW_SSE_EVENT_TYPE_MAX || (event && strpbrk(event, "\r\n")))
        return -EINVAL;
    if (!data && len > 0)
        return -EINVAL;

    /* Worst case every byte is a line break, each turning into
     * "\ndata: ": 7 bytes per input byte. */
    if (len > (SIZE_MAX - 256) / 8)
        return -ENOMEM;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\n' || (data[i] == '\r' && (i + 1 >= len || data[i + 1] != '\n')))
            lines++;

    size_t cap = (event_len > 0 ? strlen("event: \n") + event_len : 0) +
                 lines * strlen("data: \n") + len + strlen("\n") + 1;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;

    size_t o = 0;
    if (event_len > 0) {
        memcpy(buf + o, "event: ", 7);
        o += 7;
        memcpy(buf + o, event, event_len);
        o += event_len;
        buf[o++] = '\n';
    }

    size_t start = 0;
    for (size_t i = 0;; i++) {
        if (i < len && data[i] != '\n' && data[i] != '\r')
            continue;

        memcpy(buf + o, "data: ", 6);
        o += 6;
        if (i > start) /* data may be NULL when len is 0 */
            memcpy(buf + o, data + start, i - start);
        o += i - start;
        buf[o++] = '\n';

        if (i >= len)
            break;
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    buf[o++] = '\n';
    buf[o] = '\0';

    *ret_buf = TAKE_PTR(buf);
    *ret_len = o;
    return 0;
}

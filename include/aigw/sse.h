/* SPDX-License-Identifier: MIT */
#pragma once

/* Server-Sent Events: an incremental decoder for the streams upstream LLM
 * APIs send (OpenAI-compatible "data: {...}\n\n", Gemini's
 * "data: {...}\r\n\r\n") and an encoder for what aigw streams to its
 * clients. Parsing follows the WHATWG EventSource rules. Pure logic: the
 * caller does the I/O. */

#include <stdbool.h>
#include <stddef.h>

/* Longest "event:" value accepted. Event types are short identifiers
 * ("message", "response.output_text.delta"). */
#define AIGW_SSE_EVENT_TYPE_MAX 127

/* Called once per dispatched event. event is NULL when the event had no
 * (or an empty) "event:" field; a type containing a NUL byte is seen cut
 * there. data is NUL-terminated as well as length-delimited (it may contain
 * NUL bytes if the stream did). Both pointers are valid only during the
 * call. Return < 0 to stop: the value is returned by the feed call. */
typedef int (*aigw_sse_event_cb)(const char *event, const char *data, size_t data_len,
                                 void *userdata);

/* Fields are private; the struct is public only so callers can embed it. */
struct aigw_sse_decoder {
    size_t max_event_bytes;

    /* Data of the event being assembled; lines joined with '\n'. */
    char *data;
    size_t data_len;
    size_t data_alloc;
    bool has_data; /* at least one data line, so a blank line dispatches */
    bool in_event; /* a data: or event: line since the last blank line */

    /* Event type of the event being assembled; "" means none. A fixed array
     * rather than a second heap buffer, so that the heap use stays within
     * max_event_bytes + 1 even when one event had a long type and the next
     * long data. */
    char event[AIGW_SSE_EVENT_TYPE_MAX + 1];
    size_t event_len;

    /* Line being parsed. */
    unsigned state;    /* internal enum */
    unsigned field;    /* internal enum: the field the current line sets */
    char name[8];      /* field name so far; longer names are never ones we know */
    size_t name_len;   /* may exceed sizeof(name) */
    size_t line_len;   /* bytes of the current line, terminator excluded */
    bool skip_lf;      /* previous byte was CR: a following LF ends nothing */
    unsigned bom_seen; /* bytes of a UTF-8 BOM matched at stream start */
    bool at_start;     /* nothing consumed yet (BOM still possible) */

    int error; /* sticky: once set, every feed returns it */
};

/* max_event_bytes bounds what one event may accumulate: its data
 * (including the '\n' joining lines) plus its event type. A single line
 * longer than that is refused too, even a comment. The decoder never
 * allocates more than max_event_bytes + 1 bytes; init itself allocates
 * nothing. */
void aigw_sse_decoder_init(struct aigw_sse_decoder *d, size_t max_event_bytes);

/* Parse the next slice of the stream; slices may split the stream anywhere,
 * even between the CR and LF of one line ending. Calls cb for each complete
 * event. Returns 0, or:
 *   -EMSGSIZE  an event or a line exceeds max_event_bytes, or an event type
 *              exceeds AIGW_SSE_EVENT_TYPE_MAX,
 *   -ENOMEM,
 *   the callback's negative return value.
 * Any error breaks the stream: the rest of the slice is not parsed and later
 * feed/finish calls return the same error. Bytes are passed through as they
 * are: the decoder does not validate UTF-8. */
int aigw_sse_decoder_feed(struct aigw_sse_decoder *d, const char *buf, size_t len,
                          aigw_sse_event_cb cb, void *userdata);

/* End of stream. Per the EventSource rules an event without its terminating
 * blank line is discarded, never dispatched (cb is therefore never called;
 * it is accepted so that callers can treat feed and finish alike).
 * Returns:
 *   0        the stream ended at an event boundary (after a blank line, or
 *            after lines that carry nothing: comments, id:, retry:,
 *            unknown fields),
 *   -EPIPE   it was cut mid-event: inside a line, or after data:/event:
 *            lines not followed by a blank line,
 *   the sticky error if the stream was broken before.
 * Afterwards the decoder is back in its start-of-stream state (a sticky
 * error stays) and may be fed a new stream. */
int aigw_sse_decoder_finish(struct aigw_sse_decoder *d, aigw_sse_event_cb cb, void *userdata);

/* Free the buffers; d itself is the caller's. Accepts NULL. */
void aigw_sse_decoder_done(struct aigw_sse_decoder *d);

/* Encode one event: "event: <event>\n" when event is non-NULL and non-empty,
 * then one "data: <line>\n" per line of data, then "\n". Line breaks in data
 * (LF, CRLF, CR) split it into data lines, so decoding gives back data with
 * every break turned into LF. len == 0 encodes one empty data line (which
 * still dispatches an event with empty data). data may be NULL if len is 0.
 * *ret_buf is NUL-terminated, *ret_len excludes the NUL; free() it.
 * Returns 0, -EINVAL if event contains CR or LF (it would inject lines) or
 * is longer than AIGW_SSE_EVENT_TYPE_MAX, -ENOMEM. */
int aigw_sse_encode(const char *event, const char *data, size_t len, char **ret_buf,
                    size_t *ret_len);

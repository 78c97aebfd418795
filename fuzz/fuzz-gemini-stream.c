/* SPDX-License-Identifier: MIT */

/* Feeds a sequence of SSE event payloads, separated by NUL bytes, to the
 * stream translator and checks the chunk invariants: role only on the first
 * chunk of a choice, finish_reason only from finish and exactly once per
 * choice, usage only on a final index -1 chunk. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/backend-gemini.h"
#include "aigw/chat-model.h"

#define MAX_SEEN 64

struct seen {
    int index;
    bool started;
    bool finished;
};

static struct seen *lookup(struct seen *seen, size_t *n, int index) {
    for (size_t i = 0; i < *n; i++)
        if (seen[i].index == index)
            return &seen[i];
    if (*n >= MAX_SEEN)
        abort();
    seen[*n] = (struct seen) { .index = index };
    return &seen[(*n)++];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct seen seen[MAX_SEEN];
    size_t n_seen = 0, off = 0;
    struct aigw_gemini_stream s;
    struct aigw_chat_chunk *chunks;
    struct aigw_error err;
    size_t n;
    int r = 0;

    aigw_gemini_stream_init(&s);
    while (off <= size) {
        const uint8_t *end = memchr(data + off, 0, size - off);
        size_t len = end ? (size_t) (end - (data + off)) : size - off;

        r = aigw_gemini_stream_event(&s, (const char *) data + off, len, &chunks, &n, &err);
        if (r < 0)
            break;
        if ((n == 0) != (chunks == NULL))
            abort();
        for (size_t i = 0; i < n; i++) {
            struct seen *e = lookup(seen, &n_seen, chunks[i].index);
            if (chunks[i].finish_reason || chunks[i].usage.present || !chunks[i].content ||
                chunks[i].content[0] == '\0' || e->finished || chunks[i].role == e->started)
                abort();
            e->started = true;
        }
        aigw_chat_chunks_free(chunks, n);
        off += len + 1;
    }

    if (r == 0 && aigw_gemini_stream_finish(&s, &chunks, &n, &err) == 0) {
        size_t n_finish = 0;

        for (size_t i = 0; i < n; i++) {
            if (chunks[i].index == -1) {
                if (i != n - 1 || !chunks[i].usage.present || chunks[i].finish_reason)
                    abort();
                continue;
            }
            struct seen *e = lookup(seen, &n_seen, chunks[i].index);
            if (!chunks[i].finish_reason || chunks[i].content || chunks[i].usage.present ||
                e->finished || chunks[i].role == e->started)
                abort();
            e->finished = true;
            n_finish++;
        }
        /* every choice that produced content got its finish chunk */
        for (size_t i = 0; i < n_seen; i++)
            if (seen[i].started && !seen[i].finished)
                abort();
        if (n_finish == 0)
            abort();
        aigw_chat_chunks_free(chunks, n);
    }
    aigw_gemini_stream_done(&s);
    return 0;
}

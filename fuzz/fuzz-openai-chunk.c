/* SPDX-License-Identifier: MIT */
/* The upstream side of OpenAI-compatible backends: the input is read as a
 * stream event (aigw_openai_parse_chunk), as a whole response
 * (aigw_openai_parse_response) and as an error body
 * (aigw_openai_map_error); whatever parses is rendered again. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/chat-model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const long statuses[] = { 0, 400, 401, 404, 408, 429, 500, 503 };
    const struct aigw_render_opts o = {
        .id = "chatcmpl-fuzz", .created = 1, .model = "m", .backend = "b", .chat_shape = true
    };
    struct aigw_chat_chunk *chunks = NULL;
    struct aigw_chat_response resp = {};
    struct aigw_error err = {};
    size_t n = 0;
    bool done = false;
    char *out;

    if (aigw_openai_parse_chunk((const char *)data, size, &chunks, &n, &done, &err) >= 0) {
        if ((n == 0) != (chunks == NULL) || (done && n > 0))
            abort();
        for (size_t i = 0; i < n; i++) {
            out = aigw_chat_chunk_render(&chunks[i], &o);
            if (!out)
                abort();
            free(out);
        }
        aigw_chat_chunks_free(chunks, n);
    } else {
        out = aigw_error_render(&err);
        if (!out)
            abort();
        free(out);
    }

    if (aigw_openai_parse_response((const char *)data, size, &resp, &err) >= 0) {
        if (resp.n_choices == 0)
            abort();
        for (size_t i = 0; i < resp.n_choices; i++)
            if (!resp.choices[i].content || !resp.choices[i].finish_reason)
                abort();
        out = aigw_chat_response_render(&resp, &o);
        if (!out)
            abort();
        free(out);
        aigw_chat_response_free(&resp);
    }

    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        aigw_openai_map_error(statuses[i], (const char *)data, size, &err);
        if (err.status < 400 || err.status > 599 || !err.type ||
            strlen(err.message) >= sizeof(err.message))
            abort();
        out = aigw_error_render(&err);
        if (!out)
            abort();
        free(out);
    }
    return 0;
}

/* SPDX-License-Identifier: MIT */
/* aigw_chat_request_parse() with the default limits; accepted requests go
 * on through aigw_openai_build_request(), rejected ones through
 * aigw_error_render(), so both see fuzzer-shaped input. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/chat-model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const struct aigw_model_defaults defaults = {
        .has_max_tokens = true, .max_tokens = 64, .has_temperature = true, .temperature = 0.3
    };
    struct aigw_chat_request req = {};
    struct aigw_error err = {};
    char *out = NULL;

    if (aigw_chat_request_parse((const char *)data, size, NULL, &req, &err) < 0) {
        out = aigw_error_render(&err);
        if (!out || strlen(err.message) >= sizeof(err.message))
            abort();
        free(out);
        return 0;
    }

    /* Invariants the backends rely on. */
    if (req.n_messages == 0 || !req.messages || !req.raw || req.n_stop > AIGW_MAX_STOP ||
        (req.model && req.model[0] == '\0') || (req.include_usage && !req.stream))
        abort();
    for (size_t i = 0; i < req.n_messages; i++)
        for (size_t k = 0; k < req.messages[i].n_parts; k++)
            if (!req.messages[i].parts[k])
                abort();

    if (aigw_openai_build_request(&req, "upstream-model", &defaults, &out) < 0)
        abort();
    free(out);
    aigw_chat_request_free(&req);
    return 0;
}

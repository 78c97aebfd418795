/* SPDX-License-Identifier: MIT */

/* Feeds arbitrary bytes to the generateContent response parser and the
 * error mapper, and checks the invariants clients rely on. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/backend-gemini.h"

static void check_message(const struct aigw_error *err) {
    const unsigned char *p = (const unsigned char *) err->message;

    if (err->status < 400 || err->status > 599 || !err->type)
        abort();
    if (strnlen(err->message, sizeof err->message) >= sizeof err->message)
        abort();
    /* no control characters, UTF-8 lead bytes followed by continuations */
    while (*p) {
        size_t l = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
        if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && *p < 0xc2) || *p > 0xf4)
            abort();
        for (size_t i = 1; i < l; i++)
            if ((p[i] & 0xc0) != 0x80)
                abort();
        p += l;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct aigw_chat_response resp = {};
    struct aigw_error err = {};
    char *unmapped = NULL;
    int r;

    r = aigw_gemini_parse_response((const char *) data, size, &resp, &unmapped, &err);
    if (r < 0) {
        if (resp.choices || unmapped)
            abort();
        check_message(&err);
    } else {
        /* never choices: [] and never a NULL content or finish_reason */
        if (resp.n_choices == 0)
            abort();
        for (size_t i = 0; i < resp.n_choices; i++)
            if (!resp.choices[i].content || !resp.choices[i].finish_reason ||
                resp.choices[i].index < 0)
                abort();
        if (resp.usage.present && (resp.usage.prompt_tokens < 0 ||
                                   resp.usage.completion_tokens < 0 ||
                                   resp.usage.total_tokens < 0))
            abort();
        if (unmapped && strlen(unmapped) >= AIGW_GEMINI_UNMAPPED_MAX)
            abort();
        free(unmapped);
        aigw_chat_response_free(&resp);
    }

    for (long status = 0; status <= 600; status += 100) {
        aigw_gemini_map_error(status == 600 ? 429 : status, (const char *) data, size, &err);
        check_message(&err);
    }
    return 0;
}

/* SPDX-License-Identifier: MIT */
/* Besides memory safety: whatever aigw_json_check() accepts, cJSON must
 * parse too (the checker is a strict subset), and the parsed tree must not
 * have duplicate keys; a rejection must come with a sane error. The limits
 * are cJSON's own nesting limit, so the two meet at that boundary. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aigw/json-check.h"

static bool has_duplicate_keys(const cJSON *j) {
    for (const cJSON *a = j ? j->child : NULL; a; a = a->next) {
        if (cJSON_IsObject(j))
            for (const cJSON *b = a->next; b; b = b->next)
                if (strcmp(a->string, b->string) == 0)
                    return true;
        if (has_duplicate_keys(a))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const struct aigw_json_limits lim = {
        .max_depth = AIGW_JSON_DEPTH_MAX,
        .max_string_bytes = 1 << 20,
        .max_keys_per_object = 10000,
        .max_array_items = 10000,
    };
    struct aigw_json_error err = { .offset = SIZE_MAX };
    int r;

    r = aigw_json_check((const char *)data, size, &lim, &err);

    if (aigw_json_check((const char *)data, size, &lim, NULL) != r)
        abort();

    if (r < 0) {
        if (err.offset > size || err.message[0] == '\0' ||
            !memchr(err.message, '\0', sizeof(err.message)))
            abort();
        return 0;
    }
    if (r != 0 || err.offset != SIZE_MAX)
        abort();

    /* require_null_terminated: the NUL must be inside the length. */
    char *copy = malloc(size + 1);
    if (!copy)
        abort();
    if (size > 0)
        memcpy(copy, data, size);
    copy[size] = '\0';

    cJSON *j = cJSON_ParseWithLengthOpts(copy, size + 1, NULL, 1);
    if (!j) {
        fprintf(stderr, "accepted by aigw_json_check, rejected by cJSON\n");
        abort();
    }
    if (has_duplicate_keys(j))
        abort();

    cJSON_Delete(j);
    free(copy);
    return 0;
}

/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct aigw_keys *k = NULL;
    char err[256];

    if (aigw_keys_parse((const char *)data, size, &k, err, sizeof(err)) == 0) {
        size_t n = aigw_keys_count(k);
        if (n > AIGW_KEYS_MAX)
            abort();
        for (size_t i = 0; i < n; i++) {
            const struct aigw_key *e = aigw_keys_get(k, i);
            if (!aigw_key_name_is_valid(e->name, strlen(e->name)))
                abort();
            if ((e->has_rpm && (e->rpm == 0 || e->rpm > AIGW_KEYS_LIMIT_MAX)) ||
                (e->has_tpm && (e->tpm == 0 || e->tpm > AIGW_KEYS_LIMIT_MAX)) ||
                (e->has_inflight && (e->inflight == 0 || e->inflight > AIGW_KEYS_LIMIT_MAX)))
                abort();
        }
        (void)aigw_keys_lookup(k, (const char *)data, size);
        aigw_keys_free(k);
    } else if (k != NULL || memchr(err, '\0', sizeof(err)) == NULL) {
        abort(); /* output must be untouched and the message terminated */
    }

    /* The same bytes as header values: split into Authorization and x-api-key. */
    const char *key;
    size_t len, half = size / 2;
    if (aigw_keys_extract((const char *)data, half, (const char *)data + half, size - half, &key,
                          &len) == 0) {
        if (len == 0 || len > AIGW_KEY_PRESENTED_MAX || key < (const char *)data ||
            key + len > (const char *)data + size)
            abort();
    }
    return 0;
}

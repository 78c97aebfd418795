/* SPDX-License-Identifier: MIT */
/* aigw.conf parser: any input gives a config or a list of errors, never a
 * crash, and a parsed config is internally consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;

    struct aigw_config *c = NULL;
    struct aigw_config_errors errors = {0};
    int r = config_parse_string(text, "fuzz.conf", &c, &errors);
    if (r == 0) {
        if (!c || errors.n != 0)
            abort();
        for (size_t i = 0; i < c->n_models; i++)
            if (!c->models[i].backend || !c->models[i].upstream_model)
                abort();
        if (c->server.default_model && !config_find_model(c, c->server.default_model))
            abort();
        config_unref(c);
    } else if (c || errors.n == 0)
        abort(); /* a failure always says why */
    config_errors_clear(&errors);
    free(text);
    return 0;
}

/* SPDX-License-Identifier: MIT */

/* The /webhook input path: parse a Dialogflow request, and when that
 * succeeds render a response, expand a prompt and hash the session, checking
 * the invariants the handler relies on. */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aigw/dialogflow.h"

/* Declared for -Wmissing-prototypes; libFuzzer provides no header. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct aigw_df_request req = {0};
    char err[256];
    char hex[17];
    char *out = NULL, *prompt = NULL, *cut = NULL;
    size_t keep;
    int r;

    if (size > 256 * 1024)
        return 0;

    /* The truncator sees arbitrary bytes too: replies come from upstream. */
    keep = aigw_reply_truncate((const char *)data, size, size % 97);
    if (keep > size)
        abort();

    r = aigw_dialogflow_parse((const char *)data, size, 4096, &req, err, sizeof(err));
    if (r < 0) {
        if (r != -EINVAL && r != -E2BIG && r != -ENOMEM)
            abort();
        if (strlen(err) == 0)
            abort();
        return 0;
    }
    if (!req.session || req.session[0] == '\0' || !req.text || strlen(req.text) > 4096)
        abort();
    if (req.kind == AIGW_DF_ES && req.tag)
        abort();
    if (req.parameters && !cJSON_IsObject(req.parameters))
        abort();

    r = aigw_dialogflow_render(&req, req.text, &out);
    if (r == 0) {
        cJSON *j = cJSON_Parse(out);

        if (!j || strlen(out) >= AIGW_DF_RESPONSE_MAX)
            abort();
        cJSON_Delete(j);
        free(out);
        out = NULL;
    } else if (r != -E2BIG && r != -ENOMEM)
        abort();

    /* Truncating valid UTF-8 must leave valid UTF-8, which render accepts. */
    keep = aigw_reply_truncate(req.text, strlen(req.text), 40);
    cut = strndup(req.text, keep);
    if (cut) {
        r = aigw_dialogflow_render(&req, cut, &out);
        if (r == -EINVAL)
            abort();
        free(out);
        free(cut);
    }

    r = aigw_prompt_expand("Answer in {language}. Intent {intent}, tag {tag}. {{literal}} {x}",
                           &req, &prompt);
    if (r == 0)
        free(prompt);
    else if (r != -ENOMEM)
        abort();

    aigw_session_hash(req.session, hex);
    if (strlen(hex) != 16)
        abort();

    aigw_df_request_clear(&req);
    return 0;
}

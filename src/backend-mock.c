/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/backend-mock.h"
#include "aigw/macro.h"

int mock_reply(const struct aigw_chat_request *req, char **ret_text) {
    const struct aigw_chat_message *last = NULL;
    for (size_t i = 0; i < req->n_messages; i++)
        if (req->messages[i].role == AIGW_ROLE_USER)
            last = &req->messages[i];
    if (!last) {
        char *s = strdup("(no user message)");
        if (!s)
            return -ENOMEM;
        *ret_text = s;
        return 0;
    }
    size_t len = 0;
    for (size_t i = 0; i < last->n_parts; i++)
        len += strlen(last->parts[i]) + 1;
    char *s = malloc(len + 1);
    if (!s)
        return -ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < last->n_parts; i++) {
        size_t l = strlen(last->parts[i]);
        if (o > 0)
            s[o++] = ' ';
        memcpy(s + o, last->parts[i], l);
        o += l;
    }
    s[o] = 0;
    *ret_text = s;
    return 0;
}

static int64_t count_words(const char *s) {
    int64_t n = 0;
    bool in = false;
    for (; *s; s++) {
        bool space = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        if (!space && !in)
            n++;
        in = !space;
    }
    return n;
}

void mock_usage(const struct aigw_chat_request *req, const char *reply, struct aigw_usage *ret) {
    int64_t prompt = 0;
    for (size_t i = 0; i < req->n_messages; i++)
        for (size_t j = 0; j < req->messages[i].n_parts; j++)
            prompt += count_words(req->messages[i].parts[j]);
    int64_t n = req->has_n ? req->n : 1;
    ret->present = true;
    ret->prompt_tokens = prompt;
    ret->completion_tokens = count_words(reply) * n;
    ret->total_tokens = ret->prompt_tokens + ret->completion_tokens;
}

/* first byte at or after pos that starts a UTF-8 character */
static size_t char_boundary(const char *text, size_t len, size_t pos) {
    while (pos < len && ((unsigned char)text[pos] & 0xC0) == 0x80)
        pos++;
    return pos;
}

void mock_piece(const char *text, size_t len, unsigned n, unsigned i, size_t *ret_start, size_t *ret_len) {
    if (n == 0)
        n = 1;
    if (len > 0 && n > len)
        n = (unsigned)len;
    if (len == 0)
        n = 1;
    if (i >= n) {
        *ret_start = len;
        *ret_len = 0;
        return;
    }
    size_t a = char_boundary(text, len, len * i / n);
    size_t b = i + 1 == n ? len : char_boundary(text, len, len * (i + 1) / n);
    *ret_start = a;
    *ret_len = b - a;
}

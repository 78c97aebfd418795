/* SPDX-License-Identifier: MIT */
#pragma once

/* Dialogflow ES (v2) and CX (v3) fulfillment webhooks: the request in, the
 * response out, and the small text helpers the /webhook handler needs
 * (spoken-reply truncation, system prompt templates, session naming for
 * logs). Pure logic, no I/O. */

#include <stddef.h>

#include <cjson/cJSON.h>

/* Dialogflow rejects webhook responses of 64 KiB or more. */
#define AIGW_DF_RESPONSE_MAX (64u * 1024u)

/* Bound on session, languageCode, intent display name and tag. Real session
 * names are about 200 bytes ("projects/P/locations/L/agents/A/sessions/S",
 * S at most 36 characters); the rest are far shorter. */
#define AIGW_DF_FIELD_MAX 1024u

/* Bound on the output of aigw_prompt_expand(), terminating NUL excluded. */
#define AIGW_PROMPT_MAX (64u * 1024u)

enum aigw_df_kind {
    AIGW_DF_ES, /* Dialogflow ES, v2 WebhookRequest */
    AIGW_DF_CX, /* Dialogflow CX, v3 WebhookRequest */
};

struct aigw_df_request {
    enum aigw_df_kind kind;
    char *session;       /* ES "session", CX "sessionInfo.session"; never NULL or empty */
    char *text;          /* ES queryResult.queryText, CX text or transcript; never NULL,
                          * "" for event or intent-triggered calls */
    char *language_code; /* NULL when absent */
    char *intent;        /* intent display name, NULL when absent */
    char *tag;           /* CX fulfillmentInfo.tag, NULL when absent (always NULL for ES) */
    cJSON *parameters;   /* ES queryResult.parameters, CX sessionInfo.parameters;
                          * an object owned by the struct, NULL when absent */
};

/* Free what the struct owns and reset it to zeroes. Accepts NULL. */
void aigw_df_request_clear(struct aigw_df_request *req);

/* Parse a webhook request body (len bytes, need not be NUL-terminated).
 * The kind is recognised by shape: "queryResult" means ES, "sessionInfo"
 * means CX, both at once is rejected. Every string in the body must be valid
 * UTF-8 without NUL (a "\u0000" escape would silently shorten a session name
 * and merge two sessions). text is bounded by max_text bytes.
 * On success fills *ret (which the caller clears) and returns 0. On failure
 * leaves *ret untouched, writes a one-line reason to errbuf (if errlen > 0)
 * and returns -EINVAL (malformed or unrecognised), -E2BIG (text longer than
 * max_text, or a field longer than AIGW_DF_FIELD_MAX) or -ENOMEM. */
int aigw_dialogflow_parse(const char *body, size_t len, size_t max_text,
                          struct aigw_df_request *ret, char *errbuf, size_t errlen);

/* Render the webhook response carrying reply (valid UTF-8) for req.
 * ES: {"fulfillmentText":R,"fulfillmentMessages":[{"text":{"text":[R]}}]}
 *     (outputContexts are not echoed: Dialogflow keeps them itself).
 * CX: {"fulfillmentResponse":{"messages":[{"text":{"text":[R]}}]},
 *      "sessionInfo":{"parameters":P}} with P the request's parameters,
 *     sessionInfo omitted when the request had none.
 * On success *ret_json is a NUL-terminated string, shorter than
 * AIGW_DF_RESPONSE_MAX, that the caller frees. Returns -EINVAL (NULL
 * argument, reply not valid UTF-8), -E2BIG (the response would not fit) or
 * -ENOMEM. */
int aigw_dialogflow_render(const struct aigw_df_request *req, const char *reply, char **ret_json);

/* How many bytes of text[0..len) to keep so that at most max_chars code
 * points remain, for replies meant to be spoken. The cut goes, in order of
 * preference, after the last sentence end within the limit (". ! ? …"
 * followed by whitespace or the end of the text, closing quotes and
 * brackets allowed in between; "。！？" count by themselves, since CJK text
 * puts no space after them), else before the last whitespace that follows a
 * word, else at the character limit. Never cuts a multi-byte sequence (an
 * invalid byte counts as one character). Trailing whitespace is not kept.
 * Whitespace means ASCII whitespace. Text that fits is only right-trimmed. */
size_t aigw_reply_truncate(const char *text, size_t len, size_t max_chars);

/* Expand a system prompt template: "{language}", "{intent}" and "{tag}"
 * become the request's values ("" when absent), "{{" and "}}" become "{"
 * and "}", anything else (unknown placeholders, lone braces) is copied as
 * written. Values are inserted verbatim, never expanded again.
 * Returns 0 and a string the caller frees, -EINVAL on NULL arguments,
 * -E2BIG if the result would exceed AIGW_PROMPT_MAX bytes, -ENOMEM. */
int aigw_prompt_expand(const char *tmpl, const struct aigw_df_request *req, char **ret);

/* Name a session in logs without writing the session itself: the first 8
 * bytes of SHA-256(session) as 16 lowercase hex digits and a NUL. */
void aigw_session_hash(const char *session, char ret_hex[17]);

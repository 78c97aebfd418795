/* SPDX-License-Identifier: MIT */
#pragma once

/* Translation between the canonical chat types (aigw/chat.h) and Gemini's
 * Generative Language API v1beta (generateContent and
 * streamGenerateContent?alt=sse). Pure: no sockets, no logging. The caller
 * owns the URL's base, the x-goog-api-key header, SSE framing, [DONE] and
 * the client-facing serialization.
 *
 * Every function that takes a struct aigw_error (err may be NULL) fills it
 * on failure (also on -ENOMEM: 500 server_error) and leaves its ret_*
 * parameters untouched.
 * Errno values: -EINVAL the client's request cannot be sent to Gemini,
 * -EBADMSG upstream sent something unusable (502), -EREMOTEIO upstream
 * reported an error (mapped through aigw_gemini_map_error()). */

#include <stdbool.h>
#include <stddef.h>

#include "aigw/chat.h"

/* Build the generateContent request body (compact JSON) for req.
 *
 * - system messages go to systemInstruction.parts, one text part per part,
 *   in order, wherever they appear in the conversation; they are never
 *   folded into a user turn. When the conversation has nothing but system
 *   messages, contents gets a single user turn repeating the system parts:
 *   Gemini rejects a request without contents, an empty text part is
 *   rejected too, and a placeholder such as "." gets answered as if the
 *   user had typed it, whereas OpenAI models act on a lone system prompt.
 * - user -> "user", assistant -> "model"; consecutive turns of one role
 *   (also after system messages are taken out) become one content with
 *   several parts. Messages without parts are skipped. A leading model turn
 *   is passed through.
 * - tool messages: -EINVAL, 400 invalid_request_error, param
 *   "messages[i].role".
 * - generationConfig: temperature, topP, maxOutputTokens, stopSequences
 *   (at most 5, else 400 with param "stop"), candidateCount (from n).
 *   defaults (may be NULL) fill max_tokens and temperature only where the
 *   client gave none. Non-finite numbers: 400.
 * - Top-level fields of req->raw that are not mapped (e.g. "user",
 *   "tools", "presence_penalty") are dropped; if ret_dropped is non-NULL it
 *   receives their names comma-joined (sanitized, bounded, "..." when cut
 *   short) or NULL when nothing was dropped, for the caller to log. */
int aigw_gemini_build_request(const struct aigw_chat_request *req,
                              const struct aigw_model_defaults *defaults, char **ret_body,
                              char **ret_dropped, struct aigw_error *err);

/* {base}/v1beta/models/{model}:generateContent, or
 * {base}/v1beta/models/{model}:streamGenerateContent?alt=sse when stream.
 * Trailing slashes of base are dropped; a leading "models/" of model (as
 * Gemini's ListModels spells names) is dropped; everything in model but
 * [A-Za-z0-9._~-] is percent-escaped. The API key never goes into the URL.
 * -EINVAL for an empty base or model, or a base with '?' or '#'. */
int aigw_gemini_url(const char *base, const char *model, bool stream, char **ret_url);

/* Parse a generateContent response body into *ret (to be released with
 * aigw_chat_response_free()).
 *
 * - candidates[] -> choices, in upstream order; index from candidate.index,
 *   else the position. Content is the concatenation of parts[].text,
 *   skipping "thought": true parts. A candidate without content becomes a
 *   choice with content "" - it is never dropped.
 * - finishReason: see aigw_gemini_finish_reason(). A missing one is "stop".
 * - promptFeedback.blockReason without candidates: one choice, content "",
 *   finish_reason "content_filter". Neither: -EBADMSG, 502 "upstream sent
 *   no candidates".
 * - usage: prompt = promptTokenCount; completion = candidatesTokenCount +
 *   thoughtsTokenCount (Gemini bills thoughts as output, OpenAI counts
 *   reasoning tokens inside completion_tokens, and it keeps
 *   prompt + completion == total); total = totalTokenCount, else the sum.
 * - modelVersion -> model, responseId -> id; created stays 0 (Gemini sends
 *   no timestamp: the caller stamps it).
 * - an {"error":...} body: -EREMOTEIO with err mapped; garbage or a field
 *   of the wrong type: -EBADMSG, 502 "upstream sent an invalid response".
 *
 * If ret_unmapped_finish is non-NULL it receives a sanitized copy of the
 * first finishReason that had no faithful OpenAI equivalent (and so became
 * "stop"), or NULL: the caller logs it. */
int aigw_gemini_parse_response(const char *body, size_t len, struct aigw_chat_response *ret,
                               char **ret_unmapped_finish, struct aigw_error *err);

/* The finishReason table. Returns the AIGW_FINISH_* value; *ret_unmapped
 * (may be NULL) is set when the value had no faithful equivalent.
 *   STOP -> stop; MAX_TOKENS -> length;
 *   SAFETY, RECITATION, LANGUAGE, BLOCKLIST, PROHIBITED_CONTENT, SPII,
 *   IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT, IMAGE_RECITATION
 *     -> content_filter (LANGUAGE too: a classifier withheld the output,
 *        so "stop" would claim a complete answer);
 *   MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS,
 *   MISSING_THOUGHT_SIGNATURE, IMAGE_OTHER, NO_IMAGE, OTHER,
 *   FINISH_REASON_UNSPECIFIED and anything unknown -> stop, unmapped.
 *   (content_filter for unknown values would mislead clients into
 *   blaming a policy; aigw sends no tools, so no tool_calls either.) */
const char *aigw_gemini_finish_reason(const char *gemini, bool *ret_unmapped);

#define AIGW_GEMINI_STREAM_MAX_CHOICES 16
#define AIGW_GEMINI_UNMAPPED_MAX 64

struct aigw_gemini_stream_choice {
    int index;
    bool started;              /* a chunk carrying role was emitted */
    const char *finish_reason; /* latest one seen, held back until finish */
};

/* Streaming translation state. Finish reasons are held back and emitted
 * only by aigw_gemini_stream_finish(): older models put "STOP" on every
 * event, so no single event proves the end. */
struct aigw_gemini_stream {
    struct aigw_gemini_stream_choice choices[AIGW_GEMINI_STREAM_MAX_CHOICES];
    size_t n_choices; /* in order of first appearance */
    struct aigw_usage usage; /* from the LAST usageMetadata, not summed */
    char *id;                /* first responseId seen, may be NULL */
    char *model;             /* first modelVersion seen, may be NULL */
    /* For the caller's log, valid after finish: the first finishReason
     * without faithful mapping ("" if none), and whether some choice ended
     * without any finishReason (emitted as "stop"). */
    char unmapped_finish[AIGW_GEMINI_UNMAPPED_MAX];
    bool missing_finish;
    bool finished;
};

void aigw_gemini_stream_init(struct aigw_gemini_stream *s);
void aigw_gemini_stream_done(struct aigw_gemini_stream *s);

/* Feed one SSE event's data (len 0 is ignored). On success *ret_chunks is
 * an array of *ret_n chunks (NULL when 0), to be released with
 * aigw_chat_chunks_free() (aigw/chat-model.h). A candidate's text is
 * emitted at once, the first chunk of a choice carrying role.
 * promptFeedback.blockReason without candidates ends choice 0 with
 * content_filter. An "error" object: -EREMOTEIO, err mapped; garbage:
 * -EBADMSG, 502, and the state is left as it was. After finish: -EINVAL. */
int aigw_gemini_stream_event(struct aigw_gemini_stream *s, const char *data, size_t len,
                             struct aigw_chat_chunk **ret_chunks, size_t *ret_n,
                             struct aigw_error *err);

/* Call once the upstream stream ended cleanly. Emits, per choice in order
 * of appearance, a final chunk with content NULL and the finish_reason
 * (with role if the choice had no chunk yet; rendered with "delta":{}),
 * then, if any usageMetadata was seen, a usage chunk with index -1 and
 * usage.present (the caller decides whether the client asked for it).
 * No candidate and no block in the whole stream: -EBADMSG, 502 "upstream
 * sent no candidates". */
int aigw_gemini_stream_finish(struct aigw_gemini_stream *s, struct aigw_chat_chunk **ret_chunks,
                              size_t *ret_n, struct aigw_error *err);

/* Map a Gemini error response to the error aigw answers with. http_status
 * is upstream's (0 for an error object inside a stream: then error.code is
 * used). status strings:
 *   INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE -> 400
 *     invalid_request_error, except details[].reason API_KEY_* which is
 *     how Gemini reports a bad key;
 *   UNAUTHENTICATED, PERMISSION_DENIED, API_KEY_* -> 502 api_error: the
 *     gateway's Gemini key was rejected, not the client's;
 *   NOT_FOUND -> 404 not_found_error, code model_not_found;
 *   RESOURCE_EXHAUSTED -> 429 rate_limit_error;
 *   DEADLINE_EXCEEDED -> 504 timeout_error;
 *   UNAVAILABLE -> 503 api_error (temporary: overload, retry later);
 *   INTERNAL and anything else -> 502 api_error.
 * Without a known status string (or without JSON) the HTTP status decides
 * the same way (400, 401/403, 404, 408->504, 429, 503, 504, else 502).
 * The upstream message is kept, bounded, valid UTF-8, no control chars. */
void aigw_gemini_map_error(long http_status, const char *body, size_t len,
                           struct aigw_error *err);

/* Whether a request that failed with this upstream HTTP status may be
 * retried (on another upstream or later): 429, 500, 502, 503, 504. */
bool aigw_gemini_status_retryable(long http_status);

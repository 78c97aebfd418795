/* SPDX-License-Identifier: MIT */
#pragma once

/* The built-in mock backend: answers inside aigw, deterministically, by
 * echoing the last user message. Pure. */

#include <stddef.h>

#include "aigw/chat.h"

/* The reply for req: the text of the last user message (its parts joined
 * with a space), or "(no user message)". */
int mock_reply(const struct aigw_chat_request *req, char **ret_text);
/* Usage counted in whitespace-separated words. */
void mock_usage(const struct aigw_chat_request *req, const char *reply, struct aigw_usage *ret);
/* Piece i of n of text, cut at UTF-8 character boundaries; the pieces
 * concatenate to text. n is clamped to 1..len (an empty text has 1 piece). */
void mock_piece(const char *text, size_t len, unsigned n, unsigned i, size_t *ret_start, size_t *ret_len);

/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aigw/chat.h"

struct aigw_request;

/* Pure: request ids. A client's X-Request-Id is kept when it is 1..64
 * characters of [A-Za-z0-9._:-] (anything else could forge log fields). */
bool request_id_valid(const char *s, size_t len);
void request_id_generate(uint64_t rng[2], char ret[33]);
void rng_seed(uint64_t rng[2]);
uint64_t rng_next(uint64_t rng[2]);

const char *http_reason(int status);

/* Responses (h2o). The body is copied into the request's pool. */
void http_send_json(struct aigw_request *r, int status, const char *body, size_t len);
void http_send_error(struct aigw_request *r, const struct aigw_error *e);
void http_send_error_fmt(struct aigw_request *r, int status, const char *type, const char *code,
                         const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void http_add_header(struct aigw_request *r, const char *name, const char *value);
/* Header value of the request, or NULL. */
const char *http_request_header(struct aigw_request *r, const char *name, size_t *ret_len);

/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "aigw/http-util.h"
#include "aigw/macro.h"
#include "aigw/server.h"

char *aigw_error_render(const struct aigw_error *e);

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void http_add_header(struct aigw_request *r, const char *name, const char *value) {
    h2o_req_t *req = r->req;
    /* h2o keeps both pointers until the response is written: copy them
     * into the request's pool (callers pass stack buffers) */
    size_t nl = strlen(name), vl = strlen(value);
    char *n = h2o_mem_alloc_pool(&req->pool, nl + 1);
    char *v = h2o_mem_alloc_pool(&req->pool, vl + 1);
    memcpy(n, name, nl + 1);
    memcpy(v, value, vl + 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n, nl, 1, NULL, v, vl);
}

const char *http_request_header(struct aigw_request *r, const char *name, size_t *ret_len) {
    ssize_t i = h2o_find_header_by_str(&r->req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = r->req->headers.entries[i].value;
    if (ret_len)
        *ret_len = v.len;
    return v.base;
}

void http_send_json(struct aigw_request *r, int status, const char *body, size_t len) {
    h2o_req_t *req = r->req;
    r->status = status;
    req->res.status = status;
    req->res.reason = http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = len;
    /* h2o_send_inline copies the body into the pool */
    h2o_send_inline(req, body, len);
}

void http_send_error(struct aigw_request *r, const struct aigw_error *e) {
    _cleanup_free_ char *body = aigw_error_render(e);
    if (!body) {
        static const char fallback[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                       "\"param\":null,\"code\":null}}";
        http_send_json(r, 500, fallback, sizeof(fallback) - 1);
        return;
    }
    http_send_json(r, e->status, body, strlen(body));
}

void http_send_error_fmt(struct aigw_request *r, int status, const char *type, const char *code,
                         const char *param, const char *fmt, ...) {
    struct aigw_error e = {.status = status, .type = type, .code = code, .param = param};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    http_send_error(r, &e);
}

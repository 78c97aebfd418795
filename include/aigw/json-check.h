/* SPDX-License-Identifier: MIT */
#pragma once

/* Strict validation of untrusted JSON request bodies, run before cJSON
 * parses them. cJSON silently accepts duplicate keys (the first one wins in
 * lookups, while other JSON parsers pick the last), truncates strings at
 * \u0000, accepts invalid UTF-8, raw control characters and a BOM, nests up
 * to 1000 levels through recursion, and turns 1e400 into infinity. This
 * checker accepts exactly RFC 8259 JSON texts, minus the few things listed
 * below, within caller-set bounds; whatever it accepts, cJSON parses.
 *
 * Beyond RFC 8259 it rejects: \u0000 escapes, numbers that overflow a
 * double (underflow to 0 is fine), numbers longer than
 * AIGW_JSON_NUMBER_MAX bytes (cJSON cannot parse those), duplicate keys in
 * one object (compared after unescaping), and a UTF-8 BOM. */

#include <stddef.h>

/* cJSON copies a number into a 64-byte buffer and fails on longer ones. */
#define AIGW_JSON_NUMBER_MAX 63

/* cJSON's own nesting limit (CJSON_NESTING_LIMIT). */
#define AIGW_JSON_DEPTH_MAX 1000

struct aigw_json_limits {
    /* Open arrays/objects at once; "[[]]" needs 2, a scalar 0.
     * At most AIGW_JSON_DEPTH_MAX. */
    unsigned max_depth;
    /* Per string (keys too), in bytes after unescaping. */
    size_t max_string_bytes;
    size_t max_keys_per_object;
    size_t max_array_items;
};

struct aigw_json_error {
    size_t offset; /* 0-based byte offset in the input the message refers to */
    /* e.g. "duplicate key \"model\" at byte 55": short, ASCII or valid
     * UTF-8, fit for an API error message. */
    char message[160];
};

/* Check that buf[0..len) is exactly one JSON value, with optional
 * surrounding whitespace (space, tab, LF, CR). A single pass with a bounded
 * explicit stack; time O(n log n) worst case (duplicate keys are found by
 * sorting each object's keys when it closes), memory O(total length of the
 * keys of the objects open at once).
 *
 * Returns 0 if valid (*ret_err untouched). Otherwise a negative errno, and
 * *ret_err (if not NULL) is filled:
 *   -ENODATA   empty body (nothing but whitespace)
 *   -EILSEQ    invalid UTF-8 (overlong, surrogate, > U+10FFFF, truncated)
 *   -EBADMSG   syntax: unexpected character, NUL byte, control character
 *              in a string, invalid escape, unpaired surrogate escape,
 *              \u0000, malformed number, unterminated string, unexpected
 *              end of input, trailing data
 *   -ERANGE    number overflows a double
 *   -ENOTUNIQ  duplicate key
 *   -E2BIG     a limit exceeded: depth, string length, keys per object,
 *              items per array, number length
 *   -EINVAL    lim->max_depth > AIGW_JSON_DEPTH_MAX
 *   -ENOMEM
 * Errors are reported in input order, except duplicate keys, which are
 * found when their object closes: an error later inside the same object is
 * reported instead. Of several duplicates in one object, the one whose
 * second occurrence comes first is reported, at that second occurrence. */
int aigw_json_check(const char *buf, size_t len, const struct aigw_json_limits *lim,
                    struct aigw_json_error *ret_err);

/* SPDX-License-Identifier: MIT */
#pragma once

/* UTF-8 as RFC 3629 defines it (Unicode Table 3-7): no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. Whatever passes can
 * be put into JSON and read back by a strict peer. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the well-formed sequence at s[0..len), with its code
 * point in *ret_cp (may be NULL); 0 if the bytes there are not one,
 * including a sequence cut short by len, and for len 0. *ret_cp is
 * untouched on 0.
 *
 * Inline because json-check runs it on every non-ASCII character of every
 * request body: out of line, a call per character made checking a body
 * of non-ASCII text 20-40% slower. */
static inline size_t aigw_utf8_decode(const unsigned char *s, size_t len, uint32_t *ret_cp) {
    /* The second byte's range (Table 3-7) rules out overlongs, surrogates
     * and code points past U+10FFFF without decoding first. */
    unsigned char lo = 0x80, hi = 0xBF, b;
    size_t n;
    uint32_t cp;

    if (len == 0)
        return 0;
    b = s[0];
    if (b < 0x80) {
        if (ret_cp)
            *ret_cp = b;
        return 1;
    }
    if (b < 0xC2) /* a continuation byte, or C0/C1: always overlong */
        return 0;
    if (b < 0xE0) {
        n = 2;
        cp = b & 0x1F;
    } else if (b < 0xF0) {
        n = 3;
        cp = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0; /* below U+0800: overlong */
        else if (b == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
    } else if (b < 0xF5) {
        n = 4;
        cp = b & 0x07;
        if (b == 0xF0)
            lo = 0x90; /* below U+10000: overlong */
        else if (b == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;

    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    cp = (cp << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (ret_cp)
        *ret_cp = cp;
    return n;
}

/* Whether s[0..len) is entirely well-formed UTF-8. NUL bytes are valid
 * (U+0000); callers that must not see them check separately. */
bool aigw_utf8_valid(const char *s, size_t len);

enum {
    /* Replace the C1 controls U+0080..U+009F too, not only C0 and DEL. */
    AIGW_UTF8_SANITIZE_C1 = 1 << 0,
};

/* Copy untrusted text src[0..len) (stopping early at a NUL) into dst for
 * quoting in a message or a log: bytes that are not UTF-8 become '?', C0
 * controls and DEL (and the C1 ones with AIGW_UTF8_SANITIZE_C1) become
 * ' ', and the copy is cut on a character boundary to fit size with its
 * NUL. Returns the length of the copy; with size 0, dst is untouched. */
size_t aigw_utf8_sanitize(char *dst, size_t size, const char *src, size_t len, unsigned flags);

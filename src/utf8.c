/* SPDX-License-Identifier: MIT */
#include "aigw/utf8.h"

#include <string.h>

bool aigw_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n;

        if (u[i] < 0x80) {
            i++;
            continue;
        }
        n = aigw_utf8_decode(u + i, len - i, NULL);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t aigw_utf8_sanitize(char *dst, size_t size, const char *src, size_t len, unsigned flags) {
    const unsigned char *u = (const unsigned char *)src;
    size_t o = 0;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < len && u[i] != '\0';) {
        uint32_t cp;
        size_t n = aigw_utf8_decode(u + i, len - i, &cp);

        if (n == 0) {
            if (o + 1 >= size)
                break;
            dst[o++] = '?';
            i++;
            continue;
        }
        /* Room for the whole character even when it is replaced, so where
         * the copy is cut does not depend on flags. */
        if (o + n >= size)
            break;
        if (cp < 0x20 || cp == 0x7F ||
            ((flags & AIGW_UTF8_SANITIZE_C1) && cp >= 0x80 && cp < 0xA0))
            dst[o++] = ' ';
        else {
            memcpy(dst + o, src + i, n);
            o += n;
        }
        i += n;
    }
    dst[o] = '\0';
    return o;
}

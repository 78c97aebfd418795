/* SPDX-License-Identifier: MIT */
/* Request ids: kept from the client when sane, else generated. Pure. */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "aigw/http-util.h"

bool request_id_valid(const char *s, size_t len) {
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

void rng_seed(uint64_t rng[2]) {
    if (getrandom(rng, 2 * sizeof(uint64_t), GRND_NONBLOCK) != 2 * sizeof(uint64_t) || (rng[0] | rng[1]) == 0) {
        rng[0] = (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ULL;
        rng[1] = (uint64_t)(uintptr_t)rng ^ 0xbf58476d1ce4e5b9ULL;
    }
}

/* xorshift128+: request ids need to be unique, not secret. */
uint64_t rng_next(uint64_t s[2]) {
    uint64_t s1 = s[0];
    const uint64_t s0 = s[1];
    s[0] = s0;
    s1 ^= s1 << 23;
    s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return s[1] + s0;
}

void request_id_generate(uint64_t rng[2], char ret[33]) {
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {rng_next(rng), rng_next(rng)};
    /* every request makes one: no printf */
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 16; i++)
            ret[j * 16 + i] = hex[(v[j] >> (60 - 4 * i)) & 15];
    ret[32] = 0;
}


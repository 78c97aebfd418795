/* SPDX-License-Identifier: MIT */
/* Comparing a presented secret with a configured one without leaking,
 * through timing, how much of it matched or how long it is. */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#include "aigw/secret.h"

bool aigw_secret_equal(const char *presented, size_t len, const char *expected) {
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    if (!presented || !expected)
        return false;
    SHA256((const unsigned char *)presented, len, a);
    SHA256((const unsigned char *)expected, strlen(expected), b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/siphash.h"

/* The reference vectors of the SipHash paper: key 00..0f, message
 * 00 01 .. len-1, output read as a little-endian 64-bit value. */
static void test_reference_vectors(void **state) {
    static const struct {
        size_t len;
        uint64_t out;
    } rows[] = {
        {0, 0x726fdb47dd0e0e31ULL},
        {1, 0x74f839c593dc67fdULL},
        {63, 0x958a324ceb064572ULL},
    };
    const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    uint8_t msg[64];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_true(aigw_siphash24(key, msg, rows[i].len) == rows[i].out);
}

static void test_key_and_input_matter(void **state) {
    const uint64_t k1[2] = {1, 2}, k2[2] = {1, 3};
    assert_true(aigw_siphash24(k1, "session-a", 9) != aigw_siphash24(k2, "session-a", 9));
    assert_true(aigw_siphash24(k1, "session-a", 9) != aigw_siphash24(k1, "session-b", 9));
    /* every length around the 8-byte block boundary hashes differently */
    const char *s = "0123456789abcdefg";
    for (size_t a = 0; a < 17; a++)
        for (size_t b = a + 1; b <= 17; b++)
            assert_true(aigw_siphash24(k1, s, a) != aigw_siphash24(k1, s, b));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_key_and_input_matter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

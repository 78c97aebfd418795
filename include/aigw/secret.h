/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Constant-time comparison (on SHA-256 digests, so the length does not
 * leak either). */
bool aigw_secret_equal(const char *presented, size_t len, const char *expected);

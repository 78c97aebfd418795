/* SPDX-License-Identifier: MIT */
#pragma once

/* SipHash-2-4: a keyed hash for tables whose keys come from clients
 * (rate-limit ids, webhook session names), so that nobody can aim chosen
 * keys at one bucket. The key is random per table. */

#include <stddef.h>
#include <stdint.h>

uint64_t aigw_siphash24(const uint64_t key[2], const void *data, size_t len);

/* SPDX-License-Identifier: MIT */
#pragma once

/* Client API keys. The keys file holds only SHA-256 digests, so reading it
 * (or a backup of it) does not reveal a usable key. Format, one key a line:
 *
 *     NAME sha256:HEX [rpm=N] [tpm=N] [inflight=N]
 *
 * NAME is [A-Za-z0-9._-]{1,64}, HEX exactly 64 hex digits (either case),
 * fields are separated by spaces or tabs; blank lines and lines whose first
 * non-blank character is '#' are ignored; CRLF line ends are accepted.
 * The options override the global rate limits for that key.
 *
 * The caller reads the file; this module parses a buffer and does no I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIGW_KEY_NAME_MAX 64
#define AIGW_KEYS_MAX 100000
#define AIGW_KEYS_LINE_MAX 1024 /* bytes, not counting the line end */
#define AIGW_KEYS_LIMIT_MAX 1000000000ULL /* largest rpm/tpm/inflight value */
#define AIGW_KEY_PRESENTED_MAX 1024 /* longest key aigw_keys_extract() accepts */
#define AIGW_KEY_DIGEST_SIZE 32
#define AIGW_KEY_PREFIX "aigw-"

struct aigw_key {
    char name[AIGW_KEY_NAME_MAX + 1];
    uint8_t digest[AIGW_KEY_DIGEST_SIZE];
    bool has_rpm;
    uint64_t rpm;
    bool has_tpm;
    uint64_t tpm;
    bool has_inflight;
    uint64_t inflight;
};

struct aigw_keys;

/* Parse a keys file. On failure returns -EINVAL and writes one message to
 * errbuf (if errbuf != NULL and errlen > 0) of the form
 * "keys file line N: what is wrong". Syntax errors are found in one pass in
 * line order; duplicate names and digests are reported after that pass (the
 * earliest duplicated line). Returns -ENOMEM on allocation failure (errbuf
 * then says so too). An empty file gives a valid set with no keys. */
int aigw_keys_parse(const char *buf, size_t len, struct aigw_keys **ret, char *errbuf,
                    size_t errlen);

void aigw_keys_free(struct aigw_keys *k);

size_t aigw_keys_count(const struct aigw_keys *k);

/* Entry i in file order, or NULL when i >= count. */
const struct aigw_key *aigw_keys_get(const struct aigw_keys *k, size_t i);

/* Hash the presented key and compare it with every digest. Takes the same
 * time whichever entry matches, or none. Returns NULL on no match; k may be
 * NULL. The returned entry lives as long as k. */
const struct aigw_key *aigw_keys_lookup(const struct aigw_keys *k, const char *presented,
                                        size_t len);

/* Pick the presented key out of the request headers (values as received,
 * not NUL-terminated; either may be NULL). "Authorization: Bearer KEY"
 * (scheme case-insensitive, KEY from the token68 charset) wins; any other
 * Authorization scheme is ignored in favour of x-api-key. Surrounding spaces
 * and tabs are trimmed; a header that is empty after trimming counts as
 * absent. On success *ret_key points into one of the two inputs.
 * Returns -ENOKEY when no key was presented, -EINVAL when the Bearer
 * credentials or x-api-key are malformed (bad characters, too long) or only
 * a non-Bearer Authorization was sent. */
int aigw_keys_extract(const char *authorization, size_t alen, const char *x_api_key, size_t xlen,
                      const char **ret_key, size_t *ret_len);

/* Make a new key for NAME: "aigw-" + base64url (no padding) of 32 random
 * bytes, and its keys-file line "NAME sha256:HEX" (no newline). Both are
 * malloc'd. Returns -EINVAL for an invalid NAME, -EIO if the random
 * generator fails, -ENOMEM. */
int aigw_keygen(const char *name, char **ret_key, char **ret_line);

/* [A-Za-z0-9._-]{1,64} */
bool aigw_key_name_is_valid(const char *name, size_t len);

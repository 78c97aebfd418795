/* SPDX-License-Identifier: MIT */
#pragma once

/* Rate limits shared by all worker threads: per id (an API key name, or
 * the client address when auth is off) a requests-per-minute bucket, an
 * LLM-tokens-per-minute bucket and an in-flight counter, plus one global
 * in-flight counter. Thread-safe.
 *
 * Buckets refill continuously: capacity = the per-minute limit, refill =
 * limit/60 per second. Levels are kept in integer units of 1/60000000 of a
 * token, so one microsecond adds exactly `limit` units and nothing drifts.
 * New ids start with full buckets. A request needs one whole request token
 * and at least one whole LLM token; the LLM tokens it used are debited
 * afterwards (aigw_ratelimit_release), so that bucket can go negative and
 * then refuses until it has refilled to one token.
 *
 * Limits are not stored: every call takes the current ones, so a config
 * reload applies at the next request (a lowered limit clamps the stored
 * level). 0 means unlimited.
 *
 * Memory is bounded by max_entries. When a new id needs room, an idle id
 * (nothing in flight, buckets full again) is evicted; if none can be found
 * the call fails with -ENOSPC (answer 503). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIGW_RL_LIMIT_MAX 1000000000ULL /* largest accepted limit of any kind */
#define AIGW_RL_ID_MAX 128              /* bytes */
#define AIGW_RL_ENTRIES_MAX 1000000

struct aigw_ratelimit;

struct aigw_rl_limits {
    uint64_t rpm;             /* requests per minute for this id */
    uint64_t tpm;             /* LLM tokens per minute for this id */
    uint64_t inflight;        /* concurrent requests for this id */
    uint64_t global_inflight; /* concurrent requests over all ids */
};

/* What the HTTP layer needs for x-ratelimit-{limit,remaining,reset}-*.
 * All zero when that limit is 0 (unlimited): send no headers then. */
struct aigw_rl_window {
    uint64_t limit;      /* per minute */
    uint64_t remaining;  /* whole tokens left, after this request if allowed; never negative */
    uint64_t reset_usec; /* until the bucket is full again */
};

enum aigw_rl_verdict {
    AIGW_RL_ALLOWED,
    AIGW_RL_REFUSED_REQUESTS,        /* rpm used up */
    AIGW_RL_REFUSED_TOKENS,          /* tpm used up */
    AIGW_RL_REFUSED_INFLIGHT,        /* this id's concurrency cap */
    AIGW_RL_REFUSED_GLOBAL_INFLIGHT, /* the server-wide cap */
};

struct aigw_rl_decision {
    enum aigw_rl_verdict verdict; /* the first reason, in the order listed above */
    struct aigw_rl_window requests;
    struct aigw_rl_window tokens;
    /* When refused: seconds (rounded up, >= 1) until every bucket that
     * refused can admit the request; concurrency refusals say 1, since
     * nobody knows when a running request ends. 0 when allowed. */
    uint64_t retry_after_sec;
};

/* max_entries: ids tracked at once, 1..AIGW_RL_ENTRIES_MAX. Returns -EINVAL,
 * -ENOMEM, or a negative errno from getrandom() (the hash seed). */
int aigw_ratelimit_new(size_t max_entries, struct aigw_ratelimit **ret);

/* Must not race with other calls on rl. */
void aigw_ratelimit_free(struct aigw_ratelimit *rl);

/* Admit one request for id (id_len bytes, 1..AIGW_RL_ID_MAX, any bytes).
 * Returns 0 with *ret filled in whether allowed or refused. When allowed,
 * one request token is debited and the id's and the global in-flight
 * counters are raised: the caller must call aigw_ratelimit_release() exactly
 * once for it. Returns -EINVAL for bad arguments or limits above
 * AIGW_RL_LIMIT_MAX, -ENOSPC when the table is full of active ids, -ENOMEM;
 * nothing changes then. now_usec must be monotonic; a clock that goes
 * backwards only pauses refilling. */
int aigw_ratelimit_acquire(struct aigw_ratelimit *rl, const char *id, size_t id_len,
                           const struct aigw_rl_limits *limits, uint64_t now_usec,
                           struct aigw_rl_decision *ret);

/* End a request admitted by aigw_ratelimit_acquire(): lower both in-flight
 * counters and debit the LLM tokens the upstream reported (nothing is
 * debited while tpm is 0). tokens_used is clamped to AIGW_RL_LIMIT_MAX.
 * Returns -ENOENT if id has nothing in flight (a caller bug; nothing
 * changes), -EINVAL for bad arguments. */
int aigw_ratelimit_release(struct aigw_ratelimit *rl, const char *id, size_t id_len,
                           uint64_t tokens_used, uint64_t tpm, uint64_t now_usec);

/* Ids currently tracked. Takes every shard lock in turn: for metrics and
 * tests, not for the request path. */
size_t aigw_ratelimit_count(struct aigw_ratelimit *rl);

/* Requests currently admitted and not yet released, over all ids. */
uint64_t aigw_ratelimit_global_inflight(const struct aigw_ratelimit *rl);

/* SPDX-License-Identifier: MIT */
#pragma once

/* Multi-turn memory for webhook sessions: the last few (user, assistant)
 * turns per session id, shared by all worker threads behind one mutex.
 * Everything is bounded: sessions (LRU eviction, O(1)), turns and bytes per
 * session (oldest turns dropped), total bytes (least recently used sessions
 * evicted), idle time (expired lazily on access and by
 * aigw_session_store_expire()). Time is injected as now_usec (CLOCK_MONOTONIC). */

#include <stddef.h>
#include <stdint.h>

/* Longest session id accepted; Dialogflow session names are about 200 bytes. */
#define AIGW_SESSION_ID_MAX 1024u

struct aigw_session_limits {
    size_t max_sessions;      /* >= 1 */
    size_t max_turns;         /* per session, >= 1 */
    size_t max_session_bytes; /* user + assistant text bytes per session, >= 1 */
    size_t max_total_bytes;   /* the same summed over all sessions, >= 1 */
    uint64_t idle_ttl_usec;   /* > 0: a session not used for this long is gone */
};

struct aigw_turn {
    char *user;
    char *assistant;
};

struct aigw_session_stats {
    size_t sessions;
    size_t bytes;         /* text bytes held, as counted against the limits */
    uint64_t evictions;   /* sessions removed to honour max_sessions or max_total_bytes */
    uint64_t expirations; /* sessions removed for being idle */
};

struct aigw_session_store;

/* Returns 0 and a new store, -EINVAL on bad limits, -ENOMEM. */
int aigw_session_store_new(const struct aigw_session_limits *limits,
                           struct aigw_session_store **ret);

/* Accepts NULL; returns NULL. No other thread may use the store any more. */
struct aigw_session_store *aigw_session_store_free(struct aigw_session_store *store);

/* Change the limits (at reload); what no longer fits is dropped at once
 * (oldest turns first, then least recently used sessions, counted as
 * evictions). Returns 0, -EINVAL on bad limits (nothing changed), -ENOMEM
 * (nothing changed). */
int aigw_session_store_set_limits(struct aigw_session_store *store,
                                  const struct aigw_session_limits *limits);

/* Copy the session's turns, oldest first, into a new array the caller frees
 * with aigw_turns_free(), so no lock is held while the LLM call runs. An
 * unknown or expired session yields *ret_n = 0 and *ret_turns = NULL. A
 * found session becomes the most recently used and its idle timer restarts.
 * Returns 0, -EINVAL (NULL or empty id, id longer than AIGW_SESSION_ID_MAX),
 * -ENOMEM (the session is left as it was). */
int aigw_session_store_get(struct aigw_session_store *store, const char *session_id,
                           uint64_t now_usec, struct aigw_turn **ret_turns, size_t *ret_n);

/* Record a turn, creating the session if needed, then enforce the limits:
 * oldest turns of this session go first, then other sessions, least
 * recently used first. A turn larger than min(max_session_bytes,
 * max_total_bytes) is not stored, and the session's earlier turns are
 * forgotten with it: a history with the latest exchange missing would make
 * the model answer the next question out of context. That case returns
 * -E2BIG. Other errors: -EINVAL (bad id, NULL text), -ENOMEM (turn not
 * stored). */
int aigw_session_store_append(struct aigw_session_store *store, const char *session_id,
                              const char *user_text, const char *assistant_text,
                              uint64_t now_usec);

/* Remove the sessions idle for idle_ttl_usec or longer at now_usec. Work is
 * proportional to the number removed (the LRU list is ordered by last use).
 * Returns that number. */
size_t aigw_session_store_expire(struct aigw_session_store *store, uint64_t now_usec);

void aigw_session_store_stats(struct aigw_session_store *store, struct aigw_session_stats *ret);

/* Free an array returned by aigw_session_store_get(). Accepts NULL. */
void aigw_turns_free(struct aigw_turn *turns, size_t n);

/* SPDX-License-Identifier: MIT */

#include "aigw/list.h"
#include "aigw/session-store.h"
#include "aigw/siphash.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "aigw/macro.h"

#define BUCKETS_MIN 16u
/* Past a million buckets chains just grow longer; the table stays usable
 * even if a configuration asks for absurd numbers of sessions. */
#define BUCKETS_MAX (1u << 20)

struct turn_node {
    struct turn_node *next; /* towards the newest */
    size_t user_len, assistant_len;
    char data[]; /* user text, NUL, assistant text, NUL */
};

struct session {
    struct session *hnext;             /* bucket chain */
    struct aigw_dlist_node lru;        /* prev is more recent */
    uint64_t hash;
    uint64_t last_used;
    struct turn_node *oldest, *newest;
    size_t n_turns;
    size_t bytes;
    size_t id_len;
    char id[];
};

struct aigw_session_store {
    pthread_mutex_t lock;
    struct aigw_session_limits limits;
    uint64_t key[2]; /* SipHash key: session ids come from end users */

    struct session **buckets;
    size_t n_buckets; /* a power of two */

    /* Most recently used first. Every touch stamps last_used with the store
     * clock and moves the session to the head, so the list is also sorted by
     * last_used: expiry can stop at the first live session from the tail. */
    struct aigw_dlist lru;

    size_t n_sessions;
    size_t bytes;
    uint64_t evictions, expirations;

    /* The largest now_usec seen. Threads read the clock before taking the
     * lock, so their values arrive slightly out of order; stamping with the
     * maximum keeps last_used monotonic along the LRU list. */
    uint64_t clock;
};


static bool limits_valid(const struct aigw_session_limits *l) {
    return l && l->max_sessions >= 1 && l->max_turns >= 1 && l->max_session_bytes >= 1 &&
           l->max_total_bytes >= 1 && l->idle_ttl_usec > 0;
}

static size_t buckets_for(size_t max_sessions) {
    size_t n = BUCKETS_MIN;

    while (n < max_sessions && n < BUCKETS_MAX)
        n <<= 1;
    return n;
}

/* A turn may not outgrow what one session may hold, nor the whole store. */
static size_t session_cap(const struct aigw_session_limits *l) {
    return MIN(l->max_session_bytes, l->max_total_bytes);
}

static bool id_valid(const char *id, size_t *ret_len) {
    size_t n;

    if (!id)
        return false;
    n = strnlen(id, AIGW_SESSION_ID_MAX + 1);
    if (n == 0 || n > AIGW_SESSION_ID_MAX)
        return false;
    *ret_len = n;
    return true;
}

static struct session *lru_session(struct aigw_dlist_node *n) {
    return n ? AIGW_DLIST_ENTRY(n, struct session, lru) : NULL;
}

static void lru_unlink(struct aigw_session_store *store, struct session *s) {
    aigw_dlist_unlink(&store->lru, &s->lru);
}

static void lru_push_head(struct aigw_session_store *store, struct session *s) {
    aigw_dlist_push_head(&store->lru, &s->lru);
}

static void touch(struct aigw_session_store *store, struct session *s) {
    s->last_used = store->clock;
    if (store->lru.head == &s->lru)
        return;
    lru_unlink(store, s);
    lru_push_head(store, s);
}

static void advance_clock(struct aigw_session_store *store, uint64_t now_usec) {
    store->clock = MAX(store->clock, now_usec);
}

static bool expired(const struct aigw_session_store *store, const struct session *s) {
    return store->clock - s->last_used >= store->limits.idle_ttl_usec;
}

static struct session *lookup(struct aigw_session_store *store, const char *id, size_t id_len,
                              uint64_t hash) {
    for (struct session *s = store->buckets[hash & (store->n_buckets - 1)]; s; s = s->hnext)
        if (s->hash == hash && s->id_len == id_len && memcmp(s->id, id, id_len) == 0)
            return s;
    return NULL;
}

static void drop_oldest_turn(struct aigw_session_store *store, struct session *s) {
    struct turn_node *t = s->oldest;
    size_t n = t->user_len + t->assistant_len;

    s->oldest = t->next;
    if (!s->oldest)
        s->newest = NULL;
    s->n_turns--;
    s->bytes -= n;
    store->bytes -= n;
    free(t);
}

static void remove_session(struct aigw_session_store *store, struct session *s) {
    struct session **pp = &store->buckets[s->hash & (store->n_buckets - 1)];

    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    lru_unlink(store, s);
    while (s->oldest)
        drop_oldest_turn(store, s);
    store->n_sessions--;
    free(s);
}

/* Expire the session if it has been idle too long; returns whether it is
 * still there. */
static bool check_live(struct aigw_session_store *store, struct session *s) {
    if (!expired(store, s))
        return true;
    remove_session(store, s);
    store->expirations++;
    return false;
}

static void trim_session(struct aigw_session_store *store, struct session *s) {
    size_t cap = session_cap(&store->limits);

    while (s->oldest && (s->n_turns > store->limits.max_turns || s->bytes > cap))
        drop_oldest_turn(store, s);
}

/* Evict from the cold end until the global bounds hold. keep (the session
 * just written, at the head) is never evicted: on its own it fits, because
 * its bytes are trimmed to session_cap() <= max_total_bytes. */
static void enforce_global(struct aigw_session_store *store, const struct session *keep) {
    while (store->lru.tail && lru_session(store->lru.tail) != keep &&
           (store->n_sessions > store->limits.max_sessions ||
            store->bytes > store->limits.max_total_bytes)) {
        remove_session(store, lru_session(store->lru.tail));
        store->evictions++;
    }
}

int aigw_session_store_new(const struct aigw_session_limits *limits,
                           struct aigw_session_store **ret) {
    struct aigw_session_store *store;
    size_t n_buckets;

    if (!limits_valid(limits) || !ret)
        return -EINVAL;
    store = calloc(1, sizeof(*store));
    if (!store)
        return -ENOMEM;
    n_buckets = buckets_for(limits->max_sessions);
    store->buckets = calloc(n_buckets, sizeof(*store->buckets));
    if (!store->buckets) {
        free(store);
        return -ENOMEM;
    }
    store->n_buckets = n_buckets;
    store->limits = *limits;
    /* Without entropy (very early boot) fall back to a fixed key mixed with
     * the heap address: hashing still works, only the flooding defence is
     * weaker, and max_sessions still bounds every chain. */
    if (getrandom(store->key, sizeof(store->key), GRND_NONBLOCK) != (ssize_t)sizeof(store->key)) {
        store->key[0] = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)store;
        store->key[1] = 0xbf58476d1ce4e5b9ULL ^ (uint64_t)(uintptr_t)store->buckets;
    }
    if (pthread_mutex_init(&store->lock, NULL) != 0) {
        free(store->buckets);
        free(store);
        return -ENOMEM;
    }
    *ret = store;
    return 0;
}

struct aigw_session_store *aigw_session_store_free(struct aigw_session_store *store) {
    if (!store)
        return NULL;
    while (store->lru.head)
        remove_session(store, lru_session(store->lru.head));
    free(store->buckets);
    pthread_mutex_destroy(&store->lock);
    free(store);
    return NULL;
}

int aigw_session_store_set_limits(struct aigw_session_store *store,
                                  const struct aigw_session_limits *limits) {
    struct session **buckets = NULL;
    size_t n_buckets;

    if (!store || !limits_valid(limits))
        return -EINVAL;
    n_buckets = buckets_for(limits->max_sessions);

    pthread_mutex_lock(&store->lock);
    if (n_buckets != store->n_buckets) {
        buckets = calloc(n_buckets, sizeof(*buckets));
        if (!buckets) {
            pthread_mutex_unlock(&store->lock);
            return -ENOMEM;
        }
        for (struct session *s = lru_session(store->lru.head); s; s = lru_session(s->lru.next)) {
            size_t b = s->hash & (n_buckets - 1);

            s->hnext = buckets[b];
            buckets[b] = s;
        }
        free(store->buckets);
        store->buckets = buckets;
        store->n_buckets = n_buckets;
    }
    store->limits = *limits;

    for (struct session *s = lru_session(store->lru.head), *next; s; s = next) {
        next = lru_session(s->lru.next);
        trim_session(store, s);
        /* Nothing left to remember: the session would only take a slot. */
        if (!s->oldest) {
            remove_session(store, s);
            store->evictions++;
        }
    }
    enforce_global(store, NULL);
    pthread_mutex_unlock(&store->lock);
    return 0;
}

int aigw_session_store_get(struct aigw_session_store *store, const char *session_id,
                           uint64_t now_usec, struct aigw_turn **ret_turns, size_t *ret_n) {
    struct aigw_turn *turns;
    struct session *s;
    size_t id_len, n, i;
    char *p;

    if (!store || !id_valid(session_id, &id_len) || !ret_turns || !ret_n)
        return -EINVAL;

    pthread_mutex_lock(&store->lock);
    advance_clock(store, now_usec);
    s = lookup(store, session_id, id_len, aigw_siphash24(store->key, session_id, id_len));
    if (!s || !check_live(store, s)) {
        pthread_mutex_unlock(&store->lock);
        *ret_turns = NULL;
        *ret_n = 0;
        return 0;
    }

    /* One block for the array and every string: one allocation under the
     * lock, and s->bytes bounds its size. */
    n = s->n_turns;
    turns = malloc(n * sizeof(*turns) + s->bytes + 2 * n);
    if (!turns) {
        pthread_mutex_unlock(&store->lock);
        return -ENOMEM;
    }
    p = (char *)(turns + n);
    i = 0;
    for (struct turn_node *t = s->oldest; t; t = t->next, i++) {
        turns[i].user = p;
        memcpy(p, t->data, t->user_len + 1);
        p += t->user_len + 1;
        turns[i].assistant = p;
        memcpy(p, t->data + t->user_len + 1, t->assistant_len + 1);
        p += t->assistant_len + 1;
    }
    touch(store, s);
    pthread_mutex_unlock(&store->lock);

    *ret_turns = turns;
    *ret_n = n;
    return 0;
}

int aigw_session_store_append(struct aigw_session_store *store, const char *session_id,
                              const char *user_text, const char *assistant_text,
                              uint64_t now_usec) {
    _cleanup_free_ struct turn_node *t = NULL;
    struct session *s;
    size_t id_len, ulen, alen;
    uint64_t hash;

    if (!store || !id_valid(session_id, &id_len) || !user_text || !assistant_text)
        return -EINVAL;
    ulen = strlen(user_text);
    alen = strlen(assistant_text);
    if (ulen > SIZE_MAX / 2 - sizeof(*t) - 2 || alen > SIZE_MAX / 2 - sizeof(*t) - 2)
        return -E2BIG;

    /* Allocated before taking the lock, so a failure leaves the store as it was. */
    t = malloc(sizeof(*t) + ulen + 1 + alen + 1);
    if (!t)
        return -ENOMEM;
    t->next = NULL;
    t->user_len = ulen;
    t->assistant_len = alen;
    memcpy(t->data, user_text, ulen + 1);
    memcpy(t->data + ulen + 1, assistant_text, alen + 1);
    hash = aigw_siphash24(store->key, session_id, id_len);

    pthread_mutex_lock(&store->lock);
    advance_clock(store, now_usec);
    s = lookup(store, session_id, id_len, hash);
    if (s && !check_live(store, s))
        s = NULL;

    if (ulen + alen > session_cap(&store->limits)) {
        if (s)
            remove_session(store, s);
        pthread_mutex_unlock(&store->lock);
        return -E2BIG;
    }

    if (!s) {
        size_t b = hash & (store->n_buckets - 1);

        s = calloc(1, sizeof(*s) + id_len + 1);
        if (!s) {
            pthread_mutex_unlock(&store->lock);
            return -ENOMEM;
        }
        s->hash = hash;
        s->id_len = id_len;
        memcpy(s->id, session_id, id_len + 1);
        s->hnext = store->buckets[b];
        store->buckets[b] = s;
        lru_push_head(store, s);
        store->n_sessions++;
    }

    if (s->newest)
        s->newest->next = t;
    else
        s->oldest = t;
    s->newest = t;
    s->n_turns++;
    s->bytes += ulen + alen;
    store->bytes += ulen + alen;
    TAKE_PTR(t);

    touch(store, s);
    trim_session(store, s);
    enforce_global(store, s);
    pthread_mutex_unlock(&store->lock);
    return 0;
}

size_t aigw_session_store_expire(struct aigw_session_store *store, uint64_t now_usec) {
    size_t n = 0;

    if (!store)
        return 0;
    pthread_mutex_lock(&store->lock);
    advance_clock(store, now_usec);
    while (store->lru.tail && expired(store, lru_session(store->lru.tail))) {
        remove_session(store, lru_session(store->lru.tail));
        store->expirations++;
        n++;
    }
    pthread_mutex_unlock(&store->lock);
    return n;
}

void aigw_session_store_stats(struct aigw_session_store *store, struct aigw_session_stats *ret) {
    if (!store || !ret)
        return;
    pthread_mutex_lock(&store->lock);
    *ret = (struct aigw_session_stats){
        .sessions = store->n_sessions,
        .bytes = store->bytes,
        .evictions = store->evictions,
        .expirations = store->expirations,
    };
    pthread_mutex_unlock(&store->lock);
}

void aigw_turns_free(struct aigw_turn *turns, size_t n) {
    /* aigw_session_store_get() puts the strings in the array's own block. */
    (void)n;
    free(turns);
}

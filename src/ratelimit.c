/* SPDX-License-Identifier: MIT */
#include "aigw/list.h"
#include "aigw/ratelimit.h"
#include "aigw/siphash.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "aigw/macro.h"

/* One token is 60e6 units: a bucket of `limit` tokens per minute gains
 * exactly `limit` units per microsecond. */
#define UNITS_PER_TOKEN ((int64_t)(60 * USEC_PER_SEC))

/* Debt saturates here so that level arithmetic can never overflow:
 * capacity (at most 6e16) minus this still fits in int64_t. */
#define LEVEL_FLOOR (-100 * (int64_t)AIGW_RL_LIMIT_MAX * UNITS_PER_TOKEN)

/* New entries start above any capacity; the first refill clamps them to
 * whatever the limit is then. */
#define LEVEL_NEW INT64_MAX

#define SHARDS_MAX 64
#define SHARD_MIN_ENTRIES 1024
/* How far up from the least recently used end eviction looks: bounds the
 * time a full shard holds its lock. */
#define EVICT_SCAN 64

struct bucket {
    int64_t level;    /* units; negative after a large token debit */
    uint64_t updated; /* usec; never moves backwards */
};

struct entry {
    struct entry *hash_next;
    /* On the shard's idle list exactly when inflight == 0. */
    struct aigw_dlist_node idle;
    uint64_t hash;
    struct bucket req, tok;
    uint64_t inflight;
    /* The limits of the latest call, only to judge "full" for eviction. */
    uint64_t last_rpm, last_tpm;
    size_t id_len;
    char id[];
};

struct shard {
    pthread_mutex_t lock;
    struct entry **table; /* chained, n_table a power of two */
    size_t n_table;
    struct aigw_dlist idle; /* most recently used first */
    size_t n, max;
};

struct aigw_ratelimit {
    struct shard *shards;
    size_t n_shards; /* power of two */
    unsigned shard_bits;
    uint64_t seed[2];
    _Atomic uint64_t global_inflight;
};


static int64_t capacity(uint64_t limit) {
    return (int64_t)limit * UNITS_PER_TOKEN;
}

/* The bucket's level at now for this limit (> 0), without changing it. */
static int64_t bucket_level(const struct bucket *b, uint64_t limit, uint64_t now) {
    int64_t cap = capacity(limit);
    uint64_t dt, deficit, need;

    if (b->level >= cap)
        return cap;
    dt = now > b->updated ? now - b->updated : 0;
    deficit = (uint64_t)(cap - b->level);
    need = (deficit + limit - 1) / limit; /* usec until full */
    if (dt >= need)
        return cap;
    /* dt < need, so dt * limit < deficit: no overflow, stays below cap. */
    return b->level + (int64_t)(dt * limit);
}

static void bucket_refill(struct bucket *b, uint64_t limit, uint64_t now) {
    b->level = bucket_level(b, limit, now);
    b->updated = MAX(b->updated, now);
}

/* usec until the level reaches target units (0 if it is there already). */
static uint64_t usec_until(int64_t level, int64_t target, uint64_t limit) {
    if (level >= target)
        return 0;
    uint64_t missing = (uint64_t)(target - level);
    return (missing + limit - 1) / limit;
}

static struct aigw_rl_window bucket_window(int64_t level, uint64_t limit) {
    if (limit == 0)
        return (struct aigw_rl_window){};
    return (struct aigw_rl_window){
        .limit = limit,
        .remaining = level > 0 ? (uint64_t)(level / UNITS_PER_TOKEN) : 0,
        .reset_usec = usec_until(level, capacity(limit), limit),
    };
}

static uint64_t usec_to_sec_ceil(uint64_t usec) {
    return usec / USEC_PER_SEC + (usec % USEC_PER_SEC != 0);
}

static void idle_unlink(struct shard *s, struct entry *e) {
    aigw_dlist_unlink(&s->idle, &e->idle);
}

static void idle_push_head(struct shard *s, struct entry *e) {
    aigw_dlist_push_head(&s->idle, &e->idle);
}

static struct entry **table_slot(struct shard *s, uint64_t hash) {
    return &s->table[hash & (s->n_table - 1)];
}

static struct entry *shard_find(struct shard *s, uint64_t hash, const char *id, size_t len) {
    for (struct entry *e = *table_slot(s, hash); e; e = e->hash_next)
        if (e->hash == hash && e->id_len == len && memcmp(e->id, id, len) == 0)
            return e;
    return NULL;
}

static void table_remove(struct shard *s, struct entry *e) {
    struct entry **p = table_slot(s, e->hash);
    while (*p != e)
        p = &(*p)->hash_next;
    *p = e->hash_next;
}

static bool entry_is_evictable(const struct entry *e, uint64_t now) {
    if (e->inflight > 0)
        return false;
    if (e->last_rpm > 0 && bucket_level(&e->req, e->last_rpm, now) < capacity(e->last_rpm))
        return false;
    if (e->last_tpm > 0 && bucket_level(&e->tok, e->last_tpm, now) < capacity(e->last_tpm))
        return false;
    return true;
}

/* Unhook one idle, full entry and return it for freeing after unlock, or
 * NULL if none of the least recently used ones qualifies. An entry that is
 * full again behaves exactly like a new one, so dropping it loses nothing. */
static struct entry *shard_evict(struct shard *s, uint64_t now) {
    unsigned scanned = 0;
    for (struct aigw_dlist_node *n = s->idle.tail; n && scanned < EVICT_SCAN; n = n->prev, scanned++) {
        struct entry *e = AIGW_DLIST_ENTRY(n, struct entry, idle);
        if (!entry_is_evictable(e, now))
            continue;
        idle_unlink(s, e);
        table_remove(s, e);
        s->n--;
        return e;
    }
    return NULL;
}

static bool global_try_acquire(struct aigw_ratelimit *rl, uint64_t cap) {
    uint64_t cur = atomic_load_explicit(&rl->global_inflight, memory_order_relaxed);
    do {
        if (cap > 0 && cur >= cap)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&rl->global_inflight, &cur, cur + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

static bool limits_valid(const struct aigw_rl_limits *l) {
    return l->rpm <= AIGW_RL_LIMIT_MAX && l->tpm <= AIGW_RL_LIMIT_MAX &&
           l->inflight <= AIGW_RL_LIMIT_MAX && l->global_inflight <= AIGW_RL_LIMIT_MAX;
}

static struct shard *pick_shard(struct aigw_ratelimit *rl, uint64_t hash) {
    /* The top bits choose the shard, the low bits the chain inside it. */
    if (rl->shard_bits == 0)
        return &rl->shards[0];
    return &rl->shards[hash >> (64 - rl->shard_bits)];
}

void aigw_ratelimit_free(struct aigw_ratelimit *rl) {
    if (!rl)
        return;
    for (size_t i = 0; rl->shards && i < rl->n_shards; i++) {
        struct shard *s = &rl->shards[i];
        if (!s->table)
            continue;
        for (size_t j = 0; j < s->n_table; j++) {
            struct entry *e = s->table[j];
            while (e) {
                struct entry *next = e->hash_next;
                free(e);
                e = next;
            }
        }
        free(s->table);
        pthread_mutex_destroy(&s->lock);
    }
    free(rl->shards);
    free(rl);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_ratelimit *, aigw_ratelimit_free);

int aigw_ratelimit_new(size_t max_entries, struct aigw_ratelimit **ret) {
    _cleanup_(aigw_ratelimit_freep) struct aigw_ratelimit *rl = NULL;
    size_t n_shards = 1;
    unsigned bits = 0;

    if (!ret || max_entries < 1 || max_entries > AIGW_RL_ENTRIES_MAX)
        return -EINVAL;

    /* Small tables stay in one shard, so that their bound is exact and not
     * split into slivers that fill up one by one. */
    while (n_shards < SHARDS_MAX && max_entries / (n_shards * 2) >= SHARD_MIN_ENTRIES) {
        n_shards *= 2;
        bits++;
    }

    rl = calloc(1, sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    rl->shards = calloc(n_shards, sizeof(*rl->shards));
    if (!rl->shards)
        return -ENOMEM;
    rl->n_shards = n_shards;
    rl->shard_bits = bits;
    atomic_init(&rl->global_inflight, 0);

    if (getrandom(rl->seed, sizeof(rl->seed), 0) != (ssize_t)sizeof(rl->seed))
        return negative_errno();

    for (size_t i = 0; i < n_shards; i++) {
        struct shard *s = &rl->shards[i];
        /* Spread max_entries exactly: the first (max % n) shards get one more. */
        s->max = max_entries / n_shards + (i < max_entries % n_shards);
        s->n_table = 16;
        while (s->n_table < s->max)
            s->n_table *= 2;
        s->table = calloc(s->n_table, sizeof(*s->table));
        if (!s->table)
            return -ENOMEM;
        /* Marks the mutex as initialized for aigw_ratelimit_free(). */
        int r = pthread_mutex_init(&s->lock, NULL);
        if (r != 0) {
            free(TAKE_PTR(s->table));
            return -r;
        }
    }

    *ret = TAKE_PTR(rl);
    return 0;
}

static struct entry *entry_new(const char *id, size_t len, uint64_t hash) {
    struct entry *e = calloc(1, sizeof(*e) + len);
    if (!e)
        return NULL;
    e->hash = hash;
    e->req.level = e->tok.level = LEVEL_NEW;
    e->id_len = len;
    memcpy(e->id, id, len);
    return e;
}

int aigw_ratelimit_acquire(struct aigw_ratelimit *rl, const char *id, size_t id_len,
                           const struct aigw_rl_limits *limits, uint64_t now_usec,
                           struct aigw_rl_decision *ret) {
    struct entry *e, *spare = NULL, *evicted = NULL;
    struct aigw_rl_decision d = {};
    bool req_ok, tok_ok, inflight_ok, global_ok = false;
    uint64_t wait = 0;
    struct shard *s;
    uint64_t hash;

    if (!rl || !id || id_len < 1 || id_len > AIGW_RL_ID_MAX || !limits || !ret ||
        !limits_valid(limits))
        return -EINVAL;

    hash = aigw_siphash24(rl->seed, id, id_len);
    s = pick_shard(rl, hash);

    pthread_mutex_lock(&s->lock);
    e = shard_find(s, hash, id, id_len);
    if (!e) {
        /* Allocate outside the lock, then look again: another thread may
         * have added the id meanwhile. */
        pthread_mutex_unlock(&s->lock);
        spare = entry_new(id, id_len, hash);
        if (!spare)
            return -ENOMEM;
        pthread_mutex_lock(&s->lock);
        e = shard_find(s, hash, id, id_len);
    }
    if (!e) {
        if (s->n >= s->max) {
            evicted = shard_evict(s, now_usec);
            if (!evicted) {
                pthread_mutex_unlock(&s->lock);
                free(spare);
                return -ENOSPC;
            }
        }
        e = TAKE_PTR(spare);
        struct entry **slot = table_slot(s, hash);
        e->hash_next = *slot;
        *slot = e;
        idle_push_head(s, e);
        s->n++;
    }

    if (limits->rpm > 0)
        bucket_refill(&e->req, limits->rpm, now_usec);
    if (limits->tpm > 0)
        bucket_refill(&e->tok, limits->tpm, now_usec);
    e->last_rpm = limits->rpm;
    e->last_tpm = limits->tpm;

    req_ok = limits->rpm == 0 || e->req.level >= UNITS_PER_TOKEN;
    tok_ok = limits->tpm == 0 || e->tok.level >= UNITS_PER_TOKEN;
    inflight_ok = limits->inflight == 0 || e->inflight < limits->inflight;
    /* Last, and only when everything else agrees, so a refusal never has to
     * hand a global slot back (which would briefly refuse others). */
    if (req_ok && tok_ok && inflight_ok)
        global_ok = global_try_acquire(rl, limits->global_inflight);

    if (global_ok) {
        d.verdict = AIGW_RL_ALLOWED;
        if (limits->rpm > 0)
            e->req.level -= UNITS_PER_TOKEN;
        if (e->inflight++ == 0)
            idle_unlink(s, e);
    } else {
        if (!req_ok)
            d.verdict = AIGW_RL_REFUSED_REQUESTS;
        else if (!tok_ok)
            d.verdict = AIGW_RL_REFUSED_TOKENS;
        else if (!inflight_ok)
            d.verdict = AIGW_RL_REFUSED_INFLIGHT;
        else
            d.verdict = AIGW_RL_REFUSED_GLOBAL_INFLIGHT;

        if (!req_ok)
            wait = MAX(wait, usec_until(e->req.level, UNITS_PER_TOKEN, limits->rpm));
        if (!tok_ok)
            wait = MAX(wait, usec_until(e->tok.level, UNITS_PER_TOKEN, limits->tpm));
        /* A refused bucket waits at least 1 usec, so this is >= 1 for
         * every kind of refusal. */
        d.retry_after_sec = MAX(usec_to_sec_ceil(wait), (uint64_t)1);

        if (e->inflight == 0) {
            idle_unlink(s, e);
            idle_push_head(s, e);
        }
    }

    d.requests = bucket_window(e->req.level, limits->rpm);
    d.tokens = bucket_window(e->tok.level, limits->tpm);
    pthread_mutex_unlock(&s->lock);

    free(evicted);
    free(spare); /* unused when another thread added the id first */
    *ret = d;
    return 0;
}

int aigw_ratelimit_release(struct aigw_ratelimit *rl, const char *id, size_t id_len,
                           uint64_t tokens_used, uint64_t tpm, uint64_t now_usec) {
    struct shard *s;
    struct entry *e;
    uint64_t hash;

    if (!rl || !id || id_len < 1 || id_len > AIGW_RL_ID_MAX || tpm > AIGW_RL_LIMIT_MAX)
        return -EINVAL;

    hash = aigw_siphash24(rl->seed, id, id_len);
    s = pick_shard(rl, hash);

    pthread_mutex_lock(&s->lock);
    e = shard_find(s, hash, id, id_len);
    if (!e || e->inflight == 0) {
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }

    if (tpm > 0) {
        int64_t debit = (int64_t)MIN(tokens_used, AIGW_RL_LIMIT_MAX) * UNITS_PER_TOKEN;
        bucket_refill(&e->tok, tpm, now_usec);
        /* level >= LEVEL_FLOOR and debit <= 6e16: the difference fits. */
        e->tok.level = MAX(e->tok.level - debit, LEVEL_FLOOR);
        e->last_tpm = tpm;
    }
    if (--e->inflight == 0)
        idle_push_head(s, e);
    atomic_fetch_sub_explicit(&rl->global_inflight, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

size_t aigw_ratelimit_count(struct aigw_ratelimit *rl) {
    size_t n = 0;
    if (!rl)
        return 0;
    for (size_t i = 0; i < rl->n_shards; i++) {
        pthread_mutex_lock(&rl->shards[i].lock);
        n += rl->shards[i].n;
        pthread_mutex_unlock(&rl->shards[i].lock);
    }
    return n;
}

uint64_t aigw_ratelimit_global_inflight(const struct aigw_ratelimit *rl) {
    if (!rl)
        return 0;
    return atomic_load_explicit(&((struct aigw_ratelimit *)rl)->global_inflight,
                                memory_order_relaxed);
}

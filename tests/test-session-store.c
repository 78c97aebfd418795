/* SPDX-License-Identifier: MIT */

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/session-store.h"

static const struct aigw_session_limits roomy = {
    .max_sessions = 100,
    .max_turns = 10,
    .max_session_bytes = 10000,
    .max_total_bytes = 100000,
    .idle_ttl_usec = 1000 * USEC_PER_SEC,
};

static struct aigw_session_store *new_store(const struct aigw_session_limits *l) {
    struct aigw_session_store *store = NULL;

    assert_int_equal(aigw_session_store_new(l, &store), 0);
    assert_non_null(store);
    return store;
}

static struct aigw_session_stats stats(struct aigw_session_store *store) {
    struct aigw_session_stats st;

    memset(&st, 0xaa, sizeof(st));
    aigw_session_store_stats(store, &st);
    return st;
}

/* Assert the session holds exactly the given turns, oldest first, as
 * "user|assistant" strings; NULL-terminated list. */
static void assert_turns(struct aigw_session_store *store, const char *id, uint64_t now,
                         const char *const *expected) {
    struct aigw_turn *turns = (struct aigw_turn *)1;
    size_t n = 12345, want = 0;

    while (expected[want])
        want++;
    assert_int_equal(aigw_session_store_get(store, id, now, &turns, &n), 0);
    assert_int_equal(n, want);
    if (want == 0)
        assert_null(turns);
    for (size_t i = 0; i < n; i++) {
        char buf[512];
        int k = snprintf(buf, sizeof(buf), "%s|%s", turns[i].user, turns[i].assistant);

        assert_true(k > 0 && (size_t)k < sizeof(buf));
        assert_string_equal(buf, expected[i]);
    }
    aigw_turns_free(turns, n);
}

#define TURNS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_TURNS ((const char *const[]){NULL})

static void test_new_bad_limits(void **state) {
    static const struct aigw_session_limits bad[] = {
        {0, 1, 1, 1, 1}, {1, 0, 1, 1, 1}, {1, 1, 0, 1, 1}, {1, 1, 1, 0, 1}, {1, 1, 1, 1, 0},
    };
    struct aigw_session_store *store = (struct aigw_session_store *)1;

    assert_int_equal(aigw_session_store_new(NULL, &store), -EINVAL);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        assert_int_equal(aigw_session_store_new(&bad[i], &store), -EINVAL);
    assert_ptr_equal(store, (struct aigw_session_store *)1);
    assert_int_equal(aigw_session_store_new(&roomy, NULL), -EINVAL);
    assert_null(aigw_session_store_free(NULL));
    aigw_turns_free(NULL, 0);
    aigw_session_store_stats(NULL, NULL);
    assert_int_equal(aigw_session_store_expire(NULL, 0), 0);
}

static void test_follow_up(void **state) {
    struct aigw_session_store *store = new_store(&roomy);
    struct aigw_session_stats st;

    assert_turns(store, "s1", 0, NO_TURNS);
    assert_int_equal(aigw_session_store_append(store, "s1", "What's 2+2?", "4.", 1), 0);
    assert_turns(store, "s1", 2, TURNS("What's 2+2?|4."));
    assert_int_equal(aigw_session_store_append(store, "s1", "And times 3?", "12.", 3), 0);
    assert_turns(store, "s1", 4, TURNS("What's 2+2?|4.", "And times 3?|12."));
    /* Sessions are independent, ids compared in full. */
    assert_turns(store, "s", 5, NO_TURNS);
    assert_turns(store, "s10", 5, NO_TURNS);
    assert_int_equal(aigw_session_store_append(store, "s2", "", "", 6), 0);
    assert_turns(store, "s2", 7, TURNS("|"));

    st = stats(store);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.bytes, strlen("What's 2+2?4.And times 3?12."));
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.expirations, 0);
    aigw_session_store_free(store);
}

static void test_bad_arguments(void **state) {
    struct aigw_session_store *store = new_store(&roomy);
    char id[AIGW_SESSION_ID_MAX + 2];
    struct aigw_turn *turns = (struct aigw_turn *)1;
    size_t n = 7;

    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_int_equal(aigw_session_store_append(NULL, "s", "u", "a", 0), -EINVAL);
    assert_int_equal(aigw_session_store_append(store, NULL, "u", "a", 0), -EINVAL);
    assert_int_equal(aigw_session_store_append(store, "", "u", "a", 0), -EINVAL);
    assert_int_equal(aigw_session_store_append(store, id, "u", "a", 0), -EINVAL);
    assert_int_equal(aigw_session_store_append(store, "s", NULL, "a", 0), -EINVAL);
    assert_int_equal(aigw_session_store_append(store, "s", "u", NULL, 0), -EINVAL);
    assert_int_equal(aigw_session_store_get(NULL, "s", 0, &turns, &n), -EINVAL);
    assert_int_equal(aigw_session_store_get(store, NULL, 0, &turns, &n), -EINVAL);
    assert_int_equal(aigw_session_store_get(store, "", 0, &turns, &n), -EINVAL);
    assert_int_equal(aigw_session_store_get(store, id, 0, &turns, &n), -EINVAL);
    assert_int_equal(aigw_session_store_get(store, "s", 0, NULL, &n), -EINVAL);
    assert_int_equal(aigw_session_store_get(store, "s", 0, &turns, NULL), -EINVAL);
    assert_ptr_equal(turns, (struct aigw_turn *)1);
    assert_int_equal(n, 7);
    assert_int_equal(stats(store).sessions, 0);

    /* The longest id accepted. */
    id[AIGW_SESSION_ID_MAX] = '\0';
    assert_int_equal(aigw_session_store_append(store, id, "u", "a", 0), 0);
    assert_turns(store, id, 0, TURNS("u|a"));
    assert_int_equal(aigw_session_store_set_limits(NULL, &roomy), -EINVAL);
    aigw_session_store_free(store);
}

static void test_max_turns(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;

    l.max_turns = 3;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "s", "u1", "a1", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "s", "u2", "a2", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "s", "u3", "a3", 0), 0);
    assert_turns(store, "s", 0, TURNS("u1|a1", "u2|a2", "u3|a3"));
    assert_int_equal(aigw_session_store_append(store, "s", "u4", "a4", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "s", "u5", "a5", 0), 0);
    assert_turns(store, "s", 0, TURNS("u3|a3", "u4|a4", "u5|a5"));
    assert_int_equal(stats(store).bytes, 12);
    assert_int_equal(stats(store).evictions, 0);
    aigw_session_store_free(store);
}

static void test_max_session_bytes(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;
    struct aigw_session_stats st;

    l.max_session_bytes = 10;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "s", "aaa", "bbb", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "s", "cc", "dd", 0), 0);
    assert_turns(store, "s", 0, TURNS("aaa|bbb", "cc|dd"));
    assert_int_equal(stats(store).bytes, 10);
    assert_int_equal(aigw_session_store_append(store, "s", "e", "f", 0), 0);
    assert_turns(store, "s", 0, TURNS("cc|dd", "e|f"));
    assert_int_equal(stats(store).bytes, 6);
    /* One turn of exactly the bound pushes out all the others. */
    assert_int_equal(aigw_session_store_append(store, "s", "0123456789", "", 0), 0);
    assert_turns(store, "s", 0, TURNS("0123456789|"));
    assert_int_equal(stats(store).bytes, 10);

    /* A turn over the bound is not stored and the session is forgotten. */
    assert_int_equal(aigw_session_store_append(store, "other", "x", "y", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "s", "12345", "678901", 0), -E2BIG);
    assert_turns(store, "s", 0, NO_TURNS);
    assert_turns(store, "other", 0, TURNS("x|y"));
    assert_int_equal(aigw_session_store_append(store, "new", "12345", "678901", 0), -E2BIG);
    assert_turns(store, "new", 0, NO_TURNS);
    st = stats(store);
    assert_int_equal(st.sessions, 1);
    assert_int_equal(st.bytes, 2);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.expirations, 0);
    aigw_session_store_free(store);
}

static void test_lru_eviction(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;
    struct aigw_session_stats st;

    l.max_sessions = 3;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "a", "ua", "xa", 1), 0);
    assert_int_equal(aigw_session_store_append(store, "b", "ub", "xb", 2), 0);
    assert_int_equal(aigw_session_store_append(store, "c", "uc", "xc", 3), 0);
    /* A get makes a the most recent: b is now the coldest. */
    assert_turns(store, "a", 4, TURNS("ua|xa"));
    assert_int_equal(aigw_session_store_append(store, "d", "ud", "xd", 5), 0);
    st = stats(store);
    assert_int_equal(st.sessions, 3);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, 12);
    assert_turns(store, "b", 6, NO_TURNS);
    /* An append touches too: c goes next, not a. Order now: c, a, d. */
    assert_int_equal(aigw_session_store_append(store, "c", "uc2", "xc2", 7), 0);
    assert_int_equal(aigw_session_store_append(store, "e", "ue", "xe", 8), 0);
    assert_turns(store, "a", 9, NO_TURNS);
    assert_turns(store, "c", 9, TURNS("uc|xc", "uc2|xc2"));
    assert_turns(store, "d", 9, TURNS("ud|xd"));
    assert_turns(store, "e", 9, TURNS("ue|xe"));
    st = stats(store);
    assert_int_equal(st.sessions, 3);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.expirations, 0);
    /* A lookup miss does not evict anything. */
    assert_turns(store, "zzz", 10, NO_TURNS);
    assert_int_equal(stats(store).sessions, 3);
    aigw_session_store_free(store);
}

static void test_lazy_expiry(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;
    struct aigw_session_stats st;

    l.idle_ttl_usec = 100;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "a", "u", "x", 1000), 0);
    assert_turns(store, "a", 1099, TURNS("u|x"));
    /* The get restarted the timer. */
    assert_turns(store, "a", 1198, TURNS("u|x"));
    assert_int_equal(stats(store).expirations, 0);
    assert_turns(store, "a", 1298, NO_TURNS);
    st = stats(store);
    assert_int_equal(st.sessions, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.expirations, 1);

    /* An append to an expired session starts afresh. */
    assert_int_equal(aigw_session_store_append(store, "b", "u1", "x1", 2000), 0);
    assert_int_equal(aigw_session_store_append(store, "b", "u2", "x2", 2100), 0);
    assert_turns(store, "b", 2100, TURNS("u2|x2"));
    st = stats(store);
    assert_int_equal(st.expirations, 2);
    assert_int_equal(st.evictions, 0);
    aigw_session_store_free(store);
}

static void test_expire_sweep(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;

    l.idle_ttl_usec = 100;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "a", "u", "x", 0), 0);
    assert_int_equal(aigw_session_store_append(store, "b", "u", "x", 10), 0);
    assert_int_equal(aigw_session_store_append(store, "c", "u", "x", 20), 0);
    assert_int_equal(aigw_session_store_expire(store, 99), 0);
    assert_int_equal(aigw_session_store_expire(store, 100), 1);
    assert_int_equal(aigw_session_store_expire(store, 115), 1);
    assert_int_equal(aigw_session_store_expire(store, 119), 0);
    assert_int_equal(stats(store).sessions, 1);
    assert_turns(store, "c", 119, TURNS("u|x"));
    assert_int_equal(aigw_session_store_expire(store, 218), 0);
    assert_int_equal(aigw_session_store_expire(store, 219), 1);
    assert_int_equal(stats(store).expirations, 3);
    assert_int_equal(stats(store).sessions, 0);
    assert_int_equal(aigw_session_store_expire(store, 10000), 0);
    aigw_session_store_free(store);
}

static void test_clock_out_of_order(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;

    l.idle_ttl_usec = 100;
    store = new_store(&l);
    /* b's thread read the clock before a's but took the lock after it: b
     * is stamped with the later time, so expiry from the tail stays exact. */
    assert_int_equal(aigw_session_store_append(store, "a", "u", "x", 50), 0);
    assert_int_equal(aigw_session_store_append(store, "b", "u", "x", 40), 0);
    assert_int_equal(aigw_session_store_expire(store, 149), 0);
    /* An earlier now than the store has seen expires nothing either. */
    assert_int_equal(aigw_session_store_expire(store, 0), 0);
    assert_int_equal(aigw_session_store_expire(store, 150), 2);
    aigw_session_store_free(store);
}

static void test_total_bytes(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store;
    struct aigw_session_stats st;

    l.max_total_bytes = 20;
    store = new_store(&l);
    assert_int_equal(aigw_session_store_append(store, "a", "aaaaa", "AAAAA", 1), 0);
    assert_int_equal(aigw_session_store_append(store, "b", "bbbbb", "BBBBB", 2), 0);
    assert_int_equal(stats(store).bytes, 20);
    assert_int_equal(aigw_session_store_append(store, "c", "cc", "CCC", 3), 0);
    st = stats(store);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.bytes, 15);
    assert_int_equal(st.evictions, 1);
    assert_turns(store, "a", 4, NO_TURNS);

    /* One session alone is held to the total bound, with its own oldest
     * turns dropped rather than the session evicted. */
    assert_int_equal(aigw_session_store_append(store, "c", "12345678", "", 5), 0);
    assert_int_equal(aigw_session_store_append(store, "c", "abcdefgh", "", 6), 0);
    st = stats(store);
    assert_int_equal(st.sessions, 1);
    assert_int_equal(st.bytes, 16);
    assert_int_equal(st.evictions, 2);
    assert_turns(store, "c", 7, TURNS("12345678|", "abcdefgh|"));
    /* Larger than the total bound: refused, even with a roomy session bound. */
    assert_int_equal(aigw_session_store_append(store, "c", "0123456789", "0123456789x", 8),
                     -E2BIG);
    assert_int_equal(stats(store).sessions, 0);
    assert_int_equal(stats(store).bytes, 0);
    aigw_session_store_free(store);
}

static void test_set_limits(void **state) {
    struct aigw_session_limits l = roomy;
    struct aigw_session_store *store = new_store(&roomy);
    struct aigw_session_stats st;
    char id[32];

    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_int_equal(aigw_session_store_append(store, id, "u1", "a1", (uint64_t)i), 0);
        assert_int_equal(aigw_session_store_append(store, id, "u22", "a22", (uint64_t)i), 0);
    }
    assert_int_equal(stats(store).sessions, 100);

    /* Bad limits change nothing. */
    l.max_turns = 0;
    assert_int_equal(aigw_session_store_set_limits(store, &l), -EINVAL);
    assert_int_equal(aigw_session_store_set_limits(store, NULL), -EINVAL);
    assert_int_equal(stats(store).sessions, 100);

    /* Growing rehashes: every session is still found. */
    l = roomy;
    l.max_sessions = 5000;
    assert_int_equal(aigw_session_store_set_limits(store, &l), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_turns(store, id, 100, TURNS("u1|a1", "u22|a22"));
    }

    /* Fewer turns: the oldest go. */
    l.max_turns = 1;
    assert_int_equal(aigw_session_store_set_limits(store, &l), 0);
    assert_turns(store, "s7", 101, TURNS("u22|a22"));
    assert_int_equal(stats(store).bytes, 100 * 6);

    /* Fewer sessions: the least recently used go (s7 was touched last). */
    l.max_sessions = 2;
    assert_int_equal(aigw_session_store_set_limits(store, &l), 0);
    st = stats(store);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.evictions, 98);
    assert_turns(store, "s7", 102, TURNS("u22|a22"));
    assert_turns(store, "s99", 102, TURNS("u22|a22"));

    /* A session whose every turn is over the new bound is dropped whole. */
    l.max_turns = 5;
    l.max_session_bytes = 5;
    assert_int_equal(aigw_session_store_set_limits(store, &l), 0);
    st = stats(store);
    assert_int_equal(st.sessions, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.evictions, 100);

    /* The new bound holds for what comes next. */
    assert_int_equal(aigw_session_store_append(store, "n", "abc", "d", 200), 0);
    assert_int_equal(aigw_session_store_append(store, "n", "xy", "z", 201), 0);
    assert_turns(store, "n", 202, TURNS("xy|z"));
    aigw_session_store_free(store);
}

/* ---- threads --------------------------------------------------------- */

#define N_THREADS 8
#define N_OPS 3000
#define N_IDS 48

static const struct aigw_session_limits threaded = {
    .max_sessions = 32,
    .max_turns = 4,
    .max_session_bytes = 64,
    .max_total_bytes = 1500,
    .idle_ttl_usec = 5000,
};

struct worker {
    struct aigw_session_store *store;
    unsigned seed;
    int id;
    int failures;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;

    for (int i = 0; i < N_OPS; i++) {
        char sid[16], user[32], assistant[32];
        uint64_t now = (uint64_t)i * 3 + (uint64_t)(rand_r(&w->seed) % 50);
        int k = rand_r(&w->seed) % N_IDS;
        struct aigw_turn *turns;
        size_t n;

        snprintf(sid, sizeof(sid), "sess-%d", k);
        if (rand_r(&w->seed) % 2) {
            snprintf(user, sizeof(user), "u%d.%d", w->id, i);
            snprintf(assistant, sizeof(assistant), "a%d.%d", w->id, i);
            if (aigw_session_store_append(w->store, sid, user, assistant, now) != 0)
                w->failures++;
        } else if (rand_r(&w->seed) % 10 == 0)
            (void)aigw_session_store_expire(w->store, now);
        else {
            if (aigw_session_store_get(w->store, sid, now, &turns, &n) != 0) {
                w->failures++;
                continue;
            }
            if (n > threaded.max_turns)
                w->failures++;
            /* Each turn must be intact: the reply belongs to its question. */
            for (size_t j = 0; j < n; j++)
                if (turns[j].user[0] != 'u' || turns[j].assistant[0] != 'a' ||
                    strcmp(turns[j].user + 1, turns[j].assistant + 1) != 0)
                    w->failures++;
            aigw_turns_free(turns, n);
        }
    }
    return NULL;
}

static void test_threads(void **state) {
    struct aigw_session_store *store = new_store(&threaded);
    struct worker workers[N_THREADS];
    pthread_t tids[N_THREADS];
    struct aigw_session_stats st;
    size_t bytes = 0, sessions = 0;

    for (int i = 0; i < N_THREADS; i++) {
        workers[i] = (struct worker){.store = store, .seed = (unsigned)i * 7919u + 1, .id = i};
        assert_int_equal(pthread_create(&tids[i], NULL, worker_main, &workers[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(tids[i], NULL), 0);
        assert_int_equal(workers[i].failures, 0);
    }

    /* Sweep what is idle at the store's own clock (0 is behind it), so
     * the gets below expire nothing and can be compared with the stats. */
    (void)aigw_session_store_expire(store, 0);
    st = stats(store);
    assert_true(st.sessions <= threaded.max_sessions);
    assert_true(st.bytes <= threaded.max_total_bytes);
    assert_true(st.evictions > 0);

    /* The counters agree with what is actually stored. */
    for (int k = 0; k < N_IDS; k++) {
        char sid[16];
        struct aigw_turn *turns;
        size_t n;

        snprintf(sid, sizeof(sid), "sess-%d", k);
        assert_int_equal(aigw_session_store_get(store, sid, 0, &turns, &n), 0);
        if (n > 0)
            sessions++;
        for (size_t j = 0; j < n; j++)
            bytes += strlen(turns[j].user) + strlen(turns[j].assistant);
        aigw_turns_free(turns, n);
    }
    assert_int_equal(sessions, st.sessions);
    assert_int_equal(bytes, st.bytes);
    aigw_session_store_free(store);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_bad_limits),
        cmocka_unit_test(test_follow_up),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_max_turns),
        cmocka_unit_test(test_max_session_bytes),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_lazy_expiry),
        cmocka_unit_test(test_expire_sweep),
        cmocka_unit_test(test_clock_out_of_order),
        cmocka_unit_test(test_total_bytes),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

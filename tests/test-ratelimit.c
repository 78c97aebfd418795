/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/ratelimit.h"

#define SEC USEC_PER_SEC
#define U_PER_TOKEN 60000000ULL /* units per token, as in ratelimit.c */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_ratelimit *, aigw_ratelimit_free);
#define _cleanup_rl_ _cleanup_(aigw_ratelimit_freep)

static struct aigw_ratelimit *new_rl(size_t max) {
    struct aigw_ratelimit *rl = NULL;
    assert_int_equal(aigw_ratelimit_new(max, &rl), 0);
    assert_non_null(rl);
    return rl;
}

static struct aigw_rl_decision acq(struct aigw_ratelimit *rl, const char *id, uint64_t rpm,
                                   uint64_t tpm, uint64_t inflight, uint64_t global,
                                   uint64_t now) {
    struct aigw_rl_limits l = {.rpm = rpm, .tpm = tpm, .inflight = inflight,
                               .global_inflight = global};
    struct aigw_rl_decision d;
    memset(&d, 0xaa, sizeof(d));
    int r = aigw_ratelimit_acquire(rl, id, strlen(id), &l, now, &d);
    if (r != 0)
        fail_msg("acquire(%s) at %llu: %d", id, (unsigned long long)now, r);
    return d;
}

/* acquire and release at once: debits one request, nothing else */
static struct aigw_rl_decision hit(struct aigw_ratelimit *rl, const char *id, uint64_t rpm,
                                   uint64_t now) {
    struct aigw_rl_decision d = acq(rl, id, rpm, 0, 0, 0, now);
    if (d.verdict == AIGW_RL_ALLOWED)
        assert_int_equal(aigw_ratelimit_release(rl, id, strlen(id), 0, 0, now), 0);
    return d;
}

static void test_new_invalid(void **state) {
    struct aigw_ratelimit *rl = (struct aigw_ratelimit *)0x1;
    assert_int_equal(aigw_ratelimit_new(0, &rl), -EINVAL);
    assert_int_equal(aigw_ratelimit_new(AIGW_RL_ENTRIES_MAX + 1, &rl), -EINVAL);
    assert_int_equal(aigw_ratelimit_new(10, NULL), -EINVAL);
    assert_ptr_equal(rl, (struct aigw_ratelimit *)0x1);
    aigw_ratelimit_free(NULL);

    /* the largest table is allowed */
    _cleanup_rl_ struct aigw_ratelimit *big = new_rl(AIGW_RL_ENTRIES_MAX);
    assert_int_equal(aigw_ratelimit_count(big), 0);
}

static void test_args_invalid(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_limits ok = {.rpm = 1}, big = {.rpm = AIGW_RL_LIMIT_MAX + 1};
    struct aigw_rl_decision d = {.verdict = 77};
    char longid[AIGW_RL_ID_MAX + 1];
    memset(longid, 'a', sizeof(longid));

    assert_int_equal(aigw_ratelimit_acquire(NULL, "a", 1, &ok, 0, &d), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, NULL, 1, &ok, 0, &d), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 0, &ok, 0, &d), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, longid, sizeof(longid), &ok, 0, &d), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, NULL, 0, &d), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &ok, 0, NULL), -EINVAL);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &big, 0, &d), -EINVAL);
    big = (struct aigw_rl_limits){.tpm = AIGW_RL_LIMIT_MAX + 1};
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &big, 0, &d), -EINVAL);
    big = (struct aigw_rl_limits){.inflight = AIGW_RL_LIMIT_MAX + 1};
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &big, 0, &d), -EINVAL);
    big = (struct aigw_rl_limits){.global_inflight = AIGW_RL_LIMIT_MAX + 1};
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &big, 0, &d), -EINVAL);
    assert_int_equal(d.verdict, 77); /* untouched */
    assert_int_equal(aigw_ratelimit_count(rl), 0);

    /* the longest id is fine */
    assert_int_equal(aigw_ratelimit_acquire(rl, longid, AIGW_RL_ID_MAX, &ok, 0, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_release(rl, longid, AIGW_RL_ID_MAX, 0, 0, 0), 0);

    assert_int_equal(aigw_ratelimit_release(NULL, "a", 1, 0, 0, 0), -EINVAL);
    assert_int_equal(aigw_ratelimit_release(rl, NULL, 1, 0, 0, 0), -EINVAL);
    assert_int_equal(aigw_ratelimit_release(rl, "a", 0, 0, 0, 0), -EINVAL);
    assert_int_equal(aigw_ratelimit_release(rl, longid, sizeof(longid), 0, 0, 0), -EINVAL);
    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, AIGW_RL_LIMIT_MAX + 1, 0), -EINVAL);
    /* nothing in flight, or unknown */
    assert_int_equal(aigw_ratelimit_release(rl, longid, AIGW_RL_ID_MAX, 0, 0, 0), -ENOENT);
    assert_int_equal(aigw_ratelimit_release(rl, "zz", 2, 0, 0, 0), -ENOENT);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
}

/* A fixed clock: exactly N of a burst get through, with exact headers. */
static void test_burst(void **state) {
    static const uint64_t limits[] = {1, 7, 60, 1000};
    for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
        _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
        uint64_t n = limits[i];
        uint64_t per_token = (U_PER_TOKEN + n - 1) / n; /* usec per token, rounded up */
        for (uint64_t k = 1; k <= n; k++) {
            struct aigw_rl_decision d = hit(rl, "key", n, 5 * SEC);
            assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
            assert_int_equal(d.retry_after_sec, 0);
            assert_int_equal(d.requests.limit, n);
            assert_int_equal(d.requests.remaining, n - k);
            assert_int_equal(d.requests.reset_usec, (k * U_PER_TOKEN + n - 1) / n);
            /* tpm 0: unlimited, no token headers */
            assert_int_equal(d.tokens.limit, 0);
            assert_int_equal(d.tokens.remaining, 0);
            assert_int_equal(d.tokens.reset_usec, 0);
        }
        for (int k = 0; k < 10; k++) {
            struct aigw_rl_decision d = hit(rl, "key", n, 5 * SEC);
            assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
            assert_int_equal(d.requests.remaining, 0);
            assert_int_equal(d.requests.reset_usec, 60 * SEC);
            assert_int_equal(d.retry_after_sec, (per_token + SEC - 1) / SEC);
        }
    }
}

/* The next token arrives exactly when the maths says, not a usec before. */
static void test_refill_exact(void **state) {
    static const struct {
        uint64_t rpm;
        uint64_t next_token_usec; /* ceil(60e6 / rpm) */
        uint64_t retry_after_sec;
    } cases[] = {
        {1, 60000000, 60}, {7, 8571429, 9}, {60, 1000000, 1}, {61, 983607, 1},
        {600, 100000, 1},  {59, 1016950, 2}, {120, 500000, 1}, {1000, 60000, 1},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
        uint64_t rpm = cases[i].rpm, t0 = 1000 * SEC;
        for (uint64_t k = 0; k < rpm; k++)
            assert_int_equal(hit(rl, "k", rpm, t0).verdict, AIGW_RL_ALLOWED);
        struct aigw_rl_decision d = hit(rl, "k", rpm, t0);
        assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
        assert_int_equal(d.retry_after_sec, cases[i].retry_after_sec);

        d = hit(rl, "k", rpm, t0 + cases[i].next_token_usec - 1);
        assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
        assert_int_equal(d.retry_after_sec, 1);
        d = hit(rl, "k", rpm, t0 + cases[i].next_token_usec);
        assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
        assert_int_equal(d.requests.remaining, 0);
        d = hit(rl, "k", rpm, t0 + cases[i].next_token_usec);
        assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
    }

    /* a high rate on the token bucket: 1e9/min is 16.67 tokens per usec */
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d = acq(rl, "t", 0, AIGW_RL_LIMIT_MAX, 0, 0, 0);
    assert_int_equal(d.tokens.remaining, AIGW_RL_LIMIT_MAX);
    assert_int_equal(aigw_ratelimit_release(rl, "t", 1, AIGW_RL_LIMIT_MAX, AIGW_RL_LIMIT_MAX, 0),
                     0);
    d = acq(rl, "t", 0, AIGW_RL_LIMIT_MAX, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_TOKENS);
    assert_int_equal(d.tokens.reset_usec, 60 * SEC);
    d = acq(rl, "t", 0, AIGW_RL_LIMIT_MAX, 0, 0, 1);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.remaining, 16);
    d = acq(rl, "t", 0, AIGW_RL_LIMIT_MAX, 0, 0, 3);
    assert_int_equal(d.tokens.remaining, 50);
    d = acq(rl, "t", 0, AIGW_RL_LIMIT_MAX, 0, 0, 60 * SEC - 1);
    assert_int_equal(d.tokens.remaining, AIGW_RL_LIMIT_MAX - 17);
    assert_int_equal(d.tokens.reset_usec, 1);
}

/* Steady demand over ten minutes at rpm=7: exactly 7 + 70 requests. */
static void test_refill_long_run(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    uint64_t allowed = 0;
    for (uint64_t t = 0; t <= 600 * SEC; t += 100 * USEC_PER_MSEC)
        allowed += hit(rl, "k", 7, t).verdict == AIGW_RL_ALLOWED;
    assert_int_equal(allowed, 77);

    /* and the 78th token is one refill period later, not earlier */
    _cleanup_rl_ struct aigw_ratelimit *rl2 = new_rl(10);
    allowed = 0;
    for (uint64_t t = 0; t < 600 * SEC; t += 100 * USEC_PER_MSEC)
        allowed += hit(rl2, "k", 7, t).verdict == AIGW_RL_ALLOWED;
    assert_int_equal(allowed, 76);
}

static void test_tokens_negative(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d;

    d = acq(rl, "k", 10, 1000, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.limit, 1000);
    assert_int_equal(d.tokens.remaining, 1000); /* debited only afterwards */
    assert_int_equal(d.tokens.reset_usec, 0);
    assert_int_equal(d.requests.remaining, 9);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 1500, 1000, 0), 0);

    /* -500 tokens: refused, requests not debited */
    d = acq(rl, "k", 10, 1000, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_TOKENS);
    assert_int_equal(d.tokens.remaining, 0);
    assert_int_equal(d.tokens.reset_usec, 90 * SEC); /* 1500 tokens at 1000/min */
    assert_int_equal(d.retry_after_sec, 31);         /* 501 tokens: 30.06 s */
    assert_int_equal(d.requests.remaining, 9);
    assert_int_equal(d.requests.reset_usec, 6 * SEC);

    /* one whole token is needed: 501 tokens arrive after 30.06 s */
    d = acq(rl, "k", 10, 1000, 0, 0, 30060000 - 1);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_TOKENS);
    assert_int_equal(d.retry_after_sec, 1);
    d = acq(rl, "k", 10, 1000, 0, 0, 30060000);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.remaining, 1);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 0, 1000, 30060000), 0);

    /* while tpm is 0 nothing is debited or reported */
    d = acq(rl, "k", 10, 0, 0, 0, 30060000);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.limit, 0);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 5000, 0, 30060000), 0);
    d = acq(rl, "k", 10, 1000, 0, 0, 30060000);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.remaining, 1);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 1, 1000, 30060000), 0);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
}

static void test_retry_after_both(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d;

    /* requests: 1/min, empty for 60 s; tokens: -10 of 60/min, 11 s to 1 */
    d = acq(rl, "k", 1, 60, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 70, 60, 0), 0);
    d = acq(rl, "k", 1, 60, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
    assert_int_equal(d.retry_after_sec, 60);
    assert_int_equal(d.tokens.reset_usec, 70 * SEC);

    /* reload to tpm 6: a lower capacity caps the top, the debt stays */
    d = acq(rl, "k", 0, 6, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_TOKENS);
    assert_int_equal(d.retry_after_sec, 110); /* 11 tokens at 6/min */
    assert_int_equal(d.tokens.limit, 6);
    assert_int_equal(d.tokens.reset_usec, 160 * SEC);
    /* both refuse: the longer wait is the one to report */
    d = acq(rl, "k", 1, 6, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
    assert_int_equal(d.retry_after_sec, 110);
}

static void test_limit_change(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d;

    for (int i = 0; i < 50; i++)
        assert_int_equal(hit(rl, "k", 100, 0).verdict, AIGW_RL_ALLOWED);
    /* lowered: the level (50) is clamped to the new capacity (10) */
    d = hit(rl, "k", 10, 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.requests.limit, 10);
    assert_int_equal(d.requests.remaining, 9);
    assert_int_equal(d.requests.reset_usec, 6 * SEC);
    /* raised again: what was left stays, and refills at the new rate */
    d = hit(rl, "k", 100, 0);
    assert_int_equal(d.requests.remaining, 8);
    assert_int_equal(d.requests.reset_usec, 55200000); /* 92 tokens at 100/min */
    d = hit(rl, "k", 100, 6 * SEC);
    assert_int_equal(d.requests.remaining, 17);
    /* unlimited in between leaves the bucket alone */
    for (int i = 0; i < 100; i++)
        assert_int_equal(hit(rl, "k", 0, 6 * SEC).verdict, AIGW_RL_ALLOWED);
    d = hit(rl, "k", 100, 6 * SEC);
    assert_int_equal(d.requests.remaining, 16);
}

static void test_unlimited(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    for (int i = 0; i < 1000; i++) {
        struct aigw_rl_decision d = acq(rl, "k", 0, 0, 0, 0, 0);
        assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
        assert_int_equal(d.retry_after_sec, 0);
        assert_int_equal(d.requests.limit, 0);
        assert_int_equal(d.requests.remaining, 0);
        assert_int_equal(d.requests.reset_usec, 0);
        assert_int_equal(d.tokens.limit, 0);
    }
    /* counted even with no cap, so that a cap set by a reload is right */
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(aigw_ratelimit_release(rl, "k", 1, UINT64_MAX, 0, 0), 0);
    assert_int_equal(aigw_ratelimit_release(rl, "k", 1, 0, 0, 0), -ENOENT);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
}

static void test_clock_backwards(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    for (int i = 0; i < 60; i++)
        assert_int_equal(hit(rl, "k", 60, 10 * SEC).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(hit(rl, "k", 60, 5 * SEC).verdict, AIGW_RL_REFUSED_REQUESTS);
    /* only the time after 10 s counts: one token, not six */
    struct aigw_rl_decision d = hit(rl, "k", 60, 11 * SEC);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.requests.remaining, 0);
}

static void test_debt_saturates(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    const uint64_t max = AIGW_RL_LIMIT_MAX;
    struct aigw_rl_decision d;

    /* 300 requests admitted at once, then each reports "too many" tokens */
    for (int i = 0; i < 300; i++)
        assert_int_equal(acq(rl, "k", 0, max, 0, 0, 0).verdict, AIGW_RL_ALLOWED);
    for (int i = 0; i < 300; i++)
        assert_int_equal(aigw_ratelimit_release(rl, "k", 1, UINT64_MAX, max, 0), 0);
    d = acq(rl, "k", 0, max, 0, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_TOKENS);
    /* floor is -100 minutes of the largest limit: 101 minutes to full */
    assert_int_equal(d.tokens.reset_usec, 101 * 60 * SEC);
    assert_int_equal(d.retry_after_sec, 100 * 60 + 1);
}

static void test_inflight(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d;

    assert_int_equal(acq(rl, "a", 100, 0, 2, 0, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(acq(rl, "a", 100, 0, 2, 0, 0).verdict, AIGW_RL_ALLOWED);
    d = acq(rl, "a", 100, 0, 2, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_INFLIGHT);
    assert_int_equal(d.retry_after_sec, 1);
    assert_int_equal(d.requests.remaining, 98); /* the refusal cost nothing */
    /* other ids have their own counter */
    assert_int_equal(acq(rl, "b", 100, 0, 2, 0, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 3);

    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, 0, 0), 0);
    assert_int_equal(acq(rl, "a", 100, 0, 2, 0, 0).verdict, AIGW_RL_ALLOWED);
    /* a cap lowered by a reload refuses until enough have finished */
    assert_int_equal(acq(rl, "a", 100, 0, 1, 0, 0).verdict, AIGW_RL_REFUSED_INFLIGHT);
    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, 0, 0), 0);
    assert_int_equal(acq(rl, "a", 100, 0, 1, 0, 0).verdict, AIGW_RL_REFUSED_INFLIGHT);
    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, 0, 0), 0);
    assert_int_equal(acq(rl, "a", 100, 0, 1, 0, 0).verdict, AIGW_RL_ALLOWED);

    /* a request-rate refusal is reported before the concurrency one */
    assert_int_equal(acq(rl, "e", 1, 0, 1, 0, 0).verdict, AIGW_RL_ALLOWED);
    d = acq(rl, "e", 1, 0, 1, 0, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
    assert_int_equal(d.retry_after_sec, 60);
}

static void test_global_inflight(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_decision d;

    assert_int_equal(acq(rl, "a", 10, 0, 0, 3, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(acq(rl, "b", 10, 0, 0, 3, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(acq(rl, "a", 10, 0, 0, 3, 0).verdict, AIGW_RL_ALLOWED);
    d = acq(rl, "c", 10, 0, 0, 3, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_GLOBAL_INFLIGHT);
    assert_int_equal(d.retry_after_sec, 1);
    assert_int_equal(d.requests.remaining, 10); /* nothing debited */
    /* the per-id cap is reported first */
    d = acq(rl, "a", 10, 0, 2, 3, 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_INFLIGHT);
    assert_int_equal(d.requests.remaining, 8);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 3);

    assert_int_equal(aigw_ratelimit_release(rl, "b", 1, 0, 0, 0), 0);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 2);
    d = acq(rl, "c", 10, 0, 0, 3, 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.requests.remaining, 9);
    /* raising the cap takes effect at once */
    assert_int_equal(acq(rl, "d", 10, 0, 0, 3, 0).verdict, AIGW_RL_REFUSED_GLOBAL_INFLIGHT);
    assert_int_equal(acq(rl, "d", 10, 0, 0, 4, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 4);
}

static void test_ids_are_bytes(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(10);
    struct aigw_rl_limits l = {.rpm = 1};
    struct aigw_rl_decision d;
    assert_int_equal(aigw_ratelimit_acquire(rl, "a\0b", 3, &l, 0, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a\0c", 3, &l, 0, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &l, 0, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_acquire(rl, "a\0b", 3, &l, 0, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_REFUSED_REQUESTS);
    assert_int_equal(aigw_ratelimit_count(rl), 3);
}

static void test_eviction_lru(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(3);
    struct aigw_rl_decision d;
    struct aigw_rl_limits l = {.rpm = 10};

    /* rpm 10: one request is refilled after 6 s */
    assert_int_equal(hit(rl, "a", 10, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(hit(rl, "b", 10, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(hit(rl, "c", 10, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_count(rl), 3);

    /* nobody is full again yet */
    assert_int_equal(aigw_ratelimit_acquire(rl, "d", 1, &l, 6 * SEC - 1, &d), -ENOSPC);
    assert_int_equal(aigw_ratelimit_count(rl), 3);

    /* a and b used again at 6 s; c is the least recently used */
    assert_int_equal(hit(rl, "a", 10, 6 * SEC).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(hit(rl, "b", 10, 6 * SEC).verdict, AIGW_RL_ALLOWED);

    /* at 12 s all are full; d evicts c */
    assert_int_equal(hit(rl, "d", 10, 12 * SEC).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_count(rl), 3);

    /* b survived: it had 9 at 6 s, plus 6 s at the new rate 100 */
    d = hit(rl, "b", 100, 12 * SEC);
    assert_int_equal(d.requests.remaining, 18);
    /* c was evicted: new and full; it evicts a, the LRU full one */
    d = hit(rl, "c", 100, 12 * SEC);
    assert_int_equal(d.requests.remaining, 99);
    /* now d, b, c are all below capacity: no room for a */
    assert_int_equal(aigw_ratelimit_acquire(rl, "a", 1, &l, 12 * SEC, &d), -ENOSPC);
    assert_int_equal(aigw_ratelimit_count(rl), 3);
}

static void test_eviction_inflight(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(2);
    struct aigw_rl_limits l = {};
    struct aigw_rl_decision d;

    /* unlimited buckets are always full, but in-flight entries stay */
    assert_int_equal(acq(rl, "a", 0, 0, 0, 0, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(acq(rl, "b", 0, 0, 0, 0, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_acquire(rl, "c", 1, &l, 100 * SEC, &d), -ENOSPC);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 2);

    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, 0, 0), 0);
    assert_int_equal(acq(rl, "c", 0, 0, 0, 0, 100 * SEC).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_count(rl), 2);
    /* a is gone (so nothing to release), b is still there */
    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 0, 0, 0), -ENOENT);
    assert_int_equal(aigw_ratelimit_release(rl, "b", 1, 0, 0, 0), 0);
    assert_int_equal(aigw_ratelimit_release(rl, "c", 1, 0, 0, 0), 0);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
}

static void test_eviction_debt(void **state) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(1);
    struct aigw_rl_limits l = {.tpm = 60};
    struct aigw_rl_decision d;

    /* 60 tokens/min, 120 used: -60, full again after 120 s */
    assert_int_equal(acq(rl, "a", 0, 60, 0, 0, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(aigw_ratelimit_release(rl, "a", 1, 120, 60, 0), 0);
    assert_int_equal(aigw_ratelimit_acquire(rl, "b", 1, &l, 60 * SEC, &d), -ENOSPC);
    assert_int_equal(aigw_ratelimit_acquire(rl, "b", 1, &l, 120 * SEC - 1, &d), -ENOSPC);
    assert_int_equal(aigw_ratelimit_acquire(rl, "b", 1, &l, 120 * SEC, &d), 0);
    assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
    assert_int_equal(d.tokens.remaining, 60);
    assert_int_equal(aigw_ratelimit_count(rl), 1);
}

static void test_eviction_refused_new(void **state) {
    /* an id refused by the global cap is tracked, full, and evictable */
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(2);
    assert_int_equal(acq(rl, "a", 10, 0, 0, 1, 0).verdict, AIGW_RL_ALLOWED);
    assert_int_equal(acq(rl, "b", 10, 0, 0, 1, 0).verdict, AIGW_RL_REFUSED_GLOBAL_INFLIGHT);
    assert_int_equal(acq(rl, "c", 10, 0, 0, 1, 0).verdict, AIGW_RL_REFUSED_GLOBAL_INFLIGHT);
    assert_int_equal(aigw_ratelimit_count(rl), 2);
}

static void test_many_ids_sharded(void **state) {
    /* a big table is sharded; its bound is still exact */
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(5000);
    struct aigw_rl_limits l = {.rpm = 10};
    struct aigw_rl_decision d;
    size_t full = 0;
    char id[32];

    for (unsigned i = 0; i < 6000; i++) {
        snprintf(id, sizeof(id), "10.0.%u.%u", i / 256, i % 256);
        int r = aigw_ratelimit_acquire(rl, id, strlen(id), &l, 0, &d);
        if (r == -ENOSPC) {
            full++;
            continue;
        }
        assert_int_equal(r, 0);
        assert_int_equal(aigw_ratelimit_release(rl, id, strlen(id), 0, 0, 0), 0);
    }
    assert_int_equal(aigw_ratelimit_count(rl), 5000);
    assert_int_equal(full, 1000);

    /* From 60 s on the old ids are full again, and each new one is full
     * 6 s after it came: arriving every 10 ms, every new id finds room. */
    for (unsigned i = 0; i < 6000; i++) {
        uint64_t now = 60 * SEC + i * 10 * USEC_PER_MSEC;
        snprintf(id, sizeof(id), "10.1.%u.%u", i / 256, i % 256);
        assert_int_equal(aigw_ratelimit_acquire(rl, id, strlen(id), &l, now, &d), 0);
        assert_int_equal(d.verdict, AIGW_RL_ALLOWED);
        assert_int_equal(aigw_ratelimit_release(rl, id, strlen(id), 0, 0, now), 0);
    }
    assert_int_equal(aigw_ratelimit_count(rl), 5000);
}

/* --- threads --- */

#define N_THREADS 4

struct burst_ctx {
    struct aigw_ratelimit *rl;
    uint64_t limit;
    uint64_t attempts_total;
    atomic_uint_fast64_t attempts;
    atomic_uint_fast64_t allowed;
    atomic_uint_fast64_t refused;
    atomic_int errors;
};

static void *burst_thread(void *p) {
    struct burst_ctx *c = p;
    struct aigw_rl_limits l = {.rpm = c->limit};
    for (;;) {
        struct aigw_rl_decision d;
        if (atomic_fetch_add(&c->attempts, 1) >= c->attempts_total)
            break;
        if (aigw_ratelimit_acquire(c->rl, "shared-key", 10, &l, 42 * SEC, &d) != 0) {
            atomic_fetch_add(&c->errors, 1);
            continue;
        }
        if (d.verdict == AIGW_RL_ALLOWED) {
            atomic_fetch_add(&c->allowed, 1);
            if (aigw_ratelimit_release(c->rl, "shared-key", 10, 0, 0, 42 * SEC) != 0)
                atomic_fetch_add(&c->errors, 1);
        } else if (d.verdict == AIGW_RL_REFUSED_REQUESTS) {
            atomic_fetch_add(&c->refused, 1);
        } else {
            atomic_fetch_add(&c->errors, 1);
        }
    }
    return NULL;
}

static void test_threads_burst_exact(void **state) {
    static const uint64_t limits[] = {1, 2, 10, 100, 1000, 20000};
    for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
        for (size_t table = 0; table < 2; table++) {
            _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(table ? 100000 : 1);
            struct burst_ctx c = {.rl = rl, .limit = limits[i],
                                  .attempts_total = limits[i] + 10};
            pthread_t t[N_THREADS];
            for (int k = 0; k < N_THREADS; k++)
                assert_int_equal(pthread_create(&t[k], NULL, burst_thread, &c), 0);
            for (int k = 0; k < N_THREADS; k++)
                assert_int_equal(pthread_join(t[k], NULL), 0);
            assert_int_equal(atomic_load(&c.errors), 0);
            assert_int_equal(atomic_load(&c.allowed), limits[i]);
            assert_int_equal(atomic_load(&c.refused), 10);
            assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
        }
    }
}

struct inflight_ctx {
    struct aigw_ratelimit *rl;
    uint64_t cap, global_cap;
    bool own_ids; /* each thread its own id: only the global cap binds */
    atomic_int next_index;
    atomic_int active;
    atomic_int max_active;
    atomic_uint_fast64_t allowed;
    atomic_int errors;
};

static void *inflight_thread(void *p) {
    struct inflight_ctx *c = p;
    struct aigw_rl_limits l = {.inflight = c->cap, .global_inflight = c->global_cap};
    char id[16];
    snprintf(id, sizeof(id), "k%d", c->own_ids ? atomic_fetch_add(&c->next_index, 1) : 0);

    for (int i = 0; i < 20000; i++) {
        struct aigw_rl_decision d;
        if (aigw_ratelimit_acquire(c->rl, id, strlen(id), &l, (uint64_t)i, &d) != 0) {
            atomic_fetch_add(&c->errors, 1);
            continue;
        }
        if (d.verdict != AIGW_RL_ALLOWED)
            continue;
        int now_active = atomic_fetch_add(&c->active, 1) + 1;
        int m = atomic_load(&c->max_active);
        while (now_active > m && !atomic_compare_exchange_weak(&c->max_active, &m, now_active))
            ;
        atomic_fetch_add(&c->allowed, 1);
        /* hold it for a moment, so that others contend */
        for (volatile int spin = 0; spin < 50; spin++)
            ;
        atomic_fetch_sub(&c->active, 1);
        if (aigw_ratelimit_release(c->rl, id, strlen(id), 0, 0, (uint64_t)i) != 0)
            atomic_fetch_add(&c->errors, 1);
    }
    return NULL;
}

static void run_inflight(uint64_t cap, uint64_t global_cap, bool own_ids, int expect_max) {
    _cleanup_rl_ struct aigw_ratelimit *rl = new_rl(100);
    struct inflight_ctx c = {.rl = rl, .cap = cap, .global_cap = global_cap, .own_ids = own_ids};
    pthread_t t[N_THREADS];
    for (int k = 0; k < N_THREADS; k++)
        assert_int_equal(pthread_create(&t[k], NULL, inflight_thread, &c), 0);
    for (int k = 0; k < N_THREADS; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    assert_int_equal(atomic_load(&c.errors), 0);
    assert_in_range(atomic_load(&c.max_active), 1, expect_max);
    assert_true(atomic_load(&c.allowed) > 0);
    assert_int_equal(aigw_ratelimit_global_inflight(rl), 0);
}

static void test_threads_inflight_cap(void **state) {
    run_inflight(1, 0, false, 1);
    run_inflight(3, 0, false, 3);
    run_inflight(0, 2, true, 2);
    run_inflight(3, 2, false, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_args_invalid),
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_refill_exact),
        cmocka_unit_test(test_refill_long_run),
        cmocka_unit_test(test_tokens_negative),
        cmocka_unit_test(test_retry_after_both),
        cmocka_unit_test(test_limit_change),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_debt_saturates),
        cmocka_unit_test(test_inflight),
        cmocka_unit_test(test_global_inflight),
        cmocka_unit_test(test_ids_are_bytes),
        cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_eviction_inflight),
        cmocka_unit_test(test_eviction_debt),
        cmocka_unit_test(test_eviction_refused_new),
        cmocka_unit_test(test_many_ids_sharded),
        cmocka_unit_test(test_threads_burst_exact),
        cmocka_unit_test(test_threads_inflight_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Rate limits and concurrency caps: requests_per_minute exact across two
workers under a concurrent burst, per-key overrides from the keys file,
tokens_per_minute from the backend's usage, max_inflight_per_key and
[server] max_inflight (503 at once), per client address without keys
(X-Forwarded-For only from trusted_proxies)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlib  # noqa: E402
from hlib import bearer, chat, check, eq, raw_request, test  # noqa: E402

RESET_RE = re.compile(r"^(\d+ms|\d+\.\d{3}s|\d+m\d+s)$")


def check_clean(r, what):
    ok, line = r.head_is_clean()
    check(ok, f"{what}: malformed response header line {line!r}")


def check_limit_headers(r, kind, limit, what):
    """x-ratelimit-{limit,remaining,reset}-KIND; returns remaining."""
    check_clean(r, what)
    eq(r.header(f"x-ratelimit-limit-{kind}"), str(limit), f"{what}: x-ratelimit-limit-{kind}")
    rem = r.header(f"x-ratelimit-remaining-{kind}")
    check(rem is not None and rem.isdigit(), f"{what}: x-ratelimit-remaining-{kind} {rem!r}")
    reset = r.header(f"x-ratelimit-reset-{kind}")
    check(reset is not None and RESET_RE.match(reset), f"{what}: x-ratelimit-reset-{kind} {reset!r}")
    return int(rem)


def check_429(r, kind, limit, what):
    eq(r.status, 429, f"{what}: status ({r.body[:200]!r})")
    ra = r.header("retry-after")
    check(ra is not None and ra.isdigit() and 1 <= int(ra) <= 60, f"{what}: Retry-After {ra!r}")
    e = r.error()
    eq(e["type"], "rate_limit_error", f"{what}: error type")
    eq(e["code"], "rate_limit_exceeded", f"{what}: error code")
    eq(check_limit_headers(r, kind, limit, what), 0, f"{what}: x-ratelimit-remaining-{kind}")
    return e


def keys_config(t, lines, settings=None, append=""):
    keys = hlib.write_file(t, "keys", "\n".join(lines) + "\n")
    s = {("auth", "keys_file"): keys}
    s.update(settings or {})
    return hlib.config(s, append)


@test(timeout=60)
def test_rpm_burst_two_workers(t):
    n = 20
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    a = t.start(keys_config(t, [alice_line, bob_line], {("ratelimit", "requests_per_minute"): n,
                                                         ("server", "workers"): 2}))
    # n + 10 requests at once, each on its own connection: the two workers
    # share one exact bucket per key (a refill of one token takes 3 s)
    t0 = time.monotonic()
    rs = hlib.parallel([lambda: chat(a, "burst", headers=bearer(alice)) for _ in range(n + 10)])
    dt = time.monotonic() - t0
    t.note(f"{n + 10} concurrent requests in {dt * 1000:.0f} ms")
    statuses = sorted(r.status for r in rs)
    eq(statuses.count(200), n, f"requests that succeeded (statuses {statuses})")
    eq(statuses.count(429), 10, f"requests refused with 429 (statuses {statuses})")
    remaining = []
    for r in rs:
        if r.status == 200:
            remaining.append(check_limit_headers(r, "requests", n, "a 200 of the burst"))
        else:
            e = check_429(r, "requests", n, "a 429 of the burst")
            check(f"{n} requests per minute" in e["message"], f"429 message {e['message']!r}")
    # every admitted request took exactly one token: n-1 ... 0, each once
    eq(sorted(remaining), list(range(n)), "x-ratelimit-remaining-requests of the admitted requests")

    # the limit is per key: bob has his own bucket
    r = chat(a, "bob", headers=bearer(bob))
    eq(r.status, 200, f"another key during alice's limit ({r.body[:200]!r})")
    eq(check_limit_headers(r, "requests", n, "bob"), n - 1, "bob's remaining requests")
    check_429(chat(a, "again", headers=bearer(alice)), "requests", n, "alice after the burst")


@test(timeout=40)
def test_rpm_per_key_override(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    carol, carol_line = hlib.keygen(t, "carol")
    a = t.start(keys_config(t, [alice_line, bob_line + " rpm=3", carol_line + " rpm=1000"],
                            {("ratelimit", "requests_per_minute"): 6}))
    for i in range(3):
        r = chat(a, "bob", headers=bearer(bob))
        eq(r.status, 200, f"bob's request {i + 1} of 3")
        eq(check_limit_headers(r, "requests", 3, "bob"), 2 - i, f"bob's remaining after {i + 1}")
    check_429(chat(a, "bob", headers=bearer(bob)), "requests", 3, "bob's 4th request (rpm=3)")
    for i in range(6):
        eq(chat(a, "alice", headers=bearer(alice)).status, 200, f"alice's request {i + 1} of 6 (global rpm)")
    check_429(chat(a, "alice", headers=bearer(alice)), "requests", 6, "alice's 7th request (rpm=6)")
    # an override above the global limit
    for i in range(10):
        r = chat(a, "carol", headers=bearer(carol))
        eq(r.status, 200, f"carol's request {i + 1} (rpm=1000)")
        eq(check_limit_headers(r, "requests", 1000, "carol"), 999 - i, f"carol's remaining after {i + 1}")


@test(timeout=40)
def test_tpm_from_usage(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    a = t.start(keys_config(t, [alice_line, bob_line + " tpm=1000"], {("ratelimit", "tokens_per_minute"): 100}))
    # the mock counts words: 20 words in, 20 echoed = 40 tokens a request;
    # a request needs one whole token left, and its usage is debited after
    words = " ".join(f"w{i}" for i in range(20))
    expected_remaining = [100, 60, 20]
    for i, exp in enumerate(expected_remaining):
        r = chat(a, words, headers=bearer(alice))
        eq(r.status, 200, f"request {i + 1} within the token budget ({r.body[:200]!r})")
        eq(r.json()["usage"]["total_tokens"], 40, "usage.total_tokens of the mock")
        rem = check_limit_headers(r, "tokens", 100, f"request {i + 1}")
        check(exp <= rem <= exp + 1, f"request {i + 1}: x-ratelimit-remaining-tokens {rem}, expected {exp}")
    # 100 - 3 * 40 = -20: refused until the bucket holds a whole token again
    # (12.6 s at 100 tokens per minute)
    e = check_429(chat(a, words, headers=bearer(alice)), "tokens", 100, "once the tokens are used up")
    check("token rate limit" in e["message"] and "100 tokens per minute" in e["message"],
          f"message {e['message']!r}")
    r = chat(a, "one", headers=bearer(alice))
    check_429(r, "tokens", 100, "a small request while the bucket is negative")
    check(int(r.header("retry-after")) >= 10, f"Retry-After {r.header('retry-after')} while 20 tokens in debt")
    # bob's override tpm=1000 from the keys file
    for i in range(4):
        eq(chat(a, words, headers=bearer(bob)).status, 200, f"bob's request {i + 1} (tpm=1000)")


def wait_inflight(a, n, timeout=3):
    hlib.wait_metric(a.port, "aigw_inflight_requests", n, timeout=timeout)


@test(timeout=40)
def test_max_inflight_per_key(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    a = t.start(keys_config(t, [alice_line, bob_line], {("ratelimit", "max_inflight_per_key"): 2})
                .replace("mock_latency = 0", "mock_latency = 2s"))
    slow = [hlib.in_background(lambda: chat(a, "slow", headers=bearer(alice))) for _ in range(2)]
    wait_inflight(a, 2)
    r = chat(a, "third", headers=bearer(alice))
    eq(r.status, 503, f"alice's third concurrent request ({r.body[:200]!r})")
    check(r.elapsed < 0.5, f"the refusal took {r.elapsed:.2f} s (the mock answers after 2 s)")
    t.note(f"503 for the 3rd concurrent request after {r.elapsed * 1000:.1f} ms")
    ra = r.header("retry-after")
    check(ra is not None and ra.isdigit() and int(ra) >= 1, f"Retry-After {ra!r}")
    e = r.error()
    eq(e["code"], "too_many_concurrent_requests", "error code")
    check("(limit 2)" in e["message"], f"message {e['message']!r}")
    check_clean(r, "the 503")
    # another key is not affected
    other = hlib.in_background(lambda: chat(a, "bob", headers=bearer(bob)))
    for j in slow:
        eq(j(5).status, 200, "a slow request under the cap")
    eq(other(5).status, 200, "bob's request while alice was at her cap")
    # the slots are given back
    r = chat(a, "again", headers=bearer(alice))
    eq(r.status, 200, "alice after her requests finished")
    m = hlib.scrape(a.port)
    eq(hlib.metric(m, "aigw_ratelimited_total", reason="inflight"), 1.0, "aigw_ratelimited_total{inflight}")


@test(timeout=40)
def test_server_max_inflight(t):
    text = hlib.config({("server", "max_inflight"): 2}).replace("mock_latency = 0", "mock_latency = 2s")
    a = t.start(text)
    slow = [hlib.in_background(lambda: chat(a, "slow")) for _ in range(2)]
    wait_inflight(a, 2)
    for path in ("/v1/chat/completions", "/chat"):
        r = chat(a, "third", path=path)
        eq(r.status, 503, f"{path} past [server] max_inflight ({r.body[:200]!r})")
        check(r.elapsed < 0.5, f"the refusal took {r.elapsed:.2f} s")
        t.note(f"{path}: 503 past max_inflight after {r.elapsed * 1000:.1f} ms")
        ra = r.header("retry-after")
        check(ra is not None and ra.isdigit() and int(ra) >= 1, f"Retry-After {ra!r}")
        e = r.error()
        eq(e["code"], "overloaded", "error code")
        check("2 concurrent requests" in e["message"], f"message {e['message']!r}")
    # the probes are not chat requests and answer at once
    for path in ("/health", "/ready"):
        r = raw_request(a.port, "GET", path)
        eq(r.status, 200, f"{path} while the gateway is at max_inflight")
        check(r.elapsed < 0.5, f"{path} took {r.elapsed:.2f} s")
    for j in slow:
        eq(j(5).status, 200, "a slow request under the cap")
    m = hlib.scrape(a.port)
    eq(hlib.metric(m, "aigw_ratelimited_total", reason="global_inflight"), 2.0,
       "aigw_ratelimited_total{global_inflight}")


@test(timeout=40)
def test_per_address_trusted_proxy(t):
    a = t.start(hlib.config({("ratelimit", "requests_per_minute"): 2, ("server", "trusted_proxies"): "127.0.0.1"}))

    def req(xff=None):
        return chat(a, "x", headers={"X-Forwarded-For": xff} if xff else None)

    # the peer 127.0.0.1 is a trusted proxy: X-Forwarded-For names the client
    for i in range(2):
        eq(req("203.0.113.5").status, 200, f"client 203.0.113.5, request {i + 1}")
    check_429(req("203.0.113.5"), "requests", 2, "client 203.0.113.5, request 3")
    # read from the right: a trusted hop is skipped, an untrusted one is the client
    check_429(req("203.0.113.5, 127.0.0.1"), "requests", 2, "203.0.113.5 behind a second local proxy")
    check_429(req("198.51.100.9, 203.0.113.5"), "requests", 2, "a spoofed left-most entry")
    eq(req("203.0.113.6").status, 200, "another client behind the proxy")
    eq(req("203.0.113.6:4711").status, 200, "client with a port")
    check_429(req("203.0.113.6"), "requests", 2, "the same client without the port")
    eq(req().status, 200, "the proxy itself (no X-Forwarded-For)")
    eq(req("[2001:db8::1]").status, 200, "an IPv6 client")
    eq(req("2001:db8::1").status, 200, "the same IPv6 client")
    check_429(req("2001:db8:0:0::1"), "requests", 2, "the same IPv6 client, other spelling")


@test(timeout=40)
def test_per_address_untrusted_peer(t):
    a = t.start(hlib.config({("ratelimit", "requests_per_minute"): 2, ("server", "trusted_proxies"): "10.0.0.1"}))
    # 127.0.0.1 is not a trusted proxy: whatever it claims, it is the client
    eq(chat(a, "x", headers={"X-Forwarded-For": "203.0.113.1"}).status, 200, "request 1")
    eq(chat(a, "x", headers={"X-Forwarded-For": "203.0.113.2"}).status, 200, "request 2")
    check_429(chat(a, "x", headers={"X-Forwarded-For": "203.0.113.3"}), "requests", 2,
              "request 3 with yet another X-Forwarded-For")
    check_429(chat(a, "x"), "requests", 2, "request 4 without X-Forwarded-For")


if __name__ == "__main__":
    hlib.main()

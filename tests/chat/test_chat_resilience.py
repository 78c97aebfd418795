#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Retries, Retry-After, fallbacks, the circuit breaker, timeouts and
garbage from upstream."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import (Mock, backend, chat, check, check_error, config, directive, eq, free_port_closed,  # noqa: E402
                     metric, model, parse_stream, start, user, xfail)
from harness import test  # noqa: E402


@test(timeout=30)
def test_retry_500_then_200(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, max_retries=2), model("gpt", "oa"), default_model="gpt"))
    for stream in (False, True):
        n0 = len(m.chat_requests())
        m.queue({"status": 500}, {"text": "second time lucky"})
        r = chat(t, a, user("retry me", stream=stream))
        eq(r.status, 200, f"stream={stream}: status ({r.body[:300]!r})")
        if stream:
            chunks, done, error = parse_stream(r.body)
            check(done and error is None, "stream incomplete")
            eq(chatlib.joined_content(chunks), "second time lucky", "content")
        else:
            eq(r.json()["choices"][0]["message"]["content"], "second time lucky", "content")
        reqs = m.chat_requests()[n0:]
        eq(len(reqs), 2, f"stream={stream}: upstream requests (one failed, one retried)")
        eq(reqs[0]["body"], reqs[1]["body"], "the retry sends the same body")

    # every retryable status is retried, then the last error is answered
    for status, expect in ((502, 502), (503, 503), (504, 504), (500, 502)):
        n0 = len(m.chat_requests())
        m.queue({"status": status}, {"status": status}, {"status": status})
        r = chat(t, a, user("always failing"))
        check_error(r, expect, what=f"upstream {status} three times")
        eq(len(m.chat_requests()) - n0, 3, f"upstream {status}: requests (1 + max_retries 2)")
    eq(metric(t, a, "aigw_upstream_retries_total", {"backend": "oa", "model": "gpt"}), 2 + 4 * 2,
       "aigw_upstream_retries_total")


@test(timeout=30)
def test_client_leaves_during_retry_wait(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, max_retries=1), model("gpt", "oa"), default_model="gpt"))
    m.queue({"status": 429, "headers": {"Retry-After": "2"}}, {"text": "too late"})
    chatlib.curl(t, a.url("/v1/chat/completions"), "--http2-prior-knowledge", "-H", "Content-Type: application/json",
                 "--data-binary", chatlib.json.dumps(user("impatient")), timeout=0.5, expect_rc=28)
    time.sleep(2.5)
    eq(len(m.chat_requests()), 1, "no retry for a client that left during the Retry-After wait")
    r = chat(t, a, user("next"))
    eq(r.status, 200, "the next request")
    eq(r.json()["choices"][0]["message"]["content"], "too late", "content")


@test(timeout=30)
def test_retry_after_honoured(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, max_retries=1, retry_base="10ms"), model("gpt", "oa"),
                        default_model="gpt"))
    m.queue({"status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"}, {"text": "ok now"})
    t0 = time.monotonic()
    r = chat(t, a, user("rate limited"))
    dt = time.monotonic() - t0
    eq(r.status, 200, f"status ({r.body[:300]!r})")
    eq(r.json()["choices"][0]["message"]["content"], "ok now", "content")
    reqs = m.chat_requests()
    eq(len(reqs), 2, "upstream requests")
    gap = reqs[1]["t_start"] - reqs[0]["t_end"]
    check(gap >= 0.95, f"retried {gap:.3f} s after a 429 with Retry-After: 1 (retry_base is 10 ms)")
    check(dt >= 0.95 and dt < 5, f"answer after {dt:.3f} s")
    t.note(f"429 Retry-After: 1 -> retried after {gap:.3f} s")
    ovh = float(r.header("x-aigw-overhead-ms"))
    check(0 <= ovh < 300, f"x-aigw-overhead-ms {ovh} counts the Retry-After wait as aigw's own time")

    # without retries left, the 429 is answered as a rate limit error
    m.queue({"status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"},
            {"status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"})
    r = chat(t, a, user("rate limited twice"))
    e = check_error(r, 429, type_="rate_limit_error", what="429 twice")
    check("slow down" in e["message"], f"message {e['message']!r}")


@test(timeout=30)
def test_retry_on_timeout_and_connection_close(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, max_retries=1, timeout="1s"), model("gpt", "oa"),
                        default_model="gpt"))
    m.queue({"delay": 3}, {"text": "fast"})
    r = chat(t, a, user("slow first"))
    eq(r.status, 200, f"status after a timeout and a retry ({r.body[:300]!r})")
    eq(len(m.chat_requests()), 2, "upstream requests")

    m.queue({"close_without_response": True}, {"text": "after a reset"})
    r = chat(t, a, user("closed first"))
    eq(r.status, 200, f"status after an empty reply ({r.body[:300]!r})")
    eq(r.json()["choices"][0]["message"]["content"], "after a reset", "content")
    eq(len(m.chat_requests()), 4, "upstream requests")


@test(timeout=30)
def test_no_retry_on_client_error(t):
    m1 = Mock(t, "openai")
    m2 = Mock(t, "openai")
    a = start(t, config(backend("one", "openai", m1.url, max_retries=2),
                        backend("two", "openai", m2.url),
                        model("primary", "one", fallbacks="secondary"),
                        model("secondary", "two"), default_model="primary"))
    body = {"error": {"message": "max_tokens is too large", "type": "invalid_request_error",
                      "param": "max_tokens", "code": "invalid_value"}}
    m1.queue({"status": 400, "body": chatlib.json.dumps(body)})
    r = chat(t, a, user("bad request"))
    e = check_error(r, 400, type_="invalid_request_error", what="upstream 400")
    eq(e["message"], "max_tokens is too large", "upstream message passed on")
    eq(e["param"], "max_tokens", "param passed on")
    eq(r.header("x-aigw-model"), "primary", "x-aigw-model")
    eq(len(m1.chat_requests()), 1, "requests to the primary (no retry on 400)")
    eq(len(m2.chat_requests()), 0, "requests to the fallback (none on 400)")

    # a 404 from upstream (the model is unknown there): not retried, but
    # another model may have it
    m1.queue({"status": 404, "message": "no such model upstream"})
    r = chat(t, a, user("unknown upstream model"))
    eq(len(m1.chat_requests()), 2, "requests to the primary after a 404")
    eq(r.status, 200, "status after a 404 and a fallback")
    eq(r.header("x-aigw-model"), "secondary", "a 404 falls back to")
    # without a fallback the 404 is answered
    m2.queue({"status": 404, "message": "no such model upstream"})
    r = chat(t, a, user("unknown upstream model", model="secondary"))
    e = check_error(r, 404, code="model_not_found", what="upstream 404")
    check("no such model upstream" in e["message"], f"message {e['message']!r}")


@test(timeout=30)
def test_fallback(t):
    m1 = Mock(t, "openai")
    m2 = Mock(t, "gemini")
    a = start(t, config(backend("one", "openai", m1.url, max_retries=1),
                        backend("two", "gemini", m2.url),
                        model("primary", "one", fallbacks="secondary"),
                        model("secondary", "two", upstream_model="gemini-fb"), default_model="primary"))
    m1.default({"status": 503, "message": "primary down"})
    for stream in (False, True):
        n1, n2 = len(m1.chat_requests()), len(m2.chat_requests())
        r = chat(t, a, user("fall back please", stream=stream), path="/chat")
        eq(r.status, 200, f"stream={stream}: status ({r.body[:300]!r})")
        eq(r.header("x-aigw-model"), "secondary", "x-aigw-model names the fallback")
        eq(r.header("x-aigw-backend"), "two", "x-aigw-backend names the fallback's backend")
        if stream:
            chunks, done, error = parse_stream(r.body)
            check(done and error is None, "stream incomplete")
            eq({c["model"] for c in chunks}, {"secondary"}, "model in the chunks")
            eq({c["backend"] for c in chunks}, {"two"}, "backend in the chunks")
            eq(chatlib.joined_content(chunks), "mock answer: fall back please", "content")
        else:
            j = r.json()
            eq((j["model"], j["backend"]), ("secondary", "two"), "model and backend in the answer")
            eq(j["choices"][0]["message"]["content"], "mock answer: fall back please", "content")
        eq(len(m1.chat_requests()) - n1, 2, "requests to the primary (1 + max_retries 1)")
        eq(len(m2.chat_requests()) - n2, 1, "requests to the fallback")
        eq(m2.chat_requests()[-1]["path"].split(":")[0], "/v1beta/models/gemini-fb", "fallback's upstream model")

    eq(metric(t, a, "aigw_fallbacks_total", {"from_model": "primary", "to_model": "secondary"}), 2,
       "aigw_fallbacks_total")
    # both fail: the answer is an error (not a hang, not a 200)
    m2.default({"status": 503, "message": "fallback down too"})
    r = chat(t, a, user("nobody home"))
    check_error(r, 503, what="primary and fallback down")


@test(timeout=40)
def test_breaker(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, max_retries=0, breaker_threshold=2, breaker_cooldown="2s"),
                        model("gpt", "oa"), default_model="gpt"))
    r = chatlib.curl(t, a.url("/ready"))
    eq(r.status, 200, "/ready before failures")
    eq(r.json()["backends"]["oa"]["state"], "up", "state before failures")

    m.default({"status": 500})
    for i in range(2):
        r = chat(t, a, user(f"fail {i}"))
        check_error(r, 502, what=f"failure {i}")
    eq(len(m.chat_requests()), 2, "requests before the breaker opened")
    t_open = time.monotonic()

    r = chat(t, a, user("skipped"))
    e = check_error(r, 503, code="backend_unavailable", what="breaker open")
    check("oa" in e["message"], f"message does not name the backend: {e['message']!r}")
    eq(len(m.chat_requests()), 2, "no request reached the mock while the breaker is open")
    r = chatlib.curl(t, a.url("/ready"))
    eq(r.status, 503, "/ready while the default model's backend is open")
    j = r.json()
    eq(j["status"], "unavailable", "/ready status")
    eq(j["backends"]["oa"]["state"], "down", "/ready backend state")

    # after the cooldown exactly one probe request goes through; while it
    # runs (slowly) another request is still refused
    m.default({"text": "recovered", "delay": 1})
    time.sleep(max(0, t_open + 2.1 - time.monotonic()))
    result = {}

    def probe():
        result["r"] = chat(t, a, user("probe"))

    th = threading.Thread(target=probe)
    th.start()
    m.wait(lambda rs: len([x for x in rs if x["method"] == "POST"]) == 3, what="the probe request reaches the mock")
    r = chat(t, a, user("during the probe"))
    check_error(r, 503, code="backend_unavailable", what="second request while half-open")
    th.join(10)
    check("r" in result, "the probe request did not finish")
    eq(result["r"].status, 200, "the probe request's status")
    eq(result["r"].json()["choices"][0]["message"]["content"], "recovered", "probe content")
    eq(len(m.chat_requests()), 3, "requests to the mock (one probe)")

    m.default({"text": "closed again"})
    r = chat(t, a, user("after"))
    eq(r.status, 200, "status after the breaker closed")
    r = chatlib.curl(t, a.url("/ready"))
    eq(r.status, 200, "/ready after recovery")
    eq(r.json()["backends"]["oa"]["state"], "up", "backend state after recovery")

    # a failing probe opens the breaker again at once
    m.default({"status": 500})
    for i in range(2):
        chat(t, a, user(f"fail again {i}"))
    time.sleep(2.1)
    n = len(m.chat_requests())
    r = chat(t, a, user("probe fails"))
    check_error(r, 502, what="failing probe request")
    r = chat(t, a, user("refused again"))
    check_error(r, 503, code="backend_unavailable", what="after a failed probe")
    eq(len(m.chat_requests()), n + 1, "requests after the failed probe")


def open_breaker(t, flavor, **kv):
    """aigw with breaker_threshold 2, cooldown 1 s, background probes off,
    and the breaker just open (two failures)."""
    m = Mock(t, flavor)
    a = start(t, config(backend("up", flavor, m.url, breaker_threshold=2, breaker_cooldown="1s", **kv),
                        model("m", "up"), default_model="m"))
    m.queue({"status": 500}, {"status": 500})
    for i in range(2):
        check_error(chat(t, a, user(f"fail {i}")), 502, what=f"failure {i}")
    r = chat(t, a, user("refused"))
    check_error(r, 503, code="backend_unavailable", what="breaker open")
    return m, a


def breaker_recovers(t, a, m, what):
    """After the cooldown, a request reaches the backend again."""
    deadline = time.monotonic() + 2.5
    while True:
        r = chat(t, a, user("after"))
        if r.status == 200:
            return
        check(time.monotonic() < deadline,
              f"{what}: the backend stays refused ({r.status} {r.body[:160]!r}); requests that reached the "
              f"mock: {len(m.chat_requests())}")
        time.sleep(0.3)


@test(timeout=30)
def test_breaker_probe_client_leaves(t):
    """The one request let through after the cooldown is cancelled because
    its client went away: the breaker must not stay shut for good."""
    m, a = open_breaker(t, "openai")
    time.sleep(1.2)
    m.queue({"delay": 2, "text": "slow probe"})
    chatlib.curl(t, a.url("/v1/chat/completions"), "--http2-prior-knowledge", "-H", "Content-Type: application/json",
                 "--data-binary", chatlib.json.dumps(user("probe")), timeout=0.5, expect_rc=28)
    time.sleep(1.2)
    breaker_recovers(t, a, m, "half-open request cancelled by its client")


@test(timeout=30)
def test_breaker_probe_bad_request(t):
    """The request let through after the cooldown is one aigw itself
    rejects (a tool message for a Gemini backend): the breaker must not
    stay shut for good."""
    m, a = open_breaker(t, "gemini")
    time.sleep(1.2)
    r = chat(t, a, {"messages": [{"role": "user", "content": "x"},
                                 {"role": "tool", "content": "y", "tool_call_id": "1"}]})
    check_error(r, 400, type_="invalid_request_error", what="tool message")
    breaker_recovers(t, a, m, "half-open request rejected by aigw")


@test(timeout=30)
def test_timeouts(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url, timeout="1s", idle_timeout="1s"),
                        model("gpt", "oa"), default_model="gpt"))
    t0 = time.monotonic()
    m.queue({"delay": 4})
    r = chat(t, a, user("too slow"))
    dt = time.monotonic() - t0
    e = check_error(r, 504, type_="timeout_error", code="upstream_timeout", what="upstream too slow")
    check(0.9 <= dt < 3, f"504 after {dt:.2f} s (timeout = 1s)")
    check("oa" in e["message"], f"message does not name the backend {e['message']!r}")

    # streamed: a timeout before the first byte is an HTTP 504 too
    m.queue({"delay": 4})
    r = chat(t, a, user("too slow", stream=True))
    check_error(r, 504, type_="timeout_error", what="stream, no byte in time")

    # idle: the stream began, then upstream went silent; aigw's own idle
    # timer ends it about idle_timeout after the last byte
    m2 = Mock(t, "openai")
    a2 = start(t, config(backend("oa", "openai", m2.url, timeout="20s", idle_timeout="1s"),
                         model("gpt", "oa"), default_model="gpt"))
    m2.queue({"text": "one two three", "chunks": 3, "chunk_delay": 15})
    t0 = time.monotonic()
    r = chat(t, a2, user("goes silent", stream=True), timeout=25)
    dt = time.monotonic() - t0
    t.note(f"idle_timeout = 1s: a silent stream was ended after {dt:.2f} s")
    eq(r.status, 200, "status of a stream that went silent")
    chunks, done, error = parse_stream(r.body)
    check(not done, "[DONE] after an idle timeout")
    check(error is not None, f"no error event at the end: {r.body[-300:]!r}")
    eq(error.get("type"), "timeout_error", f"error event type {error}")
    check(dt < 2.5, f"the stream ended after {dt:.2f} s; idle_timeout is 1s")


@test(timeout=30)
def test_garbage_and_unreachable(t):
    m = Mock(t, "openai")
    dead = free_port_closed()
    a = start(t, config(backend("oa", "openai", m.url, max_retries=1),
                        backend("dead", "openai", f"http://127.0.0.1:{dead}", max_retries=1),
                        model("gpt", "oa"), model("nowhere", "dead"), default_model="gpt"))
    r = chat(t, a, user(directive({"garbage": True})))
    e = check_error(r, 502, type_="api_error", what="garbage body")
    eq(len(m.chat_requests()), 1, "garbage is not retried on the same backend")

    r = chat(t, a, user(directive({"garbage": True}), stream=True))
    check_error(r, 502, type_="api_error", what="garbage first event")
    eq(len(m.chat_requests()), 2, "a garbage first event is not retried either")

    # a 200 with a JSON body that is no chat completion
    r = chat(t, a, user(directive({"body": '{"hello": "world"}'})))
    check_error(r, 502, type_="api_error", what="JSON without choices")

    # a garbage event after content: the stream ends with an error event
    r = chat(t, a, user(directive({"text": "good start", "chunks": 2, "garbage": True, "garbage_at": 3}),
                        stream=True))
    eq(r.status, 200, "status of a stream with a garbage event")
    chunks, done, error = parse_stream(r.body)
    check(not done and error is not None, f"no error event at the end: {r.body[-300:]!r}")
    eq(chatlib.joined_content(chunks), "good start", "content before the garbage")

    t0 = time.monotonic()
    r = chat(t, a, user("anyone?", model="nowhere"))
    e = check_error(r, 503, code="backend_unavailable", what="connection refused")
    check("dead" in e["message"], f"message does not name the backend {e['message']!r}")
    check(time.monotonic() - t0 < 3, "connection refused took long")


if __name__ == "__main__":
    chatlib.main()

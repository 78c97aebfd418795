#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Streams that go wrong: upstream cut mid-way, a client that hangs up, a
client that reads slowly (backpressure, bounded memory), events larger
than max_sse_event."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import (Mock, Stream, backend, chat, check, check_error, config, directive, eq, fail, model,  # noqa: E402
                     parse_stream, rss_kib, start, user)
from harness import test  # noqa: E402


def setup(t, flavor="openai", server=None, **kv):
    m = Mock(t, flavor)
    a = start(t, config(backend("up", flavor, m.url, **kv), model("m", "up"), default_model="m", server=server))
    return m, a


@test(timeout=40)
def test_upstream_cut_mid_stream(t):
    """A stream that broke after content was sent ends with an error event
    and no [DONE]; it is neither retried nor handed to a fallback. Before
    the first event it is retried, then falls back."""
    for flavor in ("openai", "gemini"):
        m = Mock(t, flavor)
        fb = Mock(t, "openai")
        a = start(t, config(backend("up", flavor, m.url, max_retries=2), backend("fb", "openai", fb.url),
                            model("m", "up", fallbacks="fbm"), model("fbm", "fb"), default_model="m"))
        # OpenAI events: role, then pieces; Gemini events: pieces
        keep = 3 if flavor == "openai" else 2
        for proto in ("1.1", "h2c"):
            n = len(m.chat_requests())
            b = {"text": "aaaa bbbb cccc dddd", "chunks": 4, "cut_after": keep}
            r = chat(t, a, user(directive(b), stream=True, stream_options={"include_usage": True}), proto=proto)
            what = f"{flavor} {proto}"
            eq(r.status, 200, f"{what}: status")
            eq(r.header("x-aigw-model"), "m", f"{what}: x-aigw-model")
            chunks, done, error = parse_stream(r.body)
            check(not done, f"{what}: [DONE] after a cut")
            check(error is not None, f"{what}: no error event at the end: {r.body[-300:]!r}")
            eq(sorted(error), ["code", "message", "param", "type"], f"{what}: members of the error event")
            eq(error["type"], "api_error", f"{what}: error type")
            eq(chatlib.joined_content(chunks), "aaaa bbbb ", f"{what}: content before the cut")
            check(all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in chunks),
                  f"{what}: a finish_reason or usage chunk in a broken stream")
            eq(m.chat_requests()[-1]["events_sent"], keep, f"{what}: events the mock sent")
            eq(len(m.chat_requests()) - n, 1, f"{what}: upstream requests (no retry once streaming began)")
        eq(fb.requests(), [], f"{flavor}: the fallback was asked after streaming began")

        # cut before the first event: nothing was sent, so retried, then the fallback answers
        n = len(m.chat_requests())
        m.default({"cut_after": 0})
        r = chat(t, a, user("cut at once", stream=True))
        eq(r.status, 200, f"{flavor}: status after retries and a fallback ({r.body[:200]!r})")
        eq(r.header("x-aigw-model"), "fbm", f"{flavor}: x-aigw-model after the cut")
        chunks, done, error = parse_stream(r.body)
        check(done and error is None, f"{flavor}: the fallback's stream is incomplete")
        eq(len(m.chat_requests()) - n, 3, f"{flavor}: requests (1 + max_retries 2)")
        eq(len(fb.chat_requests()), 1, f"{flavor}: requests to the fallback")

    # an OpenAI stream that ends cleanly but without [DONE] was cut too
    m, a = setup(t, "openai")
    r = chat(t, a, user(directive({"text": "no done", "chunks": 2, "no_done": True}), stream=True))
    eq(r.status, 200, "status")
    chunks, done, error = parse_stream(r.body)
    check(not done and error is not None, f"missing [DONE] upstream not reported: {r.body[-300:]!r}")
    eq(error.get("code"), "upstream_stream_cut", "error code")


def h2c_give_up(t, a, body, after=1):
    """A chat request over h2c whose client (curl) gives up after `after` s."""
    chatlib.curl(t, a.url("/v1/chat/completions"), "--http2-prior-knowledge", "-X", "POST", "-H",
                 "Content-Type: application/json", "--data-binary", chatlib.json.dumps(body), timeout=after,
                 expect_rc=28)


def wait_closed(m, t_close, limit, what):
    rec = m.wait(lambda rs: [x for x in rs if x["method"] == "POST" and x["client_closed"]],
                 timeout=limit + 4, what=what)[-1]
    delay = rec["t_client_closed"] - t_close
    check(delay <= limit, f"{what}: the mock saw the close {delay:.3f} s after the client left")
    return delay, rec


@test(timeout=40)
def test_client_disconnect(t):
    m, a = setup(t, "openai")
    b = {"text": "x" * 100, "chunks": 100, "chunk_delay": 0.2}  # 20 s if nobody stops it
    s = Stream(a, user(directive(b), stream=True))
    eq(s.read_head(), 200, "status")
    s.read_until(b'"x')
    s.close()
    t_close = time.monotonic()
    delay, rec = wait_closed(m, t_close, 1.0, "HTTP/1.1 client left")
    check(rec["events_sent"] < 20, f"the mock sent {rec['events_sent']} events")
    t.note(f"HTTP/1.1: upstream connection closed {delay * 1000:.0f} ms after the client left")

    # h2c: curl gives up after 1 s
    n_closed = len([x for x in m.chat_requests() if x["client_closed"]])
    h2c_give_up(t, a, user(directive(b), stream=True))
    t_close = time.monotonic()
    rec = m.wait(lambda rs: len([x for x in rs if x["method"] == "POST" and x["client_closed"]]) > n_closed
                 and [x for x in rs if x["method"] == "POST"][-1], timeout=5, what="h2c client left")
    delay = rec["t_client_closed"] - t_close
    check(delay <= 1.0, f"h2c: the mock saw the close {delay:.3f} s after the client left")
    t.note(f"h2c: upstream connection closed {max(delay, 0) * 1000:.0f} ms after the client left")

    # and aigw is fine afterwards
    r = chat(t, a, user("still there?"))
    eq(r.status, 200, "a request after the disconnects")
    r = chat(t, a, user("still there?", stream=True), proto="h2c")
    eq(r.status, 200, "a streamed h2c request after the disconnects")


@test(timeout=40)
def test_client_disconnect_before_first_byte_h2c(t):
    """The client leaves while aigw still waits for upstream's first byte
    (h2c: aigw learns of it at once). Over HTTP/1.1 h2o does not read the
    connection while a request is being handled, so there the upstream
    request runs on until upstream answers (see the report)."""
    m, a = setup(t, "gemini")
    for stream in (True, False):
        n = len(m.chat_requests())
        h2c_give_up(t, a, user(directive({"delay": 10}), stream=stream))
        t_close = time.monotonic()
        rec = m.wait(lambda rs: len([x for x in rs if x["method"] == "POST"]) > n and
                     [x for x in rs if x["method"] == "POST"][-1]["client_closed"] and
                     [x for x in rs if x["method"] == "POST"][-1], timeout=5,
                     what=f"stream={stream}: upstream connection closed")
        delay = rec["t_client_closed"] - t_close
        check(delay <= 1.0, f"stream={stream}: the mock saw the close {delay:.3f} s after the client left")
        t.note(f"stream={stream}: upstream connection closed {max(delay, 0) * 1000:.0f} ms after the client left")


def wait_stall(m, what, timeout=15):
    """Wait until the mock's last request has sent nothing for 1 s; its record."""
    last, stalled_since, deadline = None, None, time.monotonic() + timeout
    while True:
        rec = m.chat_requests()[-1]
        sent = rec["bytes_sent"]
        now = time.monotonic()
        if sent != last:
            last, stalled_since = sent, now
        elif now - stalled_since >= 1.0:
            return rec
        if now > deadline:
            fail(f"{what}: upstream never stalled: {sent} bytes sent so far")
        time.sleep(0.1)


PIECE, PIECES = 16384, 3000  # 48 MiB of content


@test(timeout=60)
def test_slow_client_backpressure(t):
    piece, pieces = PIECE, PIECES
    m, a = setup(t, "openai")
    # warm up (first request, worker pools), then measure
    r = chat(t, a, user("warm up", stream=True))
    eq(r.status, 200, "warm-up status")
    rss0 = rss_kib(a.pid)
    s = Stream(a, user(directive({"piece_size": piece, "pieces": pieces}), stream=True), timeout=30)
    eq(s.read_head(), 200, "status")
    s.read_chunk()
    # read nothing more: upstream must stall
    rec = wait_stall(m, "HTTP/1.1 client reading nothing")
    total = pieces * piece
    check(rec["bytes_sent"] < total * 0.6, f"upstream sent {rec['bytes_sent']} of ~{total} bytes to a client "
                                           f"that reads nothing")
    check(rec["writing_since"] is not None and time.monotonic() - rec["writing_since"] > 0.9,
          f"the mock's write is not blocked (writing_since {rec['writing_since']})")
    rss1 = rss_kib(a.pid)
    grown = (rss1 - rss0) / 1024
    t.note(f"stalled after {rec['bytes_sent'] / 2**20:.1f} MiB of {total / 2**20:.0f} MiB upstream; "
           f"aigw RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
    asan = chatlib.sanitized(a.pid)
    if asan:
        t.note("AddressSanitizer build: RSS not checked")
    check(asan or grown < 16, f"aigw's RSS grew by {grown:.1f} MiB while the client read nothing")

    # now read it all: nothing lost, in order, complete
    body = s.read_all()
    s.close()
    chunks, done, error = parse_stream(body)
    check(done and error is None, f"stream incomplete after the stall: {body[-300:]!r}")
    content = chatlib.joined_content(chunks)
    eq(len(content), total, "content length after the stall")
    rss2 = rss_kib(a.pid)
    check(asan or (rss2 - rss0) / 1024 < 32, f"aigw's RSS grew by {(rss2 - rss0) / 1024:.1f} MiB over the stream")


@test(timeout=60)
def test_slow_client_backpressure_h2c(t):
    """curl over h2c reading 20 KB/s (HTTP/2 flow control plus TCP)."""
    m, a = setup(t, "openai")
    r = chat(t, a, user("warm up", stream=True), proto="h2c")
    eq(r.status, 200, "warm-up status")
    rss0 = rss_kib(a.pid)
    body = chatlib.json.dumps(user(directive({"piece_size": PIECE, "pieces": PIECES}), stream=True))
    p = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", "20k", "--max-time", "30",
                          "-o", "/dev/null", "-H", "Content-Type: application/json", "--data-binary", body,
                          a.url("/v1/chat/completions")], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    t.processes.append(type("P", (), {"proc": p})())
    m.wait(lambda rs: len([x for x in rs if x["method"] == "POST"]) == 2, what="the slow request reached the mock")
    rec = wait_stall(m, "h2c client reading 20 KB/s")
    total = PIECE * PIECES
    check(rec["bytes_sent"] < total * 0.6, f"upstream sent {rec['bytes_sent']} of ~{total} bytes to a client "
                                           f"that reads 20 KB/s")
    rss1 = rss_kib(a.pid)
    grown = (rss1 - rss0) / 1024
    t.note(f"stalled after {rec['bytes_sent'] / 2**20:.1f} MiB of {total / 2**20:.0f} MiB upstream; "
           f"aigw RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
    asan = chatlib.sanitized(a.pid)
    if asan:
        t.note("AddressSanitizer build: RSS not checked")
    check(asan or grown < 16, f"aigw's RSS grew by {grown:.1f} MiB while the client read 20 KB/s")
    p.kill()
    p.wait(5)
    t_close = time.monotonic()
    delay, rec = wait_closed(m, t_close, 2.0, "slow h2c client killed")
    r = chat(t, a, user("after", stream=True), proto="h2c")
    eq(r.status, 200, "a request after the slow client")


@test(timeout=30)
def test_oversized_event(t):
    for flavor in ("openai", "gemini"):
        m, a = setup(t, flavor, server={"max_sse_event": "8K", "max_upstream_response": "8K"})
        # just below the limit: fine
        r = chat(t, a, user(directive({"text": "ok", "big_event": 6000, "big_event_at": 1}), stream=True))
        eq(r.status, 200, f"{flavor}: status with a 6 KB event")
        chunks, done, error = parse_stream(r.body)
        check(done and error is None, f"{flavor}: a 6 KB event broke the stream: {r.body[-300:]!r}")

        # the first event is too large: nothing was sent yet, an HTTP error
        r = chat(t, a, user(directive({"big_event": 20000, "big_event_at": 0}), stream=True))
        check_error(r, 502, code="upstream_event_too_large", what=f"{flavor}: first event too large")

        # later: the stream ends with an error event
        r = chat(t, a, user(directive({"text": "before the big one", "chunks": 2, "big_event": 20000,
                                       "big_event_at": 2}), stream=True))
        eq(r.status, 200, f"{flavor}: status")
        chunks, done, error = parse_stream(r.body)
        check(not done, f"{flavor}: [DONE] after an oversized event")
        check(error is not None and error.get("code") == "upstream_event_too_large",
              f"{flavor}: error event {error!r}")

        # a whole answer larger than max_upstream_response
        r = chat(t, a, user(directive({"text": "y" * 20000})))
        check_error(r, 502, code="upstream_too_large", what=f"{flavor}: answer too large")


if __name__ == "__main__":
    chatlib.main()

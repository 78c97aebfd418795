#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Chat through an OpenAI-type backend (tests/upstream/mock_openai.py):
whole and streamed answers over HTTP/1.1 and h2c, what the upstream
receives, the OpenAI and /chat answer shapes."""

import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import Mock, backend, chat, check, config, eq, model, parse_stream, start, usage, user  # noqa: E402
from harness import test  # noqa: E402


def setup(t, **backend_kv):
    m = Mock(t, "openai")
    cfg = config(
        backend("oa", "openai", m.url, **backend_kv),
        model("gpt-test", "oa", upstream_model="mock-gpt-up", max_tokens=77, temperature=0.3),
        model("gpt-plain", "oa"),
        default_model="gpt-test")
    return m, start(t, cfg)


def check_answer_headers(r, model_name, backend_name):
    eq(r.header("x-aigw-model"), model_name, "x-aigw-model")
    eq(r.header("x-aigw-backend"), backend_name, "x-aigw-backend")
    ovh = r.header("x-aigw-overhead-ms")
    try:
        v = float(ovh)
    except (TypeError, ValueError):
        v = -1
    check(0 <= v < 5000, f"x-aigw-overhead-ms {ovh!r}")


@test(timeout=30)
def test_openai_whole_http1(t):
    m, a = setup(t)
    body = {"model": "gpt-test", "messages": [{"role": "developer", "content": "be brief"},
                                              {"role": "user", "content": "hello there"}],
            "user": "u-1", "seed": 5}
    r = chat(t, a, body)
    eq(r.status, 200, f"status ({r.body[:300]!r})")
    check(r.header("content-type").startswith("application/json"), f"content-type {r.header('content-type')}")
    check_answer_headers(r, "gpt-test", "oa")
    j = r.json()
    eq(j["object"], "chat.completion", "object")
    eq(j["model"], "gpt-test", "model (aigw's name, not the upstream's)")
    check(j["id"].startswith("chatcmpl-"), f"id {j['id']!r}")
    check(isinstance(j["created"], int), "created")
    eq(len(j["choices"]), 1, "choices")
    ch = j["choices"][0]
    eq(ch["index"], 0, "index")
    eq(ch["message"], {"role": "assistant", "content": "mock answer: hello there"}, "message")
    eq(ch["finish_reason"], "stop", "finish_reason")
    eq(j["usage"], usage(11, 7), "usage")
    eq(j.get("system_fingerprint"), "fp_mock", "unknown upstream fields pass through")
    check("backend" not in j, "/v1 answer has 'backend'")

    reqs = m.chat_requests()
    eq(len(reqs), 1, "upstream requests")
    u = reqs[0]
    eq(u["path"], "/v1/chat/completions", "upstream path")
    eq(u["headers"].get("authorization"), f"Bearer {chatlib.OPENAI_KEY}", "Authorization upstream")
    check(u["headers"].get("content-type", "").startswith("application/json"), "upstream content-type")
    eq(u["headers"].get("x-request-id"), r.header("x-request-id"), "X-Request-Id passed upstream")
    uj = u["json"]
    eq(uj["model"], "mock-gpt-up", "upstream_model sent upstream")
    eq(uj["messages"], [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
       "messages upstream (developer -> system)")
    eq(uj.get("max_tokens"), 77, "model default max_tokens applied")
    eq(uj.get("temperature"), 0.3, "model default temperature applied")
    eq(uj.get("seed"), 5, "unknown request fields pass through")
    eq(uj.get("user"), "u-1", "user passes through")
    check("stream" not in uj and "stream_options" not in uj, f"stream fields upstream: {uj}")

    # the request's own values win over the model defaults; no model: default_model
    r = chat(t, a, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "temperature": 1.5})
    eq(r.status, 200, "status with the default model")
    eq(r.header("x-aigw-model"), "gpt-test", "default_model used")
    uj = m.chat_requests()[1]["json"]
    eq((uj["max_tokens"], uj["temperature"]), (5, 1.5), "request values upstream")

    # a model without upstream_model is sent under its own name
    r = chat(t, a, user("y", model="gpt-plain"))
    eq(r.status, 200, "status gpt-plain")
    eq(m.chat_requests()[2]["json"]["model"], "gpt-plain", "model name upstream without upstream_model")
    check("max_tokens" not in m.chat_requests()[2]["json"], "no defaults for a model without them")
    check(chatlib.OPENAI_KEY not in chatlib.log_text(a), "the upstream API key appears in aigw's log")


@test(timeout=30)
def test_openai_url_forms(t):
    """url with a trailing slash or a path prefix (LiteLLM behind a proxy)."""
    m = Mock(t, "openai")
    a = start(t, config(backend("slash", "openai", m.url + "/", probe_interval="1h"),
                        backend("prefix", "openai", m.url + "/litellm", probe_interval="1h"),
                        model("a", "slash"), model("b", "prefix"), default_model="a"))
    chat(t, a, user("x", model="a"))
    chat(t, a, user("x", model="b"))
    m.wait(lambda rs: len(rs) >= 4, what="two probes and two chat requests")
    eq(sorted(r["raw_path"] for r in m.requests()),
       ["/litellm/v1/chat/completions", "/litellm/v1/models", "/v1/chat/completions", "/v1/models"],
       "paths upstream")


@test(timeout=30)
def test_openai_whole_h2c_and_chat_shape(t):
    m, a = setup(t)
    r = chat(t, a, user("over h2c", model="gpt-test"), proto="h2c")
    eq(r.status, 200, "status over h2c")
    check_answer_headers(r, "gpt-test", "oa")
    eq(r.json()["choices"][0]["message"]["content"], "mock answer: over h2c", "content over h2c")

    for proto in ("1.1", "h2c"):
        r = chat(t, a, user("shape", model="gpt-test"), path="/chat", proto=proto)
        eq(r.status, 200, f"/chat status ({proto})")
        j = r.json()
        eq(j.get("backend"), "oa", f"/chat answer names the backend ({proto})")
        eq(j["object"], "chat.completion", "/chat object")
        eq(j["choices"][0]["message"]["content"], "mock answer: shape", "/chat content")
        eq(j["usage"], usage(11, 7), "/chat usage")
    eq(len(m.chat_requests()), 3, "upstream requests")


def stream_case(t, a, m, proto, path, include_usage):
    n_before = len(m.chat_requests())
    text = "streamed answer number one"
    body = user(chatlib.directive({"text": text, "chunks": 5}), model="gpt-test", stream=True)
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    what = f"{proto} {path} include_usage={include_usage}"
    r = chat(t, a, body, path=path, proto=proto)
    eq(r.status, 200, f"{what}: status ({r.body[:300]!r})")
    eq(r.header("content-type"), "text/event-stream; charset=utf-8", f"{what}: content-type")
    eq(r.header("cache-control"), "no-cache", f"{what}: cache-control")
    eq(r.header("x-accel-buffering"), "no", f"{what}: x-accel-buffering")
    check_answer_headers(r, "gpt-test", "oa")
    chunks, done, error = parse_stream(r.body)
    check(done, f"{what}: no [DONE] at the end")
    eq(error, None, f"{what}: error event")
    chatlib.check_stream_shape(chunks, "gpt-test", bool(include_usage), usage(11, 7),
                               backend_name="oa" if path == "/chat" else None)
    eq(chatlib.joined_content(chunks), text, f"{what}: joined content")
    reqs = m.chat_requests()
    eq(len(reqs), n_before + 1, f"{what}: upstream requests")
    uj = reqs[-1]["json"]
    eq(uj.get("stream"), True, f"{what}: stream upstream")
    eq(uj.get("stream_options"), {"include_usage": True}, f"{what}: include_usage always asked upstream")
    eq(reqs[-1]["headers"].get("accept"), "text/event-stream", f"{what}: Accept upstream")


@test(timeout=40)
def test_openai_stream(t):
    m, a = setup(t)
    for proto in ("1.1", "h2c"):
        for path in ("/v1/chat/completions", "/chat"):
            for include_usage in (None, False, True):
                if path == "/chat" and include_usage is False:
                    continue
                stream_case(t, a, m, proto, path, include_usage)


@test(timeout=30)
def test_openai_stream_finish_length(t):
    m, a = setup(t)
    # finish_reason passes through
    b = {"text": "cut short", "chunks": 2, "finish_reason": "length"}
    r = chat(t, a, user(chatlib.directive(b), model="gpt-test", stream=True,
                        stream_options={"include_usage": True}))
    eq(r.status, 200, "status")
    chunks, done, error = parse_stream(r.body)
    check(done and error is None, "stream did not end with [DONE]")
    chatlib.check_stream_shape(chunks, "gpt-test", True, usage(11, 7), finish="length")

    # whole answer with finish_reason length
    r = chat(t, a, user(chatlib.directive(b), model="gpt-test"))
    eq(r.json()["choices"][0]["finish_reason"], "length", "finish_reason of a whole answer")


@test(timeout=30)
def test_openai_crlf_events(t):
    """An OpenAI-compatible server that separates events with CRLF CRLF."""
    m, a = setup(t)
    b = {"text": "crlf separated events", "chunks": 4, "crlf": True}
    r = chat(t, a, user(chatlib.directive(b), model="gpt-test", stream=True))
    eq(r.status, 200, "status")
    chunks, done, error = parse_stream(r.body)
    check(done and error is None, f"stream not complete: {r.body[-300:]!r}")
    eq(chatlib.joined_content(chunks), "crlf separated events", "joined content")


UNICODE = ("h\u00e9llo w\u00f6rld \U0001F600 \u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627 "
           "\"quoted\" \\ tab\t nl\n end")


@test(timeout=30)
def test_openai_unicode_gzip_large(t):
    m, a = setup(t)
    for raw_utf8 in (False, True):
        b = {"text": UNICODE, "chunks": 9, "raw_utf8": raw_utf8}
        r = chat(t, a, user(chatlib.directive(b), model="gpt-test"))
        eq(r.json()["choices"][0]["message"]["content"], UNICODE, f"whole answer, raw_utf8={raw_utf8}")
        r = chat(t, a, user(chatlib.directive(b), model="gpt-test", stream=True), proto="h2c")
        chunks, done, error = parse_stream(r.body)
        check(done and error is None, "stream incomplete")
        eq(chatlib.joined_content(chunks), UNICODE, f"streamed answer, raw_utf8={raw_utf8}")
    # the client's text reaches upstream unchanged
    r = chat(t, a, user(UNICODE, model="gpt-test"))
    eq(m.chat_requests()[-1]["json"]["messages"], [{"role": "user", "content": UNICODE}], "text upstream")
    eq(r.json()["choices"][0]["message"]["content"], "mock answer: " + UNICODE, "echoed text")

    # a gzip-compressed upstream answer
    r = chat(t, a, user(chatlib.directive({"text": "compressed " * 50, "gzip": True}), model="gpt-test"))
    eq(r.status, 200, f"status of a gzipped upstream answer ({r.body[:200]!r})")
    eq(r.json()["choices"][0]["message"]["content"], "compressed " * 50, "gzipped content")
    check("gzip" in m.chat_requests()[-1]["headers"].get("accept-encoding", ""), "aigw does not accept gzip")

    # a large request body reaches upstream whole
    big = "0123456789abcdef" * 40000  # 640 KB
    r = chat(t, a, user(big, model="gpt-test"))
    eq(r.status, 200, f"status of a 640 KB request ({r.body[:200]!r})")
    eq(m.chat_requests()[-1]["json"]["messages"][0]["content"], big, "large message upstream")


@test(timeout=40)
def test_openai_concurrent(t):
    """Many requests at once (both protocols, streamed and whole, spread
    over the workers): each gets its own answer, upstream connections are
    reused."""
    m, a = setup(t)
    import threading
    results, errors = {}, []

    def one(i):
        try:
            text = f"answer-{i}-" + "z" * (i % 7)
            stream = i % 2 == 0
            b = {"text": text, "chunks": 4, "chunk_delay": 0.05, "delay": 0.1}
            r = chat(t, a, user(chatlib.directive(b), model="gpt-test", stream=stream),
                     proto="h2c" if i % 3 == 0 else "1.1", timeout=20)
            if stream:
                chunks, done, error = parse_stream(r.body)
                results[i] = (r.status, chatlib.joined_content(chunks) if done and not error else None, text)
            else:
                results[i] = (r.status, r.json()["choices"][0]["message"]["content"], text)
        except Exception as e:  # reported below
            errors.append(f"{i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    eq(errors, [], "errors")
    for i, (status, content, text) in sorted(results.items()):
        eq((status, content), (200, text), f"request {i}")
    eq(len(m.chat_requests()), 30, "upstream requests")

    # sequential requests reuse upstream connections
    n = len(m.chat_requests())
    for i in range(6):
        eq(chat(t, a, user(f"seq {i}", model="gpt-test")).status, 200, "sequential status")
    peers = {r["peer"] for r in m.chat_requests()[n:]}
    check(len(peers) <= 2, f"6 sequential requests used {len(peers)} upstream connections (2 workers)")


def oa_chunk(content=None, finish=None, role=False):
    delta = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


@test(timeout=30)
def test_openai_sse_framing(t):
    """SSE as servers and proxies really send it: comments (keep-alives),
    event: and id: lines, data: without a space, CRLF and LF mixed, events
    split across writes anywhere (inside JSON, inside the separator,
    inside a UTF-8 character), a data field over two lines."""
    m, a = setup(t)
    e1 = oa_chunk("Hel", role=True)
    e2 = json.dumps(json.loads(oa_chunk("lo \u00e9\U0001F600 \u65e5\u672c")), ensure_ascii=False)
    e3 = oa_chunk(" end", "stop")
    body = (": keep-alive\n\n"
            "event: message\nid: 1\ndata: " + e1 + "\r\n\r\n"
            ": PROCESSING\r\n\r\n"
            "data:" + e2 + "\r\n\r\n"
            "data: " + e3 + "\n\n"
            'data: {"id": "x", "object": "chat.completion.chunk",\n'
            'data: "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}\n\n'
            "data: [DONE]\n\n").encode()
    # cut points: inside the comment, inside e1's JSON, between \r and \n,
    # inside a UTF-8 character, inside [DONE]
    cuts = sorted({5, body.index(b'"Hel') + 2, body.index(b"\r\n\r\n: PROC") + 1,
                   body.index("\u00e9".encode()) + 1, body.index("\U0001F600".encode()) + 2,
                   body.index("\u672c".encode()) + 1, body.index(b"[DONE]") + 3})
    pieces = [body[i:j] for i, j in zip([0] + cuts, cuts + [len(body)])]
    raw = [{"base64": base64.b64encode(p).decode()} for p in pieces]
    for proto in ("1.1", "h2c"):
        for delay in (0, 0.02):
            r = chat(t, a, user(chatlib.directive({"raw": raw, "chunk_delay": delay}), model="gpt-test",
                                stream=True, stream_options={"include_usage": True}), proto=proto)
            eq(r.status, 200, f"{proto}: status")
            chunks, done, error = parse_stream(r.body)
            check(done and error is None, f"{proto}: stream incomplete: {r.body[-300:]!r}")
            eq(chatlib.joined_content(chunks), "Hello \u00e9\U0001F600 \u65e5\u672c end", f"{proto}: content")
            chatlib.check_stream_shape(chunks, "gpt-test", True, usage(3, 4))


@test(timeout=30)
def test_openai_models_list(t):
    m, a = setup(t)
    r = chatlib.curl(t, a.url("/v1/models"))
    eq(r.status, 200, "status")
    j = r.json()
    eq(j["object"], "list", "object")
    eq(sorted(d["id"] for d in j["data"]), ["gpt-plain", "gpt-test"], "model ids")
    for d in j["data"]:
        eq(d["object"], "model", "object of a model")
        eq(d["owned_by"], "oa", "owned_by")
    eq(m.requests(), [], "no upstream request for /v1/models")


if __name__ == "__main__":
    chatlib.main()

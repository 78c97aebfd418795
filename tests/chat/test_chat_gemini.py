#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Chat through a Gemini-type backend (tests/upstream/mock_gemini.py): the
exact translation of requests and answers, streaming with CRLF CRLF
separators, old-style STOP on every chunk, blocked prompts, MAX_TOKENS,
and the API key only ever in x-goog-api-key."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import (GEMINI_KEY, Mock, backend, chat, check, config, directive, eq, model,  # noqa: E402
                     parse_stream, start, usage, user)
from harness import test  # noqa: E402

UPSTREAM_MODEL = "gemini-up-1.5"


def setup(t, **backend_kv):
    m = Mock(t, "gemini")
    cfg = config(
        backend("gm", "gemini", m.url, **backend_kv),
        model("gem", "gm", upstream_model=UPSTREAM_MODEL),
        model("gem-defaults", "gm", upstream_model=UPSTREAM_MODEL, max_tokens=64, temperature=0.25),
        model("gem-odd", "gm", upstream_model="models/tuned model+v2"),
        default_model="gem")
    return m, start(t, cfg)


def check_key_hygiene(a, m, r_bodies=()):
    """The key went only in x-goog-api-key: not in a URL, not in another
    header, not in aigw's log (at debug level), not in any answer."""
    for u in m.requests():
        check(GEMINI_KEY not in u["raw_path"], f"the API key is in the upstream URL {u['raw_path']!r}")
        eq(u["headers"].get("x-goog-api-key"), GEMINI_KEY, f"x-goog-api-key of {u['raw_path']}")
        others = {k: v for k, v in u["headers"].items() if k != "x-goog-api-key" and GEMINI_KEY in v}
        eq(others, {}, "other headers carrying the key")
        check("authorization" not in u["headers"], "an Authorization header was sent to Gemini")
        check(GEMINI_KEY not in u["body"], "the key is in the upstream body")
        check("key=" not in u["query"], f"a key parameter in the query {u['query']!r}")
    logs = chatlib.log_text(a)
    check(GEMINI_KEY not in logs, "the API key appears in aigw's log")
    check(GEMINI_KEY[:12] not in logs, "a prefix of the API key appears in aigw's log")
    for b in r_bodies:
        check(GEMINI_KEY.encode() not in b, "the API key appears in an answer")


@test(timeout=30)
def test_gemini_whole_translation(t):
    m, a = setup(t)
    body = {"model": "gem",
            "messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": "first question"},
                         {"role": "assistant", "content": "first answer"},
                         {"role": "user", "content": [{"type": "text", "text": "second "},
                                                      {"type": "text", "text": "question"}]}],
            "stop": ["END", "HALT"], "max_tokens": 50, "temperature": 0.5, "top_p": 0.9,
            "user": "someone", "presence_penalty": 0.1}
    r = chat(t, a, body)
    eq(r.status, 200, f"status ({r.body[:300]!r})")
    eq(r.header("x-aigw-model"), "gem", "x-aigw-model")
    eq(r.header("x-aigw-backend"), "gm", "x-aigw-backend")
    j = r.json()
    eq(j["object"], "chat.completion", "object")
    eq(j["model"], "gem", "model")
    eq(len(j["choices"]), 1, "choices")
    eq(j["choices"][0]["message"], {"role": "assistant", "content": "mock answer: second question"}, "message")
    eq(j["choices"][0]["finish_reason"], "stop", "finish_reason")
    eq(j["usage"], usage(11, 7), "usage from usageMetadata")

    reqs = m.chat_requests()
    eq(len(reqs), 1, "upstream requests")
    u = reqs[0]
    eq(u["path"], f"/v1beta/models/{UPSTREAM_MODEL}:generateContent", "upstream path")
    eq(u["query"], "", "upstream query")
    eq(u["json"], {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "first question"}]},
                     {"role": "model", "parts": [{"text": "first answer"}]},
                     {"role": "user", "parts": [{"text": "second "}, {"text": "question"}]}],
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 50,
                             "stopSequences": ["END", "HALT"]},
    }, "upstream body (exact)")
    check_key_hygiene(a, m, [r.body])


@test(timeout=30)
def test_gemini_request_variants(t):
    m, a = setup(t)
    # stop as a string; model defaults; no system message
    r = chat(t, a, user("hi", model="gem-defaults", stop="END"))
    eq(r.status, 200, "status")
    eq(m.chat_requests()[-1]["json"], {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0.25, "maxOutputTokens": 64, "stopSequences": ["END"]},
    }, "body with model defaults and a string stop")

    # nothing to configure: no generationConfig at all
    r = chat(t, a, user("plain", model="gem"))
    eq(r.status, 200, "status")
    eq(m.chat_requests()[-1]["json"], {"contents": [{"role": "user", "parts": [{"text": "plain"}]}]},
       "minimal body")

    # only a system message: Gemini needs a user turn
    r = chat(t, a, {"model": "gem", "messages": [{"role": "system", "content": "Say hello."}]})
    eq(r.status, 200, f"system-only status ({r.body[:300]!r})")
    uj = m.chat_requests()[-1]["json"]
    eq(uj.get("systemInstruction"), {"parts": [{"text": "Say hello."}]}, "systemInstruction (system only)")
    eq([c["role"] for c in uj["contents"]], ["user"], "a user turn exists")

    # two user messages in a row become one turn with both parts
    r = chat(t, a, {"model": "gem", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    eq(r.status, 200, "status")
    eq(m.chat_requests()[-1]["json"]["contents"], [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}],
       "consecutive user turns merged")

    # "models/" prefix dropped, the rest escaped in the URL path
    r = chat(t, a, user("odd", model="gem-odd"))
    eq(r.status, 200, "status")
    eq(m.chat_requests()[-1]["raw_path"], "/v1beta/models/tuned%20model%2Bv2:generateContent", "escaped model path")
    eq(len(m.chat_requests()), 5, "upstream requests")
    check_key_hygiene(a, m)


@test(timeout=30)
def test_gemini_client_errors_not_sent(t):
    m, a = setup(t)
    r = chat(t, a, user("x", model="gem", stop=["1", "2", "3", "4", "5", "6"]))
    chatlib.check_error(r, 400, type_="invalid_request_error", param="stop", what="6 stop sequences")
    r = chat(t, a, {"model": "gem", "messages": [{"role": "user", "content": "x"},
                                                 {"role": "tool", "content": "y", "tool_call_id": "1"}]})
    chatlib.check_error(r, 400, type_="invalid_request_error", param="messages[1].role", what="tool message")
    eq(m.requests(), [], "nothing reached Gemini")


def stream(t, a, behaviour, include_usage=True, proto="1.1", path="/v1/chat/completions", model_name="gem"):
    body = user(directive(behaviour), model=model_name, stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = chat(t, a, body, proto=proto, path=path)
    eq(r.status, 200, f"status ({r.body[:300]!r})")
    eq(r.header("content-type"), "text/event-stream; charset=utf-8", "content-type")
    chunks, done, error = parse_stream(r.body)
    eq(error, None, "error event in the stream")
    check(done, f"no [DONE] at the end: {r.body[-200:]!r}")
    return r, chunks


@test(timeout=40)
def test_gemini_stream(t):
    m, a = setup(t)
    text = "a streamed Gemini answer in pieces"
    for proto in ("1.1", "h2c"):
        for path in ("/v1/chat/completions", "/chat"):
            for include_usage in (False, True):
                # CRLF CRLF separators (the mock's Gemini default), usage grows
                # with each event: the answer must carry the last one
                b = {"text": text, "chunks": 5, "usage": {"prompt": 13, "completion": 9}}
                r, chunks = stream(t, a, b, include_usage, proto, path)
                chatlib.check_stream_shape(chunks, "gem", include_usage, usage(13, 9),
                                           backend_name="gm" if path == "/chat" else None)
                eq(chatlib.joined_content(chunks), text, "joined content")
                u = m.chat_requests()[-1]
                eq(u["path"], f"/v1beta/models/{UPSTREAM_MODEL}:streamGenerateContent", "upstream path")
                eq(u["query"], "alt=sse", "upstream query")
                check("stream" not in u["json"] and "stream_options" not in u["json"],
                      f"OpenAI stream fields sent to Gemini: {u['json']}")
    # LF-only separators work too
    r, chunks = stream(t, a, {"text": text, "chunks": 3, "crlf": False})
    eq(chatlib.joined_content(chunks), text, "joined content (LF separators)")
    check_key_hygiene(a, m, [r.body])


@test(timeout=30)
def test_gemini_stream_stop_on_every_chunk(t):
    m, a = setup(t)
    text = "older models say STOP on every event"
    for last_separate in (True, False):
        b = {"text": text, "chunks": 4, "stop_every_chunk": True, "finish_on_last_piece": not last_separate}
        r, chunks = stream(t, a, b)
        chatlib.check_stream_shape(chunks, "gem", True, usage(11, 7))
        eq(chatlib.joined_content(chunks), text, "joined content")


@test(timeout=30)
def test_gemini_max_tokens(t):
    m, a = setup(t)
    b = {"text": "truncated", "finish_reason": "MAX_TOKENS"}
    r = chat(t, a, user(directive(b), model="gem"))
    eq(r.status, 200, "status")
    eq(r.json()["choices"][0]["finish_reason"], "length", "MAX_TOKENS -> length (whole)")
    for on_last in (False, True):
        b = {"text": "truncated answer", "chunks": 3, "finish_reason": "MAX_TOKENS", "finish_on_last_piece": on_last}
        r, chunks = stream(t, a, b)
        chatlib.check_stream_shape(chunks, "gem", True, usage(11, 7), finish="length")
        eq(chatlib.joined_content(chunks), "truncated answer", "content")
        last = [c for c in chunks if c["choices"]][-1]
        check(isinstance(last["choices"][0].get("delta"), dict), "the MAX_TOKENS chunk has a delta object")

    # SAFETY -> content_filter; an unknown reason -> stop, and a log line
    r = chat(t, a, user(directive({"text": "x", "finish_reason": "SAFETY"}), model="gem"))
    eq(r.json()["choices"][0]["finish_reason"], "content_filter", "SAFETY -> content_filter")
    idx = a.log_index()
    r = chat(t, a, user(directive({"text": "x", "finish_reason": "SOME_FUTURE_REASON"}), model="gem"))
    eq(r.json()["choices"][0]["finish_reason"], "stop", "unknown reason -> stop")
    a.wait_log(r"SOME_FUTURE_REASON", start=idx, timeout=5, what="log line naming the unknown finishReason")


@test(timeout=30)
def test_gemini_blocked_prompt(t):
    m, a = setup(t)
    r = chat(t, a, user(directive({"block_reason": "SAFETY"}), model="gem"))
    eq(r.status, 200, f"status ({r.body[:300]!r})")
    j = r.json()
    eq(len(j["choices"]), 1, "one choice for a blocked prompt (never choices: [])")
    eq(j["choices"][0]["finish_reason"], "content_filter", "finish_reason")
    eq(j["choices"][0]["message"]["content"], "", "content")

    r, chunks = stream(t, a, {"block_reason": "PROHIBITED_CONTENT"})
    choice_chunks = [c for c in chunks if c["choices"]]
    check(choice_chunks, "no choice chunk for a blocked prompt")
    eq(choice_chunks[-1]["choices"][0]["finish_reason"], "content_filter", "finish_reason (stream)")
    eq(chatlib.joined_content(chunks), "", "no content")


@test(timeout=30)
def test_gemini_unicode(t):
    m, a = setup(t)
    text = "h\u00e9llo \U0001F600 \u65e5\u672c\u8a9e \"q\" \\ \n end"
    for raw_utf8 in (False, True):
        b = {"text": text, "chunks": 6, "raw_utf8": raw_utf8}
        r = chat(t, a, user(directive(b), model="gem"))
        eq(r.json()["choices"][0]["message"]["content"], text, f"whole answer, raw_utf8={raw_utf8}")
        r, chunks = stream(t, a, b)
        eq(chatlib.joined_content(chunks), text, f"streamed answer, raw_utf8={raw_utf8}")
    r = chat(t, a, {"model": "gem", "messages": [{"role": "system", "content": text},
                                                 {"role": "user", "content": text}]})
    eq(r.status, 200, "status")
    uj = m.chat_requests()[-1]["json"]
    eq(uj["systemInstruction"], {"parts": [{"text": text}]}, "systemInstruction text")
    eq(uj["contents"], [{"role": "user", "parts": [{"text": text}]}], "user text")


@test(timeout=30)
def test_gemini_upstream_errors(t):
    m, a = setup(t)
    # a rate limit from Gemini keeps its meaning; the message passes
    r = chat(t, a, user(directive({"status": 429, "message": "quota exhausted"}), model="gem"))
    e = chatlib.check_error(r, 429, type_="rate_limit_error", what="Gemini 429")
    check("quota exhausted" in e["message"], f"message {e['message']!r}")
    # a rejected key is the gateway's problem, never reported as the client's
    bad_key = json.dumps({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                    "status": "INVALID_ARGUMENT",
                                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                 "reason": "API_KEY_INVALID"}]}})
    r = chat(t, a, user(directive({"status": 400, "body": bad_key}), model="gem"))
    e = chatlib.check_error(r, 502, type_="api_error", what="rejected API key")
    check("api_key" in e["message"], f"message does not name the key settings: {e['message']!r}")
    # a plain INVALID_ARGUMENT is the client's
    r = chat(t, a, user(directive({"status": 400, "message": "bad field"}), model="gem"))
    e = chatlib.check_error(r, 400, type_="invalid_request_error", what="Gemini 400")
    check("bad field" in e["message"], f"message {e['message']!r}")
    # an error event inside a stream, before anything was sent: an HTTP
    # error with the status from error.code
    r = chat(t, a, user(directive({"error_event": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"},
                                   "error_event_at": 0}), model="gem", stream=True))
    e = chatlib.check_error(r, 503, what="error event before any content")
    check("overloaded" in e["message"], f"message {e['message']!r}")
    # ... and after content: the stream ends with an error event, no [DONE]
    r = chat(t, a, user(directive({"text": "partial answer", "chunks": 2,
                                   "error_event": {"code": 500, "message": "internal", "status": "INTERNAL"},
                                   "error_event_at": 1}), model="gem", stream=True))
    eq(r.status, 200, "status of a stream that broke")
    chunks, done, error = parse_stream(r.body)
    check(not done, "[DONE] after an error")
    check(error is not None and "internal" in error.get("message", ""), f"error event {error!r}")
    eq(chatlib.joined_content(chunks), "partial", "content before the error")
    check_key_hygiene(a, m)


if __name__ == "__main__":
    chatlib.main()

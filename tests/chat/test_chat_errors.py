#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Bad chat requests get OpenAI-shaped errors ({"error": {message, type,
param, code}}) with the right status, and never reach an upstream."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import Mock, backend, chat, check, check_error, config, eq, model, start  # noqa: E402
from harness import curl, test  # noqa: E402

MSG = [{"role": "user", "content": "hi"}]

# (what, raw body, status, code, param); param "any" is not checked
CASES = [
    ("invalid JSON", '{"messages": [', 400, "invalid_json", None),
    ("trailing garbage", '{"messages": []} x', 400, "invalid_json", None),
    ("not an object", '[1, 2]', 400, "invalid_type", None),
    ("no messages", '{"model": "gpt"}', 400, "missing_required_parameter", "messages"),
    ("messages null", '{"model": "gpt", "messages": null}', 400, "missing_required_parameter", "messages"),
    ("messages not an array", '{"model": "gpt", "messages": "hi"}', 400, "invalid_type", "messages"),
    ("messages empty", '{"model": "gpt", "messages": []}', 400, "empty_array", "messages"),
    ("message not an object", '{"model": "gpt", "messages": ["hi"]}', 400, "invalid_type", "messages[0]"),
    ("role missing", '{"model": "gpt", "messages": [{"content": "hi"}]}', 400, "missing_required_parameter",
     "messages[0].role"),
    ("role unknown", '{"model": "gpt", "messages": [{"role": "robot", "content": "hi"}]}', 400, "invalid_value",
     "messages[0].role"),
    ("role not a string", '{"model": "gpt", "messages": [{"role": 1, "content": "hi"}]}', 400, "invalid_type",
     "messages[0].role"),
    ("content a number", '{"model": "gpt", "messages": [{"role": "user", "content": 5}]}', 400, "invalid_type",
     "messages[0].content"),
    ("content missing", '{"model": "gpt", "messages": [{"role": "user"}]}', 400, "missing_required_parameter",
     "messages[0].content"),
    ("image part", '{"model": "gpt", "messages": [{"role": "user", "content": [{"type": "image_url", '
     '"image_url": {"url": "x"}}]}]}', 400, "invalid_value", "messages[0].content[0].type"),
    ("model not a string", json.dumps({"model": 4, "messages": MSG}), 400, "invalid_type", "model"),
    ("model empty", json.dumps({"model": "", "messages": MSG}), 400, "empty_string", "model"),
    ("temperature a string", json.dumps({"model": "gpt", "messages": MSG, "temperature": "hot"}), 400,
     "invalid_type", "temperature"),
    ("temperature too high", json.dumps({"model": "gpt", "messages": MSG, "temperature": 3}), 400, "any",
     "temperature"),
    ("max_tokens decimal", json.dumps({"model": "gpt", "messages": MSG, "max_tokens": 1.5}), 400, "invalid_type",
     "max_tokens"),
    ("max_tokens zero", json.dumps({"model": "gpt", "messages": MSG, "max_tokens": 0}), 400, "any", "max_tokens"),
    ("stream a string", json.dumps({"model": "gpt", "messages": MSG, "stream": "yes"}), 400, "invalid_type",
     "stream"),
    ("stream_options without stream", json.dumps({"model": "gpt", "messages": MSG,
                                                  "stream_options": {"include_usage": True}}), 400,
     "invalid_value", "stream_options"),
    ("stop a number", json.dumps({"model": "gpt", "messages": MSG, "stop": 3}), 400, "invalid_type", "stop"),
    ("duplicate key", '{"model": "gpt", "model": "gpt", "messages": [{"role": "user", "content": "hi"}]}', 400,
     "any", "any"),
    ("unknown model", json.dumps({"model": "gpt-99", "messages": MSG}), 404, "model_not_found", "model"),
]


def setup(t):
    m = Mock(t, "openai")
    a = start(t, config(backend("oa", "openai", m.url), model("gpt", "oa"), default_model="gpt",
                        server={"max_body": "4K"}))
    return m, a


@test(timeout=40)
def test_bad_requests(t):
    m, a = setup(t)
    for proto in ("1.1", "h2c"):
        for path in ("/v1/chat/completions", "/chat"):
            for what, body, status, code, param in CASES:
                r = chat(t, a, body, raw=True, proto=proto, path=path)
                e = check_error(r, status, code=None if code == "any" else code, param=param,
                                what=f"{what} ({proto} {path})")
                eq(e["type"], "invalid_request_error", f"{what}: type")
    eq(m.requests(), [], "a bad request reached the upstream")


@test(timeout=30)
def test_bad_requests_transport(t):
    m, a = setup(t)
    body = json.dumps({"model": "gpt", "messages": MSG})
    # wrong content type
    r = curl(t, a.url("/v1/chat/completions"), "-X", "POST", "-H", "Content-Type: text/plain",
             "--data-binary", body)
    check_error(r, 415, code="unsupported_media_type", what="text/plain")
    # application/x-www-form-urlencoded is what curl -d sends by default
    r = curl(t, a.url("/v1/chat/completions"), "-d", body)
    check_error(r, 415, code="unsupported_media_type", what="form content type")
    # +json and a charset are fine
    for ct in ("application/json; charset=utf-8", "application/vnd.api+json"):
        r = curl(t, a.url("/v1/chat/completions"), "-X", "POST", "-H", f"Content-Type: {ct}",
                 "--data-binary", body)
        eq(r.status, 200, f"content type {ct}")
    # empty body
    r = curl(t, a.url("/v1/chat/completions"), "-X", "POST", "-H", "Content-Type: application/json")
    check_error(r, 400, code="invalid_json", what="empty body")
    # body over max_body
    big = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "x" * 8000}]})
    r = chat(t, a, big, raw=True)
    check_error(r, 413, code="request_too_large", what="body over max_body")
    # invalid UTF-8
    bad = os.path.join(t.tmpdir, "bad-utf8.json")
    with open(bad, "wb") as f:
        f.write(b'{"model": "gpt", "messages": [{"role": "user", "content": "\xff\xfe"}]}')
    r = curl(t, a.url("/v1/chat/completions"), "-X", "POST", "-H", "Content-Type: application/json",
             "--data-binary", "@" + bad)
    check_error(r, 400, what="invalid UTF-8")
    # GET on a chat endpoint
    r = curl(t, a.url("/v1/chat/completions"))
    eq(r.status, 405, "GET /v1/chat/completions")
    check("POST" in (r.header("allow") or ""), f"Allow header {r.header('allow')!r}")
    eq(len(m.chat_requests()), 2, "only the two good requests reached the upstream")


@test(timeout=30)
def test_unknown_model_message(t):
    m, a = setup(t)
    r = chat(t, a, {"model": "no-such-model", "messages": MSG})
    e = check_error(r, 404, code="model_not_found", type_="invalid_request_error", param="model")
    check("no-such-model" in e["message"], f"message does not name the model: {e['message']!r}")
    # no default model configured and none in the request
    m2 = Mock(t, "openai")
    a2 = start(t, config(backend("oa", "openai", m2.url), model("gpt", "oa")))
    r = chat(t, a2, {"messages": MSG})
    check_error(r, 400, code="missing_required_parameter", param="model", what="no model anywhere")
    eq(m.requests() + m2.requests(), [], "requests upstream")


if __name__ == "__main__":
    chatlib.main()
